#!/usr/bin/env bash
# The installed library as a user meets it (make install-check; CI: .ci/run):
#  1. make install into a temporary prefix; build tests/install/generate.c against it with nothing but
#     pkg-config, once linked with libmamba2.a and once with libmamba2.so;
#  2. each program reproduces the demo model's greedy continuation (data/stdlib-mamba2/greedy.json,
#     64 tokens), the static one on the backend "auto" picks (MAMBA2_CHECK_BACKEND to choose another:
#     on a GPU, bf16 may flip the near-tie at the 8th token), the shared one on ref;
#  3. a build with the GPU path (MAMBA2_EXPECT_GPU=1, set by make install-check) has the gpu backend in
#     its shared library;
#  4. the README's C excerpt is part of generate.c, line for line;
#  5. DESTDIR stages under DESTDIR$PREFIX with mamba2.pc naming PREFIX, and make uninstall removes all.
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
tmp=$(mktemp -d /tmp/mamba2-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install-check: $*" >&2; exit 1; }

prefix=$tmp/prefix
make -s install PREFIX="$prefix"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
flags=(-std=c99 -pedantic -Wall -Wextra -Werror)
# -lmamba2 would take the .so when both are there: -l:libmamba2.a names the archive, and --static adds
# what it needs (Libs.private)
# shellcheck disable=SC2046
$CC "${flags[@]}" tests/install/generate.c -o "$tmp/generate-static" $(pkg-config --cflags mamba2) \
    $(pkg-config --static --libs mamba2 | sed 's/-lmamba2\b/-l:libmamba2.a/')
# shellcheck disable=SC2046
$CC "${flags[@]}" tests/install/generate.c -o "$tmp/generate-shared" $(pkg-config --cflags --libs mamba2)
# (ldd's output kept whole: grep -q would close the pipe early, and pipefail count that against ldd)
deps_static=$(ldd "$tmp/generate-static") deps_shared=$(LD_LIBRARY_PATH=$prefix/lib ldd "$tmp/generate-shared")
if grep -q libmamba2 <<<"$deps_static"; then fail "generate-static loads libmamba2.so"; fi
grep -q "libmamba2.so.0 => $prefix/lib/" <<<"$deps_shared" || fail "generate-shared does not load $prefix/lib/libmamba2.so.0"

prompt=$(printf 'def fibonacci(n):\n    ')
grep -qF '"prompt": "def fibonacci(n):\n    "' data/stdlib-mamba2/greedy.json || fail "greedy.json has another prompt"
expected=$(grep -o '"greedy_ids": \[[^]]*\]' data/stdlib-mamba2/greedy.json | head -1 | sed 's/.*\[//; s/\]//; s/,//g')
for run in "static ${MAMBA2_CHECK_BACKEND:-auto}" "shared ref"; do
    set -- $run
    LD_LIBRARY_PATH=$prefix/lib "$tmp/generate-$1" data/stdlib-mamba2 "$prompt" 64 "$2" >"$tmp/out" 2>"$tmp/err" ||
        fail "generate-$1: $(cat "$tmp/err")"
    [ "$(head -1 "$tmp/out")" = "$expected" ] || fail "generate-$1 ($2): $(head -1 "$tmp/out"), expected $expected"
    echo "install-check: generate-$1 reproduces greedy.json: $(cat "$tmp/err")"
done
if [ "${MAMBA2_EXPECT_GPU:-0}" = 1 ]; then
    grep -q ',gpu)' "$tmp/err" || fail "built with nvcc, but the shared library has no gpu backend"
fi

awk '/^## Use it as a library — C/ {s = 1} s && /^```c$/ {c = 1; next} c && /^```$/ {exit} c' README.md >"$tmp/excerpt"
[ -s "$tmp/excerpt" ] || fail "README has no C excerpt under 'Use it as a library — C'"
while IFS= read -r line; do
    grep -qxF -- "$line" tests/install/generate.c || fail "README line not in tests/install/generate.c: $line"
done <"$tmp/excerpt"

stage=$tmp/stage
make -s install PREFIX=/usr/local DESTDIR="$stage"
for f in bin/mamba2 lib/libmamba2.a lib/libmamba2.so lib/libmamba2.so.0 include/mamba2.h lib/pkgconfig/mamba2.pc; do
    [ -e "$stage/usr/local/$f" ] || fail "DESTDIR: $f not installed"
done
grep -qx 'prefix=/usr/local' "$stage/usr/local/lib/pkgconfig/mamba2.pc" || fail "DESTDIR leaked into mamba2.pc"
make -s uninstall PREFIX=/usr/local DESTDIR="$stage"
left=$(find "$stage" ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "install-check: static and shared programs, README excerpt, DESTDIR and uninstall: ok"
