/**
 * @file test_api.c
 * @brief The public C API (include/mamba2.h) as a program sees it: nothing here but the header's
 *        functions (and the tests' own helpers).
 *
 * On the demo model (data/stdlib-mamba2) and a fixture of another shape: opening and its errors,
 * the hyper-parameters, backends by name and "auto", errors as codes and messages (missing
 * directory, bad token id, T = 0, a state of another model), prefill against token-by-token and
 * batched steps, the greedy continuation of greedy.json through the tokenizer, state save / load /
 * clone / clear, the layer hook against a prefill and across backends, handles released in any
 * order, the tokenizer's and the sampler's buffers and errors, and the three SSD forms against
 * each other. test_api_library.c checks the library itself (exports, threads, silence).
 */
#include <CUnit/CUnit.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba2.h"
#include "tests.h"

#define DEMO "data/stdlib-mamba2"
#define OTHER "data/fixtures/g1_f32_single" /* a model of another shape */

/* Logits of token-by-token or batched decode against prefill, and of one backend's layers against
 * another's: notebooks-docs/design.md §4 (relative L2 1e-4 for fp32 arithmetic). Measured here:
 * ~1e-6 (ref, cpu). */
#define RUN_TOL 1e-4
/* The same on the gpu backend, whose GEMMs round activations to bf16: tests/test_gpu.c's ROW_TOL. */
#define GPU_ROW_TOL 3e-2
/* The SSD forms against each other: as tests/test_ssd.c (fp32 storage, double sums; ~1e-7 measured). */
#define SSD_TOL 2e-6

/* 1 when @p name is one of the backends built in. */
static int built(const char *name) { return strstr(mamba2_backend_list(), name) != NULL; }

/* The demo model (fails the test when it cannot be opened). */
static mamba2_model *open_model(const char *dir) {
    mamba2_error e;
    mamba2_model *m = mamba2_model_open(dir, &e);
    if (!m) printf("\n    %s: %s", dir, e.message);
    return m;
}

/* A backend with one thread (the model is small), or NULL with the reason printed. */
static mamba2_backend *open_backend(mamba2_model *m, const char *name) {
    mamba2_backend_options o = {0};
    mamba2_error e;
    o.n_threads = 1;
    mamba2_backend *b = mamba2_backend_open(m, name, &o, &e);
    if (!b) printf("\n    backend %s: %s", name, e.message);
    return b;
}

/* The main prompt's ids followed by the first @p extra tokens of its greedy continuation. */
static int32_t *prompt_and_continuation(const TestDemoCase *c, int extra, int *T) {
    int32_t *t = malloc((size_t)(c->T + extra) * sizeof *t);
    *T = 0;
    if (!t) return NULL;
    memcpy(t, c->ids, (size_t)c->T * sizeof *t);
    memcpy(t + c->T, c->greedy, (size_t)extra * sizeof *t);
    *T = c->T + extra;
    return t;
}

/* ------------------------------------------------------------------ version, errors, models */

static void test_version_and_status(void) {
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", MAMBA2_VERSION_MAJOR, MAMBA2_VERSION_MINOR, MAMBA2_VERSION_PATCH);
    CU_ASSERT_STRING_EQUAL(mamba2_version(), want);
    for (int c = MAMBA2_OK; c <= MAMBA2_ERR_MEMORY; c++) CU_ASSERT_PTR_NOT_NULL(mamba2_status_string(c));
    CU_ASSERT_PTR_NULL(mamba2_status_string(-1));
    CU_ASSERT_PTR_NULL(mamba2_status_string(MAMBA2_ERR_MEMORY + 1));
}

static void test_model_open_errors(void) {
    mamba2_error e;
    CU_ASSERT_PTR_NULL(mamba2_model_open("data/no-such-model", &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "data/no-such-model"));
    CU_ASSERT_PTR_NULL(mamba2_model_open("README.md", &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "not a directory"));
    CU_ASSERT_PTR_NULL(mamba2_model_open("tests", &e)); /* a directory, but no checkpoint */
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "tests"));
    CU_ASSERT_PTR_NULL(mamba2_model_open(NULL, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NULL(mamba2_model_open("data/no-such-model", NULL)); /* the error may be left out */
    mamba2_model_close(NULL);
}

/* An integer field of config.json. */
static int config_int(json_object *cfg, const char *key) {
    json_object *v;
    return json_object_object_get_ex(cfg, key, &v) ? json_object_get_int(v) : -1;
}

static void test_model_dims(void) {
    mamba2_error e;
    mamba2_model *m = mamba2_model_open(DEMO, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(e.code, MAMBA2_OK);
    CU_ASSERT_STRING_EQUAL(e.message, "");
    json_object *cfg = json_object_from_file(DEMO "/config.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    int H = config_int(cfg, "num_heads"), P = config_int(cfg, "head_dim"), N = config_int(cfg, "state_size");
    int G = config_int(cfg, "n_groups"), K = config_int(cfg, "conv_kernel"), L = config_int(cfg, "num_hidden_layers");
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_VOCAB_SIZE), config_int(cfg, "vocab_size"));
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_N_LAYER), L);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_D_MODEL), config_int(cfg, "hidden_size"));
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_N_HEADS), H);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_HEAD_DIM), P);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_D_STATE), N);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_N_GROUPS), G);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_D_CONV), K);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_CHUNK_SIZE), config_int(cfg, "chunk_size"));
    int d_in = H * P, conv_dim = d_in + 2 * G * N;
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_D_INNER), d_in);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_CONV_DIM), conv_dim);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_D_IN_PROJ), 2 * d_in + 2 * G * N + H);
    CU_ASSERT_EQUAL(mamba2_model_state_bytes(m), 4LL * L * ((long long)conv_dim * (K - 1) + (long long)H * P * N));
    CU_ASSERT_STRING_EQUAL(mamba2_model_dir(m), DEMO);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, -1), -1);
    CU_ASSERT_EQUAL(mamba2_model_dim(m, MAMBA2_DIM_CHUNK_SIZE + 1), -1);
    CU_ASSERT_EQUAL(mamba2_model_dim(NULL, MAMBA2_DIM_VOCAB_SIZE), -1);
    CU_ASSERT_EQUAL(mamba2_model_n_params(NULL), -1);
    CU_ASSERT_PTR_NULL(mamba2_model_dir(NULL));

    /* the sizes of the configuration alone are the model's */
    long long params = 0, state = 0;
    CU_ASSERT_EQUAL(mamba2_config_sizes(json_object_to_json_string(cfg), &params, &state, &e), MAMBA2_OK);
    CU_ASSERT(params > 0 && params == mamba2_model_n_params(m));
    CU_ASSERT_EQUAL(state, mamba2_model_state_bytes(m));
    CU_ASSERT_EQUAL(mamba2_config_sizes("{\"hidden_size\": 16", &params, &state, &e), MAMBA2_ERR_FORMAT);
    CU_ASSERT(e.message[0] != 0);
    json_object_put(cfg);
    mamba2_model_close(m);
}

/* ------------------------------------------------------------------ backends */

/** What the progress callback saw. */
typedef struct {
    int calls;
    double done, total; /* of the last call */
} Progress;

static void on_progress(void *ctx, double done, double total, const char *what) {
    Progress *p = ctx;
    p->calls++, p->done = done, p->total = total;
    (void)what;
}

static void test_backend_open(void) {
    mamba2_model *m = open_model(DEMO);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    mamba2_error e;
    CU_ASSERT_EQUAL(strncmp(mamba2_backend_list(), "ref", 3), 0);
    /* each built-in backend by name ("gpu" may be built but unable to start on this machine) */
    const char *names[] = {"ref", "cpu", "gpu"};
    const char *first = NULL; /* what "auto" must take: the first of gpu, cpu, ref that starts */
    for (int i = 2; i >= 0; i--) {
        mamba2_backend *b = mamba2_backend_open(m, names[i], NULL, &e);
        if (!b) {
            printf("\n    %s: %s", names[i], e.message);
            CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_BACKEND);
            CU_ASSERT(strcmp(names[i], "gpu") == 0 || !built(names[i])); /* ref and cpu start wherever built */
            continue;
        }
        CU_ASSERT(built(names[i]));
        CU_ASSERT_STRING_EQUAL(mamba2_backend_name(b), names[i]);
        if (!first) first = names[i];
        mamba2_backend_close(b);
    }
    mamba2_backend *a = mamba2_backend_open(m, "auto", NULL, &e), *a2 = mamba2_backend_open(m, NULL, NULL, &e);
    CU_ASSERT(a && a2 && first);
    if (a && a2 && first) {
        printf("\n    auto: %s", mamba2_backend_name(a));
        CU_ASSERT_STRING_EQUAL(mamba2_backend_name(a), first);
        CU_ASSERT_STRING_EQUAL(mamba2_backend_name(a2), first);
    }
    mamba2_backend_close(a);
    mamba2_backend_close(a2);
    CU_ASSERT_PTR_NULL(mamba2_backend_name(NULL));
    mamba2_backend_close(NULL);

    /* bad names and options */
    mamba2_backend_options o = {0};
    CU_ASSERT_PTR_NULL(mamba2_backend_open(m, "tpu", NULL, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "tpu"));
    o.weights = "q3";
    CU_ASSERT_PTR_NULL(mamba2_backend_open(m, "cpu", &o, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "q3"));
    o.weights = NULL, o.precision = "slow";
    CU_ASSERT_PTR_NULL(mamba2_backend_open(m, "cpu", &o, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    o.precision = NULL, o.n_threads = -1;
    CU_ASSERT_PTR_NULL(mamba2_backend_open(m, "ref", &o, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NULL(mamba2_backend_open(NULL, "ref", NULL, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    o.n_threads = 1, o.weights = "q8"; /* a cpu and gpu option: ref refuses it, auto takes gpu or cpu */
    CU_ASSERT_PTR_NULL(mamba2_backend_open(m, "ref", &o, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_BACKEND);

    if (built("cpu")) { /* quantizing reports its progress through the callback, to the end */
        Progress p = {0};
        o.progress = on_progress, o.progress_ctx = &p;
        mamba2_backend *q = mamba2_backend_open(m, "auto", &o, &e);
        CU_ASSERT_PTR_NOT_NULL(q);
        if (q) CU_ASSERT(!strcmp(mamba2_backend_name(q), "cpu") || !strcmp(mamba2_backend_name(q), "gpu"));
        CU_ASSERT(p.calls > 1 && p.done == p.total && p.total > 0);
        mamba2_backend_close(q);
    }
    mamba2_model_close(m);
}

/* ------------------------------------------------------------------ running, and its errors */

static void test_run_errors(void) {
    mamba2_model *m = open_model(DEMO), *other = open_model(OTHER);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    mamba2_error e;
    mamba2_backend *b = open_backend(m, "ref");
    mamba2_state *s = mamba2_state_create(m, &e), *foreign = mamba2_state_create(other, &e);
    CU_ASSERT_FATAL(b && s && foreign);
    int V = mamba2_model_dim(m, MAMBA2_DIM_VOCAB_SIZE);
    float *lg = malloc((size_t)2 * V * sizeof *lg);
    int32_t ok[2] = {1, 5}, bad[3] = {1, V, 2}, negative = -1;

    CU_ASSERT_EQUAL(mamba2_prefill(b, s, ok, 0, lg, 0, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "T = 0"));
    CU_ASSERT_EQUAL(mamba2_prefill(b, s, ok, 0, lg, 0, NULL), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_prefill(b, s, bad, 3, lg, 0, &e), MAMBA2_ERR_TOKEN);
    char id[32];
    snprintf(id, sizeof id, "token id %d", V);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, id));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "position 1"));
    CU_ASSERT_EQUAL(mamba2_prefill(b, s, &negative, 1, lg, 0, &e), MAMBA2_ERR_TOKEN);
    CU_ASSERT_EQUAL(mamba2_state_position(s), 0); /* a refused call leaves the state alone */
    CU_ASSERT_EQUAL(mamba2_prefill(b, NULL, ok, 2, lg, 0, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_prefill(NULL, s, ok, 2, lg, 0, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_prefill(b, s, NULL, 2, lg, 0, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_prefill(b, foreign, ok, 2, lg, 0, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "another shape"));
    CU_ASSERT_EQUAL(mamba2_prefill_observed(b, s, ok, 0, lg, NULL, NULL, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_prefill_observed(b, s, bad, 3, lg, NULL, NULL, &e), MAMBA2_ERR_TOKEN);

    mamba2_state *twice[2] = {s, s}, *mixed[2] = {s, foreign};
    CU_ASSERT_EQUAL(mamba2_step(b, &s, ok, 0, lg, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "B = 0"));
    CU_ASSERT_EQUAL(mamba2_step(b, twice, ok, 2, lg, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "share one state"));
    CU_ASSERT_EQUAL(mamba2_step(b, mixed, ok, 2, lg, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_step(b, &s, bad + 1, 1, lg, &e), MAMBA2_ERR_TOKEN);
    CU_ASSERT_EQUAL(mamba2_step(b, &s, ok, 1, NULL, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_state_position(s), 0);

    /* the backend's own logits arrays: none without a backend or of 0 floats */
    CU_ASSERT_PTR_NULL(mamba2_logits_alloc(NULL, 8, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NULL(mamba2_logits_alloc(b, 0, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "0 floats"));
    CU_ASSERT_PTR_NULL(mamba2_logits_alloc(b, SIZE_MAX, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_MEMORY);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "larger than memory"));
    mamba2_logits_free(b, NULL);

    /* and after all that, a valid call runs, into the backend's own array */
    float *own = mamba2_logits_alloc(b, (size_t)2 * V, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(own);
    CU_ASSERT_EQUAL(e.code, MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_prefill(b, s, ok, 2, own, 1, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(e.code, MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_state_position(s), 2);
    CU_ASSERT(isfinite(own[0]) && isfinite(own[(size_t)2 * V - 1]));
    mamba2_logits_free(b, own);
    free(lg);
    mamba2_state_destroy(s);
    mamba2_state_destroy(foreign);
    mamba2_backend_close(b);
    mamba2_model_close(m);
    mamba2_model_close(other);
}

/* Largest relative L2 error of the rows of got [n, V] against want [n, V]. */
static double worst_row(const float *got, const float *want, int n, int V) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double r = test_rel_l2(got + (size_t)i * V, want + (size_t)i * V, (size_t)V);
        if (!(r <= worst)) worst = r;
    }
    return worst;
}

/* One prefill of every position against the same tokens one step at a time, and against a
 * prefill of the last position only; then three sequences stepped together against each alone. */
static void prefill_vs_step(mamba2_model *m, mamba2_backend *b, const TestDemoCase *c, double tol) {
    const char *name = mamba2_backend_name(b);
    int V = mamba2_model_dim(m, MAMBA2_DIM_VOCAB_SIZE), T;
    int32_t *tok = prompt_and_continuation(c, 20, &T);
    float *full = malloc((size_t)T * V * sizeof *full), *steps = malloc((size_t)T * V * sizeof *steps);
    float *last = malloc((size_t)V * sizeof *last);
    mamba2_error e;
    mamba2_state *a = mamba2_state_create(m, &e), *s = mamba2_state_create(m, &e);
    CU_ASSERT_FATAL(tok && full && steps && last && a && s);
    CU_ASSERT_EQUAL(mamba2_prefill(b, a, tok, T, full, 1, &e), MAMBA2_OK);
    for (int t = 0; t < T; t++) CU_ASSERT_EQUAL(mamba2_step(b, &s, &tok[t], 1, steps + (size_t)t * V, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_state_position(a), T);
    CU_ASSERT_EQUAL(mamba2_state_position(s), T);
    mamba2_state_clear(a);
    CU_ASSERT_EQUAL(mamba2_prefill(b, a, tok, T, last, 0, &e), MAMBA2_OK);
    double step_err = worst_row(steps, full, T, V), last_err = test_rel_l2(last, full + (size_t)(T - 1) * V, V);

    /* three sequences at positions 5, 10 and 0, stepped together and each alone (on a clone) */
    mamba2_state *batch[3], *alone[3];
    int32_t next[3] = {tok[5], tok[10], tok[0]};
    float *together = malloc((size_t)3 * V * sizeof *together), *single = malloc((size_t)3 * V * sizeof *single);
    CU_ASSERT_FATAL(together && single);
    for (int i = 0; i < 3; i++) {
        batch[i] = mamba2_state_create(m, &e);
        CU_ASSERT_FATAL(batch[i] != NULL);
        if (i < 2) CU_ASSERT_EQUAL(mamba2_prefill(b, batch[i], tok, 5 * (i + 1), NULL, 0, &e), MAMBA2_OK);
        alone[i] = mamba2_state_clone(batch[i], &e);
        CU_ASSERT_FATAL(alone[i] != NULL);
        CU_ASSERT_EQUAL(mamba2_step(b, &alone[i], &next[i], 1, single + (size_t)i * V, &e), MAMBA2_OK);
    }
    CU_ASSERT_EQUAL(mamba2_step(b, batch, next, 3, together, &e), MAMBA2_OK);
    double batch_err = worst_row(together, single, 3, V);
    printf("\n    %-4s steps vs prefill %.1e, last-position prefill %.1e, batch of 3 vs alone %.1e", name, step_err,
           last_err, batch_err);
    CU_ASSERT(step_err <= tol);
    CU_ASSERT(last_err <= tol);
    CU_ASSERT(batch_err <= tol);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(mamba2_state_position(batch[i]), i < 2 ? 5 * (i + 1) + 1 : 1);
        mamba2_state_destroy(batch[i]);
        mamba2_state_destroy(alone[i]);
    }
    free(together), free(single), free(tok), free(full), free(steps), free(last);
    mamba2_state_destroy(a);
    mamba2_state_destroy(s);
}

static void test_prefill_vs_step(void) {
    TestDemoCase cases[2];
    int n = test_read_demo_cases(cases);
    mamba2_model *m = open_model(DEMO);
    CU_ASSERT_FATAL(n >= 1 && m);
    const char *names[] = {"ref", "cpu", "gpu"};
    for (int i = 0; i < 3; i++) {
        if (!built(names[i])) continue;
        /* gpu: only where it can start (the gpu suite says why it cannot) */
        mamba2_backend *b = i < 2 ? open_backend(m, names[i]) : mamba2_backend_open(m, "gpu", NULL, NULL);
        if (i < 2) CU_ASSERT_PTR_NOT_NULL(b);
        if (b) prefill_vs_step(m, b, &cases[0], i < 2 ? RUN_TOL : GPU_ROW_TOL);
        mamba2_backend_close(b);
    }
    mamba2_model_close(m);
    test_free_demo_cases(cases, n);
}

/* Text in, text out, with the model's own tokenizer and the backend "auto" picks: greedy.json.
 * On the gpu backend (bf16 activations) the "confident" prompt, whose greedy margins are all
 * large: the main one has a near-tie that bf16 may flip (tests/test_demo_model.c). */
static void test_greedy_continuation(void) {
    TestDemoCase cases[2];
    int n_cases = test_read_demo_cases(cases);
    CU_ASSERT_FATAL(n_cases >= 1);
    mamba2_error e;
    mamba2_model *m = open_model(DEMO);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    mamba2_tokenizer *tok = mamba2_tokenizer_open(mamba2_model_dir(m), &e);
    mamba2_backend *b = open_backend(m, "auto");
    mamba2_state *s = mamba2_state_create(m, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    int on_gpu = !strcmp(mamba2_backend_name(b), "gpu");
    CU_ASSERT_FATAL(!on_gpu || n_cases == 2);
    const TestDemoCase *c = &cases[on_gpu ? 1 : 0];
    int V = mamba2_model_dim(m, MAMBA2_DIM_VOCAB_SIZE);
    float *lg = malloc((size_t)V * sizeof *lg);
    int32_t ids[256], out[256];
    size_t T = 0, len = 0;
    char text[4096];
    CU_ASSERT_FATAL(tok && b && s && lg);
    CU_ASSERT_EQUAL(mamba2_tokenize(tok, c->prompt, strlen(c->prompt), 1, ids, 256, &T, &e), MAMBA2_OK);
    CU_ASSERT(T == (size_t)c->T && !memcmp(ids, c->ids, T * sizeof *ids));
    CU_ASSERT_EQUAL(mamba2_prefill(b, s, ids, (int)T, lg, 0, &e), MAMBA2_OK);
    int agree = 0;
    for (int k = 0; k < c->n; k++) {
        out[k] = mamba2_sample_greedy(lg, V);
        agree += out[k] == c->greedy[k];
        if (k + 1 < c->n) CU_ASSERT_EQUAL(mamba2_step(b, &s, &out[k], 1, lg, &e), MAMBA2_OK);
    }
    printf("\n    %s: %d/%d tokens of the %s greedy continuation", mamba2_backend_name(b), agree, c->n,
           on_gpu ? "confident" : "main");
    CU_ASSERT_EQUAL(agree, c->n);
    CU_ASSERT_EQUAL(mamba2_detokenize(tok, out, (size_t)c->n, text, sizeof text, &len, &e), MAMBA2_OK);
    CU_ASSERT(len == strlen(c->text) && !strcmp(text, c->text));
    free(lg);
    mamba2_state_destroy(s);
    mamba2_backend_close(b);
    mamba2_tokenizer_close(tok);
    mamba2_model_close(m);
    test_free_demo_cases(cases, n_cases);
}

/* ------------------------------------------------------------------ states */

static void test_state_files(void) {
    TestDemoCase cases[2];
    int n_cases = test_read_demo_cases(cases);
    mamba2_model *m = open_model(DEMO), *other = open_model(OTHER);
    CU_ASSERT_FATAL(n_cases >= 1 && m && other);
    mamba2_backend *b = open_backend(m, built("cpu") ? "cpu" : "ref");
    int V = mamba2_model_dim(m, MAMBA2_DIM_VOCAB_SIZE), T, T1 = 7;
    int32_t *tok = prompt_and_continuation(&cases[0], 10, &T);
    float *lg[4];
    for (int i = 0; i < 4; i++) lg[i] = malloc((size_t)V * sizeof(float));
    char *dir = test_tmpdir(), path[4200], junk[4200], foreign_path[4200];
    CU_ASSERT_FATAL(b && tok && dir && lg[3]);
    snprintf(path, sizeof path, "%s/state.bin", dir);
    snprintf(junk, sizeof junk, "%s/junk.bin", dir);
    snprintf(foreign_path, sizeof foreign_path, "%s/foreign.bin", dir);
    mamba2_error e;

    /* prefill T1 tokens, save; a fresh state loads it; a clone copies it; all three continue alike */
    mamba2_state *a = mamba2_state_create(m, &e), *loaded = mamba2_state_create(m, &e), *copy;
    CU_ASSERT_FATAL(a && loaded);
    CU_ASSERT_EQUAL(mamba2_prefill(b, a, tok, T1, NULL, 0, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_state_save_file(a, path, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_state_load_file(loaded, path, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_state_position(loaded), T1);
    copy = mamba2_state_clone(a, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
    CU_ASSERT_EQUAL(mamba2_state_position(copy), T1);
    mamba2_state *three[3] = {a, loaded, copy};
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(mamba2_prefill(b, three[i], tok + T1, T - T1, lg[i], 0, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(memcmp(lg[0], lg[1], (size_t)V * sizeof(float)), 0); /* the same bits: a file holds it exactly */
    CU_ASSERT_EQUAL(memcmp(lg[0], lg[2], (size_t)V * sizeof(float)), 0);

    /* cleared, a state is a new sequence again */
    mamba2_state_clear(copy);
    CU_ASSERT_EQUAL(mamba2_state_position(copy), 0);
    mamba2_state *fresh = mamba2_state_create(m, &e);
    CU_ASSERT_EQUAL(mamba2_prefill(b, copy, tok, T, lg[2], 0, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_prefill(b, fresh, tok, T, lg[3], 0, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(memcmp(lg[2], lg[3], (size_t)V * sizeof(float)), 0);

    /* errors: a missing file, not a state file, the state of another model, an unwritable place */
    CU_ASSERT_EQUAL(mamba2_state_load_file(loaded, "data/no-such-state.bin", &e), MAMBA2_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "no-such-state.bin"));
    FILE *f = fopen(junk, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("not a state", f);
    fclose(f);
    CU_ASSERT_EQUAL(mamba2_state_load_file(loaded, junk, &e), MAMBA2_ERR_FORMAT);
    mamba2_state *foreign = mamba2_state_create(other, &e);
    CU_ASSERT_EQUAL(mamba2_state_save_file(foreign, foreign_path, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_state_load_file(loaded, foreign_path, &e), MAMBA2_ERR_FORMAT);
    CU_ASSERT(e.message[0] != 0);
    CU_ASSERT_EQUAL(mamba2_state_position(loaded), T); /* unchanged by the refused loads */
    CU_ASSERT_EQUAL(mamba2_state_save_file(a, "/no-such-dir/state.bin", &e), MAMBA2_ERR_IO);
    CU_ASSERT_EQUAL(mamba2_state_save_file(NULL, path, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NULL(mamba2_state_clone(NULL, &e));
    CU_ASSERT_PTR_NULL(mamba2_state_create(NULL, &e));
    CU_ASSERT_EQUAL(mamba2_state_position(NULL), -1);
    mamba2_state_clear(NULL);
    mamba2_state_destroy(NULL);

    mamba2_state *all[5] = {a, loaded, copy, fresh, foreign};
    for (int i = 0; i < 5; i++) mamba2_state_destroy(all[i]);
    for (int i = 0; i < 4; i++) free(lg[i]);
    test_rmtree(dir);
    free(dir);
    free(tok);
    mamba2_backend_close(b);
    mamba2_model_close(m);
    mamba2_model_close(other);
    test_free_demo_cases(cases, n_cases);
}

/* Handles released in any order: the model goes with the last of them. (Under SANITIZE=1 a use
 * after free would stop the run here.) */
static void test_release_order(void) {
    mamba2_error e;
    mamba2_model *m = open_model(DEMO);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    mamba2_backend *b = open_backend(m, "ref");
    mamba2_state *s = mamba2_state_create(m, &e);
    CU_ASSERT_FATAL(b && s);
    mamba2_model_close(m); /* first: the backend and the state still hold it */
    int32_t tok[3] = {1, 864, 854};
    CU_ASSERT_EQUAL(mamba2_prefill(b, s, tok, 3, NULL, 0, &e), MAMBA2_OK);
    mamba2_state *s2 = mamba2_state_create(NULL, &e);
    CU_ASSERT_PTR_NULL(s2);
    mamba2_state *c = mamba2_state_clone(s, &e); /* a new holder after the caller let go */
    CU_ASSERT_PTR_NOT_NULL(c);
    mamba2_backend_close(b);
    mamba2_state_destroy(s);
    CU_ASSERT_EQUAL(mamba2_state_position(c), 3);
    mamba2_state_destroy(c); /* the last holder: the model goes now */
}

/* ------------------------------------------------------------------ the layer hook */

/** Copies of every tensor a hook was shown, and whether they came as announced. */
typedef struct {
    int L, T, calls;
    int widths[MAMBA2_HOOK_COUNT]; /* expected width of each tensor */
    int last;                      /* layer · COUNT + tensor of the last call, -1 before the first */
    int in_order;                  /* 1 while calls come in layer and tensor order with the right sizes */
    float **seen;                  /* [L · COUNT] copies ([T, width] each), NULL where not shown */
} Recorder;

static void record(void *ctx, int layer, int tensor, const float *data, int T, int width) {
    Recorder *r = ctx;
    int k = layer * MAMBA2_HOOK_COUNT + tensor;
    r->calls++;
    if (layer < 0 || layer >= r->L || tensor < 0 || tensor >= MAMBA2_HOOK_COUNT || k <= r->last || T != r->T ||
        width != r->widths[tensor]) {
        r->in_order = 0;
        return;
    }
    r->last = k;
    r->seen[k] = malloc((size_t)T * width * sizeof(float));
    if (r->seen[k]) memcpy(r->seen[k], data, (size_t)T * width * sizeof(float));
}

static void recorder_init(Recorder *r, mamba2_model *m, int T) {
    int d = mamba2_model_dim(m, MAMBA2_DIM_D_MODEL), d_in = mamba2_model_dim(m, MAMBA2_DIM_D_INNER);
    int widths[MAMBA2_HOOK_COUNT] = {d, d, mamba2_model_dim(m, MAMBA2_DIM_D_IN_PROJ), mamba2_model_dim(m, MAMBA2_DIM_CONV_DIM),
                                     mamba2_model_dim(m, MAMBA2_DIM_N_HEADS), d_in, d_in, d, d};
    memset(r, 0, sizeof *r);
    r->L = mamba2_model_dim(m, MAMBA2_DIM_N_LAYER), r->T = T, r->last = -1, r->in_order = 1;
    memcpy(r->widths, widths, sizeof widths);
    r->seen = calloc((size_t)r->L * MAMBA2_HOOK_COUNT, sizeof *r->seen);
}

static void recorder_free(Recorder *r) {
    for (int i = 0; r->seen && i < r->L * MAMBA2_HOOK_COUNT; i++) free(r->seen[i]);
    free(r->seen);
}

static const float *seen(const Recorder *r, int layer, int tensor) { return r->seen[layer * MAMBA2_HOOK_COUNT + tensor]; }

/* Observe @p T tokens from a fresh state on backend @p name: the recording, the logits [T, V],
 * and the logits of one more step after it (to compare the state it leaves). */
static int observe(mamba2_model *m, const char *name, const int32_t *tok, int T, Recorder *r, float *logits,
                   float *next) {
    mamba2_error e;
    mamba2_backend *b = open_backend(m, name);
    mamba2_state *s = mamba2_state_create(m, &e);
    recorder_init(r, m, T);
    int rc = !b || !s || !r->seen ? -1 : mamba2_prefill_observed(b, s, tok, T, logits, record, r, &e);
    if (rc) printf("\n    %s: %s", name, e.message);
    if (!rc) rc = mamba2_step(b, &s, &tok[0], 1, next, &e);
    mamba2_state_destroy(s);
    mamba2_backend_close(b);
    return rc;
}

static void test_layer_hook(void) {
    TestDemoCase cases[2];
    int n_cases = test_read_demo_cases(cases);
    mamba2_model *m = open_model(DEMO);
    CU_ASSERT_FATAL(n_cases >= 1 && m);
    int V = mamba2_model_dim(m, MAMBA2_DIM_VOCAB_SIZE), d = mamba2_model_dim(m, MAMBA2_DIM_D_MODEL), T;
    int32_t *tok = prompt_and_continuation(&cases[0], 20, &T);
    size_t TV = (size_t)T * V, Td = (size_t)T * d;
    float *lg_obs = malloc(TV * sizeof(float)), *lg_plain = malloc(TV * sizeof(float));
    float *next_obs = malloc((size_t)V * sizeof(float)), *next_plain = malloc((size_t)V * sizeof(float));
    CU_ASSERT_FATAL(tok && lg_obs && lg_plain && next_obs && next_plain);
    mamba2_error e;

    /* ref: all nine tensors of every layer, in order, and the same logits and state as a prefill */
    Recorder ref;
    CU_ASSERT_EQUAL_FATAL(observe(m, "ref", tok, T, &ref, lg_obs, next_obs), 0);
    CU_ASSERT(ref.in_order);
    CU_ASSERT_EQUAL(ref.calls, ref.L * MAMBA2_HOOK_COUNT);
    mamba2_backend *b = open_backend(m, "ref");
    mamba2_state *s = mamba2_state_create(m, &e);
    CU_ASSERT_FATAL(b && s);
    CU_ASSERT_EQUAL(mamba2_prefill(b, s, tok, T, lg_plain, 1, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_step(b, &s, &tok[0], 1, next_plain, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(memcmp(lg_obs, lg_plain, TV * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(next_obs, next_plain, (size_t)V * sizeof(float)), 0);
    for (int l = 0; ref.in_order && l < ref.L; l++) {
        /* the residual add: output = input + out_proj, element by element; and the next layer starts there */
        const float *in = seen(&ref, l, MAMBA2_HOOK_INPUT), *proj = seen(&ref, l, MAMBA2_HOOK_OUT_PROJ);
        const float *out = seen(&ref, l, MAMBA2_HOOK_OUTPUT);
        int sums = 1;
        for (size_t i = 0; i < Td; i++) sums &= out[i] == in[i] + proj[i];
        CU_ASSERT(sums);
        if (l + 1 < ref.L) CU_ASSERT_EQUAL(memcmp(seen(&ref, l + 1, MAMBA2_HOOK_INPUT), out, Td * sizeof(float)), 0);
    }

    /* a prefill in two calls shows the same layers as one (the state carries the sequence) */
    int T1 = 13;
    Recorder part[2];
    mamba2_state_clear(s);
    for (int p = 0; p < 2; p++) {
        recorder_init(&part[p], m, p ? T - T1 : T1);
        CU_ASSERT_EQUAL(mamba2_prefill_observed(b, s, p ? tok + T1 : tok, p ? T - T1 : T1, NULL, record, &part[p], &e),
                        MAMBA2_OK);
        CU_ASSERT(part[p].in_order && part[p].calls == ref.L * MAMBA2_HOOK_COUNT);
    }
    double split = 0;
    for (int l = 0; l < ref.L && part[0].in_order && part[1].in_order; l++) {
        const float *whole = seen(&ref, l, MAMBA2_HOOK_OUTPUT);
        double e0 = test_rel_l2(seen(&part[0], l, MAMBA2_HOOK_OUTPUT), whole, (size_t)T1 * d);
        double e1 = test_rel_l2(seen(&part[1], l, MAMBA2_HOOK_OUTPUT), whole + (size_t)T1 * d, (size_t)(T - T1) * d);
        split = fmax(split, fmax(e0, e1));
    }
    printf("\n    ref: %d tensors of %d layers; %d + %d tokens vs %d in one call: layer outputs %.1e", ref.calls,
           ref.L, T1, T - T1, T, split);
    CU_ASSERT(split <= RUN_TOL);
    recorder_free(&part[0]);
    recorder_free(&part[1]);
    /* no hook: a plain prefill of every position */
    mamba2_state_clear(s);
    CU_ASSERT_EQUAL(mamba2_prefill_observed(b, s, tok, T, lg_obs, NULL, NULL, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(memcmp(lg_obs, lg_plain, TV * sizeof(float)), 0);
    mamba2_state_destroy(s);
    mamba2_backend_close(b);

    /* cpu: the residual stream in and out of every layer, against the reference's */
    if (built("cpu")) {
        Recorder cpu;
        CU_ASSERT_EQUAL(observe(m, "cpu", tok, T, &cpu, lg_obs, next_obs), 0);
        CU_ASSERT(cpu.in_order);
        CU_ASSERT_EQUAL(cpu.calls, cpu.L * 2);
        double worst = 0;
        for (int l = 0; cpu.in_order && l < cpu.L; l++) {
            CU_ASSERT(seen(&cpu, l, MAMBA2_HOOK_INPUT) && seen(&cpu, l, MAMBA2_HOOK_OUTPUT));
            CU_ASSERT_PTR_NULL(seen(&cpu, l, MAMBA2_HOOK_SSD));
            for (int k = 0; k < 2 && seen(&cpu, l, MAMBA2_HOOK_OUTPUT); k++) {
                int t = k ? MAMBA2_HOOK_OUTPUT : MAMBA2_HOOK_INPUT;
                worst = fmax(worst, test_rel_l2(seen(&cpu, l, t), seen(&ref, l, t), Td));
            }
        }
        double lg_err = worst_row(lg_obs, lg_plain, T, V);
        printf("\n    cpu: residual in and out of every layer vs ref %.1e, logits %.1e", worst, lg_err);
        CU_ASSERT(worst <= RUN_TOL);
        CU_ASSERT(lg_err <= RUN_TOL);
        recorder_free(&cpu);
    }
    recorder_free(&ref);
    /* gpu, where it can start: it cannot observe layers, and says so */
    mamba2_backend *g = built("gpu") ? mamba2_backend_open(m, "gpu", NULL, NULL) : NULL;
    mamba2_state *gs = g ? mamba2_state_create(m, &e) : NULL;
    if (g) {
        Recorder none;
        recorder_init(&none, m, T);
        CU_ASSERT_EQUAL(mamba2_prefill_observed(g, gs, tok, T, NULL, record, &none, &e), MAMBA2_ERR_BACKEND);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "cannot observe layers"));
        CU_ASSERT_EQUAL(none.calls, 0);
        recorder_free(&none);
    }
    mamba2_state_destroy(gs);
    mamba2_backend_close(g);
    CU_ASSERT_STRING_EQUAL(mamba2_hook_tensor_name(MAMBA2_HOOK_INPUT), "input");
    CU_ASSERT_STRING_EQUAL(mamba2_hook_tensor_name(MAMBA2_HOOK_OUTPUT), "output");
    CU_ASSERT_PTR_NULL(mamba2_hook_tensor_name(MAMBA2_HOOK_COUNT));
    free(tok), free(lg_obs), free(lg_plain), free(next_obs), free(next_plain);
    mamba2_model_close(m);
    test_free_demo_cases(cases, n_cases);
}

/* ------------------------------------------------------------------ tokenizer and sampler */

static void test_tokenizer(void) {
    TestDemoCase cases[2];
    int n_cases = test_read_demo_cases(cases);
    CU_ASSERT_FATAL(n_cases >= 1);
    const TestDemoCase *c = &cases[0];
    mamba2_error e;
    mamba2_tokenizer *t = mamba2_tokenizer_open(DEMO, &e), *file = mamba2_tokenizer_open(DEMO "/tokenizer.json", &e);
    CU_ASSERT_FATAL(t && file);
    CU_ASSERT_EQUAL(mamba2_tokenizer_bos_id(t), c->ids[0]);
    CU_ASSERT(mamba2_tokenizer_eos_id(t) >= 0);
    CU_ASSERT_EQUAL(mamba2_tokenizer_n_vocab(t), mamba2_tokenizer_n_vocab(file));
    CU_ASSERT(mamba2_tokenizer_n_vocab(t) > 0);

    /* sizing, then too small a buffer, then the whole */
    size_t n = 0, len = 0, plen = strlen(c->prompt);
    int32_t ids[256] = {0};
    CU_ASSERT_EQUAL(mamba2_tokenize(file, c->prompt, plen, 1, NULL, 0, &n, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(n, (size_t)c->T);
    CU_ASSERT_EQUAL(mamba2_tokenize(t, c->prompt, plen, 1, ids, 3, &n, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT(n == (size_t)c->T && !memcmp(ids, c->ids, 3 * sizeof *ids) && ids[3] == 0);
    CU_ASSERT_EQUAL(mamba2_tokenize(t, c->prompt, plen, 1, ids, 256, &n, &e), MAMBA2_OK);
    CU_ASSERT(n == (size_t)c->T && !memcmp(ids, c->ids, n * sizeof *ids));
    CU_ASSERT_EQUAL(mamba2_tokenize(t, c->prompt, plen, 0, ids, 256, &n, &e), MAMBA2_OK);
    CU_ASSERT(n == (size_t)c->T - 1 && !memcmp(ids, c->ids + 1, n * sizeof *ids)); /* no BOS */
    CU_ASSERT_EQUAL(mamba2_tokenize(t, "", 0, 0, ids, 256, &n, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(n, 0);

    char text[4096], small[8];
    CU_ASSERT_EQUAL(mamba2_detokenize(t, c->greedy, (size_t)c->n, NULL, 0, &len, &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(len, strlen(c->text));
    CU_ASSERT_EQUAL(mamba2_detokenize(t, c->greedy, (size_t)c->n, small, sizeof small, &len, &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT(len == strlen(c->text) && strlen(small) == sizeof small - 1 && !strncmp(small, c->text, sizeof small - 1));
    CU_ASSERT_EQUAL(mamba2_detokenize(t, c->greedy, (size_t)c->n, text, sizeof text, &len, &e), MAMBA2_OK);
    CU_ASSERT_STRING_EQUAL(text, c->text);
    int32_t bad[2] = {c->greedy[0], mamba2_tokenizer_n_vocab(t)};
    CU_ASSERT_EQUAL(mamba2_detokenize(t, bad, 2, text, sizeof text, &len, &e), MAMBA2_ERR_TOKEN);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "position 1"));
    CU_ASSERT_EQUAL(mamba2_tokenize(NULL, "x", 1, 0, ids, 256, &n, &e), MAMBA2_ERR_ARGUMENT);

    /* opening: a missing path, a file that is no tokenizer */
    CU_ASSERT_PTR_NULL(mamba2_tokenizer_open("data/no-such-tokenizer.json", &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_IO);
    CU_ASSERT_PTR_NULL(mamba2_tokenizer_open(DEMO "/config.json", &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_FORMAT);
    CU_ASSERT_EQUAL(mamba2_tokenizer_n_vocab(NULL), -1);
    mamba2_tokenizer_close(NULL);
    mamba2_tokenizer_close(t);
    mamba2_tokenizer_close(file);
    test_free_demo_cases(cases, n_cases);
}

static void test_sampler(void) {
    enum { V = 1000 };
    float logits[V];
    test_fill_normal(logits, V, 2.0);
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    mamba2_error e;
    CU_ASSERT_EQUAL(mamba2_sample_greedy(logits, V), best);
    CU_ASSERT_EQUAL(mamba2_sample_greedy(NULL, V), -1);
    CU_ASSERT_EQUAL(mamba2_sample_greedy(logits, 0), -1);
    mamba2_sampler *greedy = mamba2_sampler_create(V, 0.0f, 0, 1.0f, 7, &e), *top1 = mamba2_sampler_create(V, 1.0f, 1, 1.0f, 7, &e);
    mamba2_sampler *a = mamba2_sampler_create(V, 0.8f, 40, 0.95f, 1234, &e), *b = mamba2_sampler_create(V, 0.8f, 40, 0.95f, 1234, &e);
    CU_ASSERT_FATAL(greedy && top1 && a && b);
    CU_ASSERT_EQUAL(mamba2_sample(greedy, logits), best);
    CU_ASSERT_EQUAL(mamba2_sample(top1, logits), best);
    int same = 1, distinct = 0, in_range = 1;
    int32_t first = mamba2_sample(a, logits);
    CU_ASSERT_EQUAL(first, mamba2_sample(b, logits));
    for (int k = 0; k < 50; k++) { /* the same seed draws the same tokens; they are not all one token */
        int32_t x = mamba2_sample(a, logits), y = mamba2_sample(b, logits);
        same &= x == y;
        distinct |= x != first;
        in_range &= x >= 0 && x < V;
    }
    CU_ASSERT(same && distinct && in_range);
    CU_ASSERT_EQUAL(mamba2_sample(NULL, logits), -1);
    CU_ASSERT_EQUAL(mamba2_sample(a, NULL), -1);
    CU_ASSERT_PTR_NULL(mamba2_sampler_create(V, -1.0f, 0, 1.0f, 1, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "temperature"));
    CU_ASSERT_PTR_NULL(mamba2_sampler_create(V, 1.0f, 0, 0.0f, 1, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NULL(mamba2_sampler_create(0, 1.0f, 0, 1.0f, 1, &e));
    CU_ASSERT_EQUAL(e.code, MAMBA2_ERR_ARGUMENT);
    mamba2_sampler_destroy(greedy);
    mamba2_sampler_destroy(top1);
    mamba2_sampler_destroy(a);
    mamba2_sampler_destroy(b);
    mamba2_sampler_destroy(NULL);
}

/* ------------------------------------------------------------------ the SSD forms */

static void test_ssd_forms(void) {
    /* T not a multiple of Q, several chunks, two groups, a random initial state */
    enum { T = 37, H = 4, P = 8, G = 2, N = 16, Q = 8 };
    size_t nx = (size_t)T * H * P, nbc = (size_t)T * G * N, ns = (size_t)H * P * N;
    float *x = malloc(nx * 4), *dt = malloc((size_t)T * H * 4), A[H], *B = malloc(nbc * 4), *C = malloc(nbc * 4);
    float *s0 = malloc(ns * 4), *y[3], *s[3];
    CU_ASSERT_FATAL(x && dt && B && C && s0);
    test_fill_normal(x, nx, 1.0);
    test_fill_normal(B, nbc, 0.25);
    test_fill_normal(C, nbc, 0.25);
    test_fill_normal(s0, ns, 1.0);
    for (int i = 0; i < T * H; i++) dt[i] = (float)(0.01 + 0.5 * test_uniform());
    for (int h = 0; h < H; h++) A[h] = (float)-(0.5 + 2.0 * test_uniform());
    for (int i = 0; i < 3; i++) {
        y[i] = malloc(nx * 4), s[i] = malloc(ns * 4);
        CU_ASSERT_FATAL(y[i] && s[i]);
        memcpy(s[i], s0, ns * 4);
        for (size_t k = 0; k < nx; k++) y[i][k] = NAN; /* every output must be written */
    }
    mamba2_error e;
    CU_ASSERT_EQUAL(mamba2_ssd_recurrent(T, H, P, G, N, x, dt, A, B, C, s[0], y[0], &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_ssd_quadratic(T, H, P, G, N, x, dt, A, B, C, s[1], y[1], &e), MAMBA2_OK);
    CU_ASSERT_EQUAL(mamba2_ssd_chunked(T, H, P, G, N, Q, x, dt, A, B, C, s[2], y[2], &e), MAMBA2_OK);
    double yq = test_rel_l2(y[1], y[0], nx), sq = test_rel_l2(s[1], s[0], ns);
    double yc = test_rel_l2(y[2], y[0], nx), sc = test_rel_l2(s[2], s[0], ns);
    printf("\n    quadratic vs recurrent: y %.1e state %.1e; chunked: y %.1e state %.1e", yq, sq, yc, sc);
    CU_ASSERT(yq <= SSD_TOL && sq <= SSD_TOL && yc <= SSD_TOL && sc <= SSD_TOL);

    /* sizes and arrays refused before anything runs */
    CU_ASSERT_EQUAL(mamba2_ssd_recurrent(T, 3, P, G, N, x, dt, A, B, C, s[0], y[0], &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "groups"));
    CU_ASSERT_EQUAL(mamba2_ssd_quadratic(0, H, P, G, N, x, dt, A, B, C, s[1], y[1], &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_ssd_chunked(T, H, P, G, N, 0, x, dt, A, B, C, s[2], y[2], &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_EQUAL(mamba2_ssd_chunked(T, H, P, G, N, Q, x, dt, A, B, NULL, s[2], y[2], &e), MAMBA2_ERR_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "C"));
    for (int i = 0; i < 3; i++) free(y[i]), free(s[i]);
    free(x), free(dt), free(B), free(C), free(s0);
}

int register_api_tests(void) {
    CU_pSuite s = CU_add_suite("api", NULL, NULL);
    if (!s) return -1;
    struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"version string and status strings", test_version_and_status},
        {"model_open: missing directory, a file, no checkpoint, NULL", test_model_open_errors},
        {"model dimensions match config.json; config sizes without weights", test_model_dims},
        {"backends by name and auto; bad names and options; progress callback", test_backend_open},
        {"errors as codes and messages: T = 0, bad token ids, B = 0, shared or foreign states", test_run_errors},
        {"prefill vs token-by-token and batched steps (ref, cpu, gpu)", test_prefill_vs_step},
        {"tokenize, auto backend, greedy continuation of greedy.json, detokenize", test_greedy_continuation},
        {"state save / load / clone / clear round trips, and refused files", test_state_files},
        {"handles released in any order", test_release_order},
        {"layer hook against a prefill, across a split prefill, cpu against ref", test_layer_hook},
        {"tokenizer buffers, sizes and errors", test_tokenizer},
        {"sampler: greedy, seeds, top-k, bad settings", test_sampler},
        {"the three SSD forms agree; bad sizes refused", test_ssd_forms},
    };
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn)) return -1;
    return 0;
}
