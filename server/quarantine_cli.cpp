// `mukai quarantine` (see quarantine_cli.hpp): parses the subcommand, opens the quarantine's
// index, store, spool and audit log from the configuration, calls quarantine_service and prints.
#include "server/quarantine_cli.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iomanip>
#include <map>
#include <ostream>
#include <set>

#include "config/config.hpp"
#include "sanitizers/report_json.hpp"
#include "server/audit_log.hpp"
#include "server/durable_fs.hpp"
#include "server/logger.hpp"
#include "server/quarantine_index.hpp"
#include "server/quarantine_service.hpp"
#include "server/quarantine_store.hpp"
#include "server/relay.hpp"
#include "server/spool.hpp"

namespace mukai::server {

namespace po = boost::program_options;
namespace json = boost::json;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_refused = 1;
constexpr int exit_usage = 2;
constexpr std::size_t preview_bytes = 4096;  // of the sanitized text in `show`

const char* usage_text =
    "usage: mukai quarantine <command> [--config FILE] ...\n"
    "\n"
    "  list [--since T] [--until T] [--sender S] [--recipient S] [--subject S] [--reason S]\n"
    "       [--filename S] [--text S] [--status held|released|deleted|expired] [--limit N] [--offset N] [--json]\n"
    "      Newest first. T: 2026-11-22, 2026-11-22T10:00:00Z or an age such as 24h, 7d. Text filters\n"
    "      are case-insensitive substrings; --text searches every field.\n"
    "  show ID [--json]        metadata, envelope, headers, reasons, parts, history, the sanitized text\n"
    "  release ID [--to ADDR]... [--unverified]\n"
    "                          deliver the original (unsanitized) to its recipients or to ADDR;\n"
    "                          a message held whole (never inspected) needs --unverified: check it first\n"
    "  delete ID               remove the item's files (the record and its history stay)\n"
    "  purge                   remove every item older than [quarantine] retention\n"
    "  rebuild-index           recreate index.sqlite from the items' files\n"
    "  stats [--json]          counts by status, reasons, detected types\n"
    "\n"
    "Without --config: the embedded default configuration (as mukai serve). Exit status: 0 done,\n"
    "1 refused or not found, 2 usage or configuration error.\n";

// Everything from a message passes through here before the terminal.
std::string safe(std::string_view s) { return escape_for_log(s); }

// JSON for a terminal: serialize() leaves C1 controls, DEL, U+2028/2029 and bidi controls raw inside
// strings; they become \uXXXX (still the same JSON value).
std::string terminal_json(const json::value& v) {
  const std::string text = json::serialize(v);
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    char32_t cp = b;
    std::size_t n = 1;
    if (b >= 0xC0 && b < 0xE0 && i + 1 < text.size()) {
      cp = ((b & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
      n = 2;
    } else if (b >= 0xE0 && b < 0xF0 && i + 2 < text.size()) {
      cp = ((b & 0x0Fu) << 12) | ((static_cast<unsigned char>(text[i + 1]) & 0x3Fu) << 6) |
           (static_cast<unsigned char>(text[i + 2]) & 0x3Fu);
      n = 3;
    }
    const bool escape = cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || cp == 0x061C ||
                        cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
    if (escape) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(cp));
      out += buf;
    } else {
      out.append(text, i, n);
    }
    i += n;
  }
  return out;
}

// At most `width` code points of an already escaped string; a cut one ends in '~'.
std::string fit(const std::string& s, std::size_t width) {
  std::vector<std::size_t> starts;  // byte offset of each code point
  for (std::size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) starts.push_back(i);
  if (starts.size() <= width || width == 0) return s;
  return s.substr(0, starts[width - 1]) + "~";
}

std::string format_time(std::int64_t t, bool seconds) {
  const auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  const std::size_t n =
      seconds ? std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm) : std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return std::string(buf, n);
}

// "2026-11-22", "2026-11-22T10:00[:00]Z" (UTC), or an age ("24h", "7d") before now.
std::optional<std::int64_t> parse_time_arg(const std::string& s) {
  if (auto age = config::parse_duration(s)) {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count() -
           age->count();
  }
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  char tail = 0;
  if (s.size() == 10 && std::sscanf(s.c_str(), "%4d-%2d-%2d", &y, &mo, &d) == 3) {
  } else if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &sec, &tail) == 7 && tail == 'Z') {
  } else if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d%c", &y, &mo, &d, &h, &mi, &tail) == 6 && tail == 'Z') {
    sec = 0;
  } else {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return static_cast<std::int64_t>(::timegm(&tm));
}

std::string operator_name() {
  const uid_t uid = ::geteuid();
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr && found->pw_name)
    return std::string("cli:") + found->pw_name;
  return "cli:uid" + std::to_string(uid);
}

json::object item_json(const index_item& it, bool with_history) {
  json::array rcpts, reasons, parts, history;
  for (const auto& r : it.rcpt_to) rcpts.emplace_back(sanitize::to_valid_utf8(r));
  for (const auto& r : it.reasons) reasons.emplace_back(sanitize::to_valid_utf8(r));
  for (const auto& p : it.parts) {
    parts.emplace_back(json::object{{"path", sanitize::to_valid_utf8(p.path)},
                                    {"filename", sanitize::to_valid_utf8(p.filename)},
                                    {"declared_type", sanitize::to_valid_utf8(p.declared_type)},
                                    {"detected_type", sanitize::to_valid_utf8(p.detected_type)},
                                    {"size", p.size},
                                    {"sha256", p.sha256},
                                    {"action", p.action},
                                    {"reason", sanitize::to_valid_utf8(p.reason)}});
  }
  json::object o{{"id", it.id},
                 {"received", format_time(it.received, true)},
                 {"status", to_string(it.status)},
                 {"verdict", it.verdict},
                 {"mail_from", sanitize::to_valid_utf8(it.mail_from)},
                 {"rcpt_to", std::move(rcpts)},
                 {"from", sanitize::to_valid_utf8(it.from)},
                 {"to", sanitize::to_valid_utf8(it.to)},
                 {"subject", sanitize::to_valid_utf8(it.subject)},
                 {"message_id", sanitize::to_valid_utf8(it.message_id)},
                 {"reasons", std::move(reasons)},
                 {"size", it.size},
                 {"original_stored", it.original_stored},
                 {"parts", std::move(parts)}};
  if (with_history) {
    for (const auto& h : it.history) {
      history.emplace_back(json::object{{"at", format_time(h.at, true)},
                                        {"who", sanitize::to_valid_utf8(h.who)},
                                        {"action", h.action},
                                        {"result", h.result},
                                        {"detail", sanitize::to_valid_utf8(h.detail)}});
    }
    o["history"] = std::move(history);
  }
  return o;
}

std::string join_safe(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += safe(s);
  }
  return out;
}

// What every subcommand needs, opened from the configuration.
struct context {
  config::mukai_config cfg;
  posix_file_ops ops;
  std::unique_ptr<quarantine_index> index;
  std::unique_ptr<quarantine_store> store;
  std::unique_ptr<spool> sp;
  std::unique_ptr<audit_log> audit;
  std::unique_ptr<quarantine_service> service;
  std::string who = operator_name();
};

int open_context(context& c, std::ostream& err) {
  std::error_code ec;
  const auto& dir = c.cfg.quarantine.dir;
  if (!std::filesystem::is_directory(dir / "items", ec)) {
    err << "mukai: no quarantine at " << safe(dir.string()) << " (wrong --config?)\n";
    return exit_refused;
  }
  c.index = open_sqlite_index(dir / "index.sqlite", ec);
  if (!c.index) {
    err << "mukai: cannot open the index " << safe((dir / "index.sqlite").string()) << ": " << ec.message() << "\n";
    return exit_refused;
  }
  c.store = std::make_unique<quarantine_store>(dir, c.ops, c.index.get());
  c.sp = std::make_unique<spool>(c.cfg.spool.dir, c.ops, spool_options_for(c.cfg));
  c.audit = std::make_unique<audit_log>(dir / "audit.log");
  c.service = std::make_unique<quarantine_service>(c.cfg, *c.store, *c.index, *c.sp, *c.audit);
  return exit_ok;
}

int usage(std::ostream& err, const std::string& message) {
  err << "mukai quarantine: " << message << "\n\n" << usage_text;
  return exit_usage;
}

int exit_for(action_status s) { return s == action_status::ok ? exit_ok : exit_refused; }

void print_table(const item_page& page, const item_filter& f, std::ostream& out) {
  out << std::left << std::setw(28) << "ID" << std::setw(17) << "RECEIVED (UTC)" << std::setw(9) << "STATUS"
      << std::setw(10) << "VERDICT" << std::setw(31) << "FROM" << "SUBJECT / REMOVED PARTS\n";
  for (const auto& it : page.items) {
    std::string from = fit(safe(it.mail_from.empty() ? it.from : it.mail_from), 30);
    std::string names;
    for (const auto& p : it.parts) {
      if (p.action != "quarantined" && p.action != "discarded") continue;
      if (!names.empty()) names += ", ";
      names += p.filename.empty() ? "(" + safe(p.declared_type) + ")" : safe(p.filename);
    }
    std::string subject = safe(it.subject);
    if (!names.empty()) subject += " [" + names + "]";
    // setw counts bytes: pad by hand so Japanese text keeps the columns roughly aligned.
    std::size_t cps = 0;
    for (const char ch : from) cps += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
    out << std::setw(28) << it.id << std::setw(17) << format_time(it.received, false) << std::setw(9)
        << to_string(it.status) << std::setw(10) << it.verdict << from << std::string(cps < 31 ? 31 - cps : 1, ' ')
        << fit(subject, 80) << "\n";
  }
  out << page.items.size() << " of " << page.total << " item" << (page.total == 1 ? "" : "s");
  if (f.offset) out << " (from offset " << f.offset << ")";
  out << "\n";
}

int cmd_list(context& c, const po::variables_map& vm, std::ostream& out, std::ostream& err) {
  item_filter f;
  for (const auto& [key, field] : {std::pair<const char*, std::optional<std::int64_t>*>{"since", &f.since},
                                   {"until", &f.until}}) {
    if (!vm.count(key)) continue;
    *field = parse_time_arg(vm[key].as<std::string>());
    if (!*field) return usage(err, std::string("--") + key + ": not a date, time or age");
  }
  for (const auto& [key, field] : {std::pair<const char*, std::string*>{"sender", &f.sender},
                                   {"recipient", &f.recipient},
                                   {"subject", &f.subject},
                                   {"reason", &f.reason},
                                   {"filename", &f.filename},
                                   {"text", &f.text}}) {
    if (vm.count(key)) *field = vm[key].as<std::string>();
  }
  if (vm.count("status")) {
    f.status = parse_item_status(vm["status"].as<std::string>());
    if (!f.status) return usage(err, "--status: held, released, deleted or expired");
  }
  f.limit = vm["limit"].as<std::size_t>();
  f.offset = vm["offset"].as<std::size_t>();
  if (f.limit == 0 || f.limit > 1000) return usage(err, "--limit: 1 to 1000");
  const auto page = c.service->list(f);
  if (vm["json"].as<bool>()) {
    json::array items;
    for (const auto& it : page.items) items.emplace_back(item_json(it, false));
    out << terminal_json(json::object{{"total", page.total}, {"offset", f.offset}, {"items", std::move(items)}})
        << "\n";
  } else {
    print_table(page, f, out);
  }
  return exit_ok;
}

int cmd_show(context& c, const std::string& id, bool as_json, std::ostream& out, std::ostream& err) {
  const auto it = c.service->get(id);
  if (!it) {
    err << "mukai: no quarantine item " << safe(id) << "\n";
    return exit_refused;
  }
  const auto text = c.service->sanitized_text(id, preview_bytes);
  if (as_json) {
    json::object o = item_json(*it, true);
    o["sanitized_text"] = text ? json::value(*text) : json::value(nullptr);
    out << terminal_json(o) << "\n";
    return exit_ok;
  }
  const auto flags = c.service->part_flags(id);
  out << "ID:          " << it->id << "\n"
      << "Status:      " << to_string(it->status) << "\n"
      << "Received:    " << format_time(it->received, true) << "\n"
      << "Verdict:     " << safe(it->verdict) << "\n"
      << "Reasons:     " << join_safe(it->reasons, ", ") << "\n"
      << "Envelope:    from <" << safe(it->mail_from) << "> to " << (it->rcpt_to.empty() ? "(none)" : "")
      << join_safe(it->rcpt_to, ", ") << "\n"
      << "From:        " << safe(it->from) << "\n"
      << "To:          " << safe(it->to) << "\n"
      << "Subject:     " << safe(it->subject) << "\n"
      << "Message-ID:  " << safe(it->message_id) << "\n"
      << "Size:        " << it->size << " bytes; original " << (it->original_stored ? "stored" : "not stored")
      << "\n"
      << "Parts:       " << it->parts.size() << "\n";
  for (const auto& p : it->parts) {
    out << "  [" << safe(p.path.empty() ? "body" : p.path) << "] " << safe(p.action) << " (" << safe(p.reason)
        << ")  " << (p.filename.empty() ? "(no name)" : "\"" + safe(p.filename) + "\"") << "\n"
        << "      declared " << safe(p.declared_type) << ", detected " << safe(p.detected_type) << ", " << p.size
        << " bytes\n";
    if (!p.sha256.empty()) out << "      sha256 " << safe(p.sha256) << "\n";
    if (auto f = flags.find(p.path); f != flags.end() && !f->second.empty())
      out << "      flags " << join_safe(f->second, ", ") << "\n";
  }
  out << "History:     " << (it->history.empty() ? "(none)" : "") << "\n";
  for (const auto& h : it->history) {
    out << "  " << format_time(h.at, true) << "  " << safe(h.who) << "  " << safe(h.action) << "  " << safe(h.result);
    if (!h.detail.empty()) out << "  " << safe(h.detail);
    out << "\n";
  }
  if (!text) {
    out << "Sanitized text: (not stored)\n";
    return exit_ok;
  }
  out << "Sanitized text (what the recipients got, first " << preview_bytes << " bytes):\n";
  std::size_t start = 0;
  while (start < text->size()) {
    std::size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    out << "  | " << safe(std::string_view(*text).substr(start, end - start)) << "\n";
    start = end + 1;
  }
  return exit_ok;
}

int cmd_stats(context& c, bool as_json, std::ostream& out) {
  const auto s = c.service->stats();
  json::array reasons, types;
  for (const auto& [k, n] : s.by_reason) reasons.emplace_back(json::object{{"reason", sanitize::to_valid_utf8(k)}, {"count", n}});
  for (const auto& [k, n] : s.by_detected_type)
    types.emplace_back(json::object{{"type", sanitize::to_valid_utf8(k)}, {"count", n}});
  if (as_json) {
    json::object o{{"total", s.total},     {"held", s.held},   {"released", s.released}, {"deleted", s.deleted},
                   {"expired", s.expired}, {"bytes", s.bytes}, {"by_reason", reasons},   {"by_detected_type", types}};
    o["oldest_held"] = s.oldest_held ? json::value(format_time(*s.oldest_held, true)) : json::value(nullptr);
    out << terminal_json(o) << "\n";
    return exit_ok;
  }
  out << "Items:       " << s.total << " (held " << s.held << ", released " << s.released << ", deleted " << s.deleted
      << ", expired " << s.expired << ")\n"
      << "Stored:      " << s.bytes << " bytes of originals\n"
      << "Oldest held: " << (s.oldest_held ? format_time(*s.oldest_held, true) : std::string("-")) << "\n"
      << "Retention:   " << c.cfg.quarantine.retention.count() / 86400 << " days\n";
  out << "Top reasons:\n";
  for (const auto& [k, n] : s.by_reason) out << "  " << std::setw(8) << std::right << n << "  " << safe(k) << "\n";
  out << "Quarantined parts by detected type:\n";
  for (const auto& [k, n] : s.by_detected_type) out << "  " << std::setw(8) << std::right << n << "  " << safe(k) << "\n";
  return exit_ok;
}

}  // namespace

const char* quarantine_cli_usage() noexcept { return usage_text; }

int run_quarantine_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.empty()) return usage(err, "no command given");
  const std::string command = args.front();
  if (command == "help" || command == "--help" || command == "-h") {
    out << usage_text;
    return exit_ok;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  po::options_description opts("quarantine");
  opts.add_options()("config", po::value<std::string>())("json", po::bool_switch())(
      "since", po::value<std::string>())("until", po::value<std::string>())("sender", po::value<std::string>())(
      "recipient", po::value<std::string>())("subject", po::value<std::string>())("reason", po::value<std::string>())(
      "filename", po::value<std::string>())("text", po::value<std::string>())("status", po::value<std::string>())(
      "limit", po::value<std::size_t>()->default_value(50))("offset", po::value<std::size_t>()->default_value(0))(
      "to", po::value<std::vector<std::string>>()->composing())("unverified", po::bool_switch())(
      "id", po::value<std::string>());
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(rest).options(opts).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return usage(err, e.what());
  }
  // Each option belongs to some commands only: a misplaced one is a mistake worth stopping for
  // (`delete --to x` must not silently delete).
  static const std::map<std::string, std::set<std::string>> allowed = {
      {"list", {"config", "json", "since", "until", "sender", "recipient", "subject", "reason", "filename", "text",
                "status", "limit", "offset"}},
      {"show", {"config", "json", "id"}},
      {"release", {"config", "id", "to", "unverified"}},
      {"delete", {"config", "id"}},
      {"purge", {"config"}},
      {"rebuild-index", {"config"}},
      {"stats", {"config", "json"}}};
  const auto cmd = allowed.find(command);
  if (cmd == allowed.end()) return usage(err, "unknown command \"" + safe(command) + "\"");
  for (const auto& [name, value] : vm) {
    if (value.defaulted() || ((name == "json" || name == "unverified") && !value.as<bool>())) continue;
    if (!cmd->second.contains(name)) return usage(err, "--" + name + " does not apply to " + command);
  }
  const bool needs_id = cmd->second.contains("id");
  if (needs_id && !vm.count("id")) return usage(err, command + " needs an ID");

  context c;
  if (vm.count("config")) {
    auto loaded = config::load_config_file(vm["config"].as<std::string>());
    for (const auto& e : loaded.errors) err << "mukai: " << config::to_string(e) << "\n";
    if (!loaded.config) return exit_usage;
    c.cfg = std::move(*loaded.config);
  } else {
    c.cfg = config::embedded_default();
  }
  if (const int rc = open_context(c, err)) return rc;
  // root changing a quarantine owned by the relay's user would leave root-owned files behind (a
  // released copy in outbound/ that the relay cannot read, an audit.log it cannot append to).
  if (command != "list" && command != "show" && command != "stats") {
    struct stat st {};
    if (::geteuid() == 0 && ::stat(c.cfg.quarantine.dir.c_str(), &st) == 0 && st.st_uid != 0) {
      const passwd* owner = ::getpwuid(st.st_uid);
      err << "mukai: the quarantine belongs to " << (owner ? safe(owner->pw_name) : std::to_string(st.st_uid))
          << ": run this as that user (sudo -u " << (owner ? safe(owner->pw_name) : std::to_string(st.st_uid))
          << " mukai quarantine " << command << " ...)\n";
      return exit_refused;
    }
  }
  // Who is the effective user; the person behind sudo is noted where the audit log keeps the origin.
  std::string client = "local";
  if (const char* sudo_user = std::getenv("SUDO_USER"); sudo_user && *sudo_user) client += " sudo:" + std::string(sudo_user);

  const std::string id = needs_id ? vm["id"].as<std::string>() : std::string();
  if (command == "list") return cmd_list(c, vm, out, err);
  if (command == "show") return cmd_show(c, id, vm["json"].as<bool>(), out, err);
  if (command == "stats") return cmd_stats(c, vm["json"].as<bool>(), out);
  if (command == "release") {
    const auto to = vm.count("to") ? vm["to"].as<std::vector<std::string>>() : std::vector<std::string>{};
    if (auto ec = c.sp->ensure_layout()) {
      err << "mukai: spool " << safe(c.cfg.spool.dir.string()) << ": " << ec.message() << "\n";
      return exit_refused;
    }
    const auto r = c.service->release(id, to, c.who, client,
                                      vm["unverified"].as<bool>() ? held_release::confirmed : held_release::refuse);
    (r.status == action_status::ok ? out : err) << (r.status == action_status::ok ? "" : "mukai: refused: ")
                                                << safe(r.message) << "\n";
    return exit_for(r.status);
  }
  if (command == "delete") {
    const auto r = c.service->remove(id, c.who, client);
    (r.status == action_status::ok ? out : err) << (r.status == action_status::ok ? "" : "mukai: refused: ")
                                                << safe(id) << ": " << safe(r.message) << "\n";
    return exit_for(r.status);
  }
  if (command == "purge") {
    const auto r = c.service->purge(std::chrono::system_clock::now(), c.who);
    out << "purged " << r.expired << " item" << (r.expired == 1 ? "" : "s") << " older than "
        << c.cfg.quarantine.retention.count() << " s";
    if (r.failed) out << "; " << r.failed << " could not be removed";
    out << "\n";
    return r.failed ? exit_refused : exit_ok;
  }
  // rebuild-index
  std::error_code ec;
  const std::size_t n = c.service->rebuild_index(ec, c.who);
  if (ec) {
    err << "mukai: rebuild-index: " << ec.message() << " after " << n << " items\n";
    return exit_refused;
  }
  out << "indexed " << n << " item" << (n == 1 ? "" : "s") << "\n";
  return exit_ok;
}

}  // namespace mukai::server
