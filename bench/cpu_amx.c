/**
 * @file cpu_amx.c
 * @brief What AMX can do on this CPU, beside what the CPU path's AMX GEMM does.
 *
 *     make build/bench_cpu_amx && build/bench_cpu_amx [THREADS]
 *
 * Three rates, for 1 thread and for THREADS (default 2) threads at once:
 * - TDPBF16PS alone, on tiles already in registers: the hardware's peak (16 × 16 × 32 bf16
 *   multiply-adds per instruction);
 * - TDPBF16PS with one 1 KiB tile load from L1 per instruction: what feeding the unit costs
 *   (the GEMM of cpu/gemm_amx.c needs 0.75 loads per instruction, most of them from L2);
 * - cpu_amx_gemm_rate(): the GEMM itself at M = 512, N = 2048, K = 4096, counting useful FLOP
 *   (its two bf16 halves of the activations count once, so it runs 2 instructions per product).
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm_amx.h"
#include "roofline.h"

/** The tile configuration: 8 tiles of 16 rows × 64 bytes. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

static const TileConfig config = {.palette = 1, .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                  .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

/* Seconds for n rounds of 4 TDPBF16PS (tmm0..3 += tmm4|5 · tmm6|7), with or without 4 tile loads each. */
__attribute__((target("amx-tile,amx-bf16"))) static double tdp_rounds(long n, int with_loads) {
    static __thread uint16_t buf[4 * 512] __attribute__((aligned(64))); /* 4 tiles of zeros, in L1 */
    _tile_loadconfig(&config);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    double t0 = omp_get_wtime();
    for (long i = 0; i < n; i++) {
        if (with_loads) {
            _tile_loadd(4, buf, 64);
            _tile_loadd(5, buf + 512, 64);
            _tile_loadd(6, buf + 1024, 64);
            _tile_loadd(7, buf + 1536, 64);
        }
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    double t = omp_get_wtime() - t0;
    _tile_release();
    return t;
}

/* GFLOP/s of n_threads threads each running tdp_rounds() at once (best of 3). */
static double tdp_rate(int n_threads, int with_loads) {
    const long n = 1000000;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t = 0;
#pragma omp parallel num_threads(n_threads) reduction(max : t)
        t = tdp_rounds(n, with_loads);
        double gflops = 4.0 * n * 16 * 16 * 32 * 2 * n_threads / t / 1e9;
        if (gflops > best) best = gflops;
    }
    return best;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 2;
    if (nt < 1) {
        fprintf(stderr, "usage: bench_cpu_amx [THREADS]\n");
        return 2;
    }
    if (!cpu_amx_available()) {
        printf("AMX-BF16 is not available here (CPU without it, or the kernel refused the tile state)\n");
        return 0;
    }
    printf("%-48s %12s %12s\n", "GFLOP/s", "1 thread", nt > 1 ? "threads" : "");
    const char *what[2] = {"TDPBF16PS, tiles in registers (peak)", "TDPBF16PS + one L1 tile load each"};
    for (int l = 0; l < 2; l++) printf("%-48s %12.0f %12.0f\n", what[l], tdp_rate(1, l), nt > 1 ? tdp_rate(nt, l) : 0);
    printf("%-48s %12.0f %12.0f\n", "cpu_linear_amx 512x2048x4096 (useful FLOP)", cpu_amx_gemm_rate(1, 512, 2048, 4096, 3),
           nt > 1 ? cpu_amx_gemm_rate(nt, 512, 2048, 4096, 3) : 0);
    return 0;
}
