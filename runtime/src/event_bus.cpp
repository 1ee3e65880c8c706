// The event bus: publishing into the node's stream, and subscribing the
// node's consumers (and observers) to patterns.

#include <algorithm>

#include <caf/send.hpp>
#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"
#include "node_impl.hpp"

namespace herald {

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
  // One clock read serves the id and the timestamp. Taken before the
  // stream lock, so timestamps may step back by the lock wait; seq, not
  // time, is the stream's order.
  auto now = now_us();
  auto id = make_uuid_v7(now);
  envelope_header h;
  h.timestamp_us = now;
  h.event_type = spec->name;
  h.id = id;
  h.source = source;
  // Validated above: the key field is a required string, canonical.
  h.key = body.find(spec->key)->get_ref<const std::string&>();
  h.stream = p.stream;
  h.schema_version = spec->schema_version;
  h.traceparent = opts.traceparent;
  auto idx = static_cast<size_t>(spec - p.cat.events().data());
  std::lock_guard<std::mutex> guard{p.publish_mtx};
  h.seq = ++p.seq;
  h.type_seq = ++p.type_seqs[idx];
  store::record rec;
  rec.seq = h.seq;
  rec.type = spec->name;
  rec.type_seq = h.type_seq;
  rec.timestamp_us = h.timestamp_us;
  rec.envelope.reserve(320);
  encode(h, body, rec.envelope);
  if (rec.envelope.size() > p.cfg.transport.max_envelope_size()) {
    // Nothing was written: the stream takes the positions back.
    --p.seq;
    --p.type_seqs[idx];
    return make_error(
      errc::frame_too_large,
      fmt::format("event '{}': the envelope is {} bytes, over the {} bytes an "
                  "envelope may take under transport.max_message_size {} "
                  "(less {} bytes for a replay reply's fields); send a "
                  "smaller payload (e.g. a reference to the data) or raise "
                  "transport.max_message_size on every node",
                  type, rec.envelope.size(),
                  p.cfg.transport.max_envelope_size(),
                  p.cfg.transport.max_message_size, frame_reserve));
  }
  // Sent to consumers once durable, by the log's commit callback.
  auto ticket = p.log_store->append(std::move(rec));
  p.published[idx].fetch_add(1, std::memory_order_relaxed);
  return publish_receipt{std::move(id), h.seq, std::move(ticket)};
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
    // The actor learns the handler before the pump subscribes: no event
    // can arrive ahead of its handler.
    caf::anon_send(c.actor, subscribe_atom::value,
                   subscription{*pat, std::move(fn)});
    p.subscribe_prefix(pat->zmq_prefix());
  }
  return {};
}

} // namespace herald
