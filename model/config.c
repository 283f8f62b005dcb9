/**
 * @file config.c
 * @brief Parsing of `config.json` / `params.json` with json-c, mamba_ssm defaults and consistency checks.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *mamba2_read_file_max(const char *path, size_t max_bytes, int flags, long *len, Mamba2Error *err) {
    /* O_NONBLOCK: opening a FIFO without a writer must not block; its type is checked before any read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        mamba2_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int pipe_like = 0;
    if (fstat(fd, &sb) != 0) {
        mamba2_fail(err, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    pipe_like = S_ISFIFO(sb.st_mode);
    if (S_ISDIR(sb.st_mode)) {
        mamba2_fail(err, "%s: is a directory, not a file", path);
        goto done;
    }
    if (!S_ISREG(sb.st_mode) && !(pipe_like && (flags & MAMBA2_READ_PIPE))) {
        mamba2_fail(err, "%s: not a regular file (%s); give a regular file", path,
                    pipe_like ? "a FIFO or pipe" : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device" : "a socket");
        goto done;
    }
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > (uint64_t)max_bytes) { /* refused before reading */
        mamba2_fail(err, "%s: %lld bytes, more than the %zu bytes this file may have", path, (long long)sb.st_size,
                    max_bytes);
        goto done;
    }
    /* a pipe is read to its end, blocking (its writer is the user's own command) */
    if (pipe_like && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        mamba2_fail(err, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    cap = S_ISREG(sb.st_mode) ? (size_t)sb.st_size + 1 : 1 << 16;
    for (;;) {
        if (n + 1 >= cap) { /* grow geometrically: linear time for a pipe of any length */
            size_t ncap = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            if (ncap <= n + 1) {
                mamba2_fail(err, "%s: more than the %zu bytes this file may have", path, max_bytes);
                goto fail;
            }
            cap = ncap;
        }
        if (!buf || cap > 0) {
            char *nb = realloc(buf, cap);
            if (!nb) {
                mamba2_fail(err, "%s: out of memory reading %zu bytes", path, cap);
                goto fail;
            }
            buf = nb;
        }
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            mamba2_fail(err, "%s: read error: %s", path, strerror(errno));
            goto fail;
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    buf[n] = 0;
    if (len) *len = (long)n;
    goto done;
fail:
    free(buf);
    buf = NULL;
done:
    close(fd);
    return buf;
}

char *mamba2_read_file(const char *path, long *len, Mamba2Error *err) {
    return mamba2_read_file_max(path, MAMBA2_READ_MAX_BYTES, MAMBA2_READ_PIPE, len, err);
}

/* A number in the JSON: a plain number, a bare Infinity/NaN (json-c reads them
 * as doubles), or the newer transformers' {"__float__": "Infinity"}. */
static int json_number(json_object *o, double *out) {
    json_type t = json_object_get_type(o);
    if (t == json_type_double || t == json_type_int) {
        *out = json_object_get_double(o);
        return 0;
    }
    json_object *f;
    if (t == json_type_object && json_object_object_get_ex(o, "__float__", &f) &&
        json_object_get_type(f) == json_type_string) {
        const char *s = json_object_get_string(f);
        if (!strcmp(s, "Infinity") || !strcmp(s, "inf")) *out = INFINITY;
        else if (!strcmp(s, "-Infinity") || !strcmp(s, "-inf")) *out = -INFINITY;
        else if (!strcmp(s, "NaN") || !strcmp(s, "nan")) *out = NAN;
        else {
            char *end;
            *out = strtod(s, &end);
            if (*end || end == s) return -1;
        }
        return 0;
    }
    return -1;
}

/* Look up the first of up to two key spellings. */
static json_object *get2(json_object *root, const char *k1, const char *k2) {
    json_object *v = NULL;
    if (k1 && json_object_object_get_ex(root, k1, &v) && v) return v;
    if (k2 && json_object_object_get_ex(root, k2, &v) && v) return v;
    return NULL;
}

/* A count: an integer in [lo, hi]. Missing -> def (or an error when required). */
static int get_int(json_object *root, const char *k1, const char *k2, int required, int def, int lo,
                   int hi, int *out, const char *src, Mamba2Error *err) {
    json_object *v = get2(root, k1, k2);
    if (!v || json_object_get_type(v) == json_type_null) {
        if (required) return mamba2_fail(err, "%s: missing required field \"%s\"", src, k1);
        *out = def;
        return 0;
    }
    double d;
    if (json_object_get_type(v) == json_type_boolean || json_number(v, &d) || !isfinite(d) ||
        d != floor(d) || d < lo || d > hi)
        return mamba2_fail(err, "%s: field \"%s\" must be an integer in [%d, %d], got %s", src,
                           get2(root, k1, NULL) ? k1 : k2, lo, hi, json_object_to_json_string(v));
    *out = (int)d;
    return 0;
}

static int get_bool(json_object *root, const char *k1, const char *k2, int def, int *out,
                    const char *src, Mamba2Error *err) {
    json_object *v = get2(root, k1, k2);
    if (!v || json_object_get_type(v) == json_type_null) {
        *out = def;
        return 0;
    }
    if (json_object_get_type(v) != json_type_boolean)
        return mamba2_fail(err, "%s: field \"%s\" must be true or false, got %s", src, k1,
                           json_object_to_json_string(v));
    *out = json_object_get_boolean(v);
    return 0;
}

static int get_double(json_object *root, const char *k1, const char *k2, double def, double *out,
                      const char *src, Mamba2Error *err) {
    json_object *v = get2(root, k1, k2);
    if (!v || json_object_get_type(v) == json_type_null) {
        *out = def;
        return 0;
    }
    if (json_number(v, out))
        return mamba2_fail(err, "%s: field \"%s\" must be a number, got %s", src, k1,
                           json_object_to_json_string(v));
    return 0;
}

/* Fields and defaults. Defaults are mamba_ssm's (Mamba2 module, MambaConfig);
 * Mistral's params.json uses dim / n_layers / tie_embeddings and may nest the
 * SSM fields under "ssm_cfg" with mamba_ssm's names. */
static int parse_fields(json_object *root, const char *src, Mamba2Config *c, Mamba2Error *err) {
    json_object *ssm = get2(root, "ssm_cfg", NULL);
    json_object *s = (ssm && json_object_get_type(ssm) == json_type_object) ? ssm : root;
    const int BIG = 1 << 24; /* no dimension of a real model comes near this */
    if (get_int(root, "hidden_size", "dim", 1, 0, 1, BIG, &c->d_model, src, err) ||
        get_int(root, "num_hidden_layers", "n_layers", 1, 0, 1, 100000, &c->n_layer, src, err) ||
        get_int(root, "vocab_size", NULL, 1, 0, 1, BIG, &c->vocab_size, src, err) ||
        get_int(s, "state_size", "d_state", 0, 128, 1, 65536, &c->d_state, src, err) ||
        get_int(s, "conv_kernel", "d_conv", 0, 4, 1, 1024, &c->d_conv, src, err) ||
        get_int(s, "expand", NULL, 0, 2, 1, 1024, &c->expand, src, err) ||
        get_int(s, "head_dim", "headdim", 0, 64, 1, 65536, &c->head_dim, src, err) ||
        get_int(s, "n_groups", "ngroups", 0, -1, 1, 65536, &c->n_groups, src, err) ||
        get_int(s, "num_heads", "nheads", 0, 0, 0, BIG, &c->n_heads, src, err) ||
        get_int(s, "chunk_size", NULL, 0, 256, 1, 1 << 20, &c->chunk_size, src, err) ||
        get_int(root, "bos_token_id", NULL, 0, -1, -1, BIG, &c->bos_token_id, src, err) ||
        get_int(root, "eos_token_id", NULL, 0, -1, -1, BIG, &c->eos_token_id, src, err) ||
        get_double(root, "layer_norm_epsilon", "norm_eps", 1e-5, &c->eps, src, err) ||
        get_bool(root, "tie_word_embeddings", "tie_embeddings", 1, &c->tie_embeddings, src, err) ||
        get_bool(s, "use_conv_bias", "conv_bias", 1, &c->use_conv_bias, src, err) ||
        get_bool(s, "norm_before_gate", NULL, 0, &c->norm_before_gate, src, err))
        return -1;
    if (c->n_groups < 0) { /* params.json writes n_groups at the top level */
        if (get_int(root, "n_groups", NULL, 0, 1, 1, 65536, &c->n_groups, src, err)) return -1;
    }

    /* time_step_limit: [min, max], default (0, inf); "dt_limit" in mamba_ssm's ssm_cfg. */
    c->dt_min = 0.0;
    c->dt_max = INFINITY;
    json_object *lim = get2(s, "time_step_limit", "dt_limit");
    if (lim && json_object_get_type(lim) != json_type_null) {
        if (json_object_get_type(lim) != json_type_array || json_object_array_length(lim) != 2 ||
            json_number(json_object_array_get_idx(lim, 0), &c->dt_min) ||
            json_number(json_object_array_get_idx(lim, 1), &c->dt_max) || isnan(c->dt_min) ||
            isnan(c->dt_max) || c->dt_min < 0 || c->dt_min > c->dt_max)
            return mamba2_fail(err, "%s: field \"time_step_limit\" must be [min, max] with 0 <= min <= max, got %s",
                               src, json_object_to_json_string(lim));
    }

    /* Features these checkpoints do not use: refuse rather than compute something else. */
    int use_bias, rms_norm;
    if (get_bool(s, "use_bias", "bias", 0, &use_bias, src, err) ||
        get_bool(root, "rms_norm", NULL, 1, &rms_norm, src, err))
        return -1;
    if (use_bias)
        return mamba2_fail(err, "%s: \"use_bias\": true (biases on in_proj/out_proj) is not supported", src);
    if (!rms_norm)
        return mamba2_fail(err, "%s: \"rms_norm\": false (LayerNorm) is not supported", src);
    json_object *act = get2(root, "hidden_act", NULL);
    if (act && json_object_get_type(act) == json_type_string &&
        strcmp(json_object_get_string(act), "silu") && strcmp(json_object_get_string(act), "swish"))
        return mamba2_fail(err, "%s: \"hidden_act\": \"%s\" is not supported (only silu)", src,
                           json_object_get_string(act));
    if (!(c->eps > 0 && c->eps < 1))
        return mamba2_fail(err, "%s: \"layer_norm_epsilon\" must be in (0, 1), got %g", src, c->eps);
    return 0;
}

/* d_in = expand * d = H * P; the conv runs over x, B and C; in_proj also makes z and dt. */
static int derive_and_check(const char *src, Mamba2Config *c, Mamba2Error *err) {
    long long d_in = (long long)c->expand * c->d_model;
    if (d_in > (1 << 24)) return mamba2_fail(err, "%s: expand * hidden_size = %lld is too large", src, d_in);
    if (d_in % c->head_dim)
        return mamba2_fail(err, "%s: d_inner = expand * hidden_size = %lld is not divisible by head_dim = %d",
                           src, d_in, c->head_dim);
    if (c->n_heads == 0) c->n_heads = (int)(d_in / c->head_dim);
    if ((long long)c->n_heads * c->head_dim != d_in)
        return mamba2_fail(err, "%s: num_heads * head_dim = %d * %d = %lld, expected expand * hidden_size = %lld",
                           src, c->n_heads, c->head_dim, (long long)c->n_heads * c->head_dim, d_in);
    if (c->n_heads % c->n_groups)
        return mamba2_fail(err, "%s: num_heads = %d is not divisible by n_groups = %d", src, c->n_heads, c->n_groups);
    long long gn = 2LL * c->n_groups * c->d_state;
    if (gn > (1 << 24)) return mamba2_fail(err, "%s: n_groups * state_size is too large", src);
    c->d_inner = (int)d_in;
    c->conv_dim = (int)(d_in + gn);
    c->d_in_proj = (int)(2 * d_in + gn + c->n_heads);
    /* Each field is in range, but their products must also fit the 64-bit counts the program forms
     * (mamba2_config_param_count()): no real model comes near 2^50 parameters. */
    double d = c->d_model, per_layer = d + (double)c->d_in_proj * d + (double)c->conv_dim * (c->d_conv + 1) +
                                       3.0 * c->n_heads + c->d_inner + d * c->d_inner;
    double params = 2.0 * c->vocab_size * d + c->n_layer * per_layer + d;
    if (params > 0x1p50)
        return mamba2_fail(err, "%s: hidden_size = %d, num_hidden_layers = %d, vocab_size = %d and expand = %d imply "
                           "%.3g parameters: too large for any real model", src, c->d_model, c->n_layer,
                           c->vocab_size, c->expand, params);
    return 0;
}

int mamba2_config_parse(const char *json, const char *src, Mamba2Config *cfg, Mamba2Error *err) {
    memset(cfg, 0, sizeof *cfg);
    json_tokener *tok = json_tokener_new();
    if (!tok) return mamba2_fail(err, "%s: out of memory", src);
    json_object *root = json_tokener_parse_ex(tok, json, (int)strlen(json));
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t at = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        if (root) json_object_put(root);
        return mamba2_fail(err, "%s: malformed JSON at byte %zu: %s", src, at,
                           jerr == json_tokener_continue ? "unexpected end of file" : json_tokener_error_desc(jerr));
    }
    int rc = -1;
    if (json_object_get_type(root) != json_type_object)
        mamba2_fail(err, "%s: expected a JSON object at the top level", src);
    else
        rc = parse_fields(root, src, cfg, err) || derive_and_check(src, cfg, err) ? -1 : 0;
    json_object_put(root);
    return rc;
}

int mamba2_config_load_dir(const char *dir, Mamba2Config *cfg, Mamba2Error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (access(path, F_OK) != 0) { /* not opened to probe: a FIFO would block */
        snprintf(path, sizeof path, "%s/params.json", dir);
        if (access(path, F_OK) != 0) return mamba2_fail(err, "%s: no config.json or params.json in this directory", dir);
    }
    char *text = mamba2_read_file_max(path, MAMBA2_MAX_CONFIG_BYTES, 0, NULL, err);
    if (!text) return -1;
    int rc = mamba2_config_parse(text, path, cfg, err);
    free(text);
    return rc;
}

long long mamba2_config_param_count(const Mamba2Config *c) {
    long long d = c->d_model, per_layer = d                           /* norm */
                                          + (long long)c->d_in_proj * d /* in_proj */
                                          + (long long)c->conv_dim * c->d_conv /* conv weight */
                                          + (c->use_conv_bias ? c->conv_dim : 0)
                                          + 3LL * c->n_heads           /* dt_bias, A_log, D */
                                          + c->d_inner                 /* gated norm */
                                          + d * c->d_inner;            /* out_proj */
    long long emb = (long long)c->vocab_size * d;
    return emb + c->n_layer * per_layer + d + (c->tie_embeddings ? 0 : emb);
}

long long mamba2_config_state_bytes(const Mamba2Config *c) {
    long long conv = (long long)c->conv_dim * (c->d_conv - 1);
    long long ssm = (long long)c->n_heads * c->head_dim * c->d_state;
    return (long long)c->n_layer * (conv + ssm) * (long long)sizeof(float);
}
