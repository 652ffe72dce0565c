// Word-at-a-time byte tests for the linear scanners over whole text bodies (text cleaning, the
// junk ratio, the link scan, charset checks). Why: those scanners look for a few rare bytes in
// 100 KB and more of ordinary text, and testing eight bytes with a handful of integer operations
// costs a fraction of a table lookup per byte. Each test only says whether a word contains such a
// byte; the caller then looks at that word byte by byte with its ordinary (exact) rules, so a
// word-level test can decide speed but never a result.
// Invariants: the tests are exact for "some byte of the word ...": no false negatives (a
// word with such a byte is never skipped) and no false positives.
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <cstring>

namespace mukai::sanitize::byte_scan {

inline constexpr std::uint64_t ones = 0x0101010101010101ull;
inline constexpr std::uint64_t high_bits = 0x8080808080808080ull;

// The eight bytes at p (any alignment) as one word; byte order does not matter to the tests below.
inline std::uint64_t load8(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// Nonzero iff some byte of w is below n, for n <= 0x80. Without such a byte no subtraction borrows
// across bytes, and (b - n) has its high bit set only when b < n or b >= 0x80 + n; ~w removes the
// bytes >= 0x80. With such a byte, the lowest one sets its own high bit.
constexpr std::uint64_t any_byte_below(std::uint64_t w, unsigned char n) noexcept {
  return (w - ones * n) & ~w & high_bits;
}

// Nonzero iff some byte of w equals c.
constexpr std::uint64_t any_byte_equal(std::uint64_t w, unsigned char c) noexcept {
  return any_byte_below(w ^ (ones * c), 1);
}

// Nonzero iff some byte of w is >= 0x80.
constexpr std::uint64_t any_byte_8bit(std::uint64_t w) noexcept { return w & high_bits; }

// Number of bytes >= 0x80 in w (the marks, one bit per byte, summed into the top byte).
constexpr int count_8bit(std::uint64_t w) noexcept {
  return static_cast<int>((((w & high_bits) >> 7) * ones) >> 56);
}

// Number of UTF-8 continuation bytes (10xxxxxx) in w: bit 7 set and bit 6 clear. The marks (one
// bit per byte) are summed by a multiplication into the top byte: std::popcount is a libgcc call
// on the baseline x86-64 target (no POPCNT instruction).
constexpr int continuation_bytes(std::uint64_t w) noexcept {
  const std::uint64_t marks = (w & ~(w << 1) & high_bits) >> 7;  // 0 or 1 in each byte
  return static_cast<int>((marks * ones) >> 56);
}

}  // namespace mukai::sanitize::byte_scan
