/**
 * @file gemm_fp32.c
 * @brief fp32 FMA microkernels and their packing for the AVX-512F and AVX2 GEMM tiers (gemm_fp32.h).
 *
 * Packed layouts (gemm_driver.h): A [kc][m] floats (activation rows of one block, k-major);
 * B [kc][NR] floats (NR weight rows widened to fp32, k-major), so that for every k
 *     C[i][0 .. NR) += A[k][i] · B[k][0 .. NR)     (one broadcast, NR/16 or NR/8 FMAs)
 */
#include "gemm_fp32.h"

#include <immintrin.h>
#include <string.h>

#include "gemm_driver.h"
#include "gemm_tile_store.h"

/** Attributes of the AVX-512 functions. */
#define AVX512_TARGET __attribute__((target("avx512f")))
/** Attributes of the AVX-512 microkernel body, inlined into one copy per row count. */
#define AVX512_INLINE __attribute__((always_inline, target("avx512f")))
/** Attributes of the AVX2 functions. */
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
/** Attributes of the AVX2 microkernel body. */
#define AVX2_INLINE __attribute__((always_inline, target("avx2,fma,f16c")))

/** Register block of the AVX-512 kernel: activation rows × weight rows. */
enum { MR512 = 14, NR512 = 32 };
/** Register block of the AVX2 kernel. */
enum { MR256 = 6, NR256 = 16 };

/* ------------------------------------------------------------------ packing */

/* dst [Kp][m] = X[t0 + i][k] for i < m, k < Kp (zero past K). Each row is read contiguously. */
static void pack_a_f32(const float *X, int64_t ldx, int64_t K, int64_t Kp, int64_t t0, int m, void *dst) {
    float *d = dst;
    for (int i = 0; i < m; i++) {
        const float *x = X + (t0 + i) * ldx;
        for (int64_t k = 0; k < K; k++) d[k * m + i] = x[k];
        for (int64_t k = K; k < Kp; k++) d[k * m + i] = 0.0f;
    }
}

/* dst [kc][nr] = fp32(W[r0 + r][k0 + k]) for r < nr, k < kc; zero past the last row or K. */
static inline __attribute__((always_inline)) void pack_b_any(const Mamba2Tensor *W, int64_t r0, int64_t k0,
                                                             int64_t kc, int nr, float *dst) {
    int64_t rows = W->shape[0], K = W->shape[1], kend = K - k0 < kc ? K - k0 : kc;
    if (kend < 0) kend = 0;
    for (int r = 0; r < nr; r++) {
        int64_t row = r0 + r;
        int64_t n = row < rows ? kend : 0;
        const void *w = W->data;
        int64_t base = row * K + k0;
        switch (W->dtype) {
        case MAMBA2_BF16:
            for (int64_t k = 0; k < n; k++) dst[k * nr + r] = mamba2_bf16_to_f32(((const uint16_t *)w)[base + k]);
            break;
        case MAMBA2_F16:
            for (int64_t k = 0; k < n; k++) dst[k * nr + r] = mamba2_f16_to_f32(((const uint16_t *)w)[base + k]);
            break;
        default:
            for (int64_t k = 0; k < n; k++) dst[k * nr + r] = ((const float *)w)[base + k];
        }
        for (int64_t k = n; k < kc; k++) dst[k * nr + r] = 0.0f;
    }
}

/* ------------------------------------------------------------------ AVX-512 */

/* The 16 × 16 transpose of r[0..16) in place (r[i] lane j → r[j] lane i), in three rounds of shuffles. */
static inline AVX512_INLINE void transpose16(__m512 r[16]) {
    __m512 a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        b[4 * i] = _mm512_shuffle_ps(a[4 * i], a[4 * i + 2], 0x44);
        b[4 * i + 1] = _mm512_shuffle_ps(a[4 * i], a[4 * i + 2], 0xee);
        b[4 * i + 2] = _mm512_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0x44);
        b[4 * i + 3] = _mm512_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0xee);
    }
    /* b[4i + c], 128-bit lane L: rows 4i .. 4i+3 of column 4L + c */
    for (int c = 0; c < 4; c++) {
        __m512 e0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x88), e1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xdd);
        __m512 f0 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x88), f1 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xdd);
        r[0 + c] = _mm512_shuffle_f32x4(e0, f0, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(e1, f1, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(e0, f0, 0xdd);
        r[12 + c] = _mm512_shuffle_f32x4(e1, f1, 0xdd);
    }
}

/* 16 weights W[row][k .. k+16) widened to fp32. */
static inline AVX512_INLINE __m512 load16(Mamba2DType dt, const void *W, int64_t i) {
    switch (dt) {
    case MAMBA2_BF16:
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)W + i))), 16));
    case MAMBA2_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)W + i)));
    default: return _mm512_loadu_ps((const float *)W + i);
    }
}

/* pack_b_any() for NR512 rows; whole 16 × 16 squares (every row present, k inside K) are widened
 * and transposed in registers. */
static AVX512_TARGET void pack_b_512(const void *src, int64_t r0, int64_t k0, int64_t kc, void *dst) {
    const Mamba2Tensor *W = src;
    int64_t rows = W->shape[0], K = W->shape[1];
    float *d = dst;
    if (r0 + NR512 > rows || k0 + kc > K || kc % 16) {
        pack_b_any(W, r0, k0, kc, NR512, d);
        return;
    }
    for (int64_t k = 0; k < kc; k += 16)
        for (int h = 0; h < NR512 / 16; h++) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) r[i] = load16(W->dtype, W->data, (r0 + 16 * h + i) * K + k0 + k);
            transpose16(r); /* r[c] = column k + c of rows r0 + 16h .. + 16 */
            for (int c = 0; c < 16; c++) _mm512_store_ps(d + (k + c) * NR512 + 16 * h, r[c]);
        }
}

/* C[i][0 .. 32) (+)= Σ_k A[k][i] · B[k][0 .. 32) for i < M (a constant after inlining). */
static inline AVX512_INLINE void micro_512_body(const int M, const float *restrict A, const float *restrict B,
                                                int64_t kc, float *C, int64_t ldc, int ncols, int add) {
    __m512 c0[MR512], c1[MR512];
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(B + k * NR512), b1 = _mm512_load_ps(B + k * NR512 + 16);
#pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            __m512 a = _mm512_set1_ps(A[k * M + i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    gemm_store_tile_512(M, c0, c1, C, ldc, ncols, add);
}

/** One case of a switch over the row count m: the microkernel body compiled for M = m. */
#define MICRO_CASE(body, M) \
    case M: body(M, A, B, kc, C, ldc, ncols, add); break;

static AVX512_TARGET void micro_512(int m, const void *a, const void *b, int64_t kc, float *C, int64_t ldc, int ncols,
                                    int add) {
    const float *A = a, *B = b;
    switch (m) {
        MICRO_CASE(micro_512_body, 1) MICRO_CASE(micro_512_body, 2) MICRO_CASE(micro_512_body, 3)
        MICRO_CASE(micro_512_body, 4) MICRO_CASE(micro_512_body, 5) MICRO_CASE(micro_512_body, 6)
        MICRO_CASE(micro_512_body, 7) MICRO_CASE(micro_512_body, 8) MICRO_CASE(micro_512_body, 9)
        MICRO_CASE(micro_512_body, 10) MICRO_CASE(micro_512_body, 11) MICRO_CASE(micro_512_body, 12)
        MICRO_CASE(micro_512_body, 13) MICRO_CASE(micro_512_body, 14)
    }
}

/* ------------------------------------------------------------------ AVX2 */

/* The 8 × 8 transpose of r[0..8) in place (r[i] lane j → r[j] lane i): unpack, shuffle, swap halves. */
static inline AVX2_INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    /* u[c] (rows 0-3) and u[4 + c] (rows 4-7), 128-bit half L: column 4L + c */
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* 8 weights W[row][k .. k+8) widened to fp32. */
static inline AVX2_INLINE __m256 load8(Mamba2DType dt, const void *W, int64_t i) {
    switch (dt) {
    case MAMBA2_BF16:
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)W + i))), 16));
    case MAMBA2_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)W + i)));
    default: return _mm256_loadu_ps((const float *)W + i);
    }
}

/* pack_b_any() for NR256 rows; whole 8 × 8 squares (every row present, k inside K) are widened and
 * transposed in registers, as pack_b_512 does for AVX-512 (about twice as fast as a weight at a
 * time: results/cpu.md). */
static AVX2_TARGET void pack_b_256(const void *src, int64_t r0, int64_t k0, int64_t kc, void *dst) {
    const Mamba2Tensor *W = src;
    int64_t rows = W->shape[0], K = W->shape[1];
    float *d = dst;
    if (r0 + NR256 > rows || k0 + kc > K || kc % 8) {
        pack_b_any(W, r0, k0, kc, NR256, d);
        return;
    }
    for (int64_t k = 0; k < kc; k += 8)
        for (int h = 0; h < NR256 / 8; h++) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = load8(W->dtype, W->data, (r0 + 8 * h + i) * K + k0 + k);
            transpose8(r); /* r[c] = column k + c of rows r0 + 8h .. + 8 */
            for (int c = 0; c < 8; c++) _mm256_store_ps(d + (k + c) * NR256 + 8 * h, r[c]);
        }
}

/* C[i][0 .. 16) (+)= Σ_k A[k][i] · B[k][0 .. 16) for i < M (a constant after inlining). */
static inline AVX2_INLINE void micro_256_body(const int M, const float *restrict A, const float *restrict B,
                                              int64_t kc, float *C, int64_t ldc, int ncols, int add) {
    __m256 c0[MR256], c1[MR256];
#pragma GCC unroll 6
    for (int i = 0; i < M; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(B + k * NR256), b1 = _mm256_load_ps(B + k * NR256 + 8);
#pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            __m256 a = _mm256_broadcast_ss(A + k * M + i);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (ncols == NR256) {
            if (add) {
                c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(c));
                c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(c + 8));
            }
            _mm256_storeu_ps(c, c0[i]);
            _mm256_storeu_ps(c + 8, c1[i]);
        } else { /* the last weight rows of the matrix */
            float t[NR256];
            _mm256_storeu_ps(t, c0[i]);
            _mm256_storeu_ps(t + 8, c1[i]);
            for (int j = 0; j < ncols; j++) c[j] = add ? c[j] + t[j] : t[j];
        }
    }
}

static AVX2_TARGET void micro_256(int m, const void *a, const void *b, int64_t kc, float *C, int64_t ldc, int ncols,
                                  int add) {
    const float *A = a, *B = b;
    switch (m) {
        MICRO_CASE(micro_256_body, 1) MICRO_CASE(micro_256_body, 2) MICRO_CASE(micro_256_body, 3)
        MICRO_CASE(micro_256_body, 4) MICRO_CASE(micro_256_body, 5) MICRO_CASE(micro_256_body, 6)
    }
}

/* ------------------------------------------------------------------ entry */

static const CpuGemmKernel kernel_512 = {MR512, NR512, 1, 4, 4, pack_a_f32, pack_b_512, micro_512};
static const CpuGemmKernel kernel_256 = {MR256, NR256, 1, 4, 4, pack_a_f32, pack_b_256, micro_256};

int cpu_linear_fp32(CpuGemmTier tier, const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y,
                    int64_t ldy, int accumulate, int n_threads) {
    const CpuGemmKernel *kn = tier == CPU_GEMM_AVX512 ? &kernel_512 : tier == CPU_GEMM_AVX2 ? &kernel_256 : NULL;
    if (!kn || T <= 0) return -1;
    return cpu_gemm_run(kn, W, X, ldx, T, Y, ldy, accumulate, n_threads);
}

/* ------------------------------------------------------------------ any weight source */

/* The source of cpu_linear_fp32_widened(), and the pack_b of its kernels: the caller's widening
 * writes the panel in the kernels' layout, dst [kc][nr]. */
typedef struct {
    CpuWidenPanel widen;
    const void *src;
} WidenedSource;

static void pack_b_widened_512(const void *s, int64_t r0, int64_t k0, int64_t kc, void *dst) {
    const WidenedSource *w = s;
    w->widen(w->src, r0, k0, kc, NR512, dst);
}

static void pack_b_widened_256(const void *s, int64_t r0, int64_t k0, int64_t kc, void *dst) {
    const WidenedSource *w = s;
    w->widen(w->src, r0, k0, kc, NR256, dst);
}

int cpu_linear_fp32_widened(CpuGemmTier tier, CpuWidenPanel widen, const void *src, int64_t rows, int64_t K,
                            const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads) {
    static const CpuGemmKernel widened_512 = {MR512, NR512, 1, 4, 4, pack_a_f32, pack_b_widened_512, micro_512};
    static const CpuGemmKernel widened_256 = {MR256, NR256, 1, 4, 4, pack_a_f32, pack_b_widened_256, micro_256};
    const CpuGemmKernel *kn = tier == CPU_GEMM_AVX512 ? &widened_512 : tier == CPU_GEMM_AVX2 ? &widened_256 : NULL;
    if (!kn || T <= 0) return -1;
    WidenedSource ws = {widen, src};
    return cpu_gemm_run_source(kn, &ws, rows, K, X, ldx, T, Y, ldy, accumulate, n_threads);
}

/* ------------------------------------------------------------------ bf16 rows from a row source */

int cpu_linear_fp32_rows(CpuGemmTier tier, CpuBf16RowsAt rows_of, const void *src, int64_t rows, int64_t K,
                         const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads) {
    const CpuGemmKernel *kn = tier == CPU_GEMM_AVX512 ? &kernel_512 : tier == CPU_GEMM_AVX2 ? &kernel_256 : NULL;
    if (!kn || T <= 0) return -1;
    return cpu_gemm_run_rows(kn, rows_of, src, rows, K, X, ldx, T, Y, ldy, accumulate, n_threads);
}
