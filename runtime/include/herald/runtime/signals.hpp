#pragma once

/// Running a service until it is asked to stop: SIGINT (Ctrl-C) or SIGTERM
/// (`kill`, systemd, Kubernetes).
///
/// ```cpp
/// herald::catch_stop_signals();   // first thing in main
/// auto n = herald::node::start(*cfg);
/// (*n)->bus().subscribe("user.account.created", send_welcome_email);
/// herald::wait_for_stop_signal();
/// (*n)->stop();
/// ```
///
/// Signal dispositions belong to the process, not to a node: these
/// functions manage one process-wide handler for SIGINT and SIGTERM, and a
/// stop once requested stays requested. A program that handles these
/// signals itself should not use them.
///
/// Thread safety: every function is safe to call from any thread, any
/// number of times.

#include <chrono>

namespace herald {

/// Replaces the default action of SIGINT and SIGTERM (ending the process at
/// once) with recording the request, which `stop_requested` and
/// `wait_for_stop_signal` then report. Idempotent. Call it before starting
/// a node: a signal that arrives earlier still ends the process.
void catch_stop_signals();

/// Returns whether SIGINT or SIGTERM arrived since `catch_stop_signals`.
/// Never blocks; meant for loops that do work until asked to stop.
[[nodiscard]] bool stop_requested() noexcept;

/// Blocks until SIGINT or SIGTERM arrives; returns at once when one already
/// did. Calls `catch_stop_signals` first.
void wait_for_stop_signal();

/// Like `wait_for_stop_signal`, at most `timeout`. Returns whether a stop
/// was requested (false: the time ran out).
[[nodiscard]] bool wait_for_stop_signal(std::chrono::milliseconds timeout);

} // namespace herald
