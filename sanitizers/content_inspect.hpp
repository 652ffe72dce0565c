// Content inspection of a removed (non-text) part: hash, libmagic type, extension, and the
// content flags that removal rules and the quarantine release check match on.
// Invariants: never throws for any input bytes; time and memory are bounded by
// inspect_limits (libmagic reads at most magic_bytes, archive walks stop at the entry, size,
// ratio and depth caps and then say so in `complete`/`warnings`). Flags describe the part and
// everything found inside it: a zip holding a macro .doc is macro-office.
// Threading: reentrant. libmagic cookies are per thread (loaded lazily on first use and
// closed at thread exit); libarchive handles are per call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/policy.hpp"

namespace mukai::sanitize {

// Lower-case hex SHA-256 (GLib GChecksum).
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

// libmagic MIME type (lower-case, no parameters) of the first inspect_limits{}.magic_bytes
// bytes; "application/octet-stream" if libmagic fails or cannot be loaded.
[[nodiscard]] std::string detect_mime_type(std::string_view bytes);

// The same question for a part declared text/plain, about five times cheaper: libmagic's binary
// signatures, then (when none matches) its character-encoding test alone ("text/plain" or
// "application/octet-stream"). Skipped are libmagic's text rules, which cost about 1 ms per
// 5 KB of text in regular expressions and only name kinds of text (a script, source code,
// text/html, BinHex): for a part that is shown as text anyway they decide nothing. Binary
// formats, the reason to look at all, are still found; BinHex and other encodings inside text
// are cut out by cut_encoded_blobs.
[[nodiscard]] std::string detect_declared_text_type(std::string_view bytes);

// Lower-case last extension of the base name, without the dot; "" if none. Trailing dots and
// spaces are ignored because Windows strips them when saving ("a.exe. " is exe), the name is
// cut at a NUL, and a leading dot counts as Windows counts it (".exe" is exe).
[[nodiscard]] std::string file_extension(std::string_view filename);

// Bounds for one inspect_content call (all nested archives share them). The engine may map
// these from config::limits; the defaults suit a worker with a 1 GiB memory cap.
struct inspect_limits {
  std::size_t magic_bytes = 1024 * 1024;                    // bytes libmagic may look at
  int max_archive_depth = 2;                                // archives opened inside the outer one
  std::size_t max_archive_entries = 10000;                  // entries visited, all levels
  std::size_t max_listed_entries = 100;                     // names kept in archive_entries
  std::uint64_t max_unpacked_total = 256ull * 1024 * 1024;  // decompressed bytes, all levels
  std::uint64_t max_ratio = 100;                            // unpacked / part size ...
  std::uint64_t ratio_floor = 16ull * 1024 * 1024;          // ... checked only above this
  std::size_t max_nested_size = 32ull * 1024 * 1024;        // one inner archive/document kept in memory
  std::size_t pdf_window = 1024 * 1024;                     // head and tail searched for /Encrypt
};

struct content_facts {
  std::string detected_type;                // libmagic, lower-case
  std::string extension;                    // file_extension(filename)
  std::vector<config::content_flag> flags;  // sorted by enum value, no duplicates
  // Names inside an archive (first max_listed_entries), UTF-8 with control characters replaced,
  // nested ones as "inner.zip > name". Not display-safe beyond that (bidi characters are kept
  // so the notice can show what was sent; escape when rendering).
  std::vector<std::string> archive_entries;
  std::size_t archive_entry_count = 0;  // entries seen in total (>= archive_entries.size())
  // False when something could not be looked into: a limit was hit, an archive or entry was
  // unreadable/unsupported, or content was encrypted. Missing flags then prove nothing, so the
  // quarantine release check must treat the part as unknown.
  bool complete = true;
  // Machine-readable tokens for report.warnings, one per kind: "archive-unreadable",
  // "archive-entry-unreadable", "archive-encrypted-content", "archive-depth-limit",
  // "archive-entry-limit", "archive-size-limit", "archive-ratio-limit", "archive-nested-size-limit".
  std::vector<std::string> warnings;

  [[nodiscard]] bool has(config::content_flag f) const;
};

// Flags:
//  executable         libmagic says program/installer/script/shortcut/disk image, or the extension
//                     is in the executable list (content_types.cpp), or OLE2 with an MSI CLSID.
//  macro-office       vbaProject.bin or XLM macro sheets in OOXML, VBA storages in OLE2, Basic/
//                     Scripts in ODF, or a macro-enabled extension (docm xlsm pptm dotm xltm potm
//                     ppsm ppam xlam sldm); also for such documents inside archives.
//  encrypted-archive  an encrypted entry (ZIP, RAR, 7z) or an archive whose headers are encrypted.
//  encrypted-document PDF with /Encrypt (head/tail window), OLE2 EncryptedPackage (protected
//                     OOXML), encrypted ODF manifest; also inside archives.
//  double-extension   "x.pdf.exe", "x.jpg.zip", "x.scr.xz", a bidi override in the name; also for
//                     archive entry names.
//  type-mismatch      declared type, extension and detected type disagree in a way that hides
//                     active content (see content_types.hpp claim_compatible).
//  archive-with-executable  an entry with an executable extension, an executable hidden by a
//                     double extension, or PE/ELF/Mach-O/LNK/MSI content, at any depth.
[[nodiscard]] content_facts inspect_content(std::string_view bytes, std::string_view filename,
                                            std::string_view declared_type,
                                            const inspect_limits& limits = {});

// "executable", "macro-office", "encrypted-archive", "encrypted-document", "double-extension",
// "type-mismatch", "archive-with-executable".
[[nodiscard]] std::string to_string(config::content_flag f);
[[nodiscard]] std::optional<config::content_flag> content_flag_from_string(std::string_view s);

}  // namespace mukai::sanitize
