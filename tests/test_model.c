/**
 * @file test_model.c
 * @brief The reference model against the Hugging Face fixtures in data/fixtures, in every mode,
 *        plus prefill/step/quadratic agreement and save → load → continue of the state.
 *
 * Fixture format (data/fixtures/README.md): a checkpoint directory plus fixture.json
 * {"tokens": [...], "logits": "logits.f32", "greedy": [...]}, logits.f32 being T×V float32
 * from transformers' Mamba2ForCausalLM with the grouped gated norm.
 */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "forward.h"
#include "model.h"
#include "tests.h"

#define FIXTURE_ROOT "data/fixtures"
/* notebooks-docs/design.md §4: whole-model logits against the oracle, fp32 arithmetic: relative L2 ≤ 1e-4. */
#define ORACLE_TOL 1e-4
/* Two runs of our own reference that differ only in SSD form / chunking: fp32 storage, double sums. */
#define SELF_TOL 1e-5

int test_load_fixture(const char *name, TestFixture *fx) {
    char path[4096];
    memset(fx, 0, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "%s/%s", FIXTURE_ROOT, name);
    snprintf(path, sizeof path, "%s/fixture.json", fx->dir);
    json_object *root = json_object_from_file(path), *tok, *gr, *lg;
    if (!root) return -1;
    int ok = json_object_object_get_ex(root, "tokens", &tok) && json_object_object_get_ex(root, "greedy", &gr) &&
             json_object_object_get_ex(root, "logits", &lg);
    if (ok) {
        fx->T = (int)json_object_array_length(tok);
        fx->n_greedy = (int)json_object_array_length(gr);
        fx->tokens = malloc(fx->T * sizeof *fx->tokens);
        fx->greedy = malloc((fx->n_greedy ? fx->n_greedy : 1) * sizeof *fx->greedy);
        for (int i = 0; i < fx->T; i++) fx->tokens[i] = json_object_get_int(json_object_array_get_idx(tok, i));
        for (int i = 0; i < fx->n_greedy; i++) fx->greedy[i] = json_object_get_int(json_object_array_get_idx(gr, i));
        snprintf(path, sizeof path, "%s/%s", fx->dir, json_object_get_string(lg));
    }
    json_object_put(root);
    Mamba2Error e = {{0}};
    if (!ok || mamba2_model_load(fx->dir, &fx->model, &e)) {
        printf("\n    fixture %s: %s", name, ok ? e.msg : "fixture.json lacks tokens/greedy/logits");
        return -1;
    }
    size_t n = (size_t)fx->T * fx->model.cfg.vocab_size;
    fx->logits = malloc(n * sizeof *fx->logits);
    FILE *f = fopen(path, "rb");
    ok = f && fread(fx->logits, sizeof(float), n, f) == n;
    if (f) fclose(f);
    if (!ok) printf("\n    fixture %s: %s is missing or not %d x %d float32", name, path, fx->T, fx->model.cfg.vocab_size);
    return ok ? 0 : -1;
}

void test_free_fixture(TestFixture *fx) {
    mamba2_model_free(&fx->model);
    free(fx->tokens);
    free(fx->greedy);
    free(fx->logits);
}

int test_list_fixtures(char names[][64], int max) {
    DIR *d = opendir(FIXTURE_ROOT);
    int n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/fixture.json", FIXTURE_ROOT, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        fclose(f);
        snprintf(names[n++], 64, "%s", e->d_name);
    }
    closedir(d);
    /* sorted, so that runs print in the same order */
    qsort(names, n, 64, (int (*)(const void *, const void *))strcmp);
    return n;
}

double test_max_row_rel_l2(const float *got, const float *want, int T, int V) {
    double worst = 0;
    for (int t = 0; t < T; t++) {
        double e = test_rel_l2(got + (size_t)t * V, want + (size_t)t * V, V);
        if (!(e <= worst)) worst = e; /* also catches NaN */
    }
    return worst;
}

/* Run a whole fixture through the reference with one SSD form, all positions at once
 * (prefill) or token by token (step). */
static int run_ref(const TestFixture *fx, Mamba2SSDForm form, int token_by_token, float *logits) {
    Mamba2State st;
    Mamba2Error e = {{0}};
    int V = fx->model.cfg.vocab_size, rc = mamba2_state_init(&st, &fx->model.cfg, &e);
    for (int t = 0; !rc && token_by_token && t < fx->T; t++)
        rc = mamba2_ref_forward(&fx->model, &st, &fx->tokens[t], 1, form, logits + (size_t)t * V, 0, NULL, NULL, &e);
    if (!rc && !token_by_token) rc = mamba2_ref_forward(&fx->model, &st, fx->tokens, fx->T, form, logits, 1, NULL, NULL, &e);
    if (rc) printf("\n    %s", e.msg);
    mamba2_state_free(&st);
    return rc;
}

static void test_fixtures_all_modes(void) {
    char names[32][64];
    int n = test_list_fixtures(names, 32);
    CU_ASSERT_FATAL(n >= 4); /* the oracle set: see data/make_fixtures.py */
    for (int i = 0; i < n; i++) {
        TestFixture fx;
        int rc = test_load_fixture(names[i], &fx);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) continue;
        int V = fx.model.cfg.vocab_size;
        float *got = malloc((size_t)fx.T * V * sizeof *got);
        struct {
            const char *what;
            Mamba2SSDForm form;
            int step;
        } modes[] = {{"prefill (chunked)", MAMBA2_SSD_CHUNKED, 0},
                     {"step (recurrent)", MAMBA2_SSD_RECURRENT, 1},
                     {"prefill (quadratic)", MAMBA2_SSD_QUADRATIC, 0}};
        printf("\n    %-28s T=%-3d", names[i], fx.T);
        for (int k = 0; k < 3; k++) {
            for (size_t j = 0; j < (size_t)fx.T * V; j++) got[j] = NAN;
            CU_ASSERT_EQUAL(run_ref(&fx, modes[k].form, modes[k].step, got), 0);
            double err = test_max_row_rel_l2(got, fx.logits, fx.T, V);
            printf(" %s %.1e", modes[k].what, err);
            CU_ASSERT(err <= ORACLE_TOL);
        }
        free(got);
        test_free_fixture(&fx);
    }
    printf("\n");
}

/* The greedy continuation of the fixture (made by full recomputation in transformers)
 * reproduced through prefill + decode steps. */
static void test_fixtures_greedy(void) {
    char names[32][64];
    int n = test_list_fixtures(names, 32);
    for (int i = 0; i < n; i++) {
        TestFixture fx;
        if (test_load_fixture(names[i], &fx)) {
            CU_FAIL("fixture did not load");
            continue;
        }
        Mamba2Backend *b;
        Mamba2State st;
        Mamba2Error e = {{0}};
        int V = fx.model.cfg.vocab_size;
        float *logits = malloc(V * sizeof *logits);
        CU_ASSERT_EQUAL_FATAL(mamba2_backend_create("ref", &fx.model, NULL, &b, &e), 0);
        CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&st, &fx.model.cfg, &e), 0);
        CU_ASSERT_EQUAL(mamba2_backend_prefill(b, &st, fx.tokens, fx.T, logits, 0, &e), 0);
        int agree = 0;
        Mamba2State *one = &st;
        for (int k = 0; k < fx.n_greedy; k++) {
            int32_t best = 0;
            for (int v = 1; v < V; v++)
                if (logits[v] > logits[best]) best = v;
            if (best != fx.greedy[k]) break;
            agree++;
            if (mamba2_backend_step(b, &one, &best, 1, logits, &e)) break;
        }
        printf("\n    %-28s greedy tokens equal: %d of %d", names[i], agree, fx.n_greedy);
        CU_ASSERT(fx.n_greedy >= 32);
        CU_ASSERT_EQUAL(agree, fx.n_greedy);
        free(logits);
        mamba2_state_free(&st);
        mamba2_backend_destroy(b);
        test_free_fixture(&fx);
    }
    printf("\n");
}

/* The demo model through the program: 8 greedy tokens after a 4-token prompt, once in one run and
 * once as a 2-token run saving its state and a second run continuing from it with the rest. */
static void test_cli_state_in_out(void) {
    char *dir = test_tmpdir();
    char args[8192], whole[4096], part[4096];
    const char *model = "data/stdlib-mamba2";
    snprintf(args, sizeof args, "generate %s --ids '1 100 200 300' -n 8", model);
    CU_ASSERT_EQUAL(test_run_program(NULL, args, whole, sizeof whole, NULL, 0), 0);
    snprintf(args, sizeof args, "generate %s --ids '1 100' -n 0 --state-out %s/s.bin", model, dir);
    CU_ASSERT_EQUAL(test_run_program(NULL, args, part, sizeof part, NULL, 0), 0);
    snprintf(args, sizeof args, "generate %s --ids '200 300' -n 8 --state-in %s/s.bin", model, dir);
    CU_ASSERT_EQUAL(test_run_program(NULL, args, part, sizeof part, NULL, 0), 0);
    printf("\n    one run: %.*s| resumed: %.*s", (int)strcspn(whole, "\n"), whole, (int)strcspn(part, "\n"), part);
    CU_ASSERT(strlen(whole) >= 16); /* 8 ids */
    CU_ASSERT_STRING_EQUAL(part, whole);
    test_rmtree(dir);
    free(dir);
}

/* prefill(first k) → save → load into a fresh state → prefill(rest) equals one uninterrupted prefill. */
static void test_state_save_resume(void) {
    char names[32][64];
    int n = test_list_fixtures(names, 32);
    char *dir = test_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/state.bin", dir);
    for (int i = 0; i < n; i++) {
        TestFixture fx;
        if (test_load_fixture(names[i], &fx)) continue;
        const Mamba2Config *c = &fx.model.cfg;
        int V = c->vocab_size, k = fx.T / 2 + 1; /* split inside a chunk, not on its boundary */
        float *full = malloc((size_t)fx.T * V * 4), *part = malloc((size_t)fx.T * V * 4);
        Mamba2State a, b2;
        Mamba2Error e = {{0}};
        mamba2_state_init(&a, c, &e);
        mamba2_state_init(&b2, c, &e);
        CU_ASSERT_EQUAL(mamba2_ref_forward(&fx.model, &a, fx.tokens, fx.T, MAMBA2_SSD_CHUNKED, full, 1, NULL, NULL, &e), 0);
        mamba2_state_reset(&a);
        CU_ASSERT_EQUAL(mamba2_ref_forward(&fx.model, &a, fx.tokens, k, MAMBA2_SSD_CHUNKED, part, 1, NULL, NULL, &e), 0);
        CU_ASSERT_EQUAL(mamba2_state_save(&a, c, path, &e), 0);
        CU_ASSERT_EQUAL(mamba2_state_load(&b2, c, path, &e), 0);
        CU_ASSERT_EQUAL(b2.pos, k);
        CU_ASSERT_EQUAL(mamba2_ref_forward(&fx.model, &b2, fx.tokens + k, fx.T - k, MAMBA2_SSD_CHUNKED,
                                           part + (size_t)k * V, 1, NULL, NULL, &e), 0);
        double err = test_max_row_rel_l2(part, full, fx.T, V);
        printf("\n    %-28s resumed at %d: %.1e", names[i], k, err);
        CU_ASSERT(err <= SELF_TOL);
        free(full), free(part);
        mamba2_state_free(&a);
        mamba2_state_free(&b2);
        test_free_fixture(&fx);
    }
    printf("\n");
    test_rmtree(dir);
    free(dir);
}

/* A state saved for one model shape is refused by another, with the differing field named;
 * a truncated state file is refused and leaves the target state untouched. */
static void test_state_mismatch(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    Mamba2Config c1, c2;
    Mamba2Error e = {{0}};
    char json[1024];
    snprintf(json, sizeof json, "{\"hidden_size\": 16, \"num_hidden_layers\": 2, \"vocab_size\": 50, \"head_dim\": 8, "
                                "\"state_size\": 8, \"n_groups\": 2}");
    CU_ASSERT_EQUAL_FATAL(mamba2_config_parse(json, "a", &c1, &e), 0);
    c2 = c1;
    c2.d_state = 16;
    Mamba2State a, b;
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&a, &c1, &e), 0);
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&b, &c2, &e), 0);
    test_fill_normal(a.ssm, a.ssm_len, 1.0);
    char *dir = test_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/s.bin", dir);
    CU_ASSERT_EQUAL(mamba2_state_save(&a, &c1, path, &e), 0);
    CU_ASSERT_NOT_EQUAL(mamba2_state_load(&b, &c2, path, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "d_state = 8, this model has 16"));
    /* truncated: refused, and the state keeps its values */
    Mamba2State c;
    mamba2_state_init(&c, &c1, &e);
    c.ssm[0] = 42.0f;
    CU_ASSERT_EQUAL(truncate(path, 60), 0);
    CU_ASSERT_NOT_EQUAL(mamba2_state_load(&c, &c1, path, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "truncated"));
    CU_ASSERT_EQUAL(c.ssm[0], 42.0f);
    mamba2_state_free(&a), mamba2_state_free(&b), mamba2_state_free(&c);
    test_rmtree(dir);
    free(dir);
}

/* A fresh random tiny model (new weights every run, G > 1, bf16): chunked prefill, quadratic
 * prefill and token-by-token decode agree with each other. */
static void test_random_model_forms_agree(void) {
    TinyModelSpec s;
    test_tiny_spec_default(&s);
    s.dtype = "BF16";
    s.chunk_size = 3;
    char *dir = test_tmpdir();
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(dir, &s), 0);
    Mamba2Model m;
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load(dir, &m, &e), 0);
    enum { T = 17 };
    int32_t tok[T];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(test_uniform() * s.vocab_size);
    int V = s.vocab_size;
    float *lg[3];
    Mamba2State st;
    mamba2_state_init(&st, &m.cfg, &e);
    for (int k = 0; k < 3; k++) {
        lg[k] = malloc((size_t)T * V * 4);
        mamba2_state_reset(&st);
        if (k == 2)
            for (int t = 0; t < T; t++)
                mamba2_ref_forward(&m, &st, &tok[t], 1, MAMBA2_SSD_RECURRENT, lg[k] + (size_t)t * V, 0, NULL, NULL, &e);
        else
            mamba2_ref_forward(&m, &st, tok, T, k ? MAMBA2_SSD_QUADRATIC : MAMBA2_SSD_CHUNKED, lg[k], 1, NULL, NULL, &e);
    }
    double e1 = test_max_row_rel_l2(lg[1], lg[0], T, V), e2 = test_max_row_rel_l2(lg[2], lg[0], T, V);
    printf("\n    quadratic vs chunked %.1e, step vs chunked %.1e\n", e1, e2);
    CU_ASSERT(e1 <= SELF_TOL);
    CU_ASSERT(e2 <= SELF_TOL);
    for (int k = 0; k < 3; k++) free(lg[k]);
    mamba2_state_free(&st);
    mamba2_model_free(&m);
    test_rmtree(dir);
    free(dir);
}

int register_model_tests(void) {
    CU_pSuite s = CU_add_suite("model", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "cli: generate --state-out, then --state-in, continues as one run", test_cli_state_in_out) ||
        !CU_add_test(s, "fixtures: logits vs transformers, prefill/step/quadratic", test_fixtures_all_modes) ||
        !CU_add_test(s, "fixtures: 32 greedy tokens reproduced", test_fixtures_greedy) ||
        !CU_add_test(s, "state: prefill, save, load, continue = uninterrupted", test_state_save_resume) ||
        !CU_add_test(s, "state: file for another shape or truncated is refused", test_state_mismatch) ||
        !CU_add_test(s, "random model: chunked, quadratic and step agree", test_random_model_forms_agree))
        return -1;
    return 0;
}
