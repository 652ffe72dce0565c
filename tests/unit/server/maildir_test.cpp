// maildir: layout creation (with parents, relative paths), exact bytes in new/ with mode 0600, nothing
// left in tmp/, unique names, refusal when the path is not a directory, and with a failure of every
// file operation in turn: a file appears in new/ only complete, tmp/ is cleaned up, and success is
// reported only after new/ was synced.
#include "server/maildir.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <set>

using namespace mukai::server;
namespace fs = std::filesystem;

namespace {

class temp_dir {
 public:
  temp_dir() {
    std::string templ = (fs::temp_directory_path() / "mukai-maildir-XXXXXX").string();
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::vector<fs::path> entries(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path());
  return out;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Records the order of the durable operations.
class recording_ops final : public file_ops {
 public:
  explicit recording_ops(file_ops& inner) : inner_(inner) {}
  std::vector<std::string> calls;
  boost::system::result<writable_file, std::error_code> create_file(const fs::path& p) override {
    calls.push_back("create " + p.parent_path().filename().string());
    return inner_.create_file(p);
  }
  std::error_code write_all(writable_file f, std::string_view b) override {
    calls.push_back("write");
    return inner_.write_all(f, b);
  }
  std::error_code sync_file(writable_file f) override {
    calls.push_back("sync_file");
    return inner_.sync_file(f);
  }
  std::error_code close_file(writable_file f) override {
    calls.push_back("close");
    return inner_.close_file(f);
  }
  std::error_code rename(const fs::path& a, const fs::path& b) override {
    calls.push_back("rename");
    return inner_.rename(a, b);
  }
  std::error_code rename_no_replace(const fs::path& a, const fs::path& b) override {
    calls.push_back("rename_no_replace " + a.parent_path().filename().string() + "->" +
                    b.parent_path().filename().string());
    return inner_.rename_no_replace(a, b);
  }
  std::error_code sync_directory(const fs::path& d) override {
    calls.push_back("sync_dir " + d.filename().string());
    return inner_.sync_directory(d);
  }
  std::error_code unlink(const fs::path& p) override {
    calls.push_back("unlink");
    return inner_.unlink(p);
  }
  std::error_code make_directory(const fs::path& p) override {
    calls.push_back("mkdir " + p.filename().string());
    return inner_.make_directory(p);
  }
  std::error_code remove_directory(const fs::path& p) override { return inner_.remove_directory(p); }

 private:
  file_ops& inner_;
};

const std::string message = "From: a@example.com\r\nSubject: \xE6\x97\xA5\r\n\r\nbody\r\n.\r\nmore\r\n";

}  // namespace

TEST_CASE("delivery creates the Maildir (and parents) and writes the exact bytes into new/") {
  temp_dir t;
  posix_file_ops posix;
  recording_ops ops(posix);
  const fs::path md = t.path() / "a" / "b" / "outbox";
  auto r = deliver_to_maildir(ops, md, message);
  REQUIRE(r);
  CHECK(r->parent_path() == md / "new");
  CHECK(read_all(*r) == message);
  for (const char* sub : {"cur", "new", "tmp"}) CHECK(fs::is_directory(md / sub));
  CHECK(entries(md / "tmp").empty());
  CHECK(entries(md / "cur").empty());
  struct stat st {};
  REQUIRE(::stat(r->c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((md / "new").c_str(), &st) == 0);
  CHECK((st.st_mode & 0077) == 0);

  // Durability order of the message itself: tmp file fsynced before the rename, new/ synced after it.
  const auto& c = ops.calls;
  const auto pos = [&](const std::string& what) { return std::find(c.begin(), c.end(), what) - c.begin(); };
  CHECK(pos("create tmp") < pos("write"));
  CHECK(pos("write") < pos("sync_file"));
  CHECK(pos("sync_file") < pos("close"));
  CHECK(pos("close") < pos("rename_no_replace tmp->new"));
  CHECK(pos("rename_no_replace tmp->new") < pos("sync_dir new"));
  CHECK(c.back() == "sync_dir new");
  // Every directory created had its parent synced.
  CHECK(std::count_if(c.begin(), c.end(), [](const std::string& s) { return s.starts_with("mkdir"); }) == 6);

  // A second delivery reuses the layout: no mkdir, a different name.
  ops.calls.clear();
  auto r2 = deliver_to_maildir(ops, md, "second");
  REQUIRE(r2);
  CHECK(*r2 != *r);
  CHECK(std::none_of(ops.calls.begin(), ops.calls.end(),
                     [](const std::string& s) { return s.starts_with("mkdir"); }));
  CHECK(entries(md / "new").size() == 2);
}

TEST_CASE("names: time.MusecPpidRrandom.host, unique") {
  const std::regex shape(R"(^[0-9]+\.M[0-9]+P[0-9]+R[0-9a-f]{16}\.[^/:]+$)");
  std::set<std::string> names;
  for (int i = 0; i < 1000; ++i) {
    const std::string n = new_maildir_name();
    CHECK(std::regex_match(n, shape));
    names.insert(n);
  }
  CHECK(names.size() == 1000);
}

TEST_CASE("a relative Maildir path is relative to the working directory") {
  temp_dir t;
  posix_file_ops ops;
  const fs::path old = fs::current_path();
  fs::current_path(t.path());
  auto r = deliver_to_maildir(ops, "outbox", message);
  fs::current_path(old);
  REQUIRE(r);
  CHECK(entries(t.path() / "outbox" / "new").size() == 1);
}

TEST_CASE("a path that is not a directory is refused") {
  temp_dir t;
  posix_file_ops ops;
  std::ofstream(t.path() / "file") << "x";
  auto r = deliver_to_maildir(ops, t.path() / "file", message);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::not_a_directory);
  fs::create_directory(t.path() / "md");
  std::ofstream(t.path() / "md" / "new") << "x";
  r = deliver_to_maildir(ops, t.path() / "md", message);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::not_a_directory);
}

TEST_CASE("a failure of each file operation in turn: new/ only ever holds the complete message") {
  posix_file_ops posix;
  // Count the calls of a delivery into an existing Maildir, then fail each in turn.
  std::size_t total = 0;
  {
    temp_dir t;
    REQUIRE_FALSE(ensure_maildir(posix, t.path() / "md"));
    fault_injecting_file_ops counter(posix);
    REQUIRE(deliver_to_maildir(counter, t.path() / "md", message));
    total = counter.calls();
  }
  REQUIRE(total >= 6);  // create, write, sync, close, rename, sync new/
  for (std::size_t i = 0; i < total; ++i) {
    CAPTURE(i);
    for (auto mode : {fault_injecting_file_ops::mode::single, fault_injecting_file_ops::mode::from_then}) {
      temp_dir t;
      const fs::path md = t.path() / "md";
      REQUIRE_FALSE(ensure_maildir(posix, md));
      fault_injecting_file_ops ops(posix);
      ops.fail_at(i, EIO, mode);
      auto r = deliver_to_maildir(ops, md, message);
      const auto in_new = entries(md / "new");
      if (r) {
        // Only possible if the injected failure hit a call whose failure we retried past.
        REQUIRE(in_new.size() == 1);
        CHECK(read_all(in_new[0]) == message);
      } else {
        CHECK(in_new.size() <= 1);  // the final sync of new/ failing leaves the complete file
        for (const auto& p : in_new) CHECK(read_all(p) == message);
      }
      // After a transient failure the temporary is removed; when every later call fails too (the
      // process died) a tmp/ leftover is allowed: Maildir readers purge tmp/.
      if (mode == fault_injecting_file_ops::mode::single) CHECK(entries(md / "tmp").empty());
    }
  }
}

TEST_CASE("directory creation failures are reported") {
  posix_file_ops posix;
  temp_dir t;
  fault_injecting_file_ops ops(posix);
  ops.fail_at(0, EACCES);
  auto r = deliver_to_maildir(ops, t.path() / "md", message);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::permission_denied);
}
