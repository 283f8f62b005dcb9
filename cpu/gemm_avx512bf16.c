/**
 * @file gemm_avx512bf16.c
 * @brief vdpbf16ps microkernel and its packing (gemm_avx512bf16.h).
 *
 * Packed layouts (gemm_driver.h), in 32-bit words each holding a bf16 pair (k even in the low half):
 *   A [Kp/2][P][m]: per k-pair, the m activation rows' X_hi pairs, then (P = 2) their X_lo pairs;
 *   B [kc/2][32]:   per k-pair, the pairs of 32 weight rows.
 */
#include "gemm_avx512bf16.h"

#include <immintrin.h>
#include <string.h>

#include "gemm_driver.h"
#include "gemm_tile_store.h"

/** Attributes of the AVX512_BF16 functions. */
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
/** Attributes of the microkernel body, inlined into one copy per row count and part count. */
#define BF16_INLINE __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16")))

/** Register block: activation rows × weight rows (2 × 14 zmm accumulators, 2 weight registers). */
enum { MR = 14, NR = 32 };

/* Round-to-nearest-even fp32 → bf16. */
static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* dst [Kp/2][P][m] words: the X_hi pair (and for P = 2 the X_lo pair) of X[t0 + i][2kp, 2kp + 1],
 * zero past K. */
static inline __attribute__((always_inline)) void pack_a_parts(const float *X, int64_t ldx, int64_t K, int64_t Kp,
                                                               int64_t t0, int m, uint32_t *d, int P) {
    for (int i = 0; i < m; i++) {
        const float *x = X + (t0 + i) * ldx;
        for (int64_t kp = 0; kp < Kp / 2; kp++) {
            uint32_t hi = 0, lo = 0;
            for (int h = 0; h < 2; h++) {
                int64_t k = 2 * kp + h;
                float v = k < K ? x[k] : 0.0f;
                uint16_t b = bf16_round(v);
                hi |= (uint32_t)b << (16 * h);
                lo |= (uint32_t)bf16_round(v - mamba2_bf16_to_f32(b)) << (16 * h);
            }
            d[(kp * P) * m + i] = hi;
            if (P == 2) d[(kp * P + 1) * m + i] = lo;
        }
    }
}

static void pack_a_split(const float *X, int64_t ldx, int64_t K, int64_t Kp, int64_t t0, int m, void *dst) {
    pack_a_parts(X, ldx, K, Kp, t0, m, dst, 2);
}

static void pack_a_hi(const float *X, int64_t ldx, int64_t K, int64_t Kp, int64_t t0, int m, void *dst) {
    pack_a_parts(X, ldx, K, Kp, t0, m, dst, 1);
}

/* 16 × 16 transpose of 32-bit words in place (r[i] lane j → r[j] lane i). */
static inline BF16_INLINE void transpose16_epi32(__m512i r[16]) {
    __m512i a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    for (int c = 0; c < 4; c++) {
        __m512i e0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x88), e1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xdd);
        __m512i f0 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x88), f1 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xdd);
        r[0 + c] = _mm512_shuffle_i32x4(e0, f0, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(e1, f1, 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(e0, f0, 0xdd);
        r[12 + c] = _mm512_shuffle_i32x4(e1, f1, 0xdd);
    }
}

/* dst [kc/2][32] words = (W[r0 + r][k0 + 2kp], W[r0 + r][k0 + 2kp + 1]), zero past the last row or K.
 * Whole squares of 16 rows × 16 pairs (K even, inside the matrix) are transposed in registers. */
static BF16_TARGET void pack_b(const void *src, int64_t r0, int64_t k0, int64_t kc, void *dst) {
    const Mamba2Tensor *W = src;
    int64_t rows = W->shape[0], K = W->shape[1];
    const uint16_t *w = W->data;
    uint32_t *d = dst;
    if (r0 + NR <= rows && k0 + kc <= K && kc % 32 == 0 && K % 2 == 0) {
        for (int64_t k = 0; k < kc; k += 32)
            for (int h = 0; h < NR / 16; h++) {
                __m512i r[16];
                for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(w + (r0 + 16 * h + i) * K + k0 + k);
                transpose16_epi32(r); /* r[c] = pair k/2 + c of rows r0 + 16h .. + 16 */
                for (int c = 0; c < 16; c++) _mm512_store_si512(d + (k / 2 + c) * NR + 16 * h, r[c]);
            }
        return;
    }
    for (int r = 0; r < NR; r++) {
        int64_t row = r0 + r;
        for (int64_t kp = 0; kp < kc / 2; kp++) {
            uint32_t v = 0;
            for (int h = 0; h < 2; h++) {
                int64_t k = k0 + 2 * kp + h;
                if (row < rows && k < K) v |= (uint32_t)w[row * K + k] << (16 * h);
            }
            d[kp * NR + r] = v;
        }
    }
}

/* C[i][0 .. 32) (+)= Σ_kp Σ_p A[kp][p][i] · B[kp][0 .. 32) (pairwise dot) for i < M, p < P (constants). */
static inline BF16_INLINE void micro_body(const int M, const int P, const uint32_t *restrict A,
                                          const uint32_t *restrict B, int64_t kc, float *C, int64_t ldc, int ncols,
                                          int add) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t kp = 0; kp < kc / 2; kp++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(B + kp * NR), b1 = (__m512bh)_mm512_load_si512(B + kp * NR + 16);
#pragma GCC unroll 2
        for (int p = 0; p < P; p++)
#pragma GCC unroll 14
            for (int i = 0; i < M; i++) {
                __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[(kp * P + p) * M + i]);
                c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
                c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
            }
    }
    gemm_store_tile_512(M, c0, c1, C, ldc, ncols, add);
}

/** One case of the switch over m: the body for M = m activation rows and P parts. */
#define CASE(M, P) \
    case M: micro_body(M, P, A, B, kc, C, ldc, ncols, add); break;
/** The switch over m = 1 .. 14 for P parts. */
#define SWITCH(P)                                                                                              \
    switch (m) {                                                                                               \
        CASE(1, P) CASE(2, P) CASE(3, P) CASE(4, P) CASE(5, P) CASE(6, P) CASE(7, P) CASE(8, P) CASE(9, P)     \
        CASE(10, P) CASE(11, P) CASE(12, P) CASE(13, P) CASE(14, P)                                            \
    }

static BF16_TARGET void micro_split(int m, const void *a, const void *b, int64_t kc, float *C, int64_t ldc, int ncols,
                                    int add) {
    const uint32_t *A = a, *B = b;
    SWITCH(2)
}

static BF16_TARGET void micro_hi(int m, const void *a, const void *b, int64_t kc, float *C, int64_t ldc, int ncols,
                                 int add) {
    const uint32_t *A = a, *B = b;
    SWITCH(1)
}

/* a_bpk: a pair word per 2 k per part; b_bpk: a pair word per 2 k per weight row */
static const CpuGemmKernel kernel_split = {MR, NR, 2, 4, 2, pack_a_split, pack_b, micro_split};
static const CpuGemmKernel kernel_hi = {MR, NR, 2, 2, 2, pack_a_hi, pack_b, micro_hi};

int cpu_linear_avx512bf16(const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy,
                          int accumulate, int n_threads, Mamba2Precision precision) {
    if (W->dtype != MAMBA2_BF16 || T <= 0) return -1;
    const CpuGemmKernel *kn = precision == MAMBA2_PRECISION_FAST ? &kernel_hi : &kernel_split;
    return cpu_gemm_run(kn, W, X, ldx, T, Y, ldy, accumulate, n_threads);
}

int cpu_linear_avx512bf16_rows(CpuBf16RowsAt rows_of, const void *src, int64_t rows, int64_t K, const float *X,
                               int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads,
                               Mamba2Precision precision) {
    if (T <= 0) return -1;
    const CpuGemmKernel *kn = precision == MAMBA2_PRECISION_FAST ? &kernel_hi : &kernel_split;
    return cpu_gemm_run_rows(kn, rows_of, src, rows, K, X, ldx, T, Y, ldy, accumulate, n_threads);
}
