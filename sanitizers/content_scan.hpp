// Byte-level scanners behind inspect_content: magic-number sniffing, the OLE2 directory scan
// (VBA storages, EncryptedPackage, MSI class id), the PDF /Encrypt search, and the bounded
// libarchive walk over (nested) archives from memory.
// Invariants: no scanner reads outside its input or allocates more than its limits allow;
// the archive walk never runs an external program (filters that would are not enabled), never
// touches the file system (no mtree, no disk readers), and counts every decompressed byte it
// asks for against the shared budget, so a zip/gzip bomb ends in a warning, not a hang.
// Threading: content_scanner is a per-call object; the free functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/policy.hpp"
#include "sanitizers/content_inspect.hpp"

namespace mukai::sanitize::inspect_detail {

enum class sniffed {
  none,
  pe,
  elf,
  macho,
  lnk,  // programs
  ole,
  pdf,  // documents we look into
  zip,
  rar,
  sevenz,
  cab,
  lha,
  tar,
  cpio,  // multi-entry archives
  gzip,
  bzip2,
  xz,
  zstd,
  lz4,
  lzip,
  compress,  // single-stream compressors
};

// What the first bytes say (looks at most 1 KiB, except tar's "ustar" at 257).
[[nodiscard]] sniffed sniff(std::string_view bytes) noexcept;
[[nodiscard]] bool is_program(sniffed s) noexcept;
[[nodiscard]] bool is_archive(sniffed s) noexcept;  // multi-entry archive or compressor
[[nodiscard]] bool is_compressor(sniffed s) noexcept;

struct ole_findings {
  bool vba = false;                // "VBA" / "_VBA_PROJECT_CUR" storage or "_VBA_PROJECT" stream
  bool encrypted_package = false;  // "EncryptedPackage" stream: password-protected OOXML
  bool installer = false;          // root CLSID of an MSI package, patch or transform
};
// Scans every 128-byte-aligned slot after the 512-byte header for a well-formed directory
// entry (name length, NUL terminator, object type, colour). Directory sectors always sit on
// such slots, so no FAT chain is followed and a damaged FAT cannot hide or loop anything.
[[nodiscard]] ole_findings scan_ole(std::string_view bytes) noexcept;

// "/Encrypt" as a whole PDF name within the first and last `window` bytes (trailers and
// cross-reference stream dictionaries live there; /EncryptMetadata does not count).
[[nodiscard]] bool pdf_is_encrypted(std::string_view bytes, std::size_t window) noexcept;

class flag_set {
 public:
  void set(config::content_flag f) noexcept { bits_ |= bit(f); }
  [[nodiscard]] bool has(config::content_flag f) const noexcept { return (bits_ & bit(f)) != 0; }
  [[nodiscard]] std::vector<config::content_flag> to_vector() const;

 private:
  static std::uint32_t bit(config::content_flag f) noexcept { return 1u << static_cast<unsigned>(f); }
  std::uint32_t bits_ = 0;
};

// What a zip-shaped container is, which decides the internal names that mean macros/encryption.
enum class container_kind { archive, ooxml, odf };

class content_scanner {
 public:
  enum class walk_result { not_archive, walked, failed };

  content_scanner(const inspect_limits& limits, std::uint64_t part_size) noexcept
      : limits_(limits), part_size_(part_size) {}

  // Walk `bytes` as an archive named `name` (used to name a single compressed stream).
  // list_names: record entry names (archives, not the parts of an Office document).
  walk_result walk_archive(std::string_view bytes, std::string_view name, container_kind kind,
                           bool list_names);

  // OLE2/PDF checks of a document found inside an archive (flags land on the outer part).
  void scan_nested_document(std::string_view bytes);

  flag_set flags;
  std::vector<std::string> listed;  // entry names for the notice
  std::size_t listed_total = 0;     // listable entries seen (listed may be shorter)
  bool complete = true;
  std::vector<std::string> warnings;

  void note_incomplete(std::string_view token);

 private:
  walk_result walk(std::string_view bytes, std::string_view name, container_kind kind, int depth,
                   const std::string& prefix, bool list_names);
  [[nodiscard]] bool account(std::size_t produced);  // false: budget exhausted, stop everything
  void check_entry_name(const std::string& name, container_kind kind);

  const inspect_limits& limits_;
  std::uint64_t part_size_;
  std::uint64_t unpacked_ = 0;
  std::size_t entries_ = 0;
  bool stopped_ = false;
};

}  // namespace mukai::sanitize::inspect_detail
