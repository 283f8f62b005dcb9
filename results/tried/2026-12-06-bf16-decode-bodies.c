/* The bf16 decode products' loop bodies alone, 8 rows × K, one vector, W resident in L1 or L2, one
 * thread: on zmm, widening 16 weights at a time (vpmovzxwd + vpslld, as gemv_bf16.c did before
 * 2026-12-06) against 32 at a time as even and odd columns (vpslld + vpandd, x permuted once); on ymm,
 * unpacking with zeros (gemv_bf16.c's avx2_block_bf16) against even and odd columns (as the packed AVX2
 * product). Not built by make:
 *
 *     cc -O2 -fopenmp results/tried/2026-12-06-bf16-decode-bodies.c -o /tmp/bodies
 *     taskset -c 1 /tmp/bodies 8 1024 200000      # 16 KB: L1
 *     taskset -c 1 /tmp/bodies 192 2048 2000      # 768 KB: L2
 *
 * Results: results/cpu.md, "compute per byte of the bf16 decode products". */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#define Z __attribute__((target("avx512f,avx512bw")))
#define Y __attribute__((target("avx2,fma")))
/* hsum of a ymm */
static Y float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}
static Z void zmm_widen(const uint16_t *W, int64_t K, int64_t rows, const float *x, float *y) {
    for (int64_t r = 0; r < rows; r += 8) {
        __m512 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            __m512 xv = _mm512_loadu_ps(x + k);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                __m512 w = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(W + (r + i) * K + k))), 16));
                acc[i] = _mm512_fmadd_ps(w, xv, acc[i]);
            }
        }
        for (int i = 0; i < 8; i++) y[r + i] = _mm512_reduce_add_ps(acc[i]);
    }
}
static Z void zmm_evenodd(const uint16_t *W, int64_t K, int64_t rows, const float *xp, float *y) {
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    for (int64_t r = 0; r < rows; r += 8) {
        __m512 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 32) {
            __m512 xe = _mm512_loadu_ps(xp + k), xo = _mm512_loadu_ps(xp + k + 16);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                __m512i v = _mm512_loadu_si512(W + (r + i) * K + k);
                __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), wo = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
                acc[i] = _mm512_fmadd_ps(wo, xo, _mm512_fmadd_ps(we, xe, acc[i]));
            }
        }
        for (int i = 0; i < 8; i++) y[r + i] = _mm512_reduce_add_ps(acc[i]);
    }
}
static Y void ymm_unpack(const uint16_t *W, int64_t K, int64_t rows, const float *xp, float *y) {
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t r = 0; r < rows; r += 8) {
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            __m256 xl = _mm256_loadu_ps(xp + k), xh = _mm256_loadu_ps(xp + k + 8);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(W + (r + i) * K + k));
                __m256 lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, v)), hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, v));
                acc[i] = _mm256_fmadd_ps(hi, xh, _mm256_fmadd_ps(lo, xl, acc[i]));
            }
        }
        for (int i = 0; i < 8; i++) y[r + i] = hsum8(acc[i]);
    }
}
static Y void ymm_evenodd(const uint16_t *W, int64_t K, int64_t rows, const float *xp, float *y) {
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
    for (int64_t r = 0; r < rows; r += 8) {
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            __m256 xe = _mm256_loadu_ps(xp + k), xo = _mm256_loadu_ps(xp + k + 8);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(W + (r + i) * K + k));
                __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
                acc[i] = _mm256_fmadd_ps(wo, xo, _mm256_fmadd_ps(we, xe, acc[i]));
            }
        }
        for (int i = 0; i < 8; i++) y[r + i] = hsum8(acc[i]);
    }
}
typedef void (*Body)(const uint16_t *, int64_t, int64_t, const float *, float *);
int main(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "usage: %s ROWS K ITERS (ROWS a multiple of 8, K of 32)\n", argv[0]), 1;
    int64_t rows = atoll(argv[1]), K = atoll(argv[2]);
    int iters = atoi(argv[3]);
    uint16_t *W = aligned_alloc(64, rows * K * 2);
    for (int64_t i = 0; i < rows * K; i++) W[i] = 0x3f80 + (i % 64);
    float *x = aligned_alloc(64, K * 4), *x16 = aligned_alloc(64, K * 4), *x8 = aligned_alloc(64, K * 4), *y = malloc(rows * 4);
    for (int64_t k = 0; k < K; k++) x[k] = (k % 7) * 0.1f;
    for (int64_t q = 0; q < K; q += 32) /* zmm even/odd order: 16 evens, 16 odds per 32 columns */
        for (int i = 0; i < 16; i++) x16[q + i] = x[q + 2 * i], x16[q + 16 + i] = x[q + 2 * i + 1];
    static const int perm[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15}; /* ymm unpack order */
    for (int64_t q = 0; q < K; q += 16)
        for (int i = 0; i < 16; i++) x8[q + i] = x[q + perm[i]];
    float *x8eo = aligned_alloc(64, K * 4); /* ymm even/odd order: 8 evens, 8 odds per 16 columns */
    for (int64_t q = 0; q < K; q += 16)
        for (int i = 0; i < 8; i++) x8eo[q + i] = x[q + 2 * i], x8eo[q + 8 + i] = x[q + 2 * i + 1];
    const Body bodies[] = {zmm_widen, zmm_evenodd, ymm_unpack, ymm_evenodd};
    const float *xs[] = {x, x16, x8, x8eo};
    const char *names[] = {"zmm widen  ", "zmm evenodd", "ymm unpack ", "ymm evenodd"};
    for (int rep = 0; rep < 3; rep++) {
        for (int v = 0; v < 4; v++) {
            double best = 1e9;
            for (int r = 0; r < 5; r++) {
                double t0 = omp_get_wtime();
                for (int it = 0; it < iters; it++) {
                    bodies[v](W, K, rows, xs[v], y);
                    __asm__ volatile("" ::: "memory");
                }
                double t = (omp_get_wtime() - t0) / iters;
                if (t < best) best = t;
            }
            printf("%s %5.1f GB/s (y0 %.3f) | ", names[v], rows * K * 2 / best / 1e9, y[0]);
        }
        printf("\n");
    }
    return 0;
}
