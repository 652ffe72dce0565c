// smtp_data_encoder: CRLF normalisation (bare LF, bare CR, CR at a chunk boundary), dot-stuffing at
// every line start including after a split, the terminator, BDAT mode, and that any split of the input
// gives the same output, and random inputs in random pieces against the byte-at-a-time rules.
#include "server/smtp_data_encoder.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>

using namespace mukai::server;

namespace {

std::string encode_whole(std::string_view in, smtp_data_encoder::mode m) {
  smtp_data_encoder e(m);
  std::string out;
  e.encode(in, out);
  e.finish(out);
  return out;
}

std::string encode_split(std::string_view in, smtp_data_encoder::mode m, std::size_t piece) {
  smtp_data_encoder e(m);
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += piece) e.encode(in.substr(i, piece), out);
  e.finish(out);
  return out;
}

}  // namespace

TEST_CASE("DATA: normalisation, dot-stuffing and terminator") {
  using m = smtp_data_encoder::mode;
  CHECK(encode_whole("", m::data) == ".\r\n");
  CHECK(encode_whole("a", m::data) == "a\r\n.\r\n");
  CHECK(encode_whole("a\r\n", m::data) == "a\r\n.\r\n");
  CHECK(encode_whole(".", m::data) == "..\r\n.\r\n");
  CHECK(encode_whole("a\n.\nb", m::data) == "a\r\n..\r\nb\r\n.\r\n");
  CHECK(encode_whole("a\r.\rb", m::data) == "a\r\n..\r\nb\r\n.\r\n");
  CHECK(encode_whole("a\r\n.\r\n", m::data) ==
        "a\r\n..\r\n.\r\n");  // a lone dot line cannot end the data early
  CHECK(encode_whole("a\r\r\nb", m::data) == "a\r\n\r\nb\r\n.\r\n");
  CHECK(encode_whole("x.y\r\n ..z", m::data) == "x.y\r\n ..z\r\n.\r\n");
  CHECK(encode_whole("a\r", m::data) == "a\r\n.\r\n");
  CHECK(encode_whole(std::string_view("a\0b", 3), m::data) == std::string("a\0b\r\n.\r\n", 8));
}

TEST_CASE("BDAT: normalisation only") {
  using m = smtp_data_encoder::mode;
  CHECK(encode_whole("", m::bdat).empty());
  CHECK(encode_whole(".a\n.", m::bdat) == ".a\r\n.\r\n");
  CHECK(encode_whole("a\rb", m::bdat) == "a\r\nb\r\n");
}

TEST_CASE("any split gives the same output; normalised_size matches BDAT output") {
  const std::string input = ".start\r\n.\r\nbare\nlf\rcr\r\r\n\n..dots\r\n.end\r";
  for (auto mode : {smtp_data_encoder::mode::data, smtp_data_encoder::mode::bdat}) {
    const std::string whole = encode_whole(input, mode);
    for (std::size_t piece = 1; piece <= input.size(); ++piece) {
      CAPTURE(piece);
      CHECK(encode_split(input, mode, piece) == whole);
    }
  }
  for (std::string_view s : {std::string_view(""), std::string_view("a"), std::string_view("a\n"),
                             std::string_view("a\r"), std::string_view("a\r\nb"), std::string_view(input)}) {
    CAPTURE(s);
    CHECK(smtp_data_encoder::normalised_size(s) == encode_whole(s, smtp_data_encoder::mode::bdat).size());
  }
}

namespace {

// The encoder's rules, one byte at a time (the encoder itself copies runs between line breaks).
std::string reference_encode(std::string_view in, smtp_data_encoder::mode m) {
  std::string out;
  bool line_start = true;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '\r' || c == '\n') {
      out += "\r\n";  // CRLF, a bare CR and a bare LF all end the line with CRLF
      if (c == '\r' && i + 1 < in.size() && in[i + 1] == '\n') ++i;
      line_start = true;
      continue;
    }
    if (line_start && c == '.' && m == smtp_data_encoder::mode::data) out += '.';
    out += c;
    line_start = false;
  }
  if (!line_start) out += "\r\n";
  if (m == smtp_data_encoder::mode::data) out += ".\r\n";
  return out;
}

}  // namespace

TEST_CASE("random inputs in random pieces: the same as the byte-at-a-time rules") {
  std::mt19937 rng(5321);
  const std::string_view alphabets[] = {"ab.\r\n", "\r\n.", "abcdefghij\r\n", std::string_view("a.\r\n\0\x80", 6)};
  for (int round = 0; round < 2000; ++round) {
    const std::string_view alphabet = alphabets[round % 4];
    std::string in(rng() % 120, ' ');
    for (char& c : in) c = alphabet[rng() % alphabet.size()];
    CAPTURE(in);
    for (auto mode : {smtp_data_encoder::mode::data, smtp_data_encoder::mode::bdat}) {
      const std::string expected = reference_encode(in, mode);
      // Random piece sizes, including empty pieces.
      smtp_data_encoder e(mode);
      std::string out;
      for (std::size_t i = 0; i < in.size();) {
        const std::size_t piece = rng() % 9;
        e.encode(std::string_view(in).substr(i, piece), out);
        i += piece;
      }
      e.finish(out);
      REQUIRE(out == expected);

      // As the delivery client sends: each piece's verbatim prefix as it is, then encode() the rest.
      smtp_data_encoder v(mode);
      std::string sent;
      for (std::size_t i = 0; i < in.size();) {
        const std::string_view piece = std::string_view(in).substr(i, rng() % 9);
        const std::size_t keep = v.take_verbatim(piece);
        REQUIRE(keep <= piece.size());
        sent.append(piece.substr(0, keep));
        v.encode(piece.substr(keep), sent);
        i += piece.size();
      }
      v.finish(sent);
      REQUIRE(sent == expected);
    }
    REQUIRE(smtp_data_encoder::normalised_size(in) == reference_encode(in, smtp_data_encoder::mode::bdat).size());
  }
}

TEST_CASE("take_verbatim: how much goes out unchanged") {
  using m = smtp_data_encoder::mode;
  CHECK(smtp_data_encoder(m::data).take_verbatim("abc\r\ndef\r\n") == 10);
  CHECK(smtp_data_encoder(m::data).take_verbatim("abc\r\n.def\r\n") == 5);  // up to the dot to stuff
  CHECK(smtp_data_encoder(m::bdat).take_verbatim("abc\r\n.def\r\n") == 11);  // BDAT stuffs nothing
  CHECK(smtp_data_encoder(m::data).take_verbatim(".abc") == 0);
  CHECK(smtp_data_encoder(m::data).take_verbatim("ab\ncd") == 2);   // a bare LF is normalised
  CHECK(smtp_data_encoder(m::data).take_verbatim("ab\rcd") == 2);   // a bare CR too
  CHECK(smtp_data_encoder(m::data).take_verbatim("ab\r") == 2);     // a final CR waits for the next piece
  CHECK(smtp_data_encoder(m::data).take_verbatim("") == 0);
  smtp_data_encoder e(m::data);
  CHECK(e.take_verbatim("abc\r\n") == 5);
  CHECK(e.take_verbatim(".x\r\n") == 0);  // the state carries over: a new line begins with a dot
}
