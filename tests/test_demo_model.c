/**
 * @file test_demo_model.c
 * @brief The trained demo model in data/stdlib-mamba2 against its transformers fixture.
 *
 * data/stdlib-mamba2/greedy.json (written by data/train_demo_model.py) holds a fixed Python prompt,
 * its ids under the model's own tokenizer (BOS first) and the 64-token greedy continuation made by
 * transformers' Mamba2ForCausalLM with the grouped gate-first norm, fp32, full recompute per token;
 * and a second, "confident" prompt whose continuation never wins by less than 0.15 (for bf16 engines).
 * Checked here:
 *  - the C tokenizer encodes the prompts to the same ids and decodes the continuation to the same text;
 *  - every CPU-side backend built in (ref, and cpu when present) reproduces both continuations token
 *    for token, decoding as `mamba2 generate` does (prefill, then one step per token), and a single
 *    prefill of prompt + continuation has the continuation as its argmax at every position;
 *  - the cpu backend with q8 weights (quantized at load) does the same for the "confident" prompt.
 * The GPU backend is checked the same way by the GPU suite (tests/test_gpu.c) on the GPU machine.
 *
 * And `mamba2 perplexity` on the held-out text data/heldout/calendar.py (a standard-library file the
 * model was not trained on): ref and cpu agree, the NLL is where the model card puts code files,
 * and q8 / q4 weights cost no more than measured; its usage errors.
 */
#include <CUnit/CUnit.h>
#include <math.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"
#include "sampler.h"
#include "tests.h"
#include "tokenizer.h"

#define DEMO_DIR "data/stdlib-mamba2"

/* Tokens prefill + steps reproduce of the continuation (the first disagreement ends the count). */
static int decode_agree(Mamba2Backend *b, const Mamba2Model *m, const TestDemoCase *c) {
    int V = m->cfg.vocab_size, agree = 0;
    float *lg = malloc((size_t)V * sizeof *lg);
    Mamba2State st;
    Mamba2Error e = {{0}};
    if (!lg || mamba2_state_init(&st, &m->cfg, &e)) {
        free(lg);
        return -1;
    }
    Mamba2State *one = &st;
    if (mamba2_backend_prefill(b, &st, c->ids, c->T, lg, 0, &e) == 0) {
        for (int k = 0; k < c->n; k++) {
            int32_t best = mamba2_argmax(lg, V);
            if (best != c->greedy[k]) break;
            agree++;
            if (k + 1 < c->n && mamba2_backend_step(b, &one, &best, 1, lg, &e)) break;
        }
    } else {
        printf("\n    %s prefill: %s", b->name, e.msg);
    }
    mamba2_state_free(&st);
    free(lg);
    return agree;
}

/* Positions of one prefill of prompt + continuation whose argmax is the next fixture token. */
static int prefill_agree(Mamba2Backend *b, const Mamba2Model *m, const TestDemoCase *c) {
    int V = m->cfg.vocab_size, T = c->T + c->n - 1, agree = 0;
    int32_t *all = malloc((size_t)T * sizeof *all);
    float *lg = malloc((size_t)T * V * sizeof *lg);
    Mamba2State st;
    Mamba2Error e = {{0}};
    if (!all || !lg || mamba2_state_init(&st, &m->cfg, &e)) {
        free(all), free(lg);
        return -1;
    }
    memcpy(all, c->ids, (size_t)c->T * sizeof *all);
    memcpy(all + c->T, c->greedy, (size_t)(c->n - 1) * sizeof *all);
    if (mamba2_backend_prefill(b, &st, all, T, lg, 1, &e) == 0) {
        for (int k = 0; k < c->n; k++)
            agree += mamba2_argmax(lg + (size_t)(c->T - 1 + k) * V, V) == c->greedy[k];
    } else {
        printf("\n    %s prefill: %s", b->name, e.msg);
    }
    mamba2_state_free(&st);
    free(all), free(lg);
    return agree;
}

static void test_demo_greedy(void) {
    TestDemoCase cases[2];
    const char *label[2] = {"main", "confident"};
    int n_cases = test_read_demo_cases(cases); /* 1 when greedy.json has no "confident" case */
    CU_ASSERT_FATAL(n_cases >= 1);

    /* the tokenizer gives the fixture's ids and text */
    Mamba2Error e = {{0}};
    Mamba2Tokenizer *tok = mamba2_tokenizer_load(DEMO_DIR, &e);
    CU_ASSERT_PTR_NOT_NULL(tok);
    for (int i = 0; tok && i < n_cases; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        char *text = NULL;
        size_t len = 0;
        CU_ASSERT_EQUAL(mamba2_tokenizer_encode(tok, cases[i].prompt, strlen(cases[i].prompt), 1, &ids, &n, &e), 0);
        CU_ASSERT(n == (size_t)cases[i].T && ids && !memcmp(ids, cases[i].ids, n * sizeof *ids));
        CU_ASSERT_EQUAL(mamba2_tokenizer_decode(tok, cases[i].greedy, (size_t)cases[i].n, &text, &len, &e), 0);
        CU_ASSERT(text && len == strlen(cases[i].text) && !memcmp(text, cases[i].text, len));
        free(ids);
        free(text);
    }
    mamba2_tokenizer_free(tok);

    Mamba2Model m;
    if (mamba2_model_load(DEMO_DIR, &m, &e)) {
        printf("\n    %s: %s", DEMO_DIR, e.msg);
        CU_FAIL("load " DEMO_DIR);
    } else {
        CU_ASSERT(m.cfg.n_groups > 1);
        /* ref, cpu, and cpu with weights quantized at load. Quantized weights move the logits by
         * about 1.5e-2 (q8) and 1.4e-1 (q4) relative L2 on this model (tests/test_quant.c), far more
         * than the main prompt's smallest greedy margin (0.005, a near-tie at its 8th token that bf16
         * GPU engines flip too), so with q8 the "confident" continuation (every margin >= 0.15) must
         * reproduce token for token and the main one is printed; q4's agreement is printed. */
        const char *names[] = {"ref", "cpu", "cpu", "cpu"};
        const Mamba2WeightFormat formats[] = {MAMBA2_WEIGHTS_STORED, MAMBA2_WEIGHTS_STORED, MAMBA2_WEIGHTS_Q8,
                                              MAMBA2_WEIGHTS_Q4};
        for (int bi = 0; bi < 4; bi++) {
            if (!strstr(mamba2_backend_names(), names[bi])) continue; /* cpu: not in this build */
            Mamba2Backend *b = NULL;
            Mamba2BackendOptions bo = {0};
            bo.weights = formats[bi];
            if (mamba2_backend_create(names[bi], &m, &bo, &b, &e)) {
                printf("\n    %s: %s", names[bi], e.msg);
                CU_FAIL("backend");
                continue;
            }
            for (int i = 0; i < n_cases; i++) {
                int dec = decode_agree(b, &m, &cases[i]), pre = prefill_agree(b, &m, &cases[i]);
                printf("\n    %-4s %-6s %-9s greedy %d/%d (prefill + steps), %d/%d (one prefill)", names[bi],
                       mamba2_weight_format_name(formats[bi]), label[i], dec, cases[i].n, pre, cases[i].n);
                if (formats[bi] == MAMBA2_WEIGHTS_Q4 || (formats[bi] == MAMBA2_WEIGHTS_Q8 && n_cases == 2 && i == 0))
                    continue;
                CU_ASSERT_EQUAL(dec, cases[i].n);
                CU_ASSERT_EQUAL(pre, cases[i].n);
            }
            mamba2_backend_destroy(b);
        }
        mamba2_model_free(&m);
    }
    test_free_demo_cases(cases, n_cases);
}

#define HELDOUT "data/heldout/calendar.py"

/* `mamba2 perplexity DEMO_DIR --file HELDOUT ARGS --json`: its mean NLL, or NAN (with the reason
 * printed) when it fails or prints no mean_nll. */
static double perplexity_nll(const char *args) {
    char cmd[512], out[4096], err[4096];
    snprintf(cmd, sizeof cmd, "perplexity " DEMO_DIR " --file " HELDOUT " --json %s", args);
    int rc = test_run_program(NULL, cmd, out, sizeof out, err, sizeof err);
    json_object *o = rc == 0 ? json_tokener_parse(out) : NULL, *v;
    double nll = o && json_object_object_get_ex(o, "mean_nll", &v) ? json_object_get_double(v) : NAN;
    printf("\n    perplexity %-48s NLL %.6f", args, nll);
    if (isnan(nll)) printf(" (exit %d: %s%s)", rc, err, out);
    json_object_put(o);
    return nll;
}

/*
 * Measured on 2026-12-02 (AMD EPYC Zen 4, 2 cores; see results/cpu.md "Perplexity of each precision
 * and weight format"), on the first 2000 tokens of HELDOUT, one sequence:
 *   cpu stored 3.561440, ref 3.561440 (agree to 3e-9 relative);
 *   q8 - stored: -3.8e-5 (VNNI kernel), -1.1e-4 (MAMBA2_CPU_ISA=avx2), -2.5e-4 (scalar),
 *                +1.8e-4 (the SANITIZE=1 build);
 *   q4 - stored: +2.7e-3 (VNNI), +2.5e-3 (avx2), +2.3e-3 (scalar), +2.4e-3 (SANITIZE=1).
 * The kernels of cpu/qmatrix.c round and sum differently (the spread above), and not with the
 * threads (1 and 2 threads give the same bits). The bounds, 4x and 3.6x the largest |difference|
 * measured, leave room for another machine while failing a broken quantization (a wrong scale or
 * swapped nibbles in one matrix cost tenths of a nat or more).
 * Q8_BOUND moved from 1e-3 to 2e-3 on 2026-12-05, when q8 went from one scale per 32 weights to one
 * per 64 (Intel Xeon, family 6 model 167, 2 cores): q8 - stored on these tokens became -9.1e-4
 * (VNNI), -6.4e-4 (avx2), -6.2e-4 (scalar), against q4 - stored +1.8e-3, +2.2e-3, +1.9e-3, while
 * over the whole of HELDOUT (8,181 tokens) one scale per 64 gives -1.6e-4, +3.6e-4, +5.4e-4 and one
 * per 32 gave -3.0e-4 (VNNI): a signed mean over a few thousand tokens moves with the few tokens
 * near a tie, and 1e-3 would leave other machines 10 % of room. 2e-3 is 2.2x the largest measured;
 * q8's finer check, its logits against ref, is tests/test_quant.c's (Q8_DEMO_TOL).
 */
#define Q8_BOUND 2e-3
#define Q4_BOUND 1e-2

static void test_demo_perplexity(void) {
    /* Plausible range: the model card's validation loss, 2.730 nats/token over 17 held-out files,
     * mixes ~0.45 for the encodings/ character tables with 2.5-3.9 for the files of code (measured
     * file by file with this command, --ctx 512: token-weighted mean 2.723, the card's figure). A
     * code file belongs in [2.5, 4.5]; a model that lost a layer or a wrong tokenizer lands far
     * above (uniform guessing: ln 4096 = 8.3), and far below would mean tokens scored wrongly. */
    int have_cpu = strstr(mamba2_backend_names(), "cpu") != NULL;
    /* ref vs cpu on 500 tokens: the scalar reference scores ~130 tokens/s on 2 cores (2000 tokens
     * would take 15 s, and more under the sanitizers) */
    double ref = perplexity_nll("--backend ref --max-tokens 500");
    CU_ASSERT(ref > 2.5 && ref < 4.5);
    if (have_cpu) {
        double cpu = perplexity_nll("--backend cpu --max-tokens 500");
        CU_ASSERT(fabs(cpu - ref) <= 1e-4 * fabs(ref));
        double stored = perplexity_nll("--backend cpu --max-tokens 2000");
        double q8 = perplexity_nll("--backend cpu --max-tokens 2000 --weights q8");
        double q4 = perplexity_nll("--backend cpu --max-tokens 2000 --weights q4");
        CU_ASSERT(stored > 2.5 && stored < 4.5);
        CU_ASSERT(fabs(q8 - stored) <= Q8_BOUND);
        CU_ASSERT(fabs(q4 - stored) <= Q4_BOUND);
    }

    /* usage errors exit 2 before anything is loaded; a missing or empty file exits 1, named */
    char err[4096];
    CU_ASSERT_EQUAL(test_run_program(NULL, "perplexity " DEMO_DIR, NULL, 0, err, sizeof err), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--file"));
    CU_ASSERT_EQUAL(test_run_program(NULL, "perplexity " DEMO_DIR " --file " HELDOUT " --max-tokens 0", NULL, 0, err,
                                     sizeof err), 2);
    CU_ASSERT_EQUAL(test_run_program(NULL, "perplexity " DEMO_DIR " --file " HELDOUT " --weights q3", NULL, 0, err,
                                     sizeof err), 2);
    CU_ASSERT_EQUAL(test_run_program(NULL, "perplexity " DEMO_DIR " --file " HELDOUT " --backend ref --weights q8", NULL,
                                     0, err, sizeof err), 2);
    CU_ASSERT_EQUAL(test_run_program(NULL, "perplexity " DEMO_DIR " --file data/heldout/no-such-file.py", NULL, 0,
                                     err, sizeof err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "data/heldout/no-such-file.py"));
    char *dir = test_tmpdir(), args[4300];
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    snprintf(args, sizeof args, "%s/empty.txt", dir);
    FILE *f = fopen(args, "w");
    CU_ASSERT_PTR_NOT_NULL(f);
    if (f) fclose(f);
    snprintf(args, sizeof args, "perplexity " DEMO_DIR " --file %s/empty.txt", dir);
    CU_ASSERT_EQUAL(test_run_program(NULL, args, NULL, 0, err, sizeof err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "empty.txt"));
    test_rmtree(dir);
    free(dir);
}

#ifdef MAMBA2_HAVE_GPU
#include "gpu.h"

/* The GPU backend on the demo model. Its prefill rounds activations to bf16, so only the
 * "confident" continuation (every greedy margin >= 0.64) must reproduce exactly; the main one has a
 * near-tie (smallest margin 0.005) that bf16 may flip, so its agreement is printed, not asserted.
 * Added after the last GPU run of 2026-11-22: it has not yet run on a GPU (see results/gpu.md). */
static void test_demo_greedy_gpu(void) {
    TestDemoCase cases[2];
    CU_ASSERT_FATAL(test_read_demo_cases(cases) == 2);
    Mamba2Model m;
    Mamba2Error e = {{0}};
    Mamba2Backend *b = NULL;
    Mamba2BackendOptions bo = {0};
    CU_ASSERT_EQUAL_FATAL(mamba2_model_load(DEMO_DIR, &m, &e), 0);
    CU_ASSERT_EQUAL_FATAL(mamba2_backend_create("gpu", &m, &bo, &b, &e), 0);
    const char *label[2] = {"main", "confident"};
    for (int i = 0; i < 2; i++) {
        int dec = decode_agree(b, &m, &cases[i]), pre = prefill_agree(b, &m, &cases[i]);
        printf("\n    gpu  %-9s greedy %d/%d (prefill + steps), %d/%d (one prefill)", label[i], dec, cases[i].n, pre,
               cases[i].n);
        if (i == 1) {
            CU_ASSERT_EQUAL(dec, cases[i].n);
            CU_ASSERT_EQUAL(pre, cases[i].n);
        }
    }
    mamba2_backend_destroy(b);
    mamba2_model_free(&m);
    test_free_demo_cases(cases, 2);
}
#endif

int register_demo_model_tests(void) {
    CU_pSuite s = CU_add_suite("demo_model", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "stdlib-mamba2: tokenizer and greedy continuation vs transformers", test_demo_greedy)) return -1;
    if (!CU_add_test(s, "stdlib-mamba2: perplexity of held-out text, ref vs cpu, q8 and q4 bounds", test_demo_perplexity))
        return -1;
#ifdef MAMBA2_HAVE_GPU
    /* a suite of its own, inactive (and said so) without a GPU, like tests/test_gpu.c */
    CU_pSuite g = CU_add_suite("demo_model_gpu", NULL, NULL);
    if (!g || !CU_add_test(g, "stdlib-mamba2 on the GPU backend", test_demo_greedy_gpu)) return -1;
    Mamba2Error why = {{0}};
    if (!mamba2_gpu_available(&why)) {
        printf("\n[demo_model_gpu] GPU tests SKIPPED (suite inactive): %s\n", why.msg);
        CU_set_suite_active(g, CU_FALSE);
    }
#endif
    return 0;
}
