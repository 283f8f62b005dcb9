/**
 * @file error.h
 * @brief Error reporting shared by every part of the program.
 *
 * Functions that can fail take a `Mamba2Error *` as their last argument, return
 * a non-zero value on failure and leave a one-line, human-readable message in
 * it (naming the file, the tensor, the expected and the actual value where that
 * applies). Nothing in the library prints or exits on its own.
 */
#ifndef MAMBA2_ERROR_H
#define MAMBA2_ERROR_H

#include <stddef.h>

/** A message describing why a call failed. */
typedef struct {
    char msg[1024]; /**< NUL-terminated, empty when no error occurred. */
} Mamba2Error;

/**
 * @brief Format a message into @p err (printf-style) and return -1.
 *
 * Lets a failing function write `return mamba2_fail(err, "...", ...);`.
 * @p err may be NULL, in which case the message is dropped.
 */
int mamba2_fail(Mamba2Error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/**
 * @brief Prepend context ("while loading X: ") to the message already in @p err; return -1.
 */
int mamba2_fail_context(Mamba2Error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
