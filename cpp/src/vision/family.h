// One vision projector family (clip.projector_type) behind one small interface; each
// family lives in its own file in vision/ and registers itself in family.cpp.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "gguf/tensor_check.h"
#include "image/image.h"
#include "vision/hparams.h"

struct ggml_tensor;

namespace corehead {

class VisionGraph;

// One input of the vision encoder (a tile, a global view, or the whole resized image).
struct VisionView {
    int64_t width = 0, height = 0;   // encoder input in pixels
    std::vector<float> pixels;       // [3][height][width], rescaled and normalized
    int64_t grid_w = 0, grid_h = 0;  // the view's visual tokens, row-major
    std::array<double, 4> box{};     // the part of the original image it covers: x0, y0, x1, y1
    // Video (Qwen-VL): the second frame of the view's temporal patch, like `pixels` (empty: a
    // still image, whose one frame fills both halves of the temporal patch).
    std::vector<float> pixels_next;
    // M-RoPE of a video's temporal patches: the view's temporal offset from the start of its
    // position block, and whether it shares the previous view's block (one video, one block).
    int64_t t_pos = 0;
    bool same_block = false;
    // A video view: the first and last sampled frame it shows (Qwen's temporal patch: 2g and
    // 2g + 1, the padding frame of an odd clip being the last frame again); -1 for a still image.
    int64_t frame0 = -1, frame1 = -1;
};

// What replaces one image marker in the prompt: literal text (tokenized with the prompt) or
// the visual tokens of one view.
struct LayoutPiece {
    std::string text;
    int view = -1;  // >= 0: the tokens of views[view]
    // A run of the view's tokens (row-major): [first, first + count); count < 0 = all of them.
    // Pixtral lays one view out row by row, with text ([IMG_BREAK]) between the rows.
    int64_t first = 0, count = -1;
};

struct PreparedImage {
    int64_t width = 0, height = 0;  // original image (a video: one frame)
    int64_t n_frames = 0;           // a video: the frames it was made from; 0 = a still image
    // The placeholder token at its visual positions (empty: the family's image_token()).
    std::string placeholder;
    std::vector<VisionView> views;
    std::vector<LayoutPiece> layout;
    int64_t n_tokens() const {
        int64_t n = 0;
        for (const auto& v : views) n += v.grid_w * v.grid_h;
        return n;
    }
};

// One run of visual tokens (one view of one image) inside a prompt.
struct VisualSpan {
    int64_t start = 0;  // index in the prompt's token ids
    int64_t n = 0;
    int image = 0, view = 0;
    int64_t first = 0;  // index of the span's first token among its view's tokens
};

// RoPE positions of a multimodal prompt: empty = one per token (the context's default), or 3-D
// M-RoPE positions (4 * n_tokens values, section-major: t, h, w, 0); `next` is the position
// of the token after the prompt.
struct PromptPositions {
    std::vector<int32_t> positions;
    int64_t next = 0;
};

class VisionFamily {
public:
    virtual ~VisionFamily() = default;
    virtual const char* projector() const = 0;  // clip.projector_type value
    virtual void read_hparams(const GgufFile& f, VisionHParams& hp) const = 0;
    virtual std::vector<TensorSpec> tensor_specs(const GgufFile& f, const VisionHParams& hp) const = 0;
    // Resize / crop / tile / normalize an RGB image the way the family's HF processor does, and
    // lay out its tokens for the prompt. Throws InputError for images the family cannot take.
    virtual PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const = 0;
    // A video clip (frames of one size, see corehead::Image) prepared as the family's HF video
    // processor does; the default refuses: the family's processor takes no videos.
    virtual PreparedImage prepare_video(const std::vector<ImageU8>& frames, const std::vector<double>& timestamps,
                                        double fps, const VisionHParams& hp) const;
    // The encoder + projector for g.view; returns [n_out, grid_w * grid_h].
    virtual ggml_tensor* build(VisionGraph& g) const = 0;
    // The text of the placeholder token HF puts at visual positions (e.g. "<image>").
    virtual const char* image_token() const = 0;
    // True when the text model uses 3-D (M-RoPE) positions for visual tokens; positions() then
    // gives them (default: one position per token).
    virtual bool mrope_positions() const { return false; }
    virtual PromptPositions positions(int64_t n_tokens, const std::vector<VisualSpan>& spans,
                                      const std::vector<PreparedImage>& images) const;
    // True when the visual tokens of one image attend to each other (gemma3).
    virtual bool bidirectional_image() const { return false; }
    // The text architectures the projector feeds (empty: any) and the special tokens its
    // layout needs in the text model's vocabulary: a mismatch means the mmproj belongs to
    // another model.
    virtual std::vector<std::string> text_archs() const { return {}; }
    virtual std::vector<std::string> layout_tokens() const { return {}; }
};

// nullptr when the projector is not supported (vision/registry.cpp).
const VisionFamily* find_vision_family(const std::string& projector);
std::vector<std::string> supported_projectors();

// transformers' get_rope_index for Qwen-VL: text advances all three sections together; an
// image's tokens get (t, row, column) offsets from the position where it starts, and the text
// after it continues at max + 1.
PromptPositions mrope_prompt_positions(int64_t n_tokens, const std::vector<VisualSpan>& spans,
                                       const std::vector<PreparedImage>& images);

// transformers' smart_resize (Qwen-VL): both sides multiples of `factor`, the pixel count within
// [min_pixels, max_pixels], the aspect ratio kept as closely as possible. Throws InputError over 200:1.
void smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels, int64_t max_pixels, int64_t& h_out,
                  int64_t& w_out);
// The Qwen-VL image layout (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): one view smart-resized (bicubic) to
// multiples of patch * merge, between <|vision_start|> and <|vision_end|>.
PreparedImage qwen_prepare(const ImageU8& img, const VisionHParams& hp);
// The Qwen-VL video layouts (transformers' Qwen2VLVideoProcessor / Qwen3VLVideoProcessor and
// their processors): frames padded to an even count with the last one, smart-resized together,
// two consecutive frames per temporal patch (one view each). `time_interval` > 0: Qwen2-VL /
// Qwen2.5-VL, one <|vision_start|> ... <|vision_end|> block whose patches sit `time_interval`
// M-RoPE steps apart (Qwen2.5-VL: tokens_per_second * 2 / fps; Qwen2-VL: 1); 0: Qwen3-VL, one
// block per temporal patch after the text "<t seconds>" (the mean timestamp of its two frames).
PreparedImage qwen_prepare_video(const std::vector<ImageU8>& frames, const std::vector<double>& timestamps,
                                 const VisionHParams& hp, float time_interval, bool qwen3);
// 2-D RoPE positions of a gw x gh patch grid for ggml's 4-section rope: (row, column, row, column).
std::vector<int32_t> rope_2d_positions(int64_t gw, int64_t gh);

// The patch embedding (kernel [P, P, 3, E], optional bias) and, when n_positions > 0, learned
// position embeddings [E, n_positions]; post_ln_required: the final LayerNorm (weight + bias).
void add_patch_embedding_specs(std::vector<TensorSpec>& s, const VisionHParams& hp, int64_t n_positions);
void add_post_ln_specs(std::vector<TensorSpec>& s, const VisionHParams& hp, bool weight_required, bool bias_required);
// The tensors of VisionGraph::siglip_tower: patch and position embeddings, the ViT blocks, post_ln.
void add_siglip_specs(std::vector<TensorSpec>& s, const VisionHParams& hp);
// The two-layer MLP projector mm.0 (in -> hidden), GELU, mm.2 (hidden -> out), with biases.
void add_mlp_projector_specs(std::vector<TensorSpec>& s, int64_t in, int64_t hidden, int64_t out);
// The ViT blocks shared by all families: attention with q/k/v/out projections, two
// norms and an MLP. `rms_norm` drops the norm biases, `gated_ffn` adds ffn_gate, `fused_qkv`
// stores q/k/v as one attn_qkv projection (Qwen3-VL).
void add_vit_block_specs(std::vector<TensorSpec>& s, const VisionHParams& hp, bool rms_norm, bool gated_ffn,
                         bool fused_qkv = false);

// A view of `img` (already resized/cropped to the encoder input), normalized with the mmproj's
// mean/std, whose grid_w x grid_h tokens cover `box` of the original image.
VisionView make_view(const ImageU8& img, const VisionHParams& hp, std::array<double, 4> box, int64_t grid_w, int64_t grid_h);

// A video whose every frame becomes one view of `tile` x `tile` pixels (SmolVLM, InternVL): the
// frames checked (one size for all), resized with `filter`, one view each, covering the whole
// frame; sets p's size and frame count. The families add their frame text to p.layout.
void add_frame_views(PreparedImage& p, const std::vector<ImageU8>& frames, int64_t tile, Resample filter,
                     const VisionHParams& hp, int64_t grid);

}  // namespace corehead
