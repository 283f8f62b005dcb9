/**
 * @file bpe.c
 * @brief Byte-pair merging with a 4-ary min-heap of pair entries (see bpe.h).
 */
#include "bpe.h"

#include <stdlib.h>
#include <string.h>

uint32_t bpe_score_priority(float score) {
    uint32_t u;
    if (score == 0.0f) score = 0.0f; /* −0 → +0 */
    memcpy(&u, &score, sizeof u);
    /* IEEE floats as unsigned integers in increasing order of value: flip all bits of negatives, the sign of
       positives. Then complement, so that a higher score gives a smaller priority. */
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

/* Children of node i are 4i+1 .. 4i+4; its parent is (i−1)/4. */
static void sift_down(BpeEntry *h, size_t n, size_t i) {
    BpeEntry x = h[i];
    for (;;) {
        size_t c = 4 * i + 1, best = c;
        if (c >= n) break;
        size_t end = c + 4 < n ? c + 4 : n;
        for (size_t j = c + 1; j < end; j++)
            if (h[j].key < h[best].key) best = j;
        if (h[best].key >= x.key) break;
        h[i] = h[best];
        i = best;
    }
    h[i] = x;
}

static int push(BpeWork *w, BpeEntry e) {
    if (w->size == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        BpeEntry *p = realloc(w->heap, cap * sizeof *p);
        if (!p) return -1;
        w->heap = p;
        w->cap = cap;
    }
    size_t i = w->size++;
    while (i > 0 && w->heap[(i - 1) / 4].key > e.key) {
        w->heap[i] = w->heap[(i - 1) / 4];
        i = (i - 1) / 4;
    }
    w->heap[i] = e;
    return 0;
}

/* The entry for the pair (left, next of left), if it merges. */
static int pair_entry(const BpeSymbol *sym, int32_t left, BpePairFn pair, const void *ctx, BpeEntry *e) {
    uint32_t p;
    if (left < 0 || sym[left].next < 0) return 0;
    const BpeSymbol *r = &sym[sym[left].next];
    if (!pair(ctx, &sym[left], r, &p, &e->merged)) return 0;
    e->key = (uint64_t)p << 32 | (uint32_t)left;
    e->size = sym[left].len + r->len;
    return 1;
}

int bpe_merge(BpeSymbol *sym, int32_t n, BpePairFn pair, const void *ctx, BpeWork *w) {
    BpeEntry e;
    w->size = 0;
    if (n < 2) return 0;
    /* All adjacent pairs, then heapify bottom-up in O(n). */
    if ((size_t)n > w->cap) {
        BpeEntry *p = realloc(w->heap, (size_t)n * sizeof *p);
        if (!p) return -1;
        w->heap = p;
        w->cap = (size_t)n;
    }
    for (int32_t i = 0; i + 1 < n; i++)
        if (pair_entry(sym, i, pair, ctx, &e)) w->heap[w->size++] = e;
    for (size_t i = w->size / 4 + 1; i-- > 0;)
        if (i < w->size) sift_down(w->heap, w->size, i);

    /* Pop the best pair (L, R); skip it if stale; else merge R into L and queue (P, L) and (L, next). */
    while (w->size > 0) {
        e = w->heap[0];
        w->heap[0] = w->heap[--w->size];
        sift_down(w->heap, w->size, 0);
        int32_t L = (int32_t)(uint32_t)e.key, R = sym[L].next;
        if (sym[L].len == 0 || R < 0 || sym[L].len + sym[R].len != e.size) continue;
        sym[L].id = e.merged;
        sym[L].len += sym[R].len;
        sym[L].next = sym[R].next;
        if (sym[R].next >= 0) sym[sym[R].next].prev = L;
        sym[R].len = 0;
        sym[R].prev = sym[R].next = -1;
        if (pair_entry(sym, sym[L].prev, pair, ctx, &e) && push(w, e)) return -1;
        if (pair_entry(sym, L, pair, ctx, &e) && push(w, e)) return -1;
    }
    return 0;
}

void bpe_work_free(BpeWork *w) {
    free(w->heap);
    w->heap = NULL;
    w->cap = w->size = 0;
}

/* "▁" is E2 96 81; a character that is not "▁" cannot end with these bytes (E2 is a lead byte). */
static int ws_at(const char *s, size_t i) {
    return (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 && (unsigned char)s[i + 2] == 0x81;
}

int bpe_has_inner_ws(const char *s, size_t len) {
    for (size_t i = 1; i + 3 <= len; i++)
        if (ws_at(s, i) && !(i >= 3 && ws_at(s, i - 3))) return 1;
    return 0;
}

size_t bpe_next_cut(const char *s, size_t start, size_t end) {
    for (size_t i = start + 1; i + 3 <= end; i++)
        if (ws_at(s, i) && !(i >= start + 3 && ws_at(s, i - 3))) return i;
    return end;
}
