// Turns message bytes into what goes on the wire after DATA (or inside BDAT chunks), streaming:
// line endings are normalised to CRLF (a bare LF or a bare CR becomes CRLF, so the next hop never
// sees an ambiguous line end that it might read as the end of data: the "SMTP smuggling" class),
// and for DATA a line that starts with '.' gets one more '.' (RFC 5321 4.5.2). finish() ends the
// last line with CRLF if needed and, for DATA, appends the terminating ".\r\n".
// The output for one input chunk is at most twice its size plus 2 bytes, so the caller bounds
// memory by bounding the chunk. Feeding the same bytes in any split gives the same output.
// Threading: an encoder is a plain value used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mukai::server {

class smtp_data_encoder {
 public:
  enum class mode : std::uint8_t {
    data,  // dot-stuffing and the ".\r\n" terminator
    bdat,  // CRLF normalisation only (BDAT carries an exact byte count)
  };
  explicit smtp_data_encoder(mode m) noexcept : mode_(m) {}

  // Appends the encoded form of `in` to `out`.
  void encode(std::string_view in, std::string& out);
  // The length of the longest prefix of `in` that encode() would copy unchanged, consumed as if
  // encode() had been given it: the caller sends those bytes as they are and passes the rest of
  // `in` to encode(). So text that needs no change (CRLF lines, no leading dot) is never copied.
  [[nodiscard]] std::size_t take_verbatim(std::string_view in) noexcept;
  // Appends the end of the message to `out`. The encoder must not be used afterwards.
  void finish(std::string& out);

  // The size the message has once its line endings are CRLF (without dot-stuffing): the SIZE=
  // value (RFC 1870).
  [[nodiscard]] static std::uint64_t normalised_size(std::string_view message) noexcept;

 private:
  mode mode_;
  bool line_start_ = true;
  bool pending_cr_ = false;
};

}  // namespace mukai::server
