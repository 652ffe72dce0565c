// The web console's request handling, without the network: one HTTP request in, one response out.
// admin_server.hpp owns the sockets and TLS and calls handle() on its blocking pool.
//
// Routes (HTML; Japanese by default, ?lang=en or the mukai_lang cookie switches):
//   GET  /login, POST /login, POST /logout
//   GET  /                          list: q, status, since, until, sender, recipient, subject, reason, page
//   GET  /item/ID                   detail
//   GET  /item/ID/release|delete    confirmation (operators)
//   POST /item/ID/release|delete    the action (operators; form field csrf, confirm=yes, to=...)
//   GET  /static/admin.css
// JSON API (same session cookie; every POST needs the X-CSRF-Token header; verdict, reasons and part
// actions/reasons stay the engine's raw tokens, the HTML pages show them in words):
//   POST /api/v1/login {"user","password"} -> {"user","role","csrf"}, POST /api/v1/logout
//   GET  /api/v1/items?...  GET /api/v1/items/ID  POST /api/v1/items/ID/release {"to":[...]}
//   POST /api/v1/items/ID/delete   GET /api/v1/stats
// Operations (no login): GET /healthz (anyone), /readyz and /metrics (only from metrics_networks).
//
// Security invariants, each enforced in one place here:
//  - every response carries the CSP, nosniff, no-referrer, no-store and frame headers
//    (finish_response);
//  - a state-changing request (every POST but login) needs a live session and its CSRF token,
//    compared in constant time; the login form needs the pre-login token of its cookie (no login
//    CSRF); the API login needs Content-Type application/json (no cross-site form can send it);
//  - release/delete need role operator, checked on GET (confirmation) and POST; a viewer gets 403
//    and the attempt is audited;
//  - every login (ok, failed, locked out), logout and refusal goes to the audit log; the service
//    audits the actions themselves.
// Threading: handle() may run on several threads at once; it blocks (scrypt, the service's disk I/O).
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "config/config.hpp"
#include "server/admin_auth.hpp"
#include "server/audit_log.hpp"
#include "server/logger.hpp"
#include "server/network_acl.hpp"
#include "server/quarantine_service.hpp"

namespace mukai::server {

using http_request = boost::beast::http::request<boost::beast::http::string_body>;
using http_response = boost::beast::http::response<boost::beast::http::string_body>;

struct admin_hooks {
  std::function<std::string()> metrics_text;                 // Prometheus text; empty or unset: 404
  std::function<std::pair<bool, std::string>()> readiness;   // {ready, why not}; unset: ready
};

struct admin_app_options {
  std::chrono::seconds idle_timeout{30 * 60};  // a session unused this long ends
  std::size_t page_size = 50;
  login_limiter_options lockout{};
};

class admin_app {
 public:
  // Throws std::invalid_argument for an unusable [admin] section (bad network, bad hash).
  admin_app(const config::mukai_config& config, quarantine_service& service, audit_log& audit, logger& log,
            admin_hooks hooks, admin_app_options options = {});

  [[nodiscard]] http_response handle(const http_request& req, const boost::asio::ip::address& client);

  [[nodiscard]] session_store& sessions() noexcept { return sessions_; }

 private:
  struct request_context;
  http_response route(request_context& rc);
  http_response handle_login_form(request_context& rc);
  http_response handle_login_post(request_context& rc);
  http_response handle_logout(request_context& rc);
  http_response handle_list(request_context& rc);
  http_response handle_item(request_context& rc, const std::string& id, const std::string& action);
  http_response handle_api(request_context& rc);
  http_response api_login(request_context& rc);
  http_response api_item(request_context& rc, const std::string& id, const std::string& action);
  // Checks the password with the lockout and the audit; the session on success.
  std::optional<admin_session> try_login(request_context& rc, const std::string& user, const std::string& password,
                                         bool& locked);
  void audit(const request_context& rc, std::string_view action, std::string_view target, std::string_view result,
             std::string_view detail);

  std::map<std::string, config::admin_user, std::less<>> users_;
  std::string dummy_hash_;  // verified for unknown users, so their timing matches known ones
  network_acl metrics_acl_;
  quarantine_service& service_;
  audit_log& audit_;
  logger& log_;
  admin_hooks hooks_;
  admin_app_options options_;
  session_store sessions_;
  login_limiter limiter_;
};

}  // namespace mukai::server
