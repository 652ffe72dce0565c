// dsn: never to the null sender, NOTIFY honoured, the multipart/report structure parsed back loosely
// (boundary, three parts, their types), the delivery-status fields per recipient, Status derived from
// replies (remote, local, expired), RET=FULL/HDRS and the size fallback, CRLF-only output with lines
// of at most 998 octets and 7-bit report parts, hostile replies and UTF-8 addresses.
#include "server/dsn.hpp"

#include <doctest/doctest.h>

#include <map>

using namespace mukai::server;
using namespace std::chrono_literals;

namespace {

spooled_message original_message() {
  spooled_message m;
  m.queue_id = "0h5k2m3n4p5q6r7s";
  m.envelope.mail_from = "sender@example.com";
  m.envelope.recipients = {{"a@example.lg.jp", "", ""},
                           {"b@example.lg.jp", "FAILURE,DELAY", "rfc822;b+2Bx@example.lg.jp"},
                           {"c@example.lg.jp", "NEVER", ""},
                           {"d@example.lg.jp", "SUCCESS", ""}};
  m.envelope.received = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  m.body =
      "From: Sender <sender@example.com>\r\nTo: a@example.lg.jp\r\nSubject: hello\r\n"
      "Message-ID: <1@example.com>\r\n\r\nBody line 1\r\nBody line 2\r\n";
  return m;
}

std::vector<failed_recipient> failures() {
  return {
      failed_recipient{0, "550 5.1.1 <a@example.lg.jp>: Recipient address rejected: User unknown",
                       "mx.example.lg.jp", false,
                       std::chrono::system_clock::time_point(std::chrono::seconds(1700000100))},
      failed_recipient{1, "452 4.2.2 mailbox full", "", true, {}},
  };
}

dsn_options opts() {
  dsn_options o;
  o.reporting_mta = "mukai.example.lg.jp";
  return o;
}

const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700432000));

struct mime_part {
  std::map<std::string, std::string> headers;  // lower-cased names, unfolded values
  std::string body;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

mime_part parse_entity(const std::string& text) {
  mime_part p;
  const auto end = text.find("\r\n\r\n");
  const std::string head = end == std::string::npos ? text : text.substr(0, end + 2);
  p.body = end == std::string::npos ? "" : text.substr(end + 4);
  std::string name;
  std::size_t pos = 0;
  while (pos < head.size()) {
    auto nl = head.find("\r\n", pos);
    if (nl == std::string::npos) nl = head.size();
    const std::string line = head.substr(pos, nl - pos);
    pos = nl + 2;
    if (line.empty()) continue;
    if ((line[0] == ' ' || line[0] == '\t') && !name.empty()) {
      p.headers[name] += " " + line.substr(line.find_first_not_of(" \t"));
      continue;
    }
    const auto colon = line.find(':');
    REQUIRE(colon != std::string::npos);
    name = lower(line.substr(0, colon));
    p.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  return p;
}

std::string param(const std::string& header, const std::string& key) {
  const auto k = header.find(key + "=");
  if (k == std::string::npos) return {};
  std::size_t start = k + key.size() + 1;
  if (header[start] == '"') return header.substr(start + 1, header.find('"', start + 1) - start - 1);
  return header.substr(start, header.find_first_of("; ", start) - start);
}

std::vector<mime_part> parse_multipart(const mime_part& top) {
  const std::string boundary = param(top.headers.at("content-type"), "boundary");
  REQUIRE_FALSE(boundary.empty());
  const std::string delim = "\r\n--" + boundary;
  const std::string body = "\r\n" + top.body;
  std::vector<mime_part> parts;
  auto pos = body.find(delim);
  REQUIRE(pos != std::string::npos);
  for (;;) {
    pos += delim.size();
    if (body.compare(pos, 2, "--") == 0) break;  // closing delimiter
    REQUIRE(body.compare(pos, 2, "\r\n") == 0);
    pos += 2;
    const auto next = body.find(delim, pos);
    REQUIRE(next != std::string::npos);
    parts.push_back(parse_entity(body.substr(pos, next - pos)));
    pos = next;
  }
  CHECK(body.substr(pos) == "--\r\n");
  return parts;
}

std::string qp_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '=' && i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') {
      i += 2;
    } else if (s[i] == '=' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Groups of "Name: value" fields separated by empty lines (RFC 3464 2.1).
std::vector<std::map<std::string, std::string>> field_groups(const std::string& s) {
  std::vector<std::map<std::string, std::string>> groups(1);
  std::string last;
  std::size_t pos = 0;
  while (pos < s.size()) {
    auto nl = s.find("\r\n", pos);
    if (nl == std::string::npos) nl = s.size();
    const std::string line = s.substr(pos, nl - pos);
    pos = nl + 2;
    if (line.empty()) {
      if (!groups.back().empty()) groups.emplace_back();
      continue;
    }
    if (line[0] == ' ') {
      groups.back()[last] += line;
      continue;
    }
    const auto colon = line.find(':');
    last = lower(line.substr(0, colon));
    groups.back()[last] = line.substr(colon + 2);
  }
  if (groups.back().empty()) groups.pop_back();
  return groups;
}

// CRLF only, no NUL, no line over 998 octets, ends with CRLF. Returns the first problem, "" if none.
std::string wire_form_problem(const std::string& s) {
  std::size_t line_len = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      if (i + 1 >= s.size() || s[i + 1] != '\n') return "bare CR at " + std::to_string(i);
      ++i;
      line_len = 0;
      continue;
    }
    if (s[i] == '\n') return "bare LF at " + std::to_string(i);
    if (s[i] == '\0') return "NUL at " + std::to_string(i);
    if (++line_len > 998) return "line longer than 998 octets at " + std::to_string(i);
  }
  if (!s.ends_with("\r\n")) return "no final CRLF";
  return {};
}

void check_wire_form(const std::string& s) { CHECK(wire_form_problem(s) == ""); }

bool is_7bit(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

TEST_CASE("never to the null sender; NOTIFY decides who is reported") {
  auto m = original_message();
  m.envelope.mail_from = "";
  CHECK_FALSE(build_dsn(m, failures(), opts(), now).has_value());

  m = original_message();
  CHECK_FALSE(build_dsn(m, {}, opts(), now).has_value());
  // c asked NOTIFY=NEVER, d only SUCCESS: nothing to send.
  CHECK_FALSE(
      build_dsn(m, {failed_recipient{2, "550 x", "", false, {}}, failed_recipient{3, "550 y", "", false, {}}},
                opts(), now)
          .has_value());
  // Out-of-range indices are ignored.
  CHECK_FALSE(build_dsn(m, {failed_recipient{9, "550 x", "", false, {}}}, opts(), now).has_value());
  // A sender that could break the To: header is refused.
  m.envelope.mail_from = "a@b>\r\nBcc: x@y";
  CHECK_FALSE(build_dsn(m, failures(), opts(), now).has_value());
}

TEST_CASE("structure: multipart/report with text, delivery-status and headers") {
  const auto m = original_message();
  auto failed = failures();
  failed.push_back(failed_recipient{2, "550 never reported", "", false, {}});
  auto dsn = build_dsn(m, failed, opts(), now);
  REQUIRE(dsn);
  check_wire_form(dsn->body);
  CHECK(is_7bit(dsn->body));

  // The envelope: null sender, to the original sender.
  CHECK(dsn->envelope.mail_from.empty());
  REQUIRE(dsn->envelope.recipients.size() == 1);
  CHECK(dsn->envelope.recipients[0].address == "sender@example.com");
  CHECK_FALSE(dsn->envelope.smtputf8);
  CHECK(dsn->envelope.received == now);

  const mime_part top = parse_entity(dsn->body);
  CHECK(top.headers.at("to") == "<sender@example.com>");
  CHECK(top.headers.at("from") == "Mail Delivery System <MAILER-DAEMON@mukai.example.lg.jp>");
  CHECK(top.headers.at("auto-submitted") == "auto-replied");
  CHECK(top.headers.at("mime-version") == "1.0");
  CHECK(top.headers.at("date") == "Sun, 19 Nov 2023 22:13:20 +0000");
  CHECK(top.headers.at("subject").starts_with("Undelivered Mail Returned to Sender =?UTF-8?B?"));
  CHECK(top.headers.at("message-id").ends_with("@mukai.example.lg.jp>"));
  const std::string& ct = top.headers.at("content-type");
  CHECK(ct.starts_with("multipart/report;"));
  CHECK(param(ct, "report-type") == "delivery-status");

  const auto parts = parse_multipart(top);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].headers.at("content-type") == "text/plain; charset=UTF-8");
  CHECK(parts[0].headers.at("content-transfer-encoding") == "quoted-printable");
  CHECK(parts[1].headers.at("content-type") == "message/delivery-status");
  CHECK(parts[2].headers.at("content-type") == "text/rfc822-headers");

  // The human-readable part: Japanese and English, each failed recipient named.
  const std::string text = qp_decode(parts[0].body);
  CHECK(text.find("配送できませんでした") != std::string::npos);
  CHECK(text.find("could not be delivered") != std::string::npos);
  CHECK(text.find("<a@example.lg.jp>") != std::string::npos);
  CHECK(text.find("<b@example.lg.jp>") != std::string::npos);
  CHECK(text.find("c@example.lg.jp") == std::string::npos);  // NOTIFY=NEVER
  CHECK(text.find("5 days") != std::string::npos);
  CHECK(text.find("保存期間（5日）") != std::string::npos);
  CHECK(text.find("User unknown") != std::string::npos);

  // The report.
  const auto groups = field_groups(parts[1].body);
  REQUIRE(groups.size() == 3);  // per-message + 2 recipients
  CHECK(groups[0].at("reporting-mta") == "dns; mukai.example.lg.jp");
  CHECK(groups[0].at("arrival-date") == "Tue, 14 Nov 2023 22:13:20 +0000");
  CHECK(groups[0].at("x-mukai-queue-id") == "0h5k2m3n4p5q6r7s");
  CHECK(groups[1].at("final-recipient") == "rfc822; a@example.lg.jp");
  CHECK(groups[1].at("action") == "failed");
  CHECK(groups[1].at("status") == "5.1.1");
  CHECK(groups[1].at("remote-mta") == "dns; mx.example.lg.jp");
  CHECK(groups[1].at("diagnostic-code").starts_with("smtp; 550 5.1.1 <a@example.lg.jp>: Recipient address"));
  CHECK(groups[1].at("last-attempt-date") == "Tue, 14 Nov 2023 22:15:00 +0000");
  CHECK(groups[2].at("final-recipient") == "rfc822; b@example.lg.jp");
  CHECK(groups[2].at("original-recipient") == "rfc822; b+x@example.lg.jp");
  CHECK(groups[2].at("action") == "failed");
  CHECK(groups[2].at("status") == "4.2.2");  // expired: the class of the last temporary reply
  CHECK(groups[2].count("remote-mta") == 0);
  CHECK(groups[2].count("last-attempt-date") == 0);

  // The returned headers: the original's header block, no body.
  CHECK(parts[2].body.find("Subject: hello\r\n") != std::string::npos);
  CHECK(parts[2].body.find("Body line") == std::string::npos);
}

TEST_CASE("RET=FULL returns the message; too big or malformed falls back to headers") {
  auto m = original_message();
  m.envelope.ret = spool_dsn_ret::full;
  auto dsn = build_dsn(m, failures(), opts(), now);
  REQUIRE(dsn);
  check_wire_form(dsn->body);
  auto parts = parse_multipart(parse_entity(dsn->body));
  REQUIRE(parts.size() == 3);
  CHECK(parts[2].headers.at("content-type") == "message/rfc822");
  CHECK(parts[2].body.find("Body line 2\r\n") != std::string::npos);
  CHECK(parts[2].body.find("Subject: hello\r\n") != std::string::npos);

  auto o = opts();
  o.max_full_return = 10;
  dsn = build_dsn(m, failures(), o, now);
  REQUIRE(dsn);
  parts = parse_multipart(parse_entity(dsn->body));
  CHECK(parts[2].headers.at("content-type") == "text/rfc822-headers");
  CHECK(qp_decode(parts[0].body).find("too large or malformed") != std::string::npos);

  m.body = "Subject: long\r\n\r\n" + std::string(2000, 'x') + "\r\n";
  dsn = build_dsn(m, failures(), opts(), now);
  REQUIRE(dsn);
  check_wire_form(dsn->body);
  parts = parse_multipart(parse_entity(dsn->body));
  CHECK(parts[2].headers.at("content-type") == "text/rfc822-headers");

  m.envelope.ret = spool_dsn_ret::headers;
  m.body = original_message().body;
  dsn = build_dsn(m, failures(), opts(), now);
  REQUIRE(dsn);
  parts = parse_multipart(parse_entity(dsn->body));
  CHECK(parts[2].headers.at("content-type") == "text/rfc822-headers");
}

TEST_CASE("8-bit original headers: the returned part is 8bit, the report parts stay 7-bit") {
  auto m = original_message();
  m.body = "Subject: \xE6\x97\xA5\xE6\x9C\xAC\r\nFrom: x@example.com\r\n\r\nbody\r\n";
  auto dsn = build_dsn(m, failures(), opts(), now);
  REQUIRE(dsn);
  check_wire_form(dsn->body);
  CHECK(dsn->envelope.body == spool_body_type::eight_bit_mime);
  const auto top = parse_entity(dsn->body);
  CHECK(top.headers.at("content-transfer-encoding") == "8bit");
  const auto parts = parse_multipart(top);
  CHECK(parts[2].headers.at("content-transfer-encoding") == "8bit");
  CHECK(is_7bit(parts[0].body));
  CHECK(is_7bit(parts[1].body));
}

TEST_CASE("hostile replies and addresses stay inside their fields") {
  auto m = original_message();
  m.envelope.recipients[0].address = "\xE5\xB1\xB1\xE7\x94\xB0@example.lg.jp";  // UTF-8 local part
  m.envelope.mail_from = "\xE9\x80\x81@example.com";
  const std::string long_reply = "550 5.7.1 " + std::string(3000, 'y') + "\r\nInjected: header\x01\xFF";
  auto dsn = build_dsn(m, {failed_recipient{0, long_reply, "", false, {}}}, opts(), now);
  REQUIRE(dsn);
  check_wire_form(dsn->body);
  CHECK(dsn->envelope.smtputf8);
  CHECK(dsn->envelope.recipients[0].address == "\xE9\x80\x81@example.com");
  const auto parts = parse_multipart(parse_entity(dsn->body));
  CHECK(is_7bit(parts[1].body));
  const auto groups = field_groups(parts[1].body);
  REQUIRE(groups.size() == 2);
  CHECK(groups[1].at("final-recipient") == "utf-8; \\x{5C71}\\x{7530}@example.lg.jp");
  CHECK(groups[1].at("status") == "5.7.1");
  CHECK(groups[1].count("injected") == 0);
  CHECK(parts[1].body.find("\r\nInjected:") == std::string::npos);
}

TEST_CASE("classify_diagnostic") {
  auto d = classify_diagnostic("550 5.1.1 user unknown", false);
  CHECK(d.type == "smtp");
  CHECK(d.status == "5.1.1");
  d = classify_diagnostic("550 user unknown", false);
  CHECK(d.status == "5.0.0");
  d = classify_diagnostic("554 4.1.1 class mismatch", false);
  CHECK(d.status == "5.0.0");
  d = classify_diagnostic("5.3.4 message size 10 exceeds size limit 5 of x", false);
  CHECK(d.type == "X-Mukai");
  CHECK(d.status == "5.3.4");
  d = classify_diagnostic("4.4.1 connect to 127.0.0.1:25: Connection refused", true);
  CHECK(d.type == "X-Mukai");
  CHECK(d.status == "4.4.1");
  d = classify_diagnostic("421 service closing", true);
  CHECK(d.status == "4.0.0");
  d = classify_diagnostic("", true);
  CHECK(d.status == "4.4.7");
  CHECK(d.text == "4.4.7 delivery time expired");
  d = classify_diagnostic("garbage", false);
  CHECK(d.status == "5.0.0");
  d = classify_diagnostic("550 5.1.10 bad", false);
  CHECK(d.status == "5.1.10");
}
