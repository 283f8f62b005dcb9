/**
 * @file cmd_check.c
 * @brief `mamba2 check`: the same tokens through every backend, compared with the reference layer by layer.
 *
 * For anyone holding real weights: it shows, per layer and for the logits, the relative L2 error
 * of each backend's residual stream against the reference, whether the argmax agrees at every
 * position, and whether a greedy continuation (prefill, then decode steps) gives the same tokens.
 * Generic over backend.h: a backend without prefill_observed is compared on the logits only.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "resources.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: mamba2 check DIR [options]\n\n"
            "Run the same token sequence through every backend and print, per layer and for the\n"
            "logits, the relative L2 error against the reference backend (ref), and whether the\n"
            "greedy tokens agree (argmax at every prompt position, and a greedy continuation made\n"
            "with the backend's own decode steps).\n\n"
            "options:\n"
            "  --backends LIST    backends to compare with ref (default: all built in: %s)\n"
            "  --tokens N         prompt length, deterministic pseudo-random ids (default 16)\n"
            "  --ids IDS          use these prompt ids instead\n"
            "  --gen N            greedy continuation length (default 8)\n"
            "  -t, --threads N    CPU threads for the cpu backend\n"
            CLI_HELP_WEIGHTS
            "  --tol X            logits relative L2 above X counts as a mismatch (default 2e-2)\n"
            "  -h, --help         this text\n"
            "Exit status 0 when every backend that ran agrees, 1 otherwise.\n",
            mamba2_backend_names());
}

/** Where the per-layer hook stores the residual stream. */
typedef struct {
    float *layers;    /**< [L, T, d] */
    size_t per_layer; /**< T·d */
} LayerStore;

static void store_layer(void *ctx, int layer, Mamba2LayerTensor which, const float *h, int T, int width) {
    LayerStore *s = ctx;
    if (which == MAMBA2_LAYER_OUTPUT) memcpy(s->layers + (size_t)layer * s->per_layer, h, s->per_layer * sizeof(float));
    (void)T, (void)width;
}

/* ‖a − b‖₂ / ‖b‖₂ over n values (+inf on NaN). */
static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    double r = den > 0 ? sqrt(num / den) : sqrt(num);
    return r == r ? r : INFINITY;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/** What one backend produced for the prompt. */
typedef struct {
    char name[32];     /**< backend name */
    int ran;           /**< 0: could not be created (reason printed) */
    int observed;      /**< per-layer streams available */
    float *layers;     /**< [L, T, d] */
    float *logits;     /**< [T, V] */
    int32_t *greedy;   /**< [gen] */
} Run;

/* Prompt (all positions, per layer when the backend can), then a greedy continuation of gen tokens. */
static int run_backend(Mamba2Backend *b, const Mamba2Model *m, const int32_t *ids, int T, int gen, Run *r,
                       Mamba2Error *e) {
    const Mamba2Config *c = &m->cfg;
    size_t V = (size_t)c->vocab_size;
    Mamba2State st;
    if (mamba2_state_init(&st, c, e)) return -1;
    int rc;
    if (b->prefill_observed) {
        LayerStore s = {r->layers, (size_t)T * c->d_model};
        rc = mamba2_backend_prefill_observed(b, &st, ids, T, r->logits, store_layer, &s, e);
        r->observed = 1;
    } else {
        rc = mamba2_backend_prefill(b, &st, ids, T, r->logits, 1, e);
    }
    float *lg = malloc(V * sizeof *lg);
    int32_t next = argmax(r->logits + (size_t)(T - 1) * V, (int)V);
    Mamba2State *one = &st;
    for (int k = 0; !rc && k < gen; k++) {
        r->greedy[k] = next;
        if (!lg) rc = mamba2_fail(e, "out of memory");
        else if (k + 1 < gen && !(rc = mamba2_backend_step(b, &one, &next, 1, lg, e))) next = argmax(lg, (int)V);
    }
    free(lg);
    mamba2_state_free(&st);
    return rc;
}

int cmd_check(int argc, char **argv) {
    static const struct option opts[] = {{"backends", 1, 0, 'b'}, {"tokens", 1, 0, 'n'}, {"ids", 1, 0, 'i'},
                                         {"gen", 1, 0, 'g'},      {"threads", 1, 0, 't'}, {"tol", 1, 0, 'T'},
                                         {"help", 0, 0, 'h'},     {"weights", 1, 0, 'w'},  {"precision", 1, 0, 'P'},
                                         {0, 0, 0, 0}};
    Mamba2BackendOptions o = {0}; /* for the backends compared with ref (ref itself runs with the defaults) */
    const char *list = mamba2_backend_names(), *ids_text = NULL;
    long n_tok = 16, gen = 8, threads = 0;
    double tol = 2e-2;
    int c;
    optind = 1;
    opterr = 0; /* unknown options are reported by cli_option_error(), in this program's voice */
    while ((c = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': list = optarg; break;
        case 'n': if (cli_parse_int("--tokens", optarg, 1, 1 << 16, &n_tok)) return 2; break;
        case 'i': ids_text = optarg; break;
        case 'g': if (cli_parse_int("--gen", optarg, 0, 4096, &gen)) return 2; break;
        case 't': if (cli_parse_int("--threads", optarg, 1, 4096, &threads)) return 2; break;
        case 'T': tol = atof(optarg); break;
        case 'w': if (cli_parse_weights("check", optarg, &o.weights)) return 2; break;
        case 'P': if (cli_parse_precision("check", optarg, &o.precision)) return 2; break;
        case 'h': help(stdout); return 0;
        default: return cli_option_error("check", c, argv);
        }
    }
    if (cli_one_positional("check", argc, argv, "DIR")) return 2;
    /* the backends: ref first (the reference), then the others of the list, each once */
    Run runs[8];
    int n_runs = 0;
    memset(runs, 0, sizeof runs);
    snprintf(runs[n_runs++].name, sizeof runs[0].name, "ref");
    for (const char *p = list; *p && n_runs < 8;) {
        size_t len = strcspn(p, ",");
        if (len && !(len == 3 && !strncmp(p, "ref", 3))) {
            char *name = runs[n_runs].name;
            snprintf(name, sizeof runs[0].name, "%.*s", (int)len, p);
            /* a typo is refused; a backend built but unusable here (no GPU) is skipped later */
            if (len >= sizeof runs[0].name || !mamba2_backend_exists(name))
                return cli_error("check", 2, "--backends: unknown backend '%.*s' (this build has: %s)", (int)len, p,
                                 mamba2_backend_names());
            n_runs++;
        }
        p += len + (p[len] == ',');
    }

    Mamba2Error e = {{0}};
    Mamba2Model m;
    if (cli_load_model(argv[optind], &m)) return 1;
    const Mamba2Config *cfg = &m.cfg;
    int V = cfg->vocab_size, L = cfg->n_layer, d = cfg->d_model, T = (int)n_tok, status = 1;
    int32_t *ids = NULL;
    if (ids_text) {
        if (cli_parse_ids(ids_text, &ids, &T, &e)) {
            mamba2_model_free(&m);
            return cli_error("check", 2, "--ids: %s", e.msg);
        }
    } else {
        ids = malloc((size_t)T * sizeof *ids);
        unsigned seed = 12345;
        for (int t = 0; ids && t < T; t++) {
            seed = seed * 1664525u + 1013904223u;
            ids[t] = (int32_t)((seed >> 8) % (unsigned)V);
        }
    }
    /* Up front: every backend keeps its per-layer streams [L, T, d] and logits [T, V]; one forward pass. */
    char what[96];
    snprintf(what, sizeof what, "checking %d backend%s on %d tokens", n_runs, n_runs == 1 ? "" : "s", T);
    if (mamba2_check_memory(what, 4.0 * n_runs * ((double)L * T * d + (double)T * V) + mamba2_forward_bytes(cfg, T), &e)) {
        cli_error("check", 1, "%s", e.msg);
        goto done;
    }
    o.n_threads = (int)threads;
    Mamba2BackendOptions ref_opt = {0};
    ref_opt.n_threads = (int)threads;
    for (int k = 0; k < n_runs; k++) {
        Run *r = &runs[k];
        Mamba2Backend *b = NULL;
        r->layers = malloc((size_t)L * T * d * sizeof(float));
        r->logits = malloc((size_t)T * V * sizeof(float));
        r->greedy = malloc((size_t)(gen ? gen : 1) * sizeof(int32_t));
        if (!ids || !r->layers || !r->logits || !r->greedy) {
            cli_error("check", 1, "out of memory for %d tokens", T);
            goto done;
        }
        fprintf(stderr, "mamba2 check: running %s ...\n", r->name);
        if (cli_create_backend("check", r->name, &m, strcmp(r->name, "ref") ? &o : &ref_opt, &b, &e)) {
            if (k == 0) {
                cli_error("check", 1, "%s", e.msg);
                goto done;
            }
            printf("%s: skipped (%s)\n", r->name, e.msg);
            continue;
        }
        int rc = run_backend(b, &m, ids, T, (int)gen, r, &e);
        mamba2_backend_destroy(b);
        if (rc) {
            cli_error("check", 1, "%s: %s", r->name, e.msg);
            goto done;
        }
        r->ran = 1;
    }

    /* the table: one column per backend compared with ref */
    Run *ref = &runs[0];
    printf("check %s: %d prompt tokens, %d greedy steps, relative L2 error against ref\n", argv[optind], T, (int)gen);
    printf("%-14s", "");
    for (int k = 1; k < n_runs; k++)
        if (runs[k].ran) printf(" %12s", runs[k].name);
    printf("\n");
    for (int l = 0; l < L; l++) {
        printf("layer %-8d", l);
        for (int k = 1; k < n_runs; k++) {
            if (!runs[k].ran) continue;
            if (runs[k].observed)
                printf(" %12.2e", rel_l2(runs[k].layers + (size_t)l * T * d, ref->layers + (size_t)l * T * d, (size_t)T * d));
            else printf(" %12s", "-");
        }
        printf("\n");
    }
    int all_ok = 1;
    double *err = calloc(n_runs, sizeof *err);
    int *arg_ok = calloc(n_runs, sizeof *arg_ok), *gr_ok = calloc(n_runs, sizeof *gr_ok);
    for (int k = 1; err && arg_ok && gr_ok && k < n_runs; k++) {
        if (!runs[k].ran) continue;
        err[k] = rel_l2(runs[k].logits, ref->logits, (size_t)T * V);
        for (int t = 0; t < T; t++)
            arg_ok[k] += argmax(runs[k].logits + (size_t)t * V, V) == argmax(ref->logits + (size_t)t * V, V);
        while (gr_ok[k] < gen && runs[k].greedy[gr_ok[k]] == ref->greedy[gr_ok[k]]) gr_ok[k]++;
    }
    if (!err || !arg_ok || !gr_ok) {
        cli_error("check", 1, "out of memory");
        free(err), free(arg_ok), free(gr_ok);
        goto done;
    }
    const char *rows[] = {"logits", "argmax equal", "greedy equal", "verdict"};
    for (int row = 0; row < 4; row++) {
        printf("%-14s", rows[row]);
        for (int k = 1; k < n_runs; k++) {
            if (!runs[k].ran) continue;
            char cell[64];
            int ok = err[k] <= tol && arg_ok[k] == T && gr_ok[k] == gen;
            if (row == 0) snprintf(cell, sizeof cell, "%.2e", err[k]);
            else if (row == 1) snprintf(cell, sizeof cell, "%d/%d", arg_ok[k], T);
            else if (row == 2) snprintf(cell, sizeof cell, "%d/%d", gr_ok[k], (int)gen);
            else snprintf(cell, sizeof cell, "%s", ok ? "ok" : "MISMATCH");
            if (row == 3) all_ok &= ok;
            printf(" %12s", cell);
        }
        printf("\n");
    }
    printf("ref greedy tokens:");
    for (int k = 0; k < gen; k++) printf(" %d", ref->greedy[k]);
    printf("\n");
    free(err), free(arg_ok), free(gr_ok);
    status = all_ok ? 0 : 1;
done:
    for (int k = 0; k < n_runs; k++) free(runs[k].layers), free(runs[k].logits), free(runs[k].greedy);
    free(ids);
    mamba2_model_free(&m);
    return status;
}
