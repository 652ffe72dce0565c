#include "server/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace mukai::server {

std::optional<service_user> lookup_service_user(const std::string& name, std::string& error) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  int rc = 0;
  while ((rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (1u << 20))
    buf.resize(buf.size() * 2);
  if (rc != 0) {
    error = "cannot look up user \"" + name + "\": " + std::generic_category().message(rc);
    return std::nullopt;
  }
  if (!found) {
    error = "no such user \"" + name + "\" (create it: the Debian package does, as a system user)";
    return std::nullopt;
  }
  if (pw.pw_uid == 0) {
    error = "user \"" + name + "\" has uid 0";
    return std::nullopt;
  }
  return service_user{name, pw.pw_uid, pw.pw_gid};
}

std::optional<std::uint64_t> status_capability(std::string_view status_text, std::string_view field) {
  std::size_t pos = 0;
  while (pos < status_text.size()) {
    const std::size_t end = std::min(status_text.find('\n', pos), status_text.size());
    const std::string_view line = status_text.substr(pos, end - pos);
    if (line.size() > field.size() && line.substr(0, field.size()) == field && line[field.size()] == ':') {
      std::string_view hex = line.substr(field.size() + 1);
      while (!hex.empty() && (hex.front() == '\t' || hex.front() == ' ')) hex.remove_prefix(1);
      if (hex.empty() || hex.size() > 16) return std::nullopt;
      std::uint64_t v = 0;
      for (const char c : hex) {
        int d = -1;
        if (c >= '0' && c <= '9') d = c - '0';
        if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        if (d < 0) return std::nullopt;
        v = (v << 4) | static_cast<std::uint64_t>(d);
      }
      return v;
    }
    pos = end + 1;
  }
  return std::nullopt;
}

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

void verify_dropped(const service_user& u) {
  uid_t ru = 0, eu = 0, su = 0;
  gid_t rg = 0, eg = 0, sg = 0;
  if (::getresuid(&ru, &eu, &su) != 0 || ::getresgid(&rg, &eg, &sg) != 0) fail("getresuid/getresgid");
  if (ru != u.uid || eu != u.uid || su != u.uid || rg != u.gid || eg != u.gid || sg != u.gid)
    throw std::runtime_error("privilege drop incomplete: user or group IDs differ from " + u.name + "'s");
  gid_t groups[4];
  const int n = ::getgroups(4, groups);
  if (n < 0 || n > 1 || (n == 1 && groups[0] != u.gid))
    throw std::runtime_error("privilege drop incomplete: supplementary groups remain");
  // The real test: root cannot be regained. (Both calls must fail; if one succeeded we are root
  // again and must not go on.)
  if (::setuid(0) == 0 || ::seteuid(0) == 0) throw std::runtime_error("privilege drop failed: setuid(0) succeeded");
  if (::setgid(0) == 0 || ::setegid(0) == 0) throw std::runtime_error("privilege drop failed: setgid(0) succeeded");
  std::ifstream in("/proc/self/status");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string status = ss.str();
  for (const char* field : {"CapEff", "CapPrm", "CapAmb"}) {
    const auto v = status_capability(status, field);
    if (!v) {
      if (std::string_view(field) == "CapAmb") continue;  // kernels before 4.3
      throw std::runtime_error(std::string("privilege drop: cannot read ") + field + " from /proc/self/status");
    }
    if (*v != 0) throw std::runtime_error(std::string("privilege drop incomplete: ") + field + " is not empty");
  }
}

}  // namespace

void drop_privileges(const service_user& u) {
  if (::setgroups(1, &u.gid) != 0) fail("setgroups");
  if (::setgid(u.gid) != 0) fail("setgid");
  if (::setuid(u.uid) != 0) fail("setuid");
  verify_dropped(u);
}

std::string prepare_service_directory(const std::filesystem::path& dir, const service_user& user) {
  namespace fs = std::filesystem;
  const fs::path target = fs::absolute(dir).lexically_normal();
  std::vector<fs::path> missing;  // deepest first
  for (fs::path p = target; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0) break;
    if (errno != ENOENT) return p.string() + ": " + std::strerror(errno);
    missing.push_back(p);
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    const mode_t mode = *it == target ? 0700 : 0755;
    if (::mkdir(it->c_str(), mode) != 0 && errno != EEXIST) return it->string() + ": " + std::strerror(errno);
    // mkdir's mode is filtered by the umask; chmod sets it exactly. lchown: never follow a link
    // someone slipped in between.
    if (::lchown(it->c_str(), user.uid, user.gid) != 0 || ::chmod(it->c_str(), mode) != 0)
      return it->string() + ": " + std::strerror(errno);
  }
  return {};
}

}  // namespace mukai::server
