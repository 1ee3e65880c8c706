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
///   dead-lettered, is a failure. With `checks.poison: redriven`, a
///   poison event dead-lettered must later be handled exactly once after
///   its last dead letter (a redrive once the handler was fixed): never
///   is `poison_not_redriven`, more than once `redrive_duplicates`, both
///   failures; a poison event's first handling must follow its type's
///   earlier events (an inversion otherwise); one handled without a dead
///   letter passes only when its handling began after a `hooks` fault
///   that cleared the fail keys was applied (the handler fixed).
/// - **offsets passing unhandled events**: an offset record whose offset
///   covers a selected acknowledged event of its stream not recorded
///   before it (design invariant 6). Always a failure.
///
/// Per consumer group (a consumer name that runs on several node
/// instances: its members), judged as one consumer over every member's
/// records, merged by handling time (`start_us`):
/// - **lost**, **duplicates** (across members), **order inversions** per
///   (stream, key, type) by handling time, dead letters, and offsets (an
///   offset committed at a time `time_us` must pass only events some
///   member recorded as ending, `end_us`, by then), as above;
/// - **lease overlaps**: per (stream, partition), the records handled or
///   dead-lettered under lease epoch e1 must all end before the first
///   record under any later epoch e2 starts (the lease fences the
///   partition: issue 15). Always a failure; so is one epoch of one
///   partition used by two members;
/// - **discarded**: results that came after their lease ended (not
///   committed; the next holder handles the event again): counted, and
///   never taken for handling;
/// - **takeover**: per kill of a member, for each (stream, partition) it
///   held (its epoch was the newest recorded before the kill), the time
///   from the kill to the first record under a newer epoch (by another
///   member, or by the killed one restarted). A failure only above the
///   scenario's `checks.takeover.within`;
/// - **duplicates outside a handoff window**: a duplicate is in a handoff
///   window only when it is handled under a newer lease epoch of its
///   (stream, partition) than its previous handling, and no offset of
///   its partition covering it was recorded before it began (the new
///   holder replayed what the old one had not committed). One under the
///   same epoch, an older one or none is outside any window, and always
///   a failure; a redrive (handled under no lease after a dead letter)
///   is counted apart. The largest window (events handled again per
///   handoff) is reported;
/// - **moves**: changes of the member holding a (stream, partition),
///   from the records in handling-time order; per restart (a `cycle`
///   fault's stop of a member, to the next one or the end), the most
///   moves of one partition, a failure above the scenario's
///   `checks.moves.per_restart`.
/// A member's own verdict judges its own records (duplicates, inversions,
/// dead letters), never loss or offsets: the other members handled the
/// rest. These checks compare timestamps of several processes: they
/// assume one wall clock (one machine; no `clock` fault on a member).
///
/// An offset record with a `partition` is a group's offset of one
/// partition: it covers only the events of that partition
/// (`herald::partition_of(key, partitions)`), per consumer and per group.
///
/// A publish whose acknowledgement timed out has an unknown outcome
/// (Jepsen's `:info`): it is never lost; if a consumer handled it, it is
/// counted as `unknown_delivered`. A history's last line cut short by a
/// kill is skipped and counted (`truncated`): its event was not reported
/// done, so it was handled again after the restart.
///
/// Thread safety: pure functions over plain values.

#include <cstdint>
#include <optional>
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
  /// When the harness sent its publish request, microseconds since the
  /// epoch (before the node stamped it).
  uint64_t sent_us = 0;
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
  /// How a handling record ended: `handled`, `dead_lettered`, or
  /// `discarded` (the handler ran, but its result came after the member's
  /// lease on the partition ended: not committed).
  enum class ending { handled, dead_lettered, discarded };
  ending result = ending::handled;
  /// handling: its attempt's start and end, microseconds since the epoch
  /// (0 when no attempt was made).
  uint64_t start_us = 0;
  uint64_t end_us = 0;
  /// handling, offset: the event's (the offset's) partition in its group,
  /// and the lease epoch; none outside a group (and, for the epoch, for a
  /// redriven dead letter).
  std::optional<uint32_t> partition;
  std::optional<uint64_t> lease_epoch;
  /// offset: the group's partition count, when `partition` is set.
  uint32_t partitions = 0;
  /// offset: the offset committed, and when (microseconds since the
  /// epoch).
  uint64_t offset = 0;
  uint64_t time_us = 0;
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

/// A fault the run applied, as `faults.jsonl` records it: what the
/// takeover check measures from (an `applied` line of a kill or a wipe),
/// when the handler was fixed (an `applied` line of a `hooks` fault that
/// cleared the fail keys), or
/// one restart of a `cycle` fault, what the moves are attributed to (a
/// `cycle` line).
struct fault_record {
  /// Its index in the scenario's `faults` (-1: a random one).
  int fault = -1;
  std::string kind;
  /// The instance it hit.
  std::string target;
  /// When it was applied (a cycle: when its stop began), microseconds
  /// since the epoch.
  uint64_t applied_us = 0;
  /// A `cycle` line: which cycle of its fault, from 1. 0 for an
  /// `applied` line.
  int cycle = 0;
  /// A `ran` line of a `run` fault with `rewinds: true` whose command
  /// ended as expected: when it ended, and the first `{{time:..}}` it
  /// was given (every event published from then on must be handled again
  /// after `done_us`), if any.
  bool rewinds = false;
  uint64_t done_us = 0;
  /// An `applied` line of a `hooks` fault that cleared the fail keys
  /// (`fail_keys: none`): the handler fixed from then on.
  bool fixes = false;
  std::optional<uint64_t> rewind_to_us{};
};

/// Parses `faults.jsonl` (the `applied` and `cycle` lines, and the `ran`
/// lines of rewinding commands that ended as expected). Fails with
/// `errc::decode_error` naming the file and the line.
caf::expected<std::vector<fault_record>> parse_faults(std::string_view text,
                                                      const std::string& file);

/// The `run` faults of `faults.jsonl` whose command did not end as the
/// scenario expected (its `ran` lines with `ok` false): one sentence
/// each, naming the command, its exit status and its output files.
std::vector<std::string> failed_commands(std::string_view text,
                                         const std::string& file);

/// The judgement of one consumer.
struct consumer_verdict {
  std::string node;
  std::string consumer;
  /// The group it is a member of (its consumer name), empty when the
  /// consumer runs on this node only. A member's `expected` and `lost`
  /// are 0: loss and offsets are judged per group.
  std::string group;
  /// Results discarded after their lease ended.
  uint64_t discarded = 0;
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
  /// `checks.poison: redriven`: poison events dead-lettered and never
  /// handled after their last dead letter, and those handled more than
  /// once after it. Not judged for a group's member.
  uint64_t poison_not_redriven = 0;
  uint64_t redrive_duplicates = 0;
  /// After a rewinding command (`rewinds: true`, with a time): events
  /// published from that time on that were not handled again after it.
  /// Not judged for a group's member.
  uint64_t not_replayed = 0;
  /// A few examples of what failed, for the reader.
  std::vector<std::string> examples;
  bool ok = true;
};

/// The takeover of one kill of a group member: per (stream, partition)
/// it held, the time from the kill to the first record under a newer
/// lease epoch.
struct takeover_verdict {
  /// The kill: its index in `faults`, its target and when.
  int fault = -1;
  std::string target;
  uint64_t kill_us = 0;
  /// Partitions it held at the kill (with a record), and of those, the
  /// ones handled again under a newer epoch (the others got no event
  /// after the kill).
  uint64_t held = 0;
  uint64_t taken = 0;
  /// The longest takeover, in milliseconds (-1: none measured), and
  /// which (stream, partition, by whom).
  int64_t max_ms = -1;
  std::string slowest;
  /// The bound, when the scenario sets one (`checks.takeover.within`).
  std::optional<int64_t> within_ms;
  bool ok = true;
};

/// The moves of a group's partitions in one restart's window: from a
/// `cycle` fault's stop of a member until the next such stop (of any
/// member), or the end.
struct restart_verdict {
  /// The restart: its fault's index in `faults`, which cycle (from 1),
  /// the member restarted, and when its stop began.
  int fault = -1;
  int cycle = 1;
  std::string target;
  uint64_t stop_us = 0;
  /// The window's end (the next restart's stop); 0: the end of the run.
  uint64_t until_us = 0;
  /// Moves of every partition in the window, and the most of one
  /// partition, with which (stream, partition and its holders in turn).
  uint64_t moves = 0;
  uint64_t most = 0;
  std::string busiest;
  /// The bound, when the scenario sets one (`checks.moves.per_restart`).
  std::optional<uint64_t> per_restart;
  bool ok = true;
};

/// The judgement of one consumer group, over its members' records.
struct group_verdict {
  std::string consumer;
  /// Its members' node instances.
  std::vector<std::string> members;
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
  uint64_t poison_not_redriven = 0;
  uint64_t redrive_duplicates = 0;
  uint64_t not_replayed = 0;
  /// Records of events handled before, begun after a rewinding command
  /// ended: replays it asked for, in no handoff window and no failure.
  uint64_t replayed = 0;
  uint64_t discarded = 0;
  /// (stream, partition) lease epochs whose first record started before
  /// an earlier epoch's last record ended.
  uint64_t lease_overlaps = 0;
  /// (stream, partition, epoch) used by more than one member.
  uint64_t shared_epochs = 0;
  /// (stream, partition) pairs and lease epochs seen in the records.
  uint64_t partitions = 0;
  uint64_t epochs = 0;
  /// Duplicates outside any handoff window: an event handled again under
  /// the same lease epoch as its previous handling, an older one, or none
  /// (not a redrive), or handled again after an offset of its partition
  /// that covers it was committed. Always a failure.
  uint64_t duplicates_outside_window = 0;
  /// Redrives: handlings of an event whose previous record is a dead
  /// letter (`herald dlq redrive`: under no lease, or under the lease of
  /// the partition's holder it was handed to), and records under no
  /// lease after a dead letter. Duplicates, but in no window and never a
  /// failure.
  uint64_t redriven = 0;
  /// The handoff (stream, partition, old epoch -> new epoch) whose new
  /// holder handled the most events again, how many, and which it was;
  /// 0 and empty when no event was handled again under a newer epoch.
  uint64_t largest_window = 0;
  std::string largest_window_at;
  /// Changes of the member holding a (stream, partition), from the
  /// records in handling-time order (consecutive lease epochs held by
  /// different members), over the whole run.
  uint64_t moves = 0;
  std::vector<restart_verdict> restarts;
  std::vector<takeover_verdict> takeovers;
  std::vector<std::string> examples;
  bool ok = true;
};

struct verdict {
  std::vector<consumer_verdict> consumers;
  std::vector<group_verdict> groups;
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

/// Judges a run: `histories` by node instance name; `faults` are the
/// faults applied (for the takeover of killed group members) and the
/// restarts of `cycle` faults (for the moves per restart).
verdict judge(const std::vector<published>& publishes,
              const std::vector<std::pair<std::string, history>>& histories,
              const std::vector<consumer_info>& consumers,
              const checks_spec& checks,
              const std::vector<fault_record>& faults = {});

/// Judges the run in `dir` (`publishes.jsonl`, `history/*.jsonl`,
/// `consumers.json`, `run.json`, `faults.jsonl` when there is one), and takes
/// the cluster's results from `cluster.json` when there is one (observed during
/// the run: they cannot be judged again, only read). Fails with
/// `errc::io_error` or `errc::decode_error` naming the file that is missing or
/// malformed.
caf::expected<verdict> check_dir(const std::string& dir);

/// The verdict as a table, one line per consumer, one per group, then the
/// totals and the failures.
std::vector<std::string> table(const verdict& v);

/// The verdict as `result.json` holds it.
payload to_json(const verdict& v);

} // namespace herald::harness
