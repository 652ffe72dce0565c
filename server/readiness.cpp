#include "server/readiness.hpp"

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>

#include "server/io_deadline.hpp"

namespace mukai::server {

namespace asio = boost::asio;
using asio::ip::tcp;

void next_hop_health::record(bool connected, std::string detail, clock::time_point now) {
  const std::lock_guard lock(mutex_);
  last_ = now;
  last_ok_ = connected;
  detail_ = std::move(detail);
  probing_ = false;
}

std::pair<bool, std::string> next_hop_health::status(clock::time_point now) const {
  const std::lock_guard lock(mutex_);
  if (!last_) return {false, "next hop not checked yet"};
  const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - *last_).count();
  const std::string when = " (" + std::to_string(std::max<long long>(0, age)) + "s ago)";
  if (!last_ok_) return {false, "next hop unreachable: " + detail_ + when};
  return {true, "next hop reachable: " + detail_ + when};
}

bool next_hop_health::claim_probe(clock::time_point now) {
  const std::lock_guard lock(mutex_);
  if (probing_) return false;
  if (last_ && now - *last_ < stale_after_) return false;
  probing_ = true;
  return true;
}

namespace {

// Connect, read the greeting line (bounded), say QUIT. Returns "" on a 220 greeting, else why not.
asio::awaitable<std::string> probe_smtp(tcp::socket& socket, const smtp_hop& hop) {
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(hop.host, std::to_string(hop.port),
                                                        tcp::resolver::numeric_service,
                                                        asio::as_tuple(asio::use_awaitable));
  if (rec) co_return "cannot resolve " + hop.host + ": " + rec.message();
  auto [cec, ep] = co_await asio::async_connect(socket, results, asio::as_tuple(asio::use_awaitable));
  if (cec) co_return cec.message();
  asio::streambuf buf(512);  // a greeting line longer than this is not a usable server either
  auto [gec, n] = co_await asio::async_read_until(socket, buf, '\n', asio::as_tuple(asio::use_awaitable));
  if (gec) co_return "no greeting: " + gec.message();
  std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n));
  auto [wec, w] = co_await asio::async_write(socket, asio::buffer("QUIT\r\n", 6), asio::as_tuple(asio::use_awaitable));
  (void)wec;
  (void)w;
  if (line.rfind("220", 0) != 0) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    co_return "greeting \"" + line.substr(0, 100) + "\"";
  }
  co_return std::string();
}

bool maildir_writable(const std::filesystem::path& dir) {
  std::error_code ec;
  auto p = std::filesystem::absolute(dir, ec);
  if (ec) return false;
  while (!std::filesystem::exists(p, ec)) {
    if (!p.has_parent_path() || p.parent_path() == p) return false;
    p = p.parent_path();
  }
  return std::filesystem::is_directory(p, ec) && ::access(p.c_str(), W_OK | X_OK) == 0;
}

}  // namespace

asio::awaitable<probe_result> probe_next_hops(std::vector<next_hop> hops, std::chrono::milliseconds timeout) {
  probe_result out;
  auto ex = co_await asio::this_coro::executor;
  for (const auto& h : hops) {
    const std::string name = to_string(h);
    if (const auto* m = std::get_if<maildir_hop>(&h.target)) {
      if (maildir_writable(m->dir)) {
        out = {true, name};
        co_return out;
      }
      out = {false, name + ": directory not writable"};
      continue;
    }
    const auto& hop = std::get<smtp_hop>(h.target);
    tcp::socket socket(ex);
    auto r = co_await await_with_deadline(probe_smtp(socket, hop), timeout, [&socket] {
      boost::system::error_code ignored;
      socket.close(ignored);
    });
    const std::string why = r ? *r : std::string("timed out");
    if (why.empty()) {
      out = {true, name};
      co_return out;
    }
    out = {false, name + ": " + why};
  }
  co_return out;
}

std::pair<bool, std::string> check_spool_writable(const std::filesystem::path& spool_root, bool storage_low) {
  const auto tmp = spool_root / "tmp";
  if (::access(tmp.c_str(), W_OK | X_OK) != 0) return {false, "spool " + tmp.string() + " is not writable"};
  if (storage_low) return {false, "spool " + spool_root.string() + " is below its free-space floor"};
  return {true, "spool writable"};
}

}  // namespace mukai::server
