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
 * Stored bf16 in_proj, out_proj and lm_head are repacked here into the layout decode streams
 * (packed_bf16.h) where timing both layouts (and on AVX512_BF16 CPUs both bf16 products) on the
 * first four says it reads faster on this CPU (bf16_decode_choice.h; MAMBA2_CPU_PACK=0 / 1 keeps
 * them in place / packs them), or quantized with opt->weights q8 / q4
 * (qmatrix.h); either way their pages of the model's mmap are released, so memory stays the size
 * of one copy. The embeddings, and matrices in other dtypes, are read in place from the mmap; the
 * small per-layer vectors are converted to fp32 here.
 * @param m   the loaded model (must outlive the backend)
 * @param opt n_threads (0: OMP_NUM_THREADS, else all cores), weights, precision, progress (NULL: defaults)
 * @param out receives the backend (destroy it with mamba2_backend_destroy())
 * @param err the reason on failure
 * @return 0, or -1 with the reason in @p err.
 */
int mamba2_backend_cpu_create(const Mamba2Model *m, const Mamba2BackendOptions *opt, Mamba2Backend **out,
                              Mamba2Error *err);

#endif
