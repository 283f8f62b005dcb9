/**
 * @file q8_matrix.cu
 * @brief q8 weight matrices on the device: quantization at load, and dequantization into bf16 for
 *        the cuBLAS GEMMs of products over more tokens than the q8 GEMM (gemm_q8.cu) takes.
 *
 * The scheme is the CPU's (cpu/qmatrix.h), integer for integer and scale for scale: W [rows, K] cut
 * along K into blocks of Q8_SCALE_BLOCK = 64 weights, each stored as int8 q with one fp16 scale d,
 *
 *     d = fp16(max|W| / 127) over the block,   q = clamp(rint(W · (1/d)), −127, 127)  (to nearest even),
 *
 * with the CPU's roundings (cpu/qmatrix.c, quantize_block()): the division max|W| / 127 in fp32,
 * its rounding to fp16 to nearest even (subnormal halves included; beyond the largest half, 65504),
 * the inverse 1/d in fp32 of the rounded d, the product W · (1/d) in fp32, then rounded half to
 * even; d = 0 (an all-zero block, or max|W| / 127 rounding to 0) gives q = 0.
 *
 * Layout (GpuQ8, common.cuh): the values row-major [rows, Kq] with Kq = K rounded up to 64 (the
 * padding holds zeros), the scales in a second array [rows, Kq / 64]. Keeping the scales apart
 * keeps every row's values 64-byte aligned, so the decode GEMV (gemv.cuh) reads them as the bf16
 * GEMV reads bf16, in 16-byte loads (16 weights, a quarter of a scale block), each lane of a warp
 * the next 16 bytes of the row; the 32 lanes' scales are then 8 consecutive halves, 16 bytes.
 * Interleaving a scale after every block (66 bytes) would break the 16-byte alignment; a scale
 * per 256 weights inside a 272-byte record would need a second, odd-sized load per record.
 * Bytes per weight: 1 + 2/64 = 1.03125 (bf16: 2).
 *
 * Quantization runs on the device, from the stored weights uploaded in pieces of whole rows
 * (backend_gpu.cu): the device never holds more than one piece of bf16 or f32 beside the q8
 * copy, so the peak memory at load is the q8 size plus the staging piece.
 */
#include <cuda_fp16.h>

#include "kernels.cuh"

/* One warp per block of 64 weights (lane k: columns 64·blk + k and 64·blk + 32 + k): rows [0, n)
 * of src [n, K], bf16 or f32, into rows [r0, r0 + n) of the q8 matrix.
 *   amax = max_k |w_k|;  d = fp16(amax / 127);  q_k = clamp(rint(w_k · (1/d)), −127, 127)
 * Each step is the CPU's (see the file comment), in IEEE fp32 with explicit rounding (no fused
 * multiply-add, no fast division), so both give the same bits:
 *   - amax / 127: __fdiv_rn, as the CPU's division;
 *   - fp16: __float2half_rn rounds to nearest even, subnormal halves included; values at or past
 *     65520, which would round to infinity, saturate to 65504 (0x7bff) as the CPU's f32_to_f16()
 *     does, and min(v, 65504) rounds every v in [65504, 65520) to 65504 as well;
 *   - 1/d: __fdiv_rn of the rounded d (which fp32 holds exactly), 0 where d = 0;
 *   - w · (1/d): __fmul_rn, then rintf (half to even), as the CPU's round_clamp() (which adds and
 *     subtracts 1.5 · 2²³ in round-to-nearest-even: the same integer wherever it is not clamped);
 *   - max|w|: fmaxf over the lanes (the maximum of absolute values has no rounding). */
__global__ void q8_quantize_kernel(const void *src, int src_f32, int n, int K, int Kq, int r0, int8_t *q, uint16_t *d) {
    const int blocks_per_row = Kq / Q8_SCALE_BLOCK, lane = threadIdx.x & 31;
    const size_t blk = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (blk >= (size_t)n * blocks_per_row) return;
    const size_t r = blk / blocks_per_row;
    const int c0 = (int)(blk % blocks_per_row) * Q8_SCALE_BLOCK + lane, c1 = c0 + 32; /* this lane's two columns */
    float w0 = 0.0f, w1 = 0.0f;
    if (src_f32) {
        const float *s = (const float *)src + r * K;
        if (c0 < K) w0 = s[c0];
        if (c1 < K) w1 = s[c1];
    } else {
        const bf16 *s = (const bf16 *)src + r * K;
        if (c0 < K) w0 = __bfloat162float(s[c0]);
        if (c1 < K) w1 = __bfloat162float(s[c1]);
    }
    const float amax = warp_max(fmaxf(fabsf(w0), fabsf(w1)));
    const __half dh = __float2half_rn(fminf(__fdiv_rn(amax, 127.0f), 65504.0f)); /* the largest half, as the CPU saturates */
    const float dv = __half2float(dh), inv = dv != 0.0f ? __fdiv_rn(1.0f, dv) : 0.0f;
    const float q0 = fminf(fmaxf(rintf(__fmul_rn(w0, inv)), -127.0f), 127.0f);
    const float q1 = fminf(fmaxf(rintf(__fmul_rn(w1, inv)), -127.0f), 127.0f);
    int8_t *qrow = q + (size_t)(r0 + r) * Kq;
    qrow[c0] = (int8_t)q0, qrow[c1] = (int8_t)q1;
    if (lane == 0) d[(size_t)(r0 + r) * blocks_per_row + c0 / Q8_SCALE_BLOCK] = __half_as_ushort(dh);
}

void launch_q8_quantize(const void *src, int src_f32, int n, int r0, int8_t *q, uint16_t *d, int K, int Kq, cudaStream_t s) {
    size_t warps = (size_t)n * (Kq / Q8_SCALE_BLOCK);
    q8_quantize_kernel<<<(unsigned)((warps + 7) / 8), 256, 0, s>>>(src, src_f32, n, K, Kq, r0, q, d);
}

/* out[r][k] = bf16(d[r][k / 64] · q[r][k]) for k < K: d · q has at most 11 + 7 significant bits, so
 * its bf16 rounding (8 bits) is off by at most 2⁻⁹ of the weight, far below the quantization's own
 * error (d / 2). Sixteen columns per thread (inside one scale block: 16 divides 64), 16-byte loads
 * and stores, where K is a multiple of 16; one column per thread otherwise. */
__global__ void q8_dequantize16_kernel(GpuQ8 m, bf16 *out) {
    const int per_row = m.K / 16;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)m.rows * per_row; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / per_row;
        int c = (int)(i % per_row) * 16;
        uint4 v = *(const uint4 *)(m.q + r * m.Kq + c);
        float dv = __half2float(__ushort_as_half(m.d[r * (m.Kq / Q8_SCALE_BLOCK) + c / Q8_SCALE_BLOCK]));
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
        uint32_t packed[8];
#pragma unroll
        for (int k = 0; k < 8; k++) {
            int lo = (int8_t)(words[k / 2] >> (16 * (k % 2))), hi = (int8_t)(words[k / 2] >> (16 * (k % 2) + 8));
            packed[k] = pack_bf16x2(dv * (float)lo, dv * (float)hi);
        }
        uint4 *o = (uint4 *)(out + r * m.K + c);
        o[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
        o[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
    }
}

__global__ void q8_dequantize1_kernel(GpuQ8 m, bf16 *out) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)m.rows * m.K; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / m.K;
        int c = (int)(i % m.K);
        float dv = __half2float(__ushort_as_half(m.d[r * (m.Kq / Q8_SCALE_BLOCK) + c / Q8_SCALE_BLOCK]));
        out[i] = __float2bfloat16(dv * (float)m.q[r * m.Kq + c]);
    }
}

void launch_q8_dequantize(const GpuQ8 &m, bf16 *out, cudaStream_t s) {
    if (m.K % 16 == 0) q8_dequantize16_kernel<<<132 * 8, 256, 0, s>>>(m, out);
    else q8_dequantize1_kernel<<<132 * 8, 256, 0, s>>>(m, out);
}

void launch_q8_dequantize_short(const GpuQ8 &m, bf16 *out, cudaStream_t s) {
    const size_t items = m.K % 16 == 0 ? (size_t)m.rows * (m.K / 16) : (size_t)m.rows * m.K; /* one a thread */
    const unsigned blocks = (unsigned)((items + 255) / 256);
    if (m.K % 16 == 0) q8_dequantize16_kernel<<<blocks, 256, 0, s>>>(m, out);
    else q8_dequantize1_kernel<<<blocks, 256, 0, s>>>(m, out);
}
