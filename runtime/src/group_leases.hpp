#pragma once

// The leases and committed offsets of consumer groups on one stream, kept
// by the stream's owner (docs/architecture.md, "Consumer groups"). Pure
// logic: no I/O but through `group_store`, no clock reads (every call gets
// `now`, the monotonic clock), so it is tested with a fake clock.
//
// Rules (after Kafka's group coordinator and Chubby/Kleppmann's fencing
// tokens):
// - A lease on (group, partition) is granted to one member at a time, for
//   `ttl`; it is refused while another member holds an unexpired one.
//   The same member asking again while it holds one gets a new epoch (a
//   restarted member fences its old self).
// - Epochs: `incarnation << 32 | n`, n counting grants of this partition
//   since this start from 1. The owner's incarnation is raised at every
//   start, so an epoch of an earlier start is always lower, and stale.
// - `renew` and `release` must name the current epoch of a lease that has
//   not expired; anything else is `stale` and changes nothing (offsets
//   included). A renewal extends the lease to `now + ttl`.
// - Offsets only move forward (a lower one is not an error; it is kept as
//   is). They are stored through `group_store` before the reply.
// - A `standby` entry is granted only when nobody has held the partition
//   for at least `ttl` (since its last lease expired or was released, or
//   since this start when it had none). An `acquire` refused marks the
//   partition wanted, told to the holder on its next reply (`wanted`).
// - After a restart (`restarted`), a group with members on other nodes
//   (`group_store::remote`) gets no grant for one `ttl` after `started`:
//   their leases from before may still run. Refused with a reason naming
//   when grants resume. A group only ever held by `self` is not held back.
// - `set_offsets` (an operator's reset) sets every partition's offset of
//   a group, lower or higher, refused while any of its leases is
//   unexpired (or held back after a restart); it marks the group so that
//   a member's `initial` never replaces offsets set so, a 0 included.
// - `partitions`: the first grant of a group fixes it while the group has
//   unexpired leases; a request with another number is refused (every
//   entry) naming both numbers. With no unexpired lease a new number is
//   taken: the committed offsets of the new partitions start at the lowest
//   offset of the old ones (duplicates, never loss).
//
// Thread safety: none; the node calls it under its own mutex.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "herald/actors/group.hpp"

namespace herald {

/// Where a stream owner keeps its groups' durable state. Each call is one
/// small RocksDB read or write (store/event_log's offsets); failures are
/// errors naming what failed.
struct group_store {
  /// The committed offset of (group, partition); 0 when none.
  std::function<caf::expected<uint64_t>(const std::string& group,
                                        uint32_t partition)>
    load_offset;
  /// Stores the committed offsets of `group`, each `(partition, offset)`,
  /// in one write: all or none (a request's commits wait behind the log's
  /// synced commit groups once, not once per partition).
  std::function<caf::error(
    const std::string& group,
    const std::vector<std::pair<uint32_t, uint64_t>>& offsets)>
    store_offsets;
  /// Whether a member on another node ever held a lease of `group` (kept
  /// across restarts).
  std::function<caf::expected<bool>(const std::string& group)> remote;
  /// Notes, durably, that a member on another node holds a lease of
  /// `group` (called once per group and start, before its first such
  /// grant is answered).
  std::function<caf::error(const std::string& group)> mark_remote;
  /// The group's partition count as last fixed; 0 when none.
  std::function<caf::expected<uint32_t>(const std::string& group)> partitions;
  std::function<caf::error(const std::string& group, uint32_t partitions)>
    store_partitions;
  /// Whether an operator set the offsets of `group` (`set_offsets`; kept
  /// across restarts): a member's `initial` is not taken then.
  std::function<caf::expected<bool>(const std::string& group)> offsets_set;
  /// Stores the offsets of `group` as `store_offsets` does and, in the same
  /// write, notes that an operator set them.
  std::function<caf::error(
    const std::string& group,
    const std::vector<std::pair<uint32_t, uint64_t>>& offsets)>
    set_offsets;
};

/// One lease as `describe` shows it.
struct lease_view {
  uint32_t partition = 0;
  /// Empty when nobody holds it.
  std::string holder;
  uint64_t epoch = 0;
  /// Milliseconds until it expires; 0 when nobody holds it.
  uint64_t expires_in_ms = 0;
  uint64_t offset = 0;
};

/// One partition's committed offset before and after `set_offsets`.
struct offset_change {
  uint32_t partition = 0;
  uint64_t from = 0;
  uint64_t to = 0;
};

class group_leases {
public:
  using clock = std::chrono::steady_clock;

  /// The owner of `stream`, node `self`, at `incarnation` (>= 1), granting
  /// leases of `ttl`. `restarted`: the node ran before on this data dir
  /// (its incarnation was raised from an earlier one), so leases it
  /// granted then may still run.
  group_leases(std::string stream, std::string self, uint64_t incarnation,
               std::chrono::milliseconds ttl, bool restarted,
               clock::time_point started, group_store store);

  /// Answers `r` at `now`: one entry reply per entry, in order, and the
  /// group's orphans. A request for another stream, or a failing store,
  /// is answered with `error` set and no entries.
  lease_reply serve(const lease_request& r, clock::time_point now);

  /// The leases of `group` (every partition that has or had a lease, or a
  /// committed offset read this start), by partition.
  std::vector<lease_view> describe(const std::string& group,
                                   clock::time_point now) const;

  /// Whether `member` holds partition `partition` of `group` under `epoch`
  /// at `now`: its current lease, unexpired.
  bool holds(const std::string& group, const std::string& member,
             uint32_t partition, uint64_t epoch, clock::time_point now) const;

  /// The groups with a lease or an offset read this start.
  std::vector<std::string> groups() const;

  /// Every partition of `group` (0 to its partition count - 1, ascending)
  /// with its lease at `now` and its committed offset, read from the store
  /// when not read yet this start. Nothing when this owner keeps no state
  /// of the group (no partition count stored: no member ever held one of
  /// its leases here). Fails with `errc::io_error` when the store fails.
  caf::expected<std::optional<std::vector<lease_view>>>
  inspect(const std::string& group, clock::time_point now);

  /// Sets the committed offset of every partition of `group` to `offset`
  /// (lower or higher than before), stored in one write that also marks
  /// the offsets as set (see `group_store::set_offsets`), and returns each
  /// partition's offset before and after; with `dry_run` only returns
  /// them. Nothing when this owner keeps no state of the group. Refused
  /// with `errc::invalid_argument` naming the holders and partitions while
  /// any lease of the group is unexpired at `now`, or naming when to try
  /// again while grants are held back after a restart (leases of before
  /// may still run); with `errc::io_error` when the store fails (nothing
  /// changed then).
  caf::expected<std::optional<std::vector<offset_change>>>
  set_offsets(const std::string& group, uint64_t offset, bool dry_run,
              clock::time_point now);

private:
  struct lease {
    std::string holder;
    uint64_t epoch = 0;
    clock::time_point expires{};
    /// When the partition was last held (released, or its lease expired);
    /// the start when never.
    clock::time_point free_since{};
    uint64_t grants = 0;
    std::optional<uint64_t> offset;
    bool wanted = false;
  };
  struct group {
    uint32_t partitions = 0;
    bool remote = false;
    bool remote_known = false;
    /// Whether an operator set its offsets (`group_store::offsets_set`);
    /// read once, when a member's `initial` could be taken.
    bool set = false;
    bool set_known = false;
    std::map<uint32_t, lease> leases;
  };

  // The lease entry of `partition` of group `name`, its committed offset
  // read (or set to `initial` when it has none); an error when the store
  // fails.
  caf::expected<lease*> lease_of(const std::string& name, group& g,
                                 uint32_t partition, uint64_t initial);
  // Takes `partitions` as the group's new count: every new partition's
  // offset is the lowest of the old ones, stored.
  caf::error repartition(const std::string& name, group& g,
                         uint32_t partitions);
  // The group `name`, its partition count read from the store when it was
  // not loaded; nothing when it has none (unknown here).
  caf::expected<group*> loaded(const std::string& name);
  // Appends the group's partitions nobody has held for at least `ttl_`.
  void orphans(const group& g, clock::time_point now,
               std::vector<uint32_t>& out) const;

  std::string stream_;
  std::string self_;
  uint64_t incarnation_;
  std::chrono::milliseconds ttl_;
  bool restarted_;
  clock::time_point started_;
  group_store store_;
  std::map<std::string, group> groups_;
};

} // namespace herald
