/**
 * @file strmap.c
 * @brief Hash tables (string → int, id pair → merge) and a byte trie (see strmap.h).
 *
 * Both tables use linear probing in a power-of-two array kept at most half full,
 * so a lookup touches one or two slots on average.
 */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

/* Smallest power of two ≥ 2·n (and ≥ 16): the table stays at most half full. */
static size_t table_size(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

/* FNV-1a: h ← (h ⊕ byte) · 16777619 over the bytes, from 2166136261. */
uint32_t strmap_hash(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

int strmap_init(StrMap *m, size_t expected) {
    m->cap = table_size(expected);
    m->count = 0;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots ? 0 : -1;
}

/* Index of the slot holding key, or of the empty slot where it would go. */
static size_t strmap_find(const StrMap *m, const char *key, size_t len, uint32_t h) {
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i].key) {
        const StrMapSlot *s = &m->slots[i];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int strmap_grow(StrMap *m) {
    StrMap bigger;
    bigger.cap = m->cap * 2;
    bigger.count = m->count;
    bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
    if (!bigger.slots) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        const StrMapSlot *s = &m->slots[i];
        if (!s->key) continue;
        size_t j = s->hash & (bigger.cap - 1);
        while (bigger.slots[j].key) j = (j + 1) & (bigger.cap - 1);
        bigger.slots[j] = *s;
    }
    free(m->slots);
    *m = bigger;
    return 0;
}

int strmap_put(StrMap *m, const char *key, size_t len, int32_t value) {
    if (2 * (m->count + 1) > m->cap && strmap_grow(m)) return -1;
    uint32_t h = strmap_hash(key, len);
    size_t i = strmap_find(m, key, len, h);
    if (m->slots[i].key) return 1;
    m->slots[i].key = key;
    m->slots[i].len = (uint32_t)len;
    m->slots[i].hash = h;
    m->slots[i].value = value;
    m->count++;
    return 0;
}

int32_t strmap_get(const StrMap *m, const char *key, size_t len) {
    size_t i = strmap_find(m, key, len, strmap_hash(key, len));
    return m->slots[i].key ? m->slots[i].value : -1;
}

void strmap_free(StrMap *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* splitmix64 finaliser: mixes all 64 bits of the pair key into the low bits. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

int pairmap_init(PairMap *m, size_t expected) {
    m->cap = table_size(expected);
    m->count = 0;
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return -1;
    for (size_t i = 0; i < m->cap; i++) m->slots[i].rank = -1;
    return 0;
}

static size_t pairmap_find(const PairMap *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)mix64(key) & mask;
    while (m->slots[i].rank >= 0 && m->slots[i].key != key) i = (i + 1) & mask;
    return i;
}

static int pairmap_grow(PairMap *m) {
    PairMap bigger;
    if (pairmap_init(&bigger, m->cap)) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].rank >= 0) bigger.slots[pairmap_find(&bigger, m->slots[i].key)] = m->slots[i];
    bigger.count = m->count;
    free(m->slots);
    *m = bigger;
    return 0;
}

int pairmap_put(PairMap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    if (2 * (m->count + 1) > m->cap && pairmap_grow(m)) return -1;
    uint64_t key = pair_key(a, b);
    size_t i = pairmap_find(m, key);
    if (m->slots[i].rank >= 0) return 1;
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].id = id;
    m->count++;
    return 0;
}

int pairmap_get(const PairMap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
    const PairMapSlot *s = &m->slots[pairmap_find(m, pair_key(a, b))];
    if (s->rank < 0) return 0;
    *rank = s->rank;
    *id = s->id;
    return 1;
}

void pairmap_free(PairMap *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

int trie_init(Trie *t) {
    memset(t->first, 0, sizeof t->first);
    t->cap = 64;
    t->n = 1;
    t->nodes = malloc(t->cap * sizeof *t->nodes);
    if (!t->nodes) return -1;
    t->nodes[0] = (TrieNode){-1, -1, -1, 0};
    return 0;
}

/* The child of node p reached by byte b, or -1. */
static int32_t trie_child(const Trie *t, int32_t p, unsigned char b) {
    for (int32_t c = t->nodes[p].first_child; c >= 0; c = t->nodes[c].next_sibling)
        if (t->nodes[c].byte == b) return c;
    return -1;
}

int trie_add(Trie *t, const char *s, size_t len, int32_t value) {
    int32_t p = 0;
    if (len == 0) return 0;
    t->first[(unsigned char)s[0]] = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        int32_t c = trie_child(t, p, b);
        if (c < 0) {
            if (t->n == t->cap) {
                TrieNode *more = realloc(t->nodes, 2 * t->cap * sizeof *more);
                if (!more) return -1;
                t->nodes = more;
                t->cap *= 2;
            }
            c = (int32_t)t->n++;
            t->nodes[c] = (TrieNode){-1, t->nodes[p].first_child, -1, b};
            t->nodes[p].first_child = c;
        }
        p = c;
    }
    if (t->nodes[p].value < 0) t->nodes[p].value = value;
    return 0;
}

size_t trie_longest(const Trie *t, const char *s, size_t n, int32_t *value) {
    size_t best = 0;
    int32_t p = 0;
    if (n == 0 || !t->first[(unsigned char)s[0]]) return 0;
    for (size_t i = 0; i < n; i++) {
        p = trie_child(t, p, (unsigned char)s[i]);
        if (p < 0) break;
        if (t->nodes[p].value >= 0) {
            best = i + 1;
            *value = t->nodes[p].value;
        }
    }
    return best;
}

void trie_prefixes(const Trie *t, const char *s, size_t n, int32_t *values) {
    int32_t p = 0;
    for (size_t i = 0; i < n; i++) {
        p = p < 0 ? -1 : trie_child(t, p, (unsigned char)s[i]);
        values[i] = p < 0 ? -1 : t->nodes[p].value;
    }
}

void trie_free(Trie *t) {
    free(t->nodes);
    t->nodes = NULL;
    t->n = t->cap = 0;
}

/* ---- longest match at every position (Aho–Corasick, reversed) ---- */

int lm_init(LongestMatcher *lm) {
    memset(lm, 0, sizeof *lm);
    return trie_init(&lm->rev);
}

int lm_add(LongestMatcher *lm, const char *s, size_t len, int32_t value) {
    char *r = malloc(len ? len : 1);
    if (!r) return -1;
    for (size_t i = 0; i < len; i++) r[i] = s[len - 1 - i];
    int rc = trie_add(&lm->rev, r, len, value);
    free(r);
    return rc;
}

int lm_build(LongestMatcher *lm) {
    const Trie *t = &lm->rev;
    size_t n = t->n;
    free(lm->fail), free(lm->best), free(lm->depth);
    lm->fail = malloc(n * sizeof *lm->fail);
    lm->best = malloc(n * sizeof *lm->best);
    lm->depth = malloc(n * sizeof *lm->depth);
    int32_t *queue = malloc(n * sizeof *queue);
    if (!lm->fail || !lm->best || !lm->depth || !queue) {
        free(queue);
        return -1;
    }
    /* breadth first, so a node's failure link (a shorter string) is done before the node */
    size_t head = 0, tail = 0;
    lm->fail[0] = 0, lm->best[0] = -1, lm->depth[0] = 0;
    queue[tail++] = 0;
    while (head < tail) {
        int32_t u = queue[head++];
        for (int32_t c = t->nodes[u].first_child; c >= 0; c = t->nodes[c].next_sibling) {
            unsigned char b = t->nodes[c].byte;
            int32_t f = 0;
            if (u != 0) {
                for (f = lm->fail[u];; f = lm->fail[f]) {
                    int32_t x = trie_child(t, f, b);
                    if (x >= 0) {
                        f = x;
                        break;
                    }
                    if (f == 0) break;
                }
            }
            lm->fail[c] = f;
            lm->depth[c] = lm->depth[u] + 1;
            lm->best[c] = t->nodes[c].value >= 0 ? c : lm->best[f];
            queue[tail++] = c;
        }
    }
    free(queue);
    return 0;
}

void lm_scan(const LongestMatcher *lm, const char *s, size_t n, uint32_t *len_at, int32_t *val_at) {
    const Trie *t = &lm->rev;
    int32_t state = 0;
    for (size_t k = n; k-- > 0;) { /* the text reversed: a reversed string ending here starts at s + k */
        unsigned char b = (unsigned char)s[k];
        int32_t x;
        while ((x = trie_child(t, state, b)) < 0 && state != 0) state = lm->fail[state];
        state = x >= 0 ? x : 0;
        int32_t m = lm->best[state];
        len_at[k] = m >= 0 ? lm->depth[m] : 0;
        val_at[k] = m >= 0 ? t->nodes[m].value : -1;
    }
}

void lm_free(LongestMatcher *lm) {
    if (lm->rev.nodes) trie_free(&lm->rev);
    free(lm->fail), free(lm->best), free(lm->depth);
    memset(lm, 0, sizeof *lm);
}
