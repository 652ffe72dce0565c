// A linear scan for URL starts; a URL runs to the first space, control, quote, angle bracket or
// non-ASCII byte, minus trailing sentence punctuation (as mail programs' linkifiers do).
// Why the scan skips: every URL start begins with h, f or w (either case), so only those bytes
// are examined further (eight bytes are ruled out at a time), and the text is copied only when a
// URL is rewritten. Most body text (and all Japanese text) has few such bytes or none; testing
// every byte with four case-insensitive prefix comparisons (a std::tolower call each) and
// appending it alone was a third of the engine's time on a 100 KB Japanese body.
#include "sanitizers/text_links.hpp"

#include <cctype>
#include <optional>

#include "sanitizers/byte_scan.hpp"
#include "sanitizers/html_to_text.hpp"

namespace mukai::sanitize {

namespace {

bool starts_with_ci(std::string_view s, std::size_t at, std::string_view prefix) {
  if (s.size() - at < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[at + i])) != prefix[i]) return false;
  return true;
}

// The first byte of "https://", "http://", "ftp://" or "www." in either case. In the C locale
// (the program never sets another) std::tolower maps only 'A'-'Z', so no other byte can begin a
// match in starts_with_ci.
bool may_start_url(char c) {
  const char folded = static_cast<char>(c | 0x20);
  return folded == 'h' || folded == 'f' || folded == 'w';
}

// Whether any of the eight bytes at p may_start_url.
bool word_may_start_url(const char* p) noexcept {
  using namespace byte_scan;
  const std::uint64_t folded = load8(p) | (ones * 0x20);
  return (any_byte_equal(folded, 'h') | any_byte_equal(folded, 'f') | any_byte_equal(folded, 'w')) != 0;
}

bool url_char(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7F && c != '<' && c != '>' && c != '"' && c != '\'' && c != '`';
}

// Length of the URL-ish token that starts at `at`, without trailing punctuation.
std::size_t url_length(std::string_view s, std::size_t at) {
  std::size_t end = at;
  while (end < s.size() && url_char(s[end])) ++end;
  int open_parens = 0;
  for (std::size_t i = at; i < end; ++i) open_parens += s[i] == '(' ? 1 : s[i] == ')' ? -1 : 0;
  while (end > at) {
    char c = s[end - 1];
    if (c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?' || c == ']' || c == '}' ||
        (c == ')' && open_parens < 0)) {
      if (c == ')') ++open_parens;
      --end;
    } else {
      break;
    }
  }
  return end - at;
}

// The text with the policy applied, or nullopt if that leaves it unchanged (no URL, or "keep").
std::optional<std::string> rewrite_links(std::string_view text, const config::policy& pol,
                                         text_link_counts& counts) {
  if (pol.http_links == config::link_action::keep) return std::nullopt;
  const bool ja = pol.notice_language == config::language::ja;
  std::optional<std::string> rewritten;  // allocated at the first URL
  std::size_t i = 0;
  std::size_t copied = 0;  // text[copied, i) is still to be appended unchanged
  while (i < text.size()) {
    if (!may_start_url(text[i])) {
      ++i;
      while (i + 8 <= text.size() && !word_may_start_url(text.data() + i)) i += 8;
      continue;
    }
    bool boundary = i == 0 || !std::isalnum(static_cast<unsigned char>(text[i - 1]));
    std::size_t scheme_len = 0;
    if (boundary) {
      if (starts_with_ci(text, i, "https://")) scheme_len = 8;
      else if (starts_with_ci(text, i, "http://")) scheme_len = 7;
      else if (starts_with_ci(text, i, "ftp://")) scheme_len = 6;
      else if (starts_with_ci(text, i, "www.")) scheme_len = 4;
    }
    std::size_t len = scheme_len ? url_length(text, i) : 0;
    if (len <= scheme_len) {
      ++i;
      continue;
    }
    if (!rewritten) {
      rewritten.emplace();
      rewritten->reserve(text.size() + text.size() / 16);
    }
    std::string& out = *rewritten;
    out.append(text.substr(copied, i - copied));
    std::string_view url = text.substr(i, len);
    if (pol.http_links == config::link_action::remove) {
      out += ja ? "[リンク削除]" : "[link removed]";
      ++counts.removed;
    } else if (scheme_len == 4) {  // "www.example.com/x": no scheme, defang the host's dots
      std::size_t host_end = url.find_first_of("/?#");
      if (host_end == std::string_view::npos) host_end = url.size();
      for (std::size_t k = 0; k < host_end; ++k) {
        if (url[k] == '.')
          out += "[.]";
        else
          out += url[k];
      }
      out.append(url.substr(host_end));
      ++counts.defanged;
    } else {
      out += defang_url(url);
      ++counts.defanged;
    }
    i += len;
    copied = i;
  }
  if (rewritten) rewritten->append(text.substr(copied));
  return rewritten;
}

}  // namespace

std::string apply_link_policy_to_text(std::string_view text, const config::policy& pol,
                                      text_link_counts& counts) {
  std::optional<std::string> rewritten = rewrite_links(text, pol, counts);
  return rewritten ? std::move(*rewritten) : std::string(text);
}

void apply_link_policy_in_place(std::string& text, const config::policy& pol, text_link_counts& counts) {
  if (std::optional<std::string> rewritten = rewrite_links(text, pol, counts)) text = std::move(*rewritten);
}

}  // namespace mukai::sanitize
