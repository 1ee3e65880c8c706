// Stream heartbeats and the replay protocol: serving replay requests from
// this node's log, and asking other nodes' logs for what a consumer missed.

#include <limits>

#include <caf/send.hpp>
#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "node_impl.hpp"

namespace herald {

std::string node::impl::make_heartbeat() {
  payload hb;
  {
    std::lock_guard<std::mutex> guard{heads_mtx};
    hb = {{"stream", stream},
          {"head", sent_head},
          {"control", pump ? pump->control_endpoint() : std::string{}},
          {"types", sent_type_heads}};
  }
  // Local consumers hear their own node's heartbeat directly.
  broadcast_heartbeat(parse_heartbeat(hb));
  return encode_payload(hb);
}

stream_heartbeat node::impl::parse_heartbeat(const payload& j) {
  stream_heartbeat hb;
  hb.stream = j.at("stream").get<std::string>();
  hb.head = j.at("head").get<uint64_t>();
  hb.control = j.at("control").get<std::string>();
  for (auto& [type, head] : j.at("types").items())
    hb.types.emplace(type, head.get<uint64_t>());
  return hb;
}

void node::impl::broadcast_heartbeat(const stream_heartbeat& hb) {
  std::shared_lock<std::shared_mutex> guard{consumers_mtx};
  for (auto& c : consumers)
    caf::anon_send(c.actor, heartbeat_atom::value, hb);
}

void node::impl::on_heartbeat(std::string_view body) {
  auto j = decode_payload(body, limits);
  stream_heartbeat hb;
  try {
    if (!j)
      throw std::runtime_error(message_of(j.error()));
    hb = parse_heartbeat(*j);
  } catch (const std::exception& e) {
    control_errors.fetch_add(1, std::memory_order_relaxed);
    log->warn("dropped a malformed heartbeat: {}", e.what());
    return;
  }
  if (hb.stream == stream)
    return;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    peer_control[hb.stream] = hb.control;
  }
  broadcast_heartbeat(hb);
}

// Serves a replay request from this node's log. Never throws; a
// malformed request is counted and answered with an error.
std::string node::impl::on_control_request(std::string_view request) {
  uint64_t id = 0;
  std::string req_stream;
  auto fail = [&](std::string why) {
    control_errors.fetch_add(1, std::memory_order_relaxed);
    log->warn("control request refused: {}", why);
    return encode_payload(
      {{"id", id}, {"stream", req_stream}, {"error", std::move(why)}});
  };
  auto j = decode_payload(request, limits);
  if (!j)
    return fail("malformed request: " + message_of(j.error()));
  try {
    id = j->at("id").get<uint64_t>();
    req_stream = j->value("stream", std::string{});
    auto op = j->at("op").get<std::string>();
    if (op.starts_with("dlq."))
      return encode_payload(dlq_request(op, *j));
    if (op != "replay")
      return fail(fmt::format("unknown operation '{}'; expected replay, "
                              "dlq.list, dlq.show, dlq.redrive or "
                              "dlq.purge",
                              op));
    if (req_stream != stream)
      return fail(fmt::format("unknown stream '{}': this node's stream is "
                              "'{}'",
                              req_stream, stream));
    auto from = j->at("from").get<uint64_t>();
    auto max = std::min<uint64_t>(j->at("max").get<uint64_t>(), 4096);
    std::vector<pattern> patterns;
    for (auto& text : j->at("patterns")) {
      auto p = pattern::parse(text.get<std::string>());
      if (!p)
        return fail(message_of(p.error()));
      patterns.push_back(std::move(*p));
    }
    return replay_reply_bytes(id, from, max, patterns);
  } catch (const std::exception& e) {
    return fail(fmt::format("malformed request: {}", e.what()));
  }
}

std::string
node::impl::replay_reply_bytes(uint64_t id, uint64_t from, uint64_t max,
                               const std::vector<pattern>& patterns) {
  std::shared_lock<std::shared_mutex> guard{store_mtx};
  if (!log_store)
    return encode_payload(
      {{"id", id}, {"stream", stream}, {"error", "the node is stopping"}});
  // Heads first, then the read: the heads never count an event the read
  // could not see.
  auto heads = log_store->type_heads();
  auto r = log_store->read(from, std::numeric_limits<uint64_t>::max(), max,
                           transport_max_batch(), [&](std::string_view type) {
                             return any_matches(patterns, type);
                           });
  if (!r)
    return encode_payload(
      {{"id", id}, {"stream", stream}, {"error", message_of(r.error())}});
  std::vector<uint8_t> events;
  for (auto& ev : r->events)
    events.insert(events.end(), ev.envelope.begin(), ev.envelope.end());
  payload reply{{"id", id},
                {"stream", stream},
                {"head", r->head},
                {"first", r->first},
                {"next", r->next},
                {"type_heads", heads},
                {"events", payload::binary(std::move(events))}};
  return encode_payload(reply);
}

size_t node::impl::transport_max_batch() const {
  return std::min<size_t>(cfg.transport.max_message_size / 2, 512 * 1024);
}

void node::impl::on_control_reply(std::string_view, std::string_view body) {
  auto r = parse_reply(body);
  if (!r) {
    control_errors.fetch_add(1, std::memory_order_relaxed);
    log->warn("dropped a malformed replay reply: {}", message_of(r.error()));
    return;
  }
  deliver_reply(std::move(*r));
}

void node::impl::deliver_reply(replay_reply r) {
  caf::actor to;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    auto it = pending.find(r.id);
    if (it == pending.end())
      return; // answered after a retry replaced it
    to = it->second;
    pending.erase(it);
  }
  caf::anon_send(to, replay_atom::value, std::move(r));
}

caf::expected<replay_reply> node::impl::parse_reply(std::string_view body) {
  auto j = decode_payload(body, limits);
  if (!j)
    return std::move(j.error());
  replay_reply r;
  try {
    r.id = j->at("id").get<uint64_t>();
    r.stream = j->at("stream").get<std::string>();
    if (auto e = j->find("error"); e != j->end()) {
      r.error = e->get<std::string>();
      return r;
    }
    r.head = j->at("head").get<uint64_t>();
    r.first = j->at("first").get<uint64_t>();
    r.next = j->at("next").get<uint64_t>();
    for (auto& [type, head] : j->at("type_heads").items())
      r.type_heads.emplace(type, head.get<uint64_t>());
    // The events refer into the received bytes, moved, not copied.
    auto owner = std::make_shared<std::vector<uint8_t>>(
      std::move(j->at("events").get_binary()));
    std::string_view bytes{reinterpret_cast<const char*>(owner->data()),
                           owner->size()};
    size_t offset = 0;
    while (offset < bytes.size()) {
      auto ev = decode_next(bytes, offset, owner, limits);
      if (!ev)
        return std::move(ev.error());
      r.events.push_back(ev->as_redelivered());
    }
  } catch (const std::exception& e) {
    return make_error(errc::decode_error,
                      fmt::format("malformed replay reply: {}", e.what()));
  }
  return r;
}

// Sends a replay request for `req_stream` on behalf of `reply_to`.
uint64_t node::impl::request_replay(const std::string& req_stream,
                                    uint64_t from, size_t max,
                                    const std::vector<pattern>& patterns,
                                    const caf::actor& reply_to) {
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
    pending[id] = reply_to;
  }
  if (req_stream == stream) {
    // This node's own stream: read the log here.
    auto bytes = replay_reply_bytes(id, from, max, patterns);
    if (auto r = parse_reply(bytes))
      deliver_reply(std::move(*r));
    return id;
  }
  std::vector<std::string> texts;
  for (auto& pat : patterns)
    texts.push_back(pat.text());
  payload req{{"op", "replay"}, {"id", id},   {"stream", req_stream},
              {"from", from},   {"max", max}, {"patterns", texts}};
  pump->request(endpoint, encode_payload(req));
  return id;
}

} // namespace herald
