#pragma once

/// A latency histogram with fixed buckets, cheap enough for every event,
/// and its snapshots (what a metrics scrape renders).

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace herald {

/// What a histogram held at one moment, in Prometheus' terms.
struct histogram_snapshot {
  /// Upper bounds of the buckets in seconds, strictly increasing; the
  /// implicit last bucket (`+Inf`) is not listed.
  std::vector<double> bounds;
  /// `cumulative[i]` is the number of observations <= `bounds[i]`; the same
  /// size as `bounds`.
  std::vector<uint64_t> cumulative;
  /// Number of observations in all (the `+Inf` bucket).
  uint64_t count = 0;
  /// Sum of the observations in seconds.
  double sum = 0;

  /// Adds the observations of `other` to this one. A default-constructed
  /// (empty) snapshot takes the bounds of `other`, so a scrape can start
  /// from `histogram_snapshot{}` and merge every shard's.
  /// REQUIRES: `other.bounds == bounds`, or one of the two is empty
  /// (no bounds, no observations); throws `std::invalid_argument` otherwise.
  void merge(const histogram_snapshot& other);
};

/// Counts observations of a duration in buckets with fixed upper bounds.
///
/// Thread safety: `observe_us` and `snapshot` may be called from any threads
/// at once; both are lock-free. A snapshot taken during observations is
/// consistent for the buckets and the count (the `+Inf` bucket always equals
/// the count) but may lag a little for the sum. Moving a histogram is not
/// safe while it is in use.
class histogram {
public:
  /// Buckets from 10µs to 10s, in 1-2.5-5 steps: suits event handling,
  /// from an in-memory handler to one that calls a slow service.
  static const std::vector<double>& latency_bounds();

  /// A histogram with the buckets `bounds` (upper bounds in seconds).
  /// REQUIRES: `bounds` finite, >= 0 and strictly increasing; throws
  /// `std::invalid_argument` otherwise.
  explicit histogram(std::vector<double> bounds = latency_bounds());

  histogram(histogram&&) noexcept = default;
  histogram& operator=(histogram&&) noexcept = default;
  histogram(const histogram&) = delete;
  histogram& operator=(const histogram&) = delete;
  ~histogram() = default;

  /// Records one duration of `micros` microseconds. Negative durations (a
  /// clock that stepped back) count as 0. Wait-free: one bucket search over
  /// the bounds and two relaxed atomic increments.
  void observe_us(int64_t micros) noexcept;

  /// The observations so far.
  [[nodiscard]] histogram_snapshot snapshot() const;

  /// The upper bounds in seconds, as given.
  [[nodiscard]] const std::vector<double>& bounds() const noexcept {
    return bounds_;
  }

private:
  std::vector<double> bounds_;
  // bounds_ in whole microseconds (rounded down): an observation v belongs
  // to the first bucket i with v <= limits_[i], else to the +Inf bucket.
  std::vector<int64_t> limits_;
  // Per-bucket (not cumulative) counts, limits_.size() + 1 of them; keeping
  // them separate makes an observation one increment, and the count their
  // sum, so the +Inf bucket and the count can never disagree.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  // In microseconds: integer adds are exact and cheap.
  std::unique_ptr<std::atomic<int64_t>> sum_us_;
};

} // namespace herald
