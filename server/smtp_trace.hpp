// What the SMTP listener records about how a message arrived: the Received: trace header it
// prepends to every spooled message (RFC 5321 4.4) and the spool envelope it stores with it.
//
// Invariants: the header is printable ASCII except for a recipient address of an SMTPUTF8
// transaction (RFC 6532 allows UTF-8 there), every line ends in CRLF and stays far below the 998
// octet line limit (each variable part sits on its own folded line and is bounded by the protocol:
// HELO <= 255, an address <= one command line). Nothing in it comes from the client without the
// protocol object's validation (the HELO name is one printable token; addresses have no controls).
// "for <rcpt>" is written only for a single recipient, so that one recipient of a message does not
// learn the others (Bcc) from the trace. DSN values are kept in their wire form so that the delivery
// client forwards them byte for byte.
// Threading: pure functions.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <string>
#include <string_view>

#include "server/smtp_protocol.hpp"
#include "server/spool.hpp"

namespace mukai::server {

struct received_trace {
  std::string_view helo;             // EHLO/HELO argument
  boost::asio::ip::address client;   // the peer address (IPv4-mapped IPv6 is shown as IPv4)
  std::string_view by_host;          // our [smtp] hostname
  std::string_view with_protocol;    // received_with_protocol(envelope): SMTP, ESMTP, ESMTPS...
  std::string_view tls_description;  // "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384", "" without TLS
  std::string_view queue_id;
  std::string_view single_recipient;  // the recipient when there is exactly one, else ""
  std::chrono::system_clock::time_point when;
};

// "Received: from <helo> ([<ip>])\r\n\tby <host> (mukai) with <proto> id <id>\r\n\tfor <rcpt>; <date>\r\n".
[[nodiscard]] std::string make_received_header(const received_trace& trace);

// RFC 5322 date-time in the local time zone: "Tue, 1 Jul 2003 10:52:37 +0900".
[[nodiscard]] std::string format_rfc5322_date(std::chrono::system_clock::time_point t);

// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 4.1.3 address literal).
[[nodiscard]] std::string address_literal(const boost::asio::ip::address& a);

// The wire form of NOTIFY=: "NEVER", or SUCCESS/FAILURE/DELAY joined with commas in that order;
// "" when the parameter was absent (the next hop then applies its default).
[[nodiscard]] std::string dsn_notify_wire(const smtp_dsn_notify& notify);

// The spool's envelope for a transaction of the protocol object.
[[nodiscard]] spool_envelope to_spool_envelope(const smtp_envelope& envelope,
                                               const boost::asio::ip::address& client,
                                               std::chrono::system_clock::time_point received);

}  // namespace mukai::server
