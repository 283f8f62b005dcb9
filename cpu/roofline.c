/**
 * @file roofline.c
 * @brief Measures the streaming read bandwidth and the sgemm rate of this machine (see roofline.h).
 */
#include "roofline.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16_dot_rate.h"
#include "blas_core.h"
#include "gemm_bf16.h"
#include "gemv_bf16.h"
#include "qmatrix.h"

/** Attributes of the AVX2 read loop. */
#define AVX2_TARGET __attribute__((target("avx2")))

/* Σ of the n 32-bit words at a (any 4-byte alignment) as integers, with four independent AVX2
 * accumulators (the loads are what we time; integer adds, so that any bits, a weight matrix's
 * included, cost the same); with @p ahead, each 128 bytes also prefetch the two lines
 * CPU_DECODE_AHEAD bytes further into L1 and CPU_DECODE_AHEAD_L2 bytes (or MAMBA2_CPU_AHEAD_L2's) further
 * into L2, as the decode products prefetch their stream: the ceiling keeps the L2 prefetch even where
 * the load trial left it out of the products (the read is the best of these passes and plain ones). */
static AVX2_TARGET uint32_t sum_avx2(const float *a, size_t n, int ahead) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    const int64_t l2 = !ahead ? 0 : cpu_decode_ahead_l2_asked() ? cpu_decode_ahead_l2() : CPU_DECODE_AHEAD_L2;
    for (; i + 32 <= n; i += 32) {
        if (ahead) /* never faults: past the end is harmless */
            _mm_prefetch((const char *)(a + i) + CPU_DECODE_AHEAD, _MM_HINT_T0),
                _mm_prefetch((const char *)(a + i + 16) + CPU_DECODE_AHEAD, _MM_HINT_T0);
        if (l2) cpu_prefetch_l2((const char *)(a + i) + l2), cpu_prefetch_l2((const char *)(a + i + 16) + l2);
        s0 = _mm256_add_epi32(s0, _mm256_loadu_si256((const __m256i *)(a + i)));
        s1 = _mm256_add_epi32(s1, _mm256_loadu_si256((const __m256i *)(a + i + 8)));
        s2 = _mm256_add_epi32(s2, _mm256_loadu_si256((const __m256i *)(a + i + 16)));
        s3 = _mm256_add_epi32(s3, _mm256_loadu_si256((const __m256i *)(a + i + 24)));
    }
    uint32_t out[8], s = 0;
    _mm256_storeu_si256((__m256i *)out, _mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3)));
    for (int k = 0; k < 8; k++) s += out[k];
    for (; i < n; i++) {
        uint32_t w;
        memcpy(&w, a + i, sizeof w);
        s += w;
    }
    return s;
}

/* The same sum in plain C (four accumulators, so the adds do not serialise). */
static uint32_t sum_scalar(const float *a, size_t n) {
    uint32_t s[4] = {0, 0, 0, 0}, w;
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) memcpy(&w, a + i + k, sizeof w), s[k] += w;
    for (; i < n; i++) memcpy(&w, a + i, sizeof w), s[0] += w;
    return s[0] + s[1] + s[2] + s[3];
}

double cpu_read_bandwidth(int n_threads, size_t bytes, int reps) {
    size_t n = bytes / sizeof(float) / 64 * 64;
    float *a = NULL;
    if (posix_memalign((void **)&a, 64, n * sizeof *a)) return -1;
    int avx2 = cpu_isa_active() >= CPU_ISA_AVX2;
    double best = 0;
    volatile uint32_t sink = 0;
    /* First touch by the threads that will read each part; non-zero values. */
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023) * 1e-3f;
    for (int r = -1; r < 2 * reps; r++) { /* one warm-up pass, then plain and prefetched passes in turn */
        const int ahead = r & 1;
        double t0 = omp_get_wtime();
#pragma omp parallel num_threads(n_threads)
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            size_t per = (n / nt + 63) / 64 * 64, i0 = id * per, i1 = i0 + per < n ? i0 + per : n;
            uint32_t s = i0 < i1 ? (avx2 ? sum_avx2(a + i0, i1 - i0, ahead) : sum_scalar(a + i0, i1 - i0)) : 0;
#pragma omp atomic
            sink += s;
        }
        double gbps = n * sizeof(float) / (omp_get_wtime() - t0) / 1e9;
        if (r >= 0 && gbps > best) best = gbps;
    }
    free(a);
    return best;
}

/** Bytes of a region a thread reads at a time in cpu_read_bandwidth_of(). */
#define REGION_BLOCK ((size_t)2 << 20)

double cpu_read_bandwidth_of(const void *const *regions, const size_t *bytes, int n, int n_threads, int reps) {
    int avx2 = cpu_isa_active() >= CPU_ISA_AVX2;
    double best = 0, total = 0;
    volatile uint32_t sink = 0;
    for (int i = 0; i < n; i++) total += (double)(bytes[i] / REGION_BLOCK * REGION_BLOCK);
    if (total <= 0) return 0;
    for (int r = 0; r < 2 * reps; r++) { /* plain and prefetched passes in turn */
        const int ahead = r & 1;
        double t0 = omp_get_wtime();
        for (int i = 0; i < n; i++) {
            const float *a = regions[i];
            const int64_t blocks = (int64_t)(bytes[i] / REGION_BLOCK), per = (int64_t)(REGION_BLOCK / sizeof *a);
            uint32_t s = 0;
            /* whole 2 MiB blocks handed out on demand, as the decode products hand out rows */
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1) reduction(+ : s)
            for (int64_t b = 0; b < blocks; b++) s += avx2 ? sum_avx2(a + b * per, (size_t)per, ahead) : sum_scalar(a + b * per, (size_t)per);
            sink += s;
        }
        double gbps = total / (omp_get_wtime() - t0) / 1e9;
        if (gbps > best) best = gbps;
    }
    return best;
}

/* Deterministic values in [-1, 1) for the GEMM operands (a multiplicative hash of the index). */
static float operand_value(size_t i) { return (float)((i * 2654435761u) >> 20 & 1023) / 512.0f - 1.0f; }

double cpu_gemm_rate(int n_threads, int M, int N, int K, int reps) {
    size_t per = (size_t)M * K + (size_t)N * K + (size_t)M * N;
    float *buf = malloc(per * n_threads * sizeof *buf);
    if (!buf) return -1;
    for (size_t i = 0; i < per * n_threads; i++) buf[i] = operand_value(i);
    cpu_blas_single_threaded();
    double best = 0;
    for (int r = -1; r < reps; r++) {
        double t0 = omp_get_wtime();
#pragma omp parallel num_threads(n_threads)
        {
            float *X = buf + per * omp_get_thread_num(), *W = X + (size_t)M * K, *Y = W + (size_t)N * K;
            /* Y [M, N] = X [M, K] · W [N, K]ᵀ, as a prefill panel */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, X, K, W, K, 0.0f, Y, N);
        }
        double gflops = 2.0 * M * N * K * n_threads / (omp_get_wtime() - t0) / 1e9;
        if (r >= 0 && gflops > best) best = gflops;
    }
    free(buf);
    return best;
}

double cpu_linear_gemm_rate(int n_threads, int M, int N, int K, int reps, Mamba2Precision precision) {
    float *X = malloc(((size_t)M * K + (size_t)M * N) * sizeof *X);
    uint16_t *w = malloc((size_t)N * K * sizeof *w);
    float *scratch = malloc(cpu_linear_scratch_floats(n_threads, K) * sizeof *scratch);
    if (!X || !w || !scratch) {
        free(X), free(w), free(scratch);
        return -1;
    }
    float *Y = X + (size_t)M * K;
    for (size_t i = 0; i < (size_t)M * K; i++) X[i] = operand_value(i);
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = mamba2_f32_to_bf16(operand_value(i * 40503u + 1));
    Mamba2Tensor W = {"roofline", "memory", MAMBA2_BF16, 2, {N, K}, w};
    cpu_blas_single_threaded();
    double best = 0;
    for (int r = -1; r < reps; r++) {
        double t0 = omp_get_wtime();
        /* Y [M, N] = X [M, K] · W [N, K]ᵀ, exactly as prefill calls it */
        cpu_linear(&W, X, K, M, Y, N, 0, scratch, n_threads, precision);
        double gflops = 2.0 * M * N * K / (omp_get_wtime() - t0) / 1e9;
        if (r >= 0 && gflops > best) best = gflops;
    }
    free(X), free(w), free(scratch);
    return best;
}

/* The tier cpu_linear() runs for bf16 weights (the checkpoints' dtype) at @p precision. */
static CpuGemmTier bf16_tier(Mamba2Precision precision) {
    Mamba2Tensor W = {"roofline", "memory", MAMBA2_BF16, 2, {1, 1}, NULL};
    return cpu_linear_tier(&W, precision);
}

const char *cpu_gemm_kernel_name(Mamba2Precision precision) {
    static char name[96];
    int fast = precision == MAMBA2_PRECISION_FAST;
    switch (bf16_tier(precision)) {
    case CPU_GEMM_AMX: return fast ? "amx: AMX bf16, activations rounded to bf16" : "amx: AMX bf16, activations split in two";
    case CPU_GEMM_AVX512BF16:
        return fast ? "avx512bf16: vdpbf16ps, activations rounded to bf16"
                    : "avx512bf16: vdpbf16ps, activations split in two";
    case CPU_GEMM_AVX512:
        if (fast && cpu_gemm_tier_active() == CPU_GEMM_AVX512BF16) { /* fast asked, vdpbf16ps measured slower */
            snprintf(name, sizeof name, "avx512: fp32 FMA on widened weight panels (vdpbf16ps measured at %.2fx their multiply-adds)",
                     cpu_bf16_dot_gain());
            return name;
        }
        return "avx512: fp32 FMA on widened weight panels";
    case CPU_GEMM_AVX2: return "avx2: fp32 FMA on widened weight panels";
    default: snprintf(name, sizeof name, "sgemm: OpenBLAS sgemm, %s kernels", cpu_blas_core_name()); return name;
    }
}

double cpu_qlinear_gemm_rate(int n_threads, int M, int N, int K, int reps, Mamba2WeightFormat weights,
                             Mamba2Precision precision) {
    float *X = malloc(((size_t)M * K + (size_t)M * N) * sizeof *X);
    uint16_t *w = malloc((size_t)N * K * sizeof *w);
    void *scratch = NULL;
    CpuQMatrix q = {0};
    Mamba2Error e = {{0}};
    double best = -1;
    if (X && w && !posix_memalign(&scratch, 64, cpu_qlinear_scratch_bytes(K, M))) {
        float *Y = X + (size_t)M * K;
        for (size_t i = 0; i < (size_t)M * K; i++) X[i] = operand_value(i);
        for (size_t i = 0; i < (size_t)N * K; i++) w[i] = mamba2_f32_to_bf16(operand_value(i * 40503u + 1));
        Mamba2Tensor W = {"roofline", "memory", MAMBA2_BF16, 2, {N, K}, w};
        if (!cpu_qmatrix_quantize(&W, weights, n_threads, &q, &e))
            for (int r = -1; r < reps; r++) {
                double t0 = omp_get_wtime();
                /* Y [M, N] = X [M, K] · W [N, K]ᵀ, exactly as prefill calls it */
                cpu_qlinear(cpu_isa_active(), &q, X, K, M, Y, N, 0, scratch, n_threads, precision);
                double gflops = 2.0 * M * N * K / (omp_get_wtime() - t0) / 1e9;
                if (r >= 0 && gflops > best) best = gflops;
            }
    }
    cpu_qmatrix_free(&q);
    free(X), free(w), free(scratch);
    return best;
}

int cpu_roofline(int n_threads, Mamba2Precision precision, Mamba2WeightFormat weights, double *read_gbps,
                 double *gemm_gflops, Mamba2Error *err) {
    *read_gbps = cpu_read_bandwidth(n_threads, (size_t)1 << 30, 5);
    *gemm_gflops = weights != MAMBA2_WEIGHTS_STORED ? cpu_qlinear_gemm_rate(n_threads, 512, 2048, 4096, 3, weights, precision)
                   : bf16_tier(precision) != CPU_GEMM_SGEMM
                       ? cpu_linear_gemm_rate(n_threads, 512, 2048, 4096, 3, precision)
                       : cpu_gemm_rate(n_threads, 512, CPU_GEMM_PANEL_ROWS, 4096, 5);
    if (*read_gbps < 0 || *gemm_gflops < 0) return mamba2_fail(err, "out of memory for the roofline buffers");
    return 0;
}
