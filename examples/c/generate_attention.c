/* corehead's C API in one program: load a model (optionally with its vision projector and an
 * image), generate greedily with a streaming callback, then read the attention of the prompt's
 * last token over every key, for every layer and head.
 *
 *   cc -std=c99 generate_attention.c -I"$(python -c 'import corehead; print(corehead.get_include())')" \
 *      "$(python -c 'import corehead; print(corehead.get_library())')" \
 *      -Wl,-rpath,"$(python -c 'import corehead, os; print(os.path.dirname(corehead.get_library()))')" \
 *      -o generate_attention
 *   ./generate_attention model.gguf "Once upon a time" 16
 *   ./generate_attention model.gguf "USER: <__media__>\nWhat is this? ASSISTANT:" 16 mmproj.gguf image.rgb 96 64
 *
 * image.rgb: raw RGB8 bytes, width * height * 3 (decode PNG/JPEG with your own image library).
 * The generated text streams to stderr as it comes. stdout, one record per line: "version V",
 * "generated ID ...", "shape L H P N", then "attention l h v_0 ... v_(N-1)" per layer and head.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corehead/corehead.h"

static int fail(const char *what) {
    fprintf(stderr, "%s failed: %s\n", what, corehead_last_error());
    return 1;
}

/* Streams each generated piece to stderr; stops after the caller's limit of pieces. */
struct stream {
    int n_seen;
    int limit;
};

static bool on_token(int32_t token, const char *piece, size_t piece_len, void *user_data) {
    struct stream *s = (struct stream *)user_data;
    (void)token;
    fwrite(piece, 1, piece_len, stderr);
    s->n_seen += 1;
    return s->n_seen < s->limit;
}

static unsigned char *read_rgb(const char *path, long width, long height) {
    const size_t n = (size_t)width * (size_t)height * 3;
    unsigned char *buf = (unsigned char *)malloc(n);
    FILE *f = fopen(path, "rb");
    if (!buf || !f || fread(buf, 1, n, f) != n) {
        fprintf(stderr, "could not read %zu bytes of RGB from %s\n", n, path);
        if (f) fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 8) {
        fprintf(stderr, "usage: %s MODEL PROMPT MAX_TOKENS [MMPROJ IMAGE.rgb WIDTH HEIGHT]\n", argv[0]);
        return 2;
    }
    const char *model = argv[1];
    const int max_tokens = atoi(argv[3]);
    printf("version %s\n", corehead_version());

    corehead_engine_params params = corehead_engine_default_params();
    params.n_ctx = 1024;
    corehead_engine *eng = corehead_engine_load(model, argc == 8 ? argv[4] : NULL, &params);
    if (!eng) return fail("corehead_engine_load");

    corehead_image image = {NULL, 0, 0};
    corehead_prompt prompt = {argv[2], NULL, 0, NULL, 0};
    unsigned char *rgb = NULL;
    if (argc == 8) {
        image.width = atol(argv[6]);
        image.height = atol(argv[7]);
        rgb = read_rgb(argv[5], image.width, image.height);
        if (!rgb) return 1;
        image.rgb = rgb;
        prompt.images = &image;
        prompt.n_images = 1;
    }

    /* Greedy generation; the callback may stop it early. */
    corehead_generate_params gen = corehead_generate_default_params();
    struct stream s = {0, max_tokens};
    gen.max_tokens = max_tokens;
    gen.on_token = on_token;
    gen.user_data = &s;
    int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)(max_tokens > 0 ? max_tokens : 1));
    size_t n_ids = 0;
    if (corehead_generate(eng, &prompt, &gen, ids, (size_t)max_tokens, &n_ids) != COREHEAD_OK) {
        return fail("corehead_generate");
    }
    fputc('\n', stderr);
    printf("generated");
    for (size_t i = 0; i < n_ids; ++i) printf(" %d", ids[i]);
    printf("\n");

    /* Attention of the last prompt token: ask for the shape, then fill a buffer of that size. */
    corehead_attention_shape shape;
    size_t n_values = 0;
    if (corehead_attention(eng, &prompt, NULL, 0, NULL, 0, NULL, 0, &shape, &n_values) != COREHEAD_OK) {
        return fail("corehead_attention (size)");
    }
    float *att = (float *)malloc(sizeof(float) * n_values);
    if (!att || corehead_attention(eng, &prompt, NULL, 0, NULL, 0, att, n_values, &shape, &n_values) != COREHEAD_OK) {
        return fail("corehead_attention");
    }
    printf("shape %d %d %d %lld\n", shape.n_layer, shape.n_head, shape.n_pos, (long long)shape.n_kv);
    for (int l = 0; l < shape.n_layer; ++l) {
        for (int h = 0; h < shape.n_head; ++h) {
            const float *row = att + ((size_t)l * shape.n_head + h) * (size_t)shape.n_kv; /* n_pos = 1 */
            printf("attention %d %d", l, h);
            for (int64_t k = 0; k < shape.n_kv; ++k) printf(" %.9g", row[k]);
            printf("\n");
        }
    }

    free(att);
    free(ids);
    free(rgb);
    corehead_engine_free(eng);
    return 0;
}
