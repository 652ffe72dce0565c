// Delivery to a `maildir:/path` next hop: the message bytes, exactly as sanitized, become one new file
// in a Maildir (https://cr.yp.to/proto/maildir.html), whatever the number of recipients. Nothing is
// prepended: the output invariant decides which headers a delivered message may carry.
//
// Durability, in this order (the Maildir protocol; every step through file_ops so tests can fail it):
//   create tmp/<name> exclusively (0600), write, fsync, close;
//   rename tmp/<name> -> new/<name> without replacing anything; fsync new/.
// A reader (a person, an MUA, an IMAP server) only looks at new/ and cur/, so it never sees a partial
// file; only after the fsync of new/ does the caller record the recipients as delivered. A crash
// before that leaves at worst a stale tmp/ file (Maildir readers delete those after 36 hours) and a
// second delivery later: at-least-once, never a loss. On any error the tmp/ file is removed.
//
// Names: "<seconds>.M<microseconds>P<pid>R<16 hex random>.<host>", unique across processes and hosts
// without coordination ('/' and ':' in the host name are written as \057 and \072, as Maildir asks).
// Missing directories (the Maildir and its parents, then cur/ new/ tmp/) are created 0700 and their
// names made durable.
//
// Threading: blocks on disk (fsync): call it off the I/O thread. Concurrent calls for the same
// Maildir are safe (exclusive creates, no-replace renames).
#pragma once

#include <boost/system/result.hpp>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "server/durable_fs.hpp"

namespace mukai::server {

// A fresh unique file name (see above) for this host.
[[nodiscard]] std::string new_maildir_name();

// Creates `maildir` (and missing parents), then cur/, new/ and tmp/ in it; each new directory's name
// is made durable by an fsync of its parent. Existing directories are left as they are.
[[nodiscard]] std::error_code ensure_maildir(file_ops& ops, const std::filesystem::path& maildir);

// Delivers `message` as one new file; returns its path under new/ once it is durable.
[[nodiscard]] boost::system::result<std::filesystem::path, std::error_code> deliver_to_maildir(
    file_ops& ops, const std::filesystem::path& maildir, std::string_view message);

}  // namespace mukai::server
