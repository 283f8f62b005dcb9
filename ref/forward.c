/**
 * @file forward.c
 * @brief The reference Mamba-2 forward pass: one readable function per step of notebooks-docs/design.md §2.
 *
 * Everything here is scalar C: the point is to be obviously right, not fast.
 */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ssd.h"

/** silu(v) = v · sigmoid(v) = v / (1 + e^−v). */
static double silu(double v) { return v / (1.0 + exp(-v)); }

/** softplus(v) = log(1 + e^v), and v itself above 20 (as torch and mamba_ssm do). */
static double softplus(double v) { return v > 20.0 ? v : log1p(exp(v)); }

/** out[r] = Σ_c W[r][c] x[c] for W [rows, cols] in its stored dtype (rows r0 .. r0+n). */
static void matvec(const Mamba2Tensor *W, int64_t r0, int64_t n, const float *x, float *out) {
    int64_t cols = W->shape[1];
    for (int64_t r = 0; r < n; r++) {
        int64_t base = (r0 + r) * cols;
        double acc = 0;
        switch (W->dtype) { /* the dtype switch sits outside the inner loop */
        case MAMBA2_BF16:
            for (int64_t c = 0; c < cols; c++) acc += (double)mamba2_bf16_to_f32(((const uint16_t *)W->data)[base + c]) * x[c];
            break;
        case MAMBA2_F16:
            for (int64_t c = 0; c < cols; c++) acc += (double)mamba2_f16_to_f32(((const uint16_t *)W->data)[base + c]) * x[c];
            break;
        default:
            for (int64_t c = 0; c < cols; c++) acc += (double)((const float *)W->data)[base + c] * x[c];
        }
        out[r] = (float)acc;
    }
}

/** out = x / sqrt(mean(x²) + eps) · w   over n channels (w_offset selects a slice of w). */
static void rmsnorm(const float *x, const Mamba2Tensor *w, int64_t w_offset, int n, double eps, float *out) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = (float)(x[i] * scale * mamba2_tensor_get(w, w_offset + i));
}

/* Working memory of one call, sized for T tokens. */
typedef struct {
    float *h;      /* [T, d]        residual stream */
    float *u;      /* [T, d]        normalised input of a layer */
    float *zxbcdt; /* [T, d_in_proj] in_proj output: [z | xBC | dt] */
    float *xbc;    /* [T, conv_dim] conv output: [x | B | C] */
    float *x;      /* [T, H, P]     SSD input */
    float *B;      /* [T, G, N] */
    float *C;      /* [T, G, N] */
    float *dt;     /* [T, H] */
    float *A;      /* [H] */
    float *y;      /* [T, d_in]     SSD output, then gated and normalised */
    float *out;    /* [T, d]        out_proj output */
    float *window; /* [K − 1 + T]   one channel's conv inputs, state first */
} Work;

/* Work holds only float pointers, so it can be walked as an array of them. */
static void work_free(Work *w) {
    float **p = (float **)w;
    for (size_t i = 0; i < sizeof *w / sizeof(float *); i++) free(p[i]);
}

static int work_alloc(Work *w, const Mamba2Config *c, int T) {
    size_t d = c->d_model, sizes[] = {
        T * d, T * d, (size_t)T * c->d_in_proj, (size_t)T * c->conv_dim, (size_t)T * c->d_inner,
        (size_t)T * c->n_groups * c->d_state, (size_t)T * c->n_groups * c->d_state, (size_t)T * c->n_heads,
        (size_t)c->n_heads, (size_t)T * c->d_inner, T * d, (size_t)c->d_conv - 1 + T};
    float **p = (float **)w;
    memset(w, 0, sizeof *w);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        if (!(p[i] = malloc(sizes[i] * sizeof(float)))) return -1;
    return 0;
}

/** Step 3: xBC'_c(t) = silu(b_c + Σ_k W_c[k] · in_c(t − K + 1 + k)), where in_c is the conv state
 * (the last K−1 inputs) followed by this call's inputs. The state keeps the last K−1 inputs. */
static void causal_conv(const Mamba2Config *c, const Mamba2LayerWeights *lw, float *conv_state, Work *w, int T) {
    int K = c->d_conv;
    for (int ch = 0; ch < c->conv_dim; ch++) {
        float *st = conv_state + (size_t)ch * (K - 1);
        for (int k = 0; k < K - 1; k++) w->window[k] = st[k];
        for (int t = 0; t < T; t++) w->window[K - 1 + t] = w->zxbcdt[(size_t)t * c->d_in_proj + c->d_inner + ch];
        double bias = lw->conv_b.data ? mamba2_tensor_get(&lw->conv_b, ch) : 0.0;
        for (int t = 0; t < T; t++) {
            double acc = bias;
            for (int k = 0; k < K; k++) acc += mamba2_tensor_get(&lw->conv_w, (int64_t)ch * K + k) * w->window[t + k];
            w->xbc[(size_t)t * c->conv_dim + ch] = (float)silu(acc);
        }
        for (int k = 0; k < K - 1; k++) st[k] = w->window[T + k];
    }
}

/** Steps 4–6: split xBC' into x, B, C; dt = clamp(softplus(dt + dt_bias)); A = −exp(A_log);
 * run the SSD; add D·x. */
static int ssd_step(const Mamba2Config *c, const Mamba2LayerWeights *lw, float *ssm_state, Work *w, int T,
                    Mamba2SSDForm form) {
    int H = c->n_heads, P = c->head_dim, GN = c->n_groups * c->d_state, d_in = c->d_inner;
    for (int t = 0; t < T; t++) {
        const float *row = w->xbc + (size_t)t * c->conv_dim;
        memcpy(w->x + (size_t)t * d_in, row, d_in * sizeof(float));
        memcpy(w->B + (size_t)t * GN, row + d_in, GN * sizeof(float));
        memcpy(w->C + (size_t)t * GN, row + d_in + GN, GN * sizeof(float));
        const float *dt_raw = w->zxbcdt + (size_t)t * c->d_in_proj + d_in + c->conv_dim;
        for (int h = 0; h < H; h++) {
            double v = softplus(dt_raw[h] + mamba2_tensor_get(&lw->dt_bias, h));
            w->dt[(size_t)t * H + h] = (float)fmin(fmax(v, c->dt_min), c->dt_max);
        }
    }
    for (int h = 0; h < H; h++) w->A[h] = (float)-exp(mamba2_tensor_get(&lw->A_log, h));

    SSDDims dims = {T, H, P, c->n_groups, c->d_state};
    int rc = 0;
    if (form == MAMBA2_SSD_RECURRENT) ssd_recurrent(dims, w->x, w->dt, w->A, w->B, w->C, ssm_state, w->y);
    else if (form == MAMBA2_SSD_QUADRATIC) rc = ssd_quadratic(dims, w->x, w->dt, w->A, w->B, w->C, ssm_state, w->y);
    else rc = ssd_chunked(dims, c->chunk_size, w->x, w->dt, w->A, w->B, w->C, ssm_state, w->y);

    /* y_h += D_h · x_h */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            double D = mamba2_tensor_get(&lw->D, h);
            for (int p = 0; p < P; p++) {
                size_t i = (size_t)t * d_in + (size_t)h * P + p;
                w->y[i] = (float)(w->y[i] + D * w->x[i]);
            }
        }
    return rc;
}

/** Step 7: gate first, y ← y · silu(z); then RMS-normalise each group of d_in/G channels separately.
 * (Not over all d_in at once as HF's MambaRMSNormGated used to, and gate-first whatever
 * norm_before_gate says: that is what mamba_ssm trained.) */
static void gated_norm(const Mamba2Config *c, const Mamba2LayerWeights *lw, Work *w, int T) {
    int d_in = c->d_inner, group = d_in / c->n_groups;
    for (int t = 0; t < T; t++) {
        float *y = w->y + (size_t)t * d_in;
        const float *z = w->zxbcdt + (size_t)t * c->d_in_proj;
        for (int i = 0; i < d_in; i++) y[i] = (float)(y[i] * silu(z[i]));
        for (int g = 0; g < c->n_groups; g++)
            rmsnorm(y + g * group, &lw->gated_norm, (int64_t)g * group, group, c->eps, y + g * group);
    }
}

/** One Mamba-2 block over T tokens: h ← h + out_proj(mixer(RMSNorm(h))), each step's result shown
 * to @p hook (when not NULL) as soon as it is complete. */
static int layer_forward(const Mamba2Model *m, int l, Mamba2State *st, Work *w, int T, Mamba2SSDForm form,
                         Mamba2LayerHook hook, void *hook_ctx) {
    const Mamba2Config *c = &m->cfg;
    const Mamba2LayerWeights *lw = &m->w.layers[l];
    int d = c->d_model;
#define SHOW(which, data, width)                         \
    do {                                                 \
        if (hook) hook(hook_ctx, l, which, data, T, width); \
    } while (0)
    SHOW(MAMBA2_LAYER_INPUT, w->h, d);
    for (int t = 0; t < T; t++) { /* steps 1–2: u = RMSNorm(h)·w;  [z | xBC | dt] = W_in u */
        rmsnorm(w->h + (size_t)t * d, &lw->norm, 0, d, c->eps, w->u + (size_t)t * d);
        matvec(&lw->in_proj, 0, c->d_in_proj, w->u + (size_t)t * d, w->zxbcdt + (size_t)t * c->d_in_proj);
    }
    SHOW(MAMBA2_LAYER_NORM, w->u, d);
    SHOW(MAMBA2_LAYER_IN_PROJ, w->zxbcdt, c->d_in_proj);
    causal_conv(c, lw, st->conv + (size_t)l * c->conv_dim * (c->d_conv - 1), w, T);
    SHOW(MAMBA2_LAYER_CONV, w->xbc, c->conv_dim);
    if (ssd_step(c, lw, st->ssm + (size_t)l * c->n_heads * c->head_dim * c->d_state, w, T, form)) return -1;
    SHOW(MAMBA2_LAYER_DT, w->dt, c->n_heads);
    SHOW(MAMBA2_LAYER_SSD, w->y, c->d_inner);
    gated_norm(c, lw, w, T);
    SHOW(MAMBA2_LAYER_GATED_NORM, w->y, c->d_inner);
    for (int t = 0; t < T; t++) { /* step 8: h ← h + W_out y */
        matvec(&lw->out_proj, 0, d, w->y + (size_t)t * c->d_inner, w->out + (size_t)t * d);
        for (int i = 0; i < d; i++) w->h[(size_t)t * d + i] += w->out[(size_t)t * d + i];
    }
    SHOW(MAMBA2_LAYER_OUT_PROJ, w->out, d);
    SHOW(MAMBA2_LAYER_OUTPUT, w->h, d);
#undef SHOW
    return 0;
}

int mamba2_ref_forward(const Mamba2Model *m, Mamba2State *st, const int32_t *tokens, int T, Mamba2SSDForm form,
                       float *logits, int all_positions, Mamba2LayerHook hook, void *hook_ctx, Mamba2Error *err) {
    const Mamba2Config *c = &m->cfg;
    int d = c->d_model, V = c->vocab_size;
    Work w;
    Mamba2State scratch; /* the update runs on a copy, so a failure leaves the state as it was */
    if (work_alloc(&w, c, T) || mamba2_state_init(&scratch, c, err)) {
        work_free(&w);
        return mamba2_fail(err, "out of memory for %d tokens", T);
    }
    if (mamba2_state_copy(&scratch, st, err)) { /* also brings a GPU-held state back to the host */
        work_free(&w);
        mamba2_state_free(&scratch);
        return -1;
    }

    for (int t = 0; t < T; t++) /* h = embedding of each token */
        for (int i = 0; i < d; i++) w.h[(size_t)t * d + i] = mamba2_tensor_get(&m->w.embeddings, (int64_t)tokens[t] * d + i);
    int rc = 0;
    for (int l = 0; l < c->n_layer && !rc; l++) rc = layer_forward(m, l, &scratch, &w, T, form, hook, hook_ctx);
    if (rc) rc = mamba2_fail(err, "out of memory in the SSD of %d tokens", T);
    /* logits = W_head · (RMSNorm(h) · w_norm_f), for the positions asked for */
    for (int t = all_positions ? 0 : T - 1; !rc && logits && t < T; t++) {
        rmsnorm(w.h + (size_t)t * d, &m->w.norm_f, 0, d, c->eps, w.u);
        matvec(&m->w.lm_head, 0, V, w.u, logits + (all_positions ? (size_t)t * V : 0));
    }
    if (!rc) {
        scratch.pos = mamba2_state_pos_after(st->pos, T);
        Mamba2State old = *st;
        *st = scratch; /* swap: the caller's state becomes the advanced one */
        scratch = old;
    }
    mamba2_state_free(&scratch);
    work_free(&w);
    return rc;
}
