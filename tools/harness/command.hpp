#pragma once

/// `herald harness`: run a scenario (launch nodes, drive a workload, inject
/// faults, judge the histories), judge a finished run again, clean up
/// after killed runs. See docs/harness.md.
///
/// ```sh
/// herald harness run harness/scenarios/consumer-kill.yaml --seed 7
/// herald harness check harness-runs/consumer-kill-seed7
/// herald harness clean
/// ```

#include <functional>

#include <CLI/CLI.hpp>

namespace herald::cli {

/// The `harness` subcommand once added to an app.
struct harness_command {
  /// The subcommand: `*app` is true after parsing when it was chosen.
  CLI::App* app = nullptr;
  /// Runs the chosen harness command and returns its exit code. Call only
  /// after a successful parse that chose `app`.
  std::function<int()> run;
};

/// Adds `harness` (with `run`, `check`, `clean`) to `app`; `argv0` is the
/// `herald` executable's path, near which the node commands are looked up.
harness_command add_harness_command(CLI::App& app, std::string argv0);

} // namespace herald::cli
