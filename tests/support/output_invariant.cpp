// See output_invariant.hpp. Each failure is a short sentence naming the rule it breaks.
#include "tests/support/output_invariant.hpp"

#include <utility>

#include <gmime/gmime.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstring>
#include <mutex>

namespace mukai::testing {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool valid_utf8(std::string_view s) {
  return g_utf8_validate(s.data(), static_cast<gssize>(s.size()), nullptr);
}

// 40+ characters of the base64 alphabet, at least half alphanumeric ("=====" rules are text), not
// hex digits only.
bool is_base64_line(std::string_view line) {
  if (line.size() < 40) return false;
  std::size_t alnum = 0;
  for (char c : line) {
    if (std::isalnum(static_cast<unsigned char>(c))) ++alnum;
    else if (c != '+' && c != '/' && c != '=') return false;
  }
  bool hex = std::all_of(line.begin(), line.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  // Encoded data uses many symbols; "1XXXX...X" fill lines (Postfix's smtp-source) are text.
  bool seen[256] = {};
  std::size_t distinct = 0;
  for (char c : line) distinct += !std::exchange(seen[static_cast<unsigned char>(c)], true);
  return alnum * 2 >= line.size() && !hex && distinct >= 12;  // a list of checksums is text
}

void check_blobs(std::string_view body, std::vector<std::string>& failures) {
  int run = 0;
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t eol = body.find('\n', pos);
    if (eol == std::string_view::npos) eol = body.size();
    std::string_view line = body.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    run = is_base64_line(line) ? run + 1 : 0;
    if (run == 4) failures.push_back("body holds a base64 blob");
    if (line.size() > 10 && line.substr(0, 6) == "begin " && line[6] >= '0' && line[6] <= '7' && line[7] >= '0' &&
        line[7] <= '7' && line[8] >= '0' && line[8] <= '7' && line[9] == ' ')
      failures.push_back("body holds a uuencode block");
    if (line.substr(0, 8) == "=ybegin ") failures.push_back("body holds a yEnc block");
    if (line.find("(This file must be converted with BinHex") != std::string_view::npos)
      failures.push_back("body holds a BinHex block");
    if (line.substr(0, 27) == "-----BEGIN PGP MESSAGE-----") failures.push_back("body holds PGP armour");
    pos = eol + 1;
  }
}

constexpr std::string_view allowed_headers[] = {
    "from", "to", "cc", "reply-to", "subject", "date", "message-id", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding", "received"};

}  // namespace

invariant_check check_output(std::string_view m, const boost::json::value& report,
                             const std::vector<std::string>& removed_bytes) {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
  invariant_check c;
  auto& f = c.failures;

  // 1. Wire form: CRLF only, lines <= 998 octets, no NUL, 7-bit header block.
  bool in_headers = true;
  std::size_t pos = 0;
  while (pos < m.size()) {
    std::size_t lf = m.find('\n', pos);
    if (lf == std::string_view::npos) {
      f.push_back("last line lacks CRLF");
      break;
    }
    if (lf == pos || m[lf - 1] != '\r') {
      f.push_back("bare LF at offset " + std::to_string(lf));
      break;
    }
    std::string_view line = m.substr(pos, lf - 1 - pos);
    if (line.size() > 998) f.push_back("line over 998 octets");
    if (line.find('\0') != std::string_view::npos) f.push_back("NUL byte");
    if (line.find('\r') != std::string_view::npos) f.push_back("bare CR");
    if (in_headers && std::any_of(line.begin(), line.end(), [](char ch) { return static_cast<unsigned char>(ch) >= 0x80; }))
      f.push_back("8-bit header line");
    if (line.empty()) in_headers = false;
    pos = lf + 1;
  }
  if (!f.empty()) return c;

  // 2. Exactly one entity, text/plain, safe transfer encoding.
  GMimeStream* stream = g_mime_stream_mem_new_with_buffer(m.data(), m.size());
  GMimeParser* parser = g_mime_parser_new_with_stream(stream);
  GMimeMessage* msg = g_mime_parser_construct_message(parser, nullptr);
  g_object_unref(parser);
  g_object_unref(stream);
  if (!msg) {
    f.push_back("output does not parse");
    return c;
  }
  GMimeObject* top = g_mime_message_get_mime_part(msg);
  if (!top || !GMIME_IS_PART(top) || GMIME_IS_MULTIPART(top)) {
    f.push_back("output is not a single part");
    g_object_unref(msg);
    return c;
  }
  GMimeContentType* ct = g_mime_object_get_content_type(top);
  if (!g_mime_content_type_is_type(ct, "text", "plain")) f.push_back("body is not text/plain");
  const char* charset = g_mime_content_type_get_parameter(ct, "charset");
  std::string cs = charset ? charset : "";
  if (!iequals(cs, "utf-8") && !iequals(cs, "iso-2022-jp")) f.push_back("charset is not UTF-8 or ISO-2022-JP: " + cs);
  GMimeContentEncoding enc = g_mime_part_get_content_encoding(GMIME_PART(top));
  // 7bit only where it is true: ISO-2022-JP, or a body of ASCII (checked on the raw body below).
  const bool seven_bit = enc == GMIME_CONTENT_ENCODING_7BIT;
  if (enc != GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE && enc != GMIME_CONTENT_ENCODING_BASE64 && !seven_bit)
    f.push_back("transfer encoding is not quoted-printable/base64/7bit");
  if (seven_bit) {
    const std::size_t body_at = m.find("\r\n\r\n");
    if (body_at != std::string_view::npos &&
        std::any_of(m.begin() + static_cast<std::ptrdiff_t>(body_at), m.end(),
                    [](char ch) { return static_cast<unsigned char>(ch) >= 0x80; }))
      f.push_back("7bit transfer encoding with 8-bit bytes in the body");
  }

  // 3. Header allow-list plus X-Mukai-*; the marker header is present.
  GMimeHeaderList* headers = g_mime_object_get_header_list(GMIME_OBJECT(msg));
  bool marker = false;
  for (int i = 0; i < g_mime_header_list_get_count(headers); ++i) {
    std::string name = g_mime_header_get_name(g_mime_header_list_get_header_at(headers, i));
    std::string lname = name;
    std::transform(lname.begin(), lname.end(), lname.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (lname == "x-mukai-sanitized") marker = true;
    bool ok = lname.rfind("x-mukai-", 0) == 0 ||
              std::find(std::begin(allowed_headers), std::end(allowed_headers), lname) != std::end(allowed_headers);
    if (!ok) f.push_back("header not allowed: " + name);
  }
  if (!marker) f.push_back("X-Mukai-Sanitized header missing");

  // 4. The body decodes to valid text with no control characters but TAB, CR, LF.
  GMimeDataWrapper* content = g_mime_part_get_content(GMIME_PART(top));
  GMimeStream* out = g_mime_stream_mem_new();
  if (content) g_mime_data_wrapper_write_to_stream(content, out);
  GByteArray* arr = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
  std::string bytes(reinterpret_cast<const char*>(arr->data), arr->len);
  g_object_unref(out);
  if (iequals(cs, "iso-2022-jp")) {
    gsize written = 0;
    gchar* conv = g_convert(bytes.data(), static_cast<gssize>(bytes.size()), "UTF-8", "ISO-2022-JP", nullptr, &written, nullptr);
    if (!conv) f.push_back("ISO-2022-JP body does not convert");
    else c.body.assign(conv, written);
    g_free(conv);
  } else {
    c.body = bytes;
  }
  g_object_unref(msg);
  if (!valid_utf8(c.body)) f.push_back("body is not valid UTF-8");
  for (char ch : c.body) {
    unsigned char u = static_cast<unsigned char>(ch);
    if ((u < 0x20 && u != '\t' && u != '\r' && u != '\n') || u == 0x7F) {
      f.push_back("control character in body");
      break;
    }
  }
  check_blobs(c.body, f);

  // 5. Report-dependent rules.
  const auto* rep = report.if_object();
  if (!rep) {
    f.push_back("report is not an object");
    return c;
  }
  std::string verdict = rep->contains("verdict") && (*rep).at("verdict").is_string()
                            ? std::string((*rep).at("verdict").as_string())
                            : "";
  if (verdict != "clean" && verdict != "sanitized" && verdict != "held") f.push_back("bad verdict in report");
  bool any_kept_text = false;
  if (rep->contains("parts") && (*rep).at("parts").is_array())
    for (auto& p : (*rep).at("parts").as_array())
      if (p.is_object() && p.as_object().contains("action") && p.as_object().at("action") == "kept-as-text")
        any_kept_text = true;
  if (!any_kept_text) {
    // Every word came from conversion: no tag may survive (a text/plain part may quote HTML).
    static constexpr std::string_view tags[] = {"html", "body", "div", "p", "br", "table", "script", "style",
                                                "a", "img", "span", "td", "tr", "font", "head"};
    std::string lower_body = c.body;
    std::transform(lower_body.begin(), lower_body.end(), lower_body.begin(), [](unsigned char ch) { return std::tolower(ch); });
    for (auto t : tags) {
      // "<br>", "<br/", "<a href": a tag name followed by a delimiter ("<broken@x>" is an address).
      std::string open = "<" + std::string(t);
      for (std::size_t at = lower_body.find(open); at != std::string::npos; at = lower_body.find(open, at + 1)) {
        char next = at + open.size() < lower_body.size() ? lower_body[at + open.size()] : '\0';
        if (next == '>' || next == ' ' || next == '/' || next == '\t') {
          f.push_back("HTML markup in converted body: " + open);
          break;
        }
      }
    }
  }
  if (verdict != "clean") {
    bool notice = c.body.find("【無害化通知】") != std::string::npos || c.body.find("【保留通知】") != std::string::npos ||
                  c.body.find("[Sanitized]") != std::string::npos || c.body.find("[Held]") != std::string::npos;
    if (!notice) f.push_back("notice block missing for verdict " + verdict);
    if (rep->contains("quarantine_id") && (*rep).at("quarantine_id").is_string()) {
      std::string id((*rep).at("quarantine_id").as_string());
      if (c.body.find(id) == std::string::npos) f.push_back("quarantine ID not shown in the notice");
    }
  }
  // 6. No piece of a removed binary part in the output.
  for (auto& b : removed_bytes) {
    if (b.size() < 64) continue;
    for (std::size_t at : {std::size_t{0}, b.size() / 2 - 24, b.size() - 48}) {
      std::string_view window(b.data() + at, 48);
      if (c.body.find(window) != std::string::npos || m.find(window) != std::string_view::npos) {
        f.push_back("bytes of a removed part appear in the output");
        break;
      }
    }
  }
  return c;
}

}  // namespace mukai::testing
