// `mukai serve` between real MTAs (issue 3 "Tests"): Debian's Postfix as the Internet-side MTA with
// mukai as its relayhost, smtp-sink or a second Postfix as the LGWAN side. Every corpus message goes
// through and must arrive sanitized (the output invariant, checked by the independent checker),
// with its original envelope recipients, exactly once. Then the faults: the next hop down and back,
// kill -9 under load, SIGTERM, SIGHUP.
// Every process belongs to an RAII object declared after the temp_dir, so a failed REQUIRE still
// stops it before the directory is removed.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/mukai_instance.hpp"
#include "tests/support/output_invariant.hpp"
#include "tests/integration/postfix_test_env.hpp"
#include "tests/support/postfix_instance.hpp"
#include "tests/support/process.hpp"
#include "tests/support/smtp_send.hpp"
#include "tests/support/smtp_sink.hpp"
#include "tests/support/temp_dir.hpp"

namespace {

using namespace mukai::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string test_message(const std::string& tag) {
  return "From: Sender <sender@internet.test>\r\n"
         "To: staff@example.lg.jp\r\n"
         "Subject: =?UTF-8?B?44OG44K544OI?= " + tag + "\r\n"
         "Message-ID: <" + tag + "@internet.test>\r\n"
         "Date: Sun, 22 Nov 2026 10:00:00 +0900\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=\"b\"\r\n"
         "\r\n--b\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n"
         "<p>本文 " + tag + " <a href=\"https://example.com/\">link</a></p>\r\n"
         "--b\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n--b--\r\n";
}

// The quarantine item a delivered message names in X-Mukai-Quarantine-ID: its report and the bytes
// of the parts removed, for the invariant checker. A clean message has none.
struct expectation {
  boost::json::value report;
  std::vector<std::string> removed;
};

expectation expectation_for(const sink_message& m, const fs::path& quarantine) {
  expectation e;
  const std::string id = m.header("X-Mukai-Quarantine-ID");
  if (id.empty()) {
    e.report = boost::json::parse(R"({"verdict":"clean","parts":[{"action":"kept-as-text"}]})");
    return e;
  }
  const fs::path item = quarantine / "items" / id;
  auto meta = boost::json::parse(read_all(item / "meta.json"));
  e.report = meta.at("report");
  // As the corpus test: binary parts removed from a message that was delivered sanitized (a text
  // part set aside, such as an unused alternative, may share its words with the shown one).
  const auto& rep = e.report.as_object();
  if (rep.at("verdict") == "held") return e;
  for (auto& p : rep.at("parts").as_array()) {
    const auto& po = p.as_object();
    const std::string detected(po.at("detected_type").as_string());
    if (po.at("action") == "quarantined" && detected.rfind("text/", 0) != 0)
      e.removed.push_back(read_all(item / "parts" / std::string(po.at("sha256").as_string())));
  }
  return e;
}

}  // namespace

TEST_CASE("every corpus message: Internet-side Postfix -> mukai -> smtp-sink, sanitized, exactly once") {
  skip_unless_postfix_usable();
  temp_dir tmp("mukai-e2e");
  make_searchable(tmp.path());
  smtp_sink sink({tmp.path() / "sink"});
  mukai_options mo;
  mo.dir = tmp.path() / "mukai";
  mo.next_hops = {"smtp://127.0.0.1:" + std::to_string(sink.port()) + "?starttls=off"};
  mukai_instance mukai(mo);
  mukai.start();
  postfix_options po;
  po.dir = tmp.path() / "internet";
  po.relayhost = "[127.0.0.1]:" + std::to_string(mukai.port());
  po.relay_domains = {"example.lg.jp"};
  po.destination_concurrency_limit = 10;
  // Postfix's default smtp_line_length_limit (998) folds longer lines on the way to mukai, which
  // refuses text lines over 1000 octets (RFC 5321 4.5.3.1.6), as Internet-side MTAs do.
  po.main_cf = {{"message_size_limit", "52428800"}};
  postfix_instance internet(po);
  internet.start();

  std::vector<fs::path> inputs;
  for (auto& e : fs::directory_iterator(fs::path(MUKAI_SHARED_DIR) / "corpus"))
    if (e.is_regular_file() && e.path().extension() == ".eml") inputs.push_back(e.path());
  std::sort(inputs.begin(), inputs.end());
  REQUIRE(inputs.size() > 1000);

  // Each message gets two recipients of its own, so the sink's envelope says which input it was.
  std::map<std::string, std::size_t> index_of_rcpt;
  std::set<std::size_t> accepted;
  std::vector<std::string> refused;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::string a = "m" + std::to_string(i) + "@example.lg.jp", b = "c" + std::to_string(i) + "@example.lg.jp";
    index_of_rcpt[a] = i;
    index_of_rcpt[b] = i;
    auto r = internet.send("sender@internet.test", {a, b}, read_all(inputs[i]));
    if (r.ok)
      accepted.insert(i);
    else
      refused.push_back(inputs[i].filename().string() + ": " + r.last_reply + r.error);
  }
  for (auto& r : refused) MESSAGE("Postfix refused " << r);
  CHECK(accepted.size() + refused.size() == inputs.size());
  CHECK(refused.size() < 20);  // only what Postfix itself will not take

  CHECK(internet.wait_queue_empty(600s));
  CHECK(mukai.wait_spool_empty(600s));
  CHECK(sink.wait_for_messages(accepted.size(), 120s));
  std::this_thread::sleep_for(500ms);  // anything extra (a duplicate) would show up now

  const auto messages = sink.messages();
  std::map<std::size_t, int> deliveries;
  std::vector<std::string> failures;
  for (const auto& m : messages) {
    // Postfix's queue manager sorts recipients: "c<i>" comes before "m<i>".
    REQUIRE(m.rcpts.size() == 2);
    auto it = index_of_rcpt.find(m.rcpts[0]);
    REQUIRE_MESSAGE(it != index_of_rcpt.end(), m.rcpts[0]);
    const std::size_t i = it->second;
    CHECK(m.rcpts[0] == "c" + std::to_string(i) + "@example.lg.jp");
    CHECK(m.rcpts[1] == "m" + std::to_string(i) + "@example.lg.jp");
    CHECK(m.mail_from == "sender@internet.test");
    ++deliveries[i];
    const auto e = expectation_for(m, mukai.quarantine_dir());
    auto check = check_output(m.content, e.report, e.removed);
    if (!check.ok()) failures.push_back(inputs[i].filename().string() + ": " + check.failures.front());
  }
  for (auto& f : failures) MESSAGE("invariant: " << f);
  CHECK(failures.empty());
  std::size_t missing = 0, duplicated = 0;
  for (std::size_t i : accepted) {
    if (!deliveries.contains(i)) {
      ++missing;
      MESSAGE("missing: " << inputs[i].filename().string());
    } else if (deliveries[i] > 1) {
      ++duplicated;
    }
  }
  if (missing) MESSAGE("Postfix log tail:\n" << internet.log_text().substr(internet.log_text().size() > 20000 ? internet.log_text().size() - 20000 : 0));
  std::cout << "integration/relay: corpus " << inputs.size() << " messages, " << accepted.size()
            << " accepted by Postfix, " << messages.size() << " delivered by mukai, " << missing << " missing, "
            << duplicated << " duplicated, " << failures.size() << " invariant failures\n";
  CHECK(missing == 0);
  CHECK(duplicated == 0);
  CHECK(messages.size() == accepted.size());
  CHECK(mukai.corrupt_count() == 0);
  CHECK(mukai.stop() == 0);
}

TEST_CASE("the next hop is down, then comes back: everything deferred is delivered, once") {
  skip_unless_postfix_usable();
  temp_dir tmp("mukai-e2e");
  make_searchable(tmp.path());
  const std::uint16_t sink_port = free_loopback_port();
  mukai_options mo;
  mo.dir = tmp.path() / "mukai";
  mo.next_hops = {"smtp://127.0.0.1:" + std::to_string(sink_port) + "?starttls=off"};
  mukai_instance mukai(mo);
  mukai.start();
  constexpr int count = 30;
  for (int i = 0; i < count; ++i) {
    auto r = smtp_send("127.0.0.1", mukai.port(), "sender@internet.test",
                       {"u" + std::to_string(i) + "@example.lg.jp"}, test_message("down-" + std::to_string(i)));
    REQUIRE(r.ok);
    CHECK(queued_as(r.last_reply).has_value());
  }
  // Every message is tried, fails to connect and waits in deferred/.
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < until) {
    std::error_code ec;
    std::size_t deferred = 0;
    for (auto it = fs::directory_iterator(mukai.spool_dir() / "deferred", ec); !ec && it != fs::directory_iterator();
         it.increment(ec))
      ++deferred;
    if (deferred == count) break;
    std::this_thread::sleep_for(100ms);
  }
  CHECK(mukai.spool_count() == count);
  CHECK(mukai.log_text().find("Connection refused") != std::string::npos);

  smtp_sink_options so;
  so.dir = tmp.path() / "sink";
  so.port = sink_port;
  smtp_sink sink(so);
  CHECK(mukai.wait_spool_empty(60s));
  CHECK(sink.wait_for_messages(count, 30s));
  std::this_thread::sleep_for(500ms);
  std::map<std::string, int> per_rcpt;
  for (auto& m : sink.messages()) {
    for (auto& r : m.rcpts) ++per_rcpt[r];
    CHECK(m.content.find("TVqQ") == std::string::npos);  // the executable never crosses
    CHECK(m.header("X-Mukai-Verdict") == "sanitized");
  }
  CHECK(per_rcpt.size() == count);
  for (auto& [r, n] : per_rcpt) CHECK_MESSAGE(n == 1, r);
  CHECK(mukai.stop() == 0);
}

TEST_CASE("kill -9 under load: every message that got a 250 is delivered") {
  skip_unless_postfix_usable();
  temp_dir tmp("mukai-e2e");
  make_searchable(tmp.path());
  smtp_sink sink({tmp.path() / "sink"});
  mukai_options mo;
  mo.dir = tmp.path() / "mukai";
  mo.next_hops = {"smtp://127.0.0.1:" + std::to_string(sink.port()) + "?starttls=off"};
  mo.log_level = "warning";
  mukai_instance mukai(mo);
  mukai.start();

  constexpr int count = 400;
  constexpr int threads = 8;
  std::mutex mutex;
  std::set<int> acknowledged;
  std::atomic<int> next{0};
  std::atomic<std::size_t> attempts{0}, failed_sessions{0};
  const auto deadline = std::chrono::steady_clock::now() + 240s;
  auto sender = [&] {
    for (int i = next++; i < count; i = next++) {
      for (int attempt = 0; std::chrono::steady_clock::now() < deadline; ++attempt) {
        ++attempts;
        smtp_send_options o;
        o.timeout = 20s;
        auto r = smtp_send("127.0.0.1", mukai.port(), "sender@internet.test", {"u" + std::to_string(i) + "@example.lg.jp"},
                           test_message("load-" + std::to_string(i) + "-" + std::to_string(attempt)), o);
        if (r.ok) {
          const std::lock_guard lock(mutex);
          acknowledged.insert(i);
          break;
        }
        ++failed_sessions;
        std::this_thread::sleep_for(50ms);  // mukai is down: retry, as an MTA would
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(sender);
  auto acked = [&] {
    const std::lock_guard lock(mutex);
    return acknowledged.size();
  };
  // Two crashes: one while messages arrive and are sanitized, one later in the load.
  int kills = 0;
  for (std::size_t at : {std::size_t{120}, std::size_t{280}}) {
    while (acked() < at && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    mukai.kill9();
    ++kills;
    std::this_thread::sleep_for(300ms);
    mukai.start();
  }
  for (auto& t : pool) t.join();
  REQUIRE(acked() == count);
  CHECK(mukai.wait_spool_empty(120s));
  CHECK(sink.wait_for_messages(count, 60s));
  std::this_thread::sleep_for(500ms);
  // Two kinds of duplicates: the relay delivering one accepted message twice (the same attempt
  // tag twice: a crash between the next hop's 250 and the spool's record of it), and the sender
  // re-sending a message whose 250 it never saw although mukai had spooled it (two attempt tags:
  // SMTP's own at-least-once, not the relay's doing).
  std::map<int, int> deliveries;
  std::map<std::string, int> per_attempt;
  for (auto& m : sink.messages()) {
    REQUIRE(m.rcpts.size() == 1);
    deliveries[std::stoi(m.rcpts[0].substr(1))]++;
    const auto at = m.content.find("load-");
    REQUIRE(at != std::string::npos);
    per_attempt[m.content.substr(at, m.content.find_first_of("@ \r", at) - at)]++;
    CHECK(m.content.find("TVqQ") == std::string::npos);
  }
  std::size_t missing = 0, duplicates = 0, relay_duplicates = 0;
  for (int i : acknowledged) {
    if (!deliveries.contains(i)) ++missing;
    else duplicates += static_cast<std::size_t>(deliveries[i] - 1);
  }
  for (auto& [tag, n] : per_attempt) relay_duplicates += static_cast<std::size_t>(n - 1);
  std::cout << "integration/relay: kill -9 x" << kills << " under a load of " << count << " messages ("
            << attempts.load() << " SMTP sessions, " << failed_sessions.load() << " failed): " << missing
            << " acknowledged messages missing, " << duplicates << " duplicate deliveries (" << relay_duplicates
            << " by the relay, the rest re-sent by the client after a lost 250)\n";
  CHECK(missing == 0);
  CHECK(mukai.corrupt_count() == 0);
  CHECK(mukai.stop() == 0);
}

TEST_CASE("SIGTERM: exit 0 with the queue kept; SIGHUP: the new relay_domains apply without a restart") {
  skip_unless_postfix_usable();
  temp_dir tmp("mukai-e2e");
  make_searchable(tmp.path());
  const std::uint16_t sink_port = free_loopback_port();
  mukai_options mo;
  mo.dir = tmp.path() / "mukai";
  mo.next_hops = {"smtp://127.0.0.1:" + std::to_string(sink_port) + "?starttls=off"};
  mukai_instance mukai(mo);
  mukai.start();
  for (int i = 0; i < 10; ++i)
    REQUIRE(smtp_send("127.0.0.1", mukai.port(), "s@internet.test", {"t" + std::to_string(i) + "@example.lg.jp"},
                      test_message("term-" + std::to_string(i)))
                .ok);
  CHECK(mukai.stop() == 0);  // next hop down: the messages stay in the spool
  CHECK(mukai.spool_count() == 10);
  CHECK(mukai.log_text().find("mukai relay stopped") != std::string::npos);

  smtp_sink_options so;
  so.dir = tmp.path() / "sink";
  so.port = sink_port;
  smtp_sink sink(so);
  mukai.start();
  CHECK(mukai.wait_spool_empty(60s));
  CHECK(sink.wait_for_messages(10, 30s));

  // A domain not (yet) relayed is refused; after editing the file and SIGHUP it is accepted, on
  // the same process.
  auto refused = smtp_send("127.0.0.1", mukai.port(), "s@internet.test", {"x@other.lg.jp"}, test_message("hup-0"));
  CHECK_FALSE(refused.ok);
  REQUIRE(refused.rcpt_replies.size() == 1);
  CHECK(refused.rcpt_replies[0].rfind("550 5.7.1", 0) == 0);
  const pid_t pid = mukai.pid();
  mukai.options().relay_domains = {"example.lg.jp", "other.lg.jp"};
  mukai.write_config();
  mukai.reload();
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (mukai.log_text().find("configuration reloaded") == std::string::npos && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(50ms);
  auto accepted = smtp_send("127.0.0.1", mukai.port(), "s@internet.test", {"x@other.lg.jp"}, test_message("hup-1"));
  CHECK(accepted.ok);
  CHECK(mukai.pid() == pid);
  CHECK(mukai.running());
  CHECK(sink.wait_for_messages(11, 30s));

  // A broken file is refused on SIGHUP and the running configuration stays.
  { std::ofstream(mukai.config_path(), std::ios::app) << "\n[smtp]\nno_such_key = 1\n"; }
  mukai.reload();
  const auto until2 = std::chrono::steady_clock::now() + 20s;
  while (mukai.log_text().find("reload refused") == std::string::npos && std::chrono::steady_clock::now() < until2)
    std::this_thread::sleep_for(50ms);
  CHECK(mukai.log_text().find("reload refused") != std::string::npos);
  CHECK(smtp_send("127.0.0.1", mukai.port(), "s@internet.test", {"y@other.lg.jp"}, test_message("hup-2")).ok);
  CHECK(mukai.stop() == 0);
}
