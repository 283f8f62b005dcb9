/**
 * @file fuzz_tokenizer_json.c
 * @brief libFuzzer harness: a tokenizer.json (mamba2_tokenizer_load_bytes, then encode / decode).
 *
 * Built by `make fuzz` (clang -fsanitize=fuzzer,address,undefined); the target is in targets.c.
 */
#include <stdlib.h>

#include "targets.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    atexit(fuzz_targets_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_tokenizer_json(data, size)) abort(); /* a violated property counts as a crash */
    return 0;
}
