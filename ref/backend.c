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
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (!strcmp(name, registry[i].name)) return registry[i].create(m, opt ? opt : &defaults, out, err);
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
