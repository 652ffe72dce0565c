#include "server/log_event.hpp"

#include <boost/json/serialize.hpp>

#include "server/logger.hpp"

namespace mukai::server {

namespace json = boost::json;

log_event::log_event(std::string_view event, std::string_view queue_id) : name_(event), queue_id_(queue_id) {}

json::string log_event::clean(std::string_view raw) { return json::string(escape_for_log(raw)); }

log_event& log_event::add(std::string_view key, std::string_view value) {
  fields_[key] = clean(value);
  return *this;
}

log_event& log_event::add(std::string_view key, bool value) {
  fields_[key] = value;
  return *this;
}

log_event& log_event::add(std::string_view key, std::uint64_t value) {
  fields_[key] = value;
  return *this;
}

log_event& log_event::add(std::string_view key, double value) {
  fields_[key] = value;
  return *this;
}

log_event& log_event::add(std::string_view key, const std::vector<std::string>& values) {
  json::array a;
  a.reserve(values.size());
  for (const auto& v : values) a.emplace_back(clean(v));
  fields_[key] = std::move(a);
  return *this;
}

log_event& log_event::add_value(std::string_view key, json::value value) {
  fields_[key] = std::move(value);
  return *this;
}

std::string log_event::to_json(std::string_view time, std::string_view level) const {
  json::object o;
  o.reserve(fields_.size() + 4);
  o["time"] = time;
  o["level"] = level;
  o["event"] = name_;
  if (!queue_id_.empty()) o["queue_id"] = clean(queue_id_);
  for (const auto& kv : fields_) o[kv.key()] = kv.value();
  return json::serialize(o);
}

std::string log_event::to_text() const {
  std::string out;
  if (!queue_id_.empty()) out += escape_for_log(queue_id_) + ": ";
  out += name_;
  for (const auto& kv : fields_) {
    out += ' ';
    out += kv.key();
    out += '=';
    const auto& v = kv.value();
    if (const auto* s = v.if_string()) {
      // Already escaped (no control byte): quote only what would make the line ambiguous.
      const bool bare = !s->empty() && s->find_first_of(" \"=") == json::string::npos;
      out += bare ? std::string(*s) : json::serialize(v);
    } else {
      out += json::serialize(v);
    }
  }
  return out;
}

log_event quarantine_action_event(std::string_view action, std::string_view quarantine_id, std::string_view queue_id,
                                  std::string_view operator_name, const std::vector<std::string>& recipients,
                                  std::string_view reason) {
  log_event ev(action, queue_id);
  ev.add("quarantine_id", quarantine_id).add("operator", operator_name);
  if (!recipients.empty()) ev.add("recipients", recipients);
  if (!reason.empty()) ev.add("reason", reason);
  return ev;
}

std::string plain_line_json(std::string_view time, std::string_view level, std::string_view text) {
  json::object o;
  o["time"] = time;
  o["level"] = level;
  o["msg"] = log_event::clean(text);
  return json::serialize(o);
}

}  // namespace mukai::server
