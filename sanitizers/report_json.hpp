// The JSON form of the engine's report: written by `mukai sanitize --report`, by the sanitizer
// worker to hand its verdict to the relay, and into each quarantine item's meta.json.
//
// Shape (keys exactly; documented in the README):
//   { "verdict": "clean"|"sanitized"|"held", "reasons": [str], "warnings": [str],
//     "quarantine_id": str|null, "actions": [str],
//     "parts": [ { "path": str, "declared_type": str, "detected_type": str, "filename": str,
//                  "size": uint, "sha256": str,
//                  "action": "kept-as-text"|"converted"|"quarantined"|"discarded",
//                  "reason": str, "flags": [str] } ] }
//
// Invariants: every string that goes in is valid UTF-8 (invalid sequences become U+FFFD), because
// Boost.JSON serialises a string's bytes as they are and a hostile filename must not make the
// verdict or meta.json unparsable. report_from_json is strict: a missing key, a wrong type or an
// unknown enum name yields nullopt, and the relay treats that as a verdict that does not parse
// (fail closed). Unknown extra keys are ignored so that a newer writer's meta.json stays readable.
// Threading: pure functions, reentrant.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "sanitizers/report.hpp"

namespace mukai::sanitize {

[[nodiscard]] boost::json::object to_json(const report& r);

// Strict inverse of to_json; nullopt for anything to_json could not have produced
// (a size that is negative or not an integer, a sha256 that is neither empty nor 64 lower-case
// hex digits, an unknown verdict or action, ...).
[[nodiscard]] std::optional<report> report_from_json(const boost::json::value& v);

// to_json rendered for people: one key per line, two-space indent, a final newline.
[[nodiscard]] std::string to_json_text(const report& r);

// Any JSON value rendered the same way (meta.json uses it). Every string and number is produced by
// boost::json::serialize, so escaping is Boost's; this adds only white space between tokens.
[[nodiscard]] std::string format_json_text(const boost::json::value& v);

// The bytes of s with every ill-formed UTF-8 sequence replaced by U+FFFD (one per maximal
// subpart, as Unicode recommends). Use it for any untrusted text that goes into JSON.
[[nodiscard]] std::string to_valid_utf8(std::string_view s);

}  // namespace mukai::sanitize
