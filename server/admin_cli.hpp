// The command-line side of the web console: `mukai passwd` (a password hash for [[admin.users]])
// and the [admin] checks that `mukai check-config` and `mukai serve` run beyond the TOML parsing.
// Threading: called from main only.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace mukai::server {

// `mukai passwd [--stdin]`: reads the password twice from the terminal with echo off (or once from
// standard input with --stdin, for scripts: the first line, without its line end) and prints its
// hash on stdout. Returns the process exit code (0 ok, 1 mismatch/empty/no terminal, 2 usage).
int run_passwd(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err);

// Problems in [admin] that make the web console unusable: malformed password hashes, duplicate
// user names, unparsable metrics_networks, a cert without a key.
[[nodiscard]] std::vector<config::config_error> admin_config_problems(const config::mukai_config& c);

}  // namespace mukai::server
