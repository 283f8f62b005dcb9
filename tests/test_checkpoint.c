/**
 * @file test_checkpoint.c
 * @brief config.json parsing and checkpoint loading: what must load, and every bad input
 *        that must be refused with a message naming the file, the tensor and the shapes.
 */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "cli.h"
#include "model.h"
#include "tests.h"

#define BASE "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": 100"

static int parse(const char *json, Mamba2Config *c, Mamba2Error *e) {
    memset(e, 0, sizeof *e);
    return mamba2_config_parse(json, "config.json", c, e);
}

static void test_config_infinity_forms(void) {
    Mamba2Config c;
    Mamba2Error e;
    CU_ASSERT_EQUAL(parse("{" BASE ", \"time_step_limit\": [0.0, Infinity]}", &c, &e), 0);
    CU_ASSERT(isinf(c.dt_max) && c.dt_max > 0);
    CU_ASSERT_EQUAL(parse("{" BASE ", \"time_step_limit\": [0.0, {\"__float__\": \"Infinity\"}]}", &c, &e), 0);
    CU_ASSERT(isinf(c.dt_max) && c.dt_max > 0);
    CU_ASSERT_EQUAL(parse("{" BASE ", \"time_step_limit\": [0.001, 0.1]}", &c, &e), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.dt_min, 0.001, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(c.dt_max, 0.1, 1e-12);
    CU_ASSERT_NOT_EQUAL(parse("{" BASE ", \"time_step_limit\": [0.1, 0.01]}", &c, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "time_step_limit"));
}

/* Missing optional fields take mamba_ssm's defaults; num_heads is derived. */
static void test_config_defaults(void) {
    Mamba2Config c;
    Mamba2Error e;
    CU_ASSERT_EQUAL_FATAL(parse("{" BASE "}", &c, &e), 0);
    CU_ASSERT_EQUAL(c.d_state, 128);
    CU_ASSERT_EQUAL(c.d_conv, 4);
    CU_ASSERT_EQUAL(c.expand, 2);
    CU_ASSERT_EQUAL(c.head_dim, 64);
    CU_ASSERT_EQUAL(c.n_groups, 1);
    CU_ASSERT_EQUAL(c.n_heads, 2); /* 2 * 64 / 64 */
    CU_ASSERT_EQUAL(c.chunk_size, 256);
    CU_ASSERT_EQUAL(c.use_conv_bias, 1);
    CU_ASSERT_EQUAL(c.d_inner, 128);
    CU_ASSERT_EQUAL(c.conv_dim, 128 + 2 * 128);
    CU_ASSERT_EQUAL(c.d_in_proj, 2 * 128 + 2 * 128 + 2);
    CU_ASSERT(c.dt_min == 0 && isinf(c.dt_max));
}

/* The real Codestral-7B numbers: 7,285,403,648 parameters, 263.5 MiB of state. */
static void test_config_codestral(void) {
    Mamba2Config c;
    Mamba2Error e;
    CU_ASSERT_EQUAL_FATAL(parse("{\"hidden_size\": 4096, \"num_hidden_layers\": 64, \"vocab_size\": 32768, "
                                "\"num_heads\": 128, \"head_dim\": 64, \"state_size\": 128, \"n_groups\": 8, "
                                "\"expand\": 2, \"conv_kernel\": 4, \"tie_word_embeddings\": false, "
                                "\"norm_before_gate\": true, \"time_step_limit\": [0.0, Infinity]}",
                                &c, &e),
                          0);
    CU_ASSERT_EQUAL(c.d_in_proj, 18560);
    CU_ASSERT_EQUAL(c.conv_dim, 10240);
    CU_ASSERT_EQUAL(mamba2_config_param_count(&c), 7285403648LL);
    CU_ASSERT_EQUAL(mamba2_config_state_bytes(&c), 276299776LL); /* 263.5 MiB */
    CU_ASSERT_EQUAL(c.norm_before_gate, 1);
}

/* Mistral's params.json: dim / n_layers / n_groups / tie_embeddings. */
static void test_config_params_json(void) {
    Mamba2Config c;
    Mamba2Error e;
    CU_ASSERT_EQUAL_FATAL(parse("{\"dim\": 4096, \"n_layers\": 64, \"vocab_size\": 32768, \"n_groups\": 8, "
                                "\"rms_norm\": true, \"residual_in_fp32\": true, \"fused_add_norm\": true, "
                                "\"pad_vocab_size_multiple\": 1, \"tie_embeddings\": false}",
                                &c, &e),
                          0);
    CU_ASSERT_EQUAL(c.n_heads, 128);
    CU_ASSERT_EQUAL(c.n_groups, 8);
    CU_ASSERT_EQUAL(mamba2_config_param_count(&c), 7285403648LL);
}

static void expect_config_error(const char *json, const char *needle) {
    Mamba2Config c;
    Mamba2Error e;
    CU_ASSERT_NOT_EQUAL(parse(json, &c, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needle));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "config.json"));
    if (!strstr(e.msg, needle)) printf("\n    message was: %s (wanted '%s')", e.msg, needle);
}

static void test_config_errors(void) {
    expect_config_error("{\"hidden_size\": 64, \"vocab_size\": 10", "malformed JSON");
    expect_config_error("{\"hidden_size\": 64, \"vocab_size\": 10}", "num_hidden_layers");
    expect_config_error("{" BASE ", \"num_heads\": 3}", "num_heads * head_dim");
    expect_config_error("{" BASE ", \"head_dim\": 48}", "not divisible by head_dim");
    expect_config_error("{" BASE ", \"n_groups\": 3}", "not divisible by n_groups");
    expect_config_error("{\"hidden_size\": -4, \"num_hidden_layers\": 2, \"vocab_size\": 10}", "hidden_size");
    expect_config_error("{\"hidden_size\": NaN, \"num_hidden_layers\": 2, \"vocab_size\": 10}", "hidden_size");
    expect_config_error("{\"hidden_size\": 1e30, \"num_hidden_layers\": 2, \"vocab_size\": 10}", "hidden_size");
    expect_config_error("{" BASE ", \"use_bias\": true}", "use_bias");
    expect_config_error("[1, 2]", "object");
}

/* ------------------------------------------------------------ checkpoints */

static int load_tiny(const TinyModelSpec *s, Mamba2Model *m, Mamba2Error *e, char **dir) {
    *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(*dir);
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(*dir, s), 0);
    memset(e, 0, sizeof *e);
    return mamba2_model_load(*dir, m, e);
}

static void test_load_valid(void) {
    TinyModelSpec s;
    Mamba2Model m;
    Mamba2Error e;
    char *dir;
    const char *dtypes[] = {"F32", "BF16"};
    for (int tie = 0; tie < 2; tie++)
        for (int k = 0; k < 2; k++) {
            test_tiny_spec_default(&s);
            s.tie = tie;
            s.dtype = dtypes[k];
            int rc = load_tiny(&s, &m, &e, &dir);
            CU_ASSERT_EQUAL(rc, 0);
            if (rc) printf("\n    %s", e.msg);
            else {
                CU_ASSERT_EQUAL(m.cfg.tie_embeddings, tie);
                CU_ASSERT_EQUAL(m.w.lm_head.data == m.w.embeddings.data, tie);
                CU_ASSERT_EQUAL(m.w.layers[1].in_proj.shape[0], m.cfg.d_in_proj);
                CU_ASSERT_EQUAL(mamba2_model_weight_bytes(&m, k ? MAMBA2_BF16 : MAMBA2_F32),
                                mamba2_config_param_count(&m.cfg) * (k ? 2 : 4));
                mamba2_model_free(&m);
            }
            test_rmtree(dir);
            free(dir);
        }
}

/* Load a defective tiny model; the load must fail and the message contain every needle. */
static void expect_load_error(const TinyModelSpec *s, const char *n1, const char *n2, const char *n3) {
    Mamba2Model m;
    Mamba2Error e;
    char *dir;
    int rc = load_tiny(s, &m, &e, &dir);
    CU_ASSERT_NOT_EQUAL(rc, 0);
    const char *needles[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i] && !strstr(e.msg, needles[i])) {
            CU_FAIL("error message lacks an expected part");
            printf("\n    message: %s\n    lacks:   %s", e.msg, needles[i]);
        }
    if (!rc) mamba2_model_free(&m);
    test_rmtree(dir);
    free(dir);
}

static void test_load_missing_tensor(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.drop = "backbone.layers.1.mixer.A_log";
    expect_load_error(&s, "backbone.layers.1.mixer.A_log", "not found", NULL);
    s.drop = "lm_head.weight";
    expect_load_error(&s, "lm_head.weight", "not found", NULL);
}

static void test_load_wrong_shape(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.reshape = "backbone.layers.0.mixer.in_proj.weight";
    /* in_proj: 2*32 + 2*2*8 + 4 = 100 rows; written with 101 */
    expect_load_error(&s, "model.safetensors: tensor 'backbone.layers.0.mixer.in_proj.weight'", "[101, 16]",
                      "expected [100, 16]");
    s.reshape = "backbone.embeddings.weight";
    expect_load_error(&s, "backbone.embeddings.weight", "[51, 16]", "expected [50, 16]");
}

static void test_load_unknown_dtype(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.bad_dtype = "backbone.layers.0.mixer.D";
    expect_load_error(&s, "backbone.layers.0.mixer.D", "dtype I64", "model.safetensors");
}

static void test_load_malformed_config(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.config_json = "{\"hidden_size\": 16, \"num_hidden_layers\": 2,,, ";
    expect_load_error(&s, "config.json", "malformed JSON", NULL);
}

/* Cut the file at @p keep bytes. */
static void truncate_to(const char *dir, const char *name, long keep) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CU_ASSERT_EQUAL(truncate(path, keep), 0);
}

static void test_load_truncated(void) {
    TinyModelSpec s;
    Mamba2Model m;
    Mamba2Error e;
    test_tiny_spec_default(&s);
    long cuts[] = {-100, 20, 5}; /* data cut short; header cut short; not even the length prefix */
    const char *needles[] = {"truncated", "exceeds the file", "too short"};
    for (int i = 0; i < 3; i++) {
        char *dir = test_tmpdir(), path[4200];
        CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(dir, &s), 0);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        struct stat sb;
        stat(path, &sb);
        truncate_to(dir, "model.safetensors", cuts[i] < 0 ? sb.st_size + cuts[i] : cuts[i]);
        memset(&e, 0, sizeof e);
        int rc = mamba2_model_load(dir, &m, &e);
        CU_ASSERT_NOT_EQUAL(rc, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "model.safetensors"));
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needles[i]));
        if (!strstr(e.msg, needles[i])) printf("\n    message: %s", e.msg);
        if (!rc) mamba2_model_free(&m);
        test_rmtree(dir);
        free(dir);
    }
}

static void test_load_no_files(void) {
    Mamba2Model m;
    Mamba2Error e = {{0}};
    char *dir = test_tmpdir();
    CU_ASSERT_NOT_EQUAL(mamba2_model_load(dir, &m, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "no config.json"));
    test_rmtree(dir);
    free(dir);
}

/* cli_parse_list: the one parser of the comma-separated options of mamba2 bench and bench_model
 * (it prints its refusals; they go to stderr here). */
/* Run cli_parse_list() with stderr captured into @p msg: the usage message it prints on a refusal. */
static int parse_list_quietly(const char *opt, const char *s, double *v, int max, double lo, double hi, int integer,
                              char *msg, size_t cap) {
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(fileno(stderr));
    if (tmp) dup2(fileno(tmp), fileno(stderr));
    int n = cli_parse_list(opt, s, v, max, lo, hi, integer);
    fflush(stderr);
    if (saved >= 0) dup2(saved, fileno(stderr)), close(saved);
    msg[0] = 0;
    if (tmp) {
        rewind(tmp);
        size_t k = fread(msg, 1, cap - 1, tmp);
        msg[k] = 0;
        fclose(tmp);
    }
    return n;
}

static void test_cli_parse_list(void) {
    double v[4];
    char msg[1024];
    CU_ASSERT_EQUAL(parse_list_quietly("--batch", "1,4,64", v, 4, 1, 4096, 1, msg, sizeof msg), 3);
    CU_ASSERT(v[0] == 1 && v[1] == 4 && v[2] == 64 && !msg[0]);
    CU_ASSERT_EQUAL(parse_list_quietly("--mem-limit", "24,72.5", v, 4, 0.001, 1e6, 0, msg, sizeof msg), 2);
    CU_ASSERT(v[0] == 24 && v[1] == 72.5 && !msg[0]);
    static const struct {
        const char *opt, *s, *says; /* refused, and the message names the option and says why */
        int integer;
    } bad[] = {
        {"--batch", "2.5", "expects an integer in [1, 4096], got '2.5'", 1},       /* not whole */
        {"--batch", "1,,2", "expects an integer in [1, 4096], got ''", 1},         /* an empty item */
        {"--batch", "1,2,", "expects an integer in [1, 4096], got ''", 1},         /* a trailing comma */
        {"--batch", "", "expects an integer in [1, 4096], got ''", 1},             /* nothing */
        {"--batch", "1,2,3,4,5", "takes at most 4 values, got '1,2,3,4,5'", 1},    /* more than max */
        {"--batch", "4097", "got '4097'", 1},                                      /* out of range */
        {"--batch", "99999999999999999999", "got '99999999999999999999'", 1},      /* overflow */
        {"--mem-limit", "nan", "expects a number in [0.001, 1e+06], got 'nan'", 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        double lo = bad[i].integer ? 1 : 0.001, hi = bad[i].integer ? 4096 : 1e6;
        CU_ASSERT_EQUAL(parse_list_quietly(bad[i].opt, bad[i].s, v, 4, lo, hi, bad[i].integer, msg, sizeof msg), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, bad[i].opt));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, bad[i].says));
    }
}

/* The program itself: a bad checkpoint gives exit status 1, a message, and no output file. */
static void test_cli_bad_input(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.reshape = "backbone.norm_f.weight";
    char *dir = test_tmpdir(), cmd[9000], out[4200];
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(dir, &s), 0);
    snprintf(out, sizeof out, "%s/logits.f32", dir);
    snprintf(cmd, sizeof cmd, "%s logits %s --ids '1 2 3' -o %s 2>%s/stderr.txt", test_program(), dir, out, dir);
    int status = system(cmd);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);
    char path[4200], msg[2048] = {0};
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(msg, 1, sizeof msg - 1, f);
        msg[n] = 0;
        fclose(f);
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "backbone.norm_f.weight"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "expected [16]"));
    /* a token outside the vocabulary is refused too */
    test_tiny_spec_default(&s);
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(dir, &s), 0);
    snprintf(cmd, sizeof cmd, "%s logits %s --ids '1 50' -o %s 2>/dev/null", test_program(), dir, out);
    status = system(cmd);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);
    test_rmtree(dir);
    free(dir);
}

/** Every progress call: fractions that only rise, each in [0, 1], and what was being done. */
typedef struct {
    int calls, rising, in_range;
    double last;    /* the last fraction */
    char what[64];  /* the last "what" */
    int whats;      /* how many times "what" changed */
} ProgressLog;

static void log_progress(void *ctx, double done, double total, const char *what) {
    ProgressLog *p = ctx;
    double f = total > 0 ? done / total : 1;
    if (strcmp(p->what, what)) { /* a new stage starts from its own 0 */
        snprintf(p->what, sizeof p->what, "%s", what);
        p->whats++;
        p->last = -1;
    }
    p->calls++;
    p->rising &= f >= p->last;
    p->in_range &= f >= 0 && f <= 1;
    p->last = f;
}

/* Reading the weights at load reports rising fractions that end at 1: directly (a sharded checkpoint,
 * one call per file) and through a backend created with a progress callback (ref; cpu q8 reads them
 * while quantizing, with its own stage). */
static void test_read_weights_progress(void) {
    Mamba2Model m;
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load("data/fixtures/g4_bf16_sharded", &m, &e), 0);
    CU_ASSERT(m.n_files > 1);
    ProgressLog p = {0, 1, 1, -1, "", 0};
    mamba2_model_read_weights(&m, log_progress, &p);
    CU_ASSERT_EQUAL(p.calls, m.n_files); /* one per file, the last one at the end */
    CU_ASSERT(p.rising && p.in_range && p.last == 1);
    CU_ASSERT_STRING_EQUAL(p.what, "reading weights");
    mamba2_model_read_weights(&m, NULL, NULL); /* no callback: fine */

    Mamba2BackendOptions o = {0};
    Mamba2Backend *b = NULL;
    ProgressLog q = {0, 1, 1, -1, "", 0};
    o.progress = log_progress, o.progress_ctx = &q;
    CU_ASSERT_EQUAL(mamba2_backend_create("ref", &m, &o, &b, &e), 0);
    CU_ASSERT(q.calls >= 1 && q.rising && q.in_range && q.last == 1 && q.whats == 1);
    CU_ASSERT_STRING_EQUAL(q.what, "reading weights");
    mamba2_backend_destroy(b);
    if (mamba2_backend_exists("cpu")) {
        ProgressLog r = {0, 1, 1, -1, "", 0};
        o.progress_ctx = &r, o.weights = MAMBA2_WEIGHTS_Q8;
        CU_ASSERT_EQUAL(mamba2_backend_create("cpu", &m, &o, &b, &e), 0);
        CU_ASSERT(r.calls > 1 && r.rising && r.in_range && r.last == 1 && r.whats == 1);
        CU_ASSERT_STRING_EQUAL(r.what, "quantizing weights");
        mamba2_backend_destroy(b);
    }
    mamba2_model_free(&m);
}

int register_checkpoint_tests(void) {
    CU_pSuite s = CU_add_suite("checkpoint", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "config: bare Infinity and {\"__float__\": \"Infinity\"}", test_config_infinity_forms) ||
        !CU_add_test(s, "config: mamba_ssm defaults for missing fields", test_config_defaults) ||
        !CU_add_test(s, "config: Codestral-7B parameter count and state size", test_config_codestral) ||
        !CU_add_test(s, "config: Mistral params.json", test_config_params_json) ||
        !CU_add_test(s, "config: malformed and inconsistent configs refused", test_config_errors) ||
        !CU_add_test(s, "load: F32 and BF16, tied and untied", test_load_valid) ||
        !CU_add_test(s, "load: missing tensor named", test_load_missing_tensor) ||
        !CU_add_test(s, "load: wrong shape names file, tensor, expected and actual", test_load_wrong_shape) ||
        !CU_add_test(s, "load: unknown dtype refused", test_load_unknown_dtype) ||
        !CU_add_test(s, "load: malformed config.json refused", test_load_malformed_config) ||
        !CU_add_test(s, "load: truncated safetensors refused", test_load_truncated) ||
        !CU_add_test(s, "load: empty directory refused", test_load_no_files) ||
        !CU_add_test(s, "cli: bad checkpoint -> exit 1, message, no output file", test_cli_bad_input) ||
        !CU_add_test(s, "cli: comma-separated option lists", test_cli_parse_list) ||
        !CU_add_test(s, "progress of reading the weights: rising fractions ending at 1", test_read_weights_progress))
        return -1;
    return 0;
}
