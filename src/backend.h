/**
 * @file backend.h
 * @brief The one interface every execution path (ref, cpu, gpu) implements, and the dispatch layer
 *        that checks the inputs of every call once, for every backend.
 *
 * The command-line program, the tests and the benchmarks drive every backend
 * through these few operations, so "ref vs cpu vs gpu" is a loop over names.
 * States are host-side Mamba2State objects with the same layout everywhere.
 *
 * Callers use mamba2_backend_prefill(), mamba2_backend_step() and
 * mamba2_backend_prefill_observed() rather than the function pointers: they refuse
 * empty inputs, token ids outside the vocabulary and states of another shape with
 * one message wording for every backend, so a backend's own functions may assume
 * valid inputs and check only what is truly theirs (memory, device limits).
 */
#ifndef MAMBA2_BACKEND_H
#define MAMBA2_BACKEND_H

#include <stdint.h>

#include "error.h"
#include "forward.h"
#include "model.h"
#include "progress.h"
#include "state.h"

typedef struct Mamba2Backend Mamba2Backend;

/** The kernels a backend runs, in words, for benchmark reports (filled by Mamba2Backend::kernels). */
typedef struct {
    char gemm[128]; /**< prefill's matrix products, which the roofline hook's GEMM ceiling also measures */
    char gemv[256]; /**< decode's matrix-vector products */
} Mamba2KernelNames;

/** The most phases a backend's decode step is timed in (Mamba2StepPhases). */
#define MAMBA2_STEP_PHASES 12

/** Where decode steps spent their wall time, phase by phase (filled by Mamba2Backend::step_phases). */
typedef struct {
    int n;                                 /**< phases named below */
    const char *name[MAMBA2_STEP_PHASES];  /**< what each phase does, e.g. "in_proj" */
    double seconds[MAMBA2_STEP_PHASES];    /**< its wall time summed over the steps timed, barriers and all */
    long steps;                            /**< steps timed */
} Mamba2StepPhases;

/** A forward-pass implementation bound to one loaded model. */
struct Mamba2Backend {
    const char *name;         /**< "ref", "cpu", "gpu" */
    const Mamba2Model *model; /**< the model it runs (not owned) */
    void *impl;               /**< the backend's private data */

    /**
     * @brief Run tokens[T] of one sequence, continuing from @p st (advanced by T).
     *
     * Called through mamba2_backend_prefill(), which has checked the inputs.
     * @param logits [T, V] when @p all_positions, else [V] of the last position; may be NULL.
     * @return 0 or -1 with the reason in @p err (the state is then unchanged).
     */
    int (*prefill)(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                   int all_positions, Mamba2Error *err);

    /**
     * @brief Decode one token for each of @p B independent sequences.
     *
     * Called through mamba2_backend_step(), which has checked the inputs (B distinct states).
     * @param states [B] states, each advanced by one token
     * @param tokens [B] the next token of each sequence
     * @param logits out: [B, V]
     */
    int (*step)(Mamba2Backend *b, Mamba2State **states, const int32_t *tokens, int B, float *logits,
                Mamba2Error *err);

    /**
     * @brief Like prefill (logits of every position), but also show each layer's tensors to @p hook: at least
     * the residual stream entering and leaving it; the reference shows every Mamba2LayerTensor.
     * May be NULL when the backend cannot observe layers. Called through mamba2_backend_prefill_observed().
     */
    int (*prefill_observed)(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                            Mamba2LayerHook hook, void *hook_ctx, Mamba2Error *err);

    /**
     * @brief Measure this machine's ceilings for the roofline: streaming read bandwidth (GB/s)
     *        and the dense GEMM rate of the kernel prefill uses (GFLOP/s). May be NULL.
     */
    int (*roofline)(Mamba2Backend *b, double *read_gbps, double *gemm_gflops, Mamba2Error *err);

    /**
     * @brief Bytes the backend holds for the large matrices (in_proj and out_proj of every layer,
     *        lm_head) as it reads them in a decode step: quantized copies count their values and
     *        scales. May be NULL: the matrices are read as stored.
     */
    double (*matrix_bytes)(Mamba2Backend *b);

    /**
     * @brief Name the kernels this backend runs with its options (`mamba2 bench` prints them beside
     *        its figures). May be NULL.
     */
    void (*kernels)(Mamba2Backend *b, Mamba2KernelNames *out);

    /**
     * @brief Time decode steps phase by phase (`mamba2 bench --phases`). With @p on set, zero the
     *        clocks and time every later step (a clock read where the threads meet, after each phase);
     *        with @p on clear, stop and copy what was summed into @p out. May be NULL.
     */
    void (*step_phases)(Mamba2Backend *b, int on, Mamba2StepPhases *out);

    /**
     * @brief Allocate @p bytes of host memory that this backend writes logits into fastest (the GPU:
     *        page-locked, so that a step's logits come in one transfer, without a host copy). May be
     *        NULL: malloc(). Called through mamba2_backend_logits_alloc().
     */
    void *(*host_alloc)(Mamba2Backend *b, size_t bytes);
    /** Free what host_alloc() returned (NULL when host_alloc is). */
    void (*host_free)(Mamba2Backend *b, void *p);

    /** Release everything the backend allocated (not the model). */
    void (*destroy)(Mamba2Backend *b);
};

/** How the CPU backend holds the four weight matrices of every layer and lm_head. */
typedef enum {
    MAMBA2_WEIGHTS_STORED = 0, /**< as stored in the checkpoint (bf16, f16 or f32), read in place from the mmap */
    MAMBA2_WEIGHTS_Q8 = 1,     /**< int8, one scale per block along K (cpu 64, gpu 32), quantized at load */
    MAMBA2_WEIGHTS_Q4 = 2      /**< 4-bit, one scale per block of 32 along K, quantized at load */
} Mamba2WeightFormat;

/** How the CPU backend's GEMMs treat the fp32 activations. */
typedef enum {
    MAMBA2_PRECISION_DEFAULT = 0, /**< within 1e-3 relative L2 of ref (fp32 activations, or two bf16 parts) */
    MAMBA2_PRECISION_FAST = 1     /**< activations rounded to bf16 once, as llama.cpp and the GPU path do */
} Mamba2Precision;

/** Options a backend may use (zero-initialise, then set what you need). */
typedef struct {
    int n_threads;          /**< CPU threads; 0 = OMP_NUM_THREADS or all cores */
    Mamba2WeightFormat weights; /**< cpu: weight format (others accept only MAMBA2_WEIGHTS_STORED) */
    Mamba2Precision precision;  /**< cpu: activation precision of the GEMMs (others accept only the default) */
    int state_bf16;         /**< GPU: keep SSM states in bf16 on the device (halves state traffic) */
    Mamba2Progress progress; /**< called during long set-up work, or NULL; when set, the ref and cpu
                                  backends with the stored weights read them all at creation
                                  ("reading weights") rather than at the first token */
    void *progress_ctx;     /**< passed to @ref progress */
} Mamba2BackendOptions;

/**
 * @brief Create the backend called @p name ("ref", "cpu", "gpu") for model @p m.
 * @return 0, or -1 when the name is unknown, not built in, or cannot start (e.g. no GPU).
 */
int mamba2_backend_create(const char *name, const Mamba2Model *m, const Mamba2BackendOptions *opt,
                          Mamba2Backend **out, Mamba2Error *err);

/** "stored", "q8" or "q4". */
const char *mamba2_weight_format_name(Mamba2WeightFormat f);

/** "default" or "fast". */
const char *mamba2_precision_name(Mamba2Precision p);

/** Destroy a backend made by mamba2_backend_create() (NULL is fine). */
void mamba2_backend_destroy(Mamba2Backend *b);

/** Comma-separated names of the backends compiled into this build, e.g. "ref,cpu". */
const char *mamba2_backend_names(void);

/** 1 when a backend called @p name is compiled into this build (whether or not it can run here). */
int mamba2_backend_exists(const char *name);

/**
 * @brief Run tokens[T] of one sequence on @p b, continuing from @p st: @p b->prefill after checking
 *        the inputs.
 *
 * Refused, with the state left as it was: T < 1, @p tokens or @p st NULL, a token id outside
 * [0, V) (the message names the id and its position), a state of another model's shape.
 * @param b             the backend
 * @param st            the sequence's state, advanced by T tokens
 * @param tokens        [T] token ids
 * @param T             number of tokens
 * @param logits        out: [T, V] when @p all_positions, else [V] of the last position; may be NULL
 * @param all_positions 1 for the logits of every position
 * @param err           the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_backend_prefill(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                           int all_positions, Mamba2Error *err);

/**
 * @brief Decode one token for each of @p B sequences on @p b: @p b->step after checking the inputs.
 *
 * Refused, with every state left as it was: B < 1, @p states, @p tokens, @p logits or a state NULL,
 * a token id outside [0, V) (the message names the sequence), a state of another model's shape, the
 * same state given for two sequences.
 * @param b      the backend
 * @param states [B] states, each advanced by one token
 * @param tokens [B] the next token of each sequence
 * @param B      number of sequences
 * @param logits out: [B, V]
 * @param err    the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_backend_step(Mamba2Backend *b, Mamba2State **states, const int32_t *tokens, int B, float *logits,
                        Mamba2Error *err);

/**
 * @brief An array of @p count floats for the logits of @p b's steps and prefills, in the host memory
 *        @p b writes fastest (see Mamba2Backend::host_alloc); any float array works, this one saves the
 *        GPU a host copy per step.
 * @return the array (free it with mamba2_backend_logits_free() before destroying @p b), or NULL with
 *         the reason in @p err.
 */
float *mamba2_backend_logits_alloc(Mamba2Backend *b, size_t count, Mamba2Error *err);

/** Free an array from mamba2_backend_logits_alloc() (NULL is fine). */
void mamba2_backend_logits_free(Mamba2Backend *b, float *logits);

/**
 * @brief Like mamba2_backend_prefill() with every position's logits, also showing @p hook each
 *        layer's tensors; refused as it is, and when @p b cannot observe layers.
 * @param b        the backend
 * @param st       the sequence's state, advanced by T tokens
 * @param tokens   [T] token ids
 * @param T        number of tokens
 * @param logits   out: [T, V]; may be NULL
 * @param hook     per-layer observer (may be NULL)
 * @param hook_ctx passed to @p hook
 * @param err      the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_backend_prefill_observed(Mamba2Backend *b, Mamba2State *st, const int32_t *tokens, int T, float *logits,
                                    Mamba2LayerHook hook, void *hook_ctx, Mamba2Error *err);

/**
 * @brief Let every backend compiled in prepare the process; call it first thing in a program's main().
 *
 * The CPU path restarts the program once with OpenBLAS's environment set (OPENBLAS_NUM_THREADS=1, and
 * OPENBLAS_CORETYPE when OpenBLAS picked its generic kernels for a CPU it does not recognise:
 * cpu/blas_core.h); a user's own settings win.
 * For programs only: a library must not restart its caller's process.
 * @param argv the program's argv, passed on unchanged to a restart
 */
void mamba2_backends_start_program(char **argv);

/** Constructor of the reference backend (backend_ref.c). */
int mamba2_backend_ref_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                              Mamba2Error *err);

#endif
