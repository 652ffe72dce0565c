// Terminal display width of UTF-8 text, as a Japanese reader's fixed-width font shows it.
// Used to align plain-text tables and heading underlines produced from HTML, so full-width text
// lines up with its column. Invariants: never reads past the view; any byte sequence is accepted
// (each byte of an invalid sequence counts one column: an upper bound on the replacement glyphs a
// viewer shows, so a column is never too narrow).
// Threading: pure functions over ICU's read-only property tables; safe from any thread.
#pragma once

#include <cstddef>
#include <string_view>

namespace mukai::sanitize {

// Columns for one code point: 0 for combining marks, format and control characters (and Hangul
// medial/final jamo, which join the preceding syllable); 2 for East Asian Wide, Fullwidth and
// Ambiguous (a Japanese context renders ambiguous characters such as ○ or ※ full-width); else 1.
[[nodiscard]] std::size_t code_point_width(char32_t cp) noexcept;

// Sum of code_point_width over the text; each invalid byte counts 1.
[[nodiscard]] std::size_t display_width(std::string_view utf8) noexcept;

}  // namespace mukai::sanitize
