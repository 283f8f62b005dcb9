/**
 * @file gpu_kernels.c
 * @brief Benchmark of the GPU kernels alone at the Codestral-7B shapes, beside the measured
 *        ceilings: the chunked SSD of one layer (T = 4096) and the decode GEMV of every projection.
 *
 * Usage: build/bench_gpu_kernels [--json]   (needs a GPU)
 */
#include <stdio.h>
#include <string.h>

#include "gpu.h"

int main(int argc, char **argv) {
    int json = argc > 1 && !strcmp(argv[1], "--json");
    Mamba2Error e = {{0}};
    if (!mamba2_gpu_available(&e)) {
        fprintf(stderr, "bench_gpu_kernels: %s\n", e.msg);
        return 1;
    }
    double copy_gbps, gemm_gflops;
    if (mamba2_gpu_roofline(&copy_gbps, &gemm_gflops, &e)) {
        fprintf(stderr, "roofline: %s\n", e.msg);
        return 1;
    }
    /* chunked SSD, one layer: x·dt, B, C in, y out; FLOPs of the four contractions (causal half of CBᵀ·X),
     * counted once per group for C·Bᵀ, as the algorithm needs them (the chunk scan forms C·Bᵀ again for
     * each of a group's heads, in registers, rather than reading it back from memory) */
    SSDDims d = {4096, 128, 64, 8, 128};
    int Q = 256;
    double parts[3];
    double ssd_ms = mamba2_gpu_time_ssd_chunked(d, Q, 20, parts, &e);
    if (ssd_ms < 0) {
        fprintf(stderr, "ssd: %s\n", e.msg);
        return 1;
    }
    double nc = d.T / Q, cb = nc * d.G * 2.0 * Q * Q * d.N, diag = nc * d.H * 2.0 * Q * Q * d.P / 2,
           states = nc * d.H * 2.0 * Q * d.P * d.N, out = nc * d.H * 2.0 * Q * d.N * d.P;
    double ssd_gflop = (cb + diag + states + out) / 1e9;
    if (!json) {
        printf("GPU ceilings: copy %.0f GB/s (read + write), bf16 GEMM %.0f TFLOP/s\n\n", copy_gbps, gemm_gflops / 1e3);
        printf("chunked SSD, one layer, T=%d H=%d P=%d N=%d G=%d Q=%d: %.3f ms  (%.1f GFLOP -> %.0f TFLOP/s)\n", d.T,
               d.H, d.P, d.N, d.G, Q, ssd_ms, ssd_gflop, ssd_gflop / ssd_ms);
        printf("  cumsum %.3f  chunk states + state passing %.3f  chunk scan (with C.B^T) %.3f ms\n\n", parts[0],
               parts[1], parts[2]);
        printf("%-10s %-14s %3s %9s %9s %8s\n", "GEMV", "rows x cols", "nb", "ms", "GB/s", "of copy");
    } else {
        printf("{\"copy_gbps\": %.1f, \"gemm_gflops\": %.1f, \"ssd_ms\": %.4f, \"ssd_gflop\": %.2f, \"gemv\": [", copy_gbps,
               gemm_gflops, ssd_ms, ssd_gflop);
    }
    struct {
        const char *name;
        int rows, cols;
    } shapes[] = {{"in_proj", 18560, 4096}, {"out_proj", 4096, 8192}, {"lm_head", 32768, 4096}};
    int first = 1;
    for (int k = 0; k < 3; k++)
        for (int nb = 1; nb <= 4; nb *= 4) {
            double ms = mamba2_gpu_time_gemv(shapes[k].rows, shapes[k].cols, nb, 50, &e);
            if (ms < 0) {
                fprintf(stderr, "gemv: %s\n", e.msg);
                return 1;
            }
            double gbps = (double)shapes[k].rows * shapes[k].cols * 2 / (ms * 1e-3) / 1e9;
            if (!json)
                printf("%-10s %6d x %-6d %3d %9.4f %9.0f %7.0f%%\n", shapes[k].name, shapes[k].rows, shapes[k].cols, nb,
                       ms, gbps, 100 * gbps / copy_gbps);
            else
                printf("%s{\"name\": \"%s\", \"nb\": %d, \"ms\": %.5f, \"gbps\": %.1f}", first ? "" : ", ",
                       shapes[k].name, nb, ms, gbps);
            first = 0;
        }
    if (json) printf("]}\n");
    return 0;
}
