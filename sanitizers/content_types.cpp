// File-type tables for content inspection (see content_types.hpp).
// The lists are the documented contract with mail administrators: change them here only, keep
// them sorted (a static_assert checks it) and mention changes in the release notes.
// Threading: constexpr tables only; nothing is mutable.
#include "sanitizers/content_types.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

namespace mukai::sanitize::inspect_detail {
namespace {

using namespace std::string_view_literals;

template <std::size_t N>
constexpr bool sorted_unique(const std::array<std::string_view, N>& a) {
  for (std::size_t i = 1; i < N; ++i) {
    if (!(a[i - 1] < a[i])) return false;
  }
  return true;
}

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& a, std::string_view key) noexcept {
  return std::binary_search(a.begin(), a.end(), key);
}

// Opened with code execution on a Windows (or macOS/Linux) double click, installers, and disk
// images that mount and hide programs. Based on Outlook's "level 1" blocked list plus modern
// packages (msix, appx), scripts and disk images used by malware campaigns.
constexpr std::array executable_exts{
    "ade"sv,        "adp"sv,        "apk"sv,     "app"sv,    "application"sv, "appref-ms"sv,
    "appx"sv,       "appxbundle"sv, "bash"sv,    "bat"sv,    "chm"sv,         "cmd"sv,
    "com"sv,        "command"sv,    "cpl"sv,     "csh"sv,    "deb"sv,         "diagcab"sv,
    "dll"sv,        "dmg"sv,        "drv"sv,     "exe"sv,    "gadget"sv,      "hlp"sv,
    "hta"sv,        "htc"sv,        "img"sv,     "inf"sv,    "ins"sv,         "iso"sv,
    "isp"sv,        "jar"sv,        "jnlp"sv,    "js"sv,     "jse"sv,         "ksh"sv,
    "lnk"sv,        "mda"sv,        "mde"sv,     "msc"sv,    "msh"sv,         "msh1"sv,
    "msh1xml"sv,    "msh2"sv,       "msh2xml"sv, "mshxml"sv, "msi"sv,         "msix"sv,
    "msixbundle"sv, "msp"sv,        "mst"sv,     "msu"sv,    "ocx"sv,         "pif"sv,
    "pkg"sv,        "pl"sv,         "ps1"sv,     "ps1xml"sv, "ps2"sv,         "ps2xml"sv,
    "psc1"sv,       "psc2"sv,       "psd1"sv,    "psdm1"sv,  "psm1"sv,        "py"sv,
    "pyc"sv,        "pyo"sv,        "pyw"sv,     "pyz"sv,    "pyzw"sv,        "rb"sv,
    "reg"sv,        "rpm"sv,        "scf"sv,     "scr"sv,    "sct"sv,         "settingcontent-ms"sv,
    "sh"sv,         "shb"sv,        "shs"sv,     "sys"sv,    "url"sv,         "vb"sv,
    "vbe"sv,        "vbp"sv,        "vbs"sv,     "vhd"sv,    "vhdx"sv,        "website"sv,
    "ws"sv,         "wsb"sv,        "wsc"sv,     "wsf"sv,    "wsh"sv,         "xbap"sv,
    "xll"sv,        "xnk"sv,        "zsh"sv,
};
static_assert(sorted_unique(executable_exts));

constexpr std::array archive_exts{
    "7z"sv,  "ace"sv, "arj"sv, "bz2"sv,  "bzip2"sv, "cab"sv, "cpio"sv, "gz"sv,   "gzip"sv, "lha"sv,
    "lz"sv,  "lz4"sv, "lzh"sv, "lzma"sv, "rar"sv,   "sit"sv, "sitx"sv, "tar"sv,  "tbz"sv,  "tbz2"sv,
    "tgz"sv, "tlz"sv, "txz"sv, "tzst"sv, "xz"sv,    "z"sv,   "zip"sv,  "zipx"sv, "zst"sv,
};
static_assert(sorted_unique(archive_exts));

constexpr std::array compression_exts{
    "bz2"sv, "bzip2"sv, "gz"sv, "gzip"sv, "lz"sv, "lz4"sv, "lzma"sv, "xz"sv, "z"sv, "zst"sv,
};
static_assert(sorted_unique(compression_exts));

constexpr std::array document_exts{
    "avi"sv,  "bmp"sv, "csv"sv,  "doc"sv, "docm"sv, "docx"sv, "eml"sv,  "gif"sv,  "heic"sv, "htm"sv, "html"sv,
    "hwp"sv,  "ics"sv, "jpeg"sv, "jpg"sv, "jtd"sv,  "mov"sv,  "mp3"sv,  "mp4"sv,  "mpeg"sv, "mpg"sv, "msg"sv,
    "odp"sv,  "ods"sv, "odt"sv,  "pdf"sv, "png"sv,  "ppt"sv,  "pptm"sv, "pptx"sv, "rtf"sv,  "svg"sv, "tif"sv,
    "tiff"sv, "txt"sv, "vcf"sv,  "wav"sv, "webp"sv, "wmv"sv,  "xls"sv,  "xlsm"sv, "xlsx"sv, "xml"sv,
};
static_assert(sorted_unique(document_exts));

constexpr std::array macro_office_exts{
    "docm"sv, "dotm"sv, "potm"sv, "ppam"sv, "ppsm"sv, "pptm"sv, "sldm"sv, "xlam"sv, "xlsm"sv, "xltm"sv,
};
static_assert(sorted_unique(macro_office_exts));

// Extension -> family, for the type-mismatch comparison only (sorted by extension).
constexpr auto ext_families = std::to_array<std::pair<std::string_view, type_family>>({
    {"3g2", type_family::media},      {"3gp", type_family::media},      {"aac", type_family::media},
    {"ai", type_family::pdf},         {"avi", type_family::media},      {"bmp", type_family::image},
    {"csv", type_family::text},       {"dib", type_family::image},      {"doc", type_family::ole_office},
    {"docm", type_family::ooxml},     {"docx", type_family::ooxml},     {"dot", type_family::ole_office},
    {"dotm", type_family::ooxml},     {"dotx", type_family::ooxml},     {"emf", type_family::image},
    {"eml", type_family::message},    {"eot", type_family::font},       {"eps", type_family::postscript},
    {"flac", type_family::media},     {"flv", type_family::media},      {"gif", type_family::image},
    {"heic", type_family::image},     {"heif", type_family::image},     {"htm", type_family::html},
    {"html", type_family::html},      {"ico", type_family::image},      {"ics", type_family::text},
    {"jfif", type_family::image},     {"jpe", type_family::image},      {"jpeg", type_family::image},
    {"jpg", type_family::image},      {"json", type_family::text},      {"jtd", type_family::ole_office},
    {"jtt", type_family::ole_office}, {"log", type_family::text},       {"m4a", type_family::media},
    {"m4v", type_family::media},      {"md", type_family::text},        {"mht", type_family::html},
    {"mhtml", type_family::html},     {"mkv", type_family::media},      {"mov", type_family::media},
    {"mp3", type_family::media},      {"mp4", type_family::media},      {"mpeg", type_family::media},
    {"mpg", type_family::media},      {"msg", type_family::ole_office}, {"odg", type_family::odf},
    {"odp", type_family::odf},        {"ods", type_family::odf},        {"odt", type_family::odf},
    {"oga", type_family::media},      {"ogg", type_family::media},      {"otf", type_family::font},
    {"otp", type_family::odf},        {"ots", type_family::odf},        {"ott", type_family::odf},
    {"pdf", type_family::pdf},        {"png", type_family::image},      {"pot", type_family::ole_office},
    {"potm", type_family::ooxml},     {"potx", type_family::ooxml},     {"ppam", type_family::ooxml},
    {"pps", type_family::ole_office}, {"ppsm", type_family::ooxml},     {"ppsx", type_family::ooxml},
    {"ppt", type_family::ole_office}, {"pptm", type_family::ooxml},     {"pptx", type_family::ooxml},
    {"ps", type_family::postscript},  {"psd", type_family::image},      {"rtf", type_family::rtf},
    {"sldm", type_family::ooxml},     {"sldx", type_family::ooxml},     {"svg", type_family::image},
    {"tif", type_family::image},      {"tiff", type_family::image},     {"tsv", type_family::text},
    {"ttf", type_family::font},       {"txt", type_family::text},       {"vcf", type_family::text},
    {"vsd", type_family::ole_office}, {"vsdx", type_family::ooxml},     {"wav", type_family::media},
    {"webm", type_family::media},     {"webp", type_family::image},     {"wma", type_family::media},
    {"wmf", type_family::image},      {"wmv", type_family::media},      {"woff", type_family::font},
    {"woff2", type_family::font},     {"xla", type_family::ole_office}, {"xlam", type_family::ooxml},
    {"xls", type_family::ole_office}, {"xlsb", type_family::ooxml},     {"xlsm", type_family::ooxml},
    {"xlsx", type_family::ooxml},     {"xlt", type_family::ole_office}, {"xltm", type_family::ooxml},
    {"xltx", type_family::ooxml},     {"xml", type_family::text},       {"yaml", type_family::text},
});

constexpr bool ext_families_sorted() {
  for (std::size_t i = 1; i < ext_families.size(); ++i) {
    if (!(ext_families[i - 1].first < ext_families[i].first)) return false;
  }
  return true;
}
static_assert(ext_families_sorted());

// libmagic (5.44) and common declared types for programs. Scripts are listed because libmagic
// only names them when a shebang or a language marker is present, which is exactly the case
// where a double click may run them.
constexpr std::array executable_mimes{
    "application/hta"sv,
    "application/java-archive"sv,
    "application/javascript"sv,
    "application/vnd.android.package-archive"sv,
    "application/vnd.microsoft.portable-executable"sv,
    "application/vnd.ms-htmlhelp"sv,
    "application/x-apple-diskimage"sv,
    "application/x-bat"sv,
    "application/x-bytecode.python"sv,
    "application/x-dosdriver"sv,
    "application/x-dosexec"sv,
    "application/x-elf"sv,
    "application/x-executable"sv,
    "application/x-installshield"sv,
    "application/x-iso9660-image"sv,
    "application/x-java-applet"sv,
    "application/x-java-archive"sv,
    "application/x-javascript"sv,
    "application/x-lx-executable"sv,
    "application/x-mach-binary"sv,
    "application/x-ms-application"sv,
    "application/x-ms-installer"sv,
    "application/x-ms-ne-executable"sv,
    "application/x-ms-shortcut"sv,
    "application/x-ms-w3-executable"sv,
    "application/x-ms-w4-executable"sv,
    "application/x-msdos-program"sv,
    "application/x-msdownload"sv,
    "application/x-msi"sv,
    "application/x-perl"sv,
    "application/x-pie-executable"sv,
    "application/x-python-code"sv,
    "application/x-sh"sv,
    "application/x-sharedlib"sv,
    "application/x-shellscript"sv,
    "application/x-virtualbox-vhd"sv,
    "text/javascript"sv,
    "text/vbscript"sv,
    "text/x-awk"sv,
    "text/x-execline"sv,
    "text/x-gawk"sv,
    "text/x-lua"sv,
    "text/x-ms-regedit"sv,
    "text/x-ms-scf"sv,
    "text/x-msdos-batch"sv,
    "text/x-nawk"sv,
    "text/x-perl"sv,
    "text/x-php"sv,
    "text/x-python"sv,
    "text/x-ruby"sv,
    "text/x-script.python"sv,
    "text/x-shellscript"sv,
    "text/x-tcl"sv,
    "text/x-vbscript"sv,
};
static_assert(sorted_unique(executable_mimes));

constexpr std::array archive_mimes{
    "application/gzip"sv,
    "application/vnd.ms-cab-compressed"sv,
    "application/vnd.rar"sv,
    "application/x-7z-compressed"sv,
    "application/x-ace-compressed"sv,
    "application/x-arj"sv,
    "application/x-bzip"sv,
    "application/x-bzip2"sv,
    "application/x-compress"sv,
    "application/x-compressed"sv,
    "application/x-cpio"sv,
    "application/x-gtar"sv,
    "application/x-gzip"sv,
    "application/x-lz4"sv,
    "application/x-lzh-compressed"sv,
    "application/x-lzip"sv,
    "application/x-lzma"sv,
    "application/x-rar"sv,
    "application/x-rar-compressed"sv,
    "application/x-stuffit"sv,
    "application/x-tar"sv,
    "application/x-ustar"sv,
    "application/x-xz"sv,
    "application/x-zip"sv,
    "application/x-zip-compressed"sv,
    "application/zip"sv,
    "application/zstd"sv,
};
static_assert(sorted_unique(archive_mimes));

constexpr std::array ole_mimes{
    "application/cdfv2"sv,
    "application/cdfv2-corrupt"sv,
    "application/encrypted"sv,
    "application/excel"sv,
    "application/msexcel"sv,
    "application/mspowerpoint"sv,
    "application/msword"sv,
    "application/vnd.ms-excel"sv,
    "application/vnd.ms-office"sv,
    "application/vnd.ms-outlook"sv,
    "application/vnd.ms-powerpoint"sv,
    "application/vnd.ms-project"sv,
    "application/vnd.ms-publisher"sv,
    "application/vnd.visio"sv,
    "application/x-cdf"sv,
    "application/x-ichitaro4"sv,
    "application/x-ichitaro5"sv,
    "application/x-ichitaro6"sv,
    "application/x-msexcel"sv,
    "application/x-mspowerpoint"sv,
    "application/x-msword"sv,
    "application/x-ole-storage"sv,
};
static_assert(sorted_unique(ole_mimes));

// Declared types that carry no claim: the sender's client did not know either.
constexpr std::array unknown_mimes{
    "application/binary"sv,         "application/download"sv,
    "application/force-download"sv, "application/octet-stream"sv,
    "application/unknown"sv,        "application/x-download"sv,
    "application/x-empty"sv,        "application/x-unknown"sv,
    "binary/octet-stream"sv,        "inode/x-empty"sv,
};
static_assert(sorted_unique(unknown_mimes));

bool starts_with(std::string_view s, std::string_view p) noexcept { return s.substr(0, p.size()) == p; }

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Trailing characters Windows drops from a file name when it saves it.
std::string_view strip_windows_trailing(std::string_view s) noexcept {
  while (!s.empty() && (s.back() == '.' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

std::string_view trim_spaces(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// U+202A..U+202E (embeddings/overrides) and U+2066..U+2069 (isolates) in UTF-8.
bool has_bidi_control(std::string_view s) noexcept {
  for (std::size_t i = 0; i + 2 < s.size(); ++i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    const auto b2 = static_cast<unsigned char>(s[i + 2]);
    if (b0 != 0xE2) continue;
    if (b1 == 0x80 && b2 >= 0xAA && b2 <= 0xAE) return true;
    if (b1 == 0x81 && b2 >= 0xA6 && b2 <= 0xA9) return true;
  }
  return false;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string to_lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

bool is_executable_extension(std::string_view ext) noexcept { return contains(executable_exts, ext); }
bool is_archive_extension(std::string_view ext) noexcept { return contains(archive_exts, ext); }
bool is_compression_extension(std::string_view ext) noexcept { return contains(compression_exts, ext); }
bool is_document_extension(std::string_view ext) noexcept { return contains(document_exts, ext); }
bool is_macro_office_extension(std::string_view ext) noexcept { return contains(macro_office_exts, ext); }

type_family family_of_extension(std::string_view ext) noexcept {
  if (ext.empty()) return type_family::unknown;
  if (is_executable_extension(ext)) return type_family::executable;
  if (is_archive_extension(ext)) return type_family::archive;
  const auto it = std::lower_bound(ext_families.begin(), ext_families.end(), ext,
                                   [](const auto& entry, std::string_view key) { return entry.first < key; });
  if (it != ext_families.end() && it->first == ext) return it->second;
  return type_family::unknown;
}

bool is_executable_mime(std::string_view mime) noexcept { return contains(executable_mimes, mime); }

type_family family_of_mime(std::string_view mime) noexcept {
  if (mime.empty() || contains(unknown_mimes, mime)) return type_family::unknown;
  if (is_executable_mime(mime)) return type_family::executable;
  if (contains(archive_mimes, mime)) return type_family::archive;
  if (contains(ole_mimes, mime)) return type_family::ole_office;
  if (starts_with(mime, "application/vnd.openxmlformats-officedocument.") ||
      (starts_with(mime, "application/vnd.ms-") && mime.find("macroenabled") != std::string_view::npos)) {
    return type_family::ooxml;
  }
  if (starts_with(mime, "application/vnd.oasis.opendocument.")) return type_family::odf;
  if (mime == "application/pdf" || mime == "application/x-pdf" || mime == "application/acrobat") {
    return type_family::pdf;
  }
  if (mime == "application/postscript" || mime == "application/eps" || mime == "image/x-eps") {
    return type_family::postscript;
  }
  if (mime == "text/rtf" || mime == "application/rtf" || mime == "application/x-rtf") return type_family::rtf;
  if (mime == "text/html" || mime == "application/xhtml+xml" || mime == "multipart/related" ||
      mime == "message/rfc822-html") {
    return type_family::html;
  }
  if (starts_with(mime, "message/")) return type_family::message;
  if (starts_with(mime, "text/") || mime == "application/json" || mime == "application/xml" ||
      mime == "application/csv" || mime == "application/ics") {
    return type_family::text;
  }
  if (starts_with(mime, "image/")) return type_family::image;
  if (starts_with(mime, "audio/") || starts_with(mime, "video/")) return type_family::media;
  if (starts_with(mime, "font/") || starts_with(mime, "application/font-") ||
      mime == "application/vnd.ms-fontobject" || mime == "application/vnd.ms-opentype" ||
      mime == "application/x-font-ttf") {
    return type_family::font;
  }
  return type_family::unknown;
}

std::string normalize_mime(std::string_view declared) {
  const auto semi = declared.find(';');
  if (semi != std::string_view::npos) declared = declared.substr(0, semi);
  declared = trim_spaces(declared);
  while (!declared.empty() && (declared.back() == '\r' || declared.back() == '\n')) declared.remove_suffix(1);
  return to_lower_ascii(trim_spaces(declared));
}

bool claim_compatible(type_family claimed, type_family actual, std::string_view actual_mime) noexcept {
  using f = type_family;
  if (claimed == f::unknown || actual == f::unknown || claimed == actual) return true;
  // Calling something a program is no disguise, whatever it really is.
  if (claimed == f::executable) return true;
  switch (actual) {
    case f::executable:
      return false;
    case f::archive:
      // libmagic names an OOXML/ODF file whose first entry is not [Content_Types].xml or
      // "mimetype" a plain zip.
      return (claimed == f::ooxml || claimed == f::odf) && actual_mime == "application/zip";
    case f::ooxml:
      // "x.doc" that is really docx opens fine; zip-based Office is a zip.
      return claimed == f::ole_office || claimed == f::archive;
    case f::odf:
      return claimed == f::archive;
    case f::ole_office:
      // Password-protected OOXML is an OLE2 file with an EncryptedPackage stream; Word opens
      // a .doc saved over a .rtf name.
      return claimed == f::ooxml || claimed == f::rtf;
    case f::rtf:
      // Word happily saves RTF under .doc; RTF is readable text.
      return claimed == f::ole_office || claimed == f::ooxml || claimed == f::odf || claimed == f::text;
    case f::html:
      // "Excel" exports from business systems are HTML named .xls; HTML in a .txt is shown as text.
      return claimed == f::text || claimed == f::message || claimed == f::ole_office || claimed == f::ooxml;
    case f::pdf:
      return claimed == f::postscript;
    case f::postscript:
      return claimed == f::pdf;
    default:
      // Passive content (text, images, media, fonts, messages) contradicts nothing dangerous.
      return true;
  }
}

std::string_view base_name(std::string_view path) noexcept {
  const auto nul = path.find('\0');
  if (nul != std::string_view::npos) path = path.substr(0, nul);
  const auto slash = path.find_last_of("/\\");
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  return path;
}

std::vector<std::string> filename_extensions(std::string_view filename) {
  std::vector<std::string> exts;
  std::string_view name = strip_windows_trailing(base_name(filename));
  auto dot = name.find('.');
  while (dot != std::string_view::npos) {
    const auto next = name.find('.', dot + 1);
    const auto seg =
        name.substr(dot + 1, next == std::string_view::npos ? std::string_view::npos : next - dot - 1);
    exts.push_back(to_lower_ascii(trim_spaces(seg)));
    dot = next;
  }
  return exts;
}

bool has_double_extension(std::string_view filename) {
  if (has_bidi_control(base_name(filename))) return true;
  const auto exts = filename_extensions(filename);
  if (exts.size() < 2) return false;
  const auto& last = exts[exts.size() - 1];
  const auto& prev = exts[exts.size() - 2];
  if ((is_executable_extension(last) || is_archive_extension(last)) && is_document_extension(prev))
    return true;
  return is_compression_extension(last) && is_executable_extension(prev);
}

bool has_disguised_executable(std::string_view filename) {
  const auto exts = filename_extensions(filename);
  if (exts.size() < 2) return false;
  const auto& last = exts[exts.size() - 1];
  const auto& prev = exts[exts.size() - 2];
  return (is_executable_extension(last) && is_document_extension(prev)) ||
         (is_compression_extension(last) && is_executable_extension(prev));
}

}  // namespace mukai::sanitize::inspect_detail
