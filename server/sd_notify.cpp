#include "server/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace mukai::server {

namespace {

std::optional<unsigned long long> parse_number(const char* text) {
  if (!text) return std::nullopt;
  unsigned long long v = 0;
  const char* end = text + std::strlen(text);
  auto r = std::from_chars(text, end, v);
  if (r.ec != std::errc() || r.ptr != end) return std::nullopt;
  return v;
}

}  // namespace

service_notifier service_notifier::from_environment() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  std::string address = socket ? socket : "";
  std::optional<std::chrono::microseconds> watchdog;
  const auto usec = parse_number(std::getenv("WATCHDOG_USEC"));
  const auto pid = parse_number(std::getenv("WATCHDOG_PID"));
  if (usec && *usec > 0 && (!pid || *pid == static_cast<unsigned long long>(::getpid())))
    watchdog = std::chrono::microseconds(*usec);
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  // Only a path or an abstract name is a socket we may talk to.
  if (address.empty() || (address[0] != '/' && address[0] != '@')) return {};
  return service_notifier(std::move(address), watchdog);
}

std::error_code service_notifier::notify(std::string_view state) const {
  if (address_.empty()) return {};
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (address_.size() >= sizeof sa.sun_path) return std::make_error_code(std::errc::filename_too_long);
  std::memcpy(sa.sun_path, address_.data(), address_.size());
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {errno, std::generic_category()};
  std::error_code ec;
  ssize_t n = 0;
  do {
    n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&sa), len);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ec = {errno, std::generic_category()};
  ::close(fd);
  return ec;
}

std::string reloading_state() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ull + static_cast<unsigned long long>(ts.tv_nsec) / 1000;
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec);
}

}  // namespace mukai::server
