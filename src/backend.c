/**
 * @file backend.c
 * @brief The registry of backends compiled into this build, and the checked entry points every
 *        caller goes through (the dispatch layer).
 *
 * The CPU and GPU paths register themselves through the MAMBA2_HAVE_CPU and
 * MAMBA2_HAVE_GPU macros, which the Makefile defines when it builds them. This is
 * the one file of the library that reaches into cpu/ and gpu/ (tests/check_layout.py).
 * Their constructors are declared here rather than taken from their headers, which
 * include backend.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#ifdef MAMBA2_HAVE_CPU
#include "blas_core.h"
#endif

#ifdef MAMBA2_HAVE_CPU
int mamba2_backend_cpu_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                              Mamba2Error *err);
#endif
#ifdef MAMBA2_HAVE_GPU
int mamba2_backend_gpu_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                              Mamba2Error *err);
#endif

typedef int (*Constructor)(const Mamba2Model *, const Mamba2BackendOptions *, Mamba2Backend **, Mamba2Error *);

static const struct {
    const char *name;
    Constructor create;
    void (*start_program)(char **argv); /**< process set-up of mamba2_backends_start_program(), or NULL */
} registry[] = {
    {"ref", mamba2_backend_ref_create, NULL},
#ifdef MAMBA2_HAVE_CPU
    {"cpu", mamba2_backend_cpu_create, cpu_blas_start_program},
#endif
#ifdef MAMBA2_HAVE_GPU
    {"gpu", mamba2_backend_gpu_create, NULL},
#endif
};

int mamba2_backend_create(const char *name, const Mamba2Model *m, const Mamba2BackendOptions *opt,
                          Mamba2Backend **out, Mamba2Error *err) {
    Mamba2BackendOptions defaults = {0};
    *out = NULL;
    if (!opt) opt = &defaults;
    /* quantized weights exist on the cpu backend (q8, q4) and the gpu backend (q8); bf16-rounded
     * activations on the cpu backend only */
    int quant_ok = !strcmp(name, "cpu") || (!strcmp(name, "gpu") && opt->weights == MAMBA2_WEIGHTS_Q8);
    if (!quant_ok && opt->weights != MAMBA2_WEIGHTS_STORED)
        return mamba2_fail(err, "weights '%s' are a cpu backend option%s; the %s backend reads the stored weights",
                           mamba2_weight_format_name(opt->weights), opt->weights == MAMBA2_WEIGHTS_Q8 ? " (and a gpu one)" : "",
                           name);
    if (strcmp(name, "cpu") && opt->precision != MAMBA2_PRECISION_DEFAULT)
        return mamba2_fail(err, "precision '%s' is a cpu backend option", mamba2_precision_name(opt->precision));
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (!strcmp(name, registry[i].name)) {
            /* a caller showing progress sees the weights read now (ref and cpu read the stored ones from
             * the mapping at the first token; quantizing and the GPU upload read them with their own) */
            if (opt->progress && opt->weights == MAMBA2_WEIGHTS_STORED && strcmp(name, "gpu"))
                mamba2_model_read_weights(m, opt->progress, opt->progress_ctx);
            return registry[i].create(m, opt, out, err);
        }
    return mamba2_fail(err, "unknown backend '%s' (this build has: %s)", name, mamba2_backend_names());
}

int mamba2_backend_exists(const char *name) {
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (!strcmp(name, registry[i].name)) return 1;
    return 0;
}

void mamba2_backends_start_program(char **argv) {
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (registry[i].start_program) registry[i].start_program(argv);
}

/* ---------------------------------------------------------------- the checked entry points */

/* Every id of tokens[n] in [0, V); @p where names an index in the message ("at position", "of sequence"). */
static int check_tokens(const Mamba2Backend *b, const int32_t *tokens, int n, const char *where, Mamba2Error *err) {
    int V = b->model->cfg.vocab_size;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return mamba2_fail(err, "token id %d %s %d is outside the vocabulary [0, %d)", tokens[i], where, i, V);
    return 0;
}

/* The inputs of a prefill of tokens[T] from state st. */
static int check_prefill(const Mamba2Backend *b, const Mamba2State *st, const int32_t *tokens, int T,
                         Mamba2Error *err) {
    if (!b) return mamba2_fail(err, "no backend (NULL)");
    if (T < 1) return mamba2_fail(err, "no tokens to run (T = %d)", T);
    if (!tokens) return mamba2_fail(err, "no token array (NULL) for %d tokens", T);
    if (!st) return mamba2_fail(err, "no state (NULL)");
    if (check_tokens(b, tokens, T, "at position", err)) return -1;
    if (st->pos < 0 || st->pos > MAMBA2_STATE_MAX_POS - T)
        return mamba2_fail(err, "the state's position %lld + %d tokens would pass the limit of 2^53 tokens",
                           (long long)st->pos, T);
    return mamba2_state_check_shape(st, &b->model->cfg, err);
}

int mamba2_backend_prefill(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                           int all_positions, Mamba2Error *err) {
    if (check_prefill(b, st, tokens, T, err)) return -1;
    return b->prefill(b, st, tokens, T, logits, all_positions, err);
}

int mamba2_backend_prefill_observed(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                                    Mamba2LayerHook hook, void *hook_ctx, Mamba2Error *err) {
    if (check_prefill(b, st, tokens, T, err)) return -1;
    if (!b->prefill_observed) return mamba2_fail(err, "the %s backend cannot report the layers", b->name);
    return b->prefill_observed(b, st, tokens, T, logits, hook, hook_ctx, err);
}

int mamba2_backend_step(Mamba2Backend *b, Mamba2State **states, const int32_t *tokens, int B, float *logits,
                        Mamba2Error *err) {
    if (!b) return mamba2_fail(err, "no backend (NULL)");
    if (B < 1) return mamba2_fail(err, "no sequences to step (B = %d)", B);
    if (!states || !tokens || !logits)
        return mamba2_fail(err, "no %s array (NULL) for %d sequences", !states ? "state" : !tokens ? "token" : "logits",
                           B);
    if (check_tokens(b, tokens, B, "of sequence", err)) return -1;
    for (int i = 0; i < B; i++) {
        if (!states[i]) return mamba2_fail(err, "no state (NULL) for sequence %d", i);
        if (mamba2_state_check_shape(states[i], &b->model->cfg, err))
            return mamba2_fail_context(err, "sequence %d", i);
        if (states[i]->pos < 0 || states[i]->pos >= MAMBA2_STATE_MAX_POS)
            return mamba2_fail(err, "sequence %d: the state's position %lld is at the limit of 2^53 tokens", i,
                               (long long)states[i]->pos);
        for (int j = 0; j < i; j++) /* each sequence advances its own state once */
            if (states[j] == states[i]) return mamba2_fail(err, "sequences %d and %d share one state", j, i);
    }
    return b->step(b, states, tokens, B, logits, err);
}

float *mamba2_backend_logits_alloc(Mamba2Backend *b, size_t count, Mamba2Error *err) {
    if (!b) return mamba2_fail(err, "no backend (NULL)"), NULL;
    if (count == 0) return mamba2_fail(err, "a logits array of 0 floats"), NULL;
    if (count > SIZE_MAX / sizeof(float)) return mamba2_fail(err, "a logits array of %zu floats is larger than memory", count), NULL;
    void *p = b->host_alloc ? b->host_alloc(b, count * sizeof(float)) : malloc(count * sizeof(float));
    if (!p) return mamba2_fail(err, "out of memory for %zu logits (%.1f MiB)", count, count * sizeof(float) / 1048576.0), NULL;
    return p;
}

void mamba2_backend_logits_free(Mamba2Backend *b, float *logits) {
    if (!logits) return;
    if (b && b->host_free) b->host_free(b, logits);
    else free(logits);
}

void mamba2_backend_destroy(Mamba2Backend *b) {
    if (b) b->destroy(b);
}

const char *mamba2_backend_names(void) {
    return "ref"
#ifdef MAMBA2_HAVE_CPU
           ",cpu"
#endif
#ifdef MAMBA2_HAVE_GPU
           ",gpu"
#endif
        ;
}

const char *mamba2_weight_format_name(Mamba2WeightFormat f) {
    return f == MAMBA2_WEIGHTS_Q8 ? "q8" : f == MAMBA2_WEIGHTS_Q4 ? "q4" : "stored";
}

const char *mamba2_precision_name(Mamba2Precision p) { return p == MAMBA2_PRECISION_FAST ? "fast" : "default"; }
