/**
 * @file blas_core.c
 * @brief Restart with OPENBLAS_CORETYPE when OpenBLAS does not recognise the CPU, and take a
 *        thread's OpenBLAS work buffer early (see blas_core.h).
 */
#include "blas_core.h"

#include <cblas.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/** OpenBLAS's name of the kernel set it selected (declared here: not every cblas.h declares it). */
char *openblas_get_corename(void);

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

void cpu_blas_take_buffer(void) {
    /* C = A·B for 128 x 128 matrices: above the sizes OpenBLAS's small-matrix kernels take without a
     * buffer, so that the call goes through the path that allocates one */
    enum { N = 128 };
    static const float a[N * N]; /* zeros: only the allocation matters */
    float *c = malloc(sizeof(float) * N * N);
    if (!c) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, a, N, 0.0f, c, N);
    free(c);
}
