#!/usr/bin/env bash
# The CPU path beside llama.cpp on the GPU machine's host CPU (another x86-64 class than the
# development machines: an Intel Xeon with AMX there), for the formats of bench/llama_cpp_bench.sh.
#
#   on the development machine:
#     make BUILD=build-devcpu PROGRAM=build-devcpu/mamba2 STATIC_DEPS=1 GPU=0 build-devcpu/mamba2 build-devcpu/run_tests
#     mkdir -p .device/cpu && cp build-devcpu/mamba2 build-devcpu/run_tests .device/cpu/ && strip .device/cpu/*
#     tar cJf .device/cpu.tar.xz -C .device cpu && rm -r .device/cpu
#     tar cJf .device/llama-src.tar.xz -C LLAMA_CPP_SOURCE/.. llama.cpp   (its docs, models, tests left out)
#   on the GPU machine (the device tool, carry .device):
#     bash bench/device_cpu_compare.sh [THREADS...]        (default: 16 2; ROUNDS=2 alternated rounds)
#
# llama.cpp is built there with GGML_NATIVE=ON (so with that CPU's AMX and AVX-512 where it has
# them); its GGUFs are made there from the same random 8-layer checkpoint as ours.
#
# ISA=avx2-vnni (an Intel client core: AVX2 + AVX-VNNI), avx512 (Skylake-SP) or avx2 (plain AVX2)
# forces both sides down to that class (bench/llama_cpp_isa.sh defines them).
# REPS=N repetitions per measurement (default 2).
set -euo pipefail
THREADS=${*:-16 2}
ISA=${ISA:-native}
REPS=${REPS:-2}
. bench/llama_cpp_isa.sh # the classes: llama.cpp's switches (LLAMA_ISA) and our environment (OURS_ENV)
llama_cpp_isa "$ISA" || { echo "ISA=$ISA: native, avx2-vnni, avx512 or avx2" >&2; exit 2; }
[ ${#OURS_ENV[@]} -eq 0 ] || export "${OURS_ENV[@]}"
W=/tmp/cmp
mkdir -p "$W"
tar xJf .device/cpu.tar.xz -C .device
tar xJf .device/llama-src.tar.xz -C "$W"
SRC=$W/llama.cpp
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release "${LLAMA_ISA[@]}" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF > "$W/cmake.log" 2>&1 || { tail -20 "$W/cmake.log"; exit 1; }
cmake --build "$SRC/build" --target llama-bench llama-quantize -j"$(nproc)" > "$W/build.log" 2>&1 || { tail -20 "$W/build.log"; exit 1; }
python3 data/write_checkpoint.py --out "$W/ck8" --layers 8 > /dev/null
PYTHONPATH=$SRC/gguf-py python3 bench/llama_cpp_gguf.py "$W/ck8" data/mistral-v3/tokenizer.model.v3 "$W/bf16.gguf" > /dev/null
for q in Q8_0 Q4_0; do
    "$SRC/build/bin/llama-quantize" --pure --token-embedding-type bf16 "$W/bf16.gguf" "$W/$q.gguf" "$q" > /dev/null 2>&1
done
lscpu | grep -E "Model name|^CPU\(s\)"
echo "flags: $(grep -o 'amx_[a-z0-9]*\|avx512_bf16\|avx512_vnni\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
ROUNDS=${ROUNDS:-2}
R=$W/results.tsv   # threads, side, format, workload, tok/s (one line per measurement)
: > "$R"
# Each round runs, per thread count and group of formats, both sides one after the other:
# llama.cpp first in odd rounds, ours first in even ones, so that the host's drift (it is shared)
# favours neither side over two rounds.
lcpp_run() { # threads, format
    "$SRC/build/bin/llama-bench" -m "$W/$2.gguf" -p 512 -n 16 -t "$1" -r "$REPS" 2>/dev/null |
        awk -F'|' -v t="$1" -v f="$2" '/pp512|tg16/ { w = $7 ~ /pp512/ ? "prefill" : "decode";
            split($8, v, " "); print t "\tllama.cpp\t" f "\t" w "\t" v[1] }' >> "$R"
}
ours_run() { # threads, configuration (stored, fast, q8, q4)
    local o
    case $2 in stored) o="--weights stored" ;; fast) o="--precision fast" ;; *) o="--weights $2" ;; esac
    .device/cpu/mamba2 bench "$W/ck8" --backend cpu --prompt-len 512 --gen-len 16 --batch 1 --threads "$1" \
        --reps "$REPS" $o 2>/dev/null | awk -v t="$1" -v f="$2" '
            /^prefill/ { for (i = 1; i <= NF; i++) if ($i == "tok/s,") print t "\tours\t" f "\tprefill\t" $(i - 1) }
            /^ +1 / { print t "\tours\t" f "\tdecode\t" $7 }' >> "$R"
}
for round in $(seq "$ROUNDS"); do
    for t in $THREADS; do
        # llama.cpp has no second bf16 mode: its BF16 runs once per round, beside our stored and fast
        for group in "bf16 stored fast" "Q8_0 q8" "Q4_0 q4"; do
            set -- $group
            fmt=$1
            shift
            [ $((round % 2)) -eq 0 ] || lcpp_run "$t" "$fmt"
            for cfg in "$@"; do ours_run "$t" "$cfg"; done
            [ $((round % 2)) -eq 1 ] || lcpp_run "$t" "$fmt"
        done
    done
done
echo "kernels: $(.device/cpu/mamba2 bench "$W/ck8" --backend cpu --prompt-len 32 --gen-len 2 --threads 2 --reps 1 --weights q8 2>/dev/null | grep -o 'GEMM: .*' | head -1)"
echo
# what llama.cpp's CPU backend was compiled for, from its ggml_cpu_has_* functions (as llama_cpp_table.py reads them)
echo "llama.cpp's CPU features: $(PYTHONPATH=bench python3 -c 'import sys, llama_cpp_table as t; print(t.ggml_features(sys.argv[1]))' \
    "$SRC/build/bin/libggml-cpu.so")"
echo "tok/s, median over $ROUNDS rounds [each round], ISA=$ISA; the same random 8-layer checkpoint, $(date -u +%F)"
python3 - "$R" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, side, fmt, work, v = line.split("\t")
    runs[(int(t), side, fmt, work)].append(float(v))
theirs = {"stored": "bf16", "fast": "bf16", "q8": "Q8_0", "q4": "Q4_0"}
print(f"{'threads':>7}  {'workload':8} {'ours':7} {'ours tok/s':>26}  {'llama.cpp':10} {'tok/s':>26}  ratio")
for t in sorted({k[0] for k in runs}, reverse=True):
    for work in ("prefill", "decode"):
        for fmt in ("stored", "fast", "q8", "q4"):
            o, l = runs.get((t, "ours", fmt, work)), runs.get((t, "llama.cpp", theirs[fmt], work))
            if not o or not l: continue
            mo, ml = statistics.median(o), statistics.median(l)
            show = lambda xs: " ".join(f"{x:.1f}" for x in xs)
            print(f"{t:>7}  {work:8} {fmt:7} {mo:9.1f} [{show(o):>14}]  {theirs[fmt]:10} {ml:9.1f} [{show(l):>14}]  {mo / ml:.2f}x")
PY
