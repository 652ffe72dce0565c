// Encoded-blob scanner (see text_blobs.hpp). A hand-written line scanner: each recogniser
// starts at a line, walks forward over the lines it can consume and either claims them or
// tells the main loop where to resume, so every line is looked at O(1) times.
// Threading: pure; all state is local to one call.
#include "sanitizers/text_blobs.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>

#include "sanitizers/text_lines.hpp"
#include "sanitizers/yenc_blocks.hpp"

namespace mukai::sanitize {
namespace {

constexpr std::string_view placeholder_prefix = blob_marker_prefix;
// BinHex run-length coding expands up to ~95x; anything bigger than this is stored raw.
constexpr std::size_t max_binhex_output = 64ull * 1024 * 1024;
constexpr std::size_t min_base64_width = 40;
constexpr std::size_t min_base64_lines = 4;

// What a recogniser claimed: lines up to `last` (inclusive).
struct claim {
  line_view last;
  std::string kind;
  std::string filename;
  std::string decoded;
};

// ---- base64 ---------------------------------------------------------------------------------

// A table, because every line of 40 or more characters is tested character by character.
constexpr std::array<signed char, 256> base64_values = [] {
  std::array<signed char, 256> t{};
  t.fill(-1);
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = static_cast<signed char>(c - 'A');
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = static_cast<signed char>(c - 'a' + 26);
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = static_cast<signed char>(c - '0' + 52);
  t['+'] = 62;
  t['/'] = 63;
  return t;
}();

int base64_value(char c) noexcept { return base64_values[static_cast<unsigned char>(c)]; }

class base64_decoder {
 public:
  void feed(std::string_view chars) {
    for (const char c : chars) {
      if (c == '=') {
        ++padding_;
        continue;
      }
      const int v = base64_value(c);
      if (v < 0 || padding_ > 0) {  // foreign byte, or data after padding
        bad_ = true;
        return;
      }
      acc_ = ((acc_ << 6) | static_cast<std::uint32_t>(v)) & 0xFFFFFFu;
      bits_ += 6;
      ++count_;
      if (bits_ >= 8) {
        bits_ -= 8;
        out_.push_back(static_cast<char>((acc_ >> bits_) & 0xFF));
      }
    }
  }
  // Clean: no foreign bytes, no dangling 6 bits, padding (if any) completing a quantum.
  [[nodiscard]] bool finish() const noexcept {
    if (bad_ || count_ % 4 == 1 || padding_ > 2) return false;
    return padding_ == 0 || (count_ + padding_) % 4 == 0;
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  std::uint32_t acc_ = 0;
  int bits_ = 0;
  std::size_t count_ = 0;
  std::size_t padding_ = 0;
  bool bad_ = false;
};

// [A-Za-z0-9+/]+ followed by at most two '='.
bool is_base64_line(std::string_view v, bool* padded = nullptr) noexcept {
  std::size_t n = v.size();
  std::size_t pad = 0;
  while (n > 0 && v[n - 1] == '=' && pad < 2) {
    --n;
    ++pad;
  }
  if (n == 0) return false;
  for (std::size_t i = 0; i < n; ++i) {
    if (base64_value(v[i]) < 0) return false;
  }
  if (padded) *padded = pad > 0;
  return true;
}

// Real base64 is ~97% letters and digits; a line of '+' or '/' is a separator drawn in text.
bool mostly_alphanumeric(std::string_view v) noexcept {
  std::size_t alnum = 0;
  for (const char c : v) alnum += (c != '+' && c != '/' && c != '=');
  return alnum * 2 >= v.size();
}

bool is_hex(std::string_view v) noexcept {
  for (const char c : v) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

// A bare base64 run starting at `first`. On failure *resume is where scanning continues
// (after the lines this run looked at: none of them can start a valid run).
std::optional<claim> try_base64_run(std::string_view s, const line_view& first, std::size_t* resume) {
  *resume = first.next;
  const std::string_view head = rtrim_blanks(line_content(s, first));
  bool padded = false;
  if (head.size() < min_base64_width || head.size() % 4 != 0 || !is_base64_line(head, &padded) || padded ||
      !mostly_alphanumeric(head)) {
    return std::nullopt;
  }
  const std::size_t width = head.size();
  std::size_t lines = 1;
  bool hex_only = is_hex(head);
  line_view last = first;
  base64_decoder dec;
  dec.feed(head);
  for (std::size_t pos = first.next; pos < s.size();) {
    const line_view l = line_at(s, pos);
    const std::string_view v = rtrim_blanks(line_content(s, l));
    bool pad = false;
    if (v.size() > width || !is_base64_line(v, &pad) || !mostly_alphanumeric(v)) break;
    dec.feed(v);
    hex_only = hex_only && is_hex(v);
    last = l;
    ++lines;
    pos = l.next;
    if (v.size() < width || pad) break;  // the short (or padded) line ends the run
  }
  *resume = last.next;
  if (lines < min_base64_lines || hex_only || !dec.finish()) return std::nullopt;
  return claim{last, "base64", "", dec.take()};
}

// The loose rule, a superset of try_base64_run: any run of min_base64_lines lines of at least
// min_base64_width characters from the base64 alphabet (at least half of them alphanumeric,
// so "=====" rules are not data, and not hex only: checksum lists are text), whether or not it
// decodes. Encoded data that was wrapped
// irregularly or damaged on purpose must not pass as text either; it is kept raw.
// Also: at least min_loose_distinct different characters, because encoded data of any payload
// worth hiding uses many of the 64 symbols (a random 76-character line about 45), while fill and
// ruler lines drawn in text ("1XXXX...X", as Postfix's smtp-source sends, "AbAbAb...") use few.
constexpr std::size_t min_loose_distinct = 12;

bool is_loose_base64_line(std::string_view v) noexcept {
  if (v.size() < min_base64_width || is_hex(v)) return false;  // checksum lists are text
  std::size_t alnum = 0;
  std::uint64_t seen = 0;  // bit k: the character of value k occurred (one bit per alphabet symbol)
  for (const char c : v) {
    if (c == '=') continue;
    const int value = base64_value(c);
    if (value < 0) return false;
    alnum += value < 62;  // not '+' (62) or '/' (63)
    seen |= std::uint64_t{1} << value;
  }
  return alnum * 2 >= v.size() && static_cast<std::size_t>(std::popcount(seen)) >= min_loose_distinct;
}

// A loose run needs min_base64_lines qualifying lines, so a run from `first` needs the line
// min_base64_lines - 1 below it as well, and so does a run from any line in between. If that line
// does not qualify (or is missing), returns the end of it: no loose run can start before there.
// nullopt: a run from `first` is possible.
std::optional<std::size_t> loose_runs_blocked_until(std::string_view s, const line_view& first) {
  line_view last = first;
  for (std::size_t k = 1; k < min_base64_lines; ++k) {
    if (last.next >= s.size()) return s.size();  // fewer lines left than a run needs
    last = line_at(s, last.next);
  }
  if (is_loose_base64_line(rtrim_blanks(line_content(s, last)))) return std::nullopt;
  return last.next;
}

std::optional<claim> try_loose_base64_run(std::string_view s, const line_view& first) {
  line_view last = first;
  std::size_t lines = 0;
  for (std::size_t pos = first.begin; pos < s.size();) {
    const line_view l = pos == first.begin ? first : line_at(s, pos);
    if (!is_loose_base64_line(rtrim_blanks(line_content(s, l)))) break;
    last = l;
    ++lines;
    pos = l.next;
  }
  if (lines < min_base64_lines) return std::nullopt;
  return claim{last, "base64", "", std::string(s.substr(first.begin, last.end - first.begin))};
}

// ---- uuencode -------------------------------------------------------------------------------

int uu_value(char c) noexcept { return (static_cast<unsigned char>(c) - 0x20) & 0x3F; }

bool is_uu_char(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x20 && u <= 0x60;
}

// A data line whose length character agrees with its length: at least the characters the
// bytes need minus two (mailers strip trailing spaces, which encode zeros), at most whole
// quanta plus one (some encoders append a checksum character).
bool is_uu_data_line(std::string_view v) noexcept {
  if (v.empty()) return false;
  for (const char c : v) {
    if (!is_uu_char(c)) return false;
  }
  const std::size_t n = static_cast<std::size_t>(uu_value(v[0]));
  if (n == 0 || n > 45) return false;
  const std::size_t chars = v.size() - 1;
  const std::size_t needed = (4 * n + 2) / 3;
  const std::size_t most = (n + 2) / 3 * 4 + 1;
  return chars + 2 >= needed && chars <= most;
}

void decode_uu_line(std::string_view v, std::string& out) {
  const std::size_t n = static_cast<std::size_t>(uu_value(v[0]));
  const auto at = [&](std::size_t i) { return i < v.size() ? uu_value(v[i]) : 0; };
  std::size_t produced = 0;
  for (std::size_t i = 1; produced < n; i += 4) {
    const int c0 = at(i), c1 = at(i + 1), c2 = at(i + 2), c3 = at(i + 3);
    const std::array<int, 3> bytes{(c0 << 2) | (c1 >> 4), ((c1 & 0xF) << 4) | (c2 >> 2),
                                   ((c2 & 0x3) << 6) | c3};
    for (std::size_t k = 0; k < 3 && produced < n; ++k, ++produced)
      out.push_back(static_cast<char>(bytes[k] & 0xFF));
  }
}

// "begin" SP 3-4 octal digits [SP name]; returns false if the line is not such a header.
bool parse_begin(std::string_view line, std::string_view keyword, std::string* name) {
  if (!line.starts_with(keyword)) return false;
  std::string_view rest = line.substr(keyword.size());
  std::size_t digits = 0;
  while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '7') ++digits;
  if (digits < 3 || digits > 4) return false;
  rest.remove_prefix(digits);
  if (!rest.empty()) {
    if (rest.front() != ' ') return false;
    rest.remove_prefix(1);
  }
  *name = std::string(rest);
  return true;
}

std::optional<claim> try_uuencode(std::string_view s, const line_view& header) {
  std::string name;
  if (!parse_begin(rtrim_blanks(line_content(s, header)), "begin ", &name)) return std::nullopt;
  std::string decoded;
  line_view last = header;
  std::size_t data_lines = 0;
  bool terminated = false;
  for (std::size_t pos = header.next; pos < s.size();) {
    const line_view l = line_at(s, pos);
    const std::string_view raw = line_content(s, l);
    if (rtrim_blanks(raw) == "end") {
      last = l;
      terminated = true;
      break;
    }
    if (raw == "`" || rtrim_blanks(raw).empty()) {
      // The zero-length line belongs to the blob only if "end" follows it.
      if (l.next < s.size()) {
        const line_view after = line_at(s, l.next);
        if (rtrim_blanks(line_content(s, after)) == "end") {
          last = after;
          terminated = true;
          break;
        }
      }
      if (raw == "`") last = l;
      break;
    }
    if (!is_uu_data_line(raw)) break;
    decode_uu_line(raw, decoded);
    ++data_lines;
    last = l;
    pos = l.next;
  }
  if (!terminated && data_lines == 0) return std::nullopt;
  return claim{last, "uuencode", std::move(name), std::move(decoded)};
}

std::optional<claim> try_uuencode_base64(std::string_view s, const line_view& header) {
  std::string name;
  if (!parse_begin(rtrim_blanks(line_content(s, header)), "begin-base64 ", &name)) return std::nullopt;
  base64_decoder dec;
  line_view last = header;
  std::size_t data_lines = 0;
  bool terminated = false;
  for (std::size_t pos = header.next; pos < s.size();) {
    const line_view l = line_at(s, pos);
    const std::string_view v = rtrim_blanks(line_content(s, l));
    if (v == "====") {
      last = l;
      terminated = true;
      break;
    }
    if (!is_base64_line(v)) break;
    dec.feed(v);
    ++data_lines;
    last = l;
    pos = l.next;
  }
  if (!terminated && data_lines == 0) return std::nullopt;
  std::string decoded =
      dec.finish() ? dec.take() : std::string(s.substr(header.begin, last.end - header.begin));
  return claim{last, "uuencode", std::move(name), std::move(decoded)};
}

// ---- yEnc -----------------------------------------------------------------------------------

std::optional<claim> try_yenc(std::string_view s, const line_view& header) {
  const std::string_view h = rtrim_blanks(line_content(s, header));
  if (!h.starts_with("=ybegin ")) return std::nullopt;
  const auto name_at = h.find(" name=");
  if (name_at == std::string_view::npos) return std::nullopt;
  std::string name(h.substr(name_at + 6));  // name= is the last keyword: the rest of the line
  std::string decoded;
  line_view last = header;
  for (std::size_t pos = header.next; pos < s.size();) {
    const line_view l = line_at(s, pos);
    const std::string_view v = line_content(s, l);
    if (v.starts_with("=yend")) {
      last = l;
      break;
    }
    if (v.starts_with("=ybegin ")) break;  // the next file: ours ended without =yend
    last = l;
    pos = l.next;
    if (v.starts_with("=ypart ")) continue;
    decode_yenc_line(v, decoded);
  }
  return claim{last, "yenc", std::move(name), std::move(decoded)};
}

// ---- BinHex 4.0 -----------------------------------------------------------------------------

constexpr std::string_view binhex_alphabet =
    "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

int binhex_value(char c) noexcept {
  const auto p = binhex_alphabet.find(c);
  return p == std::string_view::npos ? -1 : static_cast<int>(p);
}

std::uint16_t crc16_xmodem(std::string_view bytes) noexcept {
  std::uint16_t crc = 0;
  for (const char ch : bytes) {
    crc = static_cast<std::uint16_t>(crc ^ (static_cast<unsigned char>(ch) << 8));
    for (int k = 0; k < 8; ++k) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
  }
  return crc;
}

std::uint32_t be32(std::string_view b, std::size_t at) noexcept {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) << 24) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 3]));
}

std::uint16_t be16(std::string_view b, std::size_t at) noexcept {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(b[at]) << 8) |
                                    static_cast<unsigned char>(b[at + 1]));
}

// 6-bit decoding, then 0x90 run-length expansion, then the header (name, lengths, CRC) and
// the data fork with its CRC. False on any inconsistency or if the output would exceed the cap.
bool decode_binhex(std::string_view chars, std::string* name, std::string* data) {
  std::string packed;
  packed.reserve(chars.size() * 3 / 4 + 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : chars) {
    const int v = binhex_value(c);
    if (v < 0) return false;
    acc = ((acc << 6) | static_cast<std::uint32_t>(v)) & 0xFFFFFFu;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      packed.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  std::string out;
  std::size_t needed = max_binhex_output;  // known once the header is in
  bool header_parsed = false;
  std::size_t name_len = 0;
  std::uint32_t data_len = 0;
  unsigned char prev = 0;
  for (std::size_t i = 0; i < packed.size() && out.size() < needed; ++i) {
    const auto b = static_cast<unsigned char>(packed[i]);
    if (b == 0x90) {
      if (++i == packed.size()) return false;
      const auto count = static_cast<unsigned char>(packed[i]);
      if (count == 0) {
        out.push_back(static_cast<char>(0x90));
        prev = 0x90;
      } else {
        if (out.empty() || out.size() + count - 1 > max_binhex_output) return false;
        out.append(count - 1u, static_cast<char>(prev));
      }
    } else {
      out.push_back(static_cast<char>(b));
      prev = b;
    }
    if (!header_parsed && !out.empty()) {
      name_len = static_cast<unsigned char>(out[0]);
      if (name_len < 1 || name_len > 63) return false;
      if (out.size() >= name_len + 22) {
        header_parsed = true;
        data_len = be32(out, name_len + 12);
        const std::uint16_t header_crc = be16(out, name_len + 20);
        if (crc16_xmodem(std::string_view(out).substr(0, name_len + 20)) != header_crc) return false;
        needed = name_len + 22 + static_cast<std::size_t>(data_len) + 2;
        if (needed > max_binhex_output) return false;
      }
    }
  }
  if (!header_parsed || out.size() < needed) return false;
  const std::string_view fork = std::string_view(out).substr(name_len + 22, data_len);
  if (crc16_xmodem(fork) != be16(out, name_len + 22 + data_len)) return false;
  *name = out.substr(1, name_len);
  *data = std::string(fork);
  return true;
}

std::optional<claim> try_binhex(std::string_view s, const line_view& header) {
  if (!line_content(s, header).starts_with("(This file must be converted with BinHex")) return std::nullopt;
  std::string chars;
  line_view last = header;
  bool started = false;
  bool closed = false;
  for (std::size_t pos = header.next; pos < s.size() && !closed;) {
    const line_view l = line_at(s, pos);
    std::string_view v = rtrim_blanks(line_content(s, l));
    pos = l.next;
    if (!started) {
      if (v.empty()) continue;
      if (v.front() != ':') break;
      started = true;
      v.remove_prefix(1);
    }
    bool foreign = false;
    std::size_t take = v.size();
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] == ':') {
        closed = true;
        take = i;
        break;
      }
      if (binhex_value(v[i]) < 0) {
        foreign = true;
        break;
      }
    }
    if (foreign) break;  // prose after an unterminated block: the block ends before it
    chars.append(v.substr(0, take));
    last = l;
  }
  if (!started) return std::nullopt;
  claim c{last, "binhex", "", ""};
  if (!closed || !decode_binhex(chars, &c.filename, &c.decoded)) {
    c.filename.clear();
    c.decoded = std::string(s.substr(header.begin, last.end - header.begin));
  }
  return c;
}

// ---- ASCII armour ---------------------------------------------------------------------------

bool is_armour_header(std::string_view v) noexcept {
  const auto colon = v.find(": ");
  if (colon == std::string_view::npos || colon == 0) return false;
  for (std::size_t i = 0; i < colon; ++i) {
    const char c = v[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::optional<claim> try_armour(std::string_view s, const line_view& header) {
  const std::string_view h = rtrim_blanks(line_content(s, header));
  constexpr std::string_view open = "-----BEGIN ";
  constexpr std::string_view dashes = "-----";
  if (!h.starts_with(open) || h.size() < open.size() + dashes.size() + 1 ||
      h.substr(h.size() - 5) != dashes) {
    return std::nullopt;
  }
  const std::string_view label = h.substr(open.size(), h.size() - open.size() - dashes.size());
  if (label.size() > 64) return std::nullopt;
  for (const char c : label) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == ',' || c == '/';
    if (!ok) return std::nullopt;
  }
  if (label == "PGP SIGNED MESSAGE") return std::nullopt;  // readable text; its signature is cut
  const bool pgp = label.starts_with("PGP ") || label == "PKCS7" || label == "CMS";
  const std::string end_line = "-----END " + std::string(label) + "-----";

  base64_decoder dec;
  line_view last = header;
  bool headers = true;
  bool terminated = false;
  std::size_t data_lines = 0;
  for (std::size_t pos = header.next; pos < s.size();) {
    const line_view l = line_at(s, pos);
    const std::string_view v = rtrim_blanks(line_content(s, l));
    pos = l.next;
    if (v == end_line) {
      last = l;
      terminated = true;
      break;
    }
    if (v.empty()) {  // blank lines never end a blob by themselves, nor extend it
      headers = false;
      continue;
    }
    if (headers && is_armour_header(v)) {
      last = l;
      continue;
    }
    if (!is_base64_line(v) && !(v.front() == '=' && is_base64_line(v.substr(1)))) break;
    headers = false;
    if (v.front() != '=') dec.feed(v);  // "=XXXX" is the OpenPGP CRC-24 line
    ++data_lines;
    last = l;
  }
  if (!terminated && data_lines == 0) return std::nullopt;
  const std::string_view block = s.substr(header.begin, last.end - header.begin);
  if (pgp) return claim{last, "pgp", "", std::string(block)};
  std::string decoded = dec.finish() ? dec.take() : std::string(block);
  return claim{last, "base64", "", std::move(decoded)};
}

// The blobs in `s`, in order (see cut_encoded_blobs).
std::vector<text_blob> find_blobs(std::string_view s) {
  std::vector<text_blob> blobs;
  // A strict run that failed from line L cannot succeed from any line it scanned, so strict
  // attempts resume at its frontier; only the loose rule (which gives up after at most
  // min_base64_lines lines) is retried line by line. Without the frontier, a long list of
  // equal-width hex lines would be rescanned from every line: quadratic.
  std::size_t strict_frontier = 0;
  // Loose attempts test the last line a run would need first (loose_runs_blocked_until): where it
  // fails, the starts up to it are skipped. Long lines that are not data (Postfix's "1XXXX...X"
  // load-test bodies, tables, rulers) are then tested once per min_base64_lines lines instead of
  // once per line; the blobs found are the same.
  std::size_t loose_blocked_until = 0;
  for (std::size_t pos = 0; pos < s.size();) {
    const line_view l = line_at(s, pos);
    const std::string_view v = line_content(s, l);
    std::optional<claim> found;
    std::size_t resume = l.next;
    const char first = v.empty() ? '\0' : v.front();  // most lines start no header: one compare
    if (first == 'b' && v.starts_with("begin ")) {
      found = try_uuencode(s, l);
    } else if (first == 'b' && v.starts_with("begin-base64 ")) {
      found = try_uuencode_base64(s, l);
    } else if (first == '=' && v.starts_with("=ybegin ")) {
      found = try_yenc(s, l);
    } else if (first == '(' && v.starts_with("(This file must be converted with BinHex")) {
      found = try_binhex(s, l);
    } else if (first == '-' && v.starts_with("-----BEGIN ")) {
      found = try_armour(s, l);
    } else if (v.size() >= min_base64_width) {
      if (l.begin >= strict_frontier) {
        found = try_base64_run(s, l, &resume);
        if (!found) strict_frontier = resume;
      }
      if (!found) {
        resume = l.next;  // a loose run may start on any line the strict one skipped
        if (l.begin >= loose_blocked_until) {
          if (const auto blocked = loose_runs_blocked_until(s, l)) {
            loose_blocked_until = *blocked;
          } else {
            found = try_loose_base64_run(s, l);
          }
        }
      }
    }
    if (found) {
      blobs.push_back(text_blob{l.begin, found->last.end, std::move(found->kind), std::move(found->filename),
                                std::move(found->decoded)});
      pos = found->last.next;
    } else {
      pos = resume;
    }
  }

  return blobs;
}

// `s` with each blob replaced by its placeholder and literal placeholders neutralised.
std::string replace_blobs(std::string_view s, const std::vector<text_blob>& blobs) {
  std::string text;
  text.reserve(s.size() + blobs.size() * 24);
  std::size_t copied = 0;
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    append_neutralised(text, s.substr(copied, blobs[i].begin - copied), placeholder_prefix);
    text += placeholder_prefix;
    text += std::to_string(i);
    text += "]]";
    copied = blobs[i].end;
  }
  append_neutralised(text, s.substr(copied), placeholder_prefix);
  return text;
}

}  // namespace

void append_neutralised(std::string& out, std::string_view segment, std::string_view prefix) {
  for (auto hit = segment.find(prefix); hit != std::string_view::npos; hit = segment.find(prefix)) {
    out.append(segment.substr(0, hit));
    out.append("[ ");
    out.append(prefix.substr(1));
    segment.remove_prefix(hit + prefix.size());
  }
  out.append(segment);
}

blob_split cut_encoded_blobs(std::string_view s) {
  blob_split result;
  result.blobs = find_blobs(s);
  result.text = replace_blobs(s, result.blobs);
  return result;
}

std::vector<text_blob> cut_encoded_blobs_in_place(std::string& text) {
  std::vector<text_blob> blobs = find_blobs(text);
  // Without blobs and literal placeholders, replace_blobs would return the text unchanged.
  if (!blobs.empty() || text.find(placeholder_prefix) != std::string::npos) text = replace_blobs(text, blobs);
  return blobs;
}

}  // namespace mukai::sanitize
