// Charset handling for mail text: bytes in a declared (often wrong or missing) charset -> UTF-8,
// canonical charset names, strict encoding for output, and detection. Japanese correctness first:
// every Shift_JIS label and the JIS X 0208 part of ISO-2022-JP are decoded with Microsoft CP932
// semantics (ICU's ibm-943_P15A-2003), because that is what Japanese senders (Windows, Outlook,
// carriers) mean and what recipients' Windows clients show; EUC-JP uses ICU's euc-jp-2007
// (CP51932-like: NEC row 13 and NEC-selected IBM extensions, plus JIS X 0212).
// Invariants: output UTF-8 is always valid; every undecodable byte sequence becomes U+FFFD and is
// counted; a result with replacements always carries a warning; work is linear in the input
// (detection looks at a bounded sample). Nothing is removed from the text: NUL and other control
// characters are kept (the caller decides what a given context may show). The only bytes dropped
// are a leading byte-order mark, which is an encoding signature rather than text.
// Threading: all functions are reentrant and may be called from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::sanitize {

struct decoded_text {
  std::string utf8;              // valid UTF-8 always (invalid input -> U+FFFD)
  std::string charset;           // canonical name actually used, e.g. "iso-2022-jp", "cp932", "utf-8"
  bool detected = false;         // label missing/wrong/unknown and the charset was inferred instead
  std::size_t replacements = 0;  // byte sequences that could not be decoded (each one U+FFFD)
  // Machine tokens for the report, e.g. "charset-detected:cp932 (declared: us-ascii)",
  // "charset-unknown:x-foo", "charset-replacements:3 (charset: utf-8)". Labels in tokens are
  // reduced to [a-z0-9._:+()-] and 40 characters: they come from the message.
  std::vector<std::string> warnings;
};

// Decodes `bytes` labelled `declared_label` (may be empty) to UTF-8. `hint_label` is a charset
// that is likely when the label is missing or wrong (the body's charset for header bytes, a site
// default); it only breaks ties, it never overrides a label that decodes cleanly.
// Rules, in order:
//  * no/unknown label: BOM, then pure ASCII (-> "us-ascii", or "iso-2022-jp" if it carries JIS
//    escapes), valid or mostly valid UTF-8, then detection (detect_charset, Japanese first).
//  * JIS escapes under an ASCII-based label (us-ascii, utf-8, latin1...) -> iso-2022-jp.
//  * valid multi-byte UTF-8 under a 7-bit or single-byte label (or under a legacy multi-byte label
//    that needed replacements, or with 4+ multi-byte sequences) -> utf-8.
//  * a label whose decode needed replacements, or a 7-bit label (us-ascii, iso-2022-jp without
//    JIS escapes, utf-7) on 8-bit bytes: damaged text that still mostly decodes (UTF-8: twice as
//    many good sequences as bad; CJK: four good characters per bad one) keeps its label;
//    otherwise detection is tried and used if it needs fewer replacements. A Japanese label is
//    only ever replaced by another Japanese charset or UTF-8.
//  * every inferred charset adds "charset-detected:...", every replacement "charset-replacements:...".
[[nodiscard]] decoded_text decode_to_utf8(std::string_view bytes, std::string_view declared_label,
                                          std::string_view hint_label = {});

// Lower-case canonical name for a charset label, or "" for a missing, "unknown" (x-unknown,
// unknown-8bit, default...) or unsupported label. Quotes, white space and an RFC 2231 "*lang"
// suffix are stripped. Supersets are named for what we decode with:
//   shift_jis, sjis, x-sjis, ms_kanji, windows-31j, ms932, cp932...     -> "cp932"
//   euc-jp, x-euc-jp, ujis, eucjp-ms, cp51932...                         -> "euc-jp"
//   iso-2022-jp, csiso2022jp, jis, cp5022x, iso-2022-jp-1/-3            -> "iso-2022-jp"
//   iso-2022-jp-2                                                        -> "iso-2022-jp-2"
//   gb2312, gbk, cp936, euc-cn                                           -> "gbk" (decoded as GB18030)
//   euc-kr, ks_c_5601-1987, cp949, uhc                                   -> "cp949"
//   big5, cp950 -> "big5"; utf8 -> "utf-8"; latin1, iso_8859-1:1987 -> "iso-8859-1";
//   ascii, us, iso646-us, ansi_x3.4-1968 -> "us-ascii"; cp1252 -> "windows-1252"; and so on.
// Other labels known to ICU map to ICU's MIME/IANA name, lower-cased; labels only glibc iconv
// knows (e.g. iso-8859-16) to themselves, lower-cased.
[[nodiscard]] std::string canonical_charset(std::string_view label);

// Strict encoding of valid UTF-8 into `charset` (any label canonical_charset accepts); nullopt if
// the input is not valid UTF-8, the charset is unsupported for output, or any character has no
// exact mapping. "iso-2022-jp" output is JIS X 0208 (plus CP932's NEC row 13 and NEC-selected IBM
// rows 89-92, which CP50221 and WHATWG decoders read) with ESC $ B / ESC ( B, returning to ASCII
// before every CR/LF and at the end; half-width katakana are written as their full-width forms
// (JIS X 0208 has none); ESC/SO/SI in the text are unrepresentable. For cp932/euc-jp/iso-2022-jp,
// the Unicode-correct spellings of the "wave dash" family (U+301C, U+2016, U+2212, U+00A2, U+00A3,
// U+00AC, U+2014) are accepted for their CP932 counterparts.
[[nodiscard]] std::optional<std::string> encode_from_utf8(std::string_view utf8, std::string_view charset);

// Guesses the charset of unlabelled bytes; canonical name or nullopt if nothing fits. BOMs and
// ISO-2022 escapes first, then pure ASCII ("us-ascii") and valid UTF-8, then a Japanese
// plausibility score for CP932/EUC-JP (kana, level-1 kanji, punctuation) combined with ICU's
// detector (ucsdet, over a bounded sample): a plausible Japanese reading wins unless ICU is
// confident of something else; `hint_label` wins ties.
[[nodiscard]] std::optional<std::string> detect_charset(std::string_view bytes,
                                                        std::string_view hint_label = {});

[[nodiscard]] bool is_valid_utf8(std::string_view s) noexcept;

}  // namespace mukai::sanitize
