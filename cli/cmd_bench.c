/**
 * @file cmd_bench.c
 * @brief `mamba2 bench`: prefill and decode speed of any backend, beside the roofline measured in the same run.
 *
 * - prefill: T prompt tokens from an empty state; tokens/s and GFLOP/s, counting the FLOP of the
 *   weight matrices every token goes through, 2·L·(d_in_proj·d + d·d_in) per token, plus lm_head
 *   once (the SSD's own work is not counted, so the figure is a lower bound of what runs);
 * - decode: B sequences one token at a time; tokens/s and effective GB/s = bytes moved per step
 *   (every weight once, lm_head included; per sequence one embedding row, and its state read and
 *   written: the traffic bench/model_bench.c counts too) / time per step;
 * - peak resident memory (getrusage).
 *
 * With --roofline the backend's roofline hook measures the read bandwidth and the GEMM rate
 * before every timed repetition, so that the ceilings and the speeds come from the same minutes
 * of a machine whose bandwidth may drift (shared hosts); the median of those measurements is the
 * ceiling each figure is divided by. Decode also gets "paired": the median over repetitions of each
 * one's bandwidth divided by the read bandwidth measured just before it, which a host whose bandwidth
 * moves between repetitions skews less than the ratio of the two medians. Timed figures are medians
 * over --reps repetitions after a warm-up run, printed with the fastest and the slowest repetition
 * beside them (on a shared host the spread says how far to trust the median). With --phases the
 * backend's phase clock (Mamba2Backend::step_phases) splits the timed decode steps by phase.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "resources.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: mamba2 bench DIR [options]\n\n"
            "Time prefill and decode of a backend on the checkpoint in DIR (random token ids).\n\n"
            "options:\n"
            "  --backend NAME     %s (default: the fastest that starts here)\n"
            "  --prompt-len N     prefill tokens (default 512)\n"
            "  --gen-len M        decode steps per timed repetition (default 16)\n"
            "  --batch B[,B2..]   sequences decoded together (default 1)\n"
            "  --reps R           timed repetitions of each measurement (default 3; median reported)\n"
            "  -t, --threads N    CPU threads (default: OMP_NUM_THREADS or all cores)\n"
            CLI_HELP_WEIGHTS
            "  --roofline         also measure the read bandwidth and the GEMM rate, before every\n"
            "                     repetition, and print each figure as a fraction of its ceiling\n"
            "                     (decode's \"paired\": each repetition against the read just before it)\n"
            "  --phases           also split decode's time by phase (in_proj, SSD step, ...), each\n"
            "                     phase ending where the threads meet (backends with a phase clock)\n"
            "  --no-prefill       skip the prefill measurement\n"
            "  --json             print one JSON object instead of the table\n"
            "  -h, --help         this text\n",
            mamba2_backend_names());
}

/** Tokens of the prompt each sequence of the decode measurement starts from. */
#define DECODE_PROMPT 16
#define MAX_BATCHES 64 /* sizes in one --batch list */

/* Deterministic token ids in [3, V) (a linear congruential sequence). */
static void fill_tokens(int32_t *t, int n, int V, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = V > 3 ? 3 + (int32_t)((seed >> 8) % (unsigned)(V - 3)) : (int32_t)(seed % (unsigned)V);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/** The ceilings measured before each repetition. */
typedef struct {
    int n;          /**< measurements so far */
    double bw[64];  /**< read bandwidth, GB/s */
    double gemm[64]; /**< GEMM rate, GFLOP/s */
} Ceilings;

static int measure_ceilings(Mamba2Backend *b, Ceilings *c, Mamba2Error *e) {
    if (!b->roofline || c->n >= 64) return 0;
    if (b->roofline(b, &c->bw[c->n], &c->gemm[c->n], e)) return -1;
    c->n++;
    return 0;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {{"backend", 1, 0, 'b'}, {"prompt-len", 1, 0, 'p'}, {"gen-len", 1, 0, 'g'},
                                         {"batch", 1, 0, 'B'},   {"reps", 1, 0, 'r'},       {"threads", 1, 0, 't'},
                                         {"roofline", 0, 0, 'R'}, {"no-prefill", 0, 0, 'P'}, {"json", 0, 0, 'j'},
                                         {"help", 0, 0, 'h'},    {"weights", 1, 0, 'w'},    {"precision", 1, 0, 'Q'},
                                         {"phases", 0, 0, 'F'},  {0, 0, 0, 0}};
    Mamba2BackendOptions o = {0};
    const char *backend = NULL, *batches = "1"; /* NULL: the fastest that starts here */
    long prompt = 512, gen = 16, reps = 3, threads = 0;
    int roofline = 0, json = 0, do_prefill = 1, phases = 0, c;
    optind = 1;
    opterr = 0; /* unknown options are reported by cli_option_error(), in this program's voice */
    while ((c = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': backend = optarg; break;
        case 'p': if (cli_parse_int("--prompt-len", optarg, 1, 1 << 20, &prompt)) return 2; break;
        case 'g': if (cli_parse_int("--gen-len", optarg, 1, 1 << 20, &gen)) return 2; break;
        case 'B': batches = optarg; break;
        case 'r': if (cli_parse_int("--reps", optarg, 1, 60, &reps)) return 2; break;
        case 't': if (cli_parse_int("--threads", optarg, 1, 4096, &threads)) return 2; break;
        case 'w': if (cli_parse_weights("bench", optarg, &o.weights)) return 2; break;
        case 'Q': if (cli_parse_precision("bench", optarg, &o.precision)) return 2; break;
        case 'R': roofline = 1; break;
        case 'P': do_prefill = 0; break;
        case 'F': phases = 1; break;
        case 'j': json = 1; break;
        case 'h': help(stdout); return 0;
        default: return cli_option_error("bench", c, argv);
        }
    }
    if (cli_one_positional("bench", argc, argv, "DIR") || cli_check_backend("bench", backend, &o)) return 2;
    double batch_values[MAX_BATCHES];
    int batch_list[MAX_BATCHES];
    Mamba2Error e = {{0}};
    int n_batches = cli_parse_list("--batch", batches, batch_values, MAX_BATCHES, 1, 4096, 1);
    if (n_batches < 0) return 2;
    for (int i = 0; i < n_batches; i++) batch_list[i] = (int)batch_values[i];

    Mamba2Model m;
    if (cli_load_model(argv[optind], &m)) return 1;
    const Mamba2Config *cfg = &m.cfg;
    int V = cfg->vocab_size, status = 1;
    o.n_threads = (int)threads;
    Mamba2Backend *b = NULL;
    int32_t *tok = NULL, *next = NULL;
    float *logits = NULL;
    Mamba2State *sts = NULL, **ptrs = NULL;
    int n_states = 0;
    Ceilings ceilings = {0};
    /* medians, and the fastest and slowest repetition (median() sorts: t[0] and t[reps - 1]) */
    double prefill_s = 0, prefill_lo = 0, prefill_hi = 0, *step_s = calloc(4 * (size_t)n_batches, sizeof *step_s);
    double *step_lo = step_s + n_batches, *step_hi = step_lo + n_batches;
    double *paired = step_hi + n_batches; /* [n_batches] decode: median of each repetition's GB/s over the read ceiling measured before it */
    Mamba2StepPhases *phase = calloc((size_t)n_batches, sizeof *phase); /* [n_batches] with --phases */
    /* Refuse up front a batch or a prompt that does not fit: B states, B rows of logits, and the
     * buffers of a prefill of the prompt (host paths) or of a batched step. */
    int most = 1;
    for (int i = 0; i < n_batches; i++) most = batch_list[i] > most ? batch_list[i] : most;
    char what[128];
    snprintf(what, sizeof what, "a batch of %d sequences and a prompt of %ld tokens", most, prompt);
    double host_work = backend && !strcmp(backend, "gpu") ? 0 : mamba2_forward_bytes(cfg, prompt > most ? (double)prompt : most);
    if (mamba2_check_memory(what, (double)most * ((double)mamba2_config_state_bytes(cfg) + 4.0 * V) + host_work, &e)) {
        cli_error("bench", 1, "%s", e.msg);
        goto done;
    }
    if (cli_create_default_backend("bench", backend, &m, &o, &b, &e)) {
        cli_error("bench", 1, "%s", e.msg);
        goto done;
    }
    if (roofline && !b->roofline) fprintf(stderr, "mamba2 bench: backend %s has no roofline hook\n", b->name);
    if (phases && !b->step_phases) fprintf(stderr, "mamba2 bench: backend %s has no phase clock\n", b->name);
    phases = phases && b->step_phases;

    /* What one token costs: FLOP of prefill, bytes of decode. */
    double mat_params = (double)cfg->n_layer * ((double)cfg->d_in_proj * cfg->d_model + (double)cfg->d_model * cfg->d_inner);
    double prefill_flop = 2.0 * mat_params * prompt + 2.0 * (double)V * cfg->d_model;
    double weight_bytes = 0, emb_bytes = (double)V * cfg->d_model * mamba2_dtype_size(m.w.embeddings.dtype);
    for (int t = 0; t < 3; t++) weight_bytes += (double)mamba2_model_weight_bytes(&m, (Mamba2DType)t);
    double step_base = weight_bytes - (cfg->tie_embeddings ? 0 : emb_bytes);
    /* + per sequence: one embedding row, and its state read and written */
    double per_seq = (double)cfg->d_model * mamba2_dtype_size(m.w.embeddings.dtype) +
                     2.0 * (double)mamba2_config_state_bytes(cfg);
    if (b->matrix_bytes) { /* the large matrices as the backend reads them (quantized: values + scales) */
        double stored = (double)mamba2_tensor_numel(&m.w.lm_head) * mamba2_dtype_size(m.w.lm_head.dtype);
        for (int l = 0; l < cfg->n_layer; l++) {
            const Mamba2LayerWeights *lw = &m.w.layers[l];
            stored += (double)mamba2_tensor_numel(&lw->in_proj) * mamba2_dtype_size(lw->in_proj.dtype) +
                      (double)mamba2_tensor_numel(&lw->out_proj) * mamba2_dtype_size(lw->out_proj.dtype);
        }
        step_base += b->matrix_bytes(b) - stored;
    }

    int max_b = 1;
    for (int i = 0; i < n_batches; i++) max_b = batch_list[i] > max_b ? batch_list[i] : max_b;
    tok = malloc((size_t)(prompt > DECODE_PROMPT ? prompt : DECODE_PROMPT) * sizeof *tok);
    next = malloc((size_t)max_b * sizeof *next);
    logits = mamba2_backend_logits_alloc(b, (size_t)V * max_b, &e); /* where the backend writes it fastest */
    sts = calloc(max_b, sizeof *sts);
    ptrs = calloc(max_b, sizeof *ptrs);
    if (!tok || !next || !logits || !sts || !ptrs || !step_s || !phase) {
        cli_error("bench", 1, "out of memory");
        goto done;
    }
    for (; n_states < max_b; n_states++) {
        if (mamba2_state_init(&sts[n_states], cfg, &e)) {
            cli_error("bench", 1, "%s", e.msg);
            goto done;
        }
        ptrs[n_states] = &sts[n_states];
    }
    fill_tokens(tok, (int)prompt, V, 1);

    /* prefill: one warm-up, then reps from an empty state */
    if (do_prefill) {
        double t[64];
        for (int r = -1; r < reps; r++) {
            if (roofline && r >= 0 && measure_ceilings(b, &ceilings, &e)) goto fail;
            mamba2_state_reset(&sts[0]);
            double t0 = cli_now();
            if (mamba2_backend_prefill(b, &sts[0], tok, (int)prompt, logits, 0, &e)) goto fail;
            if (r >= 0) t[r] = cli_now() - t0;
        }
        prefill_s = median(t, (int)reps), prefill_lo = t[0], prefill_hi = t[reps - 1];
    }

    /* decode: B sequences after a DECODE_PROMPT-token prompt each, greedy, gen steps per repetition */
    for (int k = 0; k < n_batches; k++) {
        int nb = batch_list[k];
        double t[64], ratio[64], bytes = step_base + nb * per_seq;
        for (int i = 0; i < nb; i++) {
            mamba2_state_reset(&sts[i]);
            fill_tokens(tok, DECODE_PROMPT, V, 100 + i);
            if (mamba2_backend_prefill(b, &sts[i], tok, DECODE_PROMPT, logits, 0, &e)) goto fail;
            next[i] = argmax(logits, V);
        }
        for (int r = -1; r < reps; r++) {
            if (roofline && r >= 0 && measure_ceilings(b, &ceilings, &e)) goto fail;
            if (phases && r == 0) b->step_phases(b, 1, NULL); /* the timed steps only */
            double t0 = cli_now();
            for (int s = 0; s < (r < 0 ? 2 : gen); s++) { /* warm-up: 2 steps */
                if (mamba2_backend_step(b, ptrs, next, nb, logits, &e)) goto fail;
                for (int i = 0; i < nb; i++) next[i] = argmax(logits + (size_t)i * V, V);
            }
            if (r >= 0) t[r] = (cli_now() - t0) / gen;
            if (r >= 0 && ceilings.n) ratio[r] = bytes / t[r] / 1e9 / ceilings.bw[ceilings.n - 1];
        }
        if (phases) b->step_phases(b, 0, &phase[k]);
        if (ceilings.n) paired[k] = median(ratio, (int)reps);
        step_s[k] = median(t, (int)reps), step_lo[k] = t[0], step_hi[k] = t[reps - 1];
    }
    fill_tokens(tok, (int)prompt, V, 1);

    double bw = 0, gemm = 0, bw_lo = 0, bw_hi = 0, gemm_lo = 0, gemm_hi = 0;
    if (ceilings.n) {
        double a[64], g[64];
        memcpy(a, ceilings.bw, sizeof a), memcpy(g, ceilings.gemm, sizeof g);
        bw = median(a, ceilings.n), gemm = median(g, ceilings.n);
        bw_lo = a[0], bw_hi = a[ceilings.n - 1], gemm_lo = g[0], gemm_hi = g[ceilings.n - 1];
    }
    double rss = cli_peak_rss_mib();
    Mamba2KernelNames kernels = {"none", "none"}; /* what the figures were measured with, as the backend says */
    if (b->kernels) b->kernels(b, &kernels);
    if (json) { /* the kernels keep their first keys, cpu_*, which the recorded results and bench/ read */
        printf("{\"backend\": \"%s\", \"dir\": \"%s\", \"n_layer\": %d, \"params\": %lld, \"weight_bytes\": %.0f", b->name,
               argv[optind], cfg->n_layer, mamba2_config_param_count(cfg), weight_bytes);
        printf(", \"threads\": %ld, \"weights\": \"%s\", \"precision\": \"%s\", \"cpu_gemv_isa\": \"%s\"", threads,
               mamba2_weight_format_name(o.weights), mamba2_precision_name(o.precision), kernels.gemv);
        if (ceilings.n)
            printf(", \"read_gbps\": %.2f, \"read_gbps_range\": [%.2f, %.2f], \"gemm_gflops\": %.2f, "
                   "\"gemm_gflops_range\": [%.2f, %.2f], \"cpu_gemm_kernel\": \"%s\"",
                   bw, bw_lo, bw_hi, gemm, gemm_lo, gemm_hi, kernels.gemm);
        if (do_prefill)
            printf(", \"prefill\": {\"tokens\": %ld, \"ms\": %.2f, \"ms_range\": [%.2f, %.2f], \"tok_s\": %.2f, "
                   "\"gflops\": %.2f%s",
                   prompt, prefill_s * 1e3, prefill_lo * 1e3, prefill_hi * 1e3, prompt / prefill_s,
                   prefill_flop / prefill_s / 1e9, ceilings.n ? "" : "}");
        if (do_prefill && ceilings.n) printf(", \"of_gemm\": %.4f}", prefill_flop / prefill_s / 1e9 / gemm);
        printf(", \"decode\": [");
        for (int k = 0; k < n_batches; k++) {
            double bytes = step_base + batch_list[k] * per_seq;
            printf("%s{\"batch\": %d, \"ms_per_step\": %.3f, \"ms_per_step_range\": [%.3f, %.3f], \"tok_s\": %.2f, "
                   "\"gbps\": %.2f",
                   k ? ", " : "", batch_list[k], step_s[k] * 1e3, step_lo[k] * 1e3, step_hi[k] * 1e3,
                   batch_list[k] / step_s[k], bytes / step_s[k] / 1e9);
            if (ceilings.n) printf(", \"of_read\": %.4f, \"of_read_paired\": %.4f", bytes / step_s[k] / 1e9 / bw, paired[k]);
            for (int i = 0; phases && i < phase[k].n; i++) /* mean ms per step over all the timed steps */
                printf("%s\"%s\": %.4f%s", i ? ", " : ", \"phases_ms\": {", phase[k].name[i],
                       1e3 * phase[k].seconds[i] / (phase[k].steps ? phase[k].steps : 1), i == phase[k].n - 1 ? "}" : "");
            printf("}");
        }
        printf("], \"peak_rss_mib\": %.0f}\n", rss);
    } else {
        printf("backend %s, %s: %d layers, %lld parameters, %.3f GB of weights, %.3f GB moved per decode step of "
               "one sequence (weights, its state read and written)\n",
               b->name, argv[optind], cfg->n_layer, mamba2_config_param_count(cfg), weight_bytes / 1e9,
               (step_base + per_seq) / 1e9);
        if (ceilings.n)
            printf("ceilings (median of %d measurements in this run): read %.1f GB/s [%.1f .. %.1f], "
                   "GEMM %.1f GFLOP/s [%.1f .. %.1f] (GEMM: %s; decode products: %s)\n",
                   ceilings.n, bw, bw_lo, bw_hi, gemm, gemm_lo, gemm_hi, kernels.gemm, kernels.gemv);
        if (do_prefill) {
            printf("prefill %ld tokens: %.1f ms [%.1f .. %.1f], %.1f tok/s, %.1f GFLOP/s (%.2f GFLOP/token: the layers' "
                   "weight matrices)",
                   prompt, prefill_s * 1e3, prefill_lo * 1e3, prefill_hi * 1e3, prompt / prefill_s,
                   prefill_flop / prefill_s / 1e9, prefill_flop / prompt / 1e9);
            if (ceilings.n) printf(" = %.0f%% of the GEMM ceiling", 100 * prefill_flop / prefill_s / 1e9 / gemm);
            if (b->kernels) printf(" (GEMM: %s)", kernels.gemm);
            printf("\n");
        }
        printf("%6s %10s %21s %10s %10s %10s%s\n", "batch", "ms/step", "[fastest .. slowest]", "tok/s", "GB/s", "of read",
               ceilings.n ? "     paired" : "");
        for (int k = 0; k < n_batches; k++) {
            double bytes = step_base + batch_list[k] * per_seq, gbps = bytes / step_s[k] / 1e9;
            printf("%6d %10.2f   [%7.2f .. %7.2f] %10.2f %10.2f", batch_list[k], step_s[k] * 1e3, step_lo[k] * 1e3,
                   step_hi[k] * 1e3, batch_list[k] / step_s[k], gbps);
            if (ceilings.n) printf(" %9.0f%% %9.0f%%", 100 * gbps / bw, 100 * paired[k]);
            printf("\n");
        }
        for (int k = 0; phases && k < n_batches; k++) {
            double total = 0, per = phase[k].steps ? 1e3 / phase[k].steps : 0; /* mean ms per step */
            for (int i = 0; i < phase[k].n; i++) total += phase[k].seconds[i];
            printf("phases of batch %d, ms per step (share of the %ld steps' time):", batch_list[k], phase[k].steps);
            for (int i = 0; i < phase[k].n; i++)
                printf("%s %s %.3f (%.1f%%)", i ? "," : "", phase[k].name[i], phase[k].seconds[i] * per,
                       total > 0 ? 100 * phase[k].seconds[i] / total : 0);
            printf("\n");
        }
        printf("peak resident memory %.0f MiB\n", rss);
    }
    status = 0;
    goto done;
fail:
    cli_error("bench", 1, "%s", e.msg);
done:
    for (int i = 0; i < n_states; i++) mamba2_state_free(&sts[i]);
    free(sts), free(ptrs), free(tok), free(next), free(step_s), free(phase);
    mamba2_backend_logits_free(b, logits);
    mamba2_backend_destroy(b);
    mamba2_model_free(&m);
    return status;
}
