// The web console's certificate: configured or self-signed at first start; see admin_cert.hpp.
#include "server/admin_cert.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace mukai::server {

namespace {

template <class T, void (*F)(T*)>
struct deleter {
  void operator()(T* p) const noexcept { F(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;

[[noreturn]] void fail(const std::string& what) {
  const unsigned long e = ERR_peek_last_error();
  std::string reason;
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    reason = std::string(": ") + buf;
  }
  ERR_clear_error();
  throw std::runtime_error("admin TLS: " + what + reason);
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

// Writes `bytes` to `path` through a temporary file created with `mode` and O_EXCL (so a private
// key is never world-readable, even briefly), fsynced, then renamed into place.
void write_file(const std::filesystem::path& path, const std::string& bytes, mode_t mode) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("admin TLS: cannot create " + tmp.string() + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::runtime_error("admin TLS: cannot write " + tmp.string() + ": " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw std::runtime_error("admin TLS: cannot write " + tmp.string() + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("admin TLS: cannot rename " + tmp.string() + ": " + std::strerror(errno));
}

std::string listen_host(const std::string& listen) {
  const auto colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

std::filesystem::path admin_tls_dir(const config::mukai_config& c) {
  return (c.quarantine.dir.lexically_normal() / ".." / "admin-tls").lexically_normal();
}

void generate_self_signed(const std::filesystem::path& cert, const std::filesystem::path& key,
                          const std::vector<std::string>& hosts) {
  ERR_clear_error();
  pkey_ptr pkey(EVP_EC_gen("P-256"));
  if (!pkey) fail("cannot generate an EC P-256 key");
  x509_ptr x(X509_new());
  if (!x) fail("X509_new");
  if (X509_set_version(x.get(), 2) != 1) fail("X509_set_version");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) fail("RAND_bytes");
  serial[0] &= 0x7F;  // positive
  std::unique_ptr<BIGNUM, deleter<BIGNUM, BN_free>> bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get()))) fail("serial number");
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 5L * 365 * 24 * 3600);
  if (X509_set_pubkey(x.get(), pkey.get()) != 1) fail("X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(x.get());
  const std::string cn = hosts.empty() ? std::string("mukai admin") : hosts.front();
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("mukai"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()),
                             static_cast<int>(std::min<std::size_t>(cn.size(), 64)), -1, 0);
  if (X509_set_issuer_name(x.get(), name) != 1) fail("X509_set_issuer_name");

  std::string san;
  for (const auto& h : hosts) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(h, ec);
    if (!san.empty()) san += ',';
    san += (ec ? "DNS:" : "IP:") + h;
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
  const std::pair<const char*, std::string> exts[] = {{"basicConstraints", "critical,CA:FALSE"},
                                                      {"keyUsage", "critical,digitalSignature"},
                                                      {"extendedKeyUsage", "serverAuth"},
                                                      {"subjectKeyIdentifier", "hash"},
                                                      {"subjectAltName", san}};
  for (const auto& [ext_name, value] : exts) {
    if (value.empty()) continue;
    std::unique_ptr<X509_EXTENSION, deleter<X509_EXTENSION, X509_EXTENSION_free>> e(
        X509V3_EXT_conf(nullptr, &ctx, ext_name, value.c_str()));
    if (!e || X509_add_ext(x.get(), e.get(), -1) != 1) fail(std::string("extension ") + ext_name);
  }
  if (X509_sign(x.get(), pkey.get(), EVP_sha256()) <= 0) fail("X509_sign");

  bio_ptr kb(BIO_new(BIO_s_mem())), cb(BIO_new(BIO_s_mem()));
  if (!kb || !cb) fail("BIO_new");
  if (PEM_write_bio_PrivateKey(kb.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) fail("PEM key");
  if (PEM_write_bio_X509(cb.get(), x.get()) != 1) fail("PEM certificate");
  std::string key_pem = bio_text(kb.get());
  write_file(key, key_pem, 0600);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  write_file(cert, bio_text(cb.get()), 0644);
}

std::string certificate_fingerprint(const std::filesystem::path& cert) {
  ERR_clear_error();
  bio_ptr b(BIO_new_file(cert.c_str(), "r"));
  if (!b) fail("cannot read " + cert.string());
  x509_ptr x(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  if (!x) fail("no certificate in " + cert.string());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(x.get(), EVP_sha256(), md, &n) != 1) fail("X509_digest");
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    if (i) out += ':';
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

admin_certificate ensure_admin_certificate(const config::mukai_config& c) {
  admin_certificate out;
  if (!c.admin.cert.empty() && !c.admin.key.empty()) {
    out.cert = c.admin.cert;
    out.key = c.admin.key;
    out.fingerprint = certificate_fingerprint(out.cert);
    return out;
  }
  const auto dir = admin_tls_dir(c);
  out.cert = dir / "cert.pem";
  out.key = dir / "key.pem";
  std::error_code ec;
  if (std::filesystem::exists(out.cert, ec) && std::filesystem::exists(out.key, ec)) {
    out.fingerprint = certificate_fingerprint(out.cert);
    return out;
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("admin TLS: cannot create " + dir.string() + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  std::vector<std::string> hosts;
  const std::string host = listen_host(c.admin.listen);
  const bool wildcard = host.empty() || host == "*" || host == "0.0.0.0" || host == "::";
  if (!wildcard) hosts.push_back(host);
  boost::system::error_code aec;
  const auto a = boost::asio::ip::make_address(host, aec);
  if (wildcard || host == "localhost" || (!aec && a.is_loopback())) {
    for (const char* h : {"localhost", "127.0.0.1", "::1"})
      if (std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.emplace_back(h);
  }
  if (wildcard && !c.smtp.hostname.empty()) hosts.push_back(c.smtp.hostname);
  generate_self_signed(out.cert, out.key, hosts);
  out.fingerprint = certificate_fingerprint(out.cert);
  out.generated = true;
  return out;
}

}  // namespace mukai::server
