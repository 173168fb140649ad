#include "runtime/multimodal.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "corehead/error.h"
#include "image/image.h"
#include "runtime/text_context.h"
#include "vision/vision_context.h"
#include "vision/vision_model.h"

namespace corehead {

MultimodalRunner::MultimodalRunner(const VisionModelFile& vision, const Weights& weights, const Backends& backends,
                                   const Tokenizer* tok, int64_t n_embd, const std::string& text_arch, bool text_mrope,
                                   const std::string& model_path, int64_t text_deepstack)
    : vision_(vision), tok_(tok), n_embd_(n_embd),
      n_deepstack_(static_cast<int64_t>(vision.hp.deepstack_layers.size())) {
    const VisionFamily& fam = *vision.family;
    const std::string other = ": this mmproj belongs to a different model";
    const std::string model = " (model '" + model_path + "')";
    const std::vector<std::string> archs = fam.text_archs();
    if (!archs.empty() && std::find(archs.begin(), archs.end(), text_arch) == archs.end()) {
        std::string names;
        for (const std::string& a : archs) names += (names.empty() ? "'" : "' or '") + a;
        vision.file->fail("projector '" + vision.hp.projector + "' feeds a " + names + "' language model, not '" +
                          text_arch + "'" + model + other);
    }
    if (n_deepstack_ != text_deepstack) {
        vision.file->fail("this mmproj emits " + std::to_string(n_deepstack_) +
                          " DeepStack feature slices per visual token but the language model" + model +
                          " adds DeepStack features after " + std::to_string(text_deepstack) + " layers" + other);
    }
    if (fam.mrope_positions() != text_mrope) {
        vision.file->fail(std::string("the language model") + model + " " + (text_mrope ? "uses" : "does not use") +
                          " M-RoPE positions but projector '" + vision.hp.projector + "' " +
                          (text_mrope ? "does not" : "does") + other);
    }
    if (tok) {
        for (const std::string& t : fam.layout_tokens()) {
            if (tok->find(t) < 0) {
                vision.file->fail("projector '" + vision.hp.projector + "' needs the token '" + t +
                                  "', which the vocabulary of model '" + model_path + "' lacks" + other);
            }
        }
    }
    ctx_ = std::make_unique<VisionContext>(*vision.family, vision.hp, weights, backends);
    if (tok_) image_token_id_ = std::max<int32_t>(0, tok_->find(vision.family->image_token()));
}

MultimodalRunner::~MultimodalRunner() = default;

PreparedImage MultimodalRunner::prepare(const Image& img) const {
    // Scoring a probe asks for one image's token layout, its boxes and its prefill in a row:
    // the last preprocessed image is kept (keyed by a hash of its RGB8 bytes) instead of being
    // resized and normalized again for each call.
    const ViewKey key = image_key(img);
    if (last_prepared_ && last_prepared_->first == key) return last_prepared_->second;
    PreparedImage p = img.is_video() ? prepare_video(img) : vision_.family->prepare(img, vision_.hp);
    last_prepared_.emplace(key, p);
    return p;
}

PreparedImage MultimodalRunner::prepare_video(const Image& video) const {
    if (video.width <= 0 || video.height <= 0 || video.width > kMaxImagePixels || video.height > kMaxImagePixels ||
        video.width * video.height > kMaxImagePixels) {
        throw InputError("the video's frames are " + std::to_string(video.width) + "x" + std::to_string(video.height) +
                         " pixels: each must be non-empty and at most " + std::to_string(kMaxImagePixels / 1'000'000) +
                         " megapixels");
    }
    const size_t frame_bytes = static_cast<size_t>(video.width * video.height * 3);
    if (video.n_frames <= 0 || video.rgb.size() / frame_bytes != static_cast<size_t>(video.n_frames) ||
        video.rgb.size() % frame_bytes) {
        throw InputError("the video buffer holds " + std::to_string(video.rgb.size()) + " bytes, expected n_frames (" +
                         std::to_string(video.n_frames) + ") * width * height * 3");
    }
    if (video.timestamps.size() != static_cast<size_t>(video.n_frames)) {
        throw InputError("the video has " + std::to_string(video.n_frames) + " frames but " +
                         std::to_string(video.timestamps.size()) + " timestamps: give one per frame");
    }
    for (size_t i = 0; i < video.timestamps.size(); ++i) {
        if (!std::isfinite(video.timestamps[i]) || video.timestamps[i] < 0 ||
            (i > 0 && video.timestamps[i] < video.timestamps[i - 1])) {
            throw InputError("the video's timestamps must be finite, >= 0 and non-decreasing");
        }
    }
    if (!std::isfinite(video.fps) || video.fps <= 0) throw InputError("the video's fps must be a positive number");
    std::vector<ImageU8> frames(static_cast<size_t>(video.n_frames));
    for (size_t i = 0; i < frames.size(); ++i) {
        frames[i].width = video.width;
        frames[i].height = video.height;
        frames[i].rgb.assign(video.rgb.begin() + static_cast<std::ptrdiff_t>(i * frame_bytes),
                             video.rgb.begin() + static_cast<std::ptrdiff_t>((i + 1) * frame_bytes));
    }
    return vision_.family->prepare_video(frames, video.timestamps, video.fps, vision_.hp);
}

void MultimodalRunner::ViewKey::mix(uint64_t x) {
    a = (a ^ x) * 0x100000001b3ull;
    b = (b + x) * 0xff51afd7ed558ccdull;
    b ^= b >> 33;
}

MultimodalRunner::ViewKey MultimodalRunner::image_key(const Image& img) {
    // Over 8-byte words of the RGB8 bytes (and the tail).
    ViewKey k;
    auto mix = [&k](uint64_t x) { k.mix(x); };
    mix(static_cast<uint64_t>(img.width));
    mix(static_cast<uint64_t>(img.height));
    mix(static_cast<uint64_t>(img.n_frames));
    uint64_t bits;
    std::memcpy(&bits, &img.fps, 8);
    mix(bits);
    for (double t : img.timestamps) {
        std::memcpy(&bits, &t, 8);
        mix(bits);
    }
    const size_t n = img.rgb.size(), words = n / 8;
    for (size_t i = 0; i < words; ++i) {
        uint64_t w;
        std::memcpy(&w, img.rgb.data() + 8 * i, 8);
        mix(w);
    }
    uint64_t tail = 0;
    if (n > 8 * words) std::memcpy(&tail, img.rgb.data() + 8 * words, n - 8 * words);
    mix(tail ^ (static_cast<uint64_t>(n) << 56));
    return k;
}

MultimodalPrompt MultimodalRunner::assemble(const std::string& prompt_in, const std::vector<PreparedImage>& images,
                                            const std::string& marker) const {
    if (!tok_) throw InputError("this model file carries no tokenizer: multimodal prompts need one");
    if (marker.empty()) throw InputError("the image marker must not be empty");
    // Split the prompt at the markers.
    std::vector<std::string> parts;
    size_t start = 0;
    for (size_t at; (at = prompt_in.find(marker, start)) != std::string::npos; start = at + marker.size()) {
        parts.push_back(prompt_in.substr(start, at - start));
    }
    parts.push_back(prompt_in.substr(start));
    const size_t n_markers = parts.size() - 1;
    if (n_markers == 0 && !images.empty()) {
        parts.insert(parts.begin(), images.size(), std::string());  // no marker: images first
    } else if (n_markers != images.size()) {
        throw InputError("the prompt has " + std::to_string(n_markers) + " image marker(s) ('" + marker + "') but " +
                         std::to_string(images.size()) + " image(s) were given: use one marker per image");
    }
    // Text runs between visual spans (adjacent text is joined before tokenizing, as the HF
    // processors tokenize the expanded string in one pass with the image tokens as specials).
    MultimodalPrompt p;
    std::string text = parts[0];
    bool first = true;
    auto flush = [&]() {
        if (text.empty() && !first) return;
        std::vector<int32_t> t = tok_->tokenize(text, /*add_special=*/first, /*parse_special=*/true);
        p.ids.insert(p.ids.end(), t.begin(), t.end());
        text.clear();
        first = false;
    };
    for (size_t i = 0; i < images.size(); ++i) {
        for (const LayoutPiece& piece : images[i].layout) {
            if (piece.view < 0) {
                text += piece.text;
                continue;
            }
            flush();
            const VisionView& v = images[i].views[piece.view];
            const int64_t n_view = v.grid_w * v.grid_h;
            if (piece.first < 0 || piece.first > n_view || piece.first + piece.count > n_view) {
                throw Error("internal error: a layout piece lies outside its view");
            }
            VisualSpan s;
            s.start = static_cast<int64_t>(p.ids.size());
            s.n = piece.count < 0 ? n_view - piece.first : piece.count;
            s.image = static_cast<int>(i);
            s.view = piece.view;
            s.first = piece.first;
            p.spans.push_back(s);
            int32_t placeholder = image_token_id_;
            if (!images[i].placeholder.empty()) placeholder = std::max<int32_t>(0, tok_->find(images[i].placeholder));
            p.ids.insert(p.ids.end(), s.n, placeholder);
        }
        text += parts[i + 1];
    }
    flush();
    if (p.ids.empty()) throw InputError("the prompt is empty (no tokens)");

    PromptPositions pos = vision_.family->positions(static_cast<int64_t>(p.ids.size()), p.spans, images);
    p.positions = std::move(pos.positions);
    p.next_position = pos.next;
    return p;
}

std::vector<float> MultimodalRunner::encode(const PreparedImage& img) {
    std::vector<float> out;
    out.reserve(static_cast<size_t>(img.n_tokens() * n_embd_ * (1 + n_deepstack_)));
    for (const VisionView& v : img.views) {
        std::vector<float> e = encode_view(v);
        out.insert(out.end(), e.begin(), e.end());
    }
    return out;
}

MultimodalRunner::ViewKey MultimodalRunner::view_key(const VisionView& v) {
    // Over the view's shape and normalized pixels.
    ViewKey k;
    auto mix = [&k](uint64_t x) { k.mix(x); };
    for (int64_t x : {v.width, v.height, v.grid_w, v.grid_h}) mix(static_cast<uint64_t>(x));
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(v.pixels.data());
    for (size_t i = 0; i < v.pixels.size(); ++i) mix(bits[i]);
    mix(static_cast<uint64_t>(v.pixels_next.size()));  // a video's second frame of the temporal patch
    const uint32_t* next = reinterpret_cast<const uint32_t*>(v.pixels_next.data());
    for (size_t i = 0; i < v.pixels_next.size(); ++i) mix(next[i]);
    return k;
}

std::vector<float> MultimodalRunner::encode_view(const VisionView& v) {
    if (cache_limit_ == 0) return ctx_->encode(v);
    const ViewKey key = view_key(v);
    if (auto it = cache_index_.find(key); it != cache_index_.end()) {
        cache_.splice(cache_.begin(), cache_, it->second);  // now the most recent
        ++cache_hits_;
        return it->second->second;
    }
    ++cache_misses_;
    std::vector<float> e = ctx_->encode(v);
    const size_t bytes = e.size() * sizeof(float);
    if (bytes <= cache_limit_) {
        cache_.emplace_front(key, e);
        cache_index_[key] = cache_.begin();
        cache_bytes_ += bytes;
        while (cache_bytes_ > cache_limit_) {
            cache_bytes_ -= cache_.back().second.size() * sizeof(float);
            cache_index_.erase(cache_.back().first);
            cache_.pop_back();
        }
    }
    return e;
}

void MultimodalRunner::set_cache_limit(size_t bytes) {
    cache_limit_ = bytes;
    while (cache_bytes_ > cache_limit_ && !cache_.empty()) {
        cache_bytes_ -= cache_.back().second.size() * sizeof(float);
        cache_index_.erase(cache_.back().first);
        cache_.pop_back();
    }
}

MultimodalRunner::CacheStats MultimodalRunner::cache_stats() const {
    return {cache_bytes_, cache_limit_, cache_.size(), cache_hits_, cache_misses_};
}

void MultimodalRunner::clear_cache() {
    last_prepared_.reset();
    cache_.clear();
    cache_index_.clear();
    cache_bytes_ = 0;
}

void MultimodalRunner::check_video_fits(const MultimodalPrompt& p, const std::vector<PreparedImage>& images,
                                        int64_t n_past, int64_t n_ctx) {
    const int64_t n = static_cast<int64_t>(p.ids.size());
    if (n_past + n <= n_ctx) return;
    // The last video of the prompt gives up frames: its tokens (from its first visual token to
    // its last, the timestamps and markers in between included) per temporal patch of 2 frames.
    for (size_t i = images.size(); i-- > 0;) {
        if (images[i].n_frames <= 0) continue;
        int64_t first = -1, last = -1;
        for (const VisualSpan& s : p.spans) {
            if (s.image != static_cast<int>(i)) continue;
            if (first < 0) first = s.start;
            last = s.start + s.n;
        }
        // One view per temporal patch (Qwen-VL: 2 frames) or per frame (InternVL).
        const int64_t n_views = static_cast<int64_t>(images[i].views.size());
        const int64_t per_view = (images[i].n_frames + n_views - 1) / n_views;
        const int64_t video_tokens = last - first + 2;  // with its start / end markers
        const double tokens_per_view = static_cast<double>(video_tokens) / static_cast<double>(n_views);
        const int64_t room = n_ctx - n_past - (n - video_tokens);
        const int64_t fit = room > 0 ? per_view * static_cast<int64_t>(static_cast<double>(room) / tokens_per_view) : 0;
        throw ContextOverflow("the prompt needs " + std::to_string(n_past + n) + " tokens but the context holds " +
                              std::to_string(n_ctx) + ": its video of " + std::to_string(images[i].n_frames) +
                              " frames takes " + std::to_string(video_tokens) + " (about " +
                              std::to_string(static_cast<int64_t>(tokens_per_view + 0.5)) + " per " +
                              (per_view == 1 ? "frame" : std::to_string(per_view) + " frames") + "), so " +
                              (fit >= per_view ? "about " + std::to_string(fit) + " of its frames fit"
                                               : "none of its frames fit") +
                              ": pass max_frames=" + std::to_string(std::max<int64_t>(fit, 1)) +
                              " (or a lower fps), or a larger n_ctx");
    }
}

std::vector<float> MultimodalRunner::prefill(TextContext& ctx, const MultimodalPrompt& p,
                                             const std::vector<PreparedImage>& images, PrefillOptions o) {
    const int64_t n = static_cast<int64_t>(p.ids.size());
    o.positions = &p.positions;
    check_video_fits(p, images, ctx.n_past(), ctx.n_ctx());
    Prefill run(ctx, o, n);  // checks that the prompt fits before any image is encoded
    // Encode every image first (one vision pass per view).
    std::vector<std::vector<float>> per_image(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
        if (o.interrupt) o.interrupt();
        per_image[i] = encode(images[i]);
        if (o.progress) o.progress("encode", static_cast<int64_t>(i + 1), static_cast<int64_t>(images.size()));
    }
    const bool bidir = vision_.family->bidirectional_image();
    const int64_t width = n_embd_ * (1 + n_deepstack_);  // per visual token: main, then DeepStack slices
    // The embeddings row of every visual token of the prompt (nullptr: a text token).
    auto visual_rows = [&] {
        std::vector<const float*> rows(static_cast<size_t>(n), nullptr);
        for (const VisualSpan& sp : p.spans) {
            int64_t offset = sp.first;  // of the span's first token in its image's embeddings
            for (int v = 0; v < sp.view; ++v) offset += images[sp.image].views[v].grid_w * images[sp.image].views[v].grid_h;
            for (int64_t k = 0; k < sp.n; ++k) rows[sp.start + k] = per_image[sp.image].data() + (offset + k) * width;
        }
        return rows;
    };
    if (!bidir) {
        // Causal attention: n_batch rows per forward pass whatever mix of text and visual tokens
        // they hold (as llama.cpp batches an image chunk), not one pass per text or visual run
        // (Pixtral: 2 per row of patches; SmolVLM video: 1 per frame). The CoRe-sparse cache's
        // masks hide a chunk from its other heads for the batch's later rows, and its commit drops
        // the chunk's tokens once the batch is over, so batches need not end where chunks do.
        const std::vector<const float*> rows = visual_rows();
        const int64_t step = std::max<int64_t>(1, o.n_batch);
        for (int64_t at = 0, len = 0; at < n; at += len) {
            len = std::min(step, n - at);
            const bool any_visual = std::any_of(rows.begin() + at, rows.begin() + at + len, [](const float* r) { return r; });
            if (!any_visual) {
                run.tokens(p.ids.data(), at, len);
                continue;
            }
            std::vector<int32_t> ids(static_cast<size_t>(len), 0);
            std::vector<float> embd(static_cast<size_t>(len * n_embd_), 0.0f), is_token(static_cast<size_t>(len), 0.0f);
            std::vector<float> deep(static_cast<size_t>(n_deepstack_ * len * n_embd_), 0.0f);  // layer-major
            for (int64_t t = 0; t < len; ++t) {
                const float* row = rows[at + t];
                if (!row) {
                    ids[t] = p.ids[at + t];
                    is_token[t] = 1.0f;
                    continue;
                }
                std::copy_n(row, n_embd_, embd.begin() + t * n_embd_);
                for (int64_t d = 0; d < n_deepstack_; ++d) {
                    std::copy_n(row + (1 + d) * n_embd_, n_embd_, deep.begin() + (d * len + t) * n_embd_);
                }
            }
            const bool all_visual = std::none_of(is_token.begin(), is_token.end(), [](float f) { return f != 0.0f; });
            if (all_visual) {
                run.embeddings(std::move(embd), at, len, false, std::move(deep));
            } else {
                run.mixed(std::move(ids), std::move(embd), std::move(is_token), at, len, std::move(deep));
            }
        }
        ctx.set_pos_offset(p.next_position - ctx.n_past());
        return run.take();
    }
    // Bidirectional images (gemma3): one batch per image chunk, the text in between on its own.
    int64_t i = 0;
    for (const VisualSpan& sp : p.spans) {
        run.tokens(p.ids.data(), i, sp.start - i);
        int64_t offset = sp.first;  // of the span's first token in its image's embeddings
        for (int v = 0; v < sp.view; ++v) offset += images[sp.image].views[v].grid_w * images[sp.image].views[v].grid_h;
        const float* src = per_image[sp.image].data() + offset * width;
        // A bidirectional image chunk must be one batch; others may be split.
        const int64_t step = bidir ? sp.n : std::max<int64_t>(1, o.n_batch);
        for (int64_t k = 0; k < sp.n; k += step) {
            const int64_t len = std::min(step, sp.n - k);
            std::vector<float> main(static_cast<size_t>(len * n_embd_));
            std::vector<float> deep(static_cast<size_t>(n_deepstack_ * len * n_embd_));  // layer-major
            for (int64_t t = 0; t < len; ++t) {
                const float* row = src + (k + t) * width;
                std::copy_n(row, n_embd_, main.begin() + t * n_embd_);
                for (int64_t d = 0; d < n_deepstack_; ++d) {
                    std::copy_n(row + (1 + d) * n_embd_, n_embd_, deep.begin() + (d * len + t) * n_embd_);
                }
            }
            run.embeddings(std::move(main), sp.start + k, len, bidir, std::move(deep));
        }
        i = sp.start + sp.n;
    }
    run.tokens(p.ids.data(), i, n - i);
    ctx.set_pos_offset(p.next_position - ctx.n_past());
    return run.take();
}

std::vector<float> MultimodalRunner::token_boxes(const PreparedImage& img) {
    std::vector<float> out;
    out.reserve(static_cast<size_t>(4 * img.n_tokens()));
    // Views in layout order (the order their tokens appear in the prompt).
    for (const LayoutPiece& piece : img.layout) {
        if (piece.view < 0) continue;
        const VisionView& v = img.views[piece.view];
        const double bw = (v.box[2] - v.box[0]) / v.grid_w, bh = (v.box[3] - v.box[1]) / v.grid_h;
        const int64_t n_view = v.grid_w * v.grid_h;
        const int64_t end = piece.count < 0 ? n_view : piece.first + piece.count;
        for (int64_t k = piece.first; k < end; ++k) {
            const int64_t r = k / v.grid_w, c = k % v.grid_w;
            out.push_back(static_cast<float>(v.box[0] + c * bw));
            out.push_back(static_cast<float>(v.box[1] + r * bh));
            out.push_back(static_cast<float>(c + 1 == v.grid_w ? v.box[2] : v.box[0] + (c + 1) * bw));
            out.push_back(static_cast<float>(r + 1 == v.grid_h ? v.box[3] : v.box[1] + (r + 1) * bh));
        }
    }
    return out;
}

std::vector<int32_t> MultimodalRunner::token_frames(const PreparedImage& img) {
    std::vector<int32_t> out;
    out.reserve(static_cast<size_t>(2 * img.n_tokens()));
    // The same walk as token_boxes: views in layout order, each piece's run of tokens.
    for (const LayoutPiece& piece : img.layout) {
        if (piece.view < 0) continue;
        const VisionView& v = img.views[piece.view];
        const int64_t n_view = v.grid_w * v.grid_h;
        const int64_t end = piece.count < 0 ? n_view : piece.first + piece.count;
        for (int64_t k = piece.first; k < end; ++k) {
            out.push_back(static_cast<int32_t>(v.frame0));
            out.push_back(static_cast<int32_t>(v.frame1));
        }
    }
    return out;
}

std::vector<int32_t> MultimodalRunner::visual_positions(const MultimodalPrompt& p) {
    std::vector<int32_t> out;
    for (const VisualSpan& sp : p.spans) {
        for (int64_t i = 0; i < sp.n; ++i) out.push_back(static_cast<int32_t>(sp.start + i));
    }
    return out;
}

}  // namespace corehead
