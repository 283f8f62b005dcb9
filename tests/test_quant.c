/**
 * @file test_quant.c
 * @brief Weights quantized at load (q8, q4): the quantizer, every product kernel, whole models.
 *
 * - quantizer: the dequantized q8 copy within its rounding bound of the stored weights, and q4's
 *   squared error never above that of llama.cpp's Q4_0 scale on the same blocks (written out here
 *   from its definition, independently of cpu/qmatrix.c);
 * - kernels: every variant this CPU runs (scalar, AVX2, ymm VNNI in its VEX or EVEX encoding,
 *   AVX512-VNNI; the others are reported as skipped, with the reason) against a double-precision
 *   product of the dequantized weights with the activations rounded to int8 per block of 32 as
 *   llama.cpp's Q8_0 does (written out here from that definition), shapes with tails in rows and
 *   in K and one random shape, T = 1..17 and 64; on a CPU with AMX, the prefill path that
 *   dequantizes into bf16 AMX tiles against the double product of fp32 activations and the
 *   dequantized weights rounded to bf16, and that rounding itself value for value;
 * - whole models: the fixtures and fresh random models through the cpu backend with q8 and q4
 *   weights against ref, prefill against step, batched steps against single ones.
 */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "tests.h"

#ifdef MAMBA2_HAVE_CPU
#include "../cpu/gemm_amx.h"
#include "../cpu/gemm_tier.h"
#include "../cpu/gemv_bf16.h"
#include "../cpu/qmatrix.h"

/* Kernels against the double product of the same integers and scales: each block's integer sum is
 * exact, only the fp32 sum over the K/32 blocks is rounded. */
#define QKERNEL_TOL 1e-5
/* The AMX path against the double product of the same bf16 weights: it splits the activations
 * into two bf16 parts as the AMX GEMM of bf16 weights does, exact to about 2⁻¹⁷ of |x| per
 * product; the same bound as that GEMM's (tests/test_cpu.c, AMX_TOL). */
#define QAMX_TOL 1e-4
/* The q8 copy against the stored weights: rounding to d·q with d = max|w|/127 per block is off by
 * at most d/2, about 4.8e-3 σ in RMS for normal weights (as above); 1e-2 is twice that. */
#define Q8_WEIGHT_TOL 1e-2
/* Whole-model logits, relative L2 against ref at the worst position, on the fixtures and the random
 * models of this file, whose widths are 32-72 channels and whose gated norms work on groups of 8-32
 * (per-weight errors average out far less there than at the 7B's 4096; unrelated logits of the
 * same scale are √2 ≈ 1.4 apart). Measured on the AMD EPYC Zen 4: the fixtures q8 up to 7.8e-2, q4
 * up to 7.1e-1; the fresh random models, over 24 seeds each (2026-12-03), q8 3.4e-2 .. 1.6e-1 (the
 * earlier bound of 0.15 failed one draw in 48), q4 3.2e-1 .. 1.0, which is the level of garbage: q4
 * against ref is printed for them, not held, and checked against the dequantized weights below
 * instead (its quality cost is the perplexity table in results/cpu.md). On the trained demo model
 * (d = 256, 10 layers, 64 tokens): q8 2.8e-2, q4 4.6e-1. Each bound is about twice the measured
 * worst case. */
#define Q8_TINY_TOL 3e-1
#define Q4_TINY_TOL 1.0
#define Q8_DEMO_TOL 6e-2
#define Q4_DEMO_TOL 8e-1
/* Against ref on the weights the quantized copy holds (dequantized to fp32, dequantized_model()):
 * only the activations' rounding to int8 differs, in both formats, so this tells a layout or
 * indexing error (logits ~1.4 apart) from rounding far better than the bounds above can for q4.
 * Measured: the fixtures and the demo model up to 6.6e-2, the random models over 24 seeds each
 * 3.0e-2 .. 1.4e-1 (q8 and q4 alike); twice the worst. */
#define Q_ACT_TOL 3e-1
/* Quantized prefill against quantized steps: the same weights and the same integer sums per row
 * and token; only the SSD differs (chunked against recurrent, ~1e-7 apart). But an activation that
 * lies within that 1e-7 of a rounding boundary of its int8 grid rounds to neighbouring integers
 * in the two runs, and one such flip moves the logits by ~1e-3, which the state carries on: on the
 * demo model the two runs agree to 1e-7 for 3 tokens, then to 4e-4..1.2e-2 (q8). So the two runs
 * are held to Q_ACT_TOL, the bound of the activations' rounding, which a layout or indexing error
 * (logits ~1.4 apart) still fails; batched against single steps, which round the same numbers, is held to
 * QKERNEL_TOL below. */
static const Mamba2WeightFormat formats[] = {MAMBA2_WEIGHTS_Q8, MAMBA2_WEIGHTS_Q4};

static int have_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
}

/* A random bf16 matrix [rows, K] (normal, σ = 0.5) as a tensor over @p raw. */
static Mamba2Tensor random_bf16(uint16_t *raw, int rows, int K) {
    for (size_t i = 0; i < (size_t)rows * K; i++) raw[i] = mamba2_f32_to_bf16((float)(test_normal() * 0.5));
    Mamba2Tensor W = {"w", "mem", MAMBA2_BF16, 2, {rows, K}, raw};
    return W;
}

/* Σ (w − d·q)² of llama.cpp's Q4_0 on W: per block of 32, d = (the weight of largest magnitude) / −8,
 * q = clamp(round(w / d), −8, 7) with that d, and d stored rounded to fp16. */
static double q4_0_squared_error(const Mamba2Tensor *W) {
    int64_t rows = W->shape[0], K = W->shape[1];
    double sum = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < K; b += 32) {
            float w[32] = {0}, smax = 0;
            for (int i = 0; i < 32 && b + i < K; i++) {
                w[i] = mamba2_tensor_get(W, r * K + b + i);
                if (fabsf(w[i]) > fabsf(smax)) smax = w[i];
            }
            /* fp16 rounding of |d|: keep 11 significant bits */
            float d = smax / -8.0f, id = d != 0 ? 1 / d : 0;
            if (d != 0) {
                int e;
                float m = frexpf(fabsf(d), &e);
                d = copysignf(ldexpf(rintf(ldexpf(m, 11)), e - 11), d);
            }
            for (int i = 0; i < 32 && b + i < K; i++) {
                float q = rintf(w[i] * id);
                q = q < -8 ? -8 : q > 7 ? 7 : q;
                sum += (double)(w[i] - d * q) * (w[i] - d * q);
            }
        }
    return sum;
}

static void test_quantizer(void) {
    const int shapes[][2] = {{37, 300}, {64, 4096}, {5, 40}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int rows = shapes[si][0], K = shapes[si][1];
        uint16_t *raw = malloc((size_t)rows * K * 2);
        float *deq = malloc((size_t)rows * K * 4), *orig = malloc((size_t)rows * K * 4);
        Mamba2Tensor W = random_bf16(raw, rows, K);
        for (size_t i = 0; i < (size_t)rows * K; i++) orig[i] = mamba2_bf16_to_f32(raw[i]);
        for (int fi = 0; fi < 2; fi++) {
            CpuQMatrix q;
            Mamba2Error e = {{0}};
            CU_ASSERT_EQUAL_FATAL(cpu_qmatrix_quantize(&W, formats[fi], 2, &q, &e), 0);
            cpu_qmatrix_dequantize_rows(&q, 0, rows, deq);
            double err = test_rel_l2(deq, orig, (size_t)rows * K), sq = 0;
            for (size_t i = 0; i < (size_t)rows * K; i++) sq += (double)(deq[i] - orig[i]) * (deq[i] - orig[i]);
            if (formats[fi] == MAMBA2_WEIGHTS_Q8) {
                printf("\n    q8 %dx%d: weights off by %.1e relative L2 (bound %.0e)", rows, K, err, Q8_WEIGHT_TOL);
                CU_ASSERT(err <= Q8_WEIGHT_TOL);
                /* stored the other way (signed q or q + 128), the same weights */
                float *deq2 = malloc((size_t)rows * K * 4);
                int was = q.q8_signed;
                cpu_qmatrix_set_q8_signed(&q, !was);
                CU_ASSERT_EQUAL(q.q8_signed, !was);
                cpu_qmatrix_dequantize_rows(&q, 0, rows, deq2);
                CU_ASSERT(memcmp(deq, deq2, (size_t)rows * K * 4) == 0);
                free(deq2);
            } else {
                double q40 = q4_0_squared_error(&W);
                printf("\n    q4 %dx%d: weights off by %.1e relative L2; squared error %.4g, Q4_0's %.4g (%.1f %% less)",
                       rows, K, err, sq, q40, 100 * (1 - sq / q40));
                CU_ASSERT(sq <= q40);
            }
            cpu_qmatrix_free(&q);
        }
        free(raw), free(deq), free(orig);
    }
    printf("\n");
}

/* x [K] rounded as the kernels round it (llama.cpp's Q8_0 of activations): per block of 32,
 * e = max|x| / 127, p = round(x · 127 / max|x|); returns e·p in @p xq [K]. */
static void round_activations(const float *x, int K, float *xq) {
    for (int b = 0; b < K; b += 32) {
        float amax = 0;
        for (int i = b; i < b + 32 && i < K; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        for (int i = b; i < b + 32 && i < K; i++) xq[i] = amax > 0 ? (amax / 127) * rintf(x[i] * (127 / amax)) : 0;
    }
}

/* One product of cpu_qlinear() to test: the ISA level it is called with, whether vpdpbusd is
 * allowed (MAMBA2_CPU_VNNI), and the kernel that must then run. */
typedef struct {
    CpuIsa isa;
    int vnni;
    CpuQKernel kernel;
    const char *name;
    int amx; /* 1: prefill (T > QLINEAR_INT_MAX_ROWS) on AMX; 0: AMX ruled out (MAMBA2_CPU_GEMM=avx512bf16) */
} QVariant;

/* Why @p v cannot run on this CPU, or NULL when it runs (cpu_qlinear_kernel() picks it). */
static const char *qvariant_missing(const QVariant *v) {
    __builtin_cpu_init();
    if (cpu_isa_detect() < v->isa) return v->isa >= CPU_ISA_AVX512 ? "no AVX-512 on this CPU" : "no AVX2 on this CPU";
    if (v->amx && !cpu_amx_available()) return "no AMX on this CPU (or not granted)";
    switch (v->kernel) {
    case CPU_QKERNEL_AVX512VNNI: return have_vnni() ? NULL : "no AVX512-VNNI on this CPU";
    case CPU_QKERNEL_AVX512BW: return __builtin_cpu_supports("avx512bw") ? NULL : "no AVX512BW on this CPU";
    case CPU_QKERNEL_AVXVNNI: return __builtin_cpu_supports("avxvnni") ? NULL : "no AVX-VNNI (VEX) on this CPU";
    case CPU_QKERNEL_AVXVNNI_EVEX:
        if (__builtin_cpu_supports("avxvnni")) return "this CPU has AVX-VNNI, so the VEX kernel runs instead";
        return have_vnni() && __builtin_cpu_supports("avx512vl") ? NULL : "no AVX512-VNNI + AVX512VL on this CPU";
    default: return NULL;
    }
}

/* cpu_qmatrix_bf16_rows() (the AMX path's weight source) against the dequantized weights rounded by
 * mamba2_f32_to_bf16(), value for value (the padding past K may come out as −0, d·0 with q4's
 * negative d): rows past the last (zeros), K past a tile, every chunk of
 * columns the AMX GEMM asks for (256, and the 32..224 of a last chunk; 256 is half a tile, so both
 * halves are asked for). It runs wherever the CPU has AVX-512 BW and BF16 (every CPU with AMX, and
 * others), so it is checked here even where AMX itself is not. */
static void test_bf16_rows(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512bf16")) {
        printf("\n    skipped: no AVX-512 BW + BF16 on this CPU (the AMX path cannot run on it either)\n");
        return;
    }
    const int shapes[][2] = {{37, 300}, {64, 512}, {5, 96}, {33, 4100}};
    long checked = 0, wrong = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int rows = shapes[si][0], K = shapes[si][1];
        int Kp = (K + 31) / 32 * 32; /* the columns the AMX GEMM asks for */
        uint16_t *raw = malloc((size_t)rows * K * 2), dst[32 * 256];
        float *deq = malloc((size_t)rows * K * 4);
        Mamba2Tensor W = random_bf16(raw, rows, K);
        for (int fi = 0; fi < 2; fi++) {
            CpuQMatrix q;
            Mamba2Error e = {{0}};
            CU_ASSERT_EQUAL_FATAL(cpu_qmatrix_quantize(&W, formats[fi], 2, &q, &e), 0);
            cpu_qmatrix_dequantize_rows(&q, 0, rows, deq);
            for (int sq = 0; sq < (formats[fi] == MAMBA2_WEIGHTS_Q8 ? 2 : 1); sq++) /* q8 stored both ways */
            for (int r0 = 0; r0 < rows; r0 += 32)
                for (int k0 = 0; k0 < Kp; k0 += 256) {
                    int kc = Kp - k0 < 256 ? Kp - k0 : 256;
                    memset(dst, 0xff, sizeof dst); /* NaN bits: every entry must be written */
                    cpu_qmatrix_set_q8_signed(&q, sq);
                    cpu_qmatrix_bf16_rows(&q, r0, k0, kc, dst);
                    for (int i = 0; i < 32; i++)
                        for (int c = 0; c < kc; c++) {
                            int r = r0 + i, k = k0 + c;
                            uint16_t want = r < rows && k < K ? mamba2_f32_to_bf16(deq[(size_t)r * K + k]) : 0;
                            if (mamba2_bf16_to_f32(dst[i * kc + c]) != mamba2_bf16_to_f32(want) && wrong++ < 5)
                                printf("\n    %s %dx%d row %d column %d: %04x, want %04x",
                                       mamba2_weight_format_name(formats[fi]), rows, K, r, k, dst[i * kc + c], want);
                            checked++;
                        }
                }
            cpu_qmatrix_free(&q);
        }
        free(raw), free(deq);
    }
    printf("\n    %ld bf16 weights checked (q8 and q4), %ld wrong\n", checked, wrong);
    CU_ASSERT_EQUAL(wrong, 0);
}

/* Every product against the double products of the same rounded integers (want) or, where
 * cpu_qlinear_path() says the weights are widened instead, of the fp32 activations (want_f), or
 * where it says AMX, of the fp32 activations and the weights rounded to bf16 (want_b): fixed
 * shapes with tails in rows and K plus one random shape, T = 1..17 (the decode block sizes and the
 * switch at QLINEAR_INT_MAX_ROWS) and a prefill-sized T = 64 (several token blocks for K = 4100). */
static void test_qlinear_variants(void) {
    const QVariant variants[] = {
        {CPU_ISA_SCALAR, 1, CPU_QKERNEL_SCALAR, "scalar", 0},
        {CPU_ISA_AVX2, 0, CPU_QKERNEL_AVX2, "avx2 (MAMBA2_CPU_VNNI=0)", 0},
        {CPU_ISA_AVX2, 1, CPU_QKERNEL_AVXVNNI, "avx2-vnni (VEX)", 0},
        {CPU_ISA_AVX2, 1, CPU_QKERNEL_AVXVNNI_EVEX, "avx2-vnni-evex", 0},
        {CPU_ISA_AVX512, 1, CPU_QKERNEL_AVX512VNNI, "avx512-vnni", 0},
        {CPU_ISA_AVX512, 0, CPU_QKERNEL_AVX512BW, "avx512bw (MAMBA2_CPU_VNNI=0)", 0},
        {CPU_ISA_AVX512, 1, CPU_QKERNEL_AVX512VNNI, "avx512-vnni, prefill on AMX", 1},
    };
    enum { NV = sizeof variants / sizeof *variants, TMAX = 64 };
    int shapes[][2] = {{37, 300}, {130, 4100}, {9, 64}, {6, 1000}, {0, 0}};
    shapes[4][0] = 1 + (int)(test_uniform() * 70), shapes[4][1] = 1 + (int)(test_uniform() * 1500); /* random */
    int Ts[18];
    for (int t = 0; t < 17; t++) Ts[t] = t + 1;
    Ts[17] = TMAX;
    const char *saved_env = getenv("MAMBA2_CPU_VNNI"), *saved_gemm_env = getenv("MAMBA2_CPU_GEMM");
    char *saved = saved_env ? strdup(saved_env) : NULL; /* restored afterwards: the other tests run as asked */
    char *saved_gemm = saved_gemm_env ? strdup(saved_gemm_env) : NULL;
    int runs[NV] = {0};
    printf("\n    random shape: %d x %d", shapes[4][0], shapes[4][1]);
    double worst = 0, worst_amx = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int rows = shapes[si][0], K = shapes[si][1];
        uint16_t *raw = malloc((size_t)rows * K * 2);
        float *deq = malloc((size_t)rows * K * 4), *x = malloc((size_t)TMAX * K * 4);
        float *y = malloc((size_t)TMAX * rows * 4);
        float *want = malloc((size_t)TMAX * rows * 4), *xq = malloc((size_t)TMAX * K * 4);
        float *want_f = malloc((size_t)TMAX * rows * 4); /* with the activations in fp32 */
        float *want_b = malloc((size_t)TMAX * rows * 4); /* fp32 activations, weights rounded to bf16 */
        float *y1 = malloc((size_t)rows * 4 + 4); /* the product of one activation row (T = 1) */
        float *y1_other = malloc((size_t)rows * 4 + 4); /* the same, q8 read in the other order */
        void *scratch = NULL;
        CU_ASSERT_FATAL(posix_memalign(&scratch, 64, cpu_qlinear_scratch_bytes(K, TMAX)) == 0);
        Mamba2Tensor W = random_bf16(raw, rows, K);
        test_fill_normal(x, (size_t)TMAX * K, 1.0);
        for (int t = 0; t < TMAX; t++) round_activations(x + (size_t)t * K, K, xq + (size_t)t * K);
        for (int fi = 0; fi < 2; fi++) {
            CpuQMatrix q;
            Mamba2Error e = {{0}};
            CU_ASSERT_EQUAL_FATAL(cpu_qmatrix_quantize(&W, formats[fi], 2, &q, &e), 0);
            cpu_qmatrix_dequantize_rows(&q, 0, rows, deq);
            for (int t = 0; t < TMAX; t++) /* want = xq · deqᵀ, want_f = x · deqᵀ, want_b = x · bf16(deq)ᵀ, in double */
                for (int r = 0; r < rows; r++) {
                    double acc = 0, acc_f = 0, acc_b = 0;
                    for (int k = 0; k < K; k++) {
                        float w = deq[(size_t)r * K + k];
                        acc += (double)w * xq[(size_t)t * K + k];
                        acc_f += (double)w * x[(size_t)t * K + k];
                        acc_b += (double)mamba2_bf16_to_f32(mamba2_f32_to_bf16(w)) * x[(size_t)t * K + k];
                    }
                    want[(size_t)t * rows + r] = (float)acc, want_f[(size_t)t * rows + r] = (float)acc_f;
                    want_b[(size_t)t * rows + r] = (float)acc_b;
                }
            for (int vi = 0; vi < NV; vi++) {
                const QVariant *v = &variants[vi];
                if (qvariant_missing(v)) continue;
                setenv("MAMBA2_CPU_VNNI", v->vnni ? "1" : "0", 1);
                if (v->amx) unsetenv("MAMBA2_CPU_GEMM");
                else setenv("MAMBA2_CPU_GEMM", "avx512bf16", 1); /* the tier below AMX (or the best the CPU has) */
                CU_ASSERT_EQUAL_FATAL(cpu_qlinear_kernel(v->isa), v->kernel); /* the variant really runs */
                CU_ASSERT_EQUAL_FATAL(cpu_qlinear_path(v->isa, TMAX) == CPU_QPATH_AMX, v->amx);
                /* q8 stored both ways (q + 128 as vpdpbusd reads it, signed q as vpmaddubsw does):
                 * every product reads either, the one stored the other way flipping it */
                for (int sq = 0; sq < (formats[fi] == MAMBA2_WEIGHTS_Q8 ? 2 : 1); sq++)
                for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++)
                    for (int accumulate = 0; accumulate < 2; accumulate++) {
                        int T = Ts[ti];
                        cpu_qmatrix_set_q8_signed(&q, sq);
                        float *out = y;
                        for (int i = 0; i < T * rows; i++) out[i] = accumulate ? 1.0f : NAN; /* NaN: every entry written */
                        cpu_qlinear(v->isa, &q, x, K, T, out, rows, accumulate, scratch, 2, MAMBA2_PRECISION_DEFAULT);
                        /* one row (decode: kernels of its own for q8, and for q4 by AVX2's
                         * vpmaddubsw) equals the first of two (the batched kernels) bit for bit: the
                         * same integer sums, and the same fp32 operations in the same order */
                        if (T == 1 && !accumulate) memcpy(y1, out, (size_t)rows * sizeof *y1);
                        if (T == 1 && !accumulate && formats[fi] == MAMBA2_WEIGHTS_Q8 && !cpu_q8_decode_lines_asked()) {
                            /* and q8 read in the other order (row by row, or line by line across the
                             * rows: cpu_q8_decode_lines()), which the load trial may choose: the same bits */
                            const int lines = cpu_q8_decode_lines();
                            cpu_q8_decode_choose_lines(!lines);
                            for (int i = 0; i < rows; i++) y1_other[i] = NAN;
                            cpu_qlinear(v->isa, &q, x, K, 1, y1_other, rows, 0, scratch, 2, MAMBA2_PRECISION_DEFAULT);
                            cpu_q8_decode_choose_lines(lines);
                            int same = memcmp(y1, y1_other, (size_t)rows * sizeof *y1) == 0;
                            if (!same)
                                printf("\n    q8 %s %dx%d%s: one row read %s differs", v->name, rows, K, sq ? " signed" : "",
                                       lines ? "row by row" : "line by line");
                            CU_ASSERT(same);
                        }
                        if (T == 2 && !accumulate) {
                            int same = memcmp(y1, out, (size_t)rows * sizeof *y1) == 0;
                            if (!same)
                                printf("\n    %s %s %dx%d%s: one row differs from the first of two",
                                       mamba2_weight_format_name(formats[fi]), v->name, rows, K, sq ? " signed" : "");
                            CU_ASSERT(same);
                        }
                        /* AVX2's vpmaddubsw multiplies several records in pairs (and one at an odd
                         * count's end), with the integer sums and the fp32 operations of the
                         * one-record product, which prefill now relies on (cpu_qlinear_path()): the
                         * last record of T, a pair's second or a lone one, equals its product alone */
                        if (v->kernel == CPU_QKERNEL_AVX2 && T > 2 && !accumulate &&
                            cpu_qlinear_path(v->isa, T) == CPU_QPATH_INTEGER) {
                            for (int i = 0; i < rows; i++) y1_other[i] = NAN;
                            cpu_qlinear(v->isa, &q, x + (size_t)(T - 1) * K, K, 1, y1_other, rows, 0, scratch, 2,
                                        MAMBA2_PRECISION_DEFAULT);
                            int same = memcmp(y1_other, out + (size_t)(T - 1) * rows, (size_t)rows * sizeof *y1) == 0;
                            if (!same)
                                printf("\n    %s%s %s %dx%d T=%d: the last row differs from its product alone",
                                       mamba2_weight_format_name(formats[fi]), sq ? " signed" : "", v->name, rows, K, T);
                            CU_ASSERT(same);
                        }
                        if (accumulate)
                            for (int i = 0; i < T * rows; i++) out[i] -= 1.0f;
                        /* the integer product rounds x; without vpdpbusd, more than QLINEAR_INT_MAX_ROWS
                         * rows are multiplied in fp32 with the widened weights; on AMX, with the
                         * weights rounded to bf16 */
                        CpuQPath path = cpu_qlinear_path(v->isa, T);
                        const float *ref = path == CPU_QPATH_AMX ? want_b : path == CPU_QPATH_WIDENED ? want_f : want;
                        double tol = path == CPU_QPATH_AMX ? QAMX_TOL : QKERNEL_TOL;
                        double err = test_rel_l2(out, ref, (size_t)T * rows);
                        if (path != CPU_QPATH_AMX && !(err <= worst)) worst = err;
                        if (path == CPU_QPATH_AMX && !(err <= worst_amx)) worst_amx = err;
                        if (!(err <= tol))
                            printf("\n    %s%s %s %dx%d T=%d acc=%d: %.1e", mamba2_weight_format_name(formats[fi]),
                                   sq ? " signed" : "", v->name, rows, K, T, accumulate, err);
                        CU_ASSERT(err <= tol);
                        runs[vi]++;
                    }
            }
            cpu_qmatrix_free(&q);
        }
        free(raw), free(deq), free(x), free(xq), free(y), free(want), free(want_f), free(want_b), free(y1), free(y1_other), free(scratch);
    }
    if (saved) setenv("MAMBA2_CPU_VNNI", saved, 1);
    else unsetenv("MAMBA2_CPU_VNNI");
    if (saved_gemm) setenv("MAMBA2_CPU_GEMM", saved_gemm, 1);
    else unsetenv("MAMBA2_CPU_GEMM");
    free(saved), free(saved_gemm);
    for (int vi = 0; vi < NV; vi++) {
        const char *why = qvariant_missing(&variants[vi]);
        if (why) printf("\n    %s: skipped: %s", variants[vi].name, why);
        else
            printf("\n    %s: %d products (q8 stored both ways and q4, every shape, T and accumulate)", variants[vi].name,
                   runs[vi]);
    }
    printf("\n    worst relative L2 over every variant, format, shape and T: %.1e (bound %.0e)", worst, QKERNEL_TOL);
    if (cpu_amx_available()) printf("; AMX prefill %.1e (bound %.0e)", worst_amx, QAMX_TOL);
    printf("\n");
}

/* ------------------------------------------------------------------ whole models */

static Mamba2Backend *make(const char *name, const Mamba2Model *m, Mamba2WeightFormat w) {
    Mamba2BackendOptions o = {0};
    o.weights = w;
    o.n_threads = 2;
    Mamba2Backend *b = NULL;
    Mamba2Error e = {{0}};
    if (mamba2_backend_create(name, m, &o, &b, &e)) printf("\n    %s: %s", name, e.msg);
    return b;
}

/* All-position logits [T, V] of tokens through prefill (by_step 0) or one step per token. */
static int run(Mamba2Backend *b, const int32_t *tok, int T, int by_step, float *logits) {
    const Mamba2Config *c = &b->model->cfg;
    Mamba2State st;
    Mamba2Error e = {{0}};
    if (mamba2_state_init(&st, c, &e)) return -1;
    int rc = 0;
    if (!by_step) rc = mamba2_backend_prefill(b, &st, tok, T, logits, 1, &e);
    Mamba2State *one = &st;
    for (int t = 0; by_step && t < T && !rc; t++) rc = mamba2_backend_step(b, &one, tok + t, 1, logits + (size_t)t * c->vocab_size, &e);
    if (rc) printf("\n    %s: %s", b->name, e.msg);
    mamba2_state_free(&st);
    return rc;
}

/* Replace @p t by the fp32 weights its @p f copy holds (d · q, cpu_qmatrix_dequantize_rows()). */
static int dequantize_tensor(Mamba2Tensor *t, Mamba2WeightFormat f) {
    CpuQMatrix q;
    Mamba2Error e = {{0}};
    if (cpu_qmatrix_quantize(t, f, 2, &q, &e)) return -1;
    float *w = malloc((size_t)q.rows * q.K * sizeof *w);
    if (w) cpu_qmatrix_dequantize_rows(&q, 0, q.rows, w);
    cpu_qmatrix_free(&q);
    t->dtype = MAMBA2_F32, t->data = w;
    return w ? 0 : -1;
}

/* A copy of @p m whose quantized matrices (in_proj, out_proj, lm_head) hold the weights of its
 * @p f copy in fp32, everything else shared with @p m: ref on it computes what the quantized
 * products compute but for the rounding of the activations to int8. */
static int dequantized_model(const Mamba2Model *m, Mamba2WeightFormat f, Mamba2Model *out) {
    *out = *m;
    int L = m->cfg.n_layer, rc = 0;
    out->w.layers = malloc((size_t)L * sizeof *out->w.layers);
    if (!out->w.layers) return -1;
    memcpy(out->w.layers, m->w.layers, (size_t)L * sizeof *out->w.layers);
    for (int l = 0; l < L; l++) rc |= dequantize_tensor(&out->w.layers[l].in_proj, f) | dequantize_tensor(&out->w.layers[l].out_proj, f);
    return rc | dequantize_tensor(&out->w.lm_head, f);
}

static void free_dequantized(Mamba2Model *d) {
    for (int l = 0; l < d->cfg.n_layer; l++) free((void *)d->w.layers[l].in_proj.data), free((void *)d->w.layers[l].out_proj.data);
    free((void *)d->w.lm_head.data);
    free(d->w.layers);
}

/* The worst logits of a quantized model against ref on its dequantized weights, over the checks. */
static double worst_act;

/* q8 and q4 on one model and prompt: logits against ref, against ref on the dequantized weights,
 * prefill against steps. */
static void check_model(const char *label, const Mamba2Model *m, const int32_t *tok, int T, const double *tol,
                        double *worst) {
    int V = m->cfg.vocab_size;
    size_t n = (size_t)T * V;
    float *ref = malloc(n * 4), *pre = malloc(n * 4), *stp = malloc(n * 4), *deq = malloc(n * 4);
    Mamba2Backend *rb = make("ref", m, MAMBA2_WEIGHTS_STORED);
    CU_ASSERT_FATAL(rb && run(rb, tok, T, 0, ref) == 0);
    printf("\n    %-28s T=%-3d", label, T);
    for (int fi = 0; fi < 2; fi++) {
        Mamba2Backend *qb = make("cpu", m, formats[fi]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(qb);
        CU_ASSERT_EQUAL(run(qb, tok, T, 0, pre), 0);
        CU_ASSERT_EQUAL(run(qb, tok, T, 1, stp), 0);
        Mamba2Model dm;
        CU_ASSERT_EQUAL_FATAL(dequantized_model(m, formats[fi], &dm), 0);
        Mamba2Backend *db = make("ref", &dm, MAMBA2_WEIGHTS_STORED);
        CU_ASSERT_FATAL(db && run(db, tok, T, 0, deq) == 0);
        mamba2_backend_destroy(db);
        free_dequantized(&dm);
        double e_ref = test_max_row_rel_l2(pre, ref, T, V), e_split = test_max_row_rel_l2(stp, pre, T, V);
        double e_deq = test_max_row_rel_l2(pre, deq, T, V);
        printf(" | %s vs ref %.1e, vs dequantized %.1e, step vs prefill %.1e", mamba2_weight_format_name(formats[fi]),
               e_ref, e_deq, e_split);
        if (tol[fi] > 0 && e_ref > worst[fi]) worst[fi] = e_ref;
        if (e_deq > worst_act) worst_act = e_deq;
        if (tol[fi] > 0) CU_ASSERT(e_ref <= tol[fi]); /* 0: printed, not held (q4 on the random models) */
        CU_ASSERT(e_deq <= Q_ACT_TOL);
        CU_ASSERT(e_split <= Q_ACT_TOL);
        mamba2_backend_destroy(qb);
    }
    mamba2_backend_destroy(rb);
    free(ref), free(pre), free(stp), free(deq);
}

static void test_quant_models(void) {
    const double tiny_tol[2] = {Q8_TINY_TOL, Q4_TINY_TOL}, demo_tol[2] = {Q8_DEMO_TOL, Q4_DEMO_TOL};
    double worst[2] = {0, 0}, demo[2] = {0, 0};
    char names[32][64];
    int n = test_list_fixtures(names, 32);
    CU_ASSERT(n >= 1);
    for (int i = 0; i < n; i++) {
        TestFixture fx;
        if (test_load_fixture(names[i], &fx)) {
            CU_FAIL("fixture did not load");
            continue;
        }
        check_model(names[i], &fx.model, fx.tokens, fx.T, tiny_tol, worst);
        test_free_fixture(&fx);
    }
    /* fresh random models: widths not multiples of 32 or 256 (padding in every tile), G > 1, tied */
    for (int k = 0; k < 2; k++) {
        TinyModelSpec s;
        test_tiny_spec_default(&s);
        s.d_model = k ? 72 : 40; /* H·P = 2·d (expand 2) */
        s.n_heads = 2 * s.d_model / s.head_dim;
        s.tie = k;
        s.dtype = "BF16";
        char *dir = test_tmpdir();
        Mamba2Model m;
        Mamba2Error e = {{0}};
        if (!dir || test_write_tiny_model(dir, &s) || mamba2_model_load(dir, &m, &e)) {
            printf("\n    tiny model: %s", e.msg);
            CU_FAIL("tiny model");
        } else {
            int T = 37;
            int32_t tok[37];
            for (int t = 0; t < T; t++) tok[t] = (int32_t)(test_uniform() * m.cfg.vocab_size);
            const double random_tol[2] = {Q8_TINY_TOL, 0}; /* q4: see Q8_TINY_TOL */
            check_model(k ? "random d=72, tied" : "random d=40", &m, tok, T, random_tol, worst);
            mamba2_model_free(&m);
        }
        if (dir) test_rmtree(dir);
        free(dir);
    }
    /* the trained demo model on 64 tokens of Python */
    Mamba2Model m;
    Mamba2Error e = {{0}};
    if (mamba2_model_load("data/stdlib-mamba2", &m, &e)) {
        printf("\n    data/stdlib-mamba2: %s", e.msg);
        CU_FAIL("demo model");
    } else {
        int32_t tok[64];
        for (int t = 0; t < 64; t++) tok[t] = (int32_t)(1 + (t * 7919) % (m.cfg.vocab_size - 1));
        check_model("stdlib-mamba2 (trained)", &m, tok, 64, demo_tol, demo);
        mamba2_model_free(&m);
    }
    printf("\n    worst logits vs ref: tiny models q8 %.1e (bound %.2g), fixtures q4 %.1e (bound %.2g); demo model q8 "
           "%.1e (bound %.2g), q4 %.1e (bound %.2g); every model vs its dequantized weights %.1e (bound %.2g)\n",
           worst[0], Q8_TINY_TOL, worst[1], Q4_TINY_TOL, demo[0], Q8_DEMO_TOL, demo[1], Q4_DEMO_TOL, worst_act, Q_ACT_TOL);
}

/* Batched steps with quantized weights equal single steps (B = 5: one VNNI block of 4 and one of 1). */
static void test_quant_batch(void) {
    char names[32][64];
    CU_ASSERT_FATAL(test_list_fixtures(names, 32) >= 1);
    TestFixture fx;
    CU_ASSERT_FATAL(test_load_fixture(names[0], &fx) == 0);
    const Mamba2Config *c = &fx.model.cfg;
    int V = c->vocab_size, B = 5, steps = 4;
    for (int fi = 0; fi < 2; fi++) {
        Mamba2Backend *qb = make("cpu", &fx.model, formats[fi]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(qb);
        Mamba2State st[5], one[5], *ps[5];
        Mamba2Error e = {{0}};
        float *lb = malloc((size_t)B * V * 4), *l1 = malloc((size_t)B * V * 4);
        for (int s = 0; s < B; s++) {
            CU_ASSERT_FATAL(mamba2_state_init(&st[s], c, &e) == 0 && mamba2_state_init(&one[s], c, &e) == 0);
            ps[s] = &st[s];
        }
        double worst = 0;
        for (int k = 0; k < steps; k++) {
            int32_t tok[5];
            for (int s = 0; s < B; s++) tok[s] = fx.tokens[(k * B + s) % fx.T];
            CU_ASSERT_EQUAL(mamba2_backend_step(qb, ps, tok, B, lb, &e), 0);
            for (int s = 0; s < B; s++) {
                Mamba2State *p1 = &one[s];
                CU_ASSERT_EQUAL(mamba2_backend_step(qb, &p1, &tok[s], 1, l1 + (size_t)s * V, &e), 0);
            }
            double err = test_rel_l2(lb, l1, (size_t)B * V);
            if (err > worst) worst = err;
        }
        printf("\n    %s: batch of %d vs single steps %.1e", mamba2_weight_format_name(formats[fi]), B, worst);
        CU_ASSERT(worst <= QKERNEL_TOL);
        for (int s = 0; s < B; s++) mamba2_state_free(&st[s]), mamba2_state_free(&one[s]);
        free(lb), free(l1);
        mamba2_backend_destroy(qb);
    }
    test_free_fixture(&fx);
    printf("\n");
}

/* The path of quantized prefill timed at load (choose_prefill_path() in backend_cpu.c), where the
 * CPU's integer product has no vpdpbusd and there is no AMX (elsewhere nothing is chosen: said and
 * left): each outcome forced (MAMBA2_CPU_QWIDEN_MIN), named by the backend, returned by
 * cpu_qlinear_path(), and taken: prefill of more than QLINEAR_INT_MAX_ROWS tokens within the q8 bound
 * of ref either way, and not the same logits both ways (the integer product rounds the activations
 * to int8, the widened one keeps them in fp32). */
static void test_prefill_path_timed(void) {
    const CpuIsa isa = cpu_isa_active();
    if (cpu_qlinear_prefill_asked()) {
        printf("\n    skipped: MAMBA2_CPU_QPREFILL is set, so nothing is timed\n");
        return;
    }
    if (!cpu_qlinear_prefill_may_widen(isa)) {
        printf("\n    skipped: prefill on this CPU runs %s, with nothing to choose\n",
               cpu_qlinear_path(isa, QLINEAR_INT_MAX_ROWS + 1) == CPU_QPATH_AMX ? "on AMX" : "the integer product");
        return;
    }
    char names[32][64];
    CU_ASSERT_FATAL(test_list_fixtures(names, 32) >= 1);
    TestFixture fx;
    CU_ASSERT_FATAL(test_load_fixture(names[0], &fx) == 0);
    CU_ASSERT_FATAL(fx.T > QLINEAR_INT_MAX_ROWS);
    const int T = fx.T, V = fx.model.cfg.vocab_size;
    float *ref = malloc((size_t)T * V * 4), *out[2] = {malloc((size_t)T * V * 4), malloc((size_t)T * V * 4)};
    Mamba2Backend *rb = make("ref", &fx.model, MAMBA2_WEIGHTS_STORED);
    CU_ASSERT_FATAL(rb && run(rb, fx.tokens, T, 0, ref) == 0);
    mamba2_backend_destroy(rb);
    char *was = getenv("MAMBA2_CPU_PACK") ? strdup(getenv("MAMBA2_CPU_PACK")) : NULL;
    setenv("MAMBA2_CPU_PACK", "timed", 1); /* the fixture is far below the trial's least work */
    const char *min[2] = {"1000", "0"}; /* [integer, widened]: widened only where it times min times as fast */
    const char *want[2] = {"q8: the integer product of cpu_qlinear(), avx2 (timed at load: rows widened ",
                           "q8: rows widened to fp32, "};
    for (int w = 0; w < 2; w++) {
        setenv("MAMBA2_CPU_QWIDEN_MIN", min[w], 1);
        Mamba2Backend *qb = make("cpu", &fx.model, MAMBA2_WEIGHTS_Q8);
        CU_ASSERT_PTR_NOT_NULL_FATAL(qb);
        Mamba2KernelNames kn;
        memset(&kn, 0, sizeof kn);
        qb->kernels(qb, &kn);
        printf("\n    forced %s: %s", w ? "widened" : "integer", kn.gemm);
        CU_ASSERT_EQUAL(cpu_qlinear_prefill_widens(), w);
        CU_ASSERT_EQUAL(cpu_qlinear_path(isa, T), w ? CPU_QPATH_WIDENED : CPU_QPATH_INTEGER);
        CU_ASSERT(strstr(kn.gemm, "(timed at load: ") != NULL);
        if (cpu_qlinear_kernel(isa) == CPU_QKERNEL_AVX2) CU_ASSERT(strncmp(kn.gemm, want[w], strlen(want[w])) == 0);
        CU_ASSERT_EQUAL(run(qb, fx.tokens, T, 0, out[w]), 0);
        const double e = test_max_row_rel_l2(out[w], ref, T, V);
        printf(", prefill of %d tokens vs ref %.1e (bound %.2g)", T, e, Q8_TINY_TOL);
        CU_ASSERT(e <= Q8_TINY_TOL);
        mamba2_backend_destroy(qb);
    }
    CU_ASSERT(memcmp(out[0], out[1], (size_t)T * V * 4) != 0);
    unsetenv("MAMBA2_CPU_QWIDEN_MIN");
    cpu_qlinear_choose_prefill(1); /* the untimed default (widened) again for the tests after this one */
    if (was) setenv("MAMBA2_CPU_PACK", was, 1), free(was);
    else unsetenv("MAMBA2_CPU_PACK");
    free(ref), free(out[0]), free(out[1]);
    test_free_fixture(&fx);
    printf("\n");
}

int register_quant_tests(void) {
    CU_pSuite s = CU_add_suite("quant", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "quantizer: q8 within its rounding bound, q4 at most Q4_0's error", test_quantizer) ||
        !CU_add_test(s, "qlinear: every variant vs scalar, scalar vs a double product", test_qlinear_variants) ||
        !CU_add_test(s, "q8/q4 rows dequantized to bf16 for AMX = rounded dequantized rows", test_bf16_rows) ||
        !CU_add_test(s, "q8/q4 models vs ref; prefill = steps", test_quant_models) ||
        !CU_add_test(s, "q8/q4 batched steps = single steps", test_quant_batch) ||
        !CU_add_test(s, "quantized prefill's path timed at load: each outcome named and taken, both near ref",
                     test_prefill_path_timed))
        return -1;
    return 0;
}

#else

static void test_no_cpu(void) {}

/* A suite of its own, inactive (and said so) in a build without the cpu backend. */
int register_quant_tests(void) {
    CU_pSuite s = CU_add_suite("quant", NULL, NULL);
    if (!s || !CU_add_test(s, "quantized weights (needs the cpu backend)", test_no_cpu)) return -1;
    printf("\n[quant] SKIPPED (suite inactive): this build has no cpu backend (CPU=0)\n");
    CU_set_suite_active(s, CU_FALSE);
    return 0;
}

#endif
