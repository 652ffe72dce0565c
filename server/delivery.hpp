// Delivery of one sanitized message to the configured next hops, and the retry policy.
//
// deliver(): tries the hops in configuration order with the recipients still pending. It moves on to
// the next hop only when the current one made no progress at all (connection failure, a session
// that ended early, or a temporary failure for every recipient): then the same recipients are tried
// there. As soon as one hop gives any recipient a final answer (delivered or refused), the others
// keep that hop's result (a 4xx there stays a 4xx, retried later): trying a backup relay for a
// recipient the primary deferred for its own reasons would only queue it twice.
// A maildir hop delivers the message once for all recipients (its write runs on the blocking
// executor: fsync never runs on the I/O thread).
//
// The retry policy is pure arithmetic over the saved delivery state (unit-tested without a clock):
// after the n-th attempt that left recipients pending, the next one is min_backoff * 2^(n-1) later,
// at most max_backoff (Postfix's defaults: 300 s, 4000 s), but never later than the moment the
// message reaches max_queue_lifetime (5 days): one last attempt is made then, and recipients still
// pending after an attempt at or past that moment expire (DSN with Action: failed).
//
// Threading: run deliver() on a strand (see smtp_client.hpp). record_attempt and the policy
// functions are pure.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include "config/config.hpp"
#include "server/dsn.hpp"
#include "server/durable_fs.hpp"
#include "server/next_hop.hpp"
#include "server/smtp_client.hpp"
#include "server/spool.hpp"

namespace mukai::server {

struct delivery_services {
  const smtp_client& smtp;
  file_ops& files;                                 // maildir writes go through it (fault injection)
  boost::asio::any_io_executor blocking_executor;  // a thread pool for the maildir writes
};

// One hop tried, for the log line of the attempt.
struct hop_report {
  std::string hop;        // to_string(next_hop)
  std::error_code error;  // session-level failure there, if any
  std::string error_text;
  bool tls = false;
  std::string tls_details;
  std::size_t delivered = 0, temporary = 0, permanent = 0;
};

struct delivery_outcome {
  std::vector<recipient_result> recipients;  // one per requested recipient, in request order
  std::vector<hop_report> hops;              // in the order tried
};

// The recipients of `state` still pending (indices into the envelope's recipients).
[[nodiscard]] std::vector<std::size_t> pending_recipients(const delivery_state& state);

// One delivery attempt across `hops` for `recipients` (pending_recipients). Never throws for delivery
// failures (they are in the outcome); throws if the calling coroutine is cancelled, and bad_alloc.
// `message`, `hops`, `recipients` and `services` must outlive the returned awaitable.
[[nodiscard]] boost::asio::awaitable<delivery_outcome> deliver(const spooled_message& message,
                                                               const std::vector<next_hop>& hops,
                                                               const std::vector<std::size_t>& recipients,
                                                               const delivery_services& services);

// ---- retry policy -------------------------------------------------------------------------------

struct retry_policy {
  std::chrono::seconds min_backoff{300};
  std::chrono::seconds max_backoff{4000};
  std::chrono::seconds max_queue_lifetime{5 * 24 * 3600};
  [[nodiscard]] static retry_policy from_config(const config::delivery_config& c);
};

// Wait after the n-th failed attempt (n >= 1; 0 is treated as 1): min_backoff * 2^(n-1), capped at
// max_backoff, never below min_backoff (also when max_backoff < min_backoff).
[[nodiscard]] std::chrono::seconds backoff_delay(std::uint32_t failed_attempts,
                                                 const retry_policy& p) noexcept;

// When a message received at `received` expires.
[[nodiscard]] std::chrono::system_clock::time_point expiry_time(
    std::chrono::system_clock::time_point received, const retry_policy& p) noexcept;
[[nodiscard]] bool is_expired(std::chrono::system_clock::time_point received,
                              std::chrono::system_clock::time_point now, const retry_policy& p) noexcept;

// now + backoff_delay(failed_attempts), but not after expiry_time(received) (nor before now).
[[nodiscard]] std::chrono::system_clock::time_point next_attempt_time(
    std::chrono::system_clock::time_point received, std::uint32_t failed_attempts,
    std::chrono::system_clock::time_point now, const retry_policy& p) noexcept;

struct attempt_summary {
  bool finished = false;  // no recipient pending: spool the DSN (if any), then spool::finish
  std::chrono::system_clock::time_point next_attempt{};  // when !finished: spool::defer(id, this)
  std::vector<failed_recipient> newly_failed;            // for build_dsn (refused now, or expired)
  std::size_t delivered = 0, failed = 0;  // changed by this attempt (expired ones count as failed)
  std::size_t deferred = 0;               // recipients still pending afterwards
};

// Folds an attempt's outcome into `state` (then save it with spool::save_delivery_state BEFORE acting
// on the summary: a recipient recorded delivered is never sent again). Only pending recipients
// change; replies are kept (up to 512 bytes) for the DSN and the logs.
[[nodiscard]] attempt_summary record_attempt(delivery_state& state, const spool_envelope& envelope,
                                             const delivery_outcome& outcome,
                                             std::chrono::system_clock::time_point now,
                                             const retry_policy& policy);

// "dns" name for Remote-MTA from a recipient_result::remote ("mx.example[192.0.2.1]:25" -> "mx.example",
// "[::1]:2526" -> "[::1]", "127.0.0.1:2526" -> "127.0.0.1").
[[nodiscard]] std::string remote_mta_name(std::string_view remote);

}  // namespace mukai::server
