#!/usr/bin/env bash
# The CPU path on x86-64 CPUs older than this one: QEMU's user-mode emulator (Debian's qemu-user)
# runs our binaries with the CPUID of an older CPU model, so the dispatch sees a CPU without
# AVX-512 (or without AVX2, or with SSE only) and picks the kernels such a CPU would get. Forcing a
# lower class through MAMBA2_CPU_ISA on this machine cannot show two things this does: that the
# choice follows what the CPU reports, and that no instruction of a higher class is left in a lower
# path (the emulator stops the run with SIGILL where a real CPU of that class would).
#
#   bash tests/cpu_classes.sh [MAMBA2] [RUN_TESTS]     (default: ./mamba2 build/run_tests)
#
# For each model: the kernels chosen (the cpu suite's test, told what to expect), every GEMV variant
# of the class against a double product, the demo model's logits against ref at default precision
# (bound 1e-3, as everywhere) and with q8 weights (6e-2: tests/test_quant.c's Q8_DEMO_TOL, whose
# comment says why), and the q8 / q4 decode steps against the same steps on this machine's own
# kernels (the same integers multiplied in another order: 1e-5, QKERNEL_TOL there).
# QEMU 7.2's TCG has AVX2 but neither AVX-512 nor AVX-VNNI, so those classes are not among the models;
# they are measured by forcing on a CPU that has them (bench/llama_cpp_isa.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
MAMBA2=${1:-./mamba2}
RUN_TESTS=${2:-build/run_tests}
QEMU=$(command -v qemu-x86_64 || true)
[ -n "$QEMU" ] || { echo "cpu_classes.sh: qemu-x86_64 not found (apt-get install qemu-user)" >&2; exit 1; }
DEMO=data/stdlib-mamba2
IDS="1 $(seq -s ' ' 300 337)" # 39 tokens
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# relative L2 of the float32 file $1 against $2, printed; fails above $3
compare() {
    python3 - "$@" << 'EOF'
import array, math, sys
a, b = array.array("f"), array.array("f")
a.frombytes(open(sys.argv[1], "rb").read()); b.frombytes(open(sys.argv[2], "rb").read())
if len(a) != len(b) or not a: sys.exit("different sizes: %d and %d floats" % (len(a), len(b)))
e = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / sum(y * y for y in b))
print("%.1e (bound %s)" % (e, sys.argv[3])); sys.exit(0 if e <= float(sys.argv[3]) else 1)
EOF
}

for w in q8 q4; do # the reference for the decode steps: this machine's own kernels
    "$MAMBA2" logits "$DEMO" --ids "$IDS" --backend cpu --mode step --weights $w -t 2 -o "$TMP/host-$w.f32" 2> /dev/null
done
fail=0
step() { # label, pattern of the output lines to print, command...: run it, count a failure
    local label=$1 pattern=$2 out
    shift 2
    if out=$("$@" 2>&1); then
        echo "   ok    $label: $(echo "$out" | grep -E "$pattern" | tr -s ' ' | paste -sd ';')"
    else
        echo "   FAIL  $label:"; echo "$out" | tail -5 | sed 's/^/         /'; fail=$((fail + 1))
    fi
}
q() { "$QEMU" -cpu "$model" "$@"; }
decode_vs_host() { # weights: the q8/q4 decode steps under the model against this machine's
    q "$MAMBA2" logits "$DEMO" --ids "$IDS" --backend cpu --mode step --weights "$1" -t 2 -o "$TMP/$1.f32" > /dev/null 2>&1 &&
        compare "$TMP/$1.f32" "$TMP/host-$1.f32" 1e-5
}
# model : what the dispatch must choose there (GEMV ISA, GEMM tier, q8/q4 product) : the class
for entry in "Haswell-v4:avx2 avx2 avx2:AVX2 + FMA + F16C, Intel (Haswell to Comet Lake)" \
    "EPYC-Rome-v2:avx2 avx2 avx2:AVX2, AMD (Zen 2; cache sizes from AMD's CPUID leaves)" \
    "SandyBridge-v2:scalar sgemm scalar:AVX without AVX2 (scalar kernels, OpenBLAS)" \
    "Nehalem-v2:scalar sgemm scalar:SSE4.2 only"; do
    IFS=: read -r model expect what <<< "$entry"
    echo "== QEMU -cpu $model: $what"
    MAMBA2_TEST_EXPECT_CPU="$expect" step "kernels chosen" "chosen" q "$RUN_TESTS" cpu \
        "kernels chosen from what the CPU reports"
    step "every GEMV variant vs a double product" "runs:|asserts" q "$RUN_TESTS" cpu \
        "gemv: every ISA variant and dtype vs a double product"
    step "demo model vs ref, default precision" "^logits|^greedy" q "$MAMBA2" check "$DEMO" --backends cpu --ids "$IDS" --tol 1e-3
    step "demo model vs ref, q8 weights" "^logits|^greedy" q "$MAMBA2" check "$DEMO" --backends cpu --ids "$IDS" --weights q8 --tol 6e-2
    step "q8 decode steps vs this machine's" "bound" decode_vs_host q8
    step "q4 decode steps vs this machine's" "bound" decode_vs_host q4
done
[ $fail -eq 0 ] && echo "cpu_classes.sh: every class passed" || { echo "cpu_classes.sh: $fail failure(s)"; exit 1; }
