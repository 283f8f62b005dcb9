/**
 * @file state.c
 * @brief Allocation and the file format of the per-sequence state.
 *
 * File layout, version 2 (every integer little-endian; the floats are the host's IEEE-754 float32,
 * little-endian on every machine this program builds for):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0   | 8  | magic "MAMBA2ST" |
 * | 8   | 4  | u32 version = 2 |
 * | 12  | 4  | u32 header size in bytes = 104 |
 * | 16  | 64 | int64 n_layer, d_model, n_heads, head_dim, d_state, n_groups, d_conv, vocab_size |
 * | 80  | 8  | int64 pos: tokens consumed, in [0, MAMBA2_STATE_MAX_POS] |
 * | 88  | 4  | u32 config identity: crc32 of every field of the config (mamba2_state_config_id()) |
 * | 92  | 4  | u32 checkpoint identity: Mamba2Config::checkpoint_id (crc32 of the tensors' names, dtypes, shapes and sampled bytes) |
 * | 96  | 8  | u64 payload bytes = 4 · (conv elements + SSM elements) |
 * | 104 | …  | conv [L, conv_dim, K−1] then ssm [L, H, P, N], float32 |
 * | end | 4  | u32 crc32 (zlib) of every byte before it: header and payload |
 *
 * Loading checks, in this order: the file type and exact size, the magic, the version, the checksum,
 * the shape fields, the two identities, the position's bounds, and that every value is finite.
 * Version 1 (no checksum, no identity) is refused with a message that says so.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define STATE_MAGIC "MAMBA2ST"
#define STATE_VERSION 2u
#define N_SHAPE_FIELDS 8
#define HEADER_BYTES 104u /* magic, version, header size, 8 shape fields, pos, 2 identities, payload bytes */
#define TRAILER_BYTES 4u  /* the crc32 */

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

/* Little-endian integers in a byte buffer. */
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* crc32 of @p n bytes, in pieces that fit zlib's uInt whatever size_t is. */
static uint32_t crc_update(uint32_t crc, const void *data, size_t n) {
    const Bytef *p = data;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k, n -= k;
    }
    return crc;
}

uint32_t mamba2_state_config_id(const Mamba2Config *c) {
    /* Every field that changes what the model computes, as little-endian 64-bit words; chunk_size (an
     * algorithm parameter), the token ids and norm_before_gate (ignored) are left out. */
    double reals[3] = {c->eps, c->dt_min, c->dt_max};
    int64_t ints[11] = {c->d_model, c->n_layer, c->n_heads, c->head_dim, c->d_state, c->n_groups,
                        c->d_conv, c->expand, c->vocab_size, c->tie_embeddings, c->use_conv_bias};
    uint8_t buf[8 * 14];
    for (int i = 0; i < 11; i++) put_u64(buf + 8 * i, (uint64_t)ints[i]);
    for (int i = 0; i < 3; i++) {
        uint64_t bits;
        memcpy(&bits, &reals[i], 8);
        put_u64(buf + 8 * (11 + i), bits);
    }
    return crc_update((uint32_t)crc32(0, Z_NULL, 0), buf, sizeof buf);
}

/* Write all of buf[n] to fd (retrying short writes). 0 or -1 with errno. */
static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

/* Read exactly n bytes; 0, or -1 (errno set; 0 when the file ended early). */
static int read_all(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t k = read(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = 0;
            return -1;
        }
        p += k, n -= (size_t)k;
    }
    return 0;
}

int mamba2_state_write_fd(Mamba2State *s, const Mamba2Config *cfg, int fd, const char *name, Mamba2Error *err) {
    if (mamba2_state_sync(s, err)) return -1;
    if (s->pos < 0 || s->pos > MAMBA2_STATE_MAX_POS)
        return mamba2_fail(err, "%s: the state's position %lld is outside [0, 2^53]", name, (long long)s->pos);
    uint8_t hdr[HEADER_BYTES];
    int64_t fields[N_SHAPE_FIELDS];
    shape_fields(cfg, fields);
    memcpy(hdr, STATE_MAGIC, 8);
    put_u32(hdr + 8, STATE_VERSION);
    put_u32(hdr + 12, HEADER_BYTES);
    for (int i = 0; i < N_SHAPE_FIELDS; i++) put_u64(hdr + 16 + 8 * i, (uint64_t)fields[i]);
    put_u64(hdr + 80, (uint64_t)s->pos);
    put_u32(hdr + 88, mamba2_state_config_id(cfg));
    put_u32(hdr + 92, cfg->checkpoint_id);
    put_u64(hdr + 96, (uint64_t)(s->conv_len + s->ssm_len) * sizeof(float));
    uint32_t crc = crc_update((uint32_t)crc32(0, Z_NULL, 0), hdr, sizeof hdr);
    crc = crc_update(crc, s->conv, s->conv_len * sizeof(float));
    crc = crc_update(crc, s->ssm, s->ssm_len * sizeof(float));
    uint8_t trailer[TRAILER_BYTES];
    put_u32(trailer, crc);

    if (write_all(fd, hdr, sizeof hdr) || write_all(fd, s->conv, s->conv_len * sizeof(float)) ||
        write_all(fd, s->ssm, s->ssm_len * sizeof(float)) || write_all(fd, trailer, sizeof trailer))
        return mamba2_fail(err, "cannot write the state to %s: %s", name, strerror(errno));
    return 0;
}

int mamba2_state_save(Mamba2State *s, const Mamba2Config *cfg, const char *path, Mamba2Error *err) {
    /* The temporary is PATH.XXXXXX made by mkstemp (O_CREAT | O_EXCL, mode 0600): never an existing
     * file or a symlink planted under a guessable name. */
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= sizeof tmp)
        return mamba2_fail(err, "%s: the path is too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return mamba2_fail(err, "%s: cannot create a temporary beside it: %s", path, strerror(errno));
    int rc = mamba2_state_write_fd(s, cfg, fd, path, err);
    if (close(fd) != 0 && !rc) rc = mamba2_fail(err, "cannot write the state to %s: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = mamba2_fail(err, "cannot write the state to %s: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

/* Read n bytes of the payload into dst (or, when dst is NULL, through a small buffer), adding them to *crc. */
static int read_crc(int fd, void *dst, size_t n, uint32_t *crc) {
    if (dst) {
        if (read_all(fd, dst, n)) return -1;
        *crc = crc_update(*crc, dst, n);
        return 0;
    }
    static const size_t chunk = 1u << 16;
    char *buf = malloc(chunk);
    if (!buf) return -1;
    int rc = 0;
    while (n && !rc) {
        size_t k = n < chunk ? n : chunk;
        if (!(rc = read_all(fd, buf, k))) *crc = crc_update(*crc, buf, k), n -= k;
    }
    free(buf);
    return rc;
}

/* The first non-finite value of a[n], or -1. */
static long first_non_finite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return (long)i;
    return -1;
}

int mamba2_state_load(Mamba2State *s, const Mamba2Config *cfg, const char *path, Mamba2Error *err) {
    /* O_NONBLOCK: a FIFO must not block the open; it is refused by the type check below. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return mamba2_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    uint8_t hdr[HEADER_BYTES], trailer[TRAILER_BYTES];
    float *conv = NULL, *ssm = NULL;
    int rc = 0;
    size_t want_payload = (s->conv_len + s->ssm_len) * sizeof(float);
    if (fstat(fd, &sb) != 0)
        rc = mamba2_fail(err, "%s: cannot read: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        rc = mamba2_fail(err, "%s: is a directory, not a state file", path);
    else if (!S_ISREG(sb.st_mode))
        rc = mamba2_fail(err, "%s: not a regular file (a FIFO, device or socket is not read)", path);
    else if (sb.st_size < 16 || read_all(fd, hdr, 16))
        rc = mamba2_fail(err, "%s: truncated state header (the file is %lld bytes)", path, (long long)sb.st_size);
    else if (memcmp(hdr, STATE_MAGIC, 8))
        rc = mamba2_fail(err, "%s: not a mamba2 state file (bad magic)", path);
    else if (get_u32(hdr + 8) == 1)
        rc = mamba2_fail(err, "%s: state file version 1 was made by an older version of mamba2; it has no checksum "
                         "and no model identity, so it cannot be checked and is not loaded (run the prompt again "
                         "to make a version %u state)", path, STATE_VERSION);
    else if (get_u32(hdr + 8) != STATE_VERSION)
        rc = mamba2_fail(err, "%s: state file version %u is not supported (this program reads and writes version %u)",
                         path, get_u32(hdr + 8), STATE_VERSION);
    else if (get_u32(hdr + 12) != HEADER_BYTES)
        rc = mamba2_fail(err, "%s: state header of %u bytes, version %u has %u", path, get_u32(hdr + 12),
                         STATE_VERSION, HEADER_BYTES);
    else if ((uint64_t)sb.st_size < HEADER_BYTES + TRAILER_BYTES || read_all(fd, hdr + 16, HEADER_BYTES - 16))
        rc = mamba2_fail(err, "%s: truncated state header (the file is %lld bytes)", path, (long long)sb.st_size);
    uint64_t payload = rc ? 0 : get_u64(hdr + 96);
    if (!rc && payload != (uint64_t)sb.st_size - HEADER_BYTES - TRAILER_BYTES)
        rc = mamba2_fail(err, "%s: the header announces %llu bytes of state data, the file holds %lld "
                         "(truncated, or bytes after the state data)", path, (unsigned long long)payload,
                         (long long)sb.st_size - HEADER_BYTES - TRAILER_BYTES);
    /* Checksum first, so a damaged header is reported as damage, not as another model. The data are
     * read into fresh buffers (a failure leaves the caller's state untouched) when their size is this
     * model's; otherwise only checksummed. */
    int fits = !rc && payload == want_payload;
    if (fits && (!(conv = malloc((s->conv_len ? s->conv_len : 1) * sizeof(float))) ||
                 !(ssm = malloc((s->ssm_len ? s->ssm_len : 1) * sizeof(float)))))
        rc = mamba2_fail(err, "%s: out of memory for %zu bytes of state", path, want_payload);
    uint32_t crc = (uint32_t)crc32(0, Z_NULL, 0);
    crc = crc_update(crc, hdr, sizeof hdr);
    if (!rc && (fits ? read_crc(fd, conv, s->conv_len * sizeof(float), &crc) ||
                           read_crc(fd, ssm, s->ssm_len * sizeof(float), &crc)
                     : read_crc(fd, NULL, (size_t)payload, &crc)))
        rc = mamba2_fail(err, "%s: cannot read the state data: %s", path, errno ? strerror(errno) : "file shrank");
    if (!rc && read_all(fd, trailer, sizeof trailer))
        rc = mamba2_fail(err, "%s: cannot read the checksum: %s", path, errno ? strerror(errno) : "file shrank");
    if (!rc && get_u32(trailer) != crc)
        rc = mamba2_fail(err, "%s: checksum mismatch (stored %08x, computed %08x): the file is damaged", path,
                         get_u32(trailer), crc);
    if (!rc) {
        int64_t want[N_SHAPE_FIELDS];
        shape_fields(cfg, want);
        for (int i = 0; i < N_SHAPE_FIELDS && !rc; i++) {
            int64_t got = (int64_t)get_u64(hdr + 16 + 8 * i);
            if (got != want[i])
                rc = mamba2_fail(err, "%s: state was saved for a model with %s = %lld, this model has %lld", path,
                                 field_names[i], (long long)got, (long long)want[i]);
        }
    }
    if (!rc && !fits) /* same shape fields but another payload size: cannot happen with a valid checksum */
        rc = mamba2_fail(err, "%s: %llu bytes of state data, this model's state has %zu", path,
                         (unsigned long long)payload, want_payload);
    if (!rc && get_u32(hdr + 88) != mamba2_state_config_id(cfg))
        rc = mamba2_fail(err, "%s: state was saved for a model of the same shapes but another configuration "
                         "(config identity %08x, this model's %08x)", path, get_u32(hdr + 88),
                         mamba2_state_config_id(cfg));
    if (!rc && get_u32(hdr + 92) != cfg->checkpoint_id)
        rc = mamba2_fail(err, "%s: state was saved for another model of the same shapes (checkpoint identity %08x, "
                         "this model's %08x)", path, get_u32(hdr + 92), cfg->checkpoint_id);
    int64_t pos = rc ? 0 : (int64_t)get_u64(hdr + 80);
    if (!rc && (pos < 0 || pos > MAMBA2_STATE_MAX_POS))
        rc = mamba2_fail(err, "%s: position %lld in the state header is outside [0, 2^53]", path, (long long)pos);
    long bad;
    if (!rc && (bad = first_non_finite(conv, s->conv_len)) >= 0)
        rc = mamba2_fail(err, "%s: the state holds a non-finite value (%g at conv element %ld)", path,
                         (double)conv[bad], bad);
    if (!rc && (bad = first_non_finite(ssm, s->ssm_len)) >= 0)
        rc = mamba2_fail(err, "%s: the state holds a non-finite value (%g at SSM element %ld)", path,
                         (double)ssm[bad], bad);
    close(fd);
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
    s->pos = pos;
    return 0;
}
