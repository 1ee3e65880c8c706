// The `herald` command as a user runs it: exit codes, messages, and a
// publish reaching a running `herald tail` in another process.

#include <chrono>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "process.hpp"

using namespace std::chrono_literals;
using herald::test::run;
using herald::test::shell_quote;

namespace {

const std::string herald_exe = shell_quote(HERALD_BINARY_DIR "/tools/herald");
const std::string config_dir = HERALD_SOURCE_DIR "/config";

std::string herald_cmd(const std::string& args) {
  return herald_exe + " " + args;
}

const std::string valid_created =
  R"({"user_id": "00000000-0000-4000-8000-00000000002a", )"
  R"("email": "user42@example.com", "registration_source": "web"})";

} // namespace

TEST_CASE("herald --help and --version exit 0", "[integration][cli]") {
  auto help = run(herald_cmd("--help"), 10s);
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("publish"));
  CHECK_THAT(help.out, Catch::Contains("tail"));
  CHECK_THAT(help.out, Catch::Contains("catalog"));
  auto version = run(herald_cmd("--version"), 10s);
  CHECK(version.exit_code == 0);
  CHECK_THAT(version.out, Catch::StartsWith("herald "));
  auto sub_help = run(herald_cmd("publish --help"), 10s);
  CHECK(sub_help.exit_code == 0);
  CHECK_THAT(sub_help.out, Catch::Contains("--control")
                             && Catch::Contains("--file")
                             && Catch::Contains("--standalone")
                             && Catch::Contains("WARNING"));
}

TEST_CASE("a bad command line exits 2 with the usage error on stderr",
          "[integration][cli]") {
  SECTION("publish without its arguments") {
    auto r = run(herald_cmd("publish"), 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("required"));
    CHECK(r.out.empty());
  }
  SECTION("publish with a payload that is not JSON") {
    auto r = run(herald_cmd("publish --config "
                            + shell_quote(config_dir + "/user_service.yaml")
                            + " user.account.created '{user_id: 1'"),
                 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("JSON"));
    CHECK_THAT(r.err, Catch::Contains("not valid JSON"));
  }
  SECTION("no subcommand") {
    auto r = run(herald_cmd(""), 10s);
    CHECK(r.exit_code == 2);
  }
}

TEST_CASE("herald catalog check accepts the shipped catalog",
          "[integration][cli]") {
  auto r =
    run(herald_cmd("catalog check " + shell_quote(config_dir + "/events.yaml")),
        10s);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("events.yaml: 2 events OK"));
}

TEST_CASE("herald catalog check names file and line of every problem",
          "[integration][cli]") {
  herald::test::temp_dir dir;
  auto file = dir / "broken.yaml";
  // Line 8: a type that does not exist; line 10: a consumer without action.
  herald::test::write_text(file,
                           "version: 1\n"
                           "events:\n"
                           "  user.account.created:\n"
                           "    trigger: New user registration completed\n"
                           "    producer: UserService\n"
                           "    key: user_id\n"
                           "    payload:\n"
                           "      user_id: {type: uuidd}\n"
                           "    consumers:\n"
                           "      EmailService: Send welcome email\n");
  auto r = run(herald_cmd("catalog check " + shell_quote(file.string())), 10s);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::StartsWith("herald: "));
  CHECK_THAT(r.err, Catch::Contains(file.string() + ":8"));
  CHECK_THAT(r.err, Catch::Contains("uuidd"));
  CHECK(r.out.empty());
}

TEST_CASE("herald publish --standalone rejects an invalid payload and sends "
          "nothing",
          "[integration][cli]") {
  herald::test::temp_dir dir;
  auto r = run(
    herald_cmd("publish --standalone --config "
               + shell_quote(config_dir + "/user_service.yaml") + " --data-dir "
               + shell_quote((dir / "data").string()) + " user.account.created "
               + shell_quote(R"({"user_id": "not-a-uuid", )"
                             R"("email": "user42@example.com", )"
                             R"("registration_source": "web"})")),
    20s);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("user.account.created"));
  CHECK_THAT(r.err, Catch::Contains("user_id"));
  CHECK_THAT(r.err, Catch::Contains("uuid"));
  CHECK(r.out.empty());
}

TEST_CASE("herald tail --timeout exits 1 when --count was not reached",
          "[integration][cli]") {
  auto r = run(herald_cmd("tail --config "
                          + shell_quote(config_dir + "/email_service.yaml")
                          + " --count 1 --timeout 0.5 user.account.created"),
               20s);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("saw 0 of 1"));
  CHECK(r.out.empty());
}

TEST_CASE("an event published with herald publish --standalone reaches "
          "herald tail",
          "[integration][cli]") {
  herald::test::temp_dir dir;
  // The publisher lives only for one publish: tail connects to a fixed port
  // (ZeroMQ retries until it is bound) and the publisher waits for it.
  auto endpoint =
    "tcp://127.0.0.1:" + std::to_string(herald::test::free_port());
  auto publisher_config = dir / "publisher.yaml";
  herald::test::write_text(publisher_config, "node: cli-test-publisher\n"
                                             "service: UserService\n"
                                             "bind: "
                                               + endpoint
                                               + "\n"
                                                 "catalog: "
                                               + config_dir
                                               + "/events.yaml\n"
                                                 "data_dir: "
                                               + (dir / "data").string()
                                               + "\n");
  herald::test::child tail{
    herald_cmd("tail --config "
               + shell_quote(config_dir + "/email_service.yaml") + " --peer "
               + endpoint + " --count 1 --timeout 20 " + " --endpoint-file "
               + shell_quote((dir / "tail.endpoint").string())
               + " user.account.created"),
    dir / "tail.out", dir / "tail.err"};
  REQUIRE(herald::test::wait_for_file(dir / "tail.endpoint", 10s));

  auto pub =
    run(herald_cmd("publish --standalone --config "
                   + shell_quote(publisher_config.string())
                   + " --wait-subscribers 1 --wait-timeout 10"
                   + " user.account.created " + shell_quote(valid_created)),
        30s);
  INFO("publish stderr: " << pub.err);
  REQUIRE(pub.exit_code == 0);
  auto receipt = nlohmann::json::parse(pub.out);
  CHECK(receipt.at("seq") == 1);

  auto status = tail.wait_for(25s);
  INFO("tail stderr: " << tail.err());
  REQUIRE(status);
  CHECK(*status == 0);
  auto out = tail.out();
  REQUIRE(!out.empty());
  CHECK(out.find('\n') == out.size() - 1); // exactly one line
  auto ev = nlohmann::ordered_json::parse(out);
  CHECK(ev.begin().key() == "event_type");
  CHECK(ev.at("event_type") == "user.account.created");
  CHECK(ev.at("data").at("email") == "user42@example.com");
  CHECK(ev.at("source") == "UserService");
  CHECK(ev.at("key") == "00000000-0000-4000-8000-00000000002a");
  CHECK(ev.at("id") == receipt.at("id"));
}
