// Delivery status notifications (RFC 3464, RFC 3461, RFC 3462/6522): the bounce that tells the envelope
// sender which recipients failed for good (a 5xx, or still undeliverable after max_queue_lifetime).
//
// What it produces: a multipart/report; report-type=delivery-status message written by hand (server/
// never links GMime; this is a writer with a fixed shape, not a parser):
//   1. text/plain; charset=UTF-8, quoted-printable: Japanese, then English, per failed recipient;
//   2. message/delivery-status: Reporting-MTA, Arrival-Date, and per recipient Final-Recipient,
//      Original-Recipient (from ORCPT), Action: failed, Status, Remote-MTA, Diagnostic-Code,
//      Last-Attempt-Date;
//   3. text/rfc822-headers of the (sanitized) message, or with RET=FULL the whole message as
//      message/rfc822 (only up to dsn_options::max_full_return and only when its lines are at most 998
//      octets; otherwise headers, and the text says so). Without RET, headers only: the least data.
//
// Invariants: CRLF line ends only; no line longer than 998 octets (long fields are folded); parts 1
// and 2 are 7-bit (server replies and addresses are reduced to printable ASCII there; a non-ASCII
// address uses RFC 6533's "utf-8;" \x{...} form); the boundary is 128 random bits and is checked
// against the content. Never to the null sender, and the DSN itself goes out with the null sender
// (MAIL FROM:<>), so a DSN can never cause another DSN (RFC 5321 6.1, RFC 3461 6.2). Recipients whose
// NOTIFY= excludes FAILURE (NEVER, SUCCESS, DELAY) are left out.
// Status: a remote reply's enhanced status code when it has one of the same class, else X.0.0 by the
// reply code; a recipient that expired keeps the class of its last (temporary) reply, "4.4.7"
// (delivery time expired) without one, as Postfix and Sendmail do (Action: failed either way).
// Pure functions (plus the CSPRNG for the boundary and Message-ID), safe from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/spool.hpp"

namespace mukai::server {

struct dsn_options {
  std::string reporting_mta = "localhost";                 // our host name ([smtp] hostname)
  std::uint64_t max_full_return = 10ull * 1024 * 1024;     // RET=FULL returns the message up to this size
  std::size_t max_returned_headers = 64 * 1024;            // the header block is cut (at a line) beyond this
  std::chrono::seconds max_queue_lifetime{5 * 24 * 3600};  // quoted in the text for expired recipients
};

struct failed_recipient {
  std::size_t index = 0;   // into the original envelope's recipients
  std::string last_reply;  // recipient_delivery::last_reply: "550 5.1.1 ..." or "5.3.4 ..." (local)
  std::string remote_mta;  // host that gave the reply, "" if unknown
  bool expired = false;    // given up after max_queue_lifetime, not refused
  std::chrono::system_clock::time_point last_attempt{};  // epoch = unknown (field omitted)
};

// How a stored reply is reported.
struct dsn_diagnostic {
  std::string type;    // "smtp" for a remote reply, "X-Mukai" for one we made
  std::string status;  // "5.1.1"
  std::string text;    // the reply, printable ASCII
};
[[nodiscard]] dsn_diagnostic classify_diagnostic(std::string_view last_reply, bool expired);

// The spool envelope's client address of a DSN we generated (no SMTP client ever has it: the session
// stores an IP literal). The relay routes such messages to [delivery] bounce_next_hop.
inline constexpr std::string_view dsn_client_address = "local:dsn";

struct dsn_message {
  spool_envelope envelope;  // null sender; one recipient: the original sender
  std::string body;         // the complete message, CRLF
};

// nullopt when the original has the null sender (or one that cannot be written in a header), or when
// no recipient of `failed` asked for (or defaulted to) failure notices.
[[nodiscard]] std::optional<dsn_message> build_dsn(const spooled_message& original,
                                                   const std::vector<failed_recipient>& failed,
                                                   const dsn_options& options,
                                                   std::chrono::system_clock::time_point now);

}  // namespace mukai::server
