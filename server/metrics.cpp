#include "server/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace mukai::server {

std::string format_metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Counters up to 2^53 are exact integers; shortest round-trip form otherwise.
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

namespace {

// The format's two escapings differ only in the double quote (escaped in label values alone).
std::string escape_metric_text(std::string_view v, bool quote) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (quote && c == '"')
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string escape_label_value(std::string_view v) { return escape_metric_text(v, true); }
std::string escape_help(std::string_view v) { return escape_metric_text(v, false); }

bool valid_metric_name(std::string_view name, bool label) noexcept {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

void prometheus_writer::family(std::string_view name, std::string_view help, metric_type type) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escape_help(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += type == metric_type::counter ? " counter\n" : type == metric_type::gauge ? " gauge\n" : " histogram\n";
}

namespace {

template <typename Labels>
void write_sample(std::string& out, std::string_view name, const Labels& labels, double value) {
  out += name;
  if (labels.size() != 0) {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out += ',';
      first = false;
      out += k;
      out += "=\"";
      out += escape_label_value(v);
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  out += format_metric_value(value);
  out += '\n';
}

}  // namespace

void prometheus_writer::sample(std::string_view name, std::initializer_list<metric_label> labels, double value) {
  write_sample(out_, name, labels, value);
}

void prometheus_writer::sample(std::string_view name, const std::vector<metric_label>& labels, double value) {
  write_sample(out_, name, labels, value);
}

// ---- counter_family ------------------------------------------------------------------------------

counter_family::counter_family(std::vector<std::string> label_names, std::vector<std::vector<std::string>> allowed,
                               std::size_t max_series)
    : names_(std::move(label_names)), values_(std::move(allowed)) {
  if (names_.empty() || names_.size() != values_.size()) throw std::invalid_argument("counter_family: label mismatch");
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (!valid_metric_name(names_[i], true)) throw std::invalid_argument("counter_family: bad label " + names_[i]);
    if (std::find(values_[i].begin(), values_[i].end(), "other") == values_[i].end()) values_[i].push_back("other");
    size_ *= values_[i].size();
    if (size_ > max_series) throw std::invalid_argument("counter_family: too many series");
  }
  counts_ = std::make_unique<std::atomic<std::uint64_t>[]>(size_);
}

std::size_t counter_family::index_of(std::initializer_list<std::string_view> values) const noexcept {
  std::size_t index = 0;
  std::size_t i = 0;
  for (const auto v : values) {
    if (i >= values_.size()) break;
    const auto& list = values_[i];
    auto it = std::find(list.begin(), list.end(), v);
    const std::size_t k = it == list.end() ? list.size() - 1 : static_cast<std::size_t>(it - list.begin());
    index = index * list.size() + k;
    ++i;
  }
  for (; i < values_.size(); ++i) index = index * values_[i].size() + values_[i].size() - 1;  // missing: other
  return index;
}

void counter_family::inc(std::initializer_list<std::string_view> values, std::uint64_t n) noexcept {
  counts_[index_of(values)].fetch_add(n, std::memory_order_relaxed);
}

std::uint64_t counter_family::value(std::initializer_list<std::string_view> values) const noexcept {
  return counts_[index_of(values)].load(std::memory_order_relaxed);
}

void counter_family::write(prometheus_writer& w, std::string_view name, std::string_view help) const {
  w.family(name, help, metric_type::counter);
  std::vector<std::size_t> digit(names_.size(), 0);
  std::vector<metric_label> labels(names_.size());
  for (std::size_t index = 0; index < size_; ++index) {
    for (std::size_t i = 0; i < names_.size(); ++i) labels[i] = {names_[i], values_[i][digit[i]]};
    w.sample(name, labels, static_cast<double>(counts_[index].load(std::memory_order_relaxed)));
    // Mixed-radix increment, last label fastest (the order index_of uses).
    for (std::size_t i = names_.size(); i-- > 0;) {
      if (++digit[i] < values_[i].size()) break;
      digit[i] = 0;
    }
  }
}

// ---- metric_histogram ----------------------------------------------------------------------------

metric_histogram::metric_histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1]))
      throw std::invalid_argument("metric_histogram: bounds must be finite and increasing");
  }
  buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
}

void metric_histogram::observe(double v) noexcept {
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);  // first bound >= v: le is inclusive
  buckets_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

void metric_histogram::write(prometheus_writer& w, std::string_view name, std::string_view help) const {
  w.family(name, help, metric_type::histogram);
  const std::string bucket = std::string(name) + "_bucket";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    const std::string le = i < bounds_.size() ? format_metric_value(bounds_[i]) : "+Inf";
    w.sample(bucket, {{"le", le}}, static_cast<double>(cumulative));
  }
  w.sample(std::string(name) + "_sum", sum());
  // _count equals the +Inf bucket as rendered (the format requires it), even while observations race.
  w.sample(std::string(name) + "_count", static_cast<double>(cumulative));
}

}  // namespace mukai::server
