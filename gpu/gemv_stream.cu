/**
 * @file gemv_stream.cu
 * @brief The decode GEMV with the weights streamed through shared memory by the bulk copy engine:
 *        a persistent grid, the inputs prepared once per block. For q8 weights (the dp4a product)
 *        and bf16 weights.
 *
 * The products are gemv.cuh's, with the same prologues and epilogues:
 *
 *   bf16:  out[b][r] = s_b · Σ_c W[r][c] · x'[b][c]
 *   q8:    out[b][r] = s_b/127 · Σ_k d[r][k / 2] · e[b][k] · Σ_{c in block k} q[r][c] · p[b][c],
 *          e[b][k] = max_{c in block k} |x'[b][c]|,   p[b][c] = rint(x'[b][c] · 127 / e[b][k]) for c in block k,
 *          over the input blocks k of 32 columns (the weights' scale d covers 64, two of them),
 *
 * x' the input with the grouped norm's scale (PRO_GATEDNORM: folded into x' for bf16, into e for
 * q8, as it multiplies a whole block alike) and s_b RMSNorm's (PRO_RMSNORM: on the finished row).
 *
 * What differs from gemv.cuh's kernel is where the bytes wait. There, each block of 4 to 16 rows
 * loads its rows into registers, so a block's loads are in flight only between its start and its
 * first use, and every block prepares its inputs again (q8: rounds each 16-input chunk to int8).
 * Here:
 *  - a persistent grid (gs_budget(): two blocks per multiprocessor by default) whose blocks each
 *    take a contiguous range of rows (the ranges differ by at most a row), in groups of GS_ROWS = 8
 *    rows, one row a warp;
 *  - one thread asks the bulk copy engine for each group (the rows' weights, and for q8 their
 *    scales: contiguous runs of bytes, the scales' from the 16-byte boundary at or below the group's
 *    first one, see scale_lead()) into one of `stages` shared-memory buffers, as many groups
 *    ahead as there are buffers; the first ones before the wait for the previous kernel (the
 *    weights are constant), so that the copies run while that kernel finishes;
 *  - the inputs are prepared once per block, into shared memory, after that wait;
 *  - a warp's lanes each take 16 bytes of the row at a time (a warp reads 512 contiguous bytes of
 *    the buffer, and 16-byte pieces of the inputs at a 16-byte stride: no bank conflicts), then a
 *    shuffle sum; lane b finishes row r of sequence b with gemv.cuh's epilogue (finish_row()), its
 *    inputs copied by cp.async a group ahead (epilogue_prefetch(), two slots a lane), so that their
 *    round trip to memory overlaps the group before rather than following each group's product.
 * A buffer is refilled once every warp is done with it (a barrier a group).
 */
#include <cuda_fp16.h>

#include <algorithm>
#include <stdlib.h>

#include "bulk_copy.cuh"
#include "gemv.cuh"

#define GS_WARPS 8
#define GS_THREADS (GS_WARPS * 32)
#define GS_ROWS GS_WARPS /* rows a group: one a warp */
#define GS_MAX_STAGES 8

/** Bytes of one row's weights and of its scales (q8: one half per 64 columns), for @p wf over @p cols
 *  (Kq for q8). */
__host__ __device__ static unsigned row_bytes(int wf, int cols) { return wf == GEMV_BF16 ? 2u * cols : (unsigned)cols; }
__host__ __device__ static unsigned scale_bytes(int wf, int cols) {
    return wf == GEMV_BF16 ? 0u : (unsigned)(cols / Q8_SCALE_BLOCK) * 2u;
}
/** q8: where the bulk copy of a row group's scales starts, in bytes before the group's first scale
 *  (row @p r0, rows of @p drow bytes of scales): the 16-byte boundary at or below it, as the copy
 *  engine needs. With rows of whole 256-column pieces (gemv_stream_takes()) drow is a multiple of 8,
 *  so the lead is 0 or 8. */
__host__ __device__ static unsigned scale_lead(int r0, unsigned drow) { return (unsigned)(((size_t)r0 * drow) & 15); }
/** q8: bytes of one stage's scale buffer: GS_ROWS rows' scales and the copy's lead and tail, which
 *  round its start down and its end up to 16 bytes (lead ≤ 8 and GS_ROWS · drow a multiple of 64:
 *  at most 16 bytes more). */
__host__ __device__ static unsigned scale_stage_bytes(int wf, int cols) {
    return wf == GEMV_BF16 ? 0u : GS_ROWS * scale_bytes(wf, cols) + 16u;
}

/** Where each part of the block's dynamic shared memory starts (bytes). */
struct GsLayout {
    int stages;                  /**< buffers of GS_ROWS rows */
    unsigned w, d;               /**< [stages][GS_ROWS] rows of weights; q8: [stages][scale_stage_bytes()] fp16 scales,
                                      each stage from its copy's lead on GS_ROWS rows of cols / 64 */
    unsigned x, xs;              /**< the inputs: bf16 [nb][2][cols / 8][4] fp32 (see the kernel); q8 [nb][cols] int8, and [nb][cols / 32] e */
    unsigned epi, sq, bar;       /**< [GS_WARPS][2][nb][EPI_SLOT] epilogue inputs (two groups' rows); [GS_WARPS][nb] Σ h²; [stages] mbarriers */
    unsigned total;
};

static GsLayout gs_layout(GemvWeights wf, int cols, int nb, int stages) {
    GsLayout L;
    L.stages = stages;
    unsigned o = 0;
    L.w = o, o += (unsigned)stages * GS_ROWS * row_bytes(wf, cols);
    L.d = o, o += (unsigned)stages * scale_stage_bytes(wf, cols);
    L.x = o = round_up(o, 128), o += (unsigned)nb * cols * (wf == GEMV_BF16 ? 4 : 1);
    L.xs = o = round_up(o, 16), o += wf == GEMV_BF16 ? 0u : (unsigned)nb * (cols / Q8_XBLOCK) * 4;
    L.epi = o = round_up(o, 16), o += (unsigned)GS_WARPS * 2 * nb * EPI_SLOT * 4;
    L.sq = o, o += (unsigned)GS_WARPS * nb * 4;
    L.bar = o = round_up(o, 8), o += (unsigned)stages * 8;
    L.total = o;
    return L;
}

/** Shared memory a block may take (bytes) and blocks per multiprocessor: MAMBA2_GPU_STREAM_KB and
 *  MAMBA2_GPU_STREAM_BLOCKS for A/B runs, else 100 KB and two blocks (measurements: results/gpu.md). */
static void gs_budget(unsigned *bytes, int *blocks) {
    static unsigned b = 0;
    static int n = 0;
    if (!b) {
        const char *kb = getenv("MAMBA2_GPU_STREAM_KB"), *nbk = getenv("MAMBA2_GPU_STREAM_BLOCKS");
        int k = kb && *kb ? atoi(kb) : 100;
        b = (unsigned)std::min(std::max(k, 16), SMEM_MAX / 1024) * 1024u;
        n = nbk && *nbk ? std::min(std::max(atoi(nbk), 1), 4) : 2;
    }
    *bytes = b, *blocks = n;
}

/** The layout with as many stages as the budget holds (at most GS_MAX_STAGES); stages < 2 if none. */
static GsLayout gs_fit(GemvWeights wf, int cols, int nb) {
    unsigned budget;
    int blocks;
    gs_budget(&budget, &blocks);
    int stages = GS_MAX_STAGES;
    while (stages > 0 && gs_layout(wf, cols, nb, stages).total > budget) stages--;
    return gs_layout(wf, cols, nb, stages);
}

bool gemv_stream_takes(GemvPrologue pro, const GemvArgs &a) {
    if (!a.stream || a.nb < 1 || a.nb > 4 || (a.wf != GEMV_BF16 && a.wf != GEMV_Q8_DP4A)) return false;
    /* whole chunks of 16 bytes (q8: 256-column pieces, so that each row's scales are whole 8-byte
     * runs, see scale_lead()), each inside one norm group (q8: whole input blocks of 32); 16-byte
     * aligned rows and inputs, and q8 scales (the copies start at 16-byte boundaries of the array) */
    const int unit = a.wf == GEMV_BF16 ? 8 : 256, chunk = a.wf == GEMV_BF16 ? 8 : Q8_XBLOCK;
    if (a.cols % unit || (pro == PRO_GATEDNORM && (a.cols % a.groups || (a.cols / a.groups) % chunk))) return false;
    if (a.wf == GEMV_BF16 ? (uintptr_t)a.W % 16 != 0 : (a.Wq.Kq != a.cols || (uintptr_t)a.Wq.q % 16 || (uintptr_t)a.Wq.d % 16))
        return false;
    if ((uintptr_t)a.x % 16) return false;
    return gs_fit(a.wf, a.cols, a.nb).stages >= 2;
}

template <int NB, int PRO, int EPI, int WF>
__global__ void __launch_bounds__(GS_THREADS, 1) gemv_stream_kernel(GemvArgs a, GsLayout L) {
    extern __shared__ __align__(128) unsigned char smem[];
    constexpr int CW = WF == GEMV_BF16 ? 8 : 16; /* columns per 16-byte chunk */
    const int cols = a.cols, cn = cols / CW, nxb = cols / Q8_XBLOCK; /* q8: input blocks of 32 a row */
    const unsigned wrow = row_bytes(WF, cols), drow = scale_bytes(WF, cols), dstage = scale_stage_bytes(WF, cols);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r_begin = (int)((long long)blockIdx.x * a.rows / gridDim.x);
    const int r_end = (int)((long long)(blockIdx.x + 1) * a.rows / gridDim.x);
    const int groups = (r_end - r_begin + GS_ROWS - 1) / GS_ROWS;
    uint64_t *bar = (uint64_t *)(smem + L.bar);
    float(*slots)[EPI_SLOT] = (float(*)[EPI_SLOT])(smem + L.epi) + warp * 2 * NB; /* this warp's [2][NB] */
    /* lane b < NB copies the epilogue inputs of its row of group g (sequence b) into slots[g % 2] */
    auto prefetch = [&](int g) {
        const int r = r_begin + g * GS_ROWS + warp;
        if (g < groups && r < r_end) {
            epilogue_prefetch<NB, PRO, EPI, 1>(a, r, slots + (g & 1) * NB, false, lane);
            epilogue_prefetch<NB, PRO, EPI, 1>(a, r, slots + (g & 1) * NB, true, lane);
        }
        cp_async_commit(); /* one group of copies per row group, empty or not */
    };

    auto issue = [&](int g) { /* thread 0: the rows of group g into stage g % stages */
        const int s = g % L.stages, r0 = r_begin + g * GS_ROWS, n = min(GS_ROWS, r_end - r0);
        /* q8 scales: from the 16-byte boundary at or below the group's first one (lead bytes before
         * it) to the one at or above its end, which stays inside the scales' allocation
         * (q8_scale_alloc_bytes() rounds it up to 16 bytes) */
        const unsigned lead = WF == GEMV_BF16 ? 0u : scale_lead(r0, drow);
        const uint32_t wb = (uint32_t)n * wrow, db = WF == GEMV_BF16 ? 0u : (lead + (uint32_t)n * drow + 15u) & ~15u;
        mbar_expect_tx(&bar[s], wb + db);
        const unsigned char *src = WF == GEMV_BF16 ? (const unsigned char *)a.W : (const unsigned char *)a.Wq.q;
        bulk_copy_g2s(smem + L.w + (size_t)s * GS_ROWS * wrow, src + (size_t)r0 * wrow, wb, &bar[s]);
        if (WF != GEMV_BF16)
            bulk_copy_g2s(smem + L.d + (size_t)s * dstage, (const unsigned char *)a.Wq.d + (size_t)r0 * drow - lead, db, &bar[s]);
    };
    pdl_trigger();
    if (threadIdx.x == 0) {
        for (int s = 0; s < L.stages; s++) mbar_init(&bar[s], 1);
        mbar_init_fence();
        for (int g = 0; g < min(groups, L.stages); g++) issue(g); /* constant data: before the wait */
    }
    pdl_wait(); /* x, the sums of squares, h: the previous kernel's */

    const int gs = PRO == PRO_GATEDNORM ? cols / a.groups : 1;
    if (WF == GEMV_BF16) {
        /* x' in fp32, each chunk of 8 as two planes of 4 (xf[b][0][q] = x'[8q .. 8q+4), xf[b][1][q] =
         * x'[8q+4 .. 8q+8)), so that lane q's two 16-byte loads are at a 16-byte stride */
        float4 *xf = (float4 *)(smem + L.x);
        for (int i = threadIdx.x; i < NB * cn; i += GS_THREADS) {
            const int b = i / cn, q = i % cn;
            float v[8];
            input8(a, b, 8 * q, v);
            const float sc = PRO == PRO_GATEDNORM ? group_scale(a, b, 8 * q / gs, 1.0f / gs) : 1.0f;
            xf[(size_t)b * 2 * cn + q] = make_float4(v[0] * sc, v[1] * sc, v[2] * sc, v[3] * sc);
            xf[(size_t)b * 2 * cn + cn + q] = make_float4(v[4] * sc, v[5] * sc, v[6] * sc, v[7] * sc);
        }
    } else {
        /* per input block k of 32: p = rint(x·127/max|x|), e = max|x| times the group's norm scale */
        int8_t *xq = (int8_t *)(smem + L.x);
        float *xs = (float *)(smem + L.xs);
        for (int i = threadIdx.x; i < NB * nxb; i += GS_THREADS) {
            const int b = i / nxb, k = i % nxb;
            float v[32];
#pragma unroll
            for (int j = 0; j < 32; j += 8) input8(a, b, 32 * k + j, v + j);
            float amax = 0;
#pragma unroll
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
            uint32_t p[8];
            quantize16(v, amax, p);
            quantize16(v + 16, amax, p + 4);
            uint4 *dst = (uint4 *)(xq + (size_t)b * cols + 32 * k);
            dst[0] = make_uint4(p[0], p[1], p[2], p[3]);
            dst[1] = make_uint4(p[4], p[5], p[6], p[7]);
            xs[(size_t)b * nxb + k] = amax * (PRO == PRO_GATEDNORM ? group_scale(a, b, 32 * k / gs, 1.0f / gs) : 1.0f);
        }
    }
    prefetch(0);
    __syncthreads(); /* the inputs, and the barriers' initialisation */

    float sq = 0; /* lane b < NB: Σ h² of this warp's rows of sequence b (EPI_RESIDUAL) */
    for (int g = 0; g < groups; g++) {
        const int s = g % L.stages, r = r_begin + g * GS_ROWS + warp;
        const bool live = r < r_end;
        prefetch(g + 1); /* the next group's epilogue inputs, a group ahead of their use */
        mbar_wait(&bar[s], (uint32_t)(g / L.stages) & 1);
        float acc[NB];
#pragma unroll
        for (int b = 0; b < NB; b++) acc[b] = 0;
        if (live) {
            const uint4 *wr = (const uint4 *)(smem + L.w + ((size_t)s * GS_ROWS + warp) * wrow);
            if (WF == GEMV_BF16) {
                const float4 *xf = (const float4 *)(smem + L.x);
#pragma unroll 4
                for (int q = lane; q < cn; q += 32) {
                    const uint4 w = wr[q];
#pragma unroll
                    for (int b = 0; b < NB; b++) {
                        const float4 lo = xf[(size_t)b * 2 * cn + q], hi = xf[(size_t)b * 2 * cn + cn + q];
                        const float x[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
                        acc[b] += dot8(w, x);
                    }
                }
            } else {
                /* the row's scales [cols / 64]: past the stage's copy lead (issue()), then the rows before it */
                const unsigned lead = scale_lead(r_begin + g * GS_ROWS, drow);
                const __half *wd = (const __half *)(smem + L.d + (size_t)s * dstage + lead + (size_t)warp * drow);
                const uint4 *xq = (const uint4 *)(smem + L.x);
                const float *xs = (const float *)(smem + L.xs);
#pragma unroll 4
                for (int q = lane; q < cn; q += 32) {
                    const uint4 w = wr[q];
                    const float d = __half2float(wd[q / (Q8_SCALE_BLOCK / CW)]); /* chunk q: columns 16q .. 16q + 15 */
#pragma unroll
                    for (int b = 0; b < NB; b++) {
                        const uint4 xv = xq[(size_t)b * cn + q];
                        const uint32_t p[4] = {xv.x, xv.y, xv.z, xv.w};
                        acc[b] = fmaf((float)dot16_i8(w, p), d * xs[(size_t)b * nxb + q / (Q8_XBLOCK / CW)], acc[b]);
                    }
                }
            }
        }
        __syncthreads(); /* every warp is done with stage s: refill it */
        if (threadIdx.x == 0 && g + L.stages < groups) issue(g + L.stages);
        if (live) {
            float v = 0;
#pragma unroll
            for (int b = 0; b < NB; b++) {
                const float t = warp_sum(acc[b]);
                if (lane == b) v = t;
            }
            cp_async_wait_group<1>(); /* this lane's epilogue inputs of group g (not yet g + 1's) */
            if (WF != GEMV_BF16) v *= 1.0f / 127.0f;
            if (lane < NB) sq += finish_row<PRO, EPI>(a, lane, r, v, slots[(g & 1) * NB + lane]);
        }
    }
    if (EPI == EPI_RESIDUAL && a.ss_out) { /* Σ h² of the block's rows, for the next RMSNorm */
        float *part = (float *)(smem + L.sq); /* [GS_WARPS][NB] */
        if (lane < NB) part[warp * NB + lane] = sq;
        __syncthreads();
        if (threadIdx.x < NB) {
            float total = 0;
            for (int w = 0; w < GS_WARPS; w++) total += part[w * NB + threadIdx.x];
            atomicAdd(&a.ss_out[threadIdx.x], total);
        }
    }
}

/* The dynamic shared-memory limit of one instantiation, raised to the most any budget asks, once. */
template <int NB, int PRO, int EPI, int WF> static void raise_limit() {
    static bool raised = false;
    if (!raised)
        raised = cudaFuncSetAttribute(gemv_stream_kernel<NB, PRO, EPI, WF>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      SMEM_MAX) == cudaSuccess;
}

template <int PRO, int EPI, int WF> static void raise_limits() {
    raise_limit<1, PRO, EPI, WF>(), raise_limit<2, PRO, EPI, WF>(), raise_limit<3, PRO, EPI, WF>(), raise_limit<4, PRO, EPI, WF>();
}

template <int WF> static void raise_limits_wf() {
    raise_limits<PRO_RMSNORM, EPI_INPROJ, WF>();
    raise_limits<PRO_GATEDNORM, EPI_RESIDUAL, WF>();
    raise_limits<PRO_RMSNORM, EPI_STORE, WF>();
    raise_limits<PRO_NONE, EPI_STORE, WF>();
}

void gemv_stream_prepare() {
    raise_limits_wf<GEMV_BF16>();
    raise_limits_wf<GEMV_Q8_DP4A>();
}

template <int NB, int PRO, int EPI, int WF>
static void launch_stream_t(const GemvArgs &a, cudaStream_t s) {
    const GsLayout L = gs_fit(a.wf, a.cols, NB);
    raise_limit<NB, PRO, EPI, WF>(); /* done already where gemv_stream_prepare() ran (before any graph capture) */
    unsigned budget;
    int per_sm;
    gs_budget(&budget, &per_sm);
    const int grid = std::min(gpu_sm_count() * per_sm, (a.rows + GS_ROWS - 1) / GS_ROWS);
    launch_pdl(gemv_stream_kernel<NB, PRO, EPI, WF>, dim3(grid), dim3(GS_THREADS), L.total, s, a, L);
}

template <int WF> struct LaunchStream {
    template <int NB, int PRO, int EPI> static void run(const GemvArgs &a, cudaStream_t s) { launch_stream_t<NB, PRO, EPI, WF>(a, s); }
};

void launch_gemv_stream(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, cudaStream_t s) {
    if (a.wf == GEMV_BF16) gemv_dispatch<LaunchStream<GEMV_BF16>>(pro, epi, a, s);
    else gemv_dispatch<LaunchStream<GEMV_Q8_DP4A>>(pro, epi, a, s);
}
