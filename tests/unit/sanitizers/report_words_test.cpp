// The report vocabulary: every token the engine's enums produce has words in both languages, prefixes
// keep the variable rest, and unknown tokens have none (callers show the token).
#include "sanitizers/report_words.hpp"

#include <doctest/doctest.h>

#include "sanitizers/content_inspect.hpp"
#include "sanitizers/notice.hpp"
#include "sanitizers/report.hpp"

using namespace mukai::sanitize;

TEST_CASE("report_words: every content flag, part action and verdict has Japanese and English words") {
  using mukai::config::content_flag;
  for (auto f : {content_flag::executable, content_flag::macro_office, content_flag::encrypted_archive,
                 content_flag::encrypted_document, content_flag::double_extension, content_flag::type_mismatch,
                 content_flag::archive_with_executable}) {
    const auto w = flag_words(to_string(f));
    REQUIRE_MESSAGE(w, to_string(f));
    CHECK(!w->ja.empty());
    CHECK(!w->en.empty());
    CHECK(w->rest.empty());
  }
  for (auto a : {part_action::kept_as_text, part_action::converted, part_action::quarantined, part_action::discarded})
    CHECK_MESSAGE(part_action_words(to_string(a)), to_string(a));
  for (auto v : {verdict::clean, verdict::sanitized, verdict::held}) CHECK_MESSAGE(verdict_words(to_string(v)), to_string(v));
  CHECK(flag_words("encrypted-archive")->ja == "暗号化圧縮ファイル");
  CHECK(verdict_words("sanitized")->ja == "無害化して配送");
}

TEST_CASE("report_words: exact tokens, prefixes with their rest, and unknown tokens") {
  CHECK(reason_words("html-to-text")->en == "HTML body converted to text");
  CHECK(reason_words("attachment")->ja == "添付ファイル");
  const auto removed = reason_words("attachments-removed=3");
  REQUIRE(removed);
  CHECK(removed->ja == "添付ファイル等を削除");
  CHECK(removed->rest == "3");
  const auto rule = reason_words("rule:executables");
  REQUIRE(rule);
  CHECK(rule->en == "policy rule");
  CHECK(rule->rest == "executables");
  // The longest match wins: "links=defanged" is a token of its own, "links-removed=" a prefix.
  CHECK(reason_words("links=defanged")->rest.empty());
  CHECK(reason_words("links-removed=2")->rest == "2");
  CHECK(reason_words("limit:time")->rest.empty());
  CHECK(reason_words("ambiguous:conflicting-header")->rest == "conflicting-header");
  // Exact tokens are not prefixes: "attachmentX" and "text/plain" are unknown.
  CHECK_FALSE(reason_words("attachmentX"));
  CHECK_FALSE(reason_words("text/plain"));
  CHECK_FALSE(reason_words(""));
  CHECK_FALSE(flag_words("rule:executable"));
  CHECK_FALSE(part_action_words("held"));
}

TEST_CASE("notices use the same words") {
  CHECK(describe_reason("rule:executables", mukai::config::language::ja) == "ポリシー規則 (executables)");
  CHECK(describe_reason("encrypted", mukai::config::language::en) == "encrypted messages cannot be made harmless");
  CHECK(describe_reason("no-such-token", mukai::config::language::ja) == "no-such-token");
}
