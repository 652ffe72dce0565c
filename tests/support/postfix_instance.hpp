// Test-only: a private Postfix instance (Debian's postfix package) under a test's temporary
// directory, with its own config, queue and data directories and one smtpd on 127.0.0.1:<port>.
// It plays the Internet-side MTA that relays to mukai (relayhost), or the receiving side that
// delivers into one Maildir per recipient (virtual(8) with a texthash: map, so no postmap).
// Invariants: every postfix/postqueue command gets "-c <our config dir>", so the system Postfix
// (/etc/postfix, /var/spool/postfix, port 25) is never read, started or stopped; nothing listens
// outside 127.0.0.1; no daemon is chrooted; the destructor stops the instance and kills, by pid,
// any process whose working directory is still our queue directory (Postfix daemons chdir there),
// which can never match a process of the system Postfix.
// Requirements found on Debian 12 / Postfix 3.7 (see postfix_instance.cpp): run as root; every
// ancestor of dir must be searchable by the postfix user (mkdtemp makes 0700 directories);
// data_directory owned by postfix; maillog_file under a prefix listed in maillog_file_prefixes.
// Threading: one thread owns an instance.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/smtp_send.hpp"

namespace mukai::testing {

struct postfix_options {
  std::filesystem::path dir{};  // created (0755); holds etc/, queue/, data/, maildir/, maillog
  std::uint16_t smtp_port = 0;  // 0: free_loopback_port()
  // Also the name in Postfix's greeting: it must differ from the next hop's greeting name, or
  // Postfix bounces the mail as "loops back to myself". Empty: "postfix-<port>.test".
  std::string myhostname{};
  std::string relayhost{};                   // e.g. "[127.0.0.1]:2525"; empty: none
  std::vector<std::string> relay_domains{};  // empty: none
  // Receiving mode: each address "local@domain" gets a Maildir <dir>/maildir/<domain>/<local>/,
  // delivered by virtual(8) as the user `nobody`. Their domains become virtual_mailbox_domains;
  // other recipients in those domains are refused at RCPT with 550.
  std::vector<std::string> maildir_recipients{};
  int destination_concurrency_limit = 4;  // smtp_ and relay_destination_concurrency_limit
  int default_process_limit = 20;
  // Retry timings. Postfix accepts 1s as the minimum of each.
  std::chrono::seconds queue_run_delay{1};
  std::chrono::seconds minimal_backoff_time{1};
  std::chrono::seconds maximal_backoff_time{2};
  std::string smtp_tls_security_level = "none";
  // Extra main.cf settings; a name already set replaces the harness's value in place.
  std::vector<std::pair<std::string, std::string>> main_cf{};
  std::vector<std::string> extra_master_cf{};  // lines appended to master.cf
};

struct maildir_message {
  std::filesystem::path path;
  std::string content;  // as virtual(8) wrote it: LF line ends, Return-Path and Delivered-To added
};

class postfix_instance {
 public:
  explicit postfix_instance(postfix_options options);  // writes the configuration; does not start
  ~postfix_instance();                                 // stop(); never throws
  postfix_instance(const postfix_instance&) = delete;
  postfix_instance& operator=(const postfix_instance&) = delete;

  // "postfix start" and wait for the smtpd port. Throws std::runtime_error with the command's
  // output and the tail of the mail log when it fails.
  void start();
  // "postfix stop" (which waits up to 5 s, then kills -9 the master's process group), then SIGKILL
  // to anything still working in our queue directory. Bounded; idempotent.
  void stop() noexcept;
  bool running() const;
  // The master's pid while it runs in our queue directory (bench_relay sums its process tree's CPU).
  std::optional<pid_t> master_pid() const;

  std::uint16_t smtp_port() const { return options_.smtp_port; }
  const std::string& myhostname() const { return options_.myhostname; }
  std::filesystem::path config_dir() const { return options_.dir / "etc"; }
  std::filesystem::path queue_dir() const { return options_.dir / "queue"; }
  std::filesystem::path maildir_base() const { return options_.dir / "maildir"; }
  std::filesystem::path log_path() const { return options_.dir / "maillog"; }

  // Messages in the queue (incoming, active, deferred, hold, maildrop), counted from the files.
  std::size_t queue_size() const;
  // True once the queue is seen empty three times in a row 100 ms apart (one scan can miss a file
  // that is renamed between two queue directories while it runs).
  bool wait_queue_empty(std::chrono::milliseconds timeout) const;
  // "postqueue -f": retry every deferred message now. Throws if the command fails.
  void flush() const;
  std::string queue_json() const;  // "postqueue -j": one JSON object per line per message
  std::string log_text() const;    // the whole maillog ("" before the first start)
  // True once text occurs at least that many times in the maillog. postlogd writes what the
  // daemons send it a moment later, so a line may lag behind the event it reports.
  bool wait_for_log(std::string_view text, std::size_t at_least, std::chrono::milliseconds timeout) const;
  std::string postconf(const std::string& name) const;  // "postconf -h name" for this instance

  // smtp_send to this instance's smtpd.
  smtp_send_result send(const std::string& from, const std::vector<std::string>& rcpts,
                        std::string_view message, const smtp_send_options& options = {}) const;

  // Receiving mode: the messages delivered to a recipient's Maildir (new/ and cur/), oldest name first.
  std::vector<maildir_message> maildir_messages(const std::string& recipient) const;

 private:
  void write_configuration();
  void kill_leftovers() noexcept;

  postfix_options options_;
  std::filesystem::path postfix_, postqueue_, postconf_;
  bool started_ = false;
};

// Why this machine cannot run a private Postfix (not root, postfix not installed, no `postfix`
// user...), or nothing when it can. Integration tests skip with this reason.
std::optional<std::string> postfix_unavailable_reason();

}  // namespace mukai::testing
