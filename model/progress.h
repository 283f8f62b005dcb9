/**
 * @file progress.h
 * @brief The progress callback of the library's long set-up work (reading the weights, quantizing
 *        them, uploading them to the GPU): the library never prints, the program draws the bar.
 */
#ifndef MAMBA2_PROGRESS_H
#define MAMBA2_PROGRESS_H

/**
 * @brief Reports progress of a long operation: @p done of @p total units (bytes, matrices), called
 *        with @p done rising and last with @p done equal to @p total.
 * @param ctx   the caller's pointer, given back
 * @param done  units done so far
 * @param total units in all
 * @param what  what is being done ("reading weights", "quantizing weights", "uploading weights")
 */
typedef void (*Mamba2Progress)(void *ctx, double done, double total, const char *what);

#endif
