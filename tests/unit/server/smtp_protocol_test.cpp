// Transcript tests for the sans-I/O SMTP protocol engine (server/smtp_protocol.hpp).
// Every scenario is fed three ways (the whole transcript at once, line by line, one byte at a time)
// through a driver that behaves like the real I/O layer (keeps unconsumed input, discards it after
// STARTTLS/close, answers end_message from a scripted spool), and the three runs must agree exactly.
// Threading: single-threaded tests.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "server/smtp_protocol.hpp"

using namespace mukai::server;
using namespace std::string_literals;

namespace {

// ----------------------------------------------------------------------------------------------------
// Harness
// ----------------------------------------------------------------------------------------------------
enum class message_status { open, ended, aborted };

struct recorded_message {
  smtp_envelope envelope;
  std::string data;
  message_status status = message_status::open;
};

class recorder final : public smtp_event_sink {
 public:
  std::vector<std::string> replies;
  std::string log;  // replies and events in order, independent of how the input was split
  std::vector<recorded_message> messages;
  int tls_requests = 0;
  bool closed = false;

  void send_reply(std::string_view r) override {
    CHECK_FALSE(closed);
    replies.emplace_back(r);
    log.append(r);
  }
  void begin_message(const smtp_envelope& e) override {
    CHECK_FALSE(closed);
    CHECK((messages.empty() || messages.back().status != message_status::open));
    messages.push_back({e, {}, message_status::open});
    log.append("[begin]\n");
  }
  void append_message_data(std::string_view bytes) override {
    REQUIRE(!messages.empty());
    CHECK(messages.back().status == message_status::open);
    CHECK_FALSE(bytes.empty());
    messages.back().data.append(bytes);
  }
  void end_message() override {
    REQUIRE(!messages.empty());
    CHECK(messages.back().status == message_status::open);
    messages.back().status = message_status::ended;
    log.append("[end]\n");
  }
  void abort_message() override {
    REQUIRE(!messages.empty());
    CHECK(messages.back().status == message_status::open);
    messages.back().status = message_status::aborted;
    log.append("[abort]\n");
  }
  void start_tls() override {
    ++tls_requests;
    log.append("[tls]\n");
  }
  void close_connection() override {
    CHECK_FALSE(closed);
    closed = true;
    log.append("[close]\n");
  }
};

struct step {
  enum class kind { bytes, timeout, shutdown, shutdown_now, lost, storage_low, storage_ok } what = kind::bytes;
  std::string data;
};
step send(std::string data) { return {step::kind::bytes, std::move(data)}; }
step timeout() { return {step::kind::timeout, {}}; }
step shutdown() { return {step::kind::shutdown, {}}; }
step shutdown_now() { return {step::kind::shutdown_now, {}}; }
step lost() { return {step::kind::lost, {}}; }
step storage_low() { return {step::kind::storage_low, {}}; }
step storage_ok() { return {step::kind::storage_ok, {}}; }

struct spool_result {
  bool ok = true;
  std::string queue_id;  // "" = automatic "Q1", "Q2", ...
  smtp_spool_failure failure = smtp_spool_failure::temporary;
};
spool_result committed(std::string id) { return {true, std::move(id), smtp_spool_failure::temporary}; }
spool_result failed(smtp_spool_failure f) { return {false, {}, f}; }

smtp_server_config test_config() {
  smtp_server_config c;
  c.hostname = "mx.test";
  c.relay_domains = {"example.lg.jp", ".city.example.lg.jp"};
  c.limits.max_message_size = 1048576;
  return c;
}

struct scenario {
  smtp_server_config config = test_config();
  smtp_session_options options;
  std::vector<step> steps;
  std::vector<spool_result> results;  // answers to end_message, in order; then automatic commits
};

struct transcript {
  std::vector<std::string> replies;
  std::string log;
  std::vector<recorded_message> messages;
  bool closed = false;
  int tls_requests = 0;
  std::size_t commands = 0;
  std::size_t errors = 0;
  std::size_t accepted = 0;
  smtp_phase phase = smtp_phase::not_started;

  // "220 250 354 ..." one code per reply: the compact view most tests check.
  std::string codes() const {
    std::string out;
    for (const auto& r : replies) {
      if (!out.empty()) out += ' ';
      out += r.substr(0, 3);
    }
    return out;
  }
  std::string all() const {
    std::string out;
    for (const auto& r : replies) out += r;
    return out;
  }
  // The reply at index i (negative: from the end).
  const std::string& reply(int i) const {
    const auto index = i >= 0 ? static_cast<std::size_t>(i) : replies.size() - static_cast<std::size_t>(-i);
    REQUIRE(index < replies.size());
    return replies[index];
  }
};

enum class feed_mode { whole, lines, bytes, random };

const char* to_string(feed_mode m) {
  switch (m) {
    case feed_mode::whole: return "whole";
    case feed_mode::lines: return "line by line";
    case feed_mode::bytes: return "byte by byte";
    case feed_mode::random: return "random splits";
  }
  return "?";
}

std::vector<std::string> split(const std::string& s, feed_mode mode, std::mt19937& rng) {
  std::vector<std::string> pieces;
  switch (mode) {
    case feed_mode::whole:
      if (!s.empty()) pieces.push_back(s);
      break;
    case feed_mode::lines: {
      std::size_t begin = 0;
      while (begin < s.size()) {
        const std::size_t lf = s.find('\n', begin);
        const std::size_t end = lf == std::string::npos ? s.size() : lf + 1;
        pieces.push_back(s.substr(begin, end - begin));
        begin = end;
      }
      break;
    }
    case feed_mode::bytes:
      for (char c : s) pieces.emplace_back(1, c);
      break;
    case feed_mode::random: {
      std::size_t begin = 0;
      while (begin < s.size()) {
        const std::size_t len = std::uniform_int_distribution<std::size_t>(1, 9)(rng);
        pieces.push_back(s.substr(begin, len));
        begin += len;
      }
      break;
    }
  }
  return pieces;
}

// Drives the engine the way the session coroutine does.
transcript run(const scenario& sc, feed_mode mode, unsigned seed = 1) {
  std::mt19937 rng(seed);
  recorder rec;
  smtp_protocol p(std::make_shared<const smtp_server_config>(sc.config), sc.options, rec);
  CHECK_FALSE(p.wants_input());
  p.start();
  std::size_t next_result = 0;
  int auto_id = 0;
  std::string pending;  // the I/O layer's read buffer: what receive() has not consumed yet

  auto settle = [&] {
    for (;;) {
      while (!pending.empty() && p.wants_input()) {
        const std::size_t n = p.receive(pending);
        REQUIRE(n <= pending.size());
        REQUIRE(n > 0);  // progress: an engine that wants input always takes some
        pending.erase(0, n);
      }
      if (p.awaiting_message_result()) {
        CHECK(p.receive(pending) == 0);  // backpressure: nothing is consumed while the spool works
        if (next_result < sc.results.size()) {
          const spool_result& r = sc.results[next_result++];
          if (r.ok) {
            p.message_committed(r.queue_id.empty() ? "Q" + std::to_string(++auto_id) : r.queue_id);
          } else {
            p.message_failed(r.failure);
          }
        } else {
          p.message_committed("Q" + std::to_string(++auto_id));
        }
        continue;
      }
      break;
    }
    // After STARTTLS or close, what the client already sent is thrown away, never interpreted.
    if (p.awaiting_tls() || p.is_closed()) pending.clear();
  };

  for (const step& st : sc.steps) {
    switch (st.what) {
      case step::kind::bytes:
        for (const std::string& piece : split(st.data, mode, rng)) {
          if (p.awaiting_tls() || p.is_closed()) break;  // the rest of this flight is discarded
          pending += piece;
          settle();
        }
        // The handshake happens between two flights of client data.
        if (p.awaiting_tls()) {
          pending.clear();
          p.tls_established();
        }
        break;
      case step::kind::timeout:
        p.on_timeout();
        break;
      case step::kind::shutdown:
        p.begin_shutdown();
        break;
      case step::kind::shutdown_now:
        p.shutdown_now();
        settle();
        break;
      case step::kind::lost:
        p.connection_lost();
        break;
      case step::kind::storage_low:
        p.set_storage_low(true);
        break;
      case step::kind::storage_ok:
        p.set_storage_low(false);
        break;
    }
  }
  transcript t;
  t.replies = rec.replies;
  t.log = rec.log;
  t.messages = rec.messages;
  t.closed = rec.closed;
  t.tls_requests = rec.tls_requests;
  t.commands = p.commands();
  t.errors = p.errors();
  t.accepted = p.messages_accepted();
  t.phase = p.phase();
  for (const auto& r : t.replies) {  // every reply is well-formed: "ddd" then SP or "-", CRLF lines
    REQUIRE(r.size() >= 6);
    CHECK(r.substr(r.size() - 2) == "\r\n");
    std::size_t begin = 0;
    while (begin < r.size()) {
      const std::size_t crlf = r.find("\r\n", begin);
      REQUIRE(crlf != std::string::npos);
      const std::string line = r.substr(begin, crlf - begin);
      CHECK(line.find_first_of("\r\n") == std::string::npos);
      CHECK(line.size() >= 4);
      CHECK(line.substr(0, 3) == r.substr(0, 3));
      CHECK((line[3] == ' ') == (crlf + 2 == r.size()));
      begin = crlf + 2;
    }
  }
  return t;
}

bool same_envelope(const smtp_envelope& a, const smtp_envelope& b) {
  if (a.recipients.size() != b.recipients.size()) return false;
  for (std::size_t i = 0; i < a.recipients.size(); ++i) {
    if (a.recipients[i].mailbox != b.recipients[i].mailbox || a.recipients[i].orcpt != b.recipients[i].orcpt ||
        !(a.recipients[i].notify == b.recipients[i].notify))
      return false;
  }
  return a.helo_name == b.helo_name && a.esmtp == b.esmtp && a.tls == b.tls && a.sender == b.sender &&
         a.smtputf8 == b.smtputf8 && a.body == b.body && a.declared_size == b.declared_size && a.ret == b.ret &&
         a.envid == b.envid && a.chunking == b.chunking;
}

// Runs the scenario whole, line by line, byte by byte and with random splits; all must agree.
transcript run_all(const scenario& sc) {
  const transcript whole = run(sc, feed_mode::whole);
  for (feed_mode mode : {feed_mode::lines, feed_mode::bytes, feed_mode::random}) {
    for (unsigned seed = 1; seed <= (mode == feed_mode::random ? 3U : 1U); ++seed) {
      INFO("feed mode: " << std::string(to_string(mode)) << ", seed " << seed);
      const transcript other = run(sc, mode, seed);
      CHECK(other.log == whole.log);
      CHECK(other.closed == whole.closed);
      CHECK(other.tls_requests == whole.tls_requests);
      CHECK(other.commands == whole.commands);
      CHECK(other.errors == whole.errors);
      CHECK(other.accepted == whole.accepted);
      CHECK(other.phase == whole.phase);
      REQUIRE(other.messages.size() == whole.messages.size());
      for (std::size_t i = 0; i < whole.messages.size(); ++i) {
        CHECK(other.messages[i].status == whole.messages[i].status);
        // What an aborted message had passed on before its abort depends on the split; it is discarded.
        if (whole.messages[i].status != message_status::aborted) CHECK(other.messages[i].data == whole.messages[i].data);
        CHECK(same_envelope(other.messages[i].envelope, whole.messages[i].envelope));
      }
    }
  }
  return whole;
}

scenario with_steps(std::vector<step> steps) {
  scenario sc;
  sc.steps = std::move(steps);
  return sc;
}

// Common transcript pieces.
const std::string greeting = "220 mx.test ESMTP mukai\r\n";
const std::string ehlo = "EHLO client.example\r\n";
const std::string mail = "MAIL FROM:<alice@sender.example>\r\n";
const std::string rcpt = "RCPT TO:<bob@example.lg.jp>\r\n";
const std::string envelope_cmds = ehlo + mail + rcpt;
const std::string ehlo_reply_plain =
    "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1048576\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
    "250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
const std::string ehlo_reply_tls =
    "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1048576\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"
    "250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

// The code a lone command gets after EHLO (and MAIL/RCPT when `in_transaction`).
std::string reply_to(const std::string& command, bool in_transaction = false, scenario sc = {}) {
  sc.steps = {send((in_transaction ? envelope_cmds : ehlo) + command)};
  const transcript t = run_all(sc);
  return t.reply(-1);
}

}  // namespace

// ======================================================================================================
// Greeting, EHLO/HELO, simple commands
// ======================================================================================================
TEST_CASE("greeting and QUIT") {
  const transcript t = run_all(with_steps({send("QUIT\r\n")}));
  CHECK(t.all() == greeting + "221 2.0.0 Bye\r\n");
  CHECK(t.closed);
  CHECK(t.log == greeting + "221 2.0.0 Bye\r\n[close]\n");
}

TEST_CASE("input after QUIT is never interpreted") {
  const transcript t = run_all(with_steps({send("QUIT\r\nNOOP\r\nHELP\r\n"), send("NOOP\r\n")}));
  CHECK(t.codes() == "220 221");
  CHECK(t.commands == 1);
}

TEST_CASE("EHLO advertises the extensions without STARTTLS when TLS is unavailable") {
  const transcript t = run_all(with_steps({send(ehlo)}));
  CHECK(t.all() == greeting + ehlo_reply_plain);
}

TEST_CASE("EHLO advertises STARTTLS when TLS is available and not active") {
  scenario sc = with_steps({send(ehlo)});
  sc.config.tls_available = true;
  CHECK(run_all(sc).all() == greeting + ehlo_reply_tls);
  sc.options.tls_active = true;  // implicit TLS: nothing to upgrade
  CHECK(run_all(sc).all() == greeting + ehlo_reply_plain);
}

TEST_CASE("EHLO advertises the configured SIZE") {
  scenario sc = with_steps({send(ehlo)});
  sc.config.limits.max_message_size = 52428800;
  CHECK(run_all(sc).reply(1).find("250-SIZE 52428800\r\n") != std::string::npos);
}

TEST_CASE("HELO gets a plain 250 and no extensions") {
  const transcript t = run_all(with_steps({send("HELO client.example\r\n" + mail + rcpt + "DATA\r\nx\r\n.\r\n")}));
  CHECK(t.all() == greeting + "250 mx.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" +
                       "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK_FALSE(t.messages[0].envelope.esmtp);
  CHECK(t.messages[0].envelope.helo_name == "client.example");
  CHECK(received_with_protocol(t.messages[0].envelope) == "SMTP");
}

TEST_CASE("EHLO/HELO need a valid hostname argument") {
  CHECK(reply_to("EHLO\r\n") == "501 5.5.4 Syntax: EHLO hostname\r\n");
  CHECK(reply_to("HELO\r\n") == "501 5.5.4 Syntax: HELO hostname\r\n");
  CHECK(reply_to("EHLO two words\r\n") == "501 5.5.4 Syntax: EHLO hostname\r\n");
  CHECK(reply_to("EHLO " + std::string(256, 'a') + "\r\n") == "501 5.5.4 Syntax: EHLO hostname\r\n");
  CHECK(reply_to("EHLO h\xC3\xA9llo\r\n") == "501 5.5.4 Syntax: EHLO hostname\r\n");
  CHECK(reply_to("EHLO [192.0.2.1]\r\n").substr(0, 4) == "250-");
}

TEST_CASE("commands are case-insensitive") {
  const transcript t = run_all(with_steps({send(
      "ehlo client.example\r\nmail from:<a@sender.example>\r\nrcpt to:<b@EXAMPLE.LG.JP>\r\ndata\r\nx\r\n.\r\nquit\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 250 221");
}

TEST_CASE("NOOP, RSET, VRFY, HELP, EXPN and unknown commands") {
  const transcript t = run_all(with_steps({send(
      ehlo + "NOOP\r\nNOOP with an argument\r\nRSET\r\nVRFY bob\r\nVRFY\r\nHELP\r\nHELP MAIL\r\nEXPN staff\r\n"
             "TURN\r\nXYZZY\r\nRSET now\r\n")}));
  CHECK(t.reply(2) == "250 2.0.0 Ok\r\n");
  CHECK(t.reply(3) == "250 2.0.0 Ok\r\n");
  CHECK(t.reply(4) == "250 2.0.0 Ok\r\n");
  CHECK(t.reply(5) == "252 2.0.0 Cannot VRFY user; send RCPT to attempt delivery\r\n");
  CHECK(t.reply(6) == "501 5.5.4 Syntax: VRFY address\r\n");
  CHECK(t.reply(7) ==
        "214-2.0.0 mukai SMTP relay. Commands:\r\n"
        "214 2.0.0 EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS\r\n");
  CHECK(t.reply(8).substr(0, 3) == "214");
  CHECK(t.reply(9) == "502 5.5.1 Error: command not implemented\r\n");
  CHECK(t.reply(10) == "502 5.5.1 Error: command not implemented\r\n");
  CHECK(t.reply(11) == "500 5.5.1 Error: command not recognized\r\n");
  CHECK(t.reply(12) == "501 5.5.4 Syntax error: no arguments allowed\r\n");
  CHECK(t.errors == 5);
  CHECK_FALSE(t.closed);
}

TEST_CASE("QUIT with an argument is a syntax error") {
  CHECK(reply_to("QUIT now\r\n") == "501 5.5.4 Syntax error: no arguments allowed\r\n");
}

TEST_CASE("HTTP requests are cut off at once") {
  const transcript t = run_all(with_steps({send("GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n")}));
  CHECK(t.all() == greeting + "421 4.7.0 mx.test Error: non-SMTP command received\r\n");
  CHECK(t.closed);
  CHECK(run_all(with_steps({send("POST /x HTTP/1.0\r\n")})).closed);
  CHECK(run_all(with_steps({send("CONNECT mx.test:25 HTTP/1.1\r\n")})).closed);
}

// ======================================================================================================
// Sequencing
// ======================================================================================================
TEST_CASE("bad sequences get 503 5.5.1 / 554 5.5.1") {
  CHECK(run_all(with_steps({send(mail)})).reply(1) == "503 5.5.1 Error: send HELO/EHLO first\r\n");
  CHECK(reply_to(rcpt) == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(reply_to("DATA\r\n") == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(reply_to(mail + "DATA\r\n") == "554 5.5.1 Error: no valid recipients\r\n");
  CHECK(reply_to(mail, true) == "503 5.5.1 Error: nested MAIL command\r\n");
  CHECK(reply_to("DATA now\r\n", true) == "501 5.5.4 Syntax error: no arguments allowed\r\n");
}

TEST_CASE("RSET and EHLO clear the transaction") {
  CHECK(reply_to("RSET\r\n" + rcpt, true) == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(reply_to("RSET\r\nDATA\r\n", true) == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(reply_to(ehlo + "DATA\r\n", true) == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(reply_to("HELO c\r\n" + mail, true) == "250 2.1.0 Ok\r\n");
}

TEST_CASE("a full pipelined transaction gets its replies in order") {
  const transcript t = run_all(with_steps({send(
      ehlo + mail + rcpt + "RCPT TO:<stranger@elsewhere.example>\r\nRCPT TO:<carol@example.lg.jp>\r\n" +
      "DATA\r\nSubject: pipelined\r\n\r\nbody\r\n.\r\n" + mail + rcpt + "DATA\r\nsecond\r\n.\r\nQUIT\r\n")}));
  CHECK(t.codes() == "220 250 250 250 550 250 354 250 250 250 354 250 221");
  CHECK(t.reply(7) == "250 2.0.0 Ok: queued as Q1\r\n");
  CHECK(t.reply(11) == "250 2.0.0 Ok: queued as Q2\r\n");
  REQUIRE(t.messages.size() == 2);
  CHECK(t.messages[0].data == "Subject: pipelined\r\n\r\nbody\r\n");
  CHECK(t.messages[0].status == message_status::ended);
  REQUIRE(t.messages[0].envelope.recipients.size() == 2);
  CHECK(t.messages[0].envelope.recipients[0].mailbox == "bob@example.lg.jp");
  CHECK(t.messages[0].envelope.recipients[1].mailbox == "carol@example.lg.jp");
  CHECK(t.messages[1].data == "second\r\n");
  CHECK(t.accepted == 2);
  CHECK(t.log.find("[end]\n250 2.0.0 Ok: queued as Q1") != std::string::npos);
}

TEST_CASE("a basic DATA message and its envelope") {
  const transcript t =
      run_all(with_steps({send(envelope_cmds + "DATA\r\n"), send("Subject: hi\r\n\r\nHello\r\n.\r\n"), send("QUIT\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 250 221");
  REQUIRE(t.messages.size() == 1);
  const recorded_message& m = t.messages[0];
  CHECK(m.data == "Subject: hi\r\n\r\nHello\r\n");
  CHECK(m.status == message_status::ended);
  CHECK(m.envelope.sender == "alice@sender.example");
  CHECK(m.envelope.helo_name == "client.example");
  CHECK(m.envelope.esmtp);
  CHECK_FALSE(m.envelope.tls);
  CHECK_FALSE(m.envelope.chunking);
  CHECK(received_with_protocol(m.envelope) == "ESMTP");
  CHECK(t.log == greeting + ehlo_reply_plain + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" +
                     "354 End data with <CR><LF>.<CR><LF>\r\n[begin]\n[end]\n250 2.0.0 Ok: queued as Q1\r\n" +
                     "221 2.0.0 Bye\r\n[close]\n");
}

TEST_CASE("an empty message and a message of empty lines") {
  transcript t = run_all(with_steps({send(envelope_cmds + "DATA\r\n.\r\n")}));
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data.empty());
  CHECK(t.messages[0].status == message_status::ended);
  t = run_all(with_steps({send(envelope_cmds + "DATA\r\n\r\n\r\n.\r\n")}));
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == "\r\n\r\n");
}

TEST_CASE("dot-unstuffing") {
  const transcript u = run_all(with_steps({send(envelope_cmds + "DATA\r\n" +
                                                "Subject: dots\r\n\r\n..leading\r\n.x\r\n..\r\n...\r\n"
                                                "mid . dot\r\n. space\r\nend.\r\n.\r\n")}));
  REQUIRE(u.messages.size() == 1);
  CHECK(u.messages[0].data ==
        "Subject: dots\r\n\r\n.leading\r\nx\r\n.\r\n..\r\nmid . dot\r\n space\r\nend.\r\n");
  CHECK(u.codes() == "220 250 250 250 354 250");
}

TEST_CASE("a line that is only dots and the final dot right at the start") {
  const transcript t = run_all(with_steps({send(envelope_cmds + "DATA\r\n..\r\n.\r\n" + "NOOP\r\n")}));
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == ".\r\n");
  CHECK(t.codes() == "220 250 250 250 354 250 250");
}

TEST_CASE("null sender") {
  const transcript t = run_all(with_steps({send(ehlo + "MAIL FROM:<>\r\n" + rcpt + "DATA\r\nbounce\r\n.\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 250");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].envelope.sender.empty());
  CHECK(reply_to("RCPT TO:<>\r\n", true) == "501 5.1.3 Bad recipient address syntax\r\n");
}

TEST_CASE("source routes are accepted and stripped") {
  const transcript t = run_all(with_steps({send(ehlo + "MAIL FROM:<@a.example,@b.example:joe@c.example>\r\n" +
                                                "RCPT TO:<@relay.example:bob@example.lg.jp>\r\nDATA\r\nx\r\n.\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 250");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].envelope.sender == "joe@c.example");
  CHECK(t.messages[0].envelope.recipients.at(0).mailbox == "bob@example.lg.jp");
  CHECK(reply_to("MAIL FROM:<@a.example joe@c.example>\r\n").substr(0, 9) == "501 5.1.7");
  CHECK(reply_to("MAIL FROM:<@a.example,joe@c.example>\r\n").substr(0, 9) == "501 5.1.7");
  CHECK(reply_to("MAIL FROM:<@:joe@c.example>\r\n").substr(0, 9) == "501 5.1.7");
}

TEST_CASE("MAIL FROM tolerates a space after the colon but needs angle brackets") {
  CHECK(reply_to("MAIL FROM: <a@sender.example>\r\n") == "250 2.1.0 Ok\r\n");
  CHECK(reply_to("MAIL FROM:a@sender.example\r\n") == "501 5.1.7 Bad sender address syntax\r\n");
  CHECK(reply_to("MAIL FROM <a@sender.example>\r\n") == "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  CHECK(reply_to("MAIL TO:<a@sender.example>\r\n") == "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  CHECK(reply_to("RCPT FROM:<a@example.lg.jp>\r\n", true) == "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
  CHECK(reply_to("MAIL FROM:<a@sender.example>SIZE=1\r\n") == "501 5.1.7 Bad sender address syntax\r\n");
}

// ======================================================================================================
// Address syntax and lengths
// ======================================================================================================
TEST_CASE("sender address syntax") {
  const std::vector<std::string> valid = {
      "user@example.com",
      "first.last@example.com",
      "\"john doe\"@example.com",
      "\"a\\\"b\"@example.com",
      "\"\"@example.com",
      "\"a>b\"@example.com",
      "user@[192.0.2.1]",
      "user@[0.0.0.0]",
      "user@[IPv6:2001:db8::1]",
      "user@[IPv6:::1]",
      "user@[IPv6:2001:db8:1:2:3:4:5:6]",
      "user@[IPv6:::ffff:192.0.2.1]",
      "user@[IPv6:1:2:3:4:5:6:192.0.2.1]",
      "user@[x-tag:anything]",
      "a+tag@x.y",
      "!#$%&'*+-/=?^_`{|}~@example.com",
      "u@xn--bcher-kva.example",
      "u@1example.com",
      "u@a-b.example",
      "u@localhost",
  };
  for (const auto& a : valid) {
    INFO(a);
    CHECK(reply_to("MAIL FROM:<" + a + ">\r\n") == "250 2.1.0 Ok\r\n");
  }
  const std::vector<std::string> invalid = {
      "user",
      "@example.com",
      "user@",
      "user@@example.com",
      ".user@example.com",
      "user.@example.com",
      "us..er@example.com",
      "user@-example.com",
      "user@example-.com",
      "user@example..com",
      "user@.example.com",
      "user@example.com.",
      "user@[192.0.2.256]",
      "user@[1.2.3]",
      "user@[1.2.3.4.5]",
      "user@[1234.2.3.4]",
      "user@[IPv6:1::2::3]",
      "user@[IPv6:12345::]",
      "user@[IPv6:1:2:3:4:5:6:7:8:9]",
      "user@[IPv6:1:2:3:4:5:6:7]",
      "user@[IPv6:1.2.3.4::]",
      "user@[]",
      "user@[tag-:x]",
      "user@[:x]",
      "\"unterminated@example.com",
      "user name@example.com",
      "user@exa mple.com",
      "user@exa_mple.com",
      "us\"er@example.com",
      "user@example.com>",
      "<user@example.com",
      "user@" + std::string(64, 'a') + ".example",
      "postmaster",
  };
  for (const auto& a : invalid) {
    INFO(a);
    CHECK(reply_to("MAIL FROM:<" + a + ">\r\n") == "501 5.1.7 Bad sender address syntax\r\n");
  }
  CHECK(reply_to("MAIL FROM:<user@example.com\r\n") == "501 5.1.7 Bad sender address syntax\r\n");
  // A control character never gets as far as the address parser.
  CHECK(reply_to("MAIL FROM:<\"bad\\\x01\"@example.com>\r\n") == "500 5.5.2 Error: control character in command\r\n");
  CHECK(reply_to("MAIL FROM:\r\n") == "501 5.1.7 Bad sender address syntax\r\n");
}

TEST_CASE("address length limits: local part 64, path 256") {
  const std::string local64(64, 'l');
  CHECK(reply_to("MAIL FROM:<" + local64 + "@example.com>\r\n") == "250 2.1.0 Ok\r\n");
  CHECK(reply_to("MAIL FROM:<" + local64 + "l@example.com>\r\n") == "501 5.1.7 Sender address too long\r\n");
  // 252-octet domain: "<" + "u" + "@" + domain + ">" is exactly 256.
  const std::string domain252 = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') +
                                "." + std::string(60, 'd');
  REQUIRE(domain252.size() == 252);
  CHECK(reply_to("MAIL FROM:<u@" + domain252 + ">\r\n") == "250 2.1.0 Ok\r\n");
  CHECK(reply_to("MAIL FROM:<u@" + domain252 + "d>\r\n") == "501 5.1.7 Sender address too long\r\n");
  scenario sc;
  sc.config.relay_domains = {"*"};
  CHECK(reply_to("RCPT TO:<" + local64 + "l@example.lg.jp>\r\n", true, sc) ==
        "501 5.1.3 Recipient address too long\r\n");
  CHECK(reply_to("RCPT TO:<u@" + domain252 + ">\r\n", true, sc) == "250 2.1.5 Ok\r\n");
}

TEST_CASE("recipient address syntax") {
  CHECK(reply_to("RCPT TO:<bob@example.lg.jp>\r\n", true) == "250 2.1.5 Ok\r\n");
  CHECK(reply_to("RCPT TO:<\"bob smith\"@example.lg.jp>\r\n", true) == "250 2.1.5 Ok\r\n");
  CHECK(reply_to("RCPT TO:<bob@example..lg.jp>\r\n", true) == "501 5.1.3 Bad recipient address syntax\r\n");
  CHECK(reply_to("RCPT TO:bob@example.lg.jp\r\n", true) == "501 5.1.3 Bad recipient address syntax\r\n");
  CHECK(reply_to("RCPT TO:<bob>\r\n", true) == "501 5.1.3 Bad recipient address syntax\r\n");
}

TEST_CASE("<postmaster> without a domain") {
  CHECK(reply_to("RCPT TO:<Postmaster>\r\n", true) == "550 5.1.1 <postmaster>: Recipient address rejected\r\n");
  scenario sc = with_steps({send(envelope_cmds + "RCPT TO:<POSTMASTER>\r\nDATA\r\nx\r\n.\r\n")});
  sc.config.postmaster_address = "postmaster@example.lg.jp";
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 250 250 250 354 250");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].envelope.recipients.at(1).mailbox == "postmaster@example.lg.jp");
}

TEST_CASE("SMTPUTF8 addresses") {
  const std::string utf8_sender = "\xE7\x94\xA8\xE6\x88\xB7@\xE4\xBE\x8B\xE5\xAD\x90.example";  // 用户@例子.example
  const std::string utf8_rcpt = "\xCE\xB4\xCE\xBF\xCE\xBA@example.lg.jp";                      // δοκ@example.lg.jp
  const transcript t = run_all(with_steps({send(ehlo + "MAIL FROM:<" + utf8_sender + "> SMTPUTF8\r\nRCPT TO:<" +
                                                utf8_rcpt + ">\r\nDATA\r\nx\r\n.\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 250");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].envelope.smtputf8);
  CHECK(t.messages[0].envelope.sender == utf8_sender);
  CHECK(t.messages[0].envelope.recipients.at(0).mailbox == utf8_rcpt);
  CHECK(received_with_protocol(t.messages[0].envelope) == "UTF8SMTP");

  CHECK(reply_to("MAIL FROM:<" + utf8_sender + ">\r\n") ==
        "553 5.6.7 Error: non-ASCII sender address requires SMTPUTF8\r\n");
  CHECK(reply_to("RCPT TO:<" + utf8_rcpt + ">\r\n", true) ==
        "553 5.6.7 Error: non-ASCII recipient address requires SMTPUTF8\r\n");
  // Malformed UTF-8 is a syntax error even with SMTPUTF8: overlong "/", a lone continuation byte,
  // a surrogate, a truncated sequence.
  for (const std::string& bad : {"\xC0\xAF"s, "\x80"s, "\xED\xA0\x80"s, "\xE4\xBE"s, "\xF5\x80\x80\x80"s}) {
    CHECK(reply_to("MAIL FROM:<a" + bad + "b@example.com> SMTPUTF8\r\n") == "501 5.1.7 Bad sender address syntax\r\n");
  }
}

// ======================================================================================================
// MAIL/RCPT parameters: SIZE, BODY, SMTPUTF8, DSN
// ======================================================================================================
TEST_CASE("DSN and other MAIL/RCPT parameters are kept in the envelope") {
  const transcript t = run_all(with_steps({send(
      ehlo +
      "MAIL FROM:<alice@sender.example> SIZE=500 BODY=8BITMIME RET=HDRS ENVID=QQ314159+2Bx\r\n"
      "RCPT TO:<bob@example.lg.jp> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@example.lg.jp\r\n"
      "RCPT TO:<carol@example.lg.jp> NOTIFY=never\r\n"
      "RCPT TO:<dave@example.lg.jp>\r\n"
      "DATA\r\nx\r\n.\r\n")}));
  CHECK(t.codes() == "220 250 250 250 250 250 354 250");
  REQUIRE(t.messages.size() == 1);
  const smtp_envelope& e = t.messages[0].envelope;
  CHECK(e.declared_size == std::optional<std::uint64_t>(500));
  CHECK(e.body == smtp_body_type::eight_bit_mime);
  CHECK(e.ret == smtp_dsn_ret::headers);
  CHECK(e.envid == "QQ314159+2Bx");
  REQUIRE(e.recipients.size() == 3);
  CHECK(e.recipients[0].notify == smtp_dsn_notify{true, false, true, true, false});
  CHECK(e.recipients[0].orcpt == "rfc822;bob+2Bx@example.lg.jp");
  CHECK(e.recipients[1].notify == smtp_dsn_notify{true, true, false, false, false});
  CHECK(e.recipients[1].orcpt.empty());
  CHECK_FALSE(e.recipients[2].notify.given);
}

TEST_CASE("parameters of the previous transaction do not leak into the next") {
  const transcript t = run_all(with_steps({send(ehlo + "MAIL FROM:<a@s.example> RET=FULL ENVID=X BODY=7BIT\r\n" + rcpt +
                                                "DATA\r\nx\r\n.\r\n" + mail + rcpt + "DATA\r\ny\r\n.\r\n")}));
  REQUIRE(t.messages.size() == 2);
  CHECK(t.messages[0].envelope.ret == smtp_dsn_ret::full);
  CHECK(t.messages[0].envelope.body == smtp_body_type::seven_bit);
  CHECK(t.messages[1].envelope.ret == smtp_dsn_ret::unspecified);
  CHECK(t.messages[1].envelope.envid.empty());
  CHECK(t.messages[1].envelope.body == smtp_body_type::unspecified);
  CHECK(t.messages[1].envelope.recipients.size() == 1);
}

TEST_CASE("bad, duplicate and unknown parameters") {
  const std::string from = "MAIL FROM:<a@sender.example> ";
  CHECK(reply_to(from + "SIZE=abc\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "SIZE\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "SIZE=99999999999999999999999\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "SIZE=1 SIZE=2\r\n") == "501 5.5.4 Error: duplicate parameter\r\n");
  CHECK(reply_to(from + "BODY=9BIT\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "BODY=BINARYMIME\r\n") == "555 5.5.4 Error: unsupported parameter\r\n");
  CHECK(reply_to(from + "SMTPUTF8=yes\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "RET=ALL\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "ENVID=bad+zz\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "ENVID=" + std::string(101, 'x') + "\r\n") ==
        "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "ENVID=" + std::string(100, 'x') + "\r\n") == "250 2.1.0 Ok\r\n");
  CHECK(reply_to(from + "AUTH=<>\r\n") == "555 5.5.4 Error: unsupported parameter\r\n");
  CHECK(reply_to(from + "FOO=bar\r\n") == "555 5.5.4 Error: unsupported parameter\r\n");
  CHECK(reply_to(from + "=bar\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "SIZE=1=2\r\n") == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(from + "size=10  body=8bitmime\r\n") == "250 2.1.0 Ok\r\n");

  const std::string to = "RCPT TO:<bob@example.lg.jp> ";
  CHECK(reply_to(to + "NOTIFY=NEVER,SUCCESS\r\n", true) == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(to + "NOTIFY=SUCCESS,SUCCESS\r\n", true) == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(to + "NOTIFY=BOGUS\r\n", true) == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(to + "NOTIFY=SUCCESS,\r\n", true) == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(to + "NOTIFY=DELAY NOTIFY=DELAY\r\n", true) == "501 5.5.4 Error: duplicate parameter\r\n");
  CHECK(reply_to(to + "ORCPT=bob@example.lg.jp\r\n", true) == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(to + "ORCPT=rfc822;\r\n", true) == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(to + "ORCPT=rfc822;a+zz\r\n", true) == "501 5.5.4 Error: bad parameter syntax or value\r\n");
  CHECK(reply_to(to + "ORCPT=utf-8;bob@example.lg.jp\r\n", true) == "250 2.1.5 Ok\r\n");
  CHECK(reply_to(to + "ORCPT=rfc822;a ORCPT=rfc822;b\r\n", true) == "501 5.5.4 Error: duplicate parameter\r\n");
  CHECK(reply_to(to + "SIZE=10\r\n", true) == "555 5.5.4 Error: unsupported parameter\r\n");
}

TEST_CASE("parameters after HELO are refused") {
  const transcript t = run_all(with_steps({send("HELO c\r\nMAIL FROM:<a@s.example> SIZE=10\r\n")}));
  CHECK(t.reply(-1) == "555 5.5.4 Error: parameters require EHLO\r\n");
}

TEST_CASE("SIZE refusal at MAIL") {
  scenario sc;
  sc.config.limits.max_message_size = 100;
  CHECK(reply_to("MAIL FROM:<a@sender.example> SIZE=101\r\n", false, sc) ==
        "552 5.3.4 Error: message size exceeds fixed limit\r\n");
  CHECK(reply_to("MAIL FROM:<a@sender.example> SIZE=100\r\n", false, sc) == "250 2.1.0 Ok\r\n");
  // The refusal leaves no transaction behind.
  CHECK(reply_to("MAIL FROM:<a@sender.example> SIZE=101\r\n" + rcpt, false, sc) ==
        "503 5.5.1 Error: need MAIL command\r\n");
}

// ======================================================================================================
// Message size, line length and header limits enforced while reading
// ======================================================================================================
TEST_CASE("SIZE refusal during DATA: drain to the final dot, then 552, and the session goes on") {
  scenario sc = with_steps(
      {send(envelope_cmds + "DATA\r\n" + std::string(60, 'a') + "\r\n" + std::string(60, 'b') + "\r\n" +
            ".\r\n" + mail + rcpt + "DATA\r\nsmall\r\n.\r\n")});
  sc.config.limits.max_message_size = 100;
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 250 250 354 552 250 250 354 250");
  CHECK(t.reply(5) == "552 5.3.4 Error: message size exceeds fixed limit\r\n");
  REQUIRE(t.messages.size() == 2);
  CHECK(t.messages[0].status == message_status::aborted);
  CHECK(t.messages[0].data.size() <= 100);
  CHECK(t.messages[1].status == message_status::ended);
  CHECK(t.messages[1].data == "small\r\n");
  // The abort reaches the spool as soon as the limit is crossed, before the 552.
  CHECK(t.log.find("[abort]\n552") != std::string::npos);
}

TEST_CASE("a message of exactly the size limit is accepted") {
  scenario sc = with_steps({send(envelope_cmds + "DATA\r\n" + std::string(98, 'a') + "\r\n.\r\n")});
  sc.config.limits.max_message_size = 100;
  const transcript t = run_all(sc);
  CHECK(t.reply(-1) == "250 2.0.0 Ok: queued as Q1\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data.size() == 100);
  sc.steps = {send(envelope_cmds + "DATA\r\n" + std::string(99, 'a') + "\r\n.\r\n")};
  CHECK(run_all(sc).reply(-1).substr(0, 9) == "552 5.3.4");
}

TEST_CASE("text lines: 1000 octets with CRLF pass, longer lines refuse the message after draining") {
  const std::string ok_line(998, 'x');
  transcript t = run_all(with_steps({send(envelope_cmds + "DATA\r\n" + ok_line + "\r\n." + ok_line + "\r\n.\r\n")}));
  CHECK(t.reply(-1) == "250 2.0.0 Ok: queued as Q1\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == ok_line + "\r\n" + ok_line + "\r\n");  // a stuffed dot is not counted

  t = run_all(with_steps({send(envelope_cmds + "DATA\r\nshort\r\n" + ok_line + "y\r\nmore\r\n.\r\nNOOP\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 550 250");
  CHECK(t.reply(5) == "550 5.6.0 Error: text line too long\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);

  // A huge line without any line break is drained without buffering it.
  t = run_all(with_steps({send(envelope_cmds + "DATA\r\n" + std::string(20000, 'z') + "\r\n.\r\n")}));
  CHECK(t.reply(-1) == "550 5.6.0 Error: text line too long\r\n");
}

TEST_CASE("the header block size is limited") {
  scenario sc = with_steps({send(envelope_cmds + "DATA\r\nSubject: " + std::string(60, 'h') + "\r\n\r\nbody\r\n.\r\n")});
  sc.config.limits.max_header_size = 50;
  transcript t = run_all(sc);
  CHECK(t.reply(-1) == "552 5.3.4 Error: message header size exceeds limit\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
  // A big body behind a small header is fine.
  sc.steps = {send(envelope_cmds + "DATA\r\nSubject: x\r\n\r\n" + std::string(200, 'b') + "\r\n.\r\n")};
  t = run_all(sc);
  CHECK(t.reply(-1) == "250 2.0.0 Ok: queued as Q1\r\n");
  // Exactly at the limit: a 48-octet header line with its CRLF plus the blank line = 50.
  sc.steps = {send(envelope_cmds + "DATA\r\nX: " + std::string(43, 'h') + "\r\n\r\nb\r\n.\r\n")};
  CHECK(run_all(sc).reply(-1) == "250 2.0.0 Ok: queued as Q1\r\n");
  sc.steps = {send(envelope_cmds + "DATA\r\nX: " + std::string(44, 'h') + "\r\n\r\nb\r\n.\r\n")};
  CHECK(run_all(sc).reply(-1).substr(0, 9) == "552 5.3.4");
}

// ======================================================================================================
// SMTP smuggling
// ======================================================================================================
TEST_CASE("SMTP smuggling: bare LF / bare CR end-of-data lookalikes never end the message") {
  struct attempt {
    std::string separator;
    std::string reply;
  };
  const std::string lf_reply = "550 5.6.0 Error: bare <LF> received in message data\r\n";
  const std::string cr_reply = "550 5.6.0 Error: bare <CR> received in message data\r\n";
  const std::vector<attempt> attempts = {
      {"\n.\n", lf_reply},   {"\r.\r", cr_reply},   {"\r\n.\n", lf_reply}, {"\n.\r\n", lf_reply},
      {"\r.\r\n", cr_reply}, {"\r\n.\r", cr_reply}, {"\n.\r", lf_reply},   {"\r.\n", cr_reply},
      {"\n\n", lf_reply},    {"\r\r\n", cr_reply},
  };
  const std::string smuggled =
      "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.lg.jp>\r\nDATA\r\n"
      "Subject: smuggled\r\n\r\nspoofed\r\n";
  for (const attempt& a : attempts) {
    INFO("separator: " << doctest::toString(a.separator));
    const transcript t = run_all(with_steps({send(envelope_cmds + "DATA\r\nSubject: s\r\n\r\nhello" + a.separator +
                                                  smuggled + ".\r\nQUIT\r\n")}));
    // One message, refused; the smuggled commands were message text, never executed.
    CHECK(t.codes() == "220 250 250 250 354 550 221");
    CHECK(t.reply(5) == a.reply);
    REQUIRE(t.messages.size() == 1);
    CHECK(t.messages[0].status == message_status::aborted);
    CHECK(t.accepted == 0);
  }
}

TEST_CASE("SMTP smuggling with normalise_bare_lf: bare LF becomes CRLF but ends nothing") {
  const std::string smuggled =
      "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.lg.jp>\r\nDATA\r\nspoofed\r\n";
  for (const std::string& sep : {"\n.\n"s, "\r\n.\n"s, "\n.\r\n"s}) {
    INFO("separator: " << doctest::toString(sep));
    scenario sc = with_steps({send(envelope_cmds + "DATA\r\nSubject: s\r\n\r\nhello" + sep + smuggled + ".\r\nQUIT\r\n")});
    sc.config.limits.normalise_bare_lf = true;
    const transcript t = run_all(sc);
    CHECK(t.codes() == "220 250 250 250 354 250 221");
    REQUIRE(t.messages.size() == 1);
    CHECK(t.messages[0].data == "Subject: s\r\n\r\nhello\r\n.\r\n" + smuggled);
  }
  // Bare CR stays an error even when bare LF is normalised.
  scenario sc = with_steps({send(envelope_cmds + "DATA\r\nhello\r.\r" + smuggled + ".\r\n")});
  sc.config.limits.normalise_bare_lf = true;
  CHECK(run_all(sc).reply(-1) == "550 5.6.0 Error: bare <CR> received in message data\r\n");
}

TEST_CASE("normalise_bare_lf: line content, dot-unstuffing and line length after bare LF") {
  scenario sc = with_steps({send(envelope_cmds + "DATA\r\na\nb\n..c\n\n.\r\nd\r\n.\r\n")});
  sc.config.limits.normalise_bare_lf = true;
  const transcript t = run_all(sc);
  CHECK(t.reply(-1) == "250 2.0.0 Ok: queued as Q1\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == "a\r\nb\r\n.c\r\n\r\n.\r\nd\r\n");
  // The line ending at a bare LF is measured with the CRLF it becomes.
  sc.config.limits.max_text_line = 10;
  sc.steps = {send(envelope_cmds + "DATA\r\n12345678\nok\r\n.\r\n")};
  CHECK(run_all(sc).reply(-1) == "250 2.0.0 Ok: queued as Q1\r\n");
  sc.steps = {send(envelope_cmds + "DATA\r\n123456789\nok\r\n.\r\n")};
  CHECK(run_all(sc).reply(-1) == "550 5.6.0 Error: text line too long\r\n");
}

TEST_CASE("bare CR and LF inside message lines are refused (strict default)") {
  CHECK(reply_to("DATA\r\nabc\rdef\r\n.\r\n", true) == "550 5.6.0 Error: bare <CR> received in message data\r\n");
  CHECK(reply_to("DATA\r\nabc\ndef\r\n.\r\n", true) == "550 5.6.0 Error: bare <LF> received in message data\r\n");
  // "\n.\r\n" is not the end (the dot is mid-line); the real end follows.
  CHECK(reply_to("DATA\r\n\n.\r\n.\r\n", true) == "550 5.6.0 Error: bare <LF> received in message data\r\n");
  // First reason wins.
  scenario sc;
  sc.config.limits.max_message_size = 10;
  CHECK(reply_to("DATA\r\n" + std::string(20, 'x') + "\nabc\r\n.\r\n", true, sc) ==
        "552 5.3.4 Error: message size exceeds fixed limit\r\n");
}

// ======================================================================================================
// Command line bounds and garbage
// ======================================================================================================
TEST_CASE("command lines: 512 octets with CRLF pass, longer get 500 5.5.2 and are discarded") {
  const std::string noop512 = "NOOP " + std::string(505, 'x') + "\r\n";
  REQUIRE(noop512.size() == 512);
  CHECK(reply_to(noop512) == "250 2.0.0 Ok\r\n");
  const std::string noop513 = "NOOP " + std::string(506, 'x') + "\r\n";
  CHECK(reply_to(noop513) == "500 5.5.2 Error: command line too long\r\n");
  // A line far longer than any buffer: one reply, then the session continues normally.
  const transcript t = run_all(with_steps({send(ehlo + std::string(100000, 'A') + "\r\nNOOP\r\n")}));
  CHECK(t.codes() == "220 250 500 250");
  // The tail of an over-long line that looks like a command is not executed.
  const transcript u = run_all(with_steps({send(ehlo + std::string(600, ' ') + "QUIT\r\nNOOP\r\n")}));
  CHECK(u.codes() == "220 250 500 250");
  CHECK_FALSE(u.closed);
}

TEST_CASE("bare LF, control characters and empty lines in commands") {
  CHECK(reply_to("NOOP\n") == "500 5.5.2 Error: bare <LF> received; end lines with <CR><LF>\r\n");
  CHECK(reply_to("NO\x01OP\r\n") == "500 5.5.2 Error: control character in command\r\n");
  CHECK(reply_to("NOOP\rRSET\r\n") == "500 5.5.2 Error: control character in command\r\n");
  CHECK(reply_to("NOOP\0\r\n"s) == "500 5.5.2 Error: control character in command\r\n");
  CHECK(reply_to("NOOP\tx\r\n") == "500 5.5.2 Error: control character in command\r\n");
  CHECK(reply_to("\r\n") == "500 5.5.2 Error: bad syntax\r\n");
  CHECK(reply_to("   \r\n") == "500 5.5.2 Error: bad syntax\r\n");
  CHECK(reply_to("NOOP   \r\n") == "250 2.0.0 Ok\r\n");
  scenario sc;
  sc.config.limits.normalise_bare_lf = true;
  CHECK(reply_to("NOOP\n", false, sc) == "250 2.0.0 Ok\r\n");
}

TEST_CASE("too many errors close the session with 421 4.7.0") {
  scenario sc = with_steps({send("FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")});
  sc.config.limits.max_errors = 3;
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 500 500 500 421");
  CHECK(t.reply(-1) == "421 4.7.0 mx.test Error: too many errors\r\n");
  CHECK(t.closed);
  // Relay denials count as errors (address harvesting), 452 for too many recipients does not.
  scenario sc2 = with_steps({send(envelope_cmds + "RCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nNOOP\r\n")});
  sc2.config.limits.max_errors = 2;
  CHECK(run_all(sc2).codes() == "220 250 250 250 550 550 421");
}

TEST_CASE("the default error limit is 10") {
  std::string junk;
  for (int i = 0; i < 12; ++i) junk += "JUNK\r\n";
  const transcript t = run_all(with_steps({send(junk)}));
  CHECK(t.replies.size() == 12);  // greeting, 10 errors, 421
  CHECK(t.reply(-1).substr(0, 9) == "421 4.7.0");
}

TEST_CASE("caps on commands and messages per session") {
  scenario sc = with_steps({send("NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n")});
  sc.config.limits.max_commands = 3;
  transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 250 250 421");
  CHECK(t.reply(-1) == "421 4.7.0 mx.test Error: too many commands\r\n");

  scenario sc2 = with_steps({send(envelope_cmds + "DATA\r\n1\r\n.\r\n" + mail + rcpt + "DATA\r\n2\r\n.\r\n" + mail)});
  sc2.config.limits.max_messages = 2;
  t = run_all(sc2);
  CHECK(t.codes() == "220 250 250 250 354 250 250 250 354 250 421");
  CHECK(t.reply(-1) == "421 4.7.0 mx.test Error: too many messages in this session\r\n");
}

// ======================================================================================================
// Relay policy and client access
// ======================================================================================================
TEST_CASE("relay denial for domains not in relay_domains") {
  CHECK(reply_to("RCPT TO:<someone@elsewhere.example>\r\n", true) ==
        "550 5.7.1 <someone@elsewhere.example>: Relay access denied\r\n");
  CHECK(reply_to("RCPT TO:<a@EXAMPLE.lg.JP>\r\n", true) == "250 2.1.5 Ok\r\n");
  CHECK(reply_to("RCPT TO:<a@sub.example.lg.jp>\r\n", true) == "550 5.7.1 <a@sub.example.lg.jp>: Relay access denied\r\n");
  CHECK(reply_to("RCPT TO:<a@notexample.lg.jp>\r\n", true) == "550 5.7.1 <a@notexample.lg.jp>: Relay access denied\r\n");
  // ".city.example.lg.jp" matches subdomains only.
  CHECK(reply_to("RCPT TO:<a@x.city.example.lg.jp>\r\n", true) == "250 2.1.5 Ok\r\n");
  CHECK(reply_to("RCPT TO:<a@city.example.lg.jp>\r\n", true).substr(0, 9) == "550 5.7.1");
  CHECK(reply_to("RCPT TO:<a@[192.0.2.1]>\r\n", true).substr(0, 9) == "550 5.7.1");
  // A refused recipient does not count, and DATA with none accepted is refused.
  const transcript t = run_all(with_steps({send(ehlo + mail + "RCPT TO:<a@evil.example>\r\nDATA\r\n")}));
  CHECK(t.codes() == "220 250 250 550 554");
  CHECK(t.messages.empty());
}

TEST_CASE("relay_domains: empty relays nothing, \"*\" relays everything, literals match literally") {
  scenario none;
  none.config.relay_domains.clear();
  CHECK(reply_to(rcpt, true, none).substr(0, 9) == "550 5.7.1");
  scenario any;
  any.config.relay_domains = {"*"};
  CHECK(reply_to("RCPT TO:<a@anything.example>\r\n", true, any) == "250 2.1.5 Ok\r\n");
  scenario literal;
  literal.config.relay_domains = {"[192.0.2.1]"};
  CHECK(reply_to("RCPT TO:<a@[192.0.2.1]>\r\n", true, literal) == "250 2.1.5 Ok\r\n");
}

TEST_CASE("too many recipients: 452 4.5.3, the accepted ones still get the message") {
  scenario sc = with_steps({send(ehlo + mail + "RCPT TO:<a@example.lg.jp>\r\nRCPT TO:<b@example.lg.jp>\r\n" +
                                 "RCPT TO:<c@example.lg.jp>\r\nRCPT TO:<d@example.lg.jp>\r\nDATA\r\nx\r\n.\r\n")});
  sc.config.limits.max_recipients = 3;
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 250 250 250 250 452 354 250");
  CHECK(t.reply(6) == "452 4.5.3 Error: too many recipients\r\n");
  CHECK(t.errors == 0);
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].envelope.recipients.size() == 3);
}

TEST_CASE("client not allowed: 554 greeting, 503 to everything but QUIT") {
  scenario sc = with_steps({send(ehlo + mail + rcpt + "DATA\r\nNOOP\r\nQUIT\r\n")});
  sc.options.client_allowed = false;
  const transcript t = run_all(sc);
  CHECK(t.reply(0) == "554 5.7.1 mx.test Error: client not allowed\r\n");
  CHECK(t.codes() == "554 503 503 503 503 503 221");
  CHECK(t.reply(1) == "503 5.5.1 Error: access denied; send QUIT\r\n");
  CHECK(t.messages.empty());
  CHECK(t.closed);
  // ... and it is disconnected after too many errors.
  std::string junk;
  for (int i = 0; i < 20; ++i) junk += "NOOP\r\n";
  sc.steps = {send(junk)};
  const transcript u = run_all(sc);
  CHECK(u.replies.size() == 12);
  CHECK(u.reply(-1) == "421 4.7.0 mx.test Error: too many errors\r\n");
}

TEST_CASE("low storage: MAIL gets 452 4.3.1 until the spool recovers") {
  const transcript t =
      run_all(with_steps({send(ehlo), storage_low(), send(mail), storage_ok(), send(mail + rcpt + "DATA\r\nx\r\n.\r\n")}));
  CHECK(t.codes() == "220 250 452 250 250 354 250");
  CHECK(t.reply(2) == "452 4.3.1 Insufficient system storage\r\n");
}

// ======================================================================================================
// STARTTLS
// ======================================================================================================
TEST_CASE("STARTTLS: pipelined commands after it are dropped, the session is reset, EHLO again") {
  scenario sc = with_steps({
      send(ehlo + "STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.lg.jp>\r\nDATA\r\n"),
      send(mail),  // over TLS now: the pre-TLS EHLO is forgotten
      send(ehlo),
      send("STARTTLS\r\n"),
      send(mail + rcpt + "DATA\r\nsecure\r\n.\r\nQUIT\r\n"),
  });
  sc.config.tls_available = true;
  const transcript t = run_all(sc);
  CHECK(t.all() == greeting + ehlo_reply_tls + "220 2.0.0 Ready to start TLS\r\n" +
                       "503 5.5.1 Error: send HELO/EHLO first\r\n" + ehlo_reply_plain +
                       "503 5.5.1 Error: TLS already active\r\n" + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" +
                       "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 Bye\r\n");
  CHECK(t.tls_requests == 1);
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].envelope.tls);
  CHECK(t.messages[0].envelope.sender == "alice@sender.example");
  CHECK(received_with_protocol(t.messages[0].envelope) == "ESMTPS");
  CHECK(t.log.find("220 2.0.0 Ready to start TLS\r\n[tls]\n") != std::string::npos);
}

TEST_CASE("STARTTLS injection in a single packet, also after a partial line") {
  scenario sc = with_steps({send("EHLO a\r\nSTARTTLS\r\nQUIT\r\n"), send("NOOP\r\n")});
  sc.config.tls_available = true;
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 220 250");  // QUIT was plaintext injection: dropped
  CHECK_FALSE(t.closed);
  // The STARTTLS line itself arriving in pieces changes nothing.
  sc.steps = {send("EHLO a\r\nSTAR"), send("TTLS\r\nRSET\r\nQUIT\r\n"), send("QUIT\r\n")};
  const transcript u = run_all(sc);
  CHECK(u.codes() == "220 250 220 221");
}

TEST_CASE("STARTTLS refusals") {
  CHECK(reply_to("STARTTLS\r\n") == "502 5.5.1 Error: command not implemented\r\n");
  scenario sc;
  sc.config.tls_available = true;
  CHECK(reply_to("STARTTLS now\r\n", false, sc) == "501 5.5.4 Syntax error: no arguments allowed\r\n");
  CHECK(reply_to("STARTTLS\r\n", true, sc) == "503 5.5.1 Error: MAIL transaction in progress\r\n");
  sc.options.tls_active = true;
  CHECK(reply_to("STARTTLS\r\n", false, sc) == "503 5.5.1 Error: TLS already active\r\n");
}

TEST_CASE("TLS required: 530 5.7.0 until STARTTLS") {
  scenario sc = with_steps({send(ehlo + mail + rcpt + "VRFY bob\r\nDATA\r\nNOOP\r\nSTARTTLS\r\n"),
                            send(ehlo + mail + rcpt + "DATA\r\nx\r\n.\r\n")});
  sc.config.tls_available = true;
  sc.config.tls_required = true;
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 530 530 530 530 250 220 250 250 250 354 250");
  CHECK(t.reply(2) == "530 5.7.0 Must issue a STARTTLS command first\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].envelope.tls);
}

TEST_CASE("STARTTLS stops receive() right after its line") {
  recorder rec;
  auto config = std::make_shared<smtp_server_config>(test_config());
  config->tls_available = true;
  smtp_protocol p(config, {}, rec);
  p.start();
  const std::string input = "EHLO a\r\nSTARTTLS\r\nMAIL FROM:<x@y.example>\r\n";
  CHECK(p.receive(input) == input.find("MAIL"));
  CHECK(p.awaiting_tls());
  CHECK_FALSE(p.wants_input());
  CHECK(p.receive("NOOP\r\n") == 0);
  p.tls_established();
  CHECK(p.tls_active());
  CHECK(p.wants_input());
  CHECK(p.envelope().helo_name.empty());
}

// ======================================================================================================
// BDAT / CHUNKING
// ======================================================================================================
TEST_CASE("BDAT: chunks, LAST, and the envelope") {
  const transcript t = run_all(with_steps(
      {send(envelope_cmds + "BDAT 14\r\nSubject: b\r\n\r\n"), send("BDAT 5\r\nHello"), send("BDAT 7 LAST\r\n, world"),
       send("QUIT\r\n")}));
  CHECK(t.codes() == "220 250 250 250 250 250 250 221");
  CHECK(t.reply(4) == "250 2.0.0 Ok: 14 octets received\r\n");
  CHECK(t.reply(5) == "250 2.0.0 Ok: 5 octets received\r\n");
  CHECK(t.reply(6) == "250 2.0.0 Ok: queued as Q1\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == "Subject: b\r\n\r\nHello, world");
  CHECK(t.messages[0].envelope.chunking);
  CHECK(t.messages[0].status == message_status::ended);
}

TEST_CASE("BDAT is binary-safe: chunk octets are never taken for commands or terminators") {
  const std::string payload = "Subject: bin\r\n\r\n"s + "\0\x01\xff\xfe"s + "\r\n.\r\n" + "\n.\n" + "\r.\r" +
                              "QUIT\r\nMAIL FROM:<evil@attacker.example>\r\n" + std::string(1, '\0');
  const transcript t = run_all(with_steps({send(envelope_cmds + "BDAT " + std::to_string(payload.size()) +
                                                " LAST\r\n" + payload + "NOOP\r\nQUIT\r\n")}));
  CHECK(t.codes() == "220 250 250 250 250 250 221");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == payload);
}

TEST_CASE("BDAT 0 LAST ends a chunked message; BDAT LAST alone makes an empty one") {
  transcript t = run_all(with_steps({send(envelope_cmds + "BDAT 3\r\nabcBDAT 0 LAST\r\n")}));
  CHECK(t.codes() == "220 250 250 250 250 250");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == "abc");
  t = run_all(with_steps({send(envelope_cmds + "bdat 0 last\r\n")}));
  CHECK(t.reply(-1) == "250 2.0.0 Ok: queued as Q1\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data.empty());
}

TEST_CASE("BDAT out of sequence: the chunk is drained, never interpreted") {
  // Without MAIL: the chunk "RSET\r\nQUIT\r\n" is discarded, not executed.
  transcript t = run_all(with_steps({send(ehlo + "BDAT 12\r\nRSET\r\nQUIT\r\nNOOP\r\n")}));
  CHECK(t.codes() == "220 250 503 250");
  CHECK(t.reply(2) == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK_FALSE(t.closed);
  // Without RCPT.
  t = run_all(with_steps({send(ehlo + mail + "BDAT 4\r\nQUITNOOP\r\n")}));
  CHECK(t.codes() == "220 250 250 554 250");
  // Before EHLO, and after HELO.
  t = run_all(with_steps({send("BDAT 4 LAST\r\nQUITNOOP\r\n")}));
  CHECK(t.codes() == "220 503 250");
  t = run_all(with_steps({send("HELO c\r\n" + mail + rcpt + "BDAT 4 LAST\r\nQUITNOOP\r\n")}));
  CHECK(t.codes() == "220 250 250 250 503 250");
  CHECK(t.reply(4) == "503 5.5.1 Error: BDAT requires EHLO\r\n");
  CHECK(t.messages.empty());
}

TEST_CASE("BDAT syntax: an unreadable size closes, a bad option drains and fails the transaction") {
  transcript t = run_all(with_steps({send(envelope_cmds + "BDAT abc\r\nQUIT\r\n")}));
  CHECK(t.reply(-1) == "421 4.5.4 mx.test Error: unreadable BDAT chunk size, closing\r\n");
  CHECK(t.closed);
  CHECK(run_all(with_steps({send(envelope_cmds + "BDAT\r\n")})).closed);
  CHECK(run_all(with_steps({send(envelope_cmds + "BDAT -1\r\n")})).closed);
  CHECK(run_all(with_steps({send(envelope_cmds + "BDAT 99999999999999999999999\r\n")})).closed);

  t = run_all(with_steps({send(envelope_cmds + "BDAT 5\r\nhelloBDAT 3 FOO\r\nabcBDAT 2 LAST\r\nxyNOOP\r\n")}));
  CHECK(t.codes() == "220 250 250 250 250 501 503 250");
  CHECK(t.reply(5) == "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n");
  CHECK(t.reply(6) == "503 5.5.1 Error: transaction failed, chunk discarded; send RSET\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
  CHECK(t.messages[0].data == "hello");
}

TEST_CASE("BDAT over the size limit: 552, later pipelined chunks discarded, transaction gone") {
  scenario sc = with_steps({send(envelope_cmds + "BDAT 200\r\n" + std::string(200, 'x') + "BDAT 10\r\n0123456789" +
                                 "BDAT 5 LAST\r\nabcde" + rcpt + mail + rcpt + "BDAT 3 LAST\r\nabc")});
  sc.config.limits.max_message_size = 100;
  transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 250 250 552 503 503 503 250 250 250");
  CHECK(t.reply(4) == "552 5.3.4 Error: message size exceeds fixed limit\r\n");
  CHECK(t.reply(7) == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(t.errors == 1);  // only the RCPT without MAIL; discarded chunks are not the client's error
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == "abc");

  // Cumulative: the second chunk crosses the limit and aborts the message already begun.
  sc.steps = {send(envelope_cmds + "BDAT 60\r\n" + std::string(60, 'a') + "BDAT 60\r\n" + std::string(60, 'b') +
                   "BDAT 1 LAST\r\ncNOOP\r\n")};
  t = run_all(sc);
  CHECK(t.codes() == "220 250 250 250 250 552 503 250");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
  CHECK(t.messages[0].data == std::string(60, 'a'));
}

TEST_CASE("BDAT mixed with DATA and RCPT errors") {
  transcript t = run_all(with_steps({send(envelope_cmds + "BDAT 6\r\nhello DATA\r\n" + rcpt + "BDAT 5 LAST\r\nworld")}));
  CHECK(t.codes() == "220 250 250 250 250 503 503 250");
  CHECK(t.reply(5) == "503 5.5.1 Error: DATA not allowed after BDAT\r\n");
  CHECK(t.reply(6) == "503 5.5.1 Error: RCPT not allowed after BDAT\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].data == "hello world");
  CHECK(t.messages[0].envelope.recipients.size() == 1);
  // A refused DATA (no recipients) followed by BDAT in the next transaction.
  t = run_all(with_steps({send(ehlo + mail + "DATA\r\nRSET\r\n" + mail + rcpt + "BDAT 2 LAST\r\nok")}));
  CHECK(t.codes() == "220 250 250 554 250 250 250 250");
  // RSET in the middle of a chunked message aborts it.
  t = run_all(with_steps({send(envelope_cmds + "BDAT 3\r\nabcRSET\r\nBDAT 1 LAST\r\nx")}));
  CHECK(t.codes() == "220 250 250 250 250 250 503");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
}

TEST_CASE("BDAT header limit") {
  scenario sc = with_steps({send(envelope_cmds + "BDAT 40\r\n" + std::string(40, 'h') + "BDAT 2 LAST\r\nxxNOOP\r\n")});
  sc.config.limits.max_header_size = 20;
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 250 250 552 503 250");
  CHECK(t.reply(4) == "552 5.3.4 Error: message header size exceeds limit\r\n");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
}

// ======================================================================================================
// Spool results, shutdown, timeouts
// ======================================================================================================
TEST_CASE("message_failed answers 451 4.3.0 (or 554 5.3.0) and the session continues") {
  scenario sc = with_steps({send(envelope_cmds + "DATA\r\nx\r\n.\r\n" + mail + rcpt + "DATA\r\ny\r\n.\r\n" + mail +
                                 rcpt + "BDAT 1 LAST\r\nz")});
  sc.results = {failed(smtp_spool_failure::temporary), failed(smtp_spool_failure::permanent), committed("0F1E2D3C")};
  const transcript t = run_all(sc);
  CHECK(t.reply(5) == "451 4.3.0 Error: queue file write error\r\n");
  CHECK(t.reply(9) == "554 5.3.0 Error: message not accepted by the queue\r\n");
  CHECK(t.reply(-1) == "250 2.0.0 Ok: queued as 0F1E2D3C\r\n");
  CHECK(t.accepted == 1);
  CHECK(t.errors == 0);
}

TEST_CASE("backpressure: nothing is consumed while the spool works, then the pipeline resumes") {
  recorder rec;
  smtp_protocol p(std::make_shared<const smtp_server_config>(test_config()), {}, rec);
  p.start();
  const std::string first = envelope_cmds + "DATA\r\nbody\r\n.\r\n";
  const std::string rest = "NOOP\r\nQUIT\r\n";
  CHECK(p.receive(first + rest) == first.size());
  CHECK(p.awaiting_message_result());
  CHECK_FALSE(p.wants_input());
  CHECK(p.receive(rest) == 0);
  CHECK(rec.replies.back() == "354 End data with <CR><LF>.<CR><LF>\r\n");  // no 250 before the spool
  p.message_committed("ABC123");
  CHECK(rec.replies.back() == "250 2.0.0 Ok: queued as ABC123\r\n");
  CHECK(p.wants_input());
  CHECK(p.receive(rest) == rest.size());
  CHECK(rec.closed);
  CHECK(p.receive("NOOP\r\n") == 0);
}

TEST_CASE("receive() handles at most max_commands_per_receive lines per call") {
  recorder rec;
  auto config = std::make_shared<smtp_server_config>(test_config());
  config->limits.max_commands_per_receive = 2;
  smtp_protocol p(config, {}, rec);
  p.start();
  std::string input;
  for (int i = 0; i < 5; ++i) input += "NOOP\r\n";
  CHECK(p.receive(input) == 12);
  CHECK(rec.replies.size() == 3);
  CHECK(p.wants_input());
  CHECK(p.receive(std::string_view(input).substr(12)) == 12);
  CHECK(p.receive(std::string_view(input).substr(24)) == 6);
  CHECK(rec.replies.size() == 6);
}

TEST_CASE("shutdown: the next command gets 421 4.3.2, QUIT still gets 221") {
  transcript t = run_all(with_steps({send(ehlo), shutdown(), send("NOOP\r\nNOOP\r\n")}));
  CHECK(t.codes() == "220 250 421");
  CHECK(t.reply(-1) == "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n");
  CHECK(t.closed);
  t = run_all(with_steps({send(ehlo), shutdown(), send("QUIT\r\n")}));
  CHECK(t.codes() == "220 250 221");
  t = run_all(with_steps({send(ehlo), shutdown(), send(std::string(1000, 'x') + "\r\n")}));
  CHECK(t.codes() == "220 250 421");
}

TEST_CASE("shutdown during DATA: the message is finished and spooled first") {
  const transcript t = run_all(
      with_steps({send(envelope_cmds + "DATA\r\nfirst half\r\n"), shutdown(), send("second half\r\n.\r\nNOOP\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 250 421");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::ended);
  CHECK(t.messages[0].data == "first half\r\nsecond half\r\n");
}

TEST_CASE("shutdown_now aborts an open message") {
  const transcript t = run_all(with_steps({send(envelope_cmds + "DATA\r\nhalf\r\n"), shutdown_now(), send(".\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 421");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
  CHECK(t.closed);
}

TEST_CASE("shutdown_now while the spool works: the result is answered first, then 421") {
  recorder rec;
  smtp_protocol p(std::make_shared<const smtp_server_config>(test_config()), {}, rec);
  p.start();
  const std::string input = envelope_cmds + "DATA\r\nx\r\n.\r\n";
  CHECK(p.receive(input) == input.size());
  p.shutdown_now();
  CHECK_FALSE(rec.closed);
  p.message_committed("Q9");
  REQUIRE(rec.replies.size() >= 2);
  CHECK(rec.replies[rec.replies.size() - 2] == "250 2.0.0 Ok: queued as Q9\r\n");
  CHECK(rec.replies.back().substr(0, 9) == "421 4.3.2");
  CHECK(rec.closed);
}

TEST_CASE("timeouts: 421 4.4.2 when idle, and the open message is aborted") {
  transcript t = run_all(with_steps({send(ehlo), timeout()}));
  CHECK(t.all() == greeting + ehlo_reply_plain + "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  CHECK(t.closed);
  t = run_all(with_steps({send(envelope_cmds + "DATA\r\npartial"), timeout(), send("\r\n.\r\n")}));
  CHECK(t.codes() == "220 250 250 250 354 421");
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
  t = run_all(with_steps({send(envelope_cmds + "BDAT 10\r\nabc"), timeout()}));
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
}

TEST_CASE("a timeout while the spool works is ignored; a lost connection makes the engine inert") {
  recorder rec;
  smtp_protocol p(std::make_shared<const smtp_server_config>(test_config()), {}, rec);
  p.start();
  const std::string input = envelope_cmds + "DATA\r\nx\r\n.\r\n";
  CHECK(p.receive(input) == input.size());
  p.on_timeout();
  CHECK(p.awaiting_message_result());
  p.connection_lost();
  CHECK(p.is_closed());
  CHECK(rec.messages.back().status == message_status::ended);  // handed over: not aborted
  const auto replies = rec.replies.size();
  p.message_committed("Q1");  // ignored once closed
  CHECK(rec.replies.size() == replies);
}

TEST_CASE("connection_lost during DATA aborts the message") {
  const transcript t = run_all(with_steps({send(envelope_cmds + "DATA\r\nabc\r\n"), lost()}));
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].status == message_status::aborted);
  CHECK(t.phase == smtp_phase::closed);
  CHECK_FALSE(t.closed);  // no close_connection(): the connection is already gone
}

TEST_CASE("counters") {
  const transcript t = run_all(with_steps({send(envelope_cmds + "DATA\r\nx\r\n.\r\nBOGUS\r\nNOOP\r\n")}));
  CHECK(t.commands == 6);
  CHECK(t.errors == 1);
  CHECK(t.accepted == 1);
}

// ======================================================================================================
// Robustness: arbitrary input in arbitrary pieces
// ======================================================================================================
TEST_CASE("random input fed in random pieces keeps every invariant and does not depend on the split") {
  const std::vector<std::string> alphabet = {
      "EHLO x\r\n", "HELO y\r\n", "MAIL FROM:<a@b.example>\r\n", "MAIL FROM:<>\r\n", rcpt,
      "RCPT TO:<z@q.example>\r\n", "DATA\r\n", "BDAT 3\r\n", "BDAT 2 LAST\r\n", "BDAT x\r\n", "RSET\r\n",
      "NOOP\r\n", "QUIT\r\n", "STARTTLS\r\n", ".\r\n", "..\r\n", "\r\n", "\n", "\r", ".", "\n.\n", "\r\n.\r\n",
      "text", std::string(1, '\0'), "\xff\xfe", std::string(600, 'L'), "VRFY a\r\n", "SIZE=5 ", "<", ">",
  };
  for (unsigned seed = 1; seed <= 60; ++seed) {
    std::mt19937 rng(seed);
    std::string input;
    const int parts = std::uniform_int_distribution<int>(5, 80)(rng);
    for (int i = 0; i < parts; ++i)
      input += alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
    scenario sc = with_steps({send(input)});
    sc.config.tls_available = seed % 2 == 0;
    sc.config.limits.normalise_bare_lf = seed % 3 == 0;
    sc.config.limits.max_errors = 1000;
    sc.config.limits.max_message_size = 200;
    sc.config.limits.max_text_line = 50;
    sc.config.relay_domains = {"*"};
    sc.config.limits.max_commands_per_receive = seed % 4 == 0 ? 1 : 100;
    INFO("seed " << seed);
    const transcript t = run_all(sc);
    for (const auto& m : t.messages) {
      if (m.status == message_status::ended) CHECK(m.data.size() <= 200);
    }
  }
}

TEST_CASE("a long valid session gives the same result in any split") {
  std::string input = ehlo;
  for (int i = 0; i < 20; ++i) {
    input += mail + rcpt;
    if (i % 2 == 0) {
      input += "DATA\r\nSubject: " + std::to_string(i) + "\r\n\r\n..dot\r\nline\r\n.\r\n";
    } else {
      input += "BDAT 4\r\nab\r\nBDAT 3 LAST\r\n.\r\n";
    }
  }
  input += "QUIT\r\n";
  const transcript t = run_all(with_steps({send(input)}));
  CHECK(t.accepted == 20);
  REQUIRE(t.messages.size() == 20);
  CHECK(t.messages[0].data == "Subject: 0\r\n\r\n.dot\r\nline\r\n");
  CHECK(t.messages[1].data == "ab\r\n.\r\n");
  CHECK(t.closed);
}

TEST_CASE("the per-call line budget never changes the outcome") {
  std::string input = ehlo;
  for (int i = 0; i < 5; ++i) input += mail + rcpt + "RCPT TO:<x@elsewhere.example>\r\nDATA\r\nline\r\n.\r\nNOOP\r\n";
  input += "BOGUS\r\nQUIT\r\n";
  scenario sc = with_steps({send(input)});
  const transcript big = run_all(sc);
  sc.config.limits.max_commands_per_receive = 1;
  const transcript one = run_all(sc);
  CHECK(one.log == big.log);
  CHECK(one.accepted == 5);
}

TEST_CASE("BDAT while TLS is required: drained, 530") {
  scenario sc = with_steps({send(ehlo + "BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")});
  sc.config.tls_available = true;
  sc.config.tls_required = true;
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 250 530 250");
  CHECK_FALSE(t.closed);
}

TEST_CASE("a timeout or a failed handshake while waiting for TLS closes without a plaintext reply") {
  auto config = std::make_shared<smtp_server_config>(test_config());
  config->tls_available = true;
  {
    recorder rec;
    smtp_protocol p(config, {}, rec);
    p.start();
    CHECK(p.receive("STARTTLS\r\n") == 10);
    const auto replies = rec.replies.size();
    p.on_timeout();
    CHECK(p.is_closed());
    CHECK(rec.closed);
    CHECK(rec.replies.size() == replies);
    p.tls_established();  // a handshake completing after the close is ignored
    CHECK(p.is_closed());
  }
  {
    recorder rec;
    smtp_protocol p(config, {}, rec);
    p.start();
    CHECK(p.receive("STARTTLS\r\n") == 10);
    p.connection_lost();
    CHECK(p.is_closed());
    CHECK_FALSE(p.wants_input());
  }
}

TEST_CASE("shutdown before the greeting, and shutdown_now when idle") {
  {
    recorder rec;
    smtp_protocol p(std::make_shared<const smtp_server_config>(test_config()), {}, rec);
    p.begin_shutdown();
    p.start();
    REQUIRE(rec.replies.size() == 1);
    CHECK(rec.replies[0] == "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n");
    CHECK(rec.closed);
  }
  const transcript t = run_all(with_steps({send(ehlo + "NOOP"), shutdown_now()}));
  CHECK(t.codes() == "220 250 421");
  CHECK(t.closed);
}

TEST_CASE("implicit TLS sessions mark the envelope as TLS") {
  scenario sc = with_steps({send(envelope_cmds + "DATA\r\nx\r\n.\r\n")});
  sc.options.tls_active = true;
  const transcript t = run_all(sc);
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].envelope.tls);
  CHECK(received_with_protocol(t.messages[0].envelope) == "ESMTPS");
}

TEST_CASE("a STARTTLS-reset session keeps its error count") {
  scenario sc = with_steps({send("BAD1\r\nBAD2\r\nSTARTTLS\r\n"), send("BAD3\r\nNOOP\r\n")});
  sc.config.tls_available = true;
  sc.config.limits.max_errors = 3;
  const transcript t = run_all(sc);
  CHECK(t.codes() == "220 500 500 220 500 421");
}
