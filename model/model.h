/**
 * @file model.h
 * @brief The model object: config + a read-only view of every weight (mmap, no copies).
 *
 * Shapes use the names of notebooks-docs/design.md §2: d = d_model, L = n_layer, H heads of P channels,
 * N = d_state, G = n_groups, K = d_conv, d_in = H·P, conv_dim = d_in + 2·G·N, V = vocab.
 */
#ifndef MAMBA2_MODEL_H
#define MAMBA2_MODEL_H

#include "config.h"
#include "error.h"
#include "progress.h"
#include "safetensors.h"
#include "tensor.h"

/** The weights of one Mamba-2 block (`backbone.layers.{l}`). */
typedef struct {
    Mamba2Tensor norm;       /**< norm.weight [d] */
    Mamba2Tensor in_proj;    /**< mixer.in_proj.weight [2·d_in + 2·G·N + H, d] → [z | xBC | dt] */
    Mamba2Tensor conv_w;     /**< mixer.conv1d.weight [conv_dim, 1, K] */
    Mamba2Tensor conv_b;     /**< mixer.conv1d.bias [conv_dim] (data NULL when use_conv_bias is false) */
    Mamba2Tensor dt_bias;    /**< mixer.dt_bias [H] */
    Mamba2Tensor A_log;      /**< mixer.A_log [H]: A = -exp(A_log) */
    Mamba2Tensor D;          /**< mixer.D [H]: skip connection */
    Mamba2Tensor gated_norm; /**< mixer.norm.weight [d_in] */
    Mamba2Tensor out_proj;   /**< mixer.out_proj.weight [d, d_in] */
} Mamba2LayerWeights;

/** Every weight of the model. */
typedef struct {
    Mamba2Tensor embeddings;    /**< backbone.embeddings.weight [V, d] */
    Mamba2LayerWeights *layers; /**< [L] */
    Mamba2Tensor norm_f;        /**< backbone.norm_f.weight [d] */
    Mamba2Tensor lm_head;       /**< lm_head.weight [V, d] (the embeddings when tied) */
} Mamba2Weights;

/** A loaded checkpoint. */
typedef struct {
    char *dir;              /**< the checkpoint directory (owned) */
    Mamba2Config cfg;       /**< hyper-parameters */
    int n_files;            /**< safetensors files mapped */
    SafetensorsFile *files; /**< [n_files] */
    Mamba2Weights w;        /**< views into the files */
} Mamba2Model;

/**
 * @brief Load a checkpoint directory.
 *
 * Reads `config.json` (or Mistral's `params.json`), then maps `model.safetensors.index.json`
 * + shards, or `model.safetensors`, or `consolidated.safetensors`. Every tensor the config
 * implies is looked up (with or without Mistral's `model.` prefix), and its dtype and
 * shape are checked.
 * @return 0 on success; -1 with a message naming the file, the tensor, the expected and actual shape.
 */
int mamba2_model_load(const char *dir, Mamba2Model *m, Mamba2Error *err);

/** Unmap the files and free the model (safe on a zeroed model). */
void mamba2_model_free(Mamba2Model *m);

/**
 * @brief Read every page of the model's files now, reporting the bytes read to @p progress ("reading
 *        weights"; the last call has done == total), rather than at the first token that touches them.
 *
 * The files are mapped, not read, by mamba2_model_load(): this is where a large checkpoint's time
 * goes, and a caller that shows progress calls it at load. Nothing changes but what the page cache holds.
 * @param m        the model
 * @param progress called after every 64 MiB and at the end (may be NULL)
 * @param ctx      passed to @p progress
 */
void mamba2_model_read_weights(const Mamba2Model *m, Mamba2Progress progress, void *ctx);

/** Bytes of weights stored in @p dtype that the model uses. */
long long mamba2_model_weight_bytes(const Mamba2Model *m, Mamba2DType dtype);

/**
 * @brief Call @p fn on every weight tensor the model uses (lm_head skipped when tied).
 */
void mamba2_model_foreach_tensor(const Mamba2Model *m, void (*fn)(const Mamba2Tensor *t, void *ctx), void *ctx);

#endif
