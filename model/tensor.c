/** @file tensor.c @brief Element types and tensor views. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>

int mamba2_dtype_size(Mamba2DType t) { return t == MAMBA2_F32 ? 4 : 2; }

const char *mamba2_dtype_name(Mamba2DType t) {
    return t == MAMBA2_F32 ? "F32" : t == MAMBA2_F16 ? "F16" : "BF16";
}

int64_t mamba2_tensor_numel(const Mamba2Tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* value = (-1)^sign * 2^(exp-15) * 1.mant for normal numbers,
 *         (-1)^sign * 2^-14 * 0.mant for subnormals (exp == 0). */
float mamba2_f16_to_f32(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)mant, -24);
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexpf((float)(mant | 0x400), exp - 25);
    return sign ? -v : v;
}

char *mamba2_shape_str(const Mamba2Tensor *t, char *buf, int len) {
    int n = snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && n < len; i++)
        n += snprintf(buf + n, len - n, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
    return buf;
}
