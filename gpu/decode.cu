/**
 * @file decode.cu
 * @brief Decode kernels (one token for each of nb sequences): the bf16 matrix-vector product
 *        (gemv.cuh's kernel over bf16 weights, with fused prologues and epilogues), the conv + dt
 *        step, and the SSD recurrence step.
 *
 * Decode is memory-bound: each weight byte must be read once, in 16-byte loads, with several
 * loads in flight per thread. Per layer the GEMV path runs three kernels:
 *   gemv(in_proj, prologue RMSNorm, epilogue conv step / dt)  →  ssd_step  →
 *   gemv(out_proj, prologue grouped norm, epilogue residual add).
 */
#include <stdlib.h>
#include <string.h>

#include "bulk_copy.cuh"
#include "gemv.cuh"

/* Block shape (ROWS x CPP): 8 x 2 for one or two sequences over tall matrices; 4 x 2 otherwise, so
 * that a short, wide matrix (out_proj: 4096 rows) still gives every multiprocessor about as many
 * blocks. Against 4 x 4, 2 x 4, 2 x 8, 8 x 1 and 1 x 8 on all three projections these were the best
 * or within 1 %, also for out_proj with the rotated starts (measurements: results/gpu.md). */
template <int NB, int PRO, int EPI>
static void launch_gemv_t(const GemvArgs &a, cudaStream_t s) {
    if constexpr (NB <= 2)
        if (a.rows > 8192) return launch_gemv_shape<NB, PRO, EPI, 8, 2, GEMV_BF16>(a, s);
    launch_gemv_shape<NB, PRO, EPI, 4, 2, GEMV_BF16>(a, s);
}

struct LaunchGemvBf16 {
    template <int NB, int PRO, int EPI> static void run(const GemvArgs &a, cudaStream_t s) { launch_gemv_t<NB, PRO, EPI>(a, s); }
};

void launch_gemv(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, cudaStream_t s) {
    if (gemv_stream_takes(pro, a)) return launch_gemv_stream(pro, epi, a, s);
    if (a.wf != GEMV_BF16) return launch_gemv_q8(pro, epi, a, s);
    gemv_dispatch<LaunchGemvBf16>(pro, epi, a, s);
}

/* Σ h² of each decode sequence's embedding row, for layer 0's RMSNorm, and xw = h·w (one block per sequence). */
__global__ void sum_squares_kernel(const float *h, int d, const float *w, float *ss, float *xw) {
    pdl_trigger();
    pdl_wait();
    float v = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float x = h[(size_t)blockIdx.x * d + i];
        v += x * x;
        xw[(size_t)blockIdx.x * d + i] = x * w[i];
    }
    v = block_sum(v);
    if (threadIdx.x == 0) ss[blockIdx.x] = v;
}

void launch_sum_squares(const float *h, int nb, int d, const float *w, float *ss, float *xw, cudaStream_t s) {
    launch_pdl(sum_squares_kernel, dim3(nb), dim3(256), 0, s, h, d, w, ss, xw);
}

/* An empty dependent launch, for timing a kernel boundary alone (MAMBA2_GPU_SKIP's "empty"). */
__global__ void pdl_noop_kernel() {
    pdl_trigger();
    pdl_wait();
}

void launch_pdl_noop(int blocks, int threads, cudaStream_t s) { launch_pdl(pdl_noop_kernel, dim3(blocks), dim3(threads), 0, s); }

/* ------------------------------------------------------------------ conv + dt step (batched path) */

__global__ void conv_dt_step_kernel(GemvArgs a, const float *zxbcdt) {
    pdl_trigger();
    pdl_wait();
    int r = a.dims.d_in + blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    if (r < a.dims.d_in_proj) inproj_tail(a, b, r, zxbcdt[(size_t)b * a.dims.d_in_proj + r], NULL);
}

/* The same for conv width K, each thread one channel (or dt row) of CONV_SEQS sequences: the row's
 * conv weights and bias read once for all of them, and every sequence's inputs and conv state loaded
 * before any is computed, so that a thread has all its loads in flight at once (one sequence a
 * thread left the kernel waiting on one round trip after another; results/gpu.md).
 *   xbc[b][c] = silu(bias_c + Σ_k w[c][k] win_b[k]),  win_b = [state_b (K−1) | v_b],  state_b ← win_b[1..];
 *   dt[b][h] = clamp(softplus(v_b + dt_bias_h), dt_min, dt_max). */
#define CONV_SEQS 8
template <int K> __global__ void conv_dt_step_seqs_kernel(GemvArgs a, const float *zxbcdt, int nb) {
    pdl_trigger();
    pdl_wait();
    const GpuDims &g = a.dims;
    const int r = g.d_in + blockIdx.x * blockDim.x + threadIdx.x, b0 = blockIdx.y * CONV_SEQS;
    if (r >= g.d_in_proj) return;
    const int c = r - g.d_in, n = nb - b0 < CONV_SEQS ? nb - b0 : CONV_SEQS;
    float v[CONV_SEQS]; /* in_proj's raw output of each sequence */
#pragma unroll
    for (int j = 0; j < CONV_SEQS; j++)
        if (j < n) v[j] = zxbcdt[(size_t)(b0 + j) * g.d_in_proj + r];
    if (c >= g.conv_dim) { /* a dt row */
        const int h = c - g.conv_dim;
        const float bias = a.layer.dt_bias[h];
#pragma unroll
        for (int j = 0; j < CONV_SEQS; j++)
            if (j < n) a.dt[(size_t)(b0 + j) * g.H + h] = dt_of(g, v[j], bias);
        return;
    }
    float w[K], win[CONV_SEQS][K]; /* the weights; each sequence's window [state | v] */
#pragma unroll
    for (int k = 0; k < K; k++) w[k] = a.layer.conv_w[(size_t)c * K + k];
    const float bias = a.layer.conv_b[c];
#pragma unroll
    for (int j = 0; j < CONV_SEQS; j++)
        if (j < n) {
            const float *st = conv_state_of(a, b0 + j, c);
#pragma unroll
            for (int k = 0; k < K - 1; k++) win[j][k] = st[k];
            win[j][K - 1] = v[j];
        }
#pragma unroll
    for (int j = 0; j < CONV_SEQS; j++)
        if (j < n) {
            float acc = bias, *st = conv_state_of(a, b0 + j, c);
#pragma unroll
            for (int k = 0; k < K; k++) acc += w[k] * win[j][k];
#pragma unroll
            for (int k = 0; k < K - 1; k++) st[k] = win[j][k + 1];
            a.xbc[(size_t)(b0 + j) * g.conv_dim + c] = silu_f(acc);
        }
}

bool conv_dt_step_seqs_default() {
    const char *e = getenv("MAMBA2_GPU_CONV_SEQS");
    return !(e && !strcmp(e, "0"));
}

void launch_conv_dt_step(const GpuDims &g, const GpuLayer &w, const float *zxbcdt, float *const *conv_states, int l,
                         int nb, float *xbc, float *dt, bool seqs, cudaStream_t s) {
    GemvArgs a = {};
    a.dims = g;
    a.layer = w;
    a.conv_states = conv_states;
    a.l = l;
    a.xbc = xbc;
    a.dt = dt;
    /* programmatic dependent launches, as the batched path's norms (gpu/layer_kernels.cu) */
    if (seqs && g.K == 4) {
        dim3 grid((g.conv_dim + g.H + 127) / 128, (nb + CONV_SEQS - 1) / CONV_SEQS);
        launch_pdl(conv_dt_step_seqs_kernel<4>, grid, dim3(128), 0, s, a, zxbcdt, nb);
        return;
    }
    dim3 grid((g.conv_dim + g.H + 255) / 256, nb);
    launch_pdl(conv_dt_step_kernel, grid, dim3(256), 0, s, a, zxbcdt);
}

/* ------------------------------------------------------------------ SSD step */

/* Sixteen bytes of state as floats: 4 fp32 or 8 bf16 values. */
__device__ __forceinline__ void unpack16(uint4 q, float *v, float) {
    v[0] = __uint_as_float(q.x), v[1] = __uint_as_float(q.y), v[2] = __uint_as_float(q.z), v[3] = __uint_as_float(q.w);
}
__device__ __forceinline__ void unpack16(uint4 q, float *v, bf16) {
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 4; j++) v[2 * j] = __uint_as_float(w[j] << 16), v[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
}
template <typename S> __device__ __forceinline__ void load16(const S *p, float *v) { unpack16(*(const uint4 *)p, v, S()); }
__device__ __forceinline__ void store16(float *p, const float *v) { *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]); }
__device__ __forceinline__ void store16(bf16 *p, const float *v) {
    *(uint4 *)p = make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]), pack_bf16x2(v[4], v[5]), pack_bf16x2(v[6], v[7]));
}

/* Sequences from which the shared-memory kernel is used instead of the register kernel, where the
 * streamed one is not: fp32 state from 8, bf16 state never (the register kernel was the faster at
 * every batch measured from 8 to 32 with bf16 state, the shared-memory kernel from 8 with fp32;
 * measurements: results/gpu.md). */
#ifndef STEP_SMEM_MIN_NB_FP32
#define STEP_SMEM_MIN_NB_FP32 8
#endif
#ifndef STEP_SMEM_MIN_NB_BF16
#define STEP_SMEM_MIN_NB_BF16 (1 << 30)
#endif
/* Sequences for which the streamed kernel (ssd_step_stream_kernel) is used: fp32 state from 8 to
 * 32, bf16 state from 32, where the whole model was faster with it (bf16 at 32-128 only since the
 * decode GEMM took the products to 64 sequences); alone it is the faster from 8 (fp32) and 16 (bf16)
 * sequences, a lead the model did not show at the other batches (measurements: results/gpu.md). */
#define STEP_STREAM_MIN_NB_FP32 8
#define STEP_STREAM_MAX_NB_FP32 32
#define STEP_STREAM_MIN_NB_BF16 32
/* The shared-memory kernel's block, and the blocks per multiprocessor its registers must allow:
 * shared memory holds 6 heads of fp32 state (32 KB each at P = 64) or 13 of bf16 (16 KB); at 6 ×
 * 256 and 12 × 128 threads that is at most 40 registers a thread (at 64 only 8 bf16 blocks fit). */
#define STEP_SMEM_THREADS(S) (sizeof(S) == 4 ? 256 : 128)
#define STEP_SMEM_BLOCKS(S) (sizeof(S) == 4 ? 6 : 12)

/* What the N = 128 step kernels read from the previous kernel for one (head, sequence): this
 * thread's E entries of B and C (from entry n0, 16 bytes per load), dt, and the decay exp(dt·A). */
template <int E> struct StepInputs {
    float B[E], C[E], dt, decay;
};

template <int E>
__device__ __forceinline__ void load_step_inputs(const GpuDims &g, const GpuLayer &w, const float *row, const float *dt,
                                                 int b, int h, int grp, int n0, StepInputs<E> &in) {
#pragma unroll
    for (int k = 0; k < E; k += 4) {
        float4 bq = *(const float4 *)(row + g.d_in + grp * 128 + n0 + k);
        float4 cq = *(const float4 *)(row + g.d_in + g.G * 128 + grp * 128 + n0 + k);
        in.B[k] = bq.x, in.B[k + 1] = bq.y, in.B[k + 2] = bq.z, in.B[k + 3] = bq.w;
        in.C[k] = cq.x, in.C[k + 1] = cq.y, in.C[k + 2] = cq.z, in.C[k + 3] = cq.w;
    }
    in.dt = dt[(size_t)b * g.H + h];
    in.decay = __expf(in.dt * w.A[h]);
}

/* What the head's rows need besides the state: x_p, z_p and the y scale (1 without one), staged
 * in shared memory by the whole block in one round trip, [3][P]. Loads left inside the row loops
 * would each wait for the previous row's stores (state, y: they could alias these pointers as far
 * as the compiler knows), one L2 round trip per row on the step's critical path. */
__device__ __forceinline__ void stage_row_inputs(const GpuDims &g, const float *row, const float *zxbcdt,
                                                 const float *y_scale, int b, int h, float *rows_in) {
    for (int p = threadIdx.x; p < g.P; p += blockDim.x) {
        rows_in[p] = row[h * g.P + p];
        rows_in[g.P + p] = zxbcdt[(size_t)b * g.d_in_proj + h * g.P + p];
        rows_in[2 * g.P + p] = y_scale ? y_scale[h * g.P + p] : 1.0f;
    }
    __syncthreads();
}

/* y[i] = v, in y's dtype */
__device__ __forceinline__ void store_y(const StepOut &y, size_t i, float v) {
    if (y.h) y.h[i] = __float2bfloat16(v);
    else y.f[i] = v;
}

/* One row p of the head, of which this thread holds entries n0 .. n0 + E in st (LPR lanes hold the row):
 *   S[p] ← decay·S[p] + dt·x_p·B;   the lane with n0 = 0 writes y_p = (S[p]·C + D x_p)·silu(z_p)
 * (times y_scale, the next norm's weight, when given; also into y_sm[p] when that is not NULL) and
 * returns y_p² for the group's norm sum; the others return 0. Every lane of the warp must call it
 * (the row sum is a shuffle). */
template <int E, int LPR>
__device__ __forceinline__ float step_row(const GpuDims &g, float *st, const StepInputs<E> &in, const float *rows_in,
                                          float Dh, int b, int h, int p, int n0, bool live, const StepOut &y, float *y_sm) {
    float x = live ? rows_in[p] : 0.0f, xdt = x * in.dt, acc = 0;
#pragma unroll
    for (int k = 0; k < E; k++) {
        st[k] = in.decay * st[k] + xdt * in.B[k];
        acc += st[k] * in.C[k];
    }
#pragma unroll
    for (int o = LPR / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (!live || n0 != 0) return 0.0f;
    float yv = (acc + Dh * x) * silu_f(rows_in[g.P + p]), ys = yv * rows_in[2 * g.P + p];
    store_y(y, (size_t)b * g.d_in + h * g.P + p, ys);
    if (y_sm) y_sm[p] = ys;
    return yv * yv;
}

/* The head's y as stored (y_sm [P], in shared memory, after a barrier) rounded to int8 per block of
 * 32 rows for the q8 out_proj GEMV, which would otherwise round the same inputs in every one of its
 * blocks of rows: a warp per block,
 *   ya = max_p |y_p|,   yq_p = rint(y_p · 127 / ya)   (q8_round_bits(), the GEMV's own rounding). */
__device__ __forceinline__ void round_head_y(const GpuDims &g, const float *y_sm, int b, int h, int8_t *yq, float *ya) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
    for (int q = warp; q < g.P / Q8_XBLOCK; q += nwarps) {
        const float v = y_sm[q * Q8_XBLOCK + lane], amax = warp_max(fabsf(v));
        const size_t i = (size_t)b * g.d_in + h * g.P + q * Q8_XBLOCK + lane;
        yq[i] = (int8_t)(q8_round_bits(v, q8_inv(amax)) & 0xff);
        if (lane == 0) ya[i / Q8_XBLOCK] = amax;
    }
}

/* Few sequences (the state in registers): one block per (head, sequence), N = 128. A
 * thread owns E = 16 / sizeof(S) consecutive entries of a row (4 fp32 or 8 bf16), so a row is
 * LPR = N / E lanes (32 or 16) and one warp instruction reads 32 / LPR whole rows, 16 bytes per
 * lane, coalesced. Each thread loads SLOTS rows before it computes any (SLOTS and the block, at
 * most MAX_THREADS, from step_reg_shape()); the first rows are
 * loaded before the wait for the previous kernel (this layer's state is written by this kernel
 * alone, one step before), so that they arrive while the in_proj GEMV finishes:
 *   S = exp(dt·A) S + dt·x Bᵀ;   y = (S C + D x) · silu(z);  Σ y² goes to the group's norm sum. */
template <typename S, int SLOTS, int MAX_THREADS>
__global__ void __launch_bounds__(MAX_THREADS) ssd_step_reg_kernel(GpuDims g, GpuLayer w, const float *xbc, const float *dt,
                                                       const float *zxbcdt, void *const *ssm_states, int l, StepOut y,
                                                       float *ss_y, const float *y_scale, int8_t *yq, float *ya) {
    constexpr int E = 16 / sizeof(S), LPR = 128 / E, RPW = 32 / LPR; /* rows per warp instruction */
    pdl_trigger();
    int h = blockIdx.x, b = blockIdx.y, grp = h / (g.H / g.G), warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int sub = lane / LPR, n0 = (lane % LPR) * E; /* which row of the instruction, which entries */
    const float *row = xbc + (size_t)b * g.conv_dim;
    S *state = (S *)ssm_states[b] + (((size_t)l * g.H + h) * g.P) * 128;
    const int nwarps = blockDim.x >> 5, rows_per_pass = nwarps * RPW * SLOTS;
    uint4 raw[SLOTS]; /* the pass's rows as loaded: the block's warps interleave over the rows */
    extern __shared__ float rows_in[]; /* [4][P]: x, z, y scale, y (when rounded to int8) */
    float *y_sm = yq ? rows_in + 3 * g.P : NULL;
    auto load_pass = [&](int p0) {
#pragma unroll
        for (int i = 0; i < SLOTS; i++) {
            int p = p0 + i * nwarps * RPW;
            raw[i] = p < g.P ? *(const uint4 *)(state + (size_t)p * 128 + n0) : make_uint4(0, 0, 0, 0);
        }
    };
    int p0 = warp * RPW + sub;
    load_pass(p0);
    pdl_wait(); /* the first rows are in flight; now x, B, C, dt and z */
    StepInputs<E> in;
    load_step_inputs(g, w, row, dt, b, h, grp, n0, in);
    stage_row_inputs(g, row, zxbcdt, y_scale, b, h, rows_in);
    float Dh = w.D[h], sq = 0;
    for (; p0 < g.P; p0 += rows_per_pass) {
#pragma unroll
        for (int i = 0; i < SLOTS; i++) {
            int p = p0 + i * nwarps * RPW;
            bool live = p < g.P;
            float st[E];
            unpack16(raw[i], st, S());
            sq += step_row<E, LPR>(g, st, in, rows_in, Dh, b, h, p, n0, live, y, y_sm);
            if (live) store16(state + (size_t)p * 128 + n0, st);
        }
        if (p0 + rows_per_pass < g.P) load_pass(p0 + rows_per_pass);
    }
    sq = block_sum(sq); /* Σ y² of this head, added to its group's sum for the out_proj norm */
    if (threadIdx.x == 0 && ss_y) atomicAdd(&ss_y[(size_t)b * g.G + grp], sq);
    if (yq) round_head_y(g, y_sm, b, h, yq, ya); /* y_sm is complete: block_sum() has a barrier */
}

/* The register kernel's shape: row loads in flight per thread (slots), its largest block, and the
 * instantiation that has them. With one or two sequences the grid has one or two blocks per head,
 * fewer than the GPU has room for, so there fewer slots and bigger blocks spread each head's rows
 * over more warps (bf16 state to two sequences, fp32 at one); beyond, the grid fills the GPU and 8
 * slots in blocks of up to 256 threads are the faster (measurements: results/gpu.md). */
typedef void (*StepRegKernel)(GpuDims, GpuLayer, const float *, const float *, const float *, void *const *, int, StepOut,
                              float *, const float *, int8_t *, float *);
struct StepRegShape {
    StepRegKernel kernel;
    int slots, max_threads;
};
template <typename S, int SLOTS, int MAX_THREADS> static StepRegShape reg_shape() {
    return StepRegShape{ssd_step_reg_kernel<S, SLOTS, MAX_THREADS>, SLOTS, MAX_THREADS};
}
static StepRegShape step_reg_shape(int nb, bool ssm_bf16) {
    if (ssm_bf16) return nb <= 2 ? reg_shape<bf16, 2, 1024>() : reg_shape<bf16, 8, 256>();
    return nb == 1 ? reg_shape<float, 4, 512>() : reg_shape<float, 8, 256>();
}

/* Many sequences (the state through shared memory): one block per (head, sequence), N = 128. The
 * head's state, P rows of 128 (32 KB fp32 or 16 KB bf16), is first copied into shared memory with
 * cp.async, before the wait for the previous kernel (as in the register kernel): the copy overlaps
 * the end of the in_proj GEMV, holds no registers, and as many bytes are in flight as shared
 * memory has room for (6 fp32 or 13 bf16 heads per multiprocessor).
 * A thread owns E = 16 / sizeof(S) consecutive entries of a row (4 fp32 or 8 bf16), so a row is
 * LPR = 128 / E lanes (32 or 16), a warp covers RPW = 32 / LPR rows at a time, and the pieces a
 * thread computes on are the very pieces it copied (no barrier needed):
 *   S = exp(dt·A) S + dt·x Bᵀ;   y = (S C + D x) · silu(z);  Σ y² goes to the group's norm sum. */
template <typename S>
__global__ void __launch_bounds__(STEP_SMEM_THREADS(S), STEP_SMEM_BLOCKS(S)) ssd_step_smem_kernel(GpuDims g, GpuLayer w, const float *xbc, const float *dt,
                                                       const float *zxbcdt, void *const *ssm_states, int l, StepOut y,
                                                       float *ss_y, const float *y_scale, int8_t *yq, float *ya) {
    constexpr int E = 16 / sizeof(S), LPR = 128 / E, RPW = 32 / LPR;
    extern __shared__ __align__(16) char step_smem[];
    S *tile = (S *)step_smem; /* [P][128] this head's state, as in global memory */
    float *rows_in = (float *)(tile + (size_t)g.P * 128); /* [4][P]: x, z, y scale, y (when rounded to int8) */
    float *y_sm = yq ? rows_in + 3 * g.P : NULL;
    pdl_trigger();
    int h = blockIdx.x, b = blockIdx.y, grp = h / (g.H / g.G), warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int sub = lane / LPR, n0 = (lane % LPR) * E; /* which row of the warp's RPW, which entries */
    S *state = (S *)ssm_states[b] + (((size_t)l * g.H + h) * g.P) * 128;
    const int pieces = g.P * LPR, nwarps = blockDim.x >> 5; /* 16-byte pieces of the state */
    for (int i = threadIdx.x; i < pieces; i += blockDim.x) cp_async16(tile + (size_t)i * E, state + (size_t)i * E, true);
    pdl_wait(); /* x, B, C, dt and z come from the previous kernel */
    const float *row = xbc + (size_t)b * g.conv_dim;
    StepInputs<E> in;
    load_step_inputs(g, w, row, dt, b, h, grp, n0, in);
    float Dh = w.D[h], sq = 0;
    cp_async_wait_all();
    stage_row_inputs(g, row, zxbcdt, y_scale, b, h, rows_in);
    /* piece threadIdx.x + i·blockDim.x is row warp·RPW + sub + i·nwarps·RPW, entries n0.. */
    for (int p = warp * RPW + sub; p < g.P; p += nwarps * RPW) {
        float st[E];
        load16(tile + (size_t)p * 128 + n0, st);
        sq += step_row<E, LPR>(g, st, in, rows_in, Dh, b, h, p, n0, true, y, y_sm);
        store16(state + (size_t)p * 128 + n0, st);
    }
    sq = block_sum(sq); /* Σ y² of this head, added to its group's sum for the out_proj norm */
    if (threadIdx.x == 0 && ss_y) atomicAdd(&ss_y[(size_t)b * g.G + grp], sq);
    if (yq) round_head_y(g, y_sm, b, h, yq, ya);
}

/* Any N: 4 warps over the rows, lanes over N, one value at a time. */
__device__ __forceinline__ float load_state(const float *p) { return *p; }
__device__ __forceinline__ float load_state(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store_state(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_state(bf16 *p, float v) { *p = __float2bfloat16(v); }

template <typename S>
__global__ void ssd_step_any_kernel(GpuDims g, GpuLayer w, const float *xbc, const float *dt, const float *zxbcdt,
                                    void *const *ssm_states, int l, StepOut y, float *ss_y, const float *y_scale,
                                    int8_t *yq, float *ya) {
    pdl_trigger();
    pdl_wait();
    int h = blockIdx.x, b = blockIdx.y, grp = h / (g.H / g.G);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
    extern __shared__ float sm[]; /* B [N] | C [N] | y [P] (when rounded to int8) */
    float *y_sm = yq ? sm + 2 * g.N : NULL;
    const float *row = xbc + (size_t)b * g.conv_dim;
    for (int n = threadIdx.x; n < g.N; n += blockDim.x) {
        sm[n] = row[g.d_in + grp * g.N + n];
        sm[g.N + n] = row[g.d_in + g.G * g.N + grp * g.N + n];
    }
    __syncthreads();
    float dth = dt[(size_t)b * g.H + h], decay = __expf(dth * w.A[h]), Dh = w.D[h];
    S *state = (S *)ssm_states[b] + (((size_t)l * g.H + h) * g.P) * g.N;
    float sq = 0;
    for (int p = warp; p < g.P; p += nwarps) {
        float x = row[h * g.P + p], xdt = x * dth, acc = 0;
        S *srow = state + (size_t)p * g.N;
        for (int n = lane; n < g.N; n += 32) {
            float s = decay * load_state(srow + n) + xdt * sm[n];
            store_state(srow + n, s);
            acc += s * sm[g.N + n];
        }
        acc = warp_sum(acc);
        if (lane == 0) {
            float z = zxbcdt[(size_t)b * g.d_in_proj + h * g.P + p];
            float yv = (acc + Dh * x) * silu_f(z);
            const float ys = y_scale ? yv * y_scale[h * g.P + p] : yv;
            store_y(y, (size_t)b * g.d_in + h * g.P + p, ys);
            if (y_sm) y_sm[p] = ys;
            sq += yv * yv;
        }
    }
    sq = block_sum(sq);
    if (threadIdx.x == 0 && ss_y) atomicAdd(&ss_y[(size_t)b * g.G + grp], sq);
    if (yq) round_head_y(g, y_sm, b, h, yq, ya);
}

/* Many sequences, streamed (N = 128): a persistent grid, each block a contiguous range of the
 * (sequence, head) items, whose states and inputs the bulk copy engine brings into a ring of
 * shared-memory stages (gpu/bulk_copy.cuh) as many items ahead as there are stages. A producer warp
 * asks for the copies; none of the bytes in flight hold registers, so an SM keeps 12 bf16 heads
 * (6 fp32) in flight where the one-block-per-item kernels are held to what their registers or their
 * short lives allow. Each item's inputs (B, C, x, z, the y scale, dt) travel in its stage with its
 * state, so that no thread waits on a load of its own. STEP_STREAM_WARPS consumer warps compute on
 * the stage as the shared-memory kernel does (a thread owns E = 16 / sizeof(S) entries of a row, LPR
 * = 128 / E lanes a row) and store the new state from registers:
 *   S = exp(dt·A) S + dt·x Bᵀ;   y = (S C + D x) · silu(z);  Σ y² goes to the group's norm sum.
 * Two mbarriers a stage: "full" completes when its bytes have landed, "empty" when every consumer
 * warp is done reading it, and only then does the producer refill it. A consumer warp adds its Σ y²
 * to the group's sum when the next item is of another (sequence, group) or it has none left. */
#define STEP_STREAM_WARPS 8
#define STEP_STREAM_THREADS ((STEP_STREAM_WARPS + 1) * 32)

/* One stage: the state tile [P][128] S, then B [128], C [128], x [P], z [P], y scale [P] and the
 * 16 bytes of dt that hold the item's (fp32). */
struct StreamStage {
    char *tile;
    float *B, *C, *x, *z, *ys, *dt4;
};
__host__ __device__ inline size_t stream_tile_bytes(const GpuDims &g, int state_bytes) { return (size_t)g.P * 128 * state_bytes; }
__host__ __device__ inline size_t stream_stage_bytes(const GpuDims &g, int state_bytes) {
    return (stream_tile_bytes(g, state_bytes) + (size_t)(256 + 3 * g.P + 4) * 4 + 127) & ~(size_t)127;
}
__device__ __forceinline__ StreamStage stream_stage(char *base, const GpuDims &g, int state_bytes, int i) {
    StreamStage st;
    st.tile = base + (size_t)i * stream_stage_bytes(g, state_bytes);
    st.B = (float *)(st.tile + stream_tile_bytes(g, state_bytes));
    st.C = st.B + 128, st.x = st.C + 128, st.z = st.x + g.P, st.ys = st.z + g.P, st.dt4 = st.ys + g.P;
    return st;
}
/* Shared memory before the stages: the stages' two mbarriers, then A and D of every head. */
__host__ __device__ inline size_t stream_head_bytes(const GpuDims &g, int stages) {
    return ((size_t)stages * 16 + (size_t)2 * g.H * 4 + 127) & ~(size_t)127;
}

template <typename S>
__global__ void __launch_bounds__(STEP_STREAM_THREADS, 1) ssd_step_stream_kernel(GpuDims g, GpuLayer w, const float *xbc, const float *dt,
                                                                       const float *zxbcdt, void *const *ssm_states, int l, StepOut y,
                                                                       float *ss_y, const float *y_scale, int nb, int stages) {
    constexpr int E = 16 / sizeof(S), LPR = 128 / E, RPW = 32 / LPR;
    extern __shared__ __align__(128) char smem[];
    uint64_t *full = (uint64_t *)smem, *empty = full + stages; /* [stages] each */
    float *AD = (float *)(empty + stages);                     /* [2][H]: A, then D */
    char *stages_base = smem + stream_head_bytes(g, stages);
    const int total = nb * g.H, i0 = (int)((long long)blockIdx.x * total / gridDim.x);
    const int n = (int)((long long)(blockIdx.x + 1) * total / gridDim.x) - i0;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, hpg = g.H / g.G;
    auto state_of = [&](int i) { return (S *)ssm_states[i / g.H] + (((size_t)l * g.H + i % g.H) * g.P) * 128; };
    if (threadIdx.x == 0) {
        for (int k = 0; k < stages; k++) mbar_init(&full[k], 1), mbar_init(&empty[k], STEP_STREAM_WARPS);
        mbar_init_fence();
    }
    for (int h = threadIdx.x; h < g.H; h += blockDim.x) AD[h] = w.A[h], AD[g.H + h] = w.D[h];
    __syncthreads();
    pdl_trigger();

    if (warp == STEP_STREAM_WARPS) { /* the producer: one lane asks for every copy */
        if (lane) return;
        const uint32_t tile_bytes = (uint32_t)stream_tile_bytes(g, sizeof(S));
        const uint32_t in_bytes = (uint32_t)((256 + 2 * g.P + 4) * 4 + (y_scale ? g.P * 4 : 0));
        auto issue_inputs = [&](int i, int k) {
            StreamStage st = stream_stage(stages_base, g, sizeof(S), k);
            const int b = i / g.H, h = i % g.H, grp = h / hpg;
            const float *row = xbc + (size_t)b * g.conv_dim;
            bulk_copy_g2s(st.B, row + g.d_in + grp * 128, 512, &full[k]);
            bulk_copy_g2s(st.C, row + g.d_in + g.G * 128 + grp * 128, 512, &full[k]);
            bulk_copy_g2s(st.x, row + h * g.P, g.P * 4, &full[k]);
            bulk_copy_g2s(st.z, zxbcdt + (size_t)b * g.d_in_proj + h * g.P, g.P * 4, &full[k]);
            if (y_scale) bulk_copy_g2s(st.ys, y_scale + h * g.P, g.P * 4, &full[k]);
            bulk_copy_g2s(st.dt4, dt + (((size_t)b * g.H + h) & ~(size_t)3), 16, &full[k]);
        };
        const int first = n < stages ? n : stages;
        for (int k = 0; k < first; k++) { /* the states are this kernel's alone (written one step before): before the wait */
            mbar_expect_tx(&full[k], tile_bytes + in_bytes);
            bulk_copy_g2s(stream_stage(stages_base, g, sizeof(S), k).tile, state_of(i0 + k), tile_bytes, &full[k]);
        }
        pdl_wait(); /* x, B, C, dt and z come from the previous kernel */
        for (int k = 0; k < first; k++) issue_inputs(i0 + k, k);
        for (int k = stages; k < n; k++) {
            const int slot = k % stages;
            mbar_wait(&empty[slot], (uint32_t)(k / stages - 1) & 1); /* the item `stages` before is done */
            mbar_expect_tx(&full[slot], tile_bytes + in_bytes);
            bulk_copy_g2s(stream_stage(stages_base, g, sizeof(S), slot).tile, state_of(i0 + k), tile_bytes, &full[slot]);
            issue_inputs(i0 + k, slot);
        }
        return;
    }

    pdl_wait(); /* before writing y, which kernels before the previous one may still read */
    const int sub = lane / LPR, n0 = (lane % LPR) * E;
    float sq = 0;
    for (int k = 0; k < n; k++) {
        const int i = i0 + k, b = i / g.H, h = i % g.H, slot = k % stages;
        StreamStage st = stream_stage(stages_base, g, sizeof(S), slot);
        mbar_wait(&full[slot], (uint32_t)(k / stages) & 1);
        const float dth = st.dt4[i & 3], decay = __expf(dth * AD[h]), Dh = AD[g.H + h];
        StepInputs<E> in;
#pragma unroll
        for (int e = 0; e < E; e += 4) {
            float4 bq = *(const float4 *)(st.B + n0 + e), cq = *(const float4 *)(st.C + n0 + e);
            in.B[e] = bq.x, in.B[e + 1] = bq.y, in.B[e + 2] = bq.z, in.B[e + 3] = bq.w;
            in.C[e] = cq.x, in.C[e + 1] = cq.y, in.C[e + 2] = cq.z, in.C[e + 3] = cq.w;
        }
        S *state = state_of(i), *tile = (S *)st.tile;
#pragma unroll 4
        for (int p = warp * RPW + sub; p < g.P; p += STEP_STREAM_WARPS * RPW) {
            float v[E], x = st.x[p], xdt = x * dth, acc = 0;
            load16(tile + (size_t)p * 128 + n0, v);
#pragma unroll
            for (int e = 0; e < E; e++) {
                v[e] = decay * v[e] + xdt * in.B[e];
                acc += v[e] * in.C[e];
            }
#pragma unroll
            for (int o = LPR / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            store16(state + (size_t)p * 128 + n0, v);
            if (n0 == 0) {
                float yv = (acc + Dh * x) * silu_f(st.z[p]);
                store_y(y, (size_t)b * g.d_in + h * g.P + p, y_scale ? yv * st.ys[p] : yv);
                sq += yv * yv;
            }
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(&empty[slot]); /* this warp is done with the stage */
        const bool last = k + 1 == n || (i + 1) / g.H != b || ((i + 1) % g.H) / hpg != h / hpg;
        if (last) { /* the group's rows of this warp: Σ y² to the group's sum for the out_proj norm */
            sq = warp_sum(sq);
            if (lane == 0 && ss_y) atomicAdd(&ss_y[(size_t)b * g.G + h / hpg], sq);
            sq = 0;
        }
    }
}

/* The streamed kernel's blocks per SM, stages and shared memory for these sizes, or false where it
 * does not take them: N = 128, P a multiple of 8 (x, z and the y scale in 16-byte copies; whole row
 * pairs for bf16's two rows a warp), d_in, conv_dim and d_in_proj multiples of 4 (16-byte aligned
 * rows; d_in_proj = 2·d_in + 2·G·N + H then makes H one too, so that the 16 bytes of dt read for an
 * item stay inside [nb, H]), and at least two stages in a block's shared memory. Two blocks per SM where two stages fit
 * in half of it (the faster alone at 8–256 sequences, both dtypes: measurements, results/gpu.md),
 * else one. */
static bool step_stream_shape(const GpuDims &g, int state_bytes, int *blocks_per_sm, int *stages, size_t *smem) {
    if (g.N != 128 || g.P % 8 || g.d_in % 4 || g.conv_dim % 4 || g.d_in_proj % 4) return false;
    const size_t stage = stream_stage_bytes(g, state_bytes);
    for (int bps = 2; bps >= 1; bps--) {
        const size_t budget = SMEM_MAX / bps - 1024;
        int k = (int)((budget - stream_head_bytes(g, 16)) / stage);
        k = k > 16 ? 16 : k;
        if (k < 2) continue;
        *blocks_per_sm = bps, *stages = k, *smem = stream_head_bytes(g, k) + (size_t)k * stage;
        return true;
    }
    return false;
}

bool ssd_step_streams(const GpuDims &g, int state_bf16) {
    int bps, stages;
    size_t smem;
    return step_stream_shape(g, state_bf16 ? 2 : 4, &bps, &stages, &smem);
}

template <typename S>
static void launch_step_stream(const GpuDims &g, const GpuLayer &w, const float *xbc, const float *dt, const float *zxbcdt,
                               void *const *ssm_states, int l, int nb, StepOut y, float *ss_y, const float *y_scale,
                               int blocks_per_sm, int stages, size_t smem, cudaStream_t s) {
    static int sms = 0;
    if (!sms) {
        int dev = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        cudaFuncSetAttribute(ssd_step_stream_kernel<S>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
    }
    int items = nb * g.H, grid = sms * blocks_per_sm < items ? sms * blocks_per_sm : items;
    launch_pdl(ssd_step_stream_kernel<S>, dim3(grid), dim3(STEP_STREAM_THREADS), smem, s, g, w, xbc, dt, zxbcdt, ssm_states,
               l, y, ss_y, y_scale, nb, stages);
}

bool ssd_step_rounds_y(const GpuDims &g) { return g.P % Q8_XBLOCK == 0; }

void launch_ssd_step_kind(const GpuDims &g, const GpuLayer &w, const float *xbc, const float *dt, const float *zxbcdt,
                          void *const *ssm_states, int ssm_bf16, int l, int nb, StepOut y, float *ss_y, const float *y_scale,
                          int8_t *yq, float *ya, int kind, cudaStream_t s) {
    dim3 grid(g.H, nb);
    if (!ssd_step_rounds_y(g)) yq = NULL, ya = NULL; /* the caller asked where it should not: the GEMV rounds y */
    size_t smem = (2 * g.N + g.P) * sizeof(float);
    bool fast = g.N == 128 && g.d_in % 4 == 0 && g.conv_dim % 4 == 0; /* aligned float4 reads of B, C */
    /* shared memory: the row inputs and y [4][P] (both kernels), after the state tile (shared-memory kernel) */
    size_t rows_in = (size_t)4 * g.P * sizeof(float), tile_and_rows = (size_t)g.P * 128 * (ssm_bf16 ? 2 : 4) + rows_in;
    /* P even: the shared-memory kernel's loop covers whole rows per lane group, and with 2 rows per
     * warp (bf16) an odd P would leave half a warp out of the row sums' shuffles */
    const bool smem_fits = fast && tile_and_rows <= 48 * 1024 && g.P % 2 == 0; /* P ≤ 93 (fp32), 183 (bf16) */
    /* N = 128 without the streamed kernel: from STEP_SMEM_MIN_NB_* sequences on through shared memory, else in registers */
    const int unstreamed = nb >= (ssm_bf16 ? STEP_SMEM_MIN_NB_BF16 : STEP_SMEM_MIN_NB_FP32) ? STEP_SHARED : STEP_REGISTERS;
    if (kind == STEP_AUTO) { /* N = 128: streamed where STEP_STREAM_* say, else as above */
        static const char *stream_env = getenv("MAMBA2_GPU_STEP_STREAM"); /* "0": never streamed (for comparisons) */
        /* for comparisons: MAMBA2_GPU_STEP_STREAM_BF16=N streams bf16 state from N sequences,
         * MAMBA2_GPU_STEP_STREAM_FP32_MAX=N fp32 state up to N */
        static const char *bf16_env = getenv("MAMBA2_GPU_STEP_STREAM_BF16"), *fp32_env = getenv("MAMBA2_GPU_STEP_STREAM_FP32_MAX");
        static const int min_bf16 = bf16_env && atoi(bf16_env) > 0 ? atoi(bf16_env) : STEP_STREAM_MIN_NB_BF16;
        static const int max_fp32 = fp32_env && atoi(fp32_env) > 0 ? atoi(fp32_env) : STEP_STREAM_MAX_NB_FP32;
        const bool streamed = ssm_bf16 ? nb >= min_bf16 : nb >= STEP_STREAM_MIN_NB_FP32 && nb <= max_fp32;
        kind = streamed && !(stream_env && !strcmp(stream_env, "0")) ? STEP_STREAMED : unstreamed;
    }
    if (kind == STEP_STREAMED) {
        int bps, stages;
        size_t ssmem;
        const bool aligned = (((uintptr_t)xbc | (uintptr_t)dt | (uintptr_t)zxbcdt | (uintptr_t)y_scale) & 15) == 0;
        if (!yq && aligned && step_stream_shape(g, ssm_bf16 ? 2 : 4, &bps, &stages, &ssmem)) { /* no int8 y there */
            if (ssm_bf16)
                launch_step_stream<bf16>(g, w, xbc, dt, zxbcdt, ssm_states, l, nb, y, ss_y, y_scale, bps, stages, ssmem, s);
            else
                launch_step_stream<float>(g, w, xbc, dt, zxbcdt, ssm_states, l, nb, y, ss_y, y_scale, bps, stages, ssmem, s);
            return;
        }
        kind = unstreamed;
    }
    if (kind == STEP_SHARED && smem_fits) {
        /* bf16: 128 threads, so that the 12 blocks shared memory allows per SM also fit in its 2048 threads */
        if (ssm_bf16)
            launch_pdl(ssd_step_smem_kernel<bf16>, grid, dim3(STEP_SMEM_THREADS(bf16)), tile_and_rows, s, g, w, xbc, dt, zxbcdt,
                       ssm_states, l, y, ss_y, y_scale, yq, ya);
        else
            launch_pdl(ssd_step_smem_kernel<float>, grid, dim3(STEP_SMEM_THREADS(float)), tile_and_rows, s, g, w, xbc, dt, zxbcdt,
                       ssm_states, l, y, ss_y, y_scale, yq, ya);
        return;
    }
    /* registers: one thread per `slots` row pieces (16 bytes each), at most max_threads; at P = 64
     * 512 threads in the few-sequence shapes, else 128 (bf16) or 256 (fp32) */
    const StepRegShape shape = step_reg_shape(nb, ssm_bf16);
    int items = g.P * (ssm_bf16 ? 16 : 32), threads = (items / shape.slots + 31) / 32 * 32;
    threads = threads < 32 ? 32 : threads > shape.max_threads ? shape.max_threads : threads;
    /* bf16 puts two rows in a warp (lanes 0-15, 16-31); past one pass an odd P would give the two
     * halves different pass counts and leave one out of the row sums' shuffles */
    if (ssm_bf16 && g.P % 2 && g.P * 16 > threads * shape.slots) fast = false;
    if (!fast) {
        if (ssm_bf16) launch_pdl(ssd_step_any_kernel<bf16>, grid, dim3(128), smem, s, g, w, xbc, dt, zxbcdt, ssm_states, l, y, ss_y, y_scale, yq, ya);
        else launch_pdl(ssd_step_any_kernel<float>, grid, dim3(128), smem, s, g, w, xbc, dt, zxbcdt, ssm_states, l, y, ss_y, y_scale, yq, ya);
        return;
    }
    launch_pdl(shape.kernel, grid, dim3(threads), rows_in, s, g, w, xbc, dt, zxbcdt, ssm_states, l, y, ss_y, y_scale, yq, ya);
}

void launch_ssd_step(const GpuDims &g, const GpuLayer &w, const float *xbc, const float *dt, const float *zxbcdt,
                     void *const *ssm_states, int ssm_bf16, int l, int nb, StepOut y, float *ss_y, const float *y_scale,
                     int8_t *yq, float *ya, cudaStream_t s) {
    launch_ssd_step_kind(g, w, xbc, dt, zxbcdt, ssm_states, ssm_bf16, l, nb, y, ss_y, y_scale, yq, ya, STEP_AUTO, s);
}
