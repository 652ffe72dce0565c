// The relay's message events: one event per outcome of an attempt with the right recipients in
// each, and hostile replies and addresses escaped before they reach a JSON value.
#include "server/relay_events.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

using namespace mukai::server;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

json::object parsed(const log_event& ev) { return json::parse(ev.to_json("t", "info")).as_object(); }

}  // namespace

TEST_CASE("attempt_events: delivered, bounced and deferred recipients in one attempt") {
  spool_envelope env;
  env.mail_from = "sender@example.com";
  env.client_address = "192.0.2.1";
  env.tls = true;
  env.recipients = {{"ok@example.lg.jp", "", ""}, {"gone@example.lg.jp", "", ""}, {"busy\r\n@example.lg.jp", "", ""}};
  const auto now = std::chrono::system_clock::now();
  env.received = now - 90s;
  delivery_outcome outcome;
  outcome.recipients = {{0, rcpt_status::delivered, "250 2.0.0 Ok", "10.0.0.25:25"},
                        {1, rcpt_status::permanent, "550 5.1.1 unknown \x1b[2J user", "10.0.0.25:25"},
                        {2, rcpt_status::temporary, "451 4.3.0 try later", "10.0.0.25:25"}};
  hop_report hop;
  hop.hop = "smtp://lgwan:25";
  hop.tls = true;
  outcome.hops = {hop};
  delivery_state state;
  state.recipients = {{recipient_status::delivered, 1, ""}, {recipient_status::failed, 1, ""}, {recipient_status::pending, 1, ""}};
  const attempt_context c{"1m80zz0000000003", "abc@example.com", env, outcome, state, now, false, now + 300s,
                          "1m80zz0000000004", false};
  auto events = attempt_events(c);
  REQUIRE(events.size() == 3);
  CHECK(events[0].second.name() == "delivered");
  CHECK(events[1].second.name() == "bounced");
  CHECK(events[1].first == log_level::warning);
  CHECK(events[2].second.name() == "deferred");

  auto d = parsed(events[0].second);
  CHECK(d.at("queue_id").as_string() == "1m80zz0000000003");
  CHECK(d.at("message_id").as_string() == "abc@example.com");
  CHECK(d.at("recipients").as_array().size() == 1);
  CHECK(d.at("recipients").as_array()[0].at("to").as_string() == "ok@example.lg.jp");
  CHECK(d.at("relay").as_string() == "10.0.0.25:25");
  CHECK(d.at("relay_tls").as_bool());
  CHECK(d.at("latency_ms").to_number<std::uint64_t>() >= 90000);
  CHECK(d.at("finished").as_bool() == false);

  auto b = parsed(events[1].second);
  CHECK(b.at("recipients").as_array()[0].at("status").as_string() == "refused");
  CHECK(b.at("recipients").as_array()[0].at("reply").as_string() == "550 5.1.1 unknown \\x1B[2J user");
  CHECK(b.at("dsn_queue_id").as_string() == "1m80zz0000000004");

  auto f = parsed(events[2].second);
  CHECK(f.at("recipients").as_array()[0].at("to").as_string() == "busy\\x0D\\x0A@example.lg.jp");
  CHECK(f.at("next_attempt_s").to_number<std::uint64_t>() == 300);
  CHECK_FALSE(f.contains("dsn_queue_id"));
}

TEST_CASE("attempt_events: a finished message whose recipients were all delivered is one event") {
  spool_envelope env;
  env.recipients = {{"a@example.lg.jp", "", ""}};
  env.received = std::chrono::system_clock::now();
  delivery_outcome outcome;
  outcome.recipients = {{0, rcpt_status::delivered, "250 ok", ""}};
  delivery_state state;
  state.recipients = {{recipient_status::delivered, 1, ""}};
  const attempt_context c{"1m80zz0000000005", "", env, outcome, state, env.received, true, {}, "", true};
  auto events = attempt_events(c);
  REQUIRE(events.size() == 1);
  auto o = parsed(events[0].second);
  CHECK(o.at("finished").as_bool());
  CHECK(o.at("dsn").as_bool());
  CHECK_FALSE(o.contains("message_id"));  // unknown after a restart: omitted, not empty
}
