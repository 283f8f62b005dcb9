#!/usr/bin/env bash
# The CI fuzzing step (`make fuzz-ci`): each harness for SECONDS seconds, starting from its committed
# corpus (tests/fuzz/corpus/NAME, read-only here: new inputs go to build-fuzz/new/NAME), then every input
# of tests/fuzz/regressions/NAME replayed. Prints how many inputs each one ran; fails on the first crash,
# leak, undefined behaviour, violated property, memory blow-up (> 1 GiB RSS or a single allocation over
# 512 MiB) or input slower than 5 s. Inputs grow up to 1 MiB (-max_len): the class issue #21 found (small
# files, huge cost) needs inputs larger than libFuzzer's default of 4 KB to show, and a parser that is
# linear in its input runs a 1 MiB input well within these limits under the sanitizers.
# A crashing input is left in build-fuzz/crashes/NAME/.
#
#   usage: tests/fuzz/run.sh SECONDS NAME...
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=$1
shift
status=0
printf '%-16s %10s %8s %s\n' harness inputs corpus result
for name in "$@"; do
    bin=build-fuzz/fuzz_$name
    new=build-fuzz/new/$name
    crashes=build-fuzz/crashes/$name
    mkdir -p "$new" "$crashes" tests/fuzz/corpus/"$name"
    log=build-fuzz/$name.log
    dict=()
    [ -f tests/fuzz/dict/"$name".dict ] && dict=(-dict=tests/fuzz/dict/"$name".dict)
    if "$bin" -max_total_time="$secs" -max_len=1048576 -timeout=5 -rss_limit_mb=1024 -malloc_limit_mb=512 -print_final_stats=1 \
        "${dict[@]}" -artifact_prefix="$crashes/" "$new" tests/fuzz/corpus/"$name" >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (see $log, input in $crashes/)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    corpus=$(ls tests/fuzz/corpus/"$name" | wc -l)
    # Inputs that once crashed: each must now run clean.
    reg=tests/fuzz/regressions/$name
    if [ "$result" = ok ] && [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
        if ! "$bin" -runs=1 "$reg"/* >>"$log" 2>&1; then
            result="FAILED on a regression input (see $log)"
            status=1
        fi
    fi
    printf '%-16s %10s %8s %s\n' "$name" "$runs" "$corpus" "$result"
    [ "$result" = ok ] || tail -40 "$log"
done
exit $status
