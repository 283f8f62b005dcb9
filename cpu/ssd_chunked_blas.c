/**
 * @file ssd_chunked_blas.c
 * @brief Chunked SSD with cblas_sgemm for the chunk-level contractions (see ssd_chunked_blas.h).
 *
 * For chunk c (tokens c0 .. c0+L) of head h in group g, with cum_i = a_{c0} + ... + a_{c0+i}
 * (a = dt·A ≤ 0, so exp of any difference cum_i − cum_j with j ≤ i is ≤ 1) and S the state
 * entering the chunk, the four steps of ssd.h become four GEMMs:
 *
 *   CB   [L, L] = C_c · B_cᵀ                                   (per group, shared by its heads)
 *   1.   Y  [L, P] = M · X_c,  M[i][j] = CB[i][j] · exp(cum_i − cum_j) · dt_j  for j ≤ i, else 0
 *   4.   Y += Cs · Sᵀ,          Cs[i] = exp(cum_i) · C_i       (the incoming state's contribution)
 *   2+3. S  = exp(cum_{L−1}) · S + Xwᵀ · B_c,  Xw[j] = exp(cum_{L−1} − cum_j) · dt_j · x_j
 *
 * Chunks run in order (step 3, state passing, is the S update between them); heads run in
 * parallel. Every product is a single-threaded cblas_sgemm on the calling OpenMP thread.
 */
#include "ssd_chunked_blas.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "vexp.h"

/** Attributes of the functions compiled twice: for x86-64-v3 (AVX2) and for any x86-64. */
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))

/** exp(v) for v below this is flushed to 0 in M (v = cum_i − cum_j only falls as j moves back). */
#define DECAY_CUTOFF (-80.0)

static size_t thread_floats(int Q, SSDDims d) { return (size_t)Q * Q + (size_t)Q * d.N + (size_t)Q * d.P + Q; }

int cpu_ssd_reserve(CpuSsdScratch *s, SSDDims d, int Q, int n_threads) {
    size_t chunks = (size_t)(d.T + Q - 1) / Q;
    size_t cb = (size_t)d.G * chunks * Q * Q, pt = thread_floats(Q, d) * n_threads, cum = (size_t)Q * n_threads;
    if (cb > s->cb_len) {
        float *p = realloc(s->cb, cb * sizeof *p);
        if (!p) return -1;
        s->cb = p, s->cb_len = cb;
    }
    if (pt > s->per_thread_len) {
        float *p = realloc(s->per_thread, pt * sizeof *p);
        if (!p) return -1;
        s->per_thread = p, s->per_thread_len = pt;
    }
    if (cum > s->cum_len) {
        double *p = realloc(s->cum, cum * sizeof *p);
        if (!p) return -1;
        s->cum = p, s->cum_len = cum;
    }
    return 0;
}

void cpu_ssd_free(CpuSsdScratch *s) {
    free(s->cb);
    free(s->per_thread);
    free(s->cum);
    memset(s, 0, sizeof *s);
}

/* One head over all chunks: steps 1, 4 and 2+3 of the file comment, for head h.
 * (target_clones: an AVX2 copy of the element-wise loops beside the generic one.) */
static CLONES void ssd_head(SSDDims d, int Q, int h, const float *x, int64_t ldx, const float *dt, const float *A,
                     const float *D, const float *B, const float *C, int64_t ldbc, float *state, float *y, int64_t ldy,
                     const float *cb_all, float *work, double *cum) {
    int g = h / (d.H / d.G), n_chunks = (d.T + Q - 1) / Q, P = d.P, N = d.N;
    float *M = work, *Cs = M + (size_t)Q * Q, *Xw = Cs + (size_t)Q * N, *dts = Xw + (size_t)Q * P;
    float *S = state + (size_t)h * P * N; /* [P, N] */
    for (int c = 0; c < n_chunks; c++) {
        int c0 = c * Q, L = d.T - c0 < Q ? d.T - c0 : Q;
        const float *cb = cb_all + ((size_t)g * n_chunks + c) * Q * Q;    /* [L, L], ld Q */
        const float *Xc = x + (int64_t)c0 * ldx + (int64_t)h * P;          /* [L, P], ld ldx */
        const float *Bc = B + (int64_t)c0 * ldbc + (int64_t)g * N;         /* [L, N], ld ldbc */
        const float *Cc = C + (int64_t)c0 * ldbc + (int64_t)g * N;         /* [L, N], ld ldbc */
        float *Yc = y + (int64_t)c0 * ldy + (int64_t)h * P;                /* [L, P], ld ldy */
        const float *dtc = dt + (size_t)c0 * d.H + h;                      /* dt_j = dtc[j·H] */

        /* cum_i = Σ_{j ≤ i} dt_j A, in double so that differences of large sums stay exact */
        double run = 0;
        for (int i = 0; i < L; i++) cum[i] = run += (double)dtc[(size_t)i * d.H] * A[h];

        /* Step 1, diagonal block: M[i][j] = CB[i][j] · exp(cum_i − cum_j) · dt_j (j ≤ i), 0 above.
         * cum_i − cum_j falls as j moves back, so each row is exp'd only from the first j whose
         * exponent is above the cut-off (j0 never moves back from one row to the next). */
        for (int j = 0; j < L; j++) dts[j] = dtc[(size_t)j * d.H];
        int j0 = 0;
        for (int i = 0; i < L; i++) {
            float *Mi = M + (size_t)i * Q;
            const float *cbi = cb + (size_t)i * Q;
            while (cum[i] - cum[j0] < DECAY_CUTOFF) j0++;
            double cum_i = cum[i];
            for (int j = 0; j < j0; j++) Mi[j] = 0.0f;
#pragma omp simd
            for (int j = j0; j <= i; j++) Mi[j] = (float)(cum_i - cum[j]);
            cpu_exp_inplace(Mi + j0, i - j0 + 1);
#pragma omp simd
            for (int j = j0; j <= i; j++) Mi[j] *= cbi[j] * dts[j];
            for (int j = i + 1; j < L; j++) Mi[j] = 0.0f;
        }
        /* Y [L, P] = M [L, L] · X_c [L, P] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, P, L, 1.0f, M, Q, Xc, (int)ldx, 0.0f, Yc, (int)ldy);

        /* Step 4, state to output: Cs[i] = exp(cum_i) C_i;  Y [L, P] += Cs [L, N] · Sᵀ [N, P] */
        for (int i = 0; i < L; i++) {
            float e = (float)exp(cum[i]);
            float *Csi = Cs + (size_t)i * N;
            const float *Cci = Cc + (int64_t)i * ldbc;
#pragma omp simd
            for (int n = 0; n < N; n++) Csi[n] = e * Cci[n];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, P, N, 1.0f, Cs, N, S, N, 1.0f, Yc, (int)ldy);

        /* skip connection: Y += D_h · X_c */
        if (D)
            for (int i = 0; i < L; i++) {
                float *Yi = Yc + (int64_t)i * ldy;
                const float *Xi = Xc + (int64_t)i * ldx;
#pragma omp simd
                for (int p = 0; p < P; p++) Yi[p] += D[h] * Xi[p];
            }

        /* Steps 2+3, chunk state and state passing:
         * Xw[j] = exp(cum_{L−1} − cum_j) dt_j x_j;  S = exp(cum_{L−1}) S + Xwᵀ [P, L] · B_c [L, N] */
        for (int j = 0; j < L; j++) {
            float w = (float)exp(cum[L - 1] - cum[j]) * dts[j];
            float *Xwj = Xw + (size_t)j * P;
            const float *Xj = Xc + (int64_t)j * ldx;
#pragma omp simd
            for (int p = 0; p < P; p++) Xwj[p] = w * Xj[p];
        }
        float chunk_decay = (float)exp(cum[L - 1]);
#pragma omp simd
        for (size_t i = 0; i < (size_t)P * N; i++) S[i] *= chunk_decay;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, N, L, 1.0f, Xw, P, Bc, (int)ldbc, 1.0f, S, N);
    }
}

void cpu_ssd_chunked(SSDDims d, int Q, const float *x, int64_t ldx, const float *dt, const float *A, const float *D,
                     const float *B, const float *C, int64_t ldbc, float *state, float *y, int64_t ldy,
                     CpuSsdScratch *s, int n_threads) {
    int n_chunks = (d.T + Q - 1) / Q;
    size_t per = thread_floats(Q, d);
#pragma omp parallel num_threads(n_threads)
    {
        /* CB[g][c] [L, L] = C_{c,g} [L, N] · B_{c,g}ᵀ [N, L], once per group and chunk */
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int g = 0; g < d.G; g++)
            for (int c = 0; c < n_chunks; c++) {
                int c0 = c * Q, L = d.T - c0 < Q ? d.T - c0 : Q;
                const float *Bc = B + (int64_t)c0 * ldbc + (int64_t)g * d.N, *Cc = C + (int64_t)c0 * ldbc + (int64_t)g * d.N;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, d.N, 1.0f, Cc, (int)ldbc, Bc, (int)ldbc, 0.0f,
                            s->cb + ((size_t)g * n_chunks + c) * Q * Q, Q);
            }
        /* (the implicit barrier above: every CB is ready) then the heads, each through all chunks */
        int id = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (int h = 0; h < d.H; h++)
            ssd_head(d, Q, h, x, ldx, dt, A, D, B, C, ldbc, state, y, ldy, s->cb, s->per_thread + per * id,
                     s->cum + (size_t)Q * id);
    }
}
