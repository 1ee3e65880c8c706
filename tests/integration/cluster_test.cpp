// Membership between real node processes on loopback: a consumer started
// before its producer wires itself when the producer joins through it;
// `herald members` and `herald status --cluster` show the cluster; a
// producer killed with SIGKILL is down in the consumer's view and health,
// and once restarted from its data dir it is up again with a higher
// incarnation and its stream resumes. Every wait is bounded; the times
// membership promises are measured by the harness scenarios, not here.

#include <chrono>
#include <csignal>
#include <filesystem>
#include <optional>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "deadline.hpp"
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

// `herald members --json` of the node at `control`, or null.
json members_of(const std::string& control) {
  auto r =
    run(herald_exe + " members --json --control " + shell_quote(control), 10s);
  if (r.exit_code != 0)
    return nullptr;
  try {
    return json::parse(r.out);
  } catch (const std::exception&) {
    return nullptr;
  }
}

// Member `name` in a members reply, or null.
json member(const json& view, const std::string& name) {
  if (!view.is_object())
    return nullptr;
  for (auto& m : view["members"])
    if (m["name"] == name)
      return m;
  return nullptr;
}

std::string status_of(const json& view, const std::string& name) {
  auto m = member(view, name);
  return m.is_object() ? m["status"].get<std::string>() : std::string{};
}

std::string node_config(const temp_dir& dir, const std::string& name,
                        const std::string& service,
                        const std::string& extra = "") {
  return "node: " + name + "\nservice: " + service + "\ncatalog: " + src
         + "/config/events.yaml\ndata_dir: " + (dir / (name + ".data")).string()
         + "\nlog_level: info\n" + extra;
}

std::string consumer_cmd(const temp_dir& dir, int expect) {
  return "exec " + bin
         + "/tests/herald_test_service --service EmailService --config "
         + shell_quote((dir / "email.yaml").string())
         + " --quiet --timeout 90 --expect " + std::to_string(expect)
         + " --control-file " + shell_quote((dir / "email.control").string());
}

// The test producer joining through `seed`; `batches` as its options,
// e.g. `--batch 10` (a later batch k waits for the file `go.k`).
std::string producer_cmd(const temp_dir& dir, const std::string& seed,
                         const std::string& batches) {
  return "exec " + bin + "/tests/herald_test_producer --config "
         + shell_quote((dir / "user.yaml").string()) + " --seed "
         + shell_quote(seed) + " " + batches + " --go "
         + shell_quote((dir / "go").string()) + " --control-file "
         + shell_quote((dir / "user.control").string());
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
  return s;
}

// The consumer's (EmailService) and the producer's (UserService) configs.
void write_configs(const temp_dir& dir) {
  write_text(dir / "email.yaml",
             node_config(dir, "email-node", "EmailService",
                         "consumers:\n  EmailService:\n"
                         "    subscribe: [user.account.created]\n"));
  write_text(dir / "user.yaml", node_config(dir, "user-node", "UserService"));
}

// The control endpoint a node wrote to `file` (--control-file), or empty
// when it did not within 20 s.
std::string control_of(const std::filesystem::path& file) {
  auto text = wait_for_file(file, 20s);
  return text ? trimmed(*text) : std::string{};
}

} // namespace

TEST_CASE("a consumer started before its producer wires itself when the "
          "producer joins through it, and handles everything it published",
          "[integration][cluster]") {
  temp_dir dir;
  write_configs(dir);
  child consumer{consumer_cmd(dir, 30), dir / "email.out", dir / "email.err"};
  auto email_control = control_of(dir / "email.control");
  REQUIRE(!email_control.empty());

  // Alone, it is a cluster of one, up.
  json alone;
  REQUIRE(herald::test::wait_until(
    [&] {
      alone = members_of(email_control);
      return status_of(alone, "email-node") == "up";
    },
    20s));
  CHECK(alone["members"].size() == 1);

  child producer{producer_cmd(dir, email_control, "--batch 30"),
                 dir / "user.out", dir / "user.err"};
  auto status = consumer.wait_for(90s);
  INFO("consumer stdout: " << consumer.out()
                           << "\nconsumer stderr: " << consumer.err()
                           << "\nproducer stderr: " << producer.err());
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(consumer.out().find("EmailService: handled 30 events")
        != std::string::npos);
  // The consumer's log says it wired itself from membership.
  CHECK(consumer.err().find("member user-node: subscribed to its events")
        != std::string::npos);

  // The producer's view, through `herald members` and `status --cluster`.
  auto user_control = control_of(dir / "user.control");
  REQUIRE(!user_control.empty());
  json view;
  CHECK(herald::test::wait_until(
    [&] {
      view = members_of(user_control);
      return status_of(view, "user-node") == "up"
             && !status_of(view, "email-node").empty();
    },
    20s));
  auto user = member(view, "user-node");
  REQUIRE(user.is_object());
  CHECK(view["self"] == "user-node");
  CHECK(view["cluster"] == "herald");
  CHECK(user["service"] == "UserService");
  CHECK(user["produces"].dump().find("user.account.created")
        != std::string::npos);
  auto text =
    run(herald_exe + " status --cluster --control " + shell_quote(user_control),
        10s);
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("MEMBER") != std::string::npos);
  CHECK(text.out.find("user-node *") != std::string::npos);
}

TEST_CASE("a producer killed with SIGKILL is down in its consumer's view and "
          "health; restarted, it is up with a higher incarnation and its "
          "stream resumes",
          "[integration][cluster]") {
  temp_dir dir;
  write_configs(dir);
  child consumer{consumer_cmd(dir, 20), dir / "email.out", dir / "email.err"};
  auto email_control = control_of(dir / "email.control");
  REQUIRE(!email_control.empty());

  uint64_t first_incarnation = 0;
  json alive_view;
  {
    child producer{producer_cmd(dir, email_control, "--batch 10"),
                   dir / "user1.out", dir / "user1.err"};
    json view;
    REQUIRE(herald::test::wait_until(
      [&] {
        view = members_of(email_control);
        return status_of(view, "user-node") == "up";
      },
      30s));
    first_incarnation =
      member(view, "user-node")["incarnation"].get<uint64_t>();
    alive_view = view;
    // Its first 10 events are handled before the crash.
    REQUIRE(herald::test::wait_until(
      [&] {
        auto st = run(herald_exe + " status --json --control "
                        + shell_quote(email_control),
                      10s);
        json status;
        try {
          status = json::parse(st.out);
        } catch (const std::exception&) {
          return false;
        }
        for (auto& c : status["consumers"])
          for (auto& s : c["streams"])
            if (s["offset"] == 10)
              return true;
        return false;
      },
      30s));
    REQUIRE(producer.signal(SIGKILL));
    REQUIRE(producer.wait_for(10s));
  }
  json view;
  CHECK(herald::test::wait_until(
    [&] {
      view = members_of(email_control);
      return status_of(view, "user-node") == "down";
    },
    30s));
  INFO("view: " << view.dump());
  // The one failure detector: the consumer's health names the member.
  auto st = run(
    herald_exe + " status --json --control " + shell_quote(email_control), 10s);
  CHECK(st.out.find("its producer, member user-node, is down")
        != std::string::npos);

  // Restarted from the same data dir: same stream, higher incarnation, and
  // its 10 new events are handled (20 distinct in all): 1 at once, 9 once
  // the test saw it up (the consumer exits at 20).
  child producer{producer_cmd(dir, email_control, "--batch 1 --batch 9"),
                 dir / "user2.out", dir / "user2.err"};
  CHECK(herald::test::wait_until(
    [&] {
      view = members_of(email_control);
      auto m = member(view, "user-node");
      return m.is_object() && m["status"] == "up"
             && m["incarnation"].get<uint64_t>() > first_incarnation;
    },
    30s));
  INFO("view: " << view.dump());
  CHECK(member(view, "user-node")["stream"]
        == member(alive_view, "user-node")["stream"]);
  write_text(dir / "go.2", "");
  auto status = consumer.wait_for(90s);
  INFO("consumer stderr: " << consumer.err());
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(consumer.out().find("EmailService: handled 20 events")
        != std::string::npos);
}
