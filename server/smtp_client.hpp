// The delivery client: sends one message to one SMTP next hop and reports what the server said about
// each recipient. One session per call (connect, greeting, EHLO/HELO, STARTTLS, EHLO, MAIL, RCPT...,
// DATA or BDAT, QUIT); it never retries or fails over (delivery.hpp does).
//
// Invariants:
//  - Every read is bounded: a reply line longer than max_reply_line or a reply of more than
//    max_reply_lines lines ends the session (a hostile or broken server cannot make us buffer without
//    limit), and every step has a deadline (io_deadline.hpp): a server that stalls costs at most the
//    step's timeout. A whole reply must arrive within its timeout, so a server dripping one byte at a
//    time does not extend it.
//  - Nothing from the envelope reaches the wire unchecked: an address with a control byte, or a DSN
//    parameter that is not valid xtext, is refused (the recipient fails permanently, or the parameter
//    is dropped) rather than let it inject a command.
//  - The body is sent with CRLF line ends only and dot-stuffed (smtp_data_encoder), in bounded chunks.
//  - After STARTTLS, everything read before the handshake is discarded (RFC 3207 section 4.2:
//    response injection) and EHLO is sent again; the capabilities seen in clear are forgotten.
//  - starttls=required: no byte of the message is sent unless TLS 1.2+ was negotiated and, then,
//    the certificate chain verifies against ca_file (or OpenSSL's default store) and names the host.
//    opportunistic: TLS 1.2+ when offered, without verification (encryption against passive
//    eavesdropping only); if the handshake fails, one new plain-text connection is tried, as Postfix
//    does at its "may" level. off: STARTTLS is never sent.
//
// Results: 2xx = delivered, 4xx = temporary, 5xx = permanent, per recipient; a reply after DATA or to
// the last BDAT applies to every recipient accepted at RCPT. A session that ends early (connection
// lost, timeout, 421, malformed reply, TLS failure, greeting or HELO refused) leaves the unresolved
// recipients temporary and sets `error`. A recipient accepted at RCPT whose final reply never came
// is temporary: it may have been delivered (at-least-once; the duplicate window is that instant).
// Replies are stored as printable ASCII, multi-line replies joined, at most 512 bytes. Locally made
// diagnostics start with an enhanced status code and no reply code ("4.4.1 connect to ...").
//
// Threading: smtp_client is immutable after construction and may be shared by concurrent sessions.
// Run each send() on a strand (or a single-threaded io_context): the deadline closes the socket from
// a sibling coroutine (see io_deadline.hpp).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "config/config.hpp"
#include "server/next_hop.hpp"
#include "server/spool.hpp"

namespace mukai::server {

struct smtp_client_options {
  std::string helo_name = "localhost";  // EHLO/HELO argument: [smtp] hostname
  std::string ca_file;                  // CA bundle for starttls=required; "" = OpenSSL's default store
  // Per-step deadlines; defaults are Postfix's smtp_*_timeout values.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};  // per address tried
  std::chrono::milliseconds greeting_timeout{std::chrono::seconds(300)};
  std::chrono::milliseconds helo_timeout{std::chrono::seconds(300)};
  std::chrono::milliseconds starttls_timeout{std::chrono::seconds(300)};  // reply and handshake
  std::chrono::milliseconds mail_timeout{std::chrono::seconds(300)};
  std::chrono::milliseconds rcpt_timeout{std::chrono::seconds(300)};
  std::chrono::milliseconds data_init_timeout{std::chrono::seconds(120)};
  std::chrono::milliseconds data_block_timeout{std::chrono::seconds(180)};  // each body write
  std::chrono::milliseconds data_done_timeout{std::chrono::seconds(600)};
  std::chrono::milliseconds quit_timeout{
      std::chrono::seconds(30)};            // shorter: the results are settled by then
  std::size_t max_reply_line = 2048;        // octets including CRLF (RFC 5321 says 512; be lenient)
  std::size_t max_reply_lines = 100;        // lines in one reply (an EHLO reply has about 10-20)
  std::size_t max_addresses = 5;            // addresses of a host name tried (Postfix smtp_mx_address_limit)
  std::size_t max_pipelined_commands = 64;  // commands sent before reading their replies
  std::size_t data_chunk_size = 64 * 1024;  // body bytes encoded and written at a time
  std::size_t bdat_chunk_size = 1024 * 1024;
  bool use_pipelining = true;                    // when the server offers PIPELINING
  bool use_chunking = true;                      // BDAT when the server offers CHUNKING
  bool opportunistic_plaintext_fallback = true;  // see above

  // helo_name from [smtp] hostname and ca_file from [delivery] ca_file; the rest default.
  [[nodiscard]] static smtp_client_options from_config(const config::mukai_config& c);
};

enum class rcpt_status : std::uint8_t { delivered, temporary, permanent };
[[nodiscard]] std::string_view to_string(rcpt_status s) noexcept;

struct recipient_result {
  std::size_t index = 0;  // into spool_envelope::recipients
  rcpt_status status = rcpt_status::temporary;
  std::string reply;   // "550 5.1.1 <a@b>: unknown user" (remote) or "4.4.1 connect to ..." (local)
  std::string remote;  // endpoint that gave `reply` ("127.0.0.1:2526"); "" for a local diagnostic
  bool operator==(const recipient_result&) const = default;
};

struct delivery_attempt_result {
  std::vector<recipient_result> recipients;  // one per requested recipient, in request order
  std::error_code
      error;  // why the session ended early (smtp_client_errc or an I/O error); {} if it completed
  std::string error_text;   // human-readable, for logs ("lost connection with 127.0.0.1:2526 after RCPT TO")
  bool tls = false;         // the session ran over TLS when it ended
  std::string tls_details;  // "TLSv1.3 TLS_AES_256_GCM_SHA384" when tls
  std::string remote;       // endpoint connected to last ("[::1]:2526"), "" if none
};

enum class smtp_client_errc {
  resolve_failed = 1,    // the host name has no usable address
  malformed_reply,       // a line that is not "ddd[ -]text"
  reply_too_long,        // a line beyond max_reply_line
  too_many_reply_lines,  // a reply beyond max_reply_lines
  connection_closed,     // end of stream while a reply was due
  greeting_rejected,     // the greeting was not 220
  helo_rejected,         // both EHLO and HELO refused
  starttls_unavailable,  // starttls=required, but not offered or refused
  tls_failed,            // the handshake (or certificate verification) failed
  service_closing,       // a 421 reply
  unexpected_reply,      // a reply of the wrong kind (e.g. 250 to DATA)
};
const std::error_category& smtp_client_category() noexcept;
std::error_code make_error_code(smtp_client_errc e) noexcept;

// The message to send: the envelope gives the sender and the ESMTP parameters, `recipients` picks
// which of its recipients to send to (those still pending). The referenced data must outlive send().
struct outgoing_message {
  const spool_envelope& envelope;
  const std::vector<std::size_t>& recipients;  // indices into envelope.recipients
  std::string_view body;                       // message bytes; any line ends (normalised on the wire)
};

class smtp_client {
 public:
  // Builds the two TLS client contexts (TLS 1.2+; one verifying with ca_file or the default store,
  // one not). Throws std::runtime_error if OpenSSL cannot set them up or ca_file cannot be read:
  // call at start-up or configuration reload.
  explicit smtp_client(smtp_client_options options);
  ~smtp_client();
  smtp_client(const smtp_client&) = delete;
  smtp_client& operator=(const smtp_client&) = delete;

  // One delivery attempt to `hop`. Never throws for network or protocol errors (they are in the
  // result); throws boost::system::system_error(operation_aborted) if the calling coroutine is
  // cancelled, and std::bad_alloc.
  [[nodiscard]] boost::asio::awaitable<delivery_attempt_result> send(const smtp_hop& hop,
                                                                     const outgoing_message& message) const;

  [[nodiscard]] const smtp_client_options& options() const noexcept { return options_; }

 private:
  friend class smtp_client_session;
  smtp_client_options options_;
  std::unique_ptr<boost::asio::ssl::context> verifying_context_;
  std::unique_ptr<boost::asio::ssl::context> opportunistic_context_;
};

}  // namespace mukai::server

template <>
struct std::is_error_code_enum<mukai::server::smtp_client_errc> : std::true_type {};
