/**
 * @file cli.c
 * @brief Helpers shared by the sub-commands.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *cli_command = "mamba2";

int cli_parse_ids(const char *s, int32_t **ids, int *n, Mamba2Error *err) {
    size_t cap = 16, len = 0;
    int32_t *a = malloc(cap * sizeof *a);
    if (!a) return mamba2_fail(err, "out of memory");
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX || (*end && !strchr(" ,\t\n", *end))) {
            int w = (int)strcspn(s, " ,\t\n");
            free(a);
            return mamba2_fail(err, "'%.*s' is not a token id (a non-negative integer)", w > 40 ? 40 : w, s);
        }
        if (len == cap) {
            int32_t *b = realloc(a, (cap *= 2) * sizeof *a);
            if (!b) {
                free(a);
                return mamba2_fail(err, "out of memory");
            }
            a = b;
        }
        a[len++] = (int32_t)v;
        s = end;
    }
    if (!len) {
        free(a);
        return mamba2_fail(err, "no token ids given");
    }
    *ids = a;
    *n = (int)len;
    return 0;
}

int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        cli_error(cli_command, 2, "%s expects an integer in [%ld, %ld], got '%s'", opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_weights(const char *cmd, const char *s, Mamba2WeightFormat *out) {
    if (!strcmp(s, "stored") || !strcmp(s, "bf16")) *out = MAMBA2_WEIGHTS_STORED;
    else if (!strcmp(s, "q8")) *out = MAMBA2_WEIGHTS_Q8;
    else if (!strcmp(s, "q4")) *out = MAMBA2_WEIGHTS_Q4;
    else return cli_error(cmd, 2, "--weights expects stored, bf16, q8 or q4, got '%s'", s);
    return 0;
}

int cli_parse_precision(const char *cmd, const char *s, Mamba2Precision *out) {
    if (!strcmp(s, "default")) *out = MAMBA2_PRECISION_DEFAULT;
    else if (!strcmp(s, "fast")) *out = MAMBA2_PRECISION_FAST;
    else return cli_error(cmd, 2, "--precision expects default or fast, got '%s'", s);
    return 0;
}

/** 1 while a progress bar's line is on stderr without its newline. */
static int bar_open;

/* A progress bar on stderr: "\rmamba2 CMD: quantizing weights [#####.....]  41%". */
static void progress_bar(void *ctx, double done, double total, const char *what) {
    int width = 30, fill = total > 0 ? (int)(width * done / total) : width;
    fprintf(stderr, "\rmamba2 %s: %s [%.*s%*s] %3.0f%%", (const char *)ctx, what, fill,
            "##############################", width - fill, "", total > 0 ? 100 * done / total : 100);
    bar_open = done < total;
    if (!bar_open) fputc('\n', stderr);
    fflush(stderr);
}

int cli_create_backend(const char *cmd, const char *name, const Mamba2Model *m, Mamba2BackendOptions *opt,
                       Mamba2Backend **out, Mamba2Error *err) {
    int bar = !opt->progress && isatty(STDERR_FILENO);
    if (bar) opt->progress = progress_bar, opt->progress_ctx = (void *)cmd;
    double t0 = cli_now();
    if (mamba2_backend_create(name, m, opt, out, err)) {
        if (bar && bar_open) fputc('\n', stderr); /* end a bar that stopped part-way before the caller's message */
        bar_open = 0;
        return -1;
    }
    if (opt->weights != MAMBA2_WEIGHTS_STORED)
        fprintf(stderr, "mamba2 %s: weights quantized to %s at load in %.1f s\n", cmd,
                mamba2_weight_format_name(opt->weights), cli_now() - t0);
    return 0;
}

int cli_parse_list(const char *opt, const char *s, double *out, int max, double lo, double hi, int integer) {
    int n = 0;
    for (const char *p = s ? s : "";;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64], *end = NULL;
        double v = 0;
        int ok = len > 0 && len < sizeof item;
        if (ok) {
            memcpy(item, p, len);
            item[len] = 0;
            errno = 0;
            v = integer ? (double)strtol(item, &end, 10) : strtod(item, &end);
            ok = !*end && !errno && v >= lo && v <= hi;
        }
        if (!ok) {
            cli_error(cli_command, 2, "%s expects %s in [%g, %g], got '%.*s'", opt, integer ? "an integer" : "a number",
                      lo, hi, (int)(len < 64 ? len : 64), p);
            return -1;
        }
        if (n == max) {
            cli_error(cli_command, 2, "%s takes at most %d values, got '%s'", opt, max, s);
            return -1;
        }
        out[n++] = v;
        if (!comma) return n;
        p = comma + 1;
    }
}

int cli_load_model(const char *dir, Mamba2Model *m) {
    Mamba2Error err = {{0}};
    /* the path's type first: "no such directory" says more than what the loader finds missing in it */
    struct stat st;
    if (stat(dir, &st)) {
        cli_error(cli_command, 1, "cannot load the model: %s (%s)", strerror(errno), dir);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        cli_error(cli_command, 1, "cannot load the model: not a directory; DIR is the checkpoint's directory, with "
                                  "config.json (%s)", dir);
        return -1;
    }
    if (mamba2_model_load(dir, m, &err)) {
        cli_error(cli_command, 1, "cannot load the model: %s", err.msg);
        return -1;
    }
    if (m->cfg.norm_before_gate)
        fprintf(stderr, "mamba2 %s: note: %s says norm_before_gate: true; mamba_ssm (which trained these models) and Hugging "
                        "Face ignore it and apply the gate before the grouped norm, and so does this program\n",
                cli_command, dir);
    return 0;
}

int cli_check_tokenizer(const Mamba2Tokenizer *tok, const Mamba2Model *m, Mamba2Error *err) {
    int32_t n = mamba2_tokenizer_vocab_size(tok), V = m->cfg.vocab_size;
    if (n > V)
        return mamba2_fail(err, "%s has %d token ids, but the model in %s has vocab_size %d (rows of its embedding): "
                           "ids %d and above have no embedding; this tokenizer belongs to another model",
                           mamba2_tokenizer_source(tok), (int)n, m->dir, (int)V, (int)V);
    return 0;
}

int cli_error(const char *cmd, int status, const char *fmt, ...) {
    char msg[4096]; /* the message, for the check below; printed whole however long */
    va_list ap, whole;
    va_start(ap, fmt);
    va_copy(whole, ap);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "mamba2 %s: ", cmd);
    if (n >= 0 && (size_t)n < sizeof msg) fputs(msg, stderr);
    else vfprintf(stderr, fmt, whole);
    va_end(whole);
    /* an allocation that failed under an address-space limit: say which limit, the likely cause */
    struct rlimit rl;
    if (n >= 0 && strstr(msg, "out of memory") && !strstr(msg, "ulimit -v") && getrlimit(RLIMIT_AS, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY)
        fprintf(stderr, " (under an address-space limit, ulimit -v %llu KiB)", (unsigned long long)(rl.rlim_cur / 1024));
    fputc('\n', stderr);
    if (status == 2) fprintf(stderr, "see 'mamba2 %s --help'\n", cmd);
    return status;
}

int cli_option_error(const char *cmd, int c, char **argv) {
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    char shortopt[3] = {'-', (char)optopt, 0};
    /* an unknown short option inside a cluster ("-nx"): name the letter, not the cluster */
    if (optopt > 0 && optopt < 128 && strncmp(arg, "--", 2)) arg = shortopt;
    if (c == ':') return cli_error(cmd, 2, "option %s needs a value", arg);
    return cli_error(cmd, 2, "unknown option '%s'", arg);
}

int cli_one_positional(const char *cmd, int argc, char **argv, const char *what) {
    if (optind >= argc) return cli_error(cmd, 2, "%s is missing", what);
    if (optind < argc - 1) return cli_error(cmd, 2, "one %s expected; extra argument '%s'", what, argv[optind + 1]);
    return 0;
}

int cli_check_input_file(const char *cmd, const char *opt, const char *path) {
    struct stat st;
    if (stat(path, &st)) return cli_error(cmd, 1, "%s: %s (%s)", opt, strerror(errno), path);
    if (!S_ISREG(st.st_mode))
        return cli_error(cmd, 1, "%s: not a regular file (%s is a %s)", opt, path,
                         S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode) ? "pipe" : "special file");
    return 0;
}

/* Whether the gpu backend takes these weights and precision (q8 weights, the default precision). */
static int gpu_takes(const Mamba2BackendOptions *opt) {
    return opt->precision == MAMBA2_PRECISION_DEFAULT &&
           (opt->weights == MAMBA2_WEIGHTS_STORED || opt->weights == MAMBA2_WEIGHTS_Q8);
}

int cli_check_backend(const char *cmd, const char *name, const Mamba2BackendOptions *opt) {
    if (name && !mamba2_backend_exists(name))
        return cli_error(cmd, 2, "--backend: no backend '%s' in this build (built: %s)", name, mamba2_backend_names());
    int cpu_only = opt->weights != MAMBA2_WEIGHTS_STORED || opt->precision != MAMBA2_PRECISION_DEFAULT;
    if (cpu_only && name && !strcmp(name, "gpu") && gpu_takes(opt)) return 0;
    if (cpu_only && name && strcmp(name, "cpu"))
        return cli_error(cmd, 2, "--weights and --precision are options of the cpu backend (--weights q8 also of the gpu "
                                 "backend), not of '%s'", name);
    if (cpu_only && !name && !mamba2_backend_exists("cpu") && !(gpu_takes(opt) && mamba2_backend_exists("gpu")))
        return cli_error(cmd, 2, "--weights and --precision need the cpu backend, which this build leaves out");
    return 0;
}

int cli_create_default_backend(const char *cmd, const char *name, const Mamba2Model *m, Mamba2BackendOptions *opt,
                               Mamba2Backend **out, Mamba2Error *err) {
    if (name) return cli_create_backend(cmd, name, m, opt, out, err);
    int cpu_only = opt->weights != MAMBA2_WEIGHTS_STORED || opt->precision != MAMBA2_PRECISION_DEFAULT;
    static const char *order[] = {"gpu", "cpu", "ref"};
    for (int i = 0; i < 3; i++) {
        int takes = !cpu_only || !strcmp(order[i], "cpu") || (!strcmp(order[i], "gpu") && gpu_takes(opt));
        if (!mamba2_backend_exists(order[i]) || !takes) continue;
        Mamba2Error e = {{0}};
        if (cli_create_backend(cmd, order[i], m, opt, out, &e) == 0) {
            fprintf(stderr, "mamba2 %s: backend %s (the fastest here; --backend to choose)\n", cmd, order[i]);
            return 0;
        }
        /* the GPU may be absent or busy: say why, and go on with the next (with cpu options, cpu is the last) */
        int last = cpu_only ? !strcmp(order[i], "cpu") : i + 1 == 3;
        if (!last) fprintf(stderr, "mamba2 %s: backend %s does not start here: %s\n", cmd, order[i], e.msg);
        else *err = e;
        if (last) return -1;
    }
    if (!err->msg[0]) mamba2_fail(err, "no backend starts here");
    return -1;
}

char *cli_read_stdin(long *len) {
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += k;
        if (n == cap) {
            char *more = realloc(buf, cap *= 2);
            if (!more) {
                free(buf);
                return NULL;
            }
            buf = more;
        }
    }
    if (buf) *len = (long)n;
    return buf;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double cli_peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}
