/**
 * @file thread_buffer.c
 * @brief Per-thread work buffers of the CPU kernels (thread_buffer.h).
 */
#include "thread_buffer.h"

#include <stdlib.h>

void *cpu_thread_buffer(CpuBufferSlot slot, size_t bytes) {
    static __thread void *buf[CPU_BUF_SLOTS];
    static __thread size_t cap[CPU_BUF_SLOTS];
    if (bytes > cap[slot]) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes)) return NULL;
        free(buf[slot]);
        buf[slot] = p, cap[slot] = bytes;
    }
    return buf[slot];
}
