/**
 * @file utf8.c
 * @brief Strict UTF-8 decoding, encoding and byte-by-byte repair (see utf8.h).
 */
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

/* A continuation byte is 10xxxxxx. */
static int is_trail(unsigned char b) { return (b & 0xC0) == 0x80; }

/* Scalar values: everything up to U+10FFFF except the surrogates. */
static int is_scalar(uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }

int utf8_lead_length(unsigned char b) {
    if (b < 0x80) return 1;
    if ((b & 0xE0) == 0xC0) return 2;
    if ((b & 0xF0) == 0xE0) return 3;
    if ((b & 0xF8) == 0xF0) return 4;
    return 1;
}

/*
 * 110xxxxx 10yyyyyy                   -> xxxxxyyyyyy                 (≥ 0x80)
 * 1110xxxx 10yyyyyy 10zzzzzz          -> xxxxyyyyyyzzzzzz            (≥ 0x800)
 * 11110xxx 10yyyyyy 10zzzzzz 10wwwwww -> xxxyyyyyyzzzzzzwwwwww       (≥ 0x10000)
 * The lower bounds reject over-long forms; is_scalar() rejects surrogates and > U+10FFFF.
 */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    uint32_t c;
    int len;
    if (n == 0) return 0;
    if (s[0] < 0x80) {
        if (cp) *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0 && n >= 2 && is_trail(s[1])) {
        c = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        len = c >= 0x80 ? 2 : 0;
    } else if ((s[0] & 0xF0) == 0xE0 && n >= 3 && is_trail(s[1]) && is_trail(s[2])) {
        c = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        len = c >= 0x800 ? 3 : 0;
    } else if ((s[0] & 0xF8) == 0xF0 && n >= 4 && is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3])) {
        c = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
            (s[3] & 0x3F);
        len = c >= 0x10000 ? 4 : 0;
    } else {
        return 0;
    }
    if (len == 0 || !is_scalar(c)) return 0;
    if (cp) *cp = c;
    return len;
}

int utf8_is_incomplete_prefix(const unsigned char *s, size_t n) {
    if (n == 0) return 1;
    size_t need = (size_t)utf8_lead_length(s[0]);
    if (s[0] < 0xC0 || n >= need) return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_trail(s[i])) return 0;
    return 1;
}

int utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_is_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int len = utf8_decode(u + i, n - i, NULL);
        if (!len) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* Each byte that does not start a valid character becomes EF BF BD (at most 3x longer). */
char *utf8_repair(const char *s, size_t n, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    char *out = malloc(3 * n + 1);
    size_t o = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        int len = utf8_decode(u + i, n - i, NULL);
        if (len) {
            memcpy(out + o, s + i, (size_t)len);
            o += (size_t)len;
            i += (size_t)len;
        } else {
            memcpy(out + o, MAMBA2_UTF8_REPLACEMENT, 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

int utf8_is_whitespace(uint32_t c) {
    /* The White_Space property of Unicode (PropList.txt), 25 code points. */
    if (c >= 0x09 && c <= 0x0D) return 1;
    if (c >= 0x2000 && c <= 0x200A) return 1;
    switch (c) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return 0;
    }
}
