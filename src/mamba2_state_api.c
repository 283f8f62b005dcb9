/**
 * @file mamba2_state_api.c
 * @brief The public API's sequence states: create, clear, clone, save to and load from a file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mamba2_impl.h"

MAMBA2_API mamba2_state *mamba2_state_create(mamba2_model *m, mamba2_error *err) {
    if (!m) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no model given"), NULL;
    mamba2_state *s = calloc(1, sizeof *s);
    if (!s) return api_fail(err, MAMBA2_ERR_MEMORY, "out of memory"), NULL;
    Mamba2Error e = {{0}};
    if (mamba2_state_init(&s->s, &m->m.cfg, &e)) {
        free(s);
        return api_fail_internal(err, MAMBA2_ERR_MEMORY, &e), NULL;
    }
    s->model = api_model_hold(m);
    api_ok(err);
    return s;
}

MAMBA2_API void mamba2_state_destroy(mamba2_state *s) {
    if (!s) return;
    mamba2_state_free(&s->s);
    api_model_release(s->model);
    free(s);
}

MAMBA2_API void mamba2_state_clear(mamba2_state *s) {
    if (s) mamba2_state_reset(&s->s);
}

MAMBA2_API mamba2_state *mamba2_state_clone(mamba2_state *src, mamba2_error *err) {
    if (!src) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no state given"), NULL;
    mamba2_state *dst = mamba2_state_create(src->model, err);
    Mamba2Error e = {{0}};
    if (dst && mamba2_state_copy(&dst->s, &src->s, &e)) {
        mamba2_state_destroy(dst);
        return api_fail_internal(err, MAMBA2_ERR_BACKEND, &e), NULL; /* the copy back from a GPU failed */
    }
    return dst;
}

MAMBA2_API long long mamba2_state_position(const mamba2_state *s) { return s ? (long long)s->s.pos : -1; }

MAMBA2_API int mamba2_state_save_file(mamba2_state *s, const char *path, mamba2_error *err) {
    if (!s || !path) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no %s given", s ? "file" : "state");
    Mamba2Error e = {{0}};
    if (mamba2_state_save(&s->s, &s->model->m.cfg, path, &e)) return api_fail_internal(err, MAMBA2_ERR_IO, &e);
    return api_ok(err);
}

MAMBA2_API int mamba2_state_load_file(mamba2_state *s, const char *path, mamba2_error *err) {
    if (!s || !path) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no %s given", s ? "file" : "state");
    /* A file that cannot be read is an I/O error; what it holds is checked by the reader. */
    if (access(path, R_OK) != 0) return api_fail(err, MAMBA2_ERR_IO, "%s: %s", path, strerror(errno));
    Mamba2Error e = {{0}};
    if (mamba2_state_load(&s->s, &s->model->m.cfg, path, &e)) return api_fail_internal(err, MAMBA2_ERR_FORMAT, &e);
    return api_ok(err);
}
