#pragma once

// An ordering shard of a consumer, and the supervisor of its events. Private
// to the actors part; see consumer.hpp for the contract.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <spdlog/fwd.h>

#include "herald/actors/consumer.hpp"

namespace herald::detail {

/// How one attempt of a consumer's handlers ended.
struct outcome {
  bool ok = true;
  bool retryable = true;
  std::string error;
  /// "exception", "error" or "non_retryable".
  std::string error_class;
};

/// The outcome of a handler that answered `err`.
outcome failure_of(const caf::error& err);

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
  /// Entities parked at start, with the dead letter each is parked behind.
  std::vector<std::pair<std::string, uint64_t>> parked;
};

/// Spawns a shard linked to `parent`. Messages: `work_batch`;
/// `(subscribe_atom, subscription)`; `(attach_atom, caf::actor)`.
caf::actor spawn_shard(caf::local_actor* parent, shard_setup setup);

/// The shard of `key` among `shards`.
uint32_t shard_of(std::string_view key, size_t shards) noexcept;

} // namespace herald::detail
