// `mukai passwd` and the [admin] checks of `mukai check-config`, through the real binary.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "server/admin_auth.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai::testing;
using namespace std::chrono_literals;

namespace {

// Runs `mukai passwd ARGS` with `input` on standard input.
command_result passwd(const std::string& input, const std::string& args = "--stdin") {
  return run_command({"/bin/sh", "-c", "printf '%s' \"$IN\" | \"$MUKAI\" passwd " + args}, 60s,
                     {"IN=" + input, std::string("MUKAI=") + MUKAI_BINARY});
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

TEST_CASE("passwd --stdin: prints a scrypt hash of the first line that verifies, and only it") {
  const auto r = passwd("秘密 pass\nignored second line\n");
  REQUIRE(r.exit_code == 0);
  const std::string hash = first_line(r.output);
  CHECK(hash.starts_with("$scrypt$ln=15,r=8,p=1$"));
  CHECK(mukai::server::verify_password("秘密 pass", hash));
  CHECK_FALSE(mukai::server::verify_password("秘密 pass\n", hash));
  CHECK(r.output.find("秘密") == std::string::npos);  // the password itself is never printed
  const auto crlf = passwd("abc\r\n");
  REQUIRE(crlf.exit_code == 0);
  CHECK(mukai::server::verify_password("abc", first_line(crlf.output)));
}

TEST_CASE("passwd: empty input, an empty password and unknown options are refused") {
  CHECK(passwd("").exit_code == 1);
  CHECK(passwd("\n").exit_code == 1);
  CHECK(passwd("x\n", "--bogus").exit_code == 2);
  // Without --stdin and without a terminal it says how to script it.
  const auto r = run_command({"/usr/bin/setsid", "--wait", MUKAI_BINARY, "passwd"}, 30s);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("--stdin") != std::string::npos);
}

TEST_CASE("check-config: [admin] problems are reported with their keys") {
  temp_dir tmp("mukai-passwd");
  const auto file = tmp.path() / "admin.toml";
  std::ofstream(file) << "[smtp]\nrelay_domains = [\"example.lg.jp\"]\n"
                         "[admin]\nlisten = \"127.0.0.1:8443\"\ncert = \"/etc/x.pem\"\n"
                         "metrics_networks = [\"10.0.0.0/33\"]\n"
                         "[[admin.users]]\nname = \"a\"\nrole = \"operator\"\npassword_hash = \"plain\"\n"
                         "[[admin.users]]\nname = \"a\"\nrole = \"viewer\"\npassword_hash = \"" +
                             mukai::server::hash_password("x", {10, 8, 1}) + "\"\n";
  const auto r = run_command({MUKAI_BINARY, "check-config", "--config", file.string()}, 30s);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("password_hash is not a hash made by `mukai passwd`") != std::string::npos);
  CHECK(r.output.find("listed twice") != std::string::npos);
  CHECK(r.output.find("admin.metrics_networks") != std::string::npos);
  CHECK(r.output.find("admin.cert") != std::string::npos);
  CHECK(r.output.find("4 problems found") != std::string::npos);
}
