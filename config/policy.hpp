// The sanitization policy: what the engine keeps, converts, removes, and how it tells the reader.
// Immutable after load; every limit has a named default here and nowhere else.
// Threading: plain data, safe to share read-only between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mukai::config {

enum class language { ja, en };
enum class link_action { keep, defang, remove };
enum class removed_action { quarantine, discard };
enum class output_charset { utf8, iso_2022_jp };
// automatic: quoted-printable for mostly-ASCII text (readable in a raw view), base64 when most
// characters are multi-byte (Japanese text triples in size under quoted-printable).
enum class body_encoding { automatic, quoted_printable, base64 };

// Facts about a removed part that rules can match on (see sanitizers/content_inspect.hpp).
enum class content_flag {
  executable,          // PE/ELF/Mach-O, scripts, installers, by magic or by extension
  macro_office,        // VBA project inside OLE/OOXML, or a macro-enabled extension (.docm, .xlsm, ...)
  encrypted_archive,   // password-protected ZIP/RAR/7z entries
  encrypted_document,  // encrypted PDF/Office
  double_extension,    // "invoice.pdf.exe", "x.scr.xz"
  type_mismatch,       // declared type, extension and detected type disagree
  archive_with_executable,
};

struct limits {
  std::uint64_t max_message_size = 50ull * 1024 * 1024;   // raw bytes; larger is held whole
  int max_mime_depth = 32;
  int max_parts = 1000;
  std::uint64_t max_header_size = 1024ull * 1024;         // one header block, bytes
  std::uint64_t max_decoded_output = 16ull * 1024 * 1024;  // text written to the output body
  std::uint64_t max_html_size = 8ull * 1024 * 1024;        // one HTML part before conversion
  std::chrono::milliseconds max_processing_time{30'000};
};

// One rule over removed parts; the first rule that matches decides. Empty lists match anything.
struct removal_rule {
  std::string name;
  std::vector<std::string> detected_types;   // glob on the libmagic MIME type, e.g. "image/*"
  std::vector<std::string> extensions;       // lower-case, without dot, e.g. "exe"
  std::vector<content_flag> flags;           // all listed flags must be set
  std::optional<std::uint64_t> min_size;
  std::optional<std::uint64_t> max_size;
  removed_action action = removed_action::quarantine;
};

struct notice_templates {
  // Placeholders: {verdict_text} {removed_list} {quarantine_id} {contact} {reasons}
  // {from} {subject} {date}. Empty means the built-in text for the language.
  std::string sanitized_ja;
  std::string sanitized_en;
  std::string held_ja;
  std::string held_en;
};

struct policy {
  language notice_language = language::ja;
  output_charset charset = output_charset::utf8;
  body_encoding encoding = body_encoding::automatic;

  bool prefer_html = false;             // multipart/alternative: convert the HTML even if text/plain exists
  bool inline_text_attachments = true;  // text/plain attachments (detected as text) are shown inline
  link_action http_links = link_action::defang;
  link_action mailto_links = link_action::keep;
  link_action tel_links = link_action::keep;
  bool mark_phishing_links = true;      // "text names a different domain than its target" cue

  removed_action default_action = removed_action::quarantine;
  std::vector<removal_rule> rules;
  // Flags that the quarantine tools refuse to release (an executable never crosses by one click).
  std::vector<content_flag> release_forbidden{content_flag::executable};

  std::string contact;      // who to ask for a quarantined part, shown in the notice
  std::string notice_from = "postmaster@localhost";  // From: of a hold notice when the original From is unusable
  notice_templates templates;
  limits limit;
};

}  // namespace mukai::config
