#pragma once

/// Publishing through a node's control endpoint (`herald publish
/// --control`): the `publish` op of the control protocol (see
/// `herald/runtime/control.hpp`).
///
/// A request is served on the pump thread: its events are validated and
/// appended to the node's stream one by one, as `event_bus::publish` does
/// for the node's own service, up to the first one refused. The reply must
/// wait until the appended events are durable (group commit: milliseconds),
/// and the pump thread must not wait, so the request is parked here with
/// its sender (`transport::control_peer`). The log's commit callback
/// (`on_commit`) then completes every parked request whose last event it
/// made durable, and the reply goes out through `pump::reply`, queued
/// behind the events themselves. No thread waits for a disk on behalf of a
/// request.
///
/// The replies of recent request ids are remembered (the bounds are
/// `control::remembered_requests`, `remembered_acks` and `remember_for`),
/// so a request re-sent after a lost reply publishes nothing again: a
/// repeat of a finished request gets its reply at once, a repeat of one in
/// flight gets the same reply when it completes, a repeat with other
/// events is refused naming the request id. Requests in flight are never
/// forgotten before they complete.
///
/// Thread safety: `serve` is called on the pump thread only; `on_commit` on
/// the thread the log calls its commit callback on (the committer, or the
/// appending thread when the log writes a record itself). Both lock
/// `mtx_`. Lock order: `node::impl::publish_mtx` before `mtx_` (the log may
/// call the commit callback inside `append`, under the stream lock);
/// otherwise `mtx_` is a leaf: nothing is published, sent or logged while
/// it is held.

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/error.hpp>

#include "herald/runtime/control.hpp"
#include "herald/runtime/node.hpp"
#include "herald/transport/pump.hpp"

namespace herald {

/// Serves `publish` requests of one node and remembers their replies.
class publish_admin {
public:
  /// Serves requests for `owner`, whose pump and log must outlive this.
  explicit publish_admin(node::impl& owner);

  publish_admin(const publish_admin&) = delete;
  publish_admin& operator=(const publish_admin&) = delete;

  /// Serves `r` from `from`. Returns the reply when it is ready at once (a
  /// repeat of a finished request, a refusal); nothing when it will be sent
  /// through `pump::reply` once the events are durable. Pump thread only.
  std::optional<std::string> serve(const control::publish_request& r,
                                   const transport::control_peer& from);

  /// The log handed out the group of seqs `first`..`last`, stored unless
  /// `err`: completes the requests whose events are all handed out.
  void on_commit(uint64_t first, uint64_t last, const caf::error& err);

  /// Request ids remembered now, in flight or finished (for tests).
  size_t remembered() const;

private:
  using clock = std::chrono::steady_clock;

  /// Who is waiting for a reply: the sender and the message id to echo.
  struct waiter {
    transport::control_peer peer;
    uint64_t id = 0;
  };

  /// One request id: what it published, and who waits for the reply.
  struct entry {
    std::string request_id;
    /// Tells a re-send (same events) from a reuse of the id.
    size_t digest = 0;
    clock::time_point created;
    /// The reply, without its message id; final once `done`.
    control::publish_reply reply;
    /// The seq of the last event appended; 0 when none was.
    uint64_t last_seq = 0;
    bool done = false;
    std::vector<waiter> waiters;
  };

  /// A group the log could not store.
  struct failure {
    uint64_t first = 0;
    uint64_t last = 0;
    std::string why;
  };

  using entry_list = std::list<entry>;
  /// A reply ready to go out, sent after `mtx_` is released.
  using outgoing = std::vector<std::pair<transport::control_peer, std::string>>;

  // REQUIRES: mtx_ held.
  void finish(entry& e, outgoing& out);
  void forget_old(clock::time_point now);
  void send(outgoing& out);

  node::impl& node_;

  // --- Guarded by mtx_ -----------------------------------------------------
  mutable std::mutex mtx_;
  /// Every remembered request, oldest first.
  entry_list entries_;
  std::unordered_map<std::string, entry_list::iterator> by_id_;
  /// Requests whose events are appended and not all handed out yet, by
  /// the seq of their last event.
  std::multimap<uint64_t, entry_list::iterator> waiting_;
  /// Acks held by finished entries.
  size_t acks_ = 0;
  /// The last seq the log handed out (stored or failed).
  uint64_t handed_ = 0;
  /// Whether `serve` is appending a request's events right now.
  bool publishing_ = false;
  /// Groups that failed while a request could contain their events; kept
  /// until no request is in flight.
  std::vector<failure> failures_;
};

} // namespace herald
