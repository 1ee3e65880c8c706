#pragma once

/// `herald group`: describe a consumer group across the cluster, and set
/// its committed offsets while it has no live member.
///
/// ```sh
/// herald group describe EmailService --control tcp://127.0.0.1:5701
/// herald group reset-offsets EmailService --to-time 2024-05-01T12:00:00Z
///   --control tcp://127.0.0.1:5701 --dry-run
/// ```
///
/// Each command asks the node it connects to for the cluster view
/// (`members`), then every member that is not down (each the owner of its
/// stream) `group.describe` or `group.reset` (control.hpp), at most
/// `--timeout` seconds each, in parallel.
///
/// Exit codes as for every herald command: 0 success; 1 runtime error (no
/// answer from the node asked or from some owner, an owner's refusal, an
/// unknown group or stream, live members for a reset; `herald: <message>`
/// on stderr, what the others answered still printed); 2 bad command line
/// (no or two `--to-*`, a time that is none).

#include <functional>

#include <CLI/CLI.hpp>

namespace herald::cli {

/// The `group` subcommand once added to an app.
struct group_command {
  /// The subcommand: `*app` is true after parsing when it was chosen.
  CLI::App* app = nullptr;
  /// Runs the chosen `group` command and returns the exit code. Call only
  /// after a successful parse that chose `app`.
  std::function<int()> run;
};

/// Adds `group` with its commands `describe` and `reset-offsets` to `app`.
group_command add_group_commands(CLI::App& app);

} // namespace herald::cli
