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
#     bash bench/device_cpu_compare.sh [THREADS...]        (default: 16 2)
#
# llama.cpp is built there with GGML_NATIVE=ON (so with that CPU's AMX and AVX-512 where it has
# them); its GGUFs are made there from the same random 8-layer checkpoint as ours.
set -euo pipefail
THREADS=${*:-16 2}
W=/tmp/cmp
mkdir -p "$W"
tar xJf .device/cpu.tar.xz -C .device
tar xJf .device/llama-src.tar.xz -C "$W"
SRC=$W/llama.cpp
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF > "$W/cmake.log" 2>&1 || { tail -20 "$W/cmake.log"; exit 1; }
cmake --build "$SRC/build" --target llama-bench llama-quantize -j"$(nproc)" > "$W/build.log" 2>&1 || { tail -20 "$W/build.log"; exit 1; }
python3 data/write_checkpoint.py --out "$W/ck8" --layers 8 > /dev/null
PYTHONPATH=$SRC/gguf-py python3 bench/llama_cpp_gguf.py "$W/ck8" data/mistral-v3/tokenizer.model.v3 "$W/bf16.gguf" > /dev/null
for q in Q8_0 Q4_0; do
    "$SRC/build/bin/llama-quantize" --pure --token-embedding-type bf16 "$W/bf16.gguf" "$W/$q.gguf" "$q" > /dev/null 2>&1
done
lscpu | grep -E "Model name|^CPU\(s\)"
echo "flags: $(grep -o 'amx_[a-z0-9]*\|avx512_bf16\|avx512_vnni\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
for t in $THREADS; do
    for f in bf16 Q8_0 Q4_0; do
        echo "llama.cpp $f, $t threads:"
        "$SRC/build/bin/llama-bench" -m "$W/$f.gguf" -p 512 -n 16 -t "$t" -r 2 2>/dev/null | grep -E "pp512|tg16"
    done
    for o in "--weights stored" "--precision fast" "--weights q8" "--weights q4"; do
        echo "ours $o, $t threads:"
        .device/cpu/mamba2 bench "$W/ck8" --backend cpu --prompt-len 512 --gen-len 16 --batch 1 --threads "$t" --reps 2 \
            --roofline $o 2>/dev/null | grep -E "^ceilings|^prefill|^ +1 "
    done
done
