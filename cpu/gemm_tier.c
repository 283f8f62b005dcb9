/**
 * @file gemm_tier.c
 * @brief Run-time choice of the prefill GEMM (see gemm_tier.h).
 */
#include "gemm_tier.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemm_amx.h"
#include "gemv_bf16.h"

CpuGemmTier cpu_gemm_tier_detect(void) {
    static int tier = -1; /* decided once; a benign race (every thread computes the same value) */
    if (tier < 0) {
        __builtin_cpu_init();
        int t = CPU_GEMM_SGEMM;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
            t = CPU_GEMM_AVX2;
        if (__builtin_cpu_supports("avx512f")) t = CPU_GEMM_AVX512;
        if (t == CPU_GEMM_AVX512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16"))
            t = CPU_GEMM_AVX512BF16;
        if (t == CPU_GEMM_AVX512BF16 && cpu_amx_available()) t = CPU_GEMM_AMX;
        tier = t;
    }
    return (CpuGemmTier)tier;
}

CpuGemmTier cpu_gemm_tier_active(void) {
    CpuGemmTier tier = cpu_gemm_tier_detect();
    CpuIsa isa = cpu_isa_active(); /* MAMBA2_CPU_ISA lowers the GEMM as it lowers the GEMV */
    const char *isa_asked = getenv("MAMBA2_CPU_ISA");
    if (isa_asked && !strcmp(isa_asked, "avx512bf16") && tier > CPU_GEMM_AVX512BF16)
        tier = CPU_GEMM_AVX512BF16; /* the AVX512_BF16 class without AMX: the GEMV's own level, AMX left out */
    if (isa < CPU_ISA_AVX512BF16 && tier > CPU_GEMM_AVX512) tier = CPU_GEMM_AVX512; /* AVX-512F without BF16 (or AMX) */
    if (isa < CPU_ISA_AVX512 && tier > CPU_GEMM_AVX2) tier = CPU_GEMM_AVX2;
    if (isa < CPU_ISA_AVX2) tier = CPU_GEMM_SGEMM;
    const char *want = getenv("MAMBA2_CPU_GEMM");
    if (want)
        for (int t = CPU_GEMM_SGEMM; t < (int)tier; t++)
            if (!strcmp(want, cpu_gemm_tier_name((CpuGemmTier)t))) return (CpuGemmTier)t;
    return tier;
}

int cpu_amx_active(void) { return cpu_gemm_tier_active() == CPU_GEMM_AMX; }

const char *cpu_gemm_tier_name(CpuGemmTier tier) {
    static const char *const names[] = {"sgemm", "avx2", "avx512", "avx512bf16", "amx"};
    return tier >= CPU_GEMM_SGEMM && tier <= CPU_GEMM_AMX ? names[tier] : "?";
}

size_t cpu_cache_bytes(int level) {
    long v = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE : level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE);
    /* not reported (some hypervisors, non-glibc): L1 and L2, the smallest of current x86-64 cores;
     * L3, a large one (its users want to stay clear of it) */
    if (v <= 0) v = level == 1 ? 32 << 10 : level == 2 ? 256 << 10 : 128 << 20;
    return (size_t)v;
}
