/**
 * @file qmatrix.c
 * @brief Quantization at load (q8, q4) and the integer products of qmatrix.h: scalar, AVX2, ymm VNNI
 *        (AVX-VNNI, or AVX512-VNNI + VL on ymm), AVX512-VNNI on zmm.
 *
 * Packed layout. W is padded to whole tiles of QT_ROWS = 4 rows × QT_K = 256 columns (zeros); a
 * row group's tiles follow one another along K, and row groups follow one another, so a GEMV
 * over four rows reads one sequential stream. One tile:
 *
 *     values  [4 rows][256 columns]   q8: 1 byte per weight (q + 128); q4: 4 bits (q + 8)
 *     scales  [4 rows][8 blocks]      fp16 d of each block of 32 weights
 *     → 1,088 bytes (q8) or 576 bytes (q4), both multiples of a 64-byte cache line.
 *
 * Within a row, each group of 64 columns (blocks 2g and 2g + 1) is stored in "lane order": byte
 * 8m + 4b + e holds column 32b + 4m + e (m < 8, b < 2, e < 4). vpdpbusd sums 4 adjacent byte
 * products into each 32-bit lane, so lane j holds a partial sum of block j & 1 alone, and a vector
 * of the two blocks' scales, alternating (d₀ d₁ d₀ d₁ …), scales every lane by its own block's d.
 * q4 keeps groups 2h and 2h + 1 in the same 64 bytes, the first in the low nibbles and the second
 * in the high ones: byte 64h + i = v₂ₕ[i] | v₂ₕ₊₁[i] << 4 (v: a group's 64 lane-ordered values), so
 * one 64-byte load and a mask (and a shift, for the odd group) give a group's values in lane order.
 *
 * The activations of one row x [K] are quantized into the same lane order, one 832-byte record per
 * tile of 256 columns (groups g = 0..3 of 64 columns):
 *
 *     p      [4][64]  int8, x ≈ e · p per block of 32 (e = max|x| / 127)
 *     ncorr  [4][16]  int32, lane j of group g: −offset · Σ of the lane's 4 values of p (offset 128
 *                     for q8, 8 for q4)
 *     escale [4][16]  float, lane j of group g: e of block 2g + (j & 1)
 *     e      [16]     float, the e of the tile's 8 blocks, twice: e₀ … e₇ e₀ … e₇
 *
 * so that vpdpbusd(ncorr, w + offset, p) is, lane by lane, the exact integer Σ q·p of the lane,
 * and escale scales it lane by lane. The record's e lines up with a tile's scales widened to fp32
 * (row i: d₀ … d₇; rows 2h and 2h + 1 in one zmm), so that one multiplication per tile gives every
 * block's d · e, which a decode kernel (one activation row) then takes per (row, group) with the
 * permutation it does anyway; kernels of several rows multiply by escale instead.
 */
#include "qmatrix.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gemm_amx.h"
#include "gemm_bf16.h"
#include "gemm_fp32.h"
#include "gemm_tier.h"

#define QT_ROWS 4      /**< rows per tile */
#define QT_K 256       /**< columns per tile */
#define QT_BLOCKS 8    /**< scale blocks per tile row (QT_K / QBLOCK) */
#define QT_GROUPS 4    /**< 64-column groups per tile row */
#define XTILE 832      /**< bytes of one quantized-activation record (one tile: 256 columns) */
#define XNCORR 256     /**< offset of a record's ncorr */
#define XESCALE 512    /**< offset of a record's escale */
#define XE 768         /**< offset of a record's e */
#define ITEM_ROWS_MAX 256 /**< the most rows of W in one unit of work handed to a thread */
/** How far ahead in its row group's stream a SIMD kernel prefetches with CPU_PREFETCH_IN_ROW
 *  (whole tiles of about this many bytes). */
#define PREFETCH_BYTES 8192

/* How the SIMD kernels prefetch their weights (cpu_qlinear_prefetch(), decided once in
 * cpu_qlinear(): a benign race, every thread writes the same value): CPU_PREFETCH_NEXT_BLOCK
 * asks for the next row group's tile at the column being read, into L2 (a whole row group's
 * stream ahead); CPU_PREFETCH_IN_ROW for the tile PREFETCH_BYTES ahead in the same stream, into
 * L1; CPU_PREFETCH_NONE leaves the stream to the hardware prefetchers (measurements:
 * results/cpu.md, "Quantized decode kernels", "Prefetch" and "q8/q4 decode, the activation scales
 * folded per tile"). */
static CpuPrefetch stream_prefetch = CPU_PREFETCH_IN_ROW;

CpuPrefetch cpu_qlinear_prefetch(void) {
    __builtin_cpu_init();
    return cpu_prefetch_asked(__builtin_cpu_is("amd") ? CPU_PREFETCH_NONE : CPU_PREFETCH_IN_ROW);
}

/* The prefetch of tile @p t (tile_bytes() @p tb) of a row group of @p n_kt tiles. */
static inline void prefetch_tile(const uint8_t *t, int64_t tb, int64_t n_kt) {
    if (stream_prefetch == CPU_PREFETCH_NEXT_BLOCK)
        for (int64_t c = 0; c < tb; c += 64) _mm_prefetch((const char *)t + n_kt * tb + c, _MM_HINT_T1);
    else if (stream_prefetch == CPU_PREFETCH_IN_ROW)
        for (int64_t c = 0, ahead = (PREFETCH_BYTES + tb / 2) / tb * tb; c < tb; c += 64)
            _mm_prefetch((const char *)t + ahead + c, _MM_HINT_T0);
}

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/* clamp(round(v), lo, hi), rounding half to even, for |v| < 2²²: adding and subtracting 1.5 · 2²³
 * rounds v to an integer in the current (nearest-even) mode. Written out because GCC does not
 * vectorise rintf() or fminf() without -ffast-math. */
static inline float round_clamp(float v, float lo, float hi) {
    v = (v + 12582912.0f) - 12582912.0f;
    return v < lo ? lo : v > hi ? hi : v;
}

/* float → IEEE half bits for a non-negative finite scale, rounding to nearest even (subnormal halves
 * included; values that would round past the largest half, 65504, saturate to it). Bit operations
 * only: this runs for every candidate scale of every block at load. */
static inline uint16_t f32_to_f16(float f) {
    if (!(f > 0)) return 0;
    if (f >= 65520.0f) return 0x7bff;
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t e = x >> 23;                           /* biased float exponent; the half's is e − 112 */
    if (e < 113) return (uint16_t)round_clamp(f * 16777216.0f, 0, 1024); /* below 2⁻¹⁴: units of 2⁻²⁴ */
    uint32_t h = (e - 112) << 10 | (x & 0x7fffff) >> 13, rest = x & 0x1fff; /* keep 10 of 23 mantissa bits */
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* a carry into the exponent is right too */
    return (uint16_t)h;
}

/* Bytes of the values of one tile row, and of a whole tile. */
static int64_t row_value_bytes(Mamba2WeightFormat f) { return f == MAMBA2_WEIGHTS_Q8 ? QT_K : QT_K / 2; }
static int64_t tile_bytes(Mamba2WeightFormat f) { return QT_ROWS * row_value_bytes(f) + QT_ROWS * QT_BLOCKS * 2; }
static int offset_of(Mamba2WeightFormat f) { return f == MAMBA2_WEIGHTS_Q8 ? 128 : 8; }

/* The column (0..63) of a group that lane-order byte i holds. */
static int lane_col(int i) { return 32 * ((i >> 2) & 1) + 4 * (i >> 3) + (i & 3); }

/* The tile of row group rg and column tile kt. */
static uint8_t *tile_at(const CpuQMatrix *q, int64_t rg, int64_t kt) {
    return q->data + (rg * (q->K_pad / QT_K) + kt) * tile_bytes(q->format);
}

/* ------------------------------------------------------------------ quantization */

/** Loops compiled for AVX-512, AVX2 and any x86-64 (the quantization at load is vectorised). */
#define QCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/** Scales q4 tries per block (see quantize_block()). */
#define Q4_CANDIDATES 8

/* Σ (w − d·clamp(round(w·inv), lo, hi))² over one block: the error of scale d, with q rounded
 * through inv ≈ 1/d. */
static inline float block_error(const float *w, float d, float inv, float lo, float hi) {
    float err = 0;
#pragma omp simd reduction(+ : err)
    for (int i = 0; i < QBLOCK; i++) {
        float r = w[i] - d * round_clamp(w[i] * inv, lo, hi);
        err += r * r;
    }
    return err;
}

/* The fp16-rounded value of d, with its sign (the scales are stored as fp16). */
static inline float as_f16(float d) {
    uint32_t h = f32_to_f16(fabsf(d)), bits = h >= 0x400 ? ((h >> 10) + 112) << 23 | (h & 0x3ff) << 13 : 0;
    float v = h >= 0x400 ? 0 : (float)h * (1.0f / 16777216.0f); /* subnormal halves: units of 2⁻²⁴ */
    if (h >= 0x400) memcpy(&v, &bits, sizeof v);
    return copysignf(v, d);
}

/* Integers and scale of one block of 32 weights w: returns d (fp16-exact), fills q[32].
 * q8: d = max|w| / 127, q = round(w / d) ∈ [−127, 127].
 * q4: the d among Q4_CANDIDATES scales smax / (−8 + δ), δ = 0, −1/8, +1/8, −2/8, … (smax: the
 *     weight of largest magnitude, with its sign) that minimises Σ (w − d q)², q = clamp(round(w ·
 *     (−8 + δ) / smax), −8, 7) (as llama.cpp rounds, through the inverse of the scale before its
 *     fp16 rounding); δ = 0 is llama.cpp Q4_0's scale and rounding, so a block's error is never
 *     larger than Q4_0's. */
static QCLONES float quantize_block(Mamba2WeightFormat f, const float *w, int8_t *q) {
    float amax = 0, smax = 0;
    for (int i = 0; i < QBLOCK; i++)
        if (fabsf(w[i]) > amax) amax = fabsf(w[i]), smax = w[i];
    float d = 0, inv = 0, lo = -127, hi = 127;
    if (f == MAMBA2_WEIGHTS_Q8) {
        d = as_f16(amax / 127);
        inv = d != 0 ? 1 / d : 0;
    } else {
        float best = INFINITY, inv_smax = amax > 0 ? 1 / smax : 0;
        lo = -8, hi = 7;
        for (int s = 0; s < Q4_CANDIDATES && amax > 0; s++) {
            float div = -8.0f + (s % 2 ? -0.125f : 0.125f) * (float)((s + 1) / 2);
            float c = as_f16(smax / div), ic = div * inv_smax, err = block_error(w, c, ic, lo, hi);
            if (err < best) best = err, d = c, inv = ic;
        }
    }
#pragma omp simd
    for (int i = 0; i < QBLOCK; i++) q[i] = (int8_t)round_clamp(w[i] * inv, lo, hi);
    return d;
}

/* The half bits of a scale that may be negative (q4's d has the sign of the block's largest weight). */
static uint16_t f16_signed(float d) { return (uint16_t)(f32_to_f16(fabsf(d)) | (d < 0 ? 0x8000 : 0)); }

/* Quantize the 256 columns w [QT_K] of one tile row into its values @p vals (lane order, offset)
 * and its 8 fp16 scales. */
static void quantize_tile_row(Mamba2WeightFormat f, const float *w, uint8_t *vals, uint16_t *scales) {
    int8_t q[QT_K];
    for (int b = 0; b < QT_BLOCKS; b++) scales[b] = f16_signed(quantize_block(f, w + b * QBLOCK, q + b * QBLOCK));
    int off = offset_of(f);
    uint8_t v[QT_GROUPS][64]; /* each group's values in lane order, with the offset */
    for (int g = 0; g < QT_GROUPS; g++)
        for (int i = 0; i < 64; i++) v[g][i] = (uint8_t)(q[64 * g + lane_col(i)] + off);
    if (f == MAMBA2_WEIGHTS_Q8) memcpy(vals, v, sizeof v);
    else
        for (int h = 0; h < QT_GROUPS / 2; h++)
            for (int i = 0; i < 64; i++) vals[64 * h + i] = (uint8_t)(v[2 * h][i] | v[2 * h + 1][i] << 4);
}

size_t cpu_qmatrix_bytes(int64_t rows, int64_t K, Mamba2WeightFormat format) {
    return (size_t)(round_up(rows, QT_ROWS) / QT_ROWS * (round_up(K, QT_K) / QT_K) * tile_bytes(format));
}

int cpu_qmatrix_quantize(const Mamba2Tensor *W, Mamba2WeightFormat format, int n_threads, CpuQMatrix *out,
                         Mamba2Error *err) {
    memset(out, 0, sizeof *out);
    out->format = format;
    out->rows = W->shape[0];
    out->K = W->shape[1];
    out->K_pad = round_up(out->K, QT_K);
    int64_t n_rg = round_up(out->rows, QT_ROWS) / QT_ROWS, n_kt = out->K_pad / QT_K, Kp = out->K_pad;
    out->bytes = cpu_qmatrix_bytes(out->rows, out->K, format);
    void *p = NULL; /* 2 MiB aligned when large, so that the huge-page hint below covers it whole */
    if (posix_memalign(&p, out->bytes >= (2u << 20) ? (2u << 20) : 64, out->bytes))
        return mamba2_fail(err, "out of memory for the %s copy of %s (%.1f MiB)", mamba2_weight_format_name(format),
                           W->name ? W->name : "a weight matrix", out->bytes / 1048576.0);
    out->data = p;
    (void)madvise(p, out->bytes, MADV_HUGEPAGE); /* 2 MiB pages for the copy, which decode streams whole (a hint) */
    int ok = 1;
#pragma omp parallel num_threads(n_threads)
    {
        float *w = malloc((size_t)QT_ROWS * Kp * sizeof *w); /* [4, K_pad]: a row group in fp32, zero-padded */
        if (!w) {
#pragma omp atomic write
            ok = 0;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t rg = 0; rg < n_rg; rg++) {
            if (!w) continue;
            int64_t r0 = rg * QT_ROWS, n = out->rows - r0 < QT_ROWS ? out->rows - r0 : QT_ROWS;
            memset(w, 0, (size_t)QT_ROWS * Kp * sizeof *w);
            for (int64_t i = 0; i < n; i++) cpu_convert_rows(W, r0 + i, 1, w + i * Kp);
            for (int64_t kt = 0; kt < n_kt; kt++) {
                uint8_t *t = tile_at(out, rg, kt);
                uint16_t *scales = (uint16_t *)(t + QT_ROWS * row_value_bytes(format));
                for (int i = 0; i < QT_ROWS; i++)
                    quantize_tile_row(format, w + i * Kp + kt * QT_K, t + i * row_value_bytes(format),
                                      scales + i * QT_BLOCKS);
            }
        }
        free(w);
    }
    if (!ok) {
        cpu_qmatrix_free(out);
        return mamba2_fail(err, "out of memory quantizing %s", W->name ? W->name : "a weight matrix");
    }
    return 0;
}

void cpu_qmatrix_free(CpuQMatrix *q) {
    free(q->data);
    memset(q, 0, sizeof *q);
}

/* The integer q (offset removed) of lane-order byte i of group g in tile row values @p vals. */
static int stored_value(const CpuQMatrix *q, const uint8_t *vals, int g, int i) {
    if (q->format == MAMBA2_WEIGHTS_Q8) return vals[64 * g + i] - 128;
    uint8_t b = vals[64 * (g >> 1) + i];
    return (g & 1 ? b >> 4 : b & 15) - 8;
}

/* ------------------------------------------------------------------ activations */

size_t cpu_qlinear_scratch_bytes(int64_t K, int T) { return (size_t)T * (size_t)(round_up(K, QT_K) / QT_K) * XTILE; }

/* x [K] → K_pad / 256 records (see the file comment), for weights stored with @p offset.
 * Per block of 32: e = max|x| / 127, p = round(x / e); then the 4-byte units of each group of 64
 * columns are put in lane order (unit 2m + b holds columns 32b + 4m .. + 3), and per lane j:
 * ncorr = −offset · Σ of its 4 p, escale = e of block 2g + (j & 1). */
static QCLONES void quantize_x(const float *x, int64_t K, int64_t K_pad, int offset, uint8_t *rec) {
    for (int64_t k0 = 0; k0 < K_pad; k0 += QT_K, rec += XTILE) {
        float *e = (float *)(rec + XE);
        for (int g = 0; g < QT_GROUPS; g++) {
            int64_t g0 = k0 + 64 * g;
            int8_t *p = (int8_t *)rec + 64 * g, q[64]; /* q: column order */
            int32_t *ncorr = (int32_t *)(rec + XNCORR) + 16 * g;
            float *escale = (float *)(rec + XESCALE) + 16 * g, v[64];
            int n = K - g0 < 64 ? (int)(K - g0 > 0 ? K - g0 : 0) : 64;
            memcpy(v, x + g0, (size_t)n * sizeof *v);
            memset(v + n, 0, (size_t)(64 - n) * sizeof *v);
            for (int b = 0; b < 2; b++) {
                float amax = 0;
#pragma omp simd reduction(max : amax)
                for (int i = 0; i < QBLOCK; i++) amax = fabsf(v[32 * b + i]) > amax ? fabsf(v[32 * b + i]) : amax;
                float inv = amax > 0 ? 127 / amax : 0;
                e[2 * g + b] = e[8 + 2 * g + b] = amax / 127;
#pragma omp simd
                for (int i = 0; i < QBLOCK; i++) q[32 * b + i] = (int8_t)round_clamp(v[32 * b + i] * inv, -127, 127);
            }
            for (int u = 0; u < 16; u++) memcpy(p + 4 * u, q + 4 * (8 * (u & 1) + (u >> 1)), 4);
            for (int j = 0; j < 16; j++) {
                ncorr[j] = -offset * (p[4 * j] + p[4 * j + 1] + p[4 * j + 2] + p[4 * j + 3]);
                escale[j] = e[2 * g + (j & 1)];
            }
        }
    }
}

/* ------------------------------------------------------------------ scalar */

/* y[j][i] (+)= row r0 + i of W · activation j, for R ≤ 4 rows of row group rg and S ≤ 4 records xr[j]:
 *   Σ over groups g, lanes l: d(row, block l&1) · e(l) · Σ_{4 bytes of lane l} q · p */
static void rows_scalar(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S, float *y, int64_t ldy,
                        int accumulate) {
    int64_t vb = row_value_bytes(W->format);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < S; j++) {
            float acc = 0;
            for (int64_t kt = 0; kt < W->K_pad / QT_K; kt++) {
                const uint8_t *t = tile_at(W, rg, kt), *vals = t + i * vb;
                const uint16_t *scales = (const uint16_t *)(t + QT_ROWS * vb) + i * QT_BLOCKS;
                const uint8_t *rec = xr[j] + kt * XTILE;
                const float *e = (const float *)(rec + XE);
                for (int g = 0; g < QT_GROUPS; g++) {
                    const int8_t *p = (const int8_t *)rec + 64 * g;
                    int32_t s[2] = {0, 0};
                    for (int l = 0; l < 64; l++) s[(l >> 2) & 1] += stored_value(W, vals, g, l) * p[l];
                    acc += mamba2_f16_to_f32(scales[2 * g]) * e[2 * g] * (float)s[0] +
                           mamba2_f16_to_f32(scales[2 * g + 1]) * e[2 * g + 1] * (float)s[1];
                }
            }
            y[j * ldy + i] = accumulate ? y[j * ldy + i] + acc : acc;
        }
}

/* ------------------------------------------------------------------ AVX2 and ymm VNNI */

/* One source, three instantiations of the 256-bit register block below, which differ in how a
 * group's bytes are multiplied (the `vnni` argument, a constant in each):
 *   rows_avx2()      vnni = 0: AVX2 vpmaddubsw / vpmaddwd;
 *   rows_avxvnni()   vnni = 1, compiled for AVX-VNNI: VEX vpdpbusd on ymm (Intel client cores
 *                    since Alder Lake, E-core servers: AVX2 + AVX-VNNI, no AVX-512);
 *   rows_ymm_evex()  vnni = 1, compiled for AVX512-VNNI + AVX512VL: the same vpdpbusd on ymm,
 *                    EVEX-encoded, same results; it stands in for the VEX one on CPUs with
 *                    AVX512-VNNI when the ISA is lowered to AVX2 (MAMBA2_CPU_ISA=avx2), so the
 *                    ymm VNNI path is tested and measured on such CPUs too (the compiler may give
 *                    it ymm16–31 besides, which the VEX one lacks: its speed is an upper bound).
 * The helpers carry AVX2's target only; the vpdpbusd is GCC's builtin, which is expanded in the
 * function it is finally inlined into, with that function's encoding (VEX or EVEX). The
 * intrinsics (_mm256_dpbusd_avx_epi32, _mm256_dpbusd_epi32) are always_inline functions with their
 * own targets and could not be inlined into an AVX2-only helper. */

/** Attributes of the AVX2 kernel. */
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
/** Attributes of the inlined AVX2 helpers. */
#define AVX2_INLINE __attribute__((always_inline, target("avx2,fma,f16c")))
/** Attributes of the VEX ymm VNNI kernel (AVX-VNNI). */
#define AVXVNNI_TARGET __attribute__((target("avx2,fma,f16c,avxvnni")))
/** Attributes of the EVEX ymm VNNI kernel (AVX512-VNNI + AVX512VL). */
#define YMM_EVEX_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))

/* 64 lane-ordered values of group g of a tile row as two 32-byte vectors: with vnni, the stored
 * unsigned bytes (q + 128 or q + 8) as vpdpbusd takes them; without, signed q (q8) or unsigned
 * q + 8 (q4) for vpmaddubsw. */
static inline AVX2_INLINE void avx2_load_group(Mamba2WeightFormat f, int vnni, const uint8_t *vals, int g,
                                               __m256i *lo, __m256i *hi) {
    if (f == MAMBA2_WEIGHTS_Q8) {
        *lo = _mm256_loadu_si256((const __m256i *)(vals + 64 * g));
        *hi = _mm256_loadu_si256((const __m256i *)(vals + 64 * g + 32));
        if (!vnni) { /* q + 128 → q */
            const __m256i flip = _mm256_set1_epi8((char)0x80);
            *lo = _mm256_xor_si256(*lo, flip), *hi = _mm256_xor_si256(*hi, flip);
        }
    } else {
        const __m256i m4 = _mm256_set1_epi8(15);
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(vals + 64 * (g >> 1)));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(vals + 64 * (g >> 1) + 32));
        if (g & 1) b0 = _mm256_srli_epi16(b0, 4), b1 = _mm256_srli_epi16(b1, 4);
        *lo = _mm256_and_si256(b0, m4);
        *hi = _mm256_and_si256(b1, m4);
    }
}

/* The exact integer Σ q·p of a group, 8 lanes of int32 (lane l: block l & 1), from its two halves
 * (values as avx2_load_group() gives them) and the record's correction nc (both halves' ncorr):
 * vnni: vpdpbusd(vpdpbusd(nc, w_lo, p_lo), w_hi, p_hi) with w = q + offset, the offset's share
 *       removed by nc;
 * q8:   through |q| and p with q's sign (vpmaddubsw takes unsigned × signed; |q| ≤ 127 keeps each
 *       pair sum below 2¹⁵, so the halves are widened to 32 bits before they are added; nc unused);
 * q4:   w = q + 8 ≤ 15 directly, the halves added in 16 bits (2 · 2 · 15 · 127 < 2¹⁵), then nc. */
static inline AVX2_INLINE __m256i avx2_dot2(Mamba2WeightFormat f, int vnni, __m256i nc, __m256i wlo, __m256i whi,
                                            __m256i plo, __m256i phi) {
    if (vnni) {
        __m256i s = (__m256i)__builtin_ia32_vpdpbusd_v8si((__v8si)nc, (__v8si)wlo, (__v8si)plo);
        return (__m256i)__builtin_ia32_vpdpbusd_v8si((__v8si)s, (__v8si)whi, (__v8si)phi);
    }
    const __m256i ones = _mm256_set1_epi16(1);
    if (f == MAMBA2_WEIGHTS_Q4)
        return _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(wlo, plo), _mm256_maddubs_epi16(whi, phi)), ones),
            nc);
    __m256i lo = _mm256_maddubs_epi16(_mm256_abs_epi8(wlo), _mm256_sign_epi8(plo, wlo));
    __m256i hi = _mm256_maddubs_epi16(_mm256_abs_epi8(whi), _mm256_sign_epi8(phi, whi));
    return _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones));
}

/* The ymm register block: R ≤ 4 rows × S ≤ 2 records, f, vnni, R and S constants after inlining
 * (every loop unrolls, the accumulators stay in registers). A group's 64 lane-ordered values are
 * two 32-byte halves whose lanes both alternate blocks 0 and 1; a lane sums 8 products (4 of each
 * half). A tile's scales are widened once (one vcvtph2ps per row: its 8 blocks, d₀ … d₇); each
 * (row, group) takes its alternating d₀ d₁ d₀ d₁ vector by one vpermps:
 *   acc[i][j] += float(Σ q·p) · (d_i · e_j), lane by lane (avx2_dot2() for Σ q·p).
 * With one record (decode) the record's e₀ … e₇ are folded into each row's scales once per tile,
 * so that a (row, group) costs no multiplication besides the FMA; with two, the d vector is
 * multiplied by the record's escale per (row, group, record). */
static inline AVX2_INLINE void avx2_block(Mamba2WeightFormat f, int vnni, const CpuQMatrix *W, int64_t rg, int R,
                                          const uint8_t *const *xr, int S, float *y, int64_t ldy, int accumulate) {
    int64_t vb = row_value_bytes(f), tb = tile_bytes(f), n_kt = W->K_pad / QT_K;
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const uint8_t *t = tile_at(W, rg, 0);
    for (int64_t kt = 0; kt < n_kt; kt++, t += tb) {
        const uint16_t *scales = (const uint16_t *)(t + QT_ROWS * vb);
        prefetch_tile(t, tb, n_kt);
        __m256 d8[4]; /* [row][8 blocks]: d₀ … d₇, times the record's e₀ … e₇ when S = 1 (zeros past row R) */
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            d8[i] = i < R ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + i * QT_BLOCKS))) : _mm256_setzero_ps();
            if (S == 1) d8[i] = _mm256_mul_ps(d8[i], _mm256_loadu_ps((const float *)(xr[0] + kt * XTILE + XE)));
        }
#pragma GCC unroll 4
        for (int g = 0; g < QT_GROUPS; g++) {
            const __m256i lane = _mm256_setr_epi32(2 * g, 2 * g + 1, 2 * g, 2 * g + 1, 2 * g, 2 * g + 1, 2 * g, 2 * g + 1);
            __m256i plo[2] = {0}, phi[2] = {0}, nc[2] = {0}; /* (zeros: unused entries when S < 2) */
            __m256 e[2] = {0};                                /* [record]: escale, lanes 0..7 (S = 2) */
#pragma GCC unroll 2
            for (int j = 0; j < S; j++) {
                const uint8_t *rec = xr[j] + kt * XTILE;
                const __m256i *ncg = (const __m256i *)(rec + XNCORR + 64 * g);
                plo[j] = _mm256_loadu_si256((const __m256i *)(rec + 64 * g));
                phi[j] = _mm256_loadu_si256((const __m256i *)(rec + 64 * g + 32));
                nc[j] = _mm256_add_epi32(_mm256_loadu_si256(ncg), _mm256_loadu_si256(ncg + 1)); /* both halves' */
                if (S > 1) e[j] = _mm256_loadu_ps((const float *)(rec + XESCALE + 64 * g)); /* lanes 0..7 = 8..15 */
            }
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m256i wlo, whi;
                avx2_load_group(f, vnni, t + i * vb, g, &wlo, &whi);
                __m256 d = _mm256_permutevar8x32_ps(d8[i], lane); /* d₀ d₁ d₀ d₁ … (· e₀ e₁ … when S = 1) */
#pragma GCC unroll 2
                for (int j = 0; j < S; j++) {
                    __m256i s = avx2_dot2(f, vnni, nc[j], wlo, whi, plo[j], phi[j]);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), S == 1 ? d : _mm256_mul_ps(d, e[j]), acc[i][j]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int j = 0; j < S; j++) {
            __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc[i][j]), _mm256_extractf128_ps(acc[i][j], 1));
            s4 = _mm_hadd_ps(s4, s4);
            s4 = _mm_hadd_ps(s4, s4);
            float sum = _mm_cvtss_f32(s4);
            y[j * ldy + i] = accumulate ? y[j * ldy + i] + sum : sum;
        }
}

/* The rows of one ymm instantiation for one format (f and vnni constants after inlining). */
static inline AVX2_INLINE void avx2_rows_of(Mamba2WeightFormat f, int vnni, const CpuQMatrix *W, int64_t rg, int R,
                                            const uint8_t *const *xr, int S, float *y, int64_t ldy, int accumulate) {
    for (int j = 0; j < S; j += 2) { /* R and S constants in the common calls, so the block's loops unroll */
        int two = S - j >= 2;
        if (R == 4 && two) avx2_block(f, vnni, W, rg, 4, xr + j, 2, y + j * ldy, ldy, accumulate);
        else if (R == 4) avx2_block(f, vnni, W, rg, 4, xr + j, 1, y + j * ldy, ldy, accumulate);
        else avx2_block(f, vnni, W, rg, R, xr + j, two ? 2 : 1, y + j * ldy, ldy, accumulate);
    }
}

/* One ymm instantiation: both formats, the product chosen by @p vnni (a constant). */
static inline AVX2_INLINE void avx2_rows(int vnni, const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr,
                                         int S, float *y, int64_t ldy, int accumulate) {
    if (W->format == MAMBA2_WEIGHTS_Q8) avx2_rows_of(MAMBA2_WEIGHTS_Q8, vnni, W, rg, R, xr, S, y, ldy, accumulate);
    else avx2_rows_of(MAMBA2_WEIGHTS_Q4, vnni, W, rg, R, xr, S, y, ldy, accumulate);
}

static AVX2_TARGET void rows_avx2(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S, float *y,
                                  int64_t ldy, int accumulate) {
    avx2_rows(0, W, rg, R, xr, S, y, ldy, accumulate);
}

static AVXVNNI_TARGET void rows_avxvnni(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S,
                                        float *y, int64_t ldy, int accumulate) {
    avx2_rows(1, W, rg, R, xr, S, y, ldy, accumulate);
}

static YMM_EVEX_TARGET void rows_ymm_evex(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S,
                                          float *y, int64_t ldy, int accumulate) {
    avx2_rows(1, W, rg, R, xr, S, y, ldy, accumulate);
}

/* ------------------------------------------------------------------ AVX512-VNNI */

/** Attributes of the AVX512-VNNI kernel. */
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define VNNI_INLINE __attribute__((always_inline, target("avx512f,avx512bw,avx512vnni")))

/* The 64 lane-ordered stored bytes (q + offset) of group g of a tile row. */
static inline VNNI_INLINE __m512i vnni_load_group(Mamba2WeightFormat f, const uint8_t *vals, int g) {
    if (f == MAMBA2_WEIGHTS_Q8) return _mm512_loadu_si512(vals + 64 * g);
    __m512i b = _mm512_loadu_si512(vals + 64 * (g >> 1));
    if (g & 1) b = _mm512_srli_epi16(b, 4); /* the odd group: the high nibbles */
    return _mm512_and_si512(b, _mm512_set1_epi8(15));
}

/* The VNNI register block: R ≤ 4 rows × S ≤ 4 records (16 accumulators + 4 records in 32 registers).
 * acc[i][j] += float(vpdpbusd(ncorr_j, w_i, p_j)) · (d_i · e_j), lane by lane.
 * A tile's 32 scales are widened to fp32 once (two vcvtph2ps: rows 0–1 and rows 2–3, 8 blocks
 * each); each (row, group) then takes its alternating d₀ d₁ d₀ d₁ … vector with one permutation.
 * With one record (decode) its e₀ … e₇ are folded into the widened scales once per tile (two
 * multiplications), so that a (row, group) costs a load, vpdpbusd, the permutation, a conversion
 * and the FMA; with more, the d vector is multiplied by the record's escale per (row, group,
 * record). */
static inline VNNI_INLINE void vnni_block(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S,
                                          float *y, int64_t ldy, int accumulate) {
    Mamba2WeightFormat f = W->format;
    int64_t vb = row_value_bytes(f), tb = tile_bytes(f), n_kt = W->K_pad / QT_K;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    const uint8_t *t = tile_at(W, rg, 0);
    for (int64_t kt = 0; kt < n_kt; kt++, t += tb) {
        const uint16_t *scales = (const uint16_t *)(t + QT_ROWS * vb);
        prefetch_tile(t, tb, n_kt);
        /* [rows 0-1][8 blocks], [rows 2-3][8 blocks]; times the record's e₀ … e₇ e₀ … e₇ when S = 1 */
        __m512 d2[2] = {_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)scales)),
                        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + 16)))};
        if (S == 1) {
            __m512 e16 = _mm512_loadu_ps((const float *)(xr[0] + kt * XTILE + XE));
            d2[0] = _mm512_mul_ps(d2[0], e16), d2[1] = _mm512_mul_ps(d2[1], e16);
        }
#pragma GCC unroll 4
        for (int g = 0; g < QT_GROUPS; g++) {
            /* lane l of group g belongs to block 2g + (l & 1) */
            const __m512i lane = _mm512_add_epi32(_mm512_set1_epi32(2 * g),
                                                  _mm512_set_epi32(1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0));
            __m512i p[4] = {0}, nc[4] = {0}; /* (zeros: unused entries when S < 4) */
            __m512 e[4] = {0};               /* [record]: escale of group g (S > 1) */
#pragma GCC unroll 4
            for (int j = 0; j < S; j++) {
                const uint8_t *rec = xr[j] + kt * XTILE;
                p[j] = _mm512_loadu_si512(rec + 64 * g);
                nc[j] = _mm512_loadu_si512(rec + XNCORR + 64 * g);
                if (S > 1) e[j] = _mm512_loadu_ps((const float *)(rec + XESCALE + 64 * g));
            }
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m512i w = vnni_load_group(f, t + i * vb, g);
                /* lane l: d of row i, block 2g + (l & 1) = lane 8 (i & 1) + 2g + (l & 1) of d2[i / 2] */
                __m512 d = _mm512_permutexvar_ps(_mm512_add_epi32(lane, _mm512_set1_epi32(8 * (i & 1))), d2[i >> 1]);
#pragma GCC unroll 4
                for (int j = 0; j < S; j++) {
                    __m512i s = _mm512_dpbusd_epi32(nc[j], w, p[j]);
                    acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), S == 1 ? d : _mm512_mul_ps(d, e[j]), acc[i][j]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < S; j++) {
            float s = _mm512_reduce_add_ps(acc[i][j]);
            y[j * ldy + i] = accumulate ? y[j * ldy + i] + s : s;
        }
}

static VNNI_TARGET void rows_vnni(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S, float *y,
                                  int64_t ldy, int accumulate) {
    for (int j = 0; j < S; j += 4) { /* S a constant in each call, so the block's loops unroll */
        const uint8_t *const *x4 = xr + j;
        float *y4 = y + j * ldy;
        if (R == 4) switch (S - j) {
            case 1: vnni_block(W, rg, 4, x4, 1, y4, ldy, accumulate); break;
            case 2: vnni_block(W, rg, 4, x4, 2, y4, ldy, accumulate); break;
            case 3: vnni_block(W, rg, 4, x4, 3, y4, ldy, accumulate); break;
            default: vnni_block(W, rg, 4, x4, 4, y4, ldy, accumulate); break;
            }
        else vnni_block(W, rg, R, x4, S - j < 4 ? S - j : 4, y4, ldy, accumulate);
    }
}

/* ------------------------------------------------------------------ entry point */

/* Whether vpdpbusd may be used at all: not when MAMBA2_CPU_VNNI=0 (read at every call, so that
 * the tests can switch it, as cpu_gemm_tier_active() reads MAMBA2_CPU_GEMM). */
static int vnni_allowed(void) {
    const char *v = getenv("MAMBA2_CPU_VNNI");
    return !(v && !strcmp(v, "0"));
}

CpuQKernel cpu_qlinear_kernel(CpuIsa isa) {
    __builtin_cpu_init();
    int vnni = vnni_allowed();
    int avx512vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
    if (isa >= CPU_ISA_AVX512 && vnni && avx512vnni) return CPU_QKERNEL_AVX512VNNI;
    if (isa < CPU_ISA_AVX2) return CPU_QKERNEL_SCALAR;
    if (vnni && __builtin_cpu_supports("avxvnni")) return CPU_QKERNEL_AVXVNNI; /* CPUID.(7,1):EAX bit 4 */
    if (vnni && avx512vnni && __builtin_cpu_supports("avx512vl")) return CPU_QKERNEL_AVXVNNI_EVEX;
    return CPU_QKERNEL_AVX2;
}

/** Activation rows per pass over a thread's rows of W: their records stay in L2 (about 256 KiB). */
static int token_block(int64_t K_pad) {
    int64_t n = (256 * 1024) / (K_pad / QT_K * XTILE) / 4 * 4;
    return n < 4 ? 4 : n;
}

const char *cpu_qlinear_kernel_name(CpuIsa isa) {
    static const char *names[] = {"scalar", "avx2", "avx2-vnni", "avx2-vnni-evex", "avx512-vnni"};
    return names[cpu_qlinear_kernel(isa)];
}

/* Columns [64c, 64c + 64) of row r as the quantized matrix holds them (d · q), in fp32: w [64].
 * The group's lane-ordered values are put back in column order (the inverse of
 * quantize_tile_row()) before the multiplication by its two blocks' scales. */
static inline void widen_group(const CpuQMatrix *W, int64_t r, int64_t c, float w[64]) {
    int64_t vb = row_value_bytes(W->format), kt = c / QT_GROUPS;
    int g = (int)(c % QT_GROUPS), off = offset_of(W->format);
    const uint8_t *t = tile_at(W, r / QT_ROWS, kt), *vals = t + (r % QT_ROWS) * vb;
    const uint16_t *scales = (const uint16_t *)(t + QT_ROWS * vb) + (r % QT_ROWS) * QT_BLOCKS;
    uint8_t v[64], col[64]; /* lane order, column order */
    if (W->format == MAMBA2_WEIGHTS_Q8) memcpy(v, vals + 64 * g, 64);
    else
        for (int i = 0; i < 64; i++) v[i] = (uint8_t)(vals[64 * (g >> 1) + i] >> (4 * (g & 1)) & 15);
    for (int u = 0; u < 16; u++) memcpy(col + 4 * (8 * (u & 1) + (u >> 1)), v + 4 * u, 4);
    float d0 = mamba2_f16_to_f32(scales[2 * g]), d1 = mamba2_f16_to_f32(scales[2 * g + 1]);
#pragma omp simd
    for (int i = 0; i < 32; i++) w[i] = d0 * (float)(col[i] - off), w[i + 32] = d1 * (float)(col[i + 32] - off);
}

/* Rows [r0, r0 + n) of W in fp32: out [n, K]. */
static QCLONES void widen_rows(const CpuQMatrix *W, int64_t r0, int64_t n, float *out) {
    int64_t K = W->K;
    float w[64];
    for (int64_t r = r0; r < r0 + n; r++)
        for (int64_t k0 = 0; k0 < K; k0 += 64) {
            widen_group(W, r, k0 / 64, w);
            memcpy(out + (r - r0) * K + k0, w, (size_t)(K - k0 < 64 ? K - k0 : 64) * sizeof *w);
        }
}

/* The packed panel of the fp32 GEMM tiers (CpuWidenPanel): dst [kc][nr] = W[r0 + r][k0 + k] in
 * fp32, zero past the last row or K. Each group of 64 columns is widened once per row and copied
 * into the panel's column r. */
static QCLONES void widen_panel(const void *src, int64_t r0, int64_t k0, int64_t kc, int nr, float *dst) {
    const CpuQMatrix *W = src;
    int64_t kend = W->K - k0 < kc ? W->K - k0 : kc;
    float w[64];
    for (int r = 0; r < nr; r++) {
        int64_t row = r0 + r, n = row < W->rows && kend > 0 ? kend : 0, k = 0;
        while (k < n) { /* columns k0 + k .. of group c, from its column i on */
            int64_t c = (k0 + k) / 64, i = (k0 + k) % 64, m = 64 - i < n - k ? 64 - i : n - k;
            widen_group(W, row, c, w);
            for (int64_t j = 0; j < m; j++) dst[(k + j) * nr + r] = w[i + j];
            k += m;
        }
        for (; k < kc; k++) dst[k * nr + r] = 0.0f;
    }
}

void cpu_qmatrix_dequantize_rows(const CpuQMatrix *q, int64_t r0, int64_t n, float *out) { widen_rows(q, r0, n, out); }

/* ------------------------------------------------------------------ bf16 rows for the AMX GEMM */

/** Attributes of the dequantization into bf16 (every CPU with AMX has these extensions). */
#define BF16_ROWS_TARGET __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512bf16")))

/* The CPU runs cpu_qmatrix_bf16_rows(): AVX-512 VBMI (vpermb) and BF16 (vcvtne2ps2bf16). */
static int bf16_rows_runs(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bf16");
}

/* 16 values (bytes of @p v16, offset @p off) times the scale @p d, in fp32. */
static inline BF16_ROWS_TARGET __m512 scaled16(__m128i v16, __m512i off, __m512 d) {
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(v16), off)));
}

/* A group of 64 lane-ordered values (see the file comment) is put in column order by one vpermb
 * (column lane_col(i) takes byte i), then each block of 32 columns is
 * widened to 32 bits in two quarters, scaled by the block's d and rounded to bf16 by one
 * vcvtne2ps2bf16 (round to nearest even, as mamba2_f32_to_bf16()). */
BF16_ROWS_TARGET void cpu_qmatrix_bf16_rows(const void *src, int64_t r0, int64_t k0, int64_t kc, uint16_t *dst) {
    const CpuQMatrix *W = src;
    const int64_t vb = row_value_bytes(W->format), kt = k0 / QT_K;
    const int q8 = W->format == MAMBA2_WEIGHTS_Q8;
    uint8_t idx[64];
    for (int i = 0; i < 64; i++) idx[lane_col(i)] = (uint8_t)i; /* the byte each column comes from */
    const __m512i perm = _mm512_loadu_si512(idx), nibble = _mm512_set1_epi8(15);
    const __m512i off = _mm512_set1_epi32(offset_of(W->format));
    for (int i = 0; i < 32; i++) {
        int64_t r = r0 + i;
        uint16_t *out = dst + i * kc; /* [kc] */
        if (r >= W->rows) {
            memset(out, 0, (size_t)kc * sizeof *out);
            continue;
        }
        const uint8_t *t = tile_at(W, r / QT_ROWS, kt), *vals = t + (r % QT_ROWS) * vb;
        const uint16_t *scales = (const uint16_t *)(t + QT_ROWS * vb) + (r % QT_ROWS) * QT_BLOCKS;
        for (int g = 0; 64 * g < kc; g++) {
            __m512i v;
            if (q8) v = _mm512_loadu_si512(vals + 64 * g);
            else {
                __m512i b = _mm512_loadu_si512(vals + 64 * (g >> 1));
                v = _mm512_and_si512(g & 1 ? _mm512_srli_epi16(b, 4) : b, nibble);
            }
            v = _mm512_permutexvar_epi8(perm, v);
            __m512 d0 = _mm512_set1_ps(mamba2_f16_to_f32(scales[2 * g]));
            __m512bh b0 = _mm512_cvtne2ps_pbh(scaled16(_mm512_extracti32x4_epi32(v, 1), off, d0),
                                              scaled16(_mm512_extracti32x4_epi32(v, 0), off, d0));
            _mm512_storeu_si512(out + 64 * g, (__m512i)b0);
            if (64 * g + 32 >= kc) break;
            __m512 d1 = _mm512_set1_ps(mamba2_f16_to_f32(scales[2 * g + 1]));
            __m512bh b1 = _mm512_cvtne2ps_pbh(scaled16(_mm512_extracti32x4_epi32(v, 3), off, d1),
                                              scaled16(_mm512_extracti32x4_epi32(v, 2), off, d1));
            _mm512_storeu_si512(out + 64 * g + 32, (__m512i)b1);
        }
    }
}

/* ------------------------------------------------------------------ the product */

CpuQPath cpu_qlinear_path(CpuIsa isa, int T) {
    if (T <= QLINEAR_INT_MAX_ROWS) return CPU_QPATH_INTEGER;
    if (isa >= CPU_ISA_AVX512 && cpu_amx_active() && bf16_rows_runs()) return CPU_QPATH_AMX;
    if (cpu_qlinear_kernel(isa) >= CPU_QKERNEL_AVXVNNI) return CPU_QPATH_INTEGER;
    CpuGemmTier tier = cpu_gemm_tier_active();
    if (isa >= CPU_ISA_AVX2 && tier >= CPU_GEMM_AVX2) return CPU_QPATH_WIDENED;
    return CPU_QPATH_INTEGER;
}

/* The fp32 GEMM tier of the widened path for @p isa: the best that both the ISA and the GEMM tier
 * (MAMBA2_CPU_GEMM) allow. */
static CpuGemmTier widened_tier(CpuIsa isa) {
    return isa >= CPU_ISA_AVX512 && cpu_gemm_tier_active() >= CPU_GEMM_AVX512 ? CPU_GEMM_AVX512 : CPU_GEMM_AVX2;
}

/* Rows [r0, r1) of W times every quantized activation record, by the integer product @p kind,
 * token_block() activation rows at a time (their records in L2; the
 * rows of W in L1/L2 meanwhile). */
static void integer_rows(CpuQKernel kind, const CpuQMatrix *W, int64_t r0, int64_t r1, const uint8_t *xq, int T, float *Y,
                         int64_t ldy, int accumulate) {
    int64_t rec_bytes = W->K_pad / QT_K * XTILE;
    int tb = token_block(W->K_pad);
    for (int t0 = 0; t0 < T; t0 += tb) {
        int nt = T - t0 < tb ? T - t0 : tb;
        for (int64_t r = r0; r < r1; r += QT_ROWS) {
            int R = r1 - r < QT_ROWS ? (int)(r1 - r) : QT_ROWS;
            for (int j0 = 0; j0 < nt; j0 += 4) {
                const uint8_t *xr[4];
                int S = nt - j0 < 4 ? nt - j0 : 4;
                for (int j = 0; j < S; j++) xr[j] = xq + (t0 + j0 + j) * rec_bytes;
                float *y = Y + (size_t)(t0 + j0) * ldy + r;
                switch (kind) {
                case CPU_QKERNEL_AVX512VNNI: rows_vnni(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate); break;
                case CPU_QKERNEL_AVXVNNI_EVEX: rows_ymm_evex(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate); break;
                case CPU_QKERNEL_AVXVNNI: rows_avxvnni(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate); break;
                case CPU_QKERNEL_AVX2: rows_avx2(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate); break;
                default: rows_scalar(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate); break;
                }
            }
        }
    }
}

void cpu_qlinear(CpuIsa isa, const CpuQMatrix *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy,
                 int accumulate, void *scratch, int n_threads, Mamba2Precision precision) {
    static int decided = 0; /* a benign race (every thread writes the same value) */
    if (!decided) stream_prefetch = cpu_qlinear_prefetch(), decided = 1;
    CpuQKernel kind = cpu_qlinear_kernel(isa);
    /* Prefill on AMX: the weights dequantized into bf16 tiles as the AMX GEMM packs them. Without
     * vpdpbusd the integer product costs more instructions per weight than an fp32 FMA: the fp32
     * GEMM tier multiplies the exact activations by panels widened straight from the quantized
     * tiles (it packs the activations once, and each panel once per call). Either falls back to
     * the integer product when it cannot run (a work buffer it could not allocate). */
    CpuQPath path = cpu_qlinear_path(isa, T);
    if (path == CPU_QPATH_AMX && cpu_linear_amx_rows(cpu_qmatrix_bf16_rows, W, W->rows, W->K, X, ldx, T, Y, ldy,
                                                     accumulate, n_threads, precision) == 0)
        return;
    if (path == CPU_QPATH_WIDENED && cpu_linear_fp32_widened(widened_tier(isa), widen_panel, W, W->rows, W->K, X, ldx,
                                                             T, Y, ldy, accumulate, n_threads) == 0)
        return;

    int64_t rec_bytes = W->K_pad / QT_K * XTILE;
    uint8_t *xq = scratch;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (T > 1)
    for (int t = 0; t < T; t++) quantize_x(X + (size_t)t * ldx, W->K, W->K_pad, offset_of(W->format), xq + t * rec_bytes);

    /* Units of work: long runs of rows (each thread then streams long stretches of W, which the
     * hardware prefetchers follow best), but at least 4 units per thread so that threads that
     * finish early find work: ITEM_ROWS_MAX rows, fewer for small matrices or many threads. */
    int64_t item = W->rows / (4 * (int64_t)n_threads) / QT_ROWS * QT_ROWS;
    item = item < QT_ROWS ? QT_ROWS : item > ITEM_ROWS_MAX ? ITEM_ROWS_MAX : item;
    int64_t n_items = (W->rows + item - 1) / item;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; it++) {
        int64_t r0 = it * item, r1 = r0 + item < W->rows ? r0 + item : W->rows;
        integer_rows(kind, W, r0, r1, xq, T, Y, ldy, accumulate);
    }
}
