// The text a reader sees about what mukai did: the notice block at the top of a sanitized
// message and the body of a hold notice. Japanese by default, English by policy, both
// overridable by templates in the config. Everything taken from the message goes through
// display_safe() first (bidi and control characters neutralised).
#pragma once

#include <string>
#include <vector>

#include "config/policy.hpp"
#include "sanitizers/report.hpp"

namespace mukai::sanitize {

struct notice_summary {
  bool html_converted = false;
  int links_defanged = 0;
  int links_removed = 0;
  int phishing_cues = 0;
  bool signature_removed = false;
  bool charset_guessed = false;
};

// The block placed above the body of a sanitized message (ends with a blank line).
std::string render_sanitized_notice(const config::policy& pol, const report& rep, const notice_summary& summary);

struct hold_facts {
  std::string from, subject, date;  // decoded UTF-8 from the original (may be empty)
  std::vector<std::string> reasons; // report reason tokens
  std::string quarantine_id;
};
// The whole body of the notice sent instead of a held message.
std::string render_hold_notice(const config::policy& pol, const hold_facts& facts);

// A reason token ("limit:mime-depth", "encrypted", "ambiguous:conflicting-header") in words.
std::string describe_reason(std::string_view token, config::language lang);

// "12,345"
std::string group_thousands(std::uint64_t n);

// Replaces {name} placeholders; unknown names stay as written.
std::string fill_template(std::string_view tmpl, const std::vector<std::pair<std::string, std::string>>& values);

}  // namespace mukai::sanitize
