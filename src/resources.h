/**
 * @file resources.h
 * @brief How much host memory a command will need, and refusing up front when it does not fit.
 *
 * A context of T tokens or a batch of B sequences that does not fit must be refused before the
 * first byte is allocated, with a message that says how much is needed and how much there is,
 * rather than crash half-way (or be killed by the kernel, since Linux overcommits and malloc
 * rarely says no). The estimates count the large buffers of the reference and CPU paths (which
 * allocate alike); the GPU backend checks the device memory itself.
 */
#ifndef MAMBA2_RESOURCES_H
#define MAMBA2_RESOURCES_H

#include "config.h"
#include "error.h"

/**
 * @brief Bytes of host memory this process may still take.
 *
 * MemAvailable of /proc/meminfo (else the free pages of sysconf(_SC_AVPHYS_PAGES)), lowered to the
 * address-space limit (ulimit -v) and to $MAMBA2_MAX_MEMORY when set (bytes, or with a K/M/G suffix).
 * @param source out (may be NULL): where the figure came from, for messages
 * @return the bytes, or -1 when nothing can be found out.
 */
double mamba2_host_memory_available(const char **source);

/**
 * @brief Host bytes one forward call of @p T tokens takes on the reference / CPU path: the work
 *        buffers of every intermediate of a layer for T tokens, and the copy of the state the
 *        update runs on.
 */
double mamba2_forward_bytes(const Mamba2Config *cfg, double T);

/**
 * @brief Refuse when @p need bytes do not fit in the memory available.
 * @param what  what needs it, for the message ("logits of 100000 tokens")
 * @param need  bytes
 * @param err   "WHAT needs 1.5 GiB of host memory, have 0.8 GiB (MemAvailable in /proc/meminfo)"
 * @return 0 when it fits (or the available memory cannot be found out), -1 otherwise.
 */
int mamba2_check_memory(const char *what, double need, Mamba2Error *err);

/**
 * @brief Refuse @p n_threads worker threads (the calling thread included) whose stacks and BLAS work
 *        buffers do not fit in what the address-space limit (ulimit -v) leaves this process.
 *
 * A thread's stack is reserved address space (RLIMIT_STACK, glibc's 32 MiB when that is unlimited,
 * or OMP_STACKSIZE), and 4 MiB more are counted for the rest of a thread; when it cannot be mapped,
 * libgomp ends the process with its own message in the middle of a command. Each thread that calls
 * OpenBLAS also takes @p blas_buffer bytes (its work buffer, allocated at the thread's first call;
 * OpenBLAS retries that allocation forever when it fails, so the command would hang). Checked
 * against the limit minus the process's current size (VmSize).
 * @param n_threads the threads, the calling thread included
 * @param blas_buffer address space each of them takes for OpenBLAS (0 when they do not call it)
 * @param err set on refusal
 * @return 0 when they fit or there is no limit, -1 with "N threads need ... (ulimit -v) ...".
 */
int mamba2_check_thread_stacks(int n_threads, double blas_buffer, Mamba2Error *err);

/** Format @p bytes as "12.3 MiB" / "1.50 GiB" into @p buf. Returns @p buf. */
char *mamba2_format_bytes(double bytes, char *buf, int len);

#endif
