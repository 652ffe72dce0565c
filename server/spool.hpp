// The mail spool: where a message lives from the end of DATA/BDAT until it is delivered, bounced or
// quarantined. A directory is a state, a rename is a transition; every file operation goes through
// file_ops (durable_fs.hpp) so that tests can fail each one in turn.
//
// Layout under the spool root (directories 0700, files 0600; all on ONE file system, because only a
// rename within one file system is atomic: ensure_layout refuses a layout that spans devices):
//
//   tmp/<ID>, tmp/<ID>.out.<random>   being written by a spool_writer (for incoming/, outbound/).
//                   Never acknowledged: recover() deletes everything here.
//   incoming/<ID>   received durably; "250 queued as ID" may have been sent. Raw, unsanitized.
//   active/<ID>     claimed by the scheduler for a sanitizer worker.
//   outbound/<ID>   sanitized, to be delivered.
//   deferred/<ID>   sanitized; a delivery attempt failed temporarily, delivery/<ID> says when to retry.
//   delivery/<ID>   per-recipient delivery state of outbound/<ID> or deferred/<ID> (see below),
//                   replaced with write_file_atomically, so it is always the old or the new version.
//   corrupt/<ID>.<state>[.<random>]   a file that failed verification, moved here by recover() or
//                   move_to_corrupt(): kept for an administrator, never deleted or read by mukai.
//
// Transitions, and the durability each needs (a "sync" is an fsync of that directory):
//   begin + commit       tmp/ID -> incoming/ID: write, fsync file, rename, sync incoming/.
//                        Only after commit() returns success may "250 ... queued as ID" be sent.
//   claim_incoming       incoming/ID -> active/ID, no sync: if the rename is lost in a crash the
//                        message is simply sanitized from incoming/ again (sanitizing is idempotent).
//   begin_outbound + commit, store_outbound (outbound_durability::durable: DSNs, released originals,
//                        anything without a raw copy in active/)
//                        tmp/ID.out.* -> outbound/ID, fsync file, sync outbound/, THEN unlink active/ID
//                        and sync active/. A crash between the two leaves both copies; recover()
//                        keeps both (the raw one as the backup, see below). Never loss, no duplicate.
//   store_outbound (outbound_durability::raw_copy_kept: the relay's sanitized copies)
//                        tmp/ID.out.* -> outbound/ID with NO fsync at all, and active/ID stays: the raw
//                        copy, durable since commit, is the backup until finish(). A crash may leave
//                        outbound/ID missing, empty or torn; recover() then deletes it and the raw copy
//                        is sanitized again (sanitizing is deterministic up to the quarantine ID). This
//                        saves a data fsync and two directory syncs per message: the raw copy was
//                        already made durable once, and the sanitized one can always be made again.
//   remove_active        unlink active/ID, sync active/ (after the original was durably quarantined:
//                        a held message's terminal state).
//   save_delivery_state  delivery/ID replaced atomically (fsynced). Record results right after the
//                        next hop answered: a recipient recorded "delivered" is never sent again.
//   defer                delivery/ID gets next_attempt, then outbound/ID -> deferred/ID, no sync: a
//                        lost rename only brings the retry forward.
//   requeue_deferred     deferred/ID -> outbound/ID, no sync (a lost rename delays the retry).
//   (no outbound copy)   the relay's first delivery attempt uses the sanitized copy in memory; it is
//                        written (raw_copy_kept) only when a recipient remains to retry or a DSN is
//                        due. A crash meanwhile loses nothing: active/ID is sanitized again.
//   finish_unspooled     settled from memory: unlink active/ID, sync active/, unlink delivery/ID.
//   finish               all recipients delivered or failed: unlink the sanitized copy, sync its
//                        directory (a resurrected file would be delivered again), then unlink the raw
//                        copy active/ID if there is one and sync active/ (a resurrected raw copy would
//                        be sanitized and delivered again), then unlink delivery/ID. A crash between
//                        the two syncs resurrects at most the raw copy: one duplicate delivery, the
//                        documented at-least-once window.
//
// recover() (start-up, before anything else touches the spool): purges tmp/, verifies every file of
// outbound/, deferred/ and incoming/: a sanitized copy that does not verify is deleted when its raw
// copy exists (an unsynced copy torn by a crash: it is made again) and moved to corrupt/ otherwise,
// like any other bad file. A raw copy next to a verified sanitized copy is kept as its backup in
// active/ (one in incoming/ moves there); a raw copy without one goes back to incoming/. Delivery
// states without a message are deleted, unparsable ones moved to corrupt/ (that message restarts with
// every recipient pending: duplicates, never a loss). Idempotent: if it fails half-way (an I/O error)
// it can simply run again. It reads every byte of the spool once (SHA-256 at disk speed).
//
// Spool file format (version 1). A header of LF-terminated ASCII lines, in exactly this order:
//
//   MUKAI-SPOOL 1
//   id <queue ID>                       must equal the file name
//   received <int>                      microseconds since the Unix epoch (UTC)
//   client <pct>                        client address as text
//   helo <pct>
//   esmtp 0|1
//   tls 0|1
//   from <pct>                          reverse-path; empty value = null sender <>
//   body unspecified|7bit|8bitmime      BODY=
//   smtputf8 0|1
//   ret unspecified|full|hdrs           RET=
//   envid <pct>                         ENVID= as sent (xtext), empty if absent
//   rcpt <pct address> <pct notify> <pct orcpt>      zero or more, in RCPT order
//   data
//
// then the message bytes verbatim (binary-safe), then a fixed-size trailer of 105 bytes:
//
//   "\nMUKAI-TRAILER " <20 decimal digits: message length> " " <64 hex: SHA-256> " END\n"
//
// The SHA-256 covers every byte before the trailer (header and message), so a bit flip in the
// envelope is caught as well as one in the body. <pct> is percent-encoding of every byte <= 0x20,
// >= 0x7F and '%' (as %HH, upper-case hex, and only that form is accepted): no byte of an address
// can end a field or a line, and the file stays readable with less(1). A file is valid only when the
// header parses strictly, header + message + trailer is exactly the file size, the trailer is intact
// and the digest matches; anything else (a write cut short, a bit flip, another version) is
// incomplete and never delivered.
//
// delivery/<ID> format (version 1), LF-terminated lines:
//   MUKAI-DELIVERY 1 / attempts <n> / next <int: microseconds since epoch> /
//   one "rcpt pending|delivered|failed <attempts> <pct last reply>" per envelope recipient / END
//
// Queue IDs: 16 characters of Crockford base32 (0-9 a-z without i l o u): 9 for the creation time in
// milliseconds since the epoch (enough until the year 3084), 7 random (35 bits from the OpenSSL
// CSPRNG). They sort by time as strings, are safe as file names, cannot be derived from or guessed
// from content, and "oldest message age" is computed from names alone. Collisions are caught by the
// exclusive create in tmp/ and the no-replace rename into incoming/ (a retry with a new ID / a 451).
// Every path is built from an ID only after validate_queue_id: IDs reach us from the admin tools and
// the worker protocol, and "../" must never reach the file system.
//
// Threading: every call blocks on disk: run them off the I/O thread (a thread pool). All members of
// spool are safe to call concurrently for DIFFERENT queue IDs (commit in particular: concurrent
// commits share directory fsyncs, see commit()). One queue ID has one owner at a time (the session
// until commit, then the scheduler), which calls the members for it from one thread at a time.
// recover() must run alone, before the listener and the scheduler start. A spool_writer is used by
// one thread at a time (it may move between threads) and must not outlive its spool.
#pragma once

#include <array>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "server/durable_fs.hpp"

namespace mukai::server {

enum class spool_errc {
  invalid_id = 1,      // not a queue ID as new_queue_id makes them
  message_too_large,   // more bytes than spool_options allows (on write or on read)
  envelope_too_large,  // the encoded envelope exceeds spool_options::max_envelope_size
  corrupt,             // a spool or delivery-state file that does not verify
  writer_closed,       // append/commit after commit, abort or an earlier failure
  not_a_directory,     // the root or a state directory exists but is not a directory
  cross_device,        // the state directories are not all on one file system
  recipients_pending,  // finish() while a recipient still waits for delivery
  crypto_failed,       // OpenSSL digest setup failed
};
const std::error_category& spool_category() noexcept;
std::error_code make_error_code(spool_errc e) noexcept;

// A new random, time-sortable queue ID (see above). Aborts if the CSPRNG fails: an ID that could
// collide or be guessed is worse than a restart (the spool makes a restart safe).
[[nodiscard]] std::string new_queue_id();
[[nodiscard]] bool validate_queue_id(std::string_view id) noexcept;
// The creation time encoded in a valid ID (millisecond precision); nullopt for an invalid ID.
[[nodiscard]] std::optional<std::chrono::system_clock::time_point> queue_id_time(
    std::string_view id) noexcept;

enum class spool_state : std::uint8_t { incoming, active, outbound, deferred, corrupt };
[[nodiscard]] std::string_view to_string(spool_state s) noexcept;

enum class spool_body_type : std::uint8_t { unspecified, seven_bit, eight_bit_mime };
// How store_outbound makes a sanitized copy durable (see the transitions above).
enum class outbound_durability : std::uint8_t { durable, raw_copy_kept };
enum class spool_dsn_ret : std::uint8_t { unspecified, full, headers };

struct spool_recipient {
  std::string address;  // forward-path as received ("local@domain")
  std::string notify;   // NOTIFY= value as sent ("SUCCESS,FAILURE"), "" if absent
  std::string orcpt;    // ORCPT= value as sent (xtext), "" if absent
  bool operator==(const spool_recipient&) const = default;
};

// Everything the relay must remember about a message besides its bytes. Strings are stored byte for
// byte (any byte, including NUL, CR and LF, survives the round trip).
struct spool_envelope {
  std::string mail_from;  // reverse-path; "" is the null sender
  spool_body_type body = spool_body_type::unspecified;
  bool smtputf8 = false;
  spool_dsn_ret ret = spool_dsn_ret::unspecified;
  std::string envid;  // ENVID= as sent (xtext), "" if absent
  std::vector<spool_recipient> recipients;
  std::string client_address;  // "192.0.2.1", "2001:db8::1"
  std::string helo;            // EHLO/HELO argument
  bool esmtp = false;
  bool tls = false;
  std::chrono::system_clock::time_point received{};  // stored with microsecond precision (floored)
  bool operator==(const spool_envelope&) const = default;
};

struct spooled_message {
  std::string queue_id;
  spool_envelope envelope;
  std::string body;  // the message bytes exactly as appended
};

struct spool_options {
  // Largest message (bytes appended) accepted into incoming/. Must be at least the SMTP
  // max_message_size plus what the session prepends (the Received header).
  std::uint64_t max_message_size = 50ULL * 1024 * 1024 + 64 * 1024;
  // Largest sanitized message accepted into outbound/ (re-encoding can make a message grow).
  std::uint64_t max_outbound_size = 2 * (50ULL * 1024 * 1024 + 64 * 1024);
  // Largest encoded envelope header (bounds memory when reading; hostile addresses triple in size
  // when percent-encoded).
  std::size_t max_envelope_size = 1024 * 1024;
};

// Parses and verifies a complete spool file held in memory (what spool::read does after reading the
// file). spool_errc::corrupt for anything but a valid file; envelope_too_large if the header exceeds
// max_envelope_size. Exposed for tests and fuzzing.
[[nodiscard]] boost::system::result<spooled_message, std::error_code> parse_spool_file(
    std::string_view bytes, std::size_t max_envelope_size = spool_options{}.max_envelope_size);

enum class recipient_status : std::uint8_t { pending, delivered, failed };

struct recipient_delivery {
  recipient_status status = recipient_status::pending;
  std::uint32_t attempts = 0;
  std::string last_reply;  // the next hop's last reply (for logs and the DSN); stored up to 512 bytes
  bool operator==(const recipient_delivery&) const = default;
};

struct delivery_state {
  std::uint32_t attempts = 0;                            // delivery attempts of the message
  std::chrono::system_clock::time_point next_attempt{};  // epoch: as soon as possible
  std::vector<recipient_delivery> recipients;            // parallel to spool_envelope::recipients
  [[nodiscard]] bool done() const noexcept;              // no recipient is pending
  bool operator==(const delivery_state&) const = default;
};

struct recovery_report {
  std::size_t purged_tmp = 0;       // unacknowledged files deleted from tmp/
  std::size_t requeued_active = 0;  // active/ -> incoming/
  std::size_t superseded = 0;       // duplicate copies deleted: a verified copy of the same file exists
  std::size_t discarded_unsynced = 0;  // unsynced sanitized copies that did not verify; raw copy kept
  std::size_t kept_raw = 0;         // raw copies kept in active/ as the backup of a sanitized copy
  std::size_t corrupt = 0;          // files moved to corrupt/ by this run: raise an alert
  std::size_t orphan_states = 0;    // delivery/ files without a message (or leftover temporaries)
  std::size_t unknown_entries = 0;  // names that are not ours, left alone
  std::size_t incoming = 0, outbound = 0, deferred = 0;  // verified messages after recovery
  std::vector<std::string> corrupt_names;  // the new names under corrupt/, for the alert log lines
};

struct spool_counts {
  std::size_t incoming = 0, active = 0, outbound = 0, deferred = 0, corrupt = 0;
};

struct free_space_info {
  std::uint64_t available_bytes = 0;   // for an unprivileged writer (f_bavail)
  std::uint64_t available_inodes = 0;  // f_favail (max when the file system has no inode limit)
};

class spool;

// One message being written. Obtained from spool::begin (to incoming/) or spool::begin_outbound.
// Streaming: append() buffers up to 32 KiB and writes through; the message is never held whole.
// On any failure the temporary file is deleted at once and the writer is closed (later calls return
// the first error or writer_closed). Destroying a writer that was not committed aborts it.
class spool_writer {
 public:
  spool_writer(spool_writer&&) noexcept;
  spool_writer& operator=(spool_writer&&) noexcept;
  spool_writer(const spool_writer&) = delete;
  spool_writer& operator=(const spool_writer&) = delete;
  ~spool_writer();

  [[nodiscard]] const std::string& queue_id() const noexcept;
  // Message bytes so far.
  [[nodiscard]] std::uint64_t size() const noexcept;

  // Appends message bytes. message_too_large beyond the spool's limit (the writer is then closed).
  [[nodiscard]] std::error_code append(std::string_view chunk);

  // Writes the trailer, fsyncs the file, renames it into its state directory and fsyncs that
  // directory. Returns the queue ID on success: only then is the message acknowledged. On an error
  // nothing is under incoming/ (best effort: if the final directory fsync fails AND the unlink that
  // undoes the rename fails too, the complete file stays there unacknowledged: the client retries,
  // so this is a possible duplicate, never a loss). Safe to call concurrently for different writers:
  // a directory fsync started after this writer's rename covers it, so concurrent commits share them.
  [[nodiscard]] boost::system::result<std::string, std::error_code> commit();

  // Deletes the temporary file; the writer is closed. No-op when committed or closed.
  void abort() noexcept;

 private:
  friend class spool;
  boost::system::result<std::string, std::error_code> commit_unsynced();
  struct impl;
  explicit spool_writer(std::unique_ptr<impl> p) noexcept;
  std::unique_ptr<impl> impl_;
};

class spool {
 public:
  // `ops` must outlive the spool, and the spool every writer it made.
  spool(std::filesystem::path root, file_ops& ops, spool_options options = {});
  ~spool();
  spool(const spool&) = delete;
  spool& operator=(const spool&) = delete;

  // Creates the root and the state directories if missing (0700) and makes their names durable;
  // checks that all are directories on one file system.
  [[nodiscard]] std::error_code ensure_layout();

  // Start-up recovery, see above. Stops at the first I/O error (rerun it; it is idempotent).
  [[nodiscard]] boost::system::result<recovery_report, std::error_code> recover();

  // Starts a new message for incoming/ under a fresh queue ID (the tmp/ file is created here).
  [[nodiscard]] boost::system::result<spool_writer, std::error_code> begin(const spool_envelope& envelope);
  // Starts the sanitized copy of `id` for outbound/ (or a new message we generate, such as a DSN,
  // under a fresh ID). Its commit publishes outbound/ID; durable: fsyncs and then deletes active/ID
  // if present; raw_copy_kept: no fsync, active/ID stays until finish() (see the transitions above;
  // only for an ID whose raw copy is in active/). If outbound/ID exists already (a retry after an
  // error), commit keeps that copy and succeeds.
  [[nodiscard]] boost::system::result<spool_writer, std::error_code> begin_outbound(
      std::string_view id, const spool_envelope& envelope,
      outbound_durability durability = outbound_durability::durable);
  // begin_outbound + append + commit for a message already in memory.
  [[nodiscard]] std::error_code store_outbound(std::string_view id, std::string_view sanitized,
                                               const spool_envelope& envelope,
                                               outbound_durability durability = outbound_durability::durable);

  // incoming/ID -> active/ID (ENOENT if another owner took it or it is gone).
  [[nodiscard]] std::error_code claim_incoming(std::string_view id);
  // Deletes active/ID durably: the message reached a terminal state outside the spool (held and
  // durably quarantined).
  [[nodiscard]] std::error_code remove_active(std::string_view id);

  // Reads and verifies a whole message (bounded by spool_options; message_too_large otherwise,
  // corrupt when it does not verify: then move_to_corrupt it). Not for spool_state::corrupt.
  [[nodiscard]] boost::system::result<spooled_message, std::error_code> read(spool_state state,
                                                                             std::string_view id) const;
  // The envelope alone (reads at most max_envelope_size bytes). Checks the header's syntax but NOT
  // the digest: use it for scheduling decisions, read() before acting on the body.
  [[nodiscard]] boost::system::result<spool_envelope, std::error_code> read_envelope(
      spool_state state, std::string_view id) const;
  // Moves state/ID to corrupt/ID.<state>[.<random>] durably; returns the new name.
  [[nodiscard]] boost::system::result<std::string, std::error_code> move_to_corrupt(spool_state state,
                                                                                    std::string_view id);

  // IDs in a state directory, sorted (= oldest first). For corrupt: the file names there.
  [[nodiscard]] boost::system::result<std::vector<std::string>, std::error_code> list(
      spool_state state) const;
  // Where a message is (checked in the order outbound, deferred, active, incoming); nullopt if nowhere.
  [[nodiscard]] std::optional<spool_state> locate(std::string_view id) const;

  // Delivery state of outbound/ID or deferred/ID; all recipients pending when none was saved yet.
  // corrupt if the saved state does not parse or does not match the envelope's recipients.
  [[nodiscard]] boost::system::result<delivery_state, std::error_code> load_delivery_state(
      std::string_view id) const;
  // The same for a sanitized copy that is not in the spool (delivered from memory, see
  // finish_unspooled), whose envelope the caller has.
  [[nodiscard]] boost::system::result<delivery_state, std::error_code> load_delivery_state(
      std::string_view id, const spool_envelope& envelope) const;
  // Replaces delivery/ID atomically and durably. The message must be in outbound/ or deferred/.
  [[nodiscard]] std::error_code save_delivery_state(std::string_view id, const delivery_state& state);
  // Sets next_attempt in the saved state, then moves outbound/ID to deferred/ID (already in deferred/:
  // only the state changes).
  [[nodiscard]] std::error_code defer(std::string_view id,
                                      std::chrono::system_clock::time_point next_attempt);
  // IDs in deferred/ whose next attempt is due at `now`, earliest first. A deferred message whose
  // state cannot be read is reported due (the delivery attempt then surfaces the error).
  [[nodiscard]] boost::system::result<std::vector<std::string>, std::error_code> due_deferred(
      std::chrono::system_clock::time_point now) const;
  // Every message in deferred/ with its next attempt, earliest first (the same reading rules as
  // due_deferred: an unreadable state counts as due now). Reads every delivery state: for start-up
  // and periodic scans, not per tick.
  using deferred_entry = std::pair<std::chrono::system_clock::time_point, std::string>;
  [[nodiscard]] boost::system::result<std::vector<deferred_entry>, std::error_code> deferred_schedule() const;
  // deferred/ID -> outbound/ID, to be delivered now.
  [[nodiscard]] std::error_code requeue_deferred(std::string_view id);
  // Removes a message whose recipients are all delivered or failed (recipients_pending otherwise;
  // the DSNs must have been spooled before). The saved state decides, so save it first.
  [[nodiscard]] std::error_code finish(std::string_view id);
  // The same with the final state in hand, without saving it first: for an attempt that settled
  // every recipient at once (the common case), which saves one atomic file replacement and its
  // fsyncs. A crash before the removal is durable leaves the message with its previous state: those
  // recipients are sent again (the same at-least-once window as between a reply and its save).
  [[nodiscard]] std::error_code finish(std::string_view id, const delivery_state& settled);

  // Removes a message that was delivered (every recipient settled) from a sanitized copy that never
  // went to outbound/ (the relay's first attempt from memory): unlinks active/ID, syncs active/,
  // then unlinks delivery/ID if any. EEXIST if a sanitized copy is in the spool (use finish()).
  [[nodiscard]] std::error_code finish_unspooled(std::string_view id);

  // Metrics.
  [[nodiscard]] boost::system::result<spool_counts, std::error_code> counts() const;
  // Age of the oldest message in incoming/, active/, outbound/ or deferred/ (by its ID); nullopt if
  // the spool is empty.
  [[nodiscard]] std::optional<std::chrono::system_clock::duration> oldest_message_age(
      std::chrono::system_clock::time_point now) const;
  // statvfs of the spool's file system.
  [[nodiscard]] boost::system::result<free_space_info, std::error_code> free_space() const;
  // The free-space floor: true (answer MAIL with 452 4.3.1) when fewer bytes or inodes than these are
  // available, or when statvfs fails. Cheap (one statvfs): call it per MAIL or on a timer.
  [[nodiscard]] bool storage_low(std::uint64_t min_free_bytes, std::uint64_t min_free_inodes = 1000) const;

  // <root>/<state>/<id>; nullopt for an invalid ID (never a path built from unchecked input).
  [[nodiscard]] std::optional<std::filesystem::path> path_of(spool_state state, std::string_view id) const;
  [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }
  [[nodiscard]] const spool_options& options() const noexcept { return options_; }

 private:
  friend class spool_writer;
  class directory_syncer;

  enum dir_index : std::size_t {
    tmp_dir,
    incoming_dir,
    active_dir,
    outbound_dir,
    deferred_dir,
    corrupt_dir,
    delivery_dir,
    dir_count
  };

  [[nodiscard]] const std::filesystem::path& dir(spool_state s) const noexcept;
  [[nodiscard]] std::error_code sync_dir(dir_index d);
  [[nodiscard]] boost::system::result<spool_writer, std::error_code> start_writer(
      std::string id, spool_state target, const spool_envelope& envelope, outbound_durability durability);
  [[nodiscard]] std::optional<spool_state> locate_sanitized(std::string_view id) const;
  [[nodiscard]] std::error_code verify_file(spool_state state, std::string_view id) const;
  [[nodiscard]] boost::system::result<std::string, std::error_code> move_to_corrupt_unsynced(
      const std::filesystem::path& from, std::string_view id, std::string_view suffix);
  [[nodiscard]] std::error_code recover_sanitized(spool_state state, recovery_report& report);
  [[nodiscard]] std::error_code recover_raw(spool_state state, recovery_report& report);
  [[nodiscard]] std::error_code recover_delivery_states(recovery_report& report);

  std::filesystem::path root_;
  std::array<std::filesystem::path, dir_count> dirs_;
  file_ops& ops_;
  spool_options options_;
  std::array<std::unique_ptr<directory_syncer>, dir_count> syncers_;
};

}  // namespace mukai::server

template <>
struct std::is_error_code_enum<mukai::server::spool_errc> : std::true_type {};
