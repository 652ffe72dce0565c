// See postfix_instance.hpp. What a private Postfix 3.7 instance needs, found by trying on Debian 12:
// - "postfix -c DIR" with a non-default DIR needs no alternate_config_directories entry in
//   /etc/postfix/main.cf when run as root: Postfix only requires that listing for non-root callers
//   (the directory would come from another trust domain). So /etc/postfix is never edited.
// - "postfix start" runs postfix-script check-fatal, which creates the queue subdirectories
//   (active, deferred, maildrop, public, private, pid...) with the right owners; nothing to create
//   by hand but the top directories. data_directory must be owned by postfix, or master fails
//   to create master.lock ("cannot create file exclusively: Permission denied").
// - The daemons run as postfix and chdir to queue_directory: every ancestor of the instance
//   directory must be searchable by that user. mkdtemp() makes 0700 directories.
// - maillog_file (written by postlogd, which needs the "postlog unix-dgram" master.cf entry) must
//   start with one of maillog_file_prefixes (default "/var, /dev/stdout"); otherwise
//   "postfix start" exits 1 without printing anything (it cannot log the reason).
// - Errors of the postfix command go to the log, not to stderr, when stderr is not a terminal:
//   start() therefore reports the tail of the maillog.
// - "postfix start" daemonizes the master (it calls setsid); master.pid is in queue/pid/. A master
//   reparented to PID 1 is left a zombie when PID 1 does not reap (some sandboxes): harmless.
// - Postfix will not read main.cf (or a texthash: table) modified less than a second ago: it
//   sleeps in 300 ms steps until the file is older, about 2 s per start. write_text() backdates.
// - A bad value in main.cf is only found by the daemon that reads it (qmgr exits "fatal" and the
//   master throttles it): "postfix start" still succeeds; look in log_text().
// - queue_run_delay, minimal_backoff_time and maximal_backoff_time accept 1s.
// - The smtp client refuses a next hop that greets with its own myhostname ("loops back to
//   myself"): each instance and sink needs its own name.
#include "tests/support/postfix_instance.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "tests/support/process.hpp"

namespace mukai::testing {

namespace {

using clock = std::chrono::steady_clock;

std::string seconds(std::chrono::seconds s) { return std::to_string(s.count()) + "s"; }

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

// The last lines of the mail log, for error messages.
std::string log_tail(const std::string& log) {
  if (log.empty()) {
    return "(empty: the postfix command cannot log at all when maillog_file is outside "
           "maillog_file_prefixes)\n";
  }
  // Walk back over 20 line ends; the log's final LF ends the last line and does not count.
  std::size_t start = log.back() == '\n' ? log.size() - 1 : log.size();
  for (int lines = 0; lines < 20; ++lines) {
    const auto nl = start == 0 ? std::string::npos : log.rfind('\n', start - 1);
    if (nl == std::string::npos) return log;
    start = nl;
  }
  return log.substr(start + 1);
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw std::runtime_error("postfix_instance: cannot write " + path.string());
  }
  // Postfix will not read a configuration or table file modified less than a second ago: it sleeps
  // in 300 ms steps until the file is older (dict_load_file), which cost every start about 2 s.
  // Backdating the fresh file by a minute is harmless: nothing else looks at its time.
  timespec times[2];
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= 60;
  times[1] = times[0];
  if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
    throw std::runtime_error("postfix_instance: cannot set the time of " + path.string());
  }
}

void make_dir(const std::filesystem::path& path, mode_t mode) {
  std::filesystem::create_directories(path);
  if (::chmod(path.c_str(), mode) != 0)
    throw std::runtime_error("postfix_instance: cannot chmod " + path.string());
}

void chown_to(const std::filesystem::path& path, uid_t uid, gid_t gid) {
  if (::chown(path.c_str(), uid, gid) != 0)
    throw std::runtime_error("postfix_instance: cannot chown " + path.string());
}

const passwd& user(const char* name) {
  const passwd* pw = ::getpwnam(name);
  if (pw == nullptr) throw std::runtime_error(std::string("postfix_instance: no user ") + name);
  return *pw;
}

// "local@domain" -> {local, domain}, refusing what would escape the Maildir base.
std::pair<std::string, std::string> split_address(const std::string& address) {
  const auto at = address.rfind('@');
  if (at == std::string::npos || at == 0 || at + 1 == address.size()) {
    throw std::invalid_argument("postfix_instance: not local@domain: " + address);
  }
  std::string local = address.substr(0, at);
  std::string domain = address.substr(at + 1);
  for (const auto& part : {local, domain}) {
    if (part == "." || part == ".." || part.find_first_of("/ \t\r\n") != std::string::npos) {
      throw std::invalid_argument("postfix_instance: unusable as a Maildir name: " + address);
    }
  }
  return {local, domain};
}

void check_searchable_by(const std::filesystem::path& dir, uid_t uid) {
  for (std::filesystem::path p = dir.parent_path(); !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) throw std::runtime_error("postfix_instance: cannot stat " + p.string());
    const bool ok = (st.st_mode & S_IXOTH) != 0 || (st.st_uid == uid && (st.st_mode & S_IXUSR) != 0);
    if (!ok) {
      throw std::runtime_error("postfix_instance: " + p.string() +
                               " is not searchable by the postfix user, whose daemons chdir below it "
                               "(mkdtemp makes 0700 directories: chmod 0755 it)");
    }
    if (p == p.root_path()) break;
  }
}

std::optional<pid_t> read_pid_file(const std::filesystem::path& path) {
  const std::string text = read_file_or_empty(path);
  const auto first = text.find_first_of("0123456789");
  if (first == std::string::npos) return std::nullopt;
  const long pid = std::strtol(text.c_str() + first, nullptr, 10);
  if (pid <= 1) return std::nullopt;
  return static_cast<pid_t>(pid);
}

// Processes whose working directory is dir: Postfix daemons chdir to their queue directory, so
// these are exactly the processes of this instance (a zombie has no cwd and is not listed).
std::vector<pid_t> processes_working_in(const std::filesystem::path& dir) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    std::error_code ec2;
    const auto cwd = std::filesystem::read_symlink(it->path() / "cwd", ec2);
    if (!ec2 && cwd == dir) pids.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return pids;
}

}  // namespace

std::optional<std::string> postfix_unavailable_reason() {
  if (::geteuid() != 0) return "not root (the Postfix master runs as root and switches to the postfix user)";
  for (const char* program : {"postfix", "postqueue", "postconf"}) {
    if (find_program(program).empty()) return std::string(program) + " not found (Debian package postfix)";
  }
  if (::getpwnam("postfix") == nullptr) return "no postfix user";
  if (::getgrnam("postdrop") == nullptr) return "no postdrop group";
  if (::getpwnam("nobody") == nullptr) return "no nobody user";
  return std::nullopt;
}

postfix_instance::postfix_instance(postfix_options options) : options_(std::move(options)) {
  if (options_.dir.empty() || !options_.dir.is_absolute()) {
    throw std::invalid_argument("postfix_instance: dir must be an absolute path");
  }
  // Port 25 on loopback belongs to the system Postfix, which the harness must never disturb.
  if (options_.smtp_port == 25) throw std::invalid_argument("postfix_instance: port 25 is the system MTA's");
  if (options_.smtp_port == 0) options_.smtp_port = free_loopback_port();
  if (options_.myhostname.empty())
    options_.myhostname = "postfix-" + std::to_string(options_.smtp_port) + ".test";
  postfix_ = find_program("postfix");
  postqueue_ = find_program("postqueue");
  postconf_ = find_program("postconf");
  if (postfix_.empty() || postqueue_.empty() || postconf_.empty()) {
    throw std::runtime_error(
        "postfix_instance: postfix, postqueue or postconf not found (Debian package postfix)");
  }
  const passwd& postfix_user = user("postfix");
  make_dir(options_.dir, 0755);
  options_.dir = std::filesystem::canonical(options_.dir);  // /proc/<pid>/cwd shows canonical paths
  check_searchable_by(options_.dir, postfix_user.pw_uid);
  make_dir(config_dir(), 0755);
  make_dir(queue_dir(), 0755);  // root-owned; postfix-script creates the subdirectories
  make_dir(options_.dir / "data", 0700);
  chown_to(options_.dir / "data", postfix_user.pw_uid, postfix_user.pw_gid);
  if (!options_.maildir_recipients.empty()) {
    const passwd& nobody = user("nobody");
    make_dir(maildir_base(), 0700);
    chown_to(maildir_base(), nobody.pw_uid, nobody.pw_gid);
  }
  write_configuration();
}

postfix_instance::~postfix_instance() { stop(); }

void postfix_instance::write_configuration() {
  const std::string dir = options_.dir.string();
  std::vector<std::pair<std::string, std::string>> main_cf = {
      {"compatibility_level", "3.6"},
      // Informational only: the "-c" option (MAIL_CONFIG for the daemons) is what selects it.
      {"config_directory", config_dir().string()},
      {"queue_directory", queue_dir().string()},
      {"data_directory", (options_.dir / "data").string()},
      {"mail_owner", "postfix"},
      {"setgid_group", "postdrop"},
      {"myhostname", options_.myhostname},
      {"myorigin", "$myhostname"},
      // Nothing is local: no alias database, no delivery as a Unix user, nothing under /var/mail.
      {"mydestination", ""},
      {"local_recipient_maps", ""},
      {"local_transport", "error:5.1.1 local delivery is disabled in this test instance"},
      {"alias_maps", ""},
      {"alias_database", ""},
      {"biff", "no"},
      // Loopback only; IPv4 only so that "localhost" cannot mean ::1 where nothing listens.
      {"inet_interfaces", "127.0.0.1"},
      {"inet_protocols", "ipv4"},
      {"mynetworks", "127.0.0.0/8"},
      {"relay_domains", join(options_.relay_domains, ", ")},
      {"relayhost", options_.relayhost},
      {"smtpd_relay_restrictions", "permit_mynetworks, reject"},
      {"smtpd_recipient_restrictions", "permit_mynetworks, reject"},
      // No DNS on the test machine: do not look up the client's name.
      {"smtpd_peername_lookup", "no"},
      // Tests provoke errors on purpose; Postfix's 1 s penalty per error only slows them down.
      {"smtpd_error_sleep_time", "0s"},
      {"smtp_tls_security_level", options_.smtp_tls_security_level},
      {"smtpd_tls_security_level", "none"},
      {"smtp_connect_timeout", "5s"},
      {"maillog_file", (options_.dir / "maillog").string()},
      {"maillog_file_prefixes", dir},
      {"queue_run_delay", seconds(options_.queue_run_delay)},
      {"minimal_backoff_time", seconds(options_.minimal_backoff_time)},
      {"maximal_backoff_time", seconds(options_.maximal_backoff_time)},
      {"smtp_destination_concurrency_limit", std::to_string(options_.destination_concurrency_limit)},
      {"relay_destination_concurrency_limit", std::to_string(options_.destination_concurrency_limit)},
      {"default_process_limit", std::to_string(options_.default_process_limit)},
  };
  std::string vmailbox;
  if (!options_.maildir_recipients.empty()) {
    std::vector<std::string> domains;
    for (const auto& address : options_.maildir_recipients) {
      const auto [local, domain] = split_address(address);
      if (std::find(domains.begin(), domains.end(), domain) == domains.end()) domains.push_back(domain);
      vmailbox += address + " " + domain + "/" + local + "/\n";  // trailing "/": Maildir, not mbox
    }
    const passwd& nobody = user("nobody");
    main_cf.insert(main_cf.end(),
                   {
                       {"virtual_mailbox_domains", join(domains, ", ")},
                       {"virtual_mailbox_base", maildir_base().string()},
                       // texthash: is read as text at start-up; no postmap, no .db file.
                       {"virtual_mailbox_maps", "texthash:" + (config_dir() / "virtual_mailbox").string()},
                       {"virtual_uid_maps", "static:" + std::to_string(nobody.pw_uid)},
                       {"virtual_gid_maps", "static:" + std::to_string(nobody.pw_gid)},
                       {"virtual_minimum_uid", std::to_string(nobody.pw_uid)},
                   });
  }
  for (const auto& setting : options_.main_cf) {
    auto it = std::find_if(main_cf.begin(), main_cf.end(),
                           [&](const auto& kv) { return kv.first == setting.first; });
    if (it != main_cf.end()) {
      it->second = setting.second;
    } else {
      main_cf.push_back(setting);
    }
  }
  std::string main_text = "# Written by mukai's test harness (tests/support/postfix_instance.cpp).\n";
  for (const auto& [name, value] : main_cf) main_text += name + " = " + value + "\n";
  write_text(config_dir() / "main.cf", main_text);
  write_text(config_dir() / "virtual_mailbox", vmailbox);

  // No chroot anywhere ("n" in the fifth column): a chroot would need copies of /etc files in the
  // queue directory. Every unix-domain socket lives in our queue directory (private/, public/).
  std::string master = "# Written by mukai's test harness. Only smtpd listens on the network, on loopback.\n";
  master += "127.0.0.1:" + std::to_string(options_.smtp_port) + " inet n - n - - smtpd\n";
  master +=
      "pickup     unix  n - n 60    1 pickup\n"
      "cleanup    unix  n - n -     0 cleanup\n"
      "qmgr       unix  n - n 300   1 qmgr\n"
      "rewrite    unix  - - n -     - trivial-rewrite\n"
      "bounce     unix  - - n -     0 bounce\n"
      "defer      unix  - - n -     0 bounce\n"
      "trace      unix  - - n -     0 bounce\n"
      "verify     unix  - - n -     1 verify\n"
      "flush      unix  n - n 1000? 0 flush\n"
      "proxymap   unix  - - n -     - proxymap\n"
      "proxywrite unix  - - n -     1 proxymap\n"
      "smtp       unix  - - n -     - smtp\n"
      "relay      unix  - - n -     - smtp\n"
      "showq      unix  n - n -     - showq\n"
      "error      unix  - - n -     - error\n"
      "retry      unix  - - n -     - error\n"
      "discard    unix  - - n -     - discard\n"
      "virtual    unix  - n n -     - virtual\n"
      "anvil      unix  - - n -     1 anvil\n"
      "scache     unix  - - n -     1 scache\n"
      "postlog    unix-dgram n - n - 1 postlogd\n";
  for (const auto& line : options_.extra_master_cf) master += line + "\n";
  write_text(config_dir() / "master.cf", master);
}

void postfix_instance::start() {
  if (running()) return;
  if (auto why = postfix_unavailable_reason()) throw std::runtime_error("postfix_instance: " + *why);
  const command_result r =
      run_command({postfix_.string(), "-c", config_dir().string(), "start"}, std::chrono::seconds(60));
  started_ = true;  // even on failure: stop() must clean up whatever did start
  if (r.exit_code != 0) {
    const std::string log = log_tail(log_text());
    stop();
    throw std::runtime_error("postfix_instance: postfix start failed (exit " + std::to_string(r.exit_code) +
                             (r.timed_out ? ", timed out" : "") + "): " + r.output + "\nmaillog tail:\n" +
                             log);
  }
  const auto master = master_pid();
  if (!master || !wait_for_listen(options_.smtp_port, std::chrono::seconds(10), *master)) {
    const std::string log = log_tail(log_text());
    stop();
    throw std::runtime_error("postfix_instance: the master does not listen on 127.0.0.1:" +
                             std::to_string(options_.smtp_port) + "\nmaillog tail:\n" + log);
  }
}

std::optional<pid_t> postfix_instance::master_pid() const {
  const auto pid = read_pid_file(queue_dir() / "pid" / "master.pid");
  if (!pid) return std::nullopt;
  // Trust the pid only if that process works in our queue directory: a stale pid file must never
  // make us signal an unrelated process.
  std::error_code ec;
  const auto cwd = std::filesystem::read_symlink("/proc/" + std::to_string(*pid) + "/cwd", ec);
  if (ec || cwd != queue_dir()) return std::nullopt;
  return pid;
}

bool postfix_instance::running() const { return master_pid().has_value(); }

void postfix_instance::stop() noexcept {
  if (!started_) return;
  try {
    if (running()) {
      // postfix-script waits up to 5 s for the master, then kills its process group with -9.
      const command_result r =
          run_command({postfix_.string(), "-c", config_dir().string(), "stop"}, std::chrono::seconds(20));
      if (r.exit_code != 0) {
        if (const auto master = master_pid()) ::kill(-*master, SIGKILL);
      }
    }
    kill_leftovers();
  } catch (...) {
    kill_leftovers();
  }
  started_ = false;
}

void postfix_instance::kill_leftovers() noexcept {
  try {
    // The master passes its SIGTERM on to its children; give them a moment to finish, then kill
    // whatever still works in our queue directory (a hung delivery agent, an orphan).
    const auto deadline = clock::now() + std::chrono::seconds(3);
    while (!processes_working_in(queue_dir()).empty() && clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (int round = 0; round < 50; ++round) {
      const auto pids = processes_working_in(queue_dir());
      if (pids.empty()) return;
      for (pid_t pid : pids) ::kill(pid, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  } catch (...) {
    // Best effort: the destructor must not throw.
  }
}

std::size_t postfix_instance::queue_size() const {
  std::size_t n = 0;
  for (const char* sub : {"maildrop", "incoming", "active", "deferred", "hold"}) {
    std::error_code ec;
    for (std::filesystem::recursive_directory_iterator it(queue_dir() / sub, ec), end; !ec && it != end;
         it.increment(ec)) {
      std::error_code ec2;
      if (it->is_regular_file(ec2)) ++n;
    }
  }
  return n;
}

bool postfix_instance::wait_queue_empty(std::chrono::milliseconds timeout) const {
  const auto deadline = clock::now() + timeout;
  int empty_in_a_row = 0;
  for (;;) {
    empty_in_a_row = queue_size() == 0 ? empty_in_a_row + 1 : 0;
    if (empty_in_a_row >= 3) return true;
    if (clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void postfix_instance::flush() const {
  const command_result r =
      run_command({postqueue_.string(), "-c", config_dir().string(), "-f"}, std::chrono::seconds(30));
  if (r.exit_code != 0) throw std::runtime_error("postfix_instance: postqueue -f failed: " + r.output);
}

std::string postfix_instance::queue_json() const {
  return run_command({postqueue_.string(), "-c", config_dir().string(), "-j"}, std::chrono::seconds(30))
      .output;
}

std::string postfix_instance::log_text() const { return read_file_or_empty(log_path()); }

bool postfix_instance::wait_for_log(std::string_view text, std::size_t at_least,
                                    std::chrono::milliseconds timeout) const {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    const std::string log = log_text();
    std::size_t n = 0;
    for (auto at = log.find(text); at != std::string::npos && n < at_least; at = log.find(text, at + 1)) {
      ++n;
    }
    if (n >= at_least) return true;
    if (clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string postfix_instance::postconf(const std::string& name) const {
  std::string out =
      run_command({postconf_.string(), "-c", config_dir().string(), "-h", name}, std::chrono::seconds(30))
          .output;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

smtp_send_result postfix_instance::send(const std::string& from, const std::vector<std::string>& rcpts,
                                        std::string_view message, const smtp_send_options& options) const {
  return smtp_send("127.0.0.1", options_.smtp_port, from, rcpts, message, options);
}

std::vector<maildir_message> postfix_instance::maildir_messages(const std::string& recipient) const {
  const auto [local, domain] = split_address(recipient);
  std::vector<maildir_message> out;
  for (const char* sub : {"new", "cur"}) {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(maildir_base() / domain / local / sub, ec), end;
         !ec && it != end; it.increment(ec)) {
      std::error_code ec2;
      if (it->is_regular_file(ec2)) out.push_back({it->path(), read_file_or_empty(it->path())});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.path.filename() < b.path.filename(); });
  return out;
}

}  // namespace mukai::testing
