// The harness' checker on hand-made histories: each case is a small run
// whose verdict a reader can work out by hand.

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "harness/checker.hpp"

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
