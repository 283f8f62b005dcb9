/**
 * @file safetensors.c
 * @brief mmap + header validation of safetensors files (json-c for the header).
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Header sizes beyond this are not real checkpoints (the 7B index has ~600 names). */
#define MAX_HEADER_BYTES (100u << 20)
/* Any single dimension beyond 2^40 is nonsense and risks overflowing products. */
#define MAX_DIM ((int64_t)1 << 40)

static int parse_dtype(const char *s, Mamba2DType *t) {
    if (!strcmp(s, "F32")) *t = MAMBA2_F32;
    else if (!strcmp(s, "F16")) *t = MAMBA2_F16;
    else if (!strcmp(s, "BF16")) *t = MAMBA2_BF16;
    else return -1;
    return 0;
}

/* Read a non-negative integer that fits int64 from a JSON value. */
static int json_u64(json_object *o, int64_t max, int64_t *out) {
    if (!o || json_object_get_type(o) != json_type_int) return -1;
    errno = 0;
    int64_t v = json_object_get_int64(o);
    if (errno || v < 0 || v > max) return -1;
    *out = v;
    return 0;
}

typedef struct {
    uint64_t begin, end;
    int index;
} Span;

static int span_cmp(const void *a, const void *b) {
    const Span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Fill entry i of the table from one header entry; check shape and offsets. */
static int parse_entry(SafetensorsFile *f, int i, const char *name, json_object *e, const uint8_t *data,
                       uint64_t data_len, Span *span, Mamba2Error *err) {
    Mamba2Tensor *t = &f->tensors[i];
    json_object *jd, *js, *jo;
    t->name = strdup(name);
    t->file = f->path;
    if (!t->name) return mamba2_fail(err, "%s: out of memory", f->path);
    if (json_object_get_type(e) != json_type_object || !json_object_object_get_ex(e, "dtype", &jd) ||
        !json_object_object_get_ex(e, "shape", &js) || !json_object_object_get_ex(e, "data_offsets", &jo) ||
        json_object_get_type(jd) != json_type_string || json_object_get_type(js) != json_type_array ||
        json_object_get_type(jo) != json_type_array || json_object_array_length(jo) != 2)
        return mamba2_fail(err, "%s: header entry for tensor '%s' needs \"dtype\", \"shape\" and \"data_offsets\": [begin, end]",
                           f->path, name);
    size_t ndim = json_object_array_length(js);
    if (ndim > MAMBA2_MAX_DIMS)
        return mamba2_fail(err, "%s: tensor '%s' has %zu dimensions (at most %d supported)", f->path, name, ndim,
                           MAMBA2_MAX_DIMS);
    t->ndim = (int)ndim;
    uint64_t numel = 1;
    for (size_t k = 0; k < ndim; k++) {
        if (json_u64(json_object_array_get_idx(js, k), MAX_DIM, &t->shape[k]))
            return mamba2_fail(err, "%s: tensor '%s': dimension %zu of its shape is not an integer in [0, 2^40]",
                               f->path, name, k);
        if (t->shape[k] && numel > (uint64_t)INT64_MAX / (uint64_t)t->shape[k]) /* mamba2_tensor_numel() is int64 */
            return mamba2_fail(err, "%s: tensor '%s': element count overflows 64 bits", f->path, name);
        numel *= (uint64_t)t->shape[k];
    }
    int64_t begin, end;
    if (json_u64(json_object_array_get_idx(jo, 0), INT64_MAX, &begin) ||
        json_u64(json_object_array_get_idx(jo, 1), INT64_MAX, &end) || begin > end)
        return mamba2_fail(err, "%s: tensor '%s': data_offsets must be two integers with begin <= end", f->path, name);
    if ((uint64_t)end > data_len)
        return mamba2_fail(err, "%s: tensor '%s': data ends at byte %lld of the data section, but the file holds only "
                           "%llu bytes of data (truncated file?)", f->path, name, (long long)end,
                           (unsigned long long)data_len);
    const char *ds = json_object_get_string(jd);
    if (parse_dtype(ds, &t->dtype)) {
        f->bad_dtype[i] = strdup(ds); /* refused only if the model asks for this tensor */
        t->dtype = MAMBA2_F32;
        if (!f->bad_dtype[i]) return mamba2_fail(err, "%s: out of memory", f->path);
    } else {
        uint64_t esize = (uint64_t)mamba2_dtype_size(t->dtype);
        char shape[160];
        if (numel > UINT64_MAX / esize)
            return mamba2_fail(err, "%s: tensor '%s': %s of shape %s: its size in bytes overflows 64 bits", f->path,
                               name, ds, mamba2_shape_str(t, shape, sizeof shape));
        if (numel * esize != (uint64_t)(end - begin))
            return mamba2_fail(err, "%s: tensor '%s': %s of shape %s needs %llu bytes but data_offsets span %lld",
                               f->path, name, ds, mamba2_shape_str(t, shape, sizeof shape),
                               (unsigned long long)(numel * esize), (long long)(end - begin));
    }
    t->data = data + begin;
    span->begin = (uint64_t)begin;
    span->end = (uint64_t)end;
    span->index = i;
    return 0;
}

static int parse_header(SafetensorsFile *f, const char *json, size_t len, uint64_t data_offset, int max_tensors,
                        Mamba2Error *err) {
    json_tokener *tok = json_tokener_new();
    if (!tok) return mamba2_fail(err, "%s: out of memory", f->path);
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success || json_object_get_type(root) != json_type_object) {
        if (root) json_object_put(root);
        return mamba2_fail(err, "%s: the header is not a valid JSON object (%s)", f->path,
                           jerr == json_tokener_success    ? "not an object"
                           : jerr == json_tokener_continue ? "it ends before the JSON does: truncated?"
                                                           : json_tokener_error_desc(jerr));
    }
    /* the format pads the header with spaces only: anything else after the JSON is not safetensors */
    while (end < len && json[end] == ' ') end++;
    if (end < len) {
        json_object_put(root);
        return mamba2_fail(err, "%s: %zu bytes after the header's JSON object that are not padding spaces", f->path,
                           len - end);
    }
    int n = 0;
    json_object_object_foreach(root, k0, v0) {
        (void)v0;
        if (strcmp(k0, "__metadata__")) n++;
    }
    if (n > max_tensors) {
        json_object_put(root);
        return mamba2_fail(err, "%s: %d tensors in the header, more than the %d this model can use", f->path, n,
                           max_tensors);
    }
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->bad_dtype = calloc(n ? n : 1, sizeof *f->bad_dtype);
    Span *spans = calloc(n ? n : 1, sizeof *spans);
    int rc = 0;
    if (!f->tensors || !f->bad_dtype || !spans || name_index_init(&f->index, (size_t)n))
        rc = mamba2_fail(err, "%s: out of memory", f->path);
    uint64_t data_len = f->size - data_offset;
    json_object_object_foreach(root, key, val) {
        if (rc || !strcmp(key, "__metadata__")) continue;
        rc = parse_entry(f, f->n_tensors, key, val, (const uint8_t *)f->map + data_offset, data_len,
                         &spans[f->n_tensors], err);
        f->n_tensors++;
        if (!rc) name_index_add(&f->index, f->tensors[f->n_tensors - 1].name, f->n_tensors - 1); /* keys are unique */
    }
    /* No two tensors may share bytes: sorted by start, each must begin after every earlier end. */
    if (!rc && n > 0) {
        qsort(spans, n, sizeof *spans, span_cmp);
        int last = -1; /* the non-empty span reaching furthest so far */
        for (int i = 0; i < n && !rc; i++) {
            if (spans[i].begin == spans[i].end) continue;
            if (last >= 0 && spans[i].begin < spans[last].end)
                rc = mamba2_fail(err, "%s: tensors '%s' and '%s' overlap in the data section", f->path,
                                 f->tensors[spans[last].index].name, f->tensors[spans[i].index].name);
            /* the format forbids holes: each tensor starts where the one before ends */
            else if (spans[i].begin != (last >= 0 ? spans[last].end : 0))
                rc = mamba2_fail(err, "%s: %llu unused bytes in the data section before tensor '%s' (the format "
                                 "allows no holes)", f->path,
                                 (unsigned long long)(spans[i].begin - (last >= 0 ? spans[last].end : 0)),
                                 f->tensors[spans[i].index].name);
            if (last < 0 || spans[i].end > spans[last].end) last = i;
        }
        uint64_t used = last >= 0 ? spans[last].end : 0;
        if (!rc && used != data_len)
            rc = mamba2_fail(err, "%s: %llu unused bytes after the last tensor (the format allows no holes)", f->path,
                             (unsigned long long)(data_len - used));
    }
    free(spans);
    json_object_put(root);
    return rc;
}

int safetensors_open(const char *path, SafetensorsFile *f, Mamba2Error *err) {
    return safetensors_open_limited(path, INT32_MAX / 2, f, err);
}

int safetensors_open_limited(const char *path, int max_tensors, SafetensorsFile *f, Mamba2Error *err) {
    memset(f, 0, sizeof *f);
    f->map = MAP_FAILED;
    if (!(f->path = strdup(path))) return mamba2_fail(err, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO must not block the open: refused below */
    if (fd < 0) {
        mamba2_fail(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        mamba2_fail(err, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory, not a safetensors file"
                                                                : "not a regular file (a FIFO or device is not read)");
        goto fail;
    }
    f->size = (size_t)sb.st_size;
    if (f->size < 8) {
        close(fd);
        mamba2_fail(err, "%s: file is %zu bytes, too short for a safetensors header (truncated?)", path, f->size);
        goto fail;
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        mamba2_fail(err, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    const uint8_t *b = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i]; /* little-endian u64 */
    if (hlen > MAX_HEADER_BYTES || hlen > f->size - 8) {
        mamba2_fail(err, "%s: header length %llu exceeds the file (%zu bytes): not a safetensors file, or truncated",
                    path, (unsigned long long)hlen, f->size);
        goto fail;
    }
    uint64_t hmax = (64u << 10) + (uint64_t)max_tensors * SAFETENSORS_HEADER_BYTES_PER_TENSOR;
    if (hlen > hmax) {
        mamba2_fail(err, "%s: header of %llu bytes, more than the %llu allowed for at most %d tensors", path,
                    (unsigned long long)hlen, (unsigned long long)hmax, max_tensors);
        goto fail;
    }
    if (parse_header(f, (const char *)b + 8, (size_t)hlen, 8 + hlen, max_tensors, err)) goto fail;
    /* safetensors writers align the data section; refuse a file that would make us read
     * misaligned floats. */
    for (int i = 0; i < f->n_tensors; i++)
        if ((uintptr_t)f->tensors[i].data % (uintptr_t)mamba2_dtype_size(f->tensors[i].dtype)) {
            mamba2_fail(err, "%s: tensor '%s' is not aligned to its element size", path, f->tensors[i].name);
            goto fail;
        }
    return 0;
fail:
    safetensors_close(f);
    return -1;
}

int safetensors_find(const SafetensorsFile *f, const char *name) { return name_index_find(&f->index, name); }

void safetensors_close(SafetensorsFile *f) {
    if (f->map && f->map != MAP_FAILED) munmap(f->map, f->size);
    for (int i = 0; i < f->n_tensors; i++) {
        free((char *)f->tensors[i].name);
        if (f->bad_dtype) free(f->bad_dtype[i]);
    }
    free(f->tensors);
    free(f->bad_dtype);
    name_index_free(&f->index);
    free(f->path);
    memset(f, 0, sizeof *f);
}
