// bench_console: response times of the web console at 100,000 quarantined items, end to end (issue
// 4: p99 under 100 ms for a filtered page).
//
// Fills (or reuses, --dir/--keep) an index with the records of bench_quarantine
// (bench/quarantine_items.hpp), quarantines one real message through the engine for the detail
// page (its files, sanitized text and report exist), starts the real admin_server with the real
// quarantine_service on a loopback port, logs in once through the JSON API and then times full
// HTTPS GETs over one keep-alive TLS connection (a Beast client): from writing the request to
// having read the whole response. Per page: bench_quarantine's query set on the list page (HTML,
// Japanese) and on GET /api/v1/items, plus the detail page; each `--repeat` times after one
// warm-up request, printing median, p99 and max. Each page's first answer is checked against the
// index (the count it shows), so a page that silently failed is not timed as a fast one.
// The list page has no filename field: its "filename .exe" row searches ".exe" as free text (which
// covers filenames), the API row uses filename=.
//
//   bench_console [--items N] [--repeat R] [--dir DIR] [--keep]   (--dir of a kept run: reuses its items)
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/parse.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/quarantine_items.hpp"
#include "server/admin_auth.hpp"
#include "server/admin_html.hpp"
#include "server/admin_server.hpp"
#include "server/durable_fs.hpp"
#include "server/sanitize_job.hpp"
#include "server/spool.hpp"

using namespace mukai;
using namespace mukai::bench;
namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr std::size_t page_size = 50;  // the console's default page
constexpr std::string_view detail_subject = "mukai bench detail 見積書の送付について";

// A message with an HTML body and a PDF attachment: its detail page has reasons, a converted part,
// a quarantined part and sanitized text to show.
std::string detail_message() {
  return "From: sales@vendor.example.co.jp\r\nTo: kikaku@city.example.lg.jp\r\nSubject: "
         "=?UTF-8?B?bXVrYWkgYmVuY2ggZGV0YWlsIOimi+epjeabuOOBrumAgeS7mOOBq+OBpOOBhOOBpg==?=\r\nMessage-ID: <bench-detail@vendor.example.co.jp>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
         "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>見積書を添付します。</p>\r\n"
         "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"mitsumori.pdf\"\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n"
         "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKJSVFT0YK\r\n--b--\r\n";
}

std::string local_time(std::int64_t t) {  // what parse_local_time reads back
  const auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::localtime_r(&tt, &tm);
  char buf[32];
  return std::string(buf, std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm));
}

void add(std::string& q, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  q += q.empty() ? '?' : '&';
  q += key;
  q += '=';
  q += server::url_component(value);
}

// The list page's form cannot filter by filename: that row searches it as free text.
item_filter as_list_page_filter(item_filter f) {
  if (!f.filename.empty()) f.text = std::exchange(f.filename, {});
  return f;
}

// The criteria the list page and the API name alike.
std::string common_params(const item_filter& f) {
  std::string q;
  add(q, "q", f.text);
  if (f.status) add(q, "status", server::to_string(*f.status));
  add(q, "sender", f.sender);
  add(q, "recipient", f.recipient);
  add(q, "subject", f.subject);
  add(q, "reason", f.reason);
  return q;
}

std::string list_page_target(const item_filter& f) {
  std::string q = common_params(f);
  if (f.since) add(q, "since", local_time(*f.since));
  if (f.until) add(q, "until", local_time(*f.until));
  if (f.offset) add(q, "page", std::to_string(f.offset / page_size + 1));
  return "/" + q;
}

std::string api_target(const item_filter& f) {
  std::string q = common_params(f);
  add(q, "filename", f.filename);
  if (f.since) add(q, "since", std::to_string(*f.since));
  if (f.until) add(q, "until", std::to_string(*f.until));
  if (f.offset) add(q, "offset", std::to_string(f.offset));
  add(q, "limit", std::to_string(page_size));
  return "/api/v1/items" + q;
}

// One TLS connection, kept alive for every request; the session cookie after login().
class console_client {
 public:
  explicit console_client(std::uint16_t port) : ctx_(asio::ssl::context::tls_client), stream_(io_, ctx_) {
    // The bench's own server with its self-signed certificate on loopback: nothing to verify here
    // (tests/unit/server/admin_server_test.cpp covers the certificate).
    ctx_.set_verify_mode(asio::ssl::verify_none);
    stream_.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    stream_.handshake(asio::ssl::stream_base::client);
  }

  http::response<http::string_body> request(http::verb method, const std::string& target, std::string body = {}) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(true);
    if (!cookie_.empty()) req.set(http::field::cookie, cookie_);
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    http::write(stream_, req);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream_, buffer_, parser);
    return parser.release();
  }

  bool login(const std::string& user, const std::string& password) {
    const auto res = request(http::verb::post, "/api/v1/login",
                             R"({"user":")" + user + R"(","password":")" + password + R"("})");
    for (auto it = res.find(http::field::set_cookie); it != res.end() && it->name() == http::field::set_cookie; ++it) {
      const std::string c(it->value());
      if (c.starts_with("__Host-mukai_session=")) cookie_ = c.substr(0, c.find(';'));
    }
    return res.result() == http::status::ok && !cookie_.empty();
  }

 private:
  asio::io_context io_;
  asio::ssl::context ctx_;
  beast::ssl_stream<asio::ip::tcp::socket> stream_;
  beast::flat_buffer buffer_;
  std::string cookie_;
};

struct page_result {
  percentiles p;
  std::size_t bytes = 0;
};

// Times `repeat` GETs of target(round) after one warm-up; `check` vets the warm-up's body.
std::optional<page_result> time_page(console_client& c, std::size_t repeat,
                                     const std::function<std::string(std::size_t)>& target,
                                     const std::function<bool(const std::string&)>& check) {
  const auto warm = c.request(http::verb::get, target(0));
  if (warm.result() != http::status::ok || !check(warm.body())) {
    std::fprintf(stderr, "GET %s: HTTP %u, unexpected answer (%zu bytes)\n", target(0).c_str(), warm.result_int(),
                 warm.body().size());
    return std::nullopt;
  }
  std::vector<double> times;
  std::size_t bytes = 0;
  for (std::size_t r = 0; r < repeat; ++r) {
    const std::string t = target(r);
    const auto s = clock_type::now();
    const auto res = c.request(http::verb::get, t);
    times.push_back(ms_since(s));
    if (res.result() != http::status::ok) {
      std::fprintf(stderr, "GET %s: HTTP %u\n", t.c_str(), res.result_int());
      return std::nullopt;
    }
    bytes = res.body().size();
  }
  return page_result{summarize(times), bytes};
}

void print_row(const char* name, const page_result& r, std::uint64_t matches) {
  std::printf("%-30s %10.2f %10.2f %10.2f %9zu %9llu\n", name, r.p.median, r.p.p99, r.p.max, r.bytes,
              static_cast<unsigned long long>(matches));
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = parse_bench_args(argc, argv, "bench_console");
  if (!args) return 2;
  const auto [items, repeat, dir, keep] = *args;
  // The quarantine in DIR/quarantine: the generated certificate goes beside it (DIR/admin-tls).
  config::mukai_config cfg = config::embedded_default();
  cfg.quarantine.dir = dir / "quarantine";
  cfg.spool.dir = dir / "spool";
  cfg.admin.listen = "127.0.0.1:0";
  const std::string password = "bench-secret";
  cfg.admin.users = {{"bench", "viewer", server::hash_password(password, server::scrypt_params{10, 8, 1})}};
  std::error_code ec;
  fs::create_directories(cfg.quarantine.dir, ec);
  auto index = server::open_sqlite_index(cfg.quarantine.dir / "index.sqlite", ec);
  if (!index) {
    std::fprintf(stderr, "cannot open the index: %s\n", ec.message().c_str());
    return 1;
  }
  const std::int64_t now = unix_now();
  if (!fill_index(*index, items, now, cfg.quarantine.dir.c_str())) return 1;

  server::posix_file_ops ops;
  server::quarantine_store store(cfg.quarantine.dir, ops, index.get());
  server::spool sp(cfg.spool.dir, ops);
  if (store.ensure_layout() || sp.ensure_layout()) {
    std::fprintf(stderr, "cannot lay out %s\n", dir.c_str());
    return 1;
  }
  item_filter detail_filter;
  detail_filter.subject = std::string(detail_subject);
  std::string detail_id;
  if (const auto found = index->list(detail_filter); !found.items.empty()) {
    detail_id = found.items.front().id;
  } else {
    const auto out = server::sanitize_one(detail_message(), cfg.pol, &store,
                                          {"sales@vendor.example.co.jp", {"kikaku@city.example.lg.jp"}});
    if (out.store_error || !out.result.rep.quarantine_id) {
      std::fprintf(stderr, "cannot quarantine the detail page's message\n");
      return 1;
    }
    detail_id = *out.result.rep.quarantine_id;
  }

  server::audit_log audit(cfg.quarantine.dir / "audit.log");
  server::quarantine_service service(cfg, store, *index, sp, audit);
  server::logger log{server::log_level::warning, "", false};
  std::optional<server::admin_server> console;
  try {
    console.emplace(cfg, service, audit, log, nullptr, nullptr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot start the console: %s\n", e.what());
    return 1;
  }
  console->start();
  const std::uint16_t port = console->local_endpoints().at(0).port();

  int status = 0;
  try {
    console_client client(port);
    if (!client.login("bench", password)) {
      std::fprintf(stderr, "login failed\n");
      return 1;
    }
    std::printf("%zu items, %zu requests per page after one warm-up, one keep-alive TLS connection\n",
                static_cast<std::size_t>(index->list({}).total), repeat);
    std::printf("%-30s %10s %10s %10s %9s %9s\n", "page", "median ms", "p99 ms", "max ms", "bytes", "matches");
    const auto run = [&](const std::string& name, const std::function<std::string(std::size_t)>& target,
                         const std::function<bool(const std::string&)>& check, std::uint64_t matches) {
      const auto r = time_page(client, repeat, target, check);
      if (!r) {
        status = 1;
        return;
      }
      print_row(name.c_str(), *r, matches);
    };
    for (const auto& q : queries) {
      const item_filter f = as_list_page_filter(q.make(0, now));
      const std::uint64_t total = index->list(f).total;
      run(std::string("list: ") + q.name, [&](std::size_t r) { return list_page_target(as_list_page_filter(q.make(r, now))); },
          [&](const std::string& body) {
            return body.find("<p class=\"count\">" + std::to_string(total) + " ") != std::string::npos;
          },
          total);
    }
    run("detail page", [&](std::size_t) { return "/item/" + server::url_component(detail_id); },
        [&](const std::string& body) { return body.find("mitsumori.pdf") != std::string::npos; }, 1);
    for (const auto& q : queries) {
      const std::uint64_t total = index->list(q.make(0, now)).total;
      run(std::string("API: ") + q.name, [&](std::size_t r) { return api_target(q.make(r, now)); },
          [&](const std::string& body) {
            std::error_code jec;
            const auto v = boost::json::parse(body, jec);
            const auto* o = jec ? nullptr : v.if_object();
            const auto* t = o ? o->if_contains("total") : nullptr;
            return t && t->is_number() && t->to_number<std::uint64_t>() == total;
          },
          total);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "client: %s\n", e.what());
    status = 1;
  }
  console->stop();
  console.reset();
  index.reset();
  if (!keep) fs::remove_all(dir, ec);
  else std::printf("kept %s\n", dir.c_str());
  return status;
}
