// Internal to the SMTP listener (smtp_server.cpp, smtp_session.cpp): the state shared by the
// listener and its sessions - settings snapshot, connection caps, the session registry, counters and
// the cached free-space check. Not part of the public interface.
//
// Invariants: `active` and `per_client` count connection slots held by live sessions (a slot is taken
// at accept under the mutex, with the caps checked, and released by the session's destructor);
// `sessions` holds every registered session until its destructor runs, so shutdown() reaches all.
// Threading: the mutex guards settings, the registry, the slot counts, `accepting` and drain_timer;
// the counters and the free-space cache are atomics; everything else is immutable after construction.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "server/network_acl.hpp"
#include "server/smtp_protocol.hpp"
#include "server/smtp_server.hpp"
#include "server/spool.hpp"

namespace mukai::server::detail {

// What a session needs from the configuration; immutable, one snapshot per (re)load.
struct smtp_settings {
  std::shared_ptr<const smtp_server_config> protocol;
  std::shared_ptr<boost::asio::ssl::context> tls;  // null: no STARTTLS
  config::smtp_timeouts timeouts;
  network_acl client_networks;
  std::size_t max_connections = 0;
  std::size_t max_connections_per_ip = 0;
  std::uint64_t min_free_space = 0;
};

// Connection caps count IPv4 clients per address and IPv6 clients per /64.
using client_key = std::array<unsigned char, 16>;
[[nodiscard]] client_key client_key_of(const boost::asio::ip::address& a) noexcept;

class smtp_session;

struct atomic_counters {
  std::atomic<std::uint64_t> sessions_accepted{0}, sessions_refused{0}, clients_denied{0}, tls_sessions{0},
      tls_failures{0}, timeouts{0}, accept_errors{0}, messages_spooled{0}, messages_failed{0}, replies_2xx{0},
      replies_3xx{0}, replies_4xx{0}, replies_5xx{0};
};

struct listener {
  explicit listener(boost::asio::any_io_executor strand) : acceptor(std::move(strand)) {}
  boost::asio::ip::tcp::acceptor acceptor;
  boost::asio::ip::tcp::endpoint endpoint;
};

struct smtp_server_state {
  smtp_server_state(boost::asio::any_io_executor io_executor, boost::asio::any_io_executor blocking_executor,
                    mukai::server::spool& spool_ref, smtp_server_options opts,
                    std::shared_ptr<const smtp_settings> initial);

  // A connection slot held by a session; releases it (and wakes a waiting shutdown) on destruction.
  class slot {
   public:
    slot(std::shared_ptr<smtp_server_state> state, client_key key) noexcept
        : state_(std::move(state)), key_(key) {}
    slot(slot&& other) noexcept : state_(std::move(other.state_)), key_(other.key_) {}
    slot(const slot&) = delete;
    slot& operator=(const slot&) = delete;
    slot& operator=(slot&&) = delete;
    ~slot();
    [[nodiscard]] smtp_server_state& state() const noexcept { return *state_; }

   private:
    std::shared_ptr<smtp_server_state> state_;
    client_key key_;
  };

  [[nodiscard]] std::shared_ptr<const smtp_settings> current_settings() const;
  void log(smtp_log_level level, std::string_view message) const noexcept;
  void log(smtp_log_level level, const log_event& event) const noexcept;
  // spool.storage_low(min_free_space), re-checked at most every storage_check_interval.
  [[nodiscard]] bool storage_low(std::uint64_t min_free_space) noexcept;
  void count_reply(std::string_view reply) noexcept;
  void register_session(smtp_session* s);
  void unregister_session(smtp_session* s) noexcept;

  const boost::asio::any_io_executor io;
  const boost::asio::any_io_executor blocking;
  const boost::asio::any_io_executor strand;  // shutdown's waiting
  mukai::server::spool& spool;
  const smtp_server_options options;
  atomic_counters counters;

  mutable std::mutex mutex;
  std::shared_ptr<const smtp_settings> settings;         // guarded
  std::unordered_set<smtp_session*> sessions;            // guarded
  std::map<client_key, std::size_t> per_client;          // guarded
  std::size_t active = 0;                                // guarded
  bool accepting = true;                                 // guarded
  std::weak_ptr<boost::asio::steady_timer> drain_timer;  // guarded: woken when `active` drops to 0

  std::vector<std::unique_ptr<listener>> listeners;  // fixed after construction
  std::vector<std::string> listen_config;            // [smtp] listen as bound (reload only warns)
  bool started = false;

  std::atomic<std::int64_t> storage_checked_at{0};  // steady_clock ticks; 0 = never
  std::atomic<bool> storage_was_low{false};
};

}  // namespace mukai::server::detail
