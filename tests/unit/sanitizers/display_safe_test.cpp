// Tests for sanitizers/display_safe: nothing that reaches a notice, terminal or log can reorder,
// hide, or inject; truncation never splits a character or an escape.
#include "sanitizers/display_safe.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "sanitizers/charset.hpp"
#include "sanitizers/rfc2047.hpp"

using namespace mukai::sanitize;
using namespace std::string_view_literals;

namespace {

std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

// No C0/C1 control, DEL, or format character may survive.
bool is_inert(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x20 || b == 0x7F) return false;
    if (b == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9F) return false;  // C1
    if (s.substr(i, 3) == "\xE2\x80\xAE" || s.substr(i, 3) == "\xE2\x80\x8B" ||
        s.substr(i, 3) == "\xEF\xBB\xBF") {
      return false;  // RLO, ZWSP, BOM
    }
  }
  return true;
}

}  // namespace

TEST_CASE("bidi override in a filename is shown, not obeyed") {
  CHECK(display_safe("invoice\u202Etxt.exe") == "invoice<U+202E>txt.exe");
  CHECK(
      display_safe("a\u202Ab\u202Bc\u202Cd\u202De\u2066f\u2067g\u2068h\u2069i\u200Ej\u200Fk\u061Cl") ==
      "a<U+202A>b<U+202B>c<U+202C>d<U+202D>e<U+2066>f<U+2067>g<U+2068>h<U+2069>i<U+200E>j<U+200F>k<U+061C>l");
}

TEST_CASE("bidi controls in a decoded file name stay visible in notices") {
  // The path of an attachment name: RFC 2047 decoding keeps the override (it is text), the notice
  // shows it escaped, so the name cannot pose as a harmless type.
  const std::string name = decode_header_text("=?UTF-8?B?aW52b2ljZeKArmZkcC5leGU=?=");  // invoice<RLO>fdp.exe
  CHECK(name == "invoice\u202Efdp.exe");
  CHECK(display_safe(name, 120) == "invoice<U+202E>fdp.exe");
  CHECK(display_safe("\u2067\u2068report\u2069\u202Cexe.txt") ==
        "<U+2067><U+2068>report<U+2069><U+202C>exe.txt");
  // A name cut at the limit keeps the escape whole or drops it, never half of it.
  CHECK(display_safe("abcdef\u202Egpj.exe", 12) == "abcdef…");
}

TEST_CASE("is_bidi_reordering_control: embeddings, overrides and isolates, not the marks") {
  for (char32_t c = 0x202A; c <= 0x202E; ++c) CHECK(is_bidi_reordering_control(c));
  for (char32_t c = 0x2066; c <= 0x2069; ++c) CHECK(is_bidi_reordering_control(c));
  for (const char32_t c : {0x200EU, 0x200FU, 0x061CU, 0x2029U, 0x202FU, 0x2065U, 0x206AU, 0x200BU})
    CHECK_FALSE(is_bidi_reordering_control(c));
  CHECK(bidi_reordering_control_at("a\u202Eb", 1) == 3);
  CHECK(bidi_reordering_control_at("a\u2069", 1) == 3);
  CHECK(bidi_reordering_control_at("a\u200Fb", 1) == 0);
  CHECK(bidi_reordering_control_at("a\u2026b", 1) == 0);  // "…" shares the lead byte
  CHECK(bidi_reordering_control_at("\xE2\x80", 0) == 0);  // truncated
  CHECK(bidi_reordering_control_at("\u202E", 1) == 0);
}

TEST_CASE("zero-width and other format characters are made visible") {
  CHECK(display_safe("pay\u200Bpal") == "pay<U+200B>pal");
  CHECK(display_safe("a\u200Cb\u200Dc\u2060d\uFEFFe") == "a<U+200C>b<U+200D>c<U+2060>d<U+FEFF>e");
  CHECK(display_safe("soft\u00ADhyphen") == "soft<U+00AD>hyphen");
  CHECK(display_safe("tag\U000E0041") == "tag<U+E0041>");  // invisible "ASCII smuggling" tags
  CHECK(display_safe("line\u2028sep") == "line<U+2028>sep");
  CHECK(display_safe("\u3164") == "<U+3164>");  // blank-looking Hangul filler
}

TEST_CASE("terminal escape sequences and control characters") {
  CHECK(display_safe("\x1b[31mred\x1b[0m") == "<U+001B>[31mred<U+001B>[0m");
  CHECK(display_safe("bell\x07") == "bell<U+0007>");
  CHECK(display_safe("nul\0x"sv) == "nul<U+0000>x");
  CHECK(display_safe("del\x7f") == "del<U+007F>");
  CHECK(display_safe("csi\xC2\x9B"
                     "2J") == "csi<U+009B>2J");  // 8-bit CSI
  CHECK(display_safe("nel\xC2\x85x") == "nel<U+0085>x");
}

TEST_CASE("newline injection becomes spaces") {
  CHECK(display_safe("report.pdf\r\nX-Injected: yes") == "report.pdf  X-Injected: yes");
  CHECK(display_safe("a\tb\nc") == "a b c");
}

TEST_CASE("invalid UTF-8 becomes U+FFFD") {
  CHECK(display_safe("a\xff"
                     "b") == "a\uFFFDb");
  CHECK(display_safe("\xe3\x81") == "\uFFFD");
  CHECK(display_safe("\xed\xa0\x80") == "\uFFFD\uFFFD\uFFFD");  // encoded surrogate
  CHECK(display_safe("\xc0\xaf") == "\uFFFD\uFFFD");            // overlong '/'
}

TEST_CASE("ordinary text is unchanged") {
  CHECK(display_safe("請求書_2024年度①.pdf") == "請求書_2024年度①.pdf");
  CHECK(display_safe("Crème brûlée — «ok»") == "Crème brûlée — «ok»");
  CHECK(display_safe("👨\u200D👩") == "👨<U+200D>👩");  // ZWJ is escaped too, by contract
  CHECK(display_safe("") == "");
}

TEST_CASE("truncation") {
  SUBCASE("on a multi-byte boundary") {
    const std::string s = display_safe("日本語のファイル名です", 5);
    CHECK(s == "日本語の…");
    CHECK(is_valid_utf8(s));
    CHECK(code_points(s) == 5);
  }
  SUBCASE("exactly max_chars is not truncated") {
    CHECK(display_safe("日本語", 3) == "日本語");
    CHECK(display_safe("abc", 3) == "abc");
    CHECK(display_safe("abcd", 3) == "ab…");
  }
  SUBCASE("escapes are never cut") {
    CHECK(display_safe("ab\u202Ecdef", 10) == "ab…");
    CHECK(display_safe("ab\u202Ec", 11) == "ab<U+202E>c");
    CHECK(display_safe("ab\u202Ecd", 11) == "ab<U+202E>…");
  }
  SUBCASE("tiny limits") {
    CHECK(display_safe("abc", 0) == "");
    CHECK(display_safe("abc", 1) == "…");
    CHECK(display_safe("a", 1) == "a");
  }
  SUBCASE("default limit is 200 code points") {
    const std::string s = display_safe(std::string(1000, 'x'));
    CHECK(code_points(s) == 200);
    CHECK(s.substr(s.size() - 3) == "…");
  }
}

TEST_CASE("random input always comes out inert, valid and bounded") {
  std::uint64_t x = 0x2545F4914F6CDD1DULL;
  const auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int round = 0; round < 3000; ++round) {
    std::string s(next() % 120, '\0');
    for (char& c : s) c = static_cast<char>(next());
    if (round % 4 == 0) s += "\u202E\u200B\uFEFF";
    const std::size_t max = next() % 40;
    const std::string out = display_safe(s, max);
    CHECK(is_valid_utf8(out));
    CHECK(is_inert(out));
    CHECK(code_points(out) <= max);
  }
}
