/**
 * @file gemm_q8_skinny.cu
 * @brief The q8 GEMM for few tokens (decode of 5–64 sequences, prompts of at most 64 tokens):
 *        out[n][r] (+)= Σ_k x[n][k] · bf16(d[r][k / 64] · q[r][k]), weights streamed from memory
 *        straight into registers, each read once, the activations held in shared memory.
 *
 * At these T the product is bound by reading the weights, 1 + 2/64 bytes each, so the kernel is
 * built around that stream rather than around tiles of the output (gemm_q8.cu's design, which
 * stages 128 rows × 64 columns per block through shared memory and a barrier):
 *
 *  - Each warp walks 16 weight rows 128 columns (2 q8 scale blocks, one 128-byte line of each row)
 *    at a time. Lane l (g = l / 4, t = l % 4) loads, with two 16-byte loads per row, the 32 weights
 *    32t .. 32t + 31 of the step of rows g and g + 8, and their two scales (one a row: scale block
 *    t / 2 of the step, which lanes t = 0, 1 and t = 2, 3 share): the lane's whole share of the
 *    step in registers, no shared memory, no barrier. D steps are in flight per warp (a ring of
 *    registers, the loop unrolled D times so that every index into it is a constant).
 *  - The activations of the block's slice of K (all T tokens, rounded up to BN = 8, 16, 32 or
 *    64 rows, zeros beyond T) are copied into shared memory once, when the block starts, and read
 *    by every warp of the block for every row it streams.
 *  - The k order inside a step is free as long as weights and activations agree: MMA j (j = 0..7,
 *    k16 each) takes the lane's weights 32t + 4j .. 32t + 4j + 3 as the A fragment's columns
 *    (q, q+1 | q+8, q+9) of mma_bf16.cuh, widened exactly as gemm_q8.cu widens them (one byte
 *    permute and one FMA a weight, bf16(d · q) rounded once: the same operands, so the same sums
 *    but for the order of the fp32 additions); the B fragment of token g is then
 *    x[g][32t + 4j .. 32t + 4j + 3], 8 bytes; two MMAs share one 16-byte shared load. The 16-byte
 *    pieces of x are stored XOR-swizzled (piece p of lane group t at p ^ t) with a row pitch of
 *    64 bytes modulo 128, so that the 8 lanes of each quarter warp hit 8 different bank groups.
 *  - Work division (stream-K): K is cut into `splits` slices, each small enough that its
 *    activations fit in 128 KB of shared memory (1 slice up to 8 tokens × 8,192 columns or
 *    16 × 4,096; 4 for 64 tokens × 4,096). One block per SM; the blocks of a slice share
 *    its (row group, step) pairs, numbered row group by row group, in equal contiguous ranges, and
 *    each warp takes an equal contiguous part of its block's range. So every warp streams the same
 *    number of bytes (± one step), whatever the number of rows, with no second wave. A warp adds its
 *    fp32 sums to the output (atomically) whenever it leaves a row group: once per row group and
 *    slice, plus once where a range ends inside a row group; where the output is [T, rows] with
 *    rows a multiple of 4, two lane exchanges gather 4 consecutive rows of one token in each lane
 *    and one 16-byte reduction (red.global.add.v4.f32) adds them, a quarter of the atomic
 *    operations at the L2. The output is zeroed first unless the product adds to it.
 *
 * Warps per block and steps in flight per warp (D), per token width: the registers of an SM
 * (64 K) hold warps × (D · 18 + the accumulators, BN / 2, + about 40) per lane, so the wider the
 * token tile, the fewer warps or stages; 8 tokens: 16 warps × 4 steps, 16 tokens: 8 × 8, 32 tokens:
 * 12 × 4, 64 tokens: 8 × 6, each the fastest alone of three shapes measured (16 tokens: as fast as
 * 16 × 4; results/gpu.md).
 *
 * Taken (gemm_q8_skinny_fits()) for fp32 outputs, stored contiguously or added to, T ≤ 64 and K a
 * multiple of 128; gemm_q8.cu takes everything else (bf16 outputs, more tokens, other K).
 * MAMBA2_GPU_Q8_SKINNY=0 in the environment sends everything to gemm_q8.cu, =2 keeps this kernel
 * but with 4-byte atomic additions only (for comparisons).
 */
#include <algorithm>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.cuh"
#include "mma_bf16.cuh"

namespace {

constexpr int STEP = 128;                 /* columns a warp step: 2 q8 scale blocks, one 128-byte line per row */
constexpr int X_SLICE_BYTES = 128 * 1024; /* the activations of a slice, without padding */
constexpr int XPAD = 32;                  /* bf16 after each token's row: pitch ≡ 64 bytes (mod 128) */
constexpr int MIN_STEPS = 4;              /* per warp at least, where the shape allows: fewer blocks below */

/* Columns of the activations held per token: the slice width for BN tokens (a multiple of STEP). */
template <int BN> __host__ __device__ constexpr int slice_cols() { return X_SLICE_BYTES / (2 * BN); }
template <int BN> __host__ __device__ constexpr int x_pitch() { return slice_cols<BN>() + XPAD; }
template <int BN> __host__ __device__ constexpr int smem_bytes() { return BN * x_pitch<BN>() * 2; }

/* 16 bytes from global memory, read once: not kept in L1. */
__device__ __forceinline__ uint4 ldg_stream16(const void *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* 16 bytes of shared memory at the 32-bit shared address @p a. */
__device__ __forceinline__ uint4 lds16(uint32_t a) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
    return v;
}

/* out[0..3] += v[0..3] in one reduction of 16 bytes at the L2 (16-byte aligned @p out). */
__device__ __forceinline__ void red_add4(float *out, float v0, float v1, float v2, float v3) {
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(out), "f"(v0), "f"(v1), "f"(v2), "f"(v3) : "memory");
}

/* Word @p j (0..7) of a lane's 32 weights of one row, held as two uint4. */
__device__ __forceinline__ uint32_t word_of(const uint4 (&w)[2], int j) {
    const uint4 &v = w[j >> 2];
    return (j & 3) == 0 ? v.x : (j & 3) == 1 ? v.y : (j & 3) == 2 ? v.z : v.w;
}

/* One step's share of a lane: 32 weights of rows g and g + 8 (columns 32t .. 32t + 31 of the step),
 * their scales. */
struct Step {
    uint4 a[2], b[2];
    unsigned short sa, sb;
};

/*
 * Grid: splits × blocks_per_slice blocks (block b: slice b % splits). Slice s covers the columns of
 * steps [s · cps, min(NC, (s + 1) · cps)) of the NC = K / 128 steps of a row. @p quads: the output
 * takes 16-byte reductions (see the file comment).
 */
template <int BN, int D, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, 1)
    gemm_q8_skinny_kernel(GpuQ8 W, const bf16 *X, int ldx, int T, GemmQ8Out o, int splits, int cps, int quads) {
    constexpr int NT = BN / 8, XP = x_pitch<BN>(), THREADS = WARPS * 32;
    extern __shared__ __align__(16) unsigned char smem[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int NC = W.Kq / STEP, nsb = W.Kq / Q8_SCALE_BLOCK; /* steps and scales a row */
    const int slice = blockIdx.x % splits, bps = gridDim.x / splits, bi = blockIdx.x / splits;
    const int c0 = slice * cps, ncs = min(cps, NC - c0); /* this slice's steps */
    const int RG = (W.rows + 15) / 16;
    const long long F = (long long)RG * ncs; /* (row group, step) pairs of the slice */
    const long long b0 = F * bi / bps, b1 = F * (bi + 1) / bps;
    const int f0 = (int)(b0 + (b1 - b0) * warp / WARPS), f1 = (int)(b0 + (b1 - b0) * (warp + 1) / WARPS);

    /* The loads of pair f: row group lrg, step lck of the slice. */
    int lrg = f0 / max(ncs, 1), lck = f0 - lrg * ncs;
    Step st[D];
    auto load = [&](Step &s) {
        const int ra = min(lrg * 16 + g, W.rows - 1), rb = min(lrg * 16 + g + 8, W.rows - 1);
        const int col = (c0 + lck) * STEP + 32 * t;
        const int8_t *pa = W.q + (size_t)ra * W.Kq + col, *pb = W.q + (size_t)rb * W.Kq + col;
        s.a[0] = ldg_stream16(pa), s.a[1] = ldg_stream16(pa + 16);
        s.b[0] = ldg_stream16(pb), s.b[1] = ldg_stream16(pb + 16);
        s.sa = __ldg(W.d + (size_t)ra * nsb + col / Q8_SCALE_BLOCK), s.sb = __ldg(W.d + (size_t)rb * nsb + col / Q8_SCALE_BLOCK);
        if (++lck == ncs) lck = 0, lrg++;
    };
#pragma unroll
    for (int i = 0; i < D - 1; i++)
        if (f0 + i < f1) load(st[i]);

    /* The slice's activations, tokens [0, BN) (zeros from T on), columns swizzled by 16-byte piece. */
    {
        const int pieces = ncs * (STEP / 8);
        for (int i = tid; i < BN * pieces; i += THREADS) {
            const int n = i / pieces, k = (i - n * pieces) * 8;
            const int kd = (k & ~31) | ((((k >> 3) & 3) ^ ((k >> 5) & 3)) << 3);
            const bool ok = n < T;
            cp_async16(smem + ((size_t)n * XP + kd) * 2, ok ? (const void *)(X + (size_t)n * ldx + c0 * STEP + k) : (const void *)X,
                       ok);
        }
        cp_async_commit();
        cp_async_wait_all();
        __syncthreads();
    }

    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[nt][i] = 0.0f;

    /* lane's x address: token g of each n8 tile, its 64 bytes of a step (pieces swizzled by t) */
    const uint32_t xs = smem_u32(smem) + (uint32_t)(g * XP + 32 * t) * 2;
    int crg = f0 / max(ncs, 1), cck = f0 - crg * ncs; /* the pair being consumed */
    float *out = (float *)o.out;

    for (int base = f0; base < f1; base += D) {
#pragma unroll
        for (int s = 0; s < D; s++) {
            const int f = base + s;
            if (f >= f1) break;
            if (f + D - 1 < f1) load(st[(s + D - 1) % D]);
            const Step &c = st[s];
            const float da = __half2float(__ushort_as_half(c.sa)), db = __half2float(__ushort_as_half(c.sb));
            const float Sa = da * 32768.0f, Ca = da * -32896.0f, Sb = db * 32768.0f, Cb = db * -32896.0f;
            const uint32_t xstep = xs + (uint32_t)cck * (STEP * 2);
#pragma unroll
            for (int jp = 0; jp < 4; jp++) {
                uint32_t A0[4], A1[4]; /* MMAs j = 2jp and 2jp + 1 */
                q8x4_to_bf16(word_of(c.a, 2 * jp), Sa, Ca, A0[0], A0[2]);
                q8x4_to_bf16(word_of(c.b, 2 * jp), Sb, Cb, A0[1], A0[3]);
                q8x4_to_bf16(word_of(c.a, 2 * jp + 1), Sa, Ca, A1[0], A1[2]);
                q8x4_to_bf16(word_of(c.b, 2 * jp + 1), Sb, Cb, A1[1], A1[3]);
                const uint32_t xa = xstep + (uint32_t)((jp ^ t) * 16);
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const uint4 xv = lds16(xa + nt * 8 * XP * 2); /* x[nt·8 + g][32t + 8jp .. + 7] */
                    mma_16816(acc[nt], A0, xv.x, xv.y);
                    mma_16816(acc[nt], A1, xv.z, xv.w);
                }
            }
            if (cck == ncs - 1 || f == f1 - 1) { /* leaving the row group: add the sums to the output */
                if (quads) {
                    /* Two exchanges give each lane 4 consecutive rows of one token (lane g = 4a + b:
                     * token 2t + (b & 1), rows 4a .. 4a + 3, + 8 where b & 2): one 16-byte reduction
                     * instead of four. 1: partners b, b ^ 1 swap so that each holds its token for
                     * rows (g & ~1, + 1) and the same + 8; 2: partners b, b ^ 2 swap those pairs. */
                    const bool odd = g & 1, hi = g & 2;
                    const int n0 = 2 * t + (g & 1), r0 = crg * 16 + (g & ~3) + (hi ? 8 : 0);
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        const float *v = acc[nt]; /* rows g, g + 8 × tokens 2t, 2t + 1 */
                        const float r1a = __shfl_xor_sync(0xffffffffu, odd ? v[0] : v[1], 4);
                        const float r1b = __shfl_xor_sync(0xffffffffu, odd ? v[2] : v[3], 4);
                        const float p0 = odd ? r1a : v[0], p1 = odd ? v[1] : r1a; /* rows g & ~1, + 1 */
                        const float q0 = odd ? r1b : v[2], q1 = odd ? v[3] : r1b; /* the same + 8 */
                        const float u0 = __shfl_xor_sync(0xffffffffu, hi ? p0 : q0, 8);
                        const float u1 = __shfl_xor_sync(0xffffffffu, hi ? p1 : q1, 8);
                        const int n = nt * 8 + n0;
                        if (r0 < W.rows && n < T) {
                            float *dst = out + (size_t)n * o.ldn + r0;
                            if (hi) red_add4(dst, u0, u1, q0, q1);
                            else red_add4(dst, p0, p1, u0, u1);
                        }
                    }
                } else {
                    const int ra = crg * 16 + g, rb = ra + 8;
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            const int r = i < 2 ? ra : rb, n = nt * 8 + 2 * t + (i & 1);
                            if (r < W.rows && n < T) atomicAdd(out + (size_t)n * o.ldn + (size_t)r * o.ldr, acc[nt][i]);
                        }
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) acc[nt][i] = 0.0f;
            }
            if (++cck == ncs) cck = 0, crg++;
        }
    }
}

/* MAMBA2_GPU_Q8_SKINNY in the environment (for comparisons): 0 every product to gemm_q8.cu; 2 this
 * kernel with one atomic addition per output element (no 16-byte reductions); otherwise 1, all on. */
int skinny_mode() {
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("MAMBA2_GPU_Q8_SKINNY");
        mode = e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "2") ? 2 : 1;
    }
    return mode;
}

template <int BN, int D, int WARPS>
void launch_bn(const GpuQ8 &W, const bf16 *X, int ldx, int T, const GemmQ8Out &o, int splits, cudaStream_t s) {
    static bool attr = false; /* over 48 KB of dynamic shared memory needs the opt-in, once per kernel */
    if (!attr) {
        cudaFuncSetAttribute(gemm_q8_skinny_kernel<BN, D, WARPS>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes<BN>());
        attr = true;
    }
    const int NC = W.Kq / STEP, max_cps = slice_cols<BN>() / STEP, RG = (W.rows + 15) / 16;
    if (splits <= 0) splits = (NC + max_cps - 1) / max_cps;
    splits = std::min(std::max(splits, (NC + max_cps - 1) / max_cps), std::min(NC, gpu_sm_count()));
    const int cps = (NC + splits - 1) / splits;
    splits = (NC + cps - 1) / cps;
    /* blocks per slice: all SMs between the slices, fewer where warps would get under MIN_STEPS steps */
    const long long pairs = (long long)RG * cps;
    const int want = (int)std::max(1LL, (pairs + (long long)WARPS * MIN_STEPS - 1) / ((long long)WARPS * MIN_STEPS));
    const int bps = std::max(1, std::min(gpu_sm_count() / splits, want));
    if (!o.add) cudaMemsetAsync(o.out, 0, (size_t)T * W.rows * 4, s);
    /* [T, rows] with rows a multiple of 4 and 16-byte aligned: the sums leave in 16-byte reductions */
    const int quads = skinny_mode() != 2 && o.ldr == 1 && o.ldn % 4 == 0 && W.rows % 4 == 0 && ((uintptr_t)o.out & 15) == 0;
    gemm_q8_skinny_kernel<BN, D, WARPS><<<bps * splits, WARPS * 32, smem_bytes<BN>(), s>>>(W, X, ldx, T, o, splits, cps, quads);
}

} // namespace

bool gemm_q8_skinny_fits(const GpuQ8 &W, int ldx, int T, const GemmQ8Out &o) {
    const bool off = skinny_mode() == 0;
    return !off && T >= 1 && T <= GEMM_Q8_SKINNY_MAX_T && !o.bf16 && (o.add || gemm_q8_out_contiguous(W, T, o)) &&
           W.rows > 0 && W.Kq % STEP == 0 && W.K == W.Kq && ldx % 8 == 0;
}

void launch_gemm_q8_skinny(const GpuQ8 &W, const bf16 *X, int ldx, int T, const GemmQ8Out &o, int splits, cudaStream_t s) {
    if (T <= 8) launch_bn<8, 4, 16>(W, X, ldx, T, o, splits, s);
    else if (T <= 16) launch_bn<16, 8, 8>(W, X, ldx, T, o, splits, s);
    else if (T <= 32) launch_bn<32, 4, 12>(W, X, ldx, T, o, splits, s);
    else launch_bn<64, 6, 8>(W, X, ldx, T, o, splits, s);
}
