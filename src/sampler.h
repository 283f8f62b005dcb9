/**
 * @file sampler.h
 * @brief Choosing the next token from a float logits[V] array.
 *
 * The steps, in order (the usual ones of llama.cpp and transformers):
 *  1. repetition penalty on every distinct token among the last n of the
 *     history: a positive logit is divided by the penalty, a negative one
 *     multiplied by it (CTRL, Keskar et al. 2019);
 *  2. temperature 0: greedy, the argmax (lowest id on ties); stop here;
 *  3. logits / temperature, softmax;
 *  4. top-k: keep the k most probable tokens;
 *  5. top-p (nucleus): keep the smallest set of most probable tokens whose
 *     probability sums to at least p;
 *  6. min-p: keep the tokens whose probability is at least min_p · p_max;
 *  7. draw one of the kept tokens, in proportion to its probability, with a
 *     seeded xorshift64* generator (the same seed gives the same tokens).
 *
 * NaN logits count as −∞. Filters only ever remove tokens; the most probable
 * token always survives.
 */
#ifndef MAMBA2_SAMPLER_H
#define MAMBA2_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/** Sampling settings. mamba2_sampler_defaults() gives greedy decoding. */
typedef struct {
    float temperature;        /**< 0: greedy; otherwise > 0 (1 leaves the logits as they are) */
    int top_k;                /**< keep the k most probable tokens; 0: off */
    float top_p;              /**< nucleus threshold in (0, 1]; 1: off */
    float min_p;              /**< keep p ≥ min_p · p_max, in [0, 1]; 0: off */
    float repetition_penalty; /**< ≥ 1 usually; 1: off */
    int repetition_window;    /**< how many of the last tokens the penalty looks at; 0: the whole history */
    uint64_t seed;            /**< seed of the random generator */
} Mamba2SamplerConfig;

/** A token still in the running: its (unnormalised) probability and id. */
typedef struct {
    float p;    /**< probability, up to a common factor */
    int32_t id; /**< token id */
} Mamba2Candidate;

/** A sampler: its settings, its random state and scratch space for V tokens. */
typedef struct {
    Mamba2SamplerConfig cfg; /**< the settings */
    uint64_t rng;            /**< xorshift64* state (never 0) */
    int vocab_size;          /**< V */
    float *logits;           /**< [V] scratch: a copy of the logits */
    Mamba2Candidate *cand;   /**< [V] scratch: the candidates */
    unsigned char *seen;     /**< [V] scratch: tokens already penalised */
} Mamba2Sampler;

/** @brief Greedy settings: temperature 0, no filter, no penalty, seed 42. */
void mamba2_sampler_defaults(Mamba2SamplerConfig *cfg);

/**
 * @brief Check @p cfg and allocate scratch space for @p vocab_size tokens.
 * @return 0, or −1 with the reason (an out-of-range setting, out of memory) in @p err.
 */
int mamba2_sampler_init(Mamba2Sampler *s, const Mamba2SamplerConfig *cfg, int vocab_size, Mamba2Error *err);

/** @brief Release the scratch space. */
void mamba2_sampler_free(Mamba2Sampler *s);

/**
 * @brief Choose the next token.
 * @param s         the sampler (its random state advances by one draw when temperature > 0)
 * @param logits    [V] scores of the next token (not modified)
 * @param history   tokens so far (prompt and generated), for the repetition penalty; may be NULL
 * @param n_history number of tokens in @p history
 * @return the chosen id in [0, V).
 */
int32_t mamba2_sampler_sample(Mamba2Sampler *s, const float *logits, const int32_t *history, size_t n_history);

/**
 * @brief Step 1 alone: penalise, in place, each distinct token among the last
 *        @p window of @p history (all of it when @p window is 0).
 */
void mamba2_repetition_penalty(float *logits, int vocab_size, const int32_t *history, size_t n_history, int window,
                               float penalty, unsigned char *seen);

/** @brief The argmax of @p x[0..n) (lowest index on ties, NaN never chosen unless all are NaN). */
int32_t mamba2_argmax(const float *x, int n);

/** @brief Next number of the xorshift64* generator in @p state. */
uint64_t mamba2_rng_next(uint64_t *state);

/** @brief A uniform double in [0, 1) (53 random bits) from @p state. */
double mamba2_rng_uniform(uint64_t *state);

/** @brief A non-zero generator state made from any 64-bit seed (splitmix64). */
uint64_t mamba2_rng_seed(uint64_t seed);

#endif
