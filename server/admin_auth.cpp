// Password hashes, sessions and the login lockout of the web console; see admin_auth.hpp.
#include "server/admin_auth.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <stdexcept>
#include <vector>

namespace mukai::server {

namespace {

constexpr std::size_t salt_bytes = 16;
constexpr std::size_t key_bytes = 32;
// Bounds on parameters read from a hash: a typo in the config must not make each login cost
// gigabytes or minutes (2^20 * 8 * 128 = 1 GiB is already far beyond a sane setting).
constexpr unsigned max_log2_n = 20, max_r = 32, max_p = 16;

std::string base64(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

std::optional<std::vector<unsigned char>> unbase64(std::string_view text) {
  if (text.empty() || text.size() > 256) return std::nullopt;
  std::string padded(text);
  while (padded.size() % 4 != 0) padded += '=';
  std::vector<unsigned char> out(padded.size() / 4 * 3 + 1);
  const int len = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(padded.data()),
                                  static_cast<int>(padded.size()));
  if (len < 0) return std::nullopt;
  std::size_t n = static_cast<std::size_t>(len);
  for (std::size_t i = padded.size(); i > 0 && padded[i - 1] == '='; --i) --n;  // DecodeBlock counts padding
  out.resize(n);
  return out;
}

bool scrypt(std::string_view password, const unsigned char* salt, std::size_t salt_len, const scrypt_params& p,
            unsigned char* out, std::size_t out_len) {
  std::unique_ptr<EVP_KDF, decltype(&EVP_KDF_free)> kdf(EVP_KDF_fetch(nullptr, "SCRYPT", nullptr), &EVP_KDF_free);
  if (!kdf) return false;
  std::unique_ptr<EVP_KDF_CTX, decltype(&EVP_KDF_CTX_free)> ctx(EVP_KDF_CTX_new(kdf.get()), &EVP_KDF_CTX_free);
  if (!ctx) return false;
  std::uint64_t n = std::uint64_t{1} << p.log2_n;
  std::uint32_t r = p.r, par = p.p;
  // 128 * N * r for V plus 128 * r * p for B, with room to spare.
  std::uint64_t maxmem = 128 * n * r + 128 * std::uint64_t{r} * par + (std::uint64_t{1} << 20);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, const_cast<char*>(password.data()), password.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<unsigned char*>(salt), salt_len),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &par),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
      OSSL_PARAM_construct_end()};
  const bool ok = EVP_KDF_derive(ctx.get(), out, out_len, params) == 1;
  ERR_clear_error();
  return ok;
}

struct parsed_hash {
  scrypt_params params;
  std::vector<unsigned char> salt, key;
};

bool parse_uint(std::string_view s, unsigned& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// "$scrypt$ln=15,r=8,p=1$salt$key"
std::optional<parsed_hash> parse_hash(std::string_view h) {
  constexpr std::string_view prefix = "$scrypt$";
  if (!h.starts_with(prefix)) return std::nullopt;
  h.remove_prefix(prefix.size());
  const auto d1 = h.find('$');
  if (d1 == std::string_view::npos) return std::nullopt;
  const auto d2 = h.find('$', d1 + 1);
  if (d2 == std::string_view::npos || h.find('$', d2 + 1) != std::string_view::npos) return std::nullopt;
  std::string_view ps = h.substr(0, d1);
  parsed_hash out;
  bool seen_n = false, seen_r = false, seen_p = false;
  while (!ps.empty()) {
    const auto comma = ps.find(',');
    std::string_view kv = ps.substr(0, comma);
    ps = comma == std::string_view::npos ? std::string_view{} : ps.substr(comma + 1);
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const std::string_view k = kv.substr(0, eq);
    unsigned v = 0;
    if (!parse_uint(kv.substr(eq + 1), v)) return std::nullopt;
    if (k == "ln" && !seen_n) {
      out.params.log2_n = v;
      seen_n = true;
    } else if (k == "r" && !seen_r) {
      out.params.r = v;
      seen_r = true;
    } else if (k == "p" && !seen_p) {
      out.params.p = v;
      seen_p = true;
    } else {
      return std::nullopt;
    }
  }
  if (!seen_n || !seen_r || !seen_p) return std::nullopt;
  if (out.params.log2_n < 1 || out.params.log2_n > max_log2_n || out.params.r < 1 || out.params.r > max_r ||
      out.params.p < 1 || out.params.p > max_p)
    return std::nullopt;
  auto salt = unbase64(h.substr(d1 + 1, d2 - d1 - 1));
  auto key = unbase64(h.substr(d2 + 1));
  if (!salt || !key || salt->size() < 8 || key->size() < 16 || key->size() > 64) return std::nullopt;
  out.salt = std::move(*salt);
  out.key = std::move(*key);
  return out;
}

}  // namespace

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> b(bytes);
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) {
    ERR_clear_error();
    throw std::runtime_error("the random number generator failed");
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char c : b) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string hash_password(std::string_view password, const scrypt_params& params) {
  unsigned char salt[salt_bytes];
  if (RAND_bytes(salt, sizeof salt) != 1) {
    ERR_clear_error();
    throw std::runtime_error("the random number generator failed");
  }
  unsigned char key[key_bytes];
  if (!scrypt(password, salt, sizeof salt, params, key, sizeof key)) throw std::runtime_error("scrypt failed");
  std::string out = "$scrypt$ln=" + std::to_string(params.log2_n) + ",r=" + std::to_string(params.r) +
                    ",p=" + std::to_string(params.p) + "$" + base64(salt, sizeof salt) + "$" +
                    base64(key, sizeof key);
  OPENSSL_cleanse(key, sizeof key);
  return out;
}

bool well_formed_password_hash(std::string_view hash) { return parse_hash(hash).has_value(); }

bool verify_password(std::string_view password, std::string_view hash) {
  const auto h = parse_hash(hash);
  if (!h) return false;
  std::vector<unsigned char> key(h->key.size());
  if (!scrypt(password, h->salt.data(), h->salt.size(), h->params, key.data(), key.size())) return false;
  const bool ok = CRYPTO_memcmp(key.data(), h->key.data(), key.size()) == 0;
  OPENSSL_cleanse(key.data(), key.size());
  return ok;
}

// --- sessions -----------------------------------------------------------------------------------

bool session_store::expired(const admin_session& s, clock::time_point now) const noexcept {
  return now >= s.created + lifetime_ || now >= s.last_seen + idle_timeout_;
}

admin_session session_store::create(std::string user, admin_role role, std::string client, clock::time_point now) {
  admin_session s;
  s.id = random_hex(32);
  s.csrf = random_hex(32);
  s.user = std::move(user);
  s.role = role;
  s.client = std::move(client);
  s.created = s.last_seen = now;
  const std::lock_guard lock(mutex_);
  if (sessions_.size() >= max_sessions_) {
    std::erase_if(sessions_, [&](const auto& kv) { return expired(kv.second, now); });
    while (sessions_.size() >= max_sessions_) {
      auto lru = std::min_element(sessions_.begin(), sessions_.end(), [](const auto& a, const auto& b) {
        return a.second.last_seen < b.second.last_seen;
      });
      sessions_.erase(lru);
    }
  }
  sessions_.emplace(s.id, s);
  return s;
}

std::optional<admin_session> session_store::find(std::string_view id, clock::time_point now) {
  const std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  if (expired(it->second, now)) {
    sessions_.erase(it);
    return std::nullopt;
  }
  it->second.last_seen = now;
  return it->second;
}

void session_store::remove(std::string_view id) {
  const std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it != sessions_.end()) sessions_.erase(it);
}

void session_store::remove_user(std::string_view user) {
  const std::lock_guard lock(mutex_);
  std::erase_if(sessions_, [&](const auto& kv) { return kv.second.user == user; });
}

std::size_t session_store::size() {
  const std::lock_guard lock(mutex_);
  return sessions_.size();
}

// --- lockout ------------------------------------------------------------------------------------

std::chrono::seconds login_limiter::wait_for(const entry& e, clock::time_point now) const {
  if (e.failures < o_.free_failures) return std::chrono::seconds{0};
  const std::size_t over = std::min<std::size_t>(e.failures - o_.free_failures, 30);
  auto delay = std::min<std::chrono::seconds>(o_.base_delay * (std::int64_t{1} << over), o_.max_delay);
  const auto until = e.last_failure + delay;
  if (now >= until) return std::chrono::seconds{0};
  return std::chrono::ceil<std::chrono::seconds>(until - now);
}

std::chrono::seconds login_limiter::wait_time(std::string_view user, std::string_view client, clock::time_point now) {
  const std::lock_guard lock(mutex_);
  std::chrono::seconds w{0};
  if (auto it = by_user_.find(user); it != by_user_.end()) w = std::max(w, wait_for(it->second, now));
  if (auto it = by_client_.find(client); it != by_client_.end()) w = std::max(w, wait_for(it->second, now));
  return w;
}

void login_limiter::bump(std::map<std::string, entry, std::less<>>& m, std::string_view key, clock::time_point now) {
  if (m.size() >= o_.max_entries && m.find(key) == m.end()) {
    std::erase_if(m, [&](const auto& kv) { return now - kv.second.last_failure > o_.forget_after; });
    // Still full: an attacker spraying names/addresses. Drop the entry with the fewest failures, so
    // the counters of a targeted account survive.
    if (m.size() >= o_.max_entries) {
      auto least = std::min_element(m.begin(), m.end(), [](const auto& a, const auto& b) {
        return a.second.failures < b.second.failures;
      });
      m.erase(least);
    }
  }
  auto it = m.find(key);
  if (it == m.end()) it = m.emplace(std::string(key), entry{}).first;
  if (now - it->second.last_failure > o_.forget_after) it->second.failures = 0;
  ++it->second.failures;
  it->second.last_failure = now;
}

void login_limiter::record_failure(std::string_view user, std::string_view client, clock::time_point now) {
  const std::lock_guard lock(mutex_);
  bump(by_user_, user, now);
  bump(by_client_, client, now);
}

void login_limiter::record_success(std::string_view user, std::string_view client) {
  const std::lock_guard lock(mutex_);
  if (auto it = by_user_.find(user); it != by_user_.end()) by_user_.erase(it);
  if (auto it = by_client_.find(client); it != by_client_.end()) by_client_.erase(it);
}

}  // namespace mukai::server
