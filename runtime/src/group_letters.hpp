#pragma once

// The dead letters of consumer groups on one stream, kept by the stream's
// owner beside the groups' leases (docs/architecture.md, "A group's dead
// letters"). Pure logic: no I/O but through `letter_store`, so it is tested
// with a fake store.
//
// Rules:
// - A member stores a letter of partition p only under its current,
//   unexpired lease of p (the caller's `holds`): a stale one is refused and
//   nothing is stored (the partition's next holder handles the event).
//   Letters are stored before the request's commits, in one write.
// - Quota: a group's letters at this owner count their encoded bytes; a
//   letter that would take them past `quota` is refused (`quota`), and the
//   first refusal after being below calls `on_quota` (an alert); the
//   letters after a refused one in the request are refused too (a member
//   sends its letters in order: a later, smaller one must not pass). A
//   quota of 0 means none.
// - Parked entities follow the partition: a grant of p carries the keys of
//   p's letters (with each key's lowest letter id).
// - Redrive: `redrive` marks letters; each is handed, in seq order per
//   entity, to the member that holds its partition (in the reply that
//   grants or renews it) once per lease epoch. An entity whose letters do
//   not fit one reply is named in the reply's `redrive_more` until its
//   last part, and comes first in the next reply. Each is handed until it
//   is handled (`redriven`, removed) or stored again (it failed again, or
//   its entity stayed parked). A letter
//   stored again ends its entity's redrive: all the entity's letters are
//   plain letters again, redrivable in order (none is handed alone). A new
//   letter of an entity being redriven joins that redrive. A member that dies
//   with it loses nothing: the next holder gets it. An owner that restarts
//   forgets the marks: the letters are redrivable again.
// - Purge: the entities of purged letters left without any are handed to
//   their partition's holder as `unparked`.
//
// Thread safety: none; the node calls it under its groups mutex.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "herald/actors/group.hpp"
#include "herald/store/dead_letter.hpp"

namespace herald {

/// Where a stream owner keeps its groups' dead letters: the dead letters of
/// its log (store/event_log.hpp), whose errors name the data directory.
struct letter_store {
  /// Every letter of `group` of this owner's stream.
  std::function<caf::expected<std::vector<store::dead_letter>>(
    const std::string& group)>
    load;
  /// Stores `letters` in one write, filling their ids (as
  /// `event_log::add_dead_letters`).
  std::function<caf::expected<std::vector<uint64_t>>(
    std::vector<store::dead_letter>& letters)>
    add;
  /// Removes the letters `ids` (as `event_log::remove_dead_letters`).
  std::function<caf::expected<size_t>(const std::vector<uint64_t>& ids)> remove;
  /// The letter `id`, none when it is not stored.
  std::function<caf::expected<std::optional<store::dead_letter>>(uint64_t id)>
    find;
};

/// A group whose dead letters reached the quota, as `on_quota` gets it.
struct quota_reached {
  std::string group;
  std::string stream;
  /// The group's letters at the owner and their bytes.
  uint64_t letters = 0;
  uint64_t bytes = 0;
  uint64_t quota = 0;
  /// The refusal's sentence, as members get it.
  std::string reason;
};

class group_letters {
public:
  /// Whether the member asking holds partition `p` under `epoch` now.
  using holds_fn = std::function<bool(uint32_t p, uint64_t epoch)>;

  /// The owner of `stream`; `quota` bytes per group (0: none).
  group_letters(std::string stream, uint64_t quota, letter_store store,
                std::function<void(const quota_reached&)> on_quota);

  /// Stores the letters of `r` its member `holds` the partitions of (one
  /// write) and removes its `redriven` letters; returns one reply per
  /// letter, in order. A store that fails answers `failed` for each.
  std::vector<group_letter_reply> take(const lease_request& r,
                                       const holds_fn& holds);

  /// Completes `reply`, the answer to `r`: the parked entities of each
  /// granted partition, the redriven letters and unparked entities of each
  /// partition granted or renewed (at most `max_group_letters` and about
  /// `budget` bytes of letters).
  void annotate(const lease_request& r, lease_reply& reply,
                size_t budget = 256 * 1024);

  /// Marks `letters` (this stream's, as listed) to be redriven; returns
  /// the ids marked (those already marked and those of another stream are
  /// skipped). Errors as the store's.
  caf::expected<std::vector<uint64_t>>
  redrive(const std::vector<store::dead_letter>& letters);

  /// `letters` were removed (purged): forgets them; their entities left
  /// without letters are unparked at their partition's holder.
  void purged(const std::vector<store::dead_letter>& letters);

  /// Whether letter `id` is marked to be redriven.
  bool redriving(uint64_t id) const;

  /// What a group's letters take at this owner (groups read this start).
  struct usage {
    uint64_t letters = 0;
    uint64_t bytes = 0;
    /// Its last letter was refused for the quota, and none stored since.
    bool full = false;
  };
  std::map<std::string, usage> usages() const;

  uint64_t quota() const noexcept {
    return quota_;
  }

private:
  struct letter_info {
    std::string key;
    uint64_t seq = 0;
    uint64_t bytes = 0;
  };
  struct group {
    std::map<uint64_t, letter_info> letters;
    std::map<std::string, std::set<uint64_t>> by_key;
    uint64_t bytes = 0;
    bool full = false;
    /// Marked to be redriven: id → the epoch it was last handed under
    /// (0: not yet).
    std::map<uint64_t, uint64_t> redriving;
    /// Entities left without letters by a purge, to tell their holder.
    std::set<std::string> unparked;
  };

  // The group's index, read from the store on first use.
  caf::expected<group*> group_of(const std::string& name);
  void forget(group& g, uint64_t id);
  void keep(group& g, uint64_t id, const store::dead_letter& l, uint64_t bytes);

  std::string stream_;
  uint64_t quota_;
  letter_store store_;
  std::function<void(const quota_reached&)> on_quota_;
  std::map<std::string, group> groups_;
};

} // namespace herald
