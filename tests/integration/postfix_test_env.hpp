// Test-only: what every integration test that starts Postfix or smtp-sink needs first.
// Threading: call from the test's thread.
#pragma once

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "tests/support/postfix_instance.hpp"
#include "tests/support/process.hpp"

namespace mukai::testing {

// Exits with 77, which ctest reports as "skipped" (SKIP_RETURN_CODE in CMakeLists.txt), when this
// machine cannot run a private Postfix or smtp-sink (not root, package missing).
inline void skip_unless_postfix_usable() {
  auto why = postfix_unavailable_reason();
  if (!why && find_program("smtp-sink").empty()) why = "smtp-sink not found";
  if (why) {
    std::fprintf(stderr, "skipped: %s\n", why->c_str());
    std::fflush(nullptr);
    std::exit(77);
  }
}

// Postfix's daemons run as `postfix` and smtp-sink as `nobody`: they must be able to reach the
// instance directories below the test's 0700 mkdtemp directory.
inline void make_searchable(const std::filesystem::path& dir) { REQUIRE(::chmod(dir.c_str(), 0755) == 0); }

}  // namespace mukai::testing
