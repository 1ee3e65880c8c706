// The event bus: publishing into the node's stream, and subscribing the
// node's consumers (and observers) to patterns.

#include <algorithm>

#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>
#include <caf/thread_hook.hpp>
#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"
#include "node_impl.hpp"
#include "test_hooks.hpp"

namespace herald {

namespace {

// Whether the calling thread is one of an actor system's own (scheduler
// workers, its timer): set by `actor_thread_marker`.
thread_local bool actor_thread = false;

// Marks the threads an actor system starts: `publish` never blocks them.
class actor_thread_marker : public caf::thread_hook {
public:
  void init(caf::actor_system&) override {
    // nop
  }
  void thread_started() override {
    actor_thread = true;
  }
  void thread_terminates() override {
    actor_thread = false;
  }
};

// The error of a publish that found no room in the log's queue.
caf::error would_block(const node::impl& p, std::string_view type,
                       std::chrono::microseconds waited) {
  auto limit = p.cfg.store.max_pending_bytes;
  if (waited.count() == 0)
    return make_error(
      errc::would_block,
      fmt::format("cannot publish '{}' now: node '{}' has {} bytes of events "
                  "queued for its disk, at store.max_pending_bytes {} (the "
                  "disk is slower than publishing); nothing was published. "
                  "Retry later{}, or raise store.max_pending_bytes",
                  type, p.cfg.name, p.log_store->pending_bytes(), limit,
                  on_actor_thread()
                    ? " (on an actor's thread publish never waits: retry "
                      "from a delayed message to yourself)"
                    : ""));
  return make_error(
    errc::would_block,
    fmt::format("cannot publish '{}': node '{}' still had {} bytes of events "
                "queued for its disk, at store.max_pending_bytes {}, after "
                "waiting {} (store.publish_timeout); nothing was published. "
                "The disk is slower than publishing or stalled: retry later, "
                "check the disk, or raise store.max_pending_bytes",
                type, p.cfg.name, p.log_store->pending_bytes(), limit,
                format_duration(waited)));
}

} // namespace

void mark_actor_threads(caf::actor_system_config& cfg) {
  cfg.add_thread_hook<actor_thread_marker>();
}

bool on_actor_thread() noexcept {
  return actor_thread;
}

caf::expected<publish_receipt> event_bus::publish(std::string_view type,
                                                  const payload& data,
                                                  const publish_options& opts) {
  auto& p = *node_->impl_;
  if (!p.running)
    return make_error(errc::not_running,
                      fmt::format("cannot publish '{}': node '{}' is stopped",
                                  type, p.cfg.name));
  auto* spec = p.cat.find(type);
  if (spec == nullptr)
    return make_error(errc::unknown_event,
                      fmt::format("unknown event type '{}': not in the "
                                  "catalog {}; add it there first",
                                  type, p.cat.source()));
  // The canonical form is what is stored, delivered and keyed; a payload
  // that already is canonical is used as given.
  auto canonical = catalog::canonical_form(*spec, data);
  if (!canonical)
    return std::move(canonical.error());
  const auto& body = *canonical ? **canonical : data;
  const auto& source = opts.source.empty() ? p.cfg.service : opts.source;
  if (source != spec->producer)
    return make_error(errc::catalog_violation,
                      fmt::format("event '{}' is produced by '{}' according "
                                  "to the catalog {}, not by '{}'; publish it "
                                  "from {} or change its producer there",
                                  type, spec->producer, p.cat.source(), source,
                                  spec->producer));
  // An actor's thread never waits: it runs every actor of the node.
  auto wait = on_actor_thread()
                ? std::chrono::microseconds{0}
                : opts.max_wait.value_or(p.cfg.store.publish_timeout);
  auto deadline = std::chrono::steady_clock::now() + wait;
  envelope_header h;
  h.event_type = spec->name;
  h.source = source;
  // Validated above: the key field is a required string, canonical.
  h.key = body.find(spec->key)->get_ref<const std::string&>();
  h.stream = p.stream;
  h.schema_version = spec->schema_version;
  h.traceparent = opts.traceparent;
  auto idx = static_cast<size_t>(spec - p.cat.events().data());
  store::record rec;
  rec.type = spec->name;
  for (;;) {
    // One clock read serves the id and the timestamp. Taken before the
    // stream lock, so timestamps may step back by the lock wait; seq, not
    // time, is the stream's order.
    auto now = now_us();
    auto id = make_uuid_v7(now);
    h.timestamp_us = now;
    h.id = id;
    std::unique_lock<std::mutex> guard{p.publish_mtx};
    h.seq = ++p.seq;
    h.type_seq = ++p.type_seqs[idx];
    rec.seq = h.seq;
    rec.type_seq = h.type_seq;
    rec.timestamp_us = h.timestamp_us;
    rec.envelope.clear();
    rec.envelope.reserve(320);
    encode(h, body, rec.envelope);
    if (rec.envelope.size() > p.cfg.transport.max_envelope_size()) {
      // Nothing was written: the stream takes the positions back.
      --p.seq;
      --p.type_seqs[idx];
      return make_error(
        errc::frame_too_large,
        fmt::format("event '{}': the envelope is {} bytes, over the {} bytes "
                    "an envelope may take under transport.max_message_size "
                    "{} (less {} bytes for a replay reply's fields); send a "
                    "smaller payload (e.g. a reference to the data) or raise "
                    "transport.max_message_size on every node",
                    type, rec.envelope.size(),
                    p.cfg.transport.max_envelope_size(),
                    p.cfg.transport.max_message_size, frame_reserve));
    }
    // Sent to consumers once durable, by the log's commit callback.
    if (auto ticket = p.log_store->try_append(rec)) {
      guard.unlock();
      p.published[idx].fetch_add(1, std::memory_order_relaxed);
      return publish_receipt{std::move(id), h.seq, std::move(ticket)};
    }
    // The log's queue is full: give the positions back, wait for room
    // outside the stream lock (other publishers may refuse meanwhile), and
    // make the event again with new positions and time.
    --p.seq;
    --p.type_seqs[idx];
    guard.unlock();
    auto bytes = rec.envelope.size() + rec.type.size();
    if (wait.count() == 0 || !p.log_store->wait_for_room(bytes, deadline))
      return would_block(p, type, wait);
  }
}

caf::error event_bus::observe(std::string_view pattern_text,
                              std::function<void(const event&)> fn,
                              const observe_options& opts) {
  return add_handler(
    pattern_text,
    [f = std::move(fn)](const event& ev) {
      f(ev);
      return caf::error{};
    },
    observer_name, false, &opts);
}

caf::error event_bus::add_handler(std::string_view pattern_text, handler_fn fn,
                                  std::string_view consumer, bool check,
                                  const observe_options* start) {
  auto& p = *node_->impl_;
  auto pat = pattern::parse(pattern_text);
  if (!pat)
    return std::move(pat.error());
  std::string name{consumer.empty() ? std::string_view{p.cfg.service}
                                    : consumer};
  if (!p.running)
    return make_error(errc::not_running,
                      fmt::format("cannot subscribe '{}': node '{}' is stopped",
                                  pattern_text, p.cfg.name));
  if (check)
    if (auto err = check_subscription(p.cat, *pat, name))
      return err;
  {
    std::unique_lock<std::shared_mutex> guard{p.consumers_mtx};
    if (start != nullptr) {
      // The observer's start is fixed when its actor is made.
      bool exists = std::any_of(p.consumers.begin(), p.consumers.end(),
                                [&](const consumer_entry& c) {
                                  return c.name == name;
                                });
      if (!exists)
        p.observer_start = *start;
      else if (!(p.observer_start == *start))
        return make_error(errc::invalid_argument,
                          fmt::format("cannot observe '{}' from another start "
                                      "than the node's observer already has; "
                                      "observe every pattern with the same "
                                      "options",
                                      pattern_text));
    }
    auto& c = p.consumer(name);
    c.patterns.push_back(*pat);
    if (p.hooks && start == nullptr)
      fn = p.hooks->wrap(std::move(fn));
    // The actor learns the handler before the pump subscribes: no event
    // can arrive ahead of its handler.
    caf::anon_send(c.actor, subscribe_atom::value,
                   subscription{*pat, std::move(fn)});
    p.subscribe_prefix(pat->zmq_prefix());
  }
  // Announce the subscription, and connect to the members producing what
  // it selects, at the next tick.
  p.self_changed = true;
  return {};
}

} // namespace herald
