/**
 * @file cpu_gemv_stream.c
 * @brief Whether the decode GEMV reads the weights as fast as this machine reads memory: one decode
 *        step's products of a checkpoint, in the model's order, beside a plain read of the same bytes.
 *
 *     make build/bench_cpu_gemv_stream && build/bench_cpu_gemv_stream DIR [THREADS] [ROUNDS]
 *
 * Each round times three passes over every layer's in_proj and out_proj, then the lm_head (the
 * weights one decode step of one sequence reads, from the checkpoint's own mapping):
 * - cpu_gemv() at default precision (x in two bf16 parts on AVX512_BF16 CPUs), as decode runs it;
 * - a plain read of the same bytes: 64-byte loads summed, blocks of 2 MiB handed out to the threads;
 * - cpu_gemv() at fast precision (x in one bf16 part).
 * and prints each as GB/s of weights. On a shared host the read rate changes from minute to minute,
 * so the GEMV is compared with the read of the same round (MAMBA2_CPU_PREFETCH=none|row|next
 * changes the GEMV's prefetch, as in the backend).
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemv_bf16.h"
#include "model.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define READ_BLOCK ((size_t)2 << 20) /* bytes a thread takes at a time */

/* Σ of W's bytes as 64-bit integers (so that the loads cannot be dropped), four loads in flight. */
__attribute__((target("avx512f"))) static double read_all(const Mamba2Tensor *W, int threads) {
    const char *p = W->data;
    const size_t n = (size_t)W->shape[0] * W->shape[1] * 2, blocks = n / READ_BLOCK;
    double s = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(+ : s)
    for (size_t blk = 0; blk < blocks; blk++) {
        __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
        for (size_t i = blk * READ_BLOCK; i < (blk + 1) * READ_BLOCK; i += 256) {
            a = _mm512_add_epi64(a, _mm512_loadu_si512(p + i));
            b = _mm512_add_epi64(b, _mm512_loadu_si512(p + i + 64));
            c = _mm512_add_epi64(c, _mm512_loadu_si512(p + i + 128));
            d = _mm512_add_epi64(d, _mm512_loadu_si512(p + i + 192));
        }
        s += (double)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
    }
    return s;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: %s DIR [THREADS (2)] [ROUNDS (6)]   (an AVX-512 CPU; bf16 weights)\n", argv[0]);
        return 2;
    }
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "%s: the plain read uses AVX-512, which this CPU does not have\n", argv[0]);
        return 1;
    }
    Mamba2Model m;
    Mamba2Error e;
    memset(&m, 0, sizeof m);
    if (mamba2_model_load(argv[1], &m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    const int L = m.cfg.n_layer, threads = argc > 2 ? atoi(argv[2]) : 2, rounds = argc > 3 ? atoi(argv[3]) : 6;
    const Mamba2Tensor **mats = malloc(sizeof *mats * (2 * L + 1)); /* [2L + 1] in the order decode reads them */
    int n = 0;
    for (int l = 0; l < L; l++) mats[n++] = &m.w.layers[l].in_proj, mats[n++] = &m.w.layers[l].out_proj;
    mats[n++] = &m.w.lm_head;
    double bytes = 0, sink = 0;
    int64_t most_cols = 0, most_rows = 0;
    for (int i = 0; i < n; i++) {
        if (mats[i]->dtype != MAMBA2_BF16) {
            fprintf(stderr, "%s: %s is not bf16\n", argv[0], mats[i]->name);
            return 1;
        }
        bytes += (double)mats[i]->shape[0] * mats[i]->shape[1] * 2;
        if (mats[i]->shape[1] > most_cols) most_cols = mats[i]->shape[1];
        if (mats[i]->shape[0] > most_rows) most_rows = mats[i]->shape[0];
    }
    float *x = malloc(sizeof(float) * most_cols), *y = malloc(sizeof(float) * most_rows); /* [K], [rows] */
    for (int64_t i = 0; i < most_cols; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    printf("%s: %d layers, %.2f GB of bf16 weights a decode step, %d threads\n", argv[1], L, bytes / 1e9, threads);
    for (int i = 0; i < n; i++) sink += read_all(mats[i], threads); /* fault every page in once */
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int i = 0; i < n; i++) cpu_gemv(mats[i], x, 0, 1, y, 0, 0, threads, MAMBA2_PRECISION_DEFAULT);
        const double t_default = now() - t0;
        t0 = now();
        for (int i = 0; i < n; i++) sink += read_all(mats[i], threads);
        const double t_read = now() - t0;
        t0 = now();
        for (int i = 0; i < n; i++) cpu_gemv(mats[i], x, 0, 1, y, 0, 0, threads, MAMBA2_PRECISION_FAST);
        const double t_fast = now() - t0;
        printf("round %d: GEMV default %.1f GB/s, plain read %.1f GB/s, GEMV fast %.1f GB/s; default / read %.2f\n", r + 1,
               bytes / t_default / 1e9, bytes / t_read / 1e9, bytes / t_fast / 1e9, t_read / t_default);
    }
    free(x), free(y), free(mats);
    mamba2_model_free(&m);
    return sink == 0.5; /* never: keeps the read's sums alive */
}
