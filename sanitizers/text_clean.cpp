// Body text cleaning and the junk ratio (see text_clean.hpp).
// Why runs: a text body is almost all ordinary bytes, and appending them one push_back at a time
// was a tenth of the engine's time on a 100 KB body. The scan stops only at the bytes that need a
// decision (C0 controls other than TAB/LF, DEL, and the lead bytes 0xC2/0xE2 of C1 and bidi
// controls); everything between two such bytes is appended in one piece.
// Threading: pure functions; the tables are constant.
#include "sanitizers/text_clean.hpp"

#include <array>
#include <cstring>

#include "sanitizers/byte_scan.hpp"
#include "sanitizers/display_safe.hpp"

namespace mukai::sanitize {
namespace {

// Whether any of the eight bytes at p may need a decision (a superset of needs_decision: TAB and
// LF count too, which only sends such a word through the byte-wise loop).
bool word_may_need_decision(const char* p) noexcept {
  using namespace byte_scan;
  const std::uint64_t w = load8(p);
  return (any_byte_below(w, 0x20) | any_byte_equal(w, 0x7F) | any_byte_equal(w, 0xC2) |
          any_byte_equal(w, 0xE2)) != 0;
}

// Bytes clean_text must look at; every other byte is copied as it is.
constexpr std::array<bool, 256> needs_decision = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[static_cast<std::size_t>(c)] = c != '\t' && c != '\n';
  t[0x7F] = true;
  t[0xC2] = true;  // may start a C1 control (U+0080..U+009F)
  t[0xE2] = true;  // may start a bidi reordering control (U+202A..U+202E, U+2066..U+2069)
  return t;
}();

// Control characters junk_ratio counts: C0 other than TAB, LF, CR, FF, ESC; and DEL.
constexpr std::array<unsigned char, 256> junk_control = [] {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 0x20; ++c)
    t[static_cast<std::size_t>(c)] = c != '\t' && c != '\n' && c != '\r' && c != 0x0C && c != 0x1B;
  t[0x7F] = 1;
  return t;
}();

}  // namespace

std::string clean_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const std::size_t run = i;
    while (i + 8 <= n && !word_may_need_decision(s.data() + i)) i += 8;
    while (i < n && !needs_decision[static_cast<unsigned char>(s[i])]) ++i;
    out.append(s.data() + run, i - run);
    if (i == n) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      // CRLF: the LF is copied with the next run; a lone CR is a line end of its own.
      if (i + 1 >= n || s[i + 1] != '\n') out += '\n';
    } else if (c == 0x0C) {
      out += "\n\n";
    } else if (c < 0x20 || c == 0x7F) {
      // dropped
    } else if (c == 0xC2 && i + 1 < n && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      ++i;  // C1 controls (U+0080..U+009F)
    } else if (const std::size_t k = bidi_reordering_control_at(s, i)) {
      i += k - 1;
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

double junk_ratio(std::string_view utf8) {
  if (utf8.empty()) return 0;
  // A character starts at every byte that is no continuation byte.
  std::size_t junk = 0, continuation = 0;
  std::size_t i = 0;
  for (; i + 8 <= utf8.size(); i += 8) {
    using namespace byte_scan;
    const std::uint64_t w = load8(utf8.data() + i);
    continuation += static_cast<std::size_t>(continuation_bytes(w));
    if (any_byte_below(w, 0x20) | any_byte_equal(w, 0x7F)) {
      for (std::size_t k = i; k < i + 8; ++k) junk += junk_control[static_cast<unsigned char>(utf8[k])];
    }
  }
  for (; i < utf8.size(); ++i) {
    const auto c = static_cast<unsigned char>(utf8[i]);
    continuation += (c & 0xC0) == 0x80;
    junk += junk_control[c];
  }
  const std::size_t chars = utf8.size() - continuation;
  // U+FFFD (EF BF BD): the decoders' mark for bytes that were not text in the declared charset.
  const char* const begin = utf8.data();
  const char* const end = begin + utf8.size();
  for (const char* p = begin; p < end;) {
    const auto* hit = static_cast<const char*>(std::memchr(p, 0xEF, static_cast<std::size_t>(end - p)));
    if (!hit) break;
    if (end - hit > 2 && static_cast<unsigned char>(hit[1]) == 0xBF &&
        static_cast<unsigned char>(hit[2]) == 0xBD)
      ++junk;
    p = hit + 1;
  }
  return chars ? static_cast<double>(junk) / static_cast<double>(chars) : 0;
}

}  // namespace mukai::sanitize
