// The integration harness itself, against real Postfix and smtp-sink on loopback: a private
// Postfix relays to smtp-sink; a sink that refuses with 4xx leaves mail queued until flush();
// Postfix relays to a second Postfix that delivers into Maildirs. These are the shapes the mukai
// integration tests use (Internet-side Postfix -> mukai -> receiving side), minus mukai.
// Every process and directory belongs to an RAII object declared after the temp_dir, so a failed
// REQUIRE still stops Postfix and smtp-sink before the directory is removed.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/postfix_test_env.hpp"
#include "tests/support/postfix_instance.hpp"
#include "tests/support/process.hpp"
#include "tests/support/smtp_send.hpp"
#include "tests/support/smtp_sink.hpp"
#include "tests/support/temp_dir.hpp"

namespace {

using namespace mukai::testing;
using namespace std::chrono_literals;

std::string body_of(int i) {
  return "Line one of message " + std::to_string(i) +
         ".\r\n"
         ".A line that starts with a dot.\r\n"
         "..Two dots.\r\n"
         ".\r\n"
         "\r\n"
         "Last line.\r\n";
}

std::string message_of(int i, const std::vector<std::string>& rcpts) {
  std::string to;
  for (const auto& r : rcpts) to += (to.empty() ? "" : ", ") + r;
  return "From: <sender@internet.test>\r\n"
         "To: " +
         to +
         "\r\n"
         "Subject: harness message " +
         std::to_string(i) +
         "\r\n"
         "Message-ID: <harness-" +
         std::to_string(i) +
         "@internet.test>\r\n"
         "Date: Thu, 1 Jan 2026 00:00:00 +0900\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=us-ascii\r\n"
         "\r\n" +
         body_of(i);
}

std::vector<std::string> rcpts_of(int i) {
  return {"alice" + std::to_string(i) + "@lgwan.test", "bob" + std::to_string(i) + "@lgwan.test"};
}

std::string lf_to_crlf(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out.push_back('\r');
    out.push_back(c);
  }
  return out;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

void send_all(const postfix_instance& mta, int count,
              const std::function<std::vector<std::string>(int)>& rcpts) {
  for (int i = 0; i < count; ++i) {
    const auto r = mta.send("sender@internet.test", rcpts(i), message_of(i, rcpts(i)));
    INFO("transcript:\n"
         << [&] {
              std::string t;
              for (const auto& line : r.transcript) t += line + "\n";
              return t + r.error;
            }());
    REQUIRE(r.ok);
    CHECK(queued_as(r.last_reply).has_value());
  }
}

}  // namespace

TEST_CASE("encode_data dot-stuffs, normalizes line ends and terminates") {
  CHECK(encode_data("a\n.b\r\n..c", true) == "a\r\n..b\r\n...c\r\n.\r\n");
  CHECK(encode_data(".", true) == "..\r\n.\r\n");
  CHECK(encode_data("", true) == ".\r\n");
  CHECK(encode_data("a\n.b\r\n", false) == "a\n.b\r\n.\r\n");  // a bare LF does not start a line
  CHECK(queued_as("250 2.0.0 Ok: queued as 3F2A1B") == std::optional<std::string>("3F2A1B"));
  CHECK_FALSE(queued_as("250 2.0.0 Ok").has_value());
}

TEST_CASE("parse_sink_record reads smtp-sink's envelope lines and drops its Received header") {
  const auto m = parse_sink_record(
      "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: internet.test\n"
      "X-Mail-Args: <a@internet.test> SIZE=10\nX-Rcpt-Args: <x@lgwan.test> ORCPT=rfc822;x@lgwan.test\n"
      "X-Rcpt-Args: <y@lgwan.test>\nReceived: from internet.test ([127.0.0.1])\n\tby sink.test (smtp-sink) "
      "with "
      "ESMTP id 1;\n\tThu, 1 Jan 2026 00:00:00 +0000 (UTC)\nSubject: s\n\nbody\n.dot\n\n");
  CHECK(m.helo == "internet.test");
  CHECK(m.mail_from == "a@internet.test");
  CHECK(m.rcpts == std::vector<std::string>{"x@lgwan.test", "y@lgwan.test"});
  CHECK(m.content == "Subject: s\r\n\r\nbody\r\n.dot\r\n");
  CHECK(m.header("subject") == "s");
  CHECK(m.body() == "body\r\n.dot\r\n");
}

TEST_CASE("a private Postfix relays to smtp-sink: 5 messages with 2 recipients each") {
  skip_unless_postfix_usable();
  temp_dir tmp("mukai-postfix-harness");
  make_searchable(tmp.path());
  smtp_sink sink({.dir = tmp.path() / "sink"});
  postfix_instance mta(
      {.dir = tmp.path() / "internet", .myhostname = "internet.test", .relayhost = sink.relayhost()});
  mta.start();
  REQUIRE(mta.running());
  CHECK(mta.postconf("relayhost") == sink.relayhost());
  CHECK(mta.postconf("inet_interfaces") == "127.0.0.1");

  send_all(mta, 5, rcpts_of);
  INFO("maillog:\n" << mta.log_text());
  REQUIRE(mta.wait_queue_empty(60s));
  REQUIRE(sink.wait_for_messages(5, 10s));
  std::this_thread::sleep_for(200ms);  // nothing more may arrive
  const auto messages = sink.messages();
  REQUIRE(messages.size() == 5);
  std::vector<int> seen;
  for (const auto& m : messages) {
    const std::string subject = m.header("Subject");
    REQUIRE(subject.rfind("harness message ", 0) == 0);
    const int i = std::stoi(subject.substr(16));
    seen.push_back(i);
    CHECK(m.mail_from == "sender@internet.test");
    auto rcpts = m.rcpts;
    std::sort(rcpts.begin(), rcpts.end());
    CHECK(rcpts == rcpts_of(i));
    CHECK(m.body() == body_of(i));  // byte for byte, dot-stuffing undone
    CHECK(m.header("Received").find("by internet.test (Postfix)") != std::string::npos);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(mta.wait_for_log("status=sent", 10, 10s));
  CHECK(count_of(mta.log_text(), "status=sent") == 10);
}

TEST_CASE("mail refused with 4xx stays queued; after the next hop recovers, flush() delivers it") {
  skip_unless_postfix_usable();
  temp_dir tmp("mukai-postfix-harness");
  make_searchable(tmp.path());
  smtp_sink sink({.dir = tmp.path() / "sink", .mode = sink_mode::temporary_failure});
  // Long retry timings: only flush() can make the mail leave before the test's bounds.
  postfix_instance mta({.dir = tmp.path() / "internet",
                        .myhostname = "internet.test",
                        .relayhost = sink.relayhost(),
                        .queue_run_delay = 300s,
                        .minimal_backoff_time = 300s,
                        .maximal_backoff_time = 300s});
  mta.start();

  send_all(mta, 3, rcpts_of);
  INFO("maillog:\n" << mta.log_text());
  // Each message is tried once, refused with 450 at RCPT, and moved to the deferred queue.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (count_of(mta.queue_json(), "\"queue_name\": \"deferred\"") < 3 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  const std::string queue = mta.queue_json();
  INFO("postqueue -j:\n" << queue);
  REQUIRE(count_of(queue, "\"queue_name\": \"deferred\"") == 3);
  CHECK(queue.find("450 4.3.0") != std::string::npos);
  CHECK(mta.queue_size() == 3);
  CHECK(sink.message_count() == 0);

  sink.restart(sink_mode::accept);
  mta.flush();
  REQUIRE(mta.wait_queue_empty(60s));
  REQUIRE(sink.wait_for_messages(3, 10s));
  const auto messages = sink.messages();
  REQUIRE(messages.size() == 3);
  for (const auto& m : messages) {
    const int i = std::stoi(m.header("Subject").substr(16));
    auto rcpts = m.rcpts;
    std::sort(rcpts.begin(), rcpts.end());
    CHECK(rcpts == rcpts_of(i));
    CHECK(m.body() == body_of(i));
  }
}

TEST_CASE("a private Postfix relays to a second one that delivers into Maildirs") {
  skip_unless_postfix_usable();
  temp_dir tmp("mukai-postfix-harness");
  make_searchable(tmp.path());
  postfix_instance lgwan({.dir = tmp.path() / "lgwan",
                          .myhostname = "lgwan.test",
                          .maildir_recipients = {"alice@lgwan.test", "bob@lgwan.test"}});
  lgwan.start();
  postfix_instance internet({.dir = tmp.path() / "internet",
                             .myhostname = "internet.test",
                             .relayhost = "[127.0.0.1]:" + std::to_string(lgwan.smtp_port())});
  internet.start();

  const auto rcpts = [](int) { return std::vector<std::string>{"alice@lgwan.test", "bob@lgwan.test"}; };
  send_all(internet, 3, rcpts);
  INFO("internet maillog:\n" << internet.log_text());
  REQUIRE(internet.wait_queue_empty(60s));
  INFO("lgwan maillog:\n" << lgwan.log_text());
  REQUIRE(lgwan.wait_queue_empty(60s));

  for (const std::string who : {"alice@lgwan.test", "bob@lgwan.test"}) {
    const auto delivered = lgwan.maildir_messages(who);
    REQUIRE(delivered.size() == 3);
    std::vector<int> seen;
    for (const auto& m : delivered) {
      const std::string content = lf_to_crlf(m.content);  // virtual(8) writes LF line ends
      CHECK(content.find("Delivered-To: " + who + "\r\n") != std::string::npos);
      const auto subject_at = content.find("Subject: harness message ");
      REQUIRE(subject_at != std::string::npos);
      const int i = content[subject_at + 25] - '0';
      seen.push_back(i);
      const auto body_at = content.find("\r\n\r\n");
      REQUIRE(body_at != std::string::npos);
      CHECK(content.substr(body_at + 4) == body_of(i));
      CHECK(content.find("by internet.test (Postfix)") != std::string::npos);
      CHECK(content.find("by lgwan.test (Postfix)") != std::string::npos);
    }
    std::sort(seen.begin(), seen.end());
    CHECK(seen == std::vector<int>{0, 1, 2});
  }

  // The receiving side refuses recipients it has no Maildir for.
  const auto r =
      lgwan.send("sender@internet.test", {"carol@lgwan.test"}, message_of(9, {"carol@lgwan.test"}));
  CHECK_FALSE(r.ok);
  REQUIRE(r.rcpt_replies.size() == 1);
  CHECK(r.rcpt_replies[0].rfind("550", 0) == 0);
}
