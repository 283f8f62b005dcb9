/**
 * @file backend_cpu.c
 * @brief The CPU backend: prefill as GEMMs + chunked SSD, decode as bandwidth-bound GEMVs.
 *
 * Per layer (notebooks-docs/design.md §2), for T rows (T tokens of one sequence in prefill, or one token of
 * each of B sequences in decode):
 *
 *   u = RMSNorm(h)·w            layer_ops.c
 *   [z | xBC | dt] = u · W_inᵀ  gemm_bf16.c (the GEMM tier of gemm_tier.c; ≤ 16 rows, 8 with AMX: gemv_bf16.c), or
 *                               qmatrix.c with weights quantized at load (--weights q8|q4)
 *   xBC' = silu(conv(xBC))      layer_ops.c, continuing from the conv state
 *   dt = clamp(softplus(dt + dt_bias))
 *   y = SSD(x, dt, A, B, C) + D·x   prefill: ssd_chunked_blas.c; decode: one recurrence step per head
 *   y = grouped RMSNorm(y · silu(z))
 *   h += y · W_outᵀ
 *
 * The inputs (T, B, token ids, state shapes) were checked by the dispatch layer, src/backend.c.
 * The states are the host Mamba2State arrays, read and written in place in the shared layout.
 * Every buffer is allocated (or grown) before the first state byte changes, so a failure leaves
 * the state as it was, and the decode loop allocates nothing once the buffers have grown.
 */
#include "backend_cpu.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bf16_decode_choice.h"
#include "blas_core.h"
#include "gemm_bf16.h"
#include "gemv_bf16.h"
#include "layer_ops.h"
#include "packed_bf16.h"
#include "qmatrix.h"
#include "resources.h"
#include "roofline.h"
#include "ssd_chunked_blas.h"

/** Prefill runs in slices of at most this many tokens (rounded up to a multiple of the chunk length). */
#define PREFILL_SLICE 1024

/**
 * The longest chunk the CPU's chunked SSD uses. The chunked form gives the same result for any
 * chunk length (ref/ssd.c, tests/test_ssd.c); the model's chunk_size (256 for the 7B) suits GPU
 * tensor cores, but here the chunk products are small sgemms whose share of prefill grows with
 * the chunk: it fell at every halving from 256 down to 32 (measurements: results/cpu.md).
 */
#define CPU_SSD_CHUNK 32

/** The chunk length of the CPU's chunked SSD: the model's, at most CPU_SSD_CHUNK. */
static int ssd_chunk(const Mamba2Config *c) {
    int Q = c->chunk_size > 0 ? c->chunk_size : 1;
    return Q < CPU_SSD_CHUNK ? Q : CPU_SSD_CHUNK;
}

/** Ways of bf16 decode the load trial times at most: 2 products × (packed, in place with the next
 *  rows prefetched, in place without) (decode_ways()). */
#define DECODE_WAYS 6

/** One of the large matrices (in_proj, out_proj, lm_head) as the CPU multiplies with it. */
typedef struct {
    const Mamba2Tensor *t; /**< the stored weights (their shape and dtype; their bytes, in the mmap, only when no copy below is made) */
    CpuQMatrix q;          /**< the quantized copy (data NULL when the weights are used as stored) */
    CpuPackedBf16 p;       /**< stored bf16 weights: the packed copy decode streams (data NULL otherwise) */
} CpuMatrix;

/** The weights of one layer: the small ones widened to fp32 once, the large ones as CpuMatrix. */
typedef struct {
    CpuMatrix in_proj;  /**< [d_in_proj, d] */
    CpuMatrix out_proj; /**< [d, d_in] */
    float *norm;       /**< [d] */
    float *conv_wt;    /**< [K, conv_dim]: conv1d.weight transposed, tap-major */
    float *conv_b;     /**< [conv_dim], or NULL */
    float *dt_bias;    /**< [H] */
    float *A;          /**< [H] = −exp(A_log) */
    float *D;          /**< [H] */
    float *gated_norm; /**< [d_in] */
} CpuLayer;

/** The CPU backend's private state. */
typedef struct {
    Mamba2Backend base; /**< first, so a Mamba2Backend * is a CpuBackend * */
    int nt;             /**< OpenMP threads */
    CpuIsa isa;         /**< SIMD variant of the quantized products (cpu_isa_active()) */
    CpuIsa bf16_isa;    /**< variant of the bf16 decode products of one sequence: @ref isa, or the lower tier's
                             (bf16 widened to fp32, FMA) where the load trial timed that faster (copy_weights()) */
    CpuIsa bf16_isa_batch; /**< the same for several sequences, timed at CPU_DECODE_TRIAL_BATCH */
    Mamba2Precision precision; /**< activation precision of the GEMMs */
    CpuMatrix lm_head;  /**< [V, d] */
    CpuLayer *layers;   /**< [L] */
    float *norm_f;      /**< [d] */
    int cap;            /**< rows the work buffers below hold */
    float *h;           /**< [cap, d]         residual stream */
    float *u;           /**< [cap, max(d, d_in)] normalised input of a projection */
    float *zx;          /**< [cap, d_in_proj] in_proj output [z | xBC | dt] */
    float *xbc;         /**< [cap, conv_dim]  conv output [x | B | C] */
    float *dt;          /**< [cap, H] */
    float *y;           /**< [cap, d_in]      SSD output, then gated and normalised */
    float *panels;      /**< fp32 weight panels of cpu_linear(), per thread */
    void *qscratch;     /**< quantized activations of cpu_qlinear() for cap rows (quantized weights only) */
    size_t qscratch_bytes; /**< size of @ref qscratch */
    CpuSsdScratch ssd;  /**< chunked-SSD work space */
    CpuBf16Decode ways[DECODE_WAYS]; /**< the ways of bf16 decode timed at load (copy_weights()), the one kept first */
    int n_ways;            /**< how many were timed (0: none) */
    CpuBf16Decode batch_ways[2]; /**< the products timed for several sequences, the one kept first */
    int n_batch_ways;      /**< how many (0: not timed) */
    int64_t l2_kept;       /**< the L2 prefetch distance the load trial kept (choose_decode_reads()) */
    double l2_other;       /**< decode's time with the other distance over the kept one's (0: not timed) */
    int pf_kept;           /**< the in-place bf16 product's prefetch the load trial kept (a CpuPrefetch) */
    double pf_other;       /**< decode's time with the other prefetch over the kept one's (0: not timed) */
    int q8_lines_kept;     /**< q8 decode's read order the load trial kept (1: line by line across the rows) */
    double q8_lines_other; /**< decode's time with the other order (at its faster L2 setting, where the two are
                                timed together) over the kept one's (0: not timed) */
    double qprefill_other; /**< quantized prefill's time by the other path (integer or widened) over the kept
                                one's (0: not timed; choose_prefill_path()) */
    int timing;            /**< 1 while decode steps are timed phase by phase (cpu_step_phases()) */
    double phase_s[MAMBA2_STEP_PHASES]; /**< [STEP_PHASES] seconds summed per phase while @ref timing */
    long phase_steps;      /**< steps timed */
} CpuBackend;

static float *f32_copy(const Mamba2Tensor *t) {
    if (!t->data) return NULL;
    int64_t n = mamba2_tensor_numel(t);
    float *p = malloc((size_t)n * sizeof *p);
    if (p) cpu_tensor_to_f32(t, 0, n, p);
    return p;
}

static void cpu_destroy(Mamba2Backend *b) {
    CpuBackend *cb = (CpuBackend *)b;
    if (!cb) return;
    for (int l = 0; cb->layers && l < b->model->cfg.n_layer; l++) {
        CpuLayer *L = &cb->layers[l];
        cpu_qmatrix_free(&L->in_proj.q), cpu_qmatrix_free(&L->out_proj.q);
        cpu_packed_bf16_free(&L->in_proj.p), cpu_packed_bf16_free(&L->out_proj.p);
        free(L->norm), free(L->conv_wt), free(L->conv_b), free(L->dt_bias), free(L->A), free(L->D), free(L->gated_norm);
    }
    free(cb->layers);
    cpu_qmatrix_free(&cb->lm_head.q);
    cpu_packed_bf16_free(&cb->lm_head.p);
    free(cb->qscratch);
    free(cb->norm_f);
    free(cb->h), free(cb->u), free(cb->zx), free(cb->xbc), free(cb->dt), free(cb->y), free(cb->panels);
    cpu_ssd_free(&cb->ssd);
    free(cb);
}

/* Grow the work buffers to @p rows rows, and the SSD work space to a prefill of @p ssd_tokens
 * tokens (0: decode, no SSD work space); never shrinks. */
static int reserve(CpuBackend *cb, int rows, int ssd_tokens, Mamba2Error *err) {
    const Mamba2Config *c = &cb->base.model->cfg;
    if (rows > cb->cap) {
        size_t wide = (size_t)(c->d_model > c->d_inner ? c->d_model : c->d_inner);
        struct {
            float **p;
            size_t per_row;
        } bufs[] = {{&cb->h, (size_t)c->d_model}, {&cb->u, wide},     {&cb->zx, (size_t)c->d_in_proj},
                    {&cb->xbc, (size_t)c->conv_dim}, {&cb->dt, (size_t)c->n_heads}, {&cb->y, (size_t)c->d_inner}};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
            float *p = realloc(*bufs[i].p, (size_t)rows * bufs[i].per_row * sizeof *p);
            if (!p) return mamba2_fail(err, "out of memory for the work buffers of %d rows", rows);
            *bufs[i].p = p;
        }
        cb->cap = rows;
    }
    if (cb->lm_head.q.data) { /* quantized weights: room for the quantized activations of the widest input */
        size_t need = cpu_qlinear_scratch_bytes(c->d_model > c->d_inner ? c->d_model : c->d_inner, cb->cap);
        if (need > cb->qscratch_bytes) {
            void *p = NULL;
            if (posix_memalign(&p, 64, need)) return mamba2_fail(err, "out of memory for the quantized activations");
            free(cb->qscratch);
            cb->qscratch = p, cb->qscratch_bytes = need;
        }
    }
    SSDDims d = {ssd_tokens, c->n_heads, c->head_dim, c->n_groups, c->d_state};
    if (ssd_tokens > 0 && cpu_ssd_reserve(&cb->ssd, d, ssd_chunk(c), cb->nt))
        return mamba2_fail(err, "out of memory for the SSD work space of %d tokens", ssd_tokens);
    return 0;
}

/* Y (+)= X · Wᵀ for T rows, with the weights quantized, packed or as stored; decode's few rows by the
 * product the load trial chose (cb->bf16_isa). */
static void project(const CpuBackend *cb, const CpuMatrix *W, const float *X, int64_t ldx, int T, float *Y,
                    int64_t ldy, int accumulate) {
    if (W->q.data) cpu_qlinear(cb->isa, &W->q, X, ldx, T, Y, ldy, accumulate, cb->qscratch, cb->nt, cb->precision);
    else if (cpu_linear_uses_gemv(W->t, T)) {
        const CpuIsa isa = W->t->dtype != MAMBA2_BF16 ? cb->isa : T == 1 ? cb->bf16_isa : cb->bf16_isa_batch;
        if (W->p.data) cpu_packed_bf16_gemv(isa, &W->p, X, ldx, T, Y, ldy, accumulate, cb->nt, cb->precision);
        else cpu_gemv(isa, W->t, X, ldx, T, Y, ldy, accumulate, cb->nt, cb->precision);
    } else if (W->p.data)
        cpu_packed_bf16_linear(W->t, &W->p, X, ldx, T, Y, ldy, accumulate, cb->panels, cb->nt, cb->precision);
    else cpu_linear(W->t, X, ldx, T, Y, ldy, accumulate, cb->panels, cb->nt, cb->precision);
}

/* h[t] = embedding row of tokens[t], t < n */
static void embed(CpuBackend *cb, const int32_t *tokens, int n) {
    const Mamba2Model *m = cb->base.model;
    int d = m->cfg.d_model;
#pragma omp parallel for num_threads(cb->nt) schedule(static) if (n > 8)
    for (int t = 0; t < n; t++) cpu_tensor_to_f32(&m->w.embeddings, (int64_t)tokens[t] * d, d, cb->h + (size_t)t * d);
}

/* u[t] = RMSNorm(h[t]) · w for n rows */
static void norm_rows(CpuBackend *cb, const float *w, int n) {
    const Mamba2Config *c = &cb->base.model->cfg;
    int d = c->d_model;
#pragma omp parallel for num_threads(cb->nt) schedule(static) if (n > 8)
    for (int t = 0; t < n; t++) cpu_rmsnorm(cb->h + (size_t)t * d, w, d, c->eps, cb->u + (size_t)t * d);
}

/** Channels per conv work item (the conv runs in parallel over blocks of channels). */
#define CONV_BLOCK 256

/* ---------------------------------------------------------------- prefill */

/* One layer over n tokens of one sequence (state st): h ← h + out_proj(mixer(RMSNorm(h))). */
static void layer_prefill(CpuBackend *cb, int l, Mamba2State *st, int n) {
    const Mamba2Model *m = cb->base.model;
    const Mamba2Config *c = &m->cfg;
    const CpuLayer *L = &cb->layers[l];
    int d = c->d_model, d_in = c->d_inner, GN = c->n_groups * c->d_state, K = c->d_conv;
    int64_t ldz = c->d_in_proj;

    norm_rows(cb, L->norm, n);                                                   /* u = RMSNorm(h)·w */
    project(cb, &L->in_proj, cb->u, d, n, cb->zx, ldz, 0);                      /* [z|xBC|dt] = u W_inᵀ */

    /* xBC' = silu(conv(xBC)), channel blocks in parallel; dt = clamp(softplus(dt + dt_bias)) */
    float *conv_state = st->conv + (size_t)l * c->conv_dim * (K - 1);
    int n_blocks = (c->conv_dim + CONV_BLOCK - 1) / CONV_BLOCK;
#pragma omp parallel for num_threads(cb->nt) schedule(static)
    for (int bk = 0; bk < n_blocks; bk++) {
        int c0 = bk * CONV_BLOCK, c1 = c0 + CONV_BLOCK < c->conv_dim ? c0 + CONV_BLOCK : c->conv_dim;
        cpu_conv_silu(cb->zx + d_in, ldz, n, K, L->conv_wt, c->conv_dim, L->conv_b, conv_state, cb->xbc, c->conv_dim,
                      c0, c1);
    }
    cpu_dt(cb->zx + d_in + c->conv_dim, ldz, n, c->n_heads, L->dt_bias, c->dt_min, c->dt_max, cb->dt);

    /* y = SSD(x, dt, A, B, C) + D·x, reading x, B, C in place from xBC' */
    SSDDims dims = {n, c->n_heads, c->head_dim, c->n_groups, c->d_state};
    cpu_ssd_chunked(dims, ssd_chunk(c), cb->xbc, c->conv_dim, cb->dt, L->A, L->D, cb->xbc + d_in,
                    cb->xbc + d_in + GN, c->conv_dim, st->ssm + (size_t)l * c->n_heads * c->head_dim * c->d_state,
                    cb->y, d_in, &cb->ssd, cb->nt);

    /* y = grouped RMSNorm(y · silu(z)) */
#pragma omp parallel for num_threads(cb->nt) schedule(static) if (n > 8)
    for (int t = 0; t < n; t++)
        cpu_gated_norm(cb->y + (size_t)t * d_in, cb->zx + (size_t)t * ldz, d_in, c->n_groups, L->gated_norm, c->eps);

    project(cb, &L->out_proj, cb->y, d_in, n, cb->h, d, 1);                     /* h += y W_outᵀ */
}

/* Prefill in slices of at most @p slice tokens (the SSD carries the state across them). */
static int prefill_impl(CpuBackend *cb, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                        int all_positions, Mamba2LayerHook hook, void *hook_ctx, int slice, Mamba2Error *err) {
    const Mamba2Model *m = cb->base.model;
    const Mamba2Config *c = &m->cfg;
    int d = c->d_model, V = c->vocab_size;
    if (mamba2_state_sync(st, err)) return -1;
    int rows = T < slice ? T : slice;
    if (reserve(cb, rows, rows, err)) return -1;
    for (int t0 = 0; t0 < T; t0 += rows) {
        int n = T - t0 < rows ? T - t0 : rows;
        embed(cb, tokens + t0, n);
        for (int l = 0; l < c->n_layer; l++) {
            if (hook) hook(hook_ctx, l, MAMBA2_LAYER_INPUT, cb->h, n, d);
            layer_prefill(cb, l, st, n);
            if (hook) hook(hook_ctx, l, MAMBA2_LAYER_OUTPUT, cb->h, n, d);
        }
        /* logits = W_head · (RMSNorm(h) · w_norm_f): every row, or only the sequence's last */
        if (logits && all_positions) {
            norm_rows(cb, cb->norm_f, n);
            project(cb, &cb->lm_head, cb->u, d, n, logits + (size_t)t0 * V, V, 0);
        } else if (logits && t0 + n == T) {
            cpu_rmsnorm(cb->h + (size_t)(n - 1) * d, cb->norm_f, d, c->eps, cb->u);
            project(cb, &cb->lm_head, cb->u, d, 1, logits, V, 0);
        }
    }
    st->pos = mamba2_state_pos_after(st->pos, T);
    return 0;
}

static int prefill_slice(const Mamba2Config *c) {
    int Q = ssd_chunk(c);
    return (PREFILL_SLICE + Q - 1) / Q * Q;
}

static int cpu_prefill(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                       int all_positions, Mamba2Error *err) {
    return prefill_impl((CpuBackend *)b, st, tokens, T, logits, all_positions, NULL, NULL, prefill_slice(&b->model->cfg),
                        err);
}

/* One slice of the whole T, so that the hook sees h [T, d] of every layer. */
static int cpu_prefill_observed(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                                Mamba2LayerHook hook, void *hook_ctx, Mamba2Error *err) {
    return prefill_impl((CpuBackend *)b, st, tokens, T, logits, 1, hook, hook_ctx, T, err);
}

/* ---------------------------------------------------------------- decode */

/** The phases of a decode step, in the order cpu_step() runs them (timed by `mamba2 bench --phases`). */
enum { PH_EMBED_NORM, PH_IN_PROJ, PH_CONV, PH_DT, PH_SSD, PH_GATED_NORM, PH_OUT_PROJ, PH_LM_HEAD, STEP_PHASES };
static const char *const phase_names[STEP_PHASES] = {"embed + norm", "in_proj", "conv", "dt",
                                                     "SSD step", "gated norm", "out_proj", "norm_f + lm_head"};
typedef char step_phases_fit_in_mamba2_step_phases[STEP_PHASES <= MAMBA2_STEP_PHASES ? 1 : -1];

/* While timing: phase_s[phase] += now − *t, *t = now. Called by one thread where all have met, so
 * each phase's time includes its load imbalance and the barrier that ends it. */
static inline void lap(CpuBackend *cb, int phase, double *t) {
    if (!cb->timing) return;
    double now = omp_get_wtime();
    cb->phase_s[phase] += now - *t;
    *t = now;
}

/* One token of each of nb sequences; the weights are read once for all of them. */
static int cpu_step(Mamba2Backend *b, Mamba2State **states, const int32_t *tokens, int nb, float *logits,
                    Mamba2Error *err) {
    CpuBackend *cb = (CpuBackend *)b;
    const Mamba2Model *m = b->model;
    const Mamba2Config *c = &m->cfg;
    int d = c->d_model, d_in = c->d_inner, H = c->n_heads, P = c->head_dim, N = c->d_state, G = c->n_groups;
    int K = c->d_conv, GN = G * N, V = c->vocab_size;
    int64_t ldz = c->d_in_proj;
    for (int i = 0; i < nb; i++)
        if (mamba2_state_sync(states[i], err)) return -1;
    if (reserve(cb, nb, 0, err)) return -1;

    double t = cb->timing ? omp_get_wtime() : 0; /* the phase clock (lap()) */
    embed(cb, tokens, nb);
    int n_blocks = (c->conv_dim + CONV_BLOCK - 1) / CONV_BLOCK;
    for (int l = 0; l < c->n_layer; l++) {
        const CpuLayer *L = &cb->layers[l];
        size_t conv_off = (size_t)l * c->conv_dim * (K - 1), ssm_off = (size_t)l * H * P * N;

        norm_rows(cb, L->norm, nb);                                                  /* u = RMSNorm(h)·w */
        lap(cb, PH_EMBED_NORM, &t);
        project(cb, &L->in_proj, cb->u, d, nb, cb->zx, ldz, 0);                      /* [z|xBC|dt] = u W_inᵀ */
        lap(cb, PH_IN_PROJ, &t);

#pragma omp parallel num_threads(cb->nt)
        {
            /* xBC' = silu(conv(xBC)) per sequence and channel block; dt per sequence */
#pragma omp for collapse(2) schedule(static)
            for (int s = 0; s < nb; s++)
                for (int bk = 0; bk < n_blocks; bk++) {
                    int c0 = bk * CONV_BLOCK, c1 = c0 + CONV_BLOCK < c->conv_dim ? c0 + CONV_BLOCK : c->conv_dim;
                    cpu_conv_silu(cb->zx + (size_t)s * ldz + d_in, ldz, 1, K, L->conv_wt, c->conv_dim, L->conv_b,
                                  states[s]->conv + conv_off, cb->xbc + (size_t)s * c->conv_dim, c->conv_dim, c0, c1);
                }
            if (omp_get_thread_num() == 0) lap(cb, PH_CONV, &t); /* after the loop's barrier: all are done */
            /* dt per sequence and head (not per sequence: with one sequence, one thread would work
             * while the others waited) */
#pragma omp for collapse(2) schedule(static)
            for (int s = 0; s < nb; s++)
                for (int h = 0; h < H; h++)
                    cpu_dt(cb->zx + (size_t)s * ldz + d_in + c->conv_dim + h, ldz, 1, 1, L->dt_bias + h, c->dt_min,
                           c->dt_max, cb->dt + (size_t)s * H + h);
            if (omp_get_thread_num() == 0) lap(cb, PH_DT, &t);
            /* S_h ← exp(dt A) S_h + dt x_h B_gᵀ;  y_h = S_h C_g + D x_h, per sequence and head */
#pragma omp for collapse(2) schedule(static)
            for (int s = 0; s < nb; s++)
                for (int h = 0; h < H; h++) {
                    const float *xbc = cb->xbc + (size_t)s * c->conv_dim;
                    int g = h / (H / G);
                    cpu_ssd_step_head(states[s]->ssm + ssm_off + (size_t)h * P * N, xbc + (size_t)h * P,
                                      xbc + d_in + (size_t)g * N, xbc + d_in + GN + (size_t)g * N,
                                      cb->dt[(size_t)s * H + h], L->A[h], L->D[h], P, N,
                                      cb->y + (size_t)s * d_in + (size_t)h * P);
                }
            if (omp_get_thread_num() == 0) lap(cb, PH_SSD, &t);
            /* y = grouped RMSNorm(y · silu(z)), per sequence and group (so, likewise) */
#pragma omp for collapse(2) schedule(static)
            for (int s = 0; s < nb; s++)
                for (int g = 0; g < G; g++) {
                    size_t gs = (size_t)(d_in / G), o = (size_t)g * gs;
                    cpu_gated_norm(cb->y + (size_t)s * d_in + o, cb->zx + (size_t)s * ldz + o, (int)gs, 1,
                                   L->gated_norm + o, c->eps);
                }
            if (omp_get_thread_num() == 0) lap(cb, PH_GATED_NORM, &t);
        }
        project(cb, &L->out_proj, cb->y, d_in, nb, cb->h, d, 1);                     /* h += y W_outᵀ */
        lap(cb, PH_OUT_PROJ, &t);
    }
    /* logits = W_head · (RMSNorm(h) · w_norm_f) */
    norm_rows(cb, cb->norm_f, nb);
    project(cb, &cb->lm_head, cb->u, d, nb, logits, V, 0);
    lap(cb, PH_LM_HEAD, &t);
    cb->phase_steps += cb->timing;
    for (int s = 0; s < nb; s++) states[s]->pos = mamba2_state_pos_after(states[s]->pos, 1);
    return 0;
}

/* ---------------------------------------------------------------- set-up */

/* Give the pages of @p t's bytes in the weight mapping back (it is a read-only file mapping: a
 * later read, by the ref backend of the same model for instance, maps them in again from the file). */
static void release_pages(const Mamba2Tensor *t) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || !t->data) return;
    uintptr_t a = (uintptr_t)t->data, end = a + (uintptr_t)mamba2_tensor_numel(t) * mamba2_dtype_size(t->dtype);
    uintptr_t first = (a + page - 1) & ~(uintptr_t)(page - 1), last = end & ~(uintptr_t)(page - 1);
    if (last > first) (void)madvise((void *)first, last - first, MADV_DONTNEED);
}

/* The large matrices in the order set-up copies them: in_proj and out_proj of layer i / 2 for even
 * and odd i < 2L, lm_head for i = 2L. */
static CpuMatrix *big_matrix(const CpuBackend *cb, int i) {
    const int L = cb->base.model->cfg.n_layer;
    return i == 2 * L ? (CpuMatrix *)&cb->lm_head : i % 2 ? &cb->layers[i / 2].out_proj : &cb->layers[i / 2].in_proj;
}

/* Matrices copy_weights() times the ways of bf16 decode on: the first ones (in_proj, out_proj of
 * layer 0, 1, ...), at least DECODE_TRIAL_MIN and on until they add up to twice the last-level cache
 * (bf16_decode_choice.h), at most DECODE_TRIAL: at the 7B's width 4 (440 MB) where L3 is 32 MB, 6
 * (660 MB) where it is 300 MB. */
#define DECODE_TRIAL_MIN 4
#define DECODE_TRIAL 16
/** How much faster than in place the packed layout must time to be kept: a near tie keeps the
 *  weights in place (no copy at load), since on a shared host the trial does not resolve a few
 *  percent and has timed a tie where the whole model read faster in place (results/cpu.md, "the
 *  bf16 load trial"). */
#define DECODE_PACK_MIN 1.03

/** How much faster decode in place must time without the next block's prefetch for it to be left
 *  out: a near tie keeps it (it paid on the Intel Xeons and the Zen 4, results/cpu.md). */
#define PF_OFF_MIN 1.03

/* MAMBA2_CPU_PACK=timed: the load trials time whatever the size of what they multiply (the tests'
 * tiny models), where they otherwise leave ways untimed that would be timed in the caches. */
static int trials_any_size(void) {
    const char *v = getenv("MAMBA2_CPU_PACK");
    return v && !strcmp(v, "timed");
}

/* The ways of bf16 decode worth timing on this CPU, the untimed default first: the products it has
 * for bf16 (its own; on AVX512_BF16 CPUs also the AVX-512F FMA product) × the layouts MAMBA2_CPU_PACK
 * allows (packed, in place; "1" or "0" names one), the layouts in turn; in place, with and without
 * the next rows' prefetch (cpu_gemv_prefetch(); only the one MAMBA2_CPU_PREFETCH names where set),
 * since the layout that wins can hang on it: on an AMD Zen 3 the packed copy timed faster than in
 * place with the prefetch, and slower than in place without it (results/cpu.md, "the bf16 layout
 * timed with the in-place prefetch"). AVX2's product is not a candidate on AVX-512 CPUs: it can tie
 * at one sequence, which the trial times, and be far slower at several (results/cpu.md, "vdpbf16ps
 * was the slower bf16 product"). Returns how many (1: nothing to choose). */
static int decode_ways(const CpuBackend *cb, const char *pack, CpuBf16Decode ways[DECODE_WAYS]) {
    const CpuIsa products[2] = {cb->isa, CPU_ISA_AVX512};
    const int n_products = cb->isa == CPU_ISA_AVX512BF16 ? 2 : 1;
    const CpuPrefetch pf[2] = {cpu_gemv_prefetch_asked() ? cpu_gemv_prefetch() : CPU_PREFETCH_NEXT_BLOCK, CPU_PREFETCH_NONE};
    const int n_pf = cpu_gemv_prefetch_asked() ? 1 : 2;
    int n = 0;
    for (int i = 0; i < n_products; i++) {
        if (!(pack && !strcmp(pack, "0"))) ways[n++] = (CpuBf16Decode){1, products[i], CPU_PREFETCH_NONE, 0};
        if (!(pack && !strcmp(pack, "1")))
            for (int k = 0; k < n_pf; k++) ways[n++] = (CpuBf16Decode){0, products[i], pf[k], 0};
    }
    return n;
}

/* Times @p ways of decode for @p B sequences on @p n matrices and returns the index of the fastest
 * (0 when they could not be timed), @p kept receiving them with that one first (*n_kept: how many;
 * 0 when not timed). MAMBA2_CPU_PACK_MIN=R and MAMBA2_CPU_LOWER_MIN=R count a packed way, and a way
 * with the lower tier's product, as the fastest only where it timed at least R times as fast
 * (defaults DECODE_PACK_MIN and 1; the tests force each outcome with them). */
static int fastest_way(const CpuBackend *cb, const Mamba2Tensor *const *W, const CpuPackedBf16 *p, int n, int B,
                       CpuBf16Decode *ways, int n_ways, CpuBf16Decode *kept, int *n_kept) {
    *n_kept = 0;
    if (cpu_bf16_time_decode(W, p, n, cb->nt, cb->precision, B, ways, n_ways)) return 0;
    const char *pack_min = getenv("MAMBA2_CPU_PACK_MIN"), *lower_min = getenv("MAMBA2_CPU_LOWER_MIN");
    const char *pf_min = getenv("MAMBA2_CPU_PF_OFF_MIN");
    int best = 0;
    double best_t = 0;
    for (int w = 0; w < n_ways; w++) {
        const int pf_off = !ways[w].packed && ways[w].prefetch == CPU_PREFETCH_NONE && !cpu_gemv_prefetch_asked();
        double t = ways[w].seconds * (ways[w].packed ? (pack_min ? atof(pack_min) : DECODE_PACK_MIN) : 1.0) *
                   (ways[w].isa != cb->isa && lower_min ? atof(lower_min) : 1.0) *
                   (pf_off ? (pf_min ? atof(pf_min) : PF_OFF_MIN) : 1.0);
        if (w == 0 || t < best_t) best = w, best_t = t;
    }
    *n_kept = n_ways;
    kept[0] = ways[best];
    for (int w = 0, k = 1; w < n_ways; w++)
        if (w != best) kept[k++] = ways[w];
    return best;
}

/* Times @p ways of decode of one sequence on the first @p n large matrices (bf16_decode_choice.h;
 * the packed ways read the copies made of them) and keeps the fastest: its product becomes
 * cb->bf16_isa; then the products of that layout are timed again for CPU_DECODE_TRIAL_BATCH sequences,
 * the fastest becoming cb->bf16_isa_batch (more vectors a line shift the balance between the
 * products). Unless the way kept reads packed, the copies are then dropped (every matrix stays in
 * place). With no memory to time, the first way is kept. Returns 1 when the way kept reads packed. */
static int choose_decode(CpuBackend *cb, int n, CpuBf16Decode *ways, int n_ways) {
    const Mamba2Tensor *W[DECODE_TRIAL];
    CpuPackedBf16 p[DECODE_TRIAL];
    for (int i = 0; i < n; i++) W[i] = big_matrix(cb, i)->t, p[i] = big_matrix(cb, i)->p;
    const int best = fastest_way(cb, W, p, n, 1, ways, n_ways, cb->ways, &cb->n_ways);
    cb->bf16_isa = cb->bf16_isa_batch = ways[best].isa;
    if (!ways[best].packed && cb->n_ways) { /* in place: its prefetch, and the other one's time, if timed */
        cpu_gemv_choose_prefetch(ways[best].prefetch);
        cb->pf_kept = ways[best].prefetch;
        for (int w = 0; w < n_ways; w++)
            if (!ways[w].packed && ways[w].isa == ways[best].isa && ways[w].prefetch != ways[best].prefetch)
                cb->pf_other = ways[w].seconds / ways[best].seconds;
    }
    CpuBf16Decode batch[2];
    int n_batch = 0;
    for (int w = 0; w < n_ways; w++)
        if (ways[w].packed == ways[best].packed && ways[w].prefetch == ways[best].prefetch && n_batch < 2)
            batch[n_batch++] = ways[w];
    if (n_batch > 1)
        cb->bf16_isa_batch = batch[fastest_way(cb, W, p, n, CPU_DECODE_TRIAL_BATCH, batch, n_batch, cb->batch_ways,
                                               &cb->n_batch_ways)].isa;
    if (ways[best].packed) return 1;
    for (int i = 0; i < n; i++) cpu_packed_bf16_free(&big_matrix(cb, i)->p);
    return 0;
}

/* Where a large matrix's bytes lie as the backend reads them (its copy, or the mmap), and how many. */
static const void *matrix_data_of(const CpuMatrix *W, size_t *bytes) {
    if (W->p.data) return *bytes = W->p.bytes, W->p.data;
    if (W->q.data) return *bytes = W->q.bytes, W->q.data;
    *bytes = (size_t)mamba2_tensor_numel(W->t) * (size_t)mamba2_dtype_size(W->t->dtype);
    return W->t->data;
}

/** Timed rounds of each decode read trial, after one untimed round that warms the threads. */
#define READ_TRIAL_ROUNDS 3
/** How much faster decode must time without the L2 prefetch for it to be left out: a near tie keeps it
 *  (it paid on every CPU measured, results/cpu.md). */
#define L2_OFF_MIN 1.03
/** How much faster q8 decode must time reading its tiles row by row for that order to be kept over
 *  line by line across the rows, the order measured first (on Intel Xeons). */
#define Q8_ROWS_MIN 1.03

static void set_ahead_l2(int64_t bytes) { cpu_decode_choose_ahead_l2(bytes); }
static void set_gemv_prefetch(int64_t p) { cpu_gemv_choose_prefetch((CpuPrefetch)p); }
static void set_q8_lines(int64_t lines) { cpu_q8_decode_choose_lines((int)lines); }
/* q8's read order and L2 prefetch together: @p way = 2 · (L2 prefetch on) + (line by line). */
static void set_q8_way(int64_t way) {
    cpu_q8_decode_choose_lines((int)(way & 1));
    cpu_decode_choose_ahead_l2(way & 2 ? CPU_DECODE_AHEAD_L2 : 0);
}

/* One sequence's products over the first @p n large matrices, as decode calls them, with each of
 * the @p n_v values @p v of a read setting that @p set applies, in turn (round r starts one value
 * later than round r − 1): an untimed round, then READ_TRIAL_ROUNDS; best[w]: v[w]'s fastest round. */
static void time_reads(CpuBackend *cb, int n, void (*set)(int64_t), const int64_t *v, int n_v, double *best) {
    for (int w = 0; w < n_v; w++) best[w] = 0;
    for (int r = 0; r <= READ_TRIAL_ROUNDS; r++)
        for (int j = 0; j < n_v; j++) {
            const int w = (j + r) % n_v;
            set(v[w]);
            const double t0 = omp_get_wtime();
            for (int i = 0; i < n; i++) { /* zx [1, rows] = u [1, K] · Wᵀ */
                const CpuMatrix *W = big_matrix(cb, i);
                project(cb, W, cb->u, W->t->shape[1], 1, cb->zx, W->t->shape[0], 0);
            }
            const double t = omp_get_wtime() - t0;
            if (r > 0 && (best[w] == 0 || t < best[w])) best[w] = t;
        }
}

/* Index of the value to keep of a trial's two: the second only where it timed @p min times as fast as
 * the first (the environment variable @p env, where set, replaces @p min: the tests force each outcome). */
static int second_if_faster(const double best[2], const char *env, double min) {
    const char *v = getenv(env);
    return best[0] > best[1] * (v ? atof(v) : min);
}

/* How decode's products read the weights, timed on this CPU at load, since what pays differs between
 * memory systems: one sequence's products over the first in_proj / out_proj matrices as decode reads
 * them (the packed or quantized copies; twice the last-level cache of them, at least
 * CPU_DECODE_TRIAL_MIN_BYTES), each way alternated, the fastest round of each compared. Each choice is
 * process-wide, as the CPU is.
 * 1. q8's read order (cpu_q8_decode_lines()): line by line across a tile's rows paid on the Intel
 *    Xeons measured, row by row on the AMD Zen 4 (results/cpu.md, "q8 decode's read order timed at
 *    load"); row by row is kept where ≥ Q8_ROWS_MIN faster (MAMBA2_CPU_Q8_ROWS_MIN=R replaces it).
 * 2. Whether the products also ask for each line into L2 (cpu_decode_ahead_l2()): it paid on the Xeons
 *    and the Zen 4 measured, but where the line goes is the CPU's own choice (AMD documents prefetcht1
 *    as a prefetch into L1 before Zen 4, where 16 KiB ahead would crowd the activations out of a 32 KiB
 *    L1); left out where ≥ L2_OFF_MIN faster (MAMBA2_CPU_L2_OFF_MIN=R).
 *    For q8 the four pairs of 1 and 2 are timed together, since which order pays can hang on the
 *    prefetch (a Zen 3: line by line the faster without it, the slower with it; results/cpu.md, "q8's
 *    read order and L2 prefetch timed together"): the order is decided first, each order at its
 *    faster prefetch setting, then the prefetch in the order kept. Otherwise each is timed alone.
 * 3. Where decode reads the weights in place (cpu_gemv(), which has no L2 distance of its own), whether
 *    it asks for the next block's rows ahead (cpu_gemv_prefetch()) for the same reason: it paid on the
 *    Xeons and the Zen 4, and on a Zen 3 the hardware prefetchers alone read faster (results/cpu.md,
 *    "an AMD Zen 3"); left out where ≥ PF_OFF_MIN faster (MAMBA2_CPU_PF_OFF_MIN=R).
 * Nothing is timed where the environment decides (MAMBA2_CPU_Q8_LINES, MAMBA2_CPU_AHEAD_L2,
 * MAMBA2_CPU_PREFETCH) or where the matrices would be timed in the caches (unless
 * MAMBA2_CPU_PACK=timed). */
static int choose_decode_reads(CpuBackend *cb, Mamba2Error *err) {
    const Mamba2Config *c = &cb->base.model->cfg;
    const CpuMatrix *first = big_matrix(cb, 0);
    const int time_l2 = !cpu_decode_ahead_l2_asked() && (first->p.data || first->q.data);
    const int time_q8 = first->q.data && first->q.format == MAMBA2_WEIGHTS_Q8 && !cpu_q8_decode_lines_asked();
    const int time_pf = !first->p.data && !first->q.data && !cpu_gemv_prefetch_asked() && cb->pf_other == 0;
    if (!time_l2 && !time_q8 && !time_pf) return 0;
    const double need = fmax(2.0 * (double)cpu_cache_bytes(3), CPU_DECODE_TRIAL_MIN_BYTES);
    double bytes = 0;
    int n = 0;
    for (size_t b; n < 2 * c->n_layer && bytes < need; n++) matrix_data_of(big_matrix(cb, n), &b), bytes += (double)b;
    if (bytes < need && !trials_any_size()) return 0;
    if (reserve(cb, 1, 0, err)) return -1;
    const int64_t wide = c->d_model > c->d_inner ? c->d_model : c->d_inner;
    cpu_trial_activations(cb->u, wide);
    double best[4];
    if (time_q8 && time_l2) { /* q8: its read order and the L2 prefetch timed together (see 1.) */
        const int64_t way[4] = {0, 1, 2, 3}; /* set_q8_way(): 2 · (L2 prefetch on) + (line by line) */
        time_reads(cb, n, set_q8_way, way, 4, best);
        const double order[2] = {fmin(best[1], best[3]), fmin(best[0], best[2])}; /* [line by line, row by row] */
        const int lines = !second_if_faster(order, "MAMBA2_CPU_Q8_ROWS_MIN", Q8_ROWS_MIN);
        const double l2[2] = {best[2 + lines], best[lines]}; /* [on, off], in the order kept */
        const int on = !second_if_faster(l2, "MAMBA2_CPU_L2_OFF_MIN", L2_OFF_MIN);
        set_q8_way(2 * on + lines);
        cb->q8_lines_kept = lines, cb->q8_lines_other = order[lines] / l2[!on];
        cb->l2_kept = on ? CPU_DECODE_AHEAD_L2 : 0, cb->l2_other = l2[on] / l2[!on];
    } else if (time_q8) {
        const int64_t lines[2] = {1, 0};
        time_reads(cb, n, set_q8_lines, lines, 2, best);
        const int w = second_if_faster(best, "MAMBA2_CPU_Q8_ROWS_MIN", Q8_ROWS_MIN);
        cpu_q8_decode_choose_lines((int)lines[w]);
        cb->q8_lines_kept = (int)lines[w], cb->q8_lines_other = best[!w] / best[w];
    } else if (time_l2) {
        const int64_t ahead[2] = {CPU_DECODE_AHEAD_L2, 0};
        time_reads(cb, n, set_ahead_l2, ahead, 2, best);
        const int w = second_if_faster(best, "MAMBA2_CPU_L2_OFF_MIN", L2_OFF_MIN);
        cpu_decode_choose_ahead_l2(ahead[w]);
        cb->l2_kept = ahead[w], cb->l2_other = best[!w] / best[w];
    }
    if (time_pf) {
        const int64_t pf[2] = {CPU_PREFETCH_NEXT_BLOCK, CPU_PREFETCH_NONE};
        time_reads(cb, n, set_gemv_prefetch, pf, 2, best);
        const int w = second_if_faster(best, "MAMBA2_CPU_PF_OFF_MIN", PF_OFF_MIN);
        cpu_gemv_choose_prefetch((CpuPrefetch)pf[w]);
        cb->pf_kept = (int)pf[w], cb->pf_other = best[!w] / best[w];
    }
    return 0;
}

/** How much faster the widened path must time for quantized prefill to take it over the integer product. */
#define QWIDEN_MIN 1.03
/** The least work a prefill trial's product must do to be timed: smaller ones, a millisecond or less,
 *  would decide by noise, and load to load (the untimed default, the widened path, stays). */
#define QPREFILL_TRIAL_MIN_FLOP 2.5e8

/* Which path quantized prefill takes where it may widen the weights (cpu_qlinear_prefill_may_widen():
 * no vpdpbusd, no AMX), timed on this CPU at load, since it is the core's integer multipliers against
 * its FMAs, and on the matrix: on an AMD Zen 3 the integer product was the faster at the 7B's widths,
 * where the widened one had been chosen by a measurement on an AVX-512 CPU forced down to AVX2, before
 * the integer product was rewritten (results/cpu.md, "quantized prefill on AVX2").
 * The first matrix's first rows, each path alternated (cpu_qlinear_time_prefill()); widened only
 * where ≥ QWIDEN_MIN faster (MAMBA2_CPU_QWIDEN_MIN=R replaces it: the tests force each outcome).
 * Nothing is timed where MAMBA2_CPU_QPREFILL decides, or below QPREFILL_TRIAL_MIN_FLOP (unless
 * MAMBA2_CPU_PACK=timed, as for the decode trials). */
static int choose_prefill_path(CpuBackend *cb, Mamba2Error *err) {
    const CpuQMatrix *W = &big_matrix(cb, 0)->q;
    if (!W->data || cpu_qlinear_prefill_asked() || !cpu_qlinear_prefill_may_widen(cb->isa) ||
        (cpu_qlinear_prefill_trial_flop(W) < QPREFILL_TRIAL_MIN_FLOP && !trials_any_size()))
        return 0;
    double best[2]; /* [integer, widened] */
    if (cpu_qlinear_time_prefill(cb->isa, W, cb->nt, best, err)) return -1;
    const int widen = second_if_faster(best, "MAMBA2_CPU_QWIDEN_MIN", QWIDEN_MIN);
    cpu_qlinear_choose_prefill(widen);
    cb->qprefill_other = best[!widen] / best[widen];
    return 0;
}

/* The copies decode reads instead of the mmap, made at load for in_proj, out_proj of every layer
 * and lm_head: quantized to @p weights (q8 / q4, any stored dtype), or with the weights as stored,
 * the bf16 ones repacked (packed_bf16.h) where that reads faster on this CPU. For bf16 the first
 * matrices (DECODE_TRIAL) are packed and decode timed on them each way (layout × product,
 * decode_ways(), choose_decode()); if the fastest reads in place, their copies are dropped and
 * every matrix stays in place (other dtypes always do). Below CPU_DECODE_TRIAL_MIN_BYTES nothing is
 * timed: packed, the CPU's own product. MAMBA2_CPU_PACK=0 or 1 keeps them in place or packs them
 * (the products are still timed); MAMBA2_CPU_PACK=timed times whatever the size. Each stored
 * matrix's pages are released once its copy is made (the timed ones once the layout is decided), so
 * that peak memory follows one copy; a tied lm_head keeps them, since they are the embedding's,
 * which decode reads one row of per token. */
static int copy_weights(CpuBackend *cb, const Mamba2BackendOptions *opt, Mamba2WeightFormat weights, Mamba2Error *err) {
    const Mamba2Model *m = cb->base.model;
    const int quantize = weights != MAMBA2_WEIGHTS_STORED;
    const char *want = getenv("MAMBA2_CPU_PACK");
    const int L = m->cfg.n_layer, n = 2 * L + 1, tied = m->w.lm_head.data == m->w.embeddings.data;
    const double trial_want = 2.0 * (double)cpu_cache_bytes(3); /* bytes the trial's matrices should add up to */
    double need = 0, trial_bytes = 0; /* refused up front rather than failing (or being killed) half-way */
    int trial_bf16 = !quantize, n_trial = 0;
    for (int i = 0; i < n; i++) {
        const Mamba2Tensor *t = big_matrix(cb, i)->t;
        if (quantize) need += (double)cpu_qmatrix_bytes(t->shape[0], t->shape[1], weights);
        else if (t->dtype == MAMBA2_BF16) need += (double)cpu_packed_bf16_bytes(t->shape[0], t->shape[1]);
        if (n_trial < DECODE_TRIAL && (n_trial < DECODE_TRIAL_MIN || trial_bytes < trial_want)) {
            trial_bf16 = trial_bf16 && t->dtype == MAMBA2_BF16;
            trial_bytes += (double)mamba2_tensor_numel(t) * 2;
            n_trial++;
        }
    }
    CpuBf16Decode ways[DECODE_WAYS];
    const int n_ways = trial_bf16 ? decode_ways(cb, want, ways) : 0;
    const int trial = n_ways > 1 && (trials_any_size() || trial_bytes >= CPU_DECODE_TRIAL_MIN_BYTES);
    const int in_place = !quantize && want && !strcmp(want, "0");
    if (in_place && trial) choose_decode(cb, n_trial, ways, n_ways); /* the products, in place */
    if (in_place || need == 0) return 0;
    char what[64];
    snprintf(what, sizeof what, "the %s copy of the weights", quantize ? mamba2_weight_format_name(weights) : "packed");
    if (mamba2_check_memory(what, need, err)) return -1;
    const char *doing = quantize ? "quantizing weights" : "packing weights";
    for (int i = 0; i < n; i++) {
        CpuMatrix *W = big_matrix(cb, i);
        if (!quantize && W->t->dtype != MAMBA2_BF16) continue;
        if (opt && opt->progress) opt->progress(opt->progress_ctx, i, n, doing);
        if (quantize ? cpu_qmatrix_quantize(W->t, weights, cb->nt, &W->q, err) : cpu_packed_bf16_pack(W->t, cb->nt, &W->p, err))
            return -1;
        int first = i; /* the matrices whose pages go now: this one, or every timed one once decided */
        if (trial && i < n_trial - 1) continue; /* its pages are timed in place below */
        if (trial && i == n_trial - 1) {
            if (!choose_decode(cb, n_trial, ways, n_ways)) break; /* every matrix stays in place */
            first = 0;
        }
        for (int j = first; j <= i; j++)
            if (!(j == 2 * L && tied)) release_pages(big_matrix(cb, j)->t);
    }
    if (opt && opt->progress) opt->progress(opt->progress_ctx, n, n, doing);
    return 0;
}

static double cpu_matrix_bytes(Mamba2Backend *b) {
    const CpuBackend *cb = (const CpuBackend *)b;
    double sum = 0;
    for (int i = 0; i <= 2 * b->model->cfg.n_layer; i++) {
        size_t bytes;
        matrix_data_of(big_matrix(cb, i), &bytes);
        sum += (double)bytes;
    }
    return sum;
}

/* The ceilings of cpu_roofline(), the read ceiling raised to the read of the weights' own pages
 * where those read faster than its new buffer (cpu_read_bandwidth_of()). */
static int cpu_roofline_hook(Mamba2Backend *b, double *read_gbps, double *gemm_gflops, Mamba2Error *err) {
    const CpuBackend *cb = (const CpuBackend *)b;
    if (cpu_roofline(cb->nt, cb->precision, cb->lm_head.q.data ? cb->lm_head.q.format : MAMBA2_WEIGHTS_STORED,
                     read_gbps, gemm_gflops, err))
        return -1;
    const int L = b->model->cfg.n_layer, n = 2 * L + 1;
    const void **regions = malloc((size_t)n * sizeof *regions);
    size_t *bytes = malloc((size_t)n * sizeof *bytes);
    if (!regions || !bytes) {
        free(regions), free(bytes);
        return mamba2_fail(err, "out of memory for the roofline");
    }
    for (int i = 0; i < n; i++) regions[i] = matrix_data_of(big_matrix(cb, i), &bytes[i]);
    const double own = cpu_read_bandwidth_of(regions, bytes, n, cb->nt, 2);
    if (own > *read_gbps) *read_gbps = own;
    free(regions), free(bytes);
    return 0;
}

/* A time relative to the way kept, as "1.08", or with two significant digits where two decimals would
 * read 0.00 (a machine busy with other work can time one way far slower than another). */
static const char *ratio_text(double r, char buf[24]) {
    snprintf(buf, 24, r > 0 && r < 0.01 ? "%.2g" : "%.2f", r);
    return buf;
}

/* Appends how decode's products read the weights to @p out's gemv: in place, the prefetch of the
 * next block's rows; from packed or quantized copies, q8's read order and the L2 prefetch distance;
 * and the other choice's time where the load trial timed both. */
static void reads_named(const CpuBackend *cb, Mamba2KernelNames *out) {
    const CpuMatrix *first = big_matrix(cb, 0);
    char r[24];
    if (!first->p.data && !first->q.data) { /* in place: the next block's prefetch */
        static const char *pf_name[3] = {"no prefetch", "prefetched along each row", "next rows prefetched"};
        const CpuPrefetch kept = cb->pf_other > 0 ? (CpuPrefetch)cb->pf_kept : cpu_gemv_prefetch();
        size_t used = strlen(out->gemv);
        snprintf(out->gemv + used, sizeof out->gemv - used, "; %s", pf_name[kept]);
        used = strlen(out->gemv);
        if (cb->pf_other > 0)
            snprintf(out->gemv + used, sizeof out->gemv - used, " (timed at load: %s %sx)",
                     pf_name[kept == CPU_PREFETCH_NONE ? CPU_PREFETCH_NEXT_BLOCK : CPU_PREFETCH_NONE],
                     ratio_text(cb->pf_other, r));
        return;
    }
    if (first->q.data && first->q.format == MAMBA2_WEIGHTS_Q8) {
        static const char *order[2] = {"row by row", "line by line across the rows"};
        const int lines = cb->q8_lines_other > 0 ? cb->q8_lines_kept : cpu_q8_decode_lines();
        size_t used = strlen(out->gemv);
        snprintf(out->gemv + used, sizeof out->gemv - used, "; %s", order[lines]);
        used = strlen(out->gemv);
        if (cb->q8_lines_other > 0)
            snprintf(out->gemv + used, sizeof out->gemv - used, " (timed at load: %s %sx)", order[!lines],
                     ratio_text(cb->q8_lines_other, r));
    }
    const int64_t kept = cb->l2_other > 0 ? cb->l2_kept : cpu_decode_ahead_l2();
    size_t used = strlen(out->gemv);
    if (kept) snprintf(out->gemv + used, sizeof out->gemv - used, "; into L2 %lld KiB ahead", (long long)(kept >> 10));
    else snprintf(out->gemv + used, sizeof out->gemv - used, "; no L2 prefetch");
    used = strlen(out->gemv);
    if (cb->l2_other > 0 && kept)
        snprintf(out->gemv + used, sizeof out->gemv - used, " (timed at load: none %sx)", ratio_text(cb->l2_other, r));
    else if (cb->l2_other > 0)
        snprintf(out->gemv + used, sizeof out->gemv - used, " (timed at load: %lld KiB ahead %sx)",
                 (long long)(CPU_DECODE_AHEAD_L2 >> 10), ratio_text(cb->l2_other, r));
}

/* Mamba2Backend::step_phases: on zeroes the clocks and starts them; off stops them and copies them out. */
static void cpu_step_phases(Mamba2Backend *b, int on, Mamba2StepPhases *out) {
    CpuBackend *cb = (CpuBackend *)b;
    if (on) {
        memset(cb->phase_s, 0, sizeof cb->phase_s);
        cb->phase_steps = 0;
    }
    cb->timing = on;
    if (!out) return;
    out->n = STEP_PHASES, out->steps = cb->phase_steps;
    for (int i = 0; i < STEP_PHASES; i++) out->name[i] = phase_names[i], out->seconds[i] = cb->phase_s[i];
}

/* The GEMM of prefill (and of the GEMM ceiling) and the decode products, for the weights and the
 * precision this backend runs with. */
static void cpu_kernels(Mamba2Backend *b, Mamba2KernelNames *out) {
    const CpuBackend *cb = (const CpuBackend *)b;
    const CpuQMatrix *q = &cb->lm_head.q;
    if (!q->data) {
        snprintf(out->gemm, sizeof out->gemm, "%s", cpu_gemm_kernel_name(cb->precision));
        const char *layout = cb->lm_head.p.data ? "bf16 packed at load" : "bf16 in place";
        if (cb->lm_head.p.data || cb->n_ways)
            snprintf(out->gemv, sizeof out->gemv, "%s, %s", cpu_isa_name(cb->bf16_isa), layout);
        else snprintf(out->gemv, sizeof out->gemv, "%s", cpu_isa_name(cb->bf16_isa));
        char r[24];
        for (int w = 1; w < cb->n_ways; w++) { /* the others' times, relative to the way kept */
            size_t used = strlen(out->gemv);
            snprintf(out->gemv + used, sizeof out->gemv - used, "%s%s %s %sx%s", w == 1 ? " (timed at load: " : ", ",
                     cpu_isa_name(cb->ways[w].isa),
                     cb->ways[w].packed ? "packed"
                     : cb->ways[w].prefetch == CPU_PREFETCH_NONE ? "in place, no prefetch"
                                                                 : "in place, next rows prefetched",
                     ratio_text(cb->ways[w].seconds / cb->ways[0].seconds, r), w == cb->n_ways - 1 ? ")" : "");
        }
        if (cb->n_batch_ways > 1) { /* and the product of several sequences */
            size_t used = strlen(out->gemv);
            snprintf(out->gemv + used, sizeof out->gemv - used, "; batched: %s (%s %sx)", cpu_isa_name(cb->batch_ways[0].isa),
                     cpu_isa_name(cb->batch_ways[1].isa), ratio_text(cb->batch_ways[1].seconds / cb->batch_ways[0].seconds, r));
        }
        reads_named(cb, out);
        return;
    }
    const char *format = mamba2_weight_format_name(q->format);
    switch (cpu_qlinear_path(cb->isa, QLINEAR_INT_MAX_ROWS + 1)) {
    case CPU_QPATH_AMX:
        snprintf(out->gemm, sizeof out->gemm, "%s: rows dequantized to bf16, %s", format,
                 cpu_gemm_kernel_name(cb->precision));
        break;
    case CPU_QPATH_WIDENED: /* the load trial's choice: prefill widens the rows to fp32 for the fp32 GEMM tier */
        snprintf(out->gemm, sizeof out->gemm, "%s: rows widened to fp32, %s", format,
                 cpu_gemm_kernel_name(MAMBA2_PRECISION_DEFAULT));
        break;
    default:
        snprintf(out->gemm, sizeof out->gemm, "%s: the integer product of cpu_qlinear(), %s", format,
                 cpu_qlinear_kernel_name(cb->isa));
    }
    if (cb->qprefill_other > 0) {
        char r[24];
        size_t used = strlen(out->gemm);
        snprintf(out->gemm + used, sizeof out->gemm - used, " (timed at load: %s %sx)",
                 cpu_qlinear_prefill_widens() ? "the integer product" : "rows widened", ratio_text(cb->qprefill_other, r));
    }
    snprintf(out->gemv, sizeof out->gemv, "%s", cpu_qlinear_kernel_name(cb->isa));
    reads_named(cb, out);
}

int mamba2_backend_cpu_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                              Mamba2Error *err) {
    const Mamba2Config *c = &m->cfg;
    *out = NULL;
    CpuBackend *cb = calloc(1, sizeof *cb);
    if (!cb) return mamba2_fail(err, "out of memory");
    Mamba2Backend *b = &cb->base;
    b->name = "cpu";
    b->model = m;
    b->impl = cb;
    b->prefill = cpu_prefill;
    b->prefill_observed = cpu_prefill_observed;
    b->step = cpu_step;
    b->roofline = cpu_roofline_hook;
    b->matrix_bytes = cpu_matrix_bytes;
    b->kernels = cpu_kernels;
    b->step_phases = cpu_step_phases;
    b->destroy = cpu_destroy;
    cb->nt = opt && opt->n_threads > 0 ? opt->n_threads : omp_get_max_threads();
    /* The threads' stacks and OpenBLAS buffers (every thread may call it, in prefill's chunked SSD) are
     * checked against the address-space limit, and under one the threads started and their buffers
     * taken at once, while the check holds: libgomp keeps the threads for every later parallel region,
     * and would otherwise end the program with its own message when a later region cannot start one;
     * OpenBLAS keeps the buffers, and would otherwise retry a failed one forever in the middle of a
     * command (cpu_blas_take_buffers()). */
    if (mamba2_check_thread_stacks(cb->nt, CPU_BLAS_THREAD_BUFFER, err)) {
        free(cb);
        return -1;
    }
    cpu_blas_take_buffers(cb->nt);
    cb->isa = cb->bf16_isa = cb->bf16_isa_batch = cpu_isa_active();
    cb->precision = opt ? opt->precision : MAMBA2_PRECISION_DEFAULT;
    /* Ask for 2 MiB pages on the weight mappings (a hint; errors are ignored): pages the kernel
     * reads in from now on come as 2 MiB folios, one TLB entry each, for decode's stream over every
     * weight; pages already cached keep their size. On the Zen 4 measured, decode ran as fast on
     * 4 KiB pages, and a read stream on the Xeon nearly so (results/cpu.md): a hint for CPUs with
     * fewer TLB entries, not a measured speedup. */
    long page = sysconf(_SC_PAGESIZE);
    for (int f = 0; f < m->n_files && page > 0; f++) {
        uintptr_t start = (uintptr_t)m->files[f].map & ~(uintptr_t)(page - 1);
        (void)madvise((void *)start, m->files[f].size + ((uintptr_t)m->files[f].map - start), MADV_HUGEPAGE);
    }
    cpu_blas_single_threaded(); /* OpenMP splits the work; OpenBLAS runs on the calling thread */

    int K = c->d_conv, ok = 1;
    cb->layers = calloc(c->n_layer, sizeof *cb->layers);
    ok = cb->layers && (cb->norm_f = f32_copy(&m->w.norm_f));
    for (int l = 0; ok && l < c->n_layer; l++) {
        const Mamba2LayerWeights *lw = &m->w.layers[l];
        CpuLayer *L = &cb->layers[l];
        L->norm = f32_copy(&lw->norm);
        L->dt_bias = f32_copy(&lw->dt_bias);
        L->A = f32_copy(&lw->A_log);
        L->D = f32_copy(&lw->D);
        L->gated_norm = f32_copy(&lw->gated_norm);
        L->conv_b = f32_copy(&lw->conv_b); /* NULL when the model has no conv bias */
        L->conv_wt = malloc((size_t)K * c->conv_dim * sizeof *L->conv_wt);
        ok = L->norm && L->dt_bias && L->A && L->D && L->gated_norm && L->conv_wt && (L->conv_b || !lw->conv_b.data);
        if (!ok) break;
        L->in_proj.t = &lw->in_proj, L->out_proj.t = &lw->out_proj;
        for (int h = 0; h < c->n_heads; h++) L->A[h] = -expf(L->A[h]); /* A = −exp(A_log) */
        for (int ch = 0; ch < c->conv_dim; ch++)                      /* [conv_dim, 1, K] → [K, conv_dim] */
            for (int k = 0; k < K; k++)
                L->conv_wt[(size_t)k * c->conv_dim + ch] = mamba2_tensor_get(&lw->conv_w, (int64_t)ch * K + k);
    }
    int64_t widest = c->d_model > c->d_inner ? c->d_model : c->d_inner;
    ok = ok && (cb->panels = malloc(cpu_linear_scratch_floats(cb->nt, widest) * sizeof(float)));
    if (!ok) {
        cpu_destroy(b);
        return mamba2_fail(err, "out of memory for the CPU backend's small weights");
    }
    cb->lm_head.t = &m->w.lm_head;
    if (copy_weights(cb, opt, opt ? opt->weights : MAMBA2_WEIGHTS_STORED, err) || choose_decode_reads(cb, err) ||
        choose_prefill_path(cb, err)) {
        cpu_destroy(b);
        return -1;
    }
    *out = b;
    return 0;
}
