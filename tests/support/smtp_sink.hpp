// Test-only: Postfix's smtp-sink(1) as a next hop on 127.0.0.1 that records what it receives, and
// can be switched to refuse mail (4xx, 5xx or 421) to simulate a next hop that is down or strict.
// It runs with -D (one shared dump file; a record is appended only when "." has been received, so a
// refused or aborted transaction never shows up) and -c (a "mesg=N" counter printed after each
// record is complete). messages() returns only the first N records of each run, so a record that
// is being appended while we read is never returned half-written.
// Invariants: the sink listens on loopback only; each start() is a new "generation" with its own
// dump file, so restart() keeps earlier messages; the destructor stops the process.
// Threading: one thread owns an smtp_sink; messages() may run while smtp-sink is receiving.
// Limits of smtp-sink's dump: every CR is dropped (the content is rebuilt with CRLF line ends, so a
// bare CR or LF sent by the client cannot be seen), and a body containing the record separator
// "\x01mukai-smtp-sink-record\n" would be split. Fine for the tests it serves.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/process.hpp"

namespace mukai::testing {

enum class sink_mode {
  accept,
  temporary_failure,  // reject_commands answered "450 4.3.0 ..." (smtp-sink -r)
  permanent_failure,  // reject_commands answered "500 5.3.0 ..." (smtp-sink -f)
  disconnect_421,     // reject_commands answered "421" and the connection closed (smtp-sink -Q)
};

struct smtp_sink_options {
  std::filesystem::path dir{};  // created; must be reachable by run_as (every ancestor searchable)
  std::uint16_t port = 0;       // 0: free_loopback_port()
  // Greeting and EHLO name. It must differ from the sending Postfix's myhostname, or Postfix
  // refuses to deliver ("host ... greeted me with my own hostname").
  std::string hostname = "sink.test";
  sink_mode mode = sink_mode::accept;
  // The commands the failure modes refuse, comma separated (CONNECT, EHLO, MAIL, RCPT, DATA...).
  // Never ".": smtp-sink writes the record before it answers the dot, so a refused message would
  // be recorded as received.
  std::string reject_commands = "RCPT";
  std::string soft_reply{};       // e.g. "451 4.7.1 Try again later"; empty: smtp-sink's default
  std::string hard_reply{};       // e.g. "554 5.7.1 No"; empty: smtp-sink's default
  std::string run_as = "nobody";  // smtp-sink refuses to run as root without -u
  std::vector<std::string> extra_args{};
};

struct sink_message {
  std::string client_addr;
  std::string helo;
  std::string mail_from;               // the address inside <>; "" for the null sender
  std::string mail_args;               // the whole MAIL argument, e.g. "<a@b> SIZE=300 BODY=8BITMIME"
  std::vector<std::string> rcpts;      // addresses inside <>, in RCPT order
  std::vector<std::string> rcpt_args;  // whole RCPT arguments, e.g. "<x@y> ORCPT=rfc822;x@y"
  std::string content;                 // header and body as received (dot-stuffing undone), CRLF line ends
  std::string body() const;            // content after the first empty line
  std::string header(std::string_view name) const;  // the first such field, unfolded; "" if none
};

class smtp_sink {
 public:
  explicit smtp_sink(smtp_sink_options options);  // starts it; throws std::runtime_error on failure
  ~smtp_sink();
  smtp_sink(const smtp_sink&) = delete;
  smtp_sink& operator=(const smtp_sink&) = delete;

  void start();                  // no-op when running
  void stop();                   // SIGTERM, then SIGKILL after 5 s
  void restart(sink_mode mode);  // stop, then start on the same port in the given mode
  bool running();

  std::uint16_t port() const { return options_.port; }
  std::string relayhost() const;  // "[127.0.0.1]:port", for Postfix's relayhost
  sink_mode mode() const { return options_.mode; }

  std::vector<sink_message> messages() const;  // every complete message of every run, in order
  std::size_t message_count() const;
  bool wait_for_messages(std::size_t at_least, std::chrono::milliseconds timeout) const;
  std::string stderr_text() const;  // smtp-sink's complaints, for failure messages

 private:
  struct run_files {
    std::filesystem::path dump, out, err;
  };
  run_files files_of(int generation) const;
  std::size_t completed_in(int generation) const;

  smtp_sink_options options_;
  child_process process_;
  int generation_ = 0;
};

// Parses one smtp-sink dump record (exposed for tests).
sink_message parse_sink_record(std::string_view record);

}  // namespace mukai::testing
