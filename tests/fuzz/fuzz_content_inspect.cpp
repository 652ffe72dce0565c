// libFuzzer: content inspection of a removed part. The first input byte picks the file name
// and declared type (so extension-driven paths are reached), the rest is the part's bytes.
// Any crash, leak, UB or hang is a bug; the facts must stay within their documented limits.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sanitizers/content_inspect.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 8> names{{
      {"a.zip", "application/zip"},
      {"a.docm", "application/vnd.ms-word.document.macroEnabled.12"},
      {"a.pdf", "application/pdf"},
      {"a.doc", "application/msword"},
      {"x.scr.xz", "application/octet-stream"},
      {"photo.jpg", "image/jpeg"},
      {"a.tar.gz", ""},
      {"", "text/plain"},
  }};
  if (size == 0) return 0;
  const auto& [name, type] = names[data[0] % names.size()];
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const mukai::sanitize::inspect_limits limits;
  const auto facts = mukai::sanitize::inspect_content(bytes, name, type, limits);
  if (facts.archive_entries.size() > limits.max_listed_entries) std::abort();
  if (facts.archive_entries.size() > facts.archive_entry_count) std::abort();
  return 0;
}
