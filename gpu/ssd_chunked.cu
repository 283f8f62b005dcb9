/**
 * @file ssd_chunked.cu
 * @brief The chunked SSD algorithm for prefill, as in ref/ssd.c's ssd_chunked() but with the
 *        chunk-level contractions on tensor cores (WMMA, bf16 operands, fp32 accumulators).
 *
 * Kernels, in order (chunks of Q tokens, a_t = dt_t·A, cum_t = a summed from the chunk start):
 * 0. cumsum:        cum[h][t]
 * 1. cb:            CB[c][g][t][s] = C_t · B_s                       (per chunk and group)
 * 2. chunk states:  states[c][h] = Σ_s exp(cum_end − cum_s) dt_s x_s B_sᵀ  = Xᵀ · B̃
 * 3. state passing: S_{c+1} = exp(cum_end(c)) S_c + states[c]; states[c] ← S_c (the entering state)
 * 4. chunk scan:    y_t = Σ_{s≤t} CB[t][s] exp(cum_t − cum_s) dt_s x_s   (diagonal block, M · X)
 *                       + exp(cum_t) C_t S_cᵀ                         (state to output, C̃ · Sᵀ)
 *                       + D x_t
 * Steps 1, 2 and 4 are matrix products in tiles of 64 rows; any P, N and Q work (zero padding
 * to multiples of 16 in shared memory), up to P·N ≤ 16384.
 */
#include <mma.h>

#include "kernels.cuh"

using namespace nvcuda;

#define TILE 64       /* rows of t (and s) per tile */
#define MAX_FRAGS 8   /* accumulator fragments per warp */

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> AccFrag;

/* Carve 128-byte aligned pieces out of dynamic shared memory. */
__device__ __forceinline__ char *carve(char *&p, size_t bytes) {
    char *r = p;
    p += (bytes + 127) & ~(size_t)127;
    return r;
}

static size_t carve_size(size_t bytes) { return (bytes + 127) & ~(size_t)127; }

/* ------------------------------------------------------------------ 0. cumsum */

/* One warp per (chunk, head): cum[h][t] = Σ_{k = chunk start .. t} dt[h][k]·A[h] (inclusive scan). */
__global__ void ssd_cumsum_kernel(const float *dt, const float *A, int T, int Q, float *cum) {
    int c = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    int t0 = c * Q, t1 = min(T, t0 + Q);
    float carry = 0, a = A[h];
    for (int base = t0; base < t1; base += 32) {
        int t = base + lane;
        float v = t < t1 ? dt[(size_t)h * T + t] * a : 0.0f;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) { /* inclusive warp scan */
            float u = __shfl_up_sync(0xffffffffu, v, o);
            if (lane >= o) v += u;
        }
        if (t < t1) cum[(size_t)h * T + t] = carry + v;
        carry += __shfl_sync(0xffffffffu, v, 31);
    }
}

/* ------------------------------------------------------------------ 1. CB = C Bᵀ per chunk and group */

/* Load rows [r0, r0 + TILE) of an [T, *] bf16 matrix (columns col0 .. col0 + n) into smem [TILE][ld],
 * zero outside [0, rmax) and beyond n. */
__device__ void load_rows_bf16(bf16 *dst, int ld, const bf16 *src, size_t src_ld, int r0, int rmax, int col0, int n) {
    for (int i = threadIdx.x; i < TILE * ld; i += blockDim.x) {
        int r = i / ld, k = i % ld;
        dst[i] = (r0 + r < rmax && k < n) ? src[(size_t)(r0 + r) * src_ld + col0 + k] : __float2bfloat16(0.0f);
    }
}

__global__ void ssd_cb_kernel(GpuDims g, const bf16 *xbc, int T, int Qp, float *cb) {
    int c = blockIdx.x, grp = blockIdx.y, ti = blockIdx.z;
    int t0 = c * g.Q, len = min(g.Q, T - t0);
    if (ti * TILE >= len) return;
    int Np = round_up(g.N, 16), warp = threadIdx.x >> 5;
    extern __shared__ __align__(128) char smem[];
    char *p = smem;
    bf16 *Cs = (bf16 *)carve(p, TILE * Np * sizeof(bf16)); /* [TILE t][Np] */
    bf16 *Bs = (bf16 *)carve(p, TILE * Np * sizeof(bf16)); /* [TILE s][Np] */
    const bf16 *Bcol = xbc + g.d_in, *Ccol = xbc + g.d_in + g.G * g.N;
    load_rows_bf16(Cs, Np, Ccol + (size_t)t0 * g.conv_dim, g.conv_dim, ti * TILE, len, grp * g.N, g.N);
    float *out = cb + ((size_t)c * g.G + grp) * Qp * Qp;
    for (int si = 0; si <= ti; si++) { /* only tiles on or below the diagonal are ever used */
        __syncthreads();
        load_rows_bf16(Bs, Np, Bcol + (size_t)t0 * g.conv_dim, g.conv_dim, si * TILE, len, grp * g.N, g.N);
        __syncthreads();
        AccFrag acc[TILE / 16];
#pragma unroll
        for (int f = 0; f < TILE / 16; f++) wmma::fill_fragment(acc[f], 0.0f);
        for (int k = 0; k < Np; k += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
            wmma::load_matrix_sync(a, Cs + warp * 16 * Np + k, Np);
#pragma unroll
            for (int f = 0; f < TILE / 16; f++) { /* Bᵀ: B rows are the columns of the product */
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(b, Bs + f * 16 * Np + k, Np);
                wmma::mma_sync(acc[f], a, b, acc[f]);
            }
        }
#pragma unroll
        for (int f = 0; f < TILE / 16; f++)
            wmma::store_matrix_sync(out + (size_t)(ti * TILE + warp * 16) * Qp + si * TILE + f * 16, acc[f], Qp,
                                    wmma::mem_row_major);
    }
}

/* ------------------------------------------------------------------ 2. chunk states */

/* states[c][h][p][n] = Σ_s x_s[p] · exp(cum_end − cum_s) dt_s B_s[n]   (Xᵀ · B̃, 8 warps) */
__global__ void ssd_chunk_state_kernel(GpuDims g, const bf16 *xbc, const float *dt, const float *cum, int T,
                                       float *states) {
    int c = blockIdx.x, h = blockIdx.y, grp = h / (g.H / g.G);
    int t0 = c * g.Q, len = min(g.Q, T - t0);
    int Pp = round_up(g.P, 16), Np = round_up(g.N, 16), warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    int pf = Pp / 16, nf = Np / 16, nfrag = pf * nf;
    extern __shared__ __align__(128) char smem[];
    char *p = smem;
    bf16 *Xs = (bf16 *)carve(p, TILE * Pp * sizeof(bf16));    /* [TILE s][Pp] */
    bf16 *Bs = (bf16 *)carve(p, TILE * Np * sizeof(bf16));    /* [TILE s][Np], scaled */
    float *stage = (float *)carve(p, (size_t)Pp * Np * 4);     /* [Pp][Np] */
    const float *cum_h = cum + (size_t)h * T + t0, *dt_h = dt + (size_t)h * T + t0;
    float cum_end = cum_h[len - 1];

    AccFrag acc[MAX_FRAGS];
#pragma unroll
    for (int i = 0; i < MAX_FRAGS; i++) wmma::fill_fragment(acc[i], 0.0f);
    for (int s0 = 0; s0 < len; s0 += TILE) {
        __syncthreads();
        load_rows_bf16(Xs, Pp, xbc + (size_t)t0 * g.conv_dim, g.conv_dim, s0, len, h * g.P, g.P);
        for (int i = threadIdx.x; i < TILE * Np; i += blockDim.x) {
            int s = i / Np, n = i % Np;
            float v = 0;
            if (s0 + s < len && n < g.N)
                v = __bfloat162float(xbc[(size_t)(t0 + s0 + s) * g.conv_dim + g.d_in + grp * g.N + n]) *
                    __expf(cum_end - cum_h[s0 + s]) * dt_h[s0 + s];
            Bs[i] = __float2bfloat16(v);
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < MAX_FRAGS; i++) {
            int f = warp + i * nwarps;
            if (f >= nfrag) break;
            int fp = f / nf, fn = f % nf;
            for (int k = 0; k < TILE; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> a; /* Xᵀ */
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Xs + k * Pp + fp * 16, Pp);
                wmma::load_matrix_sync(b, Bs + k * Np + fn * 16, Np);
                wmma::mma_sync(acc[i], a, b, acc[i]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < MAX_FRAGS; i++) {
        int f = warp + i * nwarps;
        if (f >= nfrag) break;
        wmma::store_matrix_sync(stage + (f / nf) * 16 * Np + (f % nf) * 16, acc[i], Np, wmma::mem_row_major);
    }
    __syncthreads();
    float *out = states + ((size_t)c * g.H + h) * g.P * g.N;
    for (int i = threadIdx.x; i < g.P * g.N; i += blockDim.x) out[i] = stage[(i / g.N) * Np + i % g.N];
}

/* ------------------------------------------------------------------ 3. state passing */

/* One thread per state element (h, p, n): walk the chunks in order. */
template <typename S>
__global__ void ssd_state_passing_kernel(GpuDims g, const float *cum, int T, int n_chunks, float *states, S *ssm) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, PN = (size_t)g.P * g.N;
    if (i >= (size_t)g.H * PN) return;
    int h = (int)(i / PN);
    float s = (float)ssm[i];
    for (int c = 0; c < n_chunks; c++) {
        float *sc = states + ((size_t)c * g.H) * PN + i; /* same (h, p, n) in chunk c */
        float chunk_state = *sc;
        *sc = s;                                          /* the state entering chunk c */
        int last = min(T, (c + 1) * g.Q) - 1;
        s = __expf(cum[(size_t)h * T + last]) * s + chunk_state;
    }
    ssm[i] = (S)s;
}

/* ------------------------------------------------------------------ 4. chunk scan */

__global__ void ssd_chunk_scan_kernel(GpuDims g, const bf16 *xbc, const float *dt, const float *cum, const float *cb,
                                      int Qp, const float *states, const float *D, int T, float *y) {
    int c = blockIdx.x, h = blockIdx.y, ti = blockIdx.z, grp = h / (g.H / g.G);
    int t0 = c * g.Q, len = min(g.Q, T - t0);
    if (ti * TILE >= len) return;
    int Pp = round_up(g.P, 16), Np = round_up(g.N, 16), warp = threadIdx.x >> 5, pf = Pp / 16;
    extern __shared__ __align__(128) char smem[];
    char *p = smem;
    bf16 *Ms = (bf16 *)carve(p, TILE * TILE * sizeof(bf16));  /* [TILE t][TILE s] masked, decayed C Bᵀ dt */
    bf16 *Xs = (bf16 *)carve(p, TILE * Pp * sizeof(bf16));    /* [TILE s][Pp] */
    bf16 *Cs = (bf16 *)carve(p, TILE * Np * sizeof(bf16));    /* [TILE t][Np]  exp(cum_t) C_t */
    bf16 *Ss = (bf16 *)carve(p, (size_t)Pp * Np * sizeof(bf16)); /* [Pp][Np]  entering state */
    float *stage = (float *)carve(p, (size_t)TILE * Pp * 4);   /* [TILE t][Pp] */
    const float *cum_h = cum + (size_t)h * T + t0, *dt_h = dt + (size_t)h * T + t0;
    const float *cb_c = cb + ((size_t)c * g.G + grp) * Qp * Qp;
    int tr0 = ti * TILE;

    AccFrag acc[MAX_FRAGS];
#pragma unroll
    for (int i = 0; i < MAX_FRAGS; i++) wmma::fill_fragment(acc[i], 0.0f);

    /* Diagonal block: y_t += Σ_{s ≤ t} M[t][s] x_s with M[t][s] = CB[t][s] exp(cum_t − cum_s) dt_s. */
    for (int si = 0; si <= ti; si++) {
        int sr0 = si * TILE;
        __syncthreads();
        for (int i = threadIdx.x; i < TILE * TILE; i += blockDim.x) {
            int t = tr0 + i / TILE, s = sr0 + i % TILE;
            float v = 0;
            if (s <= t && t < len) v = cb_c[(size_t)t * Qp + s] * __expf(cum_h[t] - cum_h[s]) * dt_h[s];
            Ms[i] = __float2bfloat16(v);
        }
        load_rows_bf16(Xs, Pp, xbc + (size_t)t0 * g.conv_dim, g.conv_dim, sr0, len, h * g.P, g.P);
        __syncthreads();
        for (int k = 0; k < TILE; k += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
            wmma::load_matrix_sync(a, Ms + warp * 16 * TILE + k, TILE);
#pragma unroll
            for (int f = 0; f < MAX_FRAGS; f++) {
                if (f >= pf) break;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(b, Xs + k * Pp + f * 16, Pp);
                wmma::mma_sync(acc[f], a, b, acc[f]);
            }
        }
    }

    /* State to output: y_t += exp(cum_t) C_t · S_c, with S_c the state entering chunk c. */
    __syncthreads();
    const float *S = states + ((size_t)c * g.H + h) * g.P * g.N;
    for (int i = threadIdx.x; i < TILE * Np; i += blockDim.x) {
        int t = tr0 + i / Np, n = i % Np;
        float v = 0;
        if (t < len && n < g.N)
            v = __bfloat162float(xbc[(size_t)(t0 + t) * g.conv_dim + g.d_in + g.G * g.N + grp * g.N + n]) *
                __expf(cum_h[t]);
        Cs[i] = __float2bfloat16(v);
    }
    for (int i = threadIdx.x; i < Pp * Np; i += blockDim.x) {
        int pp = i / Np, n = i % Np;
        Ss[i] = __float2bfloat16(pp < g.P && n < g.N ? S[(size_t)pp * g.N + n] : 0.0f);
    }
    __syncthreads();
    for (int k = 0; k < Np; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
        wmma::load_matrix_sync(a, Cs + warp * 16 * Np + k, Np);
#pragma unroll
        for (int f = 0; f < MAX_FRAGS; f++) {
            if (f >= pf) break;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b; /* Sᵀ */
            wmma::load_matrix_sync(b, Ss + f * 16 * Np + k, Np);
            wmma::mma_sync(acc[f], a, b, acc[f]);
        }
    }
#pragma unroll
    for (int f = 0; f < MAX_FRAGS; f++) {
        if (f >= pf) break;
        wmma::store_matrix_sync(stage + warp * 16 * Pp + f * 16, acc[f], Pp, wmma::mem_row_major);
    }
    __syncthreads();
    /* + D x, written out for the valid rows and channels */
    float Dh = D ? D[h] : 0.0f;
    for (int i = threadIdx.x; i < TILE * g.P; i += blockDim.x) {
        int t = tr0 + i / g.P, pp = i % g.P;
        if (t >= len) continue;
        size_t row = (size_t)(t0 + t);
        float x = __bfloat162float(xbc[row * g.conv_dim + h * g.P + pp]);
        y[row * g.d_in + h * g.P + pp] = stage[(i / g.P) * Pp + pp] + Dh * x;
    }
}

/* ------------------------------------------------------------------ launch */

static int qp_of(const GpuDims &g) { return round_up(g.Q, TILE); }

size_t ssd_work_bytes(const GpuDims &g, int T) {
    size_t nc = (T + g.Q - 1) / g.Q, Qp = qp_of(g);
    return carve_size((size_t)g.H * T * 4) + carve_size(nc * g.G * Qp * Qp * 4) + carve_size(nc * g.H * g.P * g.N * 4) + 256;
}

SSDWork ssd_work_carve(const GpuDims &g, int T, void *base) {
    size_t nc = (T + g.Q - 1) / g.Q, Qp = qp_of(g);
    char *p = (char *)(((uintptr_t)base + 255) & ~(uintptr_t)255);
    SSDWork w;
    w.cum = (float *)p;
    p += carve_size((size_t)g.H * T * 4);
    w.cb = (float *)p;
    p += carve_size(nc * g.G * Qp * Qp * 4);
    w.states = (float *)p;
    return w;
}

void launch_ssd_chunked(const GpuDims &g, const bf16 *xbc, const float *dt, const float *A, const float *D, int T,
                        void *ssm_state, int ssm_bf16, SSDWork w, float *y, cudaStream_t s) {
    int nc = (T + g.Q - 1) / g.Q, Qp = qp_of(g), tiles = (g.Q + TILE - 1) / TILE;
    int Pp = round_up(g.P, 16), Np = round_up(g.N, 16);
    size_t cb_smem = 2 * carve_size(TILE * Np * 2);
    size_t st_smem = carve_size(TILE * Pp * 2) + carve_size(TILE * Np * 2) + carve_size((size_t)Pp * Np * 4);
    size_t sc_smem = carve_size(TILE * TILE * 2) + carve_size(TILE * Pp * 2) + carve_size(TILE * Np * 2) +
                     carve_size((size_t)Pp * Np * 2) + carve_size((size_t)TILE * Pp * 4);
    static bool attrs_set = false;
    if (!attrs_set) { /* allow more than 48 KB of dynamic shared memory (up to the H100's 227 KB) */
        cudaFuncSetAttribute(ssd_cb_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        cudaFuncSetAttribute(ssd_chunk_state_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        cudaFuncSetAttribute(ssd_chunk_scan_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        attrs_set = true;
    }
    ssd_cumsum_kernel<<<dim3(nc, g.H), 32, 0, s>>>(dt, A, T, g.Q, w.cum);
    ssd_cb_kernel<<<dim3(nc, g.G, tiles), 128, cb_smem, s>>>(g, xbc, T, Qp, w.cb);
    ssd_chunk_state_kernel<<<dim3(nc, g.H), 256, st_smem, s>>>(g, xbc, dt, w.cum, T, w.states);
    size_t n = (size_t)g.H * g.P * g.N;
    if (ssm_bf16)
        ssd_state_passing_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(g, w.cum, T, nc, w.states, (bf16 *)ssm_state);
    else
        ssd_state_passing_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(g, w.cum, T, nc, w.states, (float *)ssm_state);
    ssd_chunk_scan_kernel<<<dim3(nc, g.H, tiles), 128, sc_smem, s>>>(g, xbc, dt, w.cum, w.cb, Qp, w.states, D, T, y);
}
