/**
 * @file state.h
 * @brief The per-sequence recurrent state: conv state + SSM state of every layer, fp32.
 *
 * The layout is the same on every path, so a state saved by one backend can be
 * loaded and continued by another:
 * - conv [L, conv_dim, K−1]: the last K−1 inputs of the causal conv, oldest first;
 * - ssm  [L, H, P, N]: the SSD state S_h of every head.
 * Its size does not grow with the sequence (263.5 MiB for Codestral-7B).
 */
#ifndef MAMBA2_STATE_H
#define MAMBA2_STATE_H

#include <stdint.h>

#include "config.h"
#include "error.h"

struct Mamba2State;

/**
 * @brief The largest position (tokens consumed) a state may hold: 2^53, exactly representable in a
 *        double and far beyond any sequence, so that position + tokens can never overflow int64.
 *
 * State files with a position outside [0, MAMBA2_STATE_MAX_POS] are refused, and the backend
 * dispatch layer refuses a run that would carry a state past it.
 */
#define MAMBA2_STATE_MAX_POS ((int64_t)1 << 53)

/**
 * @brief The position after consuming @p n more tokens from @p pos, saturated at MAMBA2_STATE_MAX_POS
 *        (never a signed overflow, whatever the inputs; the dispatch layer refuses a run that would
 *        reach the bound, so backends only see the exact sum).
 */
static inline int64_t mamba2_state_pos_after(int64_t pos, int64_t n) {
    if (pos < 0) pos = 0;
    if (n < 0) n = 0;
    return pos > MAMBA2_STATE_MAX_POS - n || n > MAMBA2_STATE_MAX_POS ? MAMBA2_STATE_MAX_POS : pos + n;
}

/**
 * @brief A copy of a state held in a backend's own memory (the GPU's).
 *
 * While a state has one, that copy is the current one and the host arrays are stale.
 * mamba2_state_sync() brings the contents back and drops the device copy.
 */
typedef struct Mamba2StateDevice {
    void *owner; /**< the backend that made it */
    /** Copy the device contents into the host arrays. 0 or -1. */
    int (*to_host)(struct Mamba2State *s, Mamba2Error *err);
    /** Free the device copy (and this struct); the host arrays are left as they are. */
    void (*release)(struct Mamba2State *s);
    /** Zero the device copy in place (a new sequence), keeping it on the device. */
    void (*zero)(struct Mamba2State *s);
} Mamba2StateDevice;

/** The state of one sequence. */
typedef struct Mamba2State {
    int64_t pos; /**< tokens consumed so far */
    float *conv; /**< [L, conv_dim, K−1] */
    float *ssm;  /**< [L, H, P, N] */
    size_t conv_len; /**< elements in @ref conv */
    size_t ssm_len;  /**< elements in @ref ssm */
    Mamba2StateDevice *device; /**< non-NULL while a backend holds the current contents */
} Mamba2State;

/**
 * @brief Make the host arrays current: if a backend holds the state, copy it back and drop its copy.
 *
 * Every host-side user (the ref and cpu forward passes, save, copy) calls this first.
 * @return 0, or -1 when the copy back fails.
 */
int mamba2_state_sync(Mamba2State *s, Mamba2Error *err);

/** Allocate a zeroed state for @p cfg (the start of a sequence). 0 on success. */
int mamba2_state_init(Mamba2State *s, const Mamba2Config *cfg, Mamba2Error *err);
/**
 * @brief Check that @p s is a state for a model of config @p cfg: both arrays present and of the
 *        lengths mamba2_state_init() gives them.
 * @return 0, or -1 with the lengths found and expected.
 */
int mamba2_state_check_shape(const Mamba2State *s, const Mamba2Config *cfg, Mamba2Error *err);

/** Zero the state (start a new sequence) without reallocating; a device-held copy is zeroed where it is. */
void mamba2_state_reset(Mamba2State *s);
/** Copy @p src into @p dst (same config), syncing @p src to the host first. 0 or -1. */
int mamba2_state_copy(Mamba2State *dst, Mamba2State *src, Mamba2Error *err);
/** Free the state's buffers (safe on a zeroed state). */
void mamba2_state_free(Mamba2State *s);

/**
 * @brief Write the state to @p path (format version 2, laid out in model/state.c): a header with the
 *        model's shapes, its config and checkpoint identities and the position, the data, and a crc32
 *        of everything before it.
 *
 * Written to a temporary beside it made by mkstemp() (PATH.XXXXXX, mode 0600: a state holds what the
 * prompt said) and renamed, so a failure leaves nothing half-written and no existing file or symlink
 * is ever opened.
 * @return 0 on success, -1 with the reason (also when the position is outside [0, MAMBA2_STATE_MAX_POS]).
 */
int mamba2_state_save(Mamba2State *s, const Mamba2Config *cfg, const char *path, Mamba2Error *err);

/**
 * @brief Write the state file of mamba2_state_save() to the open descriptor @p fd, from its current
 *        offset, for callers that made the file themselves (the program's output files).
 * @param s    the state (synced to the host first)
 * @param cfg  its model's config
 * @param fd   a descriptor open for writing
 * @param name the file's name in messages
 * @param err  the reason on failure
 * @return 0, or -1 with the reason; what was written before a failure stays: the caller removes it.
 */
int mamba2_state_write_fd(Mamba2State *s, const Mamba2Config *cfg, int fd, const char *name, Mamba2Error *err);

/**
 * @brief Read a state saved by mamba2_state_save() into @p s (already initialised for @p cfg).
 *
 * The file must be a regular file (a FIFO is refused without blocking). On failure @p s is left as it was.
 * @return 0 on success; -1 when the file is unreadable, truncated, of another version (version 1
 *         included: it has no checksum), damaged (checksum mismatch), made for a model of another
 *         shape (the message names the differing field), configuration or checkpoint, holds a
 *         position outside [0, MAMBA2_STATE_MAX_POS], or holds a NaN or infinity.
 */
int mamba2_state_load(Mamba2State *s, const Mamba2Config *cfg, const char *path, Mamba2Error *err);

/**
 * @brief The config identity written into state files: crc32 (zlib) of every config field that
 *        changes what the model computes (shapes, eps, dt limits, tied embeddings, conv bias).
 */
uint32_t mamba2_state_config_id(const Mamba2Config *cfg);

#endif
