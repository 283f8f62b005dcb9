/**
 * @file bulk_copy.cuh
 * @brief Hopper's bulk copy engine (cp.async.bulk, sm_90) for global → shared copies of contiguous
 *        bytes, and the mbarrier each copy completes on.
 *
 * One thread asks for a copy of any multiple of 16 bytes (both addresses 16-byte aligned); the copy
 * engine moves it without registers or further instructions, and counts the bytes it delivered on
 * an mbarrier in shared memory. The pattern, per buffer (a "stage"):
 *
 *     producer (one thread):  mbar_expect_tx(bar, bytes);  bulk_copy_g2s(dst, src, bytes, bar) ...
 *     consumers (any thread): mbar_wait(bar, parity)   -- parity = (uses of this stage so far) & 1
 *
 * The barrier's phase completes when its one expected arrival (the producer's) has come and all
 * the announced bytes have landed; each completion flips the parity a waiter asks for. Before a
 * producer refills a stage, every consumer must be done reading it (a __syncthreads() suffices).
 */
#ifndef MAMBA2_GPU_BULK_COPY_CUH
#define MAMBA2_GPU_BULK_COPY_CUH

#include <stdint.h>

#include "mma_bf16.cuh" /* smem_u32 */

/** Initialise the mbarrier at @p bar (shared memory, 8-byte aligned) for @p count arrivals a phase. */
__device__ __forceinline__ void mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}

/** Make mbar_init()'s results visible to the copy engine (then a __syncthreads() for the threads). */
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

/** Arrive on @p bar (this thread's one arrival of the phase) and announce @p bytes to come by copies. */
__device__ __forceinline__ void mbar_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}

/** Arrive on @p bar without announcing bytes (one of the phase's expected arrivals). */
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

/** Wait until the phase of @p bar with parity @p parity has completed. */
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
    asm volatile("{\n"
                 ".reg .pred done;\n"
                 "WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT;\n"
                 "}\n" ::"r"(smem_u32(bar)),
                 "r"(parity)
                 : "memory");
}

/** Copy @p bytes (a multiple of 16; both addresses 16-byte aligned) from global @p src to shared
 *  @p dst by the bulk copy engine; their arrival is counted on @p bar. */
__device__ __forceinline__ void bulk_copy_g2s(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar))
                 : "memory");
}

#endif
