/**
 * @file host_copy.cuh
 * @brief Device memory to a pageable host array through pinned staging, the host side of the copy
 *        spread over threads (host_copy.cu): how a decode step returns its logits.
 */
#ifndef MAMBA2_GPU_HOST_COPY_CUH
#define MAMBA2_GPU_HOST_COPY_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <vector>

/** Bytes of one piece: one transfer, one event, one host memcpy. */
#define HOST_COPY_PIECE ((size_t)1 << 20)

/** Host threads for the copy when nothing says otherwise: 4 on a host of 8 or more hardware
 *  threads, 2 from 4, else 1 (the copy must not take the cores of a small host). */
int host_copy_threads_default();

/**
 * Copy @p bytes from device memory @p src to pageable host memory @p dst: transfers of
 * HOST_COPY_PIECE bytes on stream @p s into the pinned buffer @p staging (at least @p bytes), each
 * followed by an event from @p events (grown as needed; the caller destroys them), and up to
 * @p threads host threads (one per two pieces at most, one below four pieces; the caller's thread
 * is one of them) copying the pieces on
 * to @p dst as their transfers finish. Returns when every byte is in @p dst, or the first CUDA error.
 */
cudaError_t copy_to_pageable(void *dst, const void *src, size_t bytes, void *staging, std::vector<cudaEvent_t> &events,
                             int threads, cudaStream_t s);

#endif
