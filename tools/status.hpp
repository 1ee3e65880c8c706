#pragma once

/// `herald status`: where a running node stands, asked through its control
/// endpoint (the control op `status`, see `herald/runtime/control.hpp`).
///
/// ```sh
/// herald status --control tcp://127.0.0.1:5701
/// herald status --config config/email_service.yaml --json
/// ```
///
/// Prints the node, its stream (head, oldest retained seq and its time),
/// per consumer its patterns, per stream it reads the offset, head, lag
/// and whether it is paused, its dead letters, and every health reason:
/// as aligned text, or with `--json` as one JSON object (the reply's
/// fields and `healthy`). Exit codes as for every herald command: 0 when
/// the node answered, whatever its health; 1 on no answer or an error
/// reply; 2 on a bad command line.

#include <functional>

#include <CLI/CLI.hpp>

namespace herald::cli {

/// The `status` subcommand once added to an app.
struct status_command {
  /// The subcommand: `*app` is true after parsing when it was chosen.
  CLI::App* app = nullptr;
  /// Asks the node, prints, and returns the exit code. Call only after a
  /// successful parse that chose `app`.
  std::function<int()> run;
};

/// Adds `status` to `app`. Its options are parsed into state `run` owns.
/// `--cluster` adds the members (as `members` shows them).
status_command add_status_command(CLI::App& app);

/// Adds `members` to `app`: the cluster as the node asked sees it (the
/// control op `members`), as a table or with `--json` as one object
/// (`control::to_json(members_reply)`). Exit codes as for `status`.
status_command add_members_command(CLI::App& app);

} // namespace herald::cli
