/**
 * @file gemm_decode.cu
 * @brief The decode product of 5 to 64 sequences on tensor cores, the weights streamed through
 *        shared memory by the tensor memory accelerator, stored or added to the residual stream.
 *
 *   out[b][r] = Σ_k W[r][k] · X[b][k]      W [rows, K] bf16, X [nb, ldx] bf16, fp32 sums
 *
 * Decode of a few sequences is a matrix-vector product that reads each weight once and uses it
 * nb times: memory-bound, but past 4 sequences too many multiply-adds for the CUDA cores at the
 * rate the weights arrive (gemv.cuh), so the tensor cores do them, with the weights as operand A
 * and the sequences as operand B (nb padded to 16, 32 or 64): mma.sync m16n8k16 (a warp, 16 rows),
 * or from 17 sequences Hopper's wgmma m64nNk16 (a warpgroup, 64 rows, N = nb padded), which reads
 * both operands from shared memory itself, once per warpgroup, at the tensor cores' full rate
 * (wgmma_bf16.cuh).
 * Where the bytes wait (as in gemv_stream.cu, and unlike the register-fed try of results/gpu.md,
 * which held too few bytes in flight):
 *  - a persistent grid of one block per multiprocessor, each block a contiguous range of 16-row
 *    tiles (ranges differ by at most one tile), taken in groups of at most 256 rows; where
 *    that leaves a block fewer than 6 tiles (out_proj: 2), and partial sums may be added (the
 *    residual epilogue), K is cut into slices across blocks as well, each slice's sums added
 *    atomically (in the order the blocks finish, so the last bits of the residual stream may differ
 *    from run to run, which cuBLAS' split-K with its separate reduce does not do);
 *  - a producer thread has the tensor memory accelerator bring each stage, 64 or 128 columns of
 *    the group's rows and of the nb inputs, into a ring of shared-memory stages, as boxes of 64
 *    columns × the group's rows (weights; a tensor map for each group height, 16 to 256 rows) and 64
 *    columns × 8·NT rows (inputs; rows past nb come as zeros), with the 128-byte swizzle, so that
 *    ldmatrix's eight rows fall in different banks ("full" mbarriers say a stage has landed, "empty"
 *    ones that the eight consumer warps are done with it). Few large boxes: the copy engine's cost
 *    goes with the number of copies, and one bulk copy per row, or boxes of 16 rows, left it far below
 *    the copy bandwidth (results/gpu.md);
 *  - consumer warp w takes tile w of the group (groups of up to 8 tiles), or tiles 2w and 2w + 1
 *    (so that each input fragment serves two row tiles), over all of its columns, each weight
 *    fragment serving every sequence, and no sums need to meet across warps; each warp finishes its rows while the others go on to the next group's
 *    stages, whose copies the producer has kept in flight. A group's inputs are read once for up to
 *    256 rows (from the L2): at most nb/256 of the weight bytes again, per group. (Groups of 128 rows
 *    split between two warps by columns, whose sums then met in shared memory, read the inputs twice
 *    as often, and were slower for in_proj; results/gpu.md.) With wgmma, warpgroup w (warps 4w ..
 *    4w + 3) takes 64-row blocks w and w + 2 of the group, its batch of a stage left running while
 *    the next stage is waited for and issued, the stage released one stage late; a group's last
 *    block may reach past the group's rows into what follows in shared memory (other rows, whose
 *    sums are dropped; slack past the last stage).
 * The norm before each product can come with it, so that the batched step needs no kernel of its
 * own for it (the prologue, as in the GEMV): the inputs then come as fp32, and the eight consumer
 * warps apply the norm to a share of each stage's inputs each and write them in bf16 where ldmatrix
 * (or wgmma) reads them, then meet at a barrier (each warp converting all of its own fragments, or one
 * converter warp doing all of it, was far slower; results/gpu.md). The barrier costs the kernel some
 * of its speed: the grouped norm's prologue pays for itself, RMSNorm's does not (the backend's default):
 *  - PRO_RMSNORM: X is the residual stream h itself and a.in_w the norm's weight w;
 *        out[b][r] = s_b · Σ_k W[r][k] · bf16(h[b][k] · w[k]),   s_b = rsqrt(Σ_k h[b][k]² / K + eps),
 *    Σ h² summed by the kernel from the inputs it streams anyway (the out_proj before it adds its K
 *    slices atomically, so no kernel before it has the finished rows to sum);
 *  - PRO_GATEDNORM: X = y·w as the SSD step wrote it, a.ss_in its sums [nb, groups] (Σ_group y²);
 *        out[b][r] = Σ_k W[r][k] · bf16(X[b][k] · s_bg),   s_bg = rsqrt(ss_in[b][g(k)] / gs + eps),
 *    the group of k constant over a box of 64 columns (gs a multiple of 64).
 * The grouped norm can also come after the product, where its scale is constant per sum: the inputs
 * then stay bf16 as the tensor memory accelerator brings them, nothing to convert and no barrier
 * (PRO_GROUPSCALE, for the batches whose conversion costs more than the norm's own kernel):
 *  - PRO_GROUPSCALE: X = bf16(y·w) as the SSD step wrote it, a.ss_in as for PRO_GATEDNORM;
 *        out[b][r] = Σ_g s_bg · Σ_{k in g} W[r][k] · X[b][k],
 *    kept as one running sum per (row, sequence) in the scale of the group being summed: where the
 *    columns pass into group g' the sum is multiplied by s_bg / s_bg', at the end by the last group's
 *    s_bg (the scales of every (group, sequence) computed once per block into shared memory).
 * RMSNorm can come after the product too, its scale constant per sequence, from sums handed over:
 *  - PRO_ROWSCALE: X = bf16(h·w) and a.ss_in [nb] its Σ h², as the out_proj before handed them over;
 *        out[b][r] = s_b · Σ_k W[r][k] · X[b][k],   s_b = rsqrt(ss_in[b] / K + eps).
 * The hand-off (EPI_RESIDUAL with a.xw_next): out_proj adds its K slices atomically, so no block has
 * the finished rows of the residual stream until every slice of its range has added to them; each
 * block counts its slice done on its range's ticket (one thread, with release and acquire ordering,
 * between two barriers of the consumers), and the block that counts the last slice reads the range's
 * rows back from the L2 and writes X = bf16(h·next_w) for the next product and each sequence's Σ h²
 * over them (added to a.ss_out, which the caller zeroed), then puts the ticket back to 0. The next
 * product then needs no norm kernel before it and no conversion in its prologue (PRO_ROWSCALE).
 * No in_proj epilogue (conv step, dt) here: done per element from this kernel's few warps, it was
 * far slower than the conv + dt kernel that follows the store (results/gpu.md).
 */
#include <cuda.h> /* CUtensorMap and its encoder's signature (the function itself comes from the driver at run time) */

#include <algorithm>
#include <stdlib.h>

#include "bulk_copy.cuh"
#include "gemv.cuh"
#include "wgmma_bf16.cuh"

#define GD_CONSUMERS 8                         /* consumer warps */
#define GD_THREADS ((GD_CONSUMERS + 1) * 32)   /* and one producer warp */
#define GD_MT 2                                /* 16-row tiles a warp */
#define GD_GROUP_TILES (GD_CONSUMERS * GD_MT)  /* tiles a group at most: 256 rows */
#define GD_BOX_K 64                            /* columns a box (128 bytes: the swizzle's row) */
#define GD_MIN_NB 5                            /* fewer sequences take the GEMV */
#define GD_MAX_NB 64
#define GD_MAX_GROUPS 64                       /* PRO_GROUPSCALE: groups of columns at most (its table of scales) */

/** The work and shared-memory plan of one launch (bytes from a 1,024-aligned base: the 128-byte
 *  swizzle repeats every 8 rows of 128 bytes, and each box must start at such a row). */
struct GdLayout {
    int splits;           /**< slices of K across blocks (EPI_RESIDUAL only: partial sums added atomically) */
    int blocks;           /**< blocks per slice (the grid: blocks · splits) */
    int groups;           /**< groups a block's tiles are taken in */
    int slots;            /**< tiles a group holds at most (its weight box's rows / 16) */
    int mt;               /**< tiles a consumer warp takes: 1 where a group holds at most 8, else 2 */
    int kboxes;           /**< boxes of 64 columns a stage */
    int stages;
    unsigned stage_bytes; /**< weights [kboxes][slots][16][128 B], inputs in bf16 [kboxes][8·NT][128 B], then with a
                               prologue the inputs in fp32 as they came [kboxes][2][8·NT][128 B] */
    unsigned xf;          /**< the fp32 inputs' offset in a stage (prologues) */
    unsigned bar;         /**< [stages] full, then [stages] empty mbarriers, then the RMSNorm's sums [3][8·NT],
                               then PRO_GROUPSCALE's scales [groups][8·NT] */
    unsigned total;       /**< with 1,024 bytes to align the base */
};

/** The 128-byte rows an input row takes per box of 64 columns as the tensor memory accelerator brings it:
 *  1 in bf16 (PRO_NONE, PRO_GROUPSCALE, PRO_ROWSCALE), 2 in fp32 (the prologues: two boxes of 32 columns, each with
 *  its own swizzle). */
#define GD_XW(PRO) (GD_PRO_CONVERTS(PRO) ? 2 : 1)

/** The 8-column tiles of B for @p nb sequences: 2, 4 or 8 (nb ≤ 16, 32, 64). */
static int gd_ntiles(int nb) { return nb <= 16 ? 2 : nb <= 32 ? 4 : 8; }

/** Byte offset of 16-byte chunk @p chunk (0..7) of row @p row in a box of 128-byte rows stored with the
 *  128-byte swizzle: chunk c of row r lies at chunk c ^ (r mod 8). */
__device__ __forceinline__ unsigned swz(int row, int chunk) { return (unsigned)row * 128 + ((chunk ^ (row & 7)) << 4); }

/** Ask the tensor memory accelerator for the box of @p map at (column @p c0, row @p c1) into @p dst,
 *  its bytes counted on @p bar. */
__device__ __forceinline__ void tma_load_2d(void *dst, const CUtensorMap *map, int c0, int c1, uint64_t *bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
                     smem_u32(dst)),
                 "l"(map), "r"(c0), "r"(c1), "r"(smem_u32(bar))
                 : "memory");
}

/** Finish output row @p r of sequence @p b from its sum @p v: stored, or added to the residual stream
 *  (@p atomic: @p v is one slice's of K). */
template <int EPI> __device__ __forceinline__ void gd_finish(const GemvArgs &a, int b, int r, float v, bool atomic) {
    float *o = a.out + (size_t)b * a.rows + r;
    if (EPI == EPI_STORE) *o = v;
    else if (atomic) atomicAdd(o, v);
    else *o += v;
}

/** The tensor maps of one product: the weights as boxes of 1 to GD_GROUP_TILES tiles of 16 rows
 *  (w[n − 1]: a group of n tiles comes in as one box per 64 columns), the inputs as boxes of 8·NT rows
 *  (64 bf16 columns, or 32 fp32 columns with a prologue). */
struct GdMaps {
    CUtensorMap w[GD_GROUP_TILES];
    CUtensorMap x;
};

/** Atomically add @p v to @p p at GPU scope with release and acquire ordering (the hand-off's ticket);
 *  returns the old value. */
__device__ __forceinline__ unsigned atomic_add_acq_rel(unsigned *p, unsigned v) {
    unsigned old;
    asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], %2;\n" : "=r"(old) : "l"(p), "r"(v) : "memory");
    return old;
}

/** The hand-off of finished residual rows [@p r0, @p r1) of every sequence, by the eight consumer warps:
 *    xw_next[b][r] = bf16(h[b][r] · next_w[r]),   ss_out[b] += Σ_r h[b][r]².
 *  Warp w takes sequences w, w + 8, ... (NT of them at most: nb ≤ 8·NT), each lane rows lane + 32j of
 *  each pass of 128 rows, every load of a pass asked for before any is used; the rows come from the L2
 *  (other blocks added to them). */
template <int NT> __device__ __forceinline__ void gd_hand_off(const GemvArgs &a, int r0, int r1, int warp, int lane) {
    for (int p0 = r0; p0 < r1; p0 += 128) {
        float h[NT][4], w[4]; /* [sequence of this warp][row of this lane] */
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int r = p0 + 32 * j + lane;
            w[j] = r < r1 ? a.next_w[r] : 0.0f;
#pragma unroll
            for (int i = 0; i < NT; i++) {
                const int b = warp + GD_CONSUMERS * i;
                h[i][j] = b < a.nb && r < r1 ? __ldcg(a.out + (size_t)b * a.rows + r) : 0.0f;
            }
        }
#pragma unroll
        for (int i = 0; i < NT; i++) {
            const int b = warp + GD_CONSUMERS * i;
            float ss = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int r = p0 + 32 * j + lane;
                if (b < a.nb && r < r1) a.xw_next[(size_t)b * a.rows + r] = __float2bfloat16(h[i][j] * w[j]);
                ss = fmaf(h[i][j], h[i][j], ss);
            }
            ss = warp_sum(ss);
            if (lane == 0 && b < a.nb) atomicAdd(&a.ss_out[b], ss);
        }
    }
}

template <int NT, int PRO, int EPI, bool WG>
__global__ void __launch_bounds__(GD_THREADS, 1) gemm_decode_kernel(GemvArgs a, const __grid_constant__ GdMaps maps, GdLayout L) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned char *smem = (unsigned char *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    /* warp: from lane 0, so that the compiler sees it the same across the warp (wgmma in branches on it
     * would otherwise be serialized) */
    const int K = a.cols, nb = a.nb, warp = __shfl_sync(0xffffffffu, threadIdx.x >> 5, 0), lane = threadIdx.x & 31;
    const int tiles = (a.rows + 15) / 16, KS = L.kboxes * GD_BOX_K;
    const unsigned wbytes = (unsigned)L.kboxes * L.slots * 2048; /* the weights' part of a stage */
    /* block b: slice b mod splits of K (boundaries on whole boxes), and a range of tiles among the
     * blocks of its slice, in L.groups groups even to a tile */
    const int slice = blockIdx.x % L.splits, bi = blockIdx.x / L.splits, nbk = L.blocks;
    const int k_begin = slice == 0 ? 0 : (int)((long long)slice * K / L.splits / GD_BOX_K * GD_BOX_K);
    const int k_end = slice == L.splits - 1 ? K : (int)((long long)(slice + 1) * K / L.splits / GD_BOX_K * GD_BOX_K);
    const int t_begin = (int)((long long)bi * tiles / nbk);
    const int t_end = (int)((long long)(bi + 1) * tiles / nbk);
    const int kstages = (k_end - k_begin + KS - 1) / KS;
    const int ngroups = min(L.groups, t_end - t_begin); /* none empty (every block has a tile: the grid) */
    uint64_t *full = (uint64_t *)(smem + L.bar), *empty = full + L.stages;
    float *ssum = (float *)(empty + L.stages); /* PRO_RMSNORM: [3][8·NT] the groups' Σ x², a buffer per group in turn */
    auto group_tiles = [&](int j, int &first, int &last) {
        first = t_begin + j * (t_end - t_begin) / ngroups;
        last = t_begin + (j + 1) * (t_end - t_begin) / ngroups;
    };
    pdl_trigger();
    if (threadIdx.x == 0) {
        for (int s = 0; s < L.stages; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], GD_CONSUMERS);
        mbar_init_fence();
        for (int i = 0; i < 3 * 8 * NT; i++) ssum[i] = 0.0f;
    }
    __syncthreads();

    if (warp == GD_CONSUMERS) { /* the producer: one thread */
        if (lane != 0) return;
        const int total = ngroups * kstages;
        /* stage s ← iteration it's weights (@p w) and / or inputs (!@p w) */
        auto fill = [&](int it, bool w) {
            const int s = it % L.stages, j = it / kstages, k0 = k_begin + (it % kstages) * KS;
            const int boxes = min(KS, k_end - k0 + GD_BOX_K - 1) / GD_BOX_K; /* boxes of this stage inside the slice */
            int first, last;
            group_tiles(j, first, last);
            const int cnt = last - first;
            unsigned char *st = smem + (size_t)s * L.stage_bytes;
            if (w) {
                mbar_expect_tx(&full[s], (uint32_t)boxes * (cnt * 16 + 8 * NT * GD_XW(PRO)) * GD_BOX_K * 2);
                for (int h = 0; h < boxes; h++)
                    tma_load_2d(st + (size_t)h * L.slots * 2048, &maps.w[cnt - 1], k0 + h * GD_BOX_K, first * 16, &full[s]);
            } else
                for (int h = 0; h < boxes * GD_XW(PRO); h++) /* fp32: two boxes of 32 columns per 64 */
                    tma_load_2d(st + (GD_PRO_CONVERTS(PRO) ? L.xf : wbytes) + (size_t)h * 8 * NT * 128, &maps.x,
                                k0 + h * (GD_BOX_K / GD_XW(PRO)), 0, &full[s]);
        };
        const int pre = min(total, L.stages);
        for (int it = 0; it < pre; it++) fill(it, true); /* the weights are constant: before the wait */
        pdl_wait();                                      /* X is the previous kernel's */
        for (int it = 0; it < pre; it++) fill(it, false);
        for (int it = pre; it < total; it++) {
            mbar_wait(&empty[it % L.stages], (uint32_t)(it / L.stages - 1) & 1);
            fill(it, true);
            fill(it, false);
        }
        return;
    }

    pdl_wait(); /* the residual stream this kernel adds to (and the grouped norm's sums) */
    constexpr int R = 8 * NT; /* input rows of a box */
    const int tid = threadIdx.x;   /* consumers: 0 .. 255 */
    const int cr = tid % R;        /* the input row this thread converts (256 is a multiple of R) */
    const int wg = warp >> 2, wq = warp & 3; /* WG: this warp's warpgroup, and its 16 rows of each 64 */
    int it = 0, held = -1; /* WG: the stage whose wgmma may still be running (released one stage late) */
    float rsb[NT][2]; /* PRO_ROWSCALE: the scale of sequences q, q + 1 of each 8-sequence tile (q: below) */
    if (PRO == PRO_ROWSCALE)
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int b = n * 8 + 2 * (lane & 3) + e;
                rsb[n][e] = b < nb ? rsqrtf(a.ss_in[b] * (1.0f / K) + a.eps) : 0.0f;
            }
    const int gs = a.groups > 0 ? K / a.groups : K; /* PRO_GROUPSCALE: columns a group */
    float *gscale = ssum + 3 * R;                   /* PRO_GROUPSCALE: [groups][R] s_bg (1 past nb) */
    if (PRO == PRO_GROUPSCALE) {
        const float inv_gs = 1.0f / gs;
        for (int i = tid; i < a.groups * R; i += GD_CONSUMERS * 32)
            gscale[i] = i % R < nb ? rsqrtf(a.ss_in[(i % R) * a.groups + i / R] * inv_gs + a.eps) : 1.0f;
        asm volatile("bar.sync 1, %0;\n" ::"r"(GD_CONSUMERS * 32) : "memory");
    }
    for (int j = 0; j < ngroups; j++) {
        int first, last;
        group_tiles(j, first, last);
        /* mma.sync: acc[i] is tile warp·mt + i of the group; WG: acc[i] (as [N/2] floats) is 64-row block
         * wg + 2i of the group, of which this warp holds rows 16·wq .. 16·wq + 15 (wgmma_bf16.cuh) */
        float acc[GD_MT][NT][4];
#pragma unroll
        for (int i = 0; i < GD_MT; i++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int c = 0; c < 4; c++) acc[i][n][c] = 0.0f;
        const int g = lane >> 2, q = 2 * (lane & 3); /* C layout: c0, c1 = row g, columns q, q+1; c2, c3 = row g + 8 (mma_bf16.cuh) */
        auto fence_acc = [&]() { /* WG: the sums as wgmma left them, before this thread reads them */
#pragma unroll
            for (int i = 0; i < GD_MT; i++)
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int c = 0; c < 4; c++) wgmma_fence_operand(acc[i][n][c]);
        };
        int cur = -1; /* PRO_GROUPSCALE: the group of columns whose scale the sums are in */
        /* PRO_GROUPSCALE: the columns pass into group gk: the sums so far from group cur's scale into gk's */
        auto enter_group = [&](int gk) {
            if (cur >= 0)
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float f = gscale[cur * R + n * 8 + q + e] / gscale[gk * R + n * 8 + q + e];
#pragma unroll
                        for (int i = 0; i < GD_MT; i++) acc[i][n][e] *= f, acc[i][n][2 + e] *= f;
                    }
            cur = gk;
        };
        float rs[NT][2];                             /* PRO_RMSNORM: the scale of columns q, q + 1 of each 8-column tile */
        float ssr = 0.0f;                            /* PRO_RMSNORM: Σ x² of row cr over the chunks this thread converted */
        const int mine = min(L.mt, last - first - warp * L.mt); /* mma.sync: this warp's tiles in the group (≤ 0: none) */
        const int mb = (last - first + 3) / 4;                  /* WG: the group's 64-row blocks */
        for (int t = 0; t < kstages; t++, it++) {
            const int s = it % L.stages, k0 = k_begin + t * KS;
            mbar_wait(&full[s], (uint32_t)(it / L.stages) & 1);
            const unsigned char *st = smem + (size_t)s * L.stage_bytes;
            const int boxes = (min(KS, k_end - k0) + GD_BOX_K - 1) / GD_BOX_K; /* of this stage inside the slice */
            if (GD_PRO_CONVERTS(PRO)) {
                /* the prologue: the stage's fp32 inputs with their norm → bf16 where ldmatrix reads them, the
                 * eight warps a share each (8-column chunks: row cr, chunks tid / R + 256 / R · m) */
                for (int id = tid / R; id < boxes * (GD_BOX_K / 8); id += GD_CONSUMERS * 32 / R) {
                    const int h = id / (GD_BOX_K / 8), c = id % (GD_BOX_K / 8), k = k0 + h * GD_BOX_K + c * 8;
                    const unsigned char *half = st + L.xf + (size_t)(h * 2 + (c >> 2)) * R * 128;
                    const float4 u = *(const float4 *)(half + swz(cr, (c & 3) * 2)), v = *(const float4 *)(half + swz(cr, (c & 3) * 2 + 1));
                    float f[8] = {u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w};
                    if (PRO == PRO_RMSNORM) {
                        float4 w0 = make_float4(0, 0, 0, 0), w1 = w0; /* past K: zeros (the tensor map's fill), no weights */
                        if (k < K) w0 = *(const float4 *)(a.in_w + k), w1 = *(const float4 *)(a.in_w + k + 4);
                        const float w[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
                        for (int e = 0; e < 8; e++) ssr = fmaf(f[e], f[e], ssr), f[e] *= w[e];
                    } else {
                        const float sc = cr < nb && k < K ? rsqrtf(a.ss_in[cr * a.groups + k / (K / a.groups)] * ((float)a.groups / K) + a.eps) : 0.0f;
#pragma unroll
                        for (int e = 0; e < 8; e++) f[e] *= sc;
                    }
                    *(uint4 *)(st + wbytes + (size_t)h * R * 128 + swz(cr, c)) =
                        make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]), pack_bf16x2(f[6], f[7]));
                }
                if (PRO == PRO_RMSNORM && t == kstages - 1) { /* the group's last stage: its sums, in buffer j mod 3 */
                    if (tid < R) ssum[(j + 1) % 3 * R + tid] = 0.0f; /* the next group's (read two groups ago, before the last barrier) */
                    atomicAdd(&ssum[j % 3 * R + cr], ssr);
                }
                if (WG) fence_proxy_async(); /* the converted inputs, for wgmma's reads */
                asm volatile("bar.sync 1, %0;\n" ::"r"(GD_CONSUMERS * 32) : "memory"); /* the consumers' barrier: converted */
            }
            if (WG) {
                /* per 16-column step of each box: one wgmma per 64-row block of this warpgroup (A: the block's
                 * rows of the box, B: the box's inputs), issued together and left running; the stage they read
                 * is released once the next stage's batch is issued and this one's has finished */
                wgmma_fence();
                for (int h = 0; h < boxes; h++) {
                    if (PRO == PRO_GROUPSCALE && (k0 + h * GD_BOX_K) / gs != cur) {
                        if (cur >= 0) { /* the batch so far finishes before its sums are rescaled */
                            wgmma_commit();
                            wgmma_wait<0>();
                            fence_acc();
                        }
                        enter_group((k0 + h * GD_BOX_K) / gs);
                        wgmma_fence();
                    }
#pragma unroll
                    for (int kq = 0; kq < GD_BOX_K / 16; kq++) {
                        const uint64_t db = wgmma_desc_sw128(st + wbytes + (size_t)h * R * 128 + kq * 32);
#pragma unroll
                        for (int i = 0; i < GD_MT; i++)
                            if (wg + 2 * i < mb)
                                wgmma_bf16<8 * NT>(&acc[i][0][0], wgmma_desc_sw128(st + (size_t)(h * L.slots + (wg + 2 * i) * 4) * 2048 + kq * 32), db);
                    }
                }
                wgmma_commit();
                wgmma_wait<1>();
                if (held >= 0) {
                    __syncwarp();
                    if (lane == 0) mbar_arrive(&empty[held]);
                }
                held = s;
                continue;
            }
            if (mine > 0) {
                const int steps = min(KS, k_end - k0) / 16;
#pragma unroll
                for (int kq = 0; kq < 2 * GD_BOX_K / 16; kq++) { /* the 16-column steps (unrolled: at most two boxes) */
                    if (kq >= steps) break;
                    /* the step's two 8-column chunks of the 64-column box it lies in */
                    const int h = kq / (GD_BOX_K / 16), c2 = (kq % (GD_BOX_K / 16)) * 2;
                    if (PRO == PRO_GROUPSCALE && (k0 + h * GD_BOX_K) / gs != cur) enter_group((k0 + h * GD_BOX_K) / gs);
                    const unsigned char *xs = st + wbytes + (size_t)h * 8 * NT * 128;
                    uint32_t bfr[NT / 2][4];
#pragma unroll
                    for (int p = 0; p < NT / 2; p++) /* sequences p·16 .. p·16 + 15 */
                        ldmatrix_x4(bfr[p], xs + swz(p * 16 + ((lane >> 4) & 1) * 8 + (lane & 7), c2 + ((lane >> 3) & 1)));
#pragma unroll
                    for (int i = 0; i < GD_MT; i++) {
                        if (i >= mine) break;
                        uint32_t afr[4];
                        ldmatrix_x4(afr, st + (size_t)(h * L.slots + warp * L.mt + i) * 2048 +
                                             swz(((lane >> 3) & 1) * 8 + (lane & 7), c2 + (lane >> 4)));
#pragma unroll
                        for (int p = 0; p < NT / 2; p++) {
                            mma_16816(acc[i][2 * p], afr, bfr[p][0], bfr[p][1]);
                            mma_16816(acc[i][2 * p + 1], afr, bfr[p][2], bfr[p][3]);
                        }
                    }
                }
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(&empty[s]);
        }
        if (WG) { /* the group's last batch: finished, its stage released */
            wgmma_wait<0>();
            fence_acc();
            __syncwarp();
            if (lane == 0 && held >= 0) mbar_arrive(&empty[held]);
            held = -1;
        }
        if (PRO == PRO_RMSNORM) /* the sums of the group's last stage (after its barrier) */
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) rs[n][e] = rsqrtf(ssum[j % 3 * R + n * 8 + q + e] * (1.0f / K) + a.eps);
#pragma unroll
        for (int i = 0; i < GD_MT; i++) {
            if (WG ? wg + 2 * i >= mb : i >= mine) continue;
            const int r0 = WG ? (first + (wg + 2 * i) * 4 + wq) * 16 : (first + warp * L.mt + i) * 16; /* the 16 rows' first */
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int r = r0 + g + (c >> 1) * 8, b = n * 8 + q + (c & 1);
                    const float v = PRO == PRO_RMSNORM      ? acc[i][n][c] * rs[n][c & 1]
                                    : PRO == PRO_GROUPSCALE ? acc[i][n][c] * gscale[cur * R + n * 8 + q + (c & 1)]
                                    : PRO == PRO_ROWSCALE   ? acc[i][n][c] * rsb[n][c & 1]
                                                            : acc[i][n][c];
                    /* WG: a block's rows past the group's (its last 64-row block) are the next group's */
                    if (r < last * 16 && r < a.rows && b < nb) gd_finish<EPI>(a, b, r, v, L.splits > 1);
                }
        }
    }
    if (EPI == EPI_RESIDUAL && a.xw_next) { /* the hand-off (above): this block's adds are all issued */
        volatile int *last_slice = (volatile int *)ssum; /* RMSNorm's sums: not this epilogue's */
        asm volatile("bar.sync 1, %0;\n" ::"r"(GD_CONSUMERS * 32) : "memory");
        if (tid == 0) {
            *last_slice = atomic_add_acq_rel(&a.tickets[bi], 1u) == (unsigned)L.splits - 1;
            if (*last_slice) a.tickets[bi] = 0; /* every slice has counted: the next launch starts from 0 */
        }
        asm volatile("bar.sync 1, %0;\n" ::"r"(GD_CONSUMERS * 32) : "memory");
        if (*last_slice) gd_hand_off<NT>(a, t_begin * 16, min(t_end * 16, a.rows), warp, lane);
    }
}

/* cuTensorMapEncodeTiled, from the driver (the static runtime does not link libcuda) */
typedef CUresult (*EncodeTiled)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *, const cuuint64_t *,
                                const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
static EncodeTiled encoder() {
    static EncodeTiled fn = NULL;
    static bool asked = false;
    if (!asked) {
        asked = true;
        void *p = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (EncodeTiled)p;
    }
    return fn;
}

/** The tensor map of a matrix [rows, cols] of bf16 (@p elem 2) or fp32 (4) with row stride @p ld
 *  elements, read as boxes of 128 bytes of columns × @p box_rows rows with the 128-byte swizzle (rows
 *  and columns outside the matrix come as zeros). */
static bool input_map(CUtensorMap *m, const void *base, int elem, int rows, int cols, int ld, int box_rows) {
    EncodeTiled enc = encoder();
    if (!enc) return false;
    const cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)ld * elem};
    const cuuint32_t box[2] = {(cuuint32_t)(128 / elem), (cuuint32_t)box_rows}, estr[2] = {1, 1};
    return enc(m, elem == 2 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, (void *)base, dims, strides,
               box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

bool gemm_decode_enabled() {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("MAMBA2_GPU_GEMM_DECODE");
        on = !(e && *e == '0');
    }
    return on;
}

bool gemm_decode_takes(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, const void *X, int ldx) {
    if (!gemm_decode_enabled() || (epi != EPI_STORE && epi != EPI_RESIDUAL) || a.wf != GEMV_BF16 || !a.W || a.nb < GD_MIN_NB || a.nb > GD_MAX_NB) return false;
    if (a.xw_out) return false; /* the GEMV path's hand-off */
    const bool hand_off = a.xw_next || a.ss_out; /* the decode GEMM's: all of it, added to the residual */
    if (hand_off && (epi != EPI_RESIDUAL || !a.xw_next || !a.ss_out || !a.next_w || !a.tickets || gpu_sm_count() > GEMM_DECODE_TICKETS))
        return false;
    /* the prologues: RMSNorm's sum must see all of K (a stored product, never split); the grouped norm's
     * groups whole boxes of 64 columns */
    if (pro == PRO_RMSNORM && (epi != EPI_STORE || !a.in_w || (uintptr_t)a.in_w % 16)) return false;
    if (pro == PRO_ROWSCALE && (epi != EPI_STORE || !a.ss_in)) return false;
    if ((pro == PRO_GATEDNORM || pro == PRO_GROUPSCALE) && (!a.ss_in || a.groups < 1 || a.cols % a.groups || (a.cols / a.groups) % GD_BOX_K))
        return false;
    if (pro == PRO_GROUPSCALE && (epi != EPI_RESIDUAL || a.groups > GD_MAX_GROUPS)) return false; /* out_proj's use only */
    /* 16-column steps whole; what the tensor maps need: 16-byte aligned bases and row strides */
    const int per16 = GD_PRO_CONVERTS(pro) ? 4 : 8;
    return encoder() && a.cols % 16 == 0 && ldx % per16 == 0 && (uintptr_t)a.W % 16 == 0 && (uintptr_t)X % 16 == 0;
}

/** The plan of a product over @p nt column tiles: slices of K, only for EPI_RESIDUAL (where partial
 *  sums can be added atomically), as many as bring each block to at least 6 tiles of 16 rows (out_proj
 *  of the 7B: 4,096 rows, 2 tiles a block on 132 multiprocessors: 4 slices), at most one per 128
 *  columns (MAMBA2_GPU_GEMM_DECODE_SPLITS overrides it for A/B runs); groups of at most GD_GROUP_TILES
 *  tiles; two boxes of columns a stage where that still leaves 4 stages in shared memory, else one.
 *  @p xw: 128-byte rows per input row and box (GD_XW); @p table: bytes of PRO_GROUPSCALE's scales (else 0). */
static GdLayout gd_plan(int epi, const GemvArgs &a, int nt, int xw, bool wg, unsigned table) {
    static int env_splits = -1;
    if (env_splits < 0) {
        const char *sp = getenv("MAMBA2_GPU_GEMM_DECODE_SPLITS");
        env_splits = sp && *sp ? std::max(atoi(sp), 1) : 0;
    }
    GdLayout L;
    const int sms = gpu_sm_count(), tiles = (a.rows + 15) / 16;
    L.splits = 1;
    if (epi == EPI_RESIDUAL) {
        L.splits = env_splits ? env_splits : (6 * sms + tiles - 1) / tiles;
        L.splits = std::max(1, std::min({L.splits, a.cols / 128, 8, sms}));
    }
    L.blocks = std::min(sms / L.splits, tiles);
    const int per_block = (tiles + L.blocks - 1) / L.blocks;
    L.groups = (per_block + GD_GROUP_TILES - 1) / GD_GROUP_TILES;
    L.slots = (per_block + L.groups - 1) / L.groups;
    L.mt = L.slots <= GD_CONSUMERS ? 1 : 2;
    /* wgmma reads 64-row blocks: the last block of a group may reach 3 tiles past its box, into the next
     * box or stage (rows whose sums are dropped), or past the last stage: slack there */
    const unsigned slack = wg ? 3 * 2048 : 0;
    for (L.kboxes = 2; L.kboxes >= 1; L.kboxes--) {
        L.xf = (unsigned)L.kboxes * (L.slots * 2048 + 8 * nt * 128);
        L.stage_bytes = L.xf + (xw > 1 ? (unsigned)L.kboxes * 2 * 8 * nt * 128 : 0); /* a multiple of 1,024 */
        L.stages = std::min(8, (int)((SMEM_MAX - 1024 - slack - 16 * 8 - 3 * 64 * 4 - table) / L.stage_bytes));
        if (L.stages >= 4 || L.kboxes == 1) break;
    }
    L.bar = (unsigned)L.stages * L.stage_bytes + slack;
    L.total = L.bar + (unsigned)L.stages * 16 + 3 * 8 * nt * 4 + table + 1024;
    return L;
}

/* The consumers' instruction (gemm_decode_use_wgmma()): 0 mma.sync, 1 wgmma, 2 wgmma from
 * GD_WGMMA_MIN_NB sequences and mma.sync below (the default; MAMBA2_GPU_GEMM_DECODE_WGMMA=0 or 1 for
 * the process): wgmma ran the products at 32 and 64 sequences faster than mma.sync, and the model at
 * 8 and 16 sequences slower (results/gpu.md, "The decode GEMM on wgmma"). */
#define GD_WGMMA_MIN_NB 17
static int g_wgmma = -1;

static int wgmma_mode() {
    if (g_wgmma < 0) {
        const char *e = getenv("MAMBA2_GPU_GEMM_DECODE_WGMMA");
        g_wgmma = e && (*e == '0' || *e == '1') ? *e - '0' : 2;
    }
    return g_wgmma;
}

int gemm_decode_use_wgmma(int mode) {
    const int was = wgmma_mode();
    if (mode >= 0 && mode <= 2) g_wgmma = mode;
    return was;
}

template <int NT, int PRO, int EPI> static int gd_launch(const GemvArgs &a, const void *X, int ldx, cudaStream_t s) {
    static const bool prepared = (gemm_decode_prepare(), true); /* where the backend did not already */
    (void)prepared;
    const int mode = wgmma_mode();
    const bool wg = mode == 1 || (mode == 2 && a.nb >= GD_WGMMA_MIN_NB);
    const GdLayout L = gd_plan(EPI, a, NT, GD_XW(PRO), wg, PRO == PRO_GROUPSCALE ? (unsigned)a.groups * 8 * NT * 4 : 0u);
    GdMaps maps;
    bool ok = input_map(&maps.x, X, GD_PRO_CONVERTS(PRO) ? 4 : 2, a.nb, a.cols, ldx, 8 * NT);
    for (int n = 1; n <= GD_GROUP_TILES; n++) ok = ok && input_map(&maps.w[n - 1], a.W, 2, a.rows, a.cols, a.cols, 16 * n);
    if (!ok) return -1; /* gemm_decode_takes() checked what the encoder asks: not expected */
    if (wg) launch_pdl(gemm_decode_kernel<NT, PRO, EPI, true>, dim3(L.blocks * L.splits), dim3(GD_THREADS), L.total, s, a, maps, L);
    else launch_pdl(gemm_decode_kernel<NT, PRO, EPI, false>, dim3(L.blocks * L.splits), dim3(GD_THREADS), L.total, s, a, maps, L);
    return 0;
}

template <int PRO, int EPI> static int gd_launch_nt(const GemvArgs &a, const void *X, int ldx, cudaStream_t s) {
    switch (gd_ntiles(a.nb)) {
    case 2: return gd_launch<2, PRO, EPI>(a, X, ldx, s);
    case 4: return gd_launch<4, PRO, EPI>(a, X, ldx, s);
    default: return gd_launch<8, PRO, EPI>(a, X, ldx, s);
    }
}

int launch_gemm_decode(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, const void *X, int ldx, cudaStream_t s) {
    if (pro == PRO_RMSNORM) return gd_launch_nt<PRO_RMSNORM, EPI_STORE>(a, X, ldx, s);
    if (pro == PRO_GATEDNORM)
        return epi == EPI_RESIDUAL ? gd_launch_nt<PRO_GATEDNORM, EPI_RESIDUAL>(a, X, ldx, s) : gd_launch_nt<PRO_GATEDNORM, EPI_STORE>(a, X, ldx, s);
    if (pro == PRO_GROUPSCALE) return gd_launch_nt<PRO_GROUPSCALE, EPI_RESIDUAL>(a, X, ldx, s);
    if (pro == PRO_ROWSCALE) return gd_launch_nt<PRO_ROWSCALE, EPI_STORE>(a, X, ldx, s);
    return epi == EPI_RESIDUAL ? gd_launch_nt<PRO_NONE, EPI_RESIDUAL>(a, X, ldx, s) : gd_launch_nt<PRO_NONE, EPI_STORE>(a, X, ldx, s);
}

template <int PRO, int EPI, bool WG> static void gd_raise_wg() {
    cudaFuncSetAttribute(gemm_decode_kernel<2, PRO, EPI, WG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
    cudaFuncSetAttribute(gemm_decode_kernel<4, PRO, EPI, WG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
    cudaFuncSetAttribute(gemm_decode_kernel<8, PRO, EPI, WG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
}

template <int PRO, int EPI> static void gd_raise() { gd_raise_wg<PRO, EPI, false>(), gd_raise_wg<PRO, EPI, true>(); }

void gemm_decode_prepare() {
    gd_raise<PRO_NONE, EPI_STORE>(), gd_raise<PRO_NONE, EPI_RESIDUAL>(), gd_raise<PRO_RMSNORM, EPI_STORE>();
    gd_raise<PRO_GATEDNORM, EPI_STORE>(), gd_raise<PRO_GATEDNORM, EPI_RESIDUAL>(), gd_raise<PRO_GROUPSCALE, EPI_RESIDUAL>();
    gd_raise<PRO_ROWSCALE, EPI_STORE>();
}
