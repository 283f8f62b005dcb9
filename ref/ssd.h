/**
 * @file ssd.h
 * @brief The state-space-dual (SSD) layer of Mamba-2 in its three equivalent forms.
 *
 * One sequence of T tokens, H heads of P channels, G groups of N-dimensional
 * B and C (head h reads group h / (H/G)). With a_t = dt_t * A and X_t = dt_t * x_t:
 *
 * - recurrent:  S_t = exp(a_t) S_{t-1} + X_t B_tᵀ,   y_t = S_t C_t
 * - quadratic:  Y = (L ∘ C Bᵀ) X  with  L[t][s] = exp(a_{s+1} + ... + a_t) for s ≤ t, else 0
 * - chunked:    the quadratic form inside chunks of Q tokens, the recurrence between chunks
 *
 * Every form starts from an initial state S_{-1} = @p state and leaves the
 * final state S_{T-1} in it, so they can be chained and mixed. The D·x skip
 * connection is not part of these functions (the model adds it).
 *
 * Shared argument layout (row-major, all fp32; sums are accumulated in double):
 * - x     [T, H, P]  input
 * - dt    [T, H]     step sizes (after softplus and clamp)
 * - A     [H]        negative decay rates (A = -exp(A_log))
 * - B     [T, G, N]  input projections
 * - C     [T, G, N]  output projections
 * - state [H, P, N]  in: initial state, out: final state
 * - y     [T, H, P]  output
 */
#ifndef MAMBA2_SSD_H
#define MAMBA2_SSD_H

/** Sizes of one SSD call. */
typedef struct {
    int T; /**< tokens */
    int H; /**< heads */
    int P; /**< channels per head (head_dim) */
    int G; /**< groups of B and C (H % G == 0) */
    int N; /**< state size */
} SSDDims;

/**
 * @brief Recurrent form: one state update per token, O(T·H·P·N) work, O(H·P·N) memory.
 *
 * S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_tᵀ;  y_t = S_t C_t.
 */
void ssd_recurrent(SSDDims d, const float *x, const float *dt, const float *A, const float *B,
                   const float *C, float *state, float *y);

/**
 * @brief Quadratic (masked dual) form: Y = (L ∘ C Bᵀ) X, O(T²·H·(N+P)) work.
 *
 * The initial state adds exp(a_0 + ... + a_t) S_{-1} C_t to y_t, and the final state is
 * S_{T-1} = exp(a_0 + ... + a_{T-1}) S_{-1} + Σ_s L[T-1][s] X_s B_sᵀ.
 * @return 0, or -1 when the T×T mask cannot be allocated.
 */
int ssd_quadratic(SSDDims d, const float *x, const float *dt, const float *A, const float *B,
                  const float *C, float *state, float *y);

/**
 * @brief Chunked form (the SSD algorithm): chunks of @p Q tokens, four steps.
 *
 * 1. diagonal blocks: the quadratic form inside each chunk, from a zero state;
 * 2. chunk states: the state each chunk would leave from a zero start;
 * 3. state passing: the recurrence between chunks, S_c = exp(Σ_{chunk c-1} a) S_{c-1} + states_{c-1};
 * 4. state to output: y_t += exp(a_{start} + ... + a_t) S_c C_t for t in chunk c.
 *
 * Work O(T·Q·H·(N+P) + T·H·P·N); T need not be a multiple of Q.
 * @return 0, or -1 when the per-chunk states cannot be allocated.
 */
int ssd_chunked(SSDDims d, int Q, const float *x, const float *dt, const float *A, const float *B,
                const float *C, float *state, float *y);

#endif
