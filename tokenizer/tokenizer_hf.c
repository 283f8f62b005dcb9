/**
 * @file tokenizer_hf.c
 * @brief Hugging Face `tokenizer.json` (BPE), encoding and decoding as the
 *        `tokenizers` library does.
 *
 * The encode pipeline of `tokenizers`, in the order it runs:
 *  1. added tokens: the text is split around the leftmost-longest occurrences
 *     of the added tokens' contents (lstrip / rstrip also take the white space
 *     beside them); those parts become their ids directly;
 *  2. normalizer on every other part: Prepend (only to non-empty text),
 *     Replace (literal string), Sequence of these; added tokens marked
 *     `normalized` are then matched in the normalised text;
 *  3. pre-tokenizer Metaspace: ' ' → "▁"; "▁" in front when prepend_scheme is
 *     "always", or "first" and the part starts the original text (and it does
 *     not already start with "▁"); with split, one word per "▁";
 *  4. BPE on each word: characters looked up in the vocabulary; one that is
 *     missing becomes its bytes `<0xAB>` (byte_fallback) or the unk token
 *     (adjacent ones fused with fuse_unk); then merges by rank (bpe.c);
 *  5. post-processor TemplateProcessing: the special tokens around the sequence.
 *
 * Decoding applies the decoder chain to the list of token strings (special
 * tokens removed first): Replace (per token), ByteFallback (a run of `<0xAB>`
 * tokens becomes its bytes when they are valid UTF-8, else one U+FFFD per
 * byte), Fuse (concatenate), Strip (remove up to n given characters at the
 * start / end of each token). Finally the strings are concatenated.
 *
 * Anything else (other models, normalizers, pre-tokenizers, decoders,
 * post-processors, regex patterns, single_word added tokens, BPE dropout or
 * subword prefixes) is refused at load time with a message naming it.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "tokenizer.h"
#include "tokenizer_impl.h"
#include "utf8.h"

/** A normalizer or decoder step. */
typedef struct {
    int kind;     /**< STEP_* */
    char *a;      /**< Prepend: the text; Replace: the pattern; Strip: the character */
    size_t alen;  /**< length of a */
    char *b;      /**< Replace: the replacement */
    size_t blen;  /**< length of b */
    int start;    /**< Strip: characters removed at the start */
    int stop;     /**< Strip: characters removed at the end */
} HfStep;

enum { STEP_PREPEND, STEP_REPLACE, STEP_BYTE_FALLBACK, STEP_FUSE, STEP_STRIP };

/** An added token as the matcher needs it. */
typedef struct {
    int32_t id;  /**< its id */
    int lstrip;  /**< also take the white space on its left */
    int rstrip;  /**< also take the white space on its right */
} HfAdded;

enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };

/** Data of a tokenizer.json beyond the per-id tables. */
struct HfModel {
    HfStep *norm;          /**< normalizer steps */
    int n_norm;            /**< number of normalizer steps */
    int metaspace;         /**< 1 when the pre-tokenizer is Metaspace */
    char meta_rep[4];      /**< Metaspace replacement character */
    int meta_rep_len;      /**< its length in bytes */
    int prepend;           /**< PREPEND_* */
    int split;             /**< Metaspace split */
    ByteBuf vocab_text;    /**< arena of the model's vocabulary strings */
    StrMap vocab;          /**< model vocabulary: string → id */
    PairMap merges;        /**< (left id, right id) → (rank, merged id) */
    int byte_fallback;     /**< unknown characters become byte tokens */
    int fuse_unk;          /**< adjacent unknown characters make one unk */
    int ignore_merges;     /**< a word found whole in the vocabulary is not split */
    int cut_at_ws;         /**< words may be merged in pieces (bpe_has_inner_ws() false for every token) */
    int32_t unk_id;        /**< unk_token id, −1 when none */
    int32_t byte_id[256];  /**< id of `<0xAB>`, −1 when absent */
    int32_t ascii_id[128]; /**< id of each one-byte character, −1 when absent */
    HfAdded *added;        /**< added tokens */
    int n_added;           /**< number of added tokens */
    LongestMatcher added_raw;  /**< contents of the non-normalized added tokens → index in added */
    LongestMatcher added_norm; /**< normalised contents of the normalized ones → index in added */
    int has_norm_added;    /**< any normalized added token */
    int32_t *tmpl;         /**< post-processor ids: n_before, then n_after */
    int n_before;          /**< ids before the sequence */
    int n_after;           /**< ids after the sequence */
    int has_decoder;       /**< a decoder is configured */
    HfStep *dec;           /**< decoder steps */
    int n_dec;             /**< number of decoder steps */
};

/* ---- small helpers ---- */

static char *dup_bytes(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* The string member `key` of `o` (NULL when absent or not a string). */
static const char *get_str(json_object *o, const char *key, size_t *len) {
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) return NULL;
    if (len) *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* The boolean member `key` of `o`, `def` when absent or null. */
static int get_bool(json_object *o, const char *key, int def) {
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !v) return def;
    return json_object_get_boolean(v);
}

static json_object *get_obj(json_object *o, const char *key) {
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v)) return NULL;
    return v;
}

static const char *type_of(json_object *o) {
    const char *t = get_str(o, "type", NULL);
    return t ? t : "(no type)";
}

/* Replace every occurrence of pat (left to right, not overlapping) in s by rep, into out. */
static int replace_all(const char *s, size_t n, const char *pat, size_t plen, const char *rep, size_t rlen,
                       ByteBuf *out) {
    size_t i = 0, last = 0;
    while (plen > 0 && i + plen <= n) {
        if (memcmp(s + i, pat, plen) == 0) {
            if (bytebuf_add(out, s + last, i - last) || bytebuf_add(out, rep, rlen)) return -1;
            i += plen;
            last = i;
        } else {
            i++;
        }
    }
    return bytebuf_add(out, s + last, n - last);
}

/* The byte of a token "<0xAB>" (hex digits of either case), or -1. */
static int byte_token(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = 16 * v + d;
    }
    return v;
}

/* ---- loading ---- */

/* What a chain of steps can make of a text of n bytes, at most: g·n + c bytes. A Replace that lengthens
 * its pattern multiplies both by its length ratio; a Prepend adds its length to c. Both kinds count
 * against one cap, the longest output of a one-byte text (g + c): issue #21's 101 KB tokenizer.json
 * prepended a string 100,000 times (the cap counted Replace steps only), turning one byte into 25.6 M ids.
 * Real tokenizers: at most 12 (Prepend "▁", then " " -> "▁"). */
#define MAX_CHAIN_GROWTH 256
/* Steps per chain (normalizer or decoder): each is a pass over the text; real ones have at most 4. */
#define MAX_CHAIN_STEPS 64
static double chain_growth(const HfStep *steps, int n) {
    double g = 1, c = 0;
    for (int i = 0; i < n; i++) {
        if (steps[i].kind == STEP_REPLACE && steps[i].blen > steps[i].alen) {
            double r = (double)steps[i].blen / (double)steps[i].alen;
            g *= r, c *= r;
        } else if (steps[i].kind == STEP_PREPEND) {
            c += (double)steps[i].alen;
        }
    }
    return g + c;
}

/* A Replace pattern: {"String": "..."}; regular expressions are refused. */
static int parse_pattern(json_object *step, const char *what, HfStep *st, const char *src, Mamba2Error *err) {
    json_object *pat = get_obj(step, "pattern");
    size_t plen, clen;
    const char *p = get_str(pat, "String", &plen), *c = get_str(step, "content", &clen);
    if (get_obj(pat, "Regex")) return mamba2_fail(err, "%s: %s Replace with a Regex pattern is not implemented", src, what);
    if (!p || !c || plen == 0) return mamba2_fail(err, "%s: %s Replace needs a non-empty pattern.String and a content", src, what);
    st->kind = STEP_REPLACE;
    st->a = dup_bytes(p, plen);
    st->alen = plen;
    st->b = dup_bytes(c, clen);
    st->blen = clen;
    return st->a && st->b ? 0 : mamba2_fail(err, "%s: out of memory", src);
}

static int add_step(HfStep **steps, int *n, HfStep st, const char *src, Mamba2Error *err) {
    if (*n >= MAX_CHAIN_STEPS) {
        free(st.a);
        free(st.b);
        return mamba2_fail(err, "%s: more than %d normalizer or decoder steps in one chain", src, MAX_CHAIN_STEPS);
    }
    HfStep *p = realloc(*steps, (size_t)(*n + 1) * sizeof *p);
    if (!p) {
        free(st.a);
        free(st.b);
        return mamba2_fail(err, "%s: out of memory", src);
    }
    p[(*n)++] = st;
    *steps = p;
    return 0;
}

static int parse_normalizer(HfModel *m, json_object *o, const char *src, Mamba2Error *err) {
    const char *type = type_of(o);
    HfStep st = {0};
    if (!strcmp(type, "Sequence")) {
        json_object *list = get_obj(o, "normalizers");
        if (!json_object_is_type(list, json_type_array)) return mamba2_fail(err, "%s: normalizer Sequence without a normalizers list", src);
        for (size_t i = 0; i < json_object_array_length(list); i++)
            if (parse_normalizer(m, json_object_array_get_idx(list, i), src, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        size_t len;
        const char *s = get_str(o, "prepend", &len);
        if (!s) return mamba2_fail(err, "%s: normalizer Prepend without a prepend string", src);
        st.kind = STEP_PREPEND;
        st.a = dup_bytes(s, len);
        st.alen = len;
        if (!st.a) return mamba2_fail(err, "%s: out of memory", src);
    } else if (!strcmp(type, "Replace")) {
        if (parse_pattern(o, "normalizer", &st, src, err)) {
            free(st.a);
            free(st.b);
            return -1;
        }
    } else {
        return mamba2_fail(err, "%s: normalizer '%s' is not implemented (supported: Sequence, Prepend, Replace)", src, type);
    }
    return add_step(&m->norm, &m->n_norm, st, src, err);
}

static int parse_pre_tokenizer(HfModel *m, json_object *o, const char *src, Mamba2Error *err) {
    const char *type = type_of(o);
    if (strcmp(type, "Metaspace"))
        return mamba2_fail(err, "%s: pre-tokenizer '%s' is not implemented (supported: Metaspace)", src, type);
    size_t len;
    const char *rep = get_str(o, "replacement", &len);
    uint32_t cp;
    if (!rep || len == 0 || len > 4 || utf8_decode((const unsigned char *)rep, len, &cp) != (int)len)
        return mamba2_fail(err, "%s: pre-tokenizer Metaspace needs a one-character replacement", src);
    m->metaspace = 1;
    memcpy(m->meta_rep, rep, len);
    m->meta_rep_len = (int)len;
    m->split = get_bool(o, "split", 1);
    const char *scheme = get_str(o, "prepend_scheme", NULL);
    if (!scheme) {
        m->prepend = get_bool(o, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
    } else if (!strcmp(scheme, "first")) {
        m->prepend = PREPEND_FIRST;
    } else if (!strcmp(scheme, "always")) {
        m->prepend = PREPEND_ALWAYS;
    } else if (!strcmp(scheme, "never")) {
        m->prepend = PREPEND_NEVER;
    } else {
        return mamba2_fail(err, "%s: pre-tokenizer Metaspace prepend_scheme '%s' is not implemented", src, scheme);
    }
    return 0;
}

static int parse_decoder(HfModel *m, json_object *o, const char *src, Mamba2Error *err) {
    const char *type = type_of(o);
    HfStep st = {0};
    if (!strcmp(type, "Sequence")) {
        json_object *list = get_obj(o, "decoders");
        if (!json_object_is_type(list, json_type_array)) return mamba2_fail(err, "%s: decoder Sequence without a decoders list", src);
        for (size_t i = 0; i < json_object_array_length(list); i++)
            if (parse_decoder(m, json_object_array_get_idx(list, i), src, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        if (parse_pattern(o, "decoder", &st, src, err)) {
            free(st.a);
            free(st.b);
            return -1;
        }
    } else if (!strcmp(type, "ByteFallback")) {
        st.kind = STEP_BYTE_FALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        st.kind = STEP_FUSE;
    } else if (!strcmp(type, "Strip")) {
        size_t len;
        const char *c = get_str(o, "content", &len);
        json_object *a = get_obj(o, "start"), *b = get_obj(o, "stop");
        if (!c || len == 0 || utf8_decode((const unsigned char *)c, len, NULL) != (int)len || !a || !b)
            return mamba2_fail(err, "%s: decoder Strip needs a one-character content, start and stop", src);
        st.kind = STEP_STRIP;
        st.a = dup_bytes(c, len);
        st.alen = len;
        st.start = json_object_get_int(a);
        st.stop = json_object_get_int(b);
        if (!st.a) return mamba2_fail(err, "%s: out of memory", src);
        if (st.start < 0 || st.stop < 0) {
            free(st.a);
            return mamba2_fail(err, "%s: decoder Strip with a negative count", src);
        }
    } else {
        return mamba2_fail(err, "%s: decoder '%s' is not implemented (supported: Sequence, Replace, ByteFallback, Fuse, Strip)", src, type);
    }
    return add_step(&m->dec, &m->n_dec, st, src, err);
}

/* TemplateProcessing "single": the ids of the special tokens before and after the sequence $A. */
static int parse_post_processor(HfModel *m, json_object *o, const char *src, Mamba2Error *err) {
    const char *type = type_of(o);
    if (strcmp(type, "TemplateProcessing"))
        return mamba2_fail(err, "%s: post-processor '%s' is not implemented (supported: TemplateProcessing)", src, type);
    json_object *single = get_obj(o, "single"), *specials = get_obj(o, "special_tokens");
    if (!json_object_is_type(single, json_type_array))
        return mamba2_fail(err, "%s: post-processor TemplateProcessing without a 'single' template", src);
    IdVec ids = {0};
    int seen_seq = 0;
    for (size_t i = 0; i < json_object_array_length(single); i++) {
        json_object *item = json_object_array_get_idx(single, i), *sp = get_obj(item, "SpecialToken");
        if (get_obj(item, "Sequence")) {
            if (seen_seq) {
                free(ids.v);
                return mamba2_fail(err, "%s: post-processor template with two sequences in 'single'", src);
            }
            seen_seq = 1;
            m->n_before = (int)ids.n;
            continue;
        }
        const char *name = get_str(sp, "id", NULL);
        json_object *tok = name ? get_obj(specials, name) : NULL, *tid = get_obj(tok, "ids");
        if (!name || !json_object_is_type(tid, json_type_array)) {
            free(ids.v);
            return mamba2_fail(err, "%s: post-processor template item %zu is not a known special token", src, i);
        }
        for (size_t j = 0; j < json_object_array_length(tid); j++)
            if (idvec_push(&ids, json_object_get_int(json_object_array_get_idx(tid, j)))) {
                free(ids.v);
                return mamba2_fail(err, "%s: out of memory", src);
            }
    }
    if (!seen_seq) m->n_before = (int)ids.n;
    m->n_after = (int)ids.n - m->n_before;
    m->tmpl = ids.v;
    return 0;
}

/** One merge as read: the two token strings. */
typedef struct {
    const char *a; /**< left token string */
    const char *b; /**< right token string */
    size_t alen;   /**< length of a */
    size_t blen;   /**< length of b */
} MergeText;

/* Merges as "a b" strings or as ["a", "b"] pairs; "#version" lines are not merges. */
static int read_merge(json_object *e, MergeText *mt) {
    if (json_object_is_type(e, json_type_array) && json_object_array_length(e) == 2) {
        json_object *x = json_object_array_get_idx(e, 0), *y = json_object_array_get_idx(e, 1);
        if (!json_object_is_type(x, json_type_string) || !json_object_is_type(y, json_type_string)) return -1;
        mt->a = json_object_get_string(x);
        mt->alen = (size_t)json_object_get_string_len(x);
        mt->b = json_object_get_string(y);
        mt->blen = (size_t)json_object_get_string_len(y);
        return 1;
    }
    if (!json_object_is_type(e, json_type_string)) return -1;
    const char *s = json_object_get_string(e);
    size_t n = (size_t)json_object_get_string_len(e);
    if (n >= 8 && !memcmp(s, "#version", 8)) return 0;
    const char *sp = memchr(s, ' ', n);
    if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) return -1; /* exactly two parts */
    mt->a = s;
    mt->alen = (size_t)(sp - s);
    mt->b = sp + 1;
    mt->blen = n - mt->alen - 1;
    return 1;
}

static int parse_model(Mamba2Tokenizer *t, HfModel *m, json_object *model, json_object *added, const char *src,
                       Mamba2Error *err) {
    const char *type = get_str(model, "type", NULL);
    json_object *vocab = get_obj(model, "vocab"), *merges = get_obj(model, "merges"), *v;
    if (type && strcmp(type, "BPE"))
        return mamba2_fail(err, "%s: model '%s' is not implemented (supported: BPE)", src, type);
    if (!json_object_is_type(vocab, json_type_object) || !json_object_is_type(merges, json_type_array))
        return mamba2_fail(err, "%s: model BPE needs a vocab object and a merges list", src);
    if ((v = get_obj(model, "dropout")) && json_object_get_double(v) != 0.0)
        return mamba2_fail(err, "%s: model BPE dropout is not implemented", src);
    if (get_str(model, "continuing_subword_prefix", NULL) || get_str(model, "end_of_word_suffix", NULL))
        return mamba2_fail(err, "%s: model BPE continuing_subword_prefix / end_of_word_suffix are not implemented", src);
    m->byte_fallback = get_bool(model, "byte_fallback", 0);
    m->fuse_unk = get_bool(model, "fuse_unk", 0);
    m->ignore_merges = get_bool(model, "ignore_merges", 0);

    /* Vocabulary: every string into one arena, then the map (the arena must not move any more). */
    size_t nv = (size_t)json_object_object_length(vocab);
    uint32_t *off = malloc((nv + 1) * sizeof *off);
    int32_t *ids = malloc((nv + 1) * sizeof *ids), max_id = -1;
    size_t k = 0;
    if (!off || !ids || strmap_init(&m->vocab, nv) || bytebuf_add(&m->vocab_text, "", 0)) goto oom;
    json_object_object_foreach(vocab, key, val) {
        int64_t id = json_object_get_int64(val);
        if (!json_object_is_type(val, json_type_int) || id < 0 || id >= (1 << 26)) {
            free(off);
            free(ids);
            return mamba2_fail(err, "%s: vocab entry '%s' has an invalid id", src, key);
        }
        off[k] = (uint32_t)m->vocab_text.n;
        ids[k] = (int32_t)id;
        if (bytebuf_add(&m->vocab_text, key, strlen(key) + 1)) goto oom;
        if (id > max_id) max_id = (int32_t)id;
        k++;
    }
    for (size_t i = 0; i < (added ? json_object_array_length(added) : 0); i++) {
        int64_t id = json_object_get_int64(get_obj(json_object_array_get_idx(added, i), "id"));
        if (id < 0 || id >= (1 << 26)) {
            free(off);
            free(ids);
            return mamba2_fail(err, "%s: added token %zu has an invalid id", src, i);
        }
        if (id > max_id) max_id = (int32_t)id;
    }
    /* The per-id tables are sized by the largest id: refuse an id space far sparser than the tokens
     * defined (a 60-byte file with one id of 2^26 - 1 would take gigabytes). */
    size_t n_defined = nv + (added ? json_object_array_length(added) : 0);
    if ((size_t)max_id + 1 > 2 * n_defined + 65536) {
        free(off);
        free(ids);
        return mamba2_fail(err, "%s: ids go up to %d but only %zu tokens are defined: the id space is too sparse",
                           src, (int)max_id, n_defined);
    }
    if (tok_alloc(t, max_id + 1, err)) {
        free(off);
        free(ids);
        return -1;
    }
    for (size_t i = 0; i < k; i++) {
        const char *s = m->vocab_text.p + off[i];
        size_t len = strlen(s);
        if (strmap_put(&m->vocab, s, len, ids[i]) < 0) goto oom;
        if (t->piece_off[ids[i]] == TOK_NO_PIECE) {
            if (tok_set_piece(t, ids[i], s, len)) goto oom;
            t->type[ids[i]] = MAMBA2_TOKEN_NORMAL;
        }
    }
    free(off);
    free(ids);
    off = NULL;
    ids = NULL;

    /* Cutting words before "▁" is exact when "▁" is a token and no token has a "▁" after another character. */
    m->cut_at_ws = strmap_get(&m->vocab, "\xE2\x96\x81", 3) >= 0;
    for (size_t i = 0; m->cut_at_ws && i < m->vocab.cap; i++)
        if (m->vocab.slots[i].key && bpe_has_inner_ws(m->vocab.slots[i].key, m->vocab.slots[i].len)) m->cut_at_ws = 0;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_id[b] = strmap_get(&m->vocab, name, 6);
    }
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        m->ascii_id[c] = strmap_get(&m->vocab, &ch, 1);
    }
    m->unk_id = -1;
    size_t ulen;
    const char *unk = get_str(model, "unk_token", &ulen);
    if (unk && (m->unk_id = strmap_get(&m->vocab, unk, ulen)) < 0)
        return mamba2_fail(err, "%s: model BPE unk_token '%s' is not in the vocabulary", src, unk);

    /* Merges: rank = position (not counting "#version" lines). A repeated pair keeps its last rank,
       as in tokenizers (a hash map filled in order): so insert from the last merge to the first. */
    size_t nm = json_object_array_length(merges), rank = 0;
    MergeText *mt = malloc((nm + 1) * sizeof *mt);
    if (!mt || pairmap_init(&m->merges, nm)) {
        free(mt);
        goto oom;
    }
    for (size_t i = 0; i < nm; i++) {
        int r = read_merge(json_object_array_get_idx(merges, i), &mt[rank]);
        if (r < 0) {
            free(mt);
            return mamba2_fail(err, "%s: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", src, i + 1);
        }
        rank += (size_t)r;
    }
    ByteBuf joined = {0};
    for (size_t r = rank; r-- > 0;) {
        int32_t a = strmap_get(&m->vocab, mt[r].a, mt[r].alen), b = strmap_get(&m->vocab, mt[r].b, mt[r].blen), ab;
        joined.n = 0;
        if (bytebuf_add(&joined, mt[r].a, mt[r].alen) || bytebuf_add(&joined, mt[r].b, mt[r].blen)) {
            free(mt);
            free(joined.p);
            goto oom;
        }
        ab = strmap_get(&m->vocab, joined.p, joined.n);
        if (a < 0 || b < 0 || ab < 0) {
            int rc = mamba2_fail(err, "%s: merge %zu (\"%.*s\" \"%.*s\") uses a token missing from the vocabulary", src,
                                 r + 1, (int)mt[r].alen, mt[r].a, (int)mt[r].blen, mt[r].b);
            free(mt);
            free(joined.p);
            return rc;
        }
        if (pairmap_put(&m->merges, a, b, (int32_t)r, ab) < 0) {
            free(mt);
            free(joined.p);
            goto oom;
        }
    }
    free(mt);
    free(joined.p);
    return 0;
oom:
    free(off);
    free(ids);
    return mamba2_fail(err, "%s: out of memory", src);
}

/* Added tokens: pieces, types, and the two tries (raw and normalised contents). */
static int apply_normalizer(const HfModel *m, const char *s, size_t n, ByteBuf *out);

static int parse_added(Mamba2Tokenizer *t, HfModel *m, json_object *added, const char *src, Mamba2Error *err) {
    size_t n = added ? json_object_array_length(added) : 0;
    if (lm_init(&m->added_raw) || lm_init(&m->added_norm) || !(m->added = calloc(n + 1, sizeof *m->added)))
        return mamba2_fail(err, "%s: out of memory", src);
    for (size_t i = 0; i < n; i++) {
        json_object *a = json_object_array_get_idx(added, i);
        size_t len;
        const char *content = get_str(a, "content", &len);
        json_object *jid = get_obj(a, "id");
        if (!content) return mamba2_fail(err, "%s: added token %zu has no content", src, i);
        /* without this check a missing id read as 0 and silently replaced token 0 */
        if (!json_object_is_type(jid, json_type_int) || json_object_get_int64(jid) < 0 ||
            json_object_get_int64(jid) > INT32_MAX)
            return mamba2_fail(err, "%s: added token '%s' has no id (an integer >= 0 is required)", src, content);
        int32_t id = (int32_t)json_object_get_int64(jid);
        if (get_bool(a, "single_word", 0))
            return mamba2_fail(err, "%s: added token '%s' has single_word=true, which is not implemented", src, content);
        int special = get_bool(a, "special", 0), normalized = get_bool(a, "normalized", !special);
        HfAdded *h = &m->added[m->n_added];
        h->id = id;
        h->lstrip = get_bool(a, "lstrip", 0);
        h->rstrip = get_bool(a, "rstrip", 0);
        /* The added token's content is its string (it wins over the model's vocabulary). */
        if (tok_set_piece(t, id, content, len)) return mamba2_fail(err, "%s: out of memory", src);
        t->type[id] = special ? MAMBA2_TOKEN_CONTROL : MAMBA2_TOKEN_USER;
        t->skip[id] = (unsigned char)special;
        if (len == 0) continue;
        if (normalized) {
            ByteBuf nb = {0};
            int rc = bytebuf_add(&nb, "", 0) || apply_normalizer(m, content, len, &nb) ||
                     (nb.n > 0 && lm_add(&m->added_norm, nb.p, nb.n, m->n_added));
            free(nb.p);
            if (rc) return mamba2_fail(err, "%s: out of memory", src);
            m->has_norm_added = 1;
        } else if (lm_add(&m->added_raw, content, len, m->n_added)) {
            return mamba2_fail(err, "%s: out of memory", src);
        }
        m->n_added++;
    }
    if (lm_build(&m->added_raw) || lm_build(&m->added_norm)) return mamba2_fail(err, "%s: out of memory", src);
    return 0;
}

/*
 * Per-token surfaces for the streaming decoder: the piece after the decoder's
 * per-token steps (Replace; Strip before any Fuse), a byte for "<0xAB>" tokens
 * when ByteFallback is on. A Strip after Fuse acts on the whole text: the
 * streaming decoder removes its leading characters (t->strip_*).
 */
static int build_surfaces(Mamba2Tokenizer *t, HfModel *m, const char *src, Mamba2Error *err) {
    int has_byte_fallback = 0, fused = 0;
    for (int j = 0; j < m->n_dec; j++) {
        const HfStep *st = &m->dec[j];
        if (st->kind == STEP_BYTE_FALLBACK) has_byte_fallback = 1;
        if (st->kind == STEP_FUSE) fused = 1;
        if (st->kind == STEP_STRIP && fused && st->start > 0 && t->strip_count == 0) {
            memcpy(t->strip_char, st->a, st->alen);
            t->strip_char_len = (int)st->alen;
            t->strip_count = st->start;
        }
    }
    ByteBuf cur = {0}, next = {0};
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->piece_off[id] == TOK_NO_PIECE) continue;
        const char *p = tok_piece(t, id);
        size_t len = t->piece_len[id];
        int b = has_byte_fallback ? byte_token(p, len) : -1;
        if (b >= 0 && t->type[id] == MAMBA2_TOKEN_NORMAL) {
            char c = (char)b;
            t->type[id] = MAMBA2_TOKEN_BYTE;
            if (tok_set_surface(t, id, &c, 1)) goto oom;
            continue;
        }
        if (id == m->unk_id) t->type[id] = MAMBA2_TOKEN_UNKNOWN;
        if (t->skip[id]) { /* special tokens print nothing */
            if (tok_set_surface(t, id, "", 0)) goto oom;
            continue;
        }
        cur.n = 0;
        if (bytebuf_add(&cur, p, len)) goto oom;
        fused = 0;
        for (int j = 0; j < m->n_dec; j++) {
            const HfStep *st = &m->dec[j];
            if (st->kind == STEP_FUSE) fused = 1;
            if (st->kind == STEP_REPLACE) {
                next.n = 0;
                if (bytebuf_add(&next, "", 0) || replace_all(cur.p, cur.n, st->a, st->alen, st->b, st->blen, &next))
                    goto oom;
                ByteBuf tmp = cur;
                cur = next;
                next = tmp;
            } else if (st->kind == STEP_STRIP && !fused) {
                size_t s0 = 0, e = cur.n;
                for (int q = 0; q < st->start && e - s0 >= st->alen && !memcmp(cur.p + s0, st->a, st->alen); q++)
                    s0 += st->alen;
                for (int q = 0; q < st->stop && e - s0 >= st->alen && !memcmp(cur.p + e - st->alen, st->a, st->alen); q++)
                    e -= st->alen;
                memmove(cur.p, cur.p + s0, e - s0);
                cur.n = e - s0;
            }
        }
        if (tok_set_surface(t, id, cur.p, cur.n)) goto oom;
    }
    free(cur.p);
    free(next.p);
    return 0;
oom:
    free(cur.p);
    free(next.p);
    return mamba2_fail(err, "%s: out of memory", src);
}

/* BOS: the first special token of the template; EOS: "</s>" or "<|endoftext|>" among the added tokens. */
static void find_bos_eos(Mamba2Tokenizer *t, const HfModel *m) {
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>"};
    static const char *const eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"};
    t->bos = m->n_before > 0 ? m->tmpl[0] : -1;
    for (int i = 0; i < m->n_added; i++) {
        int32_t id = m->added[i].id;
        const char *p = tok_piece(t, id);
        for (size_t j = 0; t->bos < 0 && j < sizeof bos_names / sizeof *bos_names; j++)
            if (!strcmp(p, bos_names[j])) t->bos = id;
        for (size_t j = 0; t->eos < 0 && j < sizeof eos_names / sizeof *eos_names; j++)
            if (!strcmp(p, eos_names[j])) t->eos = id;
    }
}

int hf_load(Mamba2Tokenizer *t, const char *json, size_t len, Mamba2Error *err) {
    const char *src = t->source;
    json_tokener *tk = json_tokener_new();
    if (!tk) return mamba2_fail(err, "%s: out of memory", src);
    json_object *root = json_tokener_parse_ex(tk, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tk);
    size_t used = json_tokener_get_parse_end(tk);
    json_tokener_free(tk);
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        return mamba2_fail(err, "%s: invalid JSON (%s at byte %zu)", src,
                           jerr == json_tokener_continue ? "unexpected end of file: truncated?" : json_tokener_error_desc(jerr),
                           used);
    }
    HfModel *m = calloc(1, sizeof *m);
    int rc = -1;
    if (!m) {
        json_object_put(root);
        return mamba2_fail(err, "%s: out of memory", src);
    }
    t->hf = m;
    t->skip_unknown_ids = 1;
    json_object *model = get_obj(root, "model"), *added = get_obj(root, "added_tokens");
    json_object *norm = get_obj(root, "normalizer"), *pre = get_obj(root, "pre_tokenizer");
    json_object *post = get_obj(root, "post_processor"), *dec = get_obj(root, "decoder");
    if (!json_object_is_type(model, json_type_object)) {
        mamba2_fail(err, "%s: no model object: not a tokenizer.json", src);
        goto done;
    }
    if (added && !json_object_is_type(added, json_type_array)) {
        mamba2_fail(err, "%s: added_tokens is not a list", src);
        goto done;
    }
    if ((norm && parse_normalizer(m, norm, src, err)) || (pre && parse_pre_tokenizer(m, pre, src, err)) ||
        (post && parse_post_processor(m, post, src, err)) || (dec && parse_decoder(m, dec, src, err)))
        goto done;
    m->has_decoder = dec != NULL;
    /* Steps that lengthen the text (Replace multiplies, Prepend adds) are bounded together (chain_growth()). */
    const char *chain = NULL;
    double grow = 0;
    if (chain_growth(m->norm, m->n_norm) > MAX_CHAIN_GROWTH) chain = "normalizer", grow = chain_growth(m->norm, m->n_norm);
    else if (chain_growth(m->dec, m->n_dec) > MAX_CHAIN_GROWTH) chain = "decoder", grow = chain_growth(m->dec, m->n_dec);
    if (chain) {
        mamba2_fail(err, "%s: the %s's Prepend and Replace steps can make one byte %.3g bytes long (at most %d "
                    "supported)", src, chain, grow, MAX_CHAIN_GROWTH);
        goto done;
    }
    if (parse_model(t, m, model, added, src, err) || parse_added(t, m, added, src, err) ||
        build_surfaces(t, m, src, err))
        goto done;
    for (int i = 0; i < m->n_before + m->n_after; i++)
        if (m->tmpl[i] < 0 || m->tmpl[i] >= t->n_vocab) {
            mamba2_fail(err, "%s: post-processor id %d is outside the vocabulary", src, (int)m->tmpl[i]);
            goto done;
        }
    find_bos_eos(t, m);
    rc = 0;
done:
    json_object_put(root);
    return rc;
}

void hf_free(HfModel *m) {
    if (!m) return;
    for (int i = 0; i < m->n_norm; i++) {
        free(m->norm[i].a);
        free(m->norm[i].b);
    }
    for (int i = 0; i < m->n_dec; i++) {
        free(m->dec[i].a);
        free(m->dec[i].b);
    }
    free(m->norm);
    free(m->dec);
    free(m->vocab_text.p);
    strmap_free(&m->vocab);
    pairmap_free(&m->merges);
    free(m->added);
    lm_free(&m->added_raw);
    lm_free(&m->added_norm);
    free(m->tmpl);
    free(m);
}

/* ---- encoding ---- */

/** Scratch state of one encode call. */
typedef struct {
    const Mamba2Tokenizer *t; /**< the tokenizer */
    const HfModel *m;         /**< its tokenizer.json data */
    IdVec *out;               /**< ids produced so far */
    BpeSymbol *sym;           /**< symbols of the current word */
    size_t sym_cap;           /**< symbols allocated */
    BpeWork work;             /**< merge queue */
    ByteBuf a;                /**< normalised text */
    ByteBuf b;                /**< pre-tokenised text */
} HfEnc;

/* Normalizer steps in order: Prepend (non-empty text only), Replace. */
static int apply_normalizer(const HfModel *m, const char *s, size_t n, ByteBuf *out) {
    ByteBuf tmp = {0};
    out->n = 0;
    if (bytebuf_add(out, s, n)) return -1;
    for (int i = 0; i < m->n_norm; i++) {
        const HfStep *st = &m->norm[i];
        tmp.n = 0;
        if (bytebuf_add(&tmp, "", 0)) goto oom;
        if (st->kind == STEP_PREPEND) {
            if (out->n > 0 && (bytebuf_add(&tmp, st->a, st->alen) || bytebuf_add(&tmp, out->p, out->n))) goto oom;
        } else if (replace_all(out->p, out->n, st->a, st->alen, st->b, st->blen, &tmp)) {
            goto oom;
        }
        ByteBuf x = *out;
        *out = tmp;
        tmp = x;
    }
    free(tmp.p);
    return 0;
oom:
    free(tmp.p);
    return -1;
}

/* Merge priority of two adjacent tokens: the rank of their merge. */
static int hf_pair(const void *ctx, const BpeSymbol *l, const BpeSymbol *r, uint32_t *priority, int32_t *merged) {
    const HfModel *m = ctx;
    int32_t rank;
    if (!pairmap_get(&m->merges, l->id, r->id, &rank, merged)) return 0;
    *priority = (uint32_t)rank;
    return 1;
}

static int add_symbol(HfEnc *e, int32_t *n, int32_t id, size_t start, size_t len) {
    if ((size_t)*n == e->sym_cap) {
        size_t cap = e->sym_cap ? 2 * e->sym_cap : 256;
        BpeSymbol *p = realloc(e->sym, cap * sizeof *p);
        if (!p) return -1;
        e->sym = p;
        e->sym_cap = cap;
    }
    e->sym[*n] = (BpeSymbol){id, (int32_t)start, (int32_t)len, *n - 1, *n + 1, 0};
    (*n)++;
    return 0;
}

/* BPE on one piece of a word (valid UTF-8): characters → ids (byte fallback, unk), then merges. */
static int bpe_piece(HfEnc *e, const char *w, size_t n, Mamba2Error *err) {
    const HfModel *m = e->m;
    int32_t ns = 0, unk_len = 0;
    size_t unk_start = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)w[i];
        size_t cl = (size_t)utf8_lead_length(c);
        if (cl > n - i) cl = n - i;
        int32_t id = c < 0x80 ? m->ascii_id[c] : strmap_get(&m->vocab, w + i, cl);
        if (id >= 0) {
            if (unk_len && add_symbol(e, &ns, m->unk_id, unk_start, (size_t)unk_len)) goto oom;
            unk_len = 0;
            if (add_symbol(e, &ns, id, i, cl)) goto oom;
        } else {
            int all_bytes = m->byte_fallback;
            for (size_t j = 0; all_bytes && j < cl; j++) all_bytes = m->byte_id[(unsigned char)w[i + j]] >= 0;
            if (all_bytes) {
                /* (tokenizers adds the bytes without first emitting a pending unk) */
                for (size_t j = 0; j < cl; j++)
                    if (add_symbol(e, &ns, m->byte_id[(unsigned char)w[i + j]], i + j, 1)) goto oom;
            } else if (m->unk_id < 0) {
                return mamba2_fail(err, "%s: character '%.*s' is not in the vocabulary and there is no unk_token",
                                   e->t->source, (int)cl, w + i);
            } else if (unk_len && m->fuse_unk) {
                unk_len += (int32_t)cl;
            } else {
                if (unk_len && add_symbol(e, &ns, m->unk_id, unk_start, (size_t)unk_len)) goto oom;
                unk_start = i;
                unk_len = (int32_t)cl;
            }
        }
        i += cl;
    }
    if (unk_len && add_symbol(e, &ns, m->unk_id, unk_start, (size_t)unk_len)) goto oom;
    e->sym[ns - 1].next = -1;
    if (bpe_merge(e->sym, ns, hf_pair, m, &e->work)) goto oom;
    for (int32_t i = 0; i >= 0; i = e->sym[i].next)
        if (idvec_push(e->out, e->sym[i].id)) goto oom;
    return 0;
oom:
    return mamba2_fail(err, "%s: out of memory while encoding", e->t->source);
}

/*
 * BPE on one word: a word found whole in the vocabulary stays whole (ignore_merges); otherwise it is
 * merged in pieces cut before each "▁" that follows another character when the vocabulary allows it
 * (bpe_has_inner_ws(): the result is the same as merging the whole word at once).
 */
static int bpe_word(HfEnc *e, const char *w, size_t n, Mamba2Error *err) {
    const HfModel *m = e->m;
    if (n == 0) return 0;
    if (n > 0x7FFFFFFF) return mamba2_fail(err, "%s: text too long", e->t->source);
    if (m->ignore_merges) {
        int32_t id = strmap_get(&m->vocab, w, n);
        if (id >= 0) return idvec_push(e->out, id) ? mamba2_fail(err, "out of memory") : 0;
    }
    if (!m->cut_at_ws) return bpe_piece(e, w, n, err);
    for (size_t start = 0; start < n;) {
        size_t end = bpe_next_cut(w, start, n);
        if (bpe_piece(e, w + start, end - start, err)) return -1;
        start = end;
    }
    return 0;
}

/* Metaspace: ' ' → replacement, maybe one in front, then words (split before each replacement). */
static int pre_tokenize(HfEnc *e, const char *s, size_t n, int first, Mamba2Error *err) {
    const HfModel *m = e->m;
    if (!m->metaspace) return bpe_word(e, s, n, err);
    const char *rep = m->meta_rep;
    size_t rl = (size_t)m->meta_rep_len;
    e->b.n = 0;
    if (bytebuf_add(&e->b, "", 0) || replace_all(s, n, " ", 1, rep, rl, &e->b)) return mamba2_fail(err, "out of memory");
    int starts = e->b.n >= rl && !memcmp(e->b.p, rep, rl);
    if (e->b.n > 0 && !starts && (m->prepend == PREPEND_ALWAYS || (m->prepend == PREPEND_FIRST && first))) {
        if (bytebuf_add(&e->b, rep, rl)) return mamba2_fail(err, "out of memory");
        memmove(e->b.p + rl, e->b.p, e->b.n - rl);
        memcpy(e->b.p, rep, rl);
    }
    if (!m->split) return bpe_word(e, e->b.p, e->b.n, err);
    size_t start = 0;
    for (size_t i = 1; i + rl <= e->b.n; i++)
        if (!memcmp(e->b.p + i, rep, rl)) {
            if (bpe_word(e, e->b.p + start, i - start, err)) return -1;
            start = i;
        }
    return bpe_word(e, e->b.p + start, e->b.n - start, err);
}

/** What split_added() does with the text between matches: (state, text, length, starts the text, error). */
typedef int (*PartFn)(HfEnc *e, const char *s, size_t n, int first, Mamba2Error *err);

static size_t ws_before(const char *s, size_t lo, size_t pos) {
    while (pos > lo) {
        size_t p = pos - 1;
        while (p > lo && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
        uint32_t cp;
        if (utf8_decode((const unsigned char *)s + p, pos - p, &cp) != (int)(pos - p) || !utf8_is_whitespace(cp)) break;
        pos = p;
    }
    return pos;
}

static size_t ws_after(const char *s, size_t n, size_t pos) {
    uint32_t cp;
    int k;
    while (pos < n && (k = utf8_decode((const unsigned char *)s + pos, n - pos, &cp)) > 0 && utf8_is_whitespace(cp))
        pos += (size_t)k;
    return pos;
}

/*
 * Split s at the leftmost-longest matches of the trie (added tokens), as tokenizers' find_matches does;
 * lstrip/rstrip widen a match over the white space beside it. Matched parts become their ids, the rest
 * goes to `part(e, text, len, starts_at_0)`.
 */
static int split_added(HfEnc *e, const LongestMatcher *lm, const char *s, size_t n, int first, PartFn part,
                       Mamba2Error *err) {
    /* the longest added token at every position, in one linear pass (lm_scan()); none: no arrays */
    uint32_t *len_at = NULL;
    int32_t *val_at = NULL;
    if (lm->rev.n > 1 && n > 0) {
        len_at = malloc(n * sizeof *len_at);
        val_at = malloc(n * sizeof *val_at);
        if (!len_at || !val_at) {
            free(len_at), free(val_at);
            return mamba2_fail(err, "out of memory");
        }
        lm_scan(lm, s, n, len_at, val_at);
    }
    size_t seg = 0, pos = 0;
    int rc = 0;
    while (pos < n && !rc) {
        size_t k = len_at ? len_at[pos] : 0;
        if (k == 0) {
            pos++;
            continue;
        }
        const HfAdded *h = &e->m->added[val_at[pos]];
        size_t start = pos, stop = pos + k;
        if (h->lstrip) start = ws_before(s, seg, start);
        if (h->rstrip) stop = ws_after(s, n, stop);
        if (seg < start && part(e, s + seg, start - seg, first && seg == 0, err)) rc = -1;
        else if (idvec_push(e->out, h->id)) rc = mamba2_fail(err, "out of memory");
        seg = pos = stop;
    }
    free(len_at), free(val_at);
    if (rc) return rc;
    if (seg < n && part(e, s + seg, n - seg, first && seg == 0, err)) return -1;
    return 0;
}

/* A part between raw added tokens: normalise, match the normalized added tokens, pre-tokenise, BPE. */
static int normalized_part(HfEnc *e, const char *s, size_t n, int first, Mamba2Error *err) {
    if (apply_normalizer(e->m, s, n, &e->a)) return mamba2_fail(err, "out of memory");
    if (!e->m->has_norm_added) return pre_tokenize(e, e->a.p, e->a.n, first, err);
    /* e->a is reused by nested calls: work on a copy. */
    char *copy = dup_bytes(e->a.p, e->a.n);
    if (!copy) return mamba2_fail(err, "out of memory");
    int rc = split_added(e, &e->m->added_norm, copy, e->a.n, first, pre_tokenize, err);
    free(copy);
    return rc;
}

int hf_encode(const Mamba2Tokenizer *t, const char *text, size_t len, int add_special, IdVec *out, Mamba2Error *err) {
    const HfModel *m = t->hf;
    HfEnc e;
    memset(&e, 0, sizeof e);
    e.t = t;
    e.m = m;
    e.out = out;
    int rc = 0;
    for (int i = 0; add_special && rc == 0 && i < m->n_before; i++)
        if (idvec_push(out, m->tmpl[i])) rc = mamba2_fail(err, "out of memory");
    if (rc == 0) rc = split_added(&e, &m->added_raw, text, len, 1, normalized_part, err);
    for (int i = 0; add_special && rc == 0 && i < m->n_after; i++)
        if (idvec_push(out, m->tmpl[m->n_before + i])) rc = mamba2_fail(err, "out of memory");
    free(e.sym);
    free(e.a.p);
    free(e.b.p);
    bpe_work_free(&e.work);
    return rc;
}

/* ---- decoding (the exact decoder chain) ---- */

/** A list of token strings. */
typedef struct {
    ByteBuf *s; /**< the strings */
    size_t n;   /**< number of strings */
    size_t cap; /**< allocated */
} StrList;

static int list_add(StrList *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        ByteBuf *p = realloc(l->s, cap * sizeof *p);
        if (!p) return -1;
        l->s = p;
        l->cap = cap;
    }
    memset(&l->s[l->n], 0, sizeof l->s[l->n]);
    return bytebuf_add(&l->s[l->n++], s, n);
}

static void list_free(StrList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->s[i].p);
    free(l->s);
    memset(l, 0, sizeof *l);
}

/* ByteFallback: runs of "<0xAB>" tokens → their bytes if valid UTF-8, else one U+FFFD per byte. */
static int byte_fallback(StrList *in, StrList *out) {
    ByteBuf run = {0};
    size_t run_tokens = 0;
    int rc = bytebuf_add(&run, "", 0);
    for (size_t i = 0; rc == 0 && i <= in->n; i++) {
        int b = i < in->n ? byte_token(in->s[i].p, in->s[i].n) : -1;
        if (b >= 0) {
            char c = (char)b;
            rc = bytebuf_add(&run, &c, 1);
            run_tokens++;
            continue;
        }
        if (run_tokens) {
            if (utf8_is_valid(run.p, run.n)) {
                rc = list_add(out, run.p, run.n);
            } else {
                for (size_t j = 0; rc == 0 && j < run_tokens; j++) rc = list_add(out, MAMBA2_UTF8_REPLACEMENT, 3);
            }
            run.n = 0;
            run_tokens = 0;
        }
        if (rc == 0 && i < in->n) rc = list_add(out, in->s[i].p, in->s[i].n);
    }
    free(run.p);
    return rc;
}

int hf_decode(const Mamba2Tokenizer *t, const int32_t *ids, size_t n, ByteBuf *out, Mamba2Error *err) {
    const HfModel *m = t->hf;
    StrList cur = {0}, next = {0};
    int rc = 0;
    /* Token strings, special tokens and unknown ids left out. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || t->piece_off[id] == TOK_NO_PIECE || t->skip[id]) continue;
        rc = list_add(&cur, tok_piece(t, id), t->piece_len[id]);
    }
    for (int j = 0; rc == 0 && j < m->n_dec; j++) {
        const HfStep *st = &m->dec[j];
        next.n = 0;
        if (st->kind == STEP_BYTE_FALLBACK) {
            rc = byte_fallback(&cur, &next);
        } else if (st->kind == STEP_FUSE) {
            ByteBuf all = {0};
            rc = bytebuf_add(&all, "", 0);
            for (size_t i = 0; rc == 0 && i < cur.n; i++) rc = bytebuf_add(&all, cur.s[i].p, cur.s[i].n);
            if (rc == 0) rc = list_add(&next, all.p, all.n);
            free(all.p);
        } else {
            for (size_t i = 0; rc == 0 && i < cur.n; i++) {
                const char *s = cur.s[i].p;
                size_t len = cur.s[i].n;
                if (st->kind == STEP_REPLACE) {
                    ByteBuf r = {0};
                    rc = bytebuf_add(&r, "", 0) || replace_all(s, len, st->a, st->alen, st->b, st->blen, &r) ||
                         list_add(&next, r.p, r.n);
                    free(r.p);
                } else { /* Strip: up to `start` copies of the character at the front, `stop` at the back */
                    size_t a = 0, b = len;
                    for (int q = 0; q < st->start && b - a >= st->alen && !memcmp(s + a, st->a, st->alen); q++) a += st->alen;
                    for (int q = 0; q < st->stop && b - a >= st->alen && !memcmp(s + b - st->alen, st->a, st->alen); q++) b -= st->alen;
                    rc = list_add(&next, s + a, b - a);
                }
            }
        }
        for (size_t i = 0; i < cur.n; i++) free(cur.s[i].p);
        cur.n = 0;
        StrList x = cur;
        cur = next;
        next = x;
    }
    /* Concatenate (joined by spaces when there is no decoder at all). */
    for (size_t i = 0; rc == 0 && i < cur.n; i++) {
        if (!m->has_decoder && i > 0) rc = bytebuf_add(out, " ", 1);
        if (rc == 0) rc = bytebuf_add(out, cur.s[i].p, cur.s[i].n);
    }
    list_free(&cur);
    list_free(&next);
    return rc ? mamba2_fail(err, "%s: out of memory while decoding", t->source) : 0;
}
