// File-type vocabulary for content inspection: which extensions and MIME types are executable,
// archives, compressors, documents, macro-enabled Office, and the coarse "family" each type
// belongs to so that declared, named and detected types can be compared without flagging
// harmless aliases (image/jpg vs image/jpeg, docx sniffed as a plain zip, ...).
// Invariants: every list is a sorted constexpr table of lower-case ASCII (checked at compile
// time); inputs are compared case-insensitively and never allocate for a lookup.
// Threading: pure functions over immutable tables; safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mukai::sanitize::inspect_detail {

// Coarse kinds used only to decide whether two type claims "disagree meaningfully".
enum class type_family {
  unknown,  // octet-stream, empty, unmapped: no opinion
  text,     // plain text, csv, json, xml, calendar, vcard
  html,     // html, xhtml, mht
  image,
  media,  // audio and video (players and mailers mix them up: ogg, mp4, 3gp)
  font,
  message,  // message/rfc822, .eml
  pdf,
  postscript,
  rtf,
  ole_office,  // OLE2 compound files: doc/xls/ppt/msg, Ichitaro, Visio, Publisher
  ooxml,       // zip-based Office (docx, xlsm, ...)
  odf,         // OpenDocument
  archive,     // zip, rar, 7z, tar, gzip, cab, ...
  executable,  // programs, installers, scripts, shortcuts, disk images
};

// Extension tables (argument: lower-case extension without dot, as file_extension returns).
[[nodiscard]] bool is_executable_extension(std::string_view ext) noexcept;
[[nodiscard]] bool is_archive_extension(std::string_view ext) noexcept;
// Single-stream compressors whose payload keeps the inner name: "x.scr.xz" is really "x.scr".
[[nodiscard]] bool is_compression_extension(std::string_view ext) noexcept;
// What a lure pretends to be: documents, images, audio/video ("invoice.pdf.exe").
[[nodiscard]] bool is_document_extension(std::string_view ext) noexcept;
[[nodiscard]] bool is_macro_office_extension(std::string_view ext) noexcept;

[[nodiscard]] type_family family_of_extension(std::string_view ext) noexcept;
// mime: a bare lower-case type/subtype (see normalize_mime).
[[nodiscard]] type_family family_of_mime(std::string_view mime) noexcept;
// libmagic answers that mean "a program runs when this is opened".
[[nodiscard]] bool is_executable_mime(std::string_view mime) noexcept;

// "Text/Plain; charset=x" -> "text/plain"; "" stays "".
[[nodiscard]] std::string normalize_mime(std::string_view declared);

// Can content of family `actual` honestly carry a claim of family `claimed`? Passive actual
// content never contradicts (a .pdf that is really text is broken, not dangerous); active
// content (programs, archives, Office, PDF, HTML) must match its claim up to known aliases.
[[nodiscard]] bool claim_compatible(type_family claimed, type_family actual,
                                    std::string_view actual_mime) noexcept;

// The part of a path after the last '/' or '\\', cut at the first NUL (what a client saves).
[[nodiscard]] std::string_view base_name(std::string_view path) noexcept;
// Every extension of the base name in order, lower-case, each trimmed of spaces, after the
// trailing dots and spaces Windows strips: "a.PDF   .exe. " -> {"pdf", "exe"}.
[[nodiscard]] std::vector<std::string> filename_extensions(std::string_view filename);
// True if the name disguises its real extension: a document/image extension followed by an
// executable or archive one, an executable one under a single-stream compressor, or a
// bidirectional-override character that makes "exe.pdf" display for "fdp.exe".
[[nodiscard]] bool has_double_extension(std::string_view filename);
// The double extension hides a program (as opposed to e.g. "photo.jpg.zip").
[[nodiscard]] bool has_disguised_executable(std::string_view filename);

[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;
[[nodiscard]] std::string to_lower_ascii(std::string_view s);

}  // namespace mukai::sanitize::inspect_detail
