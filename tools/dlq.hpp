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
/// Each command sends one request to the node's control endpoint (a
/// ZeroMQ ROUTER) from a DEALER socket and waits for the one reply, at
/// most `--timeout` seconds. Requests and replies are MessagePack maps;
/// every request has `op` and an `id` the reply echoes, and any reply may
/// be `{id, error}` instead:
///
/// - `{op: "dlq.list", id, consumer?, type?, key?, after?, limit?}` →
///   `{id, dead_letters: [DL...], more}`
/// - `{op: "dlq.show", id, dead_letter}` → `{id, dead_letter: DL + event}`
/// - `{op: "dlq.redrive", id, consumer?, type?, key?, dry_run}` →
///   `{id, redriven: [ids], dry_run}`
/// - `{op: "dlq.purge", id, consumer?, type?, key?, dead_letter?, all?,
///   dry_run}` → `{id, purged: [ids], dry_run}`
///
/// where DL is `{id, consumer, node, event_type, event_id, key, stream,
/// seq, reason, parked, created, attempts: [{time, error, class}]}`.
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
