#pragma once

/// The consumer actor: one per service on a node, and its ordering shards.
///
/// The consumer actor receives `event_batch` messages from the node's
/// transport pump (and from local publishes) in stream order, tracks each
/// producer's stream (gaps, replay, offsets), and hands every new event to
/// the ordering shard its key hashes onto. A shard handles one entity's
/// events one at a time, in stream order, and different entities
/// concurrently: while an entity waits for a retry, only its own later
/// events wait (in a bounded queue; when one fills, its stream is paused and
/// read again from the log later, never dropped).
///
/// Each shard is also the supervisor of its events: a handler that throws
/// or returns an error is retried with exponential backoff and jitter (see
/// `retry_policy`), then the event goes to the dead-letter actor with every
/// attempt. The entity then goes on (`continue`) or is parked (`park`).
///
/// Handlers are seed-style functions (`subscription`) and/or a service
/// actor whose CAF behavior handles `herald::event`. A shard never waits
/// for either:
///
/// - Function handlers run on the consumer's `handler_pool` (up to
///   `consumer_config::concurrency` calls at once); the shard hands an
///   event over and gets the outcome back as a message. With no pool
///   (concurrency 0) they run on the shard itself.
/// - The service actor is asked with one request per event, answered now
///   or later (a response promise), within `handler_timeout`. The consumer
///   spawns it from its `service_fn` and supervises it: an exception in its
///   behavior is that event's failed attempt and the actor lives on; an
///   actor that dies anyway is spawned again, at most `restarts.max` times
///   within `restarts.within`; one more death pauses the consumer (it reads
///   nothing new and asks nothing) for `restarts.within`, then it starts
///   the service again.
///
/// Either way an entity has one event in a handler at a time, so per-entity
/// order holds however many calls run at once.
///
/// Offsets: per stream, every event up to the committed seq is finished
/// (handled or durably dead-lettered); events finish out of order across
/// entities, so the offset is the seq before the oldest unfinished one. A
/// stream whose stored offset cannot be read is not read at all until it
/// can (see `offset_store::load`): a read error is never taken for offset
/// 0, which would replay the stream from its start.
///
/// Thread safety: the stats are atomics, readable from any thread; the
/// stream positions are guarded by `consumer_stats::positions_mtx`.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <spdlog/fwd.h>

#include "herald/actors/group.hpp"
#include "herald/actors/handler_pool.hpp"
#include "herald/actors/history.hpp"
#include "herald/actors/messages.hpp"
#include "herald/core/config.hpp"
#include "herald/core/histogram.hpp"

namespace herald {

/// Counters of one consumer for one event type.
struct type_stats {
  explicit type_stats(std::string name) : type(std::move(name)) {}
  const std::string type;
  /// Events handled (after retries, if any).
  std::atomic<uint64_t> handled{0};
  /// Failed attempts.
  std::atomic<uint64_t> failed{0};
  /// Retries scheduled.
  std::atomic<uint64_t> retried{0};
  /// Events stored as dead letters.
  std::atomic<uint64_t> dead_lettered{0};
};

/// Counters of one consumer.
struct consumer_stats {
  /// Makes the per-type counters of `types` (the catalog's events).
  explicit consumer_stats(const std::vector<std::string>& types = {}) {
    for (auto& t : types)
      per_type.push_back(std::make_unique<type_stats>(t));
  }
  /// Live events the node sent to the consumer actor.
  std::atomic<uint64_t> dispatched{0};
  /// Events every handler of the consumer succeeded on (after retries).
  std::atomic<uint64_t> handled{0};
  /// Failed attempts: a handler threw or returned an error.
  std::atomic<uint64_t> failed{0};
  /// Retries scheduled after a failed attempt.
  std::atomic<uint64_t> retried{0};
  /// Events stored as dead letters (attempts exhausted, non-retryable, or
  /// behind a parked entity).
  std::atomic<uint64_t> dead_lettered{0};
  /// Redriven dead letters that finished (handled, or dead-lettered again).
  std::atomic<uint64_t> redriven{0};
  /// Alerts raised.
  std::atomic<uint64_t> alerts{0};
  /// Times an entity's full queue paused a stream.
  std::atomic<uint64_t> pauses{0};
  /// Streams being read from their producer's log now (after a gap, a
  /// pause, or on first contact); their skipped live events come again.
  std::atomic<uint64_t> catching_up{0};
  /// Events handed to shards whose stream position is not finished yet
  /// (neither handled nor stored as a dead letter).
  std::atomic<uint64_t> unfinished{0};
  /// Live events not handed to handlers: duplicates, events that arrived
  /// while their stream was catching up (the replay brings them) or while
  /// its offset could not be read (the catch-up after the load brings
  /// them), and events that came before any handler.
  std::atomic<uint64_t> skipped{0};
  /// Live events the node did not hand to the consumer because its backlog
  /// was full; the consumer notices the gap and replays them.
  std::atomic<uint64_t> shed{0};
  /// Events handed to handlers from a replay of the producer's log.
  std::atomic<uint64_t> replayed{0};
  /// Gaps noticed (a missing event, live or at the tail).
  std::atomic<uint64_t> gaps{0};
  /// Times the consumer found its position older than the producer's
  /// retention and skipped to the oldest retained event.
  std::atomic<uint64_t> behind_retention{0};
  /// Attempts that failed because a handler took longer than
  /// `handler_timeout`.
  std::atomic<uint64_t> timeouts{0};
  /// Times the service actor died and was started again.
  std::atomic<uint64_t> service_restarts{0};
  /// Handler results that came after the lease of their event's partition
  /// ended (or a margin before it could expire): discarded, not
  /// committed; the partition's next holder handles the event again.
  std::atomic<uint64_t> discarded{0};
  /// Events given up unfinished because their partition's lease ended
  /// (`discarded` included): waiting ones are not attempted.
  std::atomic<uint64_t> abandoned{0};
  /// Partitions this consumer held a lease on (all streams); kept by the
  /// consumer actor.
  std::atomic<uint64_t> partitions_owned{0};
  /// Partitions gained or lost (a rebalance moves some).
  std::atomic<uint64_t> partitions_moved{0};
  /// Whether the consumer is paused because its service actor kept dying
  /// (see `pause_reason`).
  std::atomic<bool> paused{false};
  /// How long one attempt of the handlers took.
  histogram handler_latency;
  /// From publish (the event's timestamp) to the end of its handling.
  histogram end_to_end_latency;
  /// Per event type; fixed when the stats are made.
  std::vector<std::unique_ptr<type_stats>> per_type;

  /// Where the consumer stands in one producer's stream, and what holds it
  /// back now (what `herald status` and `/healthz` report).
  struct stream_position {
    /// The last seq the producer reported durable (its heartbeats).
    uint64_t head = 0;
    /// The consumer's committed offset.
    uint64_t offset = 0;
    /// Whether an entity's full queue holds the stream paused now.
    bool paused = false;
    /// Why the stored offset cannot be read now (nothing of the stream is
    /// read until it can); empty when it can.
    std::string offset_error;
    /// The events the running catch-up found expired before they were
    /// handled (behind the producer's retention), `[expired_from,
    /// expired_to]`; both 0 when none. Cleared once the catch-up ends.
    uint64_t expired_from = 0;
    uint64_t expired_to = 0;
    /// When `offset` last moved, or the stream was first tracked (monotonic
    /// clock); the epoch until then. Tells a stalled consumer.
    std::chrono::steady_clock::time_point offset_moved{};
    /// One partition of the stream this member holds a lease on.
    struct lease {
      uint32_t partition = 0;
      uint64_t epoch = 0;
      /// The group's committed offset of the partition, as the owner last
      /// confirmed it.
      uint64_t offset = 0;
    };
    /// The partitions of the stream this member holds, by partition (its
    /// consumer group's share; all of them in a group of one once
    /// granted). Empty for a consumer outside groups.
    std::vector<lease> leases;
    /// The group's partition count; 0 outside groups.
    uint32_t partitions = 0;
    /// Partitions of the stream assigned to this member that it holds no
    /// lease on (consumer groups: their events wait), the lowest of them,
    /// and since when the one waiting longest has waited (monotonic
    /// clock); 0 and the epoch when none waits.
    uint32_t unleased = 0;
    uint32_t first_unleased = 0;
    std::chrono::steady_clock::time_point unleased_since{};
    /// The stream owner's last refusal of a lease this member asked for,
    /// or why its last request failed as a whole (a failing store, an
    /// owner that did not answer); empty when none since the last grant.
    std::string lease_refusal;
    /// Partitions paused because the group's dead letters at the stream's
    /// owner reached its quota (their new events wait in the log), the
    /// lowest of them, and the owner's refusal; 0 and empty when none.
    uint32_t quota_paused = 0;
    uint32_t first_quota_paused = 0;
    std::string quota_refusal;
    /// A group's dead letters waiting to be stored at the stream's owner.
    uint64_t letters_waiting = 0;
    /// The group's dead letters the stream's owner keeps, as it last said.
    uint64_t owner_dead_letters = 0;
  };
  /// Per stream id; updated with each heartbeat, offset commit, pause and
  /// resume, failed or successful offset load, and expired catch-up.
  std::map<std::string, stream_position> positions;
  /// The consumer group's live members as this consumer last heard
  /// (node names, sorted, itself included); empty outside groups. Guarded
  /// by `positions_mtx`.
  std::vector<std::string> group_members;
  mutable std::mutex positions_mtx;

  /// Applies `change` to the position of `stream` under `positions_mtx`.
  template <class F> void update_position(const std::string& stream, F change) {
    std::lock_guard<std::mutex> guard{positions_mtx};
    change(positions[stream]);
  }

  /// The counters of `type`, or null for a type not made at the start.
  type_stats* of_type(std::string_view type) const noexcept {
    for (auto& t : per_type)
      if (t->type == type)
        return t.get();
    return nullptr;
  }

  /// Why the consumer is paused, naming the service's last cause of
  /// death and when it is started again; empty when it is not paused.
  std::string pause_reason() const {
    std::lock_guard<std::mutex> guard{pause_mtx};
    return paused_because;
  }
  /// Sets `paused` and `pause_reason`; an empty `why` resumes.
  void set_paused(std::string why) {
    std::lock_guard<std::mutex> guard{pause_mtx};
    paused.store(!why.empty());
    paused_because = std::move(why);
  }

  /// Live events (sent by the node, not read from a log or redriven)
  /// handled or stored as dead letters.
  std::atomic<uint64_t> live_done{0};

  /// Live events taken off the consumer's mailbox and finished (handled,
  /// dead-lettered or skipped): the node compares it with `dispatched`.
  uint64_t finished() const noexcept {
    return live_done.load(std::memory_order_relaxed)
           + skipped.load(std::memory_order_relaxed);
  }

private:
  mutable std::mutex pause_mtx;
  std::string paused_because;
};

/// Sends a replay request for `stream` from seq `from` on, asking for at
/// most `max` events whose type one of `patterns` (parsed already) selects,
/// and, with `since_us`, none before the first event at or after that time
/// (microseconds since the epoch); the reply comes back to the consumer
/// actor as `(replay_atom, replay_reply)`. Returns the request id, or 0
/// when the stream's control endpoint is not known yet.
using replay_fn = std::function<uint64_t(
  const std::string& stream, uint64_t from, size_t max,
  const std::vector<pattern>& patterns, std::optional<int64_t> since_us,
  const caf::actor& reply_to)>;

/// Where an observer (a consumer without offsets, `herald tail`) starts in
/// each stream it follows, on first contact with it (its first live event
/// or heartbeat). By default it prints live events only, from the first
/// that arrives, and repairs no gap. With a replay start it reads the
/// stream's log from there, then follows live events with the gap
/// machinery of durable consumers: live events that arrive during the
/// replay are held and checked against it, so none is missed or handed
/// over twice, and later gaps are replayed too.
struct observe_options {
  /// Replay each stream from its oldest retained event first.
  /// Default: false.
  bool from_start = false;
  /// Replay each stream from its first event whose timestamp is at or
  /// after this time (microseconds since the epoch, the producer's clock;
  /// see `event_log::seq_at_or_after`) first. Ignored with `from_start`.
  /// A time after a stream's newest event replays nothing of it.
  /// Default: none.
  std::optional<int64_t> since_us;

  /// Whether the observer replays before it follows.
  bool replays() const noexcept {
    return from_start || since_us.has_value();
  }

  bool operator==(const observe_options&) const = default;
};

/// Loads (`load`) and stores (`store`) the consumer's offset in a stream:
/// every selected event with seq <= offset was handled. Both are called on
/// the consumer actor only, never concurrently.
struct offset_store {
  /// The stored offset in `stream`; 0 when none is stored (nothing handled
  /// yet). Called on first contact with a stream (its first live event or
  /// heartbeat). On an error the consumer does not take the stream's
  /// position to be 0: it logs an error naming the consumer, the stream and
  /// the cause, reads nothing of the stream (its live events are counted in
  /// `skipped`; the producer's log keeps them) and calls `load` again after
  /// 100 ms, doubling up to 5 s, until it succeeds; then it catches up from
  /// the loaded offset. Required when `durable`.
  std::function<caf::expected<uint64_t>(const std::string& stream)> load;
  /// Stores `seq` as the offset in `stream` (a batch every 50 ms); reports
  /// its own failures (a lost offset only replays more). Required when
  /// `durable`.
  std::function<void(const std::string& stream, uint64_t seq)> store;
};

/// The bound on live events a node's consumers hold while their streams
/// catch up (out of order, waiting for a replay), in envelope bytes, and
/// what it dropped. Shared by a node's consumers; the atomics may be read
/// from any thread. An event held by two consumers counts twice.
struct held_budget {
  /// The most bytes held per consumer and stream. Default: 64 MiB.
  size_t per_stream = size_t{64} << 20;
  /// The most bytes held over all consumers and streams. Default: 256 MiB.
  size_t total = size_t{256} << 20;
  /// Bytes held now.
  std::atomic<uint64_t> bytes{0};
  /// Live events dropped because they did not fit (the replay brings
  /// them: a dropped held event is a gap to repair like any other).
  std::atomic<uint64_t> dropped{0};
  /// Whether a drop was logged (once per node).
  std::atomic<bool> logged{false};
};

/// What a consumer actor is made of.
struct consumer_setup {
  /// The consumer (service) name, in every log line about its events.
  std::string name;
  /// Patterns that select what the service actor receives.
  std::vector<pattern> service_patterns;
  /// Counters shared with the node.
  std::shared_ptr<consumer_stats> stats;
  /// Whether the consumer tracks streams (gap repair, replay, offsets) and
  /// hands events to shards (retries, dead letters). Observers (`herald
  /// tail`) are not durable: they call their handlers in the consumer
  /// actor, in order, once, and see what `start` says. Default: true.
  bool durable = true;
  /// Where an observer starts (not read when `durable`). Default: live.
  observe_options start;
  /// Sends replay requests. Required when `durable`.
  replay_fn replay;
  /// Offsets. Required when `durable`.
  offset_store offsets;
  /// Events asked for per replay request: bounds the consumer's memory
  /// whatever the backlog. A catch-up asks for the next batch while at
  /// most one batch is moving (in a handler call or a service request)
  /// and at most `max_unfinished` are handed to shards and not finished,
  /// those waiting in entity queues included. Default: 2048.
  size_t replay_batch = 2048;
  /// Bounds the bytes of live events held while a stream catches up (the
  /// count is bounded at `replay_batch * 4` per stream either way).
  /// Default: null, the count alone.
  std::shared_ptr<held_budget> held;
  /// The most events a catch-up leaves handed to shards and not finished
  /// (see `replay_batch`); the node's live backlog per consumer has the
  /// same bound. Default: 16,384.
  size_t max_unfinished = 16384;
  /// How long to wait for a replay reply before asking again.
  /// Default: 2 s.
  std::chrono::milliseconds replay_timeout{2000};
  /// The node's name, in dead letters and log lines.
  std::string node;
  /// Where the consumer and its shards log: the node's logger, so that two
  /// nodes in one process keep their lines apart. Default: null, spdlog's
  /// default logger as of the spawn.
  std::shared_ptr<spdlog::logger> log;
  /// Shards, entity buffer, retries, dead-letter policy, handler timeout
  /// and service restarts (`name`, `subscribe`, `alert` and `concurrency`
  /// are not read here).
  consumer_config policy;
  /// Where function handlers run (made with `policy.concurrency` threads);
  /// the caller stops it once the actor system is done with the consumer.
  /// Default: null, on the shards.
  std::shared_ptr<handler_pool> pool;
  /// The dead-letter actor (`spawn_dead_letters`). Required when durable.
  caf::actor dead_letters;
  /// The alert actor (`spawn_alerts`), told of each of the consumer's
  /// dead letters stored at a stream's owner. Default: null, none.
  caf::actor alerts;
  /// Entities parked when the consumer starts (policy `park`, dead letters
  /// not redriven yet), with the dead letter each is parked behind.
  std::vector<std::pair<std::string, uint64_t>> parked;
  /// Told of every event the consumer finishes (handled or sent to the
  /// dead-letter actor) before it counts as done. Default: null, none.
  std::shared_ptr<handling_history> history;
  /// Sends a consumer group's `lease_request` to the owner of
  /// `req.stream` (served in-process for the node's own stream); the
  /// answer comes back to `reply_to` as `(group_atom, lease_reply)` with
  /// the returned id, or with `error` set when the owner cannot be asked
  /// or answered an error. Returns the request's id, 0 when the owner's
  /// control endpoint is not known yet (the consumer asks again later).
  /// Required when `durable`: every durable consumer is a group member
  /// (of a group of one when alone).
  std::function<uint64_t(lease_request req, const caf::actor& reply_to)> lease;
  /// Lease margin and rejoin grace (`groups:`); the owner's reply gives
  /// the lease's length.
  groups_config groups;
  /// A deliberately wrong consumer, for tests (see
  /// `test_hooks_config::commit_before_handle`): an event counts as
  /// finished when it is handed to a shard, so its offset may be committed
  /// before its handler ran. Default: false.
  bool commit_before_handle = false;
};

/// Spawns a consumer actor and its shards. Messages it takes:
/// `event_batch` (live events, in stream order per stream);
/// `(heartbeat_atom, stream_heartbeat)`; `(replay_atom, replay_reply)`;
/// `(subscribe_atom, subscription)` adds a seed-style handler;
/// `(attach_atom, service_fn)` starts (or replaces) the service actor;
/// `(flush_atom)`
/// commits offsets; `(redrive_atom, std::vector<store::dead_letter>)` hands
/// dead letters back to the handlers, in order per entity;
/// `(unpark_atom, std::string key)` lets a parked entity go on;
/// `(group_members_atom, std::vector<std::string>)` the group's live
/// members (until the first, the node alone); `(group_atom, lease_reply)`
/// the owner's answers.
caf::actor spawn_consumer(caf::actor_system& sys, consumer_setup setup);

} // namespace herald
