/**
 * @file backend_gpu.cu
 * @brief The GPU backend: weights uploaded once, states kept on the device between calls,
 *        prefill through cuBLAS GEMMs + the chunked SSD kernels, decode through the fused
 *        GEMV path (≤ 4 sequences) or cuBLAS GEMMs (more), replayed from CUDA graphs.
 *
 * Precision: the big matrices (in_proj, out_proj, embeddings, lm_head) are bf16 on the device
 * (converted at upload when the checkpoint stores f32/f16); small vectors fp32; the residual
 * stream, SSM states (unless state_bf16) and every accumulation fp32.
 *
 * With q8 weights (options' weights = MAMBA2_WEIGHTS_Q8) in_proj, out_proj and lm_head are
 * quantized at upload (q8_matrix.cu; the embedding table, read one row per token, stays bf16) and
 * no bf16 copy of them is kept. Decode's GEMV path (≤ 4 sequences) reads the int8 values and
 * scales (gemv.cuh); the products of more tokens (prefill, decode of more sequences) go through the
 * q8 GEMM (gemm_q8.cu), which reads them as stored and widens them to bf16 in registers, up to
 * q8_gemm_max_T tokens (MAMBA2_GPU_Q8_GEMM_MAX_T; MAMBA2_GPU_Q8_GEMM=0 turns it off); it hands the
 * fp32 products of at most 64 tokens (decode of 5–64 sequences, prompts of at most 64 tokens:
 * in_proj's there through an fp32 scratch, gemm_q8_zx()) to its few-token kernel
 * (gemm_q8_skinny.cu), which streams the weights into registers. Beyond that,
 * where cuBLAS' faster tensor-core path outweighs the extra traffic, each matrix is dequantized
 * into one bf16 scratch matrix (the largest one's size) just before its cuBLAS GEMM; in prefill,
 * a layer's in_proj and out_proj are instead dequantized while the layer before runs, on a stream of
 * lower priority, into one of two slots (gpu_prefill).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <map>
#include <string>
#include <vector>

#include "host_copy.cuh"
#include "kernels.cuh"

extern "C" {
#include "gpu.h"
}

#define CUBLAS_WORKSPACE (32u << 20)
#define MAX_GRAPH_NB 256
#define Q8_GEMM_MAX_T 128 /* the default of q8_gemm_max_T: where the q8 GEMM stops beating dequantization + cuBLAS (results/gpu.md) */

struct GpuBackend;

/** The device copy of one Mamba2State. */
struct GpuStateCopy {
    Mamba2StateDevice dev; /* first member: st->device points here */
    GpuBackend *gb;
    Mamba2State *st; /* the host state this copy belongs to */
    float *conv; /* [L, conv_dim, K−1] */
    void *ssm;   /* [L, H, P, N] fp32 or bf16 */
    int ssm_bf16;
};

/* Kernels of a decode step of 1-4 sequences that MAMBA2_GPU_SKIP leaves out or empties (GpuBackend::skip). */
enum { SKIP_IN = 1u, SKIP_STEP = 2u, SKIP_OUT = 4u, SKIP_LM = 8u, SKIP_EMPTY = 16u };

struct GpuBackend {
    Mamba2Backend base; /* first member: the Mamba2Backend * handed out points here */
    GpuDims g;
    int state_bf16;
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *cublas_ws;
    /* prefill's second stream: the dt rows' product, dt and the SSD's cumsum run there beside the
     * in_proj GEMM (gpu_prefill), forked after the RMSNorm and joined before the state walk */
    cudaStream_t side;
    cublasHandle_t cublas_side;
    void *cublas_side_ws;
    cudaEvent_t fork, join;
    /* MAMBA2_GPU_CONV_STATE_SIDE=1: each layer's conv-state update on the side stream too, after the
     * conv (conv_done), so that the state walk follows the conv directly; the next layer's in_proj,
     * which rewrites the [z | xBC] it reads, waits for it (conv_saved) */
    bool conv_state_side;
    cudaEvent_t conv_done, conv_saved;
    /* weights */
    std::vector<void *> allocations;
    std::vector<GpuLayer> layers;
    const bf16 *emb, *lm_head; /* lm_head NULL with q8 weights (unless tied: then the embedding table) */
    GemvWeights wf;       /* GEMV_BF16, or the q8 product (MAMBA2_GPU_Q8_DOT: "dp4a" or "float") */
    int gemv_stream;      /* the streamed decode GEMV where it takes the shape: from this many sequences (0: never; MAMBA2_GPU_GEMV, see gpu_create) */
    int gemv_stage;       /* q8 dp4a, one sequence: out_proj's second pass staged in shared memory (MAMBA2_GPU_GEMV_STAGE, see gpu_create) */
    bool gemm_decode_in, gemm_decode_out, gemm_decode_lm; /* batched decode: which products gemm_decode.cu takes ... */
    int gemm_decode_max_nb; /* ... up to how many sequences (MAMBA2_GPU_GEMM_DECODE_ON / _MAX_NB, see gpu_create) ... */
    bool gemm_decode_rms, gemm_decode_gated; /* ... with RMSNorm (in_proj, lm_head), the grouped norm (out_proj) in its prologue */
    bool gemm_decode_scale;                  /* ... the grouped norm after out_proj's product (PRO_GROUPSCALE) */
    bool gemm_decode_next;                   /* ... out_proj handing the next norm its input (PRO_ROWSCALE after it) */
    bool step_rounds_y;   /* q8 dp4a: the SSD step rounds y to int8 for out_proj (MAMBA2_GPU_Q8_ROUND_Y, see gpu_create) */
    unsigned skip;        /* decode of 1-4 sequences: kernels left out, for timing only (MAMBA2_GPU_SKIP, see gpu_create) */
    GpuQ8 lm_head_q8;     /* q8 weights: lm_head quantized */
    double matrix_bytes;  /* in_proj, out_proj of every layer and lm_head as held (q8: values + scales) */
    bf16 *deq;            /* q8 weights: [deq_elems] scratch the cuBLAS paths dequantize a matrix into */
    size_t deq_elems;
    /* q8 prefill through cuBLAS: each layer's in_proj and out_proj dequantized one layer ahead on
     * their own stream, into two slots used in turn (gpu_prefill; MAMBA2_GPU_Q8_DEQ_AHEAD, see gpu_create) */
    int deq_ahead;                         /* 0: off (dequantized on the main stream before each GEMM); 2: main streams raised */
    cudaStream_t deq_stream;
    cudaEvent_t deq_start, deq_ready[2], deq_free[2];
    bf16 *deq_slot[2];                     /* [in_proj rows · d + d · d_in] each: a layer's in_proj, then out_proj */
    int q8_gemm_max_T;    /* q8 weights: products of at most this many tokens take the q8 GEMM (0: none) */
    const float *norm_f;
    /* prefill buffers, for up to cap_T tokens */
    int cap_T;
    int32_t *tokens;
    float *h, *dt_raw, *dt, *y, *logits;
    bf16 *u, *zxbcdt, *xbc, *yn; /* zxbcdt: [T, d_in + conv_dim] (z and xBC; dt goes to dt_raw [H, T]) */
    float *zx32; /* q8 weights, prompts of at most GEMM_Q8_SKINNY_MAX_T tokens: [T, d_in + conv_dim] in_proj's fp32 sums (gemm_q8_zx) */
    bool q8_zx_few; /* gemm_q8_zx() may take the few-token kernel (MAMBA2_GPU_Q8_ZX_FEW=0: never, for comparisons) */
    void *ssd_work;
    /* decode buffers, for up to cap_B sequences */
    int cap_B;
    int32_t *step_tokens;
    float *sh, *sx, *szx, *sxbc, *sdt, *sy, *slogits; /* sx: h·w of the next norm */
    unsigned *tickets;    /* [GEMM_DECODE_TICKETS] the decode GEMM's hand-off counters (zeros between launches) */
    bf16 *su, *syn;
    int8_t *syq; /* [cap_B, d_in] y rounded to int8 per block of 32 by the SSD step (step_rounds_y) ... */
    float *sya;  /* ... [cap_B, d_in / 32] and each block's max|y| */
    float *norm_sums; /* ss_h [L+1, cap_B] then ss_y [L, cap_B, G]: sums of squares for the decode norms */
    float **conv_ptrs; /* [cap_B] device array of device pointers */
    void **ssm_ptrs;
    int32_t *host_tokens; /* pinned staging */
    float *host_logits;   /* pinned [cap_B, V]: the logits come back through it */
    void **host_ptrs;     /* pinned: conv pointers then ssm pointers */
    std::vector<cudaEvent_t> logit_events; /* one per piece of the logits' copy to the host */
    int logits_threads;   /* host threads of that copy (MAMBA2_GPU_LOGITS_THREADS, see gpu_create) */
    bool conv_seqs;       /* batched conv + dt step: several sequences a thread (launch_conv_dt_step) */
    cudaGraphExec_t graph[MAX_GRAPH_NB + 1];
    /* live device states, synced back when the backend goes away */
    std::vector<GpuStateCopy *> live;
    /* MAMBA2_GPU_PROFILE=1: events between kernels (graphs off), summed per label, printed at exit */
    bool profile;
    std::vector<std::pair<const char *, cudaEvent_t>> marks;
    std::map<std::string, double> prof_ms;
    int prof_prefills, prof_steps;
};

/* Record that the kernels enqueued since the last mark belong to @p label. */
static void prof_mark(GpuBackend *gb, const char *label) {
    if (!gb->profile) return;
    cudaEvent_t e;
    cudaEventCreate(&e);
    cudaEventRecord(e, gb->stream);
    gb->marks.push_back({label, e});
}

/* Add the time between consecutive marks to their labels (after the stream has finished). */
static void prof_collect(GpuBackend *gb, const char *phase) {
    if (!gb->profile) return;
    for (size_t i = 1; i < gb->marks.size(); i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, gb->marks[i - 1].second, gb->marks[i].second);
        gb->prof_ms[std::string(phase) + " " + gb->marks[i].first] += ms;
    }
    for (auto &m : gb->marks) cudaEventDestroy(m.second);
    gb->marks.clear();
}

static void prof_report(GpuBackend *gb) {
    if (!gb->profile || gb->prof_ms.empty()) return;
    fprintf(stderr, "\nGPU profile (MAMBA2_GPU_PROFILE): %d prefills, %d steps, milliseconds per call\n", gb->prof_prefills,
            gb->prof_steps);
    for (auto &kv : gb->prof_ms) {
        int calls = kv.first.compare(0, 7, "prefill") == 0 ? gb->prof_prefills : gb->prof_steps;
        fprintf(stderr, "  %-40s %10.3f\n", kv.first.c_str(), kv.second / (calls ? calls : 1));
    }
}

static GpuBackend *gpu_of(Mamba2Backend *b) { return (GpuBackend *)b; }

/* ------------------------------------------------------------------ allocation helpers */

static int dev_alloc(GpuBackend *gb, void **p, size_t bytes, const char *what, Mamba2Error *err) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    if (cudaMalloc(p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return mamba2_fail(err, "GPU out of memory for %s: needs %.1f MiB, %.1f MiB free of %.1f MiB", what,
                           bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
    }
    return 0;
}

/* ------------------------------------------------------------------ weights */

typedef struct {
    GpuBackend *gb;
    const Mamba2BackendOptions *opt;
    double done, total;
    void *pinned; /* staging buffer */
    size_t pinned_bytes;
    void *stage; /* q8: device staging buffer of pinned_bytes (the rows being quantized) */
} Upload;

static void progress(Upload *up, double bytes) {
    up->done += bytes;
    if (up->opt->progress) up->opt->progress(up->opt->progress_ctx, up->done, up->total, "uploading weights");
}

/* Upload a matrix as bf16, converting from f32/f16 through the pinned buffer when needed. */
static int upload_bf16(Upload *up, const Mamba2Tensor *t, const bf16 **out, Mamba2Error *err) {
    int64_t n = mamba2_tensor_numel(t);
    bf16 *d;
    if (dev_alloc(up->gb, (void **)&d, (size_t)n * 2, t->name, err)) return -1;
    up->gb->allocations.push_back(d);
    size_t chunk = up->pinned_bytes / 2; /* elements per piece */
    for (int64_t i = 0; i < n; i += (int64_t)chunk) {
        size_t m = (size_t)(n - i < (int64_t)chunk ? n - i : (int64_t)chunk);
        uint16_t *stage = (uint16_t *)up->pinned;
        if (t->dtype == MAMBA2_BF16) memcpy(stage, (const uint16_t *)t->data + i, m * 2);
        else
            for (size_t k = 0; k < m; k++) stage[k] = mamba2_f32_to_bf16(mamba2_tensor_get(t, i + (int64_t)k));
        CUDA_TRY(cudaMemcpy(d + i, stage, m * 2, cudaMemcpyHostToDevice));
        progress(up, (double)m * mamba2_dtype_size(t->dtype));
    }
    *out = d;
    return 0;
}

/* Quantize a matrix to q8 on the device: whole rows go through the pinned buffer to the device
 * staging buffer (bf16 as stored; f32 and f16 widened to f32), and q8_quantize_kernel writes their
 * values and scales. The bf16 or f32 matrix is never whole on the device. */
static int upload_q8(Upload *up, const Mamba2Tensor *t, GpuQ8 *out, Mamba2Error *err) {
    const int rows = (int)t->shape[0], K = (int)t->shape[1], Kq = round_up(K, Q8_SCALE_BLOCK);
    const int src_f32 = t->dtype != MAMBA2_BF16, esize = src_f32 ? 4 : 2;
    int8_t *q;
    uint16_t *d;
    if (dev_alloc(up->gb, (void **)&q, (size_t)rows * Kq, t->name, err)) return -1;
    up->gb->allocations.push_back(q);
    if (dev_alloc(up->gb, (void **)&d, q8_scale_alloc_bytes(rows, Kq), t->name, err)) return -1;
    up->gb->allocations.push_back(d);
    int piece = (int)(up->pinned_bytes / ((size_t)K * esize)); /* rows per piece */
    if (piece < 1) return mamba2_fail(err, "%s: a row of %d weights does not fit the upload buffer", t->name, K);
    for (int r0 = 0; r0 < rows; r0 += piece) {
        int n = rows - r0 < piece ? rows - r0 : piece;
        size_t m = (size_t)n * K, first = (size_t)r0 * K;
        if (!src_f32) memcpy(up->pinned, (const uint16_t *)t->data + first, m * 2);
        else
            for (size_t k = 0; k < m; k++) ((float *)up->pinned)[k] = mamba2_tensor_get(t, (int64_t)(first + k));
        CUDA_TRY(cudaMemcpy(up->stage, up->pinned, m * esize, cudaMemcpyHostToDevice));
        launch_q8_quantize(up->stage, src_f32, n, r0, q, d, K, Kq, 0); /* the legacy stream: after the copy, before the next */
        LAUNCH_TRY();
        progress(up, (double)m * mamba2_dtype_size(t->dtype));
    }
    CUDA_TRY(cudaDeviceSynchronize());
    out->q = q, out->d = d, out->rows = rows, out->K = K, out->Kq = Kq;
    up->gb->matrix_bytes += (double)rows * Kq + (double)rows * (Kq / Q8_SCALE_BLOCK) * 2; /* 1 + 2/64 bytes a weight */
    return 0;
}

/* A projection matrix: bf16, or q8 when the backend quantizes (then @p bf16_out stays NULL). */
static int upload_matrix(Upload *up, const Mamba2Tensor *t, const bf16 **bf16_out, GpuQ8 *q8_out, Mamba2Error *err) {
    if (up->gb->wf != GEMV_BF16) return upload_q8(up, t, q8_out, err);
    up->gb->matrix_bytes += (double)mamba2_tensor_numel(t) * 2;
    return upload_bf16(up, t, bf16_out, err);
}

/* Upload a small vector as fp32, through @p fn (identity when NULL). */
static int upload_f32(Upload *up, const Mamba2Tensor *t, int64_t n, float (*fn)(float), const float **out,
                      Mamba2Error *err) {
    std::vector<float> host((size_t)n, 0.0f);
    for (int64_t i = 0; t && t->data && i < n; i++) {
        float v = mamba2_tensor_get(t, i);
        host[(size_t)i] = fn ? fn(v) : v;
    }
    float *d;
    if (dev_alloc(up->gb, (void **)&d, (size_t)n * 4, t && t->name ? t->name : "a vector", err)) return -1;
    up->gb->allocations.push_back(d);
    CUDA_TRY(cudaMemcpy(d, host.data(), (size_t)n * 4, cudaMemcpyHostToDevice));
    if (t && t->data) progress(up, (double)n * mamba2_dtype_size(t->dtype));
    *out = d;
    return 0;
}

static float neg_exp(float v) { return -expf(v); }

static void count_bytes(const Mamba2Tensor *t, void *ctx) {
    *(double *)ctx += (double)mamba2_tensor_numel(t) * mamba2_dtype_size(t->dtype);
}

static int upload_weights(GpuBackend *gb, const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Error *err) {
    Upload up = {gb, opt, 0, 0, NULL, 64u << 20, NULL};
    mamba2_model_foreach_tensor(m, count_bytes, &up.total);
    CUDA_TRY(cudaMallocHost(&up.pinned, up.pinned_bytes));
    if (gb->wf != GEMV_BF16 && dev_alloc(gb, &up.stage, up.pinned_bytes, "the quantization's staging buffer", err)) {
        cudaFreeHost(up.pinned);
        return -1;
    }
    const Mamba2Config *c = &m->cfg;
    int rc = upload_bf16(&up, &m->w.embeddings, &gb->emb, err);
    if (!rc && c->tie_embeddings) { /* lm_head is the embedding table: bf16 already, or quantized once more */
        gb->lm_head = gb->emb;
        if (gb->wf != GEMV_BF16) {
            count_bytes(&m->w.embeddings, &up.total); /* read a second time */
            rc = upload_q8(&up, &m->w.embeddings, &gb->lm_head_q8, err);
        }
        else gb->matrix_bytes += (double)mamba2_tensor_numel(&m->w.embeddings) * 2;
    } else if (!rc)
        rc = upload_matrix(&up, &m->w.lm_head, &gb->lm_head, &gb->lm_head_q8, err);
    if (!rc) rc = upload_f32(&up, &m->w.norm_f, c->d_model, NULL, &gb->norm_f, err);
    gb->layers.resize(c->n_layer);
    for (int l = 0; l < c->n_layer && !rc; l++) {
        const Mamba2LayerWeights *w = &m->w.layers[l];
        GpuLayer *d = &gb->layers[l];
        rc = upload_matrix(&up, &w->in_proj, &d->in_proj, &d->in_proj_q8, err) ||
             upload_matrix(&up, &w->out_proj, &d->out_proj, &d->out_proj_q8, err) ||
             upload_f32(&up, &w->norm, c->d_model, NULL, &d->norm_w, err) ||
             upload_f32(&up, &w->conv_w, (int64_t)c->conv_dim * c->d_conv, NULL, &d->conv_w, err) ||
             upload_f32(&up, w->conv_b.data ? &w->conv_b : NULL, c->conv_dim, NULL, &d->conv_b, err) ||
             upload_f32(&up, &w->dt_bias, c->n_heads, NULL, &d->dt_bias, err) ||
             upload_f32(&up, &w->A_log, c->n_heads, neg_exp, &d->A, err) ||
             upload_f32(&up, &w->D, c->n_heads, NULL, &d->D, err) ||
             upload_f32(&up, &w->gated_norm, c->d_inner, NULL, &d->gnorm_w, err);
    }
    cudaFreeHost(up.pinned);
    cudaFree(up.stage);
    return rc;
}

/* ------------------------------------------------------------------ device-held states */

static int state_to_host(Mamba2State *s, Mamba2Error *err) {
    GpuStateCopy *dc = (GpuStateCopy *)s->device;
    CUDA_TRY(cudaStreamSynchronize(dc->gb->stream));
    CUDA_TRY(cudaMemcpy(s->conv, dc->conv, s->conv_len * 4, cudaMemcpyDeviceToHost));
    if (!dc->ssm_bf16) {
        CUDA_TRY(cudaMemcpy(s->ssm, dc->ssm, s->ssm_len * 4, cudaMemcpyDeviceToHost));
    } else {
        std::vector<uint16_t> tmp(s->ssm_len);
        CUDA_TRY(cudaMemcpy(tmp.data(), dc->ssm, s->ssm_len * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < s->ssm_len; i++) s->ssm[i] = mamba2_bf16_to_f32(tmp[i]);
    }
    return 0;
}

static void state_release(Mamba2State *s) {
    GpuStateCopy *dc = (GpuStateCopy *)s->device;
    GpuBackend *gb = dc->gb;
    for (size_t i = 0; i < gb->live.size(); i++)
        if (gb->live[i] == dc) {
            gb->live.erase(gb->live.begin() + i);
            break;
        }
    cudaFree(dc->conv);
    cudaFree(dc->ssm);
    delete dc;
}

static void state_zero(Mamba2State *s) {
    GpuStateCopy *dc = (GpuStateCopy *)s->device;
    cudaMemsetAsync(dc->conv, 0, s->conv_len * 4, dc->gb->stream);
    cudaMemsetAsync(dc->ssm, 0, s->ssm_len * (dc->ssm_bf16 ? 2 : 4), dc->gb->stream);
    cudaStreamSynchronize(dc->gb->stream);
}

/* Make sure the device holds the current contents of @p s. */
static int ensure_on_device(GpuBackend *gb, Mamba2State *s, Mamba2Error *err) {
    if (s->device && s->device->owner == gb) return 0;
    if (mamba2_state_sync(s, err)) return -1; /* held by someone else: bring it home first */
    GpuStateCopy *dc = new GpuStateCopy();
    dc->gb = gb;
    dc->st = s;
    dc->ssm_bf16 = gb->state_bf16;
    dc->dev.owner = gb;
    dc->dev.to_host = state_to_host;
    dc->dev.release = state_release;
    dc->dev.zero = state_zero;
    size_t ssm_bytes = s->ssm_len * (dc->ssm_bf16 ? 2 : 4);
    if (dev_alloc(gb, (void **)&dc->conv, s->conv_len * 4, "a sequence's conv state", err) ||
        dev_alloc(gb, &dc->ssm, ssm_bytes, "a sequence's SSM state", err)) {
        cudaFree(dc->conv);
        delete dc;
        return -1;
    }
    CUDA_TRY(cudaMemcpy(dc->conv, s->conv, s->conv_len * 4, cudaMemcpyHostToDevice));
    if (!dc->ssm_bf16) {
        CUDA_TRY(cudaMemcpy(dc->ssm, s->ssm, ssm_bytes, cudaMemcpyHostToDevice));
    } else {
        std::vector<uint16_t> tmp(s->ssm_len);
        for (size_t i = 0; i < s->ssm_len; i++) tmp[i] = mamba2_f32_to_bf16(s->ssm[i]);
        CUDA_TRY(cudaMemcpy(dc->ssm, tmp.data(), ssm_bytes, cudaMemcpyHostToDevice));
    }
    gb->live.push_back(dc);
    s->device = &dc->dev;
    return 0;
}

/* ------------------------------------------------------------------ GEMM */

/* out[T][R] = in[T][K] · W[R][K]ᵀ (+ beta · out), bf16 operands, fp32 accumulation. Row-major
 * out is column-major [R, T], so this is cuBLAS' C = op(W) · in with op = transpose. */
static int gemm(GpuBackend *gb, const bf16 *W, int R, int K, const bf16 *in, int T, void *out, cudaDataType out_type,
                float beta, Mamba2Error *err) {
    float alpha = 1.0f;
    CUBLAS_TRY(cublasGemmEx(gb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, R, T, K, &alpha, W, CUDA_R_16BF, K, in, CUDA_R_16BF, K,
                            &beta, out, out_type, R, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* The in_proj rows of dt (H of them) over T tokens, fp32 out, as out[h][t] = Σ_k u[t][k] W[h][k], on
 * the side stream:
 * tokens as the GEMM's rows, so that the result is [H, T], the layout the SSD kernels read dt in,
 * and the dt kernel does not transpose (measurements: results/gpu.md). */
static int gemm_dt(GpuBackend *gb, const bf16 *W, int H, int K, const bf16 *u, int T, float *out, Mamba2Error *err) {
    float alpha = 1.0f, beta = 0.0f;
    CUBLAS_TRY(cublasGemmEx(gb->cublas_side, CUBLAS_OP_T, CUBLAS_OP_N, T, H, K, &alpha, u, CUDA_R_16BF, K, W, CUDA_R_16BF, K,
                            &beta, out, CUDA_R_32F, T, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* The bf16 operand of a cuBLAS GEMM: the stored matrix, or with q8 weights @p q dequantized into
 * the scratch matrix (the GEMMs that read it run after this on the same stream, and the next
 * dequantization after them). */
static const bf16 *matrix_bf16(GpuBackend *gb, const bf16 *stored, const GpuQ8 &q) {
    if (!q.q) return stored;
    launch_q8_dequantize(q, gb->deq, gb->stream);
    prof_mark(gb, "q8 dequantize");
    return gb->deq;
}

/* q8 weights: whether a product over @p n tokens takes the q8 GEMM (no dequantized copy). */
static bool q8_direct(const GpuBackend *gb, int n) { return gb->wf != GEMV_BF16 && n <= gb->q8_gemm_max_T; }

/* out[T][R] (+ beta · out) = in[T][K] · W[R][K]ᵀ through the q8 GEMM: fp32 or bf16 @p out_type, as gemm(). */
static int gemm_q8(GpuBackend *gb, const GpuQ8 &W, const bf16 *in, int T, void *out, cudaDataType out_type, float beta,
                   Mamba2Error *err) {
    GemmQ8Out o = {};
    o.out = out, o.ldn = W.rows, o.ldr = 1, o.bf16 = out_type == CUDA_R_16BF, o.add = beta != 0.0f;
    launch_gemm_q8(W, in, W.K, T, o, 0, gb->stream);
    LAUNCH_TRY();
    return 0;
}

/* q8 prefill's [z | xBC] = u · W_zxᵀ into zxbcdt (bf16) through the q8 GEMM: for a prompt the
 * few-token kernel takes (T ≤ GEMM_Q8_SKINNY_MAX_T, K a multiple of 128), its fp32 sums into zx32,
 * then rounded to bf16, as gemm_q8.cu rounds its own (the few-token kernel, which streams the weights
 * once instead of staging tiles, adds fp32 sums atomically, so it has no bf16 output; measurements:
 * results/gpu.md); other prompts straight to bf16 through gemm_q8.cu. */
static int gemm_q8_zx(GpuBackend *gb, const GpuQ8 &W, int T, Mamba2Error *err) {
    GemmQ8Out o = {}; /* zx32 as gemm_q8() writes it below */
    o.out = gb->zx32, o.ldn = W.rows, o.ldr = 1;
    if (!gb->q8_zx_few || !gb->zx32 || !gemm_q8_skinny_fits(W, W.K, T, o))
        return gemm_q8(gb, W, gb->u, T, gb->zxbcdt, CUDA_R_16BF, 0.0f, err);
    if (gemm_q8(gb, W, gb->u, T, gb->zx32, CUDA_R_32F, 0.0f, err)) return -1;
    launch_round_bf16(gb->zx32, (size_t)T * W.rows, gb->zxbcdt, gb->stream);
    LAUNCH_TRY();
    return 0;
}

/* A projection out[T][R] (+ beta · out) = in[T][K] · W[R][K]ᵀ of the stored matrix: bf16 through
 * cuBLAS; q8 through the q8 GEMM when q8_direct(), else dequantized first (matrix_bf16()). */
static int project(GpuBackend *gb, const bf16 *W, const GpuQ8 &q, int R, int K, const bf16 *in, int T, void *out,
                   cudaDataType out_type, float beta, Mamba2Error *err) {
    if (q.q && q8_direct(gb, T)) return gemm_q8(gb, q, in, T, out, out_type, beta, err);
    return gemm(gb, matrix_bf16(gb, W, q), R, K, in, T, out, out_type, beta, err);
}

/* q8 weights: the scratch matrix of matrix_bf16(), as large as the largest projection. */
static int grow_dequant(GpuBackend *gb, Mamba2Error *err) {
    if (gb->wf == GEMV_BF16 || gb->deq) return 0;
    size_t most = (size_t)gb->lm_head_q8.rows * gb->lm_head_q8.K;
    for (const GpuLayer &w : gb->layers) {
        size_t in = (size_t)w.in_proj_q8.rows * w.in_proj_q8.K, out = (size_t)w.out_proj_q8.rows * w.out_proj_q8.K;
        most = in > most ? in : most;
        most = out > most ? out : most;
    }
    if (dev_alloc(gb, (void **)&gb->deq, most * 2, "the q8 weights' dequantized matrix", err)) return -1;
    gb->deq_elems = most;
    return 0;
}

/* q8 weights, dequantized one layer ahead: the two slots, each a layer's in_proj and out_proj. */
static int grow_deq_slots(GpuBackend *gb, Mamba2Error *err) {
    if (gb->deq_slot[0]) return 0;
    const GpuLayer &w = gb->layers[0]; /* every layer has the same shapes */
    size_t elems = (size_t)w.in_proj_q8.rows * w.in_proj_q8.K + (size_t)w.out_proj_q8.rows * w.out_proj_q8.K;
    for (int i = 0; i < 2; i++)
        if (dev_alloc(gb, (void **)&gb->deq_slot[i], elems * 2, "a layer's q8 weights dequantized ahead", err)) return -1;
    return 0;
}

/* Layer @p l's in_proj and out_proj dequantized into slot l mod 2 on the dequantizing stream, and
 * the slot's ready event recorded after them. */
static int dequantize_layer(GpuBackend *gb, int l, Mamba2Error *err) {
    const GpuLayer &w = gb->layers[l];
    bf16 *slot = gb->deq_slot[l % 2];
    launch_q8_dequantize_short(w.in_proj_q8, slot, gb->deq_stream);
    launch_q8_dequantize_short(w.out_proj_q8, slot + (size_t)w.in_proj_q8.rows * w.in_proj_q8.K, gb->deq_stream);
    LAUNCH_TRY();
    CUDA_TRY(cudaEventRecord(gb->deq_ready[l % 2], gb->deq_stream));
    return 0;
}

/* ------------------------------------------------------------------ prefill */

static void free_prefill_buffers(GpuBackend *gb) {
    void *bufs[] = {gb->tokens, gb->h, gb->dt_raw, gb->dt, gb->y, gb->logits, gb->u, gb->zxbcdt, gb->xbc, gb->yn, gb->ssd_work, gb->zx32};
    for (void *p : bufs) cudaFree(p);
    gb->tokens = NULL, gb->h = gb->dt_raw = gb->dt = gb->y = gb->logits = gb->zx32 = NULL;
    gb->u = gb->zxbcdt = gb->xbc = gb->yn = NULL;
    gb->ssd_work = NULL;
    gb->cap_T = 0;
}

static int grow_prefill(GpuBackend *gb, int T, Mamba2Error *err) {
    if (T <= gb->cap_T) return 0;
    free_prefill_buffers(gb);
    const GpuDims &g = gb->g;
    size_t t = (size_t)T;
    if (dev_alloc(gb, (void **)&gb->tokens, t * 4, "prefill tokens", err) ||
        dev_alloc(gb, (void **)&gb->h, t * g.d * 4, "the residual stream", err) ||
        dev_alloc(gb, (void **)&gb->u, t * g.d * 2, "normalised inputs", err) ||
        dev_alloc(gb, (void **)&gb->zxbcdt, t * (g.d_in + g.conv_dim) * 2, "in_proj outputs", err) ||
        dev_alloc(gb, (void **)&gb->dt_raw, t * g.H * 4, "dt", err) ||
        dev_alloc(gb, (void **)&gb->xbc, t * g.conv_dim * 2, "conv outputs", err) ||
        dev_alloc(gb, (void **)&gb->dt, t * g.H * 4, "dt", err) ||
        dev_alloc(gb, (void **)&gb->y, t * g.d_in * 4, "SSD outputs", err) ||
        dev_alloc(gb, (void **)&gb->yn, t * g.d_in * 2, "normalised SSD outputs", err) ||
        dev_alloc(gb, &gb->ssd_work, ssd_work_bytes(g, T), "SSD work space", err) ||
        dev_alloc(gb, (void **)&gb->logits, t * g.V * 4, "logits", err) ||
        (gb->wf != GEMV_BF16 &&
         dev_alloc(gb, (void **)&gb->zx32, (t < GEMM_Q8_SKINNY_MAX_T ? t : GEMM_Q8_SKINNY_MAX_T) * (g.d_in + g.conv_dim) * 4,
                   "in_proj's fp32 sums", err))) {
        free_prefill_buffers(gb);
        return -1;
    }
    gb->cap_T = T;
    return 0;
}

static int gpu_prefill(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                       int all_positions, Mamba2Error *err) {
    GpuBackend *gb = gpu_of(b);
    const GpuDims &g = gb->g;
    cudaStream_t s = gb->stream;
    if (grow_prefill(gb, T, err) || (!q8_direct(gb, T) && grow_dequant(gb, err)) || ensure_on_device(gb, st, err)) return -1;
    GpuStateCopy *dc = (GpuStateCopy *)st->device;
    size_t conv_per_layer = (size_t)g.conv_dim * (g.K - 1), ssm_per_layer = (size_t)g.H * g.P * g.N;
    SSDWork work = ssd_work_carve(g, T, gb->ssd_work);

    /* q8 through cuBLAS: layer l + 1's weights are dequantized on their own stream while layer l
     * runs, into the slot layer l − 1 used (once its out_proj GEMM has read it), instead of each
     * matrix on the main stream just before its GEMM (measurements: results/gpu.md) */
    const bool ahead = gb->deq_ahead && gb->wf != GEMV_BF16 && !q8_direct(gb, T);
    if (ahead) {
        if (grow_deq_slots(gb, err)) return -1;
        CUDA_TRY(cudaEventRecord(gb->deq_start, s)); /* after every earlier use of the slots */
        CUDA_TRY(cudaStreamWaitEvent(gb->deq_stream, gb->deq_start, 0));
        if (dequantize_layer(gb, 0, err)) return -1;
    }
    CUDA_TRY(cudaMemcpyAsync(gb->tokens, tokens, (size_t)T * 4, cudaMemcpyHostToDevice, s));
    prof_mark(gb, "start");
    launch_embed(gb->tokens, T, gb->emb, g.d, gb->h, s);
    prof_mark(gb, "embed");
    for (int l = 0; l < g.L; l++) {
        const GpuLayer &w = gb->layers[l];
        const bf16 *in_deq = NULL, *out_deq = NULL; /* ahead: this layer's dequantized in_proj, out_proj */
        if (ahead) {
            if (l + 1 < g.L) {
                if (l >= 1) CUDA_TRY(cudaStreamWaitEvent(gb->deq_stream, gb->deq_free[(l + 1) % 2], 0));
                if (dequantize_layer(gb, l + 1, err)) return -1;
            }
            CUDA_TRY(cudaStreamWaitEvent(s, gb->deq_ready[l % 2], 0));
            in_deq = gb->deq_slot[l % 2];
            out_deq = in_deq + (size_t)w.in_proj_q8.rows * w.in_proj_q8.K;
            prof_mark(gb, "wait for the dequantized layer");
        }
        float *conv_state = dc->conv + l * conv_per_layer;
        void *ssm = (char *)dc->ssm + l * ssm_per_layer * (dc->ssm_bf16 ? 2 : 4);
        launch_rmsnorm_bf16(gb->h, w.norm_w, T, g.d, g.eps, gb->u, s);
        prof_mark(gb, "rmsnorm");
        /* [z | xBC] in bf16 for the conv and the tensor cores; the H dt rows in fp32, since
         * dt enters exp(dt·A) through sums over the sequence. The dt rows' product, dt and the
         * SSD's cumsum need u only: they run on the side stream, started first, beside the in_proj
         * GEMM and the conv, instead of each waiting for the kernel before it (measurements:
         * results/gpu.md). Nothing the side stream touches is written again before
         * the join: u, dt and the cumsum's arrays next change after this layer's SSD. */
        int zx_rows = g.d_in + g.conv_dim;
        const bf16 *in_proj = q8_direct(gb, T) ? NULL : in_deq ? in_deq : matrix_bf16(gb, w.in_proj, w.in_proj_q8);
        CUDA_TRY(cudaEventRecord(gb->fork, s));
        CUDA_TRY(cudaStreamWaitEvent(gb->side, gb->fork, 0));
        if (in_proj) {
            if (gemm_dt(gb, in_proj + (size_t)zx_rows * g.d, g.H, g.d, gb->u, T, gb->dt_raw, err)) return -1;
        } else { /* the dt rows stored transposed, [H, T], as gemm_dt() stores them */
            GemmQ8Out o = {};
            o.out = gb->dt_raw, o.ldn = 1, o.ldr = T;
            launch_gemm_q8(q8_rows(w.in_proj_q8, zx_rows, g.H), gb->u, g.d, T, o, 0, gb->side);
        }
        launch_dt_prefill(g, gb->dt_raw, w.dt_bias, T, gb->dt, gb->side);
        launch_ssd_cumsum(g, gb->dt, w.A, T, work, gb->side);
        CUDA_TRY(cudaEventRecord(gb->join, gb->side));
        if (gb->conv_state_side && l > 0) CUDA_TRY(cudaStreamWaitEvent(s, gb->conv_saved, 0)); /* before [z | xBC] is rewritten */
        if (in_proj ? gemm(gb, in_proj, zx_rows, g.d, gb->u, T, gb->zxbcdt, CUDA_R_16BF, 0.0f, err)
                    : gemm_q8_zx(gb, q8_rows(w.in_proj_q8, 0, zx_rows), T, err)) {
            cudaStreamWaitEvent(s, gb->join, 0); /* so that no later call rewrites u while the side stream reads it */
            return -1;
        }
        LAUNCH_TRY();
        prof_mark(gb, "gemm in_proj");
        launch_conv_prefill(g, gb->zxbcdt, conv_state, w, T, gb->xbc, s);
        if (gb->conv_state_side) {
            CUDA_TRY(cudaEventRecord(gb->conv_done, s));
            CUDA_TRY(cudaStreamWaitEvent(gb->side, gb->conv_done, 0));
            launch_conv_state_update(g, gb->zxbcdt, conv_state, T, gb->side);
            CUDA_TRY(cudaEventRecord(gb->conv_saved, gb->side));
        } else
            launch_conv_state_update(g, gb->zxbcdt, conv_state, T, s);
        prof_mark(gb, "conv");
        CUDA_TRY(cudaStreamWaitEvent(s, gb->join, 0));
        prof_mark(gb, "wait for dt + cumsum");
        launch_ssd_chunk_kernels(g, gb->xbc, gb->dt, w.D, T, ssm, dc->ssm_bf16, work, gb->y, s);
        prof_mark(gb, "ssd chunked");
        launch_gated_norm_bf16(g, gb->y, gb->zxbcdt, NULL, 1, w.gnorm_w, T, gb->yn, s);
        prof_mark(gb, "gated norm");
        if (out_deq ? gemm(gb, out_deq, g.d, g.d_in, gb->yn, T, gb->h, CUDA_R_32F, 1.0f, err)
                    : project(gb, w.out_proj, w.out_proj_q8, g.d, g.d_in, gb->yn, T, gb->h, CUDA_R_32F, 1.0f, err))
            return -1; /* h += */
        if (out_deq) CUDA_TRY(cudaEventRecord(gb->deq_free[l % 2], s)); /* the slot may be written again */
        prof_mark(gb, "gemm out_proj");
        LAUNCH_TRY();
    }
    if (gb->conv_state_side) CUDA_TRY(cudaStreamWaitEvent(s, gb->conv_saved, 0)); /* the last layer's */
    /* logits = W_head · RMSNorm(h) · w_f, for every position or the last one only */
    int first = all_positions ? 0 : T - 1, n = T - first;
    if (logits) {
        launch_rmsnorm_bf16(gb->h + (size_t)first * g.d, gb->norm_f, n, g.d, g.eps, gb->u, s);
        if (project(gb, gb->lm_head, gb->lm_head_q8, g.V, g.d, gb->u, n, gb->logits, CUDA_R_32F, 0.0f, err))
            return -1;
        prof_mark(gb, "lm head");
        CUDA_TRY(cudaMemcpyAsync(logits, gb->logits, (size_t)n * g.V * 4, cudaMemcpyDeviceToHost, s));
    }
    LAUNCH_TRY();
    CUDA_TRY(cudaStreamSynchronize(s));
    prof_collect(gb, "prefill");
    gb->prof_prefills++;
    st->pos += T;
    return 0;
}

/* ------------------------------------------------------------------ decode */

static void free_decode_buffers(GpuBackend *gb) {
    void *bufs[] = {gb->step_tokens, gb->sh, gb->sx, gb->szx, gb->sxbc, gb->sdt, gb->sy, gb->slogits, gb->su, gb->syn,
                    gb->syq, gb->sya, gb->norm_sums, gb->conv_ptrs, gb->ssm_ptrs, gb->tickets};
    for (void *p : bufs) cudaFree(p);
    cudaFreeHost(gb->host_tokens);
    cudaFreeHost(gb->host_ptrs);
    cudaFreeHost(gb->host_logits);
    gb->host_logits = NULL;
    gb->step_tokens = NULL, gb->sh = gb->sx = gb->szx = gb->sxbc = gb->sdt = gb->sy = gb->slogits = NULL;
    gb->su = gb->syn = NULL, gb->syq = NULL, gb->sya = NULL, gb->norm_sums = NULL, gb->conv_ptrs = NULL, gb->ssm_ptrs = NULL, gb->host_tokens = NULL, gb->host_ptrs = NULL;
    gb->tickets = NULL;
    for (int i = 0; i <= MAX_GRAPH_NB; i++)
        if (gb->graph[i]) cudaGraphExecDestroy(gb->graph[i]), gb->graph[i] = NULL;
    for (cudaEvent_t e : gb->logit_events) cudaEventDestroy(e);
    gb->logit_events.clear();
    gb->cap_B = 0;
}

static size_t norm_sums_count(const GpuDims &g, int nb) { return (size_t)(g.L + 1) * nb + (size_t)g.L * nb * g.G; }

static int grow_decode(GpuBackend *gb, int nb, Mamba2Error *err) {
    if (nb <= gb->cap_B) return 0;
    free_decode_buffers(gb);
    const GpuDims &g = gb->g;
    size_t B = (size_t)nb;
    if (dev_alloc(gb, (void **)&gb->step_tokens, B * 4, "decode tokens", err) ||
        dev_alloc(gb, (void **)&gb->sh, B * g.d * 4, "decode residual", err) ||
        dev_alloc(gb, (void **)&gb->sx, B * g.d * 4, "decode norm input", err) ||
        dev_alloc(gb, (void **)&gb->szx, B * g.d_in_proj * 4, "decode in_proj output", err) ||
        dev_alloc(gb, (void **)&gb->sxbc, B * g.conv_dim * 4, "decode conv output", err) ||
        dev_alloc(gb, (void **)&gb->sdt, B * g.H * 4, "decode dt", err) ||
        dev_alloc(gb, (void **)&gb->sy, B * g.d_in * 4, "decode SSD output", err) ||
        dev_alloc(gb, (void **)&gb->slogits, B * g.V * 4, "decode logits", err) ||
        dev_alloc(gb, (void **)&gb->su, B * g.d * 2, "decode normalised input", err) ||
        dev_alloc(gb, (void **)&gb->syn, B * g.d_in * 2, "decode normalised SSD output", err) ||
        (gb->step_rounds_y && (dev_alloc(gb, (void **)&gb->syq, B * g.d_in, "decode SSD output in int8", err) ||
                               dev_alloc(gb, (void **)&gb->sya, B * g.d_in / Q8_XBLOCK * 4, "decode SSD output's block maxima", err))) ||
        dev_alloc(gb, (void **)&gb->norm_sums, norm_sums_count(g, nb) * 4, "decode norm sums", err) ||
        dev_alloc(gb, (void **)&gb->conv_ptrs, B * sizeof(void *), "state pointers", err) ||
        dev_alloc(gb, (void **)&gb->ssm_ptrs, B * sizeof(void *), "state pointers", err) ||
        dev_alloc(gb, (void **)&gb->tickets, GEMM_DECODE_TICKETS * sizeof(unsigned), "decode GEMM tickets", err)) {
        free_decode_buffers(gb);
        return -1;
    }
    CUDA_TRY(cudaMemset(gb->tickets, 0, GEMM_DECODE_TICKETS * sizeof(unsigned))); /* each launch leaves them so */
    CUDA_TRY(cudaMallocHost(&gb->host_tokens, B * 4));
    CUDA_TRY(cudaMallocHost(&gb->host_ptrs, 2 * B * sizeof(void *)));
    CUDA_TRY(cudaMallocHost(&gb->host_logits, B * g.V * 4));
    gb->cap_B = nb;
    return 0;
}

/* The most sequences the decode GEMM takes with a norm in its prologue: past 16, each block's
 * conversion of its fp32 inputs (as many bytes as its weights at 64 sequences) cost more than the
 * norm kernel before a plain product (results/gpu.md) */
#define GEMM_DECODE_PRO_MAX_NB 16

/* Whether the batched step runs a product through gemm_decode.cu with prologue @p pro (X bf16 for
 * PRO_NONE and PRO_GROUPSCALE, else fp32): @p on (the product is one MAMBA2_GPU_GEMM_DECODE_ON
 * names), the batch within its range (with a prologue that converts, to GEMM_DECODE_PRO_MAX_NB), the
 * prologue one MAMBA2_GPU_GEMM_DECODE_NORMS names, and the kernel takes the operands. */
static bool gemm_decode_runs(const GpuBackend *gb, bool on, GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, const void *X,
                             int ldx) {
    return on && a.nb <= gb->gemm_decode_max_nb && (!GD_PRO_CONVERTS(pro) || a.nb <= GEMM_DECODE_PRO_MAX_NB) &&
           (pro != PRO_RMSNORM || gb->gemm_decode_rms) && (pro != PRO_GATEDNORM || gb->gemm_decode_gated) &&
           (pro != PRO_GROUPSCALE || gb->gemm_decode_scale) && gemm_decode_takes(pro, epi, a, X, ldx);
}

/* A batched-decode product through gemm_decode.cu where gemm_decode_runs(): 1 launched, 0 not taken
 * (the caller runs the norm kernel and cuBLAS, or the kernel without the prologue), −1 failed: the
 * driver would not describe the operands as tensor maps (@p err names product @p what of layer
 * @p layer, −1: none). */
static int gemm_decode_try(GpuBackend *gb, bool on, GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, const void *X,
                           int ldx, const char *what, int layer, Mamba2Error *err) {
    if (!gemm_decode_runs(gb, on, pro, epi, a, X, ldx)) return 0;
    if (!launch_gemm_decode(pro, epi, a, X, ldx, gb->stream)) return 1;
    const char *fix = "MAMBA2_GPU_GEMM_DECODE=0 runs cuBLAS instead";
    if (layer < 0) return mamba2_fail(err, "decode GEMM: the driver would not make tensor maps for %s (%s)", what, fix);
    return mamba2_fail(err, "decode GEMM: the driver would not make tensor maps for %s of layer %d (%s)", what, layer, fix);
}

/* An RMSNorm-ed product of the batched step, a.out = W · rmsnorm(h, norm_w) (in_proj, lm_head): where
 * the out_proj before handed the norm its input (@p handed_ss: Σ h² [nb], bf16(h·w) in su; hands_off()),
 * the decode GEMM with the norm after the product; else the decode GEMM with the norm in its prologue,
 * else the norm kernel, then the decode GEMM or cuBLAS. 0, or −1 with @p err set. */
static int normed_product(GpuBackend *gb, bool on, GemvArgs a, const float *norm_w, const float *handed_ss, const GpuQ8 &Wq,
                          const char *what, int layer, Mamba2Error *err) {
    a.ss_out = NULL, a.xw_out = NULL, a.xw_next = NULL; /* a stored product: no hand-off of its own */
    if (handed_ss) { /* hands_off() said the decode GEMM takes it */
        a.ss_in = handed_ss;
        const int took = gemm_decode_try(gb, on, PRO_ROWSCALE, EPI_STORE, a, gb->su, a.cols, what, layer, err);
        if (took == 0) /* not expected: hands_off() asked the same question */
            mamba2_fail(err, "decode GEMM: %s declined the norm handed over to it (layer %d; -1: after the last)", what, layer);
        return took == 1 ? 0 : -1;
    }
    a.in_w = norm_w;
    int took = gemm_decode_try(gb, on, PRO_RMSNORM, EPI_STORE, a, gb->sh, a.cols, what, layer, err);
    if (took) return took < 0 ? -1 : 0;
    launch_rmsnorm_bf16(gb->sh, norm_w, a.nb, a.cols, gb->g.eps, gb->su, gb->stream);
    took = gemm_decode_try(gb, on, PRO_NONE, EPI_STORE, a, gb->su, a.cols, what, layer, err);
    if (took) return took < 0 ? -1 : 0;
    return project(gb, a.W, Wq, a.rows, a.cols, gb->su, a.nb, a.out, CUDA_R_32F, 0.0f, err) ? -1 : 0;
}

/* The most sequences out_proj hands the next norm its input for: at 64 the last block's read-back of
 * its rows (124 x 64 values) cost more than the norm kernel it saves (results/gpu.md) */
#define HAND_OFF_MAX_NB 32

/* Whether out_proj of layer @p l (its arguments @p a, the decode GEMM's) hands the next norm its input
 * (gemm_decode.cu's hand-off): asked for ("next" in MAMBA2_GPU_GEMM_DECODE_NORMS), at most
 * HAND_OFF_MAX_NB sequences, and the next product, in_proj of layer l + 1 or lm_head, runs through the
 * decode GEMM with the norm after it. */
static bool hands_off(const GpuBackend *gb, const GemvArgs &a, int l) {
    if (!gb->gemm_decode_next || a.nb > HAND_OFF_MAX_NB) return false;
    const GpuDims &g = gb->g;
    GemvArgs nx = a;
    const bool last = l + 1 == g.L;
    nx.W = last ? gb->lm_head : gb->layers[l + 1].in_proj, nx.rows = last ? g.V : g.d_in_proj, nx.cols = g.d;
    nx.ss_in = gb->norm_sums + (size_t)(l + 1) * a.nb, nx.ss_out = NULL, nx.xw_next = NULL, nx.xw_out = NULL; /* ss_h[l + 1] */
    return gemm_decode_runs(gb, last ? gb->gemm_decode_lm : gb->gemm_decode_in, PRO_ROWSCALE, EPI_STORE, nx, gb->su, g.d);
}

/* The kernels of one decode step for nb sequences (captured into a graph). */
static int enqueue_step(GpuBackend *gb, int nb, Mamba2Error *err) {
    const GpuDims &g = gb->g;
    cudaStream_t s = gb->stream;
    prof_mark(gb, "start");
    launch_embed(gb->step_tokens, nb, gb->emb, g.d, gb->sh, s);
    GemvArgs a = {};
    a.wf = gb->wf;
    a.stream = gb->gemv_stream && nb >= gb->gemv_stream;
    a.stage = gb->gemv_stage;
    a.nb = nb;
    a.eps = g.eps;
    a.dims = g;
    a.conv_states = gb->conv_ptrs;
    a.xbc = gb->sxbc;
    a.dt = gb->sdt;
    /* Each norm's sum of squares is accumulated by the kernel that produces its input:
     * ss_h[l] (Σ h² entering layer l) by the previous out_proj, ss_y[l] by the SSD step. */
    float *ss_h = gb->norm_sums, *ss_y = gb->norm_sums + (size_t)(g.L + 1) * nb;
    CUDA_TRY(cudaMemsetAsync(gb->norm_sums, 0, norm_sums_count(g, nb) * 4, s)); /* the sums add atomically */
    if (nb <= 4) launch_sum_squares(gb->sh, nb, g.d, gb->layers[0].norm_w, ss_h, gb->sx, s);
    prof_mark(gb, "embed");
    bool handed = false; /* the batched path: the last out_proj handed the next norm its input (hands_off()) */
    for (int l = 0; l < g.L; l++) {
        const GpuLayer &w = gb->layers[l];
        a.layer = w;
        a.l = l;
        if (nb <= 4) { /* fused GEMV path: weights streamed once, norms folded into the GEMVs */
            /* the GEMV inputs arrive multiplied by their norm weights (sx = h·w, sy = y·w) */
            a.W = w.in_proj, a.Wq = w.in_proj_q8, a.rows = g.d_in_proj, a.cols = g.d, a.x = gb->sx, a.out = gb->szx;
            a.ss_in = ss_h + (size_t)l * nb, a.ss_out = NULL, a.xw_out = NULL, a.xq = NULL, a.xa = NULL;
            if (!(gb->skip & SKIP_IN)) launch_gemv(PRO_RMSNORM, EPI_INPROJ, a, s);
            prof_mark(gb, "gemv in_proj + conv");
            if (gb->skip & SKIP_EMPTY) launch_pdl_noop(g.H * nb, 512, s); /* the step's grid, doing nothing */
            else if (!(gb->skip & SKIP_STEP))
                launch_ssd_step(g, w, gb->sxbc, gb->sdt, gb->szx, gb->ssm_ptrs, gb->state_bf16, l, nb, StepOut{gb->sy, NULL},
                                ss_y + (size_t)l * nb * g.G, w.gnorm_w, gb->syq, gb->sya, s);
            prof_mark(gb, "ssd step");
            a.W = w.out_proj, a.Wq = w.out_proj_q8, a.rows = g.d, a.cols = g.d_in, a.x = gb->sy, a.groups = g.G;
            a.xq = gb->syq, a.xa = gb->sya; /* NULL unless the step rounded y */
            a.ss_in = ss_y + (size_t)l * nb * g.G, a.ss_out = ss_h + (size_t)(l + 1) * nb, a.out = gb->sh;
            a.next_w = l + 1 < g.L ? gb->layers[l + 1].norm_w : gb->norm_f, a.xw_out = gb->sx;
            if (!(gb->skip & SKIP_OUT)) launch_gemv(PRO_GATEDNORM, EPI_RESIDUAL, a, s);
            prof_mark(gb, "gemv out_proj");
        } else { /* batched path: GEMMs (gemm_decode.cu's where it takes them, else cuBLAS) around the small kernels */
            /* the hand-off's arguments are out_proj's alone: cleared here, set again where hands_off() says */
            a.W = w.in_proj, a.rows = g.d_in_proj, a.cols = g.d, a.out = gb->szx, a.ss_out = NULL, a.xw_out = NULL, a.xw_next = NULL;
            if (normed_product(gb, gb->gemm_decode_in, a, w.norm_w, handed ? ss_h + (size_t)l * nb : NULL, w.in_proj_q8, "in_proj", l, err))
                return -1;
            prof_mark(gb, handed ? "in_proj, norm after" : "rmsnorm + in_proj");
            launch_conv_dt_step(g, w, gb->szx, gb->conv_ptrs, l, nb, gb->sxbc, gb->sdt, gb->conv_seqs, s);
            prof_mark(gb, "conv + dt");
            /* out_proj with the grouped norm in the decode GEMM: in its prologue (fold: the SSD step
             * writes y·w and its groups' Σ y², as for the GEMV), or after its product (scaled: the same
             * in bf16); else the SSD step writes y for the norm kernel */
            float *ss_yl = ss_y + (size_t)l * nb * g.G; /* [nb, G] */
            a.W = w.out_proj, a.rows = g.d, a.cols = g.d_in, a.out = gb->sh, a.groups = g.G, a.ss_in = ss_yl;
            const bool hand = hands_off(gb, a, l); /* the hand-off's arguments, where the decode GEMM takes out_proj */
            if (hand)
                a.ss_out = ss_h + (size_t)(l + 1) * nb, a.next_w = l + 1 < g.L ? gb->layers[l + 1].norm_w : gb->norm_f,
                a.xw_next = gb->su, a.tickets = gb->tickets;
            const bool fold = gemm_decode_runs(gb, gb->gemm_decode_out, PRO_GATEDNORM, EPI_RESIDUAL, a, gb->sy, g.d_in);
            const bool scaled = !fold && gemm_decode_runs(gb, gb->gemm_decode_out, PRO_GROUPSCALE, EPI_RESIDUAL, a, gb->syn, g.d_in);
            launch_ssd_step(g, w, gb->sxbc, gb->sdt, gb->szx, gb->ssm_ptrs, gb->state_bf16, l, nb,
                            StepOut{gb->sy, scaled ? gb->syn : NULL}, fold || scaled ? ss_yl : NULL,
                            fold || scaled ? w.gnorm_w : NULL, NULL, NULL, s);
            prof_mark(gb, "ssd step");
            int took;
            if (fold || scaled) /* launched (1) or failed (−1): gemm_decode_runs() said it takes them */
                took = gemm_decode_try(gb, gb->gemm_decode_out, fold ? PRO_GATEDNORM : PRO_GROUPSCALE, EPI_RESIDUAL, a,
                                       fold ? (const void *)gb->sy : (const void *)gb->syn, g.d_in, "out_proj", l, err);
            else {
                launch_gated_norm_bf16(g, gb->sy, NULL, NULL, 0, w.gnorm_w, nb, gb->syn, s);
                prof_mark(gb, "gated norm");
                took = gemm_decode_try(gb, gb->gemm_decode_out, PRO_NONE, EPI_RESIDUAL, a, gb->syn, g.d_in, "out_proj", l, err);
            }
            if (took < 0 || (!took && project(gb, w.out_proj, w.out_proj_q8, g.d, g.d_in, gb->syn, nb, gb->sh, CUDA_R_32F, 1.0f, err)))
                return -1;
            handed = hand && took;
            prof_mark(gb, took ? "decode gemm out_proj" : "gemm out_proj");
        }
    }
    if (nb <= 4) {
        a.W = gb->lm_head, a.Wq = gb->lm_head_q8, a.rows = g.V, a.cols = g.d, a.x = gb->sx, a.out = gb->slogits;
        a.ss_in = ss_h + (size_t)g.L * nb, a.ss_out = NULL, a.xw_out = NULL, a.xq = NULL, a.xa = NULL;
        if (!(gb->skip & SKIP_LM)) launch_gemv(PRO_RMSNORM, EPI_STORE, a, s);
    } else {
        a.W = gb->lm_head, a.rows = g.V, a.cols = g.d, a.out = gb->slogits;
        if (normed_product(gb, gb->gemm_decode_lm, a, gb->norm_f, handed ? ss_h + (size_t)g.L * nb : NULL, gb->lm_head_q8, "lm_head", -1, err))
            return -1;
    }
    prof_mark(gb, "lm head");
    LAUNCH_TRY();
    return 0;
}

/* Whether host array @p p is page-locked (cudaMallocHost, cudaHostRegister: what gpu_host_alloc()
 * gives), so that the GPU can write it directly. Any answer is safe: a copy into pageable memory
 * is still correct, only staged by the driver. */
static bool host_pinned(const void *p) {
    cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
        cudaGetLastError(); /* not an error of the step's */
        return false;
    }
    return at.type == cudaMemoryTypeHost;
}

/* Bring the step's logits [nb, V] to the caller's array: where that is page-locked, in one transfer;
 * else through the pinned buffer, in pieces whose host copies run on gb->logits_threads threads
 * beside the later pieces' transfers (host_copy.cu); with one thread, more than LOGITS_PIECES_MAX
 * bytes go straight to the pageable array instead, which the driver pipelines faster than one
 * thread's copies at that size (measurements: results/gpu.md). */
#define LOGITS_PIECES_MAX (16u << 20)
static int logits_to_host(GpuBackend *gb, int nb, float *logits, Mamba2Error *err) {
    cudaStream_t s = gb->stream;
    const size_t bytes = (size_t)nb * gb->g.V * 4;
    if ((gb->logits_threads <= 1 && bytes > LOGITS_PIECES_MAX) || host_pinned(logits)) {
        CUDA_TRY(cudaMemcpyAsync(logits, gb->slogits, bytes, cudaMemcpyDeviceToHost, s));
        CUDA_TRY(cudaStreamSynchronize(s));
        return 0;
    }
    CUDA_TRY(copy_to_pageable(logits, gb->slogits, bytes, gb->host_logits, gb->logit_events, gb->logits_threads, s));
    return 0;
}

static int gpu_step(Mamba2Backend *b, Mamba2State **states, const int32_t *tokens, int nb, float *logits,
                    Mamba2Error *err) {
    GpuBackend *gb = gpu_of(b);
    cudaStream_t s = gb->stream;
    if (grow_decode(gb, nb, err) || (nb > 4 && !q8_direct(gb, nb) && grow_dequant(gb, err))) return -1;
    for (int i = 0; i < nb; i++) {
        if (ensure_on_device(gb, states[i], err)) return -1;
        GpuStateCopy *dc = (GpuStateCopy *)states[i]->device;
        gb->host_ptrs[i] = dc->conv;
        gb->host_ptrs[nb + i] = dc->ssm;
        gb->host_tokens[i] = tokens[i];
    }
    CUDA_TRY(cudaMemcpyAsync(gb->step_tokens, gb->host_tokens, nb * 4, cudaMemcpyHostToDevice, s));
    CUDA_TRY(cudaMemcpyAsync(gb->conv_ptrs, gb->host_ptrs, nb * sizeof(void *), cudaMemcpyHostToDevice, s));
    CUDA_TRY(cudaMemcpyAsync(gb->ssm_ptrs, gb->host_ptrs + nb, nb * sizeof(void *), cudaMemcpyHostToDevice, s));
    if (nb <= MAX_GRAPH_NB && !gb->profile) { /* replay the step from a graph: one launch instead of ~200 */
        if (!gb->graph[nb]) {
            cudaGraph_t graph;
            CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
            int rc = enqueue_step(gb, nb, err);
            cudaError_t e = cudaStreamEndCapture(s, &graph);
            if (rc) return -1;
            if (e != cudaSuccess) return mamba2_fail(err, "CUDA graph capture failed: %s", cudaGetErrorString(e));
            CUDA_TRY(cudaGraphInstantiate(&gb->graph[nb], graph, 0));
            cudaGraphDestroy(graph);
        }
        CUDA_TRY(cudaGraphLaunch(gb->graph[nb], s));
    } else if (enqueue_step(gb, nb, err)) {
        return -1;
    }
    if (logits_to_host(gb, nb, logits, err)) return -1;
    CUDA_TRY(cudaStreamSynchronize(s));
    prof_collect(gb, nb <= 4 ? "step (gemv)" : "step (cublas)");
    gb->prof_steps++;
    for (int i = 0; i < nb; i++) states[i]->pos++;
    return 0;
}

/* ------------------------------------------------------------------ life cycle */

static int gpu_roofline(Mamba2Backend *b, double *read_gbps, double *gemm_gflops, Mamba2Error *err) {
    return mamba2_gpu_roofline(read_gbps, gemm_gflops, err);
}

static double gpu_matrix_bytes(Mamba2Backend *b) { return gpu_of(b)->matrix_bytes; }

static void gpu_kernels(Mamba2Backend *b, Mamba2KernelNames *out) {
    GemvWeights wf = gpu_of(b)->wf;
    int max_T = gpu_of(b)->q8_gemm_max_T;
    const GpuBackend *gb = gpu_of(b);
    if (wf == GEMV_BF16 && gemm_decode_enabled() && (gb->gemm_decode_in || gb->gemm_decode_out || gb->gemm_decode_lm))
        snprintf(out->gemm, sizeof out->gemm, "cuBLAS bf16; decode of 5 to %d sequences: tensor-core decode GEMM",
                 gb->gemm_decode_max_nb < 64 ? gb->gemm_decode_max_nb : 64);
    else if (wf == GEMV_BF16) snprintf(out->gemm, sizeof out->gemm, "cuBLAS bf16");
    else if (max_T <= 0)
        snprintf(out->gemm, sizeof out->gemm, "cuBLAS bf16 (q8 dequantized per matrix%s)",
                 gb->deq_ahead ? "; prefill: a layer ahead, on a second stream" : "");
    else snprintf(out->gemm, sizeof out->gemm, "q8 GEMM to %d tokens, then cuBLAS over dequantized q8%s", max_T,
                  gb->deq_ahead ? " (prefill: a layer ahead, on a second stream)" : "");
    snprintf(out->gemv, sizeof out->gemv, "%s",
             wf == GEMV_BF16     ? (gpu_of(b)->gemv_stream ? "bf16, streamed" : "bf16")
             : wf == GEMV_Q8_DP4A && gpu_of(b)->gemv_stream > 1 ? "q8 dp4a, streamed from 2 sequences"
             : wf != GEMV_Q8_DP4A ? "q8 float"
             : gpu_of(b)->gemv_stream ? "q8 dp4a, streamed"
                                 : "q8 dp4a");
    if (gpu_of(b)->step_rounds_y) /* out_proj's input rounded to int8 by the SSD step */
        strncat(out->gemv, ", y rounded once", sizeof out->gemv - strlen(out->gemv) - 1);
    GemvArgs op = {}; /* one sequence's out_proj, as enqueue_step() sets it up */
    op.wf = wf, op.stage = gb->gemv_stage, op.nb = 1, op.rows = gb->g.d, op.cols = gb->g.d_in;
    /* where the step rounds y, out_proj gets gb->syq, which is allocated at the first step: here only
     * whether it will be set counts */
    op.xq = gb->step_rounds_y ? (const int8_t *)1 : NULL;
    if (gemv_q8_stages(PRO_GATEDNORM, op)) strncat(out->gemv, ", out_proj's second pass staged", sizeof out->gemv - strlen(out->gemv) - 1);
}

/* Logits arrays in page-locked memory (Mamba2Backend::host_alloc), unless MAMBA2_GPU_PINNED_LOGITS=0
 * (ordinary memory, for comparisons; read once per process) */
static bool pinned_logits() {
    static const char *e = getenv("MAMBA2_GPU_PINNED_LOGITS");
    return !(e && !strcmp(e, "0"));
}

/* Where the driver cannot page-lock that much, ordinary memory: the steps are then only slower. */
static void *gpu_host_alloc(Mamba2Backend *b, size_t bytes) {
    void *p = NULL;
    if (pinned_logits()) {
        if (cudaMallocHost(&p, bytes) == cudaSuccess) return p;
        cudaGetLastError(); /* the failed page-locking, not an error of a step's */
    }
    return malloc(bytes);
}

static void gpu_host_free(Mamba2Backend *b, void *p) {
    if (host_pinned(p)) cudaFreeHost(p);
    else free(p);
}

static void gpu_destroy(Mamba2Backend *b) {
    GpuBackend *gb = gpu_of(b);
    prof_report(gb);
    /* States still on the device are brought back to their host arrays first
     * (mamba2_state_sync releases each copy, which removes it from the list). */
    while (!gb->live.empty()) {
        Mamba2Error e;
        Mamba2State *st = gb->live.back()->st;
        if (mamba2_state_sync(st, &e)) fprintf(stderr, "warning: a GPU-held state was lost: %s\n", e.msg);
    }
    free_prefill_buffers(gb);
    free_decode_buffers(gb);
    cudaFree(gb->deq);
    for (void *p : gb->allocations) cudaFree(p);
    if (gb->cublas) cublasDestroy(gb->cublas);
    if (gb->cublas_side) cublasDestroy(gb->cublas_side);
    cudaFree(gb->cublas_ws);
    cudaFree(gb->cublas_side_ws);
    if (gb->fork) cudaEventDestroy(gb->fork);
    if (gb->join) cudaEventDestroy(gb->join);
    if (gb->conv_done) cudaEventDestroy(gb->conv_done);
    if (gb->conv_saved) cudaEventDestroy(gb->conv_saved);
    cudaEvent_t deq_events[5] = {gb->deq_start, gb->deq_ready[0], gb->deq_ready[1], gb->deq_free[0], gb->deq_free[1]};
    for (cudaEvent_t e : deq_events)
        if (e) cudaEventDestroy(e);
    if (gb->deq_stream) cudaStreamDestroy(gb->deq_stream);
    if (gb->side) cudaStreamDestroy(gb->side);
    if (gb->stream) cudaStreamDestroy(gb->stream);
    delete gb;
}

extern "C" int mamba2_gpu_available(Mamba2Error *why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        mamba2_fail(why, "no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 0;
    }
    return 1;
}

extern "C" int mamba2_backend_gpu_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                                         Mamba2Error *err) {
    const Mamba2Config *c = &m->cfg;
    if (!mamba2_gpu_available(err)) return -1;
    if (c->d_conv > 8) return mamba2_fail(err, "the GPU path supports conv_kernel <= 8, the model has %d", c->d_conv);
    GpuBackend *gb = new GpuBackend();
    gb->base.name = "gpu";
    gb->base.model = m;
    gb->base.prefill = gpu_prefill;
    gb->base.step = gpu_step;
    gb->base.roofline = gpu_roofline;
    gb->base.matrix_bytes = gpu_matrix_bytes;
    gb->base.kernels = gpu_kernels;
    gb->base.host_alloc = gpu_host_alloc;
    gb->base.host_free = gpu_host_free;
    gb->base.destroy = gpu_destroy;
    gb->state_bf16 = opt->state_bf16;
    if (opt->weights == MAMBA2_WEIGHTS_Q4) {
        delete gb;
        return mamba2_fail(err, "weights 'q4' are a cpu backend option; the gpu backend takes stored or q8");
    }
    /* q8: the dp4a product unless MAMBA2_GPU_Q8_DOT=float (measurements: results/gpu.md) */
    const char *dot = getenv("MAMBA2_GPU_Q8_DOT");
    gb->wf = opt->weights != MAMBA2_WEIGHTS_Q8 ? GEMV_BF16 : dot && !strcmp(dot, "float") ? GEMV_Q8_FLOAT : GEMV_Q8_DP4A;
    /* the decode GEMV: gemv_stream.cu's for q8 dp4a from 2 sequences, gemv.cuh's otherwise, unless
     * MAMBA2_GPU_GEMV says "stream" (streamed from 1 sequence, both formats) or "blocks" (never)
     * (measurements: results/gpu.md) */
    const char *gv = getenv("MAMBA2_GPU_GEMV");
    gb->gemv_stream = gv && !strcmp(gv, "stream") ? 1 : gv && !strcmp(gv, "blocks") ? 0 : gb->wf == GEMV_Q8_DP4A ? 2 : 0;
    if (gb->gemv_stream) gemv_stream_prepare(); /* outside the step graphs' capture */
    /* q8 dp4a at one sequence: out_proj's second pass staged in shared memory before the wait, unless
     * MAMBA2_GPU_GEMV_STAGE=0 (gemv_q8.cu; measurements: results/gpu.md) */
    const char *stage = getenv("MAMBA2_GPU_GEMV_STAGE");
    gb->gemv_stage = gb->wf == GEMV_Q8_DP4A && !(stage && !strcmp(stage, "0"));
    /* batched decode (bf16 weights): the products MAMBA2_GPU_GEMM_DECODE_ON names (in, out, lm, joined by
     * '+'; default all three) through gemm_decode.cu for 5 to MAMBA2_GPU_GEMM_DECODE_MAX_NB sequences
     * (default and most 64: from 17 sequences on wgmma, without the norms in its prologue, where it
     * made the model faster than cuBLAS did), the others through cuBLAS (measurements:
     * results/gpu.md). MAMBA2_GPU_GEMM_DECODE=0 turns the kernel off. */
    const char *gdo = getenv("MAMBA2_GPU_GEMM_DECODE_ON"), *gdm = getenv("MAMBA2_GPU_GEMM_DECODE_MAX_NB");
    if (!gdo) gdo = "in+out+lm";
    gb->gemm_decode_max_nb = gdm && *gdm ? atoi(gdm) : 64;
    gb->gemm_decode_in = strstr(gdo, "in") != NULL, gb->gemm_decode_out = strstr(gdo, "out") != NULL;
    gb->gemm_decode_lm = strstr(gdo, "lm") != NULL;
    /* ... and with the norm before a product in its prologue instead of a kernel of its own, for up to
     * GEMM_DECODE_PRO_MAX_NB sequences, or the grouped norm after out_proj's product beyond: the words
     * of MAMBA2_GPU_GEMM_DECODE_NORMS, "out" (the grouped norm before out_proj), "scale" (the grouped
     * norm after out_proj's product where "out" does not take it) and "in" (RMSNorm before in_proj and
     * lm_head), "next" (out_proj's residual epilogue handing the next norm its input, that norm after
     * in_proj's or lm_head's product; to HAND_OFF_MAX_NB sequences), joined by '+', "0" for none;
     * default "out+scale+next" (measurements: results/gpu.md) */
    const char *gdn = getenv("MAMBA2_GPU_GEMM_DECODE_NORMS");
    if (!gdn) gdn = "out+scale+next";
    gb->gemm_decode_next = strstr(gdn, "next") != NULL;
    gb->gemm_decode_rms = strstr(gdn, "in") != NULL, gb->gemm_decode_gated = strstr(gdn, "out") != NULL;
    gb->gemm_decode_scale = strstr(gdn, "scale") != NULL;
    gemm_decode_prepare();
    /* q8: products of up to Q8_GEMM_MAX_T tokens through the q8 GEMM (measurements: results/gpu.md) */
    const char *q8g = getenv("MAMBA2_GPU_Q8_GEMM"), *q8t = getenv("MAMBA2_GPU_Q8_GEMM_MAX_T");
    gb->q8_gemm_max_T = q8t && *q8t ? atoi(q8t) : Q8_GEMM_MAX_T;
    if ((q8g && !strcmp(q8g, "0")) || c->d_model % 8 || c->d_inner % 8) gb->q8_gemm_max_T = 0; /* gemm_q8_supported() */
    /* decode of 1-4 sequences: the kernels MAMBA2_GPU_SKIP names (in, step, out, lm, joined by '+')
     * are not launched, and "empty" launches an empty kernel of the step's grid in its place, so that
     * the time each adds to a step in the graph can be measured; the logits are then wrong (for
     * timing only) */
    const char *skip = getenv("MAMBA2_GPU_SKIP");
    gb->skip = !skip ? 0u
                     : (strstr(skip, "in") ? SKIP_IN : 0u) | (strstr(skip, "step") ? SKIP_STEP : 0u) |
                           (strstr(skip, "out") ? SKIP_OUT : 0u) | (strstr(skip, "lm") ? SKIP_LM : 0u) |
                           (strstr(skip, "empty") ? SKIP_EMPTY : 0u);
    const char *prof = getenv("MAMBA2_GPU_PROFILE");
    gb->profile = prof && *prof && strcmp(prof, "0");
    /* MAMBA2_GPU_WALK_COLS=64: the prefill's state walk in two blocks a head (kernels.cuh, ssd_walk_set_cols()) */
    const char *walk = getenv("MAMBA2_GPU_WALK_COLS");
    ssd_walk_set_cols(walk ? atoi(walk) : 0); /* unset: the default, whatever a backend before asked */
    const char *waves = getenv("MAMBA2_GPU_SCAN_WAVES"); /* 1: the group scan in fewer, larger slices */
    ssd_scan_set_waves(waves ? atoi(waves) : 0);
    /* MAMBA2_GPU_CONV_RUN=8|16: the prefill conv's tokens a thread (kernels.cuh, conv_prefill_set_run()) */
    const char *run = getenv("MAMBA2_GPU_CONV_RUN");
    conv_prefill_set_run(run ? atoi(run) : 0);
    /* MAMBA2_GPU_NORM_WARPS=1: the gated norm one warp a group (kernels.cuh, gated_norm_set_warps()) */
    const char *nw = getenv("MAMBA2_GPU_NORM_WARPS");
    gated_norm_set_warps(nw && atoi(nw) == 1);
    const char *css = getenv("MAMBA2_GPU_CONV_STATE_SIDE");
    gb->conv_state_side = css && atoi(css) == 1;
    GpuDims &g = gb->g;
    g.d = c->d_model, g.L = c->n_layer, g.H = c->n_heads, g.P = c->head_dim, g.N = c->d_state, g.G = c->n_groups;
    g.K = c->d_conv, g.V = c->vocab_size, g.d_in = c->d_inner, g.conv_dim = c->conv_dim, g.d_in_proj = c->d_in_proj;
    g.Q = c->chunk_size, g.eps = (float)c->eps, g.dt_min = (float)c->dt_min;
    g.dt_max = isinf(c->dt_max) ? INFINITY : (float)c->dt_max;
    if (!ssd_chunked_supported(g) || g.G > 64) {
        int P = g.P, N = g.N, G = g.G;
        delete gb;
        return mamba2_fail(err, "the GPU path supports state_size <= 256, n_groups <= 64, and head_dim as long as one "
                                "chunk's x, B and state fit in 227 KB of shared memory (head_dim <= 192 at state_size "
                                "256); this model has head_dim %d, state_size %d, n_groups %d",
                           P, N, G);
    }
    /* q8 dp4a: out_proj's input rounded to int8 once, by the SSD step that writes it, instead of in
     * every block of out_proj's rows, unless MAMBA2_GPU_Q8_ROUND_Y=0 (measurements: results/gpu.md) */
    const char *ry = getenv("MAMBA2_GPU_Q8_ROUND_Y");
    gb->step_rounds_y = gb->wf == GEMV_Q8_DP4A && ssd_step_rounds_y(g) && !(ry && !strcmp(ry, "0"));
    /* host threads copying a step's logits out of the pinned buffer (host_copy.cu); 1 is one thread,
     * and past 16 MiB the driver's own copy to pageable memory */
    const char *lt = getenv("MAMBA2_GPU_LOGITS_THREADS");
    gb->logits_threads = lt && atoi(lt) >= 1 ? atoi(lt) : host_copy_threads_default();
    gb->conv_seqs = conv_dt_step_seqs_default();
    /* q8 prefill of at most 64 tokens: in_proj's [z | xBC] rows through the few-token q8 GEMM
     * (gemm_q8_zx()), unless MAMBA2_GPU_Q8_ZX_FEW=0 (measurements: results/gpu.md) */
    const char *zf = getenv("MAMBA2_GPU_Q8_ZX_FEW");
    gb->q8_zx_few = !(zf && !strcmp(zf, "0"));
    /* q8 prefill through cuBLAS: weights dequantized a layer ahead on a stream of their own, with the
     * main and side streams above it in priority (2, the default), so that the dequantization's
     * blocks take what multiprocessors the layer's kernels leave; 1: the same at equal priority; 0:
     * each matrix before its GEMM on the main stream (MAMBA2_GPU_Q8_DEQ_AHEAD; measurements:
     * results/gpu.md) */
    const char *da = getenv("MAMBA2_GPU_Q8_DEQ_AHEAD");
    gb->deq_ahead = da && *da ? atoi(da) : 2;
    int least = 0, greatest = 0;
    if (cudaDeviceGetStreamPriorityRange(&least, &greatest) != cudaSuccess) least = greatest = 0, cudaGetLastError();
    const int high = gb->deq_ahead == 2 && gb->wf != GEMV_BF16 ? greatest : least; /* bf16 weights: no second stream to rank */
    int rc = -1;
    if (cudaStreamCreateWithPriority(&gb->stream, cudaStreamNonBlocking, high) != cudaSuccess ||
        cudaStreamCreateWithPriority(&gb->side, cudaStreamNonBlocking, high) != cudaSuccess ||
        cudaStreamCreateWithPriority(&gb->deq_stream, cudaStreamNonBlocking, least) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->fork, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->join, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->conv_done, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->conv_saved, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->deq_start, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->deq_ready[0], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->deq_ready[1], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->deq_free[0], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&gb->deq_free[1], cudaEventDisableTiming) != cudaSuccess)
        mamba2_fail(err, "cannot create the CUDA streams and events");
    else if (cublasCreate(&gb->cublas) != CUBLAS_STATUS_SUCCESS || cublasCreate(&gb->cublas_side) != CUBLAS_STATUS_SUCCESS)
        mamba2_fail(err, "cannot create a cuBLAS handle");
    else if (!dev_alloc(gb, &gb->cublas_ws, CUBLAS_WORKSPACE, "cuBLAS workspace", err) &&
             !dev_alloc(gb, &gb->cublas_side_ws, CUBLAS_WORKSPACE, "the second stream's cuBLAS workspace", err) &&
             cublasSetStream(gb->cublas, gb->stream) == CUBLAS_STATUS_SUCCESS &&
             cublasSetWorkspace(gb->cublas, gb->cublas_ws, CUBLAS_WORKSPACE) == CUBLAS_STATUS_SUCCESS &&
             cublasSetStream(gb->cublas_side, gb->side) == CUBLAS_STATUS_SUCCESS &&
             cublasSetWorkspace(gb->cublas_side, gb->cublas_side_ws, CUBLAS_WORKSPACE) == CUBLAS_STATUS_SUCCESS)
        rc = upload_weights(gb, m, opt, err);
    if (rc) {
        gpu_destroy(&gb->base);
        return -1;
    }
    *out = &gb->base;
    return 0;
}
