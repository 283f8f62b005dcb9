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
#define PAD 8         /* bf16 elements added to every shared-memory row: no bank conflicts */
#define MAX_FRAGS 4   /* accumulator fragments per warp (8 warps) */
#define MAX_Q 256     /* longest chunk the kernels hold in shared memory */

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> AccFrag;

/* Carve 128-byte aligned pieces out of dynamic shared memory. */
__device__ __forceinline__ char *carve(char *&p, size_t bytes) {
    char *r = p;
    p += (bytes + 127) & ~(size_t)127;
    return r;
}

static size_t carve_size(size_t bytes) { return (bytes + 127) & ~(size_t)127; }

/* dst[r][k] (row pitch ld_dst) = scale[r] · src[r * ld_src + k] for r < rows_valid and k < cols_valid,
 * zero elsewhere in [rows) x [cols); scale may be NULL (1). Sixteen bytes at a time when the shapes
 * allow it, four loads in flight per thread before any store. */
__device__ void load_tile(bf16 *dst, int ld_dst, const bf16 *src, size_t ld_src, int rows, int cols, int rows_valid,
                          int cols_valid, const float *scale = NULL) {
    if (((cols_valid | (int)ld_src | ld_dst | cols) & 7) == 0 && ((uintptr_t)src & 15) == 0) {
        const int c8 = cols >> 3, n = rows * c8, U = 4;
        for (int i0 = threadIdx.x; i0 < n; i0 += U * blockDim.x) {
            uint4 v[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                int i = i0 + u * blockDim.x, r = i / c8, k = (i - r * c8) * 8;
                v[u] = make_uint4(0, 0, 0, 0);
                if (i < n && r < rows_valid && k < cols_valid) v[u] = __ldg((const uint4 *)(src + (size_t)r * ld_src + k));
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                int i = i0 + u * blockDim.x, r = i / c8, k = (i - r * c8) * 8;
                if (i >= n) break;
                if (scale && r < rows_valid) { /* 8 bf16: scale in fp32, round back */
                    float f = scale[r];
                    uint32_t *w = (uint32_t *)&v[u];
#pragma unroll
                    for (int q = 0; q < 4; q++) {
                        __nv_bfloat162 h2 = *(__nv_bfloat162 *)&w[q];
                        float2 x = __bfloat1622float2(h2);
                        h2 = __floats2bfloat162_rn(x.x * f, x.y * f);
                        w[q] = *(uint32_t *)&h2;
                    }
                }
                *(uint4 *)(dst + r * ld_dst + k) = v[u];
            }
        }
    } else {
        for (int i = threadIdx.x; i < rows * cols; i += blockDim.x) {
            int r = i / cols, k = i - r * cols;
            float v = (r < rows_valid && k < cols_valid) ? __bfloat162float(src[(size_t)r * ld_src + k]) : 0.0f;
            dst[r * ld_dst + k] = __float2bfloat16(scale && r < rows_valid ? v * scale[r] : v);
        }
    }
}

/* ------------------------------------------------------------------ 0. cumsum */

/* One warp per (chunk, head): cum[h][t] = Σ_{k = chunk start .. t} dt[h][k]·A[h] (inclusive scan),
 * and the decay across the whole chunk, chunk_decay[h][c] = exp(cum at the chunk's last token). */
__global__ void ssd_cumsum_kernel(const float *dt, const float *A, int T, int Q, float *cum, float *chunk_decay) {
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
    if (lane == 0) chunk_decay[(size_t)h * gridDim.x + c] = __expf(carry);
}

/* ------------------------------------------------------------------ 1. CB = C Bᵀ per chunk and group */

/* One block (4 warps) per (chunk, group, t-tile): CB[t][s] for the tiles on or below the diagonal. */
__global__ void ssd_cb_kernel(GpuDims g, const bf16 *xbc, int T, int Qp, float *cb) {
    int c = blockIdx.x, grp = blockIdx.y, ti = blockIdx.z;
    int t0 = c * g.Q, len = min(g.Q, T - t0);
    if (ti * TILE >= len) return;
    int Np = round_up(g.N, 16), ld = Np + PAD, warp = threadIdx.x >> 5;
    extern __shared__ __align__(128) char smem[];
    char *p = smem;
    bf16 *Cs = (bf16 *)carve(p, TILE * ld * sizeof(bf16)); /* [TILE t][Np] */
    bf16 *Bs = (bf16 *)carve(p, TILE * ld * sizeof(bf16)); /* [TILE s][Np] */
    const bf16 *rows = xbc + (size_t)t0 * g.conv_dim;
    load_tile(Cs, ld, rows + (size_t)ti * TILE * g.conv_dim + g.d_in + g.G * g.N + grp * g.N, g.conv_dim, TILE, Np,
              len - ti * TILE, g.N);
    float *out = cb + ((size_t)c * g.G + grp) * Qp * Qp;
    for (int si = 0; si <= ti; si++) { /* only tiles on or below the diagonal are ever used */
        __syncthreads();
        load_tile(Bs, ld, rows + (size_t)si * TILE * g.conv_dim + g.d_in + grp * g.N, g.conv_dim, TILE, Np,
                  len - si * TILE, g.N);
        __syncthreads();
        AccFrag acc[TILE / 16];
#pragma unroll
        for (int f = 0; f < TILE / 16; f++) wmma::fill_fragment(acc[f], 0.0f);
        for (int k = 0; k < Np; k += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
            wmma::load_matrix_sync(a, Cs + warp * 16 * ld + k, ld);
#pragma unroll
            for (int f = 0; f < TILE / 16; f++) { /* Bᵀ: the rows of B are the columns of the product */
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(b, Bs + f * 16 * ld + k, ld);
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

/* One block (8 warps) per (chunk, head):
 * states[c][h][p][n] = Σ_s x_s[p] · exp(cum_end − cum_s) dt_s B_s[n]   (Xᵀ · B̃, s in tiles of 64) */
__global__ void __launch_bounds__(256) ssd_chunk_state_kernel(GpuDims g, const bf16 *xbc, const float *dt,
                                                              const float *cum, int T, float *states) {
    int c = blockIdx.x, h = blockIdx.y, grp = h / (g.H / g.G);
    int t0 = c * g.Q, len = min(g.Q, T - t0);
    int Pp = round_up(g.P, 16), Np = round_up(g.N, 16), ldx = Pp + PAD, ldb = Np + PAD;
    int warp = threadIdx.x >> 5, pf = Pp / 16, nf = Np / 16, nfrag = pf * nf;
    extern __shared__ __align__(128) char smem[];
    char *p = smem;
    bf16 *Xs = (bf16 *)carve(p, TILE * ldx * sizeof(bf16)); /* [TILE s][Pp] */
    bf16 *Bs = (bf16 *)carve(p, TILE * ldb * sizeof(bf16)); /* [TILE s][Np], scaled by w_s */
    float *wts = (float *)carve(p, TILE * sizeof(float));   /* [TILE] w_s = exp(cum_end − cum_s) dt_s */
    float *stage = (float *)p;                               /* [Pp][Np + 4] when the output needs staging */
    const float *cum_h = cum + (size_t)h * T + t0, *dt_h = dt + (size_t)h * T + t0;
    const bf16 *rows = xbc + (size_t)t0 * g.conv_dim;
    float cum_end = cum_h[len - 1];

    AccFrag acc[MAX_FRAGS];
#pragma unroll
    for (int i = 0; i < MAX_FRAGS; i++) wmma::fill_fragment(acc[i], 0.0f);
    for (int s0 = 0; s0 < len; s0 += TILE) {
        __syncthreads();
        for (int s = threadIdx.x; s < TILE; s += blockDim.x)
            wts[s] = s0 + s < len ? __expf(cum_end - cum_h[s0 + s]) * dt_h[s0 + s] : 0.0f;
        __syncthreads();
        load_tile(Xs, ldx, rows + (size_t)s0 * g.conv_dim + h * g.P, g.conv_dim, TILE, Pp, len - s0, g.P);
        load_tile(Bs, ldb, rows + (size_t)s0 * g.conv_dim + g.d_in + grp * g.N, g.conv_dim, TILE, Np, len - s0, g.N,
                  wts); /* B̃_s = w_s B_s */
        __syncthreads();
#pragma unroll
        for (int i = 0; i < MAX_FRAGS; i++) {
            int f = warp + i * 8;
            if (f >= nfrag) break;
            int fp = f / nf, fn = f % nf;
#pragma unroll
            for (int k = 0; k < TILE; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> a; /* Xᵀ */
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Xs + k * ldx + fp * 16, ldx);
                wmma::load_matrix_sync(b, Bs + k * ldb + fn * 16, ldb);
                wmma::mma_sync(acc[i], a, b, acc[i]);
            }
        }
    }
    float *out = states + ((size_t)c * g.H + h) * g.P * g.N;
    if (g.P == Pp && g.N == Np) { /* exact tiles: straight to global memory */
#pragma unroll
        for (int i = 0; i < MAX_FRAGS; i++) {
            int f = warp + i * 8;
            if (f >= nfrag) break;
            wmma::store_matrix_sync(out + (f / nf) * 16 * g.N + (f % nf) * 16, acc[i], g.N, wmma::mem_row_major);
        }
        return;
    }
    __syncthreads();
    int lds = Np + 4;
#pragma unroll
    for (int i = 0; i < MAX_FRAGS; i++) {
        int f = warp + i * 8;
        if (f >= nfrag) break;
        wmma::store_matrix_sync(stage + (f / nf) * 16 * lds + (f % nf) * 16, acc[i], lds, wmma::mem_row_major);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < g.P * g.N; i += blockDim.x) out[i] = stage[(i / g.N) * lds + i % g.N];
}

/* ------------------------------------------------------------------ 3. state passing */

/* One thread per state element (h, p, n): walk the chunks in order. The chunk states are
 * fetched eight at a time before they are used, so that the walk is not one memory round
 * trip per chunk. */
template <typename S>
__global__ void ssd_state_passing_kernel(GpuDims g, const float *__restrict__ chunk_decay, int n_chunks,
                                         float *__restrict__ states, S *__restrict__ ssm) {
    const int BATCH = 8;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, PN = (size_t)g.P * g.N, HPN = (size_t)g.H * PN;
    if (i >= HPN) return;
    const float *decay = chunk_decay + (i / PN) * n_chunks;
    float s = (float)ssm[i];
    for (int c0 = 0; c0 < n_chunks; c0 += BATCH) {
        float chunk_state[BATCH];
#pragma unroll
        for (int k = 0; k < BATCH; k++) chunk_state[k] = c0 + k < n_chunks ? states[(c0 + k) * HPN + i] : 0.0f;
#pragma unroll
        for (int k = 0; k < BATCH; k++) {
            if (c0 + k >= n_chunks) break;
            states[(c0 + k) * HPN + i] = s; /* the state entering chunk c */
            s = decay[c0 + k] * s + chunk_state[k];
        }
    }
    ssm[i] = (S)s;
}

/* ------------------------------------------------------------------ 4. chunk scan */

/* One block (8 warps) per (chunk, head); X of the whole chunk and the entering state are loaded
 * once, then for each tile of 64 output rows t:
 *   y_t = Σ_{s ≤ t} M[t][s] x_s + C̃_t · S_cᵀ + D x_t,
 *   M[t][s] = CB[t][s] exp(cum_t − cum_s) dt_s (diagonal block),  C̃_t = exp(cum_t) C_t. */
__global__ void __launch_bounds__(256) ssd_chunk_scan_kernel(GpuDims g, const bf16 *xbc, const float *dt,
                                                             const float *cum, const float *cb, int Qp,
                                                             const float *states, const float *D, int T, float *y) {
    int c = blockIdx.x, h = blockIdx.y, grp = h / (g.H / g.G);
    int t0 = c * g.Q, len = min(g.Q, T - t0), rows_p = round_up(len, TILE);
    int Pp = round_up(g.P, 16), Np = round_up(g.N, 16), ldx = Pp + PAD, ldn = Np + PAD, ldm = rows_p + PAD;
    int warp = threadIdx.x >> 5, pf = Pp / 16, nfrag = 4 * pf;
    extern __shared__ __align__(128) char smem[];
    char *p = smem;
    bf16 *Xs = (bf16 *)carve(p, (size_t)rows_p * ldx * sizeof(bf16)); /* [len][Pp]  x of the chunk */
    bf16 *Ss = (bf16 *)carve(p, (size_t)Pp * ldn * sizeof(bf16));     /* [Pp][Np]   entering state S_c */
    bf16 *Cs = (bf16 *)carve(p, (size_t)TILE * ldn * sizeof(bf16));   /* [TILE][Np] exp(cum_t) C_t */
    bf16 *Ms = (bf16 *)carve(p, (size_t)TILE * ldm * sizeof(bf16));   /* [TILE][len] M rows; then the output stage */
    float *cum_s = (float *)carve(p, (size_t)rows_p * sizeof(float)); /* [len] */
    float *dt_s = (float *)carve(p, (size_t)rows_p * sizeof(float));  /* [len] */
    float *exp_cum = (float *)carve(p, (size_t)rows_p * sizeof(float)); /* [len] exp(cum_t) */
    float *stage = (float *)Ms;                                       /* [TILE][Pp + 4] */
    const bf16 *rows = xbc + (size_t)t0 * g.conv_dim;
    const float *cb_c = cb + ((size_t)c * g.G + grp) * Qp * Qp;
    const float *S = states + ((size_t)c * g.H + h) * g.P * g.N;
    float Dh = D ? D[h] : 0.0f;

    for (int t = threadIdx.x; t < rows_p; t += blockDim.x) {
        cum_s[t] = t < len ? cum[(size_t)h * T + t0 + t] : 0.0f;
        dt_s[t] = t < len ? dt[(size_t)h * T + t0 + t] : 0.0f;
        exp_cum[t] = t < len ? __expf(cum_s[t]) : 0.0f;
    }
    load_tile(Xs, ldx, rows + h * g.P, g.conv_dim, rows_p, Pp, len, g.P);
    if ((g.N & 3) == 0 && g.N == Np) { /* the entering state, four values per load */
        const int n4 = g.N / 4, total = Pp * n4;
        for (int i = threadIdx.x; i < total; i += blockDim.x) {
            int pp = i / n4, n = (i - pp * n4) * 4;
            float4 v = pp < g.P ? __ldg((const float4 *)(S + (size_t)pp * g.N + n)) : make_float4(0, 0, 0, 0);
            *(__nv_bfloat162 *)(Ss + pp * ldn + n) = __floats2bfloat162_rn(v.x, v.y);
            *(__nv_bfloat162 *)(Ss + pp * ldn + n + 2) = __floats2bfloat162_rn(v.z, v.w);
        }
    } else {
        for (int i = threadIdx.x; i < Pp * Np; i += blockDim.x) {
            int pp = i / Np, n = i - pp * Np;
            Ss[pp * ldn + n] = __float2bfloat16(pp < g.P && n < g.N ? S[(size_t)pp * g.N + n] : 0.0f);
        }
    }
    __syncthreads();
    for (int tr0 = 0; tr0 < len; tr0 += TILE) {
        int s_end = tr0 + TILE; /* the diagonal block needs s < s_end (s ≤ t) */
        if (tr0) __syncthreads();
        /* C̃_t = exp(cum_t) C_t */
        load_tile(Cs, ldn, rows + (size_t)tr0 * g.conv_dim + g.d_in + g.G * g.N + grp * g.N, g.conv_dim, TILE, Np,
                  len - tr0, g.N, exp_cum + tr0);
        /* M[t][s] = CB[t][s] exp(cum_t − cum_s) dt_s for s ≤ t: four s per thread, two loads in flight */
        const int s4 = s_end / 4, n4 = TILE * s4;
        for (int i0 = threadIdx.x; i0 < n4; i0 += 2 * blockDim.x) {
            float4 v[2];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int i = i0 + u * blockDim.x, tt = i / s4, t = tr0 + tt;
                v[u] = i < n4 && t < len ? __ldg((const float4 *)(cb_c + (size_t)t * Qp) + (i - tt * s4))
                                         : make_float4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int i = i0 + u * blockDim.x, tt = i / s4, t = tr0 + tt, sb = (i - tt * s4) * 4;
                if (i >= n4) break;
                float cbv[4] = {v[u].x, v[u].y, v[u].z, v[u].w}, m[4];
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    int sq = sb + q;
                    m[q] = (sq <= t && t < len) ? cbv[q] * __expf(cum_s[t] - cum_s[sq]) * dt_s[sq] : 0.0f;
                }
                *(__nv_bfloat162 *)(Ms + tt * ldm + sb) = __floats2bfloat162_rn(m[0], m[1]);
                *(__nv_bfloat162 *)(Ms + tt * ldm + sb + 2) = __floats2bfloat162_rn(m[2], m[3]);
            }
        }
        __syncthreads();
        AccFrag acc[MAX_FRAGS];
#pragma unroll
        for (int i = 0; i < MAX_FRAGS; i++) {
            int f = warp + i * 8;
            if (f >= nfrag) break;
            int rg = f & 3, cf = f >> 2;
            wmma::fill_fragment(acc[i], 0.0f);
            for (int k = 0; k < s_end; k += 16) { /* M · X */
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ms + rg * 16 * ldm + k, ldm);
                wmma::load_matrix_sync(b, Xs + k * ldx + cf * 16, ldx);
                wmma::mma_sync(acc[i], a, b, acc[i]);
            }
            for (int k = 0; k < Np; k += 16) { /* + C̃ · Sᵀ */
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(a, Cs + rg * 16 * ldn + k, ldn);
                wmma::load_matrix_sync(b, Ss + cf * 16 * ldn + k, ldn);
                wmma::mma_sync(acc[i], a, b, acc[i]);
            }
        }
        __syncthreads(); /* Ms is reused as the output stage */
        int lds = Pp + 4;
#pragma unroll
        for (int i = 0; i < MAX_FRAGS; i++) {
            int f = warp + i * 8;
            if (f >= nfrag) break;
            wmma::store_matrix_sync(stage + (f & 3) * 16 * lds + (f >> 2) * 16, acc[i], lds, wmma::mem_row_major);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < TILE * g.P; i += blockDim.x) { /* + D x, valid rows and channels */
            int tt = i / g.P, pp = i - tt * g.P, t = tr0 + tt;
            if (t >= len) continue;
            y[(size_t)(t0 + t) * g.d_in + h * g.P + pp] = stage[tt * lds + pp] + Dh * __bfloat162float(Xs[t * ldx + pp]);
        }
    }
}

/* ------------------------------------------------------------------ launch */

static int qp_of(const GpuDims &g) { return round_up(g.Q, TILE); }

size_t ssd_work_bytes(const GpuDims &g, int T) {
    size_t nc = (T + g.Q - 1) / g.Q, Qp = qp_of(g);
    return carve_size((size_t)g.H * T * 4) + carve_size(nc * g.G * Qp * Qp * 4) + carve_size(nc * g.H * g.P * g.N * 4) +
           carve_size(nc * g.H * 4) + 256;
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
    p += carve_size(nc * g.H * g.P * g.N * 4);
    w.chunk_decay = (float *)p;
    return w;
}

int ssd_chunked_supported(const GpuDims &g) { return g.Q <= MAX_Q && round_up(g.P, 16) <= 128 && round_up(g.N, 16) <= 256 &&
                                                     round_up(g.P, 16) / 16 * (round_up(g.N, 16) / 16) <= 8 * MAX_FRAGS; }

void launch_ssd_chunked(const GpuDims &g, const bf16 *xbc, const float *dt, const float *A, const float *D, int T,
                        void *ssm_state, int ssm_bf16, SSDWork w, float *y, cudaStream_t s, cudaEvent_t *marks) {
    int nc = (T + g.Q - 1) / g.Q, Qp = qp_of(g), tiles = (g.Q + TILE - 1) / TILE;
    int Pp = round_up(g.P, 16), Np = round_up(g.N, 16), rows_p = Qp;
    size_t cb_smem = 2 * carve_size(TILE * (Np + PAD) * 2);
    size_t st_smem = carve_size(TILE * (Pp + PAD) * 2) + carve_size(TILE * (Np + PAD) * 2) + carve_size(TILE * 4);
    if (g.P != Pp || g.N != Np) st_smem += (size_t)Pp * (Np + 4) * 4;
    size_t ms_bytes = (size_t)TILE * (rows_p + PAD) * 2, stage_bytes = (size_t)TILE * (Pp + 4) * 4;
    size_t sc_smem = carve_size((size_t)rows_p * (Pp + PAD) * 2) + carve_size((size_t)Pp * (Np + PAD) * 2) +
                     carve_size((size_t)TILE * (Np + PAD) * 2) + carve_size(ms_bytes > stage_bytes ? ms_bytes : stage_bytes) +
                     3 * carve_size((size_t)rows_p * 4);
    static bool attrs_set = false;
    if (!attrs_set) { /* allow more than 48 KB of dynamic shared memory (up to the H100's 227 KB) */
        cudaFuncSetAttribute(ssd_cb_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        cudaFuncSetAttribute(ssd_chunk_state_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        cudaFuncSetAttribute(ssd_chunk_scan_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        attrs_set = true;
    }
#define MARK(i) \
    if (marks) cudaEventRecord(marks[i], s)
    MARK(0);
    ssd_cumsum_kernel<<<dim3(nc, g.H), 32, 0, s>>>(dt, A, T, g.Q, w.cum, w.chunk_decay);
    MARK(1);
    ssd_cb_kernel<<<dim3(nc, g.G, tiles), 128, cb_smem, s>>>(g, xbc, T, Qp, w.cb);
    MARK(2);
    ssd_chunk_state_kernel<<<dim3(nc, g.H), 256, st_smem, s>>>(g, xbc, dt, w.cum, T, w.states);
    MARK(3);
    size_t n = (size_t)g.H * g.P * g.N;
    if (ssm_bf16)
        ssd_state_passing_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(g, w.chunk_decay, nc, w.states, (bf16 *)ssm_state);
    else
        ssd_state_passing_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(g, w.chunk_decay, nc, w.states, (float *)ssm_state);
    MARK(4);
    ssd_chunk_scan_kernel<<<dim3(nc, g.H), 256, sc_smem, s>>>(g, xbc, dt, w.cum, w.cb, Qp, w.states, D, T, y);
    MARK(5);
#undef MARK
}
