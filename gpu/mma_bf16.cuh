/**
 * @file mma_bf16.cuh
 * @brief The warp-level tensor-core instruction (mma.sync m16n8k16, bf16 in, fp32 accumulate) and
 *        the shared-memory loads that feed it (ldmatrix), with their register layouts written out.
 *
 * Why not WMMA: its fragment layout is opaque, so a product cannot be rescaled element by element
 * in registers and fed on as the next product's operand, and nvcc compiled its loads from our
 * carved shared-memory pointers as generic 32-bit loads (seen in the SASS; results/gpu.md).
 *
 * Layouts (lane l of the warp, g = l / 4, q = 2·(l % 4)):
 *  - A, 16×16 row-major, four registers of two bf16 each:
 *      a0 = A[g][q..q+1],  a1 = A[g+8][q..q+1],  a2 = A[g][q+8..q+9],  a3 = A[g+8][q+8..q+9]
 *  - B, 16×8 (k × n), two registers:  b0 = B[q..q+1][g],  b1 = B[q+8..q+9][g]
 *  - C/D, 16×8 fp32, four registers:  c0,c1 = C[g][q..q+1],  c2,c3 = C[g+8][q..q+1]
 * So the accumulators of two n-adjacent 16×8 products, rounded to bf16 pairwise, are exactly the
 * A operand of a 16×16 product (flash attention's trick; the chunk scan uses it for C·Bᵀ → M·X).
 *
 * ldmatrix.x4 loads four 8×8 bf16 matrices; lane l gives the address of row l % 8 of matrix l / 8,
 * and receives, in register j, row g, columns q..q+1 of matrix j (with .trans: rows q..q+1, column g).
 */
#ifndef MAMBA2_GPU_MMA_BF16_CUH
#define MAMBA2_GPU_MMA_BF16_CUH

#include <cuda_bf16.h>
#include <stdint.h>

#include "common.cuh" /* pack_bf16x2 */

/** Shared-memory address (32-bit) of a generic pointer into shared memory. */
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/** Four 8×8 bf16 matrices from shared memory, as stored. */
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

/** Four 8×8 bf16 matrices from shared memory, each transposed on the way. */
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

/** d += a · b for a 16×16 (A layout above), b 16×8 (b0, b1), d 16×8 fp32. */
__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/** @p v's two bf16 times @p lo and @p hi (in fp32, rounded back). */
__device__ __forceinline__ uint32_t scale_bf16x2(uint32_t v, float lo, float hi) {
    __nv_bfloat162 h = *(__nv_bfloat162 *)&v;
    float2 f = __bfloat1622float2(h);
    return pack_bf16x2(f.x * lo, f.y * hi);
}

/** Start an asynchronous 16-byte copy global → shared (no registers involved); with @p valid false,
 *  the 16 bytes are zero-filled and nothing is read. */
__device__ __forceinline__ void cp_async16(void *dst_smem, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst_smem)), "l"(src),
                 "r"(valid ? 16 : 0));
}

/** As cp_async16 for 4 bytes (one float; cached in L1 as well, which the 4-byte form requires). */
__device__ __forceinline__ void cp_async4(void *dst_smem, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst_smem)), "l"(src),
                 "r"(valid ? 4 : 0));
}

/** Wait for all of this thread's cp.async copies (a __syncthreads() must follow before others read them). */
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

/** Close the group of this thread's cp.async copies issued since the last commit (a pipeline stage). */
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

/** Wait until at most @p N of this thread's committed groups are still in flight (the newest ones). */
template <int N> __device__ __forceinline__ void cp_async_wait_group() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/** 2^x, the hardware's approximation (relative error about 2⁻²²; flushes denormals to zero). */
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

#endif
