/**
 * @file test_cli.c
 * @brief The `mamba2` program as a user meets it (issues 18 and 21), on the demo model.
 *
 * - Exact continuation: `generate --state-out` then `--state-in` with the next ids or text gives what
 *   one uninterrupted run gives, on ref, cpu and (where a GPU is usable) gpu (the saved state
 *   includes the last token printed, and a prompt after --state-in gets no BOS); `--no-bos`.
 * - Outputs: checked writable before any work; an existing output kept when the command fails;
 *   no temporary left behind; write errors on standard output exit 1; temporaries removed on
 *   SIGTERM (cli/output_file.c, in a child process).
 * - Flags and errors: usage errors exit 2 before any load, in one voice; a drawn seed is printed and
 *   repeats the run; the default backend is said on stderr; -t, --version, tokenize -p; the timing
 *   line (load, first token, ms/token) and info --json.
 */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "output_file.h"
#include "tests.h"

#define DEMO_DIR "data/stdlib-mamba2"
#define OUT_CAP 16384

#ifdef MAMBA2_HAVE_GPU
#include "gpu.h"
#endif

/* The backends a continuation is checked on: ref, cpu when built in, gpu when built in and a GPU
 * is usable here (said when not). */
static int backends(const char *names[3]) {
    int n = 0;
    names[n++] = "ref";
    if (strstr(mamba2_backend_names(), "cpu")) names[n++] = "cpu";
#ifdef MAMBA2_HAVE_GPU
    Mamba2Error why = {{0}};
    if (mamba2_gpu_available(&why)) names[n++] = "gpu";
    else printf("\n    gpu: not checked: %s", why.msg);
#endif
    return n;
}

/* Run the program with printf-style arguments; stdout into @p out (may be NULL), stderr into @p err. */
static int run(char *out, char *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
#include <stdarg.h>
static int run(char *out, char *err, const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = test_run_program(NULL, args, out, out ? OUT_CAP : 0, err, err ? OUT_CAP : 0);
    if (rc != 0 && err) printf("\n    exit %d: mamba2 %s\n    %s", rc, args, err);
    return rc;
}

/* Strip one trailing newline (the program ends its line of ids or text with one). */
static void chomp(char *s) {
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') s[n - 1] = 0;
}

/* The ids after the first @p skip of a space-separated list, into @p out. */
static void ids_after(const char *list, int skip, char *out, size_t cap) {
    const char *p = list;
    for (int i = 0; i < skip && p; i++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    snprintf(out, cap, "%s", p ? p : "");
}

/* The first @p n ids of a space-separated list, into @p out. */
static void ids_first(const char *list, int n, char *out, size_t cap) {
    const char *p = list;
    for (int i = 0; i < n && p; i++) {
        p = strchr(p, ' ');
        if (p && i + 1 < n) p++;
    }
    size_t len = p ? (size_t)(p - list) : strlen(list);
    snprintf(out, cap, "%.*s", (int)len, list);
}

/* Greedy ids: 12 tokens in one run, against 6 with --state-out and then, from the state, the 7th
 * given as the next prompt id and 5 more. The state must include the 6th token printed. */
static void test_continue_ids(void) {
    const char *be[3];
    int nb = backends(be);
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char whole[OUT_CAP], part1[OUT_CAP], part2[OUT_CAP], err[OUT_CAP], want[OUT_CAP], next[64];
    for (int b = 0; b < nb; b++) {
        CU_ASSERT_EQUAL(run(whole, err, "generate " DEMO_DIR " --backend %s --ids '1 386 392' -n 12", be[b]), 0);
        CU_ASSERT_EQUAL(run(part1, err, "generate " DEMO_DIR " --backend %s --ids '1 386 392' -n 6 --state-out %s/s.bin",
                            be[b], dir), 0);
        chomp(whole), chomp(part1);
        ids_first(whole, 6, want, sizeof want);
        CU_ASSERT_STRING_EQUAL(part1, want);
        ids_after(whole, 6, want, sizeof want); /* ids 7..12 */
        ids_first(want, 1, next, sizeof next);  /* id 7: the next prompt */
        CU_ASSERT_EQUAL(run(part2, err, "generate " DEMO_DIR " --backend %s --state-in %s/s.bin --ids '%s' -n 5", be[b],
                            dir, next), 0);
        chomp(part2);
        ids_after(whole, 7, want, sizeof want); /* ids 8..12 */
        printf("\n    %s: one run: %s | 6 + state + '%s': %s", be[b], whole, next, part2);
        CU_ASSERT(strlen(want) >= 9); /* 5 ids */
        CU_ASSERT_STRING_EQUAL(part2, want);
    }
    test_rmtree(dir);
    free(dir);
}

#define TEXT1 "def add(a, b):"
#define TEXT2 "\\n\\ndef main():"

/* Text: `-p TEXT1 -n 6 --state-out`, then `--state-in -p TEXT2 -n 8` against the uninterrupted run of
 * the same ids (BOS TEXT1, the 6 generated, TEXT2 without BOS) decoded by `detokenize`. */
static void test_continue_text(void) {
    const char *be[3];
    int nb = backends(be);
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char p1[OUT_CAP], p2[OUT_CAP], gen[OUT_CAP], all[OUT_CAP], text[OUT_CAP], got[OUT_CAP], err[OUT_CAP];
    CU_ASSERT_EQUAL(run(p1, err, "tokenize " DEMO_DIR " --text '" TEXT1 "'"), 0);
    CU_ASSERT_EQUAL(run(p2, err, "tokenize " DEMO_DIR " --no-bos --text \"$(printf '" TEXT2 "')\""), 0);
    chomp(p1), chomp(p2);
    for (int b = 0; b < nb; b++) {
        CU_ASSERT_EQUAL(run(gen, err, "generate " DEMO_DIR " --backend %s --ids '%s' -n 6", be[b], p1), 0);
        chomp(gen);
        CU_ASSERT_EQUAL(run(all, err, "generate " DEMO_DIR " --backend %s --ids '%s %s %s' -n 8", be[b], p1, gen, p2), 0);
        chomp(all);
        CU_ASSERT_EQUAL(run(text, err, "detokenize " DEMO_DIR " --ids '%s'", all), 0);
        CU_ASSERT_EQUAL(run(NULL, err, "generate " DEMO_DIR " --backend %s -p '" TEXT1 "' -n 6 --state-out %s/t.bin",
                            be[b], dir), 0);
        CU_ASSERT_EQUAL(run(got, err, "generate " DEMO_DIR " --backend %s --state-in %s/t.bin --no-echo -n 8 "
                                      "-p \"$(printf '" TEXT2 "')\"", be[b], dir), 0);
        chomp(got); /* generate ends its text with a newline, detokenize does not */
        printf("\n    %s: uninterrupted [%s] continued [%s]", be[b], text, got);
        CU_ASSERT(strlen(text) > 4);
        CU_ASSERT_STRING_EQUAL(got, text);
    }
    test_rmtree(dir);
    free(dir);
}

/* --no-bos: a text prompt encoded without BOS, the same tokens as --ids without it. */
static void test_no_bos(void) {
    static char ids[OUT_CAP], gen[OUT_CAP], text[OUT_CAP], got[OUT_CAP], err[OUT_CAP];
    CU_ASSERT_EQUAL(run(ids, err, "tokenize " DEMO_DIR " --no-bos --text '" TEXT1 "'"), 0);
    chomp(ids);
    CU_ASSERT_EQUAL(run(gen, err, "generate " DEMO_DIR " --ids '%s' -n 8", ids), 0);
    chomp(gen);
    CU_ASSERT_EQUAL(run(text, err, "detokenize " DEMO_DIR " --ids '%s'", gen), 0);
    CU_ASSERT_EQUAL(run(got, err, "generate " DEMO_DIR " --no-bos --no-echo -p '" TEXT1 "' -n 8"), 0);
    chomp(got);
    CU_ASSERT(strlen(text) > 4);
    CU_ASSERT_STRING_EQUAL(got, text);
    /* --ids are taken as given: --no-bos with them is a usage error */
    CU_ASSERT_EQUAL(test_run_program(NULL, "generate " DEMO_DIR " --ids '1 2' --no-bos", NULL, 0, err, OUT_CAP), 2);
}

/* The entries of @p dir other than . and .. (how many; their names joined into @p names). */
static int list_dir(const char *dir, char *names, size_t cap) {
    DIR *d = opendir(dir);
    int n = 0;
    names[0] = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        size_t len = strlen(names);
        snprintf(names + len, cap - len, "%s ", e->d_name);
    }
    closedir(d);
    return n;
}

/* A missing directory for --state-out or -o fails before any work, naming the user's path. */
static void test_output_checked_first(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char out[OUT_CAP], err[OUT_CAP], path[4300];
    snprintf(path, sizeof path, "%s/missing/s.bin", dir);
    CU_ASSERT_EQUAL(run(out, err, "generate " DEMO_DIR " --ids '1 2' -n 4 --state-out %s", path), 1);
    CU_ASSERT_STRING_EQUAL(out, ""); /* nothing generated */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NULL(strstr(err, ".tmp"));
    CU_ASSERT_PTR_NULL(strstr(err, "prompt")); /* no timing line: the run never started */
    CU_ASSERT_EQUAL(run(out, err, "logits " DEMO_DIR " --ids '1 2' -o %s", path), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_EQUAL(run(out, err, "logits " DEMO_DIR " --ids '1 2' -o %s/x.f32 --state-out %s", dir, path), 1);
    CU_ASSERT_EQUAL(run(out, err, "logits " DEMO_DIR " --ids '1 2' -o %s", dir), 1); /* a directory as -o */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "directory"));
    CU_ASSERT_EQUAL(list_dir(dir, out, sizeof out), 0); /* nothing was created */
    test_rmtree(dir);
    free(dir);
}

/* `logits -o FILE --state-out S` where writing S fails (a file size limit of 256 KiB: the logits fit,
 * the 1.3 MiB state does not): the existing FILE is kept as it was and no temporary is left. */
static void test_existing_output_kept(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char path[4300], args[9000], err[OUT_CAP], content[64], names[OUT_CAP];
    snprintf(path, sizeof path, "%s/out.f32", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("keep me", f);
    fclose(f);
    snprintf(args, sizeof args, "logits " DEMO_DIR " --ids '1 2' -o %s --state-out %s/s.bin", path, dir);
    /* XFSZ ignored: a write past the limit fails with EFBIG instead of killing the program */
    CU_ASSERT_EQUAL(test_run_program("trap '' XFSZ; ulimit -f 256;", args, NULL, 0, err, sizeof err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "s.bin: File too large"));
    CU_ASSERT_PTR_NULL(strstr(err, "/.s.bin.")); /* the user's path, not the temporary's */
    test_slurp(path, content, sizeof content);
    CU_ASSERT_STRING_EQUAL(content, "keep me");
    CU_ASSERT_EQUAL(list_dir(dir, names, sizeof names), 1);
    printf("\n    after the failure: %s| %s", names, err);
    /* and when everything succeeds, both are replaced and nothing else is left */
    CU_ASSERT_EQUAL(test_run_program(NULL, args, NULL, 0, err, sizeof err), 0);
    struct stat st;
    CU_ASSERT(stat(path, &st) == 0 && st.st_size == 2 * 4096 * 4);
    CU_ASSERT_EQUAL(list_dir(dir, names, sizeof names), 2);
    test_rmtree(dir);
    free(dir);
}

/* Write errors on standard output (a full disk) exit 1 with a message, for generate and info. */
static void test_stdout_errors(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static const char *cmds[] = {"generate " DEMO_DIR " --ids '1 2' -n 4", "info " DEMO_DIR,
                                 "tokenize " DEMO_DIR " --text hello", "logits " DEMO_DIR " --ids '1 2' -o -"};
    static char cmd[9000], err[OUT_CAP], path[4300];
    snprintf(path, sizeof path, "%s/err.txt", dir);
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        snprintf(cmd, sizeof cmd, "%s %s >/dev/full 2>%s", test_program(), cmds[i], path);
        int st = system(cmd);
        test_slurp(path, err, sizeof err);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "standard output"));
        if (!strstr(err, "standard output")) printf("\n    %s: exit %d: %s", cmds[i], WEXITSTATUS(st), err);
    }
    /* -o - writes the logits to standard output */
    static char out[OUT_CAP];
    snprintf(cmd, sizeof cmd, "%s logits " DEMO_DIR " --ids '1 2' -o - 2>/dev/null | wc -c >%s", test_program(), path);
    CU_ASSERT_EQUAL(system(cmd), 0);
    test_slurp(path, out, sizeof out);
    CU_ASSERT_EQUAL(atol(out), 2 * 4096 * 4);
    test_rmtree(dir);
    free(dir);
}

/* cli/output_file.c: a temporary in the target's directory, not following a planted symlink,
 * removed by SIGTERM (the child dies of the signal, re-raised), the target untouched. */
static void test_output_file_signal(void) {
    char *dir = test_tmpdir();
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char path[4300], names[OUT_CAP], content[64];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("old", f);
    fclose(f);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        CliOutput o;
        Mamba2Error e = {{0}};
        if (cli_output_open(&o, path, &e) || fputs("new", o.f) < 0 || fflush(o.f)) _exit(3);
        if (access(o.tmp, F_OK)) _exit(4); /* the temporary exists until the signal */
        raise(SIGTERM);
        _exit(5);
    }
    int st = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
    CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    CU_ASSERT_EQUAL(list_dir(dir, names, sizeof names), 1);
    test_slurp(path, content, sizeof content);
    CU_ASSERT_STRING_EQUAL(content, "old");

    /* commit replaces the target; a symlink planted at the target is replaced, not followed */
    char victim[4400], link[4400];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(link, sizeof link, "%s/link.bin", dir);
    f = fopen(victim, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("victim", f);
    fclose(f);
    CU_ASSERT_EQUAL(symlink(victim, link), 0);
    Mamba2Error e = {{0}};
    CU_ASSERT_EQUAL(cli_write_file(link, "data", 4, &e), 0);
    test_slurp(victim, content, sizeof content);
    CU_ASSERT_STRING_EQUAL(content, "victim");
    test_slurp(link, content, sizeof content);
    CU_ASSERT_STRING_EQUAL(content, "data");
    struct stat ls;
    CU_ASSERT(lstat(link, &ls) == 0 && S_ISREG(ls.st_mode));
    CU_ASSERT_EQUAL(list_dir(dir, names, sizeof names), 3);
    test_rmtree(dir);
    free(dir);
}

/* Usage errors exit 2 before anything is loaded (the DIR does not exist: loading would exit 1), with
 * one line saying what was wrong, then "see 'mamba2 CMD --help'", not the whole usage. */
static void test_usage_errors(void) {
    static const struct {
        const char *args, *says;
    } cases[] = {
        {"generate /no/such/dir --ids 1 --bogus", "unknown option '--bogus'"},
        {"generate /no/such/dir extra --ids 1", "extra argument 'extra'"},
        {"generate /no/such/dir", "no prompt"},
        {"generate /no/such/dir --ids 1 --top-p 2", "top-p"},
        {"generate /no/such/dir --ids 1 --temperature -1", "temperature"},
        {"generate /no/such/dir --ids 1 --seed x", "--seed"},
        {"generate /no/such/dir --ids 1 --backend nope", "no backend 'nope'"},
        {"generate /no/such/dir --ids 1 --backend ref --weights q8", "cpu backend"},
        {"generate /no/such/dir --ids", "--ids needs a value"},
        {"logits /no/such/dir --ids 1", "-o FILE is required"},
        {"logits /no/such/dir -o x.f32", "--ids is required"},
        {"logits /no/such/dir --ids 1 -o x.f32 -x", "unknown option '-x'"},
        {"info", "DIR is missing"},
        {"info /no/such/dir extra", "extra argument 'extra'"},
        {"tokenize /no/such/dir", "neither given"},
        {"perplexity /no/such/dir", "--file TEXT is required"},
        {"bench /no/such/dir --threads 0", "--threads"},
        {"check /no/such/dir a b", "extra argument"},
    };
    static char err[OUT_CAP], see[128];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = test_run_program(NULL, cases[i].args, NULL, 0, err, sizeof err);
        char cmd[32];
        snprintf(cmd, sizeof cmd, "%.*s", (int)strcspn(cases[i].args, " "), cases[i].args);
        snprintf(see, sizeof see, "see 'mamba2 %s --help'", cmd);
        int ok = rc == 2 && strstr(err, cases[i].says) && strstr(err, see) && !strstr(err, "usage:") &&
                 !strncmp(err, "mamba2 ", 7);
        if (!ok) printf("\n    mamba2 %s: exit %d, said: %s", cases[i].args, rc, err);
        CU_ASSERT(ok);
    }
    /* a missing directory and a file given as DIR: said plainly, exit 1 */
    CU_ASSERT_EQUAL(test_run_program(NULL, "info /no/such/dir", NULL, 0, err, sizeof err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file or directory (/no/such/dir)"));
    CU_ASSERT_EQUAL(test_run_program(NULL, "info " DEMO_DIR "/config.json", NULL, 0, err, sizeof err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a directory"));
    /* --state-in is checked before loading: a missing file, a directory */
    CU_ASSERT_EQUAL(test_run_program(NULL, "generate /no/such/dir --ids 1 --state-in /no/such.bin", NULL, 0, err,
                                     sizeof err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--state-in: No such file or directory (/no/such.bin)"));
    CU_ASSERT_EQUAL(test_run_program(NULL, "logits /no/such/dir --ids 1 -o - --state-in " DEMO_DIR, NULL, 0, err,
                                     sizeof err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a directory"));
}

/* A sampled run without --seed (or with --seed -1) prints the seed it drew; that seed repeats it.
 * Sampler options without --temperature are warned about. */
static void test_seed_printed(void) {
    static char out1[OUT_CAP], err1[OUT_CAP], out2[OUT_CAP], err2[OUT_CAP];
    const char *seed_args[] = {"", "--seed -1"};
    for (int k = 0; k < 2; k++) {
        CU_ASSERT_EQUAL(run(out1, err1, "generate " DEMO_DIR " --ids '1 386 392' -n 24 --temperature 1.5 %s",
                            seed_args[k]), 0);
        const char *p = strstr(err1, "seed ");
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        unsigned long long seed = strtoull(p + 5, NULL, 10);
        CU_ASSERT_EQUAL(run(out2, err2, "generate " DEMO_DIR " --ids '1 386 392' -n 24 --temperature 1.5 --seed %llu",
                            seed), 0);
        CU_ASSERT_STRING_EQUAL(out2, out1);
        CU_ASSERT_PTR_NULL(strstr(err2, "seed ")); /* a given seed is not repeated back */
        printf("\n    seed %llu: %.60s", seed, out1);
    }
    /* two drawn seeds differ (2^-63 chance of a false failure) */
    CU_ASSERT_EQUAL(run(out1, err1, "generate " DEMO_DIR " --ids 1 -n 1 --temperature 1"), 0);
    CU_ASSERT_EQUAL(run(out2, err2, "generate " DEMO_DIR " --ids 1 -n 1 --temperature 1"), 0);
    CU_ASSERT_STRING_NOT_EQUAL(strstr(err1, "seed "), strstr(err2, "seed "));
    CU_ASSERT_EQUAL(run(out1, err1, "generate " DEMO_DIR " --ids 1 -n 1 --top-k 40 --seed 1"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err1, "warning: --top-k"));
}

/* The default backend is the fastest built in that starts here, said on stderr; -t; --version; the
 * timing line and --json-stats; info --json (the demo model's figures, as its model card gives them). */
static void test_defaults_and_flags(void) {
    static char out[OUT_CAP], err[OUT_CAP];
    const char *want = strstr(mamba2_backend_names(), "cpu") ? "cpu" : "ref";
    if (strstr(mamba2_backend_names(), "gpu")) want = NULL; /* gpu or a fallback, depending on the machine */
    CU_ASSERT_EQUAL(run(out, err, "generate " DEMO_DIR " --ids 1 -n 2 -t 1"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mamba2 generate: backend "));
    /* the timing line: load time, time to the first token, ms/token */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "] load "));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "first token after "));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, " ms/token"));
    if (want) {
        char line[64];
        snprintf(line, sizeof line, "backend %s (", want);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, line));
    }
    CU_ASSERT_EQUAL(run(out, err, "logits " DEMO_DIR " --ids 1 -o - -t 1"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mamba2 logits: backend "));
    CU_ASSERT_EQUAL(test_run_program(NULL, "--version", out, sizeof out, NULL, 0), 0);
    CU_ASSERT_EQUAL(strncmp(out, "mamba2 ", 7), 0);
    /* generate --json-stats FILE: the same figures as one object */
    char *dir = test_tmpdir(), path[4300];
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    snprintf(path, sizeof path, "%s/stats.json", dir);
    CU_ASSERT_EQUAL(run(out, err, "generate " DEMO_DIR " --ids '1 386 392' -n 5 --json-stats %s", path), 0);
    json_object *st = json_object_from_file(path), *f;
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT(json_object_object_get_ex(st, "generated_tokens", &f) && json_object_get_int(f) == 5);
    CU_ASSERT(json_object_object_get_ex(st, "prompt_tokens", &f) && json_object_get_int(f) == 3);
    CU_ASSERT(json_object_object_get_ex(st, "ms_per_token", &f) && json_object_get_double(f) > 0);
    CU_ASSERT(json_object_object_get_ex(st, "stopped_by", &f) && !strcmp(json_object_get_string(f), "length"));
    json_object_put(st);
    test_rmtree(dir);
    free(dir);
    /* info --json: one object with the text form's figures */
    CU_ASSERT_EQUAL(run(out, err, "info " DEMO_DIR " --json"), 0);
    json_object *o = json_tokener_parse(out), *v;
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    CU_ASSERT(json_object_object_get_ex(o, "vocab_size", &v) && json_object_get_int(v) == 4096);
    CU_ASSERT(json_object_object_get_ex(o, "parameters", &v) && json_object_get_int64(v) == 5703152);
    CU_ASSERT(json_object_object_get_ex(o, "state_bytes", &v) && json_object_get_int64(v) == 1402880);
    json_object_put(o);
    /* one prompt vocabulary: tokenize -p is --text */
    static char a[OUT_CAP], b[OUT_CAP];
    CU_ASSERT_EQUAL(run(a, err, "tokenize " DEMO_DIR " -p 'def f(x):'"), 0);
    CU_ASSERT_EQUAL(run(b, err, "tokenize " DEMO_DIR " --text 'def f(x):'"), 0);
    CU_ASSERT(strlen(a) > 2);
    CU_ASSERT_STRING_EQUAL(a, b);
}

int register_cli_tests(void) {
    CU_pSuite s = CU_add_suite("cli", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "generate: --state-out then --state-in, ids: the uninterrupted run (ref, cpu, gpu)", test_continue_ids) ||
        !CU_add_test(s, "generate: --state-out then --state-in, text: the uninterrupted run (ref, cpu, gpu)", test_continue_text) ||
        !CU_add_test(s, "generate --no-bos", test_no_bos) ||
        !CU_add_test(s, "outputs checked writable before any work", test_output_checked_first) ||
        !CU_add_test(s, "an existing output kept when the command fails", test_existing_output_kept) ||
        !CU_add_test(s, "write errors on standard output exit 1; -o -", test_stdout_errors) ||
        !CU_add_test(s, "output files: temporary removed on SIGTERM, symlinks not followed", test_output_file_signal) ||
        !CU_add_test(s, "usage errors: exit 2 before any load, one line and 'see --help'", test_usage_errors) ||
        !CU_add_test(s, "a drawn seed is printed and repeats the run; no-effect warning", test_seed_printed) ||
        !CU_add_test(s, "default backend said on stderr, -t, --version, timings, info --json, tokenize -p",
                     test_defaults_and_flags))
        return -1;
    return 0;
}
