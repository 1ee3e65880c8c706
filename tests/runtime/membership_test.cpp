// Membership (runtime/src/membership.hpp) on a simulated network: every
// node is a `membership` whose control endpoint is `sim://NAME`; a fake
// monotonic clock advances in 100 ms steps, each node ticking once per
// step; each request goes to the node owning its endpoint (decode_request →
// serve → on_reply of the sender) unless a link is cut or the node is
// paused or gone. Times asserted are simulated, so they do not depend on
// the machine's load.

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/runtime/control.hpp"
#include "membership.hpp"

using namespace herald;
using namespace std::chrono_literals;
using sim_clock = cluster::clock;
using control::member_status;

namespace {

constexpr auto step = 100ms;

std::string endpoint_of(const std::string& name) {
  return "sim://" + name;
}

struct sim_node {
  std::string name;
  std::string stream;
  std::string cluster;
  std::vector<std::string> seeds;
  uint64_t persisted = 0;
  bool paused = false;
  std::vector<std::string> logs;
  std::vector<cluster::member_change> changes;
  std::unique_ptr<cluster::membership> m;
};

class network {
public:
  sim_clock::time_point now = sim_clock::time_point{} + 24h;

  // Starts the node at `sim://ID` (a new incarnation of it if it ran
  // before) joining through `seeds` (ids), named `name` (default: its id).
  sim_node& start(const std::string& id, std::vector<std::string> seeds = {},
                  std::optional<std::string> stream = std::nullopt,
                  std::string cluster = "herald",
                  std::optional<std::string> name = std::nullopt) {
    auto& n = nodes_[id];
    n.name = name.value_or(id);
    n.cluster = cluster;
    if (stream)
      n.stream = *stream;
    else if (n.stream.empty())
      n.stream = "stream-" + n.name;
    n.seeds.clear();
    for (auto& s : seeds)
      n.seeds.push_back(endpoint_of(s));
    n.paused = false;
    // As the node does: the persisted incarnation, raised by the start.
    n.persisted += 1;
    cluster::membership_config cfg;
    cfg.name = cluster;
    cfg.seeds = n.seeds;
    control::cluster_member self;
    self.name = n.name;
    self.stream = n.stream;
    self.incarnation = n.persisted;
    self.service = "Service-" + n.name;
    self.pub = "sim-pub://" + id;
    self.control = endpoint_of(id);
    self.produces = {n.name + ".thing.happened"};
    self.consumers = {{"Consumer-" + n.name, {"user.>"}}};
    auto* node = &n;
    n.m = std::make_unique<cluster::membership>(
      cfg, self,
      [node](uint64_t inc) {
        node->persisted = inc;
      },
      [node](int, std::string_view text) {
        node->logs.emplace_back(text);
      });
    return n;
  }

  // Starts member `old_id` again at `sim://NEW_ID` (new endpoints), with
  // its name, stream and persisted incarnation, as a node restarted on
  // other ports with its data dir would.
  sim_node& restart_elsewhere(const std::string& old_id,
                              const std::string& new_id,
                              std::vector<std::string> seeds) {
    auto& old = nodes_.at(old_id);
    old.m.reset();
    auto& n = nodes_[new_id];
    n.persisted = old.persisted;
    return start(new_id, std::move(seeds), old.stream, old.cluster, old.name);
  }

  sim_node& node(const std::string& id) {
    return nodes_.at(id);
  }

  void kill(const std::string& name) {
    nodes_.at(name).m.reset();
  }

  void pause(const std::string& name, bool paused) {
    nodes_.at(name).paused = paused;
  }

  // Messages from `from` to `to` (ids) are lost.
  void cut(const std::string& from, const std::string& to) {
    cut_.insert({from, to});
  }

  void cut_both(const std::string& a, const std::string& b) {
    cut(a, b);
    cut(b, a);
  }

  void partition(const std::vector<std::string>& left,
                 const std::vector<std::string>& right) {
    for (auto& a : left)
      for (auto& b : right)
        cut_both(a, b);
  }

  void heal() {
    cut_.clear();
  }

  // One step of 100 ms: every running node ticks, its requests are
  // delivered and answered.
  void tick() {
    now += step;
    for (auto& [name, n] : nodes_) {
      if (!n.m || n.paused)
        continue;
      std::vector<cluster::outgoing> out;
      n.m->tick(now, out);
      for (auto& o : out)
        deliver(name, o);
    }
    for (auto& [name, n] : nodes_)
      if (n.m)
        for (auto& c : n.m->take_changes())
          n.changes.push_back(std::move(c));
  }

  // Delivers what node `from` (an id) sends outside a tick.
  void send(const std::string& from,
            const std::vector<cluster::outgoing>& out) {
    for (auto& o : out)
      deliver(from, o);
  }

  // Ticks until `pred` holds or `limit` of simulated time passed; the
  // simulated time it took, or nothing.
  template <class Pred>
  std::optional<sim_clock::duration> run_until(Pred pred,
                                               sim_clock::duration limit) {
    auto start = now;
    while (now - start <= limit) {
      if (pred())
        return now - start;
      tick();
    }
    return std::nullopt;
  }

  void run_for(sim_clock::duration d) {
    auto end = now + d;
    while (now < end)
      tick();
  }

  // The record node `observer` (an id) has of the member `name`, if any.
  std::optional<control::cluster_member> record(const std::string& observer,
                                                const std::string& name) const {
    auto& n = nodes_.at(observer);
    if (!n.m)
      return std::nullopt;
    auto& ms = n.m->members();
    auto it = ms.find(name);
    if (it == ms.end())
      return std::nullopt;
    return it->second.record;
  }

  std::optional<member_status> status(const std::string& observer,
                                      const std::string& name) const {
    auto r = record(observer, name);
    return r ? std::optional{r->status} : std::nullopt;
  }

  // The running, unpaused nodes.
  std::vector<std::string> running() const {
    std::vector<std::string> out;
    for (auto& [name, n] : nodes_)
      if (n.m && !n.paused)
        out.push_back(name);
    return out;
  }

  // Whether every node of `observers` sees `name` with `s` (and, when
  // given, at an incarnation above `above`).
  bool all_see(const std::vector<std::string>& observers,
               const std::string& name, member_status s,
               std::optional<uint64_t> above = std::nullopt) const {
    return std::all_of(observers.begin(), observers.end(), [&](auto& o) {
      auto r = record(o, name);
      return r && r->status == s && (!above || r->incarnation > *above);
    });
  }

  // Whether the nodes of `group` share one view: each knows every one of
  // them up, at the same incarnation as the others see it.
  bool one_view(const std::vector<std::string>& group) const {
    for (auto& name : group) {
      auto first = record(group.front(), name);
      if (!first || first->status != member_status::up)
        return false;
      for (auto& o : group) {
        auto r = record(o, name);
        if (!r || r->status != member_status::up
            || r->incarnation != first->incarnation)
          return false;
      }
    }
    return true;
  }

  bool logged(const std::string& name, const std::string& text) const {
    auto& logs = nodes_.at(name).logs;
    return std::any_of(logs.begin(), logs.end(), [&](auto& l) {
      return l.find(text) != std::string::npos;
    });
  }

private:
  void deliver(const std::string& from, const cluster::outgoing& o) {
    auto to = o.endpoint.substr(std::string{"sim://"}.size());
    auto it = nodes_.find(to);
    if (it == nodes_.end() || !it->second.m || it->second.paused
        || cut_.count({from, to}) != 0)
      return;
    auto req = control::decode_request(o.body);
    REQUIRE(req);
    auto reply = it->second.m->serve(*req, now);
    if (cut_.count({to, from}) != 0)
      return;
    nodes_.at(from).m->on_reply(o.endpoint, reply, now);
  }

  std::map<std::string, sim_node> nodes_;
  std::set<std::pair<std::string, std::string>> cut_;
};

const std::vector<std::string> five = {"n1", "n2", "n3", "n4", "n5"};

// Five nodes, n2..n5 joining through n1, all up everywhere.
void start_five(network& net) {
  net.start("n1");
  for (size_t i = 1; i < five.size(); ++i)
    net.start(five[i], {"n1"});
  REQUIRE(net.run_until(
    [&] {
      return net.one_view(five);
    },
    3s));
}

std::vector<std::string> others(const std::string& except) {
  std::vector<std::string> out;
  for (auto& n : five)
    if (n != except)
      out.push_back(n);
  return out;
}

// The statuses `observer` reported for `name`, in order, from its changes.
std::vector<member_status> transitions(const network& net,
                                       const std::string& observer,
                                       const std::string& name) {
  std::vector<member_status> out;
  for (auto& c : const_cast<network&>(net).node(observer).changes)
    if (c.now.name == name)
      out.push_back(c.now.status);
  return out;
}

} // namespace

TEST_CASE("five nodes joining through one seed all see five up within 3 s",
          "[membership]") {
  network net;
  net.start("n1");
  for (size_t i = 1; i < five.size(); ++i)
    net.start(five[i], {"n1"});
  CHECK(net.node("n1").m->joined());
  CHECK_FALSE(net.node("n2").m->joined());
  CHECK(net.node("n2").m->self().status == member_status::joining);
  auto took = net.run_until(
    [&] {
      return net.one_view(five);
    },
    3s);
  REQUIRE(took);
  INFO("took " << std::chrono::duration<double>(*took).count() << " s");
  for (auto& o : five) {
    INFO(o);
    CHECK(net.node(o).m->joined());
    CHECK(net.node(o).m->counts()[member_status::up] == 5);
    // The fields each member announces arrive with it.
    auto r = net.record(o, "n3");
    REQUIRE(r);
    CHECK(r->control == "sim://n3");
    CHECK(r->pub == "sim-pub://n3");
    CHECK(r->produces == std::vector<std::string>{"n3.thing.happened"});
    REQUIRE(r->consumers.size() == 1);
    CHECK(r->consumers[0].patterns == std::vector<std::string>{"user.>"});
  }
  // A joining node raised its incarnation when a seed answered; the seed
  // did not need to.
  CHECK(net.node("n2").m->self().incarnation == 2);
  CHECK(net.node("n2").persisted == 2);
  CHECK(net.node("n1").m->self().incarnation == 1);
  // The view as `herald members` shows it.
  auto v = net.node("n1").m->view(net.now);
  CHECK(v.cluster == "herald");
  CHECK(v.self == "n1");
  REQUIRE(v.members.size() == 5);
  CHECK(v.members[0].last_heard_ms == 0);
  REQUIRE(v.members[1].last_heard_ms);
  CHECK(*v.members[1].last_heard_ms <= 1000);
}

TEST_CASE("a killed node is down everywhere within 5 s; restarted, it is up "
          "with a higher incarnation",
          "[membership]") {
  network net;
  start_five(net);
  net.run_for(2s);
  auto before = net.record("n1", "n4")->incarnation;
  net.kill("n4");
  auto rest = others("n4");
  auto took = net.run_until(
    [&] {
      return net.all_see(rest, "n4", member_status::down);
    },
    5s);
  REQUIRE(took);
  INFO("down everywhere after " << std::chrono::duration<double>(*took).count()
                                << " s");
  // Nobody else was taken for dead meanwhile.
  CHECK(net.one_view(rest));
  // Each observer reported n4's fall once per transition.
  for (auto& o : rest) {
    auto t = transitions(net, o, "n4");
    REQUIRE_FALSE(t.empty());
    CHECK(t.back() == member_status::down);
    CHECK(std::adjacent_find(t.begin(), t.end()) == t.end());
  }

  net.start("n4", {"n1"});
  REQUIRE(net.run_until(
    [&] {
      return net.all_see(five, "n4", member_status::up, before);
    },
    5s));
  CHECK(net.one_view(five));
  CHECK(net.node("n4").persisted > before);
}

TEST_CASE("a paused node is suspected, then down; resumed, it is up again "
          "with its stream and a higher incarnation",
          "[membership]") {
  network net;
  start_five(net);
  auto before = *net.record("n2", "n3");
  auto rest = others("n3");
  std::map<std::string, uint64_t> incarnations;
  for (auto& o : rest)
    incarnations[o] = net.record("n1", o)->incarnation;
  for (auto& o : five)
    net.node(o).changes.clear();
  net.pause("n3", true);
  REQUIRE(net.run_until(
    [&] {
      return net.all_see(rest, "n3", member_status::suspect);
    },
    3s));
  REQUIRE(net.run_until(
    [&] {
      return net.all_see(rest, "n3", member_status::down);
    },
    5s));
  net.run_for(7s);
  net.pause("n3", false);
  REQUIRE(net.run_until(
    [&] {
      return net.all_see(five, "n3", member_status::up, before.incarnation);
    },
    5s));
  CHECK(net.record("n2", "n3")->stream == before.stream);
  REQUIRE(net.run_until(
    [&] {
      return net.one_view(five);
    },
    5s));
  // The paused node did not hold its own pause against the others: none
  // of them had to refute a suspicion.
  for (auto& o : rest) {
    INFO(o);
    CHECK(net.record("n1", o)->incarnation == incarnations[o]);
    CHECK(transitions(net, "n1", o).empty());
  }
  // n1 saw n3 go up → suspect → down → up, each reported once.
  CHECK(transitions(net, "n1", "n3")
        == std::vector<member_status>{member_status::suspect,
                                      member_status::down, member_status::up});
}

TEST_CASE("a partition 2 | 3: each side sees the other down; healed, one "
          "view again within 10 s",
          "[membership]") {
  network net;
  start_five(net);
  std::vector<std::string> left = {"n1", "n2"};
  std::vector<std::string> right = {"n3", "n4", "n5"};
  net.partition(left, right);
  auto sees_down = [&](const std::vector<std::string>& observers,
                       const std::vector<std::string>& members) {
    return std::all_of(members.begin(), members.end(), [&](auto& m) {
      return net.all_see(observers, m, member_status::down);
    });
  };
  REQUIRE(net.run_until(
    [&] {
      return sees_down(left, right) && sees_down(right, left);
    },
    10s));
  CHECK(net.one_view(left));
  CHECK(net.one_view(right));
  net.run_for(5s);
  net.heal();
  auto took = net.run_until(
    [&] {
      return net.one_view(five);
    },
    10s);
  REQUIRE(took);
  INFO("one view after " << std::chrono::duration<double>(*took).count()
                         << " s");
  // And it stays one.
  net.run_for(5s);
  CHECK(net.one_view(five));
}

TEST_CASE("a node of another cluster is refused, naming both clusters",
          "[membership]") {
  network net;
  start_five(net);
  net.start("x1", {"n1"}, std::nullopt, "other");
  net.run_for(3s);
  CHECK_FALSE(net.node("x1").m->joined());
  CHECK(net.node("x1").m->members().size() == 1);
  for (auto& o : five)
    CHECK_FALSE(net.record(o, "x1"));
  CHECK(net.logged("n1", "cluster 'other'"));
  CHECK(net.logged("n1", "cluster 'herald'"));
  CHECK(net.logged("x1", "cluster 'other'"));
  CHECK(net.logged("x1", "cluster 'herald'"));
  // It keeps trying, with backoff.
  CHECK(net.logged("x1", "trying again in"));
}

TEST_CASE("a name returning with another stream is refused while the old "
          "one is up, and replaces it once that one is down",
          "[membership]") {
  network net;
  start_five(net);
  // A second process named n5 with a data dir of its own (a new stream),
  // elsewhere, while the first still runs.
  net.start("n5-new", {"n1"}, std::string{"stream-n5-wiped"}, "herald", "n5");
  net.run_for(3s);
  CHECK_FALSE(net.node("n5-new").m->joined());
  for (auto& o : five)
    CHECK(net.record(o, "n5")->stream == "stream-n5");
  CHECK(net.logged("n1", "stream-n5-wiped"));
  CHECK(net.logged("n1", "taken by stream stream-n5"));
  CHECK(net.logged("n5-new", "was refused"));

  net.kill("n5");
  auto rest = others("n5");
  auto all = rest;
  all.push_back("n5-new");
  // Down in 5 s, then the new one's next try (backoff ≤ 10 s) gets in.
  REQUIRE(net.run_until(
    [&] {
      return std::all_of(all.begin(), all.end(), [&](auto& o) {
        auto r = net.record(o, "n5");
        return r && r->stream == "stream-n5-wiped"
               && r->status == member_status::up;
      });
    },
    20s));
  CHECK(net.node("n5-new").m->joined());
  CHECK(net.record("n2", "n5")->control == "sim://n5-new");
  // The replacement was reported with the old record as `before`.
  auto& changes = net.node("n2").changes;
  CHECK(std::any_of(changes.begin(), changes.end(), [](auto& c) {
    return c.before && c.before->stream == "stream-n5"
           && c.now.stream == "stream-n5-wiped";
  }));
}

TEST_CASE("a leaving node is leaving everywhere within 1 s", "[membership]") {
  network net;
  start_five(net);
  std::vector<cluster::outgoing> out;
  auto& n2 = net.node("n2");
  auto before = n2.m->self().incarnation;
  n2.m->leave(net.now, out);
  CHECK(n2.m->self().status == member_status::leaving);
  CHECK(n2.m->self().incarnation > before);
  CHECK(n2.persisted == n2.m->self().incarnation);
  // One request per live member, sent by the node with its pump.
  CHECK(out.size() == 4);
  for (auto& o : out) {
    auto req = control::decode_request(o.body);
    REQUIRE(req);
    CHECK(std::holds_alternative<control::gossip_ping>(*req));
  }
  net.send("n2", out);
  net.kill("n2");
  auto rest = others("n2");
  REQUIRE(net.run_until(
    [&] {
      return net.all_see(rest, "n2", member_status::leaving);
    },
    1s));
  net.tick();
  for (auto& o : rest) {
    auto& changes = net.node(o).changes;
    auto it = std::find_if(changes.begin(), changes.end(), [](auto& c) {
      return c.now.name == "n2" && c.now.status == member_status::leaving;
    });
    REQUIRE(it != changes.end());
    CHECK(it->why == "said it is leaving");
  }
  // Leaving is final: it is not taken down later.
  net.run_for(5s);
  CHECK(net.all_see(rest, "n2", member_status::leaving));
}

TEST_CASE("a down member is forgotten after the reconnect window",
          "[membership]") {
  network net;
  start_five(net);
  net.kill("n5");
  auto rest = others("n5");
  REQUIRE(net.run_until(
    [&] {
      return net.all_see(rest, "n5", member_status::down);
    },
    5s));
  // The default window is an hour: still known, still probed, well after.
  net.run_for(60s);
  for (auto& o : rest)
    CHECK(net.status(o, "n5") == member_status::down);
  net.now += cluster::membership_config{}.reconnect_window;
  net.tick();
  for (auto& o : rest) {
    INFO(o);
    CHECK_FALSE(net.record(o, "n5"));
    CHECK(net.node(o).m->members().size() == 4);
    CHECK(net.logged(o, "forgot member 'n5'"));
  }
  // And the view stays without it: no member brings the old record back.
  net.run_for(5s);
  for (auto& o : rest)
    CHECK_FALSE(net.record(o, "n5"));
}

TEST_CASE("a member one node cannot reach but the others can is never "
          "marked down (indirect probes)",
          "[membership]") {
  network net;
  start_five(net);
  for (auto& o : five)
    net.node(o).changes.clear();
  net.cut_both("n1", "n2");
  net.run_for(20s);
  for (auto& o : five) {
    INFO(o);
    CHECK(net.node(o).m->counts()[member_status::up] == 5);
    for (auto& c : net.node(o).changes)
      CHECK(c.now.status == member_status::up);
  }
  CHECK(net.one_view(five));
  // Without the others to ask, n1 takes n2 down.
  net.cut_both("n1", "n3");
  net.cut_both("n1", "n4");
  net.cut_both("n1", "n5");
  net.cut_both("n2", "n3");
  net.cut_both("n2", "n4");
  net.cut_both("n2", "n5");
  REQUIRE(net.run_until(
    [&] {
      return net.status("n1", "n2") == member_status::down;
    },
    5s));
}

TEST_CASE("take_changes reports each transition once", "[membership]") {
  network net;
  net.start("n1");
  net.start("n2", {"n1"});
  net.start("n3", {"n1"});
  std::vector<std::string> three = {"n1", "n2", "n3"};
  REQUIRE(net.run_until(
    [&] {
      return net.one_view(three);
    },
    3s));
  net.run_for(3s);
  for (auto& o : three) {
    INFO(o);
    auto& changes = net.node(o).changes;
    // Two others, each first heard of once; their own records never.
    std::map<std::string, int> first_heard;
    for (auto& c : changes) {
      CHECK(c.now.name != o);
      CHECK_FALSE(c.why.empty());
      if (!c.before)
        ++first_heard[c.now.name];
      else
        CHECK(*c.before != c.now);
    }
    CHECK(first_heard.size() == 2);
    for (auto& [name, count] : first_heard)
      CHECK(count == 1);
    CHECK(net.node(o).m->changes_total() == changes.size());
  }
  // Nothing is reported again while nothing changes.
  for (auto& o : three)
    net.node(o).changes.clear();
  net.run_for(10s);
  for (auto& o : three)
    CHECK(net.node(o).changes.empty());
  // A killed member: one change to each new status, then none.
  net.kill("n3");
  net.run_for(10s);
  for (auto& o : {"n1", "n2"}) {
    auto t = transitions(net, o, "n3");
    CHECK(t
          == std::vector<member_status>{member_status::suspect,
                                        member_status::down});
  }
}

TEST_CASE("a member told it is suspected refutes, raising its incarnation",
          "[membership]") {
  network net;
  start_five(net);
  auto& n3 = net.node("n3");
  auto before = n3.m->self().incarnation;
  // A rumour from n1: n3 is suspect at its current incarnation.
  control::gossip_ping ping;
  ping.id = control::gossip_id_bit | 1;
  ping.cluster = "herald";
  ping.from = "n1";
  ping.incarnation = net.record("n1", "n1")->incarnation;
  ping.target = "n3";
  auto rumour = n3.m->self();
  rumour.status = member_status::suspect;
  ping.updates = {rumour};
  auto reply = n3.m->serve(ping, net.now);
  auto ack = control::decode_reply<control::gossip_ack>(reply);
  REQUIRE(ack);
  auto& a = std::get<control::gossip_ack>(*ack);
  CHECK(a.incarnation == before + 1);
  CHECK(n3.persisted == before + 1);
  CHECK(n3.m->self().status == member_status::up);
  REQUIRE_FALSE(a.updates.empty());
  CHECK(a.updates[0].name == "n3");
  CHECK(a.updates[0].status == member_status::up);
  // An older rumour changes nothing.
  rumour.incarnation = before;
  rumour.status = member_status::down;
  ping.updates = {rumour};
  n3.m->serve(ping, net.now);
  CHECK(n3.m->self().incarnation == before + 1);
  // The refutation spreads.
  REQUIRE(net.run_until(
    [&] {
      return net.all_see(five, "n3", member_status::up, before);
    },
    3s));
}

TEST_CASE("a ping meant for another name, and requests of no membership op, "
          "are refused",
          "[membership]") {
  network net;
  start_five(net);
  control::gossip_ping ping;
  ping.id = control::gossip_id_bit | 9;
  ping.cluster = "herald";
  ping.from = "n1";
  ping.target = "n9";
  auto r = control::decode_reply<control::gossip_ack>(
    net.node("n2").m->serve(ping, net.now));
  REQUIRE(r);
  REQUIRE(std::holds_alternative<control::error_reply>(*r));
  CHECK(std::get<control::error_reply>(*r).id == ping.id);
  CHECK_THAT(std::get<control::error_reply>(*r).error,
             Catch::Contains("node 'n2', not 'n9'"));
  control::status_request status;
  status.id = 5;
  auto e = control::decode_reply<control::gossip_ack>(
    net.node("n2").m->serve(status, net.now));
  REQUIRE(e);
  CHECK(std::holds_alternative<control::error_reply>(*e));
  // A members request is answered with the view.
  control::members_request members;
  members.id = 6;
  auto v = control::decode_reply<control::members_reply>(
    net.node("n2").m->serve(members, net.now));
  REQUIRE(v);
  auto& view = std::get<control::members_reply>(*v);
  CHECK(view.id == 6);
  CHECK(view.self == "n2");
  CHECK(view.members.size() == 5);
}

TEST_CASE("a node whose seeds do not answer retries them with backoff",
          "[membership]") {
  network net;
  net.start("n2", {"n1", "n3"});
  net.run_for(20s);
  CHECK_FALSE(net.node("n2").m->joined());
  auto& logs = net.node("n2").logs;
  auto rounds = std::count_if(logs.begin(), logs.end(), [](auto& l) {
    return l.find("no seed let this node join cluster 'herald' (tried "
                  "sim://n1, sim://n3)")
           != std::string::npos;
  });
  // Rounds after 0.5, 1, 2, 4, 8 s of backoff (plus 2 s of timeouts each):
  // a handful, not one per tick.
  CHECK(rounds >= 3);
  CHECK(rounds <= 6);
  // A seed that comes up is joined through.
  net.start("n3");
  REQUIRE(net.run_until(
    [&] {
      return net.one_view({"n2", "n3"});
    },
    15s));
}

TEST_CASE("a node whose seeds do not answer is up once another joins "
          "through it",
          "[membership]") {
  network net;
  net.start("n1", {"nowhere"});
  net.run_for(3s);
  CHECK_FALSE(net.node("n1").m->joined());
  net.start("n2", {"n1"});
  REQUIRE(net.run_until(
    [&] {
      return net.one_view({"n1", "n2"});
    },
    3s));
  CHECK(net.node("n1").m->joined());
  CHECK(net.node("n1").m->self().status == member_status::up);
  // No more rounds of "no seed let this node join" once it is a member.
  auto count = [&] {
    auto& logs = net.node("n1").logs;
    return std::count_if(logs.begin(), logs.end(), [](auto& l) {
      return l.find("no seed let this node join") != std::string::npos;
    });
  };
  auto before = count();
  net.run_for(20s);
  CHECK(count() == before);
}

TEST_CASE("overrides: a higher incarnation, or a later status at one",
          "[membership]") {
  control::cluster_member a;
  a.name = "n1";
  a.incarnation = 3;
  a.status = member_status::up;
  auto b = a;
  b.status = member_status::suspect;
  CHECK(cluster::overrides(b, a));
  CHECK_FALSE(cluster::overrides(a, b));
  b.status = member_status::joining;
  CHECK_FALSE(cluster::overrides(b, a));
  CHECK_FALSE(cluster::overrides(a, b));
  b.status = member_status::leaving;
  auto c = b;
  c.status = member_status::down;
  CHECK(cluster::overrides(b, c));
  a.incarnation = 4;
  CHECK(cluster::overrides(a, b));
  CHECK_FALSE(cluster::overrides(b, a));
}

TEST_CASE("a member that changes what it announces raises its incarnation, "
          "and the others report the new record",
          "[membership]") {
  network net;
  start_five(net);
  for (auto& o : five)
    net.node(o).changes.clear();
  auto& n2 = net.node("n2");
  auto self = n2.m->self();
  auto before = self.incarnation;
  self.consumers.push_back({"AuditService", {"order.>"}});
  self.incarnation = 0; // ignored: membership owns it
  n2.m->update_self(self);
  CHECK(n2.m->self().incarnation == before + 1);
  CHECK(n2.persisted == before + 1);
  REQUIRE(net.run_until(
    [&] {
      return std::all_of(five.begin(), five.end(), [&](auto& o) {
        return net.record(o, "n2")->consumers.size() == 2;
      });
    },
    3s));
  net.tick();
  for (auto& o : others("n2")) {
    INFO(o);
    auto& changes = net.node(o).changes;
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].before->consumers.size() == 1);
    CHECK(changes[0].now.incarnation == before + 1);
    CHECK_THAT(changes[0].why, Catch::Contains("new record"));
  }
}

namespace {

// A ping from member `from` to `to` carrying `updates` after `from`'s own
// record, as a member gossiping would send it; serves it on `to`.
std::string gossip_to(network& net, const std::string& from,
                      const std::string& to,
                      std::vector<control::cluster_member> updates) {
  control::gossip_ping ping;
  ping.id = control::gossip_id_bit | 77;
  ping.cluster = "herald";
  ping.from = from;
  ping.incarnation = net.node(from).m->self().incarnation;
  ping.target = to;
  ping.updates = {net.node(from).m->self()};
  for (auto& u : updates)
    ping.updates.push_back(u);
  return net.node(to).m->serve(ping, net.now);
}

size_t count_logged(network& net, const std::string& id,
                    const std::string& text) {
  auto& logs = net.node(id).logs;
  return static_cast<size_t>(
    std::count_if(logs.begin(), logs.end(), [&](auto& l) {
      return l.find(text) != std::string::npos;
    }));
}

} // namespace

TEST_CASE("a stream held by a live member is refused to another name, "
          "second- or first-hand, until the holder is down",
          "[membership]") {
  network net;
  start_five(net);
  // n2 gossips a member 'liar' claiming n4's stream, with its own
  // endpoints: n3 would connect to it for n4's events.
  control::cluster_member liar;
  liar.name = "liar";
  liar.stream = "stream-n4";
  liar.incarnation = 1;
  liar.status = member_status::up;
  liar.pub = "sim-pub://liar";
  liar.control = "sim://liar";
  auto& n3 = net.node("n3");
  CHECK(n3.m->claims_refused_total() == 0);
  gossip_to(net, "n2", "n3", {liar});
  gossip_to(net, "n2", "n3", {liar});
  CHECK_FALSE(net.record("n3", "liar"));
  CHECK(n3.m->claims_refused_total() == 2);
  // Logged once, naming both members, the rule and what to do.
  CHECK(count_logged(net, "n3",
                     "refused member 'liar' claiming stream "
                     "stream-n4")
        == 1);
  CHECK(net.logged("n3", "held by member 'n4', which is up"));
  CHECK(net.logged("n3", "one member at a time"));
  CHECK(net.logged("n3", "data dir of its own"));

  // First-hand: a process named 'liar' with n4's stream joins through n1
  // and is refused; no member takes it.
  auto& l = net.start("liar", {"n1"}, std::string{"stream-n4"});
  net.run_for(3s);
  CHECK_FALSE(l.m->joined());
  for (auto& o : five) {
    INFO(o);
    CHECK_FALSE(net.record(o, "liar"));
    CHECK(net.record(o, "n4")->control == "sim://n4");
  }
  CHECK(net.logged("liar", "held by member 'n4'"));

  // Once n4 is down, the claim is accepted.
  net.kill("n4");
  auto rest = others("n4");
  REQUIRE(net.run_until(
    [&] {
      return std::all_of(rest.begin(), rest.end(), [&](auto& o) {
        auto r = net.record(o, "liar");
        return r && r->stream == "stream-n4" && r->status == member_status::up;
      });
    },
    20s));
  CHECK(l.m->joined());
  // And n4 coming back up with that stream is refused in turn.
  auto n4_back = *net.record("n3", "n4");
  n4_back.incarnation += 5;
  n4_back.status = member_status::up;
  gossip_to(net, "n2", "n3", {n4_back});
  CHECK(net.status("n3", "n4") == member_status::down);
  CHECK(net.logged("n3", "held by member 'liar'"));
}

TEST_CASE("a live member's endpoints change only first-hand; a restart on "
          "new ports reaches every member",
          "[membership]") {
  network net;
  start_five(net);
  auto& n3 = net.node("n3");
  auto known = *net.record("n3", "n4");
  // n2 gossips n4's record at a higher incarnation with its own endpoints.
  auto forged = known;
  forged.incarnation += 3;
  forged.pub = "sim-pub://n2";
  forged.control = "sim://n2";
  forged.metrics = "http://n2:9100";
  gossip_to(net, "n2", "n3", {forged});
  auto r = net.record("n3", "n4");
  CHECK(r->pub == "sim-pub://n4");
  CHECK(r->control == "sim://n4");
  CHECK(r->metrics == known.metrics);
  CHECK(r->incarnation == known.incarnation);
  CHECK(n3.m->claims_refused_total() == 1);
  CHECK(net.logged("n3", "took no new endpoints for member 'n4' from 'n2'"));
  // A second-hand record with the known endpoints is still taken (SWIM's
  // dissemination): here n4 suspected at its incarnation.
  auto suspected = known;
  suspected.status = member_status::suspect;
  gossip_to(net, "n2", "n3", {suspected});
  CHECK(net.status("n3", "n4") == member_status::suspect);
  // From n4 itself, new endpoints are taken.
  auto own = net.node("n4").m->self();
  own.metrics = "http://n4:9200";
  net.node("n4").m->update_self(own);
  gossip_to(net, "n4", "n3", {});
  CHECK(net.record("n3", "n4")->metrics == "http://n4:9200");
  CHECK(net.status("n3", "n4") == member_status::up);

  // n5 restarted on new ports before anyone saw it down: n1 hears it
  // first-hand (its join), the others from n5 itself when it pings them.
  net.restart_elsewhere("n5", "n5b", {"n1"});
  auto rest = others("n5");
  auto took = net.run_until(
    [&] {
      return std::all_of(rest.begin(), rest.end(), [&](auto& o) {
        auto r = net.record(o, "n5");
        return r && r->control == "sim://n5b" && r->pub == "sim-pub://n5b"
               && r->status == member_status::up;
      });
    },
    5s);
  REQUIRE(took);
  INFO("took " << std::chrono::duration<double>(*took).count() << " s");
  CHECK(*took <= 2s);
}
