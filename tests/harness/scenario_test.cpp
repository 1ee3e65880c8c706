// Scenario files: what a bad one is told, and that a seed makes the
// schedule and the workload.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

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
