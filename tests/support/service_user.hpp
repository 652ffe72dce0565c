// Test-only: running `mukai serve` from tests that run as root (CI does). mukai refuses root
// unless [service] user names an account to drop to after binding; tests use `nobody`, and hand
// it the directories the relay writes (spool, quarantine, outbox, log) and the path to them.
// Threading: none (call from the test's thread).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "server/privileges.hpp"

namespace mukai::testing {

using test_user = server::service_user;

inline bool running_as_root() { return ::geteuid() == 0; }

inline test_user nobody_user() {
  std::string why;
  auto u = server::lookup_service_user("nobody", why);
  if (!u) throw std::runtime_error(why);
  return *u;
}

// `dir` and everything below it owned by `u`; its ancestors made traversable (o+x) where they are
// not (mkdtemp makes 0700 directories), so the user can reach it.
inline void hand_over(const std::filesystem::path& dir, const test_user& u) {
  namespace fs = std::filesystem;
  if (::lchown(dir.c_str(), u.uid, u.gid) != 0) throw std::runtime_error("chown " + dir.string());
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    if (::lchown(e.path().c_str(), u.uid, u.gid) != 0) throw std::runtime_error("chown " + e.path().string());
  }
  for (fs::path p = fs::absolute(dir).parent_path(); p.has_relative_path(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0) ::chmod(p.c_str(), (st.st_mode & 07777) | S_IXOTH);
  }
}

// The [service] section a test config needs: `user = "nobody"` when running as root, else none.
inline std::string service_section_for_tests() {
  return running_as_root() ? "[service]\nuser = \"nobody\"\n" : "";
}

}  // namespace mukai::testing
