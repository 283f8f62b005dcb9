/* The AVX2 bf16 decode product's loop body alone, 8 rows × K, one vector, W resident in L1/L2:
 * unpacking with zeros (vpunpcklwd / vpunpckhwd, gemv_bf16.c's avx2_block_bf16) against even and odd
 * columns (vpslld + vpand, as the packed AVX2 product does). Not built by make:
 *
 *     cc -O2 -fopenmp results/tried/2026-12-06-avx2-bf16-unpack-vs-even-odd.c -o /tmp/body2
 *     taskset -c 1 /tmp/body2 8 1024 200000 ; taskset -c 1 /tmp/body2 192 2048 2000
 *
 * Results: results/cpu.md, "compute per byte of the bf16 decode products" (no difference: not changed). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#define T __attribute__((target("avx2,fma")))
static T void unpack(const uint16_t *W, int64_t K, int64_t rows, const float *xp, float *y) {
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
        for (int i = 0; i < 8; i++) { __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1)); s = _mm_hadd_ps(s, s); s = _mm_hadd_ps(s, s); y[r + i] = _mm_cvtss_f32(s); }
    }
}
static T void evenodd(const uint16_t *W, int64_t K, int64_t rows, const float *xp, float *y) {
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
        for (int i = 0; i < 8; i++) { __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1)); s = _mm_hadd_ps(s, s); s = _mm_hadd_ps(s, s); y[r + i] = _mm_cvtss_f32(s); }
    }
}
int main(int argc, char **argv) {
    int64_t rows = atoll(argv[1]), K = atoll(argv[2]); int iters = atoi(argv[3]);
    uint16_t *W = aligned_alloc(64, rows * K * 2);
    for (int64_t i = 0; i < rows * K; i++) W[i] = 0x3f80 + (i % 64);
    float *x = aligned_alloc(64, K * 4), *y = malloc(rows * 4);
    for (int64_t k = 0; k < K; k++) x[k] = (k % 7) * 0.1f;
    for (int rep = 0; rep < 3; rep++) for (int v = 0; v < 2; v++) {
        double best = 1e9;
        for (int r = 0; r < 5; r++) { double t0 = omp_get_wtime();
            for (int it = 0; it < iters; it++) { if (v) evenodd(W, K, rows, x, y); else unpack(W, K, rows, x, y); __asm__ volatile("" ::: "memory"); }
            double t = (omp_get_wtime() - t0) / iters; if (t < best) best = t; }
        printf("%s %.1f GB/s | ", v ? "evenodd" : "unpack ", rows * K * 2 / best / 1e9);
        if (v) printf("\n");
    }
}
