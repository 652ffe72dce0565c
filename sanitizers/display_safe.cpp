// display_safe(): see display_safe.hpp. Why escapes instead of deletion: an administrator looking
// at a quarantined "invoice<U+202E>txt.exe" must see that the name was crafted; silently dropping
// the override would hide the attack, keeping it would execute it in their terminal or viewer.
// Threading: pure function.
#include "sanitizers/display_safe.hpp"

#include <unicode/uchar.h>

#include <algorithm>

#include "sanitizers/charset_utf8.hpp"

namespace mukai::sanitize {
namespace {

bool must_escape(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return true;  // C0 (TAB/CR/LF handled first), DEL, C1
  if (c < 0xA0) return false;
  if (c == 0x115F || c == 0x1160 || c == 0x3164 || c == 0xFFA0) return true;  // Hangul fillers
  if ((c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE) return true;    // noncharacters
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_FORMAT_CHAR:          // bidi controls, ZWSP/ZWNJ/ZWJ, word joiner, BOM, soft hyphen, tags
    case U_LINE_SEPARATOR:       // U+2028
    case U_PARAGRAPH_SEPARATOR:  // U+2029
    case U_SURROGATE:            // cannot come out of next_utf8, kept for safety
      return true;
    default:
      break;
  }
  // The bidi and zero-width characters named in the contract, whatever the ICU data says.
  return c == 0x061C || (c >= 0x200B && c <= 0x200F) || is_bidi_reordering_control(c) ||
         (c >= 0x2060 && c <= 0x2064) || c == 0xFEFF;
}

void append_escape(std::string& out, char32_t c) {
  static constexpr char hex[] = "0123456789ABCDEF";
  char digits[8];
  int n = 0;
  do {
    digits[n++] = hex[c & 0xF];
    c >>= 4;
  } while (c != 0);
  while (n < 4) digits[n++] = '0';
  out += "<U+";
  while (n > 0) out.push_back(digits[--n]);
  out.push_back('>');
}

}  // namespace

std::string display_safe(std::string_view utf8, std::size_t max_chars) {
  std::string out;
  if (max_chars == 0) return out;
  out.reserve(std::min<std::size_t>(utf8.size(), max_chars * 4) + 8);
  std::size_t chars = 0;      // code points in `out`
  std::size_t cut_bytes = 0;  // length of `out` at the last boundary with chars <= max_chars - 1
  std::string unit;
  for (std::size_t i = 0; i < utf8.size();) {
    const detail::utf8_step st = detail::next_utf8(utf8, i);
    i += st.length;
    char32_t c = st.cp;
    unit.clear();
    std::size_t unit_chars = 1;
    if (c == '\r' || c == '\n' || c == '\t') c = ' ';
    if (must_escape(c)) {
      append_escape(unit, c);
      unit_chars = unit.size();  // ASCII only
    } else {
      detail::append_utf8(unit, c);
    }
    if (chars + unit_chars > max_chars) {
      // Does not fit: cut at the last boundary that leaves room for the ellipsis.
      out.resize(cut_bytes);
      detail::append_utf8(out, 0x2026);
      return out;
    }
    out += unit;
    chars += unit_chars;
    if (chars <= max_chars - 1) cut_bytes = out.size();
  }
  return out;
}

}  // namespace mukai::sanitize
