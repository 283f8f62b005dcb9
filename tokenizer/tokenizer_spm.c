/**
 * @file tokenizer_spm.c
 * @brief SentencePiece BPE models (`tokenizer.model`, `tokenizer.model.v3`), read
 *        directly from the protobuf, encoding as the `sentencepiece` library does.
 *
 * The protobuf wire format, as far as we need it: a message is a sequence of
 * (key, value) fields; key = varint(field_number << 3 | wire_type); wire type 0
 * is a varint, 1 eight bytes, 2 a varint length then that many bytes (strings,
 * sub-messages), 5 four bytes (float). Unknown fields are skipped; every length
 * is checked against the bytes that remain.
 *
 * The messages read (sentencepiece_model.proto):
 *   ModelProto     1: repeated SentencePiece pieces, 2: TrainerSpec, 3: NormalizerSpec, 5: denormalizer
 *   SentencePiece  1: piece (string), 2: score (float), 3: type (1 normal, 2 unknown,
 *                  3 control, 4 user-defined, 5 unused, 6 byte)
 *   TrainerSpec    3: model_type (2 = BPE), 24: treat_whitespace_as_suffix, 35: byte_fallback,
 *                  44: unk_surface, 46: bos_piece, 47: eos_piece
 *   NormalizerSpec 1: name, 2: precompiled_charsmap, 3: add_dummy_prefix,
 *                  4: remove_extra_whitespaces, 5: escape_whitespaces
 *
 * Encoding (sentencepiece's Normalizer::Normalize then bpe::Model::Encode):
 *  1. normalise: "▁" in front (add_dummy_prefix), each space → "▁"
 *     (escape_whitespaces), optionally collapse spaces (remove_extra_whitespaces);
 *  2. split into characters, except that user-defined pieces are matched
 *     (longest first) and never merged;
 *  3. merge adjacent symbols whose concatenation is a piece, highest score
 *     first, leftmost on ties (bpe.c);
 *  4. a symbol that is not a piece becomes its UTF-8 bytes as `<0xAB>` pieces
 *     (byte_fallback), else the unknown id (a run of them counts once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "tokenizer.h"
#include "tokenizer_impl.h"
#include "utf8.h"

/** Data of a SentencePiece model beyond the per-id tables. */
struct SpmModel {
    float *score;            /**< [n_vocab] piece scores */
    int byte_fallback;       /**< unknown symbols become byte pieces */
    int add_dummy_prefix;    /**< "▁" in front of the text */
    int remove_extra_ws;     /**< strip and collapse spaces */
    int escape_ws;           /**< space → "▁" */
    int cut_at_ws;           /**< the text may be merged in pieces (see bpe_has_inner_ws()) */
    int32_t unk_id;          /**< the unknown piece */
    int32_t byte_id[256];    /**< id of `<0xAB>` for each byte (unk_id when absent) */
    LongestMatcher user;     /**< user-defined pieces (the longest at every position in one linear pass) */
    PairMap merges;          /**< (piece A, piece B) → piece A+B, for normal / user-defined pieces */
    int32_t ascii_id[128];   /**< id of each one-byte piece, −1 when absent */
};

/* U+2581 LOWER ONE EIGHTH BLOCK, sentencepiece's visible space. */
static const char WS[] = "\xE2\x96\x81";

enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_USER = 4, SP_UNUSED = 5, SP_BYTE = 6 };

/* ---- protobuf reading ---- */

/** A slice of the file still to read. */
typedef struct {
    const unsigned char *p;   /**< next byte to read */
    const unsigned char *end; /**< one past the last byte */
} PbReader;

/* Varint: 7 bits per byte, least significant group first, high bit set on all but the last byte. */
static int pb_varint(PbReader *r, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        unsigned char b = *r->p++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Read the next field key; 1 when there is one, 0 at the end, -1 when malformed. */
static int pb_key(PbReader *r, uint32_t *field, int *wire) {
    uint64_t k;
    if (r->p >= r->end) return 0;
    if (pb_varint(r, &k) || (k >> 3) == 0 || (k >> 3) > 0x1FFFFFFF) return -1;
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    return 1;
}

/* A length-delimited value: the slice of its bytes. */
static int pb_bytes(PbReader *r, PbReader *sub) {
    uint64_t n;
    if (pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 0;
}

static int pb_fixed32(PbReader *r, uint32_t *v) {
    if (r->end - r->p < 4) return -1;
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 0;
}

/* Skip a value of wire type `wire`. */
static int pb_skip(PbReader *r, int wire) {
    uint64_t v;
    PbReader sub;
    switch (wire) {
    case 0: return pb_varint(r, &v);
    case 1:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 0;
    case 2: return pb_bytes(r, &sub);
    case 5:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    default: return -1; /* groups (3, 4) and undefined types */
    }
}

/** One piece as read from the file. */
typedef struct {
    const char *s; /**< bytes of the piece (in the file buffer) */
    size_t len;    /**< length */
    float score;   /**< score */
    int type;      /**< SentencePiece type */
} RawPiece;

/** What we read from TrainerSpec and NormalizerSpec. */
typedef struct {
    int model_type;             /**< TrainerSpec.model_type (2 = BPE) */
    int suffix_ws;              /**< TrainerSpec.treat_whitespace_as_suffix */
    int byte_fallback;          /**< TrainerSpec.byte_fallback */
    PbReader unk_surface;       /**< TrainerSpec.unk_surface */
    PbReader bos_piece;         /**< TrainerSpec.bos_piece */
    PbReader eos_piece;         /**< TrainerSpec.eos_piece */
    int has_unk_surface;        /**< unk_surface was given */
    PbReader norm_name;         /**< NormalizerSpec.name */
    size_t charsmap_len;        /**< bytes of NormalizerSpec.precompiled_charsmap */
    size_t denorm_charsmap_len; /**< bytes of the denormalizer's precompiled_charsmap */
    int add_dummy_prefix;       /**< NormalizerSpec.add_dummy_prefix */
    int remove_extra_ws;        /**< NormalizerSpec.remove_extra_whitespaces */
    int escape_ws;              /**< NormalizerSpec.escape_whitespaces */
} SpmSpec;

static int parse_piece(PbReader r, RawPiece *out) {
    uint32_t f, bits;
    int w, k;
    PbReader s = {NULL, NULL};
    uint64_t v;
    out->score = 0.0f;
    out->type = SP_NORMAL;
    while ((k = pb_key(&r, &f, &w)) == 1) {
        if (f == 1 && w == 2) {
            if (pb_bytes(&r, &s)) return -1;
        } else if (f == 2 && w == 5) {
            if (pb_fixed32(&r, &bits)) return -1;
            memcpy(&out->score, &bits, sizeof bits);
        } else if (f == 3 && w == 0) {
            if (pb_varint(&r, &v)) return -1;
            out->type = (int)v;
        } else if (pb_skip(&r, w)) {
            return -1;
        }
    }
    out->s = (const char *)s.p;
    out->len = s.p ? (size_t)(s.end - s.p) : 0;
    return k;
}

static int parse_trainer(PbReader r, SpmSpec *sp) {
    uint32_t f;
    int w, k;
    uint64_t v;
    while ((k = pb_key(&r, &f, &w)) == 1) {
        if (w == 0 && (f == 3 || f == 24 || f == 35)) {
            if (pb_varint(&r, &v)) return -1;
            if (f == 3) sp->model_type = (int)v;
            if (f == 24) sp->suffix_ws = v != 0;
            if (f == 35) sp->byte_fallback = v != 0;
        } else if (w == 2 && (f == 44 || f == 46 || f == 47)) {
            PbReader *dst = f == 44 ? &sp->unk_surface : f == 46 ? &sp->bos_piece : &sp->eos_piece;
            if (pb_bytes(&r, dst)) return -1;
            if (f == 44) sp->has_unk_surface = 1;
        } else if (pb_skip(&r, w)) {
            return -1;
        }
    }
    return k;
}

static int parse_normalizer(PbReader r, SpmSpec *sp, int denormalizer) {
    uint32_t f;
    int w, k;
    uint64_t v;
    PbReader s;
    while ((k = pb_key(&r, &f, &w)) == 1) {
        if (w == 2 && (f == 1 || f == 2)) {
            if (pb_bytes(&r, &s)) return -1;
            if (f == 1 && !denormalizer) sp->norm_name = s;
            if (f == 2) *(denormalizer ? &sp->denorm_charsmap_len : &sp->charsmap_len) = (size_t)(s.end - s.p);
        } else if (w == 0 && f >= 3 && f <= 5) {
            if (pb_varint(&r, &v)) return -1;
            if (denormalizer) continue;
            if (f == 3) sp->add_dummy_prefix = v != 0;
            if (f == 4) sp->remove_extra_ws = v != 0;
            if (f == 5) sp->escape_ws = v != 0;
        } else if (pb_skip(&r, w)) {
            return -1;
        }
    }
    return k;
}

/* Parse the ModelProto: pieces into a growing array, the specs into `sp`. */
static int parse_model(const unsigned char *data, size_t len, RawPiece **pieces, size_t *n, SpmSpec *sp,
                       const char *src, Mamba2Error *err) {
    PbReader r = {data, data + len}, sub;
    uint32_t f;
    int w, k;
    size_t cap = 0;
    while ((k = pb_key(&r, &f, &w)) == 1) {
        if (w == 2 && (f == 1 || f == 2 || f == 3 || f == 5)) {
            if (pb_bytes(&r, &sub)) break;
            if (f == 1) {
                if (*n == cap) {
                    cap = cap ? 2 * cap : 1024;
                    RawPiece *p = realloc(*pieces, cap * sizeof *p);
                    if (!p) return mamba2_fail(err, "%s: out of memory", src);
                    *pieces = p;
                }
                if (parse_piece(sub, &(*pieces)[*n]) < 0)
                    return mamba2_fail(err, "%s: malformed SentencePiece protobuf (piece %zu)", src, *n);
                (*n)++;
            } else if (f == 2) {
                if (parse_trainer(sub, sp) < 0) return mamba2_fail(err, "%s: malformed trainer_spec", src);
            } else if (parse_normalizer(sub, sp, f == 5) < 0) {
                return mamba2_fail(err, "%s: malformed %s", src, f == 5 ? "denormalizer_spec" : "normalizer_spec");
            }
        } else if (pb_skip(&r, w)) {
            k = -1;
            break;
        }
    }
    if (k != 0) return mamba2_fail(err, "%s: not a SentencePiece model (malformed protobuf)", src);
    return 0;
}

/* Refuse what this implementation does not do, naming the component. */
static int check_supported(const SpmSpec *sp, const RawPiece *pieces, size_t n, const char *src, Mamba2Error *err) {
    static const char *const model_names[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
    if (n == 0) return mamba2_fail(err, "%s: SentencePiece model has no pieces", src);
    if (n > 0x7FFFFFF) return mamba2_fail(err, "%s: too many pieces (%zu)", src, n);
    if (sp->model_type != 2)
        return mamba2_fail(err, "%s: SentencePiece model type %s is not implemented (only BPE)", src,
                           sp->model_type >= 1 && sp->model_type <= 4 ? model_names[sp->model_type] : "unknown");
    if (sp->charsmap_len > 0) {
        int nl = (int)(sp->norm_name.end - sp->norm_name.p);
        return mamba2_fail(err, "%s: SentencePiece normalizer '%.*s' (precompiled_charsmap) is not implemented", src,
                           nl, sp->norm_name.p ? (const char *)sp->norm_name.p : "");
    }
    if (sp->denorm_charsmap_len > 0)
        return mamba2_fail(err, "%s: SentencePiece denormalizer (precompiled_charsmap) is not implemented", src);
    if (sp->suffix_ws)
        return mamba2_fail(err, "%s: SentencePiece treat_whitespace_as_suffix is not implemented", src);
    for (size_t i = 0; i < n; i++) {
        if (pieces[i].len == 0) return mamba2_fail(err, "%s: piece %zu is empty", src, i);
        if (pieces[i].type == SP_UNUSED)
            return mamba2_fail(err, "%s: UNUSED pieces (piece %zu) are not implemented", src, i);
        if (pieces[i].type < SP_NORMAL || pieces[i].type > SP_BYTE)
            return mamba2_fail(err, "%s: piece %zu has unknown type %d", src, i, pieces[i].type);
    }
    return 0;
}

/* The byte of a piece "<0xAB>" (upper-case hex, as sentencepiece writes it), or -1. */
static int byte_of_piece(const char *s, size_t len) {
    static const char hex[] = "0123456789ABCDEF";
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *hi = s[3] ? strchr(hex, s[3]) : NULL, *lo = s[4] ? strchr(hex, s[4]) : NULL;
    if (!hi || !lo) return -1;
    return (int)((hi - hex) * 16 + (lo - hex));
}

/* Surface of a normal piece: every "▁" becomes a space. */
static int set_normal_surface(Mamba2Tokenizer *t, int32_t id, const char *s, size_t len) {
    ByteBuf b = {0};
    int rc = bytebuf_add(&b, "", 0);
    for (size_t i = 0; rc == 0 && i < len;) {
        if (len - i >= 3 && memcmp(s + i, WS, 3) == 0) {
            rc = bytebuf_add(&b, " ", 1);
            i += 3;
        } else {
            rc = bytebuf_add(&b, s + i, 1);
            i++;
        }
    }
    if (rc == 0) rc = tok_set_surface(t, id, b.p, b.n);
    free(b.p);
    return rc;
}

/*
 * The pair table: for every normal or user-defined piece P and every split of P
 * into two such pieces A + B (at a character boundary), (A, B) → P. Merging two
 * symbols that are pieces then needs no string hashing. Also the ids of the
 * one-byte pieces.
 */
static int build_pairs(SpmModel *m, const RawPiece *pieces, size_t n, const char *src, Mamba2Error *err) {
    /* The splits of a piece into two pieces come from one walk of a trie of the pieces (its prefixes
     * that are pieces) and one of a trie of the reversed pieces (its suffixes): linear in the pieces'
     * bytes. Looking each split up by hash was quadratic in a piece's length (a 1 MB piece: 20 minutes). */
    Trie fw, bw;
    int rc = -1;
    size_t longest = 0;
    int32_t *pre = NULL, *suf = NULL;
    char *rev = NULL;
    int fw_ok = trie_init(&fw) == 0, bw_ok = trie_init(&bw) == 0;
    for (size_t i = 0; i < n; i++)
        if (pieces[i].len > longest) longest = pieces[i].len;
    if (!fw_ok || !bw_ok || !(pre = malloc((longest + 1) * sizeof *pre)) ||
        !(suf = malloc((longest + 1) * sizeof *suf)) || !(rev = malloc(longest + 1)))
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if (pieces[i].type != SP_NORMAL && pieces[i].type != SP_USER) continue;
        const char *s = pieces[i].s;
        size_t len = pieces[i].len;
        for (size_t k = 0; k < len; k++) rev[k] = s[len - 1 - k];
        if (trie_add(&fw, s, len, (int32_t)i) || trie_add(&bw, rev, len, (int32_t)i)) goto oom;
    }
    if (pairmap_init(&m->merges, n)) goto oom; /* grows as needed */
    for (size_t i = 0; i < n; i++) {
        const char *s = pieces[i].s;
        size_t len = pieces[i].len;
        if (pieces[i].type != SP_NORMAL && pieces[i].type != SP_USER) continue;
        for (size_t k = 0; k < len; k++) rev[k] = s[len - 1 - k];
        trie_prefixes(&fw, s, len, pre);   /* pre[k-1]: the piece s[0..k) */
        trie_prefixes(&bw, rev, len, suf); /* suf[j-1]: the piece s[len-j..len) */
        for (size_t k = 1; k < len; k++) {
            if (((unsigned char)s[k] & 0xC0) == 0x80) continue; /* not a character boundary */
            int32_t a = pre[k - 1], b = suf[len - k - 1];
            if (a >= 0 && b >= 0 && pairmap_put(&m->merges, a, b, (int32_t)i, (int32_t)i) < 0) goto oom;
        }
    }
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        m->ascii_id[c] = -1;
        for (size_t i = 0; i < n && m->ascii_id[c] < 0; i++)
            if (pieces[i].len == 1 && pieces[i].s[0] == ch) m->ascii_id[c] = (int32_t)i;
    }
    rc = 0;
    goto done;
oom:
    mamba2_fail(err, "%s: out of memory", src);
done:
    if (fw_ok) trie_free(&fw);
    if (bw_ok) trie_free(&bw);
    free(pre), free(suf), free(rev);
    return rc;
}

/* The format gives every piece one id: a string that appears twice is refused (the later one was
 * unreachable, and which id encoding picks was the loader's accident). Hash lookups: linear. */
static int check_unique(const RawPiece *pieces, size_t n, const char *src, Mamba2Error *err) {
    StrMap map;
    if (strmap_init(&map, n)) return mamba2_fail(err, "%s: out of memory", src);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int put = strmap_put(&map, pieces[i].s, pieces[i].len, (int32_t)i);
        if (put < 0) rc = mamba2_fail(err, "%s: out of memory", src);
        else if (put > 0)
            rc = mamba2_fail(err, "%s: piece %zu '%.*s' appears twice (also piece %d)", src, i,
                             (int)(pieces[i].len < 64 ? pieces[i].len : 64), pieces[i].s,
                             strmap_get(&map, pieces[i].s, pieces[i].len));
    }
    strmap_free(&map);
    return rc;
}

/* Find a piece by its string; -1 when absent (used before the piece map exists). */
static int32_t find_piece(const RawPiece *pieces, size_t n, const char *s, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (pieces[i].len == len && memcmp(pieces[i].s, s, len) == 0) return (int32_t)i;
    return -1;
}

int spm_load(Mamba2Tokenizer *t, const unsigned char *data, size_t len, Mamba2Error *err) {
    const char *src = t->source;
    RawPiece *pieces = NULL;
    size_t n = 0;
    SpmSpec sp;
    memset(&sp, 0, sizeof sp);
    sp.model_type = 1; /* proto defaults */
    sp.add_dummy_prefix = sp.remove_extra_ws = sp.escape_ws = 1;
    int rc = parse_model(data, len, &pieces, &n, &sp, src, err);
    if (rc == 0) rc = check_supported(&sp, pieces, n, src, err);
    if (rc == 0) rc = check_unique(pieces, n, src, err);
    if (rc) {
        free(pieces);
        return -1;
    }
    SpmModel *m = calloc(1, sizeof *m);
    if (!m || lm_init(&m->user)) {
        free(m);
        free(pieces);
        return mamba2_fail(err, "%s: out of memory", src);
    }
    t->spm = m;
    m->byte_fallback = sp.byte_fallback;
    m->add_dummy_prefix = sp.add_dummy_prefix;
    m->remove_extra_ws = sp.remove_extra_ws;
    m->escape_ws = sp.escape_ws;
    m->unk_id = -1;
    t->spm_rules = 1;
    t->spm_strip_ws = sp.add_dummy_prefix || sp.remove_extra_ws;
    t->spm_remove_extra = sp.remove_extra_ws;
    if (tok_alloc(t, (int32_t)n, err) || !(m->score = malloc(n * sizeof *m->score))) {
        free(pieces);
        return mamba2_fail(err, "%s: out of memory", src);
    }
    for (int b = 0; b < 256; b++) m->byte_id[b] = -1;

    const char *unk_surface = " \xE2\x81\x87 "; /* " ⁇ ", sentencepiece's default */
    size_t unk_surface_len = 5;
    if (sp.has_unk_surface) {
        unk_surface = (const char *)sp.unk_surface.p;
        unk_surface_len = (size_t)(sp.unk_surface.end - sp.unk_surface.p);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const RawPiece *p = &pieces[i];
        int32_t id = (int32_t)i;
        m->score[i] = p->score;
        rc = tok_set_piece(t, id, p->s, p->len);
        if (rc) break;
        switch (p->type) {
        case SP_NORMAL:
        case SP_USER:
            t->type[i] = p->type == SP_USER ? MAMBA2_TOKEN_USER : MAMBA2_TOKEN_NORMAL;
            t->lead_ws[i] = p->len >= 3 && memcmp(p->s, WS, 3) == 0;
            rc = set_normal_surface(t, id, p->s, p->len);
            if (rc == 0 && p->type == SP_USER) rc = lm_add(&m->user, p->s, p->len, id);
            break;
        case SP_UNKNOWN:
            t->type[i] = MAMBA2_TOKEN_UNKNOWN;
            if (m->unk_id < 0) m->unk_id = id;
            rc = tok_set_surface(t, id, unk_surface, unk_surface_len);
            break;
        case SP_CONTROL:
            t->type[i] = MAMBA2_TOKEN_CONTROL;
            rc = tok_set_surface(t, id, "", 0);
            break;
        case SP_BYTE: {
            int b = byte_of_piece(p->s, p->len);
            if (b < 0) {
                mamba2_fail(err, "%s: byte piece %zu '%.*s' is not of the form <0xAB>", src, i, (int)p->len, p->s);
                free(pieces);
                return -1;
            }
            t->type[i] = MAMBA2_TOKEN_BYTE;
            m->byte_id[b] = id;
            char c = (char)b;
            rc = tok_set_surface(t, id, &c, 1);
            break;
        }
        }
    }
    if (rc == 0) rc = lm_build(&m->user);
    if (rc) {
        free(pieces);
        return mamba2_fail(err, "%s: out of memory", src);
    }
    if (m->unk_id < 0) {
        free(pieces);
        return mamba2_fail(err, "%s: the model has no unknown piece", src);
    }
    for (int b = 0; b < 256; b++) {
        if (m->byte_id[b] >= 0) continue;
        if (m->byte_fallback) {
            free(pieces);
            return mamba2_fail(err, "%s: byte_fallback is on but piece <0x%02X> is missing", src, b);
        }
        m->byte_id[b] = m->unk_id;
    }
    if (build_pairs(m, pieces, n, src, err)) {
        free(pieces);
        return -1;
    }
    /* Cutting the text before "▁" is exact when "▁" is a piece and no piece has a "▁" after another character. */
    m->cut_at_ws = m->escape_ws;
    int have_ws = 0;
    for (size_t i = 0; i < n; i++) {
        if (pieces[i].type != SP_NORMAL && pieces[i].type != SP_USER) continue;
        if (pieces[i].len == 3 && !memcmp(pieces[i].s, WS, 3)) have_ws = 1;
        if (bpe_has_inner_ws(pieces[i].s, pieces[i].len)) m->cut_at_ws = 0;
    }
    m->cut_at_ws = m->cut_at_ws && have_ws;
    /* sentencepiece's bos_id()/eos_id(): the id of bos_piece / eos_piece when it is a control piece. */
    const char *bos = sp.bos_piece.p ? (const char *)sp.bos_piece.p : "<s>";
    const char *eos = sp.eos_piece.p ? (const char *)sp.eos_piece.p : "</s>";
    size_t bos_len = sp.bos_piece.p ? (size_t)(sp.bos_piece.end - sp.bos_piece.p) : 3;
    size_t eos_len = sp.eos_piece.p ? (size_t)(sp.eos_piece.end - sp.eos_piece.p) : 4;
    int32_t b = find_piece(pieces, n, bos, bos_len), e = find_piece(pieces, n, eos, eos_len);
    t->bos = b >= 0 && pieces[b].type == SP_CONTROL ? b : -1;
    t->eos = e >= 0 && pieces[e].type == SP_CONTROL ? e : -1;
    free(pieces);
    return 0;
}

void spm_free(SpmModel *m) {
    if (!m) return;
    free(m->score);
    lm_free(&m->user);
    pairmap_free(&m->merges);
    free(m);
}

/* ---- encoding ---- */

/*
 * sentencepiece's Normalizer::Normalize with an identity character map:
 *   text → ("▁" if add_dummy_prefix) + text with ' ' → "▁",
 * and with remove_extra_whitespaces: leading and trailing spaces dropped, runs of spaces kept as one.
 * User-defined pieces are consumed whole (they are not normalised inside).
 */
static int normalize(const SpmModel *m, const char *text, size_t len, ByteBuf *out) {
    const char *sp_sym = m->escape_ws ? WS : " ";
    size_t sp_len = m->escape_ws ? 3 : 1, i = 0;
    if (m->remove_extra_ws)
        while (i < len && text[i] == ' ') i++;
    if (i == len) return 0;
    /* at most 3 bytes out per byte in (a space becomes "▁"), plus the prefix */
    if (bytebuf_reserve(out, 3 * len + 4)) return -1;
    char *o = out->p;
    size_t n_out = 0;
    if (m->add_dummy_prefix) {
        memcpy(o, sp_sym, sp_len);
        n_out = sp_len;
    }
    int prev_space = m->remove_extra_ws;
    uint32_t *user_len = NULL; /* the longest user-defined piece at every position, when there are any */
    int32_t *user_id = NULL;
    if (m->user.rev.n > 1) {
        if (!(user_len = malloc(len * sizeof *user_len)) || !(user_id = malloc(len * sizeof *user_id))) {
            free(user_len);
            return -1;
        }
        lm_scan(&m->user, text, len, user_len, user_id);
    }
    while (i < len) {
        size_t k = user_len ? user_len[i] : 0;
        if (k == 0) k = (size_t)utf8_lead_length((unsigned char)text[i]);
        if (k > len - i) k = len - i;
        const char *s = text + i;
        size_t n = k;
        i += k;
        while (prev_space && n > 0 && s[0] == ' ') {
            s++;
            n--;
        }
        if (n > 0) {
            for (size_t j = 0; j < n; j++) {
                if (s[j] == ' ') {
                    memcpy(o + n_out, sp_sym, sp_len);
                    n_out += sp_len;
                } else {
                    o[n_out++] = s[j];
                }
            }
            prev_space = s[n - 1] == ' ';
        }
        if (!m->remove_extra_ws) prev_space = 0;
    }
    free(user_len), free(user_id);
    if (m->remove_extra_ws)
        while (n_out >= sp_len && memcmp(o + n_out - sp_len, sp_sym, sp_len) == 0) n_out -= sp_len;
    out->n = n_out;
    o[n_out] = 0;
    return 0;
}

/** What the pair function needs: the tokenizer and the normalised text. */
typedef struct {
    const Mamba2Tokenizer *t; /**< the tokenizer */
    const char *text;         /**< the normalised text the symbols point into */
} SpmPairCtx;

static int mergeable(const Mamba2Tokenizer *t, int32_t id) {
    return id >= 0 && (t->type[id] == MAMBA2_TOKEN_NORMAL || t->type[id] == MAMBA2_TOKEN_USER);
}

/*
 * Two symbols merge when neither is a frozen user-defined piece and their concatenation is a normal or
 * user-defined piece: found by ids in the pair table when both are such pieces, else by the string.
 */
static int spm_pair(const void *ctx, const BpeSymbol *l, const BpeSymbol *r, uint32_t *priority, int32_t *merged) {
    const SpmPairCtx *c = ctx;
    const Mamba2Tokenizer *t = c->t;
    int32_t id, unused;
    if (l->flags || r->flags) return 0;
    if (mergeable(t, l->id) && mergeable(t, r->id)) {
        if (!pairmap_get(&t->spm->merges, l->id, r->id, &unused, &id)) return 0;
    } else {
        id = strmap_get(&t->piece_ids, c->text + l->start, (size_t)(l->len + r->len));
        if (!mergeable(t, id)) return 0;
    }
    *priority = bpe_score_priority(t->spm->score[id]);
    *merged = id;
    return 1;
}

int spm_encode(const Mamba2Tokenizer *t, const char *text, size_t len, int add_bos, IdVec *out, Mamba2Error *err) {
    const SpmModel *m = t->spm;
    ByteBuf norm = {0};
    BpeSymbol *sym = NULL;
    BpeWork work = {0};
    uint32_t *user_len = NULL; /* per piece of the text: the longest user-defined piece at each position */
    int32_t *user_id = NULL;
    int rc = -1;
    if (add_bos && t->bos >= 0 && idvec_push(out, t->bos)) goto oom;
    if (bytebuf_add(&norm, "", 0) || normalize(m, text, len, &norm)) goto oom;
    if (norm.n > 0x7FFFFFFF) {
        free(norm.p);
        return mamba2_fail(err, "%s: text too long (%zu bytes)", t->source, len);
    }
    if (!(sym = malloc((norm.n + 1) * sizeof *sym))) goto oom;
    if (m->user.rev.n > 1 && (!(user_len = malloc((norm.n + 1) * sizeof *user_len)) ||
                              !(user_id = malloc((norm.n + 1) * sizeof *user_id))))
        goto oom;

    /* Merge the text in pieces cut before "▁" when that gives the same result (bpe_has_inner_ws()). */
    int prev_unk = 0;
    for (size_t start = 0; start < norm.n;) {
        size_t end = m->cut_at_ws ? bpe_next_cut(norm.p, start, norm.n) : norm.n;
        const char *text_piece = norm.p + start;
        size_t len_piece = end - start;

        /* Split into symbols: user-defined pieces (frozen) or single characters, with their ids (−1: none). */
        int32_t n = 0;
        if (user_len) lm_scan(&m->user, text_piece, len_piece, user_len, user_id);
        for (size_t i = 0; i < len_piece;) {
            int32_t id = user_len ? user_id[i] : -1;
            unsigned char c = (unsigned char)text_piece[i];
            size_t k = user_len ? user_len[i] : 0;
            int frozen = k > 0;
            if (!frozen) {
                k = (size_t)utf8_lead_length(c);
                if (k > len_piece - i) k = len_piece - i;
                id = c < 0x80 ? m->ascii_id[c] : strmap_get(&t->piece_ids, text_piece + i, k);
            }
            sym[n] = (BpeSymbol){id, (int32_t)i, (int32_t)k, n - 1, n + 1, frozen};
            n++;
            i += k;
        }
        sym[n - 1].next = -1;

        SpmPairCtx ctx = {t, text_piece};
        if (bpe_merge(sym, n, spm_pair, &ctx, &work)) goto oom;

        /* Each final symbol is a piece, or unknown: then its bytes (byte_fallback) or one unk for a run. */
        for (int32_t i = 0; i >= 0; i = sym[i].next) {
            const char *s = text_piece + sym[i].start;
            int32_t id = sym[i].id >= 0 ? sym[i].id : m->unk_id;
            int unk = t->type[id] == MAMBA2_TOKEN_UNKNOWN;
            if (unk && m->byte_fallback) {
                for (int32_t j = 0; j < sym[i].len; j++)
                    if (idvec_push(out, m->byte_id[(unsigned char)s[j]])) goto oom;
            } else if (!(unk && prev_unk)) {
                if (idvec_push(out, id)) goto oom;
            }
            prev_unk = unk;
        }
        start = end;
    }
    rc = 0;
    goto done;
oom:
    rc = mamba2_fail(err, "%s: out of memory while encoding", t->source);
done:
    free(norm.p);
    free(sym);
    free(user_len), free(user_id);
    bpe_work_free(&work);
    return rc;
}
