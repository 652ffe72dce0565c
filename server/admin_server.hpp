// The admin listener of `mukai serve`: the web console, its JSON API, /metrics, /healthz and
// /readyz over HTTPS only (Boost.Beast on Asio coroutines; routes in admin_routes.hpp).
//
// Transport invariants:
//  - TLS 1.2 or later with the relay's cipher policy (tls_context.hpp); the certificate is the
//    configured one or a self-signed one made at first start (admin_cert.hpp), its SHA-256
//    fingerprint logged. A client that does not finish the handshake within handshake_timeout is
//    dropped. There is no plain-HTTP port, not even a redirect.
//  - Bounded: at most max_connections connections (one over the cap is closed at accept); request
//    headers at most header_limit bytes, bodies at most body_limit (413/431 and close beyond);
//    each request must arrive within request_timeout, an idle keep-alive connection is closed after
//    it; a response must be written within write_timeout.
//  - Request handling (scrypt, the quarantine service's disk I/O) runs on a small pool of its own,
//    never on the I/O thread, so a slow search does not stall other connections' TLS.
//  - stop() closes the acceptor and every connection, waits for handlers in flight, joins all
//    threads. The relay may keep running while the console stops, and vice versa.
// Threading: start() and stop() from the controlling thread; the server runs its own threads
// (io_threads for the sockets, handler_threads for requests).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "server/admin_routes.hpp"
#include "server/audit_log.hpp"
#include "server/logger.hpp"
#include "server/quarantine_service.hpp"

namespace mukai::server {

struct admin_server_options {
  std::size_t io_threads = 1;
  std::size_t handler_threads = 2;
  std::size_t max_connections = 64;
  std::size_t header_limit = 16 * 1024;
  std::size_t body_limit = 64 * 1024;
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(15)};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds write_timeout{std::chrono::seconds(30)};
  admin_app_options app{};
};

class admin_server {
 public:
  // Makes or loads the certificate, builds the TLS context and the routes, binds [admin] listen.
  // Throws (std::runtime_error, std::invalid_argument) with a message for the administrator.
  admin_server(const config::mukai_config& config, quarantine_service& service, audit_log& audit, logger& log,
               std::function<std::string()> metrics_text, std::function<std::pair<bool, std::string>()> readiness,
               admin_server_options options = {});
  ~admin_server();  // stops if still running
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  void start();
  void stop();

  [[nodiscard]] std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;
  [[nodiscard]] const std::string& certificate_fingerprint() const noexcept;
  [[nodiscard]] admin_app& app() noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace mukai::server
