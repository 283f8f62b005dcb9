/**
 * @file cmd_info.c
 * @brief `mamba2 info DIR`: what a checkpoint is, how big, and how much state a sequence needs.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static void help(FILE *f) {
    fprintf(f, "usage: mamba2 info DIR [--json]\n\n"
               "Print the config of the checkpoint in DIR, its parameter count, the bytes of\n"
               "weights by stored dtype, and the fp32 state (conv + SSM) one sequence needs.\n"
               "  --json      the same as one JSON object (an infinite dt limit is null)\n");
}

/* A finite number, or JSON's null for an infinite or NaN one (JSON has no Infinity). */
static json_object *number(double v) { return isfinite(v) ? json_object_new_double(v) : NULL; }

/* `info --json`: the fields of the text form, one object on one line. */
static void print_json(const Mamba2Model *m) {
    const Mamba2Config *c = &m->cfg;
    json_object *o = json_object_new_object(), *w = json_object_new_object();
    json_object_object_add(o, "dir", json_object_new_string(m->dir));
    json_object_object_add(o, "n_files", json_object_new_int(m->n_files));
    static const char *names[] = {"d_model", "n_layer", "n_heads", "head_dim", "d_state", "n_groups", "d_conv",
                                  "expand", "d_inner", "conv_dim", "d_in_proj", "vocab_size", "chunk_size",
                                  "bos_token_id", "eos_token_id"};
    const int values[] = {c->d_model, c->n_layer, c->n_heads, c->head_dim, c->d_state, c->n_groups, c->d_conv,
                          c->expand, c->d_inner, c->conv_dim, c->d_in_proj, c->vocab_size, c->chunk_size,
                          c->bos_token_id, c->eos_token_id};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++)
        json_object_object_add(o, names[i], json_object_new_int(values[i]));
    json_object_object_add(o, "eps", number(c->eps));
    json_object_object_add(o, "dt_min", number(c->dt_min));
    json_object_object_add(o, "dt_max", number(c->dt_max));
    json_object_object_add(o, "tie_embeddings", json_object_new_boolean(c->tie_embeddings));
    json_object_object_add(o, "conv_bias", json_object_new_boolean(c->use_conv_bias));
    json_object_object_add(o, "parameters", json_object_new_int64(mamba2_config_param_count(c)));
    for (int t = 0; t < 3; t++) {
        long long b = mamba2_model_weight_bytes(m, (Mamba2DType)t);
        if (b) json_object_object_add(w, mamba2_dtype_name((Mamba2DType)t), json_object_new_int64(b));
    }
    json_object_object_add(o, "weight_bytes", w);
    json_object_object_add(o, "state_bytes", json_object_new_int64(mamba2_config_state_bytes(c)));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_error("info", 2, "unknown option '%s'", argv[i]);
        else if (dir) return cli_error("info", 2, "one DIR expected; extra argument '%s'", argv[i]);
        else dir = argv[i];
    }
    if (!dir) return cli_error("info", 2, "DIR is missing");
    Mamba2Model m;
    if (cli_load_model(dir, &m)) return 1;
    const Mamba2Config *c = &m.cfg;
    if (json) {
        print_json(&m);
        mamba2_model_free(&m);
        return 0;
    }
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
