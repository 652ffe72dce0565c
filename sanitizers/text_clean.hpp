// Body text as it is shown: the control-character cleaning every displayed text body goes through
// (plain text after decoding, HTML after conversion), and the "is this really text" measure the
// engine applies to a decoded text/plain part before showing it.
// Invariants: both are single linear passes; clean_text never grows its input by more than one
// byte per form feed and never emits a control other than TAB and LF.
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace mukai::sanitize {

// Control characters other than TAB and LF go; CRLF and lone CR become LF; FF becomes a blank line;
// C1 controls (U+0080..U+009F) go; the bidi controls that reorder text (is_bidi_reordering_control)
// go. `s` must be valid UTF-8 (decode_to_utf8, html_to_text), so these byte tests are code point
// tests.
[[nodiscard]] std::string clean_text(std::string_view s);

// Share of the characters of valid UTF-8 `utf8` that are control characters (other than TAB, LF,
// CR, FF and ESC) or U+FFFD: high means "not text". 0 for empty input.
[[nodiscard]] double junk_ratio(std::string_view utf8);

}  // namespace mukai::sanitize
