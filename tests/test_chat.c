/**
 * @file test_chat.c
 * @brief `mamba2 chat` (issue 18 item 5), scripted through its non-interactive mode on the demo model.
 *
 * - Three turns, /save after the second: a session that /loads that file and says the third turn
 *   replies exactly what the first session replied, and holds the same state after it, byte for
 *   byte (greedy, on ref and cpu).
 * - /load of another model's state is refused, the session goes on from where it was.
 * - The template: the demo model's tokenizer has no <|im_start|>, so a warning and the plain form;
 *   a tokenizer with <|im_start|> and <|im_end|> as special tokens gets ChatML, with the markers as
 *   their ids (cli/chat_template.c, called directly); `generate --chat` makes the same choice.
 * - Ctrl-C (SIGINT) during a reply stops the reply, not the session.
 * - /stats and --json-stats; usage errors exit 2 before any load; no progress output on a stderr
 *   that is not a terminal.
 */
#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "chat_template.h"
#include "tests.h"
#include "tokenizer.h"

#define DEMO_DIR "data/stdlib-mamba2"
#define CAP 65536
#define TURN1 "def add(a, b):"
#define TURN2 "class Stack:"
#define TURN3 "import os"

/* Write @p script into DIR/NAME; the path into @p path. */
static void write_script(const char *dir, const char *name, const char *script, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(script, f);
    fclose(f);
}

/* `mamba2 chat DEMO_DIR ARGS < script` (the script's lines printf-formatted); stdout, stderr captured. */
static int chat(const char *dir, char *out, char *err, const char *args, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
static int chat(const char *dir, char *out, char *err, const char *args, const char *fmt, ...) {
    char script[8192], path[4300], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(script, sizeof script, fmt, ap);
    va_end(ap);
    write_script(dir, "script.txt", script, path, sizeof path);
    snprintf(cmd, sizeof cmd, "chat " DEMO_DIR " %s < %s", args, path);
    int rc = test_run_program(NULL, cmd, out, CAP, err, CAP);
    if (rc) printf("\n    exit %d: mamba2 %s\n    %s", rc, cmd, err);
    return rc;
}

/* 1 when @p s ends with @p tail. */
static int ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

/* 1 when files @p a and @p b exist and hold the same bytes. */
static int same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    int same = f && g, x = 0, y = 0;
    while (same && (x = getc(f)) == (y = getc(g)) && x != EOF) {
    }
    same = same && x == EOF && y == EOF;
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

/* Turns 1, 2, /save, 3, /save against /load, 3, /save: the same reply to turn 3, and the same state
 * after it, byte for byte (greedy, on ref and cpu). */
static void test_save_load_same_reply(void) {
    const char *be[2] = {"ref", "cpu"};
    int nb = strstr(mamba2_backend_names(), "cpu") ? 2 : 1;
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char a[CAP], b[CAP], err[CAP], args[256], sa[4300], sb[4300];
    snprintf(sa, sizeof sa, "%s/after3_a.bin", dir);
    snprintf(sb, sizeof sb, "%s/after3_b.bin", dir);
    for (int i = 0; i < nb; i++) {
        snprintf(args, sizeof args, "--backend %s -n 12", be[i]);
        CU_ASSERT_EQUAL(chat(dir, a, err, args, TURN1 "\n" TURN2 "\n/save %s/s.bin\n" TURN3 "\n/save %s\n", dir, sa), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "saved the state"));
        CU_ASSERT_EQUAL(chat(dir, b, err, args, "/load %s/s.bin\n" TURN3 "\n/save %s\n", dir, sb), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "loaded the state"));
        printf("\n    %s: turn 3 after /load [%.*s]", be[i], (int)strcspn(b, "\n"), b);
        CU_ASSERT(strlen(b) > 3);
        CU_ASSERT(strlen(a) > strlen(b)); /* three replies against one */
        CU_ASSERT(ends_with(a, b));       /* turn 3's reply: the same with /load as without */
        CU_ASSERT(same_file(sa, sb));     /* and so is everything the state holds after it */
    }
    test_rmtree(dir);
    free(dir);
}

/* A state of another model: /load refused with a message, the conversation goes on as it was. */
static void test_load_other_model(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char out[CAP], want[CAP], err[CAP], cmd[8192], tiny[4300];
    TinyModelSpec spec;
    test_tiny_spec_default(&spec);
    snprintf(tiny, sizeof tiny, "%s/tiny", dir);
    CU_ASSERT_EQUAL_FATAL(mkdir(tiny, 0755), 0);
    CU_ASSERT_EQUAL_FATAL(test_write_tiny_model(tiny, &spec), 0);
    snprintf(cmd, sizeof cmd, "generate %s --backend ref --ids '1 2 3' -n 2 --state-out %s/other.bin", tiny, dir);
    CU_ASSERT_EQUAL_FATAL(test_run_program(NULL, cmd, NULL, 0, err, CAP), 0);
    CU_ASSERT_EQUAL(chat(dir, want, err, "--backend ref -n 8", TURN1 "\n" TURN2 "\n"), 0);
    CU_ASSERT_EQUAL(chat(dir, out, err, "--backend ref -n 8", TURN1 "\n/load %s/other.bin\n" TURN2 "\n", dir), 0);
    const char *said = strstr(err, "/load") ? strstr(err, "/load") : err;
    printf("\n    %.*s", (int)strcspn(said, "\n"), said);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mamba2 chat: /load: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "goes on as it was"));
    CU_ASSERT_PTR_NULL(strstr(err, "loaded the state"));
    CU_ASSERT(strlen(want) > 3);
    CU_ASSERT_STRING_EQUAL(out, want); /* the refused /load changed nothing */
    /* a missing file: said, and the session goes on */
    CU_ASSERT_EQUAL(chat(dir, out, err, "--backend ref -n 8", "/load %s/missing.bin\n" TURN1 "\n" TURN2 "\n", dir), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing.bin"));
    CU_ASSERT_STRING_EQUAL(out, want);
    test_rmtree(dir);
    free(dir);
}

/* The demo tokenizer has no <|im_start|>: a warning and the plain form (program); the ids of both forms
 * (cli/chat_template.c): plain = the encoded "User: T\nAssistant: ", ChatML = the markers' ids around it. */
static void test_template(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char out[CAP], err[CAP], args[4400], tok_path[4300];
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL(chat(dir, out, err, "--backend ref -n 4", TURN1 "\n"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "warning"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no <|im_start|> and <|im_end|> special tokens"));

    Mamba2Tokenizer *demo = mamba2_tokenizer_load(DEMO_DIR, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(demo);
    CliChatTemplate t;
    cli_chat_template_init(&t, demo);
    CU_ASSERT_EQUAL(t.chatml, 0);
    int32_t *ids = NULL, *want = NULL;
    size_t n = 0, nw = 0;
    const char plain[] = "User: " TURN1 "\nAssistant: ";
    CU_ASSERT_EQUAL(cli_chat_turn_ids(&t, demo, TURN1, strlen(TURN1), 1, &ids, &n, &e), 0);
    CU_ASSERT_EQUAL(mamba2_tokenizer_encode(demo, plain, strlen(plain), 1, &want, &nw, &e), 0);
    CU_ASSERT(n == nw && n > 3 && !memcmp(ids, want, n * sizeof *ids));
    free(ids), free(want);
    mamba2_tokenizer_free(demo);

    /* a tokenizer with the ChatML markers as special tokens: tiny_a.json plus two added tokens */
    FILE *f = fopen("data/tokenizer/tiny/tiny_a.json", "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static char json[1 << 20];
    size_t len = fread(json, 1, sizeof json - 512, f);
    fclose(f);
    json[len] = 0;
    const char *key = "\"added_tokens\":[";
    char *at = strstr(json, key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    at += strlen(key);
    const char *add = "{\"id\":1649,\"content\":\"<|im_start|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                      "\"normalized\":false,\"special\":true},{\"id\":1650,\"content\":\"<|im_end|>\",\"single_word\":"
                      "false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},";
    memmove(at + strlen(add), at, strlen(at) + 1);
    memcpy(at, add, strlen(add));
    write_script(dir, "chatml.json", json, tok_path, sizeof tok_path);
    Mamba2Tokenizer *tok = mamba2_tokenizer_load(tok_path, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
    cli_chat_template_init(&t, tok);
    CU_ASSERT_EQUAL(t.chatml, 1);
    CU_ASSERT_EQUAL(t.im_start, 1649);
    CU_ASSERT_EQUAL(t.im_end, 1650);
    CU_ASSERT_EQUAL(cli_chat_turn_ids(&t, tok, "hello", 5, 1, &ids, &n, &e), 0);
    int starts = 0, ends = 0;
    for (size_t i = 0; i < n; i++) starts += ids[i] == 1649, ends += ids[i] == 1650;
    CU_ASSERT(n > 4 && ids[0] == mamba2_tokenizer_bos(tok) && ids[1] == 1649);
    CU_ASSERT(starts == 2 && ends == 1); /* <|im_start|>user ... <|im_end|> <|im_start|>assistant */
    char *text = NULL;
    size_t tl = 0;
    CU_ASSERT_EQUAL(mamba2_tokenizer_decode(tok, ids, n, &text, &tl, &e), 0);
    CU_ASSERT(text && strstr(text, "hello") && strstr(text, "assistant") && !strstr(text, "<|im_")); /* specials: ids */
    free(text), free(ids);
    /* the end of a reply: "<|im_end|>\n" after a cut reply, only "\n" after one that said <|im_end|> */
    CU_ASSERT_EQUAL(cli_chat_close_ids(&t, tok, 0, &ids, &n, &e), 0);
    CU_ASSERT(n >= 2 && ids[0] == 1650);
    free(ids);
    CU_ASSERT_EQUAL(cli_chat_close_ids(&t, tok, 1, &ids, &n, &e), 0);
    CU_ASSERT(n >= 1 && ids[0] != 1650);
    free(ids);
    mamba2_tokenizer_free(tok);
    /* the program with it: no warning, ChatML */
    snprintf(args, sizeof args, "--backend ref -n 4 --tokenizer %s", tok_path);
    CU_ASSERT_EQUAL(chat(dir, out, err, args, "hello\n"), 0);
    CU_ASSERT_PTR_NULL(strstr(err, "warning"));
    /* generate --chat: the same choice (the markers are never encoded as text) */
    snprintf(args, sizeof args, "generate " DEMO_DIR " --backend ref -n 2 --chat -p hello --tokenizer %s", tok_path);
    CU_ASSERT_EQUAL(test_run_program(NULL, args, out, CAP, err, CAP), 0);
    CU_ASSERT_PTR_NULL(strstr(err, "warning"));
    CU_ASSERT_EQUAL(test_run_program(NULL, "generate " DEMO_DIR " --backend ref -n 2 --chat -p hello", out, CAP, err, CAP), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no <|im_start|> and <|im_end|> special tokens"));
    test_rmtree(dir);
    free(dir);
}

/* /stats and --json-stats: turns, a position that adds up, one JSON line per turn; nothing on stderr
 * that a terminal would show (no progress bar: stderr is a file here). */
static void test_stats(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char out[CAP], err[CAP], args[4400], js[CAP], path[4300];
    snprintf(path, sizeof path, "%s/turns.json", dir);
    snprintf(args, sizeof args, "-n 6 --json-stats %s", path);
    CU_ASSERT_EQUAL(chat(dir, out, err, args, TURN1 "\n\n/stats\n" TURN2 "\n/stats\n/help\n/nonsense\n/quit\n" TURN3 "\n"),
                    0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "turns 1, position "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "turns 2, position "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "state 1402880 bytes"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "last turn: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/save FILE"));           /* /help */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown command '/nonsense'"));
    CU_ASSERT_PTR_NULL(strchr(err, '\r'));                      /* no progress bar */
    CU_ASSERT_PTR_NULL(strstr(err, "reading weights"));
    test_slurp(path, js, sizeof js);
    long t1 = 0, t2 = 0;
    long long p1 = -1, p2 = -1;
    int n1 = 0, n2 = 0;
    const char *l2 = strchr(js, '\n');
    CU_ASSERT_FATAL(l2 != NULL);
    CU_ASSERT_EQUAL(sscanf(js, "{\"turn\": %ld, \"position\": %lld, \"prompt_tokens\": %d", &t1, &p1, &n1), 3);
    CU_ASSERT_EQUAL(sscanf(l2 + 1, "{\"turn\": %ld, \"position\": %lld, \"prompt_tokens\": %d", &t2, &p2, &n2), 3);
    CU_ASSERT(t1 == 1 && t2 == 2 && p1 == 0 && n1 > 3 && n2 > 3);
    CU_ASSERT(p2 >= p1 + n1 + 6); /* turn 1's tokens, its 6 reply tokens (no end token in 6), the turn's end */
    CU_ASSERT_PTR_NULL(strchr(l2 + 1, '\n') ? strstr(strchr(l2 + 1, '\n') + 1, "turn") : NULL); /* /quit: no turn 3 */
    test_rmtree(dir);
    free(dir);
}

/* Ctrl-C (SIGINT) during a reply stops that reply, not the session: the next line (/stats) still runs
 * and says so; the state keeps what was printed. The signal is sent once the reply has started. */
static void test_ctrl_c_stops_reply(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char out[CAP], err[CAP], out_path[4300], err_path[4300], cmd[9000];
    snprintf(out_path, sizeof out_path, "%s/out.txt", dir);
    snprintf(err_path, sizeof err_path, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "exec %s chat " DEMO_DIR " --backend ref -n 4000 >%s 2>%s", test_program(), out_path,
             err_path);
    int fd[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fd), 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        dup2(fd[0], 0);
        close(fd[0]);
        close(fd[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd[0]);
    const char *turn = TURN1 "\n";
    CU_ASSERT(write(fd[1], turn, strlen(turn)) == (ssize_t)strlen(turn));
    struct stat st;
    int started = 0;
    for (int i = 0; i < 600 && !started; i++) { /* up to 60 s for the model to load and the reply to start */
        usleep(100000);
        started = stat(out_path, &st) == 0 && st.st_size > 0;
    }
    CU_ASSERT(started);
    kill(pid, SIGINT);
    usleep(300000);
    const char *rest = "/stats\n";
    CU_ASSERT(write(fd[1], rest, strlen(rest)) == (ssize_t)strlen(rest));
    close(fd[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    test_slurp(out_path, out, sizeof out);
    test_slurp(err_path, err, sizeof err);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "reply stopped by Ctrl-C"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "turns 1, position "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "stopped by Ctrl-C"));
    const char *last = strstr(out, "last turn: ");
    long reply = 0;
    int prompt = 0;
    CU_ASSERT(last && sscanf(last, "last turn: %d prompt tokens in %*f ms, first token after %*f ms, %ld reply", &prompt,
                             &reply) == 2);
    CU_ASSERT(reply > 0 && reply < 4000);
    test_rmtree(dir);
    free(dir);
}

/* Usage errors exit 2 before anything is loaded, in the voice of the other commands. */
static void test_usage(void) {
    static char err[CAP];
    CU_ASSERT_EQUAL(test_run_program(NULL, "chat", NULL, 0, err, CAP), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mamba2 chat: DIR is missing"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "see 'mamba2 chat --help'"));
    CU_ASSERT_EQUAL(test_run_program(NULL, "chat /nonexistent --top-p 2", NULL, 0, err, CAP), 2);
    CU_ASSERT_EQUAL(test_run_program(NULL, "chat /nonexistent -n 0", NULL, 0, err, CAP), 2);
    CU_ASSERT_EQUAL(test_run_program(NULL, "chat /nonexistent --bogus", NULL, 0, err, CAP), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown option '--bogus'"));
    CU_ASSERT_EQUAL(test_run_program(NULL, "chat /nonexistent < /dev/null", NULL, 0, err, CAP), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mamba2 chat: cannot load the model"));
    CU_ASSERT_EQUAL(test_run_program(NULL, "chat --help", err, CAP, NULL, 0), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/load FILE"));
}

int register_chat_tests(void) {
    CU_pSuite s = CU_add_suite("chat", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "turns 1, 2, /save, 3 against /load, 3: the same reply (ref, cpu)", test_save_load_same_reply) ||
        !CU_add_test(s, "/load of another model's state refused, the session goes on", test_load_other_model) ||
        !CU_add_test(s, "template: plain form and a warning without <|im_start|>; ChatML ids", test_template) ||
        !CU_add_test(s, "/stats, --json-stats, /help, /quit; no progress output off a terminal", test_stats) ||
        !CU_add_test(s, "Ctrl-C during a reply stops the reply, not the session", test_ctrl_c_stops_reply) ||
        !CU_add_test(s, "usage errors exit 2 before any load", test_usage))
        return -1;
    return 0;
}
