// bench_quarantine: list/search response times of the quarantine index at 100,000 items (issue 4:
// p99 under 100 ms for a filtered page).
//
// Creates N realistic records (bench/quarantine_items.hpp, shared with bench_console) directly
// through quarantine_index::put into a fresh SQLite file, then times list() pages of 50 for several
// filters, each query `--repeat` times with varying arguments, and prints the median and p99 per
// query. The timing is what the console's
// list page costs: the page, its parts and the total count, in one call.
//
//   bench_quarantine [--items N] [--repeat R] [--dir DIR] [--keep]   (--dir of a kept run: reuses its items)
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/quarantine_items.hpp"

using namespace mukai::bench;

int main(int argc, char** argv) {
  const auto args = parse_bench_args(argc, argv, "bench_quarantine");
  if (!args) return 2;
  const auto [items, repeat, dir, keep] = *args;
  std::error_code ec;
  auto index = open_sqlite_index(dir / "index.sqlite", ec);
  if (!index) {
    std::fprintf(stderr, "cannot open the index: %s\n", ec.message().c_str());
    return 1;
  }
  const std::int64_t now = unix_now();
  if (!fill_index(*index, items, now, dir.c_str())) return 1;
  std::printf("%-28s %10s %10s %10s %9s\n", "query (page of 50)", "median ms", "p99 ms", "max ms", "matches");
  for (const auto& q : queries) {
    (void)index->list(q.make(0, now));  // warm: the page cache, as a console in use has it
    std::vector<double> times;
    std::uint64_t total = 0;
    for (std::size_t r = 0; r < repeat; ++r) {
      const item_filter f = q.make(r, now);
      const auto s = clock_type::now();
      const auto page = index->list(f);
      times.push_back(ms_since(s));
      total = page.total;
    }
    const percentiles p = summarize(times);
    std::printf("%-28s %10.2f %10.2f %10.2f %9llu\n", q.name, p.median, p.p99, p.max,
                static_cast<unsigned long long>(total));
  }
  const auto s0 = clock_type::now();
  const auto st = index->stats();
  std::printf("stats(): %.1f ms (%llu items)\n", ms_since(s0), static_cast<unsigned long long>(st.total));
  index.reset();
  if (!keep) std::filesystem::remove_all(dir, ec);
  else std::printf("kept %s\n", dir.c_str());
  return 0;
}
