// Values as a handler sees them: what `event_bus::publish` stores and
// delivers is the canonical form of each value, and the entity key comes
// from it (docs/events.md, "Values").

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "deadline.hpp"
#include "herald/runtime/node.hpp"
#include "node_support.hpp"
#include "value_cases.hpp"

using namespace herald;
using namespace std::chrono_literals;
using herald::test::verdict;
using herald::test::wait_until;

namespace {

// What the handler was called with, by event id.
struct delivered {
  std::mutex mtx;
  std::map<std::string, std::pair<std::string, payload>> by_id; // key, data
  std::vector<std::string> order; // "type key" per successful call

  void add(const event& ev) {
    std::lock_guard<std::mutex> guard{mtx};
    by_id[std::string{ev.id()}] = {std::string{ev.key()}, ev.data()};
    order.push_back(std::string{ev.type()} + " " + std::string{ev.key()});
  }

  std::optional<std::pair<std::string, payload>> find(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    auto it = by_id.find(id);
    if (it == by_id.end())
      return std::nullopt;
    return it->second;
  }
};

// A node whose catalog is the conformance table's, publishing as
// TestService, with the consumer TestConsumer of every test.value event.
std::unique_ptr<node> start_value_node(const std::string& name) {
  auto cfg = make_config(name, "TestService");
  std::filesystem::create_directories(cfg.data_dir);
  cfg.catalog = cfg.data_dir + "/values.yaml";
  std::ofstream{cfg.catalog} << herald::test::value_catalog_yaml();
  cfg.consumers.push_back(make_consumer("TestConsumer", {"test.value.*"}));
  return start(cfg);
}

} // namespace

TEST_CASE("node::publish gives every row of the value table its verdict",
          "[runtime][values]") {
  auto n = start_value_node("values");
  delivered got;
  REQUIRE_FALSE(n->bus().subscribe(
    "test.value.*",
    [&](const event& ev) {
      got.add(ev);
    },
    "TestConsumer"));
  size_t row = 0;
  for (const auto& c : herald::test::value_cases()) {
    INFO(herald::test::describe(c));
    auto tag = "row-" + std::to_string(row++);
    auto data = herald::test::value_payload(c, tag);
    auto r = n->bus().publish("test.value." + std::string{c.type}, data);
    if (c.outcome == verdict::refused) {
      REQUIRE_FALSE(r);
      CHECK(is(r.error(), errc::invalid_payload));
      CHECK_THAT(message_of(r.error()), Catch::Contains(std::string{c.expect}));
      continue;
    }
    INFO((r ? "" : message_of(r.error())));
    REQUIRE(r);
    std::optional<std::pair<std::string, payload>> seen;
    REQUIRE(wait_until(
      [&] {
        return (seen = got.find(r->id)).has_value();
      },
      10s));
    // The entity key is the canonical value's.
    herald::test::check_published(c, data, seen->second, &seen->first, tag);
  }
}

TEST_CASE("a user_id in upper and in lower case is one entity: its deleted "
          "waits for its created's retry",
          "[runtime][values]") {
  auto cfg = make_config("uuid-case", "UserService");
  auto consumer = make_consumer("EmailService", {"user.account.*"});
  consumer.retry.initial = 50ms;
  cfg.consumers.push_back(consumer);
  auto n = start(cfg);
  delivered got;
  std::atomic<int> calls{0};
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.*",
    [&](const event& ev) {
      if (calls++ == 0)
        throw std::runtime_error("the first call fails once");
      got.add(ev);
    },
    "EmailService"));
  auto created = n->bus().publish(
    "user.account.created",
    payload{{"user_id", "0190B6D2-3C4E-7A00-8000-000000000001"},
            {"email", "ada@example.com"},
            {"registration_source", "web"}});
  REQUIRE(created);
  auto deleted = n->bus().publish(
    "user.account.deleted",
    payload{{"user_id", "0190b6d2-3c4e-7a00-8000-000000000001"},
            {"deletion_reason", "user_request"}});
  REQUIRE(deleted);
  REQUIRE(wait_until(
    [&] {
      std::lock_guard<std::mutex> guard{got.mtx};
      return got.order.size() == 2;
    },
    10s));
  std::lock_guard<std::mutex> guard{got.mtx};
  CHECK(got.order
        == std::vector<std::string>{
          "user.account.created 0190b6d2-3c4e-7a00-8000-000000000001",
          "user.account.deleted 0190b6d2-3c4e-7a00-8000-000000000001"});
  CHECK(got.by_id[created->id].second["user_id"]
        == "0190b6d2-3c4e-7a00-8000-000000000001");
}

TEST_CASE("an optional field sent as null reaches the handler absent, so "
          "data.value(name, default) works",
          "[runtime][values]") {
  auto n = start_value_node("null-absent");
  std::atomic<int> ok{0}, threw{0};
  REQUIRE_FALSE(n->bus().subscribe(
    "test.value.*",
    [&](const event& ev) {
      try {
        // What the handler did: it threw on a delivered null.
        auto note = ev.data().value("o", std::string{"none"});
        if (note == "none")
          ++ok;
      } catch (const std::exception&) {
        ++threw;
      }
    },
    "TestConsumer"));
  auto r = n->bus().publish("test.value.string",
                            payload{{"k", "a"}, {"v", "text"}, {"o", nullptr}});
  REQUIRE(r);
  REQUIRE(wait_until(
    [&] {
      return ok + threw == 1;
    },
    10s));
  CHECK(ok == 1);
  CHECK(threw == 0);
}
