/**
 * @file tokenizer.h
 * @brief Text ↔ token ids, reproducing the two reference libraries id for id.
 *
 * Two file formats are read:
 *
 * - `tokenizer.json` (Hugging Face `tokenizers`): BPE with merges, byte
 *   fallback, added tokens, normalizers Prepend / Replace / Sequence,
 *   pre-tokenizer Metaspace, decoders Replace / ByteFallback / Fuse / Strip and
 *   a TemplateProcessing post-processor. Reference: the `tokenizers` library.
 * - `tokenizer.model` / `tokenizer.model.v3` (SentencePiece model protobuf,
 *   BPE type). Reference: the `sentencepiece` library. Control pieces (`[INST]`,
 *   `</s>`, ...) are never produced from text, exactly as in sentencepiece;
 *   build prompts that need them from ids.
 *
 * Input text is bytes. Bytes that are not valid UTF-8 are replaced one by one
 * with U+FFFD before encoding (what sentencepiece does; see utf8.h).
 *
 * A tokenizer is read-only after loading: several threads may encode with the
 * same one at once.
 */
#ifndef MAMBA2_TOKENIZER_H
#define MAMBA2_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/** A loaded tokenizer (either format). */
typedef struct Mamba2Tokenizer Mamba2Tokenizer;

/** What a token id stands for. */
typedef enum {
    MAMBA2_TOKEN_NORMAL = 0,   /**< a piece of text made by BPE */
    MAMBA2_TOKEN_BYTE = 1,     /**< one raw byte (`<0xAB>`, byte fallback) */
    MAMBA2_TOKEN_CONTROL = 2,  /**< control / special token (`<s>`, `[INST]`); not printed */
    MAMBA2_TOKEN_UNKNOWN = 3,  /**< the unknown token */
    MAMBA2_TOKEN_USER = 4,     /**< user-defined piece / non-special added token; printed as is */
    MAMBA2_TOKEN_INVALID = 5   /**< no token has this id */
} Mamba2TokenType;

/**
 * @brief Load a tokenizer.
 * @param path a model directory (tokenizer.json is preferred, else
 *             tokenizer.model.v3, else tokenizer.model) or a tokenizer file
 *             (JSON is recognised by its content, anything else is read as a
 *             SentencePiece model)
 * @param err  receives the reason on failure (the file and the component)
 * @return the tokenizer, or NULL on failure.
 */
Mamba2Tokenizer *mamba2_tokenizer_load(const char *path, Mamba2Error *err);

/**
 * @brief Load a tokenizer from the bytes of a file already in memory.
 * @param bytes  the contents of a `tokenizer.json` (recognised by a leading '{') or of a
 *               SentencePiece model (anything else)
 * @param len    number of bytes
 * @param source the name used in error messages and returned by mamba2_tokenizer_source()
 * @param err    receives the reason on failure
 * @return the tokenizer (it does not keep @p bytes), or NULL on failure.
 */
Mamba2Tokenizer *mamba2_tokenizer_load_bytes(const void *bytes, size_t len, const char *source, Mamba2Error *err);

/** @brief Release a tokenizer (NULL is allowed). */
void mamba2_tokenizer_free(Mamba2Tokenizer *t);

/** @brief The file that was loaded. */
const char *mamba2_tokenizer_source(const Mamba2Tokenizer *t);

/** @brief 1 for a `tokenizer.json`, 0 for a SentencePiece model. */
int mamba2_tokenizer_is_hf(const Mamba2Tokenizer *t);

/** @brief Number of ids (one past the largest id). */
int32_t mamba2_tokenizer_vocab_size(const Mamba2Tokenizer *t);

/** @brief The beginning-of-sequence id, or −1 when the tokenizer has none. */
int32_t mamba2_tokenizer_bos(const Mamba2Tokenizer *t);

/** @brief The end-of-sequence id, or −1 when the tokenizer has none. */
int32_t mamba2_tokenizer_eos(const Mamba2Tokenizer *t);

/**
 * @brief Encode text into ids.
 * @param t       the tokenizer
 * @param text    bytes (need not be NUL-terminated or valid UTF-8)
 * @param len     number of bytes
 * @param add_bos 1: add the special tokens the reference adds by default (the
 *                post-processor of tokenizer.json, BOS for a SentencePiece model);
 *                for these models that is BOS in front
 * @param ids     out: malloc'd array of ids (caller frees; may be NULL when *n_ids is 0)
 * @param n_ids   out: number of ids
 * @param err     receives the reason on failure
 * @return 0, or −1 (out of memory, or an unknown character and no unk token).
 */
int mamba2_tokenizer_encode(const Mamba2Tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                            size_t *n_ids, Mamba2Error *err);

/**
 * @brief Decode ids into text exactly as the reference's default decode does
 *        (`tokenizers`: `decode(ids)`, special tokens skipped; `sentencepiece`:
 *        `decode(ids)`).
 * @param t    the tokenizer
 * @param ids  the ids
 * @param n    number of ids
 * @param text out: malloc'd, NUL-terminated (caller frees)
 * @param len  out: length in bytes (the text may contain NUL bytes)
 * @param err  receives the reason on failure
 * @return 0, or −1 on an id out of range (SentencePiece) or out of memory.
 */
int mamba2_tokenizer_decode(const Mamba2Tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
                            Mamba2Error *err);

/** @brief What @p id stands for (MAMBA2_TOKEN_INVALID when out of range). */
Mamba2TokenType mamba2_tokenizer_token_type(const Mamba2Tokenizer *t, int32_t id);

/**
 * @brief The vocabulary string of @p id (e.g. "▁the", "<0x0A>", "[INST]").
 * @param t   the tokenizer
 * @param id  the token id
 * @param len out: its length (may be NULL)
 * @return the string (owned by the tokenizer), or NULL when no token has this id.
 */
const char *mamba2_tokenizer_piece(const Mamba2Tokenizer *t, int32_t id, size_t *len);

/** @brief The id whose vocabulary string is @p piece[0..len), or −1. */
int32_t mamba2_tokenizer_piece_id(const Mamba2Tokenizer *t, const char *piece, size_t len);

/**
 * @brief The bytes one token stands for on its own, without context
 *        ("▁the" → " the", "<0x0A>" → "\n", a control token → "").
 *
 * No leading space is removed and byte tokens are single (possibly partial)
 * bytes: to print generated text, use the streaming Mamba2Detokenizer.
 * @param t   the tokenizer
 * @param id  the token id
 * @param len out: number of bytes
 * @return the bytes (owned by the tokenizer), or NULL when no token has this id.
 */
const char *mamba2_tokenizer_token_bytes(const Mamba2Tokenizer *t, int32_t id, size_t *len);

/**
 * @brief Streaming decoder: turns ids, one at a time, into text that is safe to
 *        print at once.
 *
 * It never returns half of a UTF-8 character: bytes of a character split over
 * byte tokens are held back until the character is complete. A byte that can
 * no longer become part of a valid character is printed as U+FFFD. The
 * concatenation of everything returned by push() and finish() equals
 * mamba2_tokenizer_decode() of the same ids (for `tokenizer.json`, whenever the
 * byte tokens form valid UTF-8; otherwise both print U+FFFD, possibly for
 * different bytes).
 */
typedef struct {
    const Mamba2Tokenizer *tok; /**< the tokenizer */
    unsigned char pending[4];   /**< bytes of an incomplete character */
    int n_pending;              /**< number of pending bytes */
    int emitted;                /**< 1 once any text was returned */
    int bos_ws_seen;            /**< SentencePiece: the leading "▁" was removed */
    int strip_left;             /**< tokenizer.json: leading characters still to strip */
    char *buf;                  /**< output of the last call */
    size_t cap;                 /**< bytes allocated for buf */
} Mamba2Detokenizer;

/** @brief Start a stream. @return 0, or −1 when memory runs out. */
int mamba2_detok_init(Mamba2Detokenizer *d, const Mamba2Tokenizer *t, Mamba2Error *err);

/**
 * @brief Add one id; return the text that became printable.
 * @param d   the stream
 * @param id  the next token id
 * @param out out: the text (valid until the next call), possibly empty
 * @param len out: its length in bytes
 * @param err receives the reason on failure
 * @return 0, or −1 on an id out of range.
 */
int mamba2_detok_push(Mamba2Detokenizer *d, int32_t id, const char **out, size_t *len, Mamba2Error *err);

/** @brief End the stream: pending bytes of an unfinished character come out as U+FFFD. */
void mamba2_detok_finish(Mamba2Detokenizer *d, const char **out, size_t *len);

/** @brief Release the stream's buffer. */
void mamba2_detok_free(Mamba2Detokenizer *d);

#endif
