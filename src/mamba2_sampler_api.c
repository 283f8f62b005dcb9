/**
 * @file mamba2_sampler_api.c
 * @brief The public API's sampling: a seeded sampler (temperature, top-k, top-p) and greedy choice.
 */
#include <stdlib.h>

#include "mamba2_impl.h"

MAMBA2_API mamba2_sampler *mamba2_sampler_create(int n_vocab, float temperature, int top_k, float top_p,
                                                 uint64_t seed, mamba2_error *err) {
    if (n_vocab < 1) return api_fail(err, MAMBA2_ERR_ARGUMENT, "n_vocab = %d: a sampler needs at least one token", n_vocab), NULL;
    mamba2_sampler *s = calloc(1, sizeof *s);
    if (!s) return api_fail(err, MAMBA2_ERR_MEMORY, "out of memory"), NULL;
    Mamba2SamplerConfig cfg;
    mamba2_sampler_defaults(&cfg);
    cfg.temperature = temperature;
    cfg.top_k = top_k;
    cfg.top_p = top_p;
    cfg.seed = seed;
    Mamba2Error e = {{0}};
    if (mamba2_sampler_init(&s->s, &cfg, n_vocab, &e)) { /* a setting out of range */
        free(s);
        return api_fail_internal(err, MAMBA2_ERR_ARGUMENT, &e), NULL;
    }
    api_ok(err);
    return s;
}

MAMBA2_API void mamba2_sampler_destroy(mamba2_sampler *s) {
    if (!s) return;
    mamba2_sampler_free(&s->s);
    free(s);
}

MAMBA2_API int32_t mamba2_sample(mamba2_sampler *s, const float *logits) {
    return s && logits ? mamba2_sampler_sample(&s->s, logits, NULL, 0) : -1;
}

MAMBA2_API int32_t mamba2_sample_greedy(const float *logits, int n) {
    return logits && n >= 1 ? mamba2_argmax(logits, n) : -1;
}
