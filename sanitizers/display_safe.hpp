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

}  // namespace mukai::sanitize
