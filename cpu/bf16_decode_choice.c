/**
 * @file bf16_decode_choice.c
 * @brief cpu_bf16_time_decode(): the ways of bf16 decode timed side by side (bf16_decode_choice.h).
 */
#include "bf16_decode_choice.h"

#include <omp.h>
#include <stdlib.h>

int cpu_bf16_time_decode(const Mamba2Tensor *const *W, const CpuPackedBf16 *packed, int n, int n_threads,
                         Mamba2Precision precision, int B, CpuBf16Decode *ways, int n_ways) {
    int64_t K = 0, rows = 0;
    for (int i = 0; i < n; i++) {
        if (W[i]->shape[1] > K) K = W[i]->shape[1];
        if (W[i]->shape[0] > rows) rows = W[i]->shape[0];
    }
    float *x = malloc((size_t)B * K * sizeof *x), *y = malloc((size_t)B * rows * sizeof *y); /* [B, K], [B, rows] */
    if (!x || !y) {
        free(x), free(y);
        return -1;
    }
    cpu_trial_activations(x, B * K);
    const CpuPrefetch chosen = cpu_gemv_prefetch();
    for (int w = 0; w < n_ways; w++) ways[w].seconds = 0;
    for (int r = 0; r <= CPU_DECODE_TRIAL_ROUNDS; r++)
        for (int j = 0; j < n_ways; j++) {
            CpuBf16Decode *way = &ways[(j + r) % n_ways]; /* round r starts with way r mod n_ways */
            if (!way->packed) cpu_gemv_choose_prefetch(way->prefetch);
            double t0 = omp_get_wtime();
            for (int i = 0; i < n; i++)
                if (way->packed) cpu_packed_bf16_gemv(way->isa, &packed[i], x, K, B, y, rows, 0, n_threads, precision);
                else cpu_gemv(way->isa, W[i], x, K, B, y, rows, 0, n_threads, precision);
            double t = omp_get_wtime() - t0;
            /* the first round faults the pages in and warms the threads */
            if (r > 0 && (way->seconds == 0 || t < way->seconds)) way->seconds = t;
        }
    cpu_gemv_choose_prefetch(chosen);
    free(x), free(y);
    return 0;
}
