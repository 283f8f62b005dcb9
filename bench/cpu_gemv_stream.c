/**
 * @file cpu_gemv_stream.c
 * @brief Whether the decode GEMV reads the weights as fast as this machine reads memory: one decode
 *        step's products of a checkpoint, in the model's order, beside a plain read of the same bytes.
 *
 *     make build/bench_cpu_gemv_stream && build/bench_cpu_gemv_stream DIR [THREADS] [ROUNDS] [bf16|q8|q4]
 *
 * Each round times passes over every layer's in_proj and out_proj, then the lm_head (the weights
 * one decode step of one sequence reads):
 * - bf16 (the checkpoint's own mapping): cpu_gemv() at default precision (x in two bf16 parts on
 *   AVX512_BF16 CPUs), as decode runs it; a plain read of the same bytes (AVX2 loads summed,
 *   blocks of 2 MiB handed out to the threads); the same read with every line prefetched into L1
 *   2 KiB ahead (the better of the two is what `mamba2 bench --roofline` takes as the read ceiling,
 *   cpu_read_bandwidth()); cpu_gemv() at fast precision (x in one bf16 part); the AVX-512F product
 *   (bf16 widened to fp32, FMA) at default precision, the other product bf16_decode_choice.h times;
 *   and the default GEMV against the prefetched read by kind of matrix (in_proj, out_proj, lm_head);
 * - q8 or q4 (each matrix quantized first, as `--weights q8|q4` does at load): cpu_qlinear() of one
 *   token, as decode runs it, and the plain and the prefetched read of the quantized bytes;
 * and prints each as GB/s of weights. On a shared host the read rate changes from minute to minute,
 * so the product is compared with the read of the same round (MAMBA2_CPU_PREFETCH=none|row|next
 * changes the products' prefetch, as in the backend).
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemv_bf16.h"
#include "model.h"
#include "packed_bf16.h"
#include "qmatrix.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define READ_BLOCK ((size_t)2 << 20) /* bytes a thread takes at a time */
#define READ_AHEAD 2048             /* how far ahead the prefetched read asks for lines */

/* Σ of the n bytes at p as 64-bit integers (so that the loads cannot be dropped), 256 bytes a step
 * on eight AVX2 loads, with @p prefetched each line also asked for READ_AHEAD bytes before it is
 * loaded; whole blocks of READ_BLOCK only. AVX2 loads on every CPU, as cpu_read_bandwidth() reads
 * (a stream from memory runs at the memory's rate with 256-bit loads; this tool used 512-bit loads
 * before 2026-12-07, and needed AVX-512). */
__attribute__((target("avx2"))) static double read_bytes(const char *p, size_t n, int threads, int prefetched) {
    const size_t blocks = n / READ_BLOCK;
    double s = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(+ : s)
    for (size_t blk = 0; blk < blocks; blk++) {
        __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
        for (size_t i = blk * READ_BLOCK; i < (blk + 1) * READ_BLOCK; i += 256) {
            if (prefetched)
                for (int l = 0; l < 4; l++) _mm_prefetch(p + i + READ_AHEAD + 64 * l, _MM_HINT_T0);
            a = _mm256_add_epi64(a, _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(p + i)),
                                                     _mm256_loadu_si256((const __m256i *)(p + i + 32))));
            b = _mm256_add_epi64(b, _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(p + i + 64)),
                                                     _mm256_loadu_si256((const __m256i *)(p + i + 96))));
            c = _mm256_add_epi64(c, _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(p + i + 128)),
                                                     _mm256_loadu_si256((const __m256i *)(p + i + 160))));
            d = _mm256_add_epi64(d, _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(p + i + 192)),
                                                     _mm256_loadu_si256((const __m256i *)(p + i + 224))));
        }
        long long v[4];
        _mm256_storeu_si256((__m256i *)v, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
        s += (double)(v[0] + v[1] + v[2] + v[3]);
    }
    return s;
}

/* read_bytes() over a bf16 matrix's mapping. */
static double read_all(const Mamba2Tensor *W, int threads, int prefetched) {
    return read_bytes(W->data, (size_t)W->shape[0] * W->shape[1] * 2, threads, prefetched);
}

/* The q8 or q4 rounds: every matrix quantized, then cpu_qlinear() of one token against a plain read
 * of the quantized bytes. Returns the read's sums (kept alive by the caller). */
static double quantized_rounds(const Mamba2Tensor **mats, int n, Mamba2WeightFormat f, const float *x, float *y,
                               int threads, int rounds) {
    CpuQMatrix *q = calloc(n, sizeof *q);
    double bytes = 0, sink = 0;
    int64_t most_cols = 0;
    Mamba2Error e;
    for (int i = 0; i < n; i++) {
        if (cpu_qmatrix_quantize(mats[i], f, threads, &q[i], &e)) {
            fprintf(stderr, "%s\n", e.msg);
            exit(1);
        }
        bytes += (double)q[i].bytes;
        if (mats[i]->shape[1] > most_cols) most_cols = mats[i]->shape[1];
    }
    void *scratch = NULL;
    if (posix_memalign(&scratch, 64, cpu_qlinear_scratch_bytes(most_cols, 1))) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    const char *name = f == MAMBA2_WEIGHTS_Q8 ? "q8" : "q4";
    printf("%.2f GB of %s weights a decode step\n", bytes / 1e9, name);
    for (int i = 0; i < n; i++) sink += read_bytes((const char *)q[i].data, q[i].bytes, threads, 0);
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int i = 0; i < n; i++)
            cpu_qlinear(cpu_isa_active(), &q[i], x, 0, 1, y, 0, 0, scratch, threads, MAMBA2_PRECISION_DEFAULT);
        const double t_product = now() - t0;
        double t_read[2]; /* plain, prefetched */
        for (int pf = 0; pf < 2; pf++) {
            t0 = now();
            for (int i = 0; i < n; i++) sink += read_bytes((const char *)q[i].data, q[i].bytes, threads, pf);
            t_read[pf] = now() - t0;
        }
        printf("round %d: %s product %.1f GB/s, plain read %.1f GB/s, prefetched read %.1f GB/s; product / read %.2f / %.2f\n",
               r + 1, name, bytes / t_product / 1e9, bytes / t_read[0] / 1e9, bytes / t_read[1] / 1e9,
               t_read[0] / t_product, t_read[1] / t_product);
    }
    for (int i = 0; i < n; i++) cpu_qmatrix_free(&q[i]);
    free(q), free(scratch);
    return sink;
}

/* The packed rounds: every matrix repacked (packed_bf16.h), then in each round the decode product
 * on the checkpoint's mapping (cpu_gemv()) and on the packed copy (cpu_packed_bf16_gemv()), both at
 * default precision, and the prefetched read of each (the packed copy lies in other pages). */
static double packed_rounds(const Mamba2Tensor **mats, int n, const float *x, float *y, int threads, int rounds) {
    CpuPackedBf16 *p = calloc(n, sizeof *p);
    double bytes = 0, sink = 0;
    Mamba2Error e;
    for (int i = 0; i < n; i++) {
        if (cpu_packed_bf16_pack(mats[i], threads, &p[i], &e)) {
            fprintf(stderr, "%s\n", e.msg);
            exit(1);
        }
        bytes += (double)mats[i]->shape[0] * mats[i]->shape[1] * 2;
    }
    for (int i = 0; i < n; i++) sink += read_bytes((const char *)p[i].data, p[i].bytes, threads, 0);
    for (int r = 0; r < rounds; r++) {
        double t[4] = {0, 0, 0, 0}; /* GEMV on the mapping, on the packed copy; prefetched read of each */
        for (int i = 0; i < n; i++) {
            double t0 = now();
            cpu_gemv(cpu_isa_active(), mats[i], x, 0, 1, y, 0, 0, threads, MAMBA2_PRECISION_DEFAULT);
            t[0] += now() - t0, t0 = now();
            cpu_packed_bf16_gemv(cpu_isa_active(), &p[i], x, 0, 1, y, 0, 0, threads, MAMBA2_PRECISION_DEFAULT);
            t[1] += now() - t0, t0 = now();
            sink += read_all(mats[i], threads, 1);
            t[2] += now() - t0, t0 = now();
            sink += read_bytes((const char *)p[i].data, p[i].bytes, threads, 1);
            t[3] += now() - t0;
        }
        printf("round %d: GEMV mapping %.1f GB/s, packed %.1f GB/s; prefetched read mapping %.1f GB/s, packed %.1f GB/s; "
               "GEMV / read: mapping %.2f, packed %.2f\n",
               r + 1, bytes / t[0] / 1e9, bytes / t[1] / 1e9, bytes / t[2] / 1e9, bytes / t[3] / 1e9, t[2] / t[0], t[3] / t[1]);
    }
    for (int i = 0; i < n; i++) cpu_packed_bf16_free(&p[i]);
    free(p);
    return sink;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: %s DIR [THREADS (2)] [ROUNDS (6)] [bf16 (default) | q8 | q4]   (an AVX2 or AVX-512 CPU; a bf16 checkpoint)\n",
                argv[0]);
        return 2;
    }
    if (!__builtin_cpu_supports("avx2")) {
        fprintf(stderr, "%s: the plain read needs AVX2, which this CPU does not have\n", argv[0]);
        return 1;
    }
    Mamba2Model m;
    Mamba2Error e;
    memset(&m, 0, sizeof m);
    if (mamba2_model_load(argv[1], &m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    const int L = m.cfg.n_layer, threads = argc > 2 ? atoi(argv[2]) : 2;
    int rounds = argc > 3 ? atoi(argv[3]) : 6;
    const char *format = argc > 4 ? argv[4] : "bf16";
    if (strcmp(format, "bf16") && strcmp(format, "q8") && strcmp(format, "q4") && strcmp(format, "packed")) {
        fprintf(stderr, "%s: weights '%s': expected bf16, q8 or q4\n", argv[0], format);
        return 2;
    }
    const Mamba2Tensor **mats = malloc(sizeof *mats * (2 * L + 1)); /* [2L + 1] in the order decode reads them */
    int n = 0;
    for (int l = 0; l < L; l++) mats[n++] = &m.w.layers[l].in_proj, mats[n++] = &m.w.layers[l].out_proj;
    mats[n++] = &m.w.lm_head;
    double bytes = 0, sink = 0;
    int64_t most_cols = 0, most_rows = 0;
    for (int i = 0; i < n; i++) {
        if (mats[i]->dtype != MAMBA2_BF16) {
            fprintf(stderr, "%s: %s is not bf16\n", argv[0], mats[i]->name);
            return 1;
        }
        bytes += (double)mats[i]->shape[0] * mats[i]->shape[1] * 2;
        if (mats[i]->shape[1] > most_cols) most_cols = mats[i]->shape[1];
        if (mats[i]->shape[0] > most_rows) most_rows = mats[i]->shape[0];
    }
    float *x = malloc(sizeof(float) * most_cols), *y = malloc(sizeof(float) * most_rows); /* [K], [rows] */
    for (int64_t i = 0; i < most_cols; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    printf("%s: %d layers, %.2f GB of bf16 weights a decode step, %d threads\n", argv[1], L, bytes / 1e9, threads);
    if (!strcmp(format, "packed")) {
        sink = packed_rounds(mats, n, x, y, threads, rounds);
        rounds = 0;
    } else if (strcmp(format, "bf16")) {
        sink = quantized_rounds(mats, n, !strcmp(format, "q8") ? MAMBA2_WEIGHTS_Q8 : MAMBA2_WEIGHTS_Q4, x, y, threads, rounds);
        rounds = 0; /* the bf16 rounds are not run */
    }
    for (int i = 0; i < n; i++) sink += read_all(mats[i], threads, 0); /* fault every page in once */
    static const char *kinds[3] = {"in_proj", "out_proj", "lm_head"};
    const CpuIsa isa = cpu_isa_active();
    const int has_avx512 = __builtin_cpu_supports("avx512f");
    for (int r = 0; r < rounds; r++) {
        /* [kind]: seconds of the default GEMV, of the prefetched read, and bytes, by kind of matrix */
        double t_gemv[3] = {0, 0, 0}, t_pf[3] = {0, 0, 0}, b_kind[3] = {0, 0, 0}, t_plain = 0, t_fast = 0, t_fma = 0;
        for (int i = 0; i < n; i++) {
            const int kind = i == n - 1 ? 2 : i % 2;
            double t0 = now();
            cpu_gemv(isa, mats[i], x, 0, 1, y, 0, 0, threads, MAMBA2_PRECISION_DEFAULT);
            t_gemv[kind] += now() - t0;
            t0 = now();
            sink += read_all(mats[i], threads, 1);
            t_pf[kind] += now() - t0;
            b_kind[kind] += (double)mats[i]->shape[0] * mats[i]->shape[1] * 2;
        }
        double t0 = now();
        for (int i = 0; i < n; i++) sink += read_all(mats[i], threads, 0);
        t_plain = now() - t0;
        t0 = now();
        for (int i = 0; i < n; i++) cpu_gemv(isa, mats[i], x, 0, 1, y, 0, 0, threads, MAMBA2_PRECISION_FAST);
        t_fast = now() - t0;
        if (has_avx512) { /* the other product bf16_decode_choice.h times on AVX512_BF16 CPUs */
            t0 = now();
            for (int i = 0; i < n; i++) cpu_gemv(CPU_ISA_AVX512, mats[i], x, 0, 1, y, 0, 0, threads, MAMBA2_PRECISION_DEFAULT);
            t_fma = now() - t0;
        }
        const double t_default = t_gemv[0] + t_gemv[1] + t_gemv[2], t_prefetched = t_pf[0] + t_pf[1] + t_pf[2];
        printf("round %d: GEMV default %.1f GB/s, fast %.1f GB/s, avx512 (FMA) %.1f GB/s (0: no AVX-512); read plain %.1f GB/s, "
               "prefetched %.1f GB/s; default / read %.2f / %.2f\n        default / prefetched read by matrix:",
               r + 1, bytes / t_default / 1e9, bytes / t_fast / 1e9, has_avx512 ? bytes / t_fma / 1e9 : 0, bytes / t_plain / 1e9,
               bytes / t_prefetched / 1e9, t_plain / t_default, t_prefetched / t_default);
        for (int k = 0; k < 3; k++)
            printf(" %s %.1f / %.1f GB/s (%.2f)%s", kinds[k], b_kind[k] / t_gemv[k] / 1e9, b_kind[k] / t_pf[k] / 1e9,
                   t_pf[k] / t_gemv[k], k < 2 ? "," : "\n");
    }
    free(x), free(y), free(mats);
    mamba2_model_free(&m);
    return sink == 0.5; /* never: keeps the read's sums alive */
}
