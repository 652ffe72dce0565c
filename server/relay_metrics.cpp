#include "server/relay_metrics.hpp"

#include "server/relay.hpp"

namespace mukai::server {

const std::vector<std::string>& relay_metrics::known_detected_types() {
  static const std::vector<std::string> types{
      "application/x-dosexec",
      "application/x-executable",
      "application/x-sharedlib",
      "application/x-pie-executable",
      "application/x-mach-binary",
      "application/java-archive",
      "application/javascript",
      "text/x-shellscript",
      "text/x-msdos-batch",
      "application/zip",
      "application/x-7z-compressed",
      "application/x-rar",
      "application/vnd.rar",
      "application/gzip",
      "application/x-tar",
      "application/x-iso9660-image",
      "application/vnd.ms-cab-compressed",
      "application/pdf",
      "application/msword",
      "application/vnd.ms-excel",
      "application/vnd.ms-powerpoint",
      "application/vnd.ms-office",
      "application/CDFV2",
      "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
      "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
      "application/vnd.openxmlformats-officedocument.presentationml.presentation",
      "application/rtf",
      "text/rtf",
      "text/html",
      "text/xml",
      "text/calendar",
      "text/plain",
      "image/jpeg",
      "image/png",
      "image/gif",
      "image/svg+xml",
      "image/bmp",
      "image/tiff",
      "message/rfc822",
      "application/octet-stream",
  };
  return types;
}

namespace {

// Seconds: sanitizing is milliseconds for text, seconds for large archives, capped by the worker
// timeout (60 s default). Latency spans a quick pass to days of deferral (5 days lifetime).
std::vector<double> sanitize_bounds() { return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}; }
std::vector<double> latency_bounds() {
  return {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 24 * 3600};
}

}  // namespace

relay_metrics::relay_metrics()
    : verdicts_({"verdict"}, {{"clean", "sanitized", "held"}}),
      parts_removed_({"type", "action"}, {known_detected_types(), {"quarantined", "discarded"}}),
      sanitize_seconds_(sanitize_bounds()),
      latency_seconds_(latency_bounds()) {}

void relay_metrics::record_sanitized(const sanitize::report& rep, double seconds) noexcept {
  verdicts_.inc({sanitize::to_string(rep.result)});
  for (const auto& part : rep.parts) {
    if (part.action == sanitize::part_action::quarantined || part.action == sanitize::part_action::discarded)
      parts_removed_.inc({part.detected_type, sanitize::to_string(part.action)});
  }
  sanitize_seconds_.observe(seconds);
}

void relay_metrics::record_delivered_message(double latency_seconds) noexcept {
  delivered_.inc();
  latency_seconds_.observe(latency_seconds);
}

std::string relay_metrics::render(const relay_counters& c, const relay_queue_gauges& g) const {
  prometheus_writer w;
  auto counter = [&w](const char* name, const char* help, std::uint64_t v) {
    w.family(name, help, metric_type::counter);
    w.sample(name, static_cast<double>(v));
  };
  auto gauge = [&w](const char* name, const char* help, double v) {
    w.family(name, help, metric_type::gauge);
    w.sample(name, v);
  };
  const auto& s = c.smtp;
  counter("mukai_smtp_connections_total", "SMTP connections accepted (each got a session).", s.sessions_accepted);
  counter("mukai_smtp_connections_refused_total", "SMTP connections turned away over a connection cap or at shutdown.",
          s.sessions_refused);
  counter("mukai_smtp_clients_denied_total", "SMTP sessions of clients outside smtp.client_networks (554).",
          s.clients_denied);
  gauge("mukai_smtp_sessions_active", "SMTP sessions running now.", static_cast<double>(s.sessions_active));
  counter("mukai_smtp_tls_sessions_total", "Successful STARTTLS handshakes.", s.tls_sessions);
  counter("mukai_smtp_tls_failures_total", "Failed or timed-out STARTTLS handshakes.", s.tls_failures);
  counter("mukai_smtp_timeouts_total", "SMTP sessions ended by a deadline.", s.timeouts);
  w.family("mukai_smtp_replies_total", "SMTP replies sent, by code class.", metric_type::counter);
  w.sample("mukai_smtp_replies_total", {{"class", "2xx"}}, static_cast<double>(s.replies_2xx));
  w.sample("mukai_smtp_replies_total", {{"class", "3xx"}}, static_cast<double>(s.replies_3xx));
  w.sample("mukai_smtp_replies_total", {{"class", "4xx"}}, static_cast<double>(s.replies_4xx));
  w.sample("mukai_smtp_replies_total", {{"class", "5xx"}}, static_cast<double>(s.replies_5xx));

  counter("mukai_messages_received_total", "Messages received and durably spooled (answered 250).",
          s.messages_spooled);
  counter("mukai_messages_receive_failed_total", "Messages answered 451/554 because the spool failed.",
          s.messages_failed);
  verdicts_.write(w, "mukai_messages_sanitized_total",
                  "Messages through the sanitizer, by verdict (held: the original quarantined, a notice delivered).");
  counter("mukai_messages_delivered_total", "Messages whose every recipient was settled with at least one delivered.",
          delivered_.value());
  counter("mukai_messages_deferred_total", "Delivery attempts that left recipients pending (message deferred).",
          deferred_.value());
  counter("mukai_messages_bounced_total", "Messages with recipients refused or expired (DSN sent when enabled).",
          bounced_.value());
  w.family("mukai_recipients_total", "Recipients settled or deferred by delivery attempts.", metric_type::counter);
  w.sample("mukai_recipients_total", {{"status", "delivered"}}, static_cast<double>(c.recipients_delivered));
  w.sample("mukai_recipients_total", {{"status", "deferred"}}, static_cast<double>(c.recipients_deferred));
  w.sample("mukai_recipients_total", {{"status", "failed"}}, static_cast<double>(c.recipients_failed));
  counter("mukai_delivery_attempts_total", "Delivery attempts started.", c.delivery_attempts);
  counter("mukai_dsns_queued_total", "Delivery status notifications queued.", c.dsns_queued);
  parts_removed_.write(w, "mukai_parts_removed_total",
                       "MIME parts removed from messages, by detected type (a fixed list, else other) and action.");
  counter("mukai_sanitize_retries_total", "Local errors (spool, quarantine) that postponed a message's sanitizing.",
          c.sanitize_retries);
  counter("mukai_spool_corrupt_total", "Spool files that failed verification and were moved to corrupt/.", c.corrupt);
  w.family("mukai_worker_failures_total", "Sanitizer worker failures (each message concerned was held).",
           metric_type::counter);
  w.sample("mukai_worker_failures_total", {{"kind", "crash"}}, static_cast<double>(c.workers.crashes));
  w.sample("mukai_worker_failures_total", {{"kind", "timeout"}}, static_cast<double>(c.workers.timeouts));
  w.sample("mukai_worker_failures_total", {{"kind", "bad_response"}}, static_cast<double>(c.workers.bad_responses));
  counter("mukai_workers_spawned_total", "Sanitizer worker processes started.", c.workers.spawned);

  w.family("mukai_queue_messages", "Messages in the relay's queues.", metric_type::gauge);
  w.sample("mukai_queue_messages", {{"queue", "incoming"}}, static_cast<double>(g.incoming));
  w.sample("mukai_queue_messages", {{"queue", "outbound"}}, static_cast<double>(g.outbound));
  w.sample("mukai_queue_messages", {{"queue", "deferred"}}, static_cast<double>(g.deferred));
  gauge("mukai_queue_oldest_message_age_seconds", "Age of the oldest queued message (0: queues empty).",
        g.oldest_age_seconds);

  sanitize_seconds_.write(w, "mukai_sanitize_duration_seconds", "Time to sanitize one message (worker round trip).");
  latency_seconds_.write(w, "mukai_delivery_latency_seconds",
                         "End-to-end latency of delivered messages: received (250) to delivered.");
  return w.take();
}

}  // namespace mukai::server
