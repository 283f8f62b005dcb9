/**
 * @file test_main.c
 * @brief Runs every CUnit suite and prints CUnit's summary; exit status 1 on any failure.
 *
 * Each tests/test_*.c file registers its suites through one function listed in
 * tests.h and called below. Run one suite with `build/run_tests SUITE_NAME`, one test of it with
 * `build/run_tests SUITE_NAME 'TEST NAME'` (to repeat a test that failed once, say).
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#include "tests.h"

int main(int argc, char **argv) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    int (*registrars[])(void) = {
        register_ssd_tests,
        register_checkpoint_tests,
        register_model_tests,
        register_backend_tests,
        register_gpu_tests,
        register_tokenizer_tests,
        register_sampler_tests,
        register_cpu_tests,
        register_quant_tests,
        register_malformed_tests,
        register_demo_model_tests,
        register_api_tests,
        register_api_library_tests,
        register_cli_tests,
        register_chat_tests,
    };
    for (size_t i = 0; i < sizeof registrars / sizeof *registrars; i++)
        if (registrars[i]() != 0) {
            fprintf(stderr, "cannot register suite %zu: %s\n", i, CU_get_error_msg());
            CU_cleanup_registry();
            return 2;
        }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    if (argc > 1) {
        CU_pSuite s = CU_get_suite(argv[1]);
        if (!s) {
            fprintf(stderr, "no suite named '%s'\n", argv[1]);
            CU_cleanup_registry();
            return 2;
        }
        CU_pTest t = argc > 2 ? CU_get_test(s, argv[2]) : NULL;
        if (argc > 2 && !t) {
            fprintf(stderr, "no test named '%s' in suite '%s'\n", argv[2], argv[1]);
            CU_cleanup_registry();
            return 2;
        }
        if (t)
            CU_basic_run_test(s, t);
        else
            CU_basic_run_suite(s);
    } else {
        CU_basic_run_tests();
    }
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
