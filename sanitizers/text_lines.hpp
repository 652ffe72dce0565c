// Line splitting for the scanners that walk a text body line by line (cut_encoded_blobs on UTF-8
// text, find_yenc_blocks on a part's raw bytes). A line ends at LF, CRLF or a lone CR, as mail
// programs read them; the bytes are never interpreted otherwise, so any charset that keeps CR and
// LF as themselves (all ASCII-compatible ones, ISO-2022-JP, Shift_JIS, EUC-JP) splits correctly.
// Invariants: the work per call is proportional to the line's length (never to the rest of the
// text), so a walk over all lines is linear.
// Threading: pure functions.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string_view>

namespace mukai::sanitize {

struct line_view {
  std::size_t begin = 0;  // first byte
  std::size_t end = 0;    // one past the last content byte (terminator excluded)
  std::size_t next = 0;   // first byte of the following line (== size at the end)
};

// The line starting at `pos`. Why memchr in windows: find_first_of("\r\n") calls memchr on the
// two-byte set once per text byte (a third of cut_encoded_blobs' time). Two memchr calls per window
// (LF, then CR before it) are vectorised; the window keeps the work per line proportional to the
// line's length even in text without LF, where a search for LF alone would run to the end of the
// text from every line.
inline line_view line_at(std::string_view s, std::size_t pos) noexcept {
  constexpr std::size_t window = 512;
  const char* const data = s.data();
  for (std::size_t from = pos; from < s.size();) {
    const std::size_t n = std::min(window, s.size() - from);
    const auto* lf = static_cast<const char*>(std::memchr(data + from, '\n', n));
    const std::size_t lf_len = lf ? static_cast<std::size_t>(lf - (data + from)) : n;
    const auto* cr = static_cast<const char*>(std::memchr(data + from, '\r', lf_len));
    if (cr) {
      const std::size_t k = static_cast<std::size_t>(cr - data);
      if (k + 1 < s.size() && s[k + 1] == '\n') return {pos, k, k + 2};
      return {pos, k, k + 1};
    }
    if (lf) {
      const std::size_t k = static_cast<std::size_t>(lf - data);
      return {pos, k, k + 1};
    }
    from += n;
  }
  return {pos, s.size(), s.size()};
}

inline std::string_view line_content(std::string_view s, const line_view& l) noexcept {
  return s.substr(l.begin, l.end - l.begin);
}

// `v` without trailing spaces and TABs (keyword and marker lines are compared after this).
inline std::string_view rtrim_blanks(std::string_view v) noexcept {
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

}  // namespace mukai::sanitize
