// The relay wired end to end in one process (the listener, spool, real sandboxed `mukai worker`
// processes, quarantine, delivery): messages go in over SMTP with the project's own delivery client
// and come out in a Maildir or at a second relay acting as the next hop. The binary-level tests
// (signals, kill -9, real Postfix on both sides) are in tests/integration/.
#include "server/relay.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <set>
#include <thread>

#include "sanitizers/engine.hpp"
#include "sanitizers/report_json.hpp"
#include "server/audit_log.hpp"
#include "server/durable_fs.hpp"
#include "server/quarantine_index.hpp"
#include "server/quarantine_service.hpp"
#include "server/quarantine_store.hpp"
#include "server/smtp_client.hpp"
#include "server/spool.hpp"
#include "tests/support/output_invariant.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace mukai;
using namespace std::chrono_literals;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

config::mukai_config relay_config(const fs::path& root, std::vector<std::string> next_hops, std::uint16_t port = 0) {
  config::mukai_config c = config::embedded_default();
  c.source = "relay_test";
  c.smtp.listen = {"127.0.0.1:" + std::to_string(port)};
  c.smtp.hostname = "mukai.test";
  c.smtp.relay_domains = {"example.lg.jp"};
  c.spool.dir = root / "spool";
  c.spool.min_free_space = 0;
  c.quarantine.dir = root / "quarantine";
  c.delivery.next_hops = std::move(next_hops);
  c.delivery.min_backoff = 1s;
  c.delivery.max_backoff = 2s;
  c.worker.count = 1;
  return c;
}

server::relay_options fast_options() {
  server::relay_options o;
  o.worker_binary = MUKAI_BINARY;
  o.io_threads = 2;
  o.scan_interval = 100ms;
  o.retry_interval = 500ms;
  server::smtp_client_options co;
  co.connect_timeout = 2s;
  co.greeting_timeout = co.helo_timeout = co.mail_timeout = co.rcpt_timeout = 10s;
  co.data_init_timeout = co.data_block_timeout = co.data_done_timeout = 20s;
  o.client_options = co;
  return o;
}

struct sent {
  server::delivery_attempt_result result;
  bool all_delivered() const {
    if (result.recipients.empty()) return false;
    for (auto& r : result.recipients)
      if (r.status != server::rcpt_status::delivered) return false;
    return true;
  }
};

// Sends one message to 127.0.0.1:port with the project's SMTP client (a complete SMTP session).
sent send_message(std::uint16_t port, std::string from, std::vector<std::string> rcpts, std::string_view body) {
  server::spool_envelope env;
  env.mail_from = std::move(from);
  for (auto& r : rcpts) env.recipients.push_back({r, "", ""});
  std::vector<std::size_t> idx;
  for (std::size_t i = 0; i < rcpts.size(); ++i) idx.push_back(i);
  server::smtp_client_options co;
  co.helo_name = "sender.test";
  co.connect_timeout = 5s;
  server::smtp_client client(co);
  server::smtp_hop hop{"127.0.0.1", port, server::starttls_mode::off, true};
  server::outgoing_message m{env, idx, body};
  asio::io_context ctx;
  sent out;
  asio::co_spawn(ctx, client.send(hop, m), [&](std::exception_ptr e, server::delivery_attempt_result r) {
    if (!e) out.result = std::move(r);
  });
  ctx.run_for(60s);
  return out;
}

std::vector<fs::path> maildir_files(const fs::path& maildir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(maildir / "new", ec)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Polls `done` every 50 ms for at most `limit`.
bool wait_until(const std::function<bool()>& done, std::chrono::steady_clock::duration limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return done();
}

bool spool_empty(const fs::path& spool_root) {
  for (const char* d : {"tmp", "incoming", "active", "outbound", "deferred", "delivery"}) {
    std::error_code ec;
    if (fs::exists(spool_root / d) && !fs::is_empty(spool_root / d, ec)) return false;
  }
  return true;
}

std::string sample_message() { return read_file(fs::path(MUKAI_TEST_DATA_DIR) / ".." / ".." / "docs" / "examples" / "sample.eml"); }

const std::string plain_message =
    "From: Sender <sender@example.com>\r\n"
    "To: staff@example.lg.jp\r\n"
    "Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\n"
    "Date: Sun, 22 Nov 2026 10:00:00 +0900\r\n"
    "Message-ID: <plain-1@example.com>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "こんにちは。\r\n.leading dot line\r\n";

// The output invariant, checked with the report the engine gives for the same input.
void check_delivered(const std::string& delivered, const std::string& original) {
  config::policy pol;
  auto expected = sanitize::sanitize_message(original, pol, {"", ""});
  std::vector<std::string> removed;
  for (auto& q : expected.quarantine) removed.push_back(q.bytes);
  auto report = boost::json::parse(sanitize::to_json_text(expected.rep));
  auto check = testing::check_output(delivered, report, removed);
  for (auto& f : check.failures) INFO(f);
  CHECK(check.ok());
}

// The value of one sample of the Prometheus text ("name" or "name{labels}"), -1 if absent.
double metric_value(const std::string& text, const std::string& sample) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 && line[sample.size()] == ' ')
      return std::stod(line.substr(sample.size() + 1));
  }
  return -1;
}

// The sum of every sample of a family (all label sets).
double metric_sum(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  double sum = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + "{", 0) == 0 || line.rfind(name + " ", 0) == 0) sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

}  // namespace

TEST_CASE("relay: SMTP in, sanitized into the maildir next hop, spool empty afterwards") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "out";
  server::logger log(server::log_level::warning);
  server::relay r(relay_config(tmp.path(), {"maildir:" + out.string()}), fast_options(), log);
  r.start();
  const auto port = r.local_endpoints().at(0).port();

  auto s1 = send_message(port, "alice@example.com", {"bob@example.lg.jp", "carol@example.lg.jp"}, sample_message());
  CHECK(s1.all_delivered());
  auto s2 = send_message(port, "alice@example.com", {"staff@example.lg.jp"}, plain_message);
  CHECK(s2.all_delivered());
  // Never an open relay: a foreign domain is refused at RCPT.
  auto s3 = send_message(port, "alice@example.com", {"someone@example.org"}, plain_message);
  REQUIRE(s3.result.recipients.size() == 1);
  CHECK(s3.result.recipients[0].status == server::rcpt_status::permanent);
  CHECK(s3.result.recipients[0].reply.rfind("550", 0) == 0);

  REQUIRE(wait_until([&] { return maildir_files(out).size() == 2 && spool_empty(tmp.path() / "spool"); }));
  auto files = maildir_files(out);
  std::vector<std::string> bodies;
  for (auto& f : files) bodies.push_back(read_file(f));
  // One per message, whatever the number of recipients; which is which by content.
  const bool first_is_sample = bodies[0].find("X-Mukai") != std::string::npos && bodies[0].find("plain-1") == std::string::npos;
  const std::string& sample_out = first_is_sample ? bodies[0] : bodies[1];
  const std::string& plain_out = first_is_sample ? bodies[1] : bodies[0];
  check_delivered(sample_out, sample_message());
  check_delivered(plain_out, plain_message);
  CHECK(plain_out.find("Received: by mukai.test (mukai sanitizer) id ") != std::string::npos);

  // The counters behind /metrics, read through the text a scraper gets.
  CHECK(wait_until([&] { return metric_value(r.metrics_text(), "mukai_messages_delivered_total") == 2; }));
  const std::string mt = r.metrics_text();
  CHECK(metric_value(mt, "mukai_messages_received_total") == 2);
  CHECK(metric_sum(mt, "mukai_messages_sanitized_total") == 2);
  CHECK(metric_value(mt, "mukai_messages_sanitized_total{verdict=\"sanitized\"}") >= 1);  // the sample's attachment
  CHECK(metric_value(mt, "mukai_messages_deferred_total") == 0);
  CHECK(metric_value(mt, "mukai_messages_bounced_total") == 0);
  CHECK(metric_value(mt, "mukai_recipients_total{status=\"delivered\"}") == 3);
  CHECK(metric_sum(mt, "mukai_parts_removed_total") >= 1);
  CHECK(metric_value(mt, "mukai_sanitize_duration_seconds_count") == 2);
  CHECK(metric_value(mt, "mukai_delivery_latency_seconds_count") == 2);
  CHECK(metric_value(mt, "mukai_delivery_latency_seconds_bucket{le=\"+Inf\"}") == 2);
  CHECK(metric_value(mt, "mukai_delivery_latency_seconds_sum") > 0);
  CHECK(metric_value(mt, "mukai_smtp_connections_total") == 3);
  CHECK(metric_value(mt, "mukai_smtp_replies_total{class=\"5xx\"}") == 1);  // the foreign domain's 550
  CHECK(metric_value(mt, "mukai_smtp_replies_total{class=\"2xx\"}") >= 10);
  CHECK(metric_value(mt, "mukai_smtp_tls_sessions_total") == 0);
  CHECK(metric_value(mt, "mukai_queue_messages{queue=\"incoming\"}") == 0);
  CHECK(metric_value(mt, "mukai_queue_messages{queue=\"outbound\"}") == 0);
  CHECK(metric_value(mt, "mukai_queue_oldest_message_age_seconds") == 0);
  // Ready: the spool is writable and the maildir next hop was just written to.
  auto ready = r.readiness();
  CHECK(ready.first);
  CHECK(ready.second.find("next hop reachable: maildir:") != std::string::npos);

  r.shutdown(5s);
  CHECK_FALSE(r.readiness().first);
  const auto c = r.counters();
  CHECK(c.sanitized + c.clean == 2);
  CHECK(c.messages_finished == 2);
  CHECK(c.recipients_delivered == 3);
  CHECK(c.smtp.messages_spooled == 2);
  // The sample's attachment went to the quarantine with the original.
  std::size_t items = 0;
  for (auto& e : fs::directory_iterator(tmp.path() / "quarantine" / "items")) {
    ++items;
    CHECK(fs::exists(e.path() / "original.eml"));
  }
  CHECK(items >= 1);
}

TEST_CASE("relay: one JSON log line per message event, valid whatever the message carries") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "out";
  const fs::path log_file = tmp.path() / "mukai.log";
  std::string hostile = plain_message;
  hostile.replace(hostile.find("Subject: "), hostile.find("\r\nDate:") - hostile.find("Subject: "),
                  // RLO "fdp.exe" ESC[2J "q" \ 件名, as UTF-8 in an encoded word
                  "Subject: =?UTF-8?B?4oCuZmRwLmV4ZSAbWzJKICJxIiBcIOS7tuWQjQ==?=");
  hostile.replace(hostile.find("<plain-1@example.com>"), 21, "<evil\"}{\\1@example.com>");
  {
    server::logger log(server::log_level::info, log_file.string(), false, server::log_format::json);
    server::relay r(relay_config(tmp.path(), {"maildir:" + out.string()}), fast_options(), log);
    r.start();
    REQUIRE(send_message(r.local_endpoints().at(0).port(), "a.b+tag@example.com", {"staff@example.lg.jp"}, hostile)
                .all_delivered());
    REQUIRE(wait_until([&] { return maildir_files(out).size() == 1 && spool_empty(tmp.path() / "spool"); }));
    r.shutdown(5s);
  }
  std::ifstream in(log_file);
  std::map<std::string, boost::json::object> events;
  std::size_t lines = 0;
  for (std::string l; std::getline(in, l);) {
    ++lines;
    INFO(l);
    boost::json::error_code ec;
    auto v = boost::json::parse(l, ec);
    REQUIRE(!ec);
    auto& o = v.as_object();
    CHECK(o.contains("time"));
    CHECK(o.contains("level"));
    for (unsigned char c : l) CHECK(c >= 0x20);
    CHECK(l.find("\xe2\x80\xae") == std::string::npos);  // the RLO itself never appears
    if (o.contains("event")) events[std::string(o.at("event").as_string())] = o;
  }
  CHECK(lines >= 3);
  REQUIRE(events.contains("received"));
  REQUIRE(events.contains("sanitized"));
  REQUIRE(events.contains("delivered"));
  const auto& rec = events["received"];
  const auto id = rec.at("queue_id").as_string();
  CHECK(id.size() == 16);
  CHECK(rec.at("client").as_string() == "127.0.0.1");
  CHECK(rec.at("from").as_string() == "a.b+tag@example.com");
  CHECK(rec.at("rcpt").as_array().at(0).as_string() == "staff@example.lg.jp");
  CHECK(rec.at("tls").as_bool() == false);
  CHECK(rec.at("size").to_number<std::uint64_t>() > hostile.size());  // with our Received header
  const auto& san = events["sanitized"];
  CHECK(san.at("queue_id").as_string() == id);
  CHECK(san.at("verdict").is_string());
  CHECK(san.at("sanitize_ms").is_number());
  CHECK(san.at("message_id").as_string().find("evil") != boost::json::string::npos);
  const std::string subject(san.at("subject").as_string());
  CHECK(subject.find("件名") != std::string::npos);
  CHECK(subject.find("fdp.exe") != std::string::npos);
  CHECK(subject.find("\xe2\x80\xae") == std::string::npos);  // no RLO, escaped or removed
  CHECK(subject.find('\x1b') == std::string::npos);
  const auto& del = events["delivered"];
  CHECK(del.at("queue_id").as_string() == id);
  CHECK(del.at("message_id").as_string() == san.at("message_id").as_string());
  CHECK(del.at("finished").as_bool());
  CHECK(del.at("recipients").as_array().at(0).at("to").as_string() == "staff@example.lg.jp");
  CHECK(del.at("latency_ms").is_number());
  CHECK(del.at("client").as_string() == "127.0.0.1");
}

TEST_CASE("relay: next hop down, deferred; next hop up, delivered exactly once") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "b-out";
  const std::uint16_t b_port = testing::free_loopback_port();
  server::logger log(server::log_level::warning);
  // A: the relay under test; its next hop is B, a second relay that is not running yet.
  server::relay a(relay_config(tmp.path() / "a", {"smtp://127.0.0.1:" + std::to_string(b_port) + "?starttls=off"}),
                  fast_options(), log);
  a.start();
  const auto a_port = a.local_endpoints().at(0).port();
  for (int i = 0; i < 5; ++i) {
    std::string m = plain_message;
    m.replace(m.find("plain-1"), 7, "plain-" + std::to_string(100 + i));
    REQUIRE(send_message(a_port, "alice@example.com", {"staff@example.lg.jp", "boss@example.lg.jp"}, m).all_delivered());
  }
  REQUIRE(wait_until([&] { return a.counters().recipients_deferred >= 10; }));
  CHECK(a.counters().messages_finished == 0);
  // The first attempt ran from memory; a deferred message is written to deferred/ and keeps its raw
  // copy in active/ as the durable backup.
  const auto dir_names = [&](const char* d) {
    std::set<std::string> names;
    for (auto& e : fs::directory_iterator(tmp.path() / "a" / "spool" / d)) names.insert(e.path().filename().string());
    return names;
  };
  REQUIRE(wait_until([&] { return dir_names("deferred").size() == 5; }));
  CHECK(dir_names("active") == dir_names("deferred"));
  CHECK(dir_names("outbound").empty());
  // Not ready while the next hop refuses connections; the queue shows the waiting mail.
  auto down = a.readiness();
  CHECK_FALSE(down.first);
  CHECK(down.second.find("next hop unreachable: smtp://127.0.0.1:" + std::to_string(b_port)) != std::string::npos);
  CHECK(metric_value(a.metrics_text(), "mukai_messages_deferred_total") >= 5);
  CHECK(wait_until([&] { return metric_value(a.metrics_text(), "mukai_queue_oldest_message_age_seconds") > 0; }));
  CHECK(wait_until([&] {
    const auto t = a.metrics_text();
    return metric_value(t, "mukai_queue_messages{queue=\"deferred\"}") + metric_value(t, "mukai_queue_messages{queue=\"outbound\"}") == 5;
  }));
  CHECK(metric_value(a.metrics_text(), "mukai_messages_delivered_total") == 0);

  // B comes up on the port A keeps trying.
  server::relay b(relay_config(tmp.path() / "b", {"maildir:" + out.string()}, b_port), fast_options(), log);
  b.start();
  a.flush();
  REQUIRE(wait_until([&] { return a.counters().messages_finished == 5 && spool_empty(tmp.path() / "a" / "spool"); }, 60s));
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 5 && spool_empty(tmp.path() / "b" / "spool"); }));
  std::set<std::string> ids;
  for (auto& f : maildir_files(out)) {
    const std::string body = read_file(f);
    const auto at = body.find("plain-1");
    REQUIRE(at != std::string::npos);
    ids.insert(body.substr(at, 9));
  }
  CHECK(ids.size() == 5);  // five distinct messages, none twice
  CHECK(wait_until([&] { return a.readiness().first; }));
  CHECK(wait_until([&] { return metric_value(a.metrics_text(), "mukai_messages_delivered_total") == 5; }));
  CHECK(metric_value(a.metrics_text(), "mukai_queue_oldest_message_age_seconds") == 0);
  a.shutdown(5s);
  b.shutdown(5s);
  CHECK(a.counters().recipients_delivered == 10);
}

TEST_CASE("relay: a permanent refusal at the next hop makes a DSN to the sender, via bounce_next_hop") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "b-out";
  const fs::path bounces = tmp.path() / "bounces";
  server::logger log(server::log_level::warning);
  // B accepts only other.lg.jp: A's recipients in example.lg.jp get 550 5.7.1 there.
  auto bcfg = relay_config(tmp.path() / "b", {"maildir:" + out.string()});
  bcfg.smtp.relay_domains = {"other.lg.jp"};
  server::relay b(bcfg, fast_options(), log);
  b.start();
  auto acfg = relay_config(tmp.path() / "a", {"smtp://127.0.0.1:" + std::to_string(b.local_endpoints().at(0).port())});
  acfg.delivery.bounce_next_hops = {"maildir:" + bounces.string()};
  server::relay a(acfg, fast_options(), log);
  a.start();
  REQUIRE(send_message(a.local_endpoints().at(0).port(), "sender@example.com", {"staff@example.lg.jp"}, plain_message)
              .all_delivered());
  // A message from the null sender that fails gets no DSN (no loops).
  REQUIRE(send_message(a.local_endpoints().at(0).port(), "", {"staff@example.lg.jp"}, plain_message).all_delivered());
  REQUIRE(wait_until([&] { return a.counters().messages_finished == 3 && spool_empty(tmp.path() / "a" / "spool"); }));
  auto files = maildir_files(bounces);
  REQUIRE(files.size() == 1);
  const std::string dsn = read_file(files[0]);
  CHECK(dsn.find("multipart/report") != std::string::npos);
  CHECK(dsn.find("report-type=delivery-status") != std::string::npos);
  CHECK(dsn.find("Final-Recipient: rfc822; staff@example.lg.jp") != std::string::npos);
  CHECK(dsn.find("Status: 5.7.1") != std::string::npos);
  CHECK(a.counters().dsns_queued == 1);
  CHECK(a.counters().recipients_failed == 2);
  CHECK(maildir_files(out).empty());
  a.shutdown(5s);
  b.shutdown(5s);
}

TEST_CASE("relay: start-up resumes what a crash left in incoming/ and active/") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "out";
  auto cfg = relay_config(tmp.path(), {"maildir:" + out.string()});
  {
    // What a relay that crashed leaves: two acknowledged messages, one claimed by a worker.
    server::posix_file_ops ops;
    server::spool sp(cfg.spool.dir, ops);
    REQUIRE(!sp.ensure_layout());
    server::spool_envelope env;
    env.mail_from = "alice@example.com";
    env.recipients = {{"staff@example.lg.jp", "", ""}};
    env.client_address = "127.0.0.1";
    env.helo = "sender.test";
    env.received = std::chrono::system_clock::now();
    std::vector<std::string> ids;
    for (int i = 0; i < 2; ++i) {
      auto w = sp.begin(env);
      REQUIRE(w.has_value());
      REQUIRE(!w->append(plain_message));
      auto id = w->commit();
      REQUIRE(id.has_value());
      ids.push_back(*id);
    }
    REQUIRE(!sp.claim_incoming(ids[1]));
  }
  server::logger log(server::log_level::warning);
  server::relay r(cfg, fast_options(), log);
  r.start();
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 2 && spool_empty(cfg.spool.dir); }));
  r.shutdown(5s);
  CHECK(r.counters().messages_finished == 2);
}

TEST_CASE("relay: a message that cannot be made harmless is held: notice delivered, original quarantined") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "out";
  server::logger log(server::log_level::warning);
  server::relay r(relay_config(tmp.path(), {"maildir:" + out.string()}), fast_options(), log);
  r.start();
  const std::string encrypted =
      "From: a@example.com\r\nTo: staff@example.lg.jp\r\nSubject: secret\r\nMIME-Version: 1.0\r\n"
      "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
      "Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAxggEw\r\n";
  REQUIRE(send_message(r.local_endpoints().at(0).port(), "a@example.com", {"staff@example.lg.jp"}, encrypted)
              .all_delivered());
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 1 && spool_empty(tmp.path() / "spool"); }));
  const std::string notice = read_file(maildir_files(out)[0]);
  CHECK(notice.find("MIAGCSqGSIb3DQEHA6CAMIACAQAxggEw") == std::string::npos);
  check_delivered(notice, encrypted);
  r.shutdown(5s);
  CHECK(r.counters().held == 1);
  std::size_t with_original = 0;
  for (auto& e : fs::directory_iterator(tmp.path() / "quarantine" / "items"))
    if (read_file(e.path() / "original.eml").find("MIAGCSqGSIb3DQEHA6CAMIACAQAxggEw") != std::string::npos)
      ++with_original;
  CHECK(with_original == 1);
}

TEST_CASE("relay: messages deferred before a restart are retried by the next process") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "b-out";
  const std::uint16_t b_port = testing::free_loopback_port();
  server::logger log(server::log_level::warning);
  auto acfg = relay_config(tmp.path() / "a", {"smtp://127.0.0.1:" + std::to_string(b_port) + "?starttls=off"});
  {
    server::relay a(acfg, fast_options(), log);
    a.start();
    for (int i = 0; i < 3; ++i)
      REQUIRE(send_message(a.local_endpoints().at(0).port(), "alice@example.com", {"staff@example.lg.jp"}, plain_message)
                  .all_delivered());
    REQUIRE(wait_until([&] { return a.counters().recipients_deferred >= 3; }));
    a.shutdown(5s);
  }
  server::relay b(relay_config(tmp.path() / "b", {"maildir:" + out.string()}, b_port), fast_options(), log);
  b.start();
  std::this_thread::sleep_for(1100ms);  // min_backoff: the deferred messages are due now
  server::relay a2(acfg, fast_options(), log);
  a2.start();  // no flush(): the start-up scan of deferred/ finds them due
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 3 && spool_empty(tmp.path() / "a" / "spool"); }));
  a2.shutdown(5s);
  b.shutdown(5s);
}

namespace {

const std::string pdf_message =
    "From: Prefecture <notice@pref.example.jp>\r\n"
    "To: staff@example.lg.jp\r\n"
    "Subject: =?UTF-8?B?6KuL5rGC5pu444Gu6YCB5LuY?=\r\n"
    "Message-ID: <pdf-1@pref.example.jp>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe invoice is attached.\r\n"
    "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKJSVFT0YK\r\n--b--\r\n";

// The item the relay indexed for pdf_message, with its parts.
std::string indexed_pdf_item(server::quarantine_service& q) {
  server::item_filter f;
  f.filename = "invoice.pdf";
  const auto page = q.list(f);
  REQUIRE(page.total == 1);
  const auto& item = page.items.at(0);
  CHECK(item.mail_from == "notice@pref.example.jp");
  CHECK(item.rcpt_to == std::vector<std::string>{"staff@example.lg.jp"});
  CHECK(item.subject == "請求書の送付");
  bool pdf = false;
  for (const auto& p : item.parts)
    pdf = pdf || (p.filename == "invoice.pdf" && p.action == "quarantined" && p.detected_type == "application/pdf");
  CHECK(pdf);
  return item.id;
}

}  // namespace

TEST_CASE("relay: an attachment is indexed with its parts; a release from the service reaches the next hop") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "out";
  const fs::path log_file = tmp.path() / "mukai.log";
  server::logger log(server::log_level::info, log_file.string(), false, server::log_format::json);
  server::relay r(relay_config(tmp.path(), {"maildir:" + out.string()}), fast_options(), log);
  r.start();
  REQUIRE(send_message(r.local_endpoints().at(0).port(), "notice@pref.example.jp", {"staff@example.lg.jp"},
                       pdf_message)
              .all_delivered());
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 1 && spool_empty(tmp.path() / "spool"); }));
  CHECK(read_file(maildir_files(out)[0]).find("JVBERi0xLjQK") == std::string::npos);
  const std::string id = indexed_pdf_item(r.quarantine());
  const auto text = r.quarantine().sanitized_text(id);
  REQUIRE(text);
  CHECK(text->find("The invoice is attached.") != std::string::npos);

  const auto released = r.quarantine().release(id, {}, "web:tester", "127.0.0.1");
  REQUIRE_MESSAGE(released.status == server::action_status::ok, released.message);
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 2 && spool_empty(tmp.path() / "spool"); }, 10s));
  std::string original_out;
  for (auto& f : maildir_files(out)) {
    const std::string body = read_file(f);
    if (body.find("JVBERi0xLjQK") != std::string::npos) original_out = body;
  }
  // The original, unsanitized, as the relay received it (with its Received line).
  CHECK(original_out.find(pdf_message) != std::string::npos);
  CHECK(r.quarantine().get(id)->status == server::item_status::released);
  REQUIRE(r.quarantine().remove(id, "web:tester", "127.0.0.1").status == server::action_status::ok);
  r.shutdown(5s);

  // The relay's log: one "released" event (its queue ID is the copy's, delivered under that ID)
  // and one "deleted" event.
  std::map<std::string, std::vector<boost::json::object>> events;
  std::ifstream in(log_file);
  for (std::string l; std::getline(in, l);) {
    auto o = boost::json::parse(l).as_object();
    if (o.contains("event")) events[std::string(o.at("event").as_string())].push_back(o);
  }
  REQUIRE(events["released"].size() == 1);
  const auto& rel = events["released"][0];
  CHECK(rel.at("quarantine_id").as_string() == id);
  CHECK(rel.at("queue_id").as_string() == released.queue_id);
  CHECK(rel.at("operator").as_string() == "web:tester");
  CHECK(rel.at("client").as_string() == "127.0.0.1");
  CHECK(rel.at("result").as_string() == "ok");
  CHECK(rel.at("recipients").as_array() == boost::json::array{"staff@example.lg.jp"});
  bool copy_delivered = false;
  for (const auto& d : events["delivered"]) copy_delivered = copy_delivered || d.at("queue_id").as_string() == released.queue_id;
  CHECK(copy_delivered);
  REQUIRE(events["deleted"].size() == 1);
  CHECK(events["deleted"][0].at("quarantine_id").as_string() == id);
  CHECK(events["deleted"][0].at("result").as_string() == "ok");
}

TEST_CASE("relay: a release queued by another process (the CLI) is delivered within seconds") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "out";
  server::logger log(server::log_level::warning);
  auto cfg = relay_config(tmp.path(), {"maildir:" + out.string()});
  auto options = fast_options();
  options.scan_interval = 1s;      // the production default
  options.rescan_interval = 600s;  // so the full rescan cannot be what finds it
  server::relay r(cfg, options, log);
  r.start();
  REQUIRE(send_message(r.local_endpoints().at(0).port(), "notice@pref.example.jp", {"staff@example.lg.jp"},
                       pdf_message)
              .all_delivered());
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 1 && spool_empty(tmp.path() / "spool"); }));
  const std::string id = indexed_pdf_item(r.quarantine());

  // What `mukai quarantine release` does: its own index connection, spool and service.
  server::posix_file_ops ops;
  std::error_code ec;
  auto index = server::open_sqlite_index(cfg.quarantine.dir / "index.sqlite", ec);
  REQUIRE(index);
  server::quarantine_store store(cfg.quarantine.dir, ops, index.get());
  server::spool sp(cfg.spool.dir, ops, server::spool_options_for(cfg));
  server::audit_log audit(cfg.quarantine.dir / "audit.log");
  server::quarantine_service cli(cfg, store, *index, sp, audit);
  const auto released = cli.release(id, {"chief@example.lg.jp"}, "cli:tester", "local");
  REQUIRE_MESSAGE(released.status == server::action_status::ok, released.message);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 2 && spool_empty(tmp.path() / "spool"); }, 10s));
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(r.quarantine().get(id)->status == server::item_status::released);
  r.shutdown(5s);
}

TEST_CASE("relay: the retention purge runs in the relay (with the retention of the last reload): files removed, "
          "item expired, by \"mukai\"") {
  testing::temp_dir tmp("mukai-relay");
  const fs::path out = tmp.path() / "out";
  server::logger log(server::log_level::warning);
  auto cfg = relay_config(tmp.path(), {"maildir:" + out.string()});
  cfg.quarantine.retention = std::chrono::hours(24);
  auto options = fast_options();
  options.purge_interval = 300ms;
  server::relay r(cfg, options, log);
  r.start();
  REQUIRE(send_message(r.local_endpoints().at(0).port(), "notice@pref.example.jp", {"staff@example.lg.jp"},
                       pdf_message)
              .all_delivered());
  REQUIRE(wait_until([&] { return maildir_files(out).size() == 1; }));
  const std::string id = indexed_pdf_item(r.quarantine());
  std::this_thread::sleep_for(1500ms);  // several purges with a day of retention: still held
  CHECK(r.quarantine().get(id)->status == server::item_status::held);
  cfg.quarantine.retention = 1s;
  r.reload(cfg);  // SIGHUP: the quarantine tools get the new retention
  REQUIRE(wait_until([&] { return r.quarantine().get(id)->status == server::item_status::expired; }, 15s));
  CHECK_FALSE(fs::exists(cfg.quarantine.dir / "items" / id));
  const auto item = r.quarantine().get(id);
  REQUIRE(item);
  REQUIRE_FALSE(item->history.empty());
  CHECK(item->history.back().who == "mukai");
  CHECK(item->history.back().action == "purge");
  r.shutdown(5s);
}
