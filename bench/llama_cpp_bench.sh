#!/usr/bin/env bash
# llama.cpp on the same machine and the same checkpoint as our CPU path (issue 3's comparison).
#
#   bash bench/llama_cpp_bench.sh CKPT_DIR [THREADS]      (default: /tmp/ck8, 2 threads)
#
# 1. llama.cpp's source: the copy vendored in the PyPI sdist of llama-cpp-python (PyPI is the only
#    registry CI-like machines reach), version pinned below; built with -DGGML_NATIVE=ON (for this
#    CPU: AVX-512, AVX512_BF16, AMX where present), targets llama-bench and llama-completion only.
# 2. The checkpoint as GGUF (bench/llama_cpp_gguf.py: bf16 matrices byte for byte, no torch).
# 3. The same model? Greedy continuations of one prompt from llama.cpp (llama-completion) and from
#    our CPU path, printed one above the other (they agreed on all 12 tokens, 2026-12-01).
# 4. llama-bench: a 512-token prompt (pp512) and 16 generated tokens (tg16), 3 repetitions, then
#    our `mamba2 bench` on the same checkpoint with the same thread count, alternating, twice.
# Needs: cmake, a C++ compiler, python3 with venv; downloads about 80 MB from PyPI.
set -eu
CK=${1:-/tmp/ck8}
THREADS=${2:-2}
VERSION=0.3.36 # llama-cpp-python; its vendor/llama.cpp is the source built here
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${LLAMA_CPP_WORK:-$ROOT/build/llama.cpp} # where the source, build, venv and GGUF go
SRC=$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp
mkdir -p "$WORK"
if [ ! -x "$SRC/build/bin/llama-bench" ] || [ ! -x "$SRC/build/bin/llama-completion" ]; then
    (cd "$WORK" && python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" &&
        tar xzf "llama_cpp_python-$VERSION.tar.gz")
    cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF > "$WORK/cmake.log"
    cmake --build "$SRC/build" --target llama-bench llama-completion -j"$(nproc)" > "$WORK/build.log"
fi
if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv --system-site-packages "$WORK/venv"
    "$WORK/venv/bin/pip" install -q numpy sentencepiece tqdm pyyaml
fi
GGUF=$WORK/$(basename "$CK").gguf
if [ ! -f "$GGUF" ]; then
    PYTHONPATH=$SRC/gguf-py "$WORK/venv/bin/python" "$ROOT/bench/llama_cpp_gguf.py" "$CK" \
        "$ROOT/data/mistral-v3/tokenizer.model.v3" "$GGUF.tmp" && mv "$GGUF.tmp" "$GGUF"
fi
echo "llama.cpp $(cd "$SRC" && git rev-parse --short HEAD 2>/dev/null || echo "from llama-cpp-python $VERSION"), $(date -u '+%F %H:%M UTC')"
PROMPT="def fibonacci(n):"
echo "greedy, 12 tokens after \"$PROMPT\":"
printf '  llama.cpp: '
"$SRC/build/bin/llama-completion" -m "$GGUF" -p "$PROMPT" -n 12 --temp 0 -t "$THREADS" -no-cnv --no-warmup \
    --simple-io 2> /dev/null | sed "/^$/d" | tail -1
printf '  ours:      '
"$ROOT/mamba2" generate "$CK" -p "$PROMPT" -n 12 --backend cpu --threads "$THREADS" \
    --tokenizer "$ROOT/data/mistral-v3/tokenizer.json" 2> /dev/null | tail -1
for round in 1 2; do
    "$SRC/build/bin/llama-bench" -m "$GGUF" -p 512 -n 16 -t "$THREADS" -r 3
    "$ROOT/mamba2" bench "$CK" --backend cpu --prompt-len 512 --gen-len 16 --batch 1 --threads "$THREADS" --reps 3 --roofline
done
