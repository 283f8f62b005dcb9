/**
 * @file cmd_generate.c
 * @brief `mamba2 generate`: prefill a prompt, then decode greedily one token at a time.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: mamba2 generate DIR --ids \"1 2 3 ...\" [-n N] [options]\n\n"
            "Prefill the prompt ids, then generate N tokens greedily (argmax) and print their ids.\n\n"
            "options:\n"
            "  --ids IDS         prompt token ids separated by spaces or commas (required)\n"
            "  -n, --max-tokens N  tokens to generate (default 16, at most 65536)\n"
            "  --backend NAME    %s (default ref)\n"
            "  --threads N       CPU threads for the cpu backend\n"
            "  --state-out FILE  save the state after the last token\n"
            "  -h, --help        this text\n"
            "Timings (prompt and generated tokens/s) and peak memory go to stderr.\n",
            mamba2_backend_names());
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {{"ids", 1, 0, 'i'},     {"max-tokens", 1, 0, 'n'}, {"backend", 1, 0, 'b'},
                                         {"threads", 1, 0, 't'}, {"state-out", 1, 0, 'S'},  {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *ids_text = NULL, *backend = "ref", *state_out = NULL;
    long n_gen = 16, threads = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': ids_text = optarg; break;
        case 'n': if (cli_parse_int("--max-tokens", optarg, 0, 65536, &n_gen)) return 2; break;
        case 'b': backend = optarg; break;
        case 't': if (cli_parse_int("--threads", optarg, 1, 4096, &threads)) return 2; break;
        case 'S': state_out = optarg; break;
        case 'h': help(stdout); return 0;
        default: help(stderr); return 2;
        }
    }
    if (optind != argc - 1 || !ids_text) {
        help(stderr);
        return 2;
    }
    Mamba2Error err = {{0}};
    int32_t *ids = NULL;
    int T = 0;
    if (cli_parse_ids(ids_text, &ids, &T, &err)) return cli_error("generate", 2, "--ids: %s", err.msg);

    int status = 1;
    Mamba2Model m;
    Mamba2Backend *b = NULL;
    Mamba2State st = {0};
    float *logits = NULL;
    Mamba2BackendOptions bo = {0};
    bo.n_threads = (int)threads;
    if (cli_load_model(argv[optind], &m)) {
        free(ids);
        return 1;
    }
    int V = m.cfg.vocab_size;
    if (mamba2_backend_create(backend, &m, &bo, &b, &err) || mamba2_state_init(&st, &m.cfg, &err)) {
        cli_error("generate", 1, "%s", err.msg);
        goto done;
    }
    if (!(logits = malloc((size_t)V * sizeof *logits))) {
        cli_error("generate", 1, "out of memory");
        goto done;
    }
    double t0 = cli_now();
    if (b->prefill(b, &st, ids, T, logits, 0, &err)) {
        cli_error("generate", 1, "%s", err.msg);
        goto done;
    }
    double t1 = cli_now();
    Mamba2State *one = &st;
    for (long i = 0; i < n_gen; i++) {
        int32_t next = argmax(logits, V);
        printf(i ? " %d" : "%d", next);
        fflush(stdout);
        if (i + 1 < n_gen && b->step(b, &one, &next, 1, logits, &err)) {
            putchar('\n');
            cli_error("generate", 1, "%s", err.msg);
            goto done;
        }
    }
    putchar('\n');
    double t2 = cli_now();
    fprintf(stderr, "[%s] prompt %d tokens in %.3f s (%.1f tok/s), generated %ld tokens in %.3f s (%.2f tok/s), peak RSS %.0f MiB\n",
            b->name, T, t1 - t0, T / (t1 - t0), n_gen, t2 - t1, n_gen > 1 ? (n_gen - 1) / (t2 - t1) : 0.0,
            cli_peak_rss_mib());
    if (state_out && mamba2_state_save(&st, &m.cfg, state_out, &err)) {
        cli_error("generate", 1, "%s", err.msg);
        goto done;
    }
    status = 0;
done:
    free(logits);
    free(ids);
    mamba2_state_free(&st);
    mamba2_backend_destroy(b);
    mamba2_model_free(&m);
    return status;
}
