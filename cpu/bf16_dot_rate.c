/**
 * @file bf16_dot_rate.c
 * @brief The `vdpbf16ps` / FMA throughput probe (see bf16_dot_rate.h).
 */
#include "bf16_dot_rate.h"

#include <immintrin.h>
#include <omp.h>
#include <pthread.h>

/** Attributes of the probe's loops. */
#define PROBE_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16"), noinline))

/* Twelve independent accumulators, named so that they stay in registers, pass through an empty
 * asm after every round: the compiler can neither merge nor hoist the chains, so the loops measure
 * how many instructions a cycle the core issues, not one chain's latency. */
#define EACH(OP) OP(a0) OP(a1) OP(a2) OP(a3) OP(a4) OP(a5) OP(a6) OP(a7) OP(a8) OP(a9) OP(a10) OP(a11)
#define OPAQUE()                                                                                          \
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), \
                     "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11))
#define SET(a) a = _mm512_set1_ps(seed);
#define FMA(a) a = _mm512_fmadd_ps(x, y, a);
#define DOT(a) a = _mm512_dpbf16_ps(a, u, v);

enum { ROUNDS = 50000 }; /* 600,000 instructions of each kind: 0.1 to 0.4 ms */

/* Seconds for ROUNDS × 12 vfmadd231ps zmm: a += x · y. */
static PROBE_TARGET double fma_seconds(float seed) {
    __m512 a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(1e-7f);
    EACH(SET)
    OPAQUE();
    double t0 = omp_get_wtime();
    for (int r = 0; r < ROUNDS; r++) {
        EACH(FMA)
        OPAQUE();
    }
    return omp_get_wtime() - t0;
}

/* Seconds for ROUNDS × 12 vdpbf16ps zmm: a += u₀·v₀ + u₁·v₁ per lane (bf16 pairs). */
static PROBE_TARGET double dot_seconds(float seed) {
    __m512 a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;
    __m512bh u = (__m512bh)_mm512_set1_epi16(0x3f80), v = (__m512bh)_mm512_set1_epi16(0x3400);
    EACH(SET)
    OPAQUE();
    double t0 = omp_get_wtime();
    for (int r = 0; r < ROUNDS; r++) {
        EACH(DOT)
        OPAQUE();
    }
    return omp_get_wtime() - t0;
}

static double gain;

static void measure(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bf16")) return;
    double fma = 1e30, dot = 1e30;
    fma_seconds(0.5f); /* warm-up: the core's zmm clock settles before anything is timed */
    for (int rep = 0; rep < 3; rep++) {
        double f = fma_seconds((float)rep), d = dot_seconds((float)rep);
        if (f < fma) fma = f;
        if (d < dot) dot = d;
    }
    /* same instruction count: multiply-adds a second, dot over FMA = (32 / dot) / (16 / fma) */
    gain = 2.0 * fma / dot;
}

double cpu_bf16_dot_gain(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, measure);
    return gain;
}
