/**
 * @file bpe.h
 * @brief The byte-pair merge loop shared by both tokenizers, driven by a priority queue.
 *
 * A word starts as a list of symbols (characters, bytes, or pieces that must
 * stay whole). Repeatedly, the adjacent pair with the best priority is merged
 * into one symbol, until no adjacent pair can merge. "Best" is the smallest
 * priority value, ties going to the leftmost pair; this is the order of both
 * references:
 *
 * - Hugging Face BPE: priority = rank of the merge in `merges` (earlier first);
 * - sentencepiece BPE: priority = the score of the merged piece mapped to an
 *   integer that decreases as the score grows (higher score first), see
 *   bpe_score_priority().
 *
 * Queue entries are (key, size, merged id) with key = priority << 32 | position
 * of the left symbol, so that comparing two entries is one integer comparison;
 * the queue is a 4-ary heap (a node's children share a cache line). As in both
 * references, entries are never removed from the middle: after a merge the new
 * pairs on either side are pushed, and a popped entry whose pair has changed
 * since (left symbol merged away, or the summed length of the pair differs:
 * sentencepiece's test) is skipped. A word of n symbols costs O(n log n),
 * never a rescan per merge.
 */
#ifndef MAMBA2_BPE_H
#define MAMBA2_BPE_H

#include <stddef.h>
#include <stdint.h>

/** One symbol of a word being merged (a node of a doubly linked list). */
typedef struct {
    int32_t id;    /**< token id, or −1 when the symbol is not in the vocabulary */
    int32_t start; /**< byte offset of the symbol in the word's text */
    int32_t len;   /**< length in bytes; 0 once merged into its left neighbour */
    int32_t prev;  /**< index of the previous live symbol, −1 at the start */
    int32_t next;  /**< index of the next live symbol, −1 at the end */
    int32_t flags; /**< free for the caller (e.g. "never merge this symbol") */
} BpeSymbol;

/**
 * @brief Tells whether two adjacent symbols merge.
 * @param ctx      the caller's context
 * @param left     the left symbol
 * @param right    the right symbol (left->next)
 * @param priority out: smaller merges first
 * @param merged   out: id of the merged symbol
 * @return 1 when they merge, 0 when they do not.
 */
typedef int (*BpePairFn)(const void *ctx, const BpeSymbol *left, const BpeSymbol *right, uint32_t *priority,
                         int32_t *merged);

/** One queued pair. */
typedef struct {
    uint64_t key;   /**< priority << 32 | position of the left symbol */
    int32_t size;   /**< summed length of the two symbols when queued */
    int32_t merged; /**< id of the merged symbol */
} BpeEntry;

/** Scratch memory of bpe_merge(), reusable across calls (zero-initialise it first). */
typedef struct {
    BpeEntry *heap; /**< 4-ary min-heap by key */
    size_t size;    /**< entries in the heap */
    size_t cap;     /**< entries allocated */
} BpeWork;

/**
 * @brief Priority of a sentencepiece score: smaller for a higher score, equal
 *        for equal scores (−0 counts as +0), so that integer order is score order.
 */
uint32_t bpe_score_priority(float score);

/**
 * @brief Merge the symbols @p sym[0..n) in place.
 *
 * On entry sym[i].prev = i−1 and sym[i].next = i+1 (−1 past the ends), n < 2^31. On return
 * the live symbols are those reached from index 0 through `next`; merged symbols
 * carry the id of the pair and the summed length.
 * @return 0, or −1 when memory runs out.
 */
int bpe_merge(BpeSymbol *sym, int32_t n, BpePairFn pair, const void *ctx, BpeWork *work);

/** @brief Release the scratch memory. */
void bpe_work_free(BpeWork *work);

/**
 * @brief Whether @p s[0..len) has a "▁" (U+2581) right after another character.
 *
 * Cutting words: if no token of a vocabulary has such a "c▁" inside, no merged
 * symbol can ever span a point of the text where a "▁" follows another
 * character, and the pair across it never merges. The two sides then merge
 * independently, so a word can be cut there and each piece merged alone with
 * the same result, in smaller heaps (the Mistral vocabularies qualify; without
 * Metaspace splitting a whole text is one word). The tokenizers check every
 * token at load time.
 */
int bpe_has_inner_ws(const char *s, size_t len);

/**
 * @brief The end of the piece of @p s[start..end) that starts at @p start: the
 *        next "▁" after @p start that follows another character, or @p end.
 */
size_t bpe_next_cut(const char *s, size_t start, size_t end);

#endif
