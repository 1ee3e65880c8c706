#include <catch2/catch.hpp>

#include <sstream>

#include <nlohmann/json.hpp>

#include "process.hpp"

using namespace herald::test;
using namespace std::chrono_literals;

namespace {

const std::string src = HERALD_SOURCE_DIR;
const std::string bin = HERALD_BINARY_DIR;

} // namespace

TEST_CASE("two node processes: B receives all 10,000 events in publish order",
          "[integration][two_nodes]") {
  temp_dir dir;
  // A binds an ephemeral port, prints it, and publishes only once B's
  // subscription reached it. Its data directory (the config's default,
  // data/user-node) lands in the test's folder.
  child a{"cd " + shell_quote(dir.path().string()) + " && exec " + bin
            + "/examples/user_service --config " + src
            + "/config/user_service.yaml --created 10000 --deleted 0"
              " --users 1000 --wait-subscribers 1 --wait-timeout 30",
          dir / "a.out", dir / "a.err"};
  auto endpoint = wait_for_line(a, "publishing on ", 20s);
  REQUIRE(endpoint);
  child b{bin + "/tools/herald tail --config " + src
            + "/config/email_service.yaml --peer " + shell_quote(*endpoint)
            + " --count 10000 --timeout 60 user.account.created",
          dir / "b.out", dir / "b.err"};
  auto a_status = a.wait_for(60s);
  INFO("A stderr: " << a.err());
  INFO("B stderr: " << b.err());
  REQUIRE(a_status == 0);
  CHECK_THAT(a.out(), Catch::Contains("published 10000 user.account.created"));
  auto b_status = b.wait_for(60s);
  INFO("B stderr: " << b.err());
  REQUIRE(b_status == 0);

  std::istringstream lines{b.out()};
  std::string line;
  uint64_t expected_seq = 1;
  std::string stream;
  size_t count = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    REQUIRE(j["event_type"] == "user.account.created");
    // Fails on the first missing or out-of-order event.
    REQUIRE(j["seq"].get<uint64_t>() == expected_seq);
    if (stream.empty())
      stream = j["stream"].get<std::string>();
    REQUIRE(j["stream"] == stream);
    REQUIRE(j["source"] == "UserService");
    REQUIRE(j["key"] == j["data"]["user_id"]);
    ++expected_seq;
    ++count;
  }
  CHECK(count == 10000);
}
