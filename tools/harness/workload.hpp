#pragma once

/// Driving the workload: publishes the plan's events through a node's
/// control endpoint (the `publish` op of `herald publish --control`), on
/// its own thread, paced by the plan, and records each event's outcome in
/// `publishes.jsonl`: `acked` (with the id, stream and seq the node gave
/// it), `refused`, or `unknown` when the request got no answer in time
/// (as in Jepsen: it may or may not have been published).
///
/// Thread safety: `start`, `join` from one thread; the counters from any.

#include <atomic>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>

#include "schedule.hpp"

namespace herald::harness {

class publisher {
public:
  /// Publishes `p.events` to the control endpoint `control`, at most
  /// `batch` per request, waiting `timeout` for each answer; appends to
  /// `record`. REQUIRES: `p` outlives the publisher.
  publisher(std::string control, const plan& p, std::string record,
            size_t batch, std::chrono::milliseconds timeout);
  ~publisher();

  /// Starts publishing; event k goes out once `start + p.events[k].at`
  /// passed.
  void start(std::chrono::steady_clock::time_point start);

  /// Waits until every event was sent (bounded by the plan's length and
  /// one timeout per request).
  void join();

  /// Ends early (at the next request).
  void stop() noexcept {
    stop_ = true;
  }

  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> unknown{0};
  std::atomic<uint64_t> refused{0};

private:
  void run(std::chrono::steady_clock::time_point start);

  std::string control_;
  const plan& plan_;
  std::string record_;
  size_t batch_;
  std::chrono::milliseconds timeout_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace herald::harness
