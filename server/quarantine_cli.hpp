// `mukai quarantine`: the operators' command line over quarantine_service (list, show, release,
// delete, purge, rebuild-index, stats). Only argument handling and presentation live here; every
// decision is the service's, so the CLI and the web console behave the same.
//
// Safe by construction: nothing of a message is ever executed, rendered or written raw to the
// terminal. Every string from a message (headers, file names, the sanitized text) goes through
// escape_for_log (controls, C1, bidi controls, invalid UTF-8 -> \xHH), and --json output escapes
// the same characters as \uXXXX. `show` prints the sanitized text the recipients got (never the
// original's bytes).
// Who: "cli:<OS user>" (the effective user) in the history and the audit log.
// Exit codes: 0 done, 1 refused / not found / failed, 2 usage or configuration error.
// Threading: runs on the calling thread; returns when done.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace mukai::server {

// args: everything after "quarantine" on the command line.
[[nodiscard]] int run_quarantine_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// The text of the usage message (also shown by `mukai help`).
[[nodiscard]] const char* quarantine_cli_usage() noexcept;

}  // namespace mukai::server
