/**
 * @file commands.h
 * @brief The sub-commands of the `mamba2` program, one per cli/cmd_*.c file.
 *
 * Each command parses its own arguments, prints its own `--help`, and returns
 * the process exit status (0 success, 1 runtime failure, 2 usage error).
 */
#ifndef MAMBA2_COMMANDS_H
#define MAMBA2_COMMANDS_H

/** One sub-command: `mamba2 NAME ...`. */
typedef struct {
    const char *name;                 /**< word typed after `mamba2` */
    const char *summary;              /**< one line for `mamba2 --help` */
    int (*run)(int argc, char **argv); /**< argv[0] is the command name */
} Mamba2Command;

/** `mamba2 info DIR` (cmd_info.c). */
int cmd_info(int argc, char **argv);
/** `mamba2 logits DIR --ids ... -o FILE` (cmd_logits.c). */
int cmd_logits(int argc, char **argv);
/** `mamba2 generate DIR ...` (cmd_generate.c). */
int cmd_generate(int argc, char **argv);
/** `mamba2 chat DIR [-n N] [options]`: a multi-turn conversation in the model's state (cmd_chat.c). */
int cmd_chat(int argc, char **argv);
/** `mamba2 tokenize PATH (-p TEXT | --prompt-file FILE) [--no-bos]` (cmd_tokenize.c). */
int cmd_tokenize(int argc, char **argv);
/** `mamba2 detokenize PATH --ids ...` (cmd_tokenize.c). */
int cmd_detokenize(int argc, char **argv);
/** `mamba2 bench DIR [--backend NAME] [--prompt-len N] [--gen-len M] [--batch B] [--roofline] [--json]` (cmd_bench.c). */
int cmd_bench(int argc, char **argv);
/** `mamba2 check DIR [--backends ref,cpu,gpu] [--tokens N]`: every backend against the reference (cmd_check.c). */
int cmd_check(int argc, char **argv);

/** `mamba2 perplexity DIR --file TEXT [--ctx N] [--max-tokens N] [--backend NAME] [--weights F] [--json]`
 *  (cmd_perplexity.c). */
int cmd_perplexity(int argc, char **argv);

#endif
