#pragma once

/// `herald dlq`: list, show, redrive and purge the dead letters of a
/// running node through its control endpoint.
///
/// ```sh
/// herald dlq list --control tcp://127.0.0.1:5701 --consumer EmailService
/// herald dlq show --config config/email_service.yaml 42
/// herald dlq redrive --control tcp://127.0.0.1:5701 --type
/// user.account.created herald dlq purge --control tcp://127.0.0.1:5701 --all
/// --dry-run
/// ```
///
/// Each command sends one request of the control protocol to the node's
/// control endpoint through a `herald::control_client` and waits for the
/// one reply, at most `--timeout` seconds. The messages, their fields and
/// their limits are described in `herald/runtime/control.hpp`.
///
/// Exit codes as for every herald command: 0 success, 1 runtime error
/// (no answer, an error reply; `herald: <message>` on stderr), 2 bad
/// command line. `purge` refuses to run when nothing selects what to
/// purge: deleting every dead letter takes an explicit `--all`.

#include <functional>

#include <CLI/CLI.hpp>

namespace herald::cli {

/// The `dlq` subcommand once added to an app.
struct dlq_command {
  /// The subcommand: `*app` is true after parsing when it was chosen.
  CLI::App* app = nullptr;
  /// Runs the chosen `dlq` command and returns the exit code. Call only
  /// after a successful parse that chose `app`.
  std::function<int()> run;
};

/// Adds `dlq` with its commands `list`, `show`, `redrive` and `purge` to
/// `app`. The options are parsed into state the returned `run` owns.
dlq_command add_dlq_commands(CLI::App& app);

} // namespace herald::cli
