// sanitizer_pool and `mukai worker` through the real binary (MUKAI_BINARY): results identical to
// the in-process engine; every kind of worker failure (crash, non-zero exit, hang, garbage,
// oversized, truncated or inconsistent responses, a memory bomb) held with the right reason and
// the original quarantined whole; the sandbox as the worker sees it (limits, descriptors,
// environment, seccomp, no network, no file writes); recycling; concurrency; and no zombies.
#include "server/sanitizer_worker.hpp"

#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <cctype>
#include <chrono>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "sanitizers/engine.hpp"
#include "sanitizers/report_json.hpp"
#include "server/asan_build.hpp"
#include "server/durable_fs.hpp"
#include "server/quarantine_store.hpp"

extern char** environ;

using namespace mukai::server;
namespace sanitize = mukai::sanitize;
namespace config = mukai::config;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Instrumented builds run workers without RLIMIT_AS (see sanitizer_worker.cpp).
constexpr bool address_space_limited = !asan_build;

class temp_dir {
 public:
  temp_dir() {
    std::string templ = (fs::temp_directory_path() / "mukai-worker-XXXXXX").string();
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A quarantine in a temporary directory.
struct test_store {
  temp_dir dir;
  posix_file_ops ops;
  quarantine_store store{dir.path() / "q", ops};
  test_store() { REQUIRE_FALSE(store.ensure_layout()); }
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string crlf(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out += '\r';
    out += s[i];
  }
  return out;
}

const std::string plain_message = crlf(
    "From: Alice <alice@example.com>\n"
    "To: bob@example.lg.jp\n"
    "Subject: hello\n"
    "Date: Sun, 22 Nov 2026 10:00:00 +0900\n"
    "Message-ID: <plain@example.com>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "Just text.\n");

// "MZ" and a PE-looking body: removed and quarantined by the default policy.
const std::string attachment_message = crlf(
    "From: Mallory <m@example.com>\n"
    "To: bob@example.lg.jp\n"
    "Subject: invoice\n"
    "Date: Sun, 22 Nov 2026 10:00:00 +0900\n"
    "Message-ID: <att@example.com>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\n"
    "\n"
    "--b1\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "See attached.\n"
    "--b1\n"
    "Content-Type: application/octet-stream; name=\"invoice.pdf.exe\"\n"
    "Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "--b1--\n");

worker_options test_options(std::size_t count = 2) {
  worker_options o;
  o.binary = MUKAI_BINARY;
  o.policy = config::embedded_default().pol;
  o.count = count;
  o.timeout = 30s;
  return o;
}

// Children of this process in state Z (not reaped).
int count_zombie_children() {
  int zombies = 0;
  const pid_t self = ::getpid();
  DIR* d = ::opendir("/proc");
  REQUIRE(d != nullptr);
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const auto paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(line.substr(paren + 1));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == self && state == 'Z') ++zombies;
  }
  ::closedir(d);
  return zombies;
}

// True once `pid` is no child of ours any more (reaped; a recycled PID would not be our child).
bool is_gone(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) < 0 && errno == ECHILD;
}

void check_held(const job_outcome& o, const char* reason) {
  CHECK_FALSE(o.store_error);
  CHECK(o.result.rep.result == sanitize::verdict::held);
  REQUIRE(o.result.rep.reasons.size() == 1);
  CHECK(o.result.rep.reasons[0] == reason);
  CHECK(o.result.quarantine_original);
  CHECK(o.result.quarantine.empty());
  REQUIRE(o.result.rep.quarantine_id.has_value());
  CHECK(o.result.output.find("X-Mukai-Verdict: held\r\n") != std::string::npos);
  CHECK(o.result.output.find("X-Mukai-Quarantine-ID: " + *o.result.rep.quarantine_id) != std::string::npos);
}

// The original is in the quarantine byte for byte, and meta.json carries the hold reason.
void check_original_quarantined(const test_store& ts, const job_outcome& o, std::string_view raw,
                                const char* reason) {
  const std::string id = *o.result.rep.quarantine_id;
  auto dir = ts.store.item_dir(id);
  REQUIRE(dir.has_value());
  CHECK(read_file(*dir / "original.eml") == raw);
  auto meta = ts.store.load_meta(id);
  REQUIRE(meta.has_value());
  auto rep = sanitize::report_from_json(meta->at("report"));
  REQUIRE(rep.has_value());
  CHECK(rep->result == sanitize::verdict::held);
  REQUIRE(rep->reasons.size() == 1);
  CHECK(rep->reasons[0] == reason);
  CHECK(meta->at("original").at("stored").as_bool());
}

// The output with its header block in lower case and the top-level Date field blanked. For an
// original without a Date the engine writes the time of sanitizing, which differs between two
// runs a second apart; and GMime spells a charset in an encoded word as a message processed
// earlier by the same process spelled it (=?US-ASCII?Q? after a "US-ASCII" message, =?us-ascii?Q?
// otherwise), so a long-lived worker and this process can differ in case there.
std::string normalized(std::string message) {
  const auto end = message.find("\r\n\r\n");
  const auto at = message.rfind("\r\nDate: ", end);
  if (at != std::string::npos && end != std::string::npos && at < end) {
    const auto eol = message.find("\r\n", at + 2);
    message.replace(at + 2, eol - at - 2, "Date: (blanked)");
  }
  const auto header_end = message.find("\r\n\r\n");
  for (std::size_t i = 0; i < header_end && i < message.size(); ++i)
    message[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(message[i])));
  return message;
}

std::string warning_value(const job_outcome& o, const std::string& key) {
  for (const auto& w : o.result.rep.warnings)
    if (w.rfind(key + "=", 0) == 0) return w.substr(key.size() + 1);
  return "<missing " + key + ">";
}

// Up to `limit` corpus messages of at most 200 KB, every `step`-th by name: a spread of clean,
// sanitized and held verdicts. MUKAI_WORKER_TEST_CORPUS=all takes every message, of any size.
std::vector<fs::path> corpus_sample(std::size_t limit, std::size_t step) {
  const char* all_env = std::getenv("MUKAI_WORKER_TEST_CORPUS");
  const bool every = all_env != nullptr && std::string_view(all_env) == "all";
  if (every) {
    limit = SIZE_MAX;
    step = 1;
  }
  std::vector<fs::path> all;
  const fs::path dir = fs::path(MUKAI_SHARED_DIR) / "corpus";
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (!e.is_regular_file() || e.path().extension() != ".eml") continue;
    if (!every && e.file_size() > 200 * 1024) continue;
    all.push_back(e.path());
  }
  std::sort(all.begin(), all.end());
  std::vector<fs::path> out;
  for (std::size_t i = 0; i < all.size() && out.size() < limit; i += step) out.push_back(all[i]);
  return out;
}

}  // namespace

TEST_CASE("messages through the worker give exactly the in-process engine's result") {
  test_store ts;
  sanitizer_pool pool(test_options(2));
  const auto pol = config::embedded_default().pol;

  std::vector<std::pair<std::string, std::string>> messages{{"plain", plain_message},
                                                            {"attachment", attachment_message}};
  for (const auto& p : corpus_sample(60, 7)) messages.emplace_back(p.filename().string(), read_file(p));
  REQUIRE(messages.size() > 20);

  std::set<sanitize::verdict> seen;
  for (const auto& [name, raw] : messages) {
    CAPTURE(name);
    const std::string received = "from client.example (client.example [192.0.2.1]) by mukai with ESMTP id X";
    job_outcome o = pool.sanitize(raw, ts.store, {"s@example.com", {"r@example.lg.jp"}}, received);
    REQUIRE_FALSE(o.store_error);
    // A clean report names no quarantine ID (nothing is kept); the output then has none either.
    const std::string id = o.result.rep.quarantine_id.value_or("20261122T000000Z-0000000000");
    CHECK(o.result.rep.quarantine_id.has_value() == (o.result.rep.result != sanitize::verdict::clean));
    for (const auto& r : o.result.rep.reasons) CHECK(r.rfind("worker:", 0) != 0);  // no worker failure

    sanitize::request req{id, received};
    const sanitize::result local = sanitize::sanitize_message(raw, pol, req);
    seen.insert(local.rep.result);
    CHECK(normalized(o.result.output) == normalized(local.output));
    CHECK(sanitize::to_json_text(o.result.rep) == sanitize::to_json_text(local.rep));
    CHECK(o.result.headers.from == local.headers.from);
    CHECK(o.result.headers.to == local.headers.to);
    CHECK(o.result.headers.subject == local.headers.subject);
    CHECK(o.result.headers.date == local.headers.date);
    CHECK(o.result.headers.message_id == local.headers.message_id);
    CHECK(o.result.quarantine_original == local.quarantine_original);
    REQUIRE(o.result.quarantine.size() == local.quarantine.size());
    for (std::size_t i = 0; i < local.quarantine.size(); ++i) {
      CHECK(o.result.quarantine[i].path == local.quarantine[i].path);
      CHECK(o.result.quarantine[i].sha256 == local.quarantine[i].sha256);
      CHECK(o.result.quarantine[i].filename == local.quarantine[i].filename);
      CHECK(o.result.quarantine[i].bytes == local.quarantine[i].bytes);
    }
    // What the engine asks to keep is in the quarantine, as sanitize_one would have stored it.
    auto meta = ts.store.load_meta(id);
    CHECK(meta.has_value() == (local.quarantine_original || !local.quarantine.empty()));
    if (meta) {
      for (const auto& part : local.quarantine)
        CHECK(fs::exists(*ts.store.item_dir(id) / "parts" / part.sha256));
    }
  }
  CHECK(seen.count(sanitize::verdict::clean) == 1);
  CHECK(seen.count(sanitize::verdict::sanitized) == 1);
  auto st = pool.stats();
  CHECK(st.completed == messages.size());
  CHECK(st.crashes + st.timeouts + st.bad_responses == 0);
  // Long-lived workers: a respawn only after max_messages_per_worker (100) messages.
  CHECK(st.spawned <= 2 + messages.size() / 100);
}

TEST_CASE("a crashing worker holds the message and quarantines the original whole") {
  test_store ts;
  std::vector<std::string> log;
  std::mutex log_mutex;
  auto o = test_options(1);
  o.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> g(log_mutex);
    log.push_back(line);
  };
  sanitizer_pool pool(std::move(o));

  SUBCASE("abort()") {
    job_outcome r = pool.sanitize_for_test(worker_test_hook::crash, 0, attachment_message, ts.store, {});
    check_held(r, "worker:crash");
    check_original_quarantined(ts, r, attachment_message, "worker:crash");
    REQUIRE(log.size() == 1);
    CHECK(log[0].find("worker:crash") != std::string::npos);
    CHECK(log[0].find("SIGABRT") != std::string::npos);
    CHECK(log[0].find(*r.result.rep.quarantine_id) != std::string::npos);
  }
  SUBCASE("non-zero exit") {
    job_outcome r = pool.sanitize_for_test(worker_test_hook::exit_nonzero, 0, plain_message, ts.store, {});
    check_held(r, "worker:crash");
    check_original_quarantined(ts, r, plain_message, "worker:crash");
    REQUIRE(log.size() == 1);
    CHECK(log[0].find("exited with status 3") != std::string::npos);
  }
  CHECK(pool.stats().crashes == 1);
  // The next message gets a fresh worker and a normal verdict.
  job_outcome next = pool.sanitize(plain_message, ts.store, {});
  CHECK(next.result.rep.result == sanitize::verdict::clean);
  CHECK(pool.stats().spawned == 2);
  CHECK(count_zombie_children() == 0);
}

TEST_CASE("a hanging worker is killed at the timeout and the message held") {
  test_store ts;
  auto o = test_options(1);
  o.timeout = 700ms;
  sanitizer_pool pool(std::move(o));
  // Warm up so that the timeout measures the hang, not the start.
  REQUIRE(pool.sanitize(plain_message, ts.store, {}).result.rep.result == sanitize::verdict::clean);
  const auto pids = pool.worker_pids();
  REQUIRE(pids.size() == 1);

  const auto t0 = std::chrono::steady_clock::now();
  job_outcome r = pool.sanitize_for_test(worker_test_hook::hang, 0, plain_message, ts.store, {});
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  check_held(r, "worker:timeout");
  check_original_quarantined(ts, r, plain_message, "worker:timeout");
  CHECK(elapsed >= 650ms);
  CHECK(elapsed < 5s);
  CHECK(is_gone(pids[0]));  // killed and reaped
  CHECK(pool.worker_pids().empty());
  CHECK(pool.stats().timeouts == 1);
  CHECK(count_zombie_children() == 0);
}

TEST_CASE("a large message crosses the protocol whole in both directions") {
  // 15 MB of binary in base64 (about 20 MB on the wire): many partial sends and receives.
  std::string binary(15u * 1024 * 1024, '\0');
  std::uint32_t x = 12345;
  for (auto& c : binary) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  static constexpr char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string encoded;
  encoded.reserve(binary.size() * 4 / 3 + binary.size() / 38);
  std::size_t line = 0;
  for (std::size_t i = 0; i + 2 < binary.size(); i += 3) {
    const auto a = static_cast<unsigned char>(binary[i]), b = static_cast<unsigned char>(binary[i + 1]),
               c = static_cast<unsigned char>(binary[i + 2]);
    encoded += b64[a >> 2];
    encoded += b64[((a & 3) << 4) | (b >> 4)];
    encoded += b64[((b & 15) << 2) | (c >> 6)];
    encoded += b64[c & 63];
    if ((line += 4) == 76) {
      encoded += "\r\n";
      line = 0;
    }
  }
  const std::string raw = crlf(
                              "From: a@example.com\n"
                              "To: b@example.lg.jp\n"
                              "Subject: big\n"
                              "Date: Sun, 22 Nov 2026 10:00:00 +0900\n"
                              "MIME-Version: 1.0\n"
                              "Content-Type: multipart/mixed; boundary=\"b1\"\n"
                              "\n"
                              "--b1\n"
                              "Content-Type: text/plain\n"
                              "\n"
                              "big one\n"
                              "--b1\n"
                              "Content-Type: application/octet-stream; name=\"blob.bin\"\n"
                              "Content-Transfer-Encoding: base64\n"
                              "\n") +
                          encoded + crlf("\n--b1--\n");
  test_store ts;
  sanitizer_pool pool(test_options(1));
  job_outcome r = pool.sanitize(raw, ts.store, {});
  CHECK_FALSE(r.store_error);
  REQUIRE(r.result.rep.result == sanitize::verdict::sanitized);
  REQUIRE(r.result.quarantine.size() == 1);
  CHECK(r.result.quarantine[0].bytes.size() == binary.size() / 3 * 3);
  CHECK(r.result.quarantine[0].bytes == binary.substr(0, binary.size() / 3 * 3));
  CHECK(read_file(*ts.store.item_dir(*r.result.rep.quarantine_id) / "original.eml") == raw);
}

TEST_CASE("waiting for a busy worker does not count against a message's timeout") {
  test_store ts;
  auto o = test_options(1);
  o.timeout = 1500ms;
  sanitizer_pool pool(std::move(o));
  REQUIRE(pool.sanitize(plain_message, ts.store, {}).result.rep.result == sanitize::verdict::clean);
  // Three callers, one worker, 700 ms each: the last one waits about 1.4 s for the worker.
  std::atomic<int> clean{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back([&] {
      job_outcome r = pool.sanitize_for_test(worker_test_hook::delay, 700, plain_message, ts.store, {});
      if (r.result.rep.result == sanitize::verdict::clean) ++clean;
    });
  }
  for (auto& c : callers) c.join();
  CHECK(clean == 3);
  CHECK(pool.stats().timeouts == 0);
}

TEST_CASE("a response that is malformed, oversized or inconsistent is held as worker:bad-response") {
  test_store ts;
  auto o = test_options(1);
  o.timeout = 10s;
  std::vector<std::string> log;
  o.log = [&](const std::string& line) { log.push_back(line); };
  sanitizer_pool pool(std::move(o));

  struct bad_case {
    worker_test_hook hook;
    const std::string* raw;
    const char* log_says;
  };
  const std::vector<bad_case> cases{
      {worker_test_hook::garbage, &plain_message, "frame header"},
      {worker_test_hook::oversized, &plain_message, "exceeds the limit"},
      {worker_test_hook::truncated, &plain_message, "without a complete response"},
      {worker_test_hook::tamper_part, &attachment_message, "do not hash"},
      {worker_test_hook::tamper_report, &plain_message, "does not parse"},
      {worker_test_hook::tamper_output, &plain_message, "output invariant"},
      {worker_test_hook::multipart_output, &plain_message, "multipart/mixed"},
      {worker_test_hook::wrong_quarantine_id, &attachment_message, "another quarantine ID"},
  };
  for (const auto& c : cases) {
    CAPTURE(static_cast<int>(c.hook));
    log.clear();
    const auto t0 = std::chrono::steady_clock::now();
    job_outcome r = pool.sanitize_for_test(c.hook, 0, *c.raw, ts.store, {});
    check_held(r, "worker:bad-response");
    check_original_quarantined(ts, r, *c.raw, "worker:bad-response");
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);  // detected, not timed out
    REQUIRE(log.size() == 1);
    CHECK_MESSAGE(log[0].find(c.log_says) != std::string::npos, log[0]);
    CHECK(count_zombie_children() == 0);
  }
  CHECK(pool.stats().bad_responses == cases.size());
  // Every failure retired its worker; the pool still works.
  CHECK(pool.sanitize(attachment_message, ts.store, {}).result.rep.result == sanitize::verdict::sanitized);
}

TEST_CASE("a response over max_response_size is refused before it is read") {
  test_store ts;
  auto o = test_options(1);
  o.max_response_size = 256;
  sanitizer_pool pool(std::move(o));
  job_outcome r = pool.sanitize(plain_message, ts.store, {});
  check_held(r, "worker:bad-response");
}

TEST_CASE("bytes after a response make the worker be replaced before the next message") {
  test_store ts;
  sanitizer_pool pool(test_options(1));
  job_outcome first = pool.sanitize_for_test(worker_test_hook::extra_output, 0, plain_message, ts.store, {});
  CHECK(first.result.rep.result == sanitize::verdict::clean);  // the response itself was whole
  const auto pids = pool.worker_pids();
  REQUIRE(pids.size() == 1);
  job_outcome second = pool.sanitize(plain_message, ts.store, {});
  CHECK(second.result.rep.result == sanitize::verdict::clean);  // not blamed on the next message
  CHECK(pool.stats().recycled == 1);
  CHECK(pool.stats().spawned == 2);
  CHECK(is_gone(pids[0]));
}

TEST_CASE("a memory bomb under RLIMIT_AS costs one worker, not the relay") {
  if (!address_space_limited) return;  // without the limit the bomb would eat the machine
  test_store ts;
  auto o = test_options(1);
  o.memory_limit = min_worker_memory;
  sanitizer_pool pool(std::move(o));
  REQUIRE(pool.sanitize(plain_message, ts.store, {}).result.rep.result == sanitize::verdict::clean);

  auto rss_kib = [] {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0L;
  };
  const long before = rss_kib();
  job_outcome r = pool.sanitize_for_test(worker_test_hook::memory_bomb, 0, plain_message, ts.store, {});
  check_held(r, "worker:crash");
  check_original_quarantined(ts, r, plain_message, "worker:crash");
  CHECK(rss_kib() - before < 16 * 1024);
  CHECK(pool.sanitize(attachment_message, ts.store, {}).result.rep.result == sanitize::verdict::sanitized);
  CHECK(count_zombie_children() == 0);
}

TEST_CASE("the worker cannot open a TCP connection to 127.0.0.1") {
  // A listener that accepts connections, to show that only the sandbox stands in the way.
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::uint32_t port = ntohs(addr.sin_port);
  {
    const int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(probe >= 0);
    sockaddr_in to = addr;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::connect(probe, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);  // the test process can
    ::close(probe);
  }

  test_store ts;
  sanitizer_pool pool(test_options(1));
  job_outcome r = pool.sanitize_for_test(worker_test_hook::try_connect, port, plain_message, ts.store, {});
  CHECK(r.result.rep.result == sanitize::verdict::clean);
  CHECK(warning_value(r, "test:connect") == "socket-errno=" + std::to_string(EACCES));
  ::close(listener);
}

TEST_CASE("the worker runs in the documented sandbox") {
  test_store ts;
  auto o = test_options(1);
  o.memory_limit = 300ull * 1024 * 1024;
  o.timeout = 10s;
  o.max_messages_per_worker = 4;
  sanitizer_pool pool(std::move(o));
  job_outcome r = pool.sanitize_for_test(worker_test_hook::report_sandbox, 0, plain_message, ts.store, {});
  REQUIRE(r.result.rep.result == sanitize::verdict::clean);
  const std::string as = std::to_string(300ull * 1024 * 1024);
  if (address_space_limited) CHECK(warning_value(r, "test:rlimit-as") == as + "/" + as);
  CHECK(warning_value(r, "test:rlimit-nofile") == "32/32");
  CHECK(warning_value(r, "test:rlimit-fsize") == "0/0");
  CHECK(warning_value(r, "test:rlimit-nproc") == "0/0");
  CHECK(warning_value(r, "test:rlimit-core") == "0/0");
  // CPU: soft re-armed per message to about used + timeout + 5 s; hard = (4 + 1) x 15 s.
  const std::string cpu = warning_value(r, "test:rlimit-cpu");
  CHECK(cpu.substr(cpu.find('/') + 1) == "75");
  const long soft = std::stol(cpu.substr(0, cpu.find('/')));
  CHECK(soft >= 16);
  CHECK(soft <= 20);
  CHECK(warning_value(r, "test:no-new-privs") == "1");
  CHECK(warning_value(r, "test:dumpable") == "0");
  CHECK(warning_value(r, "test:seccomp") == "2");
  CHECK(warning_value(r, "test:seccomp-filters") == "2");
  CHECK(warning_value(r, "test:fds") == "0,1,2");
  CHECK(warning_value(r, "test:env") == std::string("PATH=/usr/sbin:/usr/bin:/sbin:/bin") +
                                            (address_space_limited ? "" : ";ASAN_OPTIONS=detect_leaks=0"));
  CHECK(warning_value(r, "test:cwd") == "/");
  CHECK(warning_value(r, "test:open-write") == std::to_string(EACCES));
  CHECK(warning_value(r, "test:execve") == std::to_string(EPERM));
  CHECK(warning_value(r, "test:fork") == std::to_string(EPERM));
  if (::geteuid() == 0) CHECK(warning_value(r, "test:ifaces") == "lo");  // a private network namespace
  CHECK_FALSE(fs::exists("/tmp/mukai-worker-probe"));
}

TEST_CASE("mukai worker refuses to run outside the sandbox") {
  pid_t pid = -1;
  char arg0[] = "mukai";
  char arg1[] = "worker";
  char* argv[] = {arg0, arg1, nullptr};
  posix_spawn_file_actions_t actions;
  REQUIRE(::posix_spawn_file_actions_init(&actions) == 0);
  REQUIRE(::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) == 0);
  REQUIRE(::posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0) == 0);
  REQUIRE(::posix_spawn(&pid, MUKAI_BINARY, &actions, nullptr, argv, environ) == 0);
  ::posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 71);
}

TEST_CASE("workers are recycled after max_messages_per_worker and on restart_workers") {
  test_store ts;
  auto o = test_options(1);
  o.max_messages_per_worker = 2;
  sanitizer_pool pool(std::move(o));
  for (int i = 0; i < 5; ++i)
    CHECK(pool.sanitize(plain_message, ts.store, {}).result.rep.result == sanitize::verdict::clean);
  auto st = pool.stats();
  CHECK(st.spawned == 3);   // messages 1-2, 3-4, 5
  CHECK(st.recycled == 2);  // after messages 2 and 4
  CHECK(pool.worker_pids().size() == 1);

  const pid_t current = pool.worker_pids().at(0);
  pool.restart_workers();
  CHECK(pool.sanitize(plain_message, ts.store, {}).result.rep.result == sanitize::verdict::clean);
  CHECK(pool.worker_pids().at(0) != current);
  CHECK(is_gone(current));
  CHECK(count_zombie_children() == 0);
}

TEST_CASE("a worker that cannot start holds the message") {
  test_store ts;
  temp_dir dir;
  std::vector<std::string> log;

  SUBCASE("the binary is not executable") {
    const fs::path fake = dir.path() / "not-executable";
    { std::ofstream(fake) << "#!/bin/sh\n"; }
    fs::permissions(fake, fs::perms::owner_read | fs::perms::owner_write);
    auto o = test_options(1);
    o.binary = fake;
    o.log = [&](const std::string& line) { log.push_back(line); };
    sanitizer_pool pool(std::move(o));
    job_outcome r = pool.sanitize(plain_message, ts.store, {});
    check_held(r, "worker:crash");
    check_original_quarantined(ts, r, plain_message, "worker:crash");
    REQUIRE(log.size() == 1);
    CHECK_MESSAGE(log[0].find("cannot start the worker: execveat") != std::string::npos, log[0]);
  }
  SUBCASE("the configuration file is invalid: the worker's stderr reaches the log") {
    const fs::path conf = dir.path() / "bad.toml";
    { std::ofstream(conf) << "[policy]\nlanguage = \"klingon\"\n"; }
    auto o = test_options(1);
    o.config_file = conf;
    o.log = [&](const std::string& line) { log.push_back(line); };
    sanitizer_pool pool(std::move(o));
    job_outcome r = pool.sanitize(plain_message, ts.store, {});
    check_held(r, "worker:crash");
    REQUIRE(log.size() == 1);
    CHECK_MESSAGE(log[0].find("exited with status 2") != std::string::npos, log[0]);
    CHECK_MESSAGE(log[0].find("policy.language") != std::string::npos, log[0]);
  }
  CHECK(count_zombie_children() == 0);
}

TEST_CASE("the worker loads the configuration file it is given") {
  test_store ts;
  temp_dir dir;
  const fs::path conf = dir.path() / "en.toml";
  { std::ofstream(conf) << "[policy]\nlanguage = \"en\"\n"; }
  auto loaded = config::load_config_file(conf);
  REQUIRE(loaded.config.has_value());
  sanitizer_pool pool(worker_options_from_config(*loaded.config, MUKAI_BINARY, conf));
  job_outcome r = pool.sanitize(attachment_message, ts.store, {});
  REQUIRE(r.result.rep.result == sanitize::verdict::sanitized);
  const sanitize::result local =
      sanitize::sanitize_message(attachment_message, loaded.config->pol, {*r.result.rep.quarantine_id, ""});
  CHECK(r.result.output == local.output);
  const sanitize::result japanese = sanitize::sanitize_message(
      attachment_message, config::embedded_default().pol, {*r.result.rep.quarantine_id, ""});
  CHECK(r.result.output != japanese.output);
}

TEST_CASE("bad options are start-up errors") {
  auto o = test_options(1);
  o.memory_limit = min_worker_memory - 1;
  CHECK_THROWS_AS(sanitizer_pool{o}, std::invalid_argument);
  o = test_options(0);
  CHECK_THROWS_AS(sanitizer_pool{o}, std::invalid_argument);
  o = test_options(1);
  o.binary = "/nonexistent/mukai";
  CHECK_THROWS_AS(sanitizer_pool{o}, std::system_error);
  CHECK(current_executable() == fs::canonical("/proc/self/exe"));
}

TEST_CASE("concurrent callers share the pool; every result is right and nothing is left behind") {
  std::vector<pid_t> all_pids;
  {
    test_store ts;
    auto o = test_options(3);
    o.max_messages_per_worker = 5;
    sanitizer_pool pool(std::move(o));
    constexpr int threads = 8, per_thread = 6;
    std::atomic<int> wrong{0}, crashes{0}, max_live{0};
    std::mutex pid_mutex;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          const bool crash = (t * per_thread + i) % 5 == 0;
          const std::string& raw = i % 2 == 0 ? plain_message : attachment_message;
          job_outcome r = crash ? pool.sanitize_for_test(worker_test_hook::crash, 0, raw, ts.store, {})
                                : pool.sanitize(raw, ts.store, {});
          const auto expected = crash
                                    ? sanitize::verdict::held
                                    : (i % 2 == 0 ? sanitize::verdict::clean : sanitize::verdict::sanitized);
          if (r.result.rep.result != expected || r.store_error) ++wrong;
          if (crash) ++crashes;
          const auto pids = pool.worker_pids();
          int live = static_cast<int>(pids.size());
          int seen = max_live.load();
          while (live > seen && !max_live.compare_exchange_weak(seen, live)) {
          }
          std::lock_guard<std::mutex> g(pid_mutex);
          all_pids.insert(all_pids.end(), pids.begin(), pids.end());
        }
      });
    }
    for (auto& w : workers) w.join();
    CHECK(wrong == 0);
    CHECK(max_live <= 3);
    const auto st = pool.stats();
    CHECK(st.completed + st.crashes == threads * per_thread);
    CHECK(st.crashes == static_cast<std::uint64_t>(crashes.load()));
    CHECK(count_zombie_children() == 0);
  }
  // The pool's destructor killed and reaped the idle workers.
  std::sort(all_pids.begin(), all_pids.end());
  all_pids.erase(std::unique(all_pids.begin(), all_pids.end()), all_pids.end());
  for (pid_t p : all_pids) CHECK(is_gone(p));
  CHECK(count_zombie_children() == 0);
}
