// The notify protocol's sending side: one datagram per state to $NOTIFY_SOCKET (a path or an
// abstract "@name"), the environment cleared for children, a no-op without systemd.
#include "server/sd_notify.hpp"

#include <doctest/doctest.h>

#include <cstdlib>

#include "tests/support/notify_socket.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai;
using namespace std::chrono_literals;

TEST_CASE("from_environment: reads and clears NOTIFY_SOCKET and the watchdog") {
  testing::temp_dir tmp("mukai-notify");
  testing::notify_socket sock(tmp.path() / "notify");
  ::setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "3000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  auto n = server::service_notifier::from_environment();
  CHECK(n.enabled());
  CHECK(n.watchdog_interval() == std::chrono::microseconds(3000000));
  CHECK(std::getenv("NOTIFY_SOCKET") == nullptr);
  CHECK(std::getenv("WATCHDOG_USEC") == nullptr);
  CHECK(!n.notify("READY=1\nSTATUS=relaying"));
  CHECK(sock.receive(2s) == std::string("READY=1\nSTATUS=relaying"));
  CHECK(!n.notify("STOPPING=1"));
  CHECK(sock.receive(2s) == std::string("STOPPING=1"));

  // Another process's watchdog is not ours.
  ::setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "3000000", 1);
  ::setenv("WATCHDOG_PID", "1", 1);
  CHECK_FALSE(server::service_notifier::from_environment().watchdog_interval().has_value());
}

TEST_CASE("without systemd, or with a malformed socket name, notify is a no-op") {
  ::unsetenv("NOTIFY_SOCKET");
  auto none = server::service_notifier::from_environment();
  CHECK_FALSE(none.enabled());
  CHECK(!none.notify("READY=1"));
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  CHECK_FALSE(server::service_notifier::from_environment().enabled());
  // A socket nobody listens on is an error the caller can log.
  server::service_notifier gone("/nonexistent/mukai-notify");
  CHECK(gone.notify("READY=1"));
}

TEST_CASE("reloading_state carries MONOTONIC_USEC") {
  const auto s = server::reloading_state();
  CHECK(s.rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
  CHECK(std::stoull(s.substr(s.find('=', 12) + 1)) > 0);
}
