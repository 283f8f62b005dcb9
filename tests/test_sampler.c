/**
 * @file test_sampler.c
 * @brief The sampler on constructed distributions: greedy, seeds, top-k, top-p, min-p, repetition penalty.
 *
 * Each filter is checked by sampling many times from logits built so that the
 * set of allowed tokens is known exactly: a sample outside that set is a bug,
 * whatever the random numbers. The allowed tokens must also all show up.
 */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "tests.h"

/** Samples drawn per distribution. */
#define DRAWS 20000

/* logits = log(p): the softmax at temperature 1 gives back p. */
static void logits_of(const double *p, int n, float *logits) {
    for (int i = 0; i < n; i++) logits[i] = p[i] > 0 ? (float)log(p[i]) : -INFINITY;
}

/* Sample DRAWS times; count[i] = how often token i came out. */
static void draw(const Mamba2SamplerConfig *cfg, const float *logits, int n, int *count) {
    Mamba2Sampler s;
    Mamba2Error err = {{0}};
    CU_ASSERT_EQUAL_FATAL(mamba2_sampler_init(&s, cfg, n, &err), 0);
    memset(count, 0, (size_t)n * sizeof *count);
    for (int k = 0; k < DRAWS; k++) {
        int32_t t = mamba2_sampler_sample(&s, logits, NULL, 0);
        CU_ASSERT_FATAL(t >= 0 && t < n);
        count[t]++;
    }
    mamba2_sampler_free(&s);
}

static Mamba2SamplerConfig sampling(void) {
    Mamba2SamplerConfig c;
    mamba2_sampler_defaults(&c);
    c.temperature = 1.0f;
    c.seed = test_seed();
    return c;
}

static void test_greedy_is_argmax(void) {
    enum { V = 1000 };
    float logits[V];
    Mamba2SamplerConfig cfg;
    Mamba2Sampler s;
    Mamba2Error err = {{0}};
    mamba2_sampler_defaults(&cfg);
    cfg.top_k = 5; /* filters do not matter at temperature 0 */
    cfg.top_p = 0.5f;
    CU_ASSERT_EQUAL_FATAL(mamba2_sampler_init(&s, &cfg, V, &err), 0);
    for (int trial = 0; trial < 200; trial++) {
        test_fill_normal(logits, V, 3.0);
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        CU_ASSERT_EQUAL(mamba2_sampler_sample(&s, logits, NULL, 0), best);
        CU_ASSERT_EQUAL(mamba2_argmax(logits, V), best);
    }
    mamba2_sampler_free(&s);
    /* ties go to the lowest id; NaN is never the argmax */
    float tie[4] = {1.0f, 5.0f, 5.0f, NAN};
    CU_ASSERT_EQUAL_FATAL(mamba2_sampler_init(&s, &cfg, 4, &err), 0);
    CU_ASSERT_EQUAL(mamba2_sampler_sample(&s, tie, NULL, 0), 1);
    mamba2_sampler_free(&s);
    float nan_first[3] = {NAN, -2.0f, -1.0f};
    CU_ASSERT_EQUAL(mamba2_argmax(nan_first, 3), 2);
}

static void test_seed_reproduces(void) {
    enum { V = 500, N = 300 };
    float logits[V];
    int32_t a[N], b[N], c[N];
    test_fill_normal(logits, V, 2.0);
    Mamba2SamplerConfig cfg = sampling();
    cfg.seed = 1234;
    for (int run = 0; run < 3; run++) {
        Mamba2Sampler s;
        Mamba2Error err = {{0}};
        if (run == 2) cfg.seed = 1235;
        CU_ASSERT_EQUAL_FATAL(mamba2_sampler_init(&s, &cfg, V, &err), 0);
        int32_t *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < N; i++) out[i] = mamba2_sampler_sample(&s, logits, NULL, 0);
        mamba2_sampler_free(&s);
    }
    CU_ASSERT(memcmp(a, b, sizeof a) == 0);
    CU_ASSERT(memcmp(a, c, sizeof a) != 0);
    /* the generator itself: fixed numbers for seed 0, all in [0, 1) */
    uint64_t st = mamba2_rng_seed(0), st2 = mamba2_rng_seed(0);
    for (int i = 0; i < 1000; i++) {
        double u = mamba2_rng_uniform(&st);
        CU_ASSERT(u >= 0.0 && u < 1.0);
        CU_ASSERT_EQUAL(u, mamba2_rng_uniform(&st2));
    }
}

/* With temperature 1 and no filter, frequencies follow p (5 standard deviations). */
static void test_plain_sampling_follows_p(void) {
    double p[5] = {0.4, 0.3, 0.15, 0.1, 0.05};
    float logits[5];
    int count[5];
    logits_of(p, 5, logits);
    Mamba2SamplerConfig cfg = sampling();
    draw(&cfg, logits, 5, count);
    for (int i = 0; i < 5; i++) {
        double sd = sqrt(DRAWS * p[i] * (1 - p[i]));
        CU_ASSERT(fabs(count[i] - DRAWS * p[i]) < 5 * sd);
    }
    /* temperature 2 flattens: p_i ∝ sqrt(p_i) */
    cfg.temperature = 2.0f;
    draw(&cfg, logits, 5, count);
    double z = 0;
    for (int i = 0; i < 5; i++) z += sqrt(p[i]);
    for (int i = 0; i < 5; i++) {
        double q = sqrt(p[i]) / z, sd = sqrt(DRAWS * q * (1 - q));
        CU_ASSERT(fabs(count[i] - DRAWS * q) < 5 * sd);
    }
}

static void test_top_k(void) {
    enum { V = 50 };
    float logits[V];
    int count[V];
    /* logits 0..49 in a shuffled order; the k largest are known */
    for (int i = 0; i < V; i++) logits[i] = (float)((i * 17) % V) * 0.05f;
    Mamba2SamplerConfig cfg = sampling();
    cfg.temperature = 3.0f; /* flat, so excluded tokens would show up if they could */
    for (int k = 1; k <= 7; k += 3) {
        cfg.top_k = k;
        draw(&cfg, logits, V, count);
        for (int i = 0; i < V; i++) {
            int rank = 0; /* tokens with a larger logit */
            for (int j = 0; j < V; j++) rank += logits[j] > logits[i];
            if (rank >= k) CU_ASSERT_EQUAL(count[i], 0);
            if (rank < k) CU_ASSERT(count[i] > 0);
        }
    }
}

static void test_top_p(void) {
    /* sorted p: 0.5, 0.3, 0.1, 0.06, 0.04 (shuffled in the array) */
    double p[5] = {0.06, 0.5, 0.04, 0.3, 0.1};
    float logits[5];
    int count[5];
    logits_of(p, 5, logits);
    Mamba2SamplerConfig cfg = sampling();
    struct {
        float top_p;
        int allowed[5];
    } cases[] = {
        {0.45f, {0, 1, 0, 0, 0}}, /* 0.5 ≥ 0.45 */
        {0.75f, {0, 1, 0, 1, 0}}, /* 0.5 + 0.3 ≥ 0.75 */
        {0.85f, {0, 1, 0, 1, 1}}, /* + 0.1 */
        {0.93f, {1, 1, 0, 1, 1}}, /* + 0.06 */
        {1.0f, {1, 1, 1, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        cfg.top_p = cases[c].top_p;
        draw(&cfg, logits, 5, count);
        for (int i = 0; i < 5; i++) {
            if (!cases[c].allowed[i]) CU_ASSERT_EQUAL(count[i], 0);
            if (cases[c].allowed[i]) CU_ASSERT(count[i] > 0);
        }
    }
    /* top-k then top-p: k = 2 leaves {0.5, 0.3}; renormalised 0.625, 0.375; p = 0.6 keeps the first */
    cfg.top_k = 2;
    cfg.top_p = 0.6f;
    draw(&cfg, logits, 5, count);
    CU_ASSERT_EQUAL(count[1], DRAWS);
}

static void test_min_p(void) {
    double p[6] = {0.3, 0.05, 0.4, 0.16, 0.06, 0.03};
    float logits[6];
    int count[6];
    logits_of(p, 6, logits);
    Mamba2SamplerConfig cfg = sampling();
    /* min_p 0.2: keep p ≥ 0.2 · 0.4 = 0.08 → {0.3, 0.4, 0.16} */
    cfg.min_p = 0.2f;
    draw(&cfg, logits, 6, count);
    int allowed[6] = {1, 0, 1, 1, 0, 0};
    for (int i = 0; i < 6; i++) {
        if (!allowed[i]) CU_ASSERT_EQUAL(count[i], 0);
        if (allowed[i]) CU_ASSERT(count[i] > 0);
    }
    /* min_p 1: only the most probable token */
    cfg.min_p = 1.0f;
    draw(&cfg, logits, 6, count);
    CU_ASSERT_EQUAL(count[2], DRAWS);
}

static void test_repetition_penalty(void) {
    float l[5] = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f};
    unsigned char seen[5] = {0};
    int32_t hist[] = {0, 1, 0, 4};
    /* positive ÷ 2, negative × 2, zero stays, each token once however often it occurs */
    mamba2_repetition_penalty(l, 5, hist, 4, 0, 2.0f, seen);
    CU_ASSERT_EQUAL(l[0], 1.0f);
    CU_ASSERT_EQUAL(l[1], -2.0f);
    CU_ASSERT_EQUAL(l[2], 0.5f);
    CU_ASSERT_EQUAL(l[3], 3.0f);
    CU_ASSERT_EQUAL(l[4], 0.0f);
    for (int i = 0; i < 5; i++) CU_ASSERT_EQUAL(seen[i], 0);
    /* window 1: only the last token (4) counts; out-of-range ids are ignored */
    float m[5] = {2.0f, -1.0f, 0.5f, 3.0f, 1.0f};
    int32_t hist2[] = {0, 1, 99, -5, 4};
    mamba2_repetition_penalty(m, 5, hist2, 5, 1, 2.0f, seen);
    CU_ASSERT(m[0] == 2.0f && m[1] == -1.0f && m[4] == 0.5f);
    /* greedy changes: 3.0 / 1.5 = 2.0 < 2.9 */
    float g[2] = {3.0f, 2.9f};
    Mamba2SamplerConfig cfg;
    Mamba2Sampler s;
    Mamba2Error err = {{0}};
    mamba2_sampler_defaults(&cfg);
    cfg.repetition_penalty = 1.5f;
    CU_ASSERT_EQUAL_FATAL(mamba2_sampler_init(&s, &cfg, 2, &err), 0);
    int32_t h0[] = {0}, h1[] = {1, 1};
    CU_ASSERT_EQUAL(mamba2_sampler_sample(&s, g, NULL, 0), 0);
    CU_ASSERT_EQUAL(mamba2_sampler_sample(&s, g, h0, 1), 1);
    CU_ASSERT_EQUAL(mamba2_sampler_sample(&s, g, h1, 2), 0);
    CU_ASSERT(g[0] == 3.0f && g[1] == 2.9f); /* the caller's logits are not modified */
    mamba2_sampler_free(&s);
    /* window: penalised only while the token is among the last n */
    cfg.repetition_window = 1;
    CU_ASSERT_EQUAL_FATAL(mamba2_sampler_init(&s, &cfg, 2, &err), 0);
    int32_t h2[] = {0, 1};
    CU_ASSERT_EQUAL(mamba2_sampler_sample(&s, g, h2, 2), 0);
    CU_ASSERT_EQUAL(mamba2_sampler_sample(&s, g, h2, 1), 1);
    mamba2_sampler_free(&s);
}

static void test_bad_settings(void) {
    Mamba2SamplerConfig cfg;
    Mamba2Sampler s;
    Mamba2Error err = {{0}};
    mamba2_sampler_defaults(&cfg);
    cfg.temperature = -1.0f;
    CU_ASSERT_NOT_EQUAL(mamba2_sampler_init(&s, &cfg, 10, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "temperature"));
    mamba2_sampler_defaults(&cfg);
    cfg.top_p = 0.0f;
    CU_ASSERT_NOT_EQUAL(mamba2_sampler_init(&s, &cfg, 10, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "top-p"));
    mamba2_sampler_defaults(&cfg);
    cfg.min_p = 1.5f;
    CU_ASSERT_NOT_EQUAL(mamba2_sampler_init(&s, &cfg, 10, &err), 0);
    mamba2_sampler_defaults(&cfg);
    cfg.top_k = -2;
    CU_ASSERT_NOT_EQUAL(mamba2_sampler_init(&s, &cfg, 10, &err), 0);
    /* all logits -inf or NaN: still a valid id */
    mamba2_sampler_defaults(&cfg);
    cfg.temperature = 1.0f;
    CU_ASSERT_EQUAL_FATAL(mamba2_sampler_init(&s, &cfg, 3, &err), 0);
    float dead[3] = {-INFINITY, NAN, -INFINITY};
    int32_t t = mamba2_sampler_sample(&s, dead, NULL, 0);
    CU_ASSERT(t >= 0 && t < 3);
    mamba2_sampler_free(&s);
}

int register_sampler_tests(void) {
    CU_pSuite s = CU_add_suite("sampler", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "temperature 0 is the argmax", test_greedy_is_argmax) ||
        !CU_add_test(s, "a fixed seed reproduces the tokens", test_seed_reproduces) ||
        !CU_add_test(s, "plain sampling follows the softmax", test_plain_sampling_follows_p) ||
        !CU_add_test(s, "top-k never picks an excluded token", test_top_k) ||
        !CU_add_test(s, "top-p never picks an excluded token", test_top_p) ||
        !CU_add_test(s, "min-p never picks an excluded token", test_min_p) ||
        !CU_add_test(s, "repetition penalty changes what it should", test_repetition_penalty) ||
        !CU_add_test(s, "bad settings are refused", test_bad_settings))
        return -1;
    return 0;
}
