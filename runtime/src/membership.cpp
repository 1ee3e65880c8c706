#include "membership.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <set>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "herald/core/errc.hpp"

namespace herald::cluster {

using control::cluster_member;
using control::member_status;
using namespace std::chrono_literals;

namespace {

// spdlog's level numbers, which the node's `log` maps back.
constexpr int log_debug = 1;
constexpr int log_info = 2;
constexpr int log_warn = 3;

// Indirect probes sent about one silent member.
constexpr size_t probe_helpers = 3;

// The join backoff: first delay, and its cap.
constexpr std::chrono::milliseconds join_backoff_first{500};
constexpr std::chrono::milliseconds join_backoff_max{10'000};

// Precedence of statuses at one incarnation (SWIM 4.2): `joining` = `up`.
int rank(member_status s) noexcept {
  switch (s) {
  case member_status::joining:
  case member_status::up:
    return 0;
  case member_status::suspect:
    return 1;
  case member_status::down:
    return 2;
  case member_status::leaving:
    return 3;
  }
  return 0;
}

// Down or leaving: not pinged every probe, no connections.
bool gone(member_status s) noexcept {
  return s == member_status::down || s == member_status::leaving;
}

double seconds(clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

uint64_t millis(clock::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms < 0 ? 0 : static_cast<uint64_t>(ms);
}

// What a request this node sent asked.
enum class asked { join, sync, ping, probe };

struct pending_request {
  std::string endpoint;
  asked what = asked::ping;
  // The member the request went to (empty for a seed not known yet).
  std::string to;
  // The member it is about: the one pinged or synced, or asked about.
  std::string about;
  clock::time_point expires;
};

// What failure detection and dissemination keep per member.
struct peer {
  // Last evidence it is alive: heard directly, or through a probe, or when
  // first learned (or last revived).
  clock::time_point evidence;
  // When the indirect probes of the current silence were sent.
  std::optional<clock::time_point> probed;
  // Probes of that round not answered or expired yet.
  size_t probes_out = 0;
  // When it was last pinged.
  std::optional<clock::time_point> pinged;
  // Messages its record is still piggybacked on.
  int retransmit = 0;
};

enum class merged { applied, ignored, refused };

} // namespace

bool overrides(const cluster_member& incoming,
               const cluster_member& known) noexcept {
  if (incoming.incarnation != known.incarnation)
    return incoming.incarnation > known.incarnation;
  return rank(incoming.status) > rank(known.status);
}

struct membership::state {
  membership_config cfg;
  std::function<void(uint64_t)> persist;
  std::function<void(int, std::string_view)> log;
  std::string self_name;
  std::map<std::string, known_member, std::less<>> members;
  std::map<std::string, peer, std::less<>> peers;
  std::map<uint64_t, pending_request> pending;
  uint64_t next_id = 0;

  // Joining.
  std::vector<std::string> seeds;
  bool joined = false;
  bool join_in_flight = false;
  size_t seed_next = 0;
  std::optional<clock::time_point> join_at;
  clock::duration join_backoff = join_backoff_first;

  std::optional<clock::time_point> last_tick;
  std::optional<clock::time_point> last_probe;
  std::optional<clock::time_point> last_sync;
  uint64_t syncs = 0;

  std::vector<member_change> changes;
  uint64_t changes_total = 0;
  // Records refused (a name or stream held by another live member) and
  // endpoints not taken second-hand.
  uint64_t claims_refused = 0;
  // Refusals logged, once per (name, stream) or (name, endpoints) each.
  std::set<std::string, std::less<>> refused_logged;
  std::minstd_rand rng;

  // --- small things ---------------------------------------------------------

  void say(int level, std::string_view text) const {
    if (log)
      log(level, text);
  }

  cluster_member& me() {
    return members.at(self_name).record;
  }

  clock::duration request_timeout() const {
    return std::max<clock::duration>(2 * cfg.probe_interval, 200ms);
  }

  // SWIM's retransmit count: 4 × ⌈log2(members + 1)⌉ + 1 messages.
  int retransmit_budget() const {
    auto n = static_cast<double>(members.size()) + 1;
    return 4 * static_cast<int>(std::ceil(std::log2(n))) + 1;
  }

  // Raises this node's incarnation above `above` (and its own), persists
  // it and spreads the record.
  void raise_self(uint64_t above) {
    auto& self = me();
    self.incarnation = std::max(self.incarnation, above) + 1;
    if (persist)
      persist(self.incarnation);
    peers[self_name].retransmit = retransmit_budget();
  }

  void report(std::optional<cluster_member> before, const cluster_member& now,
              std::string why) {
    if (now.name == self_name)
      return;
    say(log_info,
        fmt::format("member '{}' (stream {}) is {} at incarnation {}: {}",
                    now.name, now.stream, control::to_string(now.status),
                    now.incarnation, why));
    changes.push_back({std::move(before), now, std::move(why)});
    ++changes_total;
  }

  // A member this node hears from directly.
  void heard(std::string_view name, clock::time_point now) {
    if (name == self_name)
      return;
    auto it = members.find(name);
    if (it == members.end())
      return;
    it->second.last_heard = now;
    auto& p = peers[it->first];
    p.evidence = std::max(p.evidence, now);
  }

  // Takes `name` to `status` at its current incarnation: this node's own
  // finding, spread to the others.
  void set_status(known_member& k, member_status status, clock::time_point now,
                  std::string why) {
    auto before = k.record;
    k.record.status = status;
    if (gone(status) && !k.down_since)
      k.down_since = now;
    peers[k.record.name].retransmit = retransmit_budget();
    report(std::move(before), k.record, std::move(why));
  }

  // Why `after` replaced `before` of one member, for the log.
  static std::string why_changed(const cluster_member& before,
                                 const cluster_member& after,
                                 std::string_view via) {
    bool self_said = via == after.name;
    switch (after.status) {
    case member_status::joining:
      return fmt::format("joining (incarnation {})", after.incarnation);
    case member_status::up:
      if (before.status == member_status::joining)
        return "joined";
      if (before.status == member_status::suspect)
        return fmt::format("refuted a suspicion (incarnation {})",
                           after.incarnation);
      if (gone(before.status))
        return fmt::format("came back (incarnation {})", after.incarnation);
      return fmt::format("announced a new record (incarnation {})",
                         after.incarnation);
    case member_status::suspect:
      return fmt::format("'{}' suspects it", via);
    case member_status::down:
      return fmt::format("'{}' took it down", via);
    case member_status::leaving:
      return self_said ? std::string{"said it is leaving"}
                       : fmt::format("'{}' says it is leaving", via);
    }
    return "changed";
  }

  // Counts a refusal and logs `text` the first time `key` is refused.
  merged refused(std::string key, std::string_view text) {
    ++claims_refused;
    // A peer sending ever new keys does not grow the set without bound.
    if (refused_logged.size() >= 4096)
      refused_logged.clear();
    if (refused_logged.insert(std::move(key)).second)
      say(log_warn, text);
    return merged::refused;
  }

  // The member other than `name` that holds `stream`: this node for its own
  // stream, or another member that is not down or leaving. A stream
  // belongs to one member at a time (its data dir's); the node binds a
  // member's PUB connection and the stream's control endpoint to it.
  const known_member* stream_holder(std::string_view stream,
                                    std::string_view name) const {
    for (auto& [n, k] : members)
      if (n != name && k.record.stream == stream
          && (n == self_name || !gone(k.record.status)))
        return &k;
    return nullptr;
  }

  // Why a record of a live member claiming `r.stream` is refused, or
  // nothing when it may claim it.
  std::optional<std::string> stream_taken(const cluster_member& r,
                                          std::string_view via) const {
    if (gone(r.status))
      return std::nullopt;
    auto* h = stream_holder(r.stream, r.name);
    if (h == nullptr)
      return std::nullopt;
    return fmt::format("refused member '{}' claiming stream {} (heard through "
                       "'{}'): the stream is held by member '{}', which is {}; "
                       "a stream belongs to one member at a time. Give each "
                       "node a data dir of its own; the claim is accepted "
                       "once '{}' is down or has left",
                       r.name, r.stream, via, h->record.name,
                       control::to_string(h->record.status), h->record.name);
  }

  // A record that came from `via` (a member's name, or an endpoint).
  merged merge(const cluster_member& r, clock::time_point now,
               std::string_view via) {
    if (r.name == self_name)
      return merge_self(r, via);
    if (auto why = stream_taken(r, via))
      return refused(fmt::format("{}\n{}", r.name, r.stream), *why);
    auto it = members.find(r.name);
    if (it == members.end()) {
      // As memberlist: a member first heard of as suspect, down or leaving
      // is not added (else a forgotten member would come back from a
      // stale view).
      if (r.status != member_status::joining && r.status != member_status::up)
        return merged::ignored;
      members.emplace(r.name, known_member{r, std::nullopt, std::nullopt});
      peers[r.name] =
        peer{now, std::nullopt, 0, std::nullopt, retransmit_budget()};
      report(std::nullopt, r,
             via == r.name ? std::string{"joined"}
                           : fmt::format("joined (learned from '{}')", via));
      return merged::applied;
    }
    auto& k = it->second;
    if (r.stream != k.record.stream) {
      if (!gone(k.record.status))
        return refused(fmt::format("{}\n{}", r.name, r.stream),
                       fmt::format("refused member '{}' of stream {} (heard "
                                   "through '{}'): the name is taken by "
                                   "stream {}, which is {}; it is accepted "
                                   "once that one is down",
                                   r.name, r.stream, via, k.record.stream,
                                   control::to_string(k.record.status)));
      auto before = k.record;
      k = known_member{r, std::nullopt,
                       gone(r.status) ? std::optional{now} : std::nullopt};
      peers[r.name] =
        peer{now, std::nullopt, 0, std::nullopt, retransmit_budget()};
      report(std::move(before), r,
             fmt::format("came back with stream {} (was {})", r.stream,
                         before.stream));
      return merged::applied;
    }
    if (!overrides(r, k.record))
      return merged::ignored;
    // The endpoints of a live member are taken from itself only: else any
    // member could point the others' PUB connections, replay requests and
    // leases for that member's stream at itself by gossiping its record
    // with a higher incarnation. The whole record is ignored rather than
    // its liveness part alone: taking the incarnation with the old
    // endpoints would make the member's own record at that incarnation
    // (with its new endpoints) no longer override it. SWIM still works:
    // a member pings every live member it knows each probe interval with
    // its own record first (first-hand), so a refutation or a restart on
    // new ports reaches each member from the member itself; a suspicion
    // or death rumour carries the endpoints the rumour's source knows,
    // the same as here unless the member moved, and this node's own
    // probes judge it then. Once the known record is down or leaving, the
    // new one is taken from anyone (a restarted member's new endpoints
    // spread so).
    if (via != r.name && !gone(k.record.status) && moved(r, k.record))
      return refused(
        fmt::format("{}\n{}\n{}\n{}", r.name, r.pub, r.control, r.metrics),
        fmt::format("took no new endpoints for member '{}' from "
                    "'{}' (pub {}, control {}, metrics {}; known: "
                    "pub {}, control {}, metrics {}): a live "
                    "member's endpoints are taken from itself "
                    "only; they are taken when '{}' sends them "
                    "itself, or once it is down",
                    r.name, via, r.pub, r.control, r.metrics, k.record.pub,
                    k.record.control, k.record.metrics, r.name));
    auto before = k.record;
    k.record = r;
    auto& p = peers[r.name];
    p.retransmit = retransmit_budget();
    if (gone(r.status)) {
      if (!k.down_since)
        k.down_since = now;
    } else {
      k.down_since.reset();
      // Revived or refuted: its silence counts from now.
      if (before.status != r.status) {
        p.evidence = std::max(p.evidence, now);
        p.probed.reset();
      }
    }
    report(before, r, why_changed(before, r, via));
    return merged::applied;
  }

  // Whether `r` has other endpoints than `known`.
  static bool moved(const cluster_member& r, const cluster_member& known) {
    return r.pub != known.pub || r.control != known.control
           || r.metrics != known.metrics;
  }

  // A record about this node: refuted when it says worse than this node
  // announces (SWIM: raise the incarnation above it).
  merged merge_self(const cluster_member& r, std::string_view via) {
    auto& self = me();
    if (r.stream != self.stream)
      return refused(fmt::format("{}\n{}", r.name, r.stream),
                     fmt::format("refused a record of this node's name '{}' "
                                 "with stream {} (heard through '{}'): this "
                                 "node's stream is {}; give the other node "
                                 "another name",
                                 r.name, r.stream, via, self.stream));
    if (!overrides(r, self))
      return merged::ignored;
    raise_self(r.incarnation);
    if (self.status != member_status::leaving)
      say(log_info,
          fmt::format("'{}' says this node is {} at incarnation {}; refuted: "
                      "up at incarnation {}",
                      via, control::to_string(r.status), r.incarnation,
                      self.incarnation));
    return merged::applied;
  }

  // The records to piggyback on a message to `to`: this node's, `to`'s own
  // when this node sees it worse than up (so it refutes), then those
  // changed lately.
  std::vector<cluster_member> updates_for(std::string_view to) {
    std::vector<cluster_member> out;
    out.push_back(me());
    if (auto it = members.find(to); it != members.end() && to != self_name
                                    && rank(it->second.record.status) > 0)
      out.push_back(it->second.record);
    for (auto& [name, p] : peers) {
      if (p.retransmit <= 0 || name == self_name || name == to)
        continue;
      if (out.size() >= control::max_gossip_members)
        break;
      auto it = members.find(name);
      if (it == members.end())
        continue;
      out.push_back(it->second.record);
      --p.retransmit;
    }
    return out;
  }

  std::vector<cluster_member> all_records() const {
    std::vector<cluster_member> out;
    for (auto& [name, k] : members) {
      if (out.size() >= control::max_gossip_members)
        break;
      out.push_back(k.record);
    }
    return out;
  }

  template <class Request>
  void send(Request m, std::string endpoint, asked what, std::string to,
            std::string about, clock::time_point now,
            std::vector<outgoing>& out) {
    m.id = control::gossip_id_bit | ++next_id;
    out.push_back({endpoint, control::encode(m)});
    pending.emplace(m.id,
                    pending_request{std::move(endpoint), what, std::move(to),
                                    std::move(about), now + request_timeout()});
  }

  control::gossip_sync_request sync_request() {
    control::gossip_sync_request m;
    m.cluster = cfg.name;
    m.from = me();
    m.members = all_records();
    return m;
  }

  void ping(const known_member& k, clock::time_point now,
            std::vector<outgoing>& out) {
    if (k.record.control.empty())
      return;
    control::gossip_ping m;
    m.cluster = cfg.name;
    m.from = self_name;
    m.incarnation = me().incarnation;
    m.target = k.record.name;
    m.updates = updates_for(k.record.name);
    send(std::move(m), k.record.control, asked::ping, k.record.name,
         k.record.name, now, out);
  }

  // --- joining
  // -----------------------------------------------------------------

  void join_step(clock::time_point now, std::vector<outgoing>& out) {
    if (joined || join_in_flight || (join_at && now < *join_at))
      return;
    join_in_flight = true;
    send(sync_request(), seeds[seed_next], asked::join, {}, {}, now, out);
  }

  // The seed asked did not let this node join: the next one, or a new round
  // after the backoff.
  void join_failed(clock::time_point now) {
    join_in_flight = false;
    if (++seed_next < seeds.size()) {
      join_at = now;
      return;
    }
    seed_next = 0;
    join_at = now + join_backoff;
    say(log_warn,
        fmt::format("no seed let this node join cluster '{}' (tried {}); "
                    "trying again in {:.1f} s",
                    cfg.name, fmt::join(seeds, ", "), seconds(join_backoff)));
    join_backoff =
      std::min<clock::duration>(2 * join_backoff, join_backoff_max);
  }

  void joined_through(std::string_view endpoint) {
    become_up();
    say(log_info, fmt::format("joined cluster '{}' through {}: up at "
                              "incarnation {}",
                              cfg.name, endpoint, me().incarnation));
  }

  // A member joined through this node while its own seeds did not answer:
  // it is a member of the cluster all the same.
  void joined_by(std::string_view member) {
    become_up();
    say(log_info, fmt::format("joined cluster '{}': member '{}' joined "
                              "through this node (its own seeds did not "
                              "answer); up at incarnation {}",
                              cfg.name, member, me().incarnation));
  }

  void become_up() {
    joined = true;
    join_in_flight = false;
    join_backoff = join_backoff_first;
    me().status = member_status::up;
    raise_self(me().incarnation);
  }

  // --- failure detection
  // ---------------------------------------------------------

  void probe_all(clock::time_point now, std::vector<outgoing>& out) {
    for (auto& [name, k] : members) {
      if (name == self_name)
        continue;
      auto& p = peers[name];
      // Down members are pinged every sync interval only.
      if (gone(k.record.status) && p.pinged
          && now - *p.pinged < cfg.sync_interval)
        continue;
      p.pinged = now;
      ping(k, now, out);
    }
  }

  // Members this node may ask about others, or sync with: not itself, not
  // `except`, not down.
  std::vector<std::string> live_members(std::string_view except) const {
    std::vector<std::string> out;
    for (auto& [name, k] : members)
      if (name != self_name && name != except && !gone(k.record.status))
        out.push_back(name);
    return out;
  }

  void detect(clock::time_point now, std::vector<outgoing>& out) {
    for (auto& [name, k] : members) {
      if (name == self_name || gone(k.record.status))
        continue;
      auto& p = peers[name];
      auto silent = now - p.evidence;
      if (silent >= cfg.down_after) {
        set_status(k, member_status::down, now,
                   fmt::format("not heard for {:.1f} s", seconds(silent)));
        continue;
      }
      if (silent < cfg.suspect_after
          || k.record.status == member_status::suspect)
        continue;
      // A new silence: ask others whether they heard it (SWIM's ping-req).
      if (!p.probed || *p.probed < p.evidence + cfg.suspect_after) {
        auto helpers = live_members(name);
        std::shuffle(helpers.begin(), helpers.end(), rng);
        if (helpers.size() > probe_helpers)
          helpers.resize(probe_helpers);
        p.probed = now;
        p.probes_out = 0;
        for (auto& h : helpers) {
          auto& hk = members.at(h);
          if (hk.record.control.empty())
            continue;
          control::gossip_probe m;
          m.cluster = cfg.name;
          m.from = self_name;
          m.target = name;
          send(std::move(m), hk.record.control, asked::probe, h, name, now,
               out);
          ++p.probes_out;
        }
        if (p.probes_out > 0)
          continue;
      } else if (p.probes_out > 0) {
        continue;
      }
      set_status(k, member_status::suspect, now,
                 fmt::format("not heard for {:.1f} s, nor by the members "
                             "asked",
                             seconds(silent)));
    }
  }

  // --- anti-entropy, forgetting
  // -------------------------------------------------

  void sync_one(clock::time_point now, std::vector<outgoing>& out) {
    auto live = live_members({});
    std::vector<std::string> down;
    for (auto& [name, k] : members)
      if (name != self_name && gone(k.record.status))
        down.push_back(name);
    ++syncs;
    std::vector<std::string>* from = nullptr;
    if (!down.empty() && (syncs % 3 == 0 || live.empty()))
      from = &down;
    else if (!live.empty())
      from = &live;
    if (from == nullptr)
      return;
    std::uniform_int_distribution<size_t> pick{0, from->size() - 1};
    auto name = (*from)[pick(rng)];
    auto& k = members.at(name);
    if (k.record.control.empty())
      return;
    send(sync_request(), k.record.control, asked::sync, name, name, now, out);
  }

  void forget(clock::time_point now) {
    for (auto it = members.begin(); it != members.end();) {
      auto& k = it->second;
      if (it->first != self_name && k.down_since
          && now - *k.down_since >= cfg.reconnect_window) {
        say(log_info,
            fmt::format("forgot member '{}' (stream {}): {} for {:.0f} s",
                        it->first, k.record.stream,
                        control::to_string(k.record.status),
                        seconds(now - *k.down_since)));
        peers.erase(it->first);
        it = members.erase(it);
      } else {
        ++it;
      }
    }
  }

  void expire(clock::time_point now) {
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.expires > now) {
        ++it;
        continue;
      }
      auto p = std::move(it->second);
      it = pending.erase(it);
      if (p.what == asked::join) {
        say(log_debug, fmt::format("seed {} did not answer within {:.1f} s",
                                   p.endpoint, seconds(request_timeout())));
        join_failed(now);
      } else if (p.what == asked::probe) {
        probe_answered(p.about);
      }
    }
  }

  void probe_answered(std::string_view about) {
    if (auto it = peers.find(about); it != peers.end() && it->second.probes_out)
      --it->second.probes_out;
  }

  // A time jump larger than a probe interval between ticks: this node did
  // not run (paused, starved). That time does not count against the others
  // (Lifeguard's local health awareness, in its simplest form).
  void skip_stall(clock::time_point now) {
    if (last_tick && now - *last_tick > cfg.probe_interval) {
      auto gap = now - *last_tick;
      for (auto& [name, p] : peers)
        p.evidence = std::min(now, p.evidence + gap);
      say(log_info, fmt::format("this node did not run for {:.1f} s; that "
                                "time is not held against the others",
                                seconds(gap)));
    }
    last_tick = now;
  }

  // --- serving
  // -------------------------------------------------------------------

  std::string refuse(uint64_t id, std::string why) {
    say(log_warn, why);
    control::error_reply e;
    e.id = id;
    e.error = std::move(why);
    return control::encode(e);
  }

  std::optional<std::string> other_cluster(uint64_t id, std::string_view op,
                                           std::string_view from,
                                           std::string_view cluster) {
    if (cluster == cfg.name)
      return std::nullopt;
    return refuse(id, fmt::format("refused {} from node '{}' of cluster '{}': "
                                  "node '{}' is of cluster '{}'; give every "
                                  "node of one cluster the same cluster.name, "
                                  "and seeds of that cluster",
                                  op, from, cluster, self_name, cfg.name));
  }

  std::string serve_sync(const control::gossip_sync_request& m,
                         clock::time_point now) {
    if (auto e = other_cluster(m.id, "gossip.sync", m.from.name, m.cluster))
      return *e;
    if (m.from.name == self_name && m.from.stream == me().stream)
      return refuse(m.id, fmt::format("refused gossip.sync from node '{}': it "
                                      "is this node itself, reached through "
                                      "one of its own seeds; list other "
                                      "members' control endpoints in "
                                      "cluster.seeds",
                                      m.from.name));
    if (m.from.name == self_name && m.from.stream != me().stream)
      return refuse(m.id, fmt::format("refused gossip.sync from stream {}: "
                                      "the node name '{}' is this node's "
                                      "(stream {}); give the new node "
                                      "another name",
                                      m.from.stream, m.from.name, me().stream));
    if (auto it = members.find(m.from.name);
        it != members.end() && it->second.record.stream != m.from.stream
        && !gone(it->second.record.status)) {
      ++claims_refused;
      return refuse(
        m.id, fmt::format("refused gossip.sync from node '{}' of stream "
                          "{}: the name is taken by stream {}, which is "
                          "{}; it is accepted once that one is down",
                          m.from.name, m.from.stream, it->second.record.stream,
                          control::to_string(it->second.record.status)));
    }
    if (auto why = stream_taken(m.from, m.from.name)) {
      ++claims_refused;
      return refuse(m.id, *why);
    }
    merge(m.from, now, m.from.name);
    heard(m.from.name, now);
    for (auto& r : m.members)
      merge(r, now, m.from.name);
    if (!joined)
      joined_by(m.from.name);
    control::gossip_sync_reply reply;
    reply.id = m.id;
    reply.cluster = cfg.name;
    reply.members = all_records();
    return control::encode(reply);
  }

  // Merges `updates` from `from`; whether `from` is the member this node
  // knows by that name (not a refused one of another stream).
  bool merge_updates(const std::vector<cluster_member>& updates,
                     std::string_view from, clock::time_point now) {
    bool genuine = true;
    for (auto& r : updates)
      if (merge(r, now, from) == merged::refused && r.name == from)
        genuine = false;
    return genuine;
  }

  std::string serve_ping(const control::gossip_ping& m, clock::time_point now) {
    if (auto e = other_cluster(m.id, "gossip.ping", m.from, m.cluster))
      return *e;
    if (m.target != self_name) {
      control::error_reply e;
      e.id = m.id;
      e.error = fmt::format("this endpoint is node '{}', not '{}'", self_name,
                            m.target);
      return control::encode(e);
    }
    if (merge_updates(m.updates, m.from, now))
      heard(m.from, now);
    control::gossip_ack ack;
    ack.id = m.id;
    ack.cluster = cfg.name;
    ack.from = self_name;
    ack.incarnation = me().incarnation;
    ack.updates = updates_for(m.from);
    return control::encode(ack);
  }

  std::string serve_probe(const control::gossip_probe& m,
                          clock::time_point now) {
    if (auto e = other_cluster(m.id, "gossip.probe", m.from, m.cluster))
      return *e;
    heard(m.from, now);
    control::gossip_probe_reply reply;
    reply.id = m.id;
    reply.target = m.target;
    if (m.target == self_name) {
      reply.heard_ms_ago = 0;
    } else if (auto it = members.find(m.target);
               it != members.end() && it->second.last_heard) {
      reply.heard_ms_ago = millis(now - *it->second.last_heard);
    }
    return control::encode(reply);
  }

  // --- replies
  // -------------------------------------------------------------------

  void on_sync_reply(const pending_request& p, std::string_view body,
                     clock::time_point now) {
    bool join = p.what == asked::join;
    auto r = control::decode_reply<control::gossip_sync_reply>(body);
    if (!r) {
      say(log_warn, fmt::format("malformed gossip.sync reply from {}: {}",
                                p.endpoint, message_of(r.error())));
      if (join)
        join_failed(now);
      return;
    }
    if (auto* e = std::get_if<control::error_reply>(&*r)) {
      say(log_warn,
          fmt::format("{} {} (node '{}' of cluster '{}', stream {}) "
                      "was refused: {}",
                      join ? "joining through" : "syncing with", p.endpoint,
                      self_name, cfg.name, me().stream, e->error));
      if (join)
        join_failed(now);
      return;
    }
    auto& reply = std::get<control::gossip_sync_reply>(*r);
    if (reply.cluster != cfg.name) {
      say(log_warn, fmt::format("ignored a gossip.sync reply from {}: it is "
                                "of cluster '{}', this node of '{}'",
                                p.endpoint, reply.cluster, cfg.name));
      if (join)
        join_failed(now);
      return;
    }
    if (join)
      joined_through(p.endpoint);
    // The member that answered: the one asked, or the seed at that
    // endpoint.
    std::string answered = p.to;
    for (auto& m : reply.members)
      if (answered.empty() && m.control == p.endpoint)
        answered = m.name;
    for (auto& m : reply.members)
      merge(m, now, answered.empty() ? p.endpoint : answered);
    heard(answered, now);
  }

  void on_ack(const pending_request& p, std::string_view body,
              clock::time_point now) {
    auto r = control::decode_reply<control::gossip_ack>(body);
    if (!r) {
      say(log_warn, fmt::format("malformed gossip.ping reply from {}: {}",
                                p.endpoint, message_of(r.error())));
      return;
    }
    if (auto* e = std::get_if<control::error_reply>(&*r)) {
      say(log_debug, fmt::format("ping of '{}' at {} refused: {}", p.about,
                                 p.endpoint, e->error));
      return;
    }
    auto& ack = std::get<control::gossip_ack>(*r);
    if (ack.cluster != cfg.name || ack.from != p.about)
      return;
    if (merge_updates(ack.updates, ack.from, now))
      heard(ack.from, now);
  }

  void on_probe_reply(const pending_request& p, std::string_view body,
                      clock::time_point now) {
    probe_answered(p.about);
    auto r = control::decode_reply<control::gossip_probe_reply>(body);
    if (!r) {
      say(log_warn, fmt::format("malformed gossip.probe reply from {}: {}",
                                p.endpoint, message_of(r.error())));
      return;
    }
    auto* reply = std::get_if<control::gossip_probe_reply>(&*r);
    if (reply == nullptr)
      return;
    heard(p.to, now);
    auto it = peers.find(p.about);
    if (it == peers.end() || !reply->heard_ms_ago)
      return;
    auto at = now - std::chrono::milliseconds{*reply->heard_ms_ago};
    it->second.evidence = std::max(it->second.evidence, at);
  }
};

membership::membership(membership_config cfg, cluster_member self,
                       std::function<void(uint64_t)> persist,
                       std::function<void(int, std::string_view)> log)
    : st_(std::make_unique<state>()) {
  auto& s = *st_;
  s.cfg = std::move(cfg);
  s.persist = std::move(persist);
  s.log = std::move(log);
  s.self_name = self.name;
  s.rng.seed(static_cast<std::minstd_rand::result_type>(
    std::hash<std::string>{}(self.name + self.stream)));
  // A seed that is this node's own endpoint is no way in.
  for (auto& seed : s.cfg.seeds)
    if (seed != self.control)
      s.seeds.push_back(seed);
  s.joined = s.seeds.empty();
  self.status = s.joined ? member_status::up : member_status::joining;
  s.members.emplace(s.self_name,
                    known_member{std::move(self), std::nullopt, std::nullopt});
  s.peers[s.self_name] = peer{};
}

membership::~membership() = default;
membership::membership(membership&&) noexcept = default;
membership& membership::operator=(membership&&) noexcept = default;

void membership::tick(clock::time_point now, std::vector<outgoing>& out) {
  auto& s = *st_;
  s.skip_stall(now);
  s.expire(now);
  s.join_step(now, out);
  if (!s.last_probe || now - *s.last_probe >= s.cfg.probe_interval) {
    s.last_probe = now;
    s.probe_all(now, out);
  }
  s.detect(now, out);
  if (s.joined && (!s.last_sync || now - *s.last_sync >= s.cfg.sync_interval)) {
    s.last_sync = now;
    s.sync_one(now, out);
  }
  s.forget(now);
}

std::string membership::serve(const control::request& req,
                              clock::time_point now) {
  auto& s = *st_;
  return std::visit(
    [&](const auto& m) -> std::string {
      using type = std::decay_t<decltype(m)>;
      if constexpr (std::is_same_v<type, control::gossip_sync_request>)
        return s.serve_sync(m, now);
      else if constexpr (std::is_same_v<type, control::gossip_ping>)
        return s.serve_ping(m, now);
      else if constexpr (std::is_same_v<type, control::gossip_probe>)
        return s.serve_probe(m, now);
      else if constexpr (std::is_same_v<type, control::members_request>) {
        auto v = view(now);
        v.id = m.id;
        return control::encode(v);
      } else {
        control::error_reply e;
        e.id = m.id;
        e.error =
          fmt::format("{} is no membership request", control::op_name(req));
        return control::encode(e);
      }
    },
    req);
}

void membership::on_reply(std::string_view endpoint, std::string_view body,
                          clock::time_point now) {
  auto& s = *st_;
  auto id = control::message_id(body);
  auto it = s.pending.find(id);
  if (it == s.pending.end() || it->second.endpoint != endpoint) {
    s.say(log_debug, fmt::format("dropped a gossip reply from {} to no "
                                 "request pending (id {:#x}): late or unknown",
                                 endpoint, id));
    return;
  }
  auto p = std::move(it->second);
  s.pending.erase(it);
  switch (p.what) {
  case asked::join:
  case asked::sync:
    s.on_sync_reply(p, body, now);
    break;
  case asked::ping:
    s.on_ack(p, body, now);
    break;
  case asked::probe:
    s.on_probe_reply(p, body, now);
    break;
  }
}

void membership::leave(clock::time_point now, std::vector<outgoing>& out) {
  auto& s = *st_;
  s.me().status = member_status::leaving;
  s.raise_self(s.me().incarnation);
  s.say(log_info, fmt::format("leaving cluster '{}' at incarnation {}",
                              s.cfg.name, s.me().incarnation));
  for (auto& [name, k] : s.members)
    if (name != s.self_name && !gone(k.record.status))
      s.ping(k, now, out);
}

void membership::update_self(cluster_member self) {
  auto& s = *st_;
  auto& me = s.me();
  self.name = me.name;
  self.stream = me.stream;
  self.status = me.status;
  self.incarnation = me.incarnation;
  me = std::move(self);
  s.raise_self(me.incarnation);
}

std::vector<member_change> membership::take_changes() {
  return std::exchange(st_->changes, {});
}

const cluster_member& membership::self() const noexcept {
  return st_->members.at(st_->self_name).record;
}

const std::map<std::string, known_member, std::less<>>&
membership::members() const noexcept {
  return st_->members;
}

control::members_reply membership::view(clock::time_point now) const {
  auto& s = *st_;
  control::members_reply r;
  r.cluster = s.cfg.name;
  r.self = s.self_name;
  for (auto& [name, k] : s.members) {
    if (r.members.size() >= control::max_gossip_members)
      break;
    control::member_entry e;
    e.member = k.record;
    if (name == s.self_name)
      e.last_heard_ms = 0;
    else if (k.last_heard)
      e.last_heard_ms = millis(now - *k.last_heard);
    r.members.push_back(std::move(e));
  }
  return r;
}

std::map<member_status, size_t> membership::counts() const {
  std::map<member_status, size_t> out;
  for (auto& [name, k] : st_->members)
    ++out[k.record.status];
  return out;
}

uint64_t membership::changes_total() const noexcept {
  return st_->changes_total;
}

uint64_t membership::claims_refused_total() const noexcept {
  return st_->claims_refused;
}

bool membership::joined() const noexcept {
  return st_->joined;
}

const membership_config& membership::config() const noexcept {
  return st_->cfg;
}

} // namespace herald::cluster
