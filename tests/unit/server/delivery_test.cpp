// delivery: the retry arithmetic (backoff doubling and cap, expiry, the last attempt at the lifetime),
// record_attempt's state transitions and DSN list, remote_mta_name, and deliver() across hops:
// failover on connection failure and on 4xx for all, no failover after progress, maildir hops (on a
// thread pool) and a maildir that fails over to SMTP.
#include "server/delivery.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <boost/asio/thread_pool.hpp>
#include <fstream>

#include "tests/unit/server/fake_smtp_server.hpp"

using namespace mukai::server;
using namespace mukai::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using sys_clock = std::chrono::system_clock;

namespace {

class temp_dir {
 public:
  temp_dir() {
    std::string templ = (fs::temp_directory_path() / "mukai-delivery-XXXXXX").string();
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

const retry_policy policy{300s, 4000s, 5 * 24h};
const sys_clock::time_point t0 = sys_clock::time_point(std::chrono::seconds(1700000000));

spooled_message message_for(std::vector<std::string> rcpts) {
  spooled_message m;
  m.queue_id = "0h5k2m3n4p5q6r7s";
  m.envelope.mail_from = "sender@example.com";
  for (auto& r : rcpts) m.envelope.recipients.push_back({std::move(r), "", ""});
  m.envelope.received = t0;
  m.body = "Subject: x\r\n\r\nbody\r\n";
  return m;
}

delivery_state fresh_state(std::size_t n) {
  delivery_state s;
  s.recipients.resize(n);
  return s;
}

delivery_outcome outcome_of(std::vector<std::pair<rcpt_status, std::string>> rs) {
  delivery_outcome o;
  for (std::size_t i = 0; i < rs.size(); ++i) {
    o.recipients.push_back(recipient_result{i, rs[i].first, rs[i].second, "127.0.0.1:2526"});
  }
  return o;
}

smtp_client_options fast_options() {
  smtp_client_options o;
  o.helo_name = "mukai.test";
  for (auto* t : {&o.connect_timeout, &o.greeting_timeout, &o.helo_timeout, &o.starttls_timeout,
                  &o.mail_timeout, &o.rcpt_timeout, &o.data_init_timeout, &o.data_block_timeout,
                  &o.data_done_timeout, &o.quit_timeout}) {
    *t = 2s;
  }
  return o;
}

next_hop hop_of(const std::string& text) {
  auto r = parse_next_hop(text);
  REQUIRE(r.has_value());
  return *r;
}

unsigned short closed_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

std::vector<script_step> accepting_session(std::size_t rcpts) {
  std::vector<script_step> s = {say("220 fake.test ESMTP\r\n"), expect("EHLO"),
                                say("250-fake.test\r\n250 PIPELINING\r\n"), expect("MAIL FROM:")};
  std::string replies = "250 Ok\r\n";
  for (std::size_t i = 0; i < rcpts; ++i) {
    s.push_back(expect("RCPT TO:"));
    replies += "250 Ok\r\n";
  }
  s.push_back(expect("DATA"));
  s.push_back(say(replies + "354 go\r\n"));
  s.push_back(expect_data());
  s.push_back(say("250 2.0.0 Ok: queued\r\n"));
  s.push_back(expect("QUIT"));
  s.push_back(say("221 Bye\r\n"));
  return s;
}

struct delivery_fixture {
  asio::io_context ioc;
  asio::thread_pool pool{1};
  posix_file_ops files;
  smtp_client client{fast_options()};
  delivery_services services{client, files, pool.get_executor()};
  ~delivery_fixture() { pool.join(); }

  delivery_outcome run(const spooled_message& m, const std::vector<next_hop>& hops,
                       const std::vector<std::size_t>& rcpts, fake_smtp_server* server = nullptr) {
    auto state = spawn(ioc, deliver(m, hops, rcpts, services));
    REQUIRE(run_until(ioc, [&] { return state->done && (server == nullptr || server->all_done()); }));
    if (state->error) std::rethrow_exception(state->error);
    return std::move(*state->value);
  }
};

}  // namespace

TEST_CASE("backoff doubles from min_backoff and stops at max_backoff") {
  CHECK(backoff_delay(0, policy) == 300s);
  CHECK(backoff_delay(1, policy) == 300s);
  CHECK(backoff_delay(2, policy) == 600s);
  CHECK(backoff_delay(3, policy) == 1200s);
  CHECK(backoff_delay(4, policy) == 2400s);
  CHECK(backoff_delay(5, policy) == 4000s);
  CHECK(backoff_delay(6, policy) == 4000s);
  CHECK(backoff_delay(1000000, policy) == 4000s);
  CHECK(backoff_delay(UINT32_MAX, policy) == 4000s);
  // max below min: min wins; zero stays zero.
  CHECK(backoff_delay(3, retry_policy{600s, 60s, 24h}) == 600s);
  CHECK(backoff_delay(3, retry_policy{0s, 60s, 24h}) == 0s);
  CHECK(backoff_delay(40, retry_policy{1s, std::chrono::seconds(INT64_MAX / 4), 24h}) ==
        std::chrono::seconds(1LL << 39));
}

TEST_CASE("expiry and the next attempt time") {
  CHECK(expiry_time(t0, policy) == t0 + 5 * 24h);
  CHECK_FALSE(is_expired(t0, t0 + 5 * 24h - 1s, policy));
  CHECK(is_expired(t0, t0 + 5 * 24h, policy));
  CHECK(next_attempt_time(t0, 1, t0 + 10s, policy) == t0 + 310s);
  CHECK(next_attempt_time(t0, 3, t0 + 1h, policy) == t0 + 1h + 1200s);
  // Never after the expiry: one last attempt when the lifetime ends.
  CHECK(next_attempt_time(t0, 9, t0 + 5 * 24h - 100s, policy) == t0 + 5 * 24h);
  // Never in the past.
  CHECK(next_attempt_time(t0, 9, t0 + 6 * 24h, policy) == t0 + 6 * 24h);
  const auto from_config = retry_policy::from_config(mukai::config::delivery_config{});
  CHECK(from_config.min_backoff == 300s);
  CHECK(from_config.max_backoff == 4000s);
  CHECK(from_config.max_queue_lifetime == 5 * 24h);
}

TEST_CASE("record_attempt: delivered, failed and deferred recipients") {
  const auto m = message_for({"a@x", "b@x", "c@x"});
  auto state = fresh_state(3);
  auto summary = record_attempt(state, m.envelope,
                                outcome_of({{rcpt_status::delivered, "250 ok"},
                                            {rcpt_status::permanent, "550 5.1.1 unknown"},
                                            {rcpt_status::temporary, "450 4.2.1 busy"}}),
                                t0 + 1s, policy);
  CHECK_FALSE(summary.finished);
  CHECK(summary.delivered == 1);
  CHECK(summary.failed == 1);
  CHECK(summary.deferred == 1);
  CHECK(summary.next_attempt == t0 + 301s);
  CHECK(state.next_attempt == summary.next_attempt);
  CHECK(state.attempts == 1);
  CHECK(state.recipients[0].status == recipient_status::delivered);
  CHECK(state.recipients[1].status == recipient_status::failed);
  CHECK(state.recipients[2].status == recipient_status::pending);
  CHECK(state.recipients[2].last_reply == "450 4.2.1 busy");
  CHECK(state.recipients[2].attempts == 1);
  REQUIRE(summary.newly_failed.size() == 1);
  CHECK(summary.newly_failed[0].index == 1);
  CHECK(summary.newly_failed[0].last_reply == "550 5.1.1 unknown");
  CHECK(summary.newly_failed[0].remote_mta == "127.0.0.1");
  CHECK_FALSE(summary.newly_failed[0].expired);

  // Second attempt: only c is pending; a result for a final recipient changes nothing.
  summary = record_attempt(state, m.envelope,
                           outcome_of({{rcpt_status::permanent, "550 late"},
                                       {rcpt_status::delivered, "250 late"},
                                       {rcpt_status::temporary, "451 again"}}),
                           t0 + 400s, policy);
  CHECK(state.recipients[0].status == recipient_status::delivered);
  CHECK(state.recipients[1].status == recipient_status::failed);
  CHECK(state.recipients[1].last_reply == "550 5.1.1 unknown");
  CHECK(summary.newly_failed.empty());
  CHECK(state.attempts == 2);
  CHECK(summary.next_attempt == t0 + 400s + 600s);

  summary = record_attempt(state, m.envelope,
                           outcome_of({{rcpt_status::delivered, ""},
                                       {rcpt_status::delivered, ""},
                                       {rcpt_status::delivered, "250 finally"}}),
                           t0 + 2000s, policy);
  CHECK(summary.finished);
  CHECK(state.done());
  CHECK(summary.deferred == 0);
}

TEST_CASE("record_attempt: expiry fails every pending recipient, with its last reply") {
  const auto m = message_for({"a@x", "b@x"});
  auto state = fresh_state(2);
  (void)record_attempt(
      state, m.envelope,
      outcome_of({{rcpt_status::temporary, "451 4.3.0 later"}, {rcpt_status::delivered, "250 ok"}}), t0 + 1h,
      policy);
  // The last attempt, at the lifetime: still temporary -> expired.
  auto summary = record_attempt(state, m.envelope, outcome_of({{rcpt_status::temporary, "452 4.2.2 full"}}),
                                t0 + 5 * 24h, policy);
  CHECK(summary.finished);
  CHECK(state.recipients[0].status == recipient_status::failed);
  CHECK(state.recipients[1].status == recipient_status::delivered);
  REQUIRE(summary.newly_failed.size() == 1);
  CHECK(summary.newly_failed[0].expired);
  CHECK(summary.newly_failed[0].last_reply == "452 4.2.2 full");
  CHECK(summary.failed == 1);
  CHECK(summary.deferred == 0);
}

TEST_CASE("pending_recipients and remote_mta_name") {
  delivery_state s = fresh_state(4);
  s.recipients[1].status = recipient_status::delivered;
  s.recipients[3].status = recipient_status::failed;
  CHECK(pending_recipients(s) == std::vector<std::size_t>{0, 2});
  CHECK(remote_mta_name("127.0.0.1:2526") == "127.0.0.1");
  CHECK(remote_mta_name("[::1]:2526") == "[::1]");
  CHECK(remote_mta_name("mx.example[192.0.2.1]:25") == "mx.example");
  CHECK(remote_mta_name("maildir:/x").empty());
  CHECK(remote_mta_name("").empty());
}

TEST_CASE("deliver: failover after a connection failure") {
  delivery_fixture f;
  fake_smtp_server server(f.ioc, {accepting_session(2)});
  const auto m = message_for({"a@x.lg.jp", "b@x.lg.jp"});
  const std::vector<next_hop> hops = {
      hop_of("smtp://127.0.0.1:" + std::to_string(closed_port()) + "?starttls=off"),
      hop_of("smtp://127.0.0.1:" + std::to_string(server.port()) + "?starttls=off")};
  auto out = f.run(m, hops, {0, 1}, &server);
  REQUIRE(out.recipients.size() == 2);
  for (const auto& r : out.recipients) CHECK(r.status == rcpt_status::delivered);
  REQUIRE(out.hops.size() == 2);
  CHECK(out.hops[0].error);
  CHECK(out.hops[0].temporary == 2);
  CHECK_FALSE(out.hops[1].error);
  CHECK(out.hops[1].delivered == 2);
}

TEST_CASE("deliver: failover when every recipient got a 4xx; none after progress") {
  delivery_fixture f;
  fake_smtp_server first(f.ioc, {{say("220 a ESMTP\r\n"), expect("EHLO"), say("250 a\r\n"), expect("MAIL"),
                                  say("451 4.3.0 try later\r\n"), expect("QUIT"), say("221 bye\r\n")}});
  fake_smtp_server second(f.ioc, {accepting_session(1)});
  const auto m = message_for({"a@x.lg.jp"});
  std::vector<next_hop> hops = {
      hop_of("smtp://127.0.0.1:" + std::to_string(first.port()) + "?starttls=off"),
      hop_of("smtp://127.0.0.1:" + std::to_string(second.port()) + "?starttls=off")};
  auto out = f.run(m, hops, {0}, &second);
  CHECK(out.recipients.at(0).status == rcpt_status::delivered);
  CHECK(out.hops.size() == 2);

  // Partial progress at the first hop: the 4xx recipient is not tried at the second.
  delivery_fixture g;
  fake_smtp_server partial(
      g.ioc, {{say("220 a ESMTP\r\n"), expect("EHLO"), say("250 a\r\n"), expect("MAIL"), say("250 ok\r\n"),
               expect("RCPT TO:<a@"), say("250 ok\r\n"), expect("RCPT TO:<b@"), say("450 4.2.1 busy\r\n"),
               expect("DATA"), say("354 go\r\n"), expect_data(), say("250 ok\r\n"), expect("QUIT"),
               say("221 bye\r\n")}});
  fake_smtp_server unused(g.ioc, {});
  const auto m2 = message_for({"a@x.lg.jp", "b@x.lg.jp"});
  hops = {hop_of("smtp://127.0.0.1:" + std::to_string(partial.port()) + "?starttls=off"),
          hop_of("smtp://127.0.0.1:" + std::to_string(unused.port()) + "?starttls=off")};
  out = g.run(m2, hops, {0, 1}, &partial);
  CHECK(out.recipients.at(0).status == rcpt_status::delivered);
  CHECK(out.recipients.at(1).status == rcpt_status::temporary);
  CHECK(out.recipients.at(1).reply == "450 4.2.1 busy");
  CHECK(out.hops.size() == 1);
}

TEST_CASE("deliver: maildir hop, on the blocking executor, one file for all recipients") {
  temp_dir t;
  delivery_fixture f;
  const auto m = message_for({"a@x.lg.jp", "b@x.lg.jp", "c@x.lg.jp"});
  const std::vector<next_hop> hops = {hop_of("maildir:" + (t.path() / "out").string())};
  auto out = f.run(m, hops, {0, 2});
  REQUIRE(out.recipients.size() == 2);
  CHECK(out.recipients[0].index == 0);
  CHECK(out.recipients[1].index == 2);
  for (const auto& r : out.recipients) {
    CHECK(r.status == rcpt_status::delivered);
    CHECK(r.reply.starts_with("2.0.0 delivered to maildir as "));
  }
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(t.path() / "out" / "new")) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
}

TEST_CASE("deliver: a failing maildir is temporary and fails over; no hops at all is temporary") {
  temp_dir t;
  std::ofstream(t.path() / "not-a-dir") << "x";
  delivery_fixture f;
  fake_smtp_server server(f.ioc, {accepting_session(1)});
  const auto m = message_for({"a@x.lg.jp"});
  const std::vector<next_hop> hops = {
      hop_of("maildir:" + (t.path() / "not-a-dir").string()),
      hop_of("smtp://127.0.0.1:" + std::to_string(server.port()) + "?starttls=off")};
  auto out = f.run(m, hops, {0}, &server);
  CHECK(out.recipients.at(0).status == rcpt_status::delivered);
  REQUIRE(out.hops.size() == 2);
  CHECK(out.hops[0].error == std::errc::not_a_directory);
  CHECK(out.hops[0].error_text.starts_with("4.3.0 maildir delivery to "));

  auto none = f.run(m, {}, {0});
  CHECK(none.recipients.at(0).status == rcpt_status::temporary);
  CHECK(none.hops.empty());
}
