/* The AVX-512F bf16 decode product's loop body alone, 8 rows × K, one vector, W resident in L1/L2:
 * widening 16 weights at a time (vpmovzxwd + vpslld, as gemv_bf16.c did before 2026-12-06) against
 * 32 at a time as even and odd columns (vpslld + vpandd, x permuted once). Not built by make:
 *
 *     cc -O2 -fopenmp results/tried/2026-12-06-avx512-bf16-widen-vs-even-odd.c -o /tmp/body
 *     taskset -c 1 /tmp/body 8 1024 200000      # 16 KB: L1
 *     taskset -c 1 /tmp/body 192 2048 2000      # 768 KB: L2
 *
 * Results: results/cpu.md, "compute per byte of the bf16 decode products". */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#define T __attribute__((target("avx512f,avx512bw")))
static T void widen(const uint16_t *W, int64_t K, int64_t rows, const float *x, float *y) {
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
static T void evenodd(const uint16_t *W, int64_t K, int64_t rows, const float *xp, float *y) {
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
int main(int argc, char **argv) {
    int64_t rows = atoll(argv[1]), K = atoll(argv[2]); int iters = atoi(argv[3]);
    uint16_t *W = aligned_alloc(64, rows * K * 2);
    for (int64_t i = 0; i < rows * K; i++) W[i] = 0x3f80 + (i % 64);
    float *x = aligned_alloc(64, K * 4), *xp = aligned_alloc(64, K * 4), *y = malloc(rows * 4);
    for (int64_t k = 0; k < K; k++) x[k] = (k % 7) * 0.1f;
    for (int64_t q = 0; q < K; q += 32) for (int i = 0; i < 16; i++) xp[q + i] = x[q + 2 * i], xp[q + 16 + i] = x[q + 2 * i + 1];
    for (int rep = 0; rep < 3; rep++) for (int v = 0; v < 2; v++) {
        double best = 1e9;
        for (int r = 0; r < 5; r++) { double t0 = omp_get_wtime();
            for (int it = 0; it < iters; it++) { if (v) evenodd(W, K, rows, xp, y); else widen(W, K, rows, x, y); __asm__ volatile("" ::: "memory"); }
            double t = (omp_get_wtime() - t0) / iters; if (t < best) best = t; }
        printf("%s %.1f GB/s  y0 %.3f | ", v ? "evenodd" : "widen  ", rows * K * 2 / best / 1e9, y[0]);
        if (v) printf("\n");
    }
}
