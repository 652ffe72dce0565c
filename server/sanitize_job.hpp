// One message through the engine and into the quarantine: the single code path that
// `mukai sanitize`, the batch mode and the relay's sanitizer worker all use.
// Threading: sanitize_one is reentrant; sanitize_directory runs its own worker threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

#include "config/policy.hpp"
#include "sanitizers/engine.hpp"
#include "server/quarantine_store.hpp"

namespace mukai::server {

struct job_outcome {
  sanitize::result result;
  std::error_code store_error;  // the quarantine could not be written: the caller must not deliver
};

// Sanitizes `raw` and stores what the engine asks to keep (original, removed parts) in `store`
// (nullptr: keep nothing, for dry runs). The quarantine ID is chosen here.
[[nodiscard]] job_outcome sanitize_one(std::string_view raw, const config::policy& pol, quarantine_store* store,
                                       const quarantine_envelope& envelope, std::string received_by = {});

struct batch_summary {
  std::size_t total = 0, clean = 0, sanitized = 0, held = 0, failed = 0;
  std::uint64_t input_bytes = 0;
  double seconds = 0;
  std::string to_string() const;  // "1714 messages: 600 clean, 1000 sanitized, 14 held, 0 failed; 812.3 msg/s, 11.2 MB/s"
};

// Every regular file of input_dir (sorted by name) -> output_dir/<name>.eml and <name>.json.
// `progress` (optional) is called once per message with its name, verdict and seconds spent,
// from worker threads under a lock.
[[nodiscard]] batch_summary sanitize_directory(const std::filesystem::path& input_dir,
                                               const std::filesystem::path& output_dir, const config::policy& pol,
                                               quarantine_store* store, unsigned jobs,
                                               const std::function<void(const std::string&, const std::string&, double)>& progress = {});

}  // namespace mukai::server
