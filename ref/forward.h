/**
 * @file forward.h
 * @brief The scalar reference forward pass of the whole Mamba-2 language model.
 */
#ifndef MAMBA2_FORWARD_H
#define MAMBA2_FORWARD_H

#include <stdint.h>

#include "error.h"
#include "model.h"
#include "state.h"

/** Which SSD form the reference uses inside each layer. */
typedef enum {
    MAMBA2_SSD_RECURRENT = 0, /**< token by token (what decode uses) */
    MAMBA2_SSD_QUADRATIC = 1, /**< one masked T×T product per head */
    MAMBA2_SSD_CHUNKED = 2    /**< chunks of cfg.chunk_size (what prefill uses) */
} Mamba2SSDForm;

/**
 * @brief Optional observer of the residual stream after every layer (for per-layer cross-checks).
 * @param ctx   user pointer
 * @param layer layer index, 0 .. L−1
 * @param h     residual stream after the layer [T, d]
 * @param T     tokens in this call
 */
typedef void (*Mamba2LayerHook)(void *ctx, int layer, const float *h, int T);

/**
 * @brief Run @p T tokens of one sequence through the model, continuing from @p st (updated).
 *
 * Per layer (notebooks-docs/design.md §2): RMSNorm → in_proj → causal conv + SiLU → SSD (in @p form) + D·x
 * → grouped gated RMSNorm (gate first) → out_proj → residual add. Then the final norm and lm_head.
 * Arithmetic is fp32 storage with double accumulation, on weights read in their stored dtype.
 * The inputs are not checked here: mamba2_backend_prefill() (src/backend.h) checks them once for
 * every backend, so this stays the model and nothing else.
 *
 * @param m             the model
 * @param st            the sequence state, advanced by T tokens
 * @param tokens        [T] token ids, each in [0, V)
 * @param T             number of tokens (≥ 1)
 * @param form          SSD form to use
 * @param logits        out: [T, V] when @p all_positions, else [V] for the last token; may be NULL
 * @param all_positions 1 to compute the logits of every position
 * @param hook          per-layer observer, or NULL
 * @param hook_ctx      passed to @p hook
 * @param err           the reason on failure
 * @return 0 on success; -1 when memory runs out (state untouched then).
 */
int mamba2_ref_forward(const Mamba2Model *m, Mamba2State *st, const int32_t *tokens, int T, Mamba2SSDForm form,
                       float *logits, int all_positions, Mamba2LayerHook hook, void *hook_ctx, Mamba2Error *err);

#endif
