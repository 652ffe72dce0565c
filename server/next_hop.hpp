// Where delivery sends a sanitized message: the parsed form of `[delivery] next_hop` entries.
//
//   smtp://host[:port][?starttls=required|opportunistic|off]
//       host is a DNS name, an IPv4 literal or a bracketed IPv6 literal ("smtp://[::1]:2526").
//       Port defaults to 25. starttls defaults to opportunistic (encrypt when offered, no
//       certificate check); "required" refuses to send in clear and verifies the certificate
//       chain and the host name; "off" never sends STARTTLS.
//   maildir:/path   or   maildir:relative/path (relative to the working directory)
//       one Maildir file per message (see maildir.hpp).
//
// A list of entries is the failover order (delivery.hpp). Parsing is strict: anything this grammar
// does not describe (user info, a path after the port, a fragment, an unknown query key, a zone
// index, "smtps://", control bytes) is an error that names the entry and the reason, because a
// typo in the next hop would otherwise deliver to the wrong place or downgrade TLS silently.
// Pure functions, safe from any thread.
#pragma once

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mukai::server {

enum class starttls_mode : std::uint8_t { off, opportunistic, required };
[[nodiscard]] std::string_view to_string(starttls_mode m) noexcept;

struct smtp_hop {
  std::string host;  // DNS name (lower-cased) or IP literal without brackets ("::1")
  std::uint16_t port = 25;
  starttls_mode starttls = starttls_mode::opportunistic;
  bool host_is_ip = false;  // host is an IPv4 or IPv6 literal (no DNS lookup, no SNI)
  bool operator==(const smtp_hop&) const = default;
};

struct maildir_hop {
  std::filesystem::path dir;  // as written; a relative path is relative to the working directory
  bool operator==(const maildir_hop&) const = default;
};

struct next_hop {
  std::variant<smtp_hop, maildir_hop> target;
  bool operator==(const next_hop&) const = default;
};

// Canonical text of a hop, for logs and DSNs ("smtp://[::1]:2526?starttls=required", "maildir:/x").
[[nodiscard]] std::string to_string(const next_hop& hop);
// "host:port" with brackets around an IPv6 literal.
[[nodiscard]] std::string endpoint_text(const smtp_hop& hop);

struct next_hop_error {
  std::string entry;    // the entry as configured (control bytes escaped)
  std::string message;  // why it was refused, for check-config
};
[[nodiscard]] std::string to_string(const next_hop_error& e);
// Lets result<next_hop, next_hop_error>::value() throw (std::invalid_argument with to_string(e)).
[[noreturn]] void throw_exception_from_error(const next_hop_error& e, const boost::source_location& loc);

[[nodiscard]] boost::system::result<next_hop, next_hop_error> parse_next_hop(std::string_view text);

struct next_hop_list {
  std::vector<next_hop> hops;          // in failover order; complete only when errors is empty
  std::vector<next_hop_error> errors;  // one per bad entry (every entry is checked)
};
// An empty list is an error too: there would be nowhere to deliver.
[[nodiscard]] next_hop_list parse_next_hops(const std::vector<std::string>& entries);

}  // namespace mukai::server
