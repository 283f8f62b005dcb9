/**
 * @file tests.h
 * @brief Registration functions of the CUnit suites (one per tests/test_*.c) and shared helpers.
 */
#ifndef MAMBA2_TESTS_H
#define MAMBA2_TESTS_H

#include <stddef.h>
#include <stdint.h>

/** Register the SSD-form agreement suite (test_ssd.c). */
int register_ssd_tests(void);

/** The run's random seed (from MAMBA2_TEST_SEED, else the clock); printed once. */
uint64_t test_seed(void);
/** Uniform double in [0, 1) from the seeded generator. */
double test_uniform(void);
/** Standard normal double from the seeded generator. */
double test_normal(void);
/** Fill @p a[n] with N(0, scale²) samples. */
void test_fill_normal(float *a, size_t n, double scale);
/** ‖got − want‖₂ / ‖want‖₂ (absolute norm when want is zero; +inf on NaN). */
double test_rel_l2(const float *got, const float *want, size_t n);
/** Create a fresh directory under /tmp (caller frees the returned path). */
char *test_tmpdir(void);
/** Remove a directory made by test_tmpdir() and everything in it. */
void test_rmtree(const char *dir);

#endif
