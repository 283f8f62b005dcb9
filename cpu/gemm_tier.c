/**
 * @file gemm_tier.c
 * @brief Run-time choice of the prefill GEMM (see gemm_tier.h).
 */
#include "gemm_tier.h"

#include <stdio.h>
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

/* The size of CPU 0's data or unified cache of @p level as Linux describes it
 * (/sys/devices/system/cpu/cpu0/cache/index*), in bytes; 0 where it does not. */
static size_t sysfs_cache_bytes(int level) {
    for (int i = 0; i < 8; i++) {
        char path[96], text[32];
        int lv = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) return 0;
        int ok = fscanf(f, "%d", &lv) == 1;
        fclose(f);
        if (!ok || lv != level) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if (!(f = fopen(path, "r"))) continue;
        ok = fscanf(f, "%31s", text) == 1 && strcmp(text, "Instruction");
        fclose(f);
        if (!ok) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!(f = fopen(path, "r"))) continue;
        unsigned long n = 0;
        char unit = 0;
        ok = fscanf(f, "%lu%c", &n, &unit) >= 1;
        fclose(f);
        if (ok && n > 0) return (size_t)n << (unit == 'K' ? 10 : unit == 'M' ? 20 : 0);
    }
    return 0;
}

/* The size of cache @p level, found once (cpu_cache_bytes() is called by every product). */
static size_t find_cache_bytes(int level) {
    /* Linux's description first: glibc's sysconf gives some AMD EPYC guests the whole package's L3
     * (256 MiB on a Zen 3 whose cores share 32 MiB), which a trial that must not run in the cache
     * takes for twice the bytes it needs (results/cpu.md, "an AMD Zen 3") */
    const size_t from_sysfs = sysfs_cache_bytes(level);
    if (from_sysfs) return from_sysfs;
    long v = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE : level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE);
    /* not reported (some hypervisors, non-glibc): L1 and L2, the smallest of current x86-64 cores;
     * L3, a large one (its users want to stay clear of it) */
    if (v <= 0) v = level == 1 ? 32 << 10 : level == 2 ? 256 << 10 : 128 << 20;
    return (size_t)v;
}

size_t cpu_cache_bytes(int level) {
    static size_t found[3]; /* [level - 1]; a benign race: every thread finds the same value */
    const int i = level < 1 ? 0 : level > 3 ? 2 : level - 1;
    size_t v = __atomic_load_n(&found[i], __ATOMIC_RELAXED);
    if (!v) v = find_cache_bytes(i + 1), __atomic_store_n(&found[i], v, __ATOMIC_RELAXED);
    return v;
}
