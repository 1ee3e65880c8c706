#pragma once

// Which nodes form a consumer group, from membership (docs/architecture.md,
// "Consumer groups"): what each local consumer assigns its partitions over.
// Pure logic: no I/O, no clock reads (every call gets `now`, the monotonic
// clock), so it is tested by itself.
//
// Rules:
// - A member counts while it is `joining`, `up` or `suspect` (suspect is
//   not yet down: its partitions stay with it until it is).
// - A member that left on purpose (`leaving`: SIGTERM, a rolling restart)
//   counts for `rejoin_grace` from when this node first saw it leaving:
//   one back within it takes its partitions again, so a restart moves
//   nothing twice. A `down` member counts no more, at once.
// - Only members running a consumer of the group's name count; this node
//   always counts (it runs the consumer asking).
// - The list is sorted and holds each node once: every member computes the
//   same assignment from the same view.
//
// Thread safety: none; the node calls it under its own mutex.

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "herald/runtime/control.hpp"

namespace herald {

class group_feed {
public:
  using clock = std::chrono::steady_clock;

  /// The feed of node `self`, keeping a leaving member's partitions for
  /// `rejoin_grace` (config `groups.rejoin_grace`; not negative).
  group_feed(std::string self, std::chrono::microseconds rejoin_grace);

  /// Takes the member records of one membership view at `now`: notes when
  /// each member was first seen leaving (forgotten once it is not), and
  /// which of them are still within their grace.
  void observe(const std::vector<control::cluster_member>& records,
               clock::time_point now);

  /// The members of group `consumer` by the rules above, over the
  /// records last observed: node names, sorted, unique, `self` included.
  std::vector<std::string> members(const std::string& consumer) const;

private:
  std::string self_;
  std::chrono::microseconds grace_;
  std::vector<control::cluster_member> records_;
  std::map<std::string, clock::time_point> leaving_since_;
  std::set<std::string> in_grace_;
};

} // namespace herald
