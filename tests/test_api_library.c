/**
 * @file test_api_library.c
 * @brief The library as a whole: what libmamba2.so and libmamba2.a export, that the API prints
 *        nothing, and two models used from several threads at once.
 *
 * The libraries are the ones `make lib` put beside this program ($(BUILD)/lib/, found from
 * /proc/self/exe), read with nm and readelf (binutils).
 */
#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mamba2.h"
#include "tests.h"

#define DEMO "data/stdlib-mamba2"
#define MAX_SYMBOLS 256

/* Symbols the linker itself may define in a shared object's dynamic table (older binutils put
 * these there; the ones of Debian bookworm put none). Nothing else but mamba2_* may appear. */
static const char *const linker_symbols[] = {"_init", "_fini", "_edata", "_end", "__bss_start"};

/** A set of symbol names. */
typedef struct {
    int n;
    char name[MAX_SYMBOLS][96];
} Names;

static int names_has(const Names *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], name)) return 1;
    return 0;
}

static void names_add(Names *s, const char *name, size_t len) {
    if (s->n < MAX_SYMBOLS && len < sizeof s->name[0]) {
        memcpy(s->name[s->n], name, len);
        s->name[s->n++][len] = 0;
    }
}

/* The functions include/mamba2.h declares with MAMBA2_API: the identifier before each "(" that
 * follows a line starting with MAMBA2_API. */
static void declared_functions(Names *out) {
    char text[65536];
    test_slurp("include/mamba2.h", text, sizeof text);
    for (const char *p = text; (p = strstr(p, "\nMAMBA2_API ")); p++) {
        const char *paren = strchr(p, '('), *end = paren;
        while (end > p && (end[-1] == '_' || (end[-1] >= 'a' && end[-1] <= 'z') || (end[-1] >= '0' && end[-1] <= '9')))
            end--;
        if (paren) names_add(out, end, (size_t)(paren - end));
    }
}

/* The defined global symbols `nm ARGS PATH` lists (lines "address type name"). */
static int defined_symbols(const char *args, const char *path, Names *out) {
    char cmd[4400], line[512];
    snprintf(cmd, sizeof cmd, "nm %s '%s' 2>&1", args, path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    while (fgets(line, sizeof line, p)) {
        char addr[64], type[8], name[256];
        if (sscanf(line, "%63s %7s %255s", addr, type, name) == 3) names_add(out, name, strlen(name));
    }
    return pclose(p) == 0 ? 0 : -1;
}

/* $(BUILD)/lib/NAME, beside this program. */
static void library_path(const char *name, char *path, size_t cap) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    snprintf(path, cap, "%s/lib/%s", dirname(exe), name);
}

/* Exactly the declared functions are exported, each once, and besides them at most the linker's own. */
static void check_exports(const char *what, const char *nm_args, const char *file) {
    char path[4200];
    Names declared = {0}, exported = {0};
    library_path(file, path, sizeof path);
    declared_functions(&declared);
    CU_ASSERT(declared.n >= 30); /* the header was read */
    if (defined_symbols(nm_args, path, &exported)) {
        printf("\n    cannot read %s (make lib builds it)", path);
        CU_FAIL("nm");
        return;
    }
    int missing = 0, extra = 0;
    for (int i = 0; i < declared.n; i++)
        if (!names_has(&exported, declared.name[i])) printf("\n    %s: %s is not exported", what, declared.name[i]), missing++;
    for (int i = 0; i < exported.n; i++) {
        int allowed = names_has(&declared, exported.name[i]);
        for (size_t k = 0; k < sizeof linker_symbols / sizeof *linker_symbols; k++)
            allowed |= !strcmp(exported.name[i], linker_symbols[k]);
        if (!allowed) printf("\n    %s exports %s", what, exported.name[i]), extra++;
    }
    printf("\n    %s: %d symbols, %d functions declared, %d missing, %d others", what, exported.n, declared.n, missing,
           extra);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(extra, 0);
}

static void test_exports(void) {
    check_exports("libmamba2.so (nm -D)", "-D --defined-only", "libmamba2.so");
    check_exports("libmamba2.a (nm -g)", "-g --defined-only", "libmamba2.a");

    /* SONAME libmamba2.so.MAJOR, and the file the link names points to */
    char path[4200], cmd[4400], out[4096] = "", want[64];
    library_path("libmamba2.so", path, sizeof path);
    snprintf(cmd, sizeof cmd, "readelf -d '%s'", path);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    if (p) pclose(p);
    snprintf(want, sizeof want, "Library soname: [libmamba2.so.%d]", MAMBA2_VERSION_MAJOR);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
    char real[4096] = "";
    CU_ASSERT_PTR_NOT_NULL(realpath(path, real));
    snprintf(want, sizeof want, "/libmamba2.so.%d.%d", MAMBA2_VERSION_MAJOR, MAMBA2_VERSION_MINOR);
    CU_ASSERT(strlen(real) > strlen(want) && !strcmp(real + strlen(real) - strlen(want), want));
}

/* ------------------------------------------------------------------ silence */

/* Bad input and normal work through the API, with standard output and error going to a file:
 * the file stays empty (the library prints nothing; progress goes through a callback). */
static void test_prints_nothing(void) {
    char *dir = test_tmpdir(), path[4200];
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    snprintf(path, sizeof path, "%s/output.txt", dir);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2), fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    CU_ASSERT_FATAL(saved_out >= 0 && saved_err >= 0 && fd >= 0);
    dup2(fd, 1);
    dup2(fd, 2);

    mamba2_error e;
    int32_t tok[4] = {1, 864, 854, 260}, bad = 1 << 30;
    float *lg = malloc(4096 * 4 * sizeof *lg);
    mamba2_model *m = mamba2_model_open(DEMO, &e);
    mamba2_model_open("data/no-such-model", &e);
    mamba2_model_open("tests", &e);
    mamba2_backend_options o = {0};
    o.weights = strstr(mamba2_backend_list(), "cpu") ? "q8" : NULL; /* quantizing: a long set-up */
    o.n_threads = 1;
    mamba2_backend *b = mamba2_backend_open(m, "auto", &o, &e), *g = mamba2_backend_open(m, "gpu", NULL, &e);
    mamba2_state *s = mamba2_state_create(m, &e);
    int ok = m && b && s && lg && mamba2_prefill(b, s, tok, 4, lg, 1, &e) == MAMBA2_OK &&
             mamba2_step(b, &s, tok, 1, lg, &e) == MAMBA2_OK;
    mamba2_prefill(b, s, &bad, 1, lg, 0, &e);
    mamba2_prefill(b, s, tok, 0, lg, 0, &e);
    mamba2_state_load_file(s, "README.md", &e);
    mamba2_tokenizer_open("README.md", &e);
    mamba2_sampler_create(4096, -1, 0, 1, 0, &e);
    mamba2_ssd_chunked(1, 3, 1, 2, 1, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, &e);
    mamba2_state_destroy(s);
    mamba2_backend_close(g);
    mamba2_backend_close(b);
    mamba2_model_close(m);
    free(lg);

    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out), close(saved_err), close(fd);
    struct stat sb;
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(stat(path, &sb), 0);
    if (sb.st_size) {
        char text[1024];
        test_slurp(path, text, sizeof text);
        printf("\n    printed: %s", text);
    }
    CU_ASSERT_EQUAL(sb.st_size, 0);
    test_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------ threads */

/** One thread's greedy continuation of greedy.json's prompt. */
typedef struct {
    mamba2_model *shared;  /**< a model to use, or NULL to open one of its own */
    const char *backend;   /**< "ref" or "cpu" */
    const TestDemoCase *c; /**< the prompt and the expected continuation */
    int n;                 /**< tokens to generate */
    int agree;             /**< out: tokens equal to the expected ones, -1 on an error */
    char error[MAMBA2_ERROR_MESSAGE_SIZE]; /**< out: the error */
} Worker;

static void *generate(void *arg) {
    Worker *w = arg;
    mamba2_error e = {0, ""};
    mamba2_backend_options o = {0};
    o.n_threads = 1;
    mamba2_model *m = w->shared ? w->shared : mamba2_model_open(DEMO, &e);
    mamba2_backend *b = m ? mamba2_backend_open(m, w->backend, &o, &e) : NULL;
    mamba2_state *s = b ? mamba2_state_create(m, &e) : NULL;
    int V = mamba2_model_dim(m, MAMBA2_DIM_VOCAB_SIZE);
    float *lg = malloc((size_t)(V > 0 ? V : 1) * sizeof *lg);
    w->agree = -1;
    if (s && lg && mamba2_prefill(b, s, w->c->ids, w->c->T, lg, 0, &e) == MAMBA2_OK) {
        w->agree = 0;
        for (int k = 0; k < w->n; k++) {
            int32_t next = mamba2_sample_greedy(lg, V);
            if (next != w->c->greedy[k]) break;
            w->agree++;
            if (mamba2_step(b, &s, &next, 1, lg, &e) != MAMBA2_OK) break;
        }
    }
    snprintf(w->error, sizeof w->error, "%s", e.message);
    free(lg);
    mamba2_state_destroy(s);
    mamba2_backend_close(b);
    if (!w->shared) mamba2_model_close(m);
    return NULL;
}

/* Two models, each in its own thread, and two more threads sharing a third model (with a backend
 * and a state each): every one reproduces the greedy continuation while the others run. */
static void test_threads(void) {
    TestDemoCase cases[2];
    int n_cases = test_read_demo_cases(cases);
    CU_ASSERT_FATAL(n_cases >= 1);
    mamba2_error e;
    mamba2_model *shared = mamba2_model_open(DEMO, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(shared);
    const char *second = strstr(mamba2_backend_list(), "cpu") ? "cpu" : "ref";
    Worker w[4] = {{NULL, "ref", &cases[0], 16, 0, ""},
                   {NULL, second, &cases[0], 16, 0, ""},
                   {shared, "ref", &cases[0], 16, 0, ""},
                   {shared, second, &cases[0], 16, 0, ""}};
    pthread_t th[4];
    int started[4];
    for (int i = 0; i < 4; i++) started[i] = pthread_create(&th[i], NULL, generate, &w[i]) == 0;
    for (int i = 0; i < 4; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        printf("\n    thread %d (%s model, %s): %d/%d tokens%s%s", i, w[i].shared ? "shared" : "own", w[i].backend,
               w[i].agree, w[i].n, w[i].error[0] ? ": " : "", w[i].error);
        CU_ASSERT(started[i]);
        CU_ASSERT_EQUAL(w[i].agree, w[i].n);
    }
    mamba2_model_close(shared);
    test_free_demo_cases(cases, n_cases);
}

int register_api_library_tests(void) {
    CU_pSuite s = CU_add_suite("api_library", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "libmamba2.so and libmamba2.a export exactly the functions of mamba2.h; SONAME", test_exports) ||
        !CU_add_test(s, "no output on stdout or stderr, for bad input or normal work", test_prints_nothing) ||
        !CU_add_test(s, "two models in two threads, and two threads on one model", test_threads))
        return -1;
    return 0;
}
