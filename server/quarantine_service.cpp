// The operators' actions on the quarantine (quarantine_service.hpp): each checks, acts on the files
// and the spool, then records the outcome in the index, the item's state.json and the audit log.
//
// Order of a release, and why: the original is queued in outbound/ first (durable when
// store_outbound returns); only then is the item marked released. A crash in between leaves a
// queued message and an item still "held": the worse outcome would be an item marked released
// whose message was never queued.
// state.json (items/<ID>/state.json, replaced atomically): the status and history as the index has
// them after each action, so that rebuild-index restores them from the files.
#include "server/quarantine_service.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cerrno>
#include <set>

#include "sanitizers/content_inspect.hpp"
#include "sanitizers/report_json.hpp"
#include "server/line_scan.hpp"
#include "server/log_event.hpp"
#include "server/spool.hpp"

namespace mukai::server {

namespace json = boost::json;

namespace {

constexpr std::size_t max_state_size = 4 * 1024 * 1024;
constexpr std::size_t purge_batch = 256;
constexpr std::size_t max_address_length = 254;  // RFC 5321 path limit, less the angle brackets

std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
std::int64_t unix_now() { return unix_seconds(std::chrono::system_clock::now()); }

// Reads at most `cap` bytes of a regular file (never following a final symlink); `whole` says
// whether that was all of it.
std::optional<std::string> read_prefix(const std::filesystem::path& p, std::uint64_t cap, bool* whole = nullptr) {
  int fd = -1;
  do {
    fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::optional<std::string> out;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    const auto size = static_cast<std::uint64_t>(st.st_size);
    std::string data(static_cast<std::size_t>(std::min(size, cap)), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
      const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    data.resize(got);
    if (whole) *whole = size <= cap && got == size;
    out = std::move(data);
  }
  ::close(fd);
  return out;
}

// Cuts UTF-8 text at a character boundary at or below max_bytes.
std::string cut_utf8(std::string s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xc0) == 0x80) --end;
  s.resize(end);
  return s;
}

// A forward-path an operator typed: local@domain, printable, no brackets or spaces.
bool plausible_address(std::string_view a) {
  if (a.empty() || a.size() > max_address_length) return false;
  const std::size_t at = a.rfind('@');
  if (at == 0 || at == std::string_view::npos || at + 1 == a.size()) return false;
  return std::all_of(a.begin(), a.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u != 0x7f && c != '<' && c != '>' && c != '(' && c != ')' && c != ',' && c != ';' &&
           c != '\\' && c != '"';
  });
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// The content flags the item's parts carry that the policy forbids to release.
std::vector<std::string> forbidden_flags(const json::object& meta, const config::policy& pol) {
  std::set<std::string> forbidden;
  for (const auto f : pol.release_forbidden) forbidden.insert(sanitize::to_string(f));
  std::set<std::string> found;
  const json::value* report = meta.if_contains("report");
  if (report == nullptr) return {};
  const auto rep = sanitize::report_from_json(*report);
  if (!rep) return {"unreadable-report"};  // fail closed: flags unknown
  for (const auto& p : rep->parts) {
    for (const auto& f : p.flags)
      if (forbidden.contains(f)) found.insert(f);
  }
  return {found.begin(), found.end()};
}

json::object history_json(const history_entry& h) {
  return {{"at", h.at}, {"who", sanitize::to_valid_utf8(h.who)}, {"action", h.action}, {"result", h.result},
          {"detail", sanitize::to_valid_utf8(h.detail)}};
}

// The "released"/"deleted" event of one action for on_action_event (see the header).
void emit_action_event(const std::function<void(const log_event&)>& sink, std::string_view event, std::string_view id,
                       std::string_view who, std::string_view client, const action_result& r) {
  if (!sink) return;
  const bool ok = r.status == action_status::ok;
  log_event ev = quarantine_action_event(event, id, r.queue_id, who, r.to, ok ? "" : r.message);
  ev.add("client", client).add("result", ok ? "ok" : r.status == action_status::failed ? "failed" : "refused");
  sink(ev);
}

}  // namespace

quarantine_service::quarantine_service(const config::mukai_config& config, quarantine_store& store,
                                       quarantine_index& index, spool& spool_, audit_log& audit)
    : config_(config), store_(store), index_(index), spool_(spool_), audit_(audit) {}

std::optional<index_item> quarantine_service::get(std::string_view id) {
  if (!validate_quarantine_id(id)) return std::nullopt;
  return index_.get(id);
}

item_page quarantine_service::list(const item_filter& filter) { return index_.list(filter); }

index_stats quarantine_service::stats() { return index_.stats(); }

std::map<std::string, std::vector<std::string>> quarantine_service::part_flags(std::string_view id) const {
  std::map<std::string, std::vector<std::string>> flags;
  const auto meta = store_.load_meta(std::string(id));
  if (!meta) return flags;
  const json::value* report = meta->if_contains("report");
  if (report == nullptr) return flags;
  if (const auto rep = sanitize::report_from_json(*report)) {
    for (const auto& p : rep->parts) flags[p.path] = p.flags;
  }
  return flags;
}

std::optional<std::string> quarantine_service::sanitized_text(std::string_view id, std::size_t max_bytes) {
  const auto dir = store_.item_dir(id);
  if (!dir) return std::nullopt;
  auto text = read_prefix(*dir / "sanitized.txt", max_bytes + 4);
  if (!text) return std::nullopt;
  return cut_utf8(sanitize::to_valid_utf8(*text), max_bytes);
}

std::optional<std::string> quarantine_service::original_preview(std::string_view id, std::size_t max_bytes) {
  const auto dir = store_.item_dir(id);
  if (!dir) return std::nullopt;
  return read_prefix(*dir / "original.eml", max_bytes);
}

void quarantine_service::record(std::string_view id, const history_entry& h, std::string_view client,
                                std::optional<item_status> status) {
  std::error_code ec = status ? index_.set_status(id, *status, h) : index_.add_history(id, h);
  (void)ec;  // the audit log below is the record of last resort
  audit_record a{h.who, std::string(client), h.action, std::string(id), h.result, h.detail};
  (void)audit_.record(a);
  write_state(id);
}

void quarantine_service::write_state(std::string_view id) {
  const auto dir = store_.item_dir(id);
  if (!dir) return;
  std::error_code ec;
  if (!std::filesystem::is_directory(*dir, ec)) return;  // deleted or expired: nothing to keep
  const auto item = index_.get(id);
  if (!item) return;
  json::array history;
  for (const auto& h : item->history) history.emplace_back(history_json(h));
  const json::object state{{"status", to_string(item->status)}, {"history", std::move(history)}};
  // Best effort: the index is the working copy; state.json only matters to a rebuild.
  (void)write_file_atomically(store_.ops(), *dir, "state.json", json::serialize(state) + "\n");
}

action_result quarantine_service::release(std::string_view id, const std::vector<std::string>& to,
                                          std::string_view who, std::string_view client, held_release held) {
  action_result r = release_item(id, to, who, client, held);
  // The event first: the copy's delivery (logged under the same queue ID) comes after it.
  emit_action_event(on_action_event, "released", id, who, client, r);
  if (r.status == action_status::ok && notify_release) notify_release(r.queue_id);
  return r;
}

action_result quarantine_service::release_item(std::string_view id, const std::vector<std::string>& to,
                                               std::string_view who, std::string_view client,
                                               held_release held) {
  const std::lock_guard lock(action_mutex_);
  action_result out;
  const auto refuse = [&](action_status st, std::string why) {
    out.status = st;
    out.message = why;
    history_entry h{unix_now(), std::string(who), "release", st == action_status::refused ? "refused" : "failed", why};
    if (st == action_status::not_found) {
      h.result = "refused";
      (void)audit_.record({h.who, std::string(client), "release", std::string(id), h.result, why});
    } else {
      record(id, h, client, std::nullopt);
    }
    return out;
  };
  const auto item = get(id);
  if (!item) return refuse(action_status::not_found, "no such quarantine item");
  if (item->status != item_status::held && item->status != item_status::released)
    return refuse(action_status::refused, std::string("the item is ") + to_string(item->status));
  const auto meta = store_.load_meta(id);
  if (!meta) return refuse(action_status::failed, "meta.json of the item cannot be read");
  if (const auto flags = forbidden_flags(*meta, config_.pol); !flags.empty())
    return refuse(action_status::refused, "the policy forbids releasing parts flagged " + join(flags, ", "));
  if (!item->original_stored) return refuse(action_status::refused, "the original message was not stored");
  const bool unverified = unverifiable_locked(*item);
  if (unverified && held != held_release::confirmed)
    return refuse(action_status::refused,
                  "the message was held whole (" + (item->reasons.empty() ? std::string("no reason recorded") : join(item->reasons, ", ")) +
                      "): its parts were not inspected, so the policy's release_forbidden cannot be checked; "
                      "release it only after checking the original yourself, confirming that (--unverified)");

  std::vector<std::string> rcpts = to.empty() ? item->rcpt_to : to;
  if (rcpts.empty()) return refuse(action_status::refused, "the item has no envelope recipients; name them with --to");
  for (const auto& r : rcpts) {
    if (!plausible_address(r)) return refuse(action_status::refused, "not a mail address: " + r);
  }
  bool whole = false;
  // Bounded by what the relay or `mukai sanitize` could have stored (a tampered file is refused,
  // not read whole into memory).
  const std::uint64_t cap =
      2 * std::max<std::uint64_t>(config_.smtp.max_message_size, config_.pol.limit.max_message_size) + (1u << 20);
  const auto original = read_prefix(*store_.item_dir(id) / "original.eml", cap, &whole);
  if (!original || !whole) return refuse(action_status::failed, "original.eml cannot be read");

  spool_envelope env;
  env.mail_from = item->mail_from;
  env.body = has_8bit(*original) ? spool_body_type::eight_bit_mime : spool_body_type::seven_bit;
  env.smtputf8 = has_8bit(env.mail_from) || std::any_of(rcpts.begin(), rcpts.end(), [](const std::string& r) {
                   return has_8bit(r);
                 });
  env.client_address = "127.0.0.1";
  env.helo = "mukai-quarantine-release";
  for (const auto& r : rcpts) env.recipients.push_back({r, "", ""});
  const std::string queue_id = new_queue_id();
  if (auto ec = spool_.store_outbound(queue_id, *original, env))
    return refuse(action_status::failed, "cannot queue the original for delivery: " + ec.message());

  out.status = action_status::ok;
  out.queue_id = queue_id;
  out.to = rcpts;
  out.message = "released to " + std::to_string(rcpts.size()) + (rcpts.size() == 1 ? " recipient" : " recipients") +
                " as queue ID " + queue_id + (unverified ? " (held whole: released unverified, as confirmed)" : "");
  record(id,
         {unix_now(), std::string(who), "release", "ok",
          "queue=" + queue_id + " to=" + join(rcpts, ",") + (unverified ? " unverified=confirmed" : "")},
         client, item_status::released);
  return out;
}

action_result quarantine_service::remove(std::string_view id, std::string_view who, std::string_view client) {
  action_result r = remove_item(id, who, client);
  emit_action_event(on_action_event, "deleted", id, who, client, r);
  return r;
}

action_result quarantine_service::remove_item(std::string_view id, std::string_view who, std::string_view client) {
  const std::lock_guard lock(action_mutex_);
  action_result out;
  const auto item = get(id);
  if (!item) {
    out.status = action_status::not_found;
    out.message = "no such quarantine item";
    (void)audit_.record({std::string(who), std::string(client), "delete", std::string(id), "refused", out.message});
    return out;
  }
  if (item->status == item_status::deleted || item->status == item_status::expired) {
    out.status = action_status::refused;
    out.message = std::string("the item is already ") + to_string(item->status);
    record(id, {unix_now(), std::string(who), "delete", "refused", out.message}, client, std::nullopt);
    return out;
  }
  if (auto ec = store_.remove_item(id)) {
    out.status = action_status::failed;
    out.message = "cannot remove the item's files: " + ec.message();
    record(id, {unix_now(), std::string(who), "delete", "failed", out.message}, client, std::nullopt);
    return out;
  }
  out.status = action_status::ok;
  out.message = "deleted";
  record(id, {unix_now(), std::string(who), "delete", "ok", ""}, client, item_status::deleted);
  return out;
}

bool quarantine_service::unverifiable_locked(const index_item& item) const {
  return item.verdict == sanitize::to_string(sanitize::verdict::held) && !config_.pol.release_forbidden.empty();
}

bool quarantine_service::needs_unverified_confirmation(const index_item& item) {
  const std::lock_guard lock(action_mutex_);
  return unverifiable_locked(item);
}

void quarantine_service::reload(const config::mukai_config& config) {
  const std::lock_guard lock(action_mutex_);
  config_ = config;
}

purge_result quarantine_service::purge(std::chrono::system_clock::time_point now, std::string_view who) {
  const std::lock_guard lock(action_mutex_);
  purge_result result;
  const std::int64_t cutoff = unix_seconds(now) - config_.quarantine.retention.count();
  std::set<std::string, std::less<>> failed;  // not asked again in this run
  for (;;) {
    const auto batch = index_.expired_candidates(cutoff, purge_batch + failed.size());
    std::size_t fresh = 0;
    for (const auto& id : batch) {
      if (failed.contains(id)) continue;
      ++fresh;
      if (auto ec = store_.remove_item(id)) {
        failed.insert(id);
        ++result.failed;
        record(id, {unix_now(), std::string(who), "purge", "failed", "cannot remove the files: " + ec.message()},
               "local", std::nullopt);
        continue;
      }
      ++result.expired;
      record(id, {unix_now(), std::string(who), "purge", "ok", "retention"}, "local", item_status::expired);
    }
    if (fresh == 0) break;
  }
  return result;
}

std::size_t quarantine_service::rebuild_index(std::error_code& ec, std::string_view who) {
  const std::lock_guard lock(action_mutex_);
  ec.clear();
  // Cleared before listing: an item the relay stores meanwhile is either in the listing or put by
  // the relay after the clear, never lost between the two.
  if ((ec = index_.clear())) return 0;
  std::vector<std::string> ids;
  std::error_code it_ec;
  for (std::filesystem::directory_iterator it(store_.root() / "items", it_ec), end; !it_ec && it != end;
       it.increment(it_ec)) {
    const std::string name = it->path().filename().string();
    if (validate_quarantine_id(name)) ids.push_back(name);
  }
  if (it_ec && it_ec != std::errc::no_such_file_or_directory) {
    ec = it_ec;
    return 0;
  }
  std::sort(ids.begin(), ids.end());
  std::size_t indexed = 0;
  for (const auto& id : ids) {
    const auto meta = store_.load_meta(id);
    if (!meta) continue;  // not an item (or unreadable): left alone, as the relay never made it
    auto item = index_item_from_meta(*meta);
    if (!item) continue;
    // The operators' actions from state.json: they are what the index had.
    if (const auto state_text = read_prefix(*store_.item_dir(id) / "state.json", max_state_size)) {
      boost::system::error_code jec;
      const json::value v = json::parse(*state_text, jec);
      if (!jec && v.is_object()) {
        json::object wrapped = *meta;
        if (const auto* s = v.get_object().if_contains("status")) wrapped["status"] = *s;
        if (const auto* h = v.get_object().if_contains("history")) wrapped["history"] = *h;
        if (auto with_state = index_item_from_meta(wrapped)) item = std::move(with_state);
      }
    }
    if ((ec = index_.put(*item))) return indexed;
    ++indexed;
  }
  (void)audit_.record({std::string(who), "local", "rebuild-index", "", "ok", std::to_string(indexed) + " items"});
  return indexed;
}

}  // namespace mukai::server
