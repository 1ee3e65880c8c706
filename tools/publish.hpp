#pragma once

/// `herald publish`: publish events through a running node.
///
/// ```sh
/// herald publish --control tcp://127.0.0.1:5701 user.account.created
///   '{"user_id": "...", "email": "a@example.com", ...}'
/// herald publish --control tcp://127.0.0.1:5701 user.account.created
///   --file users.jsonl
/// producer | herald publish --control tcp://127.0.0.1:5701
///   user.account.created -
/// ```
///
/// The payload comes as one argument (a JSON object), or, with `--file F`
/// or `-` (stdin), as one JSON object per line (blank lines are skipped;
/// line numbers count them). Lines go to the node in batches of at most
/// `control::max_publish_events` (256) and at most `--max-message-size`
/// bytes (the node's `transport.max_message_size`, 1 MiB by default), each
/// one `publish` request of the control protocol through a
/// `herald::control_client`. The node validates, appends and answers once
/// the batch is durable; the command then prints one line per event on
/// stdout, `{"id": ..., "stream": ..., "seq": ...}`, in input order.
///
/// At the first line that cannot be published (not a JSON object, too
/// large for one request, refused by the node: unknown type, schema,
/// producer) it stops: the error names the line and the rule, and exactly
/// the lines before it were published. Each batch carries a request id
/// (`--request-id`, else a fresh UUID, then `:<batch number>`); a batch
/// without an answer within `--timeout` is re-sent with the same id up to
/// `--retries` times, and the node publishes it once. When it still gets
/// no answer, the error gives the request id: re-running the same command
/// with `--request-id` that id (within the node's 10 minutes) publishes
/// what is missing and nothing twice.
///
/// `--standalone` keeps the old way, publishing from a throw-away node
/// started with `--config`: the event then lives only in that node's data
/// directory, and a consumer that is not connected at that moment never
/// gets it.
///
/// Exit codes as for every herald command: 0 success, 1 runtime error
/// (`herald: <message>` on stderr), 2 bad command line.

#include <functional>

#include <CLI/CLI.hpp>

namespace herald::cli {

/// The `publish` subcommand once added to an app.
struct publish_command {
  /// The subcommand: `*app` is true after parsing when it was chosen.
  CLI::App* app = nullptr;
  /// Runs it and returns the exit code. Call only after a successful
  /// parse that chose `app`.
  std::function<int()> run;
};

/// Adds `publish` to `app`. The options are parsed into state the
/// returned `run` owns.
publish_command add_publish_command(CLI::App& app);

} // namespace herald::cli
