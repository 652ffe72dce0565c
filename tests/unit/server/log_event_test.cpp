// Structured log lines: valid JSON on one line whatever a message put in a value, and a decoded
// value that is still safe to print (no controls, no invalid UTF-8, no bidi reordering).
#include "server/log_event.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <fstream>

#include "server/logger.hpp"
#include "tests/support/temp_dir.hpp"

using namespace mukai::server;
namespace json = boost::json;

namespace {

const std::string hostile[] = {
    "a\r\nforged: {\"event\":\"delivered\"}",
    "\x1b]0;title\x07\x1b[2J",
    std::string("nul\0byte", 8),
    "\xff\xfe\xc0\xaf invalid",
    "\xe2\x80\xae" "gpj.exe",           // RIGHT-TO-LEFT OVERRIDE
    "\xe2\x81\xa6isolate\xe2\x81\xa9",  // LEFT-TO-RIGHT ISOLATE ... POP
    "\xc2\x9b" "31m",                   // C1 CSI
    "quote\" back\\slash",
    "件名: テスト",
};

// True if s (decoded JSON text) contains nothing a terminal or a bidi renderer would act on.
bool safe_to_print(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  for (std::string_view bad : {"\xe2\x80\xae", "\xe2\x81\xa6", "\xe2\x81\xa9", "\xc2\x9b", "\xe2\x80\xa8"})
    if (s.find(bad) != std::string_view::npos) return false;
  return json::parse(json::serialize(json::string(s))).as_string() == s;  // round trip
}

}  // namespace

TEST_CASE("hostile values: one valid JSON line, every decoded string safe") {
  for (const auto& h : hostile) {
    INFO(h);
    log_event ev("received", "1m80zz0000000000");
    ev.add("from", h).add("rcpt", std::vector<std::string>{h, "ok@example.lg.jp"}).add("tls", true).add(
        "size", std::uint64_t{1234});
    ev.add_value("removed", json::array{json::object{{"filename", log_event::clean(h)}}});
    const std::string line = ev.to_json("2026-11-22T00:00:00.000Z", "info");
    CHECK(line.find('\n') == std::string::npos);
    CHECK(line.find('\r') == std::string::npos);
    json::error_code ec;
    auto v = json::parse(line, ec);
    REQUIRE(!ec);
    auto& o = v.as_object();
    CHECK(o.at("event").as_string() == "received");
    CHECK(o.at("queue_id").as_string() == "1m80zz0000000000");
    CHECK(o.at("tls").as_bool());
    CHECK(o.at("size").to_number<std::uint64_t>() == 1234);
    CHECK(safe_to_print(o.at("from").as_string()));
    CHECK(safe_to_print(o.at("rcpt").as_array().at(0).as_string()));
    CHECK(o.at("rcpt").as_array().at(1).as_string() == "ok@example.lg.jp");
    CHECK(safe_to_print(o.at("removed").as_array().at(0).at("filename").as_string()));
    // Nothing lost: the decoded value is exactly what the text format shows.
    CHECK(std::string(o.at("from").as_string()) == escape_for_log(h));

    const std::string text = ev.to_text();
    CHECK(text.rfind("1m80zz0000000000: received from=", 0) == 0);
    CHECK(safe_to_print(text));
  }
}

TEST_CASE("escape_for_log: bidirectional controls are escaped, Japanese stays") {
  CHECK(escape_for_log("\xe2\x80\xae" "gpj.exe") == "\\xE2\\x80\\xAEgpj.exe");
  CHECK(escape_for_log("a\xe2\x80\x8f" "b") == "a\\xE2\\x80\\x8Fb");  // RLM
  CHECK(escape_for_log("\xd8\x9c") == "\\xD8\\x9C");                  // ARABIC LETTER MARK
  CHECK(escape_for_log("\xe2\x81\xa9") == "\\xE2\\x81\\xA9");         // POP DIRECTIONAL ISOLATE
  CHECK(escape_for_log("\xe2\x80\x8b") == "\xe2\x80\x8b");            // ZWSP is not a bidi control
  CHECK(escape_for_log("日本語") == "日本語");
}

TEST_CASE("logger: json format writes plain lines and events as JSON objects") {
  mukai::testing::temp_dir tmp("mukai-log");
  const auto file = tmp.path() / "mukai.log";
  {
    logger log(log_level::info, file.string(), false, log_format::json);
    log.write(log_level::info, "plain \x1b[31m\nline");
    log.write(log_level::debug, log_event("connect").add("client", "[127.0.0.1]:1"));  // below threshold
    log.write(log_level::warning, log_event("bounced", "1m80zz0000000001").add("from", "\xe2\x80\xae" "x"));
    log.write(log_level::info, quarantine_action_event("released", "q1", "1m80zz0000000001", "admin\r\nx",
                                                       {"staff@example.lg.jp"}, "false positive"));
  }
  std::ifstream in(file);
  std::vector<json::object> lines;
  for (std::string l; std::getline(in, l);) {
    json::error_code ec;
    auto v = json::parse(l, ec);
    REQUIRE(!ec);
    lines.push_back(v.as_object());
  }
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].at("level").as_string() == "info");
  CHECK(lines[0].at("msg").as_string() == "plain \\x1B[31m\\x0Aline");
  CHECK(lines[0].at("time").as_string().size() == 24);
  CHECK(lines[1].at("event").as_string() == "bounced");
  CHECK(lines[1].at("level").as_string() == "warning");
  CHECK(lines[1].at("from").as_string() == "\\xE2\\x80\\xAEx");
  CHECK(lines[2].at("event").as_string() == "released");
  CHECK(lines[2].at("quarantine_id").as_string() == "q1");
  CHECK(lines[2].at("operator").as_string() == "admin\\x0D\\x0Ax");
  CHECK(lines[2].at("recipients").as_array().size() == 1);

  log_format f{};
  CHECK(parse_log_format("text", f));
  CHECK(f == log_format::text);
  CHECK(!parse_log_format("xml", f));
}

TEST_CASE("logger: text format renders events as ID: event key=value") {
  mukai::testing::temp_dir tmp("mukai-log");
  const auto file = tmp.path() / "mukai.log";
  {
    logger log(log_level::info, file.string(), false, log_format::text);
    log.write(log_level::info, log_event("delivered", "1m80zz0000000002")
                                   .add("from", "a@b")
                                   .add("relay", "lgwan mail")
                                   .add("finished", true));
  }
  std::ifstream in(file);
  std::string l;
  REQUIRE(std::getline(in, l));
  CHECK(l.find(" info: 1m80zz0000000002: delivered from=a@b relay=\"lgwan mail\" finished=true") == 24);
}
