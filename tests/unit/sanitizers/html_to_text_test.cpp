// HTML -> text: one case per conversion rule, with the exact text a reader gets, plus the bounds
// (depth, size, time) and invariants that must hold for any input.
#include "sanitizers/html_to_text.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

using namespace mukai::sanitize;
using mukai::config::language;
using mukai::config::link_action;

namespace {

html_options english() {
  html_options o;
  o.lang = language::en;
  return o;
}

std::string convert(std::string_view html, const html_options& o = {}) { return html_to_text(html, o).text; }

// The output contract for any input.
void check_invariants(const std::string& text) {
  std::size_t blank_run = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    REQUIRE(nl != std::string::npos);  // every line, the last included, ends in LF
    const std::string_view line = std::string_view(text).substr(start, nl - start);
    if (!line.empty()) {
      CHECK(line.back() != ' ');
      CHECK(line.back() != '\t');
    }
    blank_run = line.empty() ? blank_run + 1 : 0;
    CHECK(blank_run <= 2);
    start = nl + 1;
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    CHECK_FALSE((b < 0x20 && b != '\t' && b != '\n'));
    CHECK(b != 0x7F);
    if (b == 0xC2 && i + 1 < text.size()) {
      const auto n = static_cast<unsigned char>(text[i + 1]);
      CHECK_FALSE((n >= 0x80 && n <= 0x9F));  // C1 controls
    }
  }
}

}  // namespace

// ----------------------------------------------------------------------------------------------
// Blocks and white space

TEST_CASE("paragraphs are separated by one blank line, inline white space collapses") {
  CHECK(convert("<p>Hello   <b>world</b>\n  again</p><p>second</p>") == "Hello world again\n\nsecond\n");
}

TEST_CASE("divs and other blocks break lines without blank lines") {
  CHECK(convert("<div>a</div><div>b</div><section>c</section><article>d</article>") == "a\nb\nc\nd\n");
}

TEST_CASE("adjacent block boundaries merge") {
  CHECK(convert("<div><p>a</p></div><div><div><p>b</p></div></div>") == "a\n\nb\n");
}

TEST_CASE("br breaks lines; runs of br give at most two blank lines") {
  CHECK(convert("a<br>b<br><br>c") == "a\nb\n\nc\n");
  CHECK(convert("a<br><br><br><br><br><br>b") == "a\n\n\nb\n");
  CHECK(convert("<br><br>a<br>") == "a\n");
  CHECK(convert("<div>a<br></div><div>b</div>") == "a\nb\n");  // a br closing a block adds nothing
}

TEST_CASE("no leading or trailing blank lines, no trailing spaces") {
  CHECK(convert("  <p>  x  </p>  <p> </p>  ") == "x\n");
  CHECK(convert("") == "");
  CHECK(convert("   \n\t ") == "");
}

TEST_CASE("a source newline between Japanese characters disappears") {
  CHECK(convert("<p>本日は晴天\nなり。明日も\n晴れるでしょう。</p>") ==
        "本日は晴天なり。明日も晴れるでしょう。\n");
  CHECK(convert("<p>日本語 の間の空白は残る</p>") == "日本語 の間の空白は残る\n");
  CHECK(convert("<p>English\nwords</p>") == "English words\n");
  CHECK(convert("<p>日本\nEnglish</p>") == "日本 English\n");
  CHECK(convert("<p>全角。\n  <span>\n  続き</span></p>") == "全角。続き\n");
}

TEST_CASE("hr is a rule between blank lines") {
  CHECK(convert("a<hr>b") == "a\n\n----------------------------------------\n\nb\n");
}

TEST_CASE("entities are decoded and escaped markup stays text") {
  CHECK(convert("<p>&lt;b&gt;bold&lt;/b&gt; &amp; &quot;q&quot; &#x65E5;&#26412;</p>") ==
        "<b>bold</b> & \"q\" 日本\n");
}

TEST_CASE("NBSP is a space that does not collapse and never ends a line") {
  CHECK(convert("<p>&nbsp;&nbsp;indented&nbsp;</p><p>&nbsp;</p><p>x</p>") == "  indented\n\nx\n");
}

TEST_CASE("controls are removed, TAB and LF kept only where they mean something") {
  CHECK(convert("<p>a\x01"
                "b\x7F"
                "c\xC2\x85"
                "d\xC2\x9F"
                "e</p>") == "abcde\n");
  CHECK(convert("<p>a&#0;b</p>") ==
        "a\xEF\xBF\xBD"
        "b\n");  // NUL reference -> U+FFFD by the HTML rules
  CHECK(convert("<pre>a\tb\x0B"
                "c</pre>") == "a\tbc\n");
  // Zero-width characters are the author's text and are kept; bidi overrides are not (below).
  CHECK(convert("<p>a\xE2\x80\xAE"
                "b\xE2\x80\x8B"
                "c</p>") ==
        "ab\xE2\x80\x8B"
        "c\n");
}

// tests/fuzz/regressions/fuzz_html_to_text/defang-c1
TEST_CASE("removing a control never joins the bytes around it into a C1 control") {
  // "\xC2\x01\x85" is invalid UTF-8: two U+FFFD. Dropping the \x01 byte used to leave "\xC2\x85",
  // which is U+0085 (NEL).
  CHECK(defang_url("\xC2\x01\x85") == "\uFFFD\uFFFD");
  CHECK(defang_url("https://a.example/\xC2\t\x85x") == "hxxps://a[.]example/\uFFFD\uFFFDx");
  CHECK(defang_url("https://a.example/\xC2\x85\xE2\x80\xAEx") == "hxxps://a[.]example/x");
  CHECK(convert("<p>a\xC2\x01\x85"
                "b</p>") ==
        "a\uFFFD\uFFFD"
        "b\n");
  CHECK(convert("<a href=\"https://a.example/\xC2\x01\x85\">x</a>") ==
        "x <hxxps://a[.]example/\uFFFD\uFFFD>\n");
  CHECK(convert("<img alt=\"a\xC2\x01\x85"
                "b\">") ==
        "[画像: a\uFFFD\uFFFD"
        "b]\n");
  // Valid UTF-8 is untouched by the control filter.
  CHECK(convert("<p>\xC2\xA9 \xE6\x97\xA5\xF0\x9F\x98\x80</p>") == "\xC2\xA9 \xE6\x97\xA5\xF0\x9F\x98\x80\n");
}

// tests/fuzz/regressions/fuzz_html_to_text/numeric-ref-overflow
TEST_CASE("a numeric character reference that overflows gumbo's int still gives valid UTF-8") {
  // gumbo 0.10 wraps the value and used to write a stray byte (0x8E for this one) into the text.
  const std::string huge(100, '2');
  for (const std::string& ref : {huge, std::string("22222222222"), std::string("99999999999999")}) {
    const std::string text = convert("<p>a&#" + ref + ";b</p><img alt=\"&#" + ref + ";\">");
    CHECK_MESSAGE(text == "a\uFFFDb\n\n[画像: \uFFFD]\n", ref);
  }
}

TEST_CASE("bidi embedding, override and isolate controls are dropped; direction marks are kept") {
  // RLO would show "invoice<RLO>fdp.exe" as "invoiceexe.pdf": the reader must see the real order.
  CHECK(convert("<p>invoice&#x202e;fdp.exe</p>") == "invoicefdp.exe\n");
  CHECK(convert("<p>invoice\xE2\x80\xAE"
                "fdp.exe</p>") == "invoicefdp.exe\n");
  CHECK(
      convert("<p>a&#x202a;b&#x202b;c&#x202c;d&#x202d;e&#x202e;f&#x2066;g&#x2067;h&#x2068;i&#x2069;j</p>") ==
      "abcdefghij\n");
  CHECK(convert("<pre>a &#x202e; b</pre>") == "a  b\n");
  CHECK(convert("<p>a &#x202e; b &#x2069;</p>") == "a b\n");  // no double space, no trailing one
  CHECK(convert("<table><tr><td>x&#x202e;y</td><td>z</td></tr><tr><td>1</td><td>2</td></tr></table>")
            .find("\xE2\x80\xAE") == std::string::npos);
  CHECK(convert("<img alt=\"cat&#x202e;gpj.exe\">") == "[画像: catgpj.exe]\n");
  CHECK(convert("<a href=\"https://a.example/&#x202e;gpj.exe\">x</a>") ==
        "x <hxxps://a[.]example/gpj.exe>\n");
  CHECK(defang_url("https://a\xE2\x81\xA6.example/\xE2\x81\xA9") == "hxxps://a[.]example/");
  // LRM, RLM and ALM are kept: real right-to-left text needs them and they reorder nothing.
  CHECK(convert("<p>a&#x200e;b&#x200f;c&#x61c;d</p>") ==
        "a\xE2\x80\x8E"
        "b\xE2\x80\x8F"
        "c\xD8\x9C"
        "d\n");
}

// ----------------------------------------------------------------------------------------------
// Headings

TEST_CASE("h1 and h2 are underlined to the heading's display width") {
  CHECK(convert("<h1>お知らせ</h1><p>本文</p>") == "お知らせ\n========\n\n本文\n");
  CHECK(convert("<h2>Title</h2>text") == "Title\n-----\n\ntext\n");
  CHECK(convert("<h1>Mixed 日本</h1>") == "Mixed 日本\n==========\n");
}

TEST_CASE("h3-h6 get a marker: ■ in Japanese, Markdown hashes in English") {
  CHECK(convert("<h3>小見出し</h3><h4>more</h4>") == "■ 小見出し\n\n■ more\n");
  CHECK(convert("<h3>Sub</h3><h6>Deep</h6>", english()) == "### Sub\n\n###### Deep\n");
}

TEST_CASE("an empty heading produces nothing") { CHECK(convert("<p>a</p><h1> </h1><p>b</p>") == "a\n\nb\n"); }

// ----------------------------------------------------------------------------------------------
// Lists

TEST_CASE("unordered lists use ・ in Japanese and * in English") {
  CHECK(convert("<ul><li>one</li><li>two</li></ul>") == "・ one\n・ two\n");
  CHECK(convert("<ul><li>one<li>two</ul>", english()) == "* one\n* two\n");
}

TEST_CASE("ordered lists count from start and honour li value") {
  CHECK(convert("<ol><li>a<li>b</ol>") == "1. a\n2. b\n");
  CHECK(convert("<ol start=\"9\"><li>a<li>b</ol>") == "9. a\n10. b\n");
  CHECK(convert("<ol><li>a<li value=\"7\">b<li>c</ol>") == "1. a\n7. b\n8. c\n");
  CHECK(convert("<ol reversed><li>a<li>b<li>c</ol>") == "3. a\n2. b\n1. c\n");
}

TEST_CASE("nested lists indent two spaces per level") {
  const char* html =
      "<p>前文</p><ul><li>外側<ul><li>内側<ol><li>さらに内側</ol></ul><li>外側2</ul><p>後文</p>";
  CHECK(convert(html) ==
        "前文\n\n"
        "・ 外側\n"
        "  ・ 内側\n"
        "    1. さらに内側\n"
        "・ 外側2\n\n"
        "後文\n");
}

TEST_CASE("paragraphs inside a list item stay on the marker line and indent after") {
  CHECK(convert("<ol><li><p>first</p><p>more</p></li><li>second</li></ol>") ==
        "1. first\n\n  more\n\n2. second\n");
}

TEST_CASE("definition lists indent the description") {
  CHECK(convert("<dl><dt>用語</dt><dd>説明文</dd><dt>term</dt><dd>text</dd></dl>") ==
        "用語\n  説明文\nterm\n  text\n");
}

// ----------------------------------------------------------------------------------------------
// Tables

TEST_CASE("a Japanese table lines up by display width") {
  const char* html =
      "<table>"
      "<tr><th>氏名</th><th>所属</th><th>内線</th></tr>"
      "<tr><td>山田太郎</td><td>総務課</td><td>1234</td></tr>"
      "<tr><td>Bob</td><td>情報政策課</td><td>56</td></tr>"
      "</table>";
  CHECK(convert(html) ==
        "氏名     | 所属       | 内線\n"
        "---------+------------+-----\n"
        "山田太郎 | 総務課     | 1234\n"
        "Bob      | 情報政策課 | 56\n");
}

TEST_CASE("a table without header cells has no rule line") {
  CHECK(convert("<table><tr><td>a</td><td>bb</td></tr><tr><td>ccc</td><td>d</td></tr></table>") ==
        "a   | bb\nccc | d\n");
}

TEST_CASE("table cells with block content are joined into one line") {
  CHECK(
      convert(
          "<table><tr><td><p>a</p><p>b</p></td><td>c<br>d</td></tr><tr><td>e</td><td>f</td></tr></table>") ==
      "a b | c d\ne   | f\n");
}

TEST_CASE("colspan spans the columns it covers") {
  const char* html =
      "<table>"
      "<tr><th>区分</th><th>4月</th><th>5月</th></tr>"
      "<tr><td>予算</td><td colspan=\"2\">未定（調整中のため）</td></tr>"
      "<tr><td>実績</td><td>10</td><td>20</td></tr>"
      "</table>";
  CHECK(convert(html) ==
        "区分 | 4月 | 5月\n"
        "-----+-----+---------------\n"
        "予算 | 未定（調整中のため）\n"
        "実績 | 10  | 20\n");
}

TEST_CASE("rowspan keeps later cells in their columns") {
  const char* html =
      "<table>"
      "<tr><td rowspan=\"2\">A</td><td>b1</td><td>c1</td></tr>"
      "<tr><td>b2</td><td>c2</td></tr>"
      "</table>";
  CHECK(convert(html) == "A | b1 | c1\n  | b2 | c2\n");
}

TEST_CASE("empty spacer columns and rows are dropped") {
  const char* html =
      "<table><tr><td>a</td><td></td><td>b</td></tr><tr><td></td><td>&nbsp;</td><td></td></tr>"
      "<tr><td>c</td><td></td><td>d</td></tr></table>";
  CHECK(convert(html) == "a | b\nc | d\n");
}

TEST_CASE("a table is separated from the text around it") {
  CHECK(convert("before<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>after") ==
        "before\n\na | b\nc | d\n\nafter\n");
}

TEST_CASE("a caption and a title row are printed above the grid") {
  CHECK(convert("<table><caption>一覧</caption><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr>"
                "</table>") == "一覧\na | b\nc | d\n");
  CHECK(convert("<table><tr><td colspan=2>Message Hops</td></tr><tr><td>a</td><td>b</td></tr>"
                "<tr><td>c</td><td>d</td></tr></table>") == "Message Hops\na | b\nc | d\n");
}

TEST_CASE("single-column and single-row tables are layout: cells flow as lines, rows as paragraphs") {
  CHECK(convert("<table><tr><td>ロゴ</td></tr><tr><td>本文です</td></tr></table>") == "ロゴ\n\n本文です\n");
  CHECK(convert("<table><tr><td>left</td><td>right</td></tr></table>") == "left\nright\n");
  CHECK(convert("<table role=\"presentation\"><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr>"
                "</table>") == "a\nb\n\nc\nd\n");
}

TEST_CASE("nested tables are flattened: the outer one flows, the inner one may still be a grid") {
  const char* html =
      "<table><tr><td>"
      "<p>ご注文内容</p>"
      "<table><tr><th>品名</th><th>数量</th></tr><tr><td>りんご</td><td>3</td></tr></table>"
      "</td></tr><tr><td>フッター</td></tr></table>";
  CHECK(convert(html) ==
        "ご注文内容\n\n"
        "品名   | 数量\n"
        "-------+-----\n"
        "りんご | 3\n\n"
        "フッター\n");
}

TEST_CASE("a table too wide for a grid becomes header: value records") {
  const std::string long_text(100, 'x');
  const std::string html = "<table><tr><th>件名</th><th>内容</th></tr><tr><td>A</td><td>" + long_text +
                           "</td></tr><tr><td>B</td><td>short</td></tr></table>";
  CHECK(convert(html) == "件名: A\n内容: " + long_text + "\n\n件名: B\n内容: short\n");
}

TEST_CASE("a wide table with a header column becomes key: value lines") {
  const std::string long_text(110, 'y');
  const std::string html =
      "<table><tr><th>住所</th><td>" + long_text + "</td></tr><tr><th>電話</th><td>03</td></tr></table>";
  CHECK(convert(html) == "住所: " + long_text + "\n電話: 03\n");
}

TEST_CASE("a wide table without headers but with short cells prints one line per row") {
  html_options o;
  o.max_table_width = 20;
  const char* html =
      "<table><tr><td>1</td><td></td><td>hop-one.example</td></tr>"
      "<tr><td>2</td><td>from.example</td><td>hop-two.example</td></tr></table>";
  CHECK(convert(html, o) == "1 | - | hop-one.example\n2 | from.example | hop-two.example\n");
}

TEST_CASE("in one-line rows, a label ending in a colon is followed by its value") {
  const std::string long_text(110, 'e');
  const std::string html = "<table><tr><td>Reported error:</td><td>" + long_text +
                           "</td></tr><tr><td>件名：</td><td>テスト</td></tr></table>";
  CHECK(convert(html) == "Reported error: " + long_text + "\n件名：テスト\n");
}

TEST_CASE("a wide layout table with prose flows as paragraphs") {
  const std::string prose(200, 'z');
  const std::string html =
      "<table><tr><td>" + prose + "</td><td>side</td></tr><tr><td>a</td><td>b</td></tr></table>";
  CHECK(convert(html) == prose + "\nside\n\na\nb\n");
}

// ----------------------------------------------------------------------------------------------
// Quotes and preformatted text

TEST_CASE("blockquote prefixes every line, nested quotes stack") {
  const char* html =
      "<p>返信です。</p><blockquote><p>元の文</p><p>二段落目</p><blockquote>さらに前</blockquote></"
      "blockquote><p>以上</p>";
  CHECK(convert(html) ==
        "返信です。\n\n"
        "> 元の文\n"
        ">\n"
        "> 二段落目\n"
        ">\n"
        "> > さらに前\n\n"
        "以上\n");
}

TEST_CASE("pre keeps spaces and line breaks but not trailing blanks") {
  CHECK(convert("<p>code:</p><pre>  int x;   \n\n    return  x;\n</pre><p>end</p>") ==
        "code:\n\n  int x;\n\n    return  x;\n\nend\n");
}

TEST_CASE("pre inside a blockquote keeps the prefix") {
  CHECK(convert("<blockquote><pre>a\n  b</pre></blockquote>") == "> a\n>   b\n");
}

TEST_CASE("long runs of blank lines in pre are capped at two") {
  CHECK(convert("<pre>a\n\n\n\n\n\n   \n\nb</pre>") == "a\n\n\nb\n");
}

TEST_CASE("textarea content is kept verbatim") {
  CHECK(convert("<form><textarea>line 1\n  line 2</textarea></form>") == "line 1\n  line 2\n");
}

// ----------------------------------------------------------------------------------------------
// Dropped and hidden content

TEST_CASE("script, style, head, title, noscript, template and comments are dropped") {
  const char* html =
      "<html><head><title>件名</title><style>p{color:red}</style><script>alert(1)</script></head>"
      "<body><!-- secret --><script>var a = '<p>x</p>';</script><noscript>enable js</noscript>"
      "<template><p>tpl</p></template><p>visible</p></body></html>";
  const html_result r = html_to_text(html, {});
  CHECK(r.text == "visible\n");
  CHECK(r.scripts_removed == 2);
}

TEST_CASE("inline-hidden elements are dropped") {
  CHECK(convert("<p>a<span style=\"display:none\">hidden</span>b</p>") == "ab\n");
  CHECK(convert("<p>a<span style=\"DISPLAY : None !important; color:red\">hidden</span>b</p>") == "ab\n");
  CHECK(convert("<div style=\"visibility: hidden\">x</div><div hidden>y</div><div>z</div>") == "z\n");
  CHECK(convert("<div style=\"mso-hide:all\">outlook only</div>shown") == "shown\n");
  CHECK(convert("<div style=\"display:block\">kept</div>") == "kept\n");
}

TEST_CASE("embedded content is replaced by a note and counted") {
  const html_result r = html_to_text(
      "<p>before</p><iframe src=\"https://x.example/\">fallback</iframe><object "
      "data=\"a.swf\"><p>alt</p></object>"
      "<embed src=\"b\"><p>after</p>",
      {});
  CHECK(r.text ==
        "before\n\n[埋め込みコンテンツ削除]\n[埋め込みコンテンツ削除]\n[埋め込みコンテンツ削除]\n\nafter\n");
  CHECK(r.embeds_removed == 3);
  CHECK(convert("<applet code=x></applet>", english()) == "[embedded content removed]\n");
}

TEST_CASE("svg and math are dropped with their text") {
  CHECK(convert("<p>a<svg><text>svg text</text><foreignObject><p>fo</p></foreignObject></svg>b</p>") ==
        "ab\n");
  CHECK(convert("<p>x<math><mi>y</mi></math>z</p>") == "xz\n");
}

TEST_CASE("form controls: hidden inputs dropped, visible state shown, forms counted") {
  const html_result r = html_to_text(
      "<form action=\"https://evil.example/\"><input type=hidden name=t value=\"secret-token\">"
      "ID <input type=text name=id> PW <input type=password value=\"hunter2\">"
      "<select><option value=\"v1\">一</option><option value=\"v2\" selected>二</option></select>"
      "<input type=checkbox checked> <input type=submit value=\"ログイン\"></form>",
      {});
  CHECK(r.text == "ID [___] PW [***][二][x] [ログイン]\n");
  CHECK(r.forms == 1);
  CHECK(r.text.find("secret") == std::string::npos);
  CHECK(r.text.find("v2") == std::string::npos);
  CHECK(r.text.find("hunter2") == std::string::npos);
}

// ----------------------------------------------------------------------------------------------
// Images

TEST_CASE("images show their alt text") {
  CHECK(convert("<p>ロゴ<img src=\"cid:1\" alt=\"市役所  ロゴ\">です</p>") ==
        "ロゴ[画像: 市役所 ロゴ]です\n");
  CHECK(convert("<img src=\"x.png\" alt=\"\">") == "[画像]\n");
  CHECK(convert("<img src=\"x.png\">") == "[画像]\n");
  CHECK(convert("<img src=\"x.png\" alt=\"Logo\"> <img src=\"y.png\">", english()) ==
        "[image: Logo] [image]\n");
}

TEST_CASE("tracking pixels are dropped silently but counted") {
  const html_result r = html_to_text(
      "<p>text<img src=\"https://t.example/o.gif\" width=\"1\" height=\"1\">"
      "<img src=\"https://t.example/p.gif\" width=0 height=0>"
      "<img src=\"https://t.example/q.gif\" style=\"width:1px;height:1px\">"
      "<img src=\"big.png\" width=\"600\" height=\"200\" alt=\"banner\"></p>",
      {});
  CHECK(r.text == "text[画像: banner]\n");
  CHECK(r.images == 4);
}

// ----------------------------------------------------------------------------------------------
// Links

TEST_CASE("http, https and ftp links are defanged by default") {
  const html_result r = html_to_text(
      "<p><a href=\"https://www.example.com/path?q=1\">詳細はこちら</a> / "
      "<a href=\"http://example.org\">site</a> / <a href=\"ftp://files.example.net/a.txt\">file</a></p>",
      {});
  CHECK(r.text ==
        "詳細はこちら <hxxps://www[.]example[.]com/path?q=1> / site <hxxp://example[.]org> / "
        "file <fxp://files[.]example[.]net/a.txt>\n");
  CHECK(r.links == 3);
  CHECK(r.links_defanged == 3);
  CHECK(r.links_removed == 0);
}

TEST_CASE("http links kept or removed by policy") {
  html_options keep;
  keep.http_links = link_action::keep;
  CHECK(convert("<a href=\"https://example.com/x\">x</a>", keep) == "x <https://example.com/x>\n");
  html_options remove;
  remove.http_links = link_action::remove;
  const html_result r = html_to_text("<a href=\"https://example.com/x\">リンク</a>です", remove);
  CHECK(r.text == "リンクです\n");
  CHECK(r.links_removed == 1);
}

TEST_CASE("other URL schemes follow the http policy; defanged, their colon is broken") {
  CHECK(convert("<a href=\"ms-msdt:/id PCWDiagnostic\">fix</a>") == "fix <ms-msdt[:]/id%20PCWDiagnostic>\n");
  html_options keep;
  keep.http_links = link_action::keep;
  CHECK(convert("<a href=\"sms:+8190\">sms</a>", keep) == "sms <sms:+8190>\n");
}

TEST_CASE("mailto links: kept by default, defang and remove on request") {
  CHECK(convert("<a href=\"mailto:info@city.example.lg.jp\">問い合わせ</a>") ==
        "問い合わせ <mailto:info@city.example.lg.jp>\n");
  CHECK(convert("<a href=\"mailto:info@city.example.jp\">info@city.example.jp</a>") ==
        "info@city.example.jp\n");
  html_options defang;
  defang.mailto_links = link_action::defang;
  CHECK(convert("<a href=\"mailto:a.b@example.com?subject=x.y\">mail</a>", defang) ==
        "mail <mailto:a.b@example[.]com?subject=x.y>\n");
  html_options remove;
  remove.mailto_links = link_action::remove;
  CHECK(convert("<a href=\"mailto:a@example.com\">mail</a>", remove) == "mail\n");
}

TEST_CASE("tel links: kept by default, removed on request") {
  CHECK(convert("<a href=\"tel:+81-3-1234-5678\">電話</a>") == "電話 <tel:+81-3-1234-5678>\n");
  html_options remove;
  remove.tel_links = link_action::remove;
  CHECK(convert("<a href=\"tel:0312345678\">電話</a>", remove) == "電話\n");
}

TEST_CASE("javascript, data, vbscript and file links lose their URL whatever the policy") {
  html_options keep;
  keep.http_links = link_action::keep;
  keep.mailto_links = link_action::keep;
  for (const char* href : {"javascript:alert(1)", "JavaScript:alert(1)", " java\nscript:alert(1)",
                           "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox", "file:///C:/x.exe"}) {
    const std::string html = std::string("<a href=\"") + href + "\">click</a>";
    const html_result r = html_to_text(html, keep);
    CHECK(r.text == "click\n");
    CHECK(r.links_removed == 1);
  }
}

TEST_CASE("relative links keep their text only, and <base> changes nothing") {
  CHECK(convert("<a href=\"/account/login\">ログイン</a>") == "ログイン\n");
  CHECK(convert("<a href=\"#top\">top</a>") == "top\n");
  CHECK(convert("<html><head><base href=\"https://evil.example/\"></head><body>"
                "<a href=\"login.html\">login</a> <a href=\"https://ok.example/\">ok</a></body></html>") ==
        "login ok <hxxps://ok[.]example/>\n");
}

TEST_CASE("a link whose text is its URL is printed once, defanged in place") {
  CHECK(convert("<a href=\"https://www.example.com/\">https://www.example.com/</a>") ==
        "hxxps://www[.]example[.]com/\n");
  CHECK(convert("<a href=\"https://www.example.com/\">www.example.com</a>") ==
        "hxxps://www[.]example[.]com/\n");
  CHECK(convert("<a href=\"https://example.com/\">www.example.com</a>") == "hxxps://example[.]com/\n");
  CHECK(convert("<a href=\"https://example.com/a\">http://example.com/a/</a>") ==
        "hxxps://example[.]com/a\n");
  CHECK(convert("<pre>see: <a href=\"https://a.example/\">https://a.example/</a></pre>") ==
        "see: hxxps://a[.]example/\n");
  CHECK(convert("<a href=\"HTTPS://Example.com\">https://example.com/</a>") == "hxxps://Example[.]com\n");
  html_options keep;
  keep.http_links = link_action::keep;
  CHECK(convert("<p>see <a href=\"https://example.com/a\">https://example.com/a</a>.</p>", keep) ==
        "see https://example.com/a.\n");
}

TEST_CASE("a link without text shows just the URL; image links show the image") {
  CHECK(convert("<a href=\"https://example.com/\"></a>") == "<hxxps://example[.]com/>\n");
  CHECK(convert("<a href=\"https://example.com/\"><img src=\"b.png\" alt=\"Buy\"></a>") ==
        "[画像: Buy] <hxxps://example[.]com/>\n");
}

TEST_CASE("URLs are made safe to print") {
  CHECK(convert("<a href=\"https://example.com/a b<c>\">x</a>") ==
        "x <hxxps://example[.]com/a%20b%3Cc%3E>\n");
  CHECK(convert("<a href=\"https://user.name@evil.example/\">x</a>") ==
        "x <hxxps://user[.]name@evil[.]example/>\n");
}

TEST_CASE("link text naming another site gets a phishing cue") {
  const html_result r = html_to_text("<a href=\"https://evil.example.net/login\">www.mybank.co.jp</a>", {});
  CHECK(r.text ==
        "www.mybank.co.jp <hxxps://evil[.]example[.]net/login> [注意: 表示と異なるリンク先 "
        "evil[.]example[.]net]\n");
  CHECK(r.phishing_cues == 1);

  html_options en = english();
  en.http_links = link_action::keep;
  CHECK(convert("<a href=\"http://192.0.2.7/x\">https://secure.bank.example/</a>", en) ==
        "https://secure.bank.example/ <http://192.0.2.7/x> [warning: link points to a different site "
        "192.0.2.7]\n");
}

TEST_CASE("the cue looks at the real host, not userinfo or backslashes") {
  CHECK(convert("<a href=\"https://bank.example.com@evil.example/\">bank.example.com</a>") ==
        "bank.example.com <hxxps://bank[.]example[.]com@evil[.]example/> [注意: 表示と異なるリンク先 "
        "evil[.]example]\n");
  CHECK(html_to_text("<a href=\"https:\\\\evil.example\\x\">www.bank.example.com</a>", {}).phishing_cues ==
        1);
}

TEST_CASE("no cue for the same site, subdomains, www, or text that is not a host") {
  for (const char* html : {
           "<a href=\"https://example.com/x\">www.example.com</a>",
           "<a href=\"https://www.example.com/x\">EXAMPLE.com</a>",
           "<a href=\"https://login.example.com/x\">example.com</a>",
           "<a href=\"https://example.com/x\">https://shop.example.com/sale</a>",
           "<a href=\"https://city.example.lg.jp/\">www.city.example.lg.jp</a>",
           "<a href=\"https://cdn.example.net/report.pdf\">report.pdf</a>",
           "<a href=\"https://evil.example/\">こちら</a>",
           "<a href=\"https://evil.example/\">click here now</a>",
           "<a href=\"mailto:a@evil.example\">support@bank.example.com</a>",
       }) {
    INFO(html);
    CHECK(html_to_text(html, {}).phishing_cues == 0);
  }
}

TEST_CASE("a parent domain that is only a public suffix is not the same site") {
  CHECK(html_to_text("<a href=\"https://evil.co.jp/\">co.jp</a>", {}).phishing_cues == 1);
  CHECK(html_to_text("<a href=\"https://bank.co.jp.evil.example/\">bank.co.jp</a>", {}).phishing_cues == 1);
}

TEST_CASE("cues can be turned off; with http kept, the cue host is not defanged") {
  html_options off;
  off.mark_phishing_links = false;
  const html_result r = html_to_text("<a href=\"https://evil.example/\">www.bank.example</a>", off);
  CHECK(r.phishing_cues == 0);
  CHECK(r.text == "www.bank.example <hxxps://evil[.]example/>\n");
  html_options keep;
  keep.http_links = link_action::keep;
  CHECK(convert("<a href=\"https://evil.example/\">www.bank.example</a>", keep) ==
        "www.bank.example <https://evil.example/> [注意: 表示と異なるリンク先 evil.example]\n");
}

TEST_CASE("a removed link still carries its cue") {
  html_options remove;
  remove.http_links = link_action::remove;
  CHECK(convert("<a href=\"https://evil.example/\">www.bank.example</a>", remove) ==
        "www.bank.example [注意: 表示と異なるリンク先 evil.example]\n");
}

TEST_CASE("links inside lists, tables and quotes") {
  CHECK(convert("<ul><li><a href=\"https://a.example/\">A</a></li></ul>") == "・ A <hxxps://a[.]example/>\n");
  CHECK(convert("<blockquote><a href=\"https://a.example/\">https://a.example/</a></blockquote>") ==
        "> hxxps://a[.]example/\n");
  CHECK(convert(
            "<table><tr><th>名前</th><th>URL</th></tr><tr><td>A</td><td><a href=\"https://a.example/\">A</a>"
            "</td></tr></table>") ==
        "名前 | URL\n-----+-------------------------\nA    | A <hxxps://a[.]example/>\n");
}

// ----------------------------------------------------------------------------------------------
// Small inline conventions

TEST_CASE("q gets quotation marks and ruby text parentheses") {
  CHECK(convert("<p>彼は<q>はい</q>と言った</p>") == "彼は「はい」と言った\n");
  CHECK(convert("<p>He said <q>yes</q></p>", english()) == "He said \"yes\"\n");
  CHECK(convert("<ruby>漢字<rp>(</rp><rt>かんじ</rt><rp>)</rp></ruby>") == "漢字(かんじ)\n");
}

// ----------------------------------------------------------------------------------------------
// Bounds

TEST_CASE("100000 nested spans: no crash, formatting is flattened past max_depth") {
  std::string html;
  for (int i = 0; i < 100000; ++i) html += "<span>";
  html += "deep";
  const html_result r = html_to_text(html, {});
  CHECK(r.text == "deep\n");
  CHECK_FALSE(r.timed_out);
}

TEST_CASE("deep block nesting past max_depth keeps words apart and drops scripts") {
  std::string html;
  for (int i = 0; i < 3000; ++i) html += "<div>";
  html += "a<div>b</div><script>x()</script><b>c</b>";
  const html_result r = html_to_text(html, {});
  CHECK(r.text == "a b c\n");
  CHECK(r.scripts_removed == 1);
}

TEST_CASE("deeply nested quotes and lists stay bounded") {
  std::string html;
  for (int i = 0; i < 2000; ++i) html += "<blockquote>";
  html += "q";
  std::string text = convert(html);
  CHECK(text.size() < 200);
  CHECK(text.find('q') != std::string::npos);
  html.clear();
  for (int i = 0; i < 2000; ++i) html += "<ul><li>";
  text = convert(html + "x");
  CHECK(text.find('x') != std::string::npos);
  check_invariants(text);
}

TEST_CASE("100000 nested divs: the parse is abandoned at the deadline, not after half a minute") {
  // gumbo needs ~30 s for this input (each <div> scans the open-element stack); the guard stops it.
  std::string html;
  for (int i = 0; i < 100000; ++i) html += "<div>";
  html += "x";
  html_options o;
  const auto start = std::chrono::steady_clock::now();
  o.deadline = start + std::chrono::milliseconds(500);
  const html_result r = html_to_text(html, o);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(r.timed_out);
  CHECK(r.parse_aborted);
  CHECK(r.text.empty());
  CHECK(elapsed < std::chrono::seconds(5));
}

TEST_CASE("a deadline in the past stops at once") {
  html_options o;
  o.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  std::string html;
  for (int i = 0; i < 20000; ++i) html += "<p>paragraph " + std::to_string(i) + "</p>";
  const html_result r = html_to_text(html, o);
  CHECK(r.timed_out);
  check_invariants(r.text);
}

TEST_CASE("a big realistic body converts well within the deadline") {
  const std::string block =
      "<table><tr><th>項目</th><th>内容</th></tr><tr><td>日時</td><td>令和6年4月1日</td></tr></table>"
      "<p>市民の皆様へ。<a href=\"https://www.city.example.lg.jp/info?id=1\">お知らせ</a>を"
      "ご確認ください。&nbsp;Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>"
      "<ul><li>項目一</li><li>項目二 <b>重要</b></li></ul><div style=\"display:none\">hidden</div>"
      "<blockquote>引用文です。<img src=\"x.png\" alt=\"図\"></blockquote>\n";
  std::string html = "<html><body>";
  while (html.size() < 8u * 1024 * 1024) html += block;
  html += "</body></html>";
  html_options o;
  const auto start = std::chrono::steady_clock::now();
  o.deadline = start + std::chrono::seconds(30);
  const html_result r = html_to_text(html, o);
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.truncated);
  CHECK(r.links > 10000);
  MESSAGE("8 MiB of HTML in " << elapsed.count() << " s");
  CHECK(elapsed.count() < 10.0);  // ~0.5 s on one core of the CI machine; generous for sanitizer builds
}

TEST_CASE("output is capped at max_output and says so") {
  html_options o;
  o.max_output = 1000;
  std::string html;
  for (int i = 0; i < 1000; ++i) html += "<p>line number " + std::to_string(i) + "</p>";
  const html_result r = html_to_text(html, o);
  CHECK(r.truncated);
  CHECK(r.text.size() <= 1000);
  CHECK(r.text.ends_with("[…以下省略: 長すぎるため]\n"));
  CHECK(r.text.starts_with("line number 0\n\nline number 1\n"));
  check_invariants(r.text);
}

TEST_CASE("a cap hit inside a table still shows the rows collected so far") {
  html_options o;
  o.max_output = 400;
  std::string html = "<table>";
  for (int i = 0; i < 500; ++i) html += "<tr><td>r" + std::to_string(i) + "</td><td>v</td></tr>";
  html += "</table>";
  const html_result r = html_to_text(html, o);
  CHECK(r.truncated);
  CHECK(r.text.size() <= 400);
  CHECK(r.text.starts_with("r0 "));
  check_invariants(r.text);
}

TEST_CASE("tiny output caps never overflow") {
  html_options o;
  o.max_output = 5;
  const html_result r = html_to_text("<p>hello world, this is long</p>", o);
  CHECK(r.truncated);
  CHECK(r.text.size() <= 5);
}

// ----------------------------------------------------------------------------------------------
// Invariants over hostile input

TEST_CASE("invariants hold for random tag soup") {
  static constexpr std::string_view pieces[] = {"<p>",
                                                "</p>",
                                                "<div>",
                                                "</div>",
                                                "<br>",
                                                "<table>",
                                                "<tr>",
                                                "<td>",
                                                "<th colspan=3>",
                                                "</td>",
                                                "</table>",
                                                "<ul>",
                                                "<ol start=-5>",
                                                "<li>",
                                                "</ul>",
                                                "<blockquote>",
                                                "</blockquote>",
                                                "<pre>",
                                                "</pre>",
                                                "<h1>",
                                                "</h1>",
                                                "<h3>",
                                                "<a href=\"https://x.example/a\">",
                                                "<a href=\"javascript:x\">",
                                                "<a href=\"www.y.example\">",
                                                "</a>",
                                                "<img alt=\"i\">",
                                                "<img width=1>",
                                                "<script>",
                                                "</script>",
                                                "<style>",
                                                "<b>",
                                                "</b>",
                                                "<span hidden>",
                                                "</span>",
                                                "<svg>",
                                                "</svg>",
                                                "<iframe>",
                                                "<select><option>o",
                                                "<input type=hidden value=z>",
                                                "<textarea>",
                                                "</textarea>",
                                                "<dl><dt>t<dd>",
                                                "<q>",
                                                "<rt>",
                                                "<hr>",
                                                "&nbsp;",
                                                "&lt;",
                                                "日本語",
                                                "\n",
                                                "  ",
                                                "\t",
                                                "text ",
                                                "www.bank.example",
                                                "\xC2\x85",
                                                "\x01",
                                                "\xFF",
                                                "\xE3\x81",
                                                "<!--",
                                                "-->",
                                                "<caption>",
                                                "<td rowspan=9>",
                                                "<thead>",
                                                "<xmp>",
                                                "<plaintext>",
                                                "</body>",
                                                "<html>",
                                                "<frameset>",
                                                "<math>",
                                                "<template>",
                                                "\xE3\x80\x80"};
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (int round = 0; round < 1500; ++round) {
    std::string html;
    const auto count = next() % 120;
    for (std::uint64_t i = 0; i < count; ++i) html += pieces[next() % std::size(pieces)];
    html_options o = (round % 2) ? english() : html_options{};
    o.max_output = (round % 7 == 0) ? 64 : o.max_output;
    const html_result r = html_to_text(html, o);
    INFO(html);
    check_invariants(r.text);
    if (o.max_output == 64) CHECK(r.text.size() <= 64);
  }
}

// ----------------------------------------------------------------------------------------------
// Charset sniffing

TEST_CASE("sniff_html_charset finds meta charset and http-equiv") {
  CHECK(sniff_html_charset("<html><head><meta charset=\"Shift_JIS\"></head></html>") == "shift_jis");
  CHECK(sniff_html_charset("<META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=ISO-2022-JP\">") ==
        "iso-2022-jp");
  CHECK(sniff_html_charset("<meta http-equiv=content-type content='text/html;charset = \"EUC-JP\"'>") ==
        "euc-jp");
  CHECK(sniff_html_charset("<meta content=\"text/html; charset=windows-31j\" http-equiv=\"Content-Type\">") ==
        "windows-31j");
}

TEST_CASE("sniff_html_charset reads through Shift_JIS bytes before the meta") {
  // <title> in Shift_JIS ("テスト"), then the meta: ASCII markup survives a UTF-8 parse.
  CHECK(sniff_html_charset("<html><head><title>\x83\x65\x83\x58\x83\x67</title>"
                           "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">") ==
        "shift_jis");
}

TEST_CASE("sniff_html_charset: BOM, XML declaration, nothing") {
  CHECK(sniff_html_charset("\xEF\xBB\xBF<p>x</p>") == "utf-8");
  CHECK(sniff_html_charset("<?xml version=\"1.0\" encoding=\"EUC-JP\"?><html><body>x</body></html>") ==
        "euc-jp");
  CHECK(sniff_html_charset("<?xml version=\"1.0\" encoding=\"EUC-JP\"?><meta charset=utf-8>") == "utf-8");
  CHECK_FALSE(sniff_html_charset("<p>no meta</p>").has_value());
  CHECK_FALSE(sniff_html_charset("").has_value());
  CHECK_FALSE(sniff_html_charset("<meta http-equiv=\"refresh\" content=\"0; charset=x\">").has_value());
  CHECK_FALSE(sniff_html_charset("<meta charset=\"utf-8\\\"><script>\">").has_value());  // not a label
}

TEST_CASE("sniff_html_charset only looks at the first 4 KB") {
  const std::string late =
      "<html><head>" + std::string(5000, ' ') + "<meta charset=\"euc-jp\"></head></html>";
  CHECK_FALSE(sniff_html_charset(late).has_value());
  const std::string early = "<html><head><meta charset=\"euc-jp\"></head><body>" + std::string(10000, 'x');
  CHECK(sniff_html_charset(early) == "euc-jp");
}

// ----------------------------------------------------------------------------------------------
// defang_url

TEST_CASE("defang_url renames web schemes and brackets dots in the host") {
  CHECK(defang_url("https://example.com/x") == "hxxps://example[.]com/x");
  CHECK(defang_url("http://www.city.example.lg.jp/a.b/c.html?x=1.2") ==
        "hxxp://www[.]city[.]example[.]lg[.]jp/a.b/c.html?x=1.2");
  CHECK(defang_url("ftp://files.example.org/pub") == "fxp://files[.]example[.]org/pub");
  CHECK(defang_url("HTTPS://Example.COM") == "hxxps://Example[.]COM");
  CHECK(defang_url("http://192.0.2.1:8080/") == "hxxp://192[.]0[.]2[.]1:8080/");
}

TEST_CASE("defang_url covers the ways a host can hide") {
  CHECK(defang_url("https://user.name:pw@evil.example/") == "hxxps://user[.]name:pw@evil[.]example/");
  CHECK(defang_url("https:\\\\evil.example\\path") == "hxxps:\\\\evil[.]example\\path");
  CHECK(defang_url("https:evil.example/x") == "hxxps:evil[.]example/x");
  CHECK(defang_url("http://evil%2eexample/") == "hxxp://evil[.]example/");
  CHECK(defang_url(" https://a.example/\n") == "hxxps://a[.]example/");
  CHECK(defang_url("https://a.example/<x>") == "hxxps://a[.]example/%3Cx%3E");
}

TEST_CASE("defang_url for mailto and other schemes") {
  CHECK(defang_url("mailto:info@city.example.jp") == "mailto:info@city[.]example[.]jp");
  CHECK(defang_url("mailto:a.b@example.com?subject=a.b") == "mailto:a.b@example[.]com?subject=a.b");
  CHECK(defang_url("ms-msdt:/id") == "ms-msdt[:]/id");
  CHECK(defang_url("wss://chat.example/") == "wss[:]//chat[.]example/");
  CHECK(defang_url("relative/path.html") == "relative/path.html");
}
