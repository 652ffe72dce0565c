// line_scan: line_break_scanner and has_8bit agree with the obvious byte loops on random buffers,
// for every query position (in order, as the parsers ask, and out of order), at every length
// around the 32-byte blocks of has_8bit.
#include "server/line_scan.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>

using namespace mukai::server;

namespace {

std::size_t naive_next_break(std::string_view s, std::size_t pos) {
  for (std::size_t i = pos; i < s.size(); ++i)
    if (s[i] == '\r' || s[i] == '\n') return i;
  return s.size();
}

bool naive_has_8bit(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  return false;
}

std::string random_text(std::mt19937& rng, std::size_t n, std::string_view alphabet) {
  std::string s(n, ' ');
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  for (char& c : s) c = alphabet[pick(rng)];
  return s;
}

}  // namespace

TEST_CASE("line_break_scanner: the first CR or LF at or after each position") {
  CHECK(line_break_scanner("").next(0) == 0);
  CHECK(line_break_scanner("abc").next(0) == 3);
  CHECK(line_break_scanner("a\r\nb").next(0) == 1);
  CHECK(line_break_scanner("a\r\nb").next(2) == 2);
  CHECK(line_break_scanner("a\r\nb").next(3) == 4);
  CHECK(line_break_scanner("a\r\nb").next(9) == 4);  // past the end: the end

  std::mt19937 rng(20261122);
  // Mostly text (long runs), only CRs, only LFs, and dense mixes.
  for (std::string_view alphabet : {std::string_view("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"), std::string_view("ab\r"),
                                    std::string_view("ab\n"), std::string_view("\r\n"), std::string_view("a\r\n.")}) {
    for (int round = 0; round < 200; ++round) {
      const std::string s = random_text(rng, rng() % 300, alphabet);
      CAPTURE(s);
      // In order, stepping past each break as the parsers do.
      line_break_scanner in_order(s);
      for (std::size_t pos = 0; pos <= s.size();) {
        const std::size_t got = in_order.next(pos);
        REQUIRE(got == naive_next_break(s, pos));
        pos = got + 1 + rng() % 3;
      }
      // Any order, including going back.
      line_break_scanner any(s);
      for (int q = 0; q < 50; ++q) {
        const std::size_t pos = rng() % (s.size() + 2);
        REQUIRE(any.next(pos) == naive_next_break(s, pos));
      }
    }
  }
}

TEST_CASE("has_8bit: one 8-bit byte anywhere, at every length") {
  std::mt19937 rng(7);
  for (std::size_t n = 0; n <= 100; ++n) {
    std::string s = random_text(rng, n, "abcdefghijklmnopqrstuvwxyz\r\n\t \x7f");
    CAPTURE(n);
    CHECK_FALSE(has_8bit(s));
    for (std::size_t at = 0; at < n; ++at) {
      for (unsigned char c : {0x80, 0xff, 0xe3}) {
        std::string t = s;
        t[at] = static_cast<char>(c);
        REQUIRE(has_8bit(t));
      }
    }
  }
  for (int round = 0; round < 500; ++round) {
    std::string s = random_text(rng, rng() % 200, "ab");
    if (rng() % 2 && !s.empty()) s[rng() % s.size()] = static_cast<char>(0x80 + rng() % 128);
    REQUIRE(has_8bit(s) == naive_has_8bit(s));
  }
}
