/**
 * @file test_backend.c
 * @brief The dispatch layer (src/backend.c): every backend built here, driven through
 *        mamba2_backend_prefill(), mamba2_backend_step() and mamba2_backend_prefill_observed(),
 *        refuses bad inputs with the dispatch layer's message and leaves every state as it was.
 *
 * The backends' own functions no longer check token ids, T, B or state shapes: this suite is what
 * shows that no caller needs them to. A GPU backend is driven when one can start here.
 */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "tests.h"

/** The smallest fixture: 2 layers, V = 64 (data/fixtures/README.md). */
#define FIXTURE "g1_f32_single"

/** A copy of a state's contents, to compare with after the refused calls. */
typedef struct {
    int64_t pos;
    float *conv, *ssm;
} Snapshot;

static int snapshot_take(Mamba2State *st, Snapshot *s) {
    Mamba2Error e = {{0}};
    if (mamba2_state_sync(st, &e)) return -1; /* a GPU-held state: its current contents */
    s->pos = st->pos;
    s->conv = malloc((st->conv_len ? st->conv_len : 1) * sizeof(float));
    s->ssm = malloc(st->ssm_len * sizeof(float));
    if (!s->conv || !s->ssm) return -1;
    memcpy(s->conv, st->conv, st->conv_len * sizeof(float));
    memcpy(s->ssm, st->ssm, st->ssm_len * sizeof(float));
    return 0;
}

/* 1 when @p st holds exactly what @p s recorded. */
static int snapshot_equal(Mamba2State *st, const Snapshot *s) {
    Mamba2Error e = {{0}};
    return mamba2_state_sync(st, &e) == 0 && st->pos == s->pos &&
           memcmp(st->conv, s->conv, st->conv_len * sizeof(float)) == 0 &&
           memcmp(st->ssm, s->ssm, st->ssm_len * sizeof(float)) == 0;
}

static void snapshot_free(Snapshot *s) { free(s->conv), free(s->ssm); }

/* A refused call: rc -1 and a message containing @p want; printed when it is not. */
static void expect_refused(const char *backend, const char *what, int rc, const Mamba2Error *e, const char *want) {
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e->msg, want));
    if (rc != -1 || !strstr(e->msg, want))
        printf("\n    %s, %s: rc %d, message '%s', expected one with '%s'", backend, what, rc, e->msg, want);
}

/* Every refusal of the three entry points on backend @p b of the fixture's model. */
static void check_backend(Mamba2Backend *b, const Mamba2Model *m) {
    const Mamba2Config *c = &m->cfg;
    int V = c->vocab_size;
    const char *name = b->name;
    Mamba2Error e = {{0}};
    Mamba2State a, b2, other;
    Mamba2Config wider = *c; /* a model of another shape: one more layer */
    wider.n_layer++;
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&a, c, &e), 0);
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&b2, c, &e), 0);
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&other, &wider, &e), 0);
    float *logits = malloc((size_t)4 * V * sizeof *logits);
    int32_t prompt[5] = {1, 2, 3, V - 1, 0};

    /* valid calls go through, so that the states below are not all zeros */
    CU_ASSERT_EQUAL(mamba2_backend_prefill(b, &a, prompt, 5, logits, 0, &e), 0);
    CU_ASSERT_EQUAL(mamba2_backend_prefill(b, &b2, prompt + 1, 3, NULL, 0, &e), 0);
    Mamba2State *pair[2] = {&a, &b2};
    int32_t next[2] = {4, 5};
    CU_ASSERT_EQUAL(mamba2_backend_step(b, pair, next, 2, logits, &e), 0);
    CU_ASSERT_EQUAL(a.pos, 6);
    CU_ASSERT_EQUAL(b2.pos, 4);

    Snapshot sa, sb;
    CU_ASSERT_EQUAL_FATAL(snapshot_take(&a, &sa), 0);
    CU_ASSERT_EQUAL_FATAL(snapshot_take(&b2, &sb), 0);
    char want[160];

    /* prefill */
    int32_t bad_high[3] = {1, V + 5, 2}, bad_low[2] = {-1, 1};
    snprintf(want, sizeof want, "token id %d at position 1 is outside the vocabulary [0, %d)", V + 5, V);
    expect_refused(name, "prefill, id V + 5", mamba2_backend_prefill(b, &a, bad_high, 3, logits, 1, &e), &e, want);
    expect_refused(name, "prefill, id -1", mamba2_backend_prefill(b, &a, bad_low, 2, logits, 0, &e), &e,
                   "token id -1 at position 0");
    expect_refused(name, "prefill, T = 0", mamba2_backend_prefill(b, &a, prompt, 0, logits, 0, &e), &e,
                   "no tokens to run (T = 0)");
    expect_refused(name, "prefill, T = -3", mamba2_backend_prefill(b, &a, prompt, -3, logits, 0, &e), &e,
                   "no tokens to run (T = -3)");
    expect_refused(name, "prefill, no tokens", mamba2_backend_prefill(b, &a, NULL, 2, logits, 0, &e), &e,
                   "no token array");
    expect_refused(name, "prefill, no state", mamba2_backend_prefill(b, NULL, prompt, 2, logits, 0, &e), &e,
                   "no state");
    expect_refused(name, "prefill, another model's state", mamba2_backend_prefill(b, &other, prompt, 2, logits, 0, &e),
                   &e, "a state made for another model");
    CU_ASSERT_EQUAL(other.pos, 0);

    /* step */
    int32_t bad_pair[2] = {2, V};
    snprintf(want, sizeof want, "token id %d of sequence 1 is outside the vocabulary [0, %d)", V, V);
    expect_refused(name, "step, id V", mamba2_backend_step(b, pair, bad_pair, 2, logits, &e), &e, want);
    expect_refused(name, "step, B = 0", mamba2_backend_step(b, pair, next, 0, logits, &e), &e,
                   "no sequences to step (B = 0)");
    Mamba2State *twice[2] = {&a, &a}, *mixed[2] = {&a, &other}, *hole[2] = {&a, NULL};
    expect_refused(name, "step, one state twice", mamba2_backend_step(b, twice, next, 2, logits, &e), &e,
                   "sequences 0 and 1 share one state");
    expect_refused(name, "step, another model's state", mamba2_backend_step(b, mixed, next, 2, logits, &e), &e,
                   "sequence 1: the state holds");
    expect_refused(name, "step, a NULL state", mamba2_backend_step(b, hole, next, 2, logits, &e), &e,
                   "no state (NULL) for sequence 1");
    expect_refused(name, "step, no logits", mamba2_backend_step(b, pair, next, 2, NULL, &e), &e, "no logits array");
    expect_refused(name, "step, no tokens", mamba2_backend_step(b, pair, NULL, 2, logits, &e), &e, "no token array");

    /* prefill_observed: the same checks first; a backend without layer reports says so */
    expect_refused(name, "observed, T = 0", mamba2_backend_prefill_observed(b, &a, prompt, 0, logits, NULL, NULL, &e),
                   &e, "no tokens to run");
    snprintf(want, sizeof want, "token id %d at position 1", V + 5);
    expect_refused(name, "observed, id V + 5",
                   mamba2_backend_prefill_observed(b, &a, bad_high, 3, logits, NULL, NULL, &e), &e, want);
    if (!b->prefill_observed)
        expect_refused(name, "observed, valid input",
                       mamba2_backend_prefill_observed(b, &a, prompt, 2, logits, NULL, NULL, &e), &e,
                       "cannot report the layers");

    CU_ASSERT(snapshot_equal(&a, &sa));
    CU_ASSERT(snapshot_equal(&b2, &sb));
    if (!snapshot_equal(&a, &sa) || !snapshot_equal(&b2, &sb))
        printf("\n    %s: a refused call changed a state", name);

    /* the backend's own logits arrays: none of 0 floats */
    expect_refused(name, "logits array of 0", mamba2_backend_logits_alloc(b, 0, &e) ? 0 : -1, &e, "logits array of 0 floats");

    /* and the states still work: one more valid step, into the backend's own logits array, whose
     * rows must equal those of an ordinary array on the step after (same states, same tokens) */
    float *own = mamba2_backend_logits_alloc(b, (size_t)2 * V, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(own);
    Mamba2State ca = {0}, cb = {0}, *copies[2] = {&ca, &cb};
    CU_ASSERT_EQUAL_FATAL(mamba2_state_init(&ca, c, &e) || mamba2_state_init(&cb, c, &e) || mamba2_state_copy(&ca, &a, &e) ||
                              mamba2_state_copy(&cb, &b2, &e),
                          0);
    CU_ASSERT_EQUAL(mamba2_backend_step(b, pair, next, 2, own, &e), 0);
    CU_ASSERT_EQUAL(a.pos, 7);
    CU_ASSERT_EQUAL(mamba2_backend_step(b, copies, next, 2, logits, &e), 0);
    /* the GPU's sums of squares add atomically, in the order its blocks finish: its last bits may move */
    double d = test_max_row_rel_l2(own, logits, 2, V), bound = strcmp(name, "gpu") ? 0 : 1e-6;
    if (!(d <= bound)) printf("\n    %s: logits in its own array differ by %.1e (bound %.0e)", name, d, bound);
    CU_ASSERT(d <= bound);
    mamba2_state_free(&ca), mamba2_state_free(&cb);
    mamba2_backend_logits_free(b, own);

    snapshot_free(&sa), snapshot_free(&sb);
    mamba2_state_free(&a), mamba2_state_free(&b2), mamba2_state_free(&other);
    free(logits);
}

static void test_bad_inputs(void) {
    TestFixture fx;
    CU_ASSERT_EQUAL_FATAL(test_load_fixture(FIXTURE, &fx), 0);
    static const char *const names[] = {"ref", "cpu", "gpu"};
    int ran = 0;
    printf("\n   ");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (!mamba2_backend_exists(names[i])) continue;
        Mamba2Backend *b = NULL;
        Mamba2Error e = {{0}};
        if (mamba2_backend_create(names[i], &fx.model, NULL, &b, &e)) {
            CU_ASSERT_STRING_EQUAL(names[i], "gpu"); /* only a GPU may be missing on a machine that built it */
            printf(" %s: not run here (%s);", names[i], e.msg);
            continue;
        }
        unsigned failures = CU_get_number_of_failures();
        check_backend(b, &fx.model);
        mamba2_backend_destroy(b);
        printf(" %s: %s;", names[i], CU_get_number_of_failures() == failures ? "refused, states unchanged" : "FAILED");
        ran++;
    }
    printf("\n");
    CU_ASSERT(ran >= 1);
    test_free_fixture(&fx);
}

int register_backend_tests(void) {
    CU_pSuite s = CU_add_suite("backend", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "dispatch: bad ids, T = 0, B = 0, NULL and foreign states refused on every backend",
                     test_bad_inputs))
        return -1;
    return 0;
}
