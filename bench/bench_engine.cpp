// bench_engine: throughput and peak memory of mukai::sanitize::sanitize_message on ONE thread.
// Loads every input message into memory first (so disk I/O is not measured), runs a few untimed
// warm-up messages (libmagic database load, first-touch allocations), then runs whole rounds over
// the set until a time budget or a round cap is reached. Default policy, no quarantine writes:
// the engine returns the bytes to quarantine and this program drops them (storing them is I/O and
// belongs to the relay benchmark).
// Figures: messages/s, MB/s of input bytes (1 MB = 10^6 bytes), peak RSS (getrusage ru_maxrss),
// which includes the loaded input set. --large runs one message once in a fresh process, so the
// peak is that message's alone (plus the program and the message itself, reported separately).
// --dump DIR writes what the first round returned for each message (output, JSON report, the
// quarantine list) with the fixed quarantine ID, so two builds can be compared byte for byte
// (only a Date header the engine adds for a message without one differs between runs). The
// writes fall in the timed first round: use --dump for comparing outputs, not for figures.
// For one large message in a loop (profiling): pass one file and raise --max-rounds.
// Threading: single-threaded by design.
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "config/policy.hpp"
#include "sanitizers/engine.hpp"
#include "sanitizers/report.hpp"
#include "sanitizers/report_json.hpp"

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string set_name = "set";
  double min_seconds = 5.0;  // keep starting rounds until this much timed work was done
  int min_rounds = 1;
  int max_rounds = 100;
  int warmup = 20;         // messages run untimed before measuring
  std::size_t sample = 0;  // 0 = every message; else N messages evenly spaced over the sorted set
  bool large = false;      // one message, one pass, no warm-up; report RSS before the call
  bool tsv = false;
  std::string config_file;  // empty = the embedded default policy
  std::string dump_dir;     // empty = do not write the results
  std::vector<std::string> paths;
};

struct message {
  std::string name;
  std::string raw;
};

[[noreturn]] void usage(int code) {
  std::fputs(
      "usage: bench_engine [options] PATH...\n"
      "  PATH              a message file, or a directory (its *.eml files, sorted, not recursive)\n"
      "  --set NAME        label for the input set (default \"set\")\n"
      "  --min-seconds S   run rounds until S seconds of timed work (default 5)\n"
      "  --min-rounds N    at least N rounds (default 1)\n"
      "  --max-rounds N    at most N rounds (default 100)\n"
      "  --warmup N        messages run untimed first (default 20)\n"
      "  --sample N        use only N messages evenly spaced over the set (profiling)\n"
      "  --large           one pass over one message, no warm-up, RSS before/after (25 MB test)\n"
      "  --config FILE     policy from this mukai TOML file (default: the embedded default)\n"
      "  --dump DIR        write each message's first-round result to DIR (NAME.eml, .json, .quarantine)\n"
      "  --tsv             print one tab-separated result line on stdout (for bench/run)\n",
      code == 0 ? stdout : stderr);
  std::exit(code);
}

options parse_args(int argc, char** argv) {
  options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) usage(2);
    return argv[++i];
  };
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view a = argv[i];
      if (a == "--set")
        o.set_name = value(i);
      else if (a == "--min-seconds")
        o.min_seconds = std::stod(value(i));
      else if (a == "--min-rounds")
        o.min_rounds = std::stoi(value(i));
      else if (a == "--max-rounds")
        o.max_rounds = std::stoi(value(i));
      else if (a == "--warmup")
        o.warmup = std::stoi(value(i));
      else if (a == "--sample")
        o.sample = std::stoul(value(i));
      else if (a == "--large")
        o.large = true;
      else if (a == "--tsv")
        o.tsv = true;
      else if (a == "--config")
        o.config_file = value(i);
      else if (a == "--dump")
        o.dump_dir = value(i);
      else if (a == "-h" || a == "--help")
        usage(0);
      else if (a.starts_with("--"))
        usage(2);
      else
        o.paths.emplace_back(a);
    }
  } catch (const std::exception&) {
    usage(2);
  }
  if (o.paths.empty()) usage(2);
  if (o.large) {
    o.warmup = 0;
    o.min_rounds = o.max_rounds = 1;
    o.min_seconds = 0;
  }
  o.max_rounds = std::max(o.max_rounds, 1);
  o.min_rounds = std::clamp(o.min_rounds, 1, o.max_rounds);
  return o;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::string s;
  in.seekg(0, std::ios::end);
  s.resize(static_cast<std::size_t>(in.tellg()));
  in.seekg(0);
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

std::vector<message> load(const options& o) {
  std::vector<fs::path> files;
  for (const auto& p : o.paths) {
    if (fs::is_directory(p)) {
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file() && e.path().extension() == ".eml") files.push_back(e.path());
    } else {
      files.emplace_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  if (o.sample > 0 && o.sample < files.size()) {
    std::vector<fs::path> picked;
    for (std::size_t i = 0; i < o.sample; ++i) picked.push_back(files[i * files.size() / o.sample]);
    files.swap(picked);
  }
  std::vector<message> out;
  out.reserve(files.size());
  for (const auto& f : files) out.push_back({f.filename().string(), read_file(f)});
  return out;
}

long peak_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // Linux: KiB
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

long current_rss_kib() {
  std::ifstream in("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  in >> pages_total >> pages_resident;
  return pages_resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// The result as files: output, report, and one line per quarantined part (path, SHA-256, size,
// filename) plus whether the original is kept.
void dump_result(const std::string& dir, const std::string& name, const mukai::sanitize::result& r) {
  const fs::path base = fs::path(dir) / fs::path(name).stem();
  std::ofstream(base.string() + ".eml", std::ios::binary) << r.output;
  std::ofstream(base.string() + ".json", std::ios::binary) << mukai::sanitize::to_json_text(r.rep);
  std::ofstream q(base.string() + ".quarantine", std::ios::binary);
  q << "original\t" << (r.quarantine_original ? "yes" : "no") << "\n";
  for (const auto& part : r.quarantine)
    q << part.path << '\t' << part.sha256 << '\t' << part.bytes.size() << '\t' << part.filename << '\n';
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse_args(argc, argv);
  std::vector<message> msgs;
  try {
    msgs = load(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine: %s\n", e.what());
    return 2;
  }
  if (msgs.empty()) {
    std::fprintf(stderr, "bench_engine: no messages under the given paths\n");
    return 2;
  }
  if (!opt.dump_dir.empty()) {
    std::error_code ec;
    fs::create_directories(opt.dump_dir, ec);
    if (ec) {
      std::fprintf(stderr, "bench_engine: %s: %s\n", opt.dump_dir.c_str(), ec.message().c_str());
      return 2;
    }
  }
  std::uint64_t set_bytes = 0;
  for (const auto& m : msgs) set_bytes += m.raw.size();

  // The default policy as shipped (what `mukai sanitize` uses without --config), or a file's.
  mukai::config::mukai_config cfg = mukai::config::embedded_default();
  if (!opt.config_file.empty()) {
    auto loaded = mukai::config::load_config_file(opt.config_file);
    for (const auto& e : loaded.errors)
      std::fprintf(stderr, "bench_engine: %s\n", mukai::config::to_string(e).c_str());
    if (!loaded.config) return 2;
    cfg = std::move(*loaded.config);
  }
  const mukai::config::policy& pol = cfg.pol;
  mukai::sanitize::request req;
  req.quarantine_id = "bench-00000000000000000000";

  // Warm-up: first calls load libmagic's database, ICU converters, GMime's tables.
  for (int i = 0; i < opt.warmup; ++i) {
    auto r = mukai::sanitize::sanitize_message(msgs[static_cast<std::size_t>(i) % msgs.size()].raw, pol, req);
    (void)r;
  }

  const long rss_before_kib = current_rss_kib();
  std::size_t verdicts[3] = {0, 0, 0};
  std::size_t failed = 0;
  std::uint64_t output_bytes = 0, quarantined_bytes = 0;
  double slowest = 0;
  std::string slowest_name;
  int rounds = 0;
  double seconds = 0;
  // CPU time next to wall time: if it is well below the wall time, other processes took the
  // core and the figures are low (bench/run shows the ratio as cpu%).
  const double cpu_start = process_cpu_seconds();

  while (rounds < opt.max_rounds && (rounds < opt.min_rounds || seconds < opt.min_seconds)) {
    const auto round_start = clock_type::now();
    for (const auto& m : msgs) {
      const auto t0 = clock_type::now();
      try {
        auto r = mukai::sanitize::sanitize_message(m.raw, pol, req);
        if (rounds == 0 && !opt.dump_dir.empty()) dump_result(opt.dump_dir, m.name, r);
        if (rounds == 0) {
          ++verdicts[static_cast<int>(r.rep.result)];
          output_bytes += r.output.size();
          for (const auto& q : r.quarantine) quarantined_bytes += q.bytes.size();
        }
      } catch (...) {
        if (rounds == 0) ++failed;  // the engine promises never to throw: a bug, counted
      }
      const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
      if (dt > slowest) {
        slowest = dt;
        slowest_name = m.name;
      }
    }
    seconds += std::chrono::duration<double>(clock_type::now() - round_start).count();
    ++rounds;
  }

  const double cpu_seconds = process_cpu_seconds() - cpu_start;
  const double processed = static_cast<double>(msgs.size()) * rounds;
  const double processed_bytes = static_cast<double>(set_bytes) * rounds;
  const double msg_s = processed / seconds;
  const double mb_s = processed_bytes / 1e6 / seconds;
  const long peak = std::max(peak_rss_kib(), rss_before_kib);

  std::fprintf(
      stderr,
      "[mukai] %s: %zu messages, %.2f MB, %d round(s) in %.2f s (CPU %.2f s): %.1f msg/s, %.2f MB/s; "
      "peak RSS %.1f MiB (%.1f MiB before the timed rounds)\n"
      "[mukai] %s: verdicts clean=%zu sanitized=%zu held=%zu threw=%zu; output %.2f MB, "
      "quarantine %.2f MB; slowest %s %.3f s\n",
      opt.set_name.c_str(), msgs.size(), set_bytes / 1e6, rounds, seconds, cpu_seconds, msg_s, mb_s,
      peak / 1024.0, rss_before_kib / 1024.0, opt.set_name.c_str(), verdicts[0], verdicts[1], verdicts[2],
      failed, output_bytes / 1e6, quarantined_bytes / 1e6, slowest_name.c_str(), slowest);
  if (opt.tsv) {
    // set tool msgs bytes rounds seconds msg_s mb_s peak_kib before_kib clean sanitized held failed slowest
    // slowest_s cpu_seconds
    std::printf(
        "RESULT\t%s\tmukai\t%zu\t%llu\t%d\t%.6f\t%.3f\t%.4f\t%ld\t%ld\t%zu\t%zu\t%zu\t%zu\t%s\t%.4f\t%.6f\n",
        opt.set_name.c_str(), msgs.size(), static_cast<unsigned long long>(set_bytes), rounds, seconds, msg_s,
        mb_s, peak, rss_before_kib, verdicts[0], verdicts[1], verdicts[2], failed, slowest_name.c_str(),
        slowest, cpu_seconds);
  }
  return 0;
}
