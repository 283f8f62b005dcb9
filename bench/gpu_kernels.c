/**
 * @file gpu_kernels.c
 * @brief Benchmark of the GPU kernels alone at the Codestral-7B shapes, beside the measured
 *        ceilings: the chunked SSD of one layer (T = 4096), the decode GEMV of every projection
 *        (one and four sequences; bf16 and q8 weights, with the q8 dequantization prefill runs),
 *        cuBLAS at the batched decode's shapes (8 to 64 sequences), the
 *        decode SSD step (each kernel), and the copy of a step's logits to the host.
 *
 * Usage: build/bench_gpu_kernels [--json]   (needs a GPU)
 *        build/bench_gpu_kernels --gemv       the ceilings and the GEMV tables alone (bf16, q8, q8 dequantization)
 *        build/bench_gpu_kernels --cublas-once   one cuBLAS call per batched decode shape (for a profiler)
 *        build/bench_gpu_kernels --lt [N,N..]  every cuBLASLt algorithm its heuristic offers at the batched
 *                                             decode's shapes (or N columns: tokens of a prefill), against
 *                                             cuBLAS' own choice
 *        build/bench_gpu_kernels --decode-gemm   the ceilings, then cuBLAS and the decode GEMM (gemm_decode.cu)
 *                                             alone at the batched decode's shapes
 *        build/bench_gpu_kernels --logits    the copy of a step's logits to the host alone, 1 to 256 sequences
 *        build/bench_gpu_kernels --q8gemm [MAX_T]  the q8 GEMM against cuBLAS on bf16 weights and against
 *                                             dequantization + cuBLAS, 8 to 4,096 tokens
 *        build/bench_gpu_kernels --walk [ROUNDS]  the chunked SSD of one layer at 4,096 and 512 tokens with
 *                                             the state walk in blocks of 128 and of 64 state columns and the
 *                                             group scan sliced for 2 and 1 blocks a multiprocessor, alternated
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"

/* The decode shapes of the 7B: in_proj, out_proj, lm_head. */
static const struct {
    const char *name;
    int rows, cols;
} shapes[] = {{"in_proj", 18560, 4096}, {"out_proj", 4096, 8192}, {"lm_head", 32768, 4096}};

/* The logits of a step to the host, five ways (mamba2_gpu_time_logits_copy()), from @p nb0 sequences
 * to 256: 0, or 1 with the reason printed. */
static int logits_table(int nb0) {
    Mamba2Error e = {{0}};
    printf("\n%-24s %4s %12s %12s %12s %16s %12s\n", "logits to host (V=32768)", "nb", "one copy ms", "pieces ms", "pageable ms",
           "pieces, n thr ms", "pinned ms");
    for (int nb = nb0; nb <= 256; nb *= nb < 16 ? 4 : 2) {
        double t[5];
        int threads = 0;
        if (mamba2_gpu_time_logits_copy(nb, 32768, t, &threads, &e)) {
            fprintf(stderr, "logits copy: %s\n", e.msg);
            return 1;
        }
        printf("%-24s %4d %12.3f %12.3f %12.3f %12.3f (%d) %12.3f\n", "", nb, t[0], t[1], t[2], t[3], threads, t[4]);
    }
    return 0;
}

/* The chunked SSD at 4,096 and 512 tokens (the 7B's shape) in four shapes: the state walk 128 or 64
 * columns a block, the group scan sliced for 2 or 1 blocks a multiprocessor; alternated for @p rounds
 * rounds: 0, or 1 with the reason printed. */
static int walk_table(int rounds) {
    Mamba2Error e = {{0}};
    const int ssd_shapes[4][2] = {{128, 2}, {64, 2}, {128, 1}, {64, 1}}; /* walk columns, scan waves */
    printf("%-26s %5s %4s %5s %10s %10s %10s %10s\n", "chunked SSD, one layer", "T", "walk", "waves", "ms", "cumsum", "walk",
           "scan");
    for (int r = 0; r < rounds; r++)
        for (int T = 4096; T >= 512; T /= 8)
            for (int k = 0; k < 4; k++) {
                SSDDims d = {T, 128, 64, 8, 128};
                double parts[3];
                mamba2_gpu_set_ssd_shapes(ssd_shapes[k][0], ssd_shapes[k][1]);
                double ms = mamba2_gpu_time_ssd_chunked(d, 256, 20, parts, &e);
                if (ms < 0) {
                    fprintf(stderr, "ssd: %s\n", e.msg);
                    return 1;
                }
                printf("%-26s %5d %4d %5d %10.4f %10.4f %10.4f %10.4f\n", r ? "" : "H=128 P=64 N=128 G=8", T, ssd_shapes[k][0],
                       ssd_shapes[k][1], ms, parts[0], parts[1], parts[2]);
            }
    mamba2_gpu_set_ssd_shapes(128, 2);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--walk")) return walk_table(argc > 2 ? atoi(argv[2]) : 3);
    int json = argc > 1 && !strcmp(argv[1], "--json"), gemv_only = argc > 1 && !strcmp(argv[1], "--gemv");
    int decode_gemm_only = argc > 1 && !strcmp(argv[1], "--decode-gemm");
    int nbs[16], n_nb = 0; /* --lt: the column counts to time, "512,4096", or the batched decode's */
    if (argc > 2 && !strcmp(argv[1], "--lt")) {
        for (const char *p = argv[2]; *p && n_nb < 16; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
            if ((nbs[n_nb++] = atoi(p)) < 1) {
                fprintf(stderr, "bench_gpu_kernels: --lt takes column counts of at least 1, as in 512,4096 (got '%s')\n", argv[2]);
                return 2;
            }
    } else
        for (int nb = 8; nb <= 256; nb *= 2) nbs[n_nb++] = nb;
    Mamba2Error e = {{0}};
    if (!mamba2_gpu_available(&e)) {
        fprintf(stderr, "bench_gpu_kernels: %s\n", e.msg);
        return 1;
    }
    if (argc > 1 && !strcmp(argv[1], "--logits")) return logits_table(1);
    if (argc > 1 && !strcmp(argv[1], "--cublas-once")) {
        for (int k = 0; k < 3; k++)
            for (int nb = 8; nb <= 64; nb *= 2)
                if (mamba2_gpu_time_cublas_gemm(shapes[k].rows, shapes[k].cols, nb, 0, &e) < 0) {
                    fprintf(stderr, "cublas: %s\n", e.msg);
                    return 1;
                }
        return 0;
    }
    double copy_gbps, gemm_gflops;
    if (mamba2_gpu_roofline(&copy_gbps, &gemm_gflops, &e)) {
        fprintf(stderr, "roofline: %s\n", e.msg);
        return 1;
    }
    if (decode_gemm_only) {
        printf("GPU ceilings: copy %.0f GB/s (read + write)\n", copy_gbps);
        goto decode_gemm;
    }
    if (argc > 1 && !strcmp(argv[1], "--lt")) { /* each shape: cuBLAS' choice, then cuBLASLt's offers, fastest marked */
        printf("GPU ceilings: copy %.0f GB/s (read + write), bf16 GEMM %.0f TFLOP/s\n\n", copy_gbps, gemm_gflops / 1e3);
        printf("%-9s %-14s %4s %4s | %9s %7s %7s | %s\n", "product", "rows x cols", "nb", "beta", "cuBLAS ms", "of copy",
               "of GEMM", "cuBLASLt algorithms in the heuristic's order: ms (waves), the fastest starred, its fraction of copy and GEMM");
        for (int k = 0; k < 3; k++)
            for (int i_nb = 0; i_nb < n_nb; i_nb++) {
                const int nb = nbs[i_nb];
                float beta = k == 1 ? 1.0f : 0.0f; /* out_proj adds into the residual */
                double ms0 = mamba2_gpu_time_cublas_gemm(shapes[k].rows, shapes[k].cols, nb, 30, &e), ms[32];
                int n = 0, waves[32], best = 0;
                if (ms0 < 0 || mamba2_gpu_time_cublaslt_algos(shapes[k].rows, shapes[k].cols, nb, beta, 30, ms, &n, waves, &e)) {
                    fprintf(stderr, "cublas: %s\n", e.msg);
                    return 1;
                }
                double bytes = (double)shapes[k].rows * shapes[k].cols * 2, flop = 2.0 * shapes[k].rows * shapes[k].cols * nb;
                printf("%-9s %6d x %-6d %4d %4.0f | %9.4f %6.0f%% %6.0f%% |", shapes[k].name, shapes[k].rows, shapes[k].cols, nb, beta,
                       ms0, 100 * bytes / (ms0 * 1e-3) / 1e9 / copy_gbps, 100 * flop / (ms0 * 1e-3) / 1e9 / gemm_gflops);
                for (int i = 1; i < n; i++)
                    if (ms[i] < ms[best]) best = i;
                for (int i = 0; i < n; i++) printf(" %.4f%s(%.2f)", ms[i], i == best ? "*" : "", waves[i] / 100.0);
                if (n)
                    printf(" | best %.0f%% of copy, %.0f%% of GEMM", 100 * bytes / (ms[best] * 1e-3) / 1e9 / copy_gbps,
                           100 * flop / (ms[best] * 1e-3) / 1e9 / gemm_gflops);
                printf("\n");
                fflush(stdout);
            }
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--q8gemm")) { /* bytes: the weights as read (q8: 1 + 2/64 a weight) */
        printf("GPU ceilings: copy %.0f GB/s (read + write), bf16 GEMM %.0f TFLOP/s\n\n", copy_gbps, gemm_gflops / 1e3);
        printf("%-9s %-14s %5s | %9s %7s %6s | %9s %7s %6s | %9s | %s\n", "product", "rows x cols", "T", "q8 GEMM", "GB/s",
               "TF/s", "cuBLAS", "GB/s", "TF/s", "deq+cuBL", "q8 / cuBLAS time");
        const int Ts[] = {8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
        const int max_T = argc > 2 ? atoi(argv[2]) : 4096; /* --q8gemm MAX_T: the rows up to that T only */
        for (int k = 0; k < 3; k++)
            for (size_t i = 0; i < sizeof Ts / sizeof Ts[0] && Ts[i] <= max_T; i++) {
                double ms[3];
                if (mamba2_gpu_time_gemm_q8(shapes[k].rows, shapes[k].cols, Ts[i], 30, ms, &e)) {
                    fprintf(stderr, "q8 gemm: %s\n", e.msg);
                    return 1;
                }
                double w = (double)shapes[k].rows * shapes[k].cols, fl = 2 * w * Ts[i];
                printf("%-9s %6d x %-6d %5d | %9.4f %7.0f %6.0f | %9.4f %7.0f %6.0f | %9.4f | %.2f\n", shapes[k].name, shapes[k].rows,
                       shapes[k].cols, Ts[i], ms[0], w * (1 + 2.0 / 64) / ms[0] / 1e6, fl / ms[0] / 1e9, ms[1], w * 2 / ms[1] / 1e6,
                       fl / ms[1] / 1e9, ms[2], ms[0] / ms[1]);
            }
        return 0;
    }
    /* chunked SSD, one layer: x·dt, B, C in, y out; FLOPs of the four contractions (causal half of CBᵀ·X),
     * counted once per group for C·Bᵀ, as the algorithm needs them (the chunk scan forms C·Bᵀ again for
     * each of a group's heads, in registers, rather than reading it back from memory) */
    SSDDims d = {4096, 128, 64, 8, 128};
    int Q = 256;
    double parts[3] = {0, 0, 0};
    double ssd_ms = gemv_only ? 1 : mamba2_gpu_time_ssd_chunked(d, Q, 20, parts, &e);
    if (ssd_ms < 0) {
        fprintf(stderr, "ssd: %s\n", e.msg);
        return 1;
    }
    double nc = d.T / Q, cb = nc * d.G * 2.0 * Q * Q * d.N, diag = nc * d.H * 2.0 * Q * Q * d.P / 2,
           states = nc * d.H * 2.0 * Q * d.P * d.N, out = nc * d.H * 2.0 * Q * d.N * d.P;
    double ssd_gflop = (cb + diag + states + out) / 1e9;
    if (!json) {
        printf("GPU ceilings: copy %.0f GB/s (read + write), bf16 GEMM %.0f TFLOP/s\n\n", copy_gbps, gemm_gflops / 1e3);
        if (!gemv_only) {
            printf("chunked SSD, one layer, T=%d H=%d P=%d N=%d G=%d Q=%d: %.3f ms  (%.1f GFLOP -> %.0f TFLOP/s)\n", d.T,
                   d.H, d.P, d.N, d.G, Q, ssd_ms, ssd_gflop, ssd_gflop / ssd_ms);
            printf("  cumsum %.3f  chunk states + state passing %.3f  chunk scan (with C.B^T) %.3f ms\n\n", parts[0],
                   parts[1], parts[2]);
        }
        printf("%-10s %-14s %3s %9s %9s %8s\n", "GEMV", "rows x cols", "nb", "ms", "GB/s", "of copy");
    } else {
        printf("{\"copy_gbps\": %.1f, \"gemm_gflops\": %.1f, \"ssd_ms\": %.4f, \"ssd_gflop\": %.2f, \"gemv\": [", copy_gbps,
               gemm_gflops, ssd_ms, ssd_gflop);
    }
    int first = 1;
    for (int k = 0; k < 3; k++)
        for (int nb = 1; nb <= 4; nb *= 4)
            for (int stream = 0; stream < 2; stream++) { /* gemv.cuh's kernel, then the streamed one (gemv_stream.cu) */
                if (stream && (json || !mamba2_gpu_gemv_streamed(shapes[k].rows, shapes[k].cols, nb, 0))) continue;
                double ms = mamba2_gpu_time_gemv(shapes[k].rows, shapes[k].cols, nb, stream, 50, &e);
                if (ms < 0) {
                    fprintf(stderr, "gemv: %s\n", e.msg);
                    return 1;
                }
                double gbps = (double)shapes[k].rows * shapes[k].cols * 2 / (ms * 1e-3) / 1e9;
                if (!json)
                    printf("%-10s %6d x %-6d %3d %9.4f %9.0f %7.0f%%%s\n", shapes[k].name, shapes[k].rows, shapes[k].cols, nb,
                           ms, gbps, 100 * gbps / copy_gbps, stream ? "  streamed" : "");
                else
                    printf("%s{\"name\": \"%s\", \"nb\": %d, \"ms\": %.5f, \"gbps\": %.1f}", first ? "" : ", ",
                           shapes[k].name, nb, ms, gbps);
                first = 0;
            }
    if (json) {
        printf("]}\n");
        return 0;
    }

    /* the same GEMVs over q8 weights (bytes read: 1 + 2/64 per weight), both products; and the
     * dequantization into bf16 that prefill runs before each GEMM with q8 weights (bytes: the q8
     * matrix read, the bf16 one written) */
    printf("\n%-10s %-14s %3s %-6s %9s %9s %8s\n", "q8 GEMV", "rows x cols", "nb", "dot", "ms", "GB/s", "of copy");
    for (int k = 0; k < 3; k++)
        for (int nb = 1; nb <= 4; nb *= 4)
            for (int dp4a = 0; dp4a < 3; dp4a++) { /* float, dp4a, dp4a streamed through shared memory */
                if (dp4a == 2 && !mamba2_gpu_gemv_streamed(shapes[k].rows, shapes[k].cols, nb, 1)) continue;
                double ms = mamba2_gpu_time_gemv_q8(shapes[k].rows, shapes[k].cols, nb, dp4a, 50, &e);
                if (ms < 0) {
                    fprintf(stderr, "gemv q8: %s\n", e.msg);
                    return 1;
                }
                double gbps = (double)shapes[k].rows * shapes[k].cols * (1 + 2.0 / 64) / (ms * 1e-3) / 1e9;
                printf("%-10s %6d x %-6d %3d %-6s %9.4f %9.0f %7.0f%%\n", shapes[k].name, shapes[k].rows, shapes[k].cols, nb,
                       dp4a == 2 ? "stream" : dp4a ? "dp4a" : "float", ms, gbps, 100 * gbps / copy_gbps);
            }
    printf("\n%-24s %-14s %9s %9s %8s\n", "q8 -> bf16 dequantize", "rows x cols", "ms", "GB/s", "of copy");
    for (int k = 0; k < 3; k++) {
        double ms = mamba2_gpu_time_q8_dequantize(shapes[k].rows, shapes[k].cols, 20, &e);
        if (ms < 0) {
            fprintf(stderr, "dequantize: %s\n", e.msg);
            return 1;
        }
        double gbps = (double)shapes[k].rows * shapes[k].cols * (1 + 2.0 / 64 + 2) / (ms * 1e-3) / 1e9;
        printf("%-24s %6d x %-6d %9.4f %9.0f %7.0f%%\n", shapes[k].name, shapes[k].rows, shapes[k].cols, ms, gbps,
               100 * gbps / copy_gbps);
    }
    if (gemv_only) return 0;

decode_gemm:
    /* cuBLAS at the batched decode's shapes, as the decode path calls it (bf16 in, fp32 out), and
     * the decode GEMM */
    printf("\n%-10s %-14s %3s %9s %9s %8s\n", "cuBLAS", "rows x cols", "nb", "ms", "GB/s", "of copy");
    for (int nb = 8; nb <= 64; nb *= 2)
        for (int k = 0; k < 3; k++) {
            double ms = mamba2_gpu_time_cublas_gemm(shapes[k].rows, shapes[k].cols, nb, 50, &e);
            if (ms < 0) {
                fprintf(stderr, "cublas: %s\n", e.msg);
                return 1;
            }
            double gbps = (double)shapes[k].rows * shapes[k].cols * 2 / (ms * 1e-3) / 1e9;
            printf("%-10s %6d x %-6d %3d %9.4f %9.0f %7.0f%%\n", shapes[k].name, shapes[k].rows, shapes[k].cols, nb, ms, gbps,
                   100 * gbps / copy_gbps);
            /* then the decode GEMM, without and with the norm before the product in its prologue (as the
             * batched step runs it: in_proj and lm_head RMSNorm, out_proj the grouped norm and adding),
             * and out_proj with the grouped norm after the product, on each tensor-core instruction */
            for (int wg = 1; wg >= 0; wg--)
                for (int pro = 0; pro < (k == 1 ? 3 : 2); pro++) {
                    const int was = mamba2_gpu_gemm_decode_wgmma(wg);
                    const int code = pro == 0 ? 0 : k != 1 ? 1 : pro == 1 ? 2 : 3; /* mamba2_gpu_gemm_decode()'s */
                    ms = mamba2_gpu_time_gemm_decode(shapes[k].rows, shapes[k].cols, nb, k == 1, code, 50, &e);
                    mamba2_gpu_gemm_decode_wgmma(was);
                    if (ms < 0) {
                        fprintf(stderr, "decode GEMM: %s\n", e.msg);
                        return 1;
                    }
                    gbps = (double)shapes[k].rows * shapes[k].cols * 2 / (ms * 1e-3) / 1e9;
                    printf("%-10s %6d x %-6d %3d %9.4f %9.0f %7.0f%%  decode GEMM (gemm_decode.cu, %s)%s\n", shapes[k].name,
                           shapes[k].rows, shapes[k].cols, nb, ms, gbps, 100 * gbps / copy_gbps, wg ? "wgmma" : "mma.sync",
                           code == 1 ? " + RMSNorm" : code == 2 ? " + grouped norm" : code == 3 ? " + grouped norm after" : "");
                }
        }
    if (decode_gemm_only) return 0;

    /* the decode SSD step of one layer, state read and written (8 layers of state, launches back to
     * back), each kernel where it applies */
    printf("\n%-28s %4s %9s %9s %8s\n", "SSD step, one layer", "nb", "ms", "GB/s", "of copy");
    SSDDims sd = {1, 128, 64, 8, 128};
    const char *kname[] = {"", "registers", "shared", "streamed"};
    int step_nb[] = {1, 4, 8, 16, 32, 64, 256};
    for (int sb = 0; sb < 2; sb++)
        for (size_t i = 0; i < sizeof step_nb / sizeof *step_nb; i++)
            for (int kernel = 1; kernel <= 3; kernel++) {
                int nb = step_nb[i];
                if (nb < 8 && kernel != 1) continue;
                double ms = mamba2_gpu_time_ssd_step(sd, nb, sb, kernel, 20, &e);
                if (ms < 0) {
                    fprintf(stderr, "ssd step: %s\n", e.msg);
                    return 1;
                }
                double gbps = 2.0 * nb * sd.H * sd.P * sd.N * (sb ? 2 : 4) / (ms * 1e-3) / 1e9;
                char label[32];
                snprintf(label, sizeof label, "  %s state, %s", sb ? "bf16" : "fp32", kname[kernel]);
                printf("%-28s %4d %9.4f %9.0f %7.0f%%\n", label, nb, ms, gbps, 100 * gbps / copy_gbps);
            }

    return logits_table(16);
}
