// The web console's TLS certificate: the configured [admin] cert/key, or a self-signed one made at
// first start so that the console is HTTPS from the first minute (it is never served in clear).
//
// The generated pair lives in <quarantine.dir>/../admin-tls/ (beside the quarantine, on the state
// volume the service may write: /var/lib/mukai/admin-tls in the package): cert.pem (0644) and
// key.pem (0600, created with O_EXCL so it is never readable by others, not even for a moment).
// EC P-256, SHA-256 signature, valid 5 years, subjectAltName = the listen host (IP or DNS name),
// plus "localhost", 127.0.0.1 and ::1 when the listener is loopback or a wildcard, plus
// [smtp] hostname for a wildcard. Operators compare the SHA-256 fingerprint the log shows with the
// one their browser shows on the first visit.
// Threading: call at start-up, from one thread.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace mukai::server {

struct admin_certificate {
  std::filesystem::path cert, key;
  std::string fingerprint;  // "AB:CD:..." SHA-256 of the DER certificate
  bool generated = false;   // made just now
};

// The directory for a generated pair.
[[nodiscard]] std::filesystem::path admin_tls_dir(const config::mukai_config& c);

// The configured pair, or the generated one (made when missing). Throws std::runtime_error with a
// message for the administrator (unreadable file, cannot write the directory).
[[nodiscard]] admin_certificate ensure_admin_certificate(const config::mukai_config& c);

// Makes a self-signed pair at cert/key for `hosts` (IP literals become IP SANs, others DNS SANs).
// Throws std::runtime_error.
void generate_self_signed(const std::filesystem::path& cert, const std::filesystem::path& key,
                          const std::vector<std::string>& hosts);

// SHA-256 fingerprint of the first certificate in a PEM file; throws std::runtime_error.
[[nodiscard]] std::string certificate_fingerprint(const std::filesystem::path& cert);

}  // namespace mukai::server
