/**
 * @file tensor.h
 * @brief A read-only view of one tensor inside a memory-mapped checkpoint file.
 *
 * Weights are never copied: a Mamba2Tensor points into the mmap of its file and
 * remembers its stored dtype. The reference reads elements one at a time
 * through mamba2_tensor_get(); the fast paths read the raw bytes.
 */
#ifndef MAMBA2_TENSOR_H
#define MAMBA2_TENSOR_H

#include <stdint.h>

/** Element types that occur in Mamba-2 checkpoints. */
typedef enum {
    MAMBA2_F32 = 0, /**< IEEE float32 ("F32") */
    MAMBA2_F16 = 1, /**< IEEE float16 ("F16") */
    MAMBA2_BF16 = 2 /**< bfloat16 ("BF16"): the top 16 bits of a float32 */
} Mamba2DType;

/** Largest rank of a tensor we accept. */
#define MAMBA2_MAX_DIMS 4

/** A view of one tensor. `data == NULL` means "absent" (an optional tensor). */
typedef struct {
    const char *name;  /**< name as stored in the file (points into the header copy) */
    const char *file;  /**< path of the file that holds it */
    Mamba2DType dtype; /**< stored element type */
    int ndim;          /**< rank */
    int64_t shape[MAMBA2_MAX_DIMS]; /**< dimensions, outermost first */
    const void *data;  /**< first element, inside the file's mmap */
} Mamba2Tensor;

/** Bytes per element of @p t. */
int mamba2_dtype_size(Mamba2DType t);

/** Name of @p t as safetensors writes it ("F32", "F16", "BF16"). */
const char *mamba2_dtype_name(Mamba2DType t);

/** Number of elements of @p t (product of its shape). */
int64_t mamba2_tensor_numel(const Mamba2Tensor *t);

/** bfloat16 bits to float: the bf16 value is the top half of the float32. */
static inline float mamba2_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

/** float to bfloat16 bits, rounding to nearest even (NaN stays NaN). */
static inline uint16_t mamba2_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

/** IEEE half-precision bits to float (handles subnormals, Inf and NaN). */
float mamba2_f16_to_f32(uint16_t h);

/** Element @p i (flat, row-major) of @p t, converted to float. */
static inline float mamba2_tensor_get(const Mamba2Tensor *t, int64_t i) {
    switch (t->dtype) {
    case MAMBA2_F32: return ((const float *)t->data)[i];
    case MAMBA2_BF16: return mamba2_bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: return mamba2_f16_to_f32(((const uint16_t *)t->data)[i]);
    }
}

/** Format the shape of @p t as "[a, b, c]" into @p buf. Returns @p buf. */
char *mamba2_shape_str(const Mamba2Tensor *t, char *buf, int len);

#endif
