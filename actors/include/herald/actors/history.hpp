#pragma once

/// What a consumer reports of its handling for a history (the harness'
/// record, docs/harness.md), and the test hooks a service's behavior can
/// be put behind.
///
/// Thread safety: a `handling_history` is called from every shard of every
/// consumer of a node at once (CAF's scheduler threads); implementations
/// must be thread-safe.

#include <cstdint>
#include <functional>
#include <string_view>

#include <caf/behavior.hpp>
#include <caf/error.hpp>

#include "herald/core/event.hpp"

namespace herald {

/// How the handling of one event ended.
enum class handling_outcome {
  /// Every handler succeeded (at attempt `attempt`).
  handled,
  /// Sent to the dead-letter actor (attempts spent, non-retryable, or
  /// parked behind an earlier dead letter).
  dead_lettered,
  /// The handler ran, but its result came after the member's lease on
  /// the event's partition ended (or a margin before it could expire): it
  /// was discarded, not committed; the partition's next holder handles
  /// the event again.
  discarded,
};

/// One finished event of a consumer.
struct handling {
  std::string_view consumer;
  const event& ev;
  handling_outcome outcome;
  /// The attempt that ended it, from 1; 0 for an event dead-lettered
  /// unhandled behind a parked entity.
  uint64_t attempt = 1;
  /// When that attempt began and ended, microseconds since the epoch
  /// (the system clock); both 0 when no attempt was made.
  int64_t start_us = 0;
  int64_t end_us = 0;
  /// The event's partition in its consumer group, and the epoch of the
  /// lease it was handled under (0 for a redriven dead letter).
  uint32_t partition = 0;
  uint64_t epoch = 0;
};

/// Receives every event a consumer finishes, before the consumer counts it
/// done (before its offset can pass it): a history that survives a kill of
/// the process shows every event whose offset was committed.
class handling_history {
public:
  virtual ~handling_history() = default;

  /// Records `h`. Must not throw; reports its own failures.
  virtual void finished(const handling& h) noexcept = 0;
};

/// A check run before a service's behavior gets an event: returns an error
/// to fail the attempt with it, or none to hand the event on (after any
/// wait it chose to make).
using before_handling = std::function<caf::error(const event&)>;

/// The behavior `inner` behind `before`: an event goes to `inner` only when
/// `before` returns none; what `inner` answers (a value, an error, a
/// response promise) is the answer. Other messages go to `inner` as they
/// are. Used for the node's test hooks on service actors.
caf::behavior behind(caf::behavior inner, before_handling before);

} // namespace herald
