// The one small interface for every file operation whose durability matters (spool, quarantine).
// Going through file_ops lets a test make the N-th operation fail (fault_injecting_file_ops) and
// check that nothing was acknowledged without a durable file and that no half-written state is
// ever visible under a final name.
//
// Invariants: files are created exclusively with mode 0600 and directories with 0700 (mail is
// personal data; umask can only narrow these); every descriptor is O_CLOEXEC so that the sanitizer
// workers we fork and exec never inherit spool or quarantine files; EINTR is retried and short
// writes are continued, so a signal never turns into a truncated file reported as written.
// Errors come back as std::error_code (errno values in std::generic_category()); nothing throws.
// Threading: posix_file_ops is stateless and safe from any thread; fault_injecting_file_ops counts
// with an atomic and is safe too. A writable_file belongs to one thread at a time. All calls block:
// run them off the I/O thread.
#pragma once

#include <atomic>
#include <boost/system/result.hpp>
#include <cstddef>
#include <filesystem>
#include <string_view>
#include <system_error>

namespace mukai::server {

// An open file of a file_ops implementation. Plain data: close it with file_ops::close_file
// (or let a scoped_file do it).
struct writable_file {
  int fd = -1;
};

class file_ops {
 public:
  file_ops() = default;
  file_ops(const file_ops&) = delete;
  file_ops& operator=(const file_ops&) = delete;
  virtual ~file_ops() = default;

  // Creates a new file for writing; fails with EEXIST if the name exists (never follows or reuses
  // an existing file, so a planted symlink cannot redirect our write).
  [[nodiscard]] virtual boost::system::result<writable_file, std::error_code> create_file(
      const std::filesystem::path& p) = 0;
  // Writes all of bytes (continuing short writes, retrying EINTR) or fails.
  [[nodiscard]] virtual std::error_code write_all(writable_file f, std::string_view bytes) = 0;
  // fsync: data and metadata of the file are on stable storage when this returns success.
  [[nodiscard]] virtual std::error_code sync_file(writable_file f) = 0;
  // Releases the descriptor even when it reports an error (Linux semantics): never close twice.
  [[nodiscard]] virtual std::error_code close_file(writable_file f) = 0;
  // rename(2): atomically replaces an existing file at `to`.
  [[nodiscard]] virtual std::error_code rename(const std::filesystem::path& from,
                                               const std::filesystem::path& to) = 0;
  // Like rename but fails with EEXIST (or ENOTEMPTY) rather than replace anything at `to`.
  [[nodiscard]] virtual std::error_code rename_no_replace(const std::filesystem::path& from,
                                                          const std::filesystem::path& to) = 0;
  // fsync on the directory: its entries (created, renamed, removed names) are on stable storage.
  [[nodiscard]] virtual std::error_code sync_directory(const std::filesystem::path& dir) = 0;
  [[nodiscard]] virtual std::error_code unlink(const std::filesystem::path& p) = 0;
  // mkdir with mode 0700; EEXIST when the name exists.
  [[nodiscard]] virtual std::error_code make_directory(const std::filesystem::path& p) = 0;
  // rmdir: only an empty directory.
  [[nodiscard]] virtual std::error_code remove_directory(const std::filesystem::path& p) = 0;
};

class posix_file_ops final : public file_ops {
 public:
  [[nodiscard]] boost::system::result<writable_file, std::error_code> create_file(
      const std::filesystem::path& p) override;
  [[nodiscard]] std::error_code write_all(writable_file f, std::string_view bytes) override;
  [[nodiscard]] std::error_code sync_file(writable_file f) override;
  [[nodiscard]] std::error_code close_file(writable_file f) override;
  [[nodiscard]] std::error_code rename(const std::filesystem::path& from,
                                       const std::filesystem::path& to) override;
  [[nodiscard]] std::error_code rename_no_replace(const std::filesystem::path& from,
                                                  const std::filesystem::path& to) override;
  [[nodiscard]] std::error_code sync_directory(const std::filesystem::path& dir) override;
  [[nodiscard]] std::error_code unlink(const std::filesystem::path& p) override;
  [[nodiscard]] std::error_code make_directory(const std::filesystem::path& p) override;
  [[nodiscard]] std::error_code remove_directory(const std::filesystem::path& p) override;
};

// For tests: forwards to another file_ops and makes chosen calls fail with a chosen errno.
// Calls are numbered from 0 across all operations in the order they are made.
// A failing call does nothing, except: write_all first writes half of the bytes (as a disk that
// fills up mid-write would), and close_file really closes (the descriptor is gone either way).
class fault_injecting_file_ops final : public file_ops {
 public:
  enum class mode {
    single,     // only call number `index` fails; later calls succeed (a transient error)
    from_then,  // call `index` and every later call fail (the process died or the disk went away)
  };

  explicit fault_injecting_file_ops(file_ops& inner) noexcept : inner_(inner) {}

  void fail_at(std::size_t index, int error, mode m = mode::single) noexcept;
  void disarm() noexcept;
  // Number of calls made so far (run once without a fault to learn how many a scenario makes).
  [[nodiscard]] std::size_t calls() const noexcept { return calls_.load(); }
  // Number of calls that were made to fail.
  [[nodiscard]] std::size_t failures() const noexcept { return failures_.load(); }

  [[nodiscard]] boost::system::result<writable_file, std::error_code> create_file(
      const std::filesystem::path& p) override;
  [[nodiscard]] std::error_code write_all(writable_file f, std::string_view bytes) override;
  [[nodiscard]] std::error_code sync_file(writable_file f) override;
  [[nodiscard]] std::error_code close_file(writable_file f) override;
  [[nodiscard]] std::error_code rename(const std::filesystem::path& from,
                                       const std::filesystem::path& to) override;
  [[nodiscard]] std::error_code rename_no_replace(const std::filesystem::path& from,
                                                  const std::filesystem::path& to) override;
  [[nodiscard]] std::error_code sync_directory(const std::filesystem::path& dir) override;
  [[nodiscard]] std::error_code unlink(const std::filesystem::path& p) override;
  [[nodiscard]] std::error_code make_directory(const std::filesystem::path& p) override;
  [[nodiscard]] std::error_code remove_directory(const std::filesystem::path& p) override;

 private:
  // Counts the call; returns the injected error when this call is to fail.
  std::error_code next_call() noexcept;

  file_ops& inner_;
  std::atomic<std::size_t> calls_{0};
  std::atomic<std::size_t> failures_{0};
  std::atomic<bool> armed_{false};
  std::atomic<std::size_t> fail_index_{0};
  std::atomic<int> fail_errno_{0};
  std::atomic<mode> mode_{mode::single};
};

// Owns a writable_file and closes it through its file_ops unless close() was called: the error
// paths of a multi-step write cannot leak a descriptor.
class scoped_file {
 public:
  scoped_file(file_ops& ops, writable_file f) noexcept : ops_(&ops), file_(f) {}
  scoped_file(const scoped_file&) = delete;
  scoped_file& operator=(const scoped_file&) = delete;
  ~scoped_file();

  [[nodiscard]] writable_file get() const noexcept { return file_; }
  // Closes now and reports the error; afterwards the destructor does nothing.
  [[nodiscard]] std::error_code close();

 private:
  file_ops* ops_;
  writable_file file_;
};

// Creates a new file `name` in `dir`, or replaces an existing one, so that after a crash `dir/name`
// holds either the old content or all of `bytes`, never a mix: write a uniquely named temporary in
// the same directory (rename is only atomic within one file system), fsync it, close, rename it
// over the name, fsync the directory. On a failure before the rename the temporary is unlinked.
// A failure of the final directory fsync is reported although `dir/name` already holds `bytes`:
// the caller must not acknowledge anything then, because the rename may not survive a crash.
// `name` must be one path component (no '/', not "." or "..") and not start with '.', which is
// reserved for the temporaries.
[[nodiscard]] std::error_code write_file_atomically(file_ops& ops, const std::filesystem::path& dir,
                                                    std::string_view name, std::string_view bytes);

// Writes a new file (create exclusive, write, fsync, close), unlinking it on failure. The caller
// makes the name durable by fsyncing the directory (or the directory that it is renamed into).
[[nodiscard]] std::error_code write_new_file(file_ops& ops, const std::filesystem::path& p,
                                             std::string_view bytes);

}  // namespace mukai::server
