// TOML -> mukai_config. Each table is read by one function that consumes the keys it knows and
// reports every other key as unknown, so that check-config lists all problems at once with the
// file, line and dotted key.
#include "config/config.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

namespace mukai::config {

std::string to_string(const config_error& e) {
  std::string s = e.file;
  if (e.line != 0) s += ":" + std::to_string(e.line);
  s += ": ";
  if (!e.key.empty()) s += e.key + ": ";
  s += e.message;
  return s;
}

std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || p == text.data()) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  std::uint64_t mul = 0;
  if (unit.empty() || unit == "s") mul = 1;
  else if (unit == "m") mul = 60;
  else if (unit == "h") mul = 3600;
  else if (unit == "d") mul = 86400;
  else if (unit == "w") mul = 7 * 86400;
  else return std::nullopt;
  if (n > (std::uint64_t{1} << 40) / mul) return std::nullopt;
  return std::chrono::seconds(static_cast<std::chrono::seconds::rep>(n * mul));
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || p == text.data()) return std::nullopt;
  std::string unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
  std::uint64_t mul = 0;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "k" || unit == "kib" || unit == "kb") mul = 1024;
  else if (unit == "m" || unit == "mib" || unit == "mb") mul = 1024ull * 1024;
  else if (unit == "g" || unit == "gib" || unit == "gb") mul = 1024ull * 1024 * 1024;
  else return std::nullopt;
  if (n > (std::uint64_t{1} << 50) / mul) return std::nullopt;
  return n * mul;
}

namespace {

// Reads one TOML table; remembers which keys were used so the rest can be reported as unknown.
class table_reader {
 public:
  table_reader(const toml::table& t, std::string prefix, std::string file, std::vector<config_error>& errors)
      : table_(t), prefix_(std::move(prefix)), file_(std::move(file)), errors_(errors) {}

  ~table_reader() {
    for (auto&& [k, v] : table_) {
      if (!used_.count(std::string(k.str())))
        error(v, std::string(k.str()), "unknown key (misspelt? see config/mukai.toml for every key)");
    }
  }
  table_reader(const table_reader&) = delete;
  table_reader& operator=(const table_reader&) = delete;

  const toml::node* get(std::string_view key) {
    used_.insert(std::string(key));
    return table_.get(key);
  }

  void error(const toml::node& n, std::string_view key, std::string message) {
    errors_.push_back({file_, static_cast<std::uint32_t>(n.source().begin.line), full(key), std::move(message)});
  }

  std::string full(std::string_view key) const { return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key); }
  const std::string& file() const { return file_; }
  std::vector<config_error>& errors() { return errors_; }

  void read(std::string_view key, std::string& out) {
    if (auto* n = get(key)) {
      if (auto v = n->value<std::string>()) out = *v;
      else error(*n, key, "expected a string");
    }
  }
  void read(std::string_view key, bool& out) {
    if (auto* n = get(key)) {
      if (auto v = n->value<bool>()) out = *v;
      else error(*n, key, "expected true or false");
    }
  }
  template <typename Int>
  void read_count(std::string_view key, Int& out, std::int64_t min, std::int64_t max) {
    if (auto* n = get(key)) {
      auto v = n->value<std::int64_t>();
      if (!v) error(*n, key, "expected an integer");
      else if (*v < min || *v > max)
        error(*n, key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      else out = static_cast<Int>(*v);
    }
  }
  void read_size(std::string_view key, std::uint64_t& out, std::uint64_t min = 0) {
    if (auto* n = get(key)) {
      std::optional<std::uint64_t> v;
      if (auto i = n->value<std::int64_t>(); i && *i >= 0) v = static_cast<std::uint64_t>(*i);
      else if (auto s = n->value<std::string>()) v = parse_size(*s);
      if (!v) error(*n, key, "expected a size: bytes, or a number with K, M or G (e.g. \"50M\")");
      else if (*v < min) error(*n, key, "must be at least " + std::to_string(min) + " bytes");
      else out = *v;
    }
  }
  void read_duration(std::string_view key, std::chrono::seconds& out, std::chrono::seconds min = std::chrono::seconds{1}) {
    if (auto* n = get(key)) {
      std::optional<std::chrono::seconds> v;
      if (auto i = n->value<std::int64_t>(); i && *i >= 0) v = std::chrono::seconds(*i);
      else if (auto s = n->value<std::string>()) v = parse_duration(*s);
      if (!v) error(*n, key, "expected a duration: seconds, or a number with s, m, h, d or w (e.g. \"5m\")");
      else if (*v < min) error(*n, key, "must be at least " + std::to_string(min.count()) + " s");
      else out = *v;
    }
  }
  void read_list(std::string_view key, std::vector<std::string>& out) {
    if (auto* n = get(key)) {
      if (auto* s = n->as_string()) {  // a single string is accepted where a list is expected
        out = {s->get()};
        return;
      }
      auto* arr = n->as_array();
      if (!arr) {
        error(*n, key, "expected a list of strings");
        return;
      }
      out.clear();
      for (auto&& e : *arr) {
        if (auto v = e.value<std::string>()) out.push_back(*v);
        else error(e, key, "expected a list of strings");
      }
    }
  }
  // A sub-table; nullptr when absent (an error when present but not a table).
  const toml::table* sub(std::string_view key) {
    if (auto* n = get(key)) {
      if (auto* t = n->as_table()) return t;
      error(*n, key, "expected a table");
    }
    return nullptr;
  }

 private:
  const toml::table& table_;
  std::string prefix_;
  std::string file_;
  std::vector<config_error>& errors_;
  std::set<std::string> used_;
};

// The portable user-name rule of useradd(8)/systemd-sysusers (NAME_REGEX), without a trailing '$'.
bool valid_user_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char ch = name[i];
    const bool ok = (ch >= 'a' && ch <= 'z') || ch == '_' || (i > 0 && ((ch >= '0' && ch <= '9') || ch == '-'));
    if (!ok) return false;
  }
  return true;
}

template <typename Enum>
void read_enum(table_reader& r, std::string_view key, Enum& out,
               std::initializer_list<std::pair<std::string_view, Enum>> names) {
  if (auto* n = r.get(key)) {
    auto v = n->value<std::string>();
    std::string allowed;
    for (auto& [name, value] : names) {
      if (v && *v == name) {
        out = value;
        return;
      }
      allowed += (allowed.empty() ? "" : ", ") + std::string("\"") + std::string(name) + "\"";
    }
    r.error(*n, key, "expected one of " + allowed);
  }
}

bool valid_listen_address(std::string_view s) {
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= s.size()) return false;
  unsigned port = 0;
  auto port_text = s.substr(colon + 1);
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  return ec == std::errc{} && p == port_text.data() + port_text.size() && port > 0 && port < 65536;
}

bool valid_network(std::string_view s) {
  // "a.b.c.d/n", "a.b.c.d", "x::y/n": a light check here; the server parses with Asio and reports too.
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) || c == '.' || c == ':' || c == '/';
  });
}

const std::pair<std::string_view, content_flag> flag_names[] = {
    {"executable", content_flag::executable},
    {"macro-office", content_flag::macro_office},
    {"encrypted-archive", content_flag::encrypted_archive},
    {"encrypted-document", content_flag::encrypted_document},
    {"double-extension", content_flag::double_extension},
    {"type-mismatch", content_flag::type_mismatch},
    {"archive-with-executable", content_flag::archive_with_executable},
};

void read_flags(table_reader& r, std::string_view key, std::vector<content_flag>& out) {
  std::vector<std::string> names;
  auto* n = r.get(key);
  if (!n) return;
  auto* arr = n->as_array();
  if (!arr) {
    r.error(*n, key, "expected a list of flag names");
    return;
  }
  out.clear();
  for (auto&& e : *arr) {
    auto v = e.value<std::string>();
    bool found = false;
    for (auto& [name, f] : flag_names) {
      if (v && *v == name) {
        out.push_back(f);
        found = true;
      }
    }
    if (!found)
      r.error(e, key,
              "unknown flag; expected executable, macro-office, encrypted-archive, encrypted-document, "
              "double-extension, type-mismatch or archive-with-executable");
  }
}

void read_limits(const toml::table& t, const std::string& prefix, const std::string& file,
                 std::vector<config_error>& errors, limits& l) {
  table_reader r(t, prefix, file, errors);
  r.read_size("max_message_size", l.max_message_size, 1024);
  r.read_count("max_mime_depth", l.max_mime_depth, 1, 100);
  r.read_count("max_parts", l.max_parts, 1, 100000);
  r.read_size("max_header_size", l.max_header_size, 1024);
  r.read_size("max_decoded_output", l.max_decoded_output, 1024);
  r.read_size("max_html_size", l.max_html_size, 1024);
  std::chrono::seconds t_max{std::chrono::duration_cast<std::chrono::seconds>(l.max_processing_time)};
  r.read_duration("max_processing_time", t_max);
  l.max_processing_time = t_max;
}

void read_policy(const toml::table& t, const std::string& file, std::vector<config_error>& errors, policy& p) {
  table_reader r(t, "policy", file, errors);
  read_enum(r, "language", p.notice_language, {{"ja", language::ja}, {"en", language::en}});
  read_enum(r, "output_charset", p.charset, {{"utf-8", output_charset::utf8}, {"iso-2022-jp", output_charset::iso_2022_jp}});
  read_enum(r, "body_encoding", p.encoding,
            {{"auto", body_encoding::automatic},
             {"quoted-printable", body_encoding::quoted_printable},
             {"base64", body_encoding::base64}});
  r.read("prefer_html", p.prefer_html);
  r.read("inline_text_attachments", p.inline_text_attachments);
  const std::initializer_list<std::pair<std::string_view, link_action>> link_names = {
      {"keep", link_action::keep}, {"defang", link_action::defang}, {"remove", link_action::remove}};
  read_enum(r, "http_links", p.http_links, link_names);
  read_enum(r, "mailto_links", p.mailto_links, link_names);
  read_enum(r, "tel_links", p.tel_links, link_names);
  r.read("mark_phishing_links", p.mark_phishing_links);
  read_enum(r, "default_action", p.default_action,
            {{"quarantine", removed_action::quarantine}, {"discard", removed_action::discard}});
  read_flags(r, "release_forbidden", p.release_forbidden);
  r.read("contact", p.contact);
  r.read("notice_from", p.notice_from);
  if (auto* n = r.sub("notice")) {
    table_reader nr(*n, "policy.notice", file, errors);
    nr.read("sanitized_ja", p.templates.sanitized_ja);
    nr.read("sanitized_en", p.templates.sanitized_en);
    nr.read("held_ja", p.templates.held_ja);
    nr.read("held_en", p.templates.held_en);
  }
  if (auto* n = r.sub("limits")) read_limits(*n, "policy.limits", file, errors, p.limit);
  if (auto* n = r.get("rules")) {
    auto* arr = n->as_array();
    if (!arr || !arr->is_array_of_tables()) {
      r.error(*n, "rules", "expected [[policy.rules]] tables");
    } else {
      for (auto&& e : *arr) {
        removal_rule rule;
        table_reader rr(*e.as_table(), "policy.rules", file, errors);
        rr.read("name", rule.name);
        rr.read_list("detected_types", rule.detected_types);
        rr.read_list("extensions", rule.extensions);
        for (auto& ext : rule.extensions) {
          if (!ext.empty() && ext[0] == '.') ext.erase(0, 1);
          std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
        }
        read_flags(rr, "flags", rule.flags);
        std::uint64_t sz = 0;
        if (rr.get("min_size")) {
          rr.read_size("min_size", sz);
          rule.min_size = sz;
        }
        if (rr.get("max_size")) {
          rr.read_size("max_size", sz);
          rule.max_size = sz;
        }
        read_enum(rr, "action", rule.action,
                  {{"quarantine", removed_action::quarantine}, {"discard", removed_action::discard}});
        p.rules.push_back(std::move(rule));
      }
    }
  }
}

void read_smtp(const toml::table& t, const std::string& file, std::vector<config_error>& errors, smtp_config& s) {
  table_reader r(t, "smtp", file, errors);
  r.read_list("listen", s.listen);
  if (auto* n = t.get("listen")) {
    for (auto& l : s.listen)
      if (!valid_listen_address(l)) r.error(*n, "listen", "\"" + l + "\" is not host:port (use [::1]:25 for IPv6)");
  }
  r.read("hostname", s.hostname);
  r.read_list("relay_domains", s.relay_domains);
  r.read_list("client_networks", s.client_networks);
  if (auto* n = t.get("client_networks")) {
    for (auto& net : s.client_networks)
      if (!valid_network(net)) r.error(*n, "client_networks", "\"" + net + "\" is not an address or network/prefix");
  }
  r.read_size("max_message_size", s.max_message_size, 1024);
  r.read_count("max_recipients", s.max_recipients, 1, 100000);
  r.read_count("max_connections", s.max_connections, 1, 1000000);
  r.read_count("max_connections_per_ip", s.max_connections_per_ip, 1, 1000000);
  r.read_count("max_errors", s.max_errors, 1, 1000);
  r.read_count("max_messages_per_session", s.max_messages_per_session, 1, 100000);
  r.read("require_tls", s.require_tls);
  read_enum(r, "bare_lf", s.bare_lf, {{"reject", bare_lf_mode::reject}, {"normalise", bare_lf_mode::normalise}});
  if (auto* n = r.sub("timeouts")) {
    table_reader tr(*n, "smtp.timeouts", file, errors);
    tr.read_duration("greeting", s.timeouts.greeting);
    tr.read_duration("command", s.timeouts.command);
    tr.read_duration("data_block", s.timeouts.data_block);
    tr.read_duration("idle", s.timeouts.idle);
  }
}

void read_all(const toml::table& root, const std::string& file, std::vector<config_error>& errors, mukai_config& c) {
  table_reader r(root, "", file, errors);
  if (auto* t = r.sub("smtp")) read_smtp(*t, file, errors, c.smtp);
  if (auto* t = r.sub("tls")) {
    table_reader tr(*t, "tls", file, errors);
    tr.read("cert", c.tls.cert);
    tr.read("key", c.tls.key);
    read_enum(tr, "min_version", c.tls.min_version, {{"1.2", std::string("1.2")}, {"1.3", std::string("1.3")}});
    if (c.tls.cert.empty() != c.tls.key.empty())
      tr.error(*t, "cert", "cert and key must be set together");
  }
  if (auto* t = r.sub("delivery")) {
    table_reader dr(*t, "delivery", file, errors);
    dr.read_list("next_hop", c.delivery.next_hops);
    if (auto* n = t->get("next_hop")) {
      if (c.delivery.next_hops.empty()) dr.error(*n, "next_hop", "at least one next hop is required");
      for (auto& h : c.delivery.next_hops)
        if (h.rfind("smtp://", 0) != 0 && h.rfind("maildir:", 0) != 0)
          dr.error(*n, "next_hop", "\"" + h + "\" must start with smtp:// or maildir:");
    }
    dr.read("ca_file", c.delivery.ca_file);
    dr.read_duration("min_backoff", c.delivery.min_backoff);
    dr.read_duration("max_backoff", c.delivery.max_backoff);
    dr.read_duration("max_queue_lifetime", c.delivery.max_queue_lifetime);
    dr.read("bounce", c.delivery.bounce);
    dr.read_list("bounce_next_hop", c.delivery.bounce_next_hops);
    if (auto* n = t->get("bounce_next_hop")) {
      for (auto& h : c.delivery.bounce_next_hops)
        if (h.rfind("smtp://", 0) != 0 && h.rfind("maildir:", 0) != 0)
          dr.error(*n, "bounce_next_hop", "\"" + h + "\" must start with smtp:// or maildir:");
    }
    dr.read_count("concurrency", c.delivery.concurrency, 1, 1000);
  }
  if (auto* t = r.sub("spool")) {
    table_reader sr(*t, "spool", file, errors);
    std::string dir = c.spool.dir.string();
    sr.read("dir", dir);
    c.spool.dir = dir;
    sr.read_size("min_free_space", c.spool.min_free_space);
  }
  if (auto* t = r.sub("quarantine")) {
    table_reader qr(*t, "quarantine", file, errors);
    std::string dir = c.quarantine.dir.string();
    qr.read("dir", dir);
    c.quarantine.dir = dir;
    qr.read_duration("retention", c.quarantine.retention);
    read_enum(qr, "index", c.quarantine.index, {{"sqlite", std::string("sqlite")}});
  }
  if (auto* t = r.sub("policy")) read_policy(*t, file, errors, c.pol);
  if (auto* t = r.sub("admin")) {
    table_reader ar(*t, "admin", file, errors);
    ar.read("listen", c.admin.listen);
    if (!c.admin.listen.empty() && !valid_listen_address(c.admin.listen))
      ar.error(*t->get("listen"), "listen", "\"" + c.admin.listen + "\" is not host:port");
    ar.read("cert", c.admin.cert);
    ar.read("key", c.admin.key);
    ar.read_list("metrics_networks", c.admin.metrics_networks);
    ar.read_duration("session_lifetime", c.admin.session_lifetime, std::chrono::seconds{60});
    if (auto* n = ar.get("users")) {
      auto* arr = n->as_array();
      if (!arr || !arr->is_array_of_tables()) {
        ar.error(*n, "users", "expected [[admin.users]] tables");
      } else {
        for (auto&& e : *arr) {
          admin_user u;
          table_reader ur(*e.as_table(), "admin.users", file, errors);
          ur.read("name", u.name);
          read_enum(ur, "role", u.role, {{"viewer", std::string("viewer")}, {"operator", std::string("operator")}});
          ur.read("password_hash", u.password_hash);
          if (u.name.empty()) ur.error(e, "name", "every user needs a name");
          if (u.password_hash.empty()) ur.error(e, "password_hash", "make one with `mukai passwd`");
          c.admin.users.push_back(std::move(u));
        }
      }
    }
  }
  if (auto* t = r.sub("log")) {
    table_reader lr(*t, "log", file, errors);
    read_enum(lr, "level", c.log.level,
              {{"debug", std::string("debug")}, {"info", std::string("info")},
               {"warning", std::string("warning")}, {"error", std::string("error")}});
    lr.read("file", c.log.file);
    read_enum(lr, "format", c.log.format, {{"json", std::string("json")}, {"text", std::string("text")}});
  }
  if (auto* t = r.sub("service")) {
    table_reader sr(*t, "service", file, errors);
    sr.read("user", c.service.user);
    if (!c.service.user.empty() && !valid_user_name(c.service.user))
      sr.error(*t->get("user"), "user", "\"" + c.service.user + "\" is not a user name ([a-z_][a-z0-9_-]*, at most 32)");
    if (c.service.user == "root") sr.error(*t->get("user"), "user", "must not be root (it is the user to drop to)");
  }
  if (auto* t = r.sub("worker")) {
    table_reader wr(*t, "worker", file, errors);
    wr.read_count("count", c.worker.count, 1, 64);
    wr.read_size("memory_limit", c.worker.memory_limit, 128ull * 1024 * 1024);  // below, libmagic cannot load
    wr.read_duration("timeout", c.worker.timeout);
    wr.read_count("max_messages", c.worker.max_messages, 1, 1000000);
  }
}

}  // namespace

mukai_config embedded_default() {
  mukai_config c;
  c.source = "(embedded default)";
  return c;
}

load_result load_config_text(std::string_view toml_text, std::string_view source_name) {
  load_result out;
  mukai_config c = embedded_default();
  c.source = std::string(source_name);
  try {
    toml::table root = toml::parse(toml_text, source_name);
    read_all(root, std::string(source_name), out.errors, c);
  } catch (const toml::parse_error& e) {
    out.errors.push_back({std::string(source_name), static_cast<std::uint32_t>(e.source().begin.line), "",
                          std::string(e.description())});
    return out;
  }
  if (out.errors.empty()) out.config = std::move(c);
  return out;
}

std::vector<config_error> validate_for_serve(const mukai_config& c) {
  std::vector<config_error> errors;
  // An explicit config is a production config: recipients must be listed, never "any domain"
  // (only the embedded default, bound to loopback, accepts any domain).
  if (c.smtp.relay_domains.empty())
    errors.push_back({c.source, 0, "smtp.relay_domains",
                      "list the recipient domains to accept (an empty list would accept any domain)"});
  return errors;
}

load_result load_config_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return load_result{std::nullopt, {{file.string(), 0, "", "cannot open the file"}}};
  std::ostringstream ss;
  ss << in.rdbuf();
  return load_config_text(ss.str(), file.string());
}

}  // namespace mukai::config
