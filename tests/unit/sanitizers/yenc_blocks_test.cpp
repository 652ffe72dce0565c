// Tests for sanitizers/yenc_blocks: the byte-level yEnc scanner. Exact bytes for every byte value
// (escapes, trailing white space, CRLF), real posts from the corpus (single part with crc32=,
// multipart with =ypart and pcrc32=), Japanese text in ISO-2022-JP and Shift_JIS around a block,
// and every way a block fails closed (CRC, size, missing =yend, bad header/=ypart, line length,
// size and block-count limits). The encoder here is written from the yEnc 1.3 spec, independently
// of the decoder; CRCs come from zlib (checked against the standard check value) and the corpus.
#include "sanitizers/yenc_blocks.hpp"

#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "tests/support/process.hpp"

using namespace mukai::sanitize;

namespace {

std::string corpus_file(const std::string& name) {
  std::string text = mukai::testing::read_file_or_empty(std::string(MUKAI_SHARED_DIR) + "/corpus/" + name);
  REQUIRE_MESSAGE(!text.empty(), "cannot read corpus/" << name);
  return text;
}

// The body of a message: everything after the first empty line.
std::string corpus_body(const std::string& name) {
  const std::string m = corpus_file(name);
  for (const std::string_view blank : {"\r\n\r\n", "\n\n"}) {
    if (const auto pos = m.find(blank); pos != std::string::npos) return m.substr(pos + blank.size());
  }
  FAIL("no body in corpus/" << name);
  return {};
}

std::uint32_t crc(std::string_view b) {
  return static_cast<std::uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(b.data()), b.size()));
}

std::string hex(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

std::string all_byte_values(int rounds = 3) {
  std::string out;
  for (int r = 0; r < rounds; ++r)
    for (int c = 0; c < 256; ++c) out += static_cast<char>(c);
  return out;
}

std::string pseudo_random(std::size_t n, std::uint32_t seed) {
  std::string out(n, '\0');
  for (auto& c : out) {
    seed = seed * 1103515245u + 12345u;
    c = static_cast<char>(seed >> 24);
  }
  return out;
}

struct encode_options {
  std::size_t line = 128;
  std::string eol = "\n";
  std::string name = "data.bin";
  bool crc = true;
  // Multipart: this part's 1-based range of a file of `total_size` bytes (data = that range).
  std::uint64_t part = 0, begin = 0, end = 0, total_size = 0;
};

// yEnc 1.3 encoder: +42, escape NUL LF CR '=' (and TAB/space at a line start or end, '.' at a line
// start) as '=' + (c + 64), wrap after `line` characters.
std::string yencode(std::string_view data, const encode_options& o = {}) {
  std::string out = "=ybegin ";
  if (o.part) out += "part=" + std::to_string(o.part) + " ";
  out += "line=" + std::to_string(o.line) + " size=" + std::to_string(o.part ? o.total_size : data.size()) +
         " name=" + o.name + o.eol;
  if (o.part) out += "=ypart begin=" + std::to_string(o.begin) + " end=" + std::to_string(o.end) + o.eol;
  std::size_t col = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    auto e = static_cast<unsigned char>(static_cast<unsigned char>(data[i]) + 42);
    const bool edge = col == 0 || col + 1 >= o.line || i + 1 == data.size();
    if (e == 0 || e == '\n' || e == '\r' || e == '=' || (edge && (e == ' ' || e == '\t')) || (col == 0 && e == '.')) {
      out += '=';
      e = static_cast<unsigned char>(e + 64);
      ++col;
    }
    out += static_cast<char>(e);
    if (++col >= o.line) {
      out += o.eol;
      col = 0;
    }
  }
  if (col) out += o.eol;
  out += "=yend size=" + std::to_string(data.size());
  if (o.part) out += " part=" + std::to_string(o.part);
  if (o.crc) out += (o.part ? " pcrc32=" : " crc32=") + hex(crc(data));
  return out + o.eol;
}

// The text with the blocks' ranges removed, as the segments give it.
std::string joined_segments(std::string_view s, const std::vector<yenc_block>& blocks) {
  std::string out;
  for (const auto seg : yenc_text_segments(s, blocks)) out += seg;
  return out;
}

}  // namespace

TEST_CASE("zlib's CRC-32 is the one yEnc uses (standard check value)") {
  CHECK(crc("123456789") == 0xcbf43926u);
}

TEST_CASE("yEnc: every byte value comes back exactly, the text around is untouched") {
  const std::string data = all_byte_values();
  const std::string text = "Posting follows.\n" + yencode(data) + "End of post.\n";
  const auto blocks = find_yenc_blocks(text);
  REQUIRE(blocks.size() == 1);
  CHECK(blocks[0].problem == "");
  CHECK(blocks[0].filename == "data.bin");
  CHECK(blocks[0].bytes == data);
  CHECK(text.substr(blocks[0].begin, 8) == "=ybegin ");
  CHECK(text.substr(blocks[0].end, 1) == "\n");  // the =yend line's terminator stays in the text
  CHECK(joined_segments(text, blocks) == "Posting follows.\n\nEnd of post.\n");

  SUBCASE("escapes of every critical character, spelled out") {
    // 0xD6+42 = NUL, 0xE0+42 = LF, 0xE3+42 = CR, 0x13+42 = '='; 0xF6+42 = ' ' and 0xDF+42 = TAB at
    // the start and end of a line; 0x04+42 = '.' at the start.
    const std::string critical("\xD6\xE0\xE3\x13\xF6\xDF\x04\x41", 8);
    const std::string enc = yencode(critical, {.line = 4});
    CHECK(enc.find("=@") != std::string::npos);  // NUL
    CHECK(enc.find("=J") != std::string::npos);  // LF
    CHECK(enc.find("=M") != std::string::npos);  // CR
    CHECK(enc.find("=}") != std::string::npos);  // '='
    const auto b = find_yenc_blocks("x\n" + enc);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(b[0].bytes == critical);
  }
  SUBCASE("an unescaped space or TAB at a line's end is data, not padding") {
    // Bytes 0xF6 and 0xDF encode to ' ' and TAB; encoders should escape them at a line's end, but a
    // decoder must not trim them.
    const std::string data2("\x01\x02\xF6", 3);
    const std::string enc = "=ybegin line=128 size=3 name=s.bin\n+, \n=yend size=3 crc32=" + hex(crc(data2)) + "\n";
    const auto b = find_yenc_blocks(enc);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(b[0].bytes == data2);
  }
  SUBCASE("CRLF line ends") {
    const std::string crlf = "Hi\r\n" + yencode(data, {.eol = "\r\n"}) + "Bye\r\n";
    const auto b = find_yenc_blocks(crlf);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(b[0].bytes == data);
    CHECK(joined_segments(crlf, b) == "Hi\r\n\r\nBye\r\n");
  }
  SUBCASE("a CRC written without leading zeros") {
    // Payload chosen by search so that its CRC has a leading zero nibble.
    std::string payload;
    for (std::uint32_t seed = 1;; ++seed) {
      payload = pseudo_random(50, seed);
      if (crc(payload) < 0x10000000u) break;
    }
    char short_hex[9];
    std::snprintf(short_hex, sizeof short_hex, "%x", crc(payload));
    std::string enc = yencode(payload, {.crc = false});
    enc.insert(enc.size() - 1, std::string(" crc32=") + short_hex);
    const auto b = find_yenc_blocks(enc);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(b[0].bytes == payload);
  }
}

TEST_CASE("yEnc: real posts from the corpus") {
  SUBCASE("single part, 8-bit, crc32=") {
    const std::string body = corpus_body("mimekit__simple.eml");
    const auto b = find_yenc_blocks(body);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(b[0].filename == "testfile.txt");
    CHECK(b[0].bytes.size() == 584);
    CHECK(crc(b[0].bytes) == 0xded29f4fu);
    CHECK(joined_segments(body, b).substr(0, 5) == "-- \r\n");
  }
  SUBCASE("=ybeginx is not a header; the real one follows") {
    // A yEnc decoder's test input, not a message: the whole file is the text.
    const auto b = find_yenc_blocks(corpus_file("mimekit__state-changes.eml"));
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(crc(b[0].bytes) == 0xded29f4fu);
  }
  SUBCASE("multipart: part 1 and part 2 of joystick.jpg, each with =ypart and pcrc32=") {
    const auto p1 = find_yenc_blocks(corpus_body("mimekit__00000020.eml"));
    const auto p2 = find_yenc_blocks(corpus_body("mimekit__00000021.eml"));
    REQUIRE(p1.size() == 1);
    REQUIRE(p2.size() == 1);
    CHECK(p1[0].problem == "");
    CHECK(p2[0].problem == "");
    CHECK(p1[0].filename == "joystick.jpg");
    CHECK(p1[0].bytes.size() == 11250);
    CHECK(p2[0].bytes.size() == 8088);
    CHECK(crc(p1[0].bytes) == 0xbfae5c0bu);
    CHECK(crc(p2[0].bytes) == 0xaca76043u);
    CHECK(p1[0].bytes.substr(0, 3) == "\xFF\xD8\xFF");  // the JPEG starts in part 1
  }
}

TEST_CASE("yEnc multipart: =ypart range, pcrc32= and the whole-file crc32=") {
  const std::string file = pseudo_random(3000, 5);
  const std::string part2 = file.substr(1000, 1500);
  const encode_options o{.part = 2, .begin = 1001, .end = 2500, .total_size = 3000};
  SUBCASE("valid") {
    const auto b = find_yenc_blocks(yencode(part2, o));
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(b[0].bytes == part2);
  }
  SUBCASE("pcrc32 mismatch") {
    std::string enc = yencode(part2, o);
    enc.replace(enc.find("pcrc32=") + 7, 8, hex(crc(part2) ^ 1));
    const auto b = find_yenc_blocks(enc);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "crc-mismatch");
    CHECK(b[0].bytes == enc.substr(0, enc.size() - 1));  // the raw block, its last line break outside
  }
  SUBCASE("a wrong whole-file crc32= cannot be checked on a part and is ignored") {
    std::string enc = yencode(part2, o);
    enc.insert(enc.size() - 1, " crc32=12345678");
    const auto b = find_yenc_blocks(enc);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
  }
  SUBCASE("a range that does not match the data") {
    encode_options wrong = o;
    wrong.end = 2499;
    const auto b = find_yenc_blocks(yencode(part2, wrong));
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "size-mismatch");
  }
  SUBCASE("=ypart beyond the file's size") {
    encode_options wrong = o;
    wrong.end = 3001;
    CHECK(find_yenc_blocks(yencode(part2, wrong))[0].problem == "bad-ypart");
  }
  SUBCASE("part= without =ypart, and =ypart without part=") {
    std::string enc = yencode(part2, o);
    const auto ypart = enc.find("=ypart");
    std::string no_ypart = enc;
    no_ypart.erase(ypart, enc.find('\n', ypart) + 1 - ypart);
    CHECK(find_yenc_blocks(no_ypart)[0].problem == "bad-ypart");
    std::string no_part = enc;
    no_part.erase(no_part.find("part=2 "), 7);
    no_part.erase(no_part.rfind(" part=2"), 7);
    CHECK(find_yenc_blocks(no_part)[0].problem == "bad-ypart");
  }
}

TEST_CASE("yEnc fails closed: a damaged block is still cut, with its raw bytes") {
  const std::string data = pseudo_random(1000, 9);
  const std::string good = yencode(data);
  const auto only = [](const std::string& text) {
    auto b = find_yenc_blocks(text);
    REQUIRE(b.size() == 1);
    return b[0];
  };
  SUBCASE("crc32 mismatch") {
    std::string enc = good;
    enc.replace(enc.find("crc32=") + 6, 8, hex(crc(data) + 1));
    const auto b = only("before\n" + enc + "after\n");
    CHECK(b.problem == "crc-mismatch");
    CHECK(b.bytes == enc.substr(0, enc.size() - 1));
    CHECK(b.filename == "data.bin");
  }
  SUBCASE("one data byte changed: the CRC catches it") {
    std::string enc = good;
    const auto data_at = enc.find('\n') + 10;
    enc[data_at] = enc[data_at] == 'a' ? 'b' : 'a';
    CHECK(only(enc).problem != "");
  }
  SUBCASE("size mismatch: a data line missing") {
    std::string enc = good;
    const auto second = enc.find('\n') + 1;
    enc.erase(second, enc.find('\n', second) + 1 - second);
    CHECK(only(enc).problem == "size-mismatch");
  }
  SUBCASE("=ybegin size= and =yend size= disagree") {
    std::string enc = good;
    enc.replace(enc.find("size=1000"), 9, "size=1001");
    CHECK(only(enc).problem == "size-mismatch");
  }
  SUBCASE("missing =yend: the block runs to the end of the text") {
    std::string enc = good.substr(0, good.find("=yend"));
    const std::string text = "hello\n" + enc + "a line of text after it\n";
    const auto b = only(text);
    CHECK(b.problem == "no-yend");
    CHECK(b.bytes == text.substr(6, text.size() - 7));
    CHECK(joined_segments(text, {b}) == "hello\n\n");
  }
  SUBCASE("missing =yend: the block ends before the next =ybegin") {
    const std::string first = good.substr(0, good.find("=yend"));
    const std::string text = first + good;
    const auto blocks = find_yenc_blocks(text);
    REQUIRE(blocks.size() == 2);
    CHECK(blocks[0].problem == "no-yend");
    CHECK(blocks[1].problem == "");
    CHECK(blocks[1].bytes == data);
    CHECK(blocks[1].begin == first.size());
  }
  SUBCASE("headers without a required keyword, or with a duplicate") {
    CHECK(only("=ybegin line=128 size=2 \nkk\n=yend size=2\n").problem == "bad-header");          // no name=
    CHECK(only("=ybegin size=2 name=a\nkk\n=yend size=2\n").problem == "bad-header");             // no line=
    CHECK(only("=ybegin line=128 name=a\nkk\n=yend size=2\n").problem == "bad-header");           // no size=
    CHECK(only("=ybegin line=128 size=2 size=3 name=a\nkk\n=yend size=2\n").problem == "bad-header");
    CHECK(only("=ybegin line=128 size=2x name=a\nkk\n=yend size=2\n").problem == "bad-header");
    CHECK(only("=ybegin line=128 size=2 name=a\nkk\n=yend\n").problem == "bad-trailer");          // no size=
    CHECK(only("=ybegin line=128 size=2 name=a\nkk\n=yend size=2 crc32=xyz\n").problem == "bad-trailer");
    CHECK(only("=ybegin line=128 size=2 name=a\nkk\n=yend size=2\n").problem == "");               // crc optional
  }
  SUBCASE("keyword lines with nothing after the keyword (fuzz_text_blobs/yenc-blank-keyword-line)") {
    CHECK(only("=ybegin \nkk\n=yend size=2\n").problem == "bad-header");
    CHECK(only("=ybegin  \t \nkk\n=yend size=2\n").problem == "bad-header");
    CHECK(only("=ybegin line=128 size=2 part=1 name=a\n=ypart  \nkk\n=yend size=2\n").problem == "bad-ypart");
    CHECK(only("=ybegin line=128 size=2 name=a\nkk\n=yend \t\n").problem == "bad-trailer");
  }
  SUBCASE("name= runs to the end of the line and may hold spaces and '='") {
    const auto b = only("=ybegin line=128 size=2 name=my file=1 size=9.txt  \nkk\n=yend size=2\n");
    CHECK(b.problem == "");
    CHECK(b.filename == "my file=1 size=9.txt");
    CHECK(b.bytes == "AA");
  }
  SUBCASE("a data line longer than line= allows") {
    const std::string long_line(128 + 4, 'k');
    CHECK(only("=ybegin line=128 size=132 name=a\n" + long_line + "\n=yend size=132\n").problem == "line-too-long");
    const std::string slack_line(128 + 3, 'k');
    CHECK(only("=ybegin line=128 size=131 name=a\n" + slack_line + "\n=yend size=131\n").problem == "");
  }
  SUBCASE("an absurd line=") {
    CHECK(only("=ybegin line=100000 size=2 name=a\nkk\n=yend size=2\n").problem == "bad-header");
    CHECK(only("=ybegin line=0 size=2 name=a\nkk\n=yend size=2\n").problem == "bad-header");
  }
  SUBCASE("size= over the limit") {
    const auto b = find_yenc_blocks(good, {.max_size = 999});
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "too-large");
    CHECK(b[0].bytes == good.substr(0, good.size() - 1));
    CHECK(find_yenc_blocks(good, {.max_size = 1000})[0].problem == "");
  }
  SUBCASE("a name longer than a file system allows") {
    const auto b = only("=ybegin line=128 size=2 name=" + std::string(300, 'n') + "\nkk\n=yend size=2\n");
    CHECK(b.problem == "bad-header");
    CHECK(b.filename.size() == 255);
  }
}

TEST_CASE("yEnc: only a line start opens a block") {
  CHECK(find_yenc_blocks("text =ybegin line=128 size=2 name=a\nkk\n=yend size=2\n").empty());
  CHECK(find_yenc_blocks("=ybeginx line=128 size=2 name=a\nkk\n=yend size=2\n").empty());
  CHECK(find_yenc_blocks("no yEnc here at all\n").empty());
  CHECK(find_yenc_blocks("").empty());
  const std::string cr_only = "a\r=ybegin line=128 size=2 name=a\rkk\r=yend size=2\rb\r";
  const auto b = find_yenc_blocks(cr_only);
  REQUIRE(b.size() == 1);
  CHECK(b[0].bytes == "AA");
  CHECK(joined_segments(cr_only, b) == "a\r\rb\r");
}

TEST_CASE("yEnc in Japanese text: the bytes around the block are exactly the text's") {
  // The yEnc data carries ESC (0x1B, from byte 0xF1) and 8-bit bytes that a charset decoder would
  // read as escapes, lead bytes or invalid sequences; the segments must not lose or gain a byte.
  std::string data = all_byte_values(2);
  data += std::string(50, '\xF1');  // ESC-heavy encoded text
  SUBCASE("ISO-2022-JP") {
    const std::string before = "\x1b$B$3$s$K$A$O\x1b(B\n";  // こんにちは
    const std::string after = "\x1b$B$h$m$7$/\x1b(B\n";     // よろしく
    const std::string text = before + yencode(data) + after;
    const auto b = find_yenc_blocks(text);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(b[0].bytes == data);
    CHECK(joined_segments(text, b) == before + "\n" + after);
  }
  SUBCASE("Shift_JIS, the block right after a line of 8-bit text") {
    const std::string before = "\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd\r\n";  // こんにちは
    const std::string after = "\x83\x65\x83\x58\x83\x67\r\n";                     // テスト
    const std::string text = before + yencode(data, {.eol = "\r\n"}) + after;
    const auto b = find_yenc_blocks(text);
    REQUIRE(b.size() == 1);
    CHECK(b[0].problem == "");
    CHECK(b[0].bytes == data);
    CHECK(joined_segments(text, b) == before + "\r\n" + after);
  }
}

TEST_CASE("yEnc: two blocks, in order, with the text between them") {
  const std::string a = pseudo_random(400, 1), b = pseudo_random(900, 2);
  const std::string text = "one\n" + yencode(a, {.name = "a.bin"}) + "two\n" + yencode(b, {.name = "b.bin"}) + "three\n";
  const auto blocks = find_yenc_blocks(text);
  REQUIRE(blocks.size() == 2);
  CHECK(blocks[0].filename == "a.bin");
  CHECK(blocks[0].bytes == a);
  CHECK(blocks[1].filename == "b.bin");
  CHECK(blocks[1].bytes == b);
  CHECK(blocks[0].end < blocks[1].begin);
  const auto segments = yenc_text_segments(text, blocks);
  REQUIRE(segments.size() == 3);
  CHECK(segments[0] == "one\n");
  CHECK(segments[1] == "\ntwo\n");
  CHECK(segments[2] == "\nthree\n");
}

TEST_CASE("yEnc: the number of blocks per call is bounded") {
  std::string text;
  for (int i = 0; i < 5; ++i) text += "line " + std::to_string(i) + "\n" + yencode(pseudo_random(50, i));
  text += "tail\n\n";
  const auto blocks = find_yenc_blocks(text, {.max_blocks = 2});
  REQUIRE(blocks.size() == 3);
  CHECK(blocks[0].problem == "");
  CHECK(blocks[1].problem == "");
  CHECK(blocks[2].problem == "too-many-blocks");
  // The rest of the text, from the third =ybegin, is the last block: nothing after it is shown.
  CHECK(text.substr(blocks[2].begin, 8) == "=ybegin ");
  CHECK(blocks[2].end == text.size() - 2);
  CHECK(joined_segments(text, blocks) == "line 0\n\nline 1\n\nline 2\n\n\n");
}

TEST_CASE("yEnc: linear on hostile input") {
  // Many "=ybegin " not at a line start, and one block of many tiny lines without =yend.
  std::string text;
  for (int i = 0; i < 200000; ++i) text += "x=ybegin ";
  text += "\n=ybegin line=128 size=9 name=a\n";
  for (int i = 0; i < 200000; ++i) text += "k\n";
  const auto blocks = find_yenc_blocks(text);
  REQUIRE(blocks.size() == 1);
  CHECK(blocks[0].problem == "no-yend");
}
