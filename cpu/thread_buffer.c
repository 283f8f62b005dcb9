/**
 * @file thread_buffer.c
 * @brief Per-thread work buffers of the CPU kernels (thread_buffer.h).
 *
 * A thread finds its buffers through a thread-local pointer (no lock, no lookup); a pthread key
 * whose destructor frees them is set beside it, so that a thread that ends (a program's own
 * thread that ran the cpu backend, or the OpenMP threads it started) does not leave them behind.
 */
#include "thread_buffer.h"

#include <pthread.h>
#include <stdlib.h>

/** The buffers of one thread. */
typedef struct {
    void *buf[CPU_BUF_SLOTS];  /**< 64-byte aligned, or NULL */
    size_t cap[CPU_BUF_SLOTS]; /**< bytes of each */
} ThreadBuffers;

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;

static void free_buffers(void *p) {
    ThreadBuffers *b = p;
    for (int i = 0; i < CPU_BUF_SLOTS; i++) free(b->buf[i]);
    free(b);
}

static void make_key(void) { key_ok = pthread_key_create(&key, free_buffers) == 0; }

/* This thread's buffers, made (and registered for freeing at thread exit) on first use. */
static ThreadBuffers *mine(void) {
    static __thread ThreadBuffers *b;
    if (!b) {
        pthread_once(&key_once, make_key);
        if (!key_ok || !(b = calloc(1, sizeof *b))) return NULL;
        if (pthread_setspecific(key, b)) {
            free(b);
            return b = NULL;
        }
    }
    return b;
}

void *cpu_thread_buffer(CpuBufferSlot slot, size_t bytes) {
    ThreadBuffers *b = mine();
    if (!b) return NULL;
    if (bytes > b->cap[slot]) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes)) return NULL;
        free(b->buf[slot]);
        b->buf[slot] = p, b->cap[slot] = bytes;
    }
    return b->buf[slot];
}
