// Test-only: a tiny blocking SMTP client on plain sockets, to hand a message to a Postfix
// instance's smtpd or straight to mukai. One session per call: greeting, EHLO (HELO if EHLO is
// refused), MAIL FROM, RCPT TO for each recipient, DATA with dot-stuffing, QUIT. No pipelining, no
// TLS, no AUTH: it is the simplest well-behaved client, so a failure points at the server.
// Invariants: every read and write is bounded by one deadline for the whole session; the socket is
// closed on every path. Threading: no shared state; call from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::testing {

struct smtp_send_options {
  std::string helo = "harness.test";
  std::chrono::milliseconds timeout = std::chrono::seconds(60);  // the whole session
  // Turn bare LF (and bare CR) into CRLF before sending, as a mail submission program does. Off:
  // the bytes go out as given (only dot-stuffed after each CRLF), to test how a server treats bare
  // line ends.
  bool normalize_line_endings = true;
};

struct smtp_send_result {
  bool ok = false;         // the message was accepted (2xx after the final dot)
  std::string last_reply;  // the last line of the last reply read, e.g. "250 2.0.0 Ok: queued as X"
  std::vector<std::string> rcpt_replies;  // one last reply line per RCPT sent, in order
  std::vector<std::string> transcript;    // "C: ..." and "S: ..." lines, without the message content
  std::string error;                      // connect, I/O or timeout error; empty otherwise
};

// Sends one message. The message needs no final CRLF. ok is true only if at least one RCPT was
// accepted and the end of DATA got a 2xx reply; a refused recipient is reported in rcpt_replies.
smtp_send_result smtp_send(const std::string& host, std::uint16_t port, const std::string& from,
                           const std::vector<std::string>& rcpts, std::string_view message,
                           const smtp_send_options& options = {});

// "250 2.0.0 Ok: queued as 3F2A1B" -> "3F2A1B" (Postfix's and mukai's wording).
std::optional<std::string> queued_as(std::string_view reply);

// Dot-stuffs and terminates a message body for DATA ("\r\n.\r\n" appended); exposed for tests.
std::string encode_data(std::string_view message, bool normalize_line_endings);

}  // namespace mukai::testing
