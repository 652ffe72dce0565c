// Delivery across next hops and the retry policy; see delivery.hpp.
#include "server/delivery.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <limits>
#include <variant>

#include "server/maildir.hpp"

namespace mukai::server {

namespace asio = boost::asio;
using std::chrono::seconds;
using time_point = std::chrono::system_clock::time_point;

namespace {

constexpr std::size_t max_stored_reply = 512;

// A maildir hop: the message once, and the same result for every recipient.
asio::awaitable<delivery_attempt_result> deliver_maildir(const maildir_hop& hop,
                                                         const spooled_message& message,
                                                         const std::vector<std::size_t>& recipients,
                                                         const delivery_services& services) {
  // The write (with its fsyncs) runs on the blocking executor; we resume on our own executor.
  auto written = co_await asio::co_spawn(
      services.blocking_executor,
      [&]() -> asio::awaitable<boost::system::result<std::filesystem::path, std::error_code>> {
        co_return deliver_to_maildir(services.files, hop.dir, message.body);
      },
      asio::use_awaitable);
  delivery_attempt_result r;
  r.remote = "maildir:" + hop.dir.string();
  std::string reply;
  rcpt_status status = rcpt_status::delivered;
  if (written) {
    reply = "2.0.0 delivered to maildir as " + written->filename().string();
  } else {
    // A local disk problem is temporary: it may be fixed (space freed, permissions repaired).
    status = rcpt_status::temporary;
    r.error = written.error();
    reply = "4.3.0 maildir delivery to " + hop.dir.string() + " failed: " + written.error().message();
    r.error_text = reply;
  }
  if (reply.size() > max_stored_reply) reply.resize(max_stored_reply);
  for (std::size_t index : recipients) r.recipients.push_back(recipient_result{index, status, reply, ""});
  co_return r;
}

}  // namespace

std::vector<std::size_t> pending_recipients(const delivery_state& state) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < state.recipients.size(); ++i) {
    if (state.recipients[i].status == recipient_status::pending) out.push_back(i);
  }
  return out;
}

asio::awaitable<delivery_outcome> deliver(const spooled_message& message, const std::vector<next_hop>& hops,
                                          const std::vector<std::size_t>& recipients,
                                          const delivery_services& services) {
  delivery_outcome outcome;
  outcome.recipients.reserve(recipients.size());
  for (std::size_t index : recipients) {
    outcome.recipients.push_back(
        recipient_result{index, rcpt_status::temporary, "4.3.5 no next hop is configured", ""});
  }
  if (recipients.empty()) co_return outcome;

  for (const next_hop& hop : hops) {
    delivery_attempt_result attempt;
    if (const auto* smtp = std::get_if<smtp_hop>(&hop.target)) {
      const outgoing_message out{message.envelope, recipients, message.body};
      auto sent = co_await services.smtp.send(*smtp, out);
      attempt = std::move(sent);
    } else {
      auto written =
          co_await deliver_maildir(std::get<maildir_hop>(hop.target), message, recipients, services);
      attempt = std::move(written);
    }

    hop_report report;
    report.hop = to_string(hop);
    report.error = attempt.error;
    report.error_text = attempt.error_text;
    report.tls = attempt.tls;
    report.tls_details = attempt.tls_details;
    bool progress = false;
    // The client answers in request order, one result per requested recipient; match by index anyway.
    for (auto& r : attempt.recipients) {
      const auto it = std::find_if(outcome.recipients.begin(), outcome.recipients.end(),
                                   [&](const recipient_result& o) { return o.index == r.index; });
      if (it == outcome.recipients.end()) continue;
      switch (r.status) {
        case rcpt_status::delivered:
          ++report.delivered;
          progress = true;
          break;
        case rcpt_status::permanent:
          ++report.permanent;
          progress = true;
          break;
        case rcpt_status::temporary:
          ++report.temporary;
          break;
      }
      *it = std::move(r);
    }
    outcome.hops.push_back(std::move(report));
    if (progress) break;  // failover only when this hop made no progress at all
  }
  co_return outcome;
}

// ---- retry policy -------------------------------------------------------------------------------

retry_policy retry_policy::from_config(const config::delivery_config& c) {
  return retry_policy{c.min_backoff, c.max_backoff, c.max_queue_lifetime};
}

seconds backoff_delay(std::uint32_t failed_attempts, const retry_policy& p) noexcept {
  const auto min = std::max<seconds::rep>(p.min_backoff.count(), 0);
  const auto max = std::max(p.max_backoff.count(), min);
  const std::uint32_t doublings = failed_attempts <= 1 ? 0 : failed_attempts - 1;
  seconds::rep delay = min;
  for (std::uint32_t i = 0; i < doublings && delay < max; ++i) {
    delay = delay > std::numeric_limits<seconds::rep>::max() / 2 ? max : delay * 2;
    if (delay == 0) break;  // min_backoff 0 stays 0
  }
  return seconds(std::min(delay, max));
}

time_point expiry_time(time_point received, const retry_policy& p) noexcept {
  return received + std::chrono::duration_cast<time_point::duration>(p.max_queue_lifetime);
}

bool is_expired(time_point received, time_point now, const retry_policy& p) noexcept {
  return now >= expiry_time(received, p);
}

time_point next_attempt_time(time_point received, std::uint32_t failed_attempts, time_point now,
                             const retry_policy& p) noexcept {
  const time_point next =
      now + std::chrono::duration_cast<time_point::duration>(backoff_delay(failed_attempts, p));
  const time_point expiry = expiry_time(received, p);
  return std::max(now, std::min(next, expiry));
}

attempt_summary record_attempt(delivery_state& state, const spool_envelope& envelope,
                               const delivery_outcome& outcome, time_point now, const retry_policy& policy) {
  attempt_summary summary;
  if (state.recipients.size() != envelope.recipients.size()) {
    // spool::load_delivery_state guarantees the match; this only keeps a caller's mistake in bounds.
    state.recipients.resize(envelope.recipients.size());
  }
  ++state.attempts;
  for (const auto& r : outcome.recipients) {
    if (r.index >= state.recipients.size()) continue;
    recipient_delivery& rd = state.recipients[r.index];
    if (rd.status != recipient_status::pending) continue;  // a final state never changes
    ++rd.attempts;
    rd.last_reply = r.reply.substr(0, max_stored_reply);
    switch (r.status) {
      case rcpt_status::delivered:
        rd.status = recipient_status::delivered;
        ++summary.delivered;
        break;
      case rcpt_status::permanent:
        rd.status = recipient_status::failed;
        ++summary.failed;
        summary.newly_failed.push_back(
            failed_recipient{r.index, rd.last_reply, remote_mta_name(r.remote), false, now});
        break;
      case rcpt_status::temporary:
        break;
    }
  }
  if (!state.done() && is_expired(envelope.received, now, policy)) {
    for (std::size_t i = 0; i < state.recipients.size(); ++i) {
      recipient_delivery& rd = state.recipients[i];
      if (rd.status != recipient_status::pending) continue;
      rd.status = recipient_status::failed;
      ++summary.failed;
      std::string remote;
      for (const auto& r : outcome.recipients) {
        if (r.index == i) remote = remote_mta_name(r.remote);
      }
      summary.newly_failed.push_back(failed_recipient{i, rd.last_reply, remote, true, now});
    }
  }
  summary.deferred = pending_recipients(state).size();
  summary.finished = state.done();
  if (!summary.finished) {
    state.next_attempt = next_attempt_time(envelope.received, state.attempts, now, policy);
    summary.next_attempt = state.next_attempt;
  }
  return summary;
}

std::string remote_mta_name(std::string_view remote) {
  if (remote.empty() || remote.starts_with("maildir:")) return {};
  if (remote.front() == '[') {
    const auto close = remote.find(']');
    return close == std::string_view::npos ? std::string(remote) : std::string(remote.substr(0, close + 1));
  }
  if (const auto bracket = remote.find('['); bracket != std::string_view::npos) {
    return std::string(remote.substr(0, bracket));  // "name[address]:port"
  }
  return std::string(remote.substr(0, remote.rfind(':')));
}

}  // namespace mukai::server
