/**
 * @file test_malformed.c
 * @brief Hostile input: every malformed or malicious file a model directory can hold is refused with
 *        a message that names the file and the problem (and, for the program, a non-zero exit and no
 *        output file left behind); a batch or context that does not fit is refused up front; every
 *        input the fuzzers found and the committed fuzz corpus replay clean.
 *
 * The cases already in test_checkpoint.c (missing tensor, wrong shape, truncated file, malformed
 * JSON, unknown dtype) and test_model.c (state of another d_state, truncated state) are not
 * repeated here.
 */
#include <CUnit/CUnit.h>
#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "backend.h"
#include "cli.h"
#include "fuzz/targets.h"
#include "model.h"
#include "resources.h"
#include "state.h"
#include "tests.h"
#include "tokenizer.h"

/* ------------------------------------------------------------ helpers */

/* Check that msg contains every needle (NULL-terminated list); print what is missing. */
static int has_all(const char *msg, const char *const *needles) {
    int ok = 1;
    for (int i = 0; needles[i]; i++)
        if (!strstr(msg, needles[i])) {
            printf("\n    message: %s\n    lacks:   %s", msg, needles[i]);
            ok = 0;
        }
    return ok;
}
#define EXPECT_MSG(msg, ...)                                                                                      \
    do {                                                                                                          \
        const char *const needles_[] = {__VA_ARGS__, NULL};                                                       \
        CU_ASSERT(has_all((msg), needles_));                                                                      \
    } while (0)

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* A safetensors file: the 8-byte length hlen (true or not), the header text, then data_len zero bytes. */
static int write_st_raw(const char *path, uint64_t hlen, const char *header, size_t data_len) {
    size_t n = strlen(header);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hlen >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, n, f) == n;
    for (size_t i = 0; ok && i < data_len; i++) ok = fputc(0, f) != EOF;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* As safetensors writers do, the header is padded with spaces to a multiple of 8 bytes (so that the
 * data section is aligned). */
static int write_st(const char *path, const char *header, size_t data_len) {
    size_t n = strlen(header);
    char *padded = malloc(n + 8);
    memcpy(padded, header, n);
    while (n % 8) padded[n++] = ' ';
    padded[n] = 0;
    int rc = write_st_raw(path, n, padded, data_len);
    free(padded);
    return rc;
}

/* Open a safetensors file made of header + data_len bytes; it must be refused with every needle
 * and the path in the message. */
static void expect_st_error(const char *header, size_t data_len, const char *n1, const char *n2) {
    char *dir = test_tmpdir(), path[4200];
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(write_st(path, header, data_len), 0);
    SafetensorsFile f;
    Mamba2Error e = {{0}};
    int rc = safetensors_open(path, &f, &e);
    CU_ASSERT_NOT_EQUAL(rc, 0);
    if (!rc) {
        printf("\n    accepted: %s", header);
        safetensors_close(&f);
    } else {
        EXPECT_MSG(e.msg, path, n1, n2 ? n2 : n1);
    }
    test_rmtree(dir);
    free(dir);
}

/* Run `ENV PROGRAM ARGS`: the exit status, stderr in msg. */
static int run_cli(const char *env, const char *args, char *msg, size_t cap) {
    return test_run_program(env, args, NULL, 0, msg, cap);
}

/* The temporaries left in dir: the program's outputs go through DIR/.NAME.XXXXXX (cli/output_file.c),
 * the library's state files through PATH.XXXXXX (model/state.c), both made by mkstemp. A name that is
 * hidden, or whose last extension is six letters or digits, is one of them; 0 means nothing
 * half-written was left behind. */
static int count_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *name = e->d_name, *dot = strrchr(name, '.');
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        int suffix6 = dot && dot != name && strlen(dot + 1) == 6;
        for (const char *c = dot ? dot + 1 : ""; suffix6 && *c; c++)
            if (!isalnum((unsigned char)*c)) suffix6 = 0;
        if (name[0] == '.' || suffix6 || strstr(name, ".tmp")) n++;
    }
    if (d) closedir(d);
    return n;
}

static int exists(const char *dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------ safetensors headers */

#define ENTRY(name, dtype, shape, b, e) "\"" name "\": {\"dtype\": \"" dtype "\", \"shape\": " shape ", \"data_offsets\": [" b ", " e "]}"

static void test_st_header_length(void) {
    /* The 8-byte length claims more header than the file holds: one byte more, and 2^64 - 1 (which
     * must not wrap around when added to anything). */
    const char *h = "{" ENTRY("a", "F32", "[2]", "0", "8") "}";
    uint64_t lies[] = {strlen(h) + 8 + 1, UINT64_MAX, (uint64_t)1 << 63};
    for (int i = 0; i < 3; i++) {
        char *dir = test_tmpdir(), path[4200];
        snprintf(path, sizeof path, "%s/x.safetensors", dir);
        CU_ASSERT_EQUAL_FATAL(write_st_raw(path, lies[i], h, 8), 0);
        SafetensorsFile f;
        Mamba2Error e = {{0}};
        CU_ASSERT_NOT_EQUAL(safetensors_open(path, &f, &e), 0);
        EXPECT_MSG(e.msg, path, "header length", "exceeds the file");
        test_rmtree(dir);
        free(dir);
    }
}

static void test_st_offsets(void) {
    /* past the end of the data section */
    expect_st_error("{" ENTRY("a", "F32", "[2]", "0", "8") ", " ENTRY("b", "F32", "[2]", "8", "16") "}", 12,
                    "tensor 'b'", "data ends at byte 16");
    /* overlapping: b starts inside a */
    expect_st_error("{" ENTRY("a", "F32", "[4]", "0", "16") ", " ENTRY("b", "F32", "[2]", "8", "16") "}", 16,
                    "overlap", "'a'");
    /* one inside the other */
    expect_st_error("{" ENTRY("a", "F32", "[8]", "0", "32") ", " ENTRY("b", "F32", "[2]", "8", "16") "}", 32,
                    "overlap", NULL);
    /* begin after end, negative, not integers */
    expect_st_error("{" ENTRY("a", "F32", "[0]", "8", "0") "}", 8, "tensor 'a'", "begin <= end");
    expect_st_error("{" ENTRY("a", "F32", "[2]", "-8", "0") "}", 8, "tensor 'a'", "data_offsets");
    expect_st_error("{" ENTRY("a", "F32", "[2]", "0.5", "8") "}", 8, "tensor 'a'", "data_offsets");
    expect_st_error("{" ENTRY("a", "F32", "[2]", "0", "\"8\"") "}", 8, "tensor 'a'", "data_offsets");
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8, "tensor 'a'",
                    "data_offsets");
    expect_st_error("{" ENTRY("a", "F32", "[2]", "0", "18446744073709551615") "}", 8, "tensor 'a'", "data ends");
    /* misaligned float32 */
    expect_st_error("{" ENTRY("h", "F16", "[1]", "0", "2") ", " ENTRY("a", "F32", "[1]", "2", "6") "}", 6, "tensor 'a'", "not aligned");
}

static void test_st_sizes(void) {
    /* data length != dtype size x shape */
    expect_st_error("{" ENTRY("a", "F32", "[2, 3]", "0", "20") "}", 20, "tensor 'a'",
                    "F32 of shape [2, 3] needs 24 bytes but data_offsets span 20");
    expect_st_error("{" ENTRY("a", "BF16", "[5]", "0", "20") "}", 20, "tensor 'a'", "needs 10 bytes");
    /* shapes whose products overflow 64 bits: the element count, then the size in bytes */
    expect_st_error("{" ENTRY("a", "F32", "[1099511627776, 1099511627776]", "0", "4") "}", 4, "tensor 'a'",
                    "element count overflows 64 bits");
    expect_st_error("{" ENTRY("a", "F32", "[2147483648, 2147483648]", "0", "4") "}", 4, "tensor 'a'",
                    "size in bytes overflows 64 bits");
    /* dimensions that are negative, huge, fractional or not numbers; too many of them */
    const char *bad_dims[] = {"[-1]", "[2199023255552]", "[1.5]", "[\"4\"]", "[null]", "[9223372036854775807]"};
    for (size_t i = 0; i < sizeof bad_dims / sizeof *bad_dims; i++) {
        char h[256];
        snprintf(h, sizeof h, "{\"a\": {\"dtype\": \"F32\", \"shape\": %s, \"data_offsets\": [0, 4]}}", bad_dims[i]);
        expect_st_error(h, 4, "tensor 'a'", "not an integer in [0, 2^40]");
    }
    expect_st_error("{" ENTRY("a", "F32", "[1, 1, 1, 1, 1]", "0", "4") "}", 4, "tensor 'a'", "5 dimensions");
}

static void test_st_structure(void) {
    expect_st_error("{\"a\": 3}", 0, "header entry for tensor 'a'", "needs \"dtype\"");
    expect_st_error("{\"a\": {\"dtype\": 7, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "tensor 'a'", "dtype");
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", 4, "tensor 'a'", "shape");
    expect_st_error("[1, 2, 3]", 0, "header is not a valid JSON object", NULL);
    expect_st_error("{\"a\": {\"dtype\": \"F32\"", 0, "header is not a valid JSON object", NULL);
    expect_st_error("\x01\x02garbage", 0, "header is not a valid JSON object", NULL);
    /* issue #21: the format forbids these, they were accepted */
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}xyz", 4,
                    "3 bytes after the header's JSON object", NULL);
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                    "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}", 12,
                    "4 unused bytes in the data section before tensor 'b'", "no holes");
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
                    "4 unused bytes in the data section before tensor 'a'", NULL);
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 16,
                    "12 unused bytes after the last tensor", NULL);
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}", 0,
                    "ends before the JSON does: truncated?", NULL);
}

/* ------------------------------------------------------------ config.json */

#define BASE "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": 100"

static void expect_config(const char *json, const char *n1, const char *n2) {
    Mamba2Config c;
    Mamba2Error e = {{0}};
    int rc = mamba2_config_parse(json, "dir/config.json", &c, &e);
    CU_ASSERT_NOT_EQUAL(rc, 0);
    if (!rc) printf("\n    accepted: %s", json);
    else EXPECT_MSG(e.msg, "dir/config.json", n1, n2 ? n2 : n1);
}

static void test_config_bad_counts(void) {
    /* negative, zero and huge dimensions */
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": -1, \"vocab_size\": 100}", "num_hidden_layers", "-1");
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": 0, \"vocab_size\": 100}", "num_hidden_layers", NULL);
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": 0}", "vocab_size", NULL);
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": 2147483648}", "vocab_size", NULL);
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": -2147483649}", "vocab_size", NULL);
    expect_config("{\"hidden_size\": 9223372036854775807, \"num_hidden_layers\": 2, \"vocab_size\": 10}", "hidden_size", NULL);
    expect_config("{" BASE ", \"state_size\": -8}", "state_size", NULL);
    expect_config("{" BASE ", \"n_groups\": 0}", "n_groups", NULL);
    expect_config("{" BASE ", \"head_dim\": -64}", "head_dim", NULL);
    expect_config("{" BASE ", \"conv_kernel\": 0}", "conv_kernel", NULL);
    expect_config("{" BASE ", \"chunk_size\": 0}", "chunk_size", NULL);
    expect_config("{" BASE ", \"expand\": -2}", "expand", NULL);
    expect_config("{" BASE ", \"num_heads\": -2}", "num_heads", NULL);
    expect_config("{" BASE ", \"num_hidden_layers\": 1e18}", "num_hidden_layers", NULL);
    /* NaN and Infinity where a count is expected, in both spellings; fractions, strings, booleans */
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": Infinity, \"vocab_size\": 10}", "num_hidden_layers", NULL);
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": -Infinity, \"vocab_size\": 10}", "num_hidden_layers", NULL);
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": NaN}", "vocab_size", NULL);
    expect_config("{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": {\"__float__\": \"NaN\"}}", "vocab_size", NULL);
    expect_config("{\"hidden_size\": {\"__float__\": \"Infinity\"}, \"num_hidden_layers\": 2, \"vocab_size\": 10}", "hidden_size", NULL);
    expect_config("{" BASE ", \"state_size\": {\"__float__\": \"1e400\"}}", "state_size", NULL);
    expect_config("{" BASE ", \"head_dim\": 7.5}", "head_dim", NULL);
    expect_config("{" BASE ", \"n_groups\": \"2\"}", "n_groups", NULL);
    expect_config("{" BASE ", \"conv_kernel\": true}", "conv_kernel", NULL);
    expect_config("{" BASE ", \"chunk_size\": [256]}", "chunk_size", NULL);
    /* NaN / Infinity where a real number is expected */
    expect_config("{" BASE ", \"layer_norm_epsilon\": NaN}", "layer_norm_epsilon", NULL);
    expect_config("{" BASE ", \"layer_norm_epsilon\": Infinity}", "layer_norm_epsilon", NULL);
    expect_config("{" BASE ", \"layer_norm_epsilon\": 0}", "layer_norm_epsilon", NULL);
    expect_config("{" BASE ", \"time_step_limit\": [NaN, 1]}", "time_step_limit", NULL);
    expect_config("{" BASE ", \"time_step_limit\": [0, {\"__float__\": \"NaN\"}]}", "time_step_limit", NULL);
    expect_config("{" BASE ", \"time_step_limit\": [-1, 1]}", "time_step_limit", NULL);
    expect_config("{" BASE ", \"time_step_limit\": [0]}", "time_step_limit", NULL);
    expect_config("{" BASE ", \"time_step_limit\": \"inf\"}", "time_step_limit", NULL);
    /* fields in range whose products are not: d_inner, G·N, and the parameter count (which used to
     * overflow a 64-bit integer: 16777216 · 100000 layers) */
    expect_config("{\"hidden_size\": 16777216, \"num_hidden_layers\": 2, \"vocab_size\": 10, \"expand\": 2}",
                  "expand * hidden_size", "too large");
    expect_config("{\"hidden_size\": 4096, \"num_hidden_layers\": 2, \"vocab_size\": 10, \"head_dim\": 1, "
                  "\"n_groups\": 8192, \"state_size\": 65536}", "n_groups * state_size", "too large");
    expect_config("{\"hidden_size\": 16777216, \"num_hidden_layers\": 100000, \"vocab_size\": 16777216, "
                  "\"expand\": 1}", "parameters", "too large");
    expect_config("{\"hidden_size\": 4096, \"num_hidden_layers\": 100000, \"vocab_size\": 32768, \"expand\": 1024, "
                  "\"head_dim\": 4096}", "parameters", "too large");
    /* not an object, nested too deep, empty */
    expect_config("\"config\"", "object", NULL);
    expect_config("", "malformed JSON", NULL);
    char deep[400];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = 0;
    expect_config(deep, "malformed JSON", NULL);
}

/* ------------------------------------------------------------ checkpoints */

static char *tiny_dir(const TinyModelSpec *s) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(dir, s), 0);
    return dir;
}

static void expect_load(const char *dir, const char *n1, const char *n2, const char *n3) {
    Mamba2Model m;
    Mamba2Error e = {{0}};
    int rc = mamba2_model_load(dir, &m, &e);
    CU_ASSERT_NOT_EQUAL(rc, 0);
    if (!rc) mamba2_model_free(&m);
    else EXPECT_MSG(e.msg, n1, n2, n3);
}

/* The index lists every tensor in model.safetensors except one, which it puts in extra.safetensors. */
static void write_index(const char *dir, const char *moved, const char *extra) {
    static const char *names[] = {"backbone.embeddings.weight", "backbone.norm_f.weight", "lm_head.weight"};
    char path[4200], text[4096];
    int n = snprintf(text, sizeof text, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < 3; i++)
        n += snprintf(text + n, sizeof text - n, "%s\"%s\": \"%s\"", i ? ", " : "", names[i],
                      !strcmp(names[i], moved) ? extra : "model.safetensors");
    snprintf(text + n, sizeof text - n, "}}");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    CU_ASSERT_EQUAL(write_bytes(path, text, strlen(text)), 0);
}

static void test_duplicate_tensors(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    char *dir = tiny_dir(&s), path[4200];
    /* a second shard holding backbone.norm_f.weight again */
    snprintf(path, sizeof path, "%s/extra.safetensors", dir);
    CU_ASSERT_EQUAL(write_st(path, "{" ENTRY("backbone.norm_f.weight", "F32", "[16]", "0", "64") "}", 64), 0);
    write_index(dir, "backbone.norm_f.weight", "extra.safetensors");
    expect_load(dir, "'backbone.norm_f.weight' appears twice", "model.safetensors", "extra.safetensors");
    /* the same tensor under Mistral's "model." prefix in another shard */
    CU_ASSERT_EQUAL(write_st(path, "{" ENTRY("model.backbone.norm_f.weight", "F32", "[16]", "0", "64") "}", 64), 0);
    expect_load(dir, "appears twice", "model.backbone.norm_f.weight", "extra.safetensors");
    /* the index names a shard that is not there, or one outside the directory */
    write_index(dir, "lm_head.weight", "missing.safetensors");
    expect_load(dir, "missing.safetensors", "cannot open", NULL);
    write_index(dir, "lm_head.weight", "../model.safetensors");
    expect_load(dir, "model.safetensors.index.json", "'lm_head.weight'", "not a file name in this directory");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    CU_ASSERT_EQUAL(write_bytes(path, "{\"weight_map\": [1]}", strlen("{\"weight_map\": [1]}")), 0);
    expect_load(dir, "model.safetensors.index.json", "malformed index", NULL);
    test_rmtree(dir);
    free(dir);
}

/* config.json's vocab_size and the embedding's rows disagree (the file is for 50 ids, the config says 64). */
static void test_vocab_mismatch(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    char *dir = tiny_dir(&s), path[4200], text[2048];
    snprintf(path, sizeof path, "%s/config.json", dir);
    test_slurp(path, text, sizeof text);
    char *v = strstr(text, "\"vocab_size\": 50");
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    memcpy(v, "\"vocab_size\": 64", 16);
    CU_ASSERT_EQUAL(write_bytes(path, text, strlen(text)), 0);
    expect_load(dir, "model.safetensors: tensor 'backbone.embeddings.weight'", "[50, 16]", "expected [64, 16]");
    test_rmtree(dir);
    free(dir);

    /* A tokenizer with more ids than the model has embedding rows is refused before any text runs. */
    Mamba2Error e = {{0}};
    Mamba2Tokenizer *tok = mamba2_tokenizer_load("data/tokenizer/tiny/tiny_a.json", &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
    test_tiny_spec_default(&s);
    dir = tiny_dir(&s);
    Mamba2Model m;
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load(dir, &m, &e), 0);
    CU_ASSERT_NOT_EQUAL(cli_check_tokenizer(tok, &m, &e), 0);
    char n_ids[32];
    snprintf(n_ids, sizeof n_ids, "has %d token ids", (int)mamba2_tokenizer_vocab_size(tok));
    EXPECT_MSG(e.msg, "tiny_a.json", n_ids, dir, "vocab_size 50");
    mamba2_model_free(&m);
    test_rmtree(dir);
    free(dir);
    /* ... and accepted by a model whose (padded) vocabulary is at least as large */
    test_tiny_spec_default(&s);
    s.vocab_size = mamba2_tokenizer_vocab_size(tok) + 7;
    dir = tiny_dir(&s);
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load(dir, &m, &e), 0);
    CU_ASSERT_EQUAL(cli_check_tokenizer(tok, &m, &e), 0);
    mamba2_model_free(&m);
    mamba2_tokenizer_free(tok);
    test_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------ state files */

/* Store the crc32 of bytes [0, n-4) in the last 4 bytes (little-endian): a file damaged on purpose
 * that still passes the checksum, to reach the checks after it. */
static void fix_crc(char *buf, long n) {
    uint32_t c = (uint32_t)crc32(crc32(0, Z_NULL, 0), (const Bytef *)buf, (uInt)(n - 4));
    for (int i = 0; i < 4; i++) buf[n - 4 + i] = (char)(c >> (8 * i));
}

/* A state file (version 2) for a small config, with one part replaced: each damage refused with its
 * message, the caller's state left as it was. */
static void test_state_files(void) {
    Mamba2Config c;
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL_FATAL(mamba2_config_parse("{\"hidden_size\": 16, \"num_hidden_layers\": 2, \"vocab_size\": 50, "
                                              "\"head_dim\": 8, \"state_size\": 8, \"n_groups\": 2}", "c", &c, &e), 0);
    c.checkpoint_id = 0x1234abcdu;
    Mamba2State s;
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&s, &c, &e), 0);
    test_fill_normal(s.ssm, s.ssm_len, 1.0);
    test_fill_normal(s.conv, s.conv_len, 1.0);
    s.pos = 9;
    char *dir = test_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/s.bin", dir);
    CU_ASSERT_EQUAL_FATAL(mamba2_state_save(&s, &c, path, &e), 0);
    long size = 0;
    char *good = mamba2_read_file(path, &size, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(good);
    CU_ASSERT_EQUAL(size, 104 + (long)(s.conv_len + s.ssm_len) * 4 + 4);
    const long ssm0 = 104 + (long)s.conv_len * 4; /* the first SSM value */
    char *bad = malloc((size_t)size + 8);
    /* version 1, as the previous program wrote it: magic, version, 9 fields, pos, data */
    static const char v1[] = "MAMBA2ST\x01\0\0\0\x09\0\0\0";
    struct {
        long at;         /* byte to overwrite, -1: append, -2: cut to `len` bytes, -3: flip bit 3 of byte len */
        long len;        /* bytes written at `at` */
        const char *val; /* the bytes */
        int fix;         /* recompute the checksum afterwards */
        const char *n1, *n2;
    } cases[] = {
        {0, 8, "MAMBA3ST", 0, "not a mamba2 state file", "bad magic"},
        {0, 16, v1, 0, "version 1 was made by an older version of mamba2", "no checksum"},
        {8, 4, "\x03\0\0\0", 0, "state file version 3 is not supported", NULL},
        {12, 4, "\x08\0\0\0", 0, "state header of 8 bytes, version 2 has 104", NULL},
        {-3, ssm0 + 1, NULL, 0, "checksum mismatch", "the file is damaged"}, /* one flipped bit in the data */
        {-3, 80, NULL, 0, "checksum mismatch", "the file is damaged"},       /* ... in the position */
        {16, 8, "\x03\0\0\0\0\0\0\0", 1, "saved for a model with n_layer = 3, this model has 2", NULL},
        {72, 8, "\x33\0\0\0\0\0\0\0", 1, "vocab_size = 51, this model has 50", NULL},
        {88, 4, "\x01\x02\x03\x04", 1, "same shapes but another configuration", NULL},
        {92, 4, "\xcd\xab\x34\x13", 1, "another model of the same shapes", "checkpoint identity 1334abcd, this model's 1234abcd"},
        {80, 8, "\xff\xff\xff\xff\xff\xff\xff\x7f", 1, "position 9223372036854775807", "outside [0, 2^53]"},
        {80, 8, "\xff\xff\xff\xff\xff\xff\xff\xff", 1, "position -1", "outside [0, 2^53]"},
        {80, 8, "\x01\0\0\0\0\0\x20\0", 1, "position 9007199254740993", "outside"}, /* 2^53 + 1 */
        {ssm0, 4, "\0\0\xc0\x7f", 1, "non-finite value (nan at SSM element 0)", NULL},
        {104 + 8, 4, "\0\0\x80\xff", 1, "non-finite value (-inf at conv element 2)", NULL},
        {-1, 4, "\0\0\0\0", 0, "the header announces", "bytes after the state data"},
        {-2, 50, NULL, 0, "truncated state header", NULL},
        {-2, 5, NULL, 0, "truncated state header", NULL},
        {-2, 200, NULL, 0, "the header announces", "truncated"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        long n = size;
        memcpy(bad, good, (size_t)size);
        if (cases[k].at >= 0) memcpy(bad + cases[k].at, cases[k].val, (size_t)cases[k].len);
        else if (cases[k].at == -1) memcpy(bad + size, cases[k].val, (size_t)cases[k].len), n += cases[k].len;
        else if (cases[k].at == -3) bad[cases[k].len] ^= 8;
        else n = cases[k].len;
        if (cases[k].fix) fix_crc(bad, n);
        CU_ASSERT_EQUAL(write_bytes(path, bad, (size_t)n), 0);
        Mamba2State t;
        CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&t, &c, &e), 0);
        t.ssm[0] = 42.0f;
        e.msg[0] = 0;
        CU_ASSERT_NOT_EQUAL(mamba2_state_load(&t, &c, path, &e), 0);
        EXPECT_MSG(e.msg, path, cases[k].n1, cases[k].n2 ? cases[k].n2 : cases[k].n1);
        CU_ASSERT(t.ssm[0] == 42.0f && t.pos == 0); /* left as it was */
        mamba2_state_free(&t);
    }
    /* the intact file loads, bit for bit */
    CU_ASSERT_EQUAL(write_bytes(path, good, (size_t)size), 0);
    Mamba2State t;
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&t, &c, &e), 0);
    CU_ASSERT_EQUAL(mamba2_state_load(&t, &c, path, &e), 0);
    CU_ASSERT(t.pos == 9 && !memcmp(t.ssm, s.ssm, s.ssm_len * 4) && !memcmp(t.conv, s.conv, s.conv_len * 4));
    /* saving refuses a position past the bound rather than writing a file that cannot be loaded */
    s.pos = MAMBA2_STATE_MAX_POS + 1;
    CU_ASSERT_NOT_EQUAL(mamba2_state_save(&s, &c, path, &e), 0);
    EXPECT_MSG(e.msg, path, "outside [0, 2^53]");
    /* ... leaving the file that was there as it was, and no temporary behind */
    long kept_size = 0;
    char *kept = mamba2_read_file(path, &kept_size, &e);
    CU_ASSERT(kept && kept_size == size && !memcmp(kept, good, (size_t)size));
    free(kept);
    CU_ASSERT_EQUAL(count_temporaries(dir), 0);
    /* a symlink where the state goes is replaced, never written through (its target stays as it was) */
    char victim[4300], link_path[4300];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(link_path, sizeof link_path, "%s/link.bin", dir);
    CU_ASSERT_EQUAL(write_bytes(victim, "keep", 4), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(victim, link_path), 0);
    s.pos = 9;
    CU_ASSERT_EQUAL(mamba2_state_save(&s, &c, link_path, &e), 0);
    struct stat ls;
    CU_ASSERT(lstat(link_path, &ls) == 0 && S_ISREG(ls.st_mode) && ls.st_size == size);
    CU_ASSERT(lstat(victim, &ls) == 0 && ls.st_size == 4);
    CU_ASSERT_EQUAL(count_temporaries(dir), 0);
    unlink(link_path);
    unlink(victim);
    /* a directory and a FIFO: refused at once (the FIFO has no writer: a blocking open would hang) */
    CU_ASSERT_NOT_EQUAL(mamba2_state_load(&t, &c, dir, &e), 0);
    EXPECT_MSG(e.msg, dir, "is a directory");
    char fifo[4300];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
    CU_ASSERT_NOT_EQUAL(mamba2_state_load(&t, &c, fifo, &e), 0);
    EXPECT_MSG(e.msg, fifo, "not a regular file");
    mamba2_state_free(&t);
    free(bad);
    free(good);
    mamba2_state_free(&s);
    test_rmtree(dir);
    free(dir);
}

/* A state of another model with the same shapes and the same safetensors header bytes (two tiny models
 * that differ only in their random weights) is refused; the model's own state loads. */
static void test_state_other_model(void) {
    char *dir = test_tmpdir(), da[4200], db[4200], path[4200];
    snprintf(da, sizeof da, "%s/a", dir);
    snprintf(db, sizeof db, "%s/b", dir);
    snprintf(path, sizeof path, "%s/s.bin", dir);
    TinyModelSpec spec;
    test_tiny_spec_default(&spec);
    CU_ASSERT_EQUAL_FATAL(mkdir(da, 0700) || mkdir(db, 0700), 0);
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(da, &spec) || test_write_tiny_model(db, &spec), 0);
    Mamba2Model a, b;
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load(da, &a, &e), 0);
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load(db, &b, &e), 0);
    /* the two headers are byte-identical: an identity made of them would not tell the models apart */
    const SafetensorsFile *fa = &a.files[0], *fb = &b.files[0];
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | ((const uint8_t *)fa->map)[i];
    CU_ASSERT(fa->size == fb->size && !memcmp(fa->map, fb->map, 8 + hlen));
    CU_ASSERT(memcmp(fa->map, fb->map, fa->size) != 0); /* the weights differ */
    CU_ASSERT_EQUAL(mamba2_state_config_id(&a.cfg), mamba2_state_config_id(&b.cfg));
    CU_ASSERT_NOT_EQUAL(a.cfg.checkpoint_id, b.cfg.checkpoint_id);
    Mamba2State s, t;
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&s, &a.cfg, &e) || mamba2_state_init(&t, &b.cfg, &e), 0);
    test_fill_normal(s.ssm, s.ssm_len, 1.0);
    CU_ASSERT_EQUAL(mamba2_state_save(&s, &a.cfg, path, &e), 0);
    CU_ASSERT_NOT_EQUAL(mamba2_state_load(&t, &b.cfg, path, &e), 0);
    EXPECT_MSG(e.msg, path, "another model of the same shapes");
    CU_ASSERT_EQUAL(mamba2_state_load(&t, &a.cfg, path, &e), 0);
    /* loading the same directory again gives the same identity (it is stable) */
    Mamba2Model a2;
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load(da, &a2, &e), 0);
    CU_ASSERT_EQUAL(a2.cfg.checkpoint_id, a.cfg.checkpoint_id);
    mamba2_model_free(&a2);
    mamba2_state_free(&s), mamba2_state_free(&t);
    mamba2_model_free(&a), mamba2_model_free(&b);
    test_rmtree(dir);
    free(dir);
}

/* A position at the bound: the dispatch layer refuses to run past it (before: a signed overflow). */
static void test_state_position_bound(void) {
    char *dir = test_tmpdir();
    TinyModelSpec spec;
    test_tiny_spec_default(&spec);
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(dir, &spec), 0);
    Mamba2Model m;
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load(dir, &m, &e), 0);
    Mamba2Backend *b = NULL;
    CU_ASSERT_EQUAL_FATAL(mamba2_backend_create("ref", &m, NULL, &b, &e), 0);
    Mamba2State s;
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&s, &m.cfg, &e), 0);
    float *logits = malloc((size_t)m.cfg.vocab_size * sizeof(float));
    int32_t tok[2] = {1, 2};
    Mamba2State *sp = &s;
    s.pos = MAMBA2_STATE_MAX_POS - 1;
    CU_ASSERT_NOT_EQUAL(mamba2_backend_prefill(b, &s, tok, 2, logits, 0, &e), 0);
    EXPECT_MSG(e.msg, "would pass the limit of 2^53");
    CU_ASSERT_EQUAL(mamba2_backend_prefill(b, &s, tok, 1, logits, 0, &e), 0);
    CU_ASSERT(s.pos == MAMBA2_STATE_MAX_POS);
    CU_ASSERT_NOT_EQUAL(mamba2_backend_step(b, &sp, tok, 1, logits, &e), 0);
    EXPECT_MSG(e.msg, "at the limit of 2^53");
    s.pos = INT64_MAX;
    CU_ASSERT_NOT_EQUAL(mamba2_backend_prefill(b, &s, tok, 1, logits, 0, &e), 0);
    CU_ASSERT(mamba2_state_pos_after(INT64_MAX, INT32_MAX) == MAMBA2_STATE_MAX_POS);
    free(logits);
    mamba2_state_free(&s);
    mamba2_backend_destroy(b);
    mamba2_model_free(&m);
    test_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------ cost and special files (issue #21) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* One timed run of a parser on its smaller (big = 0) or larger (big = 1) input: seconds, or -1. */
typedef double (*TimedRun)(void *ctx, int big);

/* The time ratio of the larger input (@p factor times the smaller) to the smaller: best of @p reps runs
 * of each, alternated, so a busy machine slows both alike; measured again (up to 3 attempts) while
 * above @p limit, since noise only ever slows a run. Prints each attempt after @p what; *t_big receives
 * the larger input's best time. -1 when a run fails. */
static double scaling_ratio(TimedRun run, void *ctx, int reps, int factor, double limit, const char *what,
                            double *t_big) {
    double ratio = 1e9;
    for (int attempt = 0; attempt < 3 && ratio > limit; attempt++) {
        double t1 = 1e9, t2 = 1e9;
        for (int r = 0; r < reps; r++) {
            double a = run(ctx, 0), b = run(ctx, 1);
            if (a < 0 || b < 0) return -1;
            t1 = a < t1 ? a : t1, t2 = b < t2 ? b : t2;
        }
        ratio = t2 / t1;
        if (t_big) *t_big = t2;
        printf("\n    %s: %.1f ms, x%d input %.1f ms: x%.2f", what, 1e3 * t1, factor, 1e3 * t2, ratio);
    }
    return ratio;
}

/* A checkpoint of n_layer tiny layers (d = 4, H = 2, P = 4, N = 2, G = 1, K = 2, V = 6, f32 zeros),
 * every tensor named with Mistral's "model." prefix when @p prefixed (the lookup's second spelling). */
static int write_many_layers(const char *dir, int n_layer, int prefixed) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"hidden_size\": 4, \"num_hidden_layers\": %d, \"vocab_size\": 6, \"expand\": 2, \"head_dim\": 4, "
               "\"state_size\": 2, \"n_groups\": 1, \"conv_kernel\": 2, \"tie_word_embeddings\": true}", n_layer);
    fclose(f);
    static const struct {
        const char *name;
        int ndim, shape[3];
    } per_layer[] = {{"norm.weight", 1, {4}},          {"mixer.in_proj.weight", 2, {22, 4}},
                     {"mixer.conv1d.weight", 3, {12, 1, 2}}, {"mixer.conv1d.bias", 1, {12}},
                     {"mixer.dt_bias", 1, {2}},         {"mixer.A_log", 1, {2}},
                     {"mixer.D", 1, {2}},               {"mixer.norm.weight", 1, {8}},
                     {"mixer.out_proj.weight", 2, {4, 8}}};
    size_t cap = (size_t)n_layer * 9 * 160 + 4096, len = 0;
    char *hdr = malloc(cap);
    uint64_t off = 0;
    const char *pre = prefixed ? "model." : "";
    len += (size_t)snprintf(hdr + len, cap - len, "{\"%sbackbone.embeddings.weight\": {\"dtype\": \"F32\", \"shape\": "
                            "[6, 4], \"data_offsets\": [0, 96]}, \"%sbackbone.norm_f.weight\": {\"dtype\": \"F32\", "
                            "\"shape\": [4], \"data_offsets\": [96, 112]}", pre, pre);
    off = 112;
    for (int l = 0; l < n_layer; l++)
        for (int k = 0; k < 9; k++) {
            uint64_t n = 4;
            char shape[64];
            int sl = 0;
            for (int i = 0; i < per_layer[k].ndim; i++) {
                n *= (uint64_t)per_layer[k].shape[i];
                sl += snprintf(shape + sl, sizeof shape - sl, i ? ", %d" : "%d", per_layer[k].shape[i]);
            }
            len += (size_t)snprintf(hdr + len, cap - len, ", \"%sbackbone.layers.%d.%s\": {\"dtype\": \"F32\", "
                                    "\"shape\": [%s], \"data_offsets\": [%llu, %llu]}", pre, l, per_layer[k].name, shape,
                                    (unsigned long long)off, (unsigned long long)(off + n));
            off += n;
        }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    snprintf(path, sizeof path, "%s/%s", dir, prefixed ? "consolidated.safetensors" : "model.safetensors");
    f = fopen(path, "wb");
    int rc = f ? 0 : -1;
    if (f) {
        unsigned char le[8];
        for (int i = 0; i < 8; i++) le[i] = (unsigned char)((uint64_t)len >> (8 * i));
        rc = fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, len, f) == len && ftruncate(fileno(f), (off_t)(8 + len + off)) == 0
                 ? 0 : -1;
        if (fclose(f)) rc = -1;
    }
    free(hdr);
    return rc;
}

/* Load dir once (seconds), -1 when the load fails. */
static double time_load(const char *dir) {
    Mamba2Model m;
    Mamba2Error e = {{0}};
    double t0 = now_s();
    if (mamba2_model_load(dir, &m, &e)) {
        printf("\n    %s\n", e.msg);
        return -1;
    }
    double t = now_s() - t0;
    mamba2_model_free(&m);
    return t;
}

/* Loading is linear in the number of tensors, with and without the "model." prefix: 8x the layers
 * (200 -> 1,600, 1,802 -> 14,402 tensors) costs at most 24x the time. A linear loader measured x10-13
 * here, not x8: the larger header leaves the caches and glibc's allocator consolidates more. The lookup
 * that scanned every tensor per name took 38 s at 10,000 layers (issue #21): about 1 s of quadratic work
 * at 1,600 layers against 15 ms at 200, x40 and more. Ratios and timings: results/robustness.md.
 * Alternated, best of 5 each (scaling_ratio()). */
static double run_load(void *dirs, int big) { return time_load(((char **)dirs)[big]); }

static void test_checkpoint_scaling(void) {
    for (int prefixed = 0; prefixed < 2; prefixed++) {
        char *d[2] = {test_tmpdir(), test_tmpdir()};
        CU_ASSERT_EQUAL_FATAL(write_many_layers(d[0], 200, prefixed) || write_many_layers(d[1], 1600, prefixed), 0);
        double ratio = scaling_ratio(run_load, d, 5, 8, 24.0, prefixed ? "200 layers, model.-prefixed" : "200 layers", NULL);
        CU_ASSERT(ratio >= 0 && ratio <= 24.0);
        test_rmtree(d[0]), test_rmtree(d[1]);
        free(d[0]), free(d[1]);
    }
}

/* More tensors in the header than the config can use: refused before any table is built. */
static void test_checkpoint_tensor_count(void) {
    char *dir = test_tmpdir(), cfg[4200];
    CU_ASSERT_EQUAL_FATAL(write_many_layers(dir, 200, 0), 0);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    const char *two_layers = "{\"hidden_size\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 6, \"expand\": 2, "
                             "\"head_dim\": 4, \"state_size\": 2, \"n_groups\": 1, \"conv_kernel\": 2}";
    CU_ASSERT_EQUAL(write_bytes(cfg, two_layers, strlen(two_layers)), 0);
    Mamba2Model m;
    Mamba2Error e = {{0}};
    CU_ASSERT_NOT_EQUAL(mamba2_model_load(dir, &m, &e), 0);
    EXPECT_MSG(e.msg, "model.safetensors: header of", "allowed for at most 108 tensors");
    test_rmtree(dir);
    free(dir);
}

/* FIFOs as config.json, model.safetensors, the index and the tokenizer: refused at once (a blocking open
 * hung forever); a directory as config.json: named as such (was "out of memory reading 2^63 bytes"); a
 * 3 GB sparse config.json: refused before it is read (was read whole). */
static void test_special_files(void) {
    alarm(20); /* a hang fails the run instead of blocking it */
    const char *names[] = {"config.json", "model.safetensors", "model.safetensors.index.json"};
    for (int k = 0; k < 3; k++) {
        char *dir = test_tmpdir(), p[4200];
        CU_ASSERT_EQUAL_FATAL(write_many_layers(dir, 1, 0), 0);
        snprintf(p, sizeof p, "%s/%s", dir, names[k]);
        unlink(p);
        CU_ASSERT_EQUAL_FATAL(mkfifo(p, 0600), 0);
        Mamba2Model m;
        Mamba2Error e = {{0}};
        CU_ASSERT_NOT_EQUAL(mamba2_model_load(dir, &m, &e), 0);
        EXPECT_MSG(e.msg, p, "not a regular file");
        Mamba2Tokenizer *t = mamba2_tokenizer_load(p, &e);
        CU_ASSERT_PTR_NULL(t);
        EXPECT_MSG(e.msg, p, "not a regular file");
        unlink(p);
        if (k == 0) {
            CU_ASSERT_EQUAL_FATAL(mkdir(p, 0700), 0);
            CU_ASSERT_NOT_EQUAL(mamba2_model_load(dir, &m, &e), 0);
            EXPECT_MSG(e.msg, p, "is a directory");
            rmdir(p);
            int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            CU_ASSERT_FATAL(fd >= 0);
            CU_ASSERT_EQUAL(ftruncate(fd, (off_t)3 << 30), 0);
            close(fd);
            double t0 = now_s();
            CU_ASSERT_NOT_EQUAL(mamba2_model_load(dir, &m, &e), 0);
            CU_ASSERT(now_s() - t0 < 0.5);
            EXPECT_MSG(e.msg, p, "3221225472 bytes, more than the 1048576 bytes");
        }
        test_rmtree(dir);
        free(dir);
    }
    /* the shared reader reads a pipe to its end (prompts: stdin, <(...)) when asked to, and refuses it otherwise */
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    CU_ASSERT_EQUAL(write(fds[1], "hello", 5), 5);
    close(fds[1]);
    char p[64];
    snprintf(p, sizeof p, "/dev/fd/%d", fds[0]);
    long len = 0;
    Mamba2Error e = {{0}};
    CU_ASSERT_PTR_NULL(mamba2_read_file_max(p, 100, 0, &len, &e));
    EXPECT_MSG(e.msg, p, "not a regular file");
    char *text = mamba2_read_file(p, &len, &e);
    CU_ASSERT(text && len == 5 && !strcmp(text, "hello"));
    free(text);
    close(fds[0]);
    alarm(0);
}

/* tokenizer.json text in dir; loading it must fail with every needle and the path. */
static void expect_tok_error(const char *dir, const char *json, const char *n1, const char *n2) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CU_ASSERT_EQUAL_FATAL(write_bytes(path, json, strlen(json)), 0);
    Mamba2Error e = {{0}};
    Mamba2Tokenizer *t = mamba2_tokenizer_load(path, &e);
    CU_ASSERT_PTR_NULL(t);
    if (t) {
        printf("\n    accepted: %.200s", json);
        mamba2_tokenizer_free(t);
    } else {
        EXPECT_MSG(e.msg, path, n1, n2 ? n2 : n1);
    }
}

#define TOK_MODEL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"

/* A normalizer that grows the text by Prepend steps (counted with Replace against one cap), a chain of
 * too many steps, truncated JSON, a JSON array, an added token without an id. */
static void test_tokenizer_hostile(void) {
    char *dir = test_tmpdir();
    size_t cap = 1 << 16, n = 0;
    char *json = malloc(cap);
    /* 40 Prepends of "abcdefgh": one byte becomes 321 (the Replace-only cap let 100,000 of them through) */
    n += (size_t)snprintf(json + n, cap - n, "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(json + n, cap - n, "%s{\"type\":\"Prepend\",\"prepend\":\"abcdefgh\"}", i ? "," : "");
    snprintf(json + n, cap - n, "]}," TOK_MODEL "}");
    expect_tok_error(dir, json, "normalizer's Prepend and Replace steps can make one byte 321 bytes long", NULL);
    /* Prepend then Replace "a" -> 4 bytes: (1 + 100) * 4 */
    expect_tok_error(dir, "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"
                          "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                          "aaaa\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"bbbb\"}]}," TOK_MODEL "}",
                     "can make one byte 404 bytes long", NULL);
    n = 0;
    n += (size_t)snprintf(json + n, cap - n, "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(json + n, cap - n, "%s{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"a\"}",
                              i ? "," : "");
    snprintf(json + n, cap - n, "]}," TOK_MODEL "}");
    expect_tok_error(dir, json, "more than 64 normalizer or decoder steps", NULL);
    expect_tok_error(dir, "{" TOK_MODEL ", \"added_tokens\": [{\"id\": 3, \"content\"", "invalid JSON",
                     "unexpected end of file: truncated?");
    expect_tok_error(dir, "  [1, 2, 3]", "a JSON array, not a tokenizer", NULL);
    expect_tok_error(dir, "{\"added_tokens\":[{\"content\":\"<x>\",\"special\":true}]," TOK_MODEL "}",
                     "added token '<x>' has no id", NULL);
    expect_tok_error(dir, "{\"added_tokens\":[{\"id\":\"3\",\"content\":\"<x>\"}]," TOK_MODEL "}",
                     "added token '<x>' has no id", NULL);
    free(json);
    test_rmtree(dir);
    free(dir);
}

/* Append a protobuf varint. */
static size_t pb_put_varint(unsigned char *p, uint64_t v) {
    size_t n = 0;
    do {
        p[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* A SentencePiece BPE model: "<unk>", then the n pieces given, normal (or user-defined from index
 * @p first_user on). Returns its length; buf must hold the pieces' bytes + 32 per piece + 64. */
static size_t make_spm_typed(unsigned char *buf, const char *const *pieces, const size_t *lens, int n, int first_user) {
    size_t o = 0;
    for (int i = -1; i < n; i++) {
        const char *s = i < 0 ? "<unk>" : pieces[i];
        size_t len = i < 0 ? 5 : lens[i];
        unsigned char head[24];
        size_t h = 0;
        head[h++] = 0x0A; /* piece = 1, bytes */
        h += pb_put_varint(head + h, len);
        size_t msg = h + len + 2;
        buf[o++] = 0x0A; /* pieces = 1 */
        o += pb_put_varint(buf + o, msg);
        memcpy(buf + o, head, h), o += h;
        memcpy(buf + o, s, len), o += len;
        buf[o++] = 0x18; /* type = 3 */
        buf[o++] = i < 0 ? 2 : i >= first_user ? 4 : 1; /* UNKNOWN, USER_DEFINED, NORMAL */
    }
    static const unsigned char trainer[] = {0x12, 0x02, 0x18, 0x02}; /* trainer_spec { model_type: BPE } */
    memcpy(buf + o, trainer, sizeof trainer);
    return o + sizeof trainer;
}

static size_t make_spm(unsigned char *buf, const char *const *pieces, const size_t *lens, int n) {
    return make_spm_typed(buf, pieces, lens, n, n);
}

/* Load an SPM model of "a", "b" and one piece of len bytes "aaa...ab"; the time in seconds (-1: refused). */
static double time_spm_long_piece(size_t len) {
    char *piece = malloc(len);
    memset(piece, 'a', len);
    piece[len - 1] = 'b';
    const char *pieces[3] = {"a", "b", piece};
    size_t lens[3] = {1, 1, len};
    unsigned char *buf = malloc(len + 256);
    size_t n = make_spm(buf, pieces, lens, 3);
    Mamba2Error e = {{0}};
    double t0 = now_s();
    Mamba2Tokenizer *tok = mamba2_tokenizer_load_bytes(buf, n, "long.model", &e);
    double t = now_s() - t0;
    if (!tok) printf("\n    %s", e.msg);
    mamba2_tokenizer_free(tok);
    free(buf), free(piece);
    return tok ? t : -1;
}

/* SentencePiece loading is linear in a piece's length: 2x the piece, at most 2.5x the time (every
 * split of a piece was hashed whole: a 100 KB piece took 11 s, a 1 MB piece 20 minutes). Best of 3
 * (scaling_ratio()). Duplicate pieces are refused. */
static double run_spm(void *ctx, int big) { return time_spm_long_piece((size_t)1 << (20 + big)); }

static void test_spm_hostile(void) {
    double t2 = 0, ratio = scaling_ratio(run_spm, NULL, 3, 2, 2.5, "a piece of 1 MB", &t2);
    CU_ASSERT(ratio >= 0 && ratio <= 2.5);
    CU_ASSERT(t2 < 1.0);
    /* "a" twice */
    const char *pieces[3] = {"a", "b", "a"};
    size_t lens[3] = {1, 1, 1};
    unsigned char buf[256];
    size_t n = make_spm(buf, pieces, lens, 3);
    Mamba2Error e = {{0}};
    Mamba2Tokenizer *t = mamba2_tokenizer_load_bytes(buf, n, "dup.model", &e);
    CU_ASSERT_PTR_NULL(t);
    mamba2_tokenizer_free(t);
    EXPECT_MSG(e.msg, "dup.model", "piece 3 'a' appears twice (also piece 1)");
    /* without the duplicate it loads */
    t = mamba2_tokenizer_load_bytes(buf, make_spm(buf, pieces, lens, 2), "ok.model", &e);
    CU_ASSERT_PTR_NOT_NULL(t);
    mamba2_tokenizer_free(t);
}

/* Encode n bytes "aaa...a" with a tokenizer whose added token is 20 KB of "a" then "b" (it never
 * matches, but every position starts a long partial match); the time in seconds, -1 on failure. */
static double time_added_match(const Mamba2Tokenizer *t, size_t n, size_t *n_ids) {
    char *text = malloc(n);
    memset(text, 'a', n);
    int32_t *ids = NULL;
    Mamba2Error e = {{0}};
    double t0 = now_s();
    int rc = mamba2_tokenizer_encode(t, text, n, 0, &ids, n_ids, &e);
    double dt = now_s() - t0;
    if (rc) printf("\n    %s", e.msg);
    free(ids), free(text);
    return rc ? -1 : dt;
}

static double run_match(void *tok, int big) {
    size_t n_ids;
    return time_added_match(tok, (size_t)1 << (19 + big), &n_ids);
}

/* SentencePiece user-defined pieces were matched the same way (a trie walk from every position): a
 * 20 KB user piece "aaa...ab" and 512 KiB / 1 MiB of "a", at most 2.5x the time. */
static void test_user_piece_scaling(void) {
    const size_t L = 20000;
    char *piece = malloc(L + 1);
    memset(piece, 'a', L);
    piece[L] = 'b';
    const char *pieces[3] = {"a", "b", piece};
    size_t lens[3] = {1, 1, L + 1};
    unsigned char *buf = malloc(L + 256);
    size_t n = make_spm_typed(buf, pieces, lens, 3, 2);
    Mamba2Error e = {{0}};
    Mamba2Tokenizer *t = mamba2_tokenizer_load_bytes(buf, n, "user.model", &e);
    free(buf), free(piece);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    double t2 = 0, ratio = scaling_ratio(run_match, t, 3, 2, 2.5, "20 KB user piece, 512 KiB of text", &t2);
    CU_ASSERT(ratio >= 0 && ratio <= 2.5);
    CU_ASSERT(t2 < 1.0);
    mamba2_tokenizer_free(t);
}

/* Added-token matching is linear in the text, whatever the added tokens' length: 2x the text, at most
 * 2.5x the time (a trie walk from every position: a 20 KB added token and 1 MB of text took 40 s). */
static void test_added_token_scaling(void) {
    const size_t L = 20000;
    size_t cap = L + 512, n = 0;
    char *json = malloc(cap);
    n += (size_t)snprintf(json + n, cap - n, "{\"added_tokens\":[{\"id\":3,\"content\":\"");
    memset(json + n, 'a', L), n += L;
    snprintf(json + n, cap - n, "b\",\"special\":true},{\"id\":4,\"content\":\"ba\",\"special\":true}]," TOK_MODEL "}");
    Mamba2Error e = {{0}};
    Mamba2Tokenizer *t = mamba2_tokenizer_load_bytes(json, strlen(json), "long_added.json", &e);
    free(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    /* the matches are still leftmost-longest: "ba" found, the long token too when it is there */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    CU_ASSERT_EQUAL(mamba2_tokenizer_encode(t, "abab", 4, 0, &ids, &n_ids, &e), 0);
    CU_ASSERT(n_ids == 3 && ids[0] == 0 && ids[1] == 4 && ids[2] == 1);
    free(ids);
    double t2 = 0, ratio = scaling_ratio(run_match, t, 3, 2, 2.5, "20 KB added token, 512 KiB of text", &t2);
    size_t n1 = 0, n2 = 0; /* one id per "a": the long token never matched */
    CU_ASSERT(time_added_match(t, 1 << 19, &n1) >= 0 && n1 == 1 << 19);
    CU_ASSERT(time_added_match(t, 1 << 20, &n2) >= 0 && n2 == 1 << 20);
    CU_ASSERT(ratio >= 0 && ratio <= 2.5);
    CU_ASSERT(t2 < 1.0);
    mamba2_tokenizer_free(t);
}

/* ------------------------------------------------------------ the program */

static void test_cli_malformed(void) {
    char msg[8192], args[9000];
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    char *dir = tiny_dir(&s), out[4200], cfg[4200];
    snprintf(out, sizeof out, "%s/out.f32", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(args, sizeof args, "logits %s --ids '1 2 3' -o %s", dir, out);

    /* NaN where a count is expected */
    const char *nan_cfg = "{\"hidden_size\": 16, \"num_hidden_layers\": NaN, \"vocab_size\": 50}";
    CU_ASSERT_EQUAL(write_bytes(cfg, nan_cfg, strlen(nan_cfg)), 0);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, cfg, "num_hidden_layers", "integer");
    CU_ASSERT(!exists(dir, "out.f32") && count_temporaries(dir) == 0);
    test_rmtree(dir);
    free(dir);

    /* overlapping tensors: the second layer's norm shares the bytes of the first one's */
    dir = tiny_dir(&s);
    snprintf(out, sizeof out, "%s/out.f32", dir);
    snprintf(args, sizeof args, "logits %s --ids '1 2 3' -o %s", dir, out);
    char st[4200];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    long size = 0;
    Mamba2Error e = {{0}};
    char *file = mamba2_read_file(st, &size, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(file);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)file[i];
    /* find "backbone.layers.1.norm.weight"'s offsets and point them at the embedding's first 64 bytes */
    char *entry = strstr(file + 8, "\"backbone.layers.1.norm.weight\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(entry);
    char *offs = strstr(entry, "\"data_offsets\": [");
    CU_ASSERT_PTR_NOT_NULL_FATAL(offs);
    offs += strlen("\"data_offsets\": [");
    char *close = strchr(offs, ']');
    char repl[64];
    int k = snprintf(repl, sizeof repl, "0, 64");
    CU_ASSERT_FATAL((long)(close - offs) >= k);
    memset(offs, ' ', (size_t)(close - offs));
    memcpy(offs, repl, (size_t)k);
    CU_ASSERT(hlen < (uint64_t)size);
    CU_ASSERT_EQUAL(write_bytes(st, file, (size_t)size), 0);
    free(file);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, st, "overlap", "backbone.layers.1.norm.weight");
    CU_ASSERT(!exists(dir, "out.f32") && count_temporaries(dir) == 0);
    test_rmtree(dir);
    free(dir);

    /* a state file saved for another model: refused, and neither the logits nor a state written */
    dir = tiny_dir(&s);
    char *other = test_tmpdir();
    TinyModelSpec s2 = s;
    s2.d_state = 16;
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(other, &s2), 0);
    snprintf(args, sizeof args, "logits %s --ids '1 2' -o %s/a.f32 --state-out %s/a.state", other, dir, dir);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 0);
    CU_ASSERT(exists(dir, "a.state"));
    snprintf(args, sizeof args, "logits %s --ids '3' -o %s/b.f32 --state-in %s/a.state --state-out %s/b.state", dir,
             dir, dir, dir);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, "a.state", "d_state = 16, this model has 8");
    CU_ASSERT(!exists(dir, "b.f32") && !exists(dir, "b.state") && count_temporaries(dir) == 0);
    /* the state cannot be written: the command fails and takes its logits file with it */
    snprintf(args, sizeof args, "logits %s --ids '3' -o %s/c.f32 --state-out %s/no/such/dir/c.state", dir, dir, dir);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, "c.state", "cannot");
    CU_ASSERT(!exists(dir, "c.f32") && count_temporaries(dir) == 0);
    test_rmtree(other);
    free(other);

    /* a tokenizer.json that is not one */
    char tok[4200];
    snprintf(tok, sizeof tok, "%s/tokenizer.json", dir);
    const char *bad_tok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}";
    CU_ASSERT_EQUAL(write_bytes(tok, bad_tok, strlen(bad_tok)), 0);
    snprintf(args, sizeof args, "tokenize %s --text hello", dir);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, tok, "vocab entry 'a' has an invalid id");
    test_rmtree(dir);
    free(dir);
}

#if !defined(__SANITIZE_ADDRESS__)
/* The smallest address-space limit (KiB, to 16 MiB) under which the program starts at all (`--version`
 * exits 0): below it the dynamic loader cannot map the shared libraries (exit 127) before any of our
 * code runs. A CUDA build maps cuBLAS, hundreds of MiB; a CPU build about 60 MiB. -1 when it never starts. */
static int startup_limit_kib(void) {
    int lo = 16384, hi = 16 << 20; /* 16 MiB .. 16 GiB */
    char env[128], msg[512];
    snprintf(env, sizeof env, "ulimit -v %d;", hi);
    if (run_cli(env, "--version", msg, sizeof msg) != 0) return -1;
    while (hi - lo > 4096) {
        int mid = lo + (hi - lo) / 2;
        snprintf(env, sizeof env, "ulimit -v %d;", mid);
        if (run_cli(env, "--version", msg, sizeof msg) == 0) hi = mid;
        else lo = mid;
    }
    return hi;
}
#endif

#ifdef MAMBA2_HAVE_CPU
/* The CPU path's threads each need an OpenBLAS work buffer (128 MiB of address space) when prefill's
 * products run on all of them at once; OpenBLAS retries a failed allocation forever. The backend
 * takes them when it is made, right after checking that they fit (cpu_blas_take_buffers()). It once
 * took them with a product on each thread, which took only as many as ran at the same moment: on a
 * busy machine often one, and the first prefill, past the check, then hung allocating the second
 * wherever the limit left less than 128 MiB (results/robustness.md, 2026-12-08). Here: the smallest limit the threads' check lets through (bisected on its
 * message), then 17 limits from there in steps of 1 MiB, the window where the model's own copies
 * fill the rest, each with two busy loops running beside it; every run must end (30 s) with its
 * result or our message. */
static void test_cli_blas_buffers_busy(void) {
#if defined(__SANITIZE_ADDRESS__)
    printf("\n    skipped under AddressSanitizer: no `ulimit -v` run can start (the plain build runs this test)");
#else
    const char *cmd = "generate data/stdlib-mamba2 --ids '1 2 3' -n 4 --backend cpu --threads 2";
    char env[256], msg[8192];
    int base = startup_limit_kib(), lo, hi;
    CU_ASSERT_FATAL(base > 0);
    lo = base, hi = base + 1200000;
    snprintf(env, sizeof env, "unset OPENBLAS_NUM_THREADS; ulimit -v %d; timeout 60", hi);
    CU_ASSERT_EQUAL_FATAL(run_cli(env, cmd, msg, sizeof msg), 0);
    while (hi - lo > 256) {
        int mid = lo + (hi - lo) / 2;
        snprintf(env, sizeof env, "unset OPENBLAS_NUM_THREADS; ulimit -v %d; timeout 60", mid);
        int rc = run_cli(env, cmd, msg, sizeof msg);
        if (rc != 0 && (rc != 1 || strstr(msg, "of address space for"))) lo = mid;
        else hi = mid;
    }
    printf("\n    the threads' check lets the CPU path through from ulimit -v %d KiB", hi);
    pid_t hogs[2];
    for (int i = 0; i < 2; i++)
        if ((hogs[i] = fork()) == 0) {
            alarm(300); /* ends the loop should this test not */
            for (volatile unsigned long n = 0;; n++) {
            }
        }
    int ended = 0;
    for (int k = 0; k <= 16; k++) {
        snprintf(env, sizeof env, "unset OPENBLAS_NUM_THREADS; ulimit -v %d; timeout 30", hi + 1024 * k);
        int rc = run_cli(env, cmd, msg, sizeof msg);
        ended += rc == 0 || rc == 1;
        if (rc != 0 && rc != 1) printf("\n    ulimit -v %d: exit %d (124: a hang, killed)", hi + 1024 * k, rc);
    }
    for (int i = 0; i < 2; i++)
        if (hogs[i] > 0) kill(hogs[i], SIGKILL), waitpid(hogs[i], NULL, 0);
    printf("\n    17 limits from there, beside two busy loops: %d ended", ended);
    CU_ASSERT_EQUAL(ended, 17);
#endif
}
#endif

/* Under an address-space limit (ulimit -v) every command ends, with our message or its result, at any
 * value at which the program can start: OpenBLAS's idle workers once retried their allocation forever
 * and hung the exit, and libgomp ended the program with its own message when a thread's stack did not
 * fit. The limits are the program's own start-up size plus 10 to 340 MB. */
static void test_cli_address_limit(void) {
#if defined(__SANITIZE_ADDRESS__)
    printf("\n    skipped under AddressSanitizer: it reserves terabytes of address space, so no `ulimit -v` "
           "run can start (the plain build runs this test)");
#else
    int base = startup_limit_kib();
    CU_ASSERT_FATAL(base > 0);
    printf("\n    the program starts from ulimit -v %d KiB", base);
    static const int extra_kib[] = {10000, 40000, 140000, 340000};
    static const char *const commands[] = {"info data/stdlib-mamba2",
#ifdef MAMBA2_HAVE_CPU
                                           "generate data/stdlib-mamba2 --ids '1 2 3' -n 4 --backend cpu --threads 2",
#endif
                                           "generate data/stdlib-mamba2 --ids '1 2 3' -n 4 --backend ref"};
    char env[256], msg[8192];
    for (size_t i = 0; i < sizeof extra_kib / sizeof *extra_kib; i++)
        for (size_t c = 0; c < sizeof commands / sizeof *commands; c++) {
            /* the program's own restart sets OPENBLAS_NUM_THREADS: start it without one */
            snprintf(env, sizeof env, "unset OPENBLAS_NUM_THREADS; ulimit -v %d; timeout 60", base + extra_kib[i]);
            int rc = run_cli(env, commands[c], msg, sizeof msg);
            printf("\n    ulimit -v %d, %.24s...: exit %d", base + extra_kib[i], commands[c], rc);
            CU_ASSERT(rc == 0 || rc == 1); /* 124: timeout killed a hang; anything else: a crash */
            if (rc == 1) {
                EXPECT_MSG(msg, "mamba2 ", "ulimit -v");
                CU_ASSERT_PTR_NULL(strstr(msg, "libgomp"));
            }
        }
#endif
}

/* A context or batch that does not fit is refused up front: how much is needed, how much there is. */
static void test_cli_resources(void) {
    char msg[8192];
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    char *dir = tiny_dir(&s);
    /* 20000 tokens of 50 logits (4 MB of logits alone) against a 1 MiB allowance */
    size_t cap = 20000 * 2 + 9000;
    char *args = malloc(cap);
    int n = snprintf(args, cap, "logits %s -o %s/out.f32 --ids '", dir, dir);
    for (int t = 0; t < 20000; t++) n += snprintf(args + n, cap - n, "%d ", t % 10);
    snprintf(args + n, cap - n, "'");
    CU_ASSERT_EQUAL(run_cli("MAMBA2_MAX_MEMORY=1M", args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, "a prefill of 20000 tokens", "needs", "MiB of host memory, have 1.0 MiB", "MAMBA2_MAX_MEMORY");
    CU_ASSERT(!exists(dir, "out.f32") && count_temporaries(dir) == 0);
    /* the same in step mode, and a generous allowance lets it run */
    size_t len = strlen(args);
    snprintf(args + len, cap - len, " --mode step");
    CU_ASSERT_EQUAL(run_cli("MAMBA2_MAX_MEMORY=1M", args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, "stepping through 20000 tokens", "needs");
    snprintf(args, cap, "logits %s -o %s/out.f32 --ids '1 2 3'", dir, dir);
    CU_ASSERT_EQUAL(run_cli("MAMBA2_MAX_MEMORY=1G", args, msg, sizeof msg), 0);
    CU_ASSERT(exists(dir, "out.f32"));
    /* a batch of 4096 sequences for bench */
    snprintf(args, cap, "bench %s --backend ref --batch 4096 --prompt-len 4 --gen-len 1 --reps 1", dir);
    CU_ASSERT_EQUAL(run_cli("MAMBA2_MAX_MEMORY=1M", args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, "a batch of 4096 sequences", "needs", "have 1.0 MiB");
    /* bench: a bad size in a batch list is named; a prompt shorter than the decode measurement's
     * own prompt, with several batches, runs (it once overflowed the token buffer) */
    snprintf(args, cap, "bench %s --backend ref --batch 1,0 --prompt-len 4 --gen-len 1 --reps 1", dir);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 2);
    EXPECT_MSG(msg, "--batch expects an integer in [1, 4096], got '0'");
    snprintf(args, cap, "bench %s --backend ref --batch 2,x --prompt-len 4 --gen-len 1 --reps 1", dir);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 2);
    EXPECT_MSG(msg, "got 'x'");
    snprintf(args, cap, "bench %s --backend ref --batch 1,2,3 --prompt-len 4 --gen-len 1 --reps 1", dir);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 0);
    /* check: a misspelt backend is refused before anything runs */
    snprintf(args, cap, "check %s --backends ref,cpuu --tokens 3", dir);
    CU_ASSERT_EQUAL(run_cli(NULL, args, msg, sizeof msg), 2);
    EXPECT_MSG(msg, "unknown backend 'cpuu'", "this build has");
    /* generate and check */
    snprintf(args, cap, "generate %s --ids '1 2 3' -n 2", dir);
    CU_ASSERT_EQUAL(run_cli("MAMBA2_MAX_MEMORY=1K", args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, "a prompt of 3 tokens", "needs", "have 1.0 KiB");
    snprintf(args, cap, "check %s --backends ref --tokens 5000", dir);
    CU_ASSERT_EQUAL(run_cli("MAMBA2_MAX_MEMORY=1M", args, msg, sizeof msg), 1);
    EXPECT_MSG(msg, "on 5000 tokens", "needs");
    free(args);
    test_rmtree(dir);
    free(dir);

    /* the estimate grows with the tokens and covers at least the state */
    Mamba2Config c;
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL_FATAL(mamba2_config_parse("{\"hidden_size\": 4096, \"num_hidden_layers\": 64, \"vocab_size\": 32768, "
                                              "\"n_groups\": 8}", "c", &c, &e), 0);
    CU_ASSERT(mamba2_forward_bytes(&c, 1) >= (double)mamba2_config_state_bytes(&c));
    CU_ASSERT(mamba2_forward_bytes(&c, 1000) > mamba2_forward_bytes(&c, 10));
    CU_ASSERT(mamba2_host_memory_available(NULL) > 0);
    CU_ASSERT_NOT_EQUAL(mamba2_check_memory("x", 1e30, &e), 0);
    EXPECT_MSG(e.msg, "x needs", "have");
}

/* ------------------------------------------------------------ fuzz corpus and regressions */

/* Every file of dir through target; returns how many inputs ran, -1 on a failure. */
static int replay_dir(const char *name, const char *dir, FuzzTarget target) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        uint8_t *data = malloc((size_t)sb.st_size + 1);
        size_t k = f && data ? fread(data, 1, (size_t)sb.st_size, f) : 0;
        if (f) fclose(f);
        if (k == (size_t)sb.st_size && target(data, k)) {
            printf("\n    %s: %s fails", name, path);
            failed = 1;
        }
        free(data);
        n++;
    }
    closedir(d);
    return failed ? -1 : n;
}

static void test_fuzz_replay(void) {
    printf("\n   ");
    for (int i = 0; fuzz_target_names[i]; i++) {
        const char *name = fuzz_target_names[i];
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", name);
        int reg = replay_dir(name, dir, fuzz_target_by_name(name));
        snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", name);
        int corpus = replay_dir(name, dir, fuzz_target_by_name(name));
        CU_ASSERT(reg >= 0 && corpus >= 0);
        CU_ASSERT(corpus > 0); /* every parser has a committed corpus */
        printf(" %s %d+%d", name, corpus, reg);
    }
    printf(" (corpus + regression inputs)\n");
    fuzz_targets_cleanup();
}

int register_malformed_tests(void) {
    CU_pSuite s = CU_add_suite("malformed", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "safetensors: header length past the end of the file", test_st_header_length) ||
        !CU_add_test(s, "safetensors: offsets out of range, overlapping, misaligned", test_st_offsets) ||
        !CU_add_test(s, "safetensors: data length != dtype x shape, overflowing shapes", test_st_sizes) ||
        !CU_add_test(s, "safetensors: malformed headers and entries", test_st_structure) ||
        !CU_add_test(s, "config: negative, huge, NaN and Infinity counts; overflowing products", test_config_bad_counts) ||
        !CU_add_test(s, "checkpoint: duplicate tensors across shards, bad index", test_duplicate_tensors) ||
        !CU_add_test(s, "checkpoint: vocabulary != embedding rows; tokenizer vs model", test_vocab_mismatch) ||
        !CU_add_test(s, "state: bad magic, version 1, flipped bit, shape, identity, position, NaN, size, FIFO",
                     test_state_files) ||
        !CU_add_test(s, "state: another model of the same shapes and header bytes", test_state_other_model) ||
        !CU_add_test(s, "state: a position at 2^53 is not run past", test_state_position_bound) ||
        !CU_add_test(s, "checkpoint: loading is linear in the tensors (x8 layers: <= x24 time)", test_checkpoint_scaling) ||
        !CU_add_test(s, "checkpoint: more tensors than the layers use, refused before parsing", test_checkpoint_tensor_count) ||
        !CU_add_test(s, "tokenizer: Prepend growth, long chains, truncated JSON, an array, an id-less added token",
                     test_tokenizer_hostile) ||
        !CU_add_test(s, "tokenizer: SentencePiece loading linear in a piece's length; duplicate pieces", test_spm_hostile) ||
        !CU_add_test(s, "tokenizer: added-token matching linear in the text (a 20 KB added token)",
                     test_added_token_scaling) ||
        !CU_add_test(s, "tokenizer: SentencePiece user-piece matching linear in the text", test_user_piece_scaling) ||
        !CU_add_test(s, "files: FIFOs, a directory, a 3 GB sparse config refused at once; pipes read", test_special_files) ||
        !CU_add_test(s, "cli: exit 1, file and problem named, no output left behind", test_cli_malformed) ||
        !CU_add_test(s, "cli: a context or batch that does not fit is refused up front", test_cli_resources) ||
        !CU_add_test(s, "cli: under ulimit -v every command ends, with its result or our message", test_cli_address_limit) ||
#ifdef MAMBA2_HAVE_CPU
        !CU_add_test(s, "cli: under ulimit -v and a busy CPU, the CPU path's first prefill ends", test_cli_blas_buffers_busy) ||
#endif
        !CU_add_test(s, "fuzz: committed corpus and crash regressions replay clean", test_fuzz_replay))
        return -1;
    return 0;
}
