// What operators do with the quarantine, in one place for every front end: `mukai quarantine`
// (CLI), the web console and its JSON API. Each action checks the policy, changes the files, the
// index and the audit log, and returns a result the front end shows as it is.
//
// Release: the original message (original.eml, unsanitized, byte for byte) is queued for delivery
// in the spool's outbound/ under a new queue ID, with the original envelope sender and the original
// (or the given) recipients, so that the relay delivers it to the configured next hop with its usual
// retries and DSNs. A running `mukai serve` picks it up within seconds (notify_release, or its
// periodic scan of outbound/). Refused when policy.release_forbidden names a flag the item's parts
// carry, when the item was held whole and the operator did not confirm it (see release()), when the
// original was not stored, or when the item is not held/released.
// Delete: removes the item's files and marks it deleted (the index record and history stay).
// Status and history are also kept in items/<ID>/state.json (replaced atomically after each action),
// so that rebuild_index restores them; the audit log is the record of last resort.
// Actions of one service are serialized (one mutex). Releasing a released item queues it again
// (an operator's explicit repeat; the history shows both).
// Purge: every item past [quarantine] retention: files removed, status expired.
//
// Every action, allowed or refused, is recorded in the item's history (index) and in the audit
// log, with who did it ("cli:<OS user>", "web:<operator>"). Each release and delete is also handed
// to on_action_event as one "released"/"deleted" log event (the relay logs it; the CLI does not).
// Threading: the service may be used from several threads; each call blocks on disk I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "server/audit_log.hpp"
#include "server/quarantine_index.hpp"
#include "server/quarantine_store.hpp"

namespace mukai::server {

class spool;
class log_event;

enum class action_status { ok, not_found, refused, failed };
// Whether the operator confirmed releasing an item the engine held whole (see release()).
enum class held_release { refuse, confirmed };

struct action_result {
  action_status status = action_status::failed;
  std::string message;         // one line for the operator, English ("released to 2 recipients as queue ID ...")
  std::string queue_id;        // release: the spool queue ID of the released copy
  std::vector<std::string> to; // release: the recipients it was queued for
};

struct purge_result {
  std::size_t expired = 0;  // items whose files were removed
  std::size_t failed = 0;   // items whose files could not be removed (kept held, retried next time)
};

class quarantine_service {
 public:
  // All references must outlive the service (the configuration is copied). `spool_` receives
  // released messages.
  quarantine_service(const config::mukai_config& config, quarantine_store& store, quarantine_index& index,
                     spool& spool_, audit_log& audit);

  [[nodiscard]] std::optional<index_item> get(std::string_view id);
  [[nodiscard]] item_page list(const item_filter& filter);
  [[nodiscard]] index_stats stats();

  // The text of the sanitized message the recipients got (UTF-8, from the item's sanitized.txt),
  // at most max_bytes (cut at a character boundary); nullopt if it was not stored.
  [[nodiscard]] std::optional<std::string> sanitized_text(std::string_view id, std::size_t max_bytes = 256 * 1024);

  // The content flags of each part ("executable", ...), by MIME path, from the item's stored report
  // (the index does not keep them); empty when the report is missing or unreadable.
  [[nodiscard]] std::map<std::string, std::vector<std::string>> part_flags(std::string_view id) const;

  // The first max_bytes of original.eml, for a text preview (the caller escapes it); nullopt if absent.
  [[nodiscard]] std::optional<std::string> original_preview(std::string_view id, std::size_t max_bytes = 64 * 1024);

  // `to` empty = the original recipients. `client` = where the request came from (web: the IP
  // address; CLI: "local"), for the audit log.
  // An item the engine held whole (verdict "held": encrypted, ambiguous, over a limit, a worker
  // failure) was never inspected part by part, so policy.release_forbidden cannot be checked on
  // it: while that list is not empty, such a release is refused unless the operator confirms
  // that they checked the original themselves (held_release::confirmed: CLI --unverified, the
  // console's confirmation box, the API's "unverified": true). Fail closed: an executable inside
  // an encrypted or malformed message must not pass on one click. The confirmation is recorded.
  [[nodiscard]] action_result release(std::string_view id, const std::vector<std::string>& to, std::string_view who,
                                      std::string_view client, held_release held = held_release::refuse);
  // Whether releasing `item` needs held_release::confirmed (see release()): what the console asks.
  [[nodiscard]] bool needs_unverified_confirmation(const index_item& item);
  [[nodiscard]] action_result remove(std::string_view id, std::string_view who, std::string_view client);

  // SIGHUP: the policy (release_forbidden, size limits) and [quarantine] retention of `config`
  // apply from the next action on. Actions in progress finish with the settings they started with.
  void reload(const config::mukai_config& config);
  [[nodiscard]] purge_result purge(std::chrono::system_clock::time_point now, std::string_view who);

  // Recreates the index from items/*/meta.json and each item's state.json (status and history
  // after operators' actions). Items deleted or expired (their files gone) are not in the new
  // index. Returns the number of items indexed. `who` goes to the audit log.
  [[nodiscard]] std::size_t rebuild_index(std::error_code& ec, std::string_view who = "mukai");

  // Called after a release was queued (set by `mukai serve` so that the relay delivers it at once).
  std::function<void(const std::string& queue_id)> notify_release;

  // Called once per release or delete, allowed or not, after it was recorded (before
  // notify_release): a "released"/"deleted" event (quarantine_action_event) with the item ID, who,
  // client, result ("ok" | "refused" | "failed"), a release's queue ID and recipients, and the
  // reason when not ok. Set by `mukai serve` to its logger; unset (the CLI prints the result itself).
  std::function<void(const log_event&)> on_action_event;

 private:
  // release() and remove() without on_action_event and notify_release (called after the lock).
  action_result release_item(std::string_view id, const std::vector<std::string>& to, std::string_view who,
                             std::string_view client, held_release held);
  action_result remove_item(std::string_view id, std::string_view who, std::string_view client);
  // History in the index (with the new status, if any), the audit log, then state.json.
  void record(std::string_view id, const history_entry& h, std::string_view client, std::optional<item_status> status);
  void write_state(std::string_view id);
  // needs_unverified_confirmation with action_mutex_ held.
  bool unverifiable_locked(const index_item& item) const;

  config::mukai_config config_;  // a copy: reload() replaces it under action_mutex_
  quarantine_store& store_;
  quarantine_index& index_;
  spool& spool_;
  audit_log& audit_;
  std::mutex action_mutex_;
};

}  // namespace mukai::server
