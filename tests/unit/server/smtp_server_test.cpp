// The SMTP listener over real loopback sockets: scripted clients against a server started in the
// test (port 0, a temporary spool). End to end into the spool (durable before the 250), pipelining,
// STARTTLS (with injection), relay and network denial, connection caps, timeouts and the minimum
// data rate, SMTP smuggling, spool failures, reload, shutdown with a message in flight, and the
// memory of 1000 idle sessions (printed; a generous bound is asserted).
// Also the helpers: network_acl, the Received header, make_smtp_server_config, the TLS context.
//
// Threading: the server runs on two io_context threads and a two-thread pool; the test clients are
// plain blocking POSIX sockets (OpenSSL for TLS) with poll() deadlines, so every wait is bounded.
#include "server/smtp_server.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <doctest/doctest.h>

#include "tests/support/temp_dir.hpp"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/durable_fs.hpp"
#include "server/network_acl.hpp"
#include "server/smtp_server_state.hpp"
#include "server/smtp_trace.hpp"
#include "server/spool.hpp"
#include "server/tls_context.hpp"

using namespace mukai;
using namespace mukai::server;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

using mukai::testing::scoped_umask;
using mukai::testing::temp_dir;


// A self-signed P-256 certificate for CN=localhost, made with OpenSSL's APIs.
struct test_certificate {
  std::string cert, key;
};

test_certificate make_self_signed(const fs::path& dir, const std::string& stem = "server") {
  test_certificate out{(dir / (stem + ".crt")).string(), (dir / (stem + ".key")).string()};
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  REQUIRE(pkey != nullptr);
  X509* x = X509_new();
  REQUIRE(x != nullptr);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"),
                             -1, -1, 0);
  X509_set_issuer_name(x, name);
  REQUIRE(X509_sign(x, pkey, EVP_sha256()) > 0);
  BIO* cb = BIO_new_file(out.cert.c_str(), "w");
  REQUIRE(cb != nullptr);
  REQUIRE(PEM_write_bio_X509(cb, x) == 1);
  BIO_free(cb);
  BIO* kb = BIO_new_file(out.key.c_str(), "w");
  REQUIRE(kb != nullptr);
  REQUIRE(PEM_write_bio_PrivateKey(kb, pkey, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  BIO_free(kb);
  X509_free(x);
  EVP_PKEY_free(pkey);
  return out;
}

config::mukai_config test_config() {
  config::mukai_config c = config::embedded_default();
  c.source = "smtp_server_test";
  c.smtp.listen = {"127.0.0.1:0"};
  c.smtp.hostname = "mx.test.example";
  c.smtp.relay_domains = {"example.lg.jp"};
  c.smtp.client_networks = {"127.0.0.0/8", "::1/128"};
  c.smtp.timeouts = {30s, 30s, 30s, 60s};
  c.spool.min_free_space = 0;
  return c;
}

// The server under test with its spool, running on two I/O threads and a two-thread pool.
class test_server {
 public:
  explicit test_server(const config::mukai_config& cfg, smtp_server_options options = {}) {
    REQUIRE_FALSE(spool_.ensure_layout());
    options.on_message_spooled = [this](std::string id) {
      const std::lock_guard lock(mutex_);
      spooled_.push_back(std::move(id));
    };
    options.log = [this](smtp_log_level, std::string_view line) {
      const std::lock_guard lock(mutex_);
      if (logs_.size() < 10000) logs_.emplace_back(line);
    };
    server_.emplace(io_.get_executor(), pool_.get_executor(), spool_, cfg, std::move(options));
    server_->start();
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~test_server() { stop(2s); }
  test_server(const test_server&) = delete;
  test_server& operator=(const test_server&) = delete;

  // shutdown(grace) to completion (bounded), then the threads and the pool.
  void stop(std::chrono::steady_clock::duration grace) {
    if (stopped_) return;
    stopped_ = true;
    auto done = asio::co_spawn(io_, server_->shutdown(grace), asio::use_future);
    CHECK(done.wait_for(30s) == std::future_status::ready);
    work_.reset();
    for (auto& t : threads_) t.join();
    pool_.join();
  }
  std::future<void> start_shutdown(std::chrono::steady_clock::duration grace) {
    return asio::co_spawn(io_, server_->shutdown(grace), asio::use_future);
  }
  void finish_after_shutdown() {
    stopped_ = true;
    work_.reset();
    for (auto& t : threads_) t.join();
    pool_.join();
  }

  unsigned short port() const { return server_->local_endpoints().front().port(); }
  smtp_server& server() { return *server_; }
  server::spool& spool() { return spool_; }
  fault_injecting_file_ops& ops() { return ops_; }
  std::vector<std::string> spooled() {
    const std::lock_guard lock(mutex_);
    return spooled_;
  }
  std::size_t incoming_count() {
    auto l = spool_.list(spool_state::incoming);
    REQUIRE(l.has_value());
    return l->size();
  }
  bool wait_active(std::uint64_t n, std::chrono::milliseconds timeout = 5s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (server_->counters().sessions_active == n) return true;
      std::this_thread::sleep_for(5ms);
    }
    return server_->counters().sessions_active == n;
  }

 private:
  temp_dir dir_;
  posix_file_ops posix_;
  fault_injecting_file_ops ops_{posix_};
  server::spool spool_{dir_.path() / "spool", ops_};
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  asio::thread_pool pool_{2};
  std::mutex mutex_;
  std::vector<std::string> spooled_;
  std::vector<std::string> logs_;
  std::optional<smtp_server> server_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

// ----------------------------------------------------------------------------------------------------
// A scripted SMTP client: blocking POSIX socket, every read bounded by poll(), optional TLS.
// ----------------------------------------------------------------------------------------------------
class client {
 public:
  explicit client(unsigned short port, const char* ip = "127.0.0.1") {
    const bool v6 = std::strchr(ip, ':') != nullptr;
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    // Backstop for the blocking calls inside SSL_read/SSL_write; poll() gives the real deadlines.
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc = -1;
    if (v6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      ::inet_pton(AF_INET6, ip, &a.sin6_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      ::inet_pton(AF_INET, ip, &a.sin_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    connected_ = rc == 0;
  }
  ~client() {
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  // Sends everything; false if the server is gone.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      long n = 0;
      if (ssl_) {
        n = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
      } else {
        n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      }
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // One read of whatever arrives within `timeout`; false on timeout, EOF or error.
  bool fill(std::chrono::milliseconds timeout) {
    if (eof_) return false;
    if (!(ssl_ && SSL_pending(ssl_) > 0)) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    }
    char buf[16384];
    long n = 0;
    if (ssl_) {
      n = SSL_read(ssl_, buf, sizeof buf);
    } else {
      n = ::recv(fd_, buf, sizeof buf, 0);
    }
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  // The next complete reply (all its lines), or "" if none arrives within `timeout`.
  std::string reply(std::chrono::milliseconds timeout = 5s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      std::size_t pos = 0;
      while (true) {
        const std::size_t eol = buffer_.find("\r\n", pos);
        if (eol == std::string::npos) break;
        const std::string_view line(buffer_.data() + pos, eol - pos);
        if (line.size() < 4 || line[3] == ' ') {
          std::string r = buffer_.substr(0, eol + 2);
          buffer_.erase(0, eol + 2);
          return r;
        }
        pos = eol + 2;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !fill(left)) return {};
    }
  }

  // Sends a command and returns its reply.
  std::string command(std::string_view line, std::chrono::milliseconds timeout = 5s) {
    if (!send(std::string(line) + "\r\n")) return {};
    return reply(timeout);
  }

  // True once the server closed the connection (EOF or reset) within `timeout`; what arrived before
  // stays readable with reply().
  bool wait_closed(std::chrono::milliseconds timeout = 5s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!eof_) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      if (!fill(left) && !eof_) return false;
    }
    return true;
  }

  // Client side of STARTTLS (no certificate verification: the test's certificate is self-signed).
  bool start_tls(int max_version = 0) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (!ctx_) return false;
    if (max_version) SSL_CTX_set_max_proto_version(ctx_, max_version);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    const bool ok = SSL_connect(ssl_) == 1;
    ERR_clear_error();
    return ok;
  }
  SSL* ssl() const { return ssl_; }
  const std::string& pending() const { return buffer_; }
  void release_buffer() { std::string().swap(buffer_); }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string buffer_;
};

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::string queue_id_of(const std::string& reply) {
  constexpr std::string_view marker = "250 2.0.0 Ok: queued as ";
  if (!starts_with(reply, marker)) return {};
  return reply.substr(marker.size(), reply.size() - marker.size() - 2);
}

// EHLO and a transaction up to 354.
void open_transaction(client& c, std::string_view rcpt = "rcpt@example.lg.jp") {
  REQUIRE(starts_with(c.reply(), "220 "));
  REQUIRE(starts_with(c.command("EHLO client.example"), "250-mx.test.example"));
  REQUIRE(starts_with(c.command("MAIL FROM:<sender@internet.example>"), "250 "));
  REQUIRE(starts_with(c.command("RCPT TO:<" + std::string(rcpt) + ">"), "250 "));
  REQUIRE(starts_with(c.command("DATA"), "354 "));
}

std::size_t rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (starts_with(line, "VmRSS:")) return std::stoul(line.substr(6));
  return 0;
}

}  // namespace

// ----------------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------------
TEST_CASE("network_acl: IPv4, IPv6, mapped addresses, prefixes and bad entries") {
  const auto a = [](const char* s) { return asio::ip::make_address(s); };
  const network_acl acl({"127.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::1/128", "10.1.2.3/8"});
  CHECK(acl.allows(a("127.0.0.1")));
  CHECK(acl.allows(a("127.255.255.254")));
  CHECK(acl.allows(a("::ffff:127.0.0.1")));  // an IPv4 client on an IPv6 socket
  CHECK(acl.allows(a("192.0.2.1")));
  CHECK_FALSE(acl.allows(a("192.0.2.2")));
  CHECK(acl.allows(a("2001:db8:ffff::1")));
  CHECK_FALSE(acl.allows(a("2001:db9::1")));
  CHECK(acl.allows(a("::1")));
  CHECK_FALSE(acl.allows(a("::2")));
  CHECK(acl.allows(a("10.200.0.1")));  // host bits beyond the prefix are ignored
  CHECK_FALSE(acl.allows(a("11.0.0.1")));
  CHECK_FALSE(acl.allows(a("::127.0.0.1")));  // IPv4-compatible is not IPv4-mapped

  CHECK(network_acl({"0.0.0.0/0"}).allows(a("203.0.113.9")));
  CHECK_FALSE(network_acl({"0.0.0.0/0"}).allows(a("2001:db8::1")));
  CHECK(network_acl({"::/0"}).allows(a("203.0.113.9")));
  CHECK_FALSE(network_acl().allows(a("127.0.0.1")));
  CHECK(network_acl({"192.168.1.0/23"}).allows(a("192.168.0.77")));
  CHECK_FALSE(network_acl({"192.168.1.0/23"}).allows(a("192.168.2.1")));

  for (const char* bad :
       {"", "/8", "127.0.0.1/33", "::1/129", "127.0.0.1/", "127.0.0.1/-1", "127.0.0.1/+8", "127.0.0.1/ 8",
        "localhost", "fe80::1%eth0", "1.2.3", "127.0.0.1/8/8", "300.1.1.1"}) {
    CAPTURE(bad);
    CHECK_FALSE(ip_network::parse(bad).has_value());
    CHECK_THROWS_AS(network_acl({"127.0.0.1", bad}), std::invalid_argument);
  }
  CHECK(ip_network::parse("10.1.2.3/8") == ip_network::parse("10.0.0.0/8"));
}

TEST_CASE("connection caps count IPv4 clients per address and IPv6 clients per /64") {
  const auto key = [](const char* a) { return detail::client_key_of(asio::ip::make_address(a)); };
  CHECK(key("192.0.2.1") != key("192.0.2.2"));
  CHECK(key("192.0.2.1") == key("::ffff:192.0.2.1"));
  CHECK(key("2001:db8::1") == key("2001:db8::ffff:1:2:3"));  // same /64
  CHECK(key("2001:db8::1") != key("2001:db8:0:1::1"));
}

TEST_CASE("Received header, address literals, DSN wire form and the spool envelope") {
  CHECK(address_literal(asio::ip::make_address("192.0.2.1")) == "[192.0.2.1]");
  CHECK(address_literal(asio::ip::make_address("::ffff:192.0.2.1")) == "[192.0.2.1]");
  CHECK(address_literal(asio::ip::make_address("2001:db8::1")) == "[IPv6:2001:db8::1]");

  smtp_dsn_notify n;
  CHECK(dsn_notify_wire(n) == "");
  n.given = true;
  n.never = true;
  CHECK(dsn_notify_wire(n) == "NEVER");
  n.never = false;
  n.delay = true;
  n.success = true;
  CHECK(dsn_notify_wire(n) == "SUCCESS,DELAY");
  n.failure = true;
  CHECK(dsn_notify_wire(n) == "SUCCESS,FAILURE,DELAY");

  const auto when = std::chrono::system_clock::from_time_t(1'700'000'000);
  const std::string date = format_rfc5322_date(when);
  // "Tue, 14 Nov 2023 22:13:20 +0000" in UTC; the zone depends on TZ, the shape does not.
  CHECK(date.size() >= 30);
  CHECK(date[3] == ',');
  CHECK((date[date.size() - 5] == '+' || date[date.size() - 5] == '-'));

  received_trace t;
  t.helo = "client.example";
  t.client = asio::ip::make_address("192.0.2.7");
  t.by_host = "mx.example";
  t.with_protocol = "ESMTPS";
  t.tls_description = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384";
  t.queue_id = "0123456789abcdef";
  t.single_recipient = "a@example.lg.jp";
  t.when = when;
  const std::string h = make_received_header(t);
  CHECK(h ==
        "Received: from client.example ([192.0.2.7])\r\n"
        "\tby mx.example (mukai) with ESMTPS\r\n"
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
        "\tid 0123456789abcdef\r\n"
        "\tfor <a@example.lg.jp>;\r\n\t" +
            date + "\r\n");
  t.single_recipient = {};
  t.tls_description = {};
  t.with_protocol = "ESMTP";
  CHECK(make_received_header(t) ==
        "Received: from client.example ([192.0.2.7])\r\n"
        "\tby mx.example (mukai) with ESMTP\r\n"
        "\tid 0123456789abcdef;\r\n\t" +
            date + "\r\n");

  smtp_envelope e;
  e.helo_name = "client.example";
  e.esmtp = true;
  e.tls = true;
  e.sender = "s@internet.example";
  e.smtputf8 = true;
  e.body = smtp_body_type::eight_bit_mime;
  e.ret = smtp_dsn_ret::headers;
  e.envid = "ID+2B1";
  smtp_recipient r;
  r.mailbox = "a@example.lg.jp";
  r.notify.given = true;
  r.notify.success = true;
  r.notify.failure = true;
  r.orcpt = "rfc822;a@example.lg.jp";
  e.recipients.push_back(r);
  const spool_envelope s = to_spool_envelope(e, asio::ip::make_address("::ffff:192.0.2.7"), when);
  CHECK(s.mail_from == "s@internet.example");
  CHECK(s.body == spool_body_type::eight_bit_mime);
  CHECK(s.smtputf8);
  CHECK(s.ret == spool_dsn_ret::headers);
  CHECK(s.envid == "ID+2B1");
  REQUIRE(s.recipients.size() == 1);
  CHECK(s.recipients[0] == spool_recipient{"a@example.lg.jp", "SUCCESS,FAILURE", "rfc822;a@example.lg.jp"});
  CHECK(s.client_address == "192.0.2.7");
  CHECK(s.helo == "client.example");
  CHECK(s.esmtp);
  CHECK(s.tls);
  CHECK(s.received == when);
}

TEST_CASE("make_smtp_server_config: limits, relay domains fail closed, bad settings throw") {
  auto def = config::embedded_default();
  def.smtp.relay_domains.clear();
  CHECK(make_smtp_server_config(def).relay_domains == std::vector<std::string>{"*"});

  auto c = test_config();
  c.smtp.relay_domains.clear();
  CHECK(make_smtp_server_config(c).relay_domains.empty());  // a file's empty list relays nothing

  c = test_config();
  c.smtp.max_message_size = 12345;
  c.smtp.max_recipients = 7;
  c.smtp.max_errors = 3;
  c.smtp.max_messages_per_session = 9;
  c.smtp.bare_lf = config::bare_lf_mode::normalise;
  const auto p = make_smtp_server_config(c);
  CHECK(p.hostname == "mx.test.example");
  CHECK(p.limits.max_message_size == 12345);
  CHECK(p.limits.max_recipients == 7);
  CHECK(p.limits.max_errors == 3);
  CHECK(p.limits.max_messages == 9);
  CHECK(p.limits.normalise_bare_lf);
  CHECK_FALSE(p.tls_available);

  c = test_config();
  c.smtp.hostname = "bad host";
  CHECK_THROWS_AS((void)make_smtp_server_config(c), std::invalid_argument);
  c.smtp.hostname = "";
  CHECK_THROWS_AS((void)make_smtp_server_config(c), std::invalid_argument);
  c = test_config();
  c.smtp.require_tls = true;
  CHECK_THROWS_AS((void)make_smtp_server_config(c), std::invalid_argument);
}

TEST_CASE("TLS context: loads a pair, refuses a mismatched key, a missing file and a bad min_version") {
  temp_dir dir;
  const auto a = make_self_signed(dir.path(), "a");
  const auto b = make_self_signed(dir.path(), "b");
  config::tls_config t;
  t.cert = a.cert;
  t.key = a.key;
  CHECK(make_server_tls_context(t) != nullptr);
  t.min_version = "1.3";
  CHECK(make_server_tls_context(t) != nullptr);
  t.min_version = "1.1";
  CHECK_THROWS_AS((void)make_server_tls_context(t), std::runtime_error);
  t.min_version = "1.2";
  t.key = b.key;
  CHECK_THROWS_AS((void)make_server_tls_context(t), std::runtime_error);
  t.key = (dir.path() / "missing.key").string();
  CHECK_THROWS_AS((void)make_server_tls_context(t), std::runtime_error);
}

// ----------------------------------------------------------------------------------------------------
// The listener over loopback
// ----------------------------------------------------------------------------------------------------
TEST_CASE("end to end: the message is durable in incoming/ with its Received header before the 250") {
  test_server s(test_config());
  client c(s.port());
  REQUIRE(c.connected());
  const std::string greeting = c.reply();
  CHECK(greeting == "220 mx.test.example ESMTP mukai\r\n");
  const std::string ehlo = c.command("EHLO client.example");
  CHECK(starts_with(ehlo, "250-mx.test.example\r\n"));
  CHECK(ehlo.find("250-PIPELINING\r\n") != std::string::npos);
  CHECK(ehlo.find("STARTTLS") == std::string::npos);  // no certificate configured
  CHECK(starts_with(c.command("MAIL FROM:<sender@internet.example> BODY=8BITMIME RET=FULL ENVID=ENV1"),
                    "250 2.1.0"));
  CHECK(starts_with(
      c.command("RCPT TO:<rcpt@example.lg.jp> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;rcpt@example.lg.jp"),
      "250 2.1.5"));
  CHECK(starts_with(c.command("DATA"), "354 "));
  const std::string body = "From: sender@internet.example\r\nSubject: hello\r\n\r\nline 1\r\n..dot line\r\n";
  REQUIRE(c.send(body + ".\r\n"));
  const std::string queued = c.reply();
  const std::string id = queue_id_of(queued);
  REQUIRE_MESSAGE(!id.empty(), queued);

  // Read right after the 250 arrived: the file is already durable and verifies.
  auto m = s.spool().read(spool_state::incoming, id);
  REQUIRE(m.has_value());
  const std::string& stored = m->body;
  CHECK(starts_with(stored,
                    "Received: from client.example ([127.0.0.1])\r\n"
                    "\tby mx.test.example (mukai) with ESMTP\r\n"
                    "\tid " +
                        id +
                        "\r\n"
                        "\tfor <rcpt@example.lg.jp>;\r\n\t"));
  const std::size_t header_end = stored.find("\r\n", stored.find("\tfor <")) + 2;
  const std::size_t body_start = stored.find("\r\n", header_end) + 2;  // the date line
  CHECK(stored.substr(body_start) ==
        "From: sender@internet.example\r\nSubject: hello\r\n\r\nline 1\r\n.dot line\r\n");

  const spool_envelope& e = m->envelope;
  CHECK(e.mail_from == "sender@internet.example");
  REQUIRE(e.recipients.size() == 1);
  CHECK(e.recipients[0] ==
        spool_recipient{"rcpt@example.lg.jp", "SUCCESS,FAILURE", "rfc822;rcpt@example.lg.jp"});
  CHECK(e.body == spool_body_type::eight_bit_mime);
  CHECK(e.ret == spool_dsn_ret::full);
  CHECK(e.envid == "ENV1");
  CHECK(e.client_address == "127.0.0.1");
  CHECK(e.helo == "client.example");
  CHECK(e.esmtp);
  CHECK_FALSE(e.tls);
  const auto age = std::chrono::system_clock::now() - e.received;
  CHECK(age >= 0s);
  CHECK(age < 60s);

  CHECK(s.spooled() == std::vector<std::string>{id});  // the scheduler's hook ran before the 250
  CHECK(starts_with(c.command("QUIT"), "221 "));
  CHECK(c.wait_closed());
  const auto k = s.server().counters();
  CHECK(k.messages_spooled == 1);
  CHECK(k.sessions_accepted == 1);
  CHECK(k.replies_3xx == 1);
  CHECK(k.replies_2xx == 6);  // 220, EHLO, MAIL, RCPT, queued, 221
  CHECK(k.replies_5xx == 0);
}

TEST_CASE("pipelining: one write of commands gets its replies in one write; two messages in one write") {
  test_server s(test_config());
  client c(s.port());
  REQUIRE(starts_with(c.reply(), "220 "));
  REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
  REQUIRE(
      c.send("MAIL FROM:<a@internet.example>\r\nRCPT TO:<x@example.lg.jp>\r\nRCPT TO:<y@example.lg.jp>\r\n"
             "DATA\r\n"));
  // The four replies come in one write: the first read returns them all.
  REQUIRE(c.fill(5s));
  CHECK(c.pending() ==
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
  for (int i = 0; i < 4; ++i) (void)c.reply();

  // A message, then a whole second transaction and QUIT, in one write: the protocol stops at the end
  // of the first message, the rest waits in the read buffer until that message is durable.
  REQUIRE(
      c.send("Subject: one\r\n\r\nfirst\r\n.\r\n"
             "MAIL FROM:<b@internet.example>\r\nRCPT TO:<z@example.lg.jp>\r\nDATA\r\n"
             "Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n"));
  const std::string id1 = queue_id_of(c.reply());
  CHECK(starts_with(c.reply(), "250 2.1.0"));
  CHECK(starts_with(c.reply(), "250 2.1.5"));
  CHECK(starts_with(c.reply(), "354 "));
  const std::string id2 = queue_id_of(c.reply());
  CHECK(starts_with(c.reply(), "221 "));
  CHECK(c.wait_closed());
  REQUIRE(!id1.empty());
  REQUIRE(!id2.empty());
  auto m1 = s.spool().read(spool_state::incoming, id1);
  auto m2 = s.spool().read(spool_state::incoming, id2);
  REQUIRE(m1.has_value());
  REQUIRE(m2.has_value());
  CHECK(m1->envelope.recipients.size() == 2);
  CHECK(m1->body.find("\tid " + id1 + ";\r\n") != std::string::npos);  // no "for" with two recipients
  CHECK(m1->body.ends_with("\r\nSubject: one\r\n\r\nfirst\r\n"));
  CHECK(m2->envelope.mail_from == "b@internet.example");
  CHECK(m2->body.ends_with("\r\nSubject: two\r\n\r\nsecond\r\n"));
}

TEST_CASE("BDAT over a real socket") {
  test_server s(test_config());
  client c(s.port());
  REQUIRE(starts_with(c.reply(), "220 "));
  REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
  REQUIRE(c.send("MAIL FROM:<a@internet.example>\r\nRCPT TO:<x@example.lg.jp>\r\nBDAT 9\r\nSubject: "));
  CHECK(starts_with(c.reply(), "250 2.1.0"));
  CHECK(starts_with(c.reply(), "250 2.1.5"));
  CHECK(starts_with(c.reply(), "250 "));
  REQUIRE(c.send("BDAT 11 LAST\r\nx\r\n\r\nbody\r\n"));
  const std::string id = queue_id_of(c.reply());
  REQUIRE(!id.empty());
  auto m = s.spool().read(spool_state::incoming, id);
  REQUIRE(m.has_value());
  CHECK(m->body.ends_with("\r\nSubject: x\r\n\r\nbody\r\n"));
}

TEST_CASE("STARTTLS: injected pipelined command is dropped, state resets, mail over TLS is ESMTPS") {
  temp_dir dir;
  const auto cert = make_self_signed(dir.path());
  auto cfg = test_config();
  cfg.tls.cert = cert.cert;
  cfg.tls.key = cert.key;
  test_server s(cfg);
  client c(s.port());
  REQUIRE(starts_with(c.reply(), "220 "));
  const std::string ehlo = c.command("EHLO client.example");
  CHECK(ehlo.find("250-STARTTLS\r\n") != std::string::npos);
  // CVE-2011-0411 class: a command in the same packet as STARTTLS must never run after the handshake.
  REQUIRE(c.send("STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n"));
  CHECK(starts_with(c.reply(), "220 2.0.0"));
  CHECK(c.pending().empty());
  REQUIRE(c.start_tls());
  CHECK(std::string(SSL_get_version(c.ssl())) == "TLSv1.3");
  const std::string ehlo2 = c.command("EHLO client.example");
  CHECK(starts_with(ehlo2, "250-mx.test.example"));
  CHECK(ehlo2.find("STARTTLS") == std::string::npos);
  // Had the injected MAIL run, this RCPT would be accepted.
  CHECK(starts_with(c.command("RCPT TO:<rcpt@example.lg.jp>"), "503 "));
  CHECK(starts_with(c.command("MAIL FROM:<sender@internet.example>"), "250 "));
  CHECK(starts_with(c.command("RCPT TO:<rcpt@example.lg.jp>"), "250 "));
  CHECK(starts_with(c.command("DATA"), "354 "));
  REQUIRE(c.send("Subject: tls\r\n\r\nsecret\r\n.\r\n"));
  const std::string id = queue_id_of(c.reply());
  REQUIRE(!id.empty());
  auto m = s.spool().read(spool_state::incoming, id);
  REQUIRE(m.has_value());
  CHECK(m->envelope.tls);
  CHECK(m->envelope.mail_from == "sender@internet.example");
  CHECK(m->body.find("with ESMTPS\r\n\t(using TLSv1.3 with cipher ") != std::string::npos);
  CHECK(starts_with(c.command("QUIT"), "221 "));
  CHECK(s.server().counters().tls_sessions == 1);
}

TEST_CASE("STARTTLS: a failed handshake drops the connection; min_version 1.3 refuses TLS 1.2") {
  temp_dir dir;
  const auto cert = make_self_signed(dir.path());
  auto cfg = test_config();
  cfg.tls.cert = cert.cert;
  cfg.tls.key = cert.key;
  cfg.tls.min_version = "1.3";
  test_server s(cfg);
  {
    client c(s.port());
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
    CHECK(starts_with(c.command("STARTTLS"), "220 "));
    REQUIRE(c.send("this is not a TLS record\r\n"));
    CHECK(c.wait_closed());
  }
  {
    client c(s.port());
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
    CHECK(starts_with(c.command("STARTTLS"), "220 "));
    CHECK_FALSE(c.start_tls(TLS1_2_VERSION));
  }
  REQUIRE(s.wait_active(0));
  CHECK(s.server().counters().tls_failures == 2);
  CHECK(s.server().counters().tls_sessions == 0);
}

TEST_CASE("policy: relay denial, client outside client_networks, storage low") {
  SUBCASE("foreign recipient domain") {
    test_server s(test_config());
    client c(s.port());
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
    REQUIRE(starts_with(c.command("MAIL FROM:<a@internet.example>"), "250 "));
    CHECK(starts_with(c.command("RCPT TO:<victim@foreign.example>"), "550 5.7.1"));
    CHECK(starts_with(c.command("RCPT TO:<ok@example.lg.jp>"), "250 "));
  }
  SUBCASE("client outside client_networks") {
    auto cfg = test_config();
    cfg.smtp.client_networks = {"10.0.0.0/8"};
    test_server s(cfg);
    client c(s.port());
    CHECK(starts_with(c.reply(), "554 5.7.1 "));
    CHECK(starts_with(c.command("EHLO client.example"), "503 "));
    CHECK(starts_with(c.command("MAIL FROM:<a@internet.example>"), "503 "));
    CHECK(starts_with(c.command("QUIT"), "221 "));
    CHECK(c.wait_closed());
    CHECK(s.server().counters().clients_denied == 1);
  }
  SUBCASE("spool below its free-space floor: MAIL gets 452") {
    auto cfg = test_config();
    cfg.spool.min_free_space = std::uint64_t{1} << 62;
    test_server s(cfg);
    client c(s.port());
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
    CHECK(starts_with(c.command("MAIL FROM:<a@internet.example>"), "452 4.3.1"));
  }
}

TEST_CASE("connection caps: per client and global, refused with 421 4.7.0 and a slot frees again") {
  SUBCASE("max_connections_per_ip") {
    auto cfg = test_config();
    cfg.smtp.max_connections_per_ip = 2;
    test_server s(cfg);
    client a(s.port()), b(s.port());
    CHECK(starts_with(a.reply(), "220 "));
    CHECK(starts_with(b.reply(), "220 "));
    client over(s.port());
    CHECK(starts_with(over.reply(), "421 4.7.0 mx.test.example "));
    CHECK(over.wait_closed());
    CHECK(starts_with(a.command("QUIT"), "221 "));
    REQUIRE(s.wait_active(1));
    client again(s.port());
    CHECK(starts_with(again.reply(), "220 "));
    CHECK(s.server().counters().sessions_refused == 1);
  }
  SUBCASE("max_connections") {
    auto cfg = test_config();
    cfg.smtp.max_connections = 1;
    test_server s(cfg);
    client a(s.port());
    CHECK(starts_with(a.reply(), "220 "));
    client over(s.port());
    CHECK(starts_with(over.reply(), "421 4.7.0 "));
    CHECK(over.wait_closed());
  }
}

TEST_CASE("timeouts: greeting, command, data block, minimum data rate and idle") {
  SUBCASE("a client that never sends a command") {
    auto cfg = test_config();
    cfg.smtp.timeouts.greeting = 1s;
    test_server s(cfg);
    client c(s.port());
    REQUIRE(starts_with(c.reply(), "220 "));
    const auto start = std::chrono::steady_clock::now();
    CHECK(starts_with(c.reply(4s), "421 4.4.2 mx.test.example "));
    CHECK(c.wait_closed());
    CHECK(std::chrono::steady_clock::now() - start >= 900ms);
    CHECK(s.server().counters().timeouts == 1);
  }
  SUBCASE("a partial command line, then silence") {
    auto cfg = test_config();
    cfg.smtp.timeouts.command = 1s;
    test_server s(cfg);
    client c(s.port());
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
    REQUIRE(c.send("MAIL FROM:<a@inter"));
    CHECK(starts_with(c.reply(4s), "421 4.4.2 "));
    CHECK(c.wait_closed());
  }
  SUBCASE("a message that stalls: dropped, never spooled") {
    auto cfg = test_config();
    cfg.smtp.timeouts.data_block = 1s;
    test_server s(cfg);
    client c(s.port());
    open_transaction(c);
    REQUIRE(c.send("Subject: stalled\r\n\r\nhalf a mess"));
    CHECK(starts_with(c.reply(4s), "421 4.4.2 "));
    CHECK(c.wait_closed());
    REQUIRE(s.wait_active(0));
    CHECK(s.incoming_count() == 0);
  }
  SUBCASE("a message dribbled below the minimum data rate") {
    auto cfg = test_config();
    cfg.smtp.timeouts.data_block = 1s;
    smtp_server_options o;
    o.min_data_rate = 1000;  // octets/s after 1 s of grace; the client sends about 100/s
    test_server s(cfg, o);
    client c(s.port());
    open_transaction(c);
    const auto start = std::chrono::steady_clock::now();
    std::string got;
    for (int i = 0; i < 60 && got.empty(); ++i) {  // at most 6 s
      if (!c.send("0123456789")) break;
      got = c.reply(100ms);
    }
    if (got.empty()) got = c.reply(2s);
    CHECK(starts_with(got, "421 4.4.2 "));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took < 4s);  // each read came well within data_block: only the rate can have ended it
    REQUIRE(s.wait_active(0));
    CHECK(s.incoming_count() == 0);
  }
  SUBCASE("NOOP keep-alives do not hold a slot past the idle timeout") {
    auto cfg = test_config();
    cfg.smtp.timeouts.idle = 1s;
    test_server s(cfg);
    client c(s.port());
    REQUIRE(starts_with(c.reply(), "220 "));
    std::string got;
    for (int i = 0; i < 40; ++i) {  // at most 4 s
      got = c.command("NOOP", 1s);
      if (!starts_with(got, "250 ")) break;
      std::this_thread::sleep_for(100ms);
    }
    CHECK(starts_with(got, "421 4.4.2 "));
  }
}

TEST_CASE("SMTP smuggling over a real socket: <LF>.<LF> does not end the message") {
  const std::string smuggle =
      "Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<evil@internet.example>\r\nRCPT "
      "TO:<victim@example.lg.jp>\r\n"
      "DATA\r\nSubject: smuggled\r\n\r\nboo\r\n.\r\n";
  SUBCASE("rejected (default)") {
    test_server s(test_config());
    client c(s.port());
    open_transaction(c);
    REQUIRE(c.send(smuggle));
    CHECK(starts_with(c.reply(), "550 5.6.0"));
    // Exactly one reply: nothing after the bare LF ran as a command.
    CHECK(c.command("NOOP") == "250 2.0.0 Ok\r\n");
    CHECK(s.incoming_count() == 0);
  }
  SUBCASE("normalised: one message holding everything") {
    auto cfg = test_config();
    cfg.smtp.bare_lf = config::bare_lf_mode::normalise;
    test_server s(cfg);
    client c(s.port());
    open_transaction(c);
    REQUIRE(c.send(smuggle));
    const std::string id = queue_id_of(c.reply());
    REQUIRE(!id.empty());
    CHECK(c.command("NOOP") == "250 2.0.0 Ok\r\n");
    CHECK(s.incoming_count() == 1);
    auto m = s.spool().read(spool_state::incoming, id);
    REQUIRE(m.has_value());
    CHECK(m->envelope.recipients.size() == 1);
    CHECK(m->body.find("Subject: smuggled") != std::string::npos);
  }
}

TEST_CASE("spool failure: 451, no file, and the session goes on") {
  test_server s(test_config());
  client c(s.port());
  open_transaction(c);
  // Every file operation from now on fails: the create in tmp/ or the writes or the commit.
  s.ops().fail_at(s.ops().calls(), EIO, fault_injecting_file_ops::mode::from_then);
  REQUIRE(c.send("Subject: lost?\r\n\r\nbody\r\n.\r\n"));
  CHECK(starts_with(c.reply(), "451 4.3.0"));
  s.ops().disarm();
  CHECK(s.incoming_count() == 0);
  CHECK(starts_with(c.command("MAIL FROM:<a@internet.example>"), "250 "));
  CHECK(starts_with(c.command("RCPT TO:<x@example.lg.jp>"), "250 "));
  CHECK(starts_with(c.command("DATA"), "354 "));
  REQUIRE(c.send("Subject: retry\r\n\r\nbody\r\n.\r\n"));
  CHECK(!queue_id_of(c.reply()).empty());
  CHECK(s.incoming_count() == 1);
  CHECK(s.server().counters().messages_failed == 1);
}

TEST_CASE("a large message streams through the spool in read-buffer chunks") {
  test_server s(test_config());
  client c(s.port());
  open_transaction(c);
  std::string body = "Subject: big\r\n\r\n";
  for (int i = 0; body.size() < 1'000'000; ++i)
    body += "line " + std::to_string(i) + " of a rather large message\r\n";
  REQUIRE(c.send(body + ".\r\n"));
  const std::string id = queue_id_of(c.reply(10s));
  REQUIRE(!id.empty());
  auto m = s.spool().read(spool_state::incoming, id);
  REQUIRE(m.has_value());
  CHECK(m->body.ends_with("\r\n" + body));
}

TEST_CASE("IPv6 loopback listener") {
  auto cfg = test_config();
  cfg.smtp.listen = {"[::1]:0"};
  std::optional<test_server> s;
  try {
    s.emplace(cfg);
  } catch (const std::exception& e) {
    MESSAGE("no IPv6 loopback here: " << e.what());
    return;
  }
  client c(s->port(), "::1");
  REQUIRE(c.connected());
  CHECK(starts_with(c.reply(), "220 "));
  REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
  REQUIRE(starts_with(c.command("MAIL FROM:<a@internet.example>"), "250 "));
  REQUIRE(starts_with(c.command("RCPT TO:<x@example.lg.jp>"), "250 "));
  REQUIRE(starts_with(c.command("DATA"), "354 "));
  REQUIRE(c.send("Subject: v6\r\n\r\nbody\r\n.\r\n"));
  const std::string id = queue_id_of(c.reply());
  REQUIRE(!id.empty());
  auto m = s->spool().read(spool_state::incoming, id);
  REQUIRE(m.has_value());
  CHECK(m->envelope.client_address == "::1");
  CHECK(starts_with(m->body, "Received: from client.example ([IPv6:::1])\r\n"));
}

TEST_CASE("reload: new sessions get the new settings, running sessions keep theirs") {
  test_server s(test_config());
  client old_session(s.port());
  REQUIRE(starts_with(old_session.reply(), "220 mx.test.example "));
  auto cfg = test_config();
  cfg.smtp.hostname = "mx2.test.example";
  s.server().reload(cfg);
  auto bad = test_config();
  bad.smtp.client_networks = {"not a network"};
  CHECK_THROWS_AS(s.server().reload(bad), std::invalid_argument);  // and the good settings stay
  client new_session(s.port());
  CHECK(starts_with(new_session.reply(), "220 mx2.test.example "));
  CHECK(starts_with(old_session.command("EHLO client.example"), "250-mx.test.example\r\n"));
}

TEST_CASE("reload: a new certificate for new sessions, the TLS session that runs keeps going") {
  temp_dir dir;
  const auto first = make_self_signed(dir.path(), "first");
  const auto second = make_self_signed(dir.path(), "second");
  const auto load_cert = [](const std::string& path) {
    BIO* b = BIO_new_file(path.c_str(), "r");
    REQUIRE(b != nullptr);
    X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    REQUIRE(x != nullptr);
    return x;
  };
  const auto peer_is = [&](client& c, const std::string& path) {
    X509* expected = load_cert(path);
    X509* peer = SSL_get1_peer_certificate(c.ssl());
    const bool same = peer != nullptr && X509_cmp(peer, expected) == 0;
    X509_free(peer);
    X509_free(expected);
    return same;
  };
  const auto tls_session = [](client& c) {
    REQUIRE(starts_with(c.reply(), "220 "));
    REQUIRE(starts_with(c.command("EHLO client.example"), "250-"));
    REQUIRE(starts_with(c.command("STARTTLS"), "220 "));
    REQUIRE(c.start_tls());
  };
  auto cfg = test_config();
  cfg.tls.cert = first.cert;
  cfg.tls.key = first.key;
  test_server s(cfg);
  client before(s.port());
  tls_session(before);
  CHECK(peer_is(before, first.cert));

  cfg.tls.cert = second.cert;
  cfg.tls.key = second.key;
  s.server().reload(cfg);
  client after(s.port());
  tls_session(after);
  CHECK(peer_is(after, second.cert));
  CHECK(starts_with(before.command("EHLO client.example"), "250-"));  // not dropped by the reload
  CHECK(starts_with(after.command("EHLO client.example"), "250-"));

  auto broken = cfg;
  broken.tls.key = first.key;  // does not match the certificate: refused, the working one stays
  CHECK_THROWS_AS(s.server().reload(broken), std::runtime_error);
  client later(s.port());
  tls_session(later);
  CHECK(peer_is(later, second.cert));
}

TEST_CASE("shutdown: an idle session gets 421 at once, the DATA in flight completes and is spooled") {
  test_server s(test_config());
  client busy(s.port());
  open_transaction(busy);
  REQUIRE(busy.send("Subject: in flight\r\n\r\nfirst half, "));
  client idle(s.port());
  REQUIRE(starts_with(idle.reply(), "220 "));
  REQUIRE(starts_with(idle.command("EHLO client.example"), "250-"));

  auto done = s.start_shutdown(10s);
  CHECK(starts_with(idle.reply(), "421 4.3.2 mx.test.example "));
  CHECK(idle.wait_closed());
  CHECK(done.wait_for(200ms) == std::future_status::timeout);  // the message is still coming

  REQUIRE(busy.send("second half\r\n.\r\n"));
  const std::string id = queue_id_of(busy.reply());
  REQUIRE(!id.empty());
  CHECK(starts_with(busy.reply(), "421 4.3.2 "));
  CHECK(busy.wait_closed());
  REQUIRE(done.wait_for(5s) == std::future_status::ready);
  s.finish_after_shutdown();
  auto m = s.spool().read(spool_state::incoming, id);
  REQUIRE(m.has_value());
  CHECK(m->body.ends_with("\r\nSubject: in flight\r\n\r\nfirst half, second half\r\n"));
  CHECK(s.server().counters().sessions_active == 0);
  client late(s.port());
  CHECK_FALSE(late.connected());  // the listener is closed
}

TEST_CASE("shutdown: after the grace period a stalled message is dropped unacknowledged") {
  test_server s(test_config());
  client busy(s.port());
  open_transaction(busy);
  REQUIRE(busy.send("Subject: stalled\r\n\r\npartial"));
  auto done = s.start_shutdown(500ms);
  CHECK(starts_with(busy.reply(5s), "421 4.3.2 "));
  CHECK(busy.wait_closed());
  REQUIRE(done.wait_for(5s) == std::future_status::ready);
  s.finish_after_shutdown();
  CHECK(s.incoming_count() == 0);
}

TEST_CASE("accept errors (EMFILE) back off, and accepting resumes when descriptors are free again") {
  test_server s(test_config());
  // Two client sockets made before the limit drops (connect() needs no new descriptor).
  int clients[2];
  for (int& fd : clients) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
  }
  int highest = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    const int own = ::dirfd(d);
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.' && std::atoi(e->d_name) != own)
        highest = std::max(highest, std::atoi(e->d_name));
    ::closedir(d);
  }
  REQUIRE(highest > 0);
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(highest) + 1;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> fillers;  // plug the holes below the limit, so that accept() really fails
  for (int i = 0; i < 4096; ++i) {
    const int fd = ::dup(0);
    if (fd < 0) break;
    fillers.push_back(fd);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(s.port());
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  for (const int fd : clients) CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  bool failed = false;
  for (int i = 0; i < 500 && !failed; ++i) {  // at most 5 s
    failed = s.server().counters().accept_errors > 0;
    if (!failed) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  for (const int fd : fillers) ::close(fd);
  CHECK(failed);
  for (const int fd : clients) {
    pollfd p{fd, POLLIN, 0};
    CHECK(::poll(&p, 1, 5000) == 1);
    char buf[256] = {};
    CHECK(::recv(fd, buf, sizeof buf - 1, 0) > 0);
    CHECK(starts_with(buf, "220 "));
    ::close(fd);
  }
}

TEST_CASE("1000 idle sessions: RSS per session") {
  auto cfg = test_config();
  cfg.smtp.max_connections = 5000;
  cfg.smtp.max_connections_per_ip = 5000;
  test_server s(cfg);
  const auto open_idle = [&](std::vector<std::unique_ptr<client>>& out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      auto c = std::make_unique<client>(s.port());
      REQUIRE(c->connected());
      REQUIRE(starts_with(c->reply(), "220 "));
      REQUIRE(starts_with(c->command("EHLO client.example"), "250-"));
      c->release_buffer();
      out.push_back(std::move(c));
    }
  };
  {
    // Warm up allocator arenas, thread caches and the reactor's descriptor tables.
    std::vector<std::unique_ptr<client>> warm;
    open_idle(warm, 200);
  }
  REQUIRE(s.wait_active(0, 10s));
  const std::size_t before = rss_kib();
  std::vector<std::unique_ptr<client>> clients;
  clients.reserve(1000);  // the test's own memory, reserved before measuring
  const std::size_t baseline = rss_kib();
  open_idle(clients, 1000);
  REQUIRE(s.wait_active(1000, 10s));
  const std::size_t after = rss_kib();
  const double per_session = static_cast<double>(after - baseline) * 1024.0 / 1000.0;
  MESSAGE("RSS: " << before << " KiB before, " << after << " KiB with 1000 idle sessions (after EHLO): "
                  << per_session / 1024.0 << " KiB per session");
  std::printf("smtp_server: RSS growth per idle session (1000 sessions, after EHLO): %.1f KiB\n",
              per_session / 1024.0);
  // Generous: the target is 20 KiB (issue 3); this only catches a regression such as a read buffer
  // held per idle session.
  CHECK(per_session < 48.0 * 1024);
  for (auto& c : clients) (void)c->send("QUIT\r\n");
  clients.clear();
  CHECK(s.wait_active(0, 10s));
}
