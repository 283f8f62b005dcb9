/**
 * @file thread_buffer.h
 * @brief Per-thread work buffers of the CPU kernels, grown on demand and kept for the thread's life.
 *
 * OpenMP threads are reused, so a kernel that asks for its buffer on every call allocates nothing
 * once the buffer has reached its largest size. Each kernel family has its own slot; kernels of
 * different slots may be live at once on one thread, kernels of one slot never are.
 */
#ifndef MAMBA2_CPU_THREAD_BUFFER_H
#define MAMBA2_CPU_THREAD_BUFFER_H

#include <stddef.h>

/** The slots: who owns which buffer of a thread. */
typedef enum {
    CPU_BUF_GEMM_ACTIVATIONS = 0, /**< a GEMM's packed or split activations (AMX, the tier driver) */
    CPU_BUF_GEMM_WEIGHTS = 1,     /**< a GEMM's packed weight block (AMX, the tier driver) */
    CPU_BUF_GEMV = 2,             /**< the GEMV's permuted or bf16-split activations */
    CPU_BUF_WEIGHT_ROWS = 3,      /**< weight rows taken from a row source for a GEMM tier's packing */
    CPU_BUF_SLOTS = 4             /**< number of slots */
} CpuBufferSlot;

/**
 * @brief The calling thread's buffer @p slot, at least @p bytes long and 64-byte aligned.
 * @return the buffer (its old contents are not kept when it grows), or NULL when out of memory.
 */
void *cpu_thread_buffer(CpuBufferSlot slot, size_t bytes);

#endif
