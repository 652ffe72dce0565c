// Tests for sanitizers/output_check's meets_output_invariant (implemented in output_message.cpp):
// each rule on its own, and the whole against a byte-at-a-time reference on generated messages.
#include "sanitizers/output_check.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <string_view>

using namespace mukai::sanitize;

namespace {

// The rules, one byte at a time: every line CRLF-terminated and at most 998 octets, no NUL, no
// bare CR or LF, 7-bit header lines, and a header/body separator.
bool reference_invariant(std::string_view m) {
  bool in_headers = true;
  std::size_t pos = 0;
  while (pos < m.size()) {
    const std::size_t lf = m.find('\n', pos);
    if (lf == std::string_view::npos || lf == pos || m[lf - 1] != '\r') return false;
    const std::string_view line = m.substr(pos, lf - 1 - pos);
    if (line.size() > 998) return false;
    for (const char c : line) {
      const auto u = static_cast<unsigned char>(c);
      if (u == 0 || u == '\r' || u == '\n') return false;
      if (in_headers && u >= 0x80) return false;
    }
    if (line.empty()) in_headers = false;
    pos = lf + 1;
  }
  return !in_headers;
}

}  // namespace

TEST_CASE("meets_output_invariant: each rule") {
  using namespace std::string_literals;
  CHECK(meets_output_invariant("A: b\r\n\r\nbody\r\n"));
  CHECK(meets_output_invariant("A: b\r\n\r\n"));
  CHECK(meets_output_invariant("A: b\r\n\r\n\xe6\x97\xa5\r\n"));  // 8-bit body
  CHECK_FALSE(meets_output_invariant(""));
  CHECK_FALSE(meets_output_invariant("A: b\r\n"));                 // no separator
  CHECK_FALSE(meets_output_invariant("A: \xe6\x97\xa5\r\n\r\n"));  // 8-bit header
  CHECK_FALSE(meets_output_invariant("A: b\r\n\r\nbody"));         // no final CRLF
  CHECK_FALSE(meets_output_invariant("A: b\n\r\nbody\r\n"));       // bare LF
  CHECK_FALSE(meets_output_invariant("A: b\r\n\r\nx\ry\r\n"));     // bare CR
  CHECK_FALSE(meets_output_invariant("A: b\r\n\r\nx\r\r\n"));
  CHECK_FALSE(meets_output_invariant("A: b\r\n\r\nx\0y\r\n"s));
  CHECK_FALSE(meets_output_invariant("A: \0\r\n\r\n"s));
  CHECK(meets_output_invariant("A: b\r\n\r\n" + std::string(998, 'x') + "\r\n"));
  CHECK_FALSE(meets_output_invariant("A: b\r\n\r\n" + std::string(999, 'x') + "\r\n"));
}

TEST_CASE("meets_output_invariant agrees with the byte-at-a-time rules") {
  std::mt19937 rng(99);
  const std::string_view pieces[] = {"\r\n", "\r\n", "\r\n\r\n", "\r",           "\n",
                                     "A: b", "text", " ",        "\xe6\x97\xa5", std::string_view("\0", 1),
                                     "\xff"};
  for (int round = 0; round < 50000; ++round) {
    std::string m = round % 3 == 0 ? "H: v\r\n\r\n" : "";
    for (int k = static_cast<int>(rng() % 12); k > 0; --k) m += pieces[rng() % std::size(pieces)];
    if (rng() % 50 == 0) m += std::string(990 + rng() % 20, 'y') + "\r\n";
    REQUIRE(meets_output_invariant(m) == reference_invariant(m));
  }
}
