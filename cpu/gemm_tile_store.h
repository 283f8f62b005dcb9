/**
 * @file gemm_tile_store.h
 * @brief The epilogue the AVX-512 GEMM microkernels share: an M × 32 fp32 tile from registers to C.
 */
#ifndef MAMBA2_CPU_GEMM_TILE_STORE_H
#define MAMBA2_CPU_GEMM_TILE_STORE_H

#include <immintrin.h>
#include <stdint.h>

/**
 * @brief C[i][0 .. ncols) (+)= tile row i (c0[i]: columns 0..16, c1[i]: 16..32), for i < M.
 *
 * Columns past @p ncols (≤ 32) are neither read nor written (masked). Inlined into each
 * microkernel, where M is a constant and c0, c1 stay in registers.
 */
static inline __attribute__((always_inline, target("avx512f"))) void
gemm_store_tile_512(const int M, __m512 *c0, __m512 *c1, float *C, int64_t ldc, int ncols, int add) {
    __mmask16 m0 = ncols >= 16 ? 0xffff : (__mmask16)((1u << ncols) - 1);
    __mmask16 m1 = ncols >= 32 ? 0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (add) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, c));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, c0[i]);
        _mm512_mask_storeu_ps(c + 16, m1, c1[i]);
    }
}

#endif
