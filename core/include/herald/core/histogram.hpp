#pragma once

/// A latency histogram with fixed buckets, cheap enough for every event.
///
/// Thread safety: `observe_us` and `snapshot` are safe to call from any
/// thread at once (relaxed atomics: a snapshot taken while events are
/// observed may mix counts of neighbouring moments, never lose one).

#include <array>
#include <atomic>
#include <cstdint>

namespace herald {

class histogram {
public:
  /// Upper bounds of the buckets, in microseconds: 10 µs to 10 s, then
  /// +Inf.
  static constexpr std::array<int64_t, 19> bounds_us = {
    10,      25,        50,        100,       250,       500,     1'000,
    2'500,   5'000,     10'000,    25'000,    50'000,    100'000, 250'000,
    500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000};

  /// What a histogram holds at one moment.
  struct snapshot_type {
    /// Observations at or below each bound (not cumulative), and the last
    /// one above every bound.
    std::array<uint64_t, bounds_us.size() + 1> buckets{};
    uint64_t count = 0;
    /// Sum of the observations, microseconds.
    uint64_t sum_us = 0;

    /// Adds `other`'s counts to these.
    void merge(const snapshot_type& other) noexcept {
      for (size_t i = 0; i < buckets.size(); ++i)
        buckets[i] += other.buckets[i];
      count += other.count;
      sum_us += other.sum_us;
    }
  };

  /// Records one observation of `micros` (negative counts as 0).
  void observe_us(int64_t micros) noexcept {
    if (micros < 0)
      micros = 0;
    size_t i = 0;
    while (i < bounds_us.size() && micros > bounds_us[i])
      ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(static_cast<uint64_t>(micros), std::memory_order_relaxed);
  }

  /// The counts now.
  snapshot_type snapshot() const noexcept {
    snapshot_type s;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
      s.count += s.buckets[i];
    }
    s.sum_us = sum_us_.load(std::memory_order_relaxed);
    return s;
  }

private:
  std::array<std::atomic<uint64_t>, bounds_us.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
};

} // namespace herald
