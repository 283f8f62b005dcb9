/** @file name_index.c @brief Open-addressing hash index of names (FNV-1a, linear probing, load ≤ 1/2). */
#include "name_index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int name_index_init(NameIndex *ix, size_t capacity) {
    memset(ix, 0, sizeof *ix);
    size_t n = 16;
    while (n < 2 * capacity) {
        if (n > SIZE_MAX / 4 / sizeof(const char *)) return -1;
        n *= 2;
    }
    ix->names = calloc(n, sizeof *ix->names);
    ix->values = calloc(n, sizeof *ix->values);
    if (!ix->names || !ix->values) {
        name_index_free(ix);
        return -1;
    }
    ix->n_slots = n;
    return 0;
}

/* The slot holding @p name, or the empty slot where it would go. */
static size_t slot_of(const NameIndex *ix, const char *name) {
    size_t mask = ix->n_slots - 1, i = (size_t)fnv1a(name) & mask;
    while (ix->names[i] && strcmp(ix->names[i], name)) i = (i + 1) & mask;
    return i;
}

int name_index_add(NameIndex *ix, const char *name, int value) {
    size_t i = slot_of(ix, name);
    if (ix->names[i]) return ix->values[i];
    ix->names[i] = name;
    ix->values[i] = value;
    return -1;
}

int name_index_find(const NameIndex *ix, const char *name) {
    if (!ix->n_slots) return -1;
    size_t i = slot_of(ix, name);
    return ix->names[i] ? ix->values[i] : -1;
}

void name_index_free(NameIndex *ix) {
    free(ix->names);
    free(ix->values);
    memset(ix, 0, sizeof *ix);
}
