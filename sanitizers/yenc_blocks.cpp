// Byte-level yEnc scanner (see yenc_blocks.hpp). "=ybegin " occurrences are found with one
// substring search; only those at a line start open a block, which is then walked line by line to
// its "=yend" line, so every byte is looked at a bounded number of times. The CRC is zlib's.
// Threading: pure; all state is local to one call.
#include "sanitizers/yenc_blocks.hpp"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include "sanitizers/text_lines.hpp"

namespace mukai::sanitize {
namespace {

constexpr std::string_view begin_keyword = "=ybegin ";
constexpr std::string_view part_keyword = "=ypart ";
constexpr std::string_view end_keyword = "=yend";
// File systems refuse longer names; a longer name= is a crafted header.
constexpr std::size_t max_filename = 255;

// `v` without its first n bytes; empty if it is shorter. Why: a keyword line is trimmed before it
// is parsed, so "=ybegin " followed by white space only is shorter than its own keyword.
std::string_view after(std::string_view v, std::size_t n) noexcept { return v.substr(std::min(n, v.size())); }

bool at_line_start(std::string_view s, std::size_t pos) noexcept {
  return pos == 0 || s[pos - 1] == '\n' || s[pos - 1] == '\r';
}

bool is_end_line(std::string_view v) noexcept {
  return v.starts_with(end_keyword) && (v.size() == end_keyword.size() || v[end_keyword.size()] == ' ');
}

// The "key=value" words of a keyword line (after its "=yxxx" word). Why a duplicate key fails the
// whole line: two size= or crc32= values are read differently by different decoders.
struct keywords {
  std::optional<std::uint64_t> line, size, part, total, begin, end;
  std::optional<std::uint32_t> crc32, pcrc32;
  bool ok = true;
};

// Digits only (no sign, no white space), at most max_digits of them. CRCs are hex, and some encoders
// drop their leading zeros, so 1 to 8 digits.
template <class Number>
std::optional<Number> parse_number(std::string_view v, int base, std::size_t max_digits) noexcept {
  Number n = 0;
  if (v.empty() || v.size() > max_digits) return std::nullopt;
  const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n, base);
  if (ec != std::errc() || ptr != v.data() + v.size()) return std::nullopt;
  return n;
}

std::optional<std::uint64_t> parse_decimal(std::string_view v) noexcept { return parse_number<std::uint64_t>(v, 10, 19); }
std::optional<std::uint32_t> parse_crc(std::string_view v) noexcept { return parse_number<std::uint32_t>(v, 16, 8); }

keywords parse_keywords(std::string_view words) {
  keywords k;
  while (!words.empty()) {
    const auto space = words.find(' ');
    const std::string_view word = words.substr(0, space);
    words = space == std::string_view::npos ? std::string_view() : words.substr(space + 1);
    if (word.empty()) continue;
    const auto eq = word.find('=');
    if (eq == std::string_view::npos) {
      k.ok = false;
      continue;
    }
    const std::string_view key = word.substr(0, eq), value = word.substr(eq + 1);
    const auto set = [&](auto& field, auto parsed) {
      if (field || !parsed) k.ok = false;
      else field = parsed;
    };
    if (key == "line") set(k.line, parse_decimal(value));
    else if (key == "size") set(k.size, parse_decimal(value));
    else if (key == "part") set(k.part, parse_decimal(value));
    else if (key == "total") set(k.total, parse_decimal(value));
    else if (key == "begin") set(k.begin, parse_decimal(value));
    else if (key == "end") set(k.end, parse_decimal(value));
    else if (key == "crc32") set(k.crc32, parse_crc(value));
    else if (key == "pcrc32") set(k.pcrc32, parse_crc(value));
    // Other keywords (future versions' additions) are ignored, as the spec asks of decoders.
  }
  return k;
}

std::uint32_t crc32_of(std::string_view bytes) noexcept {
  return static_cast<std::uint32_t>(
      ::crc32_z(::crc32_z(0, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

class block_reader {
 public:
  block_reader(std::string_view s, const yenc_limits& limits) : s_(s), limits_(limits) {}

  // The block whose "=ybegin " line starts at `begin`.
  yenc_block read(std::size_t begin) {
    block_.begin = begin;
    const line_view header = line_at(s_, begin);
    end_ = header.end;
    read_header(rtrim_blanks(line_content(s_, header)));
    std::size_t pos = header.next;
    if (pos < s_.size()) {
      const line_view l = line_at(s_, pos);
      if (line_content(s_, l).starts_with(part_keyword)) {
        read_ypart(rtrim_blanks(line_content(s_, l)));
        end_ = l.end;
        pos = l.next;
      }
    }
    if (head_.part.has_value() != ypart_.has_value()) fail("bad-ypart");
    bool terminated = false;
    while (pos < s_.size()) {
      const line_view l = line_at(s_, pos);
      const std::string_view v = line_content(s_, l);
      if (v.starts_with(begin_keyword)) break;  // the next file: ours ended without =yend
      end_ = l.end;
      pos = l.next;
      if (is_end_line(v)) {
        terminated = true;
        check_trailer(parse_keywords(after(rtrim_blanks(v), end_keyword.size())));
        break;
      }
      // Data lines are not trimmed: a trailing space or TAB is data (bytes 0xF6, 0xDF).
      if (v.size() > line_limit_) fail("line-too-long");
      if (block_.problem.empty()) decode_yenc_line(v, block_.bytes);
    }
    if (!terminated) fail("no-yend");
    block_.end = end_;
    if (!block_.problem.empty()) block_.bytes.assign(s_.substr(block_.begin, block_.end - block_.begin));
    return std::move(block_);
  }

 private:
  void fail(std::string_view problem) {
    if (block_.problem.empty()) block_.problem = problem;
    std::string().swap(block_.bytes);
  }

  // name= is the last keyword and runs to the end of the line: it may contain spaces and '='.
  void read_header(std::string_view h) {
    const std::string_view words = after(h, begin_keyword.size());
    std::size_t name_at = words.starts_with("name=") ? 0 : words.find(" name=");
    if (name_at != std::string_view::npos && name_at > 0) ++name_at;  // at "name="
    if (name_at == std::string_view::npos) {
      head_ = parse_keywords(words);
      fail("bad-header");
    } else {
      const std::string_view name = words.substr(name_at + 5);
      block_.filename.assign(name.substr(0, max_filename));
      head_ = parse_keywords(words.substr(0, name_at));
      if (name.empty() || name.size() > max_filename) fail("bad-header");
    }
    if (!head_.ok || !head_.size || !head_.line || *head_.line == 0 || *head_.line > limits_.max_line) {
      fail("bad-header");
    } else {
      line_limit_ = static_cast<std::size_t>(*head_.line) + limits_.line_slack;
    }
    if (head_.size && *head_.size > limits_.max_size) fail("too-large");
  }

  void read_ypart(std::string_view v) {
    const keywords k = parse_keywords(after(v, part_keyword.size()));
    if (!k.ok || !k.begin || !k.end || *k.begin == 0 || *k.end < *k.begin || (head_.size && *k.end > *head_.size)) {
      fail("bad-ypart");
      return;
    }
    ypart_ = std::pair{*k.begin, *k.end};
  }

  // Run once the block's data is read: sizes first (a truncated or padded block), then CRCs.
  void check_trailer(const keywords& t) {
    if (!block_.problem.empty()) return;
    if (!t.ok || !t.size || (t.part && t.part != head_.part)) {
      fail("bad-trailer");
      return;
    }
    const std::uint64_t expected = ypart_ ? ypart_->second - ypart_->first + 1 : *head_.size;
    if (*t.size != expected || block_.bytes.size() != expected) {
      fail("size-mismatch");
      return;
    }
    const bool whole_file = !ypart_ || (ypart_->first == 1 && ypart_->second == *head_.size);
    if (t.pcrc32 || (t.crc32 && whole_file)) {
      const std::uint32_t crc = crc32_of(block_.bytes);
      if ((t.pcrc32 && *t.pcrc32 != crc) || (t.crc32 && whole_file && *t.crc32 != crc)) fail("crc-mismatch");
    }
  }

  std::string_view s_;
  const yenc_limits& limits_;
  yenc_block block_;
  keywords head_;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> ypart_;  // =ypart begin, end
  std::size_t line_limit_ = 0;
  std::size_t end_ = 0;
};

// The last block once max_blocks were found: the rest of the input, trailing line breaks outside.
yenc_block rest_as_block(std::string_view s, std::size_t begin) {
  std::size_t end = s.size();
  while (end > begin && (s[end - 1] == '\n' || s[end - 1] == '\r')) --end;
  yenc_block b;
  b.begin = begin;
  b.end = end;
  b.problem = "too-many-blocks";
  b.bytes.assign(s.substr(begin, end - begin));
  return b;
}

}  // namespace

void decode_yenc_line(std::string_view v, std::string& out) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    auto c = static_cast<unsigned char>(v[i]);
    if (c == '=') {
      if (++i == v.size()) break;
      c = static_cast<unsigned char>(static_cast<unsigned char>(v[i]) - 64);
    }
    out.push_back(static_cast<char>(static_cast<unsigned char>(c - 42)));
  }
}

std::vector<yenc_block> find_yenc_blocks(std::string_view s, const yenc_limits& limits) {
  std::vector<yenc_block> blocks;
  for (std::size_t pos = s.find(begin_keyword); pos != std::string_view::npos; pos = s.find(begin_keyword, pos)) {
    if (!at_line_start(s, pos)) {
      ++pos;
      continue;
    }
    if (blocks.size() >= limits.max_blocks) {
      blocks.push_back(rest_as_block(s, pos));
      break;
    }
    blocks.push_back(block_reader(s, limits).read(pos));
    pos = blocks.back().end;
  }
  return blocks;
}

std::vector<std::string_view> yenc_text_segments(std::string_view s, const std::vector<yenc_block>& blocks) {
  std::vector<std::string_view> segments;
  segments.reserve(blocks.size() + 1);
  std::size_t from = 0;
  for (const auto& b : blocks) {
    segments.push_back(s.substr(from, b.begin - from));
    from = b.end;
  }
  segments.push_back(s.substr(from));
  return segments;
}

}  // namespace mukai::sanitize
