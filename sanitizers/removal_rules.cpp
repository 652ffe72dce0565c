// Removal rule evaluation (see removal_rules.hpp): first match wins, then the default.
// Pure functions of their arguments; no state, no allocation beyond the reason string.
#include "sanitizers/removal_rules.hpp"

#include <algorithm>

namespace mukai::sanitize {
namespace {

char fold(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Length of the UTF-8 sequence starting at text[i]; invalid bytes count as one character.
std::size_t char_length(std::string_view text, std::size_t i) noexcept {
  const auto lead = static_cast<unsigned char>(text[i]);
  std::size_t n = 1;
  if (lead >= 0xF0 && lead <= 0xF7) {
    n = 4;
  } else if (lead >= 0xE0) {
    n = lead <= 0xEF ? 3 : 1;
  } else if (lead >= 0xC0) {
    n = 2;
  }
  for (std::size_t k = 1; k < n; ++k) {
    if (i + k >= text.size() || (static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return k;
  }
  return n;
}

bool any_glob(const std::vector<std::string>& patterns, std::string_view text) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return glob_match(p, text); });
}

bool any_extension(const std::vector<std::string>& patterns, std::string_view ext) {
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) {
    // Config authors write ".exe" as often as "exe"; both mean the extension.
    std::string_view pattern = p;
    if (!pattern.empty() && pattern.front() == '.') pattern.remove_prefix(1);
    return glob_match(pattern, ext);
  });
}

bool rule_matches(const config::removal_rule& rule, const content_facts& facts, std::uint64_t size) {
  if (!rule.detected_types.empty() && !any_glob(rule.detected_types, facts.detected_type)) return false;
  if (!rule.extensions.empty() && !any_extension(rule.extensions, facts.extension)) return false;
  for (const auto flag : rule.flags) {
    if (!facts.has(flag)) return false;
  }
  if (rule.min_size && size < *rule.min_size) return false;
  if (rule.max_size && size > *rule.max_size) return false;
  return true;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) noexcept {
  std::size_t p = 0;
  std::size_t t = 0;
  // Position after the last '*' and the text position it currently absorbs up to; on a
  // mismatch the star takes one more character (classic linear-space backtracking).
  std::size_t star_p = std::string_view::npos;
  std::size_t star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_p = ++p;
      star_t = t;
    } else if (p < pattern.size() && pattern[p] == '?') {
      ++p;
      t += char_length(text, t);
    } else if (p < pattern.size() && fold(pattern[p]) == fold(text[t])) {
      ++p;
      ++t;
    } else if (star_p != std::string_view::npos) {
      star_t += char_length(text, star_t);
      p = star_p;
      t = star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

removal_decision decide_removal(const content_facts& facts, std::uint64_t size, const config::policy& pol) {
  for (std::size_t i = 0; i < pol.rules.size(); ++i) {
    const auto& rule = pol.rules[i];
    if (!rule_matches(rule, facts, size)) continue;
    return {rule.action, rule.name.empty() ? "rule:#" + std::to_string(i + 1) : "rule:" + rule.name};
  }
  return {pol.default_action, "default"};
}

}  // namespace mukai::sanitize
