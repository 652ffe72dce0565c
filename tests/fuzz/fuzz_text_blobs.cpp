// libFuzzer: the encoded-blob scanner over arbitrary text. Any crash, leak, UB or hang is a
// bug; the result must be consistent: ordered, non-overlapping ranges inside the input, one
// placeholder per blob, and no more output than input plus placeholders.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sanitizers/text_blobs.hpp"

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
  return 0;
}
