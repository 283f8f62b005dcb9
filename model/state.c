/**
 * @file state.c
 * @brief Allocation and the file format of the per-sequence state.
 *
 * File layout (little-endian): "MAMBA2ST" magic, u32 version, u32 header fields count,
 * then int64 fields: n_layer, d_model, n_heads, head_dim, d_state, n_groups, d_conv,
 * vocab_size, pos; then conv [L, conv_dim, K−1] and ssm [L, H, P, N] as float32.
 */
#include "state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_MAGIC "MAMBA2ST"
#define STATE_VERSION 1u
#define N_SHAPE_FIELDS 8

/* Elements of the conv and SSM arrays of a state for @p cfg. */
static size_t conv_len_of(const Mamba2Config *cfg) { return (size_t)cfg->n_layer * cfg->conv_dim * (cfg->d_conv - 1); }
static size_t ssm_len_of(const Mamba2Config *cfg) {
    return (size_t)cfg->n_layer * cfg->n_heads * cfg->head_dim * cfg->d_state;
}

int mamba2_state_init(Mamba2State *s, const Mamba2Config *cfg, Mamba2Error *err) {
    memset(s, 0, sizeof *s);
    s->conv_len = conv_len_of(cfg);
    s->ssm_len = ssm_len_of(cfg);
    s->conv = calloc(s->conv_len ? s->conv_len : 1, sizeof(float));
    s->ssm = calloc(s->ssm_len, sizeof(float));
    if (!s->conv || !s->ssm) {
        mamba2_state_free(s);
        return mamba2_fail(err, "out of memory allocating the sequence state (%.1f MiB)",
                           (double)mamba2_config_state_bytes(cfg) / (1 << 20));
    }
    return 0;
}

int mamba2_state_check_shape(const Mamba2State *s, const Mamba2Config *cfg, Mamba2Error *err) {
    if (!s->conv || !s->ssm) return mamba2_fail(err, "the state has no arrays (not made by mamba2_state_init())");
    if (s->conv_len != conv_len_of(cfg) || s->ssm_len != ssm_len_of(cfg))
        return mamba2_fail(err,
                           "the state holds %zu conv and %zu SSM values, this model's holds %zu and %zu "
                           "(a state made for another model)",
                           s->conv_len, s->ssm_len, conv_len_of(cfg), ssm_len_of(cfg));
    return 0;
}

int mamba2_state_sync(Mamba2State *s, Mamba2Error *err) {
    if (!s->device) return 0;
    int rc = s->device->to_host(s, err);
    s->device->release(s);
    s->device = NULL;
    return rc;
}

/* Drop a device copy without reading it back (the host contents are about to be replaced). */
static void drop_device_copy(Mamba2State *s) {
    if (s->device) {
        s->device->release(s);
        s->device = NULL;
    }
}

void mamba2_state_reset(Mamba2State *s) {
    if (s->device) s->device->zero(s);
    s->pos = 0;
    memset(s->conv, 0, s->conv_len * sizeof(float));
    memset(s->ssm, 0, s->ssm_len * sizeof(float));
}

int mamba2_state_copy(Mamba2State *dst, Mamba2State *src, Mamba2Error *err) {
    if (mamba2_state_sync(src, err)) return -1;
    drop_device_copy(dst);
    dst->pos = src->pos;
    memcpy(dst->conv, src->conv, src->conv_len * sizeof(float));
    memcpy(dst->ssm, src->ssm, src->ssm_len * sizeof(float));
    return 0;
}

void mamba2_state_free(Mamba2State *s) {
    drop_device_copy(s);
    free(s->conv);
    free(s->ssm);
    memset(s, 0, sizeof *s);
}

static void shape_fields(const Mamba2Config *c, int64_t f[N_SHAPE_FIELDS]) {
    f[0] = c->n_layer, f[1] = c->d_model, f[2] = c->n_heads, f[3] = c->head_dim;
    f[4] = c->d_state, f[5] = c->n_groups, f[6] = c->d_conv, f[7] = c->vocab_size;
}

static const char *field_names[N_SHAPE_FIELDS] = {"n_layer", "d_model", "n_heads", "head_dim",
                                                  "d_state", "n_groups", "d_conv", "vocab_size"};

int mamba2_state_save(Mamba2State *s, const Mamba2Config *cfg, const char *path, Mamba2Error *err) {
    if (mamba2_state_sync(s, err)) return -1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return mamba2_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    uint32_t hdr[2] = {STATE_VERSION, N_SHAPE_FIELDS + 1};
    int64_t fields[N_SHAPE_FIELDS + 1];
    shape_fields(cfg, fields);
    fields[N_SHAPE_FIELDS] = s->pos;
    int ok = fwrite(STATE_MAGIC, 1, 8, f) == 8 && fwrite(hdr, sizeof hdr, 1, f) == 1 &&
             fwrite(fields, sizeof fields, 1, f) == 1 &&
             fwrite(s->conv, sizeof(float), s->conv_len, f) == s->conv_len &&
             fwrite(s->ssm, sizeof(float), s->ssm_len, f) == s->ssm_len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return mamba2_fail(err, "%s: cannot write the state: %s", path, strerror(e));
    }
    return 0;
}

int mamba2_state_load(Mamba2State *s, const Mamba2Config *cfg, const char *path, Mamba2Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return mamba2_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char magic[8];
    uint32_t hdr[2];
    int64_t fields[N_SHAPE_FIELDS + 1], want[N_SHAPE_FIELDS];
    int rc = 0;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, STATE_MAGIC, 8))
        rc = mamba2_fail(err, "%s: not a mamba2 state file (bad magic)", path);
    else if (fread(hdr, sizeof hdr, 1, f) != 1)
        rc = mamba2_fail(err, "%s: truncated state header", path);
    else if (hdr[0] != STATE_VERSION)
        rc = mamba2_fail(err, "%s: state file version %u is not supported (this program writes version %u)", path,
                         hdr[0], STATE_VERSION);
    else if (hdr[1] != N_SHAPE_FIELDS + 1)
        rc = mamba2_fail(err, "%s: state header has %u fields, version %u has %d", path, hdr[1], STATE_VERSION,
                         N_SHAPE_FIELDS + 1);
    else if (fread(fields, sizeof fields, 1, f) != 1)
        rc = mamba2_fail(err, "%s: truncated state header", path);
    if (!rc) {
        shape_fields(cfg, want);
        for (int i = 0; i < N_SHAPE_FIELDS && !rc; i++)
            if (fields[i] != want[i])
                rc = mamba2_fail(err, "%s: state was saved for a model with %s = %lld, this model has %lld", path,
                                 field_names[i], (long long)fields[i], (long long)want[i]);
    }
    if (!rc && fields[N_SHAPE_FIELDS] < 0) rc = mamba2_fail(err, "%s: negative position in the state header", path);
    /* Read into fresh buffers so that a failure leaves the caller's state untouched. */
    float *conv = NULL, *ssm = NULL;
    if (!rc && (!(conv = malloc((s->conv_len ? s->conv_len : 1) * sizeof(float))) ||
                !(ssm = malloc(s->ssm_len * sizeof(float)))))
        rc = mamba2_fail(err, "%s: out of memory", path);
    if (!rc && (fread(conv, sizeof(float), s->conv_len, f) != s->conv_len ||
                fread(ssm, sizeof(float), s->ssm_len, f) != s->ssm_len))
        rc = mamba2_fail(err, "%s: truncated state data", path);
    if (!rc && fgetc(f) != EOF) rc = mamba2_fail(err, "%s: unexpected bytes after the state data", path);
    fclose(f);
    if (rc) {
        free(conv);
        free(ssm);
        return rc;
    }
    drop_device_copy(s);
    free(s->conv);
    free(s->ssm);
    s->conv = conv;
    s->ssm = ssm;
    s->pos = fields[N_SHAPE_FIELDS];
    return rc;
}
