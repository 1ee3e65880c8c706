// The harness' checker on hand-made histories: each case is a small run
// whose verdict a reader can work out by hand.

#include <catch2/catch.hpp>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "harness/checker.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"

namespace {

using namespace herald::harness;

const std::string stream = "s1";

published acked(std::string id, uint64_t seq, std::string key,
                std::string type = "user.account.created") {
  published p;
  p.id = std::move(id);
  p.seq = seq;
  p.key = std::move(key);
  p.type = std::move(type);
  p.stream = stream;
  return p;
}

// A handling record line of the history format.
std::string handled(const std::string& id, uint64_t seq, const std::string& key,
                    const std::string& type = "user.account.created",
                    const std::string& outcome = "handled") {
  return fmt::format(
    R"({{"v":1,"record":"handling","consumer":"EmailService","node":"email",)"
    R"("incarnation":1,"id":"{}","stream":"{}","seq":{},"key":"{}",)"
    R"("type":"{}","attempt":1,"redelivered":false,"outcome":"{}",)"
    R"("start_us":1,"end_us":2,"partition":null,"lease_epoch":null}})"
    "\n",
    id, stream, seq, key, type, outcome);
}

std::string offset(uint64_t at) {
  return fmt::format(
    R"({{"v":1,"record":"offset","consumer":"EmailService","node":"email",)"
    R"("incarnation":1,"stream":"{}","offset":{},"time_us":3}})"
    "\n",
    stream, at);
}

std::string start(const std::string& fail_keys = "") {
  return fmt::format(R"({{"v":1,"record":"start","node":"email",)"
                     R"("incarnation":1,"stream":"e","fail_keys":[{}]}})"
                     "\n",
                     fail_keys);
}

consumer_verdict
judge_one(const std::vector<published>& pubs, const std::string& text,
          std::vector<std::string> patterns = {"user.account.created"},
          checks_spec checks = {}) {
  std::vector<std::pair<std::string, history>> hs;
  hs.emplace_back("email", parse_history(text, "email.jsonl"));
  auto v =
    judge(pubs, hs, {{"email", "EmailService", std::move(patterns)}}, checks);
  REQUIRE(v.consumers.size() == 1);
  CHECK(v.ok() == v.consumers.front().ok);
  return v.consumers.front();
}

} // namespace

TEST_CASE("a history where every event was handled once in order passes",
          "[harness][checker]") {
  auto c = judge_one({acked("a", 1, "k1"), acked("b", 2, "k1")},
                     start() + handled("a", 1, "k1") + handled("b", 2, "k1")
                       + offset(2));
  CHECK(c.ok);
  CHECK(c.expected == 2);
  CHECK(c.handled == 2);
  CHECK(c.lost == 0);
}

TEST_CASE("an acknowledged event nobody handled is lost",
          "[harness][checker]") {
  auto c = judge_one({acked("a", 1, "k1"), acked("b", 2, "k2")},
                     start() + handled("a", 1, "k1"));
  CHECK_FALSE(c.ok);
  CHECK(c.lost == 1);
  REQUIRE_FALSE(c.examples.empty());
  CHECK_THAT(c.examples.front(), Catch::Contains("lost: event b"));
}

TEST_CASE("an event of a type the consumer does not select is not lost",
          "[harness][checker]") {
  auto c = judge_one(
    {acked("a", 1, "k1"), acked("b", 2, "k1", "user.account.deleted")},
    start() + handled("a", 1, "k1"));
  CHECK(c.ok);
  CHECK(c.expected == 1);
}

TEST_CASE("duplicates are counted, and fail only when the scenario says",
          "[harness][checker]") {
  auto history = start() + handled("a", 1, "k1") + handled("b", 2, "k1")
                 + handled("a", 1, "k1") + handled("b", 2, "k1");
  auto c = judge_one({acked("a", 1, "k1"), acked("b", 2, "k1")}, history);
  CHECK(c.ok);
  CHECK(c.duplicates == 2);
  CHECK(c.inversions == 0); // a redelivery is no inversion
  checks_spec strict;
  strict.duplicates_fail = true;
  CHECK_FALSE(judge_one({acked("a", 1, "k1"), acked("b", 2, "k1")}, history,
                        {"user.account.created"}, strict)
                .ok);
}

TEST_CASE("a later event of a key handled first is an inversion",
          "[harness][checker]") {
  auto c =
    judge_one({acked("a", 1, "k1"), acked("b", 2, "k1"), acked("c", 3, "k2")},
              start() + handled("b", 2, "k1") + handled("c", 3, "k2")
                + handled("a", 1, "k1"));
  CHECK_FALSE(c.ok);
  CHECK(c.inversions == 1);
  CHECK(c.lost == 0);
}

TEST_CASE("an inversion across the types of a key is reported, a failure "
          "only when the scenario says",
          "[harness][checker]") {
  std::vector<published> pubs{acked("a", 1, "k1"),
                              acked("b", 2, "k1", "user.account.deleted")};
  auto history = start() + handled("b", 2, "k1", "user.account.deleted")
                 + handled("a", 1, "k1");
  auto c = judge_one(pubs, history, {"user.>"});
  CHECK(c.ok);
  CHECK(c.inversions == 0);
  CHECK(c.cross_type_inversions == 1);
  checks_spec strict;
  strict.cross_type_fail = true;
  CHECK_FALSE(judge_one(pubs, history, {"user.>"}, strict).ok);
}

TEST_CASE("dead letters must be the poison events", "[harness][checker]") {
  std::vector<published> pubs{acked("a", 1, "bad"), acked("b", 2, "good")};
  SECTION("a poison event dead-lettered passes") {
    auto c = judge_one(
      pubs, start(R"("bad")")
              + handled("a", 1, "bad", "user.account.created", "dead_lettered")
              + handled("b", 2, "good"));
    CHECK(c.ok);
    CHECK(c.dead_lettered == 1);
  }
  SECTION("a poison event handled fails") {
    auto c = judge_one(pubs, start(R"("bad")") + handled("a", 1, "bad")
                               + handled("b", 2, "good"));
    CHECK_FALSE(c.ok);
    CHECK(c.poison_handled == 1);
  }
  SECTION("another event dead-lettered fails") {
    auto c = judge_one(
      pubs,
      start(R"("bad")")
        + handled("a", 1, "bad", "user.account.created", "dead_lettered")
        + handled("b", 2, "good", "user.account.created", "dead_lettered"));
    CHECK_FALSE(c.ok);
    CHECK(c.unexpected_dead_letters == 1);
  }
}

TEST_CASE("a record cut short by a kill is skipped and counted; the event "
          "handled again after the restart is no loss",
          "[harness][checker]") {
  auto cut = handled("b", 2, "k1");
  cut.resize(cut.size() / 2); // no newline: the kill came mid-write
  SECTION("as the last line") {
    auto h = parse_history(start() + handled("a", 1, "k1") + cut, "e.jsonl");
    CHECK(h.truncated == 1);
    CHECK(h.records.size() == 2);
    CHECK(h.malformed.empty());
  }
  SECTION("followed by the restart's records, the event handled again") {
    auto c = judge_one({acked("a", 1, "k1"), acked("b", 2, "k1")},
                       start() + handled("a", 1, "k1") + cut + "\n" + start()
                         + handled("b", 2, "k1"));
    CHECK(c.ok);
    CHECK(c.lost == 0);
    CHECK(c.handled == 2);
  }
  SECTION("the checker sees it as not handled yet") {
    auto c = judge_one({acked("a", 1, "k1"), acked("b", 2, "k1")},
                       start() + handled("a", 1, "k1") + cut);
    CHECK(c.lost == 1);
  }
}

TEST_CASE("an event whose publish timed out is never lost, and counted when "
          "delivered",
          "[harness][checker]") {
  published unknown;
  unknown.outcome = published::status::unknown;
  unknown.type = "user.account.created";
  unknown.key = "k2";
  std::vector<published> pubs{acked("a", 1, "k1"), unknown, unknown};
  // One of the two timed-out publishes was stored and handled.
  auto c =
    judge_one(pubs, start() + handled("a", 1, "k1") + handled("x", 2, "k2"));
  CHECK(c.ok);
  CHECK(c.lost == 0);
  CHECK(c.unknown_delivered == 1);
}

TEST_CASE("an offset committed past an event not yet handled fails",
          "[harness][checker]") {
  // What a consumer that commits before handling leaves behind.
  auto c = judge_one({acked("a", 1, "k1"), acked("b", 2, "k2")},
                     start() + offset(2) + handled("a", 1, "k1")
                       + handled("b", 2, "k2"));
  CHECK_FALSE(c.ok);
  CHECK(c.offset_violations == 1);
  CHECK(c.lost == 0);
}

TEST_CASE("a record of an unknown history version is reported",
          "[harness][checker]") {
  auto h = parse_history(R"({"v":2,"record":"handling"})"
                         "\n",
                         "e.jsonl");
  REQUIRE(h.malformed.size() == 1);
  CHECK_THAT(h.malformed.front(), Catch::Contains("e.jsonl:1"));
  CHECK_THAT(h.malformed.front(), Catch::Contains("version 2"));
}

// Consumer groups: one consumer name on several nodes, judged as one.

namespace {

// A handling record of a group member: `node`, partition, lease epoch,
// and its attempt's start and end (microseconds).
struct rec {
  std::string node = "email-1";
  std::string id;
  uint64_t seq = 0;
  std::string key = "k1";
  uint32_t partition = 0;
  uint64_t epoch = 1;
  uint64_t start = 0;
  uint64_t end = 0;
  std::string outcome = "handled";
  std::string type = "user.account.created";

  std::string line() const {
    return fmt::format(
      R"({{"v":1,"record":"handling","consumer":"EmailService","node":"{}",)"
      R"("incarnation":1,"id":"{}","stream":"{}","seq":{},"key":"{}",)"
      R"("type":"{}","attempt":1,"redelivered":false,"outcome":"{}",)"
      R"("start_us":{},"end_us":{},"partition":{},"lease_epoch":{}}})"
      "\n",
      node, id, stream, seq, key, type, outcome, start, end, partition, epoch);
  }
};

// A group's offset of one partition, committed at `time`.
std::string group_offset(const std::string& node, uint64_t at,
                         uint32_t partition, uint32_t partitions, uint64_t time,
                         uint64_t epoch = 1) {
  return fmt::format(
    R"({{"v":1,"record":"offset","consumer":"EmailService","node":"{}",)"
    R"("incarnation":1,"stream":"{}","offset":{},"time_us":{},)"
    R"("partition":{},"lease_epoch":{},"partitions":{}}})"
    "\n",
    node, stream, at, time, partition, epoch, partitions);
}

std::string start_of(const std::string& node) {
  return fmt::format(R"({{"v":1,"record":"start","node":"{}",)"
                     R"("incarnation":1,"stream":"e","fail_keys":[]}})"
                     "\n",
                     node);
}

// Judges the group EmailService over `texts` (node -> history text).
verdict
judge_group(const std::vector<published>& pubs,
            const std::vector<std::pair<std::string, std::string>>& texts,
            checks_spec checks = {},
            const std::vector<fault_record>& faults = {}) {
  std::vector<std::pair<std::string, history>> hs;
  std::vector<consumer_info> consumers;
  for (auto& [node, text] : texts) {
    hs.emplace_back(node, parse_history(start_of(node) + text, node));
    consumers.push_back({node, "EmailService", {"user.account.created"}});
  }
  return judge(pubs, hs, consumers, checks, faults);
}

// A key of `partition` among `partitions`.
std::string key_in(uint32_t partition, uint32_t partitions) {
  for (int i = 0;; ++i) {
    auto k = fmt::format("key{}", i);
    if (herald::partition_of(k, partitions) == partition)
      return k;
  }
}

} // namespace

TEST_CASE("a group whose members handled each event once between them "
          "passes, and no member counts the others' events as lost",
          "[harness][checker][groups]") {
  auto v = judge_group(
    {acked("a", 1, "k1"), acked("b", 2, "k2"), acked("c", 3, "k1")},
    {{"email-1", rec{"email-1", "a", 1, "k1", 0, 1, 10, 20}.line()
                   + rec{"email-1", "c", 3, "k1", 0, 1, 30, 40}.line()},
     {"email-2", rec{"email-2", "b", 2, "k2", 1, 1, 15, 25}.line()}});
  CHECK(v.ok());
  REQUIRE(v.groups.size() == 1);
  auto& g = v.groups.front();
  CHECK(g.consumer == "EmailService");
  CHECK(g.members == std::vector<std::string>{"email-1", "email-2"});
  CHECK(g.expected == 3);
  CHECK(g.handled == 3);
  CHECK(g.lost == 0);
  CHECK(g.duplicates == 0);
  CHECK(g.partitions == 2);
  REQUIRE(v.consumers.size() == 2);
  for (auto& c : v.consumers) {
    CHECK(c.group == "EmailService");
    CHECK(c.lost == 0);
    CHECK(c.ok);
  }
}

TEST_CASE("a consumer on one node is no group", "[harness][checker][groups]") {
  auto v = judge_group({acked("a", 1, "k1")},
                       {{"email-1", rec{"email-1", "a", 1}.line()}});
  CHECK(v.ok());
  CHECK(v.groups.empty());
  REQUIRE(v.consumers.size() == 1);
  CHECK(v.consumers.front().group.empty());
}

TEST_CASE("an event no member of a group handled is lost",
          "[harness][checker][groups]") {
  auto v =
    judge_group({acked("a", 1, "k1"), acked("b", 2, "k2")},
                {{"email-1", rec{"email-1", "a", 1, "k1", 0, 1, 10, 20}.line()},
                 {"email-2", ""}});
  CHECK_FALSE(v.ok());
  REQUIRE(v.groups.size() == 1);
  CHECK(v.groups.front().lost == 1);
  CHECK_FALSE(v.groups.front().ok);
  CHECK_THAT(v.failures.front(), Catch::Contains("group EmailService"));
  for (auto& c : v.consumers)
    CHECK(c.lost == 0);
}

TEST_CASE("an event handled by two members is a duplicate of the group",
          "[harness][checker][groups]") {
  std::vector<std::pair<std::string, std::string>> texts{
    {"email-1", rec{"email-1", "a", 1, "k1", 0, 1, 10, 20}.line()},
    {"email-2", rec{"email-2", "a", 1, "k1", 0, 2, 30, 40}.line()}};
  auto v = judge_group({acked("a", 1, "k1")}, texts);
  CHECK(v.ok());
  REQUIRE(v.groups.size() == 1);
  CHECK(v.groups.front().duplicates == 1);
  CHECK(v.groups.front().handled == 1);
  for (auto& c : v.consumers)
    CHECK(c.duplicates == 0); // each handled it once
  checks_spec strict;
  strict.duplicates_fail = true;
  CHECK_FALSE(judge_group({acked("a", 1, "k1")}, texts, strict).ok());
}

TEST_CASE("a later event of a key handled first by another member is an "
          "inversion of the group; a redelivery is not",
          "[harness][checker][groups]") {
  std::vector<published> pubs{acked("a", 1, "k1"), acked("b", 2, "k1")};
  SECTION("inversion: seq 2 started before seq 1, on two members") {
    auto v = judge_group(
      pubs, {{"email-1", rec{"email-1", "b", 2, "k1", 0, 1, 100, 110}.line()},
             {"email-2", rec{"email-2", "a", 1, "k1", 0, 2, 200, 210}.line()}});
    CHECK_FALSE(v.ok());
    REQUIRE(v.groups.size() == 1);
    CHECK(v.groups.front().inversions == 1);
    for (auto& c : v.consumers)
      CHECK(c.inversions == 0); // each member alone saw one event
  }
  SECTION("redelivery: both handled by one member, both again by the next "
          "holder") {
    auto v = judge_group(
      pubs,
      {{"email-1", rec{"email-1", "a", 1, "k1", 0, 1, 100, 110}.line()
                     + rec{"email-1", "b", 2, "k1", 0, 1, 120, 130}.line()},
       {"email-2", rec{"email-2", "a", 1, "k1", 0, 2, 200, 210}.line()
                     + rec{"email-2", "b", 2, "k1", 0, 2, 220, 230}.line()}});
    CHECK(v.ok());
    CHECK(v.groups.front().inversions == 0);
    CHECK(v.groups.front().duplicates == 2);
  }
}

TEST_CASE("records of a later lease epoch that start before an earlier "
          "epoch's records end are a lease overlap",
          "[harness][checker][groups]") {
  std::vector<published> pubs{acked("a", 1, "k1"), acked("b", 2, "k2")};
  // Partition 3: epoch 1 on email-1 handles until 300; epoch 2 on email-2
  // starts at 200, while email-1 still held it.
  auto v = judge_group(
    pubs, {{"email-1", rec{"email-1", "a", 1, "k1", 3, 1, 100, 300}.line()},
           {"email-2", rec{"email-2", "b", 2, "k2", 3, 2, 200, 250}.line()}});
  CHECK_FALSE(v.ok());
  REQUIRE(v.groups.size() == 1);
  auto& g = v.groups.front();
  CHECK(g.lease_overlaps == 1);
  CHECK(g.lost == 0);
  REQUIRE_FALSE(g.examples.empty());
  CHECK_THAT(g.examples.front(),
             Catch::Contains("partition 3: epoch 1 on email-1 handled until "
                             "300 us, after epoch 2 on email-2 began at 200 "
                             "us"));
  CHECK_THAT(v.failures.back(), Catch::Contains("lease overlaps 1"));
}

TEST_CASE("a clean handoff passes: the old epoch ends before the new one "
          "starts",
          "[harness][checker][groups]") {
  std::vector<published> pubs{acked("a", 1, "k1"), acked("b", 2, "k2"),
                              acked("c", 3, "k1")};
  auto v = judge_group(
    pubs,
    {{"email-1", rec{"email-1", "a", 1, "k1", 3, 1, 100, 150}.line()
                   + rec{"email-1", "b", 2, "k2", 3, 1, 160, 190}.line()},
     // The new holder replays b (uncommitted) and goes on.
     {"email-2", rec{"email-2", "b", 2, "k2", 3, 2, 200, 210}.line()
                   + rec{"email-2", "c", 3, "k1", 3, 2, 220, 230}.line()}});
  CHECK(v.ok());
  auto& g = v.groups.front();
  CHECK(g.lease_overlaps == 0);
  CHECK(g.shared_epochs == 0);
  CHECK(g.epochs == 2);
  CHECK(g.duplicates == 1);
}

TEST_CASE("an overlap is judged per partition: other partitions' epochs "
          "run at once",
          "[harness][checker][groups]") {
  auto v = judge_group(
    {acked("a", 1, "k1"), acked("b", 2, "k2")},
    {{"email-1", rec{"email-1", "a", 1, "k1", 3, 1, 100, 300}.line()},
     {"email-2", rec{"email-2", "b", 2, "k2", 4, 2, 200, 250}.line()}});
  CHECK(v.ok());
  CHECK(v.groups.front().lease_overlaps == 0);
}

TEST_CASE("one lease epoch of a partition used by two members fails",
          "[harness][checker][groups]") {
  auto v = judge_group(
    {acked("a", 1, "k1"), acked("b", 2, "k2")},
    {{"email-1", rec{"email-1", "a", 1, "k1", 3, 5, 100, 150}.line()},
     {"email-2", rec{"email-2", "b", 2, "k2", 3, 5, 200, 250}.line()}});
  CHECK_FALSE(v.ok());
  CHECK(v.groups.front().shared_epochs == 1);
  CHECK_THAT(v.groups.front().examples.front(),
             Catch::Contains("epoch 5 used by 2 members (email-1, email-2)"));
}

TEST_CASE("a result discarded after its lease ended is counted, is no "
          "handling, and may overlap the next epoch",
          "[harness][checker][groups]") {
  std::vector<published> pubs{acked("a", 1, "k1")};
  auto discarded = rec{"email-1", "a", 1, "k1", 3, 1, 100, 300};
  discarded.outcome = "discarded";
  SECTION("handled again by the next holder: passes") {
    auto v = judge_group(
      pubs, {{"email-1", discarded.line()},
             {"email-2", rec{"email-2", "a", 1, "k1", 3, 2, 200, 250}.line()}});
    CHECK(v.ok());
    auto& g = v.groups.front();
    CHECK(g.discarded == 1);
    CHECK(g.handled == 1);
    CHECK(g.duplicates == 0);
    CHECK(g.lease_overlaps == 0);
    CHECK(v.consumers.front().discarded == 1);
  }
  SECTION("handled by nobody: lost") {
    auto v =
      judge_group(pubs, {{"email-1", discarded.line()}, {"email-2", ""}});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().lost == 1);
    CHECK(v.groups.front().discarded == 1);
  }
}

TEST_CASE("an offset of a partition covers only that partition's events",
          "[harness][checker][groups]") {
  // Two partitions; event a in partition 0 handled, b in partition 1 not
  // yet when the offsets are committed.
  auto k0 = key_in(0, 2), k1 = key_in(1, 2);
  std::vector<published> pubs{acked("a", 1, k0), acked("b", 2, k1)};
  auto a = rec{"email", "a", 1, k0, 0, 1, 10, 20}.line();
  auto b = rec{"email", "b", 2, k1, 1, 1, 40, 50}.line();
  SECTION("partition 0's offset past b's seq passes") {
    auto c =
      judge_one(pubs, start() + a + group_offset("email", 2, 0, 2, 30) + b);
    CHECK(c.ok);
    CHECK(c.offset_violations == 0);
  }
  SECTION("partition 1's offset past b's seq fails") {
    auto c =
      judge_one(pubs, start() + a + group_offset("email", 2, 1, 2, 30) + b);
    CHECK_FALSE(c.ok);
    CHECK(c.offset_violations == 1);
    CHECK_THAT(c.examples.front(), Catch::Contains("partition 1"));
  }
}

TEST_CASE("a group's offset passes only events some member finished by "
          "its time",
          "[harness][checker][groups]") {
  auto k0 = key_in(0, 4);
  std::vector<published> pubs{acked("a", 1, k0), acked("b", 2, k0)};
  // email-1 handled a and b under epoch 1; email-2 took the partition over
  // and committed offset 2 at time 500.
  auto recs = rec{"email-1", "a", 1, k0, 0, 1, 100, 200}.line();
  SECTION("both finished before: passes") {
    auto v = judge_group(
      pubs,
      {{"email-1", recs + rec{"email-1", "b", 2, k0, 0, 1, 210, 300}.line()},
       {"email-2", group_offset("email-2", 2, 0, 4, 500, 2)}});
    CHECK(v.ok());
    CHECK(v.groups.front().offset_violations == 0);
  }
  SECTION("b finished after the commit: fails") {
    auto v = judge_group(
      pubs,
      {{"email-1", recs + rec{"email-1", "b", 2, k0, 0, 1, 210, 600}.line()},
       {"email-2", group_offset("email-2", 2, 0, 4, 500, 2)}});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().offset_violations == 1);
    CHECK_THAT(v.groups.front().examples.front(),
               Catch::Contains("by email-2 before seq 2"));
    for (auto& c : v.consumers)
      CHECK(c.offset_violations == 0); // judged per group only
  }
}

TEST_CASE("the takeover of a killed member's partitions is measured from the "
          "kill to the first record under a newer epoch",
          "[harness][checker][groups]") {
  std::vector<published> pubs{acked("a", 1, "k1"), acked("b", 2, "k2"),
                              acked("c", 3, "k3")};
  const uint64_t kill = 10'000'000; // 10 s, in us
  // email-1 held partitions 1 and 2 at the kill; email-2 held 3. email-2
  // takes 1 over 3.5 s after the kill; partition 2 got no event after it.
  std::vector<std::pair<std::string, std::string>> texts{
    {"email-1",
     rec{"email-1", "a", 1, "k1", 1, 4, 9'000'000, 9'000'100}.line()
       + rec{"email-1", "b", 2, "k2", 2, 7, 9'100'000, 9'100'100}.line()},
    {"email-2",
     rec{"email-2", "c", 3, "k3", 3, 2, 9'200'000, 9'200'100}.line()
       + rec{"email-2", "a", 1, "k1", 1, 5, kill + 3'500'000, kill + 3'500'100}
           .line()}};
  std::vector<fault_record> faults{{0, "kill", "email-1", kill}};
  SECTION("within its bound: passes, with the figure") {
    checks_spec checks;
    checks.takeover_within = std::chrono::seconds{5};
    auto v = judge_group(pubs, texts, checks, faults);
    CHECK(v.ok());
    REQUIRE(v.groups.front().takeovers.size() == 1);
    auto& t = v.groups.front().takeovers.front();
    CHECK(t.target == "email-1");
    CHECK(t.held == 2);
    CHECK(t.taken == 1);
    CHECK(t.max_ms == 3500);
    CHECK_THAT(t.slowest, Catch::Contains("partition 1: epoch 5 on email-2"));
    CHECK(t.ok);
  }
  SECTION("above its bound: fails") {
    checks_spec checks;
    checks.takeover_within = std::chrono::seconds{3};
    auto v = judge_group(pubs, texts, checks, faults);
    CHECK_FALSE(v.ok());
    CHECK_FALSE(v.groups.front().takeovers.front().ok);
    CHECK_THAT(v.failures.back(), Catch::Contains("takeover"));
  }
  SECTION("without a bound: reported only") {
    auto v = judge_group(pubs, texts, {}, faults);
    CHECK(v.ok());
    CHECK(v.groups.front().takeovers.front().max_ms == 3500);
  }
  SECTION("a bound with nothing measured fails") {
    checks_spec checks;
    checks.takeover_within = std::chrono::seconds{5};
    // email-1 handled nothing before the kill: it held nothing seen.
    auto v = judge_group(
      pubs,
      {{"email-1", ""},
       {"email-2", rec{"email-2", "a", 1, "k1", 1, 1, 100, 200}.line()
                     + rec{"email-2", "b", 2, "k2", 2, 1, 300, 400}.line()
                     + rec{"email-2", "c", 3, "k3", 3, 1, 500, 600}.line()}},
      checks, faults);
    CHECK_FALSE(v.ok());
    auto& t = v.groups.front().takeovers.front();
    CHECK(t.held == 0);
    CHECK_FALSE(t.ok);
    CHECK_THAT(v.groups.front().examples.back(),
               Catch::Contains("nothing to measure"));
  }
  SECTION("a kill of a node that is no member measures nothing") {
    auto v = judge_group(pubs, texts, {}, {{0, "kill", "user", kill}});
    CHECK(v.groups.front().takeovers.empty());
  }
}

TEST_CASE("the group's verdict is in the table and result.json",
          "[harness][checker][groups]") {
  auto v = judge_group(
    {acked("a", 1, "k1"), acked("b", 2, "k2")},
    {{"email-1", rec{"email-1", "a", 1, "k1", 3, 1, 100, 300}.line()},
     {"email-2", rec{"email-2", "b", 2, "k2", 3, 2, 200, 250}.line()}});
  auto j = to_json(v);
  REQUIRE(j["groups"].size() == 1);
  CHECK(j["groups"][0]["lease_overlaps"] == 1);
  CHECK(j["groups"][0]["consumer"] == "EmailService");
  CHECK(j["consumers"][0]["group"] == "EmailService");
  auto lines = table(v);
  auto header = std::find_if(lines.begin(), lines.end(), [](auto& l) {
    return l.starts_with("group ");
  });
  REQUIRE(header != lines.end());
  REQUIRE(header + 1 != lines.end());
  CHECK(header[1].starts_with("EmailService"));
  CHECK_THAT(header[1], Catch::EndsWith("FAIL"));
}

TEST_CASE("faults.jsonl gives the kills' times", "[harness][checker][groups]") {
  auto f = parse_faults(
    R"({"event":"applied","fault":0,"kind":"kill","target":"email-2","time_us":123})"
    "\n"
    R"({"event":"healed","fault":0,"kind":"kill","target":"email-2","time_us":456})"
    "\n",
    "faults.jsonl");
  REQUIRE(f);
  REQUIRE(f->size() == 1);
  CHECK(f->front().target == "email-2");
  CHECK(f->front().applied_us == 123);
  CHECK(f->front().fault == 0);
}

TEST_CASE("an unknown outcome in a handling record is reported",
          "[harness][checker][groups]") {
  auto r = rec{"email", "a", 1};
  r.outcome = "lost";
  auto h = parse_history(r.line(), "e.jsonl");
  REQUIRE(h.malformed.size() == 1);
  CHECK_THAT(h.malformed.front(), Catch::Contains("unknown outcome 'lost'"));
}

TEST_CASE("members that handled events under no lease fail the group",
          "[harness][checker][groups]") {
  // What several nodes of one consumer name did before groups: each its
  // own consumer, every event handled by each, no partition, no epoch.
  auto line = [](const std::string& node) {
    auto text = handled("a", 1, "k1");
    text.replace(text.find(R"("node":"email")"), 14,
                 fmt::format(R"("node":"{}")", node));
    return text;
  };
  auto v = judge_group({acked("a", 1, "k1")}, {{"email-1", line("email-1")},
                                               {"email-2", line("email-2")}});
  CHECK_FALSE(v.ok());
  REQUIRE(v.groups.size() == 1);
  CHECK(v.groups.front().partitions == 0);
  CHECK_THAT(v.groups.front().examples.back(),
             Catch::Contains("without leases"));
}

// Handoff windows and moves (issue 15: duplicates only in the old holder's
// uncommitted window; a rolling restart moves a partition once).

namespace {

// `r`'s line with no lease epoch (a redriven dead letter's).
std::string unleased(const rec& r) {
  auto text = r.line();
  auto at = text.find(fmt::format(R"("lease_epoch":{})", r.epoch));
  REQUIRE(at != std::string::npos);
  text.replace(at, fmt::format(R"("lease_epoch":{})", r.epoch).size(),
               R"("lease_epoch":null)");
  return text;
}

// A restart of `target` (a `cycle` fault's cycle) whose stop began at `at`.
fault_record restart_of(int fault, const std::string& target, uint64_t at) {
  return {fault, "cycle", target, at, 1};
}

} // namespace

TEST_CASE("a duplicate handled under a newer lease epoch is in a handoff "
          "window; the largest window is reported",
          "[harness][checker][groups]") {
  std::vector<published> pubs{acked("a", 1, "k1"), acked("b", 2, "k2"),
                              acked("c", 3, "k3")};
  // Partition 3: email-1 handled a and b under epoch 1, email-2 both again
  // under epoch 2 (a window of 2). Partition 4: c under epoch 1, then
  // under epoch 3 (a window of 1).
  auto v = judge_group(
    pubs,
    {{"email-1", rec{"email-1", "a", 1, "k1", 3, 1, 100, 110}.line()
                   + rec{"email-1", "b", 2, "k2", 3, 1, 120, 130}.line()
                   + rec{"email-1", "c", 3, "k3", 4, 1, 140, 150}.line()},
     {"email-2", rec{"email-2", "a", 1, "k1", 3, 2, 200, 210}.line()
                   + rec{"email-2", "b", 2, "k2", 3, 2, 220, 230}.line()
                   + rec{"email-2", "c", 3, "k3", 4, 3, 240, 250}.line()}});
  CHECK(v.ok());
  auto& g = v.groups.front();
  CHECK(g.duplicates == 3);
  CHECK(g.duplicates_outside_window == 0);
  CHECK(g.largest_window == 2);
  CHECK(g.largest_window_at
        == "stream s1 partition 3: epoch 1 on email-1 -> epoch 2 on email-2");
  auto j = to_json(v);
  CHECK(j["groups"][0]["duplicates_outside_window"] == 0);
  CHECK(j["groups"][0]["largest_window"] == 2);
}

TEST_CASE("a duplicate under the same lease epoch is outside any handoff "
          "window and fails the group, duplicates allowed or not",
          "[harness][checker][groups]") {
  std::vector<published> pubs{acked("a", 1, "k1")};
  SECTION("one holder handled the event twice under its lease") {
    auto v = judge_group(
      pubs,
      {{"email-1", rec{"email-1", "a", 1, "k1", 3, 1, 100, 110}.line()
                     + rec{"email-1", "a", 1, "k1", 3, 1, 120, 130}.line()},
       {"email-2", ""}});
    CHECK_FALSE(v.ok());
    auto& g = v.groups.front();
    CHECK_FALSE(g.ok);
    CHECK(g.duplicates == 1);
    CHECK(g.duplicates_outside_window == 1);
    CHECK(g.largest_window == 0);
    REQUIRE_FALSE(g.examples.empty());
    CHECK_THAT(g.examples.front(),
               Catch::Contains("handled again by email-1 under epoch 1, after "
                               "email-1 handled it under epoch 1"));
    CHECK_THAT(v.failures.back(),
               Catch::Contains("duplicates outside a handoff window 1"));
  }
  SECTION("the later handling under an older epoch") {
    auto v = judge_group(
      pubs, {{"email-1", rec{"email-1", "a", 1, "k1", 3, 2, 100, 110}.line()},
             {"email-2", rec{"email-2", "a", 1, "k1", 3, 1, 200, 210}.line()}});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().duplicates_outside_window == 1);
  }
  SECTION("the later handling under no lease, after a handling") {
    auto v = judge_group(
      pubs,
      {{"email-1", rec{"email-1", "a", 1, "k1", 3, 1, 100, 110}.line()},
       {"email-2", unleased(rec{"email-2", "a", 1, "k1", 3, 1, 200, 210})}});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().duplicates_outside_window == 1);
    CHECK_THAT(v.groups.front().examples.front(),
               Catch::Contains("under no lease"));
  }
  SECTION("under a newer epoch, after an offset covering it was committed") {
    auto k0 = key_in(0, 4);
    std::vector<published> one{acked("a", 1, k0)};
    auto v = judge_group(
      one, {{"email-1", rec{"email-1", "a", 1, k0, 0, 1, 100, 110}.line()
                          + group_offset("email-1", 1, 0, 4, 150, 1)},
            {"email-2", rec{"email-2", "a", 1, k0, 0, 2, 200, 210}.line()}});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().duplicates_outside_window == 1);
    CHECK(v.groups.front().largest_window == 0);
    CHECK_THAT(v.groups.front().examples.front(),
               Catch::Contains("after an offset 1 of that partition covering "
                               "it was committed"));
  }
}

TEST_CASE("a redriven dead letter and a discarded result are in no handoff "
          "window and fail nothing",
          "[harness][checker][groups]") {
  SECTION("a redrive: handled under no lease after its dead letter") {
    // k1 is poison: dead-lettered under epoch 1, redriven (no lease) and
    // dead-lettered again.
    auto dead = rec{"email-1", "a", 1, "k1", 3, 1, 100, 110};
    dead.outcome = "dead_lettered";
    auto redriven = rec{"email-1", "a", 1, "k1", 3, 1, 500, 510};
    redriven.outcome = "dead_lettered";
    auto poison = R"({"v":1,"record":"start","node":"email-1",)"
                  R"("incarnation":1,"stream":"e","fail_keys":["k1"]})"
                  "\n";
    auto v =
      judge_group({acked("a", 1, "k1")},
                  {{"email-1", poison + dead.line() + unleased(redriven)},
                   {"email-2", ""}});
    CHECK(v.ok());
    auto& g = v.groups.front();
    CHECK(g.dead_lettered == 1);
    CHECK(g.duplicates == 1);
    CHECK(g.redriven == 1);
    CHECK(g.duplicates_outside_window == 0);
  }
  SECTION("a redrive under the holder's lease that goes back to the dead "
          "letters (its entity still parked)") {
    auto dead = rec{"email-1", "a", 1, "k1", 3, 1, 100, 110};
    dead.outcome = "dead_lettered";
    auto back = rec{"email-1", "a", 1, "k1", 3, 1, 500, 510};
    back.outcome = "dead_lettered";
    auto poison = R"({"v":1,"record":"start","node":"email-1",)"
                  R"("incarnation":1,"stream":"e","fail_keys":["k1"]})"
                  "\n";
    auto v = judge_group(
      {acked("a", 1, "k1")},
      {{"email-1", poison + dead.line() + back.line()}, {"email-2", ""}});
    CHECK(v.ok());
    auto& g = v.groups.front();
    CHECK(g.redriven == 1);
    CHECK(g.duplicates_outside_window == 0);
  }
  SECTION("a discarded result is no earlier handling") {
    auto discarded = rec{"email-1", "a", 1, "k1", 3, 1, 100, 300};
    discarded.outcome = "discarded";
    auto v = judge_group(
      {acked("a", 1, "k1")},
      {{"email-1", discarded.line()},
       {"email-2", rec{"email-2", "a", 1, "k1", 3, 2, 400, 410}.line()}});
    CHECK(v.ok());
    auto& g = v.groups.front();
    CHECK(g.duplicates == 0);
    CHECK(g.duplicates_outside_window == 0);
    CHECK(g.largest_window == 0);
  }
}

TEST_CASE("moves are changes of a partition's holder between consecutive "
          "lease epochs, in handling-time order",
          "[harness][checker][groups]") {
  std::vector<published> pubs;
  for (uint64_t i = 1; i <= 5; ++i)
    pubs.push_back(acked(fmt::format("e{}", i), i, "k1"));
  // Partition 3: email-1 (epoch 1) -> email-2 (epoch 2), email-2 again
  // (epoch 3: no move), -> email-1 (epoch 4). Partition 4: email-2 only.
  auto v = judge_group(
    pubs,
    {{"email-1", rec{"email-1", "e1", 1, "k1", 3, 1, 100, 110}.line()
                   + rec{"email-1", "e4", 4, "k1", 3, 4, 400, 410}.line()},
     {"email-2", rec{"email-2", "e2", 2, "k1", 3, 2, 200, 210}.line()
                   + rec{"email-2", "e3", 3, "k1", 3, 3, 300, 310}.line()
                   + rec{"email-2", "e5", 5, "k2", 4, 1, 150, 160}.line()}});
  CHECK(v.ok());
  auto& g = v.groups.front();
  CHECK(g.moves == 2);
  CHECK(g.restarts.empty());
  CHECK(to_json(v)["groups"][0]["moves"] == 2);
}

TEST_CASE("moves are attributed to restarts; a partition moved more than "
          "per_restart times in one restart's window fails",
          "[harness][checker][groups]") {
  const uint64_t s = 1'000'000; // 1 s, in us
  const uint64_t t1 = 10 * s;   // email-1 restarted
  const uint64_t t2 = 20 * s;   // email-2 restarted
  std::vector<published> pubs;
  for (uint64_t i = 1; i <= 5; ++i)
    pubs.push_back(acked(fmt::format("e{}", i), i, fmt::format("k{}", i)));
  // Partition 3: email-1 (epoch 1) before t1; email-2 (epoch 2) after t1,
  // then email-1 again (epoch 3) before t2: away and back, 2 moves in
  // email-1's window. Partition 4: email-2 (epoch 1) before t2, email-1
  // (epoch 2) after: 1 move in email-2's window.
  std::vector<std::pair<std::string, std::string>> texts{
    {"email-1",
     rec{"email-1", "e1", 1, "k1", 3, 1, 5 * s, 5 * s + 10}.line()
       + rec{"email-1", "e3", 3, "k3", 3, 3, 13 * s, 13 * s + 10}.line()
       + rec{"email-1", "e5", 5, "k5", 4, 2, 22 * s, 22 * s + 10}.line()},
    {"email-2",
     rec{"email-2", "e2", 2, "k2", 3, 2, 11 * s, 11 * s + 10}.line()
       + rec{"email-2", "e4", 4, "k4", 4, 1, 6 * s, 6 * s + 10}.line()}};
  std::vector<fault_record> faults{restart_of(0, "email-1", t1),
                                   restart_of(1, "email-2", t2)};
  SECTION("per_restart 1: the restart with 2 moves of a partition fails") {
    checks_spec checks;
    checks.moves_per_restart = 1;
    auto v = judge_group(pubs, texts, checks, faults);
    CHECK_FALSE(v.ok());
    auto& g = v.groups.front();
    CHECK(g.moves == 3);
    REQUIRE(g.restarts.size() == 2);
    auto& first = g.restarts[0];
    CHECK(first.target == "email-1");
    CHECK(first.stop_us == t1);
    CHECK(first.until_us == t2);
    CHECK(first.moves == 2);
    CHECK(first.most == 2);
    CHECK(first.busiest
          == "stream s1 partition 3: email-1 (epoch 1) -> "
             "email-2 (epoch 2) -> email-1 (epoch 3)");
    CHECK_FALSE(first.ok);
    auto& second = g.restarts[1];
    CHECK(second.target == "email-2");
    CHECK(second.until_us == 0); // to the end
    CHECK(second.moves == 1);
    CHECK(second.most == 1);
    CHECK(second.ok);
    CHECK_THAT(v.failures.back(), Catch::Contains("moved more than 1"));
    CHECK_THAT(g.examples.back(),
               Catch::Contains("restart of email-1 (fault 0, cycle 1): a "
                               "partition moved 2 times in its window"));
    auto j = to_json(v);
    CHECK(j["groups"][0]["restarts"][0]["most"] == 2);
    CHECK(j["groups"][0]["restarts"][0]["ok"] == false);
    auto lines = table(v);
    CHECK(std::any_of(lines.begin(), lines.end(), [](auto& l) {
      return l.starts_with("restart of email-1 (fault 0, cycle 1): 2 move(s)")
             && l.ends_with("FAIL");
    }));
  }
  SECTION("per_restart 2: passes") {
    checks_spec checks;
    checks.moves_per_restart = 2;
    auto v = judge_group(pubs, texts, checks, faults);
    CHECK(v.ok());
  }
  SECTION("without a bound: reported only") {
    auto v = judge_group(pubs, texts, {}, faults);
    CHECK(v.ok());
    REQUIRE(v.groups.front().restarts.size() == 2);
    CHECK(v.groups.front().restarts[0].most == 2);
  }
  SECTION("a bound with no restart in the run fails") {
    checks_spec checks;
    checks.moves_per_restart = 1;
    auto v = judge_group(pubs, texts, checks, {});
    CHECK_FALSE(v.ok());
    CHECK_THAT(v.groups.front().examples.back(),
               Catch::Contains("recorded no restart"));
  }
}

TEST_CASE("faults.jsonl gives each cycle's restart", "[harness][checker]") {
  auto f = parse_faults(
    R"({"event":"applied","fault":2,"kind":"cycle","target":"email-3","time_us":100})"
    "\n"
    R"({"event":"cycle","fault":2,"kind":"cycle","target":"email-3","cycle":1,"time_us":100})"
    "\n"
    R"({"event":"cycle","fault":2,"kind":"cycle","target":"email-3","cycle":2,"time_us":900})"
    "\n"
    R"({"event":"healed","fault":2,"kind":"cycle","target":"email-3","time_us":950})"
    "\n",
    "faults.jsonl");
  REQUIRE(f);
  REQUIRE(f->size() == 3);
  CHECK((*f)[0].cycle == 0);
  CHECK((*f)[1].cycle == 1);
  CHECK((*f)[2].cycle == 2);
  CHECK((*f)[2].applied_us == 900);
  auto bad = parse_faults(
    R"({"event":"cycle","fault":2,"kind":"cycle","target":"email-3","time_us":100})"
    "\n",
    "faults.jsonl");
  REQUIRE_FALSE(bad);
  CHECK_THAT(herald::message_of(bad.error()),
             Catch::Contains("faults.jsonl:1: a 'cycle' line without its "
                             "cycle number"));
}

namespace {

// A `hooks` fault applied at `at` (the handler fixed), as faults.jsonl
// gives it.
fault_record hooks_at(uint64_t at) {
  fault_record f;
  f.fault = 1;
  f.kind = "hooks";
  f.target = "email";
  f.applied_us = at;
  f.fixes = true;
  return f;
}

// A poison record of `node` (key k1 is poison).
rec dead_of(std::string node, std::string id, uint64_t seq, uint64_t epoch,
            uint64_t start) {
  auto r =
    rec{std::move(node), std::move(id), seq, "k1", 3, epoch, start, start + 10};
  r.outcome = "dead_lettered";
  return r;
}

std::string poison_start(const std::string& node) {
  return fmt::format(R"({{"v":1,"record":"start","node":"{}",)"
                     R"("incarnation":1,"stream":"e","fail_keys":["k1"]}})"
                     "\n",
                     node);
}

// Judges the group EmailService with k1 poison and `poison: redriven`.
verdict judge_redriven(const std::vector<published>& pubs,
                       const std::string& email1, const std::string& email2,
                       const std::vector<fault_record>& faults = {}) {
  std::vector<std::pair<std::string, history>> hs;
  hs.emplace_back("email-1",
                  parse_history(poison_start("email-1") + email1, "email-1"));
  hs.emplace_back("email-2",
                  parse_history(poison_start("email-2") + email2, "email-2"));
  checks_spec checks;
  checks.poison_redriven = true;
  return judge(pubs, hs,
               {{"email-1", "EmailService", {"user.account.created"}},
                {"email-2", "EmailService", {"user.account.created"}}},
               checks, faults);
}

} // namespace

TEST_CASE("poison: redriven: each dead letter must be handled once after "
          "its last dead letter, in publish order",
          "[harness][checker][redrive]") {
  // k1 is poison: a (seq 1) fails, b (seq 2) waits parked behind it;
  // email-1, which made both dead letters, is lost; the redrive hands them
  // to email-2, which holds the partition under epoch 2.
  std::vector<published> pubs{acked("a", 1, "k1"), acked("b", 2, "k1"),
                              acked("c", 3, "k2")};
  auto made = dead_of("email-1", "a", 1, 1, 100).line()
              + dead_of("email-1", "b", 2, 1, 120).line()
              + rec{"email-1", "c", 3, "k2", 4, 1, 130, 140}.line();
  SECTION("both handled once after the redrive, in order: pass") {
    auto v =
      judge_redriven(pubs, made,
                     rec{"email-2", "a", 1, "k1", 3, 2, 500, 510}.line()
                       + rec{"email-2", "b", 2, "k1", 3, 2, 520, 530}.line(),
                     {hooks_at(400)});
    CHECK(v.ok());
    auto& g = v.groups.front();
    CHECK(g.dead_lettered == 2);
    CHECK(g.poison_not_redriven == 0);
    CHECK(g.redriven == 2);
    CHECK(g.duplicates_outside_window == 0);
    CHECK(g.poison_handled == 0);
  }
  SECTION("one never handled after its dead letter: poison_not_redriven") {
    auto v = judge_redriven(pubs, made,
                            rec{"email-2", "a", 1, "k1", 3, 2, 500, 510}.line(),
                            {hooks_at(400)});
    CHECK_FALSE(v.ok());
    auto& g = v.groups.front();
    CHECK(g.poison_not_redriven == 1);
    CHECK_THAT(fmt::format("{}", fmt::join(g.examples, "\n")),
               Catch::Contains("poison event b (key k1, seq 2) was "
                               "dead-lettered and never handled"));
    CHECK(to_json(v)["groups"][0]["poison_not_redriven"] == 1);
  }
  SECTION("dead-lettered again after the redrive: not redriven") {
    auto v =
      judge_redriven(pubs, made,
                     rec{"email-2", "a", 1, "k1", 3, 2, 500, 510}.line()
                       + rec{"email-2", "b", 2, "k1", 3, 2, 520, 530}.line()
                       + dead_of("email-2", "b", 2, 2, 600).line(),
                     {hooks_at(400)});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().poison_not_redriven == 1);
  }
  SECTION("handled twice after its last dead letter: a failure") {
    auto v =
      judge_redriven(pubs, made,
                     rec{"email-2", "a", 1, "k1", 3, 2, 500, 510}.line()
                       + rec{"email-2", "b", 2, "k1", 3, 2, 520, 530}.line()
                       + rec{"email-2", "b", 2, "k1", 3, 2, 540, 550}.line(),
                     {hooks_at(400)});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().redrive_duplicates == 1);
  }
  SECTION("redriven out of publish order: an inversion") {
    auto v =
      judge_redriven(pubs, made,
                     rec{"email-2", "b", 2, "k1", 3, 2, 500, 510}.line()
                       + rec{"email-2", "a", 1, "k1", 3, 2, 520, 530}.line(),
                     {hooks_at(400)});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().inversions == 1);
  }
  SECTION("without the option, a dead letter never redriven passes") {
    std::vector<std::pair<std::string, history>> hs;
    hs.emplace_back("email-1",
                    parse_history(poison_start("email-1") + made, "email-1"));
    hs.emplace_back("email-2", parse_history(poison_start("email-2"), "e2"));
    auto v = judge(pubs, hs,
                   {{"email-1", "EmailService", {"user.account.created"}},
                    {"email-2", "EmailService", {"user.account.created"}}},
                   {});
    CHECK(v.ok());
    CHECK(v.groups.front().poison_not_redriven == 0);
  }
}

TEST_CASE("poison: redriven: a poison event handled without a dead letter "
          "passes only after the handler was fixed",
          "[harness][checker][redrive]") {
  std::vector<published> pubs{acked("a", 1, "k1")};
  auto late = rec{"email-2", "a", 1, "k1", 3, 2, 500, 510}.line();
  SECTION("after a hooks fault: pass") {
    auto v = judge_redriven(pubs, "", late, {hooks_at(400)});
    CHECK(v.ok());
    CHECK(v.groups.front().poison_handled == 0);
  }
  SECTION("before any hooks fault: poison handled") {
    auto v = judge_redriven(pubs, "", late, {hooks_at(600)});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().poison_handled == 1);
  }
  SECTION("no hooks fault at all: poison handled") {
    auto v = judge_redriven(pubs, "", late);
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().poison_handled == 1);
  }
}

TEST_CASE("poison: redriven judges a consumer alone too",
          "[harness][checker][redrive]") {
  std::vector<published> pubs{acked("a", 1, "bad")};
  checks_spec checks;
  checks.poison_redriven = true;
  auto dead = handled("a", 1, "bad", "user.account.created", "dead_lettered");
  SECTION("redriven once: pass") {
    auto c = judge_one(pubs, start(R"("bad")") + dead + handled("a", 1, "bad"),
                       {"user.account.created"}, checks);
    CHECK(c.ok);
    CHECK(c.poison_not_redriven == 0);
  }
  SECTION("never redriven: a failure") {
    auto c = judge_one(pubs, start(R"("bad")") + dead, {"user.account.created"},
                       checks);
    CHECK_FALSE(c.ok);
    CHECK(c.poison_not_redriven == 1);
  }
}

TEST_CASE("a redrive handled under the holder's lease after a committed "
          "offset is a redrive, not a duplicate outside a window",
          "[harness][checker][groups][redrive]") {
  auto part = herald::partition_of("k1", 12);
  std::vector<published> pubs{acked("a", 1, "k1")};
  auto dead = dead_of("email-1", "a", 1, 1, 100);
  dead.partition = part;
  auto redo = rec{"email-2", "a", 1, "k1", part, 2, 500, 510};
  auto v = judge_redriven(
    pubs, dead.line() + group_offset("email-1", 1, part, 12, 200), redo.line(),
    {hooks_at(400)});
  CHECK(v.ok());
  auto& g = v.groups.front();
  CHECK(g.redriven == 1);
  CHECK(g.duplicates_outside_window == 0);
}

TEST_CASE("after a rewinding command, events published from its time on "
          "must be handled again, in order; they are replays",
          "[harness][checker][groups][rewind]") {
  // b and c were published at or after the rewind's time (sent_us 300);
  // the reset ran until 1000.
  auto pub = [](std::string id, uint64_t seq, uint64_t sent) {
    auto p = acked(std::move(id), seq, "k1");
    p.sent_us = sent;
    return p;
  };
  std::vector<published> pubs{pub("a", 1, 100), pub("b", 2, 300),
                              pub("c", 3, 400)};
  fault_record reset;
  reset.fault = 2;
  reset.kind = "run";
  reset.applied_us = 900;
  reset.rewinds = true;
  reset.done_us = 1000;
  reset.rewind_to_us = 300;
  auto first = rec{"email-1", "a", 1, "k1", 3, 1, 100, 110}.line()
               + rec{"email-1", "b", 2, "k1", 3, 1, 310, 320}.line()
               + rec{"email-1", "c", 3, "k1", 3, 1, 410, 420}.line()
               + group_offset("email-1", 3, 3, 12, 500);
  SECTION("handled again from that time, in order: pass") {
    auto v = judge_group(
      pubs,
      {{"email-1", first},
       {"email-2", rec{"email-2", "b", 2, "k1", 3, 2, 1100, 1110}.line()
                     + rec{"email-2", "c", 3, "k1", 3, 2, 1120, 1130}.line()}},
      {}, {reset});
    CHECK(v.ok());
    auto& g = v.groups.front();
    CHECK(g.replayed == 2);
    CHECK(g.duplicates_outside_window == 0);
    CHECK(g.not_replayed == 0);
  }
  SECTION("one not handled again: a failure") {
    auto v = judge_group(
      pubs,
      {{"email-1", first},
       {"email-2", rec{"email-2", "b", 2, "k1", 3, 2, 1100, 1110}.line()}},
      {}, {reset});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().not_replayed == 1);
  }
  SECTION("handled again out of order: an inversion") {
    auto v = judge_group(
      pubs,
      {{"email-1", first},
       {"email-2", rec{"email-2", "c", 3, "k1", 3, 2, 1100, 1110}.line()
                     + rec{"email-2", "b", 2, "k1", 3, 2, 1120, 1130}.line()}},
      {}, {reset});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().inversions == 1);
  }
  SECTION("without the rewind the same replays are outside any window") {
    auto v = judge_group(
      pubs,
      {{"email-1", first},
       {"email-2", rec{"email-2", "b", 2, "k1", 3, 2, 1100, 1110}.line()
                     + rec{"email-2", "c", 3, "k1", 3, 2, 1120, 1130}.line()}});
    CHECK_FALSE(v.ok());
    CHECK(v.groups.front().duplicates_outside_window == 2);
  }
}

TEST_CASE("faults.jsonl gives the rewinding commands and the commands that "
          "failed",
          "[harness][checker]") {
  std::string text =
    R"({"event":"applied","fault":2,"kind":"run","target":"","time_us":5})"
    "\n"
    R"({"event":"ran","fault":2,"kind":"run","target":"","time_us":5,)"
    R"("done_us":9,"exit":0,"expect_exit":0,"ok":true,"rewinds":true,)"
    R"("rewind_to_us":3})"
    "\n"
    R"({"event":"ran","fault":3,"kind":"run","target":"","time_us":10,)"
    R"("done_us":12,"exit":2,"expect_exit":0,"ok":false,"rewinds":false,)"
    R"("why":"s.yaml:9: faults[3]: run: [herald x] exited 2, expected 0"})"
    "\n";
  auto f = parse_faults(text, "faults.jsonl");
  REQUIRE(f);
  REQUIRE(f->size() == 2);
  CHECK_FALSE((*f)[0].rewinds);
  CHECK((*f)[1].rewinds);
  CHECK((*f)[1].done_us == 9);
  CHECK((*f)[1].rewind_to_us == uint64_t{3});
  auto failed = failed_commands(text, "faults.jsonl");
  REQUIRE(failed.size() == 1);
  CHECK(failed.front()
        == "command of faults[3]: s.yaml:9: faults[3]: run: [herald x] "
           "exited 2, expected 0");
}

TEST_CASE("publishes: acked fails a run with a publish not acknowledged",
          "[harness][checker]") {
  auto lost = acked("b", 2, "k2");
  lost.outcome = published::status::unknown;
  std::vector<published> pubs{acked("a", 1, "k1"), lost};
  std::vector<std::pair<std::string, history>> hs;
  hs.emplace_back("email", parse_history(handled("a", 1, "k1"), "e"));
  std::vector<consumer_info> cons{
    {"email", "EmailService", {"user.account.created"}}};
  CHECK(judge(pubs, hs, cons, {}).ok());
  checks_spec checks;
  checks.publishes_acked = true;
  auto v = judge(pubs, hs, cons, checks);
  REQUIRE(v.failures.size() == 1);
  CHECK_THAT(v.failures.front(),
             Catch::Contains("1 of 2 not acknowledged (1 unknown outcome, 0 "
                             "refused)"));
}

TEST_CASE("poison: redriven: only a hooks fault that cleared the fail keys "
          "fixes the handler",
          "[harness][checker][redrive]") {
  std::vector<published> pubs{acked("a", 1, "k1")};
  auto late = rec{"email-2", "a", 1, "k1", 3, 2, 500, 510}.line();
  auto slower = hooks_at(400);
  slower.fixes = false;
  auto v = judge_redriven(pubs, "", late, {slower});
  CHECK_FALSE(v.ok());
  CHECK(v.groups.front().poison_handled == 1);
  auto f = parse_faults(
    R"({"event":"applied","fault":1,"kind":"hooks","target":"email",)"
    R"("time_us":7,"fixes":true})"
    "\n"
    R"({"event":"applied","fault":2,"kind":"hooks","target":"email",)"
    R"("time_us":8,"fixes":false})"
    "\n",
    "faults.jsonl");
  REQUIRE(f);
  REQUIRE(f->size() == 2);
  CHECK((*f)[0].fixes);
  CHECK_FALSE((*f)[1].fixes);
}

TEST_CASE("poison: redriven: a member that handles another member's "
          "redriven letter after parking later events is no inversion",
          "[harness][checker][redrive]") {
  // email-1 dead-lettered a (seq 1) and was lost; email-2 took the
  // partition and dead-lettered b (seq 2) as parked behind it; the redrive
  // hands both to email-2, in order.
  // b, unattempted, has no time of its own: it stands at c's.
  std::vector<published> pubs{acked("a", 1, "k1"), acked("b", 2, "k1"),
                              acked("c", 3, "k2")};
  auto parked = dead_of("email-2", "b", 2, 2, 300);
  parked.start = 0;
  parked.end = 0;
  auto v = judge_redriven(
    pubs, dead_of("email-1", "a", 1, 1, 100).line(),
    rec{"email-2", "c", 3, "k2", 4, 2, 300, 310}.line() + parked.line()
      + rec{"email-2", "a", 1, "k1", 3, 2, 500, 510}.line()
      + rec{"email-2", "b", 2, "k1", 3, 2, 520, 530}.line(),
    {hooks_at(400)});
  CHECK(v.ok());
  for (auto& c : v.consumers)
    CHECK(c.inversions == 0);
  CHECK(v.groups.front().inversions == 0);
  CHECK(v.groups.front().redriven == 2);
}

TEST_CASE("a group's dead letter without an attempt judges no order: its "
          "place in the merge is its predecessor's time",
          "[harness][checker][groups]") {
  // email-1 dead-lettered a (seq 1) and, unattempted, b (seq 2) behind it;
  // email-2, later holder, dead-lettered c (seq 3) unattempted. email-2's
  // c stands at its predecessor's time (d, 50), before email-1's records.
  std::vector<published> pubs{acked("a", 1, "k1"), acked("b", 2, "k1"),
                              acked("c", 3, "k1"), acked("d", 4, "k2")};
  auto untimed = [](rec r) {
    r.start = 0;
    r.end = 0;
    return r;
  };
  auto v =
    judge_redriven(pubs,
                   dead_of("email-1", "a", 1, 1, 100).line()
                     + untimed(dead_of("email-1", "b", 2, 1, 0)).line(),
                   rec{"email-2", "d", 4, "k2", 4, 2, 50, 60}.line()
                     + untimed(dead_of("email-2", "c", 3, 2, 0)).line()
                     + rec{"email-2", "a", 1, "k1", 3, 2, 500, 510}.line()
                     + rec{"email-2", "b", 2, "k1", 3, 2, 520, 530}.line()
                     + rec{"email-2", "c", 3, "k1", 3, 2, 540, 550}.line(),
                   {hooks_at(400)});
  CHECK(v.ok());
  CHECK(v.groups.front().inversions == 0);
  CHECK(v.groups.front().redriven == 3);
}
