// POSIX implementation of file_ops, the fault injector and the atomic-write helpers.
// See durable_fs.hpp for the invariants. Threading: no shared state besides the injector's atomics.
#include "server/durable_fs.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>  // renameat2 (glibc >= 2.28, _GNU_SOURCE)
#include <string>

namespace mukai::server {

namespace {

using open_result = boost::system::result<writable_file, std::error_code>;

std::error_code last_error() noexcept { return {errno, std::generic_category()}; }

std::error_code errno_code(int e) noexcept { return {e, std::generic_category()}; }

// Unique-name suffix for temporaries. From the CSPRNG rather than pid/time so that names cannot be
// predicted by another local user, and two processes or threads never race for the same name.
std::error_code random_hex(std::size_t bytes, std::string& out) {
  std::array<unsigned char, 32> buf{};
  if (bytes > buf.size()) return errno_code(EINVAL);
  if (RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) return errno_code(EIO);
  static constexpr char digits[] = "0123456789abcdef";
  out.clear();
  for (std::size_t i = 0; i < bytes; ++i) {
    out += digits[buf[i] >> 4];
    out += digits[buf[i] & 0x0f];
  }
  return {};
}

bool is_single_component(std::string_view name) noexcept {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

// fsync retried on EINTR only. Never retry after EIO: Linux may already have dropped the dirty
// pages and marked them clean, so a second fsync would report success for lost data.
int fsync_retrying_eintr(int fd) noexcept {
  int rc = 0;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  return rc;
}

std::error_code write_sync_close(file_ops& ops, writable_file f, std::string_view bytes) {
  scoped_file file(ops, f);
  if (auto ec = ops.write_all(file.get(), bytes)) return ec;
  if (auto ec = ops.sync_file(file.get())) return ec;
  // close can report a deferred write error (NFS); after a successful fsync this is rare, but an
  // error here still means we do not know the bytes are stored.
  return file.close();
}

}  // namespace

// ---------------------------------------------------------------- posix_file_ops

open_result posix_file_ops::create_file(const std::filesystem::path& p) {
  int fd = -1;
  do {
    // O_EXCL: never open something that already exists (a leftover, or a symlink planted to make
    // us write elsewhere; with O_CREAT|O_EXCL the kernel does not follow a final symlink).
    fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return last_error();
  return writable_file{fd};
}

std::error_code posix_file_ops::write_all(writable_file f, std::string_view bytes) {
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(f.fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    if (n == 0) return errno_code(EIO);  // cannot happen for a regular file; never spin on it
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return {};
}

std::error_code posix_file_ops::sync_file(writable_file f) {
  if (fsync_retrying_eintr(f.fd) != 0) return last_error();
  return {};
}

std::error_code posix_file_ops::close_file(writable_file f) {
  // Not retried on EINTR: Linux has released the descriptor already, and a retry could close a
  // descriptor another thread has just been given.
  if (::close(f.fd) != 0) return last_error();
  return {};
}

std::error_code posix_file_ops::rename(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return last_error();
  return {};
}

std::error_code posix_file_ops::rename_no_replace(const std::filesystem::path& from,
                                                  const std::filesystem::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return {};
  const int e = errno;
  if (e != EINVAL && e != ENOSYS) return errno_code(e);
  // The file system has no RENAME_NOREPLACE (EINVAL; also the code for moving a directory into
  // itself, which rename below reports again). Check, then rename: racy against another writer of
  // the same name, which our callers exclude (one owner per ID), and rename(2) still refuses to
  // replace a non-empty directory.
  struct stat st {};
  if (::lstat(to.c_str(), &st) == 0) return errno_code(EEXIST);
  if (errno != ENOENT) return last_error();
  return rename(from, to);
}

std::error_code posix_file_ops::sync_directory(const std::filesystem::path& dir) {
  int fd = -1;
  do {
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return last_error();
  std::error_code ec;
  if (fsync_retrying_eintr(fd) != 0) ec = last_error();
  ::close(fd);  // read-only descriptor: nothing to report beyond fsync's result
  return ec;
}

std::error_code posix_file_ops::unlink(const std::filesystem::path& p) {
  if (::unlink(p.c_str()) != 0) return last_error();
  return {};
}

std::error_code posix_file_ops::make_directory(const std::filesystem::path& p) {
  if (::mkdir(p.c_str(), 0700) != 0) return last_error();
  return {};
}

std::error_code posix_file_ops::remove_directory(const std::filesystem::path& p) {
  if (::rmdir(p.c_str()) != 0) return last_error();
  return {};
}

// ---------------------------------------------------------------- fault_injecting_file_ops

void fault_injecting_file_ops::fail_at(std::size_t index, int error, mode m) noexcept {
  fail_index_ = index;
  fail_errno_ = error;
  mode_ = m;
  armed_ = true;
}

void fault_injecting_file_ops::disarm() noexcept { armed_ = false; }

std::error_code fault_injecting_file_ops::next_call() noexcept {
  const std::size_t n = calls_.fetch_add(1);
  if (!armed_.load()) return {};
  const std::size_t at = fail_index_.load();
  if (n == at || (mode_.load() == mode::from_then && n > at)) {
    ++failures_;
    return errno_code(fail_errno_.load());
  }
  return {};
}

open_result fault_injecting_file_ops::create_file(const std::filesystem::path& p) {
  if (auto ec = next_call()) return ec;
  return inner_.create_file(p);
}

std::error_code fault_injecting_file_ops::write_all(writable_file f, std::string_view bytes) {
  if (auto ec = next_call()) {
    (void)inner_.write_all(f, bytes.substr(0, bytes.size() / 2));
    return ec;
  }
  return inner_.write_all(f, bytes);
}

std::error_code fault_injecting_file_ops::sync_file(writable_file f) {
  if (auto ec = next_call()) return ec;
  return inner_.sync_file(f);
}

std::error_code fault_injecting_file_ops::close_file(writable_file f) {
  if (auto ec = next_call()) {
    (void)inner_.close_file(f);
    return ec;
  }
  return inner_.close_file(f);
}

std::error_code fault_injecting_file_ops::rename(const std::filesystem::path& from,
                                                 const std::filesystem::path& to) {
  if (auto ec = next_call()) return ec;
  return inner_.rename(from, to);
}

std::error_code fault_injecting_file_ops::rename_no_replace(const std::filesystem::path& from,
                                                            const std::filesystem::path& to) {
  if (auto ec = next_call()) return ec;
  return inner_.rename_no_replace(from, to);
}

std::error_code fault_injecting_file_ops::sync_directory(const std::filesystem::path& dir) {
  if (auto ec = next_call()) return ec;
  return inner_.sync_directory(dir);
}

std::error_code fault_injecting_file_ops::unlink(const std::filesystem::path& p) {
  if (auto ec = next_call()) return ec;
  return inner_.unlink(p);
}

std::error_code fault_injecting_file_ops::make_directory(const std::filesystem::path& p) {
  if (auto ec = next_call()) return ec;
  return inner_.make_directory(p);
}

std::error_code fault_injecting_file_ops::remove_directory(const std::filesystem::path& p) {
  if (auto ec = next_call()) return ec;
  return inner_.remove_directory(p);
}

// ---------------------------------------------------------------- scoped_file

scoped_file::~scoped_file() {
  if (file_.fd >= 0) (void)ops_->close_file(file_);
}

std::error_code scoped_file::close() {
  const writable_file f = file_;
  file_.fd = -1;  // released whatever close reports: never close twice
  if (f.fd < 0) return {};
  return ops_->close_file(f);
}

// ---------------------------------------------------------------- helpers

std::error_code write_new_file(file_ops& ops, const std::filesystem::path& p, std::string_view bytes) {
  auto f = ops.create_file(p);
  if (!f) return f.error();  // nothing of ours to remove: the name may belong to someone else
  if (auto ec = write_sync_close(ops, *f, bytes)) {
    (void)ops.unlink(p);
    return ec;
  }
  return {};
}

std::error_code write_file_atomically(file_ops& ops, const std::filesystem::path& dir, std::string_view name,
                                      std::string_view bytes) {
  if (!is_single_component(name) || name.front() == '.') return errno_code(EINVAL);
  std::filesystem::path tmp;
  boost::system::result<writable_file, std::error_code> f = errno_code(EEXIST);
  // A name collision is only possible against a leftover temporary; a few tries are plenty.
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string suffix;
    if (auto ec = random_hex(8, suffix)) return ec;
    // The temporary lives in the same directory: rename is only atomic within one file system.
    tmp = dir / ("." + std::string(name) + ".tmp-" + suffix);
    f = ops.create_file(tmp);
    if (f || f.error() != std::errc::file_exists) break;
  }
  if (!f) return f.error();

  std::error_code ec = write_sync_close(ops, *f, bytes);
  if (!ec) ec = ops.rename(tmp, dir / std::string(name));
  if (ec) {
    (void)ops.unlink(tmp);  // best effort; a leftover ".<name>.tmp-*" is never read as the file
    return ec;
  }
  // The rename only changed the directory. Until the directory itself is fsynced, a crash can
  // bring back the old entry (or no entry) even though the file's data is on disk; the caller may
  // acknowledge only after this succeeds.
  return ops.sync_directory(dir);
}

}  // namespace mukai::server
