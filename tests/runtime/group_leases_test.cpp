// The stream owner's lease table (runtime/src/group_leases.hpp), rule by
// rule, on a fake monotonic clock and an in-memory group_store.

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "deadline.hpp"
#include "group_feed.hpp"
#include "group_leases.hpp"
#include "herald/core/errc.hpp"
#include "herald/runtime/control.hpp"
#include "herald/runtime/control_client.hpp"
#include "node_support.hpp"

using namespace herald;
using namespace std::chrono_literals;
using clk = group_leases::clock;

namespace {

constexpr auto ttl = 6000ms;
constexpr uint32_t parts = 8;

// The durable state a node keeps, and failures to inject.
struct memory_store {
  std::map<std::pair<std::string, uint32_t>, uint64_t> offsets;
  std::map<std::string, uint32_t> partitions;
  std::set<std::string> remote;
  std::set<std::string> set;
  int offset_writes = 0;
  bool fail_writes = false;
  bool fail_reads = false;

  group_store view() {
    group_store s;
    s.load_offset = [this](const std::string& g,
                           uint32_t p) -> caf::expected<uint64_t> {
      if (fail_reads)
        return make_error(errc::io_error, "disk gone");
      auto it = offsets.find({g, p});
      return it == offsets.end() ? 0 : it->second;
    };
    s.store_offsets =
      [this](
        const std::string& g,
        const std::vector<std::pair<uint32_t, uint64_t>>& batch) -> caf::error {
      if (fail_writes)
        return make_error(errc::io_error, "disk full");
      ++offset_writes;
      for (auto& [p, offset] : batch)
        offsets[{g, p}] = offset;
      return {};
    };
    s.remote = [this](const std::string& g) -> caf::expected<bool> {
      if (fail_reads)
        return make_error(errc::io_error, "disk gone");
      return remote.count(g) > 0;
    };
    s.mark_remote = [this](const std::string& g) -> caf::error {
      if (fail_writes)
        return make_error(errc::io_error, "disk full");
      remote.insert(g);
      return {};
    };
    s.partitions = [this](const std::string& g) -> caf::expected<uint32_t> {
      if (fail_reads)
        return make_error(errc::io_error, "disk gone");
      auto it = partitions.find(g);
      return it == partitions.end() ? 0u : it->second;
    };
    s.store_partitions = [this](const std::string& g,
                                uint32_t n) -> caf::error {
      if (fail_writes)
        return make_error(errc::io_error, "disk full");
      partitions[g] = n;
      return {};
    };
    s.offsets_set = [this](const std::string& g) -> caf::expected<bool> {
      if (fail_reads)
        return make_error(errc::io_error, "disk gone");
      return set.count(g) > 0;
    };
    s.set_offsets =
      [this](
        const std::string& g,
        const std::vector<std::pair<uint32_t, uint64_t>>& batch) -> caf::error {
      if (fail_writes)
        return make_error(errc::io_error, "disk full");
      ++offset_writes;
      for (auto& [p, offset] : batch)
        offsets[{g, p}] = offset;
      set.insert(g);
      return {};
    };
    return s;
  }
};

// One owner, "owner" of stream "S", started at `t0`.
struct owner {
  memory_store store;
  clk::time_point t0 = clk::time_point{} + 100h;
  clk::time_point now = t0;
  std::unique_ptr<group_leases> leases;

  explicit owner(uint64_t incarnation = 1, bool restarted = false) {
    start(incarnation, restarted);
  }

  // (Re)starts the owner now, over the same store.
  void start(uint64_t incarnation, bool restarted) {
    t0 = now;
    leases = std::make_unique<group_leases>("S", "owner", incarnation, ttl,
                                            restarted, t0, store.view());
  }

  lease_reply ask(const std::string& member, std::vector<lease_entry> entries,
                  uint32_t partitions = parts, uint64_t initial = 0,
                  const std::string& group = "G") {
    lease_request r;
    r.stream = "S";
    r.group = group;
    r.member = member;
    r.partitions = partitions;
    r.initial = initial;
    r.entries = std::move(entries);
    return leases->serve(r, now);
  }

  // One entry's answer.
  lease_entry_reply one(const std::string& member, lease_entry e,
                        uint32_t partitions = parts) {
    auto r = ask(member, {e}, partitions);
    REQUIRE(r.error.empty());
    REQUIRE(r.entries.size() == 1);
    return r.entries.front();
  }

  lease_entry_reply acquire(const std::string& member, uint32_t p,
                            uint32_t partitions = parts) {
    return one(member, {p, lease_op::acquire, 0, 0}, partitions);
  }
  lease_entry_reply standby(const std::string& member, uint32_t p) {
    return one(member, {p, lease_op::standby, 0, 0});
  }
  lease_entry_reply renew(const std::string& member, uint32_t p, uint64_t epoch,
                          uint64_t offset = 0) {
    return one(member, {p, lease_op::renew, epoch, offset});
  }
  lease_entry_reply release(const std::string& member, uint32_t p,
                            uint64_t epoch, uint64_t offset = 0,
                            uint32_t partitions = parts) {
    return one(member, {p, lease_op::release, epoch, offset}, partitions);
  }
};

} // namespace

TEST_CASE("a lease is granted to one member and refused to another while "
          "it runs",
          "[groups]") {
  owner o;
  auto a = o.acquire("a", 3);
  CHECK(a.result == lease_result::granted);
  CHECK(a.partition == 3);
  CHECK(a.holder == "a");
  CHECK(a.epoch == (uint64_t{1} << 32 | 1));
  o.now += ttl - 1ms;
  auto b = o.acquire("b", 3);
  CHECK(b.result == lease_result::refused);
  CHECK(b.holder == "a");
  CHECK(b.epoch == a.epoch);
  CHECK_THAT(b.reason, Catch::Contains("'a' holds it"));
  // Another partition is free.
  CHECK(o.acquire("b", 4).result == lease_result::granted);
}

TEST_CASE("the holder asking again gets a new epoch, fencing its old self",
          "[groups]") {
  owner o;
  auto first = o.acquire("a", 0);
  auto again = o.acquire("a", 0);
  REQUIRE(again.result == lease_result::granted);
  CHECK(again.epoch > first.epoch);
  CHECK(o.renew("a", 0, first.epoch, 10).result == lease_result::stale);
  CHECK(o.store.offsets.empty());
  CHECK(o.renew("a", 0, again.epoch, 10).result == lease_result::renewed);
}

TEST_CASE("epochs of a later incarnation are higher than every earlier one",
          "[groups]") {
  owner o{1, false};
  uint64_t highest = 0;
  for (int i = 0; i < 5; ++i)
    highest = o.acquire("owner", 1).epoch;
  o.start(2, true);
  auto later = o.acquire("owner", 1);
  REQUIRE(later.result == lease_result::granted);
  CHECK(later.epoch > highest);
  CHECK(later.epoch == (uint64_t{2} << 32 | 1));
  // The lease of the first incarnation is stale at the second.
  CHECK(o.renew("owner", 1, highest, 5).result == lease_result::stale);
}

TEST_CASE("a stale renew or release changes nothing, offset included",
          "[groups]") {
  owner o;
  auto a = o.acquire("a", 2);
  REQUIRE(o.renew("a", 2, a.epoch, 10).result == lease_result::renewed);
  o.now += ttl; // a's lease expires
  auto b = o.acquire("b", 2);
  REQUIRE(b.result == lease_result::granted);
  CHECK(b.offset == 10);
  auto writes = o.store.offset_writes;

  auto late = o.renew("a", 2, a.epoch, 50);
  CHECK(late.result == lease_result::stale);
  CHECK(late.epoch == b.epoch);
  CHECK(late.holder == "b");
  CHECK(late.offset == 10);
  CHECK_FALSE(late.reason.empty());
  auto gone = o.release("a", 2, a.epoch, 60);
  CHECK(gone.result == lease_result::stale);
  // The right epoch from the wrong member is stale too.
  CHECK(o.renew("a", 2, b.epoch, 70).result == lease_result::stale);
  CHECK(o.store.offset_writes == writes);
  CHECK(o.store.offsets[{"G", 2}] == 10);
  // b still holds it, undisturbed.
  auto renewed = o.renew("b", 2, b.epoch, 11);
  CHECK(renewed.result == lease_result::renewed);
  CHECK(renewed.offset == 11);

  // An expired lease's own holder is stale as well.
  o.now += ttl;
  CHECK(o.renew("b", 2, b.epoch, 12).result == lease_result::stale);
  CHECK(o.store.offsets[{"G", 2}] == 11);
}

TEST_CASE("a renewal extends the lease by ttl from now", "[groups]") {
  owner o;
  auto a = o.acquire("a", 0);
  o.now += ttl - 1ms;
  REQUIRE(o.renew("a", 0, a.epoch).result == lease_result::renewed);
  o.now += ttl - 1ms; // 2 ttl - 2 ms after the grant
  CHECK(o.acquire("b", 0).result == lease_result::refused);
  o.now += 1ms;
  CHECK(o.acquire("b", 0).result == lease_result::granted);
}

TEST_CASE("an expired or released lease frees the partition", "[groups]") {
  owner o;
  auto a = o.acquire("a", 0);
  o.now += ttl - 1ms;
  CHECK(o.acquire("b", 0).result == lease_result::refused);
  o.now += 1ms;
  auto b = o.acquire("b", 0);
  CHECK(b.result == lease_result::granted);
  CHECK(b.epoch > a.epoch);

  auto released = o.release("b", 0, b.epoch, 7);
  CHECK(released.result == lease_result::released);
  CHECK(released.offset == 7);
  CHECK(released.holder.empty());
  auto c = o.acquire("c", 0);
  CHECK(c.result == lease_result::granted);
  CHECK(c.offset == 7);
}

TEST_CASE("standby is granted only once nobody held the partition for ttl",
          "[groups]") {
  owner o;
  SECTION("never held: ttl since the start") {
    o.now += ttl - 1ms;
    auto early = o.standby("b", 5);
    CHECK(early.result == lease_result::refused);
    CHECK(early.holder.empty());
    CHECK_FALSE(early.reason.empty());
    o.now += 1ms;
    CHECK(o.standby("b", 5).result == lease_result::granted);
  }
  SECTION("released: ttl since the release") {
    o.now += 1h;
    auto a = o.acquire("a", 5);
    CHECK(o.standby("b", 5).result == lease_result::refused);
    o.now += 1s;
    REQUIRE(o.release("a", 5, a.epoch).result == lease_result::released);
    o.now += ttl - 1ms;
    CHECK(o.standby("b", 5).result == lease_result::refused);
    o.now += 1ms;
    CHECK(o.standby("b", 5).result == lease_result::granted);
  }
  SECTION("expired: ttl since the expiry") {
    o.now += 1h;
    o.acquire("a", 5);
    o.now += ttl + ttl - 1ms;
    CHECK(o.standby("b", 5).result == lease_result::refused);
    o.now += 1ms;
    CHECK(o.standby("b", 5).result == lease_result::granted);
  }
}

TEST_CASE("a refused acquire marks the partition wanted for its holder once; "
          "a refused standby does not",
          "[groups]") {
  owner o;
  auto a = o.acquire("a", 1);
  o.now += 1h - ttl; // far from the start, a's lease renewed below
  a = o.acquire("a", 1);
  CHECK(o.standby("b", 1).result == lease_result::refused);
  CHECK_FALSE(o.renew("a", 1, a.epoch).wanted);
  CHECK(o.acquire("b", 1).result == lease_result::refused);
  CHECK(o.renew("a", 1, a.epoch).wanted);
  CHECK_FALSE(o.renew("a", 1, a.epoch).wanted);
}

TEST_CASE("orphans are the partitions nobody held for ttl", "[groups]") {
  owner o;
  auto r = o.ask("a", {{0, lease_op::acquire, 0, 0}}, 4);
  REQUIRE(r.entries.at(0).result == lease_result::granted);
  CHECK(r.orphans.empty()); // before ttl since the start
  auto epoch = r.entries[0].epoch;
  o.now += ttl - 1ms;
  r = o.ask("a", {{0, lease_op::renew, epoch, 0}}, 4);
  CHECK(r.orphans.empty());
  o.now += 1ms;
  r = o.ask("a", {{0, lease_op::renew, epoch, 0}}, 4);
  CHECK(r.orphans == std::vector<uint32_t>{1, 2, 3});
  r = o.ask("a", {{0, lease_op::release, epoch, 0}}, 4);
  CHECK(r.orphans == std::vector<uint32_t>{1, 2, 3});
  o.now += ttl;
  r = o.ask("b", {}, 4);
  CHECK(r.orphans == std::vector<uint32_t>{0, 1, 2, 3});
  CHECK(r.ttl_ms == 6000);
}

TEST_CASE("offsets only move forward and are stored before the reply",
          "[groups]") {
  owner o;
  auto a = o.acquire("a", 6);
  CHECK(o.renew("a", 6, a.epoch, 100).offset == 100);
  CHECK(o.store.offsets[{"G", 6}] == 100);
  auto lower = o.renew("a", 6, a.epoch, 40);
  CHECK(lower.result == lease_result::renewed);
  CHECK(lower.offset == 100);
  CHECK(o.store.offsets[{"G", 6}] == 100);
  CHECK(o.renew("a", 6, a.epoch, 0).offset == 100);

  SECTION("a failing store answers an error and commits nothing") {
    o.store.fail_writes = true;
    auto r = o.ask("a", {{6, lease_op::renew, a.epoch, 200}});
    CHECK_THAT(r.error, Catch::Contains("disk full"));
    CHECK(r.entries.empty());
    o.store.fail_writes = false;
    CHECK(o.renew("a", 6, a.epoch).offset == 100);
  }
  SECTION("a new owner reads them") {
    o.now += ttl;
    o.start(2, true);
    CHECK(o.acquire("owner", 6).offset == 100);
  }
}

TEST_CASE("a restarted owner grants nothing for ttl to a group with remote "
          "members",
          "[groups]") {
  owner o;
  o.now += 1h;
  REQUIRE(o.acquire("remote-node", 0).result == lease_result::granted);
  CHECK(o.store.remote.count("G") == 1);
  REQUIRE(o.ask("owner", {{0, lease_op::acquire, 0, 0}}, parts, 0, "local")
            .entries.at(0)
            .result
          == lease_result::granted);
  CHECK(o.store.remote.count("local") == 0);

  o.now += 1s;
  o.start(2, true);
  auto held = o.acquire("remote-node", 1);
  CHECK(held.result == lease_result::refused);
  CHECK(held.holder.empty());
  CHECK_THAT(held.reason, Catch::Contains("restarted"));
  CHECK_THAT(held.reason, Catch::Contains("6000 ms"));
  CHECK(o.ask("remote-node", {}).orphans.empty());
  // A group only ever held by the node itself goes on at once.
  auto local =
    o.ask("owner", {{0, lease_op::acquire, 0, 0}}, parts, 0, "local");
  CHECK(local.entries.at(0).result == lease_result::granted);

  o.now += ttl - 1ms;
  CHECK(o.acquire("owner", 1).result == lease_result::refused);
  o.now += 1ms;
  CHECK(o.acquire("remote-node", 1).result == lease_result::granted);

  SECTION("a first start holds back nothing") {
    o.now += 1h;
    o.start(1, false);
    CHECK(o.acquire("remote-node", 1).result == lease_result::granted);
  }
}

TEST_CASE("a member with another partition count is refused while leases "
          "run, naming both numbers",
          "[groups]") {
  owner o;
  auto a = o.acquire("a", 0, 8);
  REQUIRE(a.result == lease_result::granted);
  auto r = o.ask(
    "b", {{1, lease_op::acquire, 0, 0}, {2, lease_op::standby, 0, 0}}, 16);
  REQUIRE(r.entries.size() == 2);
  for (auto& e : r.entries) {
    CHECK(e.result == lease_result::refused);
    CHECK_THAT(e.reason, Catch::Contains("8 partitions"));
    CHECK_THAT(e.reason, Catch::Contains("has 16"));
  }
  CHECK(o.store.partitions["G"] == 8);
  CHECK(o.acquire("b", 0, 0).result == lease_result::refused);
  CHECK(o.acquire("b", 8, 8).result == lease_result::refused); // out of range
}

TEST_CASE("the partition count changes once no lease runs; the new "
          "partitions start at the lowest old offset",
          "[groups]") {
  owner o;
  std::vector<uint64_t> offsets{10, 20, 5, 30};
  for (uint32_t p = 0; p < 4; ++p) {
    auto a = o.acquire("a", p, 4);
    REQUIRE(o.release("a", p, a.epoch, offsets[p], 4).offset == offsets[p]);
  }
  REQUIRE(o.store.partitions["G"] == 4);
  // Releasing ended every lease: the count may change at once.
  auto b = o.acquire("b", 7, 8);
  REQUIRE(b.result == lease_result::granted);
  CHECK(b.offset == 5);
  CHECK(o.store.partitions["G"] == 8);
  for (uint32_t p = 0; p < 8; ++p)
    CHECK(o.store.offsets[std::pair<std::string, uint32_t>{"G", p}] == 5);
  // The new number is fixed now that b holds a lease.
  CHECK(o.acquire("a", 1, 4).result == lease_result::refused);
}

TEST_CASE("a member's initial offset is taken for partitions without one",
          "[groups]") {
  owner o;
  o.store.offsets[{"G", 1}] = 3;
  auto r =
    o.ask("a", {{0, lease_op::acquire, 0, 0}, {1, lease_op::acquire, 0, 0}},
          parts, 42);
  REQUIRE(r.entries.size() == 2);
  CHECK(r.entries[0].offset == 42);
  CHECK(r.entries[1].offset == 3);
  CHECK(o.store.offsets[{"G", 0}] == 42);
}

TEST_CASE("a request for another stream or failing reads are errors",
          "[groups]") {
  owner o;
  lease_request r;
  r.stream = "T";
  r.group = "G";
  r.member = "a";
  r.partitions = parts;
  r.entries = {{0, lease_op::acquire, 0, 0}};
  auto other = o.leases->serve(r, o.now);
  CHECK_THAT(other.error, Catch::Contains("'T'"));
  CHECK(other.entries.empty());

  o.store.fail_reads = true;
  auto failing = o.ask("a", {{0, lease_op::acquire, 0, 0}});
  CHECK_THAT(failing.error, Catch::Contains("disk gone"));
  CHECK(failing.entries.empty());
  o.store.fail_reads = false;
  CHECK(o.acquire("a", 0).result == lease_result::granted);
}

TEST_CASE("describe shows holders, epochs, expiry and offsets", "[groups]") {
  owner o;
  auto a = o.acquire("a", 2);
  o.renew("a", 2, a.epoch, 9);
  o.now += 1s;
  auto view = o.leases->describe("G", o.now);
  REQUIRE(view.size() == 1);
  CHECK(view[0].partition == 2);
  CHECK(view[0].holder == "a");
  CHECK(view[0].epoch == a.epoch);
  CHECK(view[0].expires_in_ms == 5000);
  CHECK(view[0].offset == 9);
  CHECK(o.leases->groups() == std::vector<std::string>{"G"});
  o.now += ttl;
  view = o.leases->describe("G", o.now);
  CHECK(view[0].holder.empty());
  CHECK(view[0].expires_in_ms == 0);
}

// --- the node: group.lease over its control endpoint, state in its log ----

namespace {

control_client lease_client(const std::string& endpoint) {
  control_client_options opts;
  opts.timeout = 10s;
  auto c = control_client::connect(endpoint, opts);
  if (!c)
    FAIL("no client: " << message_of(c.error()));
  return std::move(*c);
}

control::group_lease_request
lease_req(const std::string& stream, const std::string& member, lease_entry e) {
  control::group_lease_request m;
  m.body.stream = stream;
  m.body.group = "EmailService";
  m.body.member = member;
  m.body.partitions = 16;
  m.body.entries = {e};
  return m;
}

} // namespace

TEST_CASE("a node serves group.lease for its own stream and keeps the "
          "group's state in its log across a restart",
          "[groups][runtime]") {
  auto cfg = make_config("owner", "UserService");
  cfg.groups.lease_ttl = 1s;
  cfg.groups.lease_margin = 200ms;
  std::string stream;
  uint64_t epoch = 0;
  {
    auto n = herald::start(cfg);
    stream = n->stream();
    auto client = lease_client(n->control_endpoint());
    auto granted =
      client.call(lease_req(stream, "email-2", {3, lease_op::acquire, 0, 0}));
    REQUIRE(granted);
    REQUIRE(granted->body.entries.size() == 1);
    auto& g = granted->body.entries[0];
    CHECK(g.result == lease_result::granted);
    CHECK(g.epoch == (uint64_t{1} << 32 | 1)); // first incarnation
    CHECK(granted->body.ttl_ms == 1000);
    epoch = g.epoch;
    auto renewed = client.call(
      lease_req(stream, "email-2", {3, lease_op::renew, epoch, 41}));
    REQUIRE(renewed);
    CHECK(renewed->body.entries.at(0).result == lease_result::renewed);
    CHECK(renewed->body.entries.at(0).offset == 41);
    auto refused =
      client.call(lease_req(stream, "email-3", {3, lease_op::acquire, 0, 0}));
    REQUIRE(refused);
    CHECK(refused->body.entries.at(0).result == lease_result::refused);
    CHECK(refused->body.entries.at(0).holder == "email-2");

    auto other = client.call(
      lease_req("another-stream", "email-2", {3, lease_op::acquire, 0, 0}));
    REQUIRE_FALSE(other);
    CHECK(is(other.error(), errc::remote_error));
    CHECK_THAT(message_of(other.error()),
               Catch::Contains("unknown stream 'another-stream'"));
  }
  // The same data dir again: a member on another node held a lease, so
  // nothing is granted for one ttl; then the committed offset is there.
  auto n = herald::start(cfg);
  REQUIRE(n->stream() == stream);
  auto client = lease_client(n->control_endpoint());
  auto held =
    client.call(lease_req(stream, "email-3", {3, lease_op::acquire, 0, 0}));
  REQUIRE(held);
  CHECK(held->body.entries.at(0).result == lease_result::refused);
  CHECK_THAT(held->body.entries.at(0).reason, Catch::Contains("restarted"));
  auto stale =
    client.call(lease_req(stream, "email-2", {3, lease_op::renew, epoch, 99}));
  REQUIRE(stale);
  CHECK(stale->body.entries.at(0).result == lease_result::stale);
  lease_entry_reply got;
  CHECK(test::wait_until(
    [&] {
      auto r =
        client.call(lease_req(stream, "email-3", {3, lease_op::acquire, 0, 0}));
      if (!r || r->body.entries.empty())
        return false;
      got = r->body.entries[0];
      return got.result == lease_result::granted;
    },
    5s));
  CHECK(got.offset == 41);
  // A later incarnation (leaving at stop raises it too), first grant.
  CHECK(got.epoch > epoch);
  CHECK((got.epoch & 0xffffffff) == 1);
}

// -- the group's members, from membership ------------------------------------

namespace {

control::cluster_member member_record(std::string name,
                                      control::member_status status,
                                      std::vector<std::string> consumers) {
  control::cluster_member m;
  m.name = std::move(name);
  m.status = status;
  for (auto& c : consumers)
    m.consumers.push_back({std::move(c), {}});
  return m;
}

} // namespace

TEST_CASE("a group's members are the nodes running its consumer that are "
          "joining, up or suspect, and this node; sorted, each once",
          "[groups]") {
  using control::member_status;
  group_feed feed{"email-2", 10s};
  auto t0 = clk::time_point{} + 1h;
  feed.observe(
    {member_record("email-3", member_status::up, {"EmailService"}),
     member_record("email-1", member_status::suspect,
                   {"AuditService", "EmailService"}),
     member_record("email-2", member_status::up, {"EmailService"}),
     member_record("email-4", member_status::joining, {"EmailService"}),
     member_record("email-5", member_status::down, {"EmailService"}),
     member_record("user", member_status::up, {}),
     member_record("audit", member_status::up, {"AuditService"})},
    t0);
  CHECK(
    feed.members("EmailService")
    == std::vector<std::string>{"email-1", "email-2", "email-3", "email-4"});
  // This node is in every group it asks about, running it or not here.
  CHECK(feed.members("AuditService")
        == std::vector<std::string>{"audit", "email-1", "email-2"});
  CHECK(feed.members("BillingService") == std::vector<std::string>{"email-2"});
}

TEST_CASE("a member that leaves keeps its place for the rejoin grace from "
          "when it was first seen leaving; a down one loses it at once",
          "[groups]") {
  using control::member_status;
  group_feed feed{"email-1", 10s};
  auto t0 = clk::time_point{} + 1h;
  auto view = [](member_status two, member_status three) {
    return std::vector<control::cluster_member>{
      member_record("email-1", member_status::up, {"EmailService"}),
      member_record("email-2", two, {"EmailService"}),
      member_record("email-3", three, {"EmailService"})};
  };
  const std::vector<std::string> all{"email-1", "email-2", "email-3"};
  feed.observe(view(member_status::leaving, member_status::down), t0);
  CHECK(feed.members("EmailService")
        == std::vector<std::string>{"email-1", "email-2"});
  feed.observe(view(member_status::leaving, member_status::up), t0 + 9s);
  CHECK(feed.members("EmailService") == all);
  // The grace runs from the first sight, not from the latest.
  feed.observe(view(member_status::leaving, member_status::up), t0 + 10s);
  CHECK(feed.members("EmailService")
        == std::vector<std::string>{"email-1", "email-3"});
  // Back (a restart within or after the grace): counted again, and a
  // later leave starts a new grace.
  feed.observe(view(member_status::up, member_status::up), t0 + 11s);
  CHECK(feed.members("EmailService") == all);
  feed.observe(view(member_status::leaving, member_status::up), t0 + 20s);
  CHECK(feed.members("EmailService") == all);
  feed.observe(view(member_status::leaving, member_status::up), t0 + 29s);
  CHECK(feed.members("EmailService") == all);
  feed.observe(view(member_status::leaving, member_status::up), t0 + 30s);
  CHECK(feed.members("EmailService")
        == std::vector<std::string>{"email-1", "email-3"});
  // No grace at all: a leaving member is out at once.
  group_feed strict{"email-1", 0s};
  strict.observe(view(member_status::leaving, member_status::up), t0);
  CHECK(strict.members("EmailService")
        == std::vector<std::string>{"email-1", "email-3"});
}

TEST_CASE("a request's commits are stored in one write, all or none",
          "[groups]") {
  owner o;
  auto one = o.acquire("a", 1);
  auto two = o.acquire("a", 2);
  auto three = o.acquire("a", 3);
  auto writes = o.store.offset_writes;
  auto r = o.ask("a", {{1, lease_op::renew, one.epoch, 10},
                       {2, lease_op::renew, two.epoch, 20},
                       {3, lease_op::release, three.epoch, 30}});
  REQUIRE(r.error.empty());
  CHECK(o.store.offset_writes == writes + 1);
  CHECK(o.store.offsets[{"G", 1}] == 10);
  CHECK(o.store.offsets[{"G", 2}] == 20);
  CHECK(o.store.offsets[{"G", 3}] == 30);

  // A failing write: an error, and no offset moved, in the store or in
  // what the owner answers next.
  o.store.fail_writes = true;
  r = o.ask("a", {{1, lease_op::renew, one.epoch, 11},
                  {2, lease_op::renew, two.epoch, 21}});
  CHECK_THAT(r.error, Catch::Contains("cannot store the committed offsets of "
                                      "2 partition(s), partition 1 first")
                        && Catch::Contains("disk full"));
  o.store.fail_writes = false;
  CHECK(o.store.offsets[{"G", 1}] == 10);
  CHECK(o.store.offsets[{"G", 2}] == 20);
  CHECK(o.renew("a", 1, one.epoch).offset == 10);
  CHECK(o.renew("a", 2, two.epoch).offset == 20);
}

TEST_CASE("set_offsets is refused while a lease of the group runs, naming "
          "its holder",
          "[groups][group_admin]") {
  owner o;
  auto a = o.acquire("a", 3);
  REQUIRE(a.result == lease_result::granted);
  auto refused = o.leases->set_offsets("G", 0, false, o.now);
  REQUIRE_FALSE(refused);
  CHECK_THAT(message_of(refused.error()),
             Catch::Contains("partition 3 by 'a'")
               && Catch::Contains("stop its members"));
  // Nothing changed.
  CHECK(o.store.set.empty());
  // Once the lease expired the reset goes through.
  o.now += ttl + 1ms;
  auto done = o.leases->set_offsets("G", 0, false, o.now);
  REQUIRE(done);
  REQUIRE(*done);
  CHECK((*done)->size() == parts);
}

TEST_CASE("set_offsets moves every partition, lower or higher, and a dry run "
          "changes nothing",
          "[groups][group_admin]") {
  owner o;
  for (uint32_t p = 0; p < parts; ++p) {
    auto a = o.acquire("a", p);
    REQUIRE(o.release("a", p, a.epoch, 100 + p).offset == 100 + p);
  }
  auto dry = o.leases->set_offsets("G", 7, true, o.now);
  REQUIRE(dry);
  REQUIRE(*dry);
  REQUIRE((*dry)->size() == parts);
  CHECK((**dry)[2].from == 102);
  CHECK((**dry)[2].to == 7);
  CHECK(o.store.offsets[{"G", 2}] == 102);
  CHECK(o.store.set.empty());

  auto done = o.leases->set_offsets("G", 7, false, o.now);
  REQUIRE(done);
  REQUIRE(*done);
  for (uint32_t p = 0; p < parts; ++p)
    CHECK(o.store.offsets[std::pair<std::string, uint32_t>{"G", p}] == 7);
  // The lease table's own view follows: a grant hands out the new offset.
  CHECK(o.acquire("b", 2).offset == 7);
  auto view = o.leases->inspect("G", o.now);
  REQUIRE(view);
  REQUIRE(*view);
  REQUIRE((*view)->size() == parts);
  CHECK((**view)[2].holder == "b");
  CHECK((**view)[5].offset == 7);
}

TEST_CASE("an unknown group has nothing to inspect or set",
          "[groups][group_admin]") {
  owner o;
  auto view = o.leases->inspect("nobody", o.now);
  REQUIRE(view);
  CHECK_FALSE(*view);
  auto set = o.leases->set_offsets("nobody", 0, false, o.now);
  REQUIRE(set);
  CHECK_FALSE(*set);
}

TEST_CASE("a reset to 0 is not replaced by a member's initial offset, after "
          "a restart too",
          "[groups][group_admin]") {
  owner o;
  for (uint32_t p = 0; p < parts; ++p) {
    auto a = o.acquire("a", p);
    REQUIRE(o.release("a", p, a.epoch, 50).offset == 50);
  }
  REQUIRE(o.leases->set_offsets("G", 0, false, o.now));
  // The member still has its position from before groups: 42.
  auto r = o.ask("a", {{0, lease_op::acquire, 0, 0}}, parts, 42);
  REQUIRE(r.entries.size() == 1);
  CHECK(r.entries[0].offset == 0);
  o.start(2, false);
  r = o.ask("a", {{1, lease_op::acquire, 0, 0}}, parts, 42);
  REQUIRE(r.entries.size() == 1);
  CHECK(r.entries[0].offset == 0);
  CHECK(o.store.offsets[{"G", 1}] == 0);
}

TEST_CASE("set_offsets waits out a restart's hold on a group with remote "
          "members",
          "[groups][group_admin]") {
  owner o;
  auto a = o.acquire("elsewhere", 0);
  REQUIRE(a.result == lease_result::granted);
  o.now += 1ms;
  o.start(2, true);
  auto held = o.leases->set_offsets("G", 0, false, o.now);
  REQUIRE_FALSE(held);
  CHECK_THAT(message_of(held.error()), Catch::Contains("restarted"));
  o.now += ttl;
  CHECK(o.leases->set_offsets("G", 0, false, o.now));
}
