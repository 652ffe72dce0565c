// HTML -> readable plain text (see html_to_text.hpp).
//
// Shape: gumbo builds the tree under a guard (bounded memory, deadline); a converter walks it
// with an explicit stack and writes into text sinks. A sink owns line state (pending breaks,
// collapsed spaces, quote/list prefixes); tables and headings render into a sink of their own and
// are laid out when they close, because column widths and underlines need the whole content.
//
// Invariants: the walk never recurses (depth costs heap, not stack); every text byte passes through
// text_sink, which drops C0/C1 controls other than TAB/LF and the bidi controls that reorder text
// (U+202A-U+202E, U+2066-U+2069), and trims trailing blanks, so the result holds only text the HTML
// shows, in the order it was written, plus our own plain annotations; budget and deadline are checked
// as we go and open blocks are still closed when we stop early.
// Threading: no statics with state; one call owns everything it allocates.
#include "sanitizers/html_to_text.hpp"

#include <gumbo.h>
#include <unicode/uchar.h>
#include <unicode/uscript.h>

#include <algorithm>
#include <array>
#include <bit>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "sanitizers/charset_utf8.hpp"
#include "sanitizers/display_safe.hpp"
#include "sanitizers/text_width.hpp"

namespace mukai::sanitize {
namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::size_t npos = std::string_view::npos;

// ---------------------------------------------------------------------------------------------
// Guarded gumbo parse.
//
// gumbo 0.10 has no depth, time or memory bound of its own, and some inputs cost it quadratic
// time (100 000 nested <div>s take ~30 s: each start tag scans the whole open-element stack).
// It does route every allocation through our allocator, so the allocator is where we enforce the
// deadline and a memory ceiling. gumbo is C and cannot unwind, so we leave it with longjmp: only
// gumbo's C frames and parse_guarded() lie between setjmp and longjmp, none with destructors, and
// the arena owns every byte gumbo got, so dropping the arena frees an abandoned parse as well as a
// finished tree (without gumbo_destroy_output(), which recurses once per DOM level).
//
// The arena is also the fast path: gumbo makes millions of small allocations per 10 MB and frees
// most of them soon after (token buffers grow by doubling); with malloc and a per-block free that
// was about a quarter of the conversion time. Here a block is a slot of a size class carved from
// 1 MiB chunks and recycled through a free list per class; blocks above 32 KiB go to malloc and
// are kept in a list. The memory limit counts chunks and large blocks.

struct alignas(16) large_header {
  large_header* prev;
  large_header* next;
  std::size_t size;
  std::uint64_t tag;  // == large_tag; sits right before the user pointer, like a small block's tag
};

enum class parse_failure { none, deadline, memory };

struct parse_guard {
  static constexpr std::size_t small_header = 16;  // keeps user pointers 16-byte aligned
  // Slot sizes, header included: every 16 B up to 512 B (gumbo's nodes, vectors and short strings
  // are a few dozen to ~150 bytes, and powers of two would waste a third of the memory), then
  // powers of two up to 32 KiB.
  static constexpr int fine_classes = 32;
  static constexpr int classes = fine_classes + 6;
  static constexpr std::size_t largest_slot = 32u << 10;
  static constexpr std::size_t chunk_size = 1u << 20;
  static constexpr std::uint64_t large_tag = 0xFFFF;
  struct free_slot {
    free_slot* next;
  };

  std::jmp_buf env;
  free_slot* free_lists[classes] = {};
  char* bump = nullptr;
  char* bump_end = nullptr;
  void* chunks = nullptr;  // singly linked through each chunk's first word
  large_header large{&large, &large, 0, large_tag};
  std::size_t reserved_bytes = 0;  // chunks plus live large blocks
  std::size_t memory_limit = 0;
  clock_type::time_point deadline;
  unsigned allocations_since_check = 0;
  parse_failure failure = parse_failure::none;

  [[noreturn]] void fail(parse_failure why) {
    failure = why;
    std::longjmp(env, 1);
  }

  void release_all() noexcept {
    while (chunks != nullptr) {
      void* next = *static_cast<void**>(chunks);
      std::free(chunks);
      chunks = next;
    }
    large_header* b = large.next;
    while (b != &large) {
      large_header* next = b->next;
      std::free(b);
      b = next;
    }
    large.next = large.prev = &large;
  }
};

// Called from C; must hold no object with a destructor when it longjmps.
void* guarded_allocate(void* userdata, std::size_t size) {
  auto* g = static_cast<parse_guard*>(userdata);
  // A clock read costs ~20 ns; every 32nd allocation keeps the check well under 1% of parse time
  // while the quadratic cases above still allocate at least once per token.
  if (++g->allocations_since_check >= 32) {
    g->allocations_since_check = 0;
    if (clock_type::now() >= g->deadline) g->fail(parse_failure::deadline);
  }
  if (size > parse_guard::largest_slot - parse_guard::small_header) {
    if (size > g->memory_limit - g->reserved_bytes) g->fail(parse_failure::memory);  // reserved <= limit
    void* raw = std::malloc(sizeof(large_header) + size);
    if (raw == nullptr) g->fail(parse_failure::memory);
    auto* b = static_cast<large_header*>(raw);
    b->size = size;
    b->tag = parse_guard::large_tag;
    b->prev = &g->large;
    b->next = g->large.next;
    g->large.next->prev = b;
    g->large.next = b;
    g->reserved_bytes += size;
    return b + 1;
  }
  const std::size_t total = size + parse_guard::small_header;
  std::size_t slot;
  int cls;
  if (total <= 16 * parse_guard::fine_classes) {
    cls = static_cast<int>((total + 15) / 16) - 1;
    slot = static_cast<std::size_t>(cls + 1) * 16;
  } else {
    slot = std::bit_ceil(total);
    cls = parse_guard::fine_classes + std::countr_zero(slot) - 10;
  }
  char* block;
  if (parse_guard::free_slot* f = g->free_lists[cls]) {
    g->free_lists[cls] = f->next;
    block = reinterpret_cast<char*>(f);
  } else {
    if (static_cast<std::size_t>(g->bump_end - g->bump) < slot) {
      if (parse_guard::chunk_size > g->memory_limit - g->reserved_bytes) g->fail(parse_failure::memory);
      void* chunk = std::malloc(parse_guard::chunk_size);
      if (chunk == nullptr) g->fail(parse_failure::memory);
      *static_cast<void**>(chunk) = g->chunks;
      g->chunks = chunk;
      g->reserved_bytes += parse_guard::chunk_size;
      g->bump = static_cast<char*>(chunk) + parse_guard::small_header;
      g->bump_end = static_cast<char*>(chunk) + parse_guard::chunk_size;
    }
    block = g->bump;
    g->bump += slot;
  }
  char* user = block + parse_guard::small_header;
  std::uint64_t tag = static_cast<std::uint64_t>(cls);
  std::memcpy(user - sizeof tag, &tag, sizeof tag);
  return user;
}

void guarded_free(void* userdata, void* ptr) {
  if (ptr == nullptr) return;
  auto* g = static_cast<parse_guard*>(userdata);
  char* user = static_cast<char*>(ptr);
  std::uint64_t tag;
  std::memcpy(&tag, user - sizeof tag, sizeof tag);
  if (tag == parse_guard::large_tag) {
    auto* b = reinterpret_cast<large_header*>(user) - 1;
    b->prev->next = b->next;
    b->next->prev = b->prev;
    g->reserved_bytes -= b->size;
    std::free(b);
    return;
  }
  auto* f = reinterpret_cast<parse_guard::free_slot*>(user - parse_guard::small_header);
  f->next = g->free_lists[tag];
  g->free_lists[tag] = f;
}

// The setjmp frame. Nothing here may have a non-trivial destructor (longjmp would skip it).
[[gnu::noinline]] GumboOutput* parse_guarded(parse_guard* g, const GumboOptions* options, const char* data,
                                             std::size_t size) {
  if (setjmp(g->env) != 0) return nullptr;
  return gumbo_parse_with_options(options, data, size);
}

class gumbo_tree {
 public:
  gumbo_tree(std::string_view bytes, clock_type::time_point deadline, std::size_t memory_limit) {
    guard_.deadline = deadline;
    guard_.memory_limit = memory_limit;
    GumboOptions options = kGumboDefaultOptions;
    options.allocator = guarded_allocate;
    options.deallocator = guarded_free;
    options.userdata = &guard_;
    options.max_errors = 8;  // we never read them; recording costs time and memory
    const char* data = bytes.empty() ? "" : bytes.data();
    output_ = parse_guarded(&guard_, &options, data, bytes.size());
  }
  ~gumbo_tree() { guard_.release_all(); }
  gumbo_tree(const gumbo_tree&) = delete;
  gumbo_tree& operator=(const gumbo_tree&) = delete;

  [[nodiscard]] const GumboNode* document() const noexcept { return output_ ? output_->document : nullptr; }
  [[nodiscard]] parse_failure failure() const noexcept { return guard_.failure; }

 private:
  parse_guard guard_;
  GumboOutput* output_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Small helpers over bytes (not over markup: gumbo has already decoded attributes and text).

char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

bool is_html_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

std::string_view trim_html_space(std::string_view s) noexcept {
  while (!s.empty() && is_html_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_html_space(s.back())) s.remove_suffix(1);
  return s;
}

const char* attribute(const GumboElement& el, const char* name) noexcept {
  const GumboAttribute* a = gumbo_get_attribute(&el.attributes, name);
  return a ? a->value : nullptr;
}

bool has_attribute(const GumboElement& el, const char* name) noexcept {
  return attribute(el, name) != nullptr;
}

// Leading integer of an attribute such as colspan="3" or width="1px"; `fallback` if none.
long leading_integer(const char* value, long fallback, long lo, long hi) noexcept {
  if (value == nullptr) return fallback;
  std::string_view s = trim_html_space(value);
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || s.front() < '0' || s.front() > '9') return fallback;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') break;
    v = std::min(v * 10 + (c - '0'), 1'000'000'000L);
  }
  if (negative) v = -v;
  return std::clamp(v, lo, hi);
}

// Last code point of a non-empty UTF-8 chunk (U+FFFD if it ends in a broken sequence).
char32_t last_code_point(std::string_view s) noexcept {
  std::size_t i = s.size() - 1;
  std::size_t steps = 0;
  while (i > 0 && steps < 3 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i, ++steps;
  const detail::utf8_step st = detail::next_utf8(s, i);
  return st.valid && i + st.length == s.size() ? st.cp : detail::replacement_char;
}

char32_t first_code_point(std::string_view s) noexcept { return s.empty() ? 0 : detail::next_utf8(s, 0).cp; }

// CSS Text 3 segment-break transformation: a newline between two East Asian wide characters
// (Han, kana, full-width punctuation; not Hangul, which uses spaces) disappears, so Japanese
// paragraphs hard-wrapped in the source do not gain spaces in the middle of words.
bool is_wide_for_segment_break(char32_t cp) noexcept {
  if (cp < 0x1100) return false;
  const auto c = static_cast<UChar32>(cp);
  const int eaw = u_getIntPropertyValue(c, UCHAR_EAST_ASIAN_WIDTH);
  if (eaw != U_EA_WIDE && eaw != U_EA_FULLWIDTH && eaw != U_EA_HALFWIDTH) return false;
  UErrorCode err = U_ZERO_ERROR;
  return uscript_getScript(c, &err) != USCRIPT_HANGUL;
}

bool segment_break_vanishes(char32_t before, char32_t after) noexcept {
  if (before == 0x200B || after == 0x200B) return true;
  return is_wide_for_segment_break(before) && is_wide_for_segment_break(after);
}

// Code points that never reach the reader: C0 controls (callers handle white space first), DEL,
// C1 controls, and the bidi controls that would reorder the text after them.
bool is_dropped_code_point(char32_t c) noexcept {
  return c < 0x20 || (c >= 0x7F && c <= 0x9F) || is_bidi_reordering_control(c);
}

// Collapses HTML white space and drops controls in short generated strings (alt text, option
// labels), giving one line. Works on code points (invalid UTF-8 -> U+FFFD), so dropping a control
// can never join the bytes on either side of it into a new character.
std::string clean_inline(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (std::size_t i = 0; i < s.size();) {
    const detail::utf8_step st = detail::next_utf8(s, i);
    const std::size_t at = i;
    i += st.length;
    if ((st.cp < 0x80 && is_html_space(static_cast<char>(st.cp))) || st.cp == 0xA0) {  // NBSP too
      space = true;
      continue;
    }
    if (is_dropped_code_point(st.cp)) continue;
    if (space && !out.empty()) out += ' ';
    space = false;
    if (st.valid)
      out.append(s.substr(at, st.length));
    else
      detail::append_utf8(out, detail::replacement_char);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// URLs, for display only (we never fetch or resolve them).

// What a browser would act on: URL parsers strip leading/trailing C0 controls and spaces and
// delete tabs and newlines anywhere, which is how "java\nscript:" slips past naive filters.
// Invalid UTF-8 becomes U+FFFD first, so deleting a TAB cannot join the bytes around it.
std::string clean_href(std::string_view raw) {
  while (!raw.empty() && static_cast<unsigned char>(raw.front()) <= 0x20) raw.remove_prefix(1);
  while (!raw.empty() && static_cast<unsigned char>(raw.back()) <= 0x20) raw.remove_suffix(1);
  std::string valid;
  detail::append_utf8_repaired(valid, raw);
  std::string out;
  out.reserve(valid.size());
  for (char c : valid)
    if (c != '\t' && c != '\n' && c != '\r') out += c;
  return out;
}

// Text as gumbo hands it over, made valid UTF-8 (invalid sequences -> U+FFFD). gumbo 0.10 computes
// a numeric character reference in an int that overflows: "&#22222222222222222222;" can come out
// as a negative code point written as bytes that are not UTF-8. Returns `s` itself when valid.
std::string_view valid_utf8(std::string_view s, std::string& storage) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const detail::utf8_step st = detail::next_utf8(s, i);
    if (!st.valid) {
      storage.clear();
      detail::append_utf8_repaired(storage, s);
      return storage;
    }
    i += st.length;
  }
  return s;
}

// Makes a URL safe to print between "<" and ">": no controls (C0, DEL, C1), no bidi control that
// would show it reordered, no brackets or spaces that would end or split it visually. Decides on
// code points, never on neighbouring bytes: invalid UTF-8 becomes U+FFFD first, so removing a
// control between two stray bytes cannot join them into a character ("\xC2\x01\x85" must not
// become U+0085).
std::string printable_url(std::string_view url) {
  std::string out;
  out.reserve(url.size());
  for (std::size_t i = 0; i < url.size();) {
    const detail::utf8_step st = detail::next_utf8(url, i);
    const std::size_t at = i;
    i += st.length;
    if (!st.valid) {
      detail::append_utf8(out, detail::replacement_char);
      continue;
    }
    if (is_dropped_code_point(st.cp)) continue;
    switch (st.cp) {
      case '<':
        out += "%3C";
        break;
      case '>':
        out += "%3E";
        break;
      case ' ':
        out += "%20";
        break;
      default:
        out.append(url.substr(at, st.length));
    }
  }
  return out;
}

// Lower-case scheme, or "" for a relative reference.
std::string scheme_of(std::string_view url) {
  if (url.empty() || !((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z'))) return {};
  for (std::size_t i = 1; i < url.size(); ++i) {
    const char c = url[i];
    if (c == ':') return to_lower_ascii(url.substr(0, i));
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
                    c == '-' || c == '.';
    if (!ok) return {};
  }
  return {};
}

bool is_special_scheme(std::string_view scheme) noexcept {
  return scheme == "http" || scheme == "https" || scheme == "ftp" || scheme == "ws" || scheme == "wss";
}

// [begin, end) of the authority after "scheme:", or npos if the URL has none. Browsers accept any
// number of '/' or '\' after a special scheme ("https:\\evil.example" goes to evil.example).
std::pair<std::size_t, std::size_t> authority_range(std::string_view url, std::string_view scheme) noexcept {
  std::size_t p = scheme.size() + 1;
  if (is_special_scheme(scheme)) {
    while (p < url.size() && (url[p] == '/' || url[p] == '\\')) ++p;
  } else if (url.substr(p, 2) == "//") {
    p += 2;
  } else {
    return {npos, npos};
  }
  std::size_t e = p;
  while (e < url.size() && url[e] != '/' && url[e] != '\\' && url[e] != '?' && url[e] != '#') ++e;
  return {p, e};
}

// Appends `s` with every '.' (and its percent-encoded form) written as "[.]".
void append_defanged_dots(std::string& out, std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.') {
      out += "[.]";
    } else if (s[i] == '%' && i + 2 < s.size() && s[i + 1] == '2' && (s[i + 2] == 'e' || s[i + 2] == 'E')) {
      out += "[.]";
      i += 2;
    } else {
      out += s[i];
    }
  }
}

// Host of a URL with an authority: lower case, without userinfo, port or trailing dot.
std::string host_of_url(std::string_view url) {
  const std::string scheme = scheme_of(url);
  if (scheme.empty()) return {};
  auto [b, e] = authority_range(url, scheme);
  if (b == npos) return {};
  std::string_view auth = url.substr(b, e - b);
  if (auto at = auth.rfind('@'); at != npos) auth.remove_prefix(at + 1);
  if (!auth.empty() && auth.front() == '[') {
    auth = auth.substr(0, auth.find(']') == npos ? auth.size() : auth.find(']') + 1);
  } else if (auto colon = auth.rfind(':'); colon != npos) {
    auth = auth.substr(0, colon);
  }
  std::string host;
  host.reserve(auth.size());
  for (std::size_t i = 0; i < auth.size(); ++i) {
    if (auth[i] == '%' && i + 2 < auth.size() && auth[i + 1] == '2' &&
        (auth[i + 2] == 'e' || auth[i + 2] == 'E')) {
      host += '.';
      i += 2;
    } else {
      host += ascii_lower(auth[i]);
    }
  }
  while (!host.empty() && host.back() == '.') host.pop_back();
  return host;
}

bool is_ascii_alpha(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; });
}
bool is_ascii_digits(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Top-level domains common enough that a bare "name.tld" in link text reads as a site to people.
// Without a scheme or "www." we require one of these, so "report.pdf" is not taken for a host.
bool is_common_tld(std::string_view tld) noexcept {
  static constexpr std::array<std::string_view, 46> known = {
      "com",  "net",  "org",  "jp",  "info", "biz",   "edu",   "gov",    "mil",      "int",    "io",   "co",
      "uk",   "us",   "de",   "fr",  "cn",   "kr",    "tw",    "hk",     "sg",       "au",     "ca",   "ru",
      "eu",   "tv",   "cc",   "me",  "app",  "dev",   "xyz",   "top",    "shop",     "online", "site", "club",
      "jobs", "mobi", "name", "pro", "asia", "tokyo", "osaka", "nagoya", "yokohama", "kyoto"};
  return std::find(known.begin(), known.end(), tld) != known.end();
}

// If link text reads as a URL or a domain ("www.city.example.lg.jp", "https://bank.example/login"),
// the host it names, lower case; otherwise "".
std::string host_named_by_text(std::string_view text) {
  text = trim_html_space(text);
  while (!text.empty() && std::string_view("(<[\"'").find(text.front()) != npos) text.remove_prefix(1);
  while (!text.empty() && std::string_view(")>]\"'.,;:!?").find(text.back()) != npos) text.remove_suffix(1);
  if (text.empty() || text.size() > 2048) return {};
  for (char c : text)
    if (is_html_space(c)) return {};
  const std::string lower = to_lower_ascii(text);
  std::string_view rest = lower;
  bool explicit_url = false;
  for (std::string_view p : {"http://", "https://", "ftp://"}) {
    if (rest.substr(0, p.size()) == p) {
      rest.remove_prefix(p.size());
      explicit_url = true;
      break;
    }
  }
  std::size_t end = 0;
  while (end < rest.size() && rest[end] != '/' && rest[end] != '?' && rest[end] != '#' && rest[end] != ':')
    ++end;
  std::string_view host = rest.substr(0, end);
  if (auto at = host.rfind('@'); at != npos) {
    if (!explicit_url) return {};  // an e-mail address, not a site
    host.remove_prefix(at + 1);
  }
  if (end < rest.size() && rest[end] == ':') {  // only a port may follow
    std::size_t p = end + 1;
    while (p < rest.size() && rest[p] >= '0' && rest[p] <= '9') ++p;
    if (p == end + 1 || (p < rest.size() && rest[p] != '/' && rest[p] != '?' && rest[p] != '#')) return {};
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::size_t labels = 0;
  bool all_numeric = true;
  std::string_view tld;
  std::size_t start = 0;
  while (start <= host.size()) {
    std::size_t dot = host.find('.', start);
    if (dot == npos) dot = host.size();
    const std::string_view label = host.substr(start, dot - start);
    if (label.empty() || label.size() > 63) return {};
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return {};
    all_numeric = all_numeric && is_ascii_digits(label);
    tld = label;
    ++labels;
    start = dot + 1;
  }
  if (labels < 2) return {};
  const bool ipv4 = all_numeric && labels == 4;
  if (!ipv4 && (!is_ascii_alpha(tld) || tld.size() < 2)) return {};
  if (!ipv4 && !explicit_url && host.substr(0, 4) != "www." && !is_common_tld(tld)) return {};
  return std::string(host);
}

// Whether a host is specific enough that its subdomains belong to the same owner: at least two
// labels, and three under a Japanese-style second-level domain such as co.jp or lg.jp.
bool owns_subdomains(std::string_view host) noexcept {
  const auto dots = static_cast<std::size_t>(std::count(host.begin(), host.end(), '.'));
  if (dots >= 2) return true;
  if (dots == 0) return false;
  const std::string_view first = host.substr(0, host.find('.'));
  const std::string_view tld = host.substr(host.find('.') + 1);
  static constexpr std::array<std::string_view, 14> second_levels = {
      "co", "or", "ne", "ac", "go", "lg", "ed", "gr", "ad", "com", "net", "org", "gov", "edu"};
  return !(tld.size() == 2 &&
           std::find(second_levels.begin(), second_levels.end(), first) != second_levels.end());
}

// "Registrable-ish" equality: case-insensitive, a leading "www." ignored, and a subdomain of a
// host counts as the same site (bank.example vs login.bank.example is not a lure).
bool same_site(std::string_view a, std::string_view b) {
  if (a.substr(0, 4) == "www.") a.remove_prefix(4);
  if (b.substr(0, 4) == "www.") b.remove_prefix(4);
  if (a == b) return true;
  if (a.size() > b.size()) std::swap(a, b);
  return b.size() > a.size() && b.ends_with(a) && b[b.size() - a.size() - 1] == '.' && owns_subdomains(a);
}

// For "print the URL once": lower case, no scheme, no leading "www.", no trailing '/'.
std::string url_compare_form(std::string_view s) {
  std::string out = to_lower_ascii(trim_html_space(s));
  const std::string scheme = scheme_of(out);
  if (!scheme.empty()) {
    out.erase(0, scheme.size() + 1);
    while (!out.empty() && (out.front() == '/' || out.front() == '\\')) out.erase(0, 1);
  }
  if (out.starts_with("www.")) out.erase(0, 4);
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output.

// Shared by all sinks of one conversion. Fresh text (from the document or generated by us) is
// charged; copying a finished sink into its parent is not, so nested tables do not count twice.
struct output_budget {
  std::size_t limit = 0;
  std::size_t used = 0;
  bool exhausted = false;
  bool enforce = true;  // off while closing open blocks after a stop

  bool take(std::size_t n) noexcept {
    if (!enforce) return true;
    if (exhausted) return false;
    if (n > limit - used) {
      exhausted = true;
      return false;
    }
    used += n;
    return true;
  }
  void charge(std::size_t n) noexcept {
    if (!enforce) return;
    if (n > limit - used) {
      exhausted = true;
      used = limit;
    } else {
      used += n;
    }
  }
};

// A flow of lines with CSS-like white-space handling. Breaks and spaces are kept pending and only
// realised before the next text, so block boundaries merge (a </p><div> is one blank line, not
// three) and no line ends in a space. Prefixes ("> ", list indents) are written when a line opens.
class text_sink {
 public:
  explicit text_sink(output_budget* budget) : budget_(budget) {}

  // A block boundary: 1 = new line, 2 = blank line. Ignored right after a list marker, so that
  // "<li><p>x" keeps x on the marker's line.
  void request_break(int n) {
    pre_space_.clear();
    pending_space_ = false;
    if (line_open_ && !line_has_text_) return;
    pending_break_ = std::max(pending_break_, n);
  }

  // <br> or a newline in preformatted text: one more line end, at most two blank lines in a row.
  void hard_break() {
    pre_space_.clear();
    pending_space_ = false;
    pending_break_ = std::min(pending_break_ + 1, 3);
  }

  void request_space() {
    pending_space_ = true;
    pending_newline_ = false;
  }

  // Text from a text node, white space collapsed.
  void write_text(std::string_view s) {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
      std::size_t j = i;
      while (j < n && !is_special_byte(s, j)) ++j;
      if (j > i) {
        put_chunk(s.substr(i, j - i));
        i = j;
        continue;
      }
      const auto b = static_cast<unsigned char>(s[i]);
      if (is_html_space(static_cast<char>(b))) {
        pending_space_ = true;
        if (b == '\n' || b == '\r') pending_newline_ = true;
        ++i;
      } else if (b == 0xC2) {
        // NBSP: a space that never collapses, but held back like preformatted blanks, so that
        // "<p>&nbsp;</p>" spacers do not become lines and lines never end in one.
        if (static_cast<unsigned char>(s[i + 1]) == 0xA0 && pre_space_.size() < 4096) pre_space_ += ' ';
        i += 2;  // else a C1 control: dropped
      } else if (b == 0xE2) {
        i += 3;  // a bidi control that would reorder the rest of the line: dropped
      } else {
        ++i;  // other C0 controls and DEL
      }
    }
  }

  // Text inside <pre>/<textarea>: spaces and newlines as written.
  void write_preformatted(std::string_view s) {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
      std::size_t j = i;
      while (j < n && !is_special_byte(s, j)) ++j;
      if (j > i) {
        put_chunk(s.substr(i, j - i));
        i = j;
        continue;
      }
      const auto b = static_cast<unsigned char>(s[i]);
      if (b == '\n') {
        hard_break();
        ++i;
      } else if (b == ' ' || b == '\t') {
        // Held back until text follows on the same line: trailing blanks are never written.
        if (pre_space_.size() < 4096) pre_space_ += static_cast<char>(b);
        ++i;
      } else if (b == 0xC2) {
        if (static_cast<unsigned char>(s[i + 1]) == 0xA0 && pre_space_.size() < 4096) pre_space_ += ' ';
        i += 2;
      } else if (b == 0xE2) {
        i += 3;  // bidi control
      } else {
        ++i;
      }
    }
  }

  // Text we generate ("[画像: x]", "<URL>"): already clean, one line, placed like a word.
  void write_generated(std::string_view s) {
    if (!s.empty()) put_chunk(s);
  }

  // A list marker opening a line. The line counts as empty until real text follows.
  void write_marker(std::string_view marker) {
    if (!budget_->take(marker.size())) return;
    begin_text(0);
    out_ += marker;
    last_cp_ = ' ';
  }

  // Copies finished text (a table, a heading) as whole lines, each under this sink's prefix.
  void emit_block(std::string_view text, int break_before) {
    if (text.empty()) return;
    request_break(break_before);
    std::size_t blank = 0;
    bool first = true;
    std::size_t start = 0;
    while (start <= text.size()) {
      std::size_t nl = text.find('\n', start);
      if (nl == npos) nl = text.size();
      const std::string_view line = text.substr(start, nl - start);
      start = nl + 1;
      if (line.empty()) {
        ++blank;
        continue;
      }
      if (!first)
        pending_break_ = std::max(pending_break_, static_cast<int>(std::min<std::size_t>(blank + 1, 3)));
      first = false;
      blank = 0;
      begin_text(first_code_point(line));
      set_marks();
      out_ += line;
      line_has_text_ = true;
      last_cp_ = last_code_point(line);
    }
  }

  // Indentation or quoting for the lines that open from now on. Bounded so a hostile nesting
  // cannot make every line kilobytes long; false means nothing was pushed.
  bool push_prefix(std::string_view p) {
    if (prefixes_.size() >= 24) return false;
    prefixes_.emplace_back(p.size());
    prefix_ += p;
    return true;
  }
  void pop_prefix() {
    prefix_.resize(prefix_.size() - prefixes_.back());
    prefixes_.pop_back();
  }

  // Positions of the first text written after a push, for link text (nestable).
  void push_mark() { marks_.push_back(npos); }
  std::size_t pop_mark() {
    const std::size_t v = marks_.back();
    marks_.pop_back();
    marks_unset_from_ = std::min(marks_unset_from_, marks_.size());
    return v;
  }

  [[nodiscard]] std::string_view written_since(std::size_t pos) const noexcept {
    return pos >= out_.size() ? std::string_view() : std::string_view(out_).substr(pos);
  }

  // Replaces the tail of the current line from `pos` (used to show a defanged URL in place of
  // link text that is the URL itself). The caller checked that no line break follows `pos`.
  void replace_tail(std::size_t pos, std::string_view s) {
    out_.resize(pos);
    out_ += s;
    line_has_text_ = true;
    last_cp_ = s.empty() ? last_cp_ : last_code_point(s);
  }

  [[nodiscard]] bool empty() const noexcept { return out_.empty(); }
  void reserve(std::size_t n) { out_.reserve(n); }

  // The finished text, without a final newline.
  std::string finish() {
    trim_line_end();
    return std::move(out_);
  }

 private:
  // Text from gumbo is valid UTF-8, so a byte test is a code point test here: white space and C0
  // controls, DEL, U+0080-U+00A0 (C1 controls, NBSP), and the bidi reordering controls.
  static bool is_special_byte(std::string_view s, std::size_t j) noexcept {
    const auto b = static_cast<unsigned char>(s[j]);
    if (b <= 0x20 || b == 0x7F) return true;
    if (b == 0xE2) return bidi_reordering_control_at(s, j) != 0;
    if (b != 0xC2) return false;
    if (j + 1 >= s.size()) return false;
    const auto n = static_cast<unsigned char>(s[j + 1]);
    return n >= 0x80 && n <= 0xA0;
  }

  void put_chunk(std::string_view chunk) {
    const std::size_t extra = pre_space_.size() + 1;
    if (budget_->enforce && budget_->exhausted) return;
    if (!budget_->take(chunk.size() + extra)) {
      // Keep what fits of a long run of text (cut on a character boundary), then stop.
      const std::size_t room = budget_->limit - budget_->used;
      if (room <= extra) return;
      std::size_t cut = std::min(room - extra, chunk.size() - 1);
      while (cut > 0 && (static_cast<unsigned char>(chunk[cut]) & 0xC0) == 0x80) --cut;
      if (cut == 0) return;
      budget_->used += cut + extra;
      chunk = chunk.substr(0, cut);
    }
    begin_text(first_code_point(chunk));
    if (!pre_space_.empty()) {
      out_ += pre_space_;
      pre_space_.clear();
    }
    set_marks();
    out_ += chunk;
    line_has_text_ = true;
    last_cp_ = last_code_point(chunk);
  }

  // Realises pending breaks and spaces before text beginning with `first`.
  void begin_text(char32_t first) {
    if (pending_break_ > 0) {
      if (!out_.empty()) {
        end_line();
        for (int k = 1; k < pending_break_; ++k) blank_line();
      }
      pending_break_ = 0;
      pending_space_ = false;
    }
    if (!line_open_) {
      open_line();
    } else if (pending_space_ && line_has_text_) {
      if (!(pending_newline_ && segment_break_vanishes(last_cp_, first))) out_ += ' ';
    }
    pending_space_ = false;
    pending_newline_ = false;
  }

  // Link text starts here, after any separating or preformatted blanks.
  void set_marks() {
    if (marks_unset_from_ == marks_.size()) return;
    for (std::size_t k = marks_unset_from_; k < marks_.size(); ++k) marks_[k] = out_.size();
    marks_unset_from_ = marks_.size();
  }

  void open_line() {
    budget_->charge(prefix_.size());
    out_ += prefix_;
    line_prefix_ = prefix_;
    line_open_ = true;
    line_has_text_ = false;
  }

  void trim_line_end() {
    while (!out_.empty() && (out_.back() == ' ' || out_.back() == '\t')) out_.pop_back();
  }

  void end_line() {
    trim_line_end();
    out_ += '\n';
    line_open_ = false;
    line_has_text_ = false;
  }

  // An empty line keeps the prefixes shared by the lines around it, minus trailing blanks:
  // ">" inside a quote, nothing between a quote and the text after it.
  void blank_line() {
    std::size_t len = 0;
    const std::size_t max = std::min(line_prefix_.size(), prefix_.size());
    while (len < max && line_prefix_[len] == prefix_[len]) ++len;
    out_.append(prefix_, 0, len);
    trim_line_end();
    out_ += '\n';
  }

  output_budget* budget_;
  std::string out_;
  std::vector<std::size_t> prefixes_;  // lengths of the pieces of prefix_
  std::string prefix_;
  std::string pre_space_;
  std::vector<std::size_t> marks_;
  std::size_t marks_unset_from_ = 0;
  std::string line_prefix_;  // the prefix the current (or last) line was opened with
  int pending_break_ = 0;
  bool pending_space_ = false;
  bool pending_newline_ = false;  // the pending space came from a source line break
  bool line_open_ = false;
  bool line_has_text_ = false;
  char32_t last_cp_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Tables.

struct table_cell {
  std::string text;  // rendered content, possibly several lines
  int colspan = 1;
  int rowspan = 1;
  bool header = false;
};

struct table_row {
  std::vector<table_cell> cells;
  bool head_section = false;
};

struct table_data {
  std::vector<table_row> rows;
  std::string caption;
  bool nested_table = false;  // another table inside: a layout table, shown as flowing text
  bool presentation = false;  // role="presentation"/"none": the author says it is layout
};

constexpr int max_table_columns = 64;

// What joins a label cell ("Subject:", "件名：") to its value in a one-line row: nothing after a
// full-width colon (Japanese sets none), a space after an ASCII one; otherwise a cell separator.
std::string_view separator_after(std::string_view line) noexcept {
  if (line.ends_with("\xEF\xBC\x9A")) return "";
  if (line.ends_with(':')) return " ";
  return " | ";
}

// Joins a cell's lines into one line for a grid.
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == npos) nl = text.size();
    const std::string_view line = trim_html_space(text.substr(start, nl - start));
    if (!line.empty()) {
      if (!out.empty()) out += ' ';
      out += line;
    }
    start = nl + 1;
  }
  return out;
}

void append_padded(std::string& out, std::string_view s, std::size_t s_width, std::size_t width) {
  out += s;
  if (s_width < width) out.append(width - s_width, ' ');
}

class table_renderer {
 public:
  table_renderer(const table_data& t, int max_width)
      : t_(t), max_width_(static_cast<std::size_t>(std::max(max_width, 0))) {}

  // Appends the table to `sink`; `outer_break` separates it from what surrounds it.
  void render(text_sink& sink, int outer_break) {
    if (!t_.nested_table && !t_.presentation && place_cells()) {
      take_title_row();
      if (grid_rows_.size() >= 2 && columns_ >= 2) {
        compute_widths();
        if (total_width() <= max_width_) return render_grid(sink, outer_break);
        if (render_key_value(sink, outer_break)) return;
        if (render_rows(sink, outer_break)) return;
      }
    }
    render_flow(sink, outer_break);
  }

 private:
  struct placed {
    std::size_t col;
    std::size_t span;
    std::string line;
    std::size_t width;
    std::size_t lines;  // in the cell as rendered, before joining
    bool header;
  };

  // Positions cells on a grid honouring rowspan/colspan, then drops empty columns and rows
  // (layout spacers). False if the table is too wide to be a grid at all.
  bool place_cells() {
    std::vector<int> carry(max_table_columns, 0);  // rows still covered by a rowspan, per column
    std::vector<std::vector<placed>> rows;
    std::vector<bool> head_rows;
    std::size_t ncols = 0;
    for (const table_row& r : t_.rows) {
      std::vector<placed> out;
      std::size_t col = 0;
      for (const table_cell& c : r.cells) {
        while (col < carry.size() && carry[col] > 0) ++col;
        const auto span = static_cast<std::size_t>(c.colspan);
        if (col + span > static_cast<std::size_t>(max_table_columns)) return false;
        for (std::size_t k = col; k < col + span; ++k) carry[k] = c.rowspan;
        std::string line = one_line(c.text);
        const std::size_t w = display_width(line);
        const auto lines = static_cast<std::size_t>(std::count(c.text.begin(), c.text.end(), '\n')) + 1;
        out.push_back({col, span, std::move(line), w, lines, c.header});
        col += span;
      }
      ncols = std::max(ncols, col);
      for (int& v : carry)
        if (v > 0) --v;
      rows.push_back(std::move(out));
      head_rows.push_back(r.head_section);
    }
    std::vector<bool> used(ncols, false);
    for (const auto& r : rows)
      for (const placed& p : r)
        if (!p.line.empty())
          for (std::size_t k = p.col; k < p.col + p.span; ++k) used[k] = true;
    std::vector<std::size_t> new_index(ncols + 1, 0);
    for (std::size_t k = 0; k < ncols; ++k) new_index[k + 1] = new_index[k] + (used[k] ? 1 : 0);
    columns_ = new_index[ncols];
    for (std::size_t i = 0; i < rows.size(); ++i) {
      std::vector<placed> kept;
      for (placed& p : rows[i]) {
        if (p.line.empty()) continue;
        const std::size_t b = new_index[p.col];
        p.span = new_index[p.col + p.span] - b;
        p.col = b;
        kept.push_back(std::move(p));
      }
      if (kept.empty()) continue;
      head_.push_back(head_rows[i]);
      grid_rows_.push_back(std::move(kept));
    }
    return true;
  }

  // A first row that is one cell across the whole table ("Message Hops") is a title, not data;
  // left in, it would widen the first column or pose as the header row.
  void take_title_row() {
    if (grid_rows_.size() < 3 || columns_ < 2) return;
    const auto& first = grid_rows_.front();
    if (first.size() != 1 || first[0].span != columns_) return;
    title_ = first[0].line;
    grid_rows_.erase(grid_rows_.begin());
    head_.erase(head_.begin());
  }

  [[nodiscard]] std::string heading_lines() const {
    std::string out;
    if (!t_.caption.empty()) out += one_line(t_.caption) + '\n';
    if (!title_.empty()) out += title_ + '\n';
    return out;
  }

  void compute_widths() {
    widths_.assign(columns_, 1);
    for (const auto& r : grid_rows_)
      for (const placed& p : r)
        if (p.span == 1) widths_[p.col] = std::max(widths_[p.col], p.width);
    for (const auto& r : grid_rows_)
      for (const placed& p : r) {
        if (p.span <= 1) continue;
        const std::size_t avail = spanned_width(p.col, p.span);
        if (p.width > avail) widths_[p.col + p.span - 1] += p.width - avail;
      }
  }

  [[nodiscard]] std::size_t spanned_width(std::size_t col, std::size_t span) const {
    std::size_t w = 3 * (span - 1);
    for (std::size_t k = col; k < col + span; ++k) w += widths_[k];
    return w;
  }

  [[nodiscard]] std::size_t total_width() const { return spanned_width(0, columns_); }

  [[nodiscard]] bool first_row_is_header() const {
    if (grid_rows_.size() < 2) return false;
    if (head_[0]) return true;
    return std::all_of(grid_rows_[0].begin(), grid_rows_[0].end(), [](const placed& p) { return p.header; });
  }

  // Without <th>, a first row of short labels filling every column is taken for a header, but
  // only to label the values of a table too wide for a grid.
  [[nodiscard]] bool first_row_reads_as_header() const {
    const auto& r = grid_rows_[0];
    std::size_t covered = 0;
    for (const placed& p : r) {
      if (p.width > 40 || p.lines > 1) return false;
      covered += p.span;
    }
    return covered == columns_;
  }

  void render_grid(text_sink& sink, int outer_break) {
    std::string out = heading_lines();
    for (std::size_t i = 0; i < grid_rows_.size(); ++i) {
      const auto& r = grid_rows_[i];
      std::string line;
      std::size_t col = 0;
      for (std::size_t k = 0; k < r.size(); ++k) {
        const placed& p = r[k];
        for (; col < p.col; ++col) {  // covered by a rowspan above, or an empty cell
          line.append(widths_[col], ' ');
          line += " | ";
        }
        const bool last = k + 1 == r.size();
        if (last)
          line += p.line;
        else
          append_padded(line, p.line, p.width, spanned_width(p.col, p.span));
        if (!last) line += " | ";
        col = p.col + p.span;
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line;
      out += '\n';
      if (i == 0 && first_row_is_header()) {
        for (std::size_t c = 0; c < columns_; ++c) {
          if (c > 0) out += "-+-";
          out.append(widths_[c], '-');
        }
        out += '\n';
      }
    }
    sink.emit_block(out, outer_break);
  }

  // Too wide for a grid: with a header row, one "header: value" line per cell, a blank line
  // between records; with a header column, "header: values" per row.
  bool render_key_value(text_sink& sink, int outer_break) {
    std::string out = heading_lines();
    if (!out.empty()) out += '\n';
    if (first_row_is_header() || first_row_reads_as_header()) {
      const auto& head = grid_rows_[0];
      for (std::size_t i = 1; i < grid_rows_.size(); ++i) {
        if (i > 1) out += '\n';
        for (const placed& p : grid_rows_[i]) {
          const placed* h = nullptr;
          for (const placed& c : head)
            if (c.col <= p.col && p.col < c.col + c.span) h = &c;
          if (h != nullptr) out += h->line + ": ";
          out += p.line;
          out += '\n';
        }
      }
    } else {
      const bool header_column = std::all_of(grid_rows_.begin(), grid_rows_.end(), [](const auto& r) {
        return r.size() >= 2 && r[0].header && !r[1].header;
      });
      if (!header_column) return false;
      for (const auto& r : grid_rows_) {
        out += r[0].line + ": ";
        for (std::size_t k = 1; k < r.size(); ++k) {
          if (k > 1) out += " / ";
          out += r[k].line;
        }
        out += '\n';
      }
    }
    sink.emit_block(out, outer_break);
    return true;
  }

  // No headers but short cells (a log, a list of hops): one unaligned line per row.
  bool render_rows(text_sink& sink, int outer_break) {
    for (const auto& r : grid_rows_)
      for (const placed& p : r)
        if (p.width > 120 || p.lines > 3) return false;  // prose: a layout table, better as flowing text
    std::string out = heading_lines();
    for (const auto& r : grid_rows_) {
      std::size_t col = 0;
      for (const placed& p : r) {
        for (; col < p.col; ++col) out += col == 0 ? "-" : " | -";  // keeps later cells in their column
        if (p.col > 0) out += separator_after(out);
        out += p.line;
        col = p.col + p.span;
      }
      out += '\n';
    }
    sink.emit_block(out, outer_break);
    return true;
  }

  // Layout tables: cells become blocks in reading order; rows are the sections of a designed
  // mail (header, body, product strip, footer), so a blank line separates them.
  void render_flow(text_sink& sink, int outer_break) {
    sink.request_break(outer_break);
    if (!t_.caption.empty()) sink.emit_block(t_.caption, 1);
    for (const table_row& r : t_.rows) {
      for (const table_cell& c : r.cells) sink.emit_block(c.text, 1);
      sink.request_break(2);
    }
  }

  const table_data& t_;
  std::size_t max_width_;
  std::vector<std::vector<placed>> grid_rows_;
  std::vector<bool> head_;
  std::vector<std::size_t> widths_;
  std::string title_;
  std::size_t columns_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The walk.

// Wording of everything we add to the text.
struct vocabulary {
  std::string_view bullet, image, image_alt_open, embedded, cue_open, truncated, timed_out, quote_open,
      quote_close;
  std::string_view heading_marker;  // h3-h6; empty for the Markdown-like "### " form
};

constexpr vocabulary japanese{"・ ",
                              "[画像]",
                              "[画像: ",
                              "[埋め込みコンテンツ削除]",
                              "[注意: 表示と異なるリンク先 ",
                              "[…以下省略: 長すぎるため]",
                              "[…以下省略: 処理時間の上限]",
                              "「",
                              "」",
                              "■ "};
constexpr vocabulary english{"* ",
                             "[image]",
                             "[image: ",
                             "[embedded content removed]",
                             "[warning: link points to a different site ",
                             "[... truncated: too long]",
                             "[... truncated: time limit]",
                             "\"",
                             "\"",
                             ""};

// What enter() set up and leave() must undo.
enum class frame_role : std::uint8_t {
  plain,         // nothing to undo
  block1,        // line break after
  block2,        // blank line after
  quote,         // blank line after, maybe a prefix to pop
  indent,        // line break after, maybe a prefix to pop (dd)
  list_item,     // line break after, maybe a prefix to pop
  list,          // pop list state
  heading,       // own sink: underline or marker, then blank line
  preformatted,  // leave preformatted mode, blank line after
  textarea,      // leave preformatted mode, line break after
  link,          // append URL / cue
  table,         // own table state: lay it out
  table_flat,    // a table shown as flowing text
  row,           // buffered row: nothing to undo
  cell,          // own sink: store as a cell
  caption,       // own sink: store as the caption
  inline_quote,  // closing quotation mark
  ruby_text,     // closing parenthesis
  space_after,   // a block past max_depth: keep the next word apart
};

struct frame {
  const GumboNode* node;
  unsigned next_child = 0;
  frame_role role = frame_role::plain;
  bool pushed_prefix = false;
  bool nested = false;  // list inside a list / table inside a table
};

struct list_state {
  bool ordered = false;
  long next = 1;
  long step = 1;
};

struct link_state {
  std::string href;
  std::size_t sink_index = 0;
};

const GumboVector* children_of(const GumboNode* n) noexcept {
  switch (n->type) {
    case GUMBO_NODE_DOCUMENT:
      return &n->v.document.children;
    case GUMBO_NODE_ELEMENT:
      return &n->v.element.children;
    default:
      return nullptr;
  }
}

GumboTag parent_tag(const GumboNode* n) noexcept {
  const GumboNode* p = n->parent;
  return (p != nullptr && p->type == GUMBO_NODE_ELEMENT) ? p->v.element.tag : GUMBO_TAG_UNKNOWN;
}

// A tolerant reading of an inline style attribute's declarations ("a: b; c: d"), enough to honour
// the ways mail hides text (preheaders, tracking blocks). This reads CSS values, not markup.
struct style_facts {
  bool hidden = false;
  long width = -1;
  long height = -1;
};

long css_pixels(std::string_view v) {
  v = trim_html_space(v);
  if (v.empty() || v.front() < '0' || v.front() > '9') return -1;
  long n = 0;
  std::size_t i = 0;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') n = std::min(n * 10 + (v[i++] - '0'), 1'000'000L);
  const std::string_view unit = trim_html_space(v.substr(i));
  return (unit.empty() || iequals(unit, "px")) ? n : -1;
}

style_facts read_style(const char* style) {
  style_facts f;
  if (style == nullptr) return f;
  std::string_view s = style;
  while (!s.empty()) {  // runs on most elements of designed mail: no allocation here
    const std::size_t semi = s.find(';');
    const std::string_view decl = s.substr(0, semi);
    s = semi == npos ? std::string_view() : s.substr(semi + 1);
    const std::size_t colon = decl.find(':');
    if (colon == npos) continue;
    const std::string_view name = trim_html_space(decl.substr(0, colon));
    std::string_view value = trim_html_space(decl.substr(colon + 1));
    if (const std::size_t bang = value.find('!'); bang != npos)
      value = trim_html_space(value.substr(0, bang));
    if (iequals(name, "display")) {
      if (iequals(value, "none")) f.hidden = true;
    } else if (iequals(name, "visibility")) {
      if (iequals(value, "hidden") || iequals(value, "collapse")) f.hidden = true;
    } else if (iequals(name, "mso-hide")) {
      if (iequals(value, "all")) f.hidden = true;
    } else if (iequals(name, "width")) {
      f.width = css_pixels(value);
    } else if (iequals(name, "height")) {
      f.height = css_pixels(value);
    }
  }
  return f;
}

class converter {
 public:
  converter(const html_options& opt, html_result& result, std::size_t size_hint)
      : opt_(opt), result_(result), words_(opt.lang == config::language::ja ? japanese : english) {
    budget_.limit = opt.max_output;
    sinks_.emplace_back(&budget_);
    sinks_.back().reserve(std::min(size_hint + 1024, opt.max_output));
  }

  void run(const GumboNode* document) {
    std::vector<frame> stack;
    frame root{document};
    if (enter(root, 0)) stack.push_back(root);
    while (!stack.empty() && !stopped_) {
      frame& f = stack.back();
      const GumboVector* kids = children_of(f.node);
      if (kids != nullptr && f.next_child < kids->length) {
        frame child{static_cast<const GumboNode*>(kids->data[f.next_child++])};
        if (enter(child, stack.size())) stack.push_back(child);  // invalidates f; not used again
      } else {
        leave(stack.back());
        stack.pop_back();
      }
    }
    // Stopped early: close what is open, so buffered tables and headings still reach the text.
    budget_.enforce = false;
    while (!stack.empty()) {
      leave(stack.back());
      stack.pop_back();
    }
    finish();
  }

 private:
  text_sink& sink() { return sinks_.back(); }

  bool can_open_sink() const noexcept { return sinks_.size() < 8; }

  void check_limits() {
    if (budget_.exhausted) {
      result_.truncated = true;
      stopped_ = true;
    }
    if ((++visited_ & 255u) == 0 && clock_type::now() >= opt_.deadline) {
      result_.timed_out = true;
      stopped_ = true;
    }
  }

  // Returns true to visit the children (leave() then runs after them).
  bool enter(frame& f, std::size_t depth) {
    check_limits();
    const GumboNode* n = f.node;
    switch (n->type) {
      case GUMBO_NODE_DOCUMENT:
        return true;
      case GUMBO_NODE_TEXT:
      case GUMBO_NODE_WHITESPACE:
        on_text(n);
        return false;
      case GUMBO_NODE_ELEMENT:
        break;
      default:
        return false;  // comments, CDATA (foreign content only), <template> contents
    }
    const GumboElement& el = n->v.element;
    if (el.tag_namespace != GUMBO_NAMESPACE_HTML) return false;  // <svg>, <math> and their content
    if (is_dropped(el)) return false;
    if (depth > static_cast<std::size_t>(std::max(opt_.max_depth, 1))) return enter_flattened(f, el);
    return enter_element(f, el);
  }

  bool is_dropped(const GumboElement& el) {
    switch (el.tag) {
      case GUMBO_TAG_SCRIPT:
        ++result_.scripts_removed;
        return true;
      case GUMBO_TAG_STYLE:
      case GUMBO_TAG_TITLE:
      case GUMBO_TAG_NOSCRIPT:
      case GUMBO_TAG_TEMPLATE:
      case GUMBO_TAG_NOFRAMES:
      case GUMBO_TAG_NOEMBED:
      case GUMBO_TAG_DATALIST:
      case GUMBO_TAG_CANVAS:
      case GUMBO_TAG_MAP:
      case GUMBO_TAG_AREA:
      case GUMBO_TAG_RP:
      case GUMBO_TAG_PARAM:
      case GUMBO_TAG_SOURCE:
      case GUMBO_TAG_TRACK:
      case GUMBO_TAG_META:
      case GUMBO_TAG_LINK:
      case GUMBO_TAG_BASE:
      case GUMBO_TAG_BASEFONT:
      case GUMBO_TAG_BGSOUND:
      case GUMBO_TAG_COLGROUP:
      case GUMBO_TAG_COL:
      case GUMBO_TAG_KEYGEN:
      case GUMBO_TAG_PROGRESS:
      case GUMBO_TAG_METER:
        return true;
      default:
        break;
    }
    if (has_attribute(el, "hidden")) return true;
    return read_style(attribute(el, "style")).hidden;
  }

  // Beyond max_depth: no formatting state is pushed (so every stack we keep stays bounded), but
  // text still flows and block boundaries still separate words.
  bool enter_flattened(frame& f, const GumboElement& el) {
    switch (el.tag) {
      case GUMBO_TAG_IFRAME:
      case GUMBO_TAG_FRAME:
      case GUMBO_TAG_FRAMESET:
      case GUMBO_TAG_OBJECT:
      case GUMBO_TAG_EMBED:
      case GUMBO_TAG_APPLET:
      case GUMBO_TAG_VIDEO:
      case GUMBO_TAG_AUDIO:
      case GUMBO_TAG_SELECT:
      case GUMBO_TAG_INPUT:
        return false;
      case GUMBO_TAG_IMG:
        ++result_.images;
        return false;
      default:
        break;
    }
    switch (el.tag) {
      case GUMBO_TAG_A:
      case GUMBO_TAG_B:
      case GUMBO_TAG_I:
      case GUMBO_TAG_U:
      case GUMBO_TAG_SPAN:
      case GUMBO_TAG_FONT:
      case GUMBO_TAG_EM:
      case GUMBO_TAG_STRONG:
      case GUMBO_TAG_SMALL:
      case GUMBO_TAG_BIG:
      case GUMBO_TAG_SUB:
      case GUMBO_TAG_SUP:
      case GUMBO_TAG_CODE:
      case GUMBO_TAG_TT:
      case GUMBO_TAG_S:
      case GUMBO_TAG_STRIKE:
      case GUMBO_TAG_MARK:
      case GUMBO_TAG_ABBR:
      case GUMBO_TAG_CITE:
      case GUMBO_TAG_Q:
      case GUMBO_TAG_NOBR:
      case GUMBO_TAG_WBR:
      case GUMBO_TAG_LABEL:
      case GUMBO_TAG_RUBY:
      case GUMBO_TAG_RB:
        break;
      default:
        sink().request_space();
        f.role = frame_role::space_after;
        break;
    }
    return true;
  }

  bool enter_element(frame& f, const GumboElement& el) {
    text_sink& s = sink();
    switch (el.tag) {
      case GUMBO_TAG_HTML:
      case GUMBO_TAG_HEAD:  // its visible-looking children (title, style, script) are dropped above
      case GUMBO_TAG_BODY:
        return true;

      case GUMBO_TAG_IFRAME:
      case GUMBO_TAG_FRAME:
      case GUMBO_TAG_FRAMESET:
      case GUMBO_TAG_OBJECT:
      case GUMBO_TAG_EMBED:
      case GUMBO_TAG_APPLET:
      case GUMBO_TAG_VIDEO:
      case GUMBO_TAG_AUDIO:
        ++result_.embeds_removed;
        s.request_break(1);
        s.write_generated(words_.embedded);
        s.request_break(1);
        return false;

      case GUMBO_TAG_IMG:
      case GUMBO_TAG_IMAGE:
        on_image(el, attribute(el, "alt"));
        return false;
      case GUMBO_TAG_INPUT:
        on_input(el);
        return false;
      case GUMBO_TAG_SELECT:
        on_select(el);
        return false;
      case GUMBO_TAG_BR:
        s.hard_break();
        return false;
      case GUMBO_TAG_HR:
        s.request_break(2);
        s.write_generated("----------------------------------------");
        s.request_break(2);
        return false;

      case GUMBO_TAG_A: {
        const char* href = attribute(el, "href");
        if (href == nullptr) return true;
        links_.push_back({std::string(href), sinks_.size() - 1});
        s.push_mark();
        f.role = frame_role::link;
        return true;
      }

      case GUMBO_TAG_P:
      case GUMBO_TAG_FIGURE:
      case GUMBO_TAG_FIELDSET:
        return block(f, 2);

      case GUMBO_TAG_DIV:
      case GUMBO_TAG_SECTION:
      case GUMBO_TAG_ARTICLE:
      case GUMBO_TAG_HEADER:
      case GUMBO_TAG_FOOTER:
      case GUMBO_TAG_NAV:
      case GUMBO_TAG_ASIDE:
      case GUMBO_TAG_MAIN:
      case GUMBO_TAG_CENTER:
      case GUMBO_TAG_ADDRESS:
      case GUMBO_TAG_DETAILS:
      case GUMBO_TAG_SUMMARY:
      case GUMBO_TAG_HGROUP:
      case GUMBO_TAG_FIGCAPTION:
      case GUMBO_TAG_LEGEND:
      case GUMBO_TAG_MARQUEE:
      case GUMBO_TAG_MULTICOL:
      case GUMBO_TAG_OPTION:
      case GUMBO_TAG_OPTGROUP:
      case GUMBO_TAG_DT:
        return block(f, 1);

      case GUMBO_TAG_FORM:
        ++result_.forms;
        return block(f, 1);

      case GUMBO_TAG_H1:
      case GUMBO_TAG_H2:
      case GUMBO_TAG_H3:
      case GUMBO_TAG_H4:
      case GUMBO_TAG_H5:
      case GUMBO_TAG_H6:
        s.request_break(2);
        if (!can_open_sink()) return block(f, 2);
        sinks_.emplace_back(&budget_);
        f.role = frame_role::heading;
        return true;

      case GUMBO_TAG_BLOCKQUOTE:
        s.request_break(2);
        f.pushed_prefix = s.push_prefix("> ");
        f.role = frame_role::quote;
        return true;

      case GUMBO_TAG_DD:
        s.request_break(1);
        f.pushed_prefix = s.push_prefix("  ");
        f.role = frame_role::indent;
        return true;

      case GUMBO_TAG_PRE:
      case GUMBO_TAG_LISTING:
      case GUMBO_TAG_XMP:
      case GUMBO_TAG_PLAINTEXT:
        s.request_break(2);
        ++preformatted_;
        f.role = frame_role::preformatted;
        return true;

      case GUMBO_TAG_TEXTAREA:
        s.request_break(1);
        ++preformatted_;
        f.role = frame_role::textarea;
        return true;

      case GUMBO_TAG_UL:
      case GUMBO_TAG_OL:
      case GUMBO_TAG_MENU:
      case GUMBO_TAG_DIR:
      case GUMBO_TAG_DL: {
        f.nested = !lists_.empty();
        s.request_break(f.nested ? 1 : 2);
        list_state l;
        l.ordered = el.tag == GUMBO_TAG_OL;
        if (l.ordered) {
          if (has_attribute(el, "reversed")) {
            l.step = -1;
            l.next = count_items(el);
          }
          l.next = leading_integer(attribute(el, "start"), l.next, -1'000'000'000L, 1'000'000'000L);
        }
        lists_.push_back(l);
        f.role = frame_role::list;
        return true;
      }

      case GUMBO_TAG_LI: {
        s.request_break(1);
        std::string marker(words_.bullet);
        if (!lists_.empty() && lists_.back().ordered) {
          list_state& l = lists_.back();
          l.next = leading_integer(attribute(el, "value"), l.next, -1'000'000'000L, 1'000'000'000L);
          marker = std::to_string(l.next) + ". ";
          l.next += l.step;
        }
        s.write_marker(marker);
        f.pushed_prefix = s.push_prefix("  ");
        f.role = frame_role::list_item;
        return true;
      }

      case GUMBO_TAG_TABLE:
        return enter_table(f, el);
      case GUMBO_TAG_CAPTION:
        if (buffered_table()) {
          sinks_.emplace_back(&budget_);
          f.role = frame_role::caption;
          return true;
        }
        return block(f, 1);
      case GUMBO_TAG_TR:
        if (buffered_table()) {
          tables_.back().rows.emplace_back();
          tables_.back().rows.back().head_section = parent_tag(f.node) == GUMBO_TAG_THEAD;
          f.role = frame_role::row;
          return true;
        }
        return block(f, 1);
      case GUMBO_TAG_TD:
      case GUMBO_TAG_TH:
        if (buffered_table()) {
          if (tables_.back().rows.empty()) tables_.back().rows.emplace_back();
          table_cell c;
          c.colspan = static_cast<int>(leading_integer(attribute(el, "colspan"), 1, 1, max_table_columns));
          c.rowspan = static_cast<int>(leading_integer(attribute(el, "rowspan"), 1, 1, 1000));
          c.header = el.tag == GUMBO_TAG_TH;
          tables_.back().rows.back().cells.push_back(std::move(c));
          sinks_.emplace_back(&budget_);
          f.role = frame_role::cell;
          return true;
        }
        return block(f, 1);

      case GUMBO_TAG_Q:
        s.write_generated(words_.quote_open);
        f.role = frame_role::inline_quote;
        return true;
      case GUMBO_TAG_RT:
        s.write_generated("(");
        f.role = frame_role::ruby_text;
        return true;

      default:
        return true;  // inline: span, b, font, button, label, unknown and custom elements
    }
  }

  bool block(frame& f, int n) {
    sink().request_break(n);
    f.role = n == 2 ? frame_role::block2 : frame_role::block1;
    return true;
  }

  static long count_items(const GumboElement& el) {
    long n = 0;
    for (unsigned i = 0; i < el.children.length; ++i) {
      const auto* c = static_cast<const GumboNode*>(el.children.data[i]);
      if (c->type == GUMBO_NODE_ELEMENT && c->v.element.tag == GUMBO_TAG_LI) ++n;
    }
    return n;
  }

  // Whether the innermost table we are in buffers its cells (else it flows, or there is none).
  bool buffered_table() const noexcept { return !table_modes_.empty() && table_modes_.back(); }

  bool enter_table(frame& f, const GumboElement& el) {
    f.nested = !table_modes_.empty();
    if (f.nested && !tables_.empty()) tables_.back().nested_table = true;
    sink().request_break(f.nested ? 1 : 2);
    if (!can_open_sink()) {
      table_modes_.push_back(false);
      f.role = frame_role::table_flat;
      return true;
    }
    table_data t;
    if (const char* role = attribute(el, "role")) {
      const std::string r = to_lower_ascii(trim_html_space(role));
      t.presentation = r == "presentation" || r == "none";
    }
    tables_.push_back(std::move(t));
    table_modes_.push_back(true);
    f.role = frame_role::table;
    return true;
  }

  void leave(frame& f) {
    switch (f.role) {
      case frame_role::plain:
      case frame_role::row:
        return;
      case frame_role::block1:
        sink().request_break(1);
        return;
      case frame_role::block2:
        sink().request_break(2);
        return;
      case frame_role::quote:
        if (f.pushed_prefix) sink().pop_prefix();
        sink().request_break(2);
        return;
      case frame_role::indent:
      case frame_role::list_item:
        if (f.pushed_prefix) sink().pop_prefix();
        sink().request_break(1);
        return;
      case frame_role::list:
        lists_.pop_back();
        sink().request_break(f.nested ? 1 : 2);
        return;
      case frame_role::preformatted:
        --preformatted_;
        sink().request_break(2);
        return;
      case frame_role::textarea:
        --preformatted_;
        sink().request_break(1);
        return;
      case frame_role::heading:
        leave_heading(f);
        return;
      case frame_role::link:
        leave_link();
        return;
      case frame_role::table: {
        table_modes_.pop_back();
        const table_data t = std::move(tables_.back());
        tables_.pop_back();
        table_renderer(t, opt_.max_table_width).render(sink(), f.nested ? 1 : 2);
        sink().request_break(f.nested ? 1 : 2);
        return;
      }
      case frame_role::table_flat:
        table_modes_.pop_back();
        sink().request_break(f.nested ? 1 : 2);
        return;
      case frame_role::cell: {
        std::string text = sinks_.back().finish();
        sinks_.pop_back();
        tables_.back().rows.back().cells.back().text = std::move(text);
        return;
      }
      case frame_role::caption: {
        std::string text = sinks_.back().finish();
        sinks_.pop_back();
        tables_.back().caption = std::move(text);
        return;
      }
      case frame_role::inline_quote:
        sink().write_generated(words_.quote_close);
        return;
      case frame_role::ruby_text:
        sink().write_generated(")");
        return;
      case frame_role::space_after:
        sink().request_space();
        return;
    }
  }

  void leave_heading(const frame& f) {
    std::string text = sinks_.back().finish();
    sinks_.pop_back();
    if (!text.empty()) {
      const GumboTag tag = f.node->v.element.tag;
      if (tag == GUMBO_TAG_H1 || tag == GUMBO_TAG_H2) {
        std::size_t width = 0;
        std::size_t start = 0;
        while (start <= text.size()) {
          std::size_t nl = text.find('\n', start);
          if (nl == npos) nl = text.size();
          width = std::max(width, display_width(std::string_view(text).substr(start, nl - start)));
          start = nl + 1;
        }
        text += '\n';
        text.append(std::min<std::size_t>(width, 200), tag == GUMBO_TAG_H1 ? '=' : '-');
      } else if (!words_.heading_marker.empty()) {
        text.insert(0, words_.heading_marker);
      } else {
        const int level = 3 + static_cast<int>(tag) - static_cast<int>(GUMBO_TAG_H3);
        text.insert(0, std::string(static_cast<std::size_t>(level), '#') + ' ');
      }
      sink().emit_block(text, 2);
    }
    sink().request_break(2);
  }

  void on_text(const GumboNode* n) {
    switch (parent_tag(n)) {
      case GUMBO_TAG_TABLE:
      case GUMBO_TAG_TBODY:
      case GUMBO_TAG_THEAD:
      case GUMBO_TAG_TFOOT:
      case GUMBO_TAG_TR:
      case GUMBO_TAG_UL:
      case GUMBO_TAG_OL:
      case GUMBO_TAG_DL:
        if (n->type == GUMBO_NODE_WHITESPACE) return;  // formatting of the source between rows/items
        break;
      default:
        break;
    }
    std::string repaired;
    const std::string_view text = valid_utf8(n->v.text.text, repaired);
    if (preformatted_ > 0)
      sink().write_preformatted(text);
    else
      sink().write_text(text);
  }

  static bool is_tracking_pixel(const GumboElement& el) {
    const style_facts st = read_style(attribute(el, "style"));
    const long w = st.width >= 0 ? st.width : leading_integer(attribute(el, "width"), -1, -1, 1'000'000);
    const long h = st.height >= 0 ? st.height : leading_integer(attribute(el, "height"), -1, -1, 1'000'000);
    return (w >= 0 && w <= 1) || (h >= 0 && h <= 1);
  }

  void on_image(const GumboElement& el, const char* alt_attr) {
    ++result_.images;
    if (is_tracking_pixel(el)) return;  // a beacon, not content: nothing to tell the reader
    const std::string alt = alt_attr ? clean_inline(alt_attr) : std::string();
    if (alt.empty()) {
      sink().write_generated(words_.image);
    } else {
      std::string s(words_.image_alt_open);
      s += alt;
      s += ']';
      sink().write_generated(s);
    }
  }

  void on_input(const GumboElement& el) {
    const char* type_attr = attribute(el, "type");
    const std::string type = type_attr ? to_lower_ascii(trim_html_space(type_attr)) : "text";
    const char* value_attr = attribute(el, "value");
    const std::string value = value_attr ? clean_inline(value_attr) : std::string();
    if (type == "hidden") return;  // invisible data, often tracking or phishing state
    if (type == "image") return on_image(el, attribute(el, "alt"));
    if (type == "checkbox" || type == "radio") {
      sink().write_generated(has_attribute(el, "checked") ? "[x]" : "[ ]");
      return;
    }
    if (type == "submit" || type == "button" || type == "reset") {
      if (!value.empty()) sink().write_generated("[" + value + "]");
      return;
    }
    if (type == "password") {
      sink().write_generated("[***]");
      return;
    }
    if (type == "file" || type == "color" || type == "range") return;
    sink().write_generated(value.empty() ? std::string("[___]") : "[" + value + "]");
  }

  // A drop-down shows one option: the selected one, else the first.
  void on_select(const GumboElement& el) {
    const GumboNode* chosen = nullptr;
    const GumboNode* first = nullptr;
    auto consider = [&](const GumboNode* c) {
      if (c->type != GUMBO_NODE_ELEMENT || c->v.element.tag != GUMBO_TAG_OPTION) return;
      if (first == nullptr) first = c;
      if (chosen == nullptr && has_attribute(c->v.element, "selected")) chosen = c;
    };
    for (unsigned i = 0; i < el.children.length; ++i) {
      const auto* c = static_cast<const GumboNode*>(el.children.data[i]);
      if (c->type == GUMBO_NODE_ELEMENT && c->v.element.tag == GUMBO_TAG_OPTGROUP) {
        for (unsigned k = 0; k < c->v.element.children.length; ++k)
          consider(static_cast<const GumboNode*>(c->v.element.children.data[k]));
      } else {
        consider(c);
      }
    }
    if (chosen == nullptr) chosen = first;
    if (chosen == nullptr) return;
    std::string label;
    for (unsigned i = 0; i < chosen->v.element.children.length; ++i) {
      const auto* c = static_cast<const GumboNode*>(chosen->v.element.children.data[i]);
      if (c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE) label += c->v.text.text;
    }
    label = clean_inline(label);
    if (!label.empty()) sink().write_generated("[" + label + "]");
  }

  config::link_action action_for(std::string_view scheme) const noexcept {
    if (scheme == "mailto") return opt_.mailto_links;
    if (scheme == "tel") return opt_.tel_links;
    return opt_.http_links;
  }

  void leave_link() {
    link_state link = std::move(links_.back());
    links_.pop_back();
    if (link.sink_index >= sinks_.size()) return;  // cannot happen: frames nest
    text_sink& s = sinks_[link.sink_index];
    const std::size_t start = s.pop_mark();
    if (link.sink_index != sinks_.size() - 1) return;
    ++result_.links;
    const std::string url = clean_href(link.href);
    const std::string scheme = scheme_of(url);
    const std::string_view written = start == npos ? std::string_view() : s.written_since(start);
    const std::string visible = clean_inline(written);

    if (url.empty() || scheme.empty() || scheme == "javascript" || scheme == "vbscript" || scheme == "data" ||
        scheme == "file") {
      // Relative links lead nowhere from a mail body (we never resolve against <base>), and
      // script/data/file URLs are active content: the reader gets the text only.
      ++result_.links_removed;
      return;
    }
    const config::link_action action = action_for(scheme);
    if (action == config::link_action::remove) {
      ++result_.links_removed;
    } else {
      const bool defang = action == config::link_action::defang;
      const std::string shown = defang ? defang_url(url) : printable_url(url);
      if (defang) ++result_.links_defanged;
      // "https://www.example.com/", "www.example.com" and "example.com" name the same address;
      // a different scheme in the text ("http" vs "https") is not worth a second copy either.
      const std::string compare_text = url_compare_form(visible);
      const bool text_is_url = !compare_text.empty() && compare_text == url_compare_form(url);
      if (text_is_url && !defang) return;  // printed once, as the author wrote it
      if (text_is_url && written.find('\n') == npos) {
        // Printed once, in its defanged form: left as text, a mail client would make the address
        // a live link again.
        s.replace_tail(start, shown);
        return;
      }
      s.request_space();
      s.write_generated("<" + shown + ">");
    }
    if (!opt_.mark_phishing_links) return;
    const std::string target = host_of_url(url);
    const std::string named = host_named_by_text(visible);
    if (target.empty() || named.empty() || same_site(named, target)) return;
    ++result_.phishing_cues;
    std::string cue(words_.cue_open);
    if (opt_.http_links == config::link_action::defang)
      append_defanged_dots(cue, printable_url(target));
    else
      cue += printable_url(target);
    cue += ']';
    s.request_space();
    s.write_generated(cue);
  }

  void finish() {
    std::string text = sinks_.front().finish();
    if (!text.empty()) text += '\n';
    if (budget_.exhausted) result_.truncated = true;
    const bool stopped_early = result_.truncated || result_.timed_out;
    if (text.size() > opt_.max_output) result_.truncated = true;
    if (result_.truncated || stopped_early) {
      const std::string_view note = result_.timed_out ? words_.timed_out : words_.truncated;
      const std::size_t room = opt_.max_output > note.size() + 1 ? opt_.max_output - note.size() - 1 : 0;
      if (text.size() > room) {
        std::size_t cut = text.rfind('\n', room == 0 ? 0 : room - 1);
        cut = (cut == npos || room == 0) ? 0 : cut + 1;
        text.resize(cut);
      }
      if (text.size() + note.size() + 1 <= opt_.max_output) {
        text += note;
        text += '\n';
      }
    }
    result_.text = std::move(text);
  }

  const html_options& opt_;
  html_result& result_;
  const vocabulary& words_;
  output_budget budget_;
  std::vector<text_sink> sinks_;
  std::vector<table_data> tables_;
  std::vector<bool> table_modes_;  // per open table: buffered (true) or flowing
  std::vector<list_state> lists_;
  std::vector<link_state> links_;
  int preformatted_ = 0;
  unsigned visited_ = 0;
  bool stopped_ = false;
};

// Bytes gumbo may hold for one parse. Real mail peaks near 2-3x the HTML size; the margin is for
// attribute-heavy input, and the cap keeps a hostile part from taking the worker's memory.
std::size_t parse_memory_limit(std::size_t input) noexcept {
  constexpr std::size_t base = 64u << 20;
  return input > (std::numeric_limits<std::size_t>::max() - base) / 24
             ? std::numeric_limits<std::size_t>::max()
             : base + 24 * input;
}

// gumbo turns control characters into U+FFFD, which would show as noise; the reader should
// simply not see them. Removing them from the character stream before parsing (attributes
// included) is a filter over code points, not over markup. TAB, LF, FF and CR are HTML white space.
bool is_removed_control(char32_t c) noexcept {
  if (c < 0x20) return c != '\t' && c != '\n' && c != '\r' && c != '\f';
  return c >= 0x7F && c <= 0x9F;  // DEL, C1
}

// The input without those controls, judged per code point. Invalid UTF-8 becomes U+FFFD here (what
// gumbo would show for it anyway), so that removing a control can never join the bytes around it
// into a new character: "\xC2\x01\x85" is two U+FFFD, not U+0085.
std::string_view without_controls(std::string_view in, std::string& storage) {
  std::size_t i = 0;
  while (i < in.size()) {
    const auto b = static_cast<unsigned char>(in[i]);
    if (b >= 0x20 && b < 0x7F) {
      ++i;
      continue;
    }
    const detail::utf8_step st = detail::next_utf8(in, i);
    if (!st.valid || is_removed_control(st.cp)) break;
    i += st.length;
  }
  if (i == in.size()) return in;  // the common case: no copy
  storage.reserve(in.size());
  storage.assign(in.substr(0, i));
  std::size_t run = i;  // start of the bytes not yet copied
  while (i < in.size()) {
    const auto b = static_cast<unsigned char>(in[i]);
    if (b >= 0x20 && b < 0x7F) {
      ++i;
      continue;
    }
    const detail::utf8_step st = detail::next_utf8(in, i);
    if (st.valid && !is_removed_control(st.cp)) {
      i += st.length;
      continue;
    }
    storage.append(in.substr(run, i - run));
    if (!st.valid) detail::append_utf8(storage, detail::replacement_char);
    i += st.length;
    run = i;
  }
  storage.append(in.substr(run));
  return storage;
}

// gumbo counts positions in unsigned int; we never need more than this of one body.
constexpr std::size_t max_parse_input = 1u << 30;

// Reads "charset=..." out of a Content-Type value (the HTML algorithm for http-equiv content).
std::string charset_from_content(std::string_view s) {
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t found = npos;
    for (std::size_t i = pos; i + 7 <= s.size(); ++i)
      if (iequals(s.substr(i, 7), "charset")) {
        found = i;
        break;
      }
    if (found == npos) return {};
    std::size_t p = found + 7;
    while (p < s.size() && is_html_space(s[p])) ++p;
    if (p >= s.size() || s[p] != '=') {
      pos = found + 7;
      continue;
    }
    ++p;
    while (p < s.size() && is_html_space(s[p])) ++p;
    if (p >= s.size()) return {};
    if (s[p] == '"' || s[p] == '\'') {
      const std::size_t close = s.find(s[p], p + 1);
      if (close == npos) return {};
      return std::string(s.substr(p + 1, close - p - 1));
    }
    std::size_t e = p;
    while (e < s.size() && s[e] != ';' && !is_html_space(s[e])) ++e;
    return std::string(s.substr(p, e - p));
  }
  return {};
}

// "encoding" pseudo-attribute of an XML declaration, which gumbo hands us as a bogus comment.
std::string encoding_from_xml_declaration(std::string_view s) {
  const std::size_t at = s.find("encoding");
  if (at == npos) return {};
  std::size_t p = at + 8;
  while (p < s.size() && is_html_space(s[p])) ++p;
  if (p >= s.size() || s[p] != '=') return {};
  ++p;
  while (p < s.size() && is_html_space(s[p])) ++p;
  if (p >= s.size() || (s[p] != '"' && s[p] != '\'')) return {};
  const std::size_t close = s.find(s[p], p + 1);
  return close == npos ? std::string() : std::string(s.substr(p + 1, close - p - 1));
}

// Labels are short tokens such as "shift_jis", "iso-2022-jp", "windows-31j"; anything else is
// not passed on to a converter lookup.
std::optional<std::string> plausible_label(std::string_view raw) {
  const std::string label = to_lower_ascii(trim_html_space(raw));
  if (label.empty() || label.size() > 40) return std::nullopt;
  for (char c : label)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':'))
      return std::nullopt;
  return label;
}

}  // namespace

html_result html_to_text(std::string_view html_utf8, const html_options& opt) {
  html_result result;
  if (html_utf8.size() > max_parse_input) {
    html_utf8 = html_utf8.substr(0, max_parse_input);
    result.truncated = true;
  }
  std::string filtered;
  html_utf8 = without_controls(html_utf8, filtered);
  const gumbo_tree tree(html_utf8, opt.deadline, parse_memory_limit(html_utf8.size()));
  if (tree.document() == nullptr) {
    result.parse_aborted = true;
    result.timed_out = tree.failure() == parse_failure::deadline;
    return result;
  }
  converter conv(opt, result, html_utf8.size());
  conv.run(tree.document());
  return result;
}

std::optional<std::string> sniff_html_charset(std::string_view raw) {
  if (raw.starts_with("\xEF\xBB\xBF")) return "utf-8";
  if (raw.starts_with("\xFE\xFF")) return "utf-16be";
  if (raw.starts_with("\xFF\xFE")) return "utf-16le";
  const std::string_view head = raw.substr(0, 4096);
  const gumbo_tree tree(head, clock_type::now() + std::chrono::seconds(2), 16u << 20);
  if (tree.document() == nullptr) return std::nullopt;
  std::optional<std::string> xml_label;
  std::vector<std::pair<const GumboNode*, unsigned>> stack{{tree.document(), 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    const GumboVector* kids = children_of(node);
    if (kids == nullptr || next >= kids->length) {
      stack.pop_back();
      continue;
    }
    const auto* c = static_cast<const GumboNode*>(kids->data[next++]);
    if (c->type == GUMBO_NODE_COMMENT && !xml_label) {
      const std::string_view text = c->v.text.text;
      if (text.starts_with("?xml")) {
        const std::string enc = encoding_from_xml_declaration(text);
        if (!enc.empty()) xml_label = plausible_label(enc);
      }
      continue;
    }
    if (c->type != GUMBO_NODE_ELEMENT) continue;
    const GumboElement& el = c->v.element;
    if (el.tag == GUMBO_TAG_META && el.tag_namespace == GUMBO_NAMESPACE_HTML) {
      if (const char* cs = attribute(el, "charset")) {
        if (auto label = plausible_label(cs)) return label;
      }
      const char* equiv = attribute(el, "http-equiv");
      const char* content = attribute(el, "content");
      if (equiv != nullptr && content != nullptr && iequals(trim_html_space(equiv), "content-type")) {
        if (auto label = plausible_label(charset_from_content(content))) return label;
      }
    }
    stack.emplace_back(c, 0);  // invalidates node/next; the loop re-reads them
  }
  return xml_label;
}

std::string defang_url(std::string_view raw) {
  const std::string url = printable_url(clean_href(raw));
  const std::string scheme = scheme_of(url);
  if (scheme.empty()) return url;
  std::string out;
  out.reserve(url.size() + 16);
  const std::string_view rest = std::string_view(url).substr(scheme.size() + 1);
  if (scheme == "mailto") {
    out += url.substr(0, scheme.size() + 1);
    const std::size_t query = rest.find('?');
    const std::string_view addr = rest.substr(0, query);
    const std::size_t at = addr.rfind('@');
    if (at == npos) {
      out += rest;
      return out;
    }
    out += addr.substr(0, at + 1);
    append_defanged_dots(out, addr.substr(at + 1));
    if (query != npos) out += rest.substr(query);
    return out;
  }
  if (scheme == "http")
    out += "hxxp:";
  else if (scheme == "https")
    out += "hxxps:";
  else if (scheme == "ftp")
    out += "fxp:";
  else
    out += url.substr(0, scheme.size()) + "[:]";  // no client makes "ms-msdt[:]..." clickable
  const auto [b, e] = authority_range(url, scheme);
  if (b == npos) {
    out += rest;
    return out;
  }
  out += url.substr(scheme.size() + 1, b - scheme.size() - 1);
  append_defanged_dots(out, std::string_view(url).substr(b, e - b));
  out += url.substr(e);
  return out;
}

}  // namespace mukai::sanitize
