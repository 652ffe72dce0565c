// Received: trace header and spool envelope of an incoming message; see smtp_trace.hpp.
#include "server/smtp_trace.hpp"

#include <time.h>

#include <array>
#include <cstdio>
#include <cstdlib>

#include "server/network_acl.hpp"

namespace mukai::server {

std::string format_rfc5322_date(std::chrono::system_clock::time_point t) {
  static constexpr std::array<const char*, 7> days = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> months = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  struct tm tm {};
  if (::localtime_r(&seconds, &tm) == nullptr) {
    // Cannot happen for a clock reading; UTC is still a correct date-time.
    ::gmtime_r(&seconds, &tm);
    tm.tm_gmtoff = 0;
  }
  const long offset_minutes = tm.tm_gmtoff / 60;
  const long abs_offset = std::labs(offset_minutes);
  char buf[64];
  const int n =
      std::snprintf(buf, sizeof buf, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld",
                    days[static_cast<std::size_t>(tm.tm_wday) % 7], tm.tm_mday,
                    months[static_cast<std::size_t>(tm.tm_mon) % 12], tm.tm_year + 1900, tm.tm_hour,
                    tm.tm_min, tm.tm_sec, offset_minutes < 0 ? '-' : '+', abs_offset / 60, abs_offset % 60);
  return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
}

std::string address_literal(const boost::asio::ip::address& a) {
  const auto plain = unmap_address(a);
  if (plain.is_v4()) return "[" + plain.to_string() + "]";
  // A link-local peer's zone ("%eth0") is local knowledge, not part of an address literal.
  auto v6 = plain.to_v6();
  v6.scope_id(0);
  return "[IPv6:" + v6.to_string() + "]";
}

std::string make_received_header(const received_trace& trace) {
  std::string h;
  h.reserve(256 + trace.helo.size() + trace.single_recipient.size());
  h.append("Received: from ")
      .append(trace.helo)
      .append(" (")
      .append(address_literal(trace.client))
      .append(")\r\n");
  h.append("\tby ").append(trace.by_host).append(" (mukai) with ").append(trace.with_protocol);
  if (!trace.tls_description.empty()) h.append("\r\n\t(using ").append(trace.tls_description).append(")");
  h.append("\r\n\tid ").append(trace.queue_id);
  if (!trace.single_recipient.empty()) {
    h.append("\r\n\tfor <").append(trace.single_recipient).append(">");
  }
  h.append(";\r\n\t").append(format_rfc5322_date(trace.when)).append("\r\n");
  return h;
}

std::string dsn_notify_wire(const smtp_dsn_notify& notify) {
  if (!notify.given) return {};
  if (notify.never) return "NEVER";
  std::string out;
  const auto add = [&out](bool on, std::string_view keyword) {
    if (!on) return;
    if (!out.empty()) out.push_back(',');
    out.append(keyword);
  };
  add(notify.success, "SUCCESS");
  add(notify.failure, "FAILURE");
  add(notify.delay, "DELAY");
  return out;
}

spool_envelope to_spool_envelope(const smtp_envelope& envelope, const boost::asio::ip::address& client,
                                 std::chrono::system_clock::time_point received) {
  spool_envelope e;
  e.mail_from = envelope.sender;
  switch (envelope.body) {
    case smtp_body_type::unspecified:
      e.body = spool_body_type::unspecified;
      break;
    case smtp_body_type::seven_bit:
      e.body = spool_body_type::seven_bit;
      break;
    case smtp_body_type::eight_bit_mime:
      e.body = spool_body_type::eight_bit_mime;
      break;
  }
  e.smtputf8 = envelope.smtputf8;
  switch (envelope.ret) {
    case smtp_dsn_ret::unspecified:
      e.ret = spool_dsn_ret::unspecified;
      break;
    case smtp_dsn_ret::full:
      e.ret = spool_dsn_ret::full;
      break;
    case smtp_dsn_ret::headers:
      e.ret = spool_dsn_ret::headers;
      break;
  }
  e.envid = envelope.envid;
  e.recipients.reserve(envelope.recipients.size());
  for (const auto& r : envelope.recipients)
    e.recipients.push_back({r.mailbox, dsn_notify_wire(r.notify), r.orcpt});
  const auto plain = unmap_address(client);
  if (plain.is_v6()) {
    auto v6 = plain.to_v6();
    v6.scope_id(0);
    e.client_address = v6.to_string();
  } else {
    e.client_address = plain.to_string();
  }
  e.helo = envelope.helo_name;
  e.esmtp = envelope.esmtp;
  e.tls = envelope.tls;
  e.received = received;
  return e;
}

}  // namespace mukai::server
