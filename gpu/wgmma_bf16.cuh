/**
 * @file wgmma_bf16.cuh
 * @brief Hopper's warpgroup tensor-core instruction (wgmma.mma_async m64nNk16, bf16 in, fp32
 *        accumulate) with both operands in shared memory, as the tensor memory accelerator leaves
 *        them with the 128-byte swizzle, and the fences that order it.
 *
 *   D[64, N] += A[64, 16] · B[16, N]      A: 64 rows of K (K-major), B: N rows of K (K-major)
 *
 * Why beside mma.sync (mma_bf16.cuh): one instruction of a warpgroup (4 warps, 128 threads) reads its
 * operands from shared memory itself, so the 16-row A fragments of four warps and the B fragments
 * they share are read once per warpgroup, not once per warp, and the tensor cores run at Hopper's
 * full rate, which mma.sync does not reach (the decode GEMM on both: results/gpu.md, "The decode
 * GEMM on wgmma").
 *
 * Shared-memory layout both operands must have (the 128-byte swizzle, K-major): rows of 128 bytes
 * (64 bf16 of K), 16-byte chunk c of row r stored at chunk c ^ (r mod 8), groups of 8 rows 1,024
 * bytes apart, the first row 1,024-aligned. A descriptor names such a tile: its start address, the
 * 1,024-byte stride between 8-row groups, the swizzle mode; the k-th step of 16 columns inside the
 * 128-byte rows starts 32·k bytes further (the hardware applies the swizzle to the address it forms).
 *
 * Accumulator layout (thread t of the warpgroup, w = t / 32 its warp, l = t % 32, g = l / 4,
 * q = 2·(l % 4)): d[4j + c] = D[16w + g + 8·(c / 2)][8j + q + (c % 2)] for j < N / 8, c < 4: per
 * 8-column tile j, the C layout of mma.sync m16n8 for warp w's 16 rows.
 *
 * Order: wgmma_fence() before the first wgmma that touches registers written since (the
 * accumulators), wgmma_commit() after a batch, wgmma_wait<n>() before reading the accumulators or
 * reusing the shared memory the batch reads (n: batches allowed to remain in flight), then
 * wgmma_fence_operand() on each accumulator before it is read. Shared memory written by ordinary
 * stores must be made visible to the async proxy that wgmma reads through (fence_proxy_async())
 * before the barrier that hands it over.
 */
#ifndef MAMBA2_GPU_WGMMA_BF16_CUH
#define MAMBA2_GPU_WGMMA_BF16_CUH

#include <stdint.h>

#include "mma_bf16.cuh" /* smem_u32 */

/** 1 where the device code is compiled for sm_90a, the only target with wgmma; elsewhere the functions
 *  below compile to nothing or a trap (the host never launches them there). */
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WGMMA_OK 1
#else
#define WGMMA_OK 0
#endif

/** The descriptor of a K-major bf16 tile at shared address @p p with the 128-byte swizzle:
 *  start address >> 4 (bits 0-13), leading offset 16 bytes (bits 16-29; unused by this layout),
 *  stride between 8-row groups 1,024 bytes (bits 32-45), layout 1 = 128-byte swizzle (bits 62-63). */
__device__ __forceinline__ uint64_t wgmma_desc_sw128(const void *p) {
    const uint64_t addr = (smem_u32(p) & 0x3FFFF) >> 4;
    return addr | (uint64_t)(16 >> 4) << 16 | (uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62;
}

/** Order this warpgroup's register writes before the wgmma that follow. */
__device__ __forceinline__ void wgmma_fence() {
#if WGMMA_OK
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

/** Close the batch of wgmma issued since the last commit. */
__device__ __forceinline__ void wgmma_commit() {
#if WGMMA_OK
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

/** Wait until at most @p N committed batches are still running. */
template <int N> __device__ __forceinline__ void wgmma_wait() {
#if WGMMA_OK
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

/** Keep the compiler from moving reads of accumulator @p r above the wgmma_wait() before this (the
 *  wait names no registers, so without this nothing orders them). */
__device__ __forceinline__ void wgmma_fence_operand(float &r) { asm volatile("" : "+f"(r)::"memory"); }

/** Make this thread's ordinary shared-memory stores visible to the async proxy (wgmma, bulk copies). */
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/** d[0 .. N/2) += A · B over 16 columns of K, A and B named by descriptors (both K-major). */
template <int N> __device__ __forceinline__ void wgmma_bf16(float *d, uint64_t da, uint64_t db);

#if WGMMA_OK
#define WG_ARGS "%0, %1, %2, %3, %4, %5, %6, %7"
template <> __device__ __forceinline__ void wgmma_bf16<16>(float *d, uint64_t da, uint64_t db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {" WG_ARGS "}, %8, %9, 1, 1, 1, 0, 0;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
                 : "l"(da), "l"(db));
}
template <> __device__ __forceinline__ void wgmma_bf16<32>(float *d, uint64_t da, uint64_t db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {" WG_ARGS ", %8, %9, %10, %11, %12, %13, %14, %15}, "
                 "%16, %17, 1, 1, 1, 0, 0;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
                   "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                 : "l"(da), "l"(db));
}
template <> __device__ __forceinline__ void wgmma_bf16<64>(float *d, uint64_t da, uint64_t db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" WG_ARGS ", %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, 1, 1, 1, 0, 0;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
                   "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
                   "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
                   "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db));
}
#undef WG_ARGS
#else
template <int N> __device__ __forceinline__ void wgmma_bf16(float *, uint64_t, uint64_t) { __trap(); }
#endif

#endif
