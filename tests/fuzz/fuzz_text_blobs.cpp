// libFuzzer: the encoded-blob scanners over arbitrary text. Any crash, leak, UB or hang is a bug.
// cut_encoded_blobs (UTF-8 text): ordered, non-overlapping ranges inside the input, one
// placeholder per blob, and no more output than input plus placeholders.
// find_yenc_blocks (a text part's raw bytes), with the default limits and with small ones so that
// the limits are reached: ordered, non-overlapping blocks that start with "=ybegin " at a line start,
// at most max_blocks + 1 of them, a damaged block's bytes are exactly its raw range and a decoded
// one is no longer than it, and the segments are exactly the input without the blocks.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sanitizers/text_blobs.hpp"
#include "sanitizers/yenc_blocks.hpp"
#include "tests/fuzz/fuzz_checks.hpp"

namespace {

void check_yenc(std::string_view text, const mukai::sanitize::yenc_limits& limits) {
  const auto blocks = mukai::sanitize::find_yenc_blocks(text, limits);
  if (blocks.size() > limits.max_blocks + 1) mukai::fuzz::fail("fuzz_text_blobs", "yenc: too many blocks");
  std::size_t previous_end = 0, cut = 0;
  for (const auto& b : blocks) {
    if (b.begin < previous_end || b.begin >= b.end || b.end > text.size())
      mukai::fuzz::fail("fuzz_text_blobs", "yenc: block range");
    if (text.substr(b.begin, 8) != "=ybegin " || (b.begin > 0 && text[b.begin - 1] != '\n' && text[b.begin - 1] != '\r'))
      mukai::fuzz::fail("fuzz_text_blobs", "yenc: block not at an =ybegin line");
    const std::string_view raw = text.substr(b.begin, b.end - b.begin);
    if (b.problem.empty() ? b.bytes.size() > raw.size() : b.bytes != raw)
      mukai::fuzz::fail("fuzz_text_blobs", "yenc: block bytes");
    previous_end = b.end;
    cut += raw.size();
  }
  std::string joined;
  for (const auto segment : mukai::sanitize::yenc_text_segments(text, blocks)) joined += segment;
  if (joined.size() != text.size() - cut) mukai::fuzz::fail("fuzz_text_blobs", "yenc: segments");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto split = mukai::sanitize::cut_encoded_blobs(text);
  std::size_t previous_end = 0;
  for (std::size_t i = 0; i < split.blobs.size(); ++i) {
    const auto& b = split.blobs[i];
    if (b.begin < previous_end || b.begin > b.end || b.end > size) std::abort();
    previous_end = b.end;
    const std::string placeholder = "[[mukai-blob:" + std::to_string(i) + "]]";
    if (split.text.find(placeholder) == std::string::npos) std::abort();
  }
  if (split.text.size() > size + size / 13 + 1 + split.blobs.size() * 24) std::abort();

  check_yenc(text, {});
  check_yenc(text, {.max_blocks = 2, .max_size = 64, .max_line = 16, .line_slack = 1});
  return 0;
}
