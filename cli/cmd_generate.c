/**
 * @file cmd_generate.c
 * @brief `mamba2 generate`: prefill a prompt (text or ids), then decode one token at a time,
 *        greedy or sampled, printing text as it comes (or ids).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "cli.h"
#include "commands.h"
#include "config.h"
#include "output_file.h"
#include "run_options.h"
#include "resources.h"
#include "sampler.h"
#include "tokenizer.h"

/* The PromptCoT-Mamba chat template (issue 4): BOS (added by the tokenizer), then these around the prompt. */
#define CHAT_PRE "<|im_start|>user\n"
#define CHAT_REASON "\nPlease reason step by step, and put your final answer within \\boxed{}."
#define CHAT_POST "<|im_end|>\n<|im_start|>assistant\n<think>\n"
#define MAX_STOPS 8

static void help(FILE *f) {
    fprintf(f,
            "usage: mamba2 generate DIR (-p TEXT | --prompt-file FILE | --ids IDS) [-n N] [options]\n\n"
            "Prefill the prompt, then generate up to N tokens, greedily (the default) or sampled.\n"
            "A text prompt is encoded with DIR's tokenizer (BOS first, unless --no-bos or --state-in) and\n"
            "the text is printed as it is\n"
            "generated, after the prompt; with --ids the generated ids are printed instead.\n"
            "Generation stops after N tokens, at the end-of-sequence token or at a --stop string.\n\n"
            "prompt:\n"
            "  -p, --prompt TEXT     the prompt text\n"
            "  --prompt-file FILE    the prompt text from FILE (\"-\": standard input)\n"
            "  --ids IDS             prompt token ids separated by spaces or commas (no tokenizer needed)\n"
            "  --chat                wrap the prompt in the chat template: BOS <|im_start|>user\\nPROMPT\n"
            "                        Please reason step by step, ...<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\n"
            "                        (a tokenizer without those special tokens: a warning and\n"
            "                        \"User: PROMPT ...\\nAssistant: \")\n"
            "  --no-reasoning-suffix with --chat: leave out the \"Please reason step by step\" sentence\n"
            "  --no-bos              do not put the beginning-of-sequence token before a text prompt\n"
            "  --tokenizer PATH      tokenizer file or directory (default: DIR)\n"
            "  --no-echo             do not print the prompt text before the generated text\n"
            "generation:\n"
            "  -n, --max-tokens N    tokens to generate (default 256, at most 65536)\n"
            "  --stop TEXT           stop when the generated text contains TEXT (not printed; up to %d)\n"
            "  --ignore-eos          do not stop at the end-of-sequence token\n",
            MAX_STOPS);
    cli_help_sampler(f);
    fprintf(f, "running:\n");
    cli_help_backend(f);
    fprintf(f,
            "  --state-in FILE       continue from a state saved by --state-out (of logits or generate):\n"
            "                        the prompt follows the saved sequence (no BOS is added)\n"
            "  --state-out FILE      save the state after the prompt and every generated token (the last\n"
            "                        one is fed before saving, the one that completed a --stop string\n"
            "                        too; an end-of-sequence token is not), so that --state-in FILE with\n"
            "                        the next ids or text continues exactly as one uninterrupted run would\n"
            "  -h, --help            this text\n"
            "Timings go to stderr: load time, prompt tokens/s, time to the first generated token (prompt\n"
            "and first sample), generated tokens/s and ms/token, and peak memory;\n"
            "--json-stats FILE writes them to FILE as one JSON object.\n");
}

/**
 * Text output with --stop strings: the generated text is kept, and only the part that cannot be
 * the beginning of a stop string is printed; when a stop string appears, the text before it is
 * printed and generation ends.
 */
typedef struct {
    char *buf;                  /* all generated text */
    size_t n, cap, printed;     /* bytes held, allocated, already printed */
    const char *stop[MAX_STOPS];
    int n_stop;
} TextOut;

static int textout_add(TextOut *o, const char *s, size_t len) {
    if (o->n + len + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + len + 1) cap *= 2;
        char *p = realloc(o->buf, cap);
        if (!p) return -1;
        o->buf = p;
        o->cap = cap;
    }
    memcpy(o->buf + o->n, s, len);
    o->n += len;
    o->buf[o->n] = 0;
    return 0;
}

static void textout_print(TextOut *o, size_t upto) {
    if (upto > o->printed) {
        fwrite(o->buf + o->printed, 1, upto - o->printed, stdout);
        fflush(stdout);
        o->printed = upto;
    }
}

/* Print what is safe to print; 1 when a stop string has appeared (the text before it is printed). */
static int textout_flush(TextOut *o, int final) {
    size_t hold = 0;
    for (int i = 0; i < o->n_stop; i++) {
        size_t sl = strlen(o->stop[i]);
        size_t from = o->printed;
        const char *hit = NULL;
        /* search the unprinted text (a stop string never starts before what was printed) */
        for (size_t p = from; p + sl <= o->n && !hit; p++)
            if (!memcmp(o->buf + p, o->stop[i], sl)) hit = o->buf + p;
        if (hit) {
            textout_print(o, (size_t)(hit - o->buf));
            return 1;
        }
        /* longest tail of the text that is a proper prefix of this stop string */
        for (size_t k = sl - 1; k > hold && !final; k--)
            if (k <= o->n - o->printed && !memcmp(o->buf + o->n - k, o->stop[i], k)) {
                hold = k;
                break;
            }
    }
    textout_print(o, o->n - hold);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    enum { O_IDS = 256, O_STATE_IN, O_STATE_OUT, O_PROMPT_FILE, O_CHAT, O_NO_REASON, O_TOKENIZER, O_NO_ECHO, O_STOP,
           O_IGNORE_EOS, O_NO_BOS, O_JSON_STATS };
    static const struct option opts[] = {
        {"ids", 1, 0, O_IDS},           {"max-tokens", 1, 0, 'n'},       {"state-out", 1, 0, O_STATE_OUT},
        {"help", 0, 0, 'h'},            {"state-in", 1, 0, O_STATE_IN},
        {"prompt", 1, 0, 'p'},          {"prompt-file", 1, 0, O_PROMPT_FILE}, {"chat", 0, 0, O_CHAT},
        {"no-reasoning-suffix", 0, 0, O_NO_REASON}, {"tokenizer", 1, 0, O_TOKENIZER},
        {"no-echo", 0, 0, O_NO_ECHO},   {"stop", 1, 0, O_STOP},          {"ignore-eos", 0, 0, O_IGNORE_EOS},
        {"no-bos", 0, 0, O_NO_BOS},     {"json-stats", 1, 0, O_JSON_STATS}, CLI_RUN_LONG_OPTIONS, {0, 0, 0, 0}};
    CliRunOptions ro;
    const char *ids_text = NULL, *state_in = NULL, *state_out = NULL, *prompt = NULL, *prompt_file = NULL;
    const char *tok_path = NULL, *json_stats = NULL;
    long n_gen = 256;
    int chat = 0, reason = 1, echo = 1, ignore_eos = 0, no_bos = 0, c, r;
    TextOut out = {0};
    cli_run_options_init(&ro);
    optind = 1;
    opterr = 0; /* unknown options are reported by cli_option_error(), in this program's voice */
    while ((c = getopt_long(argc, argv, ":n:p:t:h", opts, NULL)) != -1) {
        if ((r = cli_run_option("generate", c, optarg, &ro))) {
            if (r < 0) return 2;
            continue;
        }
        switch (c) {
        case O_IDS: ids_text = optarg; break;
        case 'n': if (cli_parse_int("--max-tokens", optarg, 0, 65536, &n_gen)) return 2; break;
        case O_STATE_IN: state_in = optarg; break;
        case O_STATE_OUT: state_out = optarg; break;
        case 'p': prompt = optarg; break;
        case O_PROMPT_FILE: prompt_file = optarg; break;
        case O_CHAT: chat = 1; break;
        case O_NO_REASON: reason = 0; break;
        case O_TOKENIZER: tok_path = optarg; break;
        case O_NO_ECHO: echo = 0; break;
        case O_STOP:
            if (out.n_stop == MAX_STOPS) return cli_error("generate", 2, "at most %d --stop strings", MAX_STOPS);
            if (!*optarg) return cli_error("generate", 2, "--stop: empty string");
            out.stop[out.n_stop++] = optarg;
            break;
        case O_IGNORE_EOS: ignore_eos = 1; break;
        case O_NO_BOS: no_bos = 1; break;
        case O_JSON_STATS: json_stats = optarg; break;
        case 'h': help(stdout); return 0;
        default: return cli_option_error("generate", c, argv);
        }
    }
    if (cli_one_positional("generate", argc, argv, "DIR")) return 2;
    int n_prompts = (ids_text != NULL) + (prompt != NULL) + (prompt_file != NULL);
    if (n_prompts != 1)
        return cli_error("generate", 2, "give exactly one of -p, --prompt-file and --ids (%s)",
                         n_prompts ? "more than one given" : "no prompt");
    if (cli_run_options_check("generate", &ro)) return 2;
    const char *backend = ro.backend;
    Mamba2BackendOptions bo = ro.bo;
    Mamba2SamplerConfig sc = ro.sc;
    if (chat && ids_text) return cli_error("generate", 2, "--chat needs a text prompt (-p or --prompt-file)");
    if (!chat && !reason) return cli_error("generate", 2, "--no-reasoning-suffix goes with --chat");
    if (ids_text && out.n_stop) return cli_error("generate", 2, "--stop needs a text prompt (-p or --prompt-file)");
    if (ids_text && no_bos) return cli_error("generate", 2, "--no-bos goes with a text prompt (--ids are taken as given)");

    Mamba2Error err = {{0}};
    /* the output is checked before any work: a missing directory fails now, not after the run */
    if (state_out && cli_output_check(state_out, 0, &err)) return cli_error("generate", 1, "--state-out: %s", err.msg);
    if (state_in && cli_check_input_file("generate", "--state-in", state_in)) return 1;
    if (json_stats && cli_output_check(json_stats, 0, &err)) return cli_error("generate", 1, "--json-stats: %s", err.msg);
    int status = 1;
    CliOutput so = {0};
    int32_t *ids = NULL; /* prompt, then the generated tokens (the sampler's history) */
    int T = 0;
    char *file_text = NULL, *chat_text = NULL;
    long file_len = 0;
    Mamba2Tokenizer *tok = NULL;
    Mamba2Detokenizer dt;
    int have_dt = 0;
    Mamba2Sampler smp;
    int have_smp = 0;
    Mamba2Model m;
    int have_model = 0;
    Mamba2Backend *b = NULL;
    Mamba2State st = {0};
    float *logits = NULL;
    const char *dir = argv[optind];

    /* ---- the prompt */
    if (ids_text) {
        if (cli_parse_ids(ids_text, &ids, &T, &err)) return cli_error("generate", 2, "--ids: %s", err.msg);
    } else {
        const char *text = prompt;
        long len = prompt ? (long)strlen(prompt) : 0;
        if (prompt_file) {
            file_text = strcmp(prompt_file, "-") ? mamba2_read_file(prompt_file, &len, &err) : cli_read_stdin(&len);
            if (!file_text) return cli_error("generate", 1, "%s", err.msg[0] ? err.msg : "cannot read standard input");
            text = file_text;
            file_len = len;
        }
        if (!(tok = mamba2_tokenizer_load(tok_path ? tok_path : dir, &err))) {
            cli_error("generate", 1, "%s", err.msg);
            goto done;
        }
        CliChatTemplate tpl = {0};
        if (chat) {
            cli_chat_template_init(&tpl, tok);
            if (!tpl.chatml)
                fprintf(stderr, "mamba2 generate: warning: %s has no <|im_start|> and <|im_end|> special tokens, so this "
                                "model has no chat template; --chat writes \"User: PROMPT\\nAssistant: \"\n",
                        mamba2_tokenizer_source(tok));
            /* the user's text (and the reasoning sentence), inside the markers when they are special tokens */
            const char *pre = tpl.chatml ? CHAT_PRE : "", *post = tpl.chatml ? CHAT_POST : "";
            size_t n = strlen(pre) + (size_t)len + strlen(CHAT_REASON) + strlen(post) + 1;
            if (!(chat_text = malloc(n))) goto oom;
            const char *parts[] = {pre, text, reason ? CHAT_REASON : "", post};
            size_t k = 0;
            for (int i = 0; i < 4; i++) {
                size_t pl = i == 1 ? (size_t)len : strlen(parts[i]);
                memcpy(chat_text + k, parts[i], pl);
                k += pl;
            }
            chat_text[k] = 0;
            text = chat_text;
            len = (long)k;
        }
        size_t n = 0;
        /* BOS starts a sequence: not before a prompt that continues a saved one */
        if (chat && !tpl.chatml
                ? cli_chat_turn_ids(&tpl, tok, text, (size_t)len, !no_bos && !state_in, &ids, &n, &err)
                : mamba2_tokenizer_encode(tok, text, (size_t)len, !no_bos && !state_in, &ids, &n, &err)) {
            cli_error("generate", 1, "%s", err.msg);
            goto done;
        }
        if (n > 0x7fffffff - 65536) {
            cli_error("generate", 1, "prompt too long (%zu tokens)", n);
            goto done;
        }
        T = (int)n;
        if (mamba2_detok_init(&dt, tok, &err)) {
            cli_error("generate", 1, "%s", err.msg);
            goto done;
        }
        have_dt = 1;
    }
    if (T == 0) {
        cli_error("generate", 2, "the prompt has no tokens");
        goto done;
    }
    int32_t *grown = realloc(ids, ((size_t)T + (size_t)n_gen + 1) * sizeof *ids);
    if (!grown) goto oom;
    ids = grown;

    /* ---- the model, the backend, the sampler */
    double t_load = cli_now(); /* loading: the checkpoint, the backend (upload, quantization), the state */
    if (cli_load_model(dir, &m)) goto done;
    have_model = 1;
    int V = m.cfg.vocab_size;
    for (int i = 0; i < T; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            status = cli_error("generate", 2, "prompt token %d is outside the vocabulary (size %d)", (int)ids[i], V);
            goto done;
        }
    int32_t eos = tok ? mamba2_tokenizer_eos(tok) : m.cfg.eos_token_id;
    int32_t im_end = (tok && chat) ? mamba2_tokenizer_piece_id(tok, "<|im_end|>", 10) : -1;
    if (ignore_eos) eos = -1;
    char what[96];
    snprintf(what, sizeof what, "a prompt of %d tokens", T);
    if (mamba2_check_memory(what, 4.0 * V + 2.0 * (double)mamba2_config_state_bytes(&m.cfg) +
                                      (backend && !strcmp(backend, "gpu") ? 0 : mamba2_forward_bytes(&m.cfg, T)), &err)) {
        cli_error("generate", 1, "%s", err.msg);
        goto done;
    }
    if (cli_create_default_backend("generate", backend, &m, &bo, &b, &err) || mamba2_state_init(&st, &m.cfg, &err) ||
        (state_in && mamba2_state_load(&st, &m.cfg, state_in, &err)) || mamba2_sampler_init(&smp, &sc, V, &err)) {
        cli_error("generate", 1, "%s", err.msg);
        goto done;
    }
    have_smp = 1;
    if (!(logits = mamba2_backend_logits_alloc(b, (size_t)V, &err))) { /* where the backend writes them fastest */
        cli_error("generate", 1, "%s", err.msg);
        goto done;
    }

    /* ---- prefill, then one step per token (a plain text prompt is printed first) */
    if (tok && echo && !chat) {
        fwrite(prompt_file ? file_text : prompt, 1, prompt_file ? (size_t)file_len : strlen(prompt), stdout);
        fflush(stdout);
    }
    double t0 = cli_now(), t_first = 0;
    t_load = t0 - t_load;
    if (mamba2_backend_prefill(b, &st, ids, T, logits, 0, &err)) {
        cli_error("generate", 1, "%s", err.msg);
        goto done;
    }
    double t1 = cli_now();
    Mamba2State *one = &st;
    long n_done = 0, n_steps = 0;
    int32_t pending = -1; /* the last token sampled and printed but not yet fed to the model */
    const char *why = "length";
    for (long i = 0; i < n_gen; i++) {
        int32_t next = mamba2_sampler_sample(&smp, logits, ids, (size_t)(T + i));
        ids[T + i] = next;
        n_done++;
        if (i == 0) t_first = cli_now() - t0; /* prompt in, first token sampled */
        if (next == eos || next == im_end) {
            why = next == eos ? "end of sequence" : "<|im_end|>";
            break;
        }
        pending = next;
        if (!tok) {
            printf(i ? " %d" : "%d", next);
            fflush(stdout);
        } else {
            const char *piece;
            size_t plen;
            if (mamba2_detok_push(&dt, next, &piece, &plen, &err)) {
                cli_error("generate", 1, "%s", err.msg);
                goto done;
            }
            if (textout_add(&out, piece, plen)) goto oom;
            if (textout_flush(&out, 0)) {
                why = "stop string";
                break;
            }
        }
        if (ferror(stdout)) { /* a full disk or a closed terminal: stop now, not after n tokens */
            why = "an error writing standard output";
            break;
        }
        if (i + 1 < n_gen) {
            if (mamba2_backend_step(b, &one, &next, 1, logits, &err)) {
                putchar('\n');
                cli_error("generate", 1, "%s", err.msg);
                goto done;
            }
            pending = -1;
            n_steps++;
        }
    }
    if (tok && strcmp(why, "stop string")) {
        const char *piece;
        size_t plen;
        mamba2_detok_finish(&dt, &piece, &plen);
        if (textout_add(&out, piece, plen)) goto oom;
        if (textout_flush(&out, 1)) why = "stop string";
    }
    putchar('\n');
    fflush(stdout);
    double t2 = cli_now();
    fprintf(stderr,
            "[%s] load %.2f s, prompt %d tokens in %.3f s (%.1f tok/s), first token after %.3f s, generated %ld "
            "tokens in %.3f s (%.2f tok/s, %.1f ms/token), stopped by %s, peak RSS %.0f MiB\n",
            b->name, t_load, T, t1 - t0, T / (t1 - t0), t_first, n_done, t2 - t1,
            n_steps > 0 ? n_steps / (t2 - t1) : 0.0, n_steps > 0 ? 1e3 * (t2 - t1) / n_steps : 0.0, why,
            cli_peak_rss_mib());
    if (ferror(stdout)) {
        cli_error("generate", 1, "cannot write standard output: %s", strerror(errno ? errno : EIO));
        goto done;
    }
    if (state_out) {
        /* The saved state is the one after every token printed: the last sampled token was never fed
         * (no step follows it), so feed it now; --state-in with the next ids or text then continues
         * exactly as an uninterrupted run. End-of-sequence tokens are not printed and not fed. */
        if (pending >= 0 && mamba2_backend_step(b, &one, &pending, 1, logits, &err)) {
            cli_error("generate", 1, "%s", err.msg);
            goto done;
        }
        if (cli_output_open(&so, state_out, &err) || cli_output_save_state(&so, &st, &m.cfg, &err) ||
            cli_output_commit(&so, &err)) {
            cli_error("generate", 1, "--state-out: %s", err.msg);
            goto done;
        }
    }
    if (json_stats) { /* the timing line's figures, for scripts */
        char js[1024], seed_text[32] = "null"; /* greedy: no seed was used */
        if (sc.temperature > 0) snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)sc.seed);
        int n = snprintf(js, sizeof js,
                         "{\"backend\": \"%s\", \"load_s\": %.6f, \"prompt_tokens\": %d, \"prompt_s\": %.6f, "
                         "\"first_token_s\": %.6f, \"generated_tokens\": %ld, \"generate_s\": %.6f, "
                         "\"tok_per_s\": %.4f, \"ms_per_token\": %.4f, \"stopped_by\": \"%s\", "
                         "\"peak_rss_mib\": %.1f, \"seed\": %s}\n",
                         b->name, t_load, T, t1 - t0, t_first, n_done, t2 - t1,
                         n_steps > 0 ? n_steps / (t2 - t1) : 0.0, n_steps > 0 ? 1e3 * (t2 - t1) / n_steps : 0.0, why,
                         cli_peak_rss_mib(), seed_text);
        if (cli_write_file(json_stats, js, (size_t)n, &err)) {
            cli_error("generate", 1, "--json-stats: %s", err.msg);
            goto done;
        }
    }
    status = 0;
    goto done;
oom:
    cli_error("generate", 1, "out of memory");
done:
    cli_output_abort(&so);
    mamba2_backend_logits_free(b, logits);
    free(ids);
    free(file_text);
    free(chat_text);
    free(out.buf);
    if (have_smp) mamba2_sampler_free(&smp);
    if (have_dt) mamba2_detok_free(&dt);
    mamba2_tokenizer_free(tok);
    mamba2_state_free(&st);
    mamba2_backend_destroy(b);
    if (have_model) mamba2_model_free(&m);
    return status;
}
