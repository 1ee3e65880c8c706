#pragma once

/// The schedule of a run, made from the scenario and the seed alone: the
/// entity keys (poison, slow, the rest), every event to publish and when,
/// and every fault and when. The same seed gives the same schedule.
///
/// Thread safety: plain values and pure functions.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "herald/core/catalog.hpp"
#include "scenario.hpp"

namespace herald::harness {

/// One instance of a node of the scenario.
struct instance {
  /// `NAME` or `NAME-I`.
  std::string name;
  /// Its node's index in `scenario::nodes`.
  size_t node = 0;
  /// Its number among its node's instances, from 1 (`{{index}}`).
  int index = 1;
};

/// The instances of `sc`, in node order.
std::vector<instance> instances_of(const scenario& sc);

/// The instances `target` names among `all` (those of `sc`): itself when
/// it names an instance, else every instance of its node; none when it
/// names neither.
std::vector<std::string> instances_named(const scenario& sc,
                                         const std::vector<instance>& all,
                                         const std::string& target);

/// One fault as scheduled.
struct action {
  /// From the workload's start.
  milliseconds at{0};
  fault_kind kind = fault_kind::kill;
  /// The instance it hits.
  std::string target;
  /// Until it is healed (restart, SIGCONT, slow keys restored).
  milliseconds hold{0};
  /// slow: the wait per handling, and the keys.
  milliseconds delay{0};
  std::vector<std::string> keys;
  /// partition: the instances cut from the others, and whether only what
  /// the others send them is dropped.
  std::vector<std::string> group;
  bool one_way = false;
  /// clock: the jump of the target's wall clock.
  milliseconds jump{0};
  /// hooks, run: the fault as the scenario gives it (its keys, its
  /// command and expectations). hooks: `group` holds every instance it
  /// sets.
  const fault_spec* spec_of = nullptr;
  /// cycle: stops and starts, one every `period`; the wait for the other
  /// nodes' descriptors after the last, and the files they may keep more.
  int times = 0;
  milliseconds period{0};
  milliseconds fds_within{0};
  int fd_slack = 0;
  /// `timed` (from `faults`) or `random`.
  std::string origin;
  /// A timed fault's index in `scenario::faults`; -1 for a random one.
  int spec = -1;
};

/// One event to publish.
struct planned_event {
  milliseconds at{0};
  std::string type;
  /// The entity's index in `plan::keys`.
  size_t entity = 0;
  payload data;
};

struct plan {
  uint64_t seed = 0;
  /// The entity keys, one per entity.
  std::vector<std::string> keys;
  /// Those whose handling fails, and those whose handling is slow.
  std::vector<std::string> poison_keys;
  std::vector<std::string> slow_keys;
  std::vector<planned_event> events;
  /// Faults by time.
  std::vector<action> faults;

  /// A digest of the whole plan (FNV-1a of its text): equal plans, equal
  /// digests; printed so that two runs can be compared at a glance.
  uint64_t digest() const;
};

/// Makes the plan of `sc` for `seed`, with payloads valid under `cat`.
/// Fails with `errc::invalid_config` naming the scenario's file when a
/// workload type is not in the catalog, is not produced by the service of
/// `workload.publish_to`'s config, or has a key field whose type cannot
/// be generated as a key (string, uuid or email).
caf::expected<plan> make_plan(const scenario& sc, const catalog& cat,
                              uint64_t seed);

/// The schedule as printed before a run: one line per fault, then the
/// workload's size, keys and digest.
std::vector<std::string> describe(const plan& p, const scenario& sc);

} // namespace herald::harness
