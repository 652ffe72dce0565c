// Display width: what a Japanese fixed-width terminal or mail viewer shows, used for table alignment.
#include "sanitizers/text_width.hpp"

#include <doctest/doctest.h>

#include <string>

using mukai::sanitize::code_point_width;
using mukai::sanitize::display_width;

TEST_CASE("ASCII is one column per character, empty is zero") {
  CHECK(display_width("") == 0);
  CHECK(display_width("abc 123") == 7);
  CHECK(display_width("Hello, world!") == 13);
}

TEST_CASE("Japanese full-width characters are two columns") {
  CHECK(display_width("日本語") == 6);
  CHECK(display_width("ひらがな") == 8);
  CHECK(display_width("カタカナ") == 8);
  CHECK(display_width("ＡＢＣ１２３") == 12);  // full-width Latin and digits (F)
  CHECK(display_width("、。「」") == 8);       // Japanese punctuation (W)
  CHECK(display_width("山田 Taro") == 9);
}

TEST_CASE("half-width katakana is one column") { CHECK(display_width("ｶﾀｶﾅ") == 4); }

TEST_CASE("East Asian ambiguous characters count two in a Japanese context") {
  CHECK(display_width("○") == 2);
  CHECK(display_width("※") == 2);
  CHECK(display_width("α") == 2);
  CHECK(display_width("→") == 2);
}

TEST_CASE("combining marks and zero-width characters take no column") {
  CHECK(display_width("e\xCC\x81") == 1);       // e + COMBINING ACUTE ACCENT
  CHECK(display_width("か\xE3\x82\x99") == 2);  // か + COMBINING KATAKANA-HIRAGANA VOICED SOUND MARK
  CHECK(display_width("a\xE2\x80\x8B"
                      "b") == 2);  // ZERO WIDTH SPACE
  CHECK(display_width("a\xE2\x80\x8D"
                      "b") == 2);             // ZERO WIDTH JOINER
  CHECK(display_width("\xEF\xB8\x8F") == 0);  // VARIATION SELECTOR-16
  CHECK(display_width("a\tb\x01") == 2);      // controls are not glyphs
}

TEST_CASE("emoji are wide") {
  CHECK(display_width("\xF0\x9F\x8E\x89") == 2);  // U+1F389 PARTY POPPER
}

TEST_CASE("each invalid UTF-8 byte counts one column") {
  CHECK(display_width("\xFF") == 1);
  CHECK(display_width("a\xFF"
                      "b") == 3);
  CHECK(display_width("\xE3\x81") == 2);          // truncated 3-byte sequence
  CHECK(display_width("\xC0\xAF") == 2);          // overlong '/'
  CHECK(display_width("\xED\xA0\x80") == 3);      // UTF-16 surrogate encoded in UTF-8
  CHECK(display_width("\xF4\x90\x80\x80") == 4);  // above U+10FFFF
  CHECK(display_width("\x80\x80") == 2);          // stray continuation bytes
  CHECK(display_width("日\xFF本") == 5);
}

TEST_CASE("code_point_width matches the table rules") {
  CHECK(code_point_width(U'a') == 1);
  CHECK(code_point_width(U'あ') == 2);
  CHECK(code_point_width(0x0301) == 0);
  CHECK(code_point_width(0x200B) == 0);
  CHECK(code_point_width(0x00AD) == 1);  // soft hyphen, shown as a hyphen by terminals
  CHECK(code_point_width(0x1160) == 0);  // Hangul jungseong filler joins the syllable
  CHECK(code_point_width(U'한') == 2);
}
