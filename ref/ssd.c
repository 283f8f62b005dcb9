/**
 * @file ssd.c
 * @brief The three SSD forms, written for reading: one head at a time, plain loops,
 *        double accumulators. See ssd.h for the shapes and ssd_minimal.py for the
 *        PyTorch original of the chunked algorithm.
 */
#include "ssd.h"

#include <math.h>
#include <stdlib.h>

/* Index helpers for the layouts in ssd.h. */
#define X_AT(t, h, p) x[((size_t)(t) * d.H + (h)) * d.P + (p)]
#define Y_AT(t, h, p) y[((size_t)(t) * d.H + (h)) * d.P + (p)]
#define DT_AT(t, h) dt[(size_t)(t) * d.H + (h)]
#define B_AT(t, g, n) B[((size_t)(t) * d.G + (g)) * d.N + (n)]
#define C_AT(t, g, n) C[((size_t)(t) * d.G + (g)) * d.N + (n)]
#define S_AT(h, p, n) state[((size_t)(h) * d.P + (p)) * d.N + (n)]

/** C_t · B_s for group g: the "attention score" of the dual form. */
static double cb_dot(SSDDims d, const float *B, const float *C, int t, int s, int g) {
    double acc = 0;
    for (int n = 0; n < d.N; n++) acc += (double)C_AT(t, g, n) * B_AT(s, g, n);
    return acc;
}

/** (S C_t)[p] = Σ_n S[p][n] C_t[n] for head h (group g), S in fp32 layout [H, P, N]. */
static double state_times_c(SSDDims d, const float *state, const float *C, int h, int p, int t, int g) {
    double acc = 0;
    for (int n = 0; n < d.N; n++) acc += (double)S_AT(h, p, n) * C_AT(t, g, n);
    return acc;
}

/* ---------------------------------------------------------------- recurrent */

void ssd_recurrent(SSDDims d, const float *x, const float *dt, const float *A, const float *B,
                   const float *C, float *state, float *y) {
    int heads_per_group = d.H / d.G;
    for (int t = 0; t < d.T; t++)
        for (int h = 0; h < d.H; h++) {
            int g = h / heads_per_group;
            double decay = exp((double)DT_AT(t, h) * A[h]); /* exp(a_t) */
            for (int p = 0; p < d.P; p++) {
                double xdt = (double)DT_AT(t, h) * X_AT(t, h, p); /* X_t[p] */
                /* S[p][n] = exp(a_t) S[p][n] + X_t[p] B_t[n];  y_t[p] = Σ_n S[p][n] C_t[n] */
                double acc = 0;
                for (int n = 0; n < d.N; n++) {
                    double s = decay * S_AT(h, p, n) + xdt * B_AT(t, g, n);
                    S_AT(h, p, n) = (float)s;
                    acc += s * C_AT(t, g, n);
                }
                Y_AT(t, h, p) = (float)acc;
            }
        }
}

/* ---------------------------------------------------------------- quadratic */

int ssd_quadratic(SSDDims d, const float *x, const float *dt, const float *A, const float *B,
                  const float *C, float *state, float *y) {
    int heads_per_group = d.H / d.G;
    double *L = malloc((size_t)d.T * d.T * sizeof *L); /* [T, T] mask of one head */
    double *cum = malloc((size_t)d.T * sizeof *cum);   /* [T] a_0 + ... + a_t */
    double *m = malloc((size_t)d.T * sizeof *m);       /* [T] one row of (L ∘ C Bᵀ) diag(dt) */
    if (!L || !cum || !m) {
        free(L);
        free(cum);
        free(m);
        return -1;
    }
    for (int h = 0; h < d.H; h++) {
        int g = h / heads_per_group;
        /* The 1-semiseparable mask: L[t][s] = exp(a_{s+1} + ... + a_t) for s <= t, 0 above the
         * diagonal. The segment sums are accumulated directly (not as cum[t] - cum[s]) so that
         * strong decay does not cancel catastrophically. */
        for (int t = 0; t < d.T; t++) {
            double seg = 0;
            L[(size_t)t * d.T + t] = 1.0;
            for (int s = t - 1; s >= 0; s--) {
                seg += (double)DT_AT(s + 1, h) * A[h];
                L[(size_t)t * d.T + s] = exp(seg);
            }
            for (int s = t + 1; s < d.T; s++) L[(size_t)t * d.T + s] = 0.0;
            cum[t] = (t ? cum[t - 1] : 0.0) + (double)DT_AT(t, h) * A[h];
        }
        /* y_t = Σ_s M[t][s] x_s + exp(cum_t) S_{-1} C_t,  with row t of M = (L ∘ C Bᵀ) diag(dt) */
        for (int t = 0; t < d.T; t++) {
            for (int s = 0; s <= t; s++) m[s] = L[(size_t)t * d.T + s] * cb_dot(d, B, C, t, s, g) * DT_AT(s, h);
            double carried = exp(cum[t]);
            for (int p = 0; p < d.P; p++) {
                double acc = carried * state_times_c(d, state, C, h, p, t, g);
                for (int s = 0; s <= t; s++) acc += m[s] * X_AT(s, h, p);
                Y_AT(t, h, p) = (float)acc;
            }
        }
        /* S_{T-1}[p][n] = exp(cum_{T-1}) S_{-1}[p][n] + Σ_s L[T-1][s] X_s[p] B_s[n] */
        const double *last = L + (size_t)(d.T - 1) * d.T;
        double carried = exp(cum[d.T - 1]);
        for (int p = 0; p < d.P; p++)
            for (int n = 0; n < d.N; n++) {
                double acc = carried * S_AT(h, p, n);
                for (int s = 0; s < d.T; s++)
                    acc += last[s] * DT_AT(s, h) * X_AT(s, h, p) * B_AT(s, g, n);
                S_AT(h, p, n) = (float)acc;
            }
    }
    free(L);
    free(cum);
    free(m);
    return 0;
}

/* ---------------------------------------------------------------- chunked */

int ssd_chunked(SSDDims d, int Q, const float *x, const float *dt, const float *A, const float *B,
                const float *C, float *state, float *y) {
    int heads_per_group = d.H / d.G;
    int n_chunks = (d.T + Q - 1) / Q;
    size_t PN = (size_t)d.P * d.N;
    double *chunk_state = malloc((size_t)n_chunks * PN * sizeof *chunk_state); /* [chunks, P, N] */
    double *start_state = malloc((size_t)(n_chunks + 1) * PN * sizeof *start_state); /* [chunks+1, P, N] */
    double *cum = malloc((size_t)d.T * sizeof *cum); /* [T] a summed from its chunk's start */
    double *m = malloc((size_t)Q * sizeof *m);       /* [Q] one row of a diagonal block */
    if (!chunk_state || !start_state || !cum || !m) {
        free(chunk_state);
        free(start_state);
        free(cum);
        free(m);
        return -1;
    }
    for (int h = 0; h < d.H; h++) {
        int g = h / heads_per_group;
        /* cum[t] = a_{c0} + ... + a_t, where c0 is the first token of t's chunk. */
        for (int t = 0; t < d.T; t++)
            cum[t] = (t % Q ? cum[t - 1] : 0.0) + (double)DT_AT(t, h) * A[h];

        /* Step 1, diagonal blocks: y_t = Σ_{c0 <= s <= t} (C_t·B_s) exp(cum_t - cum_s) X_s. */
        for (int t = 0; t < d.T; t++) {
            int c0 = t / Q * Q;
            for (int s = c0; s <= t; s++) m[s - c0] = exp(cum[t] - cum[s]) * cb_dot(d, B, C, t, s, g) * DT_AT(s, h);
            for (int p = 0; p < d.P; p++) {
                double acc = 0;
                for (int s = c0; s <= t; s++) acc += m[s - c0] * X_AT(s, h, p);
                Y_AT(t, h, p) = (float)acc;
            }
        }

        /* Step 2, chunk states: states_c = Σ_{s in c} exp(cum_end - cum_s) X_s B_sᵀ. */
        for (int c = 0; c < n_chunks; c++) {
            int c0 = c * Q, c1 = c0 + Q < d.T ? c0 + Q : d.T;
            double *sc = chunk_state + (size_t)c * PN;
            for (size_t i = 0; i < PN; i++) sc[i] = 0;
            for (int s = c0; s < c1; s++) {
                double w = exp(cum[c1 - 1] - cum[s]) * DT_AT(s, h);
                for (int p = 0; p < d.P; p++)
                    for (int n = 0; n < d.N; n++) sc[p * d.N + n] += w * X_AT(s, h, p) * B_AT(s, g, n);
            }
        }

        /* Step 3, state passing: S_0 = initial state; S_{c+1} = exp(Σ_{t in c} a_t) S_c + states_c. */
        for (int p = 0; p < d.P; p++)
            for (int n = 0; n < d.N; n++) start_state[p * d.N + n] = S_AT(h, p, n);
        for (int c = 0; c < n_chunks; c++) {
            int c1 = (c + 1) * Q < d.T ? (c + 1) * Q : d.T;
            double chunk_decay = exp(cum[c1 - 1]);
            const double *prev = start_state + (size_t)c * PN, *sc = chunk_state + (size_t)c * PN;
            double *next = start_state + (size_t)(c + 1) * PN;
            for (size_t i = 0; i < PN; i++) next[i] = chunk_decay * prev[i] + sc[i];
        }

        /* Step 4, state to output: y_t += exp(cum_t) S_c C_t, S_c the state entering t's chunk. */
        for (int t = 0; t < d.T; t++) {
            const double *S = start_state + (size_t)(t / Q) * PN;
            double decay = exp(cum[t]);
            for (int p = 0; p < d.P; p++) {
                double acc = 0;
                for (int n = 0; n < d.N; n++) acc += S[p * d.N + n] * C_AT(t, g, n);
                Y_AT(t, h, p) += (float)(decay * acc);
            }
        }

        /* The final state is the state after the last chunk. */
        const double *final = start_state + (size_t)n_chunks * PN;
        for (int p = 0; p < d.P; p++)
            for (int n = 0; n < d.N; n++) S_AT(h, p, n) = (float)final[p * d.N + n];
    }
    free(chunk_state);
    free(start_state);
    free(cum);
    free(m);
    return 0;
}
