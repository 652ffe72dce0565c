// UTF-8 primitives shared by the charset, RFC 2047 and display-safety code: one strict decoding
// step (Unicode 15 table 3-7, "maximal subpart" error recovery), code point encoding, repair of
// invalid input, and UTF-16 -> UTF-8 for ICU output.
// Invariants: never reads past the view; a malformed sequence always advances by >= 1 byte, so
// every loop built on next_utf8() is linear; surrogates, overlongs and > U+10FFFF are invalid.
// Threading: pure functions, no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sanitizers/byte_scan.hpp"

namespace mukai::sanitize::detail {

inline constexpr char32_t replacement_char = 0xFFFD;

struct utf8_step {
  char32_t cp = replacement_char;  // the scalar value, or U+FFFD when !valid
  std::size_t length = 1;          // bytes consumed (>= 1 unless at end)
  bool valid = false;
};

// Decodes the sequence starting at s[i] (i < s.size()). An invalid sequence consumes its maximal
// subpart (the longest prefix that could still have become valid), as the Unicode Standard
// recommends and as WHATWG/ICU do, so replacement counts agree with other decoders.
inline utf8_step next_utf8(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return {b0, 1, true};
  std::size_t need = 0;
  char32_t cp = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // > U+10FFFF
  } else {
    return {replacement_char, 1, false};
  }
  std::size_t k = 1;
  for (; k <= need; ++k) {
    if (i + k >= s.size()) return {replacement_char, k, false};
    const unsigned char b = byte(i + k);
    const unsigned char min = (k == 1) ? lo : 0x80;
    const unsigned char max = (k == 1) ? hi : 0xBF;
    if (b < min || b > max) return {replacement_char, k, false};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, need + 1, true};
}

// Writes the UTF-8 form of `cp` (U+FFFD for a surrogate or a value above U+10FFFF) to dst, which
// has room for 4 bytes; returns the bytes written.
inline std::size_t encode_utf8(char* dst, char32_t cp) noexcept {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = replacement_char;
  if (cp < 0x80) {
    dst[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    dst[0] = static_cast<char>(0xC0 | (cp >> 6));
    dst[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    dst[0] = static_cast<char>(0xE0 | (cp >> 12));
    dst[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    dst[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  dst[0] = static_cast<char>(0xF0 | (cp >> 18));
  dst[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  dst[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  dst[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

// The first position at or after `i` where next_utf8() would report an invalid sequence when
// stepping from `i`, or s.size(). The same rules as next_utf8 (table 3-7), without computing code
// points, and ASCII eight bytes at a time: validation and repair of a 100 KB body step through it.
inline std::size_t valid_utf8_end(std::string_view s, std::size_t i) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  const auto cont = [&](std::size_t k) { return (p[k] & 0xC0) == 0x80; };
  while (i < n) {
    const unsigned char b0 = p[i];
    if (b0 < 0x80) {
      ++i;
      for (; i + 8 <= n; i += 8) {
        if (byte_scan::any_byte_8bit(byte_scan::load8(s.data() + i))) break;
      }
      continue;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      if (i + 1 < n && cont(i + 1)) {
        i += 2;
        continue;
      }
      return i;
    }
    if (b0 >= 0xE0 && b0 <= 0xEF) {
      const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;  // overlong
      const unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;  // surrogates
      if (i + 2 < n && p[i + 1] >= lo && p[i + 1] <= hi && cont(i + 2)) {
        i += 3;
        continue;
      }
      return i;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
      const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;  // overlong
      const unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;  // > U+10FFFF
      if (i + 3 < n && p[i + 1] >= lo && p[i + 1] <= hi && cont(i + 2) && cont(i + 3)) {
        i += 4;
        continue;
      }
      return i;
    }
    return i;
  }
  return n;
}

inline void append_utf8(std::string& out, char32_t cp) {
  char buf[4];
  out.append(buf, encode_utf8(buf, cp));
}

// Appends `in` to `out` with every invalid sequence replaced by U+FFFD; returns how many were
// replaced. Valid runs are copied in bulk, so the common all-valid case is a memcpy.
inline std::size_t append_utf8_repaired(std::string& out, std::string_view in) {
  std::size_t replaced = 0;
  std::size_t run_start = 0;
  std::size_t i = 0;
  while (i < in.size()) {
    i = valid_utf8_end(in, i);  // skips what the byte-wise walk below would accept
    if (i == in.size()) break;
    if (static_cast<unsigned char>(in[i]) < 0x80) {
      ++i;
      continue;
    }
    const utf8_step st = next_utf8(in, i);
    if (!st.valid) {
      out.append(in.substr(run_start, i - run_start));
      append_utf8(out, replacement_char);
      ++replaced;
      run_start = i + st.length;
    }
    i += st.length;
  }
  out.append(in.substr(run_start));
  return replaced;
}

// Incremental UTF-16 -> UTF-8 writer: ICU hands us UTF-16 in chunks and a surrogate pair may
// straddle two chunks. Lone surrogates become U+FFFD and are counted.
class utf16_to_utf8_writer {
 public:
  explicit utf16_to_utf8_writer(std::string& out) : out_(out) {}

  // Encodes into a local buffer appended in blocks: appending each character on its own (a
  // push_back per byte) was a large share of decoding a long ISO-2022-JP or Shift_JIS body.
  void write(const char16_t* p, std::size_t n) {
    char buf[1024];
    std::size_t len = 0;
    for (std::size_t k = 0; k < n; ++k) {
      if (len > sizeof buf - 8) {  // one unit writes at most 7 bytes (U+FFFD + a BMP character)
        out_.append(buf, len);
        len = 0;
      }
      const char16_t u = p[k];
      if (pending_high_ != 0) {
        if (u >= 0xDC00 && u <= 0xDFFF) {
          len += encode_utf8(
              buf + len, 0x10000 + ((static_cast<char32_t>(pending_high_) - 0xD800) << 10) + (u - 0xDC00));
          pending_high_ = 0;
          continue;
        }
        len += encode_utf8(buf + len, replacement_char);
        ++lone_surrogates_;
        pending_high_ = 0;
      }
      if (u >= 0xD800 && u <= 0xDBFF) {
        pending_high_ = u;
      } else if (u >= 0xDC00 && u <= 0xDFFF) {
        len += encode_utf8(buf + len, replacement_char);
        ++lone_surrogates_;
      } else {
        len += encode_utf8(buf + len, u);
      }
    }
    out_.append(buf, len);
  }

  // Call once at the end of the stream.
  void finish() {
    if (pending_high_ != 0) {
      append_utf8(out_, replacement_char);
      ++lone_surrogates_;
      pending_high_ = 0;
    }
  }

  std::size_t lone_surrogates() const noexcept { return lone_surrogates_; }

 private:
  std::string& out_;
  char16_t pending_high_ = 0;
  std::size_t lone_surrogates_ = 0;
};

}  // namespace mukai::sanitize::detail
