// Authentication for the web console: password hashes (`mukai passwd`), login sessions with their
// CSRF tokens, and the lockout that slows down password guessing.
//
// Password hashes are self-describing so that the parameters can be raised later without breaking
// existing entries: "$scrypt$ln=15,r=8,p=1$<salt b64>$<key b64>" (scrypt from OpenSSL's EVP_KDF,
// 16-byte random salt, 32-byte key; N = 2^15 costs ~32 MiB and tens of milliseconds per guess).
// Verification recomputes the key with the stored parameters and compares in constant time.
//
// Sessions live in memory only (a restart logs everyone out, which is the safe direction). A
// session ID and its CSRF token are 256-bit values from the OpenSSL CSPRNG, hex-encoded; the ID is
// only ever sent in a Secure, HttpOnly, SameSite=Strict cookie, the token in pages and the login
// answer of the JSON API. A session ends at created + lifetime, or after idle_timeout without a
// request, or at logout.
//
// The lockout counts failed logins per user name and per client address: after `free_failures`
// failures, each further attempt must wait a delay that doubles per failure (capped), whether the
// password is right or not; a success clears the user's and the address's counters.
//
// Threading: session_store and login_limiter are safe to use from several threads (one mutex
// each); hash_password and verify_password are pure and take tens of milliseconds of CPU, so call
// them off the I/O thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace mukai::server {

struct scrypt_params {
  unsigned log2_n = 15;  // N = 2^log2_n
  unsigned r = 8;
  unsigned p = 1;
};

// A new salted hash of `password`. Throws std::runtime_error if the KDF or the random generator
// fails (it never does on a working OpenSSL 3).
[[nodiscard]] std::string hash_password(std::string_view password, const scrypt_params& params = {});

// True when `password` matches `hash` (a string made by hash_password). False for a malformed hash
// or parameters outside sane bounds (refusing absurd costs keeps a bad config from hanging logins).
[[nodiscard]] bool verify_password(std::string_view password, std::string_view hash);

// True when `hash` parses as a hash this build can verify (check-config).
[[nodiscard]] bool well_formed_password_hash(std::string_view hash);

// Constant-time comparison of two strings (length leaks, contents do not).
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

// `bytes` random bytes from the OpenSSL CSPRNG as lower-case hex. Throws on failure.
[[nodiscard]] std::string random_hex(std::size_t bytes);

enum class admin_role { viewer, operator_ };

struct admin_session {
  std::string id;    // cookie value
  std::string csrf;  // token every POST must carry
  std::string user;
  admin_role role = admin_role::viewer;
  std::string client;  // address the login came from (for the audit log)
  std::chrono::steady_clock::time_point created, last_seen;
};

class session_store {
 public:
  using clock = std::chrono::steady_clock;
  session_store(std::chrono::seconds lifetime, std::chrono::seconds idle_timeout, std::size_t max_sessions = 1000)
      : lifetime_(lifetime), idle_timeout_(idle_timeout), max_sessions_(max_sessions) {}

  // A new session. When the store is full, expired sessions are dropped first, then the least
  // recently used one (so a flood of logins cannot grow memory without bound).
  admin_session create(std::string user, admin_role role, std::string client, clock::time_point now = clock::now());
  // The live session with this ID (and its last_seen refreshed); nullopt when unknown or expired
  // (an expired one is removed).
  std::optional<admin_session> find(std::string_view id, clock::time_point now = clock::now());
  void remove(std::string_view id);
  // Ends every session of `user` (not used by the server yet; for a password change).
  void remove_user(std::string_view user);
  [[nodiscard]] std::size_t size();

 private:
  [[nodiscard]] bool expired(const admin_session& s, clock::time_point now) const noexcept;
  std::chrono::seconds lifetime_, idle_timeout_;
  std::size_t max_sessions_;
  std::mutex mutex_;
  std::map<std::string, admin_session, std::less<>> sessions_;
};

struct login_limiter_options {
  std::size_t free_failures = 5;                 // failures allowed before the delay starts
  std::chrono::seconds base_delay{2};            // after free_failures, doubled per failure
  std::chrono::seconds max_delay{15 * 60};       // cap
  std::chrono::seconds forget_after{60 * 60};    // a counter untouched this long is dropped
  std::size_t max_entries = 10000;               // bound on tracked names/addresses
};

class login_limiter {
 public:
  using clock = std::chrono::steady_clock;
  explicit login_limiter(login_limiter_options o = {}) : o_(o) {}

  // How long this user/client must still wait before a login attempt is checked (zero = may try).
  [[nodiscard]] std::chrono::seconds wait_time(std::string_view user, std::string_view client,
                                               clock::time_point now = clock::now());
  void record_failure(std::string_view user, std::string_view client, clock::time_point now = clock::now());
  void record_success(std::string_view user, std::string_view client);

 private:
  struct entry {
    std::size_t failures = 0;
    clock::time_point last_failure{};
  };
  [[nodiscard]] std::chrono::seconds wait_for(const entry& e, clock::time_point now) const;
  void bump(std::map<std::string, entry, std::less<>>& m, std::string_view key, clock::time_point now);
  login_limiter_options o_;
  std::mutex mutex_;
  std::map<std::string, entry, std::less<>> by_user_, by_client_;
};

}  // namespace mukai::server
