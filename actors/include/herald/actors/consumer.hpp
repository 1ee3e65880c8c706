#pragma once

/// The consumer actor: one per service on a node.
///
/// It receives `event_batch` messages from the node's transport pump (and
/// from local publishes) in stream order, and hands each event, in order,
/// to the service's handlers:
/// - seed-style handlers (`subscription`), called inside the consumer actor;
/// - a service actor whose CAF behavior handles `herald::event`, asked with
///   one request per event. Its mailbox keeps the order.
///
/// The ordering actor (shards by entity key), supervisor (retries) and
/// dead-letter actor sit between this actor and the handlers in later
/// stages; this actor's contract -- events in, one outcome per event out --
/// stays.
///
/// Thread safety: the stats are atomics, readable from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "herald/actors/messages.hpp"

namespace herald {

/// Counters of one consumer.
struct consumer_stats {
  /// Live events the node sent to the consumer actor.
  std::atomic<uint64_t> dispatched{0};
  /// Events every handler of the consumer succeeded on.
  std::atomic<uint64_t> handled{0};
  /// Events some handler failed on.
  std::atomic<uint64_t> failed{0};
  /// Live events not handed to handlers: duplicates, events that arrived
  /// while their stream was catching up (the replay brings them), and
  /// events that came before any handler.
  std::atomic<uint64_t> skipped{0};
  /// Live events the node did not hand to the consumer because its backlog
  /// was full; the consumer notices the gap and replays them.
  std::atomic<uint64_t> shed{0};
  /// Events handed to handlers from a replay of the producer's log.
  std::atomic<uint64_t> replayed{0};
  /// Gaps noticed (a missing event, live or at the tail).
  std::atomic<uint64_t> gaps{0};
  /// Times the consumer found its position older than the producer's
  /// retention and skipped to the oldest retained event.
  std::atomic<uint64_t> behind_retention{0};
};

/// Sends a replay request for `stream` from seq `from` on, asking for at
/// most `max` events whose type one of `patterns` selects; the reply comes
/// back to the consumer actor as `(replay_atom, replay_reply)`. Returns the
/// request id, or 0 when the stream's control endpoint is not known yet.
using replay_fn = std::function<uint64_t(
  const std::string& stream, uint64_t from, size_t max,
  const std::vector<std::string>& patterns, const caf::actor& reply_to)>;

/// Loads (`load`) and stores (`store`) the consumer's offset in a stream:
/// every selected event with seq <= offset was handled.
struct offset_store {
  std::function<uint64_t(const std::string& stream)> load;
  std::function<void(const std::string& stream, uint64_t seq)> store;
};

/// What a consumer actor is made of.
struct consumer_setup {
  /// The consumer (service) name, in every log line about its events.
  std::string name;
  /// Patterns that select what the service actor receives.
  std::vector<pattern> service_patterns;
  /// Counters shared with the node.
  std::shared_ptr<consumer_stats> stats;
  /// Whether the consumer tracks streams (gap repair, replay, offsets).
  /// Observers (`herald tail`) only see what arrives live. Default: true.
  bool durable = true;
  /// Sends replay requests. Required when `durable`.
  replay_fn replay;
  /// Offsets. Required when `durable`.
  offset_store offsets;
  /// Events asked for per replay request: bounds the consumer's memory
  /// whatever the backlog. Default: 512.
  size_t replay_batch = 512;
  /// How long to wait for a replay reply before asking again.
  /// Default: 2 s.
  std::chrono::milliseconds replay_timeout{2000};
};

/// Spawns a consumer actor. Messages it takes: `event_batch` (live events,
/// in stream order per stream); `(heartbeat_atom, stream_heartbeat)`;
/// `(replay_atom, replay_reply)`; `(subscribe_atom, subscription)` adds a
/// seed-style handler; `(attach_atom, caf::actor)` sets the service actor;
/// `(flush_atom)` commits offsets.
caf::actor spawn_consumer(caf::actor_system& sys, consumer_setup setup);

} // namespace herald
