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
 * results/gpu.md, than 16 rows, the same 16 loads as bf16's in two blocks per SM), else 16 rows. A row of 8,192 (out_proj) is two
 * passes, as bf16's 4,096-column rows are:
 * for one sequence 8 rows × 2 chunks (bf16 takes 4 × 2 there), the fastest in the model of the
 * shapes tried (results/gpu.md: 16 × 1 was faster alone but slower in the model); for 2 to 4
 * sequences one chunk a thread and as many rows as the epilogue's lanes allow (rows × sequences
 * ≤ 32, at most 16: 16, 10, 8), which quantize each input chunk once for more rows than 8 × 2 did
 * (faster in the model at 4 sequences). From 3 sequences the same lanes limit one-pass rows to 8.
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
            if (PRO != PRO_GATEDNORM || a.xq) switch (gemv_stage_mode()) { /* (see gemv_kernel: the input rounded already) */
            case 1: return launch_gemv_shape<1, PRO, EPI, 8, 1, WF, 1>(a, s);
            case 2: return launch_gemv_shape<1, PRO, EPI, 16, 1, WF, 1>(a, s);
            default: break;
            }
        launch_gemv_shape<1, PRO, EPI, Q8_WIDE_ROWS, Q8_WIDE_CPP, WF>(a, s);
    } else {
        constexpr int rows = 16 * NB <= 32 ? 16 : 32 / NB; /* the epilogue's lanes */
        launch_gemv_shape<NB, PRO, EPI, rows, 1, WF>(a, s);
    }
}

template <int WF> struct LaunchGemvQ8 {
    template <int NB, int PRO, int EPI> static void run(const GemvArgs &a, cudaStream_t s) { launch_gemv_q8_t<NB, PRO, EPI, WF>(a, s); }
};

void launch_gemv_q8(GemvPrologue pro, GemvEpilogue epi, const GemvArgs &a, cudaStream_t s) {
    if (a.wf == GEMV_Q8_DP4A) gemv_dispatch<LaunchGemvQ8<GEMV_Q8_DP4A>>(pro, epi, a, s);
    else gemv_dispatch<LaunchGemvQ8<GEMV_Q8_FLOAT>>(pro, epi, a, s);
}
