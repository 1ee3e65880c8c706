#pragma once

/// A herald node: one actor system, one transport pump, the catalog, and the
/// services it runs.
///
/// ```cpp
/// auto cfg = herald::node_config::load_file("config/email.yaml");
/// auto n = herald::node::start(*cfg);
/// (*n)->bus().subscribe("user.account.created", [](const herald::event& ev) {
///   send_welcome(ev.data()["email"]);
/// });
/// ```
///
/// Thread safety: every member is safe to call from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <caf/behavior.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "herald/actors/consumer.hpp"
#include "herald/actors/messages.hpp"
#include "herald/core/catalog.hpp"
#include "herald/core/config.hpp"
#include "herald/core/event.hpp"
#include "herald/store/event_log.hpp"

namespace herald {

/// What `publish` returns: the event's identity at once, and its
/// durability as a future.
struct publish_receipt {
  /// The event's id (UUIDv7).
  std::string id;
  /// Its position in this node's stream.
  uint64_t seq = 0;
  /// Completes once the event is durable under the node's fsync policy
  /// (then it goes out to consumers), or failed to be stored.
  std::shared_ptr<const store::commit_ticket> durable;

  /// Waits until the event is durable; returns the error if it could not
  /// be stored (e.g. a full disk). Events of one node become durable in
  /// seq order, so waiting for the last receipt waits for all before it.
  caf::error wait() const {
    return durable->wait();
  }
};

/// Per-publish options.
struct publish_options {
  /// The producing service. Default: the node's `service`. The catalog's
  /// producer of the event must match.
  std::string source;
  /// W3C trace context to carry along. Default: none.
  std::string traceparent;
  /// How long `publish` may wait for room when the node's log queue is at
  /// `store.max_pending_bytes`; 0 never waits. Default: the node's
  /// `store.publish_timeout`. On a thread of an actor system (an actor's
  /// handler, a CAF behavior) `publish` never waits, whatever this says.
  std::optional<std::chrono::microseconds> max_wait;
};

class node;

/// Publishing and subscribing, in the seed's words. Obtained from a node.
class event_bus {
public:
  /// Validates `data` against the catalog, fills id, timestamp, source, key,
  /// stream and seq, and appends the event to the node's durable log. Once
  /// durable (`receipt.wait()`), it goes to every subscriber: consumers on
  /// other nodes over ZeroMQ, consumers on this node directly. Never waits
  /// for consumers, nor for the disk to make the event durable (call
  /// `wait`).
  ///
  /// Backpressure: the events queued for the disk are bounded by
  /// `store.max_pending_bytes` (default 32 MiB). When one more does not
  /// fit, `publish` on a plain thread waits for room, at most
  /// `opts.max_wait` (default `store.publish_timeout`, 10 s); on an actor
  /// system's thread (any actor's handler) it never waits, so a scheduler
  /// thread is never blocked. Either way, if there is still no room it
  /// fails with `errc::would_block`, publishing nothing: the caller may
  /// retry the same call later (an actor, e.g., from a delayed message to
  /// itself).
  ///
  /// Fails, sending nothing, with `errc::unknown_event`,
  /// `errc::invalid_payload` (naming event, field and rule),
  /// `errc::catalog_violation` (wrong producer), `errc::frame_too_large`,
  /// `errc::would_block` or `errc::not_running`. Thread-safe.
  caf::expected<publish_receipt> publish(std::string_view type,
                                         const payload& data,
                                         const publish_options& opts = {});

  /// Calls `fn` for every event whose type `pattern_text` selects, on behalf
  /// of `consumer` (default: the node's service). `fn` takes
  /// `const herald::event&` and returns void or `caf::error`; throwing or
  /// returning an error is a failure. For an exact event name the consumer
  /// must be one of the event's consumers in the catalog
  /// (`errc::catalog_violation` otherwise).
  template <class F>
  caf::error subscribe(std::string_view pattern_text, F fn,
                       std::string_view consumer = {}) {
    using result = std::invoke_result_t<F&, const event&>;
    if constexpr (std::is_void_v<result>)
      return add_handler(
        pattern_text,
        [f = std::move(fn)](const event& ev) mutable {
          f(ev);
          return caf::error{};
        },
        consumer);
    else
      return add_handler(pattern_text, handler_fn{std::move(fn)}, consumer);
  }

  /// Like `subscribe`, for tools that watch the bus (e.g. `herald tail`):
  /// the observer is not a catalog consumer, so any pattern is allowed.
  /// `fn` takes `const herald::event&` and returns void; it is called on
  /// one actor at a time, in stream order per stream, once per event.
  /// The observer keeps no offsets. By default (`opts` empty) it sees live
  /// events only, from the first that arrives; with `opts.from_start` or
  /// `opts.since_us` it first reads each stream it hears of from the
  /// producer's log, from there, then follows live events with none
  /// missed or repeated between the two (see `observe_options`). The
  /// options belong to the node's one observer: the first `observe` call
  /// sets them, and a later call with other options fails with
  /// `errc::invalid_argument`.
  caf::error observe(std::string_view pattern_text,
                     std::function<void(const event&)> fn,
                     const observe_options& opts = {});

private:
  friend class node;
  explicit event_bus(node* owner) : node_(owner) {}
  caf::error add_handler(std::string_view pattern_text, handler_fn fn,
                         std::string_view consumer, bool check = true,
                         const observe_options* start = nullptr);
  node* node_;
};

/// A running node.
class node {
public:
  /// Starts a node from `cfg`: loads the catalog, starts the actor system,
  /// binds the PUB endpoint, connects to the peers and spawns a consumer
  /// actor per configured consumer. Fails with the error of the step that
  /// failed (catalog, config, bind...).
  /// `clock` (microseconds since the epoch) is what retention compares
  /// event times to; default: the system clock. Tests inject their own.
  static caf::expected<std::unique_ptr<node>>
  start(node_config cfg, std::function<int64_t()> clock = {});

  /// Stops the node (see `stop`).
  ~node();

  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Publishing and subscribing.
  event_bus& bus() noexcept {
    return bus_;
  }

  /// Runs `fn` (see `service_fn`) as the CAF actor of the configured
  /// consumer `consumer`: it receives every event the consumer's
  /// `subscribe` patterns select, one entity's in order, one request per
  /// event. It is supervised like a function handler: an exception in its
  /// behavior fails that event's attempt (`non_retryable_error` dead-letters
  /// it at once) and the actor lives on; an answer that does not come
  /// within the consumer's `handler_timeout` fails the attempt; an actor
  /// that dies anyway is started again from `fn`, at most
  /// `restarts.max` times within `restarts.within`, after which the
  /// consumer pauses (see `consumer_stats::pause_reason`). Fails with
  /// `errc::invalid_config` for a consumer not in the node's configuration.
  caf::error attach(std::string_view consumer, service_fn fn);

  /// The actor system of this node.
  caf::actor_system& system();

  /// The loaded catalog.
  const catalog& events() const noexcept;

  /// The configuration the node runs with.
  const node_config& config() const noexcept;

  /// The endpoint peers connect to (advertised, or bound with the port
  /// resolved).
  std::string endpoint() const;

  /// Waits until `n` subscriptions from other nodes reached this node's PUB
  /// socket, at most `timeout`. Returns whether they did.
  bool wait_for_subscribers(int64_t n, std::chrono::milliseconds timeout);

  /// The control endpoint (replay requests), with the port resolved.
  std::string control_endpoint() const;

  /// The id of this node's stream (made with its data directory).
  const std::string& stream() const noexcept;

  /// Control requests and heartbeats refused as malformed.
  uint64_t control_errors() const noexcept;

  /// Deletes expired events now (a background thread does it every
  /// `store.retention_check`). Returns how many were deleted.
  caf::expected<uint64_t> enforce_retention();

  /// The dead letters of this node's consumers that `filter` selects, in
  /// id order: one entity's in the order its events were published.
  caf::expected<std::vector<store::dead_letter>>
  dead_letters(const store::dead_letter_filter& filter = {}) const;

  /// Hands the dead letters `filter` selects back to their consumers,
  /// ordered by (stream, seq), so one entity's come in the order they were
  /// published (never by letter id or time, which a redrive that failed
  /// again does not keep in that order); a parked entity is unparked and
  /// its later events follow them. Before they are handed back, each
  /// letter's record durably gets a redrive (now, `by`: who asked, e.g.
  /// `alice@ops-host`; empty is recorded as "unknown"). Each letter is
  /// removed once handled; if it fails again its new attempts are added to
  /// its record under the same id. Letters already being redriven are left
  /// out. Returns the ids handed back, in that order; with `dry_run`,
  /// those that would be, changing nothing. Fails with the store's error
  /// (nothing is handed back) when the redrive cannot be recorded.
  caf::expected<std::vector<uint64_t>>
  redrive(const store::dead_letter_filter& filter, bool dry_run = false,
          std::string_view by = {});

  /// Deletes the dead letters `filter` selects; an entity parked behind
  /// them goes on with its next event. Returns the ids deleted (with
  /// `dry_run`, those that would be, changing nothing).
  caf::expected<std::vector<uint64_t>>
  purge(const store::dead_letter_filter& filter, bool dry_run = false);

  /// Deletes the dead letter `id` (see `purge`); fails with
  /// `errc::not_found` when there is none.
  caf::expected<std::vector<uint64_t>> purge(uint64_t id, bool dry_run = false);

  /// The port `/metrics` and `/healthz` are served on; 0 when the node has
  /// no `metrics.listen`.
  uint16_t metrics_port() const noexcept;

  /// Counters of `consumer`, or null for an unknown one.
  std::shared_ptr<const consumer_stats> stats(std::string_view consumer) const;

  /// Events received from other nodes, and frames dropped as malformed.
  uint64_t received() const noexcept;
  uint64_t bad_frames() const noexcept;

  /// Waits until every consumer has finished the events delivered to it so
  /// far (handled or stored as dead letters, retries included) and no
  /// stream is catching up from its producer's log, at most `timeout`.
  /// Returns whether they did.
  bool drain(std::chrono::milliseconds timeout);

  /// Stops the transport (flushing sent events up to the linger time) and
  /// the actor system. Idempotent.
  void stop();

  struct impl;

private:
  explicit node(std::unique_ptr<impl> ptr);
  friend class event_bus;
  std::unique_ptr<impl> impl_;
  event_bus bus_;
};

} // namespace herald
