/**
 * @file gemv.cuh
 * @brief The decode matrix-vector product (one token of 1 to 4 sequences) with its fused prologues
 *        and epilogues, as one kernel template over the weight format: bf16 (instantiated in
 *        decode.cu) and q8 (gemv_q8.cu), so that both share the norms, the rotated starts and the
 *        in_proj / residual epilogues.
 *
 * Decode is memory-bound: each weight byte must be read once, in 16-byte loads, with several
 * loads in flight per thread. A 16-byte chunk is 8 bf16 weights, or 16 q8 weights (a quarter of a
 * scale block of 64) with the block's fp16 scale, loaded beside it (q8_matrix.cu gives the layout).
 * For q8 the product is one of (GemvWeights, kernels.cuh):
 *
 *   GEMV_Q8_FLOAT: each int8 widened to fp32 in registers (byte ^ 0x80 under the exponent of 2²³,
 *                  minus 2²³ + 128: a byte permute and a subtraction, exact), times the fp32 input;
 *                  the scale d of the chunk's block multiplies the chunk's sum once. The product of d·q with x
 *                  is exact up to fp32 rounding, as for bf16;
 *   GEMV_Q8_DP4A:  the input rounded to int8 per block of 32 (x ≈ e·p, e = max|x| / 127, the two
 *                  lanes holding a block's halves agree on max|x| through a shuffle), and each
 *                  chunk's Σ q·p made by 4 dp4a per 16 weights, exact in int32, then times d·e (d
 *                  the weights' scale of the chunk's block of 64, e the input's of its block of
 *                  32): what the CPU's q8 products compute (cpu/qmatrix.h). A quarter of the
 *                  instructions per weight of the float product, for the rounding of x.
 */
#ifndef MAMBA2_GPU_GEMV_CUH
#define MAMBA2_GPU_GEMV_CUH

#include <type_traits>

#include "kernels.cuh"
#include "mma_bf16.cuh" /* cp.async */

/** Threads of a GEMV block (8 warps, which split the columns). */
#define GEMV_THREADS 256
/** One sequence: block k starts its rows at chunk 32·k (mod the row), one warp's 512 bytes further
 * than block k − 1 (see gemv_kernel). */
#define GEMV_ROT_STEP 32
/** @def GEMV_MIN_BLOCKS
 * Blocks per multiprocessor the registers must allow. One sequence with 8 loads in flight per
 * thread fits 64 registers without spills: 4 blocks per SM (out_proj's 1,024 blocks of 4 rows in
 * 2 waves, not the 2.6 that its 79 registers gave). 2 to 4 sequences with 8 loads fit 128 (2 blocks;
 * unbounded, the grouped norm's out_proj took 137: one block). q8 (WF ≠ GEMV_BF16) holds a scale beside
 * each load and more per-chunk values (16 inputs): 16 loads a thread are bounded to 128 registers (2
 * blocks; unbounded the 16-row blocks took 141-255, one block per SM), 8 loads of one sequence to 80
 * (3 blocks; at 64 both products spilled, and out_proj alone fell from 64 to 54 % of copy). */
#ifndef Q8_MIN_BLOCKS_NB1
/** q8, one sequence, at most 8 loads a thread: blocks per SM (3; a macro for A/B builds). */
#define Q8_MIN_BLOCKS_NB1 3
#endif
#define GEMV_MIN_BLOCKS(NB, ROWS, CPP, WF) \
    ((WF) == GEMV_BF16 ? ((ROWS) * (CPP) > 8 ? 1 : (NB) == 1 ? 4 : 2) : ((ROWS) * (CPP) > 8 ? 2 : (NB) == 1 ? Q8_MIN_BLOCKS_NB1 : 2))

/* ------------------------------------------------------------------ in_proj epilogue */

/** This layer's conv state of sequence b, channel c: its last K−1 inputs. */
__device__ __forceinline__ float *conv_state_of(const GemvArgs &a, int b, int c) {
    return a.conv_states[b] + ((size_t)a.l * a.dims.conv_dim + c) * (a.dims.K - 1);
}

/** For in_proj output row r ≥ d_in of sequence b with value v:
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
        a.dt[(size_t)b * g.H + h] = dt_of(g, v, pre ? pre[0] : a.layer.dt_bias[h]);
    }
}

/** @def EPI_SLOT
 * What a finishing lane reads besides the dot product, copied into shared memory (cp.async, no
 * registers held) while the product runs rather than loaded after it, when the block's other
 * warps have gone and the loads would leave the multiprocessor's slot idle:
 *   slot [0 .. EPI_SLOT): EPI_INPROJ: conv state [K−1], conv weights [K], bias; or dt_bias;
 *                         EPI_RESIDUAL: h, the next norm's weight;   last: ss_in[b] (RMSNorm).
 * Before the wait for the previous kernel (after_wait false): the weights, and in_proj's conv
 * state, which only this kernel wrote (one step before, like the SSD step's state); after it: h
 * and the sums of squares. Warp 0's lane (j, b) fetches for row r0 + j of sequence b. */
#define EPI_KMAX 4                /**< conv widths prefetched; wider ones are read in the epilogue */
#define EPI_SLOT (2 * EPI_KMAX + 1)
/** Whether epilogue_prefetch() copies in_proj's conv and dt inputs (else inproj_tail reads them). */
__device__ __forceinline__ bool inproj_inputs_prefetched(const GpuDims &g) { return g.K <= EPI_KMAX; }
/** Copy the epilogue inputs of lane @p lane (row r0 + lane / NB, sequence lane % NB; lanes from
 *  ROWS·NB on copy nothing) into its slot of @p slots (cp.async): the constant ones before the wait
 *  for the previous kernel (@p after_wait false), the ones that kernel writes after it (see EPI_SLOT). */
template <int NB, int PRO, int EPI, int ROWS>
__device__ __forceinline__ void epilogue_prefetch(const GemvArgs &a, int r0, float (*slots)[EPI_SLOT], bool after_wait, int lane) {
    int j = lane / NB, b = lane % NB, r = r0 + j;
    if (lane >= ROWS * NB || r >= a.rows) return;
    float *slot = slots[lane];
    if (after_wait) {
        if (PRO == PRO_RMSNORM) cp_async4(slot + EPI_SLOT - 1, a.ss_in + b, true);
        if (EPI == EPI_RESIDUAL) cp_async4(slot, a.out + (size_t)b * a.rows + r, true);
        return;
    }
    if (EPI == EPI_RESIDUAL && a.xw_out) cp_async4(slot + 1, a.next_w + r, true);
    if (EPI != EPI_INPROJ) return;
    const GpuDims &g = a.dims;
    int c = r - g.d_in, K1 = g.K - 1;
    if (c < 0 || !inproj_inputs_prefetched(g)) return;
    if (c < g.conv_dim) {
        const float *st = conv_state_of(a, b, c), *w = a.layer.conv_w + (size_t)c * g.K;
        for (int k = 0; k < K1; k++) cp_async4(slot + k, st + k, true);
        for (int k = 0; k < g.K; k++) cp_async4(slot + K1 + k, w + k, true);
        cp_async4(slot + K1 + g.K, a.layer.conv_b + c, true);
    } else
        cp_async4(slot, a.layer.dt_bias + c - g.conv_dim, true);
}

/* ------------------------------------------------------------------ GEMV */

/** 8 bf16 packed in 16 bytes → dot with 8 floats. */
__device__ __forceinline__ float dot8(uint4 w, const float *x) {
    return __uint_as_float(w.x << 16) * x[0] + __uint_as_float(w.x & 0xffff0000u) * x[1] +
           __uint_as_float(w.y << 16) * x[2] + __uint_as_float(w.y & 0xffff0000u) * x[3] +
           __uint_as_float(w.z << 16) * x[4] + __uint_as_float(w.z & 0xffff0000u) * x[5] +
           __uint_as_float(w.w << 16) * x[6] + __uint_as_float(w.w & 0xffff0000u) * x[7];
}

/** The prologue norms, x'[b][c] = s·x[b][c] with x already multiplied by the norm weight (the
 * kernel that wrote x did that) and the scale s from the sums of squares that kernel accumulated
 * (a.ss_in):  RMSNorm s = rsqrt(Σx²/cols + eps), one per sequence: applied once to each finished
 * row (the dot product is linear in x) rather than to every input;  grouped norm
 * s = rsqrt(Σ_group x²/gs + eps): one per (sequence, group), applied to each 8-column chunk's dot
 * product, which lies inside one group. */
__device__ __forceinline__ float rmsnorm_scale(const GemvArgs &a, float ss) { return rsqrtf(ss * (1.0f / a.cols) + a.eps); }
/** The grouped norm's scale of sequence @p b, group @p grp (see rmsnorm_scale()). */
__device__ __forceinline__ float group_scale(const GemvArgs &a, int b, int grp, float inv_gs) {
    return rsqrtf(a.ss_in[b * a.groups + grp] * inv_gs + a.eps);
}


/** Finish row @p r of sequence @p b from its dot product @p v: the RMSNorm's scale (PRO_RMSNORM),
 *  then the epilogue, reading the inputs epilogue_prefetch() copied into @p pre. Returns h² of the
 *  updated residual row (EPI_RESIDUAL, for the next RMSNorm's sum), else 0. */
template <int PRO, int EPI>
__device__ __forceinline__ float finish_row(const GemvArgs &a, int b, int r, float v, const float *pre) {
    if (PRO == PRO_RMSNORM) v *= rmsnorm_scale(a, pre[EPI_SLOT - 1]);
    if (EPI == EPI_STORE) a.out[(size_t)b * a.rows + r] = v;
    else if (EPI == EPI_RESIDUAL) {
        float hn = pre[0] + v; /* h ← h + W_out y */
        a.out[(size_t)b * a.rows + r] = hn;
        if (a.xw_out) a.xw_out[(size_t)b * a.rows + r] = hn * pre[1]; /* the next norm's input, pre-weighted */
        return hn * hn;
    } else if (r < a.dims.d_in) a.out[(size_t)b * a.rows + r] = v; /* z */
    else inproj_tail(a, b, r, v, inproj_inputs_prefetched(a.dims) ? pre : NULL);
    return 0.0f;
}

/** x[b][c .. c+8) as stored, with plain loads: the previous kernel wrote x (see pdl_wait() on
 * why not __ldg). */
__device__ __forceinline__ void input8(const GemvArgs &a, int b, int c, float *v) {
    const float4 *x4 = (const float4 *)(a.x + (size_t)b * a.cols + c);
    float4 p = x4[0], q = x4[1];
    v[0] = p.x, v[1] = p.y, v[2] = p.z, v[3] = p.w, v[4] = q.x, v[5] = q.y, v[6] = q.z, v[7] = q.w;
}

/** W[r][c] of the any-width path: the bf16 weight, or d · q. */
template <int WF>
__device__ __forceinline__ float weight1(const GemvArgs &a, int r, int c) {
    if (WF == GEMV_BF16) return __bfloat162float(a.W[(size_t)r * a.cols + c]);
    const GpuQ8 &m = a.Wq;
    return __half2float(__ushort_as_half(m.d[(size_t)r * (m.Kq / Q8_SCALE_BLOCK) + c / Q8_SCALE_BLOCK])) * (float)m.q[(size_t)r * m.Kq + c];
}

/** One input of the any-width path: x, or x·s of the grouped norm (RMSNorm's s comes at the end). */
template <int PRO>
__device__ __forceinline__ float input1(const GemvArgs &a, int b, int c) {
    float v = a.x[(size_t)b * a.cols + c];
    if (PRO == PRO_GATEDNORM) {
        int gs = a.cols / a.groups;
        v *= group_scale(a, b, c / gs, 1.0f / gs);
    }
    return v;
}

/** 16 int8 weights packed in 16 bytes → dot with 16 floats, each weight widened exactly:
 * (q ^ 0x80) = q + 128 ∈ [1, 255] placed under the exponent of 2²³ by a byte permute is the float
 * 2²³ + q + 128, and subtracting 2²³ + 128 leaves q. */
__device__ __forceinline__ float dot16_q8(uint4 w, const float *x) {
    const uint32_t u[4] = {w.x ^ 0x80808080u, w.y ^ 0x80808080u, w.z ^ 0x80808080u, w.w ^ 0x80808080u};
    float s = 0;
#pragma unroll
    for (int k = 0; k < 16; k++) {
        float q = __uint_as_float(__byte_perm(u[k / 4], 0x4B000000u, 0x7540 | (k % 4))) - 8388736.0f;
        s = fmaf(q, x[k], s);
    }
    return s;
}

/** 127 / amax, the factor that rounds a block of 32 inputs with max|x| = @p amax to int8 (0 for an
 *  all-zero block). */
__device__ __forceinline__ float q8_inv(float amax) { return amax > 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f; }
/** A float whose low byte is p = rint(x · inv) mod 256: x · inv + 1.5·2²³, the product and the sum
 *  rounded separately, as the reference computes rint(x · inv). Every place that rounds a GEMV input
 *  to int8 calls this one, so that they all give the same bytes. */
__device__ __forceinline__ uint32_t q8_round_bits(float x, float inv) {
    return __float_as_uint(__fadd_rn(__fmul_rn(x, inv), 12582912.0f));
}

/** The 16 inputs x[0..16) of a chunk rounded to int8 against the block's max|x| @p amax (both
 * halves of the block: the caller's shuffle): p = rint(x · 127 / amax) (q8_round_bits()), packed 4
 * to a word, lowest column in the lowest byte. */
__device__ __forceinline__ void quantize16(const float *x, float amax, uint32_t *p) {
    const float inv = q8_inv(amax);
    uint32_t b[16];
#pragma unroll
    for (int k = 0; k < 16; k++) b[k] = q8_round_bits(x[k], inv);
#pragma unroll
    for (int k = 0; k < 4; k++)
        p[k] = __byte_perm(__byte_perm(b[4 * k], b[4 * k + 1], 0x0040), __byte_perm(b[4 * k + 2], b[4 * k + 3], 0x0040), 0x5410);
}

/** Σ q·p over a chunk of 16: four dp4a (signed bytes, int32 sum, exact). */
__device__ __forceinline__ int dot16_i8(uint4 w, const uint32_t *p) {
    int s = __dp4a((int)w.x, (int)p[0], 0);
    s = __dp4a((int)w.y, (int)p[1], s);
    s = __dp4a((int)w.z, (int)p[2], s);
    return __dp4a((int)w.w, (int)p[3], s);
}

/** @brief The decode GEMV: out[b][r] = Σ_c W[r][c] x'[b][c], with a prologue PRO and an epilogue EPI.
 *
 * ROWS rows per block; the 8 warps split the columns, and
 * each thread loads CPP 16-byte chunks (8 bf16 or 16 q8 columns, CW) of every row before it
 * computes on any, so that CPP·ROWS loads are in flight; the partial sums meet in shared memory.
 * No prologue reduction: the norms' sums of squares come precomputed.
 * At one sequence the blocks do not all start at chunk 0: loop index q is the row's chunk
 * (q + rot) mod cn with rot = 32·blockIdx.x, so that the blocks in flight do not read the same
 * columns of their rows at the same moment (out_proj, 1,024 chunks read in two passes of 512: all
 * of them read the first halves of their rows, then all the second halves). A step of one warp's
 * chunks (32) beat steps of half or whole passes; at 2-4 sequences every rotation tried was slower
 * than the plain order, so there the order stays plain (measurements: results/gpu.md).
 * q8: the 16-byte path needs whole input blocks of 32 (Q8_XBLOCK) in the row and in every norm
 * group; the two chunks of an input block are then held by lanes 2k and 2k + 1 of a warp (an even
 * number of chunks per row, an even rotation), which the dp4a product's shuffle of max|x| relies
 * on. The weights' scale of chunk q is that of its block of 64, q / 4: the row's values are Kq
 * (a multiple of 64) bytes apart, so a row whose width is a multiple of 32 only ends in half a
 * scale block whose other half (the padding) no chunk reads. With a.xq (read
 * for PRO_GATEDNORM only) the dp4a product takes x already rounded by the SSD step (out_proj's
 * input) instead of rounding it in every block of rows: the same bytes (q8_round_bits()), read as
 * 16 bytes and one max|x| per chunk instead of 64 bytes, a maximum and 16 roundings. With STG > 0
 * passes 1 .. STG of each thread's chunks are copied into shared memory (cp.async, no registers
 * held) during the first pass, before the wait for the previous kernel, and read from there: more
 * of the matrix on its way while the kernel before runs than the registers hold (gemv_q8.cu's
 * one-sequence out_proj, during the SSD step). Its one argument, a GemvArgs, holds the weights (W or
 * Wq, by WF), the input and the prologue's and epilogue's arrays. */
template <int NB, int PRO, int EPI, int ROWS, int CPP, int WF, int STG>
__global__ void __launch_bounds__(GEMV_THREADS, GEMV_MIN_BLOCKS(NB, ROWS, CPP, WF)) gemv_kernel(GemvArgs a) {
    constexpr int CW = WF == GEMV_BF16 ? 8 : 16; /* columns per 16-byte chunk */
    __shared__ float part[GEMV_THREADS / 32][ROWS][NB];
    /* STG > 0: passes 1 .. STG of this thread's chunks, copied into shared memory before the wait
     * (gemv_stage_bytes() gives the size): [STG · CPP · ROWS][GEMV_THREADS] chunks, then as many
     * 4-byte words holding each chunk's q8 scale */
    extern __shared__ uint4 staged[];
    __shared__ float epi_in[ROWS * NB][EPI_SLOT]; /* warp 0's epilogue inputs */
    pdl_trigger();
    if (threadIdx.x < 32) epilogue_prefetch<NB, PRO, EPI, ROWS>(a, blockIdx.x * ROWS, epi_in, false, threadIdx.x);
    bool waited = false;
    auto wait_previous = [&]() { /* for the kernel that wrote x (and h, and the sums of squares) */
        pdl_wait();
        waited = true;
        if (threadIdx.x < 32) epilogue_prefetch<NB, PRO, EPI, ROWS>(a, blockIdx.x * ROWS, epi_in, true, threadIdx.x);
    };
    const int cols = a.cols, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r0 = blockIdx.x * ROWS;
    float acc[ROWS][NB];
#pragma unroll
    for (int j = 0; j < ROWS; j++)
#pragma unroll
        for (int b = 0; b < NB; b++) acc[j][b] = 0;

    /* 16-byte path: whole chunks of CW, each inside one norm group (q8: whole blocks, see above) */
    const bool vec = WF == GEMV_BF16 ? (cols & 7) == 0 && (PRO != PRO_GATEDNORM || ((cols / a.groups) & 7) == 0)
                                     : cols % Q8_XBLOCK == 0 && (PRO != PRO_GATEDNORM || (cols / a.groups) % Q8_XBLOCK == 0);
    if (vec) {
        const int cn = cols / CW, gs = PRO == PRO_GATEDNORM ? cols / a.groups : 1;
        const float inv_gs = 1.0f / gs;
        const uint4 *wrows[ROWS];
        const uint16_t *drows[ROWS]; /* q8: the row's scales */
        if constexpr (STG == 0)
#pragma unroll
            for (int j = 0; j < ROWS; j++) {
                const int r = min(r0 + j, a.rows - 1);
                if (WF == GEMV_BF16) wrows[j] = (const uint4 *)(a.W + (size_t)r * cols);
                else wrows[j] = (const uint4 *)(a.Wq.q + (size_t)r * a.Wq.Kq), drows[j] = a.Wq.d + (size_t)r * (a.Wq.Kq / Q8_SCALE_BLOCK);
            }
        /* Row j's weights and scales: held in registers (one pointer a row), or with staged passes,
         * whose shapes have more rows a thread, formed at each use (registers for the loads instead) */
        auto wrow = [&](int j) {
            if constexpr (STG == 0) return wrows[j];
            const int r = min(r0 + j, a.rows - 1);
            return WF == GEMV_BF16 ? (const uint4 *)(a.W + (size_t)r * cols) : (const uint4 *)(a.Wq.q + (size_t)r * a.Wq.Kq);
        };
        auto drow = [&](int j) {
            if constexpr (STG == 0) return drows[j];
            return a.Wq.d + (size_t)min(r0 + j, a.rows - 1) * (a.Wq.Kq / Q8_SCALE_BLOCK);
        };
        const int rot = NB == 1 ? (int)((size_t)blockIdx.x * GEMV_ROT_STEP % cn) : 0;
        auto chunk = [&](int q) { /* the row's chunk at loop index q */
            if (NB > 1) return q;
            q += rot;
            return q >= cn ? q - cn : q;
        };
        const unsigned pair = 3u << (lane & ~1); /* dp4a: this lane and the one holding the other half of its input block */
        /* Staged passes: copied during the first pass, before the wait, without holding registers,
         * so that while the kernel before this one runs (the SSD step, before out_proj) STG more
         * passes of weights are on their way than the registers could hold. Slot
         * k = ((p − 1)·CPP + i)·ROWS + j of thread t is staged[k·GEMV_THREADS + t]: each thread reads
         * back only what it copied (its own cp.async.wait_all, no barrier), and a warp's 32 chunks of
         * one slot are 512 contiguous bytes. */
        uint32_t *staged_d = (uint32_t *)(staged + STG * CPP * ROWS * GEMV_THREADS);
        auto stage_later_passes = [&]() {
#pragma unroll
            for (int p = 1; p <= STG; p++)
#pragma unroll
                for (int i = 0; i < CPP; i++) {
                    const int c8 = threadIdx.x + (p * CPP + i) * GEMV_THREADS;
                    if (c8 < cn)
#pragma unroll
                        for (int j = 0; j < ROWS; j++) {
                            const int q = chunk(c8), k = ((p - 1) * CPP + i) * ROWS + j;
                            cp_async16(staged + k * GEMV_THREADS + threadIdx.x, wrow(j) + q, true);
                            if (WF != GEMV_BF16) { /* the 4-byte word holding the chunk's scale (rows of an even number
                                                      * of scales: gemv_q8_stages()) */
                                const int e = q / (Q8_SCALE_BLOCK / CW);
                                cp_async4(staged_d + k * GEMV_THREADS + threadIdx.x, drow(j) + (e & ~1), true);
                            }
                        }
                }
        };
        for (int c8 = threadIdx.x; c8 < cn; c8 += CPP * GEMV_THREADS) {
            uint4 w[CPP][ROWS];
            uint16_t wd[CPP][ROWS]; /* q8: the chunks' weight scales (chunk q: scale q / 4, 16 × 4 = 64 columns) */
            const int pass = (c8 - threadIdx.x) / (CPP * GEMV_THREADS);
            if (STG > 0 && pass >= 1 && pass <= STG) {
                if (pass == 1) cp_async_wait_all();
#pragma unroll
                for (int i = 0; i < CPP; i++)
                    if (c8 + i * GEMV_THREADS < cn)
#pragma unroll
                        for (int j = 0; j < ROWS; j++) {
                            const int k = ((pass - 1) * CPP + i) * ROWS + j;
                            w[i][j] = staged[k * GEMV_THREADS + threadIdx.x];
                            if (WF != GEMV_BF16) {
                                const int e = chunk(c8 + i * GEMV_THREADS) / (Q8_SCALE_BLOCK / CW);
                                wd[i][j] = (uint16_t)(staged_d[k * GEMV_THREADS + threadIdx.x] >> (16 * (e & 1)));
                            }
                        }
            } else
#pragma unroll
                for (int i = 0; i < CPP; i++)
                    if (c8 + i * GEMV_THREADS < cn)
#pragma unroll
                        for (int j = 0; j < ROWS; j++) {
                            const int q = chunk(c8 + i * GEMV_THREADS);
                            w[i][j] = __ldcs(wrow(j) + q); /* streamed: read once */
                            if (WF != GEMV_BF16) wd[i][j] = __ldcs(drow(j) + q / (Q8_SCALE_BLOCK / CW));
                        }
            if (STG > 0 && pass == 0) stage_later_passes(); /* after the first pass's loads, needed first */
            if (!waited) wait_previous(); /* the weights are in flight */
#pragma unroll
            for (int i = 0; i < CPP; i++)
                if (c8 + i * GEMV_THREADS < cn) {
                    const int c = chunk(c8 + i * GEMV_THREADS) * CW, grp = PRO == PRO_GATEDNORM ? c / gs : 0;
#pragma unroll
                    for (int b = 0; b < NB; b++) {
                        const float sc = PRO == PRO_GATEDNORM ? group_scale(a, b, grp, inv_gs) : 1.0f;
                        if (WF == GEMV_BF16) {
                            float x[8];
                            input8(a, b, c, x);
                            if (PRO == PRO_GATEDNORM)
#pragma unroll
                                for (int j = 0; j < ROWS; j++) acc[j][b] = fmaf(sc, dot8(w[i][j], x), acc[j][b]);
                            else
#pragma unroll
                                for (int j = 0; j < ROWS; j++) acc[j][b] += dot8(w[i][j], x);
                        } else if (WF == GEMV_Q8_FLOAT) {
                            float x[16];
                            input8(a, b, c, x);
                            input8(a, b, c + 8, x + 8);
#pragma unroll
                            for (int j = 0; j < ROWS; j++)
                                acc[j][b] = fmaf(sc * __half2float(__ushort_as_half(wd[i][j])), dot16_q8(w[i][j], x), acc[j][b]);
                        } else { /* dp4a: x ≈ (amax / 127)·p; the 1/127 is applied once, after the loop */
                            uint32_t p[4];
                            float amax;
                            /* staged: out_proj's launcher stages only with a.xq (the rounding below would spill) */
                            if (PRO == PRO_GATEDNORM && (STG > 0 || a.xq)) { /* rounded by the SSD step, exactly as below (only
                                                                   * out_proj: the branch alone made in_proj's kernel spill) */
                                const uint4 pq = *(const uint4 *)(a.xq + (size_t)b * cols + c);
                                p[0] = pq.x, p[1] = pq.y, p[2] = pq.z, p[3] = pq.w;
                                amax = a.xa[((size_t)b * cols + c) / Q8_XBLOCK];
                            } else {
                                float x[16];
                                input8(a, b, c, x);
                                input8(a, b, c + 8, x + 8);
                                amax = 0;
#pragma unroll
                                for (int k = 0; k < 16; k++) amax = fmaxf(amax, fabsf(x[k]));
                                amax = fmaxf(amax, __shfl_xor_sync(pair, amax, 1));
                                quantize16(x, amax, p);
                            }
                            const float se = sc * amax;
#pragma unroll
                            for (int j = 0; j < ROWS; j++)
                                acc[j][b] = fmaf((float)dot16_i8(w[i][j], p), se * __half2float(__ushort_as_half(wd[i][j])), acc[j][b]);
                        }
                    }
                }
        }
        if (WF == GEMV_Q8_DP4A)
#pragma unroll
            for (int j = 0; j < ROWS; j++)
#pragma unroll
                for (int b = 0; b < NB; b++) acc[j][b] *= 1.0f / 127.0f;
    }
    if (!waited) wait_previous(); /* threads without a chunk, and the any-width path */
    if (!vec) { /* any width (q8: the float product, whatever a.wf asks) */
        for (int c = threadIdx.x; c < cols; c += GEMV_THREADS)
#pragma unroll
            for (int b = 0; b < NB; b++) {
                float xv = input1<PRO>(a, b, c);
#pragma unroll
                for (int j = 0; j < ROWS; j++) acc[j][b] += weight1<WF>(a, min(r0 + j, a.rows - 1), c) * xv;
            }
    }
#pragma unroll
    for (int j = 0; j < ROWS; j++)
#pragma unroll
        for (int b = 0; b < NB; b++) {
            float v = warp_sum(acc[j][b]);
            if (lane == 0) part[warp][j][b] = v;
        }
    __syncthreads();
    if (warp) return;
    /* warp 0: lane (j, b) finishes row r0 + j of sequence b */
    int j = lane / NB, b = lane % NB, r = r0 + j;
    bool live = lane < ROWS * NB && r < a.rows;
    float v = 0, sq = 0;
    cp_async_wait_all(); /* this lane's epilogue inputs */
    if (live) {
        const float *pre = epi_in[lane];
#pragma unroll
        for (int w = 0; w < GEMV_THREADS / 32; w++) v += part[w][j][b];
        sq = finish_row<PRO, EPI>(a, b, r, v, pre);
    }
    if (EPI == EPI_RESIDUAL && a.ss_out) { /* Σ h² of the new residual rows, for the next RMSNorm */
        if (lane < ROWS * NB) part[0][j][b] = sq; /* each lane only ever read its own slot */
        __syncwarp();
        if (lane < NB) {
            float total = 0;
#pragma unroll
            for (int jj = 0; jj < ROWS; jj++) total += part[0][jj][lane];
            atomicAdd(&a.ss_out[lane], total);
        }
    }
}

/** Call L::run<NB, PRO, EPI>(a, s) with NB = a.nb (1 to 4) and the compile-time pair of the model's
 *  prologue / epilogue pairs that (pro, epi) names (any other pair: PRO_NONE, EPI_STORE). */
template <class L> static void gemv_dispatch(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, cudaStream_t s) {
    auto by_nb = [&](auto p, auto e) {
        constexpr int P = decltype(p)::value, E = decltype(e)::value;
        switch (a.nb) {
        case 1: L::template run<1, P, E>(a, s); break;
        case 2: L::template run<2, P, E>(a, s); break;
        case 3: L::template run<3, P, E>(a, s); break;
        default: L::template run<4, P, E>(a, s); break;
        }
    };
    using std::integral_constant;
    if (pro == PRO_RMSNORM && epi == EPI_INPROJ) by_nb(integral_constant<int, PRO_RMSNORM>(), integral_constant<int, EPI_INPROJ>());
    else if (pro == PRO_GATEDNORM && epi == EPI_RESIDUAL)
        by_nb(integral_constant<int, PRO_GATEDNORM>(), integral_constant<int, EPI_RESIDUAL>());
    else if (pro == PRO_RMSNORM && epi == EPI_STORE) by_nb(integral_constant<int, PRO_RMSNORM>(), integral_constant<int, EPI_STORE>());
    else by_nb(integral_constant<int, PRO_NONE>(), integral_constant<int, EPI_STORE>());
}

/** Shared memory of gemv_kernel's STG staged passes: CPP · ROWS chunks of 16 bytes a thread and
 *  pass, and for q8 a 4-byte word of scales beside each. */
template <int ROWS, int CPP, int WF, int STG> constexpr int gemv_stage_bytes() {
    return STG * CPP * ROWS * GEMV_THREADS * (16 + (WF == GEMV_BF16 ? 0 : 4));
}

/** Launch gemv_kernel with a block shape of ROWS rows × CPP chunks per thread, STG passes staged. */
template <int NB, int PRO, int EPI, int ROWS, int CPP, int WF, int STG = 0>
static void launch_gemv_shape(const GemvArgs &a, cudaStream_t s) {
    constexpr int smem = gemv_stage_bytes<ROWS, CPP, WF, STG>();
    if constexpr (smem > 48 * 1024) {
        static bool raised = false;
        if (!raised)
            cudaFuncSetAttribute(gemv_kernel<NB, PRO, EPI, ROWS, CPP, WF, STG>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
                raised = true;
    }
    launch_pdl(gemv_kernel<NB, PRO, EPI, ROWS, CPP, WF, STG>, dim3((a.rows + ROWS - 1) / ROWS), dim3(GEMV_THREADS), smem, s, a);
}

#endif
