// HTML of the web console: the one escaping function, the Japanese/English strings, and the pages.
//
// Every value that comes from a message (subject, addresses, filenames, reasons, the sanitized
// text) or from a request (search terms, IDs) reaches the HTML only through html_escape(), which
// also neutralises what is dangerous to show even as text: invalid UTF-8, control characters and
// bidirectional overrides (a filename "invoice\u202Efdp.exe" must not display as "invoiceexe.pdf")
// become U+FFFD. Escaped text is safe in element content and in double- or single-quoted
// attribute values; no value is ever placed in a script, style or URL context without
// percent-encoding (url_component()).
//
// Pages use no JavaScript and one stylesheet (/static/admin.css, admin_stylesheet()); every form is
// a plain POST with the session's CSRF token in a hidden field.
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/admin_auth.hpp"
#include "server/quarantine_index.hpp"

namespace mukai::server {

// Text -> HTML (content or quoted attribute): & < > " ' escaped; invalid UTF-8, C0 controls other
// than TAB/LF/CR, DEL, C1 controls and bidi controls replaced by U+FFFD. Always valid UTF-8 out.
[[nodiscard]] std::string html_escape(std::string_view text);

// Text -> valid UTF-8 (invalid sequences become U+FFFD; nothing else changes), for JSON output.
[[nodiscard]] std::string valid_utf8(std::string_view text);

// Percent-encoding of a query or path component (unreserved characters kept).
[[nodiscard]] std::string url_component(std::string_view text);

enum class ui_lang { ja, en };
[[nodiscard]] ui_lang parse_ui_lang(std::string_view s) noexcept;  // "en" -> en, anything else -> ja
[[nodiscard]] const char* to_string(ui_lang l) noexcept;

// Message IDs of the UI strings, looked up in both languages by tr().
enum class msg : std::uint16_t {
  title, login, user, password, login_button, login_failed, login_locked, logout, list, search, search_hint,
  status, status_any, status_held, status_released, status_deleted, status_expired, since, until, sender,
  recipient, subject, reason, filter_button, results, no_results, prev, next, received, from, to, size, verdict,
  parts, id, detail, envelope, mail_from, rcpt_to, headers, message_id, reasons, filename, declared_type,
  detected_type, sha256, action, sanitized_text, not_stored, history, when, who, result, release, remove,
  release_confirm, remove_confirm, release_to, release_to_hint, release_unverified,
  release_unverified_box, confirm, cancel, back, forbidden, not_found,
  bad_request, csrf_failed, action_ok, action_refused, action_failed, role_viewer, role_operator, language,
  original_stored, yes, no, stats, total, oldest_held, removed_files, flags, purge, result_ok, result_refused,
  result_failed, count_,
};
[[nodiscard]] std::string_view tr(ui_lang l, msg m) noexcept;

// The engine's tokens (verdict, reasons, part actions and reasons, content flags) in words for the
// page's language, from the vocabulary the notices use (sanitizers/report_words.hpp); a token with a
// variable rest reads "words (rest)" ("ポリシー規則 (executables)"); an unknown token is its own
// label. Pages show the label with the token itself beside it in small monospace (detail page) or
// in its title (list page), so operators can grep logs and filter by what they see. The JSON API
// keeps the raw tokens. Returns plain text: the caller escapes it. The history's actions ("release",
// "delete", "purge") and results ("ok", "refused", "failed") are the service's tokens, worded here.
enum class token_kind { reason, flag, part_action, verdict, history_action, history_result };
[[nodiscard]] std::string token_label(ui_lang l, token_kind k, std::string_view token);

// What every page needs to draw its frame.
struct page_frame {
  ui_lang lang = ui_lang::ja;
  std::string user;  // empty: not logged in
  admin_role role = admin_role::viewer;
  std::string csrf;
  std::string self;  // path and query of this page (for the language switch), already a valid URL path
};

// Filters as the list page shows them (the raw text the operator typed, for the form).
struct list_query {
  std::string text, status, since, until, sender, recipient, subject, reason;
  std::size_t page = 1;  // 1-based
  [[nodiscard]] std::string to_query_string(std::size_t page_no) const;  // "q=...&status=...&page=N"
};

[[nodiscard]] std::string render_login_page(const page_frame& f, std::string_view login_token,
                                            std::string_view error, std::string_view user_value);
[[nodiscard]] std::string render_list_page(const page_frame& f, const list_query& q, const item_page& page,
                                           std::size_t page_size, std::string_view error);
// part_flags: content flags by MIME path (quarantine_service::part_flags), shown with each part.
[[nodiscard]] std::string render_detail_page(const page_frame& f, const index_item& item,
                                             const std::optional<std::string>& sanitized_text,
                                             const std::map<std::string, std::vector<std::string>>& part_flags = {});
// release_unverified: a message held whole while release_forbidden is set (the service's
// needs_unverified_confirmation): the page warns and asks for the "checked it myself" box.
enum class confirm_kind { release, release_unverified, remove };
[[nodiscard]] std::string render_confirm_page(const page_frame& f, const index_item& item, confirm_kind kind);
// The outcome of a release/delete (message from the service, shown escaped).
[[nodiscard]] std::string render_result_page(const page_frame& f, std::string_view item_id, msg heading,
                                             std::string_view message);
// 403/404/400 pages.
[[nodiscard]] std::string render_error_page(const page_frame& f, msg heading, std::string_view detail);

[[nodiscard]] std::string_view admin_stylesheet() noexcept;

// "2026-11-22 10:35:12 +0900" in the server's local time zone.
[[nodiscard]] std::string format_time(std::int64_t unix_seconds);
// "2026-11-22" or "2026-11-22T10:35[:12]" in local time -> Unix seconds. end_of_day: a bare date
// means the end of that day (for "until", exclusive). nullopt when it does not parse.
[[nodiscard]] std::optional<std::int64_t> parse_local_time(std::string_view text, bool end_of_day);

}  // namespace mukai::server
