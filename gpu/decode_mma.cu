/**
 * @file decode_mma.cu
 * @brief The decode GEMV of 5 to 64 sequences on tensor cores, with the prologue norms and the
 *        epilogues of decode.cu's GEMV fused in:
 *
 *     out[n][r] = Σ_k W[r][k] · X[n][k]        W [rows, K] bf16 (weights), X [nb, K] bf16 (inputs)
 *
 * A decode step of a few dozen sequences is still memory-bound: each weight byte is read once and
 * used nb times. At 64 sequences and the full memory speed that is about 600 multiply-adds per
 * multiprocessor clock, beyond the CUDA cores, so the products run on mma.sync (bf16 operands,
 * fp32 accumulation; the activations are rounded to bf16 once, as cuBLAS' path did).
 *
 * Shape:
 *  - a warp owns MT m-tiles of 16 rows and all NT·8 columns (sequences, padded with zeros); a block
 *    of 8 warps owns R = 128·MT rows;
 *  - the weights go from global memory straight into the mma's A registers, 16-byte loads, one
 *    chunk of MMA_SPC steps of 32 columns in flight per lane while the previous chunk is multiplied;
 *  - X, the same for every row, is staged once per block in shared memory (cp.async, MMA_STAGES
 *    chunks of MMA_KC columns in flight): per block X costs NB·K·2 bytes of L2 traffic against
 *    R·K·2 of weights;
 *  - a cluster of KS blocks splits K where the rows alone give too few blocks (out_proj: 4,096 rows,
 *    32 blocks of 128); the partial tiles meet in distributed shared memory and each block of the
 *    cluster sums and finishes R/KS of the rows.
 *
 * k order inside a step of 32 columns: lane (g, t) (g = lane/4, t = lane%4) loads the 16 bytes of
 * columns 32s + 8t .. 32s + 8t + 7 of rows g and g + 8, and the two mma of the step take elements
 * 0-3 and 4-7 of them as their k = 2t, 2t+1, 2t+8, 2t+9 (mma_bf16.cuh's A layout). X's fragments
 * (b0 = k 2t..2t+1, b1 = k 2t+8..2t+9 of column n = g) come from the same 16 bytes of X's row n, so
 * every product pairs the same column k of W and X: the sums are the GEMV's, in another order.
 */
#include <cooperative_groups.h>

#include "decode.cuh"
#include "mma_bf16.cuh"

namespace cg = cooperative_groups;

#define MMA_WARPS 8
#define MMA_THREADS (MMA_WARPS * 32)
#define MMA_KC 128                /* X columns staged per chunk */
#define MMA_SPC (MMA_KC / 32)     /* steps of 32 columns per chunk */
#define MMA_PIECES (MMA_KC / 8)   /* 16-byte pieces per staged row */
#define MMA_STAGES 4              /* X chunks in flight */
#ifndef MMA_IN_MT
#define MMA_IN_MT 1 /* m-tiles per warp for the RMSNorm GEMVs (in_proj, lm_head); out_proj always 1 */
#endif

/* Sizes of one block shape. */
template <int NT, int MT> struct MmaShape {
    static constexpr int NBP = NT * 8;            /* sequences padded to whole n-tiles */
    static constexpr int R = MMA_WARPS * 16 * MT; /* rows per block */
    /* row stride of the partial tile [NBP][LD] in floats: LD ≡ 4 (mod 32) puts the accumulator
     * stores of a warp (rows g, columns 2t, 2t+1) in 32 different banks */
    static constexpr int LD = R + 4;
    static constexpr size_t XBYTES = (size_t)MMA_STAGES * NBP * MMA_KC * 2;
    static constexpr size_t TBYTES = (size_t)NBP * LD * 4;
    static constexpr size_t SMEM = XBYTES > TBYTES ? XBYTES : TBYTES;
};

/* Where piece q (16 bytes, columns 8q..8q+7 of the chunk) of staged row n lies: odd rows have their
 * pieces' bit 2 flipped, so that the two rows one 8-lane phase of a 16-byte shared load reads
 * (n = 2i, 2i+1, pieces 4s'+t) fall in different halves of the 32 banks. */
__device__ __forceinline__ int x_piece(int n, int q) { return n * MMA_PIECES + (q ^ ((n & 1) << 2)); }

/* The in_proj epilogue of row r for the lane's sequences n = warp + 8j, v[j] their finished values:
 * z rows stored; xBC rows through the conv step (K = 4: the three state values of every sequence
 * loaded at once, then the outputs; other widths through inproj_tail); dt rows through softplus. */
template <int NT>
__device__ __forceinline__ void mma_inproj_rows(const GemvArgs &a, int r, const float (&v)[NT], int warp) {
    const GpuDims &g = a.dims;
    if (r < g.d_in) {
#pragma unroll
        for (int j = 0; j < NT; j++)
            if (warp + 8 * j < a.nb) a.out[(size_t)(warp + 8 * j) * a.rows + r] = v[j];
        return;
    }
    const int c = r - g.d_in;
    if (c < g.conv_dim && g.K == 4) {
        const float *wc = a.layer.conv_w + (size_t)c * 4;
        const float w0 = wc[0], w1 = wc[1], w2 = wc[2], w3 = wc[3], bias = a.layer.conv_b[c];
        float st[NT][3];
#pragma unroll
        for (int j = 0; j < NT; j++)
            if (warp + 8 * j < a.nb) {
                const float *p = conv_state_of(a, warp + 8 * j, c);
                st[j][0] = p[0], st[j][1] = p[1], st[j][2] = p[2];
            }
#pragma unroll
        for (int j = 0; j < NT; j++)
            if (warp + 8 * j < a.nb) {
                const int n = warp + 8 * j;
                float *p = conv_state_of(a, n, c);
                const float acc = bias + w0 * st[j][0] + w1 * st[j][1] + w2 * st[j][2] + w3 * v[j];
                p[0] = st[j][1], p[1] = st[j][2], p[2] = v[j];
                a.xbc[(size_t)n * g.conv_dim + c] = silu_f(acc);
            }
        return;
    }
#pragma unroll
    for (int j = 0; j < NT; j++)
        if (warp + 8 * j < a.nb) inproj_tail(a, warp + 8 * j, r, v[j], NULL);
}

/* Ask L2 for what this block's epilogue will read, rows [r_lo, r_hi) (cannot change a result, so it
 * may run before the wait for the previous kernel): in_proj's conv states, out_proj's residual rows. */
template <int EPI> __device__ __forceinline__ void mma_prefetch_epilogue(const GemvArgs &a, int r_lo, int r_hi) {
    r_hi = min(r_hi, a.rows);
    if (EPI == EPI_INPROJ) {
        const GpuDims &g = a.dims;
        const int c_lo = max(r_lo - g.d_in, 0), c_hi = min(r_hi - g.d_in, g.conv_dim);
        if (c_lo >= c_hi) return;
        const int lines = ((c_hi - c_lo) * (g.K - 1) * 4 + 127) / 128 + 1;
        for (int i = threadIdx.x; i < lines * a.nb; i += blockDim.x) {
            const char *p = (const char *)conv_state_of(a, i / lines, c_lo) + (size_t)(i % lines) * 128;
            asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
        }
    } else if (EPI == EPI_RESIDUAL) {
        if (r_lo >= r_hi) return;
        const int lines = ((r_hi - r_lo) * 4 + 127) / 128 + 1;
        for (int i = threadIdx.x; i < lines * a.nb; i += blockDim.x) {
            const char *p = (const char *)(a.out + (size_t)(i / lines) * a.rows + r_lo) + (size_t)(i % lines) * 128;
            asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
        }
    }
}

template <int NT, int MT, int PRO, int EPI>
__global__ void __launch_bounds__(MMA_THREADS, MT == 1 ? 2 : 1) mma_gemv_kernel(GemvArgs a, int ks) {
    using Sh = MmaShape<NT, MT>;
    extern __shared__ __align__(16) char mma_smem[];
    bf16 *xs = (bf16 *)mma_smem;     /* [MMA_STAGES][NBP · MMA_PIECES] pieces of X (x_piece) */
    float *tile = (float *)mma_smem; /* after the product: [NBP][LD], this block's partial sums */
    pdl_trigger();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int K = a.cols, nb = a.nb, rank = blockIdx.x % ks, r0 = blockIdx.x / ks * Sh::R;
    const int nchunks = (K + MMA_KC - 1) / MMA_KC, c_begin = nchunks * rank / ks, c_end = nchunks * (rank + 1) / ks;
    const int s_end = min(c_end * MMA_SPC, (K + 31) / 32); /* this block's steps: [c_begin·MMA_SPC, s_end) */
    const int e0 = Sh::R * rank / ks, e1 = Sh::R * (rank + 1) / ks; /* the rows this block finishes */

    /* the lane's weights: m-tile mt, half h is row r0 + (warp·MT + mt)·16 + 8h + g, its 16 bytes
     * of step s at wrow + 4s */
    const uint4 *wrow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++)
            wrow[mt][h] = (const uint4 *)(a.W + (size_t)min(r0 + (warp * MT + mt) * 16 + 8 * h + g, a.rows - 1) * K) + t;
    uint4 w[MMA_SPC][MT][2]; /* one chunk of steps */
    auto load_w = [&](int s, uint4(&ws)[MT][2]) {
        const bool ok = s < s_end && 32 * s + 8 * t < K;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) ws[mt][h] = ok ? __ldcs(wrow[mt][h] + 4 * s) : make_uint4(0, 0, 0, 0);
    };
#pragma unroll
    for (int i = 0; i < MMA_SPC; i++) load_w(c_begin * MMA_SPC + i, w[i]);
    mma_prefetch_epilogue<EPI>(a, r0 + e0, r0 + e1);
    pdl_wait(); /* X, and the norms' sums of squares, come from the previous kernel */

    auto stage_x = [&](int c) { /* chunk c of X into its stage; zeros past nb and K */
        if (c < c_end) {
            bf16 *dst = xs + (size_t)(c % MMA_STAGES) * Sh::NBP * MMA_KC;
            for (int i = threadIdx.x; i < Sh::NBP * MMA_PIECES; i += MMA_THREADS) {
                const int n = i / MMA_PIECES, q = i % MMA_PIECES, k = c * MMA_KC + 8 * q;
                const bool ok = n < nb && k < K;
                cp_async16(dst + 8 * x_piece(n, q), ok ? a.xb + (size_t)n * K + k : a.xb, ok);
            }
        }
        cp_async_commit(); /* one group per chunk, empty or not, for the wait's count */
    };
#pragma unroll
    for (int j = 0; j < MMA_STAGES - 1; j++) stage_x(c_begin + j);

    /* acc: the finished sums; with the grouped norm, part holds the current group's, which is
     * folded into acc with the group's scale s = rsqrt(Σ_group y²/gs + eps) at its last step
     * (a step of 32 columns lies inside one group) */
    float acc[MT][NT][4], part[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mt][nt][e] = 0, part[mt][nt][e] = 0;
    const int gs = PRO == PRO_GATEDNORM ? K / a.groups : K;
    const float inv_gs = 1.0f / gs;
    auto fold = [&](int grp) {
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            float sc[2];
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int n = nt * 8 + 2 * t + e;
                sc[e] = n < nb ? rsqrtf(a.ss_in[n * a.groups + grp] * inv_gs + a.eps) : 0.0f;
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[mt][nt][e] += sc[e & 1] * part[mt][nt][e], part[mt][nt][e] = 0;
        }
    };

    for (int c = c_begin; c < c_end; c++) {
        cp_async_wait_group<MMA_STAGES - 2>(); /* chunk c has landed (this thread's pieces) ... */
        __syncthreads();                        /* ... everyone's, and everyone is done with chunk c − 1 */
        stage_x(c + MMA_STAGES - 1);            /* into chunk c − 1's stage */
        const bf16 *xc = xs + (size_t)(c % MMA_STAGES) * Sh::NBP * MMA_KC;
#pragma unroll
        for (int i = 0; i < MMA_SPC; i++) {
            const int s = c * MMA_SPC + i;
            if (s < s_end) {
                float(&dst)[MT][NT][4] = PRO == PRO_GATEDNORM ? part : acc;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const uint4 xv = *(const uint4 *)(xc + 8 * x_piece(nt * 8 + g, 4 * i + t));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        const uint4 lo = w[i][mt][0], hi = w[i][mt][1]; /* rows g, g + 8 */
                        const uint32_t a0[4] = {lo.x, hi.x, lo.y, hi.y}, a1[4] = {lo.z, hi.z, lo.w, hi.w};
                        mma_16816(dst[mt][nt], a0, xv.x, xv.y);
                        mma_16816(dst[mt][nt], a1, xv.z, xv.w);
                    }
                }
                if (PRO == PRO_GATEDNORM && ((s + 1) * 32 % gs == 0 || s + 1 == s_end)) fold(s * 32 / gs);
            }
            load_w((c + 1) * MMA_SPC + i, w[i]); /* the same step of the next chunk */
        }
    }
    cp_async_wait_all();
    __syncthreads(); /* the X stages are free: the tile takes their place */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                tile[(nt * 8 + 2 * t + (e & 1)) * Sh::LD + (warp * MT + mt) * 16 + g + 8 * (e >> 1)] = acc[mt][nt][e];
    if (ks > 1) {
        /* The cluster's sums of rows [e0, e1), in rank order, into this block's own tile (no other
         * block reads those rows of it): 4 rows a load, every rank's loads in flight at once. */
        cg::cluster_group cluster = cg::this_cluster();
        cluster.sync(); /* every block's partial tile is written and visible */
        const int quads = (e1 - e0) / 4;
        for (int i = threadIdx.x; i < Sh::NBP * quads; i += MMA_THREADS) {
            const int off = i / quads * Sh::LD + e0 + 4 * (i % quads);
            float4 v[8];
#pragma unroll
            for (int q = 0; q < 8; q++)
                if (q < ks) v[q] = *(const float4 *)(cluster.map_shared_rank(tile, q) + off);
            float4 sum = v[0];
#pragma unroll
            for (int q = 1; q < 8; q++)
                if (q < ks) sum.x += v[q].x, sum.y += v[q].y, sum.z += v[q].z, sum.w += v[q].w;
            *(float4 *)(tile + off) = sum;
        }
        cluster.sync(); /* the other blocks are done reading this one's tile (and it may exit after) */
    } else
        __syncthreads();

    /* Finish rows [e0, e1) of the tile: lane (warp, lane) takes rows e0 + lane + 32i and the
     * sequences n = warp + 8j (so that a warp's stores are consecutive rows of one sequence). */
    float sc[NT], sq[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int n = warp + 8 * j;
        sc[j] = PRO == PRO_RMSNORM && n < nb ? rsqrtf(a.ss_in[n] * (1.0f / K) + a.eps) : 1.0f;
        sq[j] = 0;
    }
    for (int rl = e0 + lane; rl < e1; rl += 32) {
        const int r = r0 + rl;
        if (r >= a.rows) break;
        float v[NT];
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int n = warp + 8 * j;
            v[j] = n < nb ? tile[n * Sh::LD + rl] * sc[j] : 0.0f;
        }
        if (EPI == EPI_STORE) {
#pragma unroll
            for (int j = 0; j < NT; j++)
                if (warp + 8 * j < nb) a.out[(size_t)(warp + 8 * j) * a.rows + r] = v[j];
        } else if (EPI == EPI_RESIDUAL) { /* h ← h + W_out y; the next norm's input h·w in bf16; Σ h² */
            float hv[NT];
            const float nw = a.xwb_out ? a.next_w[r] : 0.0f;
#pragma unroll
            for (int j = 0; j < NT; j++) hv[j] = warp + 8 * j < nb ? a.out[(size_t)(warp + 8 * j) * a.rows + r] : 0.0f;
#pragma unroll
            for (int j = 0; j < NT; j++)
                if (warp + 8 * j < nb) {
                    const size_t i = (size_t)(warp + 8 * j) * a.rows + r;
                    const float hn = hv[j] + v[j];
                    a.out[i] = hn;
                    if (a.xwb_out) a.xwb_out[i] = __float2bfloat16(hn * nw);
                    sq[j] += hn * hn;
                }
        } else
            mma_inproj_rows<NT>(a, r, v, warp);
    }
    if (EPI == EPI_RESIDUAL && a.ss_out)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const float s = warp_sum(sq[j]);
            if (lane == 0 && warp + 8 * j < nb) atomicAdd(&a.ss_out[warp + 8 * j], s);
        }
}

/* ------------------------------------------------------------------ launch */

/* Launch one shape; with prepare, only raise the kernel's shared-memory limit (beyond 48 KB it must
 * be asked for, which mma_gemv_prepare() does for every shape before any launch is captured). */
template <int NT, int MT, int PRO, int EPI>
static void launch_mma_shape(const GemvArgs &a, int ks, cudaStream_t s, bool prepare) {
    using Sh = MmaShape<NT, MT>;
    void (*kern)(GemvArgs, int) = mma_gemv_kernel<NT, MT, PRO, EPI>;
    if (prepare) {
        cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Sh::SMEM);
        return;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((a.rows + Sh::R - 1) / Sh::R * ks), cfg.blockDim = dim3(MMA_THREADS);
    cfg.dynamicSmemBytes = Sh::SMEM, cfg.stream = s;
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    attr[1].id = cudaLaunchAttributeClusterDimension;
    attr[1].val.clusterDim.x = ks, attr[1].val.clusterDim.y = 1, attr[1].val.clusterDim.z = 1;
    cfg.attrs = attr, cfg.numAttrs = ks > 1 ? 2 : 1;
    cudaLaunchKernelEx(&cfg, kern, a, ks);
}

template <int NT, int PRO, int EPI>
static void launch_mma_nt(const GemvArgs &a, int mt, int ks, cudaStream_t s, bool prepare) {
    if constexpr (PRO != PRO_GATEDNORM) /* the grouped norm's second set of sums leaves no room for 2 */
        if (mt == 2) return launch_mma_shape<NT, 2, PRO, EPI>(a, ks, s, prepare);
    launch_mma_shape<NT, 1, PRO, EPI>(a, ks, s, prepare);
}

template <int PRO, int EPI> static void launch_mma_pe(const GemvArgs &a, int mt, int ks, cudaStream_t s, bool prepare) {
    if (a.nb <= 8) launch_mma_nt<1, PRO, EPI>(a, mt, ks, s, prepare);
    else if (a.nb <= 16) launch_mma_nt<2, PRO, EPI>(a, mt, ks, s, prepare);
    else if (a.nb <= 32) launch_mma_nt<4, PRO, EPI>(a, mt, ks, s, prepare);
    else launch_mma_nt<8, PRO, EPI>(a, mt, ks, s, prepare);
}

static void mma_dispatch(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, int mt, int ks, cudaStream_t s, bool prepare) {
    if (pro == PRO_RMSNORM && epi == EPI_INPROJ) launch_mma_pe<PRO_RMSNORM, EPI_INPROJ>(a, mt, ks, s, prepare);
    else if (pro == PRO_GATEDNORM && epi == EPI_RESIDUAL) launch_mma_pe<PRO_GATEDNORM, EPI_RESIDUAL>(a, mt, ks, s, prepare);
    else if (pro == PRO_RMSNORM && epi == EPI_STORE) launch_mma_pe<PRO_RMSNORM, EPI_STORE>(a, mt, ks, s, prepare);
    else if (pro == PRO_GATEDNORM && epi == EPI_STORE) launch_mma_pe<PRO_GATEDNORM, EPI_STORE>(a, mt, ks, s, prepare);
    else launch_mma_pe<PRO_NONE, EPI_STORE>(a, mt, ks, s, prepare);
}

int mma_gemv_supported(int cols, int groups) {
    return cols % 8 == 0 && (groups <= 0 || (cols % groups == 0 && (cols / groups) % 32 == 0));
}

void mma_gemv_prepare(void) {
    static bool done = false;
    if (done) return;
    const GemvPrologue pros[5] = {PRO_RMSNORM, PRO_GATEDNORM, PRO_RMSNORM, PRO_GATEDNORM, PRO_NONE};
    const GemvEpilogue epis[5] = {EPI_INPROJ, EPI_RESIDUAL, EPI_STORE, EPI_STORE, EPI_STORE};
    GemvArgs a = {};
    for (int k = 0; k < 5; k++)
        for (int nb = 8; nb <= 64; nb *= 2)
            for (int mt = 1; mt <= 2; mt++) a.nb = nb, mma_dispatch(pros[k], epis[k], a, mt, 1, 0, true);
    done = true;
}

/* Default shape: MMA_IN_MT m-tiles per warp (1 under the grouped norm); then the largest cluster of
 * KS blocks (a power of two, at most 8) that keeps every block resident at once: row tiles × KS at
 * most the multiprocessors × the blocks each holds (2 at MT = 1, 1 at MT = 2). A memory-bound grid
 * that fits in one wave shares the bandwidth evenly and finishes together; a second, partial wave
 * would run at the speed of its few blocks. */
static void mma_default_shape(GemvPrologue pro, const GemvArgs &a, int &mt, int &ks) {
    if (mt <= 0) mt = MMA_IN_MT;
    if (pro == PRO_GATEDNORM) mt = 1;
    const int tiles = (a.rows + 128 * mt - 1) / (128 * mt), nchunks = (a.cols + MMA_KC - 1) / MMA_KC;
    if (ks <= 0) {
        const int slots = gpu_sm_count() * (mt == 1 ? 2 : 1);
        ks = 1;
        while (ks < 8 && tiles * ks * 2 <= slots && 2 * ks <= nchunks) ks *= 2;
    }
    int p2 = 1; /* a power of two (so that each block finishes a whole number of 4-row groups), at most 8 and the chunks */
    while (p2 * 2 <= ks && p2 * 2 <= 8 && p2 * 2 <= nchunks) p2 *= 2;
    ks = p2;
}

void launch_mma_gemv(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, int mt, int ks, cudaStream_t s) {
    mma_default_shape(pro, a, mt, ks);
    mma_dispatch(pro, epi, a, mt, ks, s, false);
}
