// SentencePiece-style BPE (tokenizer.ggml.model = "llama": llama/mistral/gemma/phi-3).
// Spaces become U+2581 "▁", a dummy "▁" is prefixed to text that starts the input or
// follows a special token (add_space_prefix), then adjacent symbols are merged greedily by
// the score of the merged vocabulary entry; characters without a token fall back to
// <0xAB> byte tokens.
#include <algorithm>
#include <queue>

#include "gguf/gguf_file.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_impl.h"

namespace corehead::tok {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string out;
    out.reserve(s.size() + s.size() / 4);
    size_t i = 0;
    while (true) {
        const size_t j = s.find(from, i);
        if (j == std::string_view::npos) break;
        out.append(s, i, j - i);
        out.append(to);
        i = j + from.size();
    }
    out.append(s, i, std::string_view::npos);
    return out;
}

class SpmVocab final : public VocabBase {
public:
    SpmVocab(const GgufFile& file, std::string pre)
        : VocabBase(file, VocabKind::Spm, "llama", std::move(pre), /*add_space_prefix*/ true,
                    /*add_bos*/ true, /*no_bos*/ false) {
        build_caches();
    }

protected:
    void tokenize_text(std::string_view text, bool after_special, std::vector<token_id>& out) const override;
    std::string normal_piece(token_id id) const override { return replace_all(text_[id], kSpaceMark, " "); }
};

struct Symbol {
    int prev, next;
    size_t off, n;  // byte span in the escaped text; n == 0 once merged into its left neighbour
};

struct Bigram {
    float score;
    int left, right;
    size_t size;  // byte length when queued; a mismatch later means a side has changed
};

// Highest score first; on ties the leftmost pair (matches sentencepiece/llama.cpp).
struct BigramOrder {
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

void SpmVocab::tokenize_text(std::string_view raw, bool after_special, std::vector<token_id>& out) const {
    std::string text = (add_space_prefix_ && after_special) ? std::string(kSpaceMark) : std::string();
    text += replace_all(raw, " ", kSpaceMark);
    if (text.empty()) return;

    std::vector<Symbol> sym;
    sym.reserve(text.size());
    for (size_t off = 0; off < text.size();) {
        const size_t n = std::min(unicode::utf8_len(text[off]), text.size() - off);
        const int idx = static_cast<int>(sym.size());
        sym.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
        off += n;
    }

    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    const auto try_add = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        const std::string_view s(text.data() + sym[l].off, sym[l].n + sym[r].n);
        const token_id id = find(s);
        if (id < 0) return;
        queue.push({score_[id], l, r, s.size()});
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = sym[b.left];
        Symbol& r = sym[b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale
        merge_symbols(sym, b.left, b.right, try_add);
    }

    // Every merged symbol is a vocabulary entry; unmerged characters may not be.
    for (int i = 0; i != -1; i = sym[i].next) {
        const std::string_view s(text.data() + sym[i].off, sym[i].n);
        const token_id id = find(s);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (char ch : s) {
            const token_id bt = byte_token(static_cast<uint8_t>(ch));
            if (bt >= 0) {
                out.push_back(bt);
            } else if (unk_ >= 0) {
                out.push_back(unk_);
            }
        }
    }
}

}  // namespace

std::unique_ptr<Vocab> make_spm_vocab(const GgufFile& file) {
    return std::make_unique<SpmVocab>(file, file.find_str("tokenizer.ggml.pre").value_or(""));
}

}  // namespace corehead::tok
