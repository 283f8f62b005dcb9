/**
 * @file test_hooks.cu
 * @brief Single kernels on host arrays, so the tests can hold each one against the reference.
 */
#include <math.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include <cublasLt.h>

#include "host_copy.cuh"
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

extern "C" void mamba2_gpu_set_ssd_shapes(int walk_cols, int scan_waves) { ssd_walk_set_cols(walk_cols), ssd_scan_set_waves(scan_waves); }

extern "C" int mamba2_gpu_gated_norm(int T, int G, int gs, int warps, const float *y, const uint16_t *z, const float *w,
                                     uint16_t *out, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    GpuDims g = {};
    g.G = G, g.d_in = G * gs, g.conv_dim = g.d_in, g.eps = 1e-5f; /* z: the first d_in of rows of 2 d_in */
    const size_t ny = (size_t)T * g.d_in, nz = 2 * ny;
    float *dy, *dw;
    bf16 *dz, *dout;
    CUDA_TRY(cudaMalloc(&dy, ny * 4));
    CUDA_TRY(cudaMalloc(&dw, (size_t)g.d_in * 4));
    CUDA_TRY(cudaMalloc(&dz, nz * 2));
    CUDA_TRY(cudaMalloc(&dout, ny * 2));
    CUDA_TRY(cudaMemcpy(dy, y, ny * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dw, w, (size_t)g.d_in * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dz, z, nz * 2, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemset(dout, 0xff, ny * 2)); /* poison: bf16 NaN */
    gated_norm_set_warps(warps);
    launch_gated_norm_bf16(g, dy, dz, NULL, 1, dw, T, dout, 0);
    gated_norm_set_warps(0);
    LAUNCH_TRY();
    CUDA_TRY(cudaDeviceSynchronize());
    CUDA_TRY(cudaMemcpy(out, dout, ny * 2, cudaMemcpyDeviceToHost));
    cudaFree(dy), cudaFree(dw), cudaFree(dz), cudaFree(dout);
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

extern "C" int mamba2_gpu_gemv(int rows, int cols, int nb, int stream, const uint16_t *W, const float *x, float *out,
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
    a.W = dW, a.rows = rows, a.cols = cols, a.nb = nb, a.x = dx, a.out = dout, a.stream = stream;
    launch_gemv(PRO_NONE, EPI_STORE, a, 0);
    LAUNCH_TRY();
    CUDA_TRY(cudaDeviceSynchronize());
    CUDA_TRY(cudaMemcpy(out, dout, (size_t)nb * rows * 4, cudaMemcpyDeviceToHost));
    cudaFree(dW), cudaFree(dx), cudaFree(dout);
    return 0;
}

/* Median milliseconds per call of @p call(c), c = 0 .. copies − 1 launched back to back on @p st
 * (one weight copy each, so that the L2 holds none of them), over max(reps / copies, 5) batches after
 * one warm-up batch. */
template <class Call> static double median_calls_ms(cudaStream_t st, int copies, int reps, Call call) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    std::vector<float> ms;
    int batches = reps / copies > 5 ? reps / copies : 5;
    for (int i = 0; i < batches + 1; i++) {
        float t;
        cudaEventRecord(e0, st);
        for (int c = 0; c < copies; c++) call(c);
        cudaEventRecord(e1, st);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t, e0, e1);
        if (i >= 1) ms.push_back(t / copies);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

/* Milliseconds per GEMV launch, as in a decode step: @p copies launches back to back on one stream
 * (programmatic dependent launch, so that each launch's ramp overlaps the previous one's tail), launch
 * c on the weights @p weights(a, c) sets (one copy each, so that the L2 holds none of them), the
 * median over max(reps / copies, 5) batches after one warm-up batch. */
template <class SetWeights> static double median_gemv_ms(GemvArgs a, int copies, int reps, SetWeights weights) {
    cudaStream_t st;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    double ms = median_calls_ms(st, copies, reps, [&](int c) {
        weights(a, c);
        launch_gemv(PRO_NONE, EPI_STORE, a, st);
    });
    cudaStreamDestroy(st);
    return ms;
}

extern "C" double mamba2_gpu_time_gemv(int rows, int cols, int nb, int stream, int reps, Mamba2Error *err) {
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
    a.rows = rows, a.cols = cols, a.nb = nb, a.x = x, a.out = out, a.stream = stream;
    double ms = median_gemv_ms(a, copies, reps, [&](GemvArgs &g, int c) { g.W = W + (size_t)c * rows * cols; });
    cudaFree(W), cudaFree(x), cudaFree(out);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mamba2_fail(err, "gemv timing: %s", cudaGetErrorString(e)), -1;
    return ms;
}

/* ------------------------------------------------------------------ decode GEMM (gemm_decode.cu) */

/* The prologue of mamba2_gpu_gemm_decode()'s code @p pro (gpu.h): 1 RMSNorm, 2 the grouped norm, 3
 * the grouped norm after the product, 4 RMSNorm after the product, else none. */
static GemvPrologue gemm_decode_prologue(int pro) {
    return pro == 1 ? PRO_RMSNORM : pro == 2 ? PRO_GATEDNORM : pro == 3 ? PRO_GROUPSCALE : pro == 4 ? PRO_ROWSCALE : PRO_NONE;
}

/* mamba2_gpu_gemm_decode(), and with @p next_w mamba2_gpu_gemm_decode_hand_off() (@p ss, @p xw its
 * outputs): the product run @p runs times from the same inputs, the hand-off's tickets checked back
 * at 0 after the last. */
static int gemm_decode_run(int rows, int cols, int nb, int add, int pro, int groups, const uint16_t *W, const void *x,
                           const float *norm, float *out, const float *next_w, float *ss, uint16_t *xw, int runs, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    const size_t xbytes = (size_t)nb * cols * (pro == 1 || pro == 2 ? 4 : 2);
    const size_t nbytes = pro == 1 ? (size_t)cols * 4 : pro == 4 ? (size_t)nb * 4 : pro >= 2 ? (size_t)nb * groups * 4 : 0;
    bf16 *dW, *dxw = NULL;
    void *dx;
    float *dout, *dnorm = NULL, *dnext = NULL, *dss = NULL;
    unsigned *dtickets = NULL;
    CUDA_TRY(cudaMalloc(&dW, (size_t)rows * cols * 2));
    CUDA_TRY(cudaMalloc(&dx, xbytes));
    CUDA_TRY(cudaMalloc(&dout, (size_t)nb * rows * 4));
    if (nbytes) CUDA_TRY(cudaMalloc(&dnorm, nbytes));
    if (next_w) {
        CUDA_TRY(cudaMalloc(&dnext, (size_t)rows * 4));
        CUDA_TRY(cudaMalloc(&dss, (size_t)nb * 4));
        CUDA_TRY(cudaMalloc(&dxw, (size_t)nb * rows * 2));
        CUDA_TRY(cudaMalloc(&dtickets, GEMM_DECODE_TICKETS * sizeof(unsigned)));
        CUDA_TRY(cudaMemset(dtickets, 0, GEMM_DECODE_TICKETS * sizeof(unsigned)));
    }
    auto release = [&]() { cudaFree(dW), cudaFree(dx), cudaFree(dout), cudaFree(dnorm), cudaFree(dnext), cudaFree(dss), cudaFree(dxw), cudaFree(dtickets); };
    GemvArgs a = {};
    a.W = dW, a.rows = rows, a.cols = cols, a.nb = nb, a.out = dout, a.eps = 1e-5f;
    if (pro == 1) a.in_w = dnorm;
    if (pro >= 2) a.ss_in = norm ? dnorm : NULL, a.groups = groups; /* no sums given: none passed, to be refused */
    if (next_w) a.next_w = dnext, a.ss_out = dss, a.xw_next = dxw, a.tickets = dtickets;
    int rc = 1;
    const GemvPrologue gp = gemm_decode_prologue(pro);
    const GemvEpilogue epi = add ? EPI_RESIDUAL : EPI_STORE;
    if (gemm_decode_takes(gp, epi, a, dx, cols)) {
        std::vector<float> poison((size_t)nb * rows, NAN);
        CUDA_TRY(cudaMemcpy(dW, W, (size_t)rows * cols * 2, cudaMemcpyHostToDevice));
        CUDA_TRY(cudaMemcpy(dx, x, xbytes, cudaMemcpyHostToDevice));
        if (nbytes && norm) CUDA_TRY(cudaMemcpy(dnorm, norm, nbytes, cudaMemcpyHostToDevice));
        if (next_w) CUDA_TRY(cudaMemcpy(dnext, next_w, (size_t)rows * 4, cudaMemcpyHostToDevice));
        for (int run = 0; run < runs; run++) {
            CUDA_TRY(cudaMemcpy(dout, add ? out : poison.data(), poison.size() * 4, cudaMemcpyHostToDevice));
            if (next_w) {
                CUDA_TRY(cudaMemset(dss, 0, (size_t)nb * 4));
                CUDA_TRY(cudaMemset(dxw, 0xff, (size_t)nb * rows * 2)); /* bf16 NaN */
            }
            if (launch_gemm_decode(gp, epi, a, dx, cols, 0)) {
                release();
                return mamba2_fail(err, "decode GEMM: no tensor maps for %d x %d", rows, cols);
            }
            LAUNCH_TRY();
            CUDA_TRY(cudaDeviceSynchronize());
        }
        CUDA_TRY(cudaMemcpy(out, dout, (size_t)nb * rows * 4, cudaMemcpyDeviceToHost));
        if (next_w) {
            std::vector<unsigned> tickets(GEMM_DECODE_TICKETS);
            CUDA_TRY(cudaMemcpy(ss, dss, (size_t)nb * 4, cudaMemcpyDeviceToHost));
            CUDA_TRY(cudaMemcpy(xw, dxw, (size_t)nb * rows * 2, cudaMemcpyDeviceToHost));
            CUDA_TRY(cudaMemcpy(tickets.data(), dtickets, tickets.size() * sizeof(unsigned), cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < tickets.size(); i++)
                if (tickets[i]) {
                    release();
                    return mamba2_fail(err, "decode GEMM hand-off: ticket %zu left at %u", i, tickets[i]);
                }
        }
        rc = 0;
    }
    release();
    return rc;
}

extern "C" int mamba2_gpu_gemm_decode(int rows, int cols, int nb, int add, int pro, int groups, const uint16_t *W, const void *x,
                                      const float *norm, float *out, Mamba2Error *err) {
    return gemm_decode_run(rows, cols, nb, add, pro, groups, W, x, norm, out, NULL, NULL, NULL, 1, err);
}

extern "C" int mamba2_gpu_gemm_decode_hand_off(int rows, int cols, int nb, int pro, int groups, const uint16_t *W, const void *x,
                                               const float *norm, const float *next_w, float *out, float *ss, uint16_t *xw,
                                               Mamba2Error *err) {
    return gemm_decode_run(rows, cols, nb, 1, pro, groups, W, x, norm, out, next_w, ss, xw, 2, err);
}

extern "C" int mamba2_gpu_gemm_decode_wgmma(int mode) { return gemm_decode_use_wgmma(mode); }

extern "C" double mamba2_gpu_time_gemm_decode(int rows, int cols, int nb, int add, int pro, int reps, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    int copies = (int)(1 + (512ull << 20) / ((size_t)rows * cols * 2));
    const int groups = cols % (8 * 64) == 0 ? 8 : 1; /* the grouped norm's: the 7B's 8 groups */
    bf16 *W;
    void *x;
    float *out, *norm;
    if (cudaMalloc(&W, (size_t)copies * rows * cols * 2) != cudaSuccess || cudaMalloc(&x, (size_t)nb * cols * 4) != cudaSuccess ||
        cudaMalloc(&out, (size_t)nb * rows * 4) != cudaSuccess || cudaMalloc(&norm, (size_t)(cols + nb * groups) * 4) != cudaSuccess)
        return mamba2_fail(err, "decode GEMM timing: out of memory"), -1;
    fill_random_bf16<<<1024, 256>>>(W, (size_t)copies * rows * cols, 3);
    fill_random_bf16<<<64, 256>>>((bf16 *)x, (size_t)nb * cols * 2, 4); /* fp32 inputs: any bits of bf16 pairs are finite floats */
    cudaMemset(norm, 0, (size_t)(cols + nb * groups) * 4); /* the norms' weights and sums: zeros time as well as other values */
    GemvArgs a = {};
    a.rows = rows, a.cols = cols, a.nb = nb, a.out = out, a.W = W, a.eps = 1e-5f, a.in_w = norm, a.ss_in = norm, a.groups = groups;
    double ms = -1;
    bool refused = false; /* a launch found no tensor maps: no time to report */
    const GemvPrologue gp = gemm_decode_prologue(pro);
    const GemvEpilogue epi = add ? EPI_RESIDUAL : EPI_STORE;
    if (gemm_decode_takes(gp, epi, a, x, cols)) {
        cudaStream_t st;
        cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
        cudaMemset(out, 0, (size_t)nb * rows * 4);
        ms = median_calls_ms(st, copies, reps, [&](int c) {
            a.W = W + (size_t)c * rows * cols;
            refused = refused || launch_gemm_decode(gp, epi, a, x, cols, st) != 0;
        });
        cudaStreamDestroy(st);
        if (refused) ms = -1, mamba2_fail(err, "decode GEMM timing: no tensor maps for %d x %d", rows, cols);
    } else
        mamba2_fail(err, "decode GEMM timing: the kernel does not take %d x %d, nb %d", rows, cols, nb);
    cudaFree(W), cudaFree(x), cudaFree(out), cudaFree(norm);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mamba2_fail(err, "decode GEMM timing: %s", cudaGetErrorString(e)), -1;
    return ms;
}

/* ------------------------------------------------------------------ q8 weights */

/* A q8 matrix [rows, cols] on the device (values, scales), quantized from bf16 @p Wd there. */
struct Q8Buffers {
    int8_t *q = NULL;
    uint16_t *d = NULL;
    GpuQ8 m = {};
    ~Q8Buffers() { cudaFree(q), cudaFree(d); }
};

/* Quantize @p W (on the device: bf16, or f32 when @p f32) into @p b, its arrays poisoned first. */
static int q8_make_from(Q8Buffers &b, const void *W, int f32, int rows, int cols, Mamba2Error *err) {
    const int Kq = round_up(cols, Q8_SCALE_BLOCK);
    CUDA_TRY(cudaMalloc(&b.q, (size_t)rows * Kq));
    CUDA_TRY(cudaMalloc(&b.d, q8_scale_alloc_bytes(rows, Kq)));
    CUDA_TRY(cudaMemset(b.q, 0x80, (size_t)rows * Kq)); /* poison (−128, never a value): every byte must be written */
    CUDA_TRY(cudaMemset(b.d, 0xff, (size_t)rows * (Kq / Q8_SCALE_BLOCK) * 2));
    launch_q8_quantize(W, f32, rows, 0, b.q, b.d, cols, Kq, 0);
    LAUNCH_TRY();
    b.m.q = b.q, b.m.d = b.d, b.m.rows = rows, b.m.K = cols, b.m.Kq = Kq;
    return 0;
}

static int q8_make(Q8Buffers &b, const bf16 *Wd, int rows, int cols, Mamba2Error *err) { return q8_make_from(b, Wd, 0, rows, cols, err); }

/* The values [rows, Kq] and scales [rows, Kq / 64] of @p b into @p q and @p d (each may be NULL). */
static int q8_copy_out(const Q8Buffers &b, int8_t *q, uint16_t *d, Mamba2Error *err) {
    if (q) CUDA_TRY(cudaMemcpy(q, b.q, (size_t)b.m.rows * b.m.Kq, cudaMemcpyDeviceToHost));
    if (d) CUDA_TRY(cudaMemcpy(d, b.d, (size_t)b.m.rows * (b.m.Kq / Q8_SCALE_BLOCK) * 2, cudaMemcpyDeviceToHost));
    return 0;
}

extern "C" int mamba2_gpu_q8_quantize(int rows, int cols, int f32, const void *W, int8_t *q, uint16_t *d, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    const size_t bytes = (size_t)rows * cols * (f32 ? 4 : 2);
    void *dW;
    CUDA_TRY(cudaMalloc(&dW, bytes ? bytes : 1));
    CUDA_TRY(cudaMemcpy(dW, W, bytes, cudaMemcpyHostToDevice));
    Q8Buffers b;
    const int rc = q8_make_from(b, dW, f32, rows, cols, err);
    cudaFree(dW);
    if (rc) return -1;
    CUDA_TRY(cudaDeviceSynchronize());
    return q8_copy_out(b, q, d, err);
}

extern "C" int mamba2_gpu_gemv_q8(int rows, int cols, int nb, int dp4a, int groups, const float *ss, const uint16_t *W,
                                  const float *x, int8_t *q, uint16_t *d, float *out, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    if (nb < 1 || nb > 4) return mamba2_fail(err, "gemv q8: nb must be 1..4");
    bf16 *dW;
    float *dx, *dout;
    CUDA_TRY(cudaMalloc(&dW, (size_t)rows * cols * 2));
    CUDA_TRY(cudaMemcpy(dW, W, (size_t)rows * cols * 2, cudaMemcpyHostToDevice));
    Q8Buffers b;
    if (q8_make(b, dW, rows, cols, err)) return -1;
    cudaFree(dW); /* the bf16 copy goes, as at load */
    CUDA_TRY(cudaMalloc(&dx, (size_t)nb * cols * 4));
    CUDA_TRY(cudaMalloc(&dout, (size_t)nb * rows * 4));
    std::vector<float> poison((size_t)nb * rows, NAN);
    CUDA_TRY(cudaMemcpy(dx, x, (size_t)nb * cols * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dout, poison.data(), poison.size() * 4, cudaMemcpyHostToDevice));
    GemvArgs a = {};
    a.wf = dp4a ? GEMV_Q8_DP4A : GEMV_Q8_FLOAT;
    a.stream = dp4a == 2, a.stage = dp4a == 3;
    a.Wq = b.m, a.rows = rows, a.cols = cols, a.nb = nb, a.x = dx, a.out = dout;
    float *dss = NULL;
    if (groups > 0) { /* the grouped norm's prologue, which comes with the residual epilogue: out = 0 + the product */
        CUDA_TRY(cudaMalloc(&dss, (size_t)nb * groups * 4));
        CUDA_TRY(cudaMemcpy(dss, ss, (size_t)nb * groups * 4, cudaMemcpyHostToDevice));
        CUDA_TRY(cudaMemset(dout, 0, (size_t)nb * rows * 4));
        a.ss_in = dss, a.groups = groups, a.eps = MAMBA2_GPU_TEST_EPS;
    }
    launch_gemv(groups > 0 ? PRO_GATEDNORM : PRO_NONE, groups > 0 ? EPI_RESIDUAL : EPI_STORE, a, 0);
    LAUNCH_TRY();
    CUDA_TRY(cudaDeviceSynchronize());
    CUDA_TRY(cudaMemcpy(out, dout, (size_t)nb * rows * 4, cudaMemcpyDeviceToHost));
    if (q8_copy_out(b, q, d, err)) return -1;
    cudaFree(dx), cudaFree(dout), cudaFree(dss);
    return 0;
}

extern "C" int mamba2_gpu_gemv_staged(int rows, int cols, int nb) {
    GemvArgs a = {};
    a.wf = GEMV_Q8_DP4A, a.stage = 1, a.rows = rows, a.cols = cols, a.nb = nb;
    return gemv_q8_stages(PRO_NONE, a) ? 1 : 0;
}

extern "C" int mamba2_gpu_gemv_streamed(int rows, int cols, int nb, int q8) {
    GemvArgs a = {};
    a.wf = q8 ? GEMV_Q8_DP4A : GEMV_BF16, a.stream = 1;
    a.rows = rows, a.cols = cols, a.nb = nb;
    a.Wq.rows = rows, a.Wq.K = cols, a.Wq.Kq = round_up(cols, Q8_SCALE_BLOCK); /* pointers 0: aligned, as cudaMalloc's */
    return gemv_stream_takes(PRO_NONE, a) ? 1 : 0;
}

extern "C" double mamba2_gpu_time_gemv_q8(int rows, int cols, int nb, int dp4a, int reps, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    /* rotate over enough q8 copies to defeat the 50 MB L2, as mamba2_gpu_time_gemv() */
    int copies = (int)(1 + (512ull << 20) / ((size_t)rows * cols));
    bf16 *Wd;
    float *x, *out;
    if (cudaMalloc(&Wd, (size_t)rows * cols * 2) != cudaSuccess || cudaMalloc(&x, (size_t)nb * cols * 4) != cudaSuccess ||
        cudaMalloc(&out, (size_t)nb * rows * 4) != cudaSuccess)
        return mamba2_fail(err, "gemv q8 timing: out of memory"), -1;
    fill_random_bf16<<<1024, 256>>>(Wd, (size_t)rows * cols, 3);
    fill_random_bf16<<<64, 256>>>((bf16 *)x, (size_t)nb * cols * 2, 4); /* any finite bits will do */
    std::vector<Q8Buffers> mats(copies);
    for (int c = 0; c < copies; c++)
        if (q8_make(mats[c], Wd, rows, cols, err)) return -1;
    cudaFree(Wd);
    GemvArgs a = {};
    a.wf = dp4a ? GEMV_Q8_DP4A : GEMV_Q8_FLOAT;
    a.stream = dp4a == 2;
    a.rows = rows, a.cols = cols, a.nb = nb, a.x = x, a.out = out;
    double ms = median_gemv_ms(a, copies, reps, [&](GemvArgs &g, int c) { g.Wq = mats[c].m; });
    cudaFree(x), cudaFree(out);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mamba2_fail(err, "gemv q8 timing: %s", cudaGetErrorString(e)), -1;
    return ms;
}

extern "C" double mamba2_gpu_time_q8_dequantize(int rows, int cols, int reps, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    bf16 *Wd;
    if (cudaMalloc(&Wd, (size_t)rows * cols * 2) != cudaSuccess) return mamba2_fail(err, "dequantize timing: out of memory"), -1;
    fill_random_bf16<<<1024, 256>>>(Wd, (size_t)rows * cols, 5);
    Q8Buffers b;
    if (q8_make(b, Wd, rows, cols, err)) return -1;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    std::vector<float> ms;
    for (int i = 0; i < reps + 1; i++) {
        float t;
        cudaEventRecord(e0, 0);
        launch_q8_dequantize(b.m, Wd, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t, e0, e1);
        if (i >= 1) ms.push_back(t);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    cudaFree(Wd);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mamba2_fail(err, "dequantize timing: %s", cudaGetErrorString(e)), -1;
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

/* ------------------------------------------------------------------ the decode SSD step */

static GpuDims step_dims(SSDDims d, int L) {
    GpuDims g = ssd_dims(d, 1);
    g.L = L, g.K = 4;
    g.d_in_proj = 2 * g.d_in + 2 * d.G * d.N + d.H;
    return g;
}

extern "C" int mamba2_gpu_ssd_step(SSDDims d, int nb, int state_bf16, int kernel, int y_bf16, const float *xbc, const float *dt,
                                   const float *z, const float *A, const float *D, const float *y_scale, float *state,
                                   float *y, float *ss_y, int8_t *yq, float *ya, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    const GpuDims g = step_dims(d, 1);
    const size_t ns = (size_t)d.H * d.P * d.N, ny = (size_t)nb * g.d_in, es = state_bf16 ? 2 : 4;
    std::vector<float> zx((size_t)nb * g.d_in_proj, NAN), y_poison(ny, NAN), ss0((size_t)nb * d.G, 0.0f);
    for (int b = 0; b < nb; b++) std::copy(z + (size_t)b * g.d_in, z + (size_t)(b + 1) * g.d_in, zx.begin() + (size_t)b * g.d_in_proj);
    std::vector<uint16_t> s16(state_bf16 ? nb * ns : 0);
    for (size_t i = 0; i < s16.size(); i++) s16[i] = mamba2_f32_to_bf16(state[i]);
    float *dxbc, *ddt, *dzx, *dA, *dD, *dys = NULL, *dy = NULL, *dss;
    char *dstate;
    void **dptrs;
    CUDA_TRY(cudaMalloc(&dxbc, (size_t)nb * g.conv_dim * 4));
    CUDA_TRY(cudaMalloc(&ddt, (size_t)nb * d.H * 4));
    CUDA_TRY(cudaMalloc(&dzx, zx.size() * 4));
    CUDA_TRY(cudaMalloc(&dA, d.H * 4));
    CUDA_TRY(cudaMalloc(&dD, d.H * 4));
    CUDA_TRY(cudaMalloc(&dss, ss0.size() * 4));
    CUDA_TRY(cudaMalloc(&dstate, nb * ns * es));
    CUDA_TRY(cudaMalloc(&dptrs, nb * sizeof(void *)));
    CUDA_TRY(cudaMemcpy(dxbc, xbc, (size_t)nb * g.conv_dim * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(ddt, dt, (size_t)nb * d.H * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dzx, zx.data(), zx.size() * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dA, A, d.H * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dD, D, d.H * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dss, ss0.data(), ss0.size() * 4, cudaMemcpyHostToDevice));
    CUDA_TRY(cudaMemcpy(dstate, state_bf16 ? (const void *)s16.data() : (const void *)state, nb * ns * es, cudaMemcpyHostToDevice));
    std::vector<void *> ptrs(nb);
    for (int b = 0; b < nb; b++) ptrs[b] = dstate + b * ns * es;
    CUDA_TRY(cudaMemcpy(dptrs, ptrs.data(), nb * sizeof(void *), cudaMemcpyHostToDevice));
    if (y_scale) {
        CUDA_TRY(cudaMalloc(&dys, g.d_in * 4));
        CUDA_TRY(cudaMemcpy(dys, y_scale, g.d_in * 4, cudaMemcpyHostToDevice));
    }
    CUDA_TRY(cudaMalloc(&dy, ny * 4)); /* bf16 y: its first half */
    CUDA_TRY(cudaMemcpy(dy, y_poison.data(), ny * 4, cudaMemcpyHostToDevice)); /* poison (bf16: NaN pairs) */
    int8_t *dyq = NULL;
    float *dya = NULL;
    const bool rounds = yq && ssd_step_rounds_y(g);
    if (rounds) { /* poisoned: 0x7f bytes, NaN maxima */
        CUDA_TRY(cudaMalloc(&dyq, ny));
        CUDA_TRY(cudaMemset(dyq, 0x7f, ny));
        CUDA_TRY(cudaMalloc(&dya, ny / Q8_XBLOCK * 4));
        CUDA_TRY(cudaMemcpy(dya, y_poison.data(), ny / Q8_XBLOCK * 4, cudaMemcpyHostToDevice));
    }
    GpuLayer w = {};
    w.A = dA, w.D = dD;
    const StepOut out = {y_bf16 ? NULL : dy, y_bf16 ? (bf16 *)dy : NULL};
    launch_ssd_step_kind(g, w, dxbc, ddt, dzx, dptrs, state_bf16, 0, nb, out, dss, dys, dyq, dya, kernel, 0);
    LAUNCH_TRY();
    CUDA_TRY(cudaDeviceSynchronize());
    if (y_bf16) {
        std::vector<uint16_t> y16(ny);
        CUDA_TRY(cudaMemcpy(y16.data(), dy, ny * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < ny; i++) y[i] = mamba2_bf16_to_f32(y16[i]);
    } else
        CUDA_TRY(cudaMemcpy(y, dy, ny * 4, cudaMemcpyDeviceToHost));
    if (rounds) {
        CUDA_TRY(cudaMemcpy(yq, dyq, ny, cudaMemcpyDeviceToHost));
        CUDA_TRY(cudaMemcpy(ya, dya, ny / Q8_XBLOCK * 4, cudaMemcpyDeviceToHost));
        cudaFree(dyq), cudaFree(dya);
    }
    CUDA_TRY(cudaMemcpy(ss_y, dss, ss0.size() * 4, cudaMemcpyDeviceToHost));
    if (state_bf16) {
        CUDA_TRY(cudaMemcpy(s16.data(), dstate, nb * ns * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < s16.size(); i++) state[i] = mamba2_bf16_to_f32(s16[i]);
    } else
        CUDA_TRY(cudaMemcpy(state, dstate, nb * ns * 4, cudaMemcpyDeviceToHost));
    cudaFree(dxbc), cudaFree(ddt), cudaFree(dzx), cudaFree(dA), cudaFree(dD), cudaFree(dss), cudaFree(dstate), cudaFree(dptrs);
    cudaFree(dys), cudaFree(dy);
    return 0;
}

__global__ void fill_uniform(float *p, size_t n, float lo, float hi, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 16, x *= 0x7feb352du, x ^= x >> 15, x *= 0x846ca68bu, x ^= x >> 16;
        p[i] = lo + (hi - lo) * ((x >> 8) * (1.0f / 16777216.0f));
    }
}

extern "C" int mamba2_gpu_ssd_step_streams(SSDDims d, int state_bf16) { return ssd_step_streams(step_dims(d, 1), state_bf16); }

extern "C" double mamba2_gpu_time_ssd_step(SSDDims d, int nb, int state_bf16, int kernel, int reps, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    const int L = 8; /* launches rotate over L layers of state: together beyond the L2 */
    const GpuDims g = step_dims(d, L);
    const size_t ns = (size_t)L * d.H * d.P * d.N, es = state_bf16 ? 2 : 4;
    float *xbc, *dt, *zx, *A, *D, *ys, *y, *ss;
    char *state;
    void **ptrs;
    if (cudaMalloc(&xbc, (size_t)nb * g.conv_dim * 4) || cudaMalloc(&dt, (size_t)nb * d.H * 4) ||
        cudaMalloc(&zx, (size_t)nb * g.d_in_proj * 4) || cudaMalloc(&A, d.H * 4) || cudaMalloc(&D, d.H * 4) ||
        cudaMalloc(&ys, g.d_in * 4) || cudaMalloc(&y, (size_t)nb * g.d_in * 4) || cudaMalloc(&ss, (size_t)nb * d.G * 4) ||
        cudaMalloc(&state, nb * ns * es) || cudaMalloc(&ptrs, nb * sizeof(void *)))
        return mamba2_fail(err, "ssd step timing: out of memory"), -1;
    fill_uniform<<<256, 256>>>(xbc, (size_t)nb * g.conv_dim, -1, 1, 1);
    fill_uniform<<<256, 256>>>(dt, (size_t)nb * d.H, 0.001f, 0.1f, 2);
    fill_uniform<<<256, 256>>>(zx, (size_t)nb * g.d_in_proj, -1, 1, 3);
    fill_uniform<<<1, 256>>>(A, d.H, -16, -1, 4);
    fill_uniform<<<1, 256>>>(D, d.H, 0.5f, 1.5f, 5);
    fill_uniform<<<64, 256>>>(ys, g.d_in, 0.5f, 1.5f, 6);
    if (state_bf16) fill_random_bf16<<<1024, 256>>>((bf16 *)state, nb * ns, 7);
    else fill_uniform<<<1024, 256>>>((float *)state, nb * ns, -1, 1, 7);
    std::vector<void *> hp(nb);
    for (int b = 0; b < nb; b++) hp[b] = state + b * ns * es;
    cudaMemcpy(ptrs, hp.data(), nb * sizeof(void *), cudaMemcpyHostToDevice);
    GpuLayer w = {};
    w.A = A, w.D = D;
    cudaStream_t st;
    cudaEvent_t e0, e1;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    std::vector<float> ms;
    for (int i = 0; i < reps + 1; i++) { /* L launches back to back (programmatic dependent launch) */
        float t;
        cudaMemsetAsync(ss, 0, (size_t)nb * d.G * 4, st);
        cudaEventRecord(e0, st);
        for (int l = 0; l < L; l++)
            launch_ssd_step_kind(g, w, xbc, dt, zx, ptrs, state_bf16, l, nb, StepOut{y, NULL}, ss, ys, NULL, NULL, kernel, st);
        cudaEventRecord(e1, st);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t, e0, e1);
        if (i >= 1) ms.push_back(t / L);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1), cudaStreamDestroy(st);
    cudaFree(xbc), cudaFree(dt), cudaFree(zx), cudaFree(A), cudaFree(D), cudaFree(ys), cudaFree(y), cudaFree(ss);
    cudaFree(state), cudaFree(ptrs);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mamba2_fail(err, "ssd step timing: %s", cudaGetErrorString(e)), -1;
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

/* ------------------------------------------------------------------ logits to the host */

static double wall_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

extern "C" int mamba2_gpu_time_logits_copy(int nb, int V, double ms_out[5], int *threads, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    const size_t bytes = (size_t)nb * V * 4;
    float *dev, *pinned;
    std::vector<float> host((size_t)nb * V, 1.0f); /* pageable, touched */
    CUDA_TRY(cudaMalloc(&dev, bytes));
    CUDA_TRY(cudaMallocHost(&pinned, bytes));
    CUDA_TRY(cudaMemset(dev, 0, bytes));
    cudaStream_t st;
    CUDA_TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    std::vector<cudaEvent_t> ev;
    *threads = host_copy_threads_default();
    std::vector<double> t[5];
    for (int rep = 0; rep < 7; rep++) {
        double t0 = wall_seconds();
        cudaMemcpyAsync(pinned, dev, bytes, cudaMemcpyDeviceToHost, st); /* one transfer, then one host copy */
        cudaStreamSynchronize(st);
        memcpy(host.data(), pinned, bytes);
        double t1 = wall_seconds();
        CUDA_TRY(copy_to_pageable(host.data(), dev, bytes, pinned, ev, 1, st)); /* in pieces, one host thread */
        double t2 = wall_seconds();
        cudaMemcpyAsync(host.data(), dev, bytes, cudaMemcpyDeviceToHost, st); /* straight to pageable memory */
        cudaStreamSynchronize(st);
        double t3 = wall_seconds();
        CUDA_TRY(copy_to_pageable(host.data(), dev, bytes, pinned, ev, *threads, st)); /* pieces, the backend's threads */
        double t4 = wall_seconds();
        cudaMemcpyAsync(pinned, dev, bytes, cudaMemcpyDeviceToHost, st); /* straight into a pinned array */
        cudaStreamSynchronize(st);
        double t5 = wall_seconds();
        if (rep >= 2)
            t[0].push_back(t1 - t0), t[1].push_back(t2 - t1), t[2].push_back(t3 - t2), t[3].push_back(t4 - t3), t[4].push_back(t5 - t4);
    }
    for (int k = 0; k < 5; k++) {
        std::sort(t[k].begin(), t[k].end());
        ms_out[k] = t[k][t[k].size() / 2] * 1e3;
    }
    for (auto &e : ev) cudaEventDestroy(e);
    cudaStreamDestroy(st);
    cudaFree(dev), cudaFreeHost(pinned);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int mamba2_gpu_copy_to_pageable(const void *src, size_t bytes, int threads, void *dst, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    void *dev = NULL, *pinned = NULL;
    cudaStream_t st = NULL;
    std::vector<cudaEvent_t> ev;
    memset(dst, 0xA5, bytes);
    cudaError_t e = cudaMalloc(&dev, bytes);
    if (e == cudaSuccess) e = cudaMallocHost(&pinned, bytes);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMemcpy(dev, src, bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) memset(pinned, 0x5A, bytes); /* no stale copy of the bytes on the way */
    if (e == cudaSuccess) e = copy_to_pageable(dst, dev, bytes, pinned, ev, threads, st);
    for (cudaEvent_t x : ev) cudaEventDestroy(x);
    if (st) cudaStreamDestroy(st);
    cudaFree(dev), cudaFreeHost(pinned);
    if (e != cudaSuccess) return mamba2_fail(err, "copy to pageable memory: %s", cudaGetErrorString(e)), -1;
    return 0;
}

/* ------------------------------------------------------------------ cuBLAS at the decode shapes */

/* out[nb][rows] = x[nb][cols] · W[rows][cols]ᵀ as the cuBLAS decode path calls it (bf16 in, fp32 out). */
static cublasStatus_t cublas_decode_gemm(cublasHandle_t h, const bf16 *W, int rows, int cols, const bf16 *x, int nb, float *out) {
    float alpha = 1.0f, beta = 0.0f;
    return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, rows, nb, cols, &alpha, W, CUDA_R_16BF, cols, x, CUDA_R_16BF, cols, &beta,
                        out, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

extern "C" double mamba2_gpu_time_cublas_gemm(int rows, int cols, int nb, int reps, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    int copies = reps > 0 ? (int)(1 + (512ull << 20) / ((size_t)rows * cols * 2)) : 1;
    bf16 *W, *x;
    float *out;
    void *ws;
    cublasHandle_t h;
    if (cudaMalloc(&W, (size_t)copies * rows * cols * 2) != cudaSuccess || cudaMalloc(&x, (size_t)nb * cols * 2) != cudaSuccess ||
        cudaMalloc(&out, (size_t)nb * rows * 4) != cudaSuccess || cudaMalloc(&ws, 32u << 20) != cudaSuccess)
        return mamba2_fail(err, "cublas timing: out of memory"), -1;
    fill_random_bf16<<<1024, 256>>>(W, (size_t)copies * rows * cols, 3);
    fill_random_bf16<<<64, 256>>>(x, (size_t)nb * cols, 4);
    cudaStream_t st;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return mamba2_fail(err, "cublas timing: no handle"), -1;
    cublasSetStream(h, st);
    cublasSetWorkspace(h, ws, 32u << 20);
    auto call = [&](int c) { cublas_decode_gemm(h, W + (size_t)c * rows * cols, rows, cols, x, nb, out); };
    double ms = 0;
    if (reps > 0) ms = median_calls_ms(st, copies, reps, call);
    else call(0), cudaStreamSynchronize(st); /* one call, untimed (for a profiler) */
    cublasDestroy(h);
    cudaStreamDestroy(st);
    cudaFree(W), cudaFree(x), cudaFree(out), cudaFree(ws);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return mamba2_fail(err, "cublas timing: %s", cudaGetErrorString(e)), -1;
    return ms;
}

/* Every algorithm cuBLASLt's heuristic offers for the decode shape (up to 32), each timed as above:
 * out[nb][rows] (+ beta · out) = x[nb][cols] · W[rows][cols]ᵀ, bf16 in, fp32 out. */
extern "C" int mamba2_gpu_time_cublaslt_algos(int rows, int cols, int nb, float beta, int reps, double *ms, int *n_algos,
                                              int *waves, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    int copies = (int)(1 + (512ull << 20) / ((size_t)rows * cols * 2));
    const size_t ws_bytes = 32u << 20;
    bf16 *W, *x;
    float *out;
    void *ws;
    CUDA_TRY(cudaMalloc(&W, (size_t)copies * rows * cols * 2));
    CUDA_TRY(cudaMalloc(&x, (size_t)nb * cols * 2));
    CUDA_TRY(cudaMalloc(&out, (size_t)nb * rows * 4));
    CUDA_TRY(cudaMalloc(&ws, ws_bytes));
    fill_random_bf16<<<1024, 256>>>(W, (size_t)copies * rows * cols, 3);
    fill_random_bf16<<<64, 256>>>(x, (size_t)nb * cols, 4);
    cudaMemset(out, 0, (size_t)nb * rows * 4);
    cudaStream_t st;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulPreference_t pref;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtCreate(&lt);
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, cols, rows, cols); /* W as stored, column-major [cols, rows] */
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, cols, nb, cols);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, rows, nb, rows);
    cublasLtMatmulPreferenceCreate(&pref);
    uint64_t wsb = ws_bytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    cublasLtMatmulHeuristicResult_t res[32];
    int n = 0;
    cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 32, res, &n);
    float alpha = 1.0f;
    for (int i = 0; i < n; i++) {
        waves[i] = (int)(res[i].wavesCount * 100);
        ms[i] = median_calls_ms(st, copies, reps, [&](int c) {
            cublasLtMatmul(lt, op, &alpha, W + (size_t)c * rows * cols, la, x, lb, &beta, out, lc, out, lc, &res[i].algo, ws,
                           ws_bytes, st);
        });
    }
    *n_algos = n;
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    cublasLtDestroy(lt);
    cudaStreamDestroy(st);
    cudaFree(W), cudaFree(x), cudaFree(out), cudaFree(ws);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

/* ------------------------------------------------------------------ the q8 GEMM */

/* The output of mamba2_gpu_gemm_q8()'s @p mode: 0 fp32 [T, rows], 1 the same added to, 2 bf16
 * [T, rows], 3 fp32 [rows, T]. */
static GemmQ8Out gemm_q8_out_of_mode(int mode, int rows, int T, void *out) {
    GemmQ8Out o = {};
    o.out = out, o.ldn = mode == 3 ? 1 : rows, o.ldr = mode == 3 ? T : 1, o.bf16 = mode == 2, o.add = mode == 1;
    return o;
}

extern "C" int mamba2_gpu_gemm_q8(int rows, int cols, int T, int mode, const uint16_t *W, const uint16_t *x, int8_t *q,
                                  uint16_t *d, float *out, Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    if (mode < 0 || mode > 3) return mamba2_fail(err, "gemm q8: mode must be 0..3");
    bf16 *dW, *dx;
    void *dout;
    const size_t n_out = (size_t)T * rows;
    CUDA_TRY(cudaMalloc(&dW, (size_t)rows * cols * 2));
    CUDA_TRY(cudaMemcpy(dW, W, (size_t)rows * cols * 2, cudaMemcpyHostToDevice));
    Q8Buffers b;
    if (q8_make(b, dW, rows, cols, err)) return -1;
    cudaFree(dW); /* the bf16 copy goes, as at load */
    if (!gemm_q8_supported(b.m, cols)) return mamba2_fail(err, "gemm q8: cols must be a multiple of 8");
    CUDA_TRY(cudaMalloc(&dx, (size_t)T * cols * 2));
    CUDA_TRY(cudaMalloc(&dout, n_out * 4));
    CUDA_TRY(cudaMemcpy(dx, x, (size_t)T * cols * 2, cudaMemcpyHostToDevice));
    if (mode == 1) { /* the addend */
        CUDA_TRY(cudaMemcpy(dout, out, n_out * 4, cudaMemcpyHostToDevice));
    } else if (mode == 2) { /* poison: bf16 NaN */
        std::vector<uint16_t> poison(n_out, 0x7fc0);
        CUDA_TRY(cudaMemcpy(dout, poison.data(), n_out * 2, cudaMemcpyHostToDevice));
    } else {
        std::vector<float> poison(n_out, NAN);
        CUDA_TRY(cudaMemcpy(dout, poison.data(), n_out * 4, cudaMemcpyHostToDevice));
    }
    launch_gemm_q8(b.m, dx, cols, T, gemm_q8_out_of_mode(mode, rows, T, dout), mode == 1 ? 3 : 0, 0);
    LAUNCH_TRY();
    CUDA_TRY(cudaDeviceSynchronize());
    if (mode == 2) {
        std::vector<uint16_t> h(n_out);
        CUDA_TRY(cudaMemcpy(h.data(), dout, n_out * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n_out; i++) out[i] = mamba2_bf16_to_f32(h[i]);
    } else {
        CUDA_TRY(cudaMemcpy(out, dout, n_out * 4, cudaMemcpyDeviceToHost));
    }
    if (q8_copy_out(b, q, d, err)) return -1;
    cudaFree(dx), cudaFree(dout);
    return 0;
}

extern "C" int mamba2_gpu_gemm_q8_skinny_taken(int rows, int cols, int T, int mode) {
    GpuQ8 m = {};
    m.rows = rows, m.K = cols, m.Kq = round_up(cols, Q8_SCALE_BLOCK);
    return gemm_q8_skinny_fits(m, cols, T, gemm_q8_out_of_mode(mode, rows, T, NULL)) ? 1 : 0;
}

extern "C" int mamba2_gpu_time_gemm_q8(int rows, int cols, int T, int reps, double ms[3], Mamba2Error *err) {
    if (!mamba2_gpu_available(err)) return -1;
    /* weight copies beyond the 50 MB L2, as the GEMV timings rotate over */
    const int copies_q8 = (int)(1 + (512ull << 20) / ((size_t)rows * cols)), copies_bf = (int)(1 + (512ull << 20) / ((size_t)rows * cols * 2));
    bf16 *Wd, *x, *deq;
    float *out;
    void *ws;
    if (cudaMalloc(&Wd, (size_t)copies_bf * rows * cols * 2) != cudaSuccess || cudaMalloc(&x, (size_t)T * cols * 2) != cudaSuccess ||
        cudaMalloc(&out, (size_t)T * rows * 4) != cudaSuccess || cudaMalloc(&deq, (size_t)rows * cols * 2) != cudaSuccess ||
        cudaMalloc(&ws, 32u << 20) != cudaSuccess)
        return mamba2_fail(err, "gemm q8 timing: out of memory");
    fill_random_bf16<<<1024, 256>>>(Wd, (size_t)copies_bf * rows * cols, 3);
    fill_random_bf16<<<256, 256>>>(x, (size_t)T * cols, 4);
    std::vector<Q8Buffers> mats(copies_q8);
    for (int c = 0; c < copies_q8; c++)
        if (q8_make(mats[c], Wd + (size_t)(c % copies_bf) * rows * cols, rows, cols, err)) return -1;
    cudaStream_t st;
    cublasHandle_t h;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return mamba2_fail(err, "gemm q8 timing: no cuBLAS handle");
    cublasSetStream(h, st);
    cublasSetWorkspace(h, ws, 32u << 20);
    auto cublas = [&](const bf16 *W) { cublas_decode_gemm(h, W, rows, cols, x, T, out); }; /* out[T][rows] = x · Wᵀ */
    GemmQ8Out o = {};
    o.out = out, o.ldn = rows, o.ldr = 1;
    ms[0] = median_calls_ms(st, copies_q8, reps, [&](int c) { launch_gemm_q8(mats[c].m, x, cols, T, o, 0, st); });
    ms[1] = median_calls_ms(st, copies_bf, reps, [&](int c) { cublas(Wd + (size_t)c * rows * cols); });
    ms[2] = median_calls_ms(st, copies_q8, reps, [&](int c) {
        launch_q8_dequantize(mats[c].m, deq, st);
        cublas(deq);
    });
    cublasDestroy(h);
    cudaStreamDestroy(st);
    cudaFree(Wd), cudaFree(x), cudaFree(out), cudaFree(deq), cudaFree(ws);
    CUDA_TRY(cudaGetLastError());
    return 0;
}
