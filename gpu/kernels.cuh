/**
 * @file kernels.cuh
 * @brief Launchers of the hand-written kernels (one .cu file per family). All take a stream;
 *        the caller checks cudaGetLastError() after them.
 *
 * Shapes: T tokens of one sequence in prefill, B sequences in decode; d, H, P, N, G, K,
 * d_in = H·P, conv_dim = d_in + 2·G·N, d_in_proj = 2·d_in + 2·G·N + H (notebooks-docs/design.md §2).
 */
#ifndef MAMBA2_GPU_KERNELS_CUH
#define MAMBA2_GPU_KERNELS_CUH

#include "common.cuh"

/* ---- layer_kernels.cu: prefill element-wise steps */

/** h[t] = float(emb[tokens[t]]):  tokens [T], emb [V, d] bf16, h [T, d]. */
void launch_embed(const int32_t *tokens, int T, const bf16 *emb, int d, float *h, cudaStream_t s);

/** out[t] = bf16(h[t] / sqrt(mean(h[t]²) + eps) · w):  h [T, d], w [d], out [T, d]. */
void launch_rmsnorm_bf16(const float *h, const float *w, int T, int d, float eps, bf16 *out, cudaStream_t s);

/** out[i] = bf16(in[i]) for i < n, rounded to nearest even. */
void launch_round_bf16(const float *in, size_t n, bf16 *out, cudaStream_t s);

/**
 * Causal depthwise conv + SiLU over the xBC columns of in_proj's output (prefill):
 * xbc[t][c] = silu(b_c + Σ_k w[c][k] · in_c(t − K + 1 + k)), in_c(j < 0) from the conv state.
 * zxbcdt [T, d_in + conv_dim] bf16 (= [z | xBC]), conv_state [conv_dim, K−1], xbc [T, conv_dim] bf16.
 */
void launch_conv_prefill(const GpuDims &g, const bf16 *zxbcdt, const float *conv_state, const GpuLayer &w, int T,
                         bf16 *xbc, cudaStream_t s);
/** Tokens a thread of the prefill conv (4 channels a thread) takes: 8 or 16 (more threads, each
 *  re-reading the K − 1 inputs before its run), anything else 32 (MAMBA2_GPU_CONV_RUN; same results). */
void conv_prefill_set_run(int tokens);

/** conv_state ← the last K−1 conv inputs (old state followed by this call's T inputs). */
void launch_conv_state_update(const GpuDims &g, const bf16 *zxbcdt, float *conv_state, int T, cudaStream_t s);

/** dt[h][t] = clamp(softplus(dt_raw[h][t] + dt_bias[h]), dt_min, dt_max):  dt_raw and dt [H, T] fp32. */
void launch_dt_prefill(const GpuDims &g, const float *dt_raw, const float *dt_bias, int T, float *dt, cudaStream_t s);

/**
 * Grouped gated RMSNorm, gate first: g = y · silu(z); out = g / sqrt(mean_group(g²) + eps) · w,
 * each group of d_in/G channels normalised separately.  y [T, d_in] fp32, z = the first d_in columns of
 * the prefill's [z | xBC] [T, d_in + conv_dim], out bf16.
 * With @p gate = 0, y is taken as already gated (z unused).
 */
void launch_gated_norm_bf16(const GpuDims &g, const float *y, const bf16 *z_bf16, const float *z_f32, int gate,
                            const float *w, int T, bf16 *out, cudaStream_t s);
/** 1: the gated norm with bf16 z and groups of 1,024 (the 7B's) as one warp a group, its values in
 *  registers (MAMBA2_GPU_NORM_WARPS=1); 0, the default: one block of 256 threads a group. */
void gated_norm_set_warps(int on);

/* ---- ssd_chunked.cu: the prefill SSD in the chunked form (tensor cores for the contractions) */

/** Work arrays of one chunked-SSD call. */
struct SSDWork {
    float *cum;         /**< [H, T]  a = dt·A summed from the start of each chunk */
    float *wts;         /**< [H, T]  exp(cum at the chunk's end − cum_t)·dt_t, the chunk-state weights */
    float *chunk_decay; /**< [H, chunks]  exp(cum at the chunk's end) */
    bf16 *states; /**< [chunks, H, P, N]  the state entering each chunk (bf16: the chunk scan's operand) */
};

/** Bytes of SSDWork for T tokens. */
size_t ssd_work_bytes(const GpuDims &g, int T);
/** Carve an SSDWork out of @p base (ssd_work_bytes(g, T) bytes, 256-byte aligned). */
SSDWork ssd_work_carve(const GpuDims &g, int T, void *base);

/**
 * y = SSD(x, dt, A, B, C) + D·x from the initial state @p ssm_state [H, P, N], which is
 * replaced by the final state. x = xbc[:, :d_in] as [T, H, P]; B, C = the next two G·N
 * column blocks of xbc (row stride conv_dim); dt [H, T] (after softplus); y [T, d_in] fp32.
 * @p ssm_bf16 selects a bf16 state array instead of fp32. @p marks, when given, receives four events
 * recorded around the three kernels (for the benchmark's breakdown).
 */
void launch_ssd_chunked(const GpuDims &g, const bf16 *xbc, const float *dt, const float *A, const float *D, int T,
                        void *ssm_state, int ssm_bf16, SSDWork w, float *y, cudaStream_t s, cudaEvent_t *marks = NULL);

/** launch_ssd_chunked() in its two parts, which may run on different streams: the cumsum needs dt
 *  only (w.cum, w.wts, w.chunk_decay out), the rest x, B, C and the cumsum's results. */
void launch_ssd_cumsum(const GpuDims &g, const float *dt, const float *A, int T, SSDWork w, cudaStream_t s);
/** The second part of launch_ssd_chunked(): the state walk and the chunk scan, after launch_ssd_cumsum();
 *  @p marks, when given, receives an event after each of the two. */
void launch_ssd_chunk_kernels(const GpuDims &g, const bf16 *xbc, const float *dt, const float *D, int T, void *ssm_state,
                              int ssm_bf16, SSDWork w, float *y, cudaStream_t s, cudaEvent_t *marks = NULL);

/** 1 when the chunked-SSD kernels handle these sizes (chunk ≤ 256, N ≤ 256, one chunk's x, B and state in shared memory). */
int ssd_chunked_supported(const GpuDims &g);
/** The state walk's block width in state columns: 64 gives two blocks of 8 warps a multiprocessor
 *  instead of one of 16, the same bits (MAMBA2_GPU_WALK_COLS, the tests); anything else gives 128. */
void ssd_walk_set_cols(int n);
/** The group chunk scan's slicing of a group's heads: until there are @p waves (1 or 2, anything else
 *  2) blocks a multiprocessor; fewer blocks recompute C·Bᵀ fewer times. The same bits either way
 *  (MAMBA2_GPU_SCAN_WAVES, the tests). */
void ssd_scan_set_waves(int waves);

/* ---- q8_matrix.cu: int8 weights with an fp16 scale per block of 64 along K (the CPU's q8) */

/**
 * Quantize rows [0, n) of @p src [n, K] (bf16, or f32 when @p src_f32) into rows [r0, r0 + n) of the
 * q8 matrix whose values @p q [rows, Kq] and scales @p d [rows, Kq / 64] are given (Kq: K rounded
 * up to Q8_SCALE_BLOCK = 64): d = fp16(max|w| / 127) per block of 64, q = round(w / d), bit for bit
 * as cpu/qmatrix.c quantizes; columns K .. Kq get zeros.
 */
void launch_q8_quantize(const void *src, int src_f32, int n, int r0, int8_t *q, uint16_t *d, int K, int Kq, cudaStream_t s);

/** out [rows, K] bf16 = d · q of every weight of @p m (the cuBLAS paths' operand). */
void launch_q8_dequantize(const GpuQ8 &m, bf16 *out, cudaStream_t s);

/**
 * @brief launch_q8_dequantize() in blocks that each take one pass (4,096 weights where K is a
 *        multiple of 16) instead of a grid the size of the GPU looping over the matrix: for a
 *        stream beside other work, whose blocks should free their multiprocessor soon.
 */
void launch_q8_dequantize_short(const GpuQ8 &m, bf16 *out, cudaStream_t s);

/* ---- gemm_q8.cu: the GEMM over q8 weights (prefill; decode of more than 4 sequences) */

/** Where and how launch_gemm_q8() writes out[n][r] (token n, weight row r). */
struct GemmQ8Out {
    void *out;  /**< fp32, or bf16 when bf16 is set */
    int ldn;    /**< elements between tokens */
    int ldr;    /**< elements between weight rows (1: [T, rows]; T with ldn = 1: the transpose [rows, T]) */
    int bf16;   /**< 1: bf16 elements (stored, never added to) */
    int add;    /**< fp32 only: out += the product (the residual stream) instead of out = */
    int atomic; /**< set by the launcher: K split across blocks, partial sums added atomically */
};

/** 1 when @p o holds the whole product contiguously, [T, rows] or its transpose [rows, T], so that a
 *  kernel may zero it in one memset before adding partial sums into it. */
inline bool gemm_q8_out_contiguous(const GpuQ8 &W, int T, const GemmQ8Out &o) {
    return (o.ldr == 1 && o.ldn == W.rows) || (o.ldn == 1 && o.ldr == T);
}

/** Streaming multiprocessors of device 0 (asked once; 132, an H100/H200's, if the query fails). */
int gpu_sm_count();

/** 1 when launch_gemm_q8() takes these operands: K and the activations' row stride multiples of 8
 *  (16-byte rows of bf16); otherwise the caller dequantizes and calls cuBLAS. */
bool gemm_q8_supported(const GpuQ8 &W, int ldx);

/**
 * out[n][r] (+)= Σ_k X[n][k] · bf16(d[r][k / 64] · q[r][k]) for n < T, r < W.rows, with fp32 sums:
 * X [T, W.K] bf16 with row stride @p ldx, W q8 [rows, K]. @p splits: slices of K across blocks
 * (0: the launcher's choice from the shape; an fp32 output that is neither added to nor contiguous,
 * and any bf16 output, take 1). May enqueue a memset of the output before the kernel.
 */
void launch_gemm_q8(const GpuQ8 &W, const bf16 *X, int ldx, int T, const GemmQ8Out &o, int splits, cudaStream_t s);

/* ---- gemm_q8_skinny.cu: the q8 GEMM for few tokens, which launch_gemm_q8() hands them to */

/** Most tokens the few-token q8 GEMM takes. */
#define GEMM_Q8_SKINNY_MAX_T 64

/** 1 when launch_gemm_q8_skinny() takes this product: fp32 output stored contiguously ([T, rows] or
 *  [rows, T]) or added to, 1 ≤ T ≤ GEMM_Q8_SKINNY_MAX_T, K a multiple of 128, and the environment
 *  does not say MAMBA2_GPU_Q8_SKINNY=0. */
bool gemm_q8_skinny_fits(const GpuQ8 &W, int ldx, int T, const GemmQ8Out &o);

/**
 * launch_gemm_q8()'s product for the operands gemm_q8_skinny_fits() accepts: the weights streamed
 * into registers once, the activations of a slice of K in shared memory, fp32 partial sums added
 * atomically (the output zeroed first unless @p o adds to it). @p splits: slices of K (0: as few as
 * the shared memory allows; more are taken as asked, at most one per 128 columns).
 */
void launch_gemm_q8_skinny(const GpuQ8 &W, const bf16 *X, int ldx, int T, const GemmQ8Out &o, int splits, cudaStream_t s);

/** Rows [first, first + n) of @p W as a q8 matrix of their own (no copy). */
GpuQ8 q8_rows(const GpuQ8 &W, int first, int n);

/* ---- decode.cu: one token for each of B sequences */

/** How the decode GEMV forms its input vector (the sums of squares come in GemvArgs::ss_in). */
enum GemvPrologue {
    PRO_NONE = 0,    /**< x as given */
    PRO_RMSNORM = 1, /**< x' = x·rsqrt(Σh²/cols + eps) for x = h·w (the norm weight already applied) */
    PRO_GATEDNORM = 2, /**< x' = x·rsqrt(Σ_group y²/gs + eps) for x = y·w, y the already gated output */
    PRO_GROUPSCALE = 3, /**< the grouped norm after the product (decode GEMM only): x = y·w as given, each
                            group's share of the sum times rsqrt(Σ_group y²/gs + eps) */
    PRO_ROWSCALE = 4   /**< RMSNorm after the product (decode GEMM only): x = bf16(h·w) as the out_proj
                            before handed it over (GemvArgs::xw_next), the sum times rsqrt(Σh²/cols + eps) */
};
/** What the decode GEMV does with each output row. */
enum GemvEpilogue {
    EPI_STORE = 0,    /**< out[b][r] = dot */
    EPI_RESIDUAL = 1, /**< out[b][r] += dot (the residual stream) */
    EPI_INPROJ = 2    /**< in_proj rows: z stored, xBC through the conv step, dt through softplus */
};

/** The weights the decode GEMV reads, and how it multiplies them (gemv.cuh). */
enum GemvWeights {
    GEMV_BF16 = 0,    /**< bf16 W, fp32 products */
    GEMV_Q8_FLOAT = 1, /**< q8 Wq: each int8 widened to fp32 in registers, times the fp32 input, the scale once per 16 weights */
    GEMV_Q8_DP4A = 2  /**< q8 Wq: the input rounded to int8 per block of 32 (Q8_XBLOCK), integer dot products (dp4a) */
};

/** Everything the decode GEMV may need. */
struct GemvArgs {
    GemvWeights wf;        /**< which of W and Wq, and the product */
    int stream;            /**< through gemv_stream.cu's kernel where it takes the shape (gemv_stream_takes()) */
    int stage;             /**< q8 dp4a: stage the second pass in shared memory where that takes the shape (gemv_q8_stages()) */
    const bf16 *W;         /**< [rows, cols] (GEMV_BF16) */
    GpuQ8 Wq;              /**< [rows, cols] quantized (GEMV_Q8_*) */
    int rows, cols, nb;    /**< nb sequences (1..4) */
    const float *x;        /**< [nb, cols] input before the prologue, already multiplied by the norm weight */
    const int8_t *xq;      /**< GEMV_Q8_DP4A: x already rounded to int8 per block of 32, [nb, cols], or NULL (the kernel rounds x) ... */
    const float *xa;       /**< ... and each block's max|x|, [nb, cols / 32] */
    const float *ss_in;    /**< prologue sums of squares: [nb] (RMSNORM) or [nb, groups] (GATEDNORM, GROUPSCALE) */
    int groups;            /**< PRO_GATEDNORM, PRO_GROUPSCALE: groups of cols/groups channels */
    float eps;
    float *ss_out;         /**< EPI_RESIDUAL: [nb] Σ h² of the updated rows is added here (may be NULL) */
    const float *next_w;   /**< EPI_RESIDUAL: the next norm's weight [rows] ... */
    float *xw_out;         /**< ... and xw_out [nb, rows] = h·next_w is written for the next GEMV (may be NULL) */
    const float *in_w;     /**< the decode GEMM's PRO_RMSNORM (gemm_decode.cu): the norm's weight [cols] */
    bf16 *xw_next;         /**< the decode GEMM's EPI_RESIDUAL (hand-off): bf16(h·next_w) [nb, rows] for the next
                                product's PRO_ROWSCALE, written once h is final, with Σ h² added to ss_out ... */
    unsigned *tickets;     /**< ... counting the K slices done per block range: [GEMM_DECODE_TICKETS] zeros, left as zeros */
    float *out;            /**< [nb, rows] (EPI_STORE, EPI_RESIDUAL, EPI_INPROJ's z and raw values) */
    /* EPI_INPROJ */
    GpuDims dims;
    GpuLayer layer;
    float *const *conv_states; /**< [nb] device pointers to [L, conv_dim, K−1] */
    int l;                 /**< layer index */
    float *xbc;            /**< [nb, conv_dim] conv output */
    float *dt;             /**< [nb, H] */
};
/** @var GemvArgs::rows
 *      rows of W (outputs per sequence)
 * @var GemvArgs::cols
 *      columns of W (inputs per sequence)
 * @var GemvArgs::eps
 *      epsilon of the prologue norm
 * @var GemvArgs::dims
 *      EPI_INPROJ: the model sizes
 * @var GemvArgs::layer
 *      EPI_INPROJ: the layer's weights (conv, dt_bias) */

/** Launch the decode GEMV with the given prologue and epilogue (a.wf says which weights: decode.cu
 *  runs bf16, and hands q8 to launch_gemv_q8()). */
void launch_gemv(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, cudaStream_t s);

/** The decode GEMV over q8 weights (gemv_q8.cu); a.wf is GEMV_Q8_FLOAT or GEMV_Q8_DP4A. */
void launch_gemv_q8(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, cudaStream_t s);

/** Whether the q8 GEMV stages the second pass of its rows in shared memory before the wait
 *  (gemv_kernel's STG; gemv_q8.cu): asked for (a.stage), the dp4a product, one sequence, rows of
 *  whole blocks of 32 longer than one pass of 256 chunks (out_proj) and of an even number of scales
 *  (so that each row's scales start on a 4-byte boundary, as the 4-byte copies of them need), and
 *  with the grouped norm's prologue the input rounded already (a.xq). */
bool gemv_q8_stages(GemvPrologue pro, const GemvArgs &a);

/** Whether the streamed GEMV (gemv_stream.cu) takes @p a: asked for (a.stream), bf16 weights or the
 *  q8 dp4a product, rows of whole 16-byte chunks (q8: of 256-column pieces, so that every row's
 *  scales are 16-byte runs too, as the bulk copy engine needs), norm groups of whole chunks (q8:
 *  blocks), 16-byte aligned arrays, and at least two stages of 8 rows in shared memory. */
bool gemv_stream_takes(GemvPrologue pro, const GemvArgs &a);

/** Raise the streamed GEMV's shared-memory limits (once; call before capturing a graph). */
void gemv_stream_prepare();

/** The streamed GEMV (gemv_stream.cu), for what gemv_stream_takes() accepts. */
void launch_gemv_stream(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, cudaStream_t s);

/** Whether a decode GEMM prologue converts fp32 inputs to bf16 (the norms in it), rather than reading
 *  bf16 as given. */
#define GD_PRO_CONVERTS(PRO) ((PRO) == PRO_RMSNORM || (PRO) == PRO_GATEDNORM)

/** Ticket counters a decode GEMM with the hand-off needs (GemvArgs::tickets): one per block range,
 *  at most one block per multiprocessor. */
#define GEMM_DECODE_TICKETS 1024

/** Whether the decode GEMM of gemm_decode.cu takes @p a with the inputs @p X (row stride @p ldx; bf16
 *  for PRO_NONE, PRO_GROUPSCALE and PRO_ROWSCALE, fp32 for the prologues): EPI_STORE or EPI_RESIDUAL
 *  (without xw_out; with ss_out only as the hand-off, with xw_next, next_w and tickets), bf16
 *  weights, 5 to 64 sequences, cols a multiple of 16, 16-byte aligned bases and rows (what its tensor
 *  maps need); PRO_RMSNORM and PRO_ROWSCALE only stored and with a.in_w or a.ss_in, PRO_GATEDNORM and
 *  PRO_GROUPSCALE with a.ss_in and groups of a multiple of 64 columns (PRO_GROUPSCALE: added to the residual, at
 *  most 64 groups); not when the environment says MAMBA2_GPU_GEMM_DECODE=0. */
bool gemm_decode_takes(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, const void *X, int ldx);

/** out[b][r] = Σ_k W[r][k] X'[b][k] for a.nb sequences on tensor cores (gemm_decode.cu), stored
 *  (EPI_STORE) or added to a.out (EPI_RESIDUAL), X' = X (bf16, PRO_NONE) or X with its norm
 *  (fp32 X; PRO_RMSNORM: X is the residual stream and a.in_w the norm's weight, the kernel sums
 *  Σ X² itself; PRO_GATEDNORM: as the GEMV's, from a.ss_in), or (bf16 X, PRO_GROUPSCALE) each group's
 *  share of the sum times that group's scale from a.ss_in, or (bf16 X, PRO_ROWSCALE) the sum times
 *  rsqrt(a.ss_in[b]/cols + eps); with a.xw_next (EPI_RESIDUAL), the hand-off to the next norm:
 *  xw_next = bf16(h·next_w) of the finished rows and Σ h² added to a.ss_out. a.x is not read. Returns −1, launching
 *  nothing, if the driver would not describe the operands as tensor maps, else 0. */
int launch_gemm_decode(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, const void *X, int ldx, cudaStream_t s);

/** Whether the decode GEMM may run at all: not when the environment says MAMBA2_GPU_GEMM_DECODE=0. */
bool gemm_decode_enabled();

/** Raise the decode GEMM's shared-memory limits (once; call before capturing a graph). */
void gemm_decode_prepare();

/** Which tensor-core instruction the decode GEMM's launches from now on use: @p mode 0 mma.sync, 1
 *  wgmma (Hopper's warpgroup instruction), 2 wgmma from 17 sequences and mma.sync below (the default;
 *  MAMBA2_GPU_GEMM_DECODE_WGMMA=0 or 1 sets the others for the process), −1 unchanged.
 *  @return the mode before the call. */
int gemm_decode_use_wgmma(int mode);

/** ss[b] = Σ_i h[b][i]² and xw[b][i] = h[b][i]·w[i] for nb rows of width d (layer 0's input norm in decode). */
void launch_sum_squares(const float *h, int nb, int d, const float *w, float *ss, float *xw, cudaStream_t s);

/** An empty kernel of @p blocks × @p threads launched as a dependent launch (for timing a kernel
 *  boundary alone). */
void launch_pdl_noop(int blocks, int threads, cudaStream_t s);

/** Batched path after the in_proj GEMM: conv step + SiLU and dt for nb sequences from zxbcdt [nb, d_in_proj] fp32;
 *  with @p seqs (and conv width 4) each thread takes a row of several sequences, else one. */
void launch_conv_dt_step(const GpuDims &g, const GpuLayer &w, const float *zxbcdt, float *const *conv_states, int l,
                         int nb, float *xbc, float *dt, bool seqs, cudaStream_t s);
/** Whether the batched conv + dt step takes several sequences a thread: yes unless
 *  MAMBA2_GPU_CONV_SEQS=0 (for comparisons), read when the backend is made. */
bool conv_dt_step_seqs_default();

/** Where the SSD step stores y [nb, d_in]: in fp32 at @p f, or, where @p h is not NULL, in bf16 at
 *  @p h instead (the input of out_proj's decode GEMM with the grouped norm after the product,
 *  PRO_GROUPSCALE). */
struct StepOut {
    float *f; /**< [nb, d_in] fp32 */
    bf16 *h;  /**< [nb, d_in] bf16, or NULL */
};

/**
 * SSD recurrence for one token of nb sequences, with the gate:
 * S = exp(dt·A) S + dt·x Bᵀ;  y = (S C + D x) · silu(z).   y [nb, d_in] (StepOut).
 * @p ssm_states [nb] device pointers to [L, H, P, N] (fp32, or bf16 when @p ssm_bf16).
 * @p ss_y, when not NULL, [nb, G]: Σ y² of each group is added there (for the grouped norm), and y is
 * stored multiplied by @p y_scale [d_in] when that is not NULL (the norm weight, applied ahead).
 * @p yq, when not NULL (only where ssd_step_rounds_y() says so), [nb, d_in]: y as stored, also rounded
 * to int8 per block of 32 for the q8 dp4a GEMV (GemvArgs::xq), with each block's max|y| in @p ya
 * [nb, d_in / 32].
 */
void launch_ssd_step(const GpuDims &g, const GpuLayer &w, const float *xbc, const float *dt, const float *zxbcdt,
                     void *const *ssm_states, int ssm_bf16, int l, int nb, StepOut y, float *ss_y, const float *y_scale,
                     int8_t *yq, float *ya, cudaStream_t s);

/** Whether the SSD step can round its y to int8 for the q8 GEMV (launch_ssd_step()'s @p yq): the
 *  blocks of 32 must lie inside one head (P a multiple of 32). */
bool ssd_step_rounds_y(const GpuDims &g);

/** Which SSD-step kernel runs (N = 128; other N always take the any-N kernel). */
enum StepKernel {
    STEP_AUTO = 0,      /**< the backend's choice for nb sequences */
    STEP_REGISTERS = 1, /**< one block per (head, sequence), the state in registers */
    STEP_SHARED = 2,    /**< one block per (head, sequence), the state through shared memory */
    STEP_STREAMED = 3   /**< a persistent grid, states and inputs streamed by the bulk copy engine */
};

/** Whether the streamed SSD-step kernel (STEP_STREAMED) takes these sizes (given 16-byte aligned
 *  inputs and no int8 y); where it does not, asking for it runs the backend's choice without it. */
bool ssd_step_streams(const GpuDims &g, int state_bf16);

/** launch_ssd_step() with the kernel chosen (for the tests and the benchmark); a kernel that does not
 *  take the sizes falls back to the register (then the any-N) kernel. */
void launch_ssd_step_kind(const GpuDims &g, const GpuLayer &w, const float *xbc, const float *dt, const float *zxbcdt,
                          void *const *ssm_states, int ssm_bf16, int l, int nb, StepOut y, float *ss_y, const float *y_scale,
                          int8_t *yq, float *ya, int kind, cudaStream_t s);

#endif
