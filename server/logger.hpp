// The relay's log: one line per event, to stderr (journald under systemd) and optionally appended
// to [log] file.
//
// Two formats ([log] format):
//  - json (default): one JSON object per line: {"time":"2026-11-22T01:35:12.345Z","level":"info",
//    "msg":"<text>"} for plain lines, {"time","level","event","queue_id",<fields>} for the
//    structured events of log_event.hpp (one per message event: received, sanitized, ...).
//  - text: "2026-11-22T01:35:12.345Z info: <text>" (UTC, millisecond precision); events as
//    "<ID>: <event> key=value ...".
// Lines about a message carry its queue ID (ARCHITECTURE.md: every log line about a message
// carries its ID), so `grep ID` gives a message's whole history in either format.
//
// Invariant: a line is one line. Text reaching the log often comes from the network (addresses,
// HELO names, the next hop's replies, decoded Subject lines): escape_for_log() turns every control
// byte, DEL, backslash and byte that is not part of valid UTF-8 into \xHH (\\ for backslash), so a
// hostile value can neither forge a log line, nor drive a terminal through escape sequences, nor
// make a log reader choke on invalid UTF-8; bidirectional controls (U+202A-202E, U+2066-2069,
// U+200E/200F, U+061C) are escaped the same way so a value cannot display reordered. Japanese text
// stays readable. JSON lines apply the same escaping to every value before JSON encoding.
//
// Threading: write() is safe from any thread (one mutex; a line is written with one write(2) per
// sink, so lines never interleave even with other processes appending to the same file).
#pragma once

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

#include "server/log_event.hpp"
#include "server/smtp_server.hpp"

namespace mukai::server {

using log_level = smtp_log_level;

[[nodiscard]] std::string_view to_string(log_level l) noexcept;
// "debug" | "info" | "warning" | "error" into `out`; false (and `out` unchanged) for anything else.
[[nodiscard]] bool parse_log_level(std::string_view text, log_level& out) noexcept;

enum class log_format : std::uint8_t { json, text };
// "json" | "text" into `out`; false (and `out` unchanged) for anything else.
[[nodiscard]] bool parse_log_format(std::string_view text, log_format& out) noexcept;

// See above. Valid UTF-8 other than C0/C1, line separator and bidi controls passes unchanged.
[[nodiscard]] std::string escape_for_log(std::string_view text);

class logger {
 public:
  // Lines below `threshold` are dropped. `file`: "" for stderr only; otherwise opened for append
  // (created 0640). Throws std::system_error if the file cannot be opened (start-up).
  explicit logger(log_level threshold = log_level::info, const std::string& file = {}, bool to_stderr = true,
                  log_format format = log_format::text);
  ~logger();
  logger(const logger&) = delete;
  logger& operator=(const logger&) = delete;

  // Writes one line; `text` is escaped here (callers pass raw values).
  void write(log_level level, std::string_view text) noexcept;
  // One structured event (its values are escaped by log_event).
  void write(log_level level, const log_event& event) noexcept;
  [[nodiscard]] bool enabled(log_level level) const noexcept { return level >= threshold_.load(std::memory_order_relaxed); }
  void set_threshold(log_level level) noexcept { threshold_.store(level, std::memory_order_relaxed); }
  [[nodiscard]] log_format format() const noexcept { return format_; }

 private:
  void emit(const std::string& line) noexcept;
  std::atomic<log_level> threshold_;  // changed by a reload while other threads log
  int fd_ = -1;
  bool to_stderr_;
  log_format format_;
  std::mutex mutex_;
};

}  // namespace mukai::server
