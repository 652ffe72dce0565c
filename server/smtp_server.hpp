// The SMTP listener: accepts connections on every [smtp] listen address and runs one session
// coroutine per connection, driving the sans-I/O protocol object (smtp_protocol.hpp) and streaming
// each message into the spool (ARCHITECTURE.md "One message, end to end", steps 1-3).
//
// Invariants:
//  - "250 ... queued as ID" is sent only after spool_writer::commit() returned success (the protocol
//    object enforces it; the session only calls message_committed() after commit). The commit, and
//    every other spool call (create, write, unlink), runs on the blocking executor, never on an I/O
//    thread: one fsync must not stall thousands of sessions.
//  - Bounded memory per session: a 512-byte inline read buffer while idle, one read buffer of
//    options.read_buffer_size while a burst or a message is being read, at most about two read
//    buffers of message data staged for the spool, and the replies of one receive() batch. Nothing is
//    read while the spool works (backpressure: the kernel's socket buffer fills, then TCP's window).
//  - Caps: max_connections sessions in all, max_connections_per_ip per client; a connection over a cap
//    gets "421 4.7.0" written without blocking and is closed, costing no session. IPv6 clients are
//    counted per /64 (one host or site typically owns a whole /64, so counting /128s would not limit
//    anyone); IPv4 per address.
//  - STARTTLS: everything the client pipelined after the STARTTLS line is discarded before the
//    handshake (RFC 3207 section 4, the CVE-2011-0411 class); the session then continues in the same
//    templated loop on the TLS stream, with the protocol reset to the greeted state.
//  - Every wait has a deadline ([smtp] timeouts, see smtp_server_options for their exact meaning):
//    reads, writes (a client that stops reading our replies) and the TLS handshake. No detached
//    coroutine: accept loops and sessions are co_spawned with a handler that logs an escaping
//    exception, and every session is in a registry so that shutdown() can stop and wait for all.
//  - Reload (SIGHUP) swaps the settings (protocol config, TLS context, client networks, caps,
//    timeouts) for NEW sessions; running sessions keep the snapshot they started with. The listen
//    addresses are fixed at construction (changing them needs a restart).
//
// Threading: each session and each listener runs on its own strand of the I/O executor, so the I/O
// executor may be an io_context run by several threads (one per core). Public members are safe to
// call from any thread. on_message_spooled and log are called from I/O threads (sessions' strands),
// possibly concurrently: they must be thread-safe and must not block.
//
// Lifetime: the spool and the blocking executor's pool must outlive the server and every session;
// run shutdown() to completion before destroying them. A session keeps the server's shared state
// alive, so destroying the smtp_server object while sessions run is safe (it stops accepting).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "server/log_event.hpp"
#include "server/smtp_protocol.hpp"
#include "server/spool.hpp"

namespace mukai::server {

enum class smtp_log_level : std::uint8_t { debug, info, warning, error };

// Monotonic counters (except sessions_active, a gauge) for logs and metrics.
struct smtp_server_counters {
  std::uint64_t sessions_active = 0;    // sessions running now
  std::uint64_t sessions_accepted = 0;  // connections that got a session (including refused clients)
  std::uint64_t sessions_refused = 0;   // turned away at accept: over a connection cap or shutting down
  std::uint64_t clients_denied = 0;     // sessions of clients outside client_networks (greeted 554)
  std::uint64_t tls_sessions = 0;       // successful STARTTLS handshakes
  std::uint64_t tls_failures = 0;       // failed or timed-out handshakes
  std::uint64_t timeouts = 0;           // sessions ended by a read, write or handshake deadline
  std::uint64_t accept_errors = 0;
  std::uint64_t messages_spooled = 0;  // commits that succeeded (each answered 250, if still connected)
  std::uint64_t messages_failed = 0;   // messages answered 451/554 because the spool failed
  std::uint64_t replies_2xx = 0, replies_3xx = 0, replies_4xx = 0, replies_5xx = 0;  // session replies
};

struct smtp_server_options {
  // The read buffer of a session while it receives a burst or a message; the only input bound
  // besides the protocol object's own. Also the amount of message data staged before it is handed
  // to the spool (one blocking-executor hop per read buffer of data).
  std::size_t read_buffer_size = 64 * 1024;
  // Minimum average data rate in octets/s while DATA or a BDAT chunk is read, after a grace of
  // timeouts.data_block: the time a client may spend sending a message is data_block + size/rate
  // (time waiting for our own spool is not counted). 0 = off. Postfix's smtpd_min_data_rate is 500.
  std::uint64_t min_data_rate = 500;
  // The STARTTLS handshake must complete within this.
  std::chrono::milliseconds tls_handshake_timeout{std::chrono::seconds(60)};
  // After shutdown()'s grace period: the final 421 (or a pending 250) gets this long to be written.
  std::chrono::milliseconds stop_flush_timeout{std::chrono::seconds(2)};
  // The free-space floor (spool::storage_low) is checked at most this often, server-wide.
  std::chrono::milliseconds storage_check_interval{std::chrono::seconds(1)};
  // Accept errors such as EMFILE back off from 50 ms, doubling up to this.
  std::chrono::milliseconds accept_backoff_max{std::chrono::seconds(1)};
  // Called after each successful commit with the new queue ID (incoming/ID exists durably): the
  // scheduler's wake-up. Called on the session's strand, before the 250 is written.
  std::function<void(std::string queue_id)> on_message_spooled;
  // Diagnostics. Lines about a message carry its queue ID.
  std::function<void(smtp_log_level, std::string_view)> log;
  // Structured events: "received" (info) per message spooled, "connect"/"disconnect" (debug) per
  // session. Empty: they go to `log` as text.
  std::function<void(smtp_log_level, const log_event&)> log_event;
};

// How the [smtp] timeouts apply (all required > 0):
//   greeting    from the connection to the first complete command line;
//   command     each wait for command input, and each write of replies;
//   data_block  each wait for DATA/BDAT octets (with min_data_rate over the whole message);
//   idle        total time spent waiting for commands without completing a message (counted from
//               the connection, the TLS handshake or the last message): a client that keeps a
//               connection slot with NOOP/RSET but sends no mail is closed.
// On expiry the protocol object answers 421 4.4.2 and the session closes.

// The protocol object's settings for [smtp]/[tls]. An empty relay_domains list means "any domain"
// only for the embedded first-run default (which is bound to loopback); for a configuration file it
// means nothing is relayed (fail closed: validate_for_serve reports it). Throws std::invalid_argument
// for a hostname that cannot be used in replies (not one printable token of at most 255 octets) or
// require_tls without a certificate.
[[nodiscard]] smtp_server_config make_smtp_server_config(const config::mukai_config& config);

namespace detail {
struct smtp_server_state;
}

// "127.0.0.1:25", "[::1]:25", "*:25" (every IPv4 and IPv6 address), "host.example:25" (resolved
// now). Throws std::invalid_argument naming `key` (the configuration key) and the text.
[[nodiscard]] std::vector<boost::asio::ip::tcp::endpoint> resolve_listen_address(
    const boost::asio::any_io_executor& io, const std::string& text, std::string_view key = "smtp.listen");

class smtp_server {
 public:
  // Resolves and binds every [smtp] listen address (port 0 picks a free port: local_endpoints()),
  // loads the TLS context and parses client_networks. Throws (std::system_error, std::runtime_error,
  // std::invalid_argument) on any problem: this is start-up. Accepts nothing until start().
  // `io`: sessions and listeners (strands are made from it); `blocking`: spool calls (a thread_pool's
  // executor; several threads let concurrent commits share directory fsyncs).
  smtp_server(boost::asio::any_io_executor io, boost::asio::any_io_executor blocking, spool& spool,
              const config::mukai_config& config, smtp_server_options options = {});
  ~smtp_server();
  smtp_server(const smtp_server&) = delete;
  smtp_server& operator=(const smtp_server&) = delete;

  // Starts the accept loops. Once.
  void start();

  // The bound addresses, in listen order.
  [[nodiscard]] std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;

  // SIGHUP: new settings and certificates for new sessions. Throws like the constructor and then
  // keeps the old settings; running sessions are never affected.
  void reload(const config::mukai_config& config);

  // Closes the listening sockets; running sessions continue.
  void stop_accepting();

  // SIGTERM: stops accepting, then asks every session to finish: a message being received is
  // completed and spooled (and answered), the next command - or an idle session right away - gets
  // "421 4.3.2" and the connection is closed. After `grace`, sessions still running get the
  // protocol's shutdown_now() (an open message is dropped unacknowledged: the client resends it) and
  // stop_flush_timeout to write their last reply. Completes when every session has ended (a commit
  // in flight is always awaited: its result decides between 250 and 451). Call once.
  [[nodiscard]] boost::asio::awaitable<void> shutdown(std::chrono::steady_clock::duration grace);

  [[nodiscard]] smtp_server_counters counters() const;

 private:
  std::shared_ptr<detail::smtp_server_state> state_;
};

}  // namespace mukai::server
