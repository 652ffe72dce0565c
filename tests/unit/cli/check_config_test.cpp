// `mukai check-config` and `mukai serve` refusing a bad configuration, through the real binary:
// every problem named with its key, exit 2, and serve never starts on such a file.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai::testing;
using namespace std::chrono_literals;

namespace {

std::filesystem::path write(const temp_dir& tmp, const std::string& name, const std::string& text) {
  auto p = tmp.path() / name;
  std::ofstream(p) << text;
  return p;
}

}  // namespace

TEST_CASE("check-config: a good file is ok; each problem is reported with its key; exit 2") {
  temp_dir tmp("mukai-cli");
  const auto good = write(tmp, "good.toml",
                          "[smtp]\nrelay_domains = [\"example.lg.jp\"]\n"
                          "[delivery]\nnext_hop = [\"smtp://[::1]:2526?starttls=required\", \"maildir:/var/mail/x\"]\n"
                          "bounce_next_hop = [\"smtp://mx.example.com\"]\n");
  auto ok = run_command({MUKAI_BINARY, "check-config", "--config", good.string()}, 30s);
  CHECK(ok.exit_code == 0);
  CHECK(ok.output.find(": ok") != std::string::npos);

  const auto bad = write(tmp, "bad.toml",
                         "[delivery]\nnext_hop = [\"smtp://user@host:25\"]\n"
                         "bounce_next_hop = [\"smtp://[::1]:99999\"]\n");
  auto r = run_command({MUKAI_BINARY, "check-config", "--config", bad.string()}, 30s);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("smtp.relay_domains") != std::string::npos);  // a file must list its domains
  CHECK(r.output.find("delivery.next_hop") != std::string::npos);
  CHECK(r.output.find("delivery.bounce_next_hop") != std::string::npos);
  CHECK(r.output.find("3 problems found") != std::string::npos);

  // serve refuses the same file before binding anything.
  auto s = run_command({MUKAI_BINARY, "serve", "--config", bad.string()}, 30s);
  CHECK(s.exit_code == 2);
  CHECK(s.output.find("delivery.next_hop") != std::string::npos);
}
