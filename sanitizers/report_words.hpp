// The engine's report tokens in words, Japanese and English: one vocabulary for the notices the
// recipients read (notice.cpp) and the web console the operators read (server/admin_html.cpp), so
// that a staff member quoting a notice and an operator reading the console use the same terms.
//
// Tokens stay the machine contract (logs, JSON, the index's reason filter); words are only for
// display. A token is looked up exactly or by its longest known prefix: "rule:executables" matches
// "rule:" (rest "executables"), "attachments-removed=2" matches "attachments-removed=" (rest "2").
// The rest comes from the token, hence from a message or a config: callers escape it for their
// medium. Unknown tokens have no words (nullopt); callers show the token itself.
// Threading: pure functions over constant tables.
#pragma once

#include <optional>
#include <string_view>

namespace mukai::sanitize {

struct token_words {
  std::string_view ja, en;
  std::string_view rest;  // the part of the token after a matched prefix ("" for an exact match)
};

// Message reasons (hold reasons such as "limit:mime-depth", the actions of a sanitized message such
// as "html-to-text", "attachments-removed=2") and part reasons ("attachment", "rule:<name>").
[[nodiscard]] std::optional<token_words> reason_words(std::string_view token) noexcept;
// Content flags of a part: "executable", "encrypted-archive", ...
[[nodiscard]] std::optional<token_words> flag_words(std::string_view token) noexcept;
// Part actions: "kept-as-text", "converted", "quarantined", "discarded".
[[nodiscard]] std::optional<token_words> part_action_words(std::string_view token) noexcept;
// Verdicts: "clean", "sanitized", "held".
[[nodiscard]] std::optional<token_words> verdict_words(std::string_view token) noexcept;

}  // namespace mukai::sanitize
