// audit_log: one JSON object per line, escaped values, 0600, appends from two writers (two
// instances stand for two processes) without interleaving, an unwritable file reported.
#include "server/audit_log.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <boost/json/parse.hpp>
#include <fstream>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.hpp"

using namespace mukai::server;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("records are JSON lines with every field, escaped, in a 0600 file") {
  mukai::testing::temp_dir dir;
  mukai::testing::scoped_umask mask(022);
  const fs::path file = dir.path() / "audit.log";
  audit_log log(file);
  CHECK(log.file() == file);
  REQUIRE_FALSE(log.record({"cli:root", "local", "release", "20261122T013512Z-7k2m9q4x0c", "ok", "to=a@example.lg.jp"}));
  const std::string hostile = std::string("line\nbreak\r\x1b[31m\"quoted\" \xff\xfe bidi\xe2\x80\xae") + '\0' + "end";
  REQUIRE_FALSE(log.record({"web:山田", "192.0.2.1", "login", "", "denied", hostile}));
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  const auto lines = lines_of(file);
  REQUIRE(lines.size() == 2);
  const auto first = boost::json::parse(lines[0]).as_object();
  CHECK(first.at("who").as_string() == "cli:root");
  CHECK(first.at("client").as_string() == "local");
  CHECK(first.at("action").as_string() == "release");
  CHECK(first.at("target").as_string() == "20261122T013512Z-7k2m9q4x0c");
  CHECK(first.at("result").as_string() == "ok");
  CHECK(first.at("detail").as_string() == "to=a@example.lg.jp");
  const std::string time(first.at("time").as_string());
  CHECK(time.size() == 20);
  CHECK(time.back() == 'Z');
  for (const char c : lines[1]) CHECK(static_cast<unsigned char>(c) >= 0x20);
  const auto second = boost::json::parse(lines[1]).as_object();
  CHECK(second.at("who").as_string() == "web:山田");
  const std::string detail(second.at("detail").as_string());
  CHECK(detail.find("line\nbreak\r\x1b[31m\"quoted\"") == 0);  // escaped in the file, intact when parsed
  CHECK(detail.find("end") != std::string::npos);
}

TEST_CASE("two writers on one file: every record whole, none lost") {
  mukai::testing::temp_dir dir;
  const fs::path file = dir.path() / "audit.log";
  audit_log a(file), b(file);
  constexpr int per_writer = 200;
  const std::string big(3000, 'x');  // longer than a pipe buffer's atomic size is irrelevant here: one write(2)
  auto writer = [&](audit_log& log, std::string who) {
    for (int i = 0; i < per_writer; ++i) REQUIRE_FALSE(log.record({who, "local", "view", std::to_string(i), "ok", big}));
  };
  std::thread t1(writer, std::ref(a), "a"), t2(writer, std::ref(b), "b");
  t1.join();
  t2.join();
  const auto lines = lines_of(file);
  REQUIRE(lines.size() == 2 * per_writer);
  int count_a = 0;
  for (const auto& l : lines) {
    const auto o = boost::json::parse(l).as_object();
    CHECK(o.at("detail").as_string() == big);
    count_a += o.at("who").as_string() == "a";
  }
  CHECK(count_a == per_writer);
}

TEST_CASE("an unwritable file is an error, not silence") {
  mukai::testing::temp_dir dir;
  audit_log log(dir.path() / "missing-dir" / "audit.log");
  CHECK(log.record({"cli:root", "local", "purge", "", "ok", ""}) == std::errc::no_such_file_or_directory);
  fs::create_symlink(dir.path() / "elsewhere", dir.path() / "link.log");
  audit_log link(dir.path() / "link.log");
  CHECK(link.record({"cli:root", "local", "purge", "", "ok", ""}));  // never follows a symlink
  CHECK_FALSE(fs::exists(dir.path() / "elsewhere"));
}
