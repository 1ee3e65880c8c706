// A bad command line, as a user types it: every command has a --help, and
// an unknown option or command is named in the error (exit 2), even when
// CLI11 would first trip over the arguments it shifted.

#include <chrono>
#include <string>

#include <catch2/catch.hpp>

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

} // namespace

TEST_CASE("an unknown command is named, with the commands there are",
          "[integration][cli][errors]") {
  auto r = run(herald_cmd("frobnicate"), 10s);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("unknown command 'frobnicate'")
                      && Catch::Contains("publish")
                      && Catch::Contains("status"));
  CHECK(r.out.empty());
  SECTION("below a command") {
    auto sub = run(herald_cmd("catalog frobnicate"), 10s);
    CHECK(sub.exit_code == 2);
    CHECK_THAT(sub.err, Catch::Contains("herald catalog: unknown command "
                                        "'frobnicate'")
                          && Catch::Contains("check"));
  }
}

TEST_CASE("a missing command is asked for, with the commands there are",
          "[integration][cli][errors]") {
  auto r = run(herald_cmd(""), 10s);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("herald: which command?")
                      && Catch::Contains("publish, tail, catalog, dlq, "
                                         "status"));
  auto dlq = run(herald_cmd("dlq"), 10s);
  CHECK(dlq.exit_code == 2);
  CHECK_THAT(dlq.err, Catch::Contains("herald dlq: which command?")
                        && Catch::Contains("list, show, redrive, purge"));
}

TEST_CASE("a malformed tail pattern is a usage error naming the pattern",
          "[integration][cli][errors]") {
  auto r = run(herald_cmd("tail --config " HERALD_SOURCE_DIR
                          "/config/email_service.yaml 'user..'"),
               10s);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("PATTERN") && Catch::Contains("user.."));
}

TEST_CASE("an unknown option is named, not the arguments it shifted",
          "[integration][cli][errors]") {
  SECTION("before the positional arguments") {
    // --bogus takes no value: CLI11 would take `x` as the type and the type
    // as the JSON, and complain about the JSON.
    auto r =
      run(herald_cmd("publish --bogus x user.account.created '{}'"), 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("herald publish: unknown option "
                                      "'--bogus'"));
    CHECK_THAT(r.err, !Catch::Contains("JSON"));
    CHECK(r.out.empty());
  }
  SECTION("with a value after '='") {
    auto r = run(herald_cmd("publish --config "
                            + shell_quote(config_dir + "/user_service.yaml")
                            + " --bogus=1 user.account.created '{}'"),
                 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("unknown option '--bogus=1'"));
  }
  SECTION("of a command that needs a node") {
    auto r = run(herald_cmd("status --bogus"), 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("herald status: unknown option "
                                      "'--bogus'"));
  }
  SECTION("of a command two levels down") {
    auto r = run(herald_cmd("dlq list --control tcp://127.0.0.1:1 -z"), 10s);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("herald dlq list: unknown option '-z'"));
  }
}

TEST_CASE("herald status needs a node", "[integration][cli][errors]") {
  auto r = run(herald_cmd("status"), 10s);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err,
             Catch::Contains("--control") && Catch::Contains("--config"));
  SECTION("and gives up after --timeout when none answers") {
    auto port = herald::test::free_port();
    auto start = std::chrono::steady_clock::now();
    auto none = run(herald_cmd("status --timeout 0.3 --control tcp://127.0.0.1:"
                               + std::to_string(port)),
                    10s);
    CHECK(none.exit_code == 1);
    CHECK_THAT(none.err, Catch::StartsWith("herald: "));
    CHECK(std::chrono::steady_clock::now() - start < 5s);
  }
}

TEST_CASE("every command has a --help that exits 0 with its usage",
          "[integration][cli][errors]") {
  for (const char* cmd :
       {"", "publish", "tail", "catalog", "catalog check", "dlq", "dlq list",
        "dlq show", "dlq redrive", "dlq purge", "status"}) {
    INFO("herald " << cmd << " --help");
    auto r = run(herald_cmd(std::string{cmd} + " --help"), 10s);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains("Usage:")
                        && Catch::Contains("herald " + std::string{cmd}));
    CHECK(r.err.empty());
  }
  auto status = run(herald_cmd("status --help"), 10s);
  CHECK_THAT(status.out, Catch::Contains("--control")
                           && Catch::Contains("--config")
                           && Catch::Contains("--json"));
}

#ifdef HERALD_BENCH_EXE
TEST_CASE("herald_e2e_bench: --help prints the usage without running, an "
          "unknown option is named",
          "[integration][cli][errors][bench]") {
  const std::string bench = shell_quote(HERALD_BENCH_EXE);
  auto start = std::chrono::steady_clock::now();
  auto help = run(bench + " --help", 10s);
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("Usage:") && Catch::Contains("--events")
                         && Catch::Contains("--rate")
                         && Catch::Contains("--fsync"));
  // No benchmark ran: that prints a JSON line and takes seconds.
  CHECK_THAT(help.out, !Catch::Contains("publish_per_s"));
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  auto bogus = run(bench + " --bogus 1", 10s);
  CHECK(bogus.exit_code == 2);
  CHECK_THAT(bogus.err, Catch::Contains("unknown option '--bogus'"));
  CHECK(bogus.out.empty());
  auto bad = run(bench + " --fsync sometimes", 10s);
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("--fsync"));
  CHECK_THAT(help.out, Catch::Contains("--members"));
  auto both = run(bench + " --memory --members 2", 10s);
  CHECK(both.exit_code == 2);
  CHECK_THAT(both.err,
             Catch::Contains("--memory") && Catch::Contains("--members"));
  auto many = run(bench + " --members 17", 10s);
  CHECK(many.exit_code == 2);
  CHECK_THAT(many.err, Catch::Contains("--members"));
}
#endif

TEST_CASE("herald names the config file and line of a missing catalog and of "
          "a bind it cannot use",
          "[integration][cli][errors]") {
  herald::test::temp_dir dir;
  auto config = (dir / "node.yaml").string();
  herald::test::write_text(config, "node: n\nservice: UserService\n"
                                   "catalog: missing.yaml\n");
  auto missing =
    run(herald_cmd("publish --standalone --config " + shell_quote(config)
                   + " user.account.deleted '{}'"),
        20s);
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err,
             Catch::Contains(config + ":3: catalog: cannot read catalog '"
                             + (dir / "missing.yaml").string() + "'"));
  herald::test::write_text(config, "node: n\nservice: UserService\n"
                                   "catalog: "
                                     + config_dir
                                     + "/events.yaml\n"
                                       "bind: tcp://127.0.0.1:notaport\n");
  auto bind =
    run(herald_cmd("publish --standalone --config " + shell_quote(config)
                   + " user.account.deleted '{}'"),
        20s);
  CHECK(bind.exit_code == 1);
  CHECK_THAT(bind.err,
             Catch::Contains(config
                             + ":4: 'bind': 'tcp://127.0.0.1:notaport' "
                               "is not a ZeroMQ endpoint: the port "
                               "'notaport' is not a number 0-65535 or "
                               "*"));
}
