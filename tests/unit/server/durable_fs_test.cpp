// durable_fs: the POSIX operations (modes, O_CLOEXEC, exclusivity, EINTR and short writes), the
// fault injector, and write_file_atomically under a failure of every call in turn.
#include "server/durable_fs.hpp"

#include <doctest/doctest.h>

#include "tests/support/temp_dir.hpp"
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace mukai::server;
namespace fs = std::filesystem;

namespace {

using mukai::testing::scoped_umask;
using mukai::testing::temp_dir;



std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

std::string big_payload(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return s;
}

volatile sig_atomic_t alarm_count = 0;
extern "C" void on_alarm(int) { alarm_count = alarm_count + 1; }

}  // namespace

TEST_CASE("create_file: exclusive, 0600, close-on-exec") {
  temp_dir dir;
  scoped_umask um(0);
  posix_file_ops ops;
  const fs::path p = dir.path() / "f";
  auto f = ops.create_file(p);
  REQUIRE(f.has_value());
  CHECK(mode_of(p) == 0600);
  CHECK((::fcntl(f->fd, F_GETFD) & FD_CLOEXEC) != 0);
  CHECK_FALSE(ops.write_all(*f, "hello"));
  CHECK_FALSE(ops.sync_file(*f));
  CHECK_FALSE(ops.close_file(*f));
  CHECK(read_file(p) == "hello");

  auto again = ops.create_file(p);
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error() == std::errc::file_exists);
  CHECK(read_file(p) == "hello");

  // A planted symlink is not followed.
  const fs::path target = dir.path() / "target";
  fs::create_symlink(target, dir.path() / "link");
  auto via_link = ops.create_file(dir.path() / "link");
  REQUIRE_FALSE(via_link.has_value());
  CHECK_FALSE(fs::exists(target));
}

TEST_CASE("make_directory, remove_directory, unlink, sync_directory") {
  temp_dir dir;
  scoped_umask um(0);
  posix_file_ops ops;
  const fs::path d = dir.path() / "d";
  CHECK_FALSE(ops.make_directory(d));
  CHECK(mode_of(d) == 0700);
  CHECK(ops.make_directory(d) == std::errc::file_exists);
  CHECK_FALSE(ops.sync_directory(d));
  CHECK(ops.sync_directory(dir.path() / "missing") == std::errc::no_such_file_or_directory);
  CHECK_FALSE(write_new_file(ops, d / "x", "x"));
  CHECK(ops.remove_directory(d) == std::errc::directory_not_empty);
  CHECK_FALSE(ops.unlink(d / "x"));
  CHECK(ops.unlink(d / "x") == std::errc::no_such_file_or_directory);
  CHECK_FALSE(ops.remove_directory(d));
  CHECK_FALSE(fs::exists(d));
}

TEST_CASE("rename replaces, rename_no_replace never does") {
  temp_dir dir;
  posix_file_ops ops;
  const fs::path a = dir.path() / "a", b = dir.path() / "b", c = dir.path() / "c";
  REQUIRE_FALSE(write_new_file(ops, a, "A"));
  REQUIRE_FALSE(write_new_file(ops, b, "B"));
  CHECK(ops.rename_no_replace(a, b) == std::errc::file_exists);
  CHECK(read_file(a) == "A");
  CHECK(read_file(b) == "B");
  CHECK_FALSE(ops.rename_no_replace(a, c));
  CHECK_FALSE(fs::exists(a));
  CHECK(read_file(c) == "A");
  CHECK_FALSE(ops.rename(c, b));
  CHECK(read_file(b) == "A");

  // Directories: an existing (even empty) target directory is not replaced.
  const fs::path d1 = dir.path() / "d1", d2 = dir.path() / "d2";
  REQUIRE_FALSE(ops.make_directory(d1));
  REQUIRE_FALSE(ops.make_directory(d2));
  CHECK(ops.rename_no_replace(d1, d2) == std::errc::file_exists);
  CHECK(fs::is_directory(d1));
}

TEST_CASE("write_all continues short writes and retries EINTR") {
  // A pipe drained slowly while a 1 ms timer interrupts the writer: write(2) on a blocking pipe
  // returns a short count when a signal arrives after some bytes went through, and EINTR when
  // none did. Every byte must arrive, in order, exactly once.
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  struct sigaction sa {};
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: let the signal interrupt write(2)
  struct sigaction old_sa {};
  REQUIRE(::sigaction(SIGALRM, &sa, &old_sa) == 0);

  const std::string payload = big_payload(4 * 1024 * 1024);
  std::string received;
  std::thread reader([&] {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    std::vector<char> buf(7000);
    std::size_t since_pause = 0;
    for (;;) {
      const ssize_t n = ::read(fds[0], buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      received.append(buf.data(), static_cast<std::size_t>(n));
      since_pause += static_cast<std::size_t>(n);
      if (since_pause > 256 * 1024) {
        since_pause = 0;
        ::usleep(2000);
      }
    }
  });

  itimerval tv{};
  tv.it_interval.tv_usec = 1000;
  tv.it_value.tv_usec = 1000;
  REQUIRE(::setitimer(ITIMER_REAL, &tv, nullptr) == 0);
  posix_file_ops ops;
  const std::error_code ec = ops.write_all(writable_file{fds[1]}, payload);
  itimerval off{};
  ::setitimer(ITIMER_REAL, &off, nullptr);
  CHECK_FALSE(ops.close_file(writable_file{fds[1]}));
  reader.join();
  ::close(fds[0]);
  ::sigaction(SIGALRM, &old_sa, nullptr);

  CHECK_FALSE(ec);
  CHECK(received.size() == payload.size());
  CHECK(received == payload);
  MESSAGE("signals delivered during the write: " << static_cast<int>(alarm_count));
}

TEST_CASE("write_file_atomically writes, replaces and leaves no temporary") {
  temp_dir dir;
  scoped_umask um(0);
  posix_file_ops ops;
  CHECK_FALSE(write_file_atomically(ops, dir.path(), "state", "one"));
  CHECK(read_file(dir.path() / "state") == "one");
  CHECK(mode_of(dir.path() / "state") == 0600);
  CHECK_FALSE(write_file_atomically(ops, dir.path(), "state", "two, longer"));
  CHECK(read_file(dir.path() / "state") == "two, longer");
  CHECK_FALSE(write_file_atomically(ops, dir.path(), "empty", ""));
  CHECK(read_file(dir.path() / "empty").empty());
  CHECK(names_in(dir.path()) == std::set<std::string>{"state", "empty"});
}

TEST_CASE("write_file_atomically rejects names that are not one plain component") {
  temp_dir dir;
  posix_file_ops ops;
  for (const char* bad : {"", ".", "..", "a/b", "../escape", ".hidden", "/abs"}) {
    CAPTURE(bad);
    CHECK(write_file_atomically(ops, dir.path(), bad, "x") == std::errc::invalid_argument);
  }
  CHECK(write_file_atomically(ops, dir.path(), std::string_view("a\0b", 3), "x") ==
        std::errc::invalid_argument);
  CHECK(names_in(dir.path()).empty());
  CHECK(write_file_atomically(ops, dir.path() / "missing", "x", "x") == std::errc::no_such_file_or_directory);
}

TEST_CASE("fault injector: numbering, modes, partial write, close releases") {
  temp_dir dir;
  posix_file_ops posix;
  fault_injecting_file_ops ops(posix);
  ops.fail_at(1, ENOSPC);
  auto f = ops.create_file(dir.path() / "f");  // call 0
  REQUIRE(f.has_value());
  CHECK(ops.write_all(*f, "0123456789") == std::errc::no_space_on_device);  // call 1: half written
  CHECK_FALSE(ops.write_all(*f, "ab"));                                     // call 2: single mode
  CHECK(ops.failures() == 1);
  ops.fail_at(3, EIO, fault_injecting_file_ops::mode::from_then);
  CHECK(ops.close_file(*f) == std::errc::io_error);  // call 3 fails but really closes
  CHECK(::fcntl(f->fd, F_GETFD) == -1);
  CHECK(ops.make_directory(dir.path() / "d") == std::errc::io_error);  // call 4: still failing
  CHECK_FALSE(fs::exists(dir.path() / "d"));
  CHECK(ops.calls() == 5);
  CHECK(ops.failures() == 3);
  ops.disarm();
  CHECK_FALSE(ops.make_directory(dir.path() / "d"));
  CHECK(read_file(dir.path() / "f") == "01234ab");
}

TEST_CASE("scoped_file closes on every path") {
  temp_dir dir;
  posix_file_ops posix;
  fault_injecting_file_ops ops(posix);
  int fd = -1;
  {
    auto f = ops.create_file(dir.path() / "f");
    REQUIRE(f.has_value());
    fd = f->fd;
    scoped_file guard(ops, *f);
  }
  CHECK(::fcntl(fd, F_GETFD) == -1);
  CHECK(ops.calls() == 2);  // create + close
  {
    auto f = ops.create_file(dir.path() / "g");
    REQUIRE(f.has_value());
    scoped_file guard(ops, *f);
    CHECK_FALSE(guard.close());
    CHECK_FALSE(guard.close());  // second close is a no-op, not a double close
  }
  CHECK(ops.calls() == 4);
}

TEST_CASE("write_file_atomically under a failure of each call: old or new content, never a mix") {
  const std::string old_content = "old content\n";
  const std::string new_content = big_payload(100000);

  // Learn how many calls a successful replace makes.
  std::size_t total = 0;
  {
    temp_dir dir;
    posix_file_ops posix;
    REQUIRE_FALSE(write_file_atomically(posix, dir.path(), "file", old_content));
    fault_injecting_file_ops ops(posix);
    REQUIRE_FALSE(write_file_atomically(ops, dir.path(), "file", new_content));
    total = ops.calls();
  }
  REQUIRE(total == 6);  // create, write, fsync, close, rename, fsync dir

  for (const auto m : {fault_injecting_file_ops::mode::single, fault_injecting_file_ops::mode::from_then}) {
    for (std::size_t i = 0; i < total; ++i) {
      CAPTURE(i);
      CAPTURE(static_cast<int>(m));
      temp_dir dir;
      posix_file_ops posix;
      REQUIRE_FALSE(write_file_atomically(posix, dir.path(), "file", old_content));
      fault_injecting_file_ops ops(posix);
      ops.fail_at(i, EIO, m);
      const std::error_code ec = write_file_atomically(ops, dir.path(), "file", new_content);
      CHECK(ec == std::errc::io_error);  // every call matters: each failure is reported
      const std::string now = read_file(dir.path() / "file");
      CHECK((now == old_content || now == new_content));
      // Only the last call (directory fsync) comes after the rename.
      CHECK((now == new_content) == (i == total - 1));
      const auto names = names_in(dir.path());
      if (m == fault_injecting_file_ops::mode::single) {
        CHECK(names == std::set<std::string>{"file"});
      } else {
        for (const auto& n : names) {
          CHECK((n == "file" || n.rfind(".file.tmp-", 0) == 0));
        }
      }
    }
  }
}
