#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <caf/event_based_actor.hpp>

#include "herald/core/errc.hpp"
#include "herald/runtime/node.hpp"

using namespace herald;
using namespace std::chrono_literals;

namespace {

node_config make_config(std::string name, std::string service) {
  node_config cfg;
  cfg.name = std::move(name);
  cfg.service = std::move(service);
  cfg.catalog = HERALD_SOURCE_DIR "/config/events.yaml";
  cfg.log_level = "critical";
  return cfg;
}

std::unique_ptr<node> start(node_config cfg) {
  auto n = node::start(std::move(cfg));
  if (!n)
    FAIL("node did not start: " << message_of(n.error()));
  return std::move(*n);
}

std::string user_id(int i) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "00000000-0000-4000-8000-%012x", i);
  return buf;
}

payload created(int i) {
  return {{"user_id", user_id(i)},
          {"email", "user" + std::to_string(i) + "@example.com"},
          {"registration_source", "web"}};
}

// Collects what a handler saw; waits with a deadline.
struct collector {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<uint64_t> seqs;
  std::vector<std::string> emails;

  void add(const event& ev) {
    std::lock_guard<std::mutex> guard{mtx};
    seqs.push_back(ev.seq());
    emails.push_back(ev.data()["email"].get<std::string>());
    cv.notify_all();
  }

  bool wait_for(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, timeout, [&] { return seqs.size() >= n; });
  }
};

bool in_publish_order(const std::vector<uint64_t>& seqs) {
  for (size_t i = 0; i < seqs.size(); ++i)
    if (seqs[i] != i + 1)
      return false;
  return true;
}

} // namespace

TEST_CASE("a seed-style handler on the same node gets every event in order",
          "[runtime][node]") {
  auto n = start(make_config("n1", "UserService"));
  collector got;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created", [&](const event& ev) { got.add(ev); },
    "EmailService"));
  for (int i = 1; i <= 500; ++i) {
    auto r = n->bus().publish("user.account.created", created(i));
    REQUIRE(r);
    CHECK(r->seq == static_cast<uint64_t>(i));
  }
  REQUIRE(got.wait_for(500, 10s));
  CHECK(in_publish_order(got.seqs));
  CHECK(got.emails[41] == "user42@example.com");
  REQUIRE(n->drain(5s));
  CHECK(n->stats("EmailService")->handled == 500);
}

TEST_CASE("a service written as a CAF behavior handles herald::event",
          "[runtime][node]") {
  auto cfg = make_config("n1", "UserService");
  cfg.consumers.push_back({"AnalyticsService", {"user.account.created"}});
  auto n = start(cfg);
  collector got;
  REQUIRE_FALSE(n->attach("AnalyticsService",
                          [&](caf::event_based_actor*) -> caf::behavior {
                            return {[&](const event& ev) { got.add(ev); }};
                          }));
  for (int i = 1; i <= 200; ++i)
    REQUIRE(n->bus().publish("user.account.created", created(i)));
  REQUIRE(got.wait_for(200, 10s));
  CHECK(in_publish_order(got.seqs));
  REQUIRE(n->drain(5s));
  CHECK(n->stats("AnalyticsService")->handled == 200);
  CHECK_FALSE(n->attach("NoSuchService", [](caf::event_based_actor*) {
    return caf::behavior{[](const event&) {}};
  }) == caf::error{});
}

TEST_CASE("publish rejects what breaks the catalog and sends nothing",
          "[runtime][node]") {
  auto n = start(make_config("n1", "UserService"));
  collector got;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.>", [&](const event& ev) { got.add(ev); }, "EmailService"));
  SECTION("an invalid field") {
    auto p = created(1);
    p["email"] = "not-an-address";
    auto r = n->bus().publish("user.account.created", p);
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::invalid_payload));
    auto msg = message_of(r.error());
    CHECK_THAT(msg, Catch::Contains("user.account.created")
                      && Catch::Contains("email")
                      && Catch::Contains("not an email address"));
  }
  SECTION("an unknown event type") {
    auto r = n->bus().publish("user.account.exploded", created(1));
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::unknown_event));
  }
  SECTION("a producer the catalog does not name") {
    publish_options opts;
    opts.source = "BillingService";
    auto r = n->bus().publish("user.account.created", created(1), opts);
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::catalog_violation));
    CHECK_THAT(message_of(r.error()), Catch::Contains("UserService"));
  }
  // A valid event after the rejected one proves the handler is live, and
  // that it is the first thing it saw.
  REQUIRE(n->bus().publish("user.account.created", created(2)));
  REQUIRE(got.wait_for(1, 10s));
  REQUIRE(n->drain(5s));
  CHECK(got.emails == std::vector<std::string>{"user2@example.com"});
  CHECK(got.seqs == std::vector<uint64_t>{1});
}

TEST_CASE("a consumer the catalog does not list cannot subscribe",
          "[runtime][node]") {
  auto n = start(make_config("n1", "UserService"));
  auto err = n->bus().subscribe(
    "user.account.created", [](const event&) {}, "BillingService");
  CHECK(is(err, errc::catalog_violation));
  CHECK_THAT(message_of(err), Catch::Contains("BillingService"));
  CHECK(is(n->bus().subscribe("user..x", [](const event&) {}),
           errc::invalid_pattern));
}

TEST_CASE("a failing handler is logged and the next events go on",
          "[runtime][node]") {
  auto n = start(make_config("n1", "UserService"));
  collector got;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      if (ev.seq() == 2)
        throw std::runtime_error("smtp down");
      got.add(ev);
    },
    "EmailService"));
  for (int i = 1; i <= 3; ++i)
    REQUIRE(n->bus().publish("user.account.created", created(i)));
  REQUIRE(got.wait_for(2, 10s));
  REQUIRE(n->drain(5s));
  CHECK(got.seqs == std::vector<uint64_t>{1, 3});
  CHECK(n->stats("EmailService")->failed == 1);
  CHECK(n->stats("EmailService")->handled == 2);
}

TEST_CASE("two nodes on loopback: the subscriber gets every event in order",
          "[runtime][node]") {
  auto a = start(make_config("a", "UserService"));
  auto cfg_b = make_config("b", "EmailService");
  cfg_b.peers.push_back(a->endpoint());
  auto b = start(cfg_b);
  collector got;
  REQUIRE_FALSE(
    b->bus().subscribe("user.account.created", [&](const event& ev) {
      got.add(ev);
    }));
  REQUIRE(a->wait_for_subscribers(1, 10s));
  for (int i = 1; i <= 2000; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  REQUIRE(got.wait_for(2000, 20s));
  CHECK(in_publish_order(got.seqs));
  CHECK(b->received() == 2000);
  CHECK(b->bad_frames() == 0);
}
