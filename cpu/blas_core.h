/**
 * @file blas_core.h
 * @brief Make sure OpenBLAS runs its kernels for this CPU, not its generic fallback, starts no threads,
 *        and has its work buffers before a command needs them.
 *
 * Debian's OpenBLAS is built with DYNAMIC_ARCH: it picks a kernel set from CPUID when the library
 * is loaded. A CPU newer than the library falls back to "Prescott" (SSE3): bookworm's 0.3.21 does
 * this on Intel Sapphire/Emerald Rapids, and its sgemm then runs at a small fraction of the
 * SkylakeX kernels' rate (measurements: results/cpu.md). The choice is made before main() runs and
 * can only be changed through the environment variable OPENBLAS_CORETYPE, so the fix is a restart.
 */
#ifndef MAMBA2_CPU_BLAS_CORE_H
#define MAMBA2_CPU_BLAS_CORE_H

/**
 * @brief Restart the program once with OpenBLAS's environment set, before it does any work:
 *        OPENBLAS_NUM_THREADS=1 when unset (the CPU path runs OpenBLAS on its own OpenMP threads, so
 *        OpenBLAS's workers are never used, and under `ulimit -v` they hang the exit), and
 *        OPENBLAS_CORETYPE when OpenBLAS chose its generic kernels for a CPU that has AVX-512
 *        (SkylakeX kernels) or AVX2 + FMA (Haswell kernels).
 *
 * A variable the user set is left as it is; once both are set the call does nothing, so the program
 * restarts at most once. Call it first thing in main().
 * @param argv the program's argv, passed on unchanged
 * Returns only when no restart is needed or the restart failed (the program then goes on as it is).
 */
void cpu_blas_start_program(char **argv);

/** The address space a thread's first OpenBLAS call allocates for its work buffer on x86-64
 *  (BUFFER_SIZE, 128 MiB, plus a page: the allocation seen in the backtraces of results/robustness.md);
 *  OpenBLAS retries it without end when it fails. */
#define CPU_BLAS_THREAD_BUFFER (134217728.0 + 4096.0)

/** Under an address-space limit (ulimit -v), have OpenBLAS allocate the work buffers of @p n_threads
 *  threads calling it at once now, rather than at their first concurrent calls in the middle of a
 *  command: after the address-space check (mamba2_check_thread_stacks()) while it holds. Without a
 *  limit it does nothing. Call it from outside a parallel region. */
void cpu_blas_take_buffers(int n_threads);

/** The kernel set OpenBLAS is running ("SkylakeX", "Haswell", "Prescott", ...). */
const char *cpu_blas_core_name(void);

#endif
