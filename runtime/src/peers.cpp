// What a node knows of its peers beyond their events: whether they agree
// on the frame limit (`transport.max_message_size`, carried by heartbeats
// and the `hello` handshake), whether their heartbeats stopped, and the
// connections that ended. All of it shows in /healthz and /metrics.
//
// One PUB frame goes to every subscriber, and libzmq drops a connection
// that carries a frame over its ZMQ_MAXMSGSIZE without reconnecting, so the
// limit is one value every node shares; a peer with another one is refused
// on both sides, loudly, instead of being cut off in silence.

#include <algorithm>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "node_impl.hpp"

namespace herald {

namespace {

// How often a refused peer is told again (its own health shows the
// mismatch for as long as it hears of it).
constexpr auto hello_again = std::chrono::seconds{5};

// How long a peer's hello naming another limit shows in health after the
// last one: the peer stops sending them once fixed or gone.
constexpr auto hello_mismatch_shown = std::chrono::seconds{15};

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string describe(std::string_view stream, std::string_view pub) {
  return pub.empty() ? fmt::format("peer stream {}", stream)
                     : fmt::format("peer stream {} ({})", stream, pub);
}

} // namespace

// Heartbeats stop counting as alive after ten periods, and never sooner
// than 2 s: a busy pump may send one late.
std::chrono::steady_clock::duration node::impl::silence_after() const {
  return std::max<std::chrono::steady_clock::duration>(
    cfg.transport.stream_heartbeat * 10, std::chrono::seconds{2});
}

// Records a peer's heartbeat; returns whether its stream is taken (false
// while its limit differs from this node's). Sends the peer a `hello`
// when it is new, and every 5 s while refused.
bool node::impl::note_heartbeat(const control::heartbeat& hb) {
  auto mine = cfg.transport.max_message_size;
  auto differs = hb.max_message_size != 0 && hb.max_message_size != mine;
  auto now = std::chrono::steady_clock::now();
  bool refused_now = false;
  bool agreed_now = false;
  bool resumed = false;
  uint64_t hello_id = 0;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    if (peer_streams.size() >= cfg.transport.max_peer_streams
        && !peer_streams.contains(hb.stream)) {
      // Each stream tracked costs memory, and its control endpoint a
      // socket: a peer naming ever new streams is not followed.
      peer_streams_refused.fetch_add(1, std::memory_order_relaxed);
      if (!peer_streams_logged.exchange(true))
        log->error("ignored a heartbeat of {}: this node tracks {} peer "
                   "streams already (transport.max_peer_streams); raise it "
                   "if the deployment has that many producers, else a peer "
                   "names streams it does not run (further ones are "
                   "counted in herald_peer_streams_refused_total, not "
                   "logged)",
                   describe(hb.stream, hb.pub), peer_streams.size());
      return false;
    }
    auto [it, fresh] = peer_streams.try_emplace(hb.stream);
    auto& peer = it->second;
    if (!hb.pub.empty() && peer.pub != hb.pub) {
      // A wiped node is a new stream on the same endpoint: the old one is
      // gone, not silent.
      for (auto old = peer_streams.begin(); old != peer_streams.end();)
        if (old != it && old->second.pub == hb.pub) {
          if (old->second.refused)
            refused_streams.fetch_sub(1, std::memory_order_relaxed);
          peer_control.erase(old->first);
          old = peer_streams.erase(old);
        } else {
          ++old;
        }
      peer.pub = hb.pub;
    }
    resumed = peer.silent;
    peer.silent = false;
    peer.last_heartbeat = now;
    peer.max_message_size = hb.max_message_size;
    if (differs != peer.refused) {
      peer.refused = differs;
      refused_now = differs;
      agreed_now = !differs;
      if (differs)
        refused_streams.fetch_add(1, std::memory_order_relaxed);
      else
        refused_streams.fetch_sub(1, std::memory_order_relaxed);
    }
    if (differs)
      peer_control.erase(hb.stream);
    else
      peer_control[hb.stream] = hb.control;
    if ((fresh || refused_now
         || (differs && now - peer.last_hello >= hello_again))
        && !hb.control.empty() && pump) {
      peer.last_hello = now;
      hello_id = ++next_request;
    }
  }
  auto who = describe(hb.stream, hb.pub);
  if (resumed)
    log->info("{}: heartbeats resumed", who);
  if (refused_now) {
    limit_mismatches.fetch_add(1, std::memory_order_relaxed);
    log->error("{} has transport.max_message_size {}, this node's is {}: its "
               "frames may not fit this node's, or this node's its; its "
               "events are not taken until both agree. Set "
               "transport.max_message_size to one value on every node",
               who, hb.max_message_size, mine);
  }
  if (agreed_now)
    log->info("{} now has transport.max_message_size {} like this node: its "
              "events are taken again",
              who, hb.max_message_size);
  if (hello_id != 0) {
    control::hello_request hello;
    hello.id = hello_id;
    hello.stream = stream;
    hello.max_message_size = mine;
    pump->request(hb.control, control::encode(hello));
  }
  return !differs;
}

// A peer met this node: compares its limit, and answers with this node's.
std::string node::impl::serve(const control::hello_request& r) {
  auto mine = cfg.transport.max_message_size;
  bool reported = false;
  bool cleared = false;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    if (r.max_message_size != mine) {
      auto [it, fresh] = hello_mismatches.try_emplace(r.stream);
      reported = fresh || it->second.max_message_size != r.max_message_size;
      it->second = {r.max_message_size, std::chrono::steady_clock::now()};
    } else {
      cleared = hello_mismatches.erase(r.stream) > 0;
    }
  }
  if (reported) {
    limit_mismatches.fetch_add(1, std::memory_order_relaxed);
    log->error("peer stream {} has transport.max_message_size {}, this node's "
               "is {}: frames this node sends may not fit it, and it takes "
               "none of this node's events until both agree. Set "
               "transport.max_message_size to one value on every node",
               r.stream, r.max_message_size, mine);
  }
  if (cleared)
    log->info("peer stream {} now has transport.max_message_size {} like this "
              "node",
              r.stream, mine);
  control::hello_reply reply;
  reply.id = r.id;
  reply.stream = stream;
  reply.max_message_size = mine;
  return control::encode(reply);
}

// Takes the reply to a `hello` this node sent; returns whether `body` was
// one. The peer's heartbeat told this node its limit already.
bool node::impl::on_hello_reply(std::string_view body) {
  auto answer = control::decode_reply<control::hello_reply>(body, limits);
  return answer && std::holds_alternative<control::hello_reply>(*answer);
}

// Removes from `batch` the events of refused streams.
void node::impl::drop_refused(event_batch& batch) {
  std::lock_guard<std::mutex> guard{peers_mtx};
  std::erase_if(batch, [&](const event& ev) {
    auto it = peer_streams.find(ev.stream());
    return it != peer_streams.end() && it->second.refused;
  });
}

// Keeps of `batch`, events that came on the connection to `from`, those of
// the stream that connection carries: a member's own (membership says
// which), or the stream a static peer claimed first (`claim_static`). A
// peer cannot inject another stream's events.
void node::impl::drop_foreign(event_batch& batch, std::string_view from) {
  if (batch.empty())
    return;
  std::string carried;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    if (auto m = member_pubs.find(from); m != member_pubs.end())
      carried = m->second.stream;
    else if (auto s = static_streams.find(from); s != static_streams.end())
      carried = s->second;
    else if (claim_static(from, batch.front().stream()))
      carried = batch.front().stream();
  }
  std::string foreign;
  auto before = batch.size();
  std::erase_if(batch, [&](const event& ev) {
    if (ev.stream() == carried)
      return false;
    if (foreign.empty())
      foreign = ev.stream();
    return true;
  });
  if (auto n = before - batch.size(); n > 0) {
    foreign_refused.fetch_add(n - 1, std::memory_order_relaxed);
    refuse_foreign(from, foreign, carried, fmt::format("{} event(s)", n));
  }
}

// Counts one event or heartbeat of `stream` refused from the connection to
// `from`, which carries `carried` (empty: none known yet); logs each
// (connection, stream) once.
void node::impl::refuse_foreign(std::string_view from, std::string_view stream,
                                std::string_view carried,
                                std::string_view what) {
  foreign_refused.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    if (foreign_logged.size() >= 1024
        || !foreign_logged.emplace(std::string{from}, std::string{stream})
              .second)
      return;
  }
  log->warn("refused {} of stream {} from the connection to {}: {}; a peer "
            "sends only its own stream's events and heartbeats (further ones "
            "from there are counted in herald_foreign_refused_total, not "
            "logged)",
            what, stream, from,
            carried.empty()
              ? std::string{"another peer owns that stream"}
              : fmt::format("that connection carries stream {}", carried));
}

// Logs peers whose heartbeats stopped, once each until they resume.
// Called with every heartbeat this node makes.
void node::impl::check_peers() {
  auto now = std::chrono::steady_clock::now();
  std::vector<std::string> newly_silent;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    for (auto& [id, peer] : peer_streams)
      if (!peer.silent && now - peer.last_heartbeat > silence_after()) {
        peer.silent = true;
        newly_silent.push_back(describe(id, peer.pub));
      }
  }
  for (auto& who : newly_silent)
    log->warn("{}: no heartbeat for {:.1f} s; its events stopped arriving "
              "(the connection is watched and recreated)",
              who, seconds(silence_after()));
}

// What is wrong with this node's peers, one reason each; empty when
// nothing is.
std::vector<std::string> node::impl::peer_problems() {
  auto now = std::chrono::steady_clock::now();
  auto mine = cfg.transport.max_message_size;
  std::vector<std::string> out;
  std::lock_guard<std::mutex> guard{peers_mtx};
  for (auto& [id, peer] : peer_streams) {
    auto who = describe(id, peer.pub);
    // A silent peer is a reason of each consumer that reads its stream
    // (status.cpp), not one of the node.
    if (peer.refused)
      out.push_back(fmt::format("{} has transport.max_message_size {}, this "
                                "node's is {}; its events are not taken",
                                who, peer.max_message_size, mine));
  }
  for (auto it = hello_mismatches.begin(); it != hello_mismatches.end();) {
    if (now - it->second.last > hello_mismatch_shown) {
      it = hello_mismatches.erase(it);
      continue;
    }
    out.push_back(fmt::format("peer stream {} has transport.max_message_size "
                              "{}, this node's is {}; it takes none of this "
                              "node's events",
                              it->first, it->second.max_message_size, mine));
    ++it;
  }
  return out;
}

// Forgets the peer stream `id`: its heartbeats' record and its control
// endpoint, whose DEALER is closed unless another stream uses it. A stream
// whose connection now carries another one is gone, not silent.
// REQUIRES: peers_mtx held.
void node::impl::forget_peer_stream(const std::string& id) {
  if (auto ps = peer_streams.find(id); ps != peer_streams.end()) {
    if (ps->second.refused)
      refused_streams.fetch_sub(1, std::memory_order_relaxed);
    peer_streams.erase(ps);
  }
  auto pc = peer_control.find(id);
  if (pc == peer_control.end())
    return;
  auto endpoint = std::move(pc->second);
  peer_control.erase(pc);
  for (auto& [other, ep] : peer_control)
    if (ep == endpoint)
      return;
  for (auto& [pub, m] : member_pubs)
    if (m.control == endpoint)
      return;
  if (pump && !endpoint.empty())
    pump->close_control(std::move(endpoint));
}

void node::impl::on_control_closed(std::string_view endpoint,
                                   std::string_view why) {
  if (why.find("max_control_sockets") != std::string_view::npos
      && !control_evicted_logged.exchange(true)) {
    log->error("closed the control connection to {}: {}; raise "
               "transport.max_control_sockets if this node talks to that "
               "many nodes at once (further ones are counted in "
               "herald_control_sockets_evicted_total, not logged)",
               endpoint, why);
    return;
  }
  log->debug("closed the control connection to {}: {}", endpoint, why);
}

void node::impl::on_disconnect(const transport::peer_event& e) {
  if (e.reconnect_in.count() == 0) {
    // A peer's connection to this node: the peer reconnects.
    inbound_disconnects.fetch_add(1, std::memory_order_relaxed);
    // Every CLI call ends this way: counted, and logged at debug only.
    log->debug("a peer's connection to this node's {} socket at {}: {}",
               e.socket, e.endpoint, e.what);
    return;
  }
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    ++peer_disconnects[std::string{e.endpoint}];
  }
  log->warn("peer {}: the {} connection {}; reconnecting in {} ms", e.endpoint,
            e.socket, e.what, e.reconnect_in.count());
}

} // namespace herald
