#pragma once

/// The threads a consumer's function handlers run on.
///
/// A handler that waits on I/O (an SMTP server, an HTTP API, a database)
/// must not wait on a thread of the actor system: there are only as many
/// as cores, and every actor of the node (the consumer, its shards, the
/// dead-letter actor) waits with it. So each consumer calls its function
/// handlers on a pool of its own, as Akka runs blocking work on a
/// dispatcher of its own and Kafka consumers set a concurrency: up to
/// `threads` calls at once. A shard hands the pool an event and gets the
/// outcome back as a message; it never blocks, and it stays the supervisor
/// (retries, dead letters) and the keeper of per-entity order (an entity
/// has at most one event in the pool at a time).
///
/// Threads are started when work needs them, up to `threads`, and live
/// until `stop`: one at first, then, whenever work is queued while every
/// thread is in a call that has run for 500 µs or more (waiting, not
/// computing), one per queued job; and one more, up to the cores, while
/// quick calls queue up faster than the threads take them. Quick handlers
/// so run on a few threads, handlers that wait on as many as the work and
/// `threads` allow.
///
/// The queue is not bounded here: the consumer's own flow control bounds
/// it (one event per entity, entities bounded by the events the node hands
/// the consumer and by its replay window).
///
/// Thread safety: every member is safe to call from any thread.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace herald {

namespace detail {
struct pool_core;
} // namespace detail

class handler_pool {
public:
  /// A pool of at most `threads` threads (REQUIRES: > 0), named
  /// `herald-<consumer>` where the platform names threads.
  handler_pool(size_t threads, std::string consumer);

  /// Calls `stop`.
  ~handler_pool();

  handler_pool(const handler_pool&) = delete;
  handler_pool& operator=(const handler_pool&) = delete;

  /// Drops the calls not started yet (their events are unfinished, so the
  /// consumer's offset stays before them: they are handled again after a
  /// restart) and waits for the calls in progress to return. Idempotent.
  /// Call it off the actor system's threads.
  void stop();

  /// The most threads the pool starts.
  size_t max_threads() const noexcept;

  /// Handler calls in progress now.
  size_t running() const noexcept;

  /// The pool's shared state, for the shards that submit to it.
  const std::shared_ptr<detail::pool_core>& core() const noexcept {
    return core_;
  }

private:
  std::shared_ptr<detail::pool_core> core_;
};

} // namespace herald
