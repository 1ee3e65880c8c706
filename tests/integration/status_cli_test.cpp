// `herald status` against real node processes: a producer (the example
// UserService) and a consumer (the test service) on loopback. Every number
// checked is one the test caused: the events it had published, the dead
// letters its failing consumer made.

#include <chrono>
#include <optional>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "deadline.hpp"
#include "fake_endpoint.hpp"
#include "herald/core/codec.hpp"
#include "process.hpp"

using namespace std::chrono_literals;
using herald::test::child;
using herald::test::run;
using herald::test::shell_quote;
using herald::test::temp_dir;
using herald::test::wait_for_file;
using herald::test::write_text;
using json = nlohmann::json;

namespace {

const std::string bin = HERALD_BINARY_DIR;
const std::string src = HERALD_SOURCE_DIR;
const std::string herald_exe = shell_quote(bin + "/tools/herald");

// `herald status --json ARGS` parsed, or null when it failed (reported).
json status_json(const std::string& args) {
  auto r = run(herald_exe + " status --json " + args, 10s);
  INFO("herald status stderr: " << r.err);
  CHECK(r.exit_code == 0);
  try {
    return json::parse(r.out);
  } catch (const std::exception&) {
    return nullptr;
  }
}

// The entry of `consumer` for `stream` in a status, or null.
json stream_of(const json& status, const std::string& consumer,
               const std::string& stream) {
  if (!status.is_object())
    return nullptr;
  for (auto& c : status["consumers"])
    if (c["name"] == consumer)
      for (auto& s : c["streams"])
        if (s["stream"] == stream)
          return s;
  return nullptr;
}

// The one consumer named `name` in a status, or null.
json consumer_of(const json& status, const std::string& name) {
  if (!status.is_object())
    return nullptr;
  for (auto& c : status["consumers"])
    if (c["name"] == name)
      return c;
  return nullptr;
}

// A producer node config with a fixed control port, so `herald status
// --config` can find it.
std::string producer_config(const temp_dir& dir, int control_port) {
  return "node: user-node\nservice: UserService\ncatalog: " + src
         + "/config/events.yaml\ndata_dir: " + (dir / "user.data").string()
         + "\ncontrol: tcp://127.0.0.1:" + std::to_string(control_port) + "\n";
}

std::string start_producer_cmd(const temp_dir& dir, int created, int users) {
  return "exec " + bin + "/examples/user_service --config "
         + shell_quote((dir / "user.yaml").string()) + " --created "
         + std::to_string(created) + " --deleted 0 --users "
         + std::to_string(users)
         + " --rate 0 --wait-subscribers 1 --wait-timeout 30 "
           "--linger-ms 120000";
}

std::string consumer_cmd(const temp_dir& dir, const std::string& endpoint,
                         const std::string& extra = "") {
  return "exec " + bin
         + "/tests/herald_test_service --service EmailService --config "
         + shell_quote((dir / "email.yaml").string()) + " --peer "
         + shell_quote(endpoint) + " --quiet --control-file "
         + shell_quote((dir / "email.control").string()) + " " + extra;
}

// The first line of `text` that contains `needle`; empty when none.
std::string line_with(const std::string& text, const std::string& needle) {
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos)
      return line;
  return {};
}

// A node's status reply as the wire carries it, spelled by hand (it pins
// the format `herald status` reads): EmailService is a member of a group of
// two holding partitions 3 and 17 of one stream; AuditService is outside
// groups, as on a node from before them.
herald::payload grouped_status_reply() {
  using herald::payload;
  payload leases = payload::array();
  leases.push_back(
    {{"partition", 3}, {"epoch", 4294967298}, {"offset", 35}, {"lag", 5}});
  leases.push_back(
    {{"partition", 17}, {"epoch", 4294967297}, {"offset", 40}, {"lag", 0}});
  payload email{{"name", "EmailService"},
                {"patterns", payload::array({"user.>"})},
                {"streams", payload::array({payload{{"stream", "user-stream"},
                                                    {"offset", 35},
                                                    {"head", 40},
                                                    {"lag", 5},
                                                    {"paused", false},
                                                    {"leases", leases}}})},
                {"dead_letters", 0},
                {"health", payload::array()},
                {"members", payload::array({"email-a", "email-b"})},
                {"partitions", 64}};
  payload audit{{"name", "AuditService"},
                {"patterns", payload::array({"user.>"})},
                {"streams", payload::array({payload{{"stream", "user-stream"},
                                                    {"offset", 40},
                                                    {"head", 40},
                                                    {"lag", 0},
                                                    {"paused", false}}})},
                {"dead_letters", 0},
                {"health", payload::array()}};
  return {{"v", 1},
          {"node", "email-a"},
          {"service", "EmailService"},
          {"stream", "email-stream"},
          {"head", 0},
          {"first", 1},
          {"health", payload::array()},
          {"consumers", payload::array({audit, email})}};
}

} // namespace

TEST_CASE("herald status shows a consumer group member's group and the "
          "partitions it holds, and nothing of groups for a consumer outside "
          "them",
          "[integration][cli][status][groups]") {
  herald::test::fake_endpoint node{[](std::string_view body) {
    auto request = herald::decode_payload(body);
    auto reply = grouped_status_reply();
    if (request && request->contains("id"))
      reply["id"] = request->at("id");
    return std::vector<std::string>{herald::encode_payload(reply)};
  }};
  auto text = run(herald_exe + " status --control " + node.endpoint(), 10s);
  INFO("text: " << text.out << text.err);
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(line_with(text.out, "GROUP "),
             Catch::Matches("GROUP +MEMBERS +PARTITIONS +HELD *"));
  // This node is marked; the count is of the partitions held here.
  CHECK_THAT(line_with(text.out, "email-a*"),
             Catch::Matches("EmailService +email-a\\*,email-b +64 +2 *"));
  CHECK_THAT(line_with(text.out, "PARTITION "),
             Catch::Matches("GROUP +STREAM +PARTITION +EPOCH +OFFSET +LAG *"));
  CHECK_THAT(
    line_with(text.out, " 4294967298 "),
    Catch::Matches("EmailService +user-stream +3 +4294967298 +35 +5 *"));
  CHECK_THAT(
    line_with(text.out, " 4294967297 "),
    Catch::Matches("EmailService +user-stream +17 +4294967297 +40 +0 *"));
  // AuditService has its row among the consumers, and none among groups.
  size_t audit_rows = 0;
  std::istringstream lines{text.out};
  for (std::string line; std::getline(lines, line);)
    audit_rows += line.rfind("AuditService", 0) == 0 ? 1 : 0;
  CHECK(audit_rows == 1);

  auto as_json = status_json("--control " + node.endpoint());
  INFO("json: " << as_json.dump());
  auto email = consumer_of(as_json, "EmailService");
  REQUIRE(email.is_object());
  CHECK(email["members"] == json::array({"email-a", "email-b"}));
  CHECK(email["partitions"] == 64);
  auto leases = stream_of(as_json, "EmailService", "user-stream")["leases"];
  REQUIRE(leases.size() == 2);
  CHECK(leases[0]
        == json{
          {"partition", 3}, {"epoch", 4294967298}, {"offset", 35}, {"lag", 5}});
  auto audit = consumer_of(as_json, "AuditService");
  REQUIRE(audit.is_object());
  CHECK_FALSE(audit.contains("members"));
  CHECK_FALSE(audit.contains("partitions"));
  CHECK_FALSE(
    stream_of(as_json, "AuditService", "user-stream").contains("leases"));
}

TEST_CASE("herald status: a consumer's offset and lag once it handled what "
          "the producer published, the producer's head and oldest event, "
          "and a silent producer",
          "[integration][cli][status]") {
  constexpr int events = 40;
  temp_dir dir;
  write_text(dir / "user.yaml",
             producer_config(dir, herald::test::free_port()));
  write_text(dir / "email.yaml",
             "node: email-node\nservice: EmailService\ncatalog: " + src
               + "/config/events.yaml\ndata_dir: "
               + (dir / "email.data").string()
               + "\nconsumers:\n  EmailService:\n"
                 "    subscribe: [user.account.created]\n");
  child producer{start_producer_cmd(dir, events, 8), dir / "user.out",
                 dir / "user.err"};
  auto endpoint = herald::test::wait_for_line(producer, "publishing on ", 20s);
  REQUIRE(endpoint);
  child consumer{consumer_cmd(dir, *endpoint), dir / "email.out",
                 dir / "email.err"};
  auto control_text = wait_for_file(dir / "email.control", 20s);
  REQUIRE(control_text);
  auto control = shell_quote(control_text->substr(0, control_text->size() - 1));
  auto producer_at = "--config " + shell_quote((dir / "user.yaml").string());

  // The producer, found through its config: every event is in its log.
  json producer_status;
  REQUIRE(herald::test::wait_until(
    [&] {
      producer_status = status_json(producer_at);
      return producer_status.is_object() && producer_status["head"] == events;
    },
    30s, 100ms));
  INFO("producer status: " << producer_status.dump());
  CHECK(producer_status["node"] == "user-node");
  CHECK(producer_status["service"] == "UserService");
  CHECK(producer_status["first"] == 1);
  CHECK(producer_status.contains("first_time"));
  CHECK(producer_status["consumers"].empty());
  CHECK(producer_status["health"].empty());
  CHECK(producer_status["healthy"] == true);
  auto stream = producer_status["stream"].get<std::string>();

  // The consumer, once settled (its offset is committed every 50 ms, the
  // head comes with the producer's heartbeat): its offset in the
  // producer's stream is what was published, and it lags by nothing.
  json consumer_status;
  auto settled = herald::test::wait_until(
    [&] {
      consumer_status = status_json("--control " + control);
      auto s = stream_of(consumer_status, "EmailService", stream);
      return s.is_object() && s["offset"] == events && s["head"] == events
             && s["lag"] == 0;
    },
    30s, 100ms);
  INFO("consumer status: " << consumer_status.dump());
  INFO("consumer stderr: " << consumer.err());
  REQUIRE(settled);
  auto s = stream_of(consumer_status, "EmailService", stream);
  CHECK(s["head"] == events);
  CHECK(s["paused"] == false);
  auto c = consumer_of(consumer_status, "EmailService");
  CHECK(c["patterns"] == json::array({"user.account.created"}));
  CHECK(c["dead_letters"] == 0);
  CHECK(c["health"].empty());
  CHECK(consumer_status["node"] == "email-node");
  CHECK(consumer_status["head"] == 0); // it publishes nothing
  CHECK(consumer_status["first"] == 1);
  CHECK_FALSE(consumer_status.contains("first_time"));
  CHECK(consumer_status["healthy"] == true);

  // The same as text: one aligned row per consumer and stream.
  auto text = run(herald_exe + " status --control " + control, 10s);
  INFO("text: " << text.out << text.err);
  CHECK(text.exit_code == 0);
  CHECK_THAT(text.out, Catch::Contains("email-node")
                         && Catch::Matches("[\\s\\S]*health: +ok[\\s\\S]*"));
  // A row per stream, in stream id order: its own stream too, once it
  // heard its node's heartbeat.
  CHECK_THAT(text.out, Catch::Matches("[\\s\\S]*\nEmailService +user\\.account"
                                      "\\.created +0 +[\\s\\S]*"));
  CHECK_THAT(text.out, Catch::Matches("[\\s\\S]*" + stream
                                      + " +40 +40 +0 +no\n[\\s\\S]*"));

  // The producer stops: its heartbeats stop, the consumer says so, and
  // keeps its offset.
  producer.kill();
  json silent;
  auto noticed = herald::test::wait_until(
    [&] {
      silent = status_json("--control " + control);
      auto sc = consumer_of(silent, "EmailService");
      return sc.is_object() && !sc["health"].empty();
    },
    20s, 200ms);
  INFO("status after the producer stopped: " << silent.dump());
  REQUIRE(noticed);
  auto reasons = consumer_of(silent, "EmailService")["health"];
  REQUIRE(reasons.size() == 1);
  CHECK_THAT(reasons[0].get<std::string>(),
             Catch::Contains(stream) && Catch::Contains("no heartbeat"));
  CHECK(silent["healthy"] == false);
  CHECK(stream_of(silent, "EmailService", stream)["offset"] == events);
  auto degraded = run(herald_exe + " status --control " + control, 10s);
  CHECK(degraded.exit_code == 0);
  CHECK_THAT(degraded.out,
             Catch::Contains("degraded:")
               && Catch::Contains("EmailService: stream " + stream));
}

TEST_CASE("herald status counts a consumer's dead letters and reports them "
          "above its alert threshold until they are purged",
          "[integration][cli][status][failure]") {
  constexpr int events = 4;
  temp_dir dir;
  write_text(dir / "user.yaml",
             producer_config(dir, herald::test::free_port()));
  write_text(dir / "email.yaml",
             "node: email-node\nservice: EmailService\ncatalog: " + src
               + "/config/events.yaml\ndata_dir: "
               + (dir / "email.data").string()
               + "\nconsumers:\n  EmailService:\n"
                 "    subscribe: [user.account.created]\n"
                 "    retry: {attempts: 1}\n"
                 "    alert: {dead_letters: 3, window: 5m}\n");
  child producer{start_producer_cmd(dir, events, events), dir / "user.out",
                 dir / "user.err"};
  auto endpoint = herald::test::wait_for_line(producer, "publishing on ", 20s);
  REQUIRE(endpoint);
  // Every handler call fails: with one attempt each event is a dead letter
  // at once; each has its own entity, so none waits behind another.
  child consumer{consumer_cmd(dir, *endpoint, "--fail-all"), dir / "email.out",
                 dir / "email.err"};
  auto control_text = wait_for_file(dir / "email.control", 20s);
  REQUIRE(control_text);
  auto control = shell_quote(control_text->substr(0, control_text->size() - 1));
  auto producer_status =
    status_json("--config " + shell_quote((dir / "user.yaml").string()));
  REQUIRE(producer_status.is_object());
  auto stream = producer_status["stream"].get<std::string>();

  // Dead-lettered events are finished: the offset passes them.
  json status;
  auto counted = herald::test::wait_until(
    [&] {
      status = status_json("--control " + control);
      auto c = consumer_of(status, "EmailService");
      auto s = stream_of(status, "EmailService", stream);
      return c.is_object() && c["dead_letters"] == events && s.is_object()
             && s["offset"] == events;
    },
    30s, 100ms);
  INFO("status: " << status.dump());
  INFO("consumer stderr: " << consumer.err());
  REQUIRE(counted);
  auto reasons = consumer_of(status, "EmailService")["health"];
  REQUIRE(reasons.size() == 1);
  CHECK_THAT(reasons[0].get<std::string>(),
             Catch::Contains("4 dead letters, at or above the alert threshold "
                             "of 3"));
  CHECK(status["healthy"] == false);

  // Purged: nothing is degraded any more, without a restart.
  // At the stream's owner, which keeps the group's dead letters.
  auto purge = run(herald_exe + " dlq purge --all --config "
                     + shell_quote((dir / "user.yaml").string()),
                   10s);
  CHECK(purge.exit_code == 0);
  auto cleared = herald::test::wait_until(
    [&] {
      status = status_json("--control " + control);
      return status.is_object() && status["healthy"] == true;
    },
    10s, 100ms);
  INFO("status after the purge: " << status.dump());
  CHECK(cleared);
  CHECK(consumer_of(status, "EmailService")["dead_letters"] == 0);
}
