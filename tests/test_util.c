/**
 * @file test_util.c
 * @brief Helpers shared by the suites: a seeded random generator, error norms, temp dirs.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests.h"

static uint64_t rng_state;

uint64_t test_seed(void) {
    static uint64_t seed;
    if (!seed) {
        const char *env = getenv("MAMBA2_TEST_SEED");
        seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        if (!seed) seed = 1;
        printf("\n[tests] random seed %llu (set MAMBA2_TEST_SEED to repeat)\n", (unsigned long long)seed);
        rng_state = seed;
    }
    return seed;
}

/* xorshift64*: good enough for test inputs. */
double test_uniform(void) {
    test_seed();
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

double test_normal(void) {
    double u1 = test_uniform(), u2 = test_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

void test_fill_normal(float *a, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) a[i] = (float)(scale * test_normal());
}

double test_rel_l2(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - want[i];
        if (isnan(got[i]) || isnan(want[i])) return INFINITY;
        num += e * e;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

char *test_tmpdir(void) {
    char tmpl[] = "/tmp/mamba2-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

void test_rmtree(const char *dir) {
    char cmd[4200];
    if (!dir || strncmp(dir, "/tmp/mamba2-test-", 17)) return; /* never anything else */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

const char *test_program(void) {
    const char *p = getenv("MAMBA2_PROGRAM");
    return p && *p ? p : "./mamba2";
}

void test_slurp(const char *path, char *buf, size_t cap) {
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
}

int test_run_program(const char *env, const char *args, char *out, size_t out_cap, char *err, size_t err_cap) {
    char *dir = test_tmpdir(), out_path[4200], err_path[4200];
    if (!dir) return -1;
    snprintf(out_path, sizeof out_path, "%s/stdout.txt", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", dir);
    size_t need = strlen(args) + 2 * strlen(dir) + strlen(test_program()) + (env ? strlen(env) : 0) + 128;
    char *cmd = malloc(need);
    int status = -1;
    if (cmd) {
        snprintf(cmd, need, "%s %s %s >%s 2>%s", env ? env : "", test_program(), args, out ? out_path : "/dev/null",
                 err ? err_path : "/dev/null");
        status = system(cmd);
        free(cmd);
    }
    if (out) test_slurp(out_path, out, out_cap);
    if (err) test_slurp(err_path, err, err_cap);
    test_rmtree(dir);
    free(dir);
    return status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------ the demo model's greedy.json */

static int32_t *int_array(json_object *a, int *n) {
    *n = (int)json_object_array_length(a);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    for (int i = 0; v && i < *n; i++) v[i] = json_object_get_int(json_object_array_get_idx(a, i));
    return v;
}

static int read_case(json_object *o, TestDemoCase *c) {
    json_object *p, *ids, *g, *t;
    memset(c, 0, sizeof *c);
    if (!o || !json_object_object_get_ex(o, "prompt", &p) || !json_object_object_get_ex(o, "prompt_ids", &ids) ||
        !json_object_object_get_ex(o, "greedy_ids", &g) || !json_object_object_get_ex(o, "greedy_text", &t))
        return -1;
    c->prompt = strdup(json_object_get_string(p));
    c->text = strdup(json_object_get_string(t));
    c->ids = int_array(ids, &c->T);
    c->greedy = int_array(g, &c->n);
    return c->prompt && c->text && c->ids && c->greedy && c->T > 0 && c->n > 0 ? 0 : -1;
}

int test_read_demo_cases(TestDemoCase cases[2]) {
    json_object *root = json_object_from_file("data/stdlib-mamba2/greedy.json"), *conf = NULL;
    memset(cases, 0, 2 * sizeof *cases);
    int n = read_case(root, &cases[0]) ? -1 : 1;
    /* "confident" is absent when no candidate prompt of data/train_demo_model.py had clear margins */
    if (n == 1 && json_object_object_get_ex(root, "confident", &conf)) n = read_case(conf, &cases[1]) ? -1 : 2;
    json_object_put(root);
    if (n < 0) test_free_demo_cases(cases, 2);
    return n;
}

void test_free_demo_cases(TestDemoCase *cases, int n) {
    for (int i = 0; i < n; i++) {
        free(cases[i].prompt), free(cases[i].text), free(cases[i].ids), free(cases[i].greedy);
        memset(&cases[i], 0, sizeof cases[i]);
    }
}

/* ------------------------------------------------------------ tiny checkpoints */

#include "config.h"
#include "tensor.h"

void test_tiny_spec_default(TinyModelSpec *s) {
    memset(s, 0, sizeof *s);
    s->d_model = 16, s->n_layer = 2, s->n_heads = 4, s->head_dim = 8, s->d_state = 8, s->n_groups = 2;
    s->d_conv = 4, s->vocab_size = 50, s->chunk_size = 4, s->tie = 0, s->dtype = "F32";
}

/* One tensor of the tiny model: name and shape. */
typedef struct {
    char name[128];
    int ndim;
    int64_t shape[3];
} TinyTensor;

static int tiny_tensors(const TinyModelSpec *s, TinyTensor *t) {
    int n = 0, d_in = s->n_heads * s->head_dim, conv_dim = d_in + 2 * s->n_groups * s->d_state;
    int proj = 2 * d_in + 2 * s->n_groups * s->d_state + s->n_heads;
#define ADD(nm, nd, a, b, c) (snprintf(t[n].name, sizeof t[n].name, "%s", nm), t[n].ndim = nd, t[n].shape[0] = a, t[n].shape[1] = b, t[n].shape[2] = c, n++)
    ADD("backbone.embeddings.weight", 2, s->vocab_size, s->d_model, 0);
    for (int l = 0; l < s->n_layer; l++) {
        char b[96], nm[128];
        snprintf(b, sizeof b, "backbone.layers.%d.", l);
#define L(suffix) (snprintf(nm, sizeof nm, "%s%s", b, suffix), nm)
        ADD(L("norm.weight"), 1, s->d_model, 0, 0);
        ADD(L("mixer.in_proj.weight"), 2, proj, s->d_model, 0);
        ADD(L("mixer.conv1d.weight"), 3, conv_dim, 1, s->d_conv);
        if (!s->no_conv_bias) ADD(L("mixer.conv1d.bias"), 1, conv_dim, 0, 0);
        ADD(L("mixer.dt_bias"), 1, s->n_heads, 0, 0);
        ADD(L("mixer.A_log"), 1, s->n_heads, 0, 0);
        ADD(L("mixer.D"), 1, s->n_heads, 0, 0);
        ADD(L("mixer.norm.weight"), 1, d_in, 0, 0);
        ADD(L("mixer.out_proj.weight"), 2, s->d_model, d_in, 0);
#undef L
    }
    ADD("backbone.norm_f.weight", 1, s->d_model, 0, 0);
    if (!s->tie) ADD("lm_head.weight", 2, s->vocab_size, s->d_model, 0);
#undef ADD
    return n;
}

int test_write_tiny_model(const char *dir, const TinyModelSpec *s) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    if (s->config_json) fputs(s->config_json, f);
    else
        fprintf(f,
                "{\"architectures\": [\"Mamba2ForCausalLM\"], \"hidden_size\": %d, \"num_hidden_layers\": %d,\n"
                " \"num_heads\": %d, \"head_dim\": %d, \"state_size\": %d, \"n_groups\": %d, \"conv_kernel\": %d,\n"
                " \"expand\": %d, \"vocab_size\": %d, \"chunk_size\": %d, \"layer_norm_epsilon\": 1e-05,\n"
                " \"time_step_limit\": [0.0, Infinity], \"tie_word_embeddings\": %s, \"use_bias\": false,\n"
                " \"use_conv_bias\": %s, \"norm_before_gate\": false, \"bos_token_id\": 1, \"eos_token_id\": 2}\n",
                s->d_model, s->n_layer, s->n_heads, s->head_dim, s->d_state, s->n_groups, s->d_conv,
                s->n_heads * s->head_dim / s->d_model, s->vocab_size, s->chunk_size, s->tie ? "true" : "false",
                s->no_conv_bias ? "false" : "true");
    fclose(f);

    TinyTensor t[512];
    int n = tiny_tensors(s, t);
    /* header: {"name": {"dtype": ..., "shape": [...], "data_offsets": [b, e]}, ...} */
    size_t cap = 1 << 16, len = 0;
    char *hdr = malloc(cap);
    uint64_t off = 0;
    len += snprintf(hdr + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        if (s->drop && !strcmp(t[i].name, s->drop)) continue;
        if (s->reshape && !strcmp(t[i].name, s->reshape)) t[i].shape[0] += 1;
        const char *dtype = s->bad_dtype && !strcmp(t[i].name, s->bad_dtype) ? "I64" : s->dtype;
        int esize = !strcmp(dtype, "F32") || !strcmp(dtype, "I64") ? (dtype[0] == 'I' ? 8 : 4) : 2;
        uint64_t numel = 1;
        for (int k = 0; k < t[i].ndim; k++) numel *= (uint64_t)t[i].shape[k];
        len += snprintf(hdr + len, cap - len, "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [", len > 1 ? ", " : "",
                        t[i].name, dtype);
        for (int k = 0; k < t[i].ndim; k++)
            len += snprintf(hdr + len, cap - len, k ? ", %lld" : "%lld", (long long)t[i].shape[k]);
        len += snprintf(hdr + len, cap - len, "], \"data_offsets\": [%llu, %llu]}", (unsigned long long)off,
                        (unsigned long long)(off + numel * esize));
        off += numel * esize;
    }
    len += snprintf(hdr + len, cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        return -1;
    }
    uint64_t hlen = len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(hdr, 1, len, f);
    /* data: small random values, norms near 1, A_log in [0, 2.7], dt_bias around -2 */
    for (uint64_t i = 0; i < off;) {
        float v = (float)(0.3 * test_normal());
        if (!strcmp(s->dtype, "F32")) {
            fwrite(&v, 4, 1, f);
            i += 4;
        } else {
            uint16_t h = mamba2_f32_to_bf16(v);
            fwrite(&h, 2, 1, f);
            i += 2;
        }
    }
    free(hdr);
    return fclose(f);
}
