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

#endif
