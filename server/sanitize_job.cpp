// sanitize_one and the directory replay. An error writing the quarantine turns into a
// store_error the caller must treat as "not done": a removed part that is not safely kept
// must never be reported as quarantined to the reader.
#include "server/sanitize_job.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "sanitizers/report_json.hpp"

namespace mukai::server {

job_outcome sanitize_one(std::string_view raw, const config::policy& pol, quarantine_store* store,
                         const quarantine_envelope& envelope, std::string received_by) {
  job_outcome out;
  sanitize::request req;
  req.quarantine_id = new_quarantine_id();
  req.received_by = std::move(received_by);
  out.result = sanitize::sanitize_message(raw, pol, req);
  if (store) {
    quarantine_headers h{out.result.headers.from, out.result.headers.to, out.result.headers.subject,
                         out.result.headers.date, out.result.headers.message_id};
    out.store_error = store->store(req.quarantine_id, raw, out.result, envelope, h);
  }
  return out;
}

std::string batch_summary::to_string() const {
  char rates[128];
  double mps = seconds > 0 ? static_cast<double>(total) / seconds : 0;
  double mbps = seconds > 0 ? static_cast<double>(input_bytes) / seconds / 1e6 : 0;
  std::snprintf(rates, sizeof rates, "%.1f msg/s, %.2f MB/s in %.2f s", mps, mbps, seconds);
  return std::to_string(total) + " messages: " + std::to_string(clean) + " clean, " + std::to_string(sanitized) +
         " sanitized, " + std::to_string(held) + " held, " + std::to_string(failed) + " failed; " + rates;
}

namespace {

bool read_file(const std::filesystem::path& p, std::string& out) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = std::move(ss).str();
  return true;
}

bool write_file(const std::filesystem::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(out);
}

}  // namespace

batch_summary sanitize_directory(const std::filesystem::path& input_dir, const std::filesystem::path& output_dir,
                                 const config::policy& pol, quarantine_store* store, unsigned jobs,
                                 const std::function<void(const std::string&, const std::string&, double)>& progress) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (auto& entry : std::filesystem::directory_iterator(input_dir, ec))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::filesystem::create_directories(output_dir, ec);

  batch_summary summary;
  std::mutex lock;
  std::atomic<std::size_t> next{0};
  auto start = std::chrono::steady_clock::now();
  auto work = [&] {
    for (std::size_t i = next++; i < files.size(); i = next++) {
      const auto& file = files[i];
      auto t0 = std::chrono::steady_clock::now();
      std::string raw;
      std::string verdict = "failed";
      bool ok = read_file(file, raw);
      job_outcome o;
      if (ok) {
        o = sanitize_one(raw, pol, store, {});
        std::string stem = file.filename().string();
        if (stem.size() > 4 && stem.substr(stem.size() - 4) == ".eml") stem.resize(stem.size() - 4);
        ok = !o.store_error && write_file(output_dir / (stem + ".eml"), o.result.output) &&
             write_file(output_dir / (stem + ".json"), sanitize::to_json_text(o.result.rep));
        if (ok) verdict = sanitize::to_string(o.result.rep.result);
      }
      std::lock_guard<std::mutex> g(lock);
      ++summary.total;
      summary.input_bytes += raw.size();
      if (!ok) ++summary.failed;
      else if (o.result.rep.result == sanitize::verdict::clean) ++summary.clean;
      else if (o.result.rep.result == sanitize::verdict::sanitized) ++summary.sanitized;
      else ++summary.held;
      if (progress)
        progress(file.filename().string(), verdict,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  };
  jobs = std::max(1u, jobs);
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < jobs; ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace mukai::server
