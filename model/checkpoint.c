/**
 * @file checkpoint.c
 * @brief Finding the safetensors files of a checkpoint directory and checking every tensor.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "model.h"

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

/* The most tensors a checkpoint of this config may hold across all its files: twice the 9 per layer +
 * embeddings, norm_f, lm_head that it uses, plus 64 (room for extra tensors some writers add). Headers
 * and the tensor count are checked against it before any table is built (issue #21: a 59 MB header of
 * a million tiny tensors cost 1.9 GB). */
static int max_tensors_of(const Mamba2Config *c) { return 2 * (9 * c->n_layer + 4) + 64; }

/* Tensors the files opened so far leave to the next one. */
static int tensors_left(const Mamba2Model *m) {
    int n = max_tensors_of(&m->cfg);
    for (int i = 0; i < m->n_files; i++) n -= m->files[i].n_tensors;
    return n;
}

/* Open the files listed as values of the index's "weight_map" (each once). */
static int open_sharded(Mamba2Model *m, const char *index_path, Mamba2Error *err) {
    char *text = mamba2_read_file_max(index_path, MAMBA2_MAX_INDEX_BYTES, 0, NULL, err);
    if (!text) return -1;
    json_object *root = json_tokener_parse(text), *map = NULL;
    free(text);
    if (!root || !json_object_object_get_ex(root, "weight_map", &map) ||
        json_object_get_type(map) != json_type_object) {
        json_object_put(root);
        return mamba2_fail(err, "%s: malformed index (expected a JSON object with a \"weight_map\" object)", index_path);
    }
    int rc = 0, cap = json_object_object_length(map);
    NameIndex shards = {0}; /* shard file names already opened: each once, in O(1) */
    if (cap > max_tensors_of(&m->cfg))
        rc = mamba2_fail(err, "%s: weight_map has %d entries, more than the %d tensors this model can use", index_path,
                         cap, max_tensors_of(&m->cfg));
    else if (!(m->files = calloc(cap ? cap : 1, sizeof *m->files)) || name_index_init(&shards, (size_t)cap))
        rc = mamba2_fail(err, "%s: out of memory", index_path);
    json_object_object_foreach(map, name, shard) {
        if (rc) break;
        const char *s = json_object_get_string(shard);
        if (json_object_get_type(shard) != json_type_string || strchr(s, '/') || !strcmp(s, "..")) {
            rc = mamba2_fail(err, "%s: weight_map entry for '%s' is not a file name in this directory", index_path, name);
            break;
        }
        if (name_index_add(&shards, s, 0) >= 0) continue; /* already opened */
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", m->dir, s);
        if (safetensors_open_limited(path, tensors_left(m), &m->files[m->n_files], err)) rc = -1;
        else m->n_files++;
    }
    name_index_free(&shards); /* its names belong to root: freed first */
    json_object_put(root);
    return rc;
}

static int open_files(Mamba2Model *m, Mamba2Error *err) {
    const char *single[] = {"model.safetensors", "consolidated.safetensors"};
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", m->dir);
    if (file_exists(path)) return open_sharded(m, path, err);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", m->dir, single[i]);
        if (!file_exists(path)) continue;
        m->files = calloc(1, sizeof *m->files);
        if (!m->files) return mamba2_fail(err, "out of memory");
        if (safetensors_open_limited(path, tensors_left(m), &m->files[0], err)) return -1;
        m->n_files = 1;
        return 0;
    }
    return mamba2_fail(err, "%s: no model.safetensors.index.json, model.safetensors or consolidated.safetensors",
                       m->dir);
}

/* Every tensor of every file by name, built once: each lookup is O(1), so binding is linear in the
 * number of tensors (it was a scan of every file per name: quadratic). */
typedef struct {
    NameIndex ix;  /* name -> ordinal */
    int *file, *i; /* ordinal -> file and entry */
} TensorTable;

static int table_build(const Mamba2Model *m, TensorTable *tt, Mamba2Error *err) {
    size_t n = 0;
    for (int f = 0; f < m->n_files; f++) n += (size_t)m->files[f].n_tensors;
    memset(tt, 0, sizeof *tt);
    if (name_index_init(&tt->ix, n) || !(tt->file = malloc((n ? n : 1) * sizeof(int))) ||
        !(tt->i = malloc((n ? n : 1) * sizeof(int))))
        return mamba2_fail(err, "%s: out of memory", m->dir);
    int k = 0;
    for (int f = 0; f < m->n_files; f++)
        for (int i = 0; i < m->files[f].n_tensors; i++) {
            const char *name = m->files[f].tensors[i].name;
            int prev = name_index_add(&tt->ix, name, k);
            if (prev >= 0)
                return mamba2_fail(err, "tensor '%s' appears twice: in %s and in %s", name,
                                   m->files[tt->file[prev]].path, m->files[f].path);
            tt->file[k] = f, tt->i[k] = i, k++;
        }
    return 0;
}

static void table_free(TensorTable *tt) {
    name_index_free(&tt->ix);
    free(tt->file);
    free(tt->i);
}

/* Find `name` (or Mistral's "model." + name); fail when both spellings are present. */
static int find_tensor(const Mamba2Model *m, const TensorTable *tt, const char *name, const Mamba2Tensor **out,
                       const char **bad_dtype, Mamba2Error *err) {
    char prefixed[512];
    snprintf(prefixed, sizeof prefixed, "model.%s", name);
    int a = name_index_find(&tt->ix, name), b = name_index_find(&tt->ix, prefixed);
    *out = NULL;
    if (a >= 0 && b >= 0)
        return mamba2_fail(err, "tensor '%s' appears twice: in %s and in %s (as '%s')", name,
                           m->files[tt->file[a]].path, m->files[tt->file[b]].path, prefixed);
    int k = a >= 0 ? a : b;
    if (k < 0) return 0;
    *out = &m->files[tt->file[k]].tensors[tt->i[k]];
    *bad_dtype = m->files[tt->file[k]].bad_dtype[tt->i[k]];
    return 0;
}

/* Look up a required (or optional) tensor and check its dtype and shape. */
static int bind(const Mamba2Model *m, const TensorTable *tt, Mamba2Tensor *dst, const char *name, int optional, int ndim, int64_t d0,
                int64_t d1, int64_t d2, Mamba2Error *err) {
    const Mamba2Tensor *t;
    const char *bad_dtype = NULL;
    int64_t want[3] = {d0, d1, d2};
    memset(dst, 0, sizeof *dst);
    if (find_tensor(m, tt, name, &t, &bad_dtype, err)) return -1;
    if (!t) {
        if (optional) return 0;
        return mamba2_fail(err, "%s: tensor '%s' not found in the checkpoint (%d file%s)", m->dir, name, m->n_files,
                           m->n_files == 1 ? "" : "s");
    }
    if (bad_dtype)
        return mamba2_fail(err, "%s: tensor '%s' has dtype %s; supported: F32, F16, BF16", t->file, t->name, bad_dtype);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        Mamba2Tensor w = {0};
        char got[128], exp[128];
        w.ndim = ndim;
        memcpy(w.shape, want, sizeof want);
        return mamba2_fail(err, "%s: tensor '%s' has shape %s, expected %s", t->file, t->name,
                           mamba2_shape_str(t, got, sizeof got), mamba2_shape_str(&w, exp, sizeof exp));
    }
    *dst = *t;
    return 0;
}

static int bind_all(Mamba2Model *m, const TensorTable *tt, Mamba2Error *err) {
    const Mamba2Config *c = &m->cfg;
    Mamba2Weights *w = &m->w;
    int64_t d = c->d_model, V = c->vocab_size, H = c->n_heads;
    /* HF writes "embeddings", mamba_ssm and Mistral "embedding". */
    if (bind(m, tt, &w->embeddings, "backbone.embeddings.weight", 1, 2, V, d, 0, err)) return -1;
    if (!w->embeddings.data && bind(m, tt, &w->embeddings, "backbone.embedding.weight", 0, 2, V, d, 0, err)) return -1;
    if (bind(m, tt, &w->norm_f, "backbone.norm_f.weight", 0, 1, d, 0, 0, err)) return -1;
    if (c->tie_embeddings) w->lm_head = w->embeddings;
    else if (bind(m, tt, &w->lm_head, "lm_head.weight", 0, 2, V, d, 0, err)) return -1;

    if (!(w->layers = calloc(c->n_layer, sizeof *w->layers))) return mamba2_fail(err, "out of memory");
    for (int l = 0; l < c->n_layer; l++) {
        Mamba2LayerWeights *lw = &w->layers[l];
        char p[128], n[192];
        snprintf(p, sizeof p, "backbone.layers.%d.", l);
#define NAME(s) (snprintf(n, sizeof n, "%s%s", p, s), n)
        if (bind(m, tt, &lw->norm, NAME("norm.weight"), 0, 1, d, 0, 0, err) ||
            bind(m, tt, &lw->in_proj, NAME("mixer.in_proj.weight"), 0, 2, c->d_in_proj, d, 0, err) ||
            bind(m, tt, &lw->conv_w, NAME("mixer.conv1d.weight"), 0, 3, c->conv_dim, 1, c->d_conv, err) ||
            bind(m, tt, &lw->conv_b, NAME("mixer.conv1d.bias"), !c->use_conv_bias, 1, c->conv_dim, 0, 0, err) ||
            bind(m, tt, &lw->dt_bias, NAME("mixer.dt_bias"), 0, 1, H, 0, 0, err) ||
            bind(m, tt, &lw->A_log, NAME("mixer.A_log"), 0, 1, H, 0, 0, err) ||
            bind(m, tt, &lw->D, NAME("mixer.D"), 0, 1, H, 0, 0, err) ||
            bind(m, tt, &lw->gated_norm, NAME("mixer.norm.weight"), 0, 1, c->d_inner, 0, 0, err) ||
            bind(m, tt, &lw->out_proj, NAME("mixer.out_proj.weight"), 0, 2, d, c->d_inner, 0, err))
            return -1;
#undef NAME
    }
    return 0;
}

/* Bytes sampled at each end of every tensor for the checkpoint identity. */
#define ID_SAMPLE_BYTES 4096

static void identity_add(const Mamba2Tensor *t, void *ctx) {
    uLong *crc = ctx;
    int64_t desc[2 + MAMBA2_MAX_DIMS] = {t->dtype, t->ndim};
    for (int i = 0; i < t->ndim; i++) desc[2 + i] = t->shape[i];
    *crc = crc32(*crc, (const Bytef *)t->name, (uInt)strlen(t->name));
    *crc = crc32(*crc, (const Bytef *)desc, (uInt)sizeof desc);
    size_t n = (size_t)mamba2_tensor_numel(t) * (size_t)mamba2_dtype_size(t->dtype);
    const Bytef *p = t->data;
    if (n <= 2 * ID_SAMPLE_BYTES) {
        *crc = crc32(*crc, p, (uInt)n);
    } else {
        *crc = crc32(*crc, p, ID_SAMPLE_BYTES);
        *crc = crc32(*crc, p + n - ID_SAMPLE_BYTES, ID_SAMPLE_BYTES);
    }
}

/* The checkpoint identity (Mamba2Config::checkpoint_id): crc32 of every used tensor's name, dtype,
 * shape and first and last 4 KiB. Cheap (8 KiB per tensor: ~5 MB read for the 7B model) and stable:
 * it does not change when the same weights are written again with other metadata or another tensor
 * order, unlike the safetensors header bytes, and it tells apart two fine-tunes of the same shapes,
 * whose headers can be byte-identical. */
static unsigned checkpoint_identity(const Mamba2Model *m) {
    uLong crc = crc32(0, Z_NULL, 0);
    mamba2_model_foreach_tensor(m, identity_add, &crc);
    return (unsigned)crc;
}

int mamba2_model_load(const char *dir, Mamba2Model *m, Mamba2Error *err) {
    memset(m, 0, sizeof *m);
    if (!(m->dir = strdup(dir))) return mamba2_fail(err, "out of memory");
    TensorTable tt = {0};
    int rc = mamba2_config_load_dir(dir, &m->cfg, err) || open_files(m, err) || table_build(m, &tt, err) ||
             bind_all(m, &tt, err);
    table_free(&tt);
    if (rc) {
        mamba2_model_free(m);
        return -1;
    }
    m->cfg.checkpoint_id = checkpoint_identity(m);
    return 0;
}

void mamba2_model_free(Mamba2Model *m) {
    for (int i = 0; i < m->n_files; i++) safetensors_close(&m->files[i]);
    free(m->files);
    free(m->w.layers);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

void mamba2_model_foreach_tensor(const Mamba2Model *m, void (*fn)(const Mamba2Tensor *t, void *ctx), void *ctx) {
    const Mamba2Weights *w = &m->w;
    fn(&w->embeddings, ctx);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const Mamba2LayerWeights *lw = &w->layers[l];
        const Mamba2Tensor *ts[] = {&lw->norm, &lw->in_proj, &lw->conv_w, &lw->conv_b, &lw->dt_bias,
                                    &lw->A_log, &lw->D, &lw->gated_norm, &lw->out_proj};
        for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
            if (ts[i]->data) fn(ts[i], ctx);
    }
    fn(&w->norm_f, ctx);
    if (!m->cfg.tie_embeddings) fn(&w->lm_head, ctx);
}

void mamba2_model_read_weights(const Mamba2Model *m, Mamba2Progress progress, void *ctx) {
    const size_t chunk = (size_t)64 << 20, page = 4096;
    double total = 0, done = 0;
    for (int f = 0; f < m->n_files; f++) total += (double)m->files[f].size;
    volatile unsigned char sink = 0; /* one byte of every page, so that each is read */
    for (int f = 0; f < m->n_files; f++) {
        const unsigned char *p = m->files[f].map;
        size_t size = m->files[f].size;
        for (size_t at = 0; p && at < size; at += chunk) {
            size_t end = size - at < chunk ? size : at + chunk;
            (void)madvise((void *)((uintptr_t)(p + at) & ~(uintptr_t)(page - 1)), end - at, MADV_WILLNEED);
            for (size_t i = at; i < end; i += page) sink ^= p[i];
            done += (double)(end - at);
            if (progress && done < total) progress(ctx, done, total, "reading weights");
        }
    }
    (void)sink;
    if (progress) progress(ctx, total, total, "reading weights");
}

typedef struct {
    Mamba2DType dtype;
    long long bytes;
} ByteCount;

static void count_bytes(const Mamba2Tensor *t, void *ctx) {
    ByteCount *b = ctx;
    if (t->dtype == b->dtype) b->bytes += mamba2_tensor_numel(t) * mamba2_dtype_size(t->dtype);
}

long long mamba2_model_weight_bytes(const Mamba2Model *m, Mamba2DType dtype) {
    ByteCount b = {dtype, 0};
    mamba2_model_foreach_tensor(m, count_bytes, &b);
    return b.bytes;
}
