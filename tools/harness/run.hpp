#pragma once

/// `herald harness run`: launch a scenario's nodes, wait until each is
/// ready, drive the workload and the faults, heal, wait until every
/// consumer settled (bounded), stop everything, collect, and judge.
///
/// Prints the schedule first, a progress line every second, each fault
/// when it was applied and healed, then the checker's table and result.
///
/// Thread safety: one run per process at a time (children are launched
/// from the calling thread, which must outlive them: PR_SET_PDEATHSIG).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "scenario.hpp"

namespace herald::harness {

struct run_options {
  /// The scenario file.
  std::string scenario;
  /// The seed; default: drawn at random and printed.
  std::optional<uint64_t> seed;
  /// Where the run's files go; default: `harness-runs/NAME-seedN`.
  std::string out;
  /// Overrides the workload's duration, in seconds.
  std::optional<double> duration;
  /// Folders searched for the node commands before the defaults (the
  /// `herald` executable's folder, its `../examples` and `../tests`, PATH).
  std::vector<std::string> path;
  /// The `herald` executable's own path (argv[0] resolved).
  std::string self;
  /// Overrides the scenario's `mode`. netns needs root.
  std::optional<run_mode> mode;
};

/// Runs; returns the exit code: 0 when every check held, 1 when one failed
/// or the run could not be made (the reason on stderr).
int run(const run_options& opts);

/// `herald harness check DIR`: judges a finished run again; 0 when every
/// check held.
int check(const std::string& dir);

/// `herald harness clean [DIR...]`: kills what is left of killed runs
/// under each DIR (default `harness-runs`), removes the network
/// namespaces, links and mounts their records name (and those of every
/// record in `/run/herald-harness` whose harness is gone), and removes
/// their nodes' data directories; with `all`, removes the runs' folders.
/// Returns 0, or 1 when something could not be removed.
int clean(const std::vector<std::string>& dirs, bool all);

} // namespace herald::harness
