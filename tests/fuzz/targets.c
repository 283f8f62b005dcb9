/**
 * @file targets.c
 * @brief The fuzz targets (see targets.h): each parser on an arbitrary input, with the properties
 *        that must hold whatever the input.
 *
 * Files are handed to the parsers through memfd_create(2) (an anonymous in-memory file, opened
 * by its /proc/self/fd path), so that the real entry points run, mmap and all, without touching
 * the disk. The checkpoint target needs a directory: it writes into one temporary directory per
 * process.
 */
#define _GNU_SOURCE
#include "targets.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "forward.h"
#include "model.h"
#include "safetensors.h"
#include "state.h"
#include "tokenizer.h"

/* A violated property: say which and return -1 (the harness aborts, the CUnit replay fails). */
#define CHECK(cond, ...)                                                                                   \
    do {                                                                                                   \
        if (!(cond)) {                                                                                     \
            fprintf(stderr, "fuzz target %s: property violated: %s: ", __func__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                                  \
            fputc('\n', stderr);                                                                           \
            return -1;                                                                                     \
        }                                                                                                  \
    } while (0)

/* A failed call must leave a message that names the file. */
#define CHECK_MESSAGE(err, name) CHECK((err).msg[0] && strstr((err).msg, (name)), "message '%s' lacks '%s'", (err).msg, (name))

/* An anonymous file holding data; its path in *path. -1 when the system refuses (not a finding). */
static int memfile(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("mamba2-fuzz", 0);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t k = write(fd, data + done, size - done);
        if (k <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)k;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* ------------------------------------------------------------------ config.json */

int fuzz_config(const uint8_t *data, size_t size) {
    static const char src[] = "fuzz/config.json";
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    Mamba2Config c;
    Mamba2Error err = {{0}};
    int rc = mamba2_config_parse(text, src, &c, &err);
    free(text);
    if (rc) {
        CHECK_MESSAGE(err, src);
        return 0;
    }
    /* What the rest of the program relies on. */
    CHECK(c.d_model >= 1 && c.n_layer >= 1 && c.n_heads >= 1 && c.head_dim >= 1 && c.d_state >= 1 &&
              c.n_groups >= 1 && c.d_conv >= 1 && c.vocab_size >= 1 && c.chunk_size >= 1,
          "a dimension below 1");
    CHECK((long long)c.n_heads * c.head_dim == c.d_inner, "d_inner %d != H %d * P %d", c.d_inner, c.n_heads,
          c.head_dim);
    CHECK(c.n_heads % c.n_groups == 0, "H %d not a multiple of G %d", c.n_heads, c.n_groups);
    CHECK((long long)c.conv_dim == c.d_inner + 2LL * c.n_groups * c.d_state, "conv_dim");
    CHECK((long long)c.d_in_proj == 2LL * c.d_inner + 2LL * c.n_groups * c.d_state + c.n_heads, "d_in_proj");
    CHECK(c.eps > 0 && c.eps < 1, "eps %g", c.eps);
    CHECK(!isnan(c.dt_min) && !isnan(c.dt_max) && c.dt_min >= 0 && c.dt_min <= c.dt_max, "dt limits");
    /* UBSan watches these products for overflow. */
    CHECK(mamba2_config_param_count(&c) > 0, "parameter count %lld", mamba2_config_param_count(&c));
    CHECK(mamba2_config_state_bytes(&c) >= 0, "state bytes %lld", mamba2_config_state_bytes(&c));
    return 0;
}

/* ------------------------------------------------------------------ safetensors */

int fuzz_safetensors(const uint8_t *data, size_t size) {
    char path[64];
    int fd = memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    SafetensorsFile f;
    Mamba2Error err = {{0}};
    int rc = safetensors_open(path, &f, &err);
    close(fd);
    if (rc) {
        CHECK_MESSAGE(err, path);
        return 0;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    const uint8_t *lo = (const uint8_t *)f.map + 8 + hlen, *hi = (const uint8_t *)f.map + f.size;
    int status = 0;
    for (int i = 0; i < f.n_tensors && !status; i++) {
        const Mamba2Tensor *t = &f.tensors[i];
        int64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) numel *= t->shape[k]; /* checked not to overflow at open */
        uint64_t bytes = (uint64_t)numel * (uint64_t)mamba2_dtype_size(t->dtype);
        const uint8_t *p = t->data;
        if (!(p >= lo && p <= hi && (f.bad_dtype[i] || bytes <= (uint64_t)(hi - p)))) {
            fprintf(stderr, "fuzz_safetensors: tensor '%s' (%llu bytes at offset %lld) lies outside the data section\n",
                    t->name, (unsigned long long)bytes, (long long)(p - lo));
            status = -1;
            break;
        }
        if (f.bad_dtype[i]) continue;
        /* Read the tensor through the accessor the forward pass uses: first and last element. */
        if (numel > 0) {
            volatile float v = mamba2_tensor_get(t, 0) + mamba2_tensor_get(t, numel - 1);
            (void)v;
        }
        if (safetensors_find(&f, t->name) != i) {
            fprintf(stderr, "fuzz_safetensors: tensor '%s' is listed twice\n", t->name);
            status = -1;
        }
    }
    safetensors_close(&f);
    return status;
}

/* ------------------------------------------------------------------ tokenizers */

/* Texts every loaded tokenizer encodes: ASCII, spaces, "▁", added-token look-alikes, multi-byte,
 * invalid UTF-8, an empty text. */
static const struct {
    const char *s;
    size_t n;
} texts[] = {
    {"Hello world", 11},
    {"  two  spaces \t tab\n newline  ", 30},
    {"\xE2\x96\x81\xE2\x96\x81x\xE2\x96\x81", 10},
    {"<s>[INST] hi [/INST]</s><unk><0x41>", 35},
    {"caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80", 17},
    {"\xFF\xFE bad \xC3 utf8 \xED\xA0\x80", 18},
    {"", 0},
    {"a", 1},
};

/* Everything a loaded tokenizer offers, on fixed texts and on every id (and some that are not). */
static int exercise_tokenizer(Mamba2Tokenizer *t, const char *src) {
    Mamba2Error err = {{0}};
    int32_t V = mamba2_tokenizer_vocab_size(t);
    CHECK(V >= 1, "vocabulary size %d", (int)V);
    CHECK(!strcmp(mamba2_tokenizer_source(t), src), "source");
    int32_t bos = mamba2_tokenizer_bos(t), eos = mamba2_tokenizer_eos(t);
    CHECK(bos >= -1 && bos < V && eos >= -1 && eos < V, "bos %d / eos %d outside [0, %d)", (int)bos, (int)eos, (int)V);
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (mamba2_tokenizer_encode(t, texts[k].s, texts[k].n, (int)(k & 1), &ids, &n, &err)) {
            CHECK_MESSAGE(err, src); /* e.g. a character without unk_token */
            continue;
        }
        for (size_t i = 0; i < n; i++)
            CHECK(ids[i] >= 0 && ids[i] < V, "encode produced id %d outside [0, %d)", (int)ids[i], (int)V);
        char *out = NULL;
        size_t len = 0;
        if (mamba2_tokenizer_decode(t, ids, n, &out, &len, &err) == 0) free(out);
        free(ids);
    }
    /* Every id (up to a bound) one by one, through the per-id accessors and the streaming decoder,
     * plus ids that are out of range. */
    int32_t n_ids = V < 600 ? V + 3 : 603;
    int32_t *ids = malloc((size_t)n_ids * sizeof *ids);
    if (!ids) return 0;
    for (int32_t i = 0; i < n_ids; i++) ids[i] = i < n_ids - 3 ? (i < 300 ? i : V - (n_ids - 3 - i)) : (i == n_ids - 3 ? -1 : V + i);
    Mamba2Detokenizer d;
    if (mamba2_detok_init(&d, t, &err) == 0) {
        const char *s;
        size_t len;
        for (int32_t i = 0; i < n_ids; i++) {
            size_t plen = 0, blen = 0;
            const char *p = mamba2_tokenizer_piece(t, ids[i], &plen);
            if (p) {
                volatile char c = plen ? p[plen - 1] : 0;
                (void)c;
                int32_t back = mamba2_tokenizer_piece_id(t, p, plen);
                CHECK(back >= 0 && back < V, "piece of id %d maps back to %d", (int)ids[i], (int)back);
            }
            const char *b = mamba2_tokenizer_token_bytes(t, ids[i], &blen);
            if (b && blen) {
                volatile char c = b[blen - 1];
                (void)c;
            }
            (void)mamba2_tokenizer_token_type(t, ids[i]);
            if (mamba2_detok_push(&d, ids[i], &s, &len, &err) == 0 && len) {
                volatile char c = s[len - 1];
                (void)c;
            }
        }
        mamba2_detok_finish(&d, &s, &len);
        mamba2_detok_free(&d);
    }
    char *out = NULL;
    size_t len = 0;
    if (mamba2_tokenizer_decode(t, ids, (size_t)n_ids, &out, &len, &err) == 0) free(out);
    free(ids);
    return 0;
}

static int first_is_brace(const uint8_t *data, size_t size) {
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')) i++;
    return i < size && data[i] == '{';
}

static int tokenizer_target(const uint8_t *data, size_t size, const char *src) {
    Mamba2Error err = {{0}};
    Mamba2Tokenizer *t = mamba2_tokenizer_load_bytes(data, size, src, &err);
    if (!t) {
        CHECK_MESSAGE(err, src);
        return 0;
    }
    int rc = exercise_tokenizer(t, src);
    mamba2_tokenizer_free(t);
    return rc;
}

int fuzz_tokenizer_json(const uint8_t *data, size_t size) {
    if (!first_is_brace(data, size)) return 0; /* the other format: fuzz_tokenizer_spm's */
    return tokenizer_target(data, size, "fuzz/tokenizer.json");
}

int fuzz_tokenizer_spm(const uint8_t *data, size_t size) {
    if (first_is_brace(data, size)) return 0;
    return tokenizer_target(data, size, "fuzz/tokenizer.model");
}

/* ------------------------------------------------------------------ encode */

static const char *const encode_tokenizers[] = {
    "data/tokenizer/tiny/tiny_a.json", "data/tokenizer/tiny/tiny_b.json",   "data/tokenizer/tiny/tiny_c.json",
    "data/tokenizer/tiny/tiny_spm_a.model", "data/tokenizer/tiny/tiny_spm_b.model",
    "data/mistral-v3/tokenizer.json", "data/mistral-v3/tokenizer.model.v3",
};
#define N_ENCODE (sizeof encode_tokenizers / sizeof *encode_tokenizers)
static Mamba2Tokenizer *encode_cache[N_ENCODE];

int fuzz_encode(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t k = data[0] % N_ENCODE;
    if (!encode_cache[k]) {
        Mamba2Error err = {{0}};
        encode_cache[k] = mamba2_tokenizer_load(encode_tokenizers[k], &err);
        if (!encode_cache[k]) {
            fprintf(stderr, "fuzz_encode: cannot load %s (run from the repository root): %s\n", encode_tokenizers[k],
                    err.msg);
            return -1;
        }
    }
    const Mamba2Tokenizer *t = encode_cache[k];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    int32_t V = mamba2_tokenizer_vocab_size(t), *ids = NULL;
    size_t n_ids = 0;
    Mamba2Error err = {{0}};
    if (mamba2_tokenizer_encode(t, text, n, 1, &ids, &n_ids, &err)) {
        CHECK_MESSAGE(err, encode_tokenizers[k]);
        return 0;
    }
    for (size_t i = 0; i < n_ids; i++) CHECK(ids[i] >= 0 && ids[i] < V, "id %d outside [0, %d)", (int)ids[i], (int)V);
    char *out = NULL;
    size_t len = 0;
    int rc = mamba2_tokenizer_decode(t, ids, n_ids, &out, &len, &err);
    free(ids);
    CHECK(rc == 0, "decode of encoded ids failed: %s", err.msg);
    free(out);
    return 0;
}

/* ------------------------------------------------------------------ state files */

/* The tiny config the state target loads for: L=1, d=4, expand 2, P=4 (H=2), N=2, G=1, K=2, V=6. */
static const char state_config[] = "{\"hidden_size\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 6, \"expand\": 2, "
                                   "\"head_dim\": 4, \"state_size\": 2, \"n_groups\": 1, \"conv_kernel\": 2}";

int fuzz_state(const uint8_t *data, size_t size) {
    Mamba2Config c;
    Mamba2Error err = {{0}};
    if (mamba2_config_parse(state_config, "state config", &c, &err)) {
        fprintf(stderr, "fuzz_state: %s\n", err.msg);
        return -1;
    }
    Mamba2State s;
    if (mamba2_state_init(&s, &c, &err)) return 0;
    s.pos = 7;
    s.ssm[0] = 42.0f;
    char path[64];
    int fd = memfile(data, size, path, sizeof path), status = 0;
    if (fd < 0) {
        mamba2_state_free(&s);
        return 0;
    }
    int rc = mamba2_state_load(&s, &c, path, &err);
    close(fd);
    if (rc) {
        /* refused: a message naming the file, and the state as it was */
        if (!(err.msg[0] && strstr(err.msg, path)) || s.pos != 7 || s.ssm[0] != 42.0f) {
            fprintf(stderr, "fuzz_state: refused with '%s', state pos %lld\n", err.msg, (long long)s.pos);
            status = -1;
        }
    } else if (s.pos < 0) {
        fprintf(stderr, "fuzz_state: loaded a negative position\n");
        status = -1;
    } else {
        volatile float v = s.conv[s.conv_len - 1] + s.ssm[s.ssm_len - 1];
        (void)v;
    }
    mamba2_state_free(&s);
    return status;
}

/* ------------------------------------------------------------------ checkpoint directories */

static char ckpt_dir[64];

static void clear_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[256];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
}

static int write_part(const char *dir, const char *name, const uint8_t *p, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Bytes of memory a forward pass of T tokens takes on the reference path (state copy + work). */
static double forward_bytes(const Mamba2Config *c, int T) {
    double per_token = 3.0 * c->d_model + c->d_in_proj + c->conv_dim + 2.0 * c->d_inner +
                       2.0 * c->n_groups * c->d_state + c->n_heads + c->vocab_size;
    return 2.0 * (double)mamba2_config_state_bytes(c) + 4.0 * (T * per_token + c->n_heads + c->d_conv + T);
}

int fuzz_checkpoint(const uint8_t *data, size_t size) {
    if (!ckpt_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(ckpt_dir, sizeof ckpt_dir, "%s/mamba2-fuzz-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
        if (!mkdtemp(ckpt_dir)) {
            ckpt_dir[0] = 0;
            return 0;
        }
    }
    clear_dir(ckpt_dir);
    /* Split into parts. */
    const uint8_t *part[9];
    size_t len[9];
    int n = 0;
    size_t sep = strlen(FUZZ_PART_SEP);
    const uint8_t *p = data, *end = data + size;
    while (n < 9) {
        const uint8_t *q = memmem(p, (size_t)(end - p), FUZZ_PART_SEP, sep);
        part[n] = p;
        len[n++] = q ? (size_t)(q - p) : (size_t)(end - p);
        if (!q) break;
        p = q + sep;
    }
    if (write_part(ckpt_dir, "config.json", part[0], len[0])) return 0;
    if (n >= 2 && first_is_brace(part[1], len[1])) {
        if (write_part(ckpt_dir, "model.safetensors.index.json", part[1], len[1])) return 0;
        for (int i = 2; i < n; i++) {
            char name[64];
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", i - 1, n - 2);
            if (write_part(ckpt_dir, name, part[i], len[i])) return 0;
        }
    } else if (n >= 2 && write_part(ckpt_dir, "model.safetensors", part[1], len[1])) {
        return 0;
    }
    Mamba2Model m;
    Mamba2Error err = {{0}};
    if (mamba2_model_load(ckpt_dir, &m, &err)) {
        CHECK(err.msg[0], "refused without a message");
        CHECK(strstr(err.msg, ckpt_dir), "message '%s' names no file of %s", err.msg, ckpt_dir);
        return 0;
    }
    /* Loaded: every tensor is safe to read through, so a short forward pass must run. */
    const Mamba2Config *c = &m.cfg;
    int status = 0;
    if (forward_bytes(c, 2) < 64.0 * (1 << 20) && (double)c->n_layer * c->d_in_proj * c->d_model < 1e7) {
        Mamba2State st;
        float *logits = malloc((size_t)2 * c->vocab_size * sizeof *logits);
        int32_t tok[2] = {0, c->vocab_size - 1};
        if (logits && mamba2_state_init(&st, c, &err) == 0) {
            if (mamba2_ref_forward(&m, &st, tok, 2, MAMBA2_SSD_CHUNKED, logits, 1, NULL, NULL, &err)) {
                fprintf(stderr, "fuzz_checkpoint: forward pass of a loaded model failed: %s\n", err.msg);
                status = -1;
            }
            mamba2_state_free(&st);
        }
        free(logits);
    }
    mamba2_model_free(&m);
    return status;
}

/* ------------------------------------------------------------------ registry */

const char *const fuzz_target_names[] = {"config", "safetensors", "tokenizer_json", "tokenizer_spm",
                                         "state",  "checkpoint",  "encode",         NULL};

FuzzTarget fuzz_target_by_name(const char *name) {
    static const FuzzTarget fns[] = {fuzz_config, fuzz_safetensors, fuzz_tokenizer_json, fuzz_tokenizer_spm,
                                     fuzz_state,  fuzz_checkpoint,  fuzz_encode};
    for (int i = 0; fuzz_target_names[i]; i++)
        if (!strcmp(name, fuzz_target_names[i])) return fns[i];
    return NULL;
}

void fuzz_targets_cleanup(void) {
    for (size_t k = 0; k < N_ENCODE; k++) {
        mamba2_tokenizer_free(encode_cache[k]);
        encode_cache[k] = NULL;
    }
    if (ckpt_dir[0]) {
        clear_dir(ckpt_dir);
        rmdir(ckpt_dir);
        ckpt_dir[0] = 0;
    }
}
