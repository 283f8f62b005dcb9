/**
 * @file gemm_fp32.h
 * @brief Prefill GEMM tiers with fp32 FMA microkernels (AVX-512F, AVX2+FMA) on weight panels
 *        widened to fp32 while they are packed.
 *
 * Y[t][r] (+)= Σ_k X[t][k] · W[r][k] in fp32 (X exact, W bf16/f16/f32 widened exactly), blocked and
 * threaded by gemm_driver.h. Register blocks: AVX-512 14 activation rows × 32 weight rows (28 zmm
 * accumulators); AVX2 6 × 16 (12 ymm accumulators). The weight rows are the vector lanes; each
 * activation is broadcast.
 */
#ifndef MAMBA2_CPU_GEMM_FP32_H
#define MAMBA2_CPU_GEMM_FP32_H

#include <stdint.h>

#include "gemm_driver.h"
#include "gemm_tier.h"
#include "tensor.h"

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) with the fp32 microkernel of @p tier.
 *
 * Y[t][r] (+)= Σ_k X[t][k] · W[r][k];  X [T, ldx] fp32, W [rows, K] bf16, f16 or f32 read in place,
 * Y [T, ldy]; weight rows split over @p n_threads OpenMP threads.
 * @param tier       CPU_GEMM_AVX512 or CPU_GEMM_AVX2 (the CPU must have it)
 * @param W          weight matrix [rows, K], bf16, f16 or f32, read in place
 * @param X          activations [T, ldx] fp32
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows (≥ 1)
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param n_threads  OpenMP threads (they split the weight rows)
 * @return 0, or -1 (nothing written) for another tier or when a work buffer cannot be allocated
 */
int cpu_linear_fp32(CpuGemmTier tier, const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y,
                    int64_t ldy, int accumulate, int n_threads);

/**
 * @brief Writes a packed panel of a weight source: dst [kc][nr] = W[r0 + r][k0 + k] in fp32 for
 *        r < nr, k < kc, zero past the last row or past K.
 */
typedef void (*CpuWidenPanel)(const void *src, int64_t r0, int64_t k0, int64_t kc, int nr, float *dst);

/**
 * @brief cpu_linear_fp32() on weights in a layout of the caller's (quantized, say), which @p widen
 *        writes into each packed panel: Y[t][r] (+)= Σ_k X[t][k] · W[r][k], X exact in fp32.
 * @param tier       CPU_GEMM_AVX512 or CPU_GEMM_AVX2 (the CPU must have it)
 * @param widen      writes panels of @p src (called concurrently by the threads)
 * @param src        the weight source, passed to @p widen
 * @param rows       rows of the weight source
 * @param K          its columns
 * @param X          activations [T, ldx] fp32
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows (≥ 1)
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param n_threads  OpenMP threads (they split the weight rows)
 * @return 0, or -1 (nothing written) for another tier or when a work buffer cannot be allocated
 */
int cpu_linear_fp32_widened(CpuGemmTier tier, CpuWidenPanel widen, const void *src, int64_t rows, int64_t K,
                            const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads);

/**
 * @brief cpu_linear_fp32() on bf16 weights in a layout of the caller's (packed_bf16.h), which
 *        @p rows_of writes out row by row for each panel; the tier widens and packs them as it
 *        does a stored bf16 matrix. Y[t][r] (+)= Σ_k X[t][k] · W[r][k], X exact in fp32.
 * @param tier       CPU_GEMM_AVX512 or CPU_GEMM_AVX2 (the CPU must have it)
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
 * @return 0, or -1 (nothing written) for another tier or when a work buffer cannot be allocated
 */
int cpu_linear_fp32_rows(CpuGemmTier tier, CpuBf16RowsAt rows_of, const void *src, int64_t rows, int64_t K,
                         const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads);

#endif
