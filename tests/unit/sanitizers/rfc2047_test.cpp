// Tests for sanitizers/rfc2047: our own word-by-word decoder (GMime 3.2.13 bug #133), the
// normalisation that makes structured headers safe to hand to GMime, and header encoding.
#include "sanitizers/rfc2047.hpp"

#include <doctest/doctest.h>
#include <gmime/gmime.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "sanitizers/charset.hpp"

using namespace mukai::sanitize;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace {

void init_gmime_once() {
  static const bool done = [] {
    g_mime_init();
    return true;
  }();
  (void)done;
}

std::string read_corpus(const std::string& name) {
  const std::string path = std::string(MUKAI_SHARED_DIR) + "/corpus/" + name;
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "missing corpus file " << path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// The raw value of the first Subject header (folded lines included), as a parser hands it over.
std::string raw_subject(const std::string& message) {
  std::size_t pos = 0;
  while (pos < message.size()) {
    std::size_t eol = message.find('\n', pos);
    if (eol == std::string::npos) eol = message.size();
    std::string_view line(message.data() + pos, eol - pos);
    if (line.empty() || line == "\r") break;  // end of header
    if (line.size() >= 8 && (line.substr(0, 8) == "Subject:" || line.substr(0, 8) == "subject:")) {
      std::size_t end = eol;
      while (end + 1 < message.size() && (message[end + 1] == ' ' || message[end + 1] == '\t')) {
        end = message.find('\n', end + 1);
        if (end == std::string::npos) end = message.size();
      }
      std::string value = message.substr(pos + 8, end - pos - 8);
      if (!value.empty() && value.back() == '\r') value.pop_back();
      return value;
    }
    pos = eol + 1;
  }
  return {};
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (true) {
    const std::size_t e = s.find("\r\n", pos);
    lines.push_back(s.substr(pos, e == std::string::npos ? std::string::npos : e - pos));
    if (e == std::string::npos) break;
    pos = e + 2;
  }
  return lines;
}

std::string parse_first_name(const std::string& value) {
  init_gmime_once();
  InternetAddressList* list = internet_address_list_parse(nullptr, value.c_str());
  REQUIRE(list != nullptr);
  REQUIRE(internet_address_list_length(list) >= 1);
  InternetAddress* a = internet_address_list_get_address(list, 0);
  const char* name = internet_address_get_name(a);
  std::string result = name != nullptr ? name : "";
  g_object_unref(list);
  return result;
}

// normalize_encoded_words' output contract: no control but TAB, CR and LF, and every "=?" starts
// one of the words it writes itself.
bool only_own_words(const std::string& n) {
  for (std::size_t i = 0; i < n.size(); ++i) {
    const auto b = static_cast<unsigned char>(n[i]);
    if ((b < 0x20 && b != '\t' && b != '\r' && b != '\n') || b == 0x7F) return false;
    if (b == 0xC2 && i + 1 < n.size() && static_cast<unsigned char>(n[i + 1]) <= 0x9F) return false;  // C1
  }
  for (std::size_t p = n.find("=?"); p != std::string::npos; p = n.find("=?", p + 1)) {
    const std::string_view rest = std::string_view(n).substr(p);
    if (!rest.starts_with("=?UTF-8?B?") && !rest.starts_with("=?UTF-8?Q?")) return false;
    p = n.find("?=", p + 10);  // the word's end: base64 and our Q text hold no '?'
    if (p == std::string::npos) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("GMime bug #133: padded base64 words followed by more words") {
  CHECK(decode_header_text("=?UTF-8?B?YQ==?= =?UTF-8?B?Yg==?=") == "ab");
  CHECK(decode_header_text("=?UTF-8?B?YQ==?=\r\n =?UTF-8?B?Yg==?=\r\n\t=?UTF-8?B?Yw==?=") == "abc");
}

TEST_CASE("Japanese subject split over ISO-2022-JP words") {
  SUBCASE("each word padded and ending in ASCII") {
    CHECK(
        decode_header_text("=?ISO-2022-JP?B?GyRCJUYlORsoQg==?=\r\n =?ISO-2022-JP?B?GyRCJUglYSE8JWsbKEI=?=") ==
        "テストメール");
  }
  SUBCASE("shift state carried across words (bytes are joined before conversion)") {
    CHECK(decode_header_text("=?iso-2022-jp?B?GyRCJUY=?= =?iso-2022-jp?B?JTklSBsoQg==?=") == "テスト");
  }
  SUBCASE("the corpus' two-word subject") {
    CHECK(decode_header_text(" =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\n =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=") ==
          "テストテスト");
  }
  SUBCASE("a word broken by a fold inside its base64 (milter-manager folded-mime-incomplete)") {
    CHECK(decode_header_text(" =?ISO-2022-JP?B?GyRCJUYlOSVI\r\n JWEhPCVrGyhC?=") == "テストメール");
  }
}

TEST_CASE("a UTF-8 character split across two words") {
  CHECK(decode_header_text("=?UTF-8?B?44M=?= =?UTF-8?B?hg==?=") == "テ");
  CHECK(decode_header_text("=?utf-8?B?44M=?= =?UTF8?B?hg==?=") == "テ");  // same charset, other spelling
  CHECK(decode_header_text("=?UTF-8?Q?=E3=83?= =?UTF-8?Q?=86?=") == "テ");
}

TEST_CASE("Q encoding") {
  CHECK(decode_header_text("=?ISO-8859-1?Q?Caf=E9_cr=E8me?=") == "Café crème");
  CHECK(decode_header_text("=?UTF-8?q?a_b=5Fc=3F?=") == "a b_c?");
  CHECK(decode_header_text("=?UTF-8?Q?=ZZ=4?=") == "=ZZ=4");              // bad escapes stay literal
  CHECK(decode_header_text("=?UTF-8?Q?caf\xc3\xa9?=") == "café");         // raw 8-bit inside a Q word
  CHECK(decode_header_text("=?ISO-2022-JP?Q?\x1b$B%F\x1b(B?=") == "テ");  // raw JIS inside a Q word
}

TEST_CASE("mixed charsets and plain text") {
  CHECK(decode_header_text("=?ISO-8859-1?Q?Caf=E9?= =?UTF-8?B?44OG44K544OI?= plain") == "Caféテスト plain");
  CHECK(decode_header_text("Re: =?shift_jis?B?g2WDWINn?= and =?euc-jp?B?pcaluaXI?=") ==
        "Re: テスト and テスト");
  CHECK(decode_header_text("x =?UTF-8?B?44OG?= y") == "x テ y");
  CHECK(decode_header_text("Re:=?UTF-8?B?44OG?=") == "Re:テ");  // glued to text, as senders do
  CHECK(decode_header_text("=?UTF-8*ja?B?44OG?=") == "テ");     // RFC 2231 language suffix
  CHECK(decode_header_text("=?UTF-8?B?"
                           "?=") == "");
}

TEST_CASE("raw 8-bit bytes in headers (milter-manager corpus)") {
  struct sample {
    const char* file;
    const char* expected;
  };
  for (const sample s :
       {sample{"milter-test-mails__raw-cp932.eml", "①②③"},
        sample{"milter-test-mails__raw-euc-jp.eml", "テスト"},
        sample{"milter-test-mails__raw-utf-8.eml", "テスト"},
        sample{"milter-test-mails__raw-iso-2022-jp.eml", "テスト"},
        sample{"milter-test-mails__folded-raw-cp932.eml", "①②③ ④⑤⑥"},
        sample{"milter-test-mails__folded-raw-euc-jp.eml", "テスト テスト"},
        sample{"milter-test-mails__folded-raw-utf-8.eml", "テスト テスト"},
        sample{"milter-test-mails__folded-raw-iso-2022-jp.eml", "テスト テスト"},
        sample{"milter-test-mails__include-null.eml", "test"}, sample{"milter-test-mails__only-null.eml", ""},
        sample{"milter-test-mails__folded-base64-iso-2022-jp.eml", "テストテスト"},
        sample{"mikel-mail__invalid_subject_characters.eml", nullptr}}) {
    CAPTURE(s.file);
    const std::string raw = raw_subject(read_corpus(s.file));
    REQUIRE_FALSE(raw.empty());
    // The messages say charset=ISO-2022-JP in Content-Type: the usual (useless) hint.
    const std::string decoded = decode_header_text(raw, "ISO-2022-JP");
    CHECK(is_valid_utf8(decoded));
    if (s.expected != nullptr) CHECK(decoded == s.expected);
  }
  SUBCASE("raw bytes without any hint") {
    CHECK(decode_header_text("\x83\x65\x83\x58\x83\x67 \x82\xa0") == "テスト あ");
    CHECK(decode_header_text("Re: \xa5\xc6\xa5\xb9\xa5\xc8") == "Re: テスト");
    CHECK(decode_header_text("caf\xc3\xa9") == "café");
  }
  SUBCASE("raw bytes next to encoded words") {
    CHECK(decode_header_text("\x83\x65 =?UTF-8?B?44K5?=") == "テ ス");
  }
}

TEST_CASE("control characters are removed, folding undone, ends trimmed") {
  CHECK(decode_header_text(" te\0st "sv) == "test");
  CHECK(decode_header_text("a\tb") == "a\tb");
  CHECK(decode_header_text("a\x1b[31mb\x7f") == "a[31mb");
  CHECK(decode_header_text("=?UTF-8?Q?a=00b=0D=0Ac=C2=85d?=") == "abcd");
  CHECK(decode_header_text("line one\r\n line two\n\tthree") == "line one line two\tthree");
  CHECK(decode_header_text("") == "");
}

TEST_CASE("malformed words never crash and stay literal") {
  CHECK(decode_header_text("=?UTF-8?B?44OG") == "=?UTF-8?B?44OG");               // missing ?=
  CHECK(decode_header_text("=?UTF-8?B?####?=") == "=?UTF-8?B?####?=");           // bad base64
  CHECK(decode_header_text("=?UTF-8?X?abc?=") == "=?UTF-8?X?abc?=");             // bad encoding
  CHECK(decode_header_text("=??B?abc?=") == "=??B?abc?=");                       // no charset
  CHECK(decode_header_text("=?UTF 8?B?YQ==?=") == "=?UTF 8?B?YQ==?=");           // space in charset
  CHECK(decode_header_text("=?x-no-such?Q?abc?=") == "abc");                     // unknown charset
  CHECK(decode_header_text("=?x-no-such?B?44OG?=") == "テ");                     // ... detected
  CHECK(decode_header_text("=?UTF-8?B?YQ==?= =?UTF-8?B?Y") == "a =?UTF-8?B?Y");  // half a word
  CHECK(decode_header_text("=?=?=?UTF-8?B?YQ==?=?=") == "=?=?a?=");
  CHECK(decode_header_text("=?UTF-8?B?44OG/w==?=") == "テ\xEF\xBF\xBD");  // invalid UTF-8 inside
  CHECK(decode_header_text("=?UTF-8?Q?caf=E9?=") == "café");              // Latin-1 labelled UTF-8
  CHECK(decode_header_text("=?UTF-8?B?YQ?=") == "a");                     // missing padding
  CHECK(decode_header_text("=?UTF-8?B?YQ==Yg==?=") == "ab");              // concatenated chunks

  std::uint64_t x = 88172645463325252ULL;
  const auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  static constexpr std::string_view alphabet = "=?BbQq_ \t\r\nUTF-8isoAZaz09+/\x1b$()\x80\xa5\xe3\xff\x00"sv;
  for (int round = 0; round < 2000; ++round) {
    std::string s(next() % 80, ' ');
    for (char& c : s) c = alphabet[next() % alphabet.size()];
    const std::string d = decode_header_text(s, round % 2 ? "iso-2022-jp" : "");
    CHECK(is_valid_utf8(d));
    const std::string hint = round % 3 ? "" : "shift_jis";
    const std::string n = normalize_encoded_words(s, hint);
    CHECK(is_valid_utf8(n));
    CHECK_MESSAGE(only_own_words(n), "raw: " << s);
    if (s.find_first_of("\r\n") == std::string::npos) {
      CHECK_MESSAGE(decode_header_text(n, hint) == decode_header_text(s, hint), "raw: " << s);
    }
  }
}

TEST_CASE("a 200 KB header value is decoded in linear time") {
  std::string words, junk, unterminated;
  while (words.size() < 200 * 1024) words += "=?UTF-8?B?44OG44K544OI?=\r\n ";
  while (junk.size() < 200 * 1024) junk += "=?";
  while (unterminated.size() < 200 * 1024) unterminated += "=?a?B?";
  std::string alternating;
  for (int i = 0; alternating.size() < 200 * 1024; ++i) {
    alternating += "=?x-label-" + std::to_string(i % 1000) + "?Q?=E3=83=86?= ";
  }
  std::string raw8;
  while (raw8.size() < 200 * 1024) raw8 += "\x83\x65\x83\x58\x83\x67 ";
  const auto t0 = std::chrono::steady_clock::now();
  const std::string a = decode_header_text(words);
  const std::string b = decode_header_text(junk);
  const std::string c = decode_header_text(unterminated);
  const std::string d = decode_header_text(alternating);
  const std::string e = decode_header_text(raw8);
  const std::string f = normalize_encoded_words(words);
  const std::string g = normalize_encoded_words(junk);  // every '?' after '=' neutralised
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("seven 200 KB values in " << seconds << " s");
  CHECK(seconds < 10.0);
  CHECK(a.size() == words.size() / 27 * 9);  // "テスト" per 27-byte word, spaces between words dropped
  CHECK(b == junk);
  CHECK(c == unterminated);
  CHECK(is_valid_utf8(d));
  CHECK(e.substr(0, 10) == "テスト ");
  CHECK(f.substr(0, 10) == "=?UTF-8?B?");
  CHECK(g.size() < 4 * junk.size());
  CHECK(only_own_words(g));
  CHECK(decode_header_text(g) == junk);
}

TEST_CASE("normalize_encoded_words lets GMime parse the full display name") {
  SUBCASE("the ISO-2022-JP two-word name from the brief") {
    const std::string raw =
        "\"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\" <a@example.jp>";
    const std::string norm = normalize_encoded_words(raw);
    CHECK(norm == "\"=?UTF-8?B?44OG44K544OI44OG44K544OI?=\" <a@example.jp>");
    CHECK(parse_first_name(norm) == "テストテスト");
  }
  SUBCASE("the GMime bug case, unquoted, in a list") {
    const std::string norm =
        normalize_encoded_words("=?UTF-8?B?YQ==?= =?UTF-8?B?Yg==?= <a@b.example>, c@d.example");
    CHECK(norm == "=?UTF-8?B?YWI=?= <a@b.example>, c@d.example");
    CHECK(parse_first_name(norm) == "ab");
  }
  SUBCASE("decoded quotes and commas cannot change the structure") {
    // The name decodes to: 山田 太郎, "x" <evil@example.com>
    const std::string norm = normalize_encoded_words(
        "=?UTF-8?B?5bGx55SwIOWkqumDjiwgIngiIDxldmlsQGV4YW1wbGUuY29tPg==?= <real@example.jp>");
    init_gmime_once();
    InternetAddressList* list = internet_address_list_parse(nullptr, norm.c_str());
    REQUIRE(list != nullptr);
    CHECK(internet_address_list_length(list) == 1);
    InternetAddress* a = internet_address_list_get_address(list, 0);
    REQUIRE(INTERNET_ADDRESS_IS_MAILBOX(a));
    CHECK(std::string(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a))) == "real@example.jp");
    CHECK(std::string(internet_address_get_name(a)) == "山田 太郎, \"x\" <evil@example.com>");
    g_object_unref(list);
  }
  SUBCASE("raw Shift_JIS in a quoted name (0x5C trail byte) becomes UTF-8") {
    // 表示 = 0x95 0x5C 0x8E 0xA6: the 0x5C would be a backslash escape to GMime.
    const std::string norm = normalize_encoded_words("\"\x95\x5c\x8e\xa6\" <a@example.jp>");
    CHECK(norm == "\"表示\" <a@example.jp>");
    CHECK(parse_first_name(norm) == "表示");
  }
  SUBCASE("raw ISO-2022-JP and raw EUC-JP names") {
    CHECK(normalize_encoded_words("\x1b$B%F%9%H\x1b(B <a@example.jp>") == "テスト <a@example.jp>");
    CHECK(normalize_encoded_words("\xa5\xc6\xa5\xb9\xa5\xc8 <a@example.jp>", "iso-2022-jp") ==
          "テスト <a@example.jp>");
  }
  SUBCASE("everything else is byte-identical, folding included") {
    const std::string raw = "  Plain Name <a@b.example>,\r\n\t(comment) c@d.example ;";
    CHECK(normalize_encoded_words(raw) == raw);
    CHECK(normalize_encoded_words("a =?UTF-8?B?YQ==?=\r\n =?UTF-8?B?Yg==?= b") == "a =?UTF-8?B?YWI=?= b");
    CHECK(normalize_encoded_words("=?UTF-8?B?"
                                  "?=x") == "x");
  }
  SUBCASE("a '?' after '=' that is not one of our words is a word of its own") {
    // GMime decodes "=?UTF-8?B?####?=" to nothing; we show it as written.
    const std::string norm = normalize_encoded_words("=?UTF-8?B?####?= <a@b.example>");
    CHECK(norm == "==?UTF-8?Q?=3F?=UTF-8?B?####?= <a@b.example>");
    CHECK(parse_first_name(norm) == "=?UTF-8?B?####?=");
    CHECK(normalize_encoded_words("a=?b") == "a==?UTF-8?Q?=3F?=b");
  }
  SUBCASE("parameter values") {
    CHECK(normalize_encoded_words("attachment; filename=\"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=.txt\"") ==
          "attachment; filename=\"=?UTF-8?B?44OG44K544OI?=.txt\"");
  }
}

TEST_CASE("normalize_encoded_words never creates an encoded word") {
  SUBCASE("the saved fuzz input (tests/fuzz/regressions/fuzz_rfc2047/normalize-creates-word)") {
    const std::string raw = "=\x1b$B\x1b(B?utf-8?q?x?=";
    const std::string norm = normalize_encoded_words(raw);
    CHECK(norm == "==?UTF-8?Q?=3F?=utf-8?q?x?=");
    CHECK(decode_header_text(norm) == "=?utf-8?q?x?=");
    CHECK(decode_header_text(raw) == "=?utf-8?q?x?=");
    CHECK(parse_first_name(norm + " <a@example.jp>") == "=?utf-8?q?x?=");
  }
  SUBCASE("decoding ISO-2022-JP cannot bring back GMime bug #133") {
    const std::string raw = "=\x1b$B\x1b(B?UTF-8?B?YQ==?= =?UTF-8?B?Yg==?= <a@example.jp>";
    const std::string norm = normalize_encoded_words(raw);
    CHECK(only_own_words(norm));
    CHECK(decode_header_text(raw) == "=?UTF-8?B?YQ==?= b <a@example.jp>");
    CHECK(decode_header_text(norm) == decode_header_text(raw));
    CHECK(parse_first_name(norm) == "=?UTF-8?B?YQ==?= b");  // GMime used to show "a"
  }
  SUBCASE("nor can a removed control or an empty word") {
    for (const std::string& raw : {"=\x01?utf-8?q?x?="s, "=\x7f?utf-8?q?x?="s,
                                   "==?UTF-8?B?"
                                   "?=?utf-8?q?x?="s}) {  // an empty word between "=" and "?"
      const std::string norm = normalize_encoded_words(raw);
      CHECK_MESSAGE(only_own_words(norm), raw);
      CHECK(decode_header_text(norm) == "=?utf-8?q?x?=");
      CHECK(decode_header_text(raw) == "=?utf-8?q?x?=");
    }
  }
  SUBCASE("a word only GMime would accept is shown as we show it") {
    const std::string raw = "=?UTF-8?B?YQ==?= =?utf-8?q?b c?= <a@example.jp>";
    const std::string norm = normalize_encoded_words(raw);
    CHECK(only_own_words(norm));
    CHECK(parse_first_name(norm) == "a =?utf-8?q?b c?=");  // GMime alone: "ab c"
  }
  SUBCASE("white space after a neutralised '?' stays text, also before a word") {
    const std::string raw = "=? =?UTF-8?B?Yg==?= <a@example.jp>";
    const std::string norm = normalize_encoded_words(raw);
    CHECK(norm == "==?UTF-8?Q?=3F=20?==?UTF-8?B?Yg==?= <a@example.jp>");
    CHECK(decode_header_text(norm) == decode_header_text(raw));
    CHECK(parse_first_name(norm) == "=? b");
    CHECK(normalize_encoded_words("x=?\r\n y") == "x==?UTF-8?Q?=3F=20?=y");
    CHECK(normalize_encoded_words("=?=?=?=?") == "==?UTF-8?Q?=3F=3D=3F=3D=3F=3D=3F?=");
  }
  SUBCASE("words separated only by an escape sequence or a control become one word") {
    // Written as two words they would be adjacent: GMime would drop the second (bug #133) and any
    // decoder the white space between them.
    const std::string raw = "=?UTF-8?B?YQ==?= \x1b$B\x1b(B =?UTF-8?B?Yg==?= <a@example.jp>";
    const std::string norm = normalize_encoded_words(raw, "iso-2022-jp");
    CHECK(norm == "=?UTF-8?B?YSAgYg==?= <a@example.jp>");
    CHECK(decode_header_text(norm) == decode_header_text(raw, "iso-2022-jp"));
    CHECK(parse_first_name(norm) == "a  b");
    CHECK(normalize_encoded_words("=?UTF-8?B?YQ==?=\x01=?UTF-8?B?Yg==?=") == "=?UTF-8?B?YWI=?=");
  }
}

// tests/fuzz/regressions/fuzz_rfc2047/normalize-keeps-esc
TEST_CASE("normalize_encoded_words leaves no control a second decoder could act on") {
  const std::string raw =
      "\xEF\xBB\xBF"
      "A \x1b$B%F";
  const std::string norm = normalize_encoded_words(raw);
  CHECK(norm.find('\x1b') == std::string::npos);
  CHECK(only_own_words(norm));
  // The byte-order mark makes the raw text UTF-8, so ESC is a control, not an ISO-2022-JP shift.
  CHECK(decode_header_text(raw) == "A $B%F");
  CHECK(decode_header_text(norm) == "A $B%F");
  CHECK(normalize_encoded_words("a\x01\x7f"
                                "b\tc\r\n d") == "ab\tc\r\n d");  // folds and TAB stay
}

TEST_CASE("encode_header_text") {
  SUBCASE("short ASCII stays as is") {
    CHECK(encode_header_text("Hello world", "Subject") == "Hello world");
    CHECK(encode_header_text("", "Subject") == "");
  }
  SUBCASE("long ASCII is folded at white space") {
    const std::string v =
        "This is a rather long English subject line that certainly does not fit into seventy-six columns";
    const std::string e = encode_header_text(v, "Subject");
    CHECK(e.find("=?") == std::string::npos);
    for (const auto& line : split_lines("Subject: " + e)) CHECK(line.size() <= 76);
    CHECK(decode_header_text(e) == v);
  }
  SUBCASE("ASCII that looks like an encoded word is encoded, so it stays literal") {
    const std::string e = encode_header_text("=?UTF-8?B?YQ==?=", "Subject");
    CHECK(e.substr(0, 10) == "=?UTF-8?B?");
    CHECK(decode_header_text(e) == "=?UTF-8?B?YQ==?=");
  }
  SUBCASE("Japanese in UTF-8 words of whole characters") {
    const std::string v = "【重要】令和6年度 住民税のお知らせ（第2期分）について――至急ご確認ください 😀 ①②③";
    const std::string e = encode_header_text(v, "Subject");
    const auto lines = split_lines("Subject: " + e);
    CHECK(lines.size() > 1);
    for (std::size_t k = 0; k < lines.size(); ++k) {
      CAPTURE(lines[k]);
      CHECK(lines[k].size() <= 76);
      const std::string word = k == 0 ? lines[k].substr(9) : lines[k].substr(1);
      CHECK(word.size() <= 75);
      CHECK(word.substr(0, 10) == "=?UTF-8?B?");
      // Each word decodes on its own to valid UTF-8: no character is split between words.
      const std::string alone = decode_header_text(word);
      CHECK(is_valid_utf8(alone));
      CHECK(alone.find("\xEF\xBF\xBD") == std::string::npos);
    }
    CHECK(decode_header_text(e) == v);
  }
  SUBCASE("ISO-2022-JP words each end in ASCII and round-trip") {
    const std::string v = "【重要】令和6年度 住民税のお知らせ（第2期分）について ①㈱ ｶﾀｶﾅ";
    const std::string e = encode_header_text(v, "Subject", "ISO-2022-JP");
    const auto lines = split_lines("Subject: " + e);
    CHECK(lines.size() > 1);
    for (std::size_t k = 0; k < lines.size(); ++k) {
      CAPTURE(lines[k]);
      CHECK(lines[k].size() <= 76);
      const std::string word = k == 0 ? lines[k].substr(9) : lines[k].substr(1);
      CHECK(word.size() <= 75);
      REQUIRE(word.substr(0, 16) == "=?ISO-2022-JP?B?");
      const auto raw = decode_to_utf8(word, "us-ascii");  // sanity: the word itself is ASCII
      CHECK(raw.replacements == 0);
      CHECK(is_valid_utf8(decode_header_text(word)));
    }
    CHECK(decode_header_text(e) == "【重要】令和6年度 住民税のお知らせ（第2期分）について ①㈱ カタカナ");
  }
  SUBCASE("ISO-2022-JP falls back to UTF-8 for characters JIS cannot hold") {
    const std::string e = encode_header_text("絵文字 😀", "Subject", "iso-2022-jp");
    CHECK(e.substr(0, 10) == "=?UTF-8?B?");
    CHECK(decode_header_text(e) == "絵文字 😀");
  }
  SUBCASE("no header injection") {
    const std::string e = encode_header_text("hi\r\nBcc: victim@example.com\n", "Subject");
    CHECK(e.find('\r') == std::string::npos);
    CHECK(e.find('\n') == std::string::npos);
    const std::string j = encode_header_text("日本\r\nBcc: victim@example.com", "Subject");
    for (const auto& line : split_lines(j)) {
      CHECK(line.find('\n') == std::string::npos);
      CHECK(line.find('\r') == std::string::npos);
    }
    CHECK(decode_header_text(j) == "日本  Bcc: victim@example.com");
  }
  SUBCASE("a long header name shortens the first word") {
    const std::string name = "X-Mukai-Original-Subject-With-A-Long-Name";
    const std::string e = encode_header_text("テスト テスト テスト テスト テスト", name);
    const auto lines = split_lines(name + ": " + e);
    for (const auto& line : lines) CHECK(line.size() <= 76);
    CHECK(decode_header_text(e) == "テスト テスト テスト テスト テスト");
  }
}
