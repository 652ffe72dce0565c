// The relay: `mukai serve` as one object. It wires the pieces of server/ into the path every message
// takes (ARCHITECTURE.md "One message, end to end"):
//
//   smtp_server --commit--> incoming/ID --claim--> active/ID --sanitizer worker--> quarantine
//        (250 after fsync)                                  \--sanitized copy, in memory--+
//   (sanitized copy) --deliver--> next hop: delivered -> finish (active/ID removed) |
//        4xx -> written to deferred/ID (back-off) | 5xx or expiry -> DSN spooled as a new message
//
// active/ID, the raw copy made durable at the 250, stays until the message is finished: so the
// sanitized copy needs no fsync of its own, and its first delivery attempt runs from memory (up to
// 64 MiB of copies; beyond that they are written to outbound/ unsynced). A crash loses nothing:
// recovery sanitizes active/ID again. One data fsync per message, as a plain MTA.
//
// Stages and their threads:
//  - I/O: an io_context run by `io_threads` threads: SMTP sessions, and one coroutine per delivery
//    attempt (each on its own strand, at most [delivery] concurrency at once).
//  - Blocking: an asio::thread_pool for every spool and quarantine call made on behalf of the I/O
//    stage (fsync never runs on an I/O thread).
//  - Sanitizing: 4 x [worker] count threads sharing the sanitizer_pool's [worker] count sandboxed
//    `mukai worker` processes (the spool I/O of some overlaps the worker time of others). The relay
//    process itself never parses MIME.
//  - Scheduler: one thread that wakes every scan_interval: moves the deferred messages whose time
//    has come back to outbound/ (from an in-memory schedule), re-runs steps that failed on a local
//    error (disk full, quarantine unwritable) after retry_interval, and at start, on flush() and
//    every rescan_interval scans the directories as the truth: incoming/ and outbound/ for
//    messages the in-memory queues do not know, deferred/ (every delivery state read) to rebuild
//    the schedule, so messages deferred before a restart are retried on time.
//
// Never losing a message: every stage reads its input from the spool and removes it only after its
// output is durable or re-creatable from a durable copy (spool.hpp's transitions). start() first runs spool::recover(), so whatever a
// crash interrupted resumes: incoming/ and active/ are sanitized (again), outbound/ is delivered,
// deferred/ waits for its time. A local error never drops a message: it stays where it is and is
// retried. Delivery is at-least-once; the duplicate window is the moment between the next hop's
// reply and the fsync of delivery/ID.
//
// Fail closed: a message is delivered only as the sanitizer's output (sanitized text, or the hold
// notice of a held message whose original is in the quarantine). If the quarantine cannot be
// written, the message is not delivered (it waits in active/ and is retried).
//
// DSNs: addressed to the Internet-side sender, so they go to [delivery] bounce_next_hop (the
// Internet-side MTA) when set, else to next_hop. A DSN is never sent for a message with the null
// sender (dsn.hpp), so DSNs cannot loop.
//
// Threading: public members may be called from any thread, but start(), shutdown() and the
// destructor from one controlling thread (main's signal loop).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "server/logger.hpp"
#include "server/sanitizer_worker.hpp"
#include "server/smtp_client.hpp"
#include "server/smtp_server.hpp"
#include "server/spool.hpp"

namespace mukai::server {

class audit_log;
class quarantine_service;

// The spool limits for a configuration (the relay's, and the quarantine tools' for a release).
[[nodiscard]] spool_options spool_options_for(const config::mukai_config& c);

struct relay_options {
  std::filesystem::path config_file;    // handed to the workers as --config; "" = embedded default
  std::filesystem::path worker_binary;  // the mukai executable (current_executable())
  std::size_t io_threads = 0;           // 0: one per core
  std::size_t blocking_threads = 8;     // concurrent spool commits share directory fsyncs
  std::chrono::milliseconds scan_interval{1000};
  std::chrono::milliseconds retry_interval{30'000};   // after a local error
  std::chrono::milliseconds rescan_interval{60'000};  // full directory scan (safety net)
  std::chrono::milliseconds purge_interval{3'600'000};  // quarantine retention purge (also at start)
  // Tests: shorter client timeouts than Postfix's defaults (nullopt: from the configuration).
  std::optional<smtp_client_options> client_options;
  // Called once the listeners are bound and before the spool, the quarantine or a worker is
  // touched: `mukai serve` drops root privileges here (privileges.hpp). May throw (start-up fails).
  std::function<void()> after_bind;
};

struct relay_counters {
  smtp_server_counters smtp;
  worker_pool_stats workers;
  std::uint64_t clean = 0, sanitized = 0, held = 0;  // sanitizer verdicts
  std::uint64_t sanitize_retries = 0;                // local errors before a message reached outbound/
  std::uint64_t delivery_attempts = 0;
  std::uint64_t recipients_delivered = 0, recipients_deferred = 0, recipients_failed = 0;
  std::uint64_t messages_finished = 0;  // left the spool: every recipient delivered or failed
  std::uint64_t dsns_queued = 0;
  std::uint64_t corrupt = 0;  // spool files moved to corrupt/ (at recovery or later)
};

class relay {
 public:
  // Start-up: parses the next hops, binds the listeners, calls options.after_bind, lays out and
  // recovers the spool, purges the quarantine's staging area, builds the worker pool. Throws
  // (std::runtime_error, std::system_error, std::invalid_argument) with a message for the
  // administrator on any problem. `log` must outlive the relay. Accepts nothing until start().
  relay(const config::mukai_config& config, relay_options options, logger& log);
  ~relay();  // shuts down (without grace) if still running
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  // Starts the threads, queues what recovery found, opens the listeners. Once.
  void start();
  [[nodiscard]] std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;

  // SIGHUP: a new configuration for new SMTP sessions (TLS certificates included), delivery (next
  // hops, retry policy, CA file) and the sanitizer (workers are replaced as they finish their
  // message). Listen addresses, spool and quarantine directories, the quarantine tools' settings
  // (retention, policy.release_forbidden), thread counts and log settings need a restart (a warning says so when they differ). Throws and keeps the old configuration
  // if the new one cannot be applied.
  void reload(const config::mukai_config& config);

  // SIGTERM: stops accepting, lets SMTP sessions finish (up to `grace`, see smtp_server::shutdown),
  // finishes the messages being sanitized, waits up to `grace` for delivery attempts in flight
  // (one still running then is abandoned: its recipients stay pending and are sent again after a
  // restart), then stops every thread. Everything not finished stays in the spool. Once.
  void shutdown(std::chrono::steady_clock::duration grace);

  // Retries every deferred message now (like `postqueue -f`).
  void flush();

  [[nodiscard]] relay_counters counters() const;

  // The operators' tools over this relay's quarantine (index <quarantine.dir>/index.sqlite, audit
  // log <quarantine.dir>/audit.log); a release is delivered at once. Valid from construction until
  // the relay is destroyed; its calls block (run them off the I/O threads).
  [[nodiscard]] quarantine_service& quarantine();
  // The audit log behind quarantine() (<quarantine.dir>/audit.log), for the web console's logins.
  [[nodiscard]] audit_log& audit();
  // The Prometheus text for /metrics (relay_metrics.hpp). Cheap: atomics and the queue sizes.
  [[nodiscard]] std::string metrics_text() const;
  // For /readyz: ready (true) or not, with the reason (readiness.hpp has the rule). Never blocks:
  // a stale next-hop outcome starts a background probe and is answered from meanwhile.
  [[nodiscard]] std::pair<bool, std::string> readiness();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mukai::server
