// Byte-level BPE (tokenizer.ggml.model = "gpt2") and gemma4's SPM-style BPE
// ("gemma4": raw UTF-8 with "▁" for spaces and <0xAB> byte fallback). Text is split into
// words by the pre-tokenizer that tokenizer.ggml.pre names, each word is mapped to GPT-2's
// byte alphabet (gpt2 only), and adjacent symbols are merged in order of merge rank.
#include <queue>

#include "corehead/error.h"
#include "gguf.h"
#include "gguf/gguf_file.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_impl.h"

namespace corehead::tok {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

struct Merge {
    int32_t rank;
    token_id result;  // -1 when the merged text is not itself a token
};

inline uint64_t pair_key(token_id a, token_id b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

class BpeVocab final : public VocabBase {
public:
    BpeVocab(const GgufFile& file, const std::string& model, std::string pre,
             const pretok::Config& cfg)
        : VocabBase(file, VocabKind::Bpe, model, std::move(pre), /*add_space_prefix*/ false,
                    cfg.add_bos_default, cfg.no_bos),
          cfg_(cfg) {
        load_merges(file);
        build_caches();
    }

protected:
    void tokenize_text(std::string_view text, bool after_special, std::vector<token_id>& out) const override;
    std::string normal_piece(token_id id) const override;

private:
    void load_merges(const GgufFile& file);
    void merge_word(std::string_view word, std::vector<token_id>& out) const;

    pretok::Config cfg_;
    // Merges are keyed by the ids of their two sides: HF BPE vocabularies contain both
    // sides of every merge, and ids avoid building strings in the merge loop.
    std::unordered_map<uint64_t, Merge> merges_;
};

void BpeVocab::load_merges(const GgufFile& file) {
    size_t n = 0;
    const int64_t mi = file.find_array("tokenizer.ggml.merges", GGUF_TYPE_STRING, n);
    if (mi < 0) throw ModelError(file.path() + ": BPE tokenizer without merges (tokenizer.ggml.merges)");
    merges_.reserve(n);
    std::string joined;
    for (size_t i = 0; i < n; ++i) {
        const std::string_view m = gguf_get_arr_str(file.gguf(), mi, i);
        const size_t sp = m.find(' ', 1);  // a side may itself start with a space
        if (sp == std::string_view::npos) continue;
        const std::string_view a = m.substr(0, sp), b = m.substr(sp + 1);
        const token_id ia = find(a), ib = find(b);
        if (ia < 0 || ib < 0) continue;
        joined.assign(a);
        joined.append(b);
        merges_.emplace(pair_key(ia, ib), Merge{static_cast<int32_t>(i), find(joined)});  // first rank wins
    }
}

void BpeVocab::tokenize_text(std::string_view raw, bool /*after_special*/, std::vector<token_id>& out) const {
    std::string escaped;
    if (cfg_.escape_whitespace) {
        escaped.reserve(raw.size() + raw.size() / 4);
        for (char ch : raw) {
            if (ch == ' ') {
                escaped.append(kSpaceMark);
            } else {
                escaped.push_back(ch);
            }
        }
        raw = escaped;
    }
    const std::vector<uint32_t> cpts = unicode::decode_utf8(raw);
    std::string word;
    for (const auto& [b, e] : pretok::split(cpts, cfg_.stages)) {
        word.clear();
        if (cfg_.byte_encode) {
            std::string utf8;
            for (size_t i = b; i < e; ++i) unicode::append_utf8(utf8, cpts[i]);
            for (char ch : utf8) word += unicode::byte_to_unicode(static_cast<uint8_t>(ch));
        } else {
            for (size_t i = b; i < e; ++i) unicode::append_utf8(word, cpts[i]);
        }
        merge_word(word, out);
    }
}

struct Symbol {
    int prev, next;
    size_t off, n;  // byte span in the word; n == 0 once merged into its left neighbour
    token_id id;    // -1 when the span is not a token
};

struct Bigram {
    int32_t rank;
    int left, right;
    token_id left_id, right_id;  // ids when queued: a change means the pair is stale
};

// Lowest rank first; on ties the leftmost pair.
struct BigramOrder {
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
};

void BpeVocab::merge_word(std::string_view word, std::vector<token_id>& out) const {
    if (word.empty()) return;
    // llama-3 style vocabularies take a word that is a token as is, even if the merges
    // would split it differently; gemma4 does the same for runs of newlines.
    const bool all_newlines = word.find_first_not_of('\n') == std::string_view::npos;
    if (cfg_.ignore_merges || (model_ == "gemma4" && all_newlines)) {
        const token_id id = find(word);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }

    std::vector<Symbol> sym;
    sym.reserve(word.size());
    for (size_t off = 0; off < word.size();) {
        const size_t n = std::min(unicode::utf8_len(word[off]), word.size() - off);
        const int idx = static_cast<int>(sym.size());
        sym.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n, find(word.substr(off, n))});
        off += n;
    }

    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    const auto try_add = [&](int l, int r) {
        if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0) return;
        const auto it = merges_.find(pair_key(sym[l].id, sym[r].id));
        if (it == merges_.end()) return;
        queue.push({it->second.rank, l, r, sym[l].id, sym[r].id});
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = sym[b.left];
        Symbol& r = sym[b.right];
        if (l.n == 0 || r.n == 0 || l.id != b.left_id || r.id != b.right_id) continue;  // stale
        l.id = merges_.at(pair_key(b.left_id, b.right_id)).result;
        merge_symbols(sym, b.left, b.right, try_add);
    }

    for (int i = 0; i != -1; i = sym[i].next) {
        if (sym[i].id >= 0) {
            out.push_back(sym[i].id);
            continue;
        }
        // No token for this span: one token per byte if the vocabulary has them.
        for (char ch : word.substr(sym[i].off, sym[i].n)) {
            const token_id bt = cfg_.byte_encode ? find(std::string_view(&ch, 1)) : byte_token(static_cast<uint8_t>(ch));
            if (bt >= 0) out.push_back(bt);
        }
    }
}

std::string BpeVocab::normal_piece(token_id id) const {
    const std::string& t = text_[id];
    if (cfg_.escape_whitespace) {
        std::string out;
        for (size_t i = 0; i < t.size();) {
            if (t.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
                out.push_back(' ');
                i += kSpaceMark.size();
            } else {
                out.push_back(t[i++]);
            }
        }
        return out;
    }
    // Byte-level alphabet back to bytes; a code point outside it is kept as UTF-8.
    std::string out;
    for (uint32_t c : unicode::decode_utf8(t)) {
        const int b = unicode::unicode_to_byte(c);
        if (b >= 0) {
            out.push_back(static_cast<char>(b));
        } else {
            unicode::append_utf8(out, c);
        }
    }
    return out;
}

}  // namespace

std::unique_ptr<Vocab> make_bpe_vocab(const GgufFile& file, const std::string& model) {
    std::string pre;
    if (model == "gemma4") {
        pre = "gemma4";
    } else if ((pre = file.find_str("tokenizer.ggml.pre").value_or("")).empty()) {
        pre = "default";
    }
    pretok::Config cfg;
    if (!pretok::config_for(pre, cfg)) {
        throw ModelError(file.path() + ": pre-tokenizer '" + pre + "' (tokenizer.ggml.pre) is not supported");
    }
    return std::make_unique<BpeVocab>(file, model, std::move(pre), cfg);
}

}  // namespace corehead::tok
