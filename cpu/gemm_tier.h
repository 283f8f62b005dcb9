/**
 * @file gemm_tier.h
 * @brief Which prefill GEMM cpu_linear() runs: the best tier this CPU has (CPUID), or a lower one
 *        asked for through the environment; and the cache sizes the GEMMs block for.
 *
 * Tiers, fastest first: AMX (Intel, bf16 tiles), AVX512_BF16 (vdpbf16ps on bf16 weight pairs),
 * AVX-512F and AVX2+FMA (fp32 FMA on weight panels widened to fp32), and OpenBLAS sgemm on
 * widened panels (any x86-64, and the fallback). MAMBA2_CPU_GEMM=amx|avx512bf16|avx512|avx2|sgemm
 * forces a tier, never one above what the CPU has (a higher request gets the best the CPU has),
 * and MAMBA2_CPU_ISA=avx512bf16|avx512|avx2|scalar caps the tiers as it caps the GEMV (avx512bf16:
 * everything but AMX, the Zen 4 / Zen 5 class; avx512: AVX-512F without AVX512_BF16 or AMX, the
 * Skylake-SP to Ice Lake class).
 */
#ifndef MAMBA2_CPU_GEMM_TIER_H
#define MAMBA2_CPU_GEMM_TIER_H

#include <stddef.h>

/** The prefill GEMMs, in increasing order of what they need from the CPU. */
typedef enum {
    CPU_GEMM_SGEMM = 0,      /**< OpenBLAS cblas_sgemm on fp32 panels (any CPU) */
    CPU_GEMM_AVX2 = 1,       /**< fp32 FMA microkernel, AVX2 + FMA + F16C */
    CPU_GEMM_AVX512 = 2,     /**< fp32 FMA microkernel, AVX-512F */
    CPU_GEMM_AVX512BF16 = 3, /**< vdpbf16ps microkernel, AVX512_BF16 (bf16 weights only) */
    CPU_GEMM_AMX = 4         /**< AMX-BF16 tiles (bf16 weights only) */
} CpuGemmTier;

/** The best tier this CPU has (CPUID; AMX also needs the kernel's permission), decided once. */
CpuGemmTier cpu_gemm_tier_detect(void);

/**
 * @brief The tier cpu_linear() uses: cpu_gemm_tier_detect(), capped by MAMBA2_CPU_ISA, and lowered to
 *        MAMBA2_CPU_GEMM when that names a lower tier (read on every call, so tests can switch).
 */
CpuGemmTier cpu_gemm_tier_active(void);

/**
 * @brief 1 when cpu_linear() runs AMX: cpu_gemm_tier_active() is CPU_GEMM_AMX (AMX is available
 *        and MAMBA2_CPU_GEMM does not ask for a lower tier; read on every call, so a test can switch).
 */
int cpu_amx_active(void);

/** "sgemm", "avx2", "avx512", "avx512bf16" or "amx" (the names MAMBA2_CPU_GEMM takes). */
const char *cpu_gemm_tier_name(CpuGemmTier tier);

/**
 * @brief Size in bytes of the data cache of @p level (1 or 2) of the core, or of the last-level
 *        cache (3) the core shares: from Linux's description of CPU 0's caches (sysfs), else from
 *        sysconf (which glibc reads from CPUID); when neither says, a small size for 1 and 2 and a
 *        large one (128 MiB) for 3.
 */
size_t cpu_cache_bytes(int level);

#endif
