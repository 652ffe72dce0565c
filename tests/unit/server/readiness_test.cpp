// The /readyz rule: the latest next-hop outcome decides, stale outcomes ask for one probe, and the
// probe tells a greeting SMTP server from a closed port, a non-SMTP greeting and a silent peer.
#include "server/readiness.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <sys/socket.h>
#include <sys/time.h>

#include <fstream>
#include <thread>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

server::next_hop hop_at(std::uint16_t port) {
  return server::parse_next_hop("smtp://127.0.0.1:" + std::to_string(port) + "?starttls=off").value();
}

server::probe_result run_probe(asio::io_context& io, std::vector<server::next_hop> hops,
                               std::chrono::milliseconds timeout = 2000ms) {
  server::probe_result out{false, "not run"};
  asio::co_spawn(io, server::probe_next_hops(std::move(hops), timeout), [&](std::exception_ptr e, server::probe_result r) {
    if (!e) out = std::move(r);
  });
  io.run_for(10s);
  io.restart();
  return out;
}

// A listener that accepts one connection and writes `greeting` (nothing when empty).
struct one_shot_server {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  std::thread thread;
  explicit one_shot_server(std::string greeting) {
    thread = std::thread([this, greeting] {
      asio::ip::tcp::socket s(io);
      boost::system::error_code ec;
      acceptor.accept(s, ec);
      if (!greeting.empty()) asio::write(s, asio::buffer(greeting), ec);
      // Until the probe hangs up (after QUIT, or at its deadline when we stay silent); at most 5 s.
      const timeval limit{5, 0};
      ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
      char buf[256];
      while (!ec) s.read_some(asio::buffer(buf), ec);
    });
  }
  ~one_shot_server() { thread.join(); }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
};

}  // namespace

TEST_CASE("next_hop_health: the latest outcome decides; stale outcomes ask for one probe") {
  using clock = server::next_hop_health::clock;
  server::next_hop_health h(300s);
  const auto t0 = clock::now();
  CHECK_FALSE(h.status(t0).first);
  CHECK(h.status(t0).second == "next hop not checked yet");
  CHECK(h.claim_probe(t0));
  CHECK_FALSE(h.claim_probe(t0));  // one probe at a time
  h.record(true, "smtp://lgwan:25", t0);
  CHECK(h.status(t0 + 10s).first);
  CHECK(h.status(t0 + 10s).second == "next hop reachable: smtp://lgwan:25 (10s ago)");
  CHECK_FALSE(h.claim_probe(t0 + 299s));
  CHECK(h.claim_probe(t0 + 301s));  // stale: probe, answer from the latest outcome meanwhile
  CHECK(h.status(t0 + 301s).first);
  h.record(false, "smtp://lgwan:25: Connection refused", t0 + 302s);
  CHECK_FALSE(h.status(t0 + 302s).first);
  CHECK(h.status(t0 + 302s).second.find("unreachable: smtp://lgwan:25: Connection refused") != std::string::npos);
}

TEST_CASE("probe: 220 greeting reachable; closed port, other greeting and silence are not") {
  asio::io_context io;
  {
    one_shot_server srv("220 lgwan.example ESMTP\r\n");
    auto r = run_probe(io, {hop_at(srv.port())});
    CHECK(r.connected);
  }
  {
    auto r = run_probe(io, {hop_at(testing::free_loopback_port())});
    CHECK_FALSE(r.connected);
    CHECK(r.detail.find("refused") != std::string::npos);
  }
  {
    one_shot_server srv("554 go away\r\n");
    auto r = run_probe(io, {hop_at(srv.port())});
    CHECK_FALSE(r.connected);
    CHECK(r.detail.find("greeting \"554 go away\"") != std::string::npos);
  }
  {
    one_shot_server srv("");
    auto r = run_probe(io, {hop_at(srv.port())}, 300ms);
    CHECK_FALSE(r.connected);
    CHECK(r.detail.find("timed out") != std::string::npos);
  }
  {
    // Failover order: the first hop is down, the second answers.
    one_shot_server srv("220 backup\r\n");
    auto r = run_probe(io, {hop_at(testing::free_loopback_port()), hop_at(srv.port())});
    CHECK(r.connected);
    CHECK(r.detail.find(std::to_string(srv.port())) != std::string::npos);
  }
}

TEST_CASE("probe and spool check: maildir and spool directories must be writable") {
  testing::temp_dir tmp("mukai-ready");
  asio::io_context io;
  auto ok = run_probe(io, {server::parse_next_hop("maildir:" + (tmp.path() / "new" / "box").string()).value()});
  CHECK(ok.connected);
  { std::ofstream(tmp.path() / "a-file") << "x"; }
  auto bad = run_probe(io, {server::parse_next_hop("maildir:" + (tmp.path() / "a-file" / "box").string()).value()});
  CHECK_FALSE(bad.connected);
  CHECK_FALSE(server::check_spool_writable(tmp.path(), false).first);  // no tmp/ yet
  std::filesystem::create_directory(tmp.path() / "tmp");
  CHECK(server::check_spool_writable(tmp.path(), false).first);
  auto low = server::check_spool_writable(tmp.path(), true);
  CHECK_FALSE(low.first);
  CHECK(low.second.find("free-space floor") != std::string::npos);
}
