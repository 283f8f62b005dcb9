/**
 * @file sampler.c
 * @brief Greedy, temperature, top-k, top-p, min-p and repetition-penalty sampling (see sampler.h).
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mamba2_sampler_defaults(Mamba2SamplerConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->temperature = 0.0f;
    cfg->top_k = 0;
    cfg->top_p = 1.0f;
    cfg->min_p = 0.0f;
    cfg->repetition_penalty = 1.0f;
    cfg->repetition_window = 0;
    cfg->seed = 42;
}

int mamba2_sampler_init(Mamba2Sampler *s, const Mamba2SamplerConfig *cfg, int vocab_size, Mamba2Error *err) {
    memset(s, 0, sizeof *s);
    if (vocab_size < 1) return mamba2_fail(err, "sampler: vocabulary size %d", vocab_size);
    if (!(cfg->temperature >= 0.0f) || !isfinite(cfg->temperature))
        return mamba2_fail(err, "sampler: temperature must be a finite number ≥ 0 (got %g)", cfg->temperature);
    if (cfg->top_k < 0) return mamba2_fail(err, "sampler: top-k must be ≥ 0 (got %d)", cfg->top_k);
    if (!(cfg->top_p > 0.0f && cfg->top_p <= 1.0f))
        return mamba2_fail(err, "sampler: top-p must be in (0, 1] (got %g)", cfg->top_p);
    if (!(cfg->min_p >= 0.0f && cfg->min_p <= 1.0f))
        return mamba2_fail(err, "sampler: min-p must be in [0, 1] (got %g)", cfg->min_p);
    if (!(cfg->repetition_penalty > 0.0f) || !isfinite(cfg->repetition_penalty))
        return mamba2_fail(err, "sampler: repetition penalty must be a finite number > 0 (got %g)",
                           cfg->repetition_penalty);
    if (cfg->repetition_window < 0)
        return mamba2_fail(err, "sampler: repetition window must be ≥ 0 (got %d)", cfg->repetition_window);
    s->cfg = *cfg;
    s->rng = mamba2_rng_seed(cfg->seed);
    s->vocab_size = vocab_size;
    s->logits = malloc((size_t)vocab_size * sizeof *s->logits);
    s->cand = malloc((size_t)vocab_size * sizeof *s->cand);
    s->seen = calloc((size_t)vocab_size, 1);
    if (!s->logits || !s->cand || !s->seen) {
        mamba2_sampler_free(s);
        return mamba2_fail(err, "sampler: out of memory for %d tokens", vocab_size);
    }
    return 0;
}

void mamba2_sampler_free(Mamba2Sampler *s) {
    free(s->logits);
    free(s->cand);
    free(s->seen);
    s->logits = NULL;
    s->cand = NULL;
    s->seen = NULL;
}

/* splitmix64: z ← seed + k·0x9E3779B97F4A7C15, then two xor-shift-multiply rounds. */
uint64_t mamba2_rng_seed(uint64_t seed) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : 0x9E3779B97F4A7C15ULL;
}

/* xorshift64*: x ^= x >> 12; x ^= x << 25; x ^= x >> 27; output x · 0x2545F4914F6CDD1D. */
uint64_t mamba2_rng_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* The top 53 bits as a fraction: k · 2^-53, k in [0, 2^53). */
double mamba2_rng_uniform(uint64_t *state) { return (double)(mamba2_rng_next(state) >> 11) * (1.0 / 9007199254740992.0); }

int32_t mamba2_argmax(const float *x, int n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return best;
}

/* l ← l / penalty if l > 0, else l · penalty, once per distinct token of the window. */
void mamba2_repetition_penalty(float *logits, int vocab_size, const int32_t *history, size_t n_history, int window,
                               float penalty, unsigned char *seen) {
    size_t first = (window > 0 && (size_t)window < n_history) ? n_history - (size_t)window : 0;
    for (size_t i = first; i < n_history; i++) {
        int32_t t = history[i];
        if (t < 0 || t >= vocab_size || seen[t]) continue;
        seen[t] = 1;
        logits[t] = logits[t] > 0.0f ? logits[t] / penalty : logits[t] * penalty;
    }
    for (size_t i = first; i < n_history; i++)
        if (history[i] >= 0 && history[i] < vocab_size) seen[history[i]] = 0;
}

/* Candidate order: more probable first, lower id first on ties. */
static int cand_before(const Mamba2Candidate *a, const Mamba2Candidate *b) {
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}

static int cand_cmp(const void *x, const void *y) {
    const Mamba2Candidate *a = x, *b = y;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Restore the heap of c[0..k) (the worst candidate on top) below position j. */
static void sift_down(Mamba2Candidate *c, int k, int j) {
    for (;;) {
        int l = 2 * j + 1, r = l + 1, m = j;
        if (l < k && cand_before(&c[m], &c[l])) m = l;
        if (r < k && cand_before(&c[m], &c[r])) m = r;
        if (m == j) return;
        Mamba2Candidate t = c[j];
        c[j] = c[m];
        c[m] = t;
        j = m;
    }
}

/* Move the k best of c[0..n) to c[0..k), sorted: a min-heap of the best k seen so far, O(n log k). */
static void keep_top_k(Mamba2Candidate *c, int n, int k) {
    /* heap in c[0..k): c[0] is the worst of the k kept */
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int i = k; i < n; i++) {
        if (!cand_before(&c[i], &c[0])) continue;
        c[0] = c[i];
        sift_down(c, k, 0);
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

int32_t mamba2_sampler_sample(Mamba2Sampler *s, const float *logits, const int32_t *history, size_t n_history) {
    const Mamba2SamplerConfig *cfg = &s->cfg;
    int V = s->vocab_size;
    float *l = s->logits;
    for (int i = 0; i < V; i++) l[i] = isnan(logits[i]) ? -INFINITY : logits[i];
    if (cfg->repetition_penalty != 1.0f && history)
        mamba2_repetition_penalty(l, V, history, n_history, cfg->repetition_window, cfg->repetition_penalty, s->seen);

    int32_t best = mamba2_argmax(l, V);
    if (cfg->temperature == 0.0f || l[best] == -INFINITY) return best;

    /* p_i ∝ exp((l_i − l_max) / T): the most probable token has p = 1. */
    Mamba2Candidate *c = s->cand;
    int n = 0, sorted = 0;
    for (int i = 0; i < V; i++) {
        float p = expf((l[i] - l[best]) / cfg->temperature);
        if (p > 0.0f) c[n++] = (Mamba2Candidate){p, i};
    }
    if (n == 0) return best; /* every p underflowed: only the argmax is left */

    if (cfg->top_k > 0 && cfg->top_k < n) {
        keep_top_k(c, n, cfg->top_k);
        n = cfg->top_k;
        sorted = 1;
    }
    if (cfg->top_p < 1.0f) {
        /* smallest prefix (most probable first) with Σ p ≥ top_p · Σ p */
        if (!sorted) qsort(c, (size_t)n, sizeof *c, cand_cmp);
        sorted = 1;
        double total = 0.0, cum = 0.0;
        for (int i = 0; i < n; i++) total += c[i].p;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= (double)cfg->top_p * total) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (cfg->min_p > 0.0f) {
        /* keep p ≥ min_p · p_max, with p_max = 1 here */
        int m = 0;
        for (int i = 0; i < n; i++)
            if (c[i].p >= cfg->min_p) c[m++] = c[i];
        n = m;
    }

    /* Draw: the first candidate whose cumulative mass exceeds u · Σ p. */
    double total = 0.0, cum = 0.0;
    for (int i = 0; i < n; i++) total += c[i].p;
    double u = mamba2_rng_uniform(&s->rng) * total;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;
}
