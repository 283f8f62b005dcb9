/* compute rate of the q8 decode product with W resident in L2, one thread, T = 1: the slope between
 * two row counts (the per-call cost, quantizing x, cancels).
 * build (repository root): gcc -O2 -fopenmp -Icpu -Iinclude -Isrc -Imodel -Iref -I. FILE build/libmamba2.a -o qs
 *     -ljson-c -lz -lopenblas -lm [the CUDA libraries of the Makefile with GPU=1]; run: MAMBA2_CPU_VNNI=0
 *     MAMBA2_CPU_ISA=avx2 ./qs [q4] (2026-12-06: results/cpu_intel_emr_q8_signed_prefetch_2026-12-06.txt) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include "qmatrix.h"
static double per_call(int64_t rows, int64_t K, Mamba2WeightFormat f) {
    uint16_t *w = aligned_alloc(64, rows * K * 2);
    for (int64_t i = 0; i < rows * K; i++) w[i] = 0x3f80 + (i % 64) + ((i % 3) << 15);
    Mamba2Tensor W = {.name = "w", .dtype = MAMBA2_BF16, .ndim = 2, .shape = {rows, K}, .data = w};
    float *x = malloc(K * 4), *y = malloc(rows * 4);
    for (int64_t k = 0; k < K; k++) x[k] = (k % 7) * 0.1f - 0.3f;
    CpuQMatrix q; Mamba2Error e;
    if (cpu_qmatrix_quantize(&W, f, 1, &q, &e)) { printf("quantize failed\n"); exit(1); }
    void *scratch = malloc(cpu_qlinear_scratch_bytes(K, 1));
    double best = 1e9;
    for (int r = 0; r < 7; r++) {
        double t0 = omp_get_wtime();
        for (int it = 0; it < 400; it++) cpu_qlinear(cpu_isa_active(), &q, x, K, 1, y, rows, 0, scratch, 1, MAMBA2_PRECISION_DEFAULT);
        double t = (omp_get_wtime() - t0) / 400;
        if (t < best) best = t;
    }
    cpu_qmatrix_free(&q); free(w); free(x); free(y); free(scratch);
    return best;
}
int main(int argc, char **argv) {
    int64_t K = 2048, r1 = 64, r2 = 512;
    Mamba2WeightFormat f = argc > 1 && argv[1][1] == '4' ? MAMBA2_WEIGHTS_Q4 : MAMBA2_WEIGHTS_Q8;
    double bpw = f == MAMBA2_WEIGHTS_Q8 ? 1.03125 : 0.5625;
    for (int rep = 0; rep < 3; rep++) {
        double t1 = per_call(r1, K, f), t2 = per_call(r2, K, f);
        printf("%.1f ", (r2 - r1) * K * bpw / (t2 - t1) / 1e9);
    }
    printf("GB/s (call overhead %.1f us)\n", 1e6 * (per_call(r1, K, f) - r1 * K * bpw / 30e9));
    return 0;
}
