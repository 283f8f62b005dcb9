/**
 * @file cmd_tokenize.c
 * @brief `mamba2 tokenize` (text → ids) and `mamba2 detokenize` (ids → text).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "tokenizer.h"

static void tokenize_help(FILE *f) {
    fprintf(f,
            "usage: mamba2 tokenize PATH (-p TEXT | --prompt-file FILE) [--no-bos]\n\n"
            "Print the token ids of a text, separated by spaces, on one line.\n\n"
            "PATH is a model directory (tokenizer.json is used when present, else\n"
            "tokenizer.model.v3, else tokenizer.model) or a tokenizer file.\n\n"
            "options:\n"
            "  -p, --prompt TEXT     the text to encode (also --text TEXT)\n"
            "  --prompt-file FILE    encode the bytes of FILE (\"-\": standard input; also --file FILE)\n"
            "  --no-bos              do not add the beginning-of-sequence token\n"
            "  -h, --help            this text\n");
}

static void detokenize_help(FILE *f) {
    fprintf(f,
            "usage: mamba2 detokenize PATH --ids \"ID ID ...\"\n\n"
            "Print the text of token ids (separated by spaces or commas), exactly as the\n"
            "reference library decodes them (special tokens are not printed), with no\n"
            "newline added.\n\n"
            "PATH is a model directory or a tokenizer file, as for `mamba2 tokenize`.\n\n"
            "options:\n"
            "  --ids IDS     the token ids\n"
            "  -h, --help    this text\n");
}

int cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"text", 1, 0, 't'}, {"prompt", 1, 0, 't'}, {"file", 1, 0, 'f'}, {"prompt-file", 1, 0, 'f'},
        {"no-bos", 0, 0, 'n'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *text = NULL, *file = NULL;
    int add_bos = 1, c;
    optind = 1;
    opterr = 0; /* unknown options are reported by cli_option_error(), in this program's voice */
    while ((c = getopt_long(argc, argv, ":p:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
        case 't': text = optarg; break;
        case 'f': file = optarg; break;
        case 'n': add_bos = 0; break;
        case 'h': tokenize_help(stdout); return 0;
        default: return cli_option_error("tokenize", c, argv);
        }
    }
    if (cli_one_positional("tokenize", argc, argv, "PATH")) return 2;
    if ((text == NULL) == (file == NULL))
        return cli_error("tokenize", 2, "give exactly one of -p/--text and --prompt-file/--file (%s)",
                         text ? "both given" : "neither given");
    Mamba2Error err = {{0}};
    char *data = NULL;
    long len = 0;
    if (file) {
        data = strcmp(file, "-") ? mamba2_read_file(file, &len, &err) : cli_read_stdin(&len);
        if (!data) return cli_error("tokenize", 1, "%s", err.msg[0] ? err.msg : "cannot read standard input");
        text = data;
    } else {
        len = (long)strlen(text);
    }
    Mamba2Tokenizer *tok = mamba2_tokenizer_load(argv[optind], &err);
    if (!tok) {
        free(data);
        return cli_error("tokenize", 1, "%s", err.msg);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int status = 0;
    if (mamba2_tokenizer_encode(tok, text, (size_t)len, add_bos, &ids, &n, &err)) {
        status = cli_error("tokenize", 1, "%s", err.msg);
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
        printf("\n");
        if (fflush(stdout) != 0) status = cli_error("tokenize", 1, "cannot write standard output: %s", strerror(errno));
    }
    free(ids);
    free(data);
    mamba2_tokenizer_free(tok);
    return status;
}

int cmd_detokenize(int argc, char **argv) {
    static const struct option opts[] = {{"ids", 1, 0, 'i'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *ids_text = NULL;
    int c;
    optind = 1;
    opterr = 0; /* unknown options are reported by cli_option_error(), in this program's voice */
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': ids_text = optarg; break;
        case 'h': detokenize_help(stdout); return 0;
        default: return cli_option_error("detokenize", c, argv);
        }
    }
    if (cli_one_positional("detokenize", argc, argv, "PATH")) return 2;
    if (!ids_text) return cli_error("detokenize", 2, "--ids is required");
    Mamba2Error err = {{0}};
    int32_t *ids = NULL;
    int n = 0;
    if (cli_parse_ids(ids_text, &ids, &n, &err)) return cli_error("detokenize", 2, "--ids: %s", err.msg);
    Mamba2Tokenizer *tok = mamba2_tokenizer_load(argv[optind], &err);
    if (!tok) {
        free(ids);
        return cli_error("detokenize", 1, "%s", err.msg);
    }
    int status = 0;
    char *text = NULL;
    size_t len = 0;
    for (int i = 0; i < n && status == 0; i++)
        if (mamba2_tokenizer_token_type(tok, ids[i]) == MAMBA2_TOKEN_INVALID)
            status = cli_error("detokenize", 1, "id %d is not in the vocabulary of %s (size %d)", (int)ids[i],
                               mamba2_tokenizer_source(tok), (int)mamba2_tokenizer_vocab_size(tok));
    if (status == 0 && mamba2_tokenizer_decode(tok, ids, (size_t)n, &text, &len, &err))
        status = cli_error("detokenize", 1, "%s", err.msg);
    if (status == 0 && (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0))
        status = cli_error("detokenize", 1, "cannot write standard output: %s", strerror(errno));
    free(text);
    free(ids);
    mamba2_tokenizer_free(tok);
    return status;
}
