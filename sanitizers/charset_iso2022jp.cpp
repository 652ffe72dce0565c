// ISO-2022-JP decoder/encoder with CP932 semantics (see charset_iso2022jp.hpp for the why).
// Decoder shape: a small state machine turns the 7-bit stream into runs of bytes in a stateless
// 8-bit charset (Shift_JIS for ASCII/JIS X 0208/katakana, EUC-JP for JIS X 0212, EUC-CN for
// GB 2312, EUC-KR for KS C 5601); each run is decoded by ICU. Keeping ASCII in the Shift_JIS run
// means the common message is one ICU call.
// Threading: see header.
#include "sanitizers/charset_iso2022jp.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <unordered_map>

#include "sanitizers/charset_icu.hpp"
#include "sanitizers/charset_utf8.hpp"

namespace mukai::sanitize::detail {
namespace {

constexpr char esc = 0x1B;
constexpr char so = 0x0E;
constexpr char si = 0x0F;

// ICU's Microsoft CP932 table. Named explicitly rather than via the "windows-31j" alias so an ICU
// data update cannot silently swap the table: it maps 0x5C/0x7E to ASCII, 0x815F to U+FF3C and
// 0x8160 to U+FF5E (what Windows shows), and decodes NEC row 13 and both IBM extension blocks.
constexpr std::string_view cp932_converter = "ibm-943_P15A-2003";
// ICU's EUC-JP (CP51932-like plus JIS X 0212), used for JIS X 0212 pairs.
constexpr std::string_view eucjp_converter = "euc-jp-2007";

// JIS row/cell (1-based "ku"/"ten") -> Shift_JIS pair written to out[0..1]. Valid for ku 1..120,
// ten 1..94.
constexpr void write_sjis_pair(char* out, unsigned ku, unsigned ten) {
  const unsigned s1 = (ku + 1) / 2 + (ku <= 62 ? 0x80 : 0xC0);
  unsigned s2 = 0;
  if (ku % 2 == 1) {
    s2 = ten + 0x3F + (ten >= 64 ? 1 : 0);  // skip 0x7F
  } else {
    s2 = ten + 0x9E;
  }
  out[0] = static_cast<char>(s1);
  out[1] = static_cast<char>(s2);
}

// write_sjis_pair as tables indexed by the JIS bytes (b1 = ku + 0x20, b2 = ten + 0x20; ku has the
// parity of b1): the stretch loop below converts one pair per two lookups.
constexpr std::array<unsigned char, 256> sjis_lead = [] {
  std::array<unsigned char, 256> t{};
  for (unsigned b1 = 0x21; b1 <= 0x98; ++b1) {
    char pair[2];
    write_sjis_pair(pair, b1 - 0x20u, 1);
    t[b1] = static_cast<unsigned char>(pair[0]);
  }
  return t;
}();
constexpr std::array<std::array<unsigned char, 256>, 2> sjis_trail = [] {
  std::array<std::array<unsigned char, 256>, 2> t{};
  for (unsigned parity = 0; parity < 2; ++parity) {
    for (unsigned b2 = 0x21; b2 <= 0x7E; ++b2) {
      char pair[2];
      write_sjis_pair(pair, parity == 1 ? 1 : 2, b2 - 0x20u);  // ku 1 is odd, ku 2 even
      t[parity][b2] = static_cast<unsigned char>(pair[1]);
    }
  }
  return t;
}();

// A JIS X 0208 pair as handle_double_byte accepts it (rows up to 120, see there).
bool is_jis0208_pair(unsigned char b1, unsigned char b2) {
  return b1 >= 0x21 && b1 <= 0x98 && b2 >= 0x21 && b2 <= 0x7E;
}

// Bytes that end an ASCII-mode run: they change the state or are line ends (which reset it).
bool ends_ascii_run(char c) { return c == esc || c == so || c == si || c == '\r' || c == '\n'; }

enum class g0_set { ascii, kana, jis0208, jis0212, gb2312, ksc5601, unsupported_94x94 };
enum class g2_set { none, latin1, greek };
enum class run_kind { cp932, eucjp, euccn, euckr, greek };

class jis_decoder {
 public:
  explicit jis_decoder(std::string& out) : out_(out) {}

  // Why runs: text is long stretches of ASCII or of kanji pairs, and handling them one byte (one
  // std::string::push_back call) at a time was the larger part of decoding a 100 KB body. ASCII
  // stretches are appended whole and kanji stretches converted in a tight loop; every byte that
  // can change the state (ESC, SO, SI, CR, LF) still goes through the byte-wise path below.
  std::size_t run(std::string_view s) {
    std::size_t i = 0;
    const std::size_t n = s.size();
    seg_.reserve(n);  // a segment never holds more bytes than the input it came from
    while (i < n) {
      const auto b = static_cast<unsigned char>(s[i]);
      if (b == static_cast<unsigned char>(esc)) {
        i += handle_escape(s.substr(i));
        continue;
      }
      if (b == static_cast<unsigned char>(so)) {
        shifted_out_ = true;
        ++i;
        continue;
      }
      if (b == static_cast<unsigned char>(si)) {
        shifted_out_ = false;
        ++i;
        continue;
      }
      if (b == '\r' || b == '\n') {
        // RFC 1468 requires every line to end in ASCII. Senders that forget the ESC ( B would
        // otherwise turn every following ASCII line into kanji; resetting is what most MUAs do.
        g0_ = g0_set::ascii;
        shifted_out_ = false;
        push(run_kind::cp932, static_cast<char>(b));
        ++i;
        continue;
      }
      if (shifted_out_ || g0_ == g0_set::kana) {
        if (b >= 0x21 && b <= 0x5F) {
          push(run_kind::cp932, static_cast<char>(b + 0x80));  // JIS X 0201 katakana -> SJIS A1..DF
        } else if (b < 0x21) {
          push(run_kind::cp932, static_cast<char>(b));
        } else {
          replace();
        }
        ++i;
        continue;
      }
      switch (g0_) {
        case g0_set::ascii: {
          // ASCII, JIS-Roman, and (leniently) 8-bit bytes as CP932: JIS8 katakana or stray SJIS.
          std::size_t end = i + 1;
          while (end < n && !ends_ascii_run(s[end])) ++end;
          seg_for(run_kind::cp932).append(s.data() + i, end - i);
          i = end;
          break;
        }
        case g0_set::kana:  // handled above
          ++i;
          break;
        case g0_set::jis0208:
          i += jis0208_pairs(s, i);
          break;
        default:
          i += handle_double_byte(s, i);
          break;
      }
    }
    flush();
    return replaced_;
  }

 private:
  // A stretch of JIS X 0208 pairs from s[i] (the common case of handle_double_byte, without a call
  // per byte); anything else is left to handle_double_byte. Returns the bytes consumed (>= 1).
  std::size_t jis0208_pairs(std::string_view s, std::size_t i) {
    const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    if (i + 1 >= s.size() || !is_jis0208_pair(at(i), at(i + 1))) return handle_double_byte(s, i);
    std::string& seg = seg_for(run_kind::cp932);
    std::array<char, 512> buf;
    std::size_t len = 0;
    std::size_t k = i;
    for (; k + 1 < s.size() && is_jis0208_pair(at(k), at(k + 1)); k += 2) {
      if (len == buf.size()) {
        seg.append(buf.data(), len);
        len = 0;
      }
      buf[len] = static_cast<char>(sjis_lead[at(k)]);
      buf[len + 1] = static_cast<char>(sjis_trail[at(k) & 1u][at(k + 1)]);
      len += 2;
    }
    seg.append(buf.data(), len);
    return k - i;
  }

  // Double-byte modes: control characters and space pass through (some senders put spaces inside
  // kanji runs); a pair outside the 94x94 grid is one replacement for its first byte.
  std::size_t handle_double_byte(std::string_view s, std::size_t i) {
    const auto b1 = static_cast<unsigned char>(s[i]);
    if (b1 <= 0x20) {
      push(run_kind::cp932, static_cast<char>(b1));
      return 1;
    }
    const bool have_b2 = i + 1 < s.size();
    const auto b2 = have_b2 ? static_cast<unsigned char>(s[i + 1]) : 0;
    const bool trail_ok = have_b2 && b2 >= 0x21 && b2 <= 0x7E;
    const bool lead_7bit = b1 >= 0x21 && b1 <= 0x7E;
    switch (g0_) {
      case g0_set::jis0208:
        // Rows up to 120 (lead 0x98) are accepted: encoders that convert CP932 arithmetically emit
        // IBM extensions (rows 115-119) and user-defined rows with 8-bit "JIS" leads.
        if (trail_ok && b1 >= 0x21 && b1 <= 0x98) {
          char pair[2];
          write_sjis_pair(pair, b1 - 0x20u, b2 - 0x20u);
          seg_for(run_kind::cp932).append(pair, 2);
          return 2;
        }
        break;
      case g0_set::jis0212:
        if (trail_ok && lead_7bit) {
          std::string& seg = seg_for(run_kind::eucjp);
          seg.push_back(static_cast<char>(0x8F));
          seg.push_back(static_cast<char>(b1 | 0x80));
          seg.push_back(static_cast<char>(b2 | 0x80));
          return 2;
        }
        break;
      case g0_set::gb2312:
      case g0_set::ksc5601:
        if (trail_ok && lead_7bit) {
          std::string& seg = seg_for(g0_ == g0_set::gb2312 ? run_kind::euccn : run_kind::euckr);
          seg.push_back(static_cast<char>(b1 | 0x80));
          seg.push_back(static_cast<char>(b2 | 0x80));
          return 2;
        }
        break;
      default:  // unsupported 94x94 set (JIS X 0213 plane 2): consume pairs as replacements
        if (trail_ok && lead_7bit) {
          replace();
          return 2;
        }
        break;
    }
    replace();
    return 1;
  }

  // Returns the bytes consumed (>= 1). Unknown or truncated escapes are one replacement for ESC.
  std::size_t handle_escape(std::string_view rest) {
    const auto starts = [&](std::string_view seq) { return rest.substr(0, seq.size()) == seq; };
    struct designation {
      std::string_view seq;
      g0_set set;
    };
    static constexpr std::array<designation, 13> designations{{
        {"\x1b(B", g0_set::ascii},
        {"\x1b(J", g0_set::ascii},  // JIS-Roman: CP932 semantics read it as ASCII
        {"\x1b(H", g0_set::ascii},
        {"\x1b(I", g0_set::kana},
        {"\x1b$@", g0_set::jis0208},
        {"\x1b$B", g0_set::jis0208},
        {"\x1b$(B", g0_set::jis0208},
        {"\x1b$(@", g0_set::jis0208},
        {"\x1b$(Q", g0_set::jis0208},  // JIS X 0213 plane 1 is a superset; common chars agree
        {"\x1b$(O", g0_set::jis0208},
        {"\x1b$(D", g0_set::jis0212},
        {"\x1b$A", g0_set::gb2312},
        {"\x1b$(C", g0_set::ksc5601},
    }};
    for (const auto& d : designations) {
      if (starts(d.seq)) {
        g0_ = d.set;
        return d.seq.size();
      }
    }
    if (starts("\x1b$(P")) {
      g0_ = g0_set::unsupported_94x94;
      return 4;
    }
    if (starts("\x1b&@")) return 3;  // JIS X 0208-1990 announcer, followed by ESC $ B
    if (starts("\x1b.A")) {
      g2_ = g2_set::latin1;
      return 3;
    }
    if (starts("\x1b.F")) {
      g2_ = g2_set::greek;
      return 3;
    }
    if (starts("\x1bN") && rest.size() >= 3 && g2_ != g2_set::none) {
      const auto c = static_cast<unsigned char>(rest[2]);
      if (c >= 0x20 && c <= 0x7F) {
        const auto high = static_cast<unsigned char>(c | 0x80);
        if (g2_ == g2_set::latin1) {
          flush();
          append_utf8(out_, high);
        } else {
          seg_for(run_kind::greek).push_back(static_cast<char>(high));
        }
        return 3;
      }
    }
    // Unknown: consume the whole ISO 2022 escape sequence (intermediates 0x20-0x2F, then one final
    // byte 0x30-0x7E) as one replacement, so its bytes do not show up as text. A malformed one
    // costs only the ESC.
    std::size_t k = 1;
    while (k < rest.size() && k < 8 && rest[k] >= 0x20 && rest[k] <= 0x2F) ++k;
    const std::size_t consumed = (k < rest.size() && rest[k] >= 0x30 && rest[k] <= 0x7E) ? k + 1 : 1;
    replace();
    return consumed;
  }

  std::string& seg_for(run_kind k) {
    if (k != kind_) {
      flush();
      kind_ = k;
    }
    return seg_;
  }
  void push(run_kind k, char c) { seg_for(k).push_back(c); }

  void replace() {
    flush();
    append_utf8(out_, replacement_char);
    ++replaced_;
  }

  void flush() {
    if (seg_.empty()) return;
    std::string_view conv;
    switch (kind_) {
      case run_kind::cp932:
        conv = cp932_converter;
        break;
      case run_kind::eucjp:
        conv = eucjp_converter;
        break;
      case run_kind::euccn:
        conv = "gb18030";
        break;
      case run_kind::euckr:
        conv = "windows-949";
        break;
      case run_kind::greek:
        conv = "iso-8859-7";
        break;
    }
    if (auto r = icu_decode_append(conv, seg_, out_)) {
      replaced_ += *r;
    } else {
      // ICU data without this table: never pass raw bytes through.
      replaced_ += append_utf8_repaired(out_, std::string(seg_.size(), '\xFF'));
    }
    seg_.clear();
  }

  std::string& out_;
  std::string seg_;
  run_kind kind_ = run_kind::cp932;
  g0_set g0_ = g0_set::ascii;
  g2_set g2_ = g2_set::none;
  bool shifted_out_ = false;
  std::size_t replaced_ = 0;
};

// ---- encoder ----

// Unicode -> JIS (ku+0x20)<<8 | (ten+0x20), built by decoding every Shift_JIS code of the rows we
// are willing to emit with the same CP932 table the decoder uses, so encode/decode round-trip.
// First writer wins, and rows are visited in order, so a character present both in the standard
// rows and in NEC row 13 (≒ ≡ ∫ ∵ ...) or the NEC-selected IBM rows (￢) uses the standard code.
const std::unordered_map<char32_t, std::uint16_t>& jis_table() {
  static const std::unordered_map<char32_t, std::uint16_t> table = [] {
    std::unordered_map<char32_t, std::uint16_t> t;
    std::string probe;
    std::vector<std::uint16_t> codes;
    const auto add_lead = [&](unsigned s1) {
      for (unsigned s2 = 0x40; s2 <= 0xFC; ++s2) {
        if (s2 == 0x7F) continue;
        probe.push_back(static_cast<char>(s1));
        probe.push_back(static_cast<char>(s2));
        probe.push_back('\n');
        const unsigned base = (s1 <= 0x9F ? s1 - 0x81 : s1 - 0xC1) * 2;
        unsigned ku = 0, ten = 0;
        if (s2 >= 0x9F) {
          ku = base + 2;
          ten = s2 - 0x9E;
        } else {
          ku = base + 1;
          ten = s2 - 0x40 + 1 - (s2 >= 0x80 ? 1 : 0);
        }
        codes.push_back(static_cast<std::uint16_t>(((ku + 0x20) << 8) | (ten + 0x20)));
      }
    };
    for (unsigned s1 = 0x81; s1 <= 0x84; ++s1) add_lead(s1);
    for (unsigned s1 = 0x87; s1 <= 0x9F; ++s1) add_lead(s1);
    for (unsigned s1 = 0xE0; s1 <= 0xEA; ++s1) add_lead(s1);
    for (unsigned s1 = 0xED; s1 <= 0xEE; ++s1) add_lead(s1);
    std::string utf8;
    if (!icu_decode_append(cp932_converter, probe, utf8)) return t;
    // One line per probed code; a line is accepted only if it holds exactly one mapped character
    // (unassigned codes decode to U+FFFD, ill-formed ones to more than one character).
    std::size_t line = 0, pos = 0;
    while (pos < utf8.size() && line < codes.size()) {
      const std::size_t nl = utf8.find('\n', pos);
      const std::string_view cell =
          std::string_view(utf8).substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      const utf8_step st = cell.empty() ? utf8_step{} : next_utf8(cell, 0);
      if (st.valid && st.length == cell.size() && st.cp != replacement_char && st.cp >= 0x80) {
        t.emplace(st.cp, codes[line]);
      }
      ++line;
      if (nl == std::string::npos) break;
      pos = nl + 1;
    }
    // Unicode-correct spellings of characters CP932 maps to compatibility code points (the
    // "wave dash problem"): text from Macs and the web uses these; JIS has one code for each.
    static constexpr std::array<std::pair<char32_t, char32_t>, 10> aliases{{
        {0x301C, 0xFF5E},  // 〜 -> ～
        {0x2016, 0x2225},  // ‖ -> ∥
        {0x2212, 0xFF0D},  // − -> －
        {0x00A2, 0xFFE0},  // ¢ -> ￠
        {0x00A3, 0xFFE1},  // £ -> ￡
        {0x00AC, 0xFFE2},  // ¬ -> ￢
        {0x2014, 0x2015},  // — -> ―
        {0x00A5, 0xFFE5},  // ¥ -> ￥ (ASCII 0x5C stays a backslash in our output)
        {0x203E, 0xFFE3},  // ‾ -> ￣
        {0x00A6, 0xFFE4},  // ¦ -> ￤
    }};
    for (const auto& [from, to] : aliases) {
      const auto it = t.find(to);
      if (it != t.end()) t.emplace(from, it->second);
    }
    return t;
  }();
  return table;
}

// Half-width katakana U+FF61..U+FF9F -> full width (JIS X 0208 has no half-width forms).
constexpr std::array<char16_t, 63> halfwidth_kana_to_full{{
    0x3002, 0x300C, 0x300D, 0x3001, 0x30FB, 0x30F2, 0x30A1, 0x30A3, 0x30A5, 0x30A7, 0x30A9, 0x30E3, 0x30E5,
    0x30E7, 0x30C3, 0x30FC, 0x30A2, 0x30A4, 0x30A6, 0x30A8, 0x30AA, 0x30AB, 0x30AD, 0x30AF, 0x30B1, 0x30B3,
    0x30B5, 0x30B7, 0x30B9, 0x30BB, 0x30BD, 0x30BF, 0x30C1, 0x30C4, 0x30C6, 0x30C8, 0x30CA, 0x30CB, 0x30CC,
    0x30CD, 0x30CE, 0x30CF, 0x30D2, 0x30D5, 0x30D8, 0x30DB, 0x30DE, 0x30DF, 0x30E0, 0x30E1, 0x30E2, 0x30E4,
    0x30E6, 0x30E8, 0x30E9, 0x30EA, 0x30EB, 0x30EC, 0x30ED, 0x30EF, 0x30F3, 0x309B, 0x309C,
}};

bool takes_dakuten(char32_t c) {
  return (c >= 0x30AB && c <= 0x30C8 && c != 0x30C3) || c == 0x30CF || c == 0x30D2 || c == 0x30D5 ||
         c == 0x30D8 || c == 0x30DB;
}
bool takes_handakuten(char32_t c) {
  return c == 0x30CF || c == 0x30D2 || c == 0x30D5 || c == 0x30D8 || c == 0x30DB;
}

// Decodes UTF-8 into code points ready for JIS: half-width katakana widened, a following
// half-width (han)dakuten composed into the voiced kana where JIS has one (ｶﾞ -> ガ, ｳﾞ -> ヴ).
std::optional<std::u32string> jis_code_points(std::string_view utf8) {
  std::u32string cps;
  cps.reserve(utf8.size());
  bool prev_widened = false;  // only a widened half-width kana may absorb a half-width mark
  for (std::size_t i = 0; i < utf8.size();) {
    const utf8_step st = next_utf8(utf8, i);
    if (!st.valid) return std::nullopt;
    i += st.length;
    char32_t c = st.cp;
    const bool compose = prev_widened;
    prev_widened = false;
    if (c >= 0xFF61 && c <= 0xFF9F) {
      const char32_t wide = halfwidth_kana_to_full[c - 0xFF61];
      if ((c == 0xFF9E || c == 0xFF9F) && compose) {
        char32_t& prev = cps.back();
        if (c == 0xFF9E && takes_dakuten(prev)) {
          prev += 1;
          continue;
        }
        if (c == 0xFF9E && prev == 0x30A6) {  // ウ + ゛ = ヴ
          prev = 0x30F4;
          continue;
        }
        if (c == 0xFF9F && takes_handakuten(prev)) {
          prev += 2;
          continue;
        }
      }
      c = wide;
      prev_widened = true;
    }
    cps.push_back(c);
  }
  return cps;
}

// Encoded form of one code point: 1 ASCII byte, or a JIS pair. nullopt if unrepresentable.
struct jis_unit {
  bool ascii;
  std::uint16_t code;
};
std::optional<jis_unit> to_jis_unit(char32_t c) {
  if (c < 0x80) {
    if (c == static_cast<char32_t>(esc) || c == static_cast<char32_t>(so) || c == static_cast<char32_t>(si)) {
      return std::nullopt;
    }
    return jis_unit{true, static_cast<std::uint16_t>(c)};
  }
  const auto& t = jis_table();
  const auto it = t.find(c);
  if (it == t.end()) return std::nullopt;
  return jis_unit{false, it->second};
}

constexpr std::string_view to_ascii = "\x1b(B";
constexpr std::string_view to_jis0208 = "\x1b$B";

}  // namespace

bool contains_iso2022jp_escape(std::string_view s) noexcept {
  std::size_t i = 0;
  while ((i = s.find(esc, i)) != std::string_view::npos) {
    const std::string_view r = s.substr(i + 1, 3);
    if (r.substr(0, 2) == "$B" || r.substr(0, 2) == "$@" || r.substr(0, 2) == "(I" ||
        r.substr(0, 2) == "(J" || r == "$(D" || r == "$(O" || r == "$(Q") {
      return true;
    }
    ++i;
  }
  return false;
}

std::size_t decode_iso2022jp_append(std::string_view bytes, std::string& out) {
  jis_decoder d(out);
  return d.run(bytes);
}

std::optional<std::string> encode_iso2022jp(std::string_view utf8) {
  const auto cps = jis_code_points(utf8);
  if (!cps) return std::nullopt;
  std::string out;
  out.reserve(cps->size() * 2 + 8);
  bool in_jis = false;
  for (const char32_t c : *cps) {
    const auto u = to_jis_unit(c);
    if (!u) return std::nullopt;
    if (u->ascii) {
      if (in_jis) out.append(to_ascii);  // also puts every CR/LF in ASCII, as RFC 1468 requires
      in_jis = false;
      out.push_back(static_cast<char>(u->code));
    } else {
      if (!in_jis) out.append(to_jis0208);
      in_jis = true;
      out.push_back(static_cast<char>(u->code >> 8));
      out.push_back(static_cast<char>(u->code & 0xFF));
    }
  }
  if (in_jis) out.append(to_ascii);
  return out;
}

std::optional<std::vector<std::string>> encode_iso2022jp_chunks(std::string_view utf8, std::size_t first_max,
                                                                std::size_t rest_max) {
  std::size_t max_chunk_bytes = std::max<std::size_t>(first_max, 8);  // ESC $ B + one pair + ESC ( B
  rest_max = std::max<std::size_t>(rest_max, 8);
  const auto cps = jis_code_points(utf8);
  if (!cps) return std::nullopt;
  std::vector<std::string> chunks;
  std::string cur;
  bool in_jis = false;
  const auto close = [&] {
    if (in_jis) cur.append(to_ascii);
    chunks.push_back(std::move(cur));
    cur.clear();
    in_jis = false;
    max_chunk_bytes = rest_max;
  };
  for (const char32_t c : *cps) {
    const auto u = to_jis_unit(c);
    if (!u) return std::nullopt;
    for (int attempt = 0; attempt < 2; ++attempt) {
      // Size of the chunk if this character is added and the chunk then closed.
      std::size_t cost = u->ascii ? 1 : 2;
      if (u->ascii == in_jis) cost += 3;             // mode switch
      const std::size_t closing = u->ascii ? 0 : 3;  // final ESC ( B
      if (cur.size() + cost + closing <= max_chunk_bytes || cur.empty()) break;
      close();
    }
    if (u->ascii) {
      if (in_jis) cur.append(to_ascii);
      in_jis = false;
      cur.push_back(static_cast<char>(u->code));
    } else {
      if (!in_jis) cur.append(to_jis0208);
      in_jis = true;
      cur.push_back(static_cast<char>(u->code >> 8));
      cur.push_back(static_cast<char>(u->code & 0xFF));
    }
  }
  if (!cur.empty()) close();
  return chunks;
}

}  // namespace mukai::sanitize::detail
