// Charset names, decoding with wrong-label recovery, strict encoding and detection (see charset.hpp).
// Why the label is not simply trusted: Japanese mail routinely says "ISO-2022-JP" over raw
// Shift_JIS or UTF-8, "us-ascii" over 8-bit text, or nothing at all; showing mojibake to municipal
// staff is a failure, and so is silently showing a guess. So a clean decode with the declared
// label is always kept, a decode that needed replacements is re-tried with detection, and every
// guess or replacement leaves a warning token for the report.
// Threading: no mutable state; ICU converters and detectors are opened per call.
#include "sanitizers/charset.hpp"

#include "sanitizers/ascii.hpp"

#include <unicode/ucsdet.h>

#include <algorithm>
#include <array>
#include <memory>

#include "sanitizers/byte_scan.hpp"
#include "sanitizers/charset_icu.hpp"
#include "sanitizers/charset_iso2022jp.hpp"
#include "sanitizers/charset_utf8.hpp"

namespace mukai::sanitize {
namespace {

using detail::append_utf8;
using detail::replacement_char;

// ---------------------------------------------------------------------------------------------
// Labels

using ascii::lower;

// Trims white space and quotes, drops an RFC 2231 "*lang" suffix, lower-cases.
std::string normalize_label(std::string_view label) {
  const auto is_trim = [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\'';
  };
  while (!label.empty() && is_trim(label.front())) label.remove_prefix(1);
  while (!label.empty() && is_trim(label.back())) label.remove_suffix(1);
  if (const auto star = label.find('*'); star != std::string_view::npos) label = label.substr(0, star);
  return lower(label);
}

// Matching key: letters and digits only, so "Shift-JIS", "shift_jis" and "SHIFTJIS" agree.
std::string alias_key(std::string_view normalized) {
  std::string k;
  for (const char c : normalized) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) k.push_back(c);
  }
  return k;
}

// Labels in warnings come from the message: restrict them to a harmless alphabet and length.
std::string safe_token(std::string_view label) {
  std::string r;
  for (const char raw : label) {
    const char c = ascii::to_lower(raw);
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':' ||
        c == '+' || c == '(' || c == ')') {
      r.push_back(c);
    } else {
      r.push_back('?');
    }
    if (r.size() >= 40) break;
  }
  return r;
}

struct alias {
  std::string_view key;
  std::string_view canonical;
};

// Keys are alias_key() forms. Japanese, Chinese and Korean labels map to the superset we decode
// with (see charset.hpp); the rest are the common spellings seen in mail.
constexpr std::array aliases{
    alias{"utf8", "utf-8"},
    alias{"unicode11utf8", "utf-8"},
    alias{"xunicode20utf8", "utf-8"},
    alias{"usascii", "us-ascii"},
    alias{"ascii", "us-ascii"},
    alias{"us", "us-ascii"},
    alias{"ansix341968", "us-ascii"},
    alias{"ansix341986", "us-ascii"},
    alias{"iso646us", "us-ascii"},
    alias{"iso646irv1991", "us-ascii"},
    alias{"csascii", "us-ascii"},
    alias{"cp367", "us-ascii"},
    alias{"ibm367", "us-ascii"},
    alias{"isoir6", "us-ascii"},
    alias{"iso88591", "iso-8859-1"},
    alias{"iso885911987", "iso-8859-1"},
    alias{"latin1", "iso-8859-1"},
    alias{"l1", "iso-8859-1"},
    alias{"cp819", "iso-8859-1"},
    alias{"ibm819", "iso-8859-1"},
    alias{"isoir100", "iso-8859-1"},
    alias{"csisolatin1", "iso-8859-1"},
    alias{"shiftjis", "cp932"},
    alias{"sjis", "cp932"},
    alias{"xsjis", "cp932"},
    alias{"mskanji", "cp932"},
    alias{"csshiftjis", "cp932"},
    alias{"windows31j", "cp932"},
    alias{"cswindows31j", "cp932"},
    alias{"ms932", "cp932"},
    alias{"cp932", "cp932"},
    alias{"xmscp932", "cp932"},
    alias{"windows932", "cp932"},
    alias{"ibm943", "cp932"},
    alias{"cp943", "cp932"},
    alias{"cp943c", "cp932"},
    alias{"ibm943c", "cp932"},
    alias{"sjisopen", "cp932"},
    alias{"sjiswin", "cp932"},
    alias{"xsjisopen", "cp932"},
    alias{"eucjp", "euc-jp"},
    alias{"xeucjp", "euc-jp"},
    alias{"ujis", "euc-jp"},
    alias{"xujis", "euc-jp"},
    alias{"eucjis", "euc-jp"},
    alias{"cseucpkdfmtjapanese", "euc-jp"},
    alias{"extendedunixcodepackedformatforjapanese", "euc-jp"},
    alias{"eucjpms", "euc-jp"},
    alias{"xeucjpms", "euc-jp"},
    alias{"eucjpwin", "euc-jp"},
    alias{"eucjpopen", "euc-jp"},
    alias{"cp51932", "euc-jp"},
    alias{"iso2022jp", "iso-2022-jp"},
    alias{"csiso2022jp", "iso-2022-jp"},
    alias{"iso2022jp1", "iso-2022-jp"},
    alias{"iso2022jp3", "iso-2022-jp"},
    alias{"iso2022jp2004", "iso-2022-jp"},
    alias{"iso2022jpms", "iso-2022-jp"},
    alias{"jis", "iso-2022-jp"},
    alias{"jis7", "iso-2022-jp"},
    alias{"jisencoding", "iso-2022-jp"},
    alias{"csjisencoding", "iso-2022-jp"},
    alias{"cp50220", "iso-2022-jp"},
    alias{"cp50221", "iso-2022-jp"},
    alias{"cp50222", "iso-2022-jp"},
    alias{"xwindowsiso2022jp", "iso-2022-jp"},
    alias{"iso2022jp2", "iso-2022-jp-2"},
    alias{"csiso2022jp2", "iso-2022-jp-2"},
    alias{"gb2312", "gbk"},
    alias{"gbk", "gbk"},
    alias{"cp936", "gbk"},
    alias{"ms936", "gbk"},
    alias{"windows936", "gbk"},
    alias{"xgbk", "gbk"},
    alias{"euccn", "gbk"},
    alias{"xeuccn", "gbk"},
    alias{"csgb2312", "gbk"},
    alias{"gb231280", "gbk"},
    alias{"csiso58gb231280", "gbk"},
    alias{"isoir58", "gbk"},
    alias{"chinese", "gbk"},
    alias{"gb18030", "gb18030"},
    alias{"big5", "big5"},
    alias{"cnbig5", "big5"},
    alias{"csbig5", "big5"},
    alias{"xxbig5", "big5"},
    alias{"cp950", "big5"},
    alias{"ms950", "big5"},
    alias{"windows950", "big5"},
    alias{"big5hkscs", "big5-hkscs"},
    alias{"euckr", "cp949"},
    alias{"cseuckr", "cp949"},
    alias{"ksc56011987", "cp949"},
    alias{"ksc56011989", "cp949"},
    alias{"ksc5601", "cp949"},
    alias{"csksc56011987", "cp949"},
    alias{"isoir149", "cp949"},
    alias{"korean", "cp949"},
    alias{"cp949", "cp949"},
    alias{"ms949", "cp949"},
    alias{"uhc", "cp949"},
    alias{"windows949", "cp949"},
    alias{"xwindows949", "cp949"},
    alias{"koi8r", "koi8-r"},
    alias{"cskoi8r", "koi8-r"},
    alias{"koi8", "koi8-r"},
    alias{"koi8u", "koi8-u"},
    alias{"koi8ru", "koi8-u"},
    alias{"windows874", "windows-874"},
    alias{"cp874", "windows-874"},
    alias{"tis620", "windows-874"},
    alias{"iso885911", "windows-874"},
    alias{"utf16", "utf-16"},
    alias{"ucs2", "utf-16"},
    alias{"unicode", "utf-16"},
    alias{"csunicode", "utf-16"},
    alias{"iso10646ucs2", "utf-16"},
    alias{"utf16le", "utf-16le"},
    alias{"utf16be", "utf-16be"},
    alias{"utf32", "utf-32"},
    alias{"ucs4", "utf-32"},
    alias{"utf32le", "utf-32le"},
    alias{"utf32be", "utf-32be"},
    alias{"utf7", "utf-7"},
    alias{"unicode11utf7", "utf-7"},
    alias{"csunicode11utf7", "utf-7"},
    alias{"iso2022kr", "iso-2022-kr"},
    alias{"csiso2022kr", "iso-2022-kr"},
    alias{"iso2022cn", "iso-2022-cn"},
    alias{"iso2022cnext", "iso-2022-cn"},
    alias{"hzgb2312", "hz-gb-2312"},
    alias{"hz", "hz-gb-2312"},
};

// Labels that say "I do not know": treated like a missing label, without an "unknown" warning.
constexpr std::array<std::string_view, 12> explicit_unknown{
    "xunknown", "unknown8bit", "unknown", "xuserdefined", "default",    "none",
    "charset",  "8bit",        "7bit",    "binary",       "xbinaryenc", "us8bit"};

std::string lookup_alias(std::string_view key) {
  for (const auto& a : aliases) {
    if (a.key == key) return std::string(a.canonical);
  }
  // windows-1250..1258 / cp125x / x-cp125x, iso-8859-N in their many spellings.
  for (const std::string_view prefix : {"windows125", "cp125", "xcp125", "mscp125"}) {
    if (key.size() == prefix.size() + 1 && key.substr(0, prefix.size()) == prefix && key.back() >= '0' &&
        key.back() <= '8') {
      return std::string("windows-125") + key.back();
    }
  }
  if (key.size() > 7 && key.substr(0, 7) == "iso8859") {
    const std::string_view num = key.substr(7);
    for (const std::string_view n : {"2", "3", "4", "5", "6", "7", "8", "9", "10", "13", "14", "15", "16"}) {
      if (num == n) return "iso-8859-" + std::string(n);
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Decoders

enum class decoder_kind { ascii, utf8, iso2022jp, latin1, utf16, icu, iconv };

struct charset_info {
  std::string canonical;
  decoder_kind kind = decoder_kind::icu;
  std::string engine;        // ICU or iconv converter name
  std::string encoder;       // ICU converter for output; "" = none
  bool seven_bit = false;    // correct text in this charset never has a byte >= 0x80
  bool single_byte = false;  // every byte decodes, so replacements cannot reveal a wrong label
  bool ascii_transparent = true;
};

struct known_charset {
  std::string_view canonical;
  decoder_kind kind;
  std::string_view engine;
  std::string_view encoder;
  bool seven_bit;
  bool single_byte;
  bool ascii_transparent;
};

constexpr std::array known_charsets{
    known_charset{"us-ascii", decoder_kind::ascii, "", "US-ASCII", true, true, true},
    known_charset{"utf-8", decoder_kind::utf8, "", "UTF-8", false, false, true},
    known_charset{"iso-2022-jp", decoder_kind::iso2022jp, "", "", true, false, true},
    known_charset{"iso-2022-jp-2", decoder_kind::iso2022jp, "", "", true, false, true},
    known_charset{"iso-8859-1", decoder_kind::latin1, "", "ISO-8859-1", false, true, true},
    known_charset{"cp932", decoder_kind::icu, "ibm-943_P15A-2003", "ibm-943_P15A-2003", false, false, true},
    known_charset{"euc-jp", decoder_kind::icu, "euc-jp-2007", "euc-jp-2007", false, false, true},
    // GB 2312 and GBK labels are decoded as GB18030 (a superset); output stays within GBK.
    known_charset{"gbk", decoder_kind::icu, "gb18030", "windows-936-2000", false, false, true},
    known_charset{"gb18030", decoder_kind::icu, "gb18030", "gb18030", false, false, true},
    known_charset{"big5", decoder_kind::icu, "windows-950-2000", "windows-950-2000", false, false, true},
    known_charset{"big5-hkscs", decoder_kind::icu, "ibm-1375_P100-2008", "ibm-1375_P100-2008", false, false,
                  true},
    known_charset{"cp949", decoder_kind::icu, "windows-949-2000", "windows-949-2000", false, false, true},
    known_charset{"koi8-r", decoder_kind::icu, "KOI8-R", "KOI8-R", false, true, true},
    known_charset{"koi8-u", decoder_kind::icu, "KOI8-U", "KOI8-U", false, true, true},
    known_charset{"windows-874", decoder_kind::icu, "windows-874-2000", "windows-874-2000", false, true,
                  true},
    known_charset{"utf-16", decoder_kind::utf16, "UTF-16", "UTF-16", false, false, false},
    known_charset{"utf-16le", decoder_kind::utf16, "UTF-16LE", "UTF-16LE", false, false, false},
    known_charset{"utf-16be", decoder_kind::utf16, "UTF-16BE", "UTF-16BE", false, false, false},
    known_charset{"utf-32", decoder_kind::utf16, "UTF-32", "UTF-32", false, false, false},
    known_charset{"utf-32le", decoder_kind::utf16, "UTF-32LE", "UTF-32LE", false, false, false},
    known_charset{"utf-32be", decoder_kind::utf16, "UTF-32BE", "UTF-32BE", false, false, false},
    known_charset{"utf-7", decoder_kind::icu, "UTF-7", "UTF-7", true, false, false},
    known_charset{"iso-2022-kr", decoder_kind::icu, "ISO-2022-KR", "ISO-2022-KR", true, false, false},
    known_charset{"iso-2022-cn", decoder_kind::icu, "ISO-2022-CN", "ISO-2022-CN", true, false, false},
    known_charset{"hz-gb-2312", decoder_kind::icu, "HZ", "HZ", true, false, false},
};

// Decoding recipe for a canonical name ("" kind icu/engine "" means unsupported).
std::optional<charset_info> resolve(std::string_view canonical) {
  if (canonical.empty()) return std::nullopt;
  for (const auto& k : known_charsets) {
    if (k.canonical == canonical) {
      return charset_info{std::string(k.canonical), k.kind,      std::string(k.engine),
                          std::string(k.encoder),   k.seven_bit, k.single_byte,
                          k.ascii_transparent};
    }
  }
  if (const auto props = detail::icu_converter_props(canonical)) {
    charset_info info;
    info.canonical = std::string(canonical);
    info.kind = decoder_kind::icu;
    info.engine = info.canonical;
    info.encoder = info.canonical;
    info.single_byte = props->max_char_size == 1;
    info.ascii_transparent = props->ascii_transparent;
    return info;
  }
  if (detail::iconv_has_converter(canonical)) {
    charset_info info;
    info.canonical = std::string(canonical);
    info.kind = decoder_kind::iconv;
    info.engine = info.canonical;
    // Everything iconv-only we accept is an 8-bit table; assume single-byte for label checks.
    info.single_byte = true;
    return info;
  }
  return std::nullopt;
}

struct decode_result {
  std::string utf8;
  std::size_t replacements = 0;
};

// Position of the first byte >= 0x80 at or after `from`, or s.size(). Eight bytes per step:
// every text body passes through here at least once, most of them 7-bit from end to end.
std::size_t find_8bit(std::string_view s, std::size_t from) noexcept {
  std::size_t i = from;
  for (; i + 8 <= s.size(); i += 8) {
    if (byte_scan::any_byte_8bit(byte_scan::load8(s.data() + i))) break;
  }
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;
  return i;
}

bool has_8bit(std::string_view s) noexcept { return find_8bit(s, 0) < s.size(); }

// 7-bit runs are copied whole; each 8-bit byte becomes one U+FFFD.
void decode_ascii(std::string_view in, decode_result& r) {
  r.utf8.reserve(in.size());
  std::size_t i = 0;
  while (i < in.size()) {
    const std::size_t high = find_8bit(in, i);
    r.utf8.append(in.data() + i, high - i);
    if (high == in.size()) break;
    append_utf8(r.utf8, replacement_char);
    ++r.replacements;
    i = high + 1;
  }
}

// ISO-8859-1 as WHATWG and every MUA read it: 0x80-0x9F are Windows-1252's characters (senders
// that say latin1 and send curly quotes mean cp1252); the five undefined ones stay C1 controls.
void decode_latin1(std::string_view in, decode_result& r) {
  static constexpr std::array<char16_t, 32> c1{
      0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
      0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};
  r.utf8.reserve(in.size() + in.size() / 4);
  for (const char ch : in) {
    const auto b = static_cast<unsigned char>(ch);
    append_utf8(r.utf8, (b >= 0x80 && b <= 0x9F) ? c1[b - 0x80] : b);
  }
}

constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

// UTF-16/32: ICU's "UTF-16" honours a BOM but assumes big-endian without one, while BOM-less
// UTF-16 in mail comes from Windows and is little-endian; guess from where the zero bytes are.
std::string utf16_engine(const charset_info& info, std::string_view in) {
  if (info.canonical != "utf-16" || in.size() < 2) return info.engine;
  const auto b0 = static_cast<unsigned char>(in[0]);
  const auto b1 = static_cast<unsigned char>(in[1]);
  if ((b0 == 0xFF && b1 == 0xFE) || (b0 == 0xFE && b1 == 0xFF)) return info.engine;
  std::size_t zero_even = 0, zero_odd = 0;
  const std::size_t n = std::min<std::size_t>(in.size(), 4096);
  for (std::size_t i = 0; i < n; ++i) {
    if (in[i] == '\0') ++((i % 2 == 0) ? zero_even : zero_odd);
  }
  return zero_odd > zero_even ? "UTF-16LE" : "UTF-16BE";
}

decode_result decode_with(const charset_info& info, std::string_view in) {
  decode_result r;
  switch (info.kind) {
    case decoder_kind::ascii:
      decode_ascii(in, r);
      return r;
    case decoder_kind::utf8:
      if (in.substr(0, 3) == utf8_bom) in.remove_prefix(3);
      r.utf8.reserve(in.size());
      r.replacements = detail::append_utf8_repaired(r.utf8, in);
      return r;
    case decoder_kind::iso2022jp:
      r.utf8.reserve(in.size());
      r.replacements = detail::decode_iso2022jp_append(in, r.utf8);
      return r;
    case decoder_kind::latin1:
      decode_latin1(in, r);
      return r;
    case decoder_kind::utf16:
    case decoder_kind::icu:
    case decoder_kind::iconv: {
      const std::string engine = info.kind == decoder_kind::utf16 ? utf16_engine(info, in) : info.engine;
      const auto n = info.kind == decoder_kind::iconv ? detail::iconv_decode_append(engine, in, r.utf8)
                                                      : detail::icu_decode_append(engine, in, r.utf8);
      if (n) {
        r.replacements = *n;
        // A BOM the converter left in (explicit -le/-be labels) is a signature, not text.
        if (info.kind == decoder_kind::utf16 && std::string_view(r.utf8).substr(0, 3) == utf8_bom) {
          r.utf8.erase(0, 3);
        }
      } else {
        // The converter is missing from this ICU build: read the bytes as UTF-8 (invalid ones
        // replaced and counted) rather than fail or pass raw bytes on.
        r.utf8.clear();
        r.replacements = detail::append_utf8_repaired(r.utf8, in);
      }
      return r;
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Detection

// How Japanese a CP932 or EUC-JP reading of the bytes looks. Kana and level-1 kanji dominate real
// Japanese text; Latin-1, Korean or Chinese bytes read as Japanese give half-width katakana,
// level-2 kanji, unassigned rows or invalid sequences instead.
struct jp_score {
  std::size_t chars = 0;    // non-ASCII characters
  std::size_t kana = 0;     // full-width hiragana + katakana
  std::size_t invalid = 0;  // ill-formed or unassigned sequences (one byte skipped each)
  double sum = 0;
  // A rare damaged character (a subject cut mid-character) must not disqualify a long text.
  bool valid() const { return chars > 0 && invalid * 20 <= chars; }
  double avg() const { return chars == 0 ? 0.0 : sum / static_cast<double>(chars); }
  double kana_ratio() const {
    return chars == 0 ? 0.0 : static_cast<double>(kana) / static_cast<double>(chars);
  }
  void add(double w, bool is_kana = false) {
    ++chars;
    sum += w;
    if (is_kana) ++kana;
  }
};

constexpr double w_kana = 2.0, w_kanji1 = 1.6, w_punct = 1.2, w_symbol = 0.8, w_nec13 = 1.0, w_kanji2 = 0.6,
                 w_halfkana = 0.3, w_other = 0.3, w_rare = 0.2;

jp_score score_cp932(std::string_view s) {
  jp_score sc;
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    if (b >= 0xA1 && b <= 0xDF) {
      sc.add(w_halfkana);
      ++i;
      continue;
    }
    const bool lead = (b >= 0x81 && b <= 0x9F) || (b >= 0xE0 && b <= 0xFC);
    const auto t = i + 1 < s.size() ? static_cast<unsigned char>(s[i + 1]) : 0;
    if (!lead || !((t >= 0x40 && t <= 0x7E) || (t >= 0x80 && t <= 0xFC))) {
      ++sc.invalid;
      ++i;
      continue;
    }
    i += 2;
    if (b == 0x82 && t >= 0x9F && t <= 0xF1) {
      sc.add(w_kana, true);
    } else if (b == 0x83 && t >= 0x40 && t <= 0x96) {
      sc.add(w_kana, true);
    } else if (b == 0x81 && t <= 0xAC) {
      sc.add(w_punct);
    } else if (b <= 0x84) {
      sc.add(b == 0x82 ? w_symbol : w_other);
    } else if (b == 0x87) {
      sc.add(w_nec13);
    } else if ((b == 0x88 && t >= 0x9F) || (b >= 0x89 && b <= 0x97) || (b == 0x98 && t <= 0x72)) {
      sc.add(w_kanji1);
    } else if ((b == 0x98 && t >= 0x9F) || (b >= 0x99 && b <= 0x9F) || (b >= 0xE0 && b <= 0xE9) ||
               (b == 0xEA && t <= 0xA4)) {
      sc.add(w_kanji2);
    } else if (b == 0xED || b == 0xEE || b >= 0xF0) {
      sc.add(w_rare);  // IBM extensions, user-defined area (carrier emoji)
    } else {
      ++sc.invalid;  // rows 9-12, 14-15, 85-88, 93-94: unassigned
    }
  }
  return sc;
}

jp_score score_eucjp(std::string_view s) {
  jp_score sc;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const auto in_gr = [](unsigned char c) { return c >= 0xA1 && c <= 0xFE; };
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char b = byte(i);
    if (b < 0x80) {
      ++i;
      continue;
    }
    if (b == 0x8E && i + 1 < s.size() && byte(i + 1) >= 0xA1 && byte(i + 1) <= 0xDF) {
      sc.add(w_halfkana);
      i += 2;
      continue;
    }
    if (b == 0x8F && i + 2 < s.size() && in_gr(byte(i + 1)) && in_gr(byte(i + 2))) {
      sc.add(w_rare);
      i += 3;
      continue;
    }
    if (!in_gr(b) || i + 1 >= s.size() || !in_gr(byte(i + 1))) {
      ++sc.invalid;
      ++i;
      continue;
    }
    const unsigned char t = byte(i + 1);
    i += 2;
    if ((b == 0xA4 && t <= 0xF3) || (b == 0xA5 && t <= 0xF6)) {
      sc.add(w_kana, true);
    } else if (b == 0xA1) {
      sc.add(w_punct);
    } else if (b == 0xA2 || b == 0xA3) {
      sc.add(w_symbol);
    } else if (b >= 0xA6 && b <= 0xA8) {
      sc.add(w_other);
    } else if (b == 0xAD) {
      sc.add(w_nec13);
    } else if (b >= 0xB0 && b <= 0xCF) {
      sc.add(w_kanji1);
    } else if (b >= 0xD0 && b <= 0xF4) {
      sc.add(w_kanji2);
    } else if (b >= 0xF5) {
      sc.add(w_rare);
    } else {
      ++sc.invalid;  // rows 9-12, 14-15
    }
  }
  return sc;
}

// Non-ASCII characters that decoded, against the replacements: `ratio` good ones per bad one.
bool decoded_mostly(const decode_result& r, std::size_t ratio) {
  std::size_t good = 0;
  for (std::size_t i = 0; i < r.utf8.size();) {
    const auto b = static_cast<unsigned char>(r.utf8[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    const auto st = detail::next_utf8(r.utf8, i);
    if (st.cp != replacement_char) ++good;
    i += st.length;
  }
  return good > 0 && good >= ratio * r.replacements;
}

// Multi-byte sequences in valid UTF-8 (each one evidence that the bytes were written as UTF-8).
std::size_t utf8_multibyte_count(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b >= 0xC2 && b <= 0xF4;
  }));
}

// True if most 8-bit bytes have no 8-bit neighbour, as in "Crème brûlée" or "Größe".
bool looks_latin(std::string_view s) {
  std::size_t high = 0, paired = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (static_cast<unsigned char>(s[i]) < 0x80) continue;
    ++high;
    const bool prev = i > 0 && static_cast<unsigned char>(s[i - 1]) >= 0x80;
    const bool next = i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80;
    if (prev || next) ++paired;
  }
  return high > 0 && paired * 2 <= high;
}

struct icu_guess {
  std::string charset;  // canonical
  int confidence = 0;
};

struct detector_closer {
  void operator()(UCharsetDetector* d) const noexcept { ucsdet_close(d); }
};

std::vector<icu_guess> icu_detect(std::string_view sample) {
  std::vector<icu_guess> out;
  UErrorCode err = U_ZERO_ERROR;
  std::unique_ptr<UCharsetDetector, detector_closer> det(ucsdet_open(&err));
  if (U_FAILURE(err) || !det) return out;
  ucsdet_setText(det.get(), sample.data(), static_cast<int32_t>(sample.size()), &err);
  int32_t n = 0;
  const UCharsetMatch** matches = ucsdet_detectAll(det.get(), &n, &err);
  if (U_FAILURE(err) || matches == nullptr) return out;
  for (int32_t k = 0; k < n; ++k) {
    UErrorCode e = U_ZERO_ERROR;
    const char* name = ucsdet_getName(matches[k], &e);
    const int conf = ucsdet_getConfidence(matches[k], &e);
    if (U_FAILURE(e) || name == nullptr) continue;
    const std::string lname = lower(name);
    // ICU proposes BOM-less UTF-16/32 for almost anything (we sniff BOMs ourselves) and EBCDIC
    // Arabic/Hebrew (IBM420/424) for noise; neither occurs unlabelled in mail.
    if (lname.rfind("utf-16", 0) == 0 || lname.rfind("utf-32", 0) == 0 || lname.rfind("ibm42", 0) == 0)
      continue;
    const std::string canonical = canonical_charset(lname);
    if (canonical.empty()) continue;
    if (std::any_of(out.begin(), out.end(), [&](const icu_guess& g) { return g.charset == canonical; }))
      continue;
    out.push_back({canonical, conf});
  }
  return out;
}

// Bounded sample for ICU: from shortly before the first 8-bit byte, at most 16 KiB, both ends
// moved to a byte < 0x40 (never inside a multi-byte character in any ASCII-based charset).
// ICU runs ~30 n-gram recognisers over every byte (about 1 us/byte on 8-bit noise), so the sample
// bounds the cost of detection; 16 KiB of text is far more than its statistics need.
std::string_view detection_sample(std::string_view s) {
  constexpr std::size_t max_sample = 16 * 1024;
  if (s.size() <= max_sample) return s;
  const auto first8 = static_cast<std::size_t>(
      std::find_if(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }) -
      s.begin());
  std::size_t begin = first8 > 1024 ? first8 - 1024 : 0;
  while (begin > 0 && begin < first8 && static_cast<unsigned char>(s[begin - 1]) >= 0x40) ++begin;
  std::size_t end = std::min(s.size(), begin + max_sample);
  const std::size_t floor = begin + max_sample / 2;
  while (end < s.size() && end > floor && static_cast<unsigned char>(s[end]) >= 0x40) --end;
  return s.substr(begin, end - begin);
}

bool is_japanese(std::string_view canonical) {
  return canonical == "cp932" || canonical == "euc-jp" || canonical == "iso-2022-jp" ||
         canonical == "iso-2022-jp-2";
}

void push_unique(std::vector<std::string>& v, std::string c) {
  if (!c.empty() && std::find(v.begin(), v.end(), c) == v.end()) v.push_back(std::move(c));
}

// Candidate charsets for 8-bit, non-UTF-8 bytes, most plausible first.
std::vector<std::string> rank_candidates(std::string_view bytes, std::string_view sample,
                                         const std::string& hint) {
  const jp_score sj = score_cp932(bytes);
  const jp_score ej = score_eucjp(bytes);
  // Fewer invalid sequences first, then the more Japanese-looking reading.
  const auto better = [&](const jp_score& a, const jp_score& b) {
    if (a.invalid != b.invalid) return a.invalid < b.invalid;
    return a.avg() > b.avg() || (a.avg() == b.avg() && hint != "euc-jp");
  };
  std::string jp;
  jp_score js;
  if (sj.valid() && (!ej.valid() || better(sj, ej))) {
    jp = "cp932";
    js = sj;
  } else if (ej.valid()) {
    jp = "euc-jp";
    js = ej;
  }
  const std::string jp_other = (jp == "cp932" && ej.valid())    ? "euc-jp"
                               : (jp == "euc-jp" && sj.valid()) ? "cp932"
                                                                : "";

  const std::vector<icu_guess> icu = icu_detect(sample);
  const int top_conf = icu.empty() ? 0 : icu.front().confidence;
  const auto conf_of = [&](std::string_view cs) {
    for (const auto& g : icu) {
      if (g.charset == cs) return g.confidence;
    }
    return -1;
  };
  const std::size_t high_bytes = static_cast<std::size_t>(std::count_if(
      sample.begin(), sample.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }));
  const bool hint_japanese = is_japanese(hint);

  std::vector<std::string> ranked;
  const bool strong = js.valid() && js.kana_ratio() >= 0.15 && js.avg() >= 1.2;
  if (strong) push_unique(ranked, jp);

  // A usable hint (an 8-bit, ASCII-compatible legacy charset) wins when ICU does not disagree
  // firmly. A 7-bit hint (the usual "ISO-2022-JP" of Japanese mail) cannot describe 8-bit bytes;
  // it only tilts the Japanese decision below.
  const std::optional<charset_info> hint_info = resolve(hint);
  const bool hint_usable = hint_info && !hint_info->seven_bit && hint_info->ascii_transparent &&
                           hint_info->kind != decoder_kind::utf8;
  if (hint_usable && !is_japanese(hint) && (icu.empty() || top_conf < 50 || conf_of(hint) >= top_conf - 20)) {
    push_unique(ranked, hint);
  }

  // A weaker Japanese reading (no kana: names, kanji-only subjects, ①②③) still wins when ICU is
  // unsure, agrees, or the text is too short for ICU's statistics to mean much.
  if (js.valid() && js.avg() >= 0.9) {
    const bool icu_agrees =
        !icu.empty() && (is_japanese(icu.front().charset) || conf_of(jp) >= top_conf - 10);
    if (icu.empty() || icu_agrees || top_conf < 30 || (high_bytes < 64 && top_conf < 70) ||
        (hint_japanese && top_conf < 60)) {
      push_unique(ranked, jp);
      if (hint_japanese && (hint == "cp932" || hint == "euc-jp")) push_unique(ranked, jp_other);
    }
  }
  for (const auto& g : icu) {
    if (g.confidence >= 10) push_unique(ranked, g.charset);
  }
  if (js.valid()) push_unique(ranked, jp);
  push_unique(ranked, jp_other);
  if (hint_usable) push_unique(ranked, hint);
  // Last resort for 8-bit text nothing else explains (short Western text ICU cannot classify):
  // Latin-1/cp1252 reads every byte, and the caller reports it as a detection. Only when the text
  // looks Western (accented letters mostly stand alone between ASCII); runs of 8-bit bytes are
  // multi-byte text, and reading those as Latin-1 would be mojibake.
  if (looks_latin(bytes)) push_unique(ranked, "iso-8859-1");
  return ranked;
}

// Damaged UTF-8 (a truncated character, one stray byte) is still UTF-8: random bytes in any other
// charset almost never form valid multi-byte UTF-8 sequences, so count them against the errors.
bool mostly_utf8(std::string_view s) {
  std::size_t good = 0, bad = 0;
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const auto st = detail::next_utf8(s, i);
    ++(st.valid ? good : bad);
    i += st.length;
  }
  return good > 0 && good >= 2 * bad;
}

std::optional<std::string> sniff_bom(std::string_view s) {
  if (s.substr(0, 3) == utf8_bom) return "utf-8";
  if (s.substr(0, 4) == std::string_view("\xFF\xFE\0\0", 4)) return "utf-32le";
  if (s.substr(0, 4) == std::string_view("\0\0\xFE\xFF", 4)) return "utf-32be";
  if (s.substr(0, 2) == "\xFF\xFE") return "utf-16le";
  if (s.substr(0, 2) == "\xFE\xFF") return "utf-16be";
  return std::nullopt;
}

// BOM-less UTF-16 of mostly ASCII text: every other byte is zero.
std::optional<std::string> sniff_utf16(std::string_view s) {
  const std::size_t n = std::min<std::size_t>(s.size(), 4096) & ~static_cast<std::size_t>(1);
  if (n < 4) return std::nullopt;
  std::size_t zero_even = 0, zero_odd = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (s[i] == '\0') ++((i % 2 == 0) ? zero_even : zero_odd);
  }
  const std::size_t half = n / 2;
  if (zero_odd * 10 >= half * 6 && zero_even * 20 <= half) return "utf-16le";
  if (zero_even * 10 >= half * 6 && zero_odd * 20 <= half) return "utf-16be";
  return std::nullopt;
}

std::optional<std::string> detect_impl(std::string_view bytes, const std::string& hint) {
  if (auto bom = sniff_bom(bytes)) return bom;
  if (auto u16 = sniff_utf16(bytes)) return u16;
  const bool eight = has_8bit(bytes);
  if (!eight) {
    if (detail::contains_iso2022jp_escape(bytes)) return "iso-2022-jp";
    if (bytes.find("\x1b$)C") != std::string_view::npos) return "iso-2022-kr";
    if (bytes.find("\x1b$)A") != std::string_view::npos || bytes.find("\x1b$)G") != std::string_view::npos) {
      return "iso-2022-cn";
    }
    return "us-ascii";
  }
  if (is_valid_utf8(bytes)) return "utf-8";
  // JIS with 8-bit JIS8 katakana or stray bytes is still JIS.
  if (detail::contains_iso2022jp_escape(bytes)) return "iso-2022-jp";
  // UTF-8 with a stray or truncated byte: legacy CJK and Latin text almost never forms valid
  // multi-byte UTF-8 sequences, so twice as many valid ones as errors means damaged UTF-8.
  if (mostly_utf8(bytes)) return "utf-8";

  const std::string_view sample = detection_sample(bytes);
  const std::vector<std::string> ranked = rank_candidates(bytes, sample, hint);
  if (ranked.empty()) return std::nullopt;
  // First candidate that reads the sample cleanly, or nearly so (one bad sequence per twenty good
  // characters: damaged text in the right charset beats clean mojibake further down the list).
  for (const auto& cs : ranked) {
    const auto info = resolve(cs);
    if (!info) continue;
    const decode_result r = decode_with(*info, sample);
    if (r.replacements == 0 || decoded_mostly(r, 20)) return cs;
  }
  return ranked.front();
}

std::string describe_label(std::string_view declared_label, const std::string& canonical) {
  if (!canonical.empty()) return canonical;
  const std::string n = normalize_label(declared_label);
  return n.empty() ? "none" : safe_token(n);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API

bool is_valid_utf8(std::string_view s) noexcept { return detail::valid_utf8_end(s, 0) == s.size(); }

std::string canonical_charset(std::string_view label) {
  const std::string norm = normalize_label(label);
  if (norm.empty()) return {};
  const std::string key = alias_key(norm);
  if (key.empty()) return {};
  if (std::find(explicit_unknown.begin(), explicit_unknown.end(), key) != explicit_unknown.end()) return {};
  if (std::string c = lookup_alias(key); !c.empty()) return c;
  if (!detail::is_plausible_converter_name(norm)) return {};
  if (detail::icu_has_converter(norm)) {
    const std::string standard = lower(detail::icu_standard_name(norm));
    if (!standard.empty()) {
      if (std::string c = lookup_alias(alias_key(standard)); !c.empty()) return c;
      if (detail::icu_has_converter(standard)) return standard;
    }
    return norm;
  }
  if (detail::iconv_has_converter(norm)) return norm;
  return {};
}

std::optional<std::string> detect_charset(std::string_view bytes, std::string_view hint_label) {
  return detect_impl(bytes, canonical_charset(hint_label));
}

decoded_text decode_to_utf8(std::string_view bytes, std::string_view declared_label,
                            std::string_view hint_label) {
  decoded_text out;
  const std::string declared = canonical_charset(declared_label);
  const std::string hint = canonical_charset(hint_label);
  const std::optional<charset_info> declared_info = resolve(declared);
  const std::string normalized_label = normalize_label(declared_label);
  if (!normalized_label.empty() && !declared_info &&
      std::find(explicit_unknown.begin(), explicit_unknown.end(), alias_key(normalized_label)) ==
          explicit_unknown.end()) {
    out.warnings.push_back("charset-unknown:" + safe_token(normalized_label));
  }
  const std::string declared_desc = describe_label(declared_label, declared_info ? declared : std::string());

  const auto finish = [&](const charset_info& info, decode_result&& r, bool detected) {
    out.utf8 = std::move(r.utf8);
    out.replacements = r.replacements;
    out.charset = info.canonical;
    out.detected = detected;
    if (detected)
      out.warnings.push_back("charset-detected:" + info.canonical + " (declared: " + declared_desc + ")");
    if (out.replacements > 0) {
      out.warnings.push_back("charset-replacements:" + std::to_string(out.replacements) +
                             " (charset: " + info.canonical + ")");
    }
    return std::move(out);
  };

  if (!declared_info) {
    std::string cs = detect_impl(bytes, hint).value_or("utf-8");
    std::optional<charset_info> info = resolve(cs);
    if (!info) info = resolve("utf-8");
    decode_result r = decode_with(*info, bytes);
    // Pure ASCII without a label is unremarkable; anything else was inferred.
    return finish(*info, std::move(r), info->canonical != "us-ascii");
  }

  decode_result r = decode_with(*declared_info, bytes);
  const bool eight = has_8bit(bytes);
  const bool jis_escapes = detail::contains_iso2022jp_escape(bytes);
  if (declared_info->kind != decoder_kind::iso2022jp && declared_info->ascii_transparent && jis_escapes) {
    // ISO-2022-JP labelled us-ascii or utf-8 (old mailers, list servers that rewrote the label):
    // in any ASCII-based charset the escapes would show as "$B%F%9%H(B" garbage.
    if (const auto jis = resolve("iso-2022-jp")) {
      decode_result alt = decode_with(*jis, bytes);
      if (alt.replacements <= r.replacements) return finish(*jis, std::move(alt), true);
    }
  }
  if (!eight) return finish(*declared_info, std::move(r), false);
  const bool jis_with_escapes = declared_info->kind == decoder_kind::iso2022jp && jis_escapes;
  const bool multi_byte =
      !declared_info->seven_bit && !declared_info->single_byte && declared_info->kind != decoder_kind::utf8;

  if (declared_info->kind != decoder_kind::utf8 && !jis_with_escapes && is_valid_utf8(bytes)) {
    // Valid multi-byte UTF-8 under a legacy label is a label left over by a client that converted
    // the text. A 7-bit or single-byte label can never produce it; for a multi-byte label a few
    // sequences could be chance, so ask for several (and any replacement settles it).
    const std::size_t seqs = utf8_multibyte_count(bytes);
    if (!multi_byte || r.replacements > 0 || seqs >= 4) {
      if (const auto u = resolve("utf-8")) return finish(*u, decode_with(*u, bytes), true);
    }
  }

  bool suspicious = r.replacements > 0;
  // JIS with JIS8 katakana is still JIS; 8-bit bytes under any other 7-bit label are a wrong label.
  if (declared_info->seven_bit && !jis_with_escapes) suspicious = true;
  if (!suspicious) return finish(*declared_info, std::move(r), false);
  // Damaged text in the declared charset (a subject cut mid-character) stays in that charset.
  if (declared_info->kind == decoder_kind::utf8 && mostly_utf8(bytes)) {
    return finish(*declared_info, std::move(r), false);
  }
  if (multi_byte && decoded_mostly(r, 4)) return finish(*declared_info, std::move(r), false);

  // The failed label still says something about the sender: it breaks ties when no hint is given,
  // and a Japanese label is only ever replaced by another Japanese reading or UTF-8 (a Shift_JIS
  // subject with one unassigned character must not turn into GBK because GBK happens to fit).
  const std::optional<std::string> candidate = detect_impl(bytes, hint.empty() ? declared : hint);
  const bool allowed =
      candidate && (!is_japanese(declared) || is_japanese(*candidate) || *candidate == "utf-8");
  if (allowed && *candidate != declared) {
    if (const auto cand_info = resolve(*candidate)) {
      decode_result alt = decode_with(*cand_info, bytes);
      if (alt.replacements < r.replacements || (alt.replacements == 0 && declared_info->seven_bit)) {
        return finish(*cand_info, std::move(alt), true);
      }
    }
  }
  return finish(*declared_info, std::move(r), false);
}

std::optional<std::string> encode_from_utf8(std::string_view utf8, std::string_view charset) {
  if (!is_valid_utf8(utf8)) return std::nullopt;
  const std::string canonical = canonical_charset(charset);
  const auto info = resolve(canonical);
  if (!info) return std::nullopt;
  switch (info->kind) {
    case decoder_kind::utf8:
      return std::string(utf8);
    case decoder_kind::ascii:
      if (has_8bit(utf8)) return std::nullopt;
      return std::string(utf8);
    case decoder_kind::iso2022jp:
      return detail::encode_iso2022jp(utf8);
    case decoder_kind::latin1: {
      std::string out;
      out.reserve(utf8.size());
      for (std::size_t i = 0; i < utf8.size();) {
        const auto st = detail::next_utf8(utf8, i);
        if (st.cp > 0xFF) return std::nullopt;
        out.push_back(static_cast<char>(st.cp));
        i += st.length;
      }
      return out;
    }
    case decoder_kind::iconv:
      return std::nullopt;  // output only in charsets ICU can write strictly
    case decoder_kind::utf16:
    case decoder_kind::icu:
      break;
  }
  if (info->encoder.empty()) return std::nullopt;
  if (info->canonical == "cp932" || info->canonical == "euc-jp") {
    // Accept the Unicode-correct spellings of the wave-dash family (see charset.hpp).
    static constexpr std::array<std::pair<char32_t, char32_t>, 7> wave{{{0x301C, 0xFF5E},
                                                                        {0x2016, 0x2225},
                                                                        {0x2212, 0xFF0D},
                                                                        {0x00A2, 0xFFE0},
                                                                        {0x00A3, 0xFFE1},
                                                                        {0x00AC, 0xFFE2},
                                                                        {0x2014, 0x2015}}};
    std::string mapped;
    mapped.reserve(utf8.size());
    for (std::size_t i = 0; i < utf8.size();) {
      const auto st = detail::next_utf8(utf8, i);
      char32_t c = st.cp;
      for (const auto& [from, to] : wave) {
        if (c == from) c = to;
      }
      append_utf8(mapped, c);
      i += st.length;
    }
    return detail::icu_encode_strict(info->encoder, mapped);
  }
  return detail::icu_encode_strict(info->encoder, utf8);
}

}  // namespace mukai::sanitize
