#pragma once

/// The inside of a `herald::node`, shared by the runtime's source files:
///
/// | file                    | what it holds                                 |
/// |-------------------------|-----------------------------------------------|
/// | `node.cpp`              | `node::start` and its steps, stop, accessors |
/// | `event_bus.cpp`         | publish, subscribe, observe                   |
/// | `dispatch.cpp`          | commit callback, live events to consumers,    |
/// |                         | the consumer actors                           |
/// | `replay.cpp`            | heartbeats, control requests, replays         |
/// | `peers.cpp`             | peers: frame limit, silence, disconnects      |
/// | `cluster.cpp`           | membership: self record, gossip, wiring that  |
/// |                         | follows it, leaving, its health and metrics   |
/// | `dead_letter_admin.cpp` | dlq requests, list, redrive, purge, parking   |
/// | `publish_admin.cpp`     | `publish` requests: append, ack once durable, |
/// |                         | remember request ids (`publish_admin`)        |
/// | `alerts.cpp`            | raising an alert and its hook                 |
/// | `node_metrics.cpp`      | `/metrics` in Prometheus' text format         |
/// | `status.cpp`            | `herald status` and `/healthz`: positions and |
/// |                         | what is degraded now                          |
/// | `groups.cpp`            | consumer groups: the leases of this node's    |
/// |                         | stream, `group.lease`, consumers' requests    |
/// | `group_admin.cpp`       | operating groups: `group.describe`,           |
/// |                         | `group.reset`                                 |
///
/// Thread safety. A node is used from the caller's threads (publish,
/// subscribe, dlq operations), the transport pump thread (events,
/// heartbeats, control requests and replies), the log's committer thread
/// (`on_commit`), the retention thread, the HTTP server's threads
/// (metrics) and CAF's scheduler threads (the actors' callbacks: replay,
/// offsets, dead letters, alerts). The fields are grouped below under the
/// mutex that guards them; fields under "set at start" are written only by
/// `node::start` before any other thread runs, and read freely afterwards.
///
/// Lock order: `consumers_mtx` before `redrive_mtx` and before a
/// consumer's `consumer_stats::positions_mtx`; `retention_mtx` before
/// `store_mtx`; `group_feed_mtx` before `consumers_mtx`; `groups_mtx` before
/// `store_mtx` (the lease table reads and writes the log's offsets);
/// `publish_mtx` before the mutex of `publisher` (with fsync `os` the log may
/// call `on_commit` inside `append`). Every other mutex here is a leaf: nothing
/// else of the node's is locked while it is held. `publish_mtx` is held while
/// the event log takes its own queue lock
/// (`event_log::append`), and `consumers_mtx` while the pump takes its command
/// lock (`pump::subscribe`); neither of those calls back into the node but for
/// that `on_commit`.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <spdlog/logger.h>

#include "group_feed.hpp"
#include "group_letters.hpp"
#include "herald/actors/consumer.hpp"
#include "herald/actors/dead_letters.hpp"
#include "herald/core/catalog.hpp"
#include "herald/core/codec.hpp"
#include "herald/runtime/control.hpp"
#include "herald/runtime/node.hpp"
#include "herald/store/event_log.hpp"
#include "herald/transport/pump.hpp"
#include "metrics.hpp"

namespace herald {

namespace cluster {
class membership;
struct member_change;
} // namespace cluster

class publish_admin;
class history_file;
class test_hooks;
class group_leases;

/// The consumer name of tools that watch the bus (`event_bus::observe`).
inline constexpr std::string_view observer_name = "herald.observer";

/// One consumer actor of the node and what routes events to it.
struct consumer_entry {
  std::string name;
  /// Everything the consumer subscribed to: routes batches to it.
  std::vector<pattern> patterns;
  caf::actor actor;
  std::shared_ptr<consumer_stats> stats;
  /// Where its function handlers run; null with `concurrency: 0`.
  std::shared_ptr<handler_pool> pool;
};

/// Makes the lease table of the node's own stream (groups.cpp): a step of
/// `node::start`, after the log is open and the incarnation raised.
caf::error start_groups(node::impl& p);

/// A consumer's lease request sent to another stream's owner, waiting for
/// its reply.
struct pending_lease {
  /// The consumer actor to answer.
  caf::actor to;
  std::chrono::steady_clock::time_point sent;
  lease_request req;
  /// The owner's control endpoint the request went to: a reply from any
  /// other is not taken.
  std::string endpoint;
};

/// A replay request sent (or served here), waiting for its reply. A reply
/// is taken only from `endpoint` (empty: this node's own stream), for
/// `stream`, with events of `stream` only, in seq order, from `from` on,
/// at most `max` of them (replay_reply_problem).
struct pending_replay {
  /// The consumer actor to answer.
  caf::actor to;
  std::string stream;
  std::string endpoint;
  uint64_t from = 0;
  size_t max = 0;
};

/// What is wrong with `r` as the answer to `p`: empty when it matches
/// (stream, events of that stream only, seqs ascending within
/// [`p.from`, `r.next`), at most `p.max`, none past `r.head`).
std::string replay_reply_problem(const pending_replay& p,
                                 const replay_reply& r);

/// Makes the node's membership (cluster.cpp): a step of `node::start`,
/// after the pump and the HTTP server (their endpoints are announced).
caf::error start_membership(node::impl& p);

/// The texts of `c`'s patterns, each once (a pattern both configured and
/// subscribed to is listed once), in the order first seen.
std::vector<std::string> pattern_texts(const consumer_entry& c);

/// Makes the threads the actor system of `cfg` starts (its scheduler's
/// workers and timer) known as actor threads (event_bus.cpp).
void mark_actor_threads(caf::actor_system_config& cfg);

/// Whether the calling thread is one an actor system started (see
/// `mark_actor_threads`): `publish` never waits for room there.
bool on_actor_thread() noexcept;

/// Checks that `consumer` may subscribe to `p`: for an exact event name,
/// the catalog must know the event and list the consumer. Fails with
/// `errc::unknown_event` or `errc::catalog_violation` naming both.
caf::error check_subscription(const catalog& cat, const pattern& p,
                              std::string_view consumer);

/// What a node knows of a peer stream from its heartbeats.
struct peer_stream {
  /// Its PUB endpoint, as its heartbeat says; empty if it does not.
  std::string pub;
  /// Its `transport.max_message_size`; 0 if its heartbeat does not say.
  uint64_t max_message_size = 0;
  std::chrono::steady_clock::time_point last_heartbeat;
  /// When this node last sent it a `hello`.
  std::chrono::steady_clock::time_point last_hello;
  /// Its limit differs from this node's: its events and heartbeats are
  /// not taken, and no replay is asked of it.
  bool refused = false;
  /// Its heartbeats stopped (logged once, until they resume).
  bool silent = false;
};

/// What a node connected to for one member (cluster.cpp).
struct wired_member {
  std::string pub;
  std::string control;
  std::string stream;
};

/// The stream and control endpoint of the member behind a PUB endpoint.
struct member_endpoint {
  std::string stream;
  std::string control;
};

/// A peer's `hello` that named another `max_message_size` than this
/// node's.
struct hello_mismatch {
  uint64_t max_message_size = 0;
  std::chrono::steady_clock::time_point last;
};

struct node::impl : transport::pump_listener {
  // --- Set at start, read-only afterwards -------------------------------
  node_config cfg;
  catalog cat;
  std::shared_ptr<spdlog::logger> log;
  std::function<int64_t()> clock;
  std::string stream;
  decode_limits limits;
  /// The node this is the inside of (its bus publishes alerts).
  node* front = nullptr;
  std::unique_ptr<caf::actor_system_config> sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  /// Stopped by `shutdown` after the actors and the log: every thread that
  /// uses it has ended by then.
  std::unique_ptr<transport::pump> pump;
  /// The dead-letter and alert actors, shared by the node's consumers.
  caf::actor dead_letter_actor;
  caf::actor alert_actor;
  /// `/metrics` and `/healthz`, when `metrics.listen` is set.
  std::unique_ptr<metrics::http_server> http;
  /// The parsed `subscribe` patterns of each configured consumer.
  std::map<std::string, std::vector<pattern>, std::less<>> service_patterns;
  /// Serves `publish` control requests (made before the pump starts; it
  /// guards its own state).
  std::unique_ptr<publish_admin> publisher;
  /// This start's incarnation (`raise_incarnation`).
  uint64_t incarnation = 0;
  /// Where the history goes (config `record`); null when off. Thread-safe.
  std::shared_ptr<history_file> history;
  /// The test hooks (config `test_hooks`); null when off. Guards its own
  /// state.
  std::shared_ptr<test_hooks> hooks;

  // --- Atomics ------------------------------------------------------------
  std::atomic<bool> running{false};
  std::atomic<uint64_t> control_errors{0};
  /// Peers met whose `transport.max_message_size` differs from this node's.
  std::atomic<uint64_t> limit_mismatches{0};
  /// Peer streams refused for their limit (the fast path of `on_events`).
  std::atomic<size_t> refused_streams{0};
  /// Events and heartbeats refused because the connection they came on is
  /// not their stream's owner's.
  std::atomic<uint64_t> foreign_refused{0};
  /// Connections peers made to this node that ended.
  std::atomic<uint64_t> inbound_disconnects{0};
  /// Heartbeats naming a new peer stream refused at
  /// `transport.max_peer_streams`; whether one was logged.
  std::atomic<uint64_t> peer_streams_refused{0};
  std::atomic<bool> peer_streams_logged{false};
  /// Replay requests refused because their client's unread replies filled
  /// its backlog (`transport.control_backlog_bytes`); whether one was
  /// logged.
  std::atomic<uint64_t> replays_refused{0};
  std::atomic<bool> replays_refused_logged{false};
  /// Whether the pump closing a DEALER at `transport.max_control_sockets`
  /// was logged.
  std::atomic<bool> control_evicted_logged{false};
  /// Live events held by the consumers while their streams catch up, in
  /// bytes, and the bounds on them (set at start from `transport`).
  std::shared_ptr<held_budget> held = std::make_shared<held_budget>();
  /// Events published, per catalog event (index as in `cat.events()`).
  std::unique_ptr<std::atomic<uint64_t>[]> published;

  // --- Guarded by store_mtx -------------------------------------------------
  // Shared by readers (replay, dlq, metrics, retention); exclusive only
  // when shutdown closes the log while the pump may still serve a replay.
  // `publish` and the actors' offset callbacks use the log without it:
  // they run only while `running` and the actors live, both ended before
  // the log closes.
  std::shared_mutex store_mtx;
  std::unique_ptr<store::event_log> log_store;

  // --- Guarded by publish_mtx: one stream order -----------------------------
  std::mutex publish_mtx;
  uint64_t seq = 0;
  std::vector<uint64_t> type_seqs;

  // --- Guarded by heads_mtx -------------------------------------------------
  // Per-type heads of what was handed to the pump: what heartbeats report.
  // Updated after the events are queued, so a heartbeat never counts an
  // event that was not sent before it.
  std::mutex heads_mtx;
  std::unordered_map<std::string, uint64_t, string_hash, std::equal_to<>>
    sent_type_heads;
  uint64_t sent_head = 0;

  // --- Guarded by peers_mtx -------------------------------------------------
  std::mutex peers_mtx;
  /// Streams of peers: their control endpoints, learned from heartbeats.
  std::unordered_map<std::string, std::string> peer_control;
  /// Replay requests in flight, by id; one per (consumer, stream): a
  /// request replaces the one before it.
  std::unordered_map<uint64_t, pending_replay> pending;
  /// Lease requests in flight to other streams' owners, by id (with
  /// `control::group_id_bit`); dropped after 10 s without a reply.
  std::unordered_map<uint64_t, pending_lease> pending_leases;
  uint64_t next_request = 0;
  /// Peer streams heard from, by stream id.
  std::unordered_map<std::string, peer_stream, string_hash, std::equal_to<>>
    peer_streams;
  /// Peers whose hello named another limit, by their stream.
  std::map<std::string, hello_mismatch> hello_mismatches;
  /// Connections this node made that ended, by the peer's endpoint.
  std::map<std::string, uint64_t> peer_disconnects;
  /// Members this node is connected to, by name (cluster.cpp).
  std::map<std::string, wired_member, std::less<>> wired;
  /// The same by PUB endpoint: a heartbeat read there names the stream
  /// the member announced, and its control endpoint is the member's.
  std::unordered_map<std::string, member_endpoint, string_hash, std::equal_to<>>
    member_pubs;
  /// Static peers' connections (config `peers`), by PUB endpoint: the
  /// stream their last heartbeat named, the only one taken from there.
  std::unordered_map<std::string, std::string, string_hash, std::equal_to<>>
    static_streams;
  /// (connection, stream) pairs refused as foreign, logged once each.
  std::set<std::pair<std::string, std::string>> foreign_logged;

  // --- Guarded by groups_mtx (before store_mtx) ------------------------------
  // The leases and committed offsets of consumer groups on this node's own
  // stream; made by `start_groups`, before the pump serves requests.
  std::mutex groups_mtx;
  std::unique_ptr<group_leases> leases;
  /// The groups' dead letters of this node's stream (made with `leases`).
  std::unique_ptr<group_letters> letters;
  /// Quota alerts to raise once groups_mtx is released.
  std::vector<quota_reached> quota_alerts;

  // --- Guarded by members_mtx (a leaf but for the pump's command lock) ------
  std::mutex members_mtx;
  /// Made by `start_membership`; null before (see `has_membership`).
  std::unique_ptr<cluster::membership> membership;
  /// Set once `membership` is made: other threads may use it then.
  std::atomic<bool> membership_ready{false};
  /// The local consumers changed: announce and rewire at the next tick.
  std::atomic<bool> self_changed{false};
  /// `leave_cluster` ran: no more gossip.
  std::atomic<bool> left{false};

  // --- Guarded by group_feed_mtx (taken before consumers_mtx, never with
  // members_mtx)
  // --------------------------------------------------------------- What
  // `feed_group_members` last told each consumer, and the groups' members
  // as membership shows them (made at the first tick).
  std::mutex group_feed_mtx;
  std::map<std::string, std::vector<std::string>> group_members_sent;
  std::optional<group_feed> groups_view;

  // --- Guarded by consumers_mtx (shared to read, exclusive to change) -------
  mutable std::shared_mutex consumers_mtx;
  std::vector<consumer_entry> consumers;
  /// Prefixes subscribed on the SUB socket.
  std::set<std::string> prefixes;
  /// Where the observer (`observer_name`) starts; set by the first
  /// `observe` call, before the observer's actor is made.
  observe_options observer_start;

  // --- Guarded by commit_failures_mtx ---------------------------------------
  // Commit groups that failed and were not logged one by one: while the
  // disk is full every group fails (hundreds a second), so the first
  // failure is logged, then one summary line every `commit_failure_log_every`
  // at most, and one when a group is written again. `commit_failing` tells
  // a healthy commit that there is nothing to do without taking the lock.
  std::mutex commit_failures_mtx;
  std::atomic<bool> commit_failing{false};
  std::chrono::steady_clock::time_point commit_failure_logged{};
  uint64_t unlogged_failed_groups = 0;
  uint64_t unlogged_failed_events = 0;

  // --- Guarded by redrive_mtx -----------------------------------------------
  // Dead letters handed back to their consumer and not finished yet: a
  // second redrive does not send them twice.
  std::mutex redrive_mtx;
  std::set<uint64_t> redriving;

  // --- Guarded by retention_mtx ---------------------------------------------
  // Retention (and giving memory back when idle) runs on its own thread,
  // woken to stop.
  std::mutex retention_mtx;
  std::condition_variable retention_cv;
  bool retention_stop = false;
  std::thread retention_thread;
  /// What `trim_when_idle` saw last (events published, received and
  /// finished, summed), and at which such sum it last trimmed.
  uint64_t last_activity = 0;
  uint64_t trimmed_at = 0;

  /// How often the node looks whether it is idle, to give memory back.
  static constexpr std::chrono::seconds idle_trim_period{1};

  /// Most live events waiting in one consumer's mailbox.
  static constexpr uint64_t max_backlog = 16384;

  ~impl() override;

  // node.cpp: stopping and retention.
  void shutdown();
  void run_retention();
  void trim_when_idle();

  // dispatch.cpp: live events to the consumers, and the consumer actors.
  // `from` (the peer's PUB endpoint) is not used yet: the membership will
  // bind each stream to the connection of its owner.
  void on_events(event_batch& batch, std::string_view from) override;
  void on_bad_frame(const caf::error& why) override;
  void on_io_error(const caf::error& why) override;
  void on_commit(std::vector<store::record>& group, const caf::error& err);
  // Logs a failed commit group of `events`, or counts it for the next
  // summary line (see `commit_failures_mtx`).
  void log_commit_failure(size_t events, const caf::error& err);
  // Logs what was not logged of the failures, once a group commits again.
  void log_commit_recovery();
  bool has_room(const consumer_entry& c, size_t n) const;
  void dispatch(event_batch&& batch);
  bool selected_locally(std::string_view type) const;
  consumer_entry& consumer(const std::string& name);
  void subscribe_prefix(const std::string& prefix);

  // replay.cpp: heartbeats, control requests and the replay protocol.
  std::string make_heartbeat() override;
  void on_heartbeat(std::string_view body, std::string_view from) override;
  void broadcast_heartbeat(const stream_heartbeat& hb);
  std::optional<std::string>
  on_control_request(std::string_view request,
                     const transport::control_peer& from) override;
  std::string refuse(uint64_t id, std::string req_stream, std::string why);
  std::string serve(const control::replay_request& r,
                    const transport::control_peer& from);
  void on_control_reply(std::string_view endpoint,
                        std::string_view body) override;
  std::string replay_reply_bytes(uint64_t id, uint64_t from, uint64_t max,
                                 const std::vector<pattern>& patterns,
                                 std::optional<uint64_t> since);
  size_t transport_max_batch() const;
  caf::expected<replay_reply> parse_reply(std::string_view body);
  void deliver_reply(replay_reply r, std::string_view endpoint);
  uint64_t request_replay(const std::string& req_stream, uint64_t from,
                          size_t max, const std::vector<pattern>& patterns,
                          std::optional<int64_t> since_us,
                          const caf::actor& reply_to);

  // peers.cpp: agreement on the frame limit, silent peers, connections.
  bool note_heartbeat(const control::heartbeat& hb);
  std::string serve(const control::hello_request& r);
  std::string serve(const control::test_hooks_request& r);
  bool on_hello_reply(std::string_view body);
  void drop_refused(event_batch& batch);
  void drop_foreign(event_batch& batch, std::string_view from);
  bool claim_static(std::string_view from, std::string_view stream);
  void refuse_foreign(std::string_view from, std::string_view stream,
                      std::string_view carried, std::string_view what);
  void check_peers();
  std::vector<std::string> peer_problems();
  void on_disconnect(const transport::peer_event& e) override;
  void on_control_closed(std::string_view endpoint,
                         std::string_view why) override;
  void forget_peer_stream(const std::string& id);
  std::chrono::steady_clock::duration silence_after() const;

  // dead_letter_admin.cpp: `herald dlq` requests and parked entities.
  std::string serve(const control::dlq_list_request& r);
  std::string serve(const control::dlq_show_request& r);
  std::string serve(const control::dlq_redrive_request& r);
  std::string serve(const control::dlq_purge_request& r);
  caf::expected<std::vector<uint64_t>>
  purge_letters(const std::vector<store::dead_letter>& letters, bool dry_run);
  caf::error record_redrive(const std::vector<uint64_t>& ids,
                            std::string_view by);
  std::vector<std::pair<std::string, uint64_t>>
  parked_entities(const std::string& consumer);

  // cluster.cpp: membership.
  bool has_membership() const noexcept {
    return membership_ready.load(std::memory_order_acquire);
  }
  control::cluster_member self_record();
  void on_tick(std::chrono::steady_clock::time_point now) override;
  std::string serve_gossip(const control::request& req);
  std::string serve(const control::gossip_sync_request& r);
  std::string serve(const control::gossip_ping& r);
  std::string serve(const control::gossip_probe& r);
  std::string serve(const control::members_request& r);
  bool on_gossip_reply(std::string_view endpoint, std::string_view body);
  bool selects_from(const control::cluster_member& m) const;
  void rewire(const std::vector<cluster::member_change>& changes);
  void rewire_all();
  void wire(const control::cluster_member& m);
  bool from_member(control::heartbeat& hb, std::string_view from);
  void leave_cluster();
  std::map<std::string, std::string, std::less<>> owner_problems();
  std::optional<std::string> join_problem();
  void write_cluster_metrics(metrics::text_writer& w);

  // groups.cpp: consumer groups.
  lease_reply serve_lease(const lease_request& r);
  std::string serve(const control::group_lease_request& r);
  uint64_t request_lease(lease_request req, const caf::actor& reply_to);
  bool on_group_reply(std::string_view endpoint, std::string_view body);
  void feed_group_members(std::chrono::steady_clock::time_point now);
  void record_commits(const lease_request& req, const lease_reply& reply);

  // group_admin.cpp: operating consumer groups.
  std::string serve(const control::group_describe_request& r);
  std::string serve(const control::group_reset_request& r);
  caf::error count_lag(control::group_describe_reply& out,
                       const std::vector<pattern>& patterns);

  // alerts.cpp.
  void raise_alert(const raised_alert& a);
  /// Raises the alert of a group whose dead letters at this owner reached
  /// `groups.dead_letter_quota` (groups.cpp).
  void raise_quota_alert(const quota_reached& q);
  void run_hook(const std::string& command, const payload& alert);

  // node_metrics.cpp.
  std::string render_metrics();

  // status.cpp: `herald status` and `/healthz`.
  control::status_reply status(bool count_dead_letters);
  std::string serve(const control::status_request& r);
  std::pair<bool, std::string> health();
  void write_peer_metrics(metrics::text_writer& w);
};

} // namespace herald
