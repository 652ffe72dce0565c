// The admin listener over a real TLS loopback connection (a Beast client in the test), with the real
// quarantine service, store, SQLite index and audit log: operations endpoints, login and lockout,
// sessions and cookies, CSRF, roles, escaping in served pages, the JSON API, request limits, TLS
// only, the generated certificate.
#include "server/admin_server.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/parse.hpp>
#include <fstream>
#include <map>

#include "server/admin_auth.hpp"
#include "server/admin_cert.hpp"
#include "server/sanitize_job.hpp"
#include "server/spool.hpp"
#include "tests/support/sample_messages.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai;
using namespace mukai::server;
namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

namespace {

const std::string pdf_b64 = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKJSVFT0YK";

std::string message(std::string_view subject, std::string_view filename) {
  return "From: notice@pref.example.jp\r\nTo: kikaku@city.example.lg.jp\r\nSubject: " + std::string(subject) +
         "\r\nMessage-ID: <t@pref.example.jp>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
         "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
         "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"" +
         std::string(filename) + "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + pdf_b64 + "\r\n--b--\r\n";
}

// Cheap scrypt parameters keep logins fast in the test; the verification path is the real one.
constexpr scrypt_params fast{10, 8, 1};
const std::string op_password = "op-secret", viewer_password = "viewer-secret";

struct fixture {
  testing::temp_dir dir{"mukai-admin"};
  config::mukai_config cfg = config::embedded_default();
  posix_file_ops ops;
  std::unique_ptr<quarantine_index> index;
  std::optional<quarantine_store> store;
  std::optional<spool> sp;
  std::optional<audit_log> audit;
  std::optional<quarantine_service> service;
  logger log{log_level::warning, "", false};
  std::optional<admin_server> server;
  bool ready = true;
  std::string pdf_id, hostile_id;
  std::uint16_t port = 0;

  explicit fixture(admin_server_options opt = small_limits()) {
    cfg.quarantine.dir = dir.path() / "var" / "quarantine";
    cfg.spool.dir = dir.path() / "var" / "spool";
    cfg.admin.listen = "127.0.0.1:0";
    cfg.admin.users = {{"yamada", "operator", hash_password(op_password, fast)},
                       {"sato", "viewer", hash_password(viewer_password, fast)}};
    std::error_code ec;
    fs::create_directories(cfg.quarantine.dir);
    index = open_sqlite_index(cfg.quarantine.dir / "index.sqlite", ec);
    REQUIRE_MESSAGE(index, ec.message());
    store.emplace(cfg.quarantine.dir, ops, index.get());
    REQUIRE_FALSE(store->ensure_layout());
    sp.emplace(cfg.spool.dir, ops);
    REQUIRE_FALSE(sp->ensure_layout());
    audit.emplace(cfg.quarantine.dir / "audit.log");
    service.emplace(cfg, *store, *index, *sp, *audit);
    pdf_id = quarantine(message("Invoice 42", "invoice.pdf"));
    hostile_id = quarantine(message("<script>alert(1)</script>\"'&", "<img src=x onerror=alert(2)>.pdf"));
    server.emplace(
        cfg, *service, *audit, log, [] { return std::string("mukai_test_total 1\n"); },
        [this] { return std::pair<bool, std::string>{ready, ready ? "" : "spool not writable"}; }, opt);
    server->start();
    port = server->local_endpoints().at(0).port();
  }
  static admin_server_options small_limits() {
    admin_server_options o;
    o.header_limit = 4096;
    o.body_limit = 8192;
    o.request_timeout = std::chrono::seconds(5);
    o.app.lockout.free_failures = 3;
    return o;
  }
  std::string quarantine(const std::string& raw) {
    auto out = sanitize_one(raw, cfg.pol, &*store, quarantine_envelope{"notice@pref.example.jp", {"kikaku@example.lg.jp"}});
    REQUIRE_FALSE(out.store_error);
    REQUIRE(out.result.rep.quarantine_id);
    return *out.result.rep.quarantine_id;
  }
};

// A minimal HTTPS client with a cookie jar: one TLS connection per request.
struct client {
  explicit client(std::uint16_t p) : port(p) {}
  std::uint16_t port;
  std::map<std::string, std::string> jar;
  std::string csrf;

  http::response<http::string_body> send(http::verb method, const std::string& target, const std::string& body = "",
                                         const std::string& content_type = "",
                                         const std::map<std::string, std::string>& headers = {}) {
    asio::io_context io;
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.set_verify_mode(asio::ssl::verify_none);
    beast::ssl_stream<asio::ip::tcp::socket> s(io, ctx);
    s.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    s.handshake(asio::ssl::stream_base::client);
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    std::string cookies;
    for (const auto& [k, v] : jar) cookies += (cookies.empty() ? "" : "; ") + k + "=" + v;
    if (!cookies.empty()) req.set(http::field::cookie, cookies);
    if (!content_type.empty()) req.set(http::field::content_type, content_type);
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    http::write(s, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    for (auto it = res.find(http::field::set_cookie); it != res.end() && it->name() == http::field::set_cookie; ++it) {
      const std::string c(it->value());
      const auto eq = c.find('='), semi = c.find(';');
      const std::string name = c.substr(0, eq), value = c.substr(eq + 1, semi - eq - 1);
      if (c.find("Max-Age=0") != std::string::npos)
        jar.erase(name);
      else
        jar[name] = value;
    }
    beast::error_code ignored;
    s.shutdown(ignored);
    return res;
  }
  http::response<http::string_body> get(const std::string& target) { return send(http::verb::get, target); }
  http::response<http::string_body> post_form(const std::string& target, const std::string& body) {
    return send(http::verb::post, target, body, "application/x-www-form-urlencoded");
  }
  // Logs in through the HTML form; returns the final status.
  unsigned login(const std::string& user, const std::string& password) {
    get("/login");
    auto r = post_form("/login", "login_token=" + jar["__Host-mukai_login"] + "&user=" + user + "&password=" + password);
    if (r.result() == http::status::see_other) refresh_csrf();
    return r.result_int();
  }
  // The session's CSRF token, from the logout form every page carries.
  void refresh_csrf() {
    const std::string b = get("/").body();
    const auto at = b.find("name=\"csrf\" value=\"");
    if (at != std::string::npos) csrf = b.substr(at + 19, 64);
  }
};

std::string header(const http::response<http::string_body>& r, std::string_view name) {
  return std::string(r[name]);
}

}  // namespace

TEST_CASE("admin server: operations endpoints, security headers, login required") {
  fixture f;
  client c{f.port};
  auto health = c.get("/healthz");
  CHECK(health.result() == http::status::ok);
  CHECK(health.body() == "ok\n");
  auto metrics = c.get("/metrics");
  CHECK(metrics.result() == http::status::ok);
  CHECK(metrics.body() == "mukai_test_total 1\n");
  CHECK(header(metrics, "Content-Type").starts_with("text/plain; version=0.0.4"));
  CHECK(c.get("/readyz").result() == http::status::ok);
  f.ready = false;
  auto notready = c.get("/readyz");
  CHECK(notready.result() == http::status::service_unavailable);
  CHECK(notready.body().find("spool not writable") != std::string::npos);

  auto list = c.get("/");
  CHECK(list.result() == http::status::see_other);
  CHECK(header(list, "Location") == "/login");
  CHECK(c.get("/api/v1/items").result() == http::status::unauthorized);
  auto login = c.get("/login");
  CHECK(login.result() == http::status::ok);
  CHECK(header(login, "Content-Security-Policy") ==
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  CHECK(header(login, "X-Content-Type-Options") == "nosniff");
  CHECK(header(login, "Referrer-Policy") == "no-referrer");
  CHECK(header(login, "Cache-Control") == "no-store");
  CHECK(login.body().find("<html lang=\"ja\">") != std::string::npos);
  auto css = c.get("/static/admin.css");
  CHECK(css.result() == http::status::ok);
  CHECK(header(css, "Content-Type") == "text/css; charset=utf-8");
  CHECK(c.send(http::verb::put, "/").result() == http::status::method_not_allowed);
}

TEST_CASE("admin server: login form needs its token; wrong passwords lock out; success sets a strict cookie") {
  fixture f;
  client c{f.port};
  c.get("/login");
  CHECK(c.post_form("/login", "user=yamada&password=" + op_password).result() == http::status::forbidden);  // no token
  CHECK(c.login("yamada", "wrong") == 401);
  CHECK(c.login("nobody", "wrong") == 401);
  CHECK(c.login("yamada", "wrong") == 401);  // third failure from this address
  CHECK(c.login("yamada", op_password) == 429);  // locked, even with the right password
  const std::string log = [&] {
    std::ifstream in(f.cfg.quarantine.dir / "audit.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  CHECK(log.find("\"web:yamada\"") != std::string::npos);
  CHECK(log.find("\"failed\"") != std::string::npos);
  CHECK(log.find("locked out") != std::string::npos);

  client d{f.port};  // a fresh client from the same address is still locked out (per address)
  CHECK(d.login("sato", viewer_password) == 429);
}

TEST_CASE("admin server: operator session, escaping in served pages, CSRF on every POST, delete") {
  fixture f;
  client c{f.port};
  c.get("/login");
  auto r = c.post_form("/login", "login_token=" + c.jar["__Host-mukai_login"] + "&user=yamada&password=" + op_password);
  REQUIRE(r.result() == http::status::see_other);
  bool found = false;
  for (auto it = r.find(http::field::set_cookie); it != r.end() && it->name() == http::field::set_cookie; ++it) {
    const std::string v(it->value());
    if (!v.starts_with("__Host-mukai_session=")) continue;
    found = true;
    CHECK(v.find("; Secure") != std::string::npos);
    CHECK(v.find("; HttpOnly") != std::string::npos);
    CHECK(v.find("; SameSite=Strict") != std::string::npos);
    CHECK(v.find("; Path=/") != std::string::npos);
    CHECK(v.substr(21, 64).find_first_not_of("0123456789abcdef") == std::string::npos);
  }
  CHECK(found);
  c.refresh_csrf();
  REQUIRE(c.csrf.size() == 64);

  auto list = c.get("/?q=" + f.hostile_id);
  CHECK(list.result() == http::status::ok);
  CHECK(list.body().find("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;") != std::string::npos);
  CHECK(list.body().find("<script>") == std::string::npos);
  // A GET form sends every field, the last one often empty ("...&reason="): the filters must read
  // exactly what was sent (Boost.URL 1.81 reads past the end of such a query).
  CHECK(c.get("/?q=Invoice&status=&since=&until=&sender=&recipient=&subject=&reason=").body().find(
            "class=\"count\">1 ") != std::string::npos);
  CHECK(c.get("/?q=Invoice&status=held&reason=").body().find("class=\"count\">1 ") != std::string::npos);
  CHECK(c.get("/?q=Invoice&status=deleted").body().find("class=\"count\">0 ") != std::string::npos);
  CHECK(c.get("/?q=Invoice+42").body().find("class=\"count\">1 ") != std::string::npos);  // '+' is a space
  auto detail = c.get("/item/" + f.hostile_id);
  CHECK(detail.result() == http::status::ok);
  CHECK(detail.body().find("&lt;img src=x onerror=alert(2)&gt;.pdf") != std::string::npos);
  CHECK(detail.body().find("<img") == std::string::npos);
  CHECK(detail.body().find("id=\"release\"") != std::string::npos);
  CHECK(c.get("/item/20991231T000000Z-0000000000").result() == http::status::not_found);
  CHECK(c.get("/item/..%2F..%2Fetc").result() == http::status::not_found);
  CHECK(c.get("/item/" + f.pdf_id + "/delete").result() == http::status::ok);  // the confirmation

  CHECK(c.post_form("/item/" + f.pdf_id + "/delete", "confirm=yes").result() == http::status::forbidden);
  CHECK(c.post_form("/item/" + f.pdf_id + "/delete", "confirm=yes&csrf=" + std::string(64, 'a')).result() ==
        http::status::forbidden);
  CHECK(f.index->get(f.pdf_id)->status == item_status::held);
  CHECK(c.post_form("/item/" + f.pdf_id + "/delete", "csrf=" + c.csrf).result() == http::status::bad_request);  // no confirm
  auto del = c.post_form("/item/" + f.pdf_id + "/delete", "confirm=yes&csrf=" + c.csrf);
  CHECK(del.result() == http::status::ok);
  CHECK(f.index->get(f.pdf_id)->status == item_status::deleted);
  auto item = f.index->get(f.pdf_id);
  REQUIRE(item);
  REQUIRE_FALSE(item->history.empty());
  CHECK(item->history.back().who == "web:yamada");

  CHECK(c.post_form("/logout", "csrf=" + c.csrf).result() == http::status::see_other);
  CHECK(c.get("/").result() == http::status::see_other);  // the session is gone
}

TEST_CASE("admin server: a viewer reads but cannot release or delete (403, audited)") {
  fixture f;
  client c{f.port};
  REQUIRE(c.login("sato", viewer_password) == 303);
  auto detail = c.get("/item/" + f.pdf_id);
  CHECK(detail.result() == http::status::ok);
  CHECK(detail.body().find("id=\"release\"") == std::string::npos);
  CHECK(c.get("/item/" + f.pdf_id + "/release").result() == http::status::forbidden);
  CHECK(c.post_form("/item/" + f.pdf_id + "/release", "confirm=yes&csrf=" + c.csrf).result() == http::status::forbidden);
  CHECK(c.post_form("/item/" + f.pdf_id + "/delete", "confirm=yes&csrf=" + c.csrf).result() == http::status::forbidden);
  CHECK(f.index->get(f.pdf_id)->status == item_status::held);
  std::ifstream in(f.cfg.quarantine.dir / "audit.log");
  const std::string log(std::istreambuf_iterator<char>(in), {});
  CHECK(log.find("\"web:sato\"") != std::string::npos);
  CHECK(log.find("\"denied\"") != std::string::npos);
}

TEST_CASE("admin server: served pages show the engine's tokens in words beside the tokens; the API keeps tokens") {
  fixture f;
  const std::string exe_id = f.quarantine(message("Tool for you", "tool.exe"));
  client c{f.port};
  REQUIRE(c.login("sato", viewer_password) == 303);
  auto ja = c.get("/item/" + exe_id);
  REQUIRE(ja.result() == http::status::ok);
  const std::string& d = ja.body();
  CHECK(d.find("<span class=\"label\">無害化して配送</span> <code class=\"tok\">sanitized</code>") != std::string::npos);
  CHECK(d.find("<span class=\"label\">添付ファイル等を削除 (1)</span> <code class=\"tok\">attachments-removed=1</code>") !=
        std::string::npos);
  CHECK(d.find("<span class=\"label\">本文として表示</span> <code class=\"tok\">kept-as-text</code>") != std::string::npos);
  CHECK(d.find("<span class=\"label\">隔離</span> <code class=\"tok\">quarantined</code>") != std::string::npos);
  // The part's content flags come from the stored report (the index does not keep them).
  CHECK(d.find("<span class=\"label\">実行ファイル</span> <code class=\"tok\">executable</code>") != std::string::npos);
  const std::string en = c.get("/item/" + exe_id + "?lang=en").body();
  CHECK(en.find("<span class=\"label\">attachments removed (1)</span>") != std::string::npos);
  CHECK(en.find("<span class=\"label\">executable</span> <code class=\"tok\">executable</code>") != std::string::npos);
  const std::string list = c.get("/?q=tool.exe&lang=en").body();
  CHECK(list.find("<span class=\"label\" title=\"attachments-removed=1\">attachments removed (1)</span>") !=
        std::string::npos);

  auto api = c.get("/api/v1/items/" + exe_id);
  REQUIRE(api.result() == http::status::ok);
  const auto o = json::parse(api.body()).as_object();
  CHECK(o.at("verdict").as_string() == "sanitized");
  CHECK(o.at("reasons").as_array().at(0).as_string() == "attachments-removed=1");
  CHECK(api.body().find("attachments removed") == std::string::npos);
  CHECK(api.body().find("\"quarantined\"") != std::string::npos);
}

TEST_CASE("admin server: JSON API login, list, detail, stats, CSRF header, release") {
  fixture f;
  client c{f.port};
  CHECK(c.send(http::verb::post, "/api/v1/login", R"({"user":"yamada","password":"op-secret"})", "text/plain").result() ==
        http::status::unsupported_media_type);
  auto bad = c.send(http::verb::post, "/api/v1/login", R"({"user":"yamada","password":"x"})", "application/json");
  CHECK(bad.result() == http::status::unauthorized);
  auto login = c.send(http::verb::post, "/api/v1/login", R"({"user":"yamada","password":"op-secret"})", "application/json");
  REQUIRE(login.result() == http::status::ok);
  const auto lj = json::parse(login.body()).as_object();
  CHECK(lj.at("role").as_string() == "operator");
  const std::string token(lj.at("csrf").as_string());
  CHECK(token.size() == 64);

  auto items = c.get("/api/v1/items?status=held&limit=1");
  REQUIRE(items.result() == http::status::ok);
  CHECK(header(items, "Content-Type") == "application/json; charset=utf-8");
  const auto ij = json::parse(items.body()).as_object();
  CHECK(ij.at("total").as_int64() == 2);
  CHECK(ij.at("items").as_array().size() == 1);
  CHECK(c.get("/api/v1/items?status=bogus").result() == http::status::bad_request);
  auto subject = json::parse(c.get("/api/v1/items?subject=Invoice").body()).as_object();
  REQUIRE(subject.at("items").as_array().size() == 1);
  CHECK(subject.at("items").as_array()[0].at("id").as_string() == f.pdf_id);

  auto one = c.get("/api/v1/items/" + f.hostile_id);
  REQUIRE(one.result() == http::status::ok);
  const auto oj = json::parse(one.body()).as_object();
  CHECK(oj.at("subject").as_string() == "<script>alert(1)</script>\"'&");  // the value itself, JSON-escaped
  CHECK(oj.at("parts").as_array().size() >= 1);
  CHECK(oj.contains("history"));
  CHECK(oj.contains("sanitized_text"));
  auto stats = json::parse(c.get("/api/v1/stats").body()).as_object();
  CHECK(stats.at("held").as_int64() == 2);

  CHECK(c.send(http::verb::post, "/api/v1/items/" + f.pdf_id + "/release").result() == http::status::forbidden);
  auto rel = c.send(http::verb::post, "/api/v1/items/" + f.pdf_id + "/release", R"({"to":["a@example.lg.jp"]})",
                    "application/json", {{"X-CSRF-Token", token}});
  CHECK(rel.result() == http::status::ok);
  const auto rj = json::parse(rel.body()).as_object();
  CHECK(rj.at("result").as_string() == "ok");
  CHECK(rj.at("to").as_array().size() == 1);
  CHECK(f.index->get(f.pdf_id)->status == item_status::released);
  auto badto = c.send(http::verb::post, "/api/v1/items/" + f.pdf_id + "/release", R"({"to":["not an address"]})",
                      "application/json", {{"X-CSRF-Token", token}});
  CHECK(badto.result() == http::status::bad_request);
  CHECK(c.send(http::verb::post, "/api/v1/logout", "", "", {{"X-CSRF-Token", token}}).result() == http::status::ok);
  CHECK(c.get("/api/v1/stats").result() == http::status::unauthorized);
}

TEST_CASE("admin server: a message held whole needs the operator's unverified confirmation, form and API") {
  fixture f;
  const std::string held = f.quarantine(mukai::test::pgp_encrypted_message("Encrypted 7"));
  const std::string held2 = f.quarantine(mukai::test::pgp_encrypted_message("Encrypted 8"));
  client c{f.port};
  REQUIRE(c.login("yamada", op_password) == 303);
  auto confirm = c.get("/item/" + held + "/release");
  CHECK(confirm.result() == http::status::ok);
  CHECK(confirm.body().find("id=\"unverified-warning\"") != std::string::npos);
  CHECK(confirm.body().find("name=\"unverified\"") != std::string::npos);
  CHECK(c.get("/item/" + f.pdf_id + "/release").body().find("name=\"unverified\"") == std::string::npos);

  auto refused = c.post_form("/item/" + held + "/release", "confirm=yes&csrf=" + c.csrf);
  CHECK(refused.result() == http::status::conflict);
  CHECK(f.index->get(held)->status == item_status::held);
  CHECK(f.sp->list(spool_state::outbound)->empty());
  auto ok = c.post_form("/item/" + held + "/release", "confirm=yes&unverified=yes&csrf=" + c.csrf);
  CHECK(ok.result() == http::status::ok);
  CHECK(f.index->get(held)->status == item_status::released);
  CHECK(f.index->get(held)->history.back().detail.find("unverified=confirmed") != std::string::npos);

  auto login = c.send(http::verb::post, "/api/v1/login", R"({"user":"yamada","password":"op-secret"})", "application/json");
  REQUIRE(login.result() == http::status::ok);
  const std::string token(json::parse(login.body()).as_object().at("csrf").as_string());
  const std::string api = "/api/v1/items/" + held2 + "/release";
  CHECK(c.send(http::verb::post, api, "{}", "application/json", {{"X-CSRF-Token", token}}).result() ==
        http::status::conflict);
  CHECK(c.send(http::verb::post, api, R"({"unverified":"yes"})", "application/json", {{"X-CSRF-Token", token}})
            .result() == http::status::bad_request);
  CHECK(f.index->get(held2)->status == item_status::held);
  auto rel = c.send(http::verb::post, api, R"({"unverified":true})", "application/json", {{"X-CSRF-Token", token}});
  CHECK(rel.result() == http::status::ok);
  CHECK(f.index->get(held2)->status == item_status::released);
}

TEST_CASE("admin server: request limits, TLS only, the generated certificate") {
  fixture f;
  client c{f.port};
  REQUIRE(c.login("yamada", op_password) == 303);
  auto big_body = c.post_form("/logout", "csrf=" + std::string(9000, 'a'));
  CHECK(big_body.result() == http::status::payload_too_large);
  auto big_header = c.send(http::verb::get, "/", "", "", {{"X-Filler", std::string(5000, 'x')}});
  CHECK(big_header.result() == http::status::request_header_fields_too_large);

  // Plain HTTP gets no HTTP answer.
  {
    asio::io_context io;
    asio::ip::tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), f.port});
    asio::write(s, asio::buffer(std::string("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")));
    std::string got(256, '\0');
    boost::system::error_code ec;
    const auto n = s.read_some(asio::buffer(got), ec);
    got.resize(ec ? 0 : n);
    CHECK(got.find("HTTP/1.1") == std::string::npos);
  }
  // TLS 1.1 is refused.
  {
    asio::io_context io;
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_1_VERSION);
    SSL_CTX_set_max_proto_version(ctx.native_handle(), TLS1_1_VERSION);
    SSL_CTX_set_security_level(ctx.native_handle(), 0);
    beast::ssl_stream<asio::ip::tcp::socket> s(io, ctx);
    s.next_layer().connect({asio::ip::make_address("127.0.0.1"), f.port});
    boost::system::error_code ec;
    s.handshake(asio::ssl::stream_base::client, ec);
    CHECK(ec);
  }
  const fs::path tls = f.dir.path() / "var" / "admin-tls";
  CHECK(admin_tls_dir(f.cfg) == tls);
  struct stat st {};
  REQUIRE(::stat((tls / "key.pem").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(f.server->certificate_fingerprint() == certificate_fingerprint(tls / "cert.pem"));
  CHECK(f.server->certificate_fingerprint().size() == 95);  // 32 bytes as "AB:" x 32 less one colon
}

TEST_CASE("admin server: a bad password hash in the configuration stops start-up") {
  testing::temp_dir dir{"mukai-admin-bad"};
  config::mukai_config cfg = config::embedded_default();
  cfg.quarantine.dir = dir.path() / "q";
  cfg.admin.listen = "127.0.0.1:0";
  cfg.admin.users = {{"x", "operator", "plaintext"}};
  posix_file_ops ops;
  std::error_code ec;
  fs::create_directories(cfg.quarantine.dir);
  auto index = open_sqlite_index(cfg.quarantine.dir / "index.sqlite", ec);
  REQUIRE(index);
  quarantine_store store(cfg.quarantine.dir, ops, index.get());
  spool sp(dir.path() / "spool", ops);
  audit_log audit(cfg.quarantine.dir / "audit.log");
  quarantine_service service(cfg, store, *index, sp, audit);
  logger log{log_level::error, "", false};
  CHECK_THROWS_AS(admin_server(cfg, service, audit, log, nullptr, nullptr), std::invalid_argument);
}
