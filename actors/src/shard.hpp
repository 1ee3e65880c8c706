#pragma once

// An ordering shard of a consumer, and the supervisor of its events. Private
// to the actors part; see consumer.hpp for the contract.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <spdlog/fwd.h>

#include "herald/actors/consumer.hpp"
#include "herald/actors/history.hpp"

namespace herald::detail {

struct pool_core;

/// Tells shards that the service is paused (its actor kept dying): from the
/// consumer to its shards.
using service_paused_atom = caf::atom_constant<caf::atom("hsvcpause")>;

/// Restarts a paused service: from the consumer to itself.
using service_restart_atom = caf::atom_constant<caf::atom("hsvcstart")>;

/// Looks for handler calls that ran past `handler_timeout`: from a shard to
/// itself.
using tick_atom = caf::atom_constant<caf::atom("htick")>;

/// How one attempt of a consumer's handlers ended.
struct outcome {
  bool ok = true;
  bool retryable = true;
  std::string error;
  /// "exception", "error", "non_retryable" or "timeout".
  std::string error_class;
};

/// The outcome of a handler that answered `err`. CAF's errors of a
/// request to the service actor are named: `request_timeout` says
/// `handler_timeout` passed, `request_receiver_down` that the actor died.
outcome failure_of(const caf::error& err,
                   std::chrono::microseconds handler_timeout = {});

/// Spawns the service actor of a consumer from `factory`: its behavior
/// runs inside a catch-all, so that an exception while handling a message
/// answers that request with the exception's text (`errc::non_retryable`
/// for a `non_retryable_error`, else `errc::handler_failed`) and the actor
/// lives on. An exception elsewhere (in `factory`, in a response handler)
/// ends the actor with that error as its exit reason. A service that
/// `become`s another behavior leaves the catch-all behind: its exceptions
/// then end it, and its consumer restarts it.
caf::actor spawn_service(caf::local_actor* parent, const service_fn& factory);

/// Calls the seed-style handlers of `subs` that select `ev`, in order; the
/// first failure ends the attempt. Never throws.
outcome call_handlers(const std::vector<subscription>& subs, const event& ev);

/// Logs a failed attempt through `log` with the event's whole context;
/// `next` says what happens now (a retry, a dead letter).
void log_failure(spdlog::logger& log, std::string_view consumer,
                 const event& ev, size_t attempt, const outcome& o,
                 std::string_view next);

struct shard_setup {
  /// This shard's index among its consumer's shards.
  uint32_t index = 0;
  /// The consumer's name.
  std::string consumer;
  std::string node;
  /// The consumer's logger. REQUIRES: not null.
  std::shared_ptr<spdlog::logger> log;
  consumer_config policy;
  std::shared_ptr<consumer_stats> stats;
  /// The consumer actor: receives done, held, pause and resume.
  caf::actor owner;
  caf::actor dead_letters;
  /// Where function handlers run; null: on the shard.
  std::shared_ptr<pool_core> pool;
  /// Entities parked at start, with the dead letter each is parked behind.
  std::vector<std::pair<std::string, uint64_t>> parked;
  /// The consumer's lease gates: kept alive while the shard runs (work
  /// items point into them).
  std::shared_ptr<lease_gates> gates;
  /// Told of every finished event before it is reported done; null: none.
  std::shared_ptr<handling_history> history;
};

/// Spawns a shard linked to `parent`. Messages: `work_batch`;
/// `(subscribe_atom, subscription)`; `(attach_atom, caf::actor, patterns)`
/// sets the service actor to ask (and ends a pause); `service_paused_atom`
/// holds the events for the service until the next attach.
caf::actor spawn_shard(caf::local_actor* parent, shard_setup setup);

/// The shard of `key` among `shards`.
uint32_t shard_of(std::string_view key, size_t shards) noexcept;

} // namespace herald::detail
