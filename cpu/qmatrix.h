/**
 * @file qmatrix.h
 * @brief Weight matrices quantized at load to 8 or 4 bits, and their products with fp32 activations.
 *
 * A weight matrix W [rows, K] (bf16, f16 or f32 in the checkpoint) is cut along K into blocks of
 * 64 weights (q8) or 32 (q4), each stored as integers q with one scale d (fp16):
 *
 *     q8:  W[r][k] ≈ d · q,        q ∈ [−127, 127],  d = max|W| / 127 over the block of 64
 *     q4:  W[r][k] ≈ d · q,        q ∈ [−8, 7],      d chosen per block to minimise Σ (W − d·q)²
 *                                                    among candidates that include llama.cpp
 *                                                    Q4_0's (d = the signed max / −8), so the error
 *                                                    is never larger than Q4_0's on the same block
 *
 * Bytes read per weight: q8 1 + 2/64 = 1.03125, q4 0.5 + 2/32 = 0.5625 (bf16: 2). q8's scale covers
 * 64 weights, not 32 as llama.cpp's Q8_0: 3 % fewer bytes a decode step, for a logits error about
 * 15 % larger (1.0–1.4× on the test models), a tenth of q4's (results/cpu.md, "q8 with one scale
 * per 64 weights").
 *
 * Products run on integers. Each activation vector x [K] is quantized the same way per block of
 * 32 (x ≈ e · p, p ∈ [−127, 127]), so a block's contribution is d · e · Σ q·p, the integer sum made
 * by VNNI's vpdpbusd (unsigned × signed bytes: the weights are stored offset by +128 (q8) or +8
 * (q4), and the offset's share, offset · Σ p, is subtracted through the accumulator's start
 * value), by AVX2's vpmaddubsw (q8 then stored as signed bytes: cpu_qmatrix_set_q8_signed()), or
 * by plain C. See qmatrix.c for the packed layout.
 *
 * The product is chosen from the CPU (cpu_qlinear_kernel()): vpdpbusd on zmm (AVX512-VNNI) at the
 * AVX-512 level; at the AVX2 level vpdpbusd on ymm where the CPU has AVX-VNNI (VEX encoding: Intel
 * client cores since Alder Lake) or AVX512-VNNI + AVX512VL (the same instruction EVEX-encoded, run
 * when MAMBA2_CPU_ISA=avx2 lowers such a CPU), else AVX2's vpmaddubsw. The environment variable
 * MAMBA2_CPU_VNNI=0 turns vpdpbusd off (zmm and ymm): the products then run as on a CPU without
 * VNNI (AVX2's vpmaddubsw for decode, weights widened to fp32 for prefill), for comparisons.
 *
 * Prefill on a CPU with AMX does not round the activations at all: the weights are dequantized into
 * bf16 (d · q rounded once, 2⁻⁹ of each weight, far below the quantization's own error) as the AMX
 * GEMM packs its weight tiles, and multiplied by the fp32 activations split as for bf16 weights
 * (gemm_amx.h). AMX-BF16 multiplies 16 × 16 × 32 per instruction, more than AVX512-VNNI's integer
 * product does per cycle, and the dequantization is paid once per weight for all T rows.
 */
#ifndef MAMBA2_CPU_QMATRIX_H
#define MAMBA2_CPU_QMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "gemv_bf16.h"
#include "tensor.h"

/** Columns per block of the products: activations are quantized per block of QBLOCK, and the
 *  integer sums of a block are scaled together. q4 has one weight scale per block. */
#define QBLOCK 32
/** Weights per q8 weight scale (two blocks of QBLOCK). */
#define QBLOCK_Q8 64

/** A quantized weight matrix, in the packed tile layout of qmatrix.c. */
typedef struct {
    Mamba2WeightFormat format; /**< MAMBA2_WEIGHTS_Q8 or MAMBA2_WEIGHTS_Q4 */
    int64_t rows;              /**< rows of W */
    int64_t K;                 /**< columns of W (the input width) */
    int64_t K_pad;             /**< K rounded up to the tile width (the padding holds zeros) */
    uint8_t *data;             /**< the tiles (owned, 64-byte aligned) */
    size_t bytes;              /**< size of @ref data */
    int q8_signed;             /**< q8 only: 1 = values stored as signed bytes q, 0 = as q + 128 (see
                                    cpu_qmatrix_set_q8_signed()); always 0 for q4 */
} CpuQMatrix;

/** Bytes the quantized copy of a [rows, K] matrix takes (values, scales and the tiles' padding). */
size_t cpu_qmatrix_bytes(int64_t rows, int64_t K, Mamba2WeightFormat format);

/**
 * @brief Quantize @p W [rows, K] (bf16, f16 or f32) into @p out, rows split over @p n_threads threads.
 * @return 0, or -1 with the reason in @p err (out of memory; @p out is then empty).
 */
int cpu_qmatrix_quantize(const Mamba2Tensor *W, Mamba2WeightFormat format, int n_threads, CpuQMatrix *out,
                         Mamba2Error *err);

/**
 * @brief Store @p q's q8 values as signed bytes q (@p q8_signed = 1) or as q + 128 (0), rewriting
 *        them in place where they are stored the other way (a no-op for q4).
 *
 * vpdpbusd multiplies unsigned weight bytes, so the VNNI products read q + 128 as stored; the
 * products without it (AVX2, AVX512BW: vpmaddubsw) need the signed q, and read it with one
 * instruction fewer per 32 or 64 weights when it is stored so. cpu_qmatrix_quantize() stores the
 * way cpu_qlinear_kernel(cpu_isa_active()) reads; every product and dequantization reads either.
 */
void cpu_qmatrix_set_q8_signed(CpuQMatrix *q, int q8_signed);

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

/** The integer products of cpu_qlinear(). */
typedef enum {
    CPU_QKERNEL_SCALAR = 0,        /**< plain C */
    CPU_QKERNEL_AVX2 = 1,          /**< AVX2: vpmaddubsw + vpmaddwd on ymm */
    CPU_QKERNEL_AVXVNNI = 2,       /**< AVX-VNNI: VEX vpdpbusd on ymm (AVX2's register block) */
    CPU_QKERNEL_AVXVNNI_EVEX = 3,  /**< the same ymm kernel EVEX-encoded (AVX512-VNNI + AVX512VL), where
                                        the ISA is lowered to AVX2 on a CPU without AVX-VNNI */
    CPU_QKERNEL_AVX512VNNI = 4,    /**< AVX512-VNNI: vpdpbusd on zmm */
    CPU_QKERNEL_AVX512BW = 5       /**< AVX512BW without VNNI: vpmaddubsw + vpmaddwd on zmm (AVX512-VNNI's
                                        register block) */
} CpuQKernel;

/** Whether product @p k multiplies with vpdpbusd (4 int8 pairs per 32-bit lane in one instruction). */
static inline int cpu_qlinear_kernel_has_dpbusd(CpuQKernel k) {
    return k == CPU_QKERNEL_AVXVNNI || k == CPU_QKERNEL_AVXVNNI_EVEX || k == CPU_QKERNEL_AVX512VNNI;
}

/**
 * @brief The product cpu_qlinear() runs for @p isa on this CPU.
 *
 * CPU_QKERNEL_AVX512VNNI when @p isa ≥ CPU_ISA_AVX512 and the CPU has AVX512-VNNI; otherwise, when
 * @p isa ≥ CPU_ISA_AVX2: CPU_QKERNEL_AVXVNNI where the CPU has AVX-VNNI (CPUID.(EAX=7,ECX=1):EAX
 * bit 4), CPU_QKERNEL_AVXVNNI_EVEX where it has AVX512-VNNI and AVX512VL, CPU_QKERNEL_AVX512BW
 * where @p isa ≥ CPU_ISA_AVX512 and the CPU has AVX512BW, else CPU_QKERNEL_AVX2; CPU_QKERNEL_SCALAR
 * below AVX2. MAMBA2_CPU_VNNI=0 in the environment (read at every call) rules out the three
 * vpdpbusd kernels.
 */
CpuQKernel cpu_qlinear_kernel(CpuIsa isa);

/** The name of cpu_qlinear_kernel(@p isa): "avx512-vnni", "avx512bw", "avx2-vnni" (VEX),
 *  "avx2-vnni-evex", "avx2" or "scalar". */
const char *cpu_qlinear_kernel_name(CpuIsa isa);

/** Up to this many activation rows cpu_qlinear() always runs the integer product; above it
 *  (prefill), it may take another path: see cpu_qlinear_path(). */
#define QLINEAR_INT_MAX_ROWS 16

/** How cpu_qlinear() multiplies a number of activation rows. */
typedef enum {
    CPU_QPATH_INTEGER = 0, /**< activations quantized per block of 32, the integer product cpu_qlinear_kernel() */
    CPU_QPATH_WIDENED = 1, /**< fp32 activations times the weights widened to fp32 panels (the fp32 GEMM tier) */
    CPU_QPATH_AMX = 2      /**< fp32 activations (split as the AMX GEMM splits them) times the weights
                                dequantized into bf16 AMX tiles (cpu_qmatrix_bf16_rows()) */
} CpuQPath;

/**
 * @brief The path cpu_qlinear() takes for @p T activation rows at ISA level @p isa on this CPU.
 *
 * Up to QLINEAR_INT_MAX_ROWS rows: the integer product. Above: the AMX GEMM where AMX is active
 * (cpu_amx_active(): the CPU has it, MAMBA2_CPU_GEMM does not ask for a lower tier) and @p isa is
 * CPU_ISA_AVX512; else the integer product where it has vpdpbusd (cpu_qlinear_kernel_has_dpbusd():
 * it multiplies 4 int8 pairs per 32-bit lane where an fp32 FMA does one); else, where the ISA and
 * MAMBA2_CPU_GEMM allow an fp32 GEMM tier, the integer product by vpmaddubsw or the fp32 tier on
 * widened weights, as cpu_qlinear_prefill_widens() says; else the integer product.
 */
CpuQPath cpu_qlinear_path(CpuIsa isa, int T);

/**
 * @brief Whether prefill on a CPU whose integer product has no vpdpbusd (AVX2's or AVX512BW's
 *        vpmaddubsw) widens the weights to fp32 for the fp32 GEMM tier (1) or runs the integer product
 *        (0): MAMBA2_CPU_QPREFILL=widened / integer where set, else what the backend's load trial chose
 *        (cpu_qlinear_choose_prefill()), else 1.
 * The integer product rounds the activations to int8 per block of 32 as decode does; the widened
 * one keeps them in fp32. Which is faster depends on the core's integer multipliers against its FMAs
 * (on an AMD Zen 3 the integer product was the faster at the 7B's widths) and on the matrix: the integer product pads K to whole tiles of 512 columns, so on a small model
 * (the demo model, K = 256) the widened one was the faster (results/cpu.md, "quantized prefill on
 * AVX2"). Untimed, the widened path is kept, as before the trial. The two round differently, so
 * two loads that chose differently give logits that differ in their last digits.
 */
int cpu_qlinear_prefill_widens(void);

/** Whether cpu_qlinear_path() at ISA level @p isa, for more than QLINEAR_INT_MAX_ROWS rows, depends on
 *  cpu_qlinear_prefill_widens(): no AMX path, an integer product without vpdpbusd, an fp32 GEMM tier. */
int cpu_qlinear_prefill_may_widen(CpuIsa isa);

/**
 * @brief Times prefill's two paths on this CPU: cpu_qlinear() of a few hundred activation rows on the
 *        first rows of @p W (at most 1,024), the integer product and the widened one in turn (an untimed
 *        round, then three, alternated); the choice cpu_qlinear_prefill_widens() returned before is
 *        restored.
 * @param isa        as for cpu_qlinear()
 * @param W          the quantized matrix (its first rows are multiplied)
 * @param n_threads  as for cpu_qlinear()
 * @param seconds    out: [0] the integer product's fastest round, [1] the widened one's
 * @param err        the reason on failure (out of memory)
 * @return 0, or -1
 */
int cpu_qlinear_time_prefill(CpuIsa isa, const CpuQMatrix *W, int n_threads, double seconds[2], Mamba2Error *err);

/** The floating-point operations of one of cpu_qlinear_time_prefill()'s products on @p W (to judge
 *  whether they take long enough to be timed). */
double cpu_qlinear_prefill_trial_flop(const CpuQMatrix *W);

/** 1 when MAMBA2_CPU_QPREFILL decides cpu_qlinear_prefill_widens() (read once; the load trial then times nothing). */
int cpu_qlinear_prefill_asked(void);

/**
 * @brief Sets what cpu_qlinear_prefill_widens() returns when the environment does not: the backend's
 *        load trial (process-wide, as the CPU is). Call between products, not during one.
 */
void cpu_qlinear_choose_prefill(int widen);

/**
 * @brief Rows [r0, r0 + 32) × columns [k0, k0 + kc) of a quantized matrix as bf16 (d · q rounded to
 *        nearest even), zeros past its last row: the row source (CpuBf16Rows of gemm_amx.h) of the
 *        AMX path.
 *
 * Runs AVX-512 BW and BF16 instructions: call it only where cpu_qlinear_path() can return
 * CPU_QPATH_AMX, or after checking the CPU has both (every CPU with AMX does).
 *
 * @param src  the CpuQMatrix
 * @param r0   first row
 * @param k0   first column, a multiple of 256
 * @param kc   columns, a multiple of 32, at most 256
 * @param dst  [32][kc] bf16
 */
void cpu_qmatrix_bf16_rows(const void *src, int64_t r0, int64_t k0, int64_t kc, uint16_t *dst);

/**
 * @brief The prefetch of the quantized products' SIMD kernels: CPU_PREFETCH_IN_ROW (at each tile's
 *        start, the lines of two tiles into L1: q8 that tile and the next, q4 the next two; one
 *        activation row of q8, and of q4 by AVX2's vpmaddubsw, instead reads a tile line by line
 *        across its rows and asks for each line 2 KiB ahead as it reads it; the decode products then
 *        read as fast as a plain read, or nearly, where the hardware prefetchers alone left them
 *        below it: results/cpu.md), unless MAMBA2_CPU_PREFETCH asks for another. Several activation
 *        rows of q8 without vpdpbusd, which the prefetches slowed down, take CPU_PREFETCH_NONE unless
 *        asked otherwise.
 */
CpuPrefetch cpu_qlinear_prefetch(void);

/**
 * @brief Whether one activation row of q8 (decode) reads each tile line by line across its four
 *        rows, each line prefetched as it is read (1: faster on the Intel Xeons measured), or row by
 *        row behind the tile's prefetch (0: faster on the AMD Zen 4 measured; results/cpu.md, "q8
 *        decode's read order timed at load"): MAMBA2_CPU_Q8_LINES=1 / 0 where set, else what the
 *        backend's load trial chose (cpu_q8_decode_choose_lines()), else 1. Both give the same bits.
 */
int cpu_q8_decode_lines(void);

/** 1 when MAMBA2_CPU_Q8_LINES sets the q8 decode read order (read once; the load trial then times nothing). */
int cpu_q8_decode_lines_asked(void);

/**
 * @brief Sets the read order cpu_q8_decode_lines() returns when the environment does not: the
 *        backend's load trial (process-wide, as the CPU is). Call between products, not during one.
 */
void cpu_q8_decode_choose_lines(int lines);

/** Bytes of scratch cpu_qlinear() needs for @p T activation rows of a matrix of @p K columns. */
size_t cpu_qlinear_scratch_bytes(int64_t K, int T);

/**
 * @brief Y = X · Wᵀ (or Y += X · Wᵀ) for T activation rows, with quantized W.
 *
 * Y[t][r] (+)= Σ_k X[t][k] · W[r][k];  X [T, ldx] fp32, Y [T, ldy], by the path
 * cpu_qlinear_path(@p isa, @p T) names (for the integer product X is quantized per block of 32 on
 * the way in). Rows of W are handed out to @p n_threads OpenMP threads in blocks.
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
 * @param precision  for the AMX path: MAMBA2_PRECISION_DEFAULT splits X into two bf16 parts,
 *                   MAMBA2_PRECISION_FAST rounds it to bf16 once (the other paths ignore it)
 */
void cpu_qlinear(CpuIsa isa, const CpuQMatrix *W, const float *X, int64_t ldx, int T, float *Y, int64_t ldy,
                 int accumulate, void *scratch, int n_threads, Mamba2Precision precision);

#endif
