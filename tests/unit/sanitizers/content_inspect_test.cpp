// Tests for sanitizers/content_inspect: hashing, libmagic, extensions, every content flag, and
// the archive walk's limits. Inputs: the ClamAV test files and rspamd samples from the shared
// corpus, encrypted 7z/RAR fixtures (tests/data/content_inspect, see make_fixtures.py), and
// archives/OLE files built here with libarchive's writer or by hand.
#include "sanitizers/content_inspect.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <doctest/doctest.h>
#include <glib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace mukai::sanitize;
using mukai::config::content_flag;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string clamav(const std::string& name) {
  return read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/attachments-clamav/" + name);
}

std::string fixture(const std::string& name) {
  return read_file(std::string(MUKAI_TEST_DATA_DIR) + "/content_inspect/" + name);
}

// The base64 body of the part whose headers contain `marker`, decoded (no MIME parser needed
// for these simple single-level samples).
std::string attachment_from_eml(const std::string& eml_name, const std::string& marker) {
  const std::string eml = read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/" + eml_name);
  auto pos = eml.find(marker);
  REQUIRE(pos != std::string::npos);
  pos = eml.find("\n\n", pos);
  REQUIRE(pos != std::string::npos);
  pos += 2;
  std::string b64;
  while (pos < eml.size() && eml.compare(pos, 2, "--") != 0) {
    auto nl = eml.find('\n', pos);
    if (nl == std::string::npos) nl = eml.size();
    b64.append(eml, pos, nl - pos);
    pos = nl + 1;
  }
  gsize n = 0;
  guchar* raw = g_base64_decode(b64.c_str(), &n);
  std::string out(reinterpret_cast<char*>(raw), n);
  g_free(raw);
  return out;
}

struct file_spec {
  std::string name;
  std::string data;
};

la_ssize_t append_cb(archive*, void* ctx, const void* buf, size_t n) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// An archive in memory via libarchive's writer. Returns "" if the writer rejects `options`
// (e.g. an encryption this libarchive build lacks).
std::string make_archive(int (*format)(archive*), const std::vector<file_spec>& files,
                         int (*filter)(archive*) = nullptr, const char* options = nullptr,
                         const char* passphrase = nullptr) {
  archive* a = archive_write_new();
  format(a);
  if (filter) filter(a);
  archive_write_set_bytes_in_last_block(a, 1);
  if (options && archive_write_set_options(a, options) != ARCHIVE_OK) {
    archive_write_free(a);
    return {};
  }
  if (passphrase) archive_write_set_passphrase(a, passphrase);
  std::string out;
  REQUIRE(archive_write_open(a, &out, nullptr, append_cb, nullptr) == ARCHIVE_OK);
  for (const auto& f : files) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname_utf8(e, f.name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(f.data.size()));
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    for (std::size_t off = 0; off < f.data.size(); off += 1 << 20) {
      const std::size_t n = std::min<std::size_t>(1 << 20, f.data.size() - off);
      REQUIRE(archive_write_data(a, f.data.data() + off, n) == static_cast<la_ssize_t>(n));
    }
    archive_entry_free(e);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

std::string make_zip(const std::vector<file_spec>& files) {
  return make_archive(archive_write_set_format_zip, files);
}

std::uint32_t crc32(std::string_view data) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (const char ch : data) {
    crc ^= static_cast<unsigned char>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
  }
  return ~crc;
}

void put16(std::string& s, unsigned v) {
  s.push_back(static_cast<char>(v & 0xFF));
  s.push_back(static_cast<char>((v >> 8) & 0xFF));
}
void put32(std::string& s, std::uint32_t v) {
  put16(s, v & 0xFFFF);
  put16(s, v >> 16);
}

// A stored ZIP written by hand, names as raw bytes with no UTF-8 flag (how Japanese Windows
// Explorer writes Shift_JIS names).
std::string stored_zip_raw_names(const std::vector<file_spec>& files) {
  std::string out, central;
  for (const auto& f : files) {
    const auto offset = static_cast<std::uint32_t>(out.size());
    const std::uint32_t crc = crc32(f.data);
    const auto size = static_cast<std::uint32_t>(f.data.size());
    put32(out, 0x04034b50);
    put16(out, 10);
    put16(out, 0);
    put16(out, 0);
    put16(out, 0);
    put16(out, 0x21);
    put32(out, crc);
    put32(out, size);
    put32(out, size);
    put16(out, static_cast<unsigned>(f.name.size()));
    put16(out, 0);
    out += f.name;
    out += f.data;
    put32(central, 0x02014b50);
    put16(central, 20);
    put16(central, 10);
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put16(central, 0x21);
    put32(central, crc);
    put32(central, size);
    put32(central, size);
    put16(central, static_cast<unsigned>(f.name.size()));
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put32(central, 0);
    put32(central, offset);
    central += f.name;
  }
  const auto cd_offset = static_cast<std::uint32_t>(out.size());
  out += central;
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, static_cast<unsigned>(files.size()));
  put16(out, static_cast<unsigned>(files.size()));
  put32(out, static_cast<std::uint32_t>(central.size()));
  put32(out, cd_offset);
  put16(out, 0);
  return out;
}

struct ole_entry {
  std::string name;
  unsigned char type;  // 1 storage, 2 stream, 5 root
};

// A minimal OLE2 compound file: header, one FAT sector, one directory sector. Enough for the
// directory scan (and for libmagic to call it a CDF file).
std::string make_ole(const std::vector<ole_entry>& entries, bool msi_clsid = false) {
  std::string f(512 * 3, '\0');
  const std::string magic = "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1";
  f.replace(0, 8, magic);
  auto set16 = [&](std::size_t at, unsigned v) {
    f[at] = static_cast<char>(v & 0xFF);
    f[at + 1] = static_cast<char>(v >> 8);
  };
  auto set32 = [&](std::size_t at, std::uint32_t v) {
    set16(at, v & 0xFFFF);
    set16(at + 2, v >> 16);
  };
  set16(24, 0x3E);
  set16(26, 3);
  set16(28, 0xFFFE);
  set16(30, 9);
  set16(32, 6);
  set32(44, 1);           // FAT sectors
  set32(48, 1);           // first directory sector
  set32(56, 4096);        // mini stream cutoff
  set32(60, 0xFFFFFFFE);  // no mini FAT
  set32(68, 0xFFFFFFFE);  // no DIFAT sectors
  for (std::size_t i = 0; i < 109; ++i) set32(76 + 4 * i, i == 0 ? 0 : 0xFFFFFFFF);
  for (std::size_t i = 0; i < 128; ++i)
    set32(512 + 4 * i, i == 0 ? 0xFFFFFFFD : i == 1 ? 0xFFFFFFFE : 0xFFFFFFFF);
  std::vector<ole_entry> all{{"Root Entry", 5}};
  all.insert(all.end(), entries.begin(), entries.end());
  REQUIRE(all.size() <= 4);
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::size_t e = 1024 + 128 * i;
    for (std::size_t c = 0; c < all[i].name.size(); ++c) f[e + 2 * c] = all[i].name[c];
    set16(e + 64, static_cast<unsigned>(2 * (all[i].name.size() + 1)));
    f[e + 66] = static_cast<char>(all[i].type);
    f[e + 67] = 1;
    set32(e + 68, 0xFFFFFFFF);
    set32(e + 72, 0xFFFFFFFF);
    set32(e + 76, i == 0 && all.size() > 1 ? 1 : 0xFFFFFFFF);
    set32(e + 116, 0xFFFFFFFE);
    if (i == 0 && msi_clsid) {
      const unsigned char clsid[16] = {0x84, 0x10, 0x0C, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46};
      for (std::size_t k = 0; k < 16; ++k) f[e + 80 + k] = static_cast<char>(clsid[k]);
    }
  }
  return f;
}

bool has_warning(const content_facts& f, const std::string& token) {
  return std::find(f.warnings.begin(), f.warnings.end(), token) != f.warnings.end();
}

const std::string pe_stub = std::string("MZ\x90\x00\x03\x00\x00\x00", 8) + std::string(120, '\0');

// Incompressible filler (a fixed LCG, so runs are reproducible).
std::string noise(std::size_t n) {
  std::string out(n, '\0');
  std::uint32_t x = 12345;
  for (auto& c : out) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return out;
}

}  // namespace

TEST_CASE("sha256_hex is lower-case hex of the bytes") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string eicar = clamav("eicar.com");
  CHECK(eicar.size() == 68);
  CHECK(sha256_hex(eicar) == "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f");
}

TEST_CASE("detect_mime_type names common types and never fails") {
  const std::string exe = detect_mime_type(clamav("clam.exe"));
  CHECK((exe == "application/vnd.microsoft.portable-executable" || exe == "application/x-dosexec"));
  CHECK(detect_mime_type(clamav("clam.pdf")) == "application/pdf");
  CHECK(detect_mime_type(clamav("clam.zip")) == "application/zip");
  CHECK(detect_mime_type("plain words, nothing else\n") == "text/plain");
  CHECK_FALSE(detect_mime_type("").empty());
  const std::string cdf = detect_mime_type(clamav("clam.ole.doc"));
  CHECK(cdf == "application/msword");
  for (const char c : cdf) CHECK_FALSE((c >= 'A' && c <= 'Z'));
}

TEST_CASE("detect_mime_type keeps one libmagic cookie per thread") {
  const std::string pdf = clamav("clam.pdf");
  const std::string zip = clamav("clam.zip");
  std::vector<std::thread> threads;
  std::array<int, 4> wrong{};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        if (detect_mime_type(pdf) != "application/pdf") ++wrong[t];
        if (detect_mime_type(zip) != "application/zip") ++wrong[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const int w : wrong) CHECK(w == 0);
}

TEST_CASE("file_extension follows what Windows would do with the name") {
  CHECK(file_extension("report.PDF") == "pdf");
  CHECK(file_extension("a.exe.") == "exe");
  CHECK(file_extension("a.exe . .  ") == "exe");
  CHECK(file_extension("archive.tar.gz") == "gz");
  CHECK(file_extension("noext") == "");
  CHECK(file_extension("") == "");
  CHECK(file_extension("dir.d/file") == "");
  CHECK(file_extension("C:\\Users\\x\\Invoice.Js") == "js");
  CHECK(file_extension(".exe") == "exe");
  CHECK(file_extension(std::string("a.exe\0.txt", 10)) == "exe");  // a client stops at the NUL
  CHECK(file_extension("請求書.XLSX") == "xlsx");
}

TEST_CASE("content flags have stable names both ways") {
  const std::vector<std::pair<content_flag, std::string>> names{
      {content_flag::executable, "executable"},
      {content_flag::macro_office, "macro-office"},
      {content_flag::encrypted_archive, "encrypted-archive"},
      {content_flag::encrypted_document, "encrypted-document"},
      {content_flag::double_extension, "double-extension"},
      {content_flag::type_mismatch, "type-mismatch"},
      {content_flag::archive_with_executable, "archive-with-executable"},
  };
  for (const auto& [flag, name] : names) {
    CHECK(to_string(flag) == name);
    REQUIRE(content_flag_from_string(name).has_value());
    CHECK(*content_flag_from_string(name) == flag);
  }
  CHECK_FALSE(content_flag_from_string("").has_value());
  CHECK_FALSE(content_flag_from_string("executables").has_value());
}

TEST_CASE("executables by magic and by extension") {
  SUBCASE("PE under its own name") {
    const auto f = inspect_content(clamav("clam.exe"), "clam.exe", "application/octet-stream");
    CHECK(f.has(content_flag::executable));
    CHECK_FALSE(f.has(content_flag::type_mismatch));
    CHECK(f.complete);
  }
  SUBCASE("packed PE files") {
    for (const char* name : {"clam-upx.exe", "clam-nsis.exe", "clam_ISmsi_ext.exe"}) {
      CHECK(inspect_content(clamav(name), "x.bin", "").has(content_flag::executable));
    }
  }
  SUBCASE("EICAR text named .com is executable by extension") {
    const auto f = inspect_content(clamav("eicar.com"), "eicar.com", "application/octet-stream");
    CHECK(f.detected_type == "text/plain");
    CHECK(f.has(content_flag::executable));
  }
  SUBCASE("compiled HTML help") {
    CHECK(inspect_content(clamav("clam.chm"), "help.chm", "").has(content_flag::executable));
  }
  SUBCASE("extension list") {
    for (const char* name : {"a.scr", "a.js", "a.vbs", "a.hta", "a.lnk", "a.ps1", "a.iso", "a.jar", "a.msi",
                             "a.reg", "a.url", "a.vhdx", "a.cmd", "a.bat"}) {
      CHECK_MESSAGE(inspect_content("hello\n", name, "text/plain").has(content_flag::executable), name);
    }
    for (const char* name : {"a.txt", "a.pdf", "a.docx", "a.jpg", "a.csv", "a.zip"}) {
      CHECK_FALSE_MESSAGE(inspect_content("hello\n", name, "text/plain").has(content_flag::executable), name);
    }
  }
  SUBCASE("ELF and shell scripts by magic") {
    std::string elf =
        "\x7f"
        "ELF\x02\x01\x01";
    elf.resize(64, '\0');
    CHECK(inspect_content(elf, "data", "").has(content_flag::executable));
    CHECK(inspect_content("#!/bin/sh\nrm -rf /tmp/x\n", "notes", "").has(content_flag::executable));
  }
  SUBCASE("MSI by OLE class id") {
    const auto f =
        inspect_content(make_ole({{"SummaryInformation", 2}}, /*msi_clsid=*/true), "setup.dat", "");
    CHECK(f.has(content_flag::executable));
  }
  SUBCASE("plain documents are not executable") {
    for (const char* name : {"clam.pdf", "clam.ole.doc", "clam.ppt", "clam.exe.rtf"}) {
      const auto f = inspect_content(clamav(name), name, "");
      CHECK_MESSAGE(f.flags.empty(), name);
    }
  }
}

TEST_CASE("archives from the ClamAV corpus expose their executables") {
  for (const char* name :
       {"clam.zip", "clam.7z", "clam.cab", "clam.tar.gz", "clam.newc.cpio", "clam.bz2.zip"}) {
    const auto f = inspect_content(clamav(name), name, "application/octet-stream");
    CHECK_MESSAGE(f.has(content_flag::archive_with_executable), name);
    CHECK_FALSE_MESSAGE(f.has(content_flag::executable), name);
    REQUIRE_MESSAGE(f.archive_entries.size() == 1, name);
    CHECK(f.archive_entries[0] == "clam.exe");
    CHECK(f.archive_entry_count == 1);
    CHECK_MESSAGE(f.complete, name);
  }
  SUBCASE("a compressed single file keeps its inner name") {
    const auto f = inspect_content(clamav("clam.exe.bz2"), "clam.exe.bz2", "application/x-bzip2");
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK(f.has(content_flag::double_extension));
    CHECK(f.archive_entries == std::vector<std::string>{"clam.exe"});
  }
  SUBCASE("unsupported formats are reported, not guessed") {
    const auto f = inspect_content(clamav("clam.arj"), "clam.arj", "");
    CHECK_FALSE(f.complete);
    CHECK(has_warning(f, "archive-unreadable"));
  }
  SUBCASE("an unsupported method still shows the entry names") {
    const auto f = inspect_content(clamav("clam.impl.zip"), "clam.impl.zip", "");
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK_FALSE(f.complete);
  }
  SUBCASE("deeply nested archives stop at the depth limit") {
    const auto f = inspect_content(clamav("clam_cache_emax.tgz"), "emax.tgz", "");
    CHECK(has_warning(f, "archive-depth-limit"));
    CHECK_FALSE(f.complete);
  }
}

TEST_CASE("rspamd samples: doubled extensions and encrypted PDF") {
  SUBCASE("fake.pdf.exe inside a zip") {
    const auto f = inspect_content(attachment_from_eml("rspamd__zip-doublebad.eml", "filename=f.zip"),
                                   "f.zip", "application/zip");
    CHECK(f.has(content_flag::double_extension));
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK(f.archive_entries == std::vector<std::string>{"fake.pdf.exe"});
  }
  SUBCASE("fake.exe inside a zip") {
    const auto f =
        inspect_content(attachment_from_eml("rspamd__zip.eml", "filename=f.zip"), "f.zip", "application/zip");
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK_FALSE(f.has(content_flag::double_extension));
  }
  SUBCASE(".scr.xz (really bzip2)") {
    const auto f = inspect_content(attachment_from_eml("rspamd__next2last-doublebad.eml", "filename="),
                                   "файл.scr.xz", "application/octet-stream");
    CHECK(f.has(content_flag::double_extension));
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK(f.archive_entries == std::vector<std::string>{"файл.scr"});
    CHECK_FALSE(f.has(content_flag::type_mismatch));  // xz vs bzip2: both compressors
  }
  SUBCASE("PDF with /Encrypt in the trailer") {
    const auto f =
        inspect_content(attachment_from_eml("rspamd__pdf_encrypted.eml", "filename=\"990777.pdf\""),
                        "990777.pdf", "application/pdf");
    CHECK(f.detected_type == "application/pdf");
    CHECK(f.has(content_flag::encrypted_document));
    CHECK_FALSE(f.has(content_flag::type_mismatch));
  }
  SUBCASE("ClamAV PDF is not encrypted") {
    CHECK_FALSE(inspect_content(clamav("clam.pdf"), "clam.pdf", "application/pdf")
                    .has(content_flag::encrypted_document));
  }
}

TEST_CASE("encrypted PDF detection looks at whole names only") {
  const std::string head = "%PDF-1.6\n1 0 obj\n<< /Type /Catalog >>\nendobj\n";
  CHECK(inspect_content(head + "trailer\n<< /Size 3 /Root 1 0 R /Encrypt 2 0 R >>\n%%EOF\n", "a.pdf", "")
            .has(content_flag::encrypted_document));
  CHECK(inspect_content(head + "trailer\n<</Encrypt<</Filter/Standard>>>>\n%%EOF", "a.pdf", "")
            .has(content_flag::encrypted_document));
  CHECK_FALSE(
      inspect_content(head + "<< /EncryptMetadata false >>\ntrailer\n<< /Root 1 0 R >>\n%%EOF", "a.pdf", "")
          .has(content_flag::encrypted_document));
  // Beyond the head/tail windows nothing is searched (bounded work on huge PDFs).
  inspect_limits small;
  small.pdf_window = 64;
  const std::string middle =
      head + std::string(200, ' ') + "/Encrypt 5 0 R" + std::string(200, ' ') + "%%EOF";
  CHECK_FALSE(inspect_content(middle, "a.pdf", "", small).has(content_flag::encrypted_document));
  CHECK(inspect_content(middle, "a.pdf", "").has(content_flag::encrypted_document));
}

TEST_CASE("macro-enabled Office documents") {
  const std::vector<file_spec> docm{{"[Content_Types].xml", "<Types/>"},
                                    {"word/document.xml", "<w:document/>"},
                                    {"word/vbaProject.bin", make_ole({{"VBA", 1}})}};
  SUBCASE("OOXML with vbaProject.bin, whatever the name") {
    const std::string zip = make_zip(docm);
    CHECK(inspect_content(zip, "report.docx", "").has(content_flag::macro_office));
    const auto f = inspect_content(zip, "report.docm", "");
    CHECK(f.has(content_flag::macro_office));
    CHECK(f.archive_entries.empty());  // parts of a document are not listed
  }
  SUBCASE("XLM macro sheets") {
    const std::string zip =
        make_zip({{"[Content_Types].xml", "<Types/>"}, {"xl/macrosheets/sheet1.xml", "<xm:macrosheet/>"}});
    CHECK(inspect_content(zip, "book.xlsx", "").has(content_flag::macro_office));
  }
  SUBCASE("macro-enabled extensions") {
    for (const char* name :
         {"a.docm", "a.xlsm", "a.pptm", "a.dotm", "a.xltm", "a.potm", "a.ppsm", "a.xlam", "a.sldm"}) {
      CHECK_MESSAGE(inspect_content("x", name, "").has(content_flag::macro_office), name);
    }
    CHECK_FALSE(inspect_content("x", "a.docx", "").has(content_flag::macro_office));
  }
  SUBCASE("OLE2 with VBA storages") {
    CHECK(inspect_content(make_ole({{"Macros", 1}, {"VBA", 1}}), "old.doc", "application/msword")
              .has(content_flag::macro_office));
    CHECK(
        inspect_content(make_ole({{"_VBA_PROJECT_CUR", 1}}), "old.xls", "").has(content_flag::macro_office));
    // A stream called "VBA" is not a VBA storage; a plain document has no macros.
    CHECK_FALSE(inspect_content(make_ole({{"VBA", 2}}), "old.doc", "").has(content_flag::macro_office));
    CHECK_FALSE(
        inspect_content(make_ole({{"WordDocument", 2}}), "old.doc", "").has(content_flag::macro_office));
  }
  SUBCASE("a macro document inside a zip flags the zip") {
    const auto f =
        inspect_content(make_zip({{"docs/old.doc", make_ole({{"Macros", 1}, {"VBA", 1}})}}), "docs.zip", "");
    CHECK(f.has(content_flag::macro_office));
    CHECK(f.archive_entries == std::vector<std::string>{"docs/old.doc"});
  }
  SUBCASE("OpenDocument Basic modules, but not the empty library index") {
    const std::vector<file_spec> odt{{"mimetype", "application/vnd.oasis.opendocument.text"},
                                     {"content.xml", "<office:document-content/>"}};
    auto with_macro = odt;
    with_macro.push_back({"Basic/script-lc.xml", "<library:libraries/>"});
    with_macro.push_back({"Basic/Standard/Module1.xml", "<script:module/>"});
    CHECK(inspect_content(make_zip(with_macro), "letter.odt", "").has(content_flag::macro_office));
    auto index_only = odt;
    index_only.push_back({"Basic/script-lc.xml", "<library:libraries/>"});
    CHECK_FALSE(inspect_content(make_zip(index_only), "letter.odt", "").has(content_flag::macro_office));
  }
}

TEST_CASE("encrypted archives") {
  SUBCASE("ZipCrypto and AES entries built by libarchive") {
    for (const char* option : {"zip:encryption=zipcrypt", "zip:encryption=aes256"}) {
      const std::string zip = make_archive(archive_write_set_format_zip, {{"secret.txt", "the report"}},
                                           nullptr, option, "passw0rd");
      if (zip.empty()) {
        MESSAGE("libarchive cannot write " << option << "; skipped");
        continue;
      }
      const auto f = inspect_content(zip, "secret.zip", "application/zip");
      CHECK_MESSAGE(f.has(content_flag::encrypted_archive), option);
      CHECK(f.archive_entries == std::vector<std::string>{"secret.txt"});  // names stay visible
      CHECK_FALSE(f.complete);
      CHECK(has_warning(f, "archive-encrypted-content"));
    }
  }
  SUBCASE("7z with an AES folder") {
    const auto f = inspect_content(fixture("encrypted-data.7z"), "a.7z", "");
    CHECK(f.has(content_flag::encrypted_archive));
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK(f.archive_entries == std::vector<std::string>{"secret.exe"});
  }
  SUBCASE("7z with encrypted headers") {
    const auto f = inspect_content(fixture("encrypted-header.7z"), "a.7z", "");
    CHECK(f.has(content_flag::encrypted_archive));
    CHECK(f.archive_entries.empty());
    CHECK_FALSE(f.complete);
  }
  SUBCASE("RAR entry with the password flag") {
    const auto f = inspect_content(fixture("encrypted-data.rar"), "a.rar", "");
    CHECK(f.has(content_flag::encrypted_archive));
    CHECK(f.has(content_flag::double_extension));
    CHECK(f.has(content_flag::archive_with_executable));
  }
  SUBCASE("RAR with encrypted headers") {
    const auto f = inspect_content(fixture("encrypted-header.rar"), "a.rar", "");
    CHECK(f.has(content_flag::encrypted_archive));
    CHECK_FALSE(f.complete);
  }
  SUBCASE("plain archives are not encrypted") {
    const auto f = inspect_content(make_zip({{"a.txt", "hello"}}), "a.zip", "");
    CHECK(f.flags.empty());
    CHECK(f.complete);
    CHECK(f.warnings.empty());
  }
}

TEST_CASE("encrypted documents") {
  SUBCASE("password-protected OOXML is an OLE2 EncryptedPackage") {
    const auto f = inspect_content(make_ole({{"EncryptionInfo", 2}, {"EncryptedPackage", 2}}), "budget.xlsx",
                                   "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    CHECK(f.has(content_flag::encrypted_document));
    CHECK_FALSE(f.has(content_flag::type_mismatch));
  }
  SUBCASE("encrypted OpenDocument manifest") {
    const std::string odt = make_zip({{"mimetype", "application/vnd.oasis.opendocument.text"},
                                      {"META-INF/manifest.xml",
                                       "<manifest:file-entry manifest:full-path=\"content.xml\">"
                                       "<manifest:encryption-data manifest:checksum-type=\"SHA1/1K\"/>"
                                       "</manifest:file-entry>"},
                                      {"content.xml", std::string(64, '\x9c')}});
    CHECK(inspect_content(odt, "secret.odt", "").has(content_flag::encrypted_document));
  }
  SUBCASE("an encrypted PDF inside a zip flags the zip") {
    const std::string pdf = "%PDF-1.4\ntrailer\n<< /Encrypt 3 0 R >>\n%%EOF\n";
    CHECK(
        inspect_content(make_zip({{"scan.pdf", pdf}}), "scan.zip", "").has(content_flag::encrypted_document));
  }
}

TEST_CASE("double extensions") {
  for (const char* name : {"invoice.pdf.exe", "Invoice.PDF.Scr", "photo.jpg.zip", "x.scr.xz", "a.doc.js",
                           "invoice.pdf                .exe", "請求書.xlsx.exe"}) {
    CHECK_MESSAGE(inspect_content("hello", name, "").has(content_flag::double_extension), name);
  }
  for (const char* name :
       {"report.2024.pdf", "archive.tar.gz", "setup.exe.zip", "my.name.txt", "a.pdf", "x.exe"}) {
    CHECK_FALSE_MESSAGE(inspect_content("hello", name, "").has(content_flag::double_extension), name);
  }
  SUBCASE("right-to-left override that shows 'exe.pdf' for 'fdp.exe'") {
    CHECK(inspect_content("hello",
                          "invoice\xE2\x80\xAE"
                          "fdp.exe",
                          "")
              .has(content_flag::double_extension));
  }
}

TEST_CASE("type mismatch: disguised active content only") {
  const std::string jpeg =
      std::string("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00", 20) +
      std::string(200, '\x11');
  const std::string xlsm = make_zip({{"[Content_Types].xml", "<Types/>"},
                                     {"xl/workbook.xml", "<workbook/>"},
                                     {"xl/vbaProject.bin", make_ole({{"VBA", 1}})}});
  SUBCASE("renamed.jpg that is an xlsm") {
    const auto f = inspect_content(xlsm, "renamed.jpg", "image/jpeg");
    CHECK(f.has(content_flag::type_mismatch));
    CHECK(f.has(content_flag::macro_office));
  }
  SUBCASE("text/plain that is MZ") {
    const auto f = inspect_content(clamav("clam.exe"), "readme.txt", "text/plain; charset=us-ascii");
    CHECK(f.has(content_flag::type_mismatch));
    CHECK(f.has(content_flag::executable));
  }
  SUBCASE("unknown content: the name is checked against the declared type") {
    const std::string noise = "\x01\x02\x03\x04\x05 binary \x06\x07";
    CHECK(inspect_content(noise, "invoice.zip", "image/jpeg").has(content_flag::type_mismatch));
    CHECK_FALSE(
        inspect_content(noise, "invoice.zip", "application/octet-stream").has(content_flag::type_mismatch));
  }
  SUBCASE("benign variants are not mismatches") {
    CHECK_FALSE(inspect_content(jpeg, "photo.jpeg", "image/jpg").has(content_flag::type_mismatch));
    CHECK_FALSE(inspect_content(jpeg, "photo.JPG", "image/pjpeg").has(content_flag::type_mismatch));
    CHECK_FALSE(
        inspect_content(jpeg, "photo.png", "image/png").has(content_flag::type_mismatch));  // wrong, harmless
    CHECK_FALSE(inspect_content(clamav("clam.pdf"), "a.pdf", "application/octet-stream")
                    .has(content_flag::type_mismatch));
    CHECK_FALSE(
        inspect_content(clamav("clam.pdf"), "a.pdf", "application/x-pdf").has(content_flag::type_mismatch));
    CHECK_FALSE(inspect_content(clamav("clam.pdf"), "a.pdf", "").has(content_flag::type_mismatch));
    CHECK_FALSE(inspect_content("お世話になっております。\n", "memo.txt", "text/plain; charset=Shift_JIS")
                    .has(content_flag::type_mismatch));
    CHECK_FALSE(inspect_content("a,b\n1,2\n", "data.csv", "text/csv; charset=utf-8")
                    .has(content_flag::type_mismatch));
    CHECK_FALSE(inspect_content("a,b\n1,2\n", "data.csv", "application/vnd.ms-excel")
                    .has(content_flag::type_mismatch));
    CHECK_FALSE(inspect_content(clamav("clam.zip"), "clam.zip", "application/x-zip-compressed")
                    .has(content_flag::type_mismatch));
    CHECK_FALSE(inspect_content(clamav("clam.ole.doc"), "clam.doc", "application/msword")
                    .has(content_flag::type_mismatch));
    CHECK_FALSE(inspect_content(clamav("clam.exe"), "clam.exe", "application/x-msdownload")
                    .has(content_flag::type_mismatch));
  }
  SUBCASE("zip-based Office sniffed as a plain zip") {
    const std::string docx =
        make_zip({{"word/document.xml", "<w:document/>"}, {"[Content_Types].xml", "<Types/>"}});
    const auto f = inspect_content(docx, "report.docx",
                                   "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
    CHECK_FALSE(f.has(content_flag::type_mismatch));
    CHECK(f.flags.empty());
  }
  SUBCASE("business-system 'Excel' that is HTML") {
    const std::string html =
        "<html><head><title>x</title></head><body><table><tr><td>1</td></tr></table></body></html>\n";
    CHECK_FALSE(
        inspect_content(html, "report.xls", "application/vnd.ms-excel").has(content_flag::type_mismatch));
    CHECK(inspect_content(html, "scan.pdf", "application/pdf").has(content_flag::type_mismatch));
  }
}

TEST_CASE("archive-with-executable looks at names and contents at any depth") {
  SUBCASE("program content under a harmless name") {
    const auto f = inspect_content(make_zip({{"readme.txt", pe_stub}}), "docs.zip", "");
    CHECK(f.has(content_flag::archive_with_executable));
  }
  SUBCASE("nested zip, listed with its parent") {
    const std::string inner = make_zip({{"evil.exe", pe_stub}});
    const auto f = inspect_content(make_zip({{"notes.txt", "hi"}, {"inner.zip", inner}}), "outer.zip", "");
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK(f.archive_entries == std::vector<std::string>{"notes.txt", "inner.zip", "inner.zip > evil.exe"});
    CHECK(f.archive_entry_count == 3);
    CHECK(f.complete);
  }
  SUBCASE("a .scr under a compressor inside a zip") {
    const auto f = inspect_content(make_zip({{"photo.scr.gz", "x"}}), "a.zip", "");
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK(f.has(content_flag::double_extension));
  }
  SUBCASE("tar.gz built by libarchive") {
    const std::string tgz =
        make_archive(archive_write_set_format_pax_restricted,
                     {{"dir/a.txt", "a"}, {"dir/run.bat", "@echo off"}}, archive_write_add_filter_gzip);
    const auto f = inspect_content(tgz, "bundle.tar.gz", "application/gzip");
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK(f.archive_entries == std::vector<std::string>{"dir/a.txt", "dir/run.bat"});
  }
  SUBCASE("depth limit: zip in zip in zip in zip") {
    std::string z = make_zip({{"deep.exe", pe_stub}});
    for (int i = 0; i < 3; ++i) z = make_zip({{"level" + std::to_string(i) + ".zip", z}});
    const auto f = inspect_content(z, "nest.zip", "");
    CHECK(has_warning(f, "archive-depth-limit"));
    CHECK_FALSE(f.complete);
    CHECK_FALSE(f.has(content_flag::archive_with_executable));  // never reached: hence incomplete
  }
  SUBCASE("Shift_JIS names without the UTF-8 flag") {
    const std::string sjis_name = "\x90\xbf\x8b\x81\x8f\x91.exe";  // 請求書.exe in CP932
    const auto f = inspect_content(stored_zip_raw_names({{sjis_name, "MZ"}}), "a.zip", "");
    CHECK(f.has(content_flag::archive_with_executable));
    CHECK(f.archive_entries == std::vector<std::string>{"請求書.exe"});
  }
  SUBCASE("control characters in names are replaced") {
    const auto f = inspect_content(stored_zip_raw_names({{"a\x1b[31mb.txt", "x"}}), "a.zip", "");
    CHECK(f.archive_entries == std::vector<std::string>{"a?[31mb.txt"});
  }
}

TEST_CASE("archive walk limits keep hostile archives bounded") {
  SUBCASE("compression ratio (zip bomb) with default limits") {
    const std::string bomb = make_zip({{"zeros.bin", std::string(64u << 20, '\0')}});
    REQUIRE(bomb.size() < (1u << 20));
    const auto start = std::chrono::steady_clock::now();
    const auto f = inspect_content(bomb, "bomb.zip", "application/zip");
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(has_warning(f, "archive-ratio-limit"));
    CHECK_FALSE(f.complete);
    CHECK(took < std::chrono::seconds(10));
  }
  SUBCASE("absolute unpacked size") {
    inspect_limits lim;
    lim.max_unpacked_total = 1 << 20;
    const auto f =
        inspect_content(make_zip({{"a.bin", std::string(2u << 20, 'a')}, {"b.exe", "MZ"}}), "a.zip", "", lim);
    CHECK(has_warning(f, "archive-size-limit"));
    CHECK_FALSE(f.complete);
  }
  SUBCASE("entry count, and the listing cap") {
    std::vector<file_spec> many;
    for (int i = 0; i < 40; ++i) many.push_back({"file" + std::to_string(i) + ".txt", "x"});
    inspect_limits lim;
    lim.max_listed_entries = 5;
    const auto listed = inspect_content(make_zip(many), "many.zip", "", lim);
    CHECK(listed.archive_entries.size() == 5);
    CHECK(listed.archive_entry_count == 40);
    CHECK(listed.complete);
    lim.max_archive_entries = 10;
    const auto capped = inspect_content(make_zip(many), "many.zip", "", lim);
    CHECK(has_warning(capped, "archive-entry-limit"));
    CHECK_FALSE(capped.complete);
  }
  SUBCASE("nested buffer cap") {
    inspect_limits lim;
    lim.max_nested_size = 4096;
    const std::string inner = make_zip({{"big.bin", noise(100000)}, {"evil.exe", pe_stub}});
    const auto f = inspect_content(make_zip({{"inner.zip", inner}}), "outer.zip", "", lim);
    CHECK(has_warning(f, "archive-nested-size-limit"));
    CHECK_FALSE(f.complete);
  }
  SUBCASE("broken and truncated archives never crash") {
    for (const char* name : {"clam.zip", "clam.7z", "clam.cab", "clam.tar.gz", "clam.exe.bz2"}) {
      const std::string whole = clamav(name);
      for (std::size_t n = 0; n < whole.size(); n += std::max<std::size_t>(1, whole.size() / 97)) {
        const auto f = inspect_content(std::string_view(whole).substr(0, n), name, "");
        CHECK(f.archive_entries.size() <= 1);
      }
    }
    for (const char* name :
         {"encrypted-data.7z", "encrypted-header.7z", "encrypted-data.rar", "encrypted-header.rar"}) {
      const std::string whole = fixture(name);
      for (std::size_t n = 0; n < whole.size(); ++n)
        (void)inspect_content(std::string_view(whole).substr(0, n), name, "");
    }
    for (const char* prefix : {"PK\x03\x04", "Rar!\x1a\x07", "7z\xbc\xaf\x27\x1c", "\x1f\x8b", "BZh", "MSCF",
                               "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "%PDF-"}) {
      std::string data = std::string(prefix) + noise(4096);
      const auto f = inspect_content(data, "x.bin", "");
      (void)f;
    }
  }
}
