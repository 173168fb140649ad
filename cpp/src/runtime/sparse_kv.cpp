#include "runtime/sparse_kv.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

#include "corehead/error.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"

namespace corehead {

namespace {

struct Run {
    int64_t start, end;
};

// The image chunks: the visual tokens of one chunk (SparsePlan::Span::chunk) that no text separates
// (one view, or all the tiles and the thumbnail of an InternVL image, which see each other as one
// image chunk); spans of different chunks stay apart even when they touch (images given back to
// back, a Qwen-VL video's temporal patches), so that each frame's tokens leave the compact part
// once it is prefilled.
std::vector<Run> visual_runs(const SparsePlan& p) {
    std::vector<Run> runs;
    int last_chunk = -1;
    for (const SparsePlan::Span& s : p.spans) {
        if (s.n <= 0) continue;
        if (!runs.empty() && runs.back().end == s.start && s.chunk == last_chunk) {
            runs.back().end = s.start + s.n;
        } else {
            runs.push_back({s.start, s.start + s.n});
        }
        last_chunk = s.chunk;
    }
    return runs;
}

}  // namespace

SparseKVCache::SparseKVCache(const TextHParams& hp, SparseConfig cfg, int64_t n_ctx, ggml_type type,
                             ggml_backend_t backend)
    : hp_(hp), cfg_(std::move(cfg)), n_ctx_(n_ctx), type_(type), backend_(backend) {
    const int64_t g = hp.n_head / hp.n_head_kv;
    // KV sharing: one KV set per shared KV head. A KV head that is CoRe in any layer reading it
    // is CoRe in its source layer; the reading layers hold no parts (layer() gives the source's).
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        if (hp.owns_kv(l)) continue;
        for (int64_t h = 0; h < hp.n_head_kv; ++h) cfg_.core[hp.kv_layer(l)][h] |= cfg_.core[l][h];
    }
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        if (!hp.owns_kv(l)) cfg_.core[l] = cfg_.core[hp.kv_layer(l)];
    }
    layers_.resize(hp.n_layer);
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        if (hp.is_recurrent(l)) continue;  // a Gated DeltaNet layer: no K/V in either part
        if (!hp.owns_kv(l)) continue;
        Layer& L = layers_[l];
        for (int64_t h = 0; h < hp.n_head_kv; ++h) (cfg_.core[l][h] ? L.core : L.other).push_back(static_cast<int32_t>(h));
        for (int32_t h : L.core) {
            for (int64_t i = 0; i < g; ++i) L.q_core.push_back(static_cast<int32_t>(h * g + i));
        }
        for (int32_t h : L.other) {
            for (int64_t i = 0; i < g; ++i) L.q_other.push_back(static_cast<int32_t>(h * g + i));
        }
        L.q_inv.assign(hp.n_head, 0);
        int32_t row = 0;
        for (int32_t h : L.q_core) L.q_inv[h] = row++;
        for (int32_t h : L.q_other) L.q_inv[h] = row++;
    }
    full_ = allocate_part(true, n_ctx, "the CoRe part of the KV cache");
}

BackendTensors SparseKVCache::allocate_part(bool core, int64_t slots, const std::string& what) {
    size_t n = 0;
    for (const Layer& L : layers_) n += (core ? L.core : L.other).empty() ? 0 : 1;
    if (n == 0) return {};
    return BackendTensors(backend_, 2 * n, [&](ggml_context* ctx) {
        for (int64_t l = 0; l < static_cast<int64_t>(layers_.size()); ++l) {
            Layer& L = layers_[l];
            const int64_t heads = static_cast<int64_t>((core ? L.core : L.other).size());
            if (heads == 0) continue;
            (core ? L.kf : L.kc) = ggml_new_tensor_3d(ctx, type_, hp_.head_k(l), slots, heads);
            (core ? L.vf : L.vc) = ggml_new_tensor_3d(ctx, type_, hp_.head_v(l), slots, heads);
        }
    }, what + " (" + std::to_string(slots) + " tokens)");
}

size_t SparseKVCache::row_bytes(int64_t l) const {
    return ggml_row_size(type_, hp_.head_k(l)) + ggml_row_size(type_, hp_.head_v(l));
}

void SparseKVCache::allocate_compact(int64_t capacity) {
    if (capacity == cap_c_ && compact_ready_) return;
    for (Layer& L : layers_) L.kc = L.vc = nullptr;
    compact_ = BackendTensors();
    compact_ready_ = false;
    cap_c_ = 0;
    try {
        compact_ = allocate_part(false, capacity, "the compact part of the KV cache");
    } catch (...) {
        for (Layer& L : layers_) L.kc = L.vc = nullptr;
        throw;
    }
    cap_c_ = capacity;
    compact_ready_ = true;
}

void SparseKVCache::reset(const SparsePlan* plan) {
    int64_t capacity = n_ctx_;
    SparsePlan p;
    if (plan) {
        p = *plan;
        if (p.n_prompt < 0 || p.n_prompt > n_ctx_) throw InputError("the prompt does not fit in the context");
        int64_t prev_end = 0;
        for (const SparsePlan::Span& s : p.spans) {
            if (s.n < 0 || s.start < prev_end || s.start + s.n > p.n_prompt) {
                throw InputError("internal: visual spans out of order or outside the prompt");
            }
            prev_end = s.start + s.n;
        }
        // Every image must hold at least visual_budget tokens besides the sinks.
        if (cfg_.visual_budget > 0) {
            std::vector<int64_t> per_image;
            for (const SparsePlan::Span& s : p.spans) {
                if (s.image < 0) throw InputError("internal: negative image index");
                if (static_cast<size_t>(s.image) >= per_image.size()) per_image.resize(s.image + 1, 0);
                per_image[s.image] += std::max<int64_t>(0, s.start + s.n - std::max(s.start, cfg_.sink));
            }
            for (size_t i = 0; i < per_image.size(); ++i) {
                if (per_image[i] > 0 && per_image[i] < cfg_.visual_budget) {
                    throw InputError("visual_budget = " + std::to_string(cfg_.visual_budget) + " is larger than image " +
                                     std::to_string(i) + ", which has " + std::to_string(per_image[i]) +
                                     " visual tokens (besides the sinks); use visual_budget <= " +
                                     std::to_string(per_image[i]));
                }
            }
        } else {
            // Slots in use peak just before a batch's commit (the slots still live after the
            // previous batch, plus the batch's rows; batches of n_batch rows from position 0, as
            // the prefill runs them, whatever runs they cross) or at the end of the context (text
            // + kept sinks + generated tokens). A run's tokens (sinks excepted) die at the commit
            // of the batch in which the run ends.
            const std::vector<Run> runs = visual_runs(p);
            const int64_t step = p.n_batch > 0 ? p.n_batch : std::max<int64_t>(p.n_prompt, 1);
            int64_t dead = 0, visual = 0, peak = 0;  // dead: dropped by the commits so far
            size_t next = 0;                          // the first run not yet over
            for (int64_t p0 = 0; p0 < p.n_prompt; p0 += step) {
                const int64_t p1 = std::min(p0 + step, p.n_prompt);
                peak = std::max(peak, p0 - dead + (p1 - p0));
                for (; next < runs.size() && runs[next].end <= p1; ++next) {
                    dead += runs[next].end - std::max(runs[next].start, std::min(runs[next].end, cfg_.sink));
                }
            }
            for (const Run& r : runs) visual += r.end - std::max(r.start, std::min(r.end, cfg_.sink));
            capacity = std::max(peak, n_ctx_ - visual);
            capacity = std::min(std::max<int64_t>(capacity, 1), n_ctx_);
        }
    }
    allocate_compact(capacity);
    // Per prompt position: the first query that no longer sees it (non-CoRe heads) and its image.
    tok_until_.assign(p.n_prompt, kForever);
    tok_image_.assign(p.n_prompt, -1);
    for (const Run& r : visual_runs(p)) {
        for (int64_t i = std::max(r.start, cfg_.sink); i < r.end; ++i) tok_until_[i] = static_cast<int32_t>(r.end);
    }
    for (const SparsePlan::Span& sp : p.spans) {
        for (int64_t i = std::max(sp.start, cfg_.sink); i < sp.start + sp.n; ++i) tok_image_[i] = sp.image;
    }
    plan_ = std::move(p);
    has_plan_ = plan != nullptr;
    pos_.clear();
    until_.clear();
    image_.clear();
    head_pos_.clear();
    selected_ = false;
}

int32_t SparseKVCache::until_of(int64_t pos) const {
    return pos >= 0 && pos < static_cast<int64_t>(tok_until_.size()) ? tok_until_[pos] : kForever;
}

bool SparseKVCache::wants_scores(int64_t p0, int64_t n) const {
    if (cfg_.visual_budget <= 0 || !has_plan_ || p0 + n != plan_.n_prompt) return false;
    for (const SparsePlan::Span& s : plan_.spans) {
        if (s.start + s.n > cfg_.sink) return true;
    }
    return false;
}

int32_t SparseKVCache::slot_pos(int64_t l, int64_t h, int64_t j) const {
    if (l >= 0) l = hp_.kv_layer(l);
    return l >= 0 && selected_ && !head_pos_[l].empty() ? head_pos_[l][h][j] : pos_[j];
}

bool SparseKVCache::per_head_positions(int64_t l) const {
    return selected_ && hp_.is_swa(l) && !layers_[hp_.kv_layer(l)].other.empty();
}

void SparseKVCache::compact(const std::vector<std::vector<std::vector<int32_t>>>& src, int64_t n_new) {
    const int64_t n_old = n_compact();
    std::vector<uint8_t> buf;
    for (size_t l = 0; l < layers_.size(); ++l) {
        const Layer& L = layers_[l];
        if (L.other.empty()) continue;
        for (size_t h = 0; h < L.other.size(); ++h) {
            const std::vector<int32_t>& s = src[l][h];
            int64_t first = 0;
            while (first < n_new && s[first] == first) ++first;
            if (first == n_new) continue;  // a truncation: nothing moves
            for (ggml_tensor* t : {L.kc, L.vc}) {
                const size_t row = t->nb[1];
                const size_t base = h * t->nb[2];
                buf.resize((n_old - first) * row);
                ggml_backend_tensor_get(t, buf.data(), base + first * row, buf.size());
                for (int64_t j = first; j < n_new; ++j) {
                    if (s[j] != j) std::memmove(buf.data() + (j - first) * row, buf.data() + (s[j] - first) * row, row);
                }
                ggml_backend_tensor_set(t, buf.data(), base + first * row, (n_new - first) * row);
            }
        }
    }
}

void SparseKVCache::commit(int64_t p0, int64_t n, const std::vector<std::vector<float>>& scores) {
    for (int64_t i = 0; i < n; ++i) {
        const int64_t p = p0 + i;
        const int32_t until = until_of(p);
        pos_.push_back(static_cast<int32_t>(p));
        until_.push_back(until);
        image_.push_back(p < static_cast<int64_t>(tok_image_.size()) ? tok_image_[p] : -1);
        if (selected_) {
            for (auto& layer : head_pos_) {
                for (auto& h : layer) h.push_back(static_cast<int32_t>(p));
            }
        }
    }
    const int64_t p1 = p0 + n;
    const int64_t n_slots = n_compact();
    const bool select = cfg_.visual_budget > 0 && has_plan_ && p1 == plan_.n_prompt;
    if (cfg_.visual_budget > 0 && !select) return;  // visual tokens wait for the end of the prompt
    // Slots no later query sees (budget 0: runs that are over; with a budget: every visual token).
    std::vector<uint8_t> drop(n_slots, 0);
    bool any = false;
    for (int64_t j = 0; j < n_slots; ++j) {
        drop[j] = until_[j] <= p1;
        any = any || drop[j];
    }
    if (!any) return;
    const size_t n_layer = layers_.size();
    std::vector<std::vector<std::vector<int32_t>>> src(n_layer);
    std::vector<int32_t> pos, until, image;
    if (!select) {
        std::vector<int32_t> keep;
        for (int64_t j = 0; j < n_slots; ++j) {
            if (drop[j]) continue;
            keep.push_back(static_cast<int32_t>(j));
            pos.push_back(pos_[j]);
            until.push_back(until_[j]);
            image.push_back(image_[j]);
        }
        for (size_t l = 0; l < n_layer; ++l) src[l].assign(layers_[l].other.size(), keep);
        const int64_t n_new = static_cast<int64_t>(keep.size());
        compact(src, n_new);  // (no budget: no per-head positions exist)
    } else {
        // SnapKV: per layer and head, the visual_budget tokens of each image with the largest
        // attention from the last prompt rows; they take the place of the image's first token.
        int32_t n_image = 0;
        for (int64_t j = 0; j < n_slots; ++j) n_image = std::max(n_image, drop[j] ? image_[j] + 1 : 0);
        std::vector<std::vector<std::vector<std::vector<int32_t>>>> chosen(n_layer);  // [l][h][image]
        for (size_t l = 0; l < n_layer; ++l) {
            const Layer& L = layers_[l];
            if (L.other.empty()) continue;
            if (scores.size() != n_layer || scores[l].size() != L.other.size() * n_slots) {
                throw Error("internal: SnapKV scores missing for layer " + std::to_string(l));
            }
            chosen[l].resize(L.other.size());
            for (size_t h = 0; h < L.other.size(); ++h) {
                const float* sc = scores[l].data() + h * n_slots;
                chosen[l][h].resize(n_image);
                for (int32_t m = 0; m < n_image; ++m) {
                    std::vector<int32_t> cand;
                    for (int64_t j = 0; j < n_slots; ++j) {
                        if (drop[j] && image_[j] == m) cand.push_back(static_cast<int32_t>(j));
                    }
                    chosen[l][h][m] = choose_budget_tokens(std::move(cand), sc, cfg_.visual_budget, cfg_.keep);
                }
            }
        }
        head_pos_.assign(n_layer, {});
        for (size_t l = 0; l < n_layer; ++l) {
            src[l].resize(layers_[l].other.size());
            head_pos_[l].resize(layers_[l].other.size());
        }
        std::vector<uint8_t> placed(n_image, 0);
        for (int64_t j = 0; j < n_slots; ++j) {
            if (!drop[j]) {
                for (size_t l = 0; l < n_layer; ++l) {
                    for (size_t h = 0; h < src[l].size(); ++h) {
                        src[l][h].push_back(static_cast<int32_t>(j));
                        head_pos_[l][h].push_back(pos_[j]);
                    }
                }
                pos.push_back(pos_[j]);
                until.push_back(until_[j]);
                image.push_back(image_[j]);
                continue;
            }
            const int32_t m = image_[j];
            if (placed[m]) continue;
            placed[m] = 1;
            // Budget slots: positions differ per head; the shared position (used for causal masks
            // only, every later query comes after it) is the last token of the prompt.
            int64_t n_kept = 0;
            for (int64_t k = 0; k < n_slots; ++k) n_kept += drop[k] && image_[k] == m;
            n_kept = std::min<int64_t>(n_kept, cfg_.visual_budget);
            for (int64_t b = 0; b < n_kept; ++b) {
                for (size_t l = 0; l < n_layer; ++l) {
                    for (size_t h = 0; h < src[l].size(); ++h) {
                        const int32_t s = chosen[l][h][m][b];
                        src[l][h].push_back(s);
                        head_pos_[l][h].push_back(pos_[s]);
                    }
                }
                pos.push_back(static_cast<int32_t>(p1 - 1));
                until.push_back(kForever);
                image.push_back(-1);
            }
        }
        compact(src, static_cast<int64_t>(pos.size()));
        selected_ = true;
    }
    pos_ = std::move(pos);
    until_ = std::move(until);
    image_ = std::move(image);
}

KVStats SparseKVCache::stats(int64_t n_past) const {
    KVStats s;
    s.sparse = true;
    s.n_tokens = n_past;
    s.compact_tokens = n_compact();
    for (int64_t l = 0; l < static_cast<int64_t>(layers_.size()); ++l) {
        const Layer& L = layers_[l];
        s.core_kv_heads.push_back(static_cast<int64_t>(L.core.size()));
        s.other_kv_heads.push_back(static_cast<int64_t>(L.other.size()));
        s.full_bytes += L.core.size() * n_past * row_bytes(l);
        s.compact_bytes += L.other.size() * s.compact_tokens * row_bytes(l);
    }
    s.full_allocated = full_.nbytes();
    s.compact_allocated = compact_.nbytes();
    return s;
}

}  // namespace corehead
