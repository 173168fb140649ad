/* corehead's C API: a stable plain-C interface for desktop apps and other languages' bindings
 * (Rust, Swift, C#, ...). Compiles as C99 and as C++. Link with libcorehead (shared); ggml is
 * inside it, hidden, so an app may link its own ggml too.
 *
 *     corehead_engine_params p = corehead_engine_default_params();
 *     corehead_engine *eng = corehead_engine_load("model.gguf", NULL, &p);
 *     if (!eng) { fprintf(stderr, "%s\n", corehead_last_error()); return 1; }
 *     ...
 *     corehead_engine_free(eng);
 *
 * Conventions
 * - Every function that can fail returns a corehead_status (COREHEAD_OK = 0) or NULL; then
 *   corehead_last_error() says why, in English, with what to do. Nothing a caller passes (NULL
 *   pointers, bad paths, malformed files, short buffers, out-of-range indices) aborts the process
 *   or throws: C++ exceptions never cross this boundary.
 * - Memory: the caller owns every buffer. Functions that return arrays write into a caller buffer
 *   of `capacity` elements and store the element count in `*n_out`. Pass NULL (and capacity 0) to
 *   ask for the size only: COREHEAD_OK with *n_out set. A non-NULL buffer that is too short writes
 *   nothing and returns COREHEAD_ERR_BUFFER_TOO_SMALL with *n_out set to the size needed.
 * - Strings are UTF-8 and NUL-terminated. Strings returned by the library (corehead_version,
 *   corehead_last_error, corehead_status_name) are owned by it.
 * - Structs with a corehead_*_default_params() function: start from the defaults, then change
 *   fields, so that fields added later get defaults that keep today's behaviour. Struct layouts
 *   are part of the ABI: a release that changes one bumps COREHEAD_VERSION_MINOR while the major
 *   version is 0 (then the major); compare corehead_version() with COREHEAD_VERSION at startup.
 *
 * Thread safety
 * - One engine per thread, or serialize every call on a shared engine (a mutex around it): an
 *   engine holds one KV cache and one set of interventions, and its calls are not reentrant.
 * - Different engines can be loaded and used concurrently from different threads.
 * - corehead_last_error() is thread-local: it reports the last failure of the calling thread.
 * - Callbacks run on the thread that called corehead_generate and must not call into the same
 *   engine.
 */
#ifndef COREHEAD_H
#define COREHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && !defined(__MINGW32__)
#    ifdef COREHEAD_BUILD
#        define COREHEAD_API __declspec(dllexport)
#    else
#        define COREHEAD_API __declspec(dllimport)
#    endif
#else
#    define COREHEAD_API __attribute__((visibility("default")))
#endif

/* The version of this header; corehead_version() returns the library's (they match when the
 * header and the library come from the same build). */
#define COREHEAD_VERSION_MAJOR 0
#define COREHEAD_VERSION_MINOR 1
#define COREHEAD_VERSION_PATCH 0
#define COREHEAD_VERSION "0.1.0"

/* The text that marks where an image goes in a prompt (llama.cpp's mtmd marker). */
#define COREHEAD_IMAGE_MARKER "<__media__>"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum corehead_status {
    COREHEAD_OK = 0,
    COREHEAD_ERR_INVALID_ARGUMENT = 1,  /* a NULL pointer, an out-of-range value or index, bad options */
    COREHEAD_ERR_FILE_NOT_FOUND = 2,    /* a model / mmproj path that does not exist */
    COREHEAD_ERR_MODEL = 3,             /* a malformed, unsupported or inconsistent GGUF file */
    COREHEAD_ERR_CONTEXT_OVERFLOW = 4,  /* the request does not fit in the context window (n_ctx) */
    COREHEAD_ERR_BUFFER_TOO_SMALL = 5,  /* *n_out holds the size needed; nothing was written */
    COREHEAD_ERR_OUT_OF_MEMORY = 6,
    COREHEAD_ERR_RUNTIME = 7            /* the work failed (a backend or allocation failure, an internal error) */
} corehead_status;

/* An engine: one model (+ optional vision projector), its KV cache and its interventions. */
typedef struct corehead_engine corehead_engine;

/* ---- library ---------------------------------------------------------------------------- */

COREHEAD_API const char *corehead_version(void);
/* Why the calling thread's last failing call failed ("" if none failed yet). Valid until the
 * thread's next failing call. */
COREHEAD_API const char *corehead_last_error(void);
/* "COREHEAD_OK", "COREHEAD_ERR_MODEL", ... ("unknown status" for other values). */
COREHEAD_API const char *corehead_status_name(corehead_status status);

/* ---- engine ----------------------------------------------------------------------------- */

typedef struct corehead_engine_params {
    int32_t n_threads;    /* 0 = automatic (physical cores) */
    int64_t n_ctx;        /* context window in tokens (16 .. 16777216); default 4096 */
    int64_t n_batch;      /* prefill chunk size in tokens (1 .. 65536); default 512 */
    const char *backend;  /* "auto" (default), "cpu", ... ; NULL = "auto" */
    /* KV cache element type: "auto" (f32 for f32 model files, else f16), "f16", "f32"; NULL = "auto" */
    const char *kv_type;
} corehead_engine_params;

COREHEAD_API corehead_engine_params corehead_engine_default_params(void);

/* Loads `model` (a language-model GGUF) and, unless `mmproj` is NULL or "", its vision projector.
 * params NULL = the defaults. Returns NULL on failure (see corehead_last_error). */
COREHEAD_API corehead_engine *corehead_engine_load(const char *model, const char *mmproj,
                                                   const corehead_engine_params *params);
/* Frees the engine (NULL is a no-op). */
COREHEAD_API void corehead_engine_free(corehead_engine *engine);

typedef struct corehead_engine_info {
    int32_t n_layer;
    int32_t n_head;      /* query heads per layer */
    int32_t n_head_kv;   /* KV heads per layer (n_head / n_head_kv query heads share one) */
    int32_t head_dim;
    int32_t n_embd;
    int32_t n_vocab;
    int64_t n_ctx;       /* the engine's context window */
    bool has_vision;     /* loaded with an mmproj: prompts may carry images */
    char arch[64];       /* general.architecture, NUL-terminated (truncated if longer) */
} corehead_engine_info;

COREHEAD_API corehead_status corehead_engine_get_info(const corehead_engine *engine, corehead_engine_info *info);

/* ---- tokens ----------------------------------------------------------------------------- */

/* The model tokenizer's ids for `text` (add_special: BOS etc. as the model declares;
 * parse_special: "<|im_start|>"-style text becomes its control token). */
COREHEAD_API corehead_status corehead_tokenize(const corehead_engine *engine, const char *text, bool add_special,
                                               bool parse_special, int32_t *tokens, size_t capacity, size_t *n_out);
/* The text of `tokens` (remove_special: drop BOS/EOS etc.) into `text`, NUL-terminated: *n_out is
 * the length without the NUL, so capacity must be at least *n_out + 1. */
COREHEAD_API corehead_status corehead_detokenize(const corehead_engine *engine, const int32_t *tokens,
                                                 size_t n_tokens, bool remove_special, char *text, size_t capacity,
                                                 size_t *n_out);
/* Whether `token` ends generation (the model's EOS / EOT tokens); false for invalid ids. */
COREHEAD_API bool corehead_token_is_eog(const corehead_engine *engine, int32_t token);

/* ---- prompts ---------------------------------------------------------------------------- */

/* An RGB image, 8 bits per channel, row-major, no padding: height * width * 3 bytes. Decode
 * files with your platform's image library (stb_image, ImageIO, WIC, ...). */
typedef struct corehead_image {
    const uint8_t *rgb;
    int64_t width;
    int64_t height;
} corehead_image;

/* A prompt: either `text` (tokenized with the model's tokenizer, special tokens added and parsed)
 * or `tokens` (ids, taken as they are; text NULL). Images need text: each goes where the text
 * holds COREHEAD_IMAGE_MARKER, or all of them before the text when it holds none; the engine
 * expands each image into the model's visual tokens. */
typedef struct corehead_prompt {
    const char *text;
    const int32_t *tokens;
    size_t n_tokens;
    const corehead_image *images;
    size_t n_images;
} corehead_prompt;

/* ---- inference -------------------------------------------------------------------------- */

/* Next-token logits after `prompt` (run from an empty context): n_vocab floats. */
COREHEAD_API corehead_status corehead_logits(corehead_engine *engine, const corehead_prompt *prompt, float *logits,
                                             size_t capacity, size_t *n_out);

/* Called with each generated token and its text piece (raw bytes, `piece_len` of them, not
 * NUL-terminated; a UTF-8 character may span pieces). Return false to stop generating. */
typedef bool (*corehead_token_callback)(int32_t token, const char *piece, size_t piece_len, void *user_data);

typedef struct corehead_generate_params {
    int32_t max_tokens;      /* default 64 */
    float temperature;       /* 0 = greedy (default) */
    int32_t top_k;           /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off */
    int32_t repeat_last_n;   /* default 64 */
    uint64_t seed;           /* sampling seed (temperature > 0) */
    bool stop_at_eog;        /* stop at the model's end-of-generation tokens (default true) */
    corehead_token_callback on_token;  /* NULL = none */
    void *user_data;                   /* passed to on_token */
} corehead_generate_params;

COREHEAD_API corehead_generate_params corehead_generate_default_params(void);

/* Generates after `prompt` (run from an empty context) until max_tokens, an end-of-generation
 * token (included in the output), a full context, or on_token returning false (for a token that
 * is then the last one of the output). `tokens` (may be
 * NULL: use on_token) receives the generated ids; it needs capacity >= max_tokens, checked
 * before any compute. *n_out = ids generated. params NULL = the defaults. */
COREHEAD_API corehead_status corehead_generate(corehead_engine *engine, const corehead_prompt *prompt,
                                               const corehead_generate_params *params, int32_t *tokens,
                                               size_t capacity, size_t *n_out);

/* ---- attention heads -------------------------------------------------------------------- */

typedef struct corehead_attention_shape {
    int32_t n_layer;  /* layers returned (the requested ones, ascending; all when none requested) */
    int32_t n_head;   /* query heads per layer */
    int32_t n_pos;    /* query positions returned (sorted, de-duplicated) */
    int64_t n_kv;     /* keys = prompt tokens (images expanded) */
} corehead_attention_shape;

/* Attention probabilities of the query `positions` (negative values count from the end;
 * NULL / 0 = the last prompt token) over every key, for `layers` (NULL / 0 = all) and every head,
 * into `out`, row-major [n_layer][n_head][n_pos][n_kv] (`shape`, may be NULL, says the sizes;
 * *n_out = their product). With out NULL only the shape is computed (the prompt is tokenized and
 * its images preprocessed, no forward pass). Needs the dense KV cache (not after corehead_sparse).
 * Current interventions apply. */
COREHEAD_API corehead_status corehead_attention(corehead_engine *engine, const corehead_prompt *prompt,
                                                const int32_t *positions, size_t n_positions, const int32_t *layers,
                                                size_t n_layers, float *out, size_t capacity,
                                                corehead_attention_shape *shape, size_t *n_out);

/* A (layer, query head) pair. */
typedef struct corehead_head {
    int32_t layer;
    int32_t head;
} corehead_head;

typedef enum corehead_intervention_kind {
    COREHEAD_INTERVENTION_ZERO = 0,      /* the head's output x 0 */
    COREHEAD_INTERVENTION_KNOCKOUT = 1,  /* the head may not attend to the knockout keys (below) */
    COREHEAD_INTERVENTION_MEAN = 2       /* the head's output replaced by `mean` (head_dim floats) */
} corehead_intervention_kind;

typedef struct corehead_intervention {
    corehead_head head;
    corehead_intervention_kind kind;
    const float *mean;  /* COREHEAD_INTERVENTION_MEAN only: head_dim values; else NULL */
} corehead_intervention;

/* Replaces the head interventions applied to every following call (all validated first: on an
 * error the previous ones stay). n_items 0 clears them (outputs are then bit-identical to an
 * engine that never had any). Knockout heads may not attend to `knockout_keys` (context
 * positions) in prompts of text or tokens; in prompts with images, the queries after an image
 * may not attend to that image's visual tokens (the knockout of the information-flow literature;
 * image -> image attention and the text before the image are untouched). */
COREHEAD_API corehead_status corehead_set_interventions(corehead_engine *engine, const corehead_intervention *items,
                                                        size_t n_items, const int32_t *knockout_keys,
                                                        size_t n_knockout_keys);

typedef struct corehead_sparse_params {
    int64_t sink;           /* first tokens every head keeps (default 4) */
    int64_t visual_budget;  /* visual tokens per image the non-CoRe KV heads keep (default 0) */
    /* how the non-CoRe heads choose them: "snapkv" (default; the attention of the last prompt
     * rows), "first" or "last"; NULL = "snapkv" */
    const char *visual_keep;
} corehead_sparse_params;

COREHEAD_API corehead_sparse_params corehead_sparse_default_params(void);

/* CoRe-sparse visual attention: the KV heads serving the CoRe heads `core_heads` ((layer, query
 * head) pairs, e.g. the top of a Retrieval Attention Mass ranking) keep every token; the other KV
 * heads keep text, the sink and visual_budget visual tokens per image. Applies to every following
 * call. n_heads 0 returns to the dense cache. params NULL = the defaults. */
COREHEAD_API corehead_status corehead_sparse(corehead_engine *engine, const corehead_head *core_heads, size_t n_heads,
                                             const corehead_sparse_params *params);

#ifdef __cplusplus
}
#endif

#endif /* COREHEAD_H */
