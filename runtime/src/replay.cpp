// Stream heartbeats and the control channel's server side: decoding each
// control request (see herald/runtime/control.hpp), serving replays from
// this node's log, and asking other nodes' logs for what a consumer missed.
// The dead-letter operations are served in dead_letter_admin.cpp.

#include <algorithm>
#include <limits>
#include <type_traits>
#include <variant>

#include <caf/send.hpp>
#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "node_impl.hpp"
#include "publish_admin.hpp"

namespace herald {

namespace {

// The most a MessagePack bin header takes (bin 32).
constexpr size_t reply_bin_header = 5;

stream_heartbeat to_stream_heartbeat(control::heartbeat hb) {
  stream_heartbeat out;
  out.stream = std::move(hb.stream);
  out.head = hb.head;
  out.control = std::move(hb.control);
  out.types = std::move(hb.types);
  return out;
}

} // namespace

std::string node::impl::make_heartbeat() {
  control::heartbeat hb;
  {
    std::lock_guard<std::mutex> guard{heads_mtx};
    hb.stream = stream;
    hb.head = sent_head;
    hb.control = pump ? pump->control_endpoint() : std::string{};
    hb.types.insert(sent_type_heads.begin(), sent_type_heads.end());
  }
  hb.max_message_size = cfg.transport.max_message_size;
  if (pump)
    hb.pub = cfg.advertise.empty() ? pump->endpoint() : cfg.advertise;
  check_peers();
  auto body = control::encode(hb);
  // Local consumers hear their own node's heartbeat directly.
  broadcast_heartbeat(to_stream_heartbeat(std::move(hb)));
  return body;
}

void node::impl::broadcast_heartbeat(const stream_heartbeat& hb) {
  std::shared_lock<std::shared_mutex> guard{consumers_mtx};
  for (auto& c : consumers)
    caf::anon_send(c.actor, heartbeat_atom::value, hb);
}

void node::impl::on_heartbeat(std::string_view body, std::string_view from) {
  auto hb = control::decode_heartbeat(body, limits);
  if (!hb) {
    control_errors.fetch_add(1, std::memory_order_relaxed);
    log->warn("dropped a malformed heartbeat: {}", message_of(hb.error()));
    return;
  }
  if (hb->stream == stream)
    return;
  if (!from_member(*hb, from))
    return;
  if (!note_heartbeat(*hb))
    return;
  broadcast_heartbeat(to_stream_heartbeat(std::move(*hb)));
}

// Serves a control request: a replay from this node's log, a dead-letter
// operation, or a publish, which is answered later (once durable, see
// publish_admin.hpp). Never throws; a request that is malformed or cannot
// be served is counted and answered with an error reply.
std::optional<std::string>
node::impl::on_control_request(std::string_view bytes,
                               const transport::control_peer& from) {
  auto req = control::decode_request(bytes, limits);
  if (!req)
    return refuse(control::message_id(bytes, limits), {},
                  message_of(req.error()));
  try {
    return std::visit(
      [this, &from](const auto& r) -> std::optional<std::string> {
        using type = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<type, control::publish_request>)
          return publisher->serve(r, from);
        else if constexpr (std::is_same_v<type, control::replay_request>)
          return serve(r, from);
        else
          return serve(r);
      },
      *req);
  } catch (const std::exception& e) {
    return refuse(
      control::message_id(bytes, limits), {},
      fmt::format("cannot serve {}: {}", control::op_name(*req), e.what()));
  }
}

// The error reply to request `id` (of `req_stream`, for a replay),
// counted and logged.
std::string node::impl::refuse(uint64_t id, std::string req_stream,
                               std::string why) {
  control_errors.fetch_add(1, std::memory_order_relaxed);
  log->warn("control request refused: {}", why);
  control::error_reply e;
  e.id = id;
  e.stream = std::move(req_stream);
  e.error = std::move(why);
  return control::encode(e);
}

std::string node::impl::serve(const control::replay_request& r,
                              const transport::control_peer& from) {
  // A reply is up to one frame: refused when that would not fit the
  // client's backlog, its unread replies (the pump would drop it).
  auto limit = std::max(cfg.transport.control_backlog_bytes,
                        cfg.transport.max_message_size);
  if (from.backlog_bytes + cfg.transport.max_message_size > limit) {
    replays_refused.fetch_add(1, std::memory_order_relaxed);
    control::error_reply e;
    e.id = r.id;
    e.stream = r.stream;
    e.error = fmt::format(
      "replay refused: {} bytes of replies to this client wait unread, and "
      "one more reply of up to {} bytes would pass the limit of {} bytes "
      "(transport.control_backlog_bytes); read the replies before asking "
      "for more",
      from.backlog_bytes, cfg.transport.max_message_size, limit);
    if (!replays_refused_logged.exchange(true))
      log->warn("{} (a control client that does not read; further refusals "
                "are counted in herald_replays_refused_total, not logged)",
                e.error);
    return control::encode(e);
  }
  if (r.stream != stream)
    return refuse(r.id, r.stream,
                  fmt::format("unknown stream '{}': this node's stream is "
                              "'{}'",
                              r.stream, stream));
  std::vector<pattern> patterns;
  for (auto& text : r.patterns) {
    auto p = pattern::parse(text);
    if (!p)
      return refuse(r.id, r.stream, message_of(p.error()));
    patterns.push_back(std::move(*p));
  }
  return replay_reply_bytes(r.id, r.from,
                            std::min(r.max, control::max_replay_events),
                            patterns, r.since);
}

// A replay reply (or an error reply) for events of this node's stream
// from `from` on, or from the first event at or after `since` when that
// is later.
std::string node::impl::replay_reply_bytes(uint64_t id, uint64_t from,
                                           uint64_t max,
                                           const std::vector<pattern>& patterns,
                                           std::optional<uint64_t> since) {
  auto error = [&](std::string why) {
    control::error_reply e;
    e.id = id;
    e.stream = stream;
    e.error = std::move(why);
    return control::encode(e);
  };
  std::shared_lock<std::shared_mutex> guard{store_mtx};
  if (!log_store)
    return error("the node is stopping");
  // Heads first, then the read: the heads never count an event the read
  // could not see.
  control::replay_reply reply;
  reply.id = id;
  reply.stream = stream;
  reply.head = reply.first = reply.next = std::numeric_limits<uint64_t>::max();
  reply.type_heads = log_store->type_heads();
  if (since) {
    auto at = log_store->seq_at_or_after(static_cast<int64_t>(
      std::min<uint64_t>(*since, std::numeric_limits<int64_t>::max())));
    if (!at)
      return error(message_of(at.error()));
    from = std::max(from, *at);
    reply.start = std::numeric_limits<uint64_t>::max();
  }
  // The reply is one frame: its fields (measured with the widest
  // positions) and its envelopes together stay within max_message_size.
  auto fields = control::encode(reply).size() + reply_bin_header;
  auto limit = cfg.transport.max_message_size;
  auto budget = fields < limit ? limit - fields : 0;
  if (since)
    reply.start = from;
  auto r = log_store->read(from, std::numeric_limits<uint64_t>::max(), max,
                           std::min(transport_max_batch(), budget),
                           [&](std::string_view type) {
                             return any_matches(patterns, type);
                           });
  if (!r)
    return error(message_of(r.error()));
  reply.head = r->head;
  reply.first = r->first;
  reply.next = r->next;
  for (auto& ev : r->events)
    reply.events.insert(reply.events.end(), ev.envelope.begin(),
                        ev.envelope.end());
  auto bytes = control::encode(reply);
  if (bytes.size() > limit) {
    // Only an envelope published under a larger limit (or type heads
    // beyond frame_reserve) gets here: the log read returns a first event
    // whatever its size.
    log->error("replay of stream {} from seq {}: the reply would be {} bytes, "
               "over transport.max_message_size {}; not sent",
               stream, from, bytes.size(), limit);
    return error(fmt::format("the replay reply from seq {} would be {} bytes, "
                             "over this node's transport.max_message_size {}",
                             from, bytes.size(), limit));
  }
  return bytes;
}

size_t node::impl::transport_max_batch() const {
  return std::min<size_t>(cfg.transport.max_message_size / 2, 512 * 1024);
}

void node::impl::on_control_reply(std::string_view endpoint,
                                  std::string_view body) {
  if (on_gossip_reply(endpoint, body))
    return;
  if (on_group_reply(endpoint, body))
    return;
  auto r = parse_reply(body);
  if (!r) {
    if (on_hello_reply(body))
      return;
    control_errors.fetch_add(1, std::memory_order_relaxed);
    log->warn("dropped a malformed replay reply: {}", message_of(r.error()));
    return;
  }
  deliver_reply(std::move(*r), endpoint);
}

std::string replay_reply_problem(const pending_replay& p,
                                 const replay_reply& r) {
  if (r.stream != p.stream)
    return fmt::format("it names stream '{}'", r.stream);
  if (!r.error.empty())
    return {};
  if (r.events.size() > p.max)
    return fmt::format("it holds {} events, more than the {} asked for",
                       r.events.size(), p.max);
  uint64_t last = 0;
  for (auto& ev : r.events) {
    if (ev.stream() != p.stream)
      return fmt::format("it holds an event of stream '{}' (seq {})",
                         ev.stream(), ev.seq());
    if (ev.seq() < p.from || ev.seq() <= last || ev.seq() >= r.next
        || ev.seq() > r.head)
      return fmt::format("its event seq {} is out of order or outside the "
                         "range asked for (from {}; the reply says next {}, "
                         "head {})",
                         ev.seq(), p.from, r.next, r.head);
    last = ev.seq();
  }
  return {};
}

void node::impl::deliver_reply(replay_reply r, std::string_view endpoint) {
  pending_replay p;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    auto it = pending.find(r.id);
    if (it == pending.end() || it->second.endpoint != endpoint) {
      // Answered after a retry replaced it, or by a peer not asked: a
      // reply is taken only from where its request went.
      if (it != pending.end())
        control_errors.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    p = std::move(it->second);
    pending.erase(it);
  }
  if (auto why = replay_reply_problem(p, r); !why.empty()) {
    // Not taken: the consumer asks again when its wait for it ends.
    control_errors.fetch_add(1, std::memory_order_relaxed);
    log->warn("refused the replay reply from {} for stream '{}' (from seq "
              "{}): {}; a reply must hold only the stream's events asked for",
              endpoint, p.stream, p.from, why);
    return;
  }
  caf::anon_send(p.to, replay_atom::value, std::move(r));
}

caf::expected<replay_reply> node::impl::parse_reply(std::string_view body) {
  auto answer = control::decode_reply<control::replay_reply>(body, limits);
  if (!answer)
    return std::move(answer.error());
  replay_reply r;
  if (auto* e = std::get_if<control::error_reply>(&*answer)) {
    r.id = e->id;
    r.stream = std::move(e->stream);
    r.error = std::move(e->error);
    return r;
  }
  auto& m = std::get<control::replay_reply>(*answer);
  r.id = m.id;
  r.stream = std::move(m.stream);
  r.head = m.head;
  r.first = m.first;
  r.next = m.next;
  r.type_heads = std::move(m.type_heads);
  r.start = m.start;
  // The events refer into the received bytes, moved, not copied.
  auto owner = std::make_shared<std::vector<uint8_t>>(std::move(m.events));
  std::string_view bytes{reinterpret_cast<const char*>(owner->data()),
                         owner->size()};
  size_t offset = 0;
  while (offset < bytes.size()) {
    auto ev = decode_next(bytes, offset, owner, limits);
    if (!ev)
      return std::move(ev.error());
    r.events.push_back(ev->as_redelivered());
  }
  return r;
}

// Sends a replay request for `req_stream` on behalf of `reply_to`.
uint64_t node::impl::request_replay(const std::string& req_stream,
                                    uint64_t from, size_t max,
                                    const std::vector<pattern>& patterns,
                                    std::optional<int64_t> since_us,
                                    const caf::actor& reply_to) {
  // On the wire a time is unsigned: one before the epoch is the epoch.
  std::optional<uint64_t> since;
  if (since_us)
    since = static_cast<uint64_t>(std::max<int64_t>(*since_us, 0));
  std::string endpoint;
  uint64_t id;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    if (req_stream != stream) {
      auto it = peer_control.find(req_stream);
      if (it == peer_control.end() || !pump)
        return 0;
      endpoint = it->second;
    }
    id = ++next_request;
    // The consumer's earlier request for the stream was given up.
    std::erase_if(pending, [&](const auto& kv) {
      return kv.second.stream == req_stream && kv.second.to == reply_to;
    });
    pending[id] = pending_replay{reply_to, req_stream, endpoint, from, max};
  }
  if (req_stream == stream) {
    // This node's own stream: read the log here.
    auto bytes = replay_reply_bytes(id, from, max, patterns, since);
    if (auto r = parse_reply(bytes))
      deliver_reply(std::move(*r), {});
    return id;
  }
  control::replay_request req;
  req.id = id;
  req.stream = req_stream;
  req.from = from;
  req.max = max;
  for (auto& pat : patterns)
    req.patterns.push_back(pat.text());
  req.since = since;
  pump->request(endpoint, control::encode(req));
  return id;
}

} // namespace herald
