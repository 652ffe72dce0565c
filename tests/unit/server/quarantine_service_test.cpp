// quarantine_service with the real engine, a real spool and SQLite: get/list/stats, the sanitized
// text, release (queued byte for byte with the original envelope or given recipients; refused by
// policy, for a deleted item, for bad addresses), remove, purge by retention, rebuild-index keeping
// status and history, and the audit log; the "released"/"deleted" log events handed to
// on_action_event (one per action, allowed or not).
#include "server/quarantine_service.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <fstream>
#include <iterator>

#include "server/log_event.hpp"
#include "server/sanitize_job.hpp"
#include "server/spool.hpp"
#include "tests/support/sample_messages.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai;
using namespace mukai::server;
namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string message_with_attachment(std::string_view filename, std::string_view type, std::string_view base64) {
  return "From: =?UTF-8?B?55yM5bqB?= <notice@pref.example.lg.jp>\r\n"
         "To: kikaku@city.example.lg.jp\r\n"
         "Subject: =?UTF-8?B?6KuL5rGC5pu444Gu6YCB5LuY?=\r\n"  // 請求書の送付
         "Message-ID: <q1@pref.example.lg.jp>\r\n"
         "Date: Sun, 22 Nov 2026 10:00:00 +0900\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
         "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find the invoice attached.\r\n"
         "--b\r\nContent-Type: " +
         std::string(type) + "\r\nContent-Disposition: attachment; filename=\"" + std::string(filename) +
         "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + std::string(base64) + "\r\n--b--\r\n";
}

// "%PDF-1.4\n%...\n" and a DOS MZ header: enough for libmagic and the extension rules.
const std::string pdf_b64 = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKJSVFT0YK";
const std::string exe_b64 = "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA==";

struct fixture {
  testing::temp_dir dir;
  config::mukai_config cfg = config::embedded_default();
  posix_file_ops ops;
  std::unique_ptr<quarantine_index> index;
  std::optional<quarantine_store> store;
  std::optional<spool> sp;
  std::optional<audit_log> audit;
  std::optional<quarantine_service> service;

  fixture() {
    cfg.quarantine.dir = dir.path() / "quarantine";
    cfg.spool.dir = dir.path() / "spool";
    cfg.pol.release_forbidden = {config::content_flag::executable};
    cfg.quarantine.retention = std::chrono::hours(24);
    open();
  }
  void open() {
    service.reset();
    store.reset();
    std::error_code ec;
    fs::create_directories(cfg.quarantine.dir);
    index = open_sqlite_index(cfg.quarantine.dir / "index.sqlite", ec);
    REQUIRE_MESSAGE(index, ec.message());
    store.emplace(cfg.quarantine.dir, ops, index.get());
    REQUIRE_FALSE(store->ensure_layout());
    if (!sp) {
      sp.emplace(cfg.spool.dir, ops);
      REQUIRE_FALSE(sp->ensure_layout());
    }
    if (!audit) audit.emplace(cfg.quarantine.dir / "audit.log");
    service.emplace(cfg, *store, *index, *sp, *audit);
  }
  // Sanitizes through the real engine into the store; returns the quarantine ID.
  std::string quarantine(const std::string& raw, quarantine_envelope env) {
    auto out = sanitize_one(raw, cfg.pol, &*store, env);
    REQUIRE_FALSE(out.store_error);
    REQUIRE(out.result.rep.quarantine_id);
    return *out.result.rep.quarantine_id;
  }
};

const quarantine_envelope default_env{"notice@pref.example.lg.jp",
                                      {"kikaku@city.example.lg.jp", "soumu@city.example.lg.jp"}};

}  // namespace

TEST_CASE("an item stored through the engine is indexed, with its parts and the sanitized text") {
  fixture f;
  const std::string raw = message_with_attachment("請求書.pdf", "application/pdf", pdf_b64);
  const std::string id = f.quarantine(raw, default_env);
  auto item = f.service->get(id);
  REQUIRE(item);
  CHECK(item->subject == "請求書の送付");
  CHECK(item->mail_from == "notice@pref.example.lg.jp");
  CHECK(item->rcpt_to.size() == 2);
  CHECK(item->verdict == "sanitized");
  CHECK(item->original_stored);
  CHECK(item->size == raw.size());
  bool found_pdf = false;
  for (const auto& p : item->parts) found_pdf = found_pdf || (p.filename == "請求書.pdf" && p.action == "quarantined");
  CHECK(found_pdf);
  CHECK(f.service->list({}).total == 1);
  item_filter by_name;
  by_name.filename = "請求書";
  CHECK(f.service->list(by_name).total == 1);
  CHECK(f.service->stats().held == 1);

  const auto text = f.service->sanitized_text(id);
  REQUIRE(text);
  CHECK(text->find("Please find the invoice attached.") != std::string::npos);
  CHECK(text->find("請求書.pdf") != std::string::npos);  // the notice names the removed part
  const auto cut = f.service->sanitized_text(id, 10);
  REQUIRE(cut);
  CHECK(cut->size() <= 10);
  const auto preview = f.service->original_preview(id, 20);
  REQUIRE(preview);
  CHECK(*preview == raw.substr(0, 20));
  CHECK_FALSE(f.service->sanitized_text("../../etc/passwd"));
  CHECK_FALSE(f.service->get("20261122T013512Z-0000000000"));
}

TEST_CASE("release queues the original byte for byte with the original envelope, then to given recipients") {
  fixture f;
  const std::string raw = message_with_attachment("report.pdf", "application/pdf", pdf_b64);
  const std::string id = f.quarantine(raw, default_env);
  std::vector<std::string> notified;
  f.service->notify_release = [&](const std::string& q) { notified.push_back(q); };

  auto r = f.service->release(id, {}, "cli:tester", "local");
  REQUIRE_MESSAGE(r.status == action_status::ok, r.message);
  CHECK(r.to == default_env.rcpt_to);
  CHECK(notified == std::vector<std::string>{r.queue_id});
  auto queued = f.sp->read(spool_state::outbound, r.queue_id);
  REQUIRE(queued.has_value());
  CHECK(queued->body == raw);
  CHECK(queued->envelope.mail_from == "notice@pref.example.lg.jp");
  REQUIRE(queued->envelope.recipients.size() == 2);
  CHECK(queued->envelope.recipients[1].address == "soumu@city.example.lg.jp");

  auto item = f.service->get(id);
  REQUIRE(item);
  CHECK(item->status == item_status::released);
  REQUIRE(item->history.size() == 1);
  CHECK(item->history[0].who == "cli:tester");
  CHECK(item->history[0].action == "release");
  CHECK(item->history[0].result == "ok");
  CHECK(item->history[0].detail.find(r.queue_id) != std::string::npos);

  // Again, to another recipient: a new queue ID.
  auto again = f.service->release(id, {"admin@city.example.lg.jp"}, "web:yamada", "127.0.0.1");
  REQUIRE(again.status == action_status::ok);
  CHECK(again.queue_id != r.queue_id);
  auto second = f.sp->read(spool_state::outbound, again.queue_id);
  REQUIRE(second.has_value());
  REQUIRE(second->envelope.recipients.size() == 1);
  CHECK(second->envelope.recipients[0].address == "admin@city.example.lg.jp");
  CHECK(second->body == raw);

  // Bad addresses are refused and nothing is queued.
  const auto before = f.sp->list(spool_state::outbound)->size();
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"no-at-sign"}, {"a@b>\r\nRCPT TO:<x@y"}, {"a b@c"}, {"@example.jp"}}) {
    CHECK(f.service->release(id, bad, "cli:tester", "local").status == action_status::refused);
  }
  CHECK(f.sp->list(spool_state::outbound)->size() == before);

  const std::string audit = read_file(f.cfg.quarantine.dir / "audit.log");
  CHECK(audit.find("\"who\":\"web:yamada\"") != std::string::npos);
  CHECK(audit.find("\"client\":\"127.0.0.1\"") != std::string::npos);
  CHECK(audit.find(r.queue_id) != std::string::npos);
}

TEST_CASE("release is refused by policy for an executable, for a deleted item and for an unknown ID") {
  fixture f;
  const std::string id = f.quarantine(message_with_attachment("setup.exe", "application/octet-stream", exe_b64), default_env);
  auto r = f.service->release(id, {}, "cli:tester", "local");
  CHECK(r.status == action_status::refused);
  CHECK(r.message.find("executable") != std::string::npos);
  CHECK(f.sp->list(spool_state::outbound)->empty());
  auto item = f.service->get(id);
  REQUIRE(item);
  CHECK(item->status == item_status::held);
  REQUIRE(item->history.size() == 1);
  CHECK(item->history[0].result == "refused");

  // With the policy allowing it, the same item is released.
  f.cfg.pol.release_forbidden.clear();
  CHECK(f.service->release(id, {}, "cli:tester", "local").status == action_status::refused);  // a copy
  f.service->reload(f.cfg);  // what SIGHUP does
  CHECK(f.service->release(id, {}, "cli:tester", "local").status == action_status::ok);

  CHECK(f.service->release("20261122T013512Z-0000000000", {}, "cli:tester", "local").status ==
        action_status::not_found);
  CHECK(f.service->release("../x", {}, "cli:tester", "local").status == action_status::not_found);

  const std::string pdf = f.quarantine(message_with_attachment("a.pdf", "application/pdf", pdf_b64), default_env);
  REQUIRE(f.service->remove(pdf, "cli:tester", "local").status == action_status::ok);
  CHECK(f.service->release(pdf, {}, "cli:tester", "local").status == action_status::refused);
  CHECK(f.service->remove(pdf, "cli:tester", "local").status == action_status::refused);
  CHECK(f.service->remove("20261122T013512Z-0000000000", "cli:tester", "local").status == action_status::not_found);
  CHECK_FALSE(fs::exists(f.cfg.quarantine.dir / "items" / pdf));
  auto deleted = f.service->get(pdf);
  REQUIRE(deleted);
  CHECK(deleted->status == item_status::deleted);
  CHECK(deleted->history.back().action == "delete");
}

// An encrypted message is held whole: the engine never looked inside, so the release policy cannot
// be checked and the operator has to confirm having checked the original.
TEST_CASE("a message held whole is released only when the operator confirms it unverified") {
  fixture f;
  const std::string id = f.quarantine(mukai::test::pgp_encrypted_message(), default_env);
  auto item = f.service->get(id);
  REQUIRE(item);
  REQUIRE(item->verdict == "held");

  auto r = f.service->release(id, {}, "cli:tester", "local");
  CHECK(r.status == action_status::refused);
  CHECK(r.message.find("held whole") != std::string::npos);
  CHECK(r.message.find("--unverified") != std::string::npos);
  CHECK(f.sp->list(spool_state::outbound)->empty());
  item = f.service->get(id);
  REQUIRE(item);
  CHECK(item->status == item_status::held);

  r = f.service->release(id, {}, "web:yamada", "192.0.2.7", held_release::confirmed);
  CHECK(r.status == action_status::ok);
  CHECK(r.message.find("unverified") != std::string::npos);
  CHECK(f.sp->list(spool_state::outbound)->size() == 1);
  item = f.service->get(id);
  REQUIRE(item);
  CHECK(item->status == item_status::released);
  REQUIRE_FALSE(item->history.empty());
  CHECK(item->history.back().detail.find("unverified=confirmed") != std::string::npos);
  CHECK(read_file(f.cfg.quarantine.dir / "audit.log").find("unverified=confirmed") != std::string::npos);

  // Without a release policy there is nothing to check: no confirmation needed.
  const std::string other = f.quarantine(mukai::test::pgp_encrypted_message(), default_env);
  f.cfg.pol.release_forbidden.clear();
  f.service->reload(f.cfg);
  CHECK(f.service->release(other, {}, "cli:tester", "local").status == action_status::ok);
}

TEST_CASE("an item without envelope recipients (mukai sanitize) needs --to") {
  fixture f;
  const std::string id = f.quarantine(message_with_attachment("a.pdf", "application/pdf", pdf_b64), {});
  auto r = f.service->release(id, {}, "cli:tester", "local");
  CHECK(r.status == action_status::refused);
  CHECK(r.message.find("--to") != std::string::npos);
  CHECK(f.service->release(id, {"x@example.lg.jp"}, "cli:tester", "local").status == action_status::ok);
}

TEST_CASE("purge expires items past retention only; rebuild-index restores status and history from the files") {
  fixture f;
  const std::string a = f.quarantine(message_with_attachment("a.pdf", "application/pdf", pdf_b64), default_env);
  const std::string b = f.quarantine(message_with_attachment("b.pdf", "application/pdf", pdf_b64), default_env);
  const std::string c = f.quarantine(message_with_attachment("c.pdf", "application/pdf", pdf_b64), default_env);
  REQUIRE(f.service->release(b, {}, "cli:tester", "local").status == action_status::ok);

  // Now: nothing is older than a day.
  auto none = f.service->purge(std::chrono::system_clock::now(), "mukai");
  CHECK(none.expired == 0);
  CHECK(f.service->stats().held == 2);

  // Rebuild before purging: the index file is lost, the files have it all.
  f.index.reset();
  f.service.reset();
  f.store.reset();
  fs::remove(f.cfg.quarantine.dir / "index.sqlite");
  fs::remove(f.cfg.quarantine.dir / "index.sqlite-wal");
  fs::remove(f.cfg.quarantine.dir / "index.sqlite-shm");
  f.open();
  CHECK(f.service->list({}).total == 0);
  std::error_code ec;
  CHECK(f.service->rebuild_index(ec, "cli:tester") == 3);
  CHECK_FALSE(ec);
  auto rb = f.service->get(b);
  REQUIRE(rb);
  CHECK(rb->status == item_status::released);
  REQUIRE(rb->history.size() == 1);
  CHECK(rb->history[0].who == "cli:tester");
  CHECK(f.service->get(a)->status == item_status::held);

  // Two days later: all three are past retention (released ones too).
  auto later = f.service->purge(std::chrono::system_clock::now() + std::chrono::hours(48), "mukai");
  CHECK(later.expired == 3);
  CHECK(later.failed == 0);
  for (const auto& id : {a, b, c}) {
    CHECK_FALSE(fs::exists(f.cfg.quarantine.dir / "items" / id));
    auto item = f.service->get(id);
    REQUIRE(item);
    CHECK(item->status == item_status::expired);
    CHECK(item->history.back().who == "mukai");
    CHECK(item->history.back().action == "purge");
  }
  CHECK(f.service->stats().expired == 3);
  CHECK(f.service->purge(std::chrono::system_clock::now() + std::chrono::hours(48), "mukai").expired == 0);
  CHECK(read_file(f.cfg.quarantine.dir / "audit.log").find("\"action\":\"rebuild-index\"") != std::string::npos);
}

TEST_CASE("each release and delete hands one released/deleted event to on_action_event, escaped, with its result") {
  fixture f;
  const std::string pdf = f.quarantine(message_with_attachment("a.pdf", "application/pdf", pdf_b64), default_env);
  const std::string exe = f.quarantine(message_with_attachment("x.exe", "application/octet-stream", exe_b64), default_env);
  // Without a sink (the CLI), actions work and nothing is called.
  REQUIRE(f.service->release(pdf, {"first@city.example.lg.jp"}, "cli:tester", "local").status == action_status::ok);

  std::vector<boost::json::object> events;
  f.service->on_action_event = [&](const log_event& ev) {
    events.push_back(boost::json::parse(ev.to_json("2026-11-22T00:00:00.000Z", "info")).as_object());
  };
  const auto r = f.service->release(pdf, {}, "web:yamada", "192.0.2.7");
  REQUIRE(r.status == action_status::ok);
  REQUIRE(events.size() == 1);
  CHECK(events[0].at("event").as_string() == "released");
  CHECK(events[0].at("queue_id").as_string() == r.queue_id);
  CHECK(events[0].at("quarantine_id").as_string() == pdf);
  CHECK(events[0].at("operator").as_string() == "web:yamada");
  CHECK(events[0].at("client").as_string() == "192.0.2.7");
  CHECK(events[0].at("result").as_string() == "ok");
  CHECK(events[0].at("recipients").as_array() == boost::json::array{"kikaku@city.example.lg.jp", "soumu@city.example.lg.jp"});
  CHECK_FALSE(events[0].contains("reason"));

  // Refused by policy: the reason, no queue ID, no recipients.
  REQUIRE(f.service->release(exe, {}, "web:yamada", "192.0.2.7").status == action_status::refused);
  REQUIRE(events.size() == 2);
  CHECK(events[1].at("event").as_string() == "released");
  CHECK(events[1].at("result").as_string() == "refused");
  CHECK_FALSE(events[1].contains("queue_id"));
  CHECK_FALSE(events[1].contains("recipients"));
  CHECK(events[1].at("reason").as_string().find("executable") != boost::json::string::npos);

  // A hostile ID from a request: refused, and escaped in the event.
  REQUIRE(f.service->remove("../\x1b[2J\n{\"a\":1}", "web:yamada", "192.0.2.7").status == action_status::not_found);
  REQUIRE(events.size() == 3);
  CHECK(events[2].at("event").as_string() == "deleted");
  CHECK(events[2].at("result").as_string() == "refused");
  const std::string hostile(events[2].at("quarantine_id").as_string());
  CHECK(hostile.find('\x1b') == std::string::npos);
  CHECK(hostile.find('\n') == std::string::npos);

  REQUIRE(f.service->remove(pdf, "cli:root", "local").status == action_status::ok);
  REQUIRE(events.size() == 4);
  CHECK(events[3].at("event").as_string() == "deleted");
  CHECK(events[3].at("quarantine_id").as_string() == pdf);
  CHECK(events[3].at("operator").as_string() == "cli:root");
  CHECK(events[3].at("client").as_string() == "local");
  CHECK(events[3].at("result").as_string() == "ok");

  // Actions that do not release or delete (purge, rebuild) are not these events.
  std::error_code ec;
  (void)f.service->rebuild_index(ec, "cli:tester");
  (void)f.service->purge(std::chrono::system_clock::now() + std::chrono::hours(48), "mukai");
  CHECK(events.size() == 4);
}
