/**
 * @file decode.cuh
 * @brief What the decode kernels of decode.cu (one to four sequences) and decode_mma.cu (five to
 *        64) share: the in_proj epilogue, i.e. the conv step of the xBC rows and dt's softplus.
 */
#ifndef MAMBA2_GPU_DECODE_CUH
#define MAMBA2_GPU_DECODE_CUH

#include "kernels.cuh"

/* This layer's conv state of sequence b, channel c: its last K−1 inputs. */
__device__ __forceinline__ float *conv_state_of(const GemvArgs &a, int b, int c) {
    return a.conv_states[b] + ((size_t)a.l * a.dims.conv_dim + c) * (a.dims.K - 1);
}

/* For in_proj output row r ≥ d_in of sequence b with value v:
 *   xBC rows: the conv step  xbc = silu(b_c + Σ_k w[c][k] win[k]),  win = [state (K−1) | v], state ← win[1..];
 *   dt rows:  dt = clamp(softplus(v + dt_bias), dt_min, dt_max).
 * pre: the row's inputs as epilogue_prefetch() copied them (state, weights, bias; or dt_bias), or
 * NULL to read them here. */
__device__ __forceinline__ void inproj_tail(const GemvArgs &a, int b, int r, float v, const float *pre) {
    const GpuDims &g = a.dims;
    int c = r - g.d_in;
    if (c < g.conv_dim) {
        int K1 = g.K - 1;
        float *st = conv_state_of(a, b, c);
        const float *sv = pre ? pre : st, *w = pre ? pre + K1 : a.layer.conv_w + (size_t)c * g.K;
        float acc = (pre ? pre[K1 + g.K] : a.layer.conv_b[c]) + w[K1] * v;
        for (int k = 0; k < K1; k++) acc += w[k] * sv[k];
        for (int k = 0; k < K1 - 1; k++) st[k] = sv[k + 1];
        if (K1 > 0) st[K1 - 1] = v;
        a.xbc[(size_t)b * g.conv_dim + c] = silu_f(acc);
    } else {
        int h = c - g.conv_dim;
        float dtv = softplus_f(v + (pre ? pre[0] : a.layer.dt_bias[h]));
        a.dt[(size_t)b * g.H + h] = fminf(fmaxf(dtv, g.dt_min), g.dt_max);
    }
}

#endif
