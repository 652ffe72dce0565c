// The relay's log: one line per event, to stderr (journald under systemd) and optionally appended
// to [log] file.
//
// Line format: "2026-11-22T01:35:12.345Z info: <text>" (UTC, millisecond precision). Lines about a
// message carry its queue ID as "<ID>: ..." (ARCHITECTURE.md: every log line about a message
// carries its ID), so `grep ID` gives a message's whole history.
//
// Invariant: a line is one line. Text reaching the log often comes from the network (addresses,
// HELO names, the next hop's replies, decoded Subject lines): escape_for_log() turns every control
// byte, DEL, backslash and byte that is not part of valid UTF-8 into \xHH (\\ for backslash), so a
// hostile value can neither forge a log line, nor drive a terminal through escape sequences, nor
// make a log reader choke on invalid UTF-8. Japanese text stays readable.
//
// Threading: write() is safe from any thread (one mutex; a line is written with one write(2) per
// sink, so lines never interleave even with other processes appending to the same file).
#pragma once

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

#include "server/smtp_server.hpp"

namespace mukai::server {

using log_level = smtp_log_level;

[[nodiscard]] std::string_view to_string(log_level l) noexcept;
// "debug" | "info" | "warning" | "error" into `out`; false (and `out` unchanged) for anything else.
[[nodiscard]] bool parse_log_level(std::string_view text, log_level& out) noexcept;

// See above. Valid UTF-8 other than C0/C1 controls, U+2028/2029 and the bidi controls (U+061C,
// U+200E/200F, U+202A-202E, U+2066-2069) passes unchanged.
[[nodiscard]] std::string escape_for_log(std::string_view text);

class logger {
 public:
  // Lines below `threshold` are dropped. `file`: "" for stderr only; otherwise opened for append
  // (created 0640). Throws std::system_error if the file cannot be opened (start-up).
  explicit logger(log_level threshold = log_level::info, const std::string& file = {}, bool to_stderr = true);
  ~logger();
  logger(const logger&) = delete;
  logger& operator=(const logger&) = delete;

  // Writes one line; `text` is escaped here (callers pass raw values).
  void write(log_level level, std::string_view text) noexcept;
  [[nodiscard]] bool enabled(log_level level) const noexcept { return level >= threshold_; }
  void set_threshold(log_level level) noexcept { threshold_ = level; }

 private:
  log_level threshold_;
  int fd_ = -1;
  bool to_stderr_;
  std::mutex mutex_;
};

}  // namespace mukai::server
