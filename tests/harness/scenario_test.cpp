// Scenario files: what a bad one is told, and that a seed makes the
// schedule and the workload.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "harness/scenario.hpp"
#include "harness/schedule.hpp"
#include "herald/core/catalog.hpp"
#include "herald/core/errc.hpp"

namespace {

using namespace herald::harness;

const std::string good = R"(name: t
catalog: events.yaml
nodes:
  - name: user
    command: [user_service, --config, "{{config}}"]
    config: |
      node: {{node}}
      control: tcp://{{host}}:{{port:control}}
  - name: email
    count: 2
    command: [email_service, --config, "{{config}}"]
    config: |
      node: {{node}}
      control: tcp://{{host}}:{{port:control}}
workload:
  publish_to: user
  types: [user.account.created]
  entities: 10
  rate: 50
  duration: 10s
  poison: 2
faults:
  - {at: 1s, kill: email, restart_after: 1s}
  - {at: 3s, pause: email-2, for: 500ms}
  - {at: 5s, slow: email-1, for: 2s, delay: 300ms, keys: 2}
random: {rate: 0.5, kinds: [kill, pause, slow], min_gap: 1s}
)";

std::string error_of(const std::string& yaml) {
  auto sc = parse_scenario(yaml, "dir/s.yaml");
  REQUIRE_FALSE(sc);
  CHECK(herald::is(sc.error(), herald::errc::invalid_config));
  return herald::message_of(sc.error());
}

herald::catalog seed_catalog() {
  auto cat =
    herald::catalog::load_file(HERALD_SOURCE_DIR "/config/events.yaml");
  REQUIRE(cat);
  return std::move(*cat);
}

} // namespace

TEST_CASE("a scenario is read with its nodes, workload, faults and checks",
          "[harness][scenario]") {
  auto sc = parse_scenario(good, "dir/s.yaml");
  REQUIRE(sc);
  CHECK(sc->catalog
        == (std::filesystem::current_path() / "dir/events.yaml").string());
  REQUIRE(sc->nodes.size() == 2);
  CHECK(sc->nodes[1].count == 2);
  CHECK(sc->workload.duration == std::chrono::seconds{10});
  REQUIRE(sc->faults.size() == 3);
  CHECK(sc->faults[1].kind == fault_kind::pause);
  CHECK(sc->faults[1].hold == std::chrono::milliseconds{500});
  CHECK(sc->random.rate == 0.5);
  CHECK_FALSE(sc->checks.duplicates_fail);
  auto in = instances_of(*sc);
  REQUIRE(in.size() == 3);
  CHECK(in[1].name == "email-1");
}

TEST_CASE("scenario errors name the file, the line and the key",
          "[harness][scenario]") {
  SECTION("an unknown key") {
    auto text = good;
    text.replace(text.find("  entities: 10"), 14, "  entitys: 10");
    auto msg = error_of(text);
    CHECK_THAT(msg, Catch::Contains("dir/s.yaml:18"));
    CHECK_THAT(msg, Catch::Contains("entitys"));
  }
  SECTION("a fault on an unknown node") {
    auto text = good;
    text.replace(text.find("kill: email,"), 12, "kill: mail, ");
    auto msg = error_of(text);
    CHECK_THAT(msg, Catch::Contains("dir/s.yaml:23"));
    CHECK_THAT(msg, Catch::Contains("node 'mail' is not among the nodes "
                                    "(user, email)"));
  }
  SECTION("a bad duration") {
    auto text = good;
    text.replace(text.find("for: 500ms"), 10, "for: soon!");
    auto msg = error_of(text);
    CHECK_THAT(msg, Catch::Contains("dir/s.yaml:24"));
    CHECK_THAT(msg, Catch::Contains("'for': 'soon!' is not a positive "
                                    "duration"));
  }
  SECTION("a fault after the workload") {
    auto text = good;
    text.replace(text.find("at: 5s"), 6, "at: 9s");
    CHECK_THAT(error_of(text), Catch::Contains("after the workload"));
  }
  SECTION("a missing key") {
    auto text = good;
    text.erase(text.find("  publish_to: user\n"), 19);
    auto msg = error_of(text);
    CHECK_THAT(msg, Catch::Contains("dir/s.yaml:15"));
    CHECK_THAT(msg, Catch::Contains("publish_to"));
  }
  SECTION("two kinds in one fault") {
    auto text = good;
    text.replace(text.find("pause: email-2"), 14, "pause: email-2, kill: user");
    CHECK_THAT(error_of(text), Catch::Contains("exactly one of kill, pause, "
                                               "slow"));
  }
  SECTION("no YAML") {
    CHECK_THAT(error_of("nodes: [\n"), Catch::Contains("dir/s.yaml"));
  }
}

TEST_CASE("the same seed makes the same schedule and workload, another seed "
          "another",
          "[harness][schedule]") {
  auto sc = parse_scenario(good, "dir/s.yaml");
  REQUIRE(sc);
  auto cat = seed_catalog();
  auto a = make_plan(*sc, cat, 7);
  auto b = make_plan(*sc, cat, 7);
  auto c = make_plan(*sc, cat, 8);
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(c);
  CHECK(describe(*a, *sc) == describe(*b, *sc));
  CHECK(a->digest() == b->digest());
  CHECK(describe(*a, *sc) != describe(*c, *sc));
  CHECK(a->digest() != c->digest());
  // 10 s at 50/s; timed faults plus random ones, in time order.
  CHECK(a->events.size() == 500);
  CHECK(a->faults.size() >= 3);
  CHECK(
    std::is_sorted(a->faults.begin(), a->faults.end(), [](auto& x, auto& y) {
      return x.at < y.at;
    }));
  CHECK(a->poison_keys.size() == 2);
  // Every payload is valid under the catalog.
  for (auto& ev : a->events)
    CHECK_FALSE(cat.validate(ev.type, ev.data));
}

TEST_CASE("a workload type outside the catalog is refused, naming it",
          "[harness][schedule]") {
  auto text = good;
  text.replace(text.find("[user.account.created]"), 22, "[user.account.made]");
  auto sc = parse_scenario(text, "dir/s.yaml");
  REQUIRE(sc);
  auto p = make_plan(*sc, seed_catalog(), 1);
  REQUIRE_FALSE(p);
  CHECK_THAT(herald::message_of(p.error()),
             Catch::Contains("type 'user.account.made' is not in the "
                             "catalog"));
}

TEST_CASE("partition, disk_full and clock faults are read and scheduled",
          "[harness][scenario]") {
  auto text = good;
  text.replace(text.find("random: "), 0,
               "  - {at: 6s, partition: [user, email-1], one_way: true, "
               "for: 1s}\n"
               "  - {at: 7s, disk_full: email-2, for: 1s}\n"
               "  - {at: 8s, clock: user, jump: -30m, for: 1s}\n"
               "mode: netns\n"
               "disk_size: 16\n");
  auto sc = parse_scenario(text, "dir/s.yaml");
  REQUIRE(sc);
  CHECK(sc->mode == run_mode::netns);
  CHECK(sc->disk_size == 16u << 20);
  REQUIRE(sc->faults.size() == 6);
  CHECK(sc->faults[3].kind == fault_kind::partition);
  CHECK(sc->faults[3].group == std::vector<std::string>{"user", "email-1"});
  CHECK(sc->faults[3].one_way);
  CHECK(sc->faults[4].kind == fault_kind::disk_full);
  CHECK(sc->faults[5].jump == std::chrono::minutes{-30});
  CHECK(needs_netns(fault_kind::partition));
  CHECK_FALSE(needs_netns(fault_kind::clock));
  auto p = make_plan(*sc, seed_catalog(), 3);
  REQUIRE(p);
  auto part = std::find_if(p->faults.begin(), p->faults.end(), [](auto& a) {
    return a.kind == fault_kind::partition;
  });
  REQUIRE(part != p->faults.end());
  CHECK(part->group == std::vector<std::string>{"user", "email-1"});
  CHECK(part->one_way);
}

TEST_CASE("random faults of every kind come from the seed",
          "[harness][schedule]") {
  auto text = good;
  auto line = text.find("random: ");
  text.replace(line, text.find('\n', line) - line,
               "random: {rate: 3, kinds: [partition, disk_full, clock], "
               "min_gap: 200ms, clock_jump: 10m, partition_for: 300ms, "
               "disk_full_for: 300ms, clock_for: 300ms}");
  auto sc = parse_scenario(text, "dir/s.yaml");
  REQUIRE(sc);
  auto cat = seed_catalog();
  auto a = make_plan(*sc, cat, 11);
  auto b = make_plan(*sc, cat, 11);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->digest() == b->digest());
  std::set<fault_kind> kinds;
  for (auto& f : a->faults) {
    if (f.origin != "random")
      continue;
    kinds.insert(f.kind);
    if (f.kind == fault_kind::partition) {
      // A minority of the three instances: one.
      CHECK(f.group.size() == 1);
    }
    if (f.kind == fault_kind::clock)
      CHECK(std::chrono::abs(f.jump) <= std::chrono::minutes{10});
  }
  CHECK(kinds.size() == 3);
}

TEST_CASE("errors of the new faults name the key and the rule",
          "[harness][scenario]") {
  SECTION("one_way without a partition") {
    auto text = good;
    text.replace(text.find("for: 500ms}"), 11, "for: 500ms, one_way: true}");
    CHECK_THAT(error_of(text), Catch::Contains("'one_way' goes with "
                                               "partition"));
  }
  SECTION("a bad jump") {
    auto text = good;
    text.replace(text.find("random: "), 0,
                 "  - {at: 6s, clock: user, jump: later, for: 1s}\n");
    CHECK_THAT(error_of(text), Catch::Contains("'jump': 'later' is not a "
                                               "clock jump"));
  }
  SECTION("a partition of an unknown node") {
    auto text = good;
    text.replace(text.find("random: "), 0,
                 "  - {at: 6s, partition: [user, mail], for: 1s}\n");
    CHECK_THAT(error_of(text), Catch::Contains("'partition': node 'mail' "
                                               "is not among the nodes"));
  }
  SECTION("an unknown mode") {
    auto text = good + "mode: docker\n";
    CHECK_THAT(error_of(text), Catch::Contains("'mode': 'docker' is not a "
                                               "mode; use loopback or "
                                               "netns"));
  }
}

TEST_CASE("membership expectations, cycles and late starts are read",
          "[harness][scenario][membership]") {
  auto text = good;
  text.replace(text.find("random: "), 0,
               "  - {at: 6s, cycle: email-2, times: 20, period: 100ms, "
               "fds_within: 5s, fd_slack: 4}\n"
               "membership:\n"
               "  - {name: joined, at: 0s, within: 3s, members: 3}\n"
               "  - {after: 0, within: 5s, status: [suspect, down]}\n"
               "  - {healed: 0, within: 5s, member: email-1, status: up, "
               "incarnation: higher, stream: same, seen_by: [user]}\n"
               "  - {healed: 3, within: 10s, one_view: true}\n");
  text.replace(text.find("    count: 2\n"), 0, "    start_at: 2s\n");
  auto sc = parse_scenario(text, "dir/s.yaml");
  REQUIRE(sc);
  CHECK(sc->nodes[1].start_at == std::chrono::seconds{2});
  REQUIRE(sc->faults.size() == 4);
  auto& cycle = sc->faults[3];
  CHECK(cycle.kind == fault_kind::cycle);
  CHECK(cycle.times == 20);
  CHECK(cycle.period == std::chrono::milliseconds{100});
  CHECK(cycle.hold == std::chrono::seconds{2});
  CHECK(cycle.fds_within == std::chrono::seconds{5});
  CHECK(cycle.fd_slack == 4);
  REQUIRE(sc->membership.size() == 4);
  auto& m = sc->membership;
  CHECK(m[0].name == "joined");
  CHECK(m[0].kind == expect_kind::members);
  CHECK(m[0].count == 3);
  CHECK(m[0].status
        == std::vector<herald::control::member_status>{
          herald::control::member_status::up});
  CHECK(m[1].name == "membership[1]");
  CHECK(m[1].kind == expect_kind::member);
  CHECK(m[1].trigger == expect_trigger::applied);
  CHECK(m[1].member.empty()); // the fault's target
  CHECK(m[1].status.size() == 2);
  CHECK(m[2].trigger == expect_trigger::healed);
  CHECK(m[2].incarnation == compare::higher);
  CHECK(m[2].stream == compare::same);
  CHECK(m[2].seen_by == std::vector<std::string>{"user"});
  CHECK(m[3].kind == expect_kind::one_view);
  CHECK(m[3].fault == 3);
  // The cycle fault is scheduled with its index, the others too.
  auto p = make_plan(*sc, seed_catalog(), 5);
  REQUIRE(p);
  auto it = std::find_if(p->faults.begin(), p->faults.end(), [](auto& a) {
    return a.kind == fault_kind::cycle;
  });
  REQUIRE(it != p->faults.end());
  CHECK(it->spec == 3);
  CHECK(it->times == 20);
  CHECK(it->target == "email-2");
}

TEST_CASE("a producer that starts late moves the end of its faults",
          "[harness][scenario]") {
  // The workload starts once its node is up: faults until 7 s fit in a
  // 6 s workload whose producer starts at 3 s, not at 500 ms.
  auto text = good;
  text.replace(text.find("duration: 10s"), 13, "duration: 6s ");
  text.replace(text.find("    command: [user_service"), 0,
               "    start_at: 3s\n");
  auto sc = parse_scenario(text, "dir/s.yaml");
  REQUIRE(sc);
  text.replace(text.find("start_at: 3s"), 12, "start_at: 500ms");
  CHECK_THAT(error_of(text), Catch::Contains("it ends at 7000 ms, after the "
                                             "workload's end at 6500 ms"));
}

TEST_CASE("errors of membership expectations and cycles name the key and "
          "the rule",
          "[harness][scenario][membership]") {
  auto with = [](const std::string& extra) {
    auto text = good;
    text.replace(text.find("random: "), 0, extra);
    return text;
  };
  SECTION("no trigger") {
    CHECK_THAT(error_of(with("membership:\n  - {within: 3s, members: 3}\n")),
               Catch::Contains("membership[0]: needs exactly one of 'at'"));
  }
  SECTION("a fault that is not there") {
    CHECK_THAT(error_of(with("membership:\n  - {after: 7, within: 3s, "
                             "status: down}\n")),
               Catch::Contains("there is no fault 7"));
  }
  SECTION("an unknown status") {
    CHECK_THAT(error_of(with("membership:\n  - {after: 0, within: 3s, "
                             "status: dead}\n")),
               Catch::Contains("'status': 'dead' is not a member status; "
                               "use joining, up, suspect, down or leaving"));
  }
  SECTION("a comparison without a fault") {
    CHECK_THAT(error_of(with("membership:\n  - {at: 1s, within: 3s, member: "
                             "user, incarnation: higher}\n")),
               Catch::Contains("'incarnation' and 'stream' compare"));
  }
  SECTION("a member with several instances") {
    CHECK_THAT(error_of(with("membership:\n  - {at: 1s, within: 3s, member: "
                             "email, status: up}\n")),
               Catch::Contains("node 'email' has 2 instances; name one"));
  }
  SECTION("more members than instances") {
    CHECK_THAT(error_of(with("membership:\n  - {at: 1s, within: 3s, members: "
                             "4}\n")),
               Catch::Contains("'members': 4 is more than the 3 instances"));
  }
  SECTION("nothing expected") {
    CHECK_THAT(error_of(with("membership:\n  - {at: 1s, within: 3s}\n")),
               Catch::Contains("say what is expected"));
  }
  SECTION("an unknown key") {
    CHECK_THAT(error_of(with("membership:\n  - {at: 1s, within: 3s, members: "
                             "3, timeout: 2s}\n")),
               Catch::Contains("timeout"));
  }
  SECTION("cycle keys on another fault") {
    CHECK_THAT(error_of(with("  - {at: 6s, kill: user, restart_after: 1s, "
                             "times: 3}\n")),
               Catch::Contains("'times', 'period', 'fds_within' and "
                               "'fd_slack' go with cycle"));
  }
  SECTION("cycles that outlast the workload") {
    CHECK_THAT(error_of(with("  - {at: 6s, cycle: user, times: 50, period: "
                             "100ms}\n")),
               Catch::Contains("after the workload's end"));
  }
  SECTION("a random cycle") {
    auto text = good;
    text.replace(text.find("kinds: [kill, pause, slow]"), 26,
                 "kinds: [kill, cycle]      ");
    CHECK_THAT(error_of(text), Catch::Contains("cycle is a timed fault only"));
  }
  SECTION("both spellings of a late start") {
    auto text = good;
    text.replace(text.find("    count: 2\n"), 0,
                 "    start_at: 2s\n    start_after: 2s\n");
    CHECK_THAT(error_of(text), Catch::Contains("'start_after' is the older "
                                               "spelling of 'start_at'"));
  }
}

TEST_CASE("every shipped scenario is read and planned", "[harness][scenario]") {
  size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator{HERALD_SOURCE_DIR
                                                     "/harness/scenarios"}) {
    if (e.path().extension() != ".yaml")
      continue;
    ++files;
    INFO(e.path().string());
    auto sc = load_scenario(e.path().string());
    REQUIRE(sc);
    CHECK(sc->name == e.path().stem().string());
    // Its own catalog (groups-fanout-8 has one).
    auto cat = herald::catalog::load_file(sc->catalog);
    REQUIRE(cat);
    CHECK(make_plan(*sc, *cat, 1));
  }
  CHECK(files >= 12);
}

TEST_CASE("a takeover bound is read from checks", "[harness][scenario]") {
  SECTION("absent: none") {
    auto sc = parse_scenario(good, "dir/s.yaml");
    REQUIRE(sc);
    CHECK_FALSE(sc->checks.takeover_within);
  }
  SECTION("within 6s") {
    auto sc = parse_scenario(good
                               + "checks: {duplicates: allowed, takeover: "
                                 "{within: 6s}}\n",
                             "dir/s.yaml");
    REQUIRE(sc);
    REQUIRE(sc->checks.takeover_within);
    CHECK(*sc->checks.takeover_within == std::chrono::seconds{6});
  }
  SECTION("without within: an error naming the key") {
    auto msg = error_of(good + "checks: {takeover: {}}\n");
    CHECK_THAT(msg, Catch::Contains("checks: takeover: missing 'within'"));
  }
  SECTION("not a map") {
    auto msg = error_of(good + "checks: {takeover: 6s}\n");
    CHECK_THAT(msg, Catch::Contains("'takeover' must be a map like {within: "
                                    "7s}"));
  }
  SECTION("a bad duration") {
    auto msg = error_of(good + "checks: {takeover: {within: soon}}\n");
    CHECK_THAT(msg, Catch::Contains("'within': 'soon' is not a positive "
                                    "duration"));
  }
}

TEST_CASE("a bound on moves per restart is read from checks",
          "[harness][scenario]") {
  SECTION("absent: none") {
    auto sc = parse_scenario(good, "dir/s.yaml");
    REQUIRE(sc);
    CHECK_FALSE(sc->checks.moves_per_restart);
  }
  SECTION("per_restart 1, and 0") {
    auto sc = parse_scenario(good + "checks: {moves: {per_restart: 1}}\n",
                             "dir/s.yaml");
    REQUIRE(sc);
    REQUIRE(sc->checks.moves_per_restart);
    CHECK(*sc->checks.moves_per_restart == 1);
    sc = parse_scenario(good + "checks: {moves: {per_restart: 0}}\n",
                        "dir/s.yaml");
    REQUIRE(sc);
    CHECK(sc->checks.moves_per_restart == uint64_t{0});
  }
  SECTION("a negative bound: refused, naming the file, the key and the rule") {
    auto msg = error_of(good + "checks: {moves: {per_restart: -1}}\n");
    CHECK_THAT(msg, Catch::Contains("dir/s.yaml:"));
    CHECK_THAT(msg, Catch::Contains("checks: moves: 'per_restart' must be a "
                                    "whole number of moves of at least 0 "
                                    "(e.g. per_restart: 1), not '-1'"));
  }
  SECTION("not a number") {
    auto msg = error_of(good + "checks: {moves: {per_restart: once}}\n");
    CHECK_THAT(msg, Catch::Contains("'per_restart' must be a whole number"));
    CHECK_THAT(msg, Catch::Contains("not 'once'"));
    msg = error_of(good + "checks: {moves: {per_restart: 1.5}}\n");
    CHECK_THAT(msg, Catch::Contains("not '1.5'"));
  }
  SECTION("without per_restart, or another key") {
    auto msg = error_of(good + "checks: {moves: {}}\n");
    CHECK_THAT(msg, Catch::Contains("checks: moves: missing 'per_restart'"));
    msg = error_of(good + "checks: {moves: {per_restart: 1, per_kill: 1}}\n");
    CHECK_THAT(msg, Catch::Contains("per_kill"));
  }
  SECTION("not a map") {
    auto msg = error_of(good + "checks: {moves: 1}\n");
    CHECK_THAT(msg, Catch::Contains("checks: 'moves' must be a map like "
                                    "{per_restart: 1}"));
  }
}

TEST_CASE("instances are numbered from 1 per node", "[harness][scenario]") {
  auto sc = parse_scenario(good, "dir/s.yaml");
  REQUIRE(sc);
  auto in = instances_of(*sc);
  REQUIRE(in.size() == 3);
  CHECK(in[0].index == 1);
  CHECK(in[1].index == 1);
  CHECK(in[2].index == 2);
  CHECK(in[2].name == "email-2");
}

namespace {

// `good` with `faults` and `checks` in place of its own faults.
std::string with_faults(const std::string& faults,
                        const std::string& checks = "") {
  auto text = good;
  auto from = text.find("faults:\n");
  text.erase(from);
  return text + "faults:\n" + faults + checks;
}

} // namespace

TEST_CASE("wipe, hooks and run faults are read and scheduled",
          "[harness][scenario]") {
  auto sc = parse_scenario(
    with_faults(
      "  - {at: 2s, wipe: email-1, restart_after: 3s}\n"
      "  - {at: 6s, hooks: email, fail_keys: none, slow_keys: {k1: 50ms}}\n"
      "  - {at: 7s, hooks: email-2, fail_keys: poison}\n"
      "  - {at: 12s, run: [herald, dlq, redrive, --control,\n"
      "                    '{{endpoint:email-2:control}}'],\n"
      "     expect_exit: 3, expect_output: 'redriven [0-9]+', within: 4s,\n"
      "     retry: true}\n"
      "  - {at: 13s, run: [herald, group, reset-offsets, E, --to-time,\n"
      "                    '{{time:+2s}}'], rewinds: true,\n"
      "     reject_output: 'refused'}\n",
      "checks: {poison: redriven, publishes: acked}\n"),
    "dir/s.yaml");
  REQUIRE(sc);
  REQUIRE(sc->faults.size() == 5);
  auto& wipe = sc->faults[0];
  CHECK(wipe.kind == fault_kind::wipe);
  CHECK(wipe.hold == std::chrono::seconds{3});
  auto& fix = sc->faults[1];
  CHECK(fix.kind == fault_kind::hooks);
  REQUIRE(fix.fail_keys);
  CHECK(fix.fail_keys->empty());
  CHECK_FALSE(fix.fail_keys_poison);
  REQUIRE(fix.slow_keys);
  REQUIRE(fix.slow_keys->size() == 1);
  CHECK(fix.slow_keys->front().first == "k1");
  CHECK(fix.slow_keys->front().second == std::chrono::milliseconds{50});
  CHECK(sc->faults[2].fail_keys_poison);
  CHECK_FALSE(sc->faults[2].slow_keys);
  // A run comes after the workload's end (10 s): it takes no time.
  auto& run = sc->faults[3];
  CHECK(run.kind == fault_kind::run);
  CHECK(run.argv.size() == 5);
  CHECK(run.argv[4] == "{{endpoint:email-2:control}}");
  CHECK(run.expect_exit == 3);
  CHECK(run.expect_output == std::string{"redriven [0-9]+"});
  CHECK(run.within == std::chrono::seconds{4});
  CHECK(run.retry);
  CHECK(run.hold == std::chrono::milliseconds{0});
  CHECK_FALSE(run.rewinds);
  CHECK_FALSE(run.reject_output);
  auto& reset = sc->faults[4];
  CHECK(reset.rewinds);
  CHECK(reset.reject_output == std::string{"refused"});
  CHECK(reset.expect_exit == 0);
  CHECK(reset.within == std::chrono::seconds{10});
  CHECK_FALSE(reset.retry);
  CHECK(sc->checks.poison_redriven);
  CHECK(sc->checks.publishes_acked);

  auto cat = seed_catalog();
  auto p = make_plan(*sc, cat, 7);
  REQUIRE(p);
  REQUIRE(p->faults.size() >= 5);
  std::vector<const action*> timed;
  for (auto& a : p->faults)
    if (a.origin == "timed")
      timed.push_back(&a);
  REQUIRE(timed.size() == 5);
  CHECK(timed[0]->target == "email-1");
  // hooks on a node: every instance of it.
  CHECK(timed[1]->group == std::vector<std::string>{"email-1", "email-2"});
  CHECK(timed[2]->group == std::vector<std::string>{"email-2"});
  CHECK(timed[3]->target.empty());
  REQUIRE(timed[3]->spec_of != nullptr);
  CHECK(timed[3]->spec_of->argv.front() == "herald");
  auto lines = describe(*p, *sc);
  auto all = fmt::format("{}", fmt::join(lines, "\n"));
  CHECK_THAT(all, Catch::Contains("kill -9 email-1 and delete its data "
                                  "directory, restart 3000 ms later"));
  CHECK_THAT(all, Catch::Contains("set the test hooks of [email-1, "
                                  "email-2]: no fail keys, 1 slow key(s)"));
  CHECK_THAT(all, Catch::Contains("run [herald dlq redrive --control "
                                  "{{endpoint:email-2:control}}], expect "
                                  "exit 3 and output /redriven [0-9]+/ "
                                  "within 4000 ms, retried"));
}

TEST_CASE("errors of wipe, hooks and run faults name the key and the rule",
          "[harness][scenario]") {
  SECTION("restart_after goes with kill and wipe") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, hooks: email, fail_keys: "
                                    "none, restart_after: 1s}\n")),
               Catch::Contains("dir/s.yaml:23: faults[0]: 'restart_after' "
                               "goes with kill and wipe"));
  }
  SECTION("for does not go with a run") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, run: [herald], for: 1s}\n")),
               Catch::Contains("'for' does not go with run: it is done at "
                               "its 'at' and has no heal"));
  }
  SECTION("hooks need keys") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, hooks: email}\n")),
               Catch::Contains("hooks needs 'fail_keys' (none, poison or a "
                               "list of keys) or 'slow_keys'"));
  }
  SECTION("a word that is no choice") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, hooks: email, fail_keys: "
                                    "all}\n")),
               Catch::Contains("'fail_keys': 'all' is not a choice; use none "
                               "(clear them), poison"));
  }
  SECTION("keys go with hooks") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, kill: email, fail_keys: "
                                    "none}\n")),
               Catch::Contains("'fail_keys' and 'slow_keys' go with hooks"));
  }
  SECTION("a bad regular expression") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, run: [herald], "
                                    "expect_output: '(paused'}\n")),
               Catch::Contains("'expect_output': '(paused' is not a regular "
                               "expression"));
    CHECK_THAT(error_of(with_faults("  - {at: 1s, run: [herald], "
                                    "reject_output: '[x'}\n")),
               Catch::Contains("'reject_output': '[x' is not a regular "
                               "expression"));
  }
  SECTION("an exit status out of range") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, run: [herald], "
                                    "expect_exit: 300}\n")),
               Catch::Contains("'expect_exit' must be an exit status from 0 "
                               "to 255, not '300'"));
  }
  SECTION("a run needs its command as a list") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, run: []}\n")),
               Catch::Contains("'run' must be a list: the command and its "
                               "arguments"));
  }
  SECTION("expectations go with run") {
    CHECK_THAT(error_of(with_faults("  - {at: 1s, kill: email, rewinds: "
                                    "true}\n")),
               Catch::Contains("faults[0]: 'rewinds' goes with run"));
  }
  SECTION("a wipe must end by the workload's end, a run need not") {
    CHECK_THAT(error_of(with_faults("  - {at: 9s, wipe: email, "
                                    "restart_after: 2s}\n")),
               Catch::Contains("it ends at 11000 ms, after the workload's "
                               "end at 10000 ms"));
    CHECK(parse_scenario(with_faults("  - {at: 30s, run: [herald]}\n"),
                         "dir/s.yaml"));
  }
  SECTION("wipe, hooks and run are timed faults only") {
    auto text = good;
    text.replace(text.find("kinds: [kill, pause, slow]"), 26,
                 "kinds: [kill, wipe]");
    CHECK_THAT(error_of(text), Catch::Contains("random: 'kinds': wipe is a "
                                               "timed fault only"));
  }
  SECTION("checks: poison and publishes take their words") {
    CHECK_THAT(error_of(with_faults("", "checks: {poison: handled}\n")),
               Catch::Contains("'poison': 'handled' is not a choice; use "
                               "dead_letter or redriven"));
    CHECK_THAT(error_of(with_faults("", "checks: {publishes: all}\n")),
               Catch::Contains("'publishes': 'all' is not a choice; use any "
                               "or acked"));
  }
}
