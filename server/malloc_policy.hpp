// How a sanitizer worker asks glibc's allocator to keep freed memory for the next message.
// Why: every message allocates and frees buffers of its own size (the request and the response,
// GMime's streams, the decoded text, the output), and glibc's default policy gives the top of the
// heap back to the kernel as soon as more than twice its dynamic mmap threshold (a few hundred KiB)
// is free: the next message then takes a page fault, and the kernel zeroes a page, for every 4 KiB
// it touches again. Measured with bench_relay at 100 KB per message: a worker took about 80 minor
// faults per message (42,000 over its 500 messages; about 1,100 with this policy, all at start-up)
// and used about 18% less CPU with it (relay and workers together: 2.22 -> 1.98 ms per message).
// The relay process does not use it: it took 22 faults per message, 9 with a 1 MiB / 4 MiB policy,
// no measurable difference in CPU, and its many threads have up to eight malloc arenas per core,
// each of which would keep up to the trim threshold.
// What it costs: memory freed below the trim threshold stays in the worker (its RSS does not shrink
// back after a larger message, until it is retired after [worker] max_messages), and allocations
// from the mmap threshold up are still mapped and unmapped on each use, so a large message never
// leaves its big buffers behind. Setting either value turns glibc's dynamic adjustment of both off.
// Threading: call once at start-up, before other threads allocate (mallopt is not meant to race).
#pragma once

#include <cstddef>

namespace mukai::server {

struct malloc_policy {
  std::size_t mmap_threshold;  // allocations of this size and more: their own mapping
  std::size_t trim_threshold;  // free memory at the top of an arena kept up to this much
};

// A worker: one thread, one arena, retired after [worker] max_messages anyway. The mmap threshold
// is 1 MiB, not higher: the buffers of ordinary mail stay below it, while a large message's big
// buffers (a decoded 1 MB HTML body, its UTF-8 copy, gumbo's 1 MiB arena chunks) are returned when
// freed instead of staying resident while the same message's attachment is decoded: with 4 MiB a
// 25 MB message peaked at 72 MiB in the engine benchmark's process (bench_engine --large under the
// same GLIBC_TUNABLES), 63.8 MiB with 1 MiB, as with glibc's defaults. bench_relay 100 KB/c10
// measured the same CPU per message with both (2.28/2.45 ms with 4 MiB, 2.32/2.42 with 1 MiB).
inline constexpr malloc_policy worker_malloc_policy{1024 * 1024, 32 * 1024 * 1024};

// Applies the policy (glibc mallopt). False if glibc refused a value (the defaults then stay).
bool apply_malloc_policy(const malloc_policy& p) noexcept;

}  // namespace mukai::server
