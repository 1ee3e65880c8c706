#pragma once

/// The checker: judges what a run recorded (the harness' own publish
/// record and each node's history, docs/harness.md), not counters.
///
/// Per consumer (a consumer name on one node instance):
/// - **lost**: acknowledged events its subscription selects that it
///   neither handled nor dead-lettered. Always a failure.
/// - **duplicates**: handling records beyond the first of an event
///   (at-least-once: counted; a failure only when the scenario says).
/// - **order inversions per (stream, key, type)**: an event handled for
///   the first time after a later event of its stream, key and type was
///   handled. A redelivery (an event handled before, again) is a
///   duplicate, not an inversion. Always a failure.
/// - **order inversions per (stream, key)** across types: the same over
///   all the types it takes; reported (a failure only when the scenario
///   says: the documented cross-type limit).
/// - **dead letters** must be the poison events (keys in the node's
///   `test_hooks.fail_keys`): a poison event handled, or another event
///   dead-lettered, is a failure.
/// - **offsets passing unhandled events**: an offset record whose offset
///   covers a selected acknowledged event of its stream not recorded
///   before it (design invariant 6). Always a failure.
///
/// A publish whose acknowledgement timed out has an unknown outcome
/// (Jepsen's `:info`): it is never lost; if a consumer handled it, it is
/// counted as `unknown_delivered`. A history's last line cut short by a
/// kill is skipped and counted (`truncated`): its event was not reported
/// done, so it was handled again after the restart.
///
/// Thread safety: pure functions over plain values.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "herald/core/event.hpp"
#include "scenario.hpp"

namespace herald::harness {

/// One event the harness asked a node to publish, as `publishes.jsonl`
/// records it.
struct published {
  enum class status { acked, unknown, refused };
  status outcome = status::acked;
  std::string type;
  std::string key;
  /// Set when acked.
  std::string id;
  std::string stream;
  uint64_t seq = 0;
};

/// One record of a node's history.
struct history_record {
  enum class kind { start, handling, offset };
  kind what = kind::handling;
  std::string node;
  std::string consumer;
  uint64_t incarnation = 0;
  /// handling: the event.
  std::string id;
  std::string stream;
  uint64_t seq = 0;
  std::string key;
  std::string type;
  uint64_t attempt = 0;
  /// handling: handled (true) or dead-lettered (false).
  bool handled = true;
  /// offset: the offset committed.
  uint64_t offset = 0;
  /// start: the node's fail keys.
  std::vector<std::string> fail_keys;
};

/// A node's history as read.
struct history {
  std::vector<history_record> records;
  /// A last line without its newline (cut short by a kill).
  size_t truncated = 0;
  /// Lines that are no record of a known version, with their numbers.
  std::vector<std::string> malformed;
};

/// Parses a history file's text (JSON Lines, `"v": 1`).
history parse_history(std::string_view text, const std::string& file);

/// Parses `publishes.jsonl`. Fails with `errc::decode_error` naming the
/// file and the line.
caf::expected<std::vector<published>> parse_publishes(std::string_view text,
                                                      const std::string& file);

/// A consumer of a run: its node instance, name and subscription.
struct consumer_info {
  std::string node;
  std::string consumer;
  std::vector<std::string> patterns;
};

/// The judgement of one consumer.
struct consumer_verdict {
  std::string node;
  std::string consumer;
  uint64_t expected = 0;
  uint64_t handled = 0;
  uint64_t dead_lettered = 0;
  uint64_t lost = 0;
  uint64_t duplicates = 0;
  uint64_t inversions = 0;
  uint64_t cross_type_inversions = 0;
  uint64_t poison_handled = 0;
  uint64_t unexpected_dead_letters = 0;
  uint64_t offset_violations = 0;
  uint64_t unknown_delivered = 0;
  /// A few examples of what failed, for the reader.
  std::vector<std::string> examples;
  bool ok = true;
};

struct verdict {
  std::vector<consumer_verdict> consumers;
  uint64_t acked = 0;
  uint64_t unknown = 0;
  uint64_t refused = 0;
  uint64_t truncated = 0;
  /// What the run saw of the cluster (`cluster.json`: membership
  /// expectations and join/leave cycles), null when it watched nothing.
  payload cluster;
  /// Why the run failed, one sentence each; empty when it passed.
  std::vector<std::string> failures;
  bool ok() const noexcept {
    return failures.empty();
  }
};

/// Judges a run: `histories` by node instance name.
verdict judge(const std::vector<published>& publishes,
              const std::vector<std::pair<std::string, history>>& histories,
              const std::vector<consumer_info>& consumers,
              const checks_spec& checks);

/// Judges the run in `dir` (`publishes.jsonl`, `history/*.jsonl`,
/// `consumers.json`, `run.json`), and takes the cluster's results from
/// `cluster.json` when there is one (observed during the run: they cannot
/// be judged again, only read). Fails with `errc::io_error` or
/// `errc::decode_error` naming the file that is missing or malformed.
caf::expected<verdict> check_dir(const std::string& dir);

/// The verdict as a table, one line per consumer, then the totals and the
/// failures.
std::vector<std::string> table(const verdict& v);

/// The verdict as `result.json` holds it.
payload to_json(const verdict& v);

} // namespace herald::harness
