// Metrics in the Prometheus text exposition format (version 0.0.4), for /metrics on the admin
// listener.
//
// Pieces:
//  - metric_counter, metric_gauge: one atomic each.
//  - counter_family: counters with labels whose values come from FIXED lists given at construction
//    (plus "other" for anything else). Every series exists from the start, so the number of series
//    is bounded by construction: a hostile message naming a million detected types still adds to
//    one "other" series, never a new one (unbounded label sets are the classic way to exhaust a
//    monitoring system's memory, and ours).
//  - metric_histogram: fixed bucket bounds, cumulative buckets rendered as _bucket{le=...} with
//    le="+Inf", then _sum and _count.
//  - prometheus_writer: builds the text: "# HELP" and "# TYPE" once per family, then its samples.
//    HELP text escapes backslash and newline; label values escape backslash, double quote and
//    newline (the format's rules). Metric and label names are our own constants (checked with
//    valid_metric_name in tests), never message data.
//
// Consistency: a scrape reads each atomic once without a lock; a histogram's _count may lag its
// buckets by the observations in flight (Prometheus clients accept the same).
//
// Threading: increments and observations are lock-free and safe from any thread; rendering may run
// concurrently with them. prometheus_writer itself is single-threaded.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mukai::server {

enum class metric_type : std::uint8_t { counter, gauge, histogram };

using metric_label = std::pair<std::string_view, std::string_view>;

class prometheus_writer {
 public:
  // "# HELP name help" and "# TYPE name type".
  void family(std::string_view name, std::string_view help, metric_type type);
  // "name{l1="v1",...} value".
  void sample(std::string_view name, std::initializer_list<metric_label> labels, double value);
  void sample(std::string_view name, const std::vector<metric_label>& labels, double value);
  void sample(std::string_view name, double value) { sample(name, {}, value); }
  [[nodiscard]] const std::string& text() const noexcept { return out_; }
  [[nodiscard]] std::string take() noexcept { return std::move(out_); }

 private:
  std::string out_;
};

// A number as the format writes it: integers without a fraction, "+Inf", "-Inf", "NaN".
[[nodiscard]] std::string format_metric_value(double v);
// Label value escaping: \ -> \\, " -> \", newline -> \n.
[[nodiscard]] std::string escape_label_value(std::string_view v);
// HELP escaping: \ -> \\, newline -> \n.
[[nodiscard]] std::string escape_help(std::string_view v);
// [a-zA-Z_:][a-zA-Z0-9_:]* (label names: without ':').
[[nodiscard]] bool valid_metric_name(std::string_view name, bool label = false) noexcept;

class metric_counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class metric_gauge {
 public:
  void set(std::int64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t d) noexcept { v_.fetch_add(d, std::memory_order_relaxed); }
  [[nodiscard]] std::int64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

class counter_family {
 public:
  // label_names[i] takes the values allowed[i] or "other". Throws std::invalid_argument for a bad
  // name, a size mismatch, or more than max_series series (start-up: a programming error).
  counter_family(std::vector<std::string> label_names, std::vector<std::vector<std::string>> allowed,
                 std::size_t max_series = 1024);
  // One value per label, in label_names order; a value not in its list counts as "other".
  void inc(std::initializer_list<std::string_view> values, std::uint64_t n = 1) noexcept;
  [[nodiscard]] std::uint64_t value(std::initializer_list<std::string_view> values) const noexcept;
  // Every series (zeros included: a series that appears only later breaks rate() over its start).
  void write(prometheus_writer& w, std::string_view name, std::string_view help) const;
  [[nodiscard]] std::size_t series() const noexcept { return size_; }

 private:
  [[nodiscard]] std::size_t index_of(std::initializer_list<std::string_view> values) const noexcept;
  std::vector<std::string> names_;
  std::vector<std::vector<std::string>> values_;  // each list ends with "other"
  std::size_t size_ = 1;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
};

class metric_histogram {
 public:
  // Strictly increasing finite upper bounds (the +Inf bucket is implicit). Throws
  // std::invalid_argument otherwise.
  explicit metric_histogram(std::vector<double> bounds);
  void observe(double v) noexcept;
  void write(prometheus_writer& w, std::string_view name, std::string_view help) const;
  [[nodiscard]] std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  [[nodiscard]] double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // per bucket (not cumulative); last = +Inf
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

}  // namespace mukai::server
