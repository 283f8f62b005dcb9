/**
 * @file tests.h
 * @brief Registration functions of the CUnit suites (one per tests/test_*.c) and shared helpers.
 */
#ifndef MAMBA2_TESTS_H
#define MAMBA2_TESTS_H

#include <stddef.h>
#include <stdint.h>

/** Register the SSD-form agreement suite (test_ssd.c). */
int register_ssd_tests(void);
/** Register config parsing and checkpoint loading tests (test_checkpoint.c). */
int register_checkpoint_tests(void);
/** Register the whole-model tests against the fixtures (test_model.c). */
int register_model_tests(void);
/** Register the GPU suite (test_gpu.c); inactive, with the reason printed, without a GPU. */
int register_gpu_tests(void);
/** Register the tokenizer suite: golden ids of both reference libraries, chat samples (test_tokenizer.c). */
int register_tokenizer_tests(void);
/** Register the sampler suite: greedy, seeds, top-k / top-p / min-p, repetition penalty (test_sampler.c). */
int register_sampler_tests(void);
/** Register the CPU backend suite: kernels, fixtures and random models vs ref, batching, threads (test_cpu.c). */
int register_cpu_tests(void);
/** Register the hostile-input suite: malformed files refused clearly, resources, fuzz corpus replay (test_malformed.c). */
int register_malformed_tests(void);
/** Register the trained demo model suite: data/stdlib-mamba2 greedy.json on ref and cpu (test_demo_model.c). */
int register_demo_model_tests(void);
/** Registers the suite of tests/test_quant.c (weights quantized at load). */
int register_quant_tests(void);
/** Register the dispatch-layer suite: bad inputs refused on every backend, states unchanged (test_backend.c). */
int register_backend_tests(void);
/** Register the public API suite: include/mamba2.h as a program uses it (test_api.c). */
int register_api_tests(void);
/** Register the library suite: exported symbols, no output, threads (test_api_library.c). */
int register_api_library_tests(void);

/** Register the command-line suite: exact continuation, outputs, flags and errors (test_cli.c). */
int register_cli_tests(void);

/** Register the chat suite: `mamba2 chat` scripted, /save and /load, templates, /stats (test_chat.c). */
int register_chat_tests(void);

/** The run's random seed (from MAMBA2_TEST_SEED, else the clock); printed once. */
uint64_t test_seed(void);
/** Uniform double in [0, 1) from the seeded generator. */
double test_uniform(void);
/** Standard normal double from the seeded generator. */
double test_normal(void);
/** Fill @p a[n] with N(0, scale²) samples. */
void test_fill_normal(float *a, size_t n, double scale);
/** ‖got − want‖₂ / ‖want‖₂ (absolute norm when want is zero; +inf on NaN). */
double test_rel_l2(const float *got, const float *want, size_t n);
/** Create a fresh directory under /tmp (caller frees the returned path). */
char *test_tmpdir(void);
/** Remove a directory made by test_tmpdir() and everything in it. */
void test_rmtree(const char *dir);
/** The program under test: $MAMBA2_PROGRAM (set by `make test`), else "./mamba2". */
const char *test_program(void);
/** Read a whole small text file into @p buf (empty when it cannot be read). */
void test_slurp(const char *path, char *buf, size_t cap);
/**
 * @brief Run `ENV PROGRAM ARGS` (the program under test, ARGS through the shell), capturing what it
 *        writes: stdout into @p out and stderr into @p err, each when not NULL (else discarded).
 * @return the exit status, 128 + the signal that ended it, or -1 when it could not be run.
 */
int test_run_program(const char *env, const char *args, char *out, size_t out_cap, char *err, size_t err_cap);

/** Shape and deliberate defects of a tiny synthetic checkpoint (see test_write_tiny_model()). */
typedef struct {
    int d_model, n_layer, n_heads, head_dim, d_state, n_groups, d_conv, vocab_size, chunk_size; /**< dims */
    int tie;                 /**< 1: no lm_head.weight, tie_word_embeddings true */
    int no_conv_bias;        /**< 1: no mixer.conv1d.bias, use_conv_bias false */
    const char *dtype;       /**< "F32" or "BF16" for every tensor */
    const char *drop;        /**< name of a tensor to leave out, or NULL */
    const char *reshape;     /**< name of a tensor whose first dimension is made one too large, or NULL */
    const char *bad_dtype;   /**< name of a tensor stored with dtype "I64", or NULL */
    const char *config_json; /**< config.json text to write instead of the generated one, or NULL */
} TinyModelSpec;

/** A valid default spec: d=16, 2 layers, H=4, P=8, N=8, G=2, K=4, V=50, Q=4, F32, untied. */
void test_tiny_spec_default(TinyModelSpec *s);

/** Write config.json + model.safetensors of a random tiny model into @p dir. 0 on success. */
int test_write_tiny_model(const char *dir, const TinyModelSpec *s);

/** One prompt of data/stdlib-mamba2/greedy.json: its ids and the greedy continuation made by transformers. */
typedef struct {
    char *prompt;   /**< the prompt text (owned) */
    char *text;     /**< the continuation's text (owned) */
    int32_t *ids;   /**< [T] the prompt's ids under the model's tokenizer, BOS first (owned) */
    int32_t *greedy; /**< [n] the greedy continuation (owned) */
    int T;          /**< prompt ids */
    int n;          /**< continuation ids */
} TestDemoCase;

/**
 * @brief Read greedy.json: its main case into @p cases[0] and, when the file has one, its
 *        "confident" case (every greedy margin large) into @p cases[1].
 * @return the number of cases read (1 or 2), or -1 when the file is missing or malformed.
 */
int test_read_demo_cases(TestDemoCase cases[2]);
/** Free the @p n cases read by test_read_demo_cases(). */
void test_free_demo_cases(TestDemoCase *cases, int n);

#include "model.h"

/** A golden fixture from data/fixtures: checkpoint + tokens + transformers' logits. */
typedef struct {
    char dir[4096];     /**< data/fixtures/NAME */
    Mamba2Model model;  /**< the loaded checkpoint */
    int T;              /**< prompt tokens */
    int32_t *tokens;    /**< [T] */
    float *logits;      /**< [T, V] from transformers */
    int n_greedy;       /**< greedy continuation length */
    int32_t *greedy;    /**< [n_greedy] from transformers (full recompute per token) */
} TestFixture;

/** Names of the fixtures under data/fixtures (sorted); returns how many. */
int test_list_fixtures(char names[][64], int max);
/** Load fixture @p name (prints why on failure). 0 on success. */
int test_load_fixture(const char *name, TestFixture *fx);
/** Free a fixture. */
void test_free_fixture(TestFixture *fx);
/** Largest relative L2 error over the T rows of [T, V] arrays (+inf on NaN). */
double test_max_row_rel_l2(const float *got, const float *want, int T, int V);

#endif
