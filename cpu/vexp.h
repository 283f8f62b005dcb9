/**
 * @file vexp.h
 * @brief exp and SiLU over arrays, eight lanes at a time (AVX2) with a scalar fallback.
 *
 * The prefill spends millions of exp() calls per layer (the SSD's decay mask, SiLU in the conv
 * and in the gate); glibc's expf is scalar. The AVX2 version is the classic Cephes polynomial
 * (range reduction by ln 2, degree-5 polynomial, exponent bits set directly): about 2 ulp on
 * [−87.3, 88], inputs clamped to that range (exp(−87.3) ≈ 1.2e−38, so smaller inputs give ~0).
 */
#ifndef MAMBA2_CPU_VEXP_H
#define MAMBA2_CPU_VEXP_H

#include <stdint.h>

/** x[i] ← exp(x[i]) for i < n. */
void cpu_exp_inplace(float *x, int64_t n);

/** x[i] ← silu(x[i]) = x[i] / (1 + exp(−x[i])) for i < n. */
void cpu_silu_inplace(float *x, int64_t n);

/** y[i] ← y[i] · silu(z[i]) for i < n (the gate of the gated norm). */
void cpu_mul_silu(float *y, const float *z, int64_t n);

#endif
