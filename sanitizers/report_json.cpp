// Report <-> JSON, the pretty printer and the UTF-8 guard. See report_json.hpp for the shape.
// Threading: pure functions, reentrant.
#include "sanitizers/report_json.hpp"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <cstdint>

#include "sanitizers/charset_utf8.hpp"

namespace mukai::sanitize {

namespace json = boost::json;

namespace {

json::string to_json_string(std::string_view s) {
  const std::string valid = to_valid_utf8(s);
  return json::string(valid);
}

json::array to_json_array(const std::vector<std::string>& v) {
  json::array a;
  a.reserve(v.size());
  for (const auto& s : v) a.emplace_back(to_json_string(s));
  return a;
}

json::object part_to_json(const part_report& p) {
  json::object o;
  o["path"] = to_json_string(p.path);
  o["declared_type"] = to_json_string(p.declared_type);
  o["detected_type"] = to_json_string(p.detected_type);
  o["filename"] = to_json_string(p.filename);
  o["size"] = p.size;
  o["sha256"] = to_json_string(p.sha256);
  o["action"] = to_string(p.action);
  o["reason"] = to_json_string(p.reason);
  o["flags"] = to_json_array(p.flags);
  return o;
}

// ---- strict readers: each returns false on a missing key or a wrong type ----

bool read_string(const json::object& o, std::string_view key, std::string& out) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return false;
  const json::string& s = v->get_string();
  out.assign(s.data(), s.size());
  return true;
}

bool read_string_array(const json::object& o, std::string_view key, std::vector<std::string>& out) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_array()) return false;
  out.clear();
  out.reserve(v->get_array().size());
  for (const json::value& e : v->get_array()) {
    if (!e.is_string()) return false;
    out.emplace_back(e.get_string().data(), e.get_string().size());
  }
  return true;
}

bool read_size(const json::object& o, std::string_view key, std::uint64_t& out) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return false;
  // The parser stores non-negative integers as int64 when they fit and uint64 otherwise;
  // doubles ("1.0", "1e3") are rejected: to_json never writes them.
  if (v->is_uint64()) {
    out = v->get_uint64();
    return true;
  }
  if (v->is_int64() && v->get_int64() >= 0) {
    out = static_cast<std::uint64_t>(v->get_int64());
    return true;
  }
  return false;
}

bool is_sha256_hex(std::string_view s) noexcept {
  if (s.empty()) return true;  // a part the engine did not hash (e.g. discarded unread)
  if (s.size() != 64) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::optional<verdict> verdict_from_string(std::string_view s) noexcept {
  for (const verdict v : {verdict::clean, verdict::sanitized, verdict::held}) {
    if (s == to_string(v)) return v;
  }
  return std::nullopt;
}

std::optional<part_action> action_from_string(std::string_view s) noexcept {
  for (const part_action a : {part_action::kept_as_text, part_action::converted, part_action::quarantined,
                              part_action::discarded}) {
    if (s == to_string(a)) return a;
  }
  return std::nullopt;
}

std::optional<part_report> part_from_json(const json::value& v) {
  if (!v.is_object()) return std::nullopt;
  const json::object& o = v.get_object();
  part_report p;
  std::string action;
  if (!read_string(o, "path", p.path) || !read_string(o, "declared_type", p.declared_type) ||
      !read_string(o, "detected_type", p.detected_type) || !read_string(o, "filename", p.filename) ||
      !read_size(o, "size", p.size) || !read_string(o, "sha256", p.sha256) ||
      !read_string(o, "action", action) || !read_string(o, "reason", p.reason) ||
      !read_string_array(o, "flags", p.flags)) {
    return std::nullopt;
  }
  if (!is_sha256_hex(p.sha256)) return std::nullopt;
  const auto a = action_from_string(action);
  if (!a) return std::nullopt;
  p.action = *a;
  return p;
}

void append_indent(std::string& out, int depth) { out.append(static_cast<std::size_t>(depth) * 2, ' '); }

bool is_container(const json::value& v) noexcept { return v.is_object() || v.is_array(); }

void format_into(std::string& out, const json::value& v, int depth) {
  if (v.is_object()) {
    const json::object& o = v.get_object();
    if (o.empty()) {
      out += "{}";
      return;
    }
    out += "{\n";
    bool first = true;
    for (const auto& kv : o) {
      if (!first) out += ",\n";
      first = false;
      append_indent(out, depth + 1);
      out += json::serialize(kv.key());
      out += ": ";
      format_into(out, kv.value(), depth + 1);
    }
    out += '\n';
    append_indent(out, depth);
    out += '}';
    return;
  }
  if (v.is_array()) {
    const json::array& a = v.get_array();
    if (a.empty()) {
      out += "[]";
      return;
    }
    bool nested = false;
    for (const json::value& e : a) nested = nested || is_container(e);
    if (!nested) {
      // Lists of scalars (reasons, flags, rcpt_to) read best on one line.
      out += '[';
      bool first = true;
      for (const json::value& e : a) {
        if (!first) out += ", ";
        first = false;
        out += json::serialize(e);
      }
      out += ']';
      return;
    }
    out += "[\n";
    bool first = true;
    for (const json::value& e : a) {
      if (!first) out += ",\n";
      first = false;
      append_indent(out, depth + 1);
      format_into(out, e, depth + 1);
    }
    out += '\n';
    append_indent(out, depth);
    out += ']';
    return;
  }
  out += json::serialize(v);
}

}  // namespace

std::string to_valid_utf8(std::string_view s) {
  // One strict decoder for the whole engine (charset_utf8.hpp): replacement counts and the
  // maximal-subpart rule agree with what the charset and display-safety code produce.
  std::string out;
  out.reserve(s.size());
  detail::append_utf8_repaired(out, s);
  return out;
}

json::object to_json(const report& r) {
  json::object o;
  o["verdict"] = to_string(r.result);
  o["reasons"] = to_json_array(r.reasons);
  o["warnings"] = to_json_array(r.warnings);
  if (r.quarantine_id) {
    o["quarantine_id"] = to_json_string(*r.quarantine_id);
  } else {
    o["quarantine_id"] = nullptr;
  }
  o["actions"] = to_json_array(r.actions);
  json::array parts;
  parts.reserve(r.parts.size());
  for (const auto& p : r.parts) parts.emplace_back(part_to_json(p));
  o["parts"] = std::move(parts);
  return o;
}

std::optional<report> report_from_json(const json::value& v) {
  if (!v.is_object()) return std::nullopt;
  const json::object& o = v.get_object();
  report r;
  std::string verdict_name;
  if (!read_string(o, "verdict", verdict_name) || !read_string_array(o, "reasons", r.reasons) ||
      !read_string_array(o, "warnings", r.warnings) || !read_string_array(o, "actions", r.actions)) {
    return std::nullopt;
  }
  const auto vd = verdict_from_string(verdict_name);
  if (!vd) return std::nullopt;
  r.result = *vd;

  const json::value* qid = o.if_contains("quarantine_id");
  if (qid == nullptr) return std::nullopt;
  if (qid->is_string()) {
    r.quarantine_id.emplace(qid->get_string().data(), qid->get_string().size());
  } else if (!qid->is_null()) {
    return std::nullopt;
  }

  const json::value* parts = o.if_contains("parts");
  if (parts == nullptr || !parts->is_array()) return std::nullopt;
  r.parts.reserve(parts->get_array().size());
  for (const json::value& pv : parts->get_array()) {
    auto p = part_from_json(pv);
    if (!p) return std::nullopt;
    r.parts.push_back(std::move(*p));
  }
  return r;
}

std::string format_json_text(const json::value& v) {
  std::string out;
  format_into(out, v, 0);
  out += '\n';
  return out;
}

std::string to_json_text(const report& r) { return format_json_text(json::value(to_json(r))); }

}  // namespace mukai::sanitize
