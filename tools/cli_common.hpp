#pragma once

/// What the `herald` tool and the test service share: signal handling,
/// starting a node from `--config`/`--peer`, the endpoint file, bounded
/// waits, exit codes.
///
/// Conventions of every executable built on this:
/// - exit 0 on success, 1 on a runtime error (`<prog>: <message>` on
///   stderr), 2 on a bad command line (CLI11's usage error on stderr);
/// - stdout carries only the program's output; the node logs to stderr.
///
/// Thread safety: `print_line` and `stop_requested` may be called from any
/// thread (handlers run on actor threads); the rest is meant for `main`.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "herald/runtime/node.hpp"

namespace herald::cli {

/// Exit code of a successful run.
inline constexpr int exit_ok = 0;
/// Exit code of a runtime error (bad config, timeout, invalid payload...).
inline constexpr int exit_failure = 1;
/// Exit code of a command line that could not be parsed.
inline constexpr int exit_usage = 2;

/// Catches SIGINT and SIGTERM (`herald::catch_stop_signals`): from then on
/// they only set the flag `stop_requested` reads. Call once in `main`,
/// before starting a node.
void install_signal_handlers();

/// Returns whether SIGINT or SIGTERM arrived. Thread-safe.
bool stop_requested() noexcept;

/// Prints `<prog>: <message>` on stderr and returns `exit_failure`.
int fail(std::string_view prog, std::string_view message);

/// Parses the command line with `app`. Returns nothing when the program
/// should go on, else the exit code to return: 0 after `--help` or
/// `--version` (printed on stdout), `exit_usage` after a usage error
/// (printed on stderr). An argument that no option, positional or command
/// took is the error reported, naming it (`herald publish: unknown option
/// '--bogus'`, `herald: unknown command 'frobnicate'; the commands are
/// ...`), whatever else went wrong after it.
std::optional<int> parse(CLI::App& app, int argc, char** argv);

/// Prints `line` and a newline on stdout and flushes, so that lines of
/// several threads never interleave and a log file is current. Thread-safe.
void print_line(std::string_view line);

/// Converts a number of seconds from the command line to milliseconds.
std::chrono::milliseconds from_seconds(double seconds);

/// A CLI11 check: the value is a number >= `min`, e.g. `at_least(0)` for
/// counts and timeouts. Its message says so (CLI11's own `Range` prints
/// the largest double).
CLI::Validator at_least(double min);

/// What `--since` accepts, for usage errors and help: a duration back
/// from now or an RFC 3339 time.
inline constexpr std::string_view since_forms =
  "a duration back from now (a number and a unit, ms, s, m, h or d, "
  "repeated: 30s, 5m, 2h, 1d, 1h30m) or an RFC 3339 time "
  "(2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00)";

/// Parses a `--since` value into microseconds since the epoch: an RFC
/// 3339 time as is, a duration (`30s`, `5m`, `1h30m`; units ms, s, m, h,
/// d) as `now_us` minus it. Nothing when `text` is neither.
std::optional<int64_t> parse_since(std::string_view text, int64_t now_us);

/// A CLI11 check that the value is a `--since` value; its message names
/// the value and the accepted forms.
CLI::Validator since_value();

/// The options of every program that runs a node.
struct node_options {
  /// The node configuration file (`--config`). Required.
  std::string config;
  /// Endpoints added to the config's `peers` (`--peer`, repeatable).
  std::vector<std::string> peers;
  /// Control endpoints added to the config's `cluster.seeds` (`--seed`,
  /// repeatable).
  std::vector<std::string> seeds;
  /// Where to write the node's endpoint once it is ready
  /// (`--endpoint-file`). Default: nowhere.
  std::string endpoint_file;
  /// Where to write the node's control endpoint once it is ready
  /// (`--control-file`), for `herald dlq --control`. Default: nowhere.
  std::string control_file;
  /// Overrides the config's `log_level` (`--log-level`). Default: the
  /// value set before `add_node_options`, empty for the config's.
  std::string log_level;
  /// Overrides the config's `data_dir` (`--data-dir`). Default: the
  /// config's.
  std::string data_dir;
};

/// Adds `--config`, `--peer`, `--seed`, `--log-level`, `--data-dir` and, when
/// `with_endpoint_file`, `--endpoint-file` and `--control-file` to `app`.
void add_node_options(CLI::App& app, node_options& opts,
                      bool with_endpoint_file = true);

/// Loads `opts.config`, appends `opts.peers` to its peers and `opts.seeds`
/// to its seeds, lets `adjust`
/// change the result, and starts the node. Fails with the error of the step
/// that failed, naming the file.
caf::expected<std::unique_ptr<node>>
start_node(const node_options& opts,
           const std::function<void(node_config&)>& adjust = {});

/// Writes `text` to `path` through `path.tmp` and a rename, so that a
/// reader sees either no file or the whole text. Fails with
/// `errc::io_error` naming the path.
caf::error write_file_atomically(const std::string& path,
                                 std::string_view text);

/// Writes `n.endpoint()` to `opts.endpoint_file`, if one was given.
caf::error write_endpoint_file(const node& n, const node_options& opts);

/// How a bounded wait ended.
enum class wait_result { done, timed_out, interrupted };

/// Polls `done` every few milliseconds until it returns true, `timeout`
/// passes (no timeout: wait forever) or a signal arrives.
wait_result wait_until(const std::function<bool()>& done,
                       std::optional<std::chrono::milliseconds> timeout);

} // namespace herald::cli
