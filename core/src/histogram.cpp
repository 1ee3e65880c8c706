#include "herald/core/histogram.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

namespace herald {

namespace {

// `seconds` in whole microseconds, rounded down, so that an integer
// observation v fits the bucket exactly when v <= the result. Bounds such as
// 2.5e-5 are not exact in binary: within a hair of an integer they count as
// that integer, not the one below.
int64_t to_limit_us(double seconds) {
  double micros = seconds * 1e6;
  if (micros >= 9.2e18)
    return std::numeric_limits<int64_t>::max();
  double nearest = std::round(micros);
  if (std::abs(micros - nearest) <= 1e-9 * std::max(1.0, nearest))
    return static_cast<int64_t>(nearest);
  return static_cast<int64_t>(std::floor(micros));
}

bool is_empty(const histogram_snapshot& s) {
  return s.bounds.empty() && s.count == 0;
}

} // namespace

void histogram_snapshot::merge(const histogram_snapshot& other) {
  if (other.bounds != bounds) {
    if (is_empty(other))
      return;
    if (is_empty(*this)) {
      *this = other;
      return;
    }
    throw std::invalid_argument(
      fmt::format("histogram_snapshot::merge: bucket bounds differ ({} vs {} "
                  "bounds); merge only snapshots of histograms made with "
                  "the same bounds",
                  bounds.size(), other.bounds.size()));
  }
  for (size_t i = 0; i < cumulative.size() && i < other.cumulative.size(); ++i)
    cumulative[i] += other.cumulative[i];
  count += other.count;
  sum += other.sum;
}

const std::vector<double>& histogram::latency_bounds() {
  static const std::vector<double> bounds{
    1e-5,  2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01,
    0.025, 0.05,   0.1,  0.25, 0.5,    1,    2.5,  5,      10};
  return bounds;
}

histogram::histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)),
      sum_us_(std::make_unique<std::atomic<int64_t>>(0)) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    double b = bounds_[i];
    if (!std::isfinite(b) || b < 0 || (i > 0 && b <= bounds_[i - 1]))
      throw std::invalid_argument(fmt::format(
        "histogram: bound {} ({}) is not finite, >= 0 and greater than the "
        "one before; give strictly increasing upper bounds in seconds",
        i, b));
  }
  limits_.reserve(bounds_.size());
  for (double b : bounds_)
    limits_.push_back(to_limit_us(b));
}

void histogram::observe_us(int64_t micros) noexcept {
  if (micros < 0)
    micros = 0;
  auto bucket = static_cast<size_t>(
    std::lower_bound(limits_.begin(), limits_.end(), micros) - limits_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_us_->fetch_add(micros, std::memory_order_relaxed);
}

histogram_snapshot histogram::snapshot() const {
  histogram_snapshot s;
  s.bounds = bounds_;
  s.cumulative.reserve(bounds_.size());
  uint64_t running = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  running += counts_[bounds_.size()].load(std::memory_order_relaxed);
  s.count = running;
  s.sum = static_cast<double>(sum_us_->load(std::memory_order_relaxed)) / 1e6;
  return s;
}

} // namespace herald
