/**
 * @file output_file.h
 * @brief Writing an output file atomically: every command's outputs go through here.
 *
 * An output is written to a temporary file made by mkstemp() in the target's own directory
 * (created with O_EXCL, so a planted file or symlink is never opened), then renamed into place
 * by cli_output_commit(). Until then the target is untouched: a failure, or a SIGINT / SIGTERM /
 * SIGHUP (whose handler removes every registered temporary and re-raises the signal), leaves an
 * existing file as it was and no temporary behind. The path "-" means standard output where the
 * caller allows it.
 */
#ifndef MAMBA2_OUTPUT_FILE_H
#define MAMBA2_OUTPUT_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "error.h"
#include "config.h"
#include "state.h"

/** One output being written. */
typedef struct {
    const char *path; /**< the user's path ("-": standard output) */
    char tmp[4096];   /**< the temporary's path; empty for standard output or once committed or aborted */
    FILE *f;          /**< where to write (stdout for "-") */
} CliOutput;

/**
 * @brief Check, before any work, that @p path can be written: its directory exists, is a
 *        directory and is writable, and @p path itself is not a directory.
 * @param path      the user's path
 * @param allow_dash 1 when "-" (standard output) is allowed
 * @param err       the reason on failure
 * @return 0, or -1 with a message naming @p path and what is wrong.
 */
int cli_output_check(const char *path, int allow_dash, Mamba2Error *err);

/**
 * @brief Start writing @p path: create its temporary (registered for removal on a signal).
 * @return 0 with @p o->f open, or -1 with a message naming @p path.
 */
int cli_output_open(CliOutput *o, const char *path, Mamba2Error *err);

/**
 * @brief Finish: flush and close the temporary (every error checked), then rename it onto the path.
 *        For standard output, flush it and check for write errors.
 * @return 0, or -1 with the temporary removed and a message naming the path.
 */
int cli_output_commit(CliOutput *o, Mamba2Error *err);

/** Give up: close and remove the temporary (the target is left as it was). Safe to call twice. */
void cli_output_abort(CliOutput *o);

/**
 * @brief Write @p bytes bytes to @p path atomically (through cli_output_open() and cli_output_commit()).
 * @return 0, or -1 with the reason; on failure nothing is left behind and an existing file is kept.
 */
int cli_write_file(const char *path, const void *data, size_t bytes, Mamba2Error *err);

/**
 * @brief Save a state into the temporary of @p o (opened by cli_output_open()); cli_output_commit()
 *        then puts it in place.
 *
 * The file format is model/state.c's (mamba2_state_save()); only where it is written is decided here.
 * @return 0, or -1 with a message naming @p o->path.
 */
int cli_output_save_state(CliOutput *o, Mamba2State *st, const Mamba2Config *cfg, Mamba2Error *err);

/**
 * @brief Flush and close standard output, checking for errors (a full disk, a closed pipe's EIO).
 * @return 0, or 1 after printing "mamba2 CMD: cannot write standard output: REASON".
 */
int cli_close_stdout(const char *cmd);

#endif
