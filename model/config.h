/**
 * @file config.h
 * @brief The model hyper-parameters, read from `config.json` (Hugging Face) or `params.json` (Mistral).
 *
 * Names follow notebooks-docs/design.md section 2; the Codestral-7B values are in brackets.
 */
#ifndef MAMBA2_CONFIG_H
#define MAMBA2_CONFIG_H

#include <stddef.h>

#include "error.h"

/** Hyper-parameters of a Mamba-2 language model. */
typedef struct {
    int d_model;      /**< d, hidden_size [4096] */
    int n_layer;      /**< L, num_hidden_layers [64] */
    int n_heads;      /**< H, num_heads [128] */
    int head_dim;     /**< P, head_dim [64] */
    int d_state;      /**< N, state_size [128] */
    int n_groups;     /**< G, n_groups [8] */
    int d_conv;       /**< K, conv_kernel [4] */
    int expand;       /**< expand [2]: d_inner = expand * d_model */
    int vocab_size;   /**< V, vocab_size [32768] */
    double eps;       /**< layer_norm_epsilon [1e-5] */
    int chunk_size;   /**< Q, chunk_size of the chunked SSD [256] */
    double dt_min;    /**< time_step_limit[0]: lower clamp of dt [0] */
    double dt_max;    /**< time_step_limit[1]: upper clamp of dt [Infinity] */
    int tie_embeddings;   /**< 1 when lm_head shares the embedding matrix */
    int use_conv_bias;    /**< 1 when conv1d has a bias [1] */
    int norm_before_gate; /**< as written in the file; ignored (mamba_ssm is gate-first) */
    int bos_token_id; /**< beginning-of-sequence id, -1 when unknown */
    int eos_token_id; /**< end-of-sequence id, -1 when unknown */
    /** Identity of the checkpoint the config was loaded with, written into state files so a state from
     *  another model is refused: crc32 of every used tensor's name, dtype, shape and first and last
     *  4 KiB of data (set by mamba2_model_load(); 0 for a config parsed alone). */
    unsigned checkpoint_id;
    /* derived */
    int d_inner;      /**< d_in = H * P [8192] */
    int conv_dim;     /**< d_in + 2 * G * N [10240] */
    int d_in_proj;    /**< 2 * d_in + 2 * G * N + H [18560] */
} Mamba2Config;

/**
 * @brief Parse a config from JSON text.
 * @param json   the text of `config.json` (Hugging Face keys) or `params.json` (Mistral keys)
 * @param source name used in error messages (usually the file path)
 * @param cfg    filled on success
 * @param err    receives the reason on failure
 * @return 0 on success, -1 on failure (malformed JSON, missing or invalid field, inconsistent shapes)
 */
int mamba2_config_parse(const char *json, const char *source, Mamba2Config *cfg, Mamba2Error *err);

/**
 * @brief Read `DIR/config.json`, or `DIR/params.json` when there is no config.json.
 * @return 0 on success, -1 on failure with the reason in @p err.
 */
int mamba2_config_load_dir(const char *dir, Mamba2Config *cfg, Mamba2Error *err);

/** Total number of parameters the config implies (lm_head counted unless tied). */
long long mamba2_config_param_count(const Mamba2Config *cfg);

/** Bytes of fp32 state (conv + SSM) one sequence needs. */
long long mamba2_config_state_bytes(const Mamba2Config *cfg);

/** Largest `config.json` / `params.json` read (real ones are under 2 KB). */
#define MAMBA2_MAX_CONFIG_BYTES ((size_t)1 << 20)
/** Largest `model.safetensors.index.json` read (Codestral-7B's is 30 KB). */
#define MAMBA2_MAX_INDEX_BYTES ((size_t)16 << 20)
/** Largest file mamba2_read_file() reads (prompts, texts to score). */
#define MAMBA2_READ_MAX_BYTES ((size_t)1 << 30)
/** mamba2_read_file_max() flag: a FIFO or pipe (stdin, `<(…)`) is read to its end instead of refused. */
#define MAMBA2_READ_PIPE 1

/**
 * @brief Read a whole file into a NUL-terminated heap buffer (caller frees), checking its type first.
 *
 * The file is opened without blocking (a FIFO without a writer does not hang the open), then must be a
 * regular file of at most @p max_bytes (checked before anything is read or allocated) or, with
 * #MAMBA2_READ_PIPE in @p flags, a pipe read to its end (at most @p max_bytes). A directory, a device,
 * a socket, or (without the flag) a FIFO is refused with a message naming the file.
 * @param path      the file
 * @param max_bytes the most bytes the file may hold
 * @param flags     0, or #MAMBA2_READ_PIPE
 * @param len       receives the length (may be NULL)
 * @param err       receives the reason on failure
 * @return the buffer, or NULL with the reason in @p err
 */
char *mamba2_read_file_max(const char *path, size_t max_bytes, int flags, long *len, Mamba2Error *err);

/** mamba2_read_file_max() with #MAMBA2_READ_MAX_BYTES and pipes allowed (prompts, texts). NULL on failure. */
char *mamba2_read_file(const char *path, long *len, Mamba2Error *err);

#endif
