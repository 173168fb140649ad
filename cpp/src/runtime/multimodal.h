// Multimodal prompts: image markers in the prompt are replaced by each family's token layout
// (as the transformers processors expand them), images are encoded by the vision model, and the
// sequence is prefilled with image embeddings at the visual positions (M-RoPE 3-D positions for
// Qwen-VL, a bidirectional image chunk for Gemma 3).
#pragma once
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "corehead/image.h"
#include "corehead/tokenizer.h"
#include "heads/interventions.h"
#include "heads/taps.h"
#include "runtime/prefill.h"
#include "vision/family.h"

namespace corehead {

struct Backends;
class TextContext;
class VisionContext;
class Weights;
struct VisionModelFile;

struct MultimodalPrompt {
    std::vector<int32_t> ids;        // the image placeholder id (or 0 when the vocabulary lacks it) at visual positions
    std::vector<VisualSpan> spans;   // in prompt order
    std::vector<int32_t> positions;  // M-RoPE only: 4 * ids.size(), section-major (t, h, w, 0)
    int64_t next_position = 0;       // RoPE position of the token after the prompt
};

class MultimodalRunner {
public:
    // Throws ModelError when the mmproj does not fit the text model (architecture, M-RoPE,
    // the special tokens of its image layout), naming both files.
    MultimodalRunner(const VisionModelFile& vision, const Weights& weights, const Backends& backends, const Tokenizer* tok,
                     int64_t n_embd, const std::string& text_arch, bool text_mrope, const std::string& model_path,
                     int64_t text_deepstack = 0);
    ~MultimodalRunner();

    // An image, or a video (img.is_video(): its frames through the family's video processor).
    PreparedImage prepare(const Image& img) const;
    // Throws InputError when the number of markers and images differ (no marker: the images go
    // first, in order).
    MultimodalPrompt assemble(const std::string& prompt, const std::vector<PreparedImage>& images,
                              const std::string& marker) const;
    // Projector output of every view of `img`, concatenated: row-major [n_tokens, n_embd].
    // Views seen before come from the embedding cache (see set_cache_limit).
    std::vector<float> encode(const PreparedImage& img);

    // The embedding cache: projector outputs of recently encoded views, keyed by a 128-bit hash
    // of their preprocessed pixels, least recently used evicted first. Evaluating many head
    // ablations over the same probes encodes each image once. 0 disables it.
    void set_cache_limit(size_t bytes);
    struct CacheStats {
        size_t bytes = 0, limit = 0, entries = 0, hits = 0, misses = 0;
    };
    CacheStats cache_stats() const;
    void clear_cache();
    // Runs `p` from the context's current position (see PrefillOptions; `positions` is set from
    // the prompt here); returns the logits of every position ([n, n_vocab]) or of the last one.
    // Leaves the context's RoPE offset set for decoding.
    std::vector<float> prefill(TextContext& ctx, const MultimodalPrompt& p, const std::vector<PreparedImage>& images,
                               PrefillOptions o);
    // Context positions of the visual tokens of `p`, ascending.
    static std::vector<int32_t> visual_positions(const MultimodalPrompt& p);

    // [n_visual, 4] boxes (x0, y0, x1, y1) in original-image pixels, in context order.
    static std::vector<float> token_boxes(const PreparedImage& img);
    // [n_visual, 2] (first, last) sampled frame of a video's tokens, in the order of token_boxes;
    // (-1, -1) for a still image's.
    static std::vector<int32_t> token_frames(const PreparedImage& img);

private:
    // Two independent 64-bit hashes (FNV-1a and a multiply-xorshift mix): a false hit needs
    // both to collide.
    struct ViewKey {
        uint64_t a = 0xcbf29ce484222325ull, b = 0x243f6a8885a308d3ull;
        void mix(uint64_t x);
        bool operator==(const ViewKey& o) const { return a == o.a && b == o.b; }
    };
    struct ViewKeyHash {
        size_t operator()(const ViewKey& k) const { return static_cast<size_t>(k.a ^ (k.b * 0x9e3779b97f4a7c15ull)); }
    };
    PreparedImage prepare_video(const Image& video) const;
    // Throws ContextOverflow saying how many frames of the prompt's last video fit, when the
    // prompt (with a video) does not.
    static void check_video_fits(const MultimodalPrompt& p, const std::vector<PreparedImage>& images, int64_t n_past,
                                 int64_t n_ctx);  // checks the clip, then the family's prepare_video
    static ViewKey view_key(const VisionView& v);
    static ViewKey image_key(const Image& img);
    std::vector<float> encode_view(const VisionView& v);

    // LRU: most recent at the front; the map points into the list.
    using CacheEntry = std::pair<ViewKey, std::vector<float>>;
    std::list<CacheEntry> cache_;
    std::unordered_map<ViewKey, std::list<CacheEntry>::iterator, ViewKeyHash> cache_index_;
    size_t cache_bytes_ = 0, cache_limit_ = size_t(256) << 20, cache_hits_ = 0, cache_misses_ = 0;
    // The last image prepare() preprocessed (see there).
    mutable std::optional<std::pair<ViewKey, PreparedImage>> last_prepared_;

    const VisionModelFile& vision_;
    const Tokenizer* tok_;
    int64_t n_embd_;
    int64_t n_deepstack_ = 0;  // DeepStack slices after the main embedding of each visual token
    int32_t image_token_id_ = 0;
    std::unique_ptr<VisionContext> ctx_;
};

}  // namespace corehead
