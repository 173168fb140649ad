/* Head interventions and the CoRe-sparse cache through corehead's C API (tests/test_capi.py):
 * for each request of a spec file, the next-token logits of one image prompt with that request
 * in force, then back to the unmodified model.
 *
 *   steer MODEL MMPROJ IMAGE.rgb WIDTH HEIGHT PROMPT SPEC_FILE
 *
 * SPEC_FILE, one request per line: NAME KIND N LAYER HEAD ... (N pairs), then for KIND mean
 * N * head_dim floats, for KIND sparse the sink. KIND: none, zero, knockout, mean, sparse.
 * stdout: "logits NAME V_0 ... V_(n_vocab-1)" per request, then "ok".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corehead/corehead.h"

static int fail(const char *what) {
    printf("error %s: %s\n", what, corehead_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s MODEL MMPROJ IMAGE.rgb WIDTH HEIGHT PROMPT SPEC_FILE\n", argv[0]);
        return 2;
    }
    corehead_engine_params p = corehead_engine_default_params();
    p.n_ctx = 512;
    corehead_engine *eng = corehead_engine_load(argv[1], argv[2], &p);
    if (!eng) return fail("load");
    corehead_engine_info info;
    if (corehead_engine_get_info(eng, &info) != COREHEAD_OK) return fail("info");

    corehead_image image;
    image.width = atol(argv[4]);
    image.height = atol(argv[5]);
    const size_t n_bytes = (size_t)image.width * (size_t)image.height * 3;
    unsigned char *rgb = (unsigned char *)malloc(n_bytes);
    FILE *f = fopen(argv[3], "rb");
    if (!rgb || !f || fread(rgb, 1, n_bytes, f) != n_bytes) return 1;
    fclose(f);
    image.rgb = rgb;
    corehead_prompt prompt = {argv[6], NULL, 0, &image, 1};

    FILE *spec = fopen(argv[7], "r");
    if (!spec) return 1;
    float *logits = (float *)malloc(sizeof(float) * (size_t)info.n_vocab);
    char name[64], kind[16];
    int n_heads;
    while (fscanf(spec, "%63s %15s %d", name, kind, &n_heads) == 3) {
        corehead_head *heads = (corehead_head *)calloc((size_t)n_heads + 1, sizeof(corehead_head));
        corehead_intervention *items = (corehead_intervention *)calloc((size_t)n_heads + 1, sizeof(corehead_intervention));
        float *means = (float *)calloc((size_t)n_heads * (size_t)info.head_dim + 1, sizeof(float));
        for (int i = 0; i < n_heads; ++i) {
            if (fscanf(spec, "%d %d", &heads[i].layer, &heads[i].head) != 2) return 1;
            items[i].head = heads[i];
            items[i].kind = strcmp(kind, "knockout") == 0 ? COREHEAD_INTERVENTION_KNOCKOUT
                            : strcmp(kind, "mean") == 0   ? COREHEAD_INTERVENTION_MEAN
                                                          : COREHEAD_INTERVENTION_ZERO;
        }
        if (strcmp(kind, "mean") == 0) {
            for (int i = 0; i < n_heads * info.head_dim; ++i) {
                if (fscanf(spec, "%f", &means[i]) != 1) return 1;
            }
            for (int i = 0; i < n_heads; ++i) items[i].mean = means + (size_t)i * (size_t)info.head_dim;
        }
        corehead_status st = COREHEAD_OK;
        if (strcmp(kind, "sparse") == 0) {
            corehead_sparse_params sp = corehead_sparse_default_params();
            long long sink = 0;
            if (fscanf(spec, "%lld", &sink) != 1) return 1;
            sp.sink = sink;
            st = corehead_sparse(eng, heads, (size_t)n_heads, &sp);
        } else if (strcmp(kind, "none") != 0) {
            st = corehead_set_interventions(eng, items, (size_t)n_heads, NULL, 0);
        }
        if (st != COREHEAD_OK) return fail(name);
        size_t n = 0;
        if (corehead_logits(eng, &prompt, logits, (size_t)info.n_vocab, &n) != COREHEAD_OK) return fail(name);
        printf("logits %s", name);
        for (size_t i = 0; i < n; ++i) printf(" %.9g", logits[i]);
        printf("\n");
        /* Back to the unmodified model. */
        if (corehead_set_interventions(eng, NULL, 0, NULL, 0) != COREHEAD_OK || corehead_sparse(eng, NULL, 0, NULL) != COREHEAD_OK) {
            return fail("reset");
        }
        free(heads);
        free(items);
        free(means);
    }
    fclose(spec);
    free(logits);
    free(rgb);
    corehead_engine_free(eng);
    printf("ok\n");
    return 0;
}
