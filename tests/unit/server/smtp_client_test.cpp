// smtp_client against a scripted fake server on 127.0.0.1 (and ::1): pipelining, per-recipient 4xx/5xx,
// multi-line replies, 421 at the greeting and mid-session, HELO fallback, MAIL refused, DATA and end of
// data refused, BDAT, ESMTP parameters, refused addresses, SIZE and SMTPUTF8 checks, garbage, oversized
// and endless replies, stalls (timeouts), connection refused; STARTTLS opportunistic, required with an
// untrusted / trusted / mismatching certificate, not offered, response injection, plain-text fallback;
// and a real Postfix smtp-sink when it is installed.
#include "server/smtp_client.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include "server/smtp_data_encoder.hpp"
#include "tests/unit/server/fake_smtp_server.hpp"

using namespace mukai::server;
using namespace mukai::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

class temp_dir {
 public:
  temp_dir() {
    std::string templ = (fs::temp_directory_path() / "mukai-smtpc-XXXXXX").string();
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

smtp_client_options fast_options() {
  smtp_client_options o;
  o.helo_name = "mukai.test";
  o.connect_timeout = 2s;
  o.greeting_timeout = 2s;
  o.helo_timeout = 2s;
  o.starttls_timeout = 2s;
  o.mail_timeout = 2s;
  o.rcpt_timeout = 2s;
  o.data_init_timeout = 2s;
  o.data_block_timeout = 2s;
  o.data_done_timeout = 2s;
  o.quit_timeout = 1s;
  return o;
}

spool_envelope make_envelope(std::vector<std::string> rcpts, std::string from = "sender@example.com") {
  spool_envelope e;
  e.mail_from = std::move(from);
  for (auto& r : rcpts) e.recipients.push_back(spool_recipient{std::move(r), "", ""});
  e.received = std::chrono::system_clock::now();
  return e;
}

std::vector<std::size_t> all_indices(const spool_envelope& e) {
  std::vector<std::size_t> v;
  for (std::size_t i = 0; i < e.recipients.size(); ++i) v.push_back(i);
  return v;
}

const std::string simple_body = "Subject: test\r\n\r\nhello\r\n";

smtp_hop local_hop(unsigned short port, starttls_mode mode = starttls_mode::off) {
  smtp_hop h;
  h.host = "127.0.0.1";
  h.port = port;
  h.host_is_ip = true;
  h.starttls = mode;
  return h;
}

// Runs one send() against `server` and returns the result (REQUIREs completion within the bound).
delivery_attempt_result run_send(asio::io_context& ioc, fake_smtp_server* server, const smtp_client& client,
                                 const smtp_hop& hop, const spool_envelope& env, std::string_view body,
                                 std::vector<std::size_t> rcpts = {}) {
  if (rcpts.empty()) rcpts = all_indices(env);
  const outgoing_message msg{env, rcpts, body};
  auto state = spawn(ioc, client.send(hop, msg));
  REQUIRE(run_until(ioc, [&] { return state->done && (server == nullptr || server->all_done()); }));
  if (state->error) std::rethrow_exception(state->error);
  REQUIRE(state->value);
  if (server != nullptr) {
    for (const auto& log : server->logs()) {
      for (const auto& e : log.errors) FAIL_CHECK("fake server: " << e);
    }
  }
  return std::move(*state->value);
}

const std::string ehlo_pipelining =
    "250-fake.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
const std::string ehlo_plain = "250-fake.test\r\n250 SIZE\r\n";

}  // namespace

TEST_CASE("pipelined session: per-recipient 250/450/550, multi-line reply, 250 after data") {
  asio::io_context ioc;
  fake_smtp_server server(
      ioc,
      {{
          say("220 fake.test ESMTP\r\n"),
          expect("EHLO mukai.test"),
          say(ehlo_pipelining),
          // No reply until every command of the batch has arrived: only a pipelining client gets past this.
          expect("MAIL FROM:<sender@example.com> SIZE="),
          expect("RCPT TO:<a@example.lg.jp>"),
          expect("RCPT TO:<b@example.lg.jp>"),
          expect("RCPT TO:<c@example.lg.jp>"),
          expect("DATA"),
          say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.1 <b@example.lg.jp>: mailbox busy\r\n"
              "550-5.1.1 <c@example.lg.jp>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n"
              "354 End data with <CR><LF>.<CR><LF>\r\n"),
          expect_data(),
          say("250 2.0.0 Ok: queued as ABC\r\n"),
          expect("QUIT"),
          say("221 2.0.0 Bye\r\n"),
      }});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp", "c@example.lg.jp"});
  const std::string body =
      "Subject: dots\r\n\r\n.leading dot\r\nbare\nlf and bare\rcr\r\n..two\r\nno final newline";
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, body);

  CHECK_FALSE(r.error);
  CHECK_FALSE(r.tls);
  CHECK(r.remote == "127.0.0.1:" + std::to_string(server.port()));
  REQUIRE(r.recipients.size() == 3);
  CHECK(r.recipients[0].index == 0);
  CHECK(r.recipients[0].status == rcpt_status::delivered);
  CHECK(r.recipients[0].reply == "250 2.0.0 Ok: queued as ABC");
  CHECK(r.recipients[1].status == rcpt_status::temporary);
  CHECK(r.recipients[1].reply == "450 4.2.1 <b@example.lg.jp>: mailbox busy");
  CHECK(r.recipients[2].status == rcpt_status::permanent);
  CHECK(r.recipients[2].reply == "550 5.1.1 <c@example.lg.jp>: Recipient address rejected: User unknown");
  CHECK(r.recipients[2].remote == r.remote);
  // CRLF normalisation and dot-stuffing on the wire.
  CHECK(server.log().data ==
        "Subject: dots\r\n\r\n..leading dot\r\nbare\r\nlf and bare\r\ncr\r\n...two\r\nno final "
        "newline\r\n.\r\n");
  // SIZE= is the CRLF-normalised size; no BODY= for a 7-bit message.
  const std::string& mail = server.log().lines.at(1);
  CHECK(mail ==
        "MAIL FROM:<sender@example.com> SIZE=" + std::to_string(smtp_data_encoder::normalised_size(body)));
}

TEST_CASE("without PIPELINING: one command at a time; HELO when EHLO is refused") {
  asio::io_context ioc;
  fake_smtp_server server(ioc,
                          {{
                              say("220 old.test SMTP\r\n"),
                              expect("EHLO mukai.test"),
                              say("502 5.5.2 Error: command not recognized\r\n"),
                              expect("HELO mukai.test"),
                              say("250 old.test\r\n"),
                              expect("MAIL FROM:<sender@example.com>"),  // no ESMTP parameters after HELO
                              say("250 Ok\r\n"),
                              expect("RCPT TO:<a@example.lg.jp>"),
                              say("250 Ok\r\n"),
                              expect("RCPT TO:<b@example.lg.jp>"),
                              say("550 No such user\r\n"),
                              expect("DATA"),
                              say("354 go ahead\r\n"),
                              expect_data(),
                              say("250 Ok\r\n"),
                              expect("QUIT"),
                              say("221 Bye\r\n"),
                          }});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK_FALSE(r.error);
  REQUIRE(r.recipients.size() == 2);
  CHECK(r.recipients[0].status == rcpt_status::delivered);
  CHECK(r.recipients[1].status == rcpt_status::permanent);
  CHECK(r.recipients[1].reply == "550 No such user");
  CHECK(server.log().lines.at(2) == "MAIL FROM:<sender@example.com>");
}

TEST_CASE("421 at the greeting: every recipient temporary with the server's reply") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{say("421 4.3.2 fake.test Service not available\r\n"), hang_up()}});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.error == smtp_client_errc::service_closing);
  REQUIRE(r.recipients.size() == 2);
  for (const auto& rr : r.recipients) {
    CHECK(rr.status == rcpt_status::temporary);
    CHECK(rr.reply == "421 4.3.2 fake.test Service not available");
  }
  CHECK(server.log().lines.empty());
}

TEST_CASE("554 at the greeting: temporary (try another hop / later), and QUIT is sent") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{say("554 5.7.1 go away\r\n"), expect("QUIT"), say("221 bye\r\n")}});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.error == smtp_client_errc::greeting_rejected);
  CHECK(r.recipients.at(0).status == rcpt_status::temporary);
  CHECK(r.recipients.at(0).reply == "554 5.7.1 go away");
}

TEST_CASE("MAIL refused in a pipelined batch: all recipients get the MAIL reply, no data is sent") {
  asio::io_context ioc;
  fake_smtp_server server(
      ioc, {{
               say("220 fake.test ESMTP\r\n"),
               expect("EHLO"),
               say(ehlo_pipelining),
               expect("MAIL FROM:"),
               expect("RCPT TO:<a@example.lg.jp>"),
               expect("RCPT TO:<b@example.lg.jp>"),
               expect("DATA"),
               say("553 5.7.1 <sender@example.com>: Sender address rejected\r\n503 5.5.1 Error: need MAIL "
                   "command\r\n"
                   "503 5.5.1 Error: need MAIL command\r\n554 5.5.1 Error: no valid recipients\r\n"),
               expect("QUIT"),
               say("221 Bye\r\n"),
           }});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK_FALSE(r.error);
  for (const auto& rr : r.recipients) {
    CHECK(rr.status == rcpt_status::permanent);
    CHECK(rr.reply == "553 5.7.1 <sender@example.com>: Sender address rejected");
  }
  CHECK(server.log().data.empty());
}

TEST_CASE("pipelined DATA answered 354 although no recipient was accepted: an empty message ends it") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say(ehlo_pipelining),
                                   expect("MAIL FROM:"),
                                   expect("RCPT TO:<a@example.lg.jp>"),
                                   expect("DATA"),
                                   say("250 Ok\r\n450 4.1.1 try later\r\n354 send it\r\n"),
                                   expect_data(),
                                   say("554 5.5.1 no valid recipients\r\n"),
                                   expect("QUIT"),
                                   say("221 Bye\r\n"),
                               }});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(server.log().data == ".\r\n");
  CHECK(r.recipients.at(0).status == rcpt_status::temporary);
  CHECK(r.recipients.at(0).reply == "450 4.1.1 try later");
}

TEST_CASE("without PIPELINING, no accepted recipient means no DATA") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say(ehlo_plain),
                                   expect("MAIL FROM:"),
                                   say("250 Ok\r\n"),
                                   expect("RCPT TO:<a@example.lg.jp>"),
                                   say("550 5.1.1 unknown\r\n"),
                                   expect("QUIT"),
                                   say("221 Bye\r\n"),
                               }});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK_FALSE(r.error);
  CHECK(r.recipients.at(0).status == rcpt_status::permanent);
}

TEST_CASE("the reply after the data applies to every accepted recipient") {
  for (const auto& [reply, status] :
       {std::pair<std::string, rcpt_status>{"451 4.3.0 queue trouble", rcpt_status::temporary},
        std::pair<std::string, rcpt_status>{"554 5.7.1 content rejected", rcpt_status::permanent}}) {
    CAPTURE(reply);
    asio::io_context ioc;
    fake_smtp_server server(ioc, {{
                                     say("220 fake.test ESMTP\r\n"),
                                     expect("EHLO"),
                                     say(ehlo_pipelining),
                                     expect("MAIL FROM:"),
                                     expect("RCPT TO:<a@"),
                                     expect("RCPT TO:<b@"),
                                     expect("DATA"),
                                     say("250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n"),
                                     expect_data(),
                                     say(reply + "\r\n"),
                                     expect("QUIT"),
                                     say("221 Bye\r\n"),
                                 }});
    smtp_client client(fast_options());
    const auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp"});
    auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
    for (const auto& rr : r.recipients) {
      CHECK(rr.status == status);
      CHECK(rr.reply == reply);
    }
  }
}

TEST_CASE("DATA refused with 554 after accepted recipients: permanent for them") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say(ehlo_plain),
                                   expect("MAIL FROM:"),
                                   say("250 Ok\r\n"),
                                   expect("RCPT TO:"),
                                   say("250 Ok\r\n"),
                                   expect("DATA"),
                                   say("554 5.3.0 no thanks\r\n"),
                                   expect("QUIT"),
                                   say("221 Bye\r\n"),
                               }});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.recipients.at(0).status == rcpt_status::permanent);
  CHECK(r.recipients.at(0).reply == "554 5.3.0 no thanks");
}

TEST_CASE("421 after RCPT: the session ends, the rest stay temporary") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say(ehlo_plain),
                                   expect("MAIL FROM:"),
                                   say("250 Ok\r\n"),
                                   expect("RCPT TO:<a@"),
                                   say("250 Ok\r\n"),
                                   expect("RCPT TO:<b@"),
                                   say("421 4.4.2 shutting down\r\n"),
                                   hang_up(),
                               }});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp", "c@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.error == smtp_client_errc::service_closing);
  for (const auto& rr : r.recipients) {
    CHECK(rr.status == rcpt_status::temporary);
    CHECK(rr.reply == "421 4.4.2 shutting down");
  }
}

TEST_CASE("connection lost after the data: accepted recipients are temporary (maybe delivered)") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say(ehlo_plain),
                                   expect("MAIL FROM:"),
                                   say("250 Ok\r\n"),
                                   expect("RCPT TO:"),
                                   say("250 Ok\r\n"),
                                   expect("DATA"),
                                   say("354 go\r\n"),
                                   expect_data(),
                                   hang_up(),
                               }});
  smtp_client client(fast_options());
  const auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.error == smtp_client_errc::connection_closed);
  CHECK(r.recipients.at(0).status == rcpt_status::temporary);
  CHECK(r.recipients.at(0).reply.find("lost connection") != std::string::npos);
  CHECK(r.recipients.at(0).reply.find("after end of data") != std::string::npos);
}

TEST_CASE("CHUNKING: BDAT with the exact CRLF-normalised bytes, no dot-stuffing") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say("250-fake.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"),
                                   expect("MAIL FROM:<sender@example.com> BODY=8BITMIME"),
                                   expect("RCPT TO:<a@"),
                                   say("250 Ok\r\n250 Ok\r\n"),
                                   expect_bdat(),
                                   say("250 chunk ok\r\n"),
                                   expect_bdat(),
                                   say("250 chunk ok\r\n"),
                                   expect_bdat(),
                                   say("250 2.0.0 Ok: queued\r\n"),
                                   expect("QUIT"),
                                   say("221 Bye\r\n"),
                               }});
  auto opts = fast_options();
  opts.bdat_chunk_size = 10;
  smtp_client client(opts);
  const auto env = make_envelope({"a@example.lg.jp"});
  const std::string body = "S: \xE6\x97\xA5\n\n.dot\nline 22\n";  // 21 bytes -> 3 chunks of <= 10 input bytes
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, body);
  CHECK_FALSE(r.error);
  CHECK(r.recipients.at(0).status == rcpt_status::delivered);
  CHECK(server.log().bdat == "S: \xE6\x97\xA5\r\n\r\n.dot\r\nline 22\r\n");
  REQUIRE(server.log().bdat_commands.size() == 3);
  CHECK(server.log().bdat_commands[2].ends_with(" LAST"));
  CHECK_FALSE(server.log().bdat_commands[0].ends_with(" LAST"));
}

TEST_CASE("ESMTP parameters: 8BITMIME, SMTPUTF8, DSN RET/ENVID/NOTIFY/ORCPT only when offered and valid") {
  asio::io_context ioc;
  fake_smtp_server server(
      ioc,
      {{
          say("220 fake.test ESMTP\r\n"),
          expect("EHLO"),
          say("250-fake.test\r\n250-PIPELINING\r\n250-SIZE 0\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN\r\n"),
          expect("MAIL FROM:<s\xC3\xA9@example.com> SIZE="),
          expect("RCPT TO:<a@example.lg.jp> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bx@example.lg.jp"),
          expect("RCPT TO:<b@example.lg.jp>"),
          expect("DATA"),
          say("250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n"),
          expect_data(),
          say("250 Ok\r\n"),
          expect("QUIT"),
          say("221 Bye\r\n"),
      }});
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp"}, "s\xC3\xA9@example.com");
  env.smtputf8 = true;
  env.ret = spool_dsn_ret::headers;
  env.envid = "QQ314159";
  env.recipients[0].notify = "SUCCESS,FAILURE";
  env.recipients[0].orcpt = "rfc822;a+2Bx@example.lg.jp";
  env.recipients[1].notify = "SUCCESS\r\nRSET";  // not valid: dropped, never sent
  env.recipients[1].orcpt = "rfc822;a=b";        // not xtext: dropped
  const std::string body = "Subject: x\r\n\r\n\xE6\x97\xA5\xE6\x9C\xAC\r\n";
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, body);
  CHECK_FALSE(r.error);
  const std::string& mail = server.log().lines.at(1);
  CHECK(mail.find(" BODY=8BITMIME") != std::string::npos);
  CHECK(mail.find(" SMTPUTF8") != std::string::npos);
  CHECK(mail.find(" RET=HDRS") != std::string::npos);
  CHECK(mail.find(" ENVID=QQ314159") != std::string::npos);
  CHECK(server.log().lines.at(3) == "RCPT TO:<b@example.lg.jp>");
}

TEST_CASE("addresses that could inject commands are never sent") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say(ehlo_pipelining),
                                   expect("MAIL FROM:"),
                                   expect("RCPT TO:<good@example.lg.jp>"),
                                   expect("DATA"),
                                   say("250 Ok\r\n250 Ok\r\n354 go\r\n"),
                                   expect_data(),
                                   say("250 Ok\r\n"),
                                   expect("QUIT"),
                                   say("221 Bye\r\n"),
                               }});
  smtp_client client(fast_options());
  auto env =
      make_envelope({"evil@example.lg.jp>\r\nRCPT TO:<x@y", "good@example.lg.jp", "a>b@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.recipients.at(0).status == rcpt_status::permanent);
  CHECK(r.recipients.at(0).reply.starts_with("5.1.3 "));
  CHECK(r.recipients.at(0).remote.empty());
  CHECK(r.recipients.at(1).status == rcpt_status::delivered);
  CHECK(r.recipients.at(2).status == rcpt_status::permanent);
}

TEST_CASE("a subset of the recipients is sent, results keep the envelope indices") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say(ehlo_pipelining),
                                   expect("MAIL FROM:"),
                                   expect("RCPT TO:<c@"),
                                   expect("DATA"),
                                   say("250 Ok\r\n250 Ok\r\n354 go\r\n"),
                                   expect_data(),
                                   say("250 Ok\r\n"),
                                   expect("QUIT"),
                                   say("221 Bye\r\n"),
                               }});
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp", "c@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body, {2});
  REQUIRE(r.recipients.size() == 1);
  CHECK(r.recipients[0].index == 2);
  CHECK(r.recipients[0].status == rcpt_status::delivered);
}

TEST_CASE("SIZE limit of the server: permanent failure without sending the message") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say("250-fake.test\r\n250 SIZE 10\r\n"),
                                   expect("QUIT"),
                                   say("221 Bye\r\n"),
                               }});
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.recipients.at(0).status == rcpt_status::permanent);
  CHECK(r.recipients.at(0).reply.starts_with("5.3.4 message size " +
                                             std::to_string(smtp_data_encoder::normalised_size(simple_body)) +
                                             " exceeds size limit 10"));
}

TEST_CASE("a UTF-8 address needs SMTPUTF8 at the server") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{
                                   say("220 fake.test ESMTP\r\n"),
                                   expect("EHLO"),
                                   say(ehlo_pipelining),
                                   expect("QUIT"),
                                   say("221 Bye\r\n"),
                               }});
  smtp_client client(fast_options());
  auto env = make_envelope({"\xE5\xB1\xB1\xE7\x94\xB0@example.lg.jp"});
  env.smtputf8 = true;
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.recipients.at(0).status == rcpt_status::permanent);
  CHECK(r.recipients.at(0).reply.starts_with("5.6.7 "));
}

TEST_CASE("bounded reads: garbage, an endless line, too many lines") {
  struct scenario {
    std::string name;
    std::string greeting;
    smtp_client_errc expected;
  };
  const std::vector<scenario> scenarios = {
      {"garbage", "HELLO THERE\r\n", smtp_client_errc::malformed_reply},
      {"1xx code", "199 what\r\n", smtp_client_errc::malformed_reply},
      {"code changes mid-reply", "220-fake\r\n250 other\r\n", smtp_client_errc::malformed_reply},
      {"no separator", "220fake\r\n", smtp_client_errc::malformed_reply},
      {"endless line", "220 " + std::string(100000, 'x'), smtp_client_errc::reply_too_long},
      {"long line with LF", "220 " + std::string(5000, 'x') + "\r\n", smtp_client_errc::reply_too_long},
  };
  for (const auto& s : scenarios) {
    CAPTURE(s.name);
    asio::io_context ioc;
    fake_smtp_server server(ioc, {{say(s.greeting), stall()}});
    smtp_client client(fast_options());
    auto env = make_envelope({"a@example.lg.jp"});
    const auto start = std::chrono::steady_clock::now();
    auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
    CHECK(r.error == s.expected);
    CHECK(r.recipients.at(0).status == rcpt_status::temporary);
    CHECK(r.recipients.at(0).reply.starts_with("4.5.0 protocol error"));
    CHECK(std::chrono::steady_clock::now() - start < 1500ms);  // no waiting for a timeout
  }
  // 150 continuation lines: more than max_reply_lines (100).
  std::string many;
  for (int i = 0; i < 150; ++i) many += "220-line " + std::to_string(i) + "\r\n";
  many += "220 end\r\n";
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{say(many), stall()}});
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
  CHECK(r.error == smtp_client_errc::too_many_reply_lines);
}

TEST_CASE("a server that stalls: the step's deadline ends the session") {
  auto opts = fast_options();
  opts.greeting_timeout = 300ms;
  opts.rcpt_timeout = 300ms;
  opts.data_done_timeout = 300ms;
  smtp_client client(opts);
  auto env = make_envelope({"a@example.lg.jp"});

  SUBCASE("no greeting at all") {
    asio::io_context ioc;
    fake_smtp_server server(ioc, {{stall()}});
    const auto start = std::chrono::steady_clock::now();
    auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(r.error == std::error_code(boost::system::error_code(asio::error::timed_out)));
    CHECK(r.recipients.at(0).status == rcpt_status::temporary);
    CHECK(r.recipients.at(0).reply.find("timed out while receiving the initial greeting") !=
          std::string::npos);
    CHECK(took >= 250ms);
    CHECK(took < 2s);
  }
  SUBCASE("half a reply, then nothing (a dripping server does not extend the deadline)") {
    asio::io_context ioc;
    fake_smtp_server server(ioc, {{say("220-fake.test\r\n220-still"), stall()}});
    auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
    CHECK(r.error == std::error_code(boost::system::error_code(asio::error::timed_out)));
  }
  SUBCASE("no reply after the data") {
    asio::io_context ioc;
    fake_smtp_server server(ioc, {{
                                     say("220 fake.test ESMTP\r\n"),
                                     expect("EHLO"),
                                     say(ehlo_pipelining),
                                     expect("MAIL FROM:"),
                                     expect("RCPT TO:"),
                                     expect("DATA"),
                                     say("250 Ok\r\n250 Ok\r\n354 go\r\n"),
                                     expect_data(),
                                     stall(),
                                 }});
    auto r = run_send(ioc, &server, client, local_hop(server.port()), env, simple_body);
    CHECK(r.error == std::error_code(boost::system::error_code(asio::error::timed_out)));
    CHECK(r.recipients.at(0).status == rcpt_status::temporary);
    CHECK(r.recipients.at(0).reply.find("after end of data") != std::string::npos);
  }
}

TEST_CASE("connection refused") {
  asio::io_context ioc;
  unsigned short port = 0;
  {
    tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }  // closed again: nothing listens there
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, nullptr, client, local_hop(port), env, simple_body);
  CHECK(r.error);
  CHECK(r.recipients.at(0).status == rcpt_status::temporary);
  CHECK(r.recipients.at(0).reply.starts_with("4.4.1 connect to 127.0.0.1:" + std::to_string(port)));
}

TEST_CASE("IPv6 loopback next hop") {
  asio::io_context ioc;
  std::unique_ptr<fake_smtp_server> server;
  try {
    server = std::make_unique<fake_smtp_server>(
        ioc,
        std::vector<std::vector<script_step>>{
            {say("220 v6.test ESMTP\r\n"), expect("EHLO"), say(ehlo_pipelining), expect("MAIL FROM:"),
             expect("RCPT TO:"), expect("DATA"), say("250 Ok\r\n250 Ok\r\n354 go\r\n"), expect_data(),
             say("250 Ok\r\n"), expect("QUIT"), say("221 Bye\r\n")}},
        nullptr, true);
  } catch (const std::exception& e) {
    MESSAGE("no IPv6 loopback here, skipped: " << e.what());
    return;
  }
  smtp_hop hop;
  hop.host = "::1";
  hop.port = server->port();
  hop.host_is_ip = true;
  hop.starttls = starttls_mode::off;
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, server.get(), client, hop, env, simple_body);
  CHECK_FALSE(r.error);
  CHECK(r.remote == "[::1]:" + std::to_string(server->port()));
  CHECK(r.recipients.at(0).status == rcpt_status::delivered);
}

// ---- STARTTLS ------------------------------------------------------------------------------------

namespace {

struct tls_fixture {
  temp_dir dir;
  test_certificate cert = make_self_signed("localhost", "DNS:localhost,IP:127.0.0.1");
  std::unique_ptr<ssl::context> server_ctx = server_tls_context(cert);
  fs::path ca_file;
  tls_fixture() {
    ca_file = dir.path() / "ca.pem";
    std::ofstream(ca_file) << cert.cert_pem;
  }
};

std::vector<script_step> tls_session(bool offer_pipelining_after_tls = true) {
  return {
      say("220 tls.test ESMTP\r\n"),
      expect("EHLO mukai.test"),
      say("250-tls.test\r\n250-STARTTLS\r\n250 SIZE\r\n"),
      expect("STARTTLS"),
      say("220 2.0.0 Ready to start TLS\r\n"),
      starttls(),
      expect("EHLO mukai.test"),
      say(offer_pipelining_after_tls ? "250-tls.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                                     : "250 tls.test\r\n"),
      expect("MAIL FROM:"),
      expect("RCPT TO:"),
      expect("DATA"),
      say("250 Ok\r\n250 Ok\r\n354 go\r\n"),
      expect_data(),
      say("250 Ok\r\n"),
      expect("QUIT"),
      say("221 Bye\r\n"),
  };
}

}  // namespace

TEST_CASE("STARTTLS opportunistic: encrypted without verifying the self-signed certificate") {
  tls_fixture f;
  asio::io_context ioc;
  fake_smtp_server server(ioc, {tls_session()}, f.server_ctx.get());
  smtp_client client(fast_options());  // default CA store: the certificate is not trusted
  auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::opportunistic), env,
                    simple_body);
  CHECK_FALSE(r.error);
  CHECK(r.tls);
  CHECK(r.tls_details.starts_with("TLSv1."));
  CHECK(server.log().tls);
  CHECK(r.recipients.at(0).status == rcpt_status::delivered);
}

TEST_CASE("STARTTLS required: an untrusted certificate stops the session before MAIL") {
  tls_fixture f;
  asio::io_context ioc;
  fake_smtp_server server(ioc, {tls_session()}, f.server_ctx.get());
  smtp_client client(fast_options());  // default CA store
  auto env = make_envelope({"a@example.lg.jp"});
  auto r =
      run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::required), env, simple_body);
  CHECK(r.error == smtp_client_errc::tls_failed);
  CHECK_FALSE(r.tls);
  CHECK(r.error_text.find("certificate verification failed") != std::string::npos);
  CHECK(r.recipients.at(0).status == rcpt_status::temporary);
  CHECK(r.recipients.at(0).reply.starts_with("4.7.5 TLS handshake with 127.0.0.1:"));
  CHECK_FALSE(server.log().tls_error.empty());
  // Nothing after STARTTLS reached the server: no MAIL in clear, no fallback connection.
  CHECK(server.log().lines.back() == "STARTTLS");
}

TEST_CASE("STARTTLS required: a trusted certificate that names the host succeeds") {
  tls_fixture f;
  asio::io_context ioc;
  fake_smtp_server server(ioc, {tls_session()}, f.server_ctx.get());
  auto opts = fast_options();
  opts.ca_file = f.ca_file.string();
  smtp_client client(opts);
  auto env = make_envelope({"a@example.lg.jp"});
  auto r =
      run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::required), env, simple_body);
  CHECK_FALSE(r.error);
  CHECK(r.tls);
  CHECK(r.recipients.at(0).status == rcpt_status::delivered);
}

TEST_CASE("STARTTLS required: a trusted certificate for another name fails the host name check") {
  temp_dir dir;
  const auto cert = make_self_signed("other.example", "DNS:other.example,IP:192.0.2.1");
  auto server_ctx = server_tls_context(cert);
  const fs::path ca = dir.path() / "ca.pem";
  std::ofstream(ca) << cert.cert_pem;
  asio::io_context ioc;
  fake_smtp_server server(ioc, {tls_session()}, server_ctx.get());
  auto opts = fast_options();
  opts.ca_file = ca.string();
  smtp_client client(opts);
  auto env = make_envelope({"a@example.lg.jp"});
  auto r =
      run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::required), env, simple_body);
  CHECK(r.error == smtp_client_errc::tls_failed);
  CHECK(r.error_text.find("IP address mismatch") != std::string::npos);
}

TEST_CASE("STARTTLS required but not offered: nothing is sent") {
  asio::io_context ioc;
  fake_smtp_server server(ioc, {{say("220 fake.test ESMTP\r\n"), expect("EHLO"), say(ehlo_pipelining),
                                 expect("QUIT"), say("221 Bye\r\n")}});
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp"});
  auto r =
      run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::required), env, simple_body);
  CHECK(r.error == smtp_client_errc::starttls_unavailable);
  CHECK(r.recipients.at(0).status == rcpt_status::temporary);
  CHECK(r.recipients.at(0).reply.starts_with("4.7.4 TLS is required"));
}

TEST_CASE("STARTTLS refused with 454: opportunistic goes on in clear, required stops") {
  auto script = [](bool required) {
    std::vector<script_step> s = {say("220 fake.test ESMTP\r\n"), expect("EHLO"),
                                  say("250-fake.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n"),
                                  expect("STARTTLS"),
                                  say("454 4.7.0 TLS not available due to temporary reason\r\n")};
    if (required) {
      s.push_back(expect("QUIT"));
      s.push_back(say("221 Bye\r\n"));
    } else {
      for (auto st :
           {expect("MAIL FROM:"), expect("RCPT TO:"), expect("DATA"), say("250 Ok\r\n250 Ok\r\n354 go\r\n"),
            expect_data(), say("250 Ok\r\n"), expect("QUIT"), say("221 Bye\r\n")}) {
        s.push_back(st);
      }
    }
    return s;
  };
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp"});
  {
    asio::io_context ioc;
    fake_smtp_server server(ioc, {script(false)});
    auto r = run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::opportunistic), env,
                      simple_body);
    CHECK_FALSE(r.error);
    CHECK_FALSE(r.tls);
    CHECK(r.recipients.at(0).status == rcpt_status::delivered);
  }
  {
    asio::io_context ioc;
    fake_smtp_server server(ioc, {script(true)});
    auto r =
        run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::required), env, simple_body);
    CHECK(r.error == smtp_client_errc::starttls_unavailable);
    CHECK(r.recipients.at(0).reply == "454 4.7.0 TLS not available due to temporary reason");
  }
}

TEST_CASE("STARTTLS response injection: replies sent before the handshake are discarded") {
  tls_fixture f;
  asio::io_context ioc;
  auto script = tls_session();
  // A man in the middle appends a fake EHLO reply to the 220, in clear.
  script[4] = say("220 2.0.0 Ready to start TLS\r\n250 injected-ehlo-reply\r\n");
  fake_smtp_server server(ioc, {script}, f.server_ctx.get());
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp"});
  const std::string body = "Subject: x\r\n\r\n\xE6\x97\xA5\r\n";
  auto r = run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::opportunistic), env, body);
  CHECK_FALSE(r.error);
  CHECK(r.tls);
  CHECK(r.recipients.at(0).status == rcpt_status::delivered);
  // The real post-TLS EHLO reply was used: it offers 8BITMIME (the injected one offers nothing).
  bool saw_body = false;
  for (const auto& l : server.log().lines)
    saw_body = saw_body || l.find("BODY=8BITMIME") != std::string::npos;
  CHECK(saw_body);
}

TEST_CASE("STARTTLS opportunistic: a failed handshake falls back to one plain-text session") {
  asio::io_context ioc;
  fake_smtp_server server(
      ioc, {{say("220 fake.test ESMTP\r\n"), expect("EHLO"), say("250-fake.test\r\n250 STARTTLS\r\n"),
             expect("STARTTLS"), say("220 go ahead\r\n"), say("this is not TLS\r\n"), hang_up()},
            {say("220 fake.test ESMTP\r\n"), expect("EHLO"), say("250-fake.test\r\n250 STARTTLS\r\n"),
             expect("MAIL FROM:"), say("250 Ok\r\n"), expect("RCPT TO:"), say("250 Ok\r\n"), expect("DATA"),
             say("354 go\r\n"), expect_data(), say("250 Ok\r\n"), expect("QUIT"), say("221 Bye\r\n")}});
  smtp_client client(fast_options());
  auto env = make_envelope({"a@example.lg.jp"});
  auto r = run_send(ioc, &server, client, local_hop(server.port(), starttls_mode::opportunistic), env,
                    simple_body);
  CHECK_FALSE(r.error);
  CHECK_FALSE(r.tls);
  CHECK(r.recipients.at(0).status == rcpt_status::delivered);
  CHECK(server.logs().at(1).lines.at(0) == "EHLO mukai.test");
}

TEST_CASE("a CA file that cannot be read is a start-up error") {
  auto opts = fast_options();
  opts.ca_file = "/nonexistent/mukai-ca.pem";
  CHECK_THROWS_AS(smtp_client{opts}, std::runtime_error);
}

// ---- Postfix smtp-sink ---------------------------------------------------------------------------

namespace {

std::string find_smtp_sink() {
  for (const char* p : {"/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

unsigned short free_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// smtp-sink started by the test, killed (by its pid) at the end.
class smtp_sink_process {
 public:
  smtp_sink_process(const std::string& binary, unsigned short port, const fs::path& dump_dir,
                    std::vector<std::string> extra) {
    std::vector<std::string> args = {binary};
    if (::geteuid() == 0) {  // smtp-sink refuses to keep root privileges
      args.push_back("-u");
      args.push_back("nobody");
    }
    args.push_back("-d");
    args.push_back((dump_dir / "msg.").string());
    for (auto& e : extra) args.push_back(std::move(e));
    args.push_back("127.0.0.1:" + std::to_string(port));
    args.push_back("10");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~smtp_sink_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 100; ++i) {  // bounded: 5 s, then SIGKILL
        if (::waitpid(pid_, &status, WNOHANG) == pid_) return;
        ::usleep(50000);
      }
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  smtp_sink_process(const smtp_sink_process&) = delete;
  smtp_sink_process& operator=(const smtp_sink_process&) = delete;
  bool started() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

bool wait_for_listener(unsigned short port) {
  for (int i = 0; i < 100; ++i) {  // at most 5 s
    asio::io_context ioc;
    tcp::socket s(ioc);
    boost::system::error_code ec;
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (!ec) return true;
    ::usleep(50000);
  }
  return false;
}

std::vector<std::string> dump_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

}  // namespace

TEST_CASE("Postfix smtp-sink as a real receiving server") {
  const std::string sink = find_smtp_sink();
  if (sink.empty()) {
    MESSAGE("smtp-sink not installed (apt-get install postfix): skipped");
    return;
  }
  temp_dir dir;
  ::chmod(dir.path().c_str(), 0777);  // smtp-sink drops to nobody before writing its dump files
  smtp_client client(fast_options());

  SUBCASE("delivery with pipelining and per-recipient arguments") {
    const unsigned short port = free_port();
    smtp_sink_process proc(sink, port, dir.path(), {});
    REQUIRE(proc.started());
    REQUIRE(wait_for_listener(port));
    auto env = make_envelope({"a@example.lg.jp", "b@example.lg.jp"});
    env.recipients[0].notify = "FAILURE";
    const std::string body = "Subject: via smtp-sink\r\n\r\n.dot line\r\nbody \xE6\x97\xA5\r\n";
    asio::io_context ioc;
    auto r = run_send(ioc, nullptr, client, local_hop(port), env, body);
    CHECK_FALSE(r.error);
    REQUIRE(r.recipients.size() == 2);
    for (const auto& rr : r.recipients) {
      CHECK(rr.status == rcpt_status::delivered);
      CHECK(rr.reply.starts_with("250 2.0.0 Ok"));
    }
    // The dump file is written when "." arrives; give it a moment.
    std::vector<std::string> dumps;
    for (int i = 0; i < 50 && dumps.empty(); ++i) {
      dumps = dump_files(dir.path());
      if (dumps.empty()) ::usleep(50000);
    }
    REQUIRE(dumps.size() == 1);
    const std::string& d = dumps[0];
    // smtp-sink offers PIPELINING, 8BITMIME and DSN (no SIZE).
    CHECK(d.find("X-Mail-Args: <sender@example.com> BODY=8BITMIME\n") != std::string::npos);
    CHECK(d.find("X-Rcpt-Args: <a@example.lg.jp> NOTIFY=FAILURE\n") != std::string::npos);
    CHECK(d.find("X-Rcpt-Args: <b@example.lg.jp>\n") != std::string::npos);
    CHECK(d.find("Subject: via smtp-sink") != std::string::npos);
    CHECK(d.find("\n.dot line") != std::string::npos);  // un-stuffed by the server
  }
  SUBCASE("hard and soft rejections") {
    const unsigned short port = free_port();
    smtp_sink_process proc(sink, port, dir.path(), {"-f", "RCPT"});
    REQUIRE(proc.started());
    REQUIRE(wait_for_listener(port));
    auto env = make_envelope({"a@example.lg.jp"});
    asio::io_context ioc;
    auto r = run_send(ioc, nullptr, client, local_hop(port), env, simple_body);
    CHECK(r.recipients.at(0).status == rcpt_status::permanent);
    CHECK(r.recipients.at(0).reply.starts_with("5"));
  }
  SUBCASE("421 after DATA") {
    const unsigned short port = free_port();
    smtp_sink_process proc(sink, port, dir.path(), {"-Q", "DATA"});
    REQUIRE(proc.started());
    REQUIRE(wait_for_listener(port));
    auto env = make_envelope({"a@example.lg.jp"});
    asio::io_context ioc;
    auto r = run_send(ioc, nullptr, client, local_hop(port), env, simple_body);
    CHECK(r.error);
    CHECK(r.recipients.at(0).status == rcpt_status::temporary);
  }
}
