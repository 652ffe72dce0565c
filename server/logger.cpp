#include "server/logger.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <system_error>

namespace mukai::server {

std::string_view to_string(log_level l) noexcept {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "info";
}

bool parse_log_level(std::string_view text, log_level& out) noexcept {
  for (log_level l : {log_level::debug, log_level::info, log_level::warning, log_level::error}) {
    if (text == to_string(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i] (1-4), or 0 if it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  char32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    cp = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  if (cp >= 0x80 && cp <= 0x9F) return 0;  // C1 controls (CSI 0x9B drives terminals)
  if (cp == 0x2028 || cp == 0x2029) return 0;  // line/paragraph separators split lines in viewers
  // Bidirectional controls reorder what a reader sees ("Trojan Source"): an address could display
  // as another one. ALM, LRM/RLM, embeddings/overrides, isolates.
  if (cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
    return 0;
  return n;
}

void append_hex(std::string& out, unsigned char b) {
  static constexpr char digits[] = "0123456789ABCDEF";
  out += "\\x";
  out += digits[b >> 4];
  out += digits[b & 0x0F];
}

}  // namespace

std::string escape_for_log(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b >= 0x20 && b < 0x7F) {
      if (b == '\\') out += '\\';
      out += static_cast<char>(b);
      ++i;
    } else if (b >= 0x80) {
      if (const std::size_t n = utf8_sequence_length(text, i)) {
        out.append(text.substr(i, n));
        i += n;
      } else {
        append_hex(out, b);
        ++i;
      }
    } else {
      append_hex(out, b);
      ++i;
    }
  }
  return out;
}

logger::logger(log_level threshold, const std::string& file, bool to_stderr, log_format format)
    : threshold_(threshold), to_stderr_(to_stderr), format_(format) {
  if (!file.empty()) {
    fd_ = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "cannot open log file " + file);
  }
}

logger::~logger() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

void write_all(int fd, std::string_view s) noexcept {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to report a failing log
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

bool parse_log_format(std::string_view text, log_format& out) noexcept {
  if (text == "json") {
    out = log_format::json;
  } else if (text == "text") {
    out = log_format::text;
  } else {
    return false;
  }
  return true;
}

namespace {

// "2026-11-22T01:35:12.345Z" (UTC, millisecond precision).
std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[96];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return stamp;
}

}  // namespace

void logger::write(log_level level, std::string_view text) noexcept {
  if (!enabled(level)) return;
  try {
    std::string line;
    if (format_ == log_format::json) {
      line = plain_line_json(timestamp(), to_string(level), text);
    } else {
      line = timestamp() + " " + std::string(to_string(level)) + ": " + escape_for_log(text);
    }
    line += '\n';
    emit(line);
  } catch (...) {
    // Out of memory while logging: drop the line rather than take the relay down.
  }
}

void logger::write(log_level level, const log_event& event) noexcept {
  if (!enabled(level)) return;
  try {
    std::string line;
    if (format_ == log_format::json) {
      line = event.to_json(timestamp(), to_string(level));
    } else {
      // to_text() escaped every value already: no second escape_for_log (it would double backslashes).
      line = timestamp() + " " + std::string(to_string(level)) + ": " + event.to_text();
    }
    line += '\n';
    emit(line);
  } catch (...) {
  }
}

void logger::emit(const std::string& line) noexcept {
  const std::lock_guard lock(mutex_);
  if (to_stderr_) write_all(STDERR_FILENO, line);
  if (fd_ >= 0) write_all(fd_, line);
}

}  // namespace mukai::server
