// libFuzzer: raw message bytes through the whole engine with the default policy. Any crash,
// leak, UB or hang is a bug; the output must always meet the invariant.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sanitizers/engine.hpp"
#include "sanitizers/output_message.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const mukai::config::policy pol = [] {
    mukai::config::policy p;
    p.limit.max_processing_time = std::chrono::milliseconds(5000);
    return p;
  }();
  mukai::sanitize::request req;
  req.quarantine_id = "20260101T000000Z-FUZZFUZZFU";
  auto r = mukai::sanitize::sanitize_message(std::string_view(reinterpret_cast<const char*>(data), size), pol, req);
  if (!mukai::sanitize::meets_output_invariant(r.output)) std::abort();
  return 0;
}
