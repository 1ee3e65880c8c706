// The node's side of cluster membership (membership.hpp): what it
// announces of itself, gossip in and out through the pump, and the wiring
// that follows membership: per member that produces a type a local
// consumer selects, a SUB socket to its PUB endpoint and its control
// endpoint for replays, both dropped when it is down or leaves.

#include <algorithm>
#include <set>
#include <utility>

#include <caf/send.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "herald/core/errc.hpp"
#include "history.hpp"
#include "membership.hpp"
#include "node_impl.hpp"

namespace herald {

using metrics::metric_type;

namespace {

using steady_clock = std::chrono::steady_clock;

// `tcp://HOST:PORT` split at its last ':'.
std::pair<std::string_view, std::string_view> host_port(std::string_view ep) {
  auto scheme = ep.find("://");
  auto start = scheme == std::string_view::npos ? 0 : scheme + 3;
  auto colon = ep.rfind(':');
  if (colon == std::string_view::npos || colon < start)
    return {ep.substr(start), {}};
  return {ep.substr(start, colon - start), ep.substr(colon + 1)};
}

bool wildcard_host(std::string_view host) {
  return host == "*" || host == "0.0.0.0" || host == "[::]" || host == "::";
}

// The endpoint peers reach a socket bound at `bound` on: a wildcard host
// is replaced with the host of `advertised` (the PUB endpoint peers use).
std::string announced(const std::string& bound, const std::string& advertised) {
  auto [host, port] = host_port(bound);
  if (!wildcard_host(host))
    return bound;
  auto their_host = host_port(advertised).first;
  if (wildcard_host(their_host) || their_host.empty())
    return bound;
  return fmt::format("tcp://{}:{}", their_host, port);
}

cluster::membership_config membership_config_of(const cluster_config& c) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  cluster::membership_config out;
  out.name = c.name;
  out.seeds = c.seeds;
  out.probe_interval = duration_cast<milliseconds>(c.probe_interval);
  out.suspect_after = duration_cast<milliseconds>(c.suspect_after);
  out.down_after = duration_cast<milliseconds>(c.down_after);
  out.sync_interval = duration_cast<milliseconds>(c.sync_interval);
  out.reconnect_window = duration_cast<milliseconds>(c.reconnect_window);
  return out;
}

bool live(control::member_status s) {
  return s == control::member_status::joining || s == control::member_status::up
         || s == control::member_status::suspect;
}

} // namespace

// What this node announces of itself. Takes consumers_mtx (shared): never
// called with members_mtx held.
control::cluster_member node::impl::self_record() {
  control::cluster_member m;
  m.name = cfg.name;
  m.stream = stream;
  m.incarnation = incarnation;
  m.service = cfg.service;
  m.pub = cfg.advertise.empty() ? pump->endpoint() : cfg.advertise;
  m.control = announced(pump->control_endpoint(), m.pub);
  if (http) {
    auto host = cfg.metrics_listen.substr(0, cfg.metrics_listen.rfind(':'));
    if (wildcard_host(host) || host.empty())
      host = std::string{host_port(m.pub).first};
    m.metrics = fmt::format("http://{}:{}", host, http->port());
  }
  for (auto& spec : cat.events())
    if (spec.builtin || spec.producer == cfg.service)
      m.produces.push_back(spec.name);
  std::shared_lock<std::shared_mutex> guard{consumers_mtx};
  for (auto& c : consumers) {
    if (c.name == observer_name)
      continue;
    m.consumers.push_back({c.name, pattern_texts(c)});
  }
  return m;
}

caf::error start_membership(node::impl& p) {
  auto self = p.self_record();
  auto* raw = &p;
  auto persist = [raw](uint64_t n) {
    if (auto done = raise_incarnation(raw->cfg.data_dir, n); !done)
      raw->log->error("cannot keep the incarnation {} in the data dir: {}; a "
                      "restart may announce a lower one, which members "
                      "ignore until it is raised again",
                      n, message_of(done.error()));
  };
  auto log = [raw](int level, std::string_view text) {
    raw->log->log(static_cast<spdlog::level::level_enum>(level), "{}", text);
  };
  {
    std::lock_guard<std::mutex> guard{p.members_mtx};
    p.membership = std::make_unique<cluster::membership>(
      membership_config_of(p.cfg.cluster), std::move(self), persist, log);
  }
  // The pump's thread runs already: it uses the membership from now on.
  p.membership_ready.store(true, std::memory_order_release);
  return {};
}

// Gossip and wiring, every pump tick.
void node::impl::on_tick(steady_clock::time_point now) {
  if (!has_membership() || left.load())
    return;
  std::optional<control::cluster_member> self;
  if (self_changed.exchange(false))
    self = self_record();
  std::vector<cluster::outgoing> out;
  std::vector<cluster::member_change> changes;
  {
    std::lock_guard<std::mutex> guard{members_mtx};
    if (self)
      membership->update_self(std::move(*self));
    membership->tick(now, out);
    changes = membership->take_changes();
  }
  for (auto& o : out)
    pump->request(std::move(o.endpoint), std::move(o.body));
  if (self)
    rewire_all();
  else
    rewire(changes);
  feed_group_members(now);
}

// Tells each local durable consumer the live members of its group: the
// members running a consumer of its name that are joining, up or suspect,
// or leaving for less than `groups.rejoin_grace` (a rolling restart keeps
// their partitions assigned); down members at once out; this node always
// in. Sent when it differs from the last sent; run at every tick, so a
// grace ends on time.
void node::impl::feed_group_members(steady_clock::time_point now) {
  std::vector<control::cluster_member> records;
  {
    std::lock_guard<std::mutex> guard{members_mtx};
    for (auto& [name, km] : membership->members())
      records.push_back(km.record);
  }
  std::lock_guard<std::mutex> feed_guard{group_feed_mtx};
  if (!groups_view)
    groups_view.emplace(cfg.name, cfg.groups.rejoin_grace);
  groups_view->observe(records, now);
  std::shared_lock<std::shared_mutex> guard{consumers_mtx};
  for (auto& c : consumers) {
    if (c.name == observer_name)
      continue;
    auto members = groups_view->members(c.name);
    auto& last = group_members_sent[c.name];
    if (last == members)
      continue;
    last = members;
    caf::anon_send(c.actor, group_members_atom::value, std::move(members));
  }
}

std::string node::impl::serve_gossip(const control::request& req) {
  if (!has_membership())
    return refuse(control::message_id(control::encode(req), limits), {},
                  "this node runs no membership yet");
  std::string reply;
  std::vector<cluster::member_change> changes;
  {
    std::lock_guard<std::mutex> guard{members_mtx};
    reply = membership->serve(req, steady_clock::now());
    changes = membership->take_changes();
  }
  rewire(changes);
  return reply;
}

std::string node::impl::serve(const control::gossip_sync_request& r) {
  return serve_gossip(r);
}

std::string node::impl::serve(const control::gossip_ping& r) {
  return serve_gossip(r);
}

std::string node::impl::serve(const control::gossip_probe& r) {
  return serve_gossip(r);
}

std::string node::impl::serve(const control::members_request& r) {
  control::members_reply reply;
  if (has_membership()) {
    std::lock_guard<std::mutex> guard{members_mtx};
    reply = membership->view(steady_clock::now());
  }
  reply.id = r.id;
  return control::encode(reply);
}

// Takes a reply whose id is membership's; returns whether it was one.
bool node::impl::on_gossip_reply(std::string_view endpoint,
                                 std::string_view body) {
  if ((control::message_id(body, limits) & control::gossip_id_bit) == 0)
    return false;
  if (!has_membership())
    return true;
  std::vector<cluster::member_change> changes;
  {
    std::lock_guard<std::mutex> guard{members_mtx};
    membership->on_reply(endpoint, body, steady_clock::now());
    changes = membership->take_changes();
  }
  rewire(changes);
  return true;
}

// Whether this node's consumers select a type `m` produces.
bool node::impl::selects_from(const control::cluster_member& m) const {
  std::shared_lock<std::shared_mutex> guard{consumers_mtx};
  for (auto& type : m.produces)
    if (selected_locally(type))
      return true;
  return false;
}

void node::impl::rewire(const std::vector<cluster::member_change>& changes) {
  for (auto& c : changes) {
    if (c.now.name == cfg.name)
      continue;
    wire(c.now);
  }
}

void node::impl::rewire_all() {
  std::vector<control::cluster_member> all;
  {
    std::lock_guard<std::mutex> guard{members_mtx};
    for (auto& [name, km] : membership->members())
      if (name != cfg.name)
        all.push_back(km.record);
  }
  for (auto& m : all)
    wire(m);
}

// Connects to `m` or drops the connections to it, as its status and the
// local consumers' selection say. Idempotent.
void node::impl::wire(const control::cluster_member& m) {
  bool want = live(m.status) && !m.pub.empty() && selects_from(m);
  std::optional<wired_member> drop;
  bool connect = false;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    auto it = wired.find(m.name);
    bool same = it != wired.end() && it->second.pub == m.pub
                && it->second.control == m.control
                && it->second.stream == m.stream;
    if (it != wired.end() && !(want && same)) {
      drop = it->second;
      member_pubs.erase(it->second.pub);
      if (auto pc = peer_control.find(it->second.stream);
          pc != peer_control.end() && pc->second == it->second.control)
        peer_control.erase(pc);
      wired.erase(it);
    }
    if (want && !same) {
      wired[m.name] = {m.pub, m.control, m.stream};
      member_pubs[m.pub] = {m.stream, m.control};
      peer_control[m.stream] = m.control;
      connect = true;
    }
  }
  if (drop && m.status == control::member_status::leaving) {
    // It stopped on purpose: its heartbeats are not missed.
    std::lock_guard<std::mutex> guard{peers_mtx};
    if (auto ps = peer_streams.find(drop->stream); ps != peer_streams.end()) {
      if (ps->second.refused)
        refused_streams.fetch_sub(1, std::memory_order_relaxed);
      peer_streams.erase(ps);
    }
  }
  if (drop) {
    pump->disconnect_peer(drop->pub);
    pump->close_control(drop->control);
    log->info("member {}: closed the connections to {} and {} (its stream "
              "{} keeps its positions and is caught up from its log when it "
              "returns)",
              m.name, drop->pub, drop->control, drop->stream);
  }
  if (connect) {
    pump->connect_peer(m.pub);
    log->info("member {}: subscribed to its events at {}, replays from {}",
              m.name, m.pub, m.control);
  }
}

// A heartbeat read on the connection to a member: it must name the
// member's stream, and replays go to the control endpoint membership
// gives, never to one a heartbeat names. Returns whether to take it.
// A static peer (config `peers`): its connection carries the stream its
// heartbeats name (or, before the first, its first event's), unless that
// is a member's stream or another static peer's: the first to claim a
// stream keeps it. REQUIRES: peers_mtx held.
bool node::impl::claim_static(std::string_view from, std::string_view stream) {
  for (auto& [pub, m] : member_pubs)
    if (m.stream == stream)
      return false;
  for (auto& [pub, s] : static_streams)
    if (pub != from && s == stream)
      return false;
  if (auto s = static_streams.find(from); s != static_streams.end()) {
    // The connection carries another stream now (a wiped peer, or one
    // naming ever new streams): the one before is forgotten, so a peer
    // holds one stream and one control endpoint here at a time.
    if (s->second != stream) {
      auto before = std::exchange(s->second, std::string{stream});
      forget_peer_stream(before);
    }
  } else
    static_streams.emplace(std::string{from}, std::string{stream});
  return true;
}

bool node::impl::from_member(control::heartbeat& hb, std::string_view from) {
  std::string owner;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    auto it = member_pubs.find(from);
    if (it != member_pubs.end() && it->second.stream == hb.stream) {
      hb.control = it->second.control;
      return true;
    }
    if (it == member_pubs.end()) {
      if (claim_static(from, hb.stream))
        return true;
    } else {
      owner = it->second.stream;
    }
  }
  control_errors.fetch_add(1, std::memory_order_relaxed);
  refuse_foreign(from, hb.stream, owner, "heartbeat");
  return false;
}

// Tells the members this node leaves, once. Called first by shutdown: the
// pump sends it while the actors stop.
void node::impl::leave_cluster() {
  if (!has_membership() || !pump || left.exchange(true))
    return;
  std::vector<cluster::outgoing> out;
  {
    std::lock_guard<std::mutex> guard{members_mtx};
    membership->leave(steady_clock::now(), out);
  }
  for (auto& o : out)
    pump->request(std::move(o.endpoint), std::move(o.body));
  if (!out.empty())
    log->info("leaving the cluster: told {} member(s)", out.size());
}

// Why this node is not a member of its cluster yet (its seeds did not let
// it join, and nobody joined through it); nothing once it is.
std::optional<std::string> node::impl::join_problem() {
  if (!has_membership())
    return std::nullopt;
  std::lock_guard<std::mutex> guard{members_mtx};
  if (membership->joined())
    return std::nullopt;
  return fmt::format("not a member of cluster '{}' yet: no seed let this node "
                     "join (seeds: {}); it receives nothing from other nodes "
                     "but static peers. Check that a seed runs and has the "
                     "same cluster.name (the log says why each try failed)",
                     cfg.cluster.name, fmt::join(cfg.cluster.seeds, ", "));
}

// Per stream of a known member (but this node): why its producer is not
// there now, or empty when it is up. Static peers' streams are absent.
std::map<std::string, std::string, std::less<>> node::impl::owner_problems() {
  std::map<std::string, std::string, std::less<>> out;
  if (!has_membership())
    return out;
  auto now = steady_clock::now();
  std::lock_guard<std::mutex> guard{members_mtx};
  for (auto& [name, km] : membership->members()) {
    if (name == cfg.name)
      continue;
    auto s = km.record.status;
    auto& why = out[km.record.stream];
    // A member that left on purpose degrades nothing.
    if (s != control::member_status::suspect
        && s != control::member_status::down)
      continue;
    auto heard = km.last_heard ? fmt::format(
                   "last heard {:.1f}s ago",
                   std::chrono::duration<double>(now - *km.last_heard).count())
                               : std::string{"never heard directly"};
    why = fmt::format("stream {}: its producer, member {}, is {} ({}); its "
                      "events wait in its log until it is back",
                      km.record.stream, name, control::to_string(s), heard);
  }
  return out;
}

void node::impl::write_cluster_metrics(metrics::text_writer& w) {
  if (!has_membership())
    return;
  std::map<control::member_status, size_t> counts;
  uint64_t changes = 0;
  uint64_t refused = 0;
  {
    std::lock_guard<std::mutex> guard{members_mtx};
    counts = membership->counts();
    changes = membership->changes_total();
    refused = membership->claims_refused_total();
  }
  auto& members_f =
    w.family("herald_cluster_members",
             "Members of the cluster as this node sees them, by status.",
             metric_type::gauge);
  for (auto s : {control::member_status::joining, control::member_status::up,
                 control::member_status::suspect, control::member_status::down,
                 control::member_status::leaving}) {
    auto it = counts.find(s);
    members_f.sample({{"status", std::string{control::to_string(s)}}},
                     it == counts.end() ? size_t{0} : it->second);
  }
  w.counter("herald_membership_changes_total",
            "Changes of members' status or record this node saw.", {}, changes);
  w.counter("herald_member_claims_refused_total",
            "Member records refused: a name or stream held by another live "
            "member, or a live member's endpoints heard second-hand.",
            {}, refused);
}

} // namespace herald
