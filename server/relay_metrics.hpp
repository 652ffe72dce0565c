// The relay's metrics: what `mukai serve` counts beyond relay_counters, and the rendering of all of
// it as the Prometheus text behind /metrics (metric names and meanings are listed in
// docs/deployment.md, "Metrics").
//
// Bounded series: detected types are counted under a fixed list of the types administrators ask
// about (executables, archives, Office and PDF documents, HTML, images...) and "other"; actions
// under "quarantined" / "discarded". A message can only ever add to existing series.
//
// Threading: record_* and render are safe from any thread (atomics, see metrics.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "sanitizers/report.hpp"
#include "server/metrics.hpp"

namespace mukai::server {

struct relay_counters;

// Gauges computed at scrape time from the relay's in-memory queues.
struct relay_queue_gauges {
  std::uint64_t incoming = 0;  // received, waiting for or being sanitized
  std::uint64_t outbound = 0;  // sanitized, waiting for or being delivered
  std::uint64_t deferred = 0;  // waiting for their next attempt
  double oldest_age_seconds = 0;  // of the oldest message in any of them (0 when empty)
};

class relay_metrics {
 public:
  relay_metrics();

  void record_sanitized(const sanitize::report& rep, double seconds) noexcept;
  // One delivery attempt's settled result for a message.
  void record_delivered_message(double latency_seconds) noexcept;  // every recipient settled, some delivered
  void record_deferred_message() noexcept { deferred_.inc(); }
  void record_bounced_message() noexcept { bounced_.inc(); }

  [[nodiscard]] std::string render(const relay_counters& c, const relay_queue_gauges& g) const;

  // The fixed lists (tests).
  [[nodiscard]] static const std::vector<std::string>& known_detected_types();

 private:
  counter_family verdicts_;
  counter_family parts_removed_;
  metric_counter delivered_, deferred_, bounced_;
  metric_histogram sanitize_seconds_;
  metric_histogram latency_seconds_;
};

}  // namespace mukai::server
