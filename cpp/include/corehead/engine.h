// corehead's public C++ API: what a desktop app links against (libcorehead + ggml).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "corehead/error.h"
#include "corehead/image.h"
#include "corehead/tokenizer.h"

namespace corehead {

// Facts about a language-model GGUF.
struct TextInfo {
    std::string path;
    std::string arch;         // general.architecture
    std::string name;         // general.name
    std::string file_type;    // e.g. "Q4_K_M", "F16"
    int64_t n_layer = 0, n_head = 0, n_head_kv = 0, n_embd = 0, n_ff = 0, n_vocab = 0, n_ctx_train = 0;
    int64_t head_dim = 0;     // of the global layers (gemma4's local layers: layer_head_dims)
    // Per layer: the head size, and the layer whose K/V it attends over (itself, or an earlier
    // layer's under KV sharing, gemma4: such a layer holds no KV cache of its own).
    std::vector<int64_t> layer_head_dims, kv_source_layers;
    int64_t n_deepstack = 0;                  // layers that add DeepStack visual features (qwen3vl)
    int64_t n_expert = 0, n_expert_used = 0;  // mixture of experts (qwen3vlmoe): experts per layer, routed per token
    // The layers with attention heads, ascending: every layer, except in a hybrid model (qwen35)
    // whose other layers are recurrent (Gated DeltaNet) and have no heads.
    std::vector<int32_t> attention_layers;
    // Bytes of the recurrent layers' state per sequence (conv window + delta-rule memory, f32);
    // allocated next to the KV cache, whatever n_ctx. 0 without recurrent layers.
    int64_t recurrent_state_bytes = 0;
    // Value heads per Gated DeltaNet layer (the layers not in attention_layers; 0 without any).
    int64_t deltanet_value_heads = 0;
    int64_t n_tensors = 0;
    int64_t n_params = 0;
    uint64_t file_size = 0;
    bool vocab_only = false;  // tokenizer-only file (no weights)
    std::string tokenizer;    // tokenizer.ggml.model ("llama" = SentencePiece, "gpt2" = byte-level BPE)
    std::string tokenizer_pre;
    int64_t n_tokens = 0;     // tokens in the tokenizer
};

// Facts about an mmproj GGUF (vision encoder + projector).
struct VisionInfo {
    std::string path;
    std::string projector;    // clip.projector_type
    std::string name;
    std::string file_type;
    int64_t image_size = 0, patch_size = 0, n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0;
    int64_t n_out = 0;        // embedding size the projector produces
    int64_t n_deepstack = 0;  // DeepStack slices per visual token after the main embedding (qwen3vl_merger)
    int64_t n_tensors = 0;
    int64_t n_params = 0;
    uint64_t file_size = 0;
};

// Validates a file without loading weights (works on vocab-only files). Throws
// FileNotFound / ModelError.
TextInfo inspect_model(const std::string& path);
VisionInfo inspect_mmproj(const std::string& path);

// CoRe-sparse visual attention (docs/architecture.md §6): the CoRe KV heads keep every token; the others keep
// text tokens, the first `sink` tokens and `visual_budget` visual tokens of every image (chosen by
// the attention of the last prompt rows), and lose the rest once an image's chunk is prefilled.
struct SparseOptions {
    std::vector<std::pair<int32_t, int32_t>> core_kv_heads;  // (layer, KV head); not empty
    int64_t sink = 4;
    int64_t visual_budget = 0;
    // How each non-CoRe KV head picks its visual_budget tokens of every image: "snapkv" (the
    // attention of the last prompt rows), "first" or "last" (positional baselines).
    std::string visual_keep = "snapkv";
};

// What the KV cache holds now. Dense: everything is in the full part.
struct KVStats {
    bool sparse = false;
    int64_t n_tokens = 0;          // tokens in the context (full part: every one of them)
    int64_t compact_tokens = 0;    // slots in use in the compact part (per KV head)
    size_t full_bytes = 0, compact_bytes = 0;          // held by the tokens in use
    size_t full_allocated = 0, compact_allocated = 0;  // backend buffers
    std::vector<int64_t> core_kv_heads, other_kv_heads;  // per layer
};

struct EngineOptions {
    std::string model;        // language-model GGUF
    std::string mmproj;       // optional vision projector GGUF ("" = text only)
    int n_threads = 0;        // 0 = automatic
    int64_t n_ctx = 4096;     // context window (tokens)
    std::string backend = "auto";
    // KV cache element type: "f16" (llama.cpp's default), "f32", or "auto" = f32 for f32 model
    // files (exact parity with the reference), f16 otherwise (half the memory).
    std::string kv_type = "auto";
    int64_t n_batch = 512;        // prefill chunk size (tokens per forward pass)
    std::optional<SparseOptions> sparse;  // start in CoRe-sparse mode (no dense cache is allocated)
};

struct GenerateOptions {
    int64_t max_tokens = 64;
    float temperature = 0.0f;   // 0 = greedy
    int32_t top_k = 0;
    float top_p = 1.0f;
    float min_p = 0.0f;
    float repeat_penalty = 1.0f;
    int32_t repeat_last_n = 64;
    uint64_t seed = 0;
    bool stop_at_eog = true;    // stop at the model's end-of-generation tokens
};

// Called with each generated token id; return false to stop (stop strings, Ctrl-C).
using TokenCallback = std::function<bool(int32_t)>;

// A prompt with images, as token ids: the image placeholder id at the visual positions.
struct MultimodalTokens {
    std::vector<int32_t> ids;
    std::vector<int32_t> visual_positions;  // indices into ids, in context order
    // M-RoPE models (Qwen-VL): the (t, h, w) RoPE positions of every token, section-major
    // (3 * ids.size()); empty for the others (position = index).
    std::vector<int32_t> rope_positions;
};

// One encoder input after preprocessing (a tile, a global view or the resized image).
struct PreprocessedView {
    int64_t width = 0, height = 0;
    std::vector<float> pixels;  // [3][height][width], normalized as the model expects
};

// Images in prompts: `marker` (llama.cpp's "<__media__>" by default) in the prompt text marks
// where each image goes; without markers the images go before the text.
constexpr const char* kDefaultImageMarker = "<__media__>";

// Attention probabilities read by the taps (docs/architecture.md §4): for each selected layer, head and
// query position, either the full row over all keys or its masses over relevance regions.
struct AttentionTaps {
    std::vector<int32_t> layers;     // selected layers, ascending
    std::vector<int32_t> positions;  // query positions, ascending
    int64_t n_head = 0;
    int64_t n_kv = 0;                // keys = tokens in the context
    int64_t n_regions = 0;
    std::vector<float> rows;    // [layer][head][position][key], row-major (empty unless asked)
    std::vector<float> masses;  // [layer][head][position][region] (empty unless asked)
};

// One head intervention (docs/architecture.md §5). kind: "zero" (output x 0), "mean" (output replaced by
// `mean`, head_dim values), "knockout" (no attention to the knockout keys: the visual tokens of
// a multimodal prompt, or the explicit key positions given with the interventions).
struct HeadIntervention {
    int32_t layer = 0;
    int32_t head = 0;
    std::string kind = "zero";
    std::vector<float> mean;
};

class Engine {
public:
    explicit Engine(const EngineOptions& options);  // loads weights; throws on any bad input
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const TextInfo& text_info() const;
    const VisionInfo* vision_info() const;  // nullptr without an mmproj
    const std::string& backend_name() const;
    // Where the last graphs of each part ("text", "vision") ran: nodes per ggml backend, and
    // the ops placed on the CPU because the GPU backend lacks them (empty on CPU-only runs).
    std::map<std::string, std::map<std::string, int64_t>> placement_nodes() const;
    std::map<std::string, std::vector<std::string>> cpu_fallback_ops() const;
    int n_threads() const;
    int64_t n_ctx() const;
    size_t weight_bytes() const;            // text + vision weights held in backend memory
    size_t kv_bytes() const;                // bytes of the KV cache
    // Switches between the dense cache (nullopt) and the CoRe-sparse one (validated first).
    void set_sparse(const std::optional<SparseOptions>& options);
    const std::optional<SparseOptions>& sparse_options() const;
    KVStats kv_stats() const;

    // Runs `tokens` from an empty context. Returns the logits of the last position
    // ([n_vocab]) or of every position ([n_tokens * n_vocab], row-major) when all_positions.
    std::vector<float> logits(const std::vector<int32_t>& tokens, bool all_positions);
    // Like logits(), but only the rows of input positions `rows` (ascending, distinct, in range):
    // [rows.size() * n_vocab]; the other rows are never copied out of the graph.
    std::vector<float> logits_at(const std::vector<int32_t>& tokens, const std::vector<int32_t>& rows);
    // Continues the current sequence with `tokens`; returns the last position's logits, or those of
    // every appended position ([n_tokens * n_vocab]) when all_positions.
    std::vector<float> append(const std::vector<int32_t>& tokens, bool all_positions = false);
    int64_t n_past() const;
    // Rolls the current sequence back to its first n positions (0 <= n <= n_past): what follows
    // is forgotten and the next append continues at n, so several continuations of one prompt
    // can be scored after a single prefill. For a prompt with images, n must lie after its last
    // image. Not on the CoRe-sparse cache (its dropped tokens are gone).
    void truncate(int64_t n);
    // Several continuations of the current sequence in one forward pass per n_batch rows, each
    // branch = (prefix length, tokens): the tokens continue the first `prefix` cached positions
    // (same rules as truncate) and see only those and their own branch. Returns the logits of
    // every branch token, branches one after another ([sum of lengths * n_vocab]). The cache is
    // left at its current length (the branches are forgotten). The multiple-choice scorer: one
    // prefill of the prompt, then all choices at once.
    std::vector<float> append_branches(const std::vector<std::pair<int64_t, std::vector<int32_t>>>& branches);

    // Generates after `prompt` (run from an empty context). Returns the generated ids (an
    // end-of-generation token, when hit, is included). Never reads past n_ctx: generation
    // stops when the context is full.
    std::vector<int32_t> generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                  const TokenCallback& on_token = nullptr);
    // --- images (need an mmproj; every call validates the images before any compute) ---
    // Logits of a prompt with images (run from an empty context), like logits(tokens).
    std::vector<float> logits(const std::string& prompt, const std::vector<Image>& images, bool all_positions,
                              const std::string& marker = kDefaultImageMarker);
    // logits_at(tokens, rows) for a prompt with images (rows are positions of the expanded prompt).
    std::vector<float> logits_at(const std::string& prompt, const std::vector<Image>& images,
                                 const std::vector<int32_t>& rows, const std::string& marker = kDefaultImageMarker);
    std::vector<int32_t> generate(const std::string& prompt, const std::vector<Image>& images,
                                  const GenerateOptions& options, const TokenCallback& on_token = nullptr,
                                  const std::string& marker = kDefaultImageMarker);
    MultimodalTokens tokenize(const std::string& prompt, const std::vector<Image>& images,
                              const std::string& marker = kDefaultImageMarker) const;
    // The projector output for one image (all its views): row-major [n_visual, n_embd].
    std::vector<float> encode_image(const Image& image);
    std::vector<PreprocessedView> preprocess_image(const Image& image) const;
    // The image-embedding cache (projector outputs of recently seen views, LRU, 256 MiB by
    // default; 0 disables it): repeated calls on the same image skip the vision encoder.
    struct ImageCacheStats {
        size_t bytes = 0, limit = 0, entries = 0, hits = 0, misses = 0;
    };
    void set_image_cache_limit(size_t bytes);
    ImageCacheStats image_cache_stats() const;
    void clear_image_cache();
    // For every visual token of `image`, in context order, the rectangle of the original image it
    // covers: row-major [n_visual, 4] (x0, y0, x1, y1) in pixels.
    std::vector<float> visual_token_boxes(const Image& image) const;
    // For every visual token of a video, in the order of visual_token_boxes, the first and last
    // of its sampled frames it shows: row-major [n_visual, 2] (Qwen's temporal patches: two
    // frames; one frame per view elsewhere); (-1, -1) for a still image's tokens.
    std::vector<int32_t> visual_token_frames(const Image& image) const;

    // Runs `tokens` from an empty context with attention taps on `positions` (negative values count
    // from the end) and `layers` (empty = all). full_rows: return P rows; relevance (row-major
    // [n_regions][n_tokens], may be empty): return Σ_j W[r, j] P[j] per region.
    AttentionTaps attention(const std::vector<int32_t>& tokens, const std::vector<int32_t>& positions,
                            const std::vector<int32_t>& layers, bool full_rows, const std::vector<float>& relevance,
                            int64_t n_regions);

    // attention() for a multimodal prompt (images at the markers).
    AttentionTaps attention(const std::string& prompt, const std::vector<Image>& images, const std::string& marker,
                            const std::vector<int32_t>& positions, const std::vector<int32_t>& layers, bool full_rows,
                            const std::vector<float>& relevance, int64_t n_regions);

    // Replaces the head interventions applied to every following call (validated first; an empty
    // list clears them and restores bit-identical outputs). knockout_keys: context positions the
    // knocked-out heads may not attend to for text prompts (multimodal prompts use their visual tokens).
    // knockout_from / knockout_until (optional, parallel to knockout_keys): each key is knocked out
    // only for queries at positions in [from, until) (a key may be listed once per range); multimodal
    // calls then use these keys instead of their visual tokens. knockout_queries, for multimodal
    // prompts without ranges: "after" (the visual tokens are blocked for the queries after their
    // image, outside every image) or "all" (for every query). The tokens generated after a prompt
    // keep its knockout.
    void set_head_interventions(const std::vector<HeadIntervention>& interventions,
                                const std::vector<int32_t>& knockout_keys = {},
                                const std::vector<int32_t>& knockout_from = {},
                                const std::vector<int32_t>& knockout_until = {},
                                const std::string& knockout_queries = "after");
    // Zero-ablation of Gated DeltaNet value heads (hybrid models, qwen35; docs/qwen35.md): for each
    // (layer, value head), a recurrent layer and a value head numbered as transformers numbers them
    // (its slice [v*d, (v+1)*d) of out_proj's input), the gated RMSNorm output of that head is
    // multiplied by 0 before the layer's output projection, in every following call. The layer's
    // recurrent state is computed as usual. Replaces the previous set (empty = none: bit-identical
    // outputs); independent of set_head_interventions. Invalid pairs raise InputError.
    void set_deltanet_ablation(const std::vector<std::pair<int32_t, int32_t>>& value_heads);
    // Per-head output sums over every position of `tokens` (run from an empty context, current
    // interventions applied): [n_layer][n_head * head_dim] and the position count.
    std::vector<std::vector<double>> head_output_sums(const std::vector<int32_t>& tokens, int64_t& n_positions);
    // head_output_sums() for a prompt with images (the visual positions included).
    std::vector<std::vector<double>> head_output_sums(const std::string& prompt, const std::vector<Image>& images,
                                                      const std::string& marker, int64_t& n_positions);

    // Called between forward passes of long work (prefill batches, generated tokens); it may
    // throw to abandon the work (the Python binding raises KeyboardInterrupt on Ctrl-C).
    // The engine stays usable afterwards.
    void set_interrupt_check(std::function<void()> check);
    // Called after each vision pass ("encode", images done, images) and each prefill forward
    // pass ("prefill", input positions done, positions) of a prompt; empty = none. It may throw
    // like the interrupt check. For progress bars over long prompts.
    void set_progress_callback(std::function<void(const char* phase, int64_t done, int64_t total)> progress);

    // A string metadata value of the model file (e.g. "tokenizer.chat_template"); nullopt when absent.
    std::optional<std::string> metadata_string(const std::string& key) const;
    // The model's tokenizer; nullptr when the file carries none.
    const Tokenizer* tokenizer() const;
    // End-of-generation token ids declared by the model's tokenizer metadata.
    const std::vector<int32_t>& eog_tokens() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace corehead
