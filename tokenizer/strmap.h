/**
 * @file strmap.h
 * @brief The lookup tables the tokenizers are built on: string → id, (id, id) → merge, and a byte trie.
 *
 * - StrMap: open-addressing hash table from byte strings to non-negative ints.
 *   It does not copy the keys: they must outlive the map (the tokenizers keep
 *   every piece in one arena).
 * - PairMap: hash table from a pair of ids to a (rank, id) pair: the BPE merges.
 * - Trie: longest-prefix matching of a set of byte strings (added tokens,
 *   user-defined pieces), one node per byte, children in a linked list.
 */
#ifndef MAMBA2_STRMAP_H
#define MAMBA2_STRMAP_H

#include <stddef.h>
#include <stdint.h>

/** One slot of a StrMap (key == NULL: empty). */
typedef struct {
    const char *key; /**< not owned */
    uint32_t len;    /**< key length in bytes */
    uint32_t hash;   /**< hash of the key */
    int32_t value;   /**< the stored value (≥ 0) */
} StrMapSlot;

/** Hash map from byte strings to ints. */
typedef struct {
    StrMapSlot *slots; /**< cap slots */
    size_t cap;        /**< a power of two */
    size_t count;      /**< occupied slots */
} StrMap;

/** @brief Hash of @p len bytes at @p s (the one StrMap uses). */
uint32_t strmap_hash(const char *s, size_t len);

/**
 * @brief Make an empty map sized for about @p expected keys.
 * @return 0, or -1 when memory runs out.
 */
int strmap_init(StrMap *m, size_t expected);

/**
 * @brief Insert @p key → @p value unless the key is present.
 * @return 0 inserted, 1 already present (value left as it was), -1 out of memory.
 */
int strmap_put(StrMap *m, const char *key, size_t len, int32_t value);

/** @brief The value stored for @p key, or -1 when absent. */
int32_t strmap_get(const StrMap *m, const char *key, size_t len);

/** @brief Release the table (not the keys). */
void strmap_free(StrMap *m);

/** One slot of a PairMap (rank < 0: empty). */
typedef struct {
    uint64_t key; /**< (left id << 32) | right id */
    int32_t rank; /**< merge priority (smaller first) */
    int32_t id;   /**< id of the merged token */
} PairMapSlot;

/** Hash map from (left id, right id) to (rank, merged id). */
typedef struct {
    PairMapSlot *slots; /**< cap slots */
    size_t cap;         /**< a power of two */
    size_t count;       /**< occupied slots */
} PairMap;

/** @brief Make an empty pair map sized for @p expected pairs. @return 0, or -1 out of memory. */
int pairmap_init(PairMap *m, size_t expected);

/**
 * @brief Insert (@p a, @p b) → (@p rank, @p id) unless the pair is present.
 * @return 0 inserted, 1 already present (first one kept), -1 out of memory.
 */
int pairmap_put(PairMap *m, int32_t a, int32_t b, int32_t rank, int32_t id);

/** @brief Find (@p a, @p b); fill @p rank and @p id and return 1, or return 0. */
int pairmap_get(const PairMap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id);

/** @brief Release the table. */
void pairmap_free(PairMap *m);

/** One trie node: the byte that leads to it, its first child and next sibling. */
typedef struct {
    int32_t first_child;  /**< index of the first child, -1 if none */
    int32_t next_sibling; /**< index of the next child of the same parent, -1 if none */
    int32_t value;        /**< value of the string ending here, -1 if none */
    unsigned char byte;   /**< the byte on the edge into this node */
} TrieNode;

/** A byte trie for longest-prefix matching. */
typedef struct {
    TrieNode *nodes;          /**< node 0 is the root */
    size_t n;                 /**< nodes in use */
    size_t cap;               /**< nodes allocated */
    unsigned char first[256]; /**< first[b] != 0 when some string starts with byte b */
} Trie;

/**
 * @brief Every prefix of @p s[0..n) that the trie holds, in one walk (O(n)): values[k-1] is the value
 *        of s[0..k), or -1, for k = 1..n.
 */
void trie_prefixes(const Trie *t, const char *s, size_t n, int32_t *values);

/** @brief Make a trie holding the empty set. @return 0, or -1 out of memory. */
int trie_init(Trie *t);

/**
 * @brief Add @p s[0..len) (len ≥ 1) with @p value (≥ 0); an existing value is kept.
 * @return 0, or -1 out of memory.
 */
int trie_add(Trie *t, const char *s, size_t len, int32_t value);

/**
 * @brief Longest string of the set that is a prefix of @p s[0..n).
 * @param t     the trie
 * @param s     the bytes to match
 * @param n     how many bytes of @p s may be used
 * @param value out: its value
 * @return its length, or 0 when no string of the set starts @p s.
 */
size_t trie_longest(const Trie *t, const char *s, size_t n, int32_t *value);

/** @brief Release the trie. */
void trie_free(Trie *t);

/**
 * @brief For a set of strings, the longest one that starts at each position of a text, for all
 *        positions in one pass: Aho–Corasick over the reversed text with the reversed strings.
 *
 * Time O(text + strings) (times the alphabet's 256 for the child lists, a constant), where walking
 * a trie from every position was O(text × longest string): a 20 KB added token and 1 MB of text took
 * 40 s. Memory: about 28 bytes per byte of the strings.
 */
typedef struct {
    Trie rev;        /**< the strings, reversed */
    int32_t *fail;   /**< [rev.n]: the node of the longest proper suffix of this node's string that is in the trie */
    int32_t *best;   /**< [rev.n]: the node of the longest string of the set that is a suffix of this node's string, or -1 */
    uint32_t *depth; /**< [rev.n]: the length of this node's string */
} LongestMatcher;

/** @brief An empty set. @return 0, or -1 out of memory. */
int lm_init(LongestMatcher *lm);

/** @brief Add @p s[0..len) (len ≥ 1) with @p value (≥ 0); an existing value is kept. 0, or -1 out of memory. */
int lm_add(LongestMatcher *lm, const char *s, size_t len, int32_t value);

/** @brief Compute the links after the last lm_add(). @return 0, or -1 out of memory. */
int lm_build(LongestMatcher *lm);

/**
 * @brief For every i in [0, n): @p len_at[i] = the length of the longest string of the set that starts
 *        at @p s + i (0 when none) and @p val_at[i] its value. Needs lm_build().
 */
void lm_scan(const LongestMatcher *lm, const char *s, size_t n, uint32_t *len_at, int32_t *val_at);

/** @brief Release the matcher (safe on a zeroed one). */
void lm_free(LongestMatcher *lm);

#endif
