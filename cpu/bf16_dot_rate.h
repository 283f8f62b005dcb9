/**
 * @file bf16_dot_rate.h
 * @brief How many multiply-adds a second this core's `vdpbf16ps` gives against its fp32 FMA,
 *        measured once: which GEMM `--precision fast` runs on the AVX512_BF16 tier.
 *
 * One `vdpbf16ps` zmm does 32 multiply-adds, one `vfmadd231ps` zmm 16; what a core issues of each
 * is not written in CPUID. On Zen 4 / 5 the bf16 dot issues as often as the FMA (twice the work);
 * on Sapphire / Emerald Rapids a quarter as often (half the work: results/cpu.md, 2026-12-06,
 * "`--precision fast` on the AVX512_BF16 class"). So the choice is measured, not assumed.
 */
#ifndef MAMBA2_CPU_BF16_DOT_RATE_H
#define MAMBA2_CPU_BF16_DOT_RATE_H

/**
 * `--precision fast` takes the vdpbf16ps GEMM only where it gives at least this many times the
 * FMA's multiply-adds a second (the CPUs measured sit near 2 or near 0.5, results/cpu.md; 1.25 keeps
 * the choice away from noise and from the packing the bf16 kernel adds).
 */
#define CPU_BF16_DOT_MIN_GAIN 1.25

/**
 * @brief Multiply-adds a second of `vdpbf16ps` over those of `vfmadd231ps`, zmm, on independent
 *        accumulators on the calling core (so instruction throughput, not latency or memory);
 *        measured once per process (about a millisecond, best of three alternations), then cached.
 * @return the ratio, or 0 where the CPU lacks AVX512_BF16 (nothing is run then).
 */
double cpu_bf16_dot_gain(void);

#endif
