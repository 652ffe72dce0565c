// The sanitizer worker: MIME parsing moved out of the relay's process (ARCHITECTURE.md "One
// message, end to end" steps 4-5; issue 3 "Never lose a message"). Two halves:
//
//  - sanitizer_pool (relay side): runs each message through a sandboxed `mukai worker` process,
//    validates what comes back, stores the quarantine item and returns a job_outcome, exactly as
//    sanitize_one does in-process. The relay never parses MIME. Every failure of a worker - crash
//    or signal, non-zero exit, wall-clock timeout, a malformed, oversized or inconsistent
//    response - becomes verdict "held" with reason "worker:crash", "worker:timeout" or
//    "worker:bad-response", the fixed-text hold notice (sanitize::minimal_hold_message, built
//    without parsing anything) as output, and quarantine_original = true: the original goes to
//    the quarantine whole and is never delivered (fail closed).
//  - run_sanitizer_worker (worker side, the hidden `mukai worker [--config FILE]`): loads the same
//    configuration as the relay, reads requests on stdin, answers on stdout.
//
// Process model: a pool of `count` long-lived workers, each retired (SIGKILL + reap) after
// max_messages_per_worker messages (Postfix's max_use idea), after any failure, when it wrote bytes
// nobody asked for, and on restart_workers(). Workers start on first use (a slot without a live
// worker spawns one) and then stay. Why not one process per message: exec, dynamic linking of
// GMime/ICU/libmagic, loading the magic database and the first message's warm-up cost tens of
// milliseconds per process. Measured here (2 cores, shared with other builds, 600 corpus messages
// up to 100 KB, quarantine on tmpfs): one worker per message 19-22 msg/s; two long-lived workers
// 230-440 msg/s, against in-process sanitize_one on two threads 210-250 msg/s (in-process threads
// barely scale there, processes do). The issue 3 target is 600-800 msg/s. What reuse costs: a
// worker compromised by one message could tamper with the next ones it serves; recycling bounds
// that to max_messages_per_worker, the parent validates every response (below), and the sandbox
// leaves a compromised worker no network and no file to write. A worker that writes stray bytes
// late (after the parent's idle check) costs the next message a hold ("worker:bad-response"): fail
// closed, never a wrong verdict.
//
// Sandbox. Applied by the parent in the child between fork and exec, because then it holds from
// the worker's first instruction whatever the binary does, and it uses only async-signal-safe
// system calls (the relay is multi-threaded, so nothing may allocate or lock after fork; all
// signals are blocked across fork so that no relay handler runs in the child):
//   fds: 0 and 1 are one end of a socketpair to the parent, 2 a pipe the parent drains (kept for
//   diagnostics, bounded), every other descriptor closed (close_range); all signal dispositions
//   reset and the mask cleared; cwd "/"; environment exactly PATH=/usr/sbin:/usr/bin:/sbin:/bin
//   (GLib reads G_DEBUG, G_SLICE..., libmagic MAGIC: none may leak in from the relay); RLIMIT_AS =
//   memory_limit (not in AddressSanitizer builds, whose shadow mapping cannot load under it; those
//   also get ASAN_OPTIONS=detect_leaks=0, LeakSanitizer needing ptrace); RLIMIT_CPU soft = timeout
//   + 5 s, hard = that x (max_messages_per_worker + 1) (the worker re-arms the soft limit to "used
//   + timeout + 5 s" before each message; a backstop for an orphaned spinning worker, the parent's
//   wall clock is the real limit); RLIMIT_NOFILE 32; RLIMIT_FSIZE 0; RLIMIT_NPROC 0 (no fork and no
//   threads for a non-root user; root ignores it); RLIMIT_CORE 0 (a core file would put mail on
//   disk); unshare(CLONE_NEWNET) (works as root: only a down loopback; its failure is tolerated
//   because the filter holds alone); PR_SET_NO_NEW_PRIVS; a seccomp filter making socket,
//   socketpair, connect, bind, listen, accept, accept4 fail with EACCES and io_uring_* with EPERM
//   (io_uring would bypass the filter). The filter is a hand-written classic BPF program rather
//   than libseccomp's: it is built before fork and installed with one prctl, so nothing allocates
//   in the child, and it needs no new library. x86_64 and aarch64 only (other architectures fail to
//   compile).
// At its start `mukai worker` adds what only makes sense after exec: PR_SET_DUMPABLE 0, a
// self-check that refuses to run (exit 71) unless no_new_privs is set and socket() fails with
// EACCES (so the worker never runs unsandboxed, e.g. started by hand), and a second filter:
// execve, execveat, fork, vfork, clone without CLONE_THREAD, ptrace, process_vm_*, mount,
// unshare, setns, keyctl, bpf, perf_event_open, userfaultfd, module loading... -> EPERM; clone3
// and openat2 (flags in memory a filter cannot read) -> ENOSYS, so glibc falls back to clone and
// openat; opening a file for writing, creating, renaming, removing, linking, chmod/chown,
// truncate, xattrs -> EACCES. The worker needs no file-system writes. A deny list rather than an
// allow list: GLib, GMime, ICU and libmagic use a wide, version-dependent set of system calls,
// and an allow list missing one would hold every message after a library upgrade.
// Not used: PR_SET_PDEATHSIG, because it fires when the spawning *thread* exits and a pool
// worker outlives the caller thread that spawned it; an orphaned worker ends at EOF on stdin or
// at its CPU limit.
//
// Wire protocol (integers little-endian; str = u64 length + bytes):
//   request  = "MKWQ" u32 version=2 u64 payload-length,
//              payload = u32 test-hook u32 hook-argument u32 cpu-seconds
//                        str quarantine-id str received-by str raw-message
//   response = "MKWR" u32 version=2 u64 payload-length,
//              payload = u32 status=0 str output str report-json
//                        str from str to str subject str date str message-id str body-text
//                        u8 quarantine-original u32 part-count
//                        part-count x (str path str sha256 str filename str bytes)
// The parent refuses a response whose announced length exceeds max_response_size before reading
// it, and then checks, before trusting anything: every byte consumed exactly; the report parses
// strictly (report_from_json) and names our quarantine ID (or none); the output is non-empty,
// meets sanitize::meets_output_invariant and is one text/plain entity (no multipart, so a
// compromised worker cannot smuggle an attachment through the output); each part's SHA-256
// recomputed with OpenSSL equals the reported one and a report part "quarantined" with the same
// path, digest and size exists; clean => nothing to quarantine; sanitized or held => the original
// is quarantined (the engine's contract). Only then does it store to the quarantine.
//
// Threading: sanitize() blocks (spawn, I/O, waiting for a free worker): call it off the I/O
// thread. Up to `count` callers run concurrently, one worker each; more callers wait for a free
// worker. The pool must outlive every call and must not be destroyed during one. The process
// must not ignore SIGCHLD nor reap children it did not spawn (waitpid(-1)): the pool reaps its
// own workers by PID, and every worker it spawns is reaped (no zombies) by the time it is retired.
// Configuration: workers read the config file when they start; a worker spawned later re-reads
// it, so (as with Postfix's daemons) an edited file takes effect as workers are recycled. After a
// reload build a new pool (the hold notice's policy is the pool's copy) or call restart_workers().
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "config/policy.hpp"
#include "server/quarantine_store.hpp"
#include "server/sanitize_job.hpp"

namespace mukai::server {

struct worker_options {
  std::filesystem::path binary;               // the mukai executable; the relay passes current_executable()
  std::filesystem::path config_file;          // given to the worker as --config; empty: the embedded default
  config::policy policy;                      // the policy the worker will load (hold notices are built here)
  std::size_t count = 2;                      // workers, and so concurrent sanitize() calls
  std::chrono::milliseconds timeout{60'000};  // wall clock per message, spawning included
  std::uint64_t memory_limit = 512ull * 1024 * 1024;  // RLIMIT_AS; at least min_worker_memory
  std::size_t max_messages_per_worker = 100;          // then the worker is replaced
  // 0: 2 x message + 3 x policy max_decoded_output (the encoded output and its body text) + 16 MiB
  std::uint64_t max_response_size = 0;
  // One line per worker failure or spawn error, with the quarantine ID and the worker's stderr.
  // Called from the caller's thread, must be thread-safe; empty: failures are not logged.
  std::function<void(const std::string&)> log;
};

// The smallest RLIMIT_AS that runs a worker: ICU's data and the magic database are mapped at
// start (below about 96 MiB libmagic falls back to the slow text database, below 64 MiB the
// binary does not load).
inline constexpr std::uint64_t min_worker_memory = 128ull * 1024 * 1024;

// worker.count, worker.timeout, worker.memory_limit and the policy from a loaded configuration.
[[nodiscard]] worker_options worker_options_from_config(const config::mukai_config& cfg,
                                                        std::filesystem::path binary,
                                                        std::filesystem::path config_file);

// The running executable (/proc/self/exe), for the relay to re-execute itself as the worker.
[[nodiscard]] std::filesystem::path current_executable();

// Test hooks carried in the request. Only the parent writes requests and only
// sanitizer_pool::sanitize_for_test sets a hook, so a message can never trigger one.
enum class worker_test_hook : std::uint32_t {
  none = 0,
  crash,                // abort() before sanitizing
  hang,                 // sleep forever
  delay,                // sleep <argument> milliseconds, then sanitize normally
  exit_nonzero,         // _exit(3) before answering
  garbage,              // write bytes that are not a response, then sleep
  oversized,            // announce a response of 1 TiB
  truncated,            // write half a response, then exit 0
  memory_bomb,          // allocate and touch memory until allocation fails
  try_connect,          // try a TCP connection to 127.0.0.1:<argument>; report as a warning
  report_sandbox,       // sanitize, adding warnings "test:..." describing the sandbox
  tamper_part,          // change a quarantined part's bytes after sanitizing
  tamper_report,        // make the report's verdict an unknown name
  tamper_output,        // add a bare LF to the output
  multipart_output,     // replace the output's Content-Type with multipart/mixed
  wrong_quarantine_id,  // report a different quarantine ID
  extra_output,         // answer correctly, then write extra bytes
};

struct worker_pool_stats {
  std::uint64_t spawned = 0;    // processes started (exec succeeded)
  std::uint64_t completed = 0;  // responses accepted
  std::uint64_t crashes = 0;    // including spawn failures
  std::uint64_t timeouts = 0;
  std::uint64_t bad_responses = 0;  // malformed, oversized or failed validation
  std::uint64_t recycled = 0;       // retired after max_messages_per_worker or a stray write
};

class sanitizer_pool {
 public:
  // Opens `binary` now (O_PATH) and executes that file for every worker, so an upgrade of the
  // file on disk never pairs a relay with a worker of another version. Throws std::system_error
  // (binary cannot be opened) or std::invalid_argument (count 0, memory below min_worker_memory,
  // zero timeout): start-up errors. Spawns nothing yet.
  explicit sanitizer_pool(worker_options options);
  ~sanitizer_pool();  // kills and reaps the idle workers
  sanitizer_pool(const sanitizer_pool&) = delete;
  sanitizer_pool& operator=(const sanitizer_pool&) = delete;

  // Like sanitize_one (the quarantine ID is chosen here), but the engine runs in a worker.
  // store_error set: the quarantine could not be written, the caller must not deliver.
  [[nodiscard]] job_outcome sanitize(std::string_view raw, quarantine_store& store,
                                     const quarantine_envelope& envelope, std::string received_by = {});

  // Tests only: the same with a worker test hook.
  [[nodiscard]] job_outcome sanitize_for_test(worker_test_hook hook, std::uint32_t hook_argument,
                                              std::string_view raw, quarantine_store& store,
                                              const quarantine_envelope& envelope,
                                              std::string received_by = {});

  // Workers running now finish their message and are then replaced; idle ones are replaced at
  // their next use.
  void restart_workers() noexcept;

  [[nodiscard]] worker_pool_stats stats() const noexcept;
  // PIDs of the live workers (idle or busy), for tests and diagnostics.
  [[nodiscard]] std::vector<pid_t> worker_pids() const;

 private:
  struct slot;
  struct spawn_plan;
  struct counters;
  [[nodiscard]] job_outcome run(worker_test_hook hook, std::uint32_t hook_argument, std::string_view raw,
                                quarantine_store& store, const quarantine_envelope& envelope,
                                std::string received_by);
  [[nodiscard]] slot& acquire();
  void release(slot& s) noexcept;

  worker_options options_;
  int exe_fd_ = -1;                         // the binary, O_PATH, above the fds a child renumbers
  std::unique_ptr<const spawn_plan> plan_;  // argv, environment, limits, filter: built once
  std::unique_ptr<counters> counters_;
  mutable std::mutex mutex_;  // guards slot ownership (slot::busy)
  std::condition_variable free_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::atomic<std::uint64_t> generation_{0};
};

// `mukai worker [--config FILE]`: checks its sandbox, loads the configuration, serves requests on
// stdin/stdout until EOF. Exit 0 at EOF between requests; 64 usage; 65 malformed or oversized
// request; 70 internal error (e.g. out of memory); 71 not sandboxed; 2 configuration errors.
[[nodiscard]] int run_sanitizer_worker(const std::vector<std::string>& args);

}  // namespace mukai::server
