// The quarantine on disk: what the engine removed from a message (and the raw original, when asked)
// kept for the administrator to inspect, release or delete. Written by the relay after a verdict,
// by `mukai sanitize` for the CLI, and read by the quarantine tools and the admin HTTP.
//
// Layout under the quarantine root:
//
//   <root>/items/<ID>/meta.json       metadata (UTF-8 JSON, see below)
//   <root>/items/<ID>/original.eml    the raw original message, byte for byte (when stored)
//   <root>/items/<ID>/sanitized.eml   the sanitized message the recipients got (sanitize::result.output)
//   <root>/items/<ID>/sanitized.txt   its body text, UTF-8, LF line ends (result.body_text; absent when
//                                     the engine gave none, e.g. a worker failure's fixed hold notice),
//                                     so the console shows it without the relay parsing MIME
//   <root>/items/<ID>/state.json      (written later by quarantine_service) the operators' status and
//                                     history, replaced atomically, so rebuild-index restores them
//   <root>/items/<ID>/parts/<sha256>  each quarantined part's decoded bytes, named by the lower-case
//                                     hex SHA-256 of its content (one file per distinct content
//                                     within an item)
//   <root>/index.sqlite, audit.log   the index (quarantine_index.hpp) and the audit log (audit_log.hpp)
//   <root>/tmp/                       staging: an item is built in tmp/<ID>.<random>/ and renamed
//                                     into items/<ID> in one rename, then items/ is fsynced, so an
//                                     item either exists whole or not at all. Anything in tmp/ is
//                                     a leftover of an interrupted store: purge_staging removes it.
//
// meta.json:
//   { "id": "<ID>", "created": "2026-11-22T01:35:12Z" (RFC 3339, UTC),
//     "envelope": { "mail_from": str, "rcpt_to": [str] }   (empty for the CLI),
//     "headers": { "from", "to", "subject", "date", "message_id": str }   (decoded UTF-8),
//     "report": <the report JSON, see sanitizers/report_json.hpp>,
//     "original": { "sha256": str, "size": uint, "stored": bool }   (stored: original.eml exists),
//     "parts": [ { "path": str, "sha256": str, "size": uint, "filename": str } ],
//     "status": "held", "history": [] }
//
// IDs look like "20261122T013512Z-7k2m9q4x0c": the UTC creation second, '-', then 10 characters of
// Crockford base32 (0-9 a-z without i l o u) from the OpenSSL CSPRNG (50 bits). They sort by time,
// are safe as a file name, cannot be guessed from the message, and are easy to read over the phone.
// Every path built from an ID goes through validate_quarantine_id first: IDs arrive from the CLI,
// the admin HTTP and a worker's verdict, and "../" must never reach the file system.
//
// The index: when the store has one (constructor), store() puts the item's record (from the
// published meta.json) right after publishing it, also when the item already existed (a retry), so
// the relay and `mukai sanitize --quarantine-dir` index through this one path. An index failure is a
// store error: the caller retries, and an item left published but unindexed is found again by
// rebuild-index.
//
// Invariants: files 0600, directories 0700 (file_ops); every file and directory of an item is
// fsynced before the item becomes visible; a stored part's bytes hash to the SHA-256 the engine
// reported (checked on store). Nothing under items/ is ever modified in place by this class.
// Threading: store and load_meta may run concurrently from several threads for distinct IDs (each
// store stages in its own uniquely named directory). purge_staging must not run while a store is
// in progress (it would delete that store's staging directory): call it once at start-up.
// All calls block on disk I/O: run them off the I/O thread.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "sanitizers/engine.hpp"
#include "server/durable_fs.hpp"

namespace mukai::server {

enum class quarantine_errc {
  invalid_id = 1,   // not of the form new_quarantine_id produces
  id_mismatch,      // the report names a different quarantine ID than the one we store under
  digest_mismatch,  // a part's bytes do not hash to the engine's sha256 (a bug upstream)
  id_in_use,        // items/<ID> exists and holds a different message
  not_a_directory,  // the root, items/ or tmp/ exists but is not a directory
  random_failed,    // the CSPRNG failed
};
const std::error_category& quarantine_category() noexcept;
std::error_code make_error_code(quarantine_errc e) noexcept;

// A new random, time-sortable ID (see above). Aborts if the CSPRNG fails: an ID that could
// collide or be guessed is worse than a restart.
[[nodiscard]] std::string new_quarantine_id();
[[nodiscard]] bool validate_quarantine_id(std::string_view id) noexcept;

struct quarantine_envelope {
  std::string mail_from;
  std::vector<std::string> rcpt_to;
};

struct quarantine_headers {
  std::string from, to, subject, date, message_id;  // decoded UTF-8 (invalid bytes become U+FFFD)
};

class quarantine_index;

class quarantine_store {
 public:
  // `ops` (and `index`, when given) must outlive the store.
  quarantine_store(std::filesystem::path root, file_ops& ops, quarantine_index* index = nullptr);

  // Creates root, items/ and tmp/ if missing (0700) and makes their names durable.
  [[nodiscard]] std::error_code ensure_layout();

  // Stores what r asks to keep as item `id`. Success with nothing written when there is nothing to
  // store (r.quarantine empty and !r.quarantine_original). Idempotent: when items/<id> already
  // holds the same original (the relay re-sanitizes a message after a crash) this succeeds without
  // rewriting it. On any error items/<id> either does not exist or is a complete item (a failure of
  // the final directory fsync), and only tmp/ may hold leftovers.
  [[nodiscard]] std::error_code store(const std::string& id, std::string_view original,
                                      const sanitize::result& r, const quarantine_envelope& envelope,
                                      const quarantine_headers& headers);

  // meta.json of an item; nullopt for an invalid ID, a missing item or unreadable/invalid JSON.
  [[nodiscard]] std::optional<boost::json::object> load_meta(std::string_view id) const;

  // <root>/items/<id>; nullopt for an invalid ID (never a path built from unchecked input).
  [[nodiscard]] std::optional<std::filesystem::path> item_dir(std::string_view id) const;

  // Removes an item: items/<id> is renamed into tmp/ (one rename: the item disappears whole, and a
  // crash part-way through leaves only a leftover in tmp/), items/ is fsynced, then the tree is
  // removed. ENOENT when the item does not exist.
  [[nodiscard]] std::error_code remove_item(std::string_view id);

  // Removes everything under tmp/ (leftovers of a store interrupted by a crash or an error),
  // without following symbolic links. Returns the first error; keeps going after one.
  [[nodiscard]] std::error_code purge_staging();

  [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }
  [[nodiscard]] file_ops& ops() const noexcept { return ops_; }
  // Sets the index (see above) when it could only be opened after the layout; before any store().
  void attach_index(quarantine_index* index) noexcept { index_ = index; }

 private:
  std::error_code stage_item(const std::filesystem::path& staging, const std::string& id,
                             std::string_view original, const sanitize::result& r,
                             const quarantine_envelope& envelope, const quarantine_headers& headers,
                             const std::string& original_sha256);
  std::error_code publish_item(const std::filesystem::path& staging, const std::string& id,
                               const std::string& original_sha256, std::uint64_t original_size);
  bool existing_item_matches(std::string_view id, const std::string& original_sha256,
                             std::uint64_t original_size) const;
  std::error_code remove_tree(const std::filesystem::path& p, int depth);

  std::filesystem::path root_;
  std::filesystem::path items_;
  std::filesystem::path tmp_;
  file_ops& ops_;
  quarantine_index* index_;
};

}  // namespace mukai::server

template <>
struct std::is_error_code_enum<mukai::server::quarantine_errc> : std::true_type {};
