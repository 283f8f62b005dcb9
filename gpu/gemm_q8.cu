/**
 * @file gemm_q8.cu
 * @brief The GEMM over q8 weights for prefill and for decode beyond the GEMV path's 4 sequences
 *        (fp32 products of at most 64 tokens, K a multiple of 128, are handed to gemm_q8_skinny.cu):
 *        out[n][r] = Σ_k x[n][k] · d[r][k / 64] · q[r][k], the weights read as stored (1 + 2/64 bytes
 *        each) and turned into bf16 in registers, just before the tensor cores (mma.sync m16n8k16).
 *
 * Tiles: a block of 4 warps computes 128 weight rows × BN tokens (BN = 16, 32, 64 or 128), each warp
 * 32 rows (two m16 tiles) × all BN tokens, walking K 64 columns (one q8 scale block) at a time
 * through a 4-stage cp.async pipeline that holds, per stage,
 *
 *     w  [128][64]      int8   the weights' values (64 bytes a row)
 *     s  [128][2]       fp16   the scales: the 4-byte word that holds the row's scale of the tile
 *                              (rows of Kq / 64 scales: a row's scale is 4-byte aligned or not
 *                              by the parity of its index, which the reader works out)
 *     x  [BN][64 + 8]   bf16   the activations (rows padded by 16 bytes: no bank conflicts below)
 *
 * The k order inside a tile is free, as long as the weights and the activations agree on it (the
 * product sums over k). Lane l of a warp (g = l / 4, t = l % 4) loads the 16 consecutive weights
 * k = 16t .. 16t+15 of its rows g and g + 8 (one 16-byte shared load each), widens them to bf16 with
 * the row's scale of the tile, and gives MMA j (j = 0..3, k16 each) the four
 * weights 16t + 4j .. 16t + 4j + 3 as the A fragment's columns (q, q+1 | q+8, q+9) of mma_bf16.cuh;
 * the B fragment of token g then needs x[g][16t + 4j .. 16t + 4j + 3], again 8 consecutive bytes,
 * so each lane's activations for the whole tile are two 16-byte loads. No ldmatrix, no shuffles.
 *
 * The weights are rounded as the dequantization into bf16 rounds them (q8_matrix.cu), bf16(d · q)
 * from the exact fp32 product, so the sums equal cuBLAS' over the dequantized matrix but for the
 * order of the fp32 additions.
 *
 * Fewer tiles than the GPU holds at once (the decode shapes: one token tile) split K across
 * blocks (grid z), whose fp32 partial sums meet in the output by atomic addition (the output zeroed
 * first unless the product adds to it).
 */
#include <algorithm>

#include "kernels.cuh"
#include "mma_bf16.cuh"

namespace {

constexpr int THREADS = 128;         /* 4 warps */
constexpr int WARP_ROWS = 32;        /* two m16 tiles */
constexpr int BM = 4 * WARP_ROWS;    /* weight rows per block */
constexpr int BK = 64;               /* k per pipeline stage: one q8 scale block */
constexpr int XPITCH = BK + 8;       /* bf16 per activation row in shared memory */
constexpr int STAGES = 4;
constexpr int W_BYTES = BM * BK;     /* w [BM][BK] int8 */
constexpr int S_BYTES = BM * 4;      /* s [BM][2] fp16 */
static_assert(BK == Q8_SCALE_BLOCK, "a stage's columns share one scale per row");

/* Blocks per SM the register allocation must leave room for: as many as the shared memory holds
 * (4 stages: 43, 52, 70 and 106 KiB for BN = 16, 32, 64, 128), at most 4. */
#define MIN_BLOCKS(BN) ((BN) <= 32 ? 4 : (BN) == 64 ? 3 : 2)

template <int BN> __host__ __device__ constexpr int stage_bytes() { return W_BYTES + S_BYTES + BN * XPITCH * 2; }

/* As cp_async16 for 4 bytes of which the first @p bytes (0, 2 or 4) are read and the rest zero-filled. */
__device__ __forceinline__ void cp_async4_part(void *dst_smem, const void *src, int bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst_smem)), "l"(src), "r"(bytes));
}

/* One output element (row r of W, token n): stored, added, or atomically added (split K). */
__device__ __forceinline__ void store_out(const GemmQ8Out &o, int r, int n, float v) {
    size_t i = (size_t)n * o.ldn + (size_t)r * o.ldr;
    if (o.bf16) ((bf16 *)o.out)[i] = __float2bfloat16(v);
    else if (o.atomic) atomicAdd((float *)o.out + i, v);
    else if (o.add) ((float *)o.out)[i] += v;
    else ((float *)o.out)[i] = v;
}

/* Block (x: token tile, y: row tile, z: slice of K): out[n][r] (+)= Σ_k x[n][k] · bf16(d[r][k/64] · q[r][k])
 * for r in the row tile, n in the token tile and k in tiles [kt0, kt1) of BK columns. */
template <int BN>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS(BN))
    gemm_q8_kernel(GpuQ8 W, const bf16 *X, int ldx, int T, GemmQ8Out o, int kt_per_block) {
    constexpr int NT = BN / 8; /* n8 tiles per warp */
    extern __shared__ __align__(16) unsigned char smem[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int n0 = blockIdx.x * BN, r0 = blockIdx.y * BM;
    const int nkt = W.Kq / BK; /* tiles of K, each one scale block: scales per row */
    const int kt0 = blockIdx.z * kt_per_block, kt1 = min(nkt, kt0 + kt_per_block);
    const intptr_t d_end = (intptr_t)(W.d + (size_t)W.rows * nkt);
    const size_t d_half0 = (uintptr_t)W.d >> 1; /* the scales' address in halves: its parity places each scale in its word */

    /* Stage @p kt (columns 64·kt ..) into slot @p slot; out-of-range chunks are zero-filled. */
    auto load = [&](int kt, int slot) {
        unsigned char *st = smem + slot * stage_bytes<BN>();
        int8_t *sw = (int8_t *)st;
        uint32_t *ss = (uint32_t *)(st + W_BYTES);
        bf16 *sx = (bf16 *)(st + W_BYTES + S_BYTES);
        const int k0 = kt * BK; /* the tile's first column */
#pragma unroll
        for (int i = 0; i < BM * 4 / THREADS; i++) { /* w: 4 chunks of 16 bytes a row (Kq is a multiple of BK) */
            const int c = tid + i * THREADS;
            int r = c >> 2, ch = c & 3, row = r0 + r, kbyte = k0 + ch * 16;
            bool ok = row < W.rows;
            cp_async16(sw + r * BK + ch * 16, ok ? (const void *)(W.q + (size_t)row * W.Kq + kbyte) : (const void *)W.q, ok);
        }
#pragma unroll
        for (int i = 0; i < BM / THREADS; i++) { /* s: the aligned word that holds the row's scale */
            const int r = tid + i * THREADS, row = r0 + r;
            intptr_t scale = (intptr_t)(W.d + (size_t)min(row, W.rows - 1) * nkt + kt);
            intptr_t a = scale & ~(intptr_t)3;
            const intptr_t left = d_end - a; /* bytes of the scales array from a on: 2 or more (the scale is in it) */
            const int bytes = row >= W.rows ? 0 : left < 4 ? (int)left : 4;
            cp_async4_part(ss + r, (const void *)(bytes ? a : (intptr_t)W.d & ~(intptr_t)3), bytes);
        }
#pragma unroll
        for (int i = 0; i < BN * 8 / THREADS; i++) { /* x: 8 chunks of 8 bf16 a token (K % 8 == 0) */
            const int c = tid + i * THREADS;
            int n = c >> 3, ch = c & 7, tok = n0 + n, k = k0 + ch * 8;
            bool ok = tok < T && k < W.K;
            cp_async16(sx + n * XPITCH + ch * 8, ok ? (const void *)(X + (size_t)tok * ldx + k) : (const void *)X, ok);
        }
    };

    float acc[2][NT][4]; /* [m16 tile][n8 tile][C fragment] */
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][nt][i] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (kt0 + s < kt1) load(kt0 + s, s);
        cp_async_commit();
    }
    for (int kt = kt0; kt < kt1; kt++) {
        cp_async_wait_group<STAGES - 2>(); /* stage kt has landed (this thread's copies) ... */
        __syncthreads();                   /* ... everyone's; and the slot refilled below is free */
        if (kt + STAGES - 1 < kt1) load(kt + STAGES - 1, (kt - kt0 + STAGES - 1) % STAGES);
        cp_async_commit();

        const unsigned char *st = smem + ((kt - kt0) % STAGES) * stage_bytes<BN>();
        const int8_t *sw = (const int8_t *)st;
        const uint16_t *ss = (const uint16_t *)(st + W_BYTES);
        const bf16 *sx = (const bf16 *)(st + W_BYTES + S_BYTES);
        /* A fragments of the warp's two m16 tiles for the four k16 steps: a[mt][j][0..3] */
        uint32_t a[2][4][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            const int ra = warp * WARP_ROWS + mt * 16 + g, rb = ra + 8;
            const uint4 va = *(const uint4 *)(sw + ra * BK + 16 * t), vb = *(const uint4 *)(sw + rb * BK + 16 * t);
            const int pa = (int)((d_half0 + (size_t)(r0 + ra) * nkt + kt) & 1); /* the scale's half of its word */
            const int pb = (int)((d_half0 + (size_t)(r0 + rb) * nkt + kt) & 1);
            const float sa = __half2float(__ushort_as_half(ss[ra * 2 + pa]));
            const float sb = __half2float(__ushort_as_half(ss[rb * 2 + pb]));
            uint32_t fa[8], fb[8];
            q8x16_to_bf16(va, sa, fa);
            q8x16_to_bf16(vb, sb, fb);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                a[mt][j][0] = fa[2 * j], a[mt][j][1] = fb[2 * j];
                a[mt][j][2] = fa[2 * j + 1], a[mt][j][3] = fb[2 * j + 1];
            }
        }
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const bf16 *px = sx + (nt * 8 + g) * XPITCH + 16 * t;
            const uint4 x0 = *(const uint4 *)px, x1 = *(const uint4 *)(px + 8);
            const uint32_t xb[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w}; /* x[g][16t + 2i .. 2i+1] */
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int mt = 0; mt < 2; mt++) mma_16816(acc[mt][nt], a[mt][j], xb[2 * j], xb[2 * j + 1]);
        }
    }
    cp_async_wait_all();

    /* C fragment: acc[..][0..1] = rows g, tokens 2t, 2t+1; acc[..][2..3] = row g + 8, the same tokens */
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int ra = r0 + warp * WARP_ROWS + mt * 16 + g, rb = ra + 8, n = n0 + nt * 8 + 2 * t;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int r = i < 2 ? ra : rb, tok = n + (i & 1);
                if (r < W.rows && tok < T) store_out(o, r, tok, acc[mt][nt][i]);
            }
        }
}

template <int BN> void launch_bn(const GpuQ8 &W, const bf16 *X, int ldx, int T, GemmQ8Out o, int splits, cudaStream_t s) {
    static bool attr = false; /* over 48 KB of dynamic shared memory needs the opt-in, once per kernel */
    if (!attr) {
        cudaFuncSetAttribute(gemm_q8_kernel<BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, STAGES * stage_bytes<BN>());
        attr = true;
    }
    const int nkt = W.Kq / BK, row_tiles = (W.rows + BM - 1) / BM, tok_tiles = (T + BN - 1) / BN;
    if (splits <= 0) { /* enough blocks for three per SM, each slice at least 4 stages long */
        const int base = row_tiles * tok_tiles, target = 3 * gpu_sm_count();
        splits = base >= target ? 1 : std::min((target + base - 1) / base, std::max(1, nkt / 4));
    }
    if (o.bf16 || (!o.add && !gemm_q8_out_contiguous(W, T, o))) splits = 1; /* atomic partial sums need fp32 and a zeroed or added-to output */
    const int per = (nkt + std::max(splits, 1) - 1) / std::max(splits, 1);
    splits = per ? (nkt + per - 1) / per : 1;
    o.atomic = splits > 1;
    if (o.atomic && !o.add) cudaMemsetAsync(o.out, 0, (size_t)T * W.rows * 4, s);
    dim3 grid(tok_tiles, row_tiles, splits);
    gemm_q8_kernel<BN><<<grid, THREADS, STAGES * stage_bytes<BN>(), s>>>(W, X, ldx, T, o, per ? per : 1);
}

} // namespace

int gpu_sm_count() {
    static int sms = 0;
    if (!sms && (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms <= 0)) sms = 132;
    return sms;
}

bool gemm_q8_supported(const GpuQ8 &W, int ldx) { return W.K % 8 == 0 && ldx % 8 == 0; }

void launch_gemm_q8(const GpuQ8 &W, const bf16 *X, int ldx, int T, const GemmQ8Out &o, int splits, cudaStream_t s) {
    if (T <= 0 || W.rows <= 0) return;
    if (gemm_q8_skinny_fits(W, ldx, T, o)) return launch_gemm_q8_skinny(W, X, ldx, T, o, splits, s);
    if (T <= 16) launch_bn<16>(W, X, ldx, T, o, splits, s);
    else if (T <= 32) launch_bn<32>(W, X, ldx, T, o, splits, s);
    else if (T <= 64) launch_bn<64>(W, X, ldx, T, o, splits, s);
    else launch_bn<128>(W, X, ldx, T, o, splits, s);
}

GpuQ8 q8_rows(const GpuQ8 &W, int first, int n) {
    GpuQ8 v = W;
    v.q = W.q + (size_t)first * W.Kq;
    v.d = W.d + (size_t)first * (W.Kq / Q8_SCALE_BLOCK);
    v.rows = n;
    return v;
}
