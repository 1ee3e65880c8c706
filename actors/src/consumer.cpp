#include "herald/actors/consumer.hpp"

#include <algorithm>
#include <deque>
#include <exception>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include "herald/actors/dead_letters.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/logging.hpp"
#include "herald/core/partition.hpp"
#include "shard.hpp"

namespace herald {

namespace {

/// Looks at a consumer's leases: from the consumer to itself.
using group_tick_atom = caf::atom_constant<caf::atom("hgtick")>;

// After a failed read of a stream's offset, the delay before the next load;
// it doubles per failure up to the cap.
constexpr auto offset_retry_initial = std::chrono::milliseconds{100};
constexpr auto offset_retry_max = std::chrono::milliseconds{5000};

// Where a consumer stands in one type of one stream: the last event of the
// type it accepted.
struct type_position {
  uint64_t type_seq = 0;
  uint64_t seq = 0;
};

// One partition of one stream, as this member holds it (consumer groups,
// see group.hpp). The lease's life: `none` → an acquire is sent →
// `asking` → granted: `held` (the gate opens under its epoch; the stream
// is read again from the group's committed offset) → renewed with every
// commit, until the owner calls it stale, it nears expiry, or it is
// handed over: `releasing` (no new attempts; calls in flight end) →
// released with the last offset → `none`.
struct partition_state {
  enum class lease : uint8_t { none, asking, held, releasing };
  lease state = lease::none;
  uint64_t epoch = 0;
  /// The earliest the owner may take the lease back: counted from when the
  /// request that granted or renewed it was sent, less the clocks' drift.
  std::chrono::steady_clock::time_point expires{};
  /// Releasing: release by then even if calls still run (their results
  /// are discarded).
  std::chrono::steady_clock::time_point release_by{};
  /// Every event of the partition with seq <= handled is finished.
  uint64_t handled = 0;
  /// The last seq handed to a shard.
  uint64_t accepted = 0;
  /// The offset the owner last confirmed.
  uint64_t committed = 0;
  /// Seqs handed to shards, in order: 0 pending, 1 finished, 2 abandoned
  /// (the offset never passes it).
  std::deque<std::pair<uint64_t, uint8_t>> in_flight;
  uint32_t pending = 0;
  /// Its events from the committed offset on are being read again: the
  /// stream's position says nothing of it until that read ends.
  bool rewinding = false;
  /// Another member asked for it (the owner says).
  bool wanted = false;
  /// The group's dead letters at the owner reached its quota: no new
  /// event of the partition is taken (they wait in the log) until this
  /// member's letters of it are stored; then it is read again from
  /// `accepted`.
  bool quota_paused = false;
  /// Since when it has been assigned to this member without a lease; the
  /// epoch while it is held or not assigned here.
  std::chrono::steady_clock::time_point waiting_since{};
};

// A stream's share of the consumer group: its partitions and the request
// in flight to the stream's owner (one at a time).
struct group_state {
  std::vector<partition_state> parts;
  /// The gates of `parts`, read by the shards.
  lease_gate* gates = nullptr;
  uint64_t request = 0;
  std::chrono::steady_clock::time_point request_sent{};
  /// Partitions of the group nobody has held for a lease's length (the
  /// owner's last answer): asked for as standby.
  std::vector<uint32_t> orphans;
  /// The highest seq looked at in order (handed over or not).
  uint64_t examined = 0;
  /// When the held leases are renewed next.
  std::chrono::steady_clock::time_point renew_at{};
  /// The offset this consumer kept itself before groups (upgrade).
  uint64_t initial = 0;
  /// The owner's lease length, from its last answer.
  std::chrono::milliseconds ttl{0};
  /// The last refusal logged (to log each cause once).
  std::string last_refusal;
  /// The owner's last refusal or failed request since a grant (what
  /// `herald status` shows of partitions that wait); empty after a grant.
  std::string refusal;
  /// Dead letters to store at the owner, in the order they came; the
  /// first `letters_sent` are in the request in flight.
  std::deque<dead_letter_request> letters;
  size_t letters_sent = 0;
  /// Not before then (after a refusal for the quota or a failure).
  std::chrono::steady_clock::time_point letters_retry_at{};
  /// Redriven letters handled, to remove at the owner; the first
  /// `redriven_sent` are in the request in flight.
  std::vector<group_letter_done> redriven;
  size_t redriven_sent = 0;
  /// Redriven letters of entities whose redrive goes on in a later reply
  /// (`lease_reply::redrive_more`), by key, in the order handed: they go
  /// to the handlers with the entity's last part. Dropped when their lease
  /// ends (the owner hands them to the partition's next holder).
  std::map<std::string, std::vector<group_letter>> held_redrive;
  /// The owner's last quota refusal.
  std::string quota_refusal;
  /// What `show_waiting` last put in the stats.
  uint32_t shown_unleased = 0;
  std::chrono::steady_clock::time_point shown_since{};
  std::string shown_refusal;
};

// Where a consumer stands in one producer's stream.
//
// Live events are checked against `types`: the next event of a type must
// carry the next type_seq. A jump is a gap (PUB/SUB dropped something): the
// stream switches to catching up, reads the producer's log from `cursor`
// in bounded batches, and goes live again once a read reaches the head.
// Live events that arrive meanwhile are skipped; the log brings them.
struct stream_state {
  bool catching_up = false;
  /// Next seq to read while catching up.
  uint64_t cursor = 1;
  /// Pending replay request, 0 for none.
  uint64_t request = 0;
  /// Every selected event of the stream with seq <= synced has been
  /// seen: the head of the last completed catch-up, or of the last stream
  /// heartbeat that found no gap. No offset is committed past it: a live
  /// event of one type dropped before a later one of another type is
  /// found only then.
  uint64_t synced = 0;
  /// Every selected event with seq <= handled was finished: the offset.
  uint64_t handled = 0;
  /// The last seq handed to a shard.
  uint64_t accepted = 0;
  /// Seqs handed to shards, in order, and whether each finished: the
  /// offset moves up to the first unfinished one.
  std::deque<std::pair<uint64_t, bool>> in_flight;
  /// Entities whose queue is full hold the stream paused: while > 0 it
  /// reads nothing new, and catches up from the log afterwards.
  uint32_t pauses = 0;
  /// The stream's index in `consumer_state::stream_ids`.
  uint32_t index = 0;
  /// The offset last stored.
  uint64_t committed = 0;
  /// Whether the consumer had a position in this stream before this
  /// catch-up (a stored offset or events handled): then starting past the
  /// producer's retention loses events and is reported.
  bool positioned = false;
  std::unordered_map<std::string, type_position> types;
  /// Live events that arrived while catching up, checked again once the
  /// catch-up ends (bounded in count and in bytes, `consumer_setup::held`;
  /// what does not fit the log brings again).
  event_batch held;
  /// Envelope bytes of `held`, counted in `consumer_setup::held`.
  uint64_t held_bytes = 0;
  /// The end of the last expired range reported (see `behind_retention`).
  uint64_t expired_upto = 0;
  /// A consumer group member's partitions of the stream; null outside
  /// groups (observers, consumers without `lease`).
  std::unique_ptr<group_state> group;
  /// A rewind asked for while a replay request was in flight: applied
  /// when its reply comes (0 for none).
  uint64_t rewind = 0;
  /// An observer's `since_us` until its first replay of the stream starts
  /// there: sent with the replay requests; when the producer does not
  /// apply it (an older node), replayed events older than it are dropped
  /// here up to the first that is not.
  std::optional<int64_t> since;
};

struct consumer_state {
  consumer_setup setup;
  /// Starts the service actor; empty when none is attached.
  service_fn factory;
  /// The running service actor; null while paused.
  caf::actor service;
  /// When the service was restarted, within the restart window.
  std::deque<std::chrono::steady_clock::time_point> restarts;
  /// The service kept dying: nothing is read or asked until it restarts.
  bool service_paused = false;
  std::vector<subscription> subs;
  /// Every pattern of the consumer, for replay requests.
  std::vector<pattern> patterns;
  std::unordered_map<std::string, stream_state> streams;
  /// Streams whose offset could not be read (not in `streams`), with the
  /// delay before the load that is scheduled: nothing of them is read
  /// until it succeeds.
  std::unordered_map<std::string, std::chrono::milliseconds> unreadable;
  /// Stream ids by index (work items carry the index).
  std::vector<std::string> stream_ids;
  /// The ordering shards, and the work for each gathered while handling one
  /// message (sent as one batch per shard at its end).
  std::vector<caf::actor> shards;
  std::vector<work_batch> outgoing;
  /// Of the events handed to shards and not finished (`stats.unfinished`),
  /// those waiting in entity queues, per shard: they do not
  /// hold back a catch-up (a retrying entity must not stall the others).
  std::vector<uint64_t> held;
  uint64_t held_total = 0;
  /// Dead letters redriven before the consumer had a handler.
  std::vector<store::dead_letter> waiting_redrive;
  bool flush_scheduled = false;
  /// The group's live members (node names), itself included, and which
  /// partitions that makes this member's (rendezvous).
  std::vector<std::string> members;
  std::vector<bool> assigned;
  /// The gates of every stream's partitions, shared with the shards.
  std::shared_ptr<lease_gates> gates = std::make_shared<lease_gates>();
  bool group_tick_scheduled = false;
  static inline const char* name = "herald.consumer";

  // The service goes with its consumer (the node stops consumers, and the
  // consumer restarts the service: the node never knows the current one).
  // What its streams held no longer counts.
  ~consumer_state() {
    if (setup.held)
      for (auto& [id, ss] : streams)
        setup.held->bytes.fetch_sub(ss.held_bytes, std::memory_order_relaxed);
    if (service)
      caf::anon_send_exit(service, caf::exit_reason::user_shutdown);
  }
};

using consumer_actor = caf::stateful_actor<consumer_state>;

bool selected(consumer_actor* self, std::string_view type) {
  auto& st = self->state;
  if (any_matches(st.setup.service_patterns, type))
    return true;
  for (auto& s : st.subs)
    if (s.selector.matches(type))
      return true;
  return false;
}

void schedule_flush(consumer_actor* self) {
  if (self->state.flush_scheduled || !self->state.setup.durable)
    return;
  self->state.flush_scheduled = true;
  self->delayed_send(self, std::chrono::milliseconds{50}, flush_atom::value);
}

void flush_offsets(consumer_actor* self) {
  self->state.flush_scheduled = false;
  auto& stats = *self->state.setup.stats;
  for (auto& [stream, st] : self->state.streams)
    if (auto upto = std::min(st.handled, st.synced);
        !st.group && upto > st.committed) {
      self->state.setup.offsets.store(stream, upto);
      st.committed = upto;
      std::lock_guard<std::mutex> guard{stats.positions_mtx};
      auto& pos = stats.positions[stream];
      pos.offset = upto;
      pos.offset_moved = std::chrono::steady_clock::now();
    }
}

void request_next(consumer_actor* self, const std::string& stream);

// Whether a catch-up may ask for its next batch: the events handed to
// shards and not finished, apart from those waiting behind a busy entity,
// are fewer than a batch (a retrying entity does not stall the others),
// and all of them together are at most `max_unfinished`. Without the
// second bound, entities that wait (a slow service actor, many retries)
// let a catch-up read on until their queues held the whole backlog.
bool may_read(consumer_actor* self) {
  auto& st = self->state;
  auto in_flight = st.setup.stats->unfinished.load();
  auto moving = in_flight - std::min(in_flight, st.held_total);
  return moving <= st.setup.replay_batch
         && in_flight <= st.setup.max_unfinished;
}

void request_ready(consumer_actor* self) {
  if (!may_read(self))
    return;
  for (auto& [stream, ss] : self->state.streams)
    if (ss.catching_up && ss.request == 0 && ss.pauses == 0)
      request_next(self, stream);
}

// Calls the handlers of an observer (`herald tail`): in order, no retries.
void observe(consumer_actor* self, const event& ev, bool live) {
  auto& st = self->state;
  auto o = detail::call_handlers(st.subs, ev);
  if (!o.ok)
    detail::log_failure(*st.setup.log, st.setup.name, ev, 1, o,
                        "none (an observer)");
  (o.ok ? st.setup.stats->handled : st.setup.stats->failed)
    .fetch_add(1, std::memory_order_relaxed);
  if (live)
    st.setup.stats->live_done.fetch_add(1, std::memory_order_relaxed);
}

// Whether the consumer keeps per-stream positions: a durable consumer, or
// an observer that replays before it follows.
bool tracks_streams(consumer_actor* self) {
  auto& setup = self->state.setup;
  return setup.durable || setup.start.replays();
}

void on_done(consumer_actor* self, const done_batch& done);

// Hands `ev` to the shard its key hashes onto (sent at the end of the
// current message, see `send_work`); an observer's handlers are called
// here and now, in stream order.
void deliver(consumer_actor* self, stream_state& ss, const event& ev,
             bool live) {
  auto& st = self->state;
  if (!st.setup.durable) {
    ss.accepted = ev.seq();
    ss.handled = ev.seq();
    observe(self, ev, live);
    return;
  }
  auto i = detail::shard_of(ev.key(), st.shards.size());
  st.outgoing[i].push_back({ev, ss.index, 0, live});
  ss.accepted = ev.seq();
  ss.in_flight.emplace_back(ev.seq(), false);
  st.setup.stats->unfinished.fetch_add(1);
  if (st.setup.commit_before_handle)
    on_done(self, {{ss.index, ev.seq()}}); // wrong on purpose: a test hook
}

void send_work(consumer_actor* self) {
  auto& st = self->state;
  for (size_t i = 0; i < st.outgoing.size(); ++i)
    if (!st.outgoing[i].empty()) {
      self->send(st.shards[i], std::move(st.outgoing[i]));
      st.outgoing[i] = {};
    }
}

// A group member's finished (or abandoned) event: moves its partition's
// offset up to the first unfinished one. Events of a lease that ended are
// forgotten already.
void on_group_done(consumer_actor* self, group_state& g, const work_done& d) {
  if (d.partition >= g.parts.size())
    return;
  auto& ps = g.parts[d.partition];
  using lease = partition_state::lease;
  if (ps.epoch != d.epoch
      || (ps.state != lease::held && ps.state != lease::releasing))
    return;
  auto& q = ps.in_flight;
  auto it = std::lower_bound(q.begin(), q.end(), d.seq,
                             [](const auto& entry, uint64_t seq) {
                               return entry.first < seq;
                             });
  if (it == q.end() || it->first != d.seq || it->second != 0)
    return;
  it->second = d.abandoned ? 2 : 1;
  --ps.pending;
  self->state.setup.stats->unfinished.fetch_sub(1);
  while (!q.empty() && q.front().second == 1) {
    ps.handled = std::max(ps.handled, q.front().first);
    q.pop_front();
  }
}

// Marks finished events; moves each stream's offset up to its first
// unfinished event.
void on_done(consumer_actor* self, const done_batch& done) {
  auto& st = self->state;
  for (auto& d : done) {
    if (d.stream >= st.stream_ids.size())
      continue;
    auto& ss = st.streams[st.stream_ids[d.stream]];
    if (ss.group) {
      on_group_done(self, *ss.group, d);
      continue;
    }
    auto& q = ss.in_flight;
    auto it = std::lower_bound(q.begin(), q.end(), d.seq,
                               [](const auto& entry, uint64_t seq) {
                                 return entry.first < seq;
                               });
    if (it == q.end() || it->first != d.seq || it->second)
      continue;
    it->second = true;
    st.setup.stats->unfinished.fetch_sub(1);
    bool moved = false;
    while (!q.empty() && q.front().second) {
      ss.handled = std::max(ss.handled, q.front().first);
      q.pop_front();
      moved = true;
    }
    if (moved) {
      ss.positioned = true;
      schedule_flush(self);
    }
  }
  request_ready(self);
}

// A group member's delivery: `ev` goes to a shard when this member holds
// its partition and has not handed it over under this lease yet (a
// partition read again from its committed offset skips what it has);
// returns whether it went.
bool deliver_grouped(consumer_actor* self, stream_state& ss, const event& ev,
                     bool live) {
  auto& st = self->state;
  auto& g = *ss.group;
  g.examined = std::max(g.examined, ev.seq());
  auto p = partition_of(ev.key(), static_cast<uint32_t>(g.parts.size()));
  auto& ps = g.parts[p];
  if (ps.quota_paused && ps.state == partition_state::lease::held)
    return false; // read again from `accepted` once resumed
  if (ps.state != partition_state::lease::held || ev.seq() <= ps.accepted) {
    if (live) // another member's, or read again: not this one's to handle
      st.setup.stats->skipped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  auto i = detail::shard_of(ev.key(), st.shards.size());
  st.outgoing[i].push_back(
    {ev.under_lease(p, ps.epoch), ss.index, 0, live, p, ps.epoch, &g.gates[p]});
  ps.accepted = ev.seq();
  ss.accepted = std::max(ss.accepted, ev.seq());
  ps.in_flight.emplace_back(ev.seq(), 0);
  ++ps.pending;
  st.setup.stats->unfinished.fetch_add(1);
  if (st.setup.commit_before_handle) // wrong on purpose: a test hook
    on_done(self, {{ss.index, ev.seq(), p, ps.epoch}});
  return true;
}

// Accepts `ev` unless its type already went past it (a group member: unless
// its partition's position did); returns whether it was delivered.
bool accept(consumer_actor* self, stream_state& ss, const event& ev,
            bool live) {
  auto& tp = ss.types[std::string{ev.type()}];
  bool fresh = ev.type_seq() > tp.type_seq;
  if (fresh)
    tp = {ev.type_seq(), ev.seq()};
  if (ss.group)
    return deliver_grouped(self, ss, ev, live);
  if (!fresh)
    return false;
  deliver(self, ss, ev, live);
  return true;
}

void request_next(consumer_actor* self, const std::string& stream) {
  auto& st = self->state;
  auto& ss = st.streams[stream];
  auto id =
    st.setup.replay(stream, ss.cursor, st.setup.replay_batch, st.patterns,
                    ss.since, caf::actor_cast<caf::actor>(self));
  ss.request = id;
  // No reply in time (or no endpoint known yet): ask again.
  auto wait =
    id == 0 ? std::chrono::milliseconds{100} : st.setup.replay_timeout;
  self->delayed_send(self, wait, retry_atom::value, stream, id);
}

void start_catch_up(consumer_actor* self, const std::string& stream,
                    uint64_t from) {
  auto& ss = self->state.streams[stream];
  if (ss.catching_up) {
    ss.cursor = std::min(ss.cursor, from);
    return;
  }
  ss.catching_up = true;
  self->state.setup.stats->catching_up.fetch_add(1);
  ss.cursor = from;
  if (ss.pauses == 0 && may_read(self))
    request_next(self, stream);
}

// The offset of `stream` could not be read: says so, and loads it again
// after a backoff (`on_load_offset`).
void load_offset_later(consumer_actor* self, const std::string& stream,
                       const caf::error& err) {
  auto& st = self->state;
  auto [it, first] = st.unreadable.try_emplace(stream, offset_retry_initial);
  if (!first)
    it->second = std::min(it->second * 2, offset_retry_max);
  st.setup.log->error(
    "consumer={} stream={}: cannot read the committed offset: "
    "{}; reading nothing of the stream (not replaying it from 0) "
    "and trying again in {} ms",
    st.setup.name, stream, message_of(err), it->second.count());
  st.setup.stats->update_position(stream, [&](auto& pos) {
    pos.offset_error = message_of(err);
  });
  self->delayed_send(self, it->second, load_offset_atom::value, stream);
}

// The stored offset of `stream`, or nothing when it cannot be read now: a
// load is scheduled then, and none is tried before it.
std::optional<uint64_t> load_offset(consumer_actor* self,
                                    const std::string& stream) {
  auto& st = self->state;
  if (!st.setup.durable)
    return uint64_t{0}; // an observer keeps no offsets: the log's start
  if (st.unreadable.count(stream) > 0)
    return std::nullopt;
  auto offset = st.setup.offsets.load(stream);
  if (!offset) {
    load_offset_later(self, stream, offset.error());
    return std::nullopt;
  }
  return *offset;
}

// Starts tracking `stream` from its stored `offset`. When the event that
// made the contact is exactly the next one (`next_seq`), no catch-up is
// needed: the common case of a consumer that was there first.
stream_state& start_stream(consumer_actor* self, const std::string& stream,
                           uint64_t offset, uint64_t next_seq = 0) {
  auto& st = self->state;
  auto& ss = st.streams[stream];
  st.setup.stats->update_position(stream, [&](auto& pos) {
    pos.offset = offset;
    pos.offset_error.clear();
    pos.offset_moved = std::chrono::steady_clock::now();
  });
  ss.index = static_cast<uint32_t>(st.stream_ids.size());
  st.stream_ids.push_back(stream);
  ss.accepted = offset;
  ss.handled = offset;
  ss.committed = offset;
  ss.positioned = offset > 0;
  if (!st.setup.durable && !st.setup.start.from_start)
    ss.since = st.setup.start.since_us;
  // From a time, the event that made the contact says nothing of where the
  // replay starts: the producer's log does.
  if (next_seq != offset + 1 || ss.since)
    start_catch_up(self, stream, offset + 1);
  else
    ss.synced = offset;
  if (st.service_paused) {
    // Read later, once the service is back.
    ++ss.pauses;
    start_catch_up(self, stream, ss.accepted + 1);
  }
  return ss;
}

bool grouped(consumer_actor* self);
void start_group(consumer_actor* self, const std::string& stream,
                 stream_state& ss, uint64_t start);

// The stream's state; on first contact, started from the stored offset.
// Null when that offset cannot be read now (see `load_offset`).
stream_state* open_stream(consumer_actor* self, const std::string& stream,
                          uint64_t next_seq = 0) {
  auto& st = self->state;
  if (auto it = st.streams.find(stream); it != st.streams.end())
    return &it->second;
  if (grouped(self)) {
    // A group member starts where the stream is; each partition it is
    // granted is read again from the group's committed offset.
    auto start = next_seq > 0 ? next_seq - 1 : 0;
    auto& ss = start_stream(self, stream, start, next_seq);
    start_group(self, stream, ss, start);
    return &ss;
  }
  auto offset = load_offset(self, stream);
  if (!offset)
    return nullptr;
  return &start_stream(self, stream, *offset, next_seq);
}

// The scheduled load of an offset that could not be read: on success the
// stream starts with a catch-up from the offset, which brings the live
// events skipped meanwhile.
void on_load_offset(consumer_actor* self, const std::string& stream) {
  auto& st = self->state;
  auto it = st.unreadable.find(stream);
  if (it == st.unreadable.end())
    return;
  auto offset = st.setup.offsets.load(stream);
  if (!offset) {
    load_offset_later(self, stream, offset.error());
    return;
  }
  st.unreadable.erase(it);
  st.setup.log->info("consumer={} stream={}: read the committed offset {}; "
                     "catching up from the producer's log",
                     st.setup.name, stream, *offset);
  start_stream(self, stream, *offset);
}

// --- consumer groups --------------------------------------------------------

// The event a dead letter's `envelope` holds, or why it does not decode.
caf::expected<event> event_of(std::string envelope) {
  auto owner = std::make_shared<std::string>(std::move(envelope));
  size_t offset = 0;
  return decode_next(*owner, offset, owner);
}

using steady = std::chrono::steady_clock;
using lease_state = partition_state::lease;

// Looks at leases and sends what is due to the owners this often.
constexpr auto group_tick = std::chrono::milliseconds{100};
// A lease request unanswered this long is taken as lost.
constexpr auto lease_request_timeout = std::chrono::seconds{2};
// How long a partition being handed over waits for its handler calls.
constexpr auto release_wait = std::chrono::seconds{2};

bool grouped(consumer_actor* self) {
  return self->state.setup.durable
         && static_cast<bool>(self->state.setup.lease);
}

uint32_t partition_count(consumer_actor* self) {
  return std::clamp<uint32_t>(self->state.setup.policy.partitions, 1,
                              max_partitions);
}

// Which partitions are this member's among the group's live members.
void compute_assigned(consumer_actor* self) {
  auto& st = self->state;
  auto n = partition_count(self);
  st.assigned.assign(n, false);
  for (auto p :
       assigned_partitions(st.setup.name, n, st.setup.node, st.members))
    st.assigned[p] = true;
}

// Shows the stream's leases in the stats (`herald status`, metrics).
void show_leases(consumer_actor* self, const std::string& stream,
                 const group_state& g) {
  auto& st = self->state;
  std::vector<consumer_stats::stream_position::lease> held;
  uint64_t lowest = UINT64_MAX;
  for (uint32_t p = 0; p < g.parts.size(); ++p) {
    auto& ps = g.parts[p];
    if (ps.state == lease_state::held || ps.state == lease_state::releasing) {
      held.push_back({p, ps.epoch, ps.committed});
      lowest = std::min(lowest, ps.committed);
    }
  }
  st.setup.stats->update_position(stream, [&](auto& pos) {
    pos.partitions = static_cast<uint32_t>(g.parts.size());
    if (lowest != UINT64_MAX && lowest != pos.offset) {
      pos.offset = lowest;
      pos.offset_moved = steady::now();
    }
    pos.leases = std::move(held);
  });
  uint64_t owned = 0;
  for (auto& [id, ss] : st.streams)
    if (ss.group)
      for (auto& ps : ss.group->parts)
        owned +=
          ps.state == lease_state::held || ps.state == lease_state::releasing;
  st.setup.stats->partitions_owned.store(owned, std::memory_order_relaxed);
}

// Tells the stats which partitions assigned to this member wait for a
// lease, since when, and the owner's last refusal (status.cpp makes a
// health reason of a long wait). Writes only what changed.
void show_waiting(consumer_actor* self, const std::string& stream,
                  group_state& g, steady::time_point now) {
  auto& st = self->state;
  uint32_t count = 0;
  uint32_t first = 0;
  steady::time_point since{};
  for (uint32_t p = 0; p < g.parts.size(); ++p) {
    auto& ps = g.parts[p];
    bool waits =
      p < st.assigned.size() && st.assigned[p]
      && (ps.state == lease_state::none || ps.state == lease_state::asking);
    if (!waits) {
      ps.waiting_since = {};
      continue;
    }
    if (ps.waiting_since == steady::time_point{})
      ps.waiting_since = now;
    if (count++ == 0) {
      first = p;
      since = ps.waiting_since;
    } else {
      since = std::min(since, ps.waiting_since);
    }
  }
  if (count == g.shown_unleased && since == g.shown_since
      && g.refusal == g.shown_refusal)
    return;
  g.shown_unleased = count;
  g.shown_since = since;
  g.shown_refusal = g.refusal;
  st.setup.stats->update_position(stream, [&](auto& pos) {
    pos.unleased = count;
    pos.first_unleased = first;
    pos.unleased_since = since;
    pos.lease_refusal = g.refusal;
  });
}

// Forgets what of `ps` is in the shards: they give it up (the gate is
// closed), and nothing of it counts any more.
void drop_in_flight(consumer_actor* self, partition_state& ps) {
  self->state.setup.stats->unfinished.fetch_sub(ps.pending);
  ps.pending = 0;
  ps.in_flight.clear();
}

void close_gate(group_state& g, uint32_t p) {
  g.gates[p].take.store(0, std::memory_order_release);
  g.gates[p].keep.store(0, std::memory_order_release);
}

// `p` left this member: its entities parked by the group go on here (the
// next holder parks them, told by the owner), and it is not paused.
void leave_partition(consumer_actor* self, group_state& g, uint32_t p) {
  auto& st = self->state;
  g.parts[p].quota_paused = false;
  for (auto& shard : st.shards)
    self->send(shard, group_park_atom::value,
               static_cast<uint32_t>(g.parts.size()), p);
}

// The lease on `p` is gone (stale, or too near its expiry): stop at once;
// results that come later are discarded.
void lose(consumer_actor* self, const std::string& stream, group_state& g,
          uint32_t p, std::string_view why) {
  auto& st = self->state;
  auto& ps = g.parts[p];
  close_gate(g, p);
  st.setup.log->warn("consumer={} stream={} partition={}: lost the lease "
                     "(epoch {}): {}; its events in flight are given up",
                     st.setup.name, stream, p, ps.epoch, why);
  drop_in_flight(self, ps);
  ps.state = lease_state::none;
  ps.epoch = 0;
  ps.wanted = false;
  ps.rewinding = false;
  leave_partition(self, g, p);
  st.setup.stats->partitions_moved.fetch_add(1, std::memory_order_relaxed);
}

// Hands `p` over: no new attempts; calls in flight end (until
// `release_wait`), then the offset is committed and the lease released.
void start_release(consumer_actor* self, const std::string& stream,
                   group_state& g, uint32_t p, steady::time_point now) {
  auto& st = self->state;
  auto& ps = g.parts[p];
  ps.state = lease_state::releasing;
  ps.release_by = now + release_wait;
  g.gates[p].take.store(0, std::memory_order_release);
  st.setup.log->info("consumer={} stream={} partition={}: handing it over "
                     "(another member is assigned it)",
                     st.setup.name, stream, p);
}

// Reads `stream` again from `from`: at once, or once the replay request in
// flight is answered.
void rewind_stream(consumer_actor* self, const std::string& stream,
                   stream_state& ss, uint64_t from) {
  if (ss.catching_up && ss.request != 0) {
    ss.rewind = ss.rewind == 0 ? from : std::min(ss.rewind, from);
    return;
  }
  start_catch_up(self, stream, from);
}

// `p` is granted under `epoch` from the group's committed `offset`.
void gain(consumer_actor* self, const std::string& stream, stream_state& ss,
          uint32_t p, uint64_t epoch, uint64_t offset,
          steady::time_point expires) {
  auto& st = self->state;
  auto& g = *ss.group;
  auto& ps = g.parts[p];
  ps.state = lease_state::held;
  ps.epoch = epoch;
  ps.expires = expires;
  ps.handled = ps.accepted = ps.committed = offset;
  ps.in_flight.clear();
  ps.pending = 0;
  ps.wanted = false;
  ps.quota_paused = false;
  g.gates[p].keep.store(epoch, std::memory_order_release);
  g.gates[p].take.store(epoch, std::memory_order_release);
  st.setup.stats->partitions_moved.fetch_add(1, std::memory_order_relaxed);
  st.setup.log->debug("consumer={} stream={} partition={}: lease granted "
                      "(epoch {}), from offset {}",
                      st.setup.name, stream, p, epoch, offset);
  if (offset > 0)
    ss.positioned = true;
  if (offset < g.examined) {
    ps.rewinding = true;
    rewind_stream(self, stream, ss, offset + 1);
  }
}

void group_sync(consumer_actor* self, const std::string& stream,
                stream_state& ss, steady::time_point now, bool commit);

// How long a member waits before it asks the owner again to store dead
// letters it refused (the quota) or could not store.
constexpr auto letters_retry = std::chrono::seconds{1};
// About how many bytes of dead letters one request carries (at least one
// letter): well within a control message.
constexpr size_t letters_budget = 256 * 1024;

// Shows the stream's waiting letters and paused partitions in the stats.
void show_letters(consumer_actor* self, const std::string& stream,
                  const group_state& g) {
  uint32_t paused = 0;
  uint32_t first = 0;
  for (uint32_t p = 0; p < g.parts.size(); ++p)
    if (g.parts[p].quota_paused && paused++ == 0)
      first = p;
  self->state.setup.stats->update_position(stream, [&](auto& pos) {
    pos.quota_paused = paused;
    pos.first_quota_paused = first;
    pos.quota_refusal = paused > 0 ? g.quota_refusal : std::string{};
    pos.letters_waiting = g.letters.size();
  });
}

// Puts the group's dead letters and handled redriven letters that are due
// into `req` (the first of each are then in flight).
void add_letters(group_state& g, lease_request& req, steady::time_point now) {
  g.redriven_sent = std::min(g.redriven.size(), max_group_letters);
  req.redriven.assign(g.redriven.begin(),
                      g.redriven.begin()
                        + static_cast<std::ptrdiff_t>(g.redriven_sent));
  g.letters_sent = 0;
  if (now < g.letters_retry_at)
    return;
  size_t bytes = 0;
  for (auto& r : g.letters) {
    if (req.letters.size() >= max_group_letters
        || (bytes >= letters_budget && !req.letters.empty()))
      break;
    bytes += r.letter.envelope.size();
    group_letter gl{r.done.partition, r.done.epoch, r.letter};
    gl.letter.id = r.redriven_from;
    req.letters.push_back(std::move(gl));
  }
  g.letters_sent = req.letters.size();
}

// Takes up the partitions paused for the quota whose letters are stored:
// read again from what they took last.
void resume_paused(consumer_actor* self, const std::string& stream,
                   stream_state& ss) {
  auto& g = *ss.group;
  bool changed = false;
  for (uint32_t p = 0; p < g.parts.size(); ++p) {
    auto& ps = g.parts[p];
    if (!ps.quota_paused)
      continue;
    bool waits = std::any_of(g.letters.begin(), g.letters.end(),
                             [p](const dead_letter_request& r) {
                               return r.done.partition == p;
                             });
    if (waits)
      continue;
    ps.quota_paused = false;
    changed = true;
    self->state.setup.log->info("consumer={} stream={} partition={}: its dead "
                                "letters are stored: taking its events again",
                                self->state.setup.name, stream, p);
    if (ps.state == lease_state::held && ps.accepted < g.examined) {
      ps.rewinding = true;
      rewind_stream(self, stream, ss, ps.accepted + 1);
    }
  }
  if (changed)
    show_letters(self, stream, g);
}

// A shard's dead letter of a group member: stored at the stream's owner
// with the next request (the event stays unfinished until then).
void on_group_letter(consumer_actor* self, dead_letter_request& req) {
  auto& st = self->state;
  auto it = st.streams.find(req.letter.stream);
  if (it == st.streams.end() || !it->second.group) {
    // Not a group's stream (cannot be): kept by this node.
    self->send(st.setup.dead_letters, dead_letter_atom::value, std::move(req));
    return;
  }
  auto& g = *it->second.group;
  // Before the entity's letters of later events not yet sent: a letter that
  // came back from a shard (its entity stayed parked when a redrive came)
  // must not be stored nor handled after them.
  auto pos = g.letters.end();
  for (auto i = g.letters.begin()
                + static_cast<std::ptrdiff_t>(
                  std::min(g.letters_sent, g.letters.size()));
       i != g.letters.end(); ++i)
    if (i->letter.key == req.letter.key && i->letter.seq > req.letter.seq) {
      pos = i;
      break;
    }
  g.letters.insert(pos, std::move(req));
  show_letters(self, it->first, g);
  group_sync(self, it->first, it->second, steady::now(), false);
}

// The owner's answers to the letters of the request in flight.
void on_letter_results(consumer_actor* self, const lease_reply& r,
                       stream_state& ss) {
  auto& st = self->state;
  auto& g = *ss.group;
  auto sent = std::min(g.letters_sent, g.letters.size());
  g.letters_sent = 0;
  if (!r.error.empty()) {
    g.redriven_sent = 0;
    if (sent > 0)
      g.letters_retry_at = steady::now() + letters_retry;
    return;
  }
  g.redriven.erase(g.redriven.begin(),
                   g.redriven.begin()
                     + static_cast<std::ptrdiff_t>(
                       std::min(g.redriven_sent, g.redriven.size())));
  g.redriven_sent = 0;
  if (sent == 0)
    return;
  if (r.letters.size() != sent) {
    // An owner of an older version: it stores no group letters. Kept here.
    st.setup.log->warn("consumer={} stream={}: the stream's owner does not "
                       "keep the group's dead letters (an older version): "
                       "{} kept on this node",
                       st.setup.name, r.stream, sent);
    for (size_t i = 0; i < sent; ++i)
      self->send(st.setup.dead_letters, dead_letter_atom::value,
                 std::move(g.letters[i]));
    g.letters.erase(g.letters.begin(),
                    g.letters.begin() + static_cast<std::ptrdiff_t>(sent));
    show_letters(self, r.stream, g);
    return;
  }
  std::deque<dead_letter_request> kept;
  done_batch done;
  for (size_t i = 0; i < sent; ++i) {
    auto& req = g.letters[i];
    auto& res = r.letters[i];
    auto p = req.done.partition;
    switch (res.result) {
    case letter_result::stored: {
      req.letter.id = res.id;
      note_stored(*st.setup.log, req, req.letter, r.stream);
      if (req.parks)
        self->send(req.parks, dead_letter_atom::value, req.letter.key, res.id);
      if (st.setup.alerts)
        self->send(st.setup.alerts, alert_atom::value, req.letter.consumer);
      if (req.redriven_from == 0 && req.done.stream != no_stream)
        done.push_back(req.done);
      break;
    }
    case letter_result::stale:
      if (req.parks)
        self->send(req.parks, dead_letter_atom::value, req.letter.key,
                   uint64_t{0});
      st.setup.log->warn("consumer={} stream={} seq={} partition={}: dead "
                         "letter not stored: {}",
                         st.setup.name, r.stream, req.letter.seq, p,
                         res.reason);
      if (req.done.stream != no_stream) {
        auto d = req.done;
        d.abandoned = true;
        done.push_back(d);
      }
      break;
    case letter_result::quota:
    case letter_result::failed:
      if (res.result == letter_result::quota && p < g.parts.size()) {
        auto& ps = g.parts[p];
        if (!ps.quota_paused && ps.epoch == req.done.epoch) {
          ps.quota_paused = true;
          st.setup.log->error("consumer={} stream={} partition={}: paused: "
                              "{}",
                              st.setup.name, r.stream, p, res.reason);
        }
        g.quota_refusal = res.reason;
      } else if (res.result == letter_result::failed) {
        st.setup.log->error("consumer={} stream={}: dead letter of seq {} "
                            "not stored at the owner: {}; asking again",
                            st.setup.name, r.stream, req.letter.seq,
                            res.reason);
      }
      g.letters_retry_at = steady::now() + letters_retry;
      kept.push_back(std::move(req));
      break;
    }
  }
  g.letters.erase(g.letters.begin(),
                  g.letters.begin() + static_cast<std::ptrdiff_t>(sent));
  for (auto it = kept.rbegin(); it != kept.rend(); ++it)
    g.letters.push_front(std::move(*it));
  // An entity's letters wait in seq order (one that came while the others
  // were in flight went after them): the owner must not store a later one
  // before an earlier one, nor a redrive hand them out of order.
  if (!kept.empty())
    std::stable_sort(
      g.letters.begin(), g.letters.end(),
      [](const dead_letter_request& a, const dead_letter_request& b) {
        return std::tie(a.letter.key, a.letter.seq)
               < std::tie(b.letter.key, b.letter.seq);
      });
  if (!done.empty())
    on_done(self, done);
  show_letters(self, r.stream, g);
}

// The owner's parts of a reply beyond the leases: parked entities of
// granted partitions, redriven letters to hand to the handlers, entities
// unparked by a purge.
void on_group_extras(consumer_actor* self, const lease_reply& r,
                     stream_state& ss) {
  auto& st = self->state;
  auto& g = *ss.group;
  bool parks = st.setup.policy.on_dead_letter == dead_letter_policy::park;
  auto shard_for = [&](const std::string& key) -> const caf::actor& {
    return st.shards[detail::shard_of(key, st.shards.size())];
  };
  if (st.shards.empty())
    return;
  for (auto& e : r.entries)
    if (e.result == lease_result::granted && parks
        && e.partition < g.parts.size()
        && g.parts[e.partition].epoch == e.epoch)
      for (auto& pe : e.parked)
        self->send(shard_for(pe.key), group_park_atom::value, pe.key,
                   pe.dead_letter);
  for (auto& pe : r.unparked)
    self->send(shard_for(pe.key), unpark_atom::value, pe.key);
  // The redriven letters, and this member's letters of their entities
  // that wait to be stored (refused at the quota): those are not in the
  // redrive, and would be passed by the entity's later events once it is
  // unparked. Both go to the shards together, in seq order, so that the
  // entity's events are handled in order whichever were stored.
  //
  // An entity whose redrive goes on in a later reply waits whole: the
  // shard unparks it at its first redriven letter, so a part handed alone
  // would let its later events pass the next part.
  auto current = [&](const group_letter& gl) {
    if (gl.partition >= g.parts.size())
      return false;
    auto& ps = g.parts[gl.partition];
    return ps.epoch == gl.epoch
           && (ps.state == lease_state::held
               || ps.state == lease_state::releasing);
  };
  auto renewed = [&](uint32_t p, uint64_t epoch) {
    return std::any_of(r.entries.begin(), r.entries.end(),
                       [&](const lease_entry_reply& e) {
                         return e.partition == p && e.epoch == epoch
                                && (e.result == lease_result::granted
                                    || e.result == lease_result::renewed);
                       });
  };
  std::set<std::string> more(r.redrive_more.begin(), r.redrive_more.end());
  std::vector<group_letter> handed;
  for (auto it = g.held_redrive.begin(); it != g.held_redrive.end();) {
    auto& [key, list] = *it;
    // Of a lease that ended: the owner hands them to the next holder.
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const group_letter& gl) {
                                return !current(gl);
                              }),
               list.end());
    if (!list.empty() && more.count(key) > 0)
      ++it;
    else if (!list.empty()
             && !renewed(list.front().partition, list.front().epoch))
      ++it; // this reply says nothing of the partition
    else {
      std::move(list.begin(), list.end(), std::back_inserter(handed));
      it = g.held_redrive.erase(it);
    }
  }
  for (auto& gl : r.redrive) {
    if (!current(gl))
      continue; // handed to the partition's next holder
    if (more.count(gl.letter.key) > 0)
      g.held_redrive[gl.letter.key].push_back(gl);
    else
      handed.push_back(gl);
  }
  std::vector<std::pair<size_t, work_item>> due; // (shard, work)
  std::set<std::string> redriven;
  for (auto& gl : handed) {
    auto ev = event_of(gl.letter.envelope);
    if (!ev) {
      st.setup.log->error("consumer={}: dead letter {} cannot be redriven: its "
                          "envelope does not decode: {}",
                          st.setup.name, gl.letter.id, message_of(ev.error()));
      continue;
    }
    st.setup.log->info("consumer={} stream={} partition={}: redriving dead "
                       "letter {} (seq {})",
                       st.setup.name, r.stream, gl.partition, gl.letter.id,
                       gl.letter.seq);
    due.emplace_back(detail::shard_of(ev->key(), st.shards.size()),
                     work_item{ev->as_redelivered(), no_stream, gl.letter.id,
                               false, gl.partition, gl.epoch,
                               &g.gates[gl.partition]});
    redriven.insert(gl.letter.key);
  }
  if (redriven.empty())
    return;
  bool took = false;
  for (auto it = g.letters.begin()
                 + static_cast<std::ptrdiff_t>(
                   std::min(g.letters_sent, g.letters.size()));
       it != g.letters.end();) {
    auto& req = *it;
    auto p = req.done.partition;
    if (req.redriven_from != 0 || req.done.stream == no_stream
        || redriven.count(req.letter.key) == 0 || p >= g.parts.size()
        || g.parts[p].epoch != req.done.epoch
        || g.parts[p].state == lease_state::none) {
      ++it;
      continue;
    }
    auto ev = event_of(req.letter.envelope);
    if (!ev) {
      ++it;
      continue;
    }
    // Not to be stored: the shard counts it no more (before the redrive
    // comes, so that it unparks the entity).
    if (req.parks)
      self->send(req.parks, dead_letter_atom::value, req.letter.key,
                 uint64_t{0});
    due.emplace_back(detail::shard_of(ev->key(), st.shards.size()),
                     work_item{ev->under_lease(p, req.done.epoch),
                               req.done.stream, 0, req.live, p, req.done.epoch,
                               &g.gates[p]});
    it = g.letters.erase(it);
    took = true;
  }
  std::stable_sort(due.begin(), due.end(), [](const auto& a, const auto& b) {
    return a.second.ev.seq() < b.second.ev.seq();
  });
  for (auto& [i, w] : due)
    st.outgoing[i].push_back(std::move(w));
  if (took)
    show_letters(self, r.stream, g);
}

// Sends the stream's owner what is due: acquires of the partitions
// assigned to this member (and standbys for orphans), renewals with the
// offsets (all held leases at once, every third of a lease or when an
// offset moved), releases of partitions handed over. One request at a
// time per stream.
void group_sync(consumer_actor* self, const std::string& stream,
                stream_state& ss, steady::time_point now, bool commit) {
  auto& st = self->state;
  auto& g = *ss.group;
  auto margin =
    std::chrono::duration_cast<steady::duration>(st.setup.groups.lease_margin);
  for (uint32_t p = 0; p < g.parts.size(); ++p) {
    auto& ps = g.parts[p];
    if ((ps.state == lease_state::held || ps.state == lease_state::releasing)
        && now >= ps.expires - margin)
      lose(self, stream, g, p,
           "it was not renewed in time (the owner did not answer); stopped "
           "the lease margin before it could expire");
  }
  if (g.request != 0) {
    if (now - g.request_sent < lease_request_timeout)
      return;
    g.request = 0; // lost: ask again
    g.refusal =
      fmt::format("the owner of stream '{}' did not answer a lease "
                  "request within {} ms",
                  stream,
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                    lease_request_timeout)
                    .count());
    for (auto& ps : g.parts)
      if (ps.state == lease_state::asking)
        ps.state = lease_state::none;
  }
  lease_request req;
  bool renew_due = now >= g.renew_at;
  // What a partition's offset may pass: what is known seen (`synced`).
  auto upto = [&ss](const partition_state& ps) {
    return std::min(ps.handled, ss.synced);
  };
  for (auto& ps : g.parts) {
    if (ps.state == lease_state::held && ps.pending == 0 && !ps.rewinding
        && !ps.quota_paused && !ss.catching_up && g.examined > ps.handled)
      ps.handled = g.examined; // nothing of it in flight: all looked at
    if (ps.state == lease_state::held && commit && upto(ps) > ps.committed)
      renew_due = true;
  }
  std::vector<uint32_t> releasing;
  for (uint32_t p = 0; p < g.parts.size(); ++p) {
    auto& ps = g.parts[p];
    switch (ps.state) {
    case lease_state::none:
      if (st.assigned[p])
        req.entries.push_back({p, lease_op::acquire, 0, 0});
      else if (std::binary_search(g.orphans.begin(), g.orphans.end(), p))
        req.entries.push_back({p, lease_op::standby, 0, 0});
      break;
    case lease_state::held:
      if (renew_due)
        req.entries.push_back({p, lease_op::renew, ps.epoch, upto(ps)});
      break;
    case lease_state::releasing:
      // Released once its calls ended and its offset may pass all it
      // handled (the next heartbeat), so the next holder repeats nothing;
      // at `release_by` whatever the state.
      if ((ps.pending == 0 && upto(ps) >= ps.handled) || now >= ps.release_by) {
        req.entries.push_back({p, lease_op::release, ps.epoch, upto(ps)});
        releasing.push_back(p);
      } else if (renew_due) {
        req.entries.push_back({p, lease_op::renew, ps.epoch, upto(ps)});
      }
      break;
    case lease_state::asking:
      break;
    }
  }
  resume_paused(self, stream, ss);
  add_letters(g, req, now);
  if (req.entries.empty() && req.letters.empty() && req.redriven.empty())
    return;
  req.stream = stream;
  req.group = st.setup.name;
  req.member = st.setup.node;
  req.partitions = static_cast<uint32_t>(g.parts.size());
  req.initial = g.initial;
  auto id = st.setup.lease(req, caf::actor_cast<caf::actor>(self));
  if (id == 0) {
    g.letters_sent = g.redriven_sent = 0;
    return; // the owner's endpoint is not known yet: next tick
  }
  g.request = id;
  g.request_sent = now;
  if (renew_due) {
    auto ttl = g.ttl.count() > 0 ? g.ttl : std::chrono::milliseconds{3000};
    g.renew_at = now + ttl / 3;
  }
  for (auto& e : req.entries)
    if (e.op == lease_op::acquire || e.op == lease_op::standby)
      g.parts[e.partition].state = lease_state::asking;
  for (auto p : releasing) {
    // Released with the offset sent: what finishes later is discarded.
    auto& ps = g.parts[p];
    close_gate(g, p);
    drop_in_flight(self, ps);
    ps.state = lease_state::none;
    ps.epoch = 0;
    leave_partition(self, g, p);
    st.setup.stats->partitions_moved.fetch_add(1, std::memory_order_relaxed);
  }
  if (!releasing.empty())
    show_leases(self, stream, g);
}

void schedule_group_tick(consumer_actor* self) {
  if (self->state.group_tick_scheduled)
    return;
  self->state.group_tick_scheduled = true;
  self->delayed_send(self, group_tick, group_tick_atom::value);
}

void sync_groups(consumer_actor* self, bool commit) {
  auto now = steady::now();
  for (auto& [stream, ss] : self->state.streams)
    if (ss.group) {
      group_sync(self, stream, ss, now, commit);
      show_waiting(self, stream, *ss.group, now);
    }
}

// The owner's answer to a lease request.
void on_lease_reply(consumer_actor* self, const lease_reply& r) {
  auto& st = self->state;
  auto it = st.streams.find(r.stream);
  if (it == st.streams.end() || !it->second.group)
    return;
  auto& ss = it->second;
  auto& g = *ss.group;
  if (r.id == 0 || r.id != g.request)
    return; // answered after it was taken as lost
  g.request = 0;
  on_letter_results(self, r, ss);
  if (!r.error.empty()) {
    if (r.error != g.last_refusal)
      st.setup.log->warn("consumer={} stream={}: the owner refused the lease "
                         "request: {}; asking again",
                         st.setup.name, r.stream, r.error);
    g.last_refusal = r.error;
    g.refusal = r.error;
    for (auto& ps : g.parts)
      if (ps.state == lease_state::asking)
        ps.state = lease_state::none;
    return;
  }
  g.ttl = std::chrono::milliseconds{r.ttl_ms};
  // Counted from when the request was sent, less 1 % for the clocks' rates.
  auto expires = g.request_sent + g.ttl - g.ttl / 100;
  for (auto& e : r.entries) {
    if (e.partition >= g.parts.size())
      continue;
    auto p = e.partition;
    auto& ps = g.parts[p];
    bool holds =
      ps.state == lease_state::held || ps.state == lease_state::releasing;
    switch (e.result) {
    case lease_result::granted:
      if (ps.state == lease_state::asking) {
        gain(self, r.stream, ss, p, e.epoch, e.offset, expires);
        g.refusal.clear();
      }
      break;
    case lease_result::renewed:
      if (holds && ps.epoch == e.epoch) {
        ps.expires = expires;
        ps.committed = std::max(ps.committed, e.offset);
        if (e.wanted && ps.state == lease_state::held && !st.assigned[p])
          start_release(self, r.stream, g, p, steady::now());
      }
      break;
    case lease_result::released:
      break;
    case lease_result::refused:
      if (ps.state == lease_state::asking) {
        ps.state = lease_state::none;
        if (p < st.assigned.size() && st.assigned[p] && !e.reason.empty())
          g.refusal = fmt::format("partition {}: {}", p, e.reason);
        if (!e.reason.empty() && e.reason != g.last_refusal) {
          st.setup.log->info("consumer={} stream={} partition={}: lease "
                             "refused: {}",
                             st.setup.name, r.stream, p, e.reason);
          g.last_refusal = e.reason;
        }
      }
      break;
    case lease_result::stale:
      if (holds && ps.epoch == e.epoch)
        lose(self, r.stream, g, p,
             e.reason.empty() ? std::string{"the owner calls it stale"}
                              : e.reason);
      break;
    }
  }
  g.orphans = r.orphans;
  std::sort(g.orphans.begin(), g.orphans.end());
  st.setup.stats->update_position(r.stream, [&r](auto& pos) {
    pos.owner_dead_letters = r.dead_letters;
  });
  show_leases(self, r.stream, g);
  on_group_extras(self, r, ss);
  send_work(self);
}

// Makes `ss` a group member's stream: its partitions, all without a
// lease yet, and its gates.
void start_group(consumer_actor* self, const std::string& stream,
                 stream_state& ss, uint64_t start) {
  auto& st = self->state;
  st.setup.stats->update_position(stream, [](auto& pos) {
    pos.offset = 0; // until the owner says
  });
  auto g = std::make_unique<group_state>();
  g->examined = start;
  // Positioned once a partition is granted with an offset: a new group
  // that starts at the oldest retained event lost nothing.
  ss.positioned = false;
  auto n = partition_count(self);
  g->parts.resize(n);
  g->gates = st.gates->add(n);
  if (st.setup.offsets.load) {
    // A position kept by this node before groups: the owner takes it for
    // partitions the group has no offset of (an upgrade in place).
    if (auto kept = st.setup.offsets.load(stream))
      g->initial = *kept;
    else
      st.setup.log->warn("consumer={} stream={}: cannot read the offset kept "
                         "before consumer groups: {}; the group's offsets at "
                         "the stream's owner decide",
                         st.setup.name, stream, message_of(kept.error()));
  }
  ss.group = std::move(g);
  group_sync(self, stream, ss, steady::now(), false);
  schedule_group_tick(self);
}

// Until a handler is there, events are not taken: taking one would move
// the consumer's position past an event nobody handled. The first handler
// starts the stream from the stored offset.
bool has_handlers(consumer_actor* self) {
  return !self->state.subs.empty() || self->state.factory;
}

// Keeps a live event of a stream that catches up, to check once the
// catch-up ends, if it fits the bounds; drops it otherwise (the replay
// brings it: the catch-up reads on to the producer's head).
void hold(consumer_actor* self, const std::string& stream, stream_state& ss,
          const event& ev) {
  auto& st = self->state;
  auto& stats = *st.setup.stats;
  if (ss.held.size() >= st.setup.replay_batch * 4) {
    stats.skipped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto* budget = st.setup.held.get();
  uint64_t size = ev.envelope().size();
  if (budget != nullptr) {
    auto total = budget->bytes.load(std::memory_order_relaxed);
    if (ss.held_bytes + size > budget->per_stream
        || total + size > budget->total) {
      stats.skipped.fetch_add(1, std::memory_order_relaxed);
      budget->dropped.fetch_add(1, std::memory_order_relaxed);
      if (!budget->logged.exchange(true))
        st.setup.log->warn(
          "consumer={} stream={}: a live event of {} bytes that arrived while "
          "the stream catches up was dropped: {} bytes are held for the "
          "stream (transport.max_held_bytes_per_stream is {}) and {} for the "
          "node (transport.max_held_bytes is {}); the replay brings it. "
          "Further drops are counted in herald_held_dropped_total, not logged",
          st.setup.name, stream, size, ss.held_bytes, budget->per_stream,
          total, budget->total);
      return;
    }
    budget->bytes.fetch_add(size, std::memory_order_relaxed);
  }
  ss.held_bytes += size;
  ss.held.push_back(ev);
}

void on_live(consumer_actor* self, const event& ev) {
  auto& st = self->state;
  auto& stats = *st.setup.stats;
  if (!has_handlers(self)) {
    stats.skipped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (!tracks_streams(self)) {
    observe(self, ev, true);
    return;
  }
  std::string stream{ev.stream()};
  auto* opened = open_stream(self, stream, ev.seq());
  if (opened == nullptr) {
    // Its offset cannot be read now: the catch-up that follows a successful
    // load brings the event.
    stats.skipped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto& ss = *opened;
  if (ss.catching_up) {
    hold(self, stream, ss, ev);
    return;
  }
  auto it = ss.types.find(std::string{ev.type()});
  uint64_t last = it == ss.types.end() ? 0 : it->second.type_seq;
  if (ev.type_seq() <= last) {
    stats.skipped.fetch_add(1, std::memory_order_relaxed); // duplicate
    return;
  }
  if (ev.type_seq() == last + 1) {
    accept(self, ss, ev, true);
    return;
  }
  stats.gaps.fetch_add(1, std::memory_order_relaxed);
  stats.skipped.fetch_add(1, std::memory_order_relaxed);
  st.setup.log->warn(
    "consumer={} stream={} type={}: gap before type_seq {} (last "
    "{}); replaying from the producer's log",
    st.setup.name, stream, ev.type(), ev.type_seq(), last);
  start_catch_up(self, stream,
                 it == ss.types.end() ? ss.synced + 1 : it->second.seq + 1);
}

void on_heartbeat(consumer_actor* self, const stream_heartbeat& hb) {
  auto& st = self->state;
  if (!tracks_streams(self) || !has_handlers(self))
    return;
  {
    auto& stats = *st.setup.stats;
    std::lock_guard<std::mutex> guard{stats.positions_mtx};
    stats.positions[hb.stream].head = hb.head;
  }
  auto known = st.streams.find(hb.stream);
  if (known == st.streams.end() && grouped(self)) {
    auto& ss = start_stream(self, hb.stream, hb.head, hb.head + 1);
    for (auto& [type, head] : hb.types)
      if (selected(self, type))
        ss.types[type] = {head, hb.head};
    start_group(self, hb.stream, ss, hb.head);
    return;
  }
  if (known == st.streams.end()) {
    auto offset = load_offset(self, hb.stream);
    if (!offset)
      return; // loaded again later
    if (hb.head <= *offset) {
      // First contact, and nothing of the stream is missing (a new
      // producer, or a consumer that handled all): no catch-up, which
      // would hold back the live events that follow.
      auto& ss = start_stream(self, hb.stream, *offset, *offset + 1);
      for (auto& [type, head] : hb.types)
        if (selected(self, type))
          ss.types[type] = {head, *offset};
      return;
    }
    start_stream(self, hb.stream, *offset);
    return;
  }
  auto& ss = known->second;
  if (ss.catching_up)
    return;
  for (auto& [type, head] : hb.types) {
    if (!selected(self, type))
      continue;
    auto it = ss.types.find(type);
    uint64_t last = it == ss.types.end() ? 0 : it->second.type_seq;
    if (head > last) {
      // The heartbeat follows the events it counts on the same socket:
      // what it counts and we lack was dropped.
      st.setup.stats->gaps.fetch_add(1, std::memory_order_relaxed);
      st.setup.log->warn(
        "consumer={} stream={} type={}: gap at the tail (head "
        "type_seq {}, last {}); replaying from the producer's log",
        st.setup.name, hb.stream, type, head, last);
      start_catch_up(self, hb.stream,
                     it == ss.types.end() ? ss.synced + 1 : it->second.seq + 1);
      return;
    }
  }
  // The heartbeat follows the events it counts: all of them are seen.
  ss.synced = std::max(ss.synced, hb.head);
}

void on_reply(consumer_actor* self, replay_reply& r) {
  auto& st = self->state;
  auto it = st.streams.find(r.stream);
  if (it == st.streams.end() || it->second.request != r.id || r.id == 0)
    return; // stale: answered after a retry replaced it
  auto& ss = it->second;
  ss.request = 0;
  if (!r.error.empty()) {
    st.setup.log->warn(
      "consumer={} stream={}: replay request failed: {}; asking "
      "again",
      st.setup.name, r.stream, r.error);
    self->delayed_send(self, st.setup.replay_timeout, retry_atom::value,
                       r.stream, uint64_t{0});
    return;
  }
  if (ss.rewind != 0) {
    // A partition was granted while this read was in flight: its events
    // from the group's offset on come first. Handing over this reply's
    // would move the partition's position past them (they would then be
    // taken for duplicates): the reply is dropped, and read again.
    ss.cursor = std::min(ss.cursor, ss.rewind);
    ss.rewind = 0;
    if (ss.pauses == 0 && may_read(self))
      request_next(self, r.stream);
    return;
  }
  if (ss.cursor < r.first) {
    // A range is reported once: a group member may read it again for
    // another partition.
    if (ss.positioned && r.first - 1 > ss.expired_upto) {
      ss.expired_upto = r.first - 1;
      st.setup.stats->behind_retention.fetch_add(1, std::memory_order_relaxed);
      st.setup.log->error(
        "consumer={} stream={}: fell behind retention: events "
        "{}..{} expired before they were handled; continuing "
        "from {}",
        st.setup.name, r.stream, ss.cursor, r.first - 1, r.first);
      st.setup.stats->update_position(r.stream, [&](auto& pos) {
        if (pos.expired_from == 0)
          pos.expired_from = ss.cursor;
        pos.expired_to = r.first - 1;
      });
    }
    ss.cursor = r.first;
  }
  if (ss.since && r.start)
    ss.since.reset(); // the producer started the read there
  for (auto& ev : r.events) {
    if (ss.since) {
      // A producer that ignored `since`: drop what is older, up to the
      // first event that is not.
      if (ev.timestamp_us() < *ss.since)
        continue;
      ss.since.reset();
    }
    if (accept(self, ss, ev, false))
      st.setup.stats->replayed.fetch_add(1, std::memory_order_relaxed);
  }
  ss.cursor = std::max(ss.cursor, r.next);
  if (ss.pauses > 0)
    return; // reads on once the entity that paused the stream drains
  if (ss.cursor > r.head) {
    // Caught up. Types whose events all lie before where this catch-up
    // started were handled earlier: take their heads from the producer.
    for (auto& [type, head] : r.type_heads) {
      if (!selected(self, type))
        continue;
      auto& tp = ss.types[type];
      if (tp.type_seq < head)
        tp.type_seq = head;
    }
    ss.catching_up = false;
    ss.since.reset(); // live events are newer
    st.setup.stats->update_position(r.stream, [](auto& pos) {
      pos.expired_from = pos.expired_to = 0;
    });
    // After the replayed events counted in `unfinished`: `drain` reads
    // this first.
    st.setup.stats->catching_up.fetch_sub(1);
    ss.synced = r.head;
    if (!ss.group) // a group member's position is its partitions'
      ss.positioned = true;
    if (ss.group)
      for (auto& ps : ss.group->parts)
        ps.rewinding = false;
    // What arrived live meanwhile: duplicates of the replay are skipped, the
    // rest goes on in order (or starts the next catch-up on a gap).
    auto held = std::move(ss.held);
    ss.held.clear();
    if (st.setup.held)
      st.setup.held->bytes.fetch_sub(ss.held_bytes, std::memory_order_relaxed);
    ss.held_bytes = 0;
    for (auto& ev : held)
      on_live(self, ev);
    return;
  }
  if (ss.pauses == 0 && may_read(self))
    request_next(self, r.stream);
}

// An entity's queue is full: read nothing new of `stream` until it drains;
// then catch up from the log.
void on_pause(consumer_actor* self, uint32_t index) {
  if (index >= self->state.stream_ids.size())
    return;
  auto& stream = self->state.stream_ids[index];
  auto& ss = self->state.streams[stream];
  self->state.setup.stats->pauses.fetch_add(1, std::memory_order_relaxed);
  if (ss.pauses++ == 0) {
    self->state.setup.log->warn(
      "consumer={} stream={}: paused: an entity's queue is full "
      "behind a retry; reading again from the log once it drains",
      self->state.setup.name, stream);
    self->state.setup.stats->update_position(stream, [](auto& pos) {
      pos.paused = true;
    });
  }
  start_catch_up(self, stream, ss.accepted + 1);
}

void resume_stream(consumer_actor* self, const std::string& stream,
                   stream_state& ss) {
  if (ss.pauses == 0 || --ss.pauses > 0)
    return;
  self->state.setup.stats->update_position(stream, [](auto& pos) {
    pos.paused = false;
  });
  if (ss.catching_up && ss.request == 0 && may_read(self))
    request_next(self, stream);
}

void on_resume(consumer_actor* self, uint32_t index) {
  if (index >= self->state.stream_ids.size())
    return;
  auto& stream = self->state.stream_ids[index];
  resume_stream(self, stream, self->state.streams[stream]);
}

// Spawns the service actor from its factory, watches it, and tells the
// shards whom to ask.
void start_service(consumer_actor* self) {
  auto& st = self->state;
  st.service = detail::spawn_service(self, st.factory);
  self->monitor(st.service);
  for (auto& shard : st.shards)
    self->send(shard, attach_atom::value, st.service,
               st.setup.service_patterns);
}

// The service died once more than its restarts allow: read nothing new and
// ask nothing (events already handed to shards wait there) until it is
// started again, `within` later.
void pause_service(consumer_actor* self, const std::string& cause) {
  auto& st = self->state;
  auto& policy = st.setup.policy.restarts;
  st.service_paused = true;
  auto why = fmt::format(
    "paused: the service actor died {} times within {} (restarts: max {}); "
    "last cause: {}; starting it again in {}",
    st.restarts.size() + 1, format_duration(policy.within), policy.max, cause,
    format_duration(policy.within));
  st.setup.log->error("consumer={}: {}", st.setup.name, why);
  st.setup.stats->set_paused(std::move(why));
  for (auto& shard : st.shards)
    self->send(shard, detail::service_paused_atom::value);
  for (auto& [stream, ss] : st.streams) {
    ++ss.pauses;
    start_catch_up(self, stream, ss.accepted + 1);
  }
  self->delayed_send(self, policy.within, detail::service_restart_atom::value);
}

// A service actor ended: started again unless it died too often.
void on_service_down(consumer_actor* self, const caf::down_msg& msg) {
  auto& st = self->state;
  if (!st.service || msg.source != st.service.address())
    return; // an instance replaced already
  st.service = nullptr;
  auto cause = msg.reason ? message_of(msg.reason)
                          : std::string{"it ended without an error"};
  auto& policy = st.setup.policy.restarts;
  auto now = std::chrono::steady_clock::now();
  while (!st.restarts.empty() && now - st.restarts.front() > policy.within)
    st.restarts.pop_front();
  if (st.restarts.size() >= static_cast<size_t>(policy.max)) {
    pause_service(self, cause);
    return;
  }
  st.restarts.push_back(now);
  st.setup.stats->service_restarts.fetch_add(1, std::memory_order_relaxed);
  st.setup.log->warn("consumer={}: the service actor died: {}; restarting it "
                     "(restart {} of at most {} within {})",
                     st.setup.name, cause, st.restarts.size(), policy.max,
                     format_duration(policy.within));
  start_service(self);
}

// The pause is over: the service starts again with a fresh restart count,
// and the streams are read again from where they stopped.
void on_service_restart(consumer_actor* self) {
  auto& st = self->state;
  if (!st.service_paused)
    return;
  st.service_paused = false;
  st.restarts.clear();
  st.setup.stats->set_paused({});
  st.setup.stats->service_restarts.fetch_add(1, std::memory_order_relaxed);
  st.setup.log->warn("consumer={}: starting the paused service actor again",
                     st.setup.name);
  start_service(self);
  for (auto& [stream, ss] : st.streams)
    resume_stream(self, stream, ss);
}

// Hands dead letters back to the shards, in their order (per entity, the
// order they were published in).
void on_redrive(consumer_actor* self, std::vector<store::dead_letter>& dls) {
  auto& st = self->state;
  if (!has_handlers(self)) {
    // Handled by nobody would count as handled: they wait for a handler.
    for (auto& dl : dls)
      st.waiting_redrive.push_back(std::move(dl));
    return;
  }
  for (auto& dl : dls) {
    auto ev = event_of(std::move(dl.envelope));
    if (!ev) {
      st.setup.log->error("consumer={}: dead letter {} cannot be redriven: its "
                          "envelope does not decode: {}",
                          st.setup.name, dl.id, message_of(ev.error()));
      continue;
    }
    auto i = detail::shard_of(ev->key(), st.shards.size());
    st.outgoing[i].push_back({ev->as_redelivered(), no_stream, dl.id});
  }
  send_work(self);
}

// Hands on the dead letters that were redriven before a handler existed.
void redrive_waiting(consumer_actor* self) {
  auto waiting = std::move(self->state.waiting_redrive);
  self->state.waiting_redrive.clear();
  if (!waiting.empty())
    on_redrive(self, waiting);
}

// Spawns the ordering shards of a durable consumer.
void spawn_shards(consumer_actor* self) {
  auto& st = self->state;
  auto n = std::max<size_t>(st.setup.policy.shards, 1);
  for (uint32_t i = 0; i < n; ++i) {
    detail::shard_setup ss;
    ss.index = i;
    ss.consumer = st.setup.name;
    ss.node = st.setup.node;
    ss.log = st.setup.log;
    ss.policy = st.setup.policy;
    ss.stats = st.setup.stats;
    ss.owner = caf::actor_cast<caf::actor>(self);
    ss.dead_letters = st.setup.dead_letters;
    ss.history = st.setup.history;
    ss.gates = st.gates;
    if (st.setup.pool)
      ss.pool = st.setup.pool->core();
    for (auto& parked : st.setup.parked)
      if (detail::shard_of(parked.first, n) == i)
        ss.parked.push_back(parked);
    st.shards.push_back(detail::spawn_shard(self, std::move(ss)));
  }
  st.outgoing.resize(n);
  st.held.resize(n);
}

caf::behavior consumer(consumer_actor* self, consumer_setup setup) {
  auto& st = self->state;
  st.setup = std::move(setup);
  if (!st.setup.log)
    st.setup.log = spdlog::default_logger();
  st.patterns = st.setup.service_patterns;
  st.members = {st.setup.node};
  if (st.setup.durable && st.setup.lease) {
    std::lock_guard<std::mutex> guard{st.setup.stats->positions_mtx};
    st.setup.stats->group_members = st.members;
  }
  compute_assigned(self);
  if (st.setup.durable)
    spawn_shards(self);
  self->set_down_handler([self](caf::down_msg& msg) {
    on_service_down(self, msg);
  });
  return {
    [self](const event_batch& batch) {
      for (auto& ev : batch)
        on_live(self, ev);
      send_work(self);
    },
    [self](heartbeat_atom, const stream_heartbeat& hb) {
      on_heartbeat(self, hb);
    },
    [self](replay_atom, replay_reply& r) {
      on_reply(self, r);
      send_work(self);
    },
    [self](retry_atom, const std::string& stream, uint64_t id) {
      auto it = self->state.streams.find(stream);
      if (it != self->state.streams.end() && it->second.catching_up
          && it->second.request == id && it->second.pauses == 0
          && may_read(self))
        request_next(self, stream);
    },
    [self](done_atom, const done_batch& done) {
      on_done(self, done);
    },
    [self](done_atom, const done_batch& done, uint32_t shard, uint64_t held) {
      auto& st = self->state;
      if (shard < st.held.size()) {
        st.held_total = st.held_total - st.held[shard] + held;
        st.held[shard] = held;
      }
      on_done(self, done);
    },
    [self](pause_atom, uint32_t stream) {
      on_pause(self, stream);
    },
    [self](resume_atom, uint32_t stream) {
      on_resume(self, stream);
    },
    [self](redrive_atom, std::vector<store::dead_letter>& dls) {
      on_redrive(self, dls);
    },
    [self](redrive_atom, const std::string& stream, uint32_t partition,
           uint64_t epoch, uint64_t id) {
      // A group's redriven letter was handled: removed at the owner.
      auto it = self->state.streams.find(stream);
      if (it == self->state.streams.end() || !it->second.group)
        return;
      it->second.group->redriven.push_back({partition, epoch, id});
      group_sync(self, stream, it->second, steady::now(), false);
    },
    [self](group_letter_atom, dead_letter_request& req) {
      on_group_letter(self, req);
    },
    [self](unpark_atom, const std::string& key) {
      auto& st = self->state;
      if (!st.shards.empty())
        self->send(st.shards[detail::shard_of(key, st.shards.size())],
                   unpark_atom::value, key);
    },
    [self](flush_atom) {
      flush_offsets(self);
      sync_groups(self, true);
    },
    [self](group_atom, const lease_reply& r) {
      on_lease_reply(self, r);
    },
    [self](group_members_atom, std::vector<std::string> members) {
      auto& st = self->state;
      if (std::find(members.begin(), members.end(), st.setup.node)
          == members.end())
        members.push_back(st.setup.node);
      std::sort(members.begin(), members.end());
      if (members == st.members)
        return;
      st.setup.log->info("consumer={}: group members now {}", st.setup.name,
                         fmt::join(members, ", "));
      st.members = std::move(members);
      {
        std::lock_guard<std::mutex> guard{st.setup.stats->positions_mtx};
        st.setup.stats->group_members = st.members;
      }
      compute_assigned(self);
      sync_groups(self, false);
    },
    [self](group_tick_atom) {
      self->state.group_tick_scheduled = false;
      sync_groups(self, true);
      send_work(self);
      schedule_group_tick(self);
    },
    [self](load_offset_atom, const std::string& stream) {
      on_load_offset(self, stream);
    },
    [self](subscribe_atom, const subscription& sub) {
      self->state.subs.push_back(sub);
      self->state.patterns.push_back(sub.selector);
      for (auto& shard : self->state.shards)
        self->send(shard, subscribe_atom::value, sub);
      redrive_waiting(self);
    },
    [self](attach_atom, service_fn& factory) {
      auto& st = self->state;
      if (st.service) {
        // Replaced: the old one is not restarted.
        self->demonitor(st.service);
        self->send_exit(st.service, caf::exit_reason::user_shutdown);
      }
      st.factory = std::move(factory);
      if (!st.service_paused)
        start_service(self);
      redrive_waiting(self);
    },
    [self](detail::service_restart_atom) {
      on_service_restart(self);
    },
  };
}

} // namespace

caf::actor spawn_consumer(caf::actor_system& sys, consumer_setup setup) {
  return sys.spawn(consumer, std::move(setup));
}

} // namespace herald
