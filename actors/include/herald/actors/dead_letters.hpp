#pragma once

/// The dead-letter actor and the alert actor of a node.
///
/// Shards send the dead-letter actor every event whose attempts are
/// exhausted (or that failed for good, or sits behind a parked entity). It
/// stores them durably, a batch per write: the letters that queued while
/// the last write ran form the next one. Only once stored does it report the
/// events finished to their consumer, so an offset never passes an event
/// that is neither handled nor a stored dead letter. Then it tells the alert
/// actor, which raises an alert when a consumer's dead letters within a
/// window reach its rule's threshold, and re-arms only once the window falls
/// below the threshold again (no alert storm).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <spdlog/fwd.h>

#include "herald/actors/messages.hpp"
#include "herald/core/config.hpp"

namespace herald {

/// What the dead-letter actor stores with.
struct dead_letter_setup {
  /// Stores letters durably, filling their ids. Required.
  std::function<caf::expected<std::vector<uint64_t>>(
    std::vector<store::dead_letter>&)>
    add;
  /// Removes letters (redriven ones, once handled). Required.
  std::function<caf::expected<size_t>(const std::vector<uint64_t>&)> remove;
  /// Called with the ids of redriven letters whose redrive is over:
  /// handled and removed, or failed again and stored under the same id
  /// with their new attempts. Optional.
  std::function<void(const std::vector<uint64_t>&)> redrive_finished;
  /// Receives `(alert_atom, consumer, count)` per stored letter. Optional.
  caf::actor alerts;
  /// How long to wait before writing again after a failed write (e.g. a
  /// full disk). Default: 1 s.
  std::chrono::milliseconds retry_after{1000};
  /// Where the actor logs: the node's logger. Default: null, spdlog's
  /// default logger as of the spawn.
  std::shared_ptr<spdlog::logger> log;
};

/// Spawns the dead-letter actor. Messages: `(dead_letter_atom,
/// dead_letter_request)`; `(redrive_atom, uint64_t id)`: the redriven
/// letter `id` was handled, remove it.
caf::actor spawn_dead_letters(caf::actor_system& sys, dead_letter_setup setup);

/// Counts the dead letter `l` stored for `req` in the consumer's stats
/// (`req.stats`: dead-lettered, per type, live, redriven) and logs it at
/// info ("stored as a dead letter", with the event, the letter's id and
/// `owner`, the node that stores it; empty: `l.node`). Thread-safe as the
/// stats and the logger are.
void note_stored(spdlog::logger& log, const dead_letter_request& req,
                 const store::dead_letter& l, std::string_view owner);

/// An alert, as raised.
struct raised_alert {
  std::string consumer;
  /// Dead letters within the window when it was raised.
  uint64_t count = 0;
  alert_rule rule;
  /// When, microseconds since the epoch.
  int64_t time_us = 0;
};

/// Spawns the alert actor with the rules of `consumers` (those with a
/// threshold). `raise` is called in the actor for each alert raised.
/// Windows run on the monotonic clock. Messages: `(alert_atom,
/// std::string consumer)`: one dead letter of that consumer.
caf::actor spawn_alerts(caf::actor_system& sys,
                        std::vector<consumer_config> consumers,
                        std::function<void(const raised_alert&)> raise);

} // namespace herald
