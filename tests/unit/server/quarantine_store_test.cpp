// quarantine_store: IDs, the store/load round trip, idempotence, refusal of bad input, atomicity
// under a failure of every file operation in turn, and purge_staging.
#include "server/quarantine_store.hpp"

#include <doctest/doctest.h>

#include "tests/support/temp_dir.hpp"
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <array>
#include <boost/json/parse.hpp>
#include <fstream>
#include <iterator>
#include <set>

#include "sanitizers/report_json.hpp"
#include "server/quarantine_index.hpp"

using namespace mukai::server;
namespace sanitize = mukai::sanitize;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

using mukai::testing::scoped_umask;
using mukai::testing::temp_dir;



std::string sha256_of(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  REQUIRE(EVP_Digest(bytes.data(), bytes.size(), md.data(), &len, EVP_sha256(), nullptr) == 1);
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += digits[md[i] >> 4];
    hex += digits[md[i] & 0x0f];
  }
  return hex;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

sanitize::removed_part make_part(std::string path, std::string filename, std::string bytes) {
  sanitize::removed_part p;
  p.path = std::move(path);
  p.filename = std::move(filename);
  p.sha256 = sha256_of(bytes);
  p.bytes = std::move(bytes);
  return p;
}

const std::string original_message =
    "From: a@example.jp\r\nTo: b@example.lg.jp\r\nSubject: test\r\n\r\nbody with attachment\r\n";

// A sanitized message with two removed parts of identical content and one other.
sanitize::result sample_result(const std::string& id) {
  sanitize::result r;
  r.output = "sanitized\r\n";
  r.rep.result = sanitize::verdict::sanitized;
  r.rep.quarantine_id = id;
  r.rep.actions = {"attachments-removed=3"};
  r.quarantine = {make_part("2", "請求書.pdf.exe", std::string("MZ\x90\0binary", 10)),
                  make_part("3", "copy.exe", std::string("MZ\x90\0binary", 10)),
                  make_part("4", "macro.docm", "PK\x03\x04 macro")};
  for (const auto& q : r.quarantine) {
    sanitize::part_report pr;
    pr.path = q.path;
    pr.filename = q.filename;
    pr.sha256 = q.sha256;
    pr.size = q.bytes.size();
    pr.action = sanitize::part_action::quarantined;
    pr.reason = "rule:executable";
    r.rep.parts.push_back(pr);
  }
  r.quarantine_original = true;
  return r;
}

quarantine_envelope sample_envelope() { return {"a@example.jp", {"b@example.lg.jp", "c@example.lg.jp"}}; }

quarantine_headers sample_headers() {
  return {"差出人 <a@example.jp>", "b@example.lg.jp", "請求書の送付", "Sun, 22 Nov 2026 10:35:12 +0900",
          "<x@example.jp>"};
}

// Checks that items/<id> is a whole, valid item for r and `original`: meta.json, original.eml and
// exactly one parts/<sha256> per distinct content, all with the right bytes and modes.
void check_complete_item(const quarantine_store& store, const std::string& id, std::string_view original,
                         const sanitize::result& r) {
  const auto dir = store.item_dir(id);
  REQUIRE(dir);
  REQUIRE(fs::is_directory(*dir));
  const auto meta = store.load_meta(id);
  REQUIRE(meta);
  CHECK(meta->at("id").as_string() == id);
  CHECK(meta->at("status").as_string() == "held");
  CHECK(meta->at("history").as_array().empty());
  CHECK(meta->at("original").at("sha256").as_string() == sha256_of(original));
  CHECK(meta->at("original").at("size").to_number<std::uint64_t>() == original.size());
  CHECK(meta->at("original").at("stored").as_bool() == r.quarantine_original);
  auto rep = sanitize::report_from_json(meta->at("report"));
  REQUIRE(rep);
  CHECK(rep->result == r.rep.result);
  CHECK(rep->parts.size() == r.rep.parts.size());

  std::set<std::string> expected_names{"meta.json", "parts", "sanitized.eml"};
  CHECK(read_file(*dir / "sanitized.eml") == r.output);
  if (!r.body_text.empty()) {
    expected_names.insert("sanitized.txt");
    CHECK(read_file(*dir / "sanitized.txt") == r.body_text);
    CHECK(mode_of(*dir / "sanitized.txt") == 0600);
  }
  if (r.quarantine_original) {
    expected_names.insert("original.eml");
    CHECK(read_file(*dir / "original.eml") == original);
    CHECK(mode_of(*dir / "original.eml") == 0600);
  }
  CHECK(names_in(*dir) == expected_names);
  std::set<std::string> expected_parts;
  const auto& parts_meta = meta->at("parts").as_array();
  REQUIRE(parts_meta.size() == r.quarantine.size());
  for (std::size_t i = 0; i < r.quarantine.size(); ++i) {
    const auto& q = r.quarantine[i];
    expected_parts.insert(q.sha256);
    CHECK(read_file(*dir / "parts" / q.sha256) == q.bytes);
    CHECK(mode_of(*dir / "parts" / q.sha256) == 0600);
    const auto& pm = parts_meta[i].as_object();
    CHECK(pm.at("path").as_string() == q.path);
    CHECK(pm.at("sha256").as_string() == q.sha256);
    CHECK(pm.at("size").to_number<std::uint64_t>() == q.bytes.size());
  }
  CHECK(names_in(*dir / "parts") == expected_parts);
  CHECK(mode_of(*dir) == 0700);
  CHECK(mode_of(*dir / "parts") == 0700);
  CHECK(mode_of(*dir / "meta.json") == 0600);
}

}  // namespace

TEST_CASE("new IDs are well-formed, distinct and start with the UTC time") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_quarantine_id();
    CAPTURE(id);
    CHECK(id.size() == 27);
    CHECK(validate_quarantine_id(id));
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
  const std::string a = new_quarantine_id();
  CHECK(a.substr(0, 2) == "20");
  CHECK(a[8] == 'T');
  CHECK(a[15] == 'Z');
}

TEST_CASE("validate_quarantine_id rejects everything else") {
  CHECK(validate_quarantine_id("20261122T013512Z-0123456789"));
  CHECK(validate_quarantine_id("20261122T013512Z-abcdefghjk"));
  for (const char* bad : {
           "",
           "../x",
           "..",
           ".",
           "a/b",
           "20261122T013512Z-012345678",    // short
           "20261122T013512Z-0123456789a",  // overlong
           "20261122T013512Z-01234/6789",
           "20261122T013512Z-../../etc/",
           "/0261122T013512Z-0123456789",
           "20261122T013512Z-012345678I",  // upper case
           "20261122T013512Z-01234567i9",  // i, l, o, u are not in the alphabet
           "20261122T013512Z-0123456u89",
           "20261122t013512Z-0123456789",
           "20261122T013512Z_0123456789",
           "2026112xT013512Z-0123456789",
           "20261122T013512Z-012345678 ",
       }) {
    CAPTURE(bad);
    CHECK_FALSE(validate_quarantine_id(bad));
  }
  CHECK_FALSE(
      validate_quarantine_id(std::string("20261122T013512Z-01234\0"
                                         "6789",
                                         27)));
  CHECK_FALSE(validate_quarantine_id(std::string(10000, 'a')));

  posix_file_ops ops;
  quarantine_store store("/nonexistent", ops);
  CHECK_FALSE(store.item_dir("../x"));
  CHECK(store.item_dir("20261122T013512Z-0123456789") ==
        fs::path("/nonexistent/items/20261122T013512Z-0123456789"));
  CHECK_FALSE(store.load_meta("../../etc"));
}

TEST_CASE("ensure_layout creates 0700 directories, is idempotent, refuses a file") {
  temp_dir dir;
  scoped_umask um(0);
  posix_file_ops ops;
  quarantine_store store(dir.path() / "q/", ops);  // a trailing separator is fine
  CHECK(store.root() == dir.path() / "q");
  CHECK_FALSE(store.ensure_layout());
  CHECK(mode_of(dir.path() / "q") == 0700);
  CHECK(mode_of(dir.path() / "q" / "items") == 0700);
  CHECK(mode_of(dir.path() / "q" / "tmp") == 0700);
  CHECK_FALSE(store.ensure_layout());

  { std::ofstream(dir.path() / "file") << "x"; }
  quarantine_store bad(dir.path() / "file", ops);
  CHECK(bad.ensure_layout() == quarantine_errc::not_a_directory);
  quarantine_store no_parent(dir.path() / "missing" / "q", ops);
  CHECK(no_parent.ensure_layout() == std::errc::no_such_file_or_directory);
}

TEST_CASE("store and load round trip") {
  temp_dir dir;
  scoped_umask um(0);
  posix_file_ops ops;
  quarantine_store store(dir.path(), ops);
  REQUIRE_FALSE(store.ensure_layout());
  const std::string id = new_quarantine_id();
  auto r = sample_result(id);
  r.body_text = "【注意】添付ファイルを削除しました\nbody\n";
  REQUIRE_FALSE(store.store(id, original_message, r, sample_envelope(), sample_headers()));
  check_complete_item(store, id, original_message, r);
  CHECK(names_in(*store.item_dir(id) / "parts").size() == 2);  // identical parts share a file

  const auto meta = store.load_meta(id);
  REQUIRE(meta);
  CHECK(meta->at("envelope").at("mail_from").as_string() == "a@example.jp");
  CHECK(meta->at("envelope").at("rcpt_to").as_array().size() == 2);
  CHECK(meta->at("headers").at("subject").as_string() == "請求書の送付");
  CHECK(meta->at("headers").at("message_id").as_string() == "<x@example.jp>");
  CHECK(meta->at("parts").as_array().at(0).at("filename").as_string() == "請求書.pdf.exe");
  const std::string created(meta->at("created").as_string());
  CHECK(created.size() == 20);
  CHECK(created[10] == 'T');
  CHECK(created.back() == 'Z');
  auto rep = sanitize::report_from_json(meta->at("report"));
  REQUIRE(rep);
  CHECK(rep->quarantine_id == id);
  CHECK(rep->actions == r.rep.actions);
  CHECK(names_in(dir.path() / "tmp").empty());
  // meta.json is meant to be read by people too.
  CHECK(read_file(*store.item_dir(id) / "meta.json").find("\n  \"status\": \"held\",\n") !=
        std::string::npos);
}

TEST_CASE("only the original, only parts, and nothing at all") {
  temp_dir dir;
  posix_file_ops ops;
  quarantine_store store(dir.path(), ops);
  REQUIRE_FALSE(store.ensure_layout());

  sanitize::result held;
  held.rep.result = sanitize::verdict::held;
  held.rep.reasons = {"timeout"};
  held.quarantine_original = true;
  const std::string id1 = new_quarantine_id();
  REQUIRE_FALSE(store.store(id1, original_message, held, {}, {}));
  check_complete_item(store, id1, original_message, held);

  auto parts_only = sample_result("");
  parts_only.rep.quarantine_id.reset();
  parts_only.quarantine_original = false;
  const std::string id2 = new_quarantine_id();
  REQUIRE_FALSE(store.store(id2, original_message, parts_only, {}, {}));
  check_complete_item(store, id2, original_message, parts_only);
  CHECK_FALSE(fs::exists(*store.item_dir(id2) / "original.eml"));

  sanitize::result clean;
  const std::string id3 = new_quarantine_id();
  CHECK_FALSE(store.store(id3, original_message, clean, {}, {}));
  CHECK_FALSE(fs::exists(*store.item_dir(id3)));
  CHECK_FALSE(store.store("not an id", original_message, clean, {}, {}));  // nothing to store: no check
}

TEST_CASE("store refuses bad input and leaves nothing behind") {
  temp_dir dir;
  posix_file_ops ops;
  quarantine_store store(dir.path(), ops);
  REQUIRE_FALSE(store.ensure_layout());
  const std::string id = new_quarantine_id();

  auto r = sample_result(id);
  CHECK(store.store("../../x", original_message, r, {}, {}) == quarantine_errc::invalid_id);
  CHECK(store.store("", original_message, r, {}, {}) == quarantine_errc::invalid_id);

  auto other = sample_result("20261122T013512Z-0123456789");
  CHECK(store.store(id, original_message, other, {}, {}) == quarantine_errc::id_mismatch);

  auto tampered = sample_result(id);
  tampered.quarantine[2].bytes += "x";
  CHECK(store.store(id, original_message, tampered, {}, {}) == quarantine_errc::digest_mismatch);

  auto traversal = sample_result(id);
  traversal.quarantine[0].sha256 = "../../../../tmp/evil";
  CHECK(store.store(id, original_message, traversal, {}, {}) == quarantine_errc::digest_mismatch);

  CHECK(names_in(dir.path() / "items").empty());
  CHECK(names_in(dir.path() / "tmp").empty());
}

TEST_CASE("storing the same ID again: same message succeeds, another message is refused") {
  temp_dir dir;
  posix_file_ops ops;
  quarantine_store store(dir.path(), ops);
  REQUIRE_FALSE(store.ensure_layout());
  const std::string id = new_quarantine_id();
  const auto r = sample_result(id);
  REQUIRE_FALSE(store.store(id, original_message, r, sample_envelope(), sample_headers()));
  const std::string meta_before = read_file(*store.item_dir(id) / "meta.json");
  CHECK_FALSE(store.store(id, original_message, r, sample_envelope(), sample_headers()));
  CHECK(store.store(id, original_message + "changed", r, {}, {}) == quarantine_errc::id_in_use);
  CHECK(read_file(*store.item_dir(id) / "meta.json") == meta_before);  // never rewritten
  check_complete_item(store, id, original_message, r);
  CHECK(names_in(dir.path() / "tmp").empty());
}

TEST_CASE("invalid UTF-8 in headers, envelope and filenames still gives a readable meta.json") {
  temp_dir dir;
  posix_file_ops ops;
  quarantine_store store(dir.path(), ops);
  REQUIRE_FALSE(store.ensure_layout());
  const std::string id = new_quarantine_id();
  auto r = sample_result(id);
  r.quarantine[0].filename = "\xff\xfe.exe";
  r.rep.parts[0].filename = "\xff\xfe.exe";
  quarantine_headers h = sample_headers();
  h.subject = "\x1b$B%F%9%H\x1b(B \xe3\x81";  // raw ISO-2022-JP and a truncated sequence
  quarantine_envelope e{"\xc0\xaf@example.jp", {"\xed\xa0\x80@x"}};
  REQUIRE_FALSE(store.store(id, original_message, r, e, h));
  const auto meta = store.load_meta(id);
  REQUIRE(meta);
  CHECK(meta->at("parts").as_array().at(0).at("filename").as_string() == "\xEF\xBF\xBD\xEF\xBF\xBD.exe");
  CHECK(meta->at("report").at("parts").as_array().at(0).at("filename").as_string() ==
        "\xEF\xBF\xBD\xEF\xBF\xBD.exe");
}

TEST_CASE("load_meta refuses missing, corrupt and misplaced items") {
  temp_dir dir;
  posix_file_ops ops;
  quarantine_store store(dir.path(), ops);
  REQUIRE_FALSE(store.ensure_layout());
  CHECK_FALSE(store.load_meta("20261122T013512Z-0123456789"));

  const std::string id = new_quarantine_id();
  REQUIRE_FALSE(store.store(id, original_message, sample_result(id), {}, {}));
  // A copy under another ID is not that ID's item.
  const std::string other = "20261122T013512Z-0123456789";
  fs::copy(*store.item_dir(id), *store.item_dir(other), fs::copy_options::recursive);
  CHECK_FALSE(store.load_meta(other));
  // Not JSON.
  fs::remove(*store.item_dir(other) / "meta.json");
  { std::ofstream(*store.item_dir(other) / "meta.json") << "{\"id\": "; }
  CHECK_FALSE(store.load_meta(other));
  // A symlink is not followed.
  fs::remove(*store.item_dir(other) / "meta.json");
  fs::create_symlink(*store.item_dir(id) / "meta.json", *store.item_dir(other) / "meta.json");
  CHECK_FALSE(store.load_meta(other));
}

TEST_CASE("a failure of any file operation leaves the item whole or absent, strays only in tmp/") {
  const std::string id = "20261122T013512Z-0123456789";
  const auto r = sample_result(id);

  std::size_t total = 0;
  {
    temp_dir dir;
    posix_file_ops posix;
    REQUIRE_FALSE(quarantine_store(dir.path(), posix).ensure_layout());
    fault_injecting_file_ops ops(posix);
    quarantine_store store(dir.path(), ops);
    REQUIRE_FALSE(store.store(id, original_message, r, sample_envelope(), sample_headers()));
    total = ops.calls();
  }
  // mkdir staging, mkdir parts, 5 files (original, sanitized.eml, two parts, meta) x (create,
  // write, fsync, close), 2 dir fsyncs, rename, fsync items/.
  CHECK(total == 26);

  for (const auto m : {fault_injecting_file_ops::mode::single, fault_injecting_file_ops::mode::from_then}) {
    for (std::size_t i = 0; i < total; ++i) {
      CAPTURE(i);
      CAPTURE(static_cast<int>(m));
      temp_dir dir;
      posix_file_ops posix;
      quarantine_store healthy(dir.path(), posix);
      REQUIRE_FALSE(healthy.ensure_layout());
      fault_injecting_file_ops ops(posix);
      ops.fail_at(i, EIO, m);
      quarantine_store store(dir.path(), ops);
      const std::error_code ec = store.store(id, original_message, r, sample_envelope(), sample_headers());
      CHECK(ec);  // every operation matters, so every failure is reported

      CHECK(names_in(dir.path()) == std::set<std::string>{"items", "tmp"});
      const auto items = names_in(dir.path() / "items");
      if (items.empty()) {
        CHECK(i < total - 1);  // only the last fsync comes after the rename
      } else {
        CHECK(items == std::set<std::string>{id});
        CHECK(i == total - 1);
        check_complete_item(healthy, id, original_message, r);
      }
      if (m == fault_injecting_file_ops::mode::single) {
        CHECK(names_in(dir.path() / "tmp").empty());  // the cleanup itself did not fail
      }

      // Recovery: purge at start-up, then the relay stores again.
      CHECK_FALSE(healthy.purge_staging());
      CHECK(names_in(dir.path() / "tmp").empty());
      REQUIRE_FALSE(healthy.store(id, original_message, r, sample_envelope(), sample_headers()));
      check_complete_item(healthy, id, original_message, r);
      CHECK(names_in(dir.path() / "tmp").empty());
    }
  }
}

TEST_CASE("purge_staging empties tmp/ without following symlinks") {
  temp_dir dir;
  posix_file_ops ops;
  quarantine_store store(dir.path() / "q", ops);
  CHECK_FALSE(store.purge_staging());  // no tmp/ yet: nothing to do
  REQUIRE_FALSE(store.ensure_layout());
  const fs::path tmp = dir.path() / "q" / "tmp";
  fs::create_directories(tmp / "20261122T013512Z-0123456789.abcd" / "parts");
  { std::ofstream(tmp / "20261122T013512Z-0123456789.abcd" / "parts" / "x") << "x"; }
  { std::ofstream(tmp / "20261122T013512Z-0123456789.abcd" / "meta.json") << "{"; }
  { std::ofstream(tmp / "stray") << "x"; }
  const fs::path outside = dir.path() / "outside";
  fs::create_directories(outside);
  { std::ofstream(outside / "keep") << "keep"; }
  fs::create_symlink(outside, tmp / "dirlink");
  fs::create_symlink(outside / "keep", tmp / "filelink");
  fs::create_symlink(dir.path() / "nowhere", tmp / "dangling");

  CHECK_FALSE(store.purge_staging());
  CHECK(names_in(tmp).empty());
  CHECK(read_file(outside / "keep") == "keep");
  CHECK(fs::is_directory(dir.path() / "q" / "items"));
}

namespace {

// An index that records puts and can be told to fail.
class recording_index final : public quarantine_index {
 public:
  std::vector<index_item> puts;
  std::error_code fail_with;
  std::error_code put(const index_item& item) override {
    if (fail_with) return fail_with;
    puts.push_back(item);
    return {};
  }
  std::optional<index_item> get(std::string_view) override { return std::nullopt; }
  item_page list(const item_filter&) override { return {}; }
  std::error_code set_status(std::string_view, item_status, const history_entry&) override { return {}; }
  std::error_code add_history(std::string_view, const history_entry&) override { return {}; }
  std::vector<std::string> expired_candidates(std::int64_t, std::size_t) override { return {}; }
  index_stats stats() override { return {}; }
  std::error_code clear() override { return {}; }
};

}  // namespace

TEST_CASE("a store with an index puts the record of what it published, also on a retry; an index failure fails the store") {
  temp_dir dir;
  posix_file_ops ops;
  recording_index index;
  quarantine_store store(dir.path(), ops, &index);
  REQUIRE_FALSE(store.ensure_layout());
  const std::string id = new_quarantine_id();
  const auto r = sample_result(id);
  REQUIRE_FALSE(store.store(id, original_message, r, sample_envelope(), sample_headers()));
  REQUIRE(index.puts.size() == 1);
  const index_item& rec = index.puts[0];
  CHECK(rec.id == id);
  CHECK(rec.mail_from == "a@example.jp");
  CHECK(rec.rcpt_to == std::vector<std::string>{"b@example.lg.jp", "c@example.lg.jp"});
  CHECK(rec.subject == "請求書の送付");
  CHECK(rec.verdict == "sanitized");
  CHECK(rec.size == original_message.size());
  CHECK(rec.original_stored);
  REQUIRE(rec.parts.size() == 3);
  CHECK(rec.parts[0].filename == "請求書.pdf.exe");
  CHECK(rec.parts[0].reason == "rule:executable");
  CHECK(rec.status == item_status::held);

  // The retry after an index failure: the files are published already, the record follows.
  index.fail_with = std::make_error_code(std::errc::io_error);
  const std::string id2 = new_quarantine_id();
  const auto r2 = sample_result(id2);
  CHECK(store.store(id2, original_message, r2, sample_envelope(), sample_headers()) == std::errc::io_error);
  CHECK(store.load_meta(id2));
  index.fail_with = {};
  REQUIRE_FALSE(store.store(id2, original_message, r2, sample_envelope(), sample_headers()));
  REQUIRE(index.puts.size() == 2);
  CHECK(index.puts[1].id == id2);

  // Nothing to store: nothing indexed.
  sanitize::result clean;
  clean.output = "x\r\n";
  REQUIRE_FALSE(store.store(new_quarantine_id(), original_message, clean, {}, {}));
  CHECK(index.puts.size() == 2);
}

TEST_CASE("remove_item: the item disappears whole, nothing left in tmp/; invalid and missing IDs refused") {
  temp_dir dir;
  posix_file_ops ops;
  quarantine_store store(dir.path(), ops);
  REQUIRE_FALSE(store.ensure_layout());
  const std::string id = new_quarantine_id();
  REQUIRE_FALSE(store.store(id, original_message, sample_result(id), sample_envelope(), sample_headers()));
  REQUIRE(store.load_meta(id));
  REQUIRE_FALSE(store.remove_item(id));
  CHECK_FALSE(fs::exists(*store.item_dir(id)));
  CHECK_FALSE(store.load_meta(id));
  CHECK(names_in(dir.path() / "tmp").empty());
  CHECK(store.remove_item(id) == std::errc::no_such_file_or_directory);
  CHECK(store.remove_item("../../etc") == quarantine_errc::invalid_id);
}
