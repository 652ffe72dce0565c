// The audit log (監査ログ): an append-only file of every operator action and every login attempt,
// one JSON object per line, for the audit and self-inspection the security policy requires.
//
//   {"time":"2026-11-22T01:35:12Z","who":"web:yamada","client":"127.0.0.1","action":"release",
//    "target":"20261122T013512Z-7k2m9q4x0c","result":"ok","detail":"to=a@example.lg.jp queue=..."}
//
// Default file: <quarantine.dir>/audit.log (0600). Each record is written with one write(2) on an
// O_APPEND descriptor and fsynced before record() returns, so several processes (the relay's web
// console and the CLI) can append to the same file without interleaving, and a record that
// record() reported is on disk. Values are JSON-escaped (no raw control characters reach the file).
// Threading: record() may be called from several threads.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>

namespace mukai::server {

struct audit_record {
  std::string who;     // "cli:root", "web:yamada", "mukai"
  std::string client;  // "local" for the CLI, the remote address for the web console
  std::string action;  // "login" | "logout" | "release" | "delete" | "purge" | "rebuild-index" ...
  std::string target;  // quarantine ID, or empty
  std::string result;  // "ok" | "refused" | "failed" | "denied"
  std::string detail;
};

class audit_log {
 public:
  explicit audit_log(std::filesystem::path file);
  ~audit_log();
  audit_log(const audit_log&) = delete;
  audit_log& operator=(const audit_log&) = delete;

  // Opens (creating, 0600) the file lazily on first use; returns the error if it cannot be written.
  [[nodiscard]] std::error_code record(const audit_record& r);

  [[nodiscard]] const std::filesystem::path& file() const noexcept { return file_; }

 private:
  std::filesystem::path file_;
  std::mutex mutex_;
  int fd_ = -1;
};

}  // namespace mukai::server
