/**
 * @file layer_ops.c
 * @brief Norms, causal conv, dt, gated norm and the one-token SSD update of the CPU path.
 *
 * The inner loops are plain C with `#pragma omp simd`; target_clones compiles an AVX2 copy
 * beside the generic one and the loader picks the one the running CPU can execute.
 */
#include "layer_ops.h"

#include <math.h>
#include <stddef.h>

#include "vexp.h"

/** Attributes of the functions compiled twice: for x86-64-v3 (AVX2) and for any x86-64. */
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))

CLONES void cpu_rmsnorm(const float *x, const float *w, int n, double eps, float *out) {
    /* out = x / sqrt(mean(x²) + eps) · w */
    float ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = (float)(1.0 / sqrt((double)ss / n + eps));
#pragma omp simd
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* One token through a conv of width 4 (decode), channels c = 0 .. C − 1 of the pointers given:
 *   o[c] = b[c] + w0[c]·s[c][0] + w1[c]·s[c][1] + w2[c]·s[c][2] + w3[c]·x[c],   s[c] ← (s[c][1], s[c][2], x[c])
 * with wk = wt + k·ldw and s [C, 3] the channel's last three inputs, oldest first. The same sums in
 * the same order as cpu_conv_silu()'s general loops, which read the state with a stride of 3 in a
 * loop of their own per tap and shift it channel by channel afterwards: one pass here, which the
 * compiler vectorizes (the three state entries of a channel are loaded and stored together). */
static inline __attribute__((always_inline)) void conv4_step(const float *restrict x, const float *restrict wt, int64_t ldw,
                                                             const float *restrict b, float *restrict s, float *restrict o,
                                                             int C) {
    const float *w0 = wt, *w1 = wt + ldw, *w2 = wt + 2 * ldw, *w3 = wt + 3 * ldw;
#pragma omp simd
    for (int c = 0; c < C; c++) {
        float s0 = s[3 * c], s1 = s[3 * c + 1], s2 = s[3 * c + 2], xc = x[c];
        float v = b ? b[c] : 0.0f;
        v += w0[c] * s0;
        v += w1[c] * s1;
        v += w2[c] * s2;
        v += w3[c] * xc;
        o[c] = v;
        s[3 * c] = s1, s[3 * c + 1] = s2, s[3 * c + 2] = xc;
    }
}

CLONES void cpu_conv_silu(const float *in, int64_t ldin, int T, int K, const float *wt, int64_t ldw, const float *b,
                          float *state, float *out, int64_t ldout, int c0, int c1) {
    int C = c1 - c0, S = K - 1; /* S = conv state entries per channel */
    if (T == 1 && K == 4) { /* decode with Mamba-2's width: the loops below in one pass, vectorized */
        conv4_step(in + c0, wt + c0, ldw, b ? b + c0 : NULL, state + (int64_t)c0 * 3, out + c0, C);
        cpu_silu_inplace(out + c0, C);
        return;
    }
    for (int t = 0; t < T; t++) {
        float *o = out + (int64_t)t * ldout + c0; /* [C] */
        /* o[c] = b[c] + Σ_k wt[k][c] · in_c(t − K + 1 + k), token by token, channels contiguous */
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = b ? b[c0 + c] : 0.0f;
        for (int k = 0; k < K; k++) {
            int src = t - K + 1 + k;
            const float *wk = wt + (int64_t)k * ldw + c0;
            if (src >= 0) { /* an input of this call */
                const float *row = in + (int64_t)src * ldin + c0;
#pragma omp simd
                for (int c = 0; c < C; c++) o[c] += wk[c] * row[c];
            } else { /* an earlier input, kept in the state: entry S + src of channel c */
                const float *st = state + (int64_t)c0 * S + S + src;
                for (int c = 0; c < C; c++) o[c] += wk[c] * st[(int64_t)c * S];
            }
        }
        cpu_silu_inplace(o, C); /* silu(v) = v / (1 + e^−v) */
    }
    /* state[c][j] = in_c(T − S + j): the last S inputs, oldest first (in increasing j, a read from
     * the old state is at j + T ≥ j, so it is never overwritten before it is read) */
    for (int c = 0; c < C; c++) {
        float *st = state + (int64_t)(c0 + c) * S;
        for (int j = 0; j < S; j++) {
            int src = T - S + j;
            st[j] = src >= 0 ? in[(int64_t)src * ldin + c0 + c] : st[j + T];
        }
    }
}

void cpu_dt(const float *raw, int64_t ldraw, int T, int H, const float *bias, double lo, double hi, float *dt) {
    /* dt = clamp(softplus(raw + bias), lo, hi), softplus(v) = log(1 + e^v), and v itself above 20 */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            double v = (double)raw[(int64_t)t * ldraw + h] + bias[h];
            v = v > 20.0 ? v : log1p(exp(v));
            dt[(int64_t)t * H + h] = (float)fmin(fmax(v, lo), hi);
        }
}

CLONES void cpu_gated_norm(float *y, const float *z, int n, int G, const float *w, double eps) {
    int group = n / G;
    cpu_mul_silu(y, z, n); /* y ← y · silu(z) */
    /* each group: y ← y / sqrt(mean(y²) + eps) · w */
    for (int g = 0; g < G; g++) {
        float *yg = y + (int64_t)g * group;
        const float *wg = w + (int64_t)g * group;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < group; i++) ss += yg[i] * yg[i];
        float scale = (float)(1.0 / sqrt((double)ss / group + eps));
#pragma omp simd
        for (int i = 0; i < group; i++) yg[i] = yg[i] * scale * wg[i];
    }
}

/** Floats ahead of the row being updated at which the decode step asks for the state (2 KiB). */
#define STATE_AHEAD 512

CLONES void cpu_ssd_step_head(float *S, const float *x, const float *B, const float *C, float dt, float A, float D,
                              int P, int N, float *y) {
    float decay = expf(dt * A); /* exp(a_t), a_t = dt·A ≤ 0 */
    for (int p = 0; p < P; p++) {
        float *Sp = S + (int64_t)p * N; /* [N] */
        /* the state 2 KiB ahead asked for, to be written (past this head: the next head's, which
         * the thread usually takes next); decode's step waited on the state's loads (results/cpu.md) */
        for (int n = 0; n < N; n += 16) __builtin_prefetch(Sp + STATE_AHEAD + n, 1, 3);
        float xdt = dt * x[p];
        float acc = 0;
        /* S[p][n] = exp(a) S[p][n] + dt x[p] B[n];  y[p] = Σ_n S[p][n] C[n] */
#pragma omp simd reduction(+ : acc)
        for (int n = 0; n < N; n++) {
            float s = decay * Sp[n] + xdt * B[n];
            Sp[n] = s;
            acc += s * C[n];
        }
        y[p] = acc + D * x[p];
    }
}

void cpu_tensor_to_f32(const Mamba2Tensor *t, int64_t i0, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = mamba2_tensor_get(t, i0 + i);
}
