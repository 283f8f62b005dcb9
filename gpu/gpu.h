/**
 * @file gpu.h
 * @brief The GPU path (CUDA + cuBLAS) as seen from C: the backend constructor and the
 *        kernel-level entry points the tests use to check each kernel against the reference.
 */
#ifndef MAMBA2_GPU_H
#define MAMBA2_GPU_H

#include "backend.h"
#include "ssd.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Create the GPU backend: uploads the weights (bf16 matrices, fp32 small tensors) once. */
int mamba2_backend_gpu_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                              Mamba2Error *err);

/** 1 when a CUDA device is usable; 0 with the reason in @p why otherwise. */
int mamba2_gpu_available(Mamba2Error *why);

/**
 * @brief The prefill SSD kernels alone, on host arrays (layouts of ssd.h), for testing and timing.
 *
 * x, B and C are rounded to bf16 on the device as in the model; @p D [H] adds D·x (may be NULL);
 * @p state is the initial state in and the final state out.
 */
int mamba2_gpu_ssd_chunked(SSDDims d, int Q, const float *x, const float *dt, const float *A, const float *B,
                           const float *C, const float *D, float *state, float *y, Mamba2Error *err);

/**
 * @brief Time the prefill SSD kernels on device-resident random inputs of the given shape.
 * @param d        sizes of one call (ssd.h)
 * @param Q        chunk size
 * @param reps     timed repetitions (after a warm-up)
 * @param parts_ms if not NULL, receives the median time of each of the three kernels
 *        (cumsum, chunk states with state passing, chunk scan with C·Bᵀ inside)
 * @param err      the reason on failure
 * @return milliseconds per call (median of @p reps), or a negative value on failure.
 */
double mamba2_gpu_time_ssd_chunked(SSDDims d, int Q, int reps, double parts_ms[3], Mamba2Error *err);

/**
 * @brief The shapes of the prefill SSD kernels for this process (the same results in every shape;
 *        MAMBA2_GPU_WALK_COLS and MAMBA2_GPU_SCAN_WAVES set them when a backend is created).
 * @param walk_cols  the state walk's block width in state columns: 64 (two blocks of 8 warps a
 *                   head), anything else 128 (one block of 16 warps)
 * @param scan_waves the group chunk scan's heads sliced until there are this many blocks a
 *                   multiprocessor: 1, anything else 2
 */
void mamba2_gpu_set_ssd_shapes(int walk_cols, int scan_waves);

/**
 * @brief The prefill's grouped gated norm alone (launch_gated_norm_bf16(), bf16 z): out = g / sqrt(mean
 *        over the group of g² + 1e-5) · w with g = y · silu(z), on host arrays.
 * @param T, G, gs tokens, groups, channels a group (d_in = G · gs)
 * @param warps    1: one warp a group (groups of 1,024 only; others take the block kernel anyway)
 * @param y        [T, d_in] fp32
 * @param z        [T, 2 · d_in] bf16 bits: z in the first d_in columns of each row (as in [z | xBC])
 * @param w        [d_in] the norm's weights
 * @param out      [T, d_in] bf16 bits
 * @param err      the reason on failure
 * @return 0, or -1 with @p err set.
 */
int mamba2_gpu_gated_norm(int T, int G, int gs, int warps, const float *y, const uint16_t *z, const float *w,
                          uint16_t *out, Mamba2Error *err);

/**
 * @brief The decode matrix-vector kernel alone: out[b][r] = Σ_c W[r][c] x[b][c].
 * @param rows rows of @p W
 * @param cols columns of @p W
 * @param nb   number of input vectors (1 to 4)
 * @param stream 1: through the streamed kernel (gemv_stream.cu) where it takes the shape
 *             (mamba2_gpu_gemv_streamed()); 0: gemv.cuh's
 * @param W    bf16 bits [rows, cols]
 * @param x    [nb, cols]
 * @param out  [nb, rows]
 * @param err  the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_gpu_gemv(int rows, int cols, int nb, int stream, const uint16_t *W, const float *x, float *out, Mamba2Error *err);

/**
 * @brief The q8 quantizer alone: W [rows, cols] quantized on the device as the GPU backend quantizes
 *        its weights at load (gpu/q8_matrix.cu): per block of 64 along each row,
 *        d = fp16(max|W| / 127), q = clamp(round(W · (1/d)), −127, 127), the CPU's scheme and
 *        roundings (cpu/qmatrix.c).
 * @param rows  rows of @p W
 * @param cols  columns of @p W
 * @param f32   0: @p W holds bf16 bits (uint16_t); 1: fp32 (the upload widens f32 and f16 weights to fp32)
 * @param W     [rows, cols]
 * @param q     out: [rows, Kq] the int8 values (Kq = cols rounded up to 64; columns cols .. Kq hold
 *              zeros), or NULL
 * @param d     out: [rows, Kq / 64] fp16 bits of the scales, or NULL
 * @param err   the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_gpu_q8_quantize(int rows, int cols, int f32, const void *W, int8_t *q, uint16_t *d, Mamba2Error *err);

/**
 * @brief The q8 quantizer and the decode GEMV over q8 weights alone: W quantized on the device
 *        (d = fp16(max|W| / 127) per block of 64 along each row, q = round(W / d)), then
 *        out[b][r] = Σ_c W_q8[r][c] x[b][c] by the product @p dp4a selects.
 * @param rows  rows of @p W
 * @param cols  columns of @p W
 * @param nb    number of input vectors (1 to 4)
 * @param dp4a  0: the float product (GEMV_Q8_FLOAT); 1: inputs rounded to int8 per block, dp4a
 *              (GEMV_Q8_DP4A, gemv.cuh's kernel); 2: the same product streamed through shared memory
 *              (gemv_stream.cu) where that kernel takes the shape (mamba2_gpu_gemv_streamed()),
 *              else as 1; 3: the dp4a product with the second pass of each row staged in shared
 *              memory where that takes the shape (mamba2_gpu_gemv_staged()), else as 1
 * @param groups 0: no prologue; else the grouped norm's (x[b][c] times rsqrt(ss[b][g] / (cols / groups)
 *              + MAMBA2_GPU_TEST_EPS) for c in group g; cols / groups a multiple of 32), with the
 *              residual epilogue the model pairs it with, added to zeros
 * @param ss    [nb, groups] the norm's sums of squares (any positive values), when @p groups > 0
 * @param W     bf16 bits [rows, cols]
 * @param x     [nb, cols]
 * @param q     out: [rows, Kq] the int8 values (Kq = cols rounded up to 64), or NULL
 * @param d     out: [rows, Kq / 64] fp16 bits of the scales, or NULL
 * @param out   [nb, rows]
 * @param err   the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_gpu_gemv_q8(int rows, int cols, int nb, int dp4a, int groups, const float *ss, const uint16_t *W, const float *x,
                       int8_t *q, uint16_t *d, float *out, Mamba2Error *err);

/** The eps of the grouped norm in mamba2_gpu_gemv_q8(). */
#define MAMBA2_GPU_TEST_EPS 1e-5f

/** @brief 1 when the streamed GEMV (gemv_stream.cu) takes a rows × cols matrix, bf16 (@p q8 0) or
 *         q8 with the dp4a product (@p q8 1), and @p nb inputs without a prologue (what
 *         mamba2_gpu_gemv() with stream = 1 and mamba2_gpu_gemv_q8() with dp4a = 2 run), else 0. */
int mamba2_gpu_gemv_streamed(int rows, int cols, int nb, int q8);

/** @brief 1 when the q8 dp4a GEMV with its second pass staged in shared memory (gemv_q8.cu) takes a
 *         rows × cols matrix and @p nb inputs without a prologue (what mamba2_gpu_gemv_q8() with
 *         dp4a = 3 runs), else 0. */
int mamba2_gpu_gemv_staged(int rows, int cols, int nb);

/**
 * @brief Time the q8 decode GEMV (no prologue/epilogue; @p dp4a as in mamba2_gpu_gemv_q8()) as
 *        mamba2_gpu_time_gemv() times the bf16 one. @return median milliseconds per launch, or < 0.
 */
double mamba2_gpu_time_gemv_q8(int rows, int cols, int nb, int dp4a, int reps, Mamba2Error *err);

/**
 * @brief Time dequantizing a q8 matrix into bf16 (what prefill does before each GEMM with q8
 *        weights). @return median milliseconds per matrix, or < 0.
 */
double mamba2_gpu_time_q8_dequantize(int rows, int cols, int reps, Mamba2Error *err);

/**
 * @brief The q8 GEMM alone (the product of prefill and of decode beyond 4 sequences): W quantized on
 *        the device as for the GEMV, then out[n][r] = Σ_c x[n][c] · bf16(d · q)[r][c] with fp32 sums.
 * @param rows  rows of @p W
 * @param cols  columns of @p W (a multiple of 8)
 * @param T     rows of @p x (tokens)
 * @param mode  0: out [T, rows] fp32; 1: out [T, rows] fp32 added to what @p out holds on entry, K split
 *              across 3 blocks (atomic partial sums); 2: out [T, rows] rounded to bf16 (returned as
 *              fp32); 3: out [rows, T] fp32 (the transposed store prefill's dt rows use)
 * @param W     bf16 bits [rows, cols]
 * @param x     bf16 bits [T, cols]
 * @param q     out: [rows, Kq] the int8 values (Kq = cols rounded up to 64), or NULL
 * @param d     out: [rows, Kq / 64] fp16 bits of the scales, or NULL
 * @param out   as @p mode says (poisoned with NaN on the device first, but in mode 1)
 * @param err   the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_gpu_gemm_q8(int rows, int cols, int T, int mode, const uint16_t *W, const uint16_t *x, int8_t *q, uint16_t *d,
                       float *out, Mamba2Error *err);

/**
 * @brief Which kernel mamba2_gpu_gemm_q8() runs for this product (mode as there), so that the tests
 *        can show that each is covered.
 * @return 1: the few-token kernel (gemm_q8_skinny.cu), 0: the tiled kernel (gemm_q8.cu).
 */
int mamba2_gpu_gemm_q8_skinny_taken(int rows, int cols, int T, int mode);

/**
 * @brief Time out[T][rows] = x · Wᵀ (fp32 out) three ways, back to back over weight copies beyond the
 *        L2: @p ms[0] the q8 GEMM, @p ms[1] cuBLAS on bf16 weights, @p ms[2] dequantizing the q8
 *        matrix into bf16 then cuBLAS (the path the q8 GEMM replaces). Medians of milliseconds per call.
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_gpu_time_gemm_q8(int rows, int cols, int T, int reps, double ms[3], Mamba2Error *err);

/**
 * @brief Time the decode GEMV (no prologue/epilogue) on device-resident random bf16 weights:
 *        launches back to back (programmatic dependent launch, as in a decode step), each on
 *        one of several weight copies that together exceed the L2; @p stream as in
 *        mamba2_gpu_gemv(). @return median milliseconds per launch, or < 0.
 */
double mamba2_gpu_time_gemv(int rows, int cols, int nb, int stream, int reps, Mamba2Error *err);

/**
 * @brief The decode GEMM of 5 to 64 sequences (gemm_decode.cu, tensor cores) on host arrays:
 *        out[b][r] = Σ_c W[r][c]·x'[b][c] (poisoned with NaN before the call), or with @p add
 *        out[b][r] += that (the residual epilogue, whose slices of K add atomically; @p out holds
 *        the values added to). W [rows, cols] bf16 bits, out [nb, rows] fp32, and by @p pro:
 *        0: x' = x, x [nb, cols] bf16 bits; 1 (RMSNorm, not with @p add): x [nb, cols] fp32,
 *        x'[b][c] = x[b][c]·norm[c]·rsqrt(Σ_c x[b][c]²/cols + 1e-5), @p norm [cols];
 *        2 (grouped norm): x [nb, cols] fp32, x'[b][c] = x[b][c]·rsqrt(norm[b][g]/gs + 1e-5), c in
 *        group g of @p groups of gs = cols/groups columns, @p norm [nb, groups] (the sums of squares);
 *        3 (grouped norm after the product, only with @p add): x [nb, cols] bf16 bits, and
 *        out[b][r] += Σ_g rsqrt(norm[b][g]/gs + 1e-5)·Σ_{c in g} W[r][c]·x[b][c];
 *        4 (RMSNorm after the product, not with @p add): x [nb, cols] bf16 bits, @p norm [nb] (the
 *        sums of squares), out[b][r] = rsqrt(norm[b]/cols + 1e-5)·Σ_c W[r][c]·x[b][c].
 * @return 0, 1 when the kernel does not take the shape (nothing run), or −1 with @p err set.
 */
int mamba2_gpu_gemm_decode(int rows, int cols, int nb, int add, int pro, int groups, const uint16_t *W, const void *x,
                           const float *norm, float *out, Mamba2Error *err);

/**
 * @brief The decode GEMM's residual epilogue with the hand-off to the next norm (gemm_decode.cu):
 *        mamba2_gpu_gemm_decode() with add = 1 (@p pro 0 or 3), which then also writes, of the
 *        finished rows, xw[b][r] = bf16 bits of out[b][r]·next_w[r] (@p xw [nb, rows], poisoned
 *        with NaN before) and ss[b] = Σ_r out[b][r]² (@p ss [nb], zeroed before). Run twice from the
 *        same inputs, so that the second run counts its slices on the tickets the first put back.
 * @return 0, 1 when the kernel does not take the shape, or −1 with @p err set (also where the runs
 *         left a ticket other than 0).
 */
int mamba2_gpu_gemm_decode_hand_off(int rows, int cols, int nb, int pro, int groups, const uint16_t *W, const void *x,
                                    const float *norm, const float *next_w, float *out, float *ss, uint16_t *xw,
                                    Mamba2Error *err);

/**
 * @brief Choose the decode GEMM's tensor-core instruction for the calls that follow (tests and
 *        benchmarks run both): @p mode 1 wgmma, 0 mma.sync, 2 wgmma from 17 sequences (the
 *        default), −1 leave it.
 * @return the mode before the call.
 */
int mamba2_gpu_gemm_decode_wgmma(int mode);

/**
 * @brief Time the decode GEMM (the residual epilogue with @p add, else a plain store; prologue @p pro
 *        as in mamba2_gpu_gemm_decode(), 8 groups where cols allows) as mamba2_gpu_time_cublas_gemm()
 *        times cuBLAS.
 * @return median milliseconds per launch, or < 0 (with @p err set; also where the kernel does not
 *         take the shape).
 */
double mamba2_gpu_time_gemm_decode(int rows, int cols, int nb, int add, int pro, int reps, Mamba2Error *err);

/**
 * @brief Time cuBLAS' bf16 GEMM at a decode shape, out[nb][rows] = x[nb][cols]·W[rows][cols]ᵀ with fp32
 *        out, as the cuBLAS decode path calls it (back to back over weight copies beyond the L2).
 *        @p reps <= 0: one call, untimed (for a profiler). @return median milliseconds per call, or < 0.
 */
double mamba2_gpu_time_cublas_gemm(int rows, int cols, int nb, int reps, Mamba2Error *err);

/**
 * @brief Time every algorithm cuBLASLt's heuristic offers (up to 32, best first) for the decode
 *        shape out[nb][rows] (+ @p beta · out) = x[nb][cols]·W[rows][cols]ᵀ, bf16 in, fp32 out,
 *        each as mamba2_gpu_time_cublas_gemm() times cuBLAS.
 * @param rows    rows of W (outputs)
 * @param cols    columns of W (the sum's length)
 * @param nb      sequences (columns of the product)
 * @param beta    0, or 1 to add into the output
 * @param reps    timed calls per algorithm (in batches over the weight copies)
 * @param ms      [32] median milliseconds per call of each algorithm, in the heuristic's order
 * @param n_algos how many algorithms it offered
 * @param waves   [32] the heuristic's wave count of each, times 100
 * @param err     the reason on failure
 * @return 0, or -1 with @p err set
 */
int mamba2_gpu_time_cublaslt_algos(int rows, int cols, int nb, float beta, int reps, double *ms, int *n_algos, int *waves,
                                   Mamba2Error *err);

/**
 * @brief The decode SSD step of one layer alone:
 *        S ← exp(dt·A) S + dt·x Bᵀ;  y = (S C + D x)·silu(z)·y_scale;  ss_y[b][grp] = Σ_{group} ((S C + D x)·silu(z))².
 * @param d          H, P, N, G (d.T unused)
 * @param nb         sequences
 * @param state_bf16 the state kept in bf16 on the device (rounded on the way in, widened on the way out)
 * @param kernel     0: the kernel the backend uses for @p nb sequences; 1: the register kernel; 2: the
 *                   shared-memory kernel; 3: the streamed kernel (a kernel that does not take the
 *                   sizes falls back: streamed to the backend's choice without it, shared memory to
 *                   the register kernel, that to the any-N kernel)
 * @param y_bf16     1: the kernel stores y in bf16 (as for out_proj's decode GEMM with the grouped
 *                   norm after the product), returned here widened to fp32; 0: in fp32
 * @param xbc        [nb, H·P + 2·G·N]: x, B and C of each sequence
 * @param dt         [nb, H], after softplus
 * @param z          [nb, H·P]
 * @param A          [H]
 * @param D          [H]
 * @param y_scale    [H·P], or NULL for none
 * @param state      [nb, H, P, N] in and out
 * @param y          [nb, H·P] out
 * @param ss_y       [nb, G] out
 * @param yq         [nb, H·P] out, or NULL: y rounded to int8 per block of 32 for the q8 GEMV
 *                   (P a multiple of 32; otherwise left untouched) ...
 * @param ya         ... [nb, H·P / 32] out: each block's max|y|
 * @param err        the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_gpu_ssd_step(SSDDims d, int nb, int state_bf16, int kernel, int y_bf16, const float *xbc, const float *dt, const float *z,
                        const float *A, const float *D, const float *y_scale, float *state, float *y, float *ss_y,
                        int8_t *yq, float *ya, Mamba2Error *err);

/** 1 when the streamed SSD-step kernel (mamba2_gpu_ssd_step()'s kernel 3) takes sizes @p d with
 *  that state dtype (and no int8 y), so that a test can tell that it ran. */
int mamba2_gpu_ssd_step_streams(SSDDims d, int state_bf16);

/**
 * @brief Time the decode SSD step of @p nb sequences (random inputs; launches back to back over 8
 *        layers of state; @p kernel as in mamba2_gpu_ssd_step()). @return median milliseconds per
 *        launch (one layer), or < 0.
 */
double mamba2_gpu_time_ssd_step(SSDDims d, int nb, int state_bf16, int kernel, int reps, Mamba2Error *err);

/**
 * @brief Time bringing nb × V logits from the device to host memory (median of 5): to pageable
 *        memory, @p ms[0] one transfer into pinned memory then one host copy, @p ms[1] the same in
 *        pieces of 1 MiB with each host copy beside the later transfers, on one host thread, @p ms[2]
 *        one transfer straight into the pageable array, @p ms[3] the pieces on the backend's default
 *        number of host threads, which @p threads receives (gpu/host_copy.cuh); @p ms[4] one transfer
 *        into an array that is itself pinned (where the caller's logits array is page-locked).
 */
int mamba2_gpu_time_logits_copy(int nb, int V, double ms[5], int *threads, Mamba2Error *err);

/**
 * @brief Copy @p bytes of @p src to the device and back to a pageable array through the backend's
 *        logits copy (gpu/host_copy.cuh) with @p threads host threads, the array first filled with
 *        0xA5 bytes (poison). @p dst receives the bytes that came back.
 * @return 0, or -1 with @p err set (no GPU, or a CUDA error).
 */
int mamba2_gpu_copy_to_pageable(const void *src, size_t bytes, int threads, void *dst, Mamba2Error *err);

/**
 * @brief Measure the GPU's ceilings: device-to-device copy bandwidth (GB/s, bytes read + written)
 *        and cuBLAS bf16 GEMM rate (GFLOP/s) on an 8192³ product of random data.
 */
int mamba2_gpu_roofline(double *copy_gbps, double *gemm_gflops, Mamba2Error *err);

#ifdef __cplusplus
}
#endif

#endif
