/**
 * @file qmatrix.h
 * @brief Weight matrices quantized at load to 8 or 4 bits, and their products with fp32 activations.
 *
 * A weight matrix W [rows, K] (bf16, f16 or f32 in the checkpoint) is cut along K into blocks of
 * 32 weights, each stored as integers q with one scale d (fp16):
 *
 *     q8:  W[r][k] ≈ d · q,        q ∈ [−127, 127],  d = max|W| / 127 over the block
 *     q4:  W[r][k] ≈ d · q,        q ∈ [−8, 7],      d chosen per block to minimise Σ (W − d·q)²
 *                                                    among candidates that include llama.cpp
 *                                                    Q4_0's (d = the signed max / −8), so the error
 *                                                    is never larger than Q4_0's on the same block
 *
 * Bytes read per weight: q8 1 + 2/32 = 1.0625, q4 0.5 + 2/32 = 0.5625 (bf16: 2).
 *
 * Products run on integers. Each activation vector x [K] is quantized the same way per block of
 * 32 (x ≈ e · p, p ∈ [−127, 127]), so a block's contribution is d · e · Σ q·p, the integer sum made
 * by VNNI's vpdpbusd (unsigned × signed bytes: the weights are stored offset by +128 (q8) or +8
 * (q4), and the offset's share, offset · Σ p, is subtracted through the accumulator's start
 * value), by AVX2's vpmaddubsw, or by plain C. See qmatrix.c for the packed layout.
 *
 * The product is chosen from the CPU (cpu_qlinear_kernel()): vpdpbusd on zmm (AVX512-VNNI) at the
 * AVX-512 level; at the AVX2 level vpdpbusd on ymm where the CPU has AVX-VNNI (VEX encoding: Intel
 * client cores since Alder Lake) or AVX512-VNNI + AVX512VL (the same instruction EVEX-encoded, run
 * when MAMBA2_CPU_ISA=avx2 lowers such a CPU), else AVX2's vpmaddubsw. The environment variable
 * MAMBA2_CPU_VNNI=0 turns vpdpbusd off (zmm and ymm): the products then run as on a CPU without
 * VNNI (AVX2's vpmaddubsw for decode, weights widened to fp32 for prefill), for comparisons.
 */
#ifndef MAMBA2_CPU_QMATRIX_H
#define MAMBA2_CPU_QMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "gemv_bf16.h"
#include "tensor.h"

/** Weights per quantization block (one scale each). */
#define QBLOCK 32

/** A quantized weight matrix, in the packed tile layout of qmatrix.c. */
typedef struct {
    Mamba2WeightFormat format; /**< MAMBA2_WEIGHTS_Q8 or MAMBA2_WEIGHTS_Q4 */
    int64_t rows;              /**< rows of W */
    int64_t K;                 /**< columns of W (the input width) */
    int64_t K_pad;             /**< K rounded up to the tile width (the padding holds zeros) */
    uint8_t *data;             /**< the tiles (owned, 64-byte aligned) */
    size_t bytes;              /**< size of @ref data */
} CpuQMatrix;

/** Bytes the quantized copy of a [rows, K] matrix takes (values, scales and the tiles' padding). */
size_t cpu_qmatrix_bytes(int64_t rows, int64_t K, Mamba2WeightFormat format);

/**
 * @brief Quantize @p W [rows, K] (bf16, f16 or f32) into @p out, rows split over @p n_threads threads.
 * @return 0, or -1 with the reason in @p err (out of memory; @p out is then empty).
 */
int cpu_qmatrix_quantize(const Mamba2Tensor *W, Mamba2WeightFormat format, int n_threads, CpuQMatrix *out,
                         Mamba2Error *err);

/** Release the tiles of @p q (safe on a zeroed matrix). */
void cpu_qmatrix_free(CpuQMatrix *q);

/**
 * @brief W[r][k] as the quantized matrix holds it (d · q), for tests.
 * @param q   the quantized matrix
 * @param r0  first row
 * @param n   number of rows
 * @param out [n, K] row-major: rows [r0, r0 + n)
 */
void cpu_qmatrix_dequantize_rows(const CpuQMatrix *q, int64_t r0, int64_t n, float *out);

/** The integer products of cpu_qlinear(), slowest first. */
typedef enum {
    CPU_QKERNEL_SCALAR = 0,        /**< plain C */
    CPU_QKERNEL_AVX2 = 1,          /**< AVX2: vpmaddubsw + vpmaddwd on ymm */
    CPU_QKERNEL_AVXVNNI = 2,       /**< AVX-VNNI: VEX vpdpbusd on ymm (AVX2's register block) */
    CPU_QKERNEL_AVXVNNI_EVEX = 3,  /**< the same ymm kernel EVEX-encoded (AVX512-VNNI + AVX512VL), where
                                        the ISA is lowered to AVX2 on a CPU without AVX-VNNI */
    CPU_QKERNEL_AVX512VNNI = 4     /**< AVX512-VNNI: vpdpbusd on zmm */
} CpuQKernel;

/**
 * @brief The product cpu_qlinear() runs for @p isa on this CPU.
 *
 * CPU_QKERNEL_AVX512VNNI when @p isa ≥ CPU_ISA_AVX512 and the CPU has AVX512-VNNI; otherwise, when
 * @p isa ≥ CPU_ISA_AVX2: CPU_QKERNEL_AVXVNNI where the CPU has AVX-VNNI (CPUID.(EAX=7,ECX=1):EAX
 * bit 4), CPU_QKERNEL_AVXVNNI_EVEX where it has AVX512-VNNI and AVX512VL, else CPU_QKERNEL_AVX2;
 * CPU_QKERNEL_SCALAR below AVX2. MAMBA2_CPU_VNNI=0 in the environment (read at every call) rules
 * out the three vpdpbusd kernels.
 */
CpuQKernel cpu_qlinear_kernel(CpuIsa isa);

/** The name of cpu_qlinear_kernel(@p isa): "avx512-vnni", "avx2-vnni" (VEX), "avx2-vnni-evex",
 *  "avx2" or "scalar". */
const char *cpu_qlinear_kernel_name(CpuIsa isa);

/** Up to this many activation rows cpu_qlinear() always runs the integer product; above it, where
 *  the product has no vpdpbusd (cpu_qlinear_kernel() below CPU_QKERNEL_AVXVNNI), it widens the
 *  weights to fp32 and uses the fp32 GEMM tier instead. */
#define QLINEAR_INT_MAX_ROWS 16

/**
 * @brief 1 when cpu_qlinear() with @p isa and @p T activation rows rounds the activations to int8
 *        (the integer product), 0 when it multiplies fp32 activations with widened weights.
 */
int cpu_qlinear_rounds_activations(CpuIsa isa, int T);

/** Bytes of scratch cpu_qlinear() needs for @p T activation rows of a matrix of @p K columns. */
size_t cpu_qlinear_scratch_bytes(int64_t K, int T);

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) for T activation rows, with quantized W.
 *
 * Y[t][r] (+)= Σ_k X[t][k] · W[r][k];  X [T, ldx] fp32 (quantized per block of 32 on the way in),
 * Y [T, ldy]. Rows of W are handed out to @p n_threads OpenMP threads in blocks.
 *
 * @param isa        the variant to run (≤ cpu_isa_active()); the product is cpu_qlinear_kernel(@p isa)
 * @param W          the quantized weights [rows, K]
 * @param X          activations [T, ldx]
 * @param ldx        row stride of @p X (≥ K)
 * @param T          activation rows
 * @param Y          output [T, ldy]
 * @param ldy        row stride of @p Y (≥ rows)
 * @param accumulate 1: Y += X·Wᵀ; 0: Y = X·Wᵀ
 * @param scratch    cpu_qlinear_scratch_bytes(W->K, T) bytes, 64-byte aligned
 * @param n_threads  OpenMP threads
 */
void cpu_qlinear(CpuIsa isa, const CpuQMatrix *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy,
                 int accumulate, void *scratch, int n_threads);

#endif
