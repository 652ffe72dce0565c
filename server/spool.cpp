// The spool: file format, queue IDs, the streaming writer, transitions and start-up recovery.
// See spool.hpp for the layout, the format and the durability of each transition.
// Threading: the only shared mutable state is each directory_syncer's (under its mutex).
#include "server/spool.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <utility>

namespace mukai::server {

namespace fs = std::filesystem;
using clock_type = std::chrono::system_clock;

namespace {

// Crockford's base32 (as quarantine IDs): no i, l, o, u; its order matches the values', so string
// order of equally long IDs is time order.
constexpr std::string_view id_alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr std::size_t id_time_chars = 9;    // 45 bits of milliseconds: until the year 3084
constexpr std::size_t id_random_chars = 7;  // 35 bits
constexpr std::size_t id_length = id_time_chars + id_random_chars;

constexpr std::string_view magic_line = "MUKAI-SPOOL 1";
constexpr std::string_view header_terminator = "\ndata\n";
constexpr std::string_view trailer_head = "\nMUKAI-TRAILER ";
constexpr std::string_view trailer_tail = " END\n";
constexpr std::size_t trailer_length_digits = 20;
constexpr std::size_t sha256_hex_length = 64;
constexpr std::size_t trailer_length =
    trailer_head.size() + trailer_length_digits + 1 + sha256_hex_length + trailer_tail.size();
static_assert(trailer_length == 105, "the trailer size is part of the documented format");
// The smallest header: the magic line and "data" (every other line has at least a key).
constexpr std::size_t min_file_size = magic_line.size() + header_terminator.size() + trailer_length;

constexpr std::string_view delivery_magic_line = "MUKAI-DELIVERY 1";
// Bounds a delivery state read: a 512-byte reply is at most ~1.6 KiB encoded per recipient.
constexpr std::size_t max_delivery_state_size = std::size_t{16} * 1024 * 1024;
constexpr std::size_t max_stored_reply = 512;

// Writes are batched to this size: few syscalls for the small chunks a session appends, bounded
// memory per message being received.
constexpr std::size_t write_buffer_size = std::size_t{32} * 1024;
constexpr std::size_t read_chunk_size = std::size_t{64} * 1024;

// Microseconds representable as system_clock (nanoseconds in libstdc++) without overflow: a
// corrupted file must not make the conversion overflow, and what we write must read back.
constexpr std::int64_t max_abs_micros = std::numeric_limits<std::int64_t>::max() / 1000;
// The first read for a header; most envelopes are far smaller, and reading max_envelope_size
// each time the scheduler looks at an envelope would be wasteful.
constexpr std::size_t first_header_read = std::size_t{64} * 1024;

class spool_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mukai.spool"; }
  std::string message(int ev) const override {
    switch (static_cast<spool_errc>(ev)) {
      case spool_errc::invalid_id:
        return "invalid queue ID";
      case spool_errc::message_too_large:
        return "message exceeds the spool's size limit";
      case spool_errc::envelope_too_large:
        return "envelope exceeds the spool's size limit";
      case spool_errc::corrupt:
        return "spool file does not verify";
      case spool_errc::writer_closed:
        return "spool writer is closed";
      case spool_errc::not_a_directory:
        return "a spool directory is not a directory";
      case spool_errc::cross_device:
        return "the spool directories are not on one file system";
      case spool_errc::recipients_pending:
        return "recipients are still pending delivery";
      case spool_errc::crypto_failed:
        return "OpenSSL digest failed";
    }
    return "unknown spool error";
  }
};

std::error_code errno_code(int e) noexcept { return {e, std::generic_category()}; }
std::error_code last_error() noexcept { return errno_code(errno); }

bool is_errc(const std::error_code& ec, std::errc e) noexcept { return ec == std::make_error_condition(e); }

// ---------------------------------------------------------------- small encoders and parsers

constexpr char hex_upper[] = "0123456789ABCDEF";
constexpr char hex_lower[] = "0123456789abcdef";

bool needs_escape(unsigned char c) noexcept { return c <= 0x20 || c >= 0x7f || c == '%'; }

void append_pct(std::string& out, std::string_view v) {
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (needs_escape(c)) {
      out += '%';
      out += hex_upper[c >> 4];
      out += hex_upper[c & 0x0f];
    } else {
      out += ch;
    }
  }
}

int upper_hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict: only %HH with upper-case hex, and no raw byte that the encoder would have escaped.
bool decode_pct(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == '%') {
      if (in.size() - i < 3) return false;
      const int hi = upper_hex_value(in[i + 1]);
      const int lo = upper_hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>((hi << 4) | lo);
      i += 2;
    } else if (needs_escape(c)) {
      return false;
    } else {
      out += static_cast<char>(c);
    }
  }
  return true;
}

template <typename Int>
bool parse_int(std::string_view s, Int& out) noexcept {
  if (s.empty() || s.size() > 24) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && ptr == s.data() + s.size();
}

bool parse_micros(std::string_view s, clock_type::time_point& out) noexcept {
  std::int64_t us = 0;
  if (!parse_int(s, us) || us > max_abs_micros || us < -max_abs_micros) return false;
  out =
      clock_type::time_point(std::chrono::duration_cast<clock_type::duration>(std::chrono::microseconds(us)));
  return true;
}

std::string micros_text(clock_type::time_point t) {
  const std::int64_t us = std::chrono::floor<std::chrono::microseconds>(t.time_since_epoch()).count();
  return std::to_string(std::clamp(us, -max_abs_micros, max_abs_micros));
}

bool parse_bool01(std::string_view s, bool& out) noexcept {
  if (s == "0" || s == "1") {
    out = s == "1";
    return true;
  }
  return false;
}

std::string_view body_token(spool_body_type b) noexcept {
  switch (b) {
    case spool_body_type::seven_bit:
      return "7bit";
    case spool_body_type::eight_bit_mime:
      return "8bitmime";
    case spool_body_type::unspecified:
      break;
  }
  return "unspecified";
}

std::string_view ret_token(spool_dsn_ret r) noexcept {
  switch (r) {
    case spool_dsn_ret::full:
      return "full";
    case spool_dsn_ret::headers:
      return "hdrs";
    case spool_dsn_ret::unspecified:
      break;
  }
  return "unspecified";
}

std::string_view status_token(recipient_status s) noexcept {
  switch (s) {
    case recipient_status::delivered:
      return "delivered";
    case recipient_status::failed:
      return "failed";
    case recipient_status::pending:
      break;
  }
  return "pending";
}

// Splits lines off the front of a buffer; a line without its terminating LF is not returned.
class line_reader {
 public:
  explicit line_reader(std::string_view s) noexcept : rest_(s) {}
  std::optional<std::string_view> next() noexcept {
    const std::size_t lf = rest_.find('\n');
    if (lf == std::string_view::npos) return std::nullopt;
    const std::string_view line = rest_.substr(0, lf);
    rest_.remove_prefix(lf + 1);
    return line;
  }
  [[nodiscard]] std::string_view rest() const noexcept { return rest_; }

 private:
  std::string_view rest_;
};

// The value of "key value" (possibly empty) when the next line has that key.
std::optional<std::string_view> next_field(line_reader& r, std::string_view key) noexcept {
  const auto line = r.next();
  if (!line || line->size() < key.size() + 1 || line->substr(0, key.size()) != key ||
      (*line)[key.size()] != ' ') {
    return std::nullopt;
  }
  return line->substr(key.size() + 1);
}

bool next_pct(line_reader& r, std::string_view key, std::string& out) {
  const auto v = next_field(r, key);
  return v && decode_pct(*v, out);
}

bool next_bool(line_reader& r, std::string_view key, bool& out) {
  const auto v = next_field(r, key);
  return v && parse_bool01(*v, out);
}

// Splits "a b c" at single spaces into exactly n fields (fields may be empty).
template <std::size_t N>
bool split_fields(std::string_view s, std::array<std::string_view, N>& out) noexcept {
  for (std::size_t i = 0; i + 1 < N; ++i) {
    const std::size_t sp = s.find(' ');
    if (sp == std::string_view::npos) return false;
    out[i] = s.substr(0, sp);
    s.remove_prefix(sp + 1);
  }
  if (s.find(' ') != std::string_view::npos) return false;
  out[N - 1] = s;
  return true;
}

// ---------------------------------------------------------------- header and trailer

std::string encode_header(std::string_view id, const spool_envelope& e) {
  std::string h;
  h.reserve(256 + e.recipients.size() * 64);
  h += magic_line;
  h += "\nid ";
  h += id;
  h += "\nreceived ";
  h += micros_text(e.received);
  h += "\nclient ";
  append_pct(h, e.client_address);
  h += "\nhelo ";
  append_pct(h, e.helo);
  h += e.esmtp ? "\nesmtp 1" : "\nesmtp 0";
  h += e.tls ? "\ntls 1" : "\ntls 0";
  h += "\nfrom ";
  append_pct(h, e.mail_from);
  h += "\nbody ";
  h += body_token(e.body);
  h += e.smtputf8 ? "\nsmtputf8 1" : "\nsmtputf8 0";
  h += "\nret ";
  h += ret_token(e.ret);
  h += "\nenvid ";
  append_pct(h, e.envid);
  for (const auto& r : e.recipients) {
    h += "\nrcpt ";
    append_pct(h, r.address);
    h += ' ';
    append_pct(h, r.notify);
    h += ' ';
    append_pct(h, r.orcpt);
  }
  h += header_terminator;
  return h;
}

struct parsed_header {
  std::string id;
  spool_envelope envelope;
};

// `header` is exactly the header, ending with the "data" line.
std::optional<parsed_header> parse_header(std::string_view header) {
  parsed_header out;
  spool_envelope& e = out.envelope;
  line_reader r(header);
  if (r.next() != magic_line) return std::nullopt;
  const auto id = next_field(r, "id");
  if (!id || !validate_queue_id(*id)) return std::nullopt;
  out.id = std::string(*id);
  const auto received = next_field(r, "received");
  if (!received || !parse_micros(*received, e.received)) return std::nullopt;
  if (!next_pct(r, "client", e.client_address) || !next_pct(r, "helo", e.helo) ||
      !next_bool(r, "esmtp", e.esmtp) || !next_bool(r, "tls", e.tls) || !next_pct(r, "from", e.mail_from)) {
    return std::nullopt;
  }
  const auto body = next_field(r, "body");
  if (!body) return std::nullopt;
  if (*body == "unspecified") {
    e.body = spool_body_type::unspecified;
  } else if (*body == "7bit") {
    e.body = spool_body_type::seven_bit;
  } else if (*body == "8bitmime") {
    e.body = spool_body_type::eight_bit_mime;
  } else {
    return std::nullopt;
  }
  if (!next_bool(r, "smtputf8", e.smtputf8)) return std::nullopt;
  const auto ret = next_field(r, "ret");
  if (!ret) return std::nullopt;
  if (*ret == "unspecified") {
    e.ret = spool_dsn_ret::unspecified;
  } else if (*ret == "full") {
    e.ret = spool_dsn_ret::full;
  } else if (*ret == "hdrs") {
    e.ret = spool_dsn_ret::headers;
  } else {
    return std::nullopt;
  }
  if (!next_pct(r, "envid", e.envid)) return std::nullopt;
  for (;;) {
    const auto line = r.next();
    if (!line) return std::nullopt;
    if (*line == "data") break;
    if (line->substr(0, 5) != "rcpt ") return std::nullopt;
    std::array<std::string_view, 3> f{};
    if (!split_fields(line->substr(5), f)) return std::nullopt;
    spool_recipient rcpt;
    if (!decode_pct(f[0], rcpt.address) || !decode_pct(f[1], rcpt.notify) || !decode_pct(f[2], rcpt.orcpt)) {
      return std::nullopt;
    }
    e.recipients.push_back(std::move(rcpt));
  }
  if (!r.rest().empty()) return std::nullopt;
  return out;
}

// Length of the header (through "data\n") at the start of `bytes`, if it is complete there.
std::optional<std::size_t> find_header_end(std::string_view bytes) noexcept {
  const std::size_t p = bytes.find(header_terminator);
  if (p == std::string_view::npos) return std::nullopt;
  return p + header_terminator.size();
}

std::string encode_trailer(std::uint64_t message_length, std::string_view digest_hex) {
  std::string t(trailer_head);
  std::string digits = std::to_string(message_length);
  t.append(trailer_length_digits - digits.size(), '0');
  t += digits;
  t += ' ';
  t += digest_hex;
  t += trailer_tail;
  return t;
}

struct parsed_trailer {
  std::uint64_t message_length = 0;
  std::string_view digest_hex;
};

std::optional<parsed_trailer> parse_trailer(std::string_view t) noexcept {
  if (t.size() != trailer_length || t.substr(0, trailer_head.size()) != trailer_head ||
      t.substr(t.size() - trailer_tail.size()) != trailer_tail) {
    return std::nullopt;
  }
  std::string_view rest = t.substr(trailer_head.size());
  const std::string_view digits = rest.substr(0, trailer_length_digits);
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  parsed_trailer out;
  if (!parse_int(digits, out.message_length)) return std::nullopt;  // > 2^64-1 does not parse
  if (rest[trailer_length_digits] != ' ') return std::nullopt;
  out.digest_hex = rest.substr(trailer_length_digits + 1, sha256_hex_length);
  for (const char c : out.digest_hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  return out;
}

// ---------------------------------------------------------------- SHA-256

struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using md_ctx = std::unique_ptr<EVP_MD_CTX, md_ctx_deleter>;

md_ctx new_sha256() {
  md_ctx c(EVP_MD_CTX_new());
  if (c && EVP_DigestInit_ex(c.get(), EVP_sha256(), nullptr) != 1) c.reset();
  return c;
}

bool digest_update(EVP_MD_CTX* c, std::string_view bytes) noexcept {
  return bytes.empty() || EVP_DigestUpdate(c, bytes.data(), bytes.size()) == 1;
}

std::optional<std::string> digest_final_hex(EVP_MD_CTX* c) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(c, md.data(), &len) != 1 || len != 32) return std::nullopt;
  std::string hex;
  hex.reserve(sha256_hex_length);
  for (unsigned int i = 0; i < len; ++i) {
    hex += hex_lower[md[i] >> 4];
    hex += hex_lower[md[i] & 0x0f];
  }
  return hex;
}

// ---------------------------------------------------------------- reading files

// A read-only descriptor that does not follow a final symlink (spool names are ours; a symlink in a
// state directory is never a message).
class read_only_file {
 public:
  read_only_file() = default;
  read_only_file(const read_only_file&) = delete;
  read_only_file& operator=(const read_only_file&) = delete;
  ~read_only_file() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Opens a regular file; corrupt if the name is something else.
  std::error_code open(const fs::path& p) {
    do {
      fd_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) return errno == ELOOP ? make_error_code(spool_errc::corrupt) : last_error();
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return last_error();
    if (!S_ISREG(st.st_mode)) return make_error_code(spool_errc::corrupt);
    size_ = static_cast<std::uint64_t>(st.st_size);
    return {};
  }

  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }

  // Reads exactly n bytes at offset; corrupt if the file ends first (it shrank under us).
  std::error_code read_at(std::uint64_t offset, char* out, std::size_t n) const {
    while (n > 0) {
      const ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        return last_error();
      }
      if (got == 0) return make_error_code(spool_errc::corrupt);
      out += got;
      n -= static_cast<std::size_t>(got);
      offset += static_cast<std::uint64_t>(got);
    }
    return {};
  }

 private:
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

boost::system::result<std::string, std::error_code> read_whole_file(const fs::path& p, std::uint64_t cap,
                                                                    spool_errc too_large) {
  read_only_file f;
  if (auto ec = f.open(p)) return ec;
  if (f.size() > cap) return make_error_code(too_large);
  std::string data(static_cast<std::size_t>(f.size()), '\0');
  if (auto ec = f.read_at(0, data.data(), data.size())) return ec;
  return data;
}

// The header of an open spool file: reads at most max_envelope bytes.
boost::system::result<std::pair<parsed_header, std::size_t>, std::error_code> read_header(
    const read_only_file& f, std::size_t max_envelope) {
  if (f.size() < min_file_size) return make_error_code(spool_errc::corrupt);
  const std::uint64_t content = f.size() - trailer_length;
  const auto window = static_cast<std::size_t>(std::min<std::uint64_t>(content, max_envelope));
  std::string buf(std::min(window, first_header_read), '\0');
  if (auto ec = f.read_at(0, buf.data(), buf.size())) return ec;
  auto end = find_header_end(buf);
  if (!end && buf.size() < window) {
    const std::size_t have = buf.size();
    buf.resize(window);
    if (auto ec = f.read_at(have, buf.data() + have, window - have)) return ec;
    end = find_header_end(buf);
  }
  if (!end) {
    return make_error_code(content > max_envelope ? spool_errc::envelope_too_large : spool_errc::corrupt);
  }
  auto header = parse_header(std::string_view(buf).substr(0, *end));
  if (!header) return make_error_code(spool_errc::corrupt);
  return std::pair<parsed_header, std::size_t>(std::move(*header), *end);
}

struct verified_layout {
  parsed_header header;
  std::size_t header_length = 0;
  std::uint64_t message_length = 0;
};

boost::system::result<verified_layout, std::error_code> verify_bytes(std::string_view bytes,
                                                                     std::size_t max_envelope) {
  if (bytes.size() < min_file_size) return make_error_code(spool_errc::corrupt);
  const auto trailer = parse_trailer(bytes.substr(bytes.size() - trailer_length));
  if (!trailer) return make_error_code(spool_errc::corrupt);
  const std::string_view content = bytes.substr(0, bytes.size() - trailer_length);
  const auto end = find_header_end(content.substr(0, max_envelope));
  if (!end) {
    return make_error_code(content.size() > max_envelope ? spool_errc::envelope_too_large
                                                         : spool_errc::corrupt);
  }
  if (trailer->message_length != content.size() - *end) return make_error_code(spool_errc::corrupt);
  md_ctx md = new_sha256();
  if (!md || !digest_update(md.get(), content)) return make_error_code(spool_errc::crypto_failed);
  const auto digest = digest_final_hex(md.get());
  if (!digest) return make_error_code(spool_errc::crypto_failed);
  if (*digest != trailer->digest_hex) return make_error_code(spool_errc::corrupt);
  auto header = parse_header(content.substr(0, *end));
  if (!header) return make_error_code(spool_errc::corrupt);
  return verified_layout{std::move(*header), *end, trailer->message_length};
}

// ---------------------------------------------------------------- delivery state

std::string encode_delivery_state(const delivery_state& s) {
  std::string out(delivery_magic_line);
  out += "\nattempts ";
  out += std::to_string(s.attempts);
  out += "\nnext ";
  out += micros_text(s.next_attempt);
  for (const auto& r : s.recipients) {
    out += "\nrcpt ";
    out += status_token(r.status);
    out += ' ';
    out += std::to_string(r.attempts);
    out += ' ';
    append_pct(out, std::string_view(r.last_reply).substr(0, max_stored_reply));
  }
  out += "\nEND\n";
  return out;
}

std::optional<delivery_state> parse_delivery_state(std::string_view bytes) {
  delivery_state s;
  line_reader r(bytes);
  if (r.next() != delivery_magic_line) return std::nullopt;
  const auto attempts = next_field(r, "attempts");
  if (!attempts || !parse_int(*attempts, s.attempts)) return std::nullopt;
  const auto next = next_field(r, "next");
  if (!next || !parse_micros(*next, s.next_attempt)) return std::nullopt;
  for (;;) {
    const auto line = r.next();
    if (!line) return std::nullopt;
    if (*line == "END") break;
    if (line->substr(0, 5) != "rcpt ") return std::nullopt;
    std::array<std::string_view, 3> f{};
    if (!split_fields(line->substr(5), f)) return std::nullopt;
    recipient_delivery d;
    if (f[0] == "pending") {
      d.status = recipient_status::pending;
    } else if (f[0] == "delivered") {
      d.status = recipient_status::delivered;
    } else if (f[0] == "failed") {
      d.status = recipient_status::failed;
    } else {
      return std::nullopt;
    }
    if (!parse_int(f[1], d.attempts) || !decode_pct(f[2], d.last_reply)) return std::nullopt;
    s.recipients.push_back(std::move(d));
  }
  if (!r.rest().empty()) return std::nullopt;
  return s;
}

// ---------------------------------------------------------------- misc

fs::path without_trailing_separator(fs::path p) {
  while (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p;
}

fs::path parent_or_dot(const fs::path& p) {
  fs::path parent = p.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

std::string random_hex8() {
  std::array<unsigned char, 4> b{};
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) {
    std::fputs("mukai: RAND_bytes failed in the spool\n", stderr);
    std::abort();
  }
  std::string out;
  for (const unsigned char c : b) {
    out += hex_lower[c >> 4];
    out += hex_lower[c & 0x0f];
  }
  return out;
}

// Every name in a directory (without following anything); "." and ".." are never listed.
boost::system::result<std::vector<std::string>, std::error_code> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) return ec;
  std::sort(names.begin(), names.end());
  return names;
}

bool exists_no_follow(const fs::path& p) noexcept {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

bool is_spool_error(const std::error_code& ec) noexcept {
  return ec.category() == spool_category() &&
         (ec == spool_errc::corrupt || ec == spool_errc::envelope_too_large);
}

}  // namespace

// ---------------------------------------------------------------- errors, IDs, small types

const std::error_category& spool_category() noexcept {
  static const spool_category_impl category;
  return category;
}

std::error_code make_error_code(spool_errc e) noexcept { return {static_cast<int>(e), spool_category()}; }

std::string new_queue_id() {
  std::array<unsigned char, id_random_chars> rnd{};
  if (RAND_bytes(rnd.data(), static_cast<int>(rnd.size())) != 1) {
    std::fputs("mukai: RAND_bytes failed while creating a queue ID\n", stderr);
    std::abort();
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now().time_since_epoch()).count();
  auto t = static_cast<std::uint64_t>(std::max<std::int64_t>(ms, 0));
  std::string id(id_length, '0');
  for (std::size_t i = id_time_chars; i-- > 0;) {
    id[i] = id_alphabet[t & 0x1f];
    t >>= 5;
  }
  // 256 is a multiple of 32: the low five bits of each byte are unbiased.
  for (std::size_t i = 0; i < id_random_chars; ++i) id[id_time_chars + i] = id_alphabet[rnd[i] & 0x1f];
  return id;
}

bool validate_queue_id(std::string_view id) noexcept {
  if (id.size() != id_length) return false;
  for (const char c : id) {
    if (id_alphabet.find(c) == std::string_view::npos) return false;
  }
  return true;
}

std::optional<clock_type::time_point> queue_id_time(std::string_view id) noexcept {
  if (!validate_queue_id(id)) return std::nullopt;
  std::int64_t ms = 0;
  for (std::size_t i = 0; i < id_time_chars; ++i) {
    ms = (ms << 5) | static_cast<std::int64_t>(id_alphabet.find(id[i]));
  }
  // 45 bits of milliseconds reach beyond what system_clock's nanoseconds can hold (year 2262).
  if (ms > max_abs_micros / 1000) return std::nullopt;
  return clock_type::time_point(
      std::chrono::duration_cast<clock_type::duration>(std::chrono::milliseconds(ms)));
}

std::string_view to_string(spool_state s) noexcept {
  switch (s) {
    case spool_state::incoming:
      return "incoming";
    case spool_state::active:
      return "active";
    case spool_state::outbound:
      return "outbound";
    case spool_state::deferred:
      return "deferred";
    case spool_state::corrupt:
      return "corrupt";
  }
  return "unknown";
}

bool delivery_state::done() const noexcept {
  return std::none_of(recipients.begin(), recipients.end(),
                      [](const recipient_delivery& r) { return r.status == recipient_status::pending; });
}

boost::system::result<spooled_message, std::error_code> parse_spool_file(std::string_view bytes,
                                                                         std::size_t max_envelope_size) {
  auto v = verify_bytes(bytes, max_envelope_size);
  if (!v) return v.error();
  return spooled_message{std::move(v->header.id), std::move(v->header.envelope),
                         std::string(bytes.substr(v->header_length, v->message_length))};
}

// ---------------------------------------------------------------- directory_syncer

// Group commit for one directory. fsync of a directory makes durable every entry change made before
// the fsync STARTED; so a caller whose rename is done may return as soon as any fsync that started
// after its rename has finished. Callers take a ticket after their rename; a sync records the highest
// ticket issued when it started; a caller whose ticket is covered returns that sync's result, and
// otherwise starts the next sync itself. Under load N concurrent commits share about two fsyncs
// instead of doing N, and a single caller pays exactly one, as without batching.
// A failed sync fails every caller it covered (conservative: none of them acknowledges).
class spool::directory_syncer {
 public:
  directory_syncer(file_ops& ops, fs::path dir) : ops_(ops), dir_(std::move(dir)) {}

  std::error_code sync() {
    std::unique_lock lock(mutex_);
    const std::uint64_t ticket = ++issued_;
    for (;;) {
      if (completed_ >= ticket) return completed_error_;
      if (!running_) break;
      done_.wait(lock);
    }
    running_ = true;
    const std::uint64_t covers = issued_;
    lock.unlock();
    std::error_code ec;
    {
      // Publishes the result even if sync_directory threw, so that waiters never hang.
      struct publish {
        directory_syncer& self;
        std::uint64_t covers;
        std::error_code& ec;
        ~publish() {
          const std::lock_guard relock(self.mutex_);
          self.running_ = false;
          if (covers > self.completed_) {
            self.completed_ = covers;
            self.completed_error_ = ec;
          }
          self.done_.notify_all();
        }
      } guard{*this, covers, ec};
      ec = ops_.sync_directory(dir_);
    }
    return ec;
  }

 private:
  file_ops& ops_;
  fs::path dir_;
  std::mutex mutex_;
  std::condition_variable done_;
  std::uint64_t issued_ = 0;
  std::uint64_t completed_ = 0;
  std::error_code completed_error_;
  bool running_ = false;
};

// ---------------------------------------------------------------- spool_writer

struct spool_writer::impl {
  spool* owner = nullptr;
  file_ops* ops = nullptr;
  std::string id;
  spool_state target = spool_state::incoming;
  fs::path tmp_path;
  std::optional<scoped_file> file;
  md_ctx md;
  std::string buffer;
  std::uint64_t size = 0;
  std::uint64_t limit = 0;
  bool open = false;  // the temporary exists and may still be committed
  bool raw_copy_kept = false;  // outbound without fsyncs; active/ID stays the durable copy
  std::error_code failure;

  ~impl() { discard(); }

  // Closes the descriptor and deletes the temporary: nothing of an uncommitted message stays.
  void discard() noexcept {
    if (!open) return;
    open = false;
    file.reset();
    // Best effort: if this fails too, the file is in tmp/, which recovery empties.
    (void)ops->unlink(tmp_path);
    std::string().swap(buffer);
  }

  std::error_code fail(std::error_code ec) {
    if (!failure) failure = ec;
    discard();
    return ec;
  }

  std::error_code closed_error() const {
    return failure ? failure : make_error_code(spool_errc::writer_closed);
  }

  std::error_code flush() {
    if (buffer.empty()) return {};
    const std::error_code ec = ops->write_all(file->get(), buffer);
    buffer.clear();
    return ec;
  }
};

spool_writer::spool_writer(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}
spool_writer::spool_writer(spool_writer&&) noexcept = default;
spool_writer::~spool_writer() = default;  // impl::~impl discards an uncommitted file

spool_writer& spool_writer::operator=(spool_writer&& other) noexcept {
  if (this != &other) impl_ = std::move(other.impl_);  // the old impl discards its own file
  return *this;
}

const std::string& spool_writer::queue_id() const noexcept { return impl_->id; }

std::uint64_t spool_writer::size() const noexcept { return impl_->size; }

void spool_writer::abort() noexcept {
  if (impl_) impl_->discard();
}

std::error_code spool_writer::append(std::string_view chunk) {
  impl& w = *impl_;
  if (!w.open) return w.closed_error();
  if (chunk.size() > w.limit - w.size) return w.fail(make_error_code(spool_errc::message_too_large));
  if (!digest_update(w.md.get(), chunk)) return w.fail(make_error_code(spool_errc::crypto_failed));
  w.size += chunk.size();
  if (w.buffer.size() + chunk.size() <= write_buffer_size) {
    w.buffer.append(chunk);
    return {};
  }
  if (auto ec = w.flush()) return w.fail(ec);
  if (chunk.size() >= write_buffer_size) {
    if (auto ec = w.ops->write_all(w.file->get(), chunk)) return w.fail(ec);
  } else {
    w.buffer.append(chunk);
  }
  return {};
}

boost::system::result<std::string, std::error_code> spool_writer::commit() {
  impl& w = *impl_;
  if (!w.open) return w.closed_error();
  spool& s = *w.owner;
  file_ops& ops = *w.ops;

  const auto digest = digest_final_hex(w.md.get());
  if (!digest) return w.fail(make_error_code(spool_errc::crypto_failed));
  w.buffer += encode_trailer(w.size, *digest);
  if (auto ec = w.flush()) return w.fail(ec);
  if (w.raw_copy_kept) return commit_unsynced();
  // The data must be on stable storage BEFORE the name appears in the state directory: otherwise a
  // crash can leave a complete-looking name over missing or zero-filled blocks (delayed allocation),
  // and a message we acknowledged would be lost or corrupt.
  if (auto ec = ops.sync_file(w.file->get())) return w.fail(ec);
  // close can report a deferred write error (NFS): then we do not know the bytes are stored.
  if (auto ec = w.file->close()) return w.fail(ec);

  const fs::path final_path = s.dir(w.target) / w.id;
  if (auto ec = ops.rename_no_replace(w.tmp_path, final_path)) {
    // outbound/ID exists: an earlier attempt for this ID published its copy and then failed later
    // (or recovery left it): that copy may already carry delivery results, so keep it. For
    // incoming/ this is an ID collision: never replace another message.
    if (w.target != spool_state::outbound || !is_errc(ec, std::errc::file_exists)) return w.fail(ec);
    w.discard();
  }
  w.open = false;  // the temporary name is gone

  const auto target_dir = w.target == spool_state::incoming ? spool::incoming_dir : spool::outbound_dir;
  // The rename changed only directory entries; until the directory is fsynced a crash can undo it.
  if (auto ec = s.sync_dir(target_dir)) {
    if (w.target == spool_state::incoming) {
      // No 250 will be sent and the client will send the message again: take this copy back so the
      // retry does not make a duplicate. If the unlink fails as well the complete file stays in
      // incoming/ unacknowledged (a possible duplicate, never a loss).
      (void)ops.unlink(final_path);
    }
    // For outbound/ the copy stays: recovery (or a retry of store_outbound) keeps it over the raw one.
    w.failure = ec;
    return ec;
  }
  if (w.target == spool_state::outbound) {
    // Only now that the sanitized copy is durable may the raw one go. ENOENT: a message we generated
    // (a DSN), or a retry after the raw copy was already removed.
    const fs::path active = s.dir(spool_state::active) / w.id;
    std::error_code ec = ops.unlink(active);
    if (!ec) {
      // Make the removal durable too: a raw copy resurrected after finish() would be sanitized and
      // delivered a second time.
      ec = s.sync_dir(spool::active_dir);
    } else if (is_errc(ec, std::errc::no_such_file_or_directory)) {
      ec.clear();
    }
    if (ec) {
      w.failure = ec;
      return ec;
    }
  }
  return w.id;
}

// The raw_copy_kept variant: the same publication without a single fsync. Whatever a crash does to
// outbound/ID (missing, empty, torn), active/ID is still there, durable since its own commit, and
// recovery makes the sanitized copy again. So the raw copy is not touched here.
boost::system::result<std::string, std::error_code> spool_writer::commit_unsynced() {
  impl& w = *impl_;
  spool& s = *w.owner;
  if (auto ec = w.file->close()) return w.fail(ec);
  const fs::path final_path = s.dir(spool_state::outbound) / w.id;
  if (auto ec = w.ops->rename_no_replace(w.tmp_path, final_path)) {
    // An earlier attempt published its copy (see commit): keep it.
    if (!is_errc(ec, std::errc::file_exists)) return w.fail(ec);
    w.discard();
  }
  w.open = false;
  return w.id;
}

// ---------------------------------------------------------------- spool

spool::spool(fs::path root, file_ops& ops, spool_options options)
    : root_(without_trailing_separator(std::move(root))), ops_(ops), options_(options) {
  dirs_[tmp_dir] = root_ / "tmp";
  dirs_[incoming_dir] = root_ / "incoming";
  dirs_[active_dir] = root_ / "active";
  dirs_[outbound_dir] = root_ / "outbound";
  dirs_[deferred_dir] = root_ / "deferred";
  dirs_[corrupt_dir] = root_ / "corrupt";
  dirs_[delivery_dir] = root_ / "delivery";
  for (std::size_t i = 0; i < dir_count; ++i)
    syncers_[i] = std::make_unique<directory_syncer>(ops_, dirs_[i]);
}

spool::~spool() = default;

const fs::path& spool::dir(spool_state s) const noexcept {
  switch (s) {
    case spool_state::incoming:
      return dirs_[incoming_dir];
    case spool_state::active:
      return dirs_[active_dir];
    case spool_state::outbound:
      return dirs_[outbound_dir];
    case spool_state::deferred:
      return dirs_[deferred_dir];
    case spool_state::corrupt:
      break;
  }
  return dirs_[corrupt_dir];
}

std::error_code spool::sync_dir(dir_index d) { return syncers_[d]->sync(); }

std::optional<fs::path> spool::path_of(spool_state state, std::string_view id) const {
  if (!validate_queue_id(id)) return std::nullopt;
  return dir(state) / std::string(id);
}

std::error_code spool::ensure_layout() {
  std::error_code ec = ops_.make_directory(root_);
  if (!ec) {
    // A new directory's name lives in its parent: make it durable there, or a crash could lose the
    // whole spool together with messages acknowledged inside it.
    if (auto sync_ec = ops_.sync_directory(parent_or_dot(root_))) return sync_ec;
  } else if (!is_errc(ec, std::errc::file_exists)) {
    return ec;
  }
  bool created = false;
  for (const auto& d : dirs_) {
    ec = ops_.make_directory(d);
    if (!ec) {
      created = true;
    } else if (!is_errc(ec, std::errc::file_exists)) {
      return ec;
    }
  }
  if (created) {
    if (auto sync_ec = ops_.sync_directory(root_)) return sync_ec;
  }
  // Follows symlinks on purpose (an administrator may place a directory elsewhere), but all must be
  // on one file system: rename across file systems fails (EXDEV) and could never be atomic.
  struct stat root_st {};
  if (::stat(root_.c_str(), &root_st) != 0) return last_error();
  if (!S_ISDIR(root_st.st_mode)) return make_error_code(spool_errc::not_a_directory);
  for (const auto& d : dirs_) {
    struct stat st {};
    if (::stat(d.c_str(), &st) != 0) return last_error();
    if (!S_ISDIR(st.st_mode)) return make_error_code(spool_errc::not_a_directory);
    if (st.st_dev != root_st.st_dev) return make_error_code(spool_errc::cross_device);
  }
  return {};
}

boost::system::result<spool_writer, std::error_code> spool::start_writer(std::string id, spool_state target,
                                                                         const spool_envelope& envelope,
                                                                         outbound_durability durability) {
  auto w = std::make_unique<spool_writer::impl>();
  w->owner = this;
  w->ops = &ops_;
  w->target = target;
  w->raw_copy_kept = target == spool_state::outbound && durability == outbound_durability::raw_copy_kept;
  w->limit = target == spool_state::incoming ? options_.max_message_size : options_.max_outbound_size;
  w->md = new_sha256();
  if (!w->md) return make_error_code(spool_errc::crypto_failed);

  std::string header;
  // An ID collision can only meet a leftover or a concurrent writer in tmp/; a few tries are plenty.
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (target == spool_state::incoming) {
      id = new_queue_id();
      w->tmp_path = dirs_[tmp_dir] / id;
    } else {
      // Several attempts for one outbound ID may meet in tmp/ (a retry after a failed cleanup).
      w->tmp_path = dirs_[tmp_dir] / (id + ".out." + random_hex8());
    }
    header = encode_header(id, envelope);
    if (header.size() > options_.max_envelope_size) return make_error_code(spool_errc::envelope_too_large);
    auto f = ops_.create_file(w->tmp_path);
    if (f) {
      w->file.emplace(ops_, *f);
      break;
    }
    if (!is_errc(f.error(), std::errc::file_exists)) return f.error();
  }
  if (!w->file) return errno_code(EEXIST);
  w->open = true;
  w->id = std::move(id);
  if (!digest_update(w->md.get(), header)) return w->fail(make_error_code(spool_errc::crypto_failed));
  w->buffer = std::move(header);
  w->buffer.reserve(write_buffer_size);
  return spool_writer(std::move(w));
}

boost::system::result<spool_writer, std::error_code> spool::begin(const spool_envelope& envelope) {
  return start_writer({}, spool_state::incoming, envelope, outbound_durability::durable);
}

boost::system::result<spool_writer, std::error_code> spool::begin_outbound(std::string_view id,
                                                                           const spool_envelope& envelope,
                                                                           outbound_durability durability) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  return start_writer(std::string(id), spool_state::outbound, envelope, durability);
}

std::error_code spool::store_outbound(std::string_view id, std::string_view sanitized,
                                      const spool_envelope& envelope, outbound_durability durability) {
  auto w = begin_outbound(id, envelope, durability);
  if (!w) return w.error();
  if (auto ec = w->append(sanitized)) return ec;
  auto committed = w->commit();
  if (!committed) return committed.error();
  return {};
}

std::error_code spool::claim_incoming(std::string_view id) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  // No directory fsync: if a crash undoes the rename the message is sanitized from incoming/, and
  // recovery moves anything left in active/ back there anyway.
  return ops_.rename_no_replace(dir(spool_state::incoming) / std::string(id),
                                dir(spool_state::active) / std::string(id));
}

std::error_code spool::remove_active(std::string_view id) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  if (auto ec = ops_.unlink(dir(spool_state::active) / std::string(id))) return ec;
  // Durable, or a crash could bring the raw message back and sanitize and deliver it after all.
  return sync_dir(active_dir);
}

boost::system::result<spooled_message, std::error_code> spool::read(spool_state state,
                                                                    std::string_view id) const {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  if (state == spool_state::corrupt) return errno_code(EINVAL);
  const std::uint64_t limit = (state == spool_state::incoming || state == spool_state::active)
                                  ? options_.max_message_size
                                  : options_.max_outbound_size;
  // Bounded before anything is allocated: a file larger than we would ever write is refused.
  auto bytes =
      read_whole_file(dir(state) / std::string(id), options_.max_envelope_size + limit + trailer_length,
                      spool_errc::message_too_large);
  if (!bytes) return bytes.error();
  auto v = verify_bytes(*bytes, options_.max_envelope_size);
  if (!v) return v.error();
  if (v->header.id != id) return make_error_code(spool_errc::corrupt);  // a file under the wrong name
  if (v->message_length > limit) return make_error_code(spool_errc::message_too_large);
  // Reuse the buffer for the body instead of copying up to max_message_size bytes again.
  std::string body = std::move(*bytes);
  body.resize(v->header_length + static_cast<std::size_t>(v->message_length));
  body.erase(0, v->header_length);
  return spooled_message{std::move(v->header.id), std::move(v->header.envelope), std::move(body)};
}

boost::system::result<spool_envelope, std::error_code> spool::read_envelope(spool_state state,
                                                                            std::string_view id) const {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  if (state == spool_state::corrupt) return errno_code(EINVAL);
  read_only_file f;
  if (auto ec = f.open(dir(state) / std::string(id))) return ec;
  auto h = read_header(f, options_.max_envelope_size);
  if (!h) return h.error();
  if (h->first.id != id) return make_error_code(spool_errc::corrupt);
  return std::move(h->first.envelope);
}

// Streams the file through SHA-256: recovery verifies messages of any size in bounded memory.
std::error_code spool::verify_file(spool_state state, std::string_view id) const {
  read_only_file f;
  if (auto ec = f.open(dir(state) / std::string(id))) return ec;
  auto h = read_header(f, options_.max_envelope_size);
  if (!h) return h.error();
  if (h->first.id != id) return make_error_code(spool_errc::corrupt);
  std::string trailer_bytes(trailer_length, '\0');
  const std::uint64_t content = f.size() - trailer_length;
  if (auto ec = f.read_at(content, trailer_bytes.data(), trailer_length)) return ec;
  const auto trailer = parse_trailer(trailer_bytes);
  if (!trailer || trailer->message_length != content - h->second) return make_error_code(spool_errc::corrupt);
  md_ctx md = new_sha256();
  if (!md) return make_error_code(spool_errc::crypto_failed);
  std::string chunk(read_chunk_size, '\0');
  for (std::uint64_t offset = 0; offset < content;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(read_chunk_size, content - offset));
    if (auto ec = f.read_at(offset, chunk.data(), n)) return ec;
    if (!digest_update(md.get(), std::string_view(chunk.data(), n)))
      return make_error_code(spool_errc::crypto_failed);
    offset += n;
  }
  const auto digest = digest_final_hex(md.get());
  if (!digest) return make_error_code(spool_errc::crypto_failed);
  if (*digest != trailer->digest_hex) return make_error_code(spool_errc::corrupt);
  return {};
}

boost::system::result<std::string, std::error_code> spool::move_to_corrupt_unsynced(const fs::path& from,
                                                                                    std::string_view id,
                                                                                    std::string_view suffix) {
  std::string name = std::string(id) + "." + std::string(suffix);
  for (int attempt = 0; attempt < 8; ++attempt) {
    const std::string candidate = attempt == 0 ? name : name + "." + random_hex8();
    // Never replace: an earlier corrupt file of the same ID is evidence too.
    const std::error_code ec = ops_.rename_no_replace(from, dirs_[corrupt_dir] / candidate);
    if (!ec) return candidate;
    if (!is_errc(ec, std::errc::file_exists)) return ec;
  }
  return errno_code(EEXIST);
}

boost::system::result<std::string, std::error_code> spool::move_to_corrupt(spool_state state,
                                                                           std::string_view id) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  if (state == spool_state::corrupt) return errno_code(EINVAL);
  auto name = move_to_corrupt_unsynced(dir(state) / std::string(id), id, to_string(state));
  if (!name) return name.error();
  // Durable: the file must not reappear in its state directory and be picked up again.
  if (auto ec = sync_dir(corrupt_dir)) return ec;
  return name;
}

boost::system::result<std::vector<std::string>, std::error_code> spool::list(spool_state state) const {
  auto names = names_in(dir(state));
  if (!names) return names.error();
  std::vector<std::string> out;
  for (auto& n : *names) {
    const bool ours = state == spool_state::corrupt ? (!n.empty() && n.front() != '.') : validate_queue_id(n);
    if (ours) out.push_back(std::move(n));
  }
  return out;
}

std::optional<spool_state> spool::locate_sanitized(std::string_view id) const {
  for (const auto s : {spool_state::outbound, spool_state::deferred}) {
    if (exists_no_follow(dir(s) / std::string(id))) return s;
  }
  return std::nullopt;
}

std::optional<spool_state> spool::locate(std::string_view id) const {
  if (!validate_queue_id(id)) return std::nullopt;
  if (auto s = locate_sanitized(id)) return s;
  for (const auto s : {spool_state::active, spool_state::incoming}) {
    if (exists_no_follow(dir(s) / std::string(id))) return s;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- delivery

boost::system::result<delivery_state, std::error_code> spool::load_delivery_state(std::string_view id) const {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  const auto where = locate_sanitized(id);
  if (!where) return errno_code(ENOENT);
  auto envelope = read_envelope(*where, id);
  if (!envelope) return envelope.error();
  return load_delivery_state(id, *envelope);
}

boost::system::result<delivery_state, std::error_code> spool::load_delivery_state(
    std::string_view id, const spool_envelope& envelope) const {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  auto bytes =
      read_whole_file(dirs_[delivery_dir] / std::string(id), max_delivery_state_size, spool_errc::corrupt);
  if (!bytes) {
    if (!is_errc(bytes.error(), std::errc::no_such_file_or_directory)) return bytes.error();
    delivery_state fresh;
    fresh.recipients.resize(envelope.recipients.size());
    return fresh;
  }
  auto state = parse_delivery_state(*bytes);
  if (!state || state->recipients.size() != envelope.recipients.size())
    return make_error_code(spool_errc::corrupt);
  return std::move(*state);
}

std::error_code spool::save_delivery_state(std::string_view id, const delivery_state& state) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  const auto where = locate_sanitized(id);
  if (!where) return errno_code(ENOENT);
  auto envelope = read_envelope(*where, id);
  if (!envelope) return envelope.error();
  // A state for the wrong recipient list would later mark the wrong people delivered.
  if (state.recipients.size() != envelope->recipients.size()) return errno_code(EINVAL);
  const std::string bytes = encode_delivery_state(state);
  if (bytes.size() > max_delivery_state_size) return make_error_code(spool_errc::envelope_too_large);
  // Old or new state after a crash, never a mix, and durable before we return (it fsyncs the file
  // and delivery/): a recipient recorded as delivered is never sent the message again.
  return write_file_atomically(ops_, dirs_[delivery_dir], id, bytes);
}

std::error_code spool::defer(std::string_view id, clock_type::time_point next_attempt) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  const auto where = locate_sanitized(id);
  if (!where) return errno_code(ENOENT);
  auto state = load_delivery_state(id);
  if (!state) return state.error();
  state->next_attempt = next_attempt;
  // The state first: deferred/ID is then never without its retry time.
  if (auto ec = save_delivery_state(id, *state)) return ec;
  if (*where == spool_state::deferred) return {};
  // No directory fsync: if a crash undoes the rename, the message waits in outbound/ and is merely
  // retried early; its recorded recipient results hold either way.
  return ops_.rename_no_replace(dir(spool_state::outbound) / std::string(id),
                                dir(spool_state::deferred) / std::string(id));
}

boost::system::result<std::vector<spool::deferred_entry>, std::error_code> spool::deferred_schedule() const {
  auto ids = list(spool_state::deferred);
  if (!ids) return ids.error();
  std::vector<deferred_entry> out;
  out.reserve(ids->size());
  for (auto& id : *ids) {
    clock_type::time_point next{};  // unreadable state: due now, the delivery attempt reports it
    auto bytes = read_whole_file(dirs_[delivery_dir] / id, max_delivery_state_size, spool_errc::corrupt);
    if (bytes) {
      if (auto st = parse_delivery_state(*bytes)) next = st->next_attempt;
    }
    out.emplace_back(next, std::move(id));
  }
  std::sort(out.begin(), out.end());
  return out;
}

boost::system::result<std::vector<std::string>, std::error_code> spool::due_deferred(
    clock_type::time_point now) const {
  auto all = deferred_schedule();
  if (!all) return all.error();
  std::vector<std::string> out;
  for (auto& [next, id] : *all) {
    if (next > now) break;
    out.push_back(std::move(id));
  }
  return out;
}

std::error_code spool::requeue_deferred(std::string_view id) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  // No fsync: a lost rename leaves it in deferred/ with a retry time already due.
  return ops_.rename_no_replace(dir(spool_state::deferred) / std::string(id),
                                dir(spool_state::outbound) / std::string(id));
}

std::error_code spool::finish(std::string_view id) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  const auto where = locate_sanitized(id);
  if (!where) return errno_code(ENOENT);
  auto state = load_delivery_state(id);
  if (!state) return state.error();
  return finish(id, *state);
}

std::error_code spool::finish(std::string_view id, const delivery_state& settled) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  const auto where = locate_sanitized(id);
  if (!where) return errno_code(ENOENT);
  if (!settled.done()) return make_error_code(spool_errc::recipients_pending);
  // The message before its state: a crash in between leaves an orphan state (removed by recovery),
  // never a message without its state (which would be delivered to every recipient again).
  if (auto ec = ops_.unlink(dir(*where) / std::string(id))) return ec;
  if (auto ec = sync_dir(*where == spool_state::outbound ? outbound_dir : deferred_dir)) return ec;
  // Then the raw backup (raw_copy_kept), durably: a raw copy that came back would be sanitized and
  // delivered again. A crash between the two syncs does exactly that once (a saved state still
  // spares the recipients it records): the at-least-once window, kept to one directory fsync.
  std::error_code ec = ops_.unlink(dir(spool_state::active) / std::string(id));
  if (!ec) {
    if (auto sec = sync_dir(active_dir)) return sec;
  } else if (!is_errc(ec, std::errc::no_such_file_or_directory)) {
    return ec;
  }
  ec = ops_.unlink(dirs_[delivery_dir] / std::string(id));
  if (ec && !is_errc(ec, std::errc::no_such_file_or_directory)) return ec;
  return {};
}

std::error_code spool::finish_unspooled(std::string_view id) {
  if (!validate_queue_id(id)) return make_error_code(spool_errc::invalid_id);
  // With a sanitized copy in outbound/ or deferred/ only finish() may remove the raw one: that copy
  // would otherwise be delivered again.
  if (locate_sanitized(id)) return errno_code(EEXIST);
  if (auto ec = ops_.unlink(dir(spool_state::active) / std::string(id))) return ec;
  // Durable before we forget the message: a raw copy that came back would be delivered again.
  if (auto ec = sync_dir(active_dir)) return ec;
  const std::error_code ec = ops_.unlink(dirs_[delivery_dir] / std::string(id));
  if (ec && !is_errc(ec, std::errc::no_such_file_or_directory)) return ec;
  return {};
}

// ---------------------------------------------------------------- metrics

boost::system::result<spool_counts, std::error_code> spool::counts() const {
  spool_counts c;
  const std::pair<spool_state, std::size_t*> slots[] = {{spool_state::incoming, &c.incoming},
                                                        {spool_state::active, &c.active},
                                                        {spool_state::outbound, &c.outbound},
                                                        {spool_state::deferred, &c.deferred},
                                                        {spool_state::corrupt, &c.corrupt}};
  for (const auto& [state, slot] : slots) {
    auto ids = list(state);
    if (!ids) return ids.error();
    *slot = ids->size();
  }
  return c;
}

std::optional<clock_type::duration> spool::oldest_message_age(clock_type::time_point now) const {
  std::optional<clock_type::time_point> oldest;
  for (const auto s :
       {spool_state::incoming, spool_state::active, spool_state::outbound, spool_state::deferred}) {
    auto ids = list(s);
    if (!ids || ids->empty()) continue;
    const auto t = queue_id_time(ids->front());  // sorted: the first is the oldest
    if (t && (!oldest || *t < *oldest)) oldest = t;
  }
  if (!oldest) return std::nullopt;
  return std::max(now - *oldest, clock_type::duration::zero());
}

boost::system::result<free_space_info, std::error_code> spool::free_space() const {
  struct statvfs st {};
  int rc = 0;
  do {
    rc = ::statvfs(root_.c_str(), &st);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return last_error();
  free_space_info info;
  info.available_bytes = static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize);
  // File systems without an inode limit (btrfs) report no inodes at all: never "out of inodes" there.
  info.available_inodes =
      st.f_files == 0 ? std::numeric_limits<std::uint64_t>::max() : static_cast<std::uint64_t>(st.f_favail);
  return info;
}

bool spool::storage_low(std::uint64_t min_free_bytes, std::uint64_t min_free_inodes) const {
  const auto space = free_space();
  // Unknown counts as low: a 452 makes the client retry later; accepting could lose a message.
  if (!space) return true;
  return space->available_bytes < min_free_bytes || space->available_inodes < min_free_inodes;
}

// ---------------------------------------------------------------- recovery

std::error_code spool::recover_sanitized(spool_state state, recovery_report& report) {
  auto names = names_in(dir(state));
  if (!names) return names.error();
  for (const auto& name : *names) {
    if (!validate_queue_id(name)) {
      ++report.unknown_entries;
      continue;
    }
    const fs::path p = dir(state) / name;
    if (state == spool_state::deferred && exists_no_follow(dir(spool_state::outbound) / name)) {
      // One message under two names (a rename replayed half by a crash; outbound/ was verified
      // already and stays). Both names come from the same sanitized file.
      if (auto ec = ops_.unlink(p)) return ec;
      ++report.superseded;
      continue;
    }
    const std::error_code ec = verify_file(state, name);
    if (!ec) continue;
    if (!is_spool_error(ec)) return ec;  // an I/O error: stop, the administrator must look
    if (exists_no_follow(dir(spool_state::active) / name) || exists_no_follow(dir(spool_state::incoming) / name)) {
      // A raw_copy_kept copy that a crash caught before its blocks reached the disk: expected, not
      // an alert. The raw copy is sanitized again (and its delivery state, if any, is kept).
      if (auto uec = ops_.unlink(p)) return uec;
      ++report.discarded_unsynced;
      continue;
    }
    auto moved = move_to_corrupt_unsynced(p, name, to_string(state));
    if (!moved) return moved.error();
    ++report.corrupt;
    report.corrupt_names.push_back(std::move(*moved));
  }
  return {};
}

std::error_code spool::recover_raw(spool_state state, recovery_report& report) {
  auto names = names_in(dir(state));
  if (!names) return names.error();
  for (const auto& name : *names) {
    if (!validate_queue_id(name)) {
      ++report.unknown_entries;
      continue;
    }
    const fs::path p = dir(state) / name;
    if (locate_sanitized(name)) {
      // A verified sanitized copy (checked above) exists: sanitizing again would only duplicate the
      // delivery. The raw copy stays as its backup in active/ until finish(): the sanitized copy may
      // be an unsynced raw_copy_kept one that verified from the page cache after a process crash and
      // could still be lost to a power failure.
      const std::error_code vec = verify_file(state, name);
      if (vec && !is_spool_error(vec)) return vec;
      if (vec) {
        auto moved = move_to_corrupt_unsynced(p, name, to_string(state));
        if (!moved) return moved.error();
        ++report.corrupt;
        report.corrupt_names.push_back(std::move(*moved));
        continue;
      }
      if (state == spool_state::incoming) {
        // A claim undone by the crash. One raw copy is enough: keep active/'s if it is there.
        const std::error_code rec = ops_.rename_no_replace(p, dir(spool_state::active) / name);
        if (rec && !is_errc(rec, std::errc::file_exists)) return rec;
        if (rec) {
          if (auto uec = ops_.unlink(p)) return uec;
          ++report.superseded;
          continue;
        }
      }
      ++report.kept_raw;
      continue;
    }
    if (state == spool_state::active) {
      const fs::path in = dir(spool_state::incoming) / name;
      std::error_code ec = ops_.rename_no_replace(p, in);
      if (!ec) {
        ++report.requeued_active;
        continue;
      }
      if (!is_errc(ec, std::errc::file_exists)) return ec;
      // Both names (a claim replayed half): keep whichever copy verifies, prefer incoming/.
      ec = verify_file(spool_state::incoming, name);
      if (ec && !is_spool_error(ec)) return ec;
      if (!ec) {
        if (auto uec = ops_.unlink(p)) return uec;
        ++report.superseded;
        continue;
      }
      auto moved = move_to_corrupt_unsynced(in, name, to_string(spool_state::incoming));
      if (!moved) return moved.error();
      ++report.corrupt;
      report.corrupt_names.push_back(std::move(*moved));
      if (auto rec = ops_.rename_no_replace(p, in)) return rec;
      ++report.requeued_active;
      continue;
    }
    const std::error_code ec = verify_file(state, name);
    if (!ec) continue;
    if (!is_spool_error(ec)) return ec;
    auto moved = move_to_corrupt_unsynced(p, name, to_string(state));
    if (!moved) return moved.error();
    ++report.corrupt;
    report.corrupt_names.push_back(std::move(*moved));
  }
  return {};
}

std::error_code spool::recover_delivery_states(recovery_report& report) {
  auto names = names_in(dirs_[delivery_dir]);
  if (!names) return names.error();
  for (const auto& name : *names) {
    const fs::path p = dirs_[delivery_dir] / name;
    if (!name.empty() && name.front() == '.') {
      // A write_file_atomically temporary whose rename never happened.
      if (auto ec = ops_.unlink(p)) return ec;
      ++report.orphan_states;
      continue;
    }
    if (!validate_queue_id(name)) {
      ++report.unknown_entries;
      continue;
    }
    const auto where = locate(name);
    if (!where) {
      // finish() removed the message and crashed before removing its state.
      if (auto ec = ops_.unlink(p)) return ec;
      ++report.orphan_states;
      continue;
    }
    // A state of a message in incoming/ or active/ is kept: its sanitized copy was lost (corrupt)
    // and will be made again, and the recipients recorded as delivered must not get it twice.
    if (*where != spool_state::outbound && *where != spool_state::deferred) continue;
    auto st = load_delivery_state(name);
    if (st) continue;
    if (!is_spool_error(st.error())) return st.error();
    // Unreadable: keep it for the administrator; the message restarts with every recipient pending
    // (duplicates for those already delivered, never a loss).
    auto moved = move_to_corrupt_unsynced(p, name, "delivery");
    if (!moved) return moved.error();
    ++report.corrupt;
    report.corrupt_names.push_back(std::move(*moved));
  }
  return {};
}

boost::system::result<recovery_report, std::error_code> spool::recover() {
  recovery_report report;

  // tmp/ holds only files that were never acknowledged (commit renames before it acknowledges).
  auto tmp_names = names_in(dirs_[tmp_dir]);
  if (!tmp_names) return tmp_names.error();
  for (const auto& name : *tmp_names) {
    const fs::path p = dirs_[tmp_dir] / name;
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      ++report.unknown_entries;  // not ours; never delete a tree we did not make
      continue;
    }
    const std::error_code ec = ops_.unlink(p);
    if (ec && !is_errc(ec, std::errc::no_such_file_or_directory)) return ec;
    ++report.purged_tmp;
  }

  // Sanitized copies first: whether one verifies decides what happens to the raw copies.
  if (auto ec = recover_sanitized(spool_state::outbound, report)) return ec;
  if (auto ec = recover_sanitized(spool_state::deferred, report)) return ec;
  if (auto ec = recover_raw(spool_state::active, report)) return ec;
  if (auto ec = recover_raw(spool_state::incoming, report)) return ec;
  if (auto ec = recover_delivery_states(report)) return ec;

  // Make this run's moves durable before anything is delivered from the result, so a crash cannot
  // bring a corrupt file or a superseded raw copy back. A handful of fsyncs, once per start.
  for (const dir_index d :
       {incoming_dir, active_dir, outbound_dir, deferred_dir, corrupt_dir, delivery_dir}) {
    if (auto ec = sync_dir(d)) return ec;
  }

  for (const auto& [state, slot] : {std::pair{spool_state::incoming, &report.incoming},
                                    std::pair{spool_state::outbound, &report.outbound},
                                    std::pair{spool_state::deferred, &report.deferred}}) {
    auto ids = list(state);
    if (!ids) return ids.error();
    *slot = ids->size();
  }
  return report;
}

}  // namespace mukai::server
