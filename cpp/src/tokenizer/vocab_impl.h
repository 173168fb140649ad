// Internals shared by the SPM and BPE vocabularies: the token table loaded from GGUF,
// special-token partitioning, pieces/detokenization. Not part of the public interface.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tokenizer/vocab.h"

namespace corehead::tok {

// Token attributes (bit set). The GGUF stores one token_type per token; name-based fixups
// (EOG texts, phi-3 rstrip, ...) add bits on top, as the reference implementation does.
enum TokenAttr : uint32_t {
    ATTR_UNDEFINED = 0,
    ATTR_UNKNOWN = 1u << 0,
    ATTR_UNUSED = 1u << 1,
    ATTR_NORMAL = 1u << 2,
    ATTR_CONTROL = 1u << 3,
    ATTR_USER_DEFINED = 1u << 4,
    ATTR_BYTE = 1u << 5,
    ATTR_LSTRIP = 1u << 6,  // swallow whitespace before the token when partitioning specials
    ATTR_RSTRIP = 1u << 7,  // ... and after it
};

// A piece of the input after special-token partitioning: a token id, or a text span.
struct Fragment {
    token_id id;  // -1 for text
    size_t begin;
    size_t end;
};

enum class VocabKind { Spm, Bpe };

// Finds special-token texts in input: a byte trie over the candidate tokens.
class SpecialMatcher {
public:
    void build(const std::vector<std::string>& texts, const std::vector<token_id>& ids);
    // Calls f(id, len) for every candidate token that occurs at text[pos].
    template <class F>
    void each_at(std::string_view text, size_t pos, F&& f) const;
    bool empty() const { return nodes_.size() <= 1; }

private:
    struct Node {
        std::unordered_map<uint8_t, int32_t> next;
        token_id id = -1;
    };
    std::vector<Node> nodes_;
};

template <class F>
void SpecialMatcher::each_at(std::string_view text, size_t pos, F&& f) const {
    if (nodes_.empty()) return;
    int32_t n = 0;
    for (size_t i = pos; i < text.size(); ++i) {
        const auto& nx = nodes_[n].next;
        const auto it = nx.find(static_cast<uint8_t>(text[i]));
        if (it == nx.end()) return;
        n = it->second;
        if (nodes_[n].id >= 0) f(nodes_[n].id, i + 1 - pos);
    }
}

class VocabBase : public Vocab {
public:
    VocabBase(const GgufFile& file, VocabKind kind, std::string model, std::string pre,
              bool add_space_prefix_default, bool add_bos_default, bool no_bos);

    std::vector<token_id> tokenize(std::string_view text, bool add_special, bool parse_special) const override;
    std::string detokenize(const std::vector<token_id>& ids, bool remove_special, bool unparse_special) const override;
    std::string token_to_piece(token_id id, bool unparse_special) const override;

    int32_t n_tokens() const override { return static_cast<int32_t>(text_.size()); }
    std::string type_name() const override { return kind_ == VocabKind::Spm ? "spm" : "bpe"; }
    std::string pre_name() const override { return pre_; }
    token_id bos() const override { return bos_; }
    token_id eos() const override { return eos_; }
    bool is_eog(token_id id) const override { return eog_.count(id) != 0; }
    bool is_control(token_id id) const override { return valid(id) && (attr_[id] & ATTR_CONTROL); }
    const std::string& token_text(token_id id) const override;
    token_id find(std::string_view text) const override;

protected:
    // Tokenizes one text fragment (no special tokens inside); `after_special` is true at the
    // start of the input and right after a special token (SPM's dummy-prefix rule).
    virtual void tokenize_text(std::string_view text, bool after_special, std::vector<token_id>& out) const = 0;
    // Text of a NORMAL token as it appears in output.
    virtual std::string normal_piece(token_id id) const = 0;

    bool valid(token_id id) const { return id >= 0 && id < static_cast<token_id>(text_.size()); }
    // "<0xAB>" -> 0xAB; -1 when the text is not a byte token.
    static int parse_byte_token(const std::string& text);
    // Token for one raw byte: "<0xAB>", else the single-byte string; -1 when neither exists.
    token_id byte_token(uint8_t b) const;

    std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
    // Builds the special-token matchers and the piece cache; derived constructors call it
    // last because pieces depend on the derived normal_piece().
    void build_caches();

    VocabKind kind_;
    std::string model_, pre_;
    std::vector<std::string> text_;
    std::vector<float> score_;
    std::vector<uint32_t> attr_;
    std::unordered_map<std::string_view, token_id> by_text_;  // views into text_
    token_id bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1;
    bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
    std::unordered_set<token_id> eog_;
    SpecialMatcher special_all_;   // control + user-defined + unknown (parse_special)
    SpecialMatcher special_user_;  // user-defined only (always split out, like HF added tokens)
    std::vector<std::string> piece_cache_;  // token_to_piece(id, true)

private:
    void load_tokens(const GgufFile& file);
    void load_special_ids(const GgufFile& file, VocabKind kind, bool no_bos);
    void apply_name_fixups(const GgufFile& file);
    std::string piece_uncached(token_id id) const;
};

std::unique_ptr<Vocab> make_spm_vocab(const GgufFile& file);
std::unique_ptr<Vocab> make_bpe_vocab(const GgufFile& file, const std::string& model);

// One step of the bigram merge loop that SentencePiece-BPE and byte-level BPE share: symbol
// `right` (the neighbour of `left`) joins `left` in the linked list of symbols (n == 0 marks a
// merged one), and the two new neighbour pairs are offered to `try_add(l, r)`.
template <typename Symbol, typename TryAdd>
void merge_symbols(std::vector<Symbol>& sym, int left, int right, const TryAdd& try_add) {
    Symbol& l = sym[left];
    Symbol& r = sym[right];
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = left;
    try_add(l.prev, left);
    try_add(left, l.next);
}

}  // namespace corehead::tok
