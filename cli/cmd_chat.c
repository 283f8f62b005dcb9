/**
 * @file cmd_chat.c
 * @brief `mamba2 chat`: a multi-turn conversation carried in the model's constant-size state.
 *
 * Each turn feeds only its own tokens (the template around the user's text) into the state, which
 * already holds the whole conversation; the reply is sampled token by token, each token fed as it
 * is printed, until an end token or -n tokens; then the ids that close a reply are fed, so that the
 * state after a reply is ready for the next turn (and for /save). Nothing of the history is read
 * again, so a turn costs the same at turn 50 as at turn 1.
 *
 * With a terminal on standard input the lines are read with libedit (when built with it); otherwise
 * each line of standard input is one turn or one /command, and each reply is printed on its line.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef MAMBA2_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

#include "chat_template.h"
#include "cli.h"
#include "commands.h"
#include "output_file.h"
#include "run_options.h"
#include "sampler.h"
#include "tokenizer.h"

static void help(FILE *f) {
    fprintf(f, "usage: mamba2 chat DIR [-n N] [options]\n\n"
               "A conversation with the model in DIR, carried in its constant-size state: each turn feeds only\n"
               "its own tokens, never the history again, so a turn costs the same at turn 50 as at turn 1.\n"
               "The template comes from the tokenizer: ChatML (<|im_start|>user\\nTEXT<|im_end|>\\n<|im_start|>\n"
               "assistant\\n) when <|im_start|> and <|im_end|> are special tokens of it; otherwise a warning and\n"
               "the plain form \"User: TEXT\\nAssistant: \". A reply ends at <|im_end|>, at the end-of-sequence\n"
               "token or after N tokens; its last token and the end of the turn are fed to the state.\n\n"
               "With a terminal on standard input, lines are edited with libedit (history with the arrows).\n"
               "Otherwise each line of standard input is one turn (or one /command) and each reply is printed\n"
               "on one line: for scripts.\n\n"
               "commands (at the start of a line; \"//text\" sends \"/text\" as a turn):\n"
               "  /save FILE    save the conversation's state (a state file, as generate --state-out writes)\n"
               "  /load FILE    go on from a saved state (refused, the conversation kept, when it belongs\n"
               "                to another model)\n"
               "  /reset        start a new conversation\n"
               "  /stats        turns, position, state size, the last turn's timings\n"
               "  /help         these commands\n"
               "  /quit         leave (end of input too)\n"
               "Ctrl-C during a reply stops that reply (what was printed stays in the state); at the prompt\n"
               "it clears the line, and a second Ctrl-C in a row leaves.\n\n"
               "options:\n"
               "  -n, --max-tokens N    the most tokens of one reply (default 256, at most 65536)\n"
               "  --tokenizer PATH      tokenizer file or directory (default: DIR)\n"
               "  --json-stats FILE     after every turn, FILE holds one JSON object per turn (a line each):\n"
               "                        position, prompt tokens, prefill ms, first token ms, reply tokens,\n"
               "                        ms/token, stopped_by\n");
    cli_help_sampler(f);
    cli_help_backend(f);
    fprintf(f, "  -h, --help            this text\n");
}

static void commands_help(FILE *f) {
    fprintf(f, "/save FILE  /load FILE  /reset  /stats  /help  /quit   (Ctrl-C stops a reply; Ctrl-D leaves)\n");
}

/* ---- Ctrl-C: a flag, looked at after every token of a reply and when a line could not be read */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

/* Our handler for SIGINT, without SA_RESTART so that a read at the prompt returns. Installed again
 * after a /save, whose output file puts its own (remove the temporary, then end) in place. */
static void catch_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

/** The figures of one turn. */
typedef struct {
    long long pos;        /* the state's position before the turn */
    int prompt_tokens;    /* the turn's ids fed before the reply */
    double prefill_s;     /* feeding them */
    double first_s;       /* from the start of the turn to the first reply token sampled */
    long reply_tokens;    /* tokens sampled (the end token included) */
    double decode_s;      /* sampling them and feeding each (one step per token) */
    const char *stopped;  /* what ended the reply */
} TurnStats;

/** One session. */
typedef struct {
    Mamba2Model m;
    Mamba2Backend *b;
    Mamba2Tokenizer *tok;
    CliChatTemplate tpl;
    Mamba2State st;
    Mamba2Sampler smp;
    float *logits;
    int32_t eos;
    long n_max;
    int32_t *hist; /* the turn's ids, then the reply's: the sampler's history (repetition penalty) */
    size_t n_hist, cap_hist;
    long turns;
    TurnStats last;
    const char *json_path; /* --json-stats */
    char *json;
    size_t json_len, json_cap;
} Chat;

static int hist_push(Chat *c, const int32_t *ids, size_t n) {
    if (!n) return 0;
    if (c->n_hist + n > c->cap_hist) {
        size_t cap = c->cap_hist ? c->cap_hist : 256;
        while (cap < c->n_hist + n) cap *= 2;
        int32_t *p = realloc(c->hist, cap * sizeof *p);
        if (!p) return -1;
        c->hist = p, c->cap_hist = cap;
    }
    memcpy(c->hist + c->n_hist, ids, n * sizeof *ids);
    c->n_hist += n;
    return 0;
}

/* Append this turn's figures to --json-stats FILE (the whole file written again, atomically). */
static int json_turn(Chat *c, Mamba2Error *err) {
    const TurnStats *t = &c->last;
    char line[512];
    long steps = t->reply_tokens;
    int n = snprintf(line, sizeof line,
                     "{\"turn\": %ld, \"position\": %lld, \"prompt_tokens\": %d, \"prefill_ms\": %.3f, "
                     "\"first_token_ms\": %.3f, \"reply_tokens\": %ld, \"ms_per_token\": %.4f, \"stopped_by\": \"%s\", "
                     "\"backend\": \"%s\"}\n",
                     c->turns, t->pos, t->prompt_tokens, 1e3 * t->prefill_s, 1e3 * t->first_s, t->reply_tokens,
                     steps ? 1e3 * t->decode_s / steps : 0.0, t->stopped, c->b->name);
    if (n < 0 || (size_t)n >= sizeof line) return mamba2_fail(err, "a turn's figures do not fit in a line");
    if (c->json_len + (size_t)n + 1 > c->json_cap) {
        size_t cap = c->json_cap ? 2 * c->json_cap : 4096;
        while (cap < c->json_len + (size_t)n + 1) cap *= 2;
        char *p = realloc(c->json, cap);
        if (!p) return mamba2_fail(err, "out of memory");
        c->json = p, c->json_cap = cap;
    }
    memcpy(c->json + c->json_len, line, (size_t)n + 1);
    c->json_len += (size_t)n;
    return cli_write_file(c->json_path, c->json, c->json_len, err);
}

/* Feed ids[n] to the state; the logits of the last one into c->logits. */
static int feed(Chat *c, const int32_t *ids, size_t n, Mamba2Error *err) {
    if (n == 0) return 0;
    if (n > 0x7fffffff) return mamba2_fail(err, "a turn of %zu tokens is too long", n);
    return mamba2_backend_prefill(c->b, &c->st, ids, (int)n, c->logits, 0, err);
}

/* One user turn: feed it, print the reply as it comes, feed the reply's end. -1 on a failure of the
 * model or of standard output (the session ends), 0 otherwise. */
static int turn(Chat *c, const char *text, size_t len) {
    Mamba2Error err = {{0}};
    int32_t *ids = NULL;
    size_t n = 0;
    Mamba2Detokenizer dt;
    int have_dt = 0, rc = -1;
    TurnStats *t = &c->last;
    memset(t, 0, sizeof *t);
    t->pos = (long long)c->st.pos;
    double t0 = cli_now();
    if (cli_chat_turn_ids(&c->tpl, c->tok, text, len, c->st.pos == 0, &ids, &n, &err)) {
        cli_error("chat", 1, "%s", err.msg);
        return 0; /* text this tokenizer cannot encode: say so, the conversation stays as it was */
    }
    c->n_hist = 0;
    if (hist_push(c, ids, n) || mamba2_detok_init(&dt, c->tok, &err)) {
        cli_error("chat", 1, "%s", err.msg[0] ? err.msg : "out of memory");
        goto done;
    }
    have_dt = 1;
    if (feed(c, ids, n, &err)) goto fail;
    double t1 = cli_now();
    t->prompt_tokens = (int)n;
    t->prefill_s = t1 - t0;
    t->stopped = "length";
    interrupted = 0;
    int ended = 0; /* the reply's last token is <|im_end|> */
    Mamba2State *one = &c->st;
    for (long i = 0; i < c->n_max; i++) {
        int32_t next = mamba2_sampler_sample(&c->smp, c->logits, c->hist, c->n_hist);
        if (i == 0) t->first_s = cli_now() - t0;
        t->reply_tokens++;
        int is_end = next == c->eos || (c->tpl.chatml && next == c->tpl.im_end);
        if (!is_end) {
            const char *piece;
            size_t plen;
            if (mamba2_detok_push(&dt, next, &piece, &plen, &err)) goto fail;
            fwrite(piece, 1, plen, stdout);
            fflush(stdout);
        }
        /* every sampled token is fed, the end token too: the state holds everything printed */
        if (hist_push(c, &next, 1) || mamba2_backend_step(c->b, &one, &next, 1, c->logits, &err)) {
            if (!err.msg[0]) mamba2_fail(&err, "out of memory");
            goto fail;
        }
        if (is_end) {
            ended = c->tpl.chatml && next == c->tpl.im_end;
            t->stopped = ended ? "<|im_end|>" : "end of sequence";
            break;
        }
        if (interrupted) {
            t->stopped = "Ctrl-C";
            break;
        }
        if (ferror(stdout)) break;
    }
    t->decode_s = cli_now() - t1;
    {
        const char *piece;
        size_t plen;
        mamba2_detok_finish(&dt, &piece, &plen);
        fwrite(piece, 1, plen, stdout);
    }
    putchar('\n');
    fflush(stdout);
    if (ferror(stdout)) {
        cli_error("chat", 1, "cannot write standard output: %s", strerror(errno ? errno : EIO));
        goto done;
    }
    if (!strcmp(t->stopped, "Ctrl-C"))
        fprintf(stderr, "mamba2 chat: reply stopped by Ctrl-C (the state holds what was printed)\n");
    interrupted = 0;
    /* the end of the turn, so that the state is ready for the next one */
    free(ids);
    ids = NULL;
    if (cli_chat_close_ids(&c->tpl, c->tok, ended, &ids, &n, &err) || feed(c, ids, n, &err)) goto fail;
    c->turns++;
    if (c->json_path && json_turn(c, &err)) {
        cli_error("chat", 1, "--json-stats: %s", err.msg);
        goto done;
    }
    rc = 0;
    goto done;
fail:
    putchar('\n');
    cli_error("chat", 1, "%s", err.msg);
done:
    free(ids);
    if (have_dt) mamba2_detok_free(&dt);
    return rc;
}

static void print_stats(const Chat *c) {
    const TurnStats *t = &c->last;
    long long bytes = mamba2_config_state_bytes(&c->m.cfg);
    printf("turns %ld, position %lld tokens, state %lld bytes (%.1f MiB, the same at every position), backend %s\n",
           c->turns, (long long)c->st.pos, bytes, bytes / 1048576.0, c->b->name);
    if (!t->stopped) return;
    long steps = t->reply_tokens;
    printf("last turn: %d prompt tokens in %.1f ms, first token after %.1f ms, %ld reply tokens at %.2f ms/token "
           "(%.1f tok/s), stopped by %s\n",
           t->prompt_tokens, 1e3 * t->prefill_s, 1e3 * t->first_s, t->reply_tokens,
           steps ? 1e3 * t->decode_s / steps : 0.0, t->decode_s > 0 ? steps / t->decode_s : 0.0, t->stopped);
    fflush(stdout);
}

static void save(Chat *c, const char *path) {
    Mamba2Error err = {{0}};
    CliOutput o = {0};
    if (cli_output_open(&o, path, &err) || cli_output_save_state(&o, &c->st, &c->m.cfg, &err) ||
        cli_output_commit(&o, &err)) {
        cli_output_abort(&o);
        cli_error("chat", 1, "/save: %s", err.msg);
    } else {
        fprintf(stderr, "mamba2 chat: saved the state at position %lld to %s\n", (long long)c->st.pos, path);
    }
    catch_sigint(); /* the output file's handler, while it was written, ends the program */
}

static void load(Chat *c, const char *path) {
    Mamba2Error err = {{0}};
    if (cli_check_input_file("chat", "/load", path)) return;
    if (mamba2_state_load(&c->st, &c->m.cfg, path, &err)) {
        cli_error("chat", 1, "/load: %s; the conversation goes on as it was", err.msg);
        return;
    }
    c->turns = 0;
    fprintf(stderr, "mamba2 chat: loaded the state at position %lld from %s\n", (long long)c->st.pos, path);
}

/* A line that starts with '/': 1 for /quit, 0 otherwise (a wrong command is said and ignored). */
static int command(Chat *c, const char *line) {
    char name[16] = "";
    const char *arg = line + 1;
    size_t k = strcspn(arg, " \t");
    snprintf(name, sizeof name, "%.*s", (int)(k < sizeof name ? k : sizeof name - 1), arg);
    arg += k;
    arg += strspn(arg, " \t");
    char file[4096];
    size_t alen = strlen(arg);
    while (alen && (arg[alen - 1] == ' ' || arg[alen - 1] == '\t')) alen--; /* trailing blanks are no part of FILE */
    if (alen >= sizeof file) {
        cli_error("chat", 1, "/%s: the argument is too long", name);
        return 0;
    }
    memcpy(file, arg, alen);
    file[alen] = 0;
    arg = file;
    static const char *known[] = {"save", "load", "reset", "stats", "help", "quit", "exit"};
    size_t i = 0;
    while (i < sizeof known / sizeof *known && strcmp(name, known[i])) i++;
    if (i == sizeof known / sizeof *known) {
        cli_error("chat", 1, "unknown command '/%s' (/help lists them)", name);
        return 0;
    }
    int needs_file = !strcmp(name, "save") || !strcmp(name, "load");
    if (needs_file && !*arg) {
        cli_error("chat", 1, "/%s needs a FILE", name);
        return 0;
    }
    if (!needs_file && *arg && strcmp(name, "help")) {
        cli_error("chat", 1, "/%s takes no argument", name);
        return 0;
    }
    if (!strcmp(name, "quit") || !strcmp(name, "exit")) return 1;
    if (!strcmp(name, "save")) save(c, arg);
    else if (!strcmp(name, "load")) load(c, arg);
    else if (!strcmp(name, "reset")) {
        mamba2_state_reset(&c->st);
        c->turns = 0;
        fprintf(stderr, "mamba2 chat: a new conversation\n");
    } else if (!strcmp(name, "stats")) print_stats(c);
    else commands_help(stdout); /* /help */
    return 0;
}

/** Where lines come from: libedit on a terminal, else plain lines of standard input. */
typedef struct {
    int edit;         /* libedit's readline() */
    int prompt;       /* a terminal without libedit: print "> " */
    char *buf;        /* getline()'s buffer */
    size_t cap;
    int last_was_int; /* the previous read ended by Ctrl-C */
} Input;

/* The next line (without its newline) in *line, owned by @p in until the next call; 0 at the end. */
static int read_line(Input *in, char **line) {
    for (;;) {
        interrupted = 0;
        errno = 0;
#ifdef MAMBA2_HAVE_LIBEDIT
        if (in->edit) {
            free(in->buf);
            in->buf = readline("> ");
            if (in->buf && *in->buf) add_history(in->buf);
        } else
#endif
        {
            if (in->prompt) fputs("> ", stdout), fflush(stdout);
            ssize_t n = getline(&in->buf, &in->cap, stdin);
            if (n < 0) clearerr(stdin);
            else {
                if (n > 0 && in->buf[n - 1] == '\n') in->buf[--n] = 0;
                if (n > 0 && in->buf[n - 1] == '\r') in->buf[--n] = 0;
            }
            if (n < 0 && !interrupted) return 0;
            if (n >= 0 && !interrupted) {
                *line = in->buf;
                in->last_was_int = 0;
                return 1;
            }
        }
        if (interrupted) { /* Ctrl-C at the prompt: the line is dropped; twice in a row leaves */
            putchar('\n');
            if (in->last_was_int) return 0;
            in->last_was_int = 1;
            fprintf(stderr, "mamba2 chat: (Ctrl-C again, Ctrl-D or /quit to leave)\n");
            continue;
        }
        if (!in->buf) return 0; /* end of input */
        in->last_was_int = 0;
        *line = in->buf;
        return 1;
    }
}

int cmd_chat(int argc, char **argv) {
    enum { O_TOKENIZER = 256, O_JSON_STATS };
    static const struct option opts[] = {{"max-tokens", 1, 0, 'n'},  {"tokenizer", 1, 0, O_TOKENIZER},
                                         {"json-stats", 1, 0, O_JSON_STATS}, {"help", 0, 0, 'h'},
                                         CLI_RUN_LONG_OPTIONS, {0, 0, 0, 0}};
    CliRunOptions ro;
    const char *tok_path = NULL;
    int c, r;
    Chat ch;
    memset(&ch, 0, sizeof ch);
    ch.n_max = 256;
    cli_run_options_init(&ro);
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":n:t:h", opts, NULL)) != -1) {
        if ((r = cli_run_option("chat", c, optarg, &ro))) {
            if (r < 0) return 2;
            continue;
        }
        switch (c) {
        case 'n': if (cli_parse_int("--max-tokens", optarg, 1, 65536, &ch.n_max)) return 2; break;
        case O_TOKENIZER: tok_path = optarg; break;
        case O_JSON_STATS: ch.json_path = optarg; break;
        case 'h': help(stdout); return 0;
        default: return cli_option_error("chat", c, argv);
        }
    }
    if (cli_one_positional("chat", argc, argv, "DIR")) return 2;
    if (cli_run_options_check("chat", &ro)) return 2;
    Mamba2Error err = {{0}};
    if (ch.json_path && cli_output_check(ch.json_path, 0, &err)) return cli_error("chat", 1, "--json-stats: %s", err.msg);
    const char *dir = argv[optind];
    int status = 1, have_model = 0, have_smp = 0;
    Input in = {0};

    if (cli_load_model(dir, &ch.m)) goto done;
    have_model = 1;
    if (!(ch.tok = mamba2_tokenizer_load(tok_path ? tok_path : dir, &err)) || cli_check_tokenizer(ch.tok, &ch.m, &err)) {
        cli_error("chat", 1, "%s", err.msg);
        goto done;
    }
    cli_chat_template_init(&ch.tpl, ch.tok);
    if (!ch.tpl.chatml)
        fprintf(stderr, "mamba2 chat: warning: %s has no <|im_start|> and <|im_end|> special tokens, so this model "
                        "has no chat template; turns are written \"User: TEXT\\nAssistant: \"\n",
                mamba2_tokenizer_source(ch.tok));
    ch.eos = mamba2_tokenizer_eos(ch.tok);
    if (cli_create_default_backend("chat", ro.backend, &ch.m, &ro.bo, &ch.b, &err) ||
        mamba2_state_init(&ch.st, &ch.m.cfg, &err) || mamba2_sampler_init(&ch.smp, &ro.sc, ch.m.cfg.vocab_size, &err)) {
        cli_error("chat", 1, "%s", err.msg);
        goto done;
    }
    have_smp = 1;
    if (!(ch.logits = mamba2_backend_logits_alloc(ch.b, (size_t)ch.m.cfg.vocab_size, &err))) { /* where the backend writes them fastest */
        cli_error("chat", 1, "%s", err.msg);
        goto done;
    }

    int tty = isatty(STDIN_FILENO);
#ifdef MAMBA2_HAVE_LIBEDIT
    in.edit = tty;
#endif
    in.prompt = tty && !in.edit;
    if (tty)
        fprintf(stderr, "mamba2 chat: %s, %s template, backend %s; /help for the commands, Ctrl-D to leave\n", dir,
                cli_chat_template_name(&ch.tpl), ch.b->name);
    catch_sigint();
    char *line;
    status = 0;
    while (read_line(&in, &line)) {
        if (line[0] == '/' && line[1] != '/') {
            if (command(&ch, line)) break;
            continue;
        }
        if (line[0] == '/') line++; /* "//text": the text "/text" */
        if (!line[0]) continue;     /* an empty line is no turn */
        if (turn(&ch, line, strlen(line))) {
            status = 1;
            break;
        }
    }
    if (in.edit) putchar('\n'); /* leave the terminal on a fresh line after Ctrl-D */
done:
    free(in.buf);
    mamba2_backend_logits_free(ch.b, ch.logits);
    free(ch.hist);
    free(ch.json);
    if (have_smp) mamba2_sampler_free(&ch.smp);
    mamba2_tokenizer_free(ch.tok);
    mamba2_state_free(&ch.st);
    mamba2_backend_destroy(ch.b);
    if (have_model) mamba2_model_free(&ch.m);
    return status;
}
