/**
 * @file test_hooks.cu
 * @brief Single kernels on host arrays, so the tests can hold each one against the reference.
 */
#include <algorithm>
#include <vector>

#include "kernels.cuh"

extern "C" {
#include "gpu.h"
}

__global__ void fill_random_bf16(bf16 *p, size_t n, uint32_t seed); /* roofline.cu */

/* Device arrays for one SSD call laid out as in prefill: xbc [T, conv_dim] = [x | B | C]. */
struct SSDBuffers {
    GpuDims g;
    bf16 *xbc = NULL;
    float *dt = NULL, *A = NULL, *D = NULL, *state = NULL, *y = NULL;
    void *work = NULL;
    ~SSDBuffers() {
        cudaFree(xbc), cudaFree(dt), cudaFree(A), cudaFree(D), cudaFree(state), cudaFree(y), cudaFree(work);
    }
};

static GpuDims ssd_dims(SSDDims d, int Q) {
    GpuDims g = {};
    g.H = d.H, g.P = d.P, g.N = d.N, g.G = d.G, g.Q = Q, g.L = 1;
    g.d_in = d.H * d.P, g.conv_dim = g.d_in + 2 * d.G * d.N;
    return g;
}

static int ssd_alloc(SSDBuffers &b, SSDDims d, int Q, Mamba2Error *err) {
    b.g = ssd_dims(d, Q);
    size_t T = d.T;
    CUDA_TRY(cudaMalloc(&b.xbc, T * b.g.conv_dim * 2));
    CUDA_TRY(cudaMalloc(&b.dt, T * d.H * 4));
    CUDA_TRY(cudaMalloc(&b.A, d.H * 4));
    CUDA_TRY(cudaMalloc(&b.D, d.H * 4));
    CUDA_TRY(cudaMalloc(&b.state, (size_t)d.H * d.P * d.N * 4));
    CUDA_TRY(cudaMalloc(&b.y, T * b.g.d_in * 4));
    CUDA_TRY(cudaMalloc(&b.work, ssd_work_bytes(b.g, d.T)));
    return 0;
}

extern "C" int mamba2_gpu_ssd_chunked(SSDDims d, int Q, const float *x, const float *dt, const float *A,
                                      const float *B, const float *C, const float *D, float *state, float *y,
                                      Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    SSDBuffers b;
    if (ssd_alloc(b, d, Q, err)) return -1;
    const GpuDims &g = b.g;
    size_t T = d.T, GN = (size_t)d.G * d.N;
    std::vector<uint16_t> xbc(T * g.conv_dim);
    std::vector<float> dtT((size_t)d.H * T), y_poison(T * g.d_in, NAN);
    for (size_t t = 0; t < T; t++) {
        for (int i = 0; i < g.d_in; i++) xbc[t * g.conv_dim + i] = mamba2_f32_to_bf16(x[t * g.d_in + i]);
        for (size_t i = 0; i < GN; i++) {
            xbc[t * g.conv_dim + g.d_in + i] = mamba2_f32_to_bf16(B[t * GN + i]);
            xbc[t * g.conv_dim + g.d_in + GN + i] = mamba2_f32_to_bf16(C[t * GN + i]);
        }
        for (int h = 0; h < d.H; h++) dtT[(size_t)h * T + t] = dt[t * d.H + h]; /* [T, H] → [H, T] */
    }
    std::vector<float> Dz(d.H, 0.0f);
    CUDA_TRY(cudaMemcpy(b.xbc, xbc.data(), xbc.size() * 2, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(b.dt, dtT.data(), dtT.size() * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(b.A, A, d.H * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(b.D, D ? D : Dz.data(), d.H * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(b.state, state, (size_t)d.H * d.P * d.N * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(b.y, y_poison.data(), y_poison.size() * 4, cudaMemcpyHostToDevice)); /* poison */
    launch_ssd_chunked(g, b.xbc, b.dt, b.A, b.D, d.T, b.state, 0, ssd_work_carve(g, d.T, b.work), b.y, 0);
    LAUNCH_TRY();
    CUDA_TRY(cudaDeviceSynchronize());
    CUDA_TRY(cudaMemcpy(y, b.y, T * g.d_in * 4, cudaMemcpyDeviceToHost));
    CUDA_TRY(cudaMemcpy(state, b.state, (size_t)d.H * d.P * d.N * 4, cudaMemcpyDeviceToHost));
    return 0;
}

__global__ void fill_dt(float *dt, size_t n) { /* dt in [0.001, 0.1], log-spread */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dt[i] = 0.001f * __expf(4.6f * ((i * 2654435761u) % 1000) / 1000.0f);
}

extern "C" double mamba2_gpu_time_ssd_chunked(SSDDims d, int Q, int reps, double parts_ms[3], Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    SSDBuffers b;
    if (ssd_alloc(b, d, Q, err)) return -1;
    const GpuDims &g = b.g;
    fill_random_bf16<<<1024, 256>>>(b.xbc, (size_t)d.T * g.conv_dim, 7);
    fill_dt<<<256, 256>>>(b.dt, (size_t)d.T * d.H);
    std::vector<float> A(d.H), D(d.H, 1.0f);
    for (int h = 0; h < d.H; h++) A[h] = -(1.0f + 15.0f * h / d.H);
    if (cudaMemcpy(b.A, A.data(), d.H * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(b.D, D.data(), d.H * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemset(b.state, 0, (size_t)d.H * d.P * d.N * 4) != cudaSuccess)
        return mamba2_fail(err, "cannot set up the SSD timing inputs"), -1;
    SSDWork w = ssd_work_carve(g, d.T, b.work);
    cudaEvent_t marks[4];
    for (int k = 0; k < 4; k++) cudaEventCreate(&marks[k]);
    std::vector<float> ms, parts[3];
    for (int i = 0; i < reps + 3; i++) {
        launch_ssd_chunked(g, b.xbc, b.dt, b.A, b.D, d.T, b.state, 0, w, b.y, 0, marks);
        cudaEventSynchronize(marks[3]);
        float t;
        cudaEventElapsedTime(&t, marks[0], marks[3]);
        if (i < 3) continue;
        ms.push_back(t);
        for (int k = 0; k < 3; k++) {
            cudaEventElapsedTime(&t, marks[k], marks[k + 1]);
            parts[k].push_back(t);
        }
    }
    for (int k = 0; k < 4; k++) cudaEventDestroy(marks[k]);
    for (int k = 0; k < 3 && parts_ms; k++) {
        std::sort(parts[k].begin(), parts[k].end());
        parts_ms[k] = parts[k][parts[k].size() / 2];
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mamba2_fail(err, "SSD timing: %s", cudaGetErrorString(e)), -1;
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

extern "C" int mamba2_gpu_gemv(int rows, int cols, int nb, const uint16_t *W, const float *x, float *out,
                               Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    if (nb < 1 || nb > 4) return mamba2_fail(err, "gemv: nb must be 1..4");
    bf16 *dW;
    float *dx, *dout;
    CUDA_TRY(cudaMalloc(&dW, (size_t)rows * cols * 2));
    CUDA_TRY(cudaMalloc(&dx, (size_t)nb * cols * 4));
    CUDA_TRY(cudaMalloc(&dout, (size_t)nb * rows * 4));
    std::vector<float> poison((size_t)nb * rows, NAN);
    CUDA_TRY(cudaMemcpy(dW, W, (size_t)rows * cols * 2, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dx, x, (size_t)nb * cols * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dout, poison.data(), poison.size() * 4, cudaMemcpyHostToDevice));
    GemvArgs a = {};
    a.W = dW, a.rows = rows, a.cols = cols, a.nb = nb, a.x = dx, a.out = dout;
    launch_gemv(PRO_NONE, EPI_STORE, a, 0);
    LAUNCH_TRY();
    CUDA_TRY(cudaDeviceSynchronize());
    CUDA_TRY(cudaMemcpy(out, dout, (size_t)nb * rows * 4, cudaMemcpyDeviceToHost));
    cudaFree(dW), cudaFree(dx), cudaFree(dout);
    return 0;
}

extern "C" double mamba2_gpu_time_gemv(int rows, int cols, int nb, int reps, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    /* rotate over enough weight copies to defeat the 50 MB L2 */
    int copies = (int)(1 + (512ull << 20) / ((size_t)rows * cols * 2));
    bf16 *W;
    float *x, *out;
    if (cudaMalloc(&W, (size_t)copies * rows * cols * 2) != cudaSuccess ||
        cudaMalloc(&x, (size_t)nb * cols * 4) != cudaSuccess || cudaMalloc(&out, (size_t)nb * rows * 4) != cudaSuccess)
        return mamba2_fail(err, "gemv timing: out of memory"), -1;
    fill_random_bf16<<<1024, 256>>>(W, (size_t)copies * rows * cols, 3);
    fill_random_bf16<<<64, 256>>>((bf16 *)x, (size_t)nb * cols * 2, 4); /* any finite bits will do */
    GemvArgs a = {};
    a.rows = rows, a.cols = cols, a.nb = nb, a.x = x, a.out = out;
    /* as in a decode step: launched back to back with programmatic dependent launch, so that each
     * launch's ramp overlaps the previous one's tail; the time per launch of `copies` launches
     * (each on its own weight copy), median over the batches */
    cudaStream_t st;
    cudaEvent_t e0, e1;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    std::vector<float> ms;
    int batches = reps / copies > 5 ? reps / copies : 5;
    for (int i = 0; i < batches + 1; i++) {
        float t;
        cudaEventRecord(e0, st);
        for (int c = 0; c < copies; c++) {
            a.W = W + (size_t)c * rows * cols;
            launch_gemv(PRO_NONE, EPI_STORE, a, st);
        }
        cudaEventRecord(e1, st);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t, e0, e1);
        if (i >= 1) ms.push_back(t / copies);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1), cudaStreamDestroy(st);
    cudaFree(W), cudaFree(x), cudaFree(out);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mamba2_fail(err, "gemv timing: %s", cudaGetErrorString(e)), -1;
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}
