/**
 * @file blas_core.c
 * @brief Restart with OPENBLAS_CORETYPE when OpenBLAS does not recognise the CPU, and take the
 *        threads' OpenBLAS work buffers early (see blas_core.h).
 */
#include "blas_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/** OpenBLAS's name of the kernel set it selected (declared here: not every cblas.h declares it). */
char *openblas_get_corename(void);
/** OpenBLAS's work-buffer pool (memory.c; exported, not in cblas.h): a free buffer of the pool,
 *  allocated on first use (retried without end when that fails), and its return to the pool. */
void *blas_memory_alloc(int procpos);
/** See blas_memory_alloc(). */
void blas_memory_free(void *buffer);

const char *cpu_blas_core_name(void) { return openblas_get_corename(); }

/* The kernel set to ask for when OpenBLAS chose one of DYNAMIC_ARCH's generic x86-64 sets, else NULL. */
static const char *wanted_core(void) {
    const char *core = openblas_get_corename();
    if (!core || (strcasecmp(core, "Prescott") && strcasecmp(core, "Core2") && strcasecmp(core, "Katmai")))
        return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void cpu_blas_start_program(char **argv) {
    int restart = 0;
    /* OpenBLAS's worker threads: the CPU path splits the work with OpenMP and calls OpenBLAS on one
     * thread (cpu_blas_single_threaded()), so the workers a pthread OpenBLAS starts at load only cost
     * address space, and under `ulimit -v` they retry their buffer's allocation forever and hang the
     * exit (results/robustness.md). A user's own OPENBLAS_NUM_THREADS wins. */
    if (!getenv("OPENBLAS_NUM_THREADS") && !setenv("OPENBLAS_NUM_THREADS", "1", 1)) restart = 1;
    const char *want = getenv("OPENBLAS_CORETYPE") ? NULL : wanted_core();
    if (want && !setenv("OPENBLAS_CORETYPE", want, 1)) restart = 1;
    if (!restart) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc, say): carry on as we are */
    if (want)
        fprintf(stderr, "note: OpenBLAS chose its generic '%s' kernels for this CPU; set OPENBLAS_CORETYPE=%s "
                        "for fast prefill\n", openblas_get_corename(), want);
}

void cpu_blas_take_buffers(int n_threads) {
    /* Each thread asks OpenBLAS's pool for a buffer and holds it until every thread has one. OpenBLAS
     * keeps every buffer it allocates and hands a free one to the next caller: built without USE_TLS
     * (Debian's 0.3.21) from one table for all threads, so n threads calling at once need n buffers
     * allocated, and a product on each thread (how this was done before) took only as many as
     * happened to run at the same moment: on a loaded machine one, and prefill's first concurrent
     * products then allocated the second mid-command, past the check, and hung under `ulimit -v`
     * (results/robustness.md). Built with USE_TLS each thread has its own table, and the same code
     * takes each thread's.
     * Only under an address-space limit can a buffer allocated later fail, so without one nothing is
     * taken: held at once by more threads than the pool has slots (2 × MAX_THREADS, 128 in Debian's
     * build), the buffers make OpenBLAS print a warning, on machines with that many threads. */
    struct rlimit as;
    if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur == RLIM_INFINITY) return;
#pragma omp parallel num_threads(n_threads)
    {
        void *buffer = blas_memory_alloc(0);
#pragma omp barrier
        blas_memory_free(buffer);
    }
}
