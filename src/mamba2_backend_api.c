/**
 * @file mamba2_backend_api.c
 * @brief The public API's backends: the options, "auto", open and close.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba2_impl.h"

MAMBA2_API const char *mamba2_backend_list(void) { return mamba2_backend_names(); }

/* The public options (strings for the formats, as on the command line) as backend.h's. */
static int convert_options(const mamba2_backend_options *o, Mamba2BackendOptions *out, mamba2_error *err) {
    memset(out, 0, sizeof *out);
    if (!o) return MAMBA2_OK;
    if (o->n_threads < 0) return api_fail(err, MAMBA2_ERR_ARGUMENT, "n_threads must be >= 0 (got %d)", o->n_threads);
    out->n_threads = o->n_threads;
    if (!o->weights || !strcmp(o->weights, "stored")) out->weights = MAMBA2_WEIGHTS_STORED;
    else if (!strcmp(o->weights, "q8")) out->weights = MAMBA2_WEIGHTS_Q8;
    else if (!strcmp(o->weights, "q4")) out->weights = MAMBA2_WEIGHTS_Q4;
    else return api_fail(err, MAMBA2_ERR_ARGUMENT, "weights '%s': expected stored, q8 or q4", o->weights);
    if (!o->precision || !strcmp(o->precision, "default")) out->precision = MAMBA2_PRECISION_DEFAULT;
    else if (!strcmp(o->precision, "fast")) out->precision = MAMBA2_PRECISION_FAST;
    else return api_fail(err, MAMBA2_ERR_ARGUMENT, "precision '%s': expected default or fast", o->precision);
    out->state_bf16 = o->gpu_state_bf16 != 0;
    out->progress = o->progress;
    out->progress_ctx = o->progress_ctx;
    return MAMBA2_OK;
}

/* "auto": the first of gpu, cpu, ref that is built in and starts with these options; when none
 * does, the message gives each one's reason. */
static int create_auto(const Mamba2Model *m, const Mamba2BackendOptions *o, Mamba2Backend **out, Mamba2Error *e) {
    static const char *const order[] = {"gpu", "cpu", "ref"};
    char reasons[sizeof e->msg] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        if (!mamba2_backend_exists(order[i])) continue;
        if (mamba2_backend_create(order[i], m, o, out, e) == 0) return 0;
        int n = snprintf(reasons + used, sizeof reasons - used, "%s%s: %s", used ? "; " : "", order[i], e->msg);
        if (n > 0) used += (size_t)n < sizeof reasons - used ? (size_t)n : sizeof reasons - used - 1;
    }
    return mamba2_fail(e, "no backend could start (%s)", reasons);
}

MAMBA2_API mamba2_backend *mamba2_backend_open(mamba2_model *m, const char *name, const mamba2_backend_options *opt,
                                               mamba2_error *err) {
    Mamba2BackendOptions o;
    if (!m) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no model given"), NULL;
    if (convert_options(opt, &o, err)) return NULL;
    if (!name) name = "auto";
    if (strcmp(name, "auto") && strcmp(name, "ref") && strcmp(name, "cpu") && strcmp(name, "gpu"))
        return api_fail(err, MAMBA2_ERR_ARGUMENT, "unknown backend '%s': expected ref, cpu, gpu or auto", name), NULL;
    mamba2_backend *h = calloc(1, sizeof *h);
    if (!h) return api_fail(err, MAMBA2_ERR_MEMORY, "out of memory"), NULL;
    Mamba2Error e = {{0}};
    int rc = strcmp(name, "auto") ? mamba2_backend_create(name, &m->m, &o, &h->b, &e) : create_auto(&m->m, &o, &h->b, &e);
    if (rc) {
        free(h);
        return api_fail_internal(err, MAMBA2_ERR_BACKEND, &e), NULL;
    }
    h->model = api_model_hold(m);
    api_ok(err);
    return h;
}

MAMBA2_API void mamba2_backend_close(mamba2_backend *b) {
    if (!b) return;
    mamba2_backend_destroy(b->b);
    api_model_release(b->model);
    free(b);
}

MAMBA2_API const char *mamba2_backend_name(const mamba2_backend *b) { return b ? b->b->name : NULL; }
