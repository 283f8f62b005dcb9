/**
 * @file cmd_info.c
 * @brief `mamba2 info DIR`: what a checkpoint is, how big, and how much state a sequence needs.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static void help(FILE *f) {
    fprintf(f, "usage: mamba2 info DIR\n\n"
               "Print the config of the checkpoint in DIR, its parameter count, the bytes of\n"
               "weights by stored dtype, and the fp32 state (conv + SSM) one sequence needs.\n");
}

int cmd_info(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        help(stdout);
        return 0;
    }
    if (argc < 2) return cli_error("info", 2, "DIR is missing");
    if (argc > 2)
        return cli_error("info", 2, argv[1][0] == '-' ? "unknown option '%s'" : "one DIR expected; extra argument '%s'",
                         argv[1][0] == '-' ? argv[1] : argv[2]);
    Mamba2Model m;
    if (cli_load_model(argv[1], &m)) return 1;
    const Mamba2Config *c = &m.cfg;
    printf("checkpoint     %s (%d file%s)\n", m.dir, m.n_files, m.n_files == 1 ? "" : "s");
    printf("d_model        %d\n", c->d_model);
    printf("n_layer        %d\n", c->n_layer);
    printf("n_heads        %d\n", c->n_heads);
    printf("head_dim       %d\n", c->head_dim);
    printf("d_state        %d\n", c->d_state);
    printf("n_groups       %d\n", c->n_groups);
    printf("d_conv         %d\n", c->d_conv);
    printf("expand         %d (d_inner %d, conv_dim %d, in_proj rows %d)\n", c->expand, c->d_inner, c->conv_dim,
           c->d_in_proj);
    printf("vocab_size     %d\n", c->vocab_size);
    printf("chunk_size     %d\n", c->chunk_size);
    printf("eps            %g\n", c->eps);
    printf("dt limit       [%g, %g]\n", c->dt_min, c->dt_max);
    printf("tied lm_head   %s\n", c->tie_embeddings ? "yes" : "no");
    printf("conv bias      %s\n", c->use_conv_bias ? "yes" : "no");
    printf("bos / eos      %d / %d\n", c->bos_token_id, c->eos_token_id);
    printf("parameters     %lld\n", mamba2_config_param_count(c));
    for (int t = 0; t < 3; t++) {
        long long b = mamba2_model_weight_bytes(&m, (Mamba2DType)t);
        if (b) printf("weights %-6s %lld bytes (%.2f GiB)\n", mamba2_dtype_name((Mamba2DType)t), b, b / 1073741824.0);
    }
    long long sb = mamba2_config_state_bytes(c);
    printf("state/sequence %lld bytes (%.1f MiB fp32: conv %lld + ssm %lld)\n", sb, sb / 1048576.0,
           (long long)c->n_layer * c->conv_dim * (c->d_conv - 1) * 4,
           (long long)c->n_layer * c->n_heads * c->head_dim * c->d_state * 4);
    mamba2_model_free(&m);
    return 0;
}
