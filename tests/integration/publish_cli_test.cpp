// `herald publish --control` as a user runs it against a running producer
// node (examples/user_service publishing nothing itself): acknowledged
// once durable, caught up by consumers that start later, lines of a file
// published in order, and a bad line stopping the run with exactly the
// lines before it published.

#include <chrono>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "process.hpp"

using namespace herald::test;
using namespace std::chrono_literals;

namespace {

const std::string src = HERALD_SOURCE_DIR;
const std::string bin = HERALD_BINARY_DIR;
const std::string herald_exe = shell_quote(bin + "/tools/herald");

std::string herald_cmd(const std::string& args) {
  return herald_exe + " " + args;
}

std::string user_id(int i) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "00000000-0000-4000-8000-%012x", i);
  return buf;
}

std::string created_line(int i, const std::string& email = {}) {
  nlohmann::ordered_json j{
    {"user_id", user_id(i)},
    {"email",
     email.empty() ? "user" + std::to_string(i) + "@example.com" : email},
    {"registration_source", "web"}};
  return j.dump();
}

std::string write_config(const temp_dir& dir, const std::string& node,
                         const std::string& service,
                         const std::string& consumes) {
  std::ostringstream yaml;
  yaml << "node: " << node << "\nservice: " << service
       << "\nbind: tcp://127.0.0.1:*\ncatalog: " << src
       << "/config/events.yaml\ndata_dir: " << (dir / (node + ".data")).string()
       << "\nlog_level: info\n";
  if (!consumes.empty())
    yaml << "consumers:\n  " << service << ":\n    subscribe: [" << consumes
         << "]\n";
  auto path = dir / (node + ".yaml");
  write_text(path, yaml.str());
  return path.string();
}

// A UserService node that publishes nothing itself and stays up: what
// `herald publish --control` publishes through.
struct producer_node {
  explicit producer_node(const temp_dir& dir)
      : proc{"exec " + bin + "/examples/user_service --config "
               + shell_quote(write_config(dir, "user-node", "UserService", ""))
               + " --created 0 --deleted 0 --linger-ms 120000",
             dir / "user.out", dir / "user.err"} {
    auto ep = wait_for_line(proc, "publishing on ", 20s);
    INFO("producer stderr: " << proc.err());
    REQUIRE(ep);
    endpoint = *ep;
    // The node's control endpoint, from its "started" line on stderr.
    REQUIRE(wait_until(
      [&] {
        auto err = proc.err();
        auto at = err.find("control=");
        if (at == std::string::npos)
          return false;
        auto end = err.find(' ', at);
        if (end == std::string::npos)
          return false;
        control = err.substr(at + 8, end - at - 8);
        return true;
      },
      10s, 20ms));
  }

  child proc;
  std::string endpoint;
  std::string control;
};

// The EmailService consumer of the tests, recording every event it handles.
std::string consumer_cmd(const temp_dir& dir, const std::string& peer,
                         int expect) {
  return "exec " + bin
         + "/tests/herald_test_service --service EmailService --config "
         + shell_quote(write_config(dir, "email-node", "EmailService",
                                    "user.account.created"))
         + " --peer " + shell_quote(peer) + " --quiet --record "
         + shell_quote((dir / "email.record").string()) + " --expect "
         + std::to_string(expect) + " --timeout 60";
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    if (!line.empty())
      out.push_back(line);
  return out;
}

// One record line: `<stream> <seq> <key> <redelivered> <id>`.
struct handled {
  std::string stream;
  uint64_t seq = 0;
  std::string key;
  int redelivered = 0;
  std::string id;
};

std::vector<handled> read_record(const std::filesystem::path& path) {
  std::vector<handled> out;
  for (auto& line : lines_of(read_text(path))) {
    std::istringstream in{line};
    handled h;
    in >> h.stream >> h.seq >> h.key >> h.redelivered >> h.id;
    out.push_back(h);
  }
  return out;
}

} // namespace

TEST_CASE("herald publish --control: a consumer started 2 s later handles "
          "the event",
          "[integration][cli][publish]") {
  temp_dir dir;
  producer_node producer{dir};
  auto pub =
    run(herald_cmd("publish --control " + shell_quote(producer.control)
                   + " user.account.created " + shell_quote(created_line(42))),
        20s);
  INFO("publish stderr: " << pub.err);
  REQUIRE(pub.exit_code == 0);
  CHECK(pub.err.empty());
  REQUIRE(lines_of(pub.out).size() == 1);
  auto ack = nlohmann::ordered_json::parse(pub.out);
  CHECK(ack.begin().key() == "id");
  CHECK(ack.at("seq") == 1);
  CHECK(ack.at("stream").get<std::string>().size() == 36);

  // Nobody listened when it was published: the consumer reads it from the
  // producer's log on first contact.
  std::this_thread::sleep_for(2s);
  child consumer{consumer_cmd(dir, producer.endpoint, 1), dir / "email.out",
                 dir / "email.err"};
  auto status = consumer.wait_for(70s);
  INFO("consumer stderr: " << consumer.err());
  REQUIRE(status == 0);
  auto got = read_record(dir / "email.record");
  REQUIRE(got.size() == 1);
  CHECK(got[0].id == ack.at("id"));
  CHECK(got[0].stream == ack.at("stream"));
  CHECK(got[0].seq == 1);
  CHECK(got[0].key == user_id(42));
}

TEST_CASE("herald publish --file: 1,000 lines acknowledged and handled in "
          "order",
          "[integration][cli][publish]") {
  // 10 users, 100 events each: every user's events must be handled in the
  // file's order (entities are handled concurrently, each in order).
  temp_dir dir;
  producer_node producer{dir};
  std::string text;
  for (int i = 0; i < 1000; ++i)
    text +=
      created_line(i % 10, "line" + std::to_string(i) + "@example.com") + "\n";
  write_text(dir / "users.jsonl", text);
  child consumer{consumer_cmd(dir, producer.endpoint, 1000), dir / "email.out",
                 dir / "email.err"};

  auto pub = run(herald_cmd("publish --control " + shell_quote(producer.control)
                            + " user.account.created --file "
                            + shell_quote((dir / "users.jsonl").string())),
                 60s);
  INFO("publish stderr: " << pub.err);
  REQUIRE(pub.exit_code == 0);
  auto acks = lines_of(pub.out);
  REQUIRE(acks.size() == 1000);
  std::vector<std::string> ids;
  uint64_t last = 0;
  for (auto& line : acks) {
    auto ack = nlohmann::json::parse(line);
    auto seq = ack.at("seq").get<uint64_t>();
    CHECK(seq == last + 1);
    last = seq;
    ids.push_back(ack.at("id"));
  }

  auto status = consumer.wait_for(70s);
  INFO("consumer stderr: " << consumer.err());
  REQUIRE(status == 0);
  // Line i is seq i + 1, of user i % 10; each user's first handlings
  // come in seq order.
  std::vector<bool> seen(1001, false);
  std::map<std::string, uint64_t> last_of_user;
  size_t distinct = 0;
  for (auto& h : read_record(dir / "email.record")) {
    REQUIRE(h.seq >= 1);
    REQUIRE(h.seq <= 1000);
    if (seen[h.seq])
      continue;
    seen[h.seq] = true;
    ++distinct;
    auto line = static_cast<int>(h.seq - 1);
    INFO("seq " << h.seq);
    CHECK(h.key == user_id(line % 10));
    CHECK(h.id == ids[h.seq - 1]);
    CHECK(h.seq > last_of_user[h.key]);
    last_of_user[h.key] = h.seq;
  }
  CHECK(distinct == 1000);
}

TEST_CASE("herald publish --file stops at a bad line 500, having published "
          "exactly the 499 before it",
          "[integration][cli][publish]") {
  temp_dir dir;
  producer_node producer{dir};
  std::string text;
  for (int i = 1; i <= 1000; ++i)
    text +=
      (i == 500 ? created_line(i, "not-an-email") : created_line(i)) + "\n";
  write_text(dir / "users.jsonl", text);
  auto pub = run(herald_cmd("publish --control " + shell_quote(producer.control)
                            + " user.account.created --file "
                            + shell_quote((dir / "users.jsonl").string())),
                 60s);
  INFO("publish stderr: " << pub.err);
  CHECK(pub.exit_code == 1);
  CHECK_THAT(pub.err, Catch::StartsWith("herald: line 500: "));
  CHECK_THAT(pub.err, Catch::Contains("email")
                        && Catch::Contains("not-an-email")
                        && Catch::Contains("published the 499 events before"));
  auto acks = lines_of(pub.out);
  REQUIRE(acks.size() == 499);
  CHECK(nlohmann::json::parse(acks.back()).at("seq") == 499);

  // Nothing after line 499 reached the log: the next event is seq 500.
  auto next =
    run(herald_cmd("publish --control " + shell_quote(producer.control)
                   + " user.account.created - <<'EOF'\n" + created_line(1001)
                   + "\nEOF"),
        20s);
  INFO("next publish stderr: " << next.err);
  REQUIRE(next.exit_code == 0);
  CHECK(nlohmann::json::parse(next.out).at("seq") == 500);
}

TEST_CASE("herald publish --control refuses what it cannot deliver",
          "[integration][cli][publish]") {
  temp_dir dir;
  SECTION("no node named: a usage error") {
    auto r = run(herald_cmd("publish user.account.created "
                            + shell_quote(created_line(1))),
                 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("--control"));
    CHECK(r.out.empty());
  }
  SECTION("a line larger than the node's max message size") {
    producer_node producer{dir};
    std::string big = created_line(1);
    big.insert(big.size() - 1,
               ", \"note\": \"" + std::string(2 * 1024 * 1024, 'x') + "\"");
    write_text(dir / "big.jsonl", created_line(2) + "\n" + big + "\n");
    auto r = run(herald_cmd("publish --control " + shell_quote(producer.control)
                            + " user.account.created - < "
                            + shell_quote((dir / "big.jsonl").string())),
                 20s);
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::StartsWith("herald: line 2: ")
                        && Catch::Contains("transport.max_message_size")
                        && Catch::Contains("published the 1 event before"));
    CHECK(lines_of(r.out).size() == 1);
  }
  SECTION("a type the node's service does not produce") {
    // An EmailService node: user.account.created is UserService's.
    child email{"exec " + bin
                  + "/tests/herald_test_service --service EmailService "
                    "--config "
                  + shell_quote(write_config(dir, "email-node", "EmailService",
                                             "user.account.created"))
                  + " --quiet --control-file "
                  + shell_quote((dir / "email.control").string()),
                dir / "email.out", dir / "email.err"};
    auto control = wait_for_file(dir / "email.control", 20s);
    INFO("email stderr: " << email.err());
    REQUIRE(control);
    auto r =
      run(herald_cmd("publish --control "
                     + shell_quote(control->substr(0, control->find('\n')))
                     + " user.account.created " + shell_quote(created_line(1))),
          20s);
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::StartsWith("herald: ")
                        && Catch::Contains("produced by 'UserService'")
                        && Catch::Contains("not by 'EmailService'"));
    CHECK(r.out.empty());
  }
}
