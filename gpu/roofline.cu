/**
 * @file roofline.cu
 * @brief The GPU's two ceilings, measured: device-to-device copy bandwidth and cuBLAS bf16 GEMM rate.
 */
#include <algorithm>
#include <vector>

#include "kernels.cuh"

extern "C" {
#include "gpu.h"
}

/* Fill with pseudo-random bf16 in [-1, 1) (never zeros: zeros run faster than real data). */
__global__ void fill_random_bf16(bf16 *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 16, x *= 0x7feb352du, x ^= x >> 15, x *= 0x846ca68bu, x ^= x >> 16;
        p[i] = __float2bfloat16((x >> 8) * (2.0f / 16777216.0f) - 1.0f);
    }
}

static double median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

extern "C" int mamba2_gpu_roofline(double *copy_gbps, double *gemm_gflops, Mamba2Error *err) {
    const size_t bytes = 4ull << 30; /* 4 GiB: far beyond the 50 MB L2 */
    const int n = 8192, reps = 10;
    void *a = NULL, *b = NULL, *c = NULL;
    cudaEvent_t e0, e1;
    CUDA_TRY(cudaEventCreate(&e0));
    CUDA_TRY(cudaEventCreate(&e1));
    CUDA_TRY(cudaMalloc(&a, bytes));
    CUDA_TRY(cudaMalloc(&b, bytes));
    fill_random_bf16<<<1024, 256>>>((bf16 *)a, bytes / 2, 1);
    std::vector<float> ms;
    for (int i = 0; i < reps + 2; i++) {
        float t;
        CUDA_TRY(cudaEventRecord(e0));
        CUDA_TRY(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
        CUDA_TRY(cudaEventRecord(e1));
        CUDA_TRY(cudaEventSynchronize(e1));
        CUDA_TRY(cudaEventElapsedTime(&t, e0, e1));
        if (i >= 2) ms.push_back(t); /* two warm-ups */
    }
    *copy_gbps = 2.0 * bytes / (median(ms) * 1e-3) / 1e9; /* bytes read + bytes written */
    cudaFree(b);

    /* bf16 GEMM n³ on random data, fp32 accumulation, bf16 output (as in prefill) */
    cublasHandle_t h;
    CUBLAS_TRY(cublasCreate(&h));
    CUDA_TRY(cudaMalloc(&c, (size_t)n * n * 2));
    bf16 *A = (bf16 *)a, *B = A + (size_t)n * n;
    fill_random_bf16<<<1024, 256>>>(B, (size_t)n * n, 2);
    float alpha = 1, beta = 0;
    ms.clear();
    for (int i = 0; i < reps + 3; i++) {
        float t;
        CUDA_TRY(cudaEventRecord(e0));
        CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n,
                                &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        CUDA_TRY(cudaEventRecord(e1));
        CUDA_TRY(cudaEventSynchronize(e1));
        CUDA_TRY(cudaEventElapsedTime(&t, e0, e1));
        if (i >= 3) ms.push_back(t);
    }
    *gemm_gflops = 2.0 * n * (double)n * n / (median(ms) * 1e-3) / 1e9;
    cublasDestroy(h);
    cudaFree(a);
    cudaFree(c);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 0;
}
