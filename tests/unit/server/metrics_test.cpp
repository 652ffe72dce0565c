// The Prometheus text format as a scraper reads it: HELP/TYPE once per family, escaped label values,
// cumulative histogram buckets ending in le="+Inf" with _sum and _count, and label sets that stay
// bounded whatever values arrive.
#include "server/metrics.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <regex>
#include <sstream>
#include <thread>

using namespace mukai::server;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Every line is a comment of the two kinds we write or a well-formed sample (the grammar of the
// exposition format: name, optional {label="escaped value",...}, one space, a float).
void check_grammar(const std::string& text) {
  static const std::regex help(R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*)");
  static const std::regex type(R"(# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram))");
  static const std::regex sample(
      R"([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN))");
  REQUIRE(!text.empty());
  CHECK(text.back() == '\n');
  for (auto& l : lines_of(text)) {
    INFO(l);
    CHECK((std::regex_match(l, help) || std::regex_match(l, type) || std::regex_match(l, sample)));
  }
}

}  // namespace

TEST_CASE("values, names and escaping") {
  CHECK(format_metric_value(0) == "0");
  CHECK(format_metric_value(42) == "42");
  CHECK(format_metric_value(0.25) == "0.25");
  CHECK(format_metric_value(1.0 / 0.0) == "+Inf");
  CHECK(format_metric_value(-1.0 / 0.0) == "-Inf");
  CHECK(format_metric_value(std::nan("")) == "NaN");
  CHECK(escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(escape_help("x\\y\nz \"q\"") == "x\\\\y\\nz \"q\"");
  CHECK(valid_metric_name("mukai_messages_total"));
  CHECK(valid_metric_name("a:b"));
  CHECK(!valid_metric_name("a:b", true));
  CHECK(!valid_metric_name("1abc"));
  CHECK(!valid_metric_name("a-b"));
  CHECK(!valid_metric_name(""));
}

TEST_CASE("writer: HELP and TYPE then samples; hostile label values stay on one line") {
  prometheus_writer w;
  w.family("mukai_test_total", "A help\nwith a newline and a \\", metric_type::counter);
  w.sample("mukai_test_total", {{"kind", "evil\"} 1\nmukai_forged 99"}}, 3);
  w.family("mukai_gauge", "g", metric_type::gauge);
  w.sample("mukai_gauge", -2);
  const std::string text = w.text();
  check_grammar(text);
  auto lines = lines_of(text);
  REQUIRE(lines.size() == 6);
  CHECK(lines[0] == "# HELP mukai_test_total A help\\nwith a newline and a \\\\");
  CHECK(lines[1] == "# TYPE mukai_test_total counter");
  CHECK(lines[2] == "mukai_test_total{kind=\"evil\\\"} 1\\nmukai_forged 99\"} 3");
  CHECK(lines[3] == "# HELP mukai_gauge g");
  CHECK(lines[4] == "# TYPE mukai_gauge gauge");
  CHECK(lines[5] == "mukai_gauge -2");
  CHECK(text.find("\nmukai_forged") == std::string::npos);
}

TEST_CASE("counter_family: fixed series, unknown values count as other") {
  counter_family f({"type", "action"}, {{"application/zip", "text/html"}, {"quarantined", "discarded"}});
  CHECK(f.series() == 3 * 3);
  f.inc({"application/zip", "quarantined"});
  f.inc({"application/zip", "quarantined"});
  f.inc({"text/html", "discarded"});
  for (int i = 0; i < 1000; ++i) f.inc({"application/x-hostile-" + std::to_string(i), "quarantined"});
  f.inc({"text/html", "exploded"});
  CHECK(f.value({"application/zip", "quarantined"}) == 2);
  CHECK(f.value({"text/html", "discarded"}) == 1);
  CHECK(f.value({"other", "quarantined"}) == 1000);
  CHECK(f.value({"text/html", "other"}) == 1);
  CHECK(f.value({"application/zip", "discarded"}) == 0);

  prometheus_writer w;
  f.write(w, "mukai_parts_removed_total", "Parts removed.");
  check_grammar(w.text());
  auto lines = lines_of(w.text());
  CHECK(lines.size() == 2 + 9);  // every series, zeros included, however many values arrived
  CHECK(w.text().find("mukai_parts_removed_total{type=\"application/zip\",action=\"quarantined\"} 2\n") != std::string::npos);
  CHECK(w.text().find("mukai_parts_removed_total{type=\"other\",action=\"quarantined\"} 1000\n") != std::string::npos);
  CHECK(w.text().find("mukai_parts_removed_total{type=\"text/html\",action=\"discarded\"} 1\n") != std::string::npos);
  CHECK(w.text().find("hostile") == std::string::npos);

  CHECK_THROWS_AS(counter_family({"bad-label"}, {{"x"}}), std::invalid_argument);
  CHECK_THROWS_AS(counter_family({"a", "b"}, {{"x"}}), std::invalid_argument);
  std::vector<std::string> many(100, "v");
  for (std::size_t i = 0; i < many.size(); ++i) many[i] += std::to_string(i);
  CHECK_THROWS_AS(counter_family({"a", "b"}, {many, many}, 1024), std::invalid_argument);
}

TEST_CASE("histogram: cumulative buckets, inclusive bounds, +Inf, _sum and _count") {
  metric_histogram h({0.1, 1, 10});
  h.observe(0.05);
  h.observe(0.1);  // le is inclusive
  h.observe(0.5);
  h.observe(10);
  h.observe(99);
  prometheus_writer w;
  h.write(w, "mukai_sanitize_seconds", "Time.");
  check_grammar(w.text());
  auto lines = lines_of(w.text());
  REQUIRE(lines.size() == 2 + 4 + 2);
  CHECK(lines[1] == "# TYPE mukai_sanitize_seconds histogram");
  CHECK(lines[2] == "mukai_sanitize_seconds_bucket{le=\"0.1\"} 2");
  CHECK(lines[3] == "mukai_sanitize_seconds_bucket{le=\"1\"} 3");
  CHECK(lines[4] == "mukai_sanitize_seconds_bucket{le=\"10\"} 4");
  CHECK(lines[5] == "mukai_sanitize_seconds_bucket{le=\"+Inf\"} 5");
  CHECK(lines[6] == "mukai_sanitize_seconds_sum 109.65");
  CHECK(lines[7] == "mukai_sanitize_seconds_count 5");
  CHECK(h.count() == 5);
  CHECK_THROWS_AS(metric_histogram({1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(metric_histogram({1, 1.0 / 0.0}), std::invalid_argument);
}

TEST_CASE("counters and histograms are exact under concurrent updates") {
  metric_counter c;
  metric_histogram h({1, 2});
  counter_family f({"k"}, {{"a"}});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(1.5);
        f.inc({"a"});
      }
    });
  for (auto& t : threads) t.join();
  CHECK(c.value() == 40000);
  CHECK(h.count() == 40000);
  CHECK(h.sum() == doctest::Approx(60000));
  CHECK(f.value({"a"}) == 40000);
}
