/**
 * @file cmd_logits.c
 * @brief `mamba2 logits`: the logits of every position, as raw float32, for tests and outside checks.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "output_file.h"
#include "resources.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: mamba2 logits DIR --ids \"1 2 3 ...\" -o FILE [options]\n\n"
            "Run the token ids through the model and write the logits of every position to FILE\n"
            "as T x V little-endian float32 (row t = the distribution of token t+1).\n\n"
            "options:\n"
            "  --ids IDS          token ids separated by spaces or commas (required)\n"
            "  -o, --output FILE  where to write the logits (required; written atomically; \"-\": stdout)\n"
            "  --backend NAME     %s (default: the fastest that starts here)\n"
            "  --mode MODE        prefill: one call over the whole sequence (default)\n"
            "                     step: one token at a time through the decode path\n"
            "  --state-in FILE    continue from a saved state instead of an empty one\n"
            "  --state-out FILE   save the state after the last token\n"
            "  -t, --threads N    CPU threads for the cpu backend (default: all cores)\n"
            CLI_HELP_WEIGHTS
            "  -h, --help         this text\n",
            mamba2_backend_names());
}

int cmd_logits(int argc, char **argv) {
    static const struct option opts[] = {{"ids", 1, 0, 'i'},      {"output", 1, 0, 'o'},    {"backend", 1, 0, 'b'},
                                         {"mode", 1, 0, 'm'},     {"state-in", 1, 0, 's'},  {"state-out", 1, 0, 'S'},
                                         {"threads", 1, 0, 't'},  {"help", 0, 0, 'h'},      {"weights", 1, 0, 'w'},
                                         {"precision", 1, 0, 'P'}, {0, 0, 0, 0}};
    Mamba2BackendOptions bo = {0};
    const char *ids_text = NULL, *out = NULL, *backend = NULL, *mode = "prefill", *state_in = NULL,
               *state_out = NULL;
    long threads = 0;
    int c;
    optind = 1;
    opterr = 0; /* unknown options are reported by cli_option_error(), in this program's voice */
    while ((c = getopt_long(argc, argv, ":o:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': ids_text = optarg; break;
        case 'o': out = optarg; break;
        case 'b': backend = optarg; break;
        case 'm': mode = optarg; break;
        case 's': state_in = optarg; break;
        case 'S': state_out = optarg; break;
        case 't': if (cli_parse_int("--threads", optarg, 1, 4096, &threads)) return 2; break;
        case 'w': if (cli_parse_weights("logits", optarg, &bo.weights)) return 2; break;
        case 'P': if (cli_parse_precision("logits", optarg, &bo.precision)) return 2; break;
        case 'h': help(stdout); return 0;
        default: return cli_option_error("logits", c, argv);
        }
    }
    if (cli_one_positional("logits", argc, argv, "DIR")) return 2;
    if (!ids_text) return cli_error("logits", 2, "--ids is required");
    if (!out) return cli_error("logits", 2, "-o FILE is required (\"-\": standard output)");
    if (cli_check_backend("logits", backend, &bo)) return 2;
    int step_mode = !strcmp(mode, "step");
    if (!step_mode && strcmp(mode, "prefill")) return cli_error("logits", 2, "--mode must be prefill or step, not '%s'", mode);

    Mamba2Error err = {{0}};
    /* outputs checked before any work: a missing directory fails now, not after the run */
    if (cli_output_check(out, 1, &err) || (state_out && cli_output_check(state_out, 0, &err)))
        return cli_error("logits", 1, "%s", err.msg);
    if (state_in && cli_check_input_file("logits", "--state-in", state_in)) return 1;
    int32_t *ids = NULL;
    int T = 0;
    if (cli_parse_ids(ids_text, &ids, &T, &err)) return cli_error("logits", 2, "--ids: %s", err.msg);

    int status = 1;
    Mamba2Model m;
    Mamba2Backend *b = NULL;
    Mamba2State st = {0};
    float *logits = NULL;
    CliOutput lo = {0}, so = {0};
    bo.n_threads = (int)threads;
    if (cli_load_model(argv[optind], &m)) {
        free(ids);
        return 1;
    }
    size_t V = (size_t)m.cfg.vocab_size;
    /* Refuse up front what does not fit: the logits [T, V], the state (and its copy while loading or
     * running), and the work buffers of a forward pass on the host paths. */
    char what[128];
    snprintf(what, sizeof what, "%s %d tokens (%zu logits each)", step_mode ? "stepping through" : "a prefill of", T, V);
    double need = (double)T * V * sizeof *logits + 2.0 * (double)mamba2_config_state_bytes(&m.cfg) +
                  (backend && !strcmp(backend, "gpu") ? 0 : mamba2_forward_bytes(&m.cfg, step_mode ? 1 : T));
    if (mamba2_check_memory(what, need, &err)) {
        cli_error("logits", 1, "%s", err.msg);
        goto done;
    }
    if (cli_create_default_backend("logits", backend, &m, &bo, &b, &err) || mamba2_state_init(&st, &m.cfg, &err) ||
        (state_in && mamba2_state_load(&st, &m.cfg, state_in, &err))) {
        cli_error("logits", 1, "%s", err.msg);
        goto done;
    }
    if (!(logits = malloc((size_t)T * V * sizeof *logits))) {
        cli_error("logits", 1, "out of memory for %d x %zu logits", T, V);
        goto done;
    }
    int rc = 0;
    if (step_mode) {
        Mamba2State *one = &st;
        for (int t = 0; t < T && !rc; t++) rc = mamba2_backend_step(b, &one, &ids[t], 1, logits + t * V, &err);
    } else {
        rc = mamba2_backend_prefill(b, &st, ids, T, logits, 1, &err);
    }
    /* Both outputs are written to temporaries and renamed into place only when both are complete:
     * a failure leaves an existing -o or --state-out file as it was. */
    size_t bytes = (size_t)T * V * sizeof *logits;
    if (rc || cli_output_open(&lo, out, &err) || fwrite(logits, 1, bytes, lo.f) != bytes ||
        (state_out && (cli_output_open(&so, state_out, &err) || cli_output_save_state(&so, &st, &m.cfg, &err))) ||
        cli_output_commit(&lo, &err) || (state_out && cli_output_commit(&so, &err))) {
        if (!err.msg[0])
            mamba2_fail(&err, "cannot write %s: %s", strcmp(out, "-") ? out : "standard output", strerror(errno));
        cli_error("logits", 1, "%s", err.msg);
        goto done;
    }
    status = 0;
done:
    cli_output_abort(&lo);
    cli_output_abort(&so);
    free(logits);
    free(ids);
    mamba2_state_free(&st);
    mamba2_backend_destroy(b);
    mamba2_model_free(&m);
    return status;
}
