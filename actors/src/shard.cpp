#include "shard.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <optional>
#include <random>
#include <unordered_map>

#include <caf/event_based_actor.hpp>
#include <caf/local_actor.hpp>
#include <caf/sec.hpp>
#include <caf/stateful_actor.hpp>
#include <fmt/format.h>
#include <spdlog/logger.h>

#include "herald/core/catalog.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/logging.hpp"
#include "herald/core/partition.hpp"
#include "pool.hpp"

namespace herald::detail {

namespace {

using std::chrono::steady_clock;

// One entity with work pending: a queue whose front is being attempted (or
// waits for its retry), or a parked entity.
struct entity_state {
  std::deque<work_item> queue;
  /// The failed attempts of the front event.
  std::vector<store::dead_letter_attempt> attempts;
  /// A retry timer or a service reply is pending for the front event.
  bool waiting = false;
  /// Matches the pending retry timer or service reply to this wait.
  uint64_t wait_id = 0;
  /// A call of the function handlers on the front runs in the pool (it
  /// may have timed out: the next attempt waits for it all the same, so
  /// that an entity never has two events, or one twice, in handlers).
  bool running = false;
  /// Matches the pool's outcome to the call.
  uint64_t run_id = 0;
  /// The event of that call: the pool reads it here, so that its thread
  /// never touches the event's reference count, and it stays when a
  /// timed-out attempt dead-letters the front while the call goes on.
  event in_call;
  /// The front's attempt waits for a pool call or a service reply whose
  /// outcome counts: the event is moving, not held (see `shard_state`).
  bool in_attempt = false;
  /// The function handlers succeeded in the front's current attempt; the
  /// service actor is next.
  bool handlers_ok = false;
  /// When the front's current attempt started.
  steady_clock::time_point started;
  /// Parked behind this dead letter (policy park); 0 when not parked.
  uint64_t parked_behind = 0;
  /// Parked, and the dead letter it is parked behind is being stored: its
  /// id is not known yet.
  bool parking = false;
  /// The shard's batch during which the entity was parked: a redrive in a
  /// later batch unparks it, one in the same batch does not.
  uint64_t park_batch = 0;
  /// Parked behind a consumer group's dead letter (kept at the stream's
  /// owner): unparked when its partition leaves this member.
  bool group_parked = false;
  /// Its letters sent to be stored while parked, not yet confirmed: a
  /// redrive does not unpark it meanwhile.
  uint32_t unstored = 0;
  /// Streams paused on this entity's account.
  std::vector<uint32_t> paused;

  bool parked() const noexcept {
    return parked_behind != 0 || parking;
  }

  /// Back to a new entity's state, keeping the memory of the queue and
  /// the vectors. REQUIRES: `idle()`.
  void reset() noexcept {
    attempts.clear();
    waiting = false;
    wait_id = 0;
    running = false;
    run_id = 0;
    in_attempt = false;
    handlers_ok = false;
    started = {};
    park_batch = 0;
    paused.clear();
  }

  /// Nothing pending: the entity needs no entry.
  bool idle() const noexcept {
    return queue.empty() && !waiting && !running && !parked();
  }
};

using entity_map =
  std::unordered_map<std::string, entity_state, string_hash, std::equal_to<>>;

/// An entity's key and state. Its address is stable while it is in the
/// map, and an entry with a pool call running is never removed (it is not
/// idle), so a pool call carries the entry's address and its outcome finds
/// the entry without a lookup.
using entity_entry = entity_map::value_type;

// A shard that hands events to the pool or a service needs an entry for
// nearly every event: it keeps the entries of idle entities for their next
// events (one lookup per event, no allocation) until they number
// `kept_entries` or twice the busy ones; then the idle ones are removed,
// and up to `spare_entries` of them kept for new entities (key, queue and
// vectors keep their memory).
constexpr size_t kept_entries = 256;
constexpr size_t spare_entries = 64;

struct shard_state {
  shard_setup setup;
  /// Replaced, never changed in place: pool calls under way keep theirs.
  std::shared_ptr<const std::vector<subscription>> subs =
    std::make_shared<const std::vector<subscription>>();
  std::vector<pattern> service_patterns;
  /// A service was attached: events its patterns select wait for it.
  bool has_service = false;
  /// The service actor to ask; null while the consumer is paused.
  caf::actor service;
  entity_map entities;
  /// Entries of entities that went idle, for reuse (at most
  /// `spare_entries`).
  std::vector<entity_map::node_type> spare;
  /// The size of `entities` at which idle entries are removed.
  size_t sweep_at = kept_entries;
  /// Events in entity queues. Those whose attempt is under way
  /// (`attempting`) move; the rest (waiting for a retry, or behind an
  /// entity's busy front) are reported to the consumer actor as held,
  /// which it does not count against its replay window.
  uint64_t held = 0;
  uint64_t attempting = 0;
  uint64_t reported_held = 0;
  /// This shard and its handlers, as the pool's calls see them; replaced
  /// with `subs`.
  std::shared_ptr<const pool_source> source;
  /// Pool calls gathered while handling one message, submitted at its end.
  std::vector<pool_job> submits;
  /// Pool calls not returned yet (timed out ones included).
  uint64_t calls = 0;
  bool tick_scheduled = false;
  uint64_t next_wait = 0;
  /// Counts `work_batch` messages.
  uint64_t batch_no = 0;
  done_batch done;
  std::mt19937_64 rng{std::random_device{}()};
  /// The last type's counters: events come in runs of one type.
  std::string_view last_type;
  type_stats* last_stats = nullptr;
  static inline const char* name = "herald.shard";
};

using shard_actor = caf::stateful_actor<shard_state>;

type_stats* stats_of(shard_actor* self, std::string_view type) {
  auto& st = self->state;
  if (type != st.last_type) {
    st.last_stats = st.setup.stats->of_type(type);
    st.last_type = st.last_stats ? std::string_view{st.last_stats->type}
                                 : std::string_view{};
  }
  return st.last_stats;
}

using counter = std::atomic<uint64_t>;

// Counts one for the consumer and one for the event's type.
void count(shard_actor* self, std::string_view type,
           counter consumer_stats::*total, counter type_stats::*per_type) {
  ((*self->state.setup.stats).*total).fetch_add(1, std::memory_order_relaxed);
  if (auto* ts = stats_of(self, type))
    (ts->*per_type).fetch_add(1, std::memory_order_relaxed);
}

bool wants_service(shard_actor* self, const event& ev) {
  return self->state.has_service
         && any_matches(self->state.service_patterns, ev.type());
}

// Whether a function handler selects `type`: the pool calls them then.
bool wants_pool(shard_actor* self, std::string_view type) {
  if (!self->state.setup.pool)
    return false;
  for (auto& s : *self->state.subs)
    if (s.selector.matches(type))
      return true;
  return false;
}

// Hands the pool the calls gathered, and tells the consumer actor what
// finished and how many events are held in entity queues, in one message.
// Ends the handling of every message that may start or finish an attempt.
void report(shard_actor* self) {
  auto& st = self->state;
  if (!st.submits.empty())
    submit(*st.setup.pool, st.source, st.submits);
  auto held = st.held - st.attempting;
  if (st.done.empty() && held == st.reported_held)
    return;
  st.reported_held = held;
  self->send(st.setup.owner, done_atom::value, std::move(st.done),
             st.setup.index, held);
  st.done.clear();
}

// Records how long an attempt that began at `started` took.
void timed(shard_actor* self, steady_clock::time_point started) {
  self->state.setup.stats->handler_latency.observe_us(
    std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now()
                                                          - started)
      .count());
}

// Tells the history, if any, how `w` ended; `started` is when its last
// attempt began (none for an event dead-lettered unattempted).
void record(shard_actor* self, const work_item& w, handling_outcome outcome,
            uint64_t attempt, std::optional<steady_clock::time_point> started) {
  auto& history = self->state.setup.history;
  if (!history)
    return;
  handling h{self->state.setup.consumer, w.ev, outcome, attempt};
  h.partition = w.partition;
  h.epoch = w.epoch;
  if (started) {
    h.end_us = now_us();
    h.start_us = h.end_us
                 - std::chrono::duration_cast<std::chrono::microseconds>(
                     steady_clock::now() - *started)
                     .count();
  }
  history->finished(h);
}

// `w` is given up: its partition's lease ended before it could start or
// finish. Reported to the consumer (its offset does not pass it); the
// partition's next holder handles it.
void abandon(shard_actor* self, const work_item& w) {
  auto& stats = *self->state.setup.stats;
  stats.abandoned.fetch_add(1, std::memory_order_relaxed);
  if (w.live)
    stats.live_done.fetch_add(1, std::memory_order_relaxed);
  self->state.done.push_back(
    {w.stream, w.ev.seq(), w.partition, w.epoch, true});
}

// The handlers ran, but `w`'s lease ended meanwhile: the result is
// discarded (recorded and counted), not committed.
void discard(shard_actor* self, const work_item& w,
             std::optional<steady_clock::time_point> started,
             uint64_t attempt) {
  auto& st = self->state;
  st.setup.stats->discarded.fetch_add(1, std::memory_order_relaxed);
  st.setup.log->warn(
    "consumer={} stream={} seq={} key={} partition={}: the handler's result "
    "came after the lease (epoch {}) ended; discarded, the partition's next "
    "holder handles the event again",
    st.setup.consumer, w.ev.stream(), w.ev.seq(), w.ev.key(), w.partition,
    w.epoch);
  record(self, w, handling_outcome::discarded, attempt, started);
  abandon(self, w);
}

void finished(shard_actor* self, const work_item& w,
              steady_clock::time_point started, uint64_t attempt) {
  auto& st = self->state;
  auto& stats = *st.setup.stats;
  if (!w.may_finish()) {
    timed(self, started);
    discard(self, w, started, attempt);
    return;
  }
  record(self, w, handling_outcome::handled, attempt, started);
  timed(self, started);
  stats.end_to_end_latency.observe_us(now_us() - w.ev.timestamp_us());
  count(self, w.ev.type(), &consumer_stats::handled, &type_stats::handled);
  if (w.live)
    stats.live_done.fetch_add(1, std::memory_order_relaxed);
  if (w.dead_letter != 0) {
    stats.redriven.fetch_add(1, std::memory_order_relaxed);
    if (w.gate != nullptr) // a group's: removed at the stream's owner
      self->send(st.setup.owner, redrive_atom::value,
                 std::string{w.ev.stream()}, w.partition, w.epoch,
                 w.dead_letter);
    else
      self->send(st.setup.dead_letters, redrive_atom::value, w.dead_letter);
  } else if (w.stream != no_stream) {
    st.done.push_back({w.stream, w.ev.seq(), w.partition, w.epoch});
  }
}

// Sends `w` to the dead-letter actor; it reports the stream position done
// once the letter is stored. Returns whether it was sent (not discarded: its
// lease ended). A letter of a parked entity is confirmed back to the shard
// once stored (`dead_letter_atom`).
bool dead_letter(shard_actor* self, const work_item& w,
                 std::vector<store::dead_letter_attempt> attempts,
                 std::string reason, bool parked, bool parks = false,
                 std::optional<steady_clock::time_point> started = {}) {
  auto& st = self->state;
  if (!w.may_finish()) {
    // Not stored: the partition's next holder handles it afresh.
    discard(self, w, started, attempts.size());
    return false;
  }
  record(self, w, handling_outcome::dead_lettered, attempts.size(), started);
  dead_letter_request req;
  auto& l = req.letter;
  l.consumer = st.setup.consumer;
  l.node = st.setup.node;
  l.event_type = w.ev.type();
  l.event_id = w.ev.id();
  l.key = w.ev.key();
  l.stream = w.ev.stream();
  l.seq = w.ev.seq();
  l.envelope = w.ev.envelope();
  l.attempts = std::move(attempts);
  l.reason = std::move(reason);
  l.parked = parked;
  l.created_us = now_us();
  req.done = {w.stream, w.ev.seq(), w.partition, w.epoch};
  req.redriven_from = w.dead_letter;
  req.live = w.live;
  req.consumer = st.setup.owner;
  req.stats = st.setup.stats;
  if (parks || parked)
    req.parks = caf::actor_cast<caf::actor>(self);
  if (w.gate != nullptr) // a group's: stored at the stream's owner
    self->send(st.setup.owner, group_letter_atom::value, std::move(req));
  else
    self->send(st.setup.dead_letters, dead_letter_atom::value, std::move(req));
  return true;
}

void resume_streams(shard_actor* self, entity_state& e) {
  for (auto stream : e.paused)
    self->send(self->state.setup.owner, resume_atom::value, stream);
  e.paused.clear();
}

// Removes the entries of idle entities, keeping some for reuse.
void sweep(shard_actor* self) {
  auto& st = self->state;
  for (auto it = st.entities.begin(); it != st.entities.end();) {
    if (!it->second.idle()) {
      ++it;
      continue;
    }
    auto node = st.entities.extract(it++);
    if (st.spare.size() < spare_entries) {
      node.mapped().reset();
      st.spare.push_back(std::move(node));
    }
  }
  st.sweep_at = std::max(kept_entries, 2 * st.entities.size());
}

// The entry of `key`, made (from a spare one if there is one) when the
// entity has none.
entity_entry& claim(shard_actor* self, std::string_view key) {
  auto& st = self->state;
  if (auto it = st.entities.find(key); it != st.entities.end())
    return *it;
  if (st.entities.size() >= st.sweep_at)
    sweep(self);
  if (st.spare.empty())
    return *st.entities.try_emplace(std::string{key}).first;
  auto node = std::move(st.spare.back());
  st.spare.pop_back();
  node.key().assign(key);
  return *st.entities.insert(std::move(node)).position;
}

// Removes the idle entity of `entry`, keeping its entry for reuse.
void release(shard_actor* self, entity_entry& entry) {
  auto& st = self->state;
  auto node = st.entities.extract(entry.first);
  if (st.spare.size() >= spare_entries)
    return;
  node.mapped().reset();
  st.spare.push_back(std::move(node));
}

// Whether the shard keeps the entries of idle entities (see
// `kept_entries`): when it hands events to the pool or a service. A shard
// that calls its handlers itself makes entries only for failures.
bool keeps_entries(shard_actor* self) {
  return self->state.setup.pool != nullptr || self->state.has_service;
}

// The entity of `entry` has nothing pending.
void settle(shard_actor* self, entity_entry& entry) {
  if (keeps_entries(self))
    entry.second.reset();
  else
    release(self, entry);
}

void attempt(shard_actor* self, entity_entry& entry);

// The front event of `key` failed with `o`: retry it later, or dead-letter
// it. Returns whether the entity waits now (a retry is scheduled).
bool on_failure(shard_actor* self, const std::string& key, entity_state& e,
                outcome o) {
  auto& st = self->state;
  auto& w = e.queue.front();
  e.handlers_ok = false;
  timed(self, e.started);
  count(self, w.ev.type(), &consumer_stats::failed, &type_stats::failed);
  if (o.error_class == "timeout")
    st.setup.stats->timeouts.fetch_add(1, std::memory_order_relaxed);
  e.attempts.push_back({now_us(), o.error, o.error_class, st.setup.node});
  auto n = e.attempts.size();
  auto& policy = st.setup.policy.retry_for(w.ev.type());
  if (o.retryable && n < static_cast<size_t>(policy.attempts)) {
    auto unit = std::uniform_real_distribution<double>{0.0, 1.0}(st.rng);
    auto delay = policy.delay(static_cast<int>(n) + 1, unit);
    log_failure(
      *st.setup.log, st.setup.consumer, w.ev, n, o,
      fmt::format(
        "retry in {} ms",
        std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()));
    count(self, w.ev.type(), &consumer_stats::retried, &type_stats::retried);
    e.waiting = true;
    e.wait_id = ++st.next_wait;
    self->delayed_send(self, delay, retry_atom::value, key, e.wait_id);
    return true;
  }
  auto reason = o.retryable ? fmt::format("{} attempts failed", n)
                            : std::string{"non-retryable error"};
  log_failure(*st.setup.log, st.setup.consumer, w.ev, n, o,
              "dead letter: " + reason);
  bool grouped = w.gate != nullptr;
  bool parks = st.setup.policy.on_dead_letter == dead_letter_policy::park;
  if (dead_letter(self, w, std::move(e.attempts), reason, false, parks,
                  e.started)
      && parks)
    ++e.unstored;
  e.attempts.clear();
  e.queue.pop_front();
  --st.held;
  if (st.setup.policy.on_dead_letter == dead_letter_policy::park) {
    // Its later events follow it into the dead letters, in order, until a
    // redrive: nothing of this entity is handled out of order.
    e.parking = true;
    e.park_batch = st.batch_no;
    e.group_parked = grouped;
    st.setup.log->warn(
      "consumer={} key={}: entity parked after a dead letter; its "
      "later events are dead-lettered until it is redriven",
      st.setup.consumer, key);
    while (!e.queue.empty()) {
      if (dead_letter(self, e.queue.front(), {},
                      "parked behind an earlier dead letter", true))
        ++e.unstored;
      e.queue.pop_front();
      --st.held;
    }
  }
  return false;
}

// The front of `e` is handled: counted, reported, popped.
void finish_front(shard_actor* self, entity_state& e) {
  finished(self, e.queue.front(), e.started, e.attempts.size() + 1);
  e.attempts.clear();
  e.handlers_ok = false;
  e.queue.pop_front();
  --self->state.held;
}

// Looks for timed-out pool calls every so often while calls run: a tenth
// of the timeout, between 5 ms and 1 s.
void schedule_tick(shard_actor* self) {
  auto& st = self->state;
  if (st.tick_scheduled)
    return;
  st.tick_scheduled = true;
  auto period = std::clamp<std::chrono::microseconds>(
    st.setup.policy.handler_timeout / 10, std::chrono::milliseconds{5},
    std::chrono::seconds{1});
  self->delayed_send(self, period, tick_atom::value);
}

// Hands the front of `entry` to the pool (submitted at the end of the
// message, see `report`).
void start_call(shard_actor* self, entity_entry& entry) {
  auto& st = self->state;
  auto& e = entry.second;
  e.running = true;
  e.in_attempt = true;
  e.run_id = ++st.next_wait;
  ++st.attempting;
  ++st.calls;
  e.in_call = e.queue.front().ev;
  st.submits.push_back({&e.in_call, &entry, e.run_id});
  schedule_tick(self);
}

void on_service_reply(shard_actor* self, const std::string& key, uint64_t id,
                      const caf::error* err);

// Asks the service actor to handle the front of `key`. The request has
// no CAF timeout: CAF's clock keeps a request's timeout until it fires,
// answered or not, so at thousands of events per second a 30 s
// `handler_timeout` held millions of them (measured with a heap profile).
// `on_tick` fails the requests that run past it instead.
void start_request(shard_actor* self, const std::string& key, entity_state& e) {
  auto& st = self->state;
  e.waiting = true;
  e.in_attempt = true;
  e.started = steady_clock::now();
  ++st.attempting;
  auto id = e.wait_id = ++st.next_wait;
  schedule_tick(self);
  self->request(st.service, caf::infinite, e.queue.front().ev)
    .then(
      [self, key, id] {
        on_service_reply(self, key, id, nullptr);
      },
      [self, key, id](caf::error& err) {
        on_service_reply(self, key, id, &err);
      });
}

// Handles the events of `entry` from the front of its queue until one has
// to wait (a retry, a pool call, a service reply, a paused service) or the
// queue is empty; then forgets an idle entity. An attempt calls the
// function handlers that select the event (on the pool, or here), then the
// service actor; the first failure ends it.
void attempt(shard_actor* self, entity_entry& entry) {
  auto& st = self->state;
  auto& [key, e] = entry;
  while (!e.queue.empty() && !e.waiting && !e.running) {
    auto& w = e.queue.front();
    if (!e.handlers_ok && !w.may_start()) {
      // Its lease ended (a handoff, an expiry): pending retries included,
      // nothing more is attempted; the next holder starts afresh.
      abandon(self, w);
      e.attempts.clear();
      e.queue.pop_front();
      --st.held;
      continue;
    }
    if (!e.handlers_ok) {
      e.started = steady_clock::now();
      if (wants_pool(self, w.ev.type())) {
        start_call(self, entry);
        return;
      }
      auto o = call_handlers(*st.subs, w.ev);
      if (!o.ok) {
        if (on_failure(self, key, e, std::move(o)))
          return;
        continue;
      }
      e.handlers_ok = true;
    }
    if (wants_service(self, w.ev)) {
      if (!st.service)
        break; // paused: attached again later
      start_request(self, key, e);
      return;
    }
    finish_front(self, e);
  }
  if (e.queue.size() < st.setup.policy.entity_buffer / 2 + 1)
    resume_streams(self, e);
  if (e.idle())
    settle(self, entry);
}

// The service answered the front of `key` (`err` null for success).
void on_service_reply(shard_actor* self, const std::string& key, uint64_t id,
                      const caf::error* err) {
  auto& st = self->state;
  auto it = st.entities.find(key);
  if (it == st.entities.end() || !it->second.waiting
      || it->second.wait_id != id)
    return;
  auto& e = it->second;
  e.waiting = false;
  e.in_attempt = false;
  --st.attempting;
  if (err == nullptr)
    finish_front(self, e);
  else if (on_failure(self, key, e,
                      failure_of(*err, st.setup.policy.handler_timeout)))
    return report(self);
  attempt(self, *it);
  report(self);
}

// Outcomes of pool calls.
void on_handled(shard_actor* self, pool_results& results) {
  auto& st = self->state;
  for (auto& r : results) {
    // The entry is there: it was running, and running entries stay. The
    // id tells this call from an earlier one of an entry since reused.
    auto& entry = *static_cast<entity_entry*>(r.entity);
    auto& e = entry.second;
    if (!e.running || e.run_id != r.id)
      continue;
    --st.calls;
    e.running = false;
    e.in_call = {};
    if (!e.in_attempt) {
      // It timed out before: the attempt failed then; the entity goes on.
      attempt(self, entry);
      continue;
    }
    e.in_attempt = false;
    --st.attempting;
    if (r.result.ok)
      e.handlers_ok = true;
    else if (on_failure(self, entry.first, e, std::move(r.result)))
      continue;
    attempt(self, entry);
  }
  report(self);
}

// Fails the attempts whose pool call or service request ran past
// `handler_timeout`. A call is not interrupted (a thread cannot be): the
// entity's next attempt waits until it returns. A late service reply is
// ignored.
void on_tick(shard_actor* self) {
  auto& st = self->state;
  st.tick_scheduled = false;
  auto limit = st.setup.policy.handler_timeout;
  auto now = steady_clock::now();
  std::vector<entity_entry*> overdue;
  std::vector<std::pair<std::string, uint64_t>> late;
  bool requests = false;
  for (auto& entry : st.entities) {
    auto& e = entry.second;
    if (e.running && e.in_attempt && now - e.started >= limit)
      overdue.push_back(&entry);
    else if (e.waiting && now - e.started >= limit)
      late.emplace_back(entry.first, e.wait_id);
    requests = requests || e.waiting;
  }
  // Each stays: its call still runs. (Pointers to the entries stay valid
  // while others are added or removed.)
  for (auto* entry : overdue) {
    auto& e = entry->second;
    e.in_attempt = false;
    --st.attempting;
    outcome o{false, true,
              fmt::format("the handler did not return within {} "
                          "(handler_timeout); its call goes on, and the "
                          "next attempt waits until it returns",
                          format_duration(limit)),
              "timeout"};
    if (!on_failure(self, entry->first, e, std::move(o)))
      attempt(self, *entry);
  }
  for (auto& [key, id] : late) {
    caf::error err = caf::sec::request_timeout;
    on_service_reply(self, key, id, &err);
  }
  if (st.calls > 0) {
    // Calls that hang do not stop the pool from growing.
    nudge(*st.setup.pool);
    schedule_tick(self);
  } else if (requests) {
    schedule_tick(self);
  }
  report(self);
}

// Queues `w` behind the busy entity `e`, pausing its stream when the queue
// is full.
void enqueue(shard_actor* self, entity_state& e, work_item w) {
  auto& st = self->state;
  if (e.queue.size() >= st.setup.policy.entity_buffer && w.stream != no_stream
      && std::find(e.paused.begin(), e.paused.end(), w.stream)
           == e.paused.end()) {
    e.paused.push_back(w.stream);
    self->send(st.setup.owner, pause_atom::value, w.stream);
  }
  e.queue.push_back(std::move(w));
  ++st.held;
}

// Seed-style handlers on the shard, for an entity with nothing pending:
// no entry unless the attempt fails.
void handle_here(shard_actor* self, std::string_view key, work_item& w) {
  auto& st = self->state;
  if (!w.may_start()) {
    abandon(self, w);
    return;
  }
  auto started = steady_clock::now();
  auto o = call_handlers(*st.subs, w.ev);
  if (o.ok) {
    finished(self, w, started, 1);
    return;
  }
  auto& entry = claim(self, key);
  auto& e = entry.second;
  e.started = started;
  e.queue.push_back(std::move(w));
  ++st.held;
  if (!on_failure(self, entry.first, e, std::move(o)))
    attempt(self, entry);
}

void on_work(shard_actor* self, work_batch& batch) {
  auto& st = self->state;
  ++st.batch_no;
  for (auto& w : batch) {
    auto key = w.ev.key();
    // Events for the pool or the service get an entry (they wait for an
    // outcome); the others only look whether their entity is busy.
    bool here = !wants_service(self, w.ev) && !wants_pool(self, w.ev.type());
    entity_entry* entry = nullptr;
    if (!here) {
      entry = &claim(self, key);
    } else if (!st.entities.empty()) {
      if (auto it = st.entities.find(key); it != st.entities.end())
        entry = &*it;
    }
    if (entry != nullptr) {
      auto& e = entry->second;
      if (w.dead_letter != 0 && e.parked() && e.park_batch != st.batch_no
          && e.unstored == 0) {
        // A redrive unparks the entity: its dead letters come first, in
        // their order, then what arrives after them. Not while letters of
        // it are still being stored: that redrive cannot hold them, and
        // its later events would pass them (the letter goes back, and the
        // next redrive takes them all).
        e.parked_behind = 0;
        e.parking = false;
        e.group_parked = false;
      }
      if (e.parked()) {
        if (dead_letter(
              self, w, {},
              e.parked_behind != 0
                ? fmt::format("parked behind dead letter {}", e.parked_behind)
                : std::string{"parked behind an earlier dead letter"},
              true))
          ++e.unstored;
        continue;
      }
      if (!e.idle()) {
        enqueue(self, e, std::move(w));
        continue;
      }
    }
    if (here) {
      if (entry != nullptr && !keeps_entries(self))
        release(self, *entry); // unparked and idle
      handle_here(self, key, w);
      continue;
    }
    entry->second.queue.push_back(std::move(w));
    ++st.held;
    attempt(self, *entry);
  }
  report(self);
}

// Lets a parked entity go on with its next event.
void unpark(shard_actor* self, entity_entry& entry) {
  auto& e = entry.second;
  e.unstored = 0;
  e.parked_behind = 0;
  e.parking = false;
  e.group_parked = false;
  if (e.idle())
    settle(self, entry);
}

caf::behavior shard(shard_actor* self, shard_setup setup) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.source = std::make_shared<const pool_source>(
    pool_source{caf::actor_cast<caf::actor>(self), st.subs});
  for (auto& [key, id] : st.setup.parked)
    st.entities[key].parked_behind = id;
  return {
    [self](handled_atom, pool_results& results) {
      on_handled(self, results);
    },
    [self](tick_atom) {
      on_tick(self);
    },
    [self](work_batch& batch) {
      on_work(self, batch);
    },
    [self](retry_atom, const std::string& key, uint64_t id) {
      auto it = self->state.entities.find(key);
      if (it == self->state.entities.end() || !it->second.waiting
          || it->second.wait_id != id || it->second.in_attempt)
        return;
      it->second.waiting = false;
      attempt(self, *it);
      report(self);
    },
    [self](dead_letter_atom, const std::string& key, uint64_t id) {
      // A letter of a parked entity is stored (`id`), or was not (0: its
      // lease ended); the one it is parked behind is named.
      auto it = self->state.entities.find(key);
      if (it == self->state.entities.end())
        return;
      auto& e = it->second;
      if (e.unstored > 0)
        --e.unstored;
      if (id != 0 && e.parking) {
        e.parking = false;
        e.parked_behind = id;
      }
    },
    [self](unpark_atom, const std::string& key) {
      // Its dead letters were purged: it goes on with its next event.
      auto it = self->state.entities.find(key);
      if (it != self->state.entities.end() && it->second.parked())
        unpark(self, *it);
    },
    [self](group_park_atom, const std::string& key, uint64_t id) {
      // Granted a partition with this entity parked at the stream's owner.
      auto& e = self->state.entities[key];
      e.parked_behind = id;
      e.parking = false;
      e.group_parked = true;
      e.park_batch = self->state.batch_no;
    },
    [self](group_park_atom, uint32_t partitions, uint32_t partition) {
      // The partition left this member: its next holder parks its entities.
      auto& st = self->state;
      std::vector<entity_entry*> left;
      for (auto& entry : st.entities)
        if (entry.second.group_parked && entry.second.parked()
            && partition_of(entry.first, partitions) == partition)
          left.push_back(&entry);
      for (auto* entry : left)
        unpark(self, *entry);
    },
    [self](subscribe_atom, const subscription& sub) {
      auto& st = self->state;
      auto subs = std::make_shared<std::vector<subscription>>(*st.subs);
      subs->push_back(sub);
      st.subs = std::move(subs);
      st.source = std::make_shared<const pool_source>(
        pool_source{st.source->reply_to, st.subs});
    },
    [self](attach_atom, const caf::actor& service,
           const std::vector<pattern>& patterns) {
      auto& st = self->state;
      st.has_service = true;
      st.service = service;
      st.service_patterns = patterns;
      // Entities that waited for the service while it was paused; each
      // attempt may release its own entry, never another's.
      std::vector<entity_entry*> ready;
      for (auto& entry : st.entities)
        if (!entry.second.queue.empty() && !entry.second.waiting
            && !entry.second.running)
          ready.push_back(&entry);
      for (auto* entry : ready)
        attempt(self, *entry);
      report(self);
    },
    [self](service_paused_atom) {
      self->state.service = nullptr;
    },
  };
}

} // namespace

outcome failure_of(const caf::error& err,
                   std::chrono::microseconds handler_timeout) {
  if (err.category() == caf::atom("system")) {
    if (err.code() == static_cast<uint8_t>(caf::sec::request_timeout))
      return {false, true,
              fmt::format("the service actor did not answer within {} "
                          "(handler_timeout)",
                          format_duration(handler_timeout)),
              "timeout"};
    if (err.code() == static_cast<uint8_t>(caf::sec::request_receiver_down))
      return {false, true,
              "the service actor died before it answered "
              "(request_receiver_down); it is being restarted",
              "error"};
  }
  bool permanent = is(err, errc::non_retryable);
  return {false, !permanent, message_of(err),
          permanent ? "non_retryable" : "error"};
}

outcome call_handlers(const std::vector<subscription>& subs, const event& ev) {
  for (auto& sub : subs) {
    if (!sub.selector.matches(ev.type()))
      continue;
    try {
      if (auto err = sub.handler(ev))
        return failure_of(err);
    } catch (const non_retryable_error& e) {
      return {false, false, e.what(), "non_retryable"};
    } catch (const std::exception& e) {
      return {false, true, e.what(), "exception"};
    } catch (...) {
      return {false, true, "unknown exception", "exception"};
    }
  }
  return {};
}

void log_failure(spdlog::logger& log, std::string_view consumer,
                 const event& ev, size_t attempt, const outcome& o,
                 std::string_view next) {
  log_fields(log, spdlog::level::err, "handler failed",
             {{"consumer", consumer},
              {"event_id", ev.id()},
              {"type", ev.type()},
              {"key", ev.key()},
              {"stream", ev.stream()},
              {"seq", ev.seq()},
              {"attempt", static_cast<uint64_t>(attempt)},
              {"error_class", o.error_class},
              {"error", o.error},
              {"next", next}});
}

uint32_t shard_of(std::string_view key, size_t shards) noexcept {
  return static_cast<uint32_t>(std::hash<std::string_view>{}(key) % shards);
}

caf::actor spawn_shard(caf::local_actor* parent, shard_setup setup) {
  return parent->spawn<caf::linked>(shard, std::move(setup));
}

} // namespace herald::detail
