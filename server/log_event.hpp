// One structured log event: a name ("received", "sanitized", "delivered"...), the queue ID and
// typed fields, rendered by the logger as one JSON object per line ([log] format = "json") or as
// "ID: event key=value ..." ([log] format = "text"). The field names of every event are listed in
// docs/deployment.md ("Logs").
//
// Escaping: every string value is passed through escape_for_log() when it is added (controls,
// DEL, invalid UTF-8, C1 controls, line separators and bidirectional controls become \xHH, a
// backslash \\), then Boost.JSON serializes it. So the JSON is valid whatever a message carried,
// and a value decoded by a log reader (jq -r) still cannot drive a terminal or reorder text: the
// decoded value is the same safe text the text format shows. Keys are our own constants.
//
// Threading: a log_event is built and rendered by one thread.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::server {

class log_event {
 public:
  // `queue_id` may be empty (session events).
  explicit log_event(std::string_view event, std::string_view queue_id = {});

  log_event& add(std::string_view key, std::string_view value);  // escaped here
  log_event& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  log_event& add(std::string_view key, const std::string& value) { return add(key, std::string_view(value)); }
  log_event& add(std::string_view key, bool value);
  log_event& add(std::string_view key, std::uint64_t value);
  log_event& add(std::string_view key, double value);
  log_event& add(std::string_view key, const std::vector<std::string>& values);  // each escaped
  // Nested values: build their strings with clean().
  log_event& add_value(std::string_view key, boost::json::value value);

  // escape_for_log(raw) as a JSON string.
  [[nodiscard]] static boost::json::string clean(std::string_view raw);

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const boost::json::object& fields() const noexcept { return fields_; }

  // {"time":..., "level":..., "event":..., "queue_id":..., fields...} (no newline).
  [[nodiscard]] std::string to_json(std::string_view time, std::string_view level) const;
  // "ID: event key=value ..." (strings with spaces, quotes or '=' and nested values as JSON).
  [[nodiscard]] std::string to_text() const;

 private:
  std::string name_;
  std::string queue_id_;
  boost::json::object fields_;
};

// For the quarantine service: an operator's "released" or "deleted" of quarantine item
// `quarantine_id` (queue_id: the message's queue ID when known; recipients: where a release went).
// Log it with logger::write(log_level::info, ...).
[[nodiscard]] log_event quarantine_action_event(std::string_view action, std::string_view quarantine_id,
                                                std::string_view queue_id, std::string_view operator_name,
                                                const std::vector<std::string>& recipients, std::string_view reason);

// A plain line as JSON: {"time":..., "level":..., "msg": escaped text}.
[[nodiscard]] std::string plain_line_json(std::string_view time, std::string_view level, std::string_view text);

}  // namespace mukai::server
