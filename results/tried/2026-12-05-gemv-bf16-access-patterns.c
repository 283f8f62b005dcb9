/*
 * What holds the AVX512_BF16 decode GEMV below a prefetched read of the same bytes
 * (results/cpu.md, "2026-12-05, 04:45–06:00 UTC"). Not built by the Makefile:
 *
 *     gcc -O2 -fopenmp results/tried/2026-12-05-gemv-bf16-access-patterns.c -o /tmp/patterns
 *     /tmp/patterns [ROUNDS (2)] [FILE]     (a CPU with AVX512_BF16; 2 threads; 1 GiB of memory)
 *
 * A 1 GiB matrix of bf16 rows (K = 4,096, 8 KiB a row) is walked by 2 threads in blocks of 256 rows
 * handed out on demand, as cpu_gemv() does, by a register block of R rows that reads one 64-byte
 * line of each row per step of 32 columns, with one of these bodies per line:
 *   light   integer xor + add of x_hi (no floating point; the memory pattern alone)
 *   split   vdpbf16ps with x_hi, then with x_lo, into one accumulator (the default precision's GEMV)
 *   hi      vdpbf16ps with x_hi only (--precision fast)
 *   one-x   two vdpbf16ps as split, the second with a constant instead of x_lo: one activation
 *           load per line instead of two
 *   two-x   the two activation loads of split, added as floats (no vdpbf16ps)
 * and one of these prefetches per line:
 *   none    the hardware prefetchers alone
 *   nextT1  the line of the next block (R rows further) at the same column, into L2 (cpu_gemv's)
 *   nextT0  the same into L1
 *   rowT0   the line 2 KiB further in its own row, into L1
 *   rowT1   the same into L2
 *   linT1   the next block's lines in address order (R a step, so all of them by the block's end),
 *           into L2: the order a plain read asks for them in, not one line of each row
 *   linT0   the same into L1
 * The matrix is 1 GiB of anonymous memory, or with FILE (at least 1 GiB; a checkpoint) the bytes
 * from 1 MiB into a read-only mapping of it, read once before the rounds, as decode reads its
 * weights (the two do not stream alike). Each figure is GB/s of weights; "read" is the matrix summed in address order with every line
 * prefetched into L1 2 KiB ahead (cpu_read_bandwidth()'s prefetched pass). x_hi and x_lo sit in two
 * 8 KiB arrays (the GEMV's layout on 2026-12-05).
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#define K 4096           /* columns (bf16) of a row */
#define BLOCK_ROWS 256   /* rows a thread takes at a time */
#define AHEAD 2048       /* bytes ahead of the in-row and the read's prefetches */
#define BYTES ((size_t)1 << 30)
#define INLINE __attribute__((always_inline, target("avx512f,avx512bw,avx512bf16"))) inline
#define TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

enum { LIGHT, SPLIT, HI, ONE_X, TWO_X, N_BODY };
enum { PF_NONE, PF_NEXT_T1, PF_NEXT_T0, PF_ROW_T0, PF_ROW_T1, PF_LIN_T1, PF_LIN_T0, N_PF };
static const char *body_name[N_BODY] = {"light", "split", "hi", "one-x", "two-x"};
static const char *pf_name[N_PF] = {"none", "nextT1", "nextT0", "rowT0", "rowT1", "linT1", "linT0"};

/* y[i] = Σ_k W[row+i][k] · (x_hi[k] (+ x_lo[k])), i < R, by the chosen body and prefetch. */
static INLINE void block(const uint16_t *W, int64_t row, int R, int body, int pf, const uint16_t *xh,
                         const uint16_t *xl, float *y) {
    __m512 acc[16];
    __m512i iacc[16];
    for (int i = 0; i < R; i++) acc[i] = _mm512_setzero_ps(), iacc[i] = _mm512_setzero_si512();
    const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3f80);
    for (int64_t k = 0; k < K; k += 32) {
        for (int i = 0; i < R; i++) {
            const char *line = (const char *)(W + (row + i) * K + k);
            if (pf == PF_NEXT_T1) _mm_prefetch(line + (int64_t)R * K * 2, _MM_HINT_T1);
            if (pf == PF_NEXT_T0) _mm_prefetch(line + (int64_t)R * K * 2, _MM_HINT_T0);
            if (pf == PF_ROW_T0) _mm_prefetch(line + AHEAD, _MM_HINT_T0);
            if (pf == PF_ROW_T1) _mm_prefetch(line + AHEAD, _MM_HINT_T1);
            /* the next block's lines in address order, R a step: all of them by the block's end */
            const char *lin = (const char *)(W + (row + R) * K) + 64 * (R * (k / 32) + i);
            if (pf == PF_LIN_T1) _mm_prefetch(lin, _MM_HINT_T1);
            if (pf == PF_LIN_T0) _mm_prefetch(lin, _MM_HINT_T0);
        }
        const __m512i h = _mm512_loadu_si512(xh + k);
        const __m512i l = body == SPLIT || body == TWO_X ? _mm512_loadu_si512(xl + k) : h;
        for (int i = 0; i < R; i++) {
            const __m512i w = _mm512_loadu_si512(W + (row + i) * K + k);
            switch (body) {
            case LIGHT: iacc[i] = _mm512_add_epi32(iacc[i], _mm512_xor_si512(h, w)); break;
            case SPLIT: acc[i] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(acc[i], (__m512bh)w, (__m512bh)h), (__m512bh)w, (__m512bh)l); break;
            case HI: acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)w, (__m512bh)h); break;
            case ONE_X: acc[i] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(acc[i], (__m512bh)w, (__m512bh)h), (__m512bh)w, one); break;
            default: acc[i] = _mm512_add_ps(acc[i], _mm512_castsi512_ps(_mm512_xor_si512(_mm512_xor_si512(h, l), w))); break;
            }
        }
    }
    for (int i = 0; i < R; i++)
        y[i] = body == LIGHT ? (float)_mm512_reduce_add_epi32(iacc[i]) : _mm512_reduce_add_ps(acc[i]);
}

/* The rows [r0, r0 + BLOCK_ROWS) by blocks of R (R, body and pf constants in each instantiation). */
#define ROWS(R, B, P)                                                                                   \
    if (R_ == R && body_ == B && pf_ == P) {                                                           \
        for (int64_t r = 0; r < BLOCK_ROWS; r += R) block(W, r0 + r, R, B, P, xh, xl, y + r);         \
        return;                                                                                        \
    }
#define ROWS_P(R, B) ROWS(R, B, 0) ROWS(R, B, 1) ROWS(R, B, 2) ROWS(R, B, 3) ROWS(R, B, 4) ROWS(R, B, 5) ROWS(R, B, 6)
#define ROWS_B(R) ROWS_P(R, 0) ROWS_P(R, 1) ROWS_P(R, 2) ROWS_P(R, 3) ROWS_P(R, 4)
static TARGET void rows(const uint16_t *W, int64_t r0, int R_, int body_, int pf_, const uint16_t *xh,
                        const uint16_t *xl, float *y) {
    ROWS_B(1) ROWS_B(2) ROWS_B(4) ROWS_B(8) ROWS_B(16)
}

/* Σ of the bytes [p, p + n) as 64-bit integers, every line prefetched into L1 AHEAD bytes early. */
static TARGET double read_prefetched(const char *p, size_t n) {
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i < n; i += 256) {
        for (int l = 0; l < 4; l++) _mm_prefetch(p + i + AHEAD + 64 * l, _MM_HINT_T0);
        a = _mm512_add_epi64(a, _mm512_loadu_si512(p + i));
        b = _mm512_add_epi64(b, _mm512_loadu_si512(p + i + 64));
        c = _mm512_add_epi64(c, _mm512_loadu_si512(p + i + 128));
        d = _mm512_add_epi64(d, _mm512_loadu_si512(p + i + 192));
    }
    return (double)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
}

int main(int argc, char **argv) {
    if (!__builtin_cpu_supports("avx512bf16")) return fprintf(stderr, "needs AVX512_BF16\n"), 1;
    const int rounds = argc > 1 ? atoi(argv[1]) : 2, Rs[5] = {1, 2, 4, 8, 16};
    const int64_t n_rows = BYTES / (2 * K), n_blocks = n_rows / BLOCK_ROWS;
    uint16_t *W = NULL; /* [n_rows, K] */
    double sink = 0;
    if (argc > 2) { /* the bytes of a file, as a checkpoint's weights are mapped */
        const int fd = open(argv[2], O_RDONLY);
        const size_t offset = (size_t)1 << 20;
        void *map = fd < 0 ? MAP_FAILED : mmap(NULL, offset + BYTES, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED || lseek(fd, 0, SEEK_END) < (off_t)(offset + BYTES))
            return fprintf(stderr, "%s: cannot map 1 GiB + 1 MiB of it\n", argv[2]), 1;
        W = (uint16_t *)((char *)map + offset);
        for (size_t i = 0; i < BYTES / 2; i += 2048) sink += W[i]; /* every page in */
    } else {
        if (posix_memalign((void **)&W, 64, BYTES)) return 1;
#pragma omp parallel for num_threads(2)
        for (int64_t i = 0; i < (int64_t)(BYTES / 2); i++) W[i] = 0x3f80 | (uint16_t)(i * 2654435761u >> 25); /* ≈ 1, first touch */
    }
    float *y = malloc(n_rows * sizeof *y);
    for (int round = 0; round < rounds; round++) {
        double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(2) schedule(dynamic, 1) reduction(+ : sink)
        for (int64_t b = 0; b < n_blocks; b++) sink += read_prefetched((const char *)(W + b * BLOCK_ROWS * K), BLOCK_ROWS * K * 2);
        printf("round %d: prefetched read %.1f GB/s\n", round + 1, BYTES / (omp_get_wtime() - t0) / 1e9);
        for (int body = 0; body < N_BODY; body++) {
            printf("  %-6s", body_name[body]);
            for (int pf = 0; pf < N_PF; pf++) printf(" %7s", pf_name[pf]);
            printf("\n");
            for (int ri = 0; ri < 5; ri++) {
                printf("  R=%-4d", Rs[ri]);
                for (int pf = 0; pf < N_PF; pf++) {
                    t0 = omp_get_wtime();
#pragma omp parallel num_threads(2)
                    {
                        uint16_t *x = aligned_alloc(64, 2 * K * sizeof *x); /* [2][K]: x_hi, x_lo (8 KiB apart) */
                        for (int k = 0; k < 2 * K; k++) x[k] = k < K ? 0x3f80 : 0x3b80;
#pragma omp for schedule(dynamic, 1)
                        for (int64_t b = 0; b < n_blocks; b++) rows(W, b * BLOCK_ROWS, Rs[ri], body, pf, x, x + K, y + b * BLOCK_ROWS);
                        free(x);
                    }
                    printf(" %7.1f", BYTES / (omp_get_wtime() - t0) / 1e9);
                }
                printf("\n");
            }
        }
    }
    for (int64_t i = 0; i < n_rows; i++) sink += y[i];
    return sink == 0.5; /* never: keeps the sums alive */
}
