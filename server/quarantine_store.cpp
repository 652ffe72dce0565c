// The quarantine store: staging, publishing by one rename, reading meta.json, purging leftovers.
// See quarantine_store.hpp for the layout and the invariants. Threading: no state besides the paths.
#include "server/quarantine_store.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/json/parse.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <set>

#include "sanitizers/report_json.hpp"
#include "server/quarantine_index.hpp"

namespace mukai::server {

namespace json = boost::json;

namespace {

// Crockford's base32 alphabet: no i, l, o, u, so an ID read aloud or copied by hand is not
// misread; its order matches the values', so IDs of the same second still sort consistently.
constexpr std::string_view id_alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr std::size_t id_time_length = 16;  // "20261122T013512Z"
constexpr std::size_t id_random_length = 10;
constexpr std::size_t id_length = id_time_length + 1 + id_random_length;

// A meta.json larger than this is not ours (a report for the maximum part count is far smaller);
// the cap keeps a tampered file from exhausting memory in the admin tools.
constexpr std::size_t max_meta_size = 64ull * 1024 * 1024;

// Deepest directory purge_staging descends into; our staging trees are two levels deep.
constexpr int max_purge_depth = 16;

class quarantine_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mukai.quarantine"; }
  std::string message(int ev) const override {
    switch (static_cast<quarantine_errc>(ev)) {
      case quarantine_errc::invalid_id:
        return "invalid quarantine ID";
      case quarantine_errc::id_mismatch:
        return "the report names a different quarantine ID";
      case quarantine_errc::digest_mismatch:
        return "a quarantined part does not match its SHA-256";
      case quarantine_errc::id_in_use:
        return "the quarantine ID holds a different message";
      case quarantine_errc::not_a_directory:
        return "a quarantine directory is not a directory";
      case quarantine_errc::random_failed:
        return "the random number generator failed";
    }
    return "unknown quarantine error";
  }
};

std::error_code errno_code(int e) noexcept { return {e, std::generic_category()}; }

std::optional<std::string> sha256_hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md.data(), &len, EVP_sha256(), nullptr) != 1 || len != 32) {
    return std::nullopt;
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(64);
  for (unsigned int i = 0; i < len; ++i) {
    hex += digits[md[i] >> 4];
    hex += digits[md[i] & 0x0f];
  }
  return hex;
}

bool random_bytes(unsigned char* out, std::size_t n) { return RAND_bytes(out, static_cast<int>(n)) == 1; }

std::error_code random_suffix(std::string& out) {
  std::array<unsigned char, 8> buf{};
  if (!random_bytes(buf.data(), buf.size())) return make_error_code(quarantine_errc::random_failed);
  static constexpr char digits[] = "0123456789abcdef";
  out.clear();
  for (const unsigned char b : buf) {
    out += digits[b >> 4];
    out += digits[b & 0x0f];
  }
  return {};
}

std::tm utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  return tm;
}

// strftime with a literal format each, so that -Wformat can check them.
std::string id_timestamp() {
  const std::tm tm = utc_now();
  std::array<char, 32> buf{};
  return std::string(buf.data(), std::strftime(buf.data(), buf.size(), "%Y%m%dT%H%M%SZ", &tm));
}

std::string rfc3339_now() {
  const std::tm tm = utc_now();
  std::array<char, 32> buf{};
  return std::string(buf.data(), std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm));
}

bool is_digits(std::string_view s) noexcept {
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

json::string utf8(std::string_view s) { return json::string(sanitize::to_valid_utf8(s)); }

// Reads a whole regular file of at most `cap` bytes, not following a final symlink.
std::optional<std::string> read_small_file(const std::filesystem::path& p, std::size_t cap) {
  int fd = -1;
  do {
    fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) <= cap) {
    std::string data;
    data.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    bool ok = true;
    while (got < data.size()) {
      const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ok = false;  // an error, or the file shrank under us
        break;
      }
      got += static_cast<std::size_t>(n);
    }
    if (ok) out = std::move(data);
  }
  ::close(fd);
  return out;
}

std::filesystem::path without_trailing_separator(std::filesystem::path p) {
  // "/var/q/" has an empty filename and its parent_path is "/var/q": strip it so that
  // parent_path() below really names the parent directory.
  while (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p;
}

// Whether meta.json says the item holds the original with this digest and size.
bool original_matches(const json::object& meta, const std::string& sha256, std::uint64_t size) {
  const json::value* orig = meta.if_contains("original");
  if (orig == nullptr || !orig->is_object()) return false;
  const json::value* digest = orig->get_object().if_contains("sha256");
  const json::value* stored_size = orig->get_object().if_contains("size");
  if (digest == nullptr || !digest->is_string() || digest->get_string() != sha256) return false;
  if (stored_size == nullptr) return false;
  if (stored_size->is_uint64()) return stored_size->get_uint64() == size;
  return stored_size->is_int64() && stored_size->get_int64() >= 0 &&
         static_cast<std::uint64_t>(stored_size->get_int64()) == size;
}

std::filesystem::path parent_or_dot(const std::filesystem::path& p) {
  std::filesystem::path parent = p.parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

}  // namespace

const std::error_category& quarantine_category() noexcept {
  static const quarantine_category_impl category;
  return category;
}

std::error_code make_error_code(quarantine_errc e) noexcept {
  return {static_cast<int>(e), quarantine_category()};
}

std::string new_quarantine_id() {
  std::array<unsigned char, id_random_length> buf{};
  if (!random_bytes(buf.data(), buf.size())) {
    std::fputs("mukai: RAND_bytes failed while creating a quarantine ID\n", stderr);
    std::abort();
  }
  std::string id = id_timestamp();
  id += '-';
  // 256 is a multiple of 32: taking the low five bits of each byte is unbiased.
  for (const unsigned char b : buf) id += id_alphabet[b & 0x1f];
  return id;
}

bool validate_quarantine_id(std::string_view id) noexcept {
  if (id.size() != id_length) return false;
  if (!is_digits(id.substr(0, 8)) || id[8] != 'T' || !is_digits(id.substr(9, 6)) || id[15] != 'Z' ||
      id[16] != '-') {
    return false;
  }
  for (const char c : id.substr(id_time_length + 1)) {
    if (id_alphabet.find(c) == std::string_view::npos) return false;
  }
  return true;
}

quarantine_store::quarantine_store(std::filesystem::path root, file_ops& ops, quarantine_index* index)
    : root_(without_trailing_separator(std::move(root))),
      items_(root_ / "items"),
      tmp_(root_ / "tmp"),
      ops_(ops),
      index_(index) {}

std::optional<std::filesystem::path> quarantine_store::item_dir(std::string_view id) const {
  if (!validate_quarantine_id(id)) return std::nullopt;
  return items_ / std::string(id);
}

std::error_code quarantine_store::ensure_layout() {
  bool created_child = false;
  for (const auto* dir : {&root_, &items_, &tmp_}) {
    std::error_code ec = ops_.make_directory(*dir);
    if (!ec) {
      created_child = created_child || dir != &root_;
      // A new directory's name lives in its parent: make it durable there, or a crash could lose
      // the directory together with the items later acknowledged inside it.
      if (dir == &root_) {
        if (auto sync_ec = ops_.sync_directory(parent_or_dot(root_))) return sync_ec;
      }
      continue;
    }
    if (ec != std::errc::file_exists) return ec;
    std::error_code stat_ec;
    // Follows symlinks on purpose: an administrator may point the root elsewhere.
    if (!std::filesystem::is_directory(*dir, stat_ec))
      return make_error_code(quarantine_errc::not_a_directory);
  }
  if (created_child) return ops_.sync_directory(root_);
  return {};
}

std::error_code quarantine_store::store(const std::string& id, std::string_view original,
                                        const sanitize::result& r, const quarantine_envelope& envelope,
                                        const quarantine_headers& headers) {
  if (r.quarantine.empty() && !r.quarantine_original) return {};
  if (!validate_quarantine_id(id)) return make_error_code(quarantine_errc::invalid_id);
  // The notice sent to the recipient quotes the report's ID: storing under another one would
  // point the administrator at the wrong (or no) item.
  if (r.rep.quarantine_id && *r.rep.quarantine_id != id) return make_error_code(quarantine_errc::id_mismatch);

  // Check every digest before touching the disk: a mismatch means the engine's report describes
  // other bytes than it hands us, and the meta.json would lie about what is stored.
  for (const auto& part : r.quarantine) {
    const auto digest = sha256_hex(part.bytes);
    if (!digest) return errno_code(EIO);
    if (*digest != part.sha256) return make_error_code(quarantine_errc::digest_mismatch);
  }
  const auto original_sha256 = sha256_hex(original);
  if (!original_sha256) return errno_code(EIO);

  std::string suffix;
  if (auto ec = random_suffix(suffix)) return ec;
  const std::filesystem::path staging = tmp_ / (id + "." + suffix);
  if (auto ec = ops_.make_directory(staging)) return ec;

  std::error_code ec = stage_item(staging, id, original, r, envelope, headers, *original_sha256);
  if (!ec) ec = publish_item(staging, id, *original_sha256, original.size());
  if (ec) {
    // Best effort: what cannot be removed now stays in tmp/, which purge_staging empties at the
    // next start. Nothing outside tmp/ was created.
    (void)remove_tree(staging, 0);
    return ec;
  }
  if (index_ == nullptr) return {};
  // From the published meta.json (not from `r`): after a retry the record describes the item that
  // is on disk, whichever store published it.
  const auto meta = load_meta(id);
  if (!meta) return errno_code(EIO);
  const auto record = index_item_from_meta(*meta);
  if (!record) return errno_code(EIO);
  return index_->put(*record);
}

std::error_code quarantine_store::stage_item(const std::filesystem::path& staging, const std::string& id,
                                             std::string_view original, const sanitize::result& r,
                                             const quarantine_envelope& envelope,
                                             const quarantine_headers& headers,
                                             const std::string& original_sha256) {
  const std::filesystem::path parts_dir = staging / "parts";
  if (auto ec = ops_.make_directory(parts_dir)) return ec;

  if (r.quarantine_original) {
    if (auto ec = write_new_file(ops_, staging / "original.eml", original)) return ec;
  }
  if (auto ec = write_new_file(ops_, staging / "sanitized.eml", r.output)) return ec;
  if (!r.body_text.empty()) {
    if (auto ec = write_new_file(ops_, staging / "sanitized.txt", sanitize::to_valid_utf8(r.body_text))) return ec;
  }

  json::array parts_meta;
  std::set<std::string_view> written;  // sha256 of the files already stored (identical parts share one)
  for (const auto& part : r.quarantine) {
    // part.sha256 was checked to be the SHA-256 of the bytes, so it is 64 hex digits: a safe name.
    if (written.insert(part.sha256).second) {
      if (auto ec = write_new_file(ops_, parts_dir / part.sha256, part.bytes)) return ec;
    }
    json::object pm;
    pm["path"] = utf8(part.path);
    pm["sha256"] = part.sha256;
    pm["size"] = static_cast<std::uint64_t>(part.bytes.size());
    pm["filename"] = utf8(part.filename);
    parts_meta.emplace_back(std::move(pm));
  }

  json::array rcpts;
  for (const auto& rcpt : envelope.rcpt_to) rcpts.emplace_back(utf8(rcpt));
  json::object meta;
  meta["id"] = id;
  meta["created"] = rfc3339_now();
  meta["envelope"] = json::object{{"mail_from", utf8(envelope.mail_from)}, {"rcpt_to", std::move(rcpts)}};
  meta["headers"] = json::object{{"from", utf8(headers.from)},
                                 {"to", utf8(headers.to)},
                                 {"subject", utf8(headers.subject)},
                                 {"date", utf8(headers.date)},
                                 {"message_id", utf8(headers.message_id)}};
  meta["report"] = sanitize::to_json(r.rep);
  meta["original"] = json::object{{"sha256", original_sha256},
                                  {"size", static_cast<std::uint64_t>(original.size())},
                                  {"stored", r.quarantine_original}};
  meta["parts"] = std::move(parts_meta);
  meta["status"] = "held";
  meta["history"] = json::array{};
  // meta.json is written last, but that is only tidiness: the item becomes visible by the rename
  // below, after everything in it is durable.
  if (auto ec = write_new_file(ops_, staging / "meta.json", sanitize::format_json_text(meta))) return ec;

  // The files' data is on disk (write_new_file fsyncs); their names are entries of these two
  // directories, which must be durable before the rename publishes the item, or a crash could
  // leave items/<ID> with missing files.
  if (auto ec = ops_.sync_directory(parts_dir)) return ec;
  return ops_.sync_directory(staging);
}

bool quarantine_store::existing_item_matches(std::string_view id, const std::string& original_sha256,
                                             std::uint64_t original_size) const {
  const auto meta = load_meta(id);
  return meta && original_matches(*meta, original_sha256, original_size);
}

std::error_code quarantine_store::publish_item(const std::filesystem::path& staging, const std::string& id,
                                               const std::string& original_sha256,
                                               std::uint64_t original_size) {
  // No-replace: an existing item is never overwritten, not even by a retry of the same store.
  std::error_code ec = ops_.rename_no_replace(staging, items_ / id);
  if (ec == std::errc::file_exists || ec == std::errc::directory_not_empty) {
    const bool same = existing_item_matches(id, original_sha256, original_size);
    if (!same) return make_error_code(quarantine_errc::id_in_use);
    // The same message stored again (re-sanitized after a crash). The earlier store may have died
    // before its fsync of items/, so do it now; then our staging copy is surplus.
    ec = ops_.sync_directory(items_);
    (void)remove_tree(staging, 0);  // a leftover in tmp/ is harmless (purge_staging)
    return ec;
  }
  if (ec) return ec;
  // The rename changed only directory entries: without this fsync a crash could undo it after we
  // reported the item stored (and the relay acknowledged or deleted the spool file).
  return ops_.sync_directory(items_);
}

std::optional<json::object> quarantine_store::load_meta(std::string_view id) const {
  const auto dir = item_dir(id);
  if (!dir) return std::nullopt;
  const auto text = read_small_file(*dir / "meta.json", max_meta_size);
  if (!text) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  // An item directory copied under another name must not be shown as this ID.
  const json::value* stored_id = v.get_object().if_contains("id");
  if (stored_id == nullptr || !stored_id->is_string() || stored_id->get_string() != id) return std::nullopt;
  return std::move(v.get_object());
}

std::error_code quarantine_store::remove_item(std::string_view id) {
  const auto dir = item_dir(id);
  if (!dir) return make_error_code(quarantine_errc::invalid_id);
  std::string suffix;
  if (auto ec = random_suffix(suffix)) return ec;
  const std::filesystem::path doomed = tmp_ / (std::string(id) + ".removed." + suffix);
  if (auto ec = ops_.rename_no_replace(*dir, doomed)) return ec;
  // Durable before we report it: a delete an operator saw succeed must not come back after a crash.
  if (auto ec = ops_.sync_directory(items_)) return ec;
  // The item is gone from items/ now; what cannot be removed yet is a leftover of tmp/.
  (void)remove_tree(doomed, 0);
  return {};
}

std::error_code quarantine_store::purge_staging() {
  std::error_code ec;
  std::vector<std::filesystem::path> entries;
  for (std::filesystem::directory_iterator it(tmp_, ec), end; !ec && it != end; it.increment(ec)) {
    entries.push_back(it->path());
  }
  if (ec == std::errc::no_such_file_or_directory) return {};
  if (ec) return ec;
  std::error_code first;
  for (const auto& e : entries) {
    if (auto rm_ec = remove_tree(e, 0); rm_ec && !first) first = rm_ec;
  }
  // No directory fsync: a removal that a crash undoes is simply purged again at the next start.
  return first;
}

std::error_code quarantine_store::remove_tree(const std::filesystem::path& p, int depth) {
  std::error_code ec;
  // symlink_status: a symlink in tmp/ is removed itself, never followed (it could point at
  // anything on the system).
  const auto st = std::filesystem::symlink_status(p, ec);
  if (st.type() == std::filesystem::file_type::not_found) return {};
  if (ec) return ec;
  if (st.type() != std::filesystem::file_type::directory) return ops_.unlink(p);
  if (depth >= max_purge_depth) return errno_code(ELOOP);
  std::vector<std::filesystem::path> children;
  for (std::filesystem::directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec)) {
    children.push_back(it->path());
  }
  if (ec) return ec;
  std::error_code first;
  for (const auto& c : children) {
    if (auto child_ec = remove_tree(c, depth + 1); child_ec && !first) first = child_ec;
  }
  if (first) return first;
  return ops_.remove_directory(p);
}

}  // namespace mukai::server
