// The SQLite backend of the quarantine index (quarantine_index.hpp) and the meta.json -> record
// mapping shared by every backend.
//
// Schema (PRAGMA user_version = schema_version; migrations below bring an older file up to date in
// one transaction each):
//   items      one row per item; `rid` is the rowid that the other tables and the FTS table use;
//              besides the fields it keeps the joined search columns rcpt_text, reason_text,
//              filename_text (newline-separated) so that a filter is one row read, not a join.
//   recipients, reasons, parts, history   the lists, in order (seq).
//   search     (v2) FTS5 trigram table over the text columns, rowid = items.rid.
//   indexes    (received, id); (status, received, id, size) (v3: covers stats()); reasons(reason);
//              parts(action, detected_type).
// Search: a text criterion of 3+ characters first narrows the candidates through the trigram index
// (its rarest trigrams as quoted literals, see rare_trigrams), then every criterion is checked exactly with
// column LIKE '%query%' ESCAPE '\' on the item row (no allocation per row, unlike lower()). SQLite's
// LIKE folds ASCII case only, which is the interface's rule (PRAGMA case_sensitive_like stays off),
// and the exact check also drops trigram matches across a separator. Shorter
// criteria are checked by the exact predicate alone (a scan, still fast at 100,000 rows).
// Durability: WAL with synchronous=FULL: a put() that returned is on disk (the relay counts on it
// when it acknowledges). busy_timeout: the relay and the CLI write the same file.
// Threading: one connection behind a mutex; every call holds it for its whole transaction.
#include <sqlite3.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>

#include "sanitizers/report_json.hpp"
#include "server/quarantine_index.hpp"

namespace mukai::server {

namespace json = boost::json;

namespace {

constexpr int schema_version = 3;
constexpr int busy_timeout_ms = 10'000;
constexpr std::size_t max_page = 1000;
constexpr std::size_t trigram = 3;  // shortest query the trigram index can serve

// --- small RAII helpers over the C API ------------------------------------------------------

class statement {
 public:
  statement(sqlite3* db, std::string_view sql) {
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) != SQLITE_OK) {
      stmt_ = nullptr;
    }
  }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  explicit operator bool() const noexcept { return stmt_ != nullptr; }
  void bind(int i, std::string_view s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, std::int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  int step() { return stmt_ ? sqlite3_step(stmt_) : SQLITE_ERROR; }
  // Runs to completion; true on success.
  bool run() {
    int rc = step();
    while (rc == SQLITE_ROW) rc = step();
    return rc == SQLITE_DONE;
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// SQLite's own error numbers are not errno values: report them as I/O errors, except the busy
// and full cases an operator can act on.
std::error_code sqlite_error(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return std::make_error_code(std::errc::resource_unavailable_try_again);
    case SQLITE_FULL:
      return std::make_error_code(std::errc::no_space_on_device);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return std::make_error_code(std::errc::permission_denied);
    default:
      return std::make_error_code(std::errc::io_error);
  }
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += '\n';
    out += s;
  }
  return out;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// "%<query>%" for LIKE ... ESCAPE '\': the query's own %, _ and \ are literals.
std::string like_pattern(std::string_view s) {
  std::string out = "%";
  for (const char c : s) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  out += '%';
  return out;
}

// An FTS5 string literal: any input becomes one phrase (a trigram phrase is a substring match).
std::string fts_phrase(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// --- migrations -----------------------------------------------------------------------------

// Version 1: the tables. Kept verbatim: a file at version 1 was made by exactly this.
constexpr const char* schema_v1 = R"sql(
CREATE TABLE items(
  rid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  received INTEGER NOT NULL,
  mail_from TEXT NOT NULL DEFAULT '',
  hdr_from TEXT NOT NULL DEFAULT '',
  hdr_to TEXT NOT NULL DEFAULT '',
  subject TEXT NOT NULL DEFAULT '',
  message_id TEXT NOT NULL DEFAULT '',
  verdict TEXT NOT NULL DEFAULT '',
  size INTEGER NOT NULL DEFAULT 0,
  original_stored INTEGER NOT NULL DEFAULT 0,
  status INTEGER NOT NULL DEFAULT 0,
  rcpt_text TEXT NOT NULL DEFAULT '',
  reason_text TEXT NOT NULL DEFAULT '',
  filename_text TEXT NOT NULL DEFAULT '');
CREATE TABLE recipients(rid INTEGER NOT NULL REFERENCES items(rid) ON DELETE CASCADE, seq INTEGER NOT NULL,
  address TEXT NOT NULL, PRIMARY KEY(rid, seq)) WITHOUT ROWID;
CREATE TABLE reasons(rid INTEGER NOT NULL REFERENCES items(rid) ON DELETE CASCADE, seq INTEGER NOT NULL,
  reason TEXT NOT NULL, PRIMARY KEY(rid, seq)) WITHOUT ROWID;
CREATE TABLE parts(rid INTEGER NOT NULL REFERENCES items(rid) ON DELETE CASCADE, seq INTEGER NOT NULL,
  path TEXT NOT NULL, filename TEXT NOT NULL, declared_type TEXT NOT NULL, detected_type TEXT NOT NULL,
  size INTEGER NOT NULL, sha256 TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY(rid, seq)) WITHOUT ROWID;
CREATE TABLE history(rid INTEGER NOT NULL REFERENCES items(rid) ON DELETE CASCADE, seq INTEGER NOT NULL,
  at INTEGER NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL,
  PRIMARY KEY(rid, seq)) WITHOUT ROWID;
CREATE INDEX items_received ON items(received, id);
)sql";

// Version 2: the indexes that make a filtered page fast at 100,000 items, and the trigram table
// (filled from the rows version 1 already has).
constexpr const char* schema_v2 = R"sql(
CREATE INDEX items_status_received ON items(status, received, id);
CREATE INDEX reasons_reason ON reasons(reason);
CREATE INDEX parts_detected ON parts(action, detected_type);
CREATE VIRTUAL TABLE search USING fts5(sender, recipient, subject, reason, filename, other,
  tokenize = 'trigram');
INSERT INTO search(rowid, sender, recipient, subject, reason, filename, other)
  SELECT rid, mail_from || char(10) || hdr_from, rcpt_text || char(10) || hdr_to, subject, reason_text,
         filename_text, message_id || char(10) || id FROM items;
)sql";

// Version 3: the status index also covers size, so stats() (count, bytes and oldest per status)
// reads the index alone instead of every row (230 -> about 20 ms at 100,000 items).
constexpr const char* schema_v3 = R"sql(
DROP INDEX items_status_received;
CREATE INDEX items_status_received ON items(status, received, id, size);
)sql";

constexpr const char* migrations[] = {schema_v1, schema_v2, schema_v3};
static_assert(std::size(migrations) == schema_version);

// --- the backend ----------------------------------------------------------------------------

constexpr std::string_view item_columns =
    "items.rid, id, received, mail_from, hdr_from, hdr_to, subject, message_id, verdict, size, "
    "original_stored, status";

class sqlite_index final : public quarantine_index {
 public:
  explicit sqlite_index(sqlite3* db) : db_(db) {}
  ~sqlite_index() override { sqlite3_close_v2(db_); }

  std::error_code open(std::error_code& ec) {
    sqlite3_busy_timeout(db_, busy_timeout_ms);
    // WAL: readers (the console's list) never block the relay's put, and a crash never corrupts.
    // cache_size: up to 64 MiB of pages kept by this connection (allocated as used), so a search
    // over 100,000 items reads memory rather than making a pread per page; not mmap, whose I/O
    // errors are SIGBUS in the relay.
    for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
                            "PRAGMA trusted_schema=OFF", "PRAGMA cache_size=-65536"}) {
      if (int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); rc != SQLITE_OK) return ec = sqlite_error(rc);
    }
    if ((ec = migrate())) return ec;
    // Per connection (temp): the trigram statistics that rare_trigrams reads.
    if (int rc = sqlite3_exec(db_, "CREATE VIRTUAL TABLE temp.search_vocab USING fts5vocab(main, search, 'row')",
                              nullptr, nullptr, nullptr);
        rc != SQLITE_OK)
      return ec = sqlite_error(rc);
    return ec;
  }

  std::error_code put(const index_item& item) override {
    const std::lock_guard lock(mutex_);
    transaction tx(db_);
    if (!tx) return tx.error();
    statement up(db_,
                 "INSERT INTO items(id, received, mail_from, hdr_from, hdr_to, subject, message_id, verdict, size, "
                 "original_stored, status, rcpt_text, reason_text, filename_text) "
                 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14) ON CONFLICT(id) DO UPDATE SET "
                 "received=?2, mail_from=?3, hdr_from=?4, hdr_to=?5, subject=?6, message_id=?7, verdict=?8, "
                 "size=?9, original_stored=?10, rcpt_text=?12, reason_text=?13, filename_text=?14 RETURNING rid, "
                 "(SELECT count(*) FROM history WHERE history.rid = items.rid)");
    std::vector<std::string> reason_list = item.reasons;
    std::vector<std::string> filenames;
    for (const auto& p : item.parts) {
      if (!p.reason.empty()) reason_list.push_back(p.reason);
      if (!p.filename.empty()) filenames.push_back(p.filename);
    }
    const std::string rcpt_text = join_lines(item.rcpt_to), reason_text = join_lines(reason_list),
                      filename_text = join_lines(filenames);
    up.bind(1, item.id);
    up.bind(2, item.received);
    up.bind(3, item.mail_from);
    up.bind(4, item.from);
    up.bind(5, item.to);
    up.bind(6, item.subject);
    up.bind(7, item.message_id);
    up.bind(8, item.verdict);
    up.bind(9, static_cast<std::int64_t>(item.size));
    up.bind(10, std::int64_t{item.original_stored});
    up.bind(11, static_cast<std::int64_t>(item.status));
    up.bind(12, rcpt_text);
    up.bind(13, reason_text);
    up.bind(14, filename_text);
    int rc = up.step();
    if (rc != SQLITE_ROW) return sqlite_error(rc);
    const std::int64_t rid = up.integer(0);
    const bool had_history = up.integer(1) > 0;
    if (!up.run()) return sqlite_error(sqlite3_errcode(db_));

    for (const char* sql : {"DELETE FROM recipients WHERE rid=?1", "DELETE FROM reasons WHERE rid=?1",
                            "DELETE FROM parts WHERE rid=?1", "DELETE FROM search WHERE rowid=?1"}) {
      statement del(db_, sql);
      del.bind(1, rid);
      if (!del.run()) return sqlite_error(sqlite3_errcode(db_));
    }
    if (!insert_list(rid, "INSERT INTO recipients(rid, seq, address) VALUES(?1,?2,?3)", item.rcpt_to) ||
        !insert_list(rid, "INSERT INTO reasons(rid, seq, reason) VALUES(?1,?2,?3)", item.reasons)) {
      return sqlite_error(sqlite3_errcode(db_));
    }
    statement part(db_,
                   "INSERT INTO parts(rid, seq, path, filename, declared_type, detected_type, size, sha256, action, "
                   "reason) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
    for (std::size_t i = 0; i < item.parts.size(); ++i) {
      const auto& p = item.parts[i];
      part.bind(1, rid);
      part.bind(2, static_cast<std::int64_t>(i));
      part.bind(3, p.path);
      part.bind(4, p.filename);
      part.bind(5, p.declared_type);
      part.bind(6, p.detected_type);
      part.bind(7, static_cast<std::int64_t>(p.size));
      part.bind(8, p.sha256);
      part.bind(9, p.action);
      part.bind(10, p.reason);
      if (!part.run()) return sqlite_error(sqlite3_errcode(db_));
      part.reset();
    }
    // A new record takes the history the caller has (rebuild from the files); an existing one
    // keeps its own: operators' actions are never undone by a re-store.
    if (!had_history) {
      for (const auto& h : item.history) {
        if (auto ec = append_history(rid, h)) return ec;
      }
    }
    statement fts(db_,
                  "INSERT INTO search(rowid, sender, recipient, subject, reason, filename, other) "
                  "VALUES(?1,?2,?3,?4,?5,?6,?7)");
    fts.bind(1, rid);
    fts.bind(2, item.mail_from + "\n" + item.from);
    fts.bind(3, rcpt_text + "\n" + item.to);
    fts.bind(4, item.subject);
    fts.bind(5, reason_text);
    fts.bind(6, filename_text);
    fts.bind(7, item.message_id + "\n" + item.id);
    if (!fts.run()) return sqlite_error(sqlite3_errcode(db_));
    return tx.commit();
  }

  std::optional<index_item> get(std::string_view id) override {
    const std::lock_guard lock(mutex_);
    transaction tx(db_, false);  // one snapshot for the row and its lists
    if (!tx) return std::nullopt;
    statement q(db_, std::string("SELECT ") + std::string(item_columns) + " FROM items WHERE id=?1");
    q.bind(1, id);
    if (q.step() != SQLITE_ROW) return std::nullopt;
    std::int64_t rid = 0;
    index_item item = read_item(q, rid);
    read_lists(rid, item);
    statement h(db_, "SELECT at, who, action, result, detail FROM history WHERE rid=?1 ORDER BY seq");
    h.bind(1, rid);
    while (h.step() == SQLITE_ROW) item.history.push_back({h.integer(0), h.text(1), h.text(2), h.text(3), h.text(4)});
    return item;
  }

  item_page list(const item_filter& f) override {
    const std::lock_guard lock(mutex_);
    transaction tx(db_, false);  // the page and its total from one snapshot
    item_page page;
    if (!tx) return page;
    std::string where = " WHERE 1";
    std::vector<std::string> binds;
    auto bind_next = [&](std::string v) {
      binds.push_back(std::move(v));
      return "?" + std::to_string(binds.size());
    };
    std::string match;
    bool any_text = false;
    const std::int64_t rows = approximate_rows();
    auto text_criterion = [&](const std::string& query, std::string_view fts_column,
                              std::initializer_list<std::string_view> columns) {
      if (query.empty()) return;
      any_text = true;
      const std::string terms = rare_trigrams(ascii_lower(query), fts_column, rows);
      if (!terms.empty()) match += (match.empty() ? "" : " AND ") + terms;
      const std::string p = bind_next(like_pattern(query));
      where += " AND (0";
      for (const auto col : columns) where += " OR " + std::string(col) + " LIKE " + p + " ESCAPE '\\'";
      where += ")";
    };
    text_criterion(f.sender, "sender", {"mail_from", "hdr_from"});
    text_criterion(f.recipient, "recipient", {"rcpt_text", "hdr_to"});
    text_criterion(f.subject, "subject", {"subject"});
    text_criterion(f.reason, "reason", {"reason_text"});
    text_criterion(f.filename, "filename", {"filename_text"});
    text_criterion(f.text, "",
                   {"mail_from", "hdr_from", "rcpt_text", "hdr_to", "subject", "message_id", "filename_text", "id"});
    if (!match.empty()) where += " AND items.rid IN (SELECT rowid FROM search WHERE search MATCH " + bind_next(match) + ")";
    if (f.since) where += " AND received >= " + std::to_string(*f.since);
    if (f.until) where += " AND received < " + std::to_string(*f.until);
    if (f.status) where += " AND status = " + std::to_string(static_cast<int>(*f.status));

    const std::size_t limit = std::min(f.limit, max_page);
    std::vector<std::int64_t> rids;
    if (any_text) {
      // A text criterion is checked row by row: one pass in table order (sequential reads; walking
      // the received index would read the rows at random) gives the total and the matches, of which
      // the page is sorted out here; its rows are then read by rowid.
      statement all(db_, "SELECT items.rid, received, id FROM items" + where);
      for (std::size_t i = 0; i < binds.size(); ++i) all.bind(static_cast<int>(i + 1), binds[i]);
      struct match_row {
        std::int64_t received, rid;
        std::string id;
      };
      std::vector<match_row> matches;
      while (all.step() == SQLITE_ROW) matches.push_back({all.integer(1), all.integer(0), all.text(2)});
      page.total = matches.size();
      const auto newer = [](const match_row& a, const match_row& b) {
        return a.received != b.received ? a.received > b.received : a.id > b.id;
      };
      const std::size_t end = std::min<std::size_t>(matches.size(), f.offset + limit);
      std::partial_sort(matches.begin(), matches.begin() + static_cast<std::ptrdiff_t>(end), matches.end(), newer);
      statement one(db_, std::string("SELECT ") + std::string(item_columns) + " FROM items WHERE rid=?1");
      for (std::size_t i = f.offset; i < end; ++i) {
        one.bind(1, matches[i].rid);
        if (one.step() == SQLITE_ROW) {
          std::int64_t rid = 0;
          page.items.push_back(read_item(one, rid));
          rids.push_back(rid);
        }
        one.reset();
      }
      for (std::size_t i = 0; i < page.items.size(); ++i) read_lists(rids[i], page.items[i]);
      return page;
    }

    statement count(db_, "SELECT count(*) FROM items" + where);
    for (std::size_t i = 0; i < binds.size(); ++i) count.bind(static_cast<int>(i + 1), binds[i]);
    if (count.step() == SQLITE_ROW) page.total = static_cast<std::uint64_t>(count.integer(0));

    statement q(db_, std::string("SELECT ") + std::string(item_columns) + " FROM items" + where +
                         " ORDER BY received DESC, id DESC LIMIT " + std::to_string(limit) + " OFFSET " +
                         std::to_string(f.offset));
    for (std::size_t i = 0; i < binds.size(); ++i) q.bind(static_cast<int>(i + 1), binds[i]);
    while (q.step() == SQLITE_ROW) {
      std::int64_t rid = 0;
      page.items.push_back(read_item(q, rid));
      rids.push_back(rid);
    }
    for (std::size_t i = 0; i < rids.size(); ++i) read_lists(rids[i], page.items[i]);
    return page;
  }

  std::error_code set_status(std::string_view id, item_status status, const history_entry& entry) override {
    const std::lock_guard lock(mutex_);
    transaction tx(db_);
    if (!tx) return tx.error();
    statement up(db_, "UPDATE items SET status=?2 WHERE id=?1 RETURNING rid");
    up.bind(1, id);
    up.bind(2, static_cast<std::int64_t>(status));
    const int rc = up.step();
    if (rc == SQLITE_DONE) return std::make_error_code(std::errc::no_such_file_or_directory);
    if (rc != SQLITE_ROW) return sqlite_error(rc);
    const std::int64_t rid = up.integer(0);
    if (!up.run()) return sqlite_error(sqlite3_errcode(db_));
    if (auto ec = append_history(rid, entry)) return ec;
    return tx.commit();
  }

  std::error_code add_history(std::string_view id, const history_entry& entry) override {
    const std::lock_guard lock(mutex_);
    transaction tx(db_);
    if (!tx) return tx.error();
    statement q(db_, "SELECT rid FROM items WHERE id=?1");
    q.bind(1, id);
    if (q.step() != SQLITE_ROW) return std::make_error_code(std::errc::no_such_file_or_directory);
    if (auto ec = append_history(q.integer(0), entry)) return ec;
    return tx.commit();
  }

  std::vector<std::string> expired_candidates(std::int64_t cutoff, std::size_t limit) override {
    const std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    statement q(db_,
                "SELECT id FROM items WHERE status IN (?1, ?2) AND received < ?3 ORDER BY received, id LIMIT ?4");
    q.bind(1, static_cast<std::int64_t>(item_status::held));
    q.bind(2, static_cast<std::int64_t>(item_status::released));
    q.bind(3, cutoff);
    q.bind(4, static_cast<std::int64_t>(limit));
    while (q.step() == SQLITE_ROW) out.push_back(q.text(0));
    return out;
  }

  index_stats stats() override {
    const std::lock_guard lock(mutex_);
    transaction tx(db_, false);
    index_stats s;
    if (!tx) return s;
    statement q(db_, "SELECT status, count(*), sum(size), min(received) FROM items GROUP BY status");
    while (q.step() == SQLITE_ROW) {
      const auto n = static_cast<std::uint64_t>(q.integer(1));
      s.total += n;
      switch (static_cast<item_status>(q.integer(0))) {
        case item_status::held:
          s.held = n;
          s.bytes += static_cast<std::uint64_t>(q.integer(2));
          s.oldest_held = q.integer(3);
          break;
        case item_status::released:
          s.released = n;
          s.bytes += static_cast<std::uint64_t>(q.integer(2));
          break;
        case item_status::deleted: s.deleted = n; break;
        case item_status::expired: s.expired = n; break;
      }
    }
    statement r(db_, "SELECT reason, count(*) AS n FROM reasons GROUP BY reason ORDER BY n DESC, reason LIMIT 20");
    while (r.step() == SQLITE_ROW) s.by_reason.emplace_back(r.text(0), static_cast<std::uint64_t>(r.integer(1)));
    statement t(db_,
                "SELECT detected_type, count(*) AS n FROM parts WHERE action='quarantined' GROUP BY detected_type "
                "ORDER BY n DESC, detected_type LIMIT 20");
    while (t.step() == SQLITE_ROW)
      s.by_detected_type.emplace_back(t.text(0), static_cast<std::uint64_t>(t.integer(1)));
    return s;
  }

  std::error_code clear() override {
    const std::lock_guard lock(mutex_);
    transaction tx(db_);
    if (!tx) return tx.error();
    for (const char* sql : {"DELETE FROM history", "DELETE FROM parts", "DELETE FROM reasons", "DELETE FROM recipients",
                            "DELETE FROM search", "DELETE FROM items"}) {
      if (int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); rc != SQLITE_OK) return sqlite_error(rc);
    }
    return tx.commit();
  }

 private:
  // BEGIN IMMEDIATE ... COMMIT, rolled back unless committed. IMMEDIATE takes the write lock at
  // once, so two processes never deadlock upgrading read locks (busy_timeout then just waits).
  // Readers use a plain BEGIN: one snapshot, no lock against writers (WAL).
  class transaction {
   public:
    explicit transaction(sqlite3* db, bool write = true) : db_(db) {
      rc_ = sqlite3_exec(db_, write ? "BEGIN IMMEDIATE" : "BEGIN", nullptr, nullptr, nullptr);
    }
    ~transaction() {
      if (rc_ == SQLITE_OK && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;
    explicit operator bool() const noexcept { return rc_ == SQLITE_OK; }
    std::error_code error() const { return sqlite_error(rc_); }
    std::error_code commit() {
      const int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
      if (rc != SQLITE_OK) return sqlite_error(rc);
      done_ = true;
      return {};
    }

   private:
    sqlite3* db_;
    int rc_;
    bool done_ = false;
  };

  std::error_code migrate() {
    transaction tx(db_);
    if (!tx) return tx.error();
    statement v(db_, "PRAGMA user_version");
    if (v.step() != SQLITE_ROW) return sqlite_error(sqlite3_errcode(db_));
    const auto version = static_cast<int>(v.integer(0));
    v.run();
    // A newer file (a downgrade): refuse rather than write rows an old schema would misread.
    if (version > schema_version) return std::make_error_code(std::errc::protocol_not_supported);
    if (version == schema_version) return tx.commit();
    for (int i = version; i < schema_version; ++i) {
      if (int rc = sqlite3_exec(db_, migrations[i], nullptr, nullptr, nullptr); rc != SQLITE_OK)
        return sqlite_error(rc);
    }
    const std::string set = "PRAGMA user_version=" + std::to_string(schema_version);
    if (int rc = sqlite3_exec(db_, set.c_str(), nullptr, nullptr, nullptr); rc != SQLITE_OK) return sqlite_error(rc);
    return tx.commit();
  }

  std::int64_t approximate_rows() {
    statement q(db_, "SELECT max(rid) FROM items");  // rowids grow by one per new item
    return q.step() == SQLITE_ROW ? q.integer(0) : 0;
  }

  // The FTS5 condition for a text criterion: the two rarest of its trigrams (by the number of rows
  // holding them, from the fts5vocab table), each a quoted literal. Any trigram of the query is a
  // necessary condition and the exact check follows, so fewer, rarer ones read the smallest
  // doclists: a query like "example.jp", whose trigrams are in every row, would otherwise read
  // every doclist in full. "" when the query is shorter than a trigram or even its rarest trigram
  // is in more than a fifth of the rows (then the exact scan alone is cheaper).
  std::string rare_trigrams(const std::string& query, std::string_view column, std::int64_t rows) {
    std::vector<std::size_t> starts;
    for (std::size_t i = 0; i < query.size(); ++i)
      if ((static_cast<unsigned char>(query[i]) & 0xC0) != 0x80) starts.push_back(i);
    if (starts.size() < trigram) return {};
    starts.push_back(query.size());
    // Up to max_probes trigrams spread over the query: each doc count costs a doclist read
    // (milliseconds for a trigram in every row), so they are cached per connection for a while;
    // a stale count only makes the choice a little less good, never a result wrong.
    constexpr std::size_t max_probes = 6;
    const std::size_t total = starts.size() - trigram;
    const auto now = std::chrono::steady_clock::now();
    if (now - vocab_cache_time_ > std::chrono::minutes(10) || vocab_cache_.size() > 10'000) {
      vocab_cache_.clear();
      vocab_cache_time_ = now;
    }
    std::vector<std::pair<std::int64_t, std::string>> counted;
    statement vocab(db_, "SELECT doc FROM temp.search_vocab WHERE term = ?1");
    for (std::size_t k = 0; k < std::min(total, max_probes); ++k) {
      const std::size_t i = total <= max_probes ? k : k * (total - 1) / (max_probes - 1);
      std::string t = query.substr(starts[i], starts[i + trigram] - starts[i]);
      auto cached = vocab_cache_.find(t);
      if (cached == vocab_cache_.end()) {
        vocab.bind(1, t);
        const std::int64_t docs = vocab.step() == SQLITE_ROW ? vocab.integer(0) : 0;
        vocab.reset();
        cached = vocab_cache_.emplace(t, docs).first;
      }
      counted.emplace_back(cached->second, std::move(t));
    }
    std::sort(counted.begin(), counted.end());
    counted.erase(std::unique(counted.begin(), counted.end()), counted.end());
    if (counted.front().first * 5 > rows) return {};
    std::string out;
    for (std::size_t i = 0; i < counted.size() && i < 2; ++i) {
      if (!out.empty()) out += " AND ";
      if (!column.empty()) out += std::string(column) + " : ";
      out += fts_phrase(counted[i].second);
    }
    return out;
  }

  bool insert_list(std::int64_t rid, const char* sql, const std::vector<std::string>& values) {
    statement s(db_, sql);
    for (std::size_t i = 0; i < values.size(); ++i) {
      s.bind(1, rid);
      s.bind(2, static_cast<std::int64_t>(i));
      s.bind(3, values[i]);
      if (!s.run()) return false;
      s.reset();
    }
    return true;
  }

  std::error_code append_history(std::int64_t rid, const history_entry& h) {
    statement s(db_,
                "INSERT INTO history(rid, seq, at, who, action, result, detail) VALUES(?1, "
                "(SELECT coalesce(max(seq), -1) + 1 FROM history WHERE rid=?1), ?2, ?3, ?4, ?5, ?6)");
    s.bind(1, rid);
    s.bind(2, h.at);
    s.bind(3, h.who);
    s.bind(4, h.action);
    s.bind(5, h.result);
    s.bind(6, h.detail);
    return s.run() ? std::error_code() : sqlite_error(sqlite3_errcode(db_));
  }

  static index_item read_item(statement& q, std::int64_t& rid) {
    index_item item;
    rid = q.integer(0);
    item.id = q.text(1);
    item.received = q.integer(2);
    item.mail_from = q.text(3);
    item.from = q.text(4);
    item.to = q.text(5);
    item.subject = q.text(6);
    item.message_id = q.text(7);
    item.verdict = q.text(8);
    item.size = static_cast<std::uint64_t>(q.integer(9));
    item.original_stored = q.integer(10) != 0;
    const auto st = q.integer(11);
    item.status = st >= 0 && st <= 3 ? static_cast<item_status>(st) : item_status::held;
    return item;
  }

  void read_lists(std::int64_t rid, index_item& item) {
    statement r(db_, "SELECT address FROM recipients WHERE rid=?1 ORDER BY seq");
    r.bind(1, rid);
    while (r.step() == SQLITE_ROW) item.rcpt_to.push_back(r.text(0));
    statement why(db_, "SELECT reason FROM reasons WHERE rid=?1 ORDER BY seq");
    why.bind(1, rid);
    while (why.step() == SQLITE_ROW) item.reasons.push_back(why.text(0));
    statement p(db_,
                "SELECT path, filename, declared_type, detected_type, size, sha256, action, reason FROM parts "
                "WHERE rid=?1 ORDER BY seq");
    p.bind(1, rid);
    while (p.step() == SQLITE_ROW) {
      item.parts.push_back({p.text(0), p.text(1), p.text(2), p.text(3), static_cast<std::uint64_t>(p.integer(4)),
                            p.text(5), p.text(6), p.text(7)});
    }
  }

  sqlite3* db_;
  std::mutex mutex_;  // guards the connection and the cache below
  std::map<std::string, std::int64_t, std::less<>> vocab_cache_;  // trigram -> rows (rare_trigrams)
  std::chrono::steady_clock::time_point vocab_cache_time_{};
};

// "2026-11-22T01:35:12Z" -> Unix seconds (UTC); the only form quarantine_store writes.
std::optional<std::int64_t> parse_rfc3339_utc(std::string_view s) {
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
    return std::nullopt;
  std::tm tm{};
  int fields[6] = {};
  const std::size_t at[6] = {0, 5, 8, 11, 14, 17};
  const std::size_t len[6] = {4, 2, 2, 2, 2, 2};
  for (int i = 0; i < 6; ++i) {
    for (std::size_t k = 0; k < len[i]; ++k) {
      const char c = s[at[i] + k];
      if (c < '0' || c > '9') return std::nullopt;
      fields[i] = fields[i] * 10 + (c - '0');
    }
  }
  tm.tm_year = fields[0] - 1900;
  tm.tm_mon = fields[1] - 1;
  tm.tm_mday = fields[2];
  tm.tm_hour = fields[3];
  tm.tm_min = fields[4];
  tm.tm_sec = fields[5];
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60)
    return std::nullopt;
  return static_cast<std::int64_t>(::timegm(&tm));
}

std::string string_member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

const json::object* object_member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_object() ? &v->get_object() : nullptr;
}

std::int64_t int_member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
  return 0;
}

}  // namespace

const char* to_string(item_status s) noexcept {
  switch (s) {
    case item_status::held: return "held";
    case item_status::released: return "released";
    case item_status::deleted: return "deleted";
    case item_status::expired: return "expired";
  }
  return "held";
}

std::optional<item_status> parse_item_status(std::string_view s) noexcept {
  for (const auto st : {item_status::held, item_status::released, item_status::deleted, item_status::expired}) {
    if (s == to_string(st)) return st;
  }
  return std::nullopt;
}

std::unique_ptr<quarantine_index> open_sqlite_index(const std::filesystem::path& file, std::error_code& ec) {
  ec.clear();
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(file.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                                 nullptr);
  if (rc != SQLITE_OK) {
    ec = sqlite_error(rc);
    sqlite3_close_v2(db);
    return nullptr;
  }
  auto index = std::make_unique<sqlite_index>(db);
  if (index->open(ec)) return nullptr;
  return index;
}

std::optional<index_item> index_item_from_meta(const json::object& meta) {
  index_item item;
  item.id = string_member(meta, "id");
  const auto received = parse_rfc3339_utc(string_member(meta, "created"));
  const json::value* report_value = meta.if_contains("report");
  if (item.id.empty() || !received || report_value == nullptr) return std::nullopt;
  const auto rep = sanitize::report_from_json(*report_value);
  if (!rep) return std::nullopt;
  item.received = *received;
  if (const auto* env = object_member(meta, "envelope")) {
    item.mail_from = string_member(*env, "mail_from");
    if (const json::value* r = env->if_contains("rcpt_to"); r && r->is_array()) {
      for (const auto& a : r->get_array())
        if (a.is_string()) item.rcpt_to.emplace_back(a.get_string());
    }
  }
  if (const auto* h = object_member(meta, "headers")) {
    item.from = string_member(*h, "from");
    item.to = string_member(*h, "to");
    item.subject = string_member(*h, "subject");
    item.message_id = string_member(*h, "message_id");
  }
  if (const auto* o = object_member(meta, "original")) {
    item.size = static_cast<std::uint64_t>(std::max<std::int64_t>(0, int_member(*o, "size")));
    const json::value* stored = o->if_contains("stored");
    item.original_stored = stored && stored->is_bool() && stored->get_bool();
  }
  item.verdict = sanitize::to_string(rep->result);
  item.reasons = rep->reasons;
  for (const auto& p : rep->parts) {
    item.parts.push_back({p.path, p.filename, p.declared_type, p.detected_type, p.size, p.sha256,
                          sanitize::to_string(p.action), p.reason});
  }
  if (auto st = parse_item_status(string_member(meta, "status"))) item.status = *st;
  if (const json::value* h = meta.if_contains("history"); h && h->is_array()) {
    for (const auto& e : h->get_array()) {
      if (!e.is_object()) continue;
      const auto& o = e.get_object();
      item.history.push_back({int_member(o, "at"), string_member(o, "who"), string_member(o, "action"),
                              string_member(o, "result"), string_member(o, "detail")});
    }
  }
  return item;
}

}  // namespace mukai::server
