// Whether this translation unit is built with AddressSanitizer (GCC's __SANITIZE_ADDRESS__ or
// clang's __has_feature). Such builds (tests only) replace glibc's allocator and cannot run a
// sanitizer worker under RLIMIT_AS, so a few places behave differently and say why.
#pragma once

namespace mukai::server {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool asan_build = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool asan_build = true;
#else
inline constexpr bool asan_build = false;
#endif
#else
inline constexpr bool asan_build = false;
#endif

}  // namespace mukai::server
