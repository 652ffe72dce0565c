// See malloc_policy.hpp.
#include "server/malloc_policy.hpp"

#include <malloc.h>

#include <climits>

namespace mukai::server {

bool apply_malloc_policy(const malloc_policy& p) noexcept {
  if (p.mmap_threshold > INT_MAX || p.trim_threshold > INT_MAX) return false;
  const bool mmap_ok = ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(p.mmap_threshold)) == 1;
  const bool trim_ok = ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(p.trim_threshold)) == 1;
  return mmap_ok && trim_ok;
}

}  // namespace mukai::server
