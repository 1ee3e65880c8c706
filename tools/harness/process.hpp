#pragma once

/// Launching the nodes of a run as child processes: each dies with the
/// harness (PR_SET_PDEATHSIG: SIGKILL when the harness' thread that
/// launched it ends), writes its stdout and stderr to files, and is reaped
/// whatever happens (`stop` waits a bounded time, then kills).
///
/// Thread safety: a `child` is used from one thread (the harness' main
/// thread).

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <caf/expected.hpp>

namespace herald::harness {

/// Finds `name` (no slash) in `dirs`, then in PATH; a name with a slash is
/// taken as it is. Returns the path of an executable file, or nothing.
std::optional<std::string>
find_executable(const std::string& name, const std::vector<std::string>& dirs);

/// A free TCP port on `host` (bound to port 0 and released): taken once
/// per run, so that a restarted node comes back on the same endpoints.
caf::expected<uint16_t> free_port(const std::string& host);

class child {
public:
  child() = default;
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  child(child&& other) noexcept;
  child& operator=(child&& other) noexcept;
  /// Kills and reaps a child still running.
  ~child();

  /// Starts `argv` (argv[0] a path) with stdout and stderr appended to
  /// `out` and `err`, with the harness' environment plus `env`
  /// (`NAME=VALUE` each, replacing a variable of that name), and, when
  /// `netns` names a network namespace (`/run/netns/NAME`), inside it
  /// (`setns(2)` before the exec). Fails with `errc::io_error` naming the
  /// command (or the namespace).
  static caf::expected<child> start(const std::vector<std::string>& argv,
                                    const std::string& out,
                                    const std::string& err,
                                    const std::vector<std::string>& env = {},
                                    const std::string& netns = {});

  pid_t pid() const noexcept {
    return pid_;
  }

  /// Whether it runs (not reaped yet). Reaps it when it ended.
  bool running();

  /// How it ended, once reaped: the exit status or 128 + signal.
  std::optional<int> status() const noexcept {
    return status_;
  }

  /// Sends `sig` when it runs.
  void signal(int sig);

  /// SIGTERM (after SIGCONT), waits at most `grace`, then SIGKILL; reaps
  /// it. Returns how it ended.
  int stop(std::chrono::milliseconds grace);

  /// SIGKILL, and reaps it.
  void kill();

private:
  explicit child(pid_t pid) : pid_(pid) {}
  bool wait_for(std::chrono::milliseconds limit);
  pid_t pid_ = -1;
  std::optional<int> status_;
};

} // namespace herald::harness
