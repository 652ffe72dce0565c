// Content inspection of removed parts (see content_inspect.hpp): libmagic per thread, SHA-256
// through GLib, and the flag decisions built on content_types/content_scan.
// Why one thread_local libmagic cookie: a magic_t is not thread-safe and loading the database
// costs milliseconds, so each worker thread loads it once, on first use, and closes it when
// the thread ends. One cookie, not one per flag set: each loaded cookie maps the 8 MB database
// and a scan touches most of it, so every extra cookie was up to 8 MB more resident memory;
// the flags are switched per call with magic_setflags (a field store). libmagic never decompresses here (no MAGIC_COMPRESS) and its parameters
// are lowered so a hostile part costs bounded CPU.
#include "sanitizers/content_inspect.hpp"

#include <glib.h>
#include <magic.h>
// SHA256_Init/Update/Final are deprecated since OpenSSL 3.0 in favour of EVP but kept in all 3.x
// releases; see sha256_hex for why the engine uses them.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cstdlib>

#include "sanitizers/content_scan.hpp"
#include "sanitizers/content_types.hpp"

namespace mukai::sanitize {
namespace insp = inspect_detail;
namespace {

using config::content_flag;
using insp::type_family;

constexpr const char* fallback_type = "application/octet-stream";

class magic_cookie {
 public:
  magic_cookie() = default;
  magic_cookie(const magic_cookie&) = delete;
  magic_cookie& operator=(const magic_cookie&) = delete;
  ~magic_cookie() {
    if (cookie_) magic_close(cookie_);
  }

  // nullptr if the database cannot be loaded; retried on the next call (a transient EMFILE
  // must not leave the thread without detection for good).
  magic_t get() noexcept {
    if (!cookie_) cookie_ = open_cookie();
    return cookie_;
  }

 private:
  static void set(magic_t m, int param, std::size_t value) noexcept { magic_setparam(m, param, &value); }

  static magic_t open_cookie() noexcept {
    magic_t m = magic_open(MAGIC_MIME_TYPE);
    if (!m) return nullptr;
    if (magic_load(m, nullptr) != 0) {
      magic_close(m);
      return nullptr;
    }
    // Defaults are generous (50 indirections, 32768 ELF sections, 8 KiB regex windows).
    set(m, MAGIC_PARAM_INDIR_MAX, 15);
    set(m, MAGIC_PARAM_NAME_MAX, 30);
    set(m, MAGIC_PARAM_ELF_PHNUM_MAX, 256);
    set(m, MAGIC_PARAM_ELF_SHNUM_MAX, 1024);
    set(m, MAGIC_PARAM_ELF_NOTES_MAX, 64);
    set(m, MAGIC_PARAM_REGEX_MAX, 4096);
#ifdef MAGIC_PARAM_ENCODING_MAX
    set(m, MAGIC_PARAM_ENCODING_MAX, 64 * 1024);
#endif
    return m;
  }

  magic_t cookie_ = nullptr;
};

std::string detect_with(int flags, std::string_view bytes, std::size_t max_bytes) {
  static thread_local magic_cookie cookie;
  magic_t m = cookie.get();
  if (!m || magic_setflags(m, flags) != 0) return fallback_type;
  const std::size_t n = std::min(bytes.size(), max_bytes);
  std::size_t limit = std::max<std::size_t>(max_bytes, 1);
  magic_setparam(m, MAGIC_PARAM_BYTES_MAX, &limit);
  static const char empty = 0;
  const char* answer = magic_buffer(m, n == 0 ? &empty : bytes.data(), n);
  if (!answer) return fallback_type;
  std::string type = insp::normalize_mime(answer);
  if (type.empty() || type.find('/') == std::string::npos) return fallback_type;
  return type;
}

std::string detect_limited(std::string_view bytes, std::size_t max_bytes) {
  return detect_with(MAGIC_MIME_TYPE, bytes, max_bytes);
}

bool is_container_family(type_family f) noexcept {
  return f == type_family::archive || f == type_family::ooxml || f == type_family::odf;
}

// Declared type, extension and detected type disagree in a way that hides active content.
// The detected type is the truth when libmagic knows it; otherwise the extension is (it is
// what Windows acts on) and only the declared type is checked against it.
bool claims_disagree(type_family declared, type_family named, type_family detected,
                     std::string_view detected_type) {
  if (detected != type_family::unknown) {
    return !insp::claim_compatible(declared, detected, detected_type) ||
           !insp::claim_compatible(named, detected, detected_type);
  }
  return !insp::claim_compatible(declared, named, "");
}

constexpr std::array<std::pair<content_flag, std::string_view>, 7> flag_names{{
    {content_flag::executable, "executable"},
    {content_flag::macro_office, "macro-office"},
    {content_flag::encrypted_archive, "encrypted-archive"},
    {content_flag::encrypted_document, "encrypted-document"},
    {content_flag::double_extension, "double-extension"},
    {content_flag::type_mismatch, "type-mismatch"},
    {content_flag::archive_with_executable, "archive-with-executable"},
}};

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  // libcrypto's SHA-256 (SHA extensions / AVX2 where the CPU has them): about 5x GLib's portable
  // GChecksum, which took a tenth of the engine's time on large text bodies. The low-level
  // functions, not EVP: the same assembly, but EVP's first use initialises the provider machinery
  // (configuration, algorithm tables), 2 MiB more resident memory in every worker (measured:
  // +2.3 MiB vs +0.4 MiB), the margin of the engine's memory target, and each EVP call fetches
  // the algorithm again (0.87 vs 0.60 us for 1 KB). Only the digest: sanitizers/ still never
  // touches TLS or sockets (tests/check-layering).
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256_CTX ctx;
  if (SHA256_Init(&ctx) != 1 || SHA256_Update(&ctx, bytes.data(), bytes.size()) != 1 || SHA256_Final(md, &ctx) != 1)
    std::abort();
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex(64, '0');
  for (unsigned int i = 0; i < 32; ++i) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 0x0F];
  }
  return hex;
}

std::string detect_mime_type(std::string_view bytes) {
  return detect_limited(bytes, inspect_limits{}.magic_bytes);
}

std::string detect_declared_text_type(std::string_view bytes) {
  // Binary signatures first (libmagic without its text rules), then libmagic's encoding test alone.
  const std::size_t max = inspect_limits{}.magic_bytes;
  std::string type = detect_with(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_TEXT, bytes, max);
  if (type != fallback_type) return type;
  return detect_with(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_SOFT, bytes, max);
}

std::string file_extension(std::string_view filename) {
  auto exts = insp::filename_extensions(filename);
  return exts.empty() ? std::string() : std::move(exts.back());
}

bool content_facts::has(config::content_flag f) const {
  return std::find(flags.begin(), flags.end(), f) != flags.end();
}

content_facts inspect_content(std::string_view bytes, std::string_view filename,
                              std::string_view declared_type, const inspect_limits& limits) {
  content_facts facts;
  facts.detected_type = detect_limited(bytes, limits.magic_bytes);
  facts.extension = file_extension(filename);
  const std::string declared = insp::normalize_mime(declared_type);

  const type_family detected_family = insp::family_of_mime(facts.detected_type);
  const type_family named_family = insp::family_of_extension(facts.extension);
  const type_family declared_family = insp::family_of_mime(declared);
  const insp::sniffed head = insp::sniff(bytes);

  insp::content_scanner scanner(limits, bytes.size());
  insp::flag_set& flags = scanner.flags;

  // A failed libmagic must not make a program look harmless: the magic numbers decide too.
  if (insp::is_executable_mime(facts.detected_type) || insp::is_executable_extension(facts.extension) ||
      insp::is_program(head)) {
    flags.set(content_flag::executable);
  }
  if (insp::is_macro_office_extension(facts.extension)) flags.set(content_flag::macro_office);
  if (insp::has_double_extension(filename)) flags.set(content_flag::double_extension);

  if (head == insp::sniffed::ole) {
    const auto ole = insp::scan_ole(bytes);
    if (ole.vba) flags.set(content_flag::macro_office);
    if (ole.encrypted_package) flags.set(content_flag::encrypted_document);
    if (ole.installer) flags.set(content_flag::executable);
  }
  if (head == insp::sniffed::pdf || detected_family == type_family::pdf) {
    if (insp::pdf_is_encrypted(bytes, limits.pdf_window)) flags.set(content_flag::encrypted_document);
  }

  // Open it as an archive when the content says so, or when the name/declared type says so
  // and libmagic has no better idea (jar/apk/iso are already executables: not walked).
  const bool archive_by_content = insp::is_archive(head) || is_container_family(detected_family);
  const bool archive_by_claim = is_container_family(named_family) || is_container_family(declared_family);
  if (archive_by_content || (archive_by_claim && detected_family != type_family::executable)) {
    const auto kind = (detected_family == type_family::ooxml || named_family == type_family::ooxml)
                          ? insp::container_kind::ooxml
                      : (detected_family == type_family::odf || named_family == type_family::odf)
                          ? insp::container_kind::odf
                          : insp::container_kind::archive;
    const auto result =
        scanner.walk_archive(bytes, filename, kind, /*list_names=*/kind == insp::container_kind::archive);
    if (result == insp::content_scanner::walk_result::not_archive && archive_by_content) {
      scanner.note_incomplete("archive-unreadable");
    }
  }

  if (claims_disagree(declared_family, named_family, detected_family, facts.detected_type)) {
    flags.set(content_flag::type_mismatch);
  }

  facts.flags = flags.to_vector();
  facts.archive_entries = std::move(scanner.listed);
  facts.archive_entry_count = scanner.listed_total;
  facts.complete = scanner.complete;
  facts.warnings = std::move(scanner.warnings);
  return facts;
}

std::string to_string(config::content_flag f) {
  for (const auto& [flag, name] : flag_names) {
    if (flag == f) return std::string(name);
  }
  return "unknown";
}

std::optional<config::content_flag> content_flag_from_string(std::string_view s) {
  for (const auto& [flag, name] : flag_names) {
    if (insp::iequals(name, s)) return flag;
  }
  return std::nullopt;
}

}  // namespace mukai::sanitize
