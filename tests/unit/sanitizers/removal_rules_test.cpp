// Tests for sanitizers/removal_rules: glob matching and first-match rule evaluation, one
// criterion at a time.
#include "sanitizers/removal_rules.hpp"

#include <doctest/doctest.h>

using namespace mukai::sanitize;
using mukai::config::content_flag;
using mukai::config::policy;
using mukai::config::removal_rule;
using mukai::config::removed_action;

namespace {

content_facts facts(std::string type, std::string ext, std::vector<content_flag> flags = {}) {
  content_facts f;
  f.detected_type = std::move(type);
  f.extension = std::move(ext);
  f.flags = std::move(flags);
  return f;
}

removal_rule rule(std::string name, removed_action action) {
  removal_rule r;
  r.name = std::move(name);
  r.action = action;
  return r;
}

}  // namespace

TEST_CASE("glob_match: '*' and '?' only, whole text, ASCII case-insensitive") {
  CHECK(glob_match("", ""));
  CHECK_FALSE(glob_match("", "a"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("*", "anything/at-all"));
  CHECK(glob_match("image/*", "image/png"));
  CHECK(glob_match("image/*", "image/"));
  CHECK_FALSE(glob_match("image/*", "application/pdf"));
  CHECK_FALSE(glob_match("image/*", "xximage/png"));
  CHECK(glob_match("IMAGE/*", "image/JPEG"));
  CHECK(glob_match("application/x-*-compressed", "application/x-7z-compressed"));
  CHECK(glob_match("ex?", "exe"));
  CHECK_FALSE(glob_match("ex?", "ex"));
  CHECK_FALSE(glob_match("ex?", "exes"));
  CHECK(glob_match("a*b*c", "aXXbYYc"));
  CHECK(glob_match("a*b*c", "abc"));
  CHECK_FALSE(glob_match("a*b*c", "aXXbYY"));
  CHECK(glob_match("**x**", "x"));
  CHECK(glob_match("*.pdf", "a.b.pdf"));
  CHECK_FALSE(glob_match("*.pdf", "a.pdf.exe"));
  CHECK(glob_match("[a]", "[a]"));  // no character classes: brackets are literal
  CHECK_FALSE(glob_match("[a]", "a"));
  SUBCASE("'?' is one UTF-8 character") {
    CHECK(glob_match("?.txt", "あ.txt"));
    CHECK_FALSE(glob_match("??.txt", "あ.txt"));
    CHECK(glob_match("*書.exe", "請求書.exe"));
  }
  SUBCASE("pathological patterns finish") {
    const std::string text(2000, 'a');
    CHECK_FALSE(glob_match("*a*a*a*a*a*a*a*a*a*a*b", text));
  }
}

TEST_CASE("decide_removal: no rule matches -> the default action") {
  policy pol;
  auto d = decide_removal(facts("application/pdf", "pdf"), 100, pol);
  CHECK(d.action == removed_action::quarantine);
  CHECK(d.reason == "default");
  pol.default_action = removed_action::discard;
  d = decide_removal(facts("application/pdf", "pdf"), 100, pol);
  CHECK(d.action == removed_action::discard);
  CHECK(d.reason == "default");
}

TEST_CASE("decide_removal: each criterion") {
  policy pol;
  pol.default_action = removed_action::quarantine;

  SUBCASE("detected type glob") {
    auto r = rule("images", removed_action::discard);
    r.detected_types = {"image/*", "video/*"};
    pol.rules = {r};
    CHECK(decide_removal(facts("image/png", "png"), 10, pol).reason == "rule:images");
    CHECK(decide_removal(facts("video/mp4", "mp4"), 10, pol).action == removed_action::discard);
    CHECK(decide_removal(facts("application/pdf", "png"), 10, pol).reason == "default");
  }
  SUBCASE("extension, with or without a dot") {
    auto r = rule("executables", removed_action::discard);
    r.extensions = {"exe", ".scr", "ps?"};
    pol.rules = {r};
    CHECK(decide_removal(facts("application/octet-stream", "exe"), 10, pol).reason == "rule:executables");
    CHECK(decide_removal(facts("application/octet-stream", "scr"), 10, pol).reason == "rule:executables");
    CHECK(decide_removal(facts("application/octet-stream", "ps1"), 10, pol).reason == "rule:executables");
    CHECK(decide_removal(facts("application/octet-stream", "pdf"), 10, pol).reason == "default");
    CHECK(decide_removal(facts("application/octet-stream", ""), 10, pol).reason == "default");
  }
  SUBCASE("flags: all listed must be set") {
    auto r = rule("macro-zip", removed_action::discard);
    r.flags = {content_flag::macro_office, content_flag::encrypted_archive};
    pol.rules = {r};
    CHECK(decide_removal(facts("application/zip", "zip", {content_flag::macro_office}), 10, pol).reason ==
          "default");
    CHECK(decide_removal(facts("application/zip", "zip",
                               {content_flag::macro_office, content_flag::encrypted_archive,
                                content_flag::double_extension}),
                         10, pol)
              .reason == "rule:macro-zip");
  }
  SUBCASE("size bounds are inclusive") {
    auto r = rule("mid", removed_action::discard);
    r.min_size = 100;
    r.max_size = 200;
    pol.rules = {r};
    CHECK(decide_removal(facts("x/y", "a"), 99, pol).reason == "default");
    CHECK(decide_removal(facts("x/y", "a"), 100, pol).reason == "rule:mid");
    CHECK(decide_removal(facts("x/y", "a"), 200, pol).reason == "rule:mid");
    CHECK(decide_removal(facts("x/y", "a"), 201, pol).reason == "default");
    auto only_min = rule("big", removed_action::discard);
    only_min.min_size = 1000;
    pol.rules = {only_min};
    CHECK(decide_removal(facts("x/y", "a"), UINT64_MAX, pol).reason == "rule:big");
    CHECK(decide_removal(facts("x/y", "a"), 0, pol).reason == "default");
  }
  SUBCASE("every non-empty criterion must match") {
    auto r = rule("pdf-small", removed_action::discard);
    r.detected_types = {"application/pdf"};
    r.extensions = {"pdf"};
    r.max_size = 1000;
    pol.rules = {r};
    CHECK(decide_removal(facts("application/pdf", "pdf"), 10, pol).reason == "rule:pdf-small");
    CHECK(decide_removal(facts("application/pdf", "exe"), 10, pol).reason == "default");
    CHECK(decide_removal(facts("application/zip", "pdf"), 10, pol).reason == "default");
    CHECK(decide_removal(facts("application/pdf", "pdf"), 1001, pol).reason == "default");
  }
}

TEST_CASE("decide_removal: first match wins, unnamed rules, catch-all") {
  policy pol;
  auto exe = rule("exe", removed_action::discard);
  exe.flags = {content_flag::executable};
  auto images = rule("", removed_action::discard);
  images.detected_types = {"image/*"};
  auto all = rule("everything", removed_action::quarantine);  // no criteria: matches anything
  pol.rules = {exe, images, all};
  pol.default_action = removed_action::discard;

  auto d = decide_removal(facts("image/png", "png", {content_flag::executable}), 5, pol);
  CHECK(d.reason == "rule:exe");
  d = decide_removal(facts("image/png", "png"), 5, pol);
  CHECK(d.reason == "rule:#2");
  CHECK(d.action == removed_action::discard);
  d = decide_removal(facts("application/pdf", "pdf"), 5, pol);
  CHECK(d.reason == "rule:everything");
  CHECK(d.action == removed_action::quarantine);
}
