/**
 * @file common.cuh
 * @brief Shared by the CUDA sources: error checks, bf16 helpers, warp and block reductions,
 *        and the device-side view of the weights.
 */
#ifndef MAMBA2_GPU_COMMON_CUH
#define MAMBA2_GPU_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "error.h"
}

/** The bf16 element type of weights and activations on the device. */
typedef __nv_bfloat16 bf16;

/** Fail the enclosing function (which returns int and has a Mamba2Error *err) on a CUDA error. */
#define CUDA_TRY(call)                                                                                      \
    do {                                                                                                    \
        cudaError_t e_ = (call);                                                                            \
        if (e_ != cudaSuccess)                                                                              \
            return mamba2_fail(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_));    \
    } while (0)

/** Same for cuBLAS calls. */
#define CUBLAS_TRY(call)                                                                                    \
    do {                                                                                                    \
        cublasStatus_t s_ = (call);                                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                    \
            return mamba2_fail(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cublasGetStatusString(s_)); \
    } while (0)

/** Check the last kernel launch. */
#define LAUNCH_TRY() CUDA_TRY(cudaGetLastError())

/** Dynamic shared memory one block may have on sm_90 (H100, H200), the kernels' budget. */
#define SMEM_MAX (227 * 1024)

/** Weights per fp16 scale of a q8 matrix, along K: the CPU's (cpu/qmatrix.h, QBLOCK_Q8), so that both
 *  quantize a matrix into the same integers and scales. */
#define Q8_SCALE_BLOCK 64
/** Inputs per block of the q8 products' int8 activations (x ≈ e · p per block, e = max|x| / 127, as
 *  the CPU's QBLOCK): the dp4a products sum Σ q·p over such a block (or half of it) before scaling. A
 *  weight scale covers Q8_SCALE_BLOCK / Q8_XBLOCK = 2 of them. */
#define Q8_XBLOCK 32

/**
 * A weight matrix W [rows, K] quantized to int8 at load (gpu/q8_matrix.cu), as the CPU quantizes
 * it: along K, blocks of Q8_SCALE_BLOCK weights with one fp16 scale d each, W[r][k] ≈ d · q,
 * q = round(W / d) ∈ [−127, 127], d = max|W| / 127 over the block. Values and scales are two
 * arrays, both row-major.
 */
struct GpuQ8 {
    const int8_t *q;    /**< [rows, Kq] values; columns K .. Kq hold zeros */
    const uint16_t *d;  /**< [rows, Kq / Q8_SCALE_BLOCK] fp16 bits of each block's scale */
    int rows;           /**< rows of W */
    int K;              /**< columns of W */
    int Kq;             /**< K rounded up to a multiple of Q8_SCALE_BLOCK (the row pitch of q) */
};

/**
 * @brief Bytes to allocate for the scales of a q8 matrix of @p rows rows and @p Kq columns:
 *        rows · Kq / Q8_SCALE_BLOCK halves, rounded up to whole 16-byte units.
 *
 * Two kernels copy whole aligned units around the scales they need, and compute-sanitizer checks
 * each copy as a read of the whole unit: gemm_q8.cu stages them in 4-byte cp.async copies (the last
 * one of an odd count copies 2 bytes and zero-fills the rest), gemv_stream.cu in bulk copies of
 * 16-byte units from the 16-byte boundary at or below a row group's first scale. The spare bytes
 * keep those reads inside the allocation; they are never used as a scale.
 */
inline size_t q8_scale_alloc_bytes(int rows, int Kq) {
    return ((size_t)rows * (Kq / Q8_SCALE_BLOCK) * 2 + 15) & ~(size_t)15;
}

/** The weights of one layer on the device. Big matrices bf16 (or q8), small vectors fp32. */
struct GpuLayer {
    const bf16 *in_proj;   /**< [d_in_proj, d] (NULL with q8 weights) */
    const bf16 *out_proj;  /**< [d, d_in] (NULL with q8 weights) */
    GpuQ8 in_proj_q8;      /**< q8 weights: in_proj quantized (q NULL otherwise) */
    GpuQ8 out_proj_q8;     /**< q8 weights: out_proj quantized (q NULL otherwise) */
    const float *norm_w;   /**< [d] */
    const float *conv_w;   /**< [conv_dim, K] */
    const float *conv_b;   /**< [conv_dim] (zeros without conv bias) */
    const float *dt_bias;  /**< [H] */
    const float *A;        /**< [H]  A = −exp(A_log), computed once at upload */
    const float *D;        /**< [H] */
    const float *gnorm_w;  /**< [d_in] */
};

/** Sizes every kernel needs, copied from the config. */
struct GpuDims {
    int d, L, H, P, N, G, K, V;
    int d_in, conv_dim, d_in_proj, Q;
    float eps, dt_min, dt_max;
};
/** @var GpuDims::d
 *      hidden size (d_model)
 * @var GpuDims::L
 *      layers
 * @var GpuDims::H
 *      heads
 * @var GpuDims::P
 *      channels per head (head_dim)
 * @var GpuDims::N
 *      state size (d_state)
 * @var GpuDims::G
 *      groups of B and C
 * @var GpuDims::K
 *      conv kernel width
 * @var GpuDims::V
 *      vocabulary size
 * @var GpuDims::d_in
 *      H·P
 * @var GpuDims::conv_dim
 *      d_in + 2·G·N
 * @var GpuDims::d_in_proj
 *      2·d_in + 2·G·N + H
 * @var GpuDims::Q
 *      chunk size of the chunked SSD
 * @var GpuDims::eps
 *      RMSNorm epsilon
 * @var GpuDims::dt_min
 *      lower clamp of dt (time_step_limit[0])
 * @var GpuDims::dt_max
 *      upper clamp of dt (time_step_limit[1]) */

/** Two floats rounded to bf16 in one 32-bit word, @p lo in the low half (the lower address). */
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&h;
}

/** Four int8 weights (one 32-bit word, the lowest byte first) times a scale s, given as
 *  @p S = s · 2¹⁵ and @p C = −s · (2¹⁵ + 2⁷), rounded to bf16 in pairs: @p lo = weights 0, 1 and
 *  @p hi = weights 2, 3; the same formula as q8x16_to_bf16(), which is four of these. */
__device__ __forceinline__ void q8x4_to_bf16(uint32_t v, float S, float C, uint32_t &lo, uint32_t &hi) {
    const uint32_t w = v ^ 0x80808080u;
    float f0 = fmaf(__uint_as_float(__byte_perm(w, 0x3F800000u, 0x7604)), S, C);
    float f1 = fmaf(__uint_as_float(__byte_perm(w, 0x3F800000u, 0x7614)), S, C);
    float f2 = fmaf(__uint_as_float(__byte_perm(w, 0x3F800000u, 0x7624)), S, C);
    float f3 = fmaf(__uint_as_float(__byte_perm(w, 0x3F800000u, 0x7634)), S, C);
    lo = pack_bf16x2(f0, f1);
    hi = pack_bf16x2(f2, f3);
}

/**
 * Sixteen int8 weights of a q8 block (one 16-byte load) times the block's scale @p s, rounded to bf16
 * in pairs:  out[i] = (bf16(s · q[2i]), bf16(s · q[2i + 1])), the low half first.
 * Two instructions a weight, no conversion instruction: the byte, offset to u = q + 128 ∈ [0, 255] by
 * flipping its top bit, is placed in mantissa bits 8..15 of 1.0f (one byte permute), giving
 * f = 1 + u · 2⁻¹⁵ exactly; then one fused multiply-add
 *     f · (s · 2¹⁵) − s · (2¹⁵ + 2⁷) = u · s − 128 · s = q · s
 * whose two constants are exact in fp32 (s has 11 significant bits, 2¹⁵ + 2⁷ = 2⁷ · 257) and whose
 * result, at most 11 + 7 significant bits, is exact too; it is then rounded once to bf16. The same
 * fp32 values, bit for bit, as (float)q · s, checked on the host for every finite fp16 s and every q.
 */
__device__ __forceinline__ void q8x16_to_bf16(uint4 v, float s, uint32_t out[8]) {
    const float S = s * 32768.0f, C = s * -32896.0f;
    q8x4_to_bf16(v.x, S, C, out[0], out[1]);
    q8x4_to_bf16(v.y, S, C, out[2], out[3]);
    q8x4_to_bf16(v.z, S, C, out[4], out[5]);
    q8x4_to_bf16(v.w, S, C, out[6], out[7]);
}

/** silu(v) = v · sigmoid(v). The fast division (2 ulp) gives 0 once 1 + e^−v passes 2^126
 *  (v below about −87), which is silu's limit there. */
__device__ __forceinline__ float silu_f(float v) { return __fdividef(v, 1.0f + __expf(-v)); }

/** softplus(v) = log(1 + e^v), v itself above 20 (torch / mamba_ssm threshold). */
__device__ __forceinline__ float softplus_f(float v) { return v > 20.0f ? v : log1pf(__expf(v)); }

/** dt = clamp(softplus(raw + bias), dt_min, dt_max): a head's step size from in_proj's dt row. */
__device__ __forceinline__ float dt_of(const GpuDims &g, float raw, float bias) {
    return fminf(fmaxf(softplus_f(raw + bias), g.dt_min), g.dt_max);
}

/** Sum over the 32 lanes of a warp; every lane gets the result. */
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/** Maximum over the 32 lanes of a warp; every lane gets the result. */
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/** Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result. */
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float part[32];
    __syncthreads(); /* part[] may still be read by a previous call */
    v = warp_sum(v);
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    if (lane == 0) part[w] = v;
    __syncthreads();
    v = lane < nw ? part[lane] : 0.0f;
    return warp_sum(v);
}

/* Programmatic dependent launch (sm_90): a kernel launched with launch_pdl() may start while the
 * previous one finishes; it must call pdl_wait() before touching anything that kernel wrote, and
 * calls pdl_trigger() to let its own successor start early. Before the wait, only constant data
 * (the weights) may be read, and data that no kernel since the last step writes (the SSD step
 * reads its layer's state early: only that kernel, one step before, wrote it). After the wait,
 * read what the previous kernel wrote with plain loads, never __ldg / ld.global.nc: a read-only
 * load promises the data does not change while the kernel runs, and ptxas may then move it above
 * the wait (it did in a trial decode GEMV: wrong logits on the GPU, right under compute-sanitizer,
 * which serialises kernels; results/gpu.md). */
/** Wait until the kernel launched before this one has finished (programmatic dependent launch). */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
/** Let the kernel launched after this one start early (it waits in pdl_wait()). */
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

/** Launch @p kernel with programmatic stream serialization (see pdl_wait()). */
template <typename... Params, typename... Args>
static inline void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                              Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr, cfg.numAttrs = 1;
    cudaLaunchKernelEx(&cfg, kernel, ((Params)args)...);
}

/** Round up to a multiple of m. */
__host__ __device__ __forceinline__ int round_up(int v, int m) { return (v + m - 1) / m * m; }

#endif
