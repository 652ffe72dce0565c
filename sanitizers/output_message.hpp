// Building the one message mukai sends on: allow-listed headers rebuilt from decoded values,
// mukai's own X-Mukai-* headers, and one text/plain body. The result is checked against the
// output invariant before it is returned.
// Threading: GMime objects of the calling thread only.
#pragma once

#include <string>
#include <string_view>

#include "config/policy.hpp"
#include "sanitizers/header_fields.hpp"
#include "sanitizers/output_check.hpp"
#include "sanitizers/report.hpp"

namespace mukai::sanitize {

struct output_spec {
  const header_fields* fields = nullptr;  // null: the original headers are unusable
  bool held = false;                      // a hold notice: subject marked, body is the notice
  std::string body;                       // UTF-8, LF line ends
  const report* rep = nullptr;
  std::string received;                   // trace line value, "" for none
};

// The serialised message with CRLF line ends, or "" if it would break the output invariant.
std::string build_output_message(const output_spec& spec, const config::policy& pol);

}  // namespace mukai::sanitize
