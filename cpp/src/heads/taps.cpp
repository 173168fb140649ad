#include "heads/taps.h"

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

}  // namespace corehead
