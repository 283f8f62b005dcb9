/**
 * @file backend_cpu.h
 * @brief The CPU backend (OpenMP + OpenBLAS + SIMD decode kernels) behind the interface of backend.h.
 */
#ifndef MAMBA2_CPU_BACKEND_CPU_H
#define MAMBA2_CPU_BACKEND_CPU_H

#include "backend.h"

/**
 * @brief Create the CPU backend for @p m.
 *
 * The big matrices (embeddings, in_proj, out_proj, lm_head) are read in place from the model's
 * mmap in their stored dtype; only the small per-layer vectors are converted to fp32 here.
 * @param m   the loaded model (must outlive the backend)
 * @param opt n_threads (0: OMP_NUM_THREADS, else all cores) is the only option used
 * @param out receives the backend (destroy it with mamba2_backend_destroy())
 * @param err the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_backend_cpu_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                              Mamba2Error *err);

#endif
