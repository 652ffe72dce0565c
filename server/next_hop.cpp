// Parsing of `[delivery] next_hop` entries; see next_hop.hpp for the grammar and why it is strict.
#include "server/next_hop.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace mukai::server {

namespace {

constexpr std::string_view smtp_scheme = "smtp://";
constexpr std::string_view maildir_scheme = "maildir:";

char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool starts_with_nocase(std::string_view s, std::string_view prefix) noexcept {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (ascii_lower(s[i]) != prefix[i]) return false;
  }
  return true;
}

bool is_control(unsigned char c) noexcept { return c < 0x20 || c == 0x7F; }
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_alnum(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Printable for an error message: control and non-ASCII bytes as \xHH, bounded.
std::string printable(std::string_view text) {
  constexpr std::size_t max_shown = 200;
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < max_shown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7F || c == '\\') {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > max_shown) out += "...";
  return out;
}

next_hop_error error_for(std::string_view entry, std::string message) {
  return next_hop_error{printable(entry), std::move(message)};
}

bool is_ipv4_literal(const std::string& s) noexcept {
  in_addr a{};
  return ::inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool is_ipv6_literal(const std::string& s) noexcept {
  in6_addr a{};
  return ::inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

// RFC 1123 host name: dot-separated labels of letters, digits and '-', 1..63 octets each, not
// starting or ending with '-', at most 253 octets in all. Returns an error text or "".
std::string check_dns_name(std::string_view name) {
  if (name.empty()) return "the host is empty";
  if (name.size() > 253) return "the host name is longer than 253 characters";
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t dot = std::min(name.find('.', start), name.size());
    const std::string_view label = name.substr(start, dot - start);
    if (label.empty()) return "the host name has an empty label";
    if (label.size() > 63) return "a label of the host name is longer than 63 characters";
    if (label.front() == '-' || label.back() == '-')
      return "a label of the host name starts or ends with '-'";
    for (char c : label) {
      if (!is_alnum(c) && c != '-') {
        return "the host name contains '" + printable(std::string_view(&c, 1)) +
               "' (only letters, digits, '-' and '.'; an IPv6 literal needs brackets)";
      }
    }
    start = dot + 1;
  }
  return {};
}

boost::system::result<next_hop, next_hop_error> parse_smtp(std::string_view entry) {
  std::string_view rest = entry.substr(smtp_scheme.size());
  smtp_hop hop;

  // Split off the query; nothing else may follow the authority.
  std::string_view query;
  bool has_query = false;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    has_query = true;
  }
  if (rest.find('#') != std::string_view::npos) return error_for(entry, "a fragment ('#') is not allowed");
  if (rest.find('@') != std::string_view::npos)
    return error_for(entry, "user information ('@') is not allowed");
  if (rest.find('/') != std::string_view::npos)
    return error_for(entry, "a path after the host and port is not allowed");
  if (rest.empty()) return error_for(entry, "the host is missing (expected smtp://host:port)");

  std::string_view port_text;
  bool has_port = false;
  if (rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return error_for(entry, "an IPv6 literal lacks its closing ']'");
    const std::string literal(rest.substr(1, close - 1));
    if (literal.find('%') != std::string::npos) {
      return error_for(entry, "an IPv6 zone index ('%') is not supported");
    }
    if (!is_ipv6_literal(literal))
      return error_for(entry, "'" + printable(literal) + "' is not an IPv6 address");
    hop.host = literal;
    std::transform(hop.host.begin(), hop.host.end(), hop.host.begin(), ascii_lower);
    hop.host_is_ip = true;
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return error_for(entry, "expected ':port' after the IPv6 literal");
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    std::string_view host = rest;
    const auto colon = rest.find(':');
    if (colon != std::string_view::npos) {
      if (rest.find(':', colon + 1) != std::string_view::npos) {
        return error_for(entry, "an IPv6 literal must be in brackets (smtp://[::1]:2526)");
      }
      host = rest.substr(0, colon);
      port_text = rest.substr(colon + 1);
      has_port = true;
    }
    if (host.empty()) return error_for(entry, "the host is missing (expected smtp://host:port)");
    if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);  // absolute name "mx.example."
    const bool looks_numeric =
        std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; });
    std::string h(host);
    if (looks_numeric) {
      if (!is_ipv4_literal(h)) return error_for(entry, "'" + printable(h) + "' is not an IPv4 address");
      hop.host_is_ip = true;
    } else if (auto why = check_dns_name(h); !why.empty()) {
      return error_for(entry, why);
    }
    std::transform(h.begin(), h.end(), h.begin(), ascii_lower);
    hop.host = std::move(h);
  }

  if (has_port) {
    if (port_text.empty()) return error_for(entry, "the port after ':' is empty");
    if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(), is_digit)) {
      return error_for(entry, "the port '" + printable(port_text) + "' is not a number from 1 to 65535");
    }
    unsigned long port = 0;
    for (char c : port_text) port = port * 10 + static_cast<unsigned long>(c - '0');
    if (port == 0 || port > 65535) {
      return error_for(entry, "the port '" + printable(port_text) + "' is not a number from 1 to 65535");
    }
    hop.port = static_cast<std::uint16_t>(port);
  }

  if (has_query) {
    if (query.empty()) return error_for(entry, "the query after '?' is empty");
    bool seen_starttls = false;
    std::size_t start = 0;
    while (start <= query.size()) {
      const std::size_t amp = std::min(query.find('&', start), query.size());
      const std::string_view item = query.substr(start, amp - start);
      const auto eq = item.find('=');
      const std::string_view key = item.substr(0, eq);
      if (key != "starttls") {
        return error_for(entry, "unknown option '" + printable(key) + "' (the only option is starttls=)");
      }
      if (seen_starttls) return error_for(entry, "starttls= is given twice");
      seen_starttls = true;
      const std::string_view value = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
      if (value == "required") {
        hop.starttls = starttls_mode::required;
      } else if (value == "opportunistic") {
        hop.starttls = starttls_mode::opportunistic;
      } else if (value == "off") {
        hop.starttls = starttls_mode::off;
      } else {
        return error_for(entry, "starttls='" + printable(value) + "' must be required, opportunistic or off");
      }
      start = amp + 1;
    }
  }
  return next_hop{std::move(hop)};
}

boost::system::result<next_hop, next_hop_error> parse_maildir(std::string_view entry) {
  const std::string_view path = entry.substr(maildir_scheme.size());
  if (path.empty()) return error_for(entry, "the maildir path is empty (expected maildir:/path)");
  if (path.starts_with("//")) {
    return error_for(entry, "maildir takes a path, not a URL authority (write maildir:/path)");
  }
  if (std::any_of(path.begin(), path.end(),
                  [](char c) { return is_control(static_cast<unsigned char>(c)); })) {
    return error_for(entry, "the maildir path contains a control character");
  }
  return next_hop{maildir_hop{std::filesystem::path(std::string(path))}};
}

}  // namespace

std::string_view to_string(starttls_mode m) noexcept {
  switch (m) {
    case starttls_mode::off:
      return "off";
    case starttls_mode::opportunistic:
      return "opportunistic";
    case starttls_mode::required:
      return "required";
  }
  return "?";
}

std::string endpoint_text(const smtp_hop& hop) {
  const bool v6 = hop.host.find(':') != std::string::npos;
  return (v6 ? "[" + hop.host + "]" : hop.host) + ":" + std::to_string(hop.port);
}

std::string to_string(const next_hop& hop) {
  if (const auto* s = std::get_if<smtp_hop>(&hop.target)) {
    std::string out = "smtp://" + endpoint_text(*s);
    if (s->starttls != starttls_mode::opportunistic) {
      out += "?starttls=";
      out += to_string(s->starttls);
    }
    return out;
  }
  return "maildir:" + std::get<maildir_hop>(hop.target).dir.string();
}

std::string to_string(const next_hop_error& e) { return "next hop '" + e.entry + "': " + e.message; }

void throw_exception_from_error(const next_hop_error& e, const boost::source_location&) {
  throw std::invalid_argument(to_string(e));
}

boost::system::result<next_hop, next_hop_error> parse_next_hop(std::string_view text) {
  if (text.empty()) return error_for(text, "the entry is empty");
  if (text.size() > 4096) return error_for(text, "the entry is longer than 4096 characters");
  if (text.front() == ' ' || text.front() == '\t' || text.back() == ' ' || text.back() == '\t') {
    return error_for(text, "the entry has leading or trailing white space");
  }
  if (starts_with_nocase(text, smtp_scheme)) {
    if (std::any_of(text.begin(), text.end(), [](char c) {
          const auto u = static_cast<unsigned char>(c);
          return is_control(u) || u == ' ' || u >= 0x80;
        })) {
      return error_for(text, "an smtp:// entry may contain only printable ASCII without spaces");
    }
    return parse_smtp(text);
  }
  if (starts_with_nocase(text, maildir_scheme)) return parse_maildir(text);
  if (starts_with_nocase(text, "smtps://")) {
    return error_for(text,
                     "smtps:// (implicit TLS) is not supported; use smtp://host:port?starttls=required");
  }
  if (starts_with_nocase(text, "lmtp:"))
    return error_for(text, "LMTP is not supported; use smtp:// or maildir:");
  return error_for(text,
                   "unknown kind of next hop (expected smtp://host:port[?starttls=...] or maildir:/path)");
}

next_hop_list parse_next_hops(const std::vector<std::string>& entries) {
  next_hop_list out;
  if (entries.empty()) {
    out.errors.push_back({"", "no next hop is configured: there would be nowhere to deliver"});
    return out;
  }
  for (const auto& e : entries) {
    auto r = parse_next_hop(e);
    if (r) {
      out.hops.push_back(std::move(*r));
    } else {
      out.errors.push_back(std::move(r.error()));
    }
  }
  return out;
}

}  // namespace mukai::server
