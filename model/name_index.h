/**
 * @file name_index.h
 * @brief A hash index from names to integers (open addressing, FNV-1a): tensor lookup in O(1), so
 *        loading a checkpoint is linear in its number of tensors.
 */
#ifndef MAMBA2_NAME_INDEX_H
#define MAMBA2_NAME_INDEX_H

#include <stddef.h>

/** Names (borrowed, not copied: they must outlive the index) mapped to non-negative values. */
typedef struct {
    const char **names; /**< [n_slots], NULL when empty */
    int *values;        /**< [n_slots] */
    size_t n_slots;     /**< a power of two, at least twice the capacity asked for */
} NameIndex;

/** Make an empty index for up to @p capacity names. 0, or -1 when out of memory. */
int name_index_init(NameIndex *ix, size_t capacity);

/**
 * @brief Add @p name with @p value (at most the capacity given to name_index_init()).
 * @return -1 when added; else the value already stored under @p name (nothing changed).
 */
int name_index_add(NameIndex *ix, const char *name, int value);

/** The value stored under @p name, or -1. */
int name_index_find(const NameIndex *ix, const char *name);

/** Free the index (safe on a zeroed one). */
void name_index_free(NameIndex *ix);

#endif
