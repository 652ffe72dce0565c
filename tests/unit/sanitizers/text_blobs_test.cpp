// Tests for sanitizers/text_blobs: every blob kind from real corpus samples and synthetic
// text, text around blobs preserved, prose/URLs/Japanese/checksum lists left alone, and
// linear time on large and hostile input.
#include "sanitizers/text_blobs.hpp"

#include <doctest/doctest.h>
#include <glib.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "sanitizers/content_inspect.hpp"

using namespace mukai::sanitize;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string corpus(const std::string& name) {
  return read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/" + name);
}

// The body of a simple message: everything after the first empty line.
std::string body_of(const std::string& message) {
  auto pos = message.find("\r\n\r\n");
  if (pos != std::string::npos) return message.substr(pos + 4);
  pos = message.find("\n\n");
  REQUIRE(pos != std::string::npos);
  return message.substr(pos + 2);
}

std::string base64(std::string_view bytes, std::size_t width = 76) {
  gchar* enc = g_base64_encode(reinterpret_cast<const guchar*>(bytes.data()), bytes.size());
  const std::string flat(enc);
  g_free(enc);
  std::string out;
  for (std::size_t i = 0; i < flat.size(); i += width) out += flat.substr(i, width) + "\n";
  return out;
}

std::string pseudo_random(std::size_t n, std::uint32_t seed = 7) {
  std::string out(n, '\0');
  for (auto& c : out) {
    seed = seed * 1103515245u + 12345u;
    c = static_cast<char>(seed >> 24);
  }
  return out;
}

std::uint32_t crc32(std::string_view data) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (const char ch : data) {
    crc ^= static_cast<unsigned char>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
  }
  return ~crc;
}

std::string uuencode_line(std::string_view bytes) {
  auto enc = [](int v) { return static_cast<char>(v == 0 ? '`' : v + 32); };
  std::string line(1, enc(static_cast<int>(bytes.size())));
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const auto b = [&](std::size_t k) {
      return k < bytes.size() ? static_cast<unsigned char>(bytes[k]) : 0u;
    };
    const unsigned v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    for (int s = 18; s >= 0; s -= 6) line += enc(static_cast<int>((v >> s) & 0x3F));
  }
  return line;
}

std::string uuencode(std::string_view bytes, const std::string& name) {
  std::string out = "begin 644 " + name + "\n";
  for (std::size_t i = 0; i < bytes.size(); i += 45) out += uuencode_line(bytes.substr(i, 45)) + "\n";
  return out + "`\nend\n";
}

const std::string prose =
    "Dear colleagues,\n"
    "Please find the minutes of Tuesday's meeting below. The budget review was postponed until the\n"
    "auditors have finished; the new schedule is at https://example.lg.jp/kikaku/schedule/2024/04/"
    "meeting-minutes-final-version-approved.html?session=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef\n"
    "and the archive at http://example.com/aHR0cHM6Ly9leGFtcGxlLmNvbS9wYXRoL3RvL3NvbWV0aGluZy9sb25n/"
    "dGhpbmdzL2FuZC9tb3JlL3RoaW5ncw/index\n"
    "Regards,\n";

const std::string japanese =
    "いつもお世話になっております。総務課の山田です。\n"
    "先日ご依頼いただいた資料を送付いたします。ご確認のほどよろしくお願いいたします。\n"
    "ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐ\n"
    "令和六年四月一日から新しい様式に変わりますので、ご注意ください。以上、よろしくお願いします。\n";

}  // namespace

TEST_CASE("plain text passes through untouched") {
  for (const std::string& text :
       {prose, japanese, std::string(), std::string("\n\n\n"), std::string("one line")}) {
    const auto split = cut_encoded_blobs(text);
    CHECK(split.blobs.empty());
    CHECK(split.text == text);
  }
}

TEST_CASE("fill lines of few symbols are text, not base64 (Postfix smtp-source's body)") {
  std::string fill;
  for (int i = 1; i <= 8; ++i) fill += std::to_string(i) + std::string(77, 'X') + "\r\n";
  std::string ruler;
  for (int i = 0; i < 6; ++i) ruler += "AbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAb\n";
  for (const std::string& text : {fill, ruler}) {
    const auto split = cut_encoded_blobs(text);
    CHECK(split.blobs.empty());
    CHECK(split.text == text);
  }
}

TEST_CASE("uuencode: real samples from the corpus") {
  SUBCASE("two blocks, one without a name, prose between kept") {
    const auto split = cut_encoded_blobs(body_of(corpus("mime4j__sig-uu.eml")));
    REQUIRE(split.blobs.size() == 2);
    CHECK(split.blobs[0].kind == "uuencode");
    CHECK(split.blobs[0].filename == ".signature");
    CHECK(split.blobs[0].decoded.find("http://") != std::string::npos);
    CHECK(split.blobs[1].filename == "");
    CHECK(split.blobs[1].decoded.substr(0, 6) == "GIF89a");
    CHECK(split.text.find("And now, a little .gif icon:\n\n[[mukai-blob:1]]\n") != std::string::npos);
    CHECK(split.text.find("so here goes... first off, my .sig file:\n\n[[mukai-blob:0]]\n") !=
          std::string::npos);
    CHECK(split.text.find("Done!") != std::string::npos);
    CHECK(split.text.find("begin 644") == std::string::npos);
  }
  SUBCASE("CRLF lines") {
    const std::string body = body_of(corpus("mime4j__uu-junk.eml"));
    const auto split = cut_encoded_blobs(body);
    REQUIRE(split.blobs.size() == 2);
    CHECK(split.blobs[0].filename == "up.gif");
    CHECK(split.blobs[1].filename == "zeegee.gif");
    for (const auto& b : split.blobs) {
      CHECK(b.decoded.substr(0, 4) == "GIF8");
      CHECK(body.substr(b.begin, 6) == "begin ");
      CHECK(body.substr(b.end - 3, 3) == "end");  // the CRLF after "end" stays in the text
    }
    CHECK(split.text.find("[[mukai-blob:0]]\r\n") != std::string::npos);
  }
  SUBCASE("clam.exe in an mbox, truncated before 'end'") {
    const std::string exe = read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/attachments-clamav/clam.exe");
    const auto split = cut_encoded_blobs(
        read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/attachments-clamav/clam.exe.mbox.uu"));
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].filename == "clam.exe");
    CHECK(split.blobs[0].decoded == exe);
  }
}

TEST_CASE("uuencode: synthetic blocks") {
  const std::string payload = pseudo_random(1000);
  SUBCASE("round trip, text before and after preserved") {
    const std::string text = "before\n" + uuencode(payload, "data.bin") + "after\n";
    const auto split = cut_encoded_blobs(text);
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].decoded == payload);
    CHECK(split.blobs[0].filename == "data.bin");
    CHECK(split.text == "before\n[[mukai-blob:0]]\nafter\n");
  }
  SUBCASE("missing 'end': stops after the last uu-looking line") {
    std::string block = uuencode(payload, "x.exe");
    block.resize(block.size() - std::string("`\nend\n").size());
    const auto split = cut_encoded_blobs("hi\n" + block + "thanks, bye\n");
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].decoded == payload);
    CHECK(split.text == "hi\n[[mukai-blob:0]]\nthanks, bye\n");
  }
  SUBCASE("a begin line in prose is not a blob") {
    const auto split = cut_encoded_blobs("Walk:\nbegin 100 meters before the station\nthen turn left.\n");
    CHECK(split.blobs.empty());
  }
  SUBCASE("empty file") {
    const auto split = cut_encoded_blobs("begin 600 empty.txt\n`\nend\n");
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].decoded.empty());
  }
  SUBCASE("begin-base64 (uuencode -m)") {
    const std::string b64 = base64(payload, 60);
    const auto split = cut_encoded_blobs("x\nbegin-base64 644 data.bin\n" + b64 + "====\ny\n");
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].kind == "uuencode");
    CHECK(split.blobs[0].decoded == payload);
    CHECK(split.text == "x\n[[mukai-blob:0]]\ny\n");
  }
}

TEST_CASE("yEnc: real samples") {
  SUBCASE("single part with escapes") {
    const auto split = cut_encoded_blobs(body_of(corpus("mimekit__simple.eml")));
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].kind == "yenc");
    CHECK(split.blobs[0].filename == "testfile.txt");
    CHECK(split.blobs[0].decoded.size() == 584);
    CHECK(crc32(split.blobs[0].decoded) == 0xded29f4fu);
    CHECK(split.text.substr(0, 3) == "-- ");
  }
  SUBCASE("multipart with =ypart") {
    const auto split = cut_encoded_blobs(body_of(corpus("mimekit__00000020.eml")));
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].filename == "joystick.jpg");
    CHECK(split.blobs[0].decoded.size() == 11250);
    CHECK(crc32(split.blobs[0].decoded) == 0xbfae5c0bu);
  }
  SUBCASE("without =yend the rest of the text is the blob") {
    const auto split = cut_encoded_blobs("hello\n=ybegin line=128 size=3 name=a.bin\nkkk\n");
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].decoded == "AAA");
    CHECK(split.text == "hello\n[[mukai-blob:0]]\n");
  }
}

TEST_CASE("BinHex: the ClamAV sample decodes to clam.exe") {
  const std::string exe = read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/attachments-clamav/clam.exe");
  const std::string hqx =
      read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/attachments-clamav/clam.exe.binhex");
  const auto split = cut_encoded_blobs("Here it is:\n\n" + hqx + "\nCheers\n");
  REQUIRE(split.blobs.size() == 1);
  CHECK(split.blobs[0].kind == "binhex");
  CHECK(split.blobs[0].filename == "clam.exe");
  CHECK(split.blobs[0].decoded == exe);
  CHECK(split.text.find("Here it is:\n\n[[mukai-blob:0]]") == 0);
  CHECK(split.text.find("Cheers\n") != std::string::npos);
  SUBCASE("a damaged block is kept raw") {
    std::string broken = hqx;
    const auto colon = broken.find("\n:") + 10;
    broken[colon] = broken[colon] == 'A' ? 'B' : 'A';
    const auto s2 = cut_encoded_blobs(broken);
    REQUIRE(s2.blobs.size() == 1);
    CHECK(s2.blobs[0].filename.empty());
    CHECK(s2.blobs[0].decoded.substr(0, 40) == hqx.substr(0, 40));
  }
}

TEST_CASE("ASCII armour") {
  const std::string armour_body = base64(pseudo_random(300), 64);
  SUBCASE("PGP message, raw block kept") {
    const std::string block = "-----BEGIN PGP MESSAGE-----\nVersion: GnuPG v2\n\n" + armour_body +
                              "=njUN\n-----END PGP MESSAGE-----";
    const auto split = cut_encoded_blobs("Secret:\n" + block + "\nBye\n");
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].kind == "pgp");
    CHECK(split.blobs[0].decoded == block);
    CHECK(split.text == "Secret:\n[[mukai-blob:0]]\nBye\n");
  }
  SUBCASE("clear-signed text stays, its signature goes") {
    const std::string text =
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nMeet at noon.\n"
        "-----BEGIN PGP SIGNATURE-----\n\n" +
        armour_body + "=abcd\n-----END PGP SIGNATURE-----\n";
    const auto split = cut_encoded_blobs(text);
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].kind == "pgp");
    CHECK(split.text ==
          "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nMeet at noon.\n[[mukai-blob:0]]\n");
  }
  SUBCASE("public key block and PKCS7") {
    for (const std::string label : {"PGP PUBLIC KEY BLOCK", "PKCS7"}) {
      const auto split = cut_encoded_blobs("-----BEGIN " + label + "-----\n" + armour_body + "-----END " +
                                           label + "-----\n");
      REQUIRE(split.blobs.size() == 1);
      CHECK(split.blobs[0].kind == "pgp");
    }
  }
  SUBCASE("other PEM is a base64 blob with the decoded body") {
    const std::string der = pseudo_random(200, 99);
    const auto split =
        cut_encoded_blobs("-----BEGIN CERTIFICATE-----\n" + base64(der, 64) + "-----END CERTIFICATE-----\n");
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].kind == "base64");
    CHECK(split.blobs[0].decoded == der);
  }
  SUBCASE("unterminated armour ends at the first non-armour line") {
    const auto split = cut_encoded_blobs("-----BEGIN PGP MESSAGE-----\n\n" + armour_body + "\nSee you.\n");
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.text == "[[mukai-blob:0]]\n\nSee you.\n");
  }
  SUBCASE("a quoted BEGIN line in prose is not a blob") {
    const std::string text =
        "Paste the line -----BEGIN PGP MESSAGE----- yourself.\n-----BEGIN PGP MESSAGE-----\nok?\n";
    CHECK(cut_encoded_blobs(text).blobs.empty());
  }
}

TEST_CASE("bare base64 runs") {
  const std::string payload = pseudo_random(2000, 3);
  SUBCASE("decoded, text around preserved") {
    const auto split = cut_encoded_blobs("See attached:\n\n" + base64(payload) + "\nThanks\n");
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].kind == "base64");
    CHECK(split.blobs[0].decoded == payload);
    CHECK(split.text == "See attached:\n\n[[mukai-blob:0]]\n\nThanks\n");
  }
  SUBCASE("the ClamAV base64 mbox") {
    const std::string exe = read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/attachments-clamav/clam.exe");
    const auto split = cut_encoded_blobs(
        read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/attachments-clamav/clam.exe.mbox.base64"));
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].decoded == exe);
    CHECK(split.text.find("Content-Transfer-Encoding: Base64\n\n[[mukai-blob:0]]\n") != std::string::npos);
  }
  SUBCASE("three long lines are not enough") {
    const std::string three = base64(pseudo_random(3 * 57, 4));
    CHECK(cut_encoded_blobs(three).blobs.empty());
    CHECK(cut_encoded_blobs(base64(pseudo_random(3 * 57 + 10, 4))).blobs.size() == 1);  // 3 full + 1 short
  }
  SUBCASE("checksum lists and separators are not base64") {
    const std::string hashes =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f\n"
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0\n";
    CHECK(cut_encoded_blobs(hashes).blobs.empty());
    std::string rules;
    for (int i = 0; i < 5; ++i) rules += std::string(72, '=') + "\n";
    CHECK(cut_encoded_blobs(rules).blobs.empty());
  }
  SUBCASE("ragged or damaged runs are cut too, kept raw") {
    // Encoded data wrapped irregularly or broken on purpose must not pass as text: the loose rule
    // (4+ lines of 40+ base64-alphabet characters) cuts it and keeps the raw lines.
    std::string flat;
    for (char c : base64(pseudo_random(400, 6)))
      if (c != '\n' && c != '\r') flat += c;
    std::string ragged;
    for (std::size_t i = 0, at = 0; i < 6; ++i) {
      ragged += flat.substr(at, 44 + 4 * i) + "\n";
      at += 44 + 4 * i;
    }
    auto r = cut_encoded_blobs(ragged);
    REQUIRE(r.blobs.size() == 1);
    CHECK(r.blobs[0].decoded == ragged.substr(0, ragged.size() - 1));
    std::string bad = base64(pseudo_random(300, 5));
    bad.insert(bad.size() - 1, "A");  // 4n+1 characters
    auto b = cut_encoded_blobs(bad);
    REQUIRE(b.blobs.size() == 1);
    CHECK(b.blobs[0].kind == "base64");
  }
}

TEST_CASE("placeholders are unambiguous") {
  const std::string text = "literal [[mukai-blob:0]] in the text\n" + base64(pseudo_random(400)) + "end\n";
  const auto split = cut_encoded_blobs(text);
  REQUIRE(split.blobs.size() == 1);
  CHECK(split.text == "literal [ [mukai-blob:0]] in the text\n[[mukai-blob:0]]\nend\n");
}

TEST_CASE("several kinds in one body, indices in order") {
  const std::string text = "a\n" + uuencode("hello", "h.txt") + "b\n" + base64(pseudo_random(500)) + "c\n" +
                           "=ybegin line=128 size=2 name=y.bin\nkk\n=yend size=2\nd\n";
  const auto split = cut_encoded_blobs(text);
  REQUIRE(split.blobs.size() == 3);
  CHECK(split.blobs[0].kind == "uuencode");
  CHECK(split.blobs[1].kind == "base64");
  CHECK(split.blobs[2].kind == "yenc");
  CHECK(split.text == "a\n[[mukai-blob:0]]\nb\n[[mukai-blob:1]]\nc\n[[mukai-blob:2]]\nd\n");
  for (const auto& b : split.blobs) CHECK(b.begin < b.end);
}

TEST_CASE("line endings: LF, CRLF and lone CR") {
  std::string crlf, cr;
  for (const char c : "x\n" + base64(pseudo_random(500)) + "y\n") {
    crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    cr += c == '\n' ? '\r' : c;
  }
  CHECK(cut_encoded_blobs(crlf).text == "x\r\n[[mukai-blob:0]]\r\ny\r\n");
  CHECK(cut_encoded_blobs(cr).text == "x\r[[mukai-blob:0]]\ry\r");
}

TEST_CASE("loose runs: the look-ahead skips no run") {
  // Loose lines: 41 characters (never a strict run: not a multiple of 4), many symbols, no decode.
  const auto loose = [](int k) {
    std::string l = "QmFzZTY0IGxvb3NlIGxpbmUgbnVtYmVy" + std::to_string(1000 + k);
    l += std::string(41 - l.size(), 'Z');
    return l + "\n";
  };
  const std::string fill = "1XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n";  // long, few symbols
  SUBCASE("a run right after long lines that are not data") {
    const std::string text = fill + fill + loose(1) + loose(2) + loose(3) + loose(4) + "end\n";
    const auto split = cut_encoded_blobs(text);
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].begin == 2 * fill.size());
    CHECK(split.text == fill + fill + "[[mukai-blob:0]]\nend\n");
  }
  SUBCASE("three lines, a break, then four: only the four are cut") {
    const std::string text =
        loose(1) + loose(2) + loose(3) + fill + loose(4) + loose(5) + loose(6) + loose(7);
    const auto split = cut_encoded_blobs(text);
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].begin == 3 * loose(1).size() + fill.size());
    CHECK(split.text == loose(1) + loose(2) + loose(3) + fill + "[[mukai-blob:0]]\n");
  }
  SUBCASE("a run that ends the text, without a final line end") {
    std::string text = fill + loose(1) + loose(2) + loose(3) + loose(4);
    text.pop_back();
    const auto split = cut_encoded_blobs(text);
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.text == fill + "[[mukai-blob:0]]");
  }
  SUBCASE("fewer lines left than a run needs") {
    const std::string text = fill + loose(1) + loose(2) + loose(3);
    CHECK(cut_encoded_blobs(text).blobs.empty());
  }
}

TEST_CASE("lone CR line ends longer than the line search window") {
  std::string cr_text = std::string(1500, 'a') + "\r";
  for (const char c : base64(pseudo_random(900))) cr_text += c == '\n' ? '\r' : c;
  cr_text += std::string(700, 'b') + "\r\r" + std::string(3000, 'c');
  std::string lf_text = cr_text;
  for (char& c : lf_text)
    if (c == '\r') c = '\n';
  const auto cr = cut_encoded_blobs(cr_text);
  const auto lf = cut_encoded_blobs(lf_text);
  REQUIRE(cr.blobs.size() == 1);
  REQUIRE(lf.blobs.size() == 1);
  CHECK(cr.blobs[0].begin == lf.blobs[0].begin);
  CHECK(cr.blobs[0].end == lf.blobs[0].end);
  std::string cr_decoded = cr.blobs[0].decoded;  // raw lines when only the loose rule matched
  for (char& c : cr_decoded)
    if (c == '\r') c = '\n';
  CHECK(cr_decoded == lf.blobs[0].decoded);
}

TEST_CASE("in place: the same text and blobs as the copying form") {
  const std::string payload = pseudo_random(600, 9);
  for (const std::string& text :
       {prose, japanese, std::string(), std::string("literal [[mukai-blob:0]] only\n"),
        "a\n" + uuencode(payload, "u.bin") + "b\n" + base64(payload) + "c [[mukai-blob:\n"}) {
    const auto split = cut_encoded_blobs(text);
    std::string in_place = text;
    const auto blobs = cut_encoded_blobs_in_place(in_place);
    CHECK(in_place == split.text);
    REQUIRE(blobs.size() == split.blobs.size());
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      CHECK(blobs[i].begin == split.blobs[i].begin);
      CHECK(blobs[i].end == split.blobs[i].end);
      CHECK(blobs[i].kind == split.blobs[i].kind);
      CHECK(blobs[i].decoded == split.blobs[i].decoded);
    }
  }
}

TEST_CASE("large and hostile input stays linear") {
  SUBCASE("1 MB of base64 lines") {
    const std::string payload = pseudo_random(780 * 1024);
    const std::string text = base64(payload);
    REQUIRE(text.size() > 1000000);
    const auto start = std::chrono::steady_clock::now();
    const auto split = cut_encoded_blobs(text);
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].decoded == payload);
    CHECK(took < std::chrono::seconds(2));  // ~10 ms in release; quadratic would take minutes
  }
  SUBCASE("pathological shapes") {
    std::string many_begins, many_armours, short_runs, one_line(2'000'000, 'A'), newlines(2'000'000, '\n');
    std::string hex_list, plus_rules;  // long equal-width runs the strict rule rejects as a whole
    for (int i = 0; i < 50000; ++i) {
      many_begins += "begin 644 x\n";
      many_armours += "-----BEGIN PGP MESSAGE-----\n";
      hex_list += "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n";
      plus_rules += std::string(76, '+') + "\n";
      short_runs +=
          std::string(76, 'Q') + "\n" + std::string(76, 'Q') + "\n" + std::string(76, 'Q') + "\nz\n";
    }
    const auto start = std::chrono::steady_clock::now();
    for (const std::string* t :
         {&many_begins, &many_armours, &short_runs, &one_line, &newlines, &hex_list, &plus_rules}) {
      const auto split = cut_encoded_blobs(*t);
      CHECK(split.blobs.empty());
      CHECK(split.text == *t);
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  }
  SUBCASE("BinHex run-length bombs are capped") {
    // ':' + an RLE stream repeating one byte 255 times per 2 input bytes, never a valid header.
    std::string body = "(This file must be converted with BinHex 4.0)\n:";
    for (int i = 0; i < 20000; ++i) body += "i@!!";
    body += ":\n";
    const auto split = cut_encoded_blobs(body);
    REQUIRE(split.blobs.size() == 1);
    CHECK(split.blobs[0].decoded.size() <= body.size());  // raw block, not an expansion
  }
}

TEST_CASE("decoded blobs feed content inspection") {
  const std::string exe = read_file(std::string(MUKAI_SHARED_DIR) + "/corpus/attachments-clamav/clam.exe");
  const auto split = cut_encoded_blobs("Run this:\n" + uuencode(exe, "setup.exe"));
  REQUIRE(split.blobs.size() == 1);
  const auto facts = inspect_content(split.blobs[0].decoded, split.blobs[0].filename, "");
  CHECK(facts.has(mukai::config::content_flag::executable));
}
