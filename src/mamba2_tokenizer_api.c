/**
 * @file mamba2_tokenizer_api.c
 * @brief The public API's tokenizers: open, encode into and decode from caller-owned buffers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mamba2_impl.h"

MAMBA2_API mamba2_tokenizer *mamba2_tokenizer_open(const char *path, mamba2_error *err) {
    if (!path) return api_fail(err, MAMBA2_ERR_ARGUMENT, "no tokenizer path given"), NULL;
    if (access(path, R_OK) != 0) return api_fail(err, MAMBA2_ERR_IO, "%s: %s", path, strerror(errno)), NULL;
    mamba2_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return api_fail(err, MAMBA2_ERR_MEMORY, "out of memory"), NULL;
    Mamba2Error e = {{0}};
    if (!(t->t = mamba2_tokenizer_load(path, &e))) {
        free(t);
        return api_fail_internal(err, MAMBA2_ERR_FORMAT, &e), NULL;
    }
    api_ok(err);
    return t;
}

MAMBA2_API void mamba2_tokenizer_close(mamba2_tokenizer *t) {
    if (!t) return;
    mamba2_tokenizer_free(t->t);
    free(t);
}

MAMBA2_API int mamba2_tokenizer_n_vocab(const mamba2_tokenizer *t) { return t ? mamba2_tokenizer_vocab_size(t->t) : -1; }

MAMBA2_API int mamba2_tokenizer_bos_id(const mamba2_tokenizer *t) { return t ? mamba2_tokenizer_bos(t->t) : -1; }

MAMBA2_API int mamba2_tokenizer_eos_id(const mamba2_tokenizer *t) { return t ? mamba2_tokenizer_eos(t->t) : -1; }

/* The convention of both directions: @p need items, a buffer of @p cap; a NULL buffer of capacity
 * 0 asks for the size only. */
static int check_fit(size_t need, const void *buf, size_t cap, const char *what, mamba2_error *err) {
    if ((!buf && cap == 0) || need <= cap) return api_ok(err);
    return api_fail(err, MAMBA2_ERR_ARGUMENT, "%zu %s do not fit in a buffer of %zu", need, what, cap);
}

MAMBA2_API int mamba2_tokenize(const mamba2_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids,
                               size_t cap, size_t *n_ids, mamba2_error *err) {
    if (!t || (!text && len) || !n_ids || (!ids && cap))
        return api_fail(err, MAMBA2_ERR_ARGUMENT, "tokenize: a NULL tokenizer, text, ids or n_ids");
    int32_t *all = NULL;
    size_t n = 0;
    Mamba2Error e = {{0}};
    if (mamba2_tokenizer_encode(t->t, text ? text : "", len, add_bos != 0, &all, &n, &e))
        return api_fail_internal(err, MAMBA2_ERR_ARGUMENT, &e); /* a character it cannot encode */
    *n_ids = n;
    if (ids && n && cap) memcpy(ids, all, (n < cap ? n : cap) * sizeof *ids);
    free(all);
    return check_fit(n, ids, cap, "ids", err);
}

MAMBA2_API int mamba2_detokenize(const mamba2_tokenizer *t, const int32_t *ids, size_t n, char *text, size_t cap,
                                 size_t *len, mamba2_error *err) {
    if (!t || (!ids && n) || !len || (!text && cap))
        return api_fail(err, MAMBA2_ERR_ARGUMENT, "detokenize: a NULL tokenizer, ids, text or len");
    int32_t V = mamba2_tokenizer_vocab_size(t->t);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return api_fail(err, MAMBA2_ERR_TOKEN, "token id %d at position %zu is outside the tokenizer's [0, %d)",
                            (int)ids[i], i, (int)V);
    char *all = NULL;
    size_t bytes = 0;
    Mamba2Error e = {{0}};
    if (mamba2_tokenizer_decode(t->t, ids, n, &all, &bytes, &e)) return api_fail_internal(err, MAMBA2_ERR_TOKEN, &e);
    *len = bytes;
    if (text && cap) { /* as much as fits, always NUL-terminated */
        size_t k = bytes < cap ? bytes : cap - 1;
        memcpy(text, all, k);
        text[k] = 0;
    }
    free(all);
    return check_fit(bytes + 1, text, cap, "bytes (with the NUL)", err);
}
