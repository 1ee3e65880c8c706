#include "shard.hpp"

#include <chrono>
#include <deque>
#include <exception>
#include <random>
#include <unordered_map>

#include <caf/event_based_actor.hpp>
#include <caf/local_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <fmt/format.h>
#include <spdlog/logger.h>

#include "herald/core/catalog.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/logging.hpp"

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
  /// Matches the pending retry timer to this wait.
  uint64_t wait_id = 0;
  /// When the front's current attempt started (service actor replies).
  steady_clock::time_point started;
  /// Parked behind this dead letter (policy park); 0 when not parked.
  uint64_t parked_behind = 0;
  /// Parked, and the dead letter it is parked behind is being stored: its
  /// id is not known yet.
  bool parking = false;
  /// The shard's batch during which the entity was parked: a redrive in a
  /// later batch unparks it, one in the same batch does not.
  uint64_t park_batch = 0;
  /// Streams paused on this entity's account.
  std::vector<uint32_t> paused;

  bool parked() const noexcept {
    return parked_behind != 0 || parking;
  }
};

struct shard_state {
  shard_setup setup;
  std::vector<subscription> subs;
  std::vector<pattern> service_patterns;
  caf::actor service;
  std::unordered_map<std::string, entity_state, string_hash, std::equal_to<>>
    entities;
  /// Events in entity queues: reported to the consumer actor, which does
  /// not count them against its replay window.
  uint64_t held = 0;
  uint64_t reported_held = 0;
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
  return self->state.service
         && any_matches(self->state.service_patterns, ev.type());
}

// Tells the consumer actor what finished and how many events wait in
// entity queues, in one message.
void report(shard_actor* self) {
  auto& st = self->state;
  if (st.done.empty() && st.held == st.reported_held)
    return;
  st.reported_held = st.held;
  self->send(st.setup.owner, done_atom::value, std::move(st.done),
             st.setup.index, st.held);
  st.done.clear();
}

// Records how long an attempt that began at `started` took.
void timed(shard_actor* self, steady_clock::time_point started) {
  self->state.setup.stats->handler_latency.observe_us(
    std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now()
                                                          - started)
      .count());
}

void finished(shard_actor* self, const work_item& w,
              steady_clock::time_point started) {
  auto& st = self->state;
  auto& stats = *st.setup.stats;
  timed(self, started);
  stats.end_to_end_latency.observe_us(now_us() - w.ev.timestamp_us());
  count(self, w.ev.type(), &consumer_stats::handled, &type_stats::handled);
  if (w.live)
    stats.live_done.fetch_add(1, std::memory_order_relaxed);
  if (w.dead_letter != 0) {
    stats.redriven.fetch_add(1, std::memory_order_relaxed);
    self->send(st.setup.dead_letters, redrive_atom::value, w.dead_letter);
  } else if (w.stream != no_stream) {
    st.done.push_back({w.stream, w.ev.seq()});
  }
}

// Sends `w` to the dead-letter actor; it reports the stream position done
// once the letter is stored.
void dead_letter(shard_actor* self, const work_item& w,
                 std::vector<store::dead_letter_attempt> attempts,
                 std::string reason, bool parked, bool parks = false) {
  auto& st = self->state;
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
  req.done = {w.stream, w.ev.seq()};
  req.redriven_from = w.dead_letter;
  req.live = w.live;
  req.consumer = st.setup.owner;
  req.stats = st.setup.stats;
  if (parks)
    req.parks = caf::actor_cast<caf::actor>(self);
  self->send(st.setup.dead_letters, dead_letter_atom::value, std::move(req));
}

void resume_streams(shard_actor* self, entity_state& e) {
  for (auto stream : e.paused)
    self->send(self->state.setup.owner, resume_atom::value, stream);
  e.paused.clear();
}

void attempt(shard_actor* self, const std::string& key);

// The front event of `key` failed with `o`: retry it later, or dead-letter
// it. Returns whether the entity waits now (a retry is scheduled).
bool on_failure(shard_actor* self, const std::string& key, entity_state& e,
                outcome o) {
  auto& st = self->state;
  auto& w = e.queue.front();
  timed(self, e.started);
  count(self, w.ev.type(), &consumer_stats::failed, &type_stats::failed);
  e.attempts.push_back({now_us(), o.error, o.error_class});
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
  dead_letter(self, w, std::move(e.attempts), reason, false,
              st.setup.policy.on_dead_letter == dead_letter_policy::park);
  e.attempts.clear();
  e.queue.pop_front();
  --st.held;
  if (st.setup.policy.on_dead_letter == dead_letter_policy::park) {
    // Its later events follow it into the dead letters, in order, until a
    // redrive: nothing of this entity is handled out of order.
    e.parking = true;
    e.park_batch = st.batch_no;
    st.setup.log->warn(
      "consumer={} key={}: entity parked after a dead letter; its "
      "later events are dead-lettered until it is redriven",
      st.setup.consumer, key);
    while (!e.queue.empty()) {
      dead_letter(self, e.queue.front(), {},
                  "parked behind an earlier dead letter", true);
      e.queue.pop_front();
      --st.held;
    }
  }
  return false;
}

// Handles the events of `key` from the front of its queue until one has to
// wait (retry or service reply) or the queue is empty; then forgets an idle
// entity.
void attempt(shard_actor* self, const std::string& key) {
  auto& st = self->state;
  auto it = st.entities.find(key);
  if (it == st.entities.end())
    return;
  auto& e = it->second;
  while (!e.queue.empty() && !e.waiting) {
    auto& w = e.queue.front();
    e.started = steady_clock::now();
    auto o = call_handlers(self->state.subs, w.ev);
    if (o.ok && wants_service(self, w.ev)) {
      e.waiting = true;
      auto id = e.wait_id = ++st.next_wait;
      self->request(st.service, caf::infinite, w.ev)
        .then(
          [self, key, id] {
            auto it = self->state.entities.find(key);
            if (it == self->state.entities.end() || it->second.wait_id != id)
              return;
            auto& e = it->second;
            e.waiting = false;
            finished(self, e.queue.front(), e.started);
            e.attempts.clear();
            e.queue.pop_front();
            --self->state.held;
            attempt(self, key);
            report(self);
          },
          [self, key, id](caf::error& err) {
            auto it = self->state.entities.find(key);
            if (it == self->state.entities.end() || it->second.wait_id != id)
              return;
            auto& e = it->second;
            e.waiting = false;
            if (!on_failure(self, key, e, failure_of(err)))
              attempt(self, key);
            report(self);
          });
      return;
    }
    if (o.ok) {
      finished(self, w, e.started);
      e.attempts.clear();
      e.queue.pop_front();
      --st.held;
    } else if (on_failure(self, key, e, std::move(o))) {
      return;
    }
  }
  if (e.queue.size() < st.setup.policy.entity_buffer / 2 + 1)
    resume_streams(self, e);
  if (e.queue.empty() && !e.waiting && !e.parked())
    st.entities.erase(it);
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

void on_work(shard_actor* self, work_batch& batch) {
  auto& st = self->state;
  ++st.batch_no;
  for (auto& w : batch) {
    auto key = w.ev.key();
    if (!st.entities.empty()) {
      if (auto it = st.entities.find(key); it != st.entities.end()) {
        auto& e = it->second;
        if (w.dead_letter != 0 && e.parked() && e.park_batch != st.batch_no) {
          // A redrive unparks the entity: its dead letters come first, in
          // their order, then what arrives after them.
          e.parked_behind = 0;
          e.parking = false;
        }
        if (e.parked()) {
          dead_letter(
            self, w, {},
            e.parked_behind != 0
              ? fmt::format("parked behind dead letter {}", e.parked_behind)
              : std::string{"parked behind an earlier dead letter"},
            true);
          continue;
        }
        if (!e.queue.empty() || e.waiting) {
          enqueue(self, e, std::move(w));
          continue;
        }
        st.entities.erase(it); // unparked and idle
      }
    }
    if (!wants_service(self, w.ev)) {
      // The common case: seed-style handlers on an idle entity, no state.
      auto started = steady_clock::now();
      auto o = call_handlers(self->state.subs, w.ev);
      if (o.ok) {
        finished(self, w, started);
        continue;
      }
      auto& e = st.entities[std::string{key}];
      e.started = started;
      e.queue.push_back(std::move(w));
      ++st.held;
      std::string k{key};
      if (!on_failure(self, k, e, std::move(o)))
        attempt(self, k);
      continue;
    }
    std::string k{key};
    auto& e = st.entities[k];
    e.queue.push_back(std::move(w));
    ++st.held;
    attempt(self, k);
  }
  report(self);
}

caf::behavior shard(shard_actor* self, shard_setup setup) {
  auto& st = self->state;
  st.setup = std::move(setup);
  for (auto& [key, id] : st.setup.parked)
    st.entities[key].parked_behind = id;
  return {
    [self](work_batch& batch) {
      on_work(self, batch);
    },
    [self](retry_atom, const std::string& key, uint64_t id) {
      auto it = self->state.entities.find(key);
      if (it == self->state.entities.end() || !it->second.waiting
          || it->second.wait_id != id)
        return;
      it->second.waiting = false;
      attempt(self, key);
      report(self);
    },
    [self](dead_letter_atom, const std::string& key, uint64_t id) {
      // The dead letter an entity was parked behind is stored: name it.
      auto it = self->state.entities.find(key);
      if (it != self->state.entities.end() && it->second.parking) {
        it->second.parking = false;
        it->second.parked_behind = id;
      }
    },
    [self](unpark_atom, const std::string& key) {
      // Its dead letters were purged: it goes on with its next event.
      auto it = self->state.entities.find(key);
      if (it != self->state.entities.end() && it->second.parked()) {
        it->second.parked_behind = 0;
        it->second.parking = false;
        if (it->second.queue.empty() && !it->second.waiting)
          self->state.entities.erase(it);
      }
    },
    [self](subscribe_atom, const subscription& sub) {
      self->state.subs.push_back(sub);
    },
    [self](attach_atom, const caf::actor& service,
           const std::vector<pattern>& patterns) {
      self->state.service = service;
      self->state.service_patterns = patterns;
    },
  };
}

} // namespace

outcome failure_of(const caf::error& err) {
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
