/**
 * @file roofline.h
 * @brief This machine's two ceilings, measured: streaming read bandwidth and the rate of the GEMM prefill uses.
 */
#ifndef MAMBA2_CPU_ROOFLINE_H
#define MAMBA2_CPU_ROOFLINE_H

#include <stddef.h>

#include "backend.h"
#include "error.h"

/**
 * @brief Multi-threaded streaming read bandwidth.
 *
 * @p n_threads OpenMP threads each sum their contiguous share of a @p bytes buffer of floats with
 * SIMD loads (the decode kernel's access pattern without the arithmetic), alternately with plain
 * loads and (AVX2) with each 128 bytes' loads asking for the lines CPU_DECODE_AHEAD bytes ahead as well (software prefetch
 * into L1, as the quantized decode products do: on some CPUs the prefetched stream is the faster,
 * and a ceiling must be the best the memory gives); best of @p reps passes of each.
 * @return GB/s (10⁹ bytes per second), or a negative value when the buffer cannot be allocated.
 */
double cpu_read_bandwidth(int n_threads, size_t bytes, int reps);

/**
 * @brief Multi-threaded read bandwidth of memory that is already there (the weights decode reads):
 *        the whole 2 MiB blocks of @p n regions summed as cpu_read_bandwidth() sums its buffer, the
 *        blocks handed out to @p n_threads threads on demand, plain and prefetched passes in turn,
 *        best of @p reps of each. Where a new buffer lands can make it read faster or slower than
 *        the pages the weights lie in (on a virtual machine especially): cpu_roofline() callers take
 *        the better of the two as the read ceiling.
 * @param regions   start of each region (any alignment that float loads allow: 4 bytes)
 * @param bytes     size of each region (its last partial block is not read)
 * @param n         regions
 * @param n_threads OpenMP threads
 * @param reps      passes of each kind
 * @return GB/s (10⁹ bytes per second) over the bytes read; 0 when no region holds a whole block.
 */
double cpu_read_bandwidth_of(const void *const *regions, const size_t *bytes, int n, int n_threads, int reps);

/**
 * @brief The rate of the GEMM prefill runs: every thread calls single-threaded cblas_sgemm on its
 *        own [M, K] × [N, K]ᵀ product (the shape of one converted weight panel), all at once.
 * @return GFLOP/s over all threads (best of @p reps rounds), or a negative value on allocation failure.
 */
double cpu_gemm_rate(int n_threads, int M, int N, int K, int reps);

/**
 * @brief The rate of cpu_linear() on bf16 weights at @p precision, with the GEMM tier it picks
 *        (all threads on one [M, K] × [N, K]ᵀ product, packing included; useful FLOP only: two
 *        bf16 halves of the activations count once).
 * @param n_threads OpenMP threads
 * @param M         activation rows
 * @param N         weight rows
 * @param K         inner dimension
 * @param reps      timed rounds (after one warm-up)
 * @param precision the GEMM precision (it can change the tier)
 * @return GFLOP/s (best of @p reps), or a negative value on allocation failure.
 */
double cpu_linear_gemm_rate(int n_threads, int M, int N, int K, int reps, Mamba2Precision precision);

/** The GEMM kernel prefill uses on bf16 weights at @p precision on this machine: tier name and words. */
const char *cpu_gemm_kernel_name(Mamba2Precision precision);

/**
 * @brief Both ceilings with the shapes of a 7B prefill: 1 GiB streaming read, and the GEMM prefill
 *        uses with M = 512 tokens and K = 4096: the tier cpu_linear() picks for bf16 weights
 *        (cpu_linear_gemm_rate(), N = 2048), or for the sgemm tier cpu_gemm_rate() (N = one panel),
 *        or with quantized weights cpu_qlinear() on the path it takes for 512 rows (cpu_qlinear_gemm_rate()).
 * @param n_threads   threads to measure with (the backend's)
 * @param precision   the backend's GEMM precision (it can change the tier and its rate)
 * @param weights     the backend's weight format
 * @param read_gbps   out: GB/s
 * @param gemm_gflops out: GFLOP/s
 * @param err         the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int cpu_roofline(int n_threads, Mamba2Precision precision, Mamba2WeightFormat weights, double *read_gbps,
                 double *gemm_gflops, Mamba2Error *err);

/**
 * @brief GFLOP/s of cpu_qlinear() on a random [N, K] matrix quantized to @p weights, M activation
 *        rows, best of @p reps, at @p precision (the GEMM ceiling of prefill with quantized weights).
 * @return GFLOP/s (2·M·N·K per product), or -1 when out of memory.
 */
double cpu_qlinear_gemm_rate(int n_threads, int M, int N, int K, int reps, Mamba2WeightFormat weights,
                             Mamba2Precision precision);

#endif
