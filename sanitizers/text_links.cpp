// A linear scan for URL starts; a URL runs to the first space, control, quote, angle bracket or
// non-ASCII byte, minus trailing sentence punctuation (as mail programs' linkifiers do).
#include "sanitizers/text_links.hpp"

#include <cctype>

#include "sanitizers/html_to_text.hpp"

namespace mukai::sanitize {

namespace {

bool starts_with_ci(std::string_view s, std::size_t at, std::string_view prefix) {
  if (s.size() - at < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[at + i])) != prefix[i]) return false;
  return true;
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

}  // namespace

std::string apply_link_policy_to_text(std::string_view text, const config::policy& pol, text_link_counts& counts) {
  if (pol.http_links == config::link_action::keep) return std::string(text);
  const bool ja = pol.notice_language == config::language::ja;
  std::string out;
  out.reserve(text.size() + text.size() / 16);
  std::size_t i = 0;
  while (i < text.size()) {
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
      out += text[i++];
      continue;
    }
    std::string_view url = text.substr(i, len);
    if (pol.http_links == config::link_action::remove) {
      out += ja ? "[リンク削除]" : "[link removed]";
      ++counts.removed;
    } else if (scheme_len == 4) {  // "www.example.com/x": no scheme, defang the host's dots
      std::size_t host_end = url.find_first_of("/?#");
      if (host_end == std::string_view::npos) host_end = url.size();
      for (std::size_t k = 0; k < host_end; ++k) out += url[k] == '.' ? std::string("[.]") : std::string(1, url[k]);
      out.append(url.substr(host_end));
      ++counts.defanged;
    } else {
      out += defang_url(url);
      ++counts.defanged;
    }
    i += len;
  }
  return out;
}

}  // namespace mukai::sanitize
