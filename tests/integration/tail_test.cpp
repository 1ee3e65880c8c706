// `herald tail` reading a stream back before following it: --from-start,
// --since (a time, a duration), --format cloudevents. A test producer
// process (tests/support/test_producer.cpp) keeps its log served and
// publishes more when told, so that replay and live events meet.

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "herald/core/event.hpp"
#include "process.hpp"

using namespace std::chrono_literals;
using herald::test::child;
using herald::test::run;
using herald::test::shell_quote;
using herald::test::temp_dir;

namespace {

const std::string bin = HERALD_BINARY_DIR;
const std::string herald_exe = shell_quote(bin + "/tools/herald");
const std::string config_dir = HERALD_SOURCE_DIR "/config";

// Writes the producer's node config into `dir`: ephemeral loopback ports,
// its data_dir inside `dir`.
std::string producer_config(const temp_dir& dir) {
  auto path = dir / "producer.yaml";
  herald::test::write_text(path, "node: tail-test-producer\n"
                                 "service: UserService\n"
                                 "catalog: "
                                   + config_dir + "/events.yaml\n"
                                   + "data_dir: " + (dir / "data").string()
                                   + "\n");
  return path.string();
}

// Starts the test producer with `batches`; returns it once its first batch
// is durable, with its PUB endpoint.
struct producer {
  std::unique_ptr<child> proc;
  std::string endpoint;
  std::string go;
};

producer start_producer(const temp_dir& dir, const std::vector<int>& batches) {
  producer p;
  p.go = (dir / "go").string();
  std::string args;
  for (auto n : batches)
    args += " --batch " + std::to_string(n);
  p.proc = std::make_unique<child>(
    "exec " + bin + "/tests/herald_test_producer --config "
      + shell_quote(producer_config(dir)) + " --endpoint-file "
      + shell_quote((dir / "producer.endpoint").string()) + " --go "
      + shell_quote(p.go) + args,
    dir / "producer.out", dir / "producer.err");
  auto endpoint = herald::test::wait_for_file(dir / "producer.endpoint", 20s);
  INFO("producer stderr: " << p.proc->err());
  REQUIRE(endpoint);
  p.endpoint = *endpoint;
  while (!p.endpoint.empty()
         && (p.endpoint.back() == '\n' || p.endpoint.back() == ' '))
    p.endpoint.pop_back();
  REQUIRE(herald::test::wait_for_line(*p.proc, "batch 1: ", 20s));
  return p;
}

// Tells the producer to publish batch `k`, and waits until it did.
void release_batch(const producer& p, int k) {
  herald::test::write_text(p.go + "." + std::to_string(k), "go\n");
  INFO("producer stderr: " << p.proc->err());
  REQUIRE(herald::test::wait_for_line(
    *p.proc, "batch " + std::to_string(k) + ": ", 20s));
}

std::string tail_cmd(const producer& p, const std::string& args) {
  return "exec " + herald_exe + " tail --config "
         + shell_quote(config_dir + "/email_service.yaml") + " --peer "
         + shell_quote(p.endpoint) + " " + args;
}

// The complete lines of `text`.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line))
    if (!line.empty())
      out.push_back(line);
  if (!text.empty() && text.back() != '\n' && !out.empty())
    out.pop_back(); // still being written
  return out;
}

// What tail printed, read as envelopes: the seqs in print order, the ids.
struct printed {
  std::vector<uint64_t> seqs;
  std::set<std::string> streams;
  std::set<std::string> ids;
};

printed parse_json_lines(const std::string& text) {
  printed out;
  for (auto& line : lines_of(text)) {
    auto j = nlohmann::json::parse(line);
    out.seqs.push_back(j.at("seq").get<uint64_t>());
    out.streams.insert(j.at("stream").get<std::string>());
    out.ids.insert(j.at("id").get<std::string>());
  }
  return out;
}

std::vector<uint64_t> range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (auto s = from; s <= to; ++s)
    out.push_back(s);
  return out;
}

size_t line_count(const child& c) {
  return lines_of(c.out()).size();
}

// Stops a tail that prints until stopped, after giving it `settle` to
// print anything it would print twice.
void stop_tail(child& tail, std::chrono::milliseconds settle) {
  std::this_thread::sleep_for(settle);
  tail.kill();
}

} // namespace

TEST_CASE("herald tail --from-start prints the log's 100 events, then the "
          "live ones, none twice and none missing",
          "[integration][cli][tail]") {
  temp_dir dir;
  auto p = start_producer(dir, {100, 50});
  child tail{tail_cmd(p, "--from-start user.account.created"), dir / "tail.out",
             dir / "tail.err"};
  {
    INFO("tail stderr: " << tail.err());
    REQUIRE_WITHIN(30s, line_count(tail) >= 100);
  }
  // The replayed 100 are printed; 50 more come live while it runs.
  release_batch(p, 2);
  {
    INFO("tail stderr: " << tail.err());
    REQUIRE_WITHIN(30s, line_count(tail) >= 150);
  }
  stop_tail(tail, 1s);
  INFO("tail stderr: " << tail.err());
  auto out = parse_json_lines(tail.out());
  CHECK(out.seqs == range(1, 150));
  CHECK(out.streams.size() == 1);
  CHECK(out.ids.size() == 150);
}

TEST_CASE("herald tail --since a time prints the events published after it, "
          "then the live ones",
          "[integration][cli][tail]") {
  temp_dir dir;
  auto p = start_producer(dir, {20, 30, 10});
  // A time between the first two batches.
  std::this_thread::sleep_for(300ms);
  auto between = herald::format_timestamp(herald::now_us());
  std::this_thread::sleep_for(300ms);
  release_batch(p, 2);

  child since_time{tail_cmd(p, "--since " + between + " user.account.created"),
                   dir / "time.out", dir / "time.err"};
  // A duration that reaches back before the first batch: everything.
  child since_duration{tail_cmd(p, "--since 5m user.account.created"),
                       dir / "duration.out", dir / "duration.err"};
  {
    INFO("tail --since " << between << " stderr: " << since_time.err());
    REQUIRE_WITHIN(30s, line_count(since_time) >= 30);
  }
  {
    INFO("tail --since 5m stderr: " << since_duration.err());
    REQUIRE_WITHIN(30s, line_count(since_duration) >= 50);
  }
  release_batch(p, 3);
  REQUIRE_WITHIN(30s, line_count(since_time) >= 40);
  REQUIRE_WITHIN(30s, line_count(since_duration) >= 60);
  stop_tail(since_time, 1s);
  stop_tail(since_duration, 0ms);
  {
    INFO("tail --since " << between << " stderr: " << since_time.err());
    auto out = parse_json_lines(since_time.out());
    CHECK(out.seqs == range(21, 60));
    CHECK(out.ids.size() == 40);
  }
  {
    INFO("tail --since 5m stderr: " << since_duration.err());
    auto out = parse_json_lines(since_duration.out());
    CHECK(out.seqs == range(1, 60));
    CHECK(out.ids.size() == 60);
  }
}

TEST_CASE("herald tail --since a duration counts back from when it starts",
          "[integration][cli][tail]") {
  temp_dir dir;
  // 6 s between the batches; tail starts right after the second and asks
  // for the last 3 s: 3 s of margin either way on a loaded machine.
  auto p = start_producer(dir, {10, 10});
  std::this_thread::sleep_for(6s);
  release_batch(p, 2);
  auto r =
    run(tail_cmd(p, "--since 3s --count 10 --timeout 20 user.account.created"),
        30s);
  INFO("tail stderr: " << r.err);
  CHECK(r.exit_code == 0);
  auto out = parse_json_lines(r.out);
  CHECK(out.seqs == range(11, 20));
}

TEST_CASE("a bad --since is a usage error naming the value and the forms",
          "[integration][cli][tail]") {
  auto tail = [](const std::string& args) {
    return run(herald_exe + " tail --config "
                 + shell_quote(config_dir + "/email_service.yaml") + " " + args
                 + " user.account.created",
               10s);
  };
  for (auto* bad : {"yesterday", "5", "5x", "1h30", "2024-13-01T00:00:00Z",
                    "2024-05-01 12:00:00"}) {
    INFO(bad);
    auto r = tail(std::string{"--since "} + shell_quote(bad));
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(std::string{"'"} + bad + "'"));
    CHECK_THAT(r.err, Catch::Contains("30s"));
    CHECK_THAT(r.err, Catch::Contains("RFC 3339"));
    CHECK(r.out.empty());
  }
  auto both = tail("--from-start --since 5m");
  CHECK(both.exit_code == 2);
  CHECK_THAT(both.err, Catch::Contains("excludes"));
  auto format = tail("--format xml");
  CHECK(format.exit_code == 2);
  CHECK_THAT(format.err, Catch::Contains("xml"));
}

TEST_CASE("herald tail --help says what is replayed and what is live",
          "[integration][cli][tail]") {
  auto r = run(herald_exe + " tail --help", 10s);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("live events only"));
  CHECK_THAT(r.out, Catch::Contains("--from-start"));
  CHECK_THAT(r.out, Catch::Contains("--since"));
  CHECK_THAT(r.out, Catch::Contains("cloudevents"));
}

TEST_CASE("herald tail --format cloudevents prints every CloudEvents "
          "attribute with the envelope's values",
          "[integration][cli][tail]") {
  temp_dir dir;
  auto p = start_producer(dir, {3});
  auto envelopes =
    run(tail_cmd(p, "--from-start --count 3 --timeout 20 user.account.created"),
        30s);
  auto cloudevents = run(tail_cmd(p, "--from-start --format cloudevents "
                                     "--count 3 --timeout 20 "
                                     "user.account.created"),
                         30s);
  INFO("json stderr: " << envelopes.err);
  INFO("cloudevents stderr: " << cloudevents.err);
  REQUIRE(envelopes.exit_code == 0);
  REQUIRE(cloudevents.exit_code == 0);
  auto js = lines_of(envelopes.out);
  auto ces = lines_of(cloudevents.out);
  REQUIRE(js.size() == 3);
  REQUIRE(ces.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    INFO(ces[i]);
    auto env = nlohmann::json::parse(js[i]);
    auto ce = nlohmann::ordered_json::parse(ces[i]);
    // Required attributes first, as the structured format shows them.
    CHECK(ce.begin().key() == "specversion");
    CHECK(ce.at("specversion") == "1.0");
    CHECK(ce.at("id") == env.at("id"));
    CHECK(ce.at("source") == "UserService");
    CHECK(ce.at("type") == "user.account.created");
    // Optional ones and the extensions.
    CHECK(ce.at("time") == env.at("timestamp"));
    CHECK(herald::parse_timestamp(ce.at("time").get<std::string>()));
    CHECK(ce.at("subject") == env.at("key"));
    CHECK(ce.at("subject") == ce.at("data").at("user_id"));
    CHECK(ce.at("datacontenttype") == "application/json");
    CHECK(ce.at("data") == env.at("data"));
    CHECK(ce.at("data").at("email")
          == "user" + std::to_string(i) + "@example.com");
    CHECK(ce.at("heraldseq") == std::to_string(i + 1));
    CHECK(ce.at("heraldstream") == env.at("stream"));
    CHECK_FALSE(ce.contains("event_type"));
  }
}
