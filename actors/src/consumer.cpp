#include "herald/actors/consumer.hpp"

#include <exception>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include "herald/core/errc.hpp"

namespace herald {

namespace {

struct consumer_state {
  consumer_setup setup;
  caf::actor service;
  std::vector<subscription> subs;
  static inline const char* name = "herald.consumer";
};

using consumer_actor = caf::stateful_actor<consumer_state>;

void log_failure(const std::string& consumer, const event& ev,
                 std::string_view why) {
  spdlog::error("consumer={} event id={} type={} key={} stream={} seq={}: "
                "handler failed: {}",
                consumer, ev.id(), ev.type(), ev.key(), ev.stream(), ev.seq(),
                why);
}

// Calls one seed-style handler; returns whether it succeeded.
bool call(const std::string& consumer, const subscription& sub,
          const event& ev) {
  try {
    if (auto err = sub.handler(ev)) {
      log_failure(consumer, ev, message_of(err));
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    log_failure(consumer, ev, e.what());
  } catch (...) {
    log_failure(consumer, ev, "unknown exception");
  }
  return false;
}

bool selects(const std::vector<pattern>& patterns, std::string_view type) {
  for (auto& p : patterns)
    if (p.matches(type))
      return true;
  return false;
}

void handle(consumer_actor* self, const event& ev) {
  auto& st = self->state.setup;
  st.stats->delivered.fetch_add(1, std::memory_order_relaxed);
  bool ok = true;
  for (auto& sub : self->state.subs)
    if (sub.selector.matches(ev.type()))
      ok = call(st.name, sub, ev) && ok;
  auto& service = self->state.service;
  if (ok && service && selects(st.service_patterns, ev.type())) {
    // The service actor's mailbox keeps the order of these requests.
    self->request(service, caf::infinite, ev)
      .then(
        [self] {
          self->state.setup.stats->handled.fetch_add(1,
                                                     std::memory_order_relaxed);
        },
        [self, ev](caf::error& err) {
          log_failure(self->state.setup.name, ev,
                      message_of(err));
          self->state.setup.stats->failed.fetch_add(1,
                                                    std::memory_order_relaxed);
        });
    return;
  }
  (ok ? st.stats->handled : st.stats->failed)
    .fetch_add(1, std::memory_order_relaxed);
}

caf::behavior consumer(consumer_actor* self, consumer_setup setup) {
  self->state.setup = std::move(setup);
  return {
    [self](const event_batch& batch) {
      for (auto& ev : batch)
        handle(self, ev);
    },
    [self](subscribe_atom, const subscription& sub) {
      self->state.subs.push_back(sub);
    },
    [self](attach_atom, const caf::actor& service) {
      self->state.service = service;
    },
  };
}

} // namespace

caf::actor spawn_consumer(caf::actor_system& sys, consumer_setup setup) {
  return sys.spawn(consumer, std::move(setup));
}

} // namespace herald
