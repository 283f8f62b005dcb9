/**
 * @file gemm_driver.c
 * @brief The blocked, packed, multi-threaded GEMM loop of the SIMD tiers (see gemm_driver.h).
 */
#include "gemm_driver.h"

#include <omp.h>
#include <stdlib.h>

#include "gemm_tier.h"
#include "thread_buffer.h"


int cpu_gemm_run(const CpuGemmKernel *kn, const Mamba2Tensor *W, const float *X, int64_t ldx, int T, float *Y,
                 int64_t ldy, int accumulate, int n_threads) {
    return cpu_gemm_run_source(kn, W, W->shape[0], W->shape[1], X, ldx, T, Y, ldy, accumulate, n_threads);
}

int cpu_gemm_run_source(const CpuGemmKernel *kn, const void *W, int64_t rows, int64_t K, const float *X, int64_t ldx,
                        int T, float *Y, int64_t ldy, int accumulate, int n_threads) {
    int64_t mr = kn->mr, nr = kn->nr;
    int64_t Kp = (K + kn->kgran - 1) / kn->kgran * kn->kgran;
    /* kc: an mr × kc slice of A fills half of L1 (the other half streams B); a multiple of 16 */
    int64_t kc = (int64_t)(cpu_cache_bytes(1) / 2) / (mr * kn->a_bpk) / 16 * 16;
    if (kc < 16) kc = 16;
    if (kc > Kp) kc = Kp;
    /* nc: a packed chunk of weight rows × kc fills half of L2 (the other half holds A's rows in flight);
     * smaller when that leaves fewer than two chunks per thread, so the threads balance */
    int64_t nc = (int64_t)(cpu_cache_bytes(2) / 2) / (kc * kn->b_bpk) / nr * nr;
    int64_t fair = (rows + 2 * n_threads - 1) / (2 * n_threads);
    fair = (fair + nr - 1) / nr * nr;
    if (nc > fair) nc = fair;
    if (nc < nr) nc = nr;
    int64_t n_chunks = (rows + nc - 1) / nc, n_tb = (T + mr - 1) / mr;
    size_t a_block = (size_t)Kp * mr * kn->a_bpk; /* bytes of one full block of mr activation rows */
    char *A = cpu_thread_buffer(CPU_BUF_GEMM_ACTIVATIONS, a_block * n_tb);
    if (!A) return -1;
    int failed = 0;
#pragma omp parallel num_threads(n_threads)
    {
        char *B = cpu_thread_buffer(CPU_BUF_GEMM_WEIGHTS, (size_t)nc * kc * kn->b_bpk); /* [nc / nr][kc][nr] of the tier's type */
        if (!B) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t tb = 0; tb < n_tb; tb++) {
            int m = (int)(T - tb * mr < mr ? T - tb * mr : mr);
            kn->pack_a(X, ldx, K, Kp, tb * mr, m, A + tb * a_block);
        }
        /* the barrier at the end of the loop above: every thread sees A and the same `failed` */
        if (!failed) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < n_chunks; c++) {
                int64_t r0 = c * nc, n = rows - r0 < nc ? rows - r0 : nc, n_panels = (n + nr - 1) / nr;
                for (int64_t k0 = 0; k0 < Kp; k0 += kc) {
                    int64_t kb = Kp - k0 < kc ? Kp - k0 : kc;
                    size_t panel = (size_t)kb * nr * kn->b_bpk;
                    for (int64_t j = 0; j < n_panels; j++) kn->pack_b(W, r0 + j * nr, k0, kb, B + j * panel);
                    /* Y[t][r0 + r] (+)= Σ_{k0 ≤ k < k0 + kb} A[t][k] · B[k][r], block by block */
                    for (int64_t tb = 0; tb < n_tb; tb++) {
                        int m = (int)(T - tb * mr < mr ? T - tb * mr : mr);
                        const char *a = A + tb * a_block + (size_t)k0 * m * kn->a_bpk;
                        for (int64_t j = 0; j < n_panels; j++) {
                            int64_t cols = n - j * nr < nr ? n - j * nr : nr;
                            kn->micro(m, a, B + j * panel, kb, Y + tb * mr * ldy + r0 + j * nr, ldy, (int)cols,
                                      accumulate || k0 > 0);
                        }
                    }
                }
            }
        }
    }
    return failed ? -1 : 0;
}

/* A row source and the tier kernels whose pack_b reads the rows it writes out (cpu_gemm_run_rows()). */
typedef struct {
    const CpuGemmKernel *kn;
    CpuBf16RowsAt rows_of;
    const void *src;
} RowSource;

/* kn->pack_b on kn->nr rows taken from the row source into this thread's buffer [nr][kc] first
 * (zeros past the last row and past K: pack_b sees a whole nr × kc bf16 matrix). */
static void pack_b_rows(const void *source, int64_t r0, int64_t k0, int64_t kc, void *dst) {
    const RowSource *s = source;
    const int nr = s->kn->nr;
    uint16_t *rows = cpu_thread_buffer(CPU_BUF_WEIGHT_ROWS, (size_t)nr * kc * sizeof *rows);
    if (!rows) return; /* cannot happen: cpu_gemm_run_rows() reserved it for every thread */
    s->rows_of(s->src, r0, nr, k0, kc, rows);
    const Mamba2Tensor view = {.name = "rows", .dtype = MAMBA2_BF16, .ndim = 2, .shape = {nr, kc}, .data = rows};
    s->kn->pack_b(&view, 0, 0, kc, dst);
}

int cpu_gemm_run_rows(const CpuGemmKernel *kn, CpuBf16RowsAt rows_of, const void *src, int64_t rows, int64_t K,
                      const float *X, int64_t ldx, int T, float *Y, int64_t ldy, int accumulate, int n_threads) {
    const size_t most = (size_t)kn->nr * (size_t)(K + kn->kgran) * sizeof(uint16_t); /* kc ≤ K rounded up to kgran */
    int failed = 0;
#pragma omp parallel num_threads(n_threads) reduction(| : failed)
    failed = !cpu_thread_buffer(CPU_BUF_WEIGHT_ROWS, most);
    if (failed) return -1;
    CpuGemmKernel from_rows = *kn;
    from_rows.pack_b = pack_b_rows;
    const RowSource s = {kn, rows_of, src};
    return cpu_gemm_run_source(&from_rows, &s, rows, K, X, ldx, T, Y, ldy, accumulate, n_threads);
}
