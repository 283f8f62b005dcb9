/**
 * @file resources.c
 * @brief Host memory available, memory a forward pass needs, and the up-front check (see resources.h).
 */
#include "resources.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The field "KEY: N kB" of a /proc file (/proc/meminfo, /proc/self/status) in bytes, or -1. */
static double proc_kib_field(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    size_t n = strlen(key);
    double v = -1;
    unsigned long long kib;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, " %llu kB", &kib) == 1) {
            v = (double)kib * 1024.0;
            break;
        }
    fclose(f);
    return v;
}

/* "123", "64K", "512M", "2G" (powers of 1024); -1 when malformed. */
static double parse_size(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0)) return -1;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0, end++; break;
    case 'm': case 'M': v *= 1048576.0, end++; break;
    case 'g': case 'G': v *= 1073741824.0, end++; break;
    case 't': case 'T': v *= 1099511627776.0, end++; break;
    default: break;
    }
    return *end ? -1 : v;
}

double mamba2_host_memory_available(const char **source) {
    const char *src = "MemAvailable in /proc/meminfo";
    double avail = proc_kib_field("/proc/meminfo", "MemAvailable");
    if (avail < 0) {
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        src = "free pages, sysconf(_SC_AVPHYS_PAGES)";
        avail = pages > 0 && page > 0 ? (double)pages * (double)page : -1;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (avail < 0 || (double)rl.rlim_cur < avail)) {
        avail = (double)rl.rlim_cur;
        src = "the address-space limit, ulimit -v";
    }
    const char *env = getenv("MAMBA2_MAX_MEMORY");
    double cap = env && *env ? parse_size(env) : -1;
    if (cap >= 0 && (avail < 0 || cap < avail)) {
        avail = cap;
        src = "MAMBA2_MAX_MEMORY";
    }
    if (source) *source = src;
    return avail;
}

double mamba2_forward_bytes(const Mamba2Config *c, double T) {
    /* Per token, in floats: h, u, out [d] each; in_proj output [d_in_proj]; conv output [conv_dim];
     * x and y [d_in] each; B and C [G·N] each; dt [H]; the conv window; one score of the SSD. */
    double per_token = 3.0 * c->d_model + c->d_in_proj + c->conv_dim + 2.0 * c->d_inner +
                       2.0 * c->n_groups * c->d_state + c->n_heads + 1 + 2;
    /* The chunked SSD's per-head chunk states (double) [chunks + 1, P, N] twice, and a row of one chunk. */
    double chunks = T / (c->chunk_size > 0 ? c->chunk_size : 1) + 2;
    double ssd = 16.0 * chunks * c->head_dim * c->d_state + 8.0 * c->chunk_size;
    return 4.0 * (T * per_token + c->n_heads + c->d_conv) + ssd + (double)mamba2_config_state_bytes(c);
}

char *mamba2_format_bytes(double b, char *buf, int len) {
    if (b >= 1073741824.0) snprintf(buf, len, "%.2f GiB", b / 1073741824.0);
    else if (b >= 1048576.0) snprintf(buf, len, "%.1f MiB", b / 1048576.0);
    else if (b >= 1024.0) snprintf(buf, len, "%.1f KiB", b / 1024.0);
    else snprintf(buf, len, "%.0f bytes", b);
    return buf;
}

int mamba2_check_memory(const char *what, double need, Mamba2Error *err) {
    const char *src;
    double have = mamba2_host_memory_available(&src);
    if (have < 0 || need <= have) return 0;
    char n[32], h[32];
    return mamba2_fail(err, "%s needs %s of host memory, have %s (%s)", what, mamba2_format_bytes(need, n, sizeof n),
                       mamba2_format_bytes(have, h, sizeof h), src);
}


int mamba2_check_thread_stacks(int n_threads, double blas_buffer, Mamba2Error *err) {
    struct rlimit as, st;
    if ((n_threads <= 1 && blas_buffer <= 0) || getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY) return 0;
    double used = proc_kib_field("/proc/self/status", "VmSize"); /* the address space in use */
    if (used < 0) return 0;
    double stack = 32.0 * 1048576.0; /* glibc's default when RLIMIT_STACK is unlimited */
    if (getrlimit(RLIMIT_STACK, &st) == 0 && st.rlim_cur != RLIM_INFINITY) stack = (double)st.rlim_cur;
    const char *omp = getenv("OMP_STACKSIZE");
    if (omp && *omp) {
        /* OMP_STACKSIZE: a number of KiB, or of bytes / MiB / GiB with a B / M / G suffix */
        char *end;
        double v = strtod(omp, &end);
        if (end != omp && v > 0) {
            switch (*end) {
            case 'b': case 'B': break;
            case 'm': case 'M': v *= 1048576.0; break;
            case 'g': case 'G': v *= 1073741824.0; break;
            default: v *= 1024.0; break;
            }
            stack = v;
        }
    }
    /* besides its stack, a thread takes some address space of its own (its TLS, libgomp's
     * team, glibc's bookkeeping): 4 MiB are counted, the measurement is in results/robustness.md */
    /* a thread other than the first that allocates (OpenBLAS's buffer) gets its own glibc arena, which
     * reserves 64 MiB of address space (HEAP_MAX_SIZE), twice that while it aligns it */
    const double arena = blas_buffer > 0 ? 64.0 * 1048576.0 : 0.0;
    double need = (n_threads - 1) * (stack + 4.0 * 1048576.0 + arena) + n_threads * blas_buffer, left = (double)as.rlim_cur - used;
    if (need <= left) return 0;
    char a[32], b[32];
    return mamba2_fail(err,
                       "%d thread%s need%s %s of address space for %s, and the address-space limit (ulimit -v) "
                       "leaves %s: %sraise the limit",
                       n_threads, n_threads > 1 ? "s" : "", n_threads > 1 ? "" : "s", mamba2_format_bytes(need, a, sizeof a),
                       blas_buffer > 0 ? (n_threads > 1 ? "their stacks and OpenBLAS's work buffers" : "OpenBLAS's work buffer")
                                       : "their stacks",
                       mamba2_format_bytes(left > 0 ? left : 0, b, sizeof b), n_threads > 1 ? "use fewer --threads, or " : "");
}
