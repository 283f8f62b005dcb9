/*
 * Scratch harness of 2026-12-05 (results/cpu.md, "2026-12-05, 07:20-08:25 UTC: bf16 weights packed at
 * load"): the decode GEMV's access pattern on a 1 GiB bf16 matrix (K = 4,096), 2 threads, units of
 * 256 rows handed out on demand, at default precision (x in two bf16 parts). Not built by make:
 *
 *     gcc -O2 -fopenmp results/tried/2026-12-05-gemv-bf16-packed-layout.c -o /tmp/pk
 *     /tmp/pk [FILE]          (anonymous memory, or the bytes from 2 MiB into FILE's mapping;
 *                              MIS=24 offsets the matrix by 24 bytes, as the checkpoint's tensors)
 *
 * Prints GB/s of weights for: a prefetched read (every line into L1 2 KiB ahead); the row-major
 * 8-row block with the next block's line at the same column into L2 (cpu/gemv_bf16.c before
 * packed_bf16.c); the packed layout (8 rows × 32 columns contiguous) with the stream prefetched
 * 8 KiB ahead into L2; one row at a time (r1_rows, 4 accumulators kept in memory by the compiler);
 * and the variants the final loop of main() names (stream kernels on the row-major layout with the
 * accumulators in registers, dpbf16_stream / stream8 / stream_il; copying each 8-row block to a
 * buffer first, rm_copy). The loop in main() was edited between runs; results/cpu.md has the figures.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
#define K 4096
#define UNIT 256
#define BYTES ((size_t)1 << 30)
#define T __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define I __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16"))) inline
static uint16_t *xh, *xl;
static float yout[BYTES / 2 / K];
/* row-major, 8 rows, next block T1 at the same column (today's kernel) */
static I void rm_block(const uint16_t *W, int64_t row, int next, float *y) {
    __m512 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 32) {
        if (next) for (int i = 0; i < 8; i++) _mm_prefetch((const char *)(W + (row + 8 + i) * K + k), _MM_HINT_T1);
        __m512bh h = (__m512bh)_mm512_load_si512(xh + k), l = (__m512bh)_mm512_load_si512(xl + k);
        for (int i = 0; i < 8; i++) {
            __m512bh w = (__m512bh)_mm512_loadu_si512(W + (row + i) * K + k);
            acc[i] = _mm512_dpbf16_ps(acc[i], w, h); acc[i] = _mm512_dpbf16_ps(acc[i], w, l);
        }
    }
    for (int i = 0; i < 8; i++) y[i] = _mm512_reduce_add_ps(acc[i]);
}
/* row-major, one row at a time (a single stream), 8 accumulators over k, prefetch ahead in the stream */
static I void r1_rows(const uint16_t *W, int64_t row, int n, int64_t ahead, int hint, float *y, const int NA) {
    for (int r = 0; r < n; r++) {
        const uint16_t *p = W + (row + r) * K;
        __m512 acc[8];
        for (int i = 0; i < NA; i++) acc[i] = _mm512_setzero_ps();
        for (int k = 0; k < K; k += 32 * NA) {
            for (int i = 0; i < NA; i++) {
                if (hint == 0) _mm_prefetch((const char *)(p + k + i * 32) + ahead, _MM_HINT_T0);
                else _mm_prefetch((const char *)(p + k + i * 32) + ahead, _MM_HINT_T1);
                __m512bh h = (__m512bh)_mm512_load_si512(xh + k + i * 32), l = (__m512bh)_mm512_load_si512(xl + k + i * 32);
                __m512bh w = (__m512bh)_mm512_loadu_si512(p + k + i * 32);
                acc[i] = _mm512_dpbf16_ps(acc[i], w, h); acc[i] = _mm512_dpbf16_ps(acc[i], w, l);
            }
        }
        __m512 s = acc[0];
        for (int i = 1; i < NA; i++) s = _mm512_add_ps(s, acc[i]);
        y[r] = _mm512_reduce_add_ps(s);
    }
}
static inline I void dpbf16_stream(const uint16_t *W, int64_t Kk, int64_t row, int64_t n, const uint16_t *xs,
                                               int parts, float *y, int64_t ahead, int hint) {
    const int64_t K32 = Kk / 32 * 32, K128 = Kk / 128 * 128;
    for (int64_t r = 0; r < n; r++) {
        const uint16_t *w = W + (row + r) * Kk;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        int64_t k = 0;
        for (; k < K128; k += 128)
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const uint16_t *p = w + k + 32 * i;
                if (hint == 0) _mm_prefetch((const char *)p + ahead, _MM_HINT_T0);
                else if (hint == 1) _mm_prefetch((const char *)p + ahead, _MM_HINT_T1);
                else { _mm_prefetch((const char *)p + ahead, _MM_HINT_T0); _mm_prefetch((const char *)p + 4 * ahead, _MM_HINT_T1); }
                __m512bh wv = (__m512bh)_mm512_loadu_si512(p);
                acc[i] = _mm512_dpbf16_ps(acc[i], wv, (__m512bh)_mm512_loadu_si512(xs + k + 32 * i));
                if (parts == 2) acc[i] = _mm512_dpbf16_ps(acc[i], wv, (__m512bh)_mm512_loadu_si512(xs + K32 + k + 32 * i));
            }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
        y[r] = s;
    }
}
static inline I void stream8(const uint16_t *W, int64_t row, int64_t n, const uint16_t *xs, float *y, int64_t ahead) {
    for (int64_t r = 0; r < n; r++) {
        const uint16_t *w = W + (row + r) * K;
        __m512 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 256)
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                const uint16_t *p = w + k + 32 * i;
                _mm_prefetch((const char *)p + ahead, _MM_HINT_T0);
                __m512bh wv = (__m512bh)_mm512_loadu_si512(p);
                acc[i] = _mm512_dpbf16_ps(acc[i], wv, (__m512bh)_mm512_loadu_si512(xs + k + 32 * i));
                acc[i] = _mm512_dpbf16_ps(acc[i], wv, (__m512bh)_mm512_loadu_si512(xs + K + k + 32 * i));
            }
        __m512 s = acc[0];
        for (int i = 1; i < 8; i++) s = _mm512_add_ps(s, acc[i]);
        y[r] = _mm512_reduce_add_ps(s);
    }
}
/* interleaved x: xi[k/32][2][32] */
static uint16_t *xi;
static inline I void stream_il(const uint16_t *W, int64_t row, int64_t n, float *y, int64_t ahead) {
    for (int64_t r = 0; r < n; r++) {
        const uint16_t *w = W + (row + r) * K;
        __m512 acc[4];
        for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 128)
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const uint16_t *p = w + k + 32 * i;
                _mm_prefetch((const char *)p + ahead, _MM_HINT_T0);
                __m512bh wv = (__m512bh)_mm512_loadu_si512(p);
                const uint16_t *xp = xi + 2 * (k + 32 * i);
                acc[i] = _mm512_dpbf16_ps(acc[i], wv, (__m512bh)_mm512_loadu_si512(xp));
                acc[i] = _mm512_dpbf16_ps(acc[i], wv, (__m512bh)_mm512_loadu_si512(xp + 32));
            }
        __m512 s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        y[r] = _mm512_reduce_add_ps(s);
    }
}
/* row-major, 8-row block: first stream the block's 64 KiB (contiguous) into a scratch with loads in
 * address order (prefetch ahead), then the 8-row kernel on the scratch */
static __thread uint16_t scratch[8 * K] __attribute__((aligned(64)));
static I void rm_copy(const uint16_t *W, int64_t row, int64_t ahead, int hint, float *y) {
    const char *src = (const char *)(W + row * K);
    char *dst = (char *)scratch;
    for (size_t i = 0; i < 8 * K * 2; i += 64) {
        if (hint == 0) _mm_prefetch(src + i + ahead, _MM_HINT_T0); else _mm_prefetch(src + i + ahead, _MM_HINT_T1);
        _mm512_store_si512(dst + i, _mm512_loadu_si512(src + i));
    }
    __m512 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 32) {
        __m512bh h = (__m512bh)_mm512_load_si512(xh + k), l = (__m512bh)_mm512_load_si512(xl + k);
        for (int i = 0; i < 8; i++) {
            __m512bh w = (__m512bh)_mm512_load_si512(scratch + i * K + k);
            acc[i] = _mm512_dpbf16_ps(acc[i], w, h); acc[i] = _mm512_dpbf16_ps(acc[i], w, l);
        }
    }
    for (int i = 0; i < 8; i++) y[i] = _mm512_reduce_add_ps(acc[i]);
}
/* packed: group g of 8 rows is [K/32][8][32] contiguous; prefetch `ahead` bytes further in the stream */
static I void pk_block(const uint16_t *G, int64_t ahead, int hint, float *y) {
    __m512 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 32) {
        const uint16_t *p = G + (size_t)k * 8;
        if (ahead) for (int i = 0; i < 8; i++) {
            if (hint == 0) _mm_prefetch((const char *)(p + i * 32) + ahead, _MM_HINT_T0);
            else _mm_prefetch((const char *)(p + i * 32) + ahead, _MM_HINT_T1);
        }
        __m512bh h = (__m512bh)_mm512_load_si512(xh + k), l = (__m512bh)_mm512_load_si512(xl + k);
        for (int i = 0; i < 8; i++) {
            __m512bh w = (__m512bh)_mm512_loadu_si512(p + i * 32);
            acc[i] = _mm512_dpbf16_ps(acc[i], w, h); acc[i] = _mm512_dpbf16_ps(acc[i], w, l);
        }
    }
    for (int i = 0; i < 8; i++) y[i] = _mm512_reduce_add_ps(acc[i]);
}
static T double run(const uint16_t *W, int mode, int64_t ahead, int hint) {
    int64_t rows = BYTES / 2 / K, units = rows / UNIT;
    double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(2) schedule(dynamic, 1)
    for (int64_t u = 0; u < units; u++)
        for (int64_t r = u * UNIT; r < (u + 1) * UNIT; r += 8) {
            if (mode == 0) rm_block(W, r, r + 8 < (u + 1) * UNIT, yout + r);
            else if (mode == 2) r1_rows(W, r, 8, ahead, hint, yout + r, 8);
            else if (mode == 3) r1_rows(W, r, 8, ahead, hint, yout + r, 4);
            else if (mode == 7) rm_copy(W, r, ahead, hint, yout + r);
            else if (mode == 5) { if (r == u * UNIT) stream8(W, r, UNIT, xh, yout + r, ahead); }
            else if (mode == 6) { if (r == u * UNIT) stream_il(W, r, UNIT, yout + r, ahead); }
            else if (mode == 4) { if (r == u * UNIT) dpbf16_stream(W, K, r, UNIT, xh, 2, yout + r, ahead, hint); }
            else pk_block(W + (size_t)r * K, ahead, hint, yout + r);
        }
    return BYTES / (omp_get_wtime() - t0) / 1e9;
}
static T double readpf(const uint16_t *W) {
    double t0 = omp_get_wtime(); volatile int sink = 0;
#pragma omp parallel num_threads(2)
    {
        int id = omp_get_thread_num(); const char *a = (const char *)W + (BYTES / 2) * id;
        __m512i s = _mm512_setzero_si512();
        for (size_t i = 0; i < BYTES / 2; i += 128) {
            _mm_prefetch(a + i + 2048, _MM_HINT_T0); _mm_prefetch(a + i + 2048 + 64, _MM_HINT_T0);
            s = _mm512_add_epi32(s, _mm512_loadu_si512(a + i)); s = _mm512_add_epi32(s, _mm512_loadu_si512(a + i + 64));
        }
#pragma omp atomic
        sink += _mm512_reduce_add_epi32(s);
    }
    return BYTES / (omp_get_wtime() - t0) / 1e9;
}
int main(int argc, char **argv) {
    uint16_t *W;
    if (argc > 1) {
        int fd = open(argv[1], O_RDONLY);
        char *m = mmap(NULL, BYTES + (4 << 20), PROT_READ, MAP_PRIVATE, fd, 0);
        madvise(m, BYTES + (4 << 20), MADV_HUGEPAGE);
        W = (uint16_t *)(m + (2 << 20) + (getenv("MIS") ? atoi(getenv("MIS")) : 0));
        volatile char s = 0; for (size_t i = 0; i < BYTES; i += 4096) s += ((char *)W)[i];
    } else {
        char *m = mmap(NULL, BYTES + (4 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        W = (uint16_t *)(((uintptr_t)m + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
        madvise(W, BYTES, MADV_HUGEPAGE); if (getenv("MIS")) W = (uint16_t *)((char *)W + atoi(getenv("MIS")));
        for (size_t i = 0; i < BYTES / 2 - 64; i++) W[i] = 0x3f80 + (i & 63);
    }
    uint16_t *xs; posix_memalign((void **)&xs, 64, 4 * K); xh = xs; xl = xs + K;
    for (int k = 0; k < K; k++) xh[k] = 0x3f80, xl[k] = 0x3b80;
    posix_memalign((void **)&xi, 64, 4 * K); for (int k = 0; k < 2 * K; k++) xi[k] = (k / 32) % 2 ? 0x3b80 : 0x3f80;
    for (int r = 0; r < 3; r++) {
        printf("round %d: read %.1f | rm nextT1 %.1f | pk T1+8192 %.1f | r1x4 T0+3072 %.1f", r, readpf(W), run(W, 0, 0, 0), run(W, 1, 8192, 1), run(W, 3, 3072, 0));
        printf(" | copy T0 2048 %.1f | copy T0 3072 %.1f | copy T1 4096 %.1f | copy T1 8192 %.1f | copy none %.1f", run(W, 7, 2048, 0), run(W, 7, 3072, 0), run(W, 7, 4096, 1), run(W, 7, 8192, 1), run(W, 7, 0, 1));
        printf(" | read %.1f\n", readpf(W));
    }
}
