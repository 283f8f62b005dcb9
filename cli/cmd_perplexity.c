/**
 * @file cmd_perplexity.c
 * @brief `mamba2 perplexity`: the mean negative log-likelihood of a text's tokens under a model,
 *        so that every backend, precision and weight format has a measured quality cost.
 *
 * The text is encoded with the model's tokenizer, BOS first, and the model predicts every token
 * after the BOS from the ones before it. By default the whole text is one sequence: a Mamba-2's
 * context is its fixed-size state, so carrying the state costs nothing and every token sees all of
 * the text before it, as in `mamba2 generate`. With --ctx N the state is reset every N tokens
 * instead (windows of N + 1 tokens that overlap by one, so every token is still predicted exactly
 * once), the protocol of data/train_demo_model.py's validation loss (N = 512 there).
 *
 * Memory: the tokens run through the backend's prefill in slices of --chunk tokens that continue
 * the same state, with the logits of every position of one slice only ([chunk, V] floats), never
 * [T, V] for the whole text. Each row's log-softmax is computed in double.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "resources.h"
#include "tokenizer.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: mamba2 perplexity DIR --file TEXT [options]\n\n"
            "Mean negative log-likelihood (nats/token) and perplexity = exp(mean NLL) of the tokens of TEXT\n"
            "under the model in DIR: TEXT is encoded with DIR's tokenizer, BOS first, and every token after\n"
            "the BOS is scored on the model's prediction from the tokens before it (log-softmax in double).\n\n"
            "By default the whole text is ONE sequence: the state of a Mamba-2 is its whole context, of a\n"
            "fixed size, so carrying it costs nothing and every token is predicted from all of the text\n"
            "before it, as `mamba2 generate` would. --ctx N resets the state every N tokens instead (each\n"
            "window's first token is context only, so every token is still scored once), e.g. --ctx 512\n"
            "for the protocol of the validation loss of data/train_demo_model.py.\n"
            "The tokens run in prefill slices of --chunk tokens continuing the same state; only one slice's\n"
            "logits are held (chunk x vocabulary floats), never those of the whole text.\n\n"
            "options:\n"
            "  --file TEXT        the text to score (required)\n"
            "  --tokenizer PATH   tokenizer file or directory (default: DIR)\n"
            "  --max-tokens N     score only the first N tokens after the BOS (default: all)\n"
            "  --ctx N            reset the state every N tokens (default 0: the text is one sequence)\n"
            "  --chunk N          tokens per prefill slice (default 512; memory, not the result)\n"
            "  --backend NAME     %s (default: the fastest that starts here)\n"
            "  -t, --threads N    CPU threads (default: OMP_NUM_THREADS or all cores)\n"
            CLI_HELP_WEIGHTS
            "  --json             print one JSON object instead of the lines of text\n"
            "  -h, --help         this text\n"
            "Exit status: 0, 1 when the text, the tokenizer or the model cannot be used (named), 2 on a\n"
            "usage error (before anything is loaded).\n",
            mamba2_backend_names());
}

/** -log softmax(row)[target], in double (max subtracted before exp, so no overflow). */
static double token_nll(const float *row, int V, int32_t target) {
    float mx = row[0];
    for (int i = 1; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    return log(sum) + mx - (double)row[target];
}

/** Print @p s as a JSON string (quotes, backslashes and control characters escaped). */
static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

int cmd_perplexity(int argc, char **argv) {
    enum { O_FILE = 256, O_TOKENIZER, O_MAX, O_CTX, O_CHUNK, O_BACKEND, O_THREADS, O_WEIGHTS, O_PRECISION, O_JSON };
    static const struct option opts[] = {
        {"file", 1, 0, O_FILE},       {"tokenizer", 1, 0, O_TOKENIZER}, {"max-tokens", 1, 0, O_MAX},
        {"ctx", 1, 0, O_CTX},         {"chunk", 1, 0, O_CHUNK},         {"backend", 1, 0, O_BACKEND},
        {"threads", 1, 0, 't'}, {"weights", 1, 0, O_WEIGHTS},     {"precision", 1, 0, O_PRECISION},
        {"json", 0, 0, O_JSON},       {"help", 0, 0, 'h'},              {0, 0, 0, 0}};
    Mamba2BackendOptions bo = {0};
    const char *file = NULL, *tok_path = NULL;
    const char *backend = NULL; /* the fastest that starts here */
    long max_tokens = 0, ctx = 0, chunk = 512, threads = 0;
    int json = 0, c;
    optind = 1;
    opterr = 0; /* unknown options are reported by cli_option_error(), in this program's voice */
    while ((c = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1) {
        switch (c) {
        case O_FILE: file = optarg; break;
        case O_TOKENIZER: tok_path = optarg; break;
        case O_MAX: if (cli_parse_int("--max-tokens", optarg, 1, 0x7fffffff, &max_tokens)) return 2; break;
        case O_CTX: if (cli_parse_int("--ctx", optarg, 0, 0x7fffffff, &ctx)) return 2; break;
        case O_CHUNK: if (cli_parse_int("--chunk", optarg, 1, 1 << 20, &chunk)) return 2; break;
        case O_BACKEND: backend = optarg; break;
        case 't': if (cli_parse_int("--threads", optarg, 1, 4096, &threads)) return 2; break;
        case O_WEIGHTS: if (cli_parse_weights("perplexity", optarg, &bo.weights)) return 2; break;
        case O_PRECISION: if (cli_parse_precision("perplexity", optarg, &bo.precision)) return 2; break;
        case O_JSON: json = 1; break;
        case 'h': help(stdout); return 0;
        default: return cli_option_error("perplexity", c, argv);
        }
    }
    if (cli_one_positional("perplexity", argc, argv, "DIR")) return 2;
    if (!file) return cli_error("perplexity", 2, "--file TEXT is required");
    /* the backends refuse a wrong one when created, i.e. after loading the model: say so now */
    if (cli_check_backend("perplexity", backend, &bo)) return 2;
    const char *dir = argv[optind];
    bo.n_threads = (int)threads;

    Mamba2Error err = {{0}};
    int status = 1, have_model = 0;
    long len = 0;
    char *text = NULL;
    Mamba2Tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    Mamba2Model m;
    Mamba2Backend *b = NULL;
    Mamba2State st = {0};
    float *logits = NULL;

    /* ---- the text, its tokens (before the model: a wrong file is found in milliseconds) */
    if (!(text = mamba2_read_file(file, &len, &err))) {
        cli_error("perplexity", 1, "%s", err.msg);
        goto done;
    }
    if (len == 0) {
        cli_error("perplexity", 1, "%s: the file is empty (nothing to score)", file);
        goto done;
    }
    if (!(tok = mamba2_tokenizer_load(tok_path ? tok_path : dir, &err)) ||
        mamba2_tokenizer_encode(tok, text, (size_t)len, 1, &ids, &n_ids, &err)) {
        cli_error("perplexity", 1, "%s", err.msg);
        goto done;
    }
    if (n_ids < 2) { /* a tokenizer without BOS, and a one-token text */
        cli_error("perplexity", 1, "%s: %zu token(s): nothing to predict (the first token is context only)", file,
                  n_ids);
        goto done;
    }
    if (n_ids - 1 > 0x7fffffff) {
        cli_error("perplexity", 1, "%s: %zu tokens, more than this program scores in one run (use --max-tokens)",
                  file, n_ids);
        goto done;
    }
    /* scored tokens: ids[1 .. n_pred], each from input positions up to the one before it */
    long n_pred = (long)n_ids - 1;
    if (max_tokens && n_pred > max_tokens) n_pred = max_tokens;

    /* ---- the model and the backend */
    if (cli_load_model(dir, &m)) goto done;
    have_model = 1;
    if (cli_check_tokenizer(tok, &m, &err)) {
        cli_error("perplexity", 1, "%s", err.msg);
        goto done;
    }
    int V = m.cfg.vocab_size;
    long slice = chunk < n_pred ? chunk : n_pred;
    if (ctx && slice > ctx) slice = ctx;
    char what[96];
    snprintf(what, sizeof what, "prefill slices of %ld tokens with their logits", slice);
    if (mamba2_check_memory(what, 4.0 * V * (double)slice + (double)mamba2_config_state_bytes(&m.cfg) +
                                      (backend && !strcmp(backend, "gpu") ? 0 : mamba2_forward_bytes(&m.cfg, (double)slice)),
                            &err) ||
        cli_create_default_backend("perplexity", backend, &m, &bo, &b, &err) || mamba2_state_init(&st, &m.cfg, &err)) {
        cli_error("perplexity", 1, "%s", err.msg);
        goto done;
    }
    if (!(logits = malloc((size_t)V * (size_t)slice * sizeof *logits))) {
        cli_error("perplexity", 1, "out of memory");
        goto done;
    }

    /* ---- the scores: input position p predicts ids[p + 1] */
    double t0 = cli_now(), nll = 0;
    for (long p = 0; p < n_pred;) {
        if (ctx && p % ctx == 0) mamba2_state_reset(&st); /* a window starts from an empty state */
        long n = n_pred - p < slice ? n_pred - p : slice;
        if (ctx && n > ctx - p % ctx) n = ctx - p % ctx; /* a slice never crosses a window's end */
        if (mamba2_backend_prefill(b, &st, ids + p, (int)n, logits, 1, &err)) {
            cli_error("perplexity", 1, "%s", err.msg);
            goto done;
        }
        for (long i = 0; i < n; i++) nll += token_nll(logits + (size_t)i * V, V, ids[p + i + 1]);
        p += n;
    }
    double secs = cli_now() - t0, mean = nll / (double)n_pred;

    if (json) {
        printf("{\"file\": ");
        json_string(file);
        printf(", \"dir\": ");
        json_string(dir);
        printf(", \"backend\": \"%s\", \"weights\": \"%s\", \"precision\": \"%s\", \"threads\": %ld, \"ctx\": %ld, "
               "\"tokens\": %ld, \"file_tokens\": %zu, \"mean_nll\": %.10g, \"perplexity\": %.10g, "
               "\"bits_per_token\": %.10g, \"seconds\": %.3f, \"tok_s\": %.1f, \"peak_rss_mib\": %.0f}\n",
               b->name, mamba2_weight_format_name(bo.weights), mamba2_precision_name(bo.precision), threads, ctx,
               n_pred, n_ids, mean, exp(mean), mean / log(2.0), secs, n_pred / secs, cli_peak_rss_mib());
    } else {
        printf("%s under %s: backend %s, weights %s, precision %s\n", file, dir, b->name,
               mamba2_weight_format_name(bo.weights), mamba2_precision_name(bo.precision));
        printf("tokens scored  %ld (of %zu after the BOS; %s)\n", n_pred, n_ids - 1,
               ctx ? "the state reset every --ctx tokens" : "one sequence");
        if (ctx) printf("context        windows of %ld tokens\n", ctx);
        printf("mean NLL       %.6f nats/token (%.4f bits/token)\n", mean, mean / log(2.0));
        printf("perplexity     %.4f\n", exp(mean));
        printf("time           %.2f s (%.1f tokens/s), peak RSS %.0f MiB\n", secs, n_pred / secs, cli_peak_rss_mib());
    }
    status = 0;
done:
    free(logits);
    mamba2_state_free(&st);
    mamba2_backend_destroy(b);
    if (have_model) mamba2_model_free(&m);
    free(ids);
    mamba2_tokenizer_free(tok);
    free(text);
    return status;
}
