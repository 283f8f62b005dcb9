/**
 * @file gemm_avx512bf16.h
 * @brief Prefill GEMM tier on AVX512_BF16: vdpbf16ps on bf16 weight pairs, with the activations
 *        split into two bf16 parts (default precision) or rounded to bf16 once (fast precision).
 *
 * vdpbf16ps multiplies 16 pairs of bf16 by 16 pairs and adds each pair's two products to one fp32
 * lane. Packing puts W in that pair-interleaved layout, NR = 32 weight rows per micro-panel:
 * B[kp][r] = (W[r][2kp], W[r][2kp + 1]), and broadcasts one activation pair to all lanes:
 *
 *     C[t][r] += X[t][2kp] · W[r][2kp] + X[t][2kp + 1] · W[r][2kp + 1]
 *
 * Default precision: X = X_hi + X_lo, X_hi = bf16(X), X_lo = bf16(X − X_hi), both parts multiplied
 * (exact to about 2⁻¹⁷ of |X|, as the AMX tier). Fast precision: X_hi only (2⁻⁹ of |X|).
 */
#ifndef MAMBA2_CPU_GEMM_AVX512BF16_H
#define MAMBA2_CPU_GEMM_AVX512BF16_H

#include <stdint.h>

#include "backend.h"
#include "gemm_driver.h"
#include "tensor.h"

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) with vdpbf16ps, for a bf16 @p W.
 *
 * Y[t][r] (+)= Σ_k X'[t][k] · W[r][k], fp32 accumulation; X' = X_hi + X_lo (default) or X_hi
 * (@p precision MAMBA2_PRECISION_FAST); X [T, ldx] fp32, W [rows, K] bf16 read in place, Y [T, ldy].
 * The CPU must have AVX512_BF16 (cpu_gemm_tier_detect()).
 * @param W          weight matrix [rows, K], bf16, read in place
 * @param X          activations [T, ldx] fp32
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows (≥ 1)
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param n_threads  OpenMP threads (they split the weight rows)
 * @param precision  MAMBA2_PRECISION_DEFAULT: X_hi + X_lo; MAMBA2_PRECISION_FAST: X_hi only
 * @return 0, or -1 (nothing written) when @p W is not bf16 or a work buffer cannot be allocated
 */
int cpu_linear_avx512bf16(const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy,
                          int accumulate, int n_threads, Mamba2Precision precision);

/**
 * @brief cpu_linear_avx512bf16() on weights in a layout of the caller's (packed_bf16.h), which
 *        @p rows_of writes out row by row for each packed panel; the same products and precision.
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
 * @param precision  MAMBA2_PRECISION_DEFAULT: X_hi + X_lo; MAMBA2_PRECISION_FAST: X_hi only
 * @return 0, or -1 (nothing written) when a work buffer cannot be allocated
 */
int cpu_linear_avx512bf16_rows(CpuBf16RowsAt rows_of, const void *src, int64_t rows, int64_t K, const float *X,
                               int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads,
                               Mamba2Precision precision);

#endif
