// The SMTP server protocol engine, sans I/O: bytes from the client go in through receive(), replies and
// actions come out through an smtp_event_sink, in order. No sockets, no Asio, no clock, no spool inside;
// the session coroutine owns those and tells the engine what happened (TLS up, message durable, timeout).
// RFC 5321 plus PIPELINING (2920), SIZE (1870), 8BITMIME (6152), SMTPUTF8 (6531), ENHANCEDSTATUSCODES
// (2034/3463), STARTTLS (3207), CHUNKING (3030) and DSN (3461, parameters carried to the next hop).
//
// Invariants:
//  - Bounded memory: the only input it copies is one partial command line (< limits.max_command_line);
//    message data is never buffered, only passed through append_message_data() in pieces.
//  - End of DATA is only <CRLF>.<CRLF>. Bare LF / bare CR never end a message (SMTP smuggling).
//  - A 2xx for a message is sent only from message_committed(), i.e. after the spool says it is durable.
//  - Every begin_message() is followed by exactly one end_message() or abort_message().
//  - After the STARTTLS 220 the engine consumes nothing more until tls_established().
// Threading: one object per session, driven from one thread (the session's executor). Not thread-safe,
// not reentrant: the sink must not call back into the engine (that aborts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::server {

// Every bound of the protocol object. The config layer (config/) fills these from the TOML file and
// validates them; the engine treats out-of-range values as a programming error (abort), because an
// unchecked zero or huge limit here silently turns a bound off.
struct smtp_limits {
  std::size_t max_command_line = 512;                     // octets incl. CRLF (RFC 5321 4.5.3.1.4); >= 64
  std::size_t max_text_line = 1000;                       // DATA line octets incl. CRLF, unstuffed; >= 3
  std::uint64_t max_message_size = 50ULL * 1024 * 1024;   // octets as stored (CRLF, unstuffed); advertised
  std::size_t max_header_size = 256 * 1024;               // header block octets incl. the blank line
  std::size_t max_recipients = 100;                       // per transaction; beyond: 452 4.5.3
  std::size_t max_errors = 10;                            // error replies per session; then 421 and close
  std::size_t max_commands = 100000;                      // command lines per session; then 421 and close
  std::size_t max_messages = 1000;                        // MAIL transactions per session; then 421
  std::size_t max_commands_per_receive = 100;             // lines one receive() call handles (see below)
  bool normalise_bare_lf = false;                         // bare LF -> CRLF instead of rejecting
};

// Listener-wide settings, shared by every session (a SIGHUP reload builds a new one; sessions keep
// the one they started with).
struct smtp_server_config {
  std::string hostname = "localhost";  // greeting, EHLO and 421 replies; printable ASCII, no spaces
  bool tls_available = false;          // a certificate is loaded: advertise and accept STARTTLS
  bool tls_required = false;           // MAIL/RCPT/DATA/BDAT/VRFY answer 530 5.7.0 until TLS is active
  // Recipient domains we relay to; everything else gets 550 5.7.1. Matched case-insensitively:
  // "example.lg.jp" matches only that domain, ".example.lg.jp" any subdomain of it, "*" everything,
  // "[192.0.2.1]" that address literal. EMPTY MEANS NOTHING IS RELAYED: a forgotten setting must fail
  // closed, never turn mukai into an open relay; the embedded first-run default sets "*" explicitly
  // and relies on client_networks = loopback.
  std::vector<std::string> relay_domains;
  // RFC 5321 4.5.1 wants "RCPT TO:<Postmaster>" (no domain) accepted; it is rewritten to this address.
  // Empty: answered 550 5.1.1 (we have no local domain of our own).
  std::string postmaster_address;
  smtp_limits limits;
};

// What the I/O layer knows about this one connection.
struct smtp_session_options {
  bool client_allowed = true;  // false: greet 554 5.7.1, then 503 to everything but QUIT (RFC 5321 3.1)
  bool tls_active = false;     // implicit TLS (the connection was TLS from the first byte)
};

enum class smtp_body_type : std::uint8_t { unspecified, seven_bit, eight_bit_mime };
enum class smtp_dsn_ret : std::uint8_t { unspecified, full, headers };

// RCPT ... NOTIFY= (RFC 3461 4.1). given=false: the parameter was absent (next hop applies defaults).
struct smtp_dsn_notify {
  bool given = false;
  bool never = false;
  bool success = false;
  bool failure = false;
  bool delay = false;
  bool operator==(const smtp_dsn_notify&) const = default;
};

struct smtp_recipient {
  std::string mailbox;     // "local@domain" as sent (case kept, source route stripped); never empty
  smtp_dsn_notify notify;  // NOTIFY=
  std::string orcpt;       // ORCPT= value as sent ("rfc822;a+2Bb@example"), validated; "" if absent
};

// The transaction as it stands; begin_message() hands over a complete one (RCPT after the first BDAT
// chunk is refused, so it cannot change afterwards). DSN values are kept in their wire (xtext) form so
// the delivery client can forward them byte for byte.
struct smtp_envelope {
  std::string helo_name;  // EHLO/HELO argument, printable ASCII only (safe for a Received header)
  bool esmtp = false;     // EHLO (not HELO)
  bool tls = false;       // the transaction ran over TLS
  std::string sender;     // reverse-path "local@domain"; "" is the null sender <>
  bool smtputf8 = false;  // MAIL ... SMTPUTF8
  smtp_body_type body = smtp_body_type::unspecified;
  std::optional<std::uint64_t> declared_size;  // MAIL ... SIZE=
  smtp_dsn_ret ret = smtp_dsn_ret::unspecified;
  std::string envid;  // ENVID= xtext as sent, "" if absent
  std::vector<smtp_recipient> recipients;
  bool chunking = false;  // data arrived with BDAT
};

// The "with" keyword of a Received header for this transaction (RFC 3848, RFC 6531 3.7.3):
// SMTP, ESMTP, ESMTPS, UTF8SMTP, UTF8SMTPS.
[[nodiscard]] std::string_view received_with_protocol(const smtp_envelope& envelope) noexcept;

// Where the engine's output goes. Calls arrive in protocol order, during the engine call that caused
// them. The views passed are valid only for the duration of the call: copy what you keep.
// The sink must not call any smtp_protocol member (it aborts on reentrancy).
class smtp_event_sink {
 public:
  virtual ~smtp_event_sink() = default;
  // One complete reply, possibly multi-line ("250-...\r\n250 ...\r\n"), always CRLF-terminated.
  // Queue it; see "Flushing" below for when to write.
  virtual void send_reply(std::string_view reply) = 0;
  // A message starts (after 354 for DATA, with the first accepted BDAT chunk): open a spool file.
  virtual void begin_message(const smtp_envelope& envelope) = 0;
  // Message bytes as they will be stored: dot-unstuffed, CRLF lines (DATA), or verbatim (BDAT).
  // Never the terminating ".\r\n". Bounded by the input handed to receive().
  virtual void append_message_data(std::string_view bytes) = 0;
  // The message is complete: make it durable, then call message_committed() or message_failed().
  // The engine consumes no input until then.
  virtual void end_message() = 0;
  // The message will not be accepted (too big, bare LF, RSET, QUIT, timeout...): drop the spool file.
  // The reason reaches the client as a reply, possibly later (after the rest of the data is drained).
  virtual void abort_message() = 0;
  // "220 2.0.0 Ready to start TLS" was just queued: flush it, DISCARD every byte received after the
  // STARTTLS line (receive() did not consume them), run the handshake, then call tls_established().
  virtual void start_tls() = 0;
  // The final reply (221 or 421) was just queued: flush it and close the connection.
  virtual void close_connection() = 0;
};

enum class smtp_phase : std::uint8_t {
  not_started,              // start() not called yet
  command,                  // reading command lines
  data,                     // reading DATA text up to <CRLF>.<CRLF>
  bdat,                     // reading a BDAT chunk's octets
  awaiting_message_result,  // end_message() emitted; waiting for message_committed/failed
  awaiting_tls,             // start_tls() emitted; waiting for tls_established
  closed,                   // close_connection() emitted or connection_lost(); inert from now on
};

enum class smtp_spool_failure : std::uint8_t {
  temporary,  // 451 4.3.0: disk full, I/O error, ... the client retries later
  permanent,  // 554 5.3.0: the spool refuses this message for good
};

// The engine. Typical I/O loop (one coroutine per connection, `in` a fixed-size read buffer):
//
//   protocol.start();                                       // queues the greeting
//   for (;;) {
//     flush queued replies;
//     if (closing) break;                                  // after close_connection()
//     if (tls_requested) { in.clear(); handshake; protocol.tls_established(); continue; }
//     if (protocol.awaiting_message_result()) { spool; protocol.message_committed(id); continue; }
//     if (in.empty()) { read some bytes into in (with the command/data timeout; on expiry
//                       protocol.on_timeout()); }
//     in.consume(protocol.receive(in));                     // may be fewer than in.size()
//   }
//
// receive() consumes input until it runs out or one of these happens, then returns the count consumed:
//  - end_message() was emitted: keep the rest (pipelined commands after the message) and offer it again
//    after message_committed()/message_failed(). wants_input() is false meanwhile: do not read more, so
//    the bound on input held while the spool works is the I/O layer's read buffer (backpressure);
//  - start_tls() was emitted: the rest MUST be discarded (RFC 3207 section 4/CVE-2011-0411 class:
//    plaintext pipelined after STARTTLS must never be executed as if it came over TLS);
//  - close_connection() was emitted: discard the rest;
//  - limits.max_commands_per_receive lines were handled: flush the replies, then offer the rest again.
//    This bounds the replies queued per call and keeps one pipelining client from monopolising the
//    thread that serves thousands of sessions.
//
// Flushing (RFC 2920 section 3.2): write the queued replies after each receive() call returns (it
// returns when it has no more complete input or has to stop), before a TLS handshake, before closing and
// before waiting on the spool. Never write one reply per command inside a pipelined batch.
class smtp_protocol {
 public:
  smtp_protocol(std::shared_ptr<const smtp_server_config> config, smtp_session_options options,
                smtp_event_sink& sink);
  smtp_protocol(const smtp_protocol&) = delete;
  smtp_protocol& operator=(const smtp_protocol&) = delete;
  ~smtp_protocol() = default;

  // Queues the greeting ("220 <hostname> ESMTP mukai", or 554 5.7.1 for a refused client). Once.
  void start();

  // Offers bytes read from the client; returns how many were consumed (see above). Binary-safe.
  [[nodiscard]] std::size_t receive(std::string_view input);

  // True when receive() would consume input: started, not closed, not waiting for TLS or the spool.
  [[nodiscard]] bool wants_input() const noexcept;

  // The TLS handshake after start_tls() succeeded. Resets the session to the just-greeted state
  // (RFC 3207 4.2: forget EHLO and everything else learnt before TLS); the client must EHLO again.
  // If the handshake fails, just drop the connection (connection_lost()).
  void tls_established();

  // The message from end_message() is durable in the spool under `queue_id` (1..64 printable ASCII,
  // no spaces; anything else aborts): queues "250 2.0.0 Ok: queued as <queue_id>".
  void message_committed(std::string_view queue_id);
  // The spool could not take the message: queues 451 4.3.0 or 554 5.3.0.
  void message_failed(smtp_spool_failure failure = smtp_spool_failure::temporary);
  // Both are ignored once the session is closed (the client went away while the spool worked: the
  // message may still be delivered, and the client will resend it: at-least-once, never lost).

  // The command or data timeout expired: aborts any open message, queues 421 4.4.2 and closes.
  // Ignored while awaiting the message result (the wait is ours, not the client's) or TLS (nothing can
  // be written in plaintext mid-handshake; the I/O layer just drops the connection).
  void on_timeout();

  // Graceful stop (SIGTERM): a message being received is finished and spooled; the next command is
  // answered 421 4.3.2 and the connection closed (QUIT still gets its 221).
  void begin_shutdown();
  // End of the grace period: aborts an open message, queues 421 4.3.2 and closes. While awaiting the
  // message result it waits for that result (replying 250/451 first) so a durable message is not
  // answered 421 and resent.
  void shutdown_now();

  // The connection is gone (read/write error, failed TLS handshake): aborts an open message (not one
  // already handed over with end_message()) and makes the engine inert. Emits no reply and no close.
  void connection_lost();

  // The spool is below its free-space floor: MAIL is answered 452 4.3.1 until it is cleared.
  void set_storage_low(bool low) noexcept;

  [[nodiscard]] smtp_phase phase() const noexcept { return phase_; }
  [[nodiscard]] bool awaiting_message_result() const noexcept {
    return phase_ == smtp_phase::awaiting_message_result;
  }
  [[nodiscard]] bool awaiting_tls() const noexcept { return phase_ == smtp_phase::awaiting_tls; }
  [[nodiscard]] bool is_closed() const noexcept { return phase_ == smtp_phase::closed; }
  [[nodiscard]] bool tls_active() const noexcept { return tls_active_; }
  [[nodiscard]] const smtp_envelope& envelope() const noexcept { return envelope_; }

  // Counters for logs and metrics.
  [[nodiscard]] std::size_t commands() const noexcept { return commands_; }
  [[nodiscard]] std::size_t errors() const noexcept { return errors_; }
  [[nodiscard]] std::size_t transactions() const noexcept { return transactions_; }
  [[nodiscard]] std::size_t messages_accepted() const noexcept { return messages_accepted_; }

 private:
  enum class data_state : std::uint8_t { line_start, mid_line, cr, dot, dot_cr };
  // Why the message being received will be refused once its data has been drained. The earliest
  // offending octet in the stream decides, whatever the split of the input.
  enum class doom_reason : std::uint8_t { none, too_big, header_too_big, line_too_long, bare_lf, bare_cr };

  // Counts the header block (up to and including the first empty line) of the message being stored.
  class header_meter {
   public:
    void reset() noexcept { *this = header_meter{}; }
    // Counts the octets of `bytes` that belong to the header block (up to and including the blank line
    // that ends it). Returns the offset in `bytes` of the octet that takes the block past `limit`, or
    // npos. Never called again once it has reported a crossing.
    [[nodiscard]] std::size_t feed(std::string_view bytes, std::size_t limit) noexcept;

   private:
    bool done_ = false;
    bool last_cr_ = false;
    std::size_t size_ = 0;
    std::size_t line_octets_ = 0;
  };

  const smtp_limits& limits() const noexcept { return config_->limits; }

  std::size_t consume_command_input(std::string_view input);
  std::size_t consume_data(std::string_view input);
  std::size_t consume_bdat(std::string_view input);

  void process_line(std::string_view raw);
  void process_line_too_long();
  void dispatch(std::string_view verb, std::string_view args);
  void handle_hello(std::string_view args, bool extended);
  void handle_mail(std::string_view args);
  void handle_rcpt(std::string_view args);
  void handle_data(std::string_view args);
  void handle_bdat(std::string_view args);
  void handle_starttls(std::string_view args);
  void finish_data();
  void finish_bdat_chunk();

  void emit(std::string_view bytes);
  void doom(doom_reason reason);
  void account(std::string_view piece, bool line_content);
  void start_message();
  void reset_transaction();
  void reset_message_state() noexcept;

  void send(std::string_view reply);
  void send_error(std::string_view reply);
  void close_with(std::string_view reply);
  void close_with_host(std::string_view code_and_status, std::string_view text);
  void enforce_error_limit();
  void after_message_result();
  std::string ehlo_reply() const;

  std::shared_ptr<const smtp_server_config> config_;
  smtp_event_sink& sink_;

  smtp_phase phase_ = smtp_phase::not_started;
  bool client_allowed_;
  bool tls_active_;
  bool greeted_ = false;          // HELO/EHLO seen (since the last TLS reset)
  bool mail_given_ = false;       // a MAIL transaction is open
  bool bdat_started_ = false;     // this transaction has an accepted BDAT chunk (and an open message)
  bool bdat_failed_ = false;      // a BDAT failed: discard pipelined chunks until LAST/RSET/MAIL
  bool message_open_ = false;     // begin_message emitted, end/abort not yet
  bool shutting_down_ = false;
  bool close_after_result_ = false;
  bool storage_low_ = false;
  bool in_call_ = false;          // reentrancy guard
  bool discarding_line_ = false;  // an over-long command line is being skipped up to its LF

  std::string line_buf_;  // a partial command line; always < limits.max_command_line octets
  smtp_envelope envelope_;

  // The message being received.
  data_state data_state_ = data_state::line_start;
  bool weak_line_start_ = false;  // this line began after a normalised bare LF: its "." ends nothing
  doom_reason doom_ = doom_reason::none;
  std::size_t line_octets_ = 0;
  std::uint64_t message_size_ = 0;
  header_meter header_;

  // The BDAT chunk being read.
  std::uint64_t bdat_remaining_ = 0;
  std::uint64_t bdat_chunk_size_ = 0;
  bool bdat_last_ = false;
  bool bdat_accepting_ = false;   // octets go to the message (else they are drained)
  std::string_view bdat_reply_;   // canned reply when the chunk is drained, "" if accepted
  bool bdat_reply_is_error_ = false;

  std::size_t commands_ = 0;
  std::size_t errors_ = 0;
  std::size_t transactions_ = 0;
  std::size_t messages_accepted_ = 0;
  std::size_t lines_this_call_ = 0;
};

}  // namespace mukai::server
