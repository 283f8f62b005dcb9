/**
 * @file chat_template.h
 * @brief The template of a chat turn, chosen from the tokenizer's special tokens (`mamba2 chat`).
 *
 * - ChatML, when the tokenizer has `<|im_start|>` and `<|im_end|>` as special (control) tokens, as
 *   PromptCoT-Mamba-7B's has: a turn is `<|im_start|>user\nTEXT<|im_end|>\n<|im_start|>assistant\n`
 *   and a reply ends with `<|im_end|>`, then `\n`.
 * - Otherwise the plain form `User: TEXT\nAssistant: ` (a reply ends with `\n`): the markers are
 *   never encoded as text; the caller warns that this model has no chat template.
 *
 * The markers are special tokens, never text: a tokenizer.json is given the whole turn as one string
 * (it matches its added tokens in the text, as Hugging Face `tokenizers` does, so the ids are those
 * of the reference library); a SentencePiece model, which never makes a control token from text,
 * gets the marker ids put in between the encoded pieces.
 */
#ifndef MAMBA2_CHAT_TEMPLATE_H
#define MAMBA2_CHAT_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tokenizer.h"

/** The template of a tokenizer. */
typedef struct {
    int chatml;       /**< 1: ChatML; 0: the plain form */
    int32_t im_start; /**< the id of `<|im_start|>` (ChatML), else -1 */
    int32_t im_end;   /**< the id of `<|im_end|>` (ChatML), else -1 */
} CliChatTemplate;

/** Choose the template of @p tok: ChatML when both markers are special tokens of it, else the plain form. */
void cli_chat_template_init(CliChatTemplate *t, const Mamba2Tokenizer *tok);

/** "ChatML" or "plain (User: / Assistant:)", for messages. */
const char *cli_chat_template_name(const CliChatTemplate *t);

/**
 * @brief The ids of one user turn, up to where the reply starts.
 * @param t       the template
 * @param tok     its tokenizer
 * @param text    the user's text (bytes)
 * @param len     its length
 * @param add_bos 1 at the start of a conversation: the tokenizer's BOS first
 * @param ids     out: malloc'd ids (the caller frees)
 * @param n       out: how many
 * @param err     the reason on failure
 * @return 0, or -1 (out of memory, or text the tokenizer cannot encode).
 */
int cli_chat_turn_ids(const CliChatTemplate *t, const Mamba2Tokenizer *tok, const char *text, size_t len, int add_bos,
                      int32_t **ids, size_t *n, Mamba2Error *err);

/**
 * @brief The ids that close a reply, after its last sampled token was fed: ChatML `<|im_end|>\n`, or
 *        only `\n` when the reply ended with `<|im_end|>` itself; plain `\n`.
 * @param t     the template
 * @param tok   its tokenizer
 * @param ended 1 when the reply's last token was `<|im_end|>`
 * @param ids   out: malloc'd ids (the caller frees; none is possible: *n 0)
 * @param n     out: how many
 * @param err   the reason on failure
 * @return 0, or -1.
 */
int cli_chat_close_ids(const CliChatTemplate *t, const Mamba2Tokenizer *tok, int ended, int32_t **ids, size_t *n,
                       Mamba2Error *err);

#endif
