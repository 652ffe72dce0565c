#include "server/relay_events.hpp"

#include <algorithm>
#include <boost/json.hpp>

namespace mukai::server {

namespace json = boost::json;
using std::chrono::duration_cast;

log_event message_event(std::string_view name, std::string_view queue_id, std::string_view message_id,
                        const spool_envelope& env) {
  log_event ev(name, queue_id);
  if (!message_id.empty()) ev.add("message_id", message_id);
  ev.add("from", env.mail_from).add("client", env.client_address).add("tls", env.tls);
  return ev;
}

log_event sanitized_event(std::string_view queue_id, const spool_envelope& env, std::size_t size,
                          const sanitize::result& r, std::chrono::milliseconds sanitize_time) {
  const auto& rep = r.rep;
  log_event ev = message_event(rep.result == sanitize::verdict::held ? "quarantined" : "sanitized", queue_id,
                               r.headers.message_id, env);
  json::array rcpts;
  for (const auto& rc : env.recipients) rcpts.emplace_back(log_event::clean(rc.address));
  ev.add_value("rcpt", std::move(rcpts));
  ev.add("size", static_cast<std::uint64_t>(size))
      .add("verdict", sanitize::to_string(rep.result))
      .add("subject", r.headers.subject)
      .add("output_size", static_cast<std::uint64_t>(r.output.size()))
      .add("parts", static_cast<std::uint64_t>(rep.parts.size()));
  json::array removed;
  for (const auto& part : rep.parts) {
    if (part.action != sanitize::part_action::quarantined && part.action != sanitize::part_action::discarded) continue;
    if (removed.size() >= 32) break;  // a line stays bounded; the quarantine item has them all
    removed.push_back(json::object{{"path", log_event::clean(part.path)},
                                   {"type", log_event::clean(part.detected_type)},
                                   {"declared", log_event::clean(part.declared_type)},
                                   {"filename", log_event::clean(part.filename.substr(0, 200))},
                                   {"size", part.size},
                                   {"action", sanitize::to_string(part.action)},
                                   {"reason", log_event::clean(part.reason)}});
  }
  ev.add_value("removed", std::move(removed));
  ev.add("actions", rep.actions).add("reasons", rep.reasons);
  if (rep.quarantine_id) ev.add("quarantine_id", *rep.quarantine_id);
  ev.add("sanitize_ms", static_cast<std::uint64_t>(std::max<long long>(0, sanitize_time.count())));
  return ev;
}

std::vector<std::pair<log_level, log_event>> attempt_events(const attempt_context& c) {
  const auto& env = c.envelope;
  json::array delivered, bounced, deferred;
  std::string relay_name;
  for (const auto& r : c.outcome.recipients) {
    const auto& rs = c.state.recipients.at(r.index);
    json::object o{{"to", log_event::clean(env.recipients.at(r.index).address)},
                   {"reply", log_event::clean(r.reply.substr(0, 512))}};
    if (!r.remote.empty()) {
      o["relay"] = log_event::clean(r.remote);
      relay_name = r.remote;
    }
    if (rs.status == recipient_status::delivered) {
      delivered.push_back(std::move(o));
    } else if (rs.status == recipient_status::failed) {
      o["status"] = r.status == rcpt_status::permanent ? "refused" : "expired";
      bounced.push_back(std::move(o));
    } else {
      deferred.push_back(std::move(o));
    }
  }
  if (relay_name.empty() && !c.outcome.hops.empty()) relay_name = c.outcome.hops.back().hop;
  const bool tls = !c.outcome.hops.empty() && c.outcome.hops.back().tls;
  const auto latency_ms = static_cast<std::uint64_t>(
      std::max<long long>(0, duration_cast<std::chrono::milliseconds>(c.now - env.received).count()));
  std::vector<std::pair<log_level, log_event>> out;
  auto add = [&](std::string_view name, json::array list, log_level level) {
    if (list.empty()) return;
    log_event ev = message_event(name, c.queue_id, c.message_id, env);
    ev.add_value("recipients", std::move(list)).add("relay", relay_name).add("relay_tls", tls);
    ev.add("latency_ms", latency_ms).add("finished", c.finished);
    if (c.is_dsn) ev.add("dsn", true);
    if (name == "bounced" && !c.dsn_queue_id.empty()) ev.add("dsn_queue_id", c.dsn_queue_id);
    if (name == "deferred")
      ev.add("next_attempt_s", static_cast<std::uint64_t>(std::max<long long>(
                                   0, duration_cast<std::chrono::seconds>(c.next_attempt - c.now).count())));
    out.emplace_back(level, std::move(ev));
  };
  add("delivered", std::move(delivered), log_level::info);
  add("bounced", std::move(bounced), log_level::warning);
  add("deferred", std::move(deferred), log_level::info);
  return out;
}

}  // namespace mukai::server
