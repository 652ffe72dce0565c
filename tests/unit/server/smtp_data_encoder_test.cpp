// smtp_data_encoder: CRLF normalisation (bare LF, bare CR, CR at a chunk boundary), dot-stuffing at
// every line start including after a split, the terminator, BDAT mode, and that any split of the input
// gives the same output.
#include "server/smtp_data_encoder.hpp"

#include <doctest/doctest.h>

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
