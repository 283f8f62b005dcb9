/**
 * @file qmatrix.c
 * @brief Quantization at load (q8, q4) and the integer products of qmatrix.h: scalar, AVX2, ymm VNNI
 *        (AVX-VNNI, or AVX512-VNNI + VL on ymm), AVX512-VNNI on zmm, and AVX512BW on zmm without VNNI.
 *
 * Packed layout. W is padded to whole tiles of QT_ROWS = 4 rows × QT_K = 512 columns (zeros); a
 * row group's tiles follow one another along K, and row groups follow one another, so a GEMV
 * over four rows reads one sequential stream. One tile:
 *
 *     scales  [4 rows][8 or 16]       fp16 d of each block of 64 weights (q8) or 32 (q4)
 *     values  [4 rows][512 columns]   q8: 1 byte per weight (q + 128, or signed q: q8_signed);
 *                                     q4: 4 bits (q + 8)
 *     → 2,112 bytes (q8) or 1,152 bytes (q4), both multiples of a 64-byte cache line, read by a
 *       product the scales first, then row by row, or (one activation row: line_major()) one
 *       64-byte line of each row at a time.
 *
 * Within a row, the 16 blocks of the tile are interleaved 4 bytes at a time: 64-byte chunk c
 * (c < 8) holds 4 columns of every block, byte 4j + e = column 32j + 4c + e (block j < 16, e < 4).
 * vpdpbusd sums 4 adjacent byte products into each 32-bit lane, so lane j of every chunk belongs to
 * block j: the 8 chunks of a row accumulate into one vector of 16 exact int32 block sums, and the
 * row's scales (one vcvtph2ps; q8's 8 each spread over two lanes by one permutation) multiply that
 * vector once per tile. The integer work of a tile does not wait for its scales, and a row's chunks
 * are read in order.
 * q4 keeps chunks 2h and 2h + 1 in the same 64 bytes, the first in the low nibbles and the second
 * in the high ones: byte 64h + i = v₂ₕ[i] | v₂ₕ₊₁[i] << 4 (v: a chunk's 64 values), so one 64-byte
 * load, a mask and a shift give two chunks.
 *
 * The activations of one row x [K] are quantized into the same order, one 640-byte record per tile
 * of 512 columns:
 *
 *     p      [8][64]  int8, chunk order, x ≈ e · p per block of 32 (e = max|x| / 127)
 *     ncorr  [16]     int32, block j: −offset · Σ of the block's 32 values of p (offset 128 for
 *                     q8, 8 for q4)
 *     e      [16]     float, the e of the tile's 16 blocks
 *
 * so that ncorr plus the vpdpbusd of the stored bytes (w + offset) with p over the 8 chunks is, lane
 * by lane, the exact integer Σ q·p of a block, and d · e scales it lane by lane. (Measurements that
 * led to this layout: results/cpu.md, "q8/q4 decode: blocks interleaved across the chunk".)
 *
 * q8 values stored as signed bytes (CpuQMatrix.q8_signed, chosen at quantization for a product
 * without vpdpbusd) differ from q + 128 in the top bit only: q + 128 = q ^ 0x80 as bytes. A product
 * that reads them the other way than stored flips that bit (one vpxor per vector: ymm_xor_q8(),
 * zmm_xor_q8() below).
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
#define QT_K 512       /**< columns per tile */
#define QT_BLOCKS 16   /**< blocks of QBLOCK columns per tile row (one int32 lane of the products each) */
#define QT_CHUNKS 8    /**< 64-byte chunks of 4 columns × 16 blocks per tile row (q8; q4 packs two per 64 bytes) */
#define XREC 640       /**< bytes of one quantized-activation record (one tile: 512 columns) */
#define XNCORR 512     /**< offset of a record's ncorr */
#define XE 576         /**< offset of a record's e */
#define ITEM_ROWS_MAX 256 /**< the most rows of W in one unit of work handed to a thread */
/* How the SIMD kernels prefetch their weights (cpu_qlinear_prefetch(), decided once in
 * cpu_qlinear(): a benign race, every thread writes the same value):
 *   CPU_PREFETCH_IN_ROW (the default, but see below): at the start of each tile, every line of two
 *     tiles of the stream into L1 (the next row group's first tile follows a row group's last): q8
 *     this tile and the next, q4 (whose tiles are half as long) the next two. The prefetches leave
 *     the core at once, ahead of the tile's loads, which wait behind the arithmetic of the tile
 *     before. Each line is asked for twice, which costs an instruction. One record (decode) of q8
 *     (where cpu_q8_decode_lines(): the load trial's choice), and of q4 by AVX2's vpmaddubsw, instead
 *     reads a tile line by line across its rows and asks for each line CPU_DECODE_AHEAD bytes ahead
 *     as it reads it (line_major()). Both also ask for each line into L2 cpu_decode_ahead_l2() bytes
 *     ahead;
 *   CPU_PREFETCH_NEXT_BLOCK: the next row group's tile at the column being read, into L2 (a whole
 *     row group's stream ahead);
 *   CPU_PREFETCH_NONE: the stream left to the hardware prefetchers.
 * q8 without vpdpbusd (vpmaddubsw on ymm or zmm, with several instructions a chunk for q's sign)
 * read row by row was slowed down by the prefetches' own loads: for several records it takes
 * CPU_PREFETCH_NONE unless MAMBA2_CPU_PREFETCH asks otherwise (arith_bound_prefetch), as does one
 * record read row by row; one record read line by line prefetches as above, which pays there.
 * (Measurements: results/cpu.md, "the q8/q4 decode products had never prefetched" of 2026-12-05;
 * the earlier sections on prefetch modes measured builds without any prefetch instruction.)
 */
static CpuPrefetch stream_prefetch = CPU_PREFETCH_IN_ROW;
/* The first tile of CPU_PREFETCH_IN_ROW's window of two, counted from the tile being read: q4, whose
 * tiles are half as long, streams best from the next tile, q8 from this one (windows of 0 to 4 tiles
 * measured: results/cpu.md, "the quantized products' prefetch window"). */
static int prefetch_first_tile(Mamba2WeightFormat f) { return f == MAMBA2_WEIGHTS_Q4 ? 1 : 0; }
static CpuPrefetch arith_bound_prefetch = CPU_PREFETCH_NONE;

CpuPrefetch cpu_qlinear_prefetch(void) { return cpu_prefetch_asked(CPU_PREFETCH_IN_ROW); }

/* MAMBA2_CPU_Q8_LINES as read once: -1 when unset, else 0 or 1. */
static int q8_lines_env(void) {
    static int env = -2; /* benign race: every thread computes the same value */
    if (env == -2) {
        const char *v = getenv("MAMBA2_CPU_Q8_LINES");
        env = v && *v ? atoi(v) != 0 : -1;
    }
    return env;
}

/* The load trial's choice; written by the loading thread between products, read by the products'
 * threads (OpenMP's barriers order the two). */
static int q8_lines_chosen = 1;

int cpu_q8_decode_lines(void) {
    const int env = q8_lines_env();
    return env >= 0 ? env : __atomic_load_n(&q8_lines_chosen, __ATOMIC_RELAXED);
}

int cpu_q8_decode_lines_asked(void) { return q8_lines_env() >= 0; }

void cpu_q8_decode_choose_lines(int lines) { __atomic_store_n(&q8_lines_chosen, lines != 0, __ATOMIC_RELAXED); }

/* Whether one record (decode) of format @p f by a product on ymm (@p ymm) or zmm, with vpdpbusd
 * (@p dpbusd) or not, reads its tiles line by line across the rows (zmm_q8_line_rows(),
 * ymm_line_rows()) rather than row by row (zmm_block(), avx2_block()): q8 by every product where
 * cpu_q8_decode_lines() says so, q4 by AVX2's vpmaddubsw; q4 with vpdpbusd or AVX512BW gained
 * nothing so (results/cpu.md, "q8 decode read line by line across the rows"). */
static inline int line_major(Mamba2WeightFormat f, int ymm, int dpbusd) {
    return f == MAMBA2_WEIGHTS_Q8 ? cpu_q8_decode_lines() : ymm && !dpbusd;
}

/* The prefetch @p mode (integer_rows() chooses it) of tile @p t (format @p f, tile_bytes() @p tb) of a
 * row group of @p n_kt tiles; CPU_PREFETCH_IN_ROW also into L2 @p l2 bytes ahead (cpu_decode_ahead_l2(),
 * which the caller reads once), unless 0. */
static inline void prefetch_tile(CpuPrefetch mode, Mamba2WeightFormat f, const uint8_t *t, int64_t tb, int64_t n_kt,
                                 int64_t l2) {
    if (mode == CPU_PREFETCH_NEXT_BLOCK)
        for (int64_t c = 0; c < tb; c += 64) cpu_prefetch_l2(t + n_kt * tb + c);
    else if (mode == CPU_PREFETCH_IN_ROW) {
        for (int64_t c = prefetch_first_tile(f) * tb; c < (prefetch_first_tile(f) + 2) * tb; c += 64) {
            cpu_prefetch_l1(t + c);
            if (l2) cpu_prefetch_l2(t + c + l2);
        }
    }
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

/* Weights per scale (q8 QBLOCK_Q8, q4 QBLOCK), scales per tile row,
 * bytes of the values of one tile row, and of a whole tile (its scales, then its rows' values). */
static int scale_block(Mamba2WeightFormat f) { return f == MAMBA2_WEIGHTS_Q8 ? QBLOCK_Q8 : QBLOCK; }
static int row_scales(Mamba2WeightFormat f) { return QT_K / scale_block(f); }
static int64_t row_value_bytes(Mamba2WeightFormat f) { return f == MAMBA2_WEIGHTS_Q8 ? QT_K : QT_K / 2; }
static int64_t scale_bytes(Mamba2WeightFormat f) { return QT_ROWS * row_scales(f) * 2; }
static int64_t tile_bytes(Mamba2WeightFormat f) { return scale_bytes(f) + QT_ROWS * row_value_bytes(f); }
/* The scales of row i of a tile [row_scales()] (the tile's first bytes hold all four rows'), the
 * scale of its block b of QBLOCK columns, and the values of its row i. */
static const uint16_t *tile_scales(Mamba2WeightFormat f, const uint8_t *t, int i) {
    return (const uint16_t *)t + i * row_scales(f);
}
static float block_scale(Mamba2WeightFormat f, const uint16_t *scales, int b) {
    return mamba2_f16_to_f32(scales[b / (scale_block(f) / QBLOCK)]);
}
static const uint8_t *tile_row(Mamba2WeightFormat f, const uint8_t *t, int i) {
    return t + scale_bytes(f) + i * row_value_bytes(f);
}
static int offset_of(Mamba2WeightFormat f) { return f == MAMBA2_WEIGHTS_Q8 ? 128 : 8; }
/* What turns a stored value byte of W into q + offset: 0x80 where q8 is stored signed, else 0. */
static uint8_t unsigned_xor(const CpuQMatrix *W) { return W->q8_signed ? 0x80 : 0; }

/* The byte of a q8 tile row that holds column k (k < QT_K): chunk c = (k mod 32) / 4, lane j = k / 32. */
static int chunk_byte(int k) { return 64 * ((k & 31) >> 2) + 4 * (k >> 5) + (k & 3); }

/* The tile of row group rg and column tile kt. */
static uint8_t *tile_at(const CpuQMatrix *q, int64_t rg, int64_t kt) {
    return q->data + (rg * (q->K_pad / QT_K) + kt) * tile_bytes(q->format);
}

/* ------------------------------------------------------------------ quantization */

/** Loops compiled for AVX-512, AVX2 and any x86-64 (the quantization at load is vectorised). */
#define QCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/** Scales q4 tries per block (see quantize_block()). */
#define Q4_CANDIDATES 8

/* max |v[i]| over n values, on the bits (non-negative floats order as their bit patterns do; NaN,
 * bits above +inf's, counts as 0), branch-free. A plain loop: GCC's `omp simd` max reduction, float
 * or integer, ends each block with a vector store read back lane by lane, which stalls on store
 * forwarding, and took most of a decode call's rounding of x (results/cpu.md). */
static inline float abs_max(const float *v, int n) {
    uint32_t abits = 0;
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, v + i, sizeof bits);
        bits &= 0x7fffffffu;
        bits = bits > 0x7f800000u ? 0 : bits;
        abits = bits > abits ? bits : abits;
    }
    float amax;
    memcpy(&amax, &abits, sizeof amax);
    return amax;
}

/* Σ (w − d·clamp(round(w·inv), lo, hi))² over one block of QBLOCK: the error of scale d, with q
 * rounded through inv ≈ 1/d. */
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

/* Integers and scale of one block of scale_block() weights w (q8 64, q4 32): returns d (fp16-exact),
 * fills q[scale_block()].
 * q8: d = max|w| / 127, q = round(w / d) ∈ [−127, 127].
 * q4: the d among Q4_CANDIDATES scales smax / (−8 + δ), δ = 0, −1/8, +1/8, −2/8, … (smax: the
 *     weight of largest magnitude, with its sign) that minimises Σ (w − d q)², q = clamp(round(w ·
 *     (−8 + δ) / smax), −8, 7) (as llama.cpp rounds, through the inverse of the scale before its
 *     fp16 rounding); δ = 0 is llama.cpp Q4_0's scale and rounding, so a block's error is never
 *     larger than Q4_0's. */
static QCLONES float quantize_block(Mamba2WeightFormat f, const float *w, int8_t *q) {
    const int n = scale_block(f);
    float d = 0, inv = 0, lo = -127, hi = 127;
    if (f == MAMBA2_WEIGHTS_Q8) {
        d = as_f16(abs_max(w, n) / 127);
        inv = d != 0 ? 1 / d : 0;
    } else {
        float amax = 0, smax = 0; /* q4 needs the sign of the largest weight too */
        for (int i = 0; i < n; i++)
            if (fabsf(w[i]) > amax) amax = fabsf(w[i]), smax = w[i];
        float best = INFINITY, inv_smax = amax > 0 ? 1 / smax : 0;
        lo = -8, hi = 7;
        for (int s = 0; s < Q4_CANDIDATES && amax > 0; s++) {
            float div = -8.0f + (s % 2 ? -0.125f : 0.125f) * (float)((s + 1) / 2);
            float c = as_f16(smax / div), ic = div * inv_smax, err = block_error(w, c, ic, lo, hi);
            if (err < best) best = err, d = c, inv = ic;
        }
    }
#pragma omp simd
    for (int i = 0; i < n; i++) q[i] = (int8_t)round_clamp(w[i] * inv, lo, hi);
    return d;
}

/* The half bits of a scale that may be negative (q4's d has the sign of the block's largest weight). */
static uint16_t f16_signed(float d) { return (uint16_t)(f32_to_f16(fabsf(d)) | (d < 0 ? 0x8000 : 0)); }

/* Quantize the 512 columns w [QT_K] of one tile row into its values @p vals (chunk order, offset;
 * q8 signed where @p q8_signed) and its row_scales() fp16 scales. */
static void quantize_tile_row(Mamba2WeightFormat f, int q8_signed, const float *w, uint8_t *vals, uint16_t *scales) {
    int8_t q[QT_K];
    const int n = scale_block(f);
    for (int b = 0; b < row_scales(f); b++) scales[b] = f16_signed(quantize_block(f, w + b * n, q + b * n));
    int off = q8_signed ? 0 : offset_of(f);
    uint8_t v[QT_K]; /* the values in chunk order, with the offset (q8 signed: none, q as a byte) */
    for (int k = 0; k < QT_K; k++) v[chunk_byte(k)] = (uint8_t)(q[k] + off);
    if (f == MAMBA2_WEIGHTS_Q8) memcpy(vals, v, sizeof v);
    else
        for (int h = 0; h < QT_CHUNKS / 2; h++)
            for (int i = 0; i < 64; i++) vals[64 * h + i] = (uint8_t)(v[128 * h + i] | v[128 * h + 64 + i] << 4);
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
    /* stored as the product this CPU runs reads it (cpu_qmatrix_set_q8_signed()) */
    out->q8_signed = format == MAMBA2_WEIGHTS_Q8 && !cpu_qlinear_kernel_has_dpbusd(cpu_qlinear_kernel(cpu_isa_active()));
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
                for (int i = 0; i < QT_ROWS; i++)
                    quantize_tile_row(format, out->q8_signed, w + i * Kp + kt * QT_K, (uint8_t *)tile_row(format, t, i),
                                      (uint16_t *)tile_scales(format, t, i));
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

void cpu_qmatrix_set_q8_signed(CpuQMatrix *q, int q8_signed) {
    if (q->format != MAMBA2_WEIGHTS_Q8 || !q->q8_signed == !q8_signed) return;
    for (int64_t rg = 0; rg < round_up(q->rows, QT_ROWS) / QT_ROWS; rg++)
        for (int64_t kt = 0; kt < q->K_pad / QT_K; kt++)
            for (int i = 0; i < QT_ROWS; i++) {
                uint8_t *v = (uint8_t *)tile_row(q->format, tile_at(q, rg, kt), i); /* [QT_K] */
                for (int k = 0; k < QT_K; k++) v[k] ^= 0x80;
            }
    q->q8_signed = !!q8_signed;
}

void cpu_qmatrix_free(CpuQMatrix *q) {
    free(q->data);
    memset(q, 0, sizeof *q);
}

/* The 32 values (q + offset) of block b of a tile row's values @p vals (of W), in column order: 4
 * bytes from each of the 8 chunks (the inverse of quantize_tile_row()). */
static inline void block_values(const CpuQMatrix *W, const uint8_t *vals, int b, uint8_t out[QBLOCK]) {
    const Mamba2WeightFormat f = W->format;
    for (int c = 0; c < QT_CHUNKS; c++) {
        uint32_t u; /* the block's 4 bytes of chunk c (q4: their nibbles, 4 at a time) */
        if (f == MAMBA2_WEIGHTS_Q8) memcpy(&u, vals + 64 * c + 4 * b, 4);
        else {
            memcpy(&u, vals + 64 * (c >> 1) + 4 * b, 4);
            u = u >> (4 * (c & 1)) & 0x0f0f0f0fu;
        }
        u ^= unsigned_xor(W) * 0x01010101u;
        memcpy(out + 4 * c, &u, 4);
    }
}

/* ------------------------------------------------------------------ activations */

size_t cpu_qlinear_scratch_bytes(int64_t K, int T) { return (size_t)T * (size_t)(round_up(K, QT_K) / QT_K) * XREC; }

/* Columns k0 .. k0 + 511 of x [K] → one record (see the file comment), for weights stored with
 * @p offset. Per block j of 32: e = max|x| / 127, p = round(x / e), column 32j + 4c + e' to byte
 * 64c + 4j + e' of p; ncorr = −offset · Σ p. */
static QCLONES void quantize_x(const float *x, int64_t K, int64_t k0, int offset, uint8_t *rec) {
    int8_t *p = (int8_t *)rec;
    int32_t *ncorr = (int32_t *)(rec + XNCORR);
    float *e = (float *)(rec + XE);
    for (int b = 0; b < QT_BLOCKS; b++) {
        int64_t b0 = k0 + QBLOCK * b;
        float pad[QBLOCK]; /* the last block's columns up to K, then zeros */
        int8_t q[QBLOCK];
        int n = K - b0 < QBLOCK ? (int)(K - b0 > 0 ? K - b0 : 0) : QBLOCK;
        const float *v = x + b0; /* [QBLOCK] */
        if (n < QBLOCK) {
            memcpy(pad, x + b0, (size_t)n * sizeof *pad);
            memset(pad + n, 0, (size_t)(QBLOCK - n) * sizeof *pad);
            v = pad;
        }
        float amax = abs_max(v, QBLOCK);
        float inv = amax > 0 ? 127 / amax : 0;
        e[b] = amax / 127;
#pragma omp simd
        for (int i = 0; i < QBLOCK; i++) q[i] = (int8_t)round_clamp(v[i] * inv, -127, 127);
        int32_t sum = 0;
        for (int i = 0; i < QBLOCK; i++) sum += q[i];
        for (int c = 0; c < QT_CHUNKS; c++) memcpy(p + 64 * c + 4 * b, q + 4 * c, 4);
        ncorr[b] = -offset * sum;
    }
}

/* ------------------------------------------------------------------ scalar */

/* y[j][i] (+)= row r0 + i of W · activation j, for R ≤ 4 rows of row group rg and S ≤ 4 records xr[j]:
 *   Σ over tiles, blocks b: d(row, b) · e_j(b) · Σ_{32 columns k of b} q · p */
static void rows_scalar(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S, float *y, int64_t ldy,
                        int accumulate) {
    int off = offset_of(W->format);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < S; j++) {
            float acc = 0;
            for (int64_t kt = 0; kt < W->K_pad / QT_K; kt++) {
                const uint8_t *t = tile_at(W, rg, kt), *vals = tile_row(W->format, t, i);
                const uint16_t *scales = tile_scales(W->format, t, i);
                const uint8_t *rec = xr[j] + kt * XREC;
                const int8_t *p = (const int8_t *)rec;
                const float *e = (const float *)(rec + XE);
                for (int b = 0; b < QT_BLOCKS; b++) {
                    uint8_t v[QBLOCK];
                    block_values(W, vals, b, v);
                    int32_t s = 0;
                    for (int k = 0; k < QBLOCK; k++) s += (v[k] - off) * p[chunk_byte(QBLOCK * b + k)];
                    acc += block_scale(W->format, scales, b) * e[b] * (float)s;
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

/* The stored q8 bytes @p w as the product reads them: flipped between q and q + 128 where @p xq (a
 * constant: the product reads them the other way than stored, see the file comment). */
static inline AVX2_INLINE __m256i ymm_xor_q8(int xq, __m256i w) {
    return xq ? _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)) : w;
}

/* Half @p h (bytes 32h .. 32h + 31: blocks 8h .. 8h + 7) of chunks 2m and 2m + 1 of a tile row as two
 * 32-byte vectors, as the product reads them: with vpdpbusd the unsigned bytes (q + 128 or q + 8);
 * with vpmaddubsw signed q (q8) or unsigned q + 8 (q4). q8 is flipped between the two where @p xq. */
static inline AVX2_INLINE void avx2_load_pair(Mamba2WeightFormat f, int xq, const uint8_t *vals, int m, int h,
                                              __m256i *w0, __m256i *w1) {
    if (f == MAMBA2_WEIGHTS_Q8) {
        *w0 = ymm_xor_q8(xq, _mm256_loadu_si256((const __m256i *)(vals + 128 * m + 32 * h)));
        *w1 = ymm_xor_q8(xq, _mm256_loadu_si256((const __m256i *)(vals + 128 * m + 64 + 32 * h)));
    } else {
        const __m256i m4 = _mm256_set1_epi8(15);
        __m256i b = _mm256_loadu_si256((const __m256i *)(vals + 64 * m + 32 * h));
        *w0 = _mm256_and_si256(b, m4);
        *w1 = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
    }
}

/* acc + the exact integer Σ q·p of one chunk's half, 8 lanes of int32, for signed q (q8 without
 * vpdpbusd): vpmaddubsw takes unsigned × signed, so |q| times p with q's sign (|q| ≤ 127 keeps each
 * pair sum below 2¹⁵), then widened to 32 bits. */
static inline AVX2_INLINE __m256i avx2_dot1_signed(__m256i acc, __m256i q, __m256i p) {
    const __m256i s = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(p, q));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(s, _mm256_set1_epi16(1)));
}

/* The same sum as avx2_dot1_signed() with the sign moved to q: vpmaddubsw(|p|, q with p's sign). For
 * one record, |p| (@p ap) is computed once per line and serves every row of the tile, so a row's 32
 * bytes cost a sign, a multiply and the widening. */
static inline AVX2_INLINE __m256i avx2_dot1_abs_p(__m256i acc, __m256i q, __m256i p, __m256i ap) {
    const __m256i s = _mm256_maddubs_epi16(ap, _mm256_sign_epi8(q, p));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(s, _mm256_set1_epi16(1)));
}

/* acc + the exact integer Σ q·p of two chunks' halves, 8 lanes of int32 (lane l: block 8h + l), from
 * the values as avx2_load_pair() gives them and the record's bytes p0, p1 of the same chunks:
 * vnni: vpdpbusd(vpdpbusd(acc, w0, p0), w1, p1) with w = q + offset (the record's ncorr, the start of
 *       acc, removes the offset's share);
 * q8:   through |q| and p with q's sign (vpmaddubsw takes unsigned × signed; |q| ≤ 127 keeps each
 *       pair sum below 2¹⁵, so each chunk is widened to 32 bits on its own; acc starts at 0);
 * q4:   w = q + 8 ≤ 15 directly, the two chunks added in 16 bits (2 · 2 · 15 · 127 < 2¹⁵); acc starts
 *       at ncorr. */
static inline AVX2_INLINE __m256i avx2_dot2(Mamba2WeightFormat f, int vnni, __m256i acc, __m256i w0, __m256i w1,
                                            __m256i p0, __m256i p1) {
    if (vnni) {
        __m256i s = (__m256i)__builtin_ia32_vpdpbusd_v8si((__v8si)acc, (__v8si)w0, (__v8si)p0);
        return (__m256i)__builtin_ia32_vpdpbusd_v8si((__v8si)s, (__v8si)w1, (__v8si)p1);
    }
    const __m256i ones = _mm256_set1_epi16(1);
    if (f == MAMBA2_WEIGHTS_Q4)
        return _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(w0, p0), _mm256_maddubs_epi16(w1, p1)), ones), acc);
    return avx2_dot1_signed(avx2_dot1_signed(acc, w0, p0), w1, p1);
}

/* The scales of blocks 8h .. 8h + 7 of a tile row (its scales @p s), one a lane: q4's 8 from fp16, q8's
 * 4 (one per 64 columns) each into two lanes. */
static inline AVX2_INLINE __m256 ymm_scales(Mamba2WeightFormat f, const uint16_t *s, int h) {
    if (f == MAMBA2_WEIGHTS_Q4) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 8 * h)));
    __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(s + 4 * h)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
}

/* The ymm register block: R ≤ 4 rows × S ≤ 2 records, f, vnni, xq (avx2_load_pair()), R and S
 * constants after inlining (every loop unrolls, the accumulators stay in registers). A ymm holds
 * half a chunk, 8 blocks, so a tile is walked in two halves (blocks 0–7 of its rows, then 8–15),
 * each row's half accumulating its 8 chunks' halves into 8 int32 block sums, which the half's scales
 * then multiply once:
 *   acc[i][j] += float(Σ q·p) · (d_i · e_j), lane by lane (avx2_dot2() for Σ q·p);
 * both halves add into the same accumulator, whose lanes are summed at the end. */
static inline AVX2_INLINE void avx2_block(Mamba2WeightFormat f, int vnni, int xq, const CpuQMatrix *W, int64_t rg, int R,
                                          const uint8_t *const *xr, int S, float *y, int64_t ldy, int accumulate, CpuPrefetch pf) {
    int64_t tb = tile_bytes(f), n_kt = W->K_pad / QT_K, l2 = pf == CPU_PREFETCH_IN_ROW ? cpu_decode_ahead_l2() : 0;
    const int signed_q8 = f == MAMBA2_WEIGHTS_Q8 && !vnni; /* no offset to remove: the sums start at 0 */
    /* One record and vpdpbusd: its 8 half chunks stay in registers for the 4 rows of a tile (the
     * vpmaddubsw product needs those registers for its own temporaries) */
    const int hold = S == 1 && vnni;
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const uint8_t *t = tile_at(W, rg, 0);
    for (int64_t kt = 0; kt < n_kt; kt++, t += tb) {
        prefetch_tile(pf, f, t, tb, n_kt, l2);
        const uint8_t *rec[2] = {xr[0] + kt * XREC, xr[S - 1] + kt * XREC};
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i ph[QT_CHUNKS]; /* hold: half h of the record's chunks, kept for the tile's rows */
#pragma GCC unroll 8
            for (int c = 0; c < QT_CHUNKS; c++)
                ph[c] = hold ? _mm256_loadu_si256((const __m256i *)(rec[0] + 64 * c + 32 * h)) : _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m256i ia[2] = {0}; /* [record]: int32 sums of blocks 8h .. 8h + 7 (zeros: unused when S = 1) */
#pragma GCC unroll 2
                for (int j = 0; j < S; j++)
                    ia[j] = signed_q8 ? _mm256_setzero_si256()
                                      : _mm256_loadu_si256((const __m256i *)(rec[j] + XNCORR) + h);
#pragma GCC unroll 4
                for (int m = 0; m < QT_CHUNKS / 2; m++) {
                    __m256i w0, w1;
                    avx2_load_pair(f, xq, tile_row(f, t, i), m, h, &w0, &w1);
#pragma GCC unroll 2
                    for (int j = 0; j < S; j++)
                        ia[j] = avx2_dot2(f, vnni, ia[j], w0, w1,
                                          hold ? ph[2 * m] : _mm256_loadu_si256((const __m256i *)(rec[j] + 128 * m + 32 * h)),
                                          hold ? ph[2 * m + 1]
                                                 : _mm256_loadu_si256((const __m256i *)(rec[j] + 128 * m + 64 + 32 * h)));
                }
                __m256 d = ymm_scales(f, tile_scales(f, t, i), h);
#pragma GCC unroll 2
                for (int j = 0; j < S; j++)
                    acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[j]),
                                                _mm256_mul_ps(d, _mm256_loadu_ps((const float *)(rec[j] + XE) + 8 * h)),
                                                acc[i][j]);
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

/* One record (decode) on ymm, line by line: the products of avx2_block() with S = 1 (q8 by either
 * product, q4 by vpmaddubsw: see line_major()), the tile read one 64-byte line of each row at a time
 * (line l of rows 0..R-1, then line l + 1; a q8 line is one chunk, a q4 line the two chunks of its
 * nibbles), each line asked for into L1 CPU_DECODE_AHEAD bytes before it is read, as the bf16 decode
 * products read their stream (packed_bf16.c). avx2_block() instead walks a tile's rows one after
 * another behind one prefetch of whole tiles. A line is two ymm halves (blocks 0-7 and 8-15), each
 * with sums of its own; the record's chunks are read from L1 at each product. The same integer sums
 * and the same fp32 operations in avx2_block()'s order (half 0, then half 1, per tile), so the same
 * result. */
static inline AVX2_INLINE void ymm_line_rows(Mamba2WeightFormat f, int vnni, int xq, const CpuQMatrix *W, int64_t rg,
                                             int R, const uint8_t *xr, float *y, int accumulate) {
    const int64_t tb = tile_bytes(f), n_kt = W->K_pad / QT_K, l2 = cpu_decode_ahead_l2();
    const int lines = (int)(row_value_bytes(f) / 64), signed_q8 = f == MAMBA2_WEIGHTS_Q8 && !vnni;
    __m256 acc[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) acc[i] = _mm256_setzero_ps();
    const uint8_t *t = tile_at(W, rg, 0);
    for (int64_t kt = 0; kt < n_kt; kt++, t += tb) {
        const uint8_t *rec = xr + kt * XREC;
        __m256i ia[4][2]; /* [row][half]: int32 sums of blocks 0-7 and 8-15 (from ncorr, or 0 for signed q8) */
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i start = signed_q8 ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(rec + XNCORR) + h);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) ia[i][h] = start;
        }
        for (int64_t sb = 0; sb < scale_bytes(f); sb += 64) cpu_prefetch_stream(t + sb, l2); /* the scales */
#pragma GCC unroll 8
        for (int l = 0; l < lines; l++) {
            /* signed q8: |p| of the line's two halves, once for the R rows */
            __m256i ap[2];
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++)
                ap[h] = signed_q8 ? _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)(rec + 64 * l) + h)) : _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                const uint8_t *row = tile_row(f, t, i);
                cpu_prefetch_stream(row + 64 * l, l2);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    if (f == MAMBA2_WEIGHTS_Q8) {
                        const __m256i w = ymm_xor_q8(xq, _mm256_load_si256((const __m256i *)(row + 64 * l) + h)),
                                      p = _mm256_loadu_si256((const __m256i *)(rec + 64 * l) + h);
                        ia[i][h] = vnni ? (__m256i)__builtin_ia32_vpdpbusd_v8si((__v8si)ia[i][h], (__v8si)w, (__v8si)p)
                                        : avx2_dot1_abs_p(ia[i][h], w, p, ap[h]);
                    } else {
                        __m256i w0, w1;
                        avx2_load_pair(f, xq, row, l, h, &w0, &w1);
                        ia[i][h] = avx2_dot2(f, vnni, ia[i][h], w0, w1, _mm256_loadu_si256((const __m256i *)(rec + 128 * l + 32 * h)),
                                             _mm256_loadu_si256((const __m256i *)(rec + 128 * l + 64 + 32 * h)));
                    }
                }
            }
        }
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++)
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[i][h]),
                                         _mm256_mul_ps(ymm_scales(f, tile_scales(f, t, i), h),
                                                       _mm256_loadu_ps((const float *)(rec + XE) + 8 * h)),
                                         acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1));
        s4 = _mm_hadd_ps(s4, s4);
        s4 = _mm_hadd_ps(s4, s4);
        float sum = _mm_cvtss_f32(s4);
        y[i] = accumulate ? y[i] + sum : sum;
    }
}

/* The rows of one ymm instantiation for one format (f, vnni and xq constants after inlining). */
static inline AVX2_INLINE void avx2_rows_of(Mamba2WeightFormat f, int vnni, int xq, const CpuQMatrix *W, int64_t rg, int R,
                                            const uint8_t *const *xr, int S, float *y, int64_t ldy, int accumulate, CpuPrefetch pf) {
    if (S == 1 && pf == CPU_PREFETCH_IN_ROW && line_major(f, 1, vnni)) { /* decode: see ymm_line_rows() */
        if (R == 4) ymm_line_rows(f, vnni, xq, W, rg, 4, xr[0], y, accumulate);
        else ymm_line_rows(f, vnni, xq, W, rg, R, xr[0], y, accumulate);
        return;
    }
    for (int j = 0; j < S; j += 2) { /* R and S constants in the common calls, so the block's loops unroll */
        const int two = S - j >= 2;
        const CpuPrefetch pj = j == 0 ? pf : CPU_PREFETCH_NONE; /* later records read the same tiles from the caches */
        if (R == 4 && two) avx2_block(f, vnni, xq, W, rg, 4, xr + j, 2, y + j * ldy, ldy, accumulate, pj);
        else if (R == 4) avx2_block(f, vnni, xq, W, rg, 4, xr + j, 1, y + j * ldy, ldy, accumulate, pj);
        else avx2_block(f, vnni, xq, W, rg, R, xr + j, two ? 2 : 1, y + j * ldy, ldy, accumulate, pj);
    }
}

/* One ymm instantiation: both formats and both ways of storing q8, the product chosen by @p vnni (a
 * constant). vpdpbusd reads q8 as q + 128, vpmaddubsw as q: the bytes are flipped where W stores them
 * the other way. */
static inline AVX2_INLINE void avx2_rows(int vnni, const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr,
                                         int S, float *y, int64_t ldy, int accumulate, CpuPrefetch pf) {
    if (W->format == MAMBA2_WEIGHTS_Q4) avx2_rows_of(MAMBA2_WEIGHTS_Q4, vnni, 0, W, rg, R, xr, S, y, ldy, accumulate, pf);
    else if (!W->q8_signed == !vnni) avx2_rows_of(MAMBA2_WEIGHTS_Q8, vnni, 1, W, rg, R, xr, S, y, ldy, accumulate, pf);
    else avx2_rows_of(MAMBA2_WEIGHTS_Q8, vnni, 0, W, rg, R, xr, S, y, ldy, accumulate, pf);
}

static AVX2_TARGET void rows_avx2(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S, float *y,
                                  int64_t ldy, int accumulate, CpuPrefetch pf) {
    avx2_rows(0, W, rg, R, xr, S, y, ldy, accumulate, pf);
}

static AVXVNNI_TARGET void rows_avxvnni(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S,
                                        float *y, int64_t ldy, int accumulate, CpuPrefetch pf) {
    avx2_rows(1, W, rg, R, xr, S, y, ldy, accumulate, pf);
}

static YMM_EVEX_TARGET void rows_ymm_evex(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S,
                                          float *y, int64_t ldy, int accumulate, CpuPrefetch pf) {
    avx2_rows(1, W, rg, R, xr, S, y, ldy, accumulate, pf);
}

/* ------------------------------------------------------------------ AVX512-VNNI, AVX512BW */

/** Attributes of the AVX512-VNNI kernel, and of the code it shares with the AVX512BW one. */
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define VNNI_INLINE __attribute__((always_inline, target("avx512f,avx512bw,avx512vnni")))
/** Attributes of the AVX512BW kernel (Skylake-SP / -X: AVX-512 without VNNI). */
#define BW_TARGET __attribute__((target("avx512f,avx512bw")))
#define BW_INLINE __attribute__((always_inline, target("avx512f,avx512bw")))

/* acc + vpdpbusd(w, p), and acc + vpdpbusd(w0, p0) + vpdpbusd(w1, p1): the raw builtin, as in
 * avx2_dot2(), so that these inline into the AVX512BW kernel too, where they are never reached (bw a
 * constant). */
static inline BW_INLINE __m512i dpbusd(__m512i acc, __m512i w, __m512i p) {
    return (__m512i)__builtin_ia32_vpdpbusd_v16si((__v16si)acc, (__v16si)w, (__v16si)p);
}
static inline BW_INLINE __m512i dpbusd2(__m512i acc, __m512i w0, __m512i w1, __m512i p0, __m512i p1) {
    return dpbusd(dpbusd(acc, w0, p0), w1, p1);
}

/* The stored q8 bytes @p w as the product reads them: flipped between q and q + 128 where @p xq (a
 * constant), as ymm_xor_q8(). */
static inline BW_INLINE __m512i zmm_xor_q8(int xq, __m512i w) {
    return xq ? _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)) : w;
}

/* acc + the exact integer Σ q·p of one q8 chunk q (signed) of a tile row with the record's chunk p,
 * 16 lanes of int32, without vpdpbusd: |q| times p with q's sign (vpmaddubsw takes unsigned × signed;
 * |q| ≤ 127 keeps each pair sum below 2¹⁵), widened to 32 bits. */
static inline BW_INLINE __m512i bw_dot1_q8(__m512i acc, __m512i q, __m512i p) {
    const __m512i sp = _mm512_mask_sub_epi8(p, _mm512_movepi8_mask(q), _mm512_setzero_si512(), p);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(q), sp), _mm512_set1_epi16(1)));
}

/* acc + the exact integer Σ q·p of chunks w0, w1 of a tile row (as zmm_load_pair() gives them: q8
 * signed, q4 q + 8) with the record's chunks p0, p1, 16 lanes of int32 (lane j: block j), without
 * vpdpbusd, as avx2_dot2() does on ymm:
 * q8: through |q| and p with q's sign (vpmaddubsw takes unsigned × signed; |q| ≤ 127
 *     keeps each pair sum below 2¹⁵), each chunk widened to 32 bits on its own; acc starts at 0;
 * q4: w = q + 8 ≤ 15 directly, the two chunks added in 16 bits (2 · 2 · 15 · 127 < 2¹⁵); acc starts
 *     at ncorr. */
static inline BW_INLINE __m512i bw_dot2(Mamba2WeightFormat f, __m512i acc, __m512i w0, __m512i w1, __m512i p0, __m512i p1) {
    const __m512i ones = _mm512_set1_epi16(1);
    if (f == MAMBA2_WEIGHTS_Q4)
        return _mm512_add_epi32(
            _mm512_madd_epi16(_mm512_add_epi16(_mm512_maddubs_epi16(w0, p0), _mm512_maddubs_epi16(w1, p1)), ones), acc);
    return bw_dot1_q8(bw_dot1_q8(acc, w0, p0), w1, p1);
}

/* Chunks 2m and 2m + 1 of a tile row as the product reads them (q + offset for vpdpbusd, q8 signed
 * for bw_dot2()): q8 flipped between the two where @p xq. */
static inline BW_INLINE void zmm_load_pair(Mamba2WeightFormat f, int xq, const uint8_t *vals, int m, __m512i *w0,
                                           __m512i *w1) {
    if (f == MAMBA2_WEIGHTS_Q8) {
        *w0 = zmm_xor_q8(xq, _mm512_loadu_si512(vals + 128 * m));
        *w1 = zmm_xor_q8(xq, _mm512_loadu_si512(vals + 128 * m + 64));
    } else {
        const __m512i m4 = _mm512_set1_epi8(15);
        __m512i b = _mm512_loadu_si512(vals + 64 * m);
        *w0 = _mm512_and_si512(b, m4);
        *w1 = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4); /* the odd chunk: the high nibbles */
    }
}

/* The two chunks of q4 in the 64 bytes at @p b for vpdpbusd: w0 = the low nibbles (q + 8), w1 = the
 * high nibbles where they are, 16 · (q + 8). No shift: vpdpbusd takes unsigned bytes up to 255, and
 * w1's products go to a sum of their own, 16 × that of the nibbles (at most 16 · 15 · 127 · 16 per
 * lane), which is shifted back once a row, exactly: one instruction less per 64 bytes, which made
 * q4 decode faster (results/cpu.md); on ymm with 16 registers it was slower, and vpmaddubsw's 16-bit
 * pair sums would overflow with 16 · (q + 8). */
static inline BW_INLINE void q4_nibbles_zmm(const uint8_t *b, __m512i *w0, __m512i *w1) {
    const __m512i v = _mm512_loadu_si512(b);
    *w0 = _mm512_and_si512(v, _mm512_set1_epi8(15));
    *w1 = _mm512_and_si512(v, _mm512_set1_epi8((char)0xF0));
}

/* The 16 block scales of a tile row (its scales @p s), one a lane: q4's 16 from fp16, q8's 8 (one per
 * 64 columns) each into two lanes. */
static inline BW_INLINE __m512 zmm_scales(Mamba2WeightFormat f, const uint16_t *s) {
    if (f == MAMBA2_WEIGHTS_Q4) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)s));
    __m512 d8 = _mm512_cvtph_ps(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)s))); /* lanes 0-7 */
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), d8);
}

/* The zmm register block: R ≤ 4 rows × S ≤ 4 records (16 accumulators in 32 registers), the product
 * vpdpbusd or, with @p bw, bw_dot2() (q8's sums then start at 0).
 * Row by row (each row's 512 or 256 bytes read in order), the 8 chunks accumulate into one vector of
 * the 16 blocks' exact int32 sums per record, started at the record's ncorr; then the row's 16
 * scales, widened once, scale it:
 *   acc[i][j] += float(ncorr_j + Σ_c vpdpbusd(w_i,c, p_j,c)) · (d_i · e_j), lane by lane.
 * With one record (decode) its 8 chunks stay in registers for the tile; with more they are read
 * from L1 by each row's vpdpbusd. */
static inline BW_INLINE void zmm_block(Mamba2WeightFormat f, int bw, int xq, const CpuQMatrix *W, int64_t rg, int R,
                                       const uint8_t *const *xr, int S, float *y, int64_t ldy, int accumulate, CpuPrefetch pf) {
    int64_t tb = tile_bytes(f), n_kt = W->K_pad / QT_K, l2 = pf == CPU_PREFETCH_IN_ROW ? cpu_decode_ahead_l2() : 0;
    /* q4 with vpdpbusd and one or two records: q4_nibbles_zmm(), two sums a row and record (with four
     * records the 4 more sums compete for the registers, which was slower: results/cpu.md) */
    const int nib = f == MAMBA2_WEIGHTS_Q4 && !bw && S <= 2;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    const uint8_t *t = tile_at(W, rg, 0);
    for (int64_t kt = 0; kt < n_kt; kt++, t += tb) {
        prefetch_tile(pf, f, t, tb, n_kt, l2);
        const uint8_t *rec[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) rec[j] = xr[j < S ? j : 0] + kt * XREC;
        __m512i p1[QT_CHUNKS]; /* S = 1: the record's chunks */
#pragma GCC unroll 8
        for (int c = 0; c < QT_CHUNKS; c++)
            p1[c] = S == 1 ? _mm512_loadu_si512(rec[0] + 64 * c) : _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m512i ia[4] = {0}; /* [record]: int32 sums of the 16 blocks (zeros: unused entries when S < 4) */
            __m512i ih[4] = {0}; /* nib: the sums of the high nibbles' chunks, 16 × theirs */
#pragma GCC unroll 4
            for (int j = 0; j < S; j++)
                ia[j] = bw && f == MAMBA2_WEIGHTS_Q8 ? _mm512_setzero_si512() : _mm512_loadu_si512(rec[j] + XNCORR);
#pragma GCC unroll 4
            for (int m = 0; m < QT_CHUNKS / 2; m++) {
                __m512i w0, w1;
                if (nib) q4_nibbles_zmm(tile_row(f, t, i) + 64 * m, &w0, &w1);
                else zmm_load_pair(f, xq, tile_row(f, t, i), m, &w0, &w1);
#pragma GCC unroll 4
                for (int j = 0; j < S; j++) {
                    __m512i p0 = S == 1 ? p1[2 * m] : _mm512_loadu_si512(rec[j] + 128 * m);
                    __m512i p_1 = S == 1 ? p1[2 * m + 1] : _mm512_loadu_si512(rec[j] + 128 * m + 64);
                    if (nib) {
                        ia[j] = dpbusd(ia[j], w0, p0);
                        ih[j] = dpbusd(ih[j], w1, p_1);
                    } else ia[j] = bw ? bw_dot2(f, ia[j], w0, w1, p0, p_1) : dpbusd2(ia[j], w0, w1, p0, p_1);
                }
            }
            if (nib)
#pragma GCC unroll 4
                for (int j = 0; j < S; j++) ia[j] = _mm512_add_epi32(ia[j], _mm512_srai_epi32(ih[j], 4));
            __m512 d = zmm_scales(f, tile_scales(f, t, i));
#pragma GCC unroll 4
            for (int j = 0; j < S; j++)
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[j]),
                                            _mm512_mul_ps(d, _mm512_loadu_ps((const float *)(rec[j] + XE))), acc[i][j]);
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

/* One record of q8 (decode) on zmm, line by line: the products of zmm_block() with S = 1, the tile
 * read one 64-byte line (one chunk) of each row at a time, each line asked for CPU_DECODE_AHEAD bytes
 * ahead, as ymm_line_rows() reads it; the record's 8 chunks stay in registers for the tile. The same
 * integer sums and the same fp32 operations in the same order as zmm_block(), so the same result:
 *   acc[i] += float(start + Σ_c product(w_i,c, p_c)) · (d_i · e), lane by lane, tile by tile,
 * product vpdpbusd (start ncorr) or, with @p bw, bw_dot1_q8() (start 0). */
static inline BW_INLINE void zmm_q8_line_rows(int bw, int xq, const CpuQMatrix *W, int64_t rg, int R, const uint8_t *xr,
                                              float *y, int accumulate) {
    const Mamba2WeightFormat f = MAMBA2_WEIGHTS_Q8;
    const int64_t tb = tile_bytes(f), n_kt = W->K_pad / QT_K, l2 = cpu_decode_ahead_l2();
    __m512 acc[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    const uint8_t *t = tile_at(W, rg, 0);
    for (int64_t kt = 0; kt < n_kt; kt++, t += tb) {
        const uint8_t *rec = xr + kt * XREC;
        __m512i p[QT_CHUNKS], ia[4]; /* the record's chunks; [row]: int32 sums of the 16 blocks */
#pragma GCC unroll 8
        for (int c = 0; c < QT_CHUNKS; c++) p[c] = _mm512_loadu_si512(rec + 64 * c);
        const __m512i start = bw ? _mm512_setzero_si512() : _mm512_loadu_si512(rec + XNCORR);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) ia[i] = start;
        cpu_prefetch_stream(t, l2); /* the scales' line */
#pragma GCC unroll 8
        for (int c = 0; c < QT_CHUNKS; c++)
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                const uint8_t *w = tile_row(f, t, i) + 64 * c;
                cpu_prefetch_stream(w, l2);
                const __m512i wv = zmm_xor_q8(xq, _mm512_load_si512(w));
                ia[i] = bw ? bw_dot1_q8(ia[i], wv, p[c]) : dpbusd(ia[i], wv, p[c]);
            }
        const __m512 e = _mm512_loadu_ps((const float *)(rec + XE));
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[i]), _mm512_mul_ps(zmm_scales(f, tile_scales(f, t, i)), e), acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        float s = _mm512_reduce_add_ps(acc[i]);
        y[i] = accumulate ? y[i] + s : s;
    }
}

/* The rows of one format (f and bw constants after inlining, as are R and S in the common calls, so
 * that the block's loops unroll). */
static inline BW_INLINE void zmm_rows_of(Mamba2WeightFormat f, int bw, int xq, const CpuQMatrix *W, int64_t rg, int R,
                                         const uint8_t *const *xr, int S, float *y, int64_t ldy, int accumulate, CpuPrefetch pf) {
    if (S == 1 && pf == CPU_PREFETCH_IN_ROW && line_major(f, 0, !bw)) { /* decode: see zmm_q8_line_rows() */
        if (R == 4) zmm_q8_line_rows(bw, xq, W, rg, 4, xr[0], y, accumulate);
        else zmm_q8_line_rows(bw, xq, W, rg, R, xr[0], y, accumulate);
        return;
    }
    for (int j = 0; j < S; j += 4) {
        const uint8_t *const *x4 = xr + j;
        float *y4 = y + j * ldy;
        const CpuPrefetch pj = j == 0 ? pf : CPU_PREFETCH_NONE; /* later records read the same tiles from the caches */
        if (R == 4) switch (S - j) {
            case 1: zmm_block(f, bw, xq, W, rg, 4, x4, 1, y4, ldy, accumulate, pj); break;
            case 2: zmm_block(f, bw, xq, W, rg, 4, x4, 2, y4, ldy, accumulate, pj); break;
            case 3: zmm_block(f, bw, xq, W, rg, 4, x4, 3, y4, ldy, accumulate, pj); break;
            default: zmm_block(f, bw, xq, W, rg, 4, x4, 4, y4, ldy, accumulate, pj); break;
            }
        else zmm_block(f, bw, xq, W, rg, R, x4, S - j < 4 ? S - j : 4, y4, ldy, accumulate, pj);
    }
}

/* Both formats and both ways of storing q8 (flipped where stored the other way than the product
 * reads them: vpdpbusd q + 128, bw_dot1_q8() signed q), bw a constant. */
static inline BW_INLINE void zmm_rows(int bw, const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S,
                                      float *y, int64_t ldy, int accumulate, CpuPrefetch pf) {
    if (W->format == MAMBA2_WEIGHTS_Q4) zmm_rows_of(MAMBA2_WEIGHTS_Q4, bw, 0, W, rg, R, xr, S, y, ldy, accumulate, pf);
    else if (!W->q8_signed == !!bw) zmm_rows_of(MAMBA2_WEIGHTS_Q8, bw, 1, W, rg, R, xr, S, y, ldy, accumulate, pf);
    else zmm_rows_of(MAMBA2_WEIGHTS_Q8, bw, 0, W, rg, R, xr, S, y, ldy, accumulate, pf);
}

static VNNI_TARGET void rows_vnni(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S, float *y,
                                  int64_t ldy, int accumulate, CpuPrefetch pf) {
    zmm_rows(0, W, rg, R, xr, S, y, ldy, accumulate, pf);
}

static BW_TARGET void rows_bw(const CpuQMatrix *W, int64_t rg, int R, const uint8_t *const *xr, int S, float *y,
                              int64_t ldy, int accumulate, CpuPrefetch pf) {
    zmm_rows(1, W, rg, R, xr, S, y, ldy, accumulate, pf);
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
    if (isa >= CPU_ISA_AVX512 && __builtin_cpu_supports("avx512bw")) return CPU_QKERNEL_AVX512BW;
    return CPU_QKERNEL_AVX2;
}

/** Activation rows per pass over a thread's rows of W: their records stay in L2, in a quarter of
 *  it as the CPU reports it and at most 256 KiB (what this used on every CPU before, and still does
 *  on cores with 1 MiB of L2 or more; cores with less now keep the records to a quarter of theirs). */
static int token_block(int64_t K_pad) {
    size_t budget = cpu_cache_bytes(2) / 4;
    if (budget > 256 * 1024) budget = 256 * 1024;
    int64_t n = (int64_t)budget / (K_pad / QT_K * XREC) / 4 * 4;
    return n < 4 ? 4 : n;
}

const char *cpu_qlinear_kernel_name(CpuIsa isa) {
    static const char *names[] = {"scalar", "avx2", "avx2-vnni", "avx2-vnni-evex", "avx512-vnni", "avx512bw"};
    return names[cpu_qlinear_kernel(isa)];
}

/* Columns [64c, 64c + 64) of row r as the quantized matrix holds them (d · q), in fp32: w [64]
 * (blocks 2c and 2c + 1 of the row, counted along K). */
static inline void widen_group(const CpuQMatrix *W, int64_t r, int64_t c, float w[64]) {
    int64_t kt = c / (QT_K / 64);
    int b0 = 2 * (int)(c % (QT_K / 64)), off = offset_of(W->format);
    const uint8_t *t = tile_at(W, r / QT_ROWS, kt), *vals = tile_row(W->format, t, (int)(r % QT_ROWS));
    const uint16_t *scales = tile_scales(W->format, t, (int)(r % QT_ROWS));
    uint8_t col[64]; /* column order */
    block_values(W, vals, b0, col);
    block_values(W, vals, b0 + 1, col + 32);
    float d0 = block_scale(W->format, scales, b0), d1 = block_scale(W->format, scales, b0 + 1);
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
#define BF16_ROWS_TARGET __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512bf16")))

/* The CPU runs cpu_qmatrix_bf16_rows(): AVX-512 BF16 (vcvtne2ps2bf16). */
static int bf16_rows_runs(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
}

/* 16 values (bytes of @p v16, offset @p off) times the scale @p d, in fp32. */
static inline BF16_ROWS_TARGET __m512 scaled16(__m128i v16, __m512i off, __m512 d) {
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(v16), off)));
}

/* The 8 blocks 8h .. 8h + 7 of a tile row's values in column order, 32 bytes each: out[j] = block
 * 8h + j. Half h of each chunk (32 bytes: 4 columns of each of the 8 blocks) is one row of an 8 × 8
 * matrix of 4-byte units, chunks down, blocks across; its transpose has the blocks down, each row
 * the block's 8 units (its 32 columns) in order. */
static inline BF16_ROWS_TARGET void blocks_of_half(const CpuQMatrix *W, const uint8_t *vals, int h, __m256i out[8]) {
    const Mamba2WeightFormat f = W->format;
    __m256i v[8]; /* [chunk]: units of blocks 8h .. 8h + 7 (q + offset) */
    if (f == MAMBA2_WEIGHTS_Q8)
        for (int c = 0; c < QT_CHUNKS; c++)
            v[c] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(vals + 64 * c + 32 * h)),
                                    _mm256_set1_epi8((char)unsigned_xor(W)));
    else
        for (int m = 0; m < QT_CHUNKS / 2; m++) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(vals + 64 * m + 32 * h)), m4 = _mm256_set1_epi8(15);
            v[2 * m] = _mm256_and_si256(b, m4);
            v[2 * m + 1] = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
        }
    __m256i t[8], u[8]; /* the transpose: pairs of units, then of pairs, then the 128-bit halves */
    for (int c = 0; c < 8; c += 2) {
        t[c] = _mm256_unpacklo_epi32(v[c], v[c + 1]);
        t[c + 1] = _mm256_unpackhi_epi32(v[c], v[c + 1]);
    }
    for (int c = 0; c < 8; c += 4) {
        u[c] = _mm256_unpacklo_epi64(t[c], t[c + 2]);
        u[c + 1] = _mm256_unpackhi_epi64(t[c], t[c + 2]);
        u[c + 2] = _mm256_unpacklo_epi64(t[c + 1], t[c + 3]);
        u[c + 3] = _mm256_unpackhi_epi64(t[c + 1], t[c + 3]);
    }
    for (int j = 0; j < 4; j++) {
        out[j] = _mm256_permute2x128_si256(u[j], u[j + 4], 0x20);
        out[j + 4] = _mm256_permute2x128_si256(u[j], u[j + 4], 0x31);
    }
}

/* Each block of 32 columns is put in column order (blocks_of_half()), widened to 32 bits in two
 * halves, scaled by the block's d and rounded to bf16 by one vcvtne2ps2bf16 (round to nearest
 * even, as mamba2_f32_to_bf16()). @p k0, a multiple of 256, starts half h = (k0 mod 512) / 256 of
 * its tile: blocks 8h .. 8h + 7. */
BF16_ROWS_TARGET void cpu_qmatrix_bf16_rows(const void *src, int64_t r0, int64_t k0, int64_t kc, uint16_t *dst) {
    const CpuQMatrix *W = src;
    const int64_t kt = k0 / QT_K;
    const int h = (int)(k0 % QT_K) / 256;
    const __m512i off = _mm512_set1_epi32(offset_of(W->format));
    for (int i = 0; i < 32; i++) {
        int64_t r = r0 + i;
        uint16_t *out = dst + i * kc; /* [kc] */
        if (r >= W->rows) {
            memset(out, 0, (size_t)kc * sizeof *out);
            continue;
        }
        const uint8_t *t = tile_at(W, r / QT_ROWS, kt), *vals = tile_row(W->format, t, (int)(r % QT_ROWS));
        const uint16_t *scales = tile_scales(W->format, t, (int)(r % QT_ROWS));
        __m256i blk[8];
        blocks_of_half(W, vals, h, blk);
        for (int b = 0; QBLOCK * b < kc; b++) {
            __m512 d = _mm512_set1_ps(block_scale(W->format, scales, 8 * h + b));
            __m512bh w = _mm512_cvtne2ps_pbh(scaled16(_mm256_extracti128_si256(blk[b], 1), off, d),
                                             scaled16(_mm256_castsi256_si128(blk[b]), off, d));
            _mm512_storeu_si512(out + QBLOCK * b, (__m512i)w);
        }
    }
}

/* ------------------------------------------------------------------ the product */

/* MAMBA2_CPU_QPREFILL as read once: -1 when unset (or neither word), 1 for "widened", 0 for "integer". */
static int prefill_env(void) {
    static int env = -2; /* benign race: every thread computes the same value */
    if (env == -2) {
        const char *v = getenv("MAMBA2_CPU_QPREFILL");
        env = v && !strcmp(v, "widened") ? 1 : v && !strcmp(v, "integer") ? 0 : -1;
    }
    return env;
}

/* The load trial's choice (written by the loading thread between products); untimed, the widened
 * path (see cpu_qlinear_prefill_widens()). */
static int prefill_widen_chosen = 1;

int cpu_qlinear_prefill_widens(void) {
    const int env = prefill_env();
    return env >= 0 ? env : __atomic_load_n(&prefill_widen_chosen, __ATOMIC_RELAXED);
}

int cpu_qlinear_prefill_asked(void) { return prefill_env() >= 0; }

void cpu_qlinear_choose_prefill(int widen) { __atomic_store_n(&prefill_widen_chosen, widen != 0, __ATOMIC_RELAXED); }

/* Whether prefill at ISA level @p isa runs on AMX (cpu_qlinear_path()). */
static int prefill_on_amx(CpuIsa isa) { return isa >= CPU_ISA_AVX512 && cpu_amx_active() && bf16_rows_runs(); }

int cpu_qlinear_prefill_may_widen(CpuIsa isa) {
    if (prefill_on_amx(isa) || cpu_qlinear_kernel_has_dpbusd(cpu_qlinear_kernel(isa))) return 0;
    return isa >= CPU_ISA_AVX2 && cpu_gemm_tier_active() >= CPU_GEMM_AVX2;
}

CpuQPath cpu_qlinear_path(CpuIsa isa, int T) {
    if (T <= QLINEAR_INT_MAX_ROWS) return CPU_QPATH_INTEGER;
    if (prefill_on_amx(isa)) return CPU_QPATH_AMX;
    return cpu_qlinear_prefill_may_widen(isa) && cpu_qlinear_prefill_widens() ? CPU_QPATH_WIDENED : CPU_QPATH_INTEGER;
}

/* The fp32 GEMM tier of the widened path for @p isa: the best that both the ISA and the GEMM tier
 * (MAMBA2_CPU_GEMM) allow. */
static CpuGemmTier widened_tier(CpuIsa isa) {
    return isa >= CPU_ISA_AVX512 && cpu_gemm_tier_active() >= CPU_GEMM_AVX512 ? CPU_GEMM_AVX512 : CPU_GEMM_AVX2;
}

/* Rows [r0, r1) of W times every quantized activation record, by the integer product @p kind,
 * token_block() activation rows at a time (their records in L2; the
 * rows of W in L1/L2 meanwhile). The kernels prefetch W (prefetch_tile()) only in decode of at most
 * 4 rows, where each tile is read once, from memory; with more rows they are bound by their
 * arithmetic, each tile is read again from the caches for every 4 rows, and the prefetches slowed
 * them down (results/cpu.md). */
static void integer_rows(CpuQKernel kind, const CpuQMatrix *W, int64_t r0, int64_t r1, const uint8_t *xq, int T, float *Y,
                         int64_t ldy, int accumulate) {
    int64_t rec_bytes = W->K_pad / QT_K * XREC;
    int tb = token_block(W->K_pad);
    CpuPrefetch pf = CPU_PREFETCH_NONE; /* the kernels' prefetch of W (see stream_prefetch) */
    const int dp = cpu_qlinear_kernel_has_dpbusd(kind), ymm = kind != CPU_QKERNEL_AVX512VNNI && kind != CPU_QKERNEL_AVX512BW;
    if (T <= 4) pf = dp || W->format == MAMBA2_WEIGHTS_Q4 || (T == 1 && line_major(W->format, ymm, dp)) ? stream_prefetch : arith_bound_prefetch;
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
                case CPU_QKERNEL_AVX512VNNI: rows_vnni(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate, pf); break;
                case CPU_QKERNEL_AVX512BW: rows_bw(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate, pf); break;
                case CPU_QKERNEL_AVXVNNI_EVEX: rows_ymm_evex(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate, pf); break;
                case CPU_QKERNEL_AVXVNNI: rows_avxvnni(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate, pf); break;
                case CPU_QKERNEL_AVX2: rows_avx2(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate, pf); break;
                default: rows_scalar(W, r / QT_ROWS, R, xr, S, y, ldy, accumulate); break;
                }
            }
        }
    }
}

void cpu_qlinear(CpuIsa isa, const CpuQMatrix *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy,
                 int accumulate, void *scratch, int n_threads, Mamba2Precision precision) {
    static int decided = 0; /* a benign race (every thread writes the same value) */
    if (!decided) stream_prefetch = cpu_qlinear_prefetch(), arith_bound_prefetch = cpu_prefetch_asked(CPU_PREFETCH_NONE), decided = 1;
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

    int64_t n_kt = W->K_pad / QT_K, rec_bytes = n_kt * XREC, n_recs = (int64_t)T * n_kt;
    uint8_t *xq = scratch;
    /* Units of work: long runs of rows (each thread then streams long stretches of W, which the
     * hardware prefetchers follow best), at most ITEM_ROWS_MAX, k for every thread (k ≥ 4, so that
     * threads that finish early find work): a whole number per thread, so that none is left one
     * unit more than the others at the end (in_proj on 16 threads: 80 units of 232 rows, where 73
     * of 256 gave some threads 5 and others 4). */
    const int64_t nt = n_threads > 1 ? n_threads : 1;
    int64_t k = (W->rows + ITEM_ROWS_MAX * nt - 1) / (ITEM_ROWS_MAX * nt);
    k = k < 4 ? 4 : k;
    int64_t item = round_up((W->rows + k * nt - 1) / (k * nt), QT_ROWS);
    int64_t n_items = (W->rows + item - 1) / item;
#pragma omp parallel num_threads(n_threads)
    {
        /* the activations quantized record by record (512 columns each), shared out over the threads
         * even for one row, so that at decode no thread waits while one quantizes (results/cpu.md) */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n_recs; i++) {
            int64_t t = i / n_kt, kt = i % n_kt;
            quantize_x(X + (size_t)t * ldx, W->K, kt * QT_K, offset_of(W->format), xq + t * rec_bytes + kt * XREC);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n_items; it++) {
            int64_t r0 = it * item, r1 = r0 + item < W->rows ? r0 + item : W->rows;
            integer_rows(kind, W, r0, r1, xq, T, Y, ldy, accumulate);
        }
    }
}

/* ------------------------------------------------------------------ the prefill path, timed */

/** Activation rows of cpu_qlinear_time_prefill()'s products: the widened path widens each weight once
 *  a call, whatever the rows, so it is timed over as many rows as a prompt of hundreds of tokens has. */
#define PREFILL_TRIAL_T 256
/** Rows of W it multiplies at most (its first ones). */
#define PREFILL_TRIAL_ROWS 1024
/** Timed rounds of each path, after an untimed one. */
#define PREFILL_TRIAL_ROUNDS 3

double cpu_qlinear_prefill_trial_flop(const CpuQMatrix *W) {
    const int64_t rows = W->rows < PREFILL_TRIAL_ROWS ? W->rows : PREFILL_TRIAL_ROWS;
    return 2.0 * (double)rows * (double)W->K * PREFILL_TRIAL_T;
}

int cpu_qlinear_time_prefill(CpuIsa isa, const CpuQMatrix *W, int n_threads, double seconds[2], Mamba2Error *err) {
    CpuQMatrix view = *W; /* its first row groups: the tiles of a row group follow one another */
    view.rows = W->rows < PREFILL_TRIAL_ROWS ? W->rows : PREFILL_TRIAL_ROWS;
    const int64_t K = W->K, T = PREFILL_TRIAL_T;
    float *X = malloc((size_t)(T * K) * sizeof *X), *Y = malloc((size_t)(T * view.rows) * sizeof *Y); /* [T, K], [T, rows] */
    void *scratch = NULL;
    if (!X || !Y || posix_memalign(&scratch, 64, cpu_qlinear_scratch_bytes(K, (int)T))) {
        free(X), free(Y);
        return mamba2_fail(err, "out of memory for the prefill trial of the quantized products");
    }
    cpu_trial_activations(X, T * K);
    const int widens = __atomic_load_n(&prefill_widen_chosen, __ATOMIC_RELAXED);
    seconds[0] = seconds[1] = 0;
    for (int r = 0; r <= PREFILL_TRIAL_ROUNDS; r++)
        for (int j = 0; j < 2; j++) {
            const int w = (j + r) % 2; /* alternated, each round starting with the other */
            cpu_qlinear_choose_prefill(w);
            const double t0 = omp_get_wtime();
            cpu_qlinear(isa, &view, X, K, (int)T, Y, view.rows, 0, scratch, n_threads, MAMBA2_PRECISION_DEFAULT);
            const double t = omp_get_wtime() - t0;
            if (r > 0 && (seconds[w] == 0 || t < seconds[w])) seconds[w] = t;
        }
    cpu_qlinear_choose_prefill(widens);
    free(X), free(Y), free(scratch);
    return 0;
}

