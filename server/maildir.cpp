// Maildir delivery; see maildir.hpp for the protocol and the durability order.
#include "server/maildir.hpp"

#include <openssl/rand.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace mukai::server {

namespace fs = std::filesystem;

namespace {

std::error_code errno_code(int e) noexcept { return {e, std::generic_category()}; }

// The host part of a Maildir name: '/' and ':' are escaped as Maildir asks (':' starts the info
// part in cur/, '/' would be a path separator).
std::string host_part() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string out;
  for (const char* p = buf.data(); *p != '\0'; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c == '/') {
      out += "\\057";
    } else if (c == ':') {
      out += "\\072";
    } else if (c < 0x21 || c >= 0x7F) {
      out += '_';  // keep the name printable
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Creates `dir` if it does not exist and makes its name durable; EEXIST from a concurrent creator is
// fine, something else than a directory under that name is ENOTDIR.
std::error_code ensure_directory(file_ops& ops, const fs::path& dir) {
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  if (!ec && fs::is_directory(st)) return {};
  if (!ec && st.type() != fs::file_type::not_found) return errno_code(ENOTDIR);
  if (ec && ec != std::errc::no_such_file_or_directory) return ec;
  if (auto mk = ops.make_directory(dir); mk && mk != std::errc::file_exists) return mk;
  if (!fs::is_directory(dir, ec)) return ec ? ec : errno_code(ENOTDIR);
  // The new entry lives in the parent directory: sync it, or a crash could lose the directory
  // together with a message we reported delivered into it.
  fs::path parent = dir.parent_path();
  if (parent.empty()) parent = ".";
  return ops.sync_directory(parent);
}

}  // namespace

std::string new_maildir_name() {
  std::array<unsigned char, 8> rnd{};
  if (RAND_bytes(rnd.data(), static_cast<int>(rnd.size())) != 1) {
    // A name that might collide could overwrite nothing (no-replace rename), but a CSPRNG that fails
    // means the process is in no state to deliver mail: restart (the spool makes that safe).
    std::fputs("mukai: RAND_bytes failed while naming a Maildir file\n", stderr);
    std::abort();
  }
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : rnd) {
    hex += digits[b >> 4];
    hex += digits[b & 0x0f];
  }
  return std::to_string(tv.tv_sec) + ".M" + std::to_string(tv.tv_usec) + "P" + std::to_string(::getpid()) +
         "R" + hex + "." + host_part();
}

std::error_code ensure_maildir(file_ops& ops, const fs::path& maildir) {
  if (maildir.empty()) return errno_code(EINVAL);
  // Missing ancestors, deepest first; bounded so that a pathological path cannot loop for long.
  std::vector<fs::path> missing;
  fs::path p = maildir.lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
  for (int depth = 0; depth < 64 && !p.empty(); ++depth) {
    std::error_code ec;
    if (fs::exists(p, ec)) break;
    if (ec && ec != std::errc::no_such_file_or_directory) return ec;
    missing.push_back(p);
    if (p == p.root_path()) break;
    p = p.parent_path();
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (auto ec = ensure_directory(ops, *it)) return ec;
  }
  for (const char* sub : {"tmp", "new", "cur"}) {
    if (auto ec = ensure_directory(ops, maildir / sub)) return ec;
  }
  return {};
}

boost::system::result<fs::path, std::error_code> deliver_to_maildir(file_ops& ops, const fs::path& maildir,
                                                                    std::string_view message) {
  if (auto ec = ensure_maildir(ops, maildir)) return ec;
  std::error_code last = errno_code(EEXIST);
  // The name is unique by construction (time, pid, 64 random bits); retrying covers only a leftover
  // from an earlier crash or a clock that went backwards with the same pid.
  for (int attempt = 0; attempt < 4; ++attempt) {
    const std::string name = new_maildir_name();
    const fs::path tmp = maildir / "tmp" / name;
    const fs::path final_path = maildir / "new" / name;
    // Exclusive create, write, fsync, close; the file is unlinked on a failure.
    if (auto ec = write_new_file(ops, tmp, message)) {
      if (ec == std::errc::file_exists) {
        last = ec;
        continue;
      }
      return ec;
    }
    // No-replace: a name clash must never overwrite a message someone has not read yet.
    if (auto ec = ops.rename_no_replace(tmp, final_path)) {
      (void)ops.unlink(tmp);
      if (ec == std::errc::file_exists) {
        last = ec;
        continue;
      }
      return ec;
    }
    // Until new/ is synced the rename may not survive a crash; the caller records "delivered" only
    // after this. If it fails the file is left in new/ (it is complete): a possible duplicate when
    // the delivery is retried, never a loss.
    if (auto ec = ops.sync_directory(maildir / "new")) return ec;
    return final_path;
  }
  return last;
}

}  // namespace mukai::server
