/**
 * @file gemm_amx.h
 * @brief Prefill's weight × activation products on Intel AMX: bf16 tiles, fp32 accumulation.
 *
 * Y[t][r] (+)= Σ_k X[t][k] · W[r][k] with W the bf16 weights as stored and X the fp32 activations
 * split into two bf16 parts, X = X_hi + X_lo (X_hi = bf16(X), X_lo = bf16(X − X_hi)), so
 *
 *     Y = X_hi · Wᵀ + X_lo · Wᵀ
 *
 * is exact up to about 2⁻¹⁷ of |X| per product (one bf16 alone, 2⁻⁹, would break the CPU path's
 * 1e-3 logits tolerance). Two AMX passes still run several times faster than fp32 sgemm on the
 * same cores. The product is cut into blocks of 32 activation rows × 32 weight rows: four 16 × 16
 * fp32 accumulator tiles, fed by two activation tiles [16 rows, 32 k] and two weight tiles in
 * AMX's pair-interleaved ("VNNI") layout [16 k-pairs, 16 rows × 2], which a thread repacks from
 * W once per 32 weight rows.
 *
 * The weights can also come from elsewhere than a bf16 tensor: cpu_linear_amx_rows() asks a
 * CpuBf16Rows source for bf16 rows 256 columns at a time (the quantized matrices of qmatrix.h
 * dequantize into it, so q8/q4 prefill runs on the same tiles).
 */
#ifndef MAMBA2_CPU_GEMM_AMX_H
#define MAMBA2_CPU_GEMM_AMX_H

#include <stdint.h>

#include "backend.h"
#include "tensor.h"

/**
 * @brief 1 when AMX-BF16 can be used: the CPU has it (CPUID) and the kernel granted this process
 *        the tile state (arch_prctl ARCH_REQ_XCOMP_PERM); decided once.
 */
int cpu_amx_available(void);

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) on AMX, for a bf16 @p W.
 *
 * Y[t][r] (+)= Σ_k (X_hi[t][k] + X_lo[t][k]) · W[r][k], accumulated in fp32 (X_hi alone when
 * @p precision is MAMBA2_PRECISION_FAST);
 * X [T, ldx] fp32, W [rows, K] bf16 read in place, Y [T, ldy]. Weight rows are split over
 * @p n_threads OpenMP threads in blocks of 32.
 *
 * @return 0, or -1 (nothing written) when @p W is not bf16, K is odd, AMX is not available or a
 *         work buffer cannot be allocated: the caller then uses the sgemm path.
 */
int cpu_linear_amx(const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate,
                   int n_threads, Mamba2Precision precision);

/**
 * @brief A source of bf16 weight rows for cpu_linear_amx_rows(): writes rows [r0, r0 + 32) ×
 *        columns [k0, k0 + kc) of its matrix into @p dst [32][kc] bf16, zeros past its last row or
 *        column. @p k0 is a multiple of 256 and kc ≤ 256 a multiple of 32.
 */
typedef void (*CpuBf16Rows)(const void *src, int64_t r0, int64_t k0, int64_t kc, uint16_t *dst);

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) on AMX, W [rows, K] given by a row source instead of a bf16 tensor.
 *
 * The same product as cpu_linear_amx() (X split into X_hi + X_lo, or X_hi alone at fast
 * precision), with each block of 32 weight rows taken from @p rows_of once per call.
 *
 * @param rows_of    the weights' source (see CpuBf16Rows)
 * @param src        its matrix, passed back to @p rows_of
 * @param rows, K    the shape of W
 * @param X          activations [T, ldx] fp32
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param n_threads  OpenMP threads
 * @param precision  MAMBA2_PRECISION_DEFAULT: X_hi + X_lo; MAMBA2_PRECISION_FAST: X_hi only
 * @return 0, or -1 (nothing written) when AMX is not available or a work buffer cannot be allocated.
 */
int cpu_linear_amx_rows(CpuBf16Rows rows_of, const void *src, int64_t rows, int64_t K, const float *X, int64_t ldx,
                        int T, float *Y, int64_t ldy, int accumulate, int n_threads, Mamba2Precision precision);

#endif
