/**
 * @file bf16_decode_choice.h
 * @brief How decode multiplies with bf16 weights on this CPU: which layout it reads them in, packed
 *        (packed_bf16.h) or as stored (cpu_gemv()), and which product it multiplies them with,
 *        vdpbf16ps or the bf16 widened to fp32 and FMA; decided by timing the ways on the model's own
 *        matrices at load.
 *
 * Neither layout nor product is the faster on every x86-64 CPU, and nothing CPUID reports tells
 * which: on one Intel Xeon with AMX the packed layout read faster than the stored rows, on another
 * (a larger L3, a different memory system) slower, at every ISA tier; on that second Xeon the
 * vdpbf16ps product also decoded slower than the widened FMA one, where on an AMD Zen 4 the two
 * tied (results/cpu.md). So the backend times decode's product of one activation row each way over
 * a few of the model's matrices, alternated, and keeps the fastest; then, in the layout kept, the
 * products again for several rows (each row adds instructions a line, which moves the balance).
 */
#ifndef MAMBA2_CPU_BF16_DECODE_CHOICE_H
#define MAMBA2_CPU_BF16_DECODE_CHOICE_H

#include "packed_bf16.h"

/** One way decode can multiply with bf16 weights, and its time in the trial. */
typedef struct {
    int packed;           /**< 1: the packed copy (cpu_packed_bf16_gemv()); 0: the stored rows (cpu_gemv()) */
    CpuIsa isa;           /**< the product's variant: CPU_ISA_AVX512BF16 (vdpbf16ps) or a lower one (fp32 FMA) */
    CpuPrefetch prefetch; /**< in place only: the prefetch cpu_gemv() runs with (cpu_gemv_choose_prefetch()) */
    double seconds;       /**< its fastest timed round of the trial (set by cpu_bf16_time_decode()) */
} CpuBf16Decode;

/**
 * @brief Times decode's product of @p B activation rows over @p n bf16 matrices in each of @p n_ways
 *        ways, CPU_DECODE_TRIAL_ROUNDS rounds after one untimed one: in each round every way in
 *        turn over all @p n matrices, the ways' order rotated from round to round (so all see the
 *        same minutes of a shared host); each way's fastest round counts (a pause of the host
 *        within one round, which a sum over the rounds charged to whichever way it hit, decides
 *        nothing).
 *
 * A way must not find in the last-level cache the bytes the way before it has just read, or it is
 * timed faster than decode, which reads every weight once a step: so the matrices should add up to
 * more than that cache (the backend takes twice its size), and ways of the two layouts, which read
 * different bytes, should alternate in @p ways (with an even count, rotation keeps them alternating).
 * An in-place way runs with its own prefetch (CpuBf16Decode::prefetch); cpu_gemv_prefetch()'s choice
 * is restored afterwards.
 * @param W         the stored matrices [n] (bf16, read in place by cpu_gemv())
 * @param packed    their packed copies [n] (read only by the ways that are packed; may be NULL if none is)
 * @param n         matrices (at least 1)
 * @param n_threads OpenMP threads of the products
 * @param precision the activation precision decode will run with
 * @param B         activation rows (sequences) of each product
 * @param ways      [n_ways] the ways to time; each one's @ref CpuBf16Decode::seconds is set
 * @param n_ways    ways (at least 1)
 * @return 0, or -1 when there is no memory for the vectors (nothing timed).
 */
int cpu_bf16_time_decode(const Mamba2Tensor *const *W, const CpuPackedBf16 *packed, int n, int n_threads,
                         Mamba2Precision precision, int B, CpuBf16Decode *ways, int n_ways);

/** Sequences of the trial that chooses the product of batched decode (the backend times one
 *  sequence for the layout and the product of single-sequence decode, then this many). */
#define CPU_DECODE_TRIAL_BATCH 4

/** Timed rounds of cpu_bf16_time_decode(). */
#define CPU_DECODE_TRIAL_ROUNDS 4

/** Bytes of matrices below which the backend does not time the ways (and packs, with the CPU's own
 *  product): they would be timed in the caches, which says nothing about decode's stream from memory. */
#define CPU_DECODE_TRIAL_MIN_BYTES ((double)(256u << 20))

#endif
