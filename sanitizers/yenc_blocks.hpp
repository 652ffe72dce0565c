// yEnc blocks in the raw bytes of a text part, found and decoded before any charset decoding.
// Why at the byte level: yEnc writes every byte value raw except NUL, LF, CR and '=', so its text
// carries 0x80-0xFF and C0/C1 controls. A charset decoder would replace or reinterpret them (an
// ESC switches ISO-2022-JP's mode, an invalid UTF-8 sequence becomes U+FFFD) and the "binary
// declared as text" test would take the whole part for binary. So the engine cuts these blocks
// from the part's transfer-decoded bytes first, decodes them exactly, and lets only the bytes
// around them through the text pipeline. (cut_encoded_blobs still finds the encodings that are
// plain ASCII, and yEnc that only appears after charset decoding.)
// Recognised (yEnc 1.3): a line starting "=ybegin " with line=, size= and name= (name last, to the
// end of the line; part=/total= for multipart posts), then "=ypart begin= end=" when part= is
// given, data lines, and a line starting "=yend" with size= and optionally crc32=/pcrc32=.
// Invariants: one forward pass; every line is looked at a bounded number of times; at most
// limits.max_blocks + 1 blocks per call; the decoded bytes of a block never exceed its encoded
// bytes. A block that fails any check (no =yend, bad header, size or CRC mismatch, a line longer
// than its line= allows, a size over the limit) is still cut, with its raw bytes instead of a
// decoding: the region is removed either way (fail closed). Never throws except std::bad_alloc.
// Threading: pure function; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::sanitize {

struct yenc_limits {
  // After this many blocks, the text from the next "=ybegin" line to the end of the part is one
  // last block (problem "too-many-blocks"): the count of removed parts per text part stays bounded.
  std::size_t max_blocks = 1000;
  // size= above this is not decoded (problem "too-large").
  std::uint64_t max_size = 50ull * 1024 * 1024;
  // line= above this is absurd (problem "bad-header"); data lines may exceed line= by
  // line_slack bytes (an escape at the end of a line pushes it one over; some encoders two).
  std::size_t max_line = 8192;
  std::size_t line_slack = 3;
};

struct yenc_block {
  // Byte range in the input: from the start of the "=ybegin" line to the end of the last line's
  // content ("=yend", or the last data line if there is none); that line's CR/LF stays outside.
  std::size_t begin = 0, end = 0;
  std::string filename;  // name= without trailing white space; "" if the header has none
  // Empty when the block decoded and verified; otherwise one of "no-yend", "bad-header",
  // "bad-ypart", "bad-trailer", "size-mismatch", "crc-mismatch", "line-too-long", "too-large",
  // "too-many-blocks".
  std::string problem;
  // The decoded bytes when `problem` is empty, else the raw block (input[begin, end)).
  std::string bytes;
};

// The yEnc blocks of `bytes`, in order, not overlapping. A block ends at its "=yend" line; without
// one, before the next "=ybegin " line or at the end of the input (the data can look like anything).
// For a multipart post (part=) the bytes are this part's share of the file: its size must match
// =ypart's range and =yend size=, and pcrc32= is checked; crc32= (of the whole file) is checked
// when the part covers the whole file.
[[nodiscard]] std::vector<yenc_block> find_yenc_blocks(std::string_view bytes, const yenc_limits& limits = {});

// Appends the bytes one yEnc data line (without its line break) encodes: each byte is written +42,
// a critical one escaped as '=' + (byte + 42 + 64). A '=' ending the line has lost its byte and is
// dropped (a block's size check catches that).
void decode_yenc_line(std::string_view line, std::string& out);

// The input without the blocks' byte ranges: `blocks.size() + 1` segments, each starting at a line
// start (the first one at 0). Views into `bytes`.
[[nodiscard]] std::vector<std::string_view> yenc_text_segments(std::string_view bytes,
                                                               const std::vector<yenc_block>& blocks);

}  // namespace mukai::sanitize
