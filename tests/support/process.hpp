// Test-only process helpers for the integration harness: a child process owned by one object
// (spawned with posix_spawn, killed and reaped by its destructor), a bounded run-to-completion
// helper that captures output, a free loopback port, and a wait for a listening TCP port.
// Invariants: a child_process only ever waits for its own pid (never waitpid(-1)), so it cannot
// steal the exit status of a child that other code (mukai's worker pool, another harness object)
// is waiting for; every wait has a timeout; a destroyed child_process has been reaped.
// Threading: a child_process belongs to one thread; the free functions are thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mukai::testing {

struct spawn_options {
  std::vector<std::string> argv{};       // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::string> extra_env{};  // "NAME=value": added to the parent's environment, or replacing
  std::filesystem::path working_dir{};   // empty: the parent's
  std::filesystem::path stdout_path{};   // empty: /dev/null; the file is created or appended to
  std::filesystem::path stderr_path{};   // empty: /dev/null; the same path as stdout_path shares one file
  int stdout_fd = -1;                    // >= 0: the child's stdout is a copy of this descriptor (a pipe)
  int stderr_fd = -1;                    // >= 0: likewise for stderr
  // A process group of its own, so that terminate() and kill9() also reach the grandchildren a
  // script starts (postfix -> postfix-script -> master -w). Daemons that call setsid() leave it.
  bool new_process_group = true;
};

class child_process {
 public:
  child_process() = default;
  // Throws std::system_error when the program cannot be started.
  explicit child_process(const spawn_options& options);
  ~child_process();  // kill9() and reap; never blocks for long
  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }  // -1 when empty
  bool running();                     // reaps the child if it has exited
  // The exit status, or nothing if it is still running after the timeout. Exit code for a normal
  // exit, 128 + signal number for a death by signal (the shell's convention).
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to grace, then SIGKILL and reap. Returns the exit status.
  int terminate(std::chrono::milliseconds grace = std::chrono::seconds(5));
  void kill9();  // SIGKILL and reap
  std::optional<int> exit_status() const { return status_; }

 private:
  void signal(int sig);
  pid_t pid_ = -1;
  bool own_group_ = false;
  std::optional<int> status_;  // set once reaped
};

struct command_result {
  int exit_code = -1;  // as child_process::wait(); -1 when it timed out (it was killed)
  bool timed_out = false;
  bool truncated = false;  // output beyond max_output was read and dropped
  std::string output;      // stdout and stderr interleaved
};

// Runs argv to completion, capturing stdout and stderr (at most max_output bytes kept). Kills the
// process group on timeout. Stops reading once the child has exited and the pipe is drained, so a
// daemon that keeps an inherited copy of the pipe cannot make it hang. What the command leaves
// running after a normal exit is left alone (that is how "postfix start" starts the master).
// Throws std::system_error when the program cannot be started.
command_result run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                           const std::vector<std::string>& extra_env = {},
                           std::size_t max_output = std::size_t{1} << 20);

// A TCP port on 127.0.0.1 that was free a moment ago: binds port 0, reads the port, closes.
// Race: another process may take the port before the caller binds it; on a test machine that is
// rare, and the server that loses the race fails at bind; the harness notices because it checks
// with wait_for_listen(port, timeout, its own server's pid) that the listener is really its own.
std::uint16_t free_loopback_port();

// True once a socket listens on 127.0.0.1:port or 0.0.0.0:port, and, when owner is given, that
// socket is one of owner's open files. Read from /proc/net/tcp and /proc/<owner>/fd, so the check
// opens no session on the server. False after the timeout.
bool wait_for_listen(std::uint16_t port, std::chrono::milliseconds timeout, pid_t owner = -1);
bool is_listening(std::uint16_t port, pid_t owner = -1);

// The full path of a program: PATH first, then the sbin directories that a non-login root shell
// may lack in its PATH. Empty when not found.
std::filesystem::path find_program(const std::string& name);

// The whole content of a file ("" when it cannot be read).
std::string read_file_or_empty(const std::filesystem::path& path);

}  // namespace mukai::testing
