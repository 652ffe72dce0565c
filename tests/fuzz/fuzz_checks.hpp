// Small, independent checks shared by the libFuzzer targets: a strict UTF-8 decoder (RFC 3629:
// no overlongs, no surrogates, nothing above U+10FFFF) written here rather than taken from the
// library under test, and an abort that names the broken invariant.
// Threading: pure functions.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace mukai::fuzz {

[[noreturn]] inline void fail(const char* target, const char* what) {
  std::fprintf(stderr, "%s: invariant broken: %s\n", target, what);
  std::abort();
}

// Decodes strictly valid UTF-8 into code points; false if `s` is not valid UTF-8.
inline bool decode_utf8(std::string_view s, std::vector<char32_t>* out = nullptr) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    char32_t cp = 0;
    std::size_t len = 0;
    char32_t min = 0;
    if (b0 < 0x80) {
      cp = b0;
      len = 1;
    } else if ((b0 & 0xE0) == 0xC0) {
      cp = b0 & 0x1F;
      len = 2;
      min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      cp = b0 & 0x0F;
      len = 3;
      min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      cp = b0 & 0x07;
      len = 4;
      min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (len > 1 && cp < min) return false;  // overlong
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    if (out != nullptr) out->push_back(cp);
    i += len;
  }
  return true;
}

inline bool is_c0_c1_or_del(char32_t c) { return c < 0x20 || (c >= 0x7F && c <= 0x9F); }

// Bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder the text after them.
inline bool is_bidi_reordering(char32_t c) {
  return (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

}  // namespace mukai::fuzz
