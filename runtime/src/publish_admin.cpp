// The `publish` op of the control protocol: events appended on a running
// node's stream for a client (`herald publish --control`), acknowledged
// once durable, with re-sent requests recognised by their request id. See
// publish_admin.hpp for the design and its thread safety.

#include "publish_admin.hpp"

#include <algorithm>
#include <exception>
#include <functional>
#include <iterator>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "node_impl.hpp"

namespace herald {

namespace {

// What tells a re-send of a request from another request under the same
// id: its events, type and payload each.
size_t digest_of(const std::vector<control::publish_event>& events) {
  size_t h = events.size();
  auto mix = [&h](size_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  };
  for (auto& ev : events) {
    mix(std::hash<std::string>{}(ev.type));
    mix(std::hash<payload>{}(ev.data));
  }
  return h;
}

} // namespace

publish_admin::publish_admin(node::impl& owner) : node_(owner) {}

std::optional<std::string>
publish_admin::serve(const control::publish_request& r,
                     const transport::control_peer& from) {
  auto digest = digest_of(r.events);
  entry_list::iterator it;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    forget_old(clock::now());
    if (auto known = by_id_.find(r.request_id); known != by_id_.end()) {
      auto& e = *known->second;
      if (e.digest == digest && !e.done) {
        // The reply to the first one was lost, or is still coming: this
        // one gets the same, once durable.
        e.waiters.push_back({from, r.id});
        return std::nullopt;
      }
      if (e.digest == digest) {
        auto reply = e.reply;
        reply.id = r.id;
        return control::encode(reply);
      }
      // Refused below, outside the lock (refusing logs).
      it = entries_.end();
    } else {
      entry fresh;
      fresh.request_id = r.request_id;
      fresh.digest = digest;
      fresh.created = clock::now();
      it = entries_.insert(entries_.end(), std::move(fresh));
      by_id_.emplace(r.request_id, it);
      publishing_ = true;
    }
  }
  if (it == entries_.end())
    return node_.refuse(r.id, {},
                        fmt::format("publish request id '{}' was used before "
                                    "for other events; give every new "
                                    "request an id of its own and keep it "
                                    "only when re-sending that request",
                                    r.request_id));

  // Appended one by one, as the node's service, up to the first refusal.
  control::publish_reply reply;
  reply.request_id = r.request_id;
  uint64_t last = 0;
  for (size_t i = 0; i < r.events.size(); ++i) {
    auto& ev = r.events[i];
    auto receipt = [&]() -> caf::expected<publish_receipt> {
      try {
        // The pump thread runs this: it never waits for room in the log
        // (a full log refuses the event; the client retries later).
        publish_options no_wait;
        no_wait.max_wait = std::chrono::microseconds{0};
        return node_.front->bus().publish(ev.type, ev.data, no_wait);
      } catch (const std::exception& ex) {
        return make_error(
          errc::invalid_argument,
          fmt::format("cannot publish '{}': {}", ev.type, ex.what()));
      }
    }();
    if (!receipt) {
      reply.refused = i;
      reply.reason = message_of(receipt.error());
      break;
    }
    last = receipt->seq;
    reply.acks.push_back({std::move(receipt->id), node_.stream, last});
  }
  std::optional<uint64_t> refused = reply.refused;
  std::string reason = reply.reason;

  outgoing out;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    publishing_ = false;
    auto& e = *it;
    e.reply = std::move(reply);
    e.last_seq = last;
    // First in line: a repeat that came meanwhile cannot have, as the pump
    // serves one request at a time, but the order costs nothing.
    e.waiters.insert(e.waiters.begin(), {from, r.id});
    if (last == 0 || last <= handed_)
      finish(e, out);
    else
      waiting_.emplace(last, it);
    if (waiting_.empty())
      failures_.clear();
  }
  if (refused)
    node_.log->warn("publish request '{}': event {} of {} refused, {} "
                    "published: {}",
                    r.request_id, *refused, r.events.size(), *refused, reason);
  send(out);
  return std::nullopt;
}

void publish_admin::on_commit(uint64_t first, uint64_t last,
                              const caf::error& err) {
  outgoing out;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    handed_ = std::max(handed_, last);
    if (err && (publishing_ || !waiting_.empty()))
      failures_.push_back({first, last, message_of(err)});
    while (!waiting_.empty() && waiting_.begin()->first <= handed_) {
      finish(*waiting_.begin()->second, out);
      waiting_.erase(waiting_.begin());
    }
    if (waiting_.empty() && !publishing_)
      failures_.clear();
  }
  send(out);
}

size_t publish_admin::remembered() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return entries_.size();
}

// Makes `e`'s reply final (cut at the first event the log could not
// store) and queues it for everyone waiting. REQUIRES: mtx_ held.
void publish_admin::finish(entry& e, outgoing& out) {
  auto& acks = e.reply.acks;
  for (size_t i = 0; i < acks.size(); ++i) {
    auto lost =
      std::find_if(failures_.begin(), failures_.end(), [&](const failure& f) {
        return acks[i].seq >= f.first && acks[i].seq <= f.last;
      });
    if (lost == failures_.end())
      continue;
    e.reply.refused = i;
    e.reply.reason = fmt::format("event {} (seq {}) was not stored: {}", i,
                                 acks[i].seq, lost->why);
    acks.resize(i);
    break;
  }
  e.done = true;
  acks_ += acks.size();
  for (auto& w : e.waiters) {
    e.reply.id = w.id;
    out.emplace_back(std::move(w.peer), control::encode(e.reply));
  }
  e.reply.id = 0;
  e.waiters.clear();
}

// Forgets the oldest finished requests beyond the bounds. Requests in
// flight stay: they are few and end within a group commit. REQUIRES: mtx_
// held.
void publish_admin::forget_old(clock::time_point now) {
  while (!entries_.empty()) {
    auto& oldest = entries_.front();
    // `>=`: called before a new request is added.
    bool over = entries_.size() >= control::remembered_requests
                || acks_ > control::remembered_acks
                || now - oldest.created > control::remember_for;
    if (!over || !oldest.done)
      return;
    acks_ -= oldest.reply.acks.size();
    by_id_.erase(oldest.request_id);
    entries_.pop_front();
  }
}

// Queues the replies on the pump, in order. REQUIRES: mtx_ not held.
void publish_admin::send(outgoing& out) {
  for (auto& [peer, bytes] : out)
    node_.pump->reply(peer, std::move(bytes));
}

} // namespace herald
