#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace corehead::unicode {

namespace {
#include "tokenizer/unicode_tables.inc"

constexpr uint32_t kFlagBits = 9;
constexpr uint32_t kFlagMask = (1u << kFlagBits) - 1;

// ASCII is by far the most common input: answer it from a small table.
struct AsciiFlags {
    std::array<uint16_t, 128> f{};
    AsciiFlags() {
        for (uint32_t c = 0; c < 128; ++c) {
            const uint32_t key = (c << kFlagBits) | kFlagMask;
            const uint32_t* it = std::upper_bound(kCptRanges, kCptRanges + kCptRangeCount, key);
            f[c] = static_cast<uint16_t>(*(it - 1) & kFlagMask);
        }
    }
};
}  // namespace

uint16_t cpt_flags(uint32_t cpt) {
    static const AsciiFlags ascii;
    if (cpt < 128) return ascii.f[cpt];
    if (cpt >= 0x110000) return CPT_UNASSIGNED;
    const uint32_t key = (cpt << kFlagBits) | kFlagMask;
    const uint32_t* it = std::upper_bound(kCptRanges, kCptRanges + kCptRangeCount, key);
    return static_cast<uint16_t>(*(it - 1) & kFlagMask);
}

std::vector<uint32_t> decode_utf8(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    const auto cont = [&](size_t i) { return i < s.size() && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80; };
    size_t i = 0;
    while (i < s.size()) {
        const uint8_t b = static_cast<uint8_t>(s[i]);
        if (b < 0x80) {
            out.push_back(b);
            i += 1;
        } else if ((b & 0xE0) == 0xC0 && cont(i + 1)) {
            out.push_back(((b & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu));
            i += 2;
        } else if ((b & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
            out.push_back(((b & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu));
            i += 3;
        } else if ((b & 0xF8) == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
            out.push_back(((b & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
                          (s[i + 3] & 0x3Fu));
            i += 4;
        } else {
            out.push_back(0xFFFD);
            i += 1;
        }
    }
    return out;
}

void append_utf8(std::string& out, uint32_t c) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x110000) {
        out.push_back(static_cast<char>(0xF0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        append_utf8(out, 0xFFFD);
    }
}

namespace {
// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100.. in byte order.
struct ByteMap {
    std::array<std::string, 256> to_unicode;
    std::array<uint32_t, 256> cpt{};
    ByteMap() {
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            cpt[b] = printable ? static_cast<uint32_t>(b) : next++;
            append_utf8(to_unicode[b], cpt[b]);
        }
    }
};
const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_map().to_unicode[b]; }

int unicode_to_byte(uint32_t c) {
    // Inverse of ByteMap: identity on printable bytes, U+0100..U+0143 for the rest.
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) return static_cast<int>(c);
    if (c < 0x100 || c >= 0x100 + 68) return -1;
    const auto& m = byte_map();
    for (int b = 0; b < 256; ++b) {
        if (m.cpt[b] == c) return b;
    }
    return -1;
}

}  // namespace corehead::unicode
