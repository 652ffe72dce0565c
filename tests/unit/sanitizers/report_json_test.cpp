// Report JSON: round trips, the exact key set, strict parsing (fail closed) and the UTF-8 guard.
#include "sanitizers/report_json.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <functional>
#include <set>

using namespace mukai::sanitize;
namespace json = boost::json;

namespace {

report sample_report() {
  report r;
  r.result = verdict::sanitized;
  r.reasons = {"attachment-removed"};
  r.warnings = {"charset-detected", "missing-final-boundary"};
  r.quarantine_id = "20261122T013512Z-0123456789";
  r.actions = {"html-to-text", "attachments-removed=1"};
  part_report body;
  body.path = "1";
  body.declared_type = "text/html";
  body.detected_type = "text/html";
  body.size = 1234;
  body.sha256 = std::string(64, 'a');
  body.action = part_action::converted;
  body.reason = "html-to-text";
  part_report att;
  att.path = "2";
  att.declared_type = "application/octet-stream";
  att.detected_type = "application/x-dosexec";
  att.filename = "請求書.pdf.exe";
  att.size = 18446744073709551615ull;  // beyond int64: must survive as uint64
  att.sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  att.action = part_action::quarantined;
  att.reason = "rule:executable";
  att.flags = {"executable", "double-extension"};
  r.parts = {body, att};
  return r;
}

void check_equal(const report& a, const report& b) {
  CHECK(a.result == b.result);
  CHECK(a.reasons == b.reasons);
  CHECK(a.warnings == b.warnings);
  CHECK(a.quarantine_id == b.quarantine_id);
  CHECK(a.actions == b.actions);
  REQUIRE(a.parts.size() == b.parts.size());
  for (std::size_t i = 0; i < a.parts.size(); ++i) {
    const auto& p = a.parts[i];
    const auto& q = b.parts[i];
    CHECK(p.path == q.path);
    CHECK(p.declared_type == q.declared_type);
    CHECK(p.detected_type == q.detected_type);
    CHECK(p.filename == q.filename);
    CHECK(p.size == q.size);
    CHECK(p.sha256 == q.sha256);
    CHECK(p.action == q.action);
    CHECK(p.reason == q.reason);
    CHECK(p.flags == q.flags);
  }
}

std::set<std::string> keys_of(const json::object& o) {
  std::set<std::string> k;
  for (const auto& kv : o) k.emplace(kv.key());
  return k;
}

// Parses the serialised report text again, as the relay does with a worker's verdict.
std::optional<report> reparse(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  REQUIRE_FALSE(ec);
  return report_from_json(v);
}

}  // namespace

TEST_CASE("to_json writes exactly the documented keys") {
  const json::object o = to_json(sample_report());
  CHECK(keys_of(o) ==
        std::set<std::string>{"verdict", "reasons", "warnings", "quarantine_id", "actions", "parts"});
  CHECK(o.at("verdict").as_string() == "sanitized");
  const json::object& part = o.at("parts").as_array().at(1).as_object();
  CHECK(keys_of(part) == std::set<std::string>{"path", "declared_type", "detected_type", "filename", "size",
                                               "sha256", "action", "reason", "flags"});
  CHECK(part.at("action").as_string() == "quarantined");
  CHECK(o.at("parts").as_array().at(0).as_object().at("action").as_string() == "converted");
}

TEST_CASE("round trip through the value and through text") {
  const report r = sample_report();
  auto back = report_from_json(json::value(to_json(r)));
  REQUIRE(back);
  check_equal(r, *back);

  auto from_compact = reparse(json::serialize(to_json(r)));
  REQUIRE(from_compact);
  check_equal(r, *from_compact);

  auto from_pretty = reparse(to_json_text(r));
  REQUIRE(from_pretty);
  check_equal(r, *from_pretty);
}

TEST_CASE("every verdict and action round-trips; a missing quarantine id is null") {
  for (const verdict v : {verdict::clean, verdict::sanitized, verdict::held}) {
    for (const part_action a : {part_action::kept_as_text, part_action::converted, part_action::quarantined,
                                part_action::discarded}) {
      report r;
      r.result = v;
      r.parts.emplace_back();
      r.parts.back().action = a;
      const json::object o = to_json(r);
      CHECK(o.at("quarantine_id").is_null());
      auto back = report_from_json(json::value(o));
      REQUIRE(back);
      check_equal(r, *back);
    }
  }
}

TEST_CASE("to_json_text is readable: one key per line, ends in a newline") {
  const std::string text = to_json_text(sample_report());
  CHECK(text.back() == '\n');
  CHECK(text.find("\n  \"verdict\": \"sanitized\",\n") != std::string::npos);
  CHECK(text.find("\n  \"quarantine_id\": \"20261122T013512Z-0123456789\",\n") != std::string::npos);
  CHECK(text.find("\"flags\": [\"executable\", \"double-extension\"]") != std::string::npos);
  CHECK(text.find("\"size\": 18446744073709551615") != std::string::npos);
  // The pretty form parses to the same value as the compact one.
  CHECK(json::parse(text) == json::value(to_json(sample_report())));
  CHECK(format_json_text(json::object{}) == "{}\n");
  CHECK(format_json_text(json::array{}) == "[]\n");
}

TEST_CASE("invalid UTF-8 in a filename still yields valid JSON") {
  report r = sample_report();
  r.parts[1].filename = std::string("a\xff\xfe.exe\xe3\x81", 8);
  r.reasons.push_back(std::string("\xc0\x80", 2));
  const std::string text = json::serialize(to_json(r));
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);  // Boost's parser rejects invalid UTF-8
  REQUIRE_FALSE(ec);
  auto back = report_from_json(v);
  REQUIRE(back);
  CHECK(back->parts[1].filename == "a\xEF\xBF\xBD\xEF\xBF\xBD.exe\xEF\xBF\xBD");
  CHECK(back->reasons.back() == "\xEF\xBF\xBD\xEF\xBF\xBD");
  // Pretty text too.
  CHECK(reparse(to_json_text(r)));
}

TEST_CASE("to_valid_utf8 replaces maximal ill-formed subparts") {
  const std::string r = "\xEF\xBF\xBD";
  CHECK(to_valid_utf8("") == "");
  CHECK(to_valid_utf8("plain ascii") == "plain ascii");
  CHECK(to_valid_utf8("請求書 ①㈱ 😀") == "請求書 ①㈱ 😀");
  CHECK(to_valid_utf8(std::string("a\0b", 3)) ==
        std::string("a\0b", 3));                              // NUL is valid UTF-8; JSON escapes it
  CHECK(to_valid_utf8("\x80") == r);                          // stray continuation
  CHECK(to_valid_utf8("\xC0\x80") == r + r);                  // overlong NUL
  CHECK(to_valid_utf8("\xE0\x80\xAF") == r + r + r);          // overlong '/'
  CHECK(to_valid_utf8("\xED\xA0\x80") == r + r + r);          // UTF-16 surrogate
  CHECK(to_valid_utf8("\xF4\x90\x80\x80") == r + r + r + r);  // above U+10FFFF
  CHECK(to_valid_utf8("\xF5\x80") == r + r);                  // never a lead byte
  CHECK(to_valid_utf8("\xE3\x81") == r);                      // truncated at the end
  CHECK(to_valid_utf8("\xE3\x81"
                      "A") == r + "A");  // truncated by ASCII
  CHECK(to_valid_utf8("\xF0\x9F\x98"
                      "x\xF0\x9F\x98\x80") == r + "x😀");  // maximal subpart, then valid
  CHECK(to_valid_utf8("\xFF\xFE") == r + r);
}

TEST_CASE("report_from_json is strict: any wrong type, missing key or unknown name fails") {
  const json::object good = to_json(sample_report());
  REQUIRE(report_from_json(json::value(good)));

  CHECK_FALSE(report_from_json(json::value(nullptr)));
  CHECK_FALSE(report_from_json(json::value(json::array{})));
  CHECK_FALSE(report_from_json(json::value("held")));

  // Each top-level key removed in turn.
  for (const char* key : {"verdict", "reasons", "warnings", "quarantine_id", "actions", "parts"}) {
    json::object o = good;
    o.erase(key);
    CAPTURE(key);
    CHECK_FALSE(report_from_json(json::value(o)));
  }
  // Each part key removed in turn.
  for (const char* key : {"path", "declared_type", "detected_type", "filename", "size", "sha256", "action",
                          "reason", "flags"}) {
    json::object o = good;
    o.at("parts").as_array().at(1).as_object().erase(key);
    CAPTURE(key);
    CHECK_FALSE(report_from_json(json::value(o)));
  }

  using mutation = std::function<void(json::object&)>;
  auto part = [](json::object& o) -> json::object& { return o.at("parts").as_array().at(1).as_object(); };
  const std::vector<std::pair<const char*, mutation>> bad = {
      {"verdict number", [](json::object& o) { o["verdict"] = 1; }},
      {"verdict unknown", [](json::object& o) { o["verdict"] = "ok"; }},
      {"verdict case", [](json::object& o) { o["verdict"] = "Held"; }},
      {"reasons not array", [](json::object& o) { o["reasons"] = "x"; }},
      {"reasons element number",
       [](json::object& o) {
         o["reasons"] = json::array{"a", 2};
       }},
      {"warnings null", [](json::object& o) { o["warnings"] = nullptr; }},
      {"actions element object", [](json::object& o) { o["actions"] = json::array{json::object{}}; }},
      {"quarantine_id number", [](json::object& o) { o["quarantine_id"] = 5; }},
      {"quarantine_id bool", [](json::object& o) { o["quarantine_id"] = false; }},
      {"parts object", [](json::object& o) { o["parts"] = json::object{}; }},
      {"part not object", [](json::object& o) { o.at("parts").as_array().emplace_back("x"); }},
      {"size negative", [&](json::object& o) { part(o)["size"] = -1; }},
      {"size double", [&](json::object& o) { part(o)["size"] = 1.0; }},
      {"size string", [&](json::object& o) { part(o)["size"] = "12"; }},
      {"sha256 upper", [&](json::object& o) { part(o)["sha256"] = std::string(64, 'A'); }},
      {"sha256 short", [&](json::object& o) { part(o)["sha256"] = "abc"; }},
      {"sha256 path", [&](json::object& o) { part(o)["sha256"] = "../../../../etc/passwd"; }},
      {"action unknown", [&](json::object& o) { part(o)["action"] = "kept"; }},
      {"action underscore", [&](json::object& o) { part(o)["action"] = "kept_as_text"; }},
      {"flags string", [&](json::object& o) { part(o)["flags"] = "executable"; }},
      {"flags element null", [&](json::object& o) { part(o)["flags"] = json::array{nullptr}; }},
      {"filename null", [&](json::object& o) { part(o)["filename"] = nullptr; }},
  };
  for (const auto& [name, mutate] : bad) {
    json::object o = good;
    mutate(o);
    CAPTURE(name);
    CHECK_FALSE(report_from_json(json::value(o)));
  }
}

TEST_CASE("report_from_json accepts what a parser produces and ignores unknown keys") {
  auto r = reparse(R"({"verdict":"held","reasons":["timeout"],"warnings":[],"quarantine_id":null,
                       "actions":[],"parts":[],"future_key":{"x":1}})");
  REQUIRE(r);
  CHECK(r->result == verdict::held);
  CHECK(r->reasons == std::vector<std::string>{"timeout"});
  CHECK_FALSE(r->quarantine_id);
  CHECK(r->parts.empty());
}
