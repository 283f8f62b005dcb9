/**
 * @file layer_kernels.cu
 * @brief Prefill element-wise kernels: embedding, RMSNorm, causal conv + SiLU, dt, grouped gated norm.
 */
#include "kernels.cuh"

#define MAX_K 8 /* longest conv kernel the GPU path handles (Mamba-2 uses 4) */

/* h[t][i] = emb[tokens[t]][i] */
__global__ void embed_kernel(const int32_t *tokens, const bf16 *emb, int d, float *h) {
    int t = blockIdx.x;
    const bf16 *row = emb + (size_t)tokens[t] * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) h[(size_t)t * d + i] = __bfloat162float(row[i]);
}

void launch_embed(const int32_t *tokens, int T, const bf16 *emb, int d, float *h, cudaStream_t s) {
    embed_kernel<<<T, 256, 0, s>>>(tokens, emb, d, h);
}

/* out[t] = h[t] / sqrt(mean(h[t]²) + eps) · w   (one block per token) */
__global__ void rmsnorm_bf16_kernel(const float *h, const float *w, int d, float eps, bf16 *out) {
    pdl_trigger();
    pdl_wait();
    const float *x = h + (size_t)blockIdx.x * d;
    float ss = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += x[i] * x[i];
    float scale = rsqrtf(block_sum(ss) / d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[(size_t)blockIdx.x * d + i] = __float2bfloat16(x[i] * scale * w[i]);
}

/* The same, four values per load and store (d a multiple of 4): a row of h is read twice, the
 * second time from cache. */
__global__ void rmsnorm4_bf16_kernel(const float *h, const float *w, int d, float eps, bf16 *out) {
    pdl_trigger();
    pdl_wait();
    const float4 *x = (const float4 *)(h + (size_t)blockIdx.x * d);
    int d4 = d / 4;
    float ss = 0;
    for (int i = threadIdx.x; i < d4; i += blockDim.x) {
        float4 v = x[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    float scale = rsqrtf(block_sum(ss) / d + eps);
    uint2 *o = (uint2 *)(out + (size_t)blockIdx.x * d);
    for (int i = threadIdx.x; i < d4; i += blockDim.x) {
        float4 v = x[i], wv = ((const float4 *)w)[i];
        o[i] = make_uint2(pack_bf16x2(v.x * scale * wv.x, v.y * scale * wv.y), pack_bf16x2(v.z * scale * wv.z, v.w * scale * wv.w));
    }
}

/* As a programmatic dependent launch (here and for the gated norm): its launch overlaps the end of
 * the kernel before it, which in the batched decode's many small launches is worth up to 4 % a step
 * (measurements: results/gpu.md). */
void launch_rmsnorm_bf16(const float *h, const float *w, int T, int d, float eps, bf16 *out, cudaStream_t s) {
    if (d % 4 == 0) launch_pdl(rmsnorm4_bf16_kernel, dim3(T), dim3(256), 0, s, h, w, d, eps, out);
    else launch_pdl(rmsnorm_bf16_kernel, dim3(T), dim3(256), 0, s, h, w, d, eps, out);
}

/* out[i] = bf16(in[i]), two values a thread. */
__global__ void round_bf16_kernel(const float *in, size_t n, bf16 *out) {
    pdl_trigger();
    pdl_wait();
    size_t i = 2 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i + 1 < n) *(__nv_bfloat162 *)(out + i) = __floats2bfloat162_rn(in[i], in[i + 1]);
    else if (i < n) out[i] = __float2bfloat16(in[i]);
}

void launch_round_bf16(const float *in, size_t n, bf16 *out, cudaStream_t s) {
    if (n) launch_pdl(round_bf16_kernel, dim3((unsigned)((n + 511) / 512)), dim3(256), 0, s, in, n, out);
}

/* One thread per (channel, run of TOKENS_PER_THREAD tokens), a sliding window in registers:
 * xbc[t][c] = silu(b_c + Σ_k w[c][k] · in_c(t − K + 1 + k)). */
#define TOKENS_PER_THREAD 32
__global__ void conv_prefill_kernel(GpuDims g, const bf16 *zxbcdt, const float *conv_state, GpuLayer w, int T,
                                    bf16 *xbc) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int t0 = blockIdx.y * TOKENS_PER_THREAD;
    if (c >= g.conv_dim) return;
    int K = g.K;
    const int ld = g.d_in + g.conv_dim;   /* zxbcdt holds [z | xBC] per token */
    const bf16 *in = zxbcdt + g.d_in + c; /* column c of xBC */
    float win[MAX_K], wk[MAX_K];
    for (int k = 0; k < K; k++) wk[k] = w.conv_w[(size_t)c * K + k];
    /* window = inputs t0−K+1 .. t0−1 (from the conv state before the sequence continues) */
    for (int k = 0; k < K - 1; k++) {
        int j = t0 - (K - 1) + k;
        win[k] = j >= 0 ? __bfloat162float(in[(size_t)j * ld]) : conv_state[(size_t)c * (K - 1) + (K - 1) + j];
    }
    float bias = w.conv_b[c];
    int t1 = min(T, t0 + TOKENS_PER_THREAD);
    for (int t = t0; t < t1; t++) {
        win[K - 1] = __bfloat162float(in[(size_t)t * ld]);
        float acc = bias;
        for (int k = 0; k < K; k++) acc += wk[k] * win[k];
        xbc[(size_t)t * g.conv_dim + c] = __float2bfloat16(silu_f(acc));
        for (int k = 0; k < K - 1; k++) win[k] = win[k + 1];
    }
}

/* The same, CH = 4 channels per thread with 8-byte loads and stores (conv_dim and d_in multiples of
 * 4; K a compile-time constant so that the window stays in registers). Four channels, not eight:
 * at eight the kernel took 130 registers, three blocks per multiprocessor, and ran far below the
 * memory bandwidth; four take 70 registers with the launch bound below (no spills), so 7 blocks fit
 * (measurements: results/gpu.md). */
#define CONV_CH 4
template <int K>
__global__ void __launch_bounds__(128, 6) conv_prefill4_kernel(GpuDims g, const bf16 *zxbcdt, const float *conv_state, GpuLayer w, int T,
                                     int run, bf16 *xbc) {
    pdl_trigger(); /* the conv state's update may start: it waits for this kernel to finish */
    int c = (blockIdx.x * blockDim.x + threadIdx.x) * CONV_CH;
    int t0 = blockIdx.y * run;
    if (c >= g.conv_dim) return;
    const int ld = g.d_in + g.conv_dim;
    const bf16 *in = zxbcdt + g.d_in + c;
    float win[K][CONV_CH], wk[CONV_CH][K], bias[CONV_CH];
#pragma unroll
    for (int j = 0; j < CONV_CH; j++) {
        bias[j] = w.conv_b[c + j];
#pragma unroll
        for (int k = 0; k < K; k++) wk[j][k] = w.conv_w[(size_t)(c + j) * K + k];
    }
#pragma unroll
    for (int k = 0; k < K - 1; k++) { /* inputs t0−K+1 .. t0−1, from the conv state before the start */
        int jt = t0 - (K - 1) + k;
        if (jt >= 0) {
            uint2 q = *(const uint2 *)(in + (size_t)jt * ld);
            float2 f0 = __bfloat1622float2(*(const __nv_bfloat162 *)&q.x), f1 = __bfloat1622float2(*(const __nv_bfloat162 *)&q.y);
            win[k][0] = f0.x, win[k][1] = f0.y, win[k][2] = f1.x, win[k][3] = f1.y;
        } else {
#pragma unroll
            for (int j = 0; j < CONV_CH; j++) win[k][j] = conv_state[(size_t)(c + j) * (K - 1) + (K - 1) + jt];
        }
    }
    int t1 = min(T, t0 + run);
    for (int tb = t0; tb < t1; tb += 8) {
        uint2 next[8]; /* the inputs of the next eight tokens, all loaded before any is used */
#pragma unroll
        for (int u = 0; u < 8; u++)
            if (tb + u < t1) next[u] = *(const uint2 *)(in + (size_t)(tb + u) * ld);
#pragma unroll
        for (int u = 0; u < 8; u++) {
            int t = tb + u;
            if (t >= t1) break;
            float2 f0 = __bfloat1622float2(*(const __nv_bfloat162 *)&next[u].x);
            float2 f1 = __bfloat1622float2(*(const __nv_bfloat162 *)&next[u].y);
            win[K - 1][0] = f0.x, win[K - 1][1] = f0.y, win[K - 1][2] = f1.x, win[K - 1][3] = f1.y;
            float a[CONV_CH];
#pragma unroll
            for (int j = 0; j < CONV_CH; j++) {
                a[j] = bias[j];
#pragma unroll
                for (int k = 0; k < K; k++) a[j] += wk[j][k] * win[k][j];
            }
            *(uint2 *)(xbc + (size_t)t * g.conv_dim + c) =
                make_uint2(pack_bf16x2(silu_f(a[0]), silu_f(a[1])), pack_bf16x2(silu_f(a[2]), silu_f(a[3])));
#pragma unroll
            for (int k = 0; k < K - 1; k++)
#pragma unroll
                for (int j = 0; j < CONV_CH; j++) win[k][j] = win[k + 1][j];
        }
    }
}

/* Tokens a thread of the four-channel conv takes (conv_prefill_set_run()); 32 unless asked. */
static int conv_run = TOKENS_PER_THREAD;

void conv_prefill_set_run(int tokens) { conv_run = tokens == 8 || tokens == 16 ? tokens : TOKENS_PER_THREAD; }

void launch_conv_prefill(const GpuDims &g, const bf16 *zxbcdt, const float *conv_state, const GpuLayer &w, int T,
                         bf16 *xbc, cudaStream_t s) {
    if (g.K == 4 && g.conv_dim % CONV_CH == 0 && g.d_in % CONV_CH == 0) {
        dim3 grid((g.conv_dim / CONV_CH + 127) / 128, (T + conv_run - 1) / conv_run);
        conv_prefill4_kernel<4><<<grid, 128, 0, s>>>(g, zxbcdt, conv_state, w, T, conv_run, xbc);
        return;
    }
    dim3 grid((g.conv_dim + 127) / 128, (T + TOKENS_PER_THREAD - 1) / TOKENS_PER_THREAD);
    conv_prefill_kernel<<<grid, 128, 0, s>>>(g, zxbcdt, conv_state, w, T, xbc);
}

/* new_state[c][k] = window[T + k], window = [old state (K−1) | inputs (T)]; ascending k is safe in place. */
__global__ void conv_state_update_kernel(GpuDims g, const bf16 *zxbcdt, float *conv_state, int T) {
    pdl_trigger();
    pdl_wait(); /* the conv before this reads the state this kernel overwrites */
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= g.conv_dim) return;
    int K1 = g.K - 1;
    float *st = conv_state + (size_t)c * K1;
    for (int k = 0; k < K1; k++) {
        int j = T + k; /* index in the window */
        st[k] = j >= K1 ? __bfloat162float(zxbcdt[(size_t)(j - K1) * (g.d_in + g.conv_dim) + g.d_in + c]) : st[j];
    }
}

void launch_conv_state_update(const GpuDims &g, const bf16 *zxbcdt, float *conv_state, int T, cudaStream_t s) {
    launch_pdl(conv_state_update_kernel, dim3((g.conv_dim + 127) / 128), dim3(128), 0, s, g, zxbcdt, conv_state, T);
}

/* dt[h][t] = clamp(softplus(raw[h][t] + bias[h]), dt_min, dt_max) */
__global__ void dt_prefill_kernel(GpuDims g, const float *dt_raw, const float *dt_bias, int T, float *dt) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * g.H) return;
    dt[i] = dt_of(g, dt_raw[i], dt_bias[i / T]);
}

void launch_dt_prefill(const GpuDims &g, const float *dt_raw, const float *dt_bias, int T, float *dt, cudaStream_t s) {
    dt_prefill_kernel<<<(T * g.H + 255) / 256, 256, 0, s>>>(g, dt_raw, dt_bias, T, dt);
}

/* One block per (token, group): g = y·silu(z); out = g / sqrt(mean(g²) + eps) · w over the group. */
__global__ void gated_norm_kernel(GpuDims g, const float *y, const bf16 *z_bf16, const float *z_f32, int gate,
                                  const float *w, bf16 *out) {
    pdl_trigger();
    pdl_wait();
    int t = blockIdx.x, grp = blockIdx.y, gs = g.d_in / g.G;
    size_t row = (size_t)t * g.d_in, off = (size_t)grp * gs;
    size_t zrow = (size_t)t * (g.d_in + g.conv_dim); /* z: the first d_in columns of [z | xBC] */
    extern __shared__ float gated[];       /* [gs] */
    float ss = 0;
    for (int i = threadIdx.x; i < gs; i += blockDim.x) {
        float v = y[row + off + i];
        if (gate) v *= silu_f(z_bf16 ? __bfloat162float(z_bf16[zrow + off + i]) : z_f32[zrow + off + i]);
        gated[i] = v;
        ss += v * v;
    }
    float scale = rsqrtf(block_sum(ss) / gs + g.eps);
    for (int i = threadIdx.x; i < gs; i += blockDim.x) out[row + off + i] = __float2bfloat16(gated[i] * scale * w[off + i]);
}

/* The same with bf16 z, four channels per load and store (group size, d_in and conv_dim multiples of 4). */
__global__ void gated_norm4_kernel(GpuDims g, const float *y, const bf16 *z, const float *w, bf16 *out) {
    pdl_trigger();
    pdl_wait();
    int t = blockIdx.x, grp = blockIdx.y, gs4 = g.d_in / g.G / 4;
    size_t row = (size_t)t * g.d_in + (size_t)grp * gs4 * 4;
    const float4 *y4 = (const float4 *)(y + row);
    const uint2 *z4 = (const uint2 *)(z + (size_t)t * (g.d_in + g.conv_dim) + (size_t)grp * gs4 * 4);
    extern __shared__ float4 gated4[]; /* [gs / 4] */
    float ss = 0;
    for (int i = threadIdx.x; i < gs4; i += blockDim.x) {
        float4 v = y4[i];
        uint2 zq = z4[i];
        float2 za = __bfloat1622float2(*(__nv_bfloat162 *)&zq.x), zb = __bfloat1622float2(*(__nv_bfloat162 *)&zq.y);
        v.x *= silu_f(za.x), v.y *= silu_f(za.y), v.z *= silu_f(zb.x), v.w *= silu_f(zb.y);
        gated4[i] = v;
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    float scale = rsqrtf(block_sum(ss) / (gs4 * 4) + g.eps);
    const float4 *w4 = (const float4 *)(w + (size_t)grp * gs4 * 4);
    uint2 *o = (uint2 *)(out + row);
    for (int i = threadIdx.x; i < gs4; i += blockDim.x) {
        float4 v = gated4[i], wv = w4[i];
        o[i] = make_uint2(pack_bf16x2(v.x * scale * wv.x, v.y * scale * wv.y), pack_bf16x2(v.z * scale * wv.z, v.w * scale * wv.w));
    }
}

/* The same as one warp per (token, group), V float4 of the group a lane held in registers (group size
 * 128·V): no shared memory and no block barrier; every load of a lane in flight before any
 * arithmetic. Four warps a block. The group's sum is added in another order than block_sum()'s. */
template <int V>
__global__ void __launch_bounds__(128) gated_norm_warp_kernel(GpuDims g, const float *y, const bf16 *z, const float *w, int T,
                                                              bf16 *out) {
    pdl_trigger();
    pdl_wait();
    const int item = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (item >= T * g.G) return; /* whole warps */
    const int t = item / g.G, grp = item % g.G;
    const size_t row = (size_t)t * g.d_in + (size_t)grp * V * 128;
    const float4 *y4 = (const float4 *)(y + row);
    const uint2 *z4 = (const uint2 *)(z + (size_t)t * (g.d_in + g.conv_dim) + (size_t)grp * V * 128);
    float4 v[V]; /* the lane's values: float4 lane + 32 k of the group */
    uint2 zq[V];
#pragma unroll
    for (int k = 0; k < V; k++) v[k] = y4[lane + 32 * k], zq[k] = z4[lane + 32 * k];
    float ss = 0;
#pragma unroll
    for (int k = 0; k < V; k++) {
        float2 za = __bfloat1622float2(*(__nv_bfloat162 *)&zq[k].x), zb = __bfloat1622float2(*(__nv_bfloat162 *)&zq[k].y);
        v[k].x *= silu_f(za.x), v[k].y *= silu_f(za.y), v[k].z *= silu_f(zb.x), v[k].w *= silu_f(zb.y);
        ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
    }
    const float scale = rsqrtf(warp_sum(ss) / (V * 128) + g.eps);
    const float4 *w4 = (const float4 *)(w + (size_t)grp * V * 128);
    uint2 *o = (uint2 *)(out + row);
#pragma unroll
    for (int k = 0; k < V; k++) {
        const float4 wv = w4[lane + 32 * k];
        o[lane + 32 * k] = make_uint2(pack_bf16x2(v[k].x * scale * wv.x, v[k].y * scale * wv.y),
                                      pack_bf16x2(v[k].z * scale * wv.z, v[k].w * scale * wv.w));
    }
}

/* Whether the gated norm takes one warp a group (gated_norm_set_warps()); off unless asked. */
static bool norm_warps = false;

void gated_norm_set_warps(int on) { norm_warps = on != 0; }

void launch_gated_norm_bf16(const GpuDims &g, const float *y, const bf16 *z_bf16, const float *z_f32, int gate,
                            const float *w, int T, bf16 *out, cudaStream_t s) {
    dim3 grid(T, g.G);
    int gs = g.d_in / g.G;
    if (norm_warps && gate && z_bf16 && gs == 1024 && g.conv_dim % 4 == 0) { /* the 7B's groups */
        launch_pdl(gated_norm_warp_kernel<8>, dim3((T * g.G + 3) / 4), dim3(128), 0, s, g, y, z_bf16, w, T, out);
        return;
    }
    if (gate && z_bf16 && gs % 4 == 0 && g.conv_dim % 4 == 0) {
        launch_pdl(gated_norm4_kernel, grid, dim3(256), gs * sizeof(float), s, g, y, z_bf16, w, out);
        return;
    }
    launch_pdl(gated_norm_kernel, grid, dim3(256), gs * sizeof(float), s, g, y, z_bf16, z_f32, gate, w, out);
}
