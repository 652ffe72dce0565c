// Display width of UTF-8 text (see text_width.hpp). East Asian Width and general category come
// from ICU so the answer follows the Unicode version the rest of the engine uses; decoding is the
// engine's shared strict UTF-8 step (charset_utf8.hpp).
// Threading: stateless.
#include "sanitizers/text_width.hpp"

#include <unicode/uchar.h>

#include "sanitizers/charset_utf8.hpp"

namespace mukai::sanitize {

std::size_t code_point_width(char32_t cp) noexcept {
  if (cp >= 0x20 && cp < 0x7F) return 1;  // the common case, without a table lookup
  const auto c = static_cast<UChar32>(cp);
  if (cp == 0x00AD) return 1;  // soft hyphen is Cf, but terminals (and glibc wcwidth) show a hyphen
  const auto mask = U_GET_GC_MASK(c);
  if (mask & (U_GC_MN_MASK | U_GC_ME_MASK | U_GC_CF_MASK | U_GC_CC_MASK)) return 0;
  if (cp >= 0x1160 && cp <= 0x11FF) return 0;  // conjoining jungseong/jongseong
  switch (u_getIntPropertyValue(c, UCHAR_EAST_ASIAN_WIDTH)) {
    case U_EA_WIDE:
    case U_EA_FULLWIDTH:
    case U_EA_AMBIGUOUS:
      return 2;
    default:
      return 1;
  }
}

std::size_t display_width(std::string_view utf8) noexcept {
  std::size_t width = 0;
  std::size_t i = 0;
  while (i < utf8.size()) {
    const auto b = static_cast<unsigned char>(utf8[i]);
    if (b < 0x80) {
      width += (b >= 0x20 && b < 0x7F) ? 1 : 0;
      ++i;
      continue;
    }
    const detail::utf8_step step = detail::next_utf8(utf8, i);
    width += step.valid ? code_point_width(step.cp) : step.length;  // one column per bad byte
    i += step.length;
  }
  return width;
}

}  // namespace mukai::sanitize
