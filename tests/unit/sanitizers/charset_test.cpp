// Tests for sanitizers/charset: golden decodes of the shared text samples, CP932 semantics in
// ISO-2022-JP, strict ISO-2022-JP output, detection, wrong labels and the warning contract.
#include "sanitizers/charset.hpp"

#include <doctest/doctest.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

#include "sanitizers/charset_utf8.hpp"

using namespace mukai::sanitize;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace {

std::string read_sample(const std::string& name) {
  const std::string path = std::string(MUKAI_SHARED_DIR) + "/corpus/text-samples/" + name;
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "missing sample " << path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

bool has_warning_prefix(const decoded_text& d, std::string_view prefix) {
  for (const auto& w : d.warnings) {
    if (std::string_view(w).substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

// The contract every decode must honour, whatever the input.
void check_invariants(const decoded_text& d) {
  CHECK(is_valid_utf8(d.utf8));
  CHECK_FALSE(d.charset.empty());
  if (d.replacements > 0) CHECK(has_warning_prefix(d, "charset-replacements:"));
  if (d.detected) CHECK(has_warning_prefix(d, "charset-detected:"));
}

bool is_7bit(std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// Every line (and the whole text) of ISO-2022-JP output must end in ASCII (RFC 1468).
bool lines_end_in_ascii(std::string_view s) {
  bool in_jis = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s.substr(i, 3) == "\x1b$B") in_jis = true;
    if (s.substr(i, 3) == "\x1b(B") in_jis = false;
    if ((s[i] == '\r' || s[i] == '\n') && in_jis) return false;
  }
  return !in_jis;
}

}  // namespace

TEST_CASE("golden: the Japanese sample decodes identically from ISO-2022-JP, Shift_JIS and UTF-8") {
  const std::string expected = read_sample("gmime__japanese.utf-8.txt");
  struct sample {
    const char* file;
    const char* label;
    const char* charset;
  };
  for (const sample s : {sample{"gmime__japanese.iso-2022-jp.txt", "ISO-2022-JP", "iso-2022-jp"},
                         sample{"gmime__japanese.shift-jis.txt", "Shift_JIS", "cp932"},
                         sample{"gmime__japanese.utf-8.txt", "UTF-8", "utf-8"}}) {
    CAPTURE(s.file);
    const std::string bytes = read_sample(s.file);
    const decoded_text labelled = decode_to_utf8(bytes, s.label);
    check_invariants(labelled);
    CHECK(labelled.utf8 == expected);
    CHECK(labelled.charset == s.charset);
    CHECK_FALSE(labelled.detected);
    CHECK(labelled.replacements == 0);
    CHECK(labelled.warnings.empty());

    const decoded_text unlabelled = decode_to_utf8(bytes, "");
    check_invariants(unlabelled);
    CHECK(unlabelled.utf8 == expected);
    CHECK(unlabelled.charset == s.charset);
  }
}

TEST_CASE("golden: Cyrillic cp1251, ISO-8859-5 and KOI8-R match the UTF-8 sample") {
  const std::string expected = read_sample("gmime__cyrillic.utf-8.txt");
  CHECK(decode_to_utf8(read_sample("gmime__cyrillic.cp1251.txt"), "windows-1251").utf8 == expected);
  CHECK(decode_to_utf8(read_sample("gmime__cyrillic.cp1251.txt"), "cp1251").utf8 == expected);
  CHECK(decode_to_utf8(read_sample("gmime__cyrillic.iso-8859-5.txt"), "ISO-8859-5").utf8 == expected);
  CHECK(decode_to_utf8(read_sample("gmime__cyrillic.koi8-r.txt"), "KOI8-R").utf8 == expected);
  // And the labels are not even needed for cp1251 and ISO-8859-5.
  CHECK(decode_to_utf8(read_sample("gmime__cyrillic.cp1251.txt"), "").utf8 == expected);
  CHECK(decode_to_utf8(read_sample("gmime__cyrillic.iso-8859-5.txt"), "").utf8 == expected);
}

TEST_CASE("golden: Big5 matches the UTF-8 sample minus the characters Big5 cannot hold") {
  // GMime's Big5 sample was made from the UTF-8 one by a converter that dropped what plain Big5
  // cannot hold: the Japanese-only kanji (続, 学, 歓...) and the ETEN extensions (0xF9D6-0xF9FE,
  // e.g. 碁). Compare with the UTF-8 text filtered the same way through our strict encoder.
  const std::string utf8 = read_sample("gmime__chinese.utf-8.txt");
  std::string expected;
  std::size_t dropped = 0;
  for (std::size_t i = 0; i < utf8.size();) {
    std::size_t len = 1;
    const auto lead = static_cast<unsigned char>(utf8[i]);
    if (lead >= 0xF0)
      len = 4;
    else if (lead >= 0xE0)
      len = 3;
    else if (lead >= 0xC0)
      len = 2;
    const std::string ch = utf8.substr(i, len);
    const auto big5 = encode_from_utf8(ch, "big5");
    const bool eten = big5 && big5->size() == 2 && static_cast<unsigned char>((*big5)[0]) == 0xF9 &&
                      static_cast<unsigned char>((*big5)[1]) >= 0xD6;
    if (big5 && !eten)
      expected += ch;
    else
      ++dropped;
    i += len;
  }
  CHECK(dropped > 0);
  const decoded_text d = decode_to_utf8(read_sample("gmime__chinese.big5.txt"), "big5");
  check_invariants(d);
  CHECK(d.replacements == 0);
  CHECK(d.utf8 == expected);
  const decoded_text detected = decode_to_utf8(read_sample("gmime__chinese.big5.txt"), "");
  CHECK(detected.charset == "big5");
  CHECK(detected.utf8 == expected);
}

TEST_CASE("golden: French cp1252 fable, also when labelled ISO-8859-1") {
  const std::string bytes = read_sample("gmime__french-fable.cp1252.txt");
  const std::string start =
      "Maître Corbeau, sur un arbre perché,\nTenait en son bec un fromage.\n"
      "Maître Renard, par l’odeur alléché,\n";
  const std::string end = "Jura, mais un peu tard, qu’on ne l’y prendrait plus.\n";
  for (const char* label : {"windows-1252", "iso-8859-1", ""}) {
    CAPTURE(label);
    const decoded_text d = decode_to_utf8(bytes, label);
    check_invariants(d);
    CHECK(d.replacements == 0);
    CHECK(d.utf8.substr(0, start.size()) == start);
    CHECK(d.utf8.size() >= end.size());
    CHECK(d.utf8.substr(d.utf8.size() - end.size()) == end);
  }
}

TEST_CASE("ISO-2022-JP is decoded with CP932 semantics") {
  SUBCASE("NEC row 13: circled digits, ㈱, roman numerals, ㍉") {
    const decoded_text d = decode_to_utf8("\x1b$B-!-\"-j-7-@\x1b(B", "ISO-2022-JP");
    check_invariants(d);
    CHECK(d.utf8 == "①②㈱Ⅲ㍉");
    CHECK(d.replacements == 0);
    CHECK(d.warnings.empty());
  }
  SUBCASE("NEC-selected IBM extensions (row 89) and 8-bit IBM extension rows (115)") {
    CHECK(decode_to_utf8("\x1b$By!\x1b(B", "iso-2022-jp").utf8 == "纊");
    CHECK(decode_to_utf8("\x1b$B\x93!\x1b(B", "iso-2022-jp").utf8 == "ⅰ");
  }
  SUBCASE("the corpus' machine-dependent characters mail") {
    CHECK(decode_to_utf8("\x1b$B4]?t;z-!\x1b(B\r\n", "ISO-2022-JP").utf8 == "丸数字①\r\n");
  }
  SUBCASE("row 1 maps like Windows: wave dash, backslash") {
    CHECK(decode_to_utf8("\x1b$B!A!@\x1b(B", "iso-2022-jp").utf8 == "～＼");
  }
  SUBCASE("half-width katakana via ESC ( I, SO/SI and raw JIS8 bytes") {
    CHECK(decode_to_utf8("\x1b(I6@6E\x1b(B", "iso-2022-jp").utf8 == "ｶﾀｶﾅ");
    CHECK(decode_to_utf8("a\x0e"
                         "6@6E\x0f"
                         "b",
                         "iso-2022-jp")
              .utf8 == "aｶﾀｶﾅb");
    const decoded_text jis8 = decode_to_utf8("\x1b$B%F\x1b(B \xb6\xc0\xb6\xc5", "iso-2022-jp");
    CHECK(jis8.utf8 == "テ ｶﾀｶﾅ");
    CHECK(jis8.charset == "iso-2022-jp");
  }
  SUBCASE("ESC ( J is read as ASCII, ESC $ @ and ESC & @ ESC $ B as JIS X 0208") {
    CHECK(decode_to_utf8("\x1b(Ja\\b~\x1b(B", "iso-2022-jp").utf8 == "a\\b~");
    CHECK(decode_to_utf8("\x1b$@%F\x1b(B\x1b&@\x1b$B%9\x1b(B", "iso-2022-jp").utf8 == "テス");
  }
  SUBCASE("a line that forgets ESC ( B does not turn the next lines into kanji") {
    CHECK(decode_to_utf8("\x1b$B%F%9%H\nabc", "iso-2022-jp").utf8 == "テスト\nabc");
  }
  SUBCASE("ISO-2022-JP-2 designations") {
    CHECK(decode_to_utf8("\x1b$(D0!\x1b(B", "iso-2022-jp-2").utf8 == "丂");    // JIS X 0212
    CHECK(decode_to_utf8("\x1b$A0!\x1b(B", "iso-2022-jp-2").utf8 == "啊");     // GB 2312
    CHECK(decode_to_utf8("\x1b$(C0!\x1b(B", "iso-2022-jp-2").utf8 == "가");    // KS C 5601
    CHECK(decode_to_utf8("caf\x1b.A\x1bNi", "iso-2022-jp-2").utf8 == "café");  // G2 Latin-1
  }
  SUBCASE("broken escapes and pairs are replacements, with a warning") {
    const decoded_text d = decode_to_utf8("a\x1b$Zb\x1b$B%\x1b(B", "iso-2022-jp");
    check_invariants(d);
    CHECK(d.replacements == 2);
    CHECK(d.utf8 ==
          "a\xEF\xBF\xBD"
          "b\xEF\xBF\xBD");
    CHECK(has_warning_prefix(d, "charset-replacements:2"));
  }
}

TEST_CASE("Shift_JIS labels decode as CP932") {
  // ①, ㈱, Ⅲ (NEC row 13), 纊 (NEC-selected IBM), ⅰ (IBM), ＼ (0x815F), half-width ｶ.
  const std::string bytes = "\x87\x40\x87\x8a\x87\x56\xed\x40\xfa\x40\x81\x5f\xb6";
  for (const char* label : {"Shift_JIS", "shift-jis", "SJIS", "x-sjis", "windows-31j", "MS932", "cp932"}) {
    CAPTURE(label);
    const decoded_text d = decode_to_utf8(bytes, label);
    CHECK(d.utf8 == "①㈱Ⅲ纊ⅰ＼ｶ");
    CHECK(d.charset == "cp932");
    CHECK(d.warnings.empty());
  }
  // The corpus' docomo machine-dependent mail: 絵文字① in Shift_JIS.
  CHECK(decode_to_utf8("\x8a\x47\x95\xb6\x8e\x9a\x87\x40", "Shift_JIS").utf8 == "絵文字①");
}

TEST_CASE("EUC-JP with CP51932 extensions") {
  const decoded_text d = decode_to_utf8("\xa5\xc6\xa5\xb9\xa5\xc8\xad\xa1\x8e\xb6", "EUC-JP");
  CHECK(d.utf8 == "テスト①ｶ");
  CHECK(d.charset == "euc-jp");
  CHECK(d.warnings.empty());
}

TEST_CASE("encode_from_utf8 to ISO-2022-JP is strict, 7-bit and round-trips") {
  SUBCASE("the whole Japanese sample round-trips") {
    const std::string text = read_sample("gmime__japanese.utf-8.txt");
    const auto jis = encode_from_utf8(text, "ISO-2022-JP");
    REQUIRE(jis.has_value());
    CHECK(is_7bit(*jis));
    CHECK(lines_end_in_ascii(*jis));
    CHECK(decode_to_utf8(*jis, "iso-2022-jp").utf8 == text);
    // Same bytes as the sample itself (which is proper JIS X 0208).
    CHECK(*jis == read_sample("gmime__japanese.iso-2022-jp.txt"));
  }
  SUBCASE("CP932 extensions round-trip through NEC row 13 and rows 89-92") {
    const std::string text = "①㈱Ⅲ㍉纊ⅰ～＼ テスト\r\nabc";
    const auto jis = encode_from_utf8(text, "iso-2022-jp");
    REQUIRE(jis.has_value());
    CHECK(is_7bit(*jis));
    CHECK(lines_end_in_ascii(*jis));
    CHECK(decode_to_utf8(*jis, "iso-2022-jp").utf8 == text);
  }
  SUBCASE("exact bytes") {
    CHECK(encode_from_utf8("テスト", "iso-2022-jp") == "\x1b$B%F%9%H\x1b(B"s);
    CHECK(encode_from_utf8("a テ\nb", "iso-2022-jp") == "a \x1b$B%F\x1b(B\nb"s);
    CHECK(encode_from_utf8("plain", "iso-2022-jp") == "plain"s);
    CHECK(encode_from_utf8("", "iso-2022-jp") == ""s);
  }
  SUBCASE("half-width katakana become full width, voiced marks composed") {
    const auto jis = encode_from_utf8("ｶﾞｷﾞｸﾞ ﾊﾟﾋﾟ ｳﾞ ｱ ﾞ", "iso-2022-jp");
    REQUIRE(jis.has_value());
    CHECK(decode_to_utf8(*jis, "iso-2022-jp").utf8 == "ガギグ パピ ヴ ア ゛");
    // A full-width kana followed by a half-width mark is not composed.
    CHECK(decode_to_utf8(*encode_from_utf8("カﾞ", "iso-2022-jp"), "iso-2022-jp").utf8 == "カ゛");
  }
  SUBCASE("Unicode-correct wave dash family is accepted") {
    const auto jis = encode_from_utf8("〜‖−¢£¬—", "iso-2022-jp");
    REQUIRE(jis.has_value());
    CHECK(decode_to_utf8(*jis, "iso-2022-jp").utf8 == "～∥－￠￡￢―");
  }
  SUBCASE("unrepresentable input gives nullopt") {
    CHECK_FALSE(encode_from_utf8("😀", "iso-2022-jp").has_value());
    CHECK_FALSE(encode_from_utf8("é", "iso-2022-jp").has_value());
    CHECK_FALSE(encode_from_utf8("가", "iso-2022-jp").has_value());
    CHECK_FALSE(encode_from_utf8("a\x1b$Bb", "iso-2022-jp").has_value());  // would corrupt shift state
    CHECK_FALSE(encode_from_utf8("\xff", "iso-2022-jp").has_value());
    CHECK_FALSE(encode_from_utf8("\xe3\x81", "utf-8").has_value());
    CHECK_FALSE(encode_from_utf8("abc", "x-no-such-charset").has_value());
  }
}

TEST_CASE("half-width katakana widening agrees with NFKC") {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfkc = icu::Normalizer2::getNFKCInstance(err);
  REQUIRE(U_SUCCESS(err));
  for (UChar32 c = 0xFF61; c <= 0xFF9F; ++c) {
    CAPTURE(c);
    std::string in, expected;
    icu::UnicodeString(c).toUTF8String(in);
    if (c == 0xFF9E || c == 0xFF9F) {
      expected = c == 0xFF9E ? "゛" : "゜";  // NFKC gives combining marks, JIS has only spacing ones
    } else {
      nfkc->normalize(icu::UnicodeString(c), err).toUTF8String(expected);
      REQUIRE(U_SUCCESS(err));
    }
    const auto jis = encode_from_utf8(in, "iso-2022-jp");
    REQUIRE(jis.has_value());
    CHECK(decode_to_utf8(*jis, "iso-2022-jp").utf8 == expected);
  }
}

TEST_CASE("encode_from_utf8 for other charsets") {
  const std::string text = "日本語テキスト①";
  for (const char* cs : {"shift_jis", "euc-jp", "utf-8"}) {
    CAPTURE(cs);
    const auto enc = encode_from_utf8(text, cs);
    REQUIRE(enc.has_value());
    CHECK(decode_to_utf8(*enc, cs).utf8 == text);
  }
  CHECK(encode_from_utf8("〜", "shift_jis") == "\x81\x60"s);
  CHECK(encode_from_utf8("café", "iso-8859-1") == "caf\xe9"s);
  CHECK_FALSE(encode_from_utf8("café", "us-ascii").has_value());
  CHECK_FALSE(encode_from_utf8("日本", "iso-8859-1").has_value());
  CHECK_FALSE(encode_from_utf8("😀", "shift_jis").has_value());
  CHECK(encode_from_utf8("Привет", "koi8-r").has_value());
}

TEST_CASE("unlabelled Japanese is detected") {
  const std::string text = read_sample("gmime__japanese.utf-8.txt");
  SUBCASE("long EUC-JP and Shift_JIS texts") {
    for (const char* cs : {"euc-jp", "cp932"}) {
      CAPTURE(cs);
      const auto bytes = encode_from_utf8(text, cs);
      REQUIRE(bytes.has_value());
      CHECK(detect_charset(*bytes) == cs);
      const decoded_text d = decode_to_utf8(*bytes, "");
      check_invariants(d);
      CHECK(d.charset == cs);
      CHECK(d.detected);
      CHECK(d.utf8 == text);
      CHECK(has_warning_prefix(d, "charset-detected:"s + cs + " (declared: none)"));
    }
  }
  SUBCASE("short strings, where ICU's statistics alone would say windows-1252") {
    CHECK(detect_charset("\x83\x65\x83\x58\x83\x67") == "cp932");   // テスト
    CHECK(detect_charset("\xa5\xc6\xa5\xb9\xa5\xc8") == "euc-jp");  // テスト
    CHECK(detect_charset("\x87\x40\x87\x41\x87\x42") == "cp932");   // ①②③
    CHECK(detect_charset("\x93\x8c\x8b\x9e\x93\x73") == "cp932");   // 東京都
    CHECK(detect_charset("\xc5\xec\xb5\xfe\xc5\xd4") == "euc-jp");  // 東京都
    CHECK(detect_charset("\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd\x81\x41\x90\xa2\x8a\x45") == "cp932");
  }
  SUBCASE("damaged UTF-8 without a label stays UTF-8 (flanker's malformed From)") {
    const decoded_text d = decode_to_utf8("Юникод запрещен\xf1 <headers@gmail.com>", "");
    check_invariants(d);
    CHECK(d.charset == "utf-8");
    CHECK(d.replacements == 1);
    CHECK(d.utf8 == "Юникод запрещен\xEF\xBF\xBD <headers@gmail.com>");
  }
  SUBCASE("short Western text is not mistaken for Japanese") {
    CHECK(detect_charset("Caf\xe9s cr\xe8me br\xfbl\xe9"
                         "e") == "iso-8859-1");
  }
  SUBCASE("easy cases") {
    CHECK(detect_charset("") == "us-ascii");
    CHECK(detect_charset("plain") == "us-ascii");
    CHECK(detect_charset("\x1b$B%F\x1b(B") == "iso-2022-jp");
    CHECK(detect_charset("\xe3\x83\x86") == "utf-8");
    CHECK(detect_charset("\xef\xbb\xbfx") == "utf-8");
    CHECK(detect_charset("\xff\xfex\0"sv) == "utf-16le");
    CHECK(detect_charset("a\0b\0c\0d\0"sv) == "utf-16le");
  }
}

TEST_CASE("wrong labels") {
  const std::string sjis = "\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd";  // こんにちは
  const std::string utf8 = "こんにちは";
  SUBCASE("us-ascii over UTF-8") {
    const decoded_text d = decode_to_utf8(utf8, "us-ascii");
    check_invariants(d);
    CHECK(d.utf8 == utf8);
    CHECK(d.charset == "utf-8");
    CHECK(d.detected);
    CHECK(d.replacements == 0);
    CHECK(has_warning_prefix(d, "charset-detected:utf-8 (declared: us-ascii)"));
  }
  SUBCASE("us-ascii over Shift_JIS") {
    const decoded_text d = decode_to_utf8(sjis, "US-ASCII");
    check_invariants(d);
    CHECK(d.utf8 == utf8);
    CHECK(d.charset == "cp932");
    CHECK(d.detected);
    CHECK(has_warning_prefix(d, "charset-detected:cp932 (declared: us-ascii)"));
  }
  SUBCASE("ISO-2022-JP over raw Shift_JIS, EUC-JP and UTF-8 (the corpus' raw-*.eml subjects)") {
    CHECK(decode_to_utf8(sjis, "ISO-2022-JP").utf8 == utf8);
    CHECK(decode_to_utf8("\xa5\xc6\xa5\xb9\xa5\xc8", "ISO-2022-JP").utf8 == "テスト");
    CHECK(decode_to_utf8("\x87\x40\x87\x41\x87\x42", "ISO-2022-JP").utf8 == "①②③");
    const decoded_text d = decode_to_utf8(utf8, "ISO-2022-JP");
    CHECK(d.utf8 == utf8);
    CHECK(d.detected);
  }
  SUBCASE("us-ascii or UTF-8 over ISO-2022-JP") {
    for (const char* label : {"us-ascii", "utf-8", "iso-8859-1"}) {
      CAPTURE(label);
      const decoded_text d = decode_to_utf8("Re: \x1b$B%F%9%H\x1b(B", label);
      check_invariants(d);
      CHECK(d.utf8 == "Re: テスト");
      CHECK(d.charset == "iso-2022-jp");
      CHECK(d.detected);
    }
  }
  SUBCASE("UTF-8 over Shift_JIS and over Latin-1") {
    const decoded_text d = decode_to_utf8(sjis, "utf-8");
    CHECK(d.utf8 == utf8);
    CHECK(d.charset == "cp932");
    CHECK(has_warning_prefix(d, "charset-detected:cp932 (declared: utf-8)"));
    CHECK(decode_to_utf8("caf\xe9 cr\xe8me", "utf-8").utf8 == "café crème");
  }
  SUBCASE("Latin-1 over UTF-8") {
    const decoded_text d = decode_to_utf8("caf\xc3\xa9", "iso-8859-1");
    CHECK(d.utf8 == "café");
    CHECK(d.detected);
  }
  SUBCASE("Shift_JIS over UTF-8 and EUC-JP over Shift_JIS") {
    CHECK(decode_to_utf8("日本語のテキストです", "shift_jis").utf8 == "日本語のテキストです");
    CHECK(decode_to_utf8(sjis, "euc-jp").utf8 == utf8);
  }
  SUBCASE("damaged text stays in its declared charset, with a warning") {
    const decoded_text u = decode_to_utf8("テスト\xe3\x83", "utf-8");
    check_invariants(u);
    CHECK(u.utf8 == "テスト\xEF\xBF\xBD");
    CHECK(u.charset == "utf-8");
    CHECK(u.replacements == 1);
    const std::string long_sjis =
        *encode_from_utf8(read_sample("gmime__japanese.utf-8.txt"), "cp932") + "\x82";
    const decoded_text s = decode_to_utf8(long_sjis, "shift_jis");
    check_invariants(s);
    CHECK(s.charset == "cp932");
    CHECK(s.replacements == 1);
    CHECK_FALSE(s.detected);
  }
  SUBCASE("a Japanese label with one bad character stays Japanese") {
    const decoded_text d = decode_to_utf8(
        "\x82\x41"
        "abc",
        "Shift_JIS");  // 0x8241 is unassigned
    check_invariants(d);
    CHECK(d.charset == "cp932");
    CHECK(d.utf8 ==
          "\xEF\xBF\xBD"
          "abc");
    const decoded_text n = decode_to_utf8("\x82\nabc", "shift_jis");  // lone lead: the newline survives
    CHECK(n.utf8 == "\xEF\xBF\xBD\nabc");
  }
  SUBCASE("a label that decodes cleanly is trusted") {
    const decoded_text d = decode_to_utf8("\xe9t\xe9", "iso-8859-1");
    CHECK(d.utf8 == "été");
    CHECK_FALSE(d.detected);
    CHECK(d.warnings.empty());
  }
}

TEST_CASE("unknown and explicit-unknown labels") {
  const decoded_text foo = decode_to_utf8("hello", "x-foo");
  CHECK(foo.utf8 == "hello");
  CHECK(foo.charset == "us-ascii");
  CHECK(has_warning_prefix(foo, "charset-unknown:x-foo"));
  const decoded_text unk = decode_to_utf8("h\xc3\xa9", "unknown-8bit");
  CHECK(unk.utf8 == "hé");
  CHECK_FALSE(has_warning_prefix(unk, "charset-unknown"));
  CHECK(has_warning_prefix(unk, "charset-detected:utf-8 (declared: unknown-8bit)"));
  // Hostile labels are reduced to a harmless token in warnings.
  const decoded_text evil = decode_to_utf8("x", "\x1b[31m\nX-Evil: 1");
  for (const auto& w : evil.warnings) {
    for (const char c : w) CHECK(static_cast<unsigned char>(c) >= 0x20);
  }
}

TEST_CASE("canonical_charset") {
  CHECK(canonical_charset("Shift_JIS") == "cp932");
  CHECK(canonical_charset("shift-jis") == "cp932");
  CHECK(canonical_charset("x-sjis") == "cp932");
  CHECK(canonical_charset("Windows-31J") == "cp932");
  CHECK(canonical_charset("MS932") == "cp932");
  CHECK(canonical_charset("csShiftJIS") == "cp932");
  CHECK(canonical_charset("ISO-2022-JP") == "iso-2022-jp");
  CHECK(canonical_charset("csISO2022JP") == "iso-2022-jp");
  CHECK(canonical_charset("CP50221") == "iso-2022-jp");
  CHECK(canonical_charset("iso-2022-jp-2") == "iso-2022-jp-2");
  CHECK(canonical_charset("EUC-JP") == "euc-jp");
  CHECK(canonical_charset("x-euc-jp") == "euc-jp");
  CHECK(canonical_charset("eucJP-ms") == "euc-jp");
  CHECK(canonical_charset("utf8") == "utf-8");
  CHECK(canonical_charset(" \"UTF-8\" ") == "utf-8");
  CHECK(canonical_charset("utf-8*ja") == "utf-8");
  CHECK(canonical_charset("latin1") == "iso-8859-1");
  CHECK(canonical_charset("ISO_8859-1:1987") == "iso-8859-1");
  CHECK(canonical_charset("ascii") == "us-ascii");
  CHECK(canonical_charset("ANSI_X3.4-1968") == "us-ascii");
  CHECK(canonical_charset("ks_c_5601-1987") == "cp949");
  CHECK(canonical_charset("euc-kr") == "cp949");
  CHECK(canonical_charset("gb2312") == "gbk");
  CHECK(canonical_charset("GB18030") == "gb18030");
  CHECK(canonical_charset("cp1252") == "windows-1252");
  CHECK(canonical_charset("x-cp1251") == "windows-1251");
  CHECK(canonical_charset("iso8859-15") == "iso-8859-15");
  CHECK(canonical_charset("latin2") == "iso-8859-2");
  CHECK(canonical_charset("koi8-r") == "koi8-r");
  CHECK(canonical_charset("TIS-620") == "windows-874");
  CHECK(canonical_charset("UTF-16") == "utf-16");
  CHECK(canonical_charset("x-unknown") == "");
  CHECK(canonical_charset("unknown-8bit") == "");
  CHECK(canonical_charset("") == "");
  CHECK(canonical_charset("x-foo") == "");
  CHECK(canonical_charset("../../etc/passwd") == "");
  CHECK(canonical_charset("UTF-8//IGNORE") == "");
}

TEST_CASE("other charsets") {
  CHECK(decode_to_utf8("\xff\xfe"
                       "a\0\x42\x30"sv,
                       "utf-16")
            .utf8 == "aあ");
  CHECK(decode_to_utf8("a\0\x42\x30"sv, "utf-16").utf8 == "aあ");  // BOM-less: Windows little-endian
  CHECK(decode_to_utf8("\0a\x30\x42"sv, "utf-16be").utf8 == "aあ");
  CHECK(decode_to_utf8("\xff\xfe\0\0"
                       "a\0\0\0"sv,
                       "")
            .utf8 == "a");
  CHECK(decode_to_utf8("Hi Mom -+Jjo--!", "utf-7").utf8 == "Hi Mom -☺-!");
  CHECK(decode_to_utf8("\xb0\xa1", "gb2312").utf8 == "啊");
  CHECK(decode_to_utf8("\xb0\xa1", "ks_c_5601-1987").utf8 == "가");
  CHECK(decode_to_utf8("\xa4\xa4", "iso-8859-15").utf8 == "€€");
  CHECK(decode_to_utf8("\xa1", "iso-8859-16").utf8 == "Ą");  // via glibc iconv
  CHECK(decode_to_utf8("\x93quoted\x94", "iso-8859-1").utf8 == "“quoted”");
}

TEST_CASE("NUL and control bytes are kept, the BOM is not") {
  const decoded_text d = decode_to_utf8(
      "a\0b\x1b"
      "c"sv,
      "us-ascii");
  CHECK(d.utf8 ==
        "a\0b\x1b"
        "c"sv);
  CHECK(decode_to_utf8("\xef\xbb\xbf"
                       "abc",
                       "utf-8")
            .utf8 == "abc");
  CHECK(decode_to_utf8("\x82\xa0\0\x82\xa2"sv, "shift_jis").utf8 == "あ\0い"sv);
}

TEST_CASE("is_valid_utf8") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("plain ascii"));
  CHECK(is_valid_utf8("日本語 😀"));
  CHECK_FALSE(is_valid_utf8("\xc0\x80"));          // overlong NUL
  CHECK_FALSE(is_valid_utf8("\xe0\x80\xaf"));      // overlong
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xe3\x81"));          // truncated
  CHECK_FALSE(is_valid_utf8("\x80"));
  CHECK_FALSE(is_valid_utf8("\xff"));
  // Maximal-subpart replacement: a truncated sequence is one U+FFFD, not one per byte.
  const decoded_text d = decode_to_utf8("日本語のテキスト a\xe3\x81z\xf0\x9f\x98", "utf-8");
  CHECK(d.utf8 == "日本語のテキスト a\xEF\xBF\xBDz\xEF\xBF\xBD");
  CHECK(d.replacements == 2);
}

TEST_CASE("is_valid_utf8 and UTF-8 repair agree with a step-by-step walk, at every word offset") {
  // The reference: next_utf8 at each position (what both did before they skipped ASCII by words).
  const auto reference_valid = [](std::string_view t) {
    for (std::size_t i = 0; i < t.size();) {
      const auto st = detail::next_utf8(t, i);
      if (!st.valid) return false;
      i += st.length;
    }
    return true;
  };
  const auto reference_repair = [](std::string_view t, std::size_t& replaced) {
    std::string out;
    replaced = 0;
    for (std::size_t i = 0; i < t.size();) {
      const auto st = detail::next_utf8(t, i);
      if (st.valid) {
        out.append(t.substr(i, st.length));
      } else {
        out += "\xEF\xBF\xBD";
        ++replaced;
      }
      i += st.length;
    }
    return out;
  };
  const std::string_view pieces[] = {"a",
                                     "plain ascii text",
                                     "\xc3\xa9",
                                     "\xe6\x97\xa5",
                                     "\xf0\x9f\x98\x80",
                                     "\xc0\x80",
                                     "\xe0\x80\xaf",
                                     "\xe0\xa0\x80",
                                     "\xed\xa0\x80",
                                     "\xed\x9f\xbf",
                                     "\xf4\x90\x80\x80",
                                     "\xf4\x8f\xbf\xbf",
                                     "\xf0\x8f\xbf\xbf",
                                     "\xe3\x81",
                                     "\xf0\x9f\x98",
                                     "\x80",
                                     "\xbf",
                                     "\xff",
                                     "\xc2",
                                     "\xf5\x80\x80\x80"};
  std::uint64_t x = 0x243F6A8885A308D3ULL;
  for (int round = 0; round < 20000; ++round) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::string t(round % 11, 'x');
    for (std::uint64_t y = x, k = x % 9; k > 0; --k, y /= std::size(pieces))
      t += pieces[y % std::size(pieces)];
    CAPTURE(t);
    REQUIRE(is_valid_utf8(t) == reference_valid(t));
    std::size_t expected_replaced = 0;
    const std::string expected = reference_repair(t, expected_replaced);
    std::string repaired;
    REQUIRE(detail::append_utf8_repaired(repaired, t) == expected_replaced);
    REQUIRE(repaired == expected);
  }
}

TEST_CASE("ISO-2022-JP: long kanji and ASCII stretches decode whole (buffer boundaries)") {
  const std::string text = read_sample("gmime__japanese.utf-8.txt");
  std::string long_line;  // no line break for thousands of characters: one long JIS X 0208 stretch
  for (char c : text)
    if (c != '\n' && c != '\r') long_line += c;
  std::string utf8;
  for (int i = 0; i < 20; ++i) utf8 += long_line + "\n" + std::string(3000 + i, 'a') + "\n";
  const auto jis = encode_from_utf8(utf8, "iso-2022-jp");
  REQUIRE(jis.has_value());
  const decoded_text d = decode_to_utf8(*jis, "iso-2022-jp");
  CHECK(d.replacements == 0);
  CHECK(d.utf8 == utf8);
}

TEST_CASE("random bytes never break the contract") {
  std::uint64_t x = 0x9E3779B97F4A7C15ULL;
  const auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  const char* labels[] = {"",       "utf-8",  "us-ascii",   "iso-2022-jp", "shift_jis",
                          "euc-jp", "big5",   "gb2312",     "euc-kr",      "utf-16",
                          "utf-7",  "koi8-r", "iso-8859-1", "x-foo",       "iso-2022-jp-2"};
  for (int round = 0; round < 400; ++round) {
    std::string bytes(next() % 64, '\0');
    const bool seven = round % 3 == 0;
    for (char& c : bytes) {
      c = static_cast<char>(next() & (seven ? 0x7F : 0xFF));
      if (seven && next() % 8 == 0) c = 0x1b;
    }
    const char* label = labels[round % std::size(labels)];
    CAPTURE(label);
    const decoded_text d = decode_to_utf8(bytes, label, round % 2 ? "iso-2022-jp" : "");
    check_invariants(d);
  }
}

TEST_CASE("large inputs are decoded in linear time") {
  const std::string text = read_sample("gmime__japanese.utf-8.txt");
  const std::string sjis_unit = *encode_from_utf8(text, "cp932");
  const std::string jis_unit = read_sample("gmime__japanese.iso-2022-jp.txt");
  std::string sjis, jis;
  while (sjis.size() < 8 * 1024 * 1024) sjis += sjis_unit;
  while (jis.size() < 8 * 1024 * 1024) jis += jis_unit;
  const auto t0 = std::chrono::steady_clock::now();
  const decoded_text a = decode_to_utf8(sjis, "");  // detection + decode
  const decoded_text b = decode_to_utf8(jis, "iso-2022-jp");
  const decoded_text c = decode_to_utf8(sjis, "us-ascii");  // wrong label: decode twice
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(a.charset == "cp932");
  CHECK(a.replacements == 0);
  CHECK(b.replacements == 0);
  CHECK(c.charset == "cp932");
  CHECK(a.utf8.substr(0, text.size()) == text);
  CHECK(b.utf8.substr(0, text.size()) == text);
  MESSAGE("3 x 8 MiB decoded in " << seconds << " s");
  CHECK(seconds < 20.0);  // generous for sanitizer builds; a quadratic path would take hours
}
