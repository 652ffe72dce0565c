// Configuration loading: the shipped sample loads clean, every problem is reported with file,
// line and key, and human-written sizes and durations parse.
#include <doctest/doctest.h>

#include <filesystem>

#include "config/config.hpp"

using namespace mukai::config;

TEST_CASE("the shipped sample config loads without errors and is valid for serve") {
  auto r = load_config_file(std::filesystem::path(MUKAI_TEST_DATA_DIR) / ".." / ".." / "config" / "mukai.toml");
  for (auto& e : r.errors) INFO(to_string(e));
  REQUIRE(r.errors.empty());
  REQUIRE(r.config);
  CHECK(validate_for_serve(*r.config).empty());
  CHECK(r.config->smtp.relay_domains == std::vector<std::string>{"example.lg.jp"});
  CHECK(r.config->pol.http_links == link_action::defang);
  CHECK(r.config->pol.rules.size() == 2);
  CHECK(r.config->pol.rules[0].action == removed_action::discard);
  CHECK(r.config->pol.release_forbidden == std::vector<content_flag>{content_flag::executable});
  CHECK(r.config->delivery.max_queue_lifetime == std::chrono::seconds(5 * 86400));
  CHECK(r.config->smtp.max_message_size == 50ull * 1024 * 1024);
}

TEST_CASE("every problem is reported with line and dotted key") {
  auto r = load_config_text(
      "[smtp]\n"
      "max_recipients = 0\n"
      "relay_domain = [\"x\"]\n"
      "listen = [\"nonsense\"]\n"
      "[policy]\n"
      "http_links = \"maybe\"\n"
      "[policy.limits]\n"
      "max_processing_time = \"soon\"\n",
      "test.toml");
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 5);
  auto has = [&](std::string key, std::uint32_t line) {
    for (auto& e : r.errors)
      if (e.key == key && e.line == line && e.file == "test.toml") return true;
    return false;
  };
  CHECK(has("smtp.max_recipients", 2));
  CHECK(has("smtp.relay_domain", 3));
  CHECK(has("smtp.listen", 4));
  CHECK(has("policy.http_links", 6));
  CHECK(has("policy.limits.max_processing_time", 8));
}

TEST_CASE("a TOML syntax error is one error with its line") {
  auto r = load_config_text("[smtp\nlisten = 1\n", "bad.toml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].line == 1);
}

TEST_CASE("serve needs relay domains in an explicit config; the embedded default accepts any from loopback") {
  auto r = load_config_text("[smtp]\nhostname = \"a\"\n", "x.toml");
  REQUIRE(r.config);
  CHECK(validate_for_serve(*r.config).size() == 1);
  auto d = embedded_default();
  CHECK(d.smtp.listen == std::vector<std::string>{"127.0.0.1:2525"});
  CHECK(d.delivery.next_hops == std::vector<std::string>{"maildir:./mukai-data/outbox"});
}

TEST_CASE("sizes and durations") {
  CHECK(parse_size("50M") == 50ull * 1024 * 1024);
  CHECK(parse_size("512k") == 512ull * 1024);
  CHECK(parse_size("10") == 10u);
  CHECK_FALSE(parse_size("10X"));
  CHECK_FALSE(parse_size("-1"));
  CHECK_FALSE(parse_size("99999999999999G"));
  CHECK(parse_duration("5m") == std::chrono::seconds(300));
  CHECK(parse_duration("5d") == std::chrono::seconds(432000));
  CHECK(parse_duration("30") == std::chrono::seconds(30));
  CHECK_FALSE(parse_duration("m"));
  CHECK_FALSE(parse_duration("5 m"));
}

TEST_CASE("[log] format and [service] user") {
  auto d = embedded_default();
  CHECK(d.log.format == "json");
  CHECK(d.service.user.empty());
  auto ok = load_config_text("[log]\nformat = \"text\"\n[service]\nuser = \"mukai\"\n", "x.toml");
  REQUIRE(ok.config);
  CHECK(ok.config->log.format == "text");
  CHECK(ok.config->service.user == "mukai");
  auto bad = load_config_text("[log]\nformat = \"xml\"\n[service]\nuser = \"Bad User\"\n", "x.toml");
  REQUIRE(bad.errors.size() == 2);
  CHECK(bad.errors[0].key == "log.format");
  CHECK(bad.errors[1].key == "service.user");
  CHECK(bad.errors[1].line == 4);
  auto root = load_config_text("[service]\nuser = \"root\"\n", "x.toml");
  REQUIRE(root.errors.size() == 1);
  CHECK(root.errors[0].message.find("must not be root") != std::string::npos);
  auto unknown = load_config_text("[service]\ngroup = \"x\"\n", "x.toml");
  CHECK(unknown.errors.size() == 1);
}
