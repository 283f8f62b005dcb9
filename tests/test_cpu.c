/**
 * @file test_cpu.c
 * @brief The CPU backend against the reference: kernels, fixtures, fresh random models,
 *        prefill vs step, batched vs single steps, thread counts, states moved between backends.
 *
 * Tolerances: the CPU path is fp32 throughout (ref accumulates in double), so its logits are
 * expected within ~1e-6 of ref; the bound is relative L2 ≤ 1e-3 with the same argmax at
 * every position, and every measured figure is printed.
 */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "forward.h"
#include "ssd.h"
#include "tests.h"

#ifdef MAMBA2_HAVE_CPU
#include "../cpu/bf16_dot_rate.h"
#include "../cpu/gemm_amx.h"
#include "../cpu/gemm_avx512bf16.h"
#include "../cpu/gemm_bf16.h"
#include "../cpu/gemm_fp32.h"
#include "../cpu/gemm_tier.h"
#include "../cpu/gemv_bf16.h"
#include "../cpu/packed_bf16.h"
#include "../cpu/roofline.h"
#include "../cpu/qmatrix.h"
#include "../cpu/ssd_chunked_blas.h"

/* The bound for whole-model logits against the reference. */
#define CPU_TOL 1e-3
/* Kernels against each other or a double-precision product: fp32 sums of ≤ 4100 terms. */
#define KERNEL_TOL 1e-5
/* Two runs of the CPU path that differ only in how work is split (threads, batching, slices). */
#define SPLIT_TOL 1e-5
/* The AMX GEMM against an fp32 product. It multiplies X = X_hi + X_lo, two bf16 parts, which
 * represent each activation to 2^-18 of its magnitude (not fp32's 2^-24), so a dot product
 * carries about 2^-18 · Σ|x·w| / |Σ x·w| of relative error: measured 2.5e-6 (K = 72) and up to
 * 7e-5 on whole-model logits. 1e-4 is that error with margin, and still 10× below CPU_TOL. */
#define AMX_TOL 1e-4

/* The AVX512_BF16 GEMM at default precision splits X as AMX does (same bound, same reason). */
#define BF16_SPLIT_TOL AMX_TOL
/* Fast precision: X rounded to bf16 once, at most 2^-9 of |x| per product (uniformly spread
 * rounding errors give a relative L2 of about 2^-9 / sqrt(3) ≈ 1.1e-3 for random-sign sums:
 * measured 1.7e-3 on the random shapes below); 4e-3 is that with margin. */
#define FAST_KERNEL_TOL 4e-3

/* Whole-model logits at fast precision against ref (worst position's relative L2). Measured on the
 * bf16 fixtures: 5.0e-3 (g2_mixed), 6.3e-3 (g4), 2.4e-2 (g8, 8 layers: the bf16-rounded
 * activations of every layer add up); f32 weights run the fp32 tiers and stay at ~1e-6.
 * 5e-2 is the worst with 2× margin; the argmax must still agree at every position. */
#define FAST_MODEL_TOL 5e-2

/* The error of the default GEMV on @p dtype weights against an fp32 product: the avx512bf16
 * variant splits x into two bf16 parts on bf16 weights (BF16_SPLIT_TOL), the others read x in fp32. */
static double gemv_tol(Mamba2DType dtype) {
    return dtype == MAMBA2_BF16 && cpu_isa_active() == CPU_ISA_AVX512BF16 ? BF16_SPLIT_TOL : KERNEL_TOL;
}

/* The tolerance of a run that went through cpu_linear()'s GEMM (bf16 weights) against one through
 * the GEMVs: the larger of the two paths' own errors against an fp32 product. */
static double gemm_tol(void) {
    Mamba2Tensor bf = {"w", "mem", MAMBA2_BF16, 2, {64, 64}, NULL};
    double g = cpu_linear_tier(&bf, MAMBA2_PRECISION_DEFAULT) >= CPU_GEMM_AVX512BF16 ? AMX_TOL : SPLIT_TOL;
    return g > gemv_tol(MAMBA2_BF16) ? g : gemv_tol(MAMBA2_BF16);
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Positions t < T where the argmax of got and want differ. */
static int argmax_mismatches(const float *got, const float *want, int T, int V) {
    int bad = 0;
    for (int t = 0; t < T; t++) bad += argmax(got + (size_t)t * V, V) != argmax(want + (size_t)t * V, V);
    return bad;
}

/* How far apart the two largest entries of a row must be before a flip of its argmax is a real
 * disagreement, in units of √2 · σ, σ = the row's RMS error per entry: an error spread like the
 * rest of the row moves two given entries towards each other by a normal amount of that spread.
 * In 1,134 fresh seeds of the random models below, 12 flipped an argmax; the 14 flips of 8 of
 * them, measured, came at 0.04–1.6 units. Past 3 units a flip has the odds of a 3-sigma tail (about
 * 1 flip in 1,000, and flips come in about 1 run in 100). A flip by an error on one entry alone (which must exceed the
 * margin) is counted while that error is under 1 / (3 · √(2 / V)) times the margin: 1.7× at the
 * tiny models' V = 50, so the rule is weak there and the L2 bounds stay the main check. See
 * results/cpu.md, "The random models' near-ties". */
#define NEAR_TIE_SIGMAS 3.0

/* For inputs drawn fresh each run: positions where the argmax of got and want differ although
 * want's top-two margin exceeds NEAR_TIE_SIGMAS · √2 · σ of that row (returned: such a flip needs
 * an error concentrated on the top entries, which an fp32 path should not have). Flips inside it
 * are near-ties, which errors of the size the whole-model bound allows decide either way; they are
 * counted into *ties, to be printed. */
static int argmax_mismatches_beyond_ties(const float *got, const float *want, int T, int V, int *ties) {
    int bad = 0;
    for (int t = 0; t < T; t++) {
        const float *g = got + (size_t)t * V, *w = want + (size_t)t * V;
        int best = argmax(w, V);
        if (argmax(g, V) == best) continue;
        double second = -INFINITY, err2 = 0;
        for (int i = 0; i < V; i++) {
            err2 += ((double)g[i] - w[i]) * ((double)g[i] - w[i]);
            if (i != best && w[i] > second) second = w[i];
        }
        if (w[best] - second <= NEAR_TIE_SIGMAS * sqrt(2.0) * sqrt(err2 / V))
            ++*ties;
        else
            bad++;
    }
    return bad;
}

/* ------------------------------------------------------------------ kernels */

/* Whether the space-separated flag list @p flags holds @p flag. */
static int has_flag(const char *flags, const char *flag) {
    size_t n = strlen(flag);
    for (const char *p = flags; (p = strstr(p, flag)) != NULL; p += n)
        if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0')) return 1;
    return 0;
}

/* The kernels a CPU with these /proc/cpuinfo @p flags should get, as "ISA GEMM QKERNEL" (names of
 * cpu_isa_name(), cpu_gemm_tier_name(), cpu_qlinear_kernel_name()), from the rules the README
 * states: the widest vector ISA the CPU has for the GEMVs, the GEMM tier above it, and the integer
 * product with vpdpbusd where the CPU has one, else vpmaddubsw on the widest registers. */
static void expected_kernels(const char *f, char *out, size_t cap) {
    int avx2 = has_flag(f, "avx2") && has_flag(f, "fma") && has_flag(f, "f16c"), avx512 = has_flag(f, "avx512f");
    int bf16 = avx512 && has_flag(f, "avx512_bf16"), bw = has_flag(f, "avx512bw"), vl = has_flag(f, "avx512vl");
    const char *isa = bf16 ? "avx512bf16" : avx512 ? "avx512" : avx2 ? "avx2" : "scalar";
    const char *gemm = bf16 && bw ? (has_flag(f, "amx_tile") && has_flag(f, "amx_bf16") && cpu_amx_available() ? "amx" : "avx512bf16")
                       : avx512 ? "avx512" : avx2 ? "avx2" : "sgemm";
    const char *q = avx512 && has_flag(f, "avx512_vnni") && bw ? "avx512-vnni"
                    : !avx2 && !avx512          ? "scalar"
                    : has_flag(f, "avx_vnni")   ? "avx2-vnni"
                    : has_flag(f, "avx512_vnni") && bw && vl ? "avx2-vnni-evex"
                    : avx512 && bw              ? "avx512bw"
                                                : "avx2";
    snprintf(out, cap, "%s %s %s", isa, gemm, q);
}

/* The kernels are chosen from what the CPU reports (libgcc's reading of CPUID, and the OS's XSAVE
 * state), not fixed at build time. The expectation comes from the kernel's own reading of the CPU,
 * /proc/cpuinfo's flags; under an emulator that reports another CPU (tests/cpu_classes.sh runs the
 * CPU suites under QEMU's Haswell, Sandy Bridge, ... models) /proc/cpuinfo still describes the host,
 * so MAMBA2_TEST_EXPECT_CPU="ISA GEMM QKERNEL" gives the expectation there. */
static void test_kernel_choice(void) {
    char want[96] = "", got[96];
    const char *env = getenv("MAMBA2_TEST_EXPECT_CPU");
    if (env) {
        snprintf(want, sizeof want, "%s", env);
    } else {
        FILE *f = fopen("/proc/cpuinfo", "r");
        char line[8192];
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "flags", 5)) {
                expected_kernels(line, want, sizeof want);
                break;
            }
        if (f) fclose(f);
        CU_ASSERT_FATAL(want[0] != '\0'); /* neither MAMBA2_TEST_EXPECT_CPU nor a readable /proc/cpuinfo */
    }
    CpuIsa isa = cpu_isa_detect();
    if (getenv("MAMBA2_CPU_VNNI")) { /* the environment turned the vpdpbusd products off: compare the rest */
        snprintf(got, sizeof got, "%s %s", cpu_isa_name(isa), cpu_gemm_tier_name(cpu_gemm_tier_detect()));
        *strrchr(want, ' ') = '\0';
    } else {
        snprintf(got, sizeof got, "%s %s %s", cpu_isa_name(isa), cpu_gemm_tier_name(cpu_gemm_tier_detect()),
                 cpu_qlinear_kernel_name(isa));
    }
    printf("\n    chosen: %s (GEMV ISA, GEMM tier, q8/q4 product); expected from %s: %s", got,
           env ? "MAMBA2_TEST_EXPECT_CPU" : "/proc/cpuinfo", want);
    CU_ASSERT_STRING_EQUAL(got, want);
    /* MAMBA2_CPU_ISA=avx512bf16 (the class of AVX-512 CPUs without AMX) takes AMX out of the GEMM
     * and nothing else */
    const char *isa_env = getenv("MAMBA2_CPU_ISA"), *gemm_env = getenv("MAMBA2_CPU_GEMM");
    char *saved = isa_env ? strdup(isa_env) : NULL, *saved_gemm = gemm_env ? strdup(gemm_env) : NULL;
    unsetenv("MAMBA2_CPU_GEMM");
    setenv("MAMBA2_CPU_ISA", "avx512bf16", 1);
    CpuGemmTier best = cpu_gemm_tier_detect();
    CU_ASSERT_EQUAL(cpu_gemm_tier_active(), best == CPU_GEMM_AMX ? CPU_GEMM_AVX512BF16 : best);
    CU_ASSERT_EQUAL(cpu_isa_active(), isa);
    /* On that tier, the default precision runs the fp32 FMA kernel, and fast precision the vdpbf16ps
     * kernel only where the probe found it doing more multiply-adds a second than the FMAs. The
     * probe's ratio is physical: 32 multiply-adds an instruction against 16, issued from a quarter
     * as often to twice as often (on the CPUs measured: 0.5 on Emerald Rapids, 2 on Zen 4). */
    double gain = cpu_bf16_dot_gain();
    if (best >= CPU_GEMM_AVX512BF16) {
        Mamba2Tensor W = {"w", "mem", MAMBA2_BF16, 2, {64, 64}, NULL};
        printf("\n    vdpbf16ps / FMA multiply-adds a second: %.2f, so fast precision runs %s", gain,
               cpu_gemm_tier_name(cpu_linear_tier(&W, MAMBA2_PRECISION_FAST)));
        CU_ASSERT(gain >= 0.2 && gain <= 4.5);
        CU_ASSERT_EQUAL(cpu_linear_tier(&W, MAMBA2_PRECISION_DEFAULT), CPU_GEMM_AVX512);
        CU_ASSERT_EQUAL(cpu_linear_tier(&W, MAMBA2_PRECISION_FAST),
                        gain >= CPU_BF16_DOT_MIN_GAIN ? CPU_GEMM_AVX512BF16 : CPU_GEMM_AVX512);
    } else {
        CU_ASSERT_EQUAL(gain, 0.0); /* no AVX512_BF16: nothing probed */
    }
    if (saved) setenv("MAMBA2_CPU_ISA", saved, 1); else unsetenv("MAMBA2_CPU_ISA");
    if (saved_gemm) setenv("MAMBA2_CPU_GEMM", saved_gemm, 1);
    free(saved), free(saved_gemm);
}

/* Every ISA variant this CPU runs, every dtype, tails in k and in rows, B = 1..11 (every register-block width, and a second group of 8), overwrite and
 * accumulate, against a double-precision product of the same (rounded) weights. */
static void test_gemv_variants(void) {
    const Mamba2DType dts[] = {MAMBA2_BF16, MAMBA2_F16, MAMBA2_F32};
    const int shapes[][2] = {{37, 67}, {64, 256}, {5, 8}, {13, 300}};
    CpuIsa best = cpu_isa_detect();
    printf("\n    this CPU runs: scalar%s%s%s", best >= CPU_ISA_AVX2 ? ", avx2" : "",
           best >= CPU_ISA_AVX512 ? ", avx512" : " (the avx512 variant is not exercised here)",
           best >= CPU_ISA_AVX512BF16 ? ", avx512bf16 (bf16 weights: x in two bf16 parts, or one at fast precision)"
                                      : " (avx512bf16: skipped, not on this CPU)");
    double worst = 0, worst_split = 0, worst_fast = 0;
    for (size_t di = 0; di < 3; di++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            int rows = shapes[si][0], K = shapes[si][1], Bmax = 11;
            float *wf = malloc((size_t)rows * K * 4), *x = malloc((size_t)Bmax * K * 4);
            float *y = malloc((size_t)Bmax * rows * 4);
            double *want = malloc((size_t)Bmax * rows * sizeof *want);
            void *raw = malloc((size_t)rows * K * 4);
            test_fill_normal(wf, (size_t)rows * K, 1.0);
            test_fill_normal(x, (size_t)Bmax * K, 1.0);
            for (int i = 0; i < rows * K; i++) { /* store in the dtype, keep the rounded value */
                if (dts[di] == MAMBA2_BF16) {
                    ((uint16_t *)raw)[i] = mamba2_f32_to_bf16(wf[i]);
                    wf[i] = mamba2_bf16_to_f32(((uint16_t *)raw)[i]);
                } else if (dts[di] == MAMBA2_F16) {
                    /* f16 bits of a value with an exact half representation: scale to [-2, 2], 10 bits */
                    float v = roundf(wf[i] * 256.0f) / 256.0f;
                    v = fmaxf(fminf(v, 2.0f), -2.0f);
                    uint16_t h = 0;
                    if (v != 0) {
                        int e;
                        float mnt = frexpf(fabsf(v), &e); /* v = mnt·2^e, mnt in [0.5, 1) */
                        h = (uint16_t)((v < 0) << 15 | (e - 1 + 15) << 10 | ((int)(mnt * 2048.0f) - 1024));
                    }
                    ((uint16_t *)raw)[i] = h;
                    wf[i] = mamba2_f16_to_f32(h);
                } else {
                    ((float *)raw)[i] = wf[i];
                }
            }
            Mamba2Tensor W = {"w", "mem", dts[di], 2, {rows, K}, raw};
            for (int r = 0; r < rows; r++)
                for (int b = 0; b < Bmax; b++) {
                    double acc = 0;
                    for (int k = 0; k < K; k++) acc += (double)wf[(size_t)r * K + k] * x[(size_t)b * K + k];
                    want[(size_t)b * rows + r] = acc;
                }
            /* the avx512bf16 variant on bf16 weights rounds x: to two bf16 parts (BF16_SPLIT_TOL) or,
             * at fast precision, to one (FAST_KERNEL_TOL); every other variant reads x in fp32 */
            int dp = dts[di] == MAMBA2_BF16;
            for (int isa = 0; isa <= (int)best; isa++)
                for (int fast = 0; fast <= (isa == CPU_ISA_AVX512BF16 && dp); fast++)
                for (int B = 1; B <= Bmax; B++)
                    for (int accumulate = 0; accumulate < 2; accumulate++) {
                        Mamba2Precision prec = fast ? MAMBA2_PRECISION_FAST : MAMBA2_PRECISION_DEFAULT;
                        double tol = isa == CPU_ISA_AVX512BF16 && dp ? (fast ? FAST_KERNEL_TOL : BF16_SPLIT_TOL) : KERNEL_TOL;
                        for (int i = 0; i < B * rows; i++) y[i] = accumulate ? 1.0f : NAN;
                        /* rows in two calls, so a block boundary falls inside the matrix */
                        int split = rows / 2;
                        cpu_gemv_rows((CpuIsa)isa, &W, 0, split, x, K, B, y, rows, accumulate, prec);
                        cpu_gemv_rows((CpuIsa)isa, &W, split, rows - split, x, K, B, y + split, rows, accumulate, prec);
                        double num = 0, den = 0;
                        for (int i = 0; i < B * rows; i++) {
                            double w = want[i] + accumulate, e = y[i] - w;
                            num += e * e, den += w * w;
                        }
                        double err = sqrt(num / den);
                        double *w = tol == KERNEL_TOL ? &worst : fast ? &worst_fast : &worst_split;
                        if (!(err <= *w)) *w = err;
                        if (!(err <= tol))
                            printf("\n    %s %s %dx%d B=%d acc=%d fast=%d: %.1e", cpu_isa_name((CpuIsa)isa),
                                   mamba2_dtype_name(dts[di]), rows, K, B, accumulate, fast, err);
                        CU_ASSERT(err <= tol);
                    }
            free(wf), free(x), free(y), free(want), free(raw);
        }
    printf("\n    worst relative L2 over every variant, dtype, shape and batch: x in fp32 %.1e (bound %.0e); "
           "avx512bf16, x in two bf16 parts %.1e (bound %.0e), in one %.1e (bound %.0e)\n",
           worst, KERNEL_TOL, worst_split, BF16_SPLIT_TOL, worst_fast, FAST_KERNEL_TOL);
}

/* cpu_linear: the sgemm path (T > CPU_GEMV_MAX_ROWS) equals the GEMV path, for each dtype. */
static void test_linear_paths(void) {
    const Mamba2DType dts[] = {MAMBA2_BF16, MAMBA2_F16, MAMBA2_F32};
    /* tails in rows, K and T; K = 256: whole 32-column blocks, the AMX repack's fast path (rows 0..95) */
    const struct { int rows, K, T; } shapes[] = {{300, 72, 21}, {70, 4100, 40}, {100, 256, 33}};
    const char *was = getenv("MAMBA2_CPU_GEMM"); /* restored afterwards: the other tests run as asked */
    char *saved = was ? strdup(was) : NULL;
    for (int gemm = 0; gemm < 2; gemm++) { /* 0: sgemm on fp32 panels, 1: AMX (bf16 weights only) */
        if (gemm == 1 && !cpu_amx_available()) {
            printf("\n    AMX: not on this CPU (or not granted), its GEMM is not exercised here");
            continue;
        }
        if (gemm == 0) setenv("MAMBA2_CPU_GEMM", "sgemm", 1);
        else unsetenv("MAMBA2_CPU_GEMM");
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
            for (int di = 0; di < 3; di++) {
                if (gemm == 1 && dts[di] != MAMBA2_BF16) continue;
                int rows = shapes[si].rows, K = shapes[si].K, T = shapes[si].T;
                size_t es = mamba2_dtype_size(dts[di]);
                unsigned char *raw = malloc((size_t)rows * K * es);
                float *x = malloc((size_t)T * K * 4), *y1 = malloc((size_t)T * rows * 4), *y2 = malloc((size_t)T * rows * 4);
                float *scratch = malloc(cpu_linear_scratch_floats(2, K) * sizeof(float));
                test_fill_normal(x, (size_t)T * K, 1.0);
                for (int i = 0; i < rows * K; i++) {
                    float v = (float)(test_normal() * 0.5);
                    if (es == 4) memcpy(raw + 4 * (size_t)i, &v, 4);
                    else { /* bf16 bits; as f16 they are some finite value of the same magnitude range */
                        uint16_t h = dts[di] == MAMBA2_BF16 ? mamba2_f32_to_bf16(v) : (uint16_t)(0x3000 + (test_uniform() * 0x0fff));
                        memcpy(raw + 2 * (size_t)i, &h, 2);
                    }
                }
                Mamba2Tensor W = {"w", "mem", dts[di], 2, {rows, K}, raw};
                for (int i = 0; i < T * rows; i++) y1[i] = 1.0f; /* accumulate onto ones: Y += X·Wᵀ */
                cpu_linear(&W, x, K, T, y1, rows, 1, scratch, 2, MAMBA2_PRECISION_DEFAULT);
                for (int t = 0; t < T; t++) {
                    for (int r = 0; r < rows; r++) y2[(size_t)t * rows + r] = 1.0f;
                    cpu_gemv(cpu_isa_active(), &W, x + (size_t)t * K, K, 1, y2 + (size_t)t * rows, rows, 1, 2,
                             MAMBA2_PRECISION_DEFAULT);
                }
                double err = test_rel_l2(y1, y2, (size_t)T * rows), tol = gemm ? AMX_TOL : gemv_tol(dts[di]);
                printf("\n    %s %s %dx%d T=%d: GEMM vs gemv %.1e (tolerance %.0e)", gemm ? "amx  " : "sgemm",
                       mamba2_dtype_name(dts[di]), rows, K, T, err, tol);
                CU_ASSERT(err <= tol);
                free(raw), free(x), free(y1), free(y2), free(scratch);
            }
    }
    if (saved) setenv("MAMBA2_CPU_GEMM", saved, 1);
    else unsetenv("MAMBA2_CPU_GEMM");
    free(saved);
    printf("\n");
}

/* Every GEMM tier this CPU has, forced through MAMBA2_CPU_GEMM, against a double-precision product
 * of the same (rounded) weights, on fresh random shapes: T = 17 .. 40 (above the GEMV's range),
 * rows and K not multiples of the register or cache blocks (K up to 1500: several k blocks),
 * every dtype the tier takes, default and fast precision, overwrite and accumulate. */
static void test_gemm_tiers(void) {
    const CpuGemmTier tiers[] = {CPU_GEMM_SGEMM, CPU_GEMM_AVX2, CPU_GEMM_AVX512, CPU_GEMM_AVX512BF16, CPU_GEMM_AMX};
    const char *why[] = {"", "no AVX2+FMA+F16C", "no AVX-512F", "no AVX512_BF16", "no AMX (or not granted)"};
    const Mamba2DType dts[] = {MAMBA2_BF16, MAMBA2_F16, MAMBA2_F32};
    const char *was = getenv("MAMBA2_CPU_GEMM");
    char *saved = was ? strdup(was) : NULL;
    CpuGemmTier best = cpu_gemm_tier_detect();
    for (size_t ti = 0; ti < sizeof tiers / sizeof *tiers; ti++) {
        CpuGemmTier tier = tiers[ti];
        if (tier > best) {
            printf("\n    %-10s skipped: %s", cpu_gemm_tier_name(tier), why[tier]);
            continue;
        }
        setenv("MAMBA2_CPU_GEMM", cpu_gemm_tier_name(tier), 1);
        double worst[2] = {0, 0};
        for (int shape = 0; shape < 6; shape++) {
            int rows = 17 + (int)(test_uniform() * 300), K = 1 + (int)(test_uniform() * 700), T = 17 + (int)(test_uniform() * 24);
            if (shape == 0) K = 1100 + (int)(test_uniform() * 400); /* more than one k block on every tier */
            if (shape == 1) K |= 1;                                  /* odd K: a half pair in the bf16 tiers */
            for (int di = 0; di < 3; di++) {
                Mamba2DType dt = dts[di];
                if (tier >= CPU_GEMM_AVX512BF16 && dt != MAMBA2_BF16) continue; /* these take bf16 only */
                size_t es = mamba2_dtype_size(dt);
                unsigned char *raw = malloc((size_t)rows * K * es);
                float *wf = malloc((size_t)rows * K * 4), *x = malloc((size_t)T * K * 4), *y = malloc((size_t)T * rows * 4);
                double *want = malloc((size_t)T * rows * sizeof *want);
                float *scratch = malloc(cpu_linear_scratch_floats(2, K) * sizeof(float));
                test_fill_normal(x, (size_t)T * K, 1.0);
                for (size_t i = 0; i < (size_t)rows * K; i++) { /* stored in the dtype; wf keeps the rounded value */
                    float v = (float)(test_normal() * 0.5);
                    if (dt == MAMBA2_F32) memcpy(raw + 4 * i, &v, 4), wf[i] = v;
                    else {
                        /* f16: random finite bits of magnitude 1/8 .. 1/2, either sign */
                        uint16_t h = dt == MAMBA2_BF16 ? mamba2_f32_to_bf16(v)
                                                       : (uint16_t)((v < 0) << 15 | (0x3000 + (int)(test_uniform() * 0x0fff)));
                        memcpy(raw + 2 * i, &h, 2);
                        wf[i] = dt == MAMBA2_BF16 ? mamba2_bf16_to_f32(h) : mamba2_f16_to_f32(h);
                    }
                }
                for (int t = 0; t < T; t++) /* want[t][r] = Σ_k x[t][k] · w[r][k] in double */
                    for (int r = 0; r < rows; r++) {
                        double acc = 0;
                        for (int k = 0; k < K; k++) acc += (double)x[(size_t)t * K + k] * wf[(size_t)r * K + k];
                        want[(size_t)t * rows + r] = acc;
                    }
                Mamba2Tensor W = {"w", "mem", dt, 2, {rows, K}, raw};
                for (int fast = 0; fast < 2; fast++)
                    for (int accumulate = 0; accumulate < 2; accumulate++) {
                        for (int i = 0; i < T * rows; i++) y[i] = accumulate ? 1.0f : NAN;
                        cpu_linear(&W, x, K, T, y, rows, accumulate, scratch, 2,
                                   fast ? MAMBA2_PRECISION_FAST : MAMBA2_PRECISION_DEFAULT);
                        double num = 0, den = 0;
                        for (int i = 0; i < T * rows; i++) {
                            double w = want[i] + accumulate, e = y[i] - w;
                            num += e * e, den += w * w;
                        }
                        double err = sqrt(num / den);
                        /* fast precision changes the product on the bf16 tiers only */
                        int rounded = fast && tier >= CPU_GEMM_AVX512BF16;
                        double tol = rounded ? FAST_KERNEL_TOL : tier >= CPU_GEMM_AVX512BF16 ? BF16_SPLIT_TOL : KERNEL_TOL;
                        if (!(err <= worst[fast])) worst[fast] = err;
                        if (!(err <= tol))
                            printf("\n    %s %s %dx%d T=%d fast=%d acc=%d: %.1e > %.0e", cpu_gemm_tier_name(tier),
                                   mamba2_dtype_name(dt), rows, K, T, fast, accumulate, err, tol);
                        CU_ASSERT(err <= tol);
                    }
                free(raw), free(wf), free(x), free(y), free(want), free(scratch);
            }
        }
        printf("\n    %-10s vs double: default %.1e, fast %.1e", cpu_gemm_tier_name(tier), worst[0], worst[1]);
    }
    if (saved) setenv("MAMBA2_CPU_GEMM", saved, 1);
    else unsetenv("MAMBA2_CPU_GEMM");
    free(saved);
    printf("\n");
}

/* ‖y − (want + accumulate)‖ / √Σ (terms + accumulate²) over n outputs: the error relative to the size of
 * the products' terms (terms[i] = Σ_k (x_k · w_k)² of output i) rather than to |want|. Rounding x to
 * bf16 moves output i by about 2⁻⁹/√3 · √terms[i] whatever its value, and random signs make |want|
 * that large only on average: with one row and a few vectors, |want| came out small enough by chance
 * (cancellation) to put the rounded products at 4.1e-3 – 4.6e-3 of it (2026-12-05, shape 1 × 417),
 * past FAST_KERNEL_TOL, though the kernels were right. */
static double rel_to_terms(const float *y, const double *want, const double *terms, int n, int accumulate) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        const double d = y[i] - (want[i] + accumulate);
        num += d * d, den += terms[i] + accumulate;
    }
    return sqrt(num / den);
}

/* The packed bf16 copy (packed_bf16.h): its rows read back equal the stored matrix (zeros in the
 * padding); its decode products on every ISA variant this CPU has, B = 1 .. 17, and its GEMMs on
 * every tier (forced through MAMBA2_CPU_GEMM), against a double product of the same weights, on
 * fresh random shapes with rows and K not multiples of the group (8) or the chunk (32). The
 * tolerances are the stored matrix's (the same products in another order), on the error relative to
 * the products' size, √Σ (x·w)² (see rel_to_terms()). Outputs start as NaN (overwrite) or ones
 * (accumulate), and the entries past the last row must stay untouched. */
static void test_packed_bf16(void) {
    const CpuGemmTier tiers[] = {CPU_GEMM_SGEMM, CPU_GEMM_AVX2, CPU_GEMM_AVX512, CPU_GEMM_AVX512BF16, CPU_GEMM_AMX};
    const char *was = getenv("MAMBA2_CPU_GEMM");
    char *saved = was ? strdup(was) : NULL;
    const CpuIsa best = cpu_isa_detect();
    const CpuGemmTier best_tier = cpu_gemm_tier_detect();
    double worst_gemv[2] = {0, 0}, worst_gemm[2] = {0, 0};
    for (int shape = 0; shape < 6; shape++) {
        int rows = 1 + (int)(test_uniform() * 150), K = 1 + (int)(test_uniform() * 700);
        if (shape == 0) rows = 8, K = 32;                         /* whole groups and chunks, no padding */
        if (shape == 1) K = 1100 + (int)(test_uniform() * 400);  /* more than one k block in the GEMMs */
        const int Bmax = 17, Tg = 17 + (int)(test_uniform() * 24), n = Bmax > Tg ? Bmax : Tg, guard = 3;
        uint16_t *raw = malloc((size_t)rows * K * 2), *back = malloc((size_t)(rows + 5) * (K + 40) * 2);
        float *wf = malloc((size_t)rows * K * 4), *x = malloc((size_t)n * K * 4), *y = malloc(((size_t)n * rows + guard) * 4);
        double *want = malloc((size_t)n * rows * sizeof *want), *terms = malloc((size_t)n * rows * sizeof *terms);
        float *scratch = malloc(cpu_linear_scratch_floats(2, K) * sizeof(float));
        for (size_t i = 0; i < (size_t)rows * K; i++) raw[i] = mamba2_f32_to_bf16((float)test_normal()), wf[i] = mamba2_bf16_to_f32(raw[i]);
        test_fill_normal(x, (size_t)n * K, 1.0);
        for (int t = 0; t < n; t++) /* want[t][r] = Σ_k x[t][k] · w[r][k] in double; terms[t][r] = Σ_k (x · w)² */
            for (int r = 0; r < rows; r++) {
                double acc = 0, sq = 0;
                for (int k = 0; k < K; k++) {
                    const double xw = (double)x[(size_t)t * K + k] * wf[(size_t)r * K + k];
                    acc += xw, sq += xw * xw;
                }
                want[(size_t)t * rows + r] = acc, terms[(size_t)t * rows + r] = sq;
            }
        Mamba2Tensor W = {"w", "mem", MAMBA2_BF16, 2, {rows, K}, raw};
        CpuPackedBf16 p;
        Mamba2Error e;
        CU_ASSERT_FATAL(cpu_packed_bf16_pack(&W, 2, &p, &e) == 0);
        /* rows [0, rows + 5) × columns [0, K + 40) read back: W, then zeros */
        cpu_packed_bf16_rows(&p, 0, rows + 5, 0, K + 40, back);
        int same = 1;
        for (int r = 0; r < rows + 5; r++)
            for (int k = 0; k < K + 40; k++) same &= back[(size_t)r * (K + 40) + k] == (r < rows && k < K ? raw[(size_t)r * K + k] : 0);
        CU_ASSERT(same);
        for (int isa = 0; isa <= (int)best; isa++)
            for (int fast = 0; fast <= (isa == CPU_ISA_AVX512BF16); fast++)
                for (int B = 1; B <= Bmax; B++) {
                    const int accumulate = B % 2;
                    const Mamba2Precision prec = fast ? MAMBA2_PRECISION_FAST : MAMBA2_PRECISION_DEFAULT;
                    const double tol = isa == CPU_ISA_AVX512BF16 ? (fast ? FAST_KERNEL_TOL : BF16_SPLIT_TOL) : KERNEL_TOL;
                    for (int i = 0; i < B * rows + guard; i++) y[i] = i < B * rows ? (accumulate ? 1.0f : NAN) : -7.0f;
                    const int64_t groups = p.rows_pad / CPU_PACK_ROWS, split = groups / 2; /* two calls */
                    cpu_packed_bf16_gemv_groups((CpuIsa)isa, &p, 0, split, x, K, B, y, rows, accumulate, prec);
                    cpu_packed_bf16_gemv_groups((CpuIsa)isa, &p, split, groups, x, K, B, y, rows, accumulate, prec);
                    const double err = rel_to_terms(y, want, terms, B * rows, accumulate);
                    if (!(err <= worst_gemv[fast])) worst_gemv[fast] = err;
                    if (!(err <= tol))
                        printf("\n    packed gemv %s %dx%d B=%d fast=%d: %.1e > %.0e", cpu_isa_name((CpuIsa)isa), rows, K, B, fast, err, tol);
                    CU_ASSERT(err <= tol);
                    for (int i = 0; i < guard; i++) CU_ASSERT(y[B * rows + i] == -7.0f);
                }
        for (size_t ti = 0; ti < sizeof tiers / sizeof *tiers; ti++) {
            if (tiers[ti] > best_tier) continue; /* test_gemm_tiers() says which tiers this CPU lacks */
            setenv("MAMBA2_CPU_GEMM", cpu_gemm_tier_name(tiers[ti]), 1);
            for (int fast = 0; fast < 2; fast++) {
                const int accumulate = fast;
                for (int i = 0; i < Tg * rows + guard; i++) y[i] = i < Tg * rows ? (accumulate ? 1.0f : NAN) : -7.0f;
                cpu_packed_bf16_linear(&W, &p, x, K, Tg, y, rows, accumulate, scratch, 2,
                                       fast ? MAMBA2_PRECISION_FAST : MAMBA2_PRECISION_DEFAULT);
                const double err = rel_to_terms(y, want, terms, Tg * rows, accumulate);
                const int rounded = fast && tiers[ti] >= CPU_GEMM_AVX512BF16;
                const double tol = rounded ? FAST_KERNEL_TOL : tiers[ti] >= CPU_GEMM_AVX512BF16 ? BF16_SPLIT_TOL : KERNEL_TOL;
                if (!(err <= worst_gemm[rounded])) worst_gemm[rounded] = err;
                if (!(err <= tol))
                    printf("\n    packed gemm %s %dx%d T=%d fast=%d: %.1e > %.0e", cpu_gemm_tier_name(tiers[ti]), rows, K, Tg, fast, err, tol);
                CU_ASSERT(err <= tol);
                for (int i = 0; i < guard; i++) CU_ASSERT(y[Tg * rows + i] == -7.0f);
            }
        }
        if (saved) setenv("MAMBA2_CPU_GEMM", saved, 1);
        else unsetenv("MAMBA2_CPU_GEMM");
        cpu_packed_bf16_free(&p);
        free(raw), free(back), free(wf), free(x), free(y), free(want), free(terms), free(scratch);
    }
    free(saved);
    printf("\n    worst relative L2 against double: decode products %.1e (x rounded to bf16: %.1e), GEMMs %.1e (rounded: %.1e)\n",
           worst_gemv[0], worst_gemv[1], worst_gemm[0], worst_gemm[1]);
}

/* The read of memory already there (the weights' own pages, cpu_read_bandwidth_of()): regions at
 * any 4-byte alignment (a checkpoint's tensors are not 32-byte aligned), only their whole 2 MiB
 * blocks read, a positive finite rate; nothing to read gives 0. */
static void test_read_own_pages(void) {
    const size_t mib = (size_t)1 << 20;
    char *buf = malloc(9 * mib + 64);
    CU_ASSERT_FATAL(buf != NULL);
    memset(buf, 1, 9 * mib + 64);
    const void *regions[3] = {buf + 4, buf + 5 * mib + 24, buf + 7 * mib};
    const size_t bytes[3] = {5 * mib, 1 * mib, 2 * mib};
    const double gbps = cpu_read_bandwidth_of(regions, bytes, 3, 2, 1);
    printf("\n    3 regions (2 + 0 + 1 whole blocks), 2 threads: %.1f GB/s", gbps);
    CU_ASSERT(gbps > 0 && isfinite(gbps));
    CU_ASSERT(cpu_read_bandwidth_of(regions + 1, bytes + 1, 1, 2, 1) == 0); /* 1 MiB: no whole block */
    free(buf);
    printf("\n");
}

/* The BLAS chunked SSD (strided x/B/C/y, D = NULL) against ref's ssd_chunked, from a random state. */
static void test_ssd_blas(void) {
    struct {
        SSDDims d;
        int Q;
    } cases[] = {{{37, 4, 8, 2, 6}, 8}, {{64, 6, 4, 3, 16}, 16}, {{5, 2, 3, 1, 4}, 8}, {{300, 8, 16, 2, 32}, 64}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        SSDDims d = cases[k].d;
        int Q = cases[k].Q, HP = d.H * d.P, GN = d.G * d.N, ld = HP + 2 * GN + 3; /* padded rows */
        size_t ns = (size_t)d.H * d.P * d.N;
        float *row = malloc((size_t)d.T * ld * 4), *x = malloc((size_t)d.T * HP * 4), *B = malloc((size_t)d.T * GN * 4);
        float *C = malloc((size_t)d.T * GN * 4), *dt = malloc((size_t)d.T * d.H * 4), *A = malloc(d.H * 4);
        float *s_ref = malloc(ns * 4), *s_cpu = malloc(ns * 4), *y_ref = malloc((size_t)d.T * HP * 4);
        float *y_cpu = malloc((size_t)d.T * (HP + 5) * 4);
        test_fill_normal(row, (size_t)d.T * ld, 1.0);
        test_fill_normal(s_ref, ns, 1.0);
        memcpy(s_cpu, s_ref, ns * 4);
        for (int t = 0; t < d.T; t++) {
            memcpy(x + (size_t)t * HP, row + (size_t)t * ld, HP * 4);
            memcpy(B + (size_t)t * GN, row + (size_t)t * ld + HP, GN * 4);
            memcpy(C + (size_t)t * GN, row + (size_t)t * ld + HP + GN, GN * 4);
        }
        for (int i = 0; i < d.T * d.H; i++) dt[i] = (float)(1e-3 * pow(300.0, test_uniform())); /* up to 0.3 */
        for (int h = 0; h < d.H; h++) A[h] = (float)-(1.0 + 15.0 * test_uniform());
        CU_ASSERT_EQUAL(ssd_chunked(d, Q, x, dt, A, B, C, s_ref, y_ref), 0);
        CpuSsdScratch s = {0};
        CU_ASSERT_EQUAL_FATAL(cpu_ssd_reserve(&s, d, Q, 2), 0);
        cpu_ssd_chunked(d, Q, row, ld, dt, A, NULL, row + HP, row + HP + GN, ld, s_cpu, y_cpu, HP + 5, &s, 2);
        double num = 0, den = 0;
        for (int t = 0; t < d.T; t++)
            for (int i = 0; i < HP; i++) {
                double e = y_cpu[(size_t)t * (HP + 5) + i] - y_ref[(size_t)t * HP + i];
                num += e * e, den += (double)y_ref[(size_t)t * HP + i] * y_ref[(size_t)t * HP + i];
            }
        double ey = sqrt(num / den), es = test_rel_l2(s_cpu, s_ref, ns);
        printf("\n    T=%-3d H=%d P=%-2d G=%d N=%-2d Q=%-2d: y %.1e, state %.1e", d.T, d.H, d.P, d.G, d.N, Q, ey, es);
        CU_ASSERT(ey <= 1e-5);
        CU_ASSERT(es <= 1e-5);
        cpu_ssd_free(&s);
        free(row), free(x), free(B), free(C), free(dt), free(A), free(s_ref), free(s_cpu), free(y_ref), free(y_cpu);
    }
    printf("\n");
}

/* ------------------------------------------------------------------ whole model */

/* All-position logits [T, V] of a backend: one prefill, or token by token through step. */
static int run_backend(Mamba2Backend *b, const int32_t *tok, int T, int by_step, float *logits) {
    Mamba2State st;
    Mamba2Error e = {{0}};
    int V = b->model->cfg.vocab_size, rc = mamba2_state_init(&st, &b->model->cfg, &e);
    Mamba2State *one = &st;
    if (!rc && !by_step) rc = mamba2_backend_prefill(b, &st, tok, T, logits, 1, &e);
    for (int t = 0; !rc && by_step && t < T; t++) rc = mamba2_backend_step(b, &one, &tok[t], 1, logits + (size_t)t * V, &e);
    if (rc) printf("\n    %s: %s", b->name, e.msg);
    mamba2_state_free(&st);
    return rc;
}

static Mamba2Backend *make_prec(const char *name, const Mamba2Model *m, int threads, Mamba2Precision precision) {
    Mamba2BackendOptions o = {0};
    o.n_threads = threads;
    o.precision = precision;
    Mamba2Backend *b = NULL;
    Mamba2Error e = {{0}};
    if (mamba2_backend_create(name, m, &o, &b, &e)) printf("\n    %s", e.msg);
    return b;
}

static Mamba2Backend *make(const char *name, const Mamba2Model *m, int threads) {
    return make_prec(name, m, threads, MAMBA2_PRECISION_DEFAULT);
}

/* Each fixture: cpu prefill and cpu step against ref and against transformers' logits;
 * the fixture's 32 greedy tokens through cpu prefill + steps. Every fixture's prompt is longer
 * than CPU_GEMV_MAX_ROWS, so prefill runs cpu_linear()'s GEMM tier. Then prefill at fast
 * precision against ref, within FAST_MODEL_TOL and with the same argmax everywhere. */
static void test_fixtures(void) {
    char names[32][64];
    int n = test_list_fixtures(names, 32);
    CU_ASSERT(n >= 1);
    for (int i = 0; i < n; i++) {
        TestFixture fx;
        if (test_load_fixture(names[i], &fx)) {
            CU_FAIL("fixture did not load");
            continue;
        }
        int V = fx.model.cfg.vocab_size, T = fx.T;
        size_t nl = (size_t)T * V;
        float *ref = malloc(nl * 4), *pre = malloc(nl * 4), *stp = malloc(nl * 4);
        Mamba2Backend *rb = make("ref", &fx.model, 0), *cb = make("cpu", &fx.model, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cb);
        CU_ASSERT_EQUAL(run_backend(rb, fx.tokens, T, 0, ref), 0);
        CU_ASSERT_EQUAL(run_backend(cb, fx.tokens, T, 0, pre), 0);
        CU_ASSERT_EQUAL(run_backend(cb, fx.tokens, T, 1, stp), 0);
        double e_pre = test_max_row_rel_l2(pre, ref, T, V), e_stp = test_max_row_rel_l2(stp, ref, T, V);
        double o_pre = test_max_row_rel_l2(pre, fx.logits, T, V);
        int am = argmax_mismatches(pre, ref, T, V) + argmax_mismatches(stp, ref, T, V);
        /* greedy continuation */
        Mamba2State st;
        Mamba2Error e = {{0}};
        mamba2_state_init(&st, &fx.model.cfg, &e);
        float *lg = malloc(V * 4);
        int agree = 0;
        CU_ASSERT_EQUAL(mamba2_backend_prefill(cb, &st, fx.tokens, T, lg, 0, &e), 0);
        Mamba2State *one = &st;
        for (int k = 0; k < fx.n_greedy; k++) {
            int32_t best = argmax(lg, V);
            if (best != fx.greedy[k]) break;
            agree++;
            if (mamba2_backend_step(cb, &one, &best, 1, lg, &e)) break;
        }
        printf("\n    %-28s T=%-3d vs ref: prefill %.1e step %.1e | vs transformers %.1e | argmax diffs %d | greedy %d/%d",
               names[i], T, e_pre, e_stp, o_pre, am, agree, fx.n_greedy);
        CU_ASSERT(e_pre <= CPU_TOL);
        CU_ASSERT(e_stp <= CPU_TOL);
        CU_ASSERT(o_pre <= CPU_TOL);
        CU_ASSERT_EQUAL(am, 0);
        CU_ASSERT_EQUAL(agree, fx.n_greedy);
        CU_ASSERT(T > CPU_GEMV_MAX_ROWS);
        Mamba2Backend *fb = make_prec("cpu", &fx.model, 0, MAMBA2_PRECISION_FAST);
        CU_ASSERT_PTR_NOT_NULL_FATAL(fb);
        CU_ASSERT_EQUAL(run_backend(fb, fx.tokens, T, 0, pre), 0);
        double e_fast = test_max_row_rel_l2(pre, ref, T, V);
        int am_fast = argmax_mismatches(pre, ref, T, V);
        printf("\n    %-28s fast precision prefill vs ref %.1e (tolerance %.0e) | argmax diffs %d", names[i], e_fast,
               FAST_MODEL_TOL, am_fast);
        CU_ASSERT(e_fast <= FAST_MODEL_TOL);
        CU_ASSERT_EQUAL(am_fast, 0);
        mamba2_backend_destroy(fb);
        free(lg);
        mamba2_state_free(&st);
        mamba2_backend_destroy(rb);
        mamba2_backend_destroy(cb);
        free(ref), free(pre), free(stp);
        test_free_fixture(&fx);
    }
    printf("\n");
}

/* A fresh random tiny model written to a temporary directory and loaded. */
typedef struct {
    char *dir;
    Mamba2Model m;
} TinyModel;

static int tiny_open(TinyModel *tm, const TinyModelSpec *s) {
    Mamba2Error e = {{0}};
    tm->dir = test_tmpdir();
    if (!tm->dir || test_write_tiny_model(tm->dir, s) || mamba2_model_load(tm->dir, &tm->m, &e)) {
        printf("\n    tiny model: %s", e.msg);
        return -1;
    }
    return 0;
}

static void tiny_close(TinyModel *tm) {
    mamba2_model_free(&tm->m);
    test_rmtree(tm->dir);
    free(tm->dir);
}

static void random_tokens(int32_t *tok, int T, int V) {
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(test_uniform() * V);
}

/* The near-tie rule itself: a flip that spread-out noise explains is a tie, one that needs an error
 * concentrated on the top entries is counted, and agreeing rows count neither way. */
static void test_near_tie_rule(void) {
    enum { V = 50 };
    float want[2 * V], got[2 * V];
    for (int i = 0; i < 2 * V; i++) want[i] = got[i] = (float)((i * 37) % V) / V; /* one max per row */
    int top = 0;
    for (int i = 1; i < V; i++) top = want[i] > want[top] ? i : top;
    int ties = 0;
    CU_ASSERT_EQUAL(argmax_mismatches_beyond_ties(got, want, 2, V, &ties), 0);
    CU_ASSERT_EQUAL(ties, 0);
    /* row 0: a second entry 1e-6 below the top, and noise of ±1e-6 everywhere flips them */
    int second = (top + 1) % V;
    want[second] = got[second] = want[top] - 1e-6f;
    for (int i = 0; i < V; i++) got[i] += (i == second ? 1e-6f : i == top ? -1e-6f : (i % 2 ? 1e-6f : -1e-6f));
    /* row 1: the top's runner-up (1/V below it) lifted past it by an error on that entry alone */
    int runner = top == 0;
    for (int i = 0; i < V; i++) runner = i != top && want[V + i] > want[V + runner] ? i : runner;
    got[V + runner] += 1.25f / V; /* the margin is 1 / V */
    CU_ASSERT_EQUAL(argmax_mismatches_beyond_ties(got, want, 2, V, &ties), 1);
    CU_ASSERT_EQUAL(ties, 1);
}

/* Fresh random models (new weights every run): F32 and BF16, G > 1, tied and untied, odd widths
 * (k tails in every kernel), T not a multiple of Q, conv widths other than Mamba-2's 4 (a step takes
 * the general conv loop there, the one-pass width-4 loop otherwise), no conv bias: cpu prefill and
 * cpu step against ref. */
static void test_random_models(void) {
    struct {
        const char *what, *dtype;
        int d, H, P, G, N, Q, tie, T, K, no_bias;
    } cases[] = {{"F32 d=16 G=2 Q=4", "F32", 16, 4, 8, 2, 8, 4, 0, 37, 4, 0},
                 {"BF16 d=20 G=2 Q=3 tied", "BF16", 20, 4, 10, 2, 6, 3, 1, 41, 4, 0},
                 {"BF16 d=64 G=4 Q=16", "BF16", 64, 8, 16, 4, 16, 16, 0, 100, 4, 0},
                 {"F32 d=24 G=1 Q=5 T=6", "F32", 24, 3, 16, 1, 8, 5, 0, 6, 4, 0},
                 /* chunk_size above CPU_SSD_CHUNK: the CPU runs chunks of 32, the reference of 256 */
                 {"BF16 d=64 G=2 Q=256", "BF16", 64, 4, 32, 2, 16, 256, 0, 300, 4, 0},
                 {"F32 d=16 G=2 d_conv=3", "F32", 16, 4, 8, 2, 8, 4, 0, 23, 3, 0},
                 {"BF16 d=20 G=2 d_conv=6", "BF16", 20, 4, 10, 2, 6, 3, 0, 29, 6, 0},
                 {"F32 d=16 no conv bias", "F32", 16, 4, 8, 2, 8, 4, 0, 19, 4, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        TinyModelSpec s;
        test_tiny_spec_default(&s);
        s.dtype = cases[k].dtype, s.d_model = cases[k].d, s.n_heads = cases[k].H, s.head_dim = cases[k].P;
        s.n_groups = cases[k].G, s.d_state = cases[k].N, s.chunk_size = cases[k].Q, s.tie = cases[k].tie;
        s.d_conv = cases[k].K, s.no_conv_bias = cases[k].no_bias, s.n_layer = 3;
        TinyModel tm;
        CU_ASSERT_EQUAL_FATAL(tiny_open(&tm, &s), 0);
        int T = cases[k].T, V = s.vocab_size;
        int32_t *tok = malloc(T * sizeof *tok);
        random_tokens(tok, T, V);
        float *ref = malloc((size_t)T * V * 4), *pre = malloc((size_t)T * V * 4), *stp = malloc((size_t)T * V * 4);
        Mamba2Backend *rb = make("ref", &tm.m, 0), *cb = make("cpu", &tm.m, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cb);
        CU_ASSERT_EQUAL(run_backend(rb, tok, T, 0, ref), 0);
        CU_ASSERT_EQUAL(run_backend(cb, tok, T, 0, pre), 0);
        CU_ASSERT_EQUAL(run_backend(cb, tok, T, 1, stp), 0);
        double e1 = test_max_row_rel_l2(pre, ref, T, V), e2 = test_max_row_rel_l2(stp, ref, T, V);
        double e3 = test_max_row_rel_l2(stp, pre, T, V);
        int ties = 0;
        int am = argmax_mismatches_beyond_ties(pre, ref, T, V, &ties) + argmax_mismatches_beyond_ties(stp, ref, T, V, &ties);
        printf("\n    %-24s T=%-3d vs ref: prefill %.1e step %.1e | prefill vs step %.1e | argmax diffs %d (+ %d near-ties)",
               cases[k].what, T, e1, e2, e3, am, ties);
        CU_ASSERT(e1 <= CPU_TOL);
        CU_ASSERT(e2 <= CPU_TOL);
        CU_ASSERT(e3 <= CPU_TOL);
        CU_ASSERT_EQUAL(am, 0);
        mamba2_backend_destroy(rb);
        mamba2_backend_destroy(cb);
        free(tok), free(ref), free(pre), free(stp);
        tiny_close(&tm);
    }
    printf("\n");
}

/* Four steps of B sequences on the same random tokens: batched on @p cb (the states @p pa) and one
 * sequence at a time on @p sb (the states @p single); logits into @p la and @p ls [B, V]. Returns the
 * worst relative L2 of a row of logits; with @p ties, also asserts at each step that the argmax
 * agrees wherever the top two are not near-tied (counting the near-ties). */
static double steps_batched_vs_single(Mamba2Backend *cb, Mamba2State **pa, Mamba2Backend *sb, Mamba2State *single,
                                      int B, float *la, float *ls, int *ties) {
    const int V = cb->model->cfg.vocab_size;
    Mamba2Error e = {{0}};
    int32_t *next = malloc((size_t)B * sizeof *next);
    double worst = 0;
    for (int step = 0; step < 4; step++) {
        random_tokens(next, B, V);
        CU_ASSERT_EQUAL(mamba2_backend_step(cb, pa, next, B, la, &e), 0);
        for (int i = 0; i < B; i++) {
            Mamba2State *one = &single[i];
            CU_ASSERT_EQUAL(mamba2_backend_step(sb, &one, &next[i], 1, ls + (size_t)i * V, &e), 0);
        }
        double err = test_max_row_rel_l2(la, ls, B, V);
        worst = err > worst ? err : worst;
        if (ties) CU_ASSERT_EQUAL(argmax_mismatches_beyond_ties(la, ls, B, V, ties), 0);
    }
    free(next);
    return worst;
}

/* Four steps of 3 sequences on @p cb, batched, against the same steps one sequence at a time on
 * @p rb: the worst relative L2 of a row of logits. Three sequences take the GEMV kernel (the batched
 * product the decode trial chose), as the single steps of the other tests do not. */
static double batched_steps_vs(Mamba2Backend *cb, Mamba2Backend *rb) {
    const Mamba2Config *c = &cb->model->cfg;
    enum { B = 3 };
    const int V = c->vocab_size;
    Mamba2State a[B], r[B], *pa[B];
    Mamba2Error e = {{0}};
    float *la = malloc((size_t)B * V * 4), *lr = malloc((size_t)B * V * 4);
    for (int i = 0; i < B; i++) {
        CU_ASSERT_EQUAL(mamba2_state_init(&a[i], c, &e) || mamba2_state_init(&r[i], c, &e), 0);
        pa[i] = &a[i];
    }
    double worst = steps_batched_vs_single(cb, pa, rb, r, B, la, lr, NULL);
    for (int i = 0; i < B; i++) mamba2_state_free(&a[i]), mamba2_state_free(&r[i]);
    free(la), free(lr);
    return worst;
}

/* A random BF16 model of @p n_layer layers, d_model 64, for the load trials' tests. */
static int open_bf16_model(TinyModel *tm, int n_layer) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.dtype = "BF16", s.d_model = 64, s.n_heads = 8, s.head_dim = 16, s.n_groups = 2, s.d_state = 16, s.n_layer = n_layer;
    return tiny_open(tm, &s);
}

/* The ways of bf16 decode timed at load (bf16_decode_choice.h): each outcome forced through
 * MAMBA2_CPU_PACK_MIN and MAMBA2_CPU_LOWER_MIN (packed or in place; on a CPU with AVX512_BF16 also
 * vdpbf16ps or the AVX-512F FMA product) on a random BF16 model of 8 layers (more matrices than the 16
 * timed at most), each named with the way kept and the others' measured times, and every way's cpu prefill,
 * step and batched step against ref. */
static void test_bf16_decode_timed(void) {
    TinyModel tm;
    CU_ASSERT_EQUAL_FATAL(open_bf16_model(&tm, 8), 0);
    const int T = 19, V = tm.m.cfg.vocab_size;
    int32_t tok[19];
    random_tokens(tok, T, V);
    float *ref = malloc((size_t)T * V * 4), *pre = malloc((size_t)T * V * 4), *stp = malloc((size_t)T * V * 4);
    Mamba2Backend *rb = make("ref", &tm.m, 0);
    CU_ASSERT_EQUAL(run_backend(rb, tok, T, 0, ref), 0);
    char *was = getenv("MAMBA2_CPU_PACK") ? strdup(getenv("MAMBA2_CPU_PACK")) : NULL;
    setenv("MAMBA2_CPU_PACK", "timed", 1);
    const CpuIsa own = cpu_isa_active();
    const int lower = own == CPU_ISA_AVX512BF16; /* the AVX-512F product to time beside vdpbf16ps */
    if (!lower) printf("\n    vdpbf16ps against FMA skipped: this CPU (as MAMBA2_CPU_ISA leaves it) has no AVX512_BF16");
    char own_named[32];
    snprintf(own_named, sizeof own_named, "%s, ", cpu_isa_name(own));
    const struct {
        const char *pack_min, *lower_min, *layout;
    } cases[4] = {{"0.001", "1000", "bf16 packed at load (timed at load: "},
                  {"1000", "1000", "bf16 in place (timed at load: "},
                  {"0.001", "0.001", "bf16 packed at load (timed at load: "},
                  {"1000", "0.001", "bf16 in place (timed at load: "}};
    for (int k = 0; k < (lower ? 4 : 2); k++) {
        setenv("MAMBA2_CPU_PACK_MIN", cases[k].pack_min, 1);
        setenv("MAMBA2_CPU_LOWER_MIN", cases[k].lower_min, 1);
        Mamba2Backend *cb = make("cpu", &tm.m, 2);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cb);
        Mamba2KernelNames names;
        memset(&names, 0, sizeof names);
        cb->kernels(cb, &names);
        CU_ASSERT_PTR_NOT_NULL(strstr(names.gemv, cases[k].layout));
        /* vdpbf16ps kept in the first two cases, the FMA product in the last two, for one sequence
         * and for several */
        CU_ASSERT_EQUAL(strncmp(names.gemv, own_named, strlen(own_named)) == 0, k < 2);
        if (lower) CU_ASSERT_PTR_NOT_NULL(strstr(names.gemv, k < 2 ? "; batched: avx512bf16 (" : "; batched: avx512 ("));
        /* the last way named, with its time relative to the way kept: "... 1.08x)" */
        const char *r = strstr(names.gemv, "timed at load: "), *end = r ? strrchr(r, ')') : NULL, *num = end;
        while (num && num > r && num[-1] != ' ') num--;
        CU_ASSERT(end && end[-1] == 'x' && atof(num) > 0);
        CU_ASSERT_EQUAL(run_backend(cb, tok, T, 0, pre), 0);
        CU_ASSERT_EQUAL(run_backend(cb, tok, T, 1, stp), 0);
        double e1 = test_max_row_rel_l2(pre, ref, T, V), e2 = test_max_row_rel_l2(stp, ref, T, V);
        double e3 = batched_steps_vs(cb, rb);
        printf("\n    PACK_MIN=%-5s LOWER_MIN=%-5s %s | vs ref: prefill %.1e step %.1e batched step %.1e", cases[k].pack_min,
               cases[k].lower_min, names.gemv, e1, e2, e3);
        CU_ASSERT(e1 <= CPU_TOL);
        CU_ASSERT(e2 <= CPU_TOL);
        CU_ASSERT(e3 <= CPU_TOL);
        mamba2_backend_destroy(cb);
    }
    unsetenv("MAMBA2_CPU_PACK_MIN"), unsetenv("MAMBA2_CPU_LOWER_MIN");
    if (was) setenv("MAMBA2_CPU_PACK", was, 1), free(was);
    else unsetenv("MAMBA2_CPU_PACK");
    printf("\n");
    mamba2_backend_destroy(rb);
    free(ref), free(pre), free(stp);
    tiny_close(&tm);
}

static int64_t ahead_l2_now(void) { return cpu_decode_ahead_l2(); }
static int64_t q8_lines_now(void) { return cpu_q8_decode_lines(); }
static int64_t gemv_prefetch_now(void) { return cpu_gemv_prefetch(); }

/* A decode read trial at load (choose_decode_reads() in backend_cpu.c): the outcome kept [o] forced
 * through @p min_env (the second value of the trial kept at 0.001, the first at 1000) for the
 * backend of weights @p f on @p tm, named @p want[o] in its decode kernels' name, with @p now()
 * returning @p value[o] after; and since neither the order of the reads nor a prefetch changes a sum,
 * prefill and steps give the same bits either way. */
static void read_trial_outcomes(TinyModel *tm, Mamba2WeightFormat f, const char *min_env, const char *const want[2],
                                int64_t (*now)(void), const int64_t value[2]) {
    const int T = 19, V = tm->m.cfg.vocab_size;
    int32_t tok[19];
    random_tokens(tok, T, V);
    float *out[2][2]; /* [outcome][prefill, steps] [T, V] */
    for (int o = 0; o < 2; o++) {
        setenv(min_env, o ? "0.001" : "1000", 1);
        Mamba2BackendOptions opt = {0};
        opt.n_threads = 2, opt.weights = f;
        Mamba2Backend *cb = NULL;
        Mamba2Error e = {{0}};
        CU_ASSERT_EQUAL_FATAL(mamba2_backend_create("cpu", &tm->m, &opt, &cb, &e), 0);
        Mamba2KernelNames names;
        memset(&names, 0, sizeof names);
        cb->kernels(cb, &names);
        printf("\n    %s, %s=%s: %s", mamba2_weight_format_name(f), min_env, o ? "0.001" : "1000", names.gemv);
        CU_ASSERT_PTR_NOT_NULL(strstr(names.gemv, want[o]));
        CU_ASSERT_EQUAL(now(), value[o]);
        for (int by_step = 0; by_step < 2; by_step++) {
            out[o][by_step] = malloc((size_t)T * V * sizeof(float));
            CU_ASSERT_EQUAL(run_backend(cb, tok, T, by_step, out[o][by_step]), 0);
        }
        mamba2_backend_destroy(cb);
    }
    unsetenv(min_env);
    for (int by_step = 0; by_step < 2; by_step++) {
        CU_ASSERT_EQUAL(memcmp(out[0][by_step], out[1][by_step], (size_t)T * V * sizeof(float)), 0);
        free(out[0][by_step]), free(out[1][by_step]);
    }
}

/* cpu_cache_bytes(): each level's size as Linux describes CPU 0's caches where it does (the kernels'
 * blocking and the load trials' sizes follow it), the levels in order, and the same answer twice
 * (it is found once). */
static void test_cache_sizes(void) {
    size_t b[4] = {0};
    for (int level = 1; level <= 3; level++) {
        b[level] = cpu_cache_bytes(level);
        CU_ASSERT_EQUAL(cpu_cache_bytes(level), b[level]);
        /* sysfs: the data or unified cache of this level, "32K" / "32768K" */
        for (int i = 0; i < 8; i++) {
            char path[96], type[32] = "", size[32] = "";
            int lv = 0;
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
            FILE *f = fopen(path, "r");
            if (!f) break;
            CU_ASSERT_EQUAL(fscanf(f, "%d", &lv), 1);
            fclose(f);
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
            if ((f = fopen(path, "r"))) {
                CU_ASSERT_EQUAL(fscanf(f, "%31s", type), 1);
                fclose(f);
            }
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
            if ((f = fopen(path, "r"))) {
                CU_ASSERT_EQUAL(fscanf(f, "%31s", size), 1);
                fclose(f);
            }
            if (lv != level || !strcmp(type, "Instruction") || !size[0]) continue;
            const size_t kib = strtoull(size, NULL, 10);
            printf("\n    L%d: sysfs %s, cpu_cache_bytes %zu", level, size, b[level]);
            if (strchr(size, 'K')) CU_ASSERT_EQUAL(b[level], kib << 10);
            break;
        }
    }
    CU_ASSERT(b[1] >= 4096 && b[1] <= b[2] && b[2] <= b[3]);
}

/* The trials of how decode's products read the weights (choose_decode_reads() in backend_cpu.c):
 * the L2 prefetch for the packed bf16 copies and the q8 copies of a random BF16 model, q8's read
 * order, and the next rows' prefetch of the product that reads bf16 in place, each outcome forced
 * (read_trial_outcomes()). */
static void test_decode_reads_timed(void) {
    if (cpu_decode_ahead_l2_asked() || cpu_q8_decode_lines_asked() || cpu_gemv_prefetch_asked()) {
        printf("\n    skipped: MAMBA2_CPU_AHEAD_L2, MAMBA2_CPU_Q8_LINES or MAMBA2_CPU_PREFETCH is set, so not everything is timed");
        return;
    }
    TinyModel tm;
    CU_ASSERT_EQUAL_FATAL(open_bf16_model(&tm, 4), 0);
    char *was = getenv("MAMBA2_CPU_PACK") ? strdup(getenv("MAMBA2_CPU_PACK")) : NULL;
    setenv("MAMBA2_CPU_PACK", "timed", 1);
    setenv("MAMBA2_CPU_PACK_MIN", "0.001", 1); /* bf16: the packed copies kept (in place has no L2 prefetch) */
    setenv("MAMBA2_CPU_LOWER_MIN", "1000", 1); /* and the CPU's own product, so both backends sum alike */
    /* q8's prefill path, timed at these loads too (MAMBA2_CPU_PACK=timed), one way for all: the two
     * ways round the activations differently, and the outcomes here must give the same bits */
    setenv("MAMBA2_CPU_QWIDEN_MIN", "1000", 1);
    const int kib = CPU_DECODE_AHEAD_L2 >> 10;
    char on[96], off[96];
    snprintf(on, sizeof on, "; into L2 %d KiB ahead (timed at load: none ", kib);
    snprintf(off, sizeof off, "; no L2 prefetch (timed at load: %d KiB ahead ", kib);
    const char *const l2_want[2] = {on, off};
    const int64_t l2_value[2] = {CPU_DECODE_AHEAD_L2, 0};
    read_trial_outcomes(&tm, MAMBA2_WEIGHTS_STORED, "MAMBA2_CPU_L2_OFF_MIN", l2_want, ahead_l2_now, l2_value);
    read_trial_outcomes(&tm, MAMBA2_WEIGHTS_Q8, "MAMBA2_CPU_L2_OFF_MIN", l2_want, ahead_l2_now, l2_value);
    const char *const order_want[2] = {"; line by line across the rows (timed at load: row by row ",
                                       "; row by row (timed at load: line by line across the rows "};
    const int64_t order_value[2] = {1, 0};
    read_trial_outcomes(&tm, MAMBA2_WEIGHTS_Q8, "MAMBA2_CPU_Q8_ROWS_MIN", order_want, q8_lines_now, order_value);
    setenv("MAMBA2_CPU_PACK_MIN", "1000", 1); /* bf16 in place: the next rows' prefetch */
    const char *const pf_want[2] = {"; next rows prefetched (timed at load: no prefetch ",
                                    "; no prefetch (timed at load: next rows prefetched "};
    const int64_t pf_value[2] = {CPU_PREFETCH_NEXT_BLOCK, CPU_PREFETCH_NONE};
    read_trial_outcomes(&tm, MAMBA2_WEIGHTS_STORED, "MAMBA2_CPU_PF_OFF_MIN", pf_want, gemv_prefetch_now, pf_value);
    unsetenv("MAMBA2_CPU_PACK_MIN"), unsetenv("MAMBA2_CPU_LOWER_MIN"), unsetenv("MAMBA2_CPU_QWIDEN_MIN");
    cpu_decode_choose_ahead_l2(CPU_DECODE_AHEAD_L2); /* the defaults again for the tests after this one */
    cpu_q8_decode_choose_lines(1);
    cpu_gemv_choose_prefetch(CPU_PREFETCH_NEXT_BLOCK);
    cpu_qlinear_choose_prefill(1); /* which the q8 loads' prefill trial also set, under MAMBA2_CPU_PACK=timed */
    if (was) setenv("MAMBA2_CPU_PACK", was, 1), free(was);
    else unsetenv("MAMBA2_CPU_PACK");
    printf("\n");
    tiny_close(&tm);
}

/* The phase clock of `mamba2 bench --phases`: every phase named, the phases of the timed steps
 * summing to no more than those steps' wall time, nothing counted once it is off, and the same
 * logits bit for bit with the clock on as off. */
static void test_step_phases(void) {
    TinyModel tm;
    CU_ASSERT_EQUAL_FATAL(open_bf16_model(&tm, 2), 0);
    const Mamba2Config *c = &tm.m.cfg;
    int V = c->vocab_size;
    Mamba2Backend *cb = make("cpu", &tm.m, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cb->step_phases);
    Mamba2Error e = {{0}};
    Mamba2State on, off;
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&on, c, &e), 0);
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&off, c, &e), 0);
    int32_t tok[8];
    random_tokens(tok, 8, V);
    float *l_on = malloc((size_t)V * 4), *l_off = malloc((size_t)V * 4);
    Mamba2State *p_on = &on, *p_off = &off;
    Mamba2StepPhases ph, after;
    cb->step_phases(cb, 1, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(mamba2_backend_step(cb, &p_on, &tok[i], 1, l_on, &e), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cb->step_phases(cb, 0, &ph);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), sum = 0;
    CU_ASSERT(ph.n >= 4 && ph.n <= MAMBA2_STEP_PHASES);
    CU_ASSERT_EQUAL(ph.steps, 3);
    for (int i = 0; i < ph.n && i < MAMBA2_STEP_PHASES; i++) {
        CU_ASSERT(ph.name[i] && ph.name[i][0]);
        CU_ASSERT(ph.seconds[i] >= 0);
        sum += ph.seconds[i];
    }
    printf("\n    3 steps: %.3f ms in %d phases, %.3f ms wall\n", 1e3 * sum, ph.n, 1e3 * wall);
    CU_ASSERT(sum > 0 && sum <= wall);
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(mamba2_backend_step(cb, &p_off, &tok[i], 1, l_off, &e), 0);
    cb->step_phases(cb, 0, &after); /* off since: nothing more counted */
    CU_ASSERT_EQUAL(after.steps, 3);
    CU_ASSERT_EQUAL(memcmp(l_on, l_off, (size_t)V * 4), 0);
    CU_ASSERT_EQUAL(memcmp(on.ssm, off.ssm, on.ssm_len * sizeof *on.ssm), 0);
    mamba2_state_free(&on), mamba2_state_free(&off);
    free(l_on), free(l_off);
    mamba2_backend_destroy(cb);
    tiny_close(&tm);
}

static void test_batch_and_threads(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.dtype = "BF16", s.d_model = 24, s.n_heads = 6, s.head_dim = 8, s.n_groups = 3, s.chunk_size = 4;
    TinyModel tm;
    CU_ASSERT_EQUAL_FATAL(tiny_open(&tm, &s), 0);
    const Mamba2Config *c = &tm.m.cfg;
    int V = c->vocab_size;
    Mamba2Backend *cb = make("cpu", &tm.m, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cb);
    Mamba2Error e = {{0}};
    const int sizes[] = {3, 11, 20};
    for (int k = 0; k < 3; k++) {
        int B = sizes[k];
        Mamba2State *a = calloc(B, sizeof *a), *b = calloc(B, sizeof *b), **pa = calloc(B, sizeof *pa);
        float *la = malloc((size_t)B * V * 4), *lb = malloc((size_t)B * V * 4);
        int32_t tok[32];
        for (int i = 0; i < B; i++) { /* different prompt lengths, so the states differ */
            mamba2_state_init(&a[i], c, &e);
            mamba2_state_init(&b[i], c, &e);
            random_tokens(tok, 5 + i, V);
            mamba2_backend_prefill(cb, &a[i], tok, 5 + i, NULL, 0, &e);
            mamba2_state_copy(&b[i], &a[i], &e);
            pa[i] = &a[i];
        }
        /* a large B goes through cpu_linear()'s GEMM, the single steps through GEMVs (a small B
         * through the same GEMV kernel as the single steps, which gives the same bits) */
        double tol = cpu_linear_uses_gemv(&tm.m.w.layers[0].in_proj, B) ? SPLIT_TOL : gemm_tol();
        int ties = 0;
        double worst = steps_batched_vs_single(cb, pa, cb, b, B, la, lb, &ties), worst_state = 0;
        for (int i = 0; i < B; i++) {
            double es = test_rel_l2(a[i].ssm, b[i].ssm, a[i].ssm_len), ec = test_rel_l2(a[i].conv, b[i].conv, a[i].conv_len);
            worst_state = es > worst_state ? es : worst_state;
            worst_state = ec > worst_state ? ec : worst_state;
            CU_ASSERT_EQUAL(a[i].pos, b[i].pos);
        }
        printf("\n    batched step B=%-2d vs %d single steps: logits %.1e, states %.1e, argmax near-ties %d",
               B, B, worst, worst_state, ties);
        CU_ASSERT(worst <= tol);
        CU_ASSERT(worst_state <= tol);
        for (int i = 0; i < B; i++) mamba2_state_free(&a[i]), mamba2_state_free(&b[i]);
        free(a), free(b), free(pa), free(la), free(lb);
    }
    /* threads: 1 vs 2, and vs 7 (more threads than the machines of CI have cores, and than some
     * products have units of work: idle threads, uneven shares) */
    Mamba2Backend *c1 = make("cpu", &tm.m, 1), *c7 = make("cpu", &tm.m, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c7);
    int T = 29;
    int32_t tok[29];
    random_tokens(tok, T, V);
    float *l1 = malloc((size_t)T * V * 4), *l2 = malloc((size_t)T * V * 4);
    for (int by_step = 0; by_step < 2; by_step++) {
        CU_ASSERT_EQUAL(run_backend(c1, tok, T, by_step, l1), 0);
        Mamba2Backend *more[2] = {cb, c7};
        const int n_more[2] = {2, 7};
        for (int k = 0; k < 2; k++) {
            CU_ASSERT_EQUAL(run_backend(more[k], tok, T, by_step, l2), 0);
            double err = test_max_row_rel_l2(l2, l1, T, V);
            printf("\n    %s: %d threads vs 1 thread %.1e", by_step ? "step" : "prefill", n_more[k], err);
            CU_ASSERT(err <= SPLIT_TOL);
        }
    }
    printf("\n");
    free(l1), free(l2);
    mamba2_backend_destroy(c1);
    mamba2_backend_destroy(c7);
    mamba2_backend_destroy(cb);
    tiny_close(&tm);
}

/* States move between backends: k tokens on one, the rest on the other, = ref uninterrupted.
 * Also: a prompt longer than one prefill slice (1024 tokens). (Bad inputs, refused with the state left
 * as it was, are the backend suite's: tests/test_backend.c, for every backend.) */
static void test_state_interchange(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.dtype = "BF16";
    TinyModel tm;
    CU_ASSERT_EQUAL_FATAL(tiny_open(&tm, &s), 0);
    const Mamba2Config *c = &tm.m.cfg;
    int V = c->vocab_size, T = 1100, k = 517;
    int32_t *tok = malloc(T * sizeof *tok);
    random_tokens(tok, T, V);
    Mamba2Backend *rb = make("ref", &tm.m, 0), *cb = make("cpu", &tm.m, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cb);
    float *want = malloc((size_t)T * V * 4), *got = malloc((size_t)T * V * 4);
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL(run_backend(rb, tok, T, 0, want), 0);
    CU_ASSERT_EQUAL(run_backend(cb, tok, T, 0, got), 0); /* two slices: 1024 + 76 */
    double e_long = test_max_row_rel_l2(got, want, T, V);
    Mamba2Backend *order[2][2] = {{cb, rb}, {rb, cb}};
    double e_mix[2];
    for (int o = 0; o < 2; o++) {
        Mamba2State st;
        mamba2_state_init(&st, c, &e);
        CU_ASSERT_EQUAL(mamba2_backend_prefill(order[o][0], &st, tok, k, got, 1, &e), 0);
        CU_ASSERT_EQUAL(mamba2_backend_prefill(order[o][1], &st, tok + k, T - k, got + (size_t)k * V, 1, &e), 0);
        CU_ASSERT_EQUAL(st.pos, T);
        e_mix[o] = test_max_row_rel_l2(got, want, T, V);
        CU_ASSERT(e_mix[o] <= CPU_TOL);
        mamba2_state_free(&st);
    }
    printf("\n    T=%d in 2 prefill slices vs ref %.1e; cpu %d then ref %d tokens %.1e; ref then cpu %.1e\n", T,
           e_long, k, T - k, e_mix[0], e_mix[1]);
    CU_ASSERT(e_long <= CPU_TOL);
    mamba2_backend_destroy(rb);
    mamba2_backend_destroy(cb);
    free(tok), free(want), free(got);
    tiny_close(&tm);
}

int register_cpu_tests(void) {
    CU_pSuite s = CU_add_suite("cpu", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "kernels chosen from what the CPU reports", test_kernel_choice) ||
        !CU_add_test(s, "gemv: every ISA variant and dtype vs a double product", test_gemv_variants) ||
        !CU_add_test(s, "linear: sgemm and AMX GEMMs = gemv", test_linear_paths) ||
        !CU_add_test(s, "gemm: every tier this CPU has vs a double product", test_gemm_tiers) ||
        !CU_add_test(s, "packed bf16: rows, decode products and GEMMs vs a double product", test_packed_bf16) ||
        !CU_add_test(s, "read ceiling over the weights' own pages", test_read_own_pages) ||
        !CU_add_test(s, "ssd: BLAS chunked = ref chunked", test_ssd_blas) ||
        !CU_add_test(s, "fixtures: cpu vs ref and transformers, greedy tokens", test_fixtures) ||
        !CU_add_test(s, "argmax near-tie rule", test_near_tie_rule) ||
        !CU_add_test(s, "random models: cpu prefill and step vs ref", test_random_models) ||
        !CU_add_test(s, "bf16 decode timed at load: layout and product, each = ref", test_bf16_decode_timed) ||
        !CU_add_test(s, "cache sizes as Linux describes them", test_cache_sizes) ||
        !CU_add_test(s, "decode's reads timed at load (L2 prefetch, q8 order, in-place prefetch): each outcome named, the same bits",
                     test_decode_reads_timed) ||
        !CU_add_test(s, "decode's phase clock: phases named, within the steps' time, the same bits", test_step_phases) ||
        !CU_add_test(s, "batched step = single steps; 1 thread = 2 threads = 7 threads", test_batch_and_threads) ||
        !CU_add_test(s, "states move between cpu and ref; long prompts", test_state_interchange))
        return -1;
    return 0;
}

#else

int register_cpu_tests(void) { return 0; } /* built without the CPU path */

#endif
