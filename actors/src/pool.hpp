#pragma once

// What shards and the handler pool pass each other. Private to the actors
// part; see handler_pool.hpp for the contract.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include "herald/actors/handler_pool.hpp"
#include "shard.hpp"

namespace herald::detail {

/// Where a shard's calls report and which handlers they call. A shard makes
/// a new one when its handlers change; calls under way keep theirs.
struct pool_source {
  /// The shard that gets the outcomes.
  caf::actor reply_to;
  std::shared_ptr<const std::vector<subscription>> subs;
};

/// One call of the function handlers on an event.
struct pool_job {
  /// Kept by the shard until it has the outcome; read-only here.
  const event* ev = nullptr;
  /// The shard's entry of the event's entity, opaque to the pool, and the
  /// shard's id of this call.
  void* entity = nullptr;
  uint64_t id = 0;
};

/// How a call ended.
struct pool_result {
  void* entity = nullptr;
  uint64_t id = 0;
  outcome result;
};

using pool_results = std::vector<pool_result>;

/// Outcomes of calls, from a pool thread to a shard.
using handled_atom = caf::atom_constant<caf::atom("hhandled")>;

/// Jobs a shard handed over at once; threads take them one at a time.
struct pool_batch {
  std::shared_ptr<const pool_source> source;
  std::vector<pool_job> jobs;
  /// The next job not taken.
  size_t next = 0;
};

/// The state the pool's threads share; guarded by `mtx`, apart from the
/// atomics.
struct pool_core {
  using clock = std::chrono::steady_clock;

  std::string name;
  size_t max_threads = 0;
  std::mutex mtx;
  std::condition_variable wake;
  std::deque<pool_batch> queue;
  /// Jobs in `queue` not taken yet.
  size_t queued = 0;
  std::vector<std::thread> threads;
  /// Per thread, its id in the kernel (0 until it runs).
  std::vector<pid_t> tids;
  /// Per thread, when its call in progress started
  /// (`clock::duration::rep`); `idle_since` between calls. Written by the
  /// thread without the lock.
  std::unique_ptr<std::atomic<clock::rep>[]> call_since;
  /// Threads waiting for work.
  size_t idle = 0;
  /// The last call that ended was quick: wake threads for work as it
  /// queues up, not one per job.
  bool quick = false;
  /// When the kernel was last asked whether the threads wait.
  clock::time_point last_probe;
  bool stopping = false;
  std::atomic<size_t> running{0};
};

/// `call_since` of a thread between calls.
constexpr auto idle_since = std::chrono::steady_clock::rep{-1};

/// Queues `jobs` (emptied) of `source` and wakes or starts threads for
/// them. Never waits for a call.
void submit(pool_core& core, const std::shared_ptr<const pool_source>& source,
            std::vector<pool_job>& jobs);

/// Starts threads if queued work waits while every thread is in a call
/// that waits: called by shards while their calls run, so that a pool
/// whose threads all hang still grows up to its maximum.
void nudge(pool_core& core);

} // namespace herald::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::detail::pool_results)
