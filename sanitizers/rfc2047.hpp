// RFC 2047 header text: decoding unstructured values ourselves, pre-normalising structured values
// so GMime can parse them safely, and encoding values for output.
// Why we decode ourselves: GMime 3.2.13 (Debian 12) has bug #133: an encoded word whose base64
// ends in padding swallows the encoded words after it, so "=?UTF-8?B?YQ==?= =?UTF-8?B?Yg==?="
// decodes to "a" and Japanese subjects split over several ISO-2022-JP words lose all but the first.
// Invariants: all functions are total (any bytes in, never throw on malformed input, linear time);
// results of the decode functions are valid UTF-8; encode_header_text never emits a CR or LF
// except in its own CRLF SP folds.
// Threading: reentrant, no shared state.
#pragma once

#include <string>
#include <string_view>

namespace mukai::sanitize {

// Decodes an unstructured header value (Subject, Comments, a filename) to display UTF-8.
//  * Unfolds (CRLF/LF/CR + WSP -> WSP).
//  * Encoded words are recognised anywhere (also glued to text, as senders produce them); B and Q;
//    a charset's RFC 2231 "*lang" suffix is ignored. Malformed words (bad syntax, invalid base64)
//    stay literal text; words in an unknown charset are decoded by detection.
//  * White space between adjacent encoded words is dropped; adjacent words in the same charset
//    have their decoded bytes joined before charset conversion, so a multi-byte character or an
//    ISO-2022-JP shift sequence split across words decodes correctly.
//  * Raw 8-bit bytes (and raw ISO-2022-JP escapes) outside words: UTF-8 if valid, else the charset
//    detect_charset() chooses with `charset_hint` as tie-breaker (Japanese first). One charset is
//    chosen for all raw bytes of the value.
//  * Control characters other than TAB (C0, DEL, C1, NUL) are removed (controls::keep: only NUL,
//    for values the report keeps as sent, such as filenames, that every display escapes); leading
//    and trailing white space is trimmed.
enum class header_controls { strip, keep };
[[nodiscard]] std::string decode_header_text(std::string_view raw_value, std::string_view charset_hint = {},
                                             header_controls controls = header_controls::strip);

// For structured headers (From/To/Cc/Reply-To, Content-Type/-Disposition parameters) that GMime
// must still parse, such that GMime's decoded text is decode_header_text's: each run of adjacent
// encoded words becomes ONE "=?UTF-8?B?...?=" word holding the run's decoded text (controls other
// than TAB removed; an empty run disappears), and runs of raw 8-bit bytes or ISO-2022-JP escapes
// become UTF-8 (decoded as in decode_header_text). GMime decodes a single word correctly, and
// base64 keeps quotes, commas and angle brackets inside decoded names from changing the structure.
// Everything else, folding included, is left as it was, except that:
//  * controls other than TAB, CR and LF are removed (ESC, NUL, DEL, C1: ESC would make a second
//    decoder read ISO-2022-JP);
//  * the result holds no encoded word but the ones written here: a '?' right after a literal '='
//    (new after decoding ISO-2022-JP or removing a control, or a "word" only GMime would accept)
//    becomes "=?UTF-8?Q?=3F?=" (with the '?', '=' and white space after it inside the word);
//  * two runs separated only by what decodes to white space (an ESC sequence, a control) become one
//    word holding that white space: our words are never adjacent (GMime bug #133).
// Result: valid UTF-8; decoding it gives what decoding raw_value gives.
[[nodiscard]] std::string normalize_encoded_words(std::string_view raw_value,
                                                  std::string_view charset_hint = {});

// Encodes a UTF-8 unstructured value for output (the text after "Name: ", without the final CRLF).
// Controls are neutralised first (CR, LF -> space; other C0/C1/DEL removed; invalid UTF-8 -> U+FFFD),
// so the result can never inject a header line.
//  * ASCII that fits in 76 columns (counting "Name: ") and contains no "=?" is returned as is;
//    longer ASCII is folded at white space (CRLF SP) when every line then fits (folding is
//    invisible to readers, B-encoding plain English is not); otherwise it is encoded.
//  * Otherwise B-encoded words of at most 75 characters, each holding only whole characters,
//    separated by CRLF SP, every line at most 76 columns. charset "utf-8" (default) gives UTF-8
//    words; "iso-2022-jp" gives ISO-2022-JP words each ending in ASCII (for old LGWAN clients),
//    falling back to UTF-8 when a character is not representable in ISO-2022-JP.
[[nodiscard]] std::string encode_header_text(std::string_view utf8,
                                             std::string_view header_name_for_first_line_length,
                                             std::string_view charset = "utf-8");

}  // namespace mukai::sanitize
