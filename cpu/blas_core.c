/**
 * @file blas_core.c
 * @brief Restart with OPENBLAS_CORETYPE when OpenBLAS does not recognise the CPU (see blas_core.h).
 */
#include "blas_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/** OpenBLAS's name of the kernel set it selected (declared here: not every cblas.h declares it). */
char *openblas_get_corename(void);

const char *cpu_blas_core_name(void) { return openblas_get_corename(); }

void cpu_blas_pick_core(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = openblas_get_corename();
    /* The generic x86-64 choices of DYNAMIC_ARCH; any other name is a specific, tuned core. */
    if (!core || (strcasecmp(core, "Prescott") && strcasecmp(core, "Core2") && strcasecmp(core, "Katmai")))
        return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want || setenv("OPENBLAS_CORETYPE", want, 1)) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc, say): carry on with the slow kernels rather than stop */
    fprintf(stderr, "note: OpenBLAS chose its generic '%s' kernels for this CPU; set OPENBLAS_CORETYPE=%s "
                    "for fast prefill\n", core, want);
}
