// The SMTP listener: binding, accept loops, connection caps, the session registry, reload and
// shutdown; see smtp_server.hpp. Sessions are in smtp_session.cpp.
#include "server/smtp_server.hpp"

#include <errno.h>
#include <fcntl.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "server/network_acl.hpp"
#include "server/smtp_server_state.hpp"
#include "server/smtp_session.hpp"
#include "server/smtp_trace.hpp"
#include "server/tls_context.hpp"

namespace mukai::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using detail::smtp_server_state;
using detail::smtp_session;
using detail::smtp_settings;
using detail::stop_level;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Room the spool must have beyond smtp.max_message_size for the Received: header we prepend
// (HELO <= 255, hostname <= 255, one address <= a command line, a date: well under 2 KiB).
constexpr std::uint64_t trace_header_allowance = 8 * 1024;

bool is_printable_token(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

// Descriptors must not leak into the sanitizer workers we fork and exec (defence in depth: the
// worker also closes everything it does not need). Asio 1.81 creates sockets without SOCK_CLOEXEC.
void set_cloexec(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

std::shared_ptr<const smtp_settings> make_settings(const config::mukai_config& c, const spool& sp) {
  if (sp.options().max_message_size < c.smtp.max_message_size + trace_header_allowance)
    throw std::invalid_argument("smtp.max_message_size: the spool accepts at most " +
                                std::to_string(sp.options().max_message_size) +
                                " octets per message, which leaves no room for the Received header");
  const auto& t = c.smtp.timeouts;
  if (t.greeting.count() <= 0 || t.command.count() <= 0 || t.data_block.count() <= 0 || t.idle.count() <= 0)
    throw std::invalid_argument("smtp.timeouts: every timeout must be positive");
  if (c.smtp.max_connections == 0 || c.smtp.max_connections_per_ip == 0)
    throw std::invalid_argument("smtp.max_connections and smtp.max_connections_per_ip must be at least 1");

  auto s = std::make_shared<smtp_settings>();
  s->protocol = std::make_shared<const smtp_server_config>(make_smtp_server_config(c));
  if (tls_configured(c.tls)) s->tls = make_server_tls_context(c.tls);
  s->timeouts = c.smtp.timeouts;
  try {
    s->client_networks = network_acl(c.smtp.client_networks);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("smtp.client_networks: ") + e.what());
  }
  s->max_connections = c.smtp.max_connections;
  s->max_connections_per_ip = c.smtp.max_connections_per_ip;
  s->min_free_space = c.spool.min_free_space;
  return s;
}

std::unique_ptr<detail::listener> open_listener(const asio::any_io_executor& io, const tcp::endpoint& ep,
                                                const std::string& text) {
  auto l = std::make_unique<detail::listener>(asio::any_io_executor(asio::make_strand(io)));
  try {
    l->acceptor.open(ep.protocol());
    set_cloexec(l->acceptor.native_handle());
    l->acceptor.set_option(tcp::acceptor::reuse_address(true));
    // "*" binds :: and 0.0.0.0 separately; IPv4 clients then appear as IPv4, not as mapped addresses.
    if (ep.address().is_v6()) l->acceptor.set_option(asio::ip::v6_only(true));
    l->acceptor.bind(ep);
    l->acceptor.listen(asio::socket_base::max_listen_connections);
    l->endpoint = l->acceptor.local_endpoint();
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("smtp.listen \"" + text + "\" (" + ep.address().to_string() + " port " +
                             std::to_string(ep.port()) + "): " + e.code().message());
  }
  return l;
}

// Writes a one-line refusal without blocking (it fits an empty socket buffer; if not, the client
// just sees the connection close) and closes: a refused connection costs no session or coroutine.
void refuse(tcp::socket& socket, const std::string& reply) noexcept {
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(reply), ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void admit(const std::shared_ptr<smtp_server_state>& st, tcp::socket socket) {
  boost::system::error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return;  // the client is already gone
  set_cloexec(socket.native_handle());
  const asio::ip::address client = unmap_address(remote.address());
  const detail::client_key key = detail::client_key_of(client);

  std::shared_ptr<const smtp_settings> settings;
  std::string_view refusal;
  {
    const std::lock_guard lock(st->mutex);
    settings = st->settings;
    if (!st->accepting) {
      refusal = "421 4.3.2 ";
    } else if (st->active >= settings->max_connections) {
      refusal = "421 4.7.0 ";
    } else {
      std::size_t& n = st->per_client[key];
      if (n >= settings->max_connections_per_ip) {
        refusal = "421 4.7.0 ";
      } else {
        ++n;
        ++st->active;
      }
    }
  }
  const std::string& host = settings->protocol->hostname;
  if (!refusal.empty()) {
    st->counters.sessions_refused.fetch_add(1, std::memory_order_relaxed);
    const bool stopping = refusal.starts_with("421 4.3.2");
    st->log(smtp_log_level::debug,
            "refused " + address_literal(client) + (stopping ? ": shutting down" : ": too many connections"));
    refuse(socket, std::string(refusal) + host +
                       (stopping ? " Service shutting down, closing transmission channel\r\n"
                                 : " Error: too many connections, try again later\r\n"));
    return;
  }
  smtp_server_state::slot slot(st, key);  // owns the reservation from here on, whatever happens
  const bool allowed = settings->client_networks.allows(client);
  st->counters.sessions_accepted.fetch_add(1, std::memory_order_relaxed);
  if (!allowed) {
    st->counters.clients_denied.fetch_add(1, std::memory_order_relaxed);
    st->log(smtp_log_level::info, "client " + address_literal(client) + " is not in client_networks");
  }
  auto session = std::make_shared<smtp_session>(std::move(slot), std::move(settings), std::move(socket),
                                                client, allowed);
  st->register_session(session.get());
  const auto executor = session->executor();
  asio::co_spawn(executor, detail::run_session(std::move(session)),
                 [st, name = address_literal(client)](std::exception_ptr e) {
                   if (!e) return;
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& x) {
                     st->log(smtp_log_level::error, "session " + name + " failed: " + x.what());
                   } catch (...) {
                     st->log(smtp_log_level::error, "session " + name + " failed");
                   }
                 });
}

// Errors that concern the one connection being accepted, not the listener: retry at once. accept(2)
// on Linux passes pending network errors of the new connection through (see its man page), and
// a client may be gone before we accept it.
bool is_client_side_accept_error(const boost::system::error_code& ec) noexcept {
  if (ec.category() != asio::error::get_system_category()) return false;
  switch (ec.value()) {
    case ECONNABORTED:
    case ECONNRESET:
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINTR:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETDOWN:
    case ENETUNREACH:
    case ETIMEDOUT:
    case EPERM:  // a firewall rule refused this connection
      return true;
    default:
      return false;
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<smtp_server_state> st, detail::listener* l) {
  using namespace std::chrono_literals;
  std::chrono::milliseconds backoff{0};
  for (;;) {
    auto [ec, socket] =
        co_await l->acceptor.async_accept(asio::any_io_executor(asio::make_strand(st->io)), use_tuple);
    if (!l->acceptor.is_open() || ec == asio::error::operation_aborted) co_return;  // stop_accepting()
    if (ec) {
      st->counters.accept_errors.fetch_add(1, std::memory_order_relaxed);
      if (is_client_side_accept_error(ec)) continue;
      // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once would spin; the condition usually clears
      // when sessions end.
      backoff = backoff.count() == 0 ? 50ms : std::min(backoff * 2, st->options.accept_backoff_max);
      st->log(smtp_log_level::warning,
              "accept failed: " + ec.message() + "; retrying in " + std::to_string(backoff.count()) + " ms");
      asio::steady_timer pause(co_await asio::this_coro::executor, backoff);
      co_await pause.async_wait(use_tuple);
      continue;
    }
    backoff = 0ms;
    try {
      admit(st, std::move(socket));
    } catch (const std::exception& e) {
      st->log(smtp_log_level::error, std::string("cannot start a session: ") + e.what());
    }
  }
}

void stop_listeners(const std::shared_ptr<smtp_server_state>& st) {
  {
    const std::lock_guard lock(st->mutex);
    if (!st->accepting) return;
    st->accepting = false;
  }
  for (auto& l : st->listeners) {
    detail::listener* raw = l.get();
    asio::post(raw->acceptor.get_executor(), [st, raw] {
      boost::system::error_code ignored;
      raw->acceptor.close(ignored);
    });
  }
}

void broadcast_stop(const std::shared_ptr<smtp_server_state>& st, stop_level level) {
  std::vector<std::shared_ptr<smtp_session>> sessions;
  {
    const std::lock_guard lock(st->mutex);
    sessions.reserve(st->sessions.size());
    // A session whose destructor is already running has no owner left: lock() fails and it is
    // skipped (its destructor is blocked on this mutex, so the object is still intact here).
    for (smtp_session* s : st->sessions)
      if (auto p = s->weak_from_this().lock()) sessions.push_back(std::move(p));
  }
  for (const auto& s : sessions) s->request_stop(level);
}

// On st->strand: returns when no session is left or at `deadline`.
asio::awaitable<void> wait_for_sessions(std::shared_ptr<smtp_server_state> st,
                                        std::chrono::steady_clock::time_point deadline) {
  auto timer = std::make_shared<asio::steady_timer>(st->strand);
  {
    const std::lock_guard lock(st->mutex);
    st->drain_timer = timer;
  }
  for (;;) {
    {
      const std::lock_guard lock(st->mutex);
      if (st->active == 0) break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    // The last slot's release posts timer->cancel() to this strand; it cannot run between the check
    // above and this wait, so the wake-up is never lost.
    timer->expires_at(deadline);
    co_await timer->async_wait(use_tuple);
  }
  const std::lock_guard lock(st->mutex);
  st->drain_timer.reset();
}

asio::awaitable<void> drain_sessions(std::shared_ptr<smtp_server_state> st,
                                     std::chrono::steady_clock::duration grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  broadcast_stop(st, stop_level::graceful);
  co_await wait_for_sessions(st, deadline);
  std::size_t left = 0;
  {
    const std::lock_guard lock(st->mutex);
    left = st->active;
  }
  if (left == 0) co_return;
  st->log(smtp_log_level::warning,
          std::to_string(left) + " sessions still running after the grace period: closing them");
  broadcast_stop(st, stop_level::hard);
  co_await wait_for_sessions(st, std::chrono::steady_clock::time_point::max());
}

asio::awaitable<void> shutdown_server(std::shared_ptr<smtp_server_state> st,
                                      std::chrono::steady_clock::duration grace) {
  stop_listeners(st);
  co_await asio::co_spawn(st->strand, drain_sessions(st, grace), asio::use_awaitable);
  st->log(smtp_log_level::info, "SMTP listener stopped");
}

}  // namespace

std::vector<tcp::endpoint> resolve_listen_address(const asio::any_io_executor& io, const std::string& text,
                                                  std::string_view key) {
  const auto fail = [&text, key](const std::string& why) {
    return std::invalid_argument(std::string(key) + " \"" + text + "\": " + why);
  };
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 >= text.size()) throw fail("expected host:port");
  const std::string_view port_text = std::string_view(text).substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) throw fail("bad port");
  std::string host = text.substr(0, colon);
  const auto p = static_cast<unsigned short>(port);
  if (host == "*") return {tcp::endpoint(tcp::v6(), p), tcp::endpoint(tcp::v4(), p)};
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) throw fail("empty host");
  boost::system::error_code aec;
  const auto address = asio::ip::make_address(host, aec);
  if (!aec) return {tcp::endpoint(address, p)};
  tcp::resolver resolver(io);
  boost::system::error_code rec;
  const auto results = resolver.resolve(host, std::string(port_text), tcp::resolver::passive, rec);
  if (rec) throw fail("cannot resolve: " + rec.message());
  std::vector<tcp::endpoint> out;
  for (const auto& r : results)
    if (std::find(out.begin(), out.end(), r.endpoint()) == out.end()) out.push_back(r.endpoint());
  if (out.empty()) throw fail("no address");
  return out;
}


// ---------------------------------------------------------------------------------------------------
// make_smtp_server_config
// ---------------------------------------------------------------------------------------------------
smtp_server_config make_smtp_server_config(const config::mukai_config& c) {
  smtp_server_config p;
  if (c.smtp.hostname.empty() || c.smtp.hostname.size() > 255 || !is_printable_token(c.smtp.hostname))
    throw std::invalid_argument("smtp.hostname: \"" + c.smtp.hostname +
                                "\" must be one printable ASCII word of at most 255 characters");
  p.hostname = c.smtp.hostname;
  p.tls_available = tls_configured(c.tls);
  p.tls_required = c.smtp.require_tls;
  if (p.tls_required && !p.tls_available)
    throw std::invalid_argument("smtp.require_tls: set tls.cert and tls.key, or no client could send mail");
  p.relay_domains = c.smtp.relay_domains;
  // Only the embedded first-run default (listening on and accepting loopback only) relays to any
  // domain when none is listed; a configuration file with an empty list relays nothing.
  if (p.relay_domains.empty() && c.source == config::embedded_default().source) p.relay_domains = {"*"};
  p.limits.max_message_size = c.smtp.max_message_size;
  p.limits.max_recipients = c.smtp.max_recipients;
  p.limits.max_errors = c.smtp.max_errors;
  p.limits.max_messages = c.smtp.max_messages_per_session;
  p.limits.normalise_bare_lf = c.smtp.bare_lf == config::bare_lf_mode::normalise;
  if (p.limits.max_message_size == 0 || p.limits.max_recipients == 0 || p.limits.max_errors == 0 ||
      p.limits.max_messages == 0)
    throw std::invalid_argument("smtp: message size, recipient, error and message limits must be at least 1");
  return p;
}

// ---------------------------------------------------------------------------------------------------
// smtp_server_state
// ---------------------------------------------------------------------------------------------------
namespace detail {

client_key client_key_of(const asio::ip::address& a) noexcept {
  client_key key = to_v6_bytes(a);
  const asio::ip::address plain = unmap_address(a);
  if (plain.is_v6()) std::fill(key.begin() + 8, key.end(), static_cast<unsigned char>(0));  // per /64
  return key;
}

smtp_server_state::smtp_server_state(asio::any_io_executor io_executor,
                                     asio::any_io_executor blocking_executor, mukai::server::spool& spool_ref,
                                     smtp_server_options opts, std::shared_ptr<const smtp_settings> initial)
    : io(std::move(io_executor)),
      blocking(std::move(blocking_executor)),
      strand(asio::make_strand(io)),
      spool(spool_ref),
      options(std::move(opts)),
      settings(std::move(initial)) {}

smtp_server_state::slot::~slot() {
  if (!state_) return;
  std::shared_ptr<asio::steady_timer> wake;
  {
    const std::lock_guard lock(state_->mutex);
    --state_->active;
    if (const auto it = state_->per_client.find(key_); it != state_->per_client.end() && --it->second == 0)
      state_->per_client.erase(it);
    if (state_->active == 0) wake = state_->drain_timer.lock();
  }
  if (wake) asio::post(wake->get_executor(), [wake] { wake->cancel(); });
}

std::shared_ptr<const smtp_settings> smtp_server_state::current_settings() const {
  const std::lock_guard lock(mutex);
  return settings;
}

void smtp_server_state::log(smtp_log_level level, const log_event& event) const noexcept {
  try {
    if (options.log_event)
      options.log_event(level, event);
    else if (options.log)
      options.log(level, event.to_text());
  } catch (...) {
    // A failing log sink must not take a session down.
  }
}

void smtp_server_state::log(smtp_log_level level, std::string_view message) const noexcept {
  if (!options.log) return;
  try {
    options.log(level, message);
  } catch (...) {
    // A failing log sink must not take a session down.
  }
}

bool smtp_server_state::storage_low(std::uint64_t min_free_space) noexcept {
  const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  const std::int64_t interval =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(options.storage_check_interval).count();
  std::int64_t last = storage_checked_at.load(std::memory_order_relaxed);
  // One statvfs per interval for the whole server; whoever wins the exchange does it.
  if ((last == 0 || now - last >= interval) &&
      storage_checked_at.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    bool low = true;  // fail closed: a spool we cannot stat is not one to accept mail into
    try {
      low = spool.storage_low(min_free_space);
    } catch (...) {
    }
    storage_was_low.store(low, std::memory_order_relaxed);
    return low;
  }
  return storage_was_low.load(std::memory_order_relaxed);
}

void smtp_server_state::count_reply(std::string_view reply) noexcept {
  if (reply.empty()) return;
  switch (reply.front()) {
    case '2':
      counters.replies_2xx.fetch_add(1, std::memory_order_relaxed);
      break;
    case '3':
      counters.replies_3xx.fetch_add(1, std::memory_order_relaxed);
      break;
    case '4':
      counters.replies_4xx.fetch_add(1, std::memory_order_relaxed);
      break;
    case '5':
      counters.replies_5xx.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      break;
  }
}

void smtp_server_state::register_session(smtp_session* s) {
  const std::lock_guard lock(mutex);
  sessions.insert(s);
}

void smtp_server_state::unregister_session(smtp_session* s) noexcept {
  const std::lock_guard lock(mutex);
  sessions.erase(s);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------
// smtp_server
// ---------------------------------------------------------------------------------------------------
smtp_server::smtp_server(asio::any_io_executor io, asio::any_io_executor blocking, spool& spool,
                         const config::mukai_config& config, smtp_server_options options) {
  if (options.read_buffer_size < 1024)
    throw std::invalid_argument("smtp_server_options.read_buffer_size < 1024");
  auto settings = make_settings(config, spool);
  state_ = std::make_shared<smtp_server_state>(io, std::move(blocking), spool, std::move(options),
                                               std::move(settings));
  for (const auto& text : config.smtp.listen)
    for (const auto& ep : resolve_listen_address(io, text))
      state_->listeners.push_back(open_listener(io, ep, text));
  if (state_->listeners.empty()) throw std::invalid_argument("smtp.listen: no address to listen on");
  state_->listen_config = config.smtp.listen;
}

smtp_server::~smtp_server() { stop_listeners(state_); }

void smtp_server::start() {
  if (state_->started) return;
  state_->started = true;
  for (const auto& l : state_->listeners) {
    state_->log(smtp_log_level::info, "listening on " + l->endpoint.address().to_string() + " port " +
                                          std::to_string(l->endpoint.port()));
    asio::co_spawn(l->acceptor.get_executor(), accept_loop(state_, l.get()),
                   [st = state_](std::exception_ptr e) {
                     if (!e) return;
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& x) {
                       st->log(smtp_log_level::error, std::string("accept loop failed: ") + x.what());
                     } catch (...) {
                       st->log(smtp_log_level::error, "accept loop failed");
                     }
                   });
  }
}

std::vector<tcp::endpoint> smtp_server::local_endpoints() const {
  std::vector<tcp::endpoint> out;
  out.reserve(state_->listeners.size());
  for (const auto& l : state_->listeners) out.push_back(l->endpoint);
  return out;
}

void smtp_server::reload(const config::mukai_config& config) {
  auto settings = make_settings(config, state_->spool);
  {
    const std::lock_guard lock(state_->mutex);
    state_->settings = std::move(settings);
  }
  state_->log(smtp_log_level::info, "SMTP settings reloaded (new sessions use them)");
  if (config.smtp.listen != state_->listen_config)
    state_->log(smtp_log_level::warning, "smtp.listen changed: the listen addresses change only on restart");
}

void smtp_server::stop_accepting() { stop_listeners(state_); }

asio::awaitable<void> smtp_server::shutdown(std::chrono::steady_clock::duration grace) {
  return shutdown_server(state_, grace);
}

smtp_server_counters smtp_server::counters() const {
  const auto& c = state_->counters;
  smtp_server_counters out;
  {
    const std::lock_guard lock(state_->mutex);
    out.sessions_active = state_->active;
  }
  const auto get = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  out.sessions_accepted = get(c.sessions_accepted);
  out.sessions_refused = get(c.sessions_refused);
  out.clients_denied = get(c.clients_denied);
  out.tls_sessions = get(c.tls_sessions);
  out.tls_failures = get(c.tls_failures);
  out.timeouts = get(c.timeouts);
  out.accept_errors = get(c.accept_errors);
  out.messages_spooled = get(c.messages_spooled);
  out.messages_failed = get(c.messages_failed);
  out.replies_2xx = get(c.replies_2xx);
  out.replies_3xx = get(c.replies_3xx);
  out.replies_4xx = get(c.replies_4xx);
  out.replies_5xx = get(c.replies_5xx);
  return out;
}

}  // namespace mukai::server
