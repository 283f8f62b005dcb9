/**
 * @file run_options.c
 * @brief The sampler's and the backend's options, shared by `generate` and `chat`.
 */
#include "run_options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_run_options_init(CliRunOptions *o) {
    memset(o, 0, sizeof *o);
    mamba2_sampler_defaults(&o->sc);
    o->sc.repetition_window = 64;
}

static int parse_float(const char *cmd, const char *opt, const char *s, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end) {
        cli_error(cmd, 2, "%s: '%s' is not a number", opt, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_run_option(const char *cmd, int c, const char *arg, CliRunOptions *o) {
    long v;
    Mamba2SamplerConfig *sc = &o->sc;
    switch (c) {
    case CLI_OPT_TEMP: return parse_float(cmd, "--temperature", arg, &sc->temperature) ? -1 : 1;
    case CLI_OPT_TOPP: return parse_float(cmd, "--top-p", arg, &sc->top_p) ? -1 : 1;
    case CLI_OPT_MINP: return parse_float(cmd, "--min-p", arg, &sc->min_p) ? -1 : 1;
    case CLI_OPT_REP: return parse_float(cmd, "--repeat-penalty", arg, &sc->repetition_penalty) ? -1 : 1;
    case CLI_OPT_TOPK:
        if (cli_parse_int("--top-k", arg, 0, 1 << 30, &v)) return -1;
        sc->top_k = (int)v;
        return 1;
    case CLI_OPT_REP_N:
        if (cli_parse_int("--repeat-last-n", arg, 0, 1 << 30, &v)) return -1;
        sc->repetition_window = (int)v;
        return 1;
    case CLI_OPT_SEED: {
        char *end;
        errno = 0;
        o->seed_given = strcmp(arg, "-1") != 0; /* -1: draw one, as llama.cpp does */
        if (o->seed_given) sc->seed = strtoull(arg, &end, 10);
        if (o->seed_given && (end == arg || *end || errno || arg[0] == '-')) {
            cli_error(cmd, 2, "--seed: '%s' is not a whole number >= 0 (or -1: draw one)", arg);
            return -1;
        }
        return 1;
    }
    case CLI_OPT_BACKEND: o->backend = arg; return 1;
    case 't':
        if (cli_parse_int("--threads", arg, 1, 4096, &v)) return -1;
        o->bo.n_threads = (int)v;
        return 1;
    case CLI_OPT_WEIGHTS: return cli_parse_weights(cmd, arg, &o->bo.weights) ? -1 : 1;
    case CLI_OPT_PRECISION: return cli_parse_precision(cmd, arg, &o->bo.precision) ? -1 : 1;
    default: return 0;
    }
}

/* A seed for a sampled run given none: from the kernel's random source, else the clock and the pid. */
static uint64_t draw_seed(void) {
    uint64_t seed = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&seed, sizeof seed, 1, f) != 1) seed = (uint64_t)(cli_now() * 1e9) ^ ((uint64_t)getpid() << 32);
    if (f) fclose(f);
    return seed >> 1; /* below 2^63: easy to type back, and never mistaken for -1 */
}

int cli_run_options_check(const char *cmd, CliRunOptions *o) {
    Mamba2SamplerConfig *sc = &o->sc;
    if (cli_check_backend(cmd, o->backend, &o->bo)) return 2;
    /* the sampler's values are checked now, before a model is loaded (a vocabulary of 1 for that) */
    Mamba2Sampler check;
    Mamba2Error e = {{0}};
    if (mamba2_sampler_init(&check, sc, 1, &e)) return cli_error(cmd, 2, "%s", e.msg);
    mamba2_sampler_free(&check);
    if (sc->temperature == 0 && (sc->top_k || sc->top_p != 1 || sc->min_p != 0 || o->seed_given))
        fprintf(stderr, "mamba2 %s: warning: --top-k, --top-p, --min-p and --seed have no effect when decoding "
                        "greedily (--temperature 0, the default)\n", cmd);
    if (sc->temperature > 0 && !o->seed_given) {
        sc->seed = draw_seed();
        fprintf(stderr, "mamba2 %s: seed %llu (--seed %llu repeats this run)\n", cmd, (unsigned long long)sc->seed,
                (unsigned long long)sc->seed);
    }
    return 0;
}

void cli_help_sampler(FILE *f) {
    fprintf(f, "  --temperature T       0: greedy (default); otherwise sample from softmax(logits / T)\n"
               "  --top-k K             keep the K most probable tokens (default 0: off)\n"
               "  --top-p P             nucleus sampling threshold (default 1: off)\n"
               "  --min-p P             keep tokens with p >= P * p_max (default 0: off)\n"
               "  --repeat-penalty R    penalise tokens seen in the last --repeat-last-n (default 1: off)\n"
               "  --repeat-last-n N     how many recent tokens the penalty looks at (default 64; 0: all)\n"
               "  --seed S              random seed of the sampler; -1 or none (when sampling): a seed is\n"
               "                        drawn and printed on stderr, so that the run can be repeated\n");
}

void cli_help_backend(FILE *f) {
    fprintf(f,
            "  --backend NAME        %s (default: the fastest that starts here,\n"
            "                        gpu, then cpu, then ref; printed on stderr)\n"
            "  -t, --threads N       CPU threads for the cpu backend\n"
            "  --weights F           stored (default), q8 or q4, quantized at load (gpu: stored or q8)\n"
            "  --precision P         cpu backend: default (within 1e-3 of ref) or fast (bf16 activations)\n",
            mamba2_backend_names());
}
