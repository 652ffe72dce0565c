// libFuzzer: sanitizers/html_to_text.hpp on arbitrary bytes (html_to_text, sniff_html_charset,
// defang_url). The first byte picks the options, the rest is the HTML. Any crash, leak, UB or hang
// is a bug; so is output that breaks the documented contract:
//  - html_to_text: valid UTF-8, no control but TAB and LF (no NUL, CR, other C0, DEL, C1), no bidi
//    embedding/override/isolate control, no trailing spaces on a line, at most 2 consecutive blank
//    lines, never more than max_output bytes, no deadline -> no timeout, an abandoned parse yields
//    no text;
//  - sniff_html_charset: nothing, or a lower-case label of [a-z0-9._:-], 1..40 characters;
//  - defang_url: valid UTF-8 (invalid input -> U+FFFD), no controls (C0, DEL, C1) or bidi
//    embedding/override/isolate controls, no space, "<" or ">"; what is left of a scheme is
//    hxxp/hxxps/fxp/mailto or nothing, and the host (mail domain) has no dot left undefanged.
//
// Option byte: bits 0-1 http links keep/defang/remove/defang; bits 2-3 mailto/tel links
// keep+keep, defang+keep, remove+remove, keep+remove; bit 4 mark phishing links; bit 5 English;
// bits 6-7 limits: defaults / max_output 4096 / max_output 40 + max_depth 4 /
// max_output 1 MiB + max_table_width 10 + max_depth 1.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sanitizers/html_to_text.hpp"
#include "tests/fuzz/fuzz_checks.hpp"

namespace {

constexpr const char* target = "fuzz_html_to_text";

void require(bool ok, const char* what) {
  if (!ok) mukai::fuzz::fail(target, what);
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

mukai::sanitize::html_options options_for(unsigned char v) {
  using mukai::config::link_action;
  mukai::sanitize::html_options o;
  constexpr link_action http[] = {link_action::keep, link_action::defang, link_action::remove,
                                  link_action::defang};
  o.http_links = http[v & 3];
  switch ((v >> 2) & 3) {
    case 0:
      o.mailto_links = link_action::keep;
      o.tel_links = link_action::keep;
      break;
    case 1:
      o.mailto_links = link_action::defang;
      o.tel_links = link_action::keep;
      break;
    case 2:
      o.mailto_links = link_action::remove;
      o.tel_links = link_action::remove;
      break;
    default:
      o.mailto_links = link_action::keep;
      o.tel_links = link_action::remove;
      break;
  }
  o.mark_phishing_links = (v >> 4) & 1;
  o.lang = ((v >> 5) & 1) ? mukai::config::language::en : mukai::config::language::ja;
  switch ((v >> 6) & 3) {
    case 0:
      break;
    case 1:
      o.max_output = 4096;
      break;
    case 2:
      o.max_output = 40;
      o.max_depth = 4;
      break;
    default:
      o.max_output = 1 << 20;
      o.max_table_width = 10;
      o.max_depth = 1;
      break;
  }
  return o;
}

void check_text(const mukai::sanitize::html_result& r, const mukai::sanitize::html_options& o) {
  const std::string& t = r.text;
  require(t.size() <= o.max_output, "text longer than max_output");
  std::vector<char32_t> cps;
  require(mukai::fuzz::decode_utf8(t, &cps), "text is not valid UTF-8");
  require(t.find('\0') == std::string::npos, "NUL in text");
  require(t.find('\r') == std::string::npos, "CR in text (LF line ends only)");
  for (const char32_t c : cps) {
    require(c == '\t' || c == '\n' || !mukai::fuzz::is_c0_c1_or_del(c), "control character in text");
    require(!mukai::fuzz::is_bidi_reordering(c), "bidi reordering control in text");
  }
  require(!r.timed_out, "timed out without a deadline");
  if (r.parse_aborted) require(t.empty(), "text from an abandoned parse");
  require(r.links >= 0 && r.links_defanged >= 0 && r.links_removed >= 0 && r.images >= 0 &&
              r.phishing_cues >= 0 && r.scripts_removed >= 0 && r.forms >= 0 && r.embeds_removed >= 0,
          "negative counter");
  // Lines: no trailing space; at most 2 consecutive blank lines.
  int blank_run = 0;
  std::size_t begin = 0;
  while (begin < t.size()) {
    std::size_t lf = t.find('\n', begin);
    if (lf == std::string::npos) lf = t.size();
    const std::string_view line = std::string_view(t).substr(begin, lf - begin);
    require(line.empty() || line.back() != ' ', "trailing space on a line");
    blank_run = line.empty() ? blank_run + 1 : 0;
    require(blank_run <= 2, "more than 2 consecutive blank lines");
    begin = lf + 1;
  }
}

void check_sniff(const std::optional<std::string>& label) {
  if (!label) return;
  require(!label->empty() && label->size() <= 40, "sniffed label length");
  for (const char c : *label) {
    require((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':',
            "sniffed label has an unexpected character");
  }
}

// Removes every "[.]" (the defanged dot); what remains must hold no dot in any spelling.
bool has_live_dot(std::string_view s) {
  std::string rest;
  for (std::size_t i = 0; i < s.size();) {
    if (s.substr(i, 3) == "[.]") {
      i += 3;
    } else {
      rest.push_back(lower(s[i++]));
    }
  }
  return rest.find('.') != std::string::npos || rest.find("%2e") != std::string::npos;
}

void check_defanged(std::string_view out) {
  std::vector<char32_t> cps;
  require(mukai::fuzz::decode_utf8(out, &cps), "defanged URL is not valid UTF-8");
  for (const char32_t c : cps) {
    require(!mukai::fuzz::is_c0_c1_or_del(c), "control character in a defanged URL");
    require(!mukai::fuzz::is_bidi_reordering(c), "bidi reordering control in a defanged URL");
    require(c != ' ' && c != '<' && c != '>', "space or angle bracket in a defanged URL");
  }
  // The scheme a browser would see (WHATWG URL: ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") ":").
  std::string scheme;
  if (!out.empty() && ((out[0] >= 'a' && out[0] <= 'z') || (out[0] >= 'A' && out[0] <= 'Z'))) {
    for (std::size_t i = 0; i < out.size(); ++i) {
      const char c = out[i];
      if (c == ':') {
        scheme = std::string(out.substr(0, i));
        for (char& ch : scheme) ch = lower(ch);
        break;
      }
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '+' || c == '-' || c == '.';
      if (!ok) break;
    }
  }
  if (scheme.empty()) return;
  require(scheme == "hxxp" || scheme == "hxxps" || scheme == "fxp" || scheme == "mailto",
          "defanged URL still has a live scheme");
  std::string_view rest = out.substr(scheme.size() + 1);
  if (scheme == "mailto") {
    const std::string_view addr = rest.substr(0, rest.find('?'));
    const std::size_t at = addr.rfind('@');
    if (at != std::string_view::npos)
      require(!has_live_dot(addr.substr(at + 1)), "mailto domain not defanged");
    return;
  }
  std::size_t p = 0;
  while (p < rest.size() && (rest[p] == '/' || rest[p] == '\\')) ++p;
  std::size_t e = p;
  while (e < rest.size() && rest[e] != '/' && rest[e] != '\\' && rest[e] != '?' && rest[e] != '#') ++e;
  require(!has_live_dot(rest.substr(p, e - p)), "URL host not defanged");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const mukai::sanitize::html_options opt = options_for(data[0]);
  const std::string_view html(reinterpret_cast<const char*>(data) + 1, size - 1);

  check_text(mukai::sanitize::html_to_text(html, opt), opt);
  check_sniff(mukai::sanitize::sniff_html_charset(html));
  // URLs are short; the whole input as one is still a valid (if odd) test of the function.
  check_defanged(mukai::sanitize::defang_url(html.substr(0, 4096)));
  return 0;
}
