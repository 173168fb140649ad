// Splits input text into special-token ids and plain text fragments.
//
// Semantics (the reference tokenizer's): special tokens are taken longest text first; each
// token claims its occurrences left to right in the text not yet claimed; a token with
// LSTRIP/RSTRIP also swallows the adjacent unclaimed whitespace. Instead of re-scanning the
// text once per special token (thousands of them in gemma/qwen vocabularies), we find
// every occurrence in one pass with a trie and then replay the claims in that order.
#include <algorithm>
#include <cctype>

#include "tokenizer/vocab_impl.h"

namespace corehead::tok {

namespace {
struct Occurrence {
    size_t pos;
    uint32_t len;
    token_id id;
};

// per byte: 0 = free text, 1 = claimed by a token, 2 = dropped whitespace (l/rstrip)
enum : uint8_t { FREE = 0, TOKEN = 1, DROPPED = 2 };
}  // namespace

std::vector<Fragment> VocabBase::partition(std::string_view text, bool parse_special) const {
    std::vector<Fragment> frags;
    if (text.empty()) return frags;
    const SpecialMatcher& m = parse_special ? special_all_ : special_user_;
    if (m.empty()) {
        frags.push_back({-1, 0, text.size()});
        return frags;
    }

    std::vector<Occurrence> occ;
    for (size_t pos = 0; pos < text.size(); ++pos) {
        m.each_at(text, pos, [&](token_id id, size_t len) { occ.push_back({pos, static_cast<uint32_t>(len), id}); });
    }
    if (occ.empty()) {
        frags.push_back({-1, 0, text.size()});
        return frags;
    }
    std::sort(occ.begin(), occ.end(), [](const Occurrence& a, const Occurrence& b) {
        if (a.len != b.len) return a.len > b.len;
        if (a.id != b.id) return a.id < b.id;
        return a.pos < b.pos;
    });

    std::vector<uint8_t> state(text.size(), FREE);
    std::vector<token_id> token_at(text.size(), -1);  // id at the first byte of a claim
    for (const Occurrence& o : occ) {
        const size_t end = o.pos + o.len;
        if (std::any_of(state.begin() + o.pos, state.begin() + end, [](uint8_t s) { return s != FREE; })) continue;
        std::fill(state.begin() + o.pos, state.begin() + end, TOKEN);
        token_at[o.pos] = o.id;
        const uint32_t a = attr_[o.id];
        if (a & ATTR_LSTRIP) {
            for (size_t i = o.pos; i > 0 && state[i - 1] == FREE && std::isspace(static_cast<unsigned char>(text[i - 1])); --i) {
                state[i - 1] = DROPPED;
            }
        }
        if (a & ATTR_RSTRIP) {
            for (size_t i = end; i < text.size() && state[i] == FREE && std::isspace(static_cast<unsigned char>(text[i])); ++i) {
                state[i] = DROPPED;
            }
        }
    }

    size_t i = 0;
    while (i < text.size()) {
        if (state[i] == TOKEN) {
            const token_id id = token_at[i];
            frags.push_back({id, i, i + text_[id].size()});
            i += text_[id].size();
        } else if (state[i] == DROPPED) {
            ++i;
        } else {
            size_t j = i;
            while (j < text.size() && state[j] == FREE) ++j;
            frags.push_back({-1, i, j});
            i = j;
        }
    }
    return frags;
}

}  // namespace corehead::tok
