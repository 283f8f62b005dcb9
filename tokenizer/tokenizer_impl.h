/**
 * @file tokenizer_impl.h
 * @brief Internals shared by tokenizer.c (common part), tokenizer_hf.c and tokenizer_spm.c.
 *
 * Not part of the public API. Every token id has a vocabulary string ("piece"),
 * a type, and a "surface": the bytes it prints as in the middle of a text. The
 * two back ends fill these tables when they load (with the functions of
 * tokenizer_impl.c); encoding is theirs, and the streaming decoder in tokenizer.c
 * works from the tables and a few rules.
 *
 * This header does not include the public tokenizer.h (it names the tokenizer by
 * its struct tag), so that the tables sit below both tokenizer.c and the back
 * ends, and no include goes back up.
 */
#ifndef MAMBA2_TOKENIZER_IMPL_H
#define MAMBA2_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "strmap.h"

/** A growable byte buffer. */
typedef struct {
    char *p;    /**< the bytes (NUL-terminated after each add) */
    size_t n;   /**< bytes in use */
    size_t cap; /**< bytes allocated */
} ByteBuf;

/** @brief Append @p n bytes; @return 0, or −1 out of memory. */
int bytebuf_add(ByteBuf *b, const void *s, size_t n);

/** @brief Make room for @p n bytes in all (and a NUL); @return 0, or −1 out of memory. */
int bytebuf_reserve(ByteBuf *b, size_t n);

/** A growable array of ids. */
typedef struct {
    int32_t *v; /**< the ids */
    size_t n;   /**< ids in use */
    size_t cap; /**< ids allocated */
} IdVec;

/** @brief Append one id; @return 0, or −1 out of memory. */
int idvec_push(IdVec *v, int32_t id);

/** Marks an id with no vocabulary string (a gap in the ids). */
#define TOK_NO_PIECE UINT32_MAX

/** The type of an id no back end has filled: MAMBA2_TOKEN_INVALID of tokenizer.h (tokenizer.c
 *  checks at compile time that the two agree). */
#define TOK_TYPE_INVALID 5

typedef struct HfModel HfModel;   /**< tokenizer.json data (tokenizer_hf.c) */
typedef struct SpmModel SpmModel; /**< SentencePiece data (tokenizer_spm.c) */

/** The tokenizer (the public Mamba2Tokenizer): per-id tables plus the data of one back end. */
struct Mamba2Tokenizer {
    char source[4096];   /**< the file loaded */
    int32_t n_vocab;     /**< number of ids */
    ByteBuf pieces;      /**< arena of the vocabulary strings */
    uint32_t *piece_off; /**< [n_vocab] offset in pieces, TOK_NO_PIECE for a gap */
    uint32_t *piece_len; /**< [n_vocab] length of the piece */
    ByteBuf surfaces;    /**< arena of the surfaces */
    uint32_t *surf_off;  /**< [n_vocab] offset in surfaces */
    uint32_t *surf_len;  /**< [n_vocab] length of the surface */
    unsigned char *type; /**< [n_vocab] Mamba2TokenType */
    unsigned char *skip; /**< [n_vocab] 1: decode drops the id without a trace (HF special tokens) */
    unsigned char *lead_ws; /**< [n_vocab] SentencePiece: the surface starts with the space of a "▁" */
    size_t max_surface;  /**< longest surface */
    StrMap piece_ids;    /**< piece → id */
    int32_t bos;         /**< BOS id or −1 */
    int32_t eos;         /**< EOS id or −1 */

    /* Rules of the streaming decoder. */
    int spm_rules;          /**< 1: SentencePiece's rules for the leading space */
    int spm_strip_ws;       /**< SentencePiece: remove the "▁" of the first piece (add_dummy_prefix) */
    int spm_remove_extra;   /**< SentencePiece: remove_extra_whitespaces */
    char strip_char[4];     /**< tokenizer.json: Strip decoder after Fuse: the character removed at the start */
    int strip_char_len;     /**< its length in bytes */
    int strip_count;        /**< how many times at most */
    int skip_unknown_ids;   /**< 1: ids out of range are ignored (tokenizers), 0: they are an error */

    HfModel *hf;   /**< set for tokenizer.json */
    SpmModel *spm; /**< set for a SentencePiece model */
};

/** @brief Allocate the per-id tables for @p n ids (every id a gap, type TOK_TYPE_INVALID). */
int tok_alloc(struct Mamba2Tokenizer *t, int32_t n, Mamba2Error *err);

/** @brief Set the vocabulary string of @p id. @return 0, or −1 out of memory. */
int tok_set_piece(struct Mamba2Tokenizer *t, int32_t id, const char *s, size_t len);

/** @brief Set the surface of @p id. @return 0, or −1 out of memory. */
int tok_set_surface(struct Mamba2Tokenizer *t, int32_t id, const char *s, size_t len);

/** @brief After all pieces are set: build piece → id and the longest surface. */
int tok_finish(struct Mamba2Tokenizer *t, Mamba2Error *err);

/** @brief Pointer to the piece of @p id (which must have one). */
const char *tok_piece(const struct Mamba2Tokenizer *t, int32_t id);

/* The back ends, called by tokenizer.c only. */

/** @brief Load `tokenizer.json` text into @p t (fills tables and t->hf). */
int hf_load(struct Mamba2Tokenizer *t, const char *json, size_t len, Mamba2Error *err);
/** @brief Encode valid UTF-8 @p text with the tokenizer.json pipeline, appending to @p out. */
int hf_encode(const struct Mamba2Tokenizer *t, const char *text, size_t len, int add_special, IdVec *out, Mamba2Error *err);
/** @brief The exact decode of `tokenizers` (decoder chain on the token strings). */
int hf_decode(const struct Mamba2Tokenizer *t, const int32_t *ids, size_t n, ByteBuf *out, Mamba2Error *err);
/** @brief Release t->hf. */
void hf_free(HfModel *m);

/** @brief Load a SentencePiece model protobuf into @p t (fills tables and t->spm). */
int spm_load(struct Mamba2Tokenizer *t, const unsigned char *data, size_t len, Mamba2Error *err);
/** @brief Encode valid UTF-8 @p text as sentencepiece does, appending to @p out. */
int spm_encode(const struct Mamba2Tokenizer *t, const char *text, size_t len, int add_bos, IdVec *out, Mamba2Error *err);
/** @brief Release t->spm. */
void spm_free(SpmModel *m);

#endif
