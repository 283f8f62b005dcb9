/**
 * @file bench_tokenizer.c
 * @brief Encode speed of the tokenizers, one thread, in MB of text per second.
 *
 * Not part of `make test` (timings are not assertions). Build and run from the
 * repository root after `make`:
 *
 *     cc -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -Iref tests/bench/bench_tokenizer.c \
 *        build/libmamba2.a -ljson-c -lm -o build/bench_tokenizer
 *     build/bench_tokenizer [TOKENIZER ...] [--mb N] [--text FILE]
 *
 * The text is data/tokenizer/texts.txt (code, prose in many scripts, emoji,
 * control-token strings, invalid bytes; about 2 bytes per token, a hard case)
 * or FILE, repeated to N MB (default 4). It is
 * encoded three ways: line by line (short texts), in 64 KiB documents, and as
 * one single text. Each measurement is the best of three runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Encode text[0..len) in pieces: at each newline (piece = 0) or every `piece` bytes (cut at a newline). */
static double encode_all(const Mamba2Tokenizer *t, const char *text, size_t len, size_t piece, size_t *n_ids) {
    Mamba2Error err = {{0}};
    double t0 = now();
    *n_ids = 0;
    for (size_t i = 0; i < len;) {
        size_t end;
        if (piece == 0) {
            const char *nl = memchr(text + i, '\n', len - i);
            end = nl ? (size_t)(nl - text) + 1 : len;
        } else {
            end = i + piece < len ? i + piece : len;
            while (end < len && text[end - 1] != '\n') end++;
        }
        int32_t *ids;
        size_t n;
        if (mamba2_tokenizer_encode(t, text + i, end - i, 1, &ids, &n, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        *n_ids += n;
        free(ids);
        i = end;
    }
    return now() - t0;
}

/** @brief Time the encoding of the text with each tokenizer given (default: the three Mistral files). */
int main(int argc, char **argv) {
    const char *defaults[] = {"data/mistral-v3/tokenizer.json", "data/mistral-v3/tokenizer_legacy.json",
                              "data/mistral-v3/tokenizer.model.v3"};
    const char *paths[16];
    int n_paths = 0;
    double mb = 4.0;
    const char *corpus = "data/tokenizer/texts.txt";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) corpus = argv[++i];
        else if (n_paths < 16) paths[n_paths++] = argv[i];
    }
    if (n_paths == 0) {
        for (int i = 0; i < 3; i++) paths[i] = defaults[i];
        n_paths = 3;
    }
    Mamba2Error err = {{0}};
    long src_len;
    char *src = mamba2_read_file(corpus, &src_len, &err);
    if (!src || src_len == 0) {
        fprintf(stderr, "%s (run from the repository root)\n", err.msg);
        return 1;
    }
    size_t len = (size_t)(mb * 1e6), have = 0;
    char *text = malloc(len + (size_t)src_len);
    while (have < len) {
        memcpy(text + have, src, (size_t)src_len);
        have += (size_t)src_len;
    }
    len = have;
    printf("text: %.2f MB (%s repeated), one thread, best of 3\n\n", (double)len / 1e6, corpus);
    printf("%-40s %14s %14s %14s %10s\n", "tokenizer", "lines MB/s", "64KiB MB/s", "whole MB/s", "bytes/id");
    for (int p = 0; p < n_paths; p++) {
        double t0 = now();
        Mamba2Tokenizer *t = mamba2_tokenizer_load(paths[p], &err);
        if (!t) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double load = now() - t0;
        double best[3] = {1e30, 1e30, 1e30};
        size_t pieces[3] = {0, 65536, len}, n_ids = 0;
        for (int rep = 0; rep < 3; rep++)
            for (int k = 0; k < 3; k++) {
                double s = encode_all(t, text, len, pieces[k], &n_ids);
                if (s < best[k]) best[k] = s;
            }
        printf("%-40s %14.1f %14.1f %14.1f %10.2f   (load %.0f ms)\n", paths[p], (double)len / 1e6 / best[0],
               (double)len / 1e6 / best[1], (double)len / 1e6 / best[2], (double)len / (double)n_ids, 1e3 * load);
        mamba2_tokenizer_free(t);
    }
    free(text);
    free(src);
    return 0;
}
