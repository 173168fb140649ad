#include "heads/taps.h"

#include <algorithm>

#include "corehead/error.h"
#include "heads/head_index.h"

namespace corehead {

ChunkTaps chunk_taps(const TapRequest& req, int64_t base, int64_t len) {
    ChunkTaps c;
    c.request = req;
    c.request.rows.clear();
    for (size_t i = 0; i < req.rows.size(); ++i) {
        const int64_t p = req.rows[i] - base;
        if (p < 0 || p >= len) continue;
        if (c.request.rows.empty()) c.first = i;
        c.request.rows.push_back(static_cast<int32_t>(p));
    }
    return c;
}

std::vector<int32_t> tap_positions(int64_t n, const std::vector<int32_t>& positions) {
    if (n == 0) throw InputError("the prompt is empty (no tokens)");
    std::vector<int32_t> pos = positions;
    if (pos.empty()) pos.push_back(static_cast<int32_t>(n - 1));
    for (int32_t& p : pos) {
        if (p < -n || p >= n) {
            throw InputError("position " + std::to_string(p) + " is out of range for a prompt of " + std::to_string(n) +
                             " tokens");
        }
        if (p < 0) p += static_cast<int32_t>(n);
    }
    std::sort(pos.begin(), pos.end());
    pos.erase(std::unique(pos.begin(), pos.end()), pos.end());
    return pos;
}

std::vector<int32_t> tap_layers(const std::vector<int32_t>& layers, int64_t n_layer, const std::vector<bool>& recurrent) {
    std::vector<bool> selected(n_layer, layers.empty());
    for (int32_t l : layers) {
        check_head_layer(l, n_layer, recurrent);
        selected[l] = true;
    }
    std::vector<int32_t> out;
    for (int64_t l = 0; l < n_layer; ++l) {
        const bool heads = l >= static_cast<int64_t>(recurrent.size()) || !recurrent[l];
        if (selected[l] && heads) out.push_back(static_cast<int32_t>(l));
    }
    return out;
}

TapCollector::TapCollector(int64_t n, const std::vector<int32_t>& positions, const std::vector<int32_t>& layers,
                           bool full_rows, const std::vector<float>& relevance, int64_t n_regions, int64_t n_layer,
                           int64_t n_head, const std::vector<bool>& recurrent) {
    const std::vector<int32_t> pos = tap_positions(n, positions);
    req_.rows = pos;
    req_.full_rows = full_rows;
    out_.layers = tap_layers(layers, n_layer, recurrent);
    if (!layers.empty() || !recurrent.empty()) {
        req_.layers.assign(n_layer, false);
        for (int32_t l : out_.layers) req_.layers[l] = true;
    }
    if (n_regions < 0 || (n_regions > 0 && static_cast<int64_t>(relevance.size()) != n_regions * n)) {
        throw InputError("relevance must hold n_regions x n_tokens values");
    }
    if (n_regions == 0 && !full_rows) throw InputError("ask for full rows, masses over a relevance matrix, or both");
    req_.n_regions = n_regions;
    req_.relevance = relevance;
    req_.n_kv_total = n;

    out_.positions = pos;
    out_.n_head = n_head;
    out_.n_kv = n;
    out_.n_regions = n_regions;
    const size_t L = out_.layers.size(), H = n_head, P = pos.size();
    if (full_rows) out_.rows.assign(L * H * P * n, 0.0f);
    if (n_regions > 0) out_.masses.assign(L * H * P * n_regions, 0.0f);
}

void TapCollector::add(size_t first, const TapResult& r) {
    const size_t H = out_.n_head, P = out_.positions.size(), n = out_.n_kv, n_regions = out_.n_regions;
    const size_t n_tap = req_.full_rows ? r.rows[0].size() / (H * r.n_kv) : r.masses[0].size() / (H * n_regions);
    for (size_t li = 0; li < r.layers.size(); ++li) {
        const size_t lo = std::lower_bound(out_.layers.begin(), out_.layers.end(), r.layers[li]) - out_.layers.begin();
        for (size_t h = 0; h < H; ++h) {
            for (size_t t = 0; t < n_tap; ++t) {
                const size_t dst = (lo * H + h) * P + first + t;
                if (req_.full_rows) {
                    const float* src = r.rows[li].data() + (h * n_tap + t) * r.n_kv;
                    std::copy(src, src + r.n_kv, out_.rows.begin() + dst * n);  // later keys stay 0 (masked)
                }
                if (n_regions > 0) {
                    const float* src = r.masses[li].data() + (h * n_tap + t) * n_regions;
                    std::copy(src, src + n_regions, out_.masses.begin() + dst * n_regions);
                }
            }
        }
    }
}

}  // namespace corehead
