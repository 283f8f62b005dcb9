/**
 * @file output_file.c
 * @brief Output files written through a mkstemp() temporary and a rename; temporaries removed on a signal.
 */
#include "output_file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- temporaries to remove when a signal ends the program.
 * The handler may only call async-signal-safe functions: it reads these fixed buffers and calls
 * unlink(), signal() and raise(). A slot's path is written before the slot is marked used. */
#define MAX_TEMPS 4
static char temp_path[MAX_TEMPS][4200];
static volatile sig_atomic_t temp_used[MAX_TEMPS];
static int handlers_installed;

static void remove_temps_and_reraise(int sig) {
    for (int i = 0; i < MAX_TEMPS; i++)
        if (temp_used[i]) unlink(temp_path[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void) {
    if (handlers_installed) return;
    handlers_installed = 1;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = remove_temps_and_reraise;
        sigemptyset(&sa.sa_mask);
        /* leave a signal the parent told us to ignore (nohup) ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

static int register_temp(const char *path) {
    install_handlers();
    for (int i = 0; i < MAX_TEMPS; i++)
        if (!temp_used[i]) {
            snprintf(temp_path[i], sizeof temp_path[i], "%s", path);
            temp_used[i] = 1;
            return 0;
        }
    return -1;
}

static void unregister_temp(const char *path) {
    for (int i = 0; i < MAX_TEMPS; i++)
        if (temp_used[i] && !strcmp(temp_path[i], path)) temp_used[i] = 0;
}

/* The directory part of @p path ("." when it has none) into @p dir. */
static void dir_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == path) snprintf(dir, cap, "/");
    else snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

int cli_output_check(const char *path, int allow_dash, Mamba2Error *err) {
    if (!strcmp(path, "-")) return allow_dash ? 0 : mamba2_fail(err, "this output cannot go to standard output ('-')");
    if (!*path) return mamba2_fail(err, "an empty output path");
    if (strlen(path) > 4000) return mamba2_fail(err, "output path too long (%.40s...)", path);
    size_t n = strlen(path);
    if (path[n - 1] == '/') return mamba2_fail(err, "%s names a directory, not a file", path);
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    struct stat s;
    if (stat(dir, &s)) return mamba2_fail(err, "cannot write %s: directory %s: %s", path, dir, strerror(errno));
    if (!S_ISDIR(s.st_mode)) return mamba2_fail(err, "cannot write %s: %s is not a directory", path, dir);
    if (access(dir, W_OK | X_OK))
        return mamba2_fail(err, "cannot write %s: directory %s: %s", path, dir, strerror(errno));
    if (stat(path, &s) == 0 && S_ISDIR(s.st_mode)) return mamba2_fail(err, "%s is a directory, not a file", path);
    return 0;
}

int cli_output_open(CliOutput *o, const char *path, Mamba2Error *err) {
    memset(o, 0, sizeof *o);
    o->path = path;
    if (!strcmp(path, "-")) {
        o->f = stdout;
        return 0;
    }
    if (cli_output_check(path, 0, err)) return -1;
    /* DIR/.BASE.XXXXXX: in the target's directory, so that the rename stays on one file system */
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    snprintf(o->tmp, sizeof o->tmp, "%s/.%s.XXXXXX", dir, base);
    int fd = mkstemp(o->tmp); /* O_CREAT | O_EXCL: never opens an existing file or a symlink */
    if (fd < 0) {
        int e = errno;
        o->tmp[0] = 0;
        return mamba2_fail(err, "cannot write %s: cannot create a temporary file in %s: %s", path, dir, strerror(e));
    }
    if (register_temp(o->tmp)) {
        close(fd);
        unlink(o->tmp);
        o->tmp[0] = 0;
        return mamba2_fail(err, "cannot write %s: too many outputs at once", path);
    }
    /* mkstemp makes the file 0600; an output gets the permissions a plain creat() would give */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    if (!(o->f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        cli_output_abort(o);
        return mamba2_fail(err, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

void cli_output_abort(CliOutput *o) {
    if (o->f && o->f != stdout) fclose(o->f);
    o->f = NULL;
    if (o->tmp[0]) {
        unlink(o->tmp);
        unregister_temp(o->tmp);
        o->tmp[0] = 0;
    }
}

int cli_output_commit(CliOutput *o, Mamba2Error *err) {
    if (o->f == stdout) {
        o->f = NULL;
        errno = 0;
        if (fflush(stdout) || ferror(stdout))
            return mamba2_fail(err, "cannot write standard output: %s", strerror(errno ? errno : EIO));
        return 0;
    }
    if (!o->tmp[0]) return mamba2_fail(err, "cannot write %s: no temporary file", o->path);
    int ok = 1, e = 0;
    if (o->f) {
        FILE *f = o->f;
        o->f = NULL;
        errno = 0;
        ok = fflush(f) == 0 && !ferror(f);
        e = errno;
        ok = (fclose(f) == 0) && ok;
        if (!e) e = errno ? errno : EIO;
    }
    if (!ok || rename(o->tmp, o->path)) {
        if (ok) e = errno;
        cli_output_abort(o);
        return mamba2_fail(err, "cannot write %s: %s", o->path, strerror(e));
    }
    unregister_temp(o->tmp);
    o->tmp[0] = 0;
    return 0;
}

int cli_write_file(const char *path, const void *data, size_t bytes, Mamba2Error *err) {
    CliOutput o;
    if (cli_output_open(&o, path, err)) return -1;
    if (fwrite(data, 1, bytes, o.f) != bytes) {
        int e = errno;
        cli_output_abort(&o);
        return mamba2_fail(err, "cannot write %s: %s", path, strerror(e));
    }
    return cli_output_commit(&o, err);
}

int cli_output_save_state(CliOutput *o, Mamba2State *st, const Mamba2Config *cfg, Mamba2Error *err) {
    if (!o->tmp[0] || !o->f) return mamba2_fail(err, "a state cannot go to standard output");
    /* into our own temporary, through its descriptor; cli_output_commit() closes and renames it */
    Mamba2Error e = {{0}};
    if (fflush(o->f) || mamba2_state_write_fd(st, cfg, fileno(o->f), o->path, &e)) {
        cli_output_abort(o);
        return mamba2_fail(err, "%s", e.msg[0] ? e.msg : "cannot write the state");
    }
    return 0;
}

int cli_close_stdout(const char *cmd) {
    errno = 0;
    int bad = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    bad = fclose(stdout) != 0 || bad;
    if (!e) e = errno ? errno : EIO;
    if (!bad) return 0;
    fprintf(stderr, "mamba2 %s: cannot write standard output: %s\n", cmd, strerror(e));
    return 1;
}
