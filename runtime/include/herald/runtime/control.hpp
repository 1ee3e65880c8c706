#pragma once

/// The control protocol: every message nodes and tools exchange besides
/// events, defined once, each with its encode and decode side by side.
///
/// Control messages travel over ZeroMQ: requests from a DEALER to a node's
/// control ROUTER (one frame, the message), each answered by one reply;
/// heartbeats on the PUB socket under `transport::heartbeat_topic`. Every
/// message is one MessagePack map with string keys, written below as
/// `{key: type}`, `key?` when optional, the default in brackets. Every
/// message carries `v: uint` [1], the protocol version it is written in;
/// every request `op: str` and `id: uint`, which its reply echoes. The ops:
///
/// - `replay {stream: str, from: uint, max: uint, patterns: [str]}` →
///   `{stream: str, head, first, next: uint, type_heads: {type: uint},
///   events: bin}`. Reads the node's own stream `stream` from seq `from`,
///   at most `max` events (capped at `max_replay_events`, 4096, and at
///   about half the node's `transport.max_message_size` of envelopes; the
///   whole reply always fits `transport.max_message_size`), of
///   the types some pattern in `patterns` selects. `head` is the stream's
///   last durable seq, `first` the oldest it still retains, `next` where
///   the next request starts; `type_heads` are the per-type heads taken
///   before the read; `events` the envelopes found, back to back in seq
///   order.
///
///   Reading from a time: `replay {..., since?: uint}` → `{..., start?:
///   uint}`. With `since` (microseconds since the epoch) the read starts at
///   the later of `from` and the first retained event whose timestamp is
///   at or after `since` (`event_log::seq_at_or_after`); the reply's
///   `start` says where that was, and is sent only then. `herald tail
///   --since` asks so on first contact with a stream. A node older than
///   the field ignores it and replies without `start`: the asker then
///   reads from `from` and drops, itself, the events older than `since`
///   up to the first that is not (the same events, read at the cost of
///   the older ones crossing the network). Added without a new version.
/// - `dlq.list {consumer?, type?, key?: str, after?: uint [0], limit?:
///   uint [100]}` → `{dead_letters: [DL], more: bool}`. At most `limit`
///   dead letters matching every filter given, with ids above `after`
///   (the next page), by id; `more` says whether more match. The reply
///   must fit the client's `max_reply` (64 MiB by default).
/// - `dlq.show {dead_letter: uint}` → `{dead_letter: DL + event}`. One
///   dead letter with the event it holds.
/// - `dlq.redrive {consumer?, type?, key?: str, dry_run?: bool [false],
///   by?: str}` → `{redriven: [uint], dry_run: bool}`. Hands the matching
///   dead letters back to their consumers (all of them without a filter),
///   by (stream, seq), and lists their ids; a dry run only lists them.
///   Each letter's record gets the redrive (time, `by`: who asked;
///   "unknown" when absent; added without a new version).
/// - `dlq.purge {dead_letter?: uint, consumer?, type?, key?: str, all?:
///   bool [false], dry_run?: bool [false]}` → `{purged: [uint], dry_run:
///   bool}`. Deletes one dead letter by id, else those matching the
///   filters, else every one when `all` is true; a purge that selects
///   nothing of these is refused, so deleting everything is explicit.
/// - `publish {request_id: str, events: [{type: str, data: map}]}` →
///   `{request_id: str, acks: [{id, stream: str, seq: uint}], refused?:
///   uint, reason?: str}`. Validates and appends each event, in order, to
///   the node's own stream as its service (the catalog producer must be
///   the node's `service`), and replies once every appended event is
///   durable under the node's fsync policy (see `publish_request`). `acks`
///   are the events published, in request order: event id, stream, seq.
///   At the first event the node refuses (unknown type, schema, producer)
///   it stops: `refused` is that event's index in `events` (= the number
///   of acks) and `reason` names the event, field and rule; nothing after
///   it is published. The same `request_id` again (a re-send after a
///   timeout) publishes nothing: the reply repeats the first one's acks
///   (see `publish_request` for the window). Limits: 1 to
///   `max_publish_events` (256) events, `request_id` 1 to
///   `max_request_id` (128) bytes; the whole request must fit the node's
///   `transport.max_message_size` (ZeroMQ drops a larger one, and the
///   sender times out). A store failure is reported like a refusal
///   (`refused` = the first event not stored); later events of the same
///   request may or may not be stored then.
/// - `status {}` → `{node, service, stream: str, head, first: uint,
///   first_time?: str, health: [str], consumers: [{name: str, patterns:
///   [str], streams: [{stream: str, offset, head, lag: uint, paused:
///   bool}], dead_letters: uint, health: [str]}]}`. Where the node stands:
///   its stream's last durable seq `head`, the oldest seq it retains
///   `first` (head + 1 when none) and that event's time `first_time` (RFC
///   3339 UTC; absent when none is retained); per consumer its patterns,
///   per stream it reads the committed offset, the producer's head as of
///   its last heartbeat, `lag` (head - offset, 0 when the offset is ahead)
///   and whether the stream is paused, and the dead letters it has on this
///   node. `health` lists what is degraded now, one sentence each (the node
///   itself, then per consumer); empty lists mean healthy.
///   A consumer that is a consumer group member (actors/group.hpp; every
///   durable consumer of a node that serves leases, a group of one when
///   alone) also has `members: [str]` (the group's live members as it
///   sees them, sorted, itself included) and `partitions: uint` (the
///   group's partition count), and each of its streams `leases:
///   [{partition, epoch, offset, lag: uint}]`: the partitions of that
///   stream it holds a lease on now, ascending, with the lease's epoch,
///   the group's committed offset of the partition as the owner last
///   confirmed it, and `lag` (the stream's head - that offset, 0 when the
///   offset is ahead; it counts the events of every partition after the
///   offset, so it bounds the partition's own backlog from above). A
///   stream's `offset` is then the lowest committed offset of the
///   partitions held. These fields came without a new version: a consumer
///   outside groups, or a node from before them, sends none of them
///   (read as empty lists and 0), and an older reader ignores them.
///
/// - `hello {stream: str, max_message_size: uint}` → `{stream: str,
///   max_message_size: uint}`. The handshake a node sends a peer's control
///   endpoint when it first hears that peer's stream heartbeat (and every
///   5 s while their limits differ): `stream` and `max_message_size` are
///   the sender's own (its `transport.max_message_size`), the reply the
///   serving node's. A node whose limit differs from the sender's logs an
///   error naming both values, counts it and shows it in `/healthz`, and
///   still answers, so both sides learn of it.
///
/// - `test.hooks {fail_keys: [str], slow_keys: {key: uint}}` →
///   `{fail_keys: [str], slow_keys: {key: uint}}`. Replaces the node's
///   test hooks (`test_hooks_config`): handling events of the keys in
///   `fail_keys` fails, of those in `slow_keys` waits that many
///   milliseconds first; the reply lists the hooks now in effect. Served
///   only by a node whose config has `test_hooks`; any other refuses it
///   naming that key. For tests and `herald harness`, never production.
///
/// - Membership (see `runtime/src/membership.hpp`), every request with an
///   id that has `gossip_id_bit`, and `cluster: str`, the sender's
///   `cluster.name` (a node of another name refuses it, naming both).
///   M, a member record: `{name, stream: str, incarnation: uint, status:
///   str (joining | up | suspect | down | leaving), service, pub, control,
///   metrics: str, produces: [str], consumers: [{name: str, patterns:
///   [str]}]}`.
///   - `gossip.sync {cluster: str, from: M, members: [M]}` → `{cluster: str,
///     members: [M]}`: push-pull of whole views, and the join through a
///     seed; refused when `from.name` is taken by another stream that is
///     not down (naming both streams).
///   - `gossip.ping {cluster, from: str, incarnation: uint, target: str,
///     updates: [M]}` → `{cluster, from: str, incarnation: uint, updates:
///     [M]}`: a direct probe with records piggybacked (the sender's own
///     first); refused by a node not named `target`.
///   - `gossip.probe {cluster, from, target: str}` → `{target: str,
///     heard_ms_ago?: uint}`: when the receiver last heard `target`
///     directly; absent when it never did.
///   - `members {}` → `{cluster, self: str, members: [M + last_heard_ms?:
///     uint]}`: the view as `herald members` shows it.
///   Lists hold at most `max_gossip_members` (1024) records, and a record's
///   `produces`, `consumers` and a consumer's `patterns` at most
///   `max_member_list` (1024) entries each; longer ones, an unknown status
///   and a missing or wrong-typed field are refused naming the field (e.g.
///   `members[1].status`).
///
/// - Consumer groups (actors/group.hpp), every request with an id that has
///   `group_id_bit`:
///   - `group.lease {stream, group, member: str, partitions: uint,
///     initial?: uint [0], entries: [{p: uint, op: str (acquire | standby
///     | renew | release), epoch?: uint [0], offset?: uint [0]}]}` →
///     `{stream, group: str, ttl_ms: uint, entries: [{p: uint, result:
///     str (granted | renewed | released | refused | stale), epoch,
///     offset: uint, holder?: str, wanted?: bool, reason?: str}],
///     orphans: [uint]}`: a member's acquires, commits (renewals) and
///     releases of partitions of the receiver's own stream. At most
///     `max_partitions` entries and orphans; `partitions` 1 to
///     `max_partitions`; a longer list, an unknown op or result and a
///     missing or wrong-typed field are refused naming the field (e.g.
///     `entries[3].op`).
///
///   - `group.describe {group: str, patterns?: [str]}` → `{stream, group:
///     str, known: bool, partitions, head, first: uint, leases:
///     [{partition, epoch, expires_in_ms, offset, lag: uint, lag_exact:
///     bool, holder?: str}], dead_letters, entities: uint}`: group
///     `group` as the owner of the receiver's stream keeps it (`herald
///     group describe`). `known` is false when the owner has no state of
///     the group (it never read this stream); every other field but
///     `stream`, `group`, `head` and `first` is then empty. Per partition
///     of the group's `partitions`, ascending: the lease's holder (absent:
///     nobody), its epoch (the last granted) and milliseconds until it
///     expires (0 when free), the committed offset and `lag`, the events
///     of the partition after it of the types some pattern of `patterns`
///     selects (every type when empty). The owner reads at most
///     `max_lag_events` (100,000) events for all partitions together;
///     when it stopped there, `lag_exact` is false and `lag` counts what
///     it read ("at least"). `dead_letters` and `entities`: the letters of
///     consumer `group` in the owner's dead-letter store, and how many
///     entities (keys) they hold.
///   - `group.reset {group: str, to: str (earliest | time | seq), at?:
///     uint, dry_run?: bool [false]}` → `{stream, group: str, known: bool,
///     offsets: [{partition, from, to: uint}], dry_run: bool}`: sets the
///     committed offset of every partition of `group` on the receiver's
///     stream so that the group handles again from the oldest retained
///     event (`earliest`), from the first event at or after `at`
///     microseconds since the epoch (`time`), or every event with seq >
///     `at` (`seq`; refused when `at` is past the stream's head). `offsets`
///     lists each partition's offset before and after (`dry_run`: would
///     be; nothing changed). `known` false: the owner has no state of the
///     group, nothing was set. Refused, naming the holders, while any
///     lease of the group is unexpired, and for one lease ttl after an
///     owner's restart when members on other nodes held leases before.
///     A member's `initial` (`group.lease`) is never taken over offsets
///     set so.
///
/// Replies carry no op: the sender knows what it asked. Empty filters, `after`
/// 0, `dead_letter` 0 and `all` false are not sent.
///
/// DL, a dead letter as shown: `{id: uint, consumer, node, event_type,
/// event_id, key, stream: str, seq: uint, reason: str, parked: bool,
/// created: str (RFC 3339 UTC), attempts: [{time, error, class: str,
/// node?: str}], redrives?: [{time, by: str}]}`; `dlq.show` adds `event`
/// (the envelope as JSON) or, when the stored envelope cannot be decoded,
/// `event_error: str`. A record only grows: `attempts` holds every attempt
/// across redrives (the first is the first failure), `redrives` every
/// redrive, `created` the first dead-lettering; a letter keeps its id
/// until its event is handled. `node` of an attempt and `redrives` were
/// added without a new version and are sent only when not empty: a node
/// that does not send them shows them empty.
///
/// Any request may be answered by the error reply `{v, id, stream: str,
/// error: str}` instead: `error` says what was wrong and what to do;
/// `stream` is the replay request's stream, else empty. A node refuses so:
/// a frame that is no request (`id` 0 when it has none that can be read),
/// a missing or wrong-typed field, an unknown op, a protocol version it
/// does not serve, a purge that selects nothing, an unknown stream, a dead
/// letter it does not have, a failing store, and a `publish` whose
/// `request_id` it remembers with other events (naming the request id).
///
/// The stream heartbeat, published every `transport.stream_heartbeat`:
/// `{v, stream: str, head: uint, control: str, types: {type: uint},
/// max_message_size?: uint, pub?: str}`: the stream, its last sent seq,
/// the node's control endpoint, the last sent type_seq of each type, the
/// node's `transport.max_message_size` (every node of a deployment must
/// share it) and its PUB endpoint as peers connect to it.
///
/// **Versions.** `v` changes only when a message changes in a way an older
/// reader would misread (a field's meaning or type changes, a required
/// field appears); an optional field is added without a new version, and
/// every decoder skips keys it does not know. So nodes one version apart
/// work together: a node serves requests of versions `min_version` to
/// `version` (the current one and the one before, once there is one), and
/// a sender writes the oldest version that carries what it asks (today
/// 1). A request of any other version is refused with an error reply
/// naming its version and the versions the node serves. Replies and
/// heartbeats are read whatever their version, by the fields the reader
/// knows. A message without `v` is version 1 (herald wrote none before).
///
/// Every message compares field by field (`==`). Thread safety: every
/// function here is pure and may be called from any thread.
///
/// Decoding never throws and trusts nothing: a frame over the limits, a
/// wrong-typed or missing required field, a field outside its limits
/// (`publish`'s event count and request id), an unknown op or an unserved
/// version fails with `errc::decode_error` naming the message, the field
/// (or op, or version) and what was expected; a purge that selects nothing
/// with `errc::invalid_argument`.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <caf/expected.hpp>

#include "herald/actors/group.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/event.hpp"
#include "herald/store/event_log.hpp"

namespace herald::control {

/// The protocol version this code writes.
inline constexpr uint32_t version = 1;

/// The oldest request version a node serves.
inline constexpr uint32_t min_version = 1;

/// Most events one replay reply carries, whatever the request's `max`.
inline constexpr uint64_t max_replay_events = 4096;

/// Dead letters `dlq.list` returns when the request gives no `limit`.
inline constexpr uint64_t default_list_limit = 100;

// --- replay -------------------------------------------------------------

struct replay_reply;

/// `replay`: events of the node's own stream from a seq on.
struct replay_request {
  /// The reply this request gets (an `error_reply` instead when refused).
  using reply_type = replay_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;
  /// The stream to read: the node refuses any but its own.
  std::string stream;
  /// The first seq wanted.
  uint64_t from = 0;
  /// Most events wanted; the node caps it at `max_replay_events`.
  uint64_t max = 0;
  /// Pattern texts (e.g. `user.>`); an event is read when one selects it.
  std::vector<std::string> patterns;
  /// Start no earlier than the first event at or after this time,
  /// microseconds since the epoch; sent only when set. Default: none.
  std::optional<uint64_t> since;

  bool operator==(const replay_request&) const = default;
};

/// The answer to a `replay_request`.
struct replay_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  /// The stream read.
  std::string stream;
  /// The stream's last durable seq when the node read.
  uint64_t head = 0;
  /// The oldest seq the node still retains.
  uint64_t first = 0;
  /// Where the next request should start.
  uint64_t next = 0;
  /// The last type_seq of each type, taken before the read.
  std::unordered_map<std::string, uint64_t> type_heads;
  /// The envelopes found, MessagePack back to back, in seq order (decode
  /// them with `decode_next`).
  std::vector<uint8_t> events;
  /// Where the read started, when the request had `since` and the node
  /// knows it; absent otherwise (and from older nodes). Default: none.
  std::optional<uint64_t> start;

  bool operator==(const replay_reply&) const = default;
};

// --- dead letters ---------------------------------------------------------

/// Which dead letters a `dlq.*` request selects: those matching every
/// non-empty field. Empty fields are not sent.
struct dlq_filter {
  /// Only this consumer's. Default: all.
  std::string consumer;
  /// Only this event type's. Default: all.
  std::string type;
  /// Only this entity key's. Default: all.
  std::string key;

  /// Whether any field selects.
  bool empty() const noexcept {
    return consumer.empty() && type.empty() && key.empty();
  }

  bool operator==(const dlq_filter&) const = default;
};

/// One handler attempt of a dead letter, as shown.
struct dead_letter_attempt {
  /// When it failed, RFC 3339 UTC with microseconds.
  std::string time;
  /// What the handler said.
  std::string error;
  /// The kind of failure, e.g. `exception`, `error`, `non_retryable`,
  /// `timeout`.
  std::string error_class;
  /// The node it ran on; empty from a node that did not say.
  std::string node;

  bool operator==(const dead_letter_attempt&) const = default;
};

/// One redrive of a dead letter, as shown.
struct dead_letter_redrive {
  /// When, RFC 3339 UTC with microseconds.
  std::string time;
  /// Who asked (`dlq.redrive`'s `by`), "unknown" when it did not say.
  std::string by;

  bool operator==(const dead_letter_redrive&) const = default;
};

/// A dead letter as `dlq.list` and `dlq.show` show it.
struct dead_letter_record {
  /// The dead letter's id on its node (from 1).
  uint64_t id = 0;
  /// The consumer that gave up, the node it runs on.
  std::string consumer;
  std::string node;
  /// The event's type, id, entity key, stream and seq.
  std::string event_type;
  std::string event_id;
  std::string key;
  std::string stream;
  uint64_t seq = 0;
  /// Why it was dead-lettered.
  std::string reason;
  /// Whether it waits behind an earlier dead letter of its entity.
  bool parked = false;
  /// When it was first dead-lettered, RFC 3339 UTC with microseconds.
  std::string created;
  /// Every attempt made, oldest first, across redrives: the first is the
  /// first failure.
  std::vector<dead_letter_attempt> attempts;
  /// Every redrive, oldest first; empty from a node that did not say.
  std::vector<dead_letter_redrive> redrives;
  /// The event as JSON (`dlq.show` only).
  std::optional<payload> event;
  /// Why the stored event could not be decoded (`dlq.show` only).
  std::optional<std::string> event_error;
  /// Fields a newer node sent that this version does not know, as a JSON
  /// object, kept so that a tool can still show them. Default: empty.
  payload extra = payload::object();

  bool operator==(const dead_letter_record&) const = default;
};

/// The dead letter `l` as shown; `with_event` adds its decoded event (or
/// `event_error`). Timestamps are formatted as RFC 3339 UTC.
dead_letter_record to_record(const store::dead_letter& l, bool with_event);

/// `r` as the JSON object the wire carries (what `herald dlq --json`
/// prints): the known fields, then `extra`'s.
payload to_json(const dead_letter_record& r);

/// The fields of `r` shown one per line, as (wire name, value): the known
/// scalar fields in the order of the protocol, then `event_error` and
/// `extra`'s, by name. `attempts` and `event` are left out.
std::vector<std::pair<std::string, payload>>
shown_fields(const dead_letter_record& r);

struct dlq_list_reply;
struct dlq_show_reply;
struct dlq_redrive_reply;
struct dlq_purge_reply;

/// `dlq.list`: one page of the dead letters a filter selects.
struct dlq_list_request {
  /// The reply this request gets (an `error_reply` instead when refused).
  using reply_type = dlq_list_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;
  /// Which dead letters. Default: all.
  dlq_filter filter;
  /// Only ids above this one (the next page); 0 is not sent. Default: 0.
  uint64_t after = 0;
  /// Most dead letters in the reply. Default: `default_list_limit`.
  uint64_t limit = default_list_limit;

  bool operator==(const dlq_list_request&) const = default;
};

/// The answer to a `dlq_list_request`.
struct dlq_list_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  /// The dead letters, by increasing id, without their events.
  std::vector<dead_letter_record> dead_letters;
  /// Whether more dead letters match after the last one.
  bool more = false;

  bool operator==(const dlq_list_reply&) const = default;
};

/// `dlq.show`: one dead letter with its event.
struct dlq_show_request {
  /// The reply this request gets (an `error_reply` instead when refused).
  using reply_type = dlq_show_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;
  /// The dead letter's id.
  uint64_t dead_letter = 0;

  bool operator==(const dlq_show_request&) const = default;
};

/// The answer to a `dlq_show_request`.
struct dlq_show_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  /// The dead letter, with `event` or `event_error`.
  dead_letter_record dead_letter;

  bool operator==(const dlq_show_reply&) const = default;
};

/// `dlq.redrive`: hands dead letters back to their consumers.
struct dlq_redrive_request {
  /// The reply this request gets (an `error_reply` instead when refused).
  using reply_type = dlq_redrive_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;
  /// Which dead letters. Default: all.
  dlq_filter filter;
  /// Only say which would be redriven. Default: false.
  bool dry_run = false;
  /// Who asks, recorded with the redrive in each letter's record, e.g.
  /// `alice@ops-host`; not sent when empty (recorded as "unknown").
  /// Default: empty.
  std::string by;

  bool operator==(const dlq_redrive_request&) const = default;
};

/// The answer to a `dlq_redrive_request`.
struct dlq_redrive_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  /// The ids redriven (or that would be).
  std::vector<uint64_t> redriven;
  /// Whether nothing changed; absent from replies of nodes that did not
  /// say.
  std::optional<bool> dry_run;

  bool operator==(const dlq_redrive_reply&) const = default;
};

/// `dlq.purge`: deletes dead letters for good. Decoding refuses one that
/// selects nothing (no `dead_letter`, empty filter, `all` false).
struct dlq_purge_request {
  /// The reply this request gets (an `error_reply` instead when refused).
  using reply_type = dlq_purge_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;
  /// The one dead letter to delete; 0 (not sent) for a filter or all.
  uint64_t dead_letter = 0;
  /// Which dead letters, when `dead_letter` is 0. Default: none.
  dlq_filter filter;
  /// Deletes every dead letter; sent only when true. Default: false.
  bool all = false;
  /// Only say which would be deleted. Default: false.
  bool dry_run = false;

  bool operator==(const dlq_purge_request&) const = default;
};

/// The answer to a `dlq_purge_request`.
struct dlq_purge_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  /// The ids deleted (or that would be).
  std::vector<uint64_t> purged;
  /// Whether nothing changed; absent from replies of nodes that did not
  /// say.
  std::optional<bool> dry_run;

  bool operator==(const dlq_purge_reply&) const = default;
};

// --- publish ----------------------------------------------------------------

/// Most events one `publish` request carries.
inline constexpr uint64_t max_publish_events = 256;

/// Longest `request_id` of a `publish` request, in bytes.
inline constexpr size_t max_request_id = 128;

/// How many `publish` request ids a node remembers with their replies.
inline constexpr size_t remembered_requests = 4096;

/// How many acks those remembered replies hold at most, in all (about
/// 80 bytes each).
inline constexpr size_t remembered_acks = 65536;

/// How long a node remembers a `publish` request id.
inline constexpr std::chrono::minutes remember_for{10};

/// One event of a `publish` request: its type and payload, validated by
/// the node against its catalog.
struct publish_event {
  /// The event type, e.g. `user.account.created`.
  std::string type;
  /// The payload: a map (decoding refuses anything else).
  payload data = payload::object();

  bool operator==(const publish_event&) const = default;
};

/// What the node says of one event it published.
struct publish_ack {
  /// The event's id (UUIDv7).
  std::string id;
  /// The node's stream, and the event's seq in it.
  std::string stream;
  uint64_t seq = 0;

  bool operator==(const publish_ack&) const = default;
};

struct publish_reply;

/// `publish`: events appended to the node's own stream, acknowledged once
/// durable.
///
/// The node answers when the last event appended is durable (group
/// commit: milliseconds with `fsync: batch`), never blocking its
/// transport thread meanwhile. It remembers the replies of recent
/// `request_id`s: the last `remembered_requests` (4,096) ids, at most
/// `remembered_acks` (65,536) acks in all (about 5 MiB) and none older
/// than `remember_for` (10 minutes), whichever bound is reached first,
/// oldest forgotten first. A request whose `request_id` it remembers
/// publishes nothing: it gets the first request's reply (once that is
/// durable, if it still is in flight), or, when its events differ, an
/// error reply naming the request id. A client that re-sends a request
/// after a timeout with the same `request_id` therefore publishes it once
/// as long as the re-send comes within that window.
struct publish_request {
  /// The reply this request gets (an `error_reply` instead when refused).
  using reply_type = publish_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;
  /// Chosen by the sender, unique per batch of events it publishes (e.g.
  /// a UUID and a batch number), kept when it re-sends the batch.
  /// REQUIRES: 1 to `max_request_id` bytes.
  std::string request_id;
  /// The events, in the order they are to be published. REQUIRES: 1 to
  /// `max_publish_events` of them.
  std::vector<publish_event> events;

  bool operator==(const publish_request&) const = default;
};

/// The answer to a `publish_request`.
struct publish_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  /// The request's `request_id`.
  std::string request_id;
  /// The events published and durable, in request order.
  std::vector<publish_ack> acks;
  /// The index of the first event not published (refused or not stored),
  /// when there is one; then `acks` holds the events before it.
  std::optional<uint64_t> refused;
  /// Why `refused`: the event, the field and the rule. Empty otherwise.
  std::string reason;

  bool operator==(const publish_reply&) const = default;
};

// --- status ----------------------------------------------------------------

struct status_reply;

/// `status`: where the node, its stream and its consumers stand.
struct status_request {
  /// The reply this request gets (an `error_reply` instead when refused).
  using reply_type = status_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;

  bool operator==(const status_request&) const = default;
};

/// One partition of a stream that a consumer group member holds a lease
/// on (see `status_stream::leases`).
struct status_lease {
  /// The partition, 0 to the group's `partitions` - 1.
  uint32_t partition = 0;
  /// The lease's epoch: the fencing token of the member's work on the
  /// partition.
  uint64_t epoch = 0;
  /// The group's committed offset of the partition, as the stream's owner
  /// last confirmed it: every event of the partition up to it is handled.
  uint64_t offset = 0;
  /// The stream's head (as of its last heartbeat) - `offset`; 0 when the
  /// offset is ahead. Counts events of every partition: an upper bound of
  /// the partition's own backlog.
  uint64_t lag = 0;

  bool operator==(const status_lease&) const = default;
};

/// Where one consumer stands in one producer's stream.
struct status_stream {
  /// The stream id.
  std::string stream;
  /// The consumer's committed offset: every selected event up to it is
  /// handled or dead-lettered.
  uint64_t offset = 0;
  /// The stream's head as of the producer's last heartbeat.
  uint64_t head = 0;
  /// `head - offset`, 0 when the offset is ahead of the last heartbeat.
  uint64_t lag = 0;
  /// Whether an entity's full queue holds the stream paused now.
  bool paused = false;
  /// A consumer group member's leases on the stream's partitions, by
  /// partition; empty outside groups and while it holds none.
  std::vector<status_lease> leases;

  bool operator==(const status_stream&) const = default;
};

/// One consumer of the node.
struct status_consumer {
  /// The consumer's name, e.g. `EmailService`.
  std::string name;
  /// Its subscription patterns, e.g. `user.>`.
  std::vector<std::string> patterns;
  /// The streams it reads, by stream id.
  std::vector<status_stream> streams;
  /// How many dead letters of it there are: those this node stores (its
  /// group's of this node's own stream included) and those the owners of
  /// the other streams it reads keep for its group, as each last said
  /// (with its last lease answer, every few seconds).
  uint64_t dead_letters = 0;
  /// What is degraded about it now, one sentence each; empty: healthy.
  std::vector<std::string> health;
  /// Its consumer group's live members as it last heard (node names,
  /// sorted, itself included); empty outside groups.
  std::vector<std::string> members;
  /// Its consumer group's partition count (`consumer_config::partitions`);
  /// 0 outside groups.
  uint32_t partitions = 0;

  /// Whether it is a consumer group member (a group of one included).
  bool grouped() const noexcept {
    return partitions != 0;
  }

  bool operator==(const status_consumer&) const = default;
};

/// The answer to a `status_request`.
struct status_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  /// The node's name and the service it runs.
  std::string node;
  std::string service;
  /// The node's stream id.
  std::string stream;
  /// The stream's last durable seq; 0 for an empty stream.
  uint64_t head = 0;
  /// The oldest seq the node retains; head + 1 when it retains none.
  uint64_t first = 0;
  /// When the event `first` was published, RFC 3339 UTC with
  /// microseconds; absent when the node retains no event.
  std::optional<std::string> first_time;
  /// What is degraded about the node itself now; empty: healthy.
  std::vector<std::string> health;
  /// The node's consumers, by name.
  std::vector<status_consumer> consumers;

  /// Whether nothing is degraded: no reason for the node or any consumer.
  bool healthy() const noexcept {
    if (!health.empty())
      return false;
    for (auto& c : consumers)
      if (!c.health.empty())
        return false;
    return true;
  }

  bool operator==(const status_reply&) const = default;
};

/// `r` as the JSON object the wire carries without `v` and `id` (what
/// `herald status --json` prints).
payload to_json(const status_reply& r);

// --- hello: the handshake on the frame limit -----------------------------

struct hello_reply;

/// `hello`: the sender's stream and frame limit, sent to a peer it met.
struct hello_request {
  /// The reply this request gets (an `error_reply` from a node that does
  /// not know the op).
  using reply_type = hello_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;
  /// The sender's own stream.
  std::string stream;
  /// The sender's `transport.max_message_size`.
  uint64_t max_message_size = 0;

  bool operator==(const hello_request&) const = default;
};

/// The answer to a `hello_request`: the serving node's stream and limit.
struct hello_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  /// The serving node's stream.
  std::string stream;
  /// The serving node's `transport.max_message_size`.
  uint64_t max_message_size = 0;

  bool operator==(const hello_reply&) const = default;
};

// --- test.hooks: faults for tests -------------------------------------------

struct test_hooks_reply;

/// `test.hooks`: replaces the fail and slow keys of a node with test hooks.
struct test_hooks_request {
  /// The reply this request gets (an `error_reply` when refused).
  using reply_type = test_hooks_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender; the reply echoes it. Default: 0.
  uint64_t id = 0;
  /// Entity keys whose handling fails from now on. Default: none.
  std::vector<std::string> fail_keys;
  /// Entity keys whose handling waits first, in milliseconds (> 0).
  /// Default: none.
  std::unordered_map<std::string, uint64_t> slow_keys;

  bool operator==(const test_hooks_request&) const = default;
};

/// The answer to a `test_hooks_request`: the hooks now in effect.
struct test_hooks_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id.
  uint64_t id = 0;
  std::vector<std::string> fail_keys;
  std::unordered_map<std::string, uint64_t> slow_keys;

  bool operator==(const test_hooks_reply&) const = default;
};

// --- membership: gossip between the members of a cluster ----------------

/// A member's status, as SWIM spreads it (memberlist's alive / suspect /
/// dead / left, with Akka Cluster's joining):
/// - `joining`: started, and no seed has answered it yet;
/// - `up`: a member that answers;
/// - `suspect`: some member did not hear it for `cluster.suspect_after`;
/// - `down`: not heard for `cluster.down_after`: its connections are
///   closed; it is still probed for `cluster.reconnect_window`;
/// - `leaving`: it said it stops (SIGTERM); treated as down.
/// A record of a higher incarnation overrides a lower one; at one
/// incarnation the later status in this order overrides the earlier,
/// `joining` = `up` < `suspect` < `down` < `leaving` (SWIM, section 4.2).
enum class member_status : uint8_t { joining, up, suspect, down, leaving };

/// `joining`, `up`, `suspect`, `down` or `leaving`.
std::string_view to_string(member_status s) noexcept;

/// The status named `text`; nothing for any other text.
std::optional<member_status> parse_member_status(std::string_view text);

/// One consumer a member runs.
struct member_consumer {
  /// The consumer's name, e.g. `EmailService`.
  std::string name;
  /// Its subscription patterns, e.g. `user.>`.
  std::vector<std::string> patterns;

  bool operator==(const member_consumer&) const = default;
};

/// What a member announces of itself, and the status others give it. The
/// member alone changes its own fields but `status`; every change of its
/// own raises `incarnation` first.
struct cluster_member {
  /// The node's name (config `node`); unique in the cluster.
  std::string name;
  /// Its stream id (the data dir's).
  std::string stream;
  /// Persisted in the member's data dir; raised by every start and by
  /// every refutation of a rumour about it (SWIM's incarnation number).
  uint64_t incarnation = 0;
  member_status status = member_status::joining;
  /// The service the node runs (config `service`); may be empty.
  std::string service;
  /// Its PUB endpoint as peers connect to it (config `advertise`, else the
  /// bound one).
  std::string pub;
  /// Its control endpoint as peers connect to it.
  std::string control;
  /// Its `/metrics` address, `http://HOST:PORT`; empty when it serves none.
  std::string metrics;
  /// The event types whose catalog producer is its service.
  std::vector<std::string> produces;
  /// The consumers it runs.
  std::vector<member_consumer> consumers;

  bool operator==(const cluster_member&) const = default;
};

/// Most member records one gossip or members message carries (`members`,
/// `updates`); a longer list is refused with `errc::decode_error`.
inline constexpr size_t max_gossip_members = 1024;

/// Most entries of one member's `produces` and `consumers`, and of one
/// consumer's `patterns`; a longer list is refused with
/// `errc::decode_error`.
inline constexpr size_t max_member_list = 1024;

/// Request ids with this bit set are membership's own: the replies to them
/// (gossip replies, or error replies refusing them) go to membership, every
/// other reply to the replay protocol.
inline constexpr uint64_t gossip_id_bit = uint64_t{1} << 63;

struct gossip_sync_reply;
struct gossip_ack;
struct gossip_probe_reply;

/// `gossip.sync`: push-pull of whole views (memberlist's push/pull), also
/// how a node joins through a seed. The receiver merges `members` and
/// `from`, and answers with its own view. Refused (`error_reply`) when
/// `cluster` is not the receiver's, or when `from.name` belongs to another
/// stream that is not down; both are logged on both sides.
struct gossip_sync_request {
  using reply_type = gossip_sync_reply;
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// Chosen by the sender, with `gossip_id_bit`; the reply echoes it.
  uint64_t id = 0;
  /// The sender's cluster name (config `cluster.name`).
  std::string cluster;
  /// The sender's own record.
  cluster_member from;
  /// The sender's view, itself included.
  std::vector<cluster_member> members;

  bool operator==(const gossip_sync_request&) const = default;
};

/// The answer to a `gossip_sync_request`: the receiver's view after the
/// merge, itself included.
struct gossip_sync_reply {
  uint32_t v = version;
  uint64_t id = 0;
  std::string cluster;
  std::vector<cluster_member> members;

  bool operator==(const gossip_sync_reply&) const = default;
};

/// `gossip.ping`: a direct probe, with recent changes piggybacked (SWIM's
/// dissemination component).
struct gossip_ping {
  using reply_type = gossip_ack;
  uint32_t v = version;
  uint64_t id = 0;
  std::string cluster;
  /// The sender's name and incarnation.
  std::string from;
  uint64_t incarnation = 0;
  /// The name the sender means to probe: a receiver of another name (a
  /// new node on an old endpoint) answers with an error.
  std::string target;
  /// Member records changed lately, as the sender knows them.
  std::vector<cluster_member> updates;

  bool operator==(const gossip_ping&) const = default;
};

/// The answer to a `gossip_ping`.
struct gossip_ack {
  uint32_t v = version;
  uint64_t id = 0;
  std::string cluster;
  std::string from;
  uint64_t incarnation = 0;
  std::vector<cluster_member> updates;

  bool operator==(const gossip_ack&) const = default;
};

/// `gossip.probe`: an indirect probe (SWIM's ping-req, answered from what
/// the receiver heard itself): when did the receiver last hear `target`
/// directly?
struct gossip_probe {
  using reply_type = gossip_probe_reply;
  uint32_t v = version;
  uint64_t id = 0;
  std::string cluster;
  std::string from;
  std::string target;

  bool operator==(const gossip_probe&) const = default;
};

/// The answer to a `gossip_probe`.
struct gossip_probe_reply {
  uint32_t v = version;
  uint64_t id = 0;
  std::string target;
  /// Milliseconds since the receiver last heard `target` directly; absent
  /// when it never did or does not know it.
  std::optional<uint64_t> heard_ms_ago;

  bool operator==(const gossip_probe_reply&) const = default;
};

struct members_reply;

/// `members`: the cluster as the receiving node sees it (`herald members`,
/// `herald status --cluster`).
struct members_request {
  using reply_type = members_reply;
  uint32_t v = version;
  uint64_t id = 0;

  bool operator==(const members_request&) const = default;
};

/// One member in a `members_reply`.
struct member_entry {
  cluster_member member;
  /// Milliseconds since the answering node last heard it directly (itself:
  /// 0); absent when it never did.
  std::optional<uint64_t> last_heard_ms;

  bool operator==(const member_entry&) const = default;
};

/// The answer to a `members_request`.
struct members_reply {
  uint32_t v = version;
  uint64_t id = 0;
  /// The cluster's name and the answering node's name.
  std::string cluster;
  std::string self;
  /// Every member known, the answering node included, by name.
  std::vector<member_entry> members;

  bool operator==(const members_reply&) const = default;
};

/// `r` as the JSON object `herald members --json` prints (without `v`,
/// `id`).
payload to_json(const members_reply& r);

// --- consumer groups ---------------------------------------------------------

/// Request ids with this bit set (and not `gossip_id_bit`) are the group
/// client's: the replies to them go to the consumer that asked.
inline constexpr uint64_t group_id_bit = uint64_t{1} << 62;

struct group_lease_reply;

/// `group.lease`: a member's business with the owner of a stream for one
/// group (see `herald::lease_request`).
struct group_lease_request {
  using reply_type = group_lease_reply;
  uint32_t v = version;
  /// Chosen by the sender, with `group_id_bit`; the reply echoes it.
  uint64_t id = 0;
  lease_request body;

  bool operator==(const group_lease_request&) const = default;
};

/// The answer to a `group_lease_request` (`body.id` is not sent: `id` is,
/// and a decoded reply has `body.id` set to it). `body.error` is not sent
/// either: an owner that refuses the whole request answers an
/// `error_reply`.
struct group_lease_reply {
  uint32_t v = version;
  uint64_t id = 0;
  lease_reply body;

  bool operator==(const group_lease_reply&) const = default;
};

/// Most events an owner reads to count the lag of one `group.describe`.
inline constexpr uint64_t max_lag_events = 100'000;

struct group_describe_reply;

/// `group.describe`: one group as the owner of the receiver's stream keeps
/// it (`herald group describe`).
struct group_describe_request {
  using reply_type = group_describe_reply;
  uint32_t v = version;
  uint64_t id = 0;
  /// The group: the consumer name.
  std::string group;
  /// The group's subscription patterns: the lag counts only events of the
  /// types one selects; empty (not sent) counts every event. Default: none.
  std::vector<std::string> patterns;

  bool operator==(const group_describe_request&) const = default;
};

/// One partition of a group at its stream's owner.
struct group_partition_state {
  uint32_t partition = 0;
  /// Who holds its lease; empty for nobody.
  std::string holder;
  /// The last epoch granted; 0 when none was this start.
  uint64_t epoch = 0;
  /// Milliseconds until the lease expires; 0 when nobody holds it.
  uint64_t expires_in_ms = 0;
  /// The committed offset: every event of the partition with seq <= it was
  /// handled.
  uint64_t offset = 0;
  /// Events of the partition after `offset` (of the selected types).
  uint64_t lag = 0;
  /// False when the owner stopped counting at `max_lag_events`: `lag` is a
  /// lower bound then.
  bool lag_exact = true;

  bool operator==(const group_partition_state&) const = default;
};

/// The answer to a `group_describe_request`.
struct group_describe_reply {
  uint32_t v = version;
  uint64_t id = 0;
  /// The owner's stream and the group asked for.
  std::string stream;
  std::string group;
  /// Whether the owner keeps any state of the group.
  bool known = false;
  /// The group's partition count at the owner; 0 when not `known`.
  uint32_t partitions = 0;
  /// The stream's last durable seq and oldest retained seq.
  uint64_t head = 0;
  uint64_t first = 0;
  /// Every partition, ascending.
  std::vector<group_partition_state> leases;
  /// The dead letters of consumer `group` in the owner's store, and the
  /// entities (keys) they hold.
  uint64_t dead_letters = 0;
  uint64_t entities = 0;

  bool operator==(const group_describe_reply&) const = default;
};

/// Where `group.reset` sets a group's offsets.
enum class reset_to : uint8_t {
  /// Before the oldest retained event.
  earliest,
  /// Before the first event at or after a time.
  time,
  /// At a seq: every later event is handled again.
  seq,
};

/// `earliest`, `time` or `seq`.
std::string_view to_string(reset_to t) noexcept;

struct group_reset_reply;

/// `group.reset`: sets the committed offsets of every partition of a
/// group on the receiver's stream (`herald group reset-offsets`).
struct group_reset_request {
  using reply_type = group_reset_reply;
  uint32_t v = version;
  uint64_t id = 0;
  /// The group: the consumer name.
  std::string group;
  reset_to to = reset_to::earliest;
  /// Microseconds since the epoch (`time`) or a seq (`seq`); unused (not
  /// sent) for `earliest`. Default: 0.
  uint64_t at = 0;
  /// Only say what would be set. Default: false.
  bool dry_run = false;

  bool operator==(const group_reset_request&) const = default;
};

/// One partition's offset before and after a reset.
struct group_offset_change {
  uint32_t partition = 0;
  uint64_t from = 0;
  uint64_t to = 0;

  bool operator==(const group_offset_change&) const = default;
};

/// The answer to a `group_reset_request`.
struct group_reset_reply {
  uint32_t v = version;
  uint64_t id = 0;
  std::string stream;
  std::string group;
  /// Whether the owner keeps any state of the group; nothing was set when
  /// not.
  bool known = false;
  /// Every partition, ascending.
  std::vector<group_offset_change> offsets;
  /// Whether nothing changed.
  bool dry_run = false;

  bool operator==(const group_reset_reply&) const = default;
};

// --- errors, heartbeats ----------------------------------------------------

/// The answer to any request the node refused.
struct error_reply {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The request's id; 0 when it had none that could be read.
  uint64_t id = 0;
  /// The replay request's stream; empty otherwise.
  std::string stream;
  /// What was wrong and what to do.
  std::string error;

  bool operator==(const error_reply&) const = default;
};

/// A stream heartbeat: where a stream's head is, and whom to ask for it.
struct heartbeat {
  /// Protocol version. Default: `version`.
  uint32_t v = version;
  /// The stream id.
  std::string stream;
  /// The last seq handed to the transport.
  uint64_t head = 0;
  /// The node's control endpoint, for replay requests.
  std::string control;
  /// The last type_seq of each type, as of `head`.
  std::unordered_map<std::string, uint64_t> types;
  /// The node's `transport.max_message_size`; 0 from a node that does not
  /// say.
  uint64_t max_message_size = 0;
  /// The node's PUB endpoint as peers connect to it; empty from a node
  /// that does not say.
  std::string pub;

  bool operator==(const heartbeat&) const = default;
};

// --- encode and decode -----------------------------------------------------

/// Any request a node serves.
using request =
  std::variant<replay_request, dlq_list_request, dlq_show_request,
               dlq_redrive_request, dlq_purge_request, publish_request,
               status_request, hello_request, test_hooks_request,
               gossip_sync_request, gossip_ping, gossip_probe, members_request,
               group_lease_request, group_describe_request,
               group_reset_request>;

/// A reply as read: the one asked for, or the node's refusal.
template <class Reply> using answer = std::variant<Reply, error_reply>;

/// The MessagePack form of a message, as sent. Never throws (but
/// `std::bad_alloc`); strings need not be UTF-8.
std::string encode(const replay_request& m);
std::string encode(const replay_reply& m);
std::string encode(const dlq_list_request& m);
std::string encode(const dlq_list_reply& m);
std::string encode(const dlq_show_request& m);
std::string encode(const dlq_show_reply& m);
std::string encode(const dlq_redrive_request& m);
std::string encode(const dlq_redrive_reply& m);
std::string encode(const dlq_purge_request& m);
std::string encode(const dlq_purge_reply& m);
std::string encode(const publish_request& m);
std::string encode(const publish_reply& m);
std::string encode(const status_request& m);
std::string encode(const status_reply& m);
std::string encode(const hello_request& m);
std::string encode(const hello_reply& m);
std::string encode(const test_hooks_request& m);
std::string encode(const test_hooks_reply& m);
std::string encode(const gossip_sync_request& m);
std::string encode(const gossip_sync_reply& m);
std::string encode(const gossip_ping& m);
std::string encode(const gossip_ack& m);
std::string encode(const gossip_probe& m);
std::string encode(const gossip_probe_reply& m);
std::string encode(const members_request& m);
std::string encode(const members_reply& m);
std::string encode(const group_lease_request& m);
std::string encode(const group_lease_reply& m);
std::string encode(const group_describe_request& m);
std::string encode(const group_describe_reply& m);
std::string encode(const group_reset_request& m);
std::string encode(const group_reset_reply& m);
std::string encode(const error_reply& m);
std::string encode(const heartbeat& m);
/// Encodes whichever request `m` holds.
std::string encode(const request& m);

/// Decodes a request frame under `limits`. Fails with `errc::decode_error`
/// naming what was wrong: undecodable or oversized bytes, no map, an
/// unknown op, a version outside `min_version`..`version` (the message
/// names it and the versions served), a missing or wrong-typed field; with
/// `errc::invalid_argument` for a purge that selects nothing. Unknown keys
/// are skipped. Never throws.
caf::expected<request> decode_request(std::string_view bytes,
                                      const decode_limits& limits = {});

/// Decodes a reply: an `error_reply` when the frame has `error`, else a
/// `Reply` (the `reply_type` of the request sent, one of
/// `replay_reply`, `dlq_list_reply`, `dlq_show_reply`,
/// `dlq_redrive_reply`, `dlq_purge_reply`, `publish_reply`, `status_reply`,
/// `hello_reply`, `test_hooks_reply`, `gossip_sync_reply`, `gossip_ack`,
/// `gossip_probe_reply`, `members_reply`, `group_lease_reply`,
/// `group_describe_reply`, `group_reset_reply`). Any version is
/// read; `id` and an error reply's `stream` may be absent (0, empty). Fails
/// with `errc::decode_error` naming the field that is missing or wrong-typed.
/// Never throws.
template <class Reply>
caf::expected<answer<Reply>> decode_reply(std::string_view bytes,
                                          const decode_limits& limits = {});

/// Decodes a heartbeat body; any version is read. Fails with
/// `errc::decode_error` naming the field. Never throws.
caf::expected<heartbeat> decode_heartbeat(std::string_view bytes,
                                          const decode_limits& limits = {});

/// The `id` of a control message that may not decode otherwise, to answer
/// or match it: 0 when the bytes are no map or have no unsigned `id`.
/// Never throws.
uint64_t message_id(std::string_view bytes, const decode_limits& limits = {});

/// The name of the op of `m`, e.g. `dlq.list`, for logs.
std::string_view op_name(const request& m);

} // namespace herald::control
