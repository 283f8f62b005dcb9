/**
 * @file bf16_layout.c
 * @brief cpu_bf16_packed_speedup(): the two bf16 decode products timed side by side (bf16_layout.h).
 */
#include "bf16_layout.h"

#include <omp.h>
#include <stdlib.h>

double cpu_bf16_packed_speedup(const Mamba2Tensor *const *W, const CpuPackedBf16 *packed, int n, int n_threads,
                               Mamba2Precision precision) {
    int64_t K = 0, rows = 0;
    for (int i = 0; i < n; i++) {
        if (W[i]->shape[1] > K) K = W[i]->shape[1];
        if (W[i]->shape[0] > rows) rows = W[i]->shape[0];
    }
    float *x = malloc((size_t)K * sizeof *x), *y = malloc((size_t)rows * sizeof *y); /* [K], [rows] */
    if (!x || !y) {
        free(x), free(y);
        return 0;
    }
    for (int64_t k = 0; k < K; k++) x[k] = (float)((k * 2654435761u) % 1000) / 500.0f - 1.0f; /* in [-1, 1) */
    double t_in_place = 0, t_packed = 0;
    for (int r = 0; r <= CPU_LAYOUT_ROUNDS; r++)
        for (int i = 0; i < n; i++)
            for (int side = 0; side < 2; side++) { /* packed first in odd rounds, in place first in even ones */
                const int pk = side ^ (r & 1);
                double t0 = omp_get_wtime();
                if (pk) cpu_packed_bf16_gemv(&packed[i], x, 0, 1, y, 0, 0, n_threads, precision);
                else cpu_gemv(W[i], x, 0, 1, y, 0, 0, n_threads, precision);
                double t = omp_get_wtime() - t0;
                if (r == 0) continue; /* the first round faults the pages in and warms the threads */
                if (pk) t_packed += t;
                else t_in_place += t;
            }
    free(x), free(y);
    return t_packed > 0 ? t_in_place / t_packed : 0;
}
