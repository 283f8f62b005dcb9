/*
 * generate.c: the greedy continuation of a prompt, through libmamba2 (README: "Use it as a library — C").
 *
 *   cc generate.c $(pkg-config --cflags --libs mamba2) -o generate
 *   ./generate MODEL_DIR PROMPT [N [BACKEND]]     the N next ids on one line, then their text
 *
 * CI builds it against an installed copy, with libmamba2.a and with libmamba2.so, and compares the
 * ids with the demo model's greedy.json (tests/install/check.sh).
 */
#include <mamba2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const mamba2_error *err) {
    fprintf(stderr, "generate: %s (%s)\n", err->message, mamba2_status_string(err->code));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT [N [BACKEND]]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1], *prompt = argv[2], *backend = argc > 4 ? argv[4] : "auto";
    int n = argc > 3 ? atoi(argv[3]) : 32;
    mamba2_error err;
    mamba2_model *model = mamba2_model_open(dir, &err);
    mamba2_tokenizer *tok = model ? mamba2_tokenizer_open(dir, &err) : NULL;
    mamba2_backend *be = tok ? mamba2_backend_open(model, backend, NULL, &err) : NULL;
    mamba2_state *st = be ? mamba2_state_create(model, &err) : NULL;
    if (!st) return fail(&err);

    int V = mamba2_model_dim(model, MAMBA2_DIM_VOCAB_SIZE);
    float *logits = mamba2_logits_alloc(be, (size_t)V, &err); /* in the memory the backend writes fastest */
    if (!logits) return fail(&err);
    int32_t ids[4096], *out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    size_t T, len;
    if (mamba2_tokenize(tok, prompt, strlen(prompt), 1, ids, 4096, &T, &err) ||
        mamba2_prefill(be, st, ids, (int)T, logits, 0, &err))
        return fail(&err);
    for (int i = 0; i < n; i++) {
        out[i] = mamba2_sample_greedy(logits, V);
        if (mamba2_step(be, &st, &out[i], 1, logits, &err)) return fail(&err);
        printf("%d%s", (int)out[i], i + 1 < n ? " " : "\n");
    }
    char text[65536];
    if (mamba2_detokenize(tok, out, (size_t)n, text, sizeof text, &len, &err)) return fail(&err);
    printf("%s\n", text);
    fprintf(stderr, "generate: libmamba2 %s (%s), backend %s\n", mamba2_version(), mamba2_backend_list(),
            mamba2_backend_name(be));

    mamba2_logits_free(be, logits);
    free(out);
    mamba2_state_destroy(st);
    mamba2_backend_close(be);
    mamba2_tokenizer_close(tok);
    mamba2_model_close(model);
    return 0;
}
