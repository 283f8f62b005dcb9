/**
 * @file mamba2_ssd_api.c
 * @brief The public API's SSD forms (ref/ssd.c) on caller-owned arrays, sizes checked first.
 */
#include "mamba2_impl.h"
#include "ssd.h"

/** The three forms, for run_ssd(). */
typedef enum { RECURRENT, QUADRATIC, CHUNKED } Form;

/* Check the sizes (each >= 1, heads split evenly into groups) and the arrays (none NULL), then run
 * one form; the quadratic and chunked forms allocate, and say so when they cannot. */
static int run_ssd(Form form, SSDDims d, int Q, const float *x, const float *dt, const float *A, const float *B,
                   const float *C, float *state, float *y, mamba2_error *err) {
    const float *const arrays[7] = {x, dt, A, B, C, state, y};
    static const char *const names[7] = {"x", "dt", "A", "B", "C", "state", "y"};
    if (d.T < 1 || d.H < 1 || d.P < 1 || d.G < 1 || d.N < 1 || Q < 1)
        return api_fail(err, MAMBA2_ERR_ARGUMENT, "SSD sizes must be >= 1: T=%d H=%d P=%d G=%d N=%d Q=%d", d.T, d.H,
                        d.P, d.G, d.N, Q);
    if (d.H % d.G)
        return api_fail(err, MAMBA2_ERR_ARGUMENT, "H = %d heads do not split into G = %d groups", d.H, d.G);
    for (int i = 0; i < 7; i++)
        if (!arrays[i]) return api_fail(err, MAMBA2_ERR_ARGUMENT, "SSD array %s is NULL", names[i]);
    switch (form) {
    case RECURRENT: ssd_recurrent(d, x, dt, A, B, C, state, y); break;
    case QUADRATIC:
        if (ssd_quadratic(d, x, dt, A, B, C, state, y))
            return api_fail(err, MAMBA2_ERR_MEMORY, "out of memory for the %d x %d mask of the quadratic form", d.T, d.T);
        break;
    case CHUNKED:
        if (ssd_chunked(d, Q, x, dt, A, B, C, state, y))
            return api_fail(err, MAMBA2_ERR_MEMORY, "out of memory for the chunk states of %d tokens in chunks of %d",
                            d.T, Q);
        break;
    }
    return api_ok(err);
}

MAMBA2_API int mamba2_ssd_recurrent(int T, int H, int P, int G, int N, const float *x, const float *dt, const float *A,
                                    const float *B, const float *C, float *state, float *y, mamba2_error *err) {
    SSDDims d = {T, H, P, G, N};
    return run_ssd(RECURRENT, d, 1, x, dt, A, B, C, state, y, err);
}

MAMBA2_API int mamba2_ssd_quadratic(int T, int H, int P, int G, int N, const float *x, const float *dt, const float *A,
                                    const float *B, const float *C, float *state, float *y, mamba2_error *err) {
    SSDDims d = {T, H, P, G, N};
    return run_ssd(QUADRATIC, d, 1, x, dt, A, B, C, state, y, err);
}

MAMBA2_API int mamba2_ssd_chunked(int T, int H, int P, int G, int N, int Q, const float *x, const float *dt,
                                  const float *A, const float *B, const float *C, float *state, float *y,
                                  mamba2_error *err) {
    SSDDims d = {T, H, P, G, N};
    return run_ssd(CHUNKED, d, Q, x, dt, A, B, C, state, y, err);
}
