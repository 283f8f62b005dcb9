/**
 * @file ssd_chunked_blas.h
 * @brief The chunked SSD (prefill) with every chunk-level contraction done by cblas_sgemm.
 *
 * Same algorithm as ssd_chunked() in ref/ssd.c (see ssd.h for the four steps), in fp32, reading
 * x, B and C in place from the conv output (strided rows) and writing y strided into the
 * gated-norm input, so nothing is copied. The skip connection D·x is added here too.
 */
#ifndef MAMBA2_CPU_SSD_CHUNKED_BLAS_H
#define MAMBA2_CPU_SSD_CHUNKED_BLAS_H

#include <stddef.h>
#include <stdint.h>

#include "ssd.h"

/** Work space of cpu_ssd_chunked(), grown by cpu_ssd_reserve(). */
typedef struct {
    float *cb;         /**< [G, chunks, Q, Q] C·Bᵀ of every group and chunk */
    size_t cb_len;     /**< floats allocated in @ref cb */
    float *per_thread; /**< per thread: M [Q, Q] | Cs [Q, N] | Xw [Q, P] | dt [Q] */
    size_t per_thread_len; /**< floats allocated in @ref per_thread */
    double *cum;       /**< per thread: [Q] cumulative a within the chunk */
    size_t cum_len;    /**< doubles allocated in @ref cum */
} CpuSsdScratch;

/**
 * @brief Make @p s large enough for a call with these sizes.
 * @param s         the work space
 * @param d         sizes of the call (d.T tokens)
 * @param Q         chunk size
 * @param n_threads threads that will run it
 * @return 0, or -1 when memory runs out (@p s is then still valid, with its old capacity).
 */
int cpu_ssd_reserve(CpuSsdScratch *s, SSDDims d, int Q, int n_threads);

/** Free the work space (safe on a zeroed struct). */
void cpu_ssd_free(CpuSsdScratch *s);

/**
 * @brief y = SSD(x, dt, A, B, C; state) + D·x over T tokens in chunks of @p Q, state updated.
 *
 * Shapes (row strides in brackets):
 * @param d     sizes: T tokens, H heads of P channels, G groups of N
 * @param Q     chunk size
 * @param x     [T, H·P] (ldx): head h at column h·P
 * @param ldx   row stride of @p x
 * @param dt    [T, H] (dense): step sizes after softplus and clamp
 * @param A     [H] negative decay rates
 * @param D     [H] skip weights, or NULL for none
 * @param B     [T, G·N] (ldbc): group g at column g·N
 * @param C     [T, G·N] (ldbc)
 * @param ldbc  row stride of @p B and @p C
 * @param state [H, P, N] in: initial state, out: final state
 * @param y     [T, H·P] (ldy) out
 * @param ldy   row stride of @p y
 * @param s     work space, reserved with cpu_ssd_reserve() for these sizes
 * @param n_threads OpenMP threads (heads are split over them)
 */
void cpu_ssd_chunked(SSDDims d, int Q, const float *x, int64_t ldx, const float *dt, const float *A, const float *D,
                     const float *B, const float *C, int64_t ldbc, float *state, float *y, int64_t ldy,
                     CpuSsdScratch *s, int n_threads);

#endif
