/**
 * @file tokenizer.c
 * @brief The format-independent part of the tokenizer: loading by path, dispatch to the
 *        tokenizer.json or SentencePiece back end, the public accessors and the streaming decoder.
 *
 * Dependencies flow one way: this file calls the back ends (tokenizer_hf.c, tokenizer_spm.c);
 * they fill the per-id tables through tokenizer_impl.c and use bpe, utf8 and strmap; none of
 * them calls back into this file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "tokenizer.h"
#include "tokenizer_impl.h"
#include "utf8.h"

/* tokenizer_impl.h names the type of an empty id without including this public header */
typedef char tok_type_invalid_is_mamba2_token_invalid[TOK_TYPE_INVALID == MAMBA2_TOKEN_INVALID ? 1 : -1];

/* Tokenizer files beyond this are not real ones (the largest known, Gemma 3's tokenizer.json, is 33 MB);
 * checked against the file's size before it is read. */
#define MAX_TOKENIZER_BYTES (128 << 20)

/* Is `path` a directory? */
static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Which file to read for `path`: the path itself, or the preferred tokenizer file of a directory. */
static int pick_file(const char *path, char *out, size_t cap, Mamba2Error *err) {
    static const char *const names[] = {"tokenizer.json", "tokenizer.model.v3", "tokenizer.model"};
    if (!is_dir(path)) {
        if ((size_t)snprintf(out, cap, "%s", path) >= cap) return mamba2_fail(err, "%s: path too long", path);
        return 0;
    }
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if ((size_t)snprintf(out, cap, "%s/%s", path, names[i]) >= cap)
            return mamba2_fail(err, "%s: path too long", path);
        if (file_exists(out)) return 0;
    }
    return mamba2_fail(err, "%s: no tokenizer.json, tokenizer.model.v3 or tokenizer.model in this directory", path);
}

Mamba2Tokenizer *mamba2_tokenizer_load(const char *path, Mamba2Error *err) {
    Mamba2Tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        mamba2_fail(err, "%s: out of memory", path);
        return NULL;
    }
    t->bos = t->eos = -1;
    if (pick_file(path, t->source, sizeof t->source, err)) {
        free(t);
        return NULL;
    }
    long len = 0; /* a regular file, its size checked before it is read; a FIFO is refused without blocking */
    char *data = mamba2_read_file_max(t->source, MAX_TOKENIZER_BYTES, 0, &len, err);
    if (!data) {
        free(t);
        return NULL;
    }
    Mamba2Tokenizer *loaded = mamba2_tokenizer_load_bytes(data, (size_t)len, t->source, err);
    free(data);
    free(t);
    return loaded;
}

Mamba2Tokenizer *mamba2_tokenizer_load_bytes(const void *bytes, size_t len, const char *source, Mamba2Error *err) {
    const char *data = bytes;
    Mamba2Tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        mamba2_fail(err, "%s: out of memory", source);
        return NULL;
    }
    t->bos = t->eos = -1;
    snprintf(t->source, sizeof t->source, "%s", source);
    if (len > MAX_TOKENIZER_BYTES) { /* the JSON parser takes an int length; tables use 32-bit offsets */
        mamba2_fail(err, "%s: %zu bytes: too large for a tokenizer (at most %d MiB)", source, len,
                    MAX_TOKENIZER_BYTES >> 20);
        free(t);
        return NULL;
    }
    /* JSON starts with '{' after optional white space; a SentencePiece model starts with a protobuf tag. */
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')) i++;
    if (i < len && data[i] == '[') {
        mamba2_fail(err, "%s: a JSON array, not a tokenizer (tokenizer.json is a JSON object; a SentencePiece "
                    "model is binary)", source);
        free(t);
        return NULL;
    }
    int rc = (i < len && data[i] == '{') ? hf_load(t, data, len, err)
                                          : spm_load(t, (const unsigned char *)data, len, err);
    if (rc == 0) rc = tok_finish(t, err);
    if (rc) {
        mamba2_tokenizer_free(t);
        return NULL;
    }
    return t;
}

void mamba2_tokenizer_free(Mamba2Tokenizer *t) {
    if (!t) return;
    if (t->hf) hf_free(t->hf);
    if (t->spm) spm_free(t->spm);
    strmap_free(&t->piece_ids);
    free(t->pieces.p);
    free(t->surfaces.p);
    free(t->piece_off);
    free(t->piece_len);
    free(t->surf_off);
    free(t->surf_len);
    free(t->type);
    free(t->skip);
    free(t->lead_ws);
    free(t);
}

const char *mamba2_tokenizer_source(const Mamba2Tokenizer *t) { return t->source; }
int mamba2_tokenizer_is_hf(const Mamba2Tokenizer *t) { return t->hf != NULL; }
int32_t mamba2_tokenizer_vocab_size(const Mamba2Tokenizer *t) { return t->n_vocab; }
int32_t mamba2_tokenizer_bos(const Mamba2Tokenizer *t) { return t->bos; }
int32_t mamba2_tokenizer_eos(const Mamba2Tokenizer *t) { return t->eos; }

Mamba2TokenType mamba2_tokenizer_token_type(const Mamba2Tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return MAMBA2_TOKEN_INVALID;
    return (Mamba2TokenType)t->type[id];
}

const char *mamba2_tokenizer_piece(const Mamba2Tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->piece_off[id] == TOK_NO_PIECE) return NULL;
    if (len) *len = t->piece_len[id];
    return tok_piece(t, id);
}

int32_t mamba2_tokenizer_piece_id(const Mamba2Tokenizer *t, const char *piece, size_t len) {
    return strmap_get(&t->piece_ids, piece, len);
}

const char *mamba2_tokenizer_token_bytes(const Mamba2Tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->type[id] == MAMBA2_TOKEN_INVALID) return NULL;
    *len = t->surf_len[id];
    return t->surfaces.p + t->surf_off[id];
}

int mamba2_tokenizer_encode(const Mamba2Tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                            size_t *n_ids, Mamba2Error *err) {
    IdVec out = {0};
    char *repaired = NULL;
    *ids = NULL;
    *n_ids = 0;
    /* Both back ends work on valid UTF-8: repair invalid bytes first (one U+FFFD per byte). */
    if (!utf8_is_valid(text, len)) {
        if (!(repaired = utf8_repair(text, len, &len))) return mamba2_fail(err, "%s: out of memory", t->source);
        text = repaired;
    }
    int rc = t->hf ? hf_encode(t, text, len, add_bos, &out, err) : spm_encode(t, text, len, add_bos, &out, err);
    free(repaired);
    if (rc) {
        free(out.v);
        return -1;
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

int mamba2_tokenizer_decode(const Mamba2Tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
                            Mamba2Error *err) {
    ByteBuf out = {0};
    int rc = 0;
    *text = NULL;
    *len = 0;
    if (bytebuf_add(&out, "", 0)) return mamba2_fail(err, "%s: out of memory", t->source);
    if (t->hf) {
        rc = hf_decode(t, ids, n, &out, err);
    } else {
        /* sentencepiece's decode is exactly the streaming decoder run to the end. */
        Mamba2Detokenizer d;
        const char *s;
        size_t k;
        rc = mamba2_detok_init(&d, t, err);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            rc = mamba2_detok_push(&d, ids[i], &s, &k, err);
            if (rc == 0 && bytebuf_add(&out, s, k)) rc = mamba2_fail(err, "%s: out of memory", t->source);
        }
        if (rc == 0) {
            mamba2_detok_finish(&d, &s, &k);
            if (bytebuf_add(&out, s, k)) rc = mamba2_fail(err, "%s: out of memory", t->source);
        }
        mamba2_detok_free(&d);
    }
    if (rc) {
        free(out.p);
        return -1;
    }
    *text = out.p;
    *len = out.n;
    return 0;
}

/* ---- streaming decoder ---- */

int mamba2_detok_init(Mamba2Detokenizer *d, const Mamba2Tokenizer *t, Mamba2Error *err) {
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->strip_left = t->strip_count;
    /* One push emits at most: 4 pending bytes as U+FFFD each, then one surface. */
    d->cap = t->max_surface + 4 * 3 + 8;
    d->buf = malloc(d->cap);
    if (!d->buf) return mamba2_fail(err, "out of memory");
    return 0;
}

/* Append complete characters to the output, removing the leading characters a Strip decoder removes. */
static void emit(Mamba2Detokenizer *d, size_t *n, const char *s, size_t k) {
    const Mamba2Tokenizer *t = d->tok;
    size_t c = (size_t)t->strip_char_len;
    while (d->strip_left > 0 && k > 0) {
        if (k >= c && memcmp(s, t->strip_char, c) == 0) {
            s += c;
            k -= c;
            d->strip_left--;
        } else {
            d->strip_left = 0;
        }
    }
    if (k == 0) return;
    memcpy(d->buf + *n, s, k);
    *n += k;
    d->emitted = 1;
}

/*
 * Print the pending bytes that form complete characters. A byte that cannot
 * start or continue a valid character becomes U+FFFD. With `final`, an
 * unfinished character is also invalid (its bytes become U+FFFD each).
 */
static void drain_bytes(Mamba2Detokenizer *d, size_t *n, int final) {
    while (d->n_pending > 0) {
        int len = utf8_decode(d->pending, (size_t)d->n_pending, NULL);
        if (len == 0 && !final && utf8_is_incomplete_prefix(d->pending, (size_t)d->n_pending)) return;
        if (len > 0) {
            emit(d, n, (const char *)d->pending, (size_t)len);
        } else {
            emit(d, n, MAMBA2_UTF8_REPLACEMENT, 3);
            len = 1;
        }
        d->n_pending -= len;
        memmove(d->pending, d->pending + len, (size_t)d->n_pending);
    }
}

int mamba2_detok_push(Mamba2Detokenizer *d, int32_t id, const char **out, size_t *len, Mamba2Error *err) {
    const Mamba2Tokenizer *t = d->tok;
    size_t n = 0;
    *out = d->buf;
    *len = 0;
    if (id < 0 || id >= t->n_vocab || t->type[id] == MAMBA2_TOKEN_INVALID) {
        if (t->skip_unknown_ids) return 0;
        return mamba2_fail(err, "%s: invalid token id %d (vocabulary size %d)", t->source, (int)id, (int)t->n_vocab);
    }
    if (t->skip[id]) return 0; /* removed before decoding: does not even end a run of byte tokens */
    const char *s = t->surfaces.p + t->surf_off[id];
    size_t k = t->surf_len[id];
    if (t->type[id] == MAMBA2_TOKEN_BYTE) {
        d->pending[d->n_pending++] = (unsigned char)s[0];
        drain_bytes(d, &n, 0);
        *len = n;
        return 0;
    }
    drain_bytes(d, &n, 1);
    if (t->spm_rules) {
        /* sentencepiece: the first "▁" of the text is the dummy prefix; remove it, once. */
        int at_start = !(d->bos_ws_seen || d->emitted);
        int normal = t->type[id] == MAMBA2_TOKEN_NORMAL || t->type[id] == MAMBA2_TOKEN_USER;
        d->bos_ws_seen = 0;
        if (normal && at_start && t->spm_strip_ws && t->lead_ws[id]) {
            s++;
            k--;
            d->bos_ws_seen = !t->spm_remove_extra;
        }
    }
    emit(d, &n, s, k);
    *len = n;
    return 0;
}

void mamba2_detok_finish(Mamba2Detokenizer *d, const char **out, size_t *len) {
    size_t n = 0;
    drain_bytes(d, &n, 1);
    *out = d->buf;
    *len = n;
}

void mamba2_detok_free(Mamba2Detokenizer *d) {
    free(d->buf);
    d->buf = NULL;
}
