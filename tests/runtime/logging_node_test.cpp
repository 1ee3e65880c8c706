// Each node logs through its own logger, actors included: two nodes in one
// process keep their lines apart.

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include "herald/runtime/node.hpp"
#include "node_support.hpp"

using namespace herald;
using namespace std::chrono_literals;

namespace {

// A node whose log lines (JSON) go into a string, and whose EmailService
// fails every event at its first attempt.
struct logged_node {
  std::ostringstream out;
  std::unique_ptr<node> n;

  explicit logged_node(const std::string& name) {
    auto cfg = make_config(name, "UserService");
    cfg.log_level = "info";
    cfg.log_format = "json";
    cfg.log_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    auto email = make_consumer("EmailService", {"user.account.created"});
    email.retry.attempts = 1;
    cfg.consumers.push_back(email);
    n = start(cfg);
    REQUIRE_FALSE(n->bus().subscribe(
      "user.account.created",
      [](const event&) {
        throw std::runtime_error("down");
      },
      "EmailService"));
  }

  // Publishes one event and waits until it is dead-lettered.
  void fail_one(int entity) {
    auto r = n->bus().publish("user.account.created", created(entity));
    REQUIRE(r);
    REQUIRE_FALSE(r->wait());
    REQUIRE(n->drain(10s));
  }

  // The log lines, once the node is stopped (nothing writes then).
  std::vector<nlohmann::json> lines() {
    n->stop();
    std::vector<nlohmann::json> result;
    std::istringstream in{out.str()};
    for (std::string line; std::getline(in, line);)
      result.push_back(nlohmann::json::parse(line));
    return result;
  }
};

// The lines of `lines` whose message is `msg`.
std::vector<nlohmann::json> with_msg(const std::vector<nlohmann::json>& lines,
                                     const std::string& msg) {
  std::vector<nlohmann::json> result;
  for (auto& l : lines)
    if (l.at("msg") == msg)
      result.push_back(l);
  return result;
}

} // namespace

TEST_CASE("two nodes in one process log their actors' lines under their own "
          "names",
          "[runtime][logging]") {
  // Both nodes start before either fails an event: a process-wide default
  // logger would name the last one started in every actor line.
  logged_node alpha{"alpha"};
  logged_node beta{"beta"};
  alpha.fail_one(1);
  beta.fail_one(2);
  alpha.fail_one(3);

  struct expectation {
    logged_node& node;
    std::string name;
    size_t failures;
  };
  for (auto& [who, name, failures] :
       {expectation{alpha, "alpha", 2}, expectation{beta, "beta", 1}}) {
    INFO("node " << name);
    auto lines = who.lines();
    for (auto& l : lines)
      CHECK(l.at("node") == name);
    // From the shard, and from the dead-letter actor.
    auto failed = with_msg(lines, "handler failed");
    CHECK(failed.size() == failures);
    for (auto& l : failed)
      CHECK(l.at("consumer") == "EmailService");
    CHECK(with_msg(lines, "stored as a dead letter").size() == failures);
  }
}
