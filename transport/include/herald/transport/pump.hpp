#pragma once

/// The transport pump: the one thread that owns every ZeroMQ socket of a
/// node.
///
/// A node binds one XPUB socket (a PUB that also reports subscriptions) and
/// connects one SUB socket to its peers' PUB endpoints. Each event travels
/// as a two-frame message `[event_type][envelope]`: ZeroMQ routes by byte
/// prefix of the first frame, so a subscription to `user.` or
/// `user.account.` is resolved inside ZeroMQ.
///
/// The SUB socket connects to the peers of `pump_config` when the pump
/// starts; peers are not added later (a node learns no endpoints at run
/// time: its peers come from its config).
///
/// Every socket is watched (`zmq_socket_monitor`): a connection that ends
/// (disconnected, handshake failed) is reported to the listener with the
/// peer's endpoint and counted. libzmq reconnects by itself after a
/// connection error, but not after a protocol error (a frame over
/// `ZMQ_MAXMSGSIZE`, a failed handshake): it drops the connection for
/// good. So the pump recreates every connection of its own (SUB to a
/// peer, DEALER to a control endpoint) that ended: 100 ms after it ended,
/// doubling up to 5 s while recreated connections keep failing within 5 s.
///
/// What goes wrong is counted apart: a bad frame is a message that arrived
/// and could not be decoded (wrong frame count, malformed or oversized
/// envelope); an I/O error is a ZeroMQ operation that failed (a socket
/// call, a poll). Neither stops the pump.
///
/// Control requests are answered by the listener: at once, with the reply
/// `on_control_request` returns, or later (e.g. once what the request asked
/// for is durable), with `pump::reply` and the `control_peer` the request
/// came with. The pump thread never waits for a deferred reply.
///
/// Thread safety: `send_all`, `request`, `reply`, `subscribe` and the
/// getters may be called from any thread; they enqueue a command the pump
/// thread executes in order. The listener is called on the pump thread
/// only.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "herald/core/codec.hpp"
#include "herald/core/config.hpp"
#include "herald/core/event.hpp"

namespace herald::transport {

/// What a pump needs to start.
struct pump_config {
  /// Endpoint the XPUB socket binds; `tcp://HOST:*` picks a free port.
  std::string bind = "tcp://127.0.0.1:*";
  /// PUB endpoints the SUB socket connects to.
  std::vector<std::string> peers;
  /// ZMQ_SNDHWM / ZMQ_RCVHWM in messages. Default: 100000.
  int hwm = 100000;
  /// ZMQ_MAXMSGSIZE and the decoder's maximum frame; live batches stay
  /// within it. Default: 1 MiB.
  size_t max_message_size = 1024 * 1024;
  /// ZMTP heartbeat interval; the timeout is three intervals.
  std::chrono::milliseconds heartbeat{1000};
  /// How long unsent messages are kept at shutdown. Default: 2 s.
  std::chrono::milliseconds linger{2000};
  /// Most events handed to the listener in one batch. Default: 1024.
  size_t max_batch = 1024;
  /// Endpoint the control ROUTER socket binds (replay requests).
  /// Default: `tcp://127.0.0.1:*`.
  std::string control_bind = "tcp://127.0.0.1:*";
  /// How often the stream heartbeat goes out on the PUB socket.
  /// Default: 200 ms.
  std::chrono::milliseconds stream_heartbeat{200};
  /// Where `bind`, `control_bind` and `peers` were configured: an endpoint
  /// that cannot be bound or connected to is reported with its config
  /// file and line (`FILE:LINE: bind: cannot bind ...`). Default: none.
  config_origin origin;
};

/// A connection of a pump's socket that ended, as reported by libzmq.
struct peer_event {
  /// Which socket: `SUB` (to a peer's PUB), `DEALER` (to a peer's control
  /// endpoint), `XPUB` or `ROUTER` (a peer's connection to this node).
  std::string_view socket;
  /// The endpoint libzmq names: the peer's, for a connection this node
  /// made; this node's bound endpoint, for one a peer made.
  std::string_view endpoint;
  /// What happened, e.g. `disconnected` or `handshake failed (protocol
  /// error 0x10000001)`.
  std::string_view what;
  /// When the pump recreates the connection; zero when it does not (a
  /// peer's connection to this node: that peer reconnects).
  std::chrono::milliseconds reconnect_in{0};
};

/// The topic of stream heartbeats. Not a valid event name, so no event
/// subscription selects it by accident.
inline constexpr std::string_view heartbeat_topic = "_hb";

/// The sender of a control request, to answer it later with `pump::reply`:
/// the control ROUTER's routing id of the peer's connection. Copyable; it
/// names that connection only while it lasts.
struct control_peer {
  /// The routing id, as ZeroMQ gave it.
  std::string routing_id;

  bool operator==(const control_peer&) const = default;
};

/// Receives what the pump reads. Called on the pump thread; must not block.
class pump_listener {
public:
  virtual ~pump_listener() = default;
  /// A batch of decoded events, in arrival order. May be moved from.
  virtual void on_events(event_batch& batch) = 0;
  /// A frame that could not be decoded; it was dropped and counted in
  /// `pump_stats::bad_frames`.
  virtual void on_bad_frame(const caf::error& why) = 0;
  /// A ZeroMQ operation failed (`errc::io_error`); counted in
  /// `pump_stats::io_errors`. The pump goes on.
  virtual void on_io_error(const caf::error& why) = 0;
  /// A stream heartbeat from a peer (the body as sent).
  virtual void on_heartbeat(std::string_view body) = 0;
  /// A control request from `from`. Returns the reply to send back now, or
  /// nothing to answer later: the listener then keeps `from` and calls
  /// `pump::reply(from, reply)` (from any thread) when the answer is
  /// ready. Must not wait for that answer.
  virtual std::optional<std::string>
  on_control_request(std::string_view request, const control_peer& from) = 0;
  /// A reply to a request this node sent to `endpoint`.
  virtual void on_control_reply(std::string_view endpoint,
                                std::string_view reply) = 0;
  /// The body of this node's next heartbeat; empty for none.
  virtual std::string make_heartbeat() = 0;
  /// A connection ended (see `peer_event`); counted in
  /// `pump_stats::disconnects`. Default: does nothing.
  virtual void on_disconnect(const peer_event& e) {
    (void)e;
  }
};

/// Counters of a pump. Read with relaxed loads.
struct pump_stats {
  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> received{0};
  /// Messages that arrived and could not be decoded: wrong frame count,
  /// malformed envelope, frame over the maximum size, topic not the
  /// envelope's type, control request without a body.
  std::atomic<uint64_t> bad_frames{0};
  /// ZeroMQ operations that failed (poll, send, receive, connecting a
  /// control socket); nothing here says a peer sent bad data.
  std::atomic<uint64_t> io_errors{0};
  /// Subscriptions seen minus unsubscriptions, over all subscribers.
  std::atomic<int64_t> subscriptions{0};
  /// Connections that ended (see `peer_event`).
  std::atomic<uint64_t> disconnects{0};
  /// Connections the pump recreated after they ended.
  std::atomic<uint64_t> reconnects{0};
};

/// The transport thread of a node.
class pump {
public:
  /// Binds, connects and starts the pump thread. Fails with
  /// `errc::io_error` naming the endpoint when a bind or connect fails.
  static caf::expected<std::unique_ptr<pump>> start(pump_config cfg,
                                                    pump_listener* listener);

  ~pump();

  pump(const pump&) = delete;
  pump& operator=(const pump&) = delete;

  /// The endpoint the XPUB socket is bound to, with the port resolved.
  const std::string& endpoint() const noexcept {
    return endpoint_;
  }

  /// A message for `send_all`: `[topic][envelope]`. `topic` is not copied:
  /// it must stay valid until the pump stops (e.g. a catalog event name).
  struct outgoing {
    std::string_view topic;
    std::string envelope;
  };

  /// Queues messages for the XPUB socket, in order (one lock, one
  /// wake-up), moving their envelopes. Never blocks.
  void send_all(std::vector<outgoing>& messages);

  /// Sends `request` to the control endpoint `endpoint` (connecting a
  /// DEALER socket to it on first use). The reply reaches
  /// `pump_listener::on_control_reply`.
  void request(std::string endpoint, std::string request);

  /// Queues `reply` to the peer `to` of a control request whose answer
  /// `pump_listener::on_control_request` deferred. Never blocks. A peer
  /// that disconnected meanwhile gets nothing: the reply is dropped (the
  /// requester's timeout asks again).
  void reply(const control_peer& to, std::string reply);

  /// The endpoint the control ROUTER socket is bound to.
  const std::string& control_endpoint() const noexcept {
    return control_endpoint_;
  }

  /// Adds a ZeroMQ prefix subscription on the SUB socket.
  void subscribe(std::string prefix);

  /// Waits until at least `n` subscriptions to event topics reached the
  /// XPUB socket (heartbeat subscriptions do not count), or `timeout`
  /// passes. Returns whether they did.
  bool wait_for_subscriptions(int64_t n, std::chrono::milliseconds timeout);

  /// Counters.
  const pump_stats& stats() const noexcept;

  /// Stops the thread, flushing queued sends up to the linger time.
  /// Idempotent.
  void stop();

  struct impl;

private:
  explicit pump(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
  std::string endpoint_;
  std::string control_endpoint_;
};

} // namespace herald::transport
