// The web console's HTML: one escaping function for everything from a message, and pages that
// pass every hostile value through it.
#include "server/admin_html.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>

using namespace mukai::server;

namespace {

constexpr std::string_view fffd = "\xEF\xBF\xBD";

// True when `html` contains none of the tags the hostile values carry (as text they are harmless:
// "onerror=" between &lt; and &gt; is not an attribute).
bool has_no_injected_markup(const std::string& html) {
  for (const char* tag : {"<script", "<img", "<b>", "<i>", "<forbidden", "<macro"})
    if (html.find(tag) != std::string::npos) return false;
  return true;
}

index_item hostile_item() {
  index_item it;
  it.id = "20261122T013512Z-7k2m9q4x0c";
  it.received = 1795000000;
  it.mail_from = "evil@example.com\"><script>alert(1)</script>";
  it.rcpt_to = {"a@example.lg.jp", "<img src=x onerror=alert(2)>@x"};
  it.from = "\"Mallory\" <m@example.com>";
  it.subject = "<script>alert('subject')</script> 請求書";
  it.message_id = "<id'@x>";
  it.verdict = "held";
  it.reasons = {"executable <b>bold</b>"};
  it.parts.push_back(index_part{"2", "<img src=x onerror=alert(3)>.pdf", "application/pdf", "application/pdf", 1234,
                                std::string(64, 'a'), "quarantined", "type \"pdf\" & <macro>"});
  it.history.push_back(history_entry{1795000100, "web:<i>op</i>", "release", "refused", "policy <forbidden>"});
  return it;
}

}  // namespace

TEST_CASE("html_escape: markup characters become entities") {
  CHECK(html_escape("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;");
  CHECK(html_escape("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;");
  CHECK(html_escape("a & b") == "a &amp; b");
  CHECK(html_escape("\"double\" 'single'") == "&quot;double&quot; &#39;single&#39;");
  CHECK(html_escape("&lt;") == "&amp;lt;");  // no double-decoding tricks
  CHECK(html_escape("件名: 請求書.pdf") == "件名: 請求書.pdf");
  CHECK(html_escape("tab\tline\r\nend") == "tab\tline\r\nend");
}

TEST_CASE("html_escape: controls, invalid UTF-8 and bidi controls become U+FFFD") {
  CHECK(html_escape(std::string_view("nul\0x", 5)) == std::string("nul") + std::string(fffd) + "x");
  CHECK(html_escape("\x1b[31m") == std::string(fffd) + "[31m");
  CHECK(html_escape("del\x7f") == std::string("del") + std::string(fffd));
  CHECK(html_escape("\xc2\x9b") == fffd);                                 // C1 CSI
  CHECK(html_escape("\xff") == fffd);                                     // never valid
  CHECK(html_escape("\xc0\xbc") == std::string(fffd) + std::string(fffd));  // overlong '<' is not '<'
  CHECK(html_escape("\xed\xa0\x80").find('\xed') == std::string::npos);   // surrogate
  CHECK(html_escape("\xe3\x81") == std::string(fffd) + std::string(fffd));  // truncated
  // RIGHT-TO-LEFT OVERRIDE: "invoice\u202Efdp.exe" would display as "invoiceexe.pdf".
  CHECK(html_escape("invoice\xe2\x80\xae" "fdp.exe") == "invoice" + std::string(fffd) + "fdp.exe");
  CHECK(html_escape("\xe2\x81\xa6x\xe2\x81\xa9") == std::string(fffd) + "x" + std::string(fffd));  // LRI..PDI
  CHECK(html_escape("\xd8\x9c") == fffd);                                 // ARABIC LETTER MARK
  CHECK(html_escape("\xf0\x9f\x98\x80") == "\xf0\x9f\x98\x80");           // emoji passes
}

TEST_CASE("url_component: percent-encodes everything but unreserved characters") {
  CHECK(url_component("abc-._~019") == "abc-._~019");
  CHECK(url_component("a b&c=d/\"<") == "a%20b%26c%3Dd%2F%22%3C");
  CHECK(url_component("請") == "%E8%AB%8B");
}

TEST_CASE("pages: every value from a message is escaped (list, detail, confirm)") {
  page_frame f;
  f.user = "<b>op</b>";
  f.role = admin_role::operator_;
  f.csrf = "tok\"en";
  f.self = "/";
  const index_item it = hostile_item();
  item_page page;
  page.items.push_back(it);
  page.total = 1;
  list_query q;
  q.text = "\"><script>alert(9)</script>";
  const std::string list = render_list_page(f, q, page, 50, "");
  CHECK(has_no_injected_markup(list));
  CHECK(list.find("&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt; 請求書") != std::string::npos);
  CHECK(list.find("value=\"&quot;&gt;&lt;script&gt;alert(9)&lt;/script&gt;\"") != std::string::npos);
  CHECK(list.find("&lt;img src=x onerror=alert(3)&gt;.pdf") != std::string::npos);

  const std::string detail = render_detail_page(f, it, std::string("body <script>alert(4)</script>"));
  CHECK(has_no_injected_markup(detail));
  CHECK(detail.find("body &lt;script&gt;alert(4)&lt;/script&gt;") != std::string::npos);
  CHECK(detail.find("web:&lt;i&gt;op&lt;/i&gt;") != std::string::npos);
  CHECK(detail.find("type &quot;pdf&quot; &amp; &lt;macro&gt;") != std::string::npos);
  CHECK(detail.find("name=\"csrf\" value=\"tok&quot;en\"") != std::string::npos);
  CHECK(detail.find("&lt;b&gt;op&lt;/b&gt;") != std::string::npos);

  const std::string confirm = render_confirm_page(f, it, confirm_kind::release);
  CHECK(has_no_injected_markup(confirm));
  CHECK(confirm.find("action=\"/item/20261122T013512Z-7k2m9q4x0c/release\"") != std::string::npos);
}

TEST_CASE("detail page: release and delete buttons only for operators, only for held/released items") {
  page_frame f;
  f.user = "v";
  f.self = "/";
  index_item it = hostile_item();
  f.role = admin_role::viewer;
  CHECK(render_detail_page(f, it, std::nullopt).find("id=\"release\"") == std::string::npos);
  f.role = admin_role::operator_;
  CHECK(render_detail_page(f, it, std::nullopt).find("id=\"release\"") != std::string::npos);
  it.status = item_status::deleted;
  CHECK(render_detail_page(f, it, std::nullopt).find("id=\"release\"") == std::string::npos);
}

TEST_CASE("pages: Japanese by default, English on request; no inline script or style") {
  page_frame f;
  f.self = "/login";
  const std::string ja = render_login_page(f, "t", "", "");
  CHECK(ja.find("<html lang=\"ja\">") != std::string::npos);
  CHECK(ja.find("パスワード") != std::string::npos);
  CHECK(ja.find("href=\"/login?lang=en\"") != std::string::npos);
  f.lang = ui_lang::en;
  const std::string en = render_login_page(f, "t", "", "");
  CHECK(en.find("Password") != std::string::npos);
  for (const auto* page : {&ja, &en}) {
    CHECK(page->find("<script") == std::string::npos);
    CHECK(page->find("style=") == std::string::npos);
    CHECK(page->find("<style") == std::string::npos);
    CHECK(page->find("http://") == std::string::npos);
    CHECK(page->find("https://") == std::string::npos);
  }
  CHECK(parse_ui_lang("en") == ui_lang::en);
  CHECK(parse_ui_lang("fr") == ui_lang::ja);
}

TEST_CASE("list_query: paging links keep the filters, percent-encoded") {
  list_query q;
  q.text = "請求 & co";
  q.status = "held";
  CHECK(q.to_query_string(1) == "q=%E8%AB%8B%E6%B1%82%20%26%20co&status=held");
  CHECK(q.to_query_string(3) == "q=%E8%AB%8B%E6%B1%82%20%26%20co&status=held&page=3");
}

TEST_CASE("parse_local_time: dates and times in local time; until a date means through that day") {
  const auto d = parse_local_time("2026-11-22", false);
  const auto e = parse_local_time("2026-11-22", true);
  const auto t = parse_local_time("2026-11-22T10:30", false);
  REQUIRE(d);
  REQUIRE(e);
  REQUIRE(t);
  CHECK(*e - *d == 86400);
  CHECK(*t - *d == 10 * 3600 + 30 * 60);
  CHECK(parse_local_time("2026-11-22T10:30:15", false).value() - *t == 15);
  CHECK_FALSE(parse_local_time("2026-13-01", false));
  CHECK_FALSE(parse_local_time("yesterday", false));
  CHECK_FALSE(parse_local_time("2026-11-22T10", false));
  CHECK_FALSE(parse_local_time("2026-11-22x", false));
}

TEST_CASE("token_label: engine tokens in the page's language; unknown tokens are their own label") {
  CHECK(token_label(ui_lang::ja, token_kind::verdict, "sanitized") == "無害化して配送");
  CHECK(token_label(ui_lang::en, token_kind::verdict, "held") == "held (not delivered)");
  CHECK(token_label(ui_lang::ja, token_kind::reason, "html-to-text") == "HTML 本文をテキスト化");
  CHECK(token_label(ui_lang::ja, token_kind::reason, "attachments-removed=1") == "添付ファイル等を削除 (1)");
  CHECK(token_label(ui_lang::en, token_kind::reason, "rule:executables") == "policy rule (executables)");
  CHECK(token_label(ui_lang::ja, token_kind::part_action, "kept-as-text") == "本文として表示");
  CHECK(token_label(ui_lang::en, token_kind::part_action, "quarantined") == "quarantined");
  CHECK(token_label(ui_lang::ja, token_kind::reason, "attachment") == "添付ファイル");
  CHECK(token_label(ui_lang::ja, token_kind::flag, "executable") == "実行ファイル");
  CHECK(token_label(ui_lang::en, token_kind::flag, "encrypted-archive") == "encrypted archive");
  // Each kind has its own vocabulary: a flag is not a reason.
  CHECK(token_label(ui_lang::ja, token_kind::reason, "executable") == "executable");
  CHECK(token_label(ui_lang::ja, token_kind::verdict, "future-verdict") == "future-verdict");
}

TEST_CASE("detail page: labels in Japanese or English with the raw token beside them, flags per part") {
  page_frame f;
  f.user = "op";
  f.self = "/item/x";
  index_item it = hostile_item();
  it.verdict = "sanitized";
  it.reasons = {"html-to-text", "attachments-removed=1", "brand-new-token"};
  it.parts = {index_part{"1", "", "text/html", "text/html", 10, std::string(64, 'b'), "converted", "html-to-text"},
              index_part{"2", "a.exe", "application/octet-stream", "application/x-dosexec", 99, std::string(64, 'c'),
                         "quarantined", "rule:executables"}};
  const std::map<std::string, std::vector<std::string>> flags{{"2", {"executable", "double-extension"}}};
  const std::string ja = render_detail_page(f, it, std::nullopt, flags);
  CHECK(ja.find("<span class=\"label\">無害化して配送</span> <code class=\"tok\">sanitized</code>") != std::string::npos);
  CHECK(ja.find("<li><span class=\"label\">添付ファイル等を削除 (1)</span> <code class=\"tok\">attachments-removed=1</code></li>") !=
        std::string::npos);
  CHECK(ja.find("<li><code class=\"tok\">brand-new-token</code></li>") != std::string::npos);  // fallback: the token once
  CHECK(ja.find("<span class=\"label\">テキストに変換</span> <code class=\"tok\">converted</code>") != std::string::npos);
  CHECK(ja.find("<span class=\"label\">ポリシー規則 (executables)</span> <code class=\"tok\">rule:executables</code>") !=
        std::string::npos);
  CHECK(ja.find("<span class=\"label\">実行ファイル</span> <code class=\"tok\">executable</code>、<span class=\"label\">二重拡張子</span>") !=
        std::string::npos);
  f.lang = ui_lang::en;
  const std::string en = render_detail_page(f, it, std::nullopt, flags);
  CHECK(en.find("<span class=\"label\">sanitized and delivered</span> <code class=\"tok\">sanitized</code>") != std::string::npos);
  CHECK(en.find("<span class=\"label\">HTML body converted to text</span> <code class=\"tok\">html-to-text</code>") !=
        std::string::npos);
  CHECK(en.find("<span class=\"label\">executable</span> <code class=\"tok\">executable</code>, ") != std::string::npos);
}

TEST_CASE("labels: the token's rest and unknown tokens are escaped; the list page keeps the token in the title") {
  page_frame f;
  f.user = "op";
  f.self = "/";
  index_item it = hostile_item();
  it.reasons = {"rule:<script>alert(5)</script>", "ambiguous:\"><img src=x onerror=alert(6)>", "<i>new</i>"};
  it.parts[0].reason = "rule:<b>x</b>";
  const std::map<std::string, std::vector<std::string>> flags{{"2", {"<script>flag</script>"}}};
  const std::string detail = render_detail_page(f, it, std::nullopt, flags);
  CHECK(has_no_injected_markup(detail));
  CHECK(detail.find("ポリシー規則 (&lt;script&gt;alert(5)&lt;/script&gt;)</span> <code class=\"tok\">rule:&lt;script&gt;") !=
        std::string::npos);
  CHECK(detail.find("<code class=\"tok\">&lt;script&gt;flag&lt;/script&gt;</code>") != std::string::npos);
  CHECK(detail.find("<code class=\"tok\">&lt;i&gt;new&lt;/i&gt;</code>") != std::string::npos);

  item_page page;
  page.items.push_back(it);
  page.total = 1;
  const std::string list = render_list_page(f, list_query{}, page, 50, "");
  CHECK(has_no_injected_markup(list));
  CHECK(list.find("<span class=\"label\" title=\"ambiguous:&quot;&gt;&lt;img src=x onerror=alert(6)&gt;\">") !=
        std::string::npos);
  it.reasons = {"html-to-text", "attachments-removed=2"};
  page.items = {it};
  f.lang = ui_lang::en;
  const std::string en = render_list_page(f, list_query{}, page, 50, "");
  CHECK(en.find("<span class=\"label\" title=\"html-to-text\">HTML body converted to text</span>, "
                "<span class=\"label\" title=\"attachments-removed=2\">attachments removed (2)</span>") != std::string::npos);
}

TEST_CASE("detail page: the history's actions and results in words, with the service's tokens") {
  page_frame f;
  f.user = "op";
  f.self = "/";
  index_item it = hostile_item();
  it.history.push_back(history_entry{1795000200, "mukai", "purge", "ok", "retention"});
  it.history.push_back(history_entry{1795000300, "web:op", "reindex", "ok", ""});
  const std::string ja = render_detail_page(f, it, std::nullopt);
  CHECK(ja.find("<span class=\"label\">解放</span> <code class=\"tok\">release</code></td><td><span class=\"label\">拒否</span> "
                "<code class=\"tok\">refused</code>") != std::string::npos);
  CHECK(ja.find("<span class=\"label\">保存期間満了による削除</span> <code class=\"tok\">purge</code>") != std::string::npos);
  CHECK(ja.find("<code class=\"tok\">reindex</code>") != std::string::npos);  // unknown: the token
  CHECK(token_label(ui_lang::en, token_kind::history_result, "failed") == "failed");
  CHECK(token_label(ui_lang::ja, token_kind::history_result, "failed") == "失敗");
  CHECK(token_label(ui_lang::ja, token_kind::history_action, "ok") == "ok");  // a result is not an action
}
