// mukai: one binary, subcommands. Only argument handling and I/O plumbing live here; every
// decision is made by the libraries (config, sanitizers, server), so the relay and the CLI
// behave the same.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "sanitizers/report_json.hpp"
#include "server/admin_cli.hpp"
#include "server/admin_server.hpp"
#include "server/durable_fs.hpp"
#include "server/logger.hpp"
#include "server/next_hop.hpp"
#include "server/quarantine_cli.hpp"
#include "server/quarantine_index.hpp"
#include "server/privileges.hpp"
#include "server/relay.hpp"
#include "server/sd_notify.hpp"
#include "server/quarantine_store.hpp"
#include "server/sanitize_job.hpp"
#include "server/sanitizer_worker.hpp"

namespace po = boost::program_options;
using namespace mukai;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

const char* usage_text =
    "usage: mukai <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve [--config FILE]\n"
    "      Run the relay: receive mail over SMTP, sanitize it, deliver it to the next hop. Without\n"
    "      --config: the embedded default (127.0.0.1:2525, loopback clients, any recipient domain,\n"
    "      delivery to maildir:./mukai-data/outbox). SIGTERM stops, SIGHUP reloads the file\n"
    "      (the [admin] console restarts when its settings changed).\n"
    "  sanitize [--config FILE] [--quarantine-dir DIR | --no-quarantine] [--report FILE] [IN] [-o OUT]\n"
    "      Sanitize one RFC 5322 message (IN or stdin) to OUT (or stdout); the JSON report goes to\n"
    "      FILE (or stderr).\n"
    "  sanitize --input-dir DIR --output-dir DIR [--jobs N] [--config FILE] [--quarantine-dir DIR | --no-quarantine]\n"
    "      Replay every message of a directory through the policy: <name>.eml and <name>.json per input.\n"
    "  quarantine list|show|release|delete|purge|rebuild-index|stats [--config FILE] ...\n"
    "      Review, release and delete quarantined mail (`mukai quarantine help` for the options).\n"
    "  passwd [--stdin]\n"
    "      Print a password hash for [[admin.users]] password_hash. Reads the password twice from the\n"
    "      terminal without echo, or the first line of standard input with --stdin.\n"
    "  check-config --config FILE\n"
    "      Check a configuration file; print every problem with file, line, key and why.\n"
    "  version\n";

int usage_error(const std::string& message) {
  std::cerr << "mukai: " << message << "\n\n" << usage_text;
  return exit_usage;
}

bool read_all(std::istream& in, std::uint64_t cap, std::string& out) {
  // Bounded read: input beyond the message size limit is not buffered; the engine holds it.
  std::vector<char> buf(64 * 1024);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    out.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (out.size() > cap) return true;
  }
  return !in.bad();
}

// Loads --config or the embedded default; prints problems and returns nullopt on error.
std::optional<config::mukai_config> load_config(const po::variables_map& vm) {
  if (!vm.count("config")) return config::embedded_default();
  auto r = config::load_config_file(vm["config"].as<std::string>());
  for (auto& e : r.errors) std::cerr << "mukai: " << config::to_string(e) << "\n";
  return r.config;
}

int run_sanitize(const std::vector<std::string>& args) {
  po::options_description opts("sanitize");
  opts.add_options()("config", po::value<std::string>())("quarantine-dir", po::value<std::string>())(
      "no-quarantine", po::bool_switch())("report", po::value<std::string>())("output,o", po::value<std::string>())(
      "input-dir", po::value<std::string>())("output-dir", po::value<std::string>())(
      "jobs", po::value<unsigned>()->default_value(0))("input", po::value<std::string>());
  po::positional_options_description pos;
  pos.add("input", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return usage_error(e.what());
  }
  auto cfg = load_config(vm);
  if (!cfg) return exit_usage;
  const config::policy& pol = cfg->pol;

  server::posix_file_ops ops;
  std::optional<server::quarantine_store> store;
  std::unique_ptr<server::quarantine_index> index;  // items are indexed as the relay indexes them
  if (!vm["no-quarantine"].as<bool>()) {
    std::filesystem::path qdir = vm.count("quarantine-dir") ? std::filesystem::path(vm["quarantine-dir"].as<std::string>())
                                                            : cfg->quarantine.dir;
    store.emplace(qdir, ops);
    // Its parent too (./mukai-data on a first run), as `mukai serve` does; the root itself is
    // created 0700 by ensure_layout.
    std::error_code ec;
    if (qdir.has_parent_path()) std::filesystem::create_directories(qdir.parent_path(), ec);
    if (!ec) ec = store->ensure_layout();
    if (!ec) index = server::open_sqlite_index(qdir / "index.sqlite", ec);
    if (ec) {
      std::cerr << "mukai: quarantine directory " << qdir << ": " << ec.message() << "\n";
      return exit_failure;
    }
    store->attach_index(index.get());
  }

  bool batch = vm.count("input-dir") || vm.count("output-dir");
  if (batch) {
    if (!vm.count("input-dir") || !vm.count("output-dir"))
      return usage_error("--input-dir and --output-dir go together");
    if (vm.count("input") || vm.count("output") || vm.count("report"))
      return usage_error("IN, -o and --report are for one message; the batch mode writes into --output-dir");
    unsigned jobs = vm["jobs"].as<unsigned>();
    if (jobs == 0) jobs = std::max(1u, std::thread::hardware_concurrency());
    auto summary = server::sanitize_directory(vm["input-dir"].as<std::string>(), vm["output-dir"].as<std::string>(),
                                              pol, store ? &*store : nullptr, jobs);
    std::cout << summary.to_string() << "\n";
    return summary.failed == 0 ? exit_ok : exit_failure;
  }

  std::string raw;
  if (vm.count("input") && vm["input"].as<std::string>() != "-") {
    std::ifstream in(vm["input"].as<std::string>(), std::ios::binary);
    if (!in) {
      std::cerr << "mukai: cannot open " << vm["input"].as<std::string>() << "\n";
      return exit_usage;
    }
    if (!read_all(in, pol.limit.max_message_size, raw)) return exit_failure;
  } else if (!read_all(std::cin, pol.limit.max_message_size, raw)) {
    return exit_failure;
  }

  auto outcome = server::sanitize_one(raw, pol, store ? &*store : nullptr, {});
  if (outcome.store_error) {
    // The quarantine did not get the removed parts: writing the output would tell the reader
    // they are kept when they are not.
    std::cerr << "mukai: cannot write the quarantine: " << outcome.store_error.message() << "\n";
    return exit_failure;
  }
  const std::string report = sanitize::to_json_text(outcome.result.rep);
  if (vm.count("output") && vm["output"].as<std::string>() != "-") {
    std::ofstream out(vm["output"].as<std::string>(), std::ios::binary | std::ios::trunc);
    out << outcome.result.output;
    if (!out) {
      std::cerr << "mukai: cannot write " << vm["output"].as<std::string>() << "\n";
      return exit_failure;
    }
  } else {
    std::cout << outcome.result.output << std::flush;
  }
  if (vm.count("report")) {
    std::ofstream out(vm["report"].as<std::string>(), std::ios::binary | std::ios::trunc);
    out << report << "\n";
    if (!out) {
      std::cerr << "mukai: cannot write " << vm["report"].as<std::string>() << "\n";
      return exit_failure;
    }
  } else {
    std::cerr << report << "\n";
  }
  return exit_ok;
}

// Problems that stop `mukai serve` from using a loaded configuration (beyond the TOML checks).
std::vector<config::config_error> serve_problems(const config::mukai_config& c) {
  auto errors = config::validate_for_serve(c);
  auto check_hops = [&](const std::vector<std::string>& entries, const char* key) {
    if (entries.empty()) return;
    for (auto& e : server::parse_next_hops(entries).errors)
      errors.push_back({c.source, 0, key, server::to_string(e)});
  };
  check_hops(c.delivery.next_hops, "delivery.next_hop");
  check_hops(c.delivery.bounce_next_hops, "delivery.bounce_next_hop");
  auto admin = server::admin_config_problems(c);
  errors.insert(errors.end(), admin.begin(), admin.end());
  return errors;
}

std::optional<config::mukai_config> load_serve_config(const std::string& file, std::ostream& err) {
  auto r = config::load_config_file(file);
  std::vector<config::config_error> errors = r.errors;
  if (r.config) {
    auto more = serve_problems(*r.config);
    errors.insert(errors.end(), more.begin(), more.end());
  }
  for (auto& e : errors) err << config::to_string(e) << "\n";
  if (!errors.empty()) {
    err << errors.size() << (errors.size() == 1 ? " problem" : " problems") << " found\n";
    return std::nullopt;
  }
  return r.config;
}

int run_check_config(const std::vector<std::string>& args) {
  po::options_description opts("check-config");
  opts.add_options()("config", po::value<std::string>()->required());
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return usage_error(e.what());
  }
  if (!load_serve_config(vm["config"].as<std::string>(), std::cerr)) return exit_usage;
  std::cout << vm["config"].as<std::string>() << ": ok\n";
  return exit_ok;
}

// The web console beside the relay, when [admin] listen is set: the relay's quarantine service and
// audit log, its /metrics and /readyz. Started after the relay (its listener binds after the
// privilege drop: the admin port is unprivileged) and before READY=1.
std::unique_ptr<server::admin_server> start_admin_console(const config::mukai_config& c, server::relay& relay,
                                                          server::logger& log) {
  if (c.admin.listen.empty()) return nullptr;
  auto console = std::make_unique<server::admin_server>(
      c, relay.quarantine(), relay.audit(), log, [&relay] { return relay.metrics_text(); },
      [&relay] { return relay.readiness(); });
  console->start();
  return console;
}

// SIGHUP with changed [admin] settings (users, certificate, listen address, session lifetime,
// metrics networks): the console stops and starts again with them, so adding an operator or
// rotating the console's certificate needs no restart of the relay. Its sessions end (operators
// log in again); SMTP sessions and deliveries are not touched. If the new settings cannot start
// (a port taken, an unreadable certificate), the console comes back with the previous ones.
// Returns the settings the console now runs with.
config::admin_config restart_admin_console(std::unique_ptr<server::admin_server>& console,
                                           const config::mukai_config& fresh, const config::admin_config& running,
                                           server::relay& relay, server::logger& log) {
  if (console) console->stop();
  console.reset();
  try {
    console = start_admin_console(fresh, relay, log);
    log.write(server::log_level::info, fresh.admin.listen.empty()
                                           ? "admin console stopped: [admin] listen is no longer set"
                                           : "admin console restarted with the reloaded [admin] settings "
                                             "(its open sessions ended)");
    return fresh.admin;
  } catch (const std::exception& e) {
    log.write(server::log_level::error, std::string("admin console: the reloaded [admin] settings cannot start (") +
                                            e.what() + "); it keeps the previous ones");
  }
  config::mukai_config previous = fresh;
  previous.admin = running;
  try {
    console = start_admin_console(previous, relay, log);
  } catch (const std::exception& e) {
    log.write(server::log_level::error, std::string("admin console: cannot start again (") + e.what() +
                                            "); it stays off until the next reload or restart");
  }
  return running;
}

int run_serve(const std::vector<std::string>& args) {
  // First, while this is the only thread: it edits the environment.
  const auto notifier = server::service_notifier::from_environment();
  po::options_description opts("serve");
  opts.add_options()("config", po::value<std::string>());
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return usage_error(e.what());
  }
  std::string config_file;
  std::optional<config::mukai_config> cfg;
  if (vm.count("config")) {
    config_file = std::filesystem::absolute(vm["config"].as<std::string>()).string();
    cfg = load_serve_config(config_file, std::cerr);
    if (!cfg) return exit_usage;
  } else {
    cfg = config::embedded_default();
    // The embedded default is the README's first run, typically as root: it runs as nobody (the
    // directories it creates under ./mukai-data are given to nobody before the drop, below).
    if (::geteuid() == 0) cfg->service.user = "nobody";
  }
  // Root only to bind: without [service] user there is no account to drop to, so refuse rather
  // than parse SMTP and write the spool as root (privileges.hpp).
  std::optional<server::service_user> drop_to;
  if (::geteuid() == 0) {
    if (cfg->service.user.empty()) {
      std::cerr << "mukai: refusing to run as root. Set [service] user = \"mukai\" to bind as root and then run as\n"
                   "that user, or start mukai as an unprivileged user with CAP_NET_BIND_SERVICE for port 25\n"
                   "(the packaged systemd unit does).\n";
      return exit_usage;
    }
    std::string why;
    drop_to = server::lookup_service_user(cfg->service.user, why);
    if (!drop_to) {
      std::cerr << "mukai: service.user: " << why << "\n";
      return exit_usage;
    }
    // What the service user must be able to create after the drop: the spool and quarantine
    // roots (and their parents, e.g. ./mukai-data), and Maildir next hops.
    std::vector<std::filesystem::path> dirs{cfg->spool.dir, cfg->quarantine.dir};
    for (const auto& hop : cfg->delivery.next_hops)
      if (hop.rfind("maildir:", 0) == 0) dirs.emplace_back(hop.substr(8));
    for (const auto& d : dirs) {
      if (auto err = server::prepare_service_directory(d, *drop_to); !err.empty()) {
        std::cerr << "mukai: cannot prepare " << d << " for " << drop_to->name << ": " << err << "\n";
        return exit_failure;
      }
    }
  }
  server::log_level level = server::log_level::info;
  (void)server::parse_log_level(cfg->log.level, level);
  server::log_format format = server::log_format::json;
  (void)server::parse_log_format(cfg->log.format, format);

  // Signals are taken synchronously by this thread (sigwait), so every thread the relay starts
  // inherits a mask with them blocked and no handler ever runs in the middle of relay code.
  // SIGPIPE: a peer closing a socket or a worker's pipe is an error code, not a death.
  sigset_t wanted;
  sigemptyset(&wanted);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&wanted, sig);
  pthread_sigmask(SIG_BLOCK, &wanted, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<server::logger> log;
  std::unique_ptr<server::relay> relay;
  std::unique_ptr<server::admin_server> console;
  config::admin_config console_admin;  // what the running console was started with
  try {
    log = std::make_unique<server::logger>(level, cfg->log.file, true, format);
    server::relay_options ro;
    ro.config_file = config_file;
    // Through /proc: the worker is exec'ed after the drop, and the service user may not be allowed
    // to traverse the directory the binary was started from (a build tree under /root).
    ro.worker_binary = "/proc/self/exe";
    if (drop_to) {
      ro.after_bind = [&drop_to, &log] {
        server::drop_privileges(*drop_to);
        log->write(server::log_level::info, "listeners bound; running as user " + drop_to->name + " (uid " +
                                                std::to_string(drop_to->uid) + ", gid " +
                                                std::to_string(drop_to->gid) + ")");
      };
    }
    relay = std::make_unique<server::relay>(*cfg, ro, *log);
    relay->start();
    console = start_admin_console(*cfg, *relay, *log);
    console_admin = cfg->admin;
  } catch (const std::exception& e) {
    std::cerr << "mukai: cannot start: " << e.what() << "\n";
    return exit_failure;
  }
  log->write(server::log_level::info, "configuration: " + cfg->source);
  // Type=notify: ready once the listeners accept and recovery is done (both in start()).
  auto tell = [&](const std::string& state) {
    if (auto ec = notifier.notify(state))
      log->write(server::log_level::warning, "sd_notify " + state.substr(0, state.find('\n')) + ": " + ec.message());
  };
  tell("READY=1\nSTATUS=relaying");
  // With WatchdogSec= set, the signal wait wakes at half the interval to send WATCHDOG=1.
  const auto watchdog = notifier.watchdog_interval();
  timespec tick{};
  if (watchdog) {
    const auto half = *watchdog / 2;
    tick.tv_sec = static_cast<time_t>(half.count() / 1000000);
    tick.tv_nsec = static_cast<long>(half.count() % 1000000 * 1000);
  }
  for (;;) {
    int sig = 0;
    if (watchdog) {
      sig = sigtimedwait(&wanted, nullptr, &tick);
      if (sig < 0) {
        if (errno == EAGAIN) tell("WATCHDOG=1");
        continue;
      }
    } else if (sigwait(&wanted, &sig) != 0) {
      continue;
    }
    if (sig == SIGHUP) {
      tell(server::reloading_state());
      // READY=1 follows whatever the outcome: a refused reload keeps the running configuration.
      struct ready_after {
        decltype(tell)& t;
        ~ready_after() { t("READY=1\nSTATUS=relaying"); }
      } ready{tell};
      if (config_file.empty()) {
        log->write(server::log_level::warning, "SIGHUP: running on the embedded default, nothing to reload");
        continue;
      }
      std::ostringstream problems;
      auto fresh = load_serve_config(config_file, problems);
      if (!fresh) {
        log->write(server::log_level::error, "reload refused, the running configuration stays: " + problems.str());
        continue;
      }
      try {
        relay->reload(*fresh);
        server::log_level l = server::log_level::info;
        if (server::parse_log_level(fresh->log.level, l)) log->set_threshold(l);
      } catch (const std::exception& e) {
        log->write(server::log_level::error, std::string("reload refused, the running configuration stays: ") + e.what());
        continue;
      }
      if (fresh->admin != console_admin) {
        console_admin = restart_admin_console(console, *fresh, console_admin, *relay, *log);
      }
      continue;
    }
    log->write(server::log_level::info, std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
    tell("STOPPING=1\nSTATUS=stopping");
    if (console) console->stop();
    relay->shutdown(std::chrono::seconds(30));
    return exit_ok;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("no command given");
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "serve") return run_serve(args);
    if (command == "sanitize") return run_sanitize(args);
    if (command == "check-config") return run_check_config(args);
    if (command == "quarantine") return server::run_quarantine_cli(args, std::cout, std::cerr);
    if (command == "passwd") return server::run_passwd(args, std::cin, std::cout, std::cerr);
    if (command == "worker") return server::run_sanitizer_worker(args);  // hidden: spawned by the relay
    if (command == "version" || command == "--version") {
      std::cout << "mukai 0.1.0\n";
      return exit_ok;
    }
    if (command == "help" || command == "--help" || command == "-h") {
      std::cout << usage_text;
      return exit_ok;
    }
  } catch (const std::exception& e) {
    std::cerr << "mukai: " << e.what() << "\n";
    return exit_failure;
  }
  return usage_error("unknown command \"" + command + "\"");
}
