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
