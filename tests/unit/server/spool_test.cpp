// spool: queue IDs, the file format (binary bodies, hostile envelopes, every truncation and bit
// flip), streaming, size bounds, the order of durable operations in commit, a failure of every file
// operation in turn for commit, store_outbound and recover (no acknowledgement without a durable
// file; recovery always converges), recovery rules, the delivery lifecycle and concurrent commits.
#include "server/spool.hpp"

#include <doctest/doctest.h>

#include "tests/support/temp_dir.hpp"
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

using namespace mukai::server;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using clock_type = std::chrono::system_clock;

namespace {

using mukai::testing::scoped_umask;
using mukai::testing::temp_dir;



// Forwards to posix_file_ops and logs every call as "op <path relative to root>" (mutex-protected).
class recording_file_ops final : public file_ops {
 public:
  explicit recording_file_ops(fs::path root) : root_(std::move(root)) {}

  boost::system::result<writable_file, std::error_code> create_file(const fs::path& p) override {
    log("create " + rel(p));
    return inner_.create_file(p);
  }
  std::error_code write_all(writable_file f, std::string_view bytes) override {
    log("write");
    return inner_.write_all(f, bytes);
  }
  std::error_code sync_file(writable_file f) override {
    log("sync_file");
    return inner_.sync_file(f);
  }
  std::error_code close_file(writable_file f) override {
    log("close");
    return inner_.close_file(f);
  }
  std::error_code rename(const fs::path& from, const fs::path& to) override {
    log("rename " + rel(from) + " " + rel(to));
    return inner_.rename(from, to);
  }
  std::error_code rename_no_replace(const fs::path& from, const fs::path& to) override {
    log("rename_no_replace " + rel(from) + " " + rel(to));
    return inner_.rename_no_replace(from, to);
  }
  std::error_code sync_directory(const fs::path& dir) override {
    log("sync_dir " + rel(dir));
    return inner_.sync_directory(dir);
  }
  std::error_code unlink(const fs::path& p) override {
    log("unlink " + rel(p));
    return inner_.unlink(p);
  }
  std::error_code make_directory(const fs::path& p) override {
    log("mkdir " + rel(p));
    return inner_.make_directory(p);
  }
  std::error_code remove_directory(const fs::path& p) override {
    log("rmdir " + rel(p));
    return inner_.remove_directory(p);
  }

  std::vector<std::string> take() {
    const std::lock_guard lock(mutex_);
    return std::exchange(log_, {});
  }
  std::size_t count_prefix(std::string_view prefix) {
    const std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& l : log_) n += l.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
  }

 private:
  std::string rel(const fs::path& p) const { return p.lexically_relative(root_).string(); }
  void log(std::string line) {
    const std::lock_guard lock(mutex_);
    log_.push_back(std::move(line));
  }

  posix_file_ops inner_;
  fs::path root_;
  std::mutex mutex_;
  std::vector<std::string> log_;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_raw(const fs::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// Every byte value, NUL, bare CR, bare LF, 8-bit text, a fake trailer and a fake end of header.
std::string binary_body(std::size_t n) {
  std::string s = "Subject: =?ISO-2022-JP?B?GyRCJEgbKEI=?=\r\n\r\n";
  s += std::string("\0\r\r\n\n.\r\n", 8);
  s += "\ndata\n\nMUKAI-TRAILER 00000000000000000000 ";
  s += std::string(64, 'a');
  s += " END\n";
  s += "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xff\xfe";
  for (int c = 0; c < 256; ++c) s += static_cast<char>(c);
  while (s.size() < n) s += static_cast<char>((s.size() * 131 + s.size() / 7) & 0xff);
  s.resize(std::max(n, s.size()));
  return s;
}

spool_envelope simple_envelope() {
  spool_envelope e;
  e.mail_from = "sender@example.com";
  e.body = spool_body_type::eight_bit_mime;
  e.ret = spool_dsn_ret::headers;
  e.envid = "QQ314159";
  e.recipients = {{"a@example.lg.jp", "SUCCESS,FAILURE", "rfc822;a@example.lg.jp"},
                  {"b@example.lg.jp", "", ""},
                  {"c@example.lg.jp", "NEVER", ""}};
  e.client_address = "192.0.2.10";
  e.helo = "mx.example.com";
  e.esmtp = true;
  e.tls = true;
  e.received = std::chrono::floor<std::chrono::microseconds>(clock_type::now());
  return e;
}

spool_envelope hostile_envelope() {
  spool_envelope e;
  e.mail_from = std::string("evil\r\nrcpt x y z\ndata\n%41 ") + '\0' + "\xff@x";
  e.body = spool_body_type::seven_bit;
  e.smtputf8 = true;
  e.ret = spool_dsn_ret::full;
  e.envid = "a+2Bb%%20\r\n";
  e.recipients.push_back({std::string(200000, 'A') + "@huge.example", "SUCCESS", "rfc822;x+20y"});
  e.recipients.push_back({"sp ace@x", " \t ", "%"});
  e.recipients.push_back({"", "", ""});
  e.recipients.push_back({"\xe5\xb1\xb1\xe7\x94\xb0@\xe4\xbe\x8b.jp\n.\n", "DELAY", std::string(1, '\0')});
  e.client_address = "2001:db8::1\nid 0000000000000000";
  e.helo = "[\x01\x7f\x80] \r";
  e.received = clock_type::time_point(std::chrono::microseconds(-123456789));  // before 1970
  return e;
}

// A spool with its layout made through plain posix calls (not counted by an injector).
struct fixture {
  temp_dir dir;
  posix_file_ops posix;
  fs::path root = dir.path() / "spool";
  fixture() {
    spool s(root, posix);
    REQUIRE_FALSE(s.ensure_layout());
  }
  fs::path at(std::string_view state) const { return root / std::string(state); }
};

std::string commit_message(spool& s, const spool_envelope& e, std::string_view body) {
  auto w = s.begin(e);
  REQUIRE(w.has_value());
  REQUIRE_FALSE(w->append(body));
  auto id = w->commit();
  REQUIRE(id.has_value());
  return *id;
}

// begin + append in 7000-byte chunks + commit; the first error.
std::error_code try_commit(spool& s, const spool_envelope& e, std::string_view body,
                           std::string* id_out = nullptr) {
  auto w = s.begin(e);
  if (!w) return w.error();
  for (std::size_t off = 0; off < body.size(); off += 7000) {
    if (auto ec = w->append(body.substr(off, 7000))) return ec;
  }
  auto id = w->commit();
  if (!id) return id.error();
  if (id_out != nullptr) *id_out = *id;
  return {};
}

}  // namespace

// ---------------------------------------------------------------- queue IDs

TEST_CASE("queue IDs: 16 filename-safe characters, unique, time-sortable") {
  std::set<std::string> seen;
  for (int i = 0; i < 20000; ++i) {
    const std::string id = new_queue_id();
    REQUIRE(id.size() == 16);
    REQUIRE(validate_queue_id(id));
    REQUIRE(seen.insert(id).second);
  }
  const std::string first = new_queue_id();
  std::this_thread::sleep_for(3ms);
  const std::string second = new_queue_id();
  CHECK(first < second);
  const auto t = queue_id_time(second);
  REQUIRE(t.has_value());
  CHECK(clock_type::now() - *t < 5s);
  CHECK(clock_type::now() - *t >= 0s);
  CHECK_FALSE(queue_id_time("../../etc/passwd").has_value());
  CHECK_FALSE(queue_id_time("zzzzzzzzzzzzzzzz").has_value());  // beyond system_clock's range
}

TEST_CASE("validate_queue_id refuses everything that could leave the spool directory") {
  const std::string valid = new_queue_id();
  CHECK(validate_queue_id(valid));
  for (const std::string& bad :
       {std::string(), std::string(".."), std::string("."), std::string("../../../../etc/passwd"),
        std::string("0123456789abcde/"), std::string("/123456789abcdef"), std::string("..3456789abcdef0"),
        std::string("0123456789ABCDEF"), std::string("0123456789abcdei"), std::string("0123456789abcdeo"),
        std::string("0123456789abcde"), std::string("0123456789abcdef0"), std::string(" 123456789abcdef"),
        std::string("0123456789abcde\n"), std::string("0123456789abcde\0", 16), valid + "/x",
        valid.substr(0, 15) + "%", valid.substr(0, 15) + "\xc3"}) {
    CAPTURE(bad);
    CHECK_FALSE(validate_queue_id(bad));
  }

  fixture f;
  spool s(f.root, f.posix);
  // A file that a traversal would hit, relative to each state directory.
  write_raw(f.dir.path() / "victim", "keep me");
  const std::string traversal = "../../victim";
  CHECK_FALSE(s.path_of(spool_state::incoming, traversal).has_value());
  CHECK_FALSE(s.locate(traversal).has_value());
  CHECK(s.claim_incoming(traversal) == spool_errc::invalid_id);
  CHECK(s.remove_active(traversal) == spool_errc::invalid_id);
  CHECK(s.read(spool_state::incoming, traversal).error() == spool_errc::invalid_id);
  CHECK(s.read_envelope(spool_state::incoming, traversal).error() == spool_errc::invalid_id);
  CHECK(s.move_to_corrupt(spool_state::incoming, traversal).error() == spool_errc::invalid_id);
  CHECK(s.begin_outbound(traversal, simple_envelope()).error() == spool_errc::invalid_id);
  CHECK(s.store_outbound(traversal, "x", simple_envelope()) == spool_errc::invalid_id);
  CHECK(s.load_delivery_state(traversal).error() == spool_errc::invalid_id);
  CHECK(s.save_delivery_state(traversal, {}) == spool_errc::invalid_id);
  CHECK(s.defer(traversal, clock_type::now()) == spool_errc::invalid_id);
  CHECK(s.requeue_deferred(traversal) == spool_errc::invalid_id);
  CHECK(s.finish(traversal) == spool_errc::invalid_id);
  CHECK(read_file(f.dir.path() / "victim") == "keep me");
}

// ---------------------------------------------------------------- layout

TEST_CASE("ensure_layout creates 0700 directories, is idempotent and refuses non-directories") {
  temp_dir dir;
  scoped_umask um(0);
  posix_file_ops posix;
  {
    spool s(dir.path() / "spool/", posix);  // a trailing separator is fine
    REQUIRE_FALSE(s.ensure_layout());
    REQUIRE_FALSE(s.ensure_layout());
    CHECK(s.root() == dir.path() / "spool");
  }
  CHECK(mode_of(dir.path() / "spool") == 0700);
  for (const char* d : {"tmp", "incoming", "active", "outbound", "deferred", "corrupt", "delivery"}) {
    CAPTURE(d);
    CHECK(mode_of(dir.path() / "spool" / d) == 0700);
  }
  fs::remove(dir.path() / "spool/deferred");
  write_raw(dir.path() / "spool/deferred", "not a directory");
  spool s(dir.path() / "spool", posix);
  CHECK(s.ensure_layout() == spool_errc::not_a_directory);
}

// ---------------------------------------------------------------- format and round trip

TEST_CASE("round trip: binary body, hostile envelope, file format on disk") {
  fixture f;
  scoped_umask um(0);
  spool s(f.root, f.posix);
  const std::string body = binary_body(70000);
  for (const auto& env : {simple_envelope(), hostile_envelope()}) {
    const std::string id = commit_message(s, env, body);
    CHECK(validate_queue_id(id));
    const fs::path p = f.at("incoming") / id;
    CHECK(mode_of(p) == 0600);
    CHECK(names_in(f.at("tmp")).empty());

    auto m = s.read(spool_state::incoming, id);
    REQUIRE(m.has_value());
    CHECK(m->queue_id == id);
    CHECK(m->body == body);
    CHECK(m->envelope == env);
    auto e = s.read_envelope(spool_state::incoming, id);
    REQUIRE(e.has_value());
    CHECK(*e == env);

    // The documented layout: magic, id line, fixed header lines, one line per RCPT however hostile
    // the address, "data", the body verbatim, the 105-byte trailer.
    const std::string raw = read_file(p);
    CHECK(raw.rfind("MUKAI-SPOOL 1\nid " + id + "\nreceived ", 0) == 0);
    const std::size_t data_at = raw.find("\ndata\n");
    REQUIRE(data_at != std::string::npos);
    const std::string header = raw.substr(0, data_at + 1);
    CHECK(std::count(header.begin(), header.end(), '\n') == 12 + static_cast<long>(env.recipients.size()));
    CHECK(header.find('\r') == std::string::npos);
    CHECK(header.find('\0') == std::string::npos);
    CHECK(raw.substr(data_at + 6, body.size()) == body);
    const std::string trailer = raw.substr(raw.size() - 105);
    CHECK(trailer.rfind("\nMUKAI-TRAILER " + std::string(15, '0') + "70000 ", 0) == 0);
    CHECK(trailer.substr(trailer.size() - 5) == " END\n");
    CHECK(raw.size() == data_at + 6 + body.size() + 105);
  }
  CHECK(s.counts()->incoming == 2);
}

TEST_CASE("empty message and null sender") {
  fixture f;
  spool s(f.root, f.posix);
  spool_envelope e;
  e.recipients = {{"x@y", "", ""}};
  auto w = s.begin(e);
  REQUIRE(w.has_value());
  auto id = w->commit();
  REQUIRE(id.has_value());
  auto m = s.read(spool_state::incoming, *id);
  REQUIRE(m.has_value());
  CHECK(m->body.empty());
  CHECK(m->envelope.mail_from.empty());
  CHECK(m->envelope == e);
}

TEST_CASE("parse_spool_file: every truncation and every single-bit flip is detected") {
  fixture f;
  spool s(f.root, f.posix);
  spool_envelope e = simple_envelope();
  e.recipients.resize(1);
  const std::string id = commit_message(s, e, std::string("Hi\r\n\0\xff\r", 7));
  const std::string raw = read_file(f.at("incoming") / id);
  REQUIRE(parse_spool_file(raw).has_value());
  CHECK(parse_spool_file(raw)->body == std::string("Hi\r\n\0\xff\r", 7));

  for (std::size_t n = 0; n < raw.size(); ++n) {
    CAPTURE(n);
    REQUIRE_FALSE(parse_spool_file(std::string_view(raw).substr(0, n)).has_value());
  }
  CHECK_FALSE(parse_spool_file(raw + "x").has_value());
  CHECK_FALSE(parse_spool_file(raw + raw).has_value());
  std::size_t flips = 0;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = raw;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      CAPTURE(i);
      CAPTURE(bit);
      auto r = parse_spool_file(bad);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error() == spool_errc::corrupt);
      ++flips;
    }
  }
  MESSAGE(flips << " single-bit flips of a " << raw.size() << "-byte spool file, all detected");
}

TEST_CASE("parse_spool_file: other versions, non-spool bytes, the header size limit") {
  fixture f;
  spool s(f.root, f.posix);
  const std::string id = commit_message(s, simple_envelope(), "body");
  const std::string raw = read_file(f.at("incoming") / id);
  // Not a spool file at all, and another version.
  CHECK_FALSE(parse_spool_file(std::string(300, 'x')).has_value());
  std::string v2 = raw;
  v2.replace(0, 13, "MUKAI-SPOOL 2");
  CHECK_FALSE(parse_spool_file(v2).has_value());
  // A header larger than the limit.
  CHECK(parse_spool_file(raw, 32).error() == spool_errc::envelope_too_large);
}

// ---------------------------------------------------------------- streaming and bounds

TEST_CASE("streaming: one-byte chunks and chunks around the buffer size give the same file") {
  fixture f;
  spool s(f.root, f.posix);
  const std::string body = binary_body(300000);
  const spool_envelope e = simple_envelope();

  auto w = s.begin(e);
  REQUIRE(w.has_value());
  for (std::size_t i = 0; i < 100000; ++i) REQUIRE_FALSE(w->append(body.substr(i, 1)));
  std::size_t off = 100000;
  for (const std::size_t n : {std::size_t{0}, std::size_t{32767}, std::size_t{32768}, std::size_t{32769},
                              std::size_t{1}, std::size_t{100000}, std::size_t{3}}) {
    REQUIRE_FALSE(w->append(body.substr(off, n)));
    off += n;
  }
  REQUIRE_FALSE(w->append(body.substr(off)));
  CHECK(w->size() == body.size());
  auto id = w->commit();
  REQUIRE(id.has_value());
  auto m = s.read(spool_state::incoming, *id);
  REQUIRE(m.has_value());
  CHECK(m->body == body);
  // A committed writer is closed.
  CHECK(w->append("more") == spool_errc::writer_closed);
  CHECK(w->commit().error() == spool_errc::writer_closed);
}

TEST_CASE("size bounds: writing beyond max_message_size fails and leaves nothing; read is bounded") {
  fixture f;
  spool_options small;
  small.max_message_size = 1000;
  small.max_outbound_size = 1000;
  spool s(f.root, f.posix, small);

  auto w = s.begin(simple_envelope());
  REQUIRE(w.has_value());
  REQUIRE_FALSE(w->append(std::string(1000, 'x')));  // exactly the limit is fine
  CHECK(w->append("y") == spool_errc::message_too_large);
  CHECK(names_in(f.at("tmp")).empty());  // the partial file is gone at once
  CHECK(w->append("z") == spool_errc::message_too_large);
  CHECK(w->commit().error() == spool_errc::message_too_large);
  CHECK(names_in(f.at("incoming")).empty());

  // A message written under a larger limit is refused by a spool with a smaller one.
  spool big(f.root, f.posix);
  const std::string id = commit_message(big, simple_envelope(), std::string(5000, 'b'));
  CHECK(s.read(spool_state::incoming, id).error() == spool_errc::message_too_large);
  CHECK(big.read(spool_state::incoming, id).has_value());
  CHECK(s.store_outbound(id, std::string(1001, 'o'), simple_envelope()) == spool_errc::message_too_large);
  CHECK(names_in(f.at("outbound")).empty());

  // An envelope beyond max_envelope_size is refused before any file exists.
  spool_options tiny;
  tiny.max_envelope_size = 4096;
  spool t(f.root, f.posix, tiny);
  spool_envelope huge = simple_envelope();
  huge.recipients.push_back({std::string(5000, 'r'), "", ""});
  CHECK(t.begin(huge).error() == spool_errc::envelope_too_large);
  CHECK(names_in(f.at("tmp")).empty());
}

TEST_CASE("abort and destruction delete the temporary file") {
  fixture f;
  spool s(f.root, f.posix);
  {
    auto w = s.begin(simple_envelope());
    REQUIRE(w.has_value());
    REQUIRE_FALSE(w->append(std::string(100000, 'x')));
    CHECK(names_in(f.at("tmp")).size() == 1);
    w->abort();
    CHECK(names_in(f.at("tmp")).empty());
    CHECK(w->append("x") == spool_errc::writer_closed);
    w->abort();  // twice is harmless
  }
  {
    auto w = s.begin(simple_envelope());
    REQUIRE(w.has_value());
    REQUIRE_FALSE(w->append("partial"));
    spool_writer moved = std::move(*w);
    CHECK(names_in(f.at("tmp")).size() == 1);
  }  // both destroyed: the moved-to writer owns the file
  CHECK(names_in(f.at("tmp")).empty());
  CHECK(names_in(f.at("incoming")).empty());
}

// ---------------------------------------------------------------- durability protocol

TEST_CASE("commit: fsync file before the rename, fsync incoming/ after it, and nothing after that") {
  fixture f;
  recording_file_ops rec(f.root);
  spool s(f.root, rec);
  std::string id;
  REQUIRE_FALSE(try_commit(s, simple_envelope(), binary_body(100000), &id));
  const auto log = rec.take();
  REQUIRE(log.size() >= 6);
  CHECK(log.front() == "create tmp/" + id);
  for (std::size_t i = 1; i + 4 < log.size(); ++i) CHECK(log[i] == "write");
  CHECK(log[log.size() - 4] == "sync_file");
  CHECK(log[log.size() - 3] == "close");
  CHECK(log[log.size() - 2] == "rename_no_replace tmp/" + id + " incoming/" + id);
  CHECK(log[log.size() - 1] == "sync_dir incoming");
  // Buffered: 100 KB in 7000-byte chunks is a handful of writes, not 15.
  CHECK(log.size() - 5 <= 5);
}

TEST_CASE("commit under a failure of each file operation: no acknowledgement without a durable file") {
  const std::string body = binary_body(100000);
  const spool_envelope env = simple_envelope();

  std::size_t total = 0;
  {
    fixture f;
    fault_injecting_file_ops ops(f.posix);
    spool s(f.root, ops);
    REQUIRE_FALSE(try_commit(s, env, body));
    total = ops.calls();
  }
  REQUIRE(total >= 6);

  for (const auto m : {fault_injecting_file_ops::mode::single, fault_injecting_file_ops::mode::from_then}) {
    for (std::size_t i = 0; i < total; ++i) {
      CAPTURE(i);
      CAPTURE(static_cast<int>(m));
      fixture f;
      fault_injecting_file_ops ops(f.posix);
      ops.fail_at(i, EIO, m);
      {
        spool s(f.root, ops);
        const std::error_code ec = try_commit(s, env, body);
        // Every operation matters: each failure surfaces as an error, i.e. no 250.
        CHECK(ec == std::errc::io_error);
        CHECK(ops.failures() >= 1);
      }
      const auto incoming = names_in(f.at("incoming"));
      if (m == fault_injecting_file_ops::mode::from_then && i == total - 1) {
        // The directory fsync failed after the rename and the process "died": the complete file may
        // stay unacknowledged (a duplicate if the client resends, never a loss).
        CHECK(incoming.size() <= 1);
      } else {
        CHECK(incoming.empty());
      }
      if (m == fault_injecting_file_ops::mode::single) CHECK(names_in(f.at("tmp")).empty());

      // Restart: recovery leaves a consistent spool, and it takes mail again.
      spool s(f.root, f.posix);
      auto report = s.recover();
      REQUIRE(report.has_value());
      CHECK(report->corrupt == 0);
      CHECK(names_in(f.at("tmp")).empty());
      CHECK(names_in(f.at("corrupt")).empty());
      for (const auto& id : names_in(f.at("incoming"))) {
        auto msg = s.read(spool_state::incoming, id);
        REQUIRE(msg.has_value());
        CHECK(msg->body == body);
      }
      CHECK_FALSE(try_commit(s, env, "after recovery"));
    }
  }
  MESSAGE("commit makes " << total << " file operations; each failed in both modes");
}

TEST_CASE("store_outbound under a failure of each file operation: never lost, one copy after recovery") {
  const std::string raw = binary_body(50000);
  const std::string sanitized = "Subject: clean\r\n\r\n" + std::string(60000, 's');
  const spool_envelope env = simple_envelope();

  auto prepare = [&](fixture& f) {
    spool s(f.root, f.posix);
    const std::string id = commit_message(s, env, raw);
    REQUIRE_FALSE(s.claim_incoming(id));
    return id;
  };

  std::size_t total = 0;
  {
    fixture f;
    const std::string id = prepare(f);
    fault_injecting_file_ops ops(f.posix);
    spool s(f.root, ops);
    REQUIRE_FALSE(s.store_outbound(id, sanitized, env));
    total = ops.calls();
    CHECK(names_in(f.at("active")).empty());
    CHECK(names_in(f.at("outbound")) == std::set<std::string>{id});
  }
  REQUIRE(total >= 8);  // create, writes, fsync, close, rename, sync outbound, unlink active, sync active

  for (const auto m : {fault_injecting_file_ops::mode::single, fault_injecting_file_ops::mode::from_then}) {
    for (std::size_t i = 0; i < total; ++i) {
      CAPTURE(i);
      CAPTURE(static_cast<int>(m));
      fixture f;
      const std::string id = prepare(f);
      fault_injecting_file_ops ops(f.posix);
      ops.fail_at(i, EIO, m);
      {
        spool s(f.root, ops);
        CHECK(s.store_outbound(id, sanitized, env) == std::errc::io_error);
      }
      // Never neither copy, and a visible outbound copy is always complete.
      const bool raw_there = fs::exists(f.at("active") / id);
      const bool out_there = fs::exists(f.at("outbound") / id);
      CHECK((raw_there || out_there));
      spool s(f.root, f.posix);
      if (out_there) CHECK(s.read(spool_state::outbound, id)->body == sanitized);

      auto report = s.recover();
      REQUIRE(report.has_value());
      CHECK(report->corrupt == 0);
      CHECK(names_in(f.at("tmp")).empty());
      const bool in_incoming = fs::exists(f.at("incoming") / id);
      const bool in_outbound = fs::exists(f.at("outbound") / id);
      CHECK(in_incoming != in_outbound);  // re-sanitize or deliver, never both
      CHECK(in_outbound == out_there);
      // A raw copy that survived next to the sanitized one stays as its backup until finish().
      CHECK(fs::exists(f.at("active") / id) == (out_there && raw_there));
      if (in_incoming) {
        CHECK(s.read(spool_state::incoming, id)->body == raw);
        // The retry after recovery completes the transition.
        REQUIRE_FALSE(s.claim_incoming(id));
        REQUIRE_FALSE(s.store_outbound(id, sanitized, env));
      }
      CHECK(s.read(spool_state::outbound, id)->body == sanitized);
      CHECK(s.counts()->active == (out_there && raw_there ? 1u : 0u));
    }
  }
}

TEST_CASE("store_outbound again for the same ID keeps the first copy (it may carry delivery results)") {
  fixture f;
  spool s(f.root, f.posix);
  const spool_envelope env = simple_envelope();
  const std::string id = commit_message(s, env, "raw");
  REQUIRE_FALSE(s.claim_incoming(id));
  REQUIRE_FALSE(s.store_outbound(id, "first", env));
  CHECK_FALSE(fs::exists(f.at("active") / id));
  CHECK_FALSE(s.store_outbound(id, "second", env));
  CHECK(s.read(spool_state::outbound, id)->body == "first");
  CHECK(names_in(f.at("tmp")).empty());
}

// ---------------------------------------------------------------- recovery

TEST_CASE("recover: purge tmp/, active/ back to incoming/, bad files to corrupt/, unknown names kept") {
  fixture f;
  spool s(f.root, f.posix);
  const spool_envelope env = simple_envelope();
  const std::string body = binary_body(20000);

  const std::string good = commit_message(s, env, body);
  const std::string claimed = commit_message(s, env, body);
  REQUIRE_FALSE(s.claim_incoming(claimed));
  const std::string truncated = commit_message(s, env, body);
  const std::string flipped_body = commit_message(s, env, body);
  const std::string flipped_header = commit_message(s, env, body);
  const std::string extra = commit_message(s, env, body);
  const std::string renamed = commit_message(s, env, body);
  // Crash after outbound/ID became durable, before active/ID was removed; and then the sanitized
  // copy turns out bad: it is discarded (no alert: the raw copy is there) and sanitized again.
  const std::string bad_out = commit_message(s, env, body);
  REQUIRE_FALSE(s.claim_incoming(bad_out));
  const std::string bad_out_raw = read_file(f.at("active") / bad_out);
  REQUIRE_FALSE(s.store_outbound(bad_out, "sanitized", env));
  write_raw(f.at("active") / bad_out, bad_out_raw);

  // A crash mid-write that was renamed anyway, bit flips, trailing garbage, a file under a name that
  // is not its ID, a sanitized copy with a bad trailer.
  const auto in = [&](const std::string& id) { return f.at("incoming") / id; };
  const std::string original_truncated = read_file(in(truncated)).substr(0, 15000);
  write_raw(in(truncated), original_truncated);
  std::string fb = read_file(in(flipped_body));
  fb[fb.size() / 2] = static_cast<char>(fb[fb.size() / 2] ^ 0x01);
  write_raw(in(flipped_body), fb);
  std::string fh = read_file(in(flipped_header));
  fh[fh.find("sender@") + 1] = 'E';
  write_raw(in(flipped_header), fh);
  write_raw(in(extra), read_file(in(extra)) + "\n");
  const std::string other = new_queue_id();
  fs::rename(in(renamed), in(other));
  std::string ob = read_file(f.at("outbound") / bad_out);
  write_raw(f.at("outbound") / bad_out, ob.substr(0, ob.size() - 1));

  write_raw(f.at("tmp") / new_queue_id(), "half a message");
  write_raw(f.at("tmp") / (new_queue_id() + ".out.0011aabb"), "half a sanitized message");
  write_raw(f.at("incoming") / "README", "an administrator's note");
  fs::create_symlink("/etc/passwd", f.at("incoming") / new_queue_id());

  auto report = s.recover();
  REQUIRE(report.has_value());
  CHECK(report->purged_tmp == 2);
  CHECK(report->requeued_active == 2);  // `claimed`, and `bad_out` whose sanitized copy is bad
  CHECK(report->corrupt == 6);          // truncated, 2 flips, extra, renamed, symlink
  CHECK(report->discarded_unsynced == 1);  // bad outbound
  CHECK(report->unknown_entries == 1);
  CHECK(report->incoming == 3);
  CHECK(report->outbound == 0);
  CHECK(report->corrupt_names.size() == 6);

  CHECK(names_in(f.at("tmp")).empty());
  CHECK(names_in(f.at("active")).empty());
  CHECK(names_in(f.at("incoming")) == std::set<std::string>{good, claimed, bad_out, "README"});
  for (const auto& id : {good, claimed, bad_out}) CHECK(s.read(spool_state::incoming, id)->body == body);
  const auto corrupt = names_in(f.at("corrupt"));
  CHECK(corrupt.count(truncated + ".incoming") == 1);
  CHECK(corrupt.count(flipped_body + ".incoming") == 1);
  CHECK(corrupt.count(other + ".incoming") == 1);
  CHECK(corrupt.count(bad_out + ".outbound") == 0);
  // Kept byte for byte for the administrator.
  CHECK(read_file(f.at("corrupt") / (truncated + ".incoming")) == original_truncated);
  CHECK(*s.list(spool_state::corrupt) == std::vector<std::string>(corrupt.begin(), corrupt.end()));
  CHECK(s.counts()->corrupt == 6);

  // Idempotent: a second run changes nothing.
  auto again = s.recover();
  REQUIRE(again.has_value());
  CHECK(again->corrupt == 0);
  CHECK(again->requeued_active == 0);
  CHECK(again->purged_tmp == 0);
  CHECK(again->incoming == 3);
  CHECK(names_in(f.at("corrupt")) == corrupt);
}

TEST_CASE("recover: a raw copy next to a verified sanitized copy is kept as its backup, not sanitized again") {
  fixture f;
  spool s(f.root, f.posix);
  const spool_envelope env = simple_envelope();
  const std::string a = commit_message(s, env, "raw a");
  const std::string b = commit_message(s, env, "raw b");
  const std::string c = commit_message(s, env, "raw c");
  REQUIRE_FALSE(s.claim_incoming(a));
  REQUIRE_FALSE(s.claim_incoming(b));
  REQUIRE_FALSE(s.claim_incoming(c));
  // Crash after a durable outbound/ID, before active/ID was removed: simulate by copying back.
  const std::string raw_a = read_file(f.at("active") / a);
  REQUIRE_FALSE(s.store_outbound(a, "clean a", env));
  write_raw(f.at("active") / a, raw_a);
  // The same with the raw copy in incoming/ (a claim undone by the crash).
  const std::string raw_b = read_file(f.at("active") / b);
  REQUIRE_FALSE(s.store_outbound(b, "clean b", env));
  write_raw(f.at("incoming") / b, raw_b);
  // The relay's way: the raw copy stays in active/ by design.
  REQUIRE_FALSE(s.store_outbound(c, "clean c", env, outbound_durability::raw_copy_kept));

  auto report = s.recover();
  REQUIRE(report.has_value());
  CHECK(report->kept_raw == 3);
  CHECK(report->superseded == 0);
  CHECK(report->requeued_active == 0);
  CHECK(report->incoming == 0);
  CHECK(report->outbound == 3);
  CHECK(names_in(f.at("active")) == std::set<std::string>{a, b, c});
  CHECK(names_in(f.at("incoming")).empty());
  CHECK(s.read(spool_state::active, b)->body == "raw b");
  // Recovery is idempotent, and finish() removes both copies.
  REQUIRE(s.recover().has_value());
  CHECK(names_in(f.at("active")).size() == 3);
  for (const auto& id : {a, b, c}) {
    auto st = s.load_delivery_state(id);
    REQUIRE(st.has_value());
    for (auto& r : st->recipients) r.status = recipient_status::delivered;
    REQUIRE_FALSE(s.finish(id, *st));
  }
  CHECK(names_in(f.at("active")).empty());
  CHECK(names_in(f.at("outbound")).empty());
}

TEST_CASE("raw_copy_kept: no fsync on store; finish removes the sanitized copy, then the raw one, durably") {
  fixture f;
  const spool_envelope env = simple_envelope();
  std::string id;
  {
    spool s(f.root, f.posix);
    id = commit_message(s, env, binary_body(100000));
    REQUIRE_FALSE(s.claim_incoming(id));
  }
  recording_file_ops rec(f.root);
  spool s(f.root, rec);
  REQUIRE_FALSE(s.store_outbound(id, binary_body(120000), env, outbound_durability::raw_copy_kept));
  auto log = rec.take();
  REQUIRE(log.size() >= 3);
  CHECK(log.front().rfind("create tmp/" + id + ".out.", 0) == 0);
  CHECK(std::none_of(log.begin(), log.end(), [](const std::string& l) { return l.rfind("sync", 0) == 0; }));
  CHECK(log.back().rfind("rename_no_replace tmp/" + id + ".out.", 0) == 0);
  CHECK(log.back().ends_with(" outbound/" + id));
  CHECK(fs::exists(f.at("active") / id));
  CHECK(s.read(spool_state::outbound, id)->body == binary_body(120000));
  CHECK(s.locate(id) == spool_state::outbound);

  auto st = s.load_delivery_state(id);
  REQUIRE(st.has_value());
  for (auto& r : st->recipients) r.status = recipient_status::delivered;
  rec.take();
  REQUIRE_FALSE(s.finish(id, *st));
  log = rec.take();
  const std::vector<std::string> expected = {"unlink outbound/" + id, "sync_dir outbound", "unlink active/" + id,
                                             "sync_dir active", "unlink delivery/" + id};
  CHECK(log == expected);
  CHECK_FALSE(s.locate(id).has_value());
}

TEST_CASE("finish_unspooled: a message delivered from memory leaves nothing; refused beside a sanitized copy") {
  fixture f;
  const spool_envelope env = simple_envelope();
  std::string id, other;
  {
    spool s(f.root, f.posix);
    id = commit_message(s, env, "raw");
    other = commit_message(s, env, "raw other");
    REQUIRE_FALSE(s.claim_incoming(id));
    REQUIRE_FALSE(s.claim_incoming(other));
    REQUIRE_FALSE(s.store_outbound(other, "clean", env, outbound_durability::raw_copy_kept));
  }
  recording_file_ops rec(f.root);
  spool s(f.root, rec);
  // No outbound copy: the state comes from the caller's envelope, all pending.
  auto st = s.load_delivery_state(id, env);
  REQUIRE(st.has_value());
  CHECK(st->recipients.size() == env.recipients.size());
  CHECK_FALSE(st->done());
  rec.take();
  REQUIRE_FALSE(s.finish_unspooled(id));
  const std::vector<std::string> expected = {"unlink active/" + id, "sync_dir active", "unlink delivery/" + id};
  CHECK(rec.take() == expected);
  CHECK_FALSE(s.locate(id).has_value());
  // With a sanitized copy in the spool only finish() may remove the raw one.
  CHECK(s.finish_unspooled(other) == std::errc::file_exists);
  CHECK(fs::exists(f.at("active") / other));
  CHECK(s.finish_unspooled("../x") == spool_errc::invalid_id);
}

TEST_CASE("recover: a torn raw_copy_kept copy is discarded (no alert) and the raw copy sanitized again") {
  fixture f;
  spool s(f.root, f.posix);
  const spool_envelope env = simple_envelope();
  const std::string raw = binary_body(30000);
  const std::string sanitized = "Subject: clean\r\n\r\n" + std::string(40000, 's');
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(commit_message(s, env, raw));
    REQUIRE_FALSE(s.claim_incoming(ids.back()));
    REQUIRE_FALSE(s.store_outbound(ids.back(), sanitized, env, outbound_durability::raw_copy_kept));
  }
  // What a power failure can leave of unsynced data: a cut file, an empty one, zero-filled blocks;
  // and one torn copy that had been deferred with a saved state (a recipient already delivered).
  const std::string whole = read_file(f.at("outbound") / ids[0]);
  write_raw(f.at("outbound") / ids[0], whole.substr(0, whole.size() / 2));
  write_raw(f.at("outbound") / ids[1], "");
  write_raw(f.at("outbound") / ids[2], std::string(whole.size(), '\0'));
  auto st = s.load_delivery_state(ids[3]);
  REQUIRE(st.has_value());
  st->recipients[0].status = recipient_status::delivered;
  REQUIRE_FALSE(s.save_delivery_state(ids[3], *st));
  REQUIRE_FALSE(s.defer(ids[3], clock_type::now()));
  write_raw(f.at("deferred") / ids[3], whole.substr(0, 100));

  auto report = s.recover();
  REQUIRE(report.has_value());
  CHECK(report->discarded_unsynced == 4);
  CHECK(report->corrupt == 0);
  CHECK(report->requeued_active == 4);
  CHECK(names_in(f.at("outbound")).empty());
  CHECK(names_in(f.at("deferred")).empty());
  CHECK(names_in(f.at("corrupt")).empty());
  CHECK(names_in(f.at("incoming")) == std::set<std::string>(ids.begin(), ids.end()));
  for (const auto& id : ids) CHECK(s.read(spool_state::incoming, id)->body == raw);
  // The recorded delivery survives, so that recipient is not sent the message twice.
  REQUIRE_FALSE(s.claim_incoming(ids[3]));
  REQUIRE_FALSE(s.store_outbound(ids[3], sanitized, env, outbound_durability::raw_copy_kept));
  auto again = s.load_delivery_state(ids[3]);
  REQUIRE(again.has_value());
  CHECK(again->recipients[0].status == recipient_status::delivered);
  CHECK(again->recipients[1].status == recipient_status::pending);
}

TEST_CASE("raw_copy_kept under a failure of each file operation: the raw copy is always there") {
  const std::string raw = binary_body(50000);
  const std::string sanitized = "Subject: clean\r\n\r\n" + std::string(60000, 's');
  const spool_envelope env = simple_envelope();
  for (std::size_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    fixture f;
    std::string id;
    {
      spool s(f.root, f.posix);
      id = commit_message(s, env, raw);
      REQUIRE_FALSE(s.claim_incoming(id));
    }
    fault_injecting_file_ops ops(f.posix);
    ops.fail_at(i, EIO, fault_injecting_file_ops::mode::single);
    {
      spool s(f.root, ops);
      const auto ec = s.store_outbound(id, sanitized, env, outbound_durability::raw_copy_kept);
      CHECK((!ec || ec == std::errc::io_error));
    }
    CHECK(fs::exists(f.at("active") / id));
    spool s(f.root, f.posix);
    auto report = s.recover();
    REQUIRE(report.has_value());
    CHECK(report->corrupt == 0);
    CHECK(names_in(f.at("tmp")).empty());
    if (fs::exists(f.at("outbound") / id)) {
      CHECK(s.read(spool_state::outbound, id)->body == sanitized);
      CHECK(fs::exists(f.at("active") / id));
    } else {
      CHECK(s.read(spool_state::incoming, id)->body == raw);
    }
  }
}

TEST_CASE("recover: a claim replayed half (same ID in incoming/ and active/) keeps one copy") {
  fixture f;
  spool s(f.root, f.posix);
  const std::string id = commit_message(s, simple_envelope(), "body");
  fs::copy_file(f.at("incoming") / id, f.at("active") / id);
  auto report = s.recover();
  REQUIRE(report.has_value());
  CHECK(report->superseded == 1);
  CHECK(names_in(f.at("incoming")) == std::set<std::string>{id});
  CHECK(names_in(f.at("active")).empty());

  // If the incoming copy is the bad one, the active copy replaces it.
  REQUIRE_FALSE(s.claim_incoming(id));
  fs::copy_file(f.at("active") / id, f.at("incoming") / id);
  write_raw(f.at("incoming") / id, "garbage");
  report = s.recover();
  REQUIRE(report.has_value());
  CHECK(report->corrupt == 1);
  CHECK(report->requeued_active == 1);
  CHECK(s.read(spool_state::incoming, id)->body == "body");
}

TEST_CASE("recover under a failure of each file operation converges to the same spool") {
  // A messy spool: leftovers in tmp/, a claimed message, a corrupt one, a raw backup copy, an
  // orphan delivery state and a leftover state temporary.
  auto build = [](fixture& f) {
    spool s(f.root, f.posix);
    const spool_envelope env = simple_envelope();
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i) ids.push_back(commit_message(s, env, "message " + std::to_string(i)));
    write_raw(f.at("tmp") / ids[0], "partial");
    REQUIRE_FALSE(s.claim_incoming(ids[1]));
    write_raw(f.at("incoming") / ids[2], "corrupt");
    REQUIRE_FALSE(s.claim_incoming(ids[3]));
    const std::string raw = read_file(f.at("active") / ids[3]);
    REQUIRE_FALSE(s.store_outbound(ids[3], "clean", env));
    write_raw(f.at("active") / ids[3], raw);
    write_raw(f.at("delivery") / new_queue_id(), "orphan");
    write_raw(f.at("delivery") / ("." + ids[3] + ".tmp-0123"), "leftover");
  };
  auto snapshot = [](fixture& f) {
    std::map<std::string, std::set<std::string>> out;
    for (const char* d : {"tmp", "incoming", "active", "outbound", "deferred", "corrupt", "delivery"}) {
      out[d] = names_in(f.at(d));
    }
    return out;
  };

  std::size_t total = 0;
  std::map<std::string, std::size_t> expected_sizes;
  {
    fixture f;
    build(f);
    fault_injecting_file_ops ops(f.posix);
    spool s(f.root, ops);
    REQUIRE(s.recover().has_value());
    total = ops.calls();
    for (const auto& [d, names] : snapshot(f)) expected_sizes[d] = names.size();
  }
  CHECK(expected_sizes["tmp"] == 0);
  CHECK(expected_sizes["incoming"] == 3);
  CHECK(expected_sizes["active"] == 1);  // the raw backup of ids[3]
  CHECK(expected_sizes["outbound"] == 1);
  CHECK(expected_sizes["corrupt"] == 1);
  CHECK(expected_sizes["delivery"] == 0);

  for (const auto m : {fault_injecting_file_ops::mode::single, fault_injecting_file_ops::mode::from_then}) {
    for (std::size_t i = 0; i < total; ++i) {
      CAPTURE(i);
      CAPTURE(static_cast<int>(m));
      fixture f;
      build(f);
      fault_injecting_file_ops ops(f.posix);
      ops.fail_at(i, EIO, m);
      {
        spool s(f.root, ops);
        CHECK_FALSE(s.recover().has_value());
      }
      spool s(f.root, f.posix);
      REQUIRE(s.recover().has_value());
      std::map<std::string, std::size_t> sizes;
      for (const auto& [d, names] : snapshot(f)) sizes[d] = names.size();
      CHECK(sizes == expected_sizes);
    }
  }
}

// ---------------------------------------------------------------- delivery lifecycle

TEST_CASE("lifecycle: claim, store_outbound, delivery state, defer, due, requeue, finish") {
  fixture f;
  spool s(f.root, f.posix);
  const spool_envelope env = simple_envelope();
  const std::string id = commit_message(s, env, binary_body(5000));
  CHECK(s.locate(id) == spool_state::incoming);
  CHECK(*s.list(spool_state::incoming) == std::vector<std::string>{id});

  REQUIRE_FALSE(s.claim_incoming(id));
  CHECK(s.claim_incoming(id) == std::errc::no_such_file_or_directory);  // one owner
  CHECK(s.locate(id) == spool_state::active);
  auto raw = s.read(spool_state::active, id);
  REQUIRE(raw.has_value());
  // Not yet sanitized: there is no delivery state to speak of.
  CHECK(s.load_delivery_state(id).error() == std::errc::no_such_file_or_directory);

  REQUIRE_FALSE(s.store_outbound(id, "sanitized\r\n", raw->envelope));
  CHECK(s.locate(id) == spool_state::outbound);
  CHECK(s.counts()->active == 0);
  CHECK(s.counts()->outbound == 1);

  auto st = s.load_delivery_state(id);
  REQUIRE(st.has_value());
  CHECK(st->recipients.size() == 3);
  CHECK_FALSE(st->done());
  CHECK(st->attempts == 0);

  // First attempt: a delivered, b temporarily failed (with a hostile, long reply), c bounced.
  st->attempts = 1;
  st->recipients[0] = {recipient_status::delivered, 1, "250 2.0.0 Ok"};
  std::string reply = "451 4.3.0 try\r\nlater %";
  reply += '\0';
  reply += std::string(1000, 'x');
  st->recipients[1] = {recipient_status::pending, 1, reply};
  st->recipients[2] = {recipient_status::failed, 1, "550 5.1.1 no such user"};
  REQUIRE_FALSE(s.save_delivery_state(id, *st));
  auto loaded = s.load_delivery_state(id);
  REQUIRE(loaded.has_value());
  CHECK(loaded->recipients[0] == st->recipients[0]);
  CHECK(loaded->recipients[1].last_reply == st->recipients[1].last_reply.substr(0, 512));
  CHECK(loaded->recipients[2] == st->recipients[2]);

  delivery_state wrong = *st;
  wrong.recipients.pop_back();
  CHECK(s.save_delivery_state(id, wrong) == std::errc::invalid_argument);

  const auto now = clock_type::now();
  REQUIRE_FALSE(s.defer(id, now + 300s));
  CHECK(s.locate(id) == spool_state::deferred);
  CHECK(s.due_deferred(now)->empty());
  CHECK(*s.due_deferred(now + 301s) == std::vector<std::string>{id});
  REQUIRE_FALSE(s.defer(id, now + 600s));  // again while deferred: only the time changes
  CHECK(s.due_deferred(now + 301s)->empty());
  CHECK(s.load_delivery_state(id)->recipients[0].status == recipient_status::delivered);
  CHECK(s.finish(id) == spool_errc::recipients_pending);

  REQUIRE_FALSE(s.requeue_deferred(id));
  CHECK(s.locate(id) == spool_state::outbound);
  auto out = s.read(spool_state::outbound, id);
  REQUIRE(out.has_value());
  CHECK(out->body == "sanitized\r\n");
  CHECK(out->envelope == env);

  auto second = *s.load_delivery_state(id);
  second.attempts = 2;
  second.recipients[1] = {recipient_status::delivered, 2, "250 2.0.0 Ok"};
  CHECK(second.done());
  REQUIRE_FALSE(s.save_delivery_state(id, second));
  REQUIRE_FALSE(s.finish(id));
  CHECK_FALSE(s.locate(id).has_value());
  CHECK(names_in(f.at("delivery")).empty());
  CHECK(names_in(f.at("outbound")).empty());
  CHECK(s.finish(id) == std::errc::no_such_file_or_directory);
  CHECK_FALSE(s.oldest_message_age(clock_type::now()).has_value());

  // finish with the settled state in hand: nothing saved before, the old state file goes too.
  auto id2 = s.begin(env);
  REQUIRE(id2.has_value());
  REQUIRE_FALSE(id2->append("raw\r\n"));
  auto committed = id2->commit();
  REQUIRE(committed.has_value());
  REQUIRE_FALSE(s.claim_incoming(*committed));
  REQUIRE_FALSE(s.store_outbound(*committed, "sanitized\r\n", env));
  auto pending = *s.load_delivery_state(*committed);
  CHECK(s.finish(*committed, pending) == spool_errc::recipients_pending);
  REQUIRE_FALSE(s.save_delivery_state(*committed, pending));
  for (auto& r : pending.recipients) r.status = recipient_status::delivered;
  REQUIRE_FALSE(s.finish(*committed, pending));
  CHECK_FALSE(s.locate(*committed).has_value());
  CHECK(names_in(f.at("delivery")).empty());
}

TEST_CASE("due_deferred orders by next attempt; remove_active; begin_outbound for a generated DSN") {
  fixture f;
  spool s(f.root, f.posix);
  const spool_envelope env = simple_envelope();
  const auto now = clock_type::now();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    const std::string id = new_queue_id();
    auto w = s.begin_outbound(id, env);  // a message we generate goes straight to outbound/
    REQUIRE(w.has_value());
    REQUIRE_FALSE(w->append("dsn " + std::to_string(i)));
    REQUIRE(w->commit().has_value());
    ids.push_back(id);
  }
  REQUIRE_FALSE(s.defer(ids[0], now - 10s));
  REQUIRE_FALSE(s.defer(ids[1], now - 30s));
  REQUIRE_FALSE(s.defer(ids[2], now + 30s));
  CHECK(*s.due_deferred(now) == std::vector<std::string>{ids[1], ids[0]});

  // A deferred message whose state file vanished is due at once (never stuck).
  fs::remove(f.at("delivery") / ids[2]);
  CHECK(s.due_deferred(now)->size() == 3);

  // Held: the original is quarantined, the raw copy leaves the spool.
  const std::string held = commit_message(s, env, "held");
  REQUIRE_FALSE(s.claim_incoming(held));
  REQUIRE_FALSE(s.remove_active(held));
  CHECK_FALSE(s.locate(held).has_value());
  CHECK(s.remove_active(held) == std::errc::no_such_file_or_directory);
}

TEST_CASE("recover: orphan delivery states are removed, unreadable ones kept in corrupt/") {
  fixture f;
  spool s(f.root, f.posix);
  const spool_envelope env = simple_envelope();
  const std::string id = commit_message(s, env, "m");
  REQUIRE_FALSE(s.claim_incoming(id));
  REQUIRE_FALSE(s.store_outbound(id, "s", env));
  auto st = *s.load_delivery_state(id);
  st.recipients[0].status = recipient_status::delivered;
  REQUIRE_FALSE(s.save_delivery_state(id, st));
  const std::string orphan = new_queue_id();
  write_raw(f.at("delivery") / orphan, "MUKAI-DELIVERY 1\nattempts 0\nnext 0\nEND\n");

  auto report = s.recover();
  REQUIRE(report.has_value());
  CHECK(report->orphan_states == 1);
  CHECK(report->corrupt == 0);
  CHECK(names_in(f.at("delivery")) == std::set<std::string>{id});
  CHECK(s.load_delivery_state(id)->recipients[0].status == recipient_status::delivered);

  write_raw(f.at("delivery") / id, "MUKAI-DELIVERY 1\nattempts x\n");
  CHECK(s.load_delivery_state(id).error() == spool_errc::corrupt);
  report = s.recover();
  REQUIRE(report.has_value());
  CHECK(report->corrupt == 1);
  CHECK(names_in(f.at("corrupt")) == std::set<std::string>{id + ".delivery"});
  auto fresh = s.load_delivery_state(id);
  REQUIRE(fresh.has_value());
  CHECK(fresh->recipients.size() == 3);
  CHECK_FALSE(fresh->done());
}

TEST_CASE("move_to_corrupt never replaces an earlier corrupt file") {
  fixture f;
  spool s(f.root, f.posix);
  const std::string id = commit_message(s, simple_envelope(), "one");
  auto first = s.move_to_corrupt(spool_state::incoming, id);
  REQUIRE(first.has_value());
  CHECK(*first == id + ".incoming");
  fs::copy_file(f.at("corrupt") / *first, f.at("incoming") / id);
  auto second = s.move_to_corrupt(spool_state::incoming, id);
  REQUIRE(second.has_value());
  CHECK(*second != *first);
  CHECK(second->rfind(id + ".incoming.", 0) == 0);
  CHECK(names_in(f.at("corrupt")).size() == 2);
  CHECK(s.move_to_corrupt(spool_state::incoming, id).error() == std::errc::no_such_file_or_directory);
}

// ---------------------------------------------------------------- metrics

TEST_CASE("counts, oldest message age, free space") {
  fixture f;
  spool s(f.root, f.posix);
  CHECK_FALSE(s.oldest_message_age(clock_type::now()).has_value());
  const std::string a = commit_message(s, simple_envelope(), "a");
  std::this_thread::sleep_for(5ms);
  const std::string b = commit_message(s, simple_envelope(), "b");
  REQUIRE_FALSE(s.claim_incoming(b));
  auto c = s.counts();
  REQUIRE(c.has_value());
  CHECK(c->incoming == 1);
  CHECK(c->active == 1);
  const auto age = s.oldest_message_age(*queue_id_time(a) + 10s);
  REQUIRE(age.has_value());
  CHECK(*age == 10s);
  auto space = s.free_space();
  REQUIRE(space.has_value());
  CHECK(space->available_bytes > 0);
}

// ---------------------------------------------------------------- concurrency

TEST_CASE("concurrent commits from several threads: all durable, unique, readable; fsyncs shared") {
  fixture f;
  recording_file_ops rec(f.root);
  spool s(f.root, rec);
  constexpr std::size_t threads = 8;
  constexpr std::size_t per_thread = 40;
  std::vector<std::vector<std::string>> ids(threads);
  std::atomic<int> failures{0};
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      spool_envelope env = simple_envelope();
      env.helo = "thread-" + std::to_string(t);
      for (std::size_t i = 0; i < per_thread; ++i) {
        const std::string body = "thread " + std::to_string(t) + " message " + std::to_string(i) + "\r\n" +
                                 std::string(i * 512, 'x');
        std::string id;
        if (try_commit(s, env, body, &id)) {
          ++failures;
        } else {
          ids[t].push_back(id);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(failures.load() == 0);
  std::set<std::string> all;
  for (std::size_t t = 0; t < threads; ++t) {
    REQUIRE(ids[t].size() == per_thread);
    for (std::size_t i = 0; i < per_thread; ++i) {
      const std::string& id = ids[t][i];
      CHECK(all.insert(id).second);
      auto m = s.read(spool_state::incoming, id);
      REQUIRE(m.has_value());
      CHECK(m->envelope.helo == "thread-" + std::to_string(t));
      CHECK(m->body.rfind("thread " + std::to_string(t) + " message " + std::to_string(i) + "\r\n", 0) == 0);
    }
  }
  CHECK(names_in(f.at("incoming")).size() == threads * per_thread);
  const std::size_t commits = rec.count_prefix("rename_no_replace");
  const std::size_t dir_syncs = rec.count_prefix("sync_dir incoming");
  CHECK(commits == threads * per_thread);
  CHECK(rec.count_prefix("sync_file") == commits);  // every file is fsynced: no shortcut there
  CHECK(dir_syncs <= commits);
  MESSAGE(commits << " concurrent commits shared " << dir_syncs << " fsyncs of incoming/");
}

TEST_CASE("storage_low: the free-space floor, failing closed") {
  fixture f;
  spool s(f.root, f.posix);
  CHECK_FALSE(s.storage_low(0, 0));
  CHECK(s.storage_low(std::numeric_limits<std::uint64_t>::max()));
  spool missing(f.dir.path() / "no-such-spool", f.posix);
  CHECK_FALSE(missing.free_space().has_value());
  CHECK(missing.storage_low(0, 0));  // unknown: answer 452, never accept blindly
}
