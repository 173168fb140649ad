/* Bad input through corehead's C API (tests/test_capi.py): every call must return an error
 * status with a message, never abort. One line per case on stdout:
 *   case NAME STATUS_NAME N_OUT MESSAGE
 * (N_OUT: the size a call reported, -1 where none applies); tests/test_capi.py holds the
 * expected statuses.
 *
 *   bad_input MODEL MMPROJ MALFORMED_GGUF TRUNCATED_GGUF
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corehead/corehead.h"

static void report(const char *name, corehead_status st, long long n_out) {
    printf("case %s %s %lld %s\n", name, corehead_status_name(st), n_out, st == COREHEAD_OK ? "" : corehead_last_error());
    fflush(stdout);
}

/* The call runs before N_OUT is read (C leaves the order of function arguments unspecified). */
#define CASE(name, call, n_out)               \
    do {                                      \
        const corehead_status st_ = (call);   \
        report(name, st_, (long long)(n_out)); \
    } while (0)

/* Loads that must fail: the status is not returned, so the test checks the message. */
static void load_case(const char *name, const char *model, const char *mmproj, const corehead_engine_params *p) {
    corehead_engine *eng = corehead_engine_load(model, mmproj, p);
    printf("load %s %s %s\n", name, eng ? "loaded" : "NULL", eng ? "" : corehead_last_error());
    fflush(stdout);
    corehead_engine_free(eng);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL MMPROJ MALFORMED_GGUF TRUNCATED_GGUF\n", argv[0]);
        return 2;
    }
    const char *model = argv[1], *mmproj = argv[2];

    /* ---- loading ---- */
    corehead_engine_params p = corehead_engine_default_params();
    load_case("null_model", NULL, NULL, NULL);
    load_case("missing_model", "/no/such/model.gguf", NULL, NULL);
    load_case("malformed_model", argv[3], NULL, NULL);
    load_case("truncated_model", argv[4], NULL, NULL);
    load_case("missing_mmproj", model, "/no/such/mmproj.gguf", NULL);
    load_case("text_model_as_mmproj", model, model, NULL);
    load_case("mmproj_as_model", mmproj, NULL, NULL);
    p.n_ctx = 1;
    load_case("n_ctx_1", model, NULL, &p);
    p = corehead_engine_default_params();
    p.n_batch = 0;
    load_case("n_batch_0", model, NULL, &p);
    p = corehead_engine_default_params();
    p.n_threads = -3;
    load_case("n_threads_negative", model, NULL, &p);
    p = corehead_engine_default_params();
    p.kv_type = "q9";
    load_case("kv_type_bad", model, NULL, &p);
    p = corehead_engine_default_params();
    p.backend = "no-such-backend";
    load_case("backend_bad", model, NULL, &p);
    p = corehead_engine_default_params();
    p.backend = NULL;
    p.kv_type = NULL;
    p.n_ctx = 256;
    load_case("null_strings_mean_defaults", model, NULL, &p);

    p = corehead_engine_default_params();
    p.n_ctx = 64;
    p.n_threads = 1;
    corehead_engine *eng = corehead_engine_load(model, mmproj, &p);
    corehead_engine *text_only = corehead_engine_load(model, NULL, &p);
    if (!eng || !text_only) {
        fprintf(stderr, "could not load the fixture: %s\n", corehead_last_error());
        return 1;
    }
    corehead_engine_info info;
    CASE("info_ok", corehead_engine_get_info(eng, &info), info.n_vocab);

    /* ---- NULL engine / NULL outputs everywhere ---- */
    int32_t ids[256];
    float values[4096];
    char text[256];
    size_t n = 0;
    const int32_t one_token[1] = {1};
    corehead_prompt tokens_prompt = {NULL, one_token, 1, NULL, 0};
    corehead_engine_free(NULL);
    printf("case is_eog_null_engine %s -1\n", corehead_token_is_eog(NULL, 2) ? "true" : "false");
    CASE("info_null_engine", corehead_engine_get_info(NULL, &info), -1);
    CASE("info_null_out", corehead_engine_get_info(eng, NULL), -1);
    CASE("tokenize_null_engine", corehead_tokenize(NULL, "hi", true, true, ids, 256, &n), -1);
    CASE("tokenize_null_text", corehead_tokenize(eng, NULL, true, true, ids, 256, &n), -1);
    CASE("tokenize_null_n_out", corehead_tokenize(eng, "hi", true, true, ids, 256, NULL), -1);
    CASE("detokenize_null_engine", corehead_detokenize(NULL, one_token, 1, false, text, 256, &n), -1);
    CASE("logits_null_engine", corehead_logits(NULL, &tokens_prompt, values, 4096, &n), -1);
    CASE("logits_null_prompt", corehead_logits(eng, NULL, values, 4096, &n), -1);
    CASE("logits_null_n_out", corehead_logits(eng, &tokens_prompt, values, 4096, NULL), -1);
    CASE("generate_null_engine", corehead_generate(NULL, &tokens_prompt, NULL, ids, 256, &n), -1);
    CASE("generate_null_prompt", corehead_generate(eng, NULL, NULL, ids, 256, &n), -1);
    CASE("attention_null_engine", corehead_attention(NULL, &tokens_prompt, NULL, 0, NULL, 0, values, 4096, NULL, &n), -1);
    CASE("interventions_null_engine", corehead_set_interventions(NULL, NULL, 0, NULL, 0), -1);
    CASE("sparse_null_engine", corehead_sparse(NULL, NULL, 0, NULL), -1);

    /* ---- buffers ---- */
    n = 0;
    CASE("tokenize_size_query", corehead_tokenize(eng, "What is this?", true, true, NULL, 0, &n), n);
    n = 0;
    CASE("tokenize_short", corehead_tokenize(eng, "What is this?", true, true, ids, 1, &n), n);
    n = 0;
    const int32_t two_tokens[2] = {5, 6};
    CASE("detokenize_short", corehead_detokenize(eng, two_tokens, 2, false, text, 1, &n), n);
    const int32_t bad_id[1] = {1 << 30};
    CASE("detokenize_bad_id", corehead_detokenize(eng, bad_id, 1, false, text, 256, &n), -1);
    CASE("detokenize_null_tokens", corehead_detokenize(eng, NULL, 3, false, text, 256, &n), -1);
    n = 0;
    CASE("logits_short", corehead_logits(eng, &tokens_prompt, values, 10, &n), n);
    n = 0;
    CASE("logits_size_query", corehead_logits(eng, &tokens_prompt, NULL, 0, &n), n);

    /* ---- prompts ---- */
    corehead_prompt both = {"hi", one_token, 1, NULL, 0};
    CASE("prompt_text_and_tokens", corehead_logits(eng, &both, values, 4096, &n), -1);
    corehead_prompt empty = {NULL, NULL, 0, NULL, 0};
    CASE("prompt_empty", corehead_logits(eng, &empty, values, 4096, &n), -1);
    corehead_prompt empty_text = {"", NULL, 0, NULL, 0};
    CASE("prompt_empty_text", corehead_logits(eng, &empty_text, values, 4096, &n), -1);
    const int32_t out_of_vocab[2] = {1, 1 << 20};
    corehead_prompt oov = {NULL, out_of_vocab, 2, NULL, 0};
    CASE("prompt_token_out_of_range", corehead_logits(eng, &oov, values, 4096, &n), -1);
    const int32_t negative[1] = {-5};
    corehead_prompt neg = {NULL, negative, 1, NULL, 0};
    CASE("prompt_token_negative", corehead_logits(eng, &neg, values, 4096, &n), -1);
    corehead_prompt null_tokens = {NULL, NULL, 5, NULL, 0};
    CASE("prompt_null_tokens", corehead_logits(eng, &null_tokens, values, 4096, &n), -1);
    unsigned char pixels[8 * 8 * 3];
    memset(pixels, 128, sizeof pixels);
    corehead_image img = {pixels, 8, 8};
    corehead_prompt null_images = {"<__media__>hi", NULL, 0, NULL, 1};
    CASE("prompt_null_images", corehead_logits(eng, &null_images, values, 4096, &n), -1);
    corehead_prompt image_tokens = {NULL, one_token, 1, &img, 1};
    CASE("prompt_image_without_text", corehead_logits(eng, &image_tokens, values, 4096, &n), -1);
    corehead_prompt image_text_only = {"<__media__>hi", NULL, 0, &img, 1};
    CASE("prompt_image_without_mmproj", corehead_logits(text_only, &image_text_only, values, 4096, &n), -1);
    corehead_image null_rgb = {NULL, 8, 8};
    corehead_prompt p_null_rgb = {"<__media__>hi", NULL, 0, &null_rgb, 1};
    CASE("image_null_rgb", corehead_logits(eng, &p_null_rgb, values, 4096, &n), -1);
    corehead_image zero = {pixels, 0, 8};
    corehead_prompt p_zero = {"<__media__>hi", NULL, 0, &zero, 1};
    CASE("image_zero_width", corehead_logits(eng, &p_zero, values, 4096, &n), -1);
    corehead_image huge = {pixels, 1 << 30, 1 << 30};
    corehead_prompt p_huge = {"<__media__>hi", NULL, 0, &huge, 1};
    CASE("image_huge", corehead_logits(eng, &p_huge, values, 4096, &n), -1);
    corehead_image imgs2[2] = {{pixels, 8, 8}, {pixels, 8, 8}};
    corehead_prompt two_markers_one_image = {"<__media__> and <__media__>", NULL, 0, imgs2, 1};
    CASE("image_marker_count", corehead_logits(eng, &two_markers_one_image, values, 4096, &n), -1);

    /* ---- generation ---- */
    corehead_generate_params g = corehead_generate_default_params();
    g.max_tokens = -1;
    CASE("generate_negative_max_tokens", corehead_generate(eng, &tokens_prompt, &g, ids, 256, &n), -1);
    g = corehead_generate_default_params();
    g.max_tokens = 8;
    n = 0;
    CASE("generate_short_buffer", corehead_generate(eng, &tokens_prompt, &g, ids, 4, &n), n);
    g.temperature = -1.0f;
    CASE("generate_negative_temperature", corehead_generate(eng, &tokens_prompt, &g, ids, 256, &n), -1);
    g.temperature = NAN;
    CASE("generate_nan_temperature", corehead_generate(eng, &tokens_prompt, &g, ids, 256, &n), -1);
    g = corehead_generate_default_params();
    g.top_p = 2.0f;
    CASE("generate_top_p_2", corehead_generate(eng, &tokens_prompt, &g, ids, 256, &n), -1);
    int32_t long_prompt[100];
    for (int i = 0; i < 100; ++i) long_prompt[i] = 5 + i;
    corehead_prompt too_long = {NULL, long_prompt, 100, NULL, 0};
    g = corehead_generate_default_params();
    CASE("generate_context_overflow", corehead_generate(eng, &too_long, &g, ids, 256, &n), -1);
    CASE("logits_context_overflow", corehead_logits(eng, &too_long, values, 4096, &n), -1);

    /* ---- attention ---- */
    const int32_t far[1] = {999};
    CASE("attention_position_out_of_range",
           corehead_attention(eng, &tokens_prompt, far, 1, NULL, 0, values, 4096, NULL, &n), -1);
    const int32_t far_back[1] = {-2};
    CASE("attention_negative_position_out_of_range",
           corehead_attention(eng, &tokens_prompt, far_back, 1, NULL, 0, values, 4096, NULL, &n), -1);
    const int32_t bad_layer[1] = {99};
    CASE("attention_bad_layer", corehead_attention(eng, &tokens_prompt, NULL, 0, bad_layer, 1, values, 4096, NULL, &n), -1);
    CASE("attention_null_positions", corehead_attention(eng, &tokens_prompt, NULL, 3, NULL, 0, values, 4096, NULL, &n), -1);
    n = 0;
    CASE("attention_short", corehead_attention(eng, &tokens_prompt, NULL, 0, NULL, 0, values, 1, NULL, &n), n);
    corehead_attention_shape shape;
    n = 0;
    corehead_prompt image_prompt = {"<__media__>What is this?", NULL, 0, &img, 1};
    CASE("attention_size_query_image", corehead_attention(eng, &image_prompt, NULL, 0, NULL, 0, NULL, 0, &shape, &n),
           shape.n_kv);

    /* ---- interventions ---- */
    float before[4096], after[4096];
    size_t n_before = 0, n_after = 0;
    CASE("logits_before", corehead_logits(eng, &tokens_prompt, before, 4096, &n_before), n_before);
    corehead_intervention iv = {{99, 0}, COREHEAD_INTERVENTION_ZERO, NULL};
    CASE("intervention_bad_layer", corehead_set_interventions(eng, &iv, 1, NULL, 0), -1);
    iv.head.layer = 0;
    iv.head.head = 99;
    CASE("intervention_bad_head", corehead_set_interventions(eng, &iv, 1, NULL, 0), -1);
    iv.head.head = -1;
    CASE("intervention_negative_head", corehead_set_interventions(eng, &iv, 1, NULL, 0), -1);
    iv.head.head = 0;
    iv.kind = (corehead_intervention_kind)7;
    CASE("intervention_bad_kind", corehead_set_interventions(eng, &iv, 1, NULL, 0), -1);
    iv.kind = COREHEAD_INTERVENTION_MEAN;
    CASE("intervention_mean_null", corehead_set_interventions(eng, &iv, 1, NULL, 0), -1);
    CASE("intervention_null_items", corehead_set_interventions(eng, NULL, 2, NULL, 0), -1);
    corehead_intervention twice[2] = {{{0, 0}, COREHEAD_INTERVENTION_ZERO, NULL}, {{0, 0}, COREHEAD_INTERVENTION_ZERO, NULL}};
    CASE("intervention_duplicate", corehead_set_interventions(eng, twice, 2, NULL, 0), -1);
    corehead_intervention ko = {{0, 0}, COREHEAD_INTERVENTION_KNOCKOUT, NULL};
    const int32_t far_key[1] = {100000};
    CASE("intervention_key_outside_context", corehead_set_interventions(eng, &ko, 1, far_key, 1), -1);
    CASE("intervention_null_keys", corehead_set_interventions(eng, &ko, 1, NULL, 4), -1);
    CASE("logits_after_failures", corehead_logits(eng, &tokens_prompt, after, 4096, &n_after), n_after);
    printf("case logits_unchanged %s -1\n", n_before == n_after && memcmp(before, after, n_after * sizeof(float)) == 0
                                               ? "COREHEAD_OK" : "CHANGED");

    /* ---- CoRe-sparse ---- */
    corehead_head bad_head = {0, 99};
    CASE("sparse_bad_head", corehead_sparse(eng, &bad_head, 1, NULL), -1);
    corehead_head core = {0, 0};
    corehead_sparse_params sp = corehead_sparse_default_params();
    sp.visual_keep = "middle";
    CASE("sparse_bad_keep", corehead_sparse(eng, &core, 1, &sp), -1);
    sp = corehead_sparse_default_params();
    sp.sink = -1;
    CASE("sparse_negative_sink", corehead_sparse(eng, &core, 1, &sp), -1);
    CASE("sparse_null_heads", corehead_sparse(eng, NULL, 2, NULL), -1);
    CASE("sparse_ok", corehead_sparse(eng, &core, 1, NULL), -1);
    CASE("attention_in_sparse_mode", corehead_attention(eng, &tokens_prompt, NULL, 0, NULL, 0, values, 4096, NULL, &n), -1);
    CASE("knockout_in_sparse_mode", corehead_set_interventions(eng, &ko, 1, one_token, 1), -1);
    CASE("dense_again", corehead_sparse(eng, NULL, 0, NULL), -1);
    CASE("logits_dense_again", corehead_logits(eng, &tokens_prompt, after, 4096, &n_after), n_after);
    printf("case logits_dense_unchanged %s -1\n", memcmp(before, after, n_after * sizeof(float)) == 0 ? "COREHEAD_OK" : "CHANGED");

    printf("case status_name_unknown %s -1\n",
           strcmp(corehead_status_name((corehead_status)99), "unknown status") == 0 ? "unknown" : "WRONG");
    corehead_engine_free(text_only);
    corehead_engine_free(eng);
    printf("done\n");
    return 0;
}
