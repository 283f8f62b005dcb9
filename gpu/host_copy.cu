/**
 * @file host_copy.cu
 * @brief A step's logits to the caller's pageable array: device → pinned staging in pieces, each
 *        piece copied on to the pageable array by one of several host threads while the next
 *        pieces are still in transfer.
 *
 * The transfer into pinned memory runs at the host link's rate; the copy out of the pinned buffer
 * into pageable memory is a plain memcpy, which one host thread does at about 10 GB/s, so at 64
 * sequences (8 MiB of logits) it, not the link, set the time. Pieces are dealt round-robin: thread
 * t of n waits for pieces t, t + n, t + 2n, ... (each piece's event, recorded after its transfer) and
 * copies them, so that n copies run at once behind the transfers; at most one thread per two pieces
 * (measurements: results/gpu.md).
 */
#include <string.h>
#include <thread>
#include <vector>

#include "host_copy.cuh"

int host_copy_threads_default() {
    unsigned hw = std::thread::hardware_concurrency(); /* 0 when unknown */
    return hw >= 8 ? 4 : hw >= 4 ? 2 : 1;
}

cudaError_t copy_to_pageable(void *dst, const void *src, size_t bytes, void *staging, std::vector<cudaEvent_t> &events,
                             int threads, cudaStream_t s) {
    const size_t pieces = (bytes + HOST_COPY_PIECE - 1) / HOST_COPY_PIECE;
    cudaError_t e = cudaSuccess;
    while (events.size() < pieces) {
        cudaEvent_t ev;
        if ((e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming)) != cudaSuccess) return e;
        events.push_back(ev);
    }
    for (size_t k = 0; k < pieces; k++) {
        const size_t off = k * HOST_COPY_PIECE, n = bytes - off < HOST_COPY_PIECE ? bytes - off : HOST_COPY_PIECE;
        if ((e = cudaMemcpyAsync((char *)staging + off, (const char *)src + off, n, cudaMemcpyDeviceToHost, s)) != cudaSuccess ||
            (e = cudaEventRecord(events[k], s)) != cudaSuccess)
            return e;
    }
    /* pieces k ≡ t (mod n) of thread t: wait for each piece's transfer, then copy it on; a thread
     * for fewer than two pieces costs more to start than it saves */
    const int n = threads <= 1 || pieces < 4 ? 1 : (size_t)threads > pieces / 2 ? (int)(pieces / 2) : threads;
    std::vector<cudaError_t> status(n, cudaSuccess);
    auto worker = [&](int t) {
        for (size_t k = t; k < pieces; k += n) {
            const size_t off = k * HOST_COPY_PIECE, len = bytes - off < HOST_COPY_PIECE ? bytes - off : HOST_COPY_PIECE;
            if ((status[t] = cudaEventSynchronize(events[k])) != cudaSuccess) return;
            memcpy((char *)dst + off, (const char *)staging + off, len);
        }
    };
    std::vector<std::thread> helpers;
    std::vector<int> unstarted; /* shares whose thread could not be started: the caller's thread takes them */
    for (int t = 1; t < n; t++) try {
            helpers.emplace_back(worker, t);
        } catch (...) {
            unstarted.push_back(t);
        }
    worker(0);
    for (int t : unstarted) worker(t);
    for (std::thread &h : helpers) h.join();
    for (cudaError_t st : status)
        if (st != cudaSuccess) return st;
    return cudaSuccess;
}
