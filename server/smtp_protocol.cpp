// The SMTP server protocol engine: command parsing, the session/transaction state machine, the DATA
// and BDAT readers, and the one table of replies. See smtp_protocol.hpp for the contract.
// Invariants: no input is read past the bounds in smtp_limits; nothing indexes a string_view without a
// bounds check (a libFuzzer target drives receive() with arbitrary bytes and splits).
// Threading: none of its own; one instance per session, one thread at a time.
#include "server/smtp_protocol.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <utility>

#include "server/line_scan.hpp"

namespace mukai::server {
namespace {

// ---------------------------------------------------------------------------------------------------
// The reply table. Every fixed reply the engine sends lives here, with its RFC 3463 enhanced code.
// Replies never echo client text except validated mailboxes, so no client byte can end a reply line.
// ---------------------------------------------------------------------------------------------------
namespace reply {
constexpr std::string_view ok = "250 2.0.0 Ok\r\n";
constexpr std::string_view mail_ok = "250 2.1.0 Ok\r\n";
constexpr std::string_view rcpt_ok = "250 2.1.5 Ok\r\n";
constexpr std::string_view start_data = "354 End data with <CR><LF>.<CR><LF>\r\n";
constexpr std::string_view bye = "221 2.0.0 Bye\r\n";
constexpr std::string_view ready_tls = "220 2.0.0 Ready to start TLS\r\n";
constexpr std::string_view vrfy = "252 2.0.0 Cannot VRFY user; send RCPT to attempt delivery\r\n";
constexpr std::string_view help =
    "214-2.0.0 mukai SMTP relay. Commands:\r\n"
    "214 2.0.0 EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS\r\n";

constexpr std::string_view need_hello = "503 5.5.1 Error: send HELO/EHLO first\r\n";
constexpr std::string_view nested_mail = "503 5.5.1 Error: nested MAIL command\r\n";
constexpr std::string_view need_mail = "503 5.5.1 Error: need MAIL command\r\n";
constexpr std::string_view need_rcpt = "554 5.5.1 Error: no valid recipients\r\n";
constexpr std::string_view rcpt_after_bdat = "503 5.5.1 Error: RCPT not allowed after BDAT\r\n";
constexpr std::string_view data_after_bdat = "503 5.5.1 Error: DATA not allowed after BDAT\r\n";
constexpr std::string_view bdat_needs_ehlo = "503 5.5.1 Error: BDAT requires EHLO\r\n";
constexpr std::string_view bdat_discarded =
    "503 5.5.1 Error: transaction failed, chunk discarded; send RSET\r\n";
constexpr std::string_view tls_already_active = "503 5.5.1 Error: TLS already active\r\n";
constexpr std::string_view tls_in_transaction = "503 5.5.1 Error: MAIL transaction in progress\r\n";
constexpr std::string_view refused = "503 5.5.1 Error: access denied; send QUIT\r\n";
constexpr std::string_view unknown_command = "500 5.5.1 Error: command not recognized\r\n";
constexpr std::string_view not_implemented = "502 5.5.1 Error: command not implemented\r\n";
constexpr std::string_view line_too_long = "500 5.5.2 Error: command line too long\r\n";
constexpr std::string_view bad_characters = "500 5.5.2 Error: control character in command\r\n";
constexpr std::string_view bare_lf_command =
    "500 5.5.2 Error: bare <LF> received; end lines with <CR><LF>\r\n";
constexpr std::string_view empty_line = "500 5.5.2 Error: bad syntax\r\n";
constexpr std::string_view syntax_ehlo = "501 5.5.4 Syntax: EHLO hostname\r\n";
constexpr std::string_view syntax_helo = "501 5.5.4 Syntax: HELO hostname\r\n";
constexpr std::string_view syntax_mail = "501 5.5.4 Syntax: MAIL FROM:<address>\r\n";
constexpr std::string_view syntax_rcpt = "501 5.5.4 Syntax: RCPT TO:<address>\r\n";
constexpr std::string_view syntax_vrfy = "501 5.5.4 Syntax: VRFY address\r\n";
constexpr std::string_view syntax_bdat = "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n";
constexpr std::string_view no_arguments = "501 5.5.4 Syntax error: no arguments allowed\r\n";
constexpr std::string_view bad_sender = "501 5.1.7 Bad sender address syntax\r\n";
constexpr std::string_view bad_recipient = "501 5.1.3 Bad recipient address syntax\r\n";
constexpr std::string_view sender_too_long = "501 5.1.7 Sender address too long\r\n";
constexpr std::string_view recipient_too_long = "501 5.1.3 Recipient address too long\r\n";
constexpr std::string_view utf8_sender =
    "553 5.6.7 Error: non-ASCII sender address requires SMTPUTF8\r\n";
constexpr std::string_view utf8_recipient =
    "553 5.6.7 Error: non-ASCII recipient address requires SMTPUTF8\r\n";
constexpr std::string_view bad_parameter = "501 5.5.4 Error: bad parameter syntax or value\r\n";
constexpr std::string_view duplicate_parameter = "501 5.5.4 Error: duplicate parameter\r\n";
constexpr std::string_view unsupported_parameter = "555 5.5.4 Error: unsupported parameter\r\n";
constexpr std::string_view parameters_need_ehlo = "555 5.5.4 Error: parameters require EHLO\r\n";
constexpr std::string_view declared_too_big = "552 5.3.4 Error: message size exceeds fixed limit\r\n";
constexpr std::string_view too_big = "552 5.3.4 Error: message size exceeds fixed limit\r\n";
constexpr std::string_view header_too_big = "552 5.3.4 Error: message header size exceeds limit\r\n";
constexpr std::string_view text_line_too_long = "550 5.6.0 Error: text line too long\r\n";
constexpr std::string_view bare_lf_data = "550 5.6.0 Error: bare <LF> received in message data\r\n";
constexpr std::string_view bare_cr_data = "550 5.6.0 Error: bare <CR> received in message data\r\n";
constexpr std::string_view too_many_recipients = "452 4.5.3 Error: too many recipients\r\n";
constexpr std::string_view no_postmaster = "550 5.1.1 <postmaster>: Recipient address rejected\r\n";
constexpr std::string_view must_starttls = "530 5.7.0 Must issue a STARTTLS command first\r\n";
constexpr std::string_view low_storage = "452 4.3.1 Insufficient system storage\r\n";
constexpr std::string_view spool_temporary = "451 4.3.0 Error: queue file write error\r\n";
constexpr std::string_view spool_permanent = "554 5.3.0 Error: message not accepted by the queue\r\n";
}  // namespace reply

// 421s carry the hostname first (RFC 5321 3.8/4.2): "421 4.x.y <host> text".
namespace closing {
constexpr std::string_view timeout = "Error: timeout exceeded";
constexpr std::string_view too_many_errors = "Error: too many errors";
constexpr std::string_view too_many_commands = "Error: too many commands";
constexpr std::string_view too_many_messages = "Error: too many messages in this session";
constexpr std::string_view shutdown = "Service shutting down, closing transmission channel";
constexpr std::string_view foreign_protocol = "Error: non-SMTP command received";
constexpr std::string_view bdat_unsynced = "Error: unreadable BDAT chunk size, closing";
}  // namespace closing

// ---------------------------------------------------------------------------------------------------
// Character classes and small parsers. All take unsigned bytes: char may be signed.
// ---------------------------------------------------------------------------------------------------
constexpr unsigned char byte_at(std::string_view s, std::size_t i) noexcept {
  return static_cast<unsigned char>(s[i]);
}
constexpr bool is_alpha(unsigned char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }
constexpr bool is_alnum(unsigned char c) noexcept { return is_alpha(c) || is_digit(c); }
constexpr bool is_upper_hex(unsigned char c) noexcept { return is_digit(c) || (c >= 'A' && c <= 'F'); }
constexpr bool is_hex(unsigned char c) noexcept { return is_upper_hex(c) || (c >= 'a' && c <= 'f'); }
// RFC 5322 atext.
constexpr bool is_atext(unsigned char c) noexcept {
  if (is_alnum(c)) return true;
  constexpr std::string_view specials = "!#$%&'*+-/=?^_`{|}~";
  return specials.find(static_cast<char>(c)) != std::string_view::npos;
}
constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lower(x) == lower(y);
         });
}
bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}
bool iends_with(std::string_view s, std::string_view suffix) noexcept {
  return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

// Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, <= U+10FFFF) that
// starts with a non-ASCII byte at s[i]; 0 if it is not one.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const unsigned char c0 = byte_at(s, i);
  std::size_t length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    length = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    length = 3;
    if (c0 == 0xE0) second_min = 0xA0;  // overlong
    if (c0 == 0xED) second_max = 0x9F;  // surrogates
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    length = 4;
    if (c0 == 0xF0) second_min = 0x90;  // overlong
    if (c0 == 0xF4) second_max = 0x8F;  // > U+10FFFF
  } else {
    return 0;
  }
  if (s.size() - i < length) return 0;
  const unsigned char c1 = byte_at(s, i + 1);
  if (c1 < second_min || c1 > second_max) return 0;
  for (std::size_t k = 2; k < length; ++k) {
    const unsigned char c = byte_at(s, i + k);
    if (c < 0x80 || c > 0xBF) return 0;
  }
  return length;
}

bool has_non_ascii(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// 1*DIGIT fitting in uint64 (SIZE=, BDAT). At most 20 digits, checked for overflow.
std::optional<std::uint64_t> parse_decimal(std::string_view s) noexcept {
  if (s.empty() || s.size() > 20) return std::nullopt;
  std::uint64_t value = 0;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (!is_digit(c)) return std::nullopt;
    const std::uint64_t digit = c - '0';
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// RFC 3461 4: xtext = *( xchar / hexchar ); returns the decoded length, or nullopt.
std::optional<std::size_t> xtext_decoded_length(std::string_view s) noexcept {
  std::size_t decoded = 0;
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = byte_at(s, i);
    if (c == '+') {
      if (s.size() - i < 3 || !is_upper_hex(byte_at(s, i + 1)) || !is_upper_hex(byte_at(s, i + 2)))
        return std::nullopt;
      i += 3;
    } else if (c >= 33 && c <= 126 && c != '=') {
      ++i;
    } else {
      return std::nullopt;
    }
    ++decoded;
  }
  return decoded;
}

// ---------------------------------------------------------------------------------------------------
// RFC 5321 4.1.2 paths. Parsed with UTF-8 allowed (RFC 6531); the caller refuses non-ASCII when the
// transaction has no SMTPUTF8. Each function advances `i` and never reads at or past s.size().
// ---------------------------------------------------------------------------------------------------
constexpr std::size_t max_local_part = 64;   // RFC 5321 4.5.3.1.1
constexpr std::size_t max_domain = 255;      // RFC 5321 4.5.3.1.2
constexpr std::size_t max_path = 256;        // RFC 5321 4.5.3.1.3, including "<" and ">"
constexpr std::size_t max_label = 63;        // RFC 1035 2.3.4
constexpr std::size_t max_envid = 100;       // RFC 3461 4.4
constexpr std::size_t max_orcpt = 500;       // RFC 3461 4.2

bool take(std::string_view s, std::size_t& i, char c) noexcept {
  if (i < s.size() && s[i] == c) {
    ++i;
    return true;
  }
  return false;
}

// Consumes one well-formed UTF-8 sequence at s[i] if there is one.
bool take_utf8(std::string_view s, std::size_t& i) noexcept {
  if (i >= s.size() || byte_at(s, i) < 0x80) return false;
  const std::size_t length = utf8_sequence_length(s, i);
  if (length == 0) return false;
  i += length;
  return true;
}

// Dot-string = Atom *("." Atom), atext or UTF8-non-ascii.
bool parse_dot_string(std::string_view s, std::size_t& i) noexcept {
  for (;;) {
    const std::size_t atom_begin = i;
    while (i < s.size()) {
      if (is_atext(byte_at(s, i))) {
        ++i;
      } else if (!take_utf8(s, i)) {
        break;
      }
    }
    if (i == atom_begin) return false;
    if (!take(s, i, '.')) return true;
  }
}

// Quoted-string = DQUOTE *QcontentSMTP DQUOTE.
bool parse_quoted_string(std::string_view s, std::size_t& i) noexcept {
  if (!take(s, i, '"')) return false;
  while (i < s.size()) {
    const unsigned char c = byte_at(s, i);
    if (c == '"') {
      ++i;
      return true;
    }
    if (c == '\\') {  // quoted-pairSMTP = "\" %d32-126
      if (i + 1 >= s.size()) return false;
      const unsigned char next = byte_at(s, i + 1);
      if (next < 32 || next > 126) return false;
      i += 2;
    } else if (c >= 32 && c <= 126) {
      ++i;
    } else if (!take_utf8(s, i)) {
      return false;
    }
  }
  return false;
}

// Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str] (or a U-label).
bool parse_domain(std::string_view s, std::size_t& i) noexcept {
  for (;;) {
    const std::size_t label_begin = i;
    while (i < s.size()) {
      const unsigned char c = byte_at(s, i);
      if (is_alnum(c) || c == '-') {
        ++i;
      } else if (!take_utf8(s, i)) {
        break;
      }
    }
    const std::size_t length = i - label_begin;
    if (length == 0 || length > max_label) return false;
    if (s[label_begin] == '-' || s[i - 1] == '-') return false;
    if (!take(s, i, '.')) return true;
  }
}

bool is_ipv4_literal(std::string_view s) noexcept {
  int groups = 0;
  std::size_t i = 0;
  for (;;) {
    const std::size_t begin = i;
    unsigned value = 0;
    while (i < s.size() && is_digit(byte_at(s, i)) && i - begin < 3) {
      value = value * 10 + (byte_at(s, i) - '0');
      ++i;
    }
    if (i == begin || value > 255) return false;
    ++groups;
    if (groups == 4) return i == s.size();
    if (!take(s, i, '.')) return false;
  }
}

// Counts the 16-bit groups of one side of an IPv6 address ("1:2:3", possibly ending in an IPv4).
bool count_ipv6_groups(std::string_view part, bool allow_ipv4_tail, int& groups) noexcept {
  groups = 0;
  if (part.empty()) return true;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t colon = part.find(':', begin);
    const std::string_view piece = part.substr(begin, colon == std::string_view::npos ? part.npos : colon - begin);
    if (colon == std::string_view::npos && allow_ipv4_tail && piece.find('.') != std::string_view::npos) {
      if (!is_ipv4_literal(piece)) return false;
      groups += 2;
      return true;
    }
    if (piece.empty() || piece.size() > 4) return false;
    for (const char c : piece)
      if (!is_hex(static_cast<unsigned char>(c))) return false;
    ++groups;
    if (colon == std::string_view::npos) return true;
    begin = colon + 1;
  }
}

// RFC 5321 IPv6-addr (full, compressed, with an IPv4 tail). "::" may stand for one or more groups
// (RFC 4291), which is slightly more tolerant than 5321's own ABNF.
bool is_ipv6_literal(std::string_view s) noexcept {
  const std::size_t gap = s.find("::");
  if (gap == std::string_view::npos) {
    int groups = 0;
    return count_ipv6_groups(s, true, groups) && groups == 8;
  }
  if (s.find("::", gap + 1) != std::string_view::npos) return false;
  int left = 0;
  int right = 0;
  return count_ipv6_groups(s.substr(0, gap), false, left) && count_ipv6_groups(s.substr(gap + 2), true, right) &&
         left + right <= 7;
}

// dcontent = %d33-90 / %d94-126
constexpr bool is_dcontent(unsigned char c) noexcept { return (c >= 33 && c <= 90) || (c >= 94 && c <= 126); }

// address-literal = "[" ( IPv4 / "IPv6:" IPv6 / General-address-literal ) "]"
bool parse_address_literal(std::string_view s, std::size_t& i) noexcept {
  if (!take(s, i, '[')) return false;
  const std::size_t begin = i;
  while (i < s.size() && is_dcontent(byte_at(s, i))) ++i;
  const std::string_view content = s.substr(begin, i - begin);
  if (!take(s, i, ']')) return false;
  if (content.empty()) return false;
  if (is_digit(byte_at(content, 0))) return is_ipv4_literal(content);
  if (istarts_with(content, "IPv6:")) return is_ipv6_literal(content.substr(5));
  // General-address-literal = Standardized-tag ":" 1*dcontent; Standardized-tag = Ldh-str.
  const std::size_t colon = content.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == content.size()) return false;
  const std::string_view tag = content.substr(0, colon);
  if (tag.back() == '-') return false;
  return std::all_of(tag.begin(), tag.end(), [](char c) {
    return is_alnum(static_cast<unsigned char>(c)) || c == '-';
  });
}

struct parsed_path {
  enum class status : std::uint8_t { ok, syntax, too_long } result = status::syntax;
  std::size_t end = 0;     // index just past '>'
  bool null_path = false;  // "<>"
  bool postmaster = false; // "<postmaster>" without a domain
  std::string_view local;
  std::string_view domain;
  std::string_view mailbox;  // local "@" domain, a view into the input
};

// Path = "<" [ A-d-l ":" ] Mailbox ">"; Reverse-path also "<>". s starts at '<'.
parsed_path parse_path(std::string_view s) {
  parsed_path out;
  std::size_t i = 0;
  if (!take(s, i, '<')) return out;
  if (take(s, i, '>')) {
    out.null_path = true;
    out.end = i;
    out.result = parsed_path::status::ok;
    return out;
  }
  // Source route (A-d-l): obsolete; RFC 5321 4.1.1.3 says to accept and ignore it.
  if (i < s.size() && s[i] == '@') {
    for (;;) {
      if (!take(s, i, '@') || !parse_domain(s, i)) return out;
      if (take(s, i, ',')) continue;
      if (take(s, i, ':')) break;
      return out;
    }
  }
  const std::size_t local_begin = i;
  const bool local_ok = (i < s.size() && s[i] == '"') ? parse_quoted_string(s, i) : parse_dot_string(s, i);
  if (!local_ok) return out;
  out.local = s.substr(local_begin, i - local_begin);
  if (i < s.size() && s[i] == '>' && iequals(out.local, "postmaster")) {
    out.postmaster = true;
    out.end = i + 1;
    out.result = parsed_path::status::ok;
    return out;
  }
  if (!take(s, i, '@')) return out;
  const std::size_t domain_begin = i;
  const bool domain_ok = (i < s.size() && s[i] == '[') ? parse_address_literal(s, i) : parse_domain(s, i);
  if (!domain_ok) return out;
  out.domain = s.substr(domain_begin, i - domain_begin);
  if (!take(s, i, '>')) return out;
  out.end = i;
  out.mailbox = s.substr(local_begin, i - 1 - local_begin);
  out.result = (out.local.size() > max_local_part || out.domain.size() > max_domain || out.end > max_path)
                   ? parsed_path::status::too_long
                   : parsed_path::status::ok;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// ESMTP parameters: esmtp-param = esmtp-keyword ["=" esmtp-value] (RFC 5321 4.1.2, RFC 6531 3.3).
// ---------------------------------------------------------------------------------------------------
struct esmtp_param {
  std::string_view keyword;
  std::string_view value;
  bool has_value = false;
};

enum class param_error : std::uint8_t { none, syntax, duplicate, unsupported };

bool is_esmtp_keyword(std::string_view s) noexcept {
  if (s.empty() || !is_alnum(byte_at(s, 0))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(static_cast<unsigned char>(c)) || c == '-'; });
}

bool is_esmtp_value(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = byte_at(s, i);
    if ((c >= 33 && c <= 60) || (c >= 62 && c <= 126)) {
      ++i;
    } else if (!take_utf8(s, i)) {
      return false;
    }
  }
  return true;
}

// Splits " KEY=VALUE KEY2" (leading SP required by the caller's grammar) into parameters.
bool split_params(std::string_view s, std::vector<esmtp_param>& out) {
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ' ') {
      ++i;
      continue;
    }
    const std::size_t space = s.find(' ', i);
    const std::string_view token = s.substr(i, space == std::string_view::npos ? s.npos : space - i);
    i = space == std::string_view::npos ? s.size() : space;
    esmtp_param param;
    const std::size_t eq = token.find('=');
    param.keyword = token.substr(0, eq);
    if (eq != std::string_view::npos) {
      param.has_value = true;
      param.value = token.substr(eq + 1);
      if (!is_esmtp_value(param.value)) return false;
    }
    if (!is_esmtp_keyword(param.keyword)) return false;
    out.push_back(param);
  }
  return true;
}

bool parse_notify(std::string_view value, smtp_dsn_notify& notify) noexcept {
  notify = smtp_dsn_notify{};
  notify.given = true;
  std::size_t begin = 0;
  int items = 0;
  for (;;) {
    const std::size_t comma = value.find(',', begin);
    const std::string_view item = value.substr(begin, comma == std::string_view::npos ? value.npos : comma - begin);
    bool* flag = nullptr;
    if (iequals(item, "NEVER")) flag = &notify.never;
    else if (iequals(item, "SUCCESS")) flag = &notify.success;
    else if (iequals(item, "FAILURE")) flag = &notify.failure;
    else if (iequals(item, "DELAY")) flag = &notify.delay;
    if (flag == nullptr || *flag) return false;  // unknown or repeated
    *flag = true;
    ++items;
    if (comma == std::string_view::npos) break;
    begin = comma + 1;
  }
  return !(notify.never && items > 1);  // NEVER stands alone (RFC 3461 4.1)
}

// ORCPT = addr-type ";" xtext (RFC 3461 4.2); utf-8 addr-type values per RFC 6533.
bool is_orcpt(std::string_view value, bool smtputf8) noexcept {
  if (value.size() > max_orcpt) return false;
  const std::size_t semi = value.find(';');
  if (semi == std::string_view::npos || semi == 0 || semi + 1 == value.size()) return false;
  const std::string_view type = value.substr(0, semi);
  if (!std::all_of(type.begin(), type.end(), [](char c) { return is_atext(static_cast<unsigned char>(c)); }))
    return false;
  const std::string_view address = value.substr(semi + 1);
  if (iequals(type, "rfc822")) return xtext_decoded_length(address).has_value();
  for (std::size_t i = 0; i < address.size();) {
    const unsigned char c = byte_at(address, i);
    if (c >= 33 && c <= 126 && c != '+' && c != '=') {
      ++i;
    } else if (!smtputf8 || !take_utf8(address, i)) {
      return false;
    }
  }
  return true;
}

std::string_view trim_spaces(std::string_view s) noexcept {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

bool is_printable_token(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 33 && c <= 126;
  });
}

bool relay_allowed(const std::vector<std::string>& relay_domains, std::string_view domain) noexcept {
  for (const std::string& entry : relay_domains) {
    if (entry == "*") return true;
    if (!entry.empty() && entry.front() == '.') {
      if (domain.size() > entry.size() && iends_with(domain, entry)) return true;
    } else if (iequals(entry, domain)) {
      return true;
    }
  }
  return false;
}

// Commands of HTTP and friends: a browser or proxy tricked into talking to port 25 (cross-protocol
// attacks). Postfix drops these at once too; there is nothing useful to say to them.
bool is_foreign_protocol_verb(std::string_view verb) noexcept {
  for (std::string_view v : {"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "DELETE"})
    if (iequals(verb, v)) return true;
  return false;
}

bool is_unimplemented_verb(std::string_view verb) noexcept {
  for (std::string_view v : {"EXPN", "TURN", "ETRN", "ATRN", "AUTH", "SEND", "SOML", "SAML"})
    if (iequals(verb, v)) return true;
  return false;
}

// A reentrant call from the sink would run the state machine on a half-updated state; that is a bug in
// the I/O layer, so stop (house rule: an impossible state aborts).
class call_guard {
 public:
  explicit call_guard(bool& flag) noexcept : flag_(flag) {
    if (flag_) std::abort();
    flag_ = true;
  }
  ~call_guard() { flag_ = false; }
  call_guard(const call_guard&) = delete;
  call_guard& operator=(const call_guard&) = delete;

 private:
  bool& flag_;
};

void check_config(const smtp_server_config& config) noexcept {
  const smtp_limits& l = config.limits;
  const bool ok = !config.hostname.empty() && config.hostname.size() <= 255 && is_printable_token(config.hostname) &&
                  l.max_command_line >= 64 && l.max_text_line >= 3 && l.max_message_size > 0 &&
                  l.max_header_size > 0 && l.max_recipients > 0 && l.max_errors > 0 && l.max_commands > 0 &&
                  l.max_messages > 0 && l.max_commands_per_receive > 0;
  if (!ok) std::abort();
}

}  // namespace

std::string_view received_with_protocol(const smtp_envelope& envelope) noexcept {
  if (envelope.smtputf8) return envelope.tls ? "UTF8SMTPS" : "UTF8SMTP";
  if (!envelope.esmtp) return "SMTP";
  return envelope.tls ? "ESMTPS" : "ESMTP";
}

// ---------------------------------------------------------------------------------------------------
// header_meter
// ---------------------------------------------------------------------------------------------------
std::size_t smtp_protocol::header_meter::feed(std::string_view bytes, std::size_t limit) noexcept {
  std::size_t i = 0;  // bytes[0, i) belong to the header block
  while (!done_ && i < bytes.size()) {
    const std::size_t lf = bytes.find('\n', i);
    const std::size_t stop = lf == std::string_view::npos ? bytes.size() : lf;
    if (stop > i) {
      line_octets_ += stop - i;
      last_cr_ = bytes[stop - 1] == '\r';
    }
    if (lf == std::string_view::npos) {
      i = bytes.size();
      break;
    }
    done_ = line_octets_ == 0 || (line_octets_ == 1 && last_cr_);  // the blank line ends the block
    line_octets_ = 0;
    last_cr_ = false;
    i = lf + 1;
  }
  if (i > limit - size_) return limit - size_;  // size_ <= limit holds: a crossing dooms the message
  size_ += i;
  return std::string_view::npos;
}

// ---------------------------------------------------------------------------------------------------
// smtp_protocol
// ---------------------------------------------------------------------------------------------------
smtp_protocol::smtp_protocol(std::shared_ptr<const smtp_server_config> config, smtp_session_options options,
                             smtp_event_sink& sink)
    : config_(std::move(config)),
      sink_(sink),
      client_allowed_(options.client_allowed),
      tls_active_(options.tls_active) {
  if (!config_) std::abort();
  check_config(*config_);
}

void smtp_protocol::start() {
  const call_guard guard(in_call_);
  if (phase_ != smtp_phase::not_started) std::abort();
  phase_ = smtp_phase::command;
  if (shutting_down_) {
    close_with_host("421 4.3.2", closing::shutdown);
    return;
  }
  std::string greeting;
  if (client_allowed_) {
    greeting.append("220 ").append(config_->hostname).append(" ESMTP mukai\r\n");
  } else {
    // RFC 5321 3.1: a server that will not serve this client may greet with 554 and then wait for QUIT.
    greeting.append("554 5.7.1 ").append(config_->hostname).append(" Error: client not allowed\r\n");
  }
  send(greeting);
}

bool smtp_protocol::wants_input() const noexcept {
  return phase_ == smtp_phase::command || phase_ == smtp_phase::data || phase_ == smtp_phase::bdat;
}

std::size_t smtp_protocol::receive(std::string_view input) {
  const call_guard guard(in_call_);
  if (phase_ == smtp_phase::not_started) std::abort();
  lines_this_call_ = 0;
  std::size_t consumed = 0;
  while (consumed < input.size() && wants_input()) {
    const std::string_view rest = input.substr(consumed);
    if (phase_ == smtp_phase::command) {
      if (lines_this_call_ >= limits().max_commands_per_receive) break;
      consumed += consume_command_input(rest);
    } else if (phase_ == smtp_phase::data) {
      consumed += consume_data(rest);
    } else {
      consumed += consume_bdat(rest);
    }
  }
  return consumed;
}

// ---------------------------------------------------------------------------------------------------
// Command lines
// ---------------------------------------------------------------------------------------------------
std::size_t smtp_protocol::consume_command_input(std::string_view input) {
  const std::size_t lf = input.find('\n');
  if (discarding_line_) {
    // The rest of an over-long line is dropped as it arrives, never buffered.
    if (lf == std::string_view::npos) return input.size();
    discarding_line_ = false;
    process_line_too_long();
    return lf + 1;
  }
  const std::size_t max = limits().max_command_line;
  if (lf == std::string_view::npos) {
    if (line_buf_.size() + input.size() >= max) {
      // Even the shortest ending (a lone LF) would make the line longer than allowed.
      discarding_line_ = true;
      line_buf_.clear();
      line_buf_.shrink_to_fit();
    } else {
      line_buf_.append(input);
    }
    return input.size();
  }
  if (line_buf_.size() + lf + 1 > max) {
    line_buf_.clear();
    line_buf_.shrink_to_fit();
    process_line_too_long();
    return lf + 1;
  }
  if (line_buf_.empty()) {
    process_line(input.substr(0, lf + 1));
  } else {
    line_buf_.append(input.substr(0, lf + 1));
    process_line(line_buf_);
    line_buf_.clear();
  }
  return lf + 1;
}

void smtp_protocol::process_line_too_long() {
  ++lines_this_call_;
  ++commands_;
  if (commands_ > limits().max_commands) {
    close_with_host("421 4.7.0", closing::too_many_commands);
    return;
  }
  if (shutting_down_) {
    close_with_host("421 4.3.2", closing::shutdown);
    return;
  }
  send_error(reply::line_too_long);
  enforce_error_limit();
}

void smtp_protocol::process_line(std::string_view raw) {
  ++lines_this_call_;
  ++commands_;
  if (commands_ > limits().max_commands) {
    close_with_host("421 4.7.0", closing::too_many_commands);
    return;
  }
  std::string_view line = raw.substr(0, raw.size() - 1);  // drop the LF
  const bool bare_lf = line.empty() || line.back() != '\r';
  if (!bare_lf) line.remove_suffix(1);
  while (!line.empty() && line.back() == ' ') line.remove_suffix(1);

  const std::size_t space = line.find(' ');
  const std::string_view verb = line.substr(0, space);
  const std::string_view args = space == std::string_view::npos ? std::string_view{} : trim_spaces(line.substr(space));

  if (shutting_down_ && !iequals(verb, "QUIT")) {
    close_with_host("421 4.3.2", closing::shutdown);
    return;
  }
  // CRLF only: a server that accepts other line endings in commands disagrees with some other hop
  // about where a line ends, the root of pipelining and smuggling confusions.
  if (bare_lf && !limits().normalise_bare_lf) {
    send_error(reply::bare_lf_command);
  } else if (std::any_of(line.begin(), line.end(), [](char ch) {
               const auto c = static_cast<unsigned char>(ch);
               return c < 0x20 || c == 0x7F;  // includes a stray CR inside the line and NUL
             })) {
    send_error(reply::bad_characters);
  } else if (line.empty()) {
    send_error(reply::empty_line);
  } else if (!client_allowed_) {
    if (iequals(verb, "QUIT")) {
      close_with(reply::bye);
      return;
    }
    send_error(reply::refused);
  } else {
    dispatch(verb, args);
  }
  enforce_error_limit();
}

void smtp_protocol::dispatch(std::string_view verb, std::string_view args) {
  if (iequals(verb, "EHLO")) {
    handle_hello(args, true);
  } else if (iequals(verb, "HELO")) {
    handle_hello(args, false);
  } else if (iequals(verb, "MAIL")) {
    handle_mail(args);
  } else if (iequals(verb, "RCPT")) {
    handle_rcpt(args);
  } else if (iequals(verb, "DATA")) {
    handle_data(args);
  } else if (iequals(verb, "BDAT")) {
    handle_bdat(args);
  } else if (iequals(verb, "RSET")) {
    if (!args.empty()) {
      send_error(reply::no_arguments);
      return;
    }
    reset_transaction();
    send(reply::ok);
  } else if (iequals(verb, "NOOP")) {
    send(reply::ok);  // NOOP [SP String]: the argument is ignored (RFC 5321 4.1.1.9)
  } else if (iequals(verb, "QUIT")) {
    if (!args.empty()) {
      send_error(reply::no_arguments);
      return;
    }
    close_with(reply::bye);
  } else if (iequals(verb, "VRFY")) {
    if (config_->tls_required && !tls_active_) {
      send_error(reply::must_starttls);
    } else if (args.empty()) {
      send_error(reply::syntax_vrfy);
    } else {
      // 252, never 250/550: confirming mailboxes would let anyone harvest the LGWAN side's addresses.
      send(reply::vrfy);
    }
  } else if (iequals(verb, "HELP")) {
    send(reply::help);
  } else if (iequals(verb, "STARTTLS")) {
    handle_starttls(args);
  } else if (is_foreign_protocol_verb(verb)) {
    close_with_host("421 4.7.0", closing::foreign_protocol);
  } else if (is_unimplemented_verb(verb)) {
    send_error(reply::not_implemented);
  } else {
    send_error(reply::unknown_command);
  }
}

void smtp_protocol::handle_hello(std::string_view args, bool extended) {
  // The name ends up in a Received header: printable ASCII only, one token, a DNS name's length.
  if (args.empty() || args.size() > max_domain || !is_printable_token(args)) {
    send_error(extended ? reply::syntax_ehlo : reply::syntax_helo);
    return;
  }
  reset_transaction();  // RFC 5321 4.1.4: EHLO/HELO in a session implies RSET
  bdat_failed_ = false;
  greeted_ = true;
  envelope_.helo_name.assign(args);
  envelope_.esmtp = extended;
  if (extended) {
    send(ehlo_reply());
  } else {
    std::string r;
    r.append("250 ").append(config_->hostname).append("\r\n");
    send(r);
  }
}

std::string smtp_protocol::ehlo_reply() const {
  std::string r;
  r.append("250-").append(config_->hostname).append("\r\n");
  r.append("250-PIPELINING\r\n");
  r.append("250-SIZE ").append(std::to_string(limits().max_message_size)).append("\r\n");
  if (config_->tls_available && !tls_active_) r.append("250-STARTTLS\r\n");
  r.append("250-ENHANCEDSTATUSCODES\r\n");
  r.append("250-8BITMIME\r\n");
  r.append("250-DSN\r\n");
  r.append("250-SMTPUTF8\r\n");
  r.append("250 CHUNKING\r\n");
  return r;
}

void smtp_protocol::handle_starttls(std::string_view args) {
  if (!args.empty()) {
    send_error(reply::no_arguments);
  } else if (!config_->tls_available) {
    send_error(reply::not_implemented);
  } else if (tls_active_) {
    send_error(reply::tls_already_active);
  } else if (mail_given_) {
    send_error(reply::tls_in_transaction);
  } else {
    send(reply::ready_tls);
    // Stop consuming here: receive() returns right after this line, and the I/O layer discards what
    // it already holds. Anything the client pipelined after STARTTLS was sent in plaintext and must
    // not run with the authority of the TLS session (CVE-2011-0411).
    phase_ = smtp_phase::awaiting_tls;
    sink_.start_tls();
  }
}

void smtp_protocol::tls_established() {
  const call_guard guard(in_call_);
  if (phase_ == smtp_phase::closed) return;
  if (phase_ != smtp_phase::awaiting_tls) std::abort();
  // RFC 3207 4.2: discard all knowledge obtained from the client before TLS (EHLO argument, any
  // transaction); the client must send EHLO again.
  reset_transaction();
  bdat_failed_ = false;
  greeted_ = false;
  envelope_ = smtp_envelope{};
  tls_active_ = true;
  line_buf_.clear();
  discarding_line_ = false;
  phase_ = smtp_phase::command;
}

void smtp_protocol::handle_mail(std::string_view args) {
  if (!greeted_) return send_error(reply::need_hello);
  // A relay that requires TLS must not learn even the envelope in plaintext.
  if (config_->tls_required && !tls_active_) return send_error(reply::must_starttls);
  if (mail_given_) return send_error(reply::nested_mail);
  if (storage_low_) return send(reply::low_storage);
  if (transactions_ >= limits().max_messages) return close_with_host("421 4.7.0", closing::too_many_messages);
  if (!istarts_with(args, "FROM:")) return send_error(reply::syntax_mail);
  const std::string_view rest = trim_spaces(args.substr(5));  // tolerate "MAIL FROM: <a@b>"
  const parsed_path path = parse_path(rest);
  if (path.result == parsed_path::status::syntax || path.postmaster) return send_error(reply::bad_sender);
  const std::string_view param_text = rest.substr(path.end);
  if (!param_text.empty() && param_text.front() != ' ') return send_error(reply::bad_sender);
  if (path.result == parsed_path::status::too_long) return send_error(reply::sender_too_long);

  std::vector<esmtp_param> params;
  if (!split_params(param_text, params)) return send_error(reply::bad_parameter);
  if (!params.empty() && !envelope_.esmtp) return send_error(reply::parameters_need_ehlo);

  bool seen_size = false, seen_body = false, seen_utf8 = false, seen_ret = false, seen_envid = false;
  std::optional<std::uint64_t> declared_size;
  smtp_body_type body = smtp_body_type::unspecified;
  smtp_dsn_ret ret = smtp_dsn_ret::unspecified;
  std::string_view envid;
  param_error error = param_error::none;
  auto once = [&error](bool& seen) {
    if (seen && error == param_error::none) error = param_error::duplicate;
    seen = true;
  };
  for (const esmtp_param& p : params) {
    if (error != param_error::none) break;
    if (iequals(p.keyword, "SIZE")) {
      once(seen_size);
      declared_size = p.has_value ? parse_decimal(p.value) : std::nullopt;
      if (!declared_size) error = param_error::syntax;
    } else if (iequals(p.keyword, "BODY")) {
      once(seen_body);
      if (iequals(p.value, "7BIT")) body = smtp_body_type::seven_bit;
      else if (iequals(p.value, "8BITMIME")) body = smtp_body_type::eight_bit_mime;
      else if (iequals(p.value, "BINARYMIME")) error = param_error::unsupported;  // not advertised
      else error = param_error::syntax;
    } else if (iequals(p.keyword, "SMTPUTF8")) {
      once(seen_utf8);
      if (p.has_value) error = param_error::syntax;
    } else if (iequals(p.keyword, "RET")) {
      once(seen_ret);
      if (iequals(p.value, "FULL")) ret = smtp_dsn_ret::full;
      else if (iequals(p.value, "HDRS")) ret = smtp_dsn_ret::headers;
      else error = param_error::syntax;
    } else if (iequals(p.keyword, "ENVID")) {
      once(seen_envid);
      const auto length = xtext_decoded_length(p.value);
      if (!p.has_value || !length || *length > max_envid) error = param_error::syntax;
      envid = p.value;
    } else {
      error = param_error::unsupported;
    }
  }
  switch (error) {
    case param_error::none:
      break;
    case param_error::syntax:
      return send_error(reply::bad_parameter);
    case param_error::duplicate:
      return send_error(reply::duplicate_parameter);
    case param_error::unsupported:
      return send_error(reply::unsupported_parameter);
  }
  // RFC 6531 3.4: without SMTPUTF8 the envelope must be ASCII; the next hop may not be UTF-8 capable.
  if (!seen_utf8 && has_non_ascii(path.mailbox)) return send_error(reply::utf8_sender);
  // RFC 1870: refuse early rather than drain a message we know we will refuse.
  if (declared_size && *declared_size > limits().max_message_size) return send(reply::declared_too_big);

  mail_given_ = true;
  bdat_failed_ = false;
  ++transactions_;
  envelope_.tls = tls_active_;
  envelope_.sender.assign(path.mailbox);
  envelope_.smtputf8 = seen_utf8;
  envelope_.body = body;
  envelope_.declared_size = declared_size;
  envelope_.ret = ret;
  envelope_.envid.assign(envid);
  envelope_.recipients.clear();
  envelope_.chunking = false;
  send(reply::mail_ok);
}

void smtp_protocol::handle_rcpt(std::string_view args) {
  if (config_->tls_required && !tls_active_) return send_error(reply::must_starttls);
  if (!mail_given_) return send_error(reply::need_mail);
  // begin_message() already handed the envelope over with the first chunk; it must not change now.
  if (bdat_started_) return send_error(reply::rcpt_after_bdat);
  if (!istarts_with(args, "TO:")) return send_error(reply::syntax_rcpt);
  const std::string_view rest = trim_spaces(args.substr(3));
  const parsed_path path = parse_path(rest);
  if (path.result == parsed_path::status::syntax || path.null_path) return send_error(reply::bad_recipient);
  const std::string_view param_text = rest.substr(path.end);
  if (!param_text.empty() && param_text.front() != ' ') return send_error(reply::bad_recipient);
  if (path.result == parsed_path::status::too_long) return send_error(reply::recipient_too_long);

  std::vector<esmtp_param> params;
  if (!split_params(param_text, params)) return send_error(reply::bad_parameter);
  if (!params.empty() && !envelope_.esmtp) return send_error(reply::parameters_need_ehlo);
  smtp_recipient recipient;
  bool seen_orcpt = false;
  for (const esmtp_param& p : params) {
    if (iequals(p.keyword, "NOTIFY")) {
      if (recipient.notify.given) return send_error(reply::duplicate_parameter);
      if (!parse_notify(p.value, recipient.notify)) return send_error(reply::bad_parameter);
    } else if (iequals(p.keyword, "ORCPT")) {
      if (seen_orcpt) return send_error(reply::duplicate_parameter);
      seen_orcpt = true;
      if (!is_orcpt(p.value, envelope_.smtputf8)) return send_error(reply::bad_parameter);
      recipient.orcpt.assign(p.value);
    } else {
      return send_error(reply::unsupported_parameter);
    }
  }

  if (path.postmaster) {
    if (config_->postmaster_address.empty()) return send_error(reply::no_postmaster);
    recipient.mailbox = config_->postmaster_address;
  } else {
    if (!envelope_.smtputf8 && has_non_ascii(path.mailbox)) return send_error(reply::utf8_recipient);
    // Never an open relay: only configured domains are accepted, and an empty list accepts none.
    if (!relay_allowed(config_->relay_domains, path.domain)) {
      std::string r;
      r.append("550 5.7.1 <").append(path.mailbox).append(">: Relay access denied\r\n");
      return send_error(r);
    }
    recipient.mailbox.assign(path.mailbox);
  }
  // RFC 5321 4.5.3.1.10: 452 (not 552) so the client sends the rest in another transaction.
  if (envelope_.recipients.size() >= limits().max_recipients) return send(reply::too_many_recipients);
  envelope_.recipients.push_back(std::move(recipient));
  send(reply::rcpt_ok);
}

void smtp_protocol::handle_data(std::string_view args) {
  if (!args.empty()) return send_error(reply::no_arguments);
  if (config_->tls_required && !tls_active_) return send_error(reply::must_starttls);
  if (!mail_given_) return send_error(reply::need_mail);
  if (bdat_started_) return send_error(reply::data_after_bdat);
  if (envelope_.recipients.empty()) return send_error(reply::need_rcpt);
  envelope_.chunking = false;
  send(reply::start_data);
  start_message();
  phase_ = smtp_phase::data;
}

void smtp_protocol::handle_bdat(std::string_view args) {
  const std::size_t space = args.find(' ');
  const auto size = parse_decimal(args.substr(0, space));
  if (!size) {
    // Without the size the chunk's end is unknown: the octets that follow would be read as commands.
    // A client this confused gets disconnected rather than having its data interpreted.
    if (bdat_started_) reset_transaction();
    return close_with_host("421 4.5.4", closing::bdat_unsynced);
  }
  const std::string_view option = space == std::string_view::npos ? std::string_view{} : trim_spaces(args.substr(space));
  const bool last = iequals(option, "LAST");
  const bool syntax_ok = option.empty() || last;

  // RFC 3030 2: whatever the answer, the chunk's octets are read and, if refused, discarded, so they
  // are never taken for commands. Decide now; reply once the chunk has been read.
  std::string_view refusal;
  bool refusal_is_error = true;
  bool fail_transaction = false;
  if (!syntax_ok) {
    refusal = reply::syntax_bdat;
    fail_transaction = bdat_started_;  // a lost chunk would leave a hole in the message
  } else if (config_->tls_required && !tls_active_) {
    refusal = reply::must_starttls;
  } else if (!greeted_) {
    refusal = reply::need_hello;
  } else if (!envelope_.esmtp) {
    refusal = reply::bdat_needs_ehlo;
  } else if (bdat_failed_) {
    // Chunks the client pipelined before it saw the failure (RFC 3030 2): not its fault, no error.
    refusal = reply::bdat_discarded;
    refusal_is_error = false;
    if (last) bdat_failed_ = false;
  } else if (!mail_given_) {
    refusal = reply::need_mail;
  } else if (envelope_.recipients.empty()) {
    refusal = reply::need_rcpt;
  } else if (*size > limits().max_message_size - message_size_) {
    // Known too big before reading it: drain, reply 552, and fail the whole transaction.
    refusal = reply::too_big;
    refusal_is_error = false;
    fail_transaction = true;
  }
  if (fail_transaction) {
    reset_transaction();
    bdat_failed_ = !last;
  }
  if (refusal.empty() && !bdat_started_) {
    bdat_started_ = true;
    envelope_.chunking = true;
    start_message();
  }
  bdat_accepting_ = refusal.empty();
  bdat_reply_ = refusal;
  bdat_reply_is_error_ = refusal_is_error;
  bdat_last_ = last;
  bdat_chunk_size_ = *size;
  bdat_remaining_ = *size;
  phase_ = smtp_phase::bdat;
  if (bdat_remaining_ == 0) finish_bdat_chunk();
}

// ---------------------------------------------------------------------------------------------------
// Message data
// ---------------------------------------------------------------------------------------------------
void smtp_protocol::reset_message_state() noexcept {
  data_state_ = data_state::line_start;
  weak_line_start_ = false;
  doom_ = doom_reason::none;
  line_octets_ = 0;
  message_size_ = 0;
  header_.reset();
}

void smtp_protocol::start_message() {
  reset_message_state();
  message_open_ = true;
  sink_.begin_message(envelope_);
}

void smtp_protocol::doom(doom_reason reason) {
  if (doom_ != doom_reason::none) return;
  doom_ = reason;
  // Tell the spool at once, so it stops writing bytes we will refuse; the reply waits for the end.
  if (message_open_) {
    message_open_ = false;
    sink_.abort_message();
  }
}

void smtp_protocol::emit(std::string_view bytes) {
  if (doom_ == doom_reason::none && !bytes.empty()) sink_.append_message_data(bytes);
}

// Every content octet is accounted here, in stream order, when it is scanned (not when its run is
// flushed), and each limit reports the exact octet that crosses it. So the reason a message is refused
// depends only on the byte stream, never on how the network happened to split it; and no octet past a
// limit ever reaches the spool.
void smtp_protocol::account(std::string_view piece, bool line_content) {
  if (doom_ != doom_reason::none || piece.empty()) return;
  constexpr std::size_t none = std::string_view::npos;
  const std::uint64_t room = limits().max_message_size - message_size_;
  const std::size_t at_size = piece.size() > room ? static_cast<std::size_t>(room) : none;
  const std::size_t at_header = header_.feed(piece, limits().max_header_size);
  std::size_t at_line = none;
  const std::size_t line_cap = limits().max_text_line - 2;  // max_text_line counts the CRLF (4.5.3.1.6)
  if (line_content && piece.size() > line_cap - line_octets_) at_line = line_cap - line_octets_;
  doom_reason reason = doom_reason::none;
  std::size_t first = none;
  // Earliest octet wins; on the same octet the order below decides.
  for (const auto& [at, why] : {std::pair{at_size, doom_reason::too_big}, std::pair{at_header, doom_reason::header_too_big},
                                std::pair{at_line, doom_reason::line_too_long}}) {
    if (at < first) {
      first = at;
      reason = why;
    }
  }
  if (reason != doom_reason::none) return doom(reason);
  message_size_ += piece.size();
  if (line_content) line_octets_ += piece.size();
}

// RFC 5321 4.5.2 / 3.3, with the SMTP smuggling rules: the only end of data is CR LF "." CR LF where
// both line breaks are real CRLFs. A bare LF or bare CR is an error (the message is drained and refused)
// because other hops may treat it as a line break: if we ended data on "\n.\n" or "\r.\r", or they did
// and we did not, one hop's message text would be another hop's next SMTP command. With
// normalise_bare_lf a bare LF becomes CRLF in the stored text but still never helps end the data.
// Content bytes are passed on as runs of the input; only the removed leading dot and normalised line
// ends break a run. Consumes up to and including the final LF, or all of the input.
std::size_t smtp_protocol::consume_data(std::string_view input) {
  static constexpr std::string_view cr = "\r";
  static constexpr std::string_view crlf = "\r\n";
  static constexpr std::string_view dot_crlf = ".\r\n";
  const std::size_t n = input.size();
  const bool normalise = limits().normalise_bare_lf;
  std::size_t i = 0;
  std::size_t run_begin = 0;
  bool in_run = false;
  line_break_scanner breaks(input);
  auto begin_run = [&](std::size_t at) {
    if (!in_run) {
      run_begin = at;
      in_run = true;
    }
  };
  auto flush_run = [&](std::size_t end) {
    if (in_run && end > run_begin) emit(input.substr(run_begin, end - run_begin));
    in_run = false;
  };

  while (i < n) {
    switch (data_state_) {
      case data_state::line_start:
        if (input[i] == '.') {
          flush_run(i);  // the dot is held back: terminator, stuffing, or (weak line) content
          ++i;
          data_state_ = data_state::dot;
        } else {
          data_state_ = data_state::mid_line;
        }
        break;
      case data_state::mid_line: {
        const std::size_t stop = breaks.next(i);  // n if there is no CR or LF
        if (stop > i) {
          begin_run(i);
          account(input.substr(i, stop - i), true);
          i = stop;
        }
        if (i == n) break;
        if (input[i] == '\r') {
          begin_run(i);  // kept in the run; if it proves bare the message is refused anyway
          account(input.substr(i, 1), false);
          ++i;
          data_state_ = data_state::cr;
        } else if (normalise) {
          flush_run(i);
          account(crlf, false);
          emit(cr);
          begin_run(i);
          ++i;
          line_octets_ = 0;
          weak_line_start_ = true;
          data_state_ = data_state::line_start;
        } else {
          // Bare LF: stays mid-line so that "\n.\n" or "\n.\r\n" can never look like the end.
          doom(doom_reason::bare_lf);
          ++i;
        }
        break;
      }
      case data_state::cr:
        if (input[i] == '\n') {
          begin_run(i);
          account(input.substr(i, 1), false);
          ++i;
          line_octets_ = 0;
          weak_line_start_ = false;
          data_state_ = data_state::line_start;
        } else {
          doom(doom_reason::bare_cr);  // reprocess this byte as ordinary line content
          data_state_ = data_state::mid_line;
        }
        break;
      case data_state::dot:
        if (input[i] == '\r') {
          ++i;
          data_state_ = data_state::dot_cr;
        } else if (input[i] == '\n') {
          ++i;
          if (normalise) {  // ".\n": a content line ".", never the end
            account(dot_crlf, false);
            emit(dot_crlf);
            line_octets_ = 0;
            weak_line_start_ = true;
            data_state_ = data_state::line_start;
          } else {
            doom(doom_reason::bare_lf);
            data_state_ = data_state::mid_line;
          }
        } else {
          // RFC 5321 4.5.2: a leading dot on a line with more characters is removed ("dot-unstuffing").
          data_state_ = data_state::mid_line;
        }
        break;
      case data_state::dot_cr:
        if (input[i] == '\n') {
          ++i;
          if (!weak_line_start_) {
            flush_run(i);  // nothing pending: the run was flushed at the dot
            finish_data();
            return i;
          }
          account(dot_crlf, false);  // after a normalised bare LF a "." line is text, not the end
          emit(dot_crlf);
          line_octets_ = 0;
          weak_line_start_ = false;
          data_state_ = data_state::line_start;
        } else {
          doom(doom_reason::bare_cr);
          data_state_ = data_state::mid_line;
        }
        break;
    }
  }
  flush_run(n);
  return n;
}

void smtp_protocol::finish_data() {
  phase_ = smtp_phase::command;
  std::string_view refusal;
  switch (doom_) {
    case doom_reason::none:
      break;
    case doom_reason::too_big:
      refusal = reply::too_big;
      break;
    case doom_reason::header_too_big:
      refusal = reply::header_too_big;
      break;
    case doom_reason::line_too_long:
      refusal = reply::text_line_too_long;
      break;
    case doom_reason::bare_lf:
      refusal = reply::bare_lf_data;
      break;
    case doom_reason::bare_cr:
      refusal = reply::bare_cr_data;
      break;
  }
  if (!refusal.empty()) {
    // RFC 5321 4.1.1.4: the end of data consumes the transaction whatever the outcome.
    reset_transaction();
    send(refusal);
    return;
  }
  message_open_ = false;
  phase_ = smtp_phase::awaiting_message_result;
  sink_.end_message();
}

std::size_t smtp_protocol::consume_bdat(std::string_view input) {
  const std::size_t take_now =
      static_cast<std::size_t>(std::min<std::uint64_t>(bdat_remaining_, static_cast<std::uint64_t>(input.size())));
  if (bdat_accepting_) {  // verbatim: CHUNKING is binary-safe
    account(input.substr(0, take_now), false);
    emit(input.substr(0, take_now));
  }
  bdat_remaining_ -= take_now;
  if (bdat_remaining_ == 0) finish_bdat_chunk();
  return take_now;
}

void smtp_protocol::finish_bdat_chunk() {
  phase_ = smtp_phase::command;
  if (!bdat_reply_.empty()) {
    if (bdat_reply_is_error_) {
      send_error(bdat_reply_);
    } else {
      send(bdat_reply_);
    }
    enforce_error_limit();
    return;
  }
  if (doom_ != doom_reason::none) {  // only the header meter can doom a chunk that was accepted
    reset_transaction();
    bdat_failed_ = !bdat_last_;
    send(doom_ == doom_reason::too_big ? reply::too_big : reply::header_too_big);
    return;
  }
  if (bdat_last_) {
    message_open_ = false;
    phase_ = smtp_phase::awaiting_message_result;
    sink_.end_message();
    return;
  }
  std::string r;
  r.append("250 2.0.0 Ok: ").append(std::to_string(bdat_chunk_size_)).append(" octets received\r\n");
  send(r);
}

// ---------------------------------------------------------------------------------------------------
// Results from the I/O layer
// ---------------------------------------------------------------------------------------------------
void smtp_protocol::message_committed(std::string_view queue_id) {
  const call_guard guard(in_call_);
  if (phase_ == smtp_phase::closed) return;
  if (phase_ != smtp_phase::awaiting_message_result) std::abort();
  // The ID goes into a reply line: it must not be able to end or split it.
  if (queue_id.empty() || queue_id.size() > 64 || !is_printable_token(queue_id)) std::abort();
  ++messages_accepted_;
  std::string r;
  r.append("250 2.0.0 Ok: queued as ").append(queue_id).append("\r\n");
  send(r);
  after_message_result();
}

void smtp_protocol::message_failed(smtp_spool_failure failure) {
  const call_guard guard(in_call_);
  if (phase_ == smtp_phase::closed) return;
  if (phase_ != smtp_phase::awaiting_message_result) std::abort();
  send(failure == smtp_spool_failure::temporary ? reply::spool_temporary : reply::spool_permanent);
  after_message_result();
}

void smtp_protocol::after_message_result() {
  phase_ = smtp_phase::command;
  reset_transaction();
  if (close_after_result_) close_with_host("421 4.3.2", closing::shutdown);
}

void smtp_protocol::on_timeout() {
  const call_guard guard(in_call_);
  if (phase_ == smtp_phase::not_started || phase_ == smtp_phase::closed ||
      phase_ == smtp_phase::awaiting_message_result)
    return;
  if (phase_ == smtp_phase::awaiting_tls) {
    phase_ = smtp_phase::closed;
    sink_.close_connection();
    return;
  }
  close_with_host("421 4.4.2", closing::timeout);
}

void smtp_protocol::begin_shutdown() {
  const call_guard guard(in_call_);
  shutting_down_ = true;
}

void smtp_protocol::shutdown_now() {
  const call_guard guard(in_call_);
  shutting_down_ = true;
  switch (phase_) {
    case smtp_phase::not_started:
    case smtp_phase::closed:
      return;
    case smtp_phase::awaiting_message_result:
      close_after_result_ = true;
      return;
    case smtp_phase::awaiting_tls:
      phase_ = smtp_phase::closed;
      sink_.close_connection();
      return;
    case smtp_phase::command:
    case smtp_phase::data:
    case smtp_phase::bdat:
      close_with_host("421 4.3.2", closing::shutdown);
      return;
  }
}

void smtp_protocol::connection_lost() {
  const call_guard guard(in_call_);
  if (message_open_) {
    message_open_ = false;
    sink_.abort_message();
  }
  phase_ = smtp_phase::closed;
}

void smtp_protocol::set_storage_low(bool low) noexcept { storage_low_ = low; }

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------
void smtp_protocol::reset_transaction() {
  if (message_open_) {
    message_open_ = false;
    sink_.abort_message();
  }
  mail_given_ = false;
  bdat_started_ = false;
  message_size_ = 0;
  envelope_.sender.clear();
  envelope_.recipients.clear();
  envelope_.smtputf8 = false;
  envelope_.body = smtp_body_type::unspecified;
  envelope_.declared_size.reset();
  envelope_.ret = smtp_dsn_ret::unspecified;
  envelope_.envid.clear();
  envelope_.chunking = false;
}

void smtp_protocol::send(std::string_view r) { sink_.send_reply(r); }

void smtp_protocol::send_error(std::string_view r) {
  ++errors_;
  sink_.send_reply(r);
}

void smtp_protocol::close_with(std::string_view r) {
  if (message_open_) {
    message_open_ = false;
    sink_.abort_message();
  }
  sink_.send_reply(r);
  phase_ = smtp_phase::closed;
  sink_.close_connection();
}

void smtp_protocol::close_with_host(std::string_view code_and_status, std::string_view text) {
  std::string r;
  r.append(code_and_status).append(" ").append(config_->hostname).append(" ").append(text).append("\r\n");
  close_with(r);
}

// Too many errors mean a confused or hostile client (address harvesting, a non-SMTP protocol, data
// sent as commands after a refused DATA): stop spending a session slot on it.
void smtp_protocol::enforce_error_limit() {
  if (phase_ == smtp_phase::command && errors_ >= limits().max_errors)
    close_with_host("421 4.7.0", closing::too_many_errors);
}

}  // namespace mukai::server
