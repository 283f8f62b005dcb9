/**
 * @file vexp.c
 * @brief Vector exp / SiLU (see vexp.h): AVX2 + FMA with run-time dispatch, scalar expf otherwise.
 */
#include "vexp.h"

#include <immintrin.h>
#include <math.h>

#include "gemv_bf16.h"

/** Attributes of the inlined AVX2 helpers. */
#define AVX2_INLINE __attribute__((always_inline, target("avx2,fma")))
/** Attributes of the AVX2 loops. */
#define AVX2_TARGET __attribute__((target("avx2,fma")))

/* exp(x) for 8 lanes: x = n·ln2 + r with n = round(x / ln2), |r| ≤ ln2/2;
 * exp(r) ≈ 1 + r + r²·P(r) (Cephes expf coefficients); exp(x) = 2ⁿ · exp(r), 2ⁿ built in the exponent bits. */
static inline AVX2_INLINE __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x − n·ln2, with ln2 split in two parts so that n·ln2_hi is exact */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e, _mm256_castsi256_ps(pow2n));
}

/* silu(x) = x / (1 + exp(−x)) for 8 lanes. */
static inline AVX2_INLINE __m256 silu8(__m256 x) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static AVX2_TARGET void exp_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = expf(x[i]);
}

static AVX2_TARGET void silu_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, silu8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

static AVX2_TARGET void mul_silu_avx2(float *y, const float *z, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), silu8(_mm256_loadu_ps(z + i))));
    for (; i < n; i++) y[i] *= z[i] / (1.0f + expf(-z[i]));
}

static int have_avx2(void) {
    static int v = -1; /* detected once; a benign race (every thread writes the same value) */
    if (v < 0) v = cpu_isa_active() >= CPU_ISA_AVX2;
    return v;
}

void cpu_exp_inplace(float *x, int64_t n) {
    if (have_avx2()) exp_avx2(x, n);
    else
        for (int64_t i = 0; i < n; i++) x[i] = expf(x[i]);
}

void cpu_silu_inplace(float *x, int64_t n) {
    if (have_avx2()) silu_avx2(x, n);
    else
        for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void cpu_mul_silu(float *y, const float *z, int64_t n) {
    if (have_avx2()) mul_silu_avx2(y, z, n);
    else
        for (int64_t i = 0; i < n; i++) y[i] *= z[i] / (1.0f + expf(-z[i]));
}
