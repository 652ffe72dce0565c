// bench_relay: the end-to-end relay benchmark of issue 3. Postfix's smtp-source sends to a relay,
// the relay delivers to Postfix's smtp-sink; messages/s from the first connection until the relay's
// queue is empty again (everything accepted durably, sanitized in mukai's case, and delivered).
// Two relays, side by side in the same run and on the same loopback: `mukai serve` (sanitizing,
// sandboxed worker processes) and a private Postfix instance relaying without sanitizing. Both
// acknowledge durably (Postfix fsyncs its queue file before the 250, as mukai its spool file).
// Then the memory of idle sessions: RSS of mukai before and after 1000 idle connections.
//
// usage: bench_relay [--messages-5k N] [--messages-100k N] [--idle N] [--dir DIR]
// Runs as root (private Postfix instances need it), installs nothing, takes a few minutes.
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
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
  bool complete = false;
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// smtp-source, then wait until `drained` says the relay's queue is empty.
run_figures run_load(std::uint16_t port, int concurrency, int messages, int size,
                     const std::function<bool()>& drained) {
  run_figures f;
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
  int messages_5k = 2000, messages_100k = 400, idle = 1000;
  fs::path dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--messages-5k") messages_5k = std::atoi(argv[i + 1]);
    else if (a == "--messages-100k") messages_100k = std::atoi(argv[i + 1]);
    else if (a == "--idle") idle = std::atoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else {
      std::cerr << "usage: bench_relay [--messages-5k N] [--messages-100k N] [--idle N] [--dir DIR]\n";
      return 2;
    }
  }
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

  measure_idle(mukai, idle);  // on a fresh process, before the load grows its heap
  std::printf("bench_relay: smtp-source -> relay -> smtp-sink on loopback, %u cores; work dir %s\n",
              std::thread::hardware_concurrency(), dir.c_str());
  std::printf("%-8s %-6s %-9s %12s %12s %8s\n", "size", "conc.", "messages", "mukai msg/s", "postfix msg/s", "ratio");
  for (auto [size, messages] : {std::pair{5000, messages_5k}, std::pair{100000, messages_100k}}) {
    for (int conc : {10, 100}) {
      // Alternate who goes first, so neither always gets the warmer page cache.
      auto m = run_load(mukai.port(), conc, messages, size, [&] { return mukai.spool_count() == 0; });
      auto p = run_load(postfix.smtp_port(), conc, messages, size, [&] { return postfix.queue_size() == 0; });
      const double mr = m.complete ? messages / m.seconds : 0, pr = p.complete ? messages / p.seconds : 0;
      std::printf("%-8s %-6d %-9d %12.1f %12.1f %8.2f%s\n", size == 5000 ? "5 KB" : "100 KB", conc, messages, mr, pr,
                  pr > 0 ? mr / pr : 0.0, m.complete && p.complete ? "" : "  (incomplete!)");
      std::fflush(stdout);
    }
  }
  const int status = mukai.stop();
  postfix.stop();
  if (status != 0) std::cerr << "mukai exited " << status << "; log:\n" << mukai.log_text() << "\n";
  fs::remove_all(dir);
  return 0;
}
