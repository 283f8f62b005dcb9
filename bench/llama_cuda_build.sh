#!/usr/bin/env bash
# Build llama.cpp's CUDA backend for the GPU machine on a machine without a GPU (the development
# machine has the CUDA toolkit), and pack it for the device tool: .device/llama-cuda.tar.xz holds
# bin/ (llama-bench, llama-batched-bench, llama-quantize and their shared libraries) and
# nccl-stub/ (a stand-in libnccl.so.2 for a machine without NCCL: one GPU never calls it).
# Used by gpu/device_run.sh's llamacuda step and bench/paper_throughput.sh (unpack into LLAMA=DIR).
#
#   bash bench/llama_cuda_build.sh LLAMA_CPP_SOURCE [WORK_DIR]
#
# LLAMA_CPP_SOURCE: llama.cpp's source, as bench/llama_cpp_bench.sh gets it (the copy vendored in
# llama-cpp-python's sdist). Built for sm_90 (H100 / H200) only, flash attention on (its default),
# shared libraries (one libggml-cuda.so, 67 MB, instead of one copy in each program). About 31
# minutes on 2 cores. The programs link against the toolkit's stub libcuda.so; the real driver
# library is found on the GPU machine.
set -euo pipefail
SRC=${1:?usage: bash bench/llama_cuda_build.sh LLAMA_CPP_SOURCE [WORK_DIR]}
W=${2:-/tmp/llama-cuda-build}
CUDA=${CUDA_HOME:-/usr/local/cuda}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$W/stubs" "$W/pkg/bin" "$W/pkg/nccl-stub"
# the stub has no libcuda.so.1 name, which libggml-cuda.so asks for when the programs are linked
ln -sf "$CUDA/lib64/stubs/libcuda.so" "$W/stubs/libcuda.so.1"
cmake -S "$SRC" -B "$W/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DCMAKE_SHARED_LINKER_FLAGS="-L$CUDA/lib64/stubs -Wl,--no-as-needed -lcuda -Wl,--as-needed" \
    -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$W/stubs" > "$W/cmake.log"
cmake --build "$W/build" --target llama-bench llama-batched-bench llama-quantize -j"$(nproc)" > "$W/build.log"
cat > "$W/nccl_stub.c" <<'EOF'
/* Stand-in for libnccl.so.2 on a machine without it: one GPU never calls NCCL; every entry fails. */
int ncclAllReduce(void) { return 1; }
int ncclCommDestroy(void) { return 1; }
int ncclCommInitAll(void) { return 1; }
int ncclGroupStart(void) { return 1; }
int ncclGroupEnd(void) { return 1; }
const char *ncclGetErrorString(int r) { (void)r; return "NCCL stub"; }
EOF
cc -shared -fPIC -Wl,-soname,libnccl.so.2 -o "$W/pkg/nccl-stub/libnccl.so.2" "$W/nccl_stub.c"
cp -a "$W"/build/bin/llama-bench "$W"/build/bin/llama-batched-bench "$W"/build/bin/llama-quantize "$W"/build/bin/*.so* "$W/pkg/bin/"
strip "$W"/pkg/bin/llama-*
mkdir -p "$ROOT/.device"
tar cJf "$ROOT/.device/llama-cuda.tar.xz" -C "$W/pkg" .
ls -la "$ROOT/.device/llama-cuda.tar.xz"
