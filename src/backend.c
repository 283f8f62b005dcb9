/**
 * @file backend.c
 * @brief The registry of backends compiled into this build.
 *
 * The CPU and GPU paths register themselves through the MAMBA2_HAVE_CPU and
 * MAMBA2_HAVE_GPU macros, which the Makefile defines when it builds them.
 */
#include <string.h>

#include "backend.h"

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
} registry[] = {
    {"ref", mamba2_backend_ref_create},
#ifdef MAMBA2_HAVE_CPU
    {"cpu", mamba2_backend_cpu_create},
#endif
#ifdef MAMBA2_HAVE_GPU
    {"gpu", mamba2_backend_gpu_create},
#endif
};

int mamba2_backend_create(const char *name, const Mamba2Model *m, const Mamba2BackendOptions *opt,
                          Mamba2Backend **out, Mamba2Error *err) {
    Mamba2BackendOptions defaults = {0};
    *out = NULL;
    if (!opt) opt = &defaults;
    /* quantized weights and bf16-rounded activations exist on the cpu backend only */
    if (strcmp(name, "cpu") && opt->weights != MAMBA2_WEIGHTS_STORED)
        return mamba2_fail(err, "weights '%s' are a cpu backend option; the %s backend reads the stored weights",
                           mamba2_weight_format_name(opt->weights), name);
    if (strcmp(name, "cpu") && opt->precision != MAMBA2_PRECISION_DEFAULT)
        return mamba2_fail(err, "precision '%s' is a cpu backend option", mamba2_precision_name(opt->precision));
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (!strcmp(name, registry[i].name)) return registry[i].create(m, opt, out, err);
    return mamba2_fail(err, "unknown backend '%s' (this build has: %s)", name, mamba2_backend_names());
}

int mamba2_backend_exists(const char *name) {
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (!strcmp(name, registry[i].name)) return 1;
    return 0;
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
