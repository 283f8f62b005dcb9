/**
 * @file gemv_bf16.h
 * @brief The decode kernel: weight-matrix × fp32-activation products that stream each weight byte once.
 *
 * Decode is memory-bound: every step reads every weight once and does two FLOP per weight.
 * The kernel reads W in its stored dtype (bf16 on the fast path; f16 and f32 also work) straight
 * from the mmap, widens it to fp32 in registers and multiplies it with up to B activation vectors
 * at once, so batched decode reads each weight once for all B sequences.
 *
 * Three variants of the same loop: scalar C, AVX2+FMA(+F16C) and AVX-512F, chosen at run time
 * from the CPU's features (cpu_isa_active()), so the binary runs on any x86-64.
 */
#ifndef MAMBA2_CPU_GEMV_BF16_H
#define MAMBA2_CPU_GEMV_BF16_H

#include <stdint.h>

#include "backend.h"
#include "tensor.h"

/** Instruction-set variants of the CPU kernels, slowest first. */
typedef enum {
    CPU_ISA_SCALAR = 0, /**< plain C, any CPU */
    CPU_ISA_AVX2 = 1,   /**< AVX2 + FMA + F16C (x86-64-v3) */
    CPU_ISA_AVX512 = 2, /**< AVX-512F */
    CPU_ISA_AVX512BF16 = 3 /**< AVX-512F + AVX512_BF16: bf16 weights are multiplied by vdpbf16ps */
} CpuIsa;

/** The best variant this CPU can run (read once from CPUID). */
CpuIsa cpu_isa_detect(void);

/**
 * @brief The variant the CPU backend uses: cpu_isa_detect(), lowered by the environment
 *        variable MAMBA2_CPU_ISA=scalar|avx2|avx512 when set (it can never raise it;
 *        avx512bf16 leaves the GEMV as it is and takes AMX out of the GEMM, cpu_gemm_tier_active()).
 */
CpuIsa cpu_isa_active(void);

/** How the GEMV's SIMD blocks help the hardware prefetchers stream the weights (cpu_gemv_prefetch();
 *  the quantized products' tiles read it their own way, cpu_qlinear_prefetch()). */
typedef enum {
    CPU_PREFETCH_NONE = 0,      /**< the hardware prefetchers alone */
    CPU_PREFETCH_IN_ROW = 1,    /**< each row of a block 1 KiB ahead of the column being read, into L1
                                     (quantized tiles: the tile being read and the next one) */
    CPU_PREFETCH_NEXT_BLOCK = 2 /**< the next block's rows at the column being read, into L2: each
                                     line is asked for a whole block (4 rows, 32-64 KiB) ahead */
} CpuPrefetch;

/**
 * @brief The prefetch the environment asks for: MAMBA2_CPU_PREFETCH=none|row|next (for comparisons;
 *        read once, as the other decode settings are), or @p otherwise when it names none of them.
 */
CpuPrefetch cpu_prefetch_asked(CpuPrefetch otherwise);

/**
 * @brief Asks for the line at @p p into L1 (prefetcht0; never faults).
 *
 * As asm, so that the compiler keeps each where a kernel puts it: GCC 12 gathered a chunk's
 * _mm_prefetch() calls at the chunk's start, or deleted loops of them that had no other effect
 * (results/cpu.md, "one vector on ymm? No" and "the q8/q4 decode products had never prefetched").
 */
static inline void cpu_prefetch_l1(const void *p) { __asm__ volatile("prefetcht0 (%0)" ::"r"(p)); }

/** Bytes ahead in its stream at which a decode product that prefetches line by line (the packed bf16
 *  products, packed_bf16.c; the quantized products of one activation row, qmatrix.c) asks for each
 *  line into L1, and the distance of the prefetched read the read ceiling takes (roofline.c). 4 KiB:
 *  the products that spend more instructions per byte (AVX2's q8 and q4, AVX512BW's q8) kept closer
 *  to the read ceiling than with 2 KiB, and none was slower (results/cpu.md, "decode prefetch 4 KiB
 *  ahead"). */
#define CPU_DECODE_AHEAD 4096

/**
 * @brief Asks for the line at @p p into L2 (prefetcht1; never faults), as asm for the reason
 *        cpu_prefetch_l1() is.
 */
static inline void cpu_prefetch_l2(const void *p) { __asm__ volatile("prefetcht1 (%0)" ::"r"(p)); }

/** The default of cpu_decode_ahead_l2(): 16 KiB (results/cpu.md, "the decode products ask for each
 *  line into L2 16 KiB ahead as well"). */
#define CPU_DECODE_AHEAD_L2 16384

/**
 * @brief A decode product's prefetch of its stream at @p p: the line CPU_DECODE_AHEAD bytes on into
 *        L1 and, unless @p l2 is 0, the line @p l2 bytes on into L2 (@p l2: cpu_decode_ahead_l2(),
 *        which the caller reads once per block).
 */
static inline void cpu_prefetch_stream(const void *p, int64_t l2) {
    cpu_prefetch_l1((const char *)p + CPU_DECODE_AHEAD);
    if (l2) cpu_prefetch_l2((const char *)p + l2);
}

/** Fills @p x [n] with the activations the load trials multiply by (the backend's decode and
 *  prefill trials, cpu_bf16_time_decode()): fixed values in [-1, 1), the same on every run. */
static inline void cpu_trial_activations(float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++) x[k] = (float)((k * 2654435761u) % 1000) / 500.0f - 1.0f;
}

/**
 * @brief Bytes ahead in its stream at which a decode product that prefetches line by line also asks
 *        for each line into L2, beside its L1 prefetch CPU_DECODE_AHEAD bytes ahead: MAMBA2_CPU_AHEAD_L2
 *        where set (bytes, a multiple of 64; 0: no L2 prefetch), else what the backend's load trial
 *        chose (cpu_decode_choose_ahead_l2()), else CPU_DECODE_AHEAD_L2.
 */
int64_t cpu_decode_ahead_l2(void);

/** 1 when MAMBA2_CPU_AHEAD_L2 sets the L2 distance (read once; the load trial then times nothing). */
int cpu_decode_ahead_l2_asked(void);

/**
 * @brief Sets the distance cpu_decode_ahead_l2() returns when the environment does not: the backend's
 *        load trial (whether prefetcht1 pays on this CPU's memory system; it is process-wide, as the
 *        CPU is). Call between products, not during one.
 */
void cpu_decode_choose_ahead_l2(int64_t bytes);

/**
 * @brief The prefetch of cpu_gemv() (the bf16 GEMV): what MAMBA2_CPU_PREFETCH asks for, else what the
 *        backend's load trial chose (cpu_gemv_choose_prefetch()), else CPU_PREFETCH_NEXT_BLOCK,
 *        measured faster than the other two on AMD Zen 4 and on an Intel Xeon (results/cpu.md,
 *        "Prefetch") and slower than none on an AMD Zen 3 (results/cpu.md, "an AMD Zen 3").
 */
CpuPrefetch cpu_gemv_prefetch(void);

/** 1 when MAMBA2_CPU_PREFETCH names a prefetch (none, row or next): the load trial then times nothing. */
int cpu_gemv_prefetch_asked(void);

/**
 * @brief Sets the prefetch cpu_gemv_prefetch() returns when the environment does not: the backend's
 *        load trial (process-wide, as the CPU is). Call between products, not during one.
 */
void cpu_gemv_choose_prefetch(CpuPrefetch p);

/**
 * @brief Rows per unit of work the decode products hand out to @p n_threads threads for a matrix of
 *        @p rows rows: a multiple of 8, at most 256, as many units for every thread.
 */
int64_t cpu_gemv_unit_rows(int64_t rows, int n_threads);

/** "scalar", "avx2", "avx512" or "avx512bf16". */
const char *cpu_isa_name(CpuIsa isa);

/**
 * @brief Rows [r0, r0+n) of the product with B activation vectors, on the calling thread.
 *
 * y[b·ldy + r] = Σ_k W[r0 + r][k] · x[b·ldx + k]   (or += when @p accumulate),
 * for r in [0, n) and b in [0, B).
 *
 * @param isa        variant to run (must be ≤ cpu_isa_detect())
 * @param W          weight matrix [rows, K] in bf16, f16 or f32, read in place
 * @param r0         first row
 * @param n          number of rows
 * @param x          activations [B, ldx] (K used per row)
 * @param ldx        stride between activation vectors (≥ K)
 * @param B          number of activation vectors (≥ 1)
 * @param y          output [B, ldy], already offset to row r0
 * @param ldy        stride between output vectors
 * @param accumulate 1: add to y; 0: overwrite y
 * @param precision  for the avx512bf16 variant on bf16 weights: the default splits x into two bf16
 *                   parts (x = x_hi + x_lo, to about 2⁻¹⁸ of |x|) and multiplies both with
 *                   vdpbf16ps; MAMBA2_PRECISION_FAST uses x_hi alone. The other variants read x in fp32.
 */
void cpu_gemv_rows(CpuIsa isa, const Mamba2Tensor *W, int64_t r0, int64_t n, const float *x, int64_t ldx, int B,
                   float *y, int64_t ldy, int accumulate, Mamba2Precision precision);

/**
 * @brief The whole product y = W·x for B vectors, blocks of rows handed out to @p n_threads OpenMP threads.
 *
 * y[b·ldy + r] (+)= Σ_k W[r][k] · x[b·ldx + k] for every row r of W. Each thread streams the
 * contiguous blocks of rows it takes, so each weight byte is read from memory once per call.
 * @p isa is the variant, as in cpu_gemv_rows(): cpu_isa_active(), or for bf16 weights on a CPU with
 * AVX512_BF16 the AVX-512F product where that decodes faster (bf16_decode_choice.h); the other
 * parameters as there, plus @p n_threads.
 */
void cpu_gemv(CpuIsa isa, const Mamba2Tensor *W, const float *x, int64_t ldx, int B, float *y, int64_t ldy,
              int accumulate, int n_threads, Mamba2Precision precision);

#endif
