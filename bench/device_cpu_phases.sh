#!/usr/bin/env bash
# Where a CPU decode step's time goes at many threads: `mamba2 bench --phases` on the GPU machine's
# host CPU (16 cores; the development machines have 2), every weight format, beside the products
# timed alone (bench_cpu_gemv_stream), on the same random 8-layer checkpoint.
#
#   on the development machine:
#     make BUILD=build-devcpu PROGRAM=build-devcpu/mamba2 STATIC_DEPS=1 GPU=0 build-devcpu/mamba2 \
#         build-devcpu/bench_cpu_gemv_stream
#     mkdir -p .device/cpu && cp build-devcpu/mamba2 build-devcpu/bench_cpu_gemv_stream .device/cpu/ &&
#         strip .device/cpu/* && tar cJf .device/cpu.tar.xz -C .device cpu && rm -r .device/cpu
#   on the GPU machine (the device tool, carry .device):
#     bash bench/device_cpu_phases.sh [THREADS...]        (default: 16 8 2)
set -euo pipefail
THREADS=${*:-16 8 2}
W=/tmp/phases
mkdir -p "$W"
tar xJf .device/cpu.tar.xz -C .device
python3 data/write_checkpoint.py --out "$W/ck8" --layers 8 > /dev/null
lscpu | grep -E "Model name|^CPU\(s\)|L2 cache|L3 cache"
for t in $THREADS; do
    for w in stored q8 q4; do
        echo "== $t threads, weights $w"
        .device/cpu/mamba2 bench "$W/ck8" --backend cpu --no-prefill --weights "$w" --threads "$t" --gen-len 16 \
            --reps 3 --roofline --phases
    done
    for m in bf16 q8 q4; do
        echo "== $t threads, products alone, $m"
        .device/cpu/bench_cpu_gemv_stream "$W/ck8" "$t" 2 "$m" | tail -2
    done
done
