// Log lines are one line each and safe for a terminal, whatever the message put in them.
#include "server/logger.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "tests/support/temp_dir.hpp"

using mukai::server::escape_for_log;

TEST_CASE("escape_for_log: controls, DEL, backslash and invalid UTF-8 become \\xHH; Japanese stays") {
  CHECK(escape_for_log("plain text <a@b>") == "plain text <a@b>");
  CHECK(escape_for_log("件名: テスト") == "件名: テスト");
  CHECK(escape_for_log("a\r\nforged: line") == "a\\x0D\\x0Aforged: line");
  CHECK(escape_for_log("\x1b[31mred") == "\\x1B[31mred");
  CHECK(escape_for_log(std::string_view("nul\0x", 5)) == "nul\\x00x");
  CHECK(escape_for_log("del\x7f") == "del\\x7F");
  CHECK(escape_for_log("back\\slash") == "back\\\\slash");
  CHECK(escape_for_log("\xff\xfe") == "\\xFF\\xFE");
  CHECK(escape_for_log("\xc2\x9b" "2J") == "\\xC2\\x9B2J");           // C1 CSI
  CHECK(escape_for_log("\xe2\x80\xa8") == "\\xE2\\x80\\xA8");         // LINE SEPARATOR
  CHECK(escape_for_log("\xc0\xaf") == "\\xC0\\xAF");                  // overlong '/'
  CHECK(escape_for_log("\xed\xa0\x80") == "\\xED\\xA0\\x80");         // surrogate
  CHECK(escape_for_log("\xe3\x81") == "\\xE3\\x81");                  // truncated sequence
  CHECK(escape_for_log("\xf0\x9f\x98\x80") == "\xf0\x9f\x98\x80");    // emoji passes
  CHECK(escape_for_log("a\xe2\x80\xaetxt.exe") == "a\\xE2\\x80\\xAEtxt.exe");  // RIGHT-TO-LEFT OVERRIDE
  CHECK(escape_for_log("\xe2\x81\xa6x") == "\\xE2\\x81\\xA6x");              // LEFT-TO-RIGHT ISOLATE
  CHECK(escape_for_log("\xe2\x80\x8f") == "\\xE2\\x80\\x8F");                // RIGHT-TO-LEFT MARK
  CHECK(escape_for_log("\xe2\x80\x8b") == "\xe2\x80\x8b");                  // ZERO WIDTH SPACE is not bidi
}

TEST_CASE("logger: level threshold, one line per write, appended to the file") {
  mukai::testing::temp_dir tmp("mukai-log");
  const auto file = tmp.path() / "mukai.log";
  {
    mukai::server::logger log(mukai::server::log_level::info, file.string(), false);
    log.write(mukai::server::log_level::debug, "dropped");
    log.write(mukai::server::log_level::info, "first\nsecond");
    log.write(mukai::server::log_level::error, "third");
  }
  std::ifstream in(file);
  std::string l1, l2, l3;
  REQUIRE(std::getline(in, l1));
  REQUIRE(std::getline(in, l2));
  CHECK(!std::getline(in, l3));
  CHECK(l1.find(" info: first\\x0Asecond") != std::string::npos);
  CHECK(l2.find(" error: third") != std::string::npos);
  CHECK(l1.size() > 24);
  CHECK(l1[10] == 'T');
  CHECK(l1.find("Z info:") == 23);
  mukai::server::log_level lv{};
  CHECK(mukai::server::parse_log_level("warning", lv));
  CHECK(lv == mukai::server::log_level::warning);
  CHECK(!mukai::server::parse_log_level("verbose", lv));
}
