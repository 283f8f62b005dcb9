/**
 * @file targets.h
 * @brief One function per parser that takes an arbitrary input, feeds it to the parser, and checks
 *        what must hold for every input: no crash, no out-of-bounds access, no leak (the sanitizers'
 *        business), and "fail clearly": a refused input leaves a message that names the file, an
 *        accepted one is consistent (shapes, offsets, sizes) and safe to use.
 *
 * The libFuzzer harnesses (tests/fuzz/fuzz_NAME.c) call them, and so does the CUnit suite
 * `malformed` (tests/test_malformed.c), which replays the committed corpus and every input that
 * once crashed (tests/fuzz/regressions/NAME/) on each `make test`.
 */
#ifndef MAMBA2_FUZZ_TARGETS_H
#define MAMBA2_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

/**
 * @brief Run one input through a parser.
 * @return 0, or -1 when a property was violated (the reason printed on stderr); a memory error
 *         is caught by the sanitizers before that.
 */
typedef int (*FuzzTarget)(const uint8_t *data, size_t size);

/** `config.json` / `params.json` text: mamba2_config_parse() and what it derives. */
int fuzz_config(const uint8_t *data, size_t size);
/** A whole `.safetensors` file: safetensors_open(), then every tensor view checked against the file. */
int fuzz_safetensors(const uint8_t *data, size_t size);
/** A `tokenizer.json`: load, encode fixed texts, decode, stream-decode. */
int fuzz_tokenizer_json(const uint8_t *data, size_t size);
/** A SentencePiece model protobuf: load, encode fixed texts, decode, stream-decode. */
int fuzz_tokenizer_spm(const uint8_t *data, size_t size);
/** A saved state file, loaded for a fixed tiny config: mamba2_state_load(). */
int fuzz_state(const uint8_t *data, size_t size);
/**
 * @brief A checkpoint directory: parts separated by FUZZ_PART_SEP become config.json, then
 *        model.safetensors, or model.safetensors.index.json + shards model-0000k-of-0000n.safetensors;
 *        mamba2_model_load(), then a two-token forward pass through whatever loaded.
 */
int fuzz_checkpoint(const uint8_t *data, size_t size);
/** Text to encode: the first byte picks one of the tokenizers in data/, the rest is the text. */
int fuzz_encode(const uint8_t *data, size_t size);

/** Separator of the files of one fuzz_checkpoint() input. */
#define FUZZ_PART_SEP "\n--mamba2-fuzz-part--\n"

/** The target called @p name ("config", "safetensors", ...), or NULL. */
FuzzTarget fuzz_target_by_name(const char *name);

/** Names of every target, NULL-terminated. */
extern const char *const fuzz_target_names[];

/** Free what the targets keep between inputs (loaded tokenizers, the temporary directory). */
void fuzz_targets_cleanup(void);

#endif
