/**
 * @file gemm_bf16.h
 * @brief Weight matrix × many activation rows for prefill: bf16 panels widened to fp32, then cblas_sgemm.
 *
 * Debian's OpenBLAS has no bf16 GEMM, so each thread widens one panel of weight rows at a time
 * into its own fp32 buffer (a few MiB, stays in the last-level cache) and multiplies it with
 * single-threaded cblas_sgemm. Threads work on different panels: OpenBLAS's own threads stay off,
 * so only the OpenMP threads ever run (on 2 cores two thread pools would fight).
 */
#ifndef MAMBA2_CPU_GEMM_BF16_H
#define MAMBA2_CPU_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "gemm_tier.h"
#include "tensor.h"

/** Weight rows widened per panel: [CPU_GEMM_PANEL_ROWS, K] fp32 per thread. */
#define CPU_GEMM_PANEL_ROWS 128

/** Up to this many activation rows, cpu_linear() uses the decode kernel (no conversion) instead of sgemm. */
#define CPU_GEMV_MAX_ROWS 16

/**
 * Up to this many activation rows, cpu_linear() uses the decode kernel instead of AMX (bf16
 * weights on a CPU with AMX): in batched decode the GEMV was faster at 8 rows and AMX at 16
 * (measurements: results/cpu.md).
 */
#define CPU_GEMV_MAX_ROWS_AMX 8

/**
 * @brief The GEMM tier cpu_linear() runs for @p W at @p precision when T is above the GEMV's range:
 *        cpu_gemm_tier_active(), lowered to an fp32 tier for weights that are not bf16; on the
 *        AVX512_BF16 tier, the fp32 FMA tier at default precision, and at fast precision too where
 *        cpu_bf16_dot_gain() says this core's vdpbf16ps does not pay (unless MAMBA2_CPU_GEMM asks).
 */
CpuGemmTier cpu_linear_tier(const Mamba2Tensor *W, Mamba2Precision precision);

/** 1 when cpu_linear() multiplies @p T activation rows with @p W by GEMVs, 0 when by a GEMM (AMX or sgemm). */
int cpu_linear_uses_gemv(const Mamba2Tensor *W, int T);

/** Tell OpenBLAS to run every call on the calling thread (the OpenMP threads do the splitting). */
void cpu_blas_single_threaded(void);

/**
 * @brief Widen rows [r0, r0+n) of @p W (bf16, f16 or f32) to fp32.
 * @param W   weight matrix [rows, K]
 * @param r0  first row
 * @param n   number of rows
 * @param out [n, K] row-major
 */
void cpu_convert_rows(const Mamba2Tensor *W, int64_t r0, int64_t n, float *out);

/** Floats of panel scratch cpu_linear() needs for @p n_threads threads and input width @p K. */
size_t cpu_linear_scratch_floats(int n_threads, int64_t K);

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) for T activation rows.
 *
 * Y[t][r] (+)= Σ_k X[t][k] · W[r][k],  X [T, ldx], W [rows, K] as stored, Y [T, ldy].
 * Few rows (cpu_linear_uses_gemv()) go through cpu_gemv(); more through AMX (bf16 weights on a
 * CPU with AMX, cpu_linear_amx()) or else through fp32 panels and cblas_sgemm.
 *
 * @param W          weight matrix [rows, K], read in place in its stored dtype
 * @param X          activations [T, ldx]
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param scratch    cpu_linear_scratch_floats(n_threads, K) floats (unused for the GEMV path)
 * @param n_threads  OpenMP threads
 * @param precision  MAMBA2_PRECISION_FAST lets the GEMMs round X to bf16 once (the GEMV path always
 *                   reads X in fp32)
 */
void cpu_linear(const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate,
                float *scratch, int n_threads, Mamba2Precision precision);

#endif
