#!/usr/bin/env bash
# A long fuzzing run of every harness at once, with the limits of run.sh, for a machine with cores
# to spare (issue #21 asks for 10 minutes per harness): each harness runs WORKERS libFuzzer processes
# (-fork) for SECONDS seconds from its committed corpus and its seeds; new inputs go to OUT/new/NAME,
# crashes to OUT/crashes/NAME. Prints one line per harness: executions, coverage (edges, features),
# corpus size at the end, findings; exits 1 when any harness found something.
#
#   usage: tests/fuzz/long_run.sh SECONDS WORKERS [NAME...]     (default: every harness)
#   FUZZ_BIN: the folder of the fuzz_NAME binaries (default build-fuzz, from `make fuzz`)
#   OUT:      where inputs, crashes and logs go (default build-fuzz/long)
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=$1
workers=$2
shift 2
names=("$@")
[ ${#names[@]} -gt 0 ] || names=($(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||'))
bin=${FUZZ_BIN:-build-fuzz}
out=${OUT:-build-fuzz/long}
for name in "${names[@]}"; do
    mkdir -p "$out/new/$name" "$out/crashes/$name"
    dict=()
    [ -f tests/fuzz/dict/"$name".dict ] && dict=(-dict=tests/fuzz/dict/"$name".dict)
    seeds=()
    [ -d tests/fuzz/seeds/"$name" ] && seeds=(tests/fuzz/seeds/"$name")
    "$bin/fuzz_$name" -fork="$workers" -ignore_crashes=1 -max_total_time="$secs" -max_len=1048576 -timeout=5 \
        -rss_limit_mb=1024 -malloc_limit_mb=512 -print_final_stats=1 "${dict[@]}" -artifact_prefix="$out/crashes/$name/" \
        "$out/new/$name" tests/fuzz/corpus/"$name" "${seeds[@]}" > "$out/$name.log" 2>&1 &
done
wait
status=0
printf '%-16s %12s %8s %8s %8s %s\n' harness executions edges features corpus findings
for name in "${names[@]}"; do
    log=$out/$name.log
    # the fork mode's last status line: "#N DONE cov: E ft: F corp: C exec/s ..." (or the last "#N ..." line)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    runs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
    corp=$(grep -oE 'corp: [0-9]+' <<<"$last" | grep -oE '[0-9]+' | head -1)
    found=$(ls "$out/crashes/$name" | wc -l)
    [ "$found" = 0 ] || status=1
    printf '%-16s %12s %8s %8s %8s %s\n' "$name" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
        "$([ "$found" = 0 ] && echo none || echo "$found inputs in $out/crashes/$name")"
done
exit $status
