/**
 * @file test_util.c
 * @brief Helpers shared by the suites: a seeded random generator, error norms, temp dirs.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests.h"

static uint64_t rng_state;

uint64_t test_seed(void) {
    static uint64_t seed;
    if (!seed) {
        const char *env = getenv("MAMBA2_TEST_SEED");
        seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        if (!seed) seed = 1;
        printf("\n[tests] random seed %llu (set MAMBA2_TEST_SEED to repeat)\n", (unsigned long long)seed);
        rng_state = seed;
    }
    return seed;
}

/* xorshift64*: good enough for test inputs. */
double test_uniform(void) {
    test_seed();
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

double test_normal(void) {
    double u1 = test_uniform(), u2 = test_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

void test_fill_normal(float *a, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) a[i] = (float)(scale * test_normal());
}

double test_rel_l2(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - want[i];
        if (isnan(got[i]) || isnan(want[i])) return INFINITY;
        num += e * e;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

char *test_tmpdir(void) {
    char tmpl[] = "/tmp/mamba2-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

void test_rmtree(const char *dir) {
    char cmd[4200];
    if (!dir || strncmp(dir, "/tmp/mamba2-test-", 17)) return; /* never anything else */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}
