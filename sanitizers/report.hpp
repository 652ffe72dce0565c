// The engine's report: what it decided for a message and each MIME leaf.
// This is the contract with the relay, the quarantine index and `mukai sanitize --report`;
// its JSON form (report_json.hpp) is documented in the README.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mukai::sanitize {

enum class verdict { clean, sanitized, held };
enum class part_action { kept_as_text, converted, quarantined, discarded };

struct part_report {
  std::string path;           // MIME path, "1", "1.2", "2.1.1"; "" for a single-part message body
  std::string declared_type;  // lower-case type/subtype as declared (or the RFC 2045 default)
  std::string detected_type;  // libmagic on the decoded bytes
  std::string filename;       // decoded (RFC 2231/2047), UTF-8, as sent (not display-safe)
  std::uint64_t size = 0;     // decoded bytes
  std::string sha256;         // of the decoded bytes, lower-case hex
  part_action action = part_action::kept_as_text;
  std::string reason;         // why this action, e.g. "attachment", "html-to-text", "rule:executable"
  std::vector<std::string> flags;  // content flags, e.g. "executable", "double-extension"
};

struct report {
  verdict result = verdict::clean;
  std::vector<std::string> reasons;   // why held / what was done, machine-readable tokens
  std::vector<std::string> warnings;  // tolerated oddities (charset detected, missing final boundary, ...)
  std::optional<std::string> quarantine_id;
  std::vector<part_report> parts;
  std::vector<std::string> actions;   // the X-Mukai-Sanitized list, e.g. "html-to-text", "attachments-removed=2"
};

const char* to_string(verdict v) noexcept;
const char* to_string(part_action a) noexcept;

}  // namespace mukai::sanitize
