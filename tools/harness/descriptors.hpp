#pragma once

/// Counting a process' open file descriptors by kind, from
/// `/proc/PID/fd` (proc(5)): what a join/leave cycle fault compares on
/// the nodes that stay up, to catch sockets and descriptors that leak
/// when a peer comes and goes.
///
/// libzmq gives every ZeroMQ socket a mailbox signalled through an
/// eventfd (and one to each context's I/O and reaper threads), so the
/// eventfd count follows the ZeroMQ sockets a node has open; its TCP
/// connections and listeners are the `socket:` descriptors.
///
/// Thread safety: plain values and functions that only read `/proc`.

#include <optional>
#include <string>

#include <sys/types.h>

#include "herald/core/event.hpp"

namespace herald::harness {

/// A process' open descriptors by kind.
struct fd_counts {
  /// Every open descriptor.
  int total = 0;
  /// `socket:[...]`: TCP connections and listeners, Unix sockets.
  int sockets = 0;
  /// `anon_inode:[eventfd]`: one per ZeroMQ socket (its mailbox) and per
  /// context thread.
  int eventfds = 0;
  /// `anon_inode:[eventpoll]`.
  int epolls = 0;
  /// `pipe:[...]`.
  int pipes = 0;
  /// Everything else: regular files (RocksDB's tables and logs), devices,
  /// other anonymous inodes.
  int files = 0;

  bool operator==(const fd_counts&) const = default;
};

/// The descriptors `pid` has open now; nothing when it does not exist or
/// cannot be read (another user's process without the right to).
std::optional<fd_counts> count_fds(pid_t pid);

/// The kind of the descriptor whose `/proc/PID/fd/N` link reads `target`,
/// counted into `c`.
void count_fd(std::string_view target, fd_counts& c);

/// Whether `now` is back to `before`: at most as many sockets, eventfds,
/// epoll instances and pipes, and at most `file_slack` more other
/// descriptors (RocksDB opens table files as it flushes and compacts).
bool returned(const fd_counts& before, const fd_counts& now, int file_slack);

/// Each kind of `now` that exceeds `before` (files: beyond `file_slack`),
/// as `sockets 14 > 12, eventfds 9 > 8`; empty when none does.
std::string excess(const fd_counts& before, const fd_counts& now,
                   int file_slack);

/// The larger count of each kind.
fd_counts max_of(const fd_counts& a, const fd_counts& b);

/// `c` as a JSON object (`total`, `sockets`, `eventfds`, `epolls`,
/// `pipes`, `files`).
payload to_json(const fd_counts& c);

} // namespace herald::harness
