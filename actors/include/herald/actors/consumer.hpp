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
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "herald/actors/messages.hpp"

namespace herald {

/// Counters of one consumer.
struct consumer_stats {
  /// Events the node sent to the consumer actor.
  std::atomic<uint64_t> dispatched{0};
  /// Events the consumer actor took from its mailbox.
  std::atomic<uint64_t> delivered{0};
  /// Events every handler of the consumer succeeded on.
  std::atomic<uint64_t> handled{0};
  /// Events some handler failed on.
  std::atomic<uint64_t> failed{0};
};

/// What a consumer actor is made of.
struct consumer_setup {
  /// The consumer (service) name, in every log line about its events.
  std::string name;
  /// Patterns that select what the service actor receives.
  std::vector<pattern> service_patterns;
  /// Counters shared with the node.
  std::shared_ptr<consumer_stats> stats;
};

/// Spawns a consumer actor. Messages it takes: `event_batch`;
/// `(subscribe_atom, subscription)` adds a seed-style handler;
/// `(attach_atom, caf::actor)` sets the service actor.
caf::actor spawn_consumer(caf::actor_system& sys, consumer_setup setup);

} // namespace herald
