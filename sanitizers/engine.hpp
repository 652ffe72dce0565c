// The sanitization engine's entry point: one raw RFC 5322 message in, one harmless text/plain
// message, a report, and the bytes to quarantine out. No I/O: the caller stores what it returns.
// Threading: reentrant; each call uses its own GMime objects and the calling thread's libmagic cookie.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/policy.hpp"
#include "sanitizers/report.hpp"

namespace mukai::sanitize {

struct request {
  std::string quarantine_id;  // chosen by the caller before the call; written into the notice
  std::string received_by;    // optional Received trace line value to prepend ("" for none)
};

struct removed_part {
  std::string path;     // as in part_report
  std::string sha256;   // of bytes
  std::string filename; // decoded, as sent
  std::string bytes;    // decoded content
};

// The original's identifying headers, decoded to UTF-8 (for the quarantine index and logs;
// escape before display).
struct message_headers {
  std::string from, to, subject, date, message_id;
};

struct result {
  std::string output;                 // the sanitized message, CRLF line ends
  report rep;
  message_headers headers;
  std::vector<removed_part> quarantine;  // parts to store (action quarantined)
  bool quarantine_original = false;      // store the raw original too (any removal or a hold)
  // The body text of `output` as UTF-8 (the notice and the text the recipient reads), before the
  // transfer encoding: what the operators' console shows as "what the recipient got" without the
  // relay parsing MIME. Filled only when quarantine_original (an item will be stored); at most
  // the policy's max_decoded_output plus the notice.
  std::string body_text;
};

// Never throws for any input; never returns a partial original. A message that cannot be made
// harmless yields verdict held and a short hold notice as output.
[[nodiscard]] result sanitize_message(std::string_view raw, const config::policy& pol, const request& req);

}  // namespace mukai::sanitize
