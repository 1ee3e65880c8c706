#pragma once

/// The transport pump: the one thread that owns every ZeroMQ socket of a
/// node.
///
/// A node binds one XPUB socket (a PUB that also reports subscriptions)
/// and connects one SUB socket per peer PUB endpoint. Each event travels
/// as a two-frame message `[event_type][envelope]`: ZeroMQ routes by byte
/// prefix of the first frame, so a subscription to `user.` or
/// `user.account.` is resolved inside ZeroMQ.
///
/// One SUB per peer, not one SUB connected to all: each peer's connection
/// can then be watched, bounded and closed on its own, and what arrives on
/// it is known to come from that endpoint (`from` in the listener's
/// calls), which the membership needs to bind a stream to its owner. The
/// peers of `pump_config` are connected at start; `connect_peer` and
/// `disconnect_peer` add and remove peers at run time. Every prefix given
/// to `subscribe` applies to every SUB, present and future. Each poll
/// round reads at most `max_batch` events from each ready SUB, so a busy
/// peer does not starve a quiet one.
///
/// Control requests this node makes go out on one DEALER per control
/// endpoint, made on the first `request` to it and closed by
/// `close_control` (a later `request` makes a new one), when it was idle
/// for `pump_config::control_idle`, or when a request to a new endpoint
/// finds `pump_config::max_control_sockets` open (the one used least
/// recently goes). So no peer can use up libzmq's 1,023 sockets.
///
/// Replies to control requests are bounded per client: libzmq queues up to
/// `pump_config::control_send_hwm` of them for a client that does not
/// read (ZMQ_SNDHWM with ZMQ_ROUTER_MANDATORY, so the pump knows when that
/// queue is full), and the pump keeps the rest in a backlog of at most
/// `pump_config::control_backlog_bytes` per client, sent as the client
/// reads. What does not fit is dropped and counted; a client libzmq calls
/// unreachable for 5 s (it left) has its backlog freed.
///
/// Every socket is watched (`zmq_socket_monitor`): a connection that ends
/// (disconnected, handshake failed) is reported to the listener with the
/// peer's endpoint and counted. libzmq reconnects by itself after a
/// connection error (the peer went away, a ZMTP heartbeat timed out), but
/// not after a protocol error (a frame over `ZMQ_MAXMSGSIZE`, a failed
/// handshake): it drops the connection for good, and its monitor reports
/// both the same way. So the pump schedules the recreation of every
/// connection of its own (SUB to a peer, DEALER to a control endpoint)
/// that ended: 100 ms after it ended, doubling up to 5 s while recreated
/// connections keep failing within 5 s. A handshake that succeeds on that
/// socket before the repair is due says libzmq reconnected by itself: the
/// repair is cancelled (it would cut the live connection and lose what the
/// peer sends meanwhile) and the backoff starts over; a repair that falls
/// due while such a handshake is under way waits for its outcome.
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
/// The listener's `on_tick` runs on the pump thread at least every
/// `pump_config::tick`: periodic work that sends (gossip, probes) belongs
/// there, not on a thread of its own.
///
/// Thread safety: `send_all`, `request`, `reply`, `subscribe`,
/// `connect_peer`, `disconnect_peer`, `close_control` and the getters may
/// be called from any thread, the listener's calls included; the commands
/// are queued and the pump thread executes them in the order they were
/// queued. The listener is called on the pump thread only.

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
  /// PUB endpoints connected at start, one SUB socket each (a repeated
  /// endpoint gets one). More can be added with `pump::connect_peer`.
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
  /// The most time between two calls of `pump_listener::on_tick`
  /// (they come more often when the pump wakes for other work, and later
  /// when a listener call runs long). Must be positive. Default: 100 ms.
  std::chrono::milliseconds tick{100};
  /// Where `bind`, `control_bind` and `peers` were configured: an endpoint
  /// that cannot be bound or connected to is reported with its config
  /// file and line (`FILE:LINE: bind: cannot bind ...`). Default: none.
  config_origin origin;
  /// The most DEALER sockets to control endpoints open at once; a request
  /// to a new endpoint at the bound closes the least recently used one.
  /// Default: 128.
  size_t max_control_sockets = 128;
  /// A DEALER that sent and received nothing for this long is closed.
  /// Default: 5 min.
  std::chrono::milliseconds control_idle{300000};
  /// ZMQ_SNDHWM of the control ROUTER, in messages. Default: 16.
  int control_send_hwm = 16;
  /// Reply bytes kept per control client beyond `control_send_hwm` while
  /// it does not read (at least one `max_message_size` is). Default:
  /// 8 MiB.
  size_t control_backlog_bytes = size_t{8} << 20;
};

/// A connection of a pump's socket that ended, as reported by libzmq.
struct peer_event {
  /// Which socket: `SUB` (to a peer's PUB), `DEALER` (to a peer's control
  /// endpoint), `XPUB` or `ROUTER` (a peer's connection to this node).
  std::string_view socket;
  /// For a connection this node made, the peer's endpoint as given to
  /// `connect_peer`, `request` or `pump_config::peers`; for one a peer
  /// made, the endpoint libzmq names (this node's bound one).
  std::string_view endpoint;
  /// What happened, e.g. `disconnected` or `handshake failed (protocol
  /// error 0x10000001)`.
  std::string_view what;
  /// In how long the pump recreates the connection unless libzmq
  /// reconnects it first (then the pump does not); zero when the pump
  /// never does (a peer's connection to this node: that peer reconnects).
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
  /// Bytes of replies to this client the pump kept when the request was
  /// read: what the client did not read yet beyond libzmq's queue (see
  /// `pump_config::control_backlog_bytes`). Not part of the identity.
  size_t backlog_bytes = 0;

  bool operator==(const control_peer& o) const {
    return routing_id == o.routing_id;
  }
};

/// Receives what the pump reads. Called on the pump thread; must not block.
class pump_listener {
public:
  virtual ~pump_listener() = default;
  /// A batch of decoded events, in arrival order, that came on the SUB
  /// connected to `from` (the peer's PUB endpoint as given to
  /// `connect_peer` or `pump_config::peers`; valid during the call). May
  /// be moved from. At most `pump_config::max_batch` events.
  virtual void on_events(event_batch& batch, std::string_view from) = 0;
  /// A frame that could not be decoded; it was dropped and counted in
  /// `pump_stats::bad_frames`.
  virtual void on_bad_frame(const caf::error& why) = 0;
  /// A ZeroMQ operation failed (`errc::io_error`); counted in
  /// `pump_stats::io_errors`. The pump goes on.
  virtual void on_io_error(const caf::error& why) = 0;
  /// A stream heartbeat (the body as sent) that came on the SUB connected
  /// to `from` (as for `on_events`). The events that came before it on
  /// that SUB were handed over first.
  virtual void on_heartbeat(std::string_view body, std::string_view from) = 0;
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
  /// Periodic work, at least every `pump_config::tick` (see there), with
  /// the pump's reading of the monotonic clock. May call the pump's
  /// commands (e.g. `request`); they run after it returns. Must not block.
  /// Default: does nothing.
  virtual void on_tick(std::chrono::steady_clock::time_point now) {
    (void)now;
  }
  /// The pump closed its DEALER to the control endpoint `endpoint` on its
  /// own (`why`: idle, or the bound on DEALERs reached); counted in
  /// `pump_stats`. A later `request` there makes a new one. Default: does
  /// nothing.
  virtual void on_control_closed(std::string_view endpoint,
                                 std::string_view why) {
    (void)endpoint;
    (void)why;
  }
};

/// How many sockets of each kind a pump holds open: for tests and
/// metrics. A socket counts from when the pump made it until the pump
/// closed it; libzmq releases its file descriptors a little later.
struct socket_counts {
  /// SUB sockets: one per peer PUB endpoint.
  size_t subs = 0;
  /// DEALER sockets: one per control endpoint requested and not closed.
  size_t dealers = 0;
  /// Monitor sockets: one per SUB and DEALER, and the XPUB's and ROUTER's.
  size_t monitors = 0;

  bool operator==(const socket_counts&) const = default;
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
  /// DEALERs closed because a request to a new endpoint found
  /// `max_control_sockets` open.
  std::atomic<uint64_t> control_sockets_evicted{0};
  /// DEALERs closed after `control_idle` without traffic.
  std::atomic<uint64_t> control_sockets_idle_closed{0};
  /// Replies to control clients dropped: the client's backlog was full,
  /// or it left before reading them.
  std::atomic<uint64_t> control_replies_dropped{0};
  /// Bytes of replies kept in clients' backlogs now (a gauge).
  std::atomic<uint64_t> control_backlog_bytes{0};
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
  /// DEALER socket to it on first use, or first use since `close_control`).
  /// The reply reaches `pump_listener::on_control_reply`. Never blocks: at
  /// the DEALER's high-water mark the request is dropped (the requester's
  /// timeout asks again). An endpoint ZeroMQ cannot connect to is an I/O
  /// error (`pump_listener::on_io_error`, naming it).
  void request(std::string endpoint, std::string request);

  /// Closes the DEALER to the control endpoint `endpoint` with linger 0,
  /// its monitor, and its pending repair and backoff. Requests still queued
  /// in it are dropped, and replies that come after are lost. A later
  /// `request` to `endpoint` makes a new DEALER. An endpoint without a
  /// DEALER: nothing. Thread-safe; queued like `request`.
  void close_control(std::string endpoint);

  /// Connects a SUB socket of its own to the PUB endpoint `pub` of a peer:
  /// with the common options and `pump_config::hwm` as RCVHWM, subscribed
  /// to heartbeats and to every prefix given to `subscribe` so far,
  /// watched like the others. Idempotent: an endpoint that has a SUB
  /// already gets nothing more. An endpoint ZeroMQ cannot connect to is
  /// an I/O error (`pump_listener::on_io_error`, naming it) and leaves no
  /// socket. Thread-safe; queued like the other commands, so events
  /// `from` it reach the listener only after this ran.
  void connect_peer(std::string pub);

  /// Closes the SUB socket connected to `pub` (linger 0), stops and closes
  /// its monitor and cancels its pending repair and backoff. Events that
  /// arrived on it and were not read yet are dropped; none from it reach
  /// the listener after this ran. An endpoint without a SUB: nothing.
  /// Thread-safe; queued like the other commands.
  void disconnect_peer(std::string pub);

  /// Queues `reply` to the peer `to` of a control request whose answer
  /// `pump_listener::on_control_request` deferred. Never blocks. A peer
  /// that disconnected meanwhile gets nothing: the reply is dropped (the
  /// requester's timeout asks again).
  void reply(const control_peer& to, std::string reply);

  /// The endpoint the control ROUTER socket is bound to.
  const std::string& control_endpoint() const noexcept {
    return control_endpoint_;
  }

  /// Adds a ZeroMQ prefix subscription on every SUB socket, and on every
  /// one `connect_peer` makes later. Subscribing one prefix twice counts
  /// twice at the peers' XPUB (ZeroMQ's rule). Thread-safe; queued.
  void subscribe(std::string prefix);

  /// Waits until at least `n` subscriptions to event topics reached the
  /// XPUB socket (heartbeat subscriptions do not count), or `timeout`
  /// passes. Returns whether they did.
  bool wait_for_subscriptions(int64_t n, std::chrono::milliseconds timeout);

  /// Counters.
  const pump_stats& stats() const noexcept;

  /// The sockets open now (see `socket_counts`). Thread-safe: the pump
  /// thread updates them as it runs the commands, so a count reflects a
  /// command only once the pump ran it.
  socket_counts sockets() const noexcept;

  /// Stops the thread, flushing queued sends up to the linger time
  /// (requests on control DEALERs: up to 200 ms of it).
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
