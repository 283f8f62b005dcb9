/**
 * @file ssd_chunked.cu
 * @brief The chunked SSD algorithm for prefill, as in ref/ssd.c's ssd_chunked() but with the
 *        chunk-level contractions on tensor cores (mma.sync, bf16 operands, fp32 accumulators).
 *
 * Kernels, in order (chunks of Q tokens, a_t = dt_t·A, cum_t = a summed from the chunk start):
 * 0. cumsum:        cum[h][t]
 * 1. chunk states and state passing, one kernel walking the chunks with S in registers:
 *                   S_{c+1} = exp(cum_end(c)) S_c + Σ_{s in c} exp(cum_end − cum_s) dt_s x_s B_sᵀ  (X̃ᵀ · B);
 *                   states[c] ← S_c (the state entering chunk c, bf16)
 * 2. chunk scan:    y_t = Σ_{s≤t} (C_t·B_s) exp(cum_t − cum_s) dt_s x_s   (diagonal block, M · X)
 *                       + exp(cum_t) C_t S_cᵀ                            (state to output)
 *                       + D x_t
 * The chunk scan forms C·Bᵀ, the decay and the mask in registers, 16 × 16 at a time, and feeds
 * the result straight on as the A operand of M·X (see mma_bf16.cuh): M never goes to memory.
 * For P = 64 and N = 128 (the 7B models) a second chunk scan, 2', forms C·Bᵀ once per (chunk, group)
 * and walks the group's heads with their inputs copied in ahead; the first takes every other shape.
 * The chunks are the GPU's own, at most 128 tokens (GPU_CHUNK below), whatever the model's chunk_size.
 * Any P, N and Q work (zero padding to multiples of 16 in shared memory) within the limits of
 * ssd_chunked_supported().
 */
#include "kernels.cuh"
#include "mma_bf16.cuh"

#define PAD 8       /* bf16 elements added to every shared-memory row: ldmatrix without bank conflicts */
#define MAX_Q 256   /* longest chunk the kernels hold in shared memory (16 row blocks of 16) */
#define WARPS 8     /* warps per block of the two chunk scans */
#define LOG2E 1.4426950408889634f

/* Bytes a carved piece takes: rounded up to 128, so that every piece is 128-byte aligned. */
__host__ __device__ __forceinline__ size_t carve_size(size_t bytes) { return (bytes + 127) & ~(size_t)127; }

/* Carve 128-byte aligned pieces out of dynamic shared memory. */
__device__ __forceinline__ char *carve(char *&p, size_t bytes) {
    char *r = p;
    p += carve_size(bytes);
    return r;
}

/* dst[r][k] (row pitch ld_dst) = src[r * ld_src + k] for r < rows_valid and k < cols_valid, zero
 * elsewhere in [rows) x [cols). Sixteen bytes at a time when the shapes allow it, four loads in
 * flight per thread before any store. */
__device__ void load_tile(bf16 *dst, int ld_dst, const bf16 *src, size_t ld_src, int rows, int cols, int rows_valid,
                          int cols_valid) {
    if (((cols_valid | (int)ld_src | ld_dst | cols) & 7) == 0 && ((uintptr_t)src & 15) == 0) {
        const int c8 = cols >> 3, n = rows * c8, U = 4;
        for (int i0 = threadIdx.x; i0 < n; i0 += U * blockDim.x) {
            uint4 v[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                int i = i0 + u * blockDim.x, r = i / c8, k = (i - r * c8) * 8;
                v[u] = make_uint4(0, 0, 0, 0);
                if (i < n && r < rows_valid && k < cols_valid) v[u] = __ldg((const uint4 *)(src + (size_t)r * ld_src + k));
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                int i = i0 + u * blockDim.x, r = i / c8, k = (i - r * c8) * 8;
                if (i >= n) break;
                *(uint4 *)(dst + r * ld_dst + k) = v[u];
            }
        }
    } else {
        for (int i = threadIdx.x; i < rows * cols; i += blockDim.x) {
            int r = i / cols, k = i - r * cols;
            float v = (r < rows_valid && k < cols_valid) ? __bfloat162float(src[(size_t)r * ld_src + k]) : 0.0f;
            dst[r * ld_dst + k] = __float2bfloat16(v);
        }
    }
}

/* As load_tile, but with cp.async: every thread starts all its 16-byte copies before
 * any arrives, so a tile costs one memory latency rather than one per four loads. Falls back to
 * load_tile when the shapes or the source alignment do not allow 16-byte pieces. The caller runs
 * cp_async_wait_all() and __syncthreads() before reading dst. */
__device__ void load_tile_async(bf16 *dst, int ld_dst, const bf16 *src, size_t ld_src, int rows, int cols,
                                int rows_valid, int cols_valid) {
    if (((cols_valid | (int)ld_src | ld_dst | cols) & 7) != 0 || ((uintptr_t)src & 15) != 0) {
        load_tile(dst, ld_dst, src, ld_src, rows, cols, rows_valid, cols_valid);
        return;
    }
    const int c8 = cols >> 3, dr = blockDim.x / c8, dk = blockDim.x - dr * c8; /* one division, then steps */
    int r = threadIdx.x / c8, k8 = threadIdx.x - r * c8;
    for (; r < rows; r += dr, k8 += dk) {
        if (k8 >= c8) k8 -= c8, r++;
        if (r >= rows) break;
        int k = k8 * 8;
        bool valid = r < rows_valid && k < cols_valid;
        cp_async16(dst + r * ld_dst + k, valid ? src + (size_t)r * ld_src + k : src, valid);
    }
}

/* ------------------------------------------------------------------ 0. cumsum */

/* One warp per (chunk, head): cum[h][t] = Σ_{k = chunk start .. t} dt[h][k]·A[h] (inclusive scan);
 * then the chunk-state weights wts[h][t] = exp(cum_end − cum[h][t])·dt[h][t] and the decay across
 * the whole chunk, chunk_decay[h][c] = exp(cum_end), cum_end being cum at the chunk's last token. */
__global__ void ssd_cumsum_kernel(const float *dt, const float *A, int T, int Q, float *cum, float *wts,
                                  float *chunk_decay) {
    int c = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    int t0 = c * Q, t1 = min(T, t0 + Q);
    float carry = 0, a = A[h];
    for (int base = t0; base < t1; base += 32) {
        int t = base + lane;
        float v = t < t1 ? dt[(size_t)h * T + t] * a : 0.0f;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) { /* inclusive warp scan */
            float u = __shfl_up_sync(0xffffffffu, v, o);
            if (lane >= o) v += u;
        }
        if (t < t1) cum[(size_t)h * T + t] = carry + v;
        carry += __shfl_sync(0xffffffffu, v, 31);
    }
    for (int t = t0 + lane; t < t1; t += 32) /* the same lane wrote cum[t] above */
        wts[(size_t)h * T + t] = __expf(carry - cum[(size_t)h * T + t]) * dt[(size_t)h * T + t];
    if (lane == 0) chunk_decay[(size_t)h * gridDim.x + c] = __expf(carry);
}

/* ------------------------------------------------------------------ 1. chunk states and state passing */

#define CHAIN_STAGES 3 /* chunks in the pipeline: one computed on while the next two are copied in */
#define CHAIN_P 64     /* state rows p per block: 4 warp tiles of 16 */
/* State columns n per block, the kernel's template argument NB: 128 (4 warp tiles of 32, 16 warps,
 * one block per SM) or 64 (2 tiles, 8 warps, 110 KB of shared memory: two blocks per SM). Each warp
 * owns one 16 × 32 tile of S either way, so both give the same bits. */
#define CHAIN_WARPS(NB) (CHAIN_P / 16 * (NB) / 32)

/* One pipeline stage in shared memory: this block's columns of a chunk's x and B, its weights and decay. */
struct ChainStage {
    bf16 *X;  /* [Qp s][CHAIN_P + PAD] */
    bf16 *B;  /* [Qp s][NB + PAD] */
    float *w; /* [Qp + 1]  w_s = exp(cum_end − cum_s) dt_s, then exp(cum_end) */
};

__host__ __device__ static inline size_t chain_stage_bytes(int Qp, int NB) {
    return carve_size((size_t)Qp * (CHAIN_P + PAD) * 2) + carve_size((size_t)Qp * (NB + PAD) * 2) +
           carve_size((size_t)(Qp + 1) * 4);
}

__device__ __forceinline__ ChainStage chain_stage(char *smem, int i, int Qp, int NB) {
    char *p = smem + (size_t)i * chain_stage_bytes(Qp, NB);
    ChainStage st;
    st.X = (bf16 *)carve(p, (size_t)Qp * (CHAIN_P + PAD) * sizeof(bf16));
    st.B = (bf16 *)carve(p, (size_t)Qp * (NB + PAD) * sizeof(bf16));
    st.w = (float *)carve(p, (size_t)(Qp + 1) * sizeof(float));
    return st;
}

/* The state recurrence over the chunks, each chunk's contribution on tensor cores (steps 2 and 3 of
 * ref/ssd.c in one kernel):
 *   S_{c+1} = exp(cum_end(c)) S_c + Σ_{s in c} w_s x_s B_sᵀ,   w_s = exp(cum_end(c) − cum_s) dt_s   (X̃ᵀ · B)
 * One block (CHAIN_WARPS(NB) warps) per (head, 64 rows p, NB columns n) walks the chunks in order, S held in the
 * warps' mma accumulators (a warp owns a 16 × 32 tile): the chunk's product accumulates straight
 * onto the decayed S, and S never leaves registers between chunks. Before chunk c is added, S_c,
 * the state entering chunk c, goes to states[c] in bf16 (the chunk scan's tensor cores take it in
 * bf16 anyway); after the last chunk the final state goes to @p ssm. x, B, the weights w_s and the
 * decay of the next CHAIN_STAGES − 1 chunks are in flight (cp.async) while a chunk is computed on;
 * the cumsum kernel computed the weights and decays once per (chunk, head), not once per lane.
 * FULL: P a multiple of CHAIN_P and N of NB (the 7B models: 64, 128), so that every copy and
 * store is whole and the per-chunk address arithmetic is a few adds (the general path's checks
 * and divisions were a large part of the kernel's instructions). The walk is a chain of dependent
 * steps with one block per head, so it is bound by latency: 16 warps of small tiles rather than 8 of
 * large ones, for more warps to issue from (measurements: results/gpu.md). */
template <typename S, bool FULL, int NB>
__global__ void __launch_bounds__(CHAIN_WARPS(NB) * 32, 128 / NB) ssd_state_chain_kernel(GpuDims g, const bf16 *xbc, const float *wts,
                                                                     const float *chunk_decay, int T, bf16 *states,
                                                                     S *ssm) {
    pdl_trigger(); /* the chunk scan may start copying its C and B in */
    const int h = blockIdx.x, pb = blockIdx.y * CHAIN_P, nb = blockIdx.z * NB, grp = h / (g.H / g.G);
    const int nc = (T + g.Q - 1) / g.Q, Qp = round_up(g.Q, 16), ldx = CHAIN_P + PAD, ldb = NB + PAD;
    const int pcols = FULL ? CHAIN_P : min(CHAIN_P, round_up(g.P, 16) - pb);
    const int ncols = FULL ? NB : min(NB, round_up(g.N, 16) - nb);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, qr = lane >> 2, qc = (lane & 3) * 2;
    const int p0 = warp / (NB / 32) * 16, n0 = warp % (NB / 32) * 32; /* the warp's tile inside the block's */
    const bool active = p0 < pcols && n0 < ncols;
    const size_t PN = (size_t)g.P * g.N;
    extern __shared__ __align__(128) char smem[];

    /* copy chunk c into its stage (when there is one), and close a group either way, so that the
     * number of groups in flight is always the pipeline's depth */
    auto issue = [&](int c) {
        if (c < nc) {
            ChainStage st = chain_stage(smem, c % CHAIN_STAGES, Qp, NB);
            int t0 = c * g.Q, len = min(g.Q, T - t0), rows = round_up(len, 16);
            const bf16 *chunk = xbc + (size_t)t0 * g.conv_dim;
            if (FULL) { /* fixed 16-byte pieces per thread: X 8 a row, B NB / 8 a row */
                constexpr int bp = NB / 8, threads = CHAIN_WARPS(NB) * 32;
                const int xr = threadIdx.x >> 3, xk = (threadIdx.x & 7) * 8, br = threadIdx.x / bp, bk = threadIdx.x % bp * 8;
                const bf16 *xs = chunk + h * g.P + pb + xk, *bs = chunk + g.d_in + grp * g.N + nb + bk;
                for (int r = xr; r < rows; r += threads / 8)
                    cp_async16(st.X + r * ldx + xk, xs + (size_t)(r < len ? r : 0) * g.conv_dim, r < len);
                for (int r = br; r < rows; r += threads / bp)
                    cp_async16(st.B + r * ldb + bk, bs + (size_t)(r < len ? r : 0) * g.conv_dim, r < len);
            } else {
                load_tile_async(st.X, ldx, chunk + h * g.P + pb, g.conv_dim, rows, pcols, len, min(CHAIN_P, g.P - pb));
                load_tile_async(st.B, ldb, chunk + g.d_in + grp * g.N + nb, g.conv_dim, rows, ncols, len,
                                min(NB, g.N - nb));
            }
            for (int t = threadIdx.x; t < rows; t += blockDim.x) { /* zero past the chunk */
                bool v = t < len;
                cp_async4(st.w + t, wts + (size_t)h * T + t0 + (v ? t : 0), v);
            }
            if (threadIdx.x == blockDim.x - 1) cp_async4(st.w + Qp, chunk_decay + (size_t)h * nc + c, true);
        }
        cp_async_commit();
    };
    for (int c = 0; c < CHAIN_STAGES - 1; c++) issue(c);

    /* S_0, the initial state. Lane entry (j, r): row pb + p0 + qr + 8·(r / 2), column nb + n0 + 8j + qc + r % 2 */
    float acc[4][4];
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int pp = pb + p0 + qr + (r >> 1) * 8, n = nb + n0 + j * 8 + qc + (r & 1);
            acc[j][r] = active && pp < g.P && n < g.N ? (float)ssm[(size_t)h * PN + (size_t)pp * g.N + n] : 0.0f;
        }

    for (int c = 0; c < nc; c++) {
        cp_async_wait_group<CHAIN_STAGES - 2>(); /* chunk c has arrived (only the newer groups may be in flight) */
        __syncthreads();                         /* ... for every thread; and chunk c − 1's stage is free */
        issue(c + CHAIN_STAGES - 1);
        if (!active) continue;
        ChainStage st = chain_stage(smem, c % CHAIN_STAGES, Qp, NB);
        int len = min(g.Q, T - c * g.Q), rows = round_up(len, 16);
        bf16 *out = states + ((size_t)c * g.H + h) * PN; /* S_c, the state entering chunk c */
        if (FULL) {
            bf16 *o = out + (size_t)(pb + p0 + qr) * g.N + nb + n0 + qc, *o8 = o + 8 * g.N;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                *(uint32_t *)(o + j * 8) = pack_bf16x2(acc[j][0], acc[j][1]);
                *(uint32_t *)(o8 + j * 8) = pack_bf16x2(acc[j][2], acc[j][3]);
            }
        } else
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int half = 0; half < 2; half++) {
                int pp = pb + p0 + qr + half * 8, n = nb + n0 + j * 8 + qc;
                if (pp >= g.P || n >= g.N) continue;
                bf16 *o = out + (size_t)pp * g.N + n;
                if ((g.N & 1) == 0) *(uint32_t *)o = pack_bf16x2(acc[j][2 * half], acc[j][2 * half + 1]);
                else {
                    o[0] = __float2bfloat16(acc[j][2 * half]);
                    if (n + 1 < g.N) o[1] = __float2bfloat16(acc[j][2 * half + 1]);
                }
            }
        float decay = st.w[Qp];
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[j][r] *= decay;
        for (int k = 0; k < rows; k += 16) {
            uint32_t a[4]; /* X̃ᵀ rows p0.., columns k..: stored as X[s][p], so transposed */
            ldmatrix_x4_trans(a, st.X + (k + (lane >> 4) * 8 + (lane & 7)) * ldx + p0 + ((lane >> 3) & 1) * 8);
            float2 w_lo = *(const float2 *)(st.w + k + qc), w_hi = *(const float2 *)(st.w + k + qc + 8);
            a[0] = scale_bf16x2(a[0], w_lo.x, w_lo.y), a[1] = scale_bf16x2(a[1], w_lo.x, w_lo.y);
            a[2] = scale_bf16x2(a[2], w_hi.x, w_hi.y), a[3] = scale_bf16x2(a[3], w_hi.x, w_hi.y);
#pragma unroll
            for (int j = 0; j < 2; j++) {
                if (n0 + j * 16 >= ncols) break;
                uint32_t b[4]; /* B rows k.., columns n0 + 16j..: k × n as stored, so transposed */
                ldmatrix_x4_trans(b, st.B + (k + ((lane >> 3) & 1) * 8 + (lane & 7)) * ldb + n0 + j * 16 + (lane >> 4) * 8);
                mma_16816(acc[2 * j], a, b[0], b[1]);
                mma_16816(acc[2 * j + 1], a, b[2], b[3]);
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int j = 0; j < 4; j++) /* the final state */
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int pp = pb + p0 + qr + (r >> 1) * 8, n = nb + n0 + j * 8 + qc + (r & 1);
            if (pp < g.P && n < g.N) ssm[(size_t)h * PN + (size_t)pp * g.N + n] = (S)acc[j][r];
        }
}

/* ------------------------------------------------------------------ 2. chunk scan */

/* One block (8 warps) per (chunk, head). x, B, C and the entering state of the chunk are copied in
 * once (C from global memory instead when it does not fit: @p c_in_smem 0); each warp then owns 16
 * output rows t at a time (row blocks w and 15 − w, so that every warp does the same amount of
 * causal work), with those rows of C in registers (NKS steps of 16 over N):
 *   acc  = exp(cum_t) · C_t S_cᵀ                                   (state to output)
 *   for each 32 s ≤ t:  M = (C_t · B_s) exp(cum_t − cum_s) dt_s, 0 where s > t   (registers)
 *                       acc += M · X_s                                (M as the A operand)
 *   y_t = acc + D x_t
 * C·Bᵀ runs as eight independent accumulations (two 16-column blocks × two n-halves of s × even
 * and odd k steps) so that the tensor cores have work in flight with only 8 warps on the SM.
 * P is covered 64 columns at a time. */
template <int NKS>
__global__ void __launch_bounds__(WARPS * 32, 2) ssd_chunk_scan_kernel(GpuDims g, const bf16 *xbc, const float *dt,
                                                                    const float *cum, const bf16 *states,
                                                                    const float *D, int T, int c_in_smem, float *y) {
    int c = blockIdx.x, h = blockIdx.y, grp = h / (g.H / g.G);
    int t0 = c * g.Q, len = min(g.Q, T - t0), rows = round_up(len, 16);
    int Pp = round_up(g.P, 16), Np = round_up(g.N, 16), ldx = Pp + PAD, ldn = Np + PAD;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, qr = lane >> 2, qc = (lane & 3) * 2;
    extern __shared__ __align__(128) char smem[];
    char *p = smem;
    bf16 *Xs = (bf16 *)carve(p, (size_t)rows * ldx * sizeof(bf16)); /* [rows s][Pp]  x of the chunk */
    bf16 *Bs = (bf16 *)carve(p, (size_t)rows * ldn * sizeof(bf16)); /* [rows s][Np]  B of the chunk */
    bf16 *Ss = (bf16 *)carve(p, (size_t)Pp * ldn * sizeof(bf16));   /* [Pp][Np]      entering state S_c */
    float *cum2 = (float *)carve(p, (size_t)rows * sizeof(float));  /* [rows] cum_t · log2(e) */
    float *dts = (float *)carve(p, (size_t)rows * sizeof(float));   /* [rows] dt_t */
    bf16 *Cs = c_in_smem ? (bf16 *)carve(p, (size_t)rows * ldn * sizeof(bf16)) : NULL; /* [rows t][Np] */
    const bf16 *chunk = xbc + (size_t)t0 * g.conv_dim;
    const bf16 *Cg = chunk + g.d_in + g.G * g.N + grp * g.N; /* C_t = Cg[t · conv_dim + n] */
    const bf16 *S = states + ((size_t)c * g.H + h) * g.P * g.N; /* [P][N] */
    float Dh = D ? D[h] : 0.0f;

    load_tile_async(Xs, ldx, chunk + h * g.P, g.conv_dim, rows, Pp, len, g.P);
    load_tile_async(Bs, ldn, chunk + g.d_in + grp * g.N, g.conv_dim, rows, Np, len, g.N);
    if (Cs) load_tile_async(Cs, ldn, Cg, g.conv_dim, rows, Np, len, g.N);
    for (int t = threadIdx.x; t < rows; t += blockDim.x) {
        cum2[t] = t < len ? cum[(size_t)h * T + t0 + t] * LOG2E : 0.0f;
        dts[t] = t < len ? dt[(size_t)h * T + t0 + t] : 0.0f;
    }
    load_tile_async(Ss, ldn, S, g.N, Pp, Np, g.P, g.N); /* the entering state, zero padded */
    cp_async_wait_all();
    __syncthreads();

    for (int pass = 0; pass < 2; pass++) {
        int rb = pass == 0 ? warp : 2 * WARPS - 1 - warp, tb = rb * 16;
        if (tb >= rows) continue;
        int ta = tb + qr; /* this lane's rows: ta and ta + 8 */
        uint32_t cf[NKS][4]; /* C rows tb..tb+15 as A fragments */
#pragma unroll
        for (int kk = 0; kk < NKS; kk++) {
            if (Cs) {
                if (kk * 16 < Np) ldmatrix_x4(cf[kk], Cs + (tb + (lane & 15)) * ldn + kk * 16 + (lane >> 4) * 8);
                else cf[kk][0] = cf[kk][1] = cf[kk][2] = cf[kk][3] = 0;
                continue;
            }
#pragma unroll
            for (int r = 0; r < 4; r++) {
                int t = ta + (r & 1) * 8, n = kk * 16 + qc + (r >> 1) * 8;
                float lo = t < len && n < g.N ? __bfloat162float(Cg[(size_t)t * g.conv_dim + n]) : 0.0f;
                float hi = t < len && n + 1 < g.N ? __bfloat162float(Cg[(size_t)t * g.conv_dim + n + 1]) : 0.0f;
                cf[kk][r] = pack_bf16x2(lo, hi);
            }
        }
        float c2a = cum2[ta], c2b = cum2[ta + 8];
        for (int pc = 0; pc < Pp; pc += 64) {
            float acc[8][4] = {};
            /* state to output: C_t · S_cᵀ, then times exp(cum_t) row by row */
#pragma unroll
            for (int kk = 0; kk < NKS; kk++) {
                if (kk * 16 >= Np) break;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    if (pc + j * 16 >= Pp) break;
                    uint32_t b[4]; /* Sᵀ: k = n, columns p; S stored [p][n], so as stored */
                    ldmatrix_x4(b, Ss + (pc + j * 16 + (lane >> 4) * 8 + (lane & 7)) * ldn + kk * 16 + ((lane >> 3) & 1) * 8);
                    mma_16816(acc[2 * j], cf[kk], b[0], b[1]);
                    mma_16816(acc[2 * j + 1], cf[kk], b[2], b[3]);
                }
            }
            float ea = exp2_approx(c2a), eb = exp2_approx(c2b);
#pragma unroll
            for (int j = 0; j < 8; j++) acc[j][0] *= ea, acc[j][1] *= ea, acc[j][2] *= eb, acc[j][3] *= eb;
            /* the diagonal block, 32 columns s at a time: blocks sb and sb + 16 (the second only when
             * it reaches the diagonal; beyond it every entry is masked) */
            for (int sb = 0; sb <= tb; sb += 32) {
                const bool two = sb + 16 <= tb;
                float cb[2][4][4] = {}; /* [k parity][s block · 2 + n-half][fragment] */
#pragma unroll
                for (int kk = 0; kk < NKS; kk++) {
                    if (kk * 16 >= Np) break;
                    uint32_t b[4]; /* Bᵀ: k = n, columns s; B stored [s][n], so as stored */
                    const bf16 *bp = Bs + (sb + (lane >> 4) * 8 + (lane & 7)) * ldn + kk * 16 + ((lane >> 3) & 1) * 8;
                    ldmatrix_x4(b, bp);
                    mma_16816(cb[kk & 1][0], cf[kk], b[0], b[1]);
                    mma_16816(cb[kk & 1][1], cf[kk], b[2], b[3]);
                    if (two) {
                        ldmatrix_x4(b, bp + 16 * ldn);
                        mma_16816(cb[kk & 1][2], cf[kk], b[0], b[1]);
                        mma_16816(cb[kk & 1][3], cf[kk], b[2], b[3]);
                    }
                }
                uint32_t m[2][4]; /* M of s blocks sb, sb + 16 as A fragments: rows ta, ta + 8; columns 8j + qc (+1) */
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    if (q >= 2 && !two) break;
                    int s = sb + q * 8 + qc;
                    float2 cs = *(const float2 *)(cum2 + s), ds = *(const float2 *)(dts + s);
                    float v0 = cb[0][q][0] + cb[1][q][0], v1 = cb[0][q][1] + cb[1][q][1];
                    float v2 = cb[0][q][2] + cb[1][q][2], v3 = cb[0][q][3] + cb[1][q][3];
                    float a0 = s <= ta ? v0 * exp2_approx(c2a - cs.x) * ds.x : 0.0f;
                    float a1 = s + 1 <= ta ? v1 * exp2_approx(c2a - cs.y) * ds.y : 0.0f;
                    float b0 = s <= ta + 8 ? v2 * exp2_approx(c2b - cs.x) * ds.x : 0.0f;
                    float b1 = s + 1 <= ta + 8 ? v3 * exp2_approx(c2b - cs.y) * ds.y : 0.0f;
                    m[q >> 1][(q & 1) * 2] = pack_bf16x2(a0, a1);
                    m[q >> 1][(q & 1) * 2 + 1] = pack_bf16x2(b0, b1);
                }
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    if (pc + j * 16 >= Pp) break;
                    uint32_t b[4]; /* X rows s, columns p: k × n as stored, so transposed */
                    const bf16 *xp = Xs + (sb + ((lane >> 3) & 1) * 8 + (lane & 7)) * ldx + pc + j * 16 + (lane >> 4) * 8;
                    ldmatrix_x4_trans(b, xp);
                    mma_16816(acc[2 * j], m[0], b[0], b[1]);
                    mma_16816(acc[2 * j + 1], m[0], b[2], b[3]);
                    if (two) {
                        ldmatrix_x4_trans(b, xp + 16 * ldx);
                        mma_16816(acc[2 * j], m[1], b[0], b[1]);
                        mma_16816(acc[2 * j + 1], m[1], b[2], b[3]);
                    }
                }
            }
            /* y = acc + D x, valid rows and channels only */
#pragma unroll
            for (int j = 0; j < 8; j++) {
                int pp = pc + j * 8 + qc;
#pragma unroll
                for (int half = 0; half < 2; half++) {
                    int t = ta + half * 8;
                    if (t >= len || pp >= g.P) continue;
                    float *yr = y + (size_t)(t0 + t) * g.d_in + h * g.P + pp;
                    const bf16 *xr = Xs + t * ldx + pp;
                    float y0 = acc[j][2 * half] + Dh * __bfloat162float(xr[0]);
                    if (pp + 1 >= g.P) yr[0] = y0;
                    else if ((g.P & 1) == 0) *(float2 *)yr = make_float2(y0, acc[j][2 * half + 1] + Dh * __bfloat162float(xr[1]));
                    else yr[0] = y0, yr[1] = acc[j][2 * half + 1] + Dh * __bfloat162float(xr[1]);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ 2'. chunk scan, a group's heads per block */

#define GS_P 64       /* head_dim the kernel takes (the 7B models'); other shapes take the kernel above */
#define GS_N 128      /* d_state it takes */
#define GS_STAGES 3   /* heads in the pipeline: one computed on while the next two are copied in */

/* One pipeline stage in shared memory: what one head adds to the chunk's C and B. */
struct GroupScanStage {
    bf16 *X;    /* [Qp s][GS_P + PAD]   x of the chunk */
    bf16 *S;    /* [GS_P p][GS_N + PAD] the state entering the chunk, S_c */
    float *cum; /* [Qp]  cum_t */
    float *dt;  /* [Qp]  dt_t */
};

__host__ __device__ static inline size_t group_scan_stage_bytes(int Qp) {
    return carve_size((size_t)Qp * (GS_P + PAD) * 2) + carve_size((size_t)GS_P * (GS_N + PAD) * 2) +
           2 * carve_size((size_t)Qp * 4);
}

/* C and B of the chunk first, then the stages. */
__host__ __device__ static inline size_t group_scan_smem(int Qp) {
    return 2 * carve_size((size_t)Qp * (GS_N + PAD) * 2) + GS_STAGES * group_scan_stage_bytes(Qp);
}

__device__ __forceinline__ GroupScanStage group_scan_stage(char *stages, int i, int Qp) {
    char *p = stages + (size_t)i * group_scan_stage_bytes(Qp);
    GroupScanStage st;
    st.X = (bf16 *)carve(p, (size_t)Qp * (GS_P + PAD) * 2);
    st.S = (bf16 *)carve(p, (size_t)GS_P * (GS_N + PAD) * 2);
    st.cum = (float *)carve(p, (size_t)Qp * 4);
    st.dt = (float *)carve(p, (size_t)Qp * 4);
    return st;
}

/* The chunk scan of the kernel above, for P = 64 and N = 128, with the work C·Bᵀ shared by the heads
 * of a group: one block (8 warps) per (chunk, group, slice of the group's heads). C·Bᵀ depends on the
 * chunk and the group only, so the block forms it once, warp w keeping rows t of row block w and
 * every s ≤ t in its accumulators, then walks its heads with each head's x, S_c, cum and dt copied
 * in by cp.async GS_STAGES − 1 heads ahead:
 *   CB[t][s] = C_t · B_s                                    (once per block, registers)
 *   for each head:  acc  = exp(cum_t) · C_t S_cᵀ             (state to output)
 *                   acc += M · X,  M[t][s] = CB[t][s] exp(cum_t − cum_s) dt_s, 0 where s > t
 *                   y_t  = acc + D x_t
 * The kernel above forms C·Bᵀ once per head, half of its tensor work for the 7B's 16 heads a group,
 * and reads x, B, C and S before any of it starts (results/gpu.md). Chunks of at most 128 tokens
 * (8 row blocks, one a warp). */
__global__ void __launch_bounds__(WARPS * 32, 1) ssd_chunk_scan_group_kernel(GpuDims g, const bf16 *xbc, const float *dt,
                                                                          const float *cum, const bf16 *states,
                                                                          const float *D, int T, int heads, float *y) {
    pdl_trigger();
    const int c = blockIdx.x, grp = blockIdx.y, h0 = grp * (g.H / g.G) + blockIdx.z * heads;
    const int t0 = c * g.Q, len = min(g.Q, T - t0), rows = round_up(len, 16), Qp = round_up(g.Q, 16);
    const int ldx = GS_P + PAD, ldn = GS_N + PAD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, qr = lane >> 2, qc = (lane & 3) * 2;
    const int rb = warp, tb = rb * 16, ta = tb + qr; /* the warp's row block; this lane's rows ta, ta + 8 */
    const bool active = tb < rows;
    extern __shared__ __align__(128) char smem[];
    char *p = smem;
    bf16 *Cs = (bf16 *)carve(p, (size_t)Qp * ldn * 2); /* [Qp t][GS_N + PAD] */
    bf16 *Bs = (bf16 *)carve(p, (size_t)Qp * ldn * 2); /* [Qp s][GS_N + PAD] */
    char *stages = p;
    const bf16 *chunk = xbc + (size_t)t0 * g.conv_dim;

    /* 16-byte pieces per thread: rows of 128 columns 16 pieces each (16 rows a pass), of 64 columns 8 (32) */
    const int r16 = threadIdx.x >> 4, k16 = (threadIdx.x & 15) * 8, r8 = threadIdx.x >> 3, k8 = (threadIdx.x & 7) * 8;
    {
        const bf16 *bsrc = chunk + g.d_in + grp * GS_N + k16, *csrc = bsrc + g.G * GS_N;
        for (int r = r16; r < rows; r += 16) {
            size_t off = (size_t)(r < len ? r : 0) * g.conv_dim;
            cp_async16(Bs + r * ldn + k16, bsrc + off, r < len);
            cp_async16(Cs + r * ldn + k16, csrc + off, r < len);
        }
        cp_async_commit();
    }
    /* launched as a programmatic dependent launch after the state walk: B and C (the conv's, which
     * finished before the walk started) are on their way; the entering states are the walk's */
    pdl_wait();
    /* copy head i of the block into its stage (when there is one), and close a group either way */
    auto issue = [&](int i) {
        if (i < heads) {
            GroupScanStage st = group_scan_stage(stages, i % GS_STAGES, Qp);
            const int h = h0 + i;
            const bf16 *xsrc = chunk + h * GS_P + k8, *ssrc = states + ((size_t)c * g.H + h) * GS_P * GS_N + k16;
            for (int r = r8; r < rows; r += 32)
                cp_async16(st.X + r * ldx + k8, xsrc + (size_t)(r < len ? r : 0) * g.conv_dim, r < len);
            for (int r = r16; r < GS_P; r += 16) cp_async16(st.S + r * ldn + k16, ssrc + r * GS_N, true);
            for (int t = threadIdx.x; t < rows; t += blockDim.x) { /* zero past the chunk */
                bool v = t < len;
                size_t i_t = (size_t)h * T + t0 + (v ? t : 0);
                cp_async4(st.cum + t, cum + i_t, v);
                cp_async4(st.dt + t, dt + i_t, v);
            }
        }
        cp_async_commit();
    };
    for (int i = 0; i < GS_STAGES - 1; i++) issue(i);
    cp_async_wait_group<GS_STAGES - 1>(); /* C and B have arrived */
    __syncthreads();

    uint32_t cf[8][4];    /* C rows tb..tb+15 as A fragments, 8 steps of 16 over n */
    float cb[8][2][4];    /* C·Bᵀ, rows ta, ta + 8; s block sb (16 columns), halves of 8: columns 16 sb + 8 half + qc (+1) */
    if (active) {
#pragma unroll
        for (int kk = 0; kk < 8; kk++) ldmatrix_x4(cf[kk], Cs + (tb + (lane & 15)) * ldn + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int sb = 0; sb < 8; sb++) {
#pragma unroll
            for (int r = 0; r < 4; r++) cb[sb][0][r] = cb[sb][1][r] = 0.0f;
            if (sb > rb) continue; /* beyond the diagonal: masked whatever the head */
#pragma unroll
            for (int kk = 0; kk < 8; kk++) {
                uint32_t b[4]; /* Bᵀ: k = n, columns s; B stored [s][n], so as stored */
                ldmatrix_x4(b, Bs + (sb * 16 + (lane >> 4) * 8 + (lane & 7)) * ldn + kk * 16 + ((lane >> 3) & 1) * 8);
                mma_16816(cb[sb][0], cf[kk], b[0], b[1]);
                mma_16816(cb[sb][1], cf[kk], b[2], b[3]);
            }
        }
    }

    for (int i = 0; i < heads; i++) {
        cp_async_wait_group<GS_STAGES - 2>(); /* head i has arrived (only the newer groups may be in flight) */
        __syncthreads();                      /* ... for every thread; and head i − 1's stage is free */
        issue(i + GS_STAGES - 1);
        if (!active) continue;
        const GroupScanStage st = group_scan_stage(stages, i % GS_STAGES, Qp);
        const int h = h0 + i;
        float acc[8][4] = {}; /* y rows ta, ta + 8; columns p = 8 j + qc (+1) */
        /* state to output: C_t · S_cᵀ, then times exp(cum_t) row by row */
#pragma unroll
        for (int kk = 0; kk < 8; kk++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint32_t b[4]; /* Sᵀ: k = n, columns p; S stored [p][n], so as stored */
                ldmatrix_x4(b, st.S + (j * 16 + (lane >> 4) * 8 + (lane & 7)) * ldn + kk * 16 + ((lane >> 3) & 1) * 8);
                mma_16816(acc[2 * j], cf[kk], b[0], b[1]);
                mma_16816(acc[2 * j + 1], cf[kk], b[2], b[3]);
            }
        const float ca = st.cum[ta], cb8 = st.cum[ta + 8];
        const float ea = exp2_approx(ca * LOG2E), eb = exp2_approx(cb8 * LOG2E);
#pragma unroll
        for (int j = 0; j < 8; j++) acc[j][0] *= ea, acc[j][1] *= ea, acc[j][2] *= eb, acc[j][3] *= eb;
        /* the diagonal block and those left of it, 16 columns s at a time */
#pragma unroll
        for (int sb = 0; sb < 8; sb++) {
            if (sb > rb) break;
            uint32_t m[4]; /* M of s block sb as an A fragment */
#pragma unroll
            for (int half = 0; half < 2; half++) {
                const int s = sb * 16 + half * 8 + qc;
                const float2 cs = *(const float2 *)(st.cum + s), ds = *(const float2 *)(st.dt + s);
                const float *v = cb[sb][half];
                float a0 = s <= ta ? v[0] * exp2_approx((ca - cs.x) * LOG2E) * ds.x : 0.0f;
                float a1 = s + 1 <= ta ? v[1] * exp2_approx((ca - cs.y) * LOG2E) * ds.y : 0.0f;
                float b0 = s <= ta + 8 ? v[2] * exp2_approx((cb8 - cs.x) * LOG2E) * ds.x : 0.0f;
                float b1 = s + 1 <= ta + 8 ? v[3] * exp2_approx((cb8 - cs.y) * LOG2E) * ds.y : 0.0f;
                m[half * 2] = pack_bf16x2(a0, a1);
                m[half * 2 + 1] = pack_bf16x2(b0, b1);
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint32_t b[4]; /* X rows s, columns p: k × n as stored, so transposed */
                ldmatrix_x4_trans(b, st.X + (sb * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * ldx + j * 16 + (lane >> 4) * 8);
                mma_16816(acc[2 * j], m, b[0], b[1]);
                mma_16816(acc[2 * j + 1], m, b[2], b[3]);
            }
        }
        /* y = acc + D x, valid rows only */
        const float Dh = D ? D[h] : 0.0f;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int t = ta + half * 8;
            if (t >= len) continue;
            float *yr = y + (size_t)(t0 + t) * g.d_in + h * GS_P + qc;
            const bf16 *xr = st.X + t * ldx + qc;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float2 xv = __bfloat1622float2(*(const __nv_bfloat162 *)(xr + j * 8));
                *(float2 *)(yr + j * 8) = make_float2(acc[j][2 * half] + Dh * xv.x, acc[j][2 * half + 1] + Dh * xv.y);
            }
        }
    }
}

/* ------------------------------------------------------------------ launch */

/* The kernels run chunks of at most GPU_CHUNK tokens whatever the model's chunk_size: the chunked
 * form gives the same result for any chunk length (ref/ssd.c tests this), and at 128 a chunk's x, B,
 * C and state take 105 KB of shared memory instead of 196 KB, so two blocks share a multiprocessor,
 * and the causal (quadratic) part of the work halves. */
#define GPU_CHUNK 128
static GpuDims gpu_chunking(const GpuDims &g) {
    GpuDims c = g;
    c.Q = g.Q < GPU_CHUNK ? g.Q : GPU_CHUNK;
    return c;
}

size_t ssd_work_bytes(const GpuDims &model, int T) {
    GpuDims g = gpu_chunking(model);
    size_t nc = (T + g.Q - 1) / g.Q;
    return 2 * carve_size((size_t)g.H * T * 4) + carve_size(nc * g.H * 4) + carve_size(nc * g.H * g.P * g.N * 2) + 256;
}

SSDWork ssd_work_carve(const GpuDims &model, int T, void *base) {
    GpuDims g = gpu_chunking(model);
    size_t nc = (T + g.Q - 1) / g.Q;
    char *p = (char *)(((uintptr_t)base + 255) & ~(uintptr_t)255);
    SSDWork w;
    w.cum = (float *)p;
    p += carve_size((size_t)g.H * T * 4);
    w.wts = (float *)p;
    p += carve_size((size_t)g.H * T * 4);
    w.chunk_decay = (float *)p;
    p += carve_size(nc * g.H * 4);
    w.states = (bf16 *)p;
    return w;
}

/* Dynamic shared memory of the two matrix kernels for a full chunk (the carves above, in order). */
static size_t chain_smem(const GpuDims &g, int NB) { return CHAIN_STAGES * chain_stage_bytes(round_up(g.Q, 16), NB); }
static size_t scan_smem(const GpuDims &g, int c_in_smem) {
    size_t Qp = round_up(g.Q, 16), Pp = round_up(g.P, 16), Np = round_up(g.N, 16);
    return carve_size(Qp * (Pp + PAD) * 2) + carve_size(Qp * (Np + PAD) * 2) + carve_size(Pp * (Np + PAD) * 2) +
           2 * carve_size(Qp * 4) + (c_in_smem ? carve_size(Qp * (Np + PAD) * 2) : 0);
}

/* C goes to shared memory beside B when both fit (P = 64, N = 128, Q = 128: 105 KB). */
static int scan_c_in_smem(const GpuDims &g) { return scan_smem(g, 1) <= SMEM_MAX; }

int ssd_chunked_supported(const GpuDims &model) {
    GpuDims g = gpu_chunking(model);
    return g.Q >= 1 && g.Q <= MAX_Q && g.N <= 256 && chain_smem(g, 128) <= SMEM_MAX && scan_smem(g, 0) <= SMEM_MAX;
}

/* The chunk scan with C held in NKS registers steps of 16 over N (the next power of two ≥ N/16). */
template <int NKS>
static void launch_scan(const GpuDims &g, int nc, const bf16 *xbc, const float *dt, const float *cum,
                        const bf16 *states, const float *D, int T, float *y, cudaStream_t s) {
    static bool attr_set = false;
    if (!attr_set) { /* more than 48 KB of dynamic shared memory */
        cudaFuncSetAttribute(ssd_chunk_scan_kernel<NKS>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
        attr_set = true;
    }
    int c_in_smem = scan_c_in_smem(g);
    ssd_chunk_scan_kernel<NKS><<<dim3(nc, g.H), WARPS * 32, scan_smem(g, c_in_smem), s>>>(g, xbc, dt, cum, states, D, T,
                                                                                          c_in_smem, y);
}

/* Whether the group scan takes the shape: P = 64, N = 128, chunks of at most one row block of 16
 * tokens a warp, and 16-byte aligned rows of xBC. */
static bool group_scan_fits(const GpuDims &g, const bf16 *xbc) {
    return g.P == GS_P && g.N == GS_N && g.Q <= WARPS * 16 && g.conv_dim % 8 == 0 && ((uintptr_t)xbc & 15) == 0;
}

/* Blocks a multiprocessor the group scan's slicing aims at (ssd_scan_set_waves()): 2 unless asked. */
static int scan_waves = 2;

void ssd_scan_set_waves(int waves) { scan_waves = waves == 1 ? 1 : 2; }

/* The group scan: one block per (chunk, group, slice of the group's heads). A block takes 176 KB of
 * shared memory, so one fits a multiprocessor: the group's heads are halved until there are
 * scan_waves blocks a multiprocessor (or two heads a block); every slice but the last recomputes C·Bᵀ. */
static void launch_group_scan(const GpuDims &g, int nc, const bf16 *xbc, const float *dt, const float *cum,
                              const bf16 *states, const float *D, int T, float *y, cudaStream_t s) {
    static bool attr_set = false;
    if (!attr_set) { /* more than 48 KB of dynamic shared memory */
        cudaFuncSetAttribute(ssd_chunk_scan_group_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
        attr_set = true;
    }
    int heads = g.H / g.G;
    while ((size_t)nc * g.G * (g.H / g.G / heads) < (size_t)scan_waves * gpu_sm_count() && heads % 2 == 0 && heads > 2)
        heads /= 2;
    dim3 grid(nc, g.G, g.H / g.G / heads);
    launch_pdl(ssd_chunk_scan_group_kernel, grid, dim3(WARPS * 32), group_scan_smem(round_up(g.Q, 16)), s, g, xbc, dt,
               cum, states, D, T, heads, y);
}

/* The state walk's block width in columns n (CHAIN_WARPS()): 128 unless ssd_walk_set_cols() asked for 64. */
static int walk_cols = 128;

void ssd_walk_set_cols(int n) { walk_cols = n == 64 ? 64 : 128; }

/* Chunk states and state passing: one block per (head, 64 rows p, NB columns n). */
template <typename S, bool FULL, int NB>
static void launch_chain(const GpuDims &g, const bf16 *xbc, const SSDWork &w, int T, S *ssm, cudaStream_t s) {
    static bool attr_set = false;
    if (!attr_set) { /* more than 48 KB of dynamic shared memory */
        cudaFuncSetAttribute(ssd_state_chain_kernel<S, FULL, NB>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
        attr_set = true;
    }
    dim3 grid(g.H, (round_up(g.P, 16) + CHAIN_P - 1) / CHAIN_P, (round_up(g.N, 16) + NB - 1) / NB);
    ssd_state_chain_kernel<S, FULL, NB>
        <<<grid, CHAIN_WARPS(NB) * 32, chain_smem(g, NB), s>>>(g, xbc, w.wts, w.chunk_decay, T, w.states, ssm);
}

/* launch_chain() for the state's type, with FULL where the shape allows it. */
template <int NB>
static void launch_chain_of(const GpuDims &g, const bf16 *xbc, const SSDWork &w, int T, void *ssm, int ssm_bf16,
                            cudaStream_t s) {
    bool full = g.P % CHAIN_P == 0 && g.N % NB == 0 && g.conv_dim % 8 == 0;
    if (ssm_bf16 && full) launch_chain<bf16, true, NB>(g, xbc, w, T, (bf16 *)ssm, s);
    else if (ssm_bf16) launch_chain<bf16, false, NB>(g, xbc, w, T, (bf16 *)ssm, s);
    else if (full) launch_chain<float, true, NB>(g, xbc, w, T, (float *)ssm, s);
    else launch_chain<float, false, NB>(g, xbc, w, T, (float *)ssm, s);
}

void launch_ssd_cumsum(const GpuDims &model, const float *dt, const float *A, int T, SSDWork w, cudaStream_t s) {
    GpuDims g = gpu_chunking(model);
    int nc = (T + g.Q - 1) / g.Q;
    ssd_cumsum_kernel<<<dim3(nc, g.H), 32, 0, s>>>(dt, A, T, g.Q, w.cum, w.wts, w.chunk_decay);
}

void launch_ssd_chunk_kernels(const GpuDims &model, const bf16 *xbc, const float *dt, const float *D, int T,
                              void *ssm_state, int ssm_bf16, SSDWork w, float *y, cudaStream_t s, cudaEvent_t *marks) {
    GpuDims g = gpu_chunking(model);
    int nc = (T + g.Q - 1) / g.Q, nks = round_up(g.N, 16) / 16;
    if (walk_cols == 64) launch_chain_of<64>(g, xbc, w, T, ssm_state, ssm_bf16, s);
    else launch_chain_of<128>(g, xbc, w, T, ssm_state, ssm_bf16, s);
    if (marks) cudaEventRecord(marks[0], s);
    if (group_scan_fits(g, xbc)) launch_group_scan(g, nc, xbc, dt, w.cum, w.states, D, T, y, s);
    else if (nks <= 1) launch_scan<1>(g, nc, xbc, dt, w.cum, w.states, D, T, y, s);
    else if (nks <= 2) launch_scan<2>(g, nc, xbc, dt, w.cum, w.states, D, T, y, s);
    else if (nks <= 4) launch_scan<4>(g, nc, xbc, dt, w.cum, w.states, D, T, y, s);
    else if (nks <= 8) launch_scan<8>(g, nc, xbc, dt, w.cum, w.states, D, T, y, s);
    else launch_scan<16>(g, nc, xbc, dt, w.cum, w.states, D, T, y, s);
    if (marks) cudaEventRecord(marks[1], s);
}

void launch_ssd_chunked(const GpuDims &g, const bf16 *xbc, const float *dt, const float *A, const float *D, int T,
                        void *ssm_state, int ssm_bf16, SSDWork w, float *y, cudaStream_t s, cudaEvent_t *marks) {
    if (marks) cudaEventRecord(marks[0], s);
    launch_ssd_cumsum(g, dt, A, T, w, s);
    if (marks) cudaEventRecord(marks[1], s);
    launch_ssd_chunk_kernels(g, xbc, dt, D, T, ssm_state, ssm_bf16, w, y, s, marks ? marks + 2 : NULL);
}
