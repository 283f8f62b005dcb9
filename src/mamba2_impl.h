/**
 * @file mamba2_impl.h
 * @brief What the files of the public API (src/mamba2_*.c) share: the contents of the opaque
 *        handles of include/mamba2.h, and the filling of a mamba2_error.
 *
 * Each handle wraps the internal object it stands for. Backends and states hold a reference
 * on their model, so that the handles can be released in any order (Python's garbage
 * collector frees objects in an order of its own).
 */
#ifndef MAMBA2_IMPL_H
#define MAMBA2_IMPL_H

#include "backend.h"
#include "error.h"
#include "mamba2.h"
#include "model.h"
#include "sampler.h"
#include "state.h"
#include "tokenizer.h"

/** A loaded checkpoint, freed when the last of the caller's handle, its backends and its states goes. */
struct mamba2_model {
    Mamba2Model m; /**< the checkpoint */
    int refs;      /**< holders: the caller (until mamba2_model_close()), each backend, each state */
};

/** A backend and the model it runs. */
struct mamba2_backend {
    Mamba2Backend *b;     /**< the internal backend (ref, cpu, gpu) */
    mamba2_model *model;  /**< held */
};

/** A sequence state and the model whose shape it has. */
struct mamba2_state {
    Mamba2State s;        /**< conv [L, conv_dim, K−1] and ssm [L, H, P, N], fp32 */
    mamba2_model *model;  /**< held */
};

/** A tokenizer. */
struct mamba2_tokenizer {
    Mamba2Tokenizer *t; /**< the internal tokenizer (read-only once loaded) */
};

/** A sampler with its random state and scratch space. */
struct mamba2_sampler {
    Mamba2Sampler s; /**< settings, generator, [V] scratch */
};

/** Take one more reference on @p m; returns @p m. */
mamba2_model *api_model_hold(mamba2_model *m);

/** Drop one reference on @p m; the last one frees the model (NULL is allowed). */
void api_model_release(mamba2_model *m);

/** Mark @p err (may be NULL) as a success; returns #MAMBA2_OK. */
int api_ok(mamba2_error *err);

/**
 * @brief Fill @p err (may be NULL) with @p code and a printf-style message.
 * @return @p code, so that a function can `return api_fail(err, MAMBA2_ERR_..., "...")`.
 */
int api_fail(mamba2_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/**
 * @brief Pass on the message of an internal failure with the code of the operation that failed,
 *        or #MAMBA2_ERR_MEMORY when the message says the memory ran out (every internal
 *        allocation failure says "out of memory").
 * @return the code given to @p err.
 */
int api_fail_internal(mamba2_error *err, int code, const Mamba2Error *internal);

#endif
