// malloc_policy: the values reach glibc (a freed block below the trim threshold stays in the heap
// for reuse; a block from the mmap threshold up gets its own mapping) and out-of-range values are
// refused. Runs in this test's own process, whose allocator it changes.
#include "server/malloc_policy.hpp"

#include <doctest/doctest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "server/asan_build.hpp"

using namespace mukai::server;


TEST_CASE("the worker policy: freed memory is kept, large blocks are mapped") {
  if (asan_build) {
    MESSAGE("skipped: AddressSanitizer replaces glibc's allocator (mallopt does not reach it)");
    return;
  }
  REQUIRE(apply_malloc_policy(worker_malloc_policy));
  // Below the mmap threshold: from the heap, and still there (free, not trimmed) after free().
  const std::size_t medium = worker_malloc_policy.mmap_threshold / 2;
  const auto before_medium = mallinfo2();
  char* m = static_cast<char*>(std::malloc(medium));
  REQUIRE(m != nullptr);
  std::memset(m, 1, medium);  // touched, as a message buffer is
  CHECK(mallinfo2().hblkhd == before_medium.hblkhd);
  std::free(m);
  CHECK(mallinfo2().fordblks >= medium);
  // From the mmap threshold up: a mapping of its own, given back at free().
  const std::size_t large = worker_malloc_policy.mmap_threshold + 1024 * 1024;
  const auto before_large = mallinfo2();
  char* l = static_cast<char*>(std::malloc(large));
  REQUIRE(l != nullptr);
  CHECK(mallinfo2().hblkhd >= before_large.hblkhd + large);
  std::free(l);
  CHECK(mallinfo2().hblkhd == before_large.hblkhd);
}

TEST_CASE("values glibc cannot take are refused") {
  if (asan_build) return;
  CHECK_FALSE(apply_malloc_policy({std::size_t{1} << 40, 1024 * 1024}));
  CHECK_FALSE(apply_malloc_policy({1024 * 1024, std::size_t{1} << 40}));
}
