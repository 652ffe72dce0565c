// Makes an untrusted UTF-8 string (a filename, a subject, an address) safe to show in a notice,
// a terminal or a log line: nothing in the result can move the cursor, start an escape sequence,
// reorder text (bidi overrides: "invoice<U+202E>txt.exe" shows as "invoice" + "exe.txt"), hide
// characters (zero-width, BOM, tags) or break the line.
// Invariants: output is valid UTF-8 with no C0/C1 control character (not even TAB or LF) and no
// format character; at most max_chars code points including the final "…"; an escape such as
// "<U+202E>" is never cut; linear time.
// Threading: pure function.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mukai::sanitize {

// * invalid UTF-8 -> U+FFFD;
// * CR, LF, TAB -> one space each;
// * other C0 controls, DEL, C1 controls -> "<U+001B>" (visible, greppable, copy-paste safe);
// * bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), zero-width and other
//   format characters (U+200B-U+200D, U+2060-U+2064, U+FEFF, U+00AD, tags U+E0000-U+E007F:
//   every Unicode Cf character), line/paragraph separators (U+2028/U+2029), noncharacters and the
//   blank-looking Hangul fillers (U+115F, U+1160, U+3164, U+FFA0) -> "<U+XXXX>";
// * longer than max_chars code points -> cut at a character (or escape) boundary and ended with
//   "…" (U+2026), the whole result then being at most max_chars code points.
[[nodiscard]] std::string display_safe(std::string_view utf8, std::size_t max_chars = 200);

// The bidi controls that reorder text: the embeddings and overrides U+202A-U+202E (LRE, RLE, PDF,
// LRO, RLO) and the isolates U+2066-U+2069 (LRI, RLI, FSI, PDI). One of them changes the display
// order of everything after it up to the end of the paragraph ("Trojan Source"; a link or a file
// name shown as another). display_safe() escapes them; body text (html_to_text, the engine's text
// cleaning) drops them, so a reader sees characters in the order they were written. The marks
// U+200E, U+200F and U+061C are not in this set: real right-to-left text uses them, and they only
// set the direction of the neutral characters next to them.
[[nodiscard]] constexpr bool is_bidi_reordering_control(char32_t c) noexcept {
  return (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

// For byte-wise cleaners of valid UTF-8: 3 if s[i] starts the encoding of such a control, else 0.
[[nodiscard]] constexpr std::size_t bidi_reordering_control_at(std::string_view s, std::size_t i) noexcept {
  if (i + 2 >= s.size() || static_cast<unsigned char>(s[i]) != 0xE2) return 0;
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  const auto b2 = static_cast<unsigned char>(s[i + 2]);
  if ((b1 & 0xC0) != 0x80 || (b2 & 0xC0) != 0x80) return 0;
  const char32_t c = 0x2000 | (static_cast<char32_t>(b1 & 0x3F) << 6) | (b2 & 0x3F);
  return is_bidi_reordering_control(c) ? 3 : 0;
}

}  // namespace mukai::sanitize
