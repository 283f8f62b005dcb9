/**
 * @file roofline.h
 * @brief This machine's two ceilings, measured: streaming read bandwidth and the sgemm rate prefill uses.
 */
#ifndef MAMBA2_CPU_ROOFLINE_H
#define MAMBA2_CPU_ROOFLINE_H

#include <stddef.h>

#include "error.h"

/**
 * @brief Multi-threaded streaming read bandwidth.
 *
 * @p n_threads OpenMP threads each sum their contiguous share of a @p bytes buffer of floats with
 * SIMD loads (the decode kernel's access pattern without the arithmetic); best of @p reps passes.
 * @return GB/s (10⁹ bytes per second), or a negative value when the buffer cannot be allocated.
 */
double cpu_read_bandwidth(int n_threads, size_t bytes, int reps);

/**
 * @brief The rate of the GEMM prefill runs: every thread calls single-threaded cblas_sgemm on its
 *        own [M, K] × [N, K]ᵀ product (the shape of one converted weight panel), all at once.
 * @return GFLOP/s over all threads (best of @p reps rounds), or a negative value on allocation failure.
 */
double cpu_gemm_rate(int n_threads, int M, int N, int K, int reps);

/**
 * @brief The rate of the AMX GEMM prefill runs on bf16 weights (cpu_linear_amx(), all threads on
 *        one [M, K] × [N, K]ᵀ product, useful FLOP only: the two bf16 halves count once).
 * @return GFLOP/s (best of @p reps), or a negative value on allocation failure or without AMX.
 */
double cpu_amx_gemm_rate(int n_threads, int M, int N, int K, int reps);

/** The GEMM kernel prefill uses on this machine, in words (for benchmark reports). */
const char *cpu_gemm_kernel_name(void);

/**
 * @brief Both ceilings with the shapes of a 7B prefill: 1 GiB streaming read, and the GEMM prefill
 *        uses with M = 512 tokens and K = 4096: AMX (cpu_amx_gemm_rate(), N = 2048) when active,
 *        else sgemm (cpu_gemm_rate(), N = one weight panel).
 * @param n_threads   threads to measure with (the backend's)
 * @param read_gbps   out: GB/s
 * @param gemm_gflops out: GFLOP/s
 * @param err         the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int cpu_roofline(int n_threads, double *read_gbps, double *gemm_gflops, Mamba2Error *err);

#endif
