/**
 * @file main.c
 * @brief Entry point of `mamba2`: dispatches to the sub-commands listed in commands.h.
 */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "cli.h"
#include "commands.h"
#include "output_file.h"

/** The program's version, printed by `mamba2 --version`. */
#define MAMBA2_PROGRAM_VERSION "0.3.0"

static const Mamba2Command commands[] = {
    {"info", "print a checkpoint's config, parameter count, weight bytes and state size", cmd_info},
    {"logits", "write the logits of every position of a token sequence (float32 T x V)", cmd_logits},
    {"generate", "generate text (or token ids) from a prompt, greedy or sampled", cmd_generate},
    {"chat", "an interactive conversation carried in the constant-size state (/save, /load, /stats)", cmd_chat},
    {"tokenize", "print the token ids of a text (tokenizer.json or SentencePiece model)", cmd_tokenize},
    {"detokenize", "print the text of token ids", cmd_detokenize},
    {"bench", "prefill and decode speed of a backend, beside the measured roofline", cmd_bench},
    {"perplexity", "mean negative log-likelihood and perplexity of a text's tokens (quality of a precision)",
     cmd_perplexity},
    {"check", "run the same tokens through every backend; per-layer and logits error vs ref", cmd_check},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static void usage(FILE *f) {
    fprintf(f,
            "mamba2: Mamba-2 (SSD) language models in C (reference, CPU and GPU paths)\n\n"
            "usage: mamba2 COMMAND [ARGS]   (mamba2 COMMAND --help for its options)\n"
            "       mamba2 --version\n\n"
            "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nDIR is a Hugging Face checkpoint directory (config.json + model.safetensors\n"
               "or model.safetensors.index.json + shards) or Mistral's native layout\n"
               "(params.json + consolidated.safetensors).\n");
}

int main(int argc, char **argv) {
    mamba2_backends_start_program(argv); /* the CPU path may restart it once, with OPENBLAS_CORETYPE set */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("mamba2 %s (backends built in: %s)\n", MAMBA2_PROGRAM_VERSION, mamba2_backend_names());
        return cli_close_stdout("--version");
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            cli_command = commands[i].name;
            int status = commands[i].run(argc - 1, argv + 1);
            /* what went to stdout counts: a full disk or a closed terminal is a failure (exit 1) */
            if (status == 0) status = cli_close_stdout(commands[i].name);
            return status;
        }
    fprintf(stderr, "mamba2: unknown command '%s'\nsee 'mamba2 --help'\n", argv[1]);
    return 2;
}
