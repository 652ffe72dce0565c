// See smtp_send.hpp. A non-blocking socket driven by poll() against one deadline, so that a server
// that stops answering costs the test a bounded time and a clear error, never a hang.
#include "tests/support/smtp_send.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace mukai::testing {

namespace {

using clock = std::chrono::steady_clock;

struct io_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class connection {
 public:
  connection(const std::string& host, std::uint16_t port, clock::time_point deadline) : deadline_(deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* list = nullptr;
    const std::string service = std::to_string(port);
    if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0) {
      throw io_error("resolve " + host + ": " + ::gai_strerror(rc));
    }
    std::string last_error = "no address";
    for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
      const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || (errno == EINPROGRESS && wait_connected(fd))) {
        fd_ = fd;
        break;
      }
      last_error = std::strerror(errno);
      ::close(fd);
    }
    ::freeaddrinfo(list);
    if (fd_ < 0) throw io_error("connect " + host + ":" + service + ": " + last_error);
  }
  ~connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void write_all(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wait_for(POLLOUT, "write");
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        throw io_error(std::string("write: ") + std::strerror(errno));
      }
    }
  }

  // One line without its CRLF (a bare LF also ends it).
  std::string read_line() {
    for (;;) {
      if (const auto lf = buffer_.find('\n'); lf != std::string::npos) {
        std::string line = buffer_.substr(0, lf);
        buffer_.erase(0, lf + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
      }
      if (buffer_.size() > 65536) throw io_error("reply line longer than 64 KiB");
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0) {
        throw io_error("connection closed by the server");
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_for(POLLIN, "read");
      } else if (errno != EINTR) {
        throw io_error(std::string("read: ") + std::strerror(errno));
      }
    }
  }

 private:
  bool wait_connected(int fd) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms()) <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    errno = err;
    return err == 0;
  }
  void wait_for(short events, const char* what) {
    pollfd p{fd_, events, 0};
    const int rc = ::poll(&p, 1, remaining_ms());
    if (rc == 0) throw io_error(std::string(what) + ": timed out");
    if (rc < 0 && errno != EINTR) throw io_error(std::string("poll: ") + std::strerror(errno));
  }
  int remaining_ms() const {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - clock::now()).count();
    return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
  }

  int fd_ = -1;
  clock::time_point deadline_;
  std::string buffer_;
};

struct reply {
  int code = 0;
  std::string last_line;
};

reply read_reply(connection& c, smtp_send_result& result) {
  for (;;) {
    std::string line = c.read_line();
    result.transcript.push_back("S: " + line);
    const bool more = line.size() > 3 && line[3] == '-';
    if (!more) {
      reply r;
      if (line.size() >= 3 && std::isdigit(static_cast<unsigned char>(line[0])) != 0) {
        r.code = std::atoi(line.substr(0, 3).c_str());
      }
      r.last_line = line;
      result.last_reply = line;
      return r;
    }
  }
}

reply command(connection& c, smtp_send_result& result, const std::string& line) {
  result.transcript.push_back("C: " + line);
  c.write_all(line + "\r\n");
  return read_reply(c, result);
}

void quit(connection& c, smtp_send_result& result) {
  try {
    result.transcript.push_back("C: QUIT");
    c.write_all("QUIT\r\n");
    smtp_send_result scratch;  // the 221 must not replace the reply that decided the outcome
    read_reply(c, scratch);
    result.transcript.insert(result.transcript.end(), scratch.transcript.begin(), scratch.transcript.end());
  } catch (const io_error&) {
    // The outcome is already known; a server that hangs up at QUIT changes nothing.
  }
}

}  // namespace

std::string encode_data(std::string_view message, bool normalize_line_endings) {
  std::string out;
  out.reserve(message.size() + message.size() / 50 + 8);
  bool line_start = true;
  for (std::size_t i = 0; i < message.size(); ++i) {
    const char ch = message[i];
    if (line_start && ch == '.') out.push_back('.');  // RFC 5321 4.5.2 transparency
    if (normalize_line_endings && (ch == '\r' || ch == '\n')) {
      if (ch == '\r' && i + 1 < message.size() && message[i + 1] == '\n') ++i;
      out += "\r\n";
      line_start = true;
      continue;
    }
    out.push_back(ch);
    line_start = ch == '\n' && out.size() >= 2 && out[out.size() - 2] == '\r';
  }
  if (!out.empty() && !(out.size() >= 2 && out.compare(out.size() - 2, 2, "\r\n") == 0)) out += "\r\n";
  out += ".\r\n";
  return out;
}

std::optional<std::string> queued_as(std::string_view reply) {
  static constexpr std::string_view marker = "queued as ";
  const auto at = reply.find(marker);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = reply.substr(at + marker.size());
  std::size_t n = 0;
  while (n < rest.size() && rest[n] != ' ' && rest[n] != '\r' && rest[n] != '\n' && rest[n] != ')') ++n;
  if (n == 0) return std::nullopt;
  return std::string(rest.substr(0, n));
}

smtp_send_result smtp_send(const std::string& host, std::uint16_t port, const std::string& from,
                           const std::vector<std::string>& rcpts, std::string_view message,
                           const smtp_send_options& options) {
  smtp_send_result result;
  try {
    connection c(host, port, clock::now() + options.timeout);
    if (read_reply(c, result).code != 220) {
      quit(c, result);
      return result;
    }
    reply r = command(c, result, "EHLO " + options.helo);
    if (r.code / 100 == 5) r = command(c, result, "HELO " + options.helo);
    if (r.code / 100 != 2) {
      quit(c, result);
      return result;
    }
    if (command(c, result, "MAIL FROM:<" + from + ">").code / 100 != 2) {
      quit(c, result);
      return result;
    }
    std::size_t accepted = 0;
    for (const auto& rcpt : rcpts) {
      const reply rr = command(c, result, "RCPT TO:<" + rcpt + ">");
      result.rcpt_replies.push_back(rr.last_line);
      if (rr.code / 100 == 2) ++accepted;
    }
    if (accepted == 0) {
      quit(c, result);
      return result;
    }
    if (command(c, result, "DATA").code != 354) {
      quit(c, result);
      return result;
    }
    c.write_all(encode_data(message, options.normalize_line_endings));
    result.transcript.push_back("C: <message> .");
    result.ok = read_reply(c, result).code / 100 == 2;
    quit(c, result);
  } catch (const io_error& e) {
    result.ok = false;
    result.error = e.what();
  }
  return result;
}

}  // namespace mukai::testing
