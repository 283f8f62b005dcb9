/**
 * @file gemv_bf16.c
 * @brief Weight × activation products for decode: scalar, AVX2 and AVX-512 variants, run-time dispatch.
 *
 * Every variant computes, for a block of rows r and activation vectors b,
 *
 *     y[b][r] = Σ_k W[r][k] · x[b][k]
 *
 * walking k in SIMD-width steps: load W[r][k..k+w) in its stored dtype, widen it to fp32 in a
 * register (bf16: the 16 bits become the top half of a float32, for the even and the odd columns of
 * a line apart on AVX-512F, with x put in the same order; f16: F16C's vcvtph2ps; f32: a plain load),
 * and fuse-multiply-add it into one accumulator per (row, vector). A register block
 * is 4 rows × up to 2 vectors: 8 accumulators, 4 weight registers and 2 activation registers fit
 * in AVX2's 16 (AVX-512's 32 registers hold 4 rows × 4 vectors). With more vectors the same 4 rows
 * are walked again for the next group, from L1/L2, so DRAM still sees each weight byte once per call.
 * For one vector every SIMD variant takes 8 rows at a time (bf16 rows, for AVX2): eight row streams a
 * thread kept the read closer to the memory's rate than four, and one much further from it
 * (results/cpu.md, 2026-12-04).
 *
 * The SIMD variants are compiled with function target attributes (no global -mavx2), and are
 * only called after CPUID says the CPU has the instructions. tests/test_cpu.c checks every
 * variant the CPU it runs on has (CI and development machines: Intel Xeon with AVX-512, or
 * AMD EPYC with AVX2 only, depending on the host).
 */
#include "gemv_bf16.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "thread_buffer.h"

/* How far ahead in its own row a SIMD block prefetches the weights with CPU_PREFETCH_IN_ROW (no
 * longer the default, kept for comparisons): 1 KiB ahead was the best distance measured on Intel
 * (results/cpu.md, "Moved from code comments"). */
#define GEMV_PREFETCH_BYTES 1024

/* The SIMD blocks' prefetch (cpu_gemv_prefetch(), set by cpu_gemv() before its threads start). */
static CpuPrefetch row_prefetch = CPU_PREFETCH_IN_ROW;

/* ------------------------------------------------------------------ dispatch */

CpuIsa cpu_isa_detect(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) return CPU_ISA_AVX512BF16;
    if (__builtin_cpu_supports("avx512f")) return CPU_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return CPU_ISA_AVX2;
    return CPU_ISA_SCALAR;
}

CpuIsa cpu_isa_active(void) {
    CpuIsa isa = cpu_isa_detect();
    const char *want = getenv("MAMBA2_CPU_ISA");
    if (want && !strcmp(want, "scalar")) isa = CPU_ISA_SCALAR;
    else if (want && !strcmp(want, "avx2") && isa > CPU_ISA_AVX2) isa = CPU_ISA_AVX2;
    else if (want && !strcmp(want, "avx512") && isa > CPU_ISA_AVX512) isa = CPU_ISA_AVX512;
    return isa;
}

/* MAMBA2_CPU_PREFETCH as read once: the CpuPrefetch it names, or -1 (unset, or none of them). */
static int prefetch_env(void) {
    static int env = -2; /* benign race: every thread computes the same value */
    if (env == -2) {
        const char *want = getenv("MAMBA2_CPU_PREFETCH");
        env = !want                    ? -1
              : !strcmp(want, "none") ? CPU_PREFETCH_NONE
              : !strcmp(want, "row")  ? CPU_PREFETCH_IN_ROW
              : !strcmp(want, "next") ? CPU_PREFETCH_NEXT_BLOCK
                                      : -1;
    }
    return env;
}

CpuPrefetch cpu_prefetch_asked(CpuPrefetch otherwise) {
    const int env = prefetch_env();
    return env >= 0 ? (CpuPrefetch)env : otherwise;
}

/* MAMBA2_CPU_AHEAD_L2 as read once: -1 when unset. */
static int64_t ahead_l2_env(void) {
    static int64_t env = -2; /* benign race: every thread computes the same value */
    if (env == -2) {
        const char *v = getenv("MAMBA2_CPU_AHEAD_L2");
        const long long n = v && *v ? atoll(v) : -1;
        env = n < 0 ? -1 : (int64_t)(n & ~63LL);
    }
    return env;
}

/* The load trial's choice; written by the loading thread between products, read by the products'
 * threads (OpenMP's barriers order the two). */
static int64_t ahead_l2_chosen = CPU_DECODE_AHEAD_L2;

int64_t cpu_decode_ahead_l2(void) {
    const int64_t env = ahead_l2_env();
    return env >= 0 ? env : __atomic_load_n(&ahead_l2_chosen, __ATOMIC_RELAXED);
}

int cpu_decode_ahead_l2_asked(void) { return ahead_l2_env() >= 0; }

void cpu_decode_choose_ahead_l2(int64_t bytes) {
    __atomic_store_n(&ahead_l2_chosen, bytes > 0 ? bytes & ~(int64_t)63 : 0, __ATOMIC_RELAXED);
}

/* The load trial's choice; written by the loading thread between products. */
static CpuPrefetch gemv_prefetch_chosen = CPU_PREFETCH_NEXT_BLOCK;

CpuPrefetch cpu_gemv_prefetch(void) {
    return cpu_prefetch_asked((CpuPrefetch)__atomic_load_n(&gemv_prefetch_chosen, __ATOMIC_RELAXED));
}

int cpu_gemv_prefetch_asked(void) { return prefetch_env() >= 0; }

void cpu_gemv_choose_prefetch(CpuPrefetch p) { __atomic_store_n(&gemv_prefetch_chosen, p, __ATOMIC_RELAXED); }

const char *cpu_isa_name(CpuIsa isa) {
    static const char *names[] = {"scalar", "avx2", "avx512", "avx512bf16"};
    return names[isa];
}

/* One weight as float, for the scalar variant and the k tails of the SIMD ones. */
static inline float weight_at(Mamba2DType dt, const void *W, int64_t i) {
    switch (dt) {
    case MAMBA2_BF16: return mamba2_bf16_to_f32(((const uint16_t *)W)[i]);
    case MAMBA2_F16: return mamba2_f16_to_f32(((const uint16_t *)W)[i]);
    default: return ((const float *)W)[i];
    }
}

/* A register block's row finished: its SIMD sum s plus the columns from k0 on in scalar code,
 *   *y (+)= s + Σ_{k0 ≤ k < K} W[base + k] · x[k]. */
static inline void finish_row(Mamba2DType dt, const void *W, int64_t base, const float *x, int64_t k0, int64_t K, float s,
                              float *y, int accumulate) {
    for (int64_t k = k0; k < K; k++) s += weight_at(dt, W, base + k) * x[k];
    *y = accumulate ? *y + s : s;
}

/* ------------------------------------------------------------------ scalar */

/* y[b][r] = Σ_k W[r0+r][k] x[b][k], one row and one vector at a time. */
static void gemv_scalar(Mamba2DType dt, const void *W, int64_t K, int64_t r0, int64_t n, const float *x, int64_t ldx,
                        int B, float *y, int64_t ldy, int accumulate) {
    for (int64_t r = 0; r < n; r++)
        for (int b = 0; b < B; b++) {
            const float *xb = x + b * ldx;
            int64_t base = (r0 + r) * K;
            float acc = 0;
            for (int64_t k = 0; k < K; k++) acc += weight_at(dt, W, base + k) * xb[k];
            y[b * ldy + r] = accumulate ? y[b * ldy + r] + acc : acc;
        }
}

/* ------------------------------------------------------------------ AVX2 + FMA + F16C */

/** Attributes of the inlined AVX2 helpers (compiled for AVX2 + FMA + F16C whatever the global flags). */
#define AVX2_INLINE __attribute__((always_inline, target("avx2,fma,f16c")))
/** Attributes of the AVX2 entry point. */
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/* W[i .. i+8) widened to 8 floats [8]. */
static inline AVX2_INLINE __m256 avx2_load8(Mamba2DType dt, const void *W, int64_t i) {
    switch (dt) {
    case MAMBA2_BF16: { /* bf16 → f32: zero-extend each 16-bit value to 32 bits, shift it to the top half */
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)W + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case MAMBA2_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)W + i)));
    default: return _mm256_loadu_ps((const float *)W + i);
    }
}

/* Σ of the 8 lanes of v. */
static inline AVX2_INLINE float avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One register block: rows row .. row+R, vectors 0 .. S (R ≤ 4, S ≤ 2, both constants after inlining).
 * acc[i][j] = Σ_k W[row+i][k] · x[j][k];  y[j][i] (+)= acc[i][j]. */
static inline AVX2_INLINE void avx2_block(Mamba2DType dt, const void *W, int64_t K, int64_t row, int R, const float *x, int64_t ldx,
                        int S, float *y, int64_t ldy, int accumulate, const char *pf, int64_t pf_lines, int passes,
                        int pass) {
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int j = 0; j < S; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t k = 0, step = 0, line = pass; /* prefetch line `line` of the next block at k-step `line` */
    for (; k + 8 <= K; k += 8, step++) {
        if (step == line && line < pf_lines) { /* this pass's share: lines pass, pass + passes, ... */
            if (passes == 1) _mm_prefetch(pf + 64 * line, _MM_HINT_T1); /* a whole block ahead: into L2 */
            else _mm_prefetch(pf + 64 * line, _MM_HINT_T0);
            line += passes;
        }
        __m256 xv[2];
#pragma GCC unroll 2
        for (int j = 0; j < S; j++) xv[j] = _mm256_loadu_ps(x + j * ldx + k);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256 w = avx2_load8(dt, W, (row + i) * K + k);
#pragma GCC unroll 2
            for (int j = 0; j < S; j++) acc[i][j] = _mm256_fmadd_ps(w, xv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int j = 0; j < S; j++)
            finish_row(dt, W, (row + i) * K, x + j * ldx, k, K, avx2_hsum(acc[i][j]), &y[j * ldy + i], accumulate);
}

/* The bf16 block with a cheaper widening: one 32-byte load holds W[k .. k+16); unpacking it with
 * zeros puts each bf16 in the top half of a float, in-lane: lo = W[k+0..4, k+8..12], hi = W[k+4..8,
 * k+12..16] (one instruction per 8 weights instead of two). The activations were permuted into
 * the same order beforehand (xp, see permute_x()), so Σ lo·xp_lo + hi·xp_hi is the dot product.
 * Columns from K16 = K − K mod 16 on are done in scalar code with the unpermuted x. */
static inline AVX2_INLINE void avx2_block_bf16(const uint16_t *W, int64_t K, int64_t row, int R, const float *xp,
                                               int64_t ldxp, const float *x, int64_t ldx, int S, float *y, int64_t ldy,
                                               int accumulate, const char *pf, int64_t pf_lines, int passes, int pass) {
    __m256 acc[8][2];
    const __m256i zero = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int j = 0; j < S; j++) acc[i][j] = _mm256_setzero_ps();
    /* prefetch lines (R/2)·next .. (R/2)·next + R/2 − 1 of the next block at step next: as many as
     * the block reads a step (R rows × 32 bytes) */
    int64_t k = 0, step = 0, next = pass;
    for (; k + 16 <= K; k += 16, step++) {
        if (step == next && R / 2 * next < pf_lines) {
            if (passes == 1) /* a whole block ahead: into L2 */
#pragma GCC unroll 4
                for (int l = 0; l < R / 2; l++) _mm_prefetch(pf + 64 * (R / 2 * next + l), _MM_HINT_T1);
            else /* later passes' share: into L1 */
#pragma GCC unroll 4
                for (int l = 0; l < R / 2; l++) _mm_prefetch(pf + 64 * (R / 2 * next + l), _MM_HINT_T0);
            next += passes;
        }
        if (pass == 0 && row_prefetch == CPU_PREFETCH_IN_ROW) /* the first pass reads the rows from memory: ahead in each row */
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) _mm_prefetch((const char *)(W + (row + i) * K + k) + GEMV_PREFETCH_BYTES, _MM_HINT_T0);
        __m256 xlo[2], xhi[2];
#pragma GCC unroll 2
        for (int j = 0; j < S; j++) {
            xlo[j] = _mm256_loadu_ps(xp + j * ldxp + k);
            xhi[j] = _mm256_loadu_ps(xp + j * ldxp + k + 8);
        }
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(W + (row + i) * K + k));
            __m256 lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, v));
            __m256 hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, v));
#pragma GCC unroll 2
            for (int j = 0; j < S; j++) acc[i][j] = _mm256_fmadd_ps(hi, xhi[j], _mm256_fmadd_ps(lo, xlo[j], acc[i][j]));
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int j = 0; j < S; j++)
            finish_row(MAMBA2_BF16, W, (row + i) * K, x + j * ldx, k, K, avx2_hsum(acc[i][j]), &y[j * ldy + i], accumulate);
}

/* xp[b][16q + i] = x[b][16q + perm(i)] for the unpack order of avx2_block_bf16:
 * perm = 0 1 2 3 8 9 10 11 4 5 6 7 12 13 14 15 (whole groups of 16 columns only), i.e. the 128-bit
 * halves of the group's two 8-float registers swapped across: lo = (x0..3, x8..11), hi = (x4..7, x12..15).
 * Done for every unit of rows a thread takes, so two shuffles a group rather than 16 indexed copies
 * (measured: results/cpu.md, "compute per byte of the bf16 decode products"). */
static inline AVX2_INLINE void permute_x(const float *x, int64_t ldx, int B, int64_t K, float *xp) {
    int64_t K16 = K / 16 * 16;
    for (int b = 0; b < B; b++)
        for (int64_t q = 0; q < K16; q += 16) {
            __m256 a = _mm256_loadu_ps(x + b * ldx + q), c = _mm256_loadu_ps(x + b * ldx + q + 8);
            _mm256_storeu_ps(xp + b * K16 + q, _mm256_permute2f128_ps(a, c, 0x20));
            _mm256_storeu_ps(xp + b * K16 + q + 8, _mm256_permute2f128_ps(a, c, 0x31));
        }
}


/* Rows r0 .. r0+n in blocks of 4 rows × 2 vectors, then the leftovers.
 * With B > 2 a block is walked in several passes (one per pair of vectors), the later ones from
 * L1/L2, which would leave DRAM idle; so while it works on one block, every pass prefetches its
 * share of the next block's cache lines (bf16/f16: one 64-byte line per 8 columns, all of them).
 * With CPU_PREFETCH_NEXT_BLOCK the single pass of B ≤ 2 does the same. */
static inline AVX2_INLINE void avx2_rows(Mamba2DType dt, const void *W, int64_t K, int64_t r0, int64_t n, const float *x, int64_t ldx,
                       int B, float *y, int64_t ldy, int accumulate) {
    int64_t r = 0, es = dt == MAMBA2_F32 ? 4 : 2, K16 = K / 16 * 16;
    int passes = (B + 1) / 2;
    float *xp = dt == MAMBA2_BF16 ? cpu_thread_buffer(CPU_BUF_GEMV, (size_t)B * K16 * sizeof(float)) : NULL;
    if (xp) permute_x(x, ldx, B, K, xp);
    if (xp && B == 1) /* one vector of bf16 rows: 8 rows at a time, as the AVX-512 products (see gemv_dpbf16) */
        for (; r + 8 <= n; r += 8) {
            const char *next = (const char *)W + (r0 + r + 8) * K * es;
            int64_t next_lines = row_prefetch == CPU_PREFETCH_NEXT_BLOCK && r + 16 <= n ? 8 * K * es / 64 : 0;
            avx2_block_bf16((const uint16_t *)W, K, r0 + r, 8, xp, K16, x, ldx, 1, y + r, ldy, accumulate, next, next_lines, 1, 0);
        }
    for (; r + 4 <= n; r += 4) {
        const char *next = (const char *)W + (r0 + r + 4) * K * es;
        int64_t next_lines = (passes > 1 || row_prefetch == CPU_PREFETCH_NEXT_BLOCK) && r + 8 <= n ? 4 * K * es / 64 : 0;
        int b = 0, pass = 0;
        for (; b < B; b += 2, pass++) {
            int S = B - b >= 2 ? 2 : 1;
            if (xp && S == 2)
                avx2_block_bf16((const uint16_t *)W, K, r0 + r, 4, xp + b * K16, K16, x + b * ldx, ldx, 2,
                                y + b * ldy + r, ldy, accumulate, next, next_lines, passes, pass);
            else if (xp)
                avx2_block_bf16((const uint16_t *)W, K, r0 + r, 4, xp + b * K16, K16, x + b * ldx, ldx, 1,
                                y + b * ldy + r, ldy, accumulate, next, next_lines, passes, pass);
            else if (S == 2)
                avx2_block(dt, W, K, r0 + r, 4, x + b * ldx, ldx, 2, y + b * ldy + r, ldy, accumulate, next,
                           next_lines, passes, pass);
            else
                avx2_block(dt, W, K, r0 + r, 4, x + b * ldx, ldx, 1, y + b * ldy + r, ldy, accumulate, next,
                           next_lines, passes, pass);
        }
    }
    for (; r < n; r++)
        for (int b = 0; b < B; b++)
            avx2_block(dt, W, K, r0 + r, 1, x + b * ldx, ldx, 1, y + b * ldy + r, ldy, accumulate, NULL, 0, 1, 0);
}

/* One specialised copy of the loop per dtype (the dtype is a constant inside each case). */
static AVX2_TARGET void gemv_avx2(Mamba2DType dt, const void *W, int64_t K, int64_t r0, int64_t n,
                                 const float *x, int64_t ldx, int B, float *y, int64_t ldy, int accumulate) {
    switch (dt) {
    case MAMBA2_BF16: avx2_rows(MAMBA2_BF16, W, K, r0, n, x, ldx, B, y, ldy, accumulate); break;
    case MAMBA2_F16: avx2_rows(MAMBA2_F16, W, K, r0, n, x, ldx, B, y, ldy, accumulate); break;
    default: avx2_rows(MAMBA2_F32, W, K, r0, n, x, ldx, B, y, ldy, accumulate); break;
    }
}

/* ------------------------------------------------------------------ AVX-512F */

/** Attributes of the inlined AVX-512 helpers. */
#define AVX512_INLINE __attribute__((always_inline, target("avx512f")))
/** Attributes of the AVX-512 entry point. */
#define AVX512_TARGET __attribute__((target("avx512f")))

/* W[i .. i+16) widened to 16 floats. */
static inline AVX512_INLINE __m512 avx512_load16(Mamba2DType dt, const void *W, int64_t i) {
    switch (dt) {
    case MAMBA2_BF16: {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)W + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case MAMBA2_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)W + i)));
    default: return _mm512_loadu_ps((const float *)W + i);
    }
}

/* The AVX2 block with 16 lanes and up to 4 vectors (AVX-512 has 32 registers: 16 accumulators,
 * 4 weights and 4 activations fit), so B ≤ 4 is one pass over the weights:
 * acc[i][j] = Σ_k W[row+i][k] · x[j][k], R·S ≤ 16 (R, S ≤ 4, or R = 8 for one vector).
 * With CPU_PREFETCH_NEXT_BLOCK it prefetches the next R rows only when @p next says they are the
 * same call's: the rows after a call's last block are another unit of work, which another thread
 * may take and read itself (measured: results/cpu.md, "the next block's prefetch kept inside"). */
static inline AVX512_INLINE void avx512_block(Mamba2DType dt, const void *W, int64_t K, int64_t row, int R, const float *x, int64_t ldx,
                            int S, float *y, int64_t ldy, int accumulate, int next) {
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < S; j++) acc[i][j] = _mm512_setzero_ps();
    int64_t k = 0, es = dt == MAMBA2_F32 ? 4 : 2;
    for (; k + 16 <= K; k += 16) {
        /* prefetches never fault: past the end of W is harmless */
        if (row_prefetch == CPU_PREFETCH_NEXT_BLOCK && next && (k * es) % 64 == 0) /* the next block's lines at this column */
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) _mm_prefetch((const char *)W + ((row + R + i) * K + k) * es, _MM_HINT_T1);
        else if (row_prefetch == CPU_PREFETCH_IN_ROW)
#pragma GCC unroll 8
            for (int i = 0; i < R; i++)
                _mm_prefetch((const char *)W + ((row + i) * K + k) * es + GEMV_PREFETCH_BYTES, _MM_HINT_T0);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int j = 0; j < S; j++) xv[j] = _mm512_loadu_ps(x + j * ldx + k);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            __m512 w = avx512_load16(dt, W, (row + i) * K + k);
#pragma GCC unroll 4
            for (int j = 0; j < S; j++) acc[i][j] = _mm512_fmadd_ps(w, xv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < S; j++)
            finish_row(dt, W, (row + i) * K, x + j * ldx, k, K, _mm512_reduce_add_ps(acc[i][j]), &y[j * ldy + i], accumulate);
}

/* The bf16 block on 32 columns a step: one 64-byte load holds W[k .. k+32), each 32-bit lane an even
 * column's bf16 in its low half and the next (odd) column's in its high half, so a shift left by 16
 * makes the even columns' floats and clearing the low half the odd ones': two integer instructions
 * for 32 weights, where widening 16 at a time (avx512_load16()) takes a shuffle and a shift for
 * every 16. The activations were put in that order beforehand (xp, even_odd_x16()):
 *   acc[i][j] += even(W[row+i][k..k+32)) · xp[j][k..k+16) + odd(W[row+i][k..k+32)) · xp[j][k+16..k+32)
 * Columns from K32 = K − K mod 32 on are done in scalar code with the unpermuted x. Prefetch as
 * avx512_block() (one line of each row a step). */
static inline AVX512_INLINE void avx512_block_bf16(const uint16_t *W, int64_t K, int64_t row, int R, const float *xp,
                                                   int64_t ldxp, const float *x, int64_t ldx, int S, float *y,
                                                   int64_t ldy, int accumulate, int next) {
    const int64_t K32 = K / 32 * 32;
    const __m512i odd = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < S; j++) acc[i][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k < K32; k += 32) {
        if (row_prefetch == CPU_PREFETCH_NEXT_BLOCK && next) /* the next block's rows at this column: one line each */
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) _mm_prefetch((const char *)(W + (row + R + i) * K + k), _MM_HINT_T1);
        else if (row_prefetch == CPU_PREFETCH_IN_ROW)
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) _mm_prefetch((const char *)(W + (row + i) * K + k) + GEMV_PREFETCH_BYTES, _MM_HINT_T0);
        __m512 xe[4], xo[4];
#pragma GCC unroll 4
        for (int j = 0; j < S; j++) xe[j] = _mm512_loadu_ps(xp + j * ldxp + k), xo[j] = _mm512_loadu_ps(xp + j * ldxp + k + 16);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const __m512i v = _mm512_loadu_si512(W + (row + i) * K + k);
            const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), wo = _mm512_castsi512_ps(_mm512_and_si512(v, odd));
#pragma GCC unroll 4
            for (int j = 0; j < S; j++) acc[i][j] = _mm512_fmadd_ps(wo, xo[j], _mm512_fmadd_ps(we, xe[j], acc[i][j]));
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < S; j++)
            finish_row(MAMBA2_BF16, W, (row + i) * K, x + j * ldx, K32, K, _mm512_reduce_add_ps(acc[i][j]), &y[j * ldy + i], accumulate);
}

/* xp[b][32q + l] = x[b][32q + 2l], xp[b][32q + 16 + l] = x[b][32q + 2l + 1] (l < 16; whole groups of 32
 * columns only): each 32 columns' even ones, then their odd ones, as avx512_block_bf16() widens them. */
static inline AVX512_INLINE void even_odd_x16(const float *x, int64_t ldx, int B, int64_t K, float *xp) {
    const int64_t K32 = K / 32 * 32;
    const __m512i even_i = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd_i = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int b = 0; b < B; b++)
        for (int64_t q = 0; q < K32; q += 32) {
            const __m512 a = _mm512_loadu_ps(x + b * ldx + q), c = _mm512_loadu_ps(x + b * ldx + q + 16);
            _mm512_storeu_ps(xp + b * K32 + q, _mm512_permutex2var_ps(a, even_i, c));
            _mm512_storeu_ps(xp + b * K32 + q + 16, _mm512_permutex2var_ps(a, odd_i, c));
        }
}

/* One register block of avx512_rows(): bf16 weights through avx512_block_bf16() when the activations
 * were put in even/odd order (xp), everything else through avx512_block(). */
static inline AVX512_INLINE void avx512_any_block(Mamba2DType dt, const void *W, int64_t K, int64_t row, int R, const float *xp,
                                                  int64_t ldxp, const float *x, int64_t ldx, int S, float *y, int64_t ldy,
                                                  int accumulate, int next) {
    if (xp) avx512_block_bf16((const uint16_t *)W, K, row, R, xp, ldxp, x, ldx, S, y, ldy, accumulate, next);
    else avx512_block(dt, W, K, row, R, x, ldx, S, y, ldy, accumulate, next);
}

static inline AVX512_INLINE void avx512_rows(Mamba2DType dt, const void *W, int64_t K, int64_t r0, int64_t n, const float *x,
                           int64_t ldx, int B, float *y, int64_t ldy, int accumulate) {
    int64_t r = 0;
    const int64_t K32 = K / 32 * 32;
    /* bf16: x in even/odd order, in this thread's buffer (none: the widening product, which needs none) */
    float *xp = dt == MAMBA2_BF16 && K32 ? cpu_thread_buffer(CPU_BUF_GEMV, (size_t)B * K32 * sizeof(float)) : NULL;
    if (xp) even_odd_x16(x, ldx, B, K, xp);
    if (B == 1) /* one vector: 8 rows at a time, as the AVX512_BF16 product (see gemv_dpbf16) */
        for (; r + 8 <= n; r += 8) avx512_any_block(dt, W, K, r0 + r, 8, xp, K32, x, ldx, 1, y + r, ldy, accumulate, r + 16 <= n);
    for (; r + 4 <= n; r += 4) {
        for (int b = 0; b < B; b += 4) { /* S a constant in each call, so the block's loops unroll */
            const int next = r + 8 <= n;
            float *yb = y + b * ldy + r;
            const float *xb = x + b * ldx, *xpb = xp ? xp + b * K32 : NULL;
            switch (B - b) {
            case 1: avx512_any_block(dt, W, K, r0 + r, 4, xpb, K32, xb, ldx, 1, yb, ldy, accumulate, next); break;
            case 2: avx512_any_block(dt, W, K, r0 + r, 4, xpb, K32, xb, ldx, 2, yb, ldy, accumulate, next); break;
            case 3: avx512_any_block(dt, W, K, r0 + r, 4, xpb, K32, xb, ldx, 3, yb, ldy, accumulate, next); break;
            default: avx512_any_block(dt, W, K, r0 + r, 4, xpb, K32, xb, ldx, 4, yb, ldy, accumulate, next); break;
            }
        }
    }
    for (; r < n; r++)
        for (int b = 0; b < B; b++)
            avx512_block(dt, W, K, r0 + r, 1, x + b * ldx, ldx, 1, y + b * ldy + r, ldy, accumulate, 0);
}

static AVX512_TARGET void gemv_avx512(Mamba2DType dt, const void *W, int64_t K, int64_t r0, int64_t n,
                                     const float *x, int64_t ldx, int B, float *y, int64_t ldy, int accumulate) {
    switch (dt) {
    case MAMBA2_BF16: avx512_rows(MAMBA2_BF16, W, K, r0, n, x, ldx, B, y, ldy, accumulate); break;
    case MAMBA2_F16: avx512_rows(MAMBA2_F16, W, K, r0, n, x, ldx, B, y, ldy, accumulate); break;
    default: avx512_rows(MAMBA2_F32, W, K, r0, n, x, ldx, B, y, ldy, accumulate); break;
    }
}

/* ------------------------------------------------------------------ AVX512_BF16 (bf16 weights) */

/** Attributes of the AVX512_BF16 helpers and entry point. */
#define DPBF16_INLINE __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16")))
#define DPBF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* xs [B][parts][K32]: x rounded to bf16 (x_hi), and with parts = 2 the rest rounded again
 * (x_lo = bf16(x − x_hi)), for the whole groups of 32 columns (K32 = K − K mod 32). */
static DPBF16_TARGET void split_x(const float *x, int64_t ldx, int B, int64_t K32, int parts, uint16_t *xs) {
    for (int b = 0; b < B; b++)
        for (int64_t k = 0; k < K32; k += 16) {
            __m512 v = _mm512_loadu_ps(x + b * ldx + k);
            __m256i hi = (__m256i)_mm512_cvtneps_pbh(v);
            _mm256_storeu_si256((__m256i *)(xs + (b * parts) * K32 + k), hi);
            if (parts == 2) {
                __m512 hi_f = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
                __m256i lo = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hi_f));
                _mm256_storeu_si256((__m256i *)(xs + (b * parts + 1) * K32 + k), lo);
            }
        }
}

/* The register block: rows row .. row+R, vectors 0 .. S (R·S ≤ 16: R, S ≤ 4, or R = 8 for one vector),
 * one vdpbf16ps per 32 weights and part (it sums the products of adjacent pairs, so W and x are both
 * read in their natural order):
 *   acc[i][j] = Σ_k W[row+i][k] · (x_hi[j][k] + x_lo[j][k]),  columns past K32 in fp32.
 * The next block's prefetch only with @p next, as avx512_block(). */
static inline DPBF16_INLINE void dpbf16_block(const uint16_t *W, int64_t K, int64_t row, int R, const uint16_t *xs,
                                              int parts, const float *x, int64_t ldx, int S, float *y, int64_t ldy,
                                              int accumulate, int next) {
    int64_t K32 = K / 32 * 32, k = 0;
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < S; j++) acc[i][j] = _mm512_setzero_ps();
    for (; k < K32; k += 32) {
        if (row_prefetch == CPU_PREFETCH_NEXT_BLOCK && next) /* the next block's rows at this column: one line each */
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) _mm_prefetch((const char *)(W + (row + R + i) * K + k), _MM_HINT_T1);
        else if (row_prefetch == CPU_PREFETCH_IN_ROW)
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) _mm_prefetch((const char *)(W + (row + i) * K + k) + GEMV_PREFETCH_BYTES, _MM_HINT_T0);
        __m512bh xh[4], xl[4];
#pragma GCC unroll 4
        for (int j = 0; j < S; j++) {
            xh[j] = (__m512bh)_mm512_loadu_si512(xs + (j * parts) * K32 + k);
            if (parts == 2) xl[j] = (__m512bh)_mm512_loadu_si512(xs + (j * parts + 1) * K32 + k);
        }
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            __m512bh w = (__m512bh)_mm512_loadu_si512(W + (row + i) * K + k);
#pragma GCC unroll 4
            for (int j = 0; j < S; j++) {
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], w, xh[j]);
                if (parts == 2) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], w, xl[j]);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < S; j++)
            finish_row(MAMBA2_BF16, W, (row + i) * K, x + j * ldx, K32, K, _mm512_reduce_add_ps(acc[i][j]), &y[j * ldy + i], accumulate);
}

static DPBF16_TARGET void gemv_dpbf16(const uint16_t *W, int64_t K, int64_t r0, int64_t n, const float *x, int64_t ldx,
                                      int B, float *y, int64_t ldy, int accumulate, int parts) {
    int64_t K32 = K / 32 * 32;
    uint16_t *xs = cpu_thread_buffer(CPU_BUF_GEMV, (size_t)B * parts * K32 * sizeof(uint16_t));
    if (!xs) { /* no memory for the bf16 copy of x: the fp32 variant needs none */
        gemv_avx512(MAMBA2_BF16, W, K, r0, n, x, ldx, B, y, ldy, accumulate);
        return;
    }
    split_x(x, ldx, B, K32, parts, xs);
    int64_t r = 0;
    if (B == 1) /* one vector: 8 rows at a time, eight row streams (and the next 8 requested) a thread */
        for (; r + 8 <= n; r += 8) {
            const int next = r + 16 <= n; /* the next block is this call's too (see gemv_dpbf16) */
            if (parts == 1) dpbf16_block(W, K, r0 + r, 8, xs, 1, x, ldx, 1, y + r, ldy, accumulate, next);
            else dpbf16_block(W, K, r0 + r, 8, xs, 2, x, ldx, 1, y + r, ldy, accumulate, next);
        }
    for (; r + 4 <= n; r += 4)
        for (int b = 0; b < B; b += 4) { /* S and parts constants in each call, so the block's loops unroll */
            const int next = r + 8 <= n;
            const uint16_t *xb = xs + (size_t)b * parts * K32;
            float *yb = y + b * ldy + r;
            int S = B - b < 4 ? B - b : 4;
            if (parts == 1) switch (S) {
                case 1: dpbf16_block(W, K, r0 + r, 4, xb, 1, x + b * ldx, ldx, 1, yb, ldy, accumulate, next); break;
                case 2: dpbf16_block(W, K, r0 + r, 4, xb, 1, x + b * ldx, ldx, 2, yb, ldy, accumulate, next); break;
                case 3: dpbf16_block(W, K, r0 + r, 4, xb, 1, x + b * ldx, ldx, 3, yb, ldy, accumulate, next); break;
                default: dpbf16_block(W, K, r0 + r, 4, xb, 1, x + b * ldx, ldx, 4, yb, ldy, accumulate, next); break;
                }
            else switch (S) {
                case 1: dpbf16_block(W, K, r0 + r, 4, xb, 2, x + b * ldx, ldx, 1, yb, ldy, accumulate, next); break;
                case 2: dpbf16_block(W, K, r0 + r, 4, xb, 2, x + b * ldx, ldx, 2, yb, ldy, accumulate, next); break;
                case 3: dpbf16_block(W, K, r0 + r, 4, xb, 2, x + b * ldx, ldx, 3, yb, ldy, accumulate, next); break;
                default: dpbf16_block(W, K, r0 + r, 4, xb, 2, x + b * ldx, ldx, 4, yb, ldy, accumulate, next); break;
                }
        }
    for (; r < n; r++)
        for (int b = 0; b < B; b++)
            dpbf16_block(W, K, r0 + r, 1, xs + (size_t)b * parts * K32, parts, x + b * ldx, ldx, 1, y + b * ldy + r, ldy,
                         accumulate, 0);
}

/* ------------------------------------------------------------------ entry points */

/** Rows per block of work in cpu_gemv(), at most (a multiple of 8, the register block; 2 MiB of bf16 at K = 4096). */
#define GEMV_BLOCK_ROWS 256

/* As close to GEMV_BLOCK_ROWS as a whole number of units per thread allows (k = ⌈rows /
 * (GEMV_BLOCK_ROWS · n_threads)⌉ each), rounded up to the 8-row register block. With threads of
 * equal speed the last ones then finish together, and at 32 to 64 threads a matrix of 4,096 rows
 * still gives every thread work, where 16 units of 256 rows would leave most of them idle. At 2
 * threads the model's matrices (4,096, 18,560 and 32,768 rows) keep units of 256. */
int64_t cpu_gemv_unit_rows(int64_t rows, int n_threads) {
    const int64_t t = n_threads > 1 ? n_threads : 1, per = (int64_t)GEMV_BLOCK_ROWS * t, units = (rows + per - 1) / per * t;
    if (units <= 0) return GEMV_BLOCK_ROWS; /* no rows: no units either way */
    const int64_t unit = (rows + units - 1) / units;
    return (unit + 7) / 8 * 8;
}

void cpu_gemv_rows(CpuIsa isa, const Mamba2Tensor *W, int64_t r0, int64_t n, const float *x, int64_t ldx, int B,
                   float *y, int64_t ldy, int accumulate, Mamba2Precision precision) {
    int64_t K = W->shape[1];
    if (n <= 0) return;
    if (isa == CPU_ISA_AVX512BF16 && W->dtype == MAMBA2_BF16)
        gemv_dpbf16(W->data, K, r0, n, x, ldx, B, y, ldy, accumulate, precision == MAMBA2_PRECISION_FAST ? 1 : 2);
    else if (isa >= CPU_ISA_AVX512) gemv_avx512(W->dtype, W->data, K, r0, n, x, ldx, B, y, ldy, accumulate);
    else if (isa == CPU_ISA_AVX2) gemv_avx2(W->dtype, W->data, K, r0, n, x, ldx, B, y, ldy, accumulate);
    else gemv_scalar(W->dtype, W->data, K, r0, n, x, ldx, B, y, ldy, accumulate);
}

void cpu_gemv(CpuIsa isa, const Mamba2Tensor *W, const float *x, int64_t ldx, int B, float *y, int64_t ldy,
              int accumulate, int n_threads, Mamba2Precision precision) {
    row_prefetch = cpu_gemv_prefetch(); /* read by the threads below */
    const int64_t rows = W->shape[0], unit = cpu_gemv_unit_rows(rows, n_threads), n_units = (rows + unit - 1) / unit;
    /* Units of cpu_gemv_unit_rows() rows handed out on demand: each row is still computed whole by one
     * thread (so the result does not depend on the thread count), and a thread slowed down by
     * another tenant of the host does not make the others wait at the end (measured: results/cpu.md,
     * "Moved from code comments"). */
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t i = 0; i < n_units; i++) {
        int64_t r0 = i * unit, r1 = r0 + unit < rows ? r0 + unit : rows;
        cpu_gemv_rows(isa, W, r0, r1 - r0, x, ldx, B, y + r0, ldy, accumulate, precision);
    }
}
