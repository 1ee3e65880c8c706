// Membership inside the node, with two nodes in one process on loopback:
// what /metrics says of the cluster and of the connections that follow
// it. The process-level behaviour (kill, restart, pause, partition) is in
// the integration test `[cluster]` and the harness scenarios.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <spdlog/sinks/ostream_sink.h>

#include "deadline.hpp"
#include "health.hpp"
#include "herald/runtime/node.hpp"
#include "node_support.hpp"
#include "process.hpp"

using namespace herald;
using namespace std::chrono_literals;
using herald::test::sample_of;
using herald::test::wait_until;

namespace {

std::string metrics_of(node& n) {
  httplib::Client http{"127.0.0.1", n.metrics_port()};
  http.set_read_timeout(5s);
  auto res = http.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  return res->body;
}

} // namespace

TEST_CASE("a consumer that joins through a seed counts the members up and "
          "holds one SUB to their producer, closed once the producer "
          "leaves",
          "[runtime][cluster][metrics]") {
  auto pcfg = make_config("user-node", "UserService");
  pcfg.metrics_listen = "127.0.0.1:0";
  auto producer = start(pcfg);
  auto ccfg = make_config("email-node", "EmailService");
  ccfg.metrics_listen = "127.0.0.1:0";
  ccfg.consumers.push_back(
    make_consumer("EmailService", {"user.account.created"}));
  ccfg.cluster.seeds = {producer->control_endpoint()};
  auto consumer = start(ccfg);

  std::string text;
  auto sample = [&](const std::string& series) {
    return sample_of(text, series);
  };
  CHECK(wait_until(
    [&] {
      text = metrics_of(*consumer);
      return sample(R"(herald_cluster_members{status="up"})") == 2
             && sample(R"(herald_transport_sockets{kind="sub"})") == 1;
    },
    20s));
  INFO(text);
  CHECK(sample(R"(herald_transport_sockets{kind="dealer"})") >= 1);
  CHECK(sample(R"(herald_cluster_members{status="down"})") == 0);
  auto changes = sample("herald_membership_changes_total");
  CHECK(changes >= 1);
  // The producer connects to nobody: nothing it selects is produced.
  std::string producer_text;
  CHECK(wait_until(
    [&] {
      producer_text = metrics_of(*producer);
      return sample_of(producer_text, R"(herald_cluster_members{status="up"})")
             == 2;
    },
    20s));
  CHECK(sample_of(producer_text, R"(herald_transport_sockets{kind="sub"})")
        == 0);

  producer->stop();
  CHECK(wait_until(
    [&] {
      text = metrics_of(*consumer);
      return sample(R"(herald_cluster_members{status="leaving"})") == 1
             && sample(R"(herald_transport_sockets{kind="sub"})") == 0;
    },
    20s));
  INFO(text);
  CHECK(sample(R"(herald_cluster_members{status="up"})") == 1);
  CHECK(sample("herald_membership_changes_total") > changes);
}

TEST_CASE("a node none of whose seeds lets it join says so in its health "
          "until another member joins through it",
          "[runtime][cluster][health]") {
  auto cfg = make_config("lonely-node", "EmailService");
  cfg.metrics_listen = "127.0.0.1:0";
  cfg.consumers.push_back(
    make_consumer("EmailService", {"user.account.created"}));
  // A port nothing listens on: the seed never answers.
  cfg.cluster.seeds = {"tcp://127.0.0.1:" + std::to_string(test::free_port())};
  auto lonely = start(cfg);
  test::healthz health{lonely->metrics_port()};
  auto [code, body] = health();
  CHECK(code == 503);
  CHECK(body.find("not a member of cluster 'herald' yet: no seed let this "
                  "node join (seeds: tcp://127.0.0.1:")
        != std::string::npos);

  auto other = make_config("user-node", "UserService");
  other.cluster.seeds = {lonely->control_endpoint()};
  auto producer = start(other);
  CHECK(wait_until(
    [&] {
      return health().first == 200;
    },
    20s));
}

TEST_CASE("a node that reaches itself through a seed spelled otherwise does "
          "not count that as joining",
          "[runtime][cluster][health]") {
  auto port = std::to_string(test::free_port());
  auto cfg = make_config("self-seeded", "EmailService");
  cfg.metrics_listen = "127.0.0.1:0";
  cfg.control = "tcp://127.0.0.1:" + port;
  cfg.cluster.seeds = {"tcp://localhost:" + port};
  std::ostringstream log;
  cfg.log_level = "info";
  cfg.log_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  auto n = start(cfg);
  test::healthz health{n->metrics_port()};
  CHECK(wait_until(
    [&] {
      return log.str().find("it is this node itself") != std::string::npos;
    },
    20s));
  INFO(log.str());
  CHECK(log.str().find("joined cluster") == std::string::npos);
  CHECK(health().first == 503);
}

TEST_CASE("a group member whose partition count differs from the group's "
          "is refused its leases and says why in /healthz; the group's "
          "events go on",
          "[runtime][cluster][groups][health]") {
  auto short_leases = [](node_config& c) {
    c.groups.lease_ttl = 2s;
    c.groups.lease_margin = 500ms;
  };
  auto pcfg = make_config("user-node", "UserService");
  short_leases(pcfg);
  auto producer = start(pcfg);
  std::atomic<int> handled_a{0};
  std::atomic<int> handled_b{0};
  auto member = [&](std::string name, uint32_t partitions,
                    std::atomic<int>& handled) {
    auto c = make_config(std::move(name), "EmailService");
    short_leases(c);
    c.metrics_listen = "127.0.0.1:0";
    auto email = make_consumer("EmailService", {"user.account.created"});
    email.partitions = partitions;
    c.consumers.push_back(email);
    c.cluster.seeds = {producer->control_endpoint()};
    auto n = start(c);
    REQUIRE_FALSE(n->bus().subscribe(
      "user.account.created",
      [&handled](const event&) {
        ++handled;
      },
      "EmailService"));
    return n;
  };
  // Alone in the group, a holds all of its 4 partitions: the owner has
  // fixed the count.
  auto a = member("email-a", 4, handled_a);
  const std::string owned =
    R"(herald_group_partitions_owned{group="EmailService"})";
  REQUIRE(wait_until(
    [&] {
      return sample_of(metrics_of(*a), owned) == 4;
    },
    20s));
  auto b = member("email-b", 8, handled_b);
  // b is refused while a's leases run. (Should a's leases all lapse, under
  // a loaded machine, the owner takes b's count and a is refused instead:
  // the one refused says so.)
  test::healthz health_a{a->metrics_port()};
  test::healthz health_b{b->metrics_port()};
  const std::string rule =
    "give every member of the group the same 'partitions'";
  std::string body;
  bool b_refused = false;
  CHECK(wait_until(
    [&] {
      for (auto* h : {&health_b, &health_a}) {
        auto [code, text] = (*h)();
        if (code == 503 && text.find(rule) != std::string::npos) {
          body = text;
          b_refused = h == &health_b;
          return true;
        }
      }
      return false;
    },
    30s, 200ms));
  INFO(body);
  CHECK(body.find("consumer EmailService: stream " + producer->stream() + ": ")
        != std::string::npos);
  CHECK(body.find("assigned to this member") != std::string::npos);
  CHECK(body.find(fmt::format("group 'EmailService' has {} partitions at the "
                              "owner of stream '{}' while its leases run, and "
                              "this member has {}",
                              b_refused ? 4 : 8, producer->stream(),
                              b_refused ? 8 : 4))
        != std::string::npos);

  // The group's events are still handled. (Which count wins next is not
  // fixed: once a has handed over every partition assigned to b, no lease
  // runs and the owner takes the next count asked for.)
  for (int i = 0; i < 20; ++i)
    REQUIRE(producer->bus().publish("user.account.created", created(i)));
  CHECK(wait_until(
    [&] {
      return handled_a.load() + handled_b.load() >= 20;
    },
    20s));
}
