// The admin listener: accept loop, TLS, HTTP/1.1 framing with limits and deadlines, shutdown; see
// admin_server.hpp. What a request means is decided in admin_routes.cpp.
#include "server/admin_server.hpp"

#include <fcntl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "server/admin_cert.hpp"
#include "server/smtp_server.hpp"
#include "server/tls_context.hpp"

namespace mukai::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct connection {
  connection(tcp::socket s, asio::ssl::context& ctx, asio::ip::address a)
      : stream(beast::tcp_stream(std::move(s)), ctx), client(a) {}
  beast::ssl_stream<beast::tcp_stream> stream;
  asio::ip::address client;
};

// One request handed to the handler pool and back (a plain struct behind a pointer, not a capturing
// lambda returning the result: GCC 12 miscompiles the latter, see smtp_session.cpp).
struct job {
  http_request req;
  asio::ip::address client;
  http_response res;
};

asio::awaitable<void> run_job(admin_app* app, job* j) {
  j->res = app->handle(j->req, j->client);
  co_return;
}

void set_cloexec(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

}  // namespace

struct admin_server::impl : std::enable_shared_from_this<impl> {
  impl(logger& l, admin_server_options o) : handlers(o.handler_threads), log(l), opt(o) {}

  asio::io_context io;
  asio::thread_pool handlers;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::shared_ptr<asio::ssl::context> tls;
  std::unique_ptr<admin_app> app;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<tcp::endpoint> endpoints;
  std::vector<std::thread> threads;
  std::string fingerprint;
  logger& log;
  admin_server_options opt;

  std::mutex mutex;
  std::map<std::uint64_t, std::weak_ptr<connection>> connections;
  std::uint64_t next_key = 0;
  bool stopping = false;
  bool started = false;

  asio::awaitable<void> accept_loop(tcp::acceptor* a);
  asio::awaitable<void> serve(std::shared_ptr<connection> c, std::uint64_t key);
  void spawn(asio::awaitable<void> coro, const asio::any_io_executor& ex, std::string what);
};

void admin_server::impl::spawn(asio::awaitable<void> coro, const asio::any_io_executor& ex, std::string what) {
  asio::co_spawn(ex, std::move(coro), [self = shared_from_this(), what = std::move(what)](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      self->log.write(log_level::error, "admin: " + what + " failed: " + x.what());
    } catch (...) {
      self->log.write(log_level::error, "admin: " + what + " failed");
    }
  });
}

asio::awaitable<void> admin_server::impl::accept_loop(tcp::acceptor* a) {
  for (;;) {
    auto [ec, socket] = co_await a->async_accept(asio::make_strand(io), use_tuple);
    if (!a->is_open() || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: pause instead of spinning; the condition clears as connections end.
      asio::steady_timer pause(io, std::chrono::milliseconds(100));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    set_cloexec(socket.native_handle());
    boost::system::error_code rec;
    // A response leaves as several TLS records; with Nagle the last one waits for the client's
    // delayed ACK (40 ms on Linux): bench_console saw every page larger than one record take 44 ms.
    socket.set_option(tcp::no_delay(true), rec);
    const auto remote = socket.remote_endpoint(rec);
    if (rec) continue;
    std::uint64_t key = 0;
    std::shared_ptr<connection> c;
    {
      const std::lock_guard lock(mutex);
      std::erase_if(connections, [](const auto& kv) { return kv.second.expired(); });
      if (stopping || connections.size() >= opt.max_connections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      key = ++next_key;
      c = std::make_shared<connection>(std::move(socket), *tls, unmap_address(remote.address()));
      connections.emplace(key, c);
    }
    const auto ex = c->stream.get_executor();
    spawn(serve(std::move(c), key), ex, "connection");
  }
}

asio::awaitable<void> admin_server::impl::serve(std::shared_ptr<connection> c, std::uint64_t key) {
  auto& lowest = beast::get_lowest_layer(c->stream);
  lowest.expires_after(opt.handshake_timeout);
  auto [hec] = co_await c->stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
  if (!hec) {
    beast::flat_buffer buffer(opt.header_limit + opt.body_limit + 4096);
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(opt.header_limit));
      parser.body_limit(opt.body_limit);
      lowest.expires_after(opt.request_timeout);
      auto [rec, n] = co_await http::async_read(c->stream, buffer, parser, use_tuple);
      (void)n;
      if (rec == http::error::header_limit || rec == http::error::body_limit || rec == http::error::buffer_overflow) {
        http_response res{rec == http::error::body_limit ? http::status::payload_too_large
                                                         : http::status::request_header_fields_too_large,
                          11};
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        res.body() = "request too large\n";
        res.keep_alive(false);
        res.prepare_payload();
        lowest.expires_after(opt.write_timeout);
        co_await http::async_write(c->stream, res, use_tuple);
        break;
      }
      if (rec) break;  // end of stream, timeout, malformed request: nothing to answer
      job j{parser.release(), c->client, {}};
      co_await asio::co_spawn(handlers.get_executor(), run_job(app.get(), &j), asio::use_awaitable);
      lowest.expires_after(opt.write_timeout);
      auto [wec, wn] = co_await http::async_write(c->stream, j.res, use_tuple);
      (void)wn;
      if (wec || !j.res.keep_alive()) break;
    }
    lowest.expires_after(std::chrono::seconds(2));
    co_await c->stream.async_shutdown(use_tuple);
  }
  boost::system::error_code ignored;
  lowest.socket().close(ignored);
  const std::lock_guard lock(mutex);
  connections.erase(key);
}

admin_server::admin_server(const config::mukai_config& config, quarantine_service& service, audit_log& audit,
                           logger& log, std::function<std::string()> metrics_text,
                           std::function<std::pair<bool, std::string>()> readiness, admin_server_options options)
    : impl_(std::make_shared<impl>(log, options)) {
  if (config.admin.listen.empty()) throw std::invalid_argument("admin.listen is not set");
  const admin_certificate cert = ensure_admin_certificate(config);
  impl_->fingerprint = cert.fingerprint;
  config::tls_config tls;
  tls.cert = cert.cert.string();
  tls.key = cert.key.string();
  tls.min_version = config.tls.min_version == "1.3" ? "1.3" : "1.2";
  impl_->tls = make_server_tls_context(tls);
  impl_->app = std::make_unique<admin_app>(config, service, audit, log,
                                           admin_hooks{std::move(metrics_text), std::move(readiness)}, options.app);
  for (const auto& ep : resolve_listen_address(impl_->io.get_executor(), config.admin.listen, "admin.listen")) {
    auto a = std::make_unique<tcp::acceptor>(impl_->io);
    try {
      a->open(ep.protocol());
      set_cloexec(a->native_handle());
      a->set_option(tcp::acceptor::reuse_address(true));
      if (ep.address().is_v6()) a->set_option(asio::ip::v6_only(true));
      a->bind(ep);
      a->listen(asio::socket_base::max_listen_connections);
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("admin.listen \"" + config.admin.listen + "\" (" + ep.address().to_string() + " port " +
                               std::to_string(ep.port()) + "): " + e.code().message());
    }
    impl_->endpoints.push_back(a->local_endpoint());
    impl_->acceptors.push_back(std::move(a));
  }
  log.write(log_level::info, std::string("admin: ") + (cert.generated ? "generated a self-signed certificate " : "certificate ") +
                                 cert.cert.string() + ", SHA-256 fingerprint " + cert.fingerprint);
}

admin_server::~admin_server() { stop(); }

void admin_server::start() {
  auto& st = *impl_;
  if (st.started) return;
  st.started = true;
  st.work.emplace(st.io.get_executor());
  for (auto& a : st.acceptors) st.spawn(st.accept_loop(a.get()), st.io.get_executor(), "accept loop");
  for (std::size_t i = 0; i < std::max<std::size_t>(1, st.opt.io_threads); ++i)
    st.threads.emplace_back([&st] { st.io.run(); });
  for (const auto& ep : st.endpoints)
    st.log.write(log_level::info, "admin: listening on https://" +
                                      (ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string()) +
                                      ":" + std::to_string(ep.port()) + "/");
}

void admin_server::stop() {
  auto& st = *impl_;
  std::vector<std::shared_ptr<connection>> open;
  {
    const std::lock_guard lock(st.mutex);
    if (st.stopping) return;
    st.stopping = true;
    for (auto& [key, w] : st.connections)
      if (auto c = w.lock()) open.push_back(std::move(c));
  }
  for (auto& a : st.acceptors) {
    asio::post(st.io, [a = a.get()] {
      boost::system::error_code ignored;
      a->close(ignored);
    });
  }
  for (auto& c : open) {
    asio::post(c->stream.get_executor(), [c] {
      boost::system::error_code ignored;
      beast::get_lowest_layer(c->stream).socket().close(ignored);
    });
  }
  open.clear();
  st.work.reset();
  if (!st.started) {
    for (auto& a : st.acceptors) {
      boost::system::error_code ignored;
      a->close(ignored);
    }
  }
  for (auto& t : st.threads) t.join();
  st.threads.clear();
  st.handlers.join();
}

std::vector<tcp::endpoint> admin_server::local_endpoints() const { return impl_->endpoints; }
const std::string& admin_server::certificate_fingerprint() const noexcept { return impl_->fingerprint; }
admin_app& admin_server::app() noexcept { return *impl_->app; }

}  // namespace mukai::server
