// systemd's readiness protocol (Type=notify): state strings such as "READY=1", "RELOADING=1",
// "STOPPING=1", "WATCHDOG=1" sent as one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET
// (a path, or "@name" for the abstract namespace).
//
// Why not libsystemd's sd_notify(): the protocol is a documented, stable interface that systemd
// invites programs to implement themselves (sd_notify(3), "Notes"), it is one sendto(2), and
// linking libsystemd would bring its compression and crypto dependencies into the network-facing
// process for nothing else. Without $NOTIFY_SOCKET (not under systemd, or Type=simple) every call
// is a no-op.
//
// Environment: from_environment() removes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the
// environment (sd_notify's unset_environment), so no child process (the sanitizer workers start
// with a fixed environment anyway) can speak for the service.
//
// Threading: notify() is safe from any thread (each call opens its own socket).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace mukai::server {

class service_notifier {
 public:
  service_notifier() = default;  // disabled
  explicit service_notifier(std::string socket_address,
                            std::optional<std::chrono::microseconds> watchdog = std::nullopt)
      : address_(std::move(socket_address)), watchdog_(watchdog) {}

  // Reads (and removes) $NOTIFY_SOCKET and, when WATCHDOG_PID is absent or ours, $WATCHDOG_USEC.
  [[nodiscard]] static service_notifier from_environment();

  [[nodiscard]] bool enabled() const noexcept { return !address_.empty(); }
  // Sends `state` ("READY=1\nSTATUS=..."). Success when disabled.
  [[nodiscard]] std::error_code notify(std::string_view state) const;
  // The service's WatchdogSec, if set: send "WATCHDOG=1" at half this interval.
  [[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval() const noexcept { return watchdog_; }

 private:
  std::string address_;
  std::optional<std::chrono::microseconds> watchdog_;
};

// "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC now>" (the form Type=notify-reload expects; plain
// Type=notify accepts it too).
[[nodiscard]] std::string reloading_state();

}  // namespace mukai::server
