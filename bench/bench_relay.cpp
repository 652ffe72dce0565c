// bench_relay: the end-to-end relay benchmark of issue 3. Postfix's smtp-source sends to a relay,
// the relay delivers to Postfix's smtp-sink; messages/s from the first connection until the relay's
// queue is empty again (everything accepted durably, sanitized in mukai's case, and delivered).
// Two relays, side by side in the same run and on the same loopback: `mukai serve` (sanitizing,
// sandboxed worker processes) and a private Postfix instance relaying without sanitizing. Both
// acknowledge durably (Postfix fsyncs its queue file before the 250, as mukai its spool file).
// Then the memory of idle sessions: RSS of mukai before and after 1000 idle connections.
// Each cell also reports the CPU time each relay used per message (all its processes: mukai's
// relay and its workers; Postfix's master and every daemon it started), read from /proc: much
// less sensitive than msg/s to other load on a shared machine.
//
// usage: bench_relay [--messages-5k N] [--messages-100k N] [--idle N] [--dir DIR]
//                    [--cell 5k/10|5k/100|100k/10|100k/100]... [--relay both|mukai|postfix]
//                    [--repeat N] [--mukai PATH (another build of mukai, to compare)]
// Runs as root (private Postfix instances need it), installs nothing, takes a few minutes.
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/mukai_instance.hpp"
#include "tests/support/postfix_instance.hpp"
#include "tests/support/process.hpp"
#include "tests/support/smtp_sink.hpp"

using namespace mukai::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct run_figures {
  double seconds = 0;
  double cpu_seconds = 0;  // of the relay's process tree, from the first connection to the drain
  bool complete = false;
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds (user + system) used so far by `root` and all its descendants: each live process's
// own time plus what its reaped children left in its cutime/cstime (a child that exits between two
// readings moves from one term to the other, so differences stay exact to the clock tick).
double tree_cpu_seconds(pid_t root) {
  struct proc_times {
    pid_t ppid = 0;
    unsigned long long ticks = 0;  // utime + stime + cutime + cstime
  };
  std::map<pid_t, proc_times> procs;
  if (DIR* d = ::opendir("/proc")) {
    while (const dirent* e = ::readdir(d)) {
      const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
      if (pid <= 0) continue;
      std::ifstream in("/proc/" + std::string(e->d_name) + "/stat");
      std::string line;
      if (!std::getline(in, line)) continue;
      const auto close = line.rfind(')');  // the command name may hold spaces and parentheses
      if (close == std::string::npos) continue;
      std::istringstream fields(line.substr(close + 2));
      std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
      if (f.size() < 15) continue;  // f[0] is field 3 (state): ppid f[1], utime..cstime f[11..14]
      proc_times t;
      t.ppid = static_cast<pid_t>(std::stol(f[1]));
      for (int i = 11; i <= 14; ++i) t.ticks += std::stoull(f[i]);
      procs[pid] = t;
    }
    ::closedir(d);
  }
  std::set<pid_t> tree{root};
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& [pid, t] : procs)
      if (tree.contains(t.ppid) && tree.insert(pid).second) grew = true;
  }
  unsigned long long ticks = 0;
  for (pid_t pid : tree)
    if (auto it = procs.find(pid); it != procs.end()) ticks += it->second.ticks;
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// smtp-source, then wait until `drained` says the relay's queue is empty.
run_figures run_load(std::uint16_t port, pid_t relay_root, int concurrency, int messages, int size,
                     const std::function<bool()>& drained) {
  run_figures f;
  const double cpu0 = tree_cpu_seconds(relay_root);
  const double t0 = now_seconds();
  auto r = run_command({"smtp-source", "-s", std::to_string(concurrency), "-m", std::to_string(messages), "-l",
                        std::to_string(size), "-f", "sender@internet.test", "-t", "staff@example.lg.jp",
                        "127.0.0.1:" + std::to_string(port)},
                       600s);
  if (r.exit_code != 0) {
    std::cerr << "smtp-source failed: " << r.output << "\n";
    return f;
  }
  const double deadline = now_seconds() + 600;
  while (!drained() && now_seconds() < deadline) std::this_thread::sleep_for(10ms);
  f.complete = drained();
  f.seconds = now_seconds() - t0;
  f.cpu_seconds = tree_cpu_seconds(relay_root) - cpu0;
  return f;
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

// Opens n idle connections (each reads its greeting), measures RSS growth, closes them.
void measure_idle(mukai_instance& mukai, int n) {
  std::this_thread::sleep_for(500ms);
  const long before = rss_kib(mukai.pid());
  std::vector<int> fds;
  char buf[512];
  for (int i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(mukai.port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      std::cerr << "connect " << i << " failed: " << std::strerror(errno) << "\n";
      if (fd >= 0) ::close(fd);
      break;
    }
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::recv(fd, buf, sizeof buf, 0) <= 0 || std::strncmp(buf, "220", 3) != 0) {
      std::cerr << "no greeting on connection " << i << "\n";
      ::close(fd);
      break;
    }
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(1s);
  const long after = rss_kib(mukai.pid());
  std::printf("idle sessions: %zu open, mukai RSS %ld KiB -> %ld KiB: %.1f KiB per idle session (target <= 20)\n",
              fds.size(), before, after, fds.empty() ? 0.0 : double(after - before) / double(fds.size()));
  for (int fd : fds) ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  int messages_5k = 2000, messages_100k = 400, idle = 1000, repeat = 1;
  bool run_mukai = true, run_postfix = true;
  std::vector<std::pair<int, int>> cells;  // {size, concurrency}
  fs::path dir;
  std::string mukai_binary = MUKAI_BINARY;
  const auto usage = [] {
    std::cerr << "usage: bench_relay [--messages-5k N] [--messages-100k N] [--idle N (0: skip)] [--dir DIR]\n"
                 "                   [--cell 5k/10|5k/100|100k/10|100k/100]... [--relay both|mukai|postfix]\n"
                 "                   [--repeat N (each cell N times)] [--mukai PATH]\n";
    return 2;
  };
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string v = argv[i + 1];
    if (a == "--messages-5k") messages_5k = std::atoi(v.c_str());
    else if (a == "--messages-100k") messages_100k = std::atoi(v.c_str());
    else if (a == "--idle") idle = std::atoi(v.c_str());
    else if (a == "--dir") dir = v;
    else if (a == "--mukai") mukai_binary = v;
    else if (a == "--repeat") repeat = std::max(1, std::atoi(v.c_str()));
    else if (a == "--relay" && (v == "both" || v == "mukai" || v == "postfix")) {
      run_mukai = v != "postfix";
      run_postfix = v != "mukai";
    } else if (a == "--cell") {
      const auto slash = v.find('/');
      const std::string size = v.substr(0, slash);
      const int conc = slash == std::string::npos ? 0 : std::atoi(v.c_str() + slash + 1);
      if ((size != "5k" && size != "100k") || (conc != 10 && conc != 100)) return usage();
      cells.emplace_back(size == "5k" ? 5000 : 100000, conc);
    } else {
      return usage();
    }
  }
  if (cells.empty()) cells = {{5000, 10}, {5000, 100}, {100000, 10}, {100000, 100}};
  if (auto why = postfix_unavailable_reason()) {
    std::cerr << "bench_relay: " << *why << "\n";
    return 1;
  }
  // 1000 idle sessions need more descriptors than the usual soft limit of 1024 (children inherit).
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);

  char templ[] = "/tmp/mukai-bench-relay-XXXXXX";
  if (dir.empty()) dir = ::mkdtemp(templ);
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0755);

  smtp_sink_options so;
  so.dir = dir / "sink";
  smtp_sink sink(so);

  mukai_options mo;
  mo.dir = dir / "mukai";
  mo.next_hops = {"smtp://127.0.0.1:" + std::to_string(sink.port()) + "?starttls=off"};
  mo.log_level = "warning";
  mo.max_connections = mo.max_connections_per_ip = 2000;
  mo.binary = mukai_binary;
  mukai_instance mukai(mo);
  mukai.start();

  postfix_options po;
  po.dir = dir / "postfix";
  po.relayhost = "[127.0.0.1]:" + std::to_string(sink.port());
  po.relay_domains = {"example.lg.jp"};
  po.destination_concurrency_limit = 20;  // Postfix's default_destination_concurrency_limit
  po.default_process_limit = 100;         // Postfix's default
  po.main_cf = {{"smtpd_client_connection_count_limit", "0"}, {"message_size_limit", "52428800"}};
  postfix_instance postfix(po);
  postfix.start();

  if (idle > 0) measure_idle(mukai, idle);  // on a fresh process, before the load grows its heap
  std::printf("bench_relay: smtp-source -> relay -> smtp-sink on loopback, %u cores; work dir %s\n",
              std::thread::hardware_concurrency(), dir.c_str());
  std::printf("%-8s %-6s %-9s %12s %12s %8s %14s %14s\n", "size", "conc.", "messages", "mukai msg/s",
              "postfix msg/s", "ratio", "mukai cpu ms", "postfix cpu ms");
  std::printf("%-8s %-6s %-9s %12s %12s %8s %14s %14s\n", "", "", "", "", "", "", "per msg", "per msg");
  const auto absent = [] { return run_figures{}; };
  for (int round = 0; round < repeat; ++round) {
    for (auto [size, conc] : cells) {
      const int messages = size == 5000 ? messages_5k : messages_100k;
      auto m = run_mukai ? run_load(mukai.port(), mukai.pid(), conc, messages, size,
                                    [&] { return mukai.spool_count() == 0; })
                         : absent();
      auto p = run_postfix ? run_load(postfix.smtp_port(), postfix.master_pid().value_or(-1), conc, messages, size,
                                      [&] { return postfix.queue_size() == 0; })
                           : absent();
      const double mr = m.complete ? messages / m.seconds : 0, pr = p.complete ? messages / p.seconds : 0;
      const bool incomplete = (run_mukai && !m.complete) || (run_postfix && !p.complete);
      std::printf("%-8s %-6d %-9d %12.1f %12.1f %8.2f %14.3f %14.3f%s\n", size == 5000 ? "5 KB" : "100 KB", conc,
                  messages, mr, pr, pr > 0 ? mr / pr : 0.0, 1000 * m.cpu_seconds / messages,
                  1000 * p.cpu_seconds / messages, incomplete ? "  (incomplete!)" : "");
      std::fflush(stdout);
    }
  }
  const int status = mukai.stop();
  postfix.stop();
  if (status != 0) std::cerr << "mukai exited " << status << "; log:\n" << mukai.log_text() << "\n";
  fs::remove_all(dir);
  return 0;
}
