// The sanitizer worker pool (relay side) and `mukai worker` (worker side); see the header for the
// process model, the sandbox and the wire protocol.
//
// Between fork and exec (exec_child) only async-signal-safe system calls run: the relay is
// multi-threaded, and another thread may have held the allocator's or any other lock at the
// moment of fork. Everything the child needs (argv, environment, limits, the BPF program) is
// built before fork, once, in the pool's constructor.
#include "server/sanitizer_worker.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "sanitizers/output_check.hpp"
#include "sanitizers/report_json.hpp"
#include "server/asan_build.hpp"
#include "server/malloc_policy.hpp"

extern char** environ;


namespace mukai::server {

namespace {

using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Protocol constants

constexpr std::array<char, 4> request_magic{'M', 'K', 'W', 'Q'};
constexpr std::array<char, 4> response_magic{'M', 'K', 'W', 'R'};
constexpr std::uint32_t protocol_version = 2;  // 2: body-text
constexpr std::size_t frame_header_size = 16;  // magic, version, payload length

constexpr int exit_usage = 64;
constexpr int exit_bad_request = 65;
constexpr int exit_internal = 70;
constexpr int exit_not_sandboxed = 71;
constexpr int exit_config = 2;

// Descriptor numbers in the child: 0/1 socket, 2 stderr pipe, then these two until exec.
constexpr int child_exe_fd = 3;
constexpr int child_status_fd = 4;
// Every descriptor the child renumbers comes from at least here, so that dup2 onto 0..4 never
// overwrites a source it still needs.
constexpr int high_fd_floor = 10;

constexpr std::size_t stderr_keep = 4096;             // diagnostics kept per exchange
constexpr auto exit_grace = std::chrono::seconds(2);  // a worker that closed its socket exits by then
constexpr rlim_t worker_max_files = 32;

// AddressSanitizer reserves terabytes of address space for its shadow at start-up, so under
// RLIMIT_AS an instrumented worker cannot even load, and LeakSanitizer's exit-time scan needs
// clone() and ptrace, which the worker's filter denies. Those builds (tests only) go without
// RLIMIT_AS and with leak detection off in the worker.
constexpr bool limit_address_space = !asan_build;

// ---------------------------------------------------------------------------------------------
// Small POSIX helpers

class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  // close(2) releases the descriptor even when it reports an error (Linux): never retry it.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) (void)::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::string errno_text(int e) { return std::system_category().message(e); }

std::system_error errno_error(int e, const std::string& what) { return {e, std::system_category(), what}; }

// The same open file description under a close-on-exec descriptor >= high_fd_floor.
int raise_fd(int fd) noexcept {
  int high = ::fcntl(fd, F_DUPFD_CLOEXEC, high_fd_floor);
  int saved = errno;
  (void)::close(fd);
  errno = saved;
  return high;
}

bool set_nonblocking(int fd) noexcept {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Reads exactly n bytes unless EOF or an error comes first; returns the bytes read, -1 on error.
ssize_t read_full(int fd, char* buf, std::size_t n) noexcept {
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

bool write_all(int fd, std::string_view bytes) noexcept {
  while (!bytes.empty()) {
    ssize_t w = ::write(fd, bytes.data(), bytes.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(w));
  }
  return true;
}

int poll_timeout_ms(steady::time_point deadline) noexcept {
  auto left = deadline - steady::now();
  if (left <= steady::duration::zero()) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1;
  return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = ::sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "ended with wait status " + std::to_string(status);
}

// Blocking reap of a child of ours. ECHILD (someone reaped it or SIGCHLD is ignored) ends it too.
void reap(pid_t pid) noexcept {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// Waits until `until` for the child to exit; true (status set) if it did.
bool wait_exit(pid_t pid, steady::time_point until, int& status) noexcept {
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) {
      status = -1;  // ECHILD: gone, status unknown
      return true;
    }
    if (steady::now() >= until) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

// ---------------------------------------------------------------------------------------------
// Byte encoding

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_str(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}

std::string frame_header(const std::array<char, 4>& magic, std::uint64_t payload_size) {
  std::string h(magic.data(), magic.size());
  put_u32(h, protocol_version);
  put_u64(h, payload_size);
  return h;
}

// Bounds-checked reader: any read past the end sets ok() false and returns zero/empty.
class byte_reader {
 public:
  explicit byte_reader(std::string_view data) noexcept : data_(data) {}
  std::uint32_t u32() noexcept { return static_cast<std::uint32_t>(uint(4)); }
  std::uint64_t u64() noexcept { return uint(8); }
  std::uint8_t u8() noexcept { return static_cast<std::uint8_t>(uint(1)); }
  std::string_view str() noexcept {
    std::uint64_t n = u64();
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return {};
    }
    std::string_view s = data_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  [[nodiscard]] std::size_t remaining() const noexcept { return data_.size() - pos_; }
  [[nodiscard]] bool ok() const noexcept { return ok_; }
  [[nodiscard]] bool at_end() const noexcept { return ok_ && pos_ == data_.size(); }

 private:
  std::uint64_t uint(std::size_t n) noexcept {
    if (!ok_ || remaining() < n) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i)
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    pos_ += n;
    return v;
  }
  std::string_view data_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// Parses a 16-byte frame header; nullopt unless magic and version match.
std::optional<std::uint64_t> parse_frame_header(std::string_view h, const std::array<char, 4>& magic) {
  if (h.size() != frame_header_size || h.substr(0, 4) != std::string_view(magic.data(), magic.size()))
    return std::nullopt;
  byte_reader r(h.substr(4));
  if (r.u32() != protocol_version) return std::nullopt;
  return r.u64();
}

std::optional<std::string> sha256_hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md.data(), &len, EVP_sha256(), nullptr) != 1 || len != 32)
    return std::nullopt;
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(64);
  for (unsigned int i = 0; i < len; ++i) {
    hex += digits[md[i] >> 4];
    hex += digits[md[i] & 0x0f];
  }
  return hex;
}

// ---------------------------------------------------------------------------------------------
// seccomp: classic BPF over struct seccomp_data. A deny list, not an allow list: GLib, GMime, ICU,
// libmagic and glibc use a wide and version-dependent set of system calls, and an allow list that
// misses one turns every message into a held one after a library upgrade. What is denied is what
// an attacker in the worker would need to reach the network, other processes or the disk.

#if defined(__x86_64__)
constexpr std::uint32_t audit_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t audit_arch = AUDIT_ARCH_AARCH64;
#else
#error "sanitizer_worker: the seccomp filter knows x86_64 and aarch64; add this architecture's AUDIT_ARCH"
#endif

using bpf_code = std::vector<sock_filter>;

void emit(bpf_code& c, std::uint16_t code, std::uint32_t k, std::uint8_t jt = 0, std::uint8_t jf = 0) {
  c.push_back(sock_filter{code, jt, jf, k});
}

constexpr std::uint32_t nr_offset = offsetof(seccomp_data, nr);
constexpr std::uint32_t arch_offset = offsetof(seccomp_data, arch);

// Offset of the low 32 bits of argument i (flags arguments are ints).
constexpr std::uint32_t arg_low_offset(std::uint32_t i) {
  return static_cast<std::uint32_t>(offsetof(seccomp_data, args)) + 8 * i +
         (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? 4 : 0);
}

constexpr std::uint32_t ret_errno(int e) {
  return SECCOMP_RET_ERRNO | (static_cast<std::uint32_t>(e) & 0xffff);
}

// A = syscall number, after killing a foreign architecture (a 32-bit ABI has other numbers).
void emit_prologue(bpf_code& c) {
  emit(c, BPF_LD | BPF_W | BPF_ABS, arch_offset);
  emit(c, BPF_JMP | BPF_JEQ | BPF_K, audit_arch, 1, 0);
  emit(c, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  emit(c, BPF_LD | BPF_W | BPF_ABS, nr_offset);
#if defined(__x86_64__)
  // The x32 ABI reaches the same kernel entry points with numbers | 0x40000000.
  emit(c, BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);
  emit(c, BPF_RET | BPF_K, ret_errno(ENOSYS));
#endif
}

void emit_deny(bpf_code& c, long nr, int e) {
  emit(c, BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(nr), 0, 1);
  emit(c, BPF_RET | BPF_K, ret_errno(e));
}

// Deny `nr` when (argument `arg` & mask) != 0 (want_set) or == 0 (!want_set); A is restored.
void emit_deny_by_flags(bpf_code& c, long nr, std::uint32_t arg, std::uint32_t mask, bool want_set, int e) {
  emit(c, BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(nr), 0, 4);
  emit(c, BPF_LD | BPF_W | BPF_ABS, arg_low_offset(arg));
  if (want_set)
    emit(c, BPF_JMP | BPF_JSET | BPF_K, mask, 0, 1);
  else
    emit(c, BPF_JMP | BPF_JSET | BPF_K, mask, 1, 0);
  emit(c, BPF_RET | BPF_K, ret_errno(e));
  emit(c, BPF_LD | BPF_W | BPF_ABS, nr_offset);
}

// Stage 1, installed before exec: no network. io_uring can perform socket operations without
// passing through the filtered system calls, so it goes too.
bpf_code network_filter() {
  bpf_code c;
  emit_prologue(c);
  for (long nr : {SYS_socket, SYS_socketpair, SYS_connect, SYS_bind, SYS_listen, SYS_accept, SYS_accept4})
    emit_deny(c, nr, EACCES);
#ifdef SYS_io_uring_setup
  emit_deny(c, SYS_io_uring_setup, EPERM);
  emit_deny(c, SYS_io_uring_enter, EPERM);
  emit_deny(c, SYS_io_uring_register, EPERM);
#endif
  emit(c, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  return c;
}

// Stage 2, installed by the worker itself once running: no new programs or processes, nothing
// that reaches other processes or the kernel's configuration, and no file-system writes.
bpf_code worker_filter() {
  bpf_code c;
  emit_prologue(c);
  const std::uint32_t write_flags = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
  emit_deny_by_flags(c, SYS_openat, 2, write_flags, true, EACCES);
  // Threads (CLONE_THREAD) stay possible for libraries that want one; new processes do not.
  emit_deny_by_flags(c, SYS_clone, 0, CLONE_THREAD, false, EPERM);
  // clone3 passes its flags in memory the filter cannot read: ENOSYS makes glibc fall back to clone.
#ifdef SYS_clone3
  emit_deny(c, SYS_clone3, ENOSYS);
#endif
#ifdef SYS_openat2
  emit_deny(c, SYS_openat2, ENOSYS);  // flags in memory too; glibc's open() does not use it
#endif
#if defined(__x86_64__)
  emit_deny_by_flags(c, SYS_open, 1, write_flags, true, EACCES);
  for (long nr : {SYS_fork, SYS_vfork}) emit_deny(c, nr, EPERM);
  for (long nr : {SYS_creat, SYS_mkdir, SYS_rmdir, SYS_unlink, SYS_rename, SYS_link, SYS_symlink, SYS_chmod,
                  SYS_chown, SYS_lchown, SYS_mknod, SYS_utime, SYS_utimes, SYS_futimesat})
    emit_deny(c, nr, EACCES);
#endif
  // clang-format off
  static constexpr long not_for_a_parser[] = {
      SYS_execve, SYS_execveat, SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev,
      SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_unshare, SYS_setns,
      SYS_keyctl, SYS_add_key, SYS_request_key, SYS_bpf, SYS_perf_event_open, SYS_userfaultfd,
      SYS_kexec_load, SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_reboot,
      SYS_swapon, SYS_swapoff, SYS_acct, SYS_quotactl, SYS_name_to_handle_at, SYS_open_by_handle_at};
  // clang-format on
  for (long nr : not_for_a_parser) emit_deny(c, nr, EPERM);
  for (long nr :
       {SYS_mkdirat, SYS_unlinkat, SYS_renameat, SYS_renameat2, SYS_linkat, SYS_symlinkat, SYS_fchmod,
        SYS_fchmodat, SYS_fchown, SYS_fchownat, SYS_truncate, SYS_mknodat, SYS_utimensat, SYS_setxattr,
        SYS_lsetxattr, SYS_fsetxattr, SYS_removexattr, SYS_lremovexattr, SYS_fremovexattr})
    emit_deny(c, nr, EACCES);
#ifdef SYS_fchmodat2
  emit_deny(c, SYS_fchmodat2, EACCES);
#endif
  emit(c, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  return c;
}

// ---------------------------------------------------------------------------------------------
// The child between fork and exec

enum spawn_step : int {
  step_signals = 1,
  step_fds,
  step_close_fds,
  step_chdir,
  step_rlimit,
  step_no_new_privs,
  step_seccomp,
  step_exec,
};

const char* spawn_step_name(int step) {
  switch (step) {
    case step_signals:
      return "resetting signals";
    case step_fds:
      return "setting up descriptors";
    case step_close_fds:
      return "closing descriptors";
    case step_chdir:
      return "chdir /";
    case step_rlimit:
      return "setrlimit";
    case step_no_new_privs:
      return "PR_SET_NO_NEW_PRIVS";
    case step_seccomp:
      return "installing the seccomp filter";
    case step_exec:
      return "execveat";
  }
  return "an unknown step";
}

struct child_fds {
  int sock = -1, err_w = -1, status_w = -1, exe = -1;  // all >= high_fd_floor
};

bool dup_onto(int from, int to, bool cloexec) noexcept {
  for (;;) {
    int r = cloexec ? ::dup3(from, to, O_CLOEXEC) : ::dup2(from, to);
    if (r >= 0) return true;
    if (errno != EINTR) return false;
  }
}

using rlimit_resource = decltype(RLIMIT_AS);  // glibc's enum in C++

// Everything the child needs, built before fork so that the child only makes system calls.
struct child_plan {
  std::vector<std::string> arg_strings;
  std::vector<char*> argv;  // into arg_strings, null-terminated
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  bpf_code filter;
  sock_fprog program{};  // points into filter
  std::vector<std::pair<rlimit_resource, rlimit>> limits;
};

// Runs in the child: async-signal-safe system calls only (see the file comment). On failure it
// reports {step, errno} on the status pipe and exits 127; on success the pipe closes at exec.
[[noreturn]] void exec_child(const child_plan& plan, const child_fds& fds) noexcept {
  int status_fd = fds.status_w;
  auto fail = [&status_fd](int step) noexcept {
    const int report[2] = {step, errno};
    ssize_t n = 0;
    do {
      n = ::write(status_fd, report, sizeof report);
    } while (n < 0 && errno == EINTR);
    ::_exit(127);
  };

  // Handlers do not survive exec, but ignored signals and the blocked mask would: the relay may
  // ignore SIGPIPE or block signals in its threads, and the worker must start from the defaults.
  // Every signal is blocked on entry (spawn_worker), so no relay handler can run here meanwhile.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  if (::sigemptyset(&dfl.sa_mask) != 0) fail(step_signals);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) (void)::sigaction(sig, &dfl, nullptr);  // EINVAL: glibc-internal
  }
  sigset_t none;
  if (::sigemptyset(&none) != 0 || ::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(step_signals);

  if (!dup_onto(fds.sock, 0, false) || !dup_onto(fds.sock, 1, false) || !dup_onto(fds.err_w, 2, false) ||
      !dup_onto(fds.exe, child_exe_fd, true) || !dup_onto(fds.status_w, child_status_fd, true))
    fail(step_fds);
  status_fd = child_status_fd;
  // Whatever the relay has open (spool files, client sockets, other workers' sockets, the TLS
  // key) must not reach the worker, even a descriptor some library opened without O_CLOEXEC.
  if (::close_range(child_status_fd + 1, ~0U, 0) != 0) {
    if (errno != ENOSYS) fail(step_close_fds);
    rlimit nofile{};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) != 0) fail(step_close_fds);
    const rlim_t top = nofile.rlim_cur == RLIM_INFINITY ? rlim_t{1} << 20 : nofile.rlim_cur;
    for (rlim_t fd = child_status_fd + 1; fd < top; ++fd) (void)::close(static_cast<int>(fd));
  }
  // The worker's paths are absolute; "/" keeps no directory of the relay busy.
  if (::chdir("/") != 0) fail(step_chdir);
  for (const auto& [resource, limit] : plan.limits) {
    if (::setrlimit(resource, &limit) != 0) fail(step_rlimit);
  }
  // A private network namespace has only a loopback interface that is down: nothing is
  // reachable even if the filter below had a hole. Needs CAP_SYS_ADMIN; without it the filter
  // holds alone, so the failure is not fatal.
  (void)::unshare(CLONE_NEWNET);
  // Required for an unprivileged seccomp filter, and keeps set-user-ID binaries powerless.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) != 0) fail(step_no_new_privs);
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &plan.program) != 0) fail(step_seccomp);
  ::execveat(child_exe_fd, "", plan.argv.data(), plan.envp.data(), AT_EMPTY_PATH);
  fail(step_exec);
  ::_exit(127);  // not reached: fail() exits
}

// ---------------------------------------------------------------------------------------------
// The parent's view of one worker process

struct worker_process {
  pid_t pid = -1;  // > 0 until reaped
  unique_fd sock;  // the parent's end of the socketpair (the worker's stdin and stdout)
  unique_fd err;   // the read end of the worker's stderr, non-blocking
  std::size_t served = 0;
  std::uint64_t generation = 0;
};

enum class failure { none, crash, timeout, bad_response };

struct attempt {
  failure kind = failure::none;
  std::string detail;  // for the log
};

const char* reason_token(failure f) {
  switch (f) {
    case failure::crash:
      return "worker:crash";
    case failure::timeout:
      return "worker:timeout";
    case failure::bad_response:
      return "worker:bad-response";
    case failure::none:
      break;
  }
  return "worker:crash";
}

// SIGKILL (a no-op for a process that already exited) and reap: never leaves a zombie.
void retire(worker_process& w) noexcept {
  if (w.pid > 0) {
    (void)::kill(w.pid, SIGKILL);
    reap(w.pid);
    w.pid = -1;
  }
  w.sock.reset();
  w.err.reset();
}

// Reads what the worker wrote to stderr, keeping the first stderr_keep bytes. Never blocks.
void drain_stderr(worker_process& w, std::string& keep) {
  std::array<char, 4096> buf{};
  while (w.err.valid()) {
    ssize_t n = ::read(w.err.get(), buf.data(), buf.size());
    if (n > 0) {
      std::size_t room = stderr_keep > keep.size() ? stderr_keep - keep.size() : 0;
      keep.append(buf.data(), std::min(room, static_cast<std::size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    w.err.reset();  // EOF (every copy of the write end is closed) or an error: stop watching it
  }
}

attempt spawn_worker(const child_plan& plan, int exe_fd, steady::time_point deadline, worker_process& w) {
  auto fail = [](const char* what) {
    const int e = errno;
    return attempt{failure::crash, std::string(what) + ": " + errno_text(e)};
  };
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return fail("socketpair");
  unique_fd parent_sock(pair[0]);
  unique_fd child_sock(raise_fd(pair[1]));
  if (!child_sock.valid()) return fail("fcntl");
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return fail("pipe2");
  unique_fd err_r(err_pipe[0]);
  unique_fd err_w(raise_fd(err_pipe[1]));
  if (!err_w.valid()) return fail("fcntl");
  if (!set_nonblocking(err_r.get())) return fail("fcntl");
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) return fail("pipe2");
  unique_fd status_r(status_pipe[0]);
  unique_fd status_w(raise_fd(status_pipe[1]));
  if (!status_w.valid()) return fail("fcntl");

  const child_fds fds{child_sock.get(), err_w.get(), status_w.get(), exe_fd};
  // All signals blocked across fork: a signal reaching the child before exec_child has reset the
  // dispositions would run one of the relay's handlers there (Asio's writes to a pipe it shares
  // with the relay). The child unblocks once its handlers are the defaults.
  sigset_t all, previous;
  if (::sigfillset(&all) != 0) return fail("sigfillset");
  if (const int e = ::pthread_sigmask(SIG_SETMASK, &all, &previous); e != 0) {
    errno = e;
    return fail("pthread_sigmask");
  }
  const pid_t pid = ::fork();
  const int fork_errno = errno;
  if (pid == 0) exec_child(plan, fds);
  if (const int e = ::pthread_sigmask(SIG_SETMASK, &previous, nullptr); e != 0) {
    // Cannot happen with a mask obtained from the same call; leaving the thread with every
    // signal blocked would be worse than stopping.
    std::fprintf(stderr, "mukai: pthread_sigmask: %s\n", errno_text(e).c_str());
    std::abort();
  }
  if (pid < 0) {
    errno = fork_errno;
    return fail("fork");
  }
  child_sock.reset();
  err_w.reset();
  status_w.reset();  // or no EOF when the child's copy closes at exec

  // EOF on the status pipe: exec succeeded. Data: the child says which step failed.
  std::array<int, 2> report{};
  std::size_t got = 0;
  for (;;) {
    pollfd pfd{status_r.get(), POLLIN, 0};
    const int r = ::poll(&pfd, 1, poll_timeout_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int e = errno;
      (void)::kill(pid, SIGKILL);
      reap(pid);
      if (r == 0) return {failure::timeout, "the worker did not start within the timeout"};
      return {failure::crash, "poll: " + errno_text(e)};
    }
    const ssize_t n =
        ::read(status_r.get(), reinterpret_cast<char*>(report.data()) + got, sizeof report - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      (void)::kill(pid, SIGKILL);
      reap(pid);
      return {failure::crash, "read: " + errno_text(e)};
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
    if (got == sizeof report) break;
  }
  if (got != 0) {
    (void)::kill(pid, SIGKILL);  // it is exiting anyway
    reap(pid);
    if (got != sizeof report) return {failure::crash, "the worker's start-up report is truncated"};
    return {failure::crash, std::string("cannot start the worker: ") + spawn_step_name(report[0]) + ": " +
                                errno_text(report[1])};
  }
  w.pid = pid;
  w.sock = std::move(parent_sock);
  w.err = std::move(err_r);
  w.served = 0;
  return {};
}

// An idle worker has nothing to say: bytes (or EOF) on its socket mean it wrote beyond its last
// response or died, and it must not answer for the next message.
bool has_stray_output(const worker_process& w) noexcept {
  pollfd pfd{w.sock.get(), POLLIN, 0};
  int r = 0;
  do {
    r = ::poll(&pfd, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r != 0;
}

// The worker closed its socket (EOF, EPIPE, ECONNRESET): find out how it ended.
attempt conclude_gone(worker_process& w, std::string& diag) {
  int status = 0;
  if (!wait_exit(w.pid, steady::now() + exit_grace, status)) {
    retire(w);
    return {failure::bad_response, "closed its socket but did not exit"};
  }
  w.pid = -1;
  drain_stderr(w, diag);
  w.sock.reset();
  w.err.reset();
  if (status == -1) return {failure::crash, "ended (status unknown: reaped elsewhere)"};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return {failure::bad_response, describe_status(status) + " without a complete response"};
  return {failure::crash, describe_status(status)};
}

// Sends the request (head then raw) and reads one framed response into payload, all within the
// deadline, draining stderr on the way. Any failure leaves the worker retired (killed, reaped).
attempt exchange(worker_process& w, std::string_view head, std::string_view raw, steady::time_point deadline,
                 std::uint64_t max_response, std::string& payload, std::string& diag) {
  const std::array<std::string_view, 2> pieces{head, raw};
  std::size_t piece = 0, offset = 0;
  auto skip_sent = [&] {
    while (piece < pieces.size() && offset == pieces[piece].size()) {
      ++piece;
      offset = 0;
    }
  };
  skip_sent();
  std::array<char, frame_header_size> header{};
  bool have_header = false;
  std::uint64_t need = 0;
  std::size_t got = 0;
  payload.clear();

  for (;;) {
    const bool sending = piece < pieces.size();
    const int timeout = poll_timeout_ms(deadline);
    if (timeout == 0) {
      retire(w);
      return {failure::timeout, "no complete response within the timeout"};
    }
    std::array<pollfd, 2> fds{pollfd{w.sock.get(), static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0},
                              pollfd{w.err.get(), POLLIN, 0}};
    const nfds_t nfds = w.err.valid() ? 2 : 1;
    const int r = ::poll(fds.data(), nfds, timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      retire(w);
      return {failure::crash, "poll: " + errno_text(e)};
    }
    if (r == 0) continue;
    if (nfds == 2 && fds[1].revents != 0) drain_stderr(w, diag);
    const short ev = fds[0].revents;

    if (sending && (ev & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      const std::string_view rest = pieces[piece].substr(offset);
      // MSG_NOSIGNAL: a dead worker must give EPIPE, not a SIGPIPE that kills the relay.
      const ssize_t n =
          ::send(w.sock.get(), rest.data(), std::min<std::size_t>(rest.size(), std::size_t{1} << 20),
                 MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
        if (errno == EPIPE || errno == ECONNRESET) return conclude_gone(w, diag);
        const int e = errno;
        retire(w);
        return {failure::crash, "send: " + errno_text(e)};
      }
      offset += static_cast<std::size_t>(n);
      skip_sent();
    }

    if ((ev & (POLLIN | POLLHUP | POLLERR)) != 0) {
      // Never read past the end of this response: what follows it is evidence of a misbehaving
      // worker (has_stray_output), not part of the next answer.
      char* dst = have_header ? payload.data() + got : header.data() + got;
      const std::size_t want = have_header ? static_cast<std::size_t>(need) - got : header.size() - got;
      const ssize_t n = want == 0 ? 0 : ::recv(w.sock.get(), dst, want, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
        if (errno == ECONNRESET) return conclude_gone(w, diag);
        const int e = errno;
        retire(w);
        return {failure::crash, "recv: " + errno_text(e)};
      }
      if (n == 0 && want != 0) return conclude_gone(w, diag);
      got += static_cast<std::size_t>(n);
      if (!have_header && got == header.size()) {
        const auto length =
            parse_frame_header(std::string_view(header.data(), header.size()), response_magic);
        if (!length) {
          retire(w);
          return {failure::bad_response, "the response does not start with a response frame header"};
        }
        if (*length > max_response) {
          retire(w);
          return {failure::bad_response, "a response of " + std::to_string(*length) +
                                             " bytes exceeds the limit of " + std::to_string(max_response)};
        }
        have_header = true;
        need = *length;
        got = 0;
        payload.resize(static_cast<std::size_t>(need));
      }
      if (have_header && got == need) {
        if (sending) {
          retire(w);
          return {failure::bad_response, "answered before reading the whole request"};
        }
        return {};
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding and validating a response

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Takes the payload's buffer for the output (the bulk of a response) instead of copying it out.
std::optional<std::string> decode_response(std::string&& payload, sanitize::result& r) {
  byte_reader in(payload);
  const std::uint32_t status = in.u32();
  const std::string_view output = in.str();
  const std::string_view report_text = in.str();
  r.headers.from = std::string(in.str());
  r.headers.to = std::string(in.str());
  r.headers.subject = std::string(in.str());
  r.headers.date = std::string(in.str());
  r.headers.message_id = std::string(in.str());
  r.body_text = std::string(in.str());
  const std::uint8_t original = in.u8();
  const std::uint32_t count = in.u32();
  if (!in.ok()) return "truncated payload";
  if (status != 0) return "status " + std::to_string(status);
  if (original > 1) return "quarantine-original flag is " + std::to_string(original);
  if (original == 0 && !r.body_text.empty()) return "body text without a stored item";
  // Each part costs at least four length fields: an absurd count fails before any allocation.
  if (count > in.remaining() / 32) return "part count " + std::to_string(count) + " exceeds the payload";
  r.quarantine.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    sanitize::removed_part p;
    p.path = std::string(in.str());
    p.sha256 = std::string(in.str());
    p.filename = std::string(in.str());
    p.bytes = std::string(in.str());
    r.quarantine.push_back(std::move(p));
  }
  if (!in.at_end()) return in.ok() ? "trailing bytes after the last part" : "truncated part list";
  r.quarantine_original = original == 1;

  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(report_text, ec);
  if (ec) return "the report is not JSON: " + ec.message();
  auto rep = sanitize::report_from_json(v);
  if (!rep) return "the report does not parse (strict report_from_json)";
  r.rep = std::move(*rep);
  // Everything else is copied out by now. When the output is most of the payload (a clean or
  // mostly-text message), the payload's buffer becomes the output: one move within memory already
  // touched, instead of a new allocation and a copy. Otherwise (large removed parts) a copy, so the
  // output kept in memory until delivery does not hold the parts' capacity too.
  const auto output_at = static_cast<std::size_t>(output.data() - payload.data());
  const std::size_t output_size = output.size();
  if (output_size < payload.size() / 2) {
    r.output = std::string(output);
    return std::nullopt;
  }
  payload.erase(0, output_at);
  payload.resize(output_size);
  r.output = std::move(payload);
  return std::nullopt;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// The output must be one text/plain entity: exactly one top-level Content-Type field, of type
// text/plain. A worker turned hostile could otherwise emit a well-formed multipart message with
// an attachment, and it would pass the line-level output invariant.
std::optional<std::string> check_text_plain(std::string_view message) {
  const std::size_t end = message.find("\r\n\r\n");
  if (end == std::string_view::npos) return "the output has no end of header";
  const std::string_view block = message.substr(0, end + 2);
  std::vector<std::string> fields;
  std::size_t pos = 0;
  while (pos < block.size()) {
    const std::size_t eol = block.find("\r\n", pos);
    const std::string_view line = block.substr(pos, eol - pos);
    pos = eol + 2;
    if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
      if (fields.empty()) return "the output starts with a continuation line";
      fields.back().append(line);  // unfold
    } else {
      fields.emplace_back(line);
    }
  }
  std::size_t count = 0;
  std::string type;
  for (const auto& f : fields) {
    const std::size_t colon = f.find(':');
    if (colon == std::string::npos) return "the output has a header line without a colon";
    if (lower(trim(std::string_view(f).substr(0, colon))) != "content-type") continue;
    ++count;
    std::string_view value = std::string_view(f).substr(colon + 1);
    type = lower(trim(value.substr(0, value.find(';'))));
  }
  if (count != 1) return "the output has " + std::to_string(count) + " Content-Type fields";
  if (type != "text/plain") return "the output's Content-Type is " + type + ", not text/plain";
  return std::nullopt;
}

std::optional<std::string> validate_result(const sanitize::result& r, const std::string& id) {
  if (r.rep.quarantine_id && *r.rep.quarantine_id != id) return "the report names another quarantine ID";
  if (r.output.empty()) return "empty output";
  if (!sanitize::meets_output_invariant(r.output)) return "the output breaks the output invariant";
  if (auto e = check_text_plain(r.output)) return e;
  // The engine's contract (engine.hpp): any removal or hold keeps the original; clean keeps nothing.
  if (r.rep.result == sanitize::verdict::clean) {
    if (!r.quarantine.empty() || r.quarantine_original) return "verdict clean with something to quarantine";
  } else if (!r.quarantine_original) {
    return std::string("verdict ") + sanitize::to_string(r.rep.result) + " without keeping the original";
  }
  for (const auto& p : r.quarantine) {
    if (!is_sha256_hex(p.sha256)) return "part " + p.path + ": malformed SHA-256";
    const auto digest = sha256_hex(p.bytes);
    if (!digest) return "SHA-256 computation failed";
    if (*digest != p.sha256) return "part " + p.path + ": the bytes do not hash to the reported SHA-256";
    const bool listed =
        std::any_of(r.rep.parts.begin(), r.rep.parts.end(), [&](const sanitize::part_report& rp) {
          return rp.path == p.path && rp.action == sanitize::part_action::quarantined &&
                 rp.sha256 == p.sha256 && rp.size == p.bytes.size();
        });
    if (!listed) return "part " + p.path + ": not reported as quarantined with this digest and size";
  }
  if (r.rep.result == sanitize::verdict::sanitized) {
    // The notice tells the reader these parts are kept: each must come with its bytes.
    for (const auto& rp : r.rep.parts) {
      if (rp.action != sanitize::part_action::quarantined) continue;
      const bool delivered = std::any_of(
          r.quarantine.begin(), r.quarantine.end(),
          [&](const sanitize::removed_part& p) { return p.path == rp.path && p.sha256 == rp.sha256; });
      if (!delivered) return "part " + rp.path + ": reported as quarantined but its bytes are missing";
    }
  }
  return std::nullopt;
}

sanitize::result held_result(const config::policy& pol, const std::string& id, failure why) {
  sanitize::result r;
  r.rep.result = sanitize::verdict::held;
  r.rep.reasons = {reason_token(why)};
  r.rep.quarantine_id = id;
  r.rep.actions = {"held"};
  // Fixed text only: the relay builds it without parsing anything of the message.
  r.output = sanitize::minimal_hold_message(pol, id);
  r.quarantine_original = true;
  return r;
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n')
      out += " | ";
    else if (u < 0x20 || u == 0x7f)
      out += '?';
    else
      out += c;
  }
  while (out.size() >= 3 && out.compare(out.size() - 3, 3, " | ") == 0) out.resize(out.size() - 3);
  return out;
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return a > std::numeric_limits<std::uint64_t>::max() - b ? std::numeric_limits<std::uint64_t>::max()
                                                           : a + b;
}

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
  return b != 0 && a > std::numeric_limits<std::uint64_t>::max() / b
             ? std::numeric_limits<std::uint64_t>::max()
             : a * b;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// sanitizer_pool

struct sanitizer_pool::spawn_plan {
  child_plan child;
  std::uint32_t cpu_seconds = 0;  // per message, sent in each request
};

struct sanitizer_pool::counters {
  std::atomic<std::uint64_t> spawned{0}, completed{0}, crashes{0}, timeouts{0}, bad_responses{0}, recycled{0};
};

struct sanitizer_pool::slot {
  bool busy = false;                // guarded by the pool's mutex
  std::optional<worker_process> w;  // touched only by the thread holding the slot
  std::atomic<pid_t> pid_view{-1};  // for worker_pids() from other threads
};

worker_options worker_options_from_config(const config::mukai_config& cfg, std::filesystem::path binary,
                                          std::filesystem::path config_file) {
  worker_options o;
  o.binary = std::move(binary);
  o.config_file = std::move(config_file);
  o.policy = cfg.pol;
  o.count = cfg.worker.count;
  o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg.worker.timeout);
  o.memory_limit = cfg.worker.memory_limit;
  o.max_messages_per_worker = cfg.worker.max_messages;
  return o;
}

std::filesystem::path current_executable() { return std::filesystem::read_symlink("/proc/self/exe"); }

sanitizer_pool::sanitizer_pool(worker_options options)
    : options_(std::move(options)), counters_(std::make_unique<counters>()) {
  if (options_.count == 0) throw std::invalid_argument("sanitizer pool: worker count must be at least 1");
  if (options_.memory_limit < min_worker_memory)
    throw std::invalid_argument("sanitizer pool: worker memory limit " +
                                std::to_string(options_.memory_limit) + " is below the minimum of " +
                                std::to_string(min_worker_memory) + " bytes");
  if (options_.timeout <= std::chrono::milliseconds::zero())
    throw std::invalid_argument("sanitizer pool: worker timeout must be positive");
  if (options_.max_messages_per_worker == 0)
    throw std::invalid_argument("sanitizer pool: max_messages_per_worker must be at least 1");

  auto plan = std::make_unique<spawn_plan>();
  child_plan& c = plan->child;
  c.arg_strings = {"mukai", "worker"};
  if (!options_.config_file.empty()) {
    c.arg_strings.emplace_back("--config");
    c.arg_strings.push_back(
        std::filesystem::absolute(options_.config_file).string());  // the child runs in "/"
  }
  for (auto& a : c.arg_strings) c.argv.push_back(a.data());
  c.argv.push_back(nullptr);
  c.env_strings = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  if (!limit_address_space) c.env_strings.emplace_back("ASAN_OPTIONS=detect_leaks=0");
  for (auto& e : c.env_strings) c.envp.push_back(e.data());
  c.envp.push_back(nullptr);
  c.filter = network_filter();
  c.program.len = static_cast<unsigned short>(c.filter.size());
  c.program.filter = c.filter.data();

  const auto timeout_s = static_cast<std::uint64_t>((options_.timeout.count() + 999) / 1000);
  plan->cpu_seconds = static_cast<std::uint32_t>(std::min<std::uint64_t>(timeout_s + 5, UINT32_MAX));
  // Soft: enough for start-up and the first message (the worker re-arms it per message).
  // Hard: the whole life of a worker, which a compromised worker cannot raise.
  const rlim_t cpu_soft = plan->cpu_seconds;
  const rlim_t cpu_hard =
      saturating_mul(plan->cpu_seconds, saturating_add(options_.max_messages_per_worker, 1));
  const rlim_t memory = options_.memory_limit;
  c.limits = {
      {RLIMIT_CPU, {cpu_soft, cpu_hard}},
      {RLIMIT_NOFILE, {worker_max_files, worker_max_files}},
      {RLIMIT_FSIZE, {0, 0}},
      {RLIMIT_NPROC, {0, 0}},
      {RLIMIT_CORE, {0, 0}},
  };
  if (limit_address_space) c.limits.push_back({RLIMIT_AS, {memory, memory}});

  for (std::size_t i = 0; i < options_.count; ++i) slots_.push_back(std::make_unique<slot>());

  const int fd = ::open(options_.binary.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw errno_error(e, "cannot open the worker binary " + options_.binary.string());
  }
  unique_fd exe(raise_fd(fd));
  if (!exe.valid()) {
    const int e = errno;
    throw errno_error(e, "fcntl");
  }
  struct stat st {};
  if (::fstat(exe.get(), &st) != 0) {
    const int e = errno;
    throw errno_error(e, "cannot stat " + options_.binary.string());
  }
  if (!S_ISREG(st.st_mode)) throw errno_error(EACCES, options_.binary.string() + " is not a regular file");
  plan_ = std::move(plan);
  exe_fd_ = exe.release();
}

sanitizer_pool::~sanitizer_pool() {
  for (auto& s : slots_) {
    if (s->w) retire(*s->w);
  }
  if (exe_fd_ >= 0) (void)::close(exe_fd_);
}

sanitizer_pool::slot& sanitizer_pool::acquire() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    // A slot with a live worker first: it saves a spawn.
    for (auto& s : slots_) {
      if (!s->busy && s->pid_view.load() > 0) {
        s->busy = true;
        return *s;
      }
    }
    for (auto& s : slots_) {
      if (!s->busy) {
        s->busy = true;
        return *s;
      }
    }
    free_.wait(lock);
  }
}

void sanitizer_pool::release(slot& s) noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    s.busy = false;
  }
  free_.notify_one();
}

job_outcome sanitizer_pool::sanitize(std::string_view raw, quarantine_store& store,
                                     const quarantine_envelope& envelope, std::string received_by) {
  return run(worker_test_hook::none, 0, raw, store, envelope, std::move(received_by));
}

job_outcome sanitizer_pool::sanitize_for_test(worker_test_hook hook, std::uint32_t hook_argument,
                                              std::string_view raw, quarantine_store& store,
                                              const quarantine_envelope& envelope, std::string received_by) {
  return run(hook, hook_argument, raw, store, envelope, std::move(received_by));
}

job_outcome sanitizer_pool::run(worker_test_hook hook, std::uint32_t hook_argument, std::string_view raw,
                                quarantine_store& store, const quarantine_envelope& envelope,
                                std::string received_by) {
  // Chosen here, not by the worker: the report must name this ID, so a worker cannot make the
  // notice point at another quarantine item.
  const std::string id = new_quarantine_id();
  const std::uint64_t max_response =
      options_.max_response_size != 0
          ? options_.max_response_size
          : saturating_add(saturating_add(saturating_mul(raw.size(), 2),
                                          saturating_mul(options_.policy.limit.max_decoded_output, 3)),
                           16ull * 1024 * 1024);

  sanitize::result result;
  failure kind = failure::none;
  std::string detail, diag;
  pid_t pid = -1;
  {
    slot& s = acquire();
    // The timeout starts with a worker of our own: waiting for one is not the message's fault.
    const auto deadline = steady::now() + options_.timeout;
    struct slot_guard {
      sanitizer_pool* pool;
      slot* held;
      ~slot_guard() { pool->release(*held); }
    } guard{this, &s};
    auto drop_worker = [&s] {
      if (s.w) retire(*s.w);
      s.w.reset();
      s.pid_view.store(-1);
    };

    try {
      const std::uint64_t generation = generation_.load();
      if (s.w && (s.w->generation != generation || has_stray_output(*s.w))) {
        if (s.w->generation == generation) counters_->recycled.fetch_add(1);
        drop_worker();
      }
      if (!s.w) {
        s.w.emplace();
        attempt a = spawn_worker(plan_->child, exe_fd_, deadline, *s.w);
        if (a.kind != failure::none) {
          kind = a.kind;
          detail = std::move(a.detail);
          drop_worker();
        } else {
          s.w->generation = generation;
          s.pid_view.store(s.w->pid);
          counters_->spawned.fetch_add(1);
        }
      }
      if (kind == failure::none) {
        pid = s.w->pid;
        diag.clear();
        drain_stderr(*s.w, diag);  // left over from start-up or the previous message: not ours
        diag.clear();
        std::string head;
        put_u32(head, static_cast<std::uint32_t>(hook));
        put_u32(head, hook_argument);
        put_u32(head, plan_->cpu_seconds);
        put_str(head, id);
        put_str(head, received_by);
        put_u64(head, raw.size());
        head = frame_header(request_magic, head.size() + raw.size()) + head;
        std::string payload;
        attempt a = exchange(*s.w, head, raw, deadline, max_response, payload, diag);
        if (a.kind != failure::none) {
          kind = a.kind;
          detail = std::move(a.detail);
        } else if (auto bad = decode_response(std::move(payload), result)) {
          kind = failure::bad_response;
          detail = std::move(*bad);
        } else if (auto invalid = validate_result(result, id)) {
          kind = failure::bad_response;
          detail = std::move(*invalid);
        }
        if (kind != failure::none) {
          drop_worker();
        } else if (++s.w->served >= options_.max_messages_per_worker) {
          counters_->recycled.fetch_add(1);
          drop_worker();
        }
      }
    } catch (const std::bad_alloc&) {
      // The relay itself ran out of memory holding a response: not the message's fault, but
      // nothing of that response can be trusted to be whole.
      drop_worker();
      kind = failure::bad_response;
      detail = "out of memory in the relay while handling the response";
    }
  }

  if (kind != failure::none) {
    switch (kind) {
      case failure::crash:
        counters_->crashes.fetch_add(1);
        break;
      case failure::timeout:
        counters_->timeouts.fetch_add(1);
        break;
      default:
        counters_->bad_responses.fetch_add(1);
        break;
    }
    if (options_.log) {
      std::string line = "sanitizer worker";
      if (pid > 0) line += " " + std::to_string(pid);
      // detail and diag carry bytes chosen by the worker (a part path, a content type, its
      // stderr): printable() keeps them from forging log lines.
      if (detail.size() > 512) detail.resize(512);
      line += ": " + std::string(reason_token(kind)) + ": " + printable(detail) +
              "; message held as quarantine ID " + id;
      if (!diag.empty()) line += "; stderr: " + printable(diag);
      options_.log(line);
    }
    result = held_result(options_.policy, id, kind);
  } else {
    counters_->completed.fetch_add(1);
  }

  job_outcome out;
  out.result = std::move(result);
  const quarantine_headers headers{out.result.headers.from, out.result.headers.to, out.result.headers.subject,
                                   out.result.headers.date, out.result.headers.message_id};
  out.store_error = store.store(id, raw, out.result, envelope, headers);
  return out;
}

void sanitizer_pool::restart_workers() noexcept { generation_.fetch_add(1); }

worker_pool_stats sanitizer_pool::stats() const noexcept {
  worker_pool_stats s;
  s.spawned = counters_->spawned.load();
  s.completed = counters_->completed.load();
  s.crashes = counters_->crashes.load();
  s.timeouts = counters_->timeouts.load();
  s.bad_responses = counters_->bad_responses.load();
  s.recycled = counters_->recycled.load();
  return s;
}

std::vector<pid_t> sanitizer_pool::worker_pids() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<pid_t> pids;
  for (const auto& s : slots_) {
    const pid_t p = s->pid_view.load();
    if (p > 0) pids.push_back(p);
  }
  return pids;
}

// ---------------------------------------------------------------------------------------------
// The worker side: `mukai worker`

namespace {

bool check_sandbox(std::string& why) {
  if (::prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L) != 1) {
    why = "no_new_privs is not set";
    return false;
  }
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s >= 0) {
    (void)::close(s);
    why = "socket() is allowed";
    return false;
  }
  if (errno != EACCES) {
    why = "socket() failed with \"" + errno_text(errno) + "\", not with EACCES from the filter";
    return false;
  }
  return true;
}

bool install_worker_filter() {
  bpf_code code = worker_filter();
  sock_fprog program{static_cast<unsigned short>(code.size()), code.data()};
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// Re-arms the CPU backstop for one message: the soft limit counts the process's whole life.
bool arm_cpu_limit(std::uint32_t seconds) {
  rusage usage{};
  rlimit limit{};
  if (::getrusage(RUSAGE_SELF, &usage) != 0 || ::getrlimit(RLIMIT_CPU, &limit) != 0) return false;
  rlim_t soft = static_cast<rlim_t>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + 1 + seconds;
  if (limit.rlim_max != RLIM_INFINITY) soft = std::min(soft, limit.rlim_max);
  limit.rlim_cur = soft;
  return ::setrlimit(RLIMIT_CPU, &limit) == 0;
}

[[noreturn]] void sleep_forever() {
  for (;;) ::pause();
}

std::string limit_text(rlimit_resource resource) {
  rlimit l{};
  if (::getrlimit(resource, &l) != 0) return "error";
  auto one = [](rlim_t v) { return v == RLIM_INFINITY ? std::string("inf") : std::to_string(v); };
  return one(l.rlim_cur) + "/" + one(l.rlim_max);
}

// Test hook report_sandbox: what a test needs to see that the sandbox is in place.
void describe_sandbox(std::vector<std::string>& out) {
  out.push_back("test:rlimit-as=" + limit_text(RLIMIT_AS));
  out.push_back("test:rlimit-cpu=" + limit_text(RLIMIT_CPU));
  out.push_back("test:rlimit-nofile=" + limit_text(RLIMIT_NOFILE));
  out.push_back("test:rlimit-fsize=" + limit_text(RLIMIT_FSIZE));
  out.push_back("test:rlimit-nproc=" + limit_text(RLIMIT_NPROC));
  out.push_back("test:rlimit-core=" + limit_text(RLIMIT_CORE));
  out.push_back("test:no-new-privs=" + std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L)));
  out.push_back("test:dumpable=" + std::to_string(::prctl(PR_GET_DUMPABLE, 0L, 0L, 0L, 0L)));
  {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Seccomp:", 0) == 0) out.push_back("test:seccomp=" + std::string(trim(line.substr(8))));
      if (line.rfind("Seccomp_filters:", 0) == 0)
        out.push_back("test:seccomp-filters=" + std::string(trim(line.substr(16))));
    }
  }
  {
    std::vector<int> fds;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      const int own = ::dirfd(d);
      while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const int fd = std::atoi(e->d_name);
        if (fd != own) fds.push_back(fd);
      }
      (void)::closedir(d);
    }
    std::sort(fds.begin(), fds.end());
    std::string list;
    for (int fd : fds) list += (list.empty() ? "" : ",") + std::to_string(fd);
    out.push_back("test:fds=" + list);
  }
  {
    std::string env;
    for (char** e = environ; e && *e; ++e) env += (env.empty() ? "" : ";") + std::string(*e);
    out.push_back("test:env=" + env);
  }
  {
    std::array<char, 4096> cwd{};
    out.push_back("test:cwd=" + std::string(::getcwd(cwd.data(), cwd.size()) ? cwd.data() : "?"));
  }
  {
    std::ifstream dev("/proc/net/dev");
    std::string line, names;
    for (int n = 0; std::getline(dev, line); ++n) {
      if (n < 2) continue;
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      names += (names.empty() ? "" : ",") + std::string(trim(std::string_view(line).substr(0, colon)));
    }
    out.push_back("test:ifaces=" + names);
  }
  {
    const int fd = ::open("/tmp/mukai-worker-probe", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    out.push_back("test:open-write=" + (fd >= 0 ? std::string("ok") : std::to_string(errno)));
    if (fd >= 0) (void)::close(fd);
  }
  {
    char* const argv[] = {nullptr};
    ::execve("/nonexistent/mukai-probe", argv, argv);
    out.push_back("test:execve=" + std::to_string(errno));
  }
  {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    out.push_back("test:fork=" + (child > 0 ? std::string("ok") : std::to_string(errno)));
    if (child > 0) reap(child);
  }
}

void run_before_hook(worker_test_hook hook, std::uint32_t argument, std::vector<std::string>& warnings) {
  switch (hook) {
    case worker_test_hook::crash:
      std::abort();
    case worker_test_hook::hang:
      sleep_forever();
    case worker_test_hook::delay:
      std::this_thread::sleep_for(std::chrono::milliseconds(argument));
      break;
    case worker_test_hook::exit_nonzero:
      ::_exit(3);
    case worker_test_hook::garbage:
      (void)write_all(1, "HTTP/1.0 200 OK\r\n\r\nthis is not a worker response\n");
      sleep_forever();
    case worker_test_hook::oversized:
      (void)write_all(1, frame_header(response_magic, std::uint64_t{1} << 40));
      sleep_forever();
    case worker_test_hook::memory_bomb: {
      constexpr std::size_t chunk = 4 << 20;
      std::vector<std::unique_ptr<char[]>> hog;
      for (;;) {
        hog.push_back(std::unique_ptr<char[]>(new char[chunk]));
        volatile char* p = hog.back().get();
        for (std::size_t i = 0; i < chunk; i += 4096) p[i] = 1;  // touch every page
      }
    }
    case worker_test_hook::try_connect: {
      const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (s < 0) {
        warnings.push_back("test:connect=socket-errno=" + std::to_string(errno));
        break;
      }
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<std::uint16_t>(argument));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const int rc = ::connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
      warnings.push_back(rc == 0 ? "test:connect=ok" : "test:connect=connect-errno=" + std::to_string(errno));
      (void)::close(s);
      break;
    }
    default:
      break;
  }
}

// The response payload (without its frame header), with the tampering test hooks applied.
std::string encode_response(sanitize::result& r, worker_test_hook hook) {
  switch (hook) {
    case worker_test_hook::tamper_part:
      if (!r.quarantine.empty()) {
        auto& b = r.quarantine.front().bytes;
        if (b.empty())
          b = "x";
        else
          b[0] = static_cast<char>(b[0] ^ 1);
      }
      break;
    case worker_test_hook::tamper_output:
      r.output += "\n";
      break;
    case worker_test_hook::multipart_output: {
      const auto at = r.output.find("Content-Type: text/plain");
      if (at != std::string::npos) r.output.replace(at, 24, "Content-Type: multipart/mixed");
      break;
    }
    case worker_test_hook::wrong_quarantine_id:
      r.rep.quarantine_id = "20000101T000000Z-0000000000";
      break;
    default:
      break;
  }
  boost::json::object report = sanitize::to_json(r.rep);
  if (hook == worker_test_hook::tamper_report) report["verdict"] = "malicious";
  const std::string report_text = boost::json::serialize(report);

  std::size_t size = 64 + r.output.size() + report_text.size() + r.headers.from.size() + r.headers.to.size() +
                     r.headers.subject.size() + r.headers.date.size() + r.headers.message_id.size() +
                     r.body_text.size();
  for (const auto& p : r.quarantine)
    size += 32 + p.path.size() + p.sha256.size() + p.filename.size() + p.bytes.size();
  std::string body;
  body.reserve(size);
  put_u32(body, 0);
  put_str(body, r.output);
  put_str(body, report_text);
  put_str(body, r.headers.from);
  put_str(body, r.headers.to);
  put_str(body, r.headers.subject);
  put_str(body, r.headers.date);
  put_str(body, r.headers.message_id);
  put_str(body, r.body_text);
  body += static_cast<char>(r.quarantine_original ? 1 : 0);
  put_u32(body, static_cast<std::uint32_t>(r.quarantine.size()));
  for (const auto& p : r.quarantine) {
    put_str(body, p.path);
    put_str(body, p.sha256);
    put_str(body, p.filename);
    put_str(body, p.bytes);
  }
  return body;
}

int serve_requests(const config::mukai_config& cfg) {
  // The relay never spools more than smtp.max_message_size; the engine holds anything above the
  // policy's limit itself. 1 MiB covers the ID and the trace line.
  const std::uint64_t limit = saturating_add(
      std::max<std::uint64_t>(cfg.smtp.max_message_size, cfg.pol.limit.max_message_size), 1u << 20);
  std::array<char, frame_header_size> header{};
  for (;;) {
    const ssize_t n = read_full(0, header.data(), header.size());
    if (n == 0) return 0;  // the relay closed: done
    if (n != static_cast<ssize_t>(header.size())) return exit_bad_request;
    const auto length = parse_frame_header(std::string_view(header.data(), header.size()), request_magic);
    if (!length || *length > limit) return exit_bad_request;
    std::string payload(static_cast<std::size_t>(*length), '\0');
    if (read_full(0, payload.data(), payload.size()) != static_cast<ssize_t>(payload.size()))
      return exit_bad_request;

    byte_reader in(payload);
    const auto hook = static_cast<worker_test_hook>(in.u32());
    const std::uint32_t argument = in.u32();
    const std::uint32_t cpu_seconds = in.u32();
    sanitize::request req;
    req.quarantine_id = std::string(in.str());
    req.received_by = std::string(in.str());
    const std::string_view raw = in.str();
    if (!in.at_end() || !validate_quarantine_id(req.quarantine_id)) return exit_bad_request;
    if (!arm_cpu_limit(cpu_seconds)) return exit_internal;

    std::vector<std::string> test_warnings;
    run_before_hook(hook, argument, test_warnings);
    sanitize::result r = sanitize::sanitize_message(raw, cfg.pol, req);
    if (hook == worker_test_hook::report_sandbox) describe_sandbox(test_warnings);
    for (auto& w : test_warnings) r.rep.warnings.push_back(std::move(w));

    const std::string body = encode_response(r, hook);
    const std::string head = frame_header(response_magic, body.size());
    if (hook == worker_test_hook::truncated) {
      (void)write_all(1, head);
      (void)write_all(1, std::string_view(body).substr(0, body.size() / 2));
      ::_exit(0);
    }
    if (hook == worker_test_hook::extra_output) {
      // In the same write as the end of the response, so the bytes wait in the socket when the
      // parent next looks (a worker that delays them costs the next message a hold instead).
      if (!write_all(1, head) || !write_all(1, body + "EXTRA")) return exit_internal;
      continue;
    }
    if (!write_all(1, head) || !write_all(1, body)) return exit_internal;
  }
}

}  // namespace

int run_sanitizer_worker(const std::vector<std::string>& args) {
  (void)apply_malloc_policy(worker_malloc_policy);  // best effort: only speed depends on it
  // Never dump core: a core file would be a copy of someone's mail on disk. Also keeps other
  // processes of the same user from attaching.
  if (::prctl(PR_SET_DUMPABLE, 0L, 0L, 0L, 0L) != 0) {
    std::fprintf(stderr, "mukai worker: PR_SET_DUMPABLE: %s\n", errno_text(errno).c_str());
    return exit_not_sandboxed;
  }
  std::string why;
  if (!check_sandbox(why)) {
    std::fprintf(stderr, "mukai worker: %s: the worker only runs in the relay's sandbox\n", why.c_str());
    return exit_not_sandboxed;
  }
  if (!install_worker_filter()) {
    std::fprintf(stderr, "mukai worker: installing the seccomp filter: %s\n", errno_text(errno).c_str());
    return exit_not_sandboxed;
  }
  std::optional<std::string> config_file;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_file = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0) {
      config_file = args[i].substr(9);
    } else {
      std::fprintf(stderr, "mukai worker: unexpected argument \"%s\" (usage: mukai worker [--config FILE])\n",
                   printable(args[i]).c_str());
      return exit_usage;
    }
  }
  try {
    config::mukai_config cfg;
    if (config_file) {
      auto loaded = config::load_config_file(*config_file);
      for (const auto& e : loaded.errors)
        std::fprintf(stderr, "mukai worker: %s\n", config::to_string(e).c_str());
      if (!loaded.config) return exit_config;
      cfg = std::move(*loaded.config);
    } else {
      cfg = config::embedded_default();
    }
    return serve_requests(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mukai worker: %s\n", e.what());
    return exit_internal;
  }
}

}  // namespace mukai::server
