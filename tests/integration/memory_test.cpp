// A consumer's memory while it replays a backlog levels off: it is bounded
// by the consumer's configuration (the replay window, the events left
// unfinished), not by the backlog. Real processes: a test producer serves
// its log, and two fresh consumers replay N and then 3N events of 100
// entities with a handler slower than the replay, so that events wait in
// entity queues; each prints its peak resident set (VmHWM).

#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "process.hpp"

using namespace std::chrono_literals;
using herald::test::child;
using herald::test::shell_quote;
using herald::test::temp_dir;

namespace {

const std::string bin = HERALD_BINARY_DIR;
const std::string config_dir = HERALD_SOURCE_DIR "/config";

std::string write_config(const temp_dir& dir, const std::string& name,
                         const std::string& body) {
  auto path = dir / (name + ".yaml");
  herald::test::write_text(path, "node: " + name + "\ncatalog: " + config_dir
                                   + "/events.yaml\n" + body);
  return path.string();
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

// Runs a fresh consumer (its own data directory) until it handled
// `expect` events of the producer at `peer`; returns its peak resident set
// in KiB.
uint64_t replay_peak_kib(const temp_dir& dir, const std::string& config,
                         const std::string& peer, uint64_t expect,
                         const std::string& name, const std::string& service) {
  auto r = herald::test::run(
    "exec " + bin + "/tests/herald_test_service --service " + service
      + " --config " + shell_quote(config) + " --peer " + shell_quote(peer)
      + " --data-dir " + shell_quote((dir / name).string())
      + " --quiet --print-peak-rss --slow-first 1000000000 --slow-us 500"
      + " --timeout 240 --expect " + std::to_string(expect),
    300s);
  INFO(name << " stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  auto label = service + ": peak rss ";
  auto at = r.out.find(label);
  REQUIRE(at != std::string::npos);
  return std::stoull(r.out.substr(at + label.size()));
}

} // namespace

TEST_CASE("a consumer replaying a backlog levels off: 3N events take no more "
          "memory than N",
          "[integration][memory]") {
  temp_dir dir;
  constexpr uint64_t n = 40000;
  auto pcfg = write_config(dir, "memory-producer",
                           "service: UserService\ndata_dir: "
                             + (dir / "producer-data").string() + "\n");
  // Handlers on 4 threads at 500 us each: about 8,000 events/s, slower
  // than a replay reads, so events of the 100 entities wait in queues.
  auto ccfg = write_config(dir, "memory-consumer",
                           "service: EmailService\n"
                           "consumers:\n"
                           "  EmailService:\n"
                           "    subscribe: [user.account.created]\n"
                           "    concurrency: 4\n");
  // The second run is another consumer group: a second EmailService would
  // go on from the first one's offsets at the producer.
  auto ccfg2 = write_config(dir, "memory-consumer-2",
                            "service: AnalyticsService\n"
                            "consumers:\n"
                            "  AnalyticsService:\n"
                            "    subscribe: [user.account.created]\n"
                            "    concurrency: 4\n");
  auto go = (dir / "go").string();
  child producer{"exec " + bin + "/tests/herald_test_producer --config "
                   + shell_quote(pcfg) + " --users 100 --endpoint-file "
                   + shell_quote((dir / "producer.endpoint").string())
                   + " --go " + shell_quote(go) + " --batch "
                   + std::to_string(n) + " --batch " + std::to_string(2 * n),
                 dir / "producer.out", dir / "producer.err"};
  auto endpoint = herald::test::wait_for_file(dir / "producer.endpoint", 30s);
  INFO("producer stderr: " << producer.err());
  REQUIRE(endpoint);
  auto peer = trimmed(*endpoint);
  REQUIRE(herald::test::wait_for_line(producer, "batch 1: ", 60s));

  auto peak_n =
    replay_peak_kib(dir, ccfg, peer, n, "consumer-n", "EmailService");
  herald::test::write_text(go + ".2", "go\n");
  REQUIRE(herald::test::wait_for_line(producer, "batch 2: ", 60s));
  auto peak_3n =
    replay_peak_kib(dir, ccfg2, peer, 3 * n, "consumer-3n", "AnalyticsService");

  INFO("peak rss replaying " << n << " events: " << peak_n << " KiB; " << 3 * n
                             << " events: " << peak_3n << " KiB");
  // Flat: the larger backlog takes at most 16 MiB more (allocator noise),
  // where one that kept the waiting events would take tens of MiB more.
  CHECK(peak_3n <= peak_n + 16 * 1024);
}
