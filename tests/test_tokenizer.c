/**
 * @file test_tokenizer.c
 * @brief The tokenizers against golden ids made by the reference libraries, and the chat samples.
 *
 * data/tokenizer/make_golden.py (run with Hugging Face `tokenizers` and
 * `sentencepiece`) wrote the texts, the ids every tokenizer of its manifest
 * gives them, and what the reference's decode returns. For every text and
 * tokenizer this checks: every id of encode (without and with BOS), decode,
 * and that the streaming decoder prints the same text in pieces that are
 * always whole UTF-8 characters. Then the six mistral-common chat samples,
 * the streaming of a character split over byte tokens, the refusal of
 * components that are not implemented, and corrupted SentencePiece files.
 */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "tests.h"
#include "tokenizer.h"
#include "utf8.h"

/** The test texts, one escaped text per line (made by make_golden.py). */
#define TEXTS_FILE "data/tokenizer/texts.txt"
/** The tokenizers and their ids files (made by make_golden.py). */
#define MANIFEST_FILE "data/tokenizer/manifest.txt"
/** The Mistral v3 tokenizer files and chat samples. */
#define MISTRAL "data/mistral-v3"
/** At most this many manifest lines. */
#define MAX_ENTRIES 16

/** Bytes of a text or a decoded string. */
typedef struct {
    char *p;  /**< the bytes (NUL-terminated) */
    size_t n; /**< their number */
} Bytes;

/** One line of an ids file. */
typedef struct {
    int32_t *ids;       /**< the reference's ids */
    size_t n;           /**< their number */
    int decode_is_text; /**< "=": the reference's decode gives the text back */
    Bytes decoded;      /**< otherwise what it gives */
} GoldLine;

/** One manifest entry with its ids file, "@" lines resolved. */
typedef struct {
    char tokenizer[512]; /**< the tokenizer file */
    char ids_file[512];  /**< its ids file */
    char base[512];      /**< the ids file "@" refers to, or "-" */
    int step;            /**< line j is text j·step */
    GoldLine *lines;     /**< the lines */
    size_t n_lines;      /**< their number */
    int32_t pre[8];      /**< ids before the text with add_bos */
    int32_t post[8];     /**< ids after the text with add_bos */
    size_t n_pre;        /**< number of pre ids */
    size_t n_post;       /**< number of post ids */
} Entry;

static Bytes *texts;
static size_t n_texts;
static Entry entries[MAX_ENTRIES];
static int n_entries;

/* "\\" → backslash, "\xHH" → byte; everything else as is. */
static Bytes unescape(const char *s, size_t n) {
    Bytes b = {malloc(n + 1), 0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\\') {
            b.p[b.n++] = '\\';
            i++;
        } else if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x') {
            char hex[3] = {s[i + 2], s[i + 3], 0};
            b.p[b.n++] = (char)strtol(hex, NULL, 16);
            i += 3;
        } else {
            b.p[b.n++] = s[i];
        }
    }
    b.p[b.n] = 0;
    return b;
}

/* Split a file's text into lines (the buffer is modified). */
static char **split_lines(char *text, size_t len, size_t *n) {
    size_t cap = 1024;
    char **lines = malloc(cap * sizeof *lines);
    *n = 0;
    for (size_t i = 0; i < len;) {
        char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (*n == cap) lines = realloc(lines, (cap *= 2) * sizeof *lines);
        text[end] = 0;
        lines[(*n)++] = text + i;
        i = end + 1;
    }
    return lines;
}

static size_t parse_ids(const char *s, int32_t *out, size_t cap) {
    size_t n = 0;
    char *end;
    for (;;) {
        while (*s == ' ') s++;
        if (!*s || *s == '\t') break;
        long v = strtol(s, &end, 10);
        if (end == s) break;
        if (n < cap) out[n] = (int32_t)v;
        n++;
        s = end;
    }
    return n;
}

static const Entry *find_entry(const char *ids_file) {
    for (int i = 0; i < n_entries; i++)
        if (!strcmp(entries[i].ids_file, ids_file)) return &entries[i];
    return NULL;
}

static int load_entry(Entry *e) {
    long len;
    Mamba2Error err = {{0}};
    char *text = mamba2_read_file(e->ids_file, &len, &err);
    if (!text) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    size_t n;
    char **lines = split_lines(text, (size_t)len, &n);
    const Entry *base = strcmp(e->base, "-") ? find_entry(e->base) : NULL;
    e->lines = calloc(n + 1, sizeof *e->lines);
    for (size_t i = 0; i < n; i++) {
        char *l = lines[i];
        if (!strncmp(l, "#pre", 4)) {
            e->n_pre = parse_ids(l + 4, e->pre, 8);
            continue;
        }
        if (!strncmp(l, "#post", 5)) {
            e->n_post = parse_ids(l + 5, e->post, 8);
            continue;
        }
        if (l[0] == '#') continue;
        char *tab = strchr(l, '\t');
        if (!tab) continue;
        GoldLine *g = &e->lines[e->n_lines];
        if (l[0] == '@') {
            if (!base || e->n_lines >= base->n_lines) return -1;
            const GoldLine *b = &base->lines[e->n_lines];
            g->n = b->n;
            g->ids = malloc((b->n + 1) * sizeof *g->ids);
            memcpy(g->ids, b->ids, b->n * sizeof *g->ids);
        } else {
            size_t k = parse_ids(l, NULL, 0);
            g->ids = malloc((k + 1) * sizeof *g->ids);
            g->n = parse_ids(l, g->ids, k);
        }
        if (!strcmp(tab + 1, "=")) {
            g->decode_is_text = 1;
        } else {
            g->decoded = unescape(tab + 1, strlen(tab + 1));
        }
        e->n_lines++;
    }
    free(lines);
    free(text);
    return 0;
}

static int suite_init(void) {
    long len;
    Mamba2Error err = {{0}};
    char *text = mamba2_read_file(TEXTS_FILE, &len, &err);
    if (!text) {
        fprintf(stderr, "%s (run the tests from the repository root)\n", err.msg);
        return -1;
    }
    char **lines = split_lines(text, (size_t)len, &n_texts);
    texts = malloc((n_texts + 1) * sizeof *texts);
    for (size_t i = 0; i < n_texts; i++) texts[i] = unescape(lines[i], strlen(lines[i]));
    free(lines);
    free(text);

    char *man = mamba2_read_file(MANIFEST_FILE, &len, &err);
    if (!man) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    size_t n;
    lines = split_lines(man, (size_t)len, &n);
    for (size_t i = 0; i < n && n_entries < MAX_ENTRIES; i++) {
        Entry *e = &entries[n_entries];
        if (lines[i][0] == '#' || !lines[i][0]) continue;
        if (sscanf(lines[i], "%511s %511s %d %511s", e->tokenizer, e->ids_file, &e->step, e->base) != 4 ||
            e->step < 1 || load_entry(e)) {
            fprintf(stderr, "bad manifest line or ids file: %s\n", lines[i]);
            free(lines);
            free(man);
            return -1;
        }
        n_entries++;
    }
    free(lines);
    free(man);
    return 0;
}

static int suite_clean(void) {
    for (size_t i = 0; i < n_texts; i++) free(texts[i].p);
    free(texts);
    for (int i = 0; i < n_entries; i++) {
        for (size_t j = 0; j < entries[i].n_lines; j++) {
            free(entries[i].lines[j].ids);
            free(entries[i].lines[j].decoded.p);
        }
        free(entries[i].lines);
    }
    n_entries = 0;
    return 0;
}

/* Print a few bytes of a text, escaped, for failure messages. */
static void show(const char *what, const char *s, size_t n) {
    printf("\n      %s: \"", what);
    for (size_t i = 0; i < n && i < 120; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F || c == '\\') printf("\\x%02X", c);
        else putchar(c);
    }
    printf("%s\"", n > 120 ? "..." : "");
}

/* a[0..n) == b[0..n) (either may be NULL when n is 0) */
static int same_ids(const int32_t *a, const int32_t *b, size_t n) { return n == 0 || !memcmp(a, b, n * sizeof *a); }

static int contains(const char *s, size_t n, const char *needle, size_t k) {
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, needle, k)) return 1;
    return 0;
}

static void show_ids(const char *what, const int32_t *ids, size_t n) {
    printf("\n      %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++) printf(" %d", (int)ids[i]);
    if (n > 40) printf(" ...");
}

/* Everything about one tokenizer of the manifest. */
static void check_entry(const Entry *e) {
    Mamba2Error err = {{0}};
    Mamba2Tokenizer *t = mamba2_tokenizer_load(e->tokenizer, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    size_t bad_ids = 0, bad_bos = 0, bad_decode = 0, bad_stream = 0, half_chars = 0, n_ids = 0, shown = 0;
    size_t text_back = 0;
    for (size_t j = 0; j < e->n_lines; j++) {
        size_t ti = j * (size_t)e->step;
        CU_ASSERT_FATAL(ti < n_texts);
        const Bytes *x = &texts[ti];
        const GoldLine *g = &e->lines[j];
        int32_t *ids = NULL, *ids_bos = NULL;
        size_t n = 0, nb = 0;
        CU_ASSERT_EQUAL_FATAL(mamba2_tokenizer_encode(t, x->p, x->n, 0, &ids, &n, &err), 0);
        CU_ASSERT_EQUAL_FATAL(mamba2_tokenizer_encode(t, x->p, x->n, 1, &ids_bos, &nb, &err), 0);
        n_ids += g->n;
        if (n != g->n || !same_ids(ids, g->ids, n)) {
            bad_ids++;
            if (shown++ < 3) {
                printf("\n    %s: text %zu differs", e->ids_file, ti);
                show("text", x->p, x->n);
                show_ids("want", g->ids, g->n);
                show_ids("got ", ids, n);
            }
        }
        /* add_bos: the reference's special tokens around the same ids */
        if (nb != e->n_pre + n + e->n_post || !same_ids(ids_bos, e->pre, e->n_pre) ||
            !same_ids(ids_bos + e->n_pre, ids, n) || !same_ids(ids_bos + e->n_pre + n, e->post, e->n_post))
            bad_bos++;

        /* decode of the reference ids: the text itself, or what the reference decodes */
        char *dec = NULL;
        size_t dl = 0;
        CU_ASSERT_EQUAL_FATAL(mamba2_tokenizer_decode(t, g->ids, g->n, &dec, &dl, &err), 0);
        const Bytes *want = g->decode_is_text ? x : &g->decoded;
        text_back += g->decode_is_text;
        if (dl != want->n || memcmp(dec, want->p, dl)) {
            bad_decode++;
            if (shown++ < 3) {
                printf("\n    %s: decode of text %zu differs", e->ids_file, ti);
                show("want", want->p, want->n);
                show("got ", dec, dl);
            }
        }

        /* streaming: whole characters only, and the same text (HF: unless invalid byte runs) */
        Mamba2Detokenizer d;
        CU_ASSERT_EQUAL_FATAL(mamba2_detok_init(&d, t, &err), 0);
        char *stream = malloc(dl + 4 * g->n + 16);
        size_t sl = 0;
        for (size_t i = 0; i <= g->n; i++) {
            const char *s;
            size_t k;
            if (i < g->n) CU_ASSERT_EQUAL_FATAL(mamba2_detok_push(&d, g->ids[i], &s, &k, &err), 0);
            if (i == g->n) mamba2_detok_finish(&d, &s, &k);
            if (!utf8_is_valid(s, k)) half_chars++;
            memcpy(stream + sl, s, k);
            sl += k;
        }
        mamba2_detok_free(&d);
        int same = sl == dl && !memcmp(stream, dec, dl);
        if (!same && !(mamba2_tokenizer_is_hf(t) && contains(dec, dl, MAMBA2_UTF8_REPLACEMENT, 3))) {
            bad_stream++;
            if (shown++ < 3) {
                printf("\n    %s: streamed text %zu differs", e->ids_file, ti);
                show("decode", dec, dl);
                show("stream", stream, sl);
            }
        }
        free(stream);
        free(dec);
        free(ids);
        free(ids_bos);
    }
    printf("\n    %-38s %4zu texts, %6zu ids: %zu differ; with BOS %zu; decode %zu (%zu give the text back); "
           "stream %zu, half characters %zu",
           e->tokenizer, e->n_lines, n_ids, bad_ids, bad_bos, bad_decode, text_back, bad_stream, half_chars);
    CU_ASSERT_EQUAL(bad_ids, 0);
    CU_ASSERT_EQUAL(bad_bos, 0);
    CU_ASSERT_EQUAL(bad_decode, 0);
    CU_ASSERT_EQUAL(bad_stream, 0);
    CU_ASSERT_EQUAL(half_chars, 0);
    mamba2_tokenizer_free(t);
}

static const Entry *entry_for(const char *tokenizer) {
    for (int i = 0; i < n_entries; i++)
        if (!strcmp(entries[i].tokenizer, tokenizer)) return &entries[i];
    return NULL;
}

static void test_golden_hf(void) {
    const Entry *e = entry_for(MISTRAL "/tokenizer.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT(e->n_lines >= 2000);
    check_entry(e);
}

static void test_golden_hf_legacy(void) {
    const Entry *e = entry_for(MISTRAL "/tokenizer_legacy.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT(e->n_lines >= 2000);
    check_entry(e);
}

static void test_golden_spm(void) {
    const Entry *e = entry_for(MISTRAL "/tokenizer.model.v3");
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT(e->n_lines >= 2000);
    check_entry(e);
}

static void test_golden_tiny(void) {
    int n = 0;
    for (int i = 0; i < n_entries; i++)
        if (strstr(entries[i].tokenizer, "/tiny/")) {
            check_entry(&entries[i]);
            n++;
        }
    CU_ASSERT(n >= 5);
}

/* ---- the mistral-common chat samples ---- */

static const char *const SAMPLES[] = {"get_weather_full", "get_weather_no_history", "get_weather_no_system_prompt",
                                      "no_tools", "parallel_calls", "several_calls"};

/* text_v3.txt shows the pieces: byte pieces as "<0xAB>". Put the bytes back. */
static Bytes unrender_bytes(const char *s, size_t n) {
    Bytes b = {malloc(n + 1), 0};
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (i + 6 <= n && !memcmp(s + i, "<0x", 3) && s[i + 5] == '>' && sscanf(s + i + 3, "%2X", &v) == 1) {
            b.p[b.n++] = (char)v;
            i += 5;
        } else {
            b.p[b.n++] = s[i];
        }
    }
    b.p[b.n] = 0;
    return b;
}

/* The longest control token (a piece of type CONTROL) at s, its id in *id; 0 when none. */
static size_t control_at(const Mamba2Tokenizer *t, const char *s, size_t n, int32_t *id) {
    size_t best = 0;
    if (s[0] != '<' && s[0] != '[') return 0;
    for (int32_t i = 0; i < mamba2_tokenizer_vocab_size(t); i++) {
        size_t len;
        const char *p = mamba2_tokenizer_piece(t, i, &len);
        if (p && len > best && len <= n && mamba2_tokenizer_token_type(t, i) == MAMBA2_TOKEN_CONTROL &&
            !memcmp(p, s, len)) {
            best = len;
            *id = i;
        }
    }
    return best;
}

/*
 * mistral-common's ids: [1], then per turn control ids around encode(content). In the rendered text a
 * turn's content shows as "▁" + content with spaces as "▁": turn it back and encode it alone.
 */
static size_t encode_by_turns(const Mamba2Tokenizer *t, const Bytes *x, int32_t *out, size_t cap) {
    size_t n = 0, i = 0;
    Mamba2Error err = {{0}};
    while (i < x->n) {
        int32_t id;
        size_t k = control_at(t, x->p + i, x->n - i, &id);
        if (k) {
            if (n < cap) out[n] = id;
            n++;
            i += k;
            continue;
        }
        size_t j = i;
        while (j < x->n && !control_at(t, x->p + j, x->n - j, &id)) j++;
        Bytes c = {malloc(j - i + 1), 0};
        for (size_t q = i; q < j;) {
            if (j - q >= 3 && !memcmp(x->p + q, "\xE2\x96\x81", 3)) {
                c.p[c.n++] = ' ';
                q += 3;
            } else {
                c.p[c.n++] = x->p[q++];
            }
        }
        CU_ASSERT(c.n > 0 && c.p[0] == ' ');
        int32_t *ids;
        size_t m;
        CU_ASSERT_EQUAL_FATAL(mamba2_tokenizer_encode(t, c.p + 1, c.n - 1, 0, &ids, &m, &err), 0);
        for (size_t q = 0; q < m; q++, n++)
            if (n < cap) out[n] = ids[q];
        free(ids);
        free(c.p);
        i = j;
    }
    return n;
}

static void test_chat_samples(void) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_legacy.json", "tokenizer.model.v3"};
    Mamba2Error err = {{0}};
    for (size_t f = 0; f < 3; f++) {
        char path[512];
        snprintf(path, sizeof path, MISTRAL "/%s", files[f]);
        Mamba2Tokenizer *t = mamba2_tokenizer_load(path, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        for (size_t s = 0; s < sizeof SAMPLES / sizeof *SAMPLES; s++) {
            char tp[512], ip[512];
            long tl, il;
            snprintf(tp, sizeof tp, MISTRAL "/samples/%s/text_v3.txt", SAMPLES[s]);
            snprintf(ip, sizeof ip, MISTRAL "/samples/%s/tokens_v3.json", SAMPLES[s]);
            char *text = mamba2_read_file(tp, &tl, &err), *json = mamba2_read_file(ip, &il, &err);
            CU_ASSERT_FATAL(text && json);
            char *p = strstr(json, "[");
            int32_t *want = calloc(20000, sizeof *want);
            size_t nw = 0;
            for (char *q = p + 1; *q && *q != ']';) {
                char *end;
                long v = strtol(q, &end, 10);
                if (end == q) {
                    q++;
                    continue;
                }
                want[nw++] = (int32_t)v;
                q = end;
            }
            Bytes x = unrender_bytes(text, (size_t)tl);
            int32_t *got = calloc(20000, sizeof *got);
            size_t ng = encode_by_turns(t, &x, got, 20000);
            int ok_turns = ng == nw && same_ids(got, want, nw);
            CU_ASSERT(ok_turns);
            /* tokenizer.json matches control tokens inside text: the whole rendered text at once */
            int ok_whole = -1;
            if (f == 0) {
                int32_t *ids;
                size_t n;
                CU_ASSERT_EQUAL_FATAL(mamba2_tokenizer_encode(t, x.p, x.n, 0, &ids, &n, &err), 0);
                ok_whole = n == nw && same_ids(ids, want, nw);
                CU_ASSERT(ok_whole);
                free(ids);
            }
            printf("\n    %-22s %-30s %4zu ids: by turns %s%s", files[f], SAMPLES[s], nw, ok_turns ? "equal" : "DIFFER",
                   ok_whole < 0 ? "" : ok_whole ? ", whole text equal" : ", whole text DIFFERS");
            free(x.p);
            free(got);
            free(want);
            free(text);
            free(json);
        }
        mamba2_tokenizer_free(t);
    }
}

/* ---- loading, ids, single tokens ---- */

static void test_load_and_ids(void) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_legacy.json", "tokenizer.model.v3"};
    Mamba2Error err = {{0}};
    Mamba2Tokenizer *t = mamba2_tokenizer_load(MISTRAL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    const char *src = mamba2_tokenizer_source(t);
    CU_ASSERT(strlen(src) >= 14 && !strcmp(src + strlen(src) - 14, "tokenizer.json"));
    mamba2_tokenizer_free(t);
    for (size_t f = 0; f < 3; f++) {
        char path[512];
        size_t len;
        snprintf(path, sizeof path, MISTRAL "/%s", files[f]);
        t = mamba2_tokenizer_load(path, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_EQUAL(mamba2_tokenizer_is_hf(t), f < 2);
        CU_ASSERT_EQUAL(mamba2_tokenizer_vocab_size(t), 32768);
        CU_ASSERT_EQUAL(mamba2_tokenizer_bos(t), 1);
        CU_ASSERT_EQUAL(mamba2_tokenizer_eos(t), 2);
        CU_ASSERT_EQUAL(mamba2_tokenizer_token_type(t, 0), MAMBA2_TOKEN_UNKNOWN);
        CU_ASSERT_EQUAL(mamba2_tokenizer_token_type(t, 3), MAMBA2_TOKEN_CONTROL);
        CU_ASSERT_EQUAL(mamba2_tokenizer_token_type(t, 770), MAMBA2_TOKEN_USER);
        CU_ASSERT_EQUAL(mamba2_tokenizer_token_type(t, 781), MAMBA2_TOKEN_BYTE);
        CU_ASSERT_EQUAL(mamba2_tokenizer_token_type(t, 1040), MAMBA2_TOKEN_NORMAL);
        CU_ASSERT_EQUAL(mamba2_tokenizer_token_type(t, 32768), MAMBA2_TOKEN_INVALID);
        CU_ASSERT_EQUAL(mamba2_tokenizer_token_type(t, -1), MAMBA2_TOKEN_INVALID);
        CU_ASSERT_EQUAL(mamba2_tokenizer_piece_id(t, "[INST]", 6), 3);
        CU_ASSERT_EQUAL(mamba2_tokenizer_piece_id(t, "\xE2\x96\x81the", 6), 1040);
        const char *b = mamba2_tokenizer_token_bytes(t, 1040, &len);
        CU_ASSERT(b && len == 4 && !memcmp(b, " the", 4));
        b = mamba2_tokenizer_token_bytes(t, 781, &len);
        CU_ASSERT(b && len == 1 && b[0] == '\n');
        b = mamba2_tokenizer_token_bytes(t, 3, &len);
        CU_ASSERT(b && len == 0);
        /* empty text: nothing, or BOS alone */
        int32_t *ids;
        size_t n;
        CU_ASSERT_EQUAL(mamba2_tokenizer_encode(t, "", 0, 0, &ids, &n, &err), 0);
        CU_ASSERT_EQUAL(n, 0);
        free(ids);
        CU_ASSERT_EQUAL(mamba2_tokenizer_encode(t, "", 0, 1, &ids, &n, &err), 0);
        CU_ASSERT(n == 1 && ids[0] == 1);
        free(ids);
        mamba2_tokenizer_free(t);
    }
    CU_ASSERT_PTR_NULL(mamba2_tokenizer_load("data/no/such/dir", &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "data/no/such/dir"));
    CU_ASSERT_PTR_NULL(mamba2_tokenizer_load("tests", &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no tokenizer.json"));
}

/* Push ids one by one; return what each push printed, concatenated, and check piece lengths. */
static void stream_expect(const Mamba2Tokenizer *t, const int32_t *ids, size_t n, const size_t *lens, const char *want) {
    Mamba2Detokenizer d;
    Mamba2Error err = {{0}};
    char out[256];
    size_t total = 0;
    CU_ASSERT_EQUAL_FATAL(mamba2_detok_init(&d, t, &err), 0);
    for (size_t i = 0; i <= n; i++) {
        const char *s;
        size_t k;
        if (i < n) CU_ASSERT_EQUAL(mamba2_detok_push(&d, ids[i], &s, &k, &err), 0);
        if (i == n) mamba2_detok_finish(&d, &s, &k);
        if (lens) CU_ASSERT_EQUAL(k, lens[i]);
        CU_ASSERT(utf8_is_valid(s, k));
        memcpy(out + total, s, k);
        total += k;
    }
    CU_ASSERT(total == strlen(want) && !memcmp(out, want, total));
    mamba2_detok_free(&d);
}

static void test_streaming_split_characters(void) {
    static const char *const files[] = {"tokenizer.json", "tokenizer.model.v3"};
    Mamba2Error err = {{0}};
    for (size_t f = 0; f < 2; f++) {
        char path[512];
        snprintf(path, sizeof path, MISTRAL "/%s", files[f]);
        Mamba2Tokenizer *t = mamba2_tokenizer_load(path, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        int32_t B = 771; /* <0x00> */
        /* "▁the" then "€" = E2 82 AC as three byte tokens: nothing printed until the character is whole */
        int32_t euro[] = {1040, B + 0xE2, B + 0x82, B + 0xAC, 1040};
        size_t euro_lens[] = {3, 0, 0, 3, 4, 0};
        stream_expect(t, euro, 5, euro_lens, "the\xE2\x82\xAC the");
        /* a 4-byte emoji 😀 F0 9F 98 80 */
        int32_t emoji[] = {B + 0xF0, B + 0x9F, B + 0x98, B + 0x80};
        size_t emoji_lens[] = {0, 0, 0, 4, 0};
        stream_expect(t, emoji, 4, emoji_lens, "\xF0\x9F\x98\x80");
        /* an unfinished character at the end: U+FFFD per byte when the stream ends */
        int32_t cut[] = {1040, B + 0xF0, B + 0x9F};
        size_t cut_lens[] = {3, 0, 0, 6};
        stream_expect(t, cut, 3, cut_lens, "the\xEF\xBF\xBD\xEF\xBF\xBD");
        /* a byte that cannot continue the character: printed as U+FFFD at once */
        int32_t bad[] = {B + 0xE2, B + 0x41};
        size_t bad_lens[] = {0, 4, 0};
        stream_expect(t, bad, 2, bad_lens, "\xEF\xBF\xBD" "A");
        /* control tokens print nothing */
        int32_t ctl[] = {1, 3, 1040, 4, 2};
        stream_expect(t, ctl, 5, NULL, "the");
        mamba2_tokenizer_free(t);
    }
}

/* ---- refusing what is not implemented ---- */

static int load_json_fails_with(const char *dir, const char *json, const char *needle) {
    char path[4200];
    Mamba2Error err = {{0}};
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fputs(json, f);
    fclose(f);
    Mamba2Tokenizer *t = mamba2_tokenizer_load(path, &err);
    int ok = t == NULL && strstr(err.msg, needle) != NULL;
    if (!ok) printf("\n    expected a failure naming '%s', got: %s", needle, t ? "(loaded)" : err.msg);
    mamba2_tokenizer_free(t);
    return ok;
}

/** The smallest valid BPE model: a, b and their merge ab. */
#define MODEL_OK "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"

static void test_refusals(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    CU_ASSERT(load_json_fails_with(dir, "{\"normalizer\":{\"type\":\"NFKC\"}," MODEL_OK "}", "normalizer 'NFKC'"));
    CU_ASSERT(load_json_fails_with(dir, "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"}," MODEL_OK "}",
                                   "pre-tokenizer 'ByteLevel'"));
    CU_ASSERT(load_json_fails_with(dir, "{\"decoder\":{\"type\":\"ByteLevel\"}," MODEL_OK "}", "decoder 'ByteLevel'"));
    CU_ASSERT(load_json_fails_with(dir, "{\"post_processor\":{\"type\":\"RobertaProcessing\"}," MODEL_OK "}",
                                   "post-processor 'RobertaProcessing'"));
    CU_ASSERT(load_json_fails_with(dir, "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "model 'WordPiece'"));
    CU_ASSERT(load_json_fails_with(dir,
                                   "{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},"
                                   "\"content\":\" \"}," MODEL_OK "}",
                                   "Regex"));
    CU_ASSERT(load_json_fails_with(dir,
                                   "{\"added_tokens\":[{\"id\":3,\"content\":\"x\",\"single_word\":true,"
                                   "\"special\":true}]," MODEL_OK "}",
                                   "single_word"));
    CU_ASSERT(load_json_fails_with(dir,
                                   "{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{\"a\":0},\"merges\":[]}}",
                                   "dropout"));
    CU_ASSERT(load_json_fails_with(dir,
                                   "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a c\"]}}",
                                   "missing from the vocabulary"));
    CU_ASSERT(load_json_fails_with(dir, "{\"model\": [1, 2", "invalid JSON"));
    /* the smallest valid file loads, and "a b" merges work */
    char path[4200];
    Mamba2Error err = {{0}};
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("{" MODEL_OK "}", f);
    fclose(f);
    Mamba2Tokenizer *t = mamba2_tokenizer_load(dir, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    int32_t *ids;
    size_t n;
    CU_ASSERT_EQUAL(mamba2_tokenizer_encode(t, "abba", 4, 1, &ids, &n, &err), 0);
    CU_ASSERT(n == 3 && ids[0] == 2 && ids[1] == 1 && ids[2] == 0);
    free(ids);
    /* no unk token and a character outside the vocabulary: an error, not a crash */
    CU_ASSERT_NOT_EQUAL(mamba2_tokenizer_encode(t, "abc", 3, 0, &ids, &n, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unk_token"));
    mamba2_tokenizer_free(t);
    test_rmtree(dir);
    free(dir);
}

/* A corrupted or truncated SentencePiece file is refused with a message, never read out of bounds. */
static void test_corrupt_spm(void) {
    long len;
    Mamba2Error err = {{0}};
    char *orig = mamba2_read_file("data/tokenizer/tiny/tiny_spm_b.model", &len, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
    char *dir = test_tmpdir(), path[4200];
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    char *buf = malloc((size_t)len);
    int loaded = 0, refused = 0;
    for (int trial = 0; trial < 400; trial++) {
        long n = len;
        memcpy(buf, orig, (size_t)len);
        if (trial % 2) {
            n = (long)(test_uniform() * (double)len); /* truncated */
        } else {
            for (int k = 0; k < 1 + trial % 7; k++) buf[(long)(test_uniform() * (double)len)] = (char)(test_uniform() * 256);
        }
        FILE *f = fopen(path, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fwrite(buf, 1, (size_t)n, f);
        fclose(f);
        Mamba2Tokenizer *t = mamba2_tokenizer_load(path, &err);
        if (t) {
            int32_t *ids;
            size_t k;
            if (mamba2_tokenizer_encode(t, "Hello, world! \xE2\x82\xAC\xFF", 18, 1, &ids, &k, &err) == 0) free(ids);
            loaded++;
        } else {
            CU_ASSERT(strlen(err.msg) > 0);
            refused++;
        }
        mamba2_tokenizer_free(t);
    }
    printf("\n    400 corrupted files: %d loaded, %d refused", loaded, refused);
    free(buf);
    free(orig);
    test_rmtree(dir);
    free(dir);
}

int register_tokenizer_tests(void) {
    CU_pSuite s = CU_add_suite("tokenizer", suite_init, suite_clean);
    if (!s) return -1;
    if (!CU_add_test(s, "tokenizer.json: golden ids of >= 2000 texts", test_golden_hf) ||
        !CU_add_test(s, "tokenizer_legacy.json: golden ids of >= 2000 texts", test_golden_hf_legacy) ||
        !CU_add_test(s, "tokenizer.model.v3: golden ids of >= 2000 texts", test_golden_spm) ||
        !CU_add_test(s, "tiny tokenizers: the other options", test_golden_tiny) ||
        !CU_add_test(s, "the six mistral-common chat samples", test_chat_samples) ||
        !CU_add_test(s, "loading, special ids, token types, empty text", test_load_and_ids) ||
        !CU_add_test(s, "streaming never prints half a character", test_streaming_split_characters) ||
        !CU_add_test(s, "unimplemented components are refused by name", test_refusals) ||
        !CU_add_test(s, "corrupted SentencePiece files", test_corrupt_spm))
        return -1;
    return 0;
}
