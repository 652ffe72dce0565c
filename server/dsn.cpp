// DSN writer; see dsn.hpp for the shape and the invariants.
#include "server/dsn.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "server/line_scan.hpp"

namespace mukai::server {

namespace {

constexpr std::size_t max_line = 998;  // RFC 5322 2.1.1, without CRLF
constexpr std::size_t fold_at = 78;    // RFC 5322 "SHOULD"
constexpr std::size_t qp_line = 76;    // RFC 2045 6.7 (5)

std::string random_hex(std::size_t bytes) {
  std::array<unsigned char, 32> buf{};
  if (bytes > buf.size() || RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) {
    // A predictable boundary could be planted in the returned content; the CSPRNG failing means the
    // process is unfit to go on (restart; the spool makes that safe).
    std::fputs("mukai: RAND_bytes failed while writing a DSN\n", stderr);
    std::abort();
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    out += digits[buf[i] >> 4];
    out += digits[buf[i] & 0x0f];
  }
  return out;
}

std::string rfc5322_date(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  std::array<char, 64> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return std::string(buf.data(), n);
}

std::string printable_ascii(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    out += (c >= 0x20 && c < 0x7F) ? ch : '?';
  }
  return out;
}

// Decodes one UTF-8 sequence at s[i]; returns the code point and advances i, or U+FFFD for an invalid
// byte (advancing by one).
char32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  auto cont = [&](std::size_t k) {
    return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
  };
  auto byte = [&](std::size_t k) {
    return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F);
  };
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  char32_t cp = 0;
  std::size_t len = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
    cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | byte(1);
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
    cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (byte(1) << 6) | byte(2);
    len = 3;
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) len = 0;
  } else if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (byte(1) << 12) | (byte(2) << 6) | byte(3);
    len = 4;
    if (cp < 0x10000 || cp > 0x10FFFF) len = 0;
  }
  if (len == 0) {
    ++i;
    return 0xFFFD;
  }
  i += len;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Text for the human-readable part: valid UTF-8, no control characters (they could fake lines).
std::string display_text(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const char32_t cp = next_code_point(s, i);
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0x2028 || cp == 0x2029) {
      out += '?';
    } else {
      append_utf8(out, cp);
    }
  }
  return out;
}

// "rfc822; a@b" for an ASCII address, RFC 6533 "utf-8; " with \x{HEX} for anything else (keeps the
// message/delivery-status part 7-bit).
std::string address_field(std::string_view address) {
  if (!has_8bit(address) && std::all_of(address.begin(), address.end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x20 && c != 0x7F;
      })) {
    return "rfc822; " + std::string(address);
  }
  std::string out = "utf-8; ";
  for (std::size_t i = 0; i < address.size();) {
    const char32_t cp = next_code_point(address, i);
    if (cp >= 0x21 && cp < 0x7F && cp != '\\') {
      out += static_cast<char>(cp);
    } else {
      std::array<char, 16> hex{};
      std::snprintf(hex.data(), hex.size(), "\\x{%X}", static_cast<unsigned>(cp));
      out += hex.data();
    }
  }
  return out;
}

// RFC 3461 4 xtext decoding; nullopt when malformed.
std::optional<std::string> xtext_decode(std::string_view s) {
  std::string out;
  auto hexval = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '+') {
      if (i + 2 >= s.size() || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) return std::nullopt;
      out += static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else if (c < 0x21 || c > 0x7E || c == '=') {
      return std::nullopt;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Original-Recipient from ORCPT ("rfc822;a+2Bb@c" -> "rfc822; a+b@c"); nullopt unless it decodes to
// printable ASCII.
std::optional<std::string> original_recipient(std::string_view orcpt) {
  if (orcpt.empty()) return std::nullopt;
  auto decoded = xtext_decode(orcpt);
  if (!decoded) return std::nullopt;
  const auto semi = decoded->find(';');
  if (semi == 0 || semi == std::string::npos || semi + 1 >= decoded->size()) return std::nullopt;
  if (!std::all_of(decoded->begin(), decoded->end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7F;
      })) {
    return std::nullopt;
  }
  std::string type = decoded->substr(0, semi);
  std::string addr = decoded->substr(semi + 1);
  while (!addr.empty() && addr.front() == ' ') addr.erase(0, 1);
  return type + "; " + addr;
}

// "Name: value" folded at spaces so that lines stay near 78 octets and never exceed 998.
std::string field(std::string_view name, std::string_view value) {
  std::string out(name);
  out += ':';
  std::size_t line_len = out.size();
  std::size_t i = 0;
  bool first = true;
  while (i < value.size()) {
    std::size_t end = value.find(' ', i);
    if (end == std::string_view::npos) end = value.size();
    std::string_view word = value.substr(i, end - i);
    i = end + 1;
    if (word.empty()) continue;
    if (!first && line_len + 1 + word.size() > fold_at) {
      out += "\r\n";
      line_len = 0;
    }
    // A single word longer than a line can hold (never for our values, which are bounded) is cut.
    while (line_len + 1 + word.size() > max_line) {
      const std::size_t room = max_line - line_len - 1;
      out += ' ';
      out.append(word.substr(0, room));
      word.remove_prefix(room);
      out += "\r\n";
      line_len = 0;
    }
    out += ' ';
    out.append(word);
    line_len += 1 + word.size();
    first = false;
  }
  out += "\r\n";
  return out;
}

// Quoted-printable (RFC 2045 6.7) of text whose lines end in LF; output lines end in CRLF.
std::string quoted_printable(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t len = 0;
    for (std::size_t k = 0; k < line.size(); ++k) {
      const auto c = static_cast<unsigned char>(line[k]);
      const bool last = k + 1 == line.size();
      std::string token;
      if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
        token.assign(1, static_cast<char>(c));
      } else {
        token = {'=', hex[c >> 4], hex[c & 0x0F]};
      }
      if (len + token.size() > qp_line - 1) {  // leave room for the soft break's '='
        out += "=\r\n";
        len = 0;
      }
      out += token;
      len += token.size();
    }
    if (nl == text.size()) break;
    out += "\r\n";
    pos = nl + 1;
  }
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  return out;
}

std::string base64(std::string_view in) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += table[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < in.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// RFC 2047 B-encoded words of UTF-8 text, each at most 75 octets and cut at character boundaries,
// one per folded line.
std::string encoded_words(std::string_view utf8) {
  std::string out;
  std::size_t i = 0;
  while (i < utf8.size()) {
    std::size_t end = i;
    while (end < utf8.size()) {
      std::size_t next = end;
      (void)next_code_point(utf8, next);
      if (next - i > 45) break;  // 45 octets -> 60 base64 characters + 12 = 72
      end = next;
    }
    if (end == i) break;  // cannot happen (a code point is at most 4 octets)
    out += "\r\n =?UTF-8?B?" + base64(utf8.substr(i, end - i)) + "?=";
    i = end;
  }
  return out;
}

// Message text with CRLF line ends; NUL becomes '?'. Sets `ok` false if a line exceeds 998 octets.
std::string crlf_text(std::string_view text, bool& ok) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  std::size_t line_len = 0;
  ok = true;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r' || c == '\n') {
      out += "\r\n";
      line_len = 0;
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      continue;
    }
    out += c == '\0' ? '?' : c;
    if (++line_len > max_line) ok = false;
  }
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  return out;
}

// The header block (without the empty line), CRLF, lines cut at 998 octets, cut at a line boundary
// beyond `limit`.
std::string header_block(std::string_view message, std::size_t limit) {
  std::size_t end = message.size();
  if (message.starts_with("\n") || message.starts_with("\r\n")) end = 0;  // no header at all
  for (std::size_t i = 0; i < end; ++i) {
    if (message[i] != '\n') continue;
    const std::size_t next = i + 1;
    if (next < message.size() && message[next] == '\n') {
      end = next;
      break;
    }
    if (next + 1 < message.size() && message[next] == '\r' && message[next + 1] == '\n') {
      end = next;
      break;
    }
  }
  std::string_view headers = message.substr(0, end);
  std::string out;
  std::size_t pos = 0;
  while (pos < headers.size()) {
    std::size_t nl = headers.find('\n', pos);
    if (nl == std::string_view::npos) nl = headers.size();
    std::string_view line = headers.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_line) line = line.substr(0, max_line);
    if (out.size() + line.size() + 2 > limit) break;
    for (char c : line) out += (c == '\0' || c == '\r') ? '?' : c;
    out += "\r\n";
    pos = nl + 1;
  }
  return out;
}

bool wants_failure_notice(std::string_view notify) {
  if (notify.empty()) return true;  // RFC 3461 4.1: no NOTIFY means FAILURE (and DELAY) by default
  std::string up(notify);
  std::transform(up.begin(), up.end(), up.begin(),
                 [](char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; });
  return up.find("FAILURE") != std::string::npos;
}

// A host name safe for Reporting-MTA, From and Message-ID.
std::string safe_host(std::string_view h) {
  if (h.empty() || h.size() > 253) return "localhost";
  for (char c : h) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return "localhost";
  }
  return std::string(h);
}

std::string lifetime_text_en(std::chrono::seconds s) {
  const auto days = s.count() / 86400;
  if (days >= 1 && s.count() % 86400 == 0) return std::to_string(days) + (days == 1 ? " day" : " days");
  const auto hours = s.count() / 3600;
  if (hours >= 1 && s.count() % 3600 == 0) return std::to_string(hours) + (hours == 1 ? " hour" : " hours");
  return std::to_string(s.count()) + " seconds";
}

std::string lifetime_text_ja(std::chrono::seconds s) {
  const auto days = s.count() / 86400;
  if (days >= 1 && s.count() % 86400 == 0) return std::to_string(days) + "日";
  const auto hours = s.count() / 3600;
  if (hours >= 1 && s.count() % 3600 == 0) return std::to_string(hours) + "時間";
  return std::to_string(s.count()) + "秒";
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// "X.Y.Z" at the start of s (class 2, 4 or 5; subject and detail 1-3 digits); "" if none.
std::string leading_status(std::string_view s) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return {};
  std::size_t i = 2;
  std::size_t n = 0;
  while (i < s.size() && is_digit(s[i]) && n < 3) ++i, ++n;
  if (n == 0 || i >= s.size() || s[i] != '.') return {};
  ++i;
  std::size_t m = 0;
  while (i < s.size() && is_digit(s[i]) && m < 3) ++i, ++m;
  if (m == 0 || (i < s.size() && s[i] != ' ')) return {};
  return std::string(s.substr(0, i));
}

}  // namespace

dsn_diagnostic classify_diagnostic(std::string_view last_reply, bool expired) {
  dsn_diagnostic d;
  d.text = printable_ascii(last_reply.substr(0, 512));
  const std::string_view text = d.text;
  const bool smtp_reply = text.size() >= 3 && (text[0] >= '2' && text[0] <= '5') && is_digit(text[1]) &&
                          is_digit(text[2]) && (text.size() == 3 || text[3] == ' ' || text[3] == '-');
  if (smtp_reply) {
    d.type = "smtp";
    const std::string status = text.size() > 4 ? leading_status(text.substr(4)) : std::string();
    d.status = (!status.empty() && status[0] == text[0]) ? status : std::string(1, text[0]) + ".0.0";
  } else {
    d.type = "X-Mukai";
    d.status = leading_status(text);
  }
  if (expired) {
    // Gave up on a temporary failure: keep its class-4 detail if it had one.
    if (d.status.empty() || d.status[0] != '4') d.status = "4.4.7";
    if (d.text.empty()) {
      d.type = "X-Mukai";
      d.text = "4.4.7 delivery time expired";
    }
  } else if (d.status.empty() || d.status[0] == '2') {
    d.status = "5.0.0";  // a failed recipient with no usable code
  }
  return d;
}

std::optional<dsn_message> build_dsn(const spooled_message& original,
                                     const std::vector<failed_recipient>& failed, const dsn_options& options,
                                     std::chrono::system_clock::time_point now) {
  const spool_envelope& env = original.envelope;
  const std::string& sender = env.mail_from;
  if (sender.empty()) return std::nullopt;  // never bounce a bounce
  if (sender.size() > 900 || std::any_of(sender.begin(), sender.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c == 0x7F || c == '<' || c == '>';
      })) {
    return std::nullopt;  // cannot be written in To: or MAIL FROM safely
  }

  std::vector<const failed_recipient*> reported;
  for (const auto& f : failed) {
    if (f.index >= env.recipients.size()) continue;
    if (!wants_failure_notice(env.recipients[f.index].notify)) continue;
    reported.push_back(&f);
  }
  if (reported.empty()) return std::nullopt;

  const std::string host = safe_host(options.reporting_mta);
  const bool sender_utf8 = has_8bit(sender);

  // Part 3: what of the original goes back.
  const bool want_full = env.ret == spool_dsn_ret::full;
  bool return_full = false;
  std::string returned;
  if (want_full && original.body.size() <= options.max_full_return) {
    bool lines_ok = true;
    returned = crlf_text(original.body, lines_ok);
    return_full = lines_ok;
  }
  if (!return_full) returned = header_block(original.body, options.max_returned_headers);
  const bool returned_8bit = has_8bit(returned);

  // Part 1: the text for people.
  std::string ja;
  std::string en;
  for (const auto* f : reported) {
    const std::string addr = display_text(env.recipients[f->index].address);
    const dsn_diagnostic d = classify_diagnostic(f->last_reply, f->expired);
    if (f->expired) {
      ja += "  <" + addr + ">\n    保存期間（" + lifetime_text_ja(options.max_queue_lifetime) +
            "）内に配送できなかったため、配送を中止しました。\n";
      en += "  <" + addr + ">\n    Delivery was given up after " +
            lifetime_text_en(options.max_queue_lifetime) + ".\n";
    } else {
      ja += "  <" + addr + ">\n    配送先のサーバーが受け取りを拒否しました。\n";
      en += "  <" + addr + ">\n    The receiving server refused the message.\n";
    }
    const std::string reason = d.type == "smtp" ? d.text : d.text + " (reported by " + host + ")";
    ja += "    詳細: " + reason + "\n";
    en += "    Details: " + reason + "\n";
  }
  std::string text;
  text += "このメールは、メール中継システム " + host + " が自動的に送信しています。\n\n";
  text += "お送りいただいたメールを、次の宛先に配送できませんでした。\n";
  text += "宛先のメールアドレスに誤りがないかご確認ください。このメールに返信しても届きません。\n\n";
  text += ja;
  text += "\n受付日時: " + rfc5322_date(env.received) + "\n";
  text += "受付番号: " + printable_ascii(original.queue_id) + "\n";
  text += return_full ? "元のメールを添付します。\n" : "元のメールのヘッダーを添付します。\n";
  if (want_full && !return_full)
    text += "（元のメールは大きすぎるか形式が不適切なため、ヘッダーのみを添付します。）\n";
  text += "\n----------------------------------------------------------------------\n\n";
  text += "This is the mail system at host " + host + ".\n\n";
  text += "I'm sorry to have to inform you that your message could not be delivered to one or more\n";
  text += "recipients. Please check the addresses. Do not reply to this message.\n\n";
  text += en;
  text += "\nReceived: " + rfc5322_date(env.received) + "\n";
  text += "Queue ID: " + printable_ascii(original.queue_id) + "\n";
  text += return_full ? "Your message is attached.\n" : "The headers of your message are attached.\n";
  if (want_full && !return_full) text += "(The message itself is too large or malformed to be returned.)\n";
  const std::string text_part = quoted_printable(text);

  // Part 2: the machine-readable report (RFC 3464 2.2 and 2.3).
  std::string report;
  report += field("Reporting-MTA", "dns; " + host);
  report += field("X-Mukai-Queue-ID", printable_ascii(original.queue_id));
  if (auto envid = xtext_decode(env.envid);
      envid && !envid->empty() && envid->size() <= 100 && !has_8bit(*envid)) {
    report += field("Original-Envelope-Id", printable_ascii(*envid));
  }
  report += field("Arrival-Date", rfc5322_date(env.received));
  for (const auto* f : reported) {
    const spool_recipient& r = env.recipients[f->index];
    const dsn_diagnostic d = classify_diagnostic(f->last_reply, f->expired);
    report += "\r\n";
    report += field("Final-Recipient", address_field(r.address));
    if (auto orig = original_recipient(r.orcpt)) report += field("Original-Recipient", *orig);
    report += field("Action", "failed");
    report += field("Status", d.status);
    if (!f->remote_mta.empty()) report += field("Remote-MTA", "dns; " + printable_ascii(f->remote_mta));
    if (!d.text.empty()) report += field("Diagnostic-Code", d.type + "; " + d.text);
    if (f->last_attempt != std::chrono::system_clock::time_point{}) {
      report += field("Last-Attempt-Date", rfc5322_date(f->last_attempt));
    }
  }

  // A boundary that occurs in none of the parts (128 random bits: a clash is only a formality).
  std::string boundary;
  for (int attempt = 0; attempt < 8; ++attempt) {
    boundary = "=_mukai_dsn_" + random_hex(16);
    if (text_part.find(boundary) == std::string::npos && report.find(boundary) == std::string::npos &&
        returned.find(boundary) == std::string::npos) {
      break;
    }
  }
  const std::string delimiter = "--" + boundary;

  std::string out;
  out.reserve(returned.size() + text_part.size() + report.size() + 2048);
  out += field("From", "Mail Delivery System <MAILER-DAEMON@" + host + ">");
  out += "To: <" + sender + ">\r\n";
  out += "Subject: Undelivered Mail Returned to Sender" + encoded_words("配送不能のお知らせ") + "\r\n";
  out += field("Date", rfc5322_date(now));
  out += field("Message-ID", "<" + random_hex(16) + ".dsn@" + host + ">");
  out += field("Auto-Submitted", "auto-replied");
  out += field("MIME-Version", "1.0");
  out +=
      "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n";
  out += field("Content-Transfer-Encoding", returned_8bit ? "8bit" : "7bit");
  out += "\r\nThis is a MIME-encapsulated message (a delivery status notification).\r\n\r\n";

  out += delimiter + "\r\n";
  out += field("Content-Type", "text/plain; charset=UTF-8");
  out += field("Content-Transfer-Encoding", "quoted-printable");
  out += field("Content-Description", "Notification");
  out += "\r\n" + text_part;

  out += "\r\n" + delimiter + "\r\n";
  out += field("Content-Type", "message/delivery-status");
  out += field("Content-Description", "Delivery report");
  out += "\r\n" + report;

  out += "\r\n" + delimiter + "\r\n";
  if (return_full) {
    out += field("Content-Type", "message/rfc822");
    out += field("Content-Description", "Undelivered Message");
  } else {
    out += field("Content-Type", "text/rfc822-headers");
    out += field("Content-Description", "Undelivered Message Headers");
  }
  if (returned_8bit) out += field("Content-Transfer-Encoding", "8bit");
  out += "\r\n" + returned;
  out += "\r\n" + delimiter + "--\r\n";

  dsn_message dsn;
  dsn.body = std::move(out);
  dsn.envelope.mail_from.clear();  // null reverse-path: a DSN never causes another one
  dsn.envelope.recipients.push_back(spool_recipient{sender, "", ""});
  dsn.envelope.body =
      (returned_8bit || sender_utf8) ? spool_body_type::eight_bit_mime : spool_body_type::seven_bit;
  dsn.envelope.smtputf8 = sender_utf8;
  dsn.envelope.esmtp = true;
  dsn.envelope.helo = host;
  dsn.envelope.client_address = std::string(dsn_client_address);  // generated here, routed as a DSN
  dsn.envelope.received = now;
  return dsn;
}

}  // namespace mukai::server
