/**
 * @file gemm_amx.c
 * @brief AMX-BF16 GEMM for prefill, with the activations split into two bf16 parts (gemm_amx.h).
 *
 * Tile registers (all 16 rows × 64 bytes):
 *   tmm0..3  C[i][j]: fp32 Y block, activation rows t0 + 16i .., weight rows r0 + 16j ..
 *   tmm4, 5  A[i]:    X_hi or X_lo [16 rows, 32 k] bf16, row-major
 *   tmm6, 7  B[j]:    W rows r0 + 16j .. + 16, as [16 k-pairs][16 rows][2] bf16
 * and for every 32 columns of k:  C[i][j] += A_hi[i]·B[j] + A_lo[i]·B[j]   (TDPBF16PS).
 */
#include "gemm_amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "thread_buffer.h"

/** arch_prctl request for permission to use an extended state component (Linux ≥ 5.16). */
#define ARCH_REQ_XCOMP_PERM 0x1023
/** The extended state component of the AMX tile data. */
#define XFEATURE_XTILEDATA 18

/** Attributes of the functions that execute AMX instructions. */
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16")))

int cpu_amx_available(void) {
    static int granted = -1; /* decided once; a benign race (every thread computes the same value) */
    if (granted < 0) {
        unsigned a, b, c, d;
        int has = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22)) && (d & (1u << 24)); /* AMX-BF16, -TILE */
        granted = has && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
    return granted;
}

/** The tile configuration (LDTILECFG's 64-byte memory operand). */
typedef struct {
    uint8_t palette;    /**< 1 */
    uint8_t start_row;  /**< 0 */
    uint8_t reserved[14];
    uint16_t colsb[16]; /**< bytes per row of each tile */
    uint8_t rows[16];   /**< rows of each tile */
} TileConfig;

/* Every tile 16 rows × 64 bytes. The configuration is a constant object: GCC 12's
 * _tile_loadconfig() tells the compiler it reads 8 bytes only, so stores into a local
 * configuration were optimised away (ldtilecfg then read stack garbage and faulted). */
static const TileConfig tile_config __attribute__((aligned(64))) = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

static AMX_TARGET void tiles_configure(void) { _tile_loadconfig(&tile_config); }

/** A compiler barrier: GCC 12's tile load/store intrinsics do not tell it that they touch memory. */
#define MEMORY_BARRIER() __asm__ volatile("" ::: "memory")

static AMX_TARGET void tiles_release(void) { _tile_release(); }

/* Bv [Kp/32][2][16 kp][16 rr] 32-bit words = W rows r0 + 16j + rr, k-pair kb·16 + kp (bf16 pairs);
 * rows past `rows` and pairs past K/2 are zero. The general case, one word at a time. */
static void repack_panel_any(const uint16_t *W, int64_t rows, int64_t K, int64_t r0, int64_t Kp, uint32_t *Bv) {
    int64_t pairs = K / 2;
    for (int64_t kb = 0; kb < Kp / 32; kb++)
        for (int j = 0; j < 2; j++)
            for (int rr = 0; rr < 16; rr++) {
                int64_t r = r0 + 16 * j + rr;
                const uint32_t *w = (const uint32_t *)(W + r * K); /* K even: rows start on 4-byte boundaries */
                uint32_t *dst = Bv + ((kb * 2 + j) * 16) * 16 + rr;
                for (int kp = 0; kp < 16; kp++) {
                    int64_t p = kb * 16 + kp;
                    dst[kp * 16] = r < rows && p < pairs ? w[p] : 0;
                }
            }
}

/** Attributes of the AVX-512 transpose. */
#define AVX512_TARGET __attribute__((target("avx512f")))

/* The same layout for 32 rows × nkb blocks of 32 columns, row i of the block at W + i·ld (its
 * blocks' columns contiguous): each group of 16 rows × 16 pairs is one 16 × 16 transpose of
 * 32-bit words in registers, r[rr] (16 pairs of row rr) → out[kp] (pair kp of the 16 rows), in
 * three rounds of shuffles. */
static AVX512_TARGET void repack_kblocks(const uint16_t *W, int64_t ld, int64_t nkb, uint32_t *Bv) {
    for (int64_t kb = 0; kb < nkb; kb++)
        for (int j = 0; j < 2; j++) {
            __m512i r[16], a[16], b[16];
            for (int rr = 0; rr < 16; rr++) r[rr] = _mm512_loadu_si512(W + (16 * j + rr) * ld + kb * 32);
            for (int i = 0; i < 8; i++) { /* per 128-bit lane: (r0[0] r1[0] r0[1] r1[1]), (r0[2] r1[2] r0[3] r1[3]) */
                a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
                a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
            }
            for (int i = 0; i < 4; i++) { /* b[4i + c], lane L: rows 4i .. 4i+3 of pair 4L + c */
                b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
                b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
                b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
                b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
            }
            uint32_t *dst = Bv + (kb * 2 + j) * 256;
            for (int c = 0; c < 4; c++) { /* pair 4L + c gathers lane L of b[c], b[4 + c], b[8 + c], b[12 + c] */
                __m512i e0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x88), e1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xdd);
                __m512i f0 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x88), f1 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xdd);
                _mm512_storeu_si512(dst + (0 + c) * 16, _mm512_shuffle_i32x4(e0, f0, 0x88));
                _mm512_storeu_si512(dst + (4 + c) * 16, _mm512_shuffle_i32x4(e1, f1, 0x88));
                _mm512_storeu_si512(dst + (8 + c) * 16, _mm512_shuffle_i32x4(e0, f0, 0xdd));
                _mm512_storeu_si512(dst + (12 + c) * 16, _mm512_shuffle_i32x4(e1, f1, 0xdd));
            }
        }
}

/* Block of weight rows [r0, r0 + 32) in AMX's pair-interleaved layout (see repack_panel_any()). */
static void repack_panel(const uint16_t *W, int64_t rows, int64_t K, int64_t r0, int64_t Kp, uint32_t *Bv) {
    if (r0 + 32 <= rows && K % 32 == 0) repack_kblocks(W + r0 * K, K, K / 32, Bv); /* AMX CPUs all have AVX-512F */
    else repack_panel_any(W, rows, K, r0, Kp, Bv);
}

/** Columns a row source (CpuBf16Rows) is asked for at a time. */
#define SOURCE_COLUMNS 256

/* The same block taken from a row source, SOURCE_COLUMNS columns at a time through @p tmp
 * [32][SOURCE_COLUMNS] bf16, which stays in L1 between the source's writes and the repack. */
static void repack_source(CpuBf16Rows rows_of, const void *src, int64_t r0, int64_t Kp, uint16_t *tmp, uint32_t *Bv) {
    for (int64_t k0 = 0; k0 < Kp; k0 += SOURCE_COLUMNS) {
        int64_t kc = Kp - k0 < SOURCE_COLUMNS ? Kp - k0 : SOURCE_COLUMNS;
        rows_of(src, r0, k0, kc, tmp);
        repack_kblocks(tmp, kc, kc / 32, Bv + (k0 / 32) * 2 * 256);
    }
}

/* Round-to-nearest-even fp32 → bf16. */
static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Activation rows [t0, t0 + 16) split into tiles: Xs[t0/16][kb][h][16 rows][32 k] bf16, h = 0:
 * X_hi = bf16(X), h = 1: X_lo = bf16(X − X_hi), so X = X_hi + X_lo to about 2⁻¹⁸ of |X|; zero
 * padding past T and K. Tiles are contiguous 1 KiB blocks: a tile load then reads 16 consecutive
 * 64-byte lines (rows of X a whole K apart would alias in L1 and L2). */
static void split_rows16(const float *X, int64_t ldx, int T, int64_t K, int64_t Kp, int64_t t0, uint16_t *Xs) {
    for (int64_t kb = 0; kb < Kp / 32; kb++)
        for (int64_t i = 0; i < 16; i++)
            for (int64_t c = 0; c < 32; c++) {
                int64_t t = t0 + i, k = kb * 32 + c;
                float x = t < T && k < K ? X[t * ldx + k] : 0.0f;
                uint16_t h = bf16_round(x);
                uint16_t *tile = Xs + ((t0 / 16) * (Kp / 32) + kb) * 1024;
                tile[i * 32 + c] = h;
                tile[512 + i * 32 + c] = bf16_round(x - mamba2_bf16_to_f32(h));
            }
}

/* C[32 × 32] fp32 = Σ over k of (X_hi + X_lo)[t0 .. t0+32) · Wᵀ for one repacked block of 32
 * weight rows, Xs in the layout of split_rows16(); X_hi alone when @p split is 0 (fast precision). */
static AMX_TARGET void block_32x32(const uint16_t *Xs, int64_t Kp, int64_t t0, const uint32_t *Bv, float *C, int split) {
    const int64_t nkb = Kp / 32;
    const uint16_t *x0 = Xs + (t0 / 16) * nkb * 1024, *x1 = x0 + nkb * 1024; /* rows t0.., t0+16.. */
    MEMORY_BARRIER(); /* the repacked panel is in memory before the tile loads */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t kb = 0; kb < nkb; kb++) {
        const uint32_t *b = Bv + kb * 2 * 256;
        _tile_loadd(6, b, 64);
        _tile_loadd(7, b + 256, 64);
        _tile_loadd(4, x0 + kb * 1024, 64); /* X_hi */
        _tile_loadd(5, x1 + kb * 1024, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        if (!split) continue;
        _tile_loadd(4, x0 + kb * 1024 + 512, 64); /* X_lo */
        _tile_loadd(5, x1 + kb * 1024 + 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, C, 128); /* C [32][32]: tile (i, j) at row 16i, column 16j */
    _tile_stored(1, C + 16, 128);
    _tile_stored(2, C + 16 * 32, 128);
    _tile_stored(3, C + 16 * 32 + 16, 128);
    MEMORY_BARRIER(); /* C is read only after the tile stores */
}


/* The product of cpu_linear_amx() (bf16 @p W read in place, @p rows_of NULL) and of
 * cpu_linear_amx_rows() (W [rows, K] from @p rows_of, @p W NULL). */
static int amx_product(const Mamba2Tensor *W, CpuBf16Rows rows_of, const void *src, int64_t rows, int64_t K,
                       const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads,
                       Mamba2Precision precision) {
    if ((W && K % 2) || T <= 0 || !cpu_amx_available()) return -1;
    int64_t Tp = (T + 31) / 32 * 32, Kp = (K + 31) / 32 * 32;
    /* A thread's panel: S blocks of 32 weight rows (64·Kp bytes each once repacked), together at most
     * 512 KiB, so that each 32-row block of activations (128·Kp bytes) is brought into L2 once for
     * S weight blocks (K = 4096: S = 2; K = 8192: S = 1). */
    int64_t S = ((int64_t)1 << 19) / (Kp * 64);
    S = S < 1 ? 1 : S > 8 ? 8 : S;
    int64_t n_blocks = (rows + 31) / 32, n_panels = (n_blocks + S - 1) / S;
    uint16_t *Xs = cpu_thread_buffer(CPU_BUF_GEMM_ACTIVATIONS, (size_t)Tp * Kp * 2 * sizeof *Xs); /* split_rows16() layout */
    if (!Xs) return -1;
    int failed = 0;
#pragma omp parallel num_threads(n_threads)
    {
        /* S repacked blocks [S][Kp/32][2][16][16] words, then C [32][32] floats, then a row
         * source's columns [32][SOURCE_COLUMNS] bf16 */
        uint32_t *Bv = cpu_thread_buffer(CPU_BUF_GEMM_WEIGHTS, (size_t)S * Kp * 32 * 2 + 32 * 32 * sizeof(float) +
                                                                   32 * SOURCE_COLUMNS * sizeof(uint16_t));
        if (!Bv) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) { /* the same value in every thread after the barrier: all or none enter the loop */
            float *C = (float *)(Bv + S * Kp * 16);
            uint16_t *tmp = (uint16_t *)(C + 32 * 32);
#pragma omp for schedule(static)
            for (int64_t t0 = 0; t0 < Tp; t0 += 16) split_rows16(X, ldx, T, K, Kp, t0, Xs);
            tiles_configure();
#pragma omp for schedule(dynamic, 1)
            for (int64_t p = 0; p < n_panels; p++) {
                int64_t b0 = p * S, nb = n_blocks - b0 < S ? n_blocks - b0 : S;
                for (int64_t j = 0; j < nb; j++)
                    if (rows_of) repack_source(rows_of, src, (b0 + j) * 32, Kp, tmp, Bv + j * Kp * 16);
                    else repack_panel((const uint16_t *)W->data, rows, K, (b0 + j) * 32, Kp, Bv + j * Kp * 16);
                for (int64_t t0 = 0; t0 < T; t0 += 32)
                    for (int64_t j = 0; j < nb; j++) {
                        int64_t r0 = (b0 + j) * 32, nr = rows - r0 < 32 ? rows - r0 : 32;
                        block_32x32(Xs, Kp, t0, Bv + j * Kp * 16, C, precision != MAMBA2_PRECISION_FAST);
                        int64_t nt = T - t0 < 32 ? T - t0 : 32;
                        for (int64_t t = 0; t < nt; t++) { /* Y[t0 + t][r0 .. r0 + nr) (+)= C[t][0 .. nr) */
                            float *y = Y + (t0 + t) * ldy + r0;
                            const float *c = C + t * 32;
                            if (accumulate)
                                for (int64_t r = 0; r < nr; r++) y[r] += c[r];
                            else
                                memcpy(y, c, (size_t)nr * sizeof *y);
                        }
                    }
            }
            tiles_release();
        }
    }
    return failed ? -1 : 0;
}

int cpu_linear_amx(const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate,
                   int n_threads, Mamba2Precision precision) {
    if (W->dtype != MAMBA2_BF16) return -1;
    return amx_product(W, NULL, NULL, W->shape[0], W->shape[1], X, ldx, T, Y, ldy, accumulate, n_threads, precision);
}

int cpu_linear_amx_rows(CpuBf16Rows rows_of, const void *src, int64_t rows, int64_t K, const float *X, int64_t ldx,
                        int T, float *Y, int64_t ldy, int accumulate, int n_threads, Mamba2Precision precision) {
    return amx_product(NULL, rows_of, src, rows, K, X, ldx, T, Y, ldy, accumulate, n_threads, precision);
}
