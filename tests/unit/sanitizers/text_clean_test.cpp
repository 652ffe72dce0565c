// Tests for sanitizers/text_clean: what clean_text keeps, drops and rewrites, the junk ratio, and
// both against byte-at-a-time reference versions (the engine's original loops) on generated text,
// with the interesting bytes at every offset of an 8-byte word (the scanners skip whole words).
#include "sanitizers/text_clean.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "sanitizers/display_safe.hpp"

using namespace mukai::sanitize;

namespace {

// The definitions, one byte at a time.
std::string reference_clean_text(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      if (i + 1 < s.size() && s[i + 1] == '\n') continue;
      out += '\n';
    } else if (c == '\t' || c == '\n') {
      out += static_cast<char>(c);
    } else if (c == 0x0C) {
      out += "\n\n";
    } else if (c < 0x20 || c == 0x7F) {
      continue;
    } else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      ++i;
    } else if (const std::size_t n = bidi_reordering_control_at(s, i)) {
      i += n - 1;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

double reference_junk_ratio(std::string_view s) {
  if (s.empty()) return 0;
  std::size_t junk = 0, chars = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) == 0x80) continue;
    ++chars;
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != 0x0C && c != 0x1B) || c == 0x7F) ++junk;
    if (c == 0xEF && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xBF &&
        static_cast<unsigned char>(s[i + 2]) == 0xBD)
      ++junk;
  }
  return chars ? static_cast<double>(junk) / static_cast<double>(chars) : 0;
}

// Pieces that matter to the scanners: controls, C1 and bidi encodings (and near misses), U+FFFD,
// multi-byte text, and plain runs of several lengths.
const std::vector<std::string> pieces = {"\r\n",
                                         "\r",
                                         "\n",
                                         "\t",
                                         "\x0c",
                                         std::string(1, '\0'),
                                         "\x01",
                                         "\x1b",
                                         "\x1f",
                                         "\x7f",
                                         " ",
                                         "a",
                                         "plain text ",
                                         "0123456789abcdef",
                                         "\xc2\x80",
                                         "\xc2\x85",
                                         "\xc2\x9f",
                                         "\xc2\xa0",
                                         "\xe2\x80\xaa",
                                         "\xe2\x80\xae",
                                         "\xe2\x81\xa6",
                                         "\xe2\x81\xa9",
                                         "\xe2\x80\xa9",
                                         "\xe2\x80\xa6",
                                         "\xe2\x81\xaa",
                                         "\xef\xbf\xbd",
                                         "\xef\xbc\x81",
                                         "\xe6\x97\xa5\xe6\x9c\xac",
                                         "\xf0\x9f\x98\x80",
                                         "\xc3\xa9"};

std::string generate(std::mt19937& rng, std::size_t max_pieces) {
  std::string s;
  const std::size_t n = rng() % max_pieces;
  for (std::size_t i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
  return s;
}

}  // namespace

TEST_CASE("clean_text: line ends, controls, C1 and bidi controls") {
  CHECK(clean_text("a\r\nb\rc\nd") == "a\nb\nc\nd");
  CHECK(clean_text("a\r\r\nb") == "a\n\nb");
  CHECK(clean_text("x\ty\x0cz") == "x\ty\n\nz");
  CHECK(clean_text(std::string("a\0b\x01"
                               "c\x1b"
                               "d\x7f"
                               "e",
                               10)) == "abcde");
  CHECK(clean_text("a\xc2\x85"
                   "b\xc2\xa0"
                   "c") ==
        "ab\xc2\xa0"
        "c");  // NEL goes, NBSP stays
  CHECK(clean_text("file\xe2\x80\xaetxt.exe") == "filetxt.exe");
  CHECK(clean_text("\xe2\x81\xa6"
                   "a\xe2\x81\xa9") == "a");
  CHECK(clean_text("a\xe2\x80\xa6"
                   "b") ==
        "a\xe2\x80\xa6"
        "b");  // an ordinary 0xE2 character
  CHECK(clean_text("\xe6\x97\xa5\xe6\x9c\xac\r\n") == "\xe6\x97\xa5\xe6\x9c\xac\n");
  CHECK(clean_text("") == "");
  CHECK(clean_text("\r") == "\n");
}

TEST_CASE("junk_ratio: controls and U+FFFD per character") {
  CHECK(junk_ratio("") == 0);
  CHECK(junk_ratio("text\r\n\t\x0c\x1b") == 0);
  CHECK(junk_ratio(std::string("ab\0d", 4)) == doctest::Approx(0.25));
  CHECK(junk_ratio("a\xef\xbf\xbd") == doctest::Approx(0.5));
  CHECK(junk_ratio("\xe6\x97\xa5\x7f") == doctest::Approx(0.5));  // two characters, one of them DEL
  CHECK(junk_ratio("\xef\xbf") == 0);                             // a cut U+FFFD is no U+FFFD
}

TEST_CASE("clean_text and junk_ratio agree with the byte-at-a-time definitions") {
  std::mt19937 rng(20240611);
  for (int round = 0; round < 20000; ++round) {
    std::string s = generate(rng, round % 50 == 0 ? 400 : 24);
    // Shift the content through every offset within an 8-byte word.
    for (std::size_t shift = 0; shift < 8; ++shift) {
      const std::string t = std::string(shift, 'x') + s;
      INFO("input bytes: " << t.size());
      REQUIRE(clean_text(t) == reference_clean_text(t));
      REQUIRE(junk_ratio(t) == reference_junk_ratio(t));
    }
  }
}

TEST_CASE("clean_text: long plain runs are copied whole, specials at the end still handled") {
  std::string s(100000, 'X');
  s += "\xc2\x85\r";
  CHECK(clean_text(s) == std::string(100000, 'X') + "\n");
  CHECK(junk_ratio(s) == 0);
}
