// `mukai serve` under Type=notify, through the real binary and a notify socket made by the test as
// systemd makes it: READY=1 only once the listener accepts, RELOADING=1 then READY=1 on SIGHUP
// (also when the reload is refused), STOPPING=1 on SIGTERM.
#include <doctest/doctest.h>

#include <signal.h>

#include <fstream>
#include <optional>
#include <string>

#include "tests/support/notify_socket.hpp"
#include "tests/support/process.hpp"
#include "tests/support/service_user.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai::testing;
using namespace std::chrono_literals;

namespace {

// The next notification starts with `prefix`.
void expect_state(notify_socket& sock, const std::string& prefix) {
  auto got = sock.receive(10s);
  REQUIRE_MESSAGE(got, "no notification, expected " << prefix);
  CHECK(got->rfind(prefix, 0) == 0);
}

}  // namespace

TEST_CASE("serve: READY=1 after binding, RELOADING=1/READY=1 on SIGHUP, STOPPING=1 on SIGTERM") {
  temp_dir tmp("mukai-notify");
  const std::uint16_t port = free_loopback_port();
  const auto cfg = tmp.path() / "mukai.toml";
  auto write_config = [&](const std::string& extra) {
    std::ofstream(cfg, std::ios::trunc)
        << "[smtp]\nlisten = [\"127.0.0.1:" << port << "\"]\nrelay_domains = [\"example.lg.jp\"]\n"
        << "[delivery]\nnext_hop = [\"maildir:" << (tmp.path() / "out").string() << "\"]\n[spool]\ndir = \""
        << (tmp.path() / "spool").string() << "\"\nmin_free_space = \"0\"\n[quarantine]\ndir = \""
        << (tmp.path() / "quarantine").string() << "\"\n[worker]\ncount = 1\n"
        << service_section_for_tests() << extra;
  };
  write_config("");
  notify_socket sock(tmp.path() / "notify");
  if (running_as_root()) hand_over(tmp.path(), nobody_user());

  spawn_options so;
  so.argv = {MUKAI_BINARY, "serve", "--config", cfg.string()};
  so.extra_env = {"NOTIFY_SOCKET=" + sock.path().string()};
  so.stdout_path = so.stderr_path = tmp.path() / "serve.log";
  child_process p(so);
  auto ready = sock.receive(30s);
  INFO(read_file_or_empty(tmp.path() / "serve.log"));
  REQUIRE(ready);
  CHECK(ready->rfind("READY=1\n", 0) == 0);
  CHECK(is_listening(port, p.pid()));  // READY=1 was sent after the listener was bound

  ::kill(p.pid(), SIGHUP);
  expect_state(sock, "RELOADING=1\nMONOTONIC_USEC=");
  expect_state(sock, "READY=1");

  // A refused reload (bad file) still ends in READY=1: the old configuration keeps running.
  write_config("[smtp.nonsense]\n");
  ::kill(p.pid(), SIGHUP);
  expect_state(sock, "RELOADING=1");
  expect_state(sock, "READY=1");
  CHECK(read_file_or_empty(tmp.path() / "serve.log").find("reload refused") != std::string::npos);

  ::kill(p.pid(), SIGTERM);
  expect_state(sock, "STOPPING=1");
  CHECK(p.wait(60s) == 0);
}

TEST_CASE("serve: with WATCHDOG_USEC set, WATCHDOG=1 keeps coming at half the interval") {
  temp_dir tmp("mukai-notify");
  const std::uint16_t port = free_loopback_port();
  const auto cfg = tmp.path() / "mukai.toml";
  std::ofstream(cfg) << "[smtp]\nlisten = [\"127.0.0.1:" << port << "\"]\nrelay_domains = [\"example.lg.jp\"]\n"
                     << "[delivery]\nnext_hop = [\"maildir:" << (tmp.path() / "out").string() << "\"]\n[spool]\ndir = \""
                     << (tmp.path() / "spool").string() << "\"\nmin_free_space = \"0\"\n[quarantine]\ndir = \""
                     << (tmp.path() / "quarantine").string() << "\"\n[worker]\ncount = 1\n"
                     << service_section_for_tests();
  notify_socket sock(tmp.path() / "notify");
  if (running_as_root()) hand_over(tmp.path(), nobody_user());
  spawn_options so;
  so.argv = {MUKAI_BINARY, "serve", "--config", cfg.string()};
  so.extra_env = {"NOTIFY_SOCKET=" + sock.path().string(), "WATCHDOG_USEC=400000"};
  so.stdout_path = so.stderr_path = tmp.path() / "serve.log";
  child_process p(so);
  expect_state(sock, "READY=1");
  const auto t0 = std::chrono::steady_clock::now();
  expect_state(sock, "WATCHDOG=1");
  expect_state(sock, "WATCHDOG=1");
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(elapsed >= 300ms);  // two pings at 200 ms intervals, not a burst
  ::kill(p.pid(), SIGTERM);
  std::optional<std::string> last;
  for (int i = 0; i < 50; ++i) {  // pings may still precede STOPPING=1
    last = sock.receive(10s);
    if (!last || last->rfind("STOPPING=1", 0) == 0) break;
  }
  REQUIRE(last);
  CHECK(last->rfind("STOPPING=1", 0) == 0);
  CHECK(p.wait(60s) == 0);
}
