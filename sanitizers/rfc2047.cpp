// RFC 2047 decoding/normalising/encoding of header values (see rfc2047.hpp for the contract).
// Shape: the value is cut into encoded words and the "gaps" between them; runs of words separated
// only by white space are decoded together (bytes of same-charset neighbours joined first), and
// the raw bytes of the gaps are decoded with one charset chosen for the whole value.
// Linear time: each candidate "=?" is scanned at most to the next '?' (encoded text cannot contain
// one) and a charset name is bounded, so every byte is looked at a constant number of times.
// Threading: reentrant.
#include "sanitizers/rfc2047.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "sanitizers/charset.hpp"
#include "sanitizers/charset_iso2022jp.hpp"
#include "sanitizers/charset_utf8.hpp"

namespace mukai::sanitize {
namespace {

constexpr std::size_t max_charset_label = 64;

bool is_wsp(char c) noexcept { return c == ' ' || c == '\t'; }
bool is_fws(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// RFC 2047 "token" characters for the charset (plus '*' for the RFC 2231 language suffix; '.'
// and ':' appear in real labels such as "iso_8859-1:1987").
bool is_charset_char(char c) noexcept {
  const auto b = static_cast<unsigned char>(c);
  if (b <= 0x20 || b >= 0x7F) return false;
  switch (c) {
    case '(':
    case ')':
    case '<':
    case '>':
    case '@':
    case ',':
    case ';':
    case '"':
    case '/':
    case '[':
    case ']':
    case '?':
    case '=':
    case '\\':
      return false;
    default:
      return true;
  }
}

int base64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Lenient base64 for encoded words: missing padding is accepted, '=' ends a quantum and decoding
// may resume after it (some encoders concatenate padded chunks), white space (from a fold inside a
// word) is skipped. Any other character makes the word invalid.
std::optional<std::string> decode_b(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int n = 0;
  const auto flush_partial = [&] {
    if (n == 2) out.push_back(static_cast<char>((acc >> 4) & 0xFF));
    if (n == 3) {
      out.push_back(static_cast<char>((acc >> 10) & 0xFF));
      out.push_back(static_cast<char>((acc >> 2) & 0xFF));
    }
    acc = 0;
    n = 0;  // a lone sextet (n == 1) carries no whole byte and is dropped
  };
  for (const char c : text) {
    if (c == '=') {
      flush_partial();
      continue;
    }
    if (is_fws(c)) continue;
    const int v = base64_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    if (++n == 4) {
      out.push_back(static_cast<char>((acc >> 16) & 0xFF));
      out.push_back(static_cast<char>((acc >> 8) & 0xFF));
      out.push_back(static_cast<char>(acc & 0xFF));
      acc = 0;
      n = 0;
    }
  }
  flush_partial();
  return out;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Q encoding: '_' is a space, "=XX" a byte; a '=' not followed by two hex digits stays literal.
std::string decode_q(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '_') {
      out.push_back(' ');
    } else if (c == '=' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
               hex_value(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

struct encoded_word {
  std::size_t begin = 0;
  std::size_t end = 0;  // one past "?="
  std::string_view charset;
  std::string bytes;
};

// Parses an encoded word at s[pos] == '=' && s[pos + 1] == '?'.
std::optional<encoded_word> parse_encoded_word(std::string_view s, std::size_t pos) {
  std::size_t i = pos + 2;
  const std::size_t cs_begin = i;
  while (i < s.size() && s[i] != '?') {
    if (!is_charset_char(s[i]) || i - cs_begin >= max_charset_label) return std::nullopt;
    ++i;
  }
  if (i == cs_begin || i + 2 >= s.size()) return std::nullopt;
  const std::string_view charset = s.substr(cs_begin, i - cs_begin);
  const char enc = s[i + 1];
  if (s[i + 2] != '?') return std::nullopt;
  const bool b = enc == 'B' || enc == 'b';
  if (!b && enc != 'Q' && enc != 'q') return std::nullopt;
  i += 3;
  const std::size_t text_begin = i;
  bool saw_space = false;
  while (i < s.size() && s[i] != '?') {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_fws(s[i]) && b) {
      saw_space = true;  // a fold inside a B word ("folded-mime-incomplete"): base64 ignores it
    } else if ((c >= 0x80 || c == 0x1B) && !b) {
      // Raw 8-bit or JIS bytes inside a Q word (broken encoders): taken literally, like =XX.
    } else if (c <= 0x20 || c >= 0x7F) {
      return std::nullopt;
    }
    ++i;
  }
  if (i + 1 >= s.size() || s[i + 1] != '=') return std::nullopt;
  const std::string_view text = s.substr(text_begin, i - text_begin);
  encoded_word w;
  w.begin = pos;
  w.end = i + 2;
  w.charset = charset;
  if (b) {
    if (saw_space) {
      // Only accept spaces between base64 characters: "=?x?B?abc def?=" must still be base64.
      for (const char c : text) {
        if (!is_fws(c) && base64_value(c) < 0 && c != '=') return std::nullopt;
      }
    }
    auto bytes = decode_b(text);
    if (!bytes) return std::nullopt;
    w.bytes = std::move(*bytes);
  } else {
    w.bytes = decode_q(text);
  }
  return w;
}

struct piece {
  bool is_word = false;
  std::size_t begin = 0;
  std::size_t end = 0;
  std::optional<encoded_word> word;
};

std::vector<piece> split_words(std::string_view s) {
  std::vector<piece> pieces;
  std::size_t gap_begin = 0;
  std::size_t pos = 0;
  while ((pos = s.find("=?", pos)) != std::string_view::npos) {
    auto w = parse_encoded_word(s, pos);
    if (!w) {
      ++pos;
      continue;
    }
    if (pos > gap_begin) pieces.push_back({false, gap_begin, pos, std::nullopt});
    const std::size_t end = w->end;
    pieces.push_back({true, pos, end, std::move(w)});
    gap_begin = pos = end;
  }
  if (gap_begin < s.size()) pieces.push_back({false, gap_begin, s.size(), std::nullopt});
  return pieces;
}

bool all_fws(std::string_view s) noexcept {
  for (const char c : s) {
    if (!is_fws(c)) return false;
  }
  return true;
}

bool needs_decoding(std::string_view s) noexcept {
  for (const char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x80 || b == 0x1B) return true;
  }
  return false;
}

// Removes C0 controls other than TAB (and CR, LF with keep_line_ends), DEL and C1 controls, per
// code point; repairs any invalid UTF-8.
std::string strip_controls(std::string_view s, bool keep_line_ends = false, bool keep_all = false) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const detail::utf8_step st = detail::next_utf8(s, i);
    const char32_t c = st.cp;
    i += st.length;
    if (c == '\t' || (keep_line_ends && (c == '\r' || c == '\n'))) {
      out.push_back(static_cast<char>(c));
      continue;
    }
    if (c == 0 || (!keep_all && (c < 0x20 || (c >= 0x7F && c <= 0x9F)))) continue;
    detail::append_utf8(out, c);
  }
  return out;
}

// Decoding state for one header value: the charset chosen for its raw bytes, and a small cache of
// charset-label keys (a hostile value may repeat thousands of words with the same odd label).
class header_decoder {
 public:
  explicit header_decoder(std::string_view hint) : hint_(hint) {}

  // Decoded UTF-8 of a run of words pieces[first..last] (gaps between are white space).
  std::string decode_run(const std::vector<piece>& pieces, std::size_t first, std::size_t last) {
    std::string out;
    std::string pending;
    std::string pending_key;
    std::string_view pending_label;
    const auto flush = [&] {
      if (pending_key.empty() && pending.empty()) return;
      out += decode_to_utf8(pending, pending_label, hint_).utf8;
      pending.clear();
      pending_key.clear();
    };
    for (std::size_t k = first; k <= last; ++k) {
      if (!pieces[k].is_word) continue;
      const encoded_word& w = *pieces[k].word;
      std::string key = charset_key(w.charset);
      if (key != pending_key || pending_label.empty()) {
        flush();
        pending_key = std::move(key);
        pending_label = w.charset;
      }
      pending += w.bytes;
    }
    flush();
    return out;
  }

  // One charset for all raw bytes of the value (decided on their concatenation: more evidence).
  void choose_raw_charset(std::string_view s, const std::vector<piece>& pieces) {
    std::string raw;
    for (const auto& p : pieces) {
      const std::string_view t = s.substr(p.begin, p.end - p.begin);
      if (!p.is_word && needs_decoding(t)) {
        raw.append(t);
        raw.push_back(' ');
      }
    }
    if (raw.empty()) return;
    std::string cs = detect_charset(raw, hint_).value_or("utf-8");
    // Only charsets in which ASCII bytes stay ASCII may decode pieces of a header: anything else
    // would change the structure around the raw bytes.
    for (const std::string_view bad :
         {"utf-16", "utf-32", "utf-7", "iso-2022-kr", "iso-2022-cn", "hz-gb-2312"}) {
      if (cs.rfind(bad, 0) == 0) cs = "utf-8";
    }
    raw_charset_ = std::move(cs);
  }

  std::string decode_raw(std::string_view gap) { return decode_to_utf8(gap, raw_charset_, hint_).utf8; }

 private:
  std::string charset_key(std::string_view label) {
    const auto it = cache_.find(std::string(label));
    if (it != cache_.end()) return it->second;
    std::string key = canonical_charset(label);
    if (key.empty()) {
      key = "?";  // unknown labels: group by their spelling
      for (const char c : label) key.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
    }
    if (cache_.size() < 256) cache_.emplace(std::string(label), key);
    return key;
  }

  std::string hint_;
  std::string raw_charset_ = "utf-8";
  std::unordered_map<std::string, std::string> cache_;
};

// Index of the last word of the run starting at pieces[first] (a word): following words count as
// adjacent when separated by nothing or by white space only.
std::size_t run_end(std::string_view s, const std::vector<piece>& pieces, std::size_t first) {
  std::size_t last = first;
  std::size_t k = first + 1;
  while (k < pieces.size()) {
    if (pieces[k].is_word) {
      last = k;
      ++k;
      continue;
    }
    if (k + 1 < pieces.size() && pieces[k + 1].is_word &&
        all_fws(s.substr(pieces[k].begin, pieces[k].end - pieces[k].begin))) {
      last = k + 1;
      k += 2;
      continue;
    }
    break;
  }
  return last;
}

std::string unfold(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 2 < s.size() && s[i + 1] == '\n' && is_wsp(s[i + 2])) {
      ++i;
      continue;
    }
    if ((s[i] == '\r' || s[i] == '\n') && i + 1 < s.size() && is_wsp(s[i + 1])) continue;
    out.push_back(s[i]);
  }
  return out;
}

// Appends literal text (everything but our own encoded words) to a normalised value. A '?' right
// after '=' could let a lenient parser start an encoded word that decode_header_text does not see:
// one our parser rejects but GMime accepts ("=?utf-8?q?a b?="), or one that only appears once raw
// ISO-2022-JP is decoded ("=" ESC $ B ESC ( B "?utf-8?q?x?=") or a control or an empty word is
// removed. GMime would decode it (and bug #133 would be back: "=?UTF-8?B?YQ==?= =?UTF-8?B?Yg==?="
// built from such text loses the "b"). So that '?' becomes a Q-encoded word of its own, with the
// '?', '=' and white space right after it: the text reads the same, the '=' left before it keeps
// it from being adjacent to a word before, no white space is left between it and a word that may
// follow (decoders drop white space between adjacent encoded words), and what follows it is neither
// '?' nor '=' (so "=?=?=?..." costs one word, not one per pair). Q, not B: no base64 padding for
// bug #133 to trip on. Folds (CR, LF) taken into it are dropped, as unfolding would.
void append_literal(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    out.push_back(text[i]);
    if (text[i] != '=' || i + 1 >= text.size() || text[i + 1] != '?') continue;
    out += "=?UTF-8?Q?";
    std::size_t j = i + 1;
    for (; j < text.size() && (text[j] == '?' || text[j] == '=' || is_fws(text[j])); ++j) {
      switch (text[j]) {
        case '?':
          out += "=3F";
          break;
        case '=':
          out += "=3D";
          break;
        case ' ':
          out += "=20";
          break;
        case '\t':
          out += "=09";
          break;
        default:
          break;  // CR, LF
      }
    }
    out += "?=";
    i = j - 1;
  }
}

constexpr std::string_view base64_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string encode_base64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
                            (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
                            static_cast<unsigned char>(in[i + 2]);
    out.push_back(base64_alphabet[(v >> 18) & 63]);
    out.push_back(base64_alphabet[(v >> 12) & 63]);
    out.push_back(base64_alphabet[(v >> 6) & 63]);
    out.push_back(base64_alphabet[v & 63]);
  }
  if (const std::size_t rest = in.size() - i; rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out.push_back(base64_alphabet[(v >> 18) & 63]);
    out.push_back(base64_alphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? base64_alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// Value for encode_header_text: valid UTF-8, CR/LF -> space, other controls (except TAB) dropped.
std::string neutralise_for_output(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const detail::utf8_step st = detail::next_utf8(s, i);
    i += st.length;
    const char32_t c = st.cp;
    if (c == '\r' || c == '\n') {
      out.push_back(' ');
    } else if ((c < 0x20 && c != '\t') || (c >= 0x7F && c <= 0x9F)) {
      continue;
    } else {
      detail::append_utf8(out, c);
    }
  }
  return out;
}

constexpr std::size_t max_line = 76;  // RFC 2047 section 2: lines with encoded words <= 76
constexpr std::size_t max_word = 75;  // RFC 2047 section 2: an encoded word <= 75

// Folds ASCII at white space so that each line fits; nullopt if some word cannot fit. Linear: after
// a fold only the characters since the fold point are looked at again.
std::optional<std::string> fold_ascii(std::string_view v, std::size_t first_col) {
  constexpr std::size_t none = std::string_view::npos;
  std::string out;
  std::size_t line_begin = 0;  // index in v where the current line's content starts
  std::size_t col0 = first_col;
  std::size_t last_break = none;
  for (std::size_t i = 0; i <= v.size(); ++i) {
    const bool at_end = i == v.size();
    // A fold point is a WSP followed by a non-WSP (never leave a white-space-only line).
    const bool breakable = !at_end && i > line_begin && is_wsp(v[i]) && i + 1 < v.size() && !is_wsp(v[i + 1]);
    if (!breakable && !at_end) continue;
    if (col0 + (i - line_begin) > max_line) {
      if (last_break == none) return std::nullopt;
      out.append(v.substr(line_begin, last_break - line_begin));
      out.append("\r\n");
      line_begin = last_break;  // the WSP starts the continuation line
      col0 = 0;
      last_break = none;
      i = line_begin;  // the loop's ++i resumes right after the new line's leading WSP
      continue;
    }
    if (breakable) last_break = i;
  }
  out.append(v.substr(line_begin));
  return out;
}

// Splits valid UTF-8 into chunks of whole characters, the first at most first_max bytes (but at
// least one character), the rest at most rest_max.
std::vector<std::string_view> split_utf8(std::string_view s, std::size_t first_max, std::size_t rest_max) {
  std::vector<std::string_view> out;
  std::size_t begin = 0;
  std::size_t limit = first_max;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t len = detail::next_utf8(s, i).length;
    if (i + len - begin > limit && i > begin) {
      out.push_back(s.substr(begin, i - begin));
      begin = i;
      limit = rest_max;
      continue;
    }
    i += len;
  }
  if (i > begin) out.push_back(s.substr(begin, i - begin));
  return out;
}

}  // namespace

std::string decode_header_text(std::string_view raw_value, std::string_view charset_hint, header_controls controls) {
  const std::string s = unfold(raw_value);
  const std::vector<piece> pieces = split_words(s);
  header_decoder dec(charset_hint);
  dec.choose_raw_charset(s, pieces);
  std::string out;
  out.reserve(s.size());
  for (std::size_t k = 0; k < pieces.size(); ++k) {
    const piece& p = pieces[k];
    if (p.is_word) {
      const std::size_t last = run_end(s, pieces, k);
      out += dec.decode_run(pieces, k, last);
      k = last;
      continue;
    }
    const std::string_view gap = std::string_view(s).substr(p.begin, p.end - p.begin);
    if (needs_decoding(gap)) {
      out += dec.decode_raw(gap);
    } else {
      out.append(gap);
    }
  }
  std::string clean = strip_controls(out, false, controls == header_controls::keep);
  const std::size_t b = clean.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  const std::size_t e = clean.find_last_not_of(" \t");
  return clean.substr(b, e - b + 1);
}

std::string normalize_encoded_words(std::string_view raw_value, std::string_view charset_hint) {
  const std::vector<piece> pieces = split_words(raw_value);
  header_decoder dec(charset_hint);
  dec.choose_raw_charset(raw_value, pieces);
  std::string out;
  out.reserve(raw_value.size() + raw_value.size() / 3);
  // A word is written only when what follows it is known: literal text that is empty or white
  // space once decoded and cleaned (an ESC sequence, a control, a vanished empty word) would leave
  // two of our words adjacent, which decoders join without the white space and GMime (bug #133)
  // decodes wrongly; the two then become one word holding the white space instead.
  std::string word;     // decoded text of the pending word
  std::string literal;  // cleaned literal text since the pending word (or the start)
  bool have_word = false;
  const auto flush = [&] {
    if (have_word) {
      out += "=?UTF-8?B?";
      out += encode_base64(word);
      out += "?=";
    }
    append_literal(out, literal);
    word.clear();
    literal.clear();
    have_word = false;
  };
  for (std::size_t k = 0; k < pieces.size(); ++k) {
    const piece& p = pieces[k];
    if (p.is_word) {
      const std::size_t last = run_end(raw_value, pieces, k);
      std::string text = strip_controls(dec.decode_run(pieces, k, last));
      k = last;
      if (text.empty()) continue;  // an empty run disappears; the literal text around it joins
      if (have_word && all_fws(literal)) {
        for (const char c : literal) {
          if (is_wsp(c)) word.push_back(c);  // CR, LF: folds, dropped as unfolding would
        }
        word += text;
        literal.clear();
        continue;
      }
      flush();
      word = std::move(text);
      have_word = true;
      continue;
    }
    const std::string_view gap = raw_value.substr(p.begin, p.end - p.begin);
    if (needs_decoding(gap)) {
      literal += strip_controls(dec.decode_raw(gap), true);
    } else {
      literal += strip_controls(gap, true);
    }
  }
  flush();
  return out;
}

std::string encode_header_text(std::string_view utf8, std::string_view header_name_for_first_line_length,
                               std::string_view charset) {
  const std::string v = neutralise_for_output(utf8);
  const std::size_t first_col = header_name_for_first_line_length.size() + 2;  // "Name: "
  const bool ascii =
      std::all_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii && v.find("=?") == std::string::npos) {
    if (first_col + v.size() <= max_line) return v;
    if (auto folded = fold_ascii(v, first_col)) return *folded;
  }

  // Room for the first word on the "Name: " line; never below one character's worth.
  const std::size_t first_room = first_col < max_line ? max_line - first_col : 0;
  const auto payload_bytes = [](std::size_t word_room, std::size_t overhead) {
    const std::size_t b64 = word_room > overhead ? word_room - overhead : 0;
    return b64 / 4 * 3;
  };

  std::vector<std::string> words;
  if (canonical_charset(charset) == "iso-2022-jp") {
    constexpr std::string_view prefix = "=?ISO-2022-JP?B?";
    const std::size_t overhead = prefix.size() + 2;
    const std::size_t per_word = payload_bytes(max_word, overhead);
    const std::size_t first_bytes = std::min(payload_bytes(first_room, overhead), per_word);
    // nullopt (a character JIS cannot hold) falls through to UTF-8 below.
    if (auto chunks = detail::encode_iso2022jp_chunks(v, first_bytes, per_word)) {
      for (const auto& c : *chunks) words.push_back(std::string(prefix) + encode_base64(c) + "?=");
    }
  }
  if (words.empty()) {
    constexpr std::string_view prefix = "=?UTF-8?B?";
    const std::size_t overhead = prefix.size() + 2;
    const std::size_t per_word = payload_bytes(max_word, overhead);
    const std::size_t first_bytes = std::min(payload_bytes(first_room, overhead), per_word);
    for (const std::string_view chunk : split_utf8(v, first_bytes, per_word)) {
      words.push_back(std::string(prefix) + encode_base64(chunk) + "?=");
    }
  }
  std::string out;
  for (std::size_t k = 0; k < words.size(); ++k) {
    if (k > 0) out += "\r\n ";
    out += words[k];
  }
  return out;
}

}  // namespace mukai::sanitize
