// The quarantine benchmarks' shared workload (bench_quarantine: the index alone; bench_console: the
// web console over HTTPS): a deterministic generator of realistic index records, the fill of an
// index with them (or the reuse of a kept one), the query set timed, and the percentiles reported.
//
// Records: Japanese and English subjects, municipal and external senders, 1-3 recipients, 0-3 parts
// with real-looking names and types, reasons, 5% released and 1% deleted, received over 60 days.
// Header-only: each benchmark is one translation unit.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "server/quarantine_index.hpp"

namespace mukai::bench {

using namespace mukai::server;
using clock_type = std::chrono::steady_clock;

inline const char* const subjects_ja[] = {"請求書の送付について", "【至急】会議資料のご確認", "令和8年度 予算要求資料",
                                   "防災訓練の実施について（通知）", "議事録の送付", "見積書のご送付",
                                   "住民説明会の開催について", "システム更新のお知らせ", "調査票のご提出のお願い",
                                   "Re: 補助金申請書類について"};
inline const char* const subjects_en[] = {"Invoice for November", "Meeting minutes", "Your parcel could not be delivered",
                                   "Quarterly report", "Re: project schedule", "Updated contract draft"};
inline const char* const senders[] = {"soumu@pref.example.lg.jp", "notice@pref.example.lg.jp", "info@vendor.example.co.jp",
                               "sales@example.com", "noreply@bank.example.jp", "yamada@consult.example.jp",
                               "support@cloud.example.com", "kikaku@city2.example.lg.jp"};
inline const char* const recipients[] = {"kikaku@city.example.lg.jp", "soumu@city.example.lg.jp", "zaisei@city.example.lg.jp",
                                  "bousai@city.example.lg.jp", "jouhou@city.example.lg.jp", "kyouiku@city.example.lg.jp"};
struct part_kind {
  const char* ext;
  const char* type;
  const char* reason;
};
inline const part_kind kinds[] = {{"pdf", "application/pdf", "attachment"},
                           {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "attachment"},
                           {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "attachment"},
                           {"zip", "application/zip", "attachment"},
                           {"png", "image/png", "image"},
                           {"exe", "application/vnd.microsoft.portable-executable", "rule:executable"},
                           {"xlsm", "application/vnd.ms-excel.sheet.macroEnabled.12", "rule:macro-office"}};
inline const char* const names[] = {"請求書", "資料", "見積書", "invoice", "report", "議事録", "調査票", "scan"};

template <typename T, std::size_t N>
const T& pick(std::mt19937_64& rng, const T (&a)[N]) {
  return a[rng() % N];
}

inline std::string make_id(std::int64_t t, std::uint64_t seq) {
  const auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ-%010llu", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<unsigned long long>(seq % 10000000000ull));
  return buf;
}

inline index_item make_item(std::mt19937_64& rng, std::uint64_t i, std::int64_t now) {
  index_item it;
  it.received = now - static_cast<std::int64_t>(rng() % (60ull * 86400));
  it.id = make_id(it.received, i);
  it.mail_from = pick(rng, senders);
  it.from = it.mail_from;
  const std::size_t nr = 1 + rng() % 3;
  for (std::size_t k = 0; k < nr; ++k) it.rcpt_to.emplace_back(pick(rng, recipients));
  it.to = it.rcpt_to.front();
  it.subject = rng() % 3 ? pick(rng, subjects_ja) : pick(rng, subjects_en);
  it.subject += " #" + std::to_string(i);
  it.message_id = "<" + std::to_string(i) + "." + std::to_string(rng()) + "@mail.example.jp>";
  it.size = 2000 + rng() % 2'000'000;
  it.original_stored = true;
  it.verdict = rng() % 20 ? "sanitized" : "held";
  const std::size_t np = rng() % 4;
  it.parts.push_back({"1", "", "text/plain", "text/plain", 500, std::string(64, 'a'), "kept-as-text", "body"});
  for (std::size_t k = 0; k < np; ++k) {
    const auto& kind = pick(rng, kinds);
    char sha[65];
    std::snprintf(sha, sizeof sha, "%016llx%016llx%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()), static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    it.parts.push_back({std::to_string(k + 2), std::string(pick(rng, names)) + "_" + std::to_string(i % 1000) + "." + kind.ext,
                        kind.type, kind.type, 1000 + rng() % 5'000'000, sha, "quarantined", kind.reason});
    it.reasons.push_back(std::string("attachments-removed=") + std::to_string(np));
  }
  if (it.verdict == "held") it.reasons = {"unparseable"};
  if (it.reasons.empty()) it.reasons = {"html-to-text"};
  return it;
}

struct query {
  const char* name;
  item_filter (*make)(std::size_t round, std::int64_t now);
};

inline const query queries[] = {
    {"no filter, first page", [](std::size_t, std::int64_t) { return item_filter{}; }},
    {"status=released", [](std::size_t, std::int64_t) {
       item_filter f;
       f.status = item_status::released;
       return f;
     }},
    {"sender substring", [](std::size_t r, std::int64_t) {
       item_filter f;
       f.sender = r % 2 ? "vendor.example" : "PREF.example";
       return f;
     }},
    {"subject, Japanese", [](std::size_t r, std::int64_t) {
       item_filter f;
       f.subject = r % 2 ? "会議資料" : "防災訓練";
       return f;
     }},
    {"subject, 2 characters", [](std::size_t r, std::int64_t) {
       item_filter f;
       f.subject = r % 2 ? "予算" : "資料";
       return f;
     }},
    {"free text, rare", [](std::size_t r, std::int64_t) {
       item_filter f;
       f.text = "#" + std::to_string(12345 + r);  // one subject
       return f;
     }},
    {"filename .exe", [](std::size_t, std::int64_t) {
       item_filter f;
       f.filename = ".exe";
       return f;
     }},
    {"date range (1 day)", [](std::size_t r, std::int64_t now) {
       item_filter f;
       f.since = now - static_cast<std::int64_t>(r % 50 + 2) * 86400;
       f.until = *f.since + 86400;
       return f;
     }},
    {"held + recipient + 7 days", [](std::size_t, std::int64_t now) {
       item_filter f;
       f.status = item_status::held;
       f.recipient = "bousai@";
       f.since = now - 7 * 86400;
       return f;
     }},
    {"deep offset (page 1000)", [](std::size_t r, std::int64_t) {
       item_filter f;
       f.offset = 49'000 + (r % 10) * 50;
       return f;
     }},
};

inline double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

struct percentiles {
  double median = 0, p99 = 0, max = 0;
};
// Sorts `times` (ms); the p99 of 50 samples is the largest but one.
inline percentiles summarize(std::vector<double>& times) {
  if (times.empty()) return {};
  std::sort(times.begin(), times.end());
  const std::size_t p99 = std::min(times.size() - 1, static_cast<std::size_t>(0.99 * static_cast<double>(times.size())));
  return {times[times.size() / 2], times[p99], times.back()};
}

inline std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Puts `items` generated records into `index`, unless it already holds that many (a --keep'ed
// directory given again: filling takes a minute or two). False, with a message, on a failed put.
inline bool fill_index(quarantine_index& index, std::size_t items, std::int64_t now, const char* where) {
  std::mt19937_64 rng(20261122);
  const auto t0 = clock_type::now();
  const std::uint64_t existing = index.list({}).total;
  if (existing >= items) {
    std::printf("reusing the %llu items in %s\n", static_cast<unsigned long long>(existing), where);
    return true;
  }
  for (std::size_t i = 0; i < items; ++i) {
    const index_item it = make_item(rng, i, now);
    if (auto put_ec = index.put(it)) {
      std::fprintf(stderr, "put failed at %zu: %s\n", i, put_ec.message().c_str());
      return false;
    }
    // 5% released, 1% deleted: what a working quarantine looks like.
    const auto roll = rng() % 100;
    if (roll < 6) {
      (void)index.set_status(it.id, roll < 5 ? item_status::released : item_status::deleted,
                             {now, "cli:bench", roll < 5 ? "release" : "delete", "ok", ""});
    }
  }
  const double fill_s = ms_since(t0) / 1000;
  std::printf("%zu items put in %.1f s (%.0f puts/s, each its own fsynced transaction)\n", items, fill_s,
              static_cast<double>(items) / fill_s);
  return true;
}

// The command line both benchmarks take: [--items N] [--repeat R] [--dir DIR] [--keep]. Without
// --dir, a fresh directory under $TMPDIR named after the benchmark. nullopt after printing the usage.
struct bench_args {
  std::size_t items = 100'000, repeat = 50;
  std::filesystem::path dir;
  bool keep = false;
};
inline std::optional<bench_args> parse_bench_args(int argc, char** argv, const char* name) {
  bench_args b;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--items" && i + 1 < argc) b.items = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--repeat" && i + 1 < argc) b.repeat = std::max<std::size_t>(1, std::strtoull(argv[++i], nullptr, 10));
    else if (a == "--dir" && i + 1 < argc) b.dir = argv[++i];
    else if (a == "--keep") b.keep = true;
    else {
      std::fprintf(stderr, "usage: %s [--items N] [--repeat R] [--dir DIR] [--keep]\n", name);
      return std::nullopt;
    }
  }
  if (b.dir.empty()) {
    std::string templ = (std::filesystem::temp_directory_path() / (std::string("mukai-") + name + "-XXXXXX")).string();
    if (!::mkdtemp(templ.data())) {
      std::perror("mkdtemp");
      return std::nullopt;
    }
    b.dir = templ;
  }
  return b;
}

}  // namespace mukai::bench
