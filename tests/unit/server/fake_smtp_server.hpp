// Test-only: a scripted SMTP server on a loopback port (port 0: the kernel picks a free one) for the
// delivery client's tests. Each accepted connection runs the next script: lines to send, command
// prefixes to expect, DATA/BDAT to capture, STARTTLS with a given context, a stall, a hang-up.
// Pipelining shows in a script as several expect() steps with no say() between them: a client that
// waits for a reply before its next command never gets one and times out.
// Mismatches are recorded in the session log (never thrown into the io_context). Everything runs on
// one single-threaded io_context, driven by run_until() with a wall-clock bound.
// Also: a self-signed certificate made with OpenSSL's API, and a helper to run a coroutine to its end.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mukai::test {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

struct script_step {
  enum class kind { say, expect, data, bdat, starttls, stall, hang_up };
  kind what;
  std::string text;
};
inline script_step say(std::string text) { return {script_step::kind::say, std::move(text)}; }
inline script_step expect(std::string prefix) { return {script_step::kind::expect, std::move(prefix)}; }
inline script_step expect_data() { return {script_step::kind::data, {}}; }
inline script_step expect_bdat() { return {script_step::kind::bdat, {}}; }  // one "BDAT n [LAST]" + n bytes
inline script_step starttls() { return {script_step::kind::starttls, {}}; }
inline script_step stall() {
  return {script_step::kind::stall, {}};
}  // read and ignore until the peer closes
inline script_step hang_up() { return {script_step::kind::hang_up, {}}; }

struct session_log {
  std::vector<std::string> lines;  // command lines received, CRLF removed
  std::string data;                // raw DATA payload including the final ".\r\n"
  std::string bdat;                // BDAT payloads concatenated
  std::vector<std::string> bdat_commands;
  std::vector<std::string> errors;  // script mismatches and I/O errors before the script ended
  bool tls = false;
  std::string tls_error;  // the server-side handshake failed (expected in some tests)
  bool done = false;
};

class fake_smtp_server {
 public:
  // `tls` is used by starttls() steps; it must outlive the server.
  fake_smtp_server(asio::io_context& ioc, std::vector<std::vector<script_step>> scripts,
                   ssl::context* tls = nullptr, bool ipv6 = false)
      : ioc_(ioc),
        acceptor_(ioc, tcp::endpoint(
                           ipv6 ? asio::ip::make_address("::1") : asio::ip::make_address("127.0.0.1"), 0)),
        scripts_(std::move(scripts)),
        tls_(tls),
        logs_(scripts_.size()) {
    asio::co_spawn(ioc_, accept_loop(), [this](std::exception_ptr e) {
      if (e) accept_error_ = true;
    });
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  const std::vector<session_log>& logs() const { return logs_; }
  const session_log& log(std::size_t i = 0) const { return logs_.at(i); }
  bool all_done() const {
    for (const auto& l : logs_) {
      if (!l.done) return false;
    }
    return true;
  }
  void stop() {
    boost::system::error_code ec;
    acceptor_.close(ec);
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (std::size_t i = 0; i < scripts_.size(); ++i) {
      auto [ec, sock] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      auto conn = std::make_shared<tcp::socket>(std::move(sock));
      asio::co_spawn(ioc_, run_session(conn, i), [this, i](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            logs_[i].errors.push_back(std::string("exception: ") + ex.what());
          }
        }
        logs_[i].done = true;
      });
    }
  }

  struct conn_state {
    std::shared_ptr<tcp::socket> sock;
    std::optional<ssl::stream<tcp::socket&>> tls;
    std::string buf;
  };

  static asio::awaitable<std::size_t> read_some(conn_state& c, asio::mutable_buffer b) {
    std::size_t n = 0;
    if (c.tls) {
      n = co_await c.tls->async_read_some(b, asio::use_awaitable);
    } else {
      n = co_await c.sock->async_read_some(b, asio::use_awaitable);
    }
    co_return n;
  }
  static asio::awaitable<void> write(conn_state& c, const std::string& s) {
    if (c.tls) {
      co_await asio::async_write(*c.tls, asio::buffer(s), asio::use_awaitable);
    } else {
      co_await asio::async_write(*c.sock, asio::buffer(s), asio::use_awaitable);
    }
  }
  // Reads until `delim`; returns the bytes before it and consumes it.
  static asio::awaitable<std::string> read_until(conn_state& c, std::string_view delim,
                                                 std::size_t limit = 64 << 20) {
    std::array<char, 8192> tmp{};
    for (;;) {
      if (auto pos = c.buf.find(delim); pos != std::string::npos) {
        std::string out = c.buf.substr(0, pos);
        c.buf.erase(0, pos + delim.size());
        co_return out;
      }
      if (c.buf.size() > limit) throw std::runtime_error("fake server: input too long");
      const std::size_t n = co_await read_some(c, asio::buffer(tmp));
      c.buf.append(tmp.data(), n);
    }
  }
  // The DATA payload up to and including the terminating ".\r\n" (the CRLF that ends the DATA command
  // line counts as the first CRLF of CRLF.CRLF, so an empty message is just ".\r\n").
  static asio::awaitable<std::string> read_data(conn_state& c) {
    std::array<char, 8192> tmp{};
    for (;;) {
      if (c.buf.starts_with(".\r\n")) {
        c.buf.erase(0, 3);
        co_return std::string(".\r\n");
      }
      if (auto pos = c.buf.find("\r\n.\r\n"); pos != std::string::npos) {
        std::string out = c.buf.substr(0, pos + 5);
        c.buf.erase(0, pos + 5);
        co_return out;
      }
      if (c.buf.size() > (64u << 20)) throw std::runtime_error("fake server: data too long");
      const std::size_t n = co_await read_some(c, asio::buffer(tmp));
      c.buf.append(tmp.data(), n);
    }
  }
  static asio::awaitable<std::string> read_exactly(conn_state& c, std::size_t n) {
    std::array<char, 8192> tmp{};
    while (c.buf.size() < n) {
      const std::size_t got = co_await read_some(c, asio::buffer(tmp));
      c.buf.append(tmp.data(), got);
    }
    std::string out = c.buf.substr(0, n);
    c.buf.erase(0, n);
    co_return out;
  }

  asio::awaitable<void> run_session(std::shared_ptr<tcp::socket> sock, std::size_t index) {
    session_log& log = logs_[index];
    conn_state c;
    c.sock = sock;
    for (const auto& step : scripts_[index]) {
      switch (step.what) {
        case script_step::kind::say:
          co_await write(c, step.text);
          break;
        case script_step::kind::expect: {
          std::string line = co_await read_until(c, "\r\n");
          log.lines.push_back(line);
          if (line.compare(0, step.text.size(), step.text) != 0) {
            log.errors.push_back("expected '" + step.text + "', got '" + line + "'");
            co_return;
          }
          break;
        }
        case script_step::kind::data: {
          std::string payload = co_await read_data(c);
          log.data = payload;
        } break;
        case script_step::kind::bdat: {
          std::string line = co_await read_until(c, "\r\n");
          log.lines.push_back(line);
          log.bdat_commands.push_back(line);
          if (!line.starts_with("BDAT ")) {
            log.errors.push_back("expected BDAT, got '" + line + "'");
            co_return;
          }
          const std::size_t n = std::stoul(line.substr(5));
          std::string chunk = co_await read_exactly(c, n);
          log.bdat += chunk;
          break;
        }
        case script_step::kind::starttls:
          if (tls_ == nullptr) throw std::logic_error("fake server: no TLS context");
          c.buf.clear();
          c.tls.emplace(*c.sock, *tls_);
          {
            auto [ec] = co_await c.tls->async_handshake(ssl::stream_base::server,
                                                        asio::as_tuple(asio::use_awaitable));
            if (ec) {
              log.tls_error = ec.message();
              co_return;
            }
          }
          log.tls = true;
          break;
        case script_step::kind::stall: {
          std::array<char, 4096> tmp{};
          for (;;) {
            auto [ec, n] =
                co_await c.sock->async_read_some(asio::buffer(tmp), asio::as_tuple(asio::use_awaitable));
            if (ec) break;
          }
          break;
        }
        case script_step::kind::hang_up: {
          boost::system::error_code ec;
          c.sock->close(ec);
          co_return;
        }
      }
    }
    // The script ended: wait for the client to close (bounded by the test's run_until).
    boost::system::error_code ec;
    c.sock->shutdown(tcp::socket::shutdown_send, ec);
    std::array<char, 4096> tmp{};
    for (;;) {
      auto [rec, n] =
          co_await c.sock->async_read_some(asio::buffer(tmp), asio::as_tuple(asio::use_awaitable));
      if (rec) break;
    }
  }

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  std::vector<std::vector<script_step>> scripts_;
  ssl::context* tls_;
  std::vector<session_log> logs_;
  bool accept_error_ = false;
};

// Runs the io_context until done() or the wall-clock bound passes; returns done().
inline bool run_until(asio::io_context& ioc, const std::function<bool()>& done,
                      std::chrono::steady_clock::duration bound = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    ioc.run_one_for(std::chrono::milliseconds(50));
    if (ioc.stopped()) ioc.restart();
  }
  return done();
}

// Spawns `a` on `ioc`; the returned state holds its value or its exception when it completes.
template <typename T>
struct spawned {
  std::optional<T> value;
  std::exception_ptr error;
  bool done = false;
};
template <typename T>
std::shared_ptr<spawned<T>> spawn(asio::io_context& ioc, asio::awaitable<T> a) {
  auto state = std::make_shared<spawned<T>>();
  asio::co_spawn(ioc, std::move(a), [state](std::exception_ptr e, T v) {
    state->error = e;
    if (!e) state->value = std::move(v);
    state->done = true;
  });
  return state;
}

struct test_certificate {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed P-256 certificate valid now, with the given subjectAltName ("DNS:localhost,IP:127.0.0.1").
inline test_certificate make_self_signed(const std::string& common_name,
                                         const std::string& subject_alt_names) {
  auto fail = [](const char* what) { throw std::runtime_error(std::string("test certificate: ") + what); };
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  if (!key) fail("EVP_EC_gen");
  std::unique_ptr<X509, decltype(&X509_free)> x(X509_new(), &X509_free);
  if (!x) fail("X509_new");
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 4242);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 24 * 3600);
  X509_set_pubkey(x.get(), key.get());
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509V3_CTX v3{};
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x.get(), x.get(), nullptr, nullptr, 0);
  for (auto [nid, value] :
       {std::pair<int, std::string>{NID_subject_alt_name, subject_alt_names},
        std::pair<int, std::string>{NID_basic_constraints, "critical,CA:TRUE"},
        std::pair<int, std::string>{NID_key_usage, "critical,digitalSignature,keyCertSign"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (ext == nullptr) fail("X509V3_EXT_conf_nid");
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x.get(), key.get(), EVP_sha256()) == 0) fail("X509_sign");
  auto to_pem = [&](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    if (!bio || write(bio.get()) != 1) fail("PEM write");
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
  };
  test_certificate out;
  out.cert_pem = to_pem([&](BIO* b) { return PEM_write_bio_X509(b, x.get()); });
  out.key_pem = to_pem(
      [&](BIO* b) { return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr); });
  return out;
}

inline std::unique_ptr<ssl::context> server_tls_context(const test_certificate& cert) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->use_certificate_chain(asio::buffer(cert.cert_pem));
  ctx->use_private_key(asio::buffer(cert.key_pem), ssl::context::pem);
  return ctx;
}

}  // namespace mukai::test
