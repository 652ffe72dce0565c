// The audit log: one JSON line per record, one write(2) on O_APPEND, fsync. See audit_log.hpp.
#include "server/audit_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <cerrno>
#include <chrono>
#include <ctime>

#include "sanitizers/report_json.hpp"

namespace mukai::server {

namespace {

std::string utc_time_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::array<char, 32> buf{};
  return std::string(buf.data(), std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm));
}

// Values are made valid UTF-8 first (a hostile Subject in `detail` must not make the line
// unparsable); boost::json::serialize escapes every control character as \uXXXX, so a record is
// always one line.
boost::json::string value(std::string_view s) { return boost::json::string(sanitize::to_valid_utf8(s)); }

}  // namespace

audit_log::audit_log(std::filesystem::path file) : file_(std::move(file)) {}

audit_log::~audit_log() {
  if (fd_ >= 0) ::close(fd_);
}

std::error_code audit_log::record(const audit_record& r) {
  boost::json::object o;
  o["time"] = utc_time_now();
  o["who"] = value(r.who);
  o["client"] = value(r.client);
  o["action"] = value(r.action);
  o["target"] = value(r.target);
  o["result"] = value(r.result);
  o["detail"] = value(r.detail);
  std::string line = boost::json::serialize(o);
  line += '\n';

  const std::lock_guard lock(mutex_);
  if (fd_ < 0) {
    int fd = -1;
    do {
      fd = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return {errno, std::generic_category()};
    fd_ = fd;
  }
  // One write: with O_APPEND the kernel places the whole line at the end of the file, so lines of
  // concurrent processes never interleave. A short write (disk full) leaves a partial line, which
  // we report; the next record starts on a fresh line anyway because every record ends in '\n'.
  ssize_t n = -1;
  do {
    n = ::write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return {errno, std::generic_category()};
  if (static_cast<std::size_t>(n) != line.size()) return std::make_error_code(std::errc::no_space_on_device);
  // The record is evidence: the action it describes may be irreversible (a release is delivered),
  // so it must be on disk before the caller goes on.
  if (::fdatasync(fd_) != 0) return {errno, std::generic_category()};
  return {};
}

}  // namespace mukai::server
