/**
 * @file packed_bf16.h
 * @brief bf16 weight matrices repacked at load so that decode reads each group of rows as one stream.
 *
 * Row-major W [rows, K] read 8 rows at a time (the decode GEMV's register block) is 8 streams a
 * thread, one per row, 2·K bytes apart. The packed copy stores each group of 8 rows column chunk
 * by column chunk, so the bytes one step of the register block reads are adjacent and a group is
 * one sequential stream:
 *
 *     packed[g][c][i][j] = W[8g + i][32c + j]     g < rows_pad / 8, c < K_pad / 32, i < 8, j < 32
 *
 * rows_pad and K_pad are rows and K rounded up to 8 and 32; the padding holds zeros. A chunk of a
 * group (8 rows × 32 columns, 512 bytes) is what one step of the register block reads: one 64-byte
 * line per row. Same values, same bytes (plus padding) as the stored bf16 matrix.
 */
#ifndef MAMBA2_CPU_PACKED_BF16_H
#define MAMBA2_CPU_PACKED_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "gemv_bf16.h"
#include "tensor.h"

/** Rows of a group (the decode GEMV's register block). */
#define CPU_PACK_ROWS 8
/** Columns of a chunk (one 64-byte line of bf16 per row). */
#define CPU_PACK_COLS 32

/** A bf16 matrix in the packed layout above. */
typedef struct {
    int64_t rows;     /**< rows of W */
    int64_t K;        /**< columns of W */
    int64_t rows_pad; /**< rows rounded up to CPU_PACK_ROWS */
    int64_t K_pad;    /**< K rounded up to CPU_PACK_COLS */
    uint16_t *data;   /**< [rows_pad / 8][K_pad / 32][8][32] bf16 (owned; 2 MiB aligned from 2 MiB on, else 64 bytes) */
    size_t bytes;     /**< bytes of the values in @ref data (padding included): what decode reads */
} CpuPackedBf16;

/** Bytes of memory the packed copy of a [rows, K] bf16 matrix takes at most: its values with the
 *  padding, and (at 2 MiB or more) whole 2 MiB pages and the address space of their alignment. */
size_t cpu_packed_bf16_bytes(int64_t rows, int64_t K);

/**
 * @brief Repack @p W [rows, K] (bf16) into @p out, groups split over @p n_threads threads.
 * @param W         the stored matrix, 2-d bf16 (read in place)
 * @param n_threads OpenMP threads
 * @param out       receives the copy (free it with cpu_packed_bf16_free())
 * @param err       the reason on failure
 * @return 0, or -1 with the reason in @p err (not bf16, out of memory; @p out is then empty).
 */
int cpu_packed_bf16_pack(const Mamba2Tensor *W, int n_threads, CpuPackedBf16 *out, Mamba2Error *err);

/** Release the copy (safe on a zeroed matrix). */
void cpu_packed_bf16_free(CpuPackedBf16 *p);

/**
 * @brief Rows [r0, r0 + n) × columns [k0, k0 + kc) as row-major bf16, zeros past the last row or
 *        column: the row source of the GEMM paths (and of tests).
 * @param p   the packed copy
 * @param r0  first row
 * @param n   rows
 * @param k0  first column
 * @param kc  columns
 * @param dst [n][kc] bf16
 */
void cpu_packed_bf16_rows(const CpuPackedBf16 *p, int64_t r0, int64_t n, int64_t k0, int64_t kc, uint16_t *dst);

/**
 * @brief Groups [g0, g1) of the product with B activation vectors, on the calling thread.
 *
 * y[b·ldy + r] (+)= Σ_k W[r][k] · x[b·ldx + k] for the real rows r of those groups.
 *
 * @param isa        variant to run (≤ cpu_isa_active())
 * @param p          the packed copy
 * @param g0         first group (rows 8·g0 ..)
 * @param g1         end group
 * @param x          activations [B, ldx] (K used)
 * @param ldx        stride between activation vectors (≥ K)
 * @param B          activation vectors (≥ 1)
 * @param y          output [B, ldy], indexed from row 0 of the matrix
 * @param ldy        stride between output vectors (≥ rows)
 * @param accumulate 1: add to y; 0: overwrite y
 * @param precision  MAMBA2_PRECISION_FAST: x rounded to bf16 once where the CPU has AVX512_BF16;
 *                   default: x in two bf16 parts there (as cpu_gemv()); the other variants multiply in fp32
 */
void cpu_packed_bf16_gemv_groups(CpuIsa isa, const CpuPackedBf16 *p, int64_t g0, int64_t g1, const float *x,
                                 int64_t ldx, int B, float *y, int64_t ldy, int accumulate, Mamba2Precision precision);

/**
 * @brief The decode product on the packed copy: y = W·x (or y += W·x) for B vectors, the groups
 *        handed out to @p n_threads OpenMP threads in units of cpu_gemv_unit_rows() rows, as
 *        cpu_gemv() hands out rows (each row computed whole by one thread: results do not depend
 *        on the thread count).
 * @param isa        variant to run (≤ cpu_isa_detect()), as cpu_gemv()
 * @param p          the packed copy
 * @param x          activations [B, ldx]
 * @param ldx        stride between activation vectors (≥ K)
 * @param B          activation vectors (≥ 1)
 * @param y          output [B, ldy]
 * @param ldy        stride between output vectors (≥ rows)
 * @param accumulate 1: add to y; 0: overwrite y
 * @param n_threads  OpenMP threads
 * @param precision  as cpu_packed_bf16_gemv_groups()
 */
void cpu_packed_bf16_gemv(CpuIsa isa, const CpuPackedBf16 *p, const float *x, int64_t ldx, int B, float *y, int64_t ldy,
                          int accumulate, int n_threads, Mamba2Precision precision);

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) for T activation rows, with W in its packed copy: what
 *        cpu_linear() does for the stored bf16 matrix, on the same paths and with the same precision.
 *
 * Few rows (cpu_linear_uses_gemv()) go through cpu_packed_bf16_gemv(); more through the GEMM tier
 * cpu_linear_tier() names, reading the packed copy through its row source (AMX, AVX512_BF16) or
 * widened panels (the fp32 tiers), else fp32 panels and cblas_sgemm.
 *
 * @param W          the stored matrix the copy was made from (its dtype and shape choose the path;
 *                   its data is not read)
 * @param p          the packed copy
 * @param X          activations [T, ldx]
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param scratch    cpu_linear_scratch_floats(n_threads, K) floats (the sgemm path's panels)
 * @param n_threads  OpenMP threads
 * @param precision  as cpu_linear()
 */
void cpu_packed_bf16_linear(const Mamba2Tensor *W, const CpuPackedBf16 *p, const float *X, int64_t ldx, int T,
                            float *Y, int64_t ldy, int accumulate, float *scratch, int n_threads,
                            Mamba2Precision precision);

#endif
