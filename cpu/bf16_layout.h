/**
 * @file bf16_layout.h
 * @brief Which layout decode reads bf16 weights in on this CPU, packed (packed_bf16.h) or as stored
 *        (cpu_gemv()), decided by timing both on the model's own matrices at load.
 *
 * Neither layout is faster on every x86-64 CPU, and nothing CPUID reports tells which: on one Intel
 * Xeon with AMX the packed product read faster than the product over the stored rows, on another (a
 * larger L3, a different memory system) slower, at every ISA tier (results/cpu.md, "which bf16 layout
 * is faster is not a property of the code"). So the backend times the two products of one activation
 * row over a few of the model's matrices, alternated, and keeps the faster.
 */
#ifndef MAMBA2_CPU_BF16_LAYOUT_H
#define MAMBA2_CPU_BF16_LAYOUT_H

#include "packed_bf16.h"

/**
 * @brief How much faster decode's product of one activation row reads @p n bf16 matrices packed than
 *        in place: time in place / time packed, over CPU_LAYOUT_ROUNDS rounds after one untimed one,
 *        the two products alternated matrix by matrix (so both see the same minute of a shared host
 *        and the same caches).
 * @param W         the stored matrices [n] (bf16, read in place by cpu_gemv())
 * @param packed    their packed copies [n]
 * @param n         matrices (at least 1)
 * @param n_threads OpenMP threads of the products
 * @param precision the activation precision decode will run with
 * @return the ratio (> 1: packed is faster), or 0 when there is no memory for the vectors.
 */
double cpu_bf16_packed_speedup(const Mamba2Tensor *const *W, const CpuPackedBf16 *packed, int n, int n_threads,
                               Mamba2Precision precision);

/** Timed rounds of cpu_bf16_packed_speedup(). */
#define CPU_LAYOUT_ROUNDS 3

/** Bytes of matrices below which the backend does not time the layouts and packs: they would be
 *  timed in the caches, which says nothing about decode's stream from memory. */
#define CPU_LAYOUT_MIN_BYTES ((double)(256u << 20))

#endif
