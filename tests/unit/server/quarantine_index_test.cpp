// The SQLite quarantine index: put (idempotent, keeping status and history), every filter, paging
// and totals, ordering, stats, the migration from a version 1 file, hostile strings kept verbatim,
// and index_item_from_meta.
#include "server/quarantine_index.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <boost/json/parse.hpp>

#include "tests/support/temp_dir.hpp"

using namespace mukai::server;
namespace fs = std::filesystem;

namespace {

using mukai::testing::temp_dir;

std::unique_ptr<quarantine_index> open_index(const fs::path& file) {
  std::error_code ec;
  auto index = open_sqlite_index(file, ec);
  REQUIRE_MESSAGE(index, ec.message());
  return index;
}

index_item make_item(std::string id, std::int64_t received) {
  index_item it;
  it.id = std::move(id);
  it.received = received;
  it.mail_from = "sender@example.com";
  it.rcpt_to = {"staff@city.example.lg.jp"};
  it.from = "Sender <sender@example.com>";
  it.to = "staff@city.example.lg.jp";
  it.subject = "Monthly report";
  it.message_id = "<m1@example.com>";
  it.verdict = "sanitized";
  it.reasons = {"attachments-removed=1"};
  it.size = 1000;
  it.original_stored = true;
  it.parts = {{"1", "", "text/plain", "text/plain", 10, std::string(64, 'a'), "kept-as-text", "body"},
              {"2", "report.pdf", "application/pdf", "application/pdf", 900, std::string(64, 'b'), "quarantined",
               "attachment"}};
  return it;
}

std::vector<std::string> ids_of(const item_page& p) {
  std::vector<std::string> out;
  for (const auto& i : p.items) out.push_back(i.id);
  return out;
}

const std::string id1 = "20261101T000000Z-0000000001";
const std::string id2 = "20261102T000000Z-0000000002";
const std::string id3 = "20261103T000000Z-0000000003";

}  // namespace

TEST_CASE("status names round-trip and unknown names are refused") {
  for (auto s : {item_status::held, item_status::released, item_status::deleted, item_status::expired})
    CHECK(parse_item_status(to_string(s)) == s);
  CHECK_FALSE(parse_item_status("HELD"));
  CHECK_FALSE(parse_item_status(""));
}

TEST_CASE("put then get returns every field; put again keeps status and history") {
  temp_dir dir;
  auto index = open_index(dir.path() / "index.sqlite");
  index_item it = make_item(id1, 1'700'000'000);
  REQUIRE_FALSE(index->put(it));
  auto got = index->get(id1);
  REQUIRE(got);
  CHECK(got->mail_from == it.mail_from);
  CHECK(got->rcpt_to == it.rcpt_to);
  CHECK(got->subject == it.subject);
  CHECK(got->message_id == it.message_id);
  CHECK(got->reasons == it.reasons);
  CHECK(got->size == 1000);
  CHECK(got->original_stored);
  REQUIRE(got->parts.size() == 2);
  CHECK(got->parts[1].filename == "report.pdf");
  CHECK(got->parts[1].sha256 == std::string(64, 'b'));
  CHECK(got->parts[1].action == "quarantined");
  CHECK(got->status == item_status::held);
  CHECK(got->history.empty());

  REQUIRE_FALSE(index->set_status(id1, item_status::released, {1'700'000'100, "cli:root", "release", "ok", "to=a"}));
  REQUIRE_FALSE(index->add_history(id1, {1'700'000'200, "web:yamada", "release", "refused", "policy"}));
  it.subject = "Monthly report (re-stored)";
  it.status = item_status::held;  // a re-store must not undo the release
  it.history = {{1, "x", "y", "z", "w"}};
  REQUIRE_FALSE(index->put(it));
  got = index->get(id1);
  REQUIRE(got);
  CHECK(got->subject == "Monthly report (re-stored)");
  CHECK(got->status == item_status::released);
  REQUIRE(got->history.size() == 2);
  CHECK(got->history[0].who == "cli:root");
  CHECK(got->history[1].result == "refused");
  CHECK(got->parts.size() == 2);  // replaced, not duplicated
  CHECK(index->list({}).total == 1);

  CHECK(index->set_status("20261101T000000Z-zzzzzzzzzz", item_status::deleted, {}) ==
        std::errc::no_such_file_or_directory);
  CHECK(index->add_history("nope", {}) == std::errc::no_such_file_or_directory);
  CHECK_FALSE(index->get("nope"));
}

TEST_CASE("a new record takes the status and history it is given (rebuild)") {
  temp_dir dir;
  auto index = open_index(dir.path() / "index.sqlite");
  index_item it = make_item(id1, 100);
  it.status = item_status::released;
  it.history = {{50, "cli:root", "release", "ok", ""}};
  REQUIRE_FALSE(index->put(it));
  auto got = index->get(id1);
  REQUIRE(got);
  CHECK(got->status == item_status::released);
  REQUIRE(got->history.size() == 1);
  CHECK(got->history[0].at == 50);
}

TEST_CASE("every filter, alone and combined") {
  temp_dir dir;
  auto index = open_index(dir.path() / "index.sqlite");
  index_item a = make_item(id1, 1000);
  index_item b = make_item(id2, 2000);
  b.mail_from = "notice@pref.example.lg.jp";
  b.from = "県庁 <notice@pref.example.lg.jp>";
  b.rcpt_to = {"kikaku@city.example.lg.jp", "soumu@city.example.lg.jp"};
  b.to = "企画課 <kikaku@city.example.lg.jp>";
  b.subject = "【至急】請求書の送付について";
  b.message_id = "<ABC-123@pref.example.lg.jp>";
  b.reasons = {"rule:executable"};
  b.parts[1].filename = "請求書.exe";
  b.parts[1].reason = "rule:executable";
  index_item c = make_item(id3, 3000);
  c.mail_from = "";
  c.from = "MAILER-DAEMON";
  c.subject = "Re: Monthly REPORT";
  c.verdict = "held";
  c.reasons = {"unparseable"};
  c.parts.clear();
  for (const auto* it : {&a, &b, &c}) REQUIRE_FALSE(index->put(*it));
  REQUIRE_FALSE(index->set_status(id1, item_status::deleted, {1, "cli:root", "delete", "ok", ""}));

  auto q = [&](item_filter f) { return ids_of(index->list(f)); };
  using v = std::vector<std::string>;
  CHECK(q({}) == v{id3, id2, id1});  // newest first

  item_filter f;
  f.sender = "PREF.example";  // ASCII case folded, envelope sender
  CHECK(q(f) == v{id2});
  f = {};
  f.sender = "県庁";  // header From, Japanese, 2 characters (below the trigram length)
  CHECK(q(f) == v{id2});
  f = {};
  f.sender = "daemon";
  CHECK(q(f) == v{id3});
  f = {};
  f.recipient = "soumu@";  // second envelope recipient
  CHECK(q(f) == v{id2});
  f = {};
  f.recipient = "企画課";  // header To
  CHECK(q(f) == v{id2});
  f = {};
  f.subject = "monthly report";
  CHECK(q(f) == v{id3, id1});
  f = {};
  f.subject = "請求書の送付";
  CHECK(q(f) == v{id2});
  f = {};
  f.subject = "請求";  // short Japanese query
  CHECK(q(f) == v{id2});
  f = {};
  f.reason = "executable";
  CHECK(q(f) == v{id2});
  f = {};
  f.reason = "attachment";  // a part's reason
  CHECK(q(f) == v{id1});
  f = {};
  f.filename = ".exe";
  CHECK(q(f) == v{id2});
  f = {};
  f.text = "abc-123";  // Message-ID via free text
  CHECK(q(f) == v{id2});
  f = {};
  f.text = "0000000003";  // the ID
  CHECK(q(f) == v{id3});
  f = {};
  f.text = "report.pdf";  // a filename
  CHECK(q(f) == v{id1});
  f = {};
  f.text = "nothing like this";
  CHECK(q(f).empty());
  f = {};
  f.status = item_status::deleted;
  CHECK(q(f) == v{id1});
  f.status = item_status::held;
  CHECK(q(f) == v{id3, id2});
  f = {};
  f.since = 2000;
  CHECK(q(f) == v{id3, id2});
  f.until = 3000;  // exclusive
  CHECK(q(f) == v{id2});
  f = {};
  f.subject = "report";
  f.status = item_status::held;
  f.until = 2500;
  CHECK(q(f).empty());
  f.until = {};
  CHECK(q(f) == v{id3});
  // A trigram match across the joined fields is not a match: "com\nsender" is no single value.
  f = {};
  f.sender = "example.com\nsender";
  CHECK(q(f).empty());
}

TEST_CASE("paging: limit, offset, total, the cap, ties ordered by ID") {
  temp_dir dir;
  auto index = open_index(dir.path() / "index.sqlite");
  std::vector<std::string> ids;
  for (int i = 0; i < 1205; ++i) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "20261101T000000Z-%010d", i);
    ids.emplace_back(buf);
    // Pairs share a received second: the ID breaks the tie.
    REQUIRE_FALSE(index->put(make_item(buf, 1000 + i / 2)));
  }
  item_filter f;
  f.limit = 10;
  auto p = index->list(f);
  CHECK(p.total == 1205);
  REQUIRE(p.items.size() == 10);
  CHECK(p.items[0].id == ids[1204]);
  CHECK(p.items[1].id == ids[1203]);
  CHECK(p.items[0].parts.size() == 2);
  CHECK(p.items[0].history.empty());
  f.offset = 1200;
  p = index->list(f);
  CHECK(p.total == 1205);
  REQUIRE(p.items.size() == 5);
  CHECK(p.items[4].id == ids[0]);
  f.offset = 5000;
  CHECK(index->list(f).items.empty());
  f.offset = 0;
  f.limit = 100000;
  CHECK(index->list(f).items.size() == 1000);
  // Retention candidates: oldest first, held and released only, bounded.
  REQUIRE_FALSE(index->set_status(ids[0], item_status::deleted, {}));
  auto old = index->expired_candidates(1002, 100);
  CHECK(old == std::vector<std::string>{ids[1], ids[2], ids[3]});
  CHECK(index->expired_candidates(1002, 2).size() == 2);
  REQUIRE_FALSE(index->clear());
  CHECK(index->list({}).total == 0);
}

TEST_CASE("stats: counts by status, bytes, oldest held, reasons and detected types") {
  temp_dir dir;
  auto index = open_index(dir.path() / "index.sqlite");
  CHECK(index->stats().total == 0);
  CHECK_FALSE(index->stats().oldest_held);
  index_item a = make_item(id1, 100);
  index_item b = make_item(id2, 200);
  b.reasons = {"attachments-removed=1", "html-to-text"};
  b.parts[1].detected_type = "application/x-dosexec";
  index_item c = make_item(id3, 300);
  for (const auto* it : {&a, &b, &c}) REQUIRE_FALSE(index->put(*it));
  REQUIRE_FALSE(index->set_status(id1, item_status::expired, {}));
  REQUIRE_FALSE(index->set_status(id2, item_status::released, {}));
  const auto s = index->stats();
  CHECK(s.total == 3);
  CHECK(s.held == 1);
  CHECK(s.released == 1);
  CHECK(s.expired == 1);
  CHECK(s.deleted == 0);
  CHECK(s.bytes == 2000);
  CHECK(s.oldest_held == 300);
  REQUIRE(s.by_reason.size() == 2);
  CHECK(s.by_reason[0] == std::pair<std::string, std::uint64_t>{"attachments-removed=1", 3});
  CHECK(s.by_reason[1] == std::pair<std::string, std::uint64_t>{"html-to-text", 1});
  REQUIRE(s.by_detected_type.size() == 2);
  CHECK(s.by_detected_type[0] == std::pair<std::string, std::uint64_t>{"application/pdf", 2});
}

TEST_CASE("hostile strings are stored and found verbatim") {
  temp_dir dir;
  auto index = open_index(dir.path() / "index.sqlite");
  index_item it = make_item(id1, 100);
  it.subject = std::string("<script>alert(1)</script> ' OR 1=1; -- \" NEAR(\x1b[31m\xe2\x80\xae") + '\0' + "x";
  it.parts[1].filename = "a%_\"*.pdf";
  it.mail_from = "'; DROP TABLE items; --@example.com";
  REQUIRE_FALSE(index->put(it));
  auto got = index->get(id1);
  REQUIRE(got);
  CHECK(got->subject == it.subject);
  CHECK(got->mail_from == it.mail_from);
  CHECK(got->parts[1].filename == it.parts[1].filename);
  item_filter f;
  f.subject = "' OR 1=1";
  CHECK(index->list(f).total == 1);
  f = {};
  f.filename = "%_\"*";  // LIKE and FTS5 syntax characters are literals
  CHECK(index->list(f).total == 1);
  f.filename = "%";
  CHECK(index->list(f).total == 1);
  f.filename = "_x";
  CHECK(index->list(f).total == 0);
  f = {};
  f.text = "\" OR \"";
  CHECK(index->list(f).total == 0);
  f.text = "DROP TABLE";
  CHECK(index->list(f).total == 1);
}

TEST_CASE("a version 1 file is migrated: rows kept and found by text search") {
  temp_dir dir;
  const fs::path file = dir.path() / "index.sqlite";
  {
    // Exactly what version 1 created (the v1 DDL is frozen in quarantine_sqlite.cpp).
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
    const char* v1 =
        "CREATE TABLE items(rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, received INTEGER NOT NULL, mail_from "
        "TEXT NOT NULL DEFAULT '', hdr_from TEXT NOT NULL DEFAULT '', hdr_to TEXT NOT NULL DEFAULT '', subject TEXT "
        "NOT NULL DEFAULT '', message_id TEXT NOT NULL DEFAULT '', verdict TEXT NOT NULL DEFAULT '', size INTEGER NOT "
        "NULL DEFAULT 0, original_stored INTEGER NOT NULL DEFAULT 0, status INTEGER NOT NULL DEFAULT 0, rcpt_text TEXT "
        "NOT NULL DEFAULT '', reason_text TEXT NOT NULL DEFAULT '', filename_text TEXT NOT NULL DEFAULT '');"
        "CREATE TABLE recipients(rid INTEGER NOT NULL REFERENCES items(rid) ON DELETE CASCADE, seq INTEGER NOT NULL, "
        "address TEXT NOT NULL, PRIMARY KEY(rid, seq)) WITHOUT ROWID;"
        "CREATE TABLE reasons(rid INTEGER NOT NULL REFERENCES items(rid) ON DELETE CASCADE, seq INTEGER NOT NULL, "
        "reason TEXT NOT NULL, PRIMARY KEY(rid, seq)) WITHOUT ROWID;"
        "CREATE TABLE parts(rid INTEGER NOT NULL REFERENCES items(rid) ON DELETE CASCADE, seq INTEGER NOT NULL, path "
        "TEXT NOT NULL, filename TEXT NOT NULL, declared_type TEXT NOT NULL, detected_type TEXT NOT NULL, size "
        "INTEGER NOT NULL, sha256 TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY(rid, seq)) "
        "WITHOUT ROWID;"
        "CREATE TABLE history(rid INTEGER NOT NULL REFERENCES items(rid) ON DELETE CASCADE, seq INTEGER NOT NULL, at "
        "INTEGER NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL, "
        "PRIMARY KEY(rid, seq)) WITHOUT ROWID;"
        "CREATE INDEX items_received ON items(received, id);"
        "INSERT INTO items(id, received, mail_from, subject, status) VALUES('20261101T000000Z-0000000001', 5, "
        "'old@example.com', '古い件名のテスト', 1);"
        "INSERT INTO history VALUES(1, 0, 7, 'cli:root', 'release', 'ok', '');"
        "PRAGMA user_version=1;";
    REQUIRE(sqlite3_exec(db, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto index = open_index(file);
  auto got = index->get(id1);
  REQUIRE(got);
  CHECK(got->status == item_status::released);
  CHECK(got->history.size() == 1);
  item_filter f;
  f.subject = "件名のテ";  // served by the trigram table the migration filled
  CHECK(index->list(f).total == 1);
  f.subject = "件名のテストx";
  CHECK(index->list(f).total == 0);
  REQUIRE_FALSE(index->put(make_item(id2, 6)));
  CHECK(index->list({}).total == 2);
  index.reset();
  // Opening again is a no-op at the current version; a newer file is refused.
  index = open_index(file);
  CHECK(index->list({}).total == 2);
  index.reset();
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  std::error_code ec;
  CHECK_FALSE(open_sqlite_index(file, ec));
  CHECK(ec);
}

TEST_CASE("the index file is in WAL mode and usable from a second connection") {
  temp_dir dir;
  const fs::path file = dir.path() / "index.sqlite";
  auto a = open_index(file);
  auto b = open_index(file);
  REQUIRE_FALSE(a->put(make_item(id1, 1)));
  CHECK(b->get(id1));
  REQUIRE_FALSE(b->set_status(id1, item_status::released, {2, "web:x", "release", "ok", ""}));
  CHECK(a->get(id1)->status == item_status::released);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_CASE("index_item_from_meta reads what quarantine_store writes") {
  const char* text = R"({"id":"20261122T013512Z-7k2m9q4x0c","created":"2026-11-22T01:35:12Z",
    "envelope":{"mail_from":"a@example.com","rcpt_to":["b@example.lg.jp","c@example.lg.jp"]},
    "headers":{"from":"A <a@example.com>","to":"b@example.lg.jp","subject":"件名","date":"x","message_id":"<m@x>"},
    "report":{"verdict":"sanitized","reasons":["attachments-removed=1"],"warnings":[],
      "quarantine_id":"20261122T013512Z-7k2m9q4x0c","actions":["attachments-removed=1"],
      "parts":[{"path":"2","declared_type":"application/pdf","detected_type":"application/pdf","filename":"a.pdf",
        "size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","action":"quarantined",
        "reason":"attachment","flags":[]}]},
    "original":{"sha256":"x","size":1234,"stored":true},
    "parts":[],"status":"released","history":[{"at":9,"who":"cli:root","action":"release","result":"ok","detail":""}]})";
  const auto v = boost::json::parse(text);
  auto it = index_item_from_meta(v.get_object());
  REQUIRE(it);
  CHECK(it->id == "20261122T013512Z-7k2m9q4x0c");
  CHECK(it->received == 1795311312);  // date -u -d 2026-11-22T01:35:12Z +%s
  CHECK(it->rcpt_to.size() == 2);
  CHECK(it->subject == "件名");
  CHECK(it->verdict == "sanitized");
  CHECK(it->size == 1234);
  CHECK(it->original_stored);
  REQUIRE(it->parts.size() == 1);
  CHECK(it->parts[0].action == "quarantined");
  CHECK(it->status == item_status::released);
  REQUIRE(it->history.size() == 1);
  CHECK(it->history[0].who == "cli:root");

  auto broken = v.get_object();
  broken["created"] = "yesterday";
  CHECK_FALSE(index_item_from_meta(broken));
  broken = v.get_object();
  broken.erase("report");
  CHECK_FALSE(index_item_from_meta(broken));
}

namespace {

std::string fold(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return s;
}

bool contains_folded(const std::string& hay, const std::string& needle) {
  return fold(hay).find(fold(needle)) != std::string::npos;
}

}  // namespace

TEST_CASE("text search agrees with a brute-force scan, through the trigram index and without it") {
  temp_dir dir;
  auto index = open_index(dir.path() / "index.sqlite");
  const char* subjects[] = {"請求書の送付について", "Invoice November", "会議資料", "Quarterly REPORT", "防災訓練のお知らせ",
                            "Re: invoice", "予算要求", "見積書"};
  const char* senders[] = {"soumu@pref.example.lg.jp", "sales@vendor.example.com", "Info@Bank.example.jp",
                           "yamada@consult.example.jp", "x_y%z@odd.example"};
  std::vector<index_item> all;
  for (int i = 0; i < 400; ++i) {
    char id[40];
    std::snprintf(id, sizeof id, "20261101T000000Z-%010d", i);
    index_item it = make_item(id, 1000 + i);
    it.subject = std::string(subjects[i % 8]) + " #" + std::to_string(i);
    it.mail_from = senders[(i * 7) % 5];
    it.from = "";
    it.parts[1].filename = (i % 3 ? "資料_" : "Scan_") + std::to_string(i % 50) + (i % 11 ? ".pdf" : ".EXE");
    REQUIRE_FALSE(index->put(it));
    all.push_back(it);
  }
  struct q {
    std::string item_filter::*field;
    std::string value;
  };
  const q queries[] = {{&item_filter::subject, "invoice"},     {&item_filter::subject, "請求書の"},
                       {&item_filter::subject, "#12"},         {&item_filter::subject, "#399"},
                       {&item_filter::subject, "資料"},        {&item_filter::sender, "VENDOR.example"},
                       {&item_filter::sender, "bank.EXAMPLE"}, {&item_filter::sender, "example"},
                       {&item_filter::sender, "_y%"},          {&item_filter::filename, ".exe"},
                       {&item_filter::filename, "scan_4"},     {&item_filter::text, "consult"},
                       {&item_filter::text, "REPORT #3"},      {&item_filter::subject, "no such text"}};
  for (const auto& query : queries) {
    item_filter f;
    f.*(query.field) = query.value;
    f.limit = 1000;
    std::uint64_t expected = 0;
    for (const auto& it : all) {
      bool hit = false;
      if (query.field == &item_filter::subject) hit = contains_folded(it.subject, query.value);
      if (query.field == &item_filter::sender) hit = contains_folded(it.mail_from, query.value);
      if (query.field == &item_filter::filename) hit = contains_folded(it.parts[1].filename, query.value);
      if (query.field == &item_filter::text)
        hit = contains_folded(it.subject, query.value) || contains_folded(it.mail_from, query.value) ||
              contains_folded(it.parts[1].filename, query.value) || contains_folded(it.id, query.value) ||
              contains_folded(it.message_id, query.value) || contains_folded(it.to, query.value);
      expected += hit;
    }
    INFO(query.value);
    const auto page = index->list(f);
    CHECK(page.total == expected);
    CHECK(page.items.size() == expected);
    for (std::size_t i = 1; i < page.items.size(); ++i) CHECK(page.items[i - 1].received >= page.items[i].received);
    f.limit = 5;
    f.offset = 3;
    const auto paged = index->list(f);
    CHECK(paged.total == expected);
    CHECK(paged.items.size() == (expected > 3 ? std::min<std::uint64_t>(5, expected - 3) : 0));
    if (paged.items.size() > 0) CHECK(paged.items[0].id == page.items[3].id);
  }
}
