/**
 * @file packed_bf16.c
 * @brief The packed bf16 layout (packed_bf16.h): repacking at load, row extraction, decode products.
 */
#include "packed_bf16.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cblas.h>

#include "gemm_amx.h"
#include "gemm_avx512bf16.h"
#include "gemm_bf16.h"
#include "gemm_fp32.h"
#include "thread_buffer.h"


/* Elements of one group: [K_pad / 32][8][32]. */
static inline int64_t group_elems(const CpuPackedBf16 *p) { return p->K_pad * CPU_PACK_ROWS; }

/** Copies at least this large are allocated in whole 2 MiB pages, 2 MiB aligned. */
#define HUGE_PAGE ((size_t)2 << 20)

/* Bytes of the packed values of a [rows, K] matrix (padding included). */
static size_t data_bytes(int64_t rows, int64_t K) {
    int64_t rp = (rows + CPU_PACK_ROWS - 1) / CPU_PACK_ROWS * CPU_PACK_ROWS, kp = (K + CPU_PACK_COLS - 1) / CPU_PACK_COLS * CPU_PACK_COLS;
    return (size_t)rp * (size_t)kp * sizeof(uint16_t);
}

/* The allocation of a copy of @p bytes: whole 2 MiB pages when it is that large (decode streams it
 * whole; one TLB entry a page), else the bytes themselves. */
static size_t alloc_bytes(size_t bytes) { return bytes >= HUGE_PAGE ? (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE : bytes; }

size_t cpu_packed_bf16_bytes(int64_t rows, int64_t K) {
    const size_t a = alloc_bytes(data_bytes(rows, K));
    return a >= HUGE_PAGE ? a + HUGE_PAGE : a; /* the aligned allocation may take up to 2 MiB more address space */
}

void cpu_packed_bf16_free(CpuPackedBf16 *p) {
    if (p->data) free(p->data);
    memset(p, 0, sizeof *p);
}

int cpu_packed_bf16_pack(const Mamba2Tensor *W, int n_threads, CpuPackedBf16 *out, Mamba2Error *err) {
    memset(out, 0, sizeof *out);
    if (W->dtype != MAMBA2_BF16 || W->ndim != 2) return mamba2_fail(err, "%s: only 2-d bf16 matrices are packed", W->name);
    out->rows = W->shape[0], out->K = W->shape[1];
    out->rows_pad = (out->rows + CPU_PACK_ROWS - 1) / CPU_PACK_ROWS * CPU_PACK_ROWS;
    out->K_pad = (out->K + CPU_PACK_COLS - 1) / CPU_PACK_COLS * CPU_PACK_COLS;
    out->bytes = data_bytes(out->rows, out->K);
    const size_t alloc = alloc_bytes(out->bytes);
    void *mem = NULL;
    if (posix_memalign(&mem, alloc >= HUGE_PAGE ? HUGE_PAGE : 64, alloc ? alloc : 64))
        return mamba2_fail(err, "out of memory for the packed copy of %s (%.1f MiB)", W->name, out->bytes / 1048576.0);
    if (alloc >= HUGE_PAGE) (void)madvise(mem, alloc, MADV_HUGEPAGE); /* a hint */
    out->data = mem;
    const uint16_t *src = W->data;
    const int64_t K = out->K, Kp = out->K_pad, groups = out->rows_pad / CPU_PACK_ROWS, ge = group_elems(out);
    /* packed[g][c][i][j] = W[8g + i][32c + j], zero outside W; each thread writes whole groups */
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 16)
    for (int64_t g = 0; g < groups; g++) {
        uint16_t *dst = out->data + g * ge;
        for (int i = 0; i < CPU_PACK_ROWS; i++) {
            const int64_t r = g * CPU_PACK_ROWS + i, whole = r < out->rows ? K / CPU_PACK_COLS * CPU_PACK_COLS : 0;
            int64_t c = 0;
            for (; c < whole; c += CPU_PACK_COLS) /* whole chunks of the row: 64-byte copies */
                memcpy(dst + (c / CPU_PACK_COLS) * (CPU_PACK_ROWS * CPU_PACK_COLS) + i * CPU_PACK_COLS, src + r * K + c,
                       CPU_PACK_COLS * sizeof *dst);
            for (; c < Kp; c += CPU_PACK_COLS) { /* the row's last, partial chunk; padding rows */
                uint16_t *d = dst + (c / CPU_PACK_COLS) * (CPU_PACK_ROWS * CPU_PACK_COLS) + i * CPU_PACK_COLS;
                const int64_t n = r < out->rows && c < K ? K - c : 0;
                if (n > 0) memcpy(d, src + r * K + c, (size_t)n * sizeof *d);
                memset(d + n, 0, (size_t)(CPU_PACK_COLS - n) * sizeof *d);
            }
        }
    }
    return 0;
}

void cpu_packed_bf16_rows(const CpuPackedBf16 *p, int64_t r0, int64_t n, int64_t k0, int64_t kc, uint16_t *dst) {
    const int64_t ge = group_elems(p);
    for (int64_t r = 0; r < n; r++) {
        const int64_t row = r0 + r;
        uint16_t *d = dst + r * kc;
        if (row >= p->rows) {
            memset(d, 0, (size_t)kc * sizeof *d);
            continue;
        }
        const uint16_t *g = p->data + (row / CPU_PACK_ROWS) * ge + (row % CPU_PACK_ROWS) * CPU_PACK_COLS;
        int64_t k = k0;
        if (k0 % CPU_PACK_COLS == 0) /* whole chunks inside the padded row: 64-byte copies */
            for (; k + CPU_PACK_COLS <= k0 + kc && k + CPU_PACK_COLS <= p->K_pad; k += CPU_PACK_COLS)
                memcpy(d + (k - k0), g + (k / CPU_PACK_COLS) * (CPU_PACK_ROWS * CPU_PACK_COLS), CPU_PACK_COLS * sizeof *d);
        while (k < k0 + kc) { /* whole or partial chunks of 32 columns */
            const int64_t c = k / CPU_PACK_COLS, j = k % CPU_PACK_COLS, take = CPU_PACK_COLS - j < k0 + kc - k ? CPU_PACK_COLS - j : k0 + kc - k;
            if (k >= p->K_pad) memset(d + (k - k0), 0, (size_t)take * sizeof *d);
            else memcpy(d + (k - k0), g + c * (CPU_PACK_ROWS * CPU_PACK_COLS) + j, (size_t)take * sizeof *d);
            k += take;
        }
    }
}

/* ------------------------------------------------------------------ scalar */

/* y[b][r] (+)= Σ_k W[r][k] x[b][k] for the real rows of groups [g0, g1), in fp32. */
static void gemv_scalar(const CpuPackedBf16 *p, int64_t g0, int64_t g1, const float *x, int64_t ldx, int B, float *y,
                        int64_t ldy, int accumulate) {
    const int64_t ge = group_elems(p);
    for (int64_t g = g0; g < g1; g++)
        for (int i = 0; i < CPU_PACK_ROWS; i++) {
            const int64_t r = g * CPU_PACK_ROWS + i;
            if (r >= p->rows) break;
            for (int b = 0; b < B; b++) {
                float acc = 0;
                for (int64_t k = 0; k < p->K; k++)
                    acc += mamba2_bf16_to_f32(p->data[g * ge + (k / CPU_PACK_COLS) * (CPU_PACK_ROWS * CPU_PACK_COLS) +
                                                      i * CPU_PACK_COLS + k % CPU_PACK_COLS]) * x[b * ldx + k];
                y[b * ldy + r] = accumulate ? y[b * ldy + r] + acc : acc;
            }
        }
}

/* Vectors the next pass over a group takes when @p left remain: 3 while there are 3 (3 + 1 for 4
 * was measured faster than 2 + 2, results/cpu.md). */
static inline int vectors_this_pass(int left) { return left < 3 ? left : 3; }

/* ------------------------------------------------------------------ AVX-512 (both tiers) */

#define AVX512_INLINE __attribute__((always_inline, target("avx512f")))
#define AVX512_TARGET __attribute__((target("avx512f")))

/* y[j][8g + i] (+)= Σ of the 16 lanes of acc[i][j], for the real rows of group g and S vectors: the
 * end of the AVX-512 group products. */
static inline AVX512_INLINE void store_group(const CpuPackedBf16 *p, int64_t g, int S, __m512 acc[CPU_PACK_ROWS][3],
                                             float *y, int64_t ldy, int accumulate) {
    const int64_t r0 = g * CPU_PACK_ROWS;
#pragma GCC unroll 8
    for (int i = 0; i < CPU_PACK_ROWS; i++)
#pragma GCC unroll 3
        for (int j = 0; j < S; j++) {
            const float v = _mm512_reduce_add_ps(acc[i][j]);
            if (r0 + i < p->rows) y[j * ldy + r0 + i] = accumulate ? y[j * ldy + r0 + i] + v : v;
        }
}

/* ------------------------------------------------------------------ AVX512_BF16 */

#define DPBF16_INLINE __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16")))
#define DPBF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* xs [parts][K_pad]: x rounded to bf16 (x_hi) and, with parts = 2, the rest rounded again
 * (x_lo = bf16(x − x_hi)); zeros from K on. */
static DPBF16_TARGET void split_x(const float *x, int64_t K, int64_t K_pad, int parts, uint16_t *xs) {
    for (int64_t k = 0; k < K_pad; k += 16) {
        const __mmask16 m = K - k >= 16 ? (__mmask16)0xffff : K > k ? (__mmask16)((1u << (K - k)) - 1) : 0;
        __m512 v = _mm512_maskz_loadu_ps(m, x + k);
        __m256i hi = (__m256i)_mm512_cvtneps_pbh(v);
        _mm256_storeu_si256((__m256i *)(xs + k), hi);
        if (parts == 2) {
            __m512 hi_f = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
            _mm256_storeu_si256((__m256i *)(xs + K_pad + k), (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hi_f)));
        }
    }
}

/* Group g, S vectors (S ≤ 3, a constant after inlining), into y [S][ldy] (indexed from row 0 of
 * the matrix):
 *   y[j][8g+i] (+)= Σ_c W[8g+i][32c .. 32c+32) · (x_hi + x_lo)[j][32c .. 32c+32)
 * (vdpbf16ps sums adjacent pairs, so W and x are both read in their natural order; xs [S][parts][K_pad]).
 * Every line is asked for into L1 CPU_DECODE_AHEAD bytes and into L2 cpu_decode_ahead_l2() bytes before
 * it is read: the group and the ones after it are one stream. */
static inline DPBF16_INLINE void dpbf16_group(const CpuPackedBf16 *p, int64_t g, int S, const uint16_t *xs, int parts,
                                              float *y, int64_t ldy, int accumulate) {
    const int64_t K_pad = p->K_pad, chunks = K_pad / CPU_PACK_COLS, l2 = cpu_decode_ahead_l2();
    const uint16_t *G = p->data + g * group_elems(p);
    __m512 acc[CPU_PACK_ROWS][3];
#pragma GCC unroll 8
    for (int i = 0; i < CPU_PACK_ROWS; i++)
#pragma GCC unroll 3
        for (int j = 0; j < S; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < chunks; c++) {
        const uint16_t *w = G + c * CPU_PACK_ROWS * CPU_PACK_COLS;
        __m512bh xh[3], xl[3];
#pragma GCC unroll 3
        for (int j = 0; j < S; j++) {
            xh[j] = (__m512bh)_mm512_loadu_si512(xs + (j * parts) * K_pad + c * CPU_PACK_COLS);
            xl[j] = parts == 2 ? (__m512bh)_mm512_loadu_si512(xs + (j * parts + 1) * K_pad + c * CPU_PACK_COLS) : xh[j];
        }
#pragma GCC unroll 8
        for (int i = 0; i < CPU_PACK_ROWS; i++) {
            cpu_prefetch_stream(w + i * CPU_PACK_COLS, l2);
            const __m512bh wv = (__m512bh)_mm512_load_si512(w + i * CPU_PACK_COLS);
#pragma GCC unroll 3
            for (int j = 0; j < S; j++) {
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv, xh[j]);
                if (parts == 2) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv, xl[j]);
            }
        }
    }
    store_group(p, g, S, acc, y, ldy, accumulate);
}

/* dpbf16_group() with S and parts as constants: one call a case, so each copy unrolls. */
static inline DPBF16_INLINE void dpbf16_block(const CpuPackedBf16 *p, int64_t g, int S, const uint16_t *xs, int parts,
                                              float *y, int64_t ldy, int accumulate) {
#define DPBF16_CASE(s, q) \
    if (S == s && parts == q) return dpbf16_group(p, g, s, xs, q, y, ldy, accumulate)
    DPBF16_CASE(1, 2); DPBF16_CASE(1, 1); DPBF16_CASE(2, 2); DPBF16_CASE(2, 1); DPBF16_CASE(3, 2); DPBF16_CASE(3, 1);
#undef DPBF16_CASE
}

/* Groups [g0, g1) for B vectors, xs [B][parts][K_pad] as split_x() writes them. */
static DPBF16_TARGET void gemv_dpbf16(const CpuPackedBf16 *p, int64_t g0, int64_t g1, const uint16_t *xs, int B,
                                      float *y, int64_t ldy, int accumulate, int parts) {
    const int64_t Kp = p->K_pad;
    /* the whole group a pass, for up to 3 vectors (24 accumulators: measured faster than passes of
     * 4 rows × 4 vectors, results/cpu.md); later passes read the group from L1/L2 */
    for (int64_t g = g0; g < g1; g++)
        for (int b = 0; b < B;) {
            const int S = vectors_this_pass(B - b);
            dpbf16_block(p, g, S, xs + (size_t)b * parts * Kp, parts, y + b * ldy, ldy, accumulate);
            b += S;
        }
}

/* ------------------------------------------------------------------ AVX-512F (bf16 widened to fp32) */

/* Group g, S vectors (S ≤ 3, a constant after inlining), into y [S][ldy] (indexed from row 0 of
 * the matrix), in fp32: each bf16 weight widened exactly. A row's line of a chunk (32 columns) holds
 * in each 32-bit lane an even column's bf16 in its low half and the next, odd column's in its high
 * half, so a shift left by 16 makes the even columns' floats and clearing the low half the odd
 * ones': two integer instructions for 32 weights, where widening 16 at a time takes a shuffle and a
 * shift for every 16 (measured: results/cpu.md, "compute per byte of the bf16 decode products").
 * xp [S][K_pad] holds x in that order, with zeros from K on (even_odd_x() with 16 lanes):
 *   acc[i][j] += even(w_i) · xp[j][32c .. 32c+16) + odd(w_i) · xp[j][32c+16 .. 32c+32)
 * Every line is asked for into L1 and L2 ahead of its read, as in dpbf16_group(). */
static inline AVX512_INLINE void avx512_group(const CpuPackedBf16 *p, int64_t g, int S, const float *xp, float *y,
                                              int64_t ldy, int accumulate) {
    const int64_t K_pad = p->K_pad, chunks = K_pad / CPU_PACK_COLS, l2 = cpu_decode_ahead_l2();
    const uint16_t *G = p->data + g * group_elems(p);
    const __m512i odd = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 acc[CPU_PACK_ROWS][3];
#pragma GCC unroll 8
    for (int i = 0; i < CPU_PACK_ROWS; i++)
#pragma GCC unroll 3
        for (int j = 0; j < S; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < chunks; c++) {
        const uint16_t *w = G + c * CPU_PACK_ROWS * CPU_PACK_COLS;
        __m512 xe[3], xo[3];
#pragma GCC unroll 3
        for (int j = 0; j < S; j++)
            xe[j] = _mm512_loadu_ps(xp + j * K_pad + c * CPU_PACK_COLS), xo[j] = _mm512_loadu_ps(xp + j * K_pad + c * CPU_PACK_COLS + 16);
#pragma GCC unroll 8
        for (int i = 0; i < CPU_PACK_ROWS; i++) {
            cpu_prefetch_stream(w + i * CPU_PACK_COLS, l2);
            const __m512i v = _mm512_load_si512(w + i * CPU_PACK_COLS);
            const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), wo = _mm512_castsi512_ps(_mm512_and_si512(v, odd));
#pragma GCC unroll 3
            for (int j = 0; j < S; j++) acc[i][j] = _mm512_fmadd_ps(wo, xo[j], _mm512_fmadd_ps(we, xe[j], acc[i][j]));
        }
    }
    store_group(p, g, S, acc, y, ldy, accumulate);
}

/* avx512_group() with S as a constant: one call a case, so each copy unrolls. */
static inline AVX512_INLINE void avx512_block(const CpuPackedBf16 *p, int64_t g, int S, const float *xp, float *y,
                                              int64_t ldy, int accumulate) {
#define AVX512_CASE(s) \
    if (S == s) return avx512_group(p, g, s, xp, y, ldy, accumulate)
    AVX512_CASE(1); AVX512_CASE(2); AVX512_CASE(3);
#undef AVX512_CASE
}

/* Groups [g0, g1) for B vectors, xp [B][K_pad] = x with zeros from K on. */
static AVX512_TARGET void gemv_avx512(const CpuPackedBf16 *p, int64_t g0, int64_t g1, const float *xp, int B, float *y,
                                      int64_t ldy, int accumulate) {
    const int64_t Kp = p->K_pad;
    /* the whole group a pass, for up to 3 vectors (as gemv_dpbf16()) */
    for (int64_t g = g0; g < g1; g++)
        for (int b = 0; b < B;) {
            const int S = vectors_this_pass(B - b);
            avx512_block(p, g, S, xp + b * Kp, y + b * ldy, ldy, accumulate);
            b += S;
        }
}

/* ------------------------------------------------------------------ AVX2 + FMA */

#define AVX2_INLINE __attribute__((always_inline, target("avx2,fma")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))

/* Σ of the 8 lanes of v. */
static inline AVX2_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One group, one vector, in fp32: each bf16 weight widened exactly. A 32-bit lane of a line holds
 * the bf16 of an even column in its low half and of the next, odd column in its high half, so a
 * shift left by 16 makes the even columns' floats and clearing the low half the odd ones' (two
 * integer instructions that CPUs run on several ports, where an unpack runs on the shuffle port
 * only). xp holds x in that order, even_odd_x().
 * With 16 weights a 32-byte load:
 *   acc[i] += even(w_i) · x_even + odd(w_i) · x_odd      (8 lanes, summed at the end)
 * Every line is asked for into L1 and L2 ahead of its read, as in the AVX-512 kernels. */
static inline AVX2_INLINE void avx2_group(const uint16_t *G, int64_t chunks, const float *xp, __m256 acc[CPU_PACK_ROWS]) {
    const __m256i odd = _mm256_set1_epi32((int)0xFFFF0000);
    const int64_t l2 = cpu_decode_ahead_l2();
#pragma GCC unroll 8
    for (int i = 0; i < CPU_PACK_ROWS; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t c = 0; c < chunks; c++) {
        const uint16_t *w = G + c * (CPU_PACK_ROWS * CPU_PACK_COLS);
        const float *xc = xp + c * CPU_PACK_COLS;
        const __m256 xe0 = _mm256_loadu_ps(xc), xo0 = _mm256_loadu_ps(xc + 8), xe1 = _mm256_loadu_ps(xc + 16),
                     xo1 = _mm256_loadu_ps(xc + 24);
#pragma GCC unroll 8
        for (int i = 0; i < CPU_PACK_ROWS; i++) {
            cpu_prefetch_stream(w + i * CPU_PACK_COLS, l2);
            const __m256i v0 = _mm256_load_si256((const __m256i *)(w + i * CPU_PACK_COLS)),
                          v1 = _mm256_load_si256((const __m256i *)(w + i * CPU_PACK_COLS + 16));
            __m256 a = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), xe0, acc[i]);
            a = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v0, odd)), xo0, a);
            a = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), xe1, a);
            acc[i] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v1, odd)), xo1, a);
        }
    }
}

/* xp[2Lq + l] = x[2Lq + 2l], xp[2Lq + L + l] = x[2Lq + 2l + 1] (l < L = @p lanes: 8 for avx2_group(),
 * 16 for avx512_group()), zeros from K on: each 2L columns' even ones, then their odd ones, as the
 * groups widen them (K_pad is a multiple of 32, so of 2L). */
static void even_odd_x(const float *x, int64_t K, int64_t K_pad, int lanes, float *xp) {
    for (int64_t q = 0; q < K_pad; q += 2 * lanes)
        for (int l = 0; l < lanes; l++) {
            xp[q + l] = q + 2 * l < K ? x[q + 2 * l] : 0.0f;
            xp[q + lanes + l] = q + 2 * l + 1 < K ? x[q + 2 * l + 1] : 0.0f;
        }
}

/* Groups [g0, g1) for B vectors, one a pass, xp [B][K_pad] as even_odd_x() writes them. */
static AVX2_TARGET void gemv_avx2(const CpuPackedBf16 *p, int64_t g0, int64_t g1, const float *xp, int B, float *y,
                                  int64_t ldy, int accumulate) {
    const int64_t Kp = p->K_pad, chunks = Kp / CPU_PACK_COLS, ge = group_elems(p);
    for (int64_t g = g0; g < g1; g++)
        for (int b = 0; b < B; b++) {
            __m256 acc[CPU_PACK_ROWS];
            avx2_group(p->data + g * ge, chunks, xp + b * Kp, acc);
            for (int i = 0; i < CPU_PACK_ROWS && g * CPU_PACK_ROWS + i < p->rows; i++) {
                float *out = y + b * ldy + g * CPU_PACK_ROWS + i;
                const float s = hsum8(acc[i]);
                *out = accumulate ? *out + s : s;
            }
        }
}

/* ------------------------------------------------------------------ the activations, prepared once a call */

/* The kernel of tier @p isa. */
typedef enum { GEMV_SCALAR, GEMV_AVX2, GEMV_AVX512, GEMV_DPBF16 } GemvKernel;
static GemvKernel kernel_of(CpuIsa isa) {
    if (isa < CPU_ISA_AVX2) return GEMV_SCALAR;
    if (isa == CPU_ISA_AVX2) return GEMV_AVX2;
    return isa == CPU_ISA_AVX512BF16 ? GEMV_DPBF16 : GEMV_AVX512;
}

/* Bytes of the activations as kernel @p k takes them, for B vectors of p's K_pad (parts as split_x()). */
static size_t prepared_bytes(GemvKernel k, const CpuPackedBf16 *p, int B, int parts) {
    if (k == GEMV_DPBF16) return (size_t)B * parts * p->K_pad * sizeof(uint16_t);
    return (size_t)B * p->K_pad * sizeof(float);
}

/* The activations x [B, ldx] as kernel @p k takes them, in this thread's CPU_BUF_GEMV buffer
 * (*prep). Returns the kernel to run: @p k, or the scalar loop (which reads x itself) when there is
 * no memory for the buffer. */
static GemvKernel prepare_x(GemvKernel k, const CpuPackedBf16 *p, const float *x, int64_t ldx, int B, int parts,
                            const void **prep) {
    const int64_t K = p->K, Kp = p->K_pad;
    void *buf = k == GEMV_SCALAR ? NULL : cpu_thread_buffer(CPU_BUF_GEMV, prepared_bytes(k, p, B, parts));
    *prep = buf;
    if (!buf) return GEMV_SCALAR;
    for (int b = 0; b < B; b++) {
        const float *xb = x + b * ldx;
        /* zeros past K in every order: the padding of W is zero, and 0 · NaN would not be */
        if (k == GEMV_DPBF16) split_x(xb, K, Kp, parts, (uint16_t *)buf + (size_t)b * parts * Kp);
        else even_odd_x(xb, K, Kp, k == GEMV_AVX2 ? 8 : 16, (float *)buf + b * Kp);
    }
    return k;
}

/* Groups [g0, g1) by kernel @p k, the activations prepared (prepare_x(); x itself for the scalar loop). */
static void gemv_prepared(GemvKernel k, const CpuPackedBf16 *p, int64_t g0, int64_t g1, const float *x, int64_t ldx,
                          const void *prep, int B, float *y, int64_t ldy, int accumulate, int parts) {
    switch (k) {
    case GEMV_DPBF16: gemv_dpbf16(p, g0, g1, prep, B, y, ldy, accumulate, parts); break;
    case GEMV_AVX512: gemv_avx512(p, g0, g1, prep, B, y, ldy, accumulate); break;
    case GEMV_AVX2: gemv_avx2(p, g0, g1, prep, B, y, ldy, accumulate); break;
    default: gemv_scalar(p, g0, g1, x, ldx, B, y, ldy, accumulate); break;
    }
}

/* ------------------------------------------------------------------ entry points */

void cpu_packed_bf16_gemv_groups(CpuIsa isa, const CpuPackedBf16 *p, int64_t g0, int64_t g1, const float *x,
                                 int64_t ldx, int B, float *y, int64_t ldy, int accumulate, Mamba2Precision precision) {
    if (g1 <= g0) return;
    const int parts = precision == MAMBA2_PRECISION_FAST ? 1 : 2;
    const void *prep;
    const GemvKernel k = prepare_x(kernel_of(isa), p, x, ldx, B, parts, &prep);
    gemv_prepared(k, p, g0, g1, x, ldx, prep, B, y, ldy, accumulate, parts);
}

void cpu_packed_bf16_gemv(CpuIsa isa, const CpuPackedBf16 *p, const float *x, int64_t ldx, int B, float *y,
                          int64_t ldy, int accumulate, int n_threads, Mamba2Precision precision) {
    const int parts = precision == MAMBA2_PRECISION_FAST ? 1 : 2;
    /* x prepared once, on this thread, for every thread to read (not once per unit of work) */
    const void *prep;
    const GemvKernel k = prepare_x(kernel_of(isa), p, x, ldx, B, parts, &prep);
    const int64_t groups = p->rows_pad / CPU_PACK_ROWS;
    const int64_t unit = cpu_gemv_unit_rows(p->rows_pad, n_threads) / CPU_PACK_ROWS, n_units = (groups + unit - 1) / unit;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t u = 0; u < n_units; u++) {
        const int64_t g0 = u * unit, g1 = g0 + unit < groups ? g0 + unit : groups;
        gemv_prepared(k, p, g0, g1, x, ldx, prep, B, y, ldy, accumulate, parts);
    }
}

/* ------------------------------------------------------------------ prefill: the GEMM tiers' sources */

/* Row sources of the GEMM tiers (gemm_amx.h; gemm_avx512bf16.h, gemm_fp32.h): rows of the packed
 * copy, row-major. */
static void rows_amx(const void *src, int64_t r0, int64_t k0, int64_t kc, uint16_t *dst) {
    cpu_packed_bf16_rows(src, r0, 32, k0, kc, dst);
}

static void rows_at(const void *src, int64_t r0, int64_t n, int64_t k0, int64_t kc, uint16_t *dst) {
    cpu_packed_bf16_rows(src, r0, n, k0, kc, dst);
}

void cpu_packed_bf16_linear(const Mamba2Tensor *W, const CpuPackedBf16 *p, const float *X, int64_t ldx, int T,
                            float *Y, int64_t ldy, int accumulate, float *scratch, int n_threads,
                            Mamba2Precision precision) {
    if (cpu_linear_uses_gemv(W, T)) {
        cpu_packed_bf16_gemv(cpu_isa_active(), p, X, ldx, T, Y, ldy, accumulate, n_threads, precision);
        return;
    }
    /* each SIMD tier returns -1 (nothing written) when it cannot run; the sgemm path takes anything */
    const CpuGemmTier tier = cpu_linear_tier(W, precision);
    switch (tier) {
    case CPU_GEMM_AMX:
        if (cpu_linear_amx_rows(rows_amx, p, p->rows, p->K, X, ldx, T, Y, ldy, accumulate, n_threads, precision) == 0) return;
        break;
    case CPU_GEMM_AVX512BF16:
        if (cpu_linear_avx512bf16_rows(rows_at, p, p->rows, p->K, X, ldx, T, Y, ldy, accumulate, n_threads, precision) == 0)
            return;
        break;
    case CPU_GEMM_AVX512:
    case CPU_GEMM_AVX2:
        if (cpu_linear_fp32_rows(tier, rows_at, p, p->rows, p->K, X, ldx, T, Y, ldy, accumulate, n_threads) == 0) return;
        break;
    default: break;
    }
    /* For each panel of CPU_GEMM_PANEL_ROWS weight rows [r0, r0 + n):
     *   Wp [n, K] = fp32(W[r0 .. r0+n)),   Y[:, r0 .. r0+n) (+)= X [T, K] · Wpᵀ   (cblas_sgemm on this thread) */
    const int64_t K = p->K, n_panels = (p->rows + CPU_GEMM_PANEL_ROWS - 1) / CPU_GEMM_PANEL_ROWS;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t q = 0; q < n_panels; q++) {
        const int64_t r0 = q * CPU_GEMM_PANEL_ROWS, n = p->rows - r0 < CPU_GEMM_PANEL_ROWS ? p->rows - r0 : CPU_GEMM_PANEL_ROWS;
        float *panel = scratch + (size_t)omp_get_thread_num() * CPU_GEMM_PANEL_ROWS * K;
        for (int64_t r = 0; r < n; r++) { /* row r0 + r, chunk by chunk */
            const uint16_t *g = p->data + ((r0 + r) / CPU_PACK_ROWS) * group_elems(p) + ((r0 + r) % CPU_PACK_ROWS) * CPU_PACK_COLS;
            for (int64_t c = 0; c * CPU_PACK_COLS < K; c++) {
                const uint16_t *line = g + c * (CPU_PACK_ROWS * CPU_PACK_COLS);
                const int64_t m = K - c * CPU_PACK_COLS < CPU_PACK_COLS ? K - c * CPU_PACK_COLS : CPU_PACK_COLS;
                for (int64_t j = 0; j < m; j++) panel[r * K + c * CPU_PACK_COLS + j] = mamba2_bf16_to_f32(line[j]);
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)n, (int)K, 1.0f, X, (int)ldx, panel, (int)K,
                    accumulate ? 1.0f : 0.0f, Y + r0, (int)ldy);
    }
}
