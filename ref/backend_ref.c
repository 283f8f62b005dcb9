/**
 * @file backend_ref.c
 * @brief The reference backend: prefill through the chunked SSD, decode through the recurrence.
 */
#include <stdlib.h>

#include "backend.h"

static int ref_prefill(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                       int all_positions, Mamba2Error *err) {
    return mamba2_ref_forward(b->model, st, tokens, T, MAMBA2_SSD_CHUNKED, logits, all_positions, NULL, NULL, err);
}

static int ref_prefill_observed(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                                Mamba2LayerHook hook, void *hook_ctx, Mamba2Error *err) {
    return mamba2_ref_forward(b->model, st, tokens, T, MAMBA2_SSD_CHUNKED, logits, 1, hook, hook_ctx, err);
}

/* The reference decodes the B sequences one after another. */
static int ref_step(Mamba2Backend *b, Mamba2State **states, const int32_t *tokens, int B, float *logits,
                    Mamba2Error *err) {
    size_t V = (size_t)b->model->cfg.vocab_size;
    for (int i = 0; i < B; i++)
        if (mamba2_ref_forward(b->model, states[i], &tokens[i], 1, MAMBA2_SSD_RECURRENT, logits + i * V, 0, NULL,
                               NULL, err))
            return -1;
    return 0;
}

static void ref_destroy(Mamba2Backend *b) { free(b); }

int mamba2_backend_ref_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                              Mamba2Error *err) {
    Mamba2Backend *b = calloc(1, sizeof *b);
    if (!b) return mamba2_fail(err, "out of memory");
    b->name = "ref";
    b->model = m;
    b->prefill = ref_prefill;
    b->prefill_observed = ref_prefill_observed;
    b->step = ref_step;
    b->destroy = ref_destroy;
    *out = b;
    return 0;
}
