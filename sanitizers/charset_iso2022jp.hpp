// ISO-2022-JP codec with CP932 semantics, the way Japanese Windows and carrier mail actually uses it.
// Decoding: JIS X 0208 pairs are translated arithmetically to Shift_JIS pairs and decoded with
// ICU's Microsoft CP932 table (ibm-943_P15A-2003 = "windows-31j"), so NEC row 13 (①, ㈱, Ⅲ, ㍉),
// NEC-selected IBM extensions (rows 89-92) and, leniently, 8-bit "rows" up to 120 (IBM
// extensions 115-119 and user-defined rows, as some converters emit them) decode like Outlook
// shows them; glibc's ISO-2022-JP rejects all of these. Half-width katakana via ESC ( I, SO/SI
// and raw 8-bit JIS8 bytes; ESC ( J is read as ASCII (CP932 semantics); the ISO-2022-JP-2
// designations (JIS X 0212, GB 2312, KS C 5601, ISO-8859-1/-7 via G2 + ESC N) are decoded too.
// Encoding: strict JIS X 0208 with CP932's NEC row 13 and rows 89-92 (what CP50221 and WHATWG's
// decoder accept), half-width katakana folded to full width, every line and the output ending in
// ASCII. Anything else is unrepresentable.
// Invariants: linear time; output valid UTF-8 (decode); never emits 8-bit bytes (encode).
// Threading: the encoder's Unicode -> JIS table is built once behind a function-local static
// (thread-safe initialisation); everything else is per call.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::sanitize::detail {

// True if the bytes contain an ISO-2022-JP designation (ESC $ B, ESC $ @, ESC ( I, ESC ( J,
// ESC $ ( D/O/Q). ISO-2022-KR/CN designate G1 with ')' and are not matched.
bool contains_iso2022jp_escape(std::string_view bytes) noexcept;

// Decodes ISO-2022-JP(-1/-2/-3 subset, CP5022x) and appends UTF-8 to `out`; returns the number of
// replaced (undecodable) sequences. 8-bit bytes outside a double-byte mode are passed through as
// CP932 (JIS8 half-width katakana and stray Shift_JIS); the caller decides whether that is trusted.
std::size_t decode_iso2022jp_append(std::string_view bytes, std::string& out);

// Strict encoder; nullopt if the UTF-8 is invalid or any character cannot be written in JIS X 0208
// (+ NEC row 13, rows 89-92) or ASCII. ESC, SO and SI in the input are unrepresentable (they would
// corrupt the shift state of the receiver).
std::optional<std::string> encode_iso2022jp(std::string_view utf8);

// Like encode_iso2022jp, but cut into chunks, each a complete ISO-2022-JP string ending in ASCII
// and holding only whole characters (RFC 2047 words for ISO-2022-JP must each end in ASCII,
// RFC 1468). The first chunk holds at most first_max encoded bytes, the others rest_max; both are
// raised to 8 (ESC $ B, one pair, ESC ( B) so every chunk can hold a character.
std::optional<std::vector<std::string>> encode_iso2022jp_chunks(std::string_view utf8, std::size_t first_max,
                                                                std::size_t rest_max);

}  // namespace mukai::sanitize::detail
