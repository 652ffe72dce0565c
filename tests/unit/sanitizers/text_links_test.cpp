// Tests for sanitizers/text_links: URL starts in plain text under each link policy, the in-place
// form against the copying one, and URL starts at every offset of an 8-byte word (the scan skips
// words without h/f/w).
#include "sanitizers/text_links.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

using namespace mukai::sanitize;
namespace cfg = mukai::config;

namespace {

cfg::policy with_links(cfg::link_action a, cfg::language lang = cfg::language::en) {
  cfg::policy p;
  p.http_links = a;
  p.notice_language = lang;
  return p;
}

}  // namespace

TEST_CASE("text links: defang, remove, keep") {
  text_link_counts n;
  const std::string text = "see https://example.com/a, www.example.org/x?y and ftp://f.example.\n";
  CHECK(apply_link_policy_to_text(text, with_links(cfg::link_action::keep), n) == text);
  CHECK(n.defanged == 0);
  const std::string defanged = apply_link_policy_to_text(text, with_links(cfg::link_action::defang), n);
  CHECK(defanged.find("https://") == std::string::npos);
  CHECK(defanged.find("www[.]example[.]org/x?y") != std::string::npos);
  CHECK(n.defanged == 3);
  text_link_counts r;
  const std::string removed = apply_link_policy_to_text(text, with_links(cfg::link_action::remove), r);
  CHECK(removed == "see [link removed], [link removed] and [link removed].\n");
  CHECK(r.removed == 3);
}

TEST_CASE("text links: only starts at a word boundary, in either case") {
  text_link_counts n;
  const auto pol = with_links(cfg::link_action::remove);
  CHECK(apply_link_policy_to_text("xhttp://a.example/ awww.b.example", pol, n) ==
        "xhttp://a.example/ awww.b.example");
  CHECK(apply_link_policy_to_text("HTTP://A.EXAMPLE/ WwW.b.example", pol, n) ==
        "[link removed] [link removed]");
  CHECK(apply_link_policy_to_text("http:// www. h f w", pol, n) == "http:// www. h f w");
  CHECK(apply_link_policy_to_text("\xe6\x97\xa5https://x.example/\xe6\x97\xa5", pol, n) ==
        "\xe6\x97\xa5[link removed]\xe6\x97\xa5");
}

TEST_CASE("text links: in place equals the copying form, URLs at every word offset") {
  std::mt19937 rng(7);
  const std::vector<std::string> pieces = {"https://a.example/p",
                                           "www.b.example",
                                           "FTP://c.example",
                                           "http:",
                                           "www",
                                           "h",
                                           "f",
                                           "w",
                                           "H",
                                           "W",
                                           " ",
                                           "\n",
                                           ".",
                                           ")",
                                           "(",
                                           "x",
                                           "\xe3\x81\x82",
                                           "\xe2\x80\xa6",
                                           "abcdefgh"};
  for (const auto action : {cfg::link_action::defang, cfg::link_action::remove, cfg::link_action::keep}) {
    for (const auto lang : {cfg::language::en, cfg::language::ja}) {
      const auto pol = with_links(action, lang);
      for (int round = 0; round < 3000; ++round) {
        std::string s(static_cast<std::size_t>(round % 9), 'q');
        for (int k = static_cast<int>(rng() % 12); k > 0; --k) s += pieces[rng() % pieces.size()];
        text_link_counts a, b;
        const std::string copied = apply_link_policy_to_text(s, pol, a);
        std::string in_place = s;
        apply_link_policy_in_place(in_place, pol, b);
        REQUIRE(copied == in_place);
        REQUIRE(a.defanged == b.defanged);
        REQUIRE(a.removed == b.removed);
      }
    }
  }
  // The same URL at each offset of a word, after 0..15 plain bytes.
  for (std::size_t shift = 0; shift < 16; ++shift) {
    text_link_counts n;
    std::string s = std::string(shift, 'X') + " https://z.example/q " + std::string(shift, 'Y');
    apply_link_policy_in_place(s, with_links(cfg::link_action::remove), n);
    CHECK(s == std::string(shift, 'X') + " [link removed] " + std::string(shift, 'Y'));
    CHECK(n.removed == 1);
  }
}

TEST_CASE("text links: a text without URL is left as it is") {
  text_link_counts n;
  std::string s(200000, 'X');
  apply_link_policy_in_place(s, with_links(cfg::link_action::defang), n);
  CHECK(s == std::string(200000, 'X'));
  CHECK(n.defanged == 0);
}
