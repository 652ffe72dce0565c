// `mukai serve` and root, through the real binary: refused without [service] user (exit 2); with
// it, the listener is bound as root and the process then runs as that user with no capability,
// its workers too, and the spool it creates belongs to that user. Needs root (CI runs as root);
// skipped otherwise.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server/privileges.hpp"
#include "tests/support/process.hpp"
#include "tests/support/smtp_send.hpp"
#include "tests/support/service_user.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai::testing;
using namespace std::chrono_literals;

namespace {

std::string proc_status(pid_t pid) { return read_file_or_empty("/proc/" + std::to_string(pid) + "/status"); }

// "Uid:\t65534\t65534\t65534\t65534" -> the four IDs all equal `id`.
bool ids_are(const std::string& status, const char* field, unsigned id) {
  const auto at = status.find(std::string("\n") + field + ":");
  if (at == std::string::npos) return false;
  std::istringstream in(status.substr(at + std::strlen(field) + 2));
  for (int i = 0; i < 4; ++i) {
    unsigned v = 0;
    if (!(in >> v) || v != id) return false;
  }
  return true;
}

std::string config_text(const std::filesystem::path& dir, std::uint16_t port, const std::string& service) {
  return "[smtp]\nlisten = [\"127.0.0.1:" + std::to_string(port) +
         "\"]\nrelay_domains = [\"example.lg.jp\"]\n[delivery]\nnext_hop = [\"maildir:" + (dir / "out").string() +
         "\"]\n[spool]\ndir = \"" + (dir / "spool").string() + "\"\nmin_free_space = \"0\"\n[quarantine]\ndir = \"" +
         (dir / "quarantine").string() + "\"\n[worker]\ncount = 1\n" + service;
}

}  // namespace

TEST_CASE("serve as root without [service] user: refused, exit 2, nothing created") {
  if (!running_as_root()) {
    MESSAGE("not root: skipped");
    return;
  }
  temp_dir tmp("mukai-priv");
  const auto cfg = tmp.path() / "mukai.toml";
  std::ofstream(cfg) << config_text(tmp.path(), free_loopback_port(), "");
  auto r = run_command({MUKAI_BINARY, "serve", "--config", cfg.string()}, 30s);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("refusing to run as root") != std::string::npos);
  CHECK(r.output.find("[service] user") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp.path() / "spool"));
  // An unknown user is a configuration error, before anything is bound.
  std::ofstream(cfg, std::ios::trunc) << config_text(tmp.path(), free_loopback_port(),
                                                     "[service]\nuser = \"mukai-no-such-user\"\n");
  auto u = run_command({MUKAI_BINARY, "serve", "--config", cfg.string()}, 30s);
  CHECK(u.exit_code == 2);
  CHECK(u.output.find("no such user") != std::string::npos);
}

TEST_CASE("serve as root with [service] user = nobody: binds, then runs as nobody without capabilities") {
  if (!running_as_root()) {
    MESSAGE("not root: skipped");
    return;
  }
  temp_dir tmp("mukai-priv");
  const auto nobody = nobody_user();
  const std::uint16_t port = free_loopback_port();
  const auto cfg = tmp.path() / "mukai.toml";
  std::ofstream(cfg) << config_text(tmp.path(), port, service_section_for_tests());
  hand_over(tmp.path(), nobody);
  ::chown(cfg.c_str(), 0, 0);  // the config stays root's (0644): read before the drop and by workers
  spawn_options so;
  so.argv = {MUKAI_BINARY, "serve", "--config", cfg.string()};
  so.stdout_path = so.stderr_path = tmp.path() / "serve.log";
  child_process p(so);
  REQUIRE_MESSAGE(wait_for_listen(port, 30s, p.pid()), read_file_or_empty(tmp.path() / "serve.log"));
  // The socket listens from the bind on, before the drop: wait for the end of start-up.
  const auto started = std::chrono::steady_clock::now() + 30s;
  while (read_file_or_empty(tmp.path() / "serve.log").find("mukai relay listening") == std::string::npos &&
         std::chrono::steady_clock::now() < started)
    std::this_thread::sleep_for(20ms);
  const std::string status = proc_status(p.pid());
  CHECK(ids_are(status, "Uid", nobody.uid));
  CHECK(ids_are(status, "Gid", nobody.gid));
  CHECK(mukai::server::status_capability(status, "CapEff") == std::uint64_t{0});
  CHECK(mukai::server::status_capability(status, "CapPrm") == std::uint64_t{0});
  const auto groups_at = status.find("\nGroups:");
  REQUIRE(groups_at != std::string::npos);
  CHECK(status.substr(groups_at, status.find('\n', groups_at + 1) - groups_at) ==
        "\nGroups:\t" + std::to_string(nobody.gid) + " ");
  // What it created after the drop is nobody's.
  struct stat st {};
  REQUIRE(::stat((tmp.path() / "spool" / "incoming").c_str(), &st) == 0);
  CHECK(st.st_uid == nobody.uid);
  CHECK(read_file_or_empty(tmp.path() / "serve.log").find("running as user nobody") != std::string::npos);

  // A message through it: the sanitizer worker it spawns runs as nobody too, and the delivered
  // file and the quarantine item are nobody's.
  const std::string message =
      "From: a@example.com\r\nTo: staff@example.lg.jp\r\nSubject: t\r\nMessage-ID: <p1@example.com>\r\n\r\nhello\r\n";
  auto sent = smtp_send("127.0.0.1", port, "a@example.com", {"staff@example.lg.jp"}, message);
  REQUIRE_MESSAGE(sent.ok, sent.last_reply << sent.error);
  std::vector<pid_t> workers;
  const auto until = std::chrono::steady_clock::now() + 30s;
  std::filesystem::path delivered;
  while (std::chrono::steady_clock::now() < until && (workers.empty() || delivered.empty())) {
    // Children are listed per thread that forked them (the sanitizing threads).
    std::error_code ec;
    for (auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(p.pid()) + "/task", ec)) {
      std::istringstream children(read_file_or_empty(task.path() / "children"));
      for (pid_t c; children >> c;) workers.push_back(c);
    }
    for (auto& e : std::filesystem::directory_iterator(tmp.path() / "out" / "new", ec)) delivered = e.path();
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE_FALSE(workers.empty());
  for (pid_t w : workers) {
    const std::string ws = proc_status(w);
    if (ws.empty()) continue;  // exited meanwhile
    CHECK(ids_are(ws, "Uid", nobody.uid));
    CHECK(mukai::server::status_capability(ws, "CapEff") == std::uint64_t{0});
  }
  REQUIRE_FALSE(delivered.empty());
  REQUIRE(::stat(delivered.c_str(), &st) == 0);
  CHECK(st.st_uid == nobody.uid);
  CHECK(p.terminate(30s) == 0);
}

// The README's first run: `build/mukai serve` as root on the embedded default. It drops to nobody,
// gives the directories it creates (./mukai-data/...) to nobody before the drop, re-executes its
// workers through /proc/self/exe, and delivers into ./mukai-data/outbox/new/.
TEST_CASE("the embedded default as root: runs as nobody in ./mukai-data and delivers a message") {
  if (!running_as_root()) {
    MESSAGE("not root: skipped");
    return;
  }
  if (wait_for_listen(2525, 100ms)) {
    MESSAGE("127.0.0.1:2525 is in use (the embedded default's port): skipped");
    return;
  }
  temp_dir tmp("mukai-first-run");
  // Like a source checkout (0755): after the drop, nobody works in its current directory.
  REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);
  const auto nobody = nobody_user();
  spawn_options so;
  so.argv = {MUKAI_BINARY, "serve"};
  so.working_dir = tmp.path();
  so.stdout_path = so.stderr_path = tmp.path() / "serve.log";
  child_process p(so);
  const auto log = [&] { return read_file_or_empty(tmp.path() / "serve.log"); };
  REQUIRE_MESSAGE(wait_for_listen(2525, 30s, p.pid()), log());
  for (int i = 0; i < 300 && log().find("mukai relay listening on") == std::string::npos; ++i)
    std::this_thread::sleep_for(100ms);
  CHECK(ids_are(proc_status(p.pid()), "Uid", nobody.uid));
  for (const char* d : {"mukai-data", "mukai-data/spool", "mukai-data/quarantine", "mukai-data/outbox"}) {
    struct stat st {};
    CAPTURE(d);
    REQUIRE(::stat((tmp.path() / d).c_str(), &st) == 0);
    CHECK(st.st_uid == nobody.uid);
  }
  const auto r = smtp_send("127.0.0.1", 2525, "alice@example.com", {"staff@example.lg.jp"},
                           "From: alice@example.com\r\nSubject: first run\r\n\r\nhello from the first run\r\n");
  REQUIRE_MESSAGE(r.ok, r.last_reply << r.error);
  const auto new_dir = tmp.path() / "mukai-data" / "outbox" / "new";
  std::vector<std::filesystem::path> files;
  for (int i = 0; i < 300 && files.empty(); ++i) {
    std::this_thread::sleep_for(100ms);
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(new_dir, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec))
      files.push_back(it->path());
  }
  REQUIRE_MESSAGE(files.size() == 1, log());
  CHECK(read_file_or_empty(files[0]).find("hello from the first run") != std::string::npos);
  CHECK(p.terminate(30s) == 0);
}

