// Sniffers, the OLE2/PDF scanners and the bounded libarchive walk (see content_scan.hpp).
// Security choices, in one place:
//  * Formats: zip, 7z, rar, rar5, tar, cpio, cab, lha, iso9660 (and raw behind a recognised
//    compressor). Not mtree (its reader opens paths named inside the archive), not xar/warc.
//  * Filters: only those libarchive implements in-process. archive_read_support_filter_*
//    answers ARCHIVE_WARN when it would fork an external program; we probe each once on a
//    throw-away handle and never register such a filter on a real one.
//  * Every data byte is pulled with archive_read_data_block and counted: nothing is left for
//    libarchive to skip (a skip decompresses uncounted). Encrypted entries are skipped, which
//    cannot decompress anything.
//  * ZIP central directories are counted before libarchive parses them, because its
//    seekable reader keeps every central entry in memory.
// Threading: the filter probe is a function-local static (initialised once, thread-safe);
// everything else lives in the per-call content_scanner.
#include "sanitizers/content_scan.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <glib.h>

#include <algorithm>
#include <array>
#include <memory>

#include "sanitizers/content_types.hpp"

namespace mukai::sanitize::inspect_detail {
namespace {

using config::content_flag;

constexpr std::size_t sniff_bytes = 4096;      // enough for every signature we look at
constexpr std::size_t max_listed_name = 1024;  // one listed name with its "outer > " prefixes, UTF-8

bool at(std::string_view b, std::size_t off, std::string_view sig) noexcept {
  return b.size() >= off + sig.size() && b.substr(off, sig.size()) == sig;
}

struct archive_free {
  void operator()(archive* a) const noexcept { archive_read_free(a); }
};
using archive_ptr = std::unique_ptr<archive, archive_free>;

using support_fn = int (*)(archive*);

// Decompression filters libarchive runs in-process on this build (probed once per process).
const std::vector<support_fn>& in_process_filters() {
  static const std::vector<support_fn> filters = [] {
    const std::array<support_fn, 8> candidates{
        archive_read_support_filter_gzip, archive_read_support_filter_bzip2,
        archive_read_support_filter_xz,   archive_read_support_filter_lzma,
        archive_read_support_filter_lzip, archive_read_support_filter_zstd,
        archive_read_support_filter_lz4,  archive_read_support_filter_compress,
    };
    std::vector<support_fn> ok;
    for (const support_fn fn : candidates) {
      archive_ptr probe(archive_read_new());
      if (probe && fn(probe.get()) == ARCHIVE_OK) ok.push_back(fn);
    }
    return ok;
  }();
  return filters;
}

archive_ptr new_reader(bool allow_raw) {
  archive_ptr a(archive_read_new());
  if (!a) return a;
  archive* r = a.get();
  for (const support_fn fn :
       {archive_read_support_format_zip, archive_read_support_format_7zip, archive_read_support_format_rar,
        archive_read_support_format_rar5, archive_read_support_format_tar, archive_read_support_format_cpio,
        archive_read_support_format_cab, archive_read_support_format_lha,
        archive_read_support_format_iso9660}) {
    fn(r);
  }
  // raw turns "any bytes" into one entry; only offered when a compressor was recognised, and
  // a raw result without a decompression filter is rejected by the caller.
  if (allow_raw) archive_read_support_format_raw(r);
  for (const support_fn fn : in_process_filters()) fn(r);
  return a;
}

bool is_raw_format(archive* a) noexcept {
  return (archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_RAW;
}

// Only libarchive's seekable ZIP reader moves to the next entry without decompressing the rest
// of the current one; elsewhere (streamed ZIP without an end record, solid 7z/RAR, tar.gz) a
// skip after an error would inflate uncounted or read garbage, so the walk stops there instead.
// The seekable reader is the one chosen when an end-of-central-directory record sits in the
// last 64 KiB + 22 bytes.
bool can_skip_broken_entry(archive* a, std::string_view bytes) noexcept {
  if ((archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) != ARCHIVE_FORMAT_ZIP) return false;
  constexpr std::size_t eocd_window = 65535 + 22;
  const std::string_view tail = bytes.size() > eocd_window ? bytes.substr(bytes.size() - eocd_window) : bytes;
  return tail.find("PK\x05\x06") != std::string_view::npos;
}

bool mentions_encryption(archive* a) {
  const char* msg = archive_error_string(a);
  if (!msg) return false;
  const std::string lower = to_lower_ascii(msg);
  return lower.find("encrypt") != std::string::npos || lower.find("passphrase") != std::string::npos ||
         lower.find("password") != std::string::npos;
}

// Upper bound of the entries libarchive's seekable ZIP reader would load: each central
// directory record starts with PK\1\2. Stops counting past `cap`.
std::size_t zip_central_records(std::string_view b, std::size_t cap) {
  std::size_t n = 0;
  for (auto pos = b.find("PK\x01\x02"); pos != std::string_view::npos; pos = b.find("PK\x01\x02", pos + 4)) {
    if (++n > cap) break;
  }
  return n;
}

// C0/C1 controls and DEL become '?': names end up in a notice and a JSON report.
std::string replace_controls(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size());
  for (std::size_t i = 0; i < utf8.size(); ++i) {
    const auto c = static_cast<unsigned char>(utf8[i]);
    if (c < 0x20 || c == 0x7F) {
      out.push_back('?');
    } else if (c == 0xC2 && i + 1 < utf8.size() && static_cast<unsigned char>(utf8[i + 1]) < 0xA0) {
      out.push_back('?');  // U+0080..U+009F
      ++i;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

// Entry names: UTF-8 as stored (zip UTF-8 flag, 7z, rar5), else the legacy bytes tried as
// CP932 (Japanese Windows zips carry Shift_JIS names without a flag), else made valid.
std::string entry_name_utf8(archive_entry* e) {
  if (const char* u = archive_entry_pathname_utf8(e); u && g_utf8_validate(u, -1, nullptr)) {
    return replace_controls(u);
  }
  const char* m = archive_entry_pathname(e);
  if (!m) return {};
  const std::string_view raw(m);
  if (g_utf8_validate(raw.data(), static_cast<gssize>(raw.size()), nullptr)) return replace_controls(raw);
  gsize written = 0;
  if (gchar* conv = g_convert(raw.data(), static_cast<gssize>(raw.size()), "UTF-8", "CP932", nullptr,
                              &written, nullptr)) {
    std::string s(conv, written);
    g_free(conv);
    if (g_utf8_validate(s.data(), static_cast<gssize>(s.size()), nullptr)) return replace_controls(s);
  }
  gchar* valid = g_utf8_make_valid(raw.data(), static_cast<gssize>(raw.size()));
  std::string s(valid ? valid : "");
  g_free(valid);
  return replace_controls(s);
}

// Cuts at a UTF-8 boundary so a listed name never ends in half a character.
std::string truncate_utf8(std::string s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  s.resize(cut);
  s += "...";
  return s;
}

// The name a single compressed stream had before compression: "x.scr.xz" -> "x.scr".
std::string inner_stream_name(std::string_view outer) {
  std::string_view base = base_name(outer);
  while (!base.empty() && (base.back() == '.' || base.back() == ' ')) base.remove_suffix(1);
  const auto dot = base.rfind('.');
  if (dot != std::string_view::npos && dot > 0 &&
      is_compression_extension(to_lower_ascii(base.substr(dot + 1)))) {
    base = base.substr(0, dot);
  }
  return std::string(base);
}

bool starts_with(std::string_view s, std::string_view p) noexcept { return s.substr(0, p.size()) == p; }

std::uint16_t le16(const unsigned char* p) noexcept { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

constexpr std::array<config::content_flag, 7> all_flags{
    content_flag::executable,
    content_flag::macro_office,
    content_flag::encrypted_archive,
    content_flag::encrypted_document,
    content_flag::double_extension,
    content_flag::type_mismatch,
    content_flag::archive_with_executable,
};

}  // namespace

sniffed sniff(std::string_view b) noexcept {
  if (at(b, 0, "MZ")) return sniffed::pe;
  if (at(b, 0,
         "\x7f"
         "ELF"))
    return sniffed::elf;
  if (at(b, 0, "\xfe\xed\xfa\xce") || at(b, 0, "\xfe\xed\xfa\xcf") || at(b, 0, "\xce\xfa\xed\xfe") ||
      at(b, 0, "\xcf\xfa\xed\xfe") || at(b, 0, "\xca\xfe\xba\xbe")) {
    return sniffed::macho;  // 0xCAFEBABE is also a Java class: executable either way
  }
  if (at(b, 0, std::string_view("\x4c\x00\x00\x00\x01\x14\x02\x00", 8))) return sniffed::lnk;
  if (at(b, 0, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")) return sniffed::ole;
  if (at(b, 0, "PK\x03\x04") || at(b, 0, "PK\x05\x06") || at(b, 0, "PK\x07\x08")) return sniffed::zip;
  if (at(b, 0, "Rar!\x1a\x07")) return sniffed::rar;
  if (at(b, 0, "7z\xbc\xaf\x27\x1c")) return sniffed::sevenz;
  if (at(b, 0, "MSCF")) return sniffed::cab;
  if ((at(b, 2, "-lh") || at(b, 2, "-lz")) && at(b, 6, "-")) return sniffed::lha;
  if (at(b, 257, "ustar")) return sniffed::tar;
  if (at(b, 0, "070701") || at(b, 0, "070702") || at(b, 0, "070707") || at(b, 0, "\xc7\x71") ||
      at(b, 0, "\x71\xc7")) {
    return sniffed::cpio;
  }
  if (at(b, 0, "\x1f\x8b")) return sniffed::gzip;
  if (at(b, 0, "BZh")) return sniffed::bzip2;
  if (at(b, 0,
         std::string_view("\xfd"
                          "7zXZ\x00",
                          6)))
    return sniffed::xz;
  if (at(b, 0, "\x28\xb5\x2f\xfd")) return sniffed::zstd;
  if (at(b, 0, "\x04\x22\x4d\x18")) return sniffed::lz4;
  if (at(b, 0, "LZIP")) return sniffed::lzip;
  if (at(b, 0, "\x1f\x9d")) return sniffed::compress;
  // PDF readers accept junk before the header; Acrobat looks within the first 1 KiB.
  if (b.substr(0, 1024).find("%PDF-") != std::string_view::npos) return sniffed::pdf;
  return sniffed::none;
}

bool is_program(sniffed s) noexcept {
  return s == sniffed::pe || s == sniffed::elf || s == sniffed::macho || s == sniffed::lnk;
}

bool is_compressor(sniffed s) noexcept {
  switch (s) {
    case sniffed::gzip:
    case sniffed::bzip2:
    case sniffed::xz:
    case sniffed::zstd:
    case sniffed::lz4:
    case sniffed::lzip:
    case sniffed::compress:
      return true;
    default:
      return false;
  }
}

bool is_archive(sniffed s) noexcept {
  switch (s) {
    case sniffed::zip:
    case sniffed::rar:
    case sniffed::sevenz:
    case sniffed::cab:
    case sniffed::lha:
    case sniffed::tar:
    case sniffed::cpio:
      return true;
    default:
      return is_compressor(s);
  }
}

ole_findings scan_ole(std::string_view bytes) noexcept {
  ole_findings found;
  if (!at(bytes, 0, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")) return found;
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  for (std::size_t off = 512; off + 128 <= bytes.size(); off += 128) {
    const unsigned char* e = data + off;
    const std::uint16_t name_len = le16(e + 64);  // bytes, including the UTF-16 NUL
    const unsigned char type = e[66];
    const unsigned char colour = e[67];
    if (name_len < 4 || name_len > 64 || name_len % 2 != 0) continue;
    if ((type != 1 && type != 2 && type != 5) || colour > 1) continue;
    const std::size_t chars = name_len / 2 - 1;
    if (e[2 * chars] != 0 || e[2 * chars + 1] != 0) continue;
    // Every name we look for is ASCII; anything else cannot match.
    std::array<char, 32> name{};
    bool ascii = true;
    for (std::size_t i = 0; i < chars; ++i) {
      if (e[2 * i + 1] != 0 || e[2 * i] == 0 || e[2 * i] >= 0x80) {
        ascii = false;
        break;
      }
      name[i] = static_cast<char>(e[2 * i]);
    }
    if (!ascii) continue;
    const std::string_view n(name.data(), chars);
    if (type == 5) {
      // Root entry CLSID {000C108x-0000-0000-C000-000000000046}: x = 4 package, 6 patch, 2 transform.
      static constexpr unsigned char tail[12] = {0x0C, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0, 0, 0, 0, 0};
      const unsigned char* clsid = e + 80;
      if ((clsid[0] == 0x84 || clsid[0] == 0x86 || clsid[0] == 0x82) && clsid[1] == 0x10 &&
          std::equal(tail, tail + 12, clsid + 2) && clsid[14] == 0x00 && clsid[15] == 0x46) {
        found.installer = true;
      }
      continue;
    }
    if ((type == 1 && (iequals(n, "VBA") || iequals(n, "_VBA_PROJECT_CUR"))) ||
        (type == 2 && iequals(n, "_VBA_PROJECT"))) {
      found.vba = true;
    } else if (type == 2 && iequals(n, "EncryptedPackage")) {
      found.encrypted_package = true;
    }
  }
  return found;
}

bool pdf_is_encrypted(std::string_view bytes, std::size_t window) noexcept {
  const auto search = [](std::string_view region) {
    constexpr std::string_view key = "/Encrypt";
    for (auto pos = region.find(key); pos != std::string_view::npos; pos = region.find(key, pos + 1)) {
      const auto after = pos + key.size();
      if (after >= region.size()) return true;
      // A PDF name ends at white space or a delimiter; "/EncryptMetadata" is another name.
      constexpr std::string_view enders{"\0\t\n\f\r ()<>[]{}/%", 17};
      if (enders.find(region[after]) != std::string_view::npos) return true;
    }
    return false;
  };
  if (window == 0) return false;
  if (bytes.size() <= 2 * window) return search(bytes);
  return search(bytes.substr(0, window)) || search(bytes.substr(bytes.size() - window));
}

std::vector<config::content_flag> flag_set::to_vector() const {
  std::vector<config::content_flag> out;
  for (const auto f : all_flags) {
    if (has(f)) out.push_back(f);
  }
  return out;
}

void content_scanner::note_incomplete(std::string_view token) {
  complete = false;
  if (std::find(warnings.begin(), warnings.end(), token) == warnings.end()) warnings.emplace_back(token);
}

bool content_scanner::account(std::size_t produced) {
  unpacked_ += produced;
  if (unpacked_ > limits_.max_unpacked_total) {
    note_incomplete("archive-size-limit");
    stopped_ = true;
    return false;
  }
  const std::uint64_t size = std::max<std::uint64_t>(part_size_, 1);
  const bool over_ratio = limits_.max_ratio != 0 && size <= UINT64_MAX / limits_.max_ratio &&
                          unpacked_ > size * limits_.max_ratio;
  if (unpacked_ > limits_.ratio_floor && over_ratio) {
    note_incomplete("archive-ratio-limit");
    stopped_ = true;
    return false;
  }
  return true;
}

void content_scanner::check_entry_name(const std::string& name, container_kind kind) {
  const std::string ext = to_lower_ascii(file_extension(name));
  if (is_executable_extension(ext)) flags.set(content_flag::archive_with_executable);
  if (has_double_extension(name)) {
    flags.set(content_flag::double_extension);
    if (has_disguised_executable(name)) flags.set(content_flag::archive_with_executable);
  }
  if (is_macro_office_extension(ext)) flags.set(content_flag::macro_office);
  const std::string_view base = base_name(name);
  if (iequals(base, "vbaProject.bin")) flags.set(content_flag::macro_office);
  if (kind == container_kind::ooxml && to_lower_ascii(name).find("macrosheets/") != std::string::npos) {
    flags.set(content_flag::macro_office);  // Excel 4.0 (XLM) macro sheets
  }
  if (kind == container_kind::odf) {
    // StarBasic modules live in Basic/<library>/<module>.xml next to the library index files;
    // Scripts/ holds Python/JavaScript/BeanShell macros.
    const bool basic_module =
        starts_with(name, "Basic/") && !iequals(base, "script-lc.xml") && !iequals(base, "script-lb.xml");
    if (basic_module || starts_with(name, "Scripts/")) flags.set(content_flag::macro_office);
  }
}

void content_scanner::scan_nested_document(std::string_view bytes) {
  const sniffed s = sniff(bytes);
  if (s == sniffed::ole) {
    const ole_findings ole = scan_ole(bytes);
    if (ole.vba) flags.set(content_flag::macro_office);
    if (ole.encrypted_package) flags.set(content_flag::encrypted_document);
    if (ole.installer) flags.set(content_flag::archive_with_executable);
  } else if (s == sniffed::pdf) {
    if (pdf_is_encrypted(bytes, limits_.pdf_window)) flags.set(content_flag::encrypted_document);
  }
}

content_scanner::walk_result content_scanner::walk_archive(std::string_view bytes, std::string_view name,
                                                           container_kind kind, bool list_names) {
  return walk(bytes, name, kind, 0, std::string(), list_names);
}

content_scanner::walk_result content_scanner::walk(std::string_view bytes, std::string_view name,
                                                   container_kind kind, int depth, const std::string& prefix,
                                                   bool list_names) {
  if (stopped_) return walk_result::failed;
  if (bytes.empty()) return walk_result::not_archive;
  if (zip_central_records(bytes, limits_.max_archive_entries) > limits_.max_archive_entries) {
    note_incomplete("archive-entry-limit");
    return walk_result::failed;
  }
  archive_ptr a = new_reader(is_compressor(sniff(bytes)));
  if (!a) {
    note_incomplete("archive-unreadable");
    return walk_result::failed;
  }
  archive* ar = a.get();

  // Before the first header nothing is known: an error then means "not an archive we read",
  // unless libarchive says the headers are encrypted.
  const auto open_failed = [&]() {
    if (mentions_encryption(ar)) {
      flags.set(content_flag::encrypted_archive);
      note_incomplete("archive-encrypted-content");
      return walk_result::walked;
    }
    return walk_result::not_archive;
  };
  const auto note_error = [&]() {
    if (mentions_encryption(ar)) {
      flags.set(content_flag::encrypted_archive);
      note_incomplete("archive-encrypted-content");
    } else {
      note_incomplete("archive-entry-unreadable");
    }
  };

  if (archive_read_open_memory(ar, bytes.data(), bytes.size()) != ARCHIVE_OK) return open_failed();

  bool first = true;
  while (!stopped_) {
    archive_entry* entry = nullptr;
    const int r = archive_read_next_header(ar, &entry);
    if (r == ARCHIVE_EOF) break;
    if (r == ARCHIVE_FATAL || entry == nullptr) {
      if (first) return open_failed();
      note_error();
      break;
    }
    if (first) {
      first = false;
      if (is_raw_format(ar) && archive_filter_count(ar) <= 1) return walk_result::not_archive;
    }
    if (++entries_ > limits_.max_archive_entries) {
      note_incomplete("archive-entry-limit");
      stopped_ = true;
      break;
    }
    if (r < ARCHIVE_WARN) {  // ARCHIVE_FAILED/RETRY: this header is unusable, the next may be fine
      note_error();
      if (!can_skip_broken_entry(ar, bytes)) break;
      continue;
    }

    const std::string entry_name = is_raw_format(ar) ? inner_stream_name(name) : entry_name_utf8(entry);
    if (archive_entry_filetype(entry) == AE_IFDIR) continue;
    check_entry_name(entry_name, kind);
    if (list_names && !entry_name.empty()) {
      ++listed_total;
      if (listed.size() < limits_.max_listed_entries)
        listed.push_back(truncate_utf8(prefix + entry_name, max_listed_name));
    }
    if (archive_entry_is_encrypted(entry)) {
      flags.set(content_flag::encrypted_archive);
      note_incomplete("archive-encrypted-content");
      if (archive_read_data_skip(ar) == ARCHIVE_FATAL) break;
      continue;
    }

    // Keep the data only while it may be a container worth opening (decided on the first
    // sniff_bytes) and only up to max_nested_size; everything else is counted and dropped.
    const std::string ext = file_extension(entry_name);
    const type_family ext_family = family_of_extension(ext);
    const bool manifest = kind == container_kind::odf && entry_name == "META-INF/manifest.xml";
    const bool container_name = manifest || ext_family == type_family::archive ||
                                ext_family == type_family::ooxml || ext_family == type_family::odf ||
                                ext_family == type_family::ole_office || ext_family == type_family::pdf;
    std::string kept;
    bool keeping = true;
    bool decided = false;
    bool truncated = false;
    bool broken = false;
    bool fatal = false;
    sniffed inner = sniffed::none;
    const auto decide = [&](std::string_view head) {
      decided = true;
      inner = sniff(head);
      keeping = !truncated &&
                (container_name || inner == sniffed::ole || inner == sniffed::pdf || is_archive(inner));
      if (!keeping) {
        kept.clear();
        kept.shrink_to_fit();
      }
    };
    for (;;) {
      const void* buf = nullptr;
      std::size_t size = 0;
      la_int64_t offset = 0;
      const int dr = archive_read_data_block(ar, &buf, &size, &offset);
      if (dr == ARCHIVE_EOF) break;
      if (dr < ARCHIVE_WARN) {
        note_error();
        broken = true;
        fatal = dr == ARCHIVE_FATAL;
        break;
      }
      if (!account(size)) break;
      if (size == 0 || buf == nullptr) continue;
      const std::string_view block(static_cast<const char*>(buf), size);
      const std::size_t pos = offset < 0 ? kept.size() : static_cast<std::size_t>(offset);
      // A first block that already holds the signature decides without copying it: stored
      // entries come straight from the input in one large block.
      if (!decided && kept.empty() && pos == 0 && size >= sniff_bytes) decide(block);
      if (keeping) {
        // Sparse entries report offsets; holes are zero-filled, still within the cap.
        if (pos > limits_.max_nested_size || size > limits_.max_nested_size - pos) {
          truncated = true;
          if (decided) {
            keeping = false;
            kept.clear();
            kept.shrink_to_fit();
          }
        } else {
          kept.resize(std::max(kept.size(), pos), '\0');
          kept.resize(pos);
          kept.append(block);
        }
      }
      if (!decided && (kept.size() >= sniff_bytes || truncated)) decide(kept);
    }
    if (!decided) decide(kept);
    if (is_program(inner)) flags.set(content_flag::archive_with_executable);
    if (stopped_ || fatal) break;
    if (broken) {
      if (!can_skip_broken_entry(ar, bytes)) break;
      continue;
    }
    if (truncated &&
        (container_name || is_archive(inner) || inner == sniffed::ole || inner == sniffed::pdf)) {
      note_incomplete("archive-nested-size-limit");
      continue;
    }
    if (!keeping) continue;
    if (manifest) {
      if (kept.find("encryption-data") != std::string::npos) flags.set(content_flag::encrypted_document);
      continue;
    }
    if (inner == sniffed::ole || inner == sniffed::pdf) {
      scan_nested_document(kept);
      continue;
    }
    if (!is_archive(inner) && ext_family != type_family::archive && ext_family != type_family::ooxml &&
        ext_family != type_family::odf) {
      continue;
    }
    if (depth >= limits_.max_archive_depth) {
      note_incomplete("archive-depth-limit");
      continue;
    }
    const container_kind nested_kind = ext_family == type_family::ooxml ? container_kind::ooxml
                                       : ext_family == type_family::odf ? container_kind::odf
                                                                        : container_kind::archive;
    const bool nested_list = list_names && nested_kind == container_kind::archive;
    const auto result =
        walk(kept, entry_name, nested_kind, depth + 1, prefix + entry_name + " > ", nested_list);
    if (result == walk_result::not_archive && is_archive(inner)) note_incomplete("archive-unreadable");
  }
  if (archive_read_has_encrypted_entries(ar) > 0) {
    flags.set(content_flag::encrypted_archive);
    note_incomplete("archive-encrypted-content");
  }
  return walk_result::walked;
}

}  // namespace mukai::sanitize::inspect_detail
