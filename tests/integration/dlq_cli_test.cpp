// `herald dlq` as a user runs it, against a fake node: a ROUTER socket in
// this process that records each request and answers with a canned reply.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "deadline.hpp"
#include "fake_endpoint.hpp"
#include "herald/core/codec.hpp"
#include "process.hpp"

using namespace std::chrono_literals;
using herald::payload;
using herald::test::run;
using herald::test::shell_quote;

namespace {

const std::string herald_exe = shell_quote(HERALD_BINARY_DIR "/tools/herald");

std::string herald_cmd(const std::string& args) {
  return herald_exe + " " + args;
}

// A node's control endpoint as far as `herald dlq` can tell: answers each
// request with what `answer` returns (its id added) and records it. The
// replies are spelled here by hand, apart from the protocol's own code:
// they pin the wire format the CLI reads.
//
// Thread safety: `requests` may be called from any thread.
class fake_node {
public:
  using answer_fn = std::function<payload(const payload& request)>;

  explicit fake_node(answer_fn answer)
      : endpoint_{[this, answer = std::move(answer)](std::string_view body) {
          return std::vector<std::string>{serve(answer, body)};
        }} {}

  /// The endpoint to pass to --control.
  const std::string& endpoint() const {
    return endpoint_.endpoint();
  }

  /// The requests received so far, decoded.
  std::vector<payload> requests() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return requests_;
  }

private:
  std::string serve(const answer_fn& answer, std::string_view body) {
    auto request = herald::decode_payload(body);
    payload reply;
    if (request) {
      reply = answer(*request);
      if (request->contains("id"))
        reply["id"] = request->at("id");
      std::lock_guard<std::mutex> guard{mtx_};
      requests_.push_back(*request);
    } else {
      reply = {{"error", "undecodable request"}};
    }
    return herald::encode_payload(reply);
  }

  mutable std::mutex mtx_;
  std::vector<payload> requests_;
  // Last: its thread calls `serve` until it is destroyed, first.
  herald::test::fake_endpoint endpoint_;
};

payload attempt(const std::string& time, const std::string& error,
                const std::string& cls) {
  return {{"time", time}, {"error", error}, {"class", cls}};
}

payload email_letter() {
  return {
    {"id", 7},
    {"consumer", "EmailService"},
    {"node", "email-node"},
    {"event_type", "user.account.created"},
    {"event_id", "0190c0de-0000-7000-8000-000000000001"},
    {"key", "u-1"},
    {"stream", "user-node"},
    {"seq", 17},
    {"reason", "failed 3 attempts: smtp down"},
    {"parked", false},
    {"created", "2026-03-01T09:00:03.000000Z"},
    {"attempts",
     {attempt("2026-03-01T09:00:00.000000Z", "smtp down", "transient"),
      attempt("2026-03-01T09:00:01.000000Z", "smtp still down", "transient"),
      attempt("2026-03-01T09:00:03.000000Z", "smtp down for good",
              "transient")}},
  };
}

payload billing_letter() {
  return {
    {"id", 9},
    {"consumer", "BillingService"},
    {"node", "billing-node"},
    {"event_type", "user.account.deleted"},
    {"event_id", "0190c0de-0000-7000-8000-000000000002"},
    {"key", "u-2"},
    {"stream", "user-node"},
    {"seq", 21},
    {"reason", "invalid payload: \"plan\" is missing"},
    {"parked", true},
    {"created", "2026-03-01T09:05:00.000000Z"},
    {"attempts",
     {attempt("2026-03-01T09:05:00.000000Z",
              "invalid payload: \"plan\" is missing", "permanent")}},
  };
}

payload letters() {
  return payload::array({email_letter(), billing_letter()});
}

// A letter failed 3 attempts, redriven, failed 3 more, redriven again and
// failed 3 more: its whole history, as a node of this version sends it.
payload redriven_letter() {
  auto dl = email_letter();
  auto attempts = payload::array();
  auto redrives = payload::array();
  const char* minutes[] = {"00", "10", "20"};
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 3; ++i) {
      auto a = attempt(std::string{"2026-03-01T09:"} + minutes[round] + ":0"
                         + std::to_string(i) + ".000000Z",
                       "smtp down (" + std::to_string(round * 3 + i + 1) + ")",
                       "error");
      a["node"] = round == 1 ? "email-node-2" : "email-node";
      attempts.push_back(a);
    }
    if (round < 2)
      redrives.push_back(
        {{"time", std::string{"2026-03-01T09:"} + (round == 0 ? "05" : "15")
                    + ":30.000000Z"},
         {"by", round == 0 ? "ada@ops-host" : "grace@ops-host"}});
  }
  dl["attempts"] = attempts;
  dl["redrives"] = redrives;
  dl["reason"] = "3 attempts failed";
  return dl;
}

// The one line of `text` that contains `needle`, or "".
std::string line_with(const std::string& text, const std::string& needle) {
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos)
      return line;
  return {};
}

// The first line of `text` that starts with `prefix`, or "".
std::string line_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(prefix))
      return line;
  return {};
}

} // namespace

TEST_CASE("dlq list prints a table and sends the filters",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"dead_letters", letters()}, {"more", false}};
  }};
  // --node-only: with --consumer the command would ask every member.
  auto r = run(herald_cmd("dlq list --control " + node.endpoint()
                          + " --consumer EmailService --node-only --type "
                            "user.account.created --key u-1 --limit 5"),
               10s);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK_THAT(line_with(r.out, "ID"),
             Catch::Matches("ID +CONSUMER +TYPE +KEY +STREAM:SEQ +ATTEMPTS "
                            "+REDRIVES +REASON +CREATED"));
  CHECK_THAT(line_with(r.out, "EmailService"),
             Catch::Matches("7 +EmailService +user\\.account\\.created +u-1 "
                            "+user-node:17 +3 +0 +failed 3 attempts: smtp "
                            "down +2026-03-01T09:00:03\\.000000Z"));
  CHECK_THAT(line_with(r.out, "BillingService"),
             Catch::Contains("user-node:21") && Catch::Contains("\"plan\""));
  auto reqs = node.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].at("op") == "dlq.list");
  CHECK(reqs[0].at("id").is_number_unsigned());
  CHECK(reqs[0].at("consumer") == "EmailService");
  CHECK(reqs[0].at("type") == "user.account.created");
  CHECK(reqs[0].at("key") == "u-1");
  CHECK(reqs[0].at("limit") == 5);
  CHECK_FALSE(reqs[0].contains("after"));
}

TEST_CASE("dlq list without filters asks for 100 and sends none",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"dead_letters", payload::array()}, {"more", false}};
  }};
  auto r = run(herald_cmd("dlq list --control " + node.endpoint()), 10s);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("no dead letters match"));
  auto reqs = node.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].at("limit") == 100);
  CHECK_FALSE(reqs[0].contains("consumer"));
  CHECK_FALSE(reqs[0].contains("type"));
  CHECK_FALSE(reqs[0].contains("key"));
}

TEST_CASE("dlq list --json prints the dead letters as a JSON array",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"dead_letters", letters()}, {"more", false}};
  }};
  auto r = run(herald_cmd("dlq list --json --control " + node.endpoint()), 10s);
  REQUIRE(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.out) == letters());
}

TEST_CASE("dlq list says how to see the next page when there is more",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"dead_letters", letters()}, {"more", true}};
  }};
  auto r =
    run(herald_cmd("dlq list --limit 2 --after 3 --control " + node.endpoint()),
        10s);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("--after 9"));
  auto reqs = node.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].at("after") == 3);
}

TEST_CASE("dlq show prints every field, the attempts and the event",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    auto dl = email_letter();
    dl["event"] = {{"event_type", "user.account.created"},
                   {"timestamp", 1772355600000000},
                   {"id", "0190c0de-0000-7000-8000-000000000001"},
                   {"source", "UserService"},
                   {"key", "u-1"},
                   {"stream", "user-node"},
                   {"seq", 17},
                   {"data", {{"email", "user1@example.com"}}}};
    return payload{{"dead_letter", dl}};
  }};
  auto r = run(herald_cmd("dlq show 7 --control " + node.endpoint()), 10s);
  REQUIRE(r.exit_code == 0);
  for (auto field : {"consumer:", "node:", "event_type:", "event_id:", "key:",
                     "stream:", "seq:", "reason:", "parked:", "created:"})
    CHECK_THAT(r.out, Catch::Contains(field));
  CHECK_THAT(line_starting(r.out, "consumer:"),
             Catch::Contains("EmailService"));
  CHECK_THAT(line_starting(r.out, "attempts:"), Catch::EndsWith("3"));
  CHECK_THAT(
    line_starting(r.out, "  1. "),
    Catch::Contains("2026-03-01T09:00:00.000000Z  -  [transient]  smtp down"));
  CHECK_THAT(line_starting(r.out, "  2. "), Catch::Contains("smtp still down"));
  CHECK_THAT(line_starting(r.out, "  3. "),
             Catch::Contains("smtp down for good"));
  // The event, pretty-printed after its label.
  auto at = r.out.find("event:\n");
  REQUIRE(at != std::string::npos);
  auto event = nlohmann::json::parse(r.out.substr(at + 7));
  CHECK(event.at("data").at("email") == "user1@example.com");
  CHECK_THAT(r.out, Catch::Contains("\n  \"event_type\": "));
  auto reqs = node.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].at("op") == "dlq.show");
  CHECK(reqs[0].at("dead_letter") == 7);
}

TEST_CASE("dlq list counts every attempt and every redrive of a letter's "
          "history",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"dead_letters", payload::array({redriven_letter()})},
                   {"more", false}};
  }};
  auto r = run(herald_cmd("dlq list --control " + node.endpoint()), 10s);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(line_with(r.out, "EmailService"),
             Catch::Matches("7 +EmailService +user\\.account\\.created +u-1 "
                            "+user-node:17 +9 +2 +3 attempts failed .*"));
}

TEST_CASE("dlq show of a letter redriven twice prints attempts 1 to 9, both "
          "redrives and the first failure",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"dead_letter", redriven_letter()}};
  }};
  auto r = run(herald_cmd("dlq show 7 --control " + node.endpoint()), 10s);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(line_starting(r.out, "first failure:"),
             Catch::Contains("2026-03-01T09:00:00.000000Z  email-node  "
                             "[error]  smtp down (1)"));
  CHECK_THAT(line_starting(r.out, "attempts:"), Catch::EndsWith(" 9"));
  CHECK_THAT(line_starting(r.out, "redrives:"), Catch::EndsWith(" 2"));
  // The history in time order: 3 attempts, a redrive, 3, a redrive, 3.
  std::vector<std::string> history;
  std::istringstream in{r.out};
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("  ") && !line.starts_with("   "))
      history.push_back(line);
  REQUIRE(history.size() >= 11);
  CHECK_THAT(history[0], Catch::StartsWith("  1. 2026-03-01T09:00:00"));
  CHECK_THAT(history[3],
             Catch::Equals("  redrive 1: 2026-03-01T09:05:30.000000Z  by "
                           "ada@ops-host"));
  CHECK_THAT(history[4], Catch::Contains("4. 2026-03-01T09:10:00.000000Z  "
                                         "email-node-2  [error]  smtp down "
                                         "(4)"));
  CHECK_THAT(history[7],
             Catch::Equals("  redrive 2: 2026-03-01T09:15:30.000000Z  by "
                           "grace@ops-host"));
  CHECK_THAT(history[10], Catch::Contains("9. 2026-03-01T09:20:02.000000Z  "
                                          "email-node  [error]  smtp down "
                                          "(9)"));
}

TEST_CASE("dlq redrive says who redrives: USER@HOST, or --by",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"redriven", {7}}, {"dry_run", false}};
  }};
  auto r = run(
    "USER=ada " + herald_cmd("dlq redrive --control " + node.endpoint()), 10s);
  REQUIRE(r.exit_code == 0);
  r = run(
    herald_cmd("dlq redrive --by 'ticket OPS-12' --control " + node.endpoint()),
    10s);
  REQUIRE(r.exit_code == 0);
  auto reqs = node.requests();
  REQUIRE(reqs.size() == 2);
  CHECK_THAT(reqs[0].at("by").get<std::string>(), Catch::StartsWith("ada@"));
  CHECK(reqs[1].at("by") == "ticket OPS-12");
}

TEST_CASE("dlq redrive sends dry_run and prints the ids",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload& req) {
    return payload{{"redriven", {7, 9}}, {"dry_run", req.at("dry_run")}};
  }};
  SECTION("a dry run") {
    auto r = run(herald_cmd("dlq redrive --dry-run --type "
                            "user.account.created --control "
                            + node.endpoint()),
                 10s);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains(
                        "2 dead letters would be redriven (dry run): 7, 9"));
    auto reqs = node.requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].at("op") == "dlq.redrive");
    CHECK(reqs[0].at("dry_run") == true);
    CHECK(reqs[0].at("type") == "user.account.created");
  }
  SECTION("for real") {
    auto r = run(herald_cmd("dlq redrive --control " + node.endpoint()), 10s);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains("2 dead letters redriven: 7, 9"));
    auto reqs = node.requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].at("dry_run") == false);
  }
}

TEST_CASE("dlq purge deletes only what is selected",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload& req) {
    return payload{{"purged", {7}}, {"dry_run", req.at("dry_run")}};
  }};
  SECTION("a bare purge is refused and sends nothing") {
    auto r = run(herald_cmd("dlq purge --control " + node.endpoint()), 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err,
               Catch::Contains("nothing selects") && Catch::Contains("--all"));
    CHECK(r.out.empty());
    CHECK(node.requests().empty());
  }
  SECTION("--all with a filter is refused") {
    auto r = run(herald_cmd("dlq purge --all --consumer EmailService "
                            "--control "
                            + node.endpoint()),
                 10s);
    CHECK(r.exit_code == 2);
    CHECK(node.requests().empty());
  }
  SECTION("by id") {
    auto r = run(herald_cmd("dlq purge 7 --control " + node.endpoint()), 10s);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains("1 dead letter purged: 7"));
    auto reqs = node.requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].at("op") == "dlq.purge");
    CHECK(reqs[0].at("dead_letter") == 7);
    CHECK(reqs[0].at("dry_run") == false);
    CHECK_FALSE(reqs[0].contains("all"));
  }
  SECTION("--all, as a dry run") {
    auto r =
      run(herald_cmd("dlq purge --all --dry-run --control " + node.endpoint()),
          10s);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.out,
               Catch::Contains("1 dead letter would be purged (dry run): 7"));
    auto reqs = node.requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].at("all") == true);
    CHECK(reqs[0].at("dry_run") == true);
  }
}

TEST_CASE("dlq exits 1 with the node's error", "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"error", "no dead letter 42 on node email-node"}};
  }};
  auto r = run(herald_cmd("dlq show 42 --control " + node.endpoint()), 10s);
  CHECK(r.exit_code == 1);
  CHECK(r.err == "herald: no dead letter 42 on node email-node\n");
  CHECK(r.out.empty());
}

TEST_CASE("dlq gives up after --timeout when no node answers",
          "[integration][cli][dlq]") {
  auto endpoint =
    "tcp://127.0.0.1:" + std::to_string(herald::test::free_port());
  auto started = std::chrono::steady_clock::now();
  auto r = run(herald_cmd("dlq list --timeout 0.5 --control " + endpoint), 10s);
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(r.exit_code == 1);
  CHECK(r.err
        == "herald: no answer from " + endpoint
             + " within 0.5s; is the node running, and is that its "
               "control endpoint?\n");
  CHECK(took < 5s);
}

TEST_CASE("dlq needs exactly one of --control and --config",
          "[integration][cli][dlq]") {
  SECTION("neither") {
    auto r = run(herald_cmd("dlq list"), 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err,
               Catch::Contains("--control") && Catch::Contains("--config"));
  }
  SECTION("both") {
    herald::test::temp_dir dir;
    herald::test::write_text(dir / "n.yaml", "node: n\ncatalog: events.yaml\n");
    auto r = run(herald_cmd("dlq list --control tcp://127.0.0.1:1 --config "
                            + shell_quote((dir / "n.yaml").string())),
                 10s);
    CHECK(r.exit_code == 2);
  }
  SECTION("an endpoint that is none") {
    auto r = run(herald_cmd("dlq list --control localhost:5701"), 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("tcp://HOST:PORT"));
  }
}

TEST_CASE("dlq reads the control endpoint from the node's config",
          "[integration][cli][dlq]") {
  fake_node node{[](const payload&) {
    return payload{{"dead_letters", letters()}, {"more", false}};
  }};
  herald::test::temp_dir dir;
  auto file = dir / "email_node.yaml";
  SECTION("a fixed port") {
    herald::test::write_text(file, "node: email-node\ncatalog: events.yaml\n"
                                   "control: "
                                     + node.endpoint() + "\n");
    auto r =
      run(herald_cmd("dlq list --json --config " + shell_quote(file.string())),
          10s);
    REQUIRE(r.exit_code == 0);
    CHECK(nlohmann::json::parse(r.out) == letters());
  }
  SECTION("a port the node picks") {
    herald::test::write_text(file, "node: email-node\ncatalog: events.yaml\n"
                                   "control: tcp://127.0.0.1:*\n");
    auto r =
      run(herald_cmd("dlq list --config " + shell_quote(file.string())), 10s);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Contains("tcp://127.0.0.1:*")
                        && Catch::Contains("pass --control with the port the "
                                           "node logged at start"));
    CHECK(node.requests().empty());
  }
}

TEST_CASE("every dlq command has a help", "[integration][cli][dlq]") {
  auto dlq = run(herald_cmd("dlq --help"), 10s);
  CHECK(dlq.exit_code == 0);
  for (auto cmd : {"list", "show", "redrive", "purge"})
    CHECK_THAT(dlq.out, Catch::Contains(cmd));
  auto purge = run(herald_cmd("dlq purge --help"), 10s);
  CHECK(purge.exit_code == 0);
  CHECK_THAT(purge.out, Catch::Contains("--all") && Catch::Contains("--dry-run")
                          && Catch::Contains("--control")
                          && Catch::Contains("--timeout"));
}

namespace {

// The dead letters `herald dlq list --json` reports, or an empty array
// when the command failed (reported by CHECK).
payload list_letters(const std::string& control) {
  auto r =
    run(herald_cmd("dlq list --json --control " + shell_quote(control)), 10s);
  INFO("dlq list stderr: " << r.err);
  CHECK(r.exit_code == 0);
  try {
    return payload::parse(r.out);
  } catch (const std::exception&) {
    return payload::array();
  }
}

// A UserService node publishing `created` user.account.created events of
// `users` users once an EmailService consumer listens, and the config of
// that consumer with `policy` (its retry and dead-letter lines), in `dir`.
struct real_nodes {
  real_nodes(const herald::test::temp_dir& dir, const std::string& policy,
             int created, int users)
      : dir_(dir) {
    using herald::test::write_text;
    const std::string src = HERALD_SOURCE_DIR;
    write_text(dir / "user.yaml",
               "node: user-node\nservice: UserService\ncatalog: " + src
                 + "/config/events.yaml\ndata_dir: "
                 + (dir / "user.data").string() + "\n");
    write_text(dir / "email.yaml",
               "node: email-node\nservice: EmailService\ncatalog: " + src
                 + "/config/events.yaml\ndata_dir: "
                 + (dir / "email.data").string()
                 + "\nconsumers:\n  EmailService:\n"
                   "    subscribe: [user.account.created]\n"
                 + policy);
    producer = std::make_unique<herald::test::child>(
      "exec " + bin + "/examples/user_service --config "
        + shell_quote((dir / "user.yaml").string()) + " --created "
        + std::to_string(created) + " --deleted 0 --users "
        + std::to_string(users)
        + " --rate 0 --wait-subscribers 1 --wait-timeout 30 "
          "--linger-ms 120000",
      dir / "user.out", dir / "user.err");
    auto ep = herald::test::wait_for_line(*producer, "publishing on ", 20s);
    REQUIRE(ep);
    endpoint = *ep;
    auto ctl = herald::test::wait_for_line(*producer, "control on ", 20s);
    REQUIRE(ctl);
    owner = *ctl;
  }

  // The EmailService consumer's command with `args`; it writes its control
  // endpoint to email.control.
  std::string consumer_cmd(const std::string& args) const {
    return "exec " + bin
           + "/tests/herald_test_service --service EmailService --config "
           + shell_quote((dir_ / "email.yaml").string()) + " --peer "
           + shell_quote(endpoint) + " --quiet --control-file "
           + shell_quote((dir_ / "email.control").string()) + " --record "
           + shell_quote((dir_ / "email.record").string()) + " " + args;
  }

  // The control endpoint the running consumer wrote.
  std::string control() const {
    auto text = herald::test::wait_for_file(dir_ / "email.control", 20s);
    REQUIRE(text);
    return text->substr(0, text->size() - 1);
  }

  const std::string bin = HERALD_BINARY_DIR;
  const herald::test::temp_dir& dir_;
  std::unique_ptr<herald::test::child> producer;
  std::string endpoint;
  /// The producer's control endpoint: the stream's owner keeps the
  /// consumer group's dead letters of its stream.
  std::string owner;
};

} // namespace

TEST_CASE("dlq against a real node: failed events wait parked, and a redrive "
          "after the fix hands them back in order",
          "[integration][cli][dlq][failure]") {
  using herald::test::child;
  using herald::test::temp_dir;
  temp_dir dir;
  real_nodes nodes{dir,
                   "    retry: {attempts: 2, initial: 10ms}\n"
                   "    dead_letter: park\n",
                   6, 2};
  std::string control;
  {
    // Every handler call fails: each user's first event is tried twice,
    // the two after it are parked behind it.
    child failing{nodes.consumer_cmd("--fail-all"), dir / "email1.out",
                  dir / "email1.err"};
    (void)nodes.control(); // started
    // The group's dead letters are kept by the stream's owner.
    control = nodes.owner;
    payload letters = payload::array();
    (void)herald::test::wait_until(
      [&] {
        letters = list_letters(control);
        return letters.size() >= 6;
      },
      30s, 100ms);
    INFO("consumer stderr: " << failing.err());
    REQUIRE(letters.size() == 6);
    int parked = 0;
    for (auto& l : letters) {
      CHECK(l["consumer"] == "EmailService");
      CHECK(l["node"] == "email-node");
      if (l["parked"].get<bool>()) {
        ++parked;
        CHECK(l["attempts"].empty());
      } else {
        CHECK(l["attempts"].size() == 2);
      }
    }
    CHECK(parked == 4);

    auto first = letters[0]["id"].get<uint64_t>();
    auto show = run(herald_cmd("dlq show " + std::to_string(first)
                               + " --control " + shell_quote(control)),
                    10s);
    CHECK(show.exit_code == 0);
    CHECK_THAT(show.out, Catch::Contains("failing on purpose (--fail-all)")
                           && Catch::Contains("user_id")
                           && Catch::Contains("EmailService"));
    auto key = letters[0]["key"].get<std::string>();
    auto purge = run(herald_cmd("dlq purge --dry-run --key " + key
                                + " --control " + shell_quote(control)),
                     10s);
    CHECK(purge.exit_code == 0);
    CHECK_THAT(purge.out, Catch::Contains("3 dead letters would be purged"));
    CHECK(list_letters(control).size() == 6);
  }
  // The fix is deployed: a consumer that handles them. Its entities are
  // still parked (restored from the dead letters) until the redrive.
  std::filesystem::remove(dir / "email.control");
  child fixed{nodes.consumer_cmd(""), dir / "email2.out", dir / "email2.err"};
  (void)nodes.control(); // started
  CHECK(list_letters(control).size() == 6);
  auto redrive = run(herald_cmd("dlq redrive --consumer EmailService "
                                "--control "
                                + shell_quote(control)),
                     10s);
  INFO("redrive: " << redrive.out << redrive.err);
  CHECK(redrive.exit_code == 0);
  CHECK_THAT(redrive.out, Catch::Contains("6 dead letters"));
  INFO("consumer stderr: " << fixed.err());
  // Handled, then removed from the dead letters.
  (void)herald::test::wait_until(
    [&] {
      return list_letters(control).empty();
    },
    30s, 100ms);
  CHECK(list_letters(control).empty());
  fixed.kill();
  CHECK(fixed.wait_for(5s) == 0);
  nodes.producer->kill();
  // Each user's three events were handled in the order they were
  // published.
  std::map<std::string, std::vector<uint64_t>> seqs_of;
  std::istringstream lines{herald::test::read_text(dir / "email.record")};
  std::string stream, key, id;
  uint64_t seq = 0;
  int redelivered = 0;
  while (lines >> stream >> seq >> key >> redelivered >> id)
    seqs_of[key].push_back(seq);
  REQUIRE(seqs_of.size() == 2);
  for (auto& [k, seqs] : seqs_of) {
    INFO("key " << k);
    CHECK(seqs.size() == 3);
    CHECK(std::is_sorted(seqs.begin(), seqs.end()));
  }
}

TEST_CASE("a dead letter redriven twice keeps all 9 attempts and both "
          "redrives under its id",
          "[integration][cli][dlq][failure]") {
  herald::test::temp_dir dir;
  real_nodes nodes{dir, "    retry: {attempts: 3, initial: 10ms}\n", 1, 1};
  herald::test::child failing{nodes.consumer_cmd("--fail-all"),
                              dir / "email.out", dir / "email.err"};
  (void)nodes.control(); // started
  // The group's dead letters are kept by the stream's owner.
  auto control = nodes.owner;
  INFO("consumer stderr: " << failing.err());
  // Waits until the one letter has `attempts` attempts; returns it.
  auto letter_with = [&](size_t attempts) {
    payload letters = payload::array();
    (void)herald::test::wait_until(
      [&] {
        letters = list_letters(control);
        return letters.size() == 1 && letters[0]["attempts"].size() == attempts;
      },
      30s, 50ms);
    REQUIRE(letters.size() == 1);
    REQUIRE(letters[0]["attempts"].size() == attempts);
    return letters[0];
  };
  auto first = letter_with(3);
  auto id = first["id"].get<uint64_t>();
  for (int round = 1; round <= 2; ++round) {
    // A letter that failed again is free for a redrive just after it is
    // stored.
    (void)herald::test::wait_until(
      [&] {
        auto dry = run(
          herald_cmd("dlq redrive --dry-run --control " + shell_quote(control)),
          10s);
        return dry.out.find("1 dead letter would be redriven")
               != std::string::npos;
      },
      10s, 20ms);
    auto redrive =
      run(herald_cmd("dlq redrive --by ops-" + std::to_string(round)
                     + " --control " + shell_quote(control)),
          10s);
    REQUIRE(redrive.exit_code == 0);
    CHECK_THAT(redrive.out, Catch::Contains("1 dead letter redriven: "
                                            + std::to_string(id)));
    auto grown = letter_with(3 + 3 * static_cast<size_t>(round));
    CHECK(grown["id"] == id);
    CHECK(grown["redrives"].size() == static_cast<size_t>(round));
    CHECK(grown["created"] == first["created"]);
  }
  auto list =
    run(herald_cmd("dlq list --control " + shell_quote(control)), 10s);
  CHECK_THAT(line_with(list.out, "EmailService"),
             Catch::Matches(std::to_string(id)
                            + " +EmailService +user\\.account\\.created .* "
                              "+9 +2 +3 attempts failed .*"));
  auto show = run(herald_cmd("dlq show " + std::to_string(id) + " --control "
                             + shell_quote(control)),
                  10s);
  REQUIRE(show.exit_code == 0);
  CHECK_THAT(line_starting(show.out, "attempts:"), Catch::EndsWith(" 9"));
  CHECK_THAT(line_starting(show.out, "redrives:"), Catch::EndsWith(" 2"));
  CHECK_THAT(line_starting(show.out, "first failure:"),
             Catch::Contains("email-node  [error]  failing on purpose"));
  for (int n = 1; n <= 9; ++n)
    CHECK_THAT(line_starting(show.out, "  " + std::to_string(n) + ". "),
               Catch::Contains("email-node  [error]"));
  CHECK_THAT(line_starting(show.out, "  redrive 1: "),
             Catch::EndsWith("by ops-1"));
  CHECK_THAT(line_starting(show.out, "  redrive 2: "),
             Catch::EndsWith("by ops-2"));
  failing.kill();
  nodes.producer->kill();
}
