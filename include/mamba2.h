/**
 * @file mamba2.h
 * @brief The public C API of mamba2.c: Mamba-2 (SSD) language models, their tokenizers, and the
 *        three forms of the SSD layer, from C, C++ or anything that can call C (Python's ctypes).
 *
 * This is the only header a program needs; link with `pkg-config --cflags --libs mamba2`.
 * Every exported symbol starts with `mamba2_`; every type is either opaque (used through a
 * pointer) or a plain struct of C types.
 *
 * A program opens a checkpoint directory (mamba2_model_open()), a backend that runs it
 * (mamba2_backend_open(): "ref", "cpu", "gpu" or "auto"), one state per sequence
 * (mamba2_state_create()), and then feeds tokens: mamba2_prefill() for a prompt, mamba2_step() for
 * one token of each of a batch of sequences. Logits go into float arrays the caller owns.
 * The semantics, tolerances and file formats are in notebooks-docs/design.md.
 *
 * ## Errors
 *
 * Three kinds of functions, one rule each:
 * - functions that make a handle return it, or NULL on failure;
 * - functions that act return #MAMBA2_OK (0) or one of the other ::mamba2_status codes;
 * - queries and pure functions (sizes, names, greedy choice) cannot fail except on an invalid
 *   argument (a NULL handle, an unknown selector), which gives -1 or NULL.
 *
 * The first two kinds take a ::mamba2_error pointer as their last argument, which may be NULL:
 * on failure it receives the code and a one-line message (naming the file, the tensor, the
 * token, the expected and actual value where that applies); on success its code is #MAMBA2_OK
 * and its message empty. There is no hidden error state (no errno, no "last error").
 * No function prints to standard output, and none exits or aborts on bad input: long set-up
 * work reports progress through a callback (mamba2_backend_options::progress). The only output
 * is two diagnostics of the gpu backend on standard error: its profile, when the environment
 * asks for it (MAMBA2_GPU_PROFILE=1), and a warning when closing it cannot copy a state back
 * from the device.
 *
 * ## Threads
 *
 * - Handles are independent: different handles may be used from different threads at the same
 *   time, including two models in one process, each with its own backends and states.
 * - A model is read-only once open: several backends and states of one model may be used from
 *   several threads at once, each backend and each state by one call at a time.
 * - A backend, a state and a sampler must not be used by two calls at once. The states given to
 *   one mamba2_step() must be distinct.
 * - A tokenizer is read-only once open: any number of threads may encode and decode with it at once.
 * - The SSD functions and the queries keep no state: call them from any thread.
 * - The cpu backend runs its own OpenMP threads (mamba2_backend_options::n_threads) inside each
 *   call; the buffers it keeps per thread are freed when a thread ends.
 *
 * ## Lifetimes
 *
 * A backend and a state keep their model alive: mamba2_model_close() may come before
 * mamba2_backend_close() and mamba2_state_destroy() (the model's memory goes with the last of
 * them), so handles may be released in any order.
 */
#ifndef MAMBA2_H
#define MAMBA2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a function the shared library exports (everything else in it is hidden). */
#if defined(__GNUC__) && __GNUC__ >= 4
#define MAMBA2_API __attribute__((visibility("default")))
#else
#define MAMBA2_API
#endif

/** Major version: changes when a program built against an older header would break. */
#define MAMBA2_VERSION_MAJOR 0
/** Minor version: changes when functions are added. */
#define MAMBA2_VERSION_MINOR 1
/** Patch version: changes with fixes that leave the interface as it is. */
#define MAMBA2_VERSION_PATCH 0

/**
 * @brief The library's version, "MAJOR.MINOR.PATCH".
 *
 * Compare with the MAMBA2_VERSION_* macros to see whether the library loaded at run time is the
 * one the program was compiled against.
 * @return a static string.
 */
MAMBA2_API const char *mamba2_version(void);

/* ------------------------------------------------------------------------------------------------
 * Errors
 * --------------------------------------------------------------------------------------------- */

/** What went wrong: the code of a ::mamba2_error and the return value of functions that act. */
typedef enum mamba2_status {
    MAMBA2_OK = 0,           /**< success */
    MAMBA2_ERR_ARGUMENT = 1, /**< a NULL pointer, a size out of range (T < 1, B < 1), an unknown option,
                                  a buffer too small, a state of another model */
    MAMBA2_ERR_TOKEN = 2,    /**< a token id outside [0, vocabulary size) */
    MAMBA2_ERR_IO = 3,       /**< a file or directory that does not exist or cannot be read or written */
    MAMBA2_ERR_FORMAT = 4,   /**< a file that is there but malformed: a checkpoint, a tokenizer, a state
                                  file of another model */
    MAMBA2_ERR_BACKEND = 5,  /**< a backend not built in, unable to start here (no GPU), unable to do
                                  what was asked (observe layers), or failing while it runs */
    MAMBA2_ERR_MEMORY = 6    /**< out of memory (host or device) */
} mamba2_status;

/** Length of mamba2_error::message, its NUL included. */
#define MAMBA2_ERROR_MESSAGE_SIZE 1024

/** Why a call failed: filled by every function that takes one (it may always be NULL). */
typedef struct mamba2_error {
    int code;                                 /**< a ::mamba2_status; #MAMBA2_OK after a success */
    char message[MAMBA2_ERROR_MESSAGE_SIZE];  /**< one line, NUL-terminated; empty after a success */
} mamba2_error;

/**
 * @brief A short description of a ::mamba2_status ("invalid argument", "token id out of range", ...).
 * @param code a ::mamba2_status
 * @return a static string, or NULL for a value that is not a status.
 */
MAMBA2_API const char *mamba2_status_string(int code);

/* ------------------------------------------------------------------------------------------------
 * Models
 * --------------------------------------------------------------------------------------------- */

/** A loaded checkpoint: its config and a read-only, memory-mapped view of every weight. */
typedef struct mamba2_model mamba2_model;

/**
 * @brief Open a checkpoint directory.
 *
 * Hugging Face's layout (`config.json` + `model.safetensors`, or `model.safetensors.index.json`
 * + shards) or Mistral's (`params.json` + `consolidated.safetensors`). Weights are memory-mapped
 * and read in their stored dtype (bf16, f16, f32); every tensor's presence, dtype and shape is
 * checked against the config.
 * @param dir the directory
 * @param err receives the reason on failure: #MAMBA2_ERR_IO when @p dir is not a readable
 *            directory, #MAMBA2_ERR_FORMAT when what is in it is not a valid checkpoint
 * @return the model (close it with mamba2_model_close()), or NULL.
 */
MAMBA2_API mamba2_model *mamba2_model_open(const char *dir, mamba2_error *err);

/**
 * @brief Release the caller's hold on a model (NULL is allowed).
 *
 * Its memory goes once its backends and states are gone too.
 * @param m the model
 */
MAMBA2_API void mamba2_model_close(mamba2_model *m);

/** Selectors of mamba2_model_dim(): the hyper-parameters, named as in notebooks-docs/design.md §2. */
typedef enum mamba2_dim {
    MAMBA2_DIM_VOCAB_SIZE = 0, /**< V, rows of the embedding and of the logits */
    MAMBA2_DIM_N_LAYER = 1,    /**< L, layers */
    MAMBA2_DIM_D_MODEL = 2,    /**< d, width of the residual stream */
    MAMBA2_DIM_N_HEADS = 3,    /**< H, SSD heads */
    MAMBA2_DIM_HEAD_DIM = 4,   /**< P, channels per head */
    MAMBA2_DIM_D_STATE = 5,    /**< N, state size of each head */
    MAMBA2_DIM_N_GROUPS = 6,   /**< G, groups of B and C */
    MAMBA2_DIM_D_CONV = 7,     /**< K, width of the causal convolution */
    MAMBA2_DIM_D_INNER = 8,    /**< d_in = H·P */
    MAMBA2_DIM_CONV_DIM = 9,   /**< conv_dim = d_in + 2·G·N, channels of the convolution */
    MAMBA2_DIM_D_IN_PROJ = 10, /**< 2·d_in + 2·G·N + H, outputs of in_proj */
    MAMBA2_DIM_CHUNK_SIZE = 11 /**< Q, chunk size of the chunked SSD in prefill */
} mamba2_dim;

/**
 * @brief One hyper-parameter of the model.
 * @param m     the model
 * @param which a ::mamba2_dim
 * @return its value, or -1 when @p m is NULL or @p which is not a ::mamba2_dim.
 */
MAMBA2_API int mamba2_model_dim(const mamba2_model *m, int which);

/**
 * @brief Number of parameters (lm_head counted unless it shares the embedding).
 * @param m the model
 * @return the count, or -1 when @p m is NULL.
 */
MAMBA2_API long long mamba2_model_n_params(const mamba2_model *m);

/**
 * @brief Bytes of one sequence's state (conv + SSM, fp32); it does not grow with the sequence.
 * @param m the model
 * @return the bytes, or -1 when @p m is NULL.
 */
MAMBA2_API long long mamba2_model_state_bytes(const mamba2_model *m);

/**
 * @brief The directory the model was opened from (where its tokenizer usually is).
 * @param m the model
 * @return a string owned by the model, or NULL when @p m is NULL.
 */
MAMBA2_API const char *mamba2_model_dir(const mamba2_model *m);

/**
 * @brief Parameters and state bytes of a configuration alone, without weights.
 * @param config_json the text of a `config.json` (Hugging Face) or `params.json` (Mistral)
 * @param n_params    out: parameters (may be NULL)
 * @param state_bytes out: bytes of one sequence's state (may be NULL)
 * @param err         receives the reason (#MAMBA2_ERR_FORMAT) on failure
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_config_sizes(const char *config_json, long long *n_params, long long *state_bytes,
                                   mamba2_error *err);

/* ------------------------------------------------------------------------------------------------
 * Backends
 * --------------------------------------------------------------------------------------------- */

/** An execution path ("ref", "cpu" or "gpu") bound to one model. */
typedef struct mamba2_backend mamba2_backend;

/**
 * @brief Progress of a long set-up (reading the weights, for ref and cpu with the stored weights;
 *        quantizing them; uploading them to the GPU), @p done rising to @p total in each.
 * @param ctx   mamba2_backend_options::progress_ctx
 * @param done  units done so far
 * @param total units in all
 * @param what  what is being done ("reading weights", "quantizing weights", "uploading weights")
 */
typedef void (*mamba2_progress_fn)(void *ctx, double done, double total, const char *what);

/** How a backend runs. All zero (or a NULL pointer) means the defaults. */
typedef struct mamba2_backend_options {
    int n_threads;          /**< cpu: OpenMP threads; 0: OMP_NUM_THREADS, else every core */
    const char *weights;    /**< cpu: "stored" (NULL: as in the checkpoint), "q8" or "q4" (quantized at load); gpu: "stored" or "q8" */
    const char *precision;  /**< cpu: "default" (NULL: within 1e-3 of ref) or "fast" (activations rounded to bf16) */
    int gpu_state_bf16;     /**< gpu: 1 keeps the SSM states in bf16 on the device */
    mamba2_progress_fn progress; /**< called during long set-up work, or NULL */
    void *progress_ctx;     /**< passed to @ref progress */
} mamba2_backend_options;

/**
 * @brief The backends built into this library, comma-separated ("ref,cpu" or "ref,cpu,gpu").
 * @return a static string.
 */
MAMBA2_API const char *mamba2_backend_list(void);

/**
 * @brief Start a backend for a model.
 *
 * "auto" (or NULL) takes the first of gpu, cpu, ref that is built in and starts here with
 * these options (gpu needs a CUDA device and takes "stored" or "q8" weights; "q4" and the
 * precision "fast" are cpu options, so they make "auto" skip gpu); mamba2_backend_name() says
 * which one it took.
 * On a CPU newer than the OpenBLAS library, cpu prefill may run OpenBLAS's generic kernels
 * unless OPENBLAS_CORETYPE is set (the `mamba2` program sets it itself).
 * @param m    the model (kept alive by the backend)
 * @param name "ref", "cpu", "gpu" or "auto"
 * @param opt  options, or NULL for the defaults
 * @param err  receives the reason: #MAMBA2_ERR_ARGUMENT for an unknown name or option value,
 *             #MAMBA2_ERR_BACKEND when the backend is not built in or cannot start
 * @return the backend (close it with mamba2_backend_close()), or NULL.
 */
MAMBA2_API mamba2_backend *mamba2_backend_open(mamba2_model *m, const char *name, const mamba2_backend_options *opt,
                                               mamba2_error *err);

/**
 * @brief Stop a backend and release what it holds (NULL is allowed).
 *
 * A state the gpu backend still holds on the device is copied back to the host first.
 * @param b the backend
 */
MAMBA2_API void mamba2_backend_close(mamba2_backend *b);

/**
 * @brief Which backend this is: "ref", "cpu" or "gpu" (what "auto" chose).
 * @param b the backend
 * @return a static string, or NULL when @p b is NULL.
 */
MAMBA2_API const char *mamba2_backend_name(const mamba2_backend *b);

/* ------------------------------------------------------------------------------------------------
 * States
 * --------------------------------------------------------------------------------------------- */

/**
 * @brief The recurrent state of one sequence: conv state [L, conv_dim, K−1] and SSM state
 *        [L, H, P, N], fp32, the same on every backend (a state may move between backends).
 */
typedef struct mamba2_state mamba2_state;

/**
 * @brief A state at the start of a sequence (all zero, position 0).
 * @param m   the model (kept alive by the state)
 * @param err receives the reason (#MAMBA2_ERR_MEMORY) on failure
 * @return the state (destroy it with mamba2_state_destroy()), or NULL.
 */
MAMBA2_API mamba2_state *mamba2_state_create(mamba2_model *m, mamba2_error *err);

/**
 * @brief Release a state (NULL is allowed).
 * @param s the state
 */
MAMBA2_API void mamba2_state_destroy(mamba2_state *s);

/**
 * @brief Return a state to the start of a sequence (zeros, position 0), keeping its memory.
 * @param s the state (NULL: nothing happens)
 */
MAMBA2_API void mamba2_state_clear(mamba2_state *s);

/**
 * @brief A new state equal to @p src: the sequence so far, to be continued in two ways.
 * @param src the state to copy (a copy a GPU backend holds is brought back to the host first)
 * @param err receives the reason on failure
 * @return the copy (destroy it with mamba2_state_destroy()), or NULL.
 */
MAMBA2_API mamba2_state *mamba2_state_clone(mamba2_state *src, mamba2_error *err);

/**
 * @brief Tokens this state has consumed since it was created or cleared.
 * @param s the state
 * @return the position, or -1 when @p s is NULL.
 */
MAMBA2_API long long mamba2_state_position(const mamba2_state *s);

/**
 * @brief Write a state to a file (a header that identifies the model's shape, then the data).
 *
 * Written to a temporary file and renamed, so a failure leaves nothing half-written.
 * @param s    the state
 * @param path the file
 * @param err  receives the reason (#MAMBA2_ERR_IO) on failure
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_state_save_file(mamba2_state *s, const char *path, mamba2_error *err);

/**
 * @brief Read a state written by mamba2_state_save_file() (by any backend, any program) into @p s.
 * @param s    the state, of a model with the shape the file was saved for
 * @param path the file
 * @param err  receives the reason: #MAMBA2_ERR_IO when the file cannot be read,
 *             #MAMBA2_ERR_FORMAT when it is not a state file or belongs to a model of another
 *             shape (the message names the differing field); @p s is then unchanged
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_state_load_file(mamba2_state *s, const char *path, mamba2_error *err);

/* ------------------------------------------------------------------------------------------------
 * Running the model
 * --------------------------------------------------------------------------------------------- */

/**
 * @brief Run the tokens of one sequence, continuing from its state.
 * @param b             the backend
 * @param s             the state, advanced by @p T tokens (unchanged on failure)
 * @param tokens        [T] token ids, each in [0, V)
 * @param T             number of tokens, at least 1
 * @param logits        out: [T, V] when @p all_positions, else [V] of the last token; may be NULL
 * @param all_positions 1 for the logits of every position, 0 for the last one's
 * @param err           receives the reason: #MAMBA2_ERR_ARGUMENT (T < 1, a state of another
 *                      model), #MAMBA2_ERR_TOKEN (an id out of range), #MAMBA2_ERR_MEMORY
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_prefill(mamba2_backend *b, mamba2_state *s, const int32_t *tokens, int T, float *logits,
                              int all_positions, mamba2_error *err);

/**
 * @brief Decode one token for each of @p B independent sequences at once (batched decode).
 *
 * Gives the same logits, within the tolerances of notebooks-docs/design.md §4, as mamba2_prefill()
 * of the same tokens.
 * @param b      the backend
 * @param states [B] distinct states of the backend's model, each advanced by one token
 * @param tokens [B] the next token of each sequence
 * @param B      number of sequences, at least 1
 * @param logits out: [B, V]
 * @param err    receives the reason on failure (as for mamba2_prefill())
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_step(mamba2_backend *b, mamba2_state *const *states, const int32_t *tokens, int B,
                           float *logits, mamba2_error *err);

/**
 * @brief An array of @p count floats for logits, in the host memory @p b writes fastest.
 *
 * Any float array works as the logits of mamba2_prefill() and mamba2_step(); with the gpu backend
 * this one is page-locked, so that a step's logits come back in one transfer rather than through a
 * staging buffer and a host copy (a few per cent of a step of 16 or more sequences). Free it with
 * mamba2_logits_free() before closing @p b.
 * @param b     the backend whose logits the array will hold
 * @param count floats, e.g. B × #MAMBA2_DIM_VOCAB_SIZE for steps of B sequences
 * @param err   receives the reason on failure
 * @return the array, or NULL (#MAMBA2_ERR_ARGUMENT: no backend or a count of 0; #MAMBA2_ERR_MEMORY).
 */
MAMBA2_API float *mamba2_logits_alloc(mamba2_backend *b, size_t count, mamba2_error *err);

/**
 * @brief Free an array of mamba2_logits_alloc() (NULL is fine).
 * @param b      the backend that made it (not yet closed; NULL frees nothing)
 * @param logits the array
 */
MAMBA2_API void mamba2_logits_free(mamba2_backend *b, float *logits);

/**
 * @brief Tensors of a layer that mamba2_prefill_observed() shows to its hook, in the order a layer
 *        makes them (notebooks-docs/design.md §2). Widths are per token.
 */
typedef enum mamba2_hook_tensor {
    MAMBA2_HOOK_INPUT = 0,      /**< residual stream entering the layer, h [d] */
    MAMBA2_HOOK_NORM = 1,       /**< u = RMSNorm(h)·w_norm [d] */
    MAMBA2_HOOK_IN_PROJ = 2,    /**< W_in·u = [z (d_in) | xBC (conv_dim) | dt (H)] [d_in_proj] */
    MAMBA2_HOOK_CONV = 3,       /**< silu(causal conv(xBC)) = [x (H·P) | B (G·N) | C (G·N)] [conv_dim] */
    MAMBA2_HOOK_DT = 4,         /**< dt = clamp(softplus(dt + dt_bias)) [H] */
    MAMBA2_HOOK_SSD = 5,        /**< y = SSD(x, dt, A, B, C) + D·x [d_in] */
    MAMBA2_HOOK_GATED_NORM = 6, /**< y·silu(z), RMS-normalised per group of d_in/G channels, ·w [d_in] */
    MAMBA2_HOOK_OUT_PROJ = 7,   /**< W_out·y [d] */
    MAMBA2_HOOK_OUTPUT = 8,     /**< residual stream leaving the layer, h + W_out·y [d] */
    MAMBA2_HOOK_COUNT = 9       /**< number of tensors above */
} mamba2_hook_tensor;

/**
 * @brief Receives one tensor of one layer during mamba2_prefill_observed().
 * @param ctx    the hook_ctx given to mamba2_prefill_observed()
 * @param layer  layer index, 0 .. L−1 (layers arrive in order)
 * @param tensor a ::mamba2_hook_tensor
 * @param data   [T, width] row-major; valid only during the call (copy what you keep)
 * @param T      tokens of the call
 * @param width  values per token
 */
typedef void (*mamba2_layer_hook)(void *ctx, int layer, int tensor, const float *data, int T, int width);

/**
 * @brief mamba2_prefill() of every position that also shows each layer's tensors to @p hook:
 *        for checking one's own kernels layer by layer against the reference.
 *
 * The ref backend shows every ::mamba2_hook_tensor of every layer; the cpu backend shows
 * #MAMBA2_HOOK_INPUT and #MAMBA2_HOOK_OUTPUT; the gpu backend cannot observe layers
 * (#MAMBA2_ERR_BACKEND). The state advances exactly as in mamba2_prefill().
 * @param b        the backend
 * @param s        the state, advanced by @p T tokens
 * @param tokens   [T] token ids
 * @param T        number of tokens, at least 1
 * @param logits   out: [T, V] of every position; may be NULL
 * @param hook     called for each tensor of each layer (NULL: a plain prefill)
 * @param hook_ctx passed to @p hook
 * @param err      receives the reason on failure
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_prefill_observed(mamba2_backend *b, mamba2_state *s, const int32_t *tokens, int T,
                                       float *logits, mamba2_layer_hook hook, void *hook_ctx, mamba2_error *err);

/**
 * @brief The name of a ::mamba2_hook_tensor ("input", "norm", "in_proj", "conv", "dt", "ssd",
 *        "gated_norm", "out_proj", "output").
 * @param tensor a ::mamba2_hook_tensor
 * @return a static string, or NULL for another value.
 */
MAMBA2_API const char *mamba2_hook_tensor_name(int tensor);

/* ------------------------------------------------------------------------------------------------
 * Tokenizers
 * --------------------------------------------------------------------------------------------- */

/** Text ↔ token ids (`tokenizer.json` of Hugging Face, or a SentencePiece model). */
typedef struct mamba2_tokenizer mamba2_tokenizer;

/**
 * @brief Open a tokenizer.
 * @param path a checkpoint directory (its `tokenizer.json`, else `tokenizer.model.v3`, else
 *             `tokenizer.model`: pass mamba2_model_dir() for the model's own) or a tokenizer file
 * @param err  receives the reason: #MAMBA2_ERR_IO when @p path does not exist,
 *             #MAMBA2_ERR_FORMAT when no tokenizer can be read from it
 * @return the tokenizer (close it with mamba2_tokenizer_close()), or NULL.
 */
MAMBA2_API mamba2_tokenizer *mamba2_tokenizer_open(const char *path, mamba2_error *err);

/**
 * @brief Release a tokenizer (NULL is allowed).
 * @param t the tokenizer
 */
MAMBA2_API void mamba2_tokenizer_close(mamba2_tokenizer *t);

/**
 * @brief Number of token ids (one past the largest); may be less than the model's vocab_size.
 * @param t the tokenizer
 * @return the count, or -1 when @p t is NULL.
 */
MAMBA2_API int mamba2_tokenizer_n_vocab(const mamba2_tokenizer *t);

/**
 * @brief The beginning-of-sequence id.
 * @param t the tokenizer
 * @return the id, or -1 when the tokenizer has none (or @p t is NULL).
 */
MAMBA2_API int mamba2_tokenizer_bos_id(const mamba2_tokenizer *t);

/**
 * @brief The end-of-sequence id.
 * @param t the tokenizer
 * @return the id, or -1 when the tokenizer has none (or @p t is NULL).
 */
MAMBA2_API int mamba2_tokenizer_eos_id(const mamba2_tokenizer *t);

/**
 * @brief Encode text into token ids, as the reference library does (`tokenizers` or `sentencepiece`).
 *
 * To size the buffer, call with @p ids NULL and @p cap 0: @p n_ids receives the count.
 * @param t       the tokenizer
 * @param text    bytes (need not be NUL-terminated; invalid UTF-8 is encoded as U+FFFD)
 * @param len     number of bytes
 * @param add_bos 1: add what the reference adds by default (BOS in front for these models)
 * @param ids     out: [cap] ids
 * @param cap     capacity of @p ids
 * @param n_ids   out: number of ids of the text, also when more than @p cap
 * @param err     receives the reason: #MAMBA2_ERR_ARGUMENT when the ids do not fit in @p cap
 *                (the first @p cap are written)
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_tokenize(const mamba2_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids,
                               size_t cap, size_t *n_ids, mamba2_error *err);

/**
 * @brief Decode token ids into text, as the reference library's default decode does
 *        (special tokens skipped).
 *
 * To size the buffer, call with @p text NULL and @p cap 0: @p len receives the byte count.
 * @param t    the tokenizer
 * @param ids  [n] token ids
 * @param n    number of ids
 * @param text out: [cap] bytes, NUL-terminated when @p cap > @p len (the text itself may contain NULs)
 * @param cap  capacity of @p text
 * @param len  out: bytes of the text (its NUL not counted), also when they do not fit
 * @param err  receives the reason: #MAMBA2_ERR_TOKEN for an id out of range,
 *             #MAMBA2_ERR_ARGUMENT when the text and its NUL do not fit in @p cap
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_detokenize(const mamba2_tokenizer *t, const int32_t *ids, size_t n, char *text, size_t cap,
                                 size_t *len, mamba2_error *err);

/* ------------------------------------------------------------------------------------------------
 * Sampling
 * --------------------------------------------------------------------------------------------- */

/** Chooses next tokens from logits: temperature, top-k, top-p, and a seeded random generator. */
typedef struct mamba2_sampler mamba2_sampler;

/**
 * @brief A sampler for logits of @p n_vocab tokens.
 *
 * Temperature 0 is greedy (the argmax). Otherwise: logits / temperature, softmax, keep the
 * @p top_k most probable, then the smallest set whose probability reaches @p top_p, and draw.
 * The same seed draws the same tokens.
 * @param n_vocab     length of the logits (the model's #MAMBA2_DIM_VOCAB_SIZE)
 * @param temperature 0 (greedy) or more
 * @param top_k       tokens kept; 0: all
 * @param top_p       nucleus threshold in (0, 1]; 1: off
 * @param seed        seed of the random generator
 * @param err         receives the reason (#MAMBA2_ERR_ARGUMENT: a setting out of range) on failure
 * @return the sampler (destroy it with mamba2_sampler_destroy()), or NULL.
 */
MAMBA2_API mamba2_sampler *mamba2_sampler_create(int n_vocab, float temperature, int top_k, float top_p,
                                                 uint64_t seed, mamba2_error *err);

/**
 * @brief Release a sampler (NULL is allowed).
 * @param s the sampler
 */
MAMBA2_API void mamba2_sampler_destroy(mamba2_sampler *s);

/**
 * @brief Choose the next token (the random generator advances by one draw when temperature > 0).
 * @param s      the sampler
 * @param logits [n_vocab] scores of the next token (not modified; NaN counts as −∞)
 * @return the token id, or -1 when @p s or @p logits is NULL.
 */
MAMBA2_API int32_t mamba2_sample(mamba2_sampler *s, const float *logits);

/**
 * @brief Greedy choice: the index of the largest logit (the lowest on ties; NaN never chosen
 *        unless all are NaN).
 * @param logits [n] scores
 * @param n      number of scores
 * @return the index, or -1 when @p logits is NULL or @p n < 1.
 */
MAMBA2_API int32_t mamba2_sample_greedy(const float *logits, int n);

/* ------------------------------------------------------------------------------------------------
 * The SSD layer in its three forms, on arrays the caller owns
 * --------------------------------------------------------------------------------------------- */

/**
 * @brief Recurrent form: S_t = exp(dt_t·A) S_{t−1} + dt_t x_t B_tᵀ, y_t = S_t C_t.
 *
 * One sequence of T tokens, H heads of P channels, G groups of N-dimensional B and C (head h
 * reads group h / (H/G)). All arrays are fp32, row-major; sums are accumulated in double. The D·x
 * skip connection is not part of it (the model adds it). Every form starts from @p state and
 * leaves the final state in it, so the three can be chained and compared
 * (notebooks-docs/01-ssd-from-scratch.md).
 * @param T     tokens (≥ 1)
 * @param H     heads (≥ 1, a multiple of @p G)
 * @param P     channels per head (≥ 1)
 * @param G     groups (≥ 1)
 * @param N     state size (≥ 1)
 * @param x     [T, H, P] input
 * @param dt    [T, H] step sizes (after softplus and clamp)
 * @param A     [H] decay rates (negative: A = −exp(A_log))
 * @param B     [T, G, N] input projections
 * @param C     [T, G, N] output projections
 * @param state [H, P, N] in: the initial state; out: the final state
 * @param y     out: [T, H, P]
 * @param err   receives the reason (#MAMBA2_ERR_ARGUMENT: a size out of range, a NULL array)
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_ssd_recurrent(int T, int H, int P, int G, int N, const float *x, const float *dt, const float *A,
                                    const float *B, const float *C, float *state, float *y, mamba2_error *err);

/**
 * @brief Quadratic (masked dual) form: Y = (L ∘ C Bᵀ) X with L[t][s] = exp(a_{s+1} + … + a_t) for
 *        s ≤ t (a = dt·A, X = dt·x); O(T²) work and memory.
 *
 * Arguments as for mamba2_ssd_recurrent(); #MAMBA2_ERR_MEMORY when the T×T mask cannot be allocated.
 * @param T     tokens
 * @param H     heads
 * @param P     channels per head
 * @param G     groups
 * @param N     state size
 * @param x     [T, H, P]
 * @param dt    [T, H]
 * @param A     [H]
 * @param B     [T, G, N]
 * @param C     [T, G, N]
 * @param state [H, P, N] in and out
 * @param y     out: [T, H, P]
 * @param err   receives the reason on failure
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_ssd_quadratic(int T, int H, int P, int G, int N, const float *x, const float *dt, const float *A,
                                    const float *B, const float *C, float *state, float *y, mamba2_error *err);

/**
 * @brief Chunked form (the SSD algorithm): the quadratic form inside chunks of @p Q tokens, the
 *        recurrence between chunks (T need not be a multiple of Q).
 *
 * Arguments as for mamba2_ssd_recurrent(), plus the chunk size.
 * @param T     tokens
 * @param H     heads
 * @param P     channels per head
 * @param G     groups
 * @param N     state size
 * @param Q     chunk size (≥ 1)
 * @param x     [T, H, P]
 * @param dt    [T, H]
 * @param A     [H]
 * @param B     [T, G, N]
 * @param C     [T, G, N]
 * @param state [H, P, N] in and out
 * @param y     out: [T, H, P]
 * @param err   receives the reason on failure
 * @return #MAMBA2_OK or an error code.
 */
MAMBA2_API int mamba2_ssd_chunked(int T, int H, int P, int G, int N, int Q, const float *x, const float *dt,
                                  const float *A, const float *B, const float *C, float *state, float *y,
                                  mamba2_error *err);

#ifdef __cplusplus
}
#endif

#endif
