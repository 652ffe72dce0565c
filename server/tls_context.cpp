// The server-side TLS context; see tls_context.hpp.
#include "server/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdexcept>
#include <string>

namespace mukai::server {

namespace {

// Mozilla "intermediate" TLS 1.2 suites: forward secret key exchange, AEAD only.
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

// The last OpenSSL error as text, and the error queue cleared (it is per thread: a stale entry
// would otherwise be blamed on the next, unrelated TLS operation of this thread).
std::string openssl_reason() {
  const unsigned long e = ERR_peek_last_error();
  std::string reason = "unknown error";
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    reason = buf;
  }
  ERR_clear_error();
  return reason;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("tls: " + what + ": " + openssl_reason());
}

}  // namespace

bool tls_configured(const config::tls_config& tls) noexcept { return !tls.cert.empty() && !tls.key.empty(); }

std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const config::tls_config& tls) {
  int min_version = 0;
  if (tls.min_version == "1.2") {
    min_version = TLS1_2_VERSION;
  } else if (tls.min_version == "1.3") {
    min_version = TLS1_3_VERSION;
  } else {
    throw std::runtime_error("tls: min_version must be \"1.2\" or \"1.3\", not \"" + tls.min_version + "\"");
  }
  if (!tls_configured(tls)) throw std::runtime_error("tls: cert and key must both be set");

  ERR_clear_error();
  auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, min_version) != 1) fail("cannot set the minimum TLS version");
  // Every suite offered is strong, so the client's order is kept (Mozilla's advice): it knows whether
  // it has AES hardware.
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_clear_options(native, SSL_OP_ALLOW_CLIENT_RENEGOTIATION | SSL_OP_LEGACY_SERVER_CONNECT);
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(native, tls12_ciphers) != 1) fail("cannot set the cipher list");
  // DHE suites need parameters: let OpenSSL pick groups matching the certificate's strength.
  if (SSL_CTX_set_dh_auto(native, 1) != 1) fail("cannot enable automatic DH parameters");
  SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);

  if (SSL_CTX_use_certificate_chain_file(native, tls.cert.c_str()) != 1)
    fail("cannot load the certificate chain \"" + tls.cert + "\"");
  if (SSL_CTX_use_PrivateKey_file(native, tls.key.c_str(), SSL_FILETYPE_PEM) != 1)
    fail("cannot load the private key \"" + tls.key + "\"");
  if (SSL_CTX_check_private_key(native) != 1)
    fail("the private key \"" + tls.key + "\" does not match the certificate \"" + tls.cert + "\"");
  ERR_clear_error();
  return ctx;
}

}  // namespace mukai::server
