// The server-side TLS context (STARTTLS of the SMTP listener) built from [tls] cert/key/min_version.
//
// Choices, and why:
//  - TLS 1.2 minimum (1.3 with min_version = "1.3"): SSLv3/TLS 1.0/1.1 are deprecated (RFC 8996).
//  - No compression (CRIME), no renegotiation at all (the CVE-2009-3555 class and a cheap CPU DoS:
//    SMTP never needs it).
//  - TLS 1.2 ciphers: ECDHE/DHE with AEAD only (Mozilla "intermediate"): forward secrecy, no CBC,
//    no RSA key exchange. TLS 1.3 suites are OpenSSL's defaults (all AEAD).
//  - No client certificate is requested: the relay authorises clients by network, not by certificate.
//  - SSL_MODE_RELEASE_BUFFERS: OpenSSL frees its record buffers (~34 KiB) while a connection is idle,
//    which matters with thousands of mostly idle sessions.
//  - The certificate chain and the key are checked against each other here, so a mismatched pair
//    fails at start-up or reload (and the old context stays), not at the first handshake.
// Threading: the returned context is immutable once built; share it between sessions (OpenSSL's
// SSL_CTX is safe to create SSL objects from concurrently). A reload builds a new one.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>

#include "config/config.hpp"

namespace mukai::server {

// True when [tls] asks for STARTTLS: both cert and key are set.
[[nodiscard]] bool tls_configured(const config::tls_config& tls) noexcept;

// Builds the context. Throws std::runtime_error (naming the file and OpenSSL's reason) when a file
// cannot be loaded, the key does not match the certificate, or min_version is not "1.2" or "1.3".
[[nodiscard]] std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(
    const config::tls_config& tls);

}  // namespace mukai::server
