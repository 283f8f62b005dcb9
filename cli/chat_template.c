/**
 * @file chat_template.c
 * @brief ChatML or the plain form around a chat turn, with the markers as special tokens.
 */
#include "chat_template.h"

#include <stdlib.h>
#include <string.h>

#define IM_START "<|im_start|>"
#define IM_END "<|im_end|>"

/* The id of special token @p s in @p tok, or -1 when it is absent or only text. */
static int32_t special_id(const Mamba2Tokenizer *tok, const char *s) {
    int32_t id = mamba2_tokenizer_piece_id(tok, s, strlen(s));
    return id >= 0 && mamba2_tokenizer_token_type(tok, id) == MAMBA2_TOKEN_CONTROL ? id : -1;
}

void cli_chat_template_init(CliChatTemplate *t, const Mamba2Tokenizer *tok) {
    t->im_start = special_id(tok, IM_START);
    t->im_end = special_id(tok, IM_END);
    t->chatml = t->im_start >= 0 && t->im_end >= 0;
    if (!t->chatml) t->im_start = t->im_end = -1;
}

const char *cli_chat_template_name(const CliChatTemplate *t) {
    return t->chatml ? "ChatML" : "plain (User: / Assistant:)";
}

/** One part of a turn: a special token (id >= 0) or text. */
typedef struct {
    int32_t id;
    const char *s;
    size_t len;
} Part;

/* Append src[n] to the growing ids. */
static int append(int32_t **ids, size_t *n, size_t *cap, const int32_t *src, size_t k) {
    if (*n + k > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *n + k) c *= 2;
        int32_t *p = realloc(*ids, c * sizeof *p);
        if (!p) return -1;
        *ids = p, *cap = c;
    }
    if (k) memcpy(*ids + *n, src, k * sizeof *src);
    *n += k;
    return 0;
}

/* Encode @p parts, then drop the first @p drop ids (a marker given only as context for the text after it). */
static int encode_parts(const Mamba2Tokenizer *tok, const Part *parts, int np, int add_bos, size_t drop,
                        int32_t **ids, size_t *n, Mamba2Error *err) {
    int32_t *out = NULL, *piece = NULL;
    size_t n_out = 0, cap = 0, n_piece = 0;
    char *text = NULL;
    size_t total = 1;
    for (int i = 0; i < np; i++) total += parts[i].id >= 0 ? strlen(IM_START) + strlen(IM_END) : parts[i].len;
    if (!(text = malloc(total))) goto oom;
    if (mamba2_tokenizer_is_hf(tok)) {
        /* one string: the tokenizer matches its special tokens in it, as the reference does */
        size_t k = 0;
        for (int i = 0; i < np; i++) {
            size_t len = parts[i].len;
            const char *s = parts[i].id >= 0 ? mamba2_tokenizer_piece(tok, parts[i].id, &len) : parts[i].s;
            memcpy(text + k, s, len);
            k += len;
        }
        if (mamba2_tokenizer_encode(tok, text, k, add_bos, &out, &n_out, err)) goto fail;
    } else {
        /* SentencePiece never makes a control token from text: the ids go in between the pieces */
        int32_t bos = mamba2_tokenizer_bos(tok);
        if (add_bos && bos >= 0 && append(&out, &n_out, &cap, &bos, 1)) goto oom;
        for (int i = 0; i < np;) {
            if (parts[i].id >= 0) {
                if (append(&out, &n_out, &cap, &parts[i].id, 1)) goto oom;
                i++;
                continue;
            }
            size_t k = 0; /* a run of text parts, encoded together */
            for (; i < np && parts[i].id < 0; i++) memcpy(text + k, parts[i].s, parts[i].len), k += parts[i].len;
            if (mamba2_tokenizer_encode(tok, text, k, 0, &piece, &n_piece, err)) goto fail;
            if (append(&out, &n_out, &cap, piece, n_piece)) goto oom;
            free(piece);
            piece = NULL;
        }
    }
    if (drop > n_out) drop = n_out;
    if (drop) memmove(out, out + drop, (n_out - drop) * sizeof *out);
    free(text);
    *ids = out;
    *n = n_out - drop;
    return 0;
oom:
    mamba2_fail(err, "out of memory");
fail:
    free(text);
    free(piece);
    free(out);
    return -1;
}

#define TEXT(s) {-1, s, sizeof s - 1}

int cli_chat_turn_ids(const CliChatTemplate *t, const Mamba2Tokenizer *tok, const char *text, size_t len, int add_bos,
                      int32_t **ids, size_t *n, Mamba2Error *err) {
    if (t->chatml) {
        Part p[] = {{t->im_start, NULL, 0}, TEXT("user\n"), {-1, text, len}, {t->im_end, NULL, 0}, TEXT("\n"),
                    {t->im_start, NULL, 0}, TEXT("assistant\n")};
        return encode_parts(tok, p, (int)(sizeof p / sizeof *p), add_bos, 0, ids, n, err);
    }
    Part p[] = {TEXT("User: "), {-1, text, len}, TEXT("\nAssistant: ")};
    return encode_parts(tok, p, (int)(sizeof p / sizeof *p), add_bos, 0, ids, n, err);
}

int cli_chat_close_ids(const CliChatTemplate *t, const Mamba2Tokenizer *tok, int ended, int32_t **ids, size_t *n,
                       Mamba2Error *err) {
    Part p[] = {{t->im_end, NULL, 0}, TEXT("\n")};
    if (!t->chatml) return encode_parts(tok, p + 1, 1, 0, 0, ids, n, err);
    /* after <|im_end|>: the "\n" as it is encoded after that marker (the marker itself dropped) */
    if (ended && mamba2_tokenizer_is_hf(tok)) return encode_parts(tok, p, 2, 0, 1, ids, n, err);
    return encode_parts(tok, ended ? p + 1 : p, ended ? 1 : 2, 0, 0, ids, n, err);
}
