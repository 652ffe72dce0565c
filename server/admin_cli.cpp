// `mukai passwd` and the [admin] configuration checks; see admin_cli.hpp.
#include "server/admin_cli.hpp"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <iostream>
#include <set>
#include <stdexcept>

#include "server/admin_auth.hpp"
#include "server/network_acl.hpp"

namespace mukai::server {

namespace {

constexpr std::size_t max_password = 1000;

// One line from the terminal with echo off; the terminal's settings are restored on every path.
bool read_tty_password(int fd, const char* prompt, std::string& out) {
  (void)::write(fd, prompt, std::char_traits<char>::length(prompt));
  termios old {};
  if (::tcgetattr(fd, &old) != 0) return false;
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ECHONL;
  if (::tcsetattr(fd, TCSAFLUSH, &quiet) != 0) return false;
  out.clear();
  char c = 0;
  bool ok = false;
  for (;;) {
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (c == '\n') {
      ok = true;
      break;
    }
    if (out.size() <= max_password) out += c;
  }
  ::tcsetattr(fd, TCSAFLUSH, &old);
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return ok;
}

}  // namespace

int run_passwd(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err) {
  bool from_stdin = false;
  for (const auto& a : args) {
    if (a == "--stdin") {
      from_stdin = true;
    } else {
      err << "mukai passwd: unknown option \"" << a << "\"\nusage: mukai passwd [--stdin]\n";
      return 2;
    }
  }
  std::string password;
  if (from_stdin) {
    if (!std::getline(in, password)) {
      err << "mukai passwd: no password on standard input\n";
      return 1;
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
  } else {
    const int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      err << "mukai passwd: no terminal; use --stdin to read the password from standard input\n";
      return 1;
    }
    std::string again;
    const bool ok = read_tty_password(fd, "Password: ", password) && read_tty_password(fd, "Again: ", again);
    ::close(fd);
    if (!ok) {
      err << "mukai passwd: cannot read the password from the terminal\n";
      return 1;
    }
    if (password != again) {
      err << "mukai passwd: the passwords differ\n";
      return 1;
    }
  }
  if (password.empty()) {
    err << "mukai passwd: empty password refused\n";
    return 1;
  }
  if (password.size() > max_password) {
    err << "mukai passwd: password longer than " << max_password << " bytes refused\n";
    return 1;
  }
  out << hash_password(password) << "\n";
  return 0;
}

std::vector<config::config_error> admin_config_problems(const config::mukai_config& c) {
  std::vector<config::config_error> errors;
  const auto add = [&](std::string key, std::string message) {
    errors.push_back({c.source, 0, std::move(key), std::move(message)});
  };
  std::set<std::string> names;
  for (const auto& u : c.admin.users) {
    if (!names.insert(u.name).second) add("admin.users", "user \"" + u.name + "\" is listed twice");
    for (unsigned char ch : u.name)
      if (ch <= 0x20 || ch == 0x7F) {
        add("admin.users", "user name \"" + u.name + "\" contains a space or control character");
        break;
      }
    if (!u.password_hash.empty() && !well_formed_password_hash(u.password_hash))
      add("admin.users", "user \"" + u.name + "\": password_hash is not a hash made by `mukai passwd`");
  }
  try {
    network_acl acl(c.admin.metrics_networks);
  } catch (const std::invalid_argument& e) {
    add("admin.metrics_networks", e.what());
  }
  if (c.admin.cert.empty() != c.admin.key.empty())
    add("admin.cert", "set both cert and key, or neither (a self-signed pair is then made at first start)");
  if (c.admin.session_lifetime.count() <= 0) add("admin.session_lifetime", "must be positive");
  return errors;
}

}  // namespace mukai::server
