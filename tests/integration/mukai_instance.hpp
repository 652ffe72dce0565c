// Test-only: the real `mukai serve` binary as a child process with a configuration file written
// by the test (loopback port, spool and quarantine under the test's directory), for the
// integration tests that put it between real Postfix instances and smtp-sink.
// Threading: one thread owns an instance.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.hpp"
#include "tests/support/service_user.hpp"

namespace mukai::testing {

struct mukai_options {
  std::filesystem::path dir;  // config, spool/, quarantine/, mukai.log
  std::uint16_t port = 0;     // 0: free_loopback_port()
  std::string hostname = "mukai.test";
  std::vector<std::string> relay_domains{"example.lg.jp"};
  std::vector<std::string> next_hops;
  std::vector<std::string> bounce_next_hops;
  std::string min_backoff = "1s", max_backoff = "2s";
  std::size_t workers = 2;
  std::string log_level = "info";
  std::size_t max_connections = 1000, max_connections_per_ip = 500;
  std::string extra_smtp;  // more lines for [smtp]
  std::string extra_sections;  // more tables appended at the end ([admin], [[admin.users]], ...)
  std::string binary = MUKAI_BINARY;  // bench_relay --mukai compares another build
};

inline std::string toml_list(const std::vector<std::string>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
  return s + "]";
}

class mukai_instance {
 public:
  explicit mukai_instance(mukai_options o) : o_(std::move(o)) {
    std::filesystem::create_directories(o_.dir);
    if (o_.port == 0) o_.port = free_loopback_port();
    write_config();
  }
  ~mukai_instance() {
    if (proc_.pid() > 0 && proc_.running()) proc_.kill9();
  }
  mukai_instance(const mukai_instance&) = delete;
  mukai_instance& operator=(const mukai_instance&) = delete;

  void write_config() {
    std::ofstream f(config_path(), std::ios::trunc);
    f << "[smtp]\nlisten = [\"127.0.0.1:" << o_.port << "\"]\nhostname = \"" << o_.hostname
      << "\"\nrelay_domains = " << toml_list(o_.relay_domains) << "\nmax_connections = " << o_.max_connections
      << "\nmax_connections_per_ip = " << o_.max_connections_per_ip << "\n"
      << o_.extra_smtp << "\n[delivery]\nnext_hop = " << toml_list(o_.next_hops) << "\nmin_backoff = \""
      << o_.min_backoff << "\"\nmax_backoff = \"" << o_.max_backoff << "\"\n";
    if (!o_.bounce_next_hops.empty()) f << "bounce_next_hop = " << toml_list(o_.bounce_next_hops) << "\n";
    f << "[spool]\ndir = \"" << spool_dir().string() << "\"\nmin_free_space = \"0\"\n"
      << "[quarantine]\ndir = \"" << quarantine_dir().string() << "\"\n"
      << "[worker]\ncount = " << o_.workers << "\n[log]\nlevel = \"" << o_.log_level << "\"\n"
      << service_section_for_tests() << o_.extra_sections;
    if (!f) throw std::runtime_error("cannot write " + config_path().string());
  }

  // Starts `mukai serve --config` and waits until it listens (its own socket, by pid).
  void start() {
    // As root (CI), mukai drops to nobody after binding: nobody must own what it writes.
    if (running_as_root()) hand_over(o_.dir, nobody_user());
    spawn_options so;
    so.argv = {o_.binary, "serve", "--config", config_path().string()};
    so.stdout_path = log_path();
    so.stderr_path = log_path();
    so.working_dir = o_.dir;
    proc_ = child_process(so);
    if (!wait_for_listen(o_.port, std::chrono::seconds(30), proc_.pid()))
      throw std::runtime_error("mukai did not start listening; log:\n" + read_file_or_empty(log_path()));
  }
  // SIGTERM; returns the exit status (0 for a clean stop).
  int stop(std::chrono::seconds grace = std::chrono::seconds(60)) { return proc_.terminate(grace); }
  void kill9() { proc_.kill9(); }
  void reload() { ::kill(proc_.pid(), SIGHUP); }
  // Rewrites the configuration file with other extra sections (for a reload).
  void set_extra_sections(std::string sections) {
    o_.extra_sections = std::move(sections);
    write_config();
  }
  bool running() { return proc_.pid() > 0 && proc_.running(); }
  pid_t pid() const { return proc_.pid(); }

  std::uint16_t port() const { return o_.port; }
  mukai_options& options() { return o_; }
  std::filesystem::path config_path() const { return o_.dir / "mukai.toml"; }
  std::filesystem::path spool_dir() const { return o_.dir / "spool"; }
  std::filesystem::path quarantine_dir() const { return o_.dir / "quarantine"; }
  std::filesystem::path log_path() const { return o_.dir / "mukai.log"; }
  std::string log_text() const { return read_file_or_empty(log_path()); }

  // Messages anywhere in the spool but corrupt/ (incoming, active, outbound, deferred, tmp).
  // Messages in the spool: distinct names across its state directories (a message waiting for
  // delivery has its sanitized copy in outbound/ or deferred/ and its raw backup in active/).
  std::size_t spool_count() const {
    std::set<std::string> names;
    for (const char* d : {"tmp", "incoming", "active", "outbound", "deferred"}) {
      std::error_code ec;
      for (auto it = std::filesystem::directory_iterator(spool_dir() / d, ec);
           !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        names.insert(it->path().filename().string());
    }
    return names.size();
  }
  std::size_t corrupt_count() const {
    std::size_t n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(spool_dir() / "corrupt", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      ++n;
    return n;
  }
  bool wait_spool_empty(std::chrono::seconds limit) const {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (spool_count() == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return spool_count() == 0;
  }

 private:
  mukai_options o_;
  child_process proc_;
};

}  // namespace mukai::testing
