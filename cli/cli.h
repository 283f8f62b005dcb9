/**
 * @file cli.h
 * @brief Helpers shared by the sub-commands: argument parsing, loading with messages, safe output files.
 */
#ifndef MAMBA2_CLI_H
#define MAMBA2_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "model.h"
#include "tokenizer.h"

/**
 * @brief Parse token ids separated by spaces or commas ("1 2, 3").
 * @param s    the text
 * @param ids  out: malloc'd array (caller frees)
 * @param n    out: number of ids
 * @param err  the reason on failure
 * @return 0, or -1 with a message naming the offending word.
 */
int cli_parse_ids(const char *s, int32_t **ids, int *n, Mamba2Error *err);

/** Parse a whole decimal number in [lo, hi] from @p s for option @p opt; print why not and return -1. */
int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);

/**
 * @brief Parse a comma-separated list of numbers for option @p opt ("1,4,64"; "24,72.5").
 * @param opt     the option's name, for the message ("--batch")
 * @param s       the option's argument
 * @param out     receives the values
 * @param max     the most values @p out holds
 * @param lo      the smallest value allowed
 * @param hi      the largest value allowed
 * @param integer 1 when only whole numbers are allowed
 * @return how many values, or -1 after printing which item is wrong (or that there are too many).
 */
int cli_parse_list(const char *opt, const char *s, double *out, int max, double lo, double hi, int integer);

/**
 * @brief Parse `--weights stored|bf16|q8|q4` ("bf16" is a synonym of "stored").
 * @return 0, or 2 (a usage error) after printing what is allowed.
 */
int cli_parse_weights(const char *cmd, const char *s, Mamba2WeightFormat *out);

/**
 * @brief Parse `--precision default|fast`.
 * @return 0, or 2 (a usage error) after printing what is allowed.
 */
int cli_parse_precision(const char *cmd, const char *s, Mamba2Precision *out);

/** The lines of `--help` that describe --weights and --precision (shared by every command that runs a model). */
#define CLI_HELP_WEIGHTS                                                                                             \
    "  --weights F        cpu backend: stored (default: the checkpoint's bf16/f16/f32), q8 (int8, one\n"          \
    "                     scale per 64 weights) or q4 (4-bit, one per 32), quantized at load (nothing is\n"       \
    "                     written); gpu backend: stored or q8 (the same q8)\n"                                    \
    "  --precision P      cpu backend: default (within 1e-3 of ref) or fast (activations rounded to bf16\n"        \
    "                     once in the prefill GEMMs, as llama.cpp does)\n"

/**
 * @brief mamba2_backend_create() for a command: a progress bar on stderr while the backend prepares
 *        its weights (when stderr is a terminal), and one line saying how long quantizing took.
 * @return 0, or -1 with the reason in @p err.
 */
int cli_create_backend(const char *cmd, const char *name, const Mamba2Model *m, Mamba2BackendOptions *opt,
                       Mamba2Backend **out, Mamba2Error *err);

/**
 * @brief Load a checkpoint, printing the error (and the norm_before_gate note) to stderr.
 * @return 0 on success, -1 after printing the reason.
 */
int cli_load_model(const char *dir, Mamba2Model *m);

/**
 * @brief Refuse a tokenizer whose ids do not all have a row in the model's embedding.
 *
 * Every command that turns text into ids for a model calls it before the first token runs (a
 * tokenizer with fewer ids than the model is fine: vocabularies are often padded).
 * @return 0, or -1 with a message naming the tokenizer file, the model directory and both sizes.
 */
int cli_check_tokenizer(const Mamba2Tokenizer *tok, const Mamba2Model *m, Mamba2Error *err);

/**
 * @brief The command being run ("generate"), set by main() before it runs one; messages of the
 *        shared helpers start with "mamba2 CMD: ".
 */
extern const char *cli_command;

/**
 * @brief Print "mamba2 CMD: message" to stderr and return @p status (for `return cli_error(...)`).
 *
 * A usage error (@p status 2) adds a second line, "see 'mamba2 CMD --help'".
 */
int cli_error(const char *cmd, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/**
 * @brief The usage error for what getopt_long() returned when opterr is 0 and the option string
 *        starts with ':': an unknown option ('?') or an option without its value (':').
 * @return 2, after printing which option was wrong.
 */
int cli_option_error(const char *cmd, int c, char **argv);

/**
 * @brief Check that exactly one positional argument (@p what, e.g. "DIR") follows the options.
 * @return 0, or 2 after saying that it is missing or which argument is extra.
 */
int cli_one_positional(const char *cmd, int argc, char **argv, const char *what);

/**
 * @brief Pick the backend for @p cmd: @p name when given, else the fastest built in that starts
 *        here (gpu, then cpu, then ref; gpu is skipped when @p opt asks for cpu-only weights or
 *        precision), creating it like cli_create_backend() and saying on stderr which one runs.
 * @return 0, or -1 with the reason in @p err.
 */
int cli_create_default_backend(const char *cmd, const char *name, const Mamba2Model *m, Mamba2BackendOptions *opt,
                               Mamba2Backend **out, Mamba2Error *err);

/**
 * @brief Check --backend and the cpu-only options before anything is loaded.
 * @param cmd  the command, for the message
 * @param name the backend given, or NULL for the default
 * @param opt  the backend options given (--weights, --precision)
 * @return 0, or 2 after printing what is wrong.
 */
int cli_check_backend(const char *cmd, const char *name, const Mamba2BackendOptions *opt);

/**
 * @brief Check, before any work, that the input file @p path given with option @p opt exists and is
 *        a regular file (a state file for --state-in: not a directory, a FIFO or a device).
 * @return 0, or 1 after printing "mamba2 CMD: OPT: what is wrong (PATH)".
 */
int cli_check_input_file(const char *cmd, const char *opt, const char *path);

/**
 * @brief All of standard input in a heap buffer (the caller frees it), its length in @p len.
 * @return the buffer, or NULL when out of memory.
 */
char *cli_read_stdin(long *len);

/** Seconds on a monotonic clock. */
double cli_now(void);

/** Peak resident memory of this process in MiB (from getrusage). */
double cli_peak_rss_mib(void);

#endif
