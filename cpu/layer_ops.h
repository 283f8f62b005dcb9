/**
 * @file layer_ops.h
 * @brief The small per-layer operations of the CPU path (norms, conv, dt, gate, one SSD step).
 *
 * Everything that is not a weight-matrix product. Each function works on a range (of rows,
 * channels or heads) on the calling thread; the backend splits ranges over its OpenMP threads,
 * so that prefill and batched decode can share one parallel region per phase. The small weights
 * arrive as fp32 arrays (converted once when the backend is created). Formulas: notebooks-docs/design.md §2.
 */
#ifndef MAMBA2_CPU_LAYER_OPS_H
#define MAMBA2_CPU_LAYER_OPS_H

#include <stdint.h>

#include "tensor.h"

/**
 * @brief RMSNorm of one row: out = x / sqrt(mean(x²) + eps) · w.
 * @param x   [n]
 * @param w   [n]
 * @param n   channels
 * @param eps added to the mean square
 * @param out [n] (may equal x)
 */
void cpu_rmsnorm(const float *x, const float *w, int n, double eps, float *out);

/**
 * @brief Causal depthwise conv + SiLU over T tokens for channels [c0, c1), continuing from the conv state.
 *
 * out[t][c] = silu(b[c] + Σ_{k<K} wt[k][c] · in_c(t − K + 1 + k)), where in_c(i) is in[i][c] for
 * i ≥ 0 and the conv state's entry K−1+i (the earlier inputs) for i < 0. Afterwards the state
 * holds the last K−1 inputs of the channel, oldest first.
 *
 * @param in    [T, ldin] conv inputs (channel c at column c)
 * @param ldin  row stride of @p in
 * @param T     tokens
 * @param K     kernel width
 * @param wt    [K, ldw] conv weights, transposed (tap-major) so that a tap reads contiguous channels
 * @param ldw   row stride of @p wt (the total channel count C)
 * @param b     [C] bias, or NULL
 * @param state [C, K−1] conv state, updated
 * @param out   [T, ldout] outputs
 * @param ldout row stride of @p out
 * @param c0    first channel
 * @param c1    one past the last channel
 */
void cpu_conv_silu(const float *in, int64_t ldin, int T, int K, const float *wt, int64_t ldw, const float *b,
                   float *state, float *out, int64_t ldout, int c0, int c1);

/**
 * @brief dt[t][h] = clamp(softplus(raw[t][h] + bias[h]), lo, hi) for T rows of H heads.
 * @param raw   [T, ldraw] (head h at column h)
 * @param ldraw row stride of @p raw
 * @param T     rows
 * @param H     heads
 * @param bias  [H]
 * @param lo    lower clamp (time_step_limit[0])
 * @param hi    upper clamp (time_step_limit[1])
 * @param dt    [T, H] out
 */
void cpu_dt(const float *raw, int64_t ldraw, int T, int H, const float *bias, double lo, double hi, float *dt);

/**
 * @brief Gate, then RMS-normalise each group separately, for one row of n channels in G groups.
 *
 * y ← y · silu(z); then for each group of n/G channels: y ← y / sqrt(mean(y²) + eps) · w.
 * @param y   [n] updated
 * @param z   [n] the gate
 * @param n   channels
 * @param G   groups (n % G == 0)
 * @param w   [n] norm weights
 * @param eps added to each group's mean square
 */
void cpu_gated_norm(float *y, const float *z, int n, int G, const float *w, double eps);

/**
 * @brief One token of the SSD recurrence for one head, plus the skip connection.
 *
 * S ← exp(dt·A) S + dt x Bᵀ;  y = S C + D x.
 * @param S  [P, N] the head's state, updated
 * @param x  [P] the head's input
 * @param B  [N] its group's B
 * @param C  [N] its group's C
 * @param dt the head's step size (after softplus and clamp)
 * @param A  the head's decay rate (negative)
 * @param D  the head's skip weight
 * @param P  channels of the head
 * @param N  state size
 * @param y  [P] out
 */
void cpu_ssd_step_head(float *S, const float *x, const float *B, const float *C, float dt, float A, float D, int P,
                       int N, float *y);

/**
 * @brief Widen @p n elements of a tensor, starting at flat index @p i0, to fp32.
 * @param t   the tensor (any dtype)
 * @param i0  first flat index
 * @param n   elements
 * @param out [n]
 */
void cpu_tensor_to_f32(const Mamba2Tensor *t, int64_t i0, int64_t n, float *out);

#endif
