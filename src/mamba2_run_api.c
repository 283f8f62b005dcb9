/**
 * @file mamba2_run_api.c
 * @brief The public API's forward passes: prefill, batched step, and prefill with a per-layer hook.
 *
 * The inputs are checked here, before any backend runs, so that each mistake has its own
 * code (#MAMBA2_ERR_ARGUMENT, #MAMBA2_ERR_TOKEN); what fails inside a backend afterwards is
 * memory or the device.
 */
#include <stdlib.h>

#include "mamba2_impl.h"

/* The hook's tensor numbers are the reference's (forward.h), passed on as they are. */
typedef char hook_numbers_match_forward_h[(MAMBA2_HOOK_INPUT == (int)MAMBA2_LAYER_INPUT &&
                                           MAMBA2_HOOK_NORM == (int)MAMBA2_LAYER_NORM &&
                                           MAMBA2_HOOK_IN_PROJ == (int)MAMBA2_LAYER_IN_PROJ &&
                                           MAMBA2_HOOK_CONV == (int)MAMBA2_LAYER_CONV &&
                                           MAMBA2_HOOK_DT == (int)MAMBA2_LAYER_DT &&
                                           MAMBA2_HOOK_SSD == (int)MAMBA2_LAYER_SSD &&
                                           MAMBA2_HOOK_GATED_NORM == (int)MAMBA2_LAYER_GATED_NORM &&
                                           MAMBA2_HOOK_OUT_PROJ == (int)MAMBA2_LAYER_OUT_PROJ &&
                                           MAMBA2_HOOK_OUTPUT == (int)MAMBA2_LAYER_OUTPUT &&
                                           MAMBA2_HOOK_COUNT == (int)MAMBA2_LAYER_TENSORS)
                                              ? 1
                                              : -1];

/* ---- checks */

/* @p s can run on @p b: the same model, or one whose state has the same shape. */
static int check_state(const mamba2_backend *b, const mamba2_state *s, int index, mamba2_error *err) {
    if (!s) return api_fail(err, MAMBA2_ERR_ARGUMENT, "state %d is NULL", index);
    const Mamba2Config *a = &b->model->m.cfg, *c = &s->model->m.cfg;
    if (a->n_layer != c->n_layer || a->conv_dim != c->conv_dim || a->d_conv != c->d_conv ||
        a->n_heads != c->n_heads || a->head_dim != c->head_dim || a->d_state != c->d_state)
        return api_fail(err, MAMBA2_ERR_ARGUMENT,
                        "state %d belongs to a model of another shape (%s) than the backend's (%s)", index,
                        s->model->m.dir, b->model->m.dir);
    return MAMBA2_OK;
}

static int check_tokens(const mamba2_backend *b, const int32_t *tokens, int n, const char *unit, mamba2_error *err) {
    int V = b->model->m.cfg.vocab_size;
    if (!tokens) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no tokens given");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return api_fail(err, MAMBA2_ERR_TOKEN, "token id %d of %s %d is outside the vocabulary [0, %d)",
                            (int)tokens[i], unit, i, V);
    return MAMBA2_OK;
}

/* What prefill and prefill_observed check: a backend, a state it can run, T >= 1 valid tokens. */
static int check_prefill(const mamba2_backend *b, const mamba2_state *s, const int32_t *tokens, int T,
                         mamba2_error *err) {
    if (!b) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no backend given");
    if (T < 1) return api_fail(err, MAMBA2_ERR_ARGUMENT, "T = %d: a prefill needs at least one token", T);
    int rc = check_state(b, s, 0, err);
    return rc ? rc : check_tokens(b, tokens, T, "position", err);
}

/* ---- the operations */

MAMBA2_API int mamba2_prefill(mamba2_backend *b, mamba2_state *s, const int32_t *tokens, int T, float *logits,
                              int all_positions, mamba2_error *err) {
    int rc = check_prefill(b, s, tokens, T, err);
    if (rc) return rc;
    Mamba2Error e = {{0}};
    if (mamba2_backend_prefill(b->b, &s->s, tokens, T, logits, all_positions != 0, &e))
        return api_fail_internal(err, MAMBA2_ERR_BACKEND, &e);
    return api_ok(err);
}

MAMBA2_API int mamba2_step(mamba2_backend *b, mamba2_state *const *states, const int32_t *tokens, int B,
                           float *logits, mamba2_error *err) {
    if (!b) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no backend given");
    if (B < 1) return api_fail(err, MAMBA2_ERR_ARGUMENT, "B = %d: a step needs at least one sequence", B);
    if (!states || !logits) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no %s given", states ? "logits" : "states");
    int rc = check_tokens(b, tokens, B, "sequence", err);
    for (int i = 0; !rc && i < B; i++) {
        rc = check_state(b, states[i], i, err);
        for (int j = 0; !rc && j < i; j++) /* two sequences advancing one state would overwrite each other */
            if (states[j] == states[i]) rc = api_fail(err, MAMBA2_ERR_ARGUMENT, "sequences %d and %d share one state", j, i);
    }
    if (rc) return rc;
    Mamba2State **internal = malloc((size_t)B * sizeof *internal);
    if (!internal) return api_fail(err, MAMBA2_ERR_MEMORY, "out of memory for %d states", B);
    for (int i = 0; i < B; i++) internal[i] = &states[i]->s;
    Mamba2Error e = {{0}};
    rc = mamba2_backend_step(b->b, internal, tokens, B, logits, &e) ? api_fail_internal(err, MAMBA2_ERR_BACKEND, &e) : api_ok(err);
    free(internal);
    return rc;
}

MAMBA2_API float *mamba2_logits_alloc(mamba2_backend *b, size_t count, mamba2_error *err) {
    if (!b) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no backend given"), NULL;
    if (!count) return api_fail(err, MAMBA2_ERR_ARGUMENT, "a logits array of 0 floats"), NULL;
    Mamba2Error e = {{0}};
    float *p = mamba2_backend_logits_alloc(b->b, count, &e);
    if (!p) return api_fail_internal(err, MAMBA2_ERR_MEMORY, &e), NULL;
    api_ok(err);
    return p;
}

MAMBA2_API void mamba2_logits_free(mamba2_backend *b, float *logits) {
    if (b && logits) mamba2_backend_logits_free(b->b, logits); /* without its backend, how it was made is unknown */
}

/* The caller's hook behind the backend's: the tensor number goes on as a plain int. */
typedef struct {
    mamba2_layer_hook hook;
    void *ctx;
} HookAdapter;

static void pass_on(void *ctx, int layer, Mamba2LayerTensor which, const float *data, int T, int width) {
    const HookAdapter *a = ctx;
    a->hook(a->ctx, layer, (int)which, data, T, width);
}

MAMBA2_API int mamba2_prefill_observed(mamba2_backend *b, mamba2_state *s, const int32_t *tokens, int T,
                                       float *logits, mamba2_layer_hook hook, void *hook_ctx, mamba2_error *err) {
    int rc = check_prefill(b, s, tokens, T, err);
    if (rc) return rc;
    if (!hook) return mamba2_prefill(b, s, tokens, T, logits, 1, err);
    HookAdapter a = {hook, hook_ctx};
    Mamba2Error e = {{0}};
    if (mamba2_backend_prefill_observed(b->b, &s->s, tokens, T, logits, pass_on, &a, &e))
        return api_fail_internal(err, MAMBA2_ERR_BACKEND, &e);
    return api_ok(err);
}

MAMBA2_API const char *mamba2_hook_tensor_name(int tensor) {
    static const char *const names[MAMBA2_HOOK_COUNT] = {"input", "norm",       "in_proj",  "conv",  "dt",
                                                         "ssd",   "gated_norm", "out_proj", "output"};
    return tensor >= 0 && tensor < MAMBA2_HOOK_COUNT ? names[tensor] : NULL;
}
