/**
 * @file mamba2_model_api.c
 * @brief The public API's models: open a checkpoint directory, its hyper-parameters, the sizes
 *        a configuration implies, and the references that keep a model alive.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "mamba2_impl.h"

mamba2_model *api_model_hold(mamba2_model *m) {
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void api_model_release(mamba2_model *m) {
    if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        mamba2_model_free(&m->m);
        free(m);
    }
}

MAMBA2_API mamba2_model *mamba2_model_open(const char *dir, mamba2_error *err) {
    struct stat sb;
    if (!dir) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no checkpoint directory given"), NULL;
    /* A path that is not a directory is an I/O error; what the directory holds is checked by the loader. */
    if (stat(dir, &sb) != 0) return api_fail(err, MAMBA2_ERR_IO, "%s: %s", dir, strerror(errno)), NULL;
    if (!S_ISDIR(sb.st_mode)) return api_fail(err, MAMBA2_ERR_IO, "%s: not a directory", dir), NULL;
    mamba2_model *m = calloc(1, sizeof *m);
    if (!m) return api_fail(err, MAMBA2_ERR_MEMORY, "out of memory"), NULL;
    Mamba2Error e = {{0}};
    if (mamba2_model_load(dir, &m->m, &e)) {
        free(m);
        return api_fail_internal(err, MAMBA2_ERR_FORMAT, &e), NULL;
    }
    m->refs = 1;
    api_ok(err);
    return m;
}

MAMBA2_API void mamba2_model_close(mamba2_model *m) { api_model_release(m); }

MAMBA2_API int mamba2_model_dim(const mamba2_model *m, int which) {
    if (!m) return -1;
    const Mamba2Config *c = &m->m.cfg;
    switch (which) {
    case MAMBA2_DIM_VOCAB_SIZE: return c->vocab_size;
    case MAMBA2_DIM_N_LAYER: return c->n_layer;
    case MAMBA2_DIM_D_MODEL: return c->d_model;
    case MAMBA2_DIM_N_HEADS: return c->n_heads;
    case MAMBA2_DIM_HEAD_DIM: return c->head_dim;
    case MAMBA2_DIM_D_STATE: return c->d_state;
    case MAMBA2_DIM_N_GROUPS: return c->n_groups;
    case MAMBA2_DIM_D_CONV: return c->d_conv;
    case MAMBA2_DIM_D_INNER: return c->d_inner;
    case MAMBA2_DIM_CONV_DIM: return c->conv_dim;
    case MAMBA2_DIM_D_IN_PROJ: return c->d_in_proj;
    case MAMBA2_DIM_CHUNK_SIZE: return c->chunk_size;
    default: return -1;
    }
}

MAMBA2_API long long mamba2_model_n_params(const mamba2_model *m) {
    return m ? mamba2_config_param_count(&m->m.cfg) : -1;
}

MAMBA2_API long long mamba2_model_state_bytes(const mamba2_model *m) {
    return m ? mamba2_config_state_bytes(&m->m.cfg) : -1;
}

MAMBA2_API const char *mamba2_model_dir(const mamba2_model *m) { return m ? m->m.dir : NULL; }

MAMBA2_API int mamba2_config_sizes(const char *config_json, long long *n_params, long long *state_bytes,
                                   mamba2_error *err) {
    if (!config_json) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no configuration text given");
    Mamba2Config cfg;
    Mamba2Error e = {{0}};
    if (mamba2_config_parse(config_json, "config", &cfg, &e)) return api_fail_internal(err, MAMBA2_ERR_FORMAT, &e);
    if (n_params) *n_params = mamba2_config_param_count(&cfg);
    if (state_bytes) *state_bytes = mamba2_config_state_bytes(&cfg);
    return api_ok(err);
}
