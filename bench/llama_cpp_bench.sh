#!/usr/bin/env bash
# llama.cpp on the same machine and the same checkpoint as our CPU path, every weight format side by
# side: llama.cpp's BF16, Q8_0 and Q4_0 against our stored (default and --precision fast), q8 and q4.
#
#   bash bench/llama_cpp_bench.sh [CKPT_DIR] [THREADS]        (default: /tmp/ck8, 2 threads)
#
# Environment:
#   LLAMA_CPP_WORK=DIR  where llama.cpp's source, builds, venv, GGUF files and the runs go
#                       (default: build/llama.cpp of this repository)
#   ROUNDS=N            alternating rounds of measurements (default 2)
#   ISA=NAME            native (default): both sides at this CPU's best; avx512bf16, avx512vnni, avx512,
#                       avx2vnni, avx2-vnni or avx2: both forced down to that class of x86-64 CPU
#                       (bench/llama_cpp_isa.sh defines them), llama.cpp from a second build in
#                       build-$ISA/ (build-avx2/ for avx2 and avx2vnni)
#   LLAMA_CPP_ISA=NAME  llama.cpp's side from the build of another class than ISA's (our side stays
#                       at ISA): for a host where llama.cpp's native build does not run (its AMX
#                       kernels stopped with SIGILL on a KVM guest with AMX, results/cpu.md 2026-12-05)
#   SKIP_CHECK=1        skip the greedy-agreement check
#   PP=512 TG=16        prompt and generated tokens (smaller for a quick smoke test of the script)
#
# 1. llama.cpp's source: the copy vendored in the PyPI sdist of llama-cpp-python (version pinned
#    below), built with -DGGML_NATIVE=ON (or the ISA class's switches), targets llama-bench,
#    llama-completion and llama-quantize only.
# 2. The checkpoint as a BF16 GGUF (bench/llama_cpp_gguf.py: bf16 matrices byte for byte, no torch),
#    then llama-quantize --pure to Q8_0 and Q4_0, the embedding kept bf16: in_proj, out_proj and
#    lm_head quantized and the embedding as stored, as our --weights q8|q4 does. Cached in $WORK.
# 3. The same model? Greedy continuations of one prompt from llama-completion and from our
#    `mamba2 generate`, printed one above the other: BF16 against stored, and (for information)
#    Q8_0 against --weights q8.
# 4. ROUNDS rounds, alternating: llama-bench -p 512 -n 16 -r 3 -o json on one format and our
#    `mamba2 bench --prompt-len 512 --gen-len 16 --batch 1 --reps 3 --roofline --json` on its
#    counterpart(s), same thread count; llama.cpp first in odd rounds, ours first in even ones.
# 5. bench/llama_cpp_table.py turns the JSON of both sides into one Markdown table.
# Everything printed also goes to $WORK/run-<ISA>-<UTC time>/output.txt beside the JSON files.
# Needs: cmake, a C++ compiler, python3 with venv; the first run downloads about 80 MB from PyPI.
set -euo pipefail
die() { echo "llama_cpp_bench.sh: $*" >&2; exit 1; }

CK=${1:-/tmp/ck8}
THREADS=${2:-2}
ROUNDS=${ROUNDS:-2}
ISA=${ISA:-native}
PP=${PP:-512}
TG=${TG:-16}
VERSION=0.3.36 # llama-cpp-python; its vendor/llama.cpp is the source built here
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${LLAMA_CPP_WORK:-$ROOT/build/llama.cpp} # where the source, builds, venv and GGUF files go
SRC=$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp
MAMBA2=$ROOT/mamba2

[ -f "$CK/config.json" ] && ls "$CK"/*.safetensors > /dev/null 2>&1 ||
    die "no checkpoint at $CK (config.json and *.safetensors); make one with data/write_checkpoint.py"
[ -x "$MAMBA2" ] || die "$MAMBA2 is missing: build it first (make -j2 GPU=0)"
case $("$MAMBA2" bench --help 2>&1) in *--weights*) ;; *) die "$MAMBA2 bench has no --weights option: rebuild it" ;; esac
. "$ROOT/bench/llama_cpp_isa.sh" # the classes: llama.cpp's switches (LLAMA_ISA) and our environment (OURS_ENV)
llama_cpp_isa "$ISA" || die "ISA=$ISA: expected native, avx512bf16, avx512vnni, avx512, avx2vnni, avx2-vnni or avx2"
LCPP_ISA=${LLAMA_CPP_ISA:-$ISA}
if [ "$LCPP_ISA" != "$ISA" ]; then # llama.cpp's switches from that class, our environment from ISA's
    SAVED=("${OURS_ENV[@]}")
    llama_cpp_isa "$LCPP_ISA" || die "LLAMA_CPP_ISA=$LCPP_ISA: not a class bench/llama_cpp_isa.sh knows"
    OURS_ENV=("${SAVED[@]}")
fi
CMAKE_ISA=("${LLAMA_ISA[@]}")
case $LCPP_ISA in
native) BUILD=$SRC/build ;;
avx2 | avx2vnni) BUILD=$SRC/build-avx2 ;; # the same llama.cpp build for both
*) BUILD=$SRC/build-$LCPP_ISA ;;
esac
for v in ROUNDS PP TG; do
    case ${!v} in '' | *[!0-9]* | 0) die "$v=${!v}: expected a positive integer" ;; esac
done

# --- llama.cpp: source and build(s) -----------------------------------------------------------
mkdir -p "$WORK"
if [ ! -d "$SRC" ]; then
    echo "fetching llama-cpp-python $VERSION's sdist (llama.cpp's source) into $WORK"
    (cd "$WORK" && python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" &&
        tar xzf "llama_cpp_python-$VERSION.tar.gz") || die "could not fetch llama-cpp-python $VERSION from PyPI"
fi
build_llama() { # build dir, targets...
    local dir=$1 log
    shift
    log=$WORK/build-$(basename "$dir").log
    echo "building llama.cpp ($*) in $dir, ISA=$ISA (several minutes; log: $log)"
    cmake -S "$SRC" -B "$dir" -DCMAKE_BUILD_TYPE=Release "${CMAKE_ISA[@]}" -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF > "$log" 2>&1 &&
        cmake --build "$dir" --target "$@" -j"$(nproc)" >> "$log" 2>&1 || die "llama.cpp build failed: see $log"
}
# the native build quantizes and runs the greedy check in either mode
NATIVE=$SRC/build/bin
if [ ! -x "$NATIVE/llama-bench" ] || [ ! -x "$NATIVE/llama-completion" ] || [ ! -x "$NATIVE/llama-quantize" ]; then
    SAVED=("${CMAKE_ISA[@]}")
    CMAKE_ISA=(-DGGML_NATIVE=ON)
    build_llama "$SRC/build" llama-bench llama-completion llama-quantize
    CMAKE_ISA=("${SAVED[@]}")
fi
[ -x "$BUILD/bin/llama-bench" ] || build_llama "$BUILD" llama-bench
LLAMA_BENCH=$BUILD/bin/llama-bench

# --- the GGUF files ---------------------------------------------------------------------------
if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv --system-site-packages "$WORK/venv" || die "python3 -m venv failed"
fi
if ! "$WORK/venv/bin/python" -c "import numpy, sentencepiece, yaml, tqdm" 2> /dev/null; then
    "$WORK/venv/bin/pip" install -q numpy sentencepiece tqdm pyyaml || die "pip install into $WORK/venv failed"
fi
NAME=$(basename "$CK")
GGUF_BF16=$WORK/$NAME.gguf
if [ ! -f "$GGUF_BF16" ]; then
    echo "writing $GGUF_BF16"
    PYTHONPATH=$SRC/gguf-py "$WORK/venv/bin/python" "$ROOT/bench/llama_cpp_gguf.py" "$CK" \
        "$ROOT/data/mistral-v3/tokenizer.model.v3" "$GGUF_BF16.tmp" > "$WORK/gguf.log" 2>&1 ||
        die "bench/llama_cpp_gguf.py failed: see $WORK/gguf.log"
    mv "$GGUF_BF16.tmp" "$GGUF_BF16"
fi
for Q in Q8_0 Q4_0; do
    if [ ! -f "$WORK/$NAME-$Q.gguf" ]; then
        echo "llama-quantize --pure --token-embedding-type bf16 -> $WORK/$NAME-$Q.gguf"
        "$NATIVE/llama-quantize" --pure --token-embedding-type bf16 "$GGUF_BF16" "$WORK/$NAME-$Q.gguf.tmp" "$Q" \
            "$THREADS" > "$WORK/quantize-$Q.log" 2>&1 || die "llama-quantize $Q failed: see $WORK/quantize-$Q.log"
        mv "$WORK/$NAME-$Q.gguf.tmp" "$WORK/$NAME-$Q.gguf"
    fi
done
gguf_of() { case $1 in BF16) echo "$GGUF_BF16" ;; *) echo "$WORK/$NAME-$1.gguf" ;; esac; }

# --- the run ----------------------------------------------------------------------------------
RUN=$WORK/run-$ISA-$(date -u '+%Y%m%dT%H%M%SZ')
mkdir -p "$RUN"
exec > >(tee "$RUN/output.txt") 2>&1
COMMAND="ISA=$ISA${LLAMA_CPP_ISA:+ LLAMA_CPP_ISA=$LLAMA_CPP_ISA} ROUNDS=$ROUNDS PP=$PP TG=$TG LLAMA_CPP_WORK=$WORK bash bench/llama_cpp_bench.sh $CK $THREADS"
echo "\$ $COMMAND"
echo "llama.cpp $(cd "$SRC" && git rev-parse --short HEAD 2> /dev/null || echo "from llama-cpp-python $VERSION") ($BUILD)," \
    "ours $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- . 2> /dev/null || echo "+changes"), $(date -u '+%F %H:%M UTC')"

if [ "${SKIP_CHECK:-0}" != 1 ]; then
    PROMPT="def fibonacci(n):"
    echo "greedy, 12 tokens after \"$PROMPT\" (native builds):"
    for pair in "BF16 stored" "Q8_0 q8"; do
        set -- $pair
        printf '  llama.cpp %-5s ' "$1:"
        "$NATIVE/llama-completion" -m "$(gguf_of "$1")" -p "$PROMPT" -n 12 --temp 0 -t "$THREADS" -no-cnv \
            --no-warmup --simple-io 2> "$RUN/completion-$1.err" | sed "/^$/d" | tail -1 ||
            die "llama-completion on $1 failed: see $RUN/completion-$1.err"
        printf '  ours %-10s ' "$2:"
        "$MAMBA2" generate "$CK" -p "$PROMPT" -n 12 --backend cpu --threads "$THREADS" --weights "$2" \
            --tokenizer "$ROOT/data/mistral-v3/tokenizer.json" 2> "$RUN/generate-$2.err" | tail -1 ||
            die "mamba2 generate --weights $2 failed: see $RUN/generate-$2.err"
    done
fi

lcpp() { # format, round
    local out=$RUN/lcpp-$1-r$2.json
    "$LLAMA_BENCH" -m "$(gguf_of "$1")" -p "$PP" -n "$TG" -t "$THREADS" -r 3 -o json > "$out" 2> "$out.err" ||
        die "llama-bench on $1 failed: see $out.err"
    python3 -c 'import json,sys
for t in json.load(open(sys.argv[1])):
    kind = "pp%d" % t["n_prompt"] if t["n_prompt"] else "tg%d" % t["n_gen"]
    print("  llama.cpp %-5s %-6s %8.2f +- %.2f tok/s" % (sys.argv[2], kind, t["avg_ts"], t["stddev_ts"]))' "$out" "$1"
}
ours() { # config name, round, options...
    local name=$1 round=$2 out
    shift 2
    out=$RUN/ours-$name-r$round.json
    env "${OURS_ENV[@]}" "$MAMBA2" bench "$CK" --backend cpu --prompt-len "$PP" --gen-len "$TG" --batch 1 \
        --threads "$THREADS" --reps 3 --roofline --json "$@" > "$out" 2> "$out.err" ||
        die "mamba2 bench $* failed: see $out.err"
    python3 -c 'import json,sys
j = json.load(open(sys.argv[1])); p, d = j["prefill"], j["decode"][0]
print("  ours %-10s prefill %7.2f tok/s (%3.0f%% of GEMM), decode %6.2f tok/s (%3.0f%% of read); %s; %s" % (
    sys.argv[2], p["tok_s"], 100 * p["of_gemm"], d["tok_s"], 100 * d["of_read"], j["cpu_gemm_kernel"],
    j.get("cpu_gemv_isa", "?")))' "$out" "$name"
}
# Odd rounds run llama.cpp first in each pair of formats, even rounds ours first (A B, then B A): a
# host whose bandwidth drifts during a round then favours neither side over two rounds (on a shared
# host one side's turn can get much more bandwidth than the other's: results/cpu.md, 2026-12-04).
pair() { # round, llama.cpp format, then our configurations as "name options..." strings
    local round=$1 fmt=$2 cfg name opts
    shift 2
    [ $((round % 2)) -eq 0 ] || lcpp "$fmt" "$round"
    for cfg in "$@"; do
        read -r name opts <<< "$cfg"
        ours "$name" "$round" $opts
    done
    [ $((round % 2)) -eq 1 ] || lcpp "$fmt" "$round"
}
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round of $ROUNDS ($(date -u '+%H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg))"
    pair "$round" BF16 "stored --weights stored" "fast --weights stored --precision fast"
    pair "$round" Q8_0 "q8 --weights q8"
    pair "$round" Q4_0 "q4 --weights q4"
done
echo "done $(date -u '+%H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg); JSON and logs in $RUN"
echo
python3 "$ROOT/bench/llama_cpp_table.py" "$RUN" --ggml-cpu-lib "$BUILD/bin/libggml-cpu.so" --threads "$THREADS" \
    --isa "$ISA" --gen-len "$TG" --command "$COMMAND" --ours-env "${OURS_ENV[*]:-}" | tee "$RUN/table.md"
