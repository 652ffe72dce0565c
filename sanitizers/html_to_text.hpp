// HTML body -> readable plain text, the form in which municipal staff see HTML mail.
// Parsing is gumbo's (an HTML5 tree builder); this converter only walks the finished tree, so
// nothing here interprets markup itself. The output is text for a reader, never markup: links
// become "text <URL>" with the URL kept, defanged or removed per policy, active and hidden content
// is dropped, tables are aligned by display width.
// Invariants: never throws for any input, never recurses on the DOM (an explicit stack), never
// returns more than max_output bytes (a truncation note included), checks the deadline while
// parsing and while walking; gumbo's memory is bounded and released even when a parse is abandoned.
// Threading: reentrant; no shared state between calls.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "config/policy.hpp"

namespace mukai::sanitize {

struct html_options {
  config::link_action http_links = config::link_action::defang;  // http/https/ftp and other URL schemes
  config::link_action mailto_links = config::link_action::keep;
  config::link_action tel_links = config::link_action::keep;
  bool mark_phishing_links = true;
  config::language lang = config::language::ja;
  std::size_t max_output = 16 * 1024 * 1024;  // stop appending beyond this, set truncated
  // Checked while gumbo parses (from its allocator) and every few hundred nodes of the walk.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  int max_depth = 256;        // DOM depth beyond which elements lose their formatting (text is kept)
  int max_table_width = 100;  // display columns; wider tables become "header: value" lines
};

struct html_result {
  // UTF-8, LF line ends, no trailing spaces on lines, at most 2 consecutive blank lines; no control
  // but TAB and LF, no bidi embedding/override/isolate control (U+202A-U+202E, U+2066-U+2069: they
  // would let the sender reorder what is shown; the marks U+200E/U+200F/U+061C are kept).
  std::string text;
  int links = 0;            // <a href> elements
  int links_defanged = 0;   // URLs shown in defanged form
  int links_removed = 0;    // URLs not shown: policy remove, unsafe scheme, relative
  int images = 0;           // <img> and <input type=image>, tracking pixels included
  int phishing_cues = 0;    // links whose text names another host than their target
  int scripts_removed = 0;  // <script> elements dropped
  int forms = 0;            // <form> elements (their visible text is kept)
  int embeds_removed = 0;   // iframe/frame/object/embed/applet/video/audio replaced by a note
  bool truncated = false;   // output reached max_output; text ends with a truncation line
  bool timed_out = false;   // the deadline passed; text is what was produced until then
  // gumbo was stopped (deadline or its memory bound) before a tree existed: text is empty.
  bool parse_aborted = false;
};

// The input must already be UTF-8 (invalid sequences are shown as U+FFFD).
[[nodiscard]] html_result html_to_text(std::string_view html_utf8, const html_options& opt);

// The charset an HTML body declares in <meta charset> or <meta http-equiv=Content-Type
// content="...; charset=...">, looked for in the first 4 KB by parsing those bytes with gumbo
// (ASCII markup survives any ASCII-compatible encoding). Also honours a byte-order mark and, failing a
// meta, an XML declaration's encoding. Returns the lower-case label as written (not mapped to a
// converter name) or nullopt; labels that are not plausible charset names are ignored.
[[nodiscard]] std::optional<std::string> sniff_html_charset(std::string_view raw_html_bytes);

// "https://example.com/x" -> "hxxps://example[.]com/x". http/https/ftp are renamed hxxp/hxxps/fxp;
// dots in the authority (host, and userinfo, which can impersonate a host) become "[.]"; for mailto
// the dots of the domain; other schemes get "[:]" after the scheme so no client links them.
// Controls (C0, DEL, C1) and bidi embedding/override/isolate controls are removed, judged per code
// point (invalid UTF-8 -> U+FFFD), and "<" ">" " " percent-encoded, so the result is safe inside "<...>".
[[nodiscard]] std::string defang_url(std::string_view url);

}  // namespace mukai::sanitize
