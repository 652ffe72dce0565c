// See process.hpp. Children are started with posix_spawn (glibc's uses vfork semantics and reports
// exec failures to the parent), with every inherited descriptor above stderr closed and the
// signals a test process may ignore reset to their defaults.
#include "tests/support/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>

extern char** environ;

namespace mukai::testing {

namespace {

using clock = std::chrono::steady_clock;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// The parent's environment with extra "NAME=value" entries added or replacing same-named ones.
std::vector<std::string> build_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    const std::string name = name_of(entry);
    const bool replaced =
        std::any_of(extra.begin(), extra.end(), [&](const std::string& x) { return name_of(x) == name; });
    if (!replaced) env.push_back(std::move(entry));
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Where a standard stream of the child goes: a file (by path) or a descriptor of the parent.
struct stream_target {
  std::filesystem::path path;  // used when fd < 0; empty: /dev/null
  int fd = -1;
};

class file_actions {
 public:
  file_actions() { check(posix_spawn_file_actions_init(&fa_), "posix_spawn_file_actions_init"); }
  ~file_actions() { posix_spawn_file_actions_destroy(&fa_); }
  file_actions(const file_actions&) = delete;
  file_actions& operator=(const file_actions&) = delete;
  posix_spawn_file_actions_t* get() { return &fa_; }
  static void check(int rc, const char* what) {
    if (rc != 0) throw_errno(rc, what);
  }

 private:
  posix_spawn_file_actions_t fa_;
};

class spawn_attributes {
 public:
  explicit spawn_attributes(bool new_group) {
    file_actions::check(posix_spawnattr_init(&attr_), "posix_spawnattr_init");
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    sigset_t none;
    sigemptyset(&none);
    file_actions::check(posix_spawnattr_setsigmask(&attr_, &none), "posix_spawnattr_setsigmask");
    // Ignored dispositions survive exec. A test process (or Asio) ignoring SIGPIPE or SIGCHLD would
    // otherwise hand that to postfix-script, whose "wait" and pipelines then misbehave.
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGTTOU,
                    SIGTTIN, SIGTSTP, SIGXFSZ}) {
      sigaddset(&defaults, sig);
    }
    file_actions::check(posix_spawnattr_setsigdefault(&attr_, &defaults), "posix_spawnattr_setsigdefault");
    if (new_group) {
      flags |= POSIX_SPAWN_SETPGROUP;
      file_actions::check(posix_spawnattr_setpgroup(&attr_, 0), "posix_spawnattr_setpgroup");
    }
    file_actions::check(posix_spawnattr_setflags(&attr_, flags), "posix_spawnattr_setflags");
  }
  ~spawn_attributes() { posix_spawnattr_destroy(&attr_); }
  spawn_attributes(const spawn_attributes&) = delete;
  spawn_attributes& operator=(const spawn_attributes&) = delete;
  posix_spawnattr_t* get() { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

void add_stream(file_actions& fa, int target_fd, const stream_target& t) {
  if (t.fd >= 0) {
    file_actions::check(posix_spawn_file_actions_adddup2(fa.get(), t.fd, target_fd), "adddup2");
    return;
  }
  const std::string path = t.path.empty() ? std::string("/dev/null") : t.path.string();
  file_actions::check(posix_spawn_file_actions_addopen(fa.get(), target_fd, path.c_str(),
                                                       O_WRONLY | O_CREAT | O_APPEND, 0644),
                      "addopen");
}

pid_t spawn_raw(const std::vector<std::string>& argv_in, const std::vector<std::string>& extra_env,
                const std::filesystem::path& working_dir, const stream_target& out, const stream_target& err,
                bool same_file, bool new_group) {
  if (argv_in.empty()) throw std::invalid_argument("spawn: empty argv");
  file_actions fa;
  file_actions::check(posix_spawn_file_actions_addopen(fa.get(), 0, "/dev/null", O_RDONLY, 0), "addopen");
  add_stream(fa, 1, out);
  if (same_file) {
    file_actions::check(posix_spawn_file_actions_adddup2(fa.get(), 1, 2), "adddup2");
  } else {
    add_stream(fa, 2, err);
  }
  if (!working_dir.empty()) {
    file_actions::check(posix_spawn_file_actions_addchdir_np(fa.get(), working_dir.c_str()), "addchdir");
  }
  // Descriptors the test process did not mark close-on-exec (Asio's sockets, for one) must not
  // leak into a daemon: a leaked listening socket would outlive the test that closed it.
  file_actions::check(posix_spawn_file_actions_addclosefrom_np(fa.get(), 3), "addclosefrom");
  spawn_attributes attr(new_group);

  std::vector<std::string> argv_strings = argv_in;
  std::vector<std::string> env_strings = build_environment(extra_env);
  std::vector<char*> argv = c_strings(argv_strings);
  std::vector<char*> envp = c_strings(env_strings);
  pid_t pid = -1;
  const bool has_slash = argv_in[0].find('/') != std::string::npos;
  const int rc = has_slash ? posix_spawn(&pid, argv[0], fa.get(), attr.get(), argv.data(), envp.data())
                           : posix_spawnp(&pid, argv[0], fa.get(), attr.get(), argv.data(), envp.data());
  if (rc != 0) throw_errno(rc, "spawn " + argv_in[0]);
  return pid;
}

}  // namespace

child_process::child_process(const spawn_options& options) {
  const bool same_file = options.stdout_fd < 0 && options.stderr_fd < 0 && !options.stdout_path.empty() &&
                         options.stdout_path == options.stderr_path;
  pid_ = spawn_raw(options.argv, options.extra_env, options.working_dir,
                   {options.stdout_path, options.stdout_fd}, {options.stderr_path, options.stderr_fd},
                   same_file, options.new_process_group);
  own_group_ = options.new_process_group;
}

child_process::~child_process() { kill9(); }

child_process::child_process(child_process&& other) noexcept
    : pid_(other.pid_), own_group_(other.own_group_), status_(other.status_) {
  other.pid_ = -1;
  other.status_.reset();
}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    kill9();
    pid_ = other.pid_;
    own_group_ = other.own_group_;
    status_ = other.status_;
    other.pid_ = -1;
    other.status_.reset();
  }
  return *this;
}

bool child_process::running() {
  if (pid_ < 0 || status_) return false;
  return !wait(std::chrono::milliseconds(0)).has_value();
}

std::optional<int> child_process::wait(std::chrono::milliseconds timeout) {
  if (pid_ < 0) return status_;
  if (status_) return status_;
  const auto deadline = clock::now() + timeout;
  auto step = std::chrono::milliseconds(1);
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = decode_wait_status(st);
      return status_;
    }
    if (r < 0 && errno != EINTR) {
      // ECHILD: someone else reaped our child (a waitpid(-1) elsewhere). Nothing left to wait for.
      status_ = -1;
      return status_;
    }
    const auto now = clock::now();
    if (now >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::min<clock::duration>(step, deadline - now));
    step = std::min(step * 2, std::chrono::milliseconds(20));
  }
}

void child_process::signal(int sig) {
  if (pid_ < 0 || status_) return;  // never signal a reaped pid: it may belong to someone else now
  if (own_group_ && ::kill(-pid_, sig) == 0) return;
  ::kill(pid_, sig);
}

int child_process::terminate(std::chrono::milliseconds grace) {
  if (pid_ < 0) return -1;
  signal(SIGTERM);
  if (auto st = wait(grace)) return *st;
  kill9();
  return status_.value_or(-1);
}

void child_process::kill9() {
  if (pid_ < 0 || status_) return;
  signal(SIGKILL);
  // SIGKILL cannot be caught; only a process stuck in the kernel survives it for long. Give up
  // after a bound rather than hang the test run.
  wait(std::chrono::seconds(10));
}

command_result run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                           const std::vector<std::string>& extra_env, std::size_t max_output) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
  child_process child;
  try {
    spawn_options options;
    options.argv = argv;
    options.extra_env = extra_env;
    options.stdout_fd = fds[1];
    options.stderr_fd = fds[1];
    child = child_process(options);
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[1]);  // the child holds the only write end now: EOF once it (and its heirs) closed it
  const int rd = fds[0];
  ::fcntl(rd, F_SETFL, ::fcntl(rd, F_GETFL) | O_NONBLOCK);

  command_result result;
  std::array<char, 16384> buf;
  // Reads what is available now; false at EOF.
  auto drain = [&]() -> bool {
    for (;;) {
      const ssize_t n = ::read(rd, buf.data(), buf.size());
      if (n > 0) {
        const std::size_t keep =
            std::min<std::size_t>(static_cast<std::size_t>(n), max_output - result.output.size());
        result.output.append(buf.data(), keep);
        if (keep < static_cast<std::size_t>(n)) result.truncated = true;
        continue;
      }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      return true;  // EAGAIN: nothing more for now
    }
  };

  const auto deadline = clock::now() + timeout;
  bool open = true;
  for (;;) {
    const auto now = clock::now();
    if (now >= deadline) {
      child.kill9();
      drain();
      result.timed_out = true;
      result.exit_code = -1;
      break;
    }
    if (open) {
      pollfd p{rd, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
      ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count() + 1, 50)));
      open = drain();
    }
    // A daemonizing grandchild may keep a copy of the pipe open for its whole life: once the direct
    // child has exited, take what is buffered and stop rather than wait for an EOF that never comes.
    if (auto st = child.wait(open ? std::chrono::milliseconds(0) : std::chrono::milliseconds(20))) {
      if (open) drain();
      result.exit_code = *st;
      break;
    }
  }
  ::close(rd);
  return result;
}

namespace {

// The inodes of the TCP sockets listening on loopback (or any address) at port.
std::vector<std::string> listening_inodes(std::uint16_t port) {
  std::vector<std::string> inodes;
  char port_hex[8];
  std::snprintf(port_hex, sizeof port_hex, "%04X", port);
  // /proc/net/tcp prints the address as the hex of the raw network-order 32-bit value.
  char lo4[16];
  std::snprintf(lo4, sizeof lo4, "%08X", htonl(INADDR_LOOPBACK));
  const std::string any4 = "00000000";
  const std::string any6(32, '0');
  std::string lo6_mapped = "0000000000000000FFFF0000";
  lo6_mapped += lo4;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
            inode)) {
        continue;
      }
      if (state != "0A") continue;  // TCP_LISTEN
      const auto colon = local.find(':');
      if (colon == std::string::npos || local.substr(colon + 1) != port_hex) continue;
      const std::string addr = local.substr(0, colon);
      if (addr == lo4 || addr == any4 || addr == any6 || addr == lo6_mapped) inodes.push_back(inode);
    }
  }
  return inodes;
}

bool owns_socket(pid_t owner, const std::vector<std::string>& inodes) {
  std::error_code ec;
  const std::filesystem::path fd_dir = "/proc/" + std::to_string(owner) + "/fd";
  for (std::filesystem::directory_iterator it(fd_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    const std::string target = std::filesystem::read_symlink(it->path(), ec2).string();
    if (ec2) continue;
    for (const auto& inode : inodes) {
      if (target == "socket:[" + inode + "]") return true;
    }
  }
  return false;
}

}  // namespace

bool is_listening(std::uint16_t port, pid_t owner) {
  const auto inodes = listening_inodes(port);
  if (inodes.empty()) return false;
  return owner < 0 || owns_socket(owner, inodes);
}

bool wait_for_listen(std::uint16_t port, std::chrono::milliseconds timeout, pid_t owner) {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    if (is_listening(port, owner)) return true;
    if (clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::filesystem::path find_program(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string p(path);
    for (std::size_t start = 0;;) {
      const auto colon = p.find(':', start);
      dirs.push_back(p.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  for (const char* d : {"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.emplace_back(d);
  for (const auto& dir : dirs) {
    if (dir.empty()) continue;
    const std::filesystem::path candidate = std::filesystem::path(dir) / name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return {};
}

std::string read_file_or_empty(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw_errno(err, "bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace mukai::testing
