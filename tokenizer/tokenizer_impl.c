/**
 * @file tokenizer_impl.c
 * @brief The per-id tables both tokenizer back ends fill (tokenizer_impl.h), and the growable
 *        buffers they work with.
 *
 * Below the back ends: it calls only strmap, and nothing of tokenizer.c, tokenizer_hf.c or
 * tokenizer_spm.c.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

int bytebuf_reserve(ByteBuf *b, size_t n) {
    if (n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    return 0;
}

int bytebuf_add(ByteBuf *b, const void *s, size_t n) {
    if (bytebuf_reserve(b, b->n + n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int idvec_push(IdVec *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        int32_t *p = realloc(v->v, cap * sizeof *p);
        if (!p) return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = id;
    return 0;
}

int tok_alloc(struct Mamba2Tokenizer *t, int32_t n, Mamba2Error *err) {
    size_t N = (size_t)n;
    t->n_vocab = n;
    t->piece_off = malloc(N * sizeof *t->piece_off);
    t->piece_len = calloc(N, sizeof *t->piece_len);
    t->surf_off = calloc(N, sizeof *t->surf_off);
    t->surf_len = calloc(N, sizeof *t->surf_len);
    t->type = malloc(N);
    t->skip = calloc(N, 1);
    t->lead_ws = calloc(N, 1);
    if (!t->piece_off || !t->piece_len || !t->surf_off || !t->surf_len || !t->type || !t->skip || !t->lead_ws)
        return mamba2_fail(err, "%s: out of memory for %d tokens", t->source, (int)n);
    for (size_t i = 0; i < N; i++) {
        t->piece_off[i] = TOK_NO_PIECE;
        t->type[i] = TOK_TYPE_INVALID;
    }
    return 0;
}

int tok_set_piece(struct Mamba2Tokenizer *t, int32_t id, const char *s, size_t len) {
    if (len >= UINT32_MAX - t->pieces.n) return -1; /* offsets are 32-bit */
    uint32_t off = (uint32_t)t->pieces.n;
    if (bytebuf_add(&t->pieces, s, len) || bytebuf_add(&t->pieces, "", 1)) return -1;
    t->piece_off[id] = off;
    t->piece_len[id] = (uint32_t)len;
    return 0;
}

int tok_set_surface(struct Mamba2Tokenizer *t, int32_t id, const char *s, size_t len) {
    if (len >= UINT32_MAX - t->surfaces.n) return -1; /* offsets are 32-bit */
    uint32_t off = (uint32_t)t->surfaces.n;
    if (bytebuf_add(&t->surfaces, s, len)) return -1;
    t->surf_off[id] = off;
    t->surf_len[id] = (uint32_t)len;
    return 0;
}

const char *tok_piece(const struct Mamba2Tokenizer *t, int32_t id) { return t->pieces.p + t->piece_off[id]; }

int tok_finish(struct Mamba2Tokenizer *t, Mamba2Error *err) {
    size_t n_pieces = 0; /* the map is sized by the pieces there are, not by the largest id */
    for (int32_t id = 0; id < t->n_vocab; id++) n_pieces += t->piece_off[id] != TOK_NO_PIECE;
    if (strmap_init(&t->piece_ids, n_pieces))
        return mamba2_fail(err, "%s: out of memory", t->source);
    t->max_surface = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->surf_len[id] > t->max_surface) t->max_surface = t->surf_len[id];
        if (t->piece_off[id] == TOK_NO_PIECE) continue;
        if (strmap_put(&t->piece_ids, tok_piece(t, id), t->piece_len[id], id) < 0)
            return mamba2_fail(err, "%s: out of memory", t->source);
    }
    return 0;
}
