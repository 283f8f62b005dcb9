/**
 * @file gemm_bf16.c
 * @brief Prefill projections: per-thread fp32 panels of the bf16 weights, multiplied by cblas_sgemm.
 */
#include "gemm_bf16.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bf16_dot_rate.h"
#include "gemm_amx.h"
#include "gemm_avx512bf16.h"
#include "gemm_fp32.h"
#include "gemm_tier.h"
#include "gemv_bf16.h"

/** OpenBLAS's thread count setter (declared by its cblas.h, not by others; we always link OpenBLAS). */
void openblas_set_num_threads(int num_threads);

/** Attributes of the loops compiled twice: for x86-64-v3 (AVX2) and for any x86-64. */
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
/** Attributes of the F16C loop. */
#define F16C_TARGET __attribute__((target("avx2,f16c")))

void cpu_blas_single_threaded(void) { openblas_set_num_threads(1); }

/* out[i] = bf16 → f32 of in[i]: the 16 bits become the top half of the float. */
static CLONES void bf16_to_f32(const uint16_t *restrict in, float *restrict out, int64_t n) {
    uint32_t *o = (uint32_t *)out;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) o[i] = (uint32_t)in[i] << 16;
}

/* out[i] = f16 → f32 of in[i], eight at a time with F16C's vcvtph2ps. */
static F16C_TARGET void f16_to_f32_f16c(const uint16_t *in, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; i++) out[i] = mamba2_f16_to_f32(in[i]);
}

void cpu_convert_rows(const Mamba2Tensor *W, int64_t r0, int64_t n, float *out) {
    int64_t K = W->shape[1], len = n * K, start = r0 * K;
    const uint16_t *h = (const uint16_t *)W->data + start;
    switch (W->dtype) {
    case MAMBA2_BF16: bf16_to_f32(h, out, len); break;
    case MAMBA2_F16:
        if (cpu_isa_active() >= CPU_ISA_AVX2) f16_to_f32_f16c(h, out, len);
        else
            for (int64_t i = 0; i < len; i++) out[i] = mamba2_f16_to_f32(h[i]);
        break;
    default: memcpy(out, (const float *)W->data + start, (size_t)len * sizeof *out);
    }
}

size_t cpu_linear_scratch_floats(int n_threads, int64_t K) { return (size_t)n_threads * CPU_GEMM_PANEL_ROWS * K; }

CpuGemmTier cpu_linear_tier(const Mamba2Tensor *W, Mamba2Precision precision) {
    CpuGemmTier tier = cpu_gemm_tier_active();
    /* the bf16 tiers read bf16 weights only; f16 and f32 weights go to the best fp32 tier below */
    if (tier >= CPU_GEMM_AVX512BF16 && W->dtype != MAMBA2_BF16) tier = CPU_GEMM_AVX512;
    /* Default precision: vdpbf16ps on both halves of X does the work of fp32 FMAs at best at their
     * rate (results/cpu.md), so the exact fp32 kernel is used unless asked for. Fast precision: one
     * vdpbf16ps pass, where this core's vdpbf16ps gives more multiply-adds a second than its FMAs
     * (Zen 4 / 5); where it gives fewer (Sapphire / Emerald Rapids), the fp32 kernel is both faster
     * and exact. MAMBA2_CPU_GEMM=avx512bf16 forces the vdpbf16ps kernel for both. */
    if (tier == CPU_GEMM_AVX512BF16) {
        const char *want = getenv("MAMBA2_CPU_GEMM");
        int asked = want && !strcmp(want, "avx512bf16");
        int pays = precision == MAMBA2_PRECISION_FAST && cpu_bf16_dot_gain() >= CPU_BF16_DOT_MIN_GAIN;
        if (!asked && !pays) tier = CPU_GEMM_AVX512;
    }
    return tier;
}

int cpu_linear_uses_gemv(const Mamba2Tensor *W, int T) {
    if (W->dtype == MAMBA2_BF16 && cpu_amx_active()) return T <= CPU_GEMV_MAX_ROWS_AMX;
    return T <= CPU_GEMV_MAX_ROWS;
}

void cpu_linear(const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate,
                float *scratch, int n_threads, Mamba2Precision precision) {
    if (cpu_linear_uses_gemv(W, T)) {
        cpu_gemv(cpu_isa_active(), W, X, ldx, T, Y, ldy, accumulate, n_threads, precision);
        return;
    }
    /* each SIMD tier returns -1 (nothing written) when it cannot take W; the sgemm path takes anything */
    switch (cpu_linear_tier(W, precision)) {
    case CPU_GEMM_AMX:
        if (cpu_linear_amx(W, X, ldx, T, Y, ldy, accumulate, n_threads, precision) == 0) return;
        break;
    case CPU_GEMM_AVX512BF16:
        if (cpu_linear_avx512bf16(W, X, ldx, T, Y, ldy, accumulate, n_threads, precision) == 0) return;
        break;
    case CPU_GEMM_AVX512:
    case CPU_GEMM_AVX2:
        if (cpu_linear_fp32(cpu_linear_tier(W, precision), W, X, ldx, T, Y, ldy, accumulate, n_threads) == 0) return;
        break;
    default: break;
    }
    int64_t rows = W->shape[0], K = W->shape[1];
    int64_t n_panels = (rows + CPU_GEMM_PANEL_ROWS - 1) / CPU_GEMM_PANEL_ROWS;
    /* For each panel p of weight rows [r0, r0 + n):
     *   Wp [n, K] = fp32(W[r0 .. r0+n))          (f32 weights are used in place)
     *   Y[:, r0 .. r0+n) (+)= X [T, K] · Wpᵀ      (cblas_sgemm on this thread) */
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t p = 0; p < n_panels; p++) {
        int64_t r0 = p * CPU_GEMM_PANEL_ROWS, n = rows - r0 < CPU_GEMM_PANEL_ROWS ? rows - r0 : CPU_GEMM_PANEL_ROWS;
        const float *Wp;
        if (W->dtype == MAMBA2_F32) {
            Wp = (const float *)W->data + r0 * K;
        } else {
            float *panel = scratch + (size_t)omp_get_thread_num() * CPU_GEMM_PANEL_ROWS * K;
            cpu_convert_rows(W, r0, n, panel);
            Wp = panel;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)n, (int)K, 1.0f, X, (int)ldx, Wp, (int)K,
                    accumulate ? 1.0f : 0.0f, Y + r0, (int)ldy);
    }
}
