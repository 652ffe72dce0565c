// libFuzzer: RFC 2047 header text (sanitizers/rfc2047.hpp) and display_safe (sanitizers/display_safe.hpp)
// on arbitrary header values. The first byte picks the options, the rest is the raw value. Any crash,
// leak, UB or hang is a bug; so is output that breaks the documented contract:
//  - decode_header_text: valid UTF-8, no control character but TAB (no C0, DEL, C1, NUL, CR, LF), no
//    leading/trailing white space, at most 3 output bytes per input byte (+16);
//  - normalize_encoded_words: valid UTF-8; no control but TAB, CR, LF; every "=?" starts one of its
//    own words ("=?UTF-8?B?" or "=?UTF-8?Q?", never two of them separated by white space only, which
//    GMime bug #133 would decode wrongly); decoding its result gives what decoding the raw value gives
//    (checked for unfolded values: unfolding is where the two legitimately differ in what they see;
//    U+FEFF ignored: each decoding step drops a leading byte-order mark);
//  - encode_header_text: ASCII, no CR/LF except CRLF WSP folds, no controls but TAB, encoded words
//    <= 75 characters, lines <= 76 columns (the first counting "Name: " when the name is short);
//    decoding it gives the value back (UTF-8 words: exactly, modulo the documented control removal,
//    trimming and a leading BOM; ISO-2022-JP words: no character lost to U+FFFD);
//  - display_safe: valid UTF-8, no C0/C1/DEL (not even TAB/LF), no format (Cf) or line/paragraph
//    separator, noncharacter, Hangul filler; at most max_chars code points; idempotent.
//
// Option byte: bits 0-2 charset hint ("", iso-2022-jp, utf-8, shift_jis, euc-jp, windows-1252, gbk,
// x-unknown); bits 3-4 header name for encoding (Subject, "", To, a 70-character name); bit 5 encode
// as iso-2022-jp (else utf-8); bits 6-7 display_safe max_chars 200 / 0 / 1 / 9.
#include <unicode/uchar.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sanitizers/display_safe.hpp"
#include "sanitizers/rfc2047.hpp"
#include "tests/fuzz/fuzz_checks.hpp"

namespace {

constexpr const char* target = "fuzz_rfc2047";

void require(bool ok, const char* what) {
  if (!ok) mukai::fuzz::fail(target, what);
}

std::vector<char32_t> code_points(std::string_view s, const char* what) {
  std::vector<char32_t> cps;
  require(mukai::fuzz::decode_utf8(s, &cps), what);
  return cps;
}

std::string_view trim_wsp(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// Without any U+FEFF, then trimmed of SP/TAB.
std::string without_feff(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s.substr(i, 3) == "\xEF\xBB\xBF") {
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return std::string(trim_wsp(out));
}

std::size_t count_replacements(const std::vector<char32_t>& cps) {
  std::size_t n = 0;
  for (const char32_t c : cps) n += c == 0xFFFD;
  return n;
}

void check_normalised(std::string_view n) {
  for (const char32_t c : code_points(n, "normalize_encoded_words: invalid UTF-8")) {
    require(c == '\t' || c == '\r' || c == '\n' || !mukai::fuzz::is_c0_c1_or_del(c),
            "normalize_encoded_words: control character in output");
  }
  std::size_t previous_end = std::string_view::npos;  // end of the previous word
  bool previous_b = false;
  for (std::size_t p = n.find("=?"); p != std::string_view::npos; p = n.find("=?", p)) {
    const std::string_view rest = n.substr(p);
    require(rest.starts_with("=?UTF-8?B?") || rest.starts_with("=?UTF-8?Q?"),
            "normalize_encoded_words: an encoded word it did not write");
    // Our words hold no '?' in their text: base64, or Q with '?' as =3F.
    const std::size_t end = n.find("?=", p + 10);
    require(end != std::string_view::npos, "normalize_encoded_words: unterminated word");
    if (previous_end != std::string_view::npos) {
      const std::string_view between = n.substr(previous_end, p - previous_end);
      // Adjacent words: only a Q word (no padding) directly before another, never white space only.
      require(between.empty() ? !previous_b : between.find_first_not_of(" \t\r\n") != std::string_view::npos,
              "normalize_encoded_words: adjacent words GMime bug #133 could decode wrongly");
    }
    previous_b = rest.starts_with("=?UTF-8?B?");
    previous_end = p = end + 2;
  }
}

void check_decoded(std::string_view in, std::string_view out) {
  for (const char32_t c : code_points(out, "decode_header_text: invalid UTF-8")) {
    require(c == '\t' || !mukai::fuzz::is_c0_c1_or_del(c), "decode_header_text: control character in output");
  }
  require(trim_wsp(out).size() == out.size(), "decode_header_text: leading or trailing white space");
  require(out.size() <= 3 * in.size() + 16, "decode_header_text: output more than 3x the input");
}

void check_display_safe(std::string_view in, std::size_t max_chars) {
  const std::string out = mukai::sanitize::display_safe(in, max_chars);
  const auto cps = code_points(out, "display_safe: invalid UTF-8");
  require(cps.size() <= max_chars, "display_safe: more than max_chars code points");
  for (const char32_t c : cps) {
    require(!mukai::fuzz::is_c0_c1_or_del(c), "display_safe: control character");
    const auto type = u_charType(static_cast<UChar32>(c));
    require(type != U_FORMAT_CHAR && type != U_LINE_SEPARATOR && type != U_PARAGRAPH_SEPARATOR &&
                type != U_SURROGATE,
            "display_safe: format character or separator");
    require(!((c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE), "display_safe: noncharacter");
    require(c != 0x115F && c != 0x1160 && c != 0x3164 && c != 0xFFA0, "display_safe: Hangul filler");
    require(!(c == 0x061C || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
              (c >= 0x2060 && c <= 0x2064) || (c >= 0x2066 && c <= 0x2069) || c == 0xFEFF),
            "display_safe: bidi or zero-width character");
  }
  require(mukai::sanitize::display_safe(out, max_chars) == out, "display_safe: not idempotent");
}

// What encode_header_text promises to keep of valid UTF-8: CR/LF become spaces, other controls but
// TAB go.
std::string neutralised(const std::vector<char32_t>& cps) {
  std::string v;
  for (const char32_t c : cps) {
    if (c == '\r' || c == '\n') {
      v.push_back(' ');
    } else if (c != '\t' && mukai::fuzz::is_c0_c1_or_del(c)) {
      continue;
    } else {
      append_utf8(v, c);
    }
  }
  return v;
}

void check_encoded(std::string_view utf8, std::string_view name, bool iso2022jp) {
  const std::string enc =
      mukai::sanitize::encode_header_text(utf8, name, iso2022jp ? "iso-2022-jp" : "utf-8");
  // Structure: ASCII; CR only in CRLF SP; no other controls but TAB.
  for (std::size_t i = 0; i < enc.size(); ++i) {
    const auto c = static_cast<unsigned char>(enc[i]);
    require(c < 0x80, "encode_header_text: non-ASCII output");
    if (c == '\r') {
      // A fold is CRLF before white space (RFC 5322 3.2.2): encoded words get CRLF SP, folded ASCII
      // breaks before the value's own SP or TAB.
      require(i + 2 < enc.size() && enc[i + 1] == '\n' && (enc[i + 2] == ' ' || enc[i + 2] == '\t'),
              "encode_header_text: CR not in a fold");
    } else if (c == '\n') {
      require(i > 0 && enc[i - 1] == '\r', "encode_header_text: bare LF");
    } else {
      require(c == '\t' || (c >= 0x20 && c != 0x7F), "encode_header_text: control character");
    }
  }
  // Lines and words.
  const bool encoded = enc.find("=?") != std::string::npos;
  std::size_t begin = 0;
  bool first = true;
  while (begin <= enc.size()) {
    std::size_t end = enc.find("\r\n", begin);
    if (end == std::string::npos) end = enc.size();
    const std::string_view line = std::string_view(enc).substr(begin, end - begin);
    const std::size_t col0 = first ? name.size() + 2 : 0;
    if (!first || name.size() + 2 <= 50)
      require(col0 + line.size() <= 76, "encode_header_text: line over 76 columns");
    if (encoded) {
      const std::string_view word = trim_wsp(line);
      require(word.size() <= 75 && word.starts_with("=?") && word.ends_with("?="),
              "encode_header_text: not one encoded word of <= 75 characters per line");
    }
    first = false;
    if (end == enc.size()) break;
    begin = end + 2;
  }
  // Round trip.
  const auto in_cps = code_points(utf8, "harness: round-trip input not UTF-8");
  std::string v = neutralised(in_cps);
  const std::string back = mukai::sanitize::decode_header_text(enc);
  const auto back_cps = code_points(back, "decode_header_text: invalid UTF-8 (round trip)");
  if (iso2022jp && encoded && enc.starts_with("=?ISO-2022-JP?")) {
    std::vector<char32_t> v_cps;
    mukai::fuzz::decode_utf8(v, &v_cps);
    require(count_replacements(back_cps) <= count_replacements(v_cps),
            "encode_header_text: ISO-2022-JP round trip lost characters");
    return;
  }
  if (encoded && v.starts_with("\xEF\xBB\xBF")) v.erase(0, 3);  // a run's leading BOM is a signature
  require(back == trim_wsp(v), "encode_header_text: decoding does not give the value back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr std::string_view hints[] = {"",       "iso-2022-jp",  "utf-8", "shift_jis",
                                               "euc-jp", "windows-1252", "gbk",   "x-unknown"};
  static const std::string long_name(70, 'X');
  const std::string_view names[] = {"Subject", "", "To", long_name};
  static constexpr std::size_t max_chars[] = {200, 0, 1, 9};
  const unsigned v = data[0];
  const std::string_view hint = hints[v & 7];
  const std::string_view name = names[(v >> 3) & 3];
  const bool iso2022jp = (v >> 5) & 1;
  const std::size_t limit = max_chars[(v >> 6) & 3];
  const std::string_view raw(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::string decoded = mukai::sanitize::decode_header_text(raw, hint);
  check_decoded(raw, decoded);

  const std::string normalised = mukai::sanitize::normalize_encoded_words(raw, hint);
  check_normalised(normalised);
  if (raw.find_first_of("\r\n") == std::string_view::npos) {
    // U+FEFF aside: decoding drops a leading byte-order mark of each piece it converts, and after
    // normalisation a U+FEFF that was text (say the second one of UTF-16 bytes) can lead a piece.
    require(without_feff(mukai::sanitize::decode_header_text(normalised, hint)) == without_feff(decoded),
            "normalize_encoded_words: decoding the normalised value differs");
  }

  check_display_safe(decoded, limit);
  check_display_safe(raw, limit);  // also invalid UTF-8 and raw controls

  check_encoded(decoded, name, iso2022jp);
  if (mukai::fuzz::decode_utf8(raw)) check_encoded(raw, name, iso2022jp);
  return 0;
}
