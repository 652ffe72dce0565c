// The quarantine index: one searchable record per quarantine item, so that operators find "the PDF
// from the prefecture yesterday" among 100,000 items without reading every meta.json.
//
// The files under <quarantine.dir>/items/ (quarantine_store.hpp) are the truth; the index is a
// derived, rebuildable view of them plus the status and history that operators' actions add.
// The relay writes a record in the same step that stores an item's files (quarantine_store::store
// calls put() after the item is published); `mukai quarantine rebuild-index` recreates it.
//
// quarantine_index is the interface; open_sqlite_index is the embedded backend (SQLite, WAL mode,
// schema versioned with migrations, file <quarantine.dir>/index.sqlite by default). A PostgreSQL
// backend for several relays sharing one quarantine implements the same interface.
//
// Times are Unix seconds (UTC). Strings are UTF-8 as the engine decoded them; nothing here is
// escaped: every caller that shows them (terminal, log, HTML) escapes for its medium.
// Threading: one instance may be used from several threads (the backend serializes as it needs);
// every call blocks on disk I/O, so run it off the I/O thread.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace mukai::server {

enum class item_status { held, released, deleted, expired };
[[nodiscard]] const char* to_string(item_status s) noexcept;  // "held" | "released" | "deleted" | "expired"
[[nodiscard]] std::optional<item_status> parse_item_status(std::string_view s) noexcept;

struct index_part {
  std::string path;           // MIME path, "1.2"
  std::string filename;       // decoded
  std::string declared_type;  // "application/pdf"
  std::string detected_type;  // libmagic on the decoded bytes
  std::uint64_t size = 0;
  std::string sha256;  // lower-case hex
  std::string action;  // "kept-as-text" | "converted" | "quarantined" | "discarded"
  std::string reason;
};

struct history_entry {
  std::int64_t at = 0;  // Unix seconds
  std::string who;      // "cli:root", "web:yamada", "mukai" (retention purge)
  std::string action;   // "release" | "delete" | "purge" | "view" ...
  std::string result;   // "ok" | "refused" | "failed"
  std::string detail;   // free text: recipients released to, why refused, the error
};

struct index_item {
  std::string id;
  std::int64_t received = 0;  // when the item was stored (meta.json "created")
  std::string mail_from;      // envelope
  std::vector<std::string> rcpt_to;
  std::string from, to, subject, message_id;  // header fields, decoded
  std::string verdict;                        // "sanitized" | "held"
  std::vector<std::string> reasons;
  std::uint64_t size = 0;        // of the original message
  bool original_stored = false;  // original.eml exists (release needs it)
  std::vector<index_part> parts;
  item_status status = item_status::held;
  std::vector<history_entry> history;  // oldest first; filled by get(), empty in list() results
};

// Every set criterion must match (AND). Text criteria are case-insensitive substring matches
// (ASCII case folding; Japanese text matches as written).
struct item_filter {
  std::optional<std::int64_t> since, until;  // received >= since, received < until
  std::string sender;                        // envelope sender or header From
  std::string recipient;                     // any envelope recipient or header To
  std::string subject;
  std::string reason;    // one of the reasons, or a part's reason
  std::string filename;  // any part's filename
  std::string text;      // any of: sender, recipients, From, To, Subject, Message-ID, filenames, ID
  std::optional<item_status> status;
  std::size_t offset = 0;
  std::size_t limit = 50;  // capped by the backend at 1000
};

struct item_page {
  std::vector<index_item> items;  // newest first (received, then id, descending); parts filled, history empty
  std::uint64_t total = 0;        // items matching the filter, ignoring offset/limit
};

struct index_stats {
  std::uint64_t total = 0, held = 0, released = 0, deleted = 0, expired = 0;
  std::uint64_t bytes = 0;  // sum of original sizes of items whose files still exist (held, released)
  std::optional<std::int64_t> oldest_held;  // received time of the oldest held item
  std::vector<std::pair<std::string, std::uint64_t>> by_reason;         // most frequent first
  std::vector<std::pair<std::string, std::uint64_t>> by_detected_type;  // quarantined parts, most frequent first
};

class quarantine_index {
 public:
  virtual ~quarantine_index() = default;

  // Inserts or replaces the record's metadata (idempotent: the relay may store an item twice after
  // a crash). An existing record keeps its status and history.
  [[nodiscard]] virtual std::error_code put(const index_item& item) = 0;

  [[nodiscard]] virtual std::optional<index_item> get(std::string_view id) = 0;
  [[nodiscard]] virtual item_page list(const item_filter& filter) = 0;

  // Sets the status and appends `entry` to the history in one transaction.
  [[nodiscard]] virtual std::error_code set_status(std::string_view id, item_status status,
                                                   const history_entry& entry) = 0;
  // Appends to the history without changing the status (a refused release, a failed delete).
  [[nodiscard]] virtual std::error_code add_history(std::string_view id, const history_entry& entry) = 0;

  // IDs of items with status held or released and received < cutoff (retention), oldest first.
  [[nodiscard]] virtual std::vector<std::string> expired_candidates(std::int64_t cutoff, std::size_t limit) = 0;

  [[nodiscard]] virtual index_stats stats() = 0;

  // Drops every record (used by rebuild before re-reading the files; history of items whose files
  // are gone is lost, which rebuild documents).
  [[nodiscard]] virtual std::error_code clear() = 0;
};

// Opens (creating when missing) the SQLite index at `file`: WAL mode, busy timeout, migrations up
// to the current schema version. nullptr and `ec` set on failure.
[[nodiscard]] std::unique_ptr<quarantine_index> open_sqlite_index(const std::filesystem::path& file,
                                                                  std::error_code& ec);

// The record for an item from its meta.json (quarantine_store::load_meta); nullopt when the JSON
// lacks the required members. Status and history come from meta.json's "status"/"history".
[[nodiscard]] std::optional<index_item> index_item_from_meta(const boost::json::object& meta);

}  // namespace mukai::server
