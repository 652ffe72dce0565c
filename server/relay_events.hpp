// The relay's message events (log_event.hpp), built from what the relay knows at each step: pure
// functions, so relay.cpp only decides when to log and the field layout lives here (documented in
// docs/deployment.md, "Logs").
//
//  - sanitized_event: "sanitized" (verdict clean or sanitized) or "quarantined" (held: the
//    original is in the quarantine, only the notice goes on), with the envelope, Message-ID,
//    Subject, verdict, removed parts (at most 32 per line; the quarantine item has them all),
//    actions, reasons, quarantine ID and the time the worker took.
//  - attempt_events: per delivery attempt, one event per outcome present: "delivered" (accepted
//    now), "bounced" (refused or expired now, with the DSN's queue ID; level warning), "deferred"
//    (still pending, with the seconds until the next attempt). `finished`: the message left the
//    spool with this attempt.
// Every string from the message or the network goes through log_event's escaping.
//
// Threading: pure; call from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sanitizers/engine.hpp"
#include "server/delivery.hpp"
#include "server/log_event.hpp"
#include "server/logger.hpp"
#include "server/spool.hpp"

namespace mukai::server {

// name + queue ID + message_id (when known) + from, client, tls.
[[nodiscard]] log_event message_event(std::string_view name, std::string_view queue_id, std::string_view message_id,
                                      const spool_envelope& env);

[[nodiscard]] log_event sanitized_event(std::string_view queue_id, const spool_envelope& env, std::size_t size,
                                        const sanitize::result& r, std::chrono::milliseconds sanitize_time);

struct attempt_context {
  std::string_view queue_id;
  std::string_view message_id;  // "" when unknown (after a restart)
  const spool_envelope& envelope;
  const delivery_outcome& outcome;
  const delivery_state& state;  // after record_attempt
  std::chrono::system_clock::time_point now;
  bool finished = false;
  std::chrono::system_clock::time_point next_attempt{};  // when deferred
  std::string_view dsn_queue_id;                         // "" when no DSN was queued
  bool is_dsn = false;
};

[[nodiscard]] std::vector<std::pair<log_level, log_event>> attempt_events(const attempt_context& c);

}  // namespace mukai::server
