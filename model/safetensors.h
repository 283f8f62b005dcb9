/**
 * @file safetensors.h
 * @brief Read-only, memory-mapped access to one `.safetensors` file.
 *
 * Format: an 8-byte little-endian header length n, n bytes of JSON
 * `{"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
 * then the data; offsets are relative to the end of the header. Every entry is
 * checked when the file is opened (offsets inside the file, size = numel × dtype
 * size, no overlap, aligned), so a Mamba2Tensor handed out is always safe to read.
 */
#ifndef MAMBA2_SAFETENSORS_H
#define MAMBA2_SAFETENSORS_H

#include <stddef.h>

#include "error.h"
#include "name_index.h"
#include "tensor.h"

/** One open safetensors file and its tensor table. */
typedef struct {
    char *path;            /**< file path (owned) */
    void *map;             /**< mmap of the whole file */
    size_t size;           /**< file size in bytes */
    int n_tensors;         /**< entries in @ref tensors */
    Mamba2Tensor *tensors; /**< table; names owned by the file object */
    char **bad_dtype;      /**< per entry: the dtype string when it is not F32/F16/BF16, else NULL */
    NameIndex index;       /**< tensor name → entry, for safetensors_find() in O(1) */
} SafetensorsFile;

/** Header bytes allowed per tensor by safetensors_open_limited(), beyond a fixed 64 KiB (metadata). */
#define SAFETENSORS_HEADER_BYTES_PER_TENSOR 1024

/**
 * @brief Map @p path and validate its header.
 * @return 0 on success; -1 with a message naming the file and the problem.
 */
int safetensors_open(const char *path, SafetensorsFile *f, Mamba2Error *err);

/**
 * @brief safetensors_open() for a file that may hold at most @p max_tensors tensors (what the config
 *        implies): the header length is checked against 64 KiB + @p max_tensors × 1 KiB before it is
 *        parsed, and the number of entries before any table is built, so a small file cannot make the
 *        loader spend time or memory out of proportion to the model.
 * @return 0 on success; -1 with a message naming the file and the limit.
 */
int safetensors_open_limited(const char *path, int max_tensors, SafetensorsFile *f, Mamba2Error *err);

/**
 * @brief Find a tensor by name (a hash lookup: O(1)).
 * @return its index in f->tensors, or -1 when absent.
 */
int safetensors_find(const SafetensorsFile *f, const char *name);

/** Unmap and free everything (safe on a zeroed or partly opened file). */
void safetensors_close(SafetensorsFile *f);

#endif
