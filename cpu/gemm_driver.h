/**
 * @file gemm_driver.h
 * @brief The blocked, packed, multi-threaded loop shared by the SIMD prefill GEMMs (gemm_fp32.c,
 *        gemm_avx512bf16.c): a tier supplies a microkernel and two packing routines.
 *
 * Y[t][r] (+)= Σ_k X[t][k] · W[r][k],  X [T, ldx] fp32, W [rows, K] as stored, Y [T, ldy].
 *
 * Blocking (cache sizes read at run time, gemm_tier.h):
 *  - X is packed once per call into blocks of mr activation rows, k-major ("A", [Kp][mr] elements
 *    of the tier's type, a tail block of m < mr rows packed with stride m). A microkernel's slice of
 *    A, mr × kc, is sized to half the L1 data cache.
 *  - Threads take chunks of weight rows (dynamic schedule, so 8–64 threads balance). For each kc
 *    columns of k, a thread packs its chunk × kc of W ("B", micro-panels of nr rows, k-major, widened
 *    or pair-interleaved as the tier needs) into its own buffer of at most half the L2 cache, and
 *    multiplies every block of activation rows with every micro-panel: each weight is packed once
 *    per call, and read from L2 ⌈T / mr⌉ times.
 *  - The microkernel keeps an m × nr block of Y in registers over kc and adds it to Y.
 */
#ifndef MAMBA2_CPU_GEMM_DRIVER_H
#define MAMBA2_CPU_GEMM_DRIVER_H

#include <stdint.h>

#include "tensor.h"

/**
 * @brief A source of bf16 weight rows at any columns: writes rows [r0, r0 + n) × columns [k0, k0 + kc)
 *        of its matrix into @p dst [n][kc] bf16, zeros past its last row or column.
 */
typedef void (*CpuBf16RowsAt)(const void *src, int64_t r0, int64_t n, int64_t k0, int64_t kc, uint16_t *dst);

/** One tier's kernels and packed layouts, for cpu_gemm_run(). */
typedef struct {
    int mr;    /**< most activation rows per microkernel call */
    int nr;    /**< weight rows per micro-panel */
    int kgran; /**< k granularity of the packed layouts (1: one k per element; 2: bf16 pairs) */
    int a_bpk; /**< bytes of packed A per k per activation row */
    int b_bpk; /**< bytes of packed B per k per weight row */
    /**
     * Pack activation rows [t0, t0 + m) of X [T, ldx], k in [0, Kp) (zero past K), into @p dst:
     * Kp · m · a_bpk bytes, k-major (the slice from k0 starts at byte k0 · m · a_bpk).
     */
    void (*pack_a)(const float *X, int64_t ldx, int64_t K, int64_t Kp, int64_t t0, int m, void *dst);
    /**
     * Pack weight rows [r0, r0 + nr) (zero past the last row) × k in [k0, k0 + kc) (zero past K) of
     * the weight source @p W (a Mamba2Tensor, for the kernels of the stored weights): kc · nr · b_bpk bytes.
     */
    void (*pack_b)(const void *W, int64_t r0, int64_t k0, int64_t kc, void *dst);
    /**
     * C[i][j] (+)= Σ_{k < kc} A[k][i] · B[k][j] for i < m (1 ≤ m ≤ mr), j < ncols (≤ nr);
     * C [m, ldc] fp32; add = 0 overwrites C.
     */
    void (*micro)(int m, const void *A, const void *B, int64_t kc, float *C, int64_t ldc, int ncols, int add);
} CpuGemmKernel;

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) with the kernels of @p kn, on @p n_threads OpenMP threads.
 *
 * Y[t][r] (+)= Σ_k X[t][k] · W[r][k];  X [T, ldx], W [rows, K] read in place, Y [T, ldy].
 * Work buffers belong to the calling threads and are kept between calls.
 * @param kn         the tier's kernels and layouts
 * @param W          weight matrix [rows, K], in any dtype @p kn packs, read in place
 * @param X          activations [T, ldx] fp32
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows (≥ 1)
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param n_threads  OpenMP threads (they split the weight rows)
 * @return 0, or -1 (nothing written) when a work buffer cannot be allocated
 */
int cpu_gemm_run(const CpuGemmKernel *kn, const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y,
                 int64_t ldy, int accumulate, int n_threads);

/**
 * @brief cpu_gemm_run() on any weight source that @p kn's pack_b reads (a quantized matrix, say).
 * @param kn         the tier's kernels and layouts
 * @param W          the weight source, passed to kn->pack_b as it is
 * @param rows       its rows
 * @param K          its columns
 * @param X          activations [T, ldx] fp32
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows (≥ 1)
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param n_threads  OpenMP threads (they split the weight rows)
 * @return 0, or -1 (nothing written) when a work buffer cannot be allocated
 */
int cpu_gemm_run_source(const CpuGemmKernel *kn, const void *W, int64_t rows, int64_t K, const float *X, int64_t ldx,
                        int T, float *Y, int64_t ldy, int accumulate, int n_threads);

/**
 * @brief cpu_gemm_run() with the bf16 kernels of a tier (@p kn, whose pack_b reads a bf16 tensor) on
 *        weights in a layout of the caller's: for each panel, @p rows_of writes its kn->nr rows
 *        row-major into the thread's buffer, and kn->pack_b packs them as it packs a stored matrix.
 * @param kn         the tier's kernels for a bf16 Mamba2Tensor
 * @param rows_of    the weights' source (called concurrently by the threads)
 * @param src        its matrix, passed back to @p rows_of
 * @param rows, K    the shape of W
 * @param X          activations [T, ldx] fp32
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows (≥ 1)
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param n_threads  OpenMP threads (they split the weight rows)
 * @return 0, or -1 (nothing written) when a work buffer cannot be allocated
 */
int cpu_gemm_run_rows(const CpuGemmKernel *kn, CpuBf16RowsAt rows_of, const void *src, int64_t rows, int64_t K,
                      const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads);

#endif
