/**
 * @file run_options.h
 * @brief The options every command that runs a model for text shares (`generate`, `chat`): the
 *        sampler's (--temperature ... --seed) and the backend's (--backend, -t, --weights,
 *        --precision), parsed, checked before any load and described in `--help` in one place.
 */
#ifndef MAMBA2_RUN_OPTIONS_H
#define MAMBA2_RUN_OPTIONS_H

#include <stdio.h>

#include "backend.h"
#include "sampler.h"

/** getopt_long() values of the shared long options (a command's own values stay below 1000). */
enum {
    CLI_OPT_TEMP = 1000,
    CLI_OPT_TOPK,
    CLI_OPT_TOPP,
    CLI_OPT_MINP,
    CLI_OPT_REP,
    CLI_OPT_REP_N,
    CLI_OPT_SEED,
    CLI_OPT_BACKEND,
    CLI_OPT_WEIGHTS,
    CLI_OPT_PRECISION
};

/** The shared entries of a command's `struct option` table (-t is also a short option: "t:"). */
#define CLI_RUN_LONG_OPTIONS                                                                                   \
    {"temperature", 1, 0, CLI_OPT_TEMP}, {"top-k", 1, 0, CLI_OPT_TOPK}, {"top-p", 1, 0, CLI_OPT_TOPP},          \
        {"min-p", 1, 0, CLI_OPT_MINP}, {"repeat-penalty", 1, 0, CLI_OPT_REP},                                   \
        {"repeat-last-n", 1, 0, CLI_OPT_REP_N}, {"seed", 1, 0, CLI_OPT_SEED}, {"backend", 1, 0, CLI_OPT_BACKEND}, \
        {"threads", 1, 0, 't'}, {"weights", 1, 0, CLI_OPT_WEIGHTS}, {"precision", 1, 0, CLI_OPT_PRECISION}

/** What the shared options asked for. */
typedef struct {
    Mamba2SamplerConfig sc;  /**< the sampler (greedy by default; repetition window 64) */
    int seed_given;          /**< 1 when --seed gave a seed (not -1) */
    const char *backend;     /**< --backend, or NULL: the fastest that starts here */
    Mamba2BackendOptions bo; /**< --threads, --weights, --precision */
} CliRunOptions;

/** The defaults: greedy, no filter, no penalty (window 64 when one is set), the default backend. */
void cli_run_options_init(CliRunOptions *o);

/**
 * @brief Take option @p c (a getopt_long() value) with its argument @p arg when it is a shared one.
 * @return 1 when it was one and its value is good, 0 when @p c is not a shared option, -1 after
 *         printing a usage error ("mamba2 CMD: ...", then "see 'mamba2 CMD --help'").
 */
int cli_run_option(const char *cmd, int c, const char *arg, CliRunOptions *o);

/**
 * @brief Once every option is parsed, before anything is loaded: check the backend's name and its
 *        options and the sampler's values, warn about sampler options that greedy decoding ignores,
 *        and draw (and print) a seed for a sampled run given none.
 * @return 0, or 2 after printing the usage error.
 */
int cli_run_options_check(const char *cmd, CliRunOptions *o);

/** Print the `--help` lines of the sampler's options. */
void cli_help_sampler(FILE *f);

/** Print the `--help` lines of --backend, -t, --weights and --precision. */
void cli_help_backend(FILE *f);

#endif
