// Web console authentication: password hashes, sessions and CSRF tokens, the login lockout.
#include "server/admin_auth.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace mukai::server;
using namespace std::chrono_literals;

namespace {
// Cheap parameters keep the test fast; the format and code path are those of the default.
constexpr scrypt_params fast{10, 8, 1};
}  // namespace

TEST_CASE("hash_password: self-describing scrypt hash, salted, verified in both directions") {
  const std::string h1 = hash_password("correct horse", fast);
  const std::string h2 = hash_password("correct horse", fast);
  CHECK(h1.starts_with("$scrypt$ln=10,r=8,p=1$"));
  CHECK(h1 != h2);  // random salt
  CHECK(verify_password("correct horse", h1));
  CHECK(verify_password("correct horse", h2));
  CHECK_FALSE(verify_password("correct horsE", h1));
  CHECK_FALSE(verify_password("", h1));
  CHECK_FALSE(verify_password("correct horse ", h1));
  CHECK(well_formed_password_hash(h1));
  const std::string utf8 = hash_password("パスワード", fast);
  CHECK(verify_password("パスワード", utf8));
  CHECK_FALSE(verify_password("ハスワード", utf8));
}

TEST_CASE("hash_password: the default parameters are the documented ones and verify") {
  const std::string h = hash_password("pw");
  CHECK(h.starts_with("$scrypt$ln=15,r=8,p=1$"));
  CHECK(verify_password("pw", h));
}

TEST_CASE("verify_password: malformed or absurd hashes are refused, never crash") {
  const std::string good = hash_password("pw", fast);
  const auto last = good.rfind('$');
  CHECK_FALSE(verify_password("pw", ""));
  CHECK_FALSE(verify_password("pw", "pw"));
  CHECK_FALSE(verify_password("pw", "$pbkdf2$x$y$z"));
  CHECK_FALSE(verify_password("pw", good.substr(0, last)));           // no key
  CHECK_FALSE(verify_password("pw", good + "$extra"));
  CHECK_FALSE(verify_password("pw", good.substr(0, last + 1) + "!!!"));  // not base64
  std::string flipped = good;
  flipped[last + 3] = flipped[last + 3] == 'A' ? 'B' : 'A';
  CHECK_FALSE(verify_password("pw", flipped));
  std::string huge = good;
  huge.replace(huge.find("ln=10"), 5, "ln=40");  // 2^40 would never finish
  CHECK_FALSE(verify_password("pw", huge));
  CHECK_FALSE(well_formed_password_hash(huge));
  std::string dup = good;
  dup.replace(dup.find("ln=10,r=8"), 9, "ln=10,ln=8");
  CHECK_FALSE(well_formed_password_hash(dup));
}

TEST_CASE("constant_time_equal and random_hex") {
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "ab"));
  CHECK(constant_time_equal("", ""));
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const auto h = random_hex(32);
    CHECK(h.size() == 64);
    CHECK(h.find_first_not_of("0123456789abcdef") == std::string::npos);
    seen.insert(h);
  }
  CHECK(seen.size() == 100);
}

TEST_CASE("session_store: 256-bit IDs and CSRF tokens, lifetime and idle expiry, logout") {
  session_store store(3600s, 600s);
  const auto t0 = session_store::clock::now();
  const auto s = store.create("yamada", admin_role::operator_, "127.0.0.1", t0);
  CHECK(s.id.size() == 64);
  CHECK(s.csrf.size() == 64);
  CHECK(s.id != s.csrf);
  auto found = store.find(s.id, t0 + 300s);
  REQUIRE(found);
  CHECK(found->user == "yamada");
  CHECK(found->role == admin_role::operator_);
  CHECK(found->csrf == s.csrf);
  CHECK_FALSE(store.find("nope", t0));
  CHECK_FALSE(store.find(s.id.substr(0, 63), t0));
  // Used every 9 minutes: never idle, but ends at the lifetime.
  for (int m = 9; m < 60; m += 9) CHECK(store.find(s.id, t0 + std::chrono::minutes(m)));
  CHECK_FALSE(store.find(s.id, t0 + 3600s));
  CHECK(store.size() == 0);  // expired ones are dropped

  const auto idle = store.create("sato", admin_role::viewer, "::1", t0);
  CHECK_FALSE(store.find(idle.id, t0 + 601s));

  const auto out = store.create("sato", admin_role::viewer, "::1", t0);
  store.remove(out.id);
  CHECK_FALSE(store.find(out.id, t0));
}

TEST_CASE("session_store: bounded; the least recently used session goes first") {
  session_store store(3600s, 600s, 3);
  const auto t0 = session_store::clock::now();
  const auto a = store.create("a", admin_role::viewer, "c", t0);
  const auto b = store.create("b", admin_role::viewer, "c", t0 + 1s);
  const auto c = store.create("c", admin_role::viewer, "c", t0 + 2s);
  CHECK(store.find(a.id, t0 + 3s));  // a used recently, b is now the oldest
  const auto d = store.create("d", admin_role::viewer, "c", t0 + 4s);
  CHECK(store.size() == 3);
  CHECK(store.find(a.id, t0 + 5s));
  CHECK_FALSE(store.find(b.id, t0 + 5s));
  CHECK(store.find(c.id, t0 + 5s));
  CHECK(store.find(d.id, t0 + 5s));
}

TEST_CASE("login_limiter: free failures, then a doubling delay per user and per client; success clears") {
  login_limiter_options o;
  o.free_failures = 3;
  o.base_delay = 2s;
  o.max_delay = 60s;
  login_limiter l(o);
  const auto t0 = login_limiter::clock::now();
  for (int i = 0; i < 3; ++i) {
    CHECK(l.wait_time("yamada", "192.0.2.1", t0) == 0s);
    l.record_failure("yamada", "192.0.2.1", t0);
  }
  CHECK(l.wait_time("yamada", "192.0.2.1", t0) == 2s);
  CHECK(l.wait_time("yamada", "192.0.2.99", t0) == 2s);  // per user: another address is no way round
  CHECK(l.wait_time("sato", "192.0.2.1", t0) == 2s);     // per client: another name is no way round
  CHECK(l.wait_time("sato", "192.0.2.99", t0) == 0s);
  CHECK(l.wait_time("yamada", "192.0.2.1", t0 + 2s) == 0s);
  l.record_failure("yamada", "192.0.2.1", t0 + 2s);
  CHECK(l.wait_time("yamada", "192.0.2.1", t0 + 2s) == 4s);
  for (int i = 0; i < 20; ++i) l.record_failure("yamada", "192.0.2.1", t0 + 10s);
  CHECK(l.wait_time("yamada", "192.0.2.1", t0 + 10s) == 60s);  // capped
  l.record_success("yamada", "192.0.2.1");
  CHECK(l.wait_time("yamada", "192.0.2.1", t0 + 10s) == 0s);
}

TEST_CASE("login_limiter: the number of tracked names is bounded; a targeted account keeps its count") {
  login_limiter_options o;
  o.free_failures = 2;
  o.max_entries = 50;
  login_limiter l(o);
  const auto t0 = login_limiter::clock::now();
  for (int i = 0; i < 5; ++i) l.record_failure("admin", "198.51.100.1", t0);
  for (int i = 0; i < 500; ++i) l.record_failure("spray" + std::to_string(i), "203.0.113." + std::to_string(i % 250), t0);
  CHECK(l.wait_time("admin", "198.51.100.77", t0) > 0s);
}
