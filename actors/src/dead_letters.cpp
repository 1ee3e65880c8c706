#include "herald/actors/dead_letters.hpp"

#include <deque>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include "herald/actors/consumer.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/logging.hpp"

namespace herald {

namespace {

// Asks the actor to write what queued; sent to itself.
using write_atom = caf::atom_constant<caf::atom("hwrite")>;

struct dead_letter_state {
  dead_letter_setup setup;
  std::vector<dead_letter_request> pending;
  /// Redriven letters handled, to remove.
  std::vector<uint64_t> handled;
  bool write_scheduled = false;
  static inline const char* name = "herald.dead_letters";
};

using dead_letter_actor = caf::stateful_actor<dead_letter_state>;

void schedule_write(dead_letter_actor* self) {
  if (self->state.write_scheduled)
    return;
  self->state.write_scheduled = true;
  // Every message queued before this one is taken first: they form the
  // batch.
  self->send(self, write_atom::value);
}

void write(dead_letter_actor* self) {
  auto& st = self->state;
  st.write_scheduled = false;
  if (!st.pending.empty()) {
    std::vector<store::dead_letter> letters;
    letters.reserve(st.pending.size());
    for (auto& req : st.pending) {
      letters.push_back(req.letter);
      // A redriven letter that failed again grows under its id.
      letters.back().id = req.redriven_from;
    }
    auto ids = st.setup.add(letters);
    if (!ids) {
      st.setup.log->error(
        "{} dead letters could not be stored: {}; trying again "
        "in {} ms (their events stay unfinished meanwhile)",
        letters.size(), message_of(ids.error()), st.setup.retry_after.count());
      st.write_scheduled = true;
      self->delayed_send(self, st.setup.retry_after, write_atom::value);
      return;
    }
    // One done message per consumer actor, in order.
    std::unordered_map<caf::actor, done_batch> done;
    std::vector<uint64_t> failed_again;
    for (size_t i = 0; i < st.pending.size(); ++i) {
      auto& req = st.pending[i];
      auto& l = letters[i];
      note_stored(*st.setup.log, req, l, {});
      if (req.redriven_from != 0) {
        failed_again.push_back(req.redriven_from);
      } else if (req.done.stream != no_stream) {
        done[req.consumer].push_back(req.done);
      }
      if (req.parks)
        self->send(req.parks, dead_letter_atom::value, l.key, l.id);
      if (st.setup.alerts)
        self->send(st.setup.alerts, alert_atom::value, l.consumer);
    }
    for (auto& [consumer, batch] : done)
      self->send(consumer, done_atom::value, std::move(batch));
    st.pending.clear();
    if (!failed_again.empty() && st.setup.redrive_finished)
      st.setup.redrive_finished(failed_again);
  }
  if (!st.handled.empty()) {
    if (auto n = st.setup.remove(st.handled); !n) {
      st.setup.log->error(
        "redriven dead letters could not be removed: {}; trying "
        "again in {} ms",
        message_of(n.error()), st.setup.retry_after.count());
      st.write_scheduled = true;
      self->delayed_send(self, st.setup.retry_after, write_atom::value);
      return;
    }
    if (st.setup.redrive_finished)
      st.setup.redrive_finished(st.handled);
    st.handled.clear();
  }
}

caf::behavior dead_letters(dead_letter_actor* self, dead_letter_setup setup) {
  self->state.setup = std::move(setup);
  if (!self->state.setup.log)
    self->state.setup.log = spdlog::default_logger();
  return {
    [self](dead_letter_atom, dead_letter_request& req) {
      self->state.pending.push_back(std::move(req));
      schedule_write(self);
    },
    [self](redrive_atom, uint64_t id) {
      self->state.handled.push_back(id);
      schedule_write(self);
    },
    [self](write_atom) {
      write(self);
    },
  };
}

struct alert_window {
  alert_rule rule;
  /// When each dead letter within the window came (monotonic clock).
  std::deque<std::chrono::steady_clock::time_point> times;
  bool armed = true;
};

struct alert_state {
  std::unordered_map<std::string, alert_window> windows;
  std::function<void(const raised_alert&)> raise;
  static inline const char* name = "herald.alerts";
};

using alert_actor = caf::stateful_actor<alert_state>;

caf::behavior alerts(alert_actor* self, std::vector<consumer_config> consumers,
                     std::function<void(const raised_alert&)> raise) {
  for (auto& c : consumers)
    if (c.alert.dead_letters > 0)
      self->state.windows[c.name].rule = c.alert;
  self->state.raise = std::move(raise);
  return {
    [self](alert_atom, const std::string& consumer) {
      auto it = self->state.windows.find(consumer);
      if (it == self->state.windows.end())
        return;
      auto& w = it->second;
      auto now = std::chrono::steady_clock::now();
      while (!w.times.empty() && now - w.times.front() > w.rule.window)
        w.times.pop_front();
      // Below the threshold again: the next crossing raises a new alert.
      if (w.times.size() < w.rule.dead_letters)
        w.armed = true;
      w.times.push_back(now);
      // The threshold-th newest time tells whether the window holds enough.
      if (w.times.size() > w.rule.dead_letters)
        w.times.pop_front();
      if (w.armed && w.times.size() >= w.rule.dead_letters) {
        w.armed = false;
        self->state.raise({consumer, w.times.size(), w.rule, now_us()});
      }
    },
  };
}

} // namespace

void note_stored(spdlog::logger& log, const dead_letter_request& req,
                 const store::dead_letter& l, std::string_view owner) {
  auto& stats = *req.stats;
  stats.dead_lettered.fetch_add(1, std::memory_order_relaxed);
  if (req.live)
    stats.live_done.fetch_add(1, std::memory_order_relaxed);
  if (auto* ts = stats.of_type(l.event_type))
    ts->dead_lettered.fetch_add(1, std::memory_order_relaxed);
  if (req.redriven_from != 0)
    stats.redriven.fetch_add(1, std::memory_order_relaxed);
  // The failure itself was logged at error by the shard.
  log_fields(log, spdlog::level::info, "stored as a dead letter",
             {{"consumer", l.consumer},
              {"event_id", l.event_id},
              {"type", l.event_type},
              {"key", l.key},
              {"stream", l.stream},
              {"seq", l.seq},
              {"attempts", l.attempts.size()},
              {"dead_letter", l.id},
              {"stored_at", owner.empty() ? std::string_view{l.node} : owner},
              {"reason", l.reason},
              {"error", l.attempts.empty() ? std::string_view{}
                                           : l.attempts.back().error}});
}

caf::actor spawn_dead_letters(caf::actor_system& sys, dead_letter_setup setup) {
  return sys.spawn(dead_letters, std::move(setup));
}

caf::actor spawn_alerts(caf::actor_system& sys,
                        std::vector<consumer_config> consumers,
                        std::function<void(const raised_alert&)> raise) {
  return sys.spawn(alerts, std::move(consumers), std::move(raise));
}

} // namespace herald
