/**
 * @file utf8.h
 * @brief Strict UTF-8 decoding, encoding and repair, as the tokenizers need them.
 *
 * "Valid" means what both reference libraries (sentencepiece's DecodeUTF8 and
 * Rust's `String::from_utf8`) accept: the shortest form of a code point in
 * [0, 0x10FFFF] that is not a surrogate (U+D800..U+DFFF).
 *
 * Invalid input is repaired one byte at a time: every byte that does not start
 * a valid sequence becomes U+FFFD (EF BF BD). That is what sentencepiece's
 * normalizer and decoder do; the golden-data script applies the same rule before
 * it hands text to Hugging Face `tokenizers` (which only accepts valid strings).
 */
#ifndef MAMBA2_UTF8_H
#define MAMBA2_UTF8_H

#include <stddef.h>
#include <stdint.h>

/** U+FFFD REPLACEMENT CHARACTER in UTF-8. */
#define MAMBA2_UTF8_REPLACEMENT "\xEF\xBF\xBD"

/**
 * @brief Decode the character at the start of @p s.
 * @param s  bytes
 * @param n  number of bytes available (≥ 1)
 * @param cp out: the code point (may be NULL)
 * @return the length (1 to 4) of a valid character, or 0 when the bytes at @p s
 *         do not start a valid, complete character.
 */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/**
 * @brief Length a character starting with lead byte @p b claims (1 to 4), from
 *        its high bits only; 1 for bytes that cannot start a character.
 */
int utf8_lead_length(unsigned char b);

/**
 * @brief Whether @p s[0..n) could still become a valid character once more bytes arrive.
 *
 * True when @p n is shorter than the lead byte claims and every byte after the
 * lead is a continuation byte (10xxxxxx). Used by the streaming decoder to hold
 * back half a character.
 */
int utf8_is_incomplete_prefix(const unsigned char *s, size_t n);

/**
 * @brief Write code point @p cp (≤ 0x10FFFF) as UTF-8 into @p out.
 * @return the number of bytes written (1 to 4).
 */
int utf8_encode(uint32_t cp, char out[4]);

/**
 * @brief Copy @p s[0..n) with every invalid byte replaced by U+FFFD.
 * @param s       bytes
 * @param n       number of bytes
 * @param out_len out: length of the result
 * @return a NUL-terminated heap buffer (caller frees), or NULL when memory runs out.
 */
char *utf8_repair(const char *s, size_t n, size_t *out_len);

/** Whether the whole of @p s[0..n) is valid UTF-8. */
int utf8_is_valid(const char *s, size_t n);

/**
 * @brief Unicode White_Space property (what Rust's `char::is_whitespace` tests).
 */
int utf8_is_whitespace(uint32_t cp);

#endif
