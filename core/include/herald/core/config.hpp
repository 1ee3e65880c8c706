#pragma once

/// The node configuration, loaded from YAML.
///
/// ```yaml
/// node: email-node                 # required: the node's name
/// service: EmailService            # the service this node runs; `source`
///                                  # of its events and the consumer name
///                                  # `bus.subscribe` uses. Default: node name
/// bind: tcp://127.0.0.1:*          # PUB endpoint; `*` picks a free port
/// advertise: tcp://127.0.0.1:5601  # endpoint peers connect to. Default:
///                                  # the bound endpoint
/// peers: [tcp://127.0.0.1:5600]    # PUB endpoints this node subscribes to
/// catalog: events.yaml             # relative to this file. Required
/// log_level: info                  # trace|debug|info|warn|error|critical|off
/// log:
///   level: info                    # the same as log_level
///   format: text                   # text|json. Default text
/// metrics:
///   listen: 127.0.0.1:9464         # /metrics and /healthz. Default: off;
///                                  # port 0 picks a free port
/// data_dir: data/email-node        # the durable log and offsets. Default:
///                                  # data/<node>, relative to the working dir
/// control: tcp://127.0.0.1:*       # control (replay) endpoint to bind
/// store:
///   fsync: batch                   # always|batch|os. Default batch
///   retention: 7d                  # how long events are kept. Default 7d
///   retention_check: 1m            # how often expired events are deleted
///   max_pending_bytes: 33554432    # events queued for the disk, in bytes;
///                                  # publish waits or refuses beyond it.
///                                  # Default 32 MiB, at least 4 KiB
///   publish_timeout: 10s           # how long publish on a plain thread
///                                  # waits for room; 0: never. Default 10s
/// transport:
///   hwm: 100000                    # SNDHWM/RCVHWM in messages. Default 100000
///   max_message_size: 1048576      # the largest frame; one value on every
///                                  # node. Default 1 MiB, at least 64 KiB
///   heartbeat_ms: 1000             # ZMTP heartbeat interval. Default 1000
///   stream_heartbeat_ms: 200       # stream head heartbeat. Default 200
/// consumers:
///   EmailService:
///     subscribe: [user.account.created]
///     shards: 8                    # ordering shards. Default 8
///     entity_buffer: 1024          # events one entity may queue. Default 1024
///     retry:                       # see retry_policy
///       attempts: 3
///       initial: 200ms
///       max: 10s
///       jitter: 0.2
///       types:                     # per event type, over the above
///         user.account.deleted: {attempts: 5}
///     dead_letter: continue        # continue|park. Default continue
///     concurrency: 64              # handler calls at once, on the
///                                  # consumer's own threads; 0 runs them
///                                  # on the shards. Default 64
///     handler_timeout: 30s         # an attempt that takes longer fails.
///                                  # Default 30s
///     restarts: {max: 5, within: 1m}  # a dead service actor is restarted
///                                  # at most max times within; then the
///                                  # consumer pauses for `within`
///     alert: {dead_letters: 10, window: 5m, command: notify-oncall.sh}
/// record: out/history/email-node.jsonl  # append what each consumer
///                                  # handled and its offset commits (the
///                                  # harness' history, docs/harness.md).
///                                  # Default: off
/// test_hooks:                      # faults for tests; never in production.
///   fail_keys: [KEY]               # handling events of these keys fails
///   slow_keys: {KEY: 200ms}        # handling them waits first
///   commit_before_handle: false    # a deliberately wrong consumer
/// ```
///
/// Unknown keys and bad values are errors naming the key and the file.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>
#include <spdlog/common.h>

namespace herald {

/// The smallest `transport.max_message_size` a config may set: 64 KiB, the
/// size of the pump's live batches.
inline constexpr size_t min_max_message_size = 64 * 1024;

/// Room kept in every frame for the fields of a replay reply around its
/// envelopes: an envelope may be at most `max_message_size` minus this.
inline constexpr size_t frame_reserve = 16 * 1024;

/// The transport settings of a node.
struct transport_config {
  /// ZMQ_SNDHWM and ZMQ_RCVHWM, in messages. Default: 100000.
  int hwm = 100000;
  /// The largest frame a node sends or takes, in bytes: ZMQ_MAXMSGSIZE of
  /// every socket and the decoder's maximum frame. One PUB frame goes to
  /// every subscriber, so this is one value every node of a deployment
  /// shares: heartbeats carry it, and a node that hears a different value
  /// refuses that peer (see docs/operations.md). Publishing refuses an
  /// envelope over `max_envelope_size()`. Default: 1 MiB.
  /// REQUIRES: at least `min_max_message_size`.
  size_t max_message_size = 1024 * 1024;

  /// The largest envelope `publish` accepts: `max_message_size` minus
  /// `frame_reserve`, so that a replay reply carrying it fits one frame.
  size_t max_envelope_size() const noexcept {
    return max_message_size > frame_reserve ? max_message_size - frame_reserve
                                            : 0;
  }

  /// ZMTP heartbeat interval (ZMQ_HEARTBEAT_IVL); timeout is three times it.
  /// Default: 1000 ms.
  std::chrono::milliseconds heartbeat{1000};
  /// How often the node publishes its stream's head (so consumers notice a
  /// gap at the tail). Default: 200 ms.
  std::chrono::milliseconds stream_heartbeat{200};

  // --- Bounds on what peers and clients make a node keep (issue 17) -----

  /// The most DEALER sockets the node keeps to other nodes' control
  /// endpoints (replays, hellos, gossip, leases). A request to a new
  /// endpoint at the bound closes the one used least recently first
  /// (counted in `herald_control_sockets_evicted_total`, logged once).
  /// libzmq opens at most 1,023 sockets per node, two per DEALER with its
  /// monitor. Default: 128. REQUIRES: positive, at most 400.
  size_t max_control_sockets = 128;
  /// A DEALER to a control endpoint that sent and received nothing for
  /// this long is closed (a later request makes a new one). Default:
  /// 300,000 ms (5 min). REQUIRES: positive.
  std::chrono::milliseconds control_idle{300000};
  /// Peer streams the node keeps track of at once (heartbeats, control
  /// endpoints). A heartbeat naming a new stream beyond it is ignored,
  /// counted in `herald_peer_streams_refused_total` and logged once.
  /// Default: 1024. REQUIRES: positive.
  size_t max_peer_streams = 1024;
  /// ZMQ_SNDHWM of the control ROUTER, in messages: replies queued inside
  /// libzmq per client. Default: 16. REQUIRES: positive.
  int control_send_hwm = 16;
  /// Reply bytes the node keeps per control client beyond
  /// `control_send_hwm` while that client does not read. A replay request
  /// whose reply would not fit is refused with an error naming this key;
  /// other replies that do not fit are dropped and counted. Default:
  /// 8 MiB. REQUIRES: at least `max_message_size`.
  size_t control_backlog_bytes = size_t{8} << 20;
  /// Live events a consumer holds while a stream catches up (out of order,
  /// waiting for a replay), in envelope bytes, per consumer and stream.
  /// Beyond it they are dropped and counted: the replay brings them.
  /// Default: 64 MiB. REQUIRES: positive.
  size_t max_held_bytes_per_stream = size_t{64} << 20;
  /// The same over all consumers and streams of the node. Default:
  /// 256 MiB. REQUIRES: positive.
  size_t max_held_bytes = size_t{256} << 20;
};

/// The most `transport.max_control_sockets` may be: two sockets each (the
/// DEALER and its monitor) must leave room under libzmq's 1,023.
inline constexpr size_t max_max_control_sockets = 400;

/// The durable log settings of a node.
struct store_config {
  /// `always`, `batch` or `os` (see herald::store::fsync_policy).
  /// Default: `batch`.
  std::string fsync = "batch";
  /// How long events are kept. Default: 7 days.
  std::chrono::microseconds retention = std::chrono::hours{24 * 7};
  /// How often expired events are deleted. Default: 1 minute.
  std::chrono::microseconds retention_check = std::chrono::minutes{1};
  /// The most bytes of events published and not yet written to the log
  /// (envelopes queued for the disk): the bound that keeps a publisher
  /// faster than the disk from growing the node's memory. At the bound,
  /// `publish` waits for room on a plain thread (at most
  /// `publish_timeout`) and fails at once with `errc::would_block` on the
  /// node's actor threads and its control endpoint. Default: 64 MiB.
  /// REQUIRES: at least `min_max_pending_bytes`.
  size_t max_pending_bytes = size_t{32} << 20;
  /// How long `publish` on a plain thread waits for room under
  /// `max_pending_bytes` before it fails with `errc::would_block`; 0 never
  /// waits. Default: 10 s.
  std::chrono::microseconds publish_timeout = std::chrono::seconds{10};
};

/// The smallest `store.max_pending_bytes` a config may set: 4 KiB.
inline constexpr size_t min_max_pending_bytes = 4096;

/// Parses a duration such as `7d`, `12h`, `30m`, `45s`, `500ms` or
/// `250us`. Fails with `errc::invalid_config` naming the text.
caf::expected<std::chrono::microseconds> parse_duration(std::string_view text);

/// How a failed handler is retried: attempt n+1 comes `initial * 2^(n-1)`
/// after attempt n failed, times a random factor in [1 - jitter,
/// 1 + jitter], at most `max`.
struct retry_policy {
  /// Attempts in all, the first included. Default: 3.
  int attempts = 3;
  /// Delay before the second attempt; doubles each time. Default: 200ms.
  std::chrono::microseconds initial = std::chrono::milliseconds{200};
  /// Upper bound on one delay. Default: 10s.
  std::chrono::microseconds max = std::chrono::seconds{10};
  /// Relative spread of a delay, in [0, 1). Default: 0.2 (±20 %).
  double jitter = 0.2;

  /// The delay before attempt `next` (2 for the first retry), for a random
  /// `unit` in [0, 1).
  std::chrono::microseconds delay(int next, double unit) const;
};

/// What happens to an entity once one of its events is dead-lettered.
enum class dead_letter_policy {
  /// Its next event is handled as usual.
  continue_,
  /// Its later events are dead-lettered too, unhandled, until its dead
  /// letters are redriven: order is never broken.
  park,
};

/// When a consumer raises an alert: `dead_letters` or more dead letters
/// within `window`.
struct alert_rule {
  /// The threshold; 0 means no alert. Default: 0.
  uint64_t dead_letters = 0;
  /// Default: 5 minutes.
  std::chrono::microseconds window = std::chrono::minutes{5};
  /// A command run with `/bin/sh -c` when the alert is raised, with the
  /// alert in HERALD_ALERT_* environment variables. Default: none.
  std::string command;
};

/// Formats a duration the way `parse_duration` reads it, in the largest
/// unit that divides it: `7d`, `5m`, `1500ms`.
std::string format_duration(std::chrono::microseconds d);

/// How often a consumer restarts its service actor (`node::attach`) when
/// it dies: at most `max` restarts within `within`. One more death within
/// that period pauses the consumer (it reads nothing and calls no handler)
/// for `within`; then the service is started again.
struct restart_policy {
  /// Restarts allowed within `within`. Default: 5.
  int max = 5;
  /// The period restarts are counted in, and how long the consumer pauses
  /// once they are exceeded. Default: 1 minute.
  std::chrono::microseconds within = std::chrono::minutes{1};
};

/// Faults a node injects into its own handling, for tests and the harness
/// (`herald harness`, docs/harness.md). A node whose config has
/// `test_hooks` (even empty) logs a warning at start and accepts the
/// control op `test.hooks`, which replaces `fail_keys` and `slow_keys` while
/// it runs; any other node refuses that op. Applied to every consumer of
/// the node, to function handlers (`bus().subscribe`) and service actors
/// (`node::attach`) alike, before the handler sees the event.
struct test_hooks_config {
  /// Whether the config has `test_hooks` at all. Default: false.
  bool enabled = false;
  /// Entity keys whose every attempt fails (the event ends as a dead
  /// letter: a poison event). Default: none.
  std::vector<std::string> fail_keys;
  /// Entity keys whose every attempt waits this long before the handler is
  /// called (on a pool thread; a service actor is blocked meanwhile).
  /// Default: none.
  std::vector<std::pair<std::string, std::chrono::microseconds>> slow_keys;
  /// A deliberately wrong consumer: each event counts as finished, and
  /// its offset may be committed, as soon as it is handed to a shard,
  /// before its handler runs. A kill then loses events; the harness must
  /// catch it. Default: false.
  bool commit_before_handle = false;
  /// Seqs of live events this node drops on receipt, as PUB/SUB drops
  /// them under load (every stream): what gap repair must make up for.
  /// Set in code only (tests); not read from a config file. Default: none.
  std::vector<uint64_t> drop_live_seqs;
};

/// One consumer of a node.
struct consumer_config {
  /// The consumer (service) name, e.g. `EmailService`.
  std::string name;
  /// Subscription patterns (see names.hpp).
  std::vector<std::string> subscribe;
  /// Ordering shards: entities are spread over them by key; one entity's
  /// events are handled one at a time, in order. Default: 8.
  size_t shards = 8;
  /// Events one entity may have waiting behind a retry before its stream
  /// is paused. Default: 1024.
  size_t entity_buffer = 1024;
  /// Retries of a failed handler.
  retry_policy retry;
  /// Per event type overrides of `retry`.
  std::vector<std::pair<std::string, retry_policy>> retry_by_type;
  /// Default: continue.
  dead_letter_policy on_dead_letter = dead_letter_policy::continue_;
  /// Default: none.
  alert_rule alert;
  /// Function handlers (`bus().subscribe`) called at once at most, each on
  /// a thread of the consumer's own pool, never on the actor system's
  /// threads: a handler that waits on I/O (SMTP, HTTP, a database) holds
  /// one of them and nothing else. One entity still has at most one event
  /// in a handler at a time. 0 calls the handlers on the consumer's shards
  /// instead: the fastest way for handlers that never block, and the way
  /// to stall the node with one that does. REQUIRES: at most 1024.
  /// Default: 64.
  size_t concurrency = 64;
  /// How long one attempt may take: a function handler that has not
  /// returned, or a service actor that has not answered, by then fails the
  /// attempt (retried as any failure). A function handler's call is not
  /// interrupted: the entity's next attempt waits until it returns, and
  /// what it returns is ignored. Default: 30 s.
  std::chrono::microseconds handler_timeout = std::chrono::seconds{30};
  /// Restarts of the service actor. Default: 5 within 1 minute.
  restart_policy restarts;
  /// How long a stream's committed offset may stay put while events of it
  /// wait before the consumer is reported stalled (`/healthz` 503 and
  /// `herald status`; it clears when the offset moves). Longer than an
  /// event takes through its retries by default (3 attempts of up to
  /// `handler_timeout`, 30 s, with delays of at most 10 s); set it above
  /// that worst case when `retry` or `handler_timeout` are raised.
  /// REQUIRES: positive. Default: 5 minutes.
  std::chrono::microseconds stall_after = std::chrono::minutes{5};
  /// Partitions of the consumer's group (the instances of this consumer
  /// name on every node): an event's partition is
  /// `partition_of(key, partitions)` (core/partition.hpp), and each
  /// partition of each stream is handled by one member at a time, under a
  /// lease from the stream's owner. Every member of a group must give the
  /// same number: a member whose number differs from the group's is
  /// refused its leases and says why. REQUIRES: 1 to 4096. Default: 64.
  uint32_t partitions = 64;

  /// The retry policy for events of `type`.
  const retry_policy& retry_for(std::string_view type) const;
};

/// Cluster membership settings (`cluster:` in a node's config). See
/// docs/operations.md and docs/architecture.md, "Membership".
struct cluster_config {
  /// The cluster's name; nodes of another name are refused. Letters,
  /// digits, `.`, `_` and `-`. Default: `herald`.
  std::string name = "herald";
  /// Control endpoints (`tcp://HOST:PORT`) of members to join through.
  /// Default: none (a cluster of one until others join through it).
  std::vector<std::string> seeds;
  /// Not heard for this long: suspect. Default 1.5 s.
  std::chrono::microseconds suspect_after = std::chrono::milliseconds{1500};
  /// Not heard for this long: down (its connections closed). More than
  /// `suspect_after`. Default 3 s.
  std::chrono::microseconds down_after = std::chrono::seconds{3};
  /// How often every live member is pinged. Less than `suspect_after`.
  /// Default 500 ms.
  std::chrono::microseconds probe_interval = std::chrono::milliseconds{500};
  /// How often the whole view is synced with one member. Default 2 s.
  std::chrono::microseconds sync_interval = std::chrono::seconds{2};
  /// How long a down member is kept and probed. Default 1 h.
  std::chrono::microseconds reconnect_window = std::chrono::hours{1};
};

/// Consumer group settings (`groups:` in a node's config). See
/// docs/architecture.md, "Consumer groups", and docs/operations.md.
struct groups_config {
  /// How long a lease this node grants on a partition of its stream lasts
  /// without a renewal (its members renew it every third of it, with
  /// their offset commits). Also how long a partition nobody holds waits
  /// before a member it is not assigned to may take it, and how long this
  /// node grants no lease after a restart to a group that had members on
  /// other nodes. REQUIRES: 1 s to 10 min. Default: 6 s.
  std::chrono::microseconds lease_ttl = std::chrono::seconds{6};
  /// How long before its lease can expire a member stops taking a
  /// partition's events (and discards results that come later): covers
  /// a renewal's round trip and the clocks' drift. REQUIRES: positive
  /// and less than half of `lease_ttl`. Default: 1 s.
  std::chrono::microseconds lease_margin = std::chrono::seconds{1};
  /// How long a member that left on purpose (SIGTERM, a rolling restart)
  /// keeps its partitions assigned: one that comes back within it takes
  /// them again, so a restart moves nothing twice. A member that is down
  /// (killed, cut off) keeps nothing. REQUIRES: not negative. Default:
  /// 10 s.
  std::chrono::microseconds rejoin_grace = std::chrono::seconds{10};
  /// How many bytes of dead letters each consumer group may keep at this
  /// node, for its stream (a group's dead letters live with the stream's
  /// owner): a letter past it is refused, the member pauses the letter's
  /// partition until room is made (`herald dlq redrive|purge`), and an
  /// alert is raised. Counted as the letters' stored size. REQUIRES:
  /// positive. Default: 256 MiB.
  uint64_t dead_letter_quota = uint64_t{256} << 20;
};

/// Where the settings of a node config were read: the file and each
/// setting's line, so that an error found only when the node uses a
/// setting (a catalog file that cannot be read, an endpoint that cannot be
/// bound, a data directory that cannot be opened) names the file and line
/// as a problem found while loading does. Plain value: no thread safety of
/// its own.
struct config_origin {
  /// One setting as read from the file.
  struct setting {
    /// Its key path: `bind`, `advertise`, `control`, `peers` (one setting
    /// per endpoint), `catalog` (the path as resolved), `data_dir`,
    /// `metrics.listen`, `consumers.NAME.subscribe` (one per pattern).
    std::string key;
    /// The value read.
    std::string value;
    /// Its line in `file`, from 1.
    int line = 0;
  };

  /// The config file; empty for a config made in code. Default: empty.
  std::string file;
  /// The settings read from it. Default: none.
  std::vector<setting> settings;

  /// `FILE:LINE: ` where `key` was set to `value`; `FILE: ` when the file
  /// does not set it so; empty for a config made in code. A value changed
  /// since it was read (e.g. `--data-dir`) is not the file's: `FILE: ` then
  /// too.
  std::string place(std::string_view key, std::string_view value) const;

  /// `err` (same code; `errc::invalid_config` for an error of another
  /// category) with its place in front: `FILE:LINE: KEY: message`, or
  /// `KEY: message` for a config made in code; `KEY: ` is left out when
  /// the message starts with the key already.
  caf::error locate(std::string_view key, std::string_view value,
                    const caf::error& err) const;
};

/// The configuration of one node.
struct node_config {
  /// The node's name. REQUIRES: not empty.
  std::string name;
  /// The service this node runs. Default: the node's name.
  std::string service;
  /// The PUB endpoint to bind. Default: `tcp://127.0.0.1:*`.
  std::string bind = "tcp://127.0.0.1:*";
  /// The endpoint peers connect to. Default: the bound endpoint.
  std::string advertise;
  /// PUB endpoints of peers this node subscribes to.
  std::vector<std::string> peers;
  /// Path of the catalog; relative paths in a file are resolved against
  /// the file's folder. REQUIRES: not empty.
  std::string catalog;
  /// spdlog level name. Default: `info`.
  std::string log_level = "info";
  /// `text` or `json` (one JSON object per line). Default: `text`.
  std::string log_format = "text";
  /// Where the node's log lines go (set in code, not read from a file;
  /// e.g. a test's capturing sink). Use a thread-safe (`_mt`) sink.
  /// Default: null, stderr.
  spdlog::sink_ptr log_sink;
  /// `HOST:PORT` where `/metrics` and `/healthz` are served; port 0 picks a
  /// free one. Default: empty, no HTTP endpoint.
  std::string metrics_listen;
  /// Where the durable log and the offsets live. Default: `data/<node>`.
  std::string data_dir;
  /// The control endpoint to bind. Default: `tcp://127.0.0.1:*`.
  std::string control = "tcp://127.0.0.1:*";
  /// Membership (`cluster:`). Default: cluster `herald`, no seeds.
  cluster_config cluster;
  /// Consumer groups (`groups:`). Default: see `groups_config`.
  groups_config groups;
  /// Transport settings.
  transport_config transport;
  /// Durable log settings.
  store_config store;
  /// The consumers on this node.
  std::vector<consumer_config> consumers;
  /// Where the node appends its history (JSON Lines, format in
  /// docs/harness.md): one line per event a consumer finished (handled or
  /// dead-lettered), written before the event counts as done, and one per
  /// offset commit. Default: empty, no history.
  std::string record;
  /// Faults for tests. Default: none.
  test_hooks_config test_hooks;
  /// Where the settings were read (set by `load_file` and `parse`).
  config_origin origin;

  /// Loads `path`; relative catalog paths are resolved against its folder.
  static caf::expected<node_config> load_file(const std::string& path);

  /// Parses YAML text; `source_name` names the file in errors and `base_dir`
  /// resolves a relative catalog path.
  static caf::expected<node_config> parse(std::string_view yaml,
                                          const std::string& source_name,
                                          const std::string& base_dir = "");
};

} // namespace herald
