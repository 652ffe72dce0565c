// Test-only: the receiving end of systemd's notify protocol, as systemd creates it: an AF_UNIX
// datagram socket bound at a path (mode 0666, so a service that dropped to another user can
// still send), whose path the test passes as NOTIFY_SOCKET.
// Threading: one thread owns it.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace mukai::testing {

class notify_socket {
 public:
  explicit notify_socket(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.string().size() >= sizeof sa.sun_path) throw std::runtime_error("notify socket");
    std::memcpy(sa.sun_path, path_.c_str(), path_.string().size());
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) throw std::runtime_error("bind notify socket");
    ::chmod(path_.c_str(), 0666);
  }
  ~notify_socket() {
    ::close(fd_);
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  notify_socket(const notify_socket&) = delete;
  notify_socket& operator=(const notify_socket&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // The next datagram, or nullopt after `timeout`.
  std::optional<std::string> receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace mukai::testing
