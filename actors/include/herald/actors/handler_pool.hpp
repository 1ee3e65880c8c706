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
/// until `stop`: one at first; then, whenever work is queued while every
/// thread is in a call that waits (has run for 500 µs or more *and*
/// sleeps: on I/O, a lock, a timer), one per queued job; and one more, up
/// to the cores, while quick calls queue up faster than the threads take
/// them. "Sleeps" is the kernel's view, not the clock's: on a loaded
/// machine a quick call preempted half-way has run as long, and counting
/// it as waiting started every thread for a handler that does nothing. A
/// call in progress is asked about through its thread's state in
/// /proc/self/task/TID/stat (proc(5); at most once per millisecond per
/// pool, and only once the clock says 500 µs), a call that just ended
/// through its thread's voluntary context switches (getrusage(2),
/// RUSAGE_THREAD; counted only around calls after a slow one). Without
/// procfs the clock alone decides, as before. Quick handlers so run on
/// few threads, handlers that wait on as many as the work and `threads`
/// allow.
///
/// A shard hands over the events it has for the pool as one batch (one
/// lock, at most one wake-up); while calls are quick, a submit wakes only
/// the threads the backlog needs. The pool reads each event from the
/// shard, which keeps it until the outcome is back, so its threads touch
/// no reference count. A thread takes one job at a time (it never holds
/// work behind a call that waits) and reports a quick call's outcome
/// together with the next ones (up to 64, or when the queue is empty), a
/// slow call's (100 µs or more) at once: a handler that does nothing
/// costs one message per batch, not per event.
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
