/**
 * @file gemv_q8.cu
 * @brief The decode GEMV over q8 weights: gemv.cuh's kernel instantiated for GEMV_Q8_FLOAT and
 *        GEMV_Q8_DP4A, with block shapes for rows of 1-byte weights.
 *
 * A 16-byte chunk holds 16 q8 columns where it holds 8 bf16 ones, so a row of 4,096 columns
 * (in_proj, lm_head) is 256 chunks: one per thread of a 256-thread block, one pass. bf16's shape
 * for those tall matrices, 8 rows × 2 chunks per thread, would leave its second chunk idle and
 * halve the bytes in flight; q8 takes one chunk a thread instead: for one sequence with the dp4a
 * product 8 rows (8 loads of 16 bytes a thread, three blocks per SM: the faster in the model,
 * results/gpu.md, than 16 rows, the same 16 loads as bf16's in two blocks per SM), else 16 rows.
 * A row of 8,192 (out_proj) is two passes, as bf16's 4,096-column rows are: for one sequence with
 * the dp4a product 16 rows × 1 chunk, whose second pass is staged in shared memory before the wait
 * (gemv_kernel's STG): 256 blocks with 64 KB in registers and 64 KB (and their scales) in shared
 * memory, two per SM, so that the whole of the 7B's out_proj (34.6 MB) is on its way while the SSD
 * step runs, where 8 rows × 2 chunks in registers (the shape before, and still the float
 * product's) had half of it (results/gpu.md); for 2 to 4 sequences one chunk a thread and as many
 * rows as the epilogue's lanes allow (rows × sequences ≤ 32, at most 16: 16, 10, 8), which quantize
 * each input chunk once for more rows than 8 × 2 did (faster in the model at 4 sequences). From 3
 * sequences the same lanes limit one-pass rows to 8.
 */
#include <stdlib.h>

#include "gemv.cuh"

/* The shape of rows of several passes (out_proj) for one sequence, rows × chunks per thread (macros for A/B builds). */
#ifndef Q8_WIDE_ROWS
#define Q8_WIDE_ROWS 8
#endif
#ifndef Q8_WIDE_CPP
#define Q8_WIDE_CPP 2
#endif

/* Rows of a one-pass block at one sequence: 8, or 16 where MAMBA2_GPU_Q8_ONEPASS_ROWS=16 (the shape
 * before; an A/B knob). */
static int q8_onepass_rows() {
    static int rows = 0;
    if (!rows) {
        const char *v = getenv("MAMBA2_GPU_Q8_ONEPASS_ROWS");
        rows = v && atoi(v) == 16 ? 16 : 8;
    }
    return rows;
}

template <int NB, int PRO, int EPI, int WF>
static void launch_gemv_q8_t(const GemvArgs &a, cudaStream_t s) {
    const bool one_pass = a.cols / 16 <= GEMV_THREADS;
    if constexpr (NB == 1 && WF == GEMV_Q8_DP4A) /* (the float product spills in 8 rows' 80 registers) */
        if (one_pass && q8_onepass_rows() == 8) return launch_gemv_shape<NB, PRO, EPI, 8, 1, WF>(a, s);
    if constexpr (NB <= 2) {
        if (one_pass) return launch_gemv_shape<NB, PRO, EPI, 16, 1, WF>(a, s);
    } else {
        if (one_pass) return launch_gemv_shape<NB, PRO, EPI, 8, 1, WF>(a, s);
    }
    if constexpr (NB == 1) {
        if constexpr (WF == GEMV_Q8_DP4A)
            if (gemv_q8_stages((GemvPrologue)PRO, a)) return launch_gemv_shape<1, PRO, EPI, 16, 1, WF, 1>(a, s);
        launch_gemv_shape<1, PRO, EPI, Q8_WIDE_ROWS, Q8_WIDE_CPP, WF>(a, s);
    } else {
        constexpr int rows = 16 * NB <= 32 ? 16 : 32 / NB; /* the epilogue's lanes */
        launch_gemv_shape<NB, PRO, EPI, rows, 1, WF>(a, s);
    }
}

bool gemv_q8_stages(GemvPrologue pro, const GemvArgs &a) {
    const int kq = round_up(a.cols, Q8_SCALE_BLOCK); /* the row pitch; a.Wq.Kq where the weights are set */
    return a.stage && a.wf == GEMV_Q8_DP4A && a.nb == 1 && a.cols % Q8_XBLOCK == 0 && a.cols / 16 > GEMV_THREADS &&
           kq / Q8_SCALE_BLOCK % 2 == 0 && (pro != PRO_GATEDNORM || a.xq);
}

template <int WF> struct LaunchGemvQ8 {
    template <int NB, int PRO, int EPI> static void run(const GemvArgs &a, cudaStream_t s) { launch_gemv_q8_t<NB, PRO, EPI, WF>(a, s); }
};

void launch_gemv_q8(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, cudaStream_t s) {
    if (a.wf == GEMV_Q8_DP4A) gemv_dispatch<LaunchGemvQ8<GEMV_Q8_DP4A>>(pro, epi, a, s);
    else gemv_dispatch<LaunchGemvQ8<GEMV_Q8_FLOAT>>(pro, epi, a, s);
}
