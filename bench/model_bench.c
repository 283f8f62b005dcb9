/**
 * @file model_bench.c
 * @brief Whole-model benchmark of any backend, beside the roofline measured in the same run.
 *
 * - prefill: T prompt tokens, tokens/s and TFLOP/s at 2·params FLOP per token, against the GEMM rate;
 * - decode: B sequences one token at a time (CUDA-graph replays on the GPU), tokens/s and the
 *   effective bandwidth (weight bytes + state bytes moved per step / time), against the copy bandwidth;
 * - positions: decode speed and memory after 1k .. 64k tokens of context (constant-size state);
 * - mem-limit: the largest batch whose weights + states + work space fit under a cap.
 *
 * usage: build/bench_model DIR [--backend gpu] [--prompt-len 4096] [--gen-len 64] [--batch 1,64]
 *                            [--state-bf16] [--positions 1024,...] [--mem-limit GB,...] [--json FILE]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"

#ifdef MAMBA2_HAVE_GPU
#include <cuda_runtime_api.h>
#endif

static double gpu_used_gib(void) {
#ifdef MAMBA2_HAVE_GPU
    size_t free_b, total_b;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) return (total_b - free_b) / 1073741824.0;
#endif
    return 0;
}

static void fill_tokens(int32_t *t, int n, int V, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = 3 + (int32_t)((seed >> 8) % (unsigned)(V - 3));
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of @p reps prefills of T tokens from an empty state (after one warm-up). */
static double time_prefill(Mamba2Backend *b, Mamba2State *st, const int32_t *tok, int T, float *logits, int reps,
                           Mamba2Error *e) {
    double t[16];
    for (int r = -1; r < reps; r++) {
        mamba2_state_reset(st);
        double t0 = cli_now();
        if (mamba2_backend_prefill(b, st, tok, T, logits, 0, e)) return -1;
        if (r >= 0) t[r] = cli_now() - t0;
    }
    qsort(t, reps, sizeof *t, cmp_double);
    return t[reps / 2];
}

/* Seconds per decode step of nb sequences (after warm-up steps, which also build the graph).
 * The time is the engine's: step() with its logits copied back to the host. Choosing the next token
 * from them (an argmax over B x V floats on the host) is left out of the timed loop; the next tokens
 * follow a fixed pseudo-random sequence instead. */
static double time_decode(Mamba2Backend *b, Mamba2State **states, int nb, int steps, float *logits, Mamba2Error *e) {
    int32_t *tok = malloc(nb * sizeof *tok);
    fill_tokens(tok, nb, b->model->cfg.vocab_size, 7);
    double t0 = 0;
    for (int s = -4; s < steps; s++) {
        if (s == 0) t0 = cli_now();
        if (mamba2_backend_step(b, states, tok, nb, logits, e)) {
            free(tok);
            return -1;
        }
        for (int i = 0; i < nb; i++) tok[i] = 3 + (tok[i] * 7 + 11) % (b->model->cfg.vocab_size - 3);
    }
    free(tok);
    return (cli_now() - t0) / steps;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"backend", 1, 0, 'b'},   {"prompt-len", 1, 0, 'p'}, {"gen-len", 1, 0, 'g'},
                                         {"batch", 1, 0, 'B'},     {"state-bf16", 0, 0, 's'}, {"positions", 1, 0, 'P'},
                                         {"mem-limit", 1, 0, 'm'}, {"json", 1, 0, 'j'},       {"threads", 1, 0, 't'},
                                         {0, 0, 0, 0}};
    const char *backend = "gpu", *batches = "1", *positions = NULL, *limits = NULL, *json_path = NULL;
    int prompt = 4096, gen = 64, state_bf16 = 0, threads = 0, c;
    long v;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) switch (c) {
        case 'b': backend = optarg; break;
        case 'p': if (cli_parse_int("--prompt-len", optarg, 1, 1 << 20, &v)) return 2; prompt = (int)v; break;
        case 'g': if (cli_parse_int("--gen-len", optarg, 1, 1 << 20, &v)) return 2; gen = (int)v; break;
        case 'B': batches = optarg; break;
        case 's': state_bf16 = 1; break;
        case 'P': positions = optarg; break;
        case 'm': limits = optarg; break;
        case 'j': json_path = optarg; break;
        case 't': if (cli_parse_int("--threads", optarg, 1, 4096, &v)) return 2; threads = (int)v; break;
        default: fprintf(stderr, "see the usage at the top of bench/model_bench.c\n"); return 2;
        }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: bench_model DIR [--backend gpu] [--prompt-len N] [--gen-len M] [--batch 1,64] "
                        "[--state-bf16] [--positions 1024,..] [--mem-limit GB,..] [--json FILE]\n");
        return 2;
    }
    /* the lists, checked before anything is loaded */
    double bl[16], pl[16], ml[8];
    int nbl = cli_parse_list("--batch", batches, bl, 16, 1, 4096, 1);
    int npl = positions ? cli_parse_list("--positions", positions, pl, 16, 1, 1e9, 1) : 0;
    int nml = limits ? cli_parse_list("--mem-limit", limits, ml, 8, 0.001, 1e6, 0) : 0;
    if (nbl < 0 || npl < 0 || nml < 0) return 2;
    Mamba2Model m;
    if (cli_load_model(argv[optind], &m)) return 1;
    const Mamba2Config *cfg = &m.cfg;
    Mamba2Error e = {{0}};
    Mamba2BackendOptions o = {0};
    o.n_threads = threads;
    o.state_bf16 = state_bf16;
    Mamba2Backend *b;
    double t_load = cli_now();
    if (mamba2_backend_create(backend, &m, &o, &b, &e)) return cli_error("bench", 1, "%s", e.msg);
    t_load = cli_now() - t_load;
    FILE *js = json_path ? fopen(json_path, "w") : NULL;

    /* the ceilings */
    double bw = 0, gemm = 0;
    if (b->roofline && b->roofline(b, &bw, &gemm, &e)) return cli_error("bench", 1, "roofline: %s", e.msg);
    long long params = mamba2_config_param_count(cfg);
    double emb_bytes = (double)cfg->vocab_size * cfg->d_model * mamba2_dtype_size(m.w.embeddings.dtype);
    double weight_bytes = 0;
    for (int t = 0; t < 3; t++) weight_bytes += (double)mamba2_model_weight_bytes(&m, (Mamba2DType)t);
    /* decode reads every weight once per step, except the embedding table (one row per sequence) */
    double step_weight_bytes = weight_bytes - (cfg->tie_embeddings ? 0 : emb_bytes);
    double state_bytes = (double)mamba2_config_state_bytes(cfg), ssm_frac = (double)cfg->n_heads * cfg->head_dim *
                                                                              cfg->d_state /
                                                                              (cfg->n_heads * cfg->head_dim * cfg->d_state +
                                                                               (double)cfg->conv_dim * (cfg->d_conv - 1));
    double dev_state_bytes = state_bytes * (state_bf16 ? (1 - ssm_frac / 2) : 1);
    printf("backend %s, %s: %lld parameters, %.2f GB of weights, upload %.1f s\n", b->name, argv[optind], params,
           weight_bytes / 1e9, t_load);
    if (bw > 0)
        printf("ceilings measured now: read bandwidth %.0f GB/s, GEMM %.1f TFLOP/s -> decode <= %.1f tok/s, "
               "prefill <= %.0f tok/s\n",
               bw, gemm / 1e3, bw * 1e9 / step_weight_bytes, gemm * 1e9 / (2.0 * params));
    if (js) fprintf(js, "{\"backend\": \"%s\", \"params\": %lld, \"weight_bytes\": %.0f, \"read_gbps\": %.1f, \"gemm_gflops\": %.1f, \"state_bf16\": %d",
                    b->name, params, weight_bytes, bw, gemm, state_bf16);

    /* prefill */
    int n_tok = prompt > 16 ? prompt : 16; /* the prompt, and at least the 16 tokens decode starts from */
    int32_t *tok = malloc((size_t)n_tok * sizeof *tok);
    /* in the memory the backend writes fastest, as a program using the library would have it */
    float *logits = mamba2_backend_logits_alloc(b, (size_t)cfg->vocab_size * 256, &e);
    if (!tok || !logits) return cli_error("bench", 1, "%s", logits ? "out of memory" : e.msg);
    fill_tokens(tok, n_tok, cfg->vocab_size, 1);
    Mamba2State st;
    if (mamba2_state_init(&st, cfg, &e)) return cli_error("bench", 1, "%s", e.msg);
    double tp = time_prefill(b, &st, tok, prompt, logits, 3, &e);
    if (tp < 0) return cli_error("bench", 1, "prefill: %s", e.msg);
    double flops = 2.0 * params * prompt / tp;
    printf("\nprefill %d tokens: %.1f ms, %.0f tok/s, %.1f TFLOP/s", prompt, tp * 1e3, prompt / tp, flops / 1e12);
    if (gemm > 0) printf(" = %.0f%% of the GEMM ceiling", 100 * flops / (gemm * 1e9));
    printf("\n");
    if (js) fprintf(js, ", \"prefill\": {\"tokens\": %d, \"ms\": %.3f, \"tok_s\": %.1f}", prompt, tp * 1e3, prompt / tp);

    /* decode at each batch size */
    if (js) fprintf(js, ", \"decode\": [");
    printf("\n%6s %10s %10s %10s %9s %10s\n", "batch", "ms/step", "tok/s", "GB/s", "of copy", "GPU GiB");
    for (int k = 0; k < nbl; k++) {
        int nb = (int)bl[k];
        Mamba2State *sts = calloc(nb, sizeof *sts);
        Mamba2State **ptrs = calloc(nb, sizeof *ptrs);
        for (int i = 0; i < nb; i++) {
            if (mamba2_state_init(&sts[i], cfg, &e)) return cli_error("bench", 1, "%s", e.msg);
            ptrs[i] = &sts[i];
            if (mamba2_backend_prefill(b, &sts[i], tok, 16, NULL, 0, &e)) return cli_error("bench", 1, "%s", e.msg);
        }
        double ts = time_decode(b, ptrs, nb, gen, logits, &e);
        if (ts < 0) return cli_error("bench", 1, "decode: %s", e.msg);
        double bytes = step_weight_bytes + nb * 2.0 * dev_state_bytes; /* states read and written */
        printf("%6d %10.3f %10.1f %10.0f %8.0f%% %10.1f\n", nb, ts * 1e3, nb / ts, bytes / ts / 1e9,
               bw > 0 ? 100 * bytes / ts / 1e9 / bw : 0, gpu_used_gib());
        if (js) fprintf(js, "%s{\"batch\": %d, \"ms\": %.4f, \"tok_s\": %.1f, \"gbps\": %.1f}", k ? ", " : "", nb, ts * 1e3,
                        nb / ts, bytes / ts / 1e9);
        for (int i = 0; i < nb; i++) mamba2_state_free(&sts[i]);
        free(sts), free(ptrs);
    }
    if (js) fprintf(js, "]");

    /* decode after long contexts: the state has the same size at every position */
    if (positions) {
        int chunk = 4096;
        int32_t *ctx = malloc(chunk * sizeof *ctx);
        mamba2_state_reset(&st);
        printf("\n%9s %10s %10s %12s %10s\n", "position", "ms/token", "tok/s", "host RSS MiB", "GPU GiB");
        if (js) fprintf(js, ", \"positions\": [");
        for (int k = 0; k < npl; k++) {
            while (st.pos < (int64_t)pl[k]) { /* advance the context in prefill chunks */
                int n = (int)((int64_t)pl[k] - st.pos < chunk ? (int64_t)pl[k] - st.pos : chunk);
                fill_tokens(ctx, n, cfg->vocab_size, (unsigned)st.pos);
                if (mamba2_backend_prefill(b, &st, ctx, n, NULL, 0, &e)) return cli_error("bench", 1, "%s", e.msg);
            }
            Mamba2State *one = &st;
            int64_t at = st.pos;
            double ts = time_decode(b, &one, 1, gen, logits, &e);
            if (ts < 0) return cli_error("bench", 1, "%s", e.msg);
            printf("%9lld %10.3f %10.1f %12.0f %10.1f\n", (long long)at, ts * 1e3, 1 / ts, cli_peak_rss_mib(), gpu_used_gib());
            if (js) fprintf(js, "%s{\"position\": %lld, \"ms\": %.4f, \"gpu_gib\": %.2f}", k ? ", " : "", (long long)at, ts * 1e3, gpu_used_gib());
        }
        if (js) fprintf(js, "]");
        free(ctx);
    }

    /* memory caps: the largest batch whose states fit beside the weights and buffers already held */
    if (limits) {
        double base = gpu_used_gib() * 1073741824.0; /* weights + work space + prefill buffers, measured */
        printf("\n%10s %8s %10s %10s\n", "cap GB", "batch", "tok/s", "GPU GiB");
        if (js) fprintf(js, ", \"mem_limit\": [");
        for (int k = 0; k < nml; k++) {
            int nb = (int)((ml[k] * 1e9 - base - 512e6) / (dev_state_bytes + 8.0 * cfg->d_in_proj * 4));
            if (nb > 256) nb = 256;
            if (nb < 1) {
                printf("%10.0f %8s (weights alone need %.1f GB)\n", ml[k], "none", base / 1e9);
                continue;
            }
            Mamba2State *sts = calloc(nb, sizeof *sts);
            Mamba2State **ptrs = calloc(nb, sizeof *ptrs);
            for (int i = 0; i < nb; i++) {
                if (mamba2_state_init(&sts[i], cfg, &e)) return cli_error("bench", 1, "%s", e.msg);
                ptrs[i] = &sts[i];
            }
            double ts = time_decode(b, ptrs, nb, gen / 2 > 8 ? gen / 2 : 8, logits, &e);
            if (ts < 0) return cli_error("bench", 1, "%s", e.msg);
            double used = gpu_used_gib();
            printf("%10.0f %8d %10.1f %10.1f%s\n", ml[k], nb, nb / ts, used, used * 1.073741824 > ml[k] ? "  (over the cap!)" : "");
            if (js) fprintf(js, "%s{\"cap_gb\": %.0f, \"batch\": %d, \"tok_s\": %.1f, \"gpu_gib\": %.2f}", k ? ", " : "", ml[k], nb, nb / ts, used);
            for (int i = 0; i < nb; i++) mamba2_state_free(&sts[i]);
            free(sts), free(ptrs);
        }
        if (js) fprintf(js, "]");
    }
    if (js) {
        fprintf(js, "}\n");
        fclose(js);
    }
    printf("\npeak host RSS %.0f MiB\n", cli_peak_rss_mib());
    mamba2_state_free(&st);
    mamba2_backend_logits_free(b, logits);
    mamba2_backend_destroy(b);
    mamba2_model_free(&m);
    free(tok);
    return 0;
}
