#pragma once

// What shards and the handler pool pass each other. Private to the actors
// part; see handler_pool.hpp for the contract.

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

/// One call of the function handlers on an event.
struct pool_job {
  /// The shard that gets the outcome.
  caf::actor reply_to;
  /// The handlers; shared so that a later subscription does not change a
  /// call under way.
  std::shared_ptr<const std::vector<subscription>> subs;
  event ev;
  /// The event's entity and the shard's id of this call.
  std::string key;
  uint64_t id = 0;
};

/// How a call ended.
struct pool_result {
  std::string key;
  uint64_t id = 0;
  outcome result;
};

using pool_results = std::vector<pool_result>;

/// Outcomes of calls, from a pool thread to a shard.
using handled_atom = caf::atom_constant<caf::atom("hhandled")>;

/// The state the pool's threads share; guarded by `mtx`, apart from the
/// atomics.
struct pool_core {
  std::string name;
  size_t max_threads = 0;
  std::mutex mtx;
  std::condition_variable wake;
  std::deque<pool_job> queue;
  std::vector<std::thread> threads;
  /// Per thread, when its call in progress started; `max()` between calls.
  std::vector<std::chrono::steady_clock::time_point> call_since;
  /// Threads waiting for work.
  size_t idle = 0;
  bool stopping = false;
  std::atomic<size_t> running{0};
};

/// Queues `jobs` (emptied) and wakes or starts threads for them. Never
/// waits for a call.
void submit(pool_core& core, std::vector<pool_job>& jobs);

/// Starts threads if queued work waits while every thread is in a call
/// that waits: called by shards while their calls run, so that a pool
/// whose threads all hang still grows up to its maximum.
void nudge(pool_core& core);

} // namespace herald::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(herald::detail::pool_results)
