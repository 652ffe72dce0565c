// Running as root only as long as binding port 25 needs it ([service] user).
//
// `mukai serve` started as root refuses to run unless [service] user names the account to become.
// Then the order is: load the configuration and TLS keys, bind the listeners (as root), drop to
// the user, and only then open the spool, the quarantine and start any thread that handles mail or
// any worker process. A root process parsing SMTP, or a spool file created by root, never exists.
//
// drop_privileges: setgroups to the user's primary group only (no supplementary group: group
// memberships of the account, e.g. ssl-cert, are not inherited - as Postfix does), setgid, setuid
// (real, effective and saved IDs: setuid as root sets all three), and then verifies rather than
// trusts: getresuid/getresgid are the target's everywhere, the group list is exactly the primary
// group, setuid(0) and setgid(0) now fail, and the effective, permitted and ambient capability sets
// are empty (/proc/self/status). Any difference throws: the relay does not start half-dropped.
//
// Under the packaged systemd unit mukai starts as the mukai user with CAP_NET_BIND_SERVICE
// (ambient), so none of this runs; [service] user is for hand-started or init-script set-ups.
//
// Threading: call before the relay starts its worker threads and processes (glibc applies the ID
// change to every thread of the process anyway).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace mukai::server {

struct service_user {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// getpwnam_r; nullopt with `error` set for an unknown user or uid 0.
[[nodiscard]] std::optional<service_user> lookup_service_user(const std::string& name, std::string& error);

// Before the drop: creates `dir` and its missing ancestors and gives each directory it creates to
// `user` (the leaf 0700, ancestors 0755), so that a first run as root (./mukai-data) works after the
// drop. Existing directories are never touched. Empty string on success, else why not.
[[nodiscard]] std::string prepare_service_directory(const std::filesystem::path& dir, const service_user& user);

// See above. Throws std::system_error or std::runtime_error.
void drop_privileges(const service_user& user);

// A capability mask line of /proc/<pid>/status ("CapEff:\t0000000000000000") for `field`; nullopt
// when absent or malformed.
[[nodiscard]] std::optional<std::uint64_t> status_capability(std::string_view status_text, std::string_view field);

}  // namespace mukai::server
