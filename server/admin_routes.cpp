// The web console's routes, sessions and JSON API; see admin_routes.hpp.
#include "server/admin_routes.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/pct_string_view.hpp>
#include <charconv>
#include <exception>
#include <vector>

#include "server/admin_html.hpp"

namespace mukai::server {

namespace http = boost::beast::http;
namespace json = boost::json;
namespace urls = boost::urls;

namespace {

constexpr std::string_view session_cookie = "__Host-mukai_session";
constexpr std::string_view login_cookie = "__Host-mukai_login";
constexpr std::string_view lang_cookie = "mukai_lang";
constexpr std::size_t max_filter_text = 200;
constexpr std::size_t max_page = 100000;

using param_map = std::map<std::string, std::string, std::less<>>;

// key=value pairs of a query string or an application/x-www-form-urlencoded body, percent-decoded
// by Boost.URL ('+' is a space); the first of repeated keys wins; values cut at 4 KiB; a pair that
// is not valid percent-encoding is dropped. The split on '&' and '=' is done here because
// Boost.URL 1.81's params views read past the end of the input when the last value is empty
// ("...&reason="), which every GET form with an empty last field sends.
std::optional<std::string> decode_component(std::string_view s, bool plus_is_space = true) {
  const auto pv = urls::make_pct_string_view(s);
  if (!pv) return std::nullopt;
  urls::encoding_opts opt;
  opt.space_as_plus = plus_is_space;
  return pv->decode(opt);
}

// "/item/ID/release" -> {"item", "ID", "release"}; "/" -> {}. nullopt when a segment is not valid
// percent-encoding.
std::optional<std::vector<std::string>> path_segments(std::string_view path) {
  std::vector<std::string> out;
  if (path.starts_with('/')) path.remove_prefix(1);
  if (path.empty()) return out;
  for (;;) {
    const auto slash = path.find('/');
    auto seg = decode_component(path.substr(0, slash), false);
    if (!seg || out.size() >= 16) return std::nullopt;
    out.push_back(std::move(*seg));
    if (slash == std::string_view::npos) return out;
    path.remove_prefix(slash + 1);
  }
}

param_map parse_params(std::string_view encoded) {
  param_map out;
  std::size_t n = 0;
  while (!encoded.empty() && n++ < 100) {
    const auto amp = encoded.find('&');
    const std::string_view pair = encoded.substr(0, amp);
    encoded = amp == std::string_view::npos ? std::string_view{} : encoded.substr(amp + 1);
    const auto eq = pair.find('=');
    auto key = decode_component(pair.substr(0, eq));
    auto value = decode_component(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (!key || !value || key->empty()) continue;
    out.emplace(std::move(*key), value->substr(0, 4096));
  }
  return out;
}

param_map parse_cookies(std::string_view header) {
  param_map out;
  std::size_t n = 0;
  while (!header.empty() && n++ < 50) {
    const auto semi = header.find(';');
    std::string_view item = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view{} : header.substr(semi + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
  }
  return out;
}

std::string get(const param_map& m, std::string_view key) {
  auto it = m.find(key);
  return it == m.end() ? std::string() : it->second;
}

// Quarantine IDs are made by the store ("20261122T013512Z-7k2m9q4x0c"); anything else is not one.
bool plausible_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 100) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.'))
      return false;
  return id != "." && id != "..";
}

std::string cookie(std::string_view name, std::string_view value, std::string_view extra) {
  std::string c(name);
  c += '=';
  c += value;
  c += "; Path=/; Secure; HttpOnly; SameSite=Strict";
  c += extra;
  return c;
}

// Addresses for "release to": separated by commas or white space; each must look like an address
// (the next hop has the final word). False when one does not.
bool parse_addresses(std::string_view text, std::vector<std::string>& out) {
  std::string cur;
  const auto flush = [&]() {
    if (cur.empty()) return true;
    const auto at = cur.find('@');
    if (at == std::string::npos || at == 0 || at + 1 == cur.size() || cur.size() > 254 || out.size() >= 100) return false;
    for (unsigned char c : cur)
      if (c <= 0x20 || c == 0x7F || c == '<' || c == '>' || c == '"' || c == '(' || c == ')') return false;
    out.push_back(std::move(cur));
    cur.clear();
    return true;
  };
  for (char c : text) {
    if (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      if (!flush()) return false;
    } else {
      cur += c;
    }
  }
  return flush();
}

json::object item_json(const index_item& it, bool full) {
  json::object o;
  o["id"] = valid_utf8(it.id);
  o["received"] = it.received;
  o["status"] = to_string(it.status);
  o["mail_from"] = valid_utf8(it.mail_from);
  json::array rcpts;
  for (const auto& r : it.rcpt_to) rcpts.emplace_back(valid_utf8(r));
  o["rcpt_to"] = std::move(rcpts);
  o["from"] = valid_utf8(it.from);
  o["to"] = valid_utf8(it.to);
  o["subject"] = valid_utf8(it.subject);
  o["message_id"] = valid_utf8(it.message_id);
  o["verdict"] = valid_utf8(it.verdict);
  json::array reasons;
  for (const auto& r : it.reasons) reasons.emplace_back(valid_utf8(r));
  o["reasons"] = std::move(reasons);
  o["size"] = it.size;
  o["original_stored"] = it.original_stored;
  json::array parts;
  for (const auto& p : it.parts) {
    parts.emplace_back(json::object{{"path", valid_utf8(p.path)},
                                    {"filename", valid_utf8(p.filename)},
                                    {"declared_type", valid_utf8(p.declared_type)},
                                    {"detected_type", valid_utf8(p.detected_type)},
                                    {"size", p.size},
                                    {"sha256", valid_utf8(p.sha256)},
                                    {"action", valid_utf8(p.action)},
                                    {"reason", valid_utf8(p.reason)}});
  }
  o["parts"] = std::move(parts);
  if (full) {
    json::array history;
    for (const auto& h : it.history) {
      history.emplace_back(json::object{{"at", h.at},
                                        {"who", valid_utf8(h.who)},
                                        {"action", valid_utf8(h.action)},
                                        {"result", valid_utf8(h.result)},
                                        {"detail", valid_utf8(h.detail)}});
    }
    o["history"] = std::move(history);
  }
  return o;
}

const char* action_status_name(action_status s) noexcept {
  switch (s) {
    case action_status::ok: return "ok";
    case action_status::not_found: return "not_found";
    case action_status::refused: return "refused";
    case action_status::failed: return "failed";
  }
  return "failed";
}

http::status action_http_status(action_status s) noexcept {
  switch (s) {
    case action_status::ok: return http::status::ok;
    case action_status::not_found: return http::status::not_found;
    case action_status::refused: return http::status::conflict;
    case action_status::failed: return http::status::internal_server_error;
  }
  return http::status::internal_server_error;
}

// Since/until: a date or date-time in local time, or Unix seconds (API).
bool parse_time_param(const std::string& text, bool end_of_day, std::optional<std::int64_t>& out) {
  if (text.empty()) return true;
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc{} && p == text.data() + text.size() && text.size() > 8) {
    out = v;
    return true;
  }
  out = parse_local_time(text, end_of_day);
  return out.has_value();
}

// The filter from request parameters (same names for the HTML list and the API). `error` says what
// was ignored.
item_filter make_filter(const param_map& q, list_query& lq, std::string& error) {
  const auto text = [&](std::string_view key) { return get(q, key).substr(0, max_filter_text); };
  lq.text = text("q");
  lq.status = text("status");
  lq.since = text("since");
  lq.until = text("until");
  lq.sender = text("sender");
  lq.recipient = text("recipient");
  lq.subject = text("subject");
  lq.reason = text("reason");
  item_filter f;
  f.text = lq.text;
  f.sender = lq.sender;
  f.recipient = lq.recipient;
  f.subject = lq.subject;
  f.reason = lq.reason;
  f.filename = text("filename");
  if (!lq.status.empty()) {
    f.status = parse_item_status(lq.status);
    if (!f.status) {
      error += "status \"" + lq.status + "\"? ";
      lq.status.clear();
    }
  }
  if (!parse_time_param(lq.since, false, f.since)) error += "since \"" + lq.since + "\"? ";
  if (!parse_time_param(lq.until, true, f.until)) error += "until \"" + lq.until + "\"? ";
  return f;
}

std::size_t parse_count(const std::string& s, std::size_t fallback, std::size_t max) {
  std::size_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return fallback;
  return std::min(v, max);
}

}  // namespace

struct admin_app::request_context {
  const http_request& req;
  boost::asio::ip::address client;
  std::string client_text;
  std::vector<std::string> segments;  // decoded path segments
  std::string encoded_path;
  param_map query, cookies, form;
  ui_lang lang = ui_lang::ja;
  std::string self;  // the page's path and query without lang=, for the language switch
  std::optional<admin_session> session;
  std::string login_name;  // the name a login attempt gave (audited as who before there is a session)
  std::vector<std::string> set_cookies;

  [[nodiscard]] page_frame frame() const {
    page_frame f;
    f.lang = lang;
    f.self = self;
    if (session) {
      f.user = session->user;
      f.role = session->role;
      f.csrf = session->csrf;
    }
    return f;
  }
  [[nodiscard]] bool is_post() const { return req.method() == http::verb::post; }
  [[nodiscard]] bool is_get() const { return req.method() == http::verb::get; }
  [[nodiscard]] std::string who() const { return "web:" + (session ? session->user : login_name); }
};

namespace {

http_response response(const http_request& req, http::status status, std::string_view content_type, std::string body) {
  http_response res{status, req.version()};
  res.set(http::field::content_type, content_type);
  // The console's whole security model in headers: nothing but our own stylesheet and images may
  // load, no script at all, forms only to us, never framed; no MIME sniffing, no referrer leaking
  // quarantine IDs, no copy of a page in any cache.
  res.set("Content-Security-Policy",
          "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
          "base-uri 'none'");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Frame-Options", "DENY");
  res.set("Cross-Origin-Opener-Policy", "same-origin");
  res.set("Cross-Origin-Resource-Policy", "same-origin");
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

http_response html(const http_request& req, http::status status, std::string body) {
  return response(req, status, "text/html; charset=utf-8", std::move(body));
}

http_response json_response(const http_request& req, http::status status, const json::value& v) {
  return response(req, status, "application/json; charset=utf-8", json::serialize(v) + "\n");
}

http_response json_error(const http_request& req, http::status status, std::string_view code, std::string_view message) {
  return json_response(req, status, json::object{{"error", code}, {"message", message}});
}

http_response redirect(const http_request& req, std::string_view location) {
  auto res = response(req, http::status::see_other, "text/plain; charset=utf-8", "");
  res.set(http::field::location, location);
  return res;
}

}  // namespace

admin_app::admin_app(const config::mukai_config& config, quarantine_service& service, audit_log& audit, logger& log,
                     admin_hooks hooks, admin_app_options options)
    : service_(service),
      audit_(audit),
      log_(log),
      hooks_(std::move(hooks)),
      options_(options),
      sessions_(config.admin.session_lifetime, options.idle_timeout),
      limiter_(options.lockout) {
  for (const auto& u : config.admin.users) {
    if (!well_formed_password_hash(u.password_hash))
      throw std::invalid_argument("admin.users \"" + u.name + "\": password_hash is not a hash made by `mukai passwd`");
    users_.emplace(u.name, u);
  }
  try {
    metrics_acl_ = network_acl(config.admin.metrics_networks);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("admin.metrics_networks: ") + e.what());
  }
  dummy_hash_ = hash_password(random_hex(16));
}

void admin_app::audit(const request_context& rc, std::string_view action, std::string_view target,
                      std::string_view result, std::string_view detail) {
  audit_record r;
  r.who = rc.who();
  r.client = rc.client_text;
  r.action = action;
  r.target = target;
  r.result = result;
  r.detail = detail;
  if (auto ec = audit_.record(r))
    log_.write(log_level::error, "audit log " + audit_.file().string() + ": " + ec.message());
}

http_response admin_app::handle(const http_request& req, const boost::asio::ip::address& client) {
  request_context rc{req, client, unmap_address(client).to_string(), {}, {}, {}, {}, {}, ui_lang::ja, {}, std::nullopt, {}, {}};
  http_response res;
  try {
    res = route(rc);
  } catch (const std::exception& e) {
    log_.write(log_level::error, std::string("admin: ") + e.what());
    res = response(req, http::status::internal_server_error, "text/plain; charset=utf-8", "internal error\n");
  }
  for (const auto& c : rc.set_cookies) res.insert(http::field::set_cookie, c);
  return res;
}

http_response admin_app::route(request_context& rc) {
  const auto& req = rc.req;
  const auto target = urls::parse_origin_form(std::string_view(req.target().data(), req.target().size()));
  if (!target) return response(req, http::status::bad_request, "text/plain; charset=utf-8", "bad request target\n");
  rc.encoded_path = std::string(target->encoded_path());
  auto segments = path_segments(rc.encoded_path);
  if (!segments) return response(req, http::status::bad_request, "text/plain; charset=utf-8", "bad request target\n");
  rc.segments = std::move(*segments);
  rc.query = parse_params(target->encoded_query());
  rc.cookies = parse_cookies(req[http::field::cookie]);

  const auto& seg = rc.segments;
  const auto path_is = [&seg](std::initializer_list<std::string_view> want) {
    return seg.size() == want.size() && std::equal(seg.begin(), seg.end(), want.begin());
  };

  // Operations endpoints: no session.
  if (path_is({"healthz"})) return response(req, http::status::ok, "text/plain; charset=utf-8", "ok\n");
  if (path_is({"readyz"}) || path_is({"metrics"})) {
    if (!metrics_acl_.allows(unmap_address(rc.client)))
      return response(req, http::status::forbidden, "text/plain; charset=utf-8", "forbidden\n");
    if (seg[0] == "readyz") {
      const auto [ready, why] = hooks_.readiness ? hooks_.readiness() : std::pair<bool, std::string>{true, ""};
      return response(req, ready ? http::status::ok : http::status::service_unavailable, "text/plain; charset=utf-8",
                      ready ? std::string("ready\n") : "not ready: " + why + "\n");
    }
    std::string text = hooks_.metrics_text ? hooks_.metrics_text() : std::string();
    if (text.empty()) return response(req, http::status::not_found, "text/plain; charset=utf-8", "no metrics\n");
    return response(req, http::status::ok, "text/plain; version=0.0.4; charset=utf-8", std::move(text));
  }
  if (path_is({"favicon.ico"})) return response(req, http::status::not_found, "text/plain; charset=utf-8", "");
  if (path_is({"static", "admin.css"})) return response(req, http::status::ok, "text/css; charset=utf-8", std::string(admin_stylesheet()));
  if (!rc.is_get() && !rc.is_post()) {
    auto res = response(req, http::status::method_not_allowed, "text/plain; charset=utf-8", "method not allowed\n");
    res.set(http::field::allow, "GET, POST");
    return res;
  }

  if (auto it = rc.cookies.find(session_cookie); it != rc.cookies.end()) rc.session = sessions_.find(it->second);
  if (!seg.empty() && seg[0] == "api") return handle_api(rc);

  // Language: ?lang= (remembered in a cookie), else the cookie, else Japanese.
  if (auto l = rc.query.find("lang"); l != rc.query.end()) {
    rc.lang = parse_ui_lang(l->second);
    rc.set_cookies.push_back(cookie(lang_cookie, to_string(rc.lang), "; Max-Age=31536000"));
  } else {
    rc.lang = parse_ui_lang(get(rc.cookies, lang_cookie));
  }
  rc.self = rc.encoded_path.empty() ? "/" : rc.encoded_path;
  std::string rest;
  for (const auto& [k, v] : rc.query) {
    if (k == "lang") continue;
    rest += (rest.empty() ? "" : "&") + url_component(k) + "=" + url_component(v);
  }
  if (!rest.empty()) rc.self += "?" + rest;

  if (path_is({"login"})) return rc.is_post() ? handle_login_post(rc) : handle_login_form(rc);
  if (rc.is_post()) {
    // Every state-changing form: a live session and its token, before anything else is looked at.
    if (req.body().size() > 0 && req[http::field::content_type].starts_with("application/x-www-form-urlencoded"))
      rc.form = parse_params(req.body());
    const std::string token = get(rc.form, "csrf");
    if (!rc.session || token.empty() || !constant_time_equal(token, rc.session->csrf)) {
      audit(rc, "csrf", rc.encoded_path, "denied", rc.session ? "missing or wrong CSRF token" : "no session");
      return html(req, http::status::forbidden, render_error_page(rc.frame(), msg::csrf_failed, ""));
    }
  }
  if (!rc.session) return redirect(req, "/login");
  if (path_is({"logout"}) && rc.is_post()) return handle_logout(rc);
  if (seg.empty()) return rc.is_get() ? handle_list(rc) : html(req, http::status::method_not_allowed, render_error_page(rc.frame(), msg::bad_request, ""));
  if (seg.size() >= 2 && seg.size() <= 3 && seg[0] == "item") return handle_item(rc, seg[1], seg.size() == 3 ? seg[2] : "");
  return html(req, http::status::not_found, render_error_page(rc.frame(), msg::not_found, ""));
}

http_response admin_app::handle_login_form(request_context& rc) {
  if (rc.session) return redirect(rc.req, "/");
  // One pre-login token per browser, kept while its cookie lives: a second tab (or the browser's
  // own /favicon.ico request, redirected here) must not invalidate the form already shown.
  std::string token = get(rc.cookies, login_cookie);
  if (token.size() != 32 || token.find_first_not_of("0123456789abcdef") != std::string::npos) token = random_hex(16);
  rc.set_cookies.push_back(cookie(login_cookie, token, "; Max-Age=3600"));
  return html(rc.req, http::status::ok, render_login_page(rc.frame(), token, "", ""));
}

std::optional<admin_session> admin_app::try_login(request_context& rc, const std::string& user,
                                                  const std::string& password, bool& locked) {
  locked = false;
  const std::string name = user.substr(0, 100);
  rc.login_name = name;
  const auto wait = limiter_.wait_time(name, rc.client_text);
  if (wait.count() > 0) {
    locked = true;
    audit(rc, "login", "", "denied", "locked out for " + std::to_string(wait.count()) + " s");
    return std::nullopt;
  }
  const auto it = users_.find(name);
  // An unknown user costs the same scrypt as a known one: the timing does not tell which names exist.
  const bool ok = verify_password(password, it == users_.end() ? dummy_hash_ : it->second.password_hash) &&
                  it != users_.end() && password.size() <= 1000;
  if (!ok) {
    limiter_.record_failure(name, rc.client_text);
    audit(rc, "login", "", "failed", it == users_.end() ? "unknown user" : "wrong password");
    log_.write(log_level::warning, "admin: failed login for \"" + name + "\" from " + rc.client_text);
    return std::nullopt;
  }
  limiter_.record_success(name, rc.client_text);
  auto s = sessions_.create(name, it->second.role == "operator" ? admin_role::operator_ : admin_role::viewer,
                            rc.client_text);
  rc.session = s;
  audit(rc, "login", "", "ok", it->second.role);
  log_.write(log_level::info, "admin: " + name + " logged in from " + rc.client_text);
  rc.set_cookies.push_back(cookie(session_cookie, s.id, ""));
  return s;
}

http_response admin_app::handle_login_post(request_context& rc) {
  const auto& req = rc.req;
  if (req[http::field::content_type].starts_with("application/x-www-form-urlencoded")) rc.form = parse_params(req.body());
  const std::string token = get(rc.form, "login_token");
  const std::string expected = get(rc.cookies, login_cookie);
  rc.session.reset();  // a login replaces whatever session the browser had (no fixation)
  if (token.empty() || expected.empty() || !constant_time_equal(token, expected)) {
    audit(rc, "login", "", "denied", "missing or wrong login form token");
    return html(req, http::status::forbidden, render_error_page(rc.frame(), msg::csrf_failed, ""));
  }
  const std::string user = get(rc.form, "user");
  bool locked = false;
  if (try_login(rc, user, get(rc.form, "password"), locked)) {
    rc.set_cookies.push_back(cookie(login_cookie, "", "; Max-Age=0"));
    return redirect(req, "/");
  }
  auto res = html(req, locked ? http::status::too_many_requests : http::status::unauthorized,
                  render_login_page(rc.frame(), token, tr(rc.lang, locked ? msg::login_locked : msg::login_failed), user));
  if (locked) res.set(http::field::retry_after, "60");
  return res;
}

http_response admin_app::handle_logout(request_context& rc) {
  sessions_.remove(rc.session->id);
  audit(rc, "logout", "", "ok", "");
  rc.set_cookies.push_back(cookie(session_cookie, "", "; Max-Age=0"));
  return redirect(rc.req, "/login");
}

http_response admin_app::handle_list(request_context& rc) {
  list_query lq;
  std::string error;
  item_filter f = make_filter(rc.query, lq, error);
  lq.page = std::max<std::size_t>(1, parse_count(get(rc.query, "page"), 1, max_page));
  f.limit = options_.page_size;
  f.offset = (lq.page - 1) * options_.page_size;
  const item_page page = service_.list(f);
  return html(rc.req, http::status::ok, render_list_page(rc.frame(), lq, page, options_.page_size, error));
}

http_response admin_app::handle_item(request_context& rc, const std::string& id, const std::string& action) {
  const auto& req = rc.req;
  const page_frame f = rc.frame();
  if (!plausible_id(id)) return html(req, http::status::not_found, render_error_page(f, msg::not_found, ""));
  if (action.empty()) {
    if (!rc.is_get()) return html(req, http::status::method_not_allowed, render_error_page(f, msg::bad_request, ""));
    auto item = service_.get(id);
    if (!item) return html(req, http::status::not_found, render_error_page(f, msg::not_found, id));
    return html(req, http::status::ok, render_detail_page(f, *item, service_.sanitized_text(id), service_.part_flags(id)));
  }
  if (action != "release" && action != "delete")
    return html(req, http::status::not_found, render_error_page(f, msg::not_found, ""));
  const std::string audit_action = action == "release" ? "release" : "delete";
  if (rc.session->role != admin_role::operator_) {
    audit(rc, audit_action, id, "denied", "role viewer");
    return html(req, http::status::forbidden, render_error_page(f, msg::forbidden, ""));
  }
  if (rc.is_get()) {
    auto item = service_.get(id);
    if (!item) return html(req, http::status::not_found, render_error_page(f, msg::not_found, id));
    return html(req, http::status::ok,
                render_confirm_page(f, *item,
                                    action != "release"                              ? confirm_kind::remove
                                    : service_.needs_unverified_confirmation(*item) ? confirm_kind::release_unverified
                                                                                     : confirm_kind::release));
  }
  if (get(rc.form, "confirm") != "yes")
    return html(req, http::status::bad_request, render_error_page(f, msg::bad_request, ""));
  action_result r;
  if (action == "release") {
    std::vector<std::string> to;
    if (!parse_addresses(get(rc.form, "to"), to))
      return html(req, http::status::bad_request, render_error_page(f, msg::bad_request, get(rc.form, "to")));
    r = service_.release(id, to, rc.who(), rc.client_text,
                         get(rc.form, "unverified") == "yes" ? held_release::confirmed : held_release::refuse);
  } else {
    r = service_.remove(id, rc.who(), rc.client_text);
  }
  const msg heading = r.status == action_status::ok        ? msg::action_ok
                      : r.status == action_status::refused ? msg::action_refused
                      : r.status == action_status::not_found ? msg::not_found
                                                             : msg::action_failed;
  return html(req, action_http_status(r.status), render_result_page(f, id, heading, r.message));
}

// --- JSON API -----------------------------------------------------------------------------------

http_response admin_app::handle_api(request_context& rc) {
  const auto& req = rc.req;
  const auto& seg = rc.segments;
  if (seg.size() < 3 || seg[1] != "v1") return json_error(req, http::status::not_found, "not_found", "no such endpoint");
  if (seg.size() == 3 && seg[2] == "login") {
    if (!rc.is_post()) return json_error(req, http::status::method_not_allowed, "method", "POST only");
    return api_login(rc);
  }
  if (!rc.session) return json_error(req, http::status::unauthorized, "unauthorized", "log in first (POST /api/v1/login)");
  if (rc.is_post()) {
    const auto token = req["X-CSRF-Token"];
    if (token.empty() || !constant_time_equal(std::string_view(token.data(), token.size()), rc.session->csrf)) {
      audit(rc, "csrf", rc.encoded_path, "denied", "missing or wrong X-CSRF-Token");
      return json_error(req, http::status::forbidden, "csrf", "missing or wrong X-CSRF-Token header");
    }
  }
  if (seg.size() == 3 && seg[2] == "logout" && rc.is_post()) {
    sessions_.remove(rc.session->id);
    audit(rc, "logout", "", "ok", "");
    rc.set_cookies.push_back(cookie(session_cookie, "", "; Max-Age=0"));
    return json_response(req, http::status::ok, json::object{{"ok", true}});
  }
  if (seg.size() == 3 && seg[2] == "stats" && rc.is_get()) {
    const index_stats s = service_.stats();
    json::object o{{"total", s.total}, {"held", s.held},       {"released", s.released},
                   {"deleted", s.deleted}, {"expired", s.expired}, {"bytes", s.bytes}};
    o["oldest_held"] = s.oldest_held ? json::value(*s.oldest_held) : json::value(nullptr);
    json::array by_reason, by_type;
    for (const auto& [k, n] : s.by_reason) by_reason.emplace_back(json::object{{"reason", valid_utf8(k)}, {"count", n}});
    for (const auto& [k, n] : s.by_detected_type)
      by_type.emplace_back(json::object{{"detected_type", valid_utf8(k)}, {"count", n}});
    o["by_reason"] = std::move(by_reason);
    o["by_detected_type"] = std::move(by_type);
    return json_response(req, http::status::ok, o);
  }
  if (seg.size() == 3 && seg[2] == "items" && rc.is_get()) {
    list_query lq;
    std::string error;
    item_filter f = make_filter(rc.query, lq, error);
    if (!error.empty()) return json_error(req, http::status::bad_request, "bad_filter", error);
    f.limit = parse_count(get(rc.query, "limit"), options_.page_size, 1000);
    f.offset = parse_count(get(rc.query, "offset"), 0, std::size_t{1} << 40);
    const item_page page = service_.list(f);
    json::array items;
    for (const auto& it : page.items) items.emplace_back(item_json(it, false));
    return json_response(req, http::status::ok,
                         json::object{{"total", page.total}, {"offset", f.offset}, {"items", std::move(items)}});
  }
  if (seg.size() >= 4 && seg.size() <= 5 && seg[2] == "items") return api_item(rc, seg[3], seg.size() == 5 ? seg[4] : "");
  return json_error(req, http::status::not_found, "not_found", "no such endpoint");
}

http_response admin_app::api_login(request_context& rc) {
  const auto& req = rc.req;
  rc.session.reset();
  // A cross-site HTML form cannot send application/json, so this endpoint cannot be driven by
  // another site (login CSRF) without the CORS preflight we never answer.
  if (!req[http::field::content_type].starts_with("application/json"))
    return json_error(req, http::status::unsupported_media_type, "content_type", "send application/json");
  boost::system::error_code ec;
  const json::value v = json::parse(req.body(), ec);
  const json::object* o = ec ? nullptr : v.if_object();
  const json::value* u = o ? o->if_contains("user") : nullptr;
  const json::value* p = o ? o->if_contains("password") : nullptr;
  if (!u || !p || !u->is_string() || !p->is_string())
    return json_error(req, http::status::bad_request, "bad_request", "expected {\"user\": ..., \"password\": ...}");
  bool locked = false;
  auto s = try_login(rc, std::string(u->as_string()), std::string(p->as_string()), locked);
  if (!s) {
    auto res = json_error(req, locked ? http::status::too_many_requests : http::status::unauthorized,
                          locked ? "locked" : "unauthorized",
                          locked ? "too many failed logins; wait and retry" : "wrong user name or password");
    if (locked) res.set(http::field::retry_after, "60");
    return res;
  }
  return json_response(req, http::status::ok,
                       json::object{{"user", s->user},
                                    {"role", s->role == admin_role::operator_ ? "operator" : "viewer"},
                                    {"csrf", s->csrf}});
}

http_response admin_app::api_item(request_context& rc, const std::string& id, const std::string& action) {
  const auto& req = rc.req;
  if (!plausible_id(id)) return json_error(req, http::status::not_found, "not_found", "no such item");
  if (action.empty()) {
    if (!rc.is_get()) return json_error(req, http::status::method_not_allowed, "method", "GET only");
    auto item = service_.get(id);
    if (!item) return json_error(req, http::status::not_found, "not_found", "no such item");
    json::object o = item_json(*item, true);
    const auto text = service_.sanitized_text(id);
    o["sanitized_text"] = text ? json::value(valid_utf8(*text)) : json::value(nullptr);
    return json_response(req, http::status::ok, o);
  }
  if ((action != "release" && action != "delete") || !rc.is_post())
    return json_error(req, http::status::not_found, "not_found", "POST .../release or .../delete");
  if (rc.session->role != admin_role::operator_) {
    audit(rc, action, id, "denied", "role viewer");
    return json_error(req, http::status::forbidden, "forbidden", "operators only");
  }
  action_result r;
  if (action == "release") {
    std::vector<std::string> to;
    held_release held = held_release::refuse;
    if (!req.body().empty()) {
      boost::system::error_code ec;
      const json::value v = json::parse(req.body(), ec);
      const json::object* o = ec ? nullptr : v.if_object();
      if (!o) return json_error(req, http::status::bad_request, "bad_request", "expected a JSON object");
      if (const json::value* t = o->if_contains("to")) {
        const json::array* a = t->if_array();
        if (!a) return json_error(req, http::status::bad_request, "bad_request", "\"to\" must be an array of addresses");
        for (const auto& e : *a) {
          if (!e.is_string() || !parse_addresses(e.as_string(), to))
            return json_error(req, http::status::bad_request, "bad_request", "\"to\": not an address");
        }
      }
      if (const json::value* u = o->if_contains("unverified")) {
        if (!u->is_bool()) return json_error(req, http::status::bad_request, "bad_request", "\"unverified\" must be true or false");
        if (u->as_bool()) held = held_release::confirmed;
      }
    }
    r = service_.release(id, to, rc.who(), rc.client_text, held);
  } else {
    r = service_.remove(id, rc.who(), rc.client_text);
  }
  json::array to;
  for (const auto& t : r.to) to.emplace_back(valid_utf8(t));
  return json_response(req, action_http_status(r.status),
                       json::object{{"result", action_status_name(r.status)},
                                    {"message", valid_utf8(r.message)},
                                    {"queue_id", r.queue_id},
                                    {"to", std::move(to)}});
}

}  // namespace mukai::server
