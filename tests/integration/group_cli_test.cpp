// Operating consumer groups from the CLI against real node processes on
// loopback: `herald group describe` shows a 2-member group's holders,
// offsets and lag at its stream's owner; `herald group reset-offsets` is
// refused while members run, sets the offsets once they stopped (describe
// shows them, a restarted member handles again from there, in order),
// changes nothing with --dry-run and refuses bad input; and `herald dlq
// --consumer` lists a group's dead letters at every member, with their
// owner. Every wait is bounded.

#include <algorithm>
#include <chrono>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "deadline.hpp"
#include "process.hpp"

using namespace std::chrono_literals;
using herald::test::child;
using herald::test::run;
using herald::test::run_result;
using herald::test::shell_quote;
using herald::test::temp_dir;
using herald::test::wait_for_file;
using herald::test::write_text;
using json = nlohmann::json;

namespace {

const std::string bin = HERALD_BINARY_DIR;
const std::string src = HERALD_SOURCE_DIR;
const std::string herald_exe = shell_quote(bin + "/tools/herald");

run_result herald_run(const std::string& args) {
  return run(herald_exe + " " + args, 30s);
}

// The JSON a command printed, or null when it failed or printed none.
json json_of(const run_result& r) {
  if (r.exit_code != 0)
    return nullptr;
  try {
    return json::parse(r.out);
  } catch (const std::exception&) {
    return nullptr;
  }
}

std::string config_text(const temp_dir& dir, const std::string& name,
                        const std::string& service, const std::string& extra) {
  return "node: " + name + "\nservice: " + service + "\ncatalog: " + src
         + "/config/events.yaml\ndata_dir: " + (dir / (name + ".data")).string()
         + "\nlog_level: info\n" + extra;
}

// The control endpoint a node wrote to `file`, or empty after 20 s.
std::string control_of(const std::filesystem::path& file) {
  auto text = wait_for_file(file, 20s);
  if (!text)
    return {};
  auto s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
  return s;
}

// The distinct seqs a `--record` file lists, and each key's seqs in the
// order handled.
struct recorded {
  std::set<uint64_t> seqs;
  std::map<std::string, std::vector<uint64_t>> by_key;
};

recorded read_record(const std::filesystem::path& file) {
  recorded out;
  std::istringstream lines{herald::test::read_text(file)};
  std::string stream, key, id;
  uint64_t seq = 0;
  int redelivered = 0;
  while (lines >> stream >> seq >> key >> redelivered >> id) {
    out.seqs.insert(seq);
    out.by_key[key].push_back(seq);
  }
  return out;
}

// `t` as RFC 3339 UTC with microseconds.
std::string rfc3339(std::chrono::system_clock::time_point t) {
  auto us =
    std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch())
      .count();
  std::time_t secs = us / 1'000'000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof(out), "%s.%06lldZ", buf,
                static_cast<long long>(us % 1'000'000));
  return out;
}

// A UserService producer (the stream's owner) and the EmailService group
// of members email-a and email-b, 8 partitions, in `dir`.
struct group_cluster {
  explicit group_cluster(const temp_dir& d) : dir(d) {
    write_text(dir / "user.yaml", config_text(dir, "user-node", "UserService",
                                              "groups:\n  lease_ttl: 3s\n"));
    for (auto name : {"email-a", "email-b"})
      write_text(dir / (std::string{name} + ".yaml"),
                 config_text(dir, name, "EmailService",
                             "consumers:\n  EmailService:\n"
                             "    subscribe: [user.account.created]\n"
                             "    partitions: 8\n"));
    producer = std::make_unique<child>(
      "exec " + bin + "/tests/herald_test_producer --config "
        + shell_quote((dir / "user.yaml").string())
        + " --batch 20 --batch 10 --users 8 --timeout 120 --go "
        + shell_quote((dir / "go").string()) + " --control-file "
        + shell_quote((dir / "user.control").string()),
      dir / "user.out", dir / "user.err");
    control = control_of(dir / "user.control");
    REQUIRE_FALSE(control.empty());
  }

  // Starts member `name`, recording what it handles to `record`.
  std::unique_ptr<child> member(const std::string& name,
                                const std::string& record) {
    std::filesystem::remove(dir / (name + ".control"));
    auto c = std::make_unique<child>(
      "exec " + bin + "/tests/herald_test_service --service EmailService "
        + "--config " + shell_quote((dir / (name + ".yaml")).string())
        + " --seed " + shell_quote(control) + " --quiet --record "
        + shell_quote((dir / record).string()) + " --control-file "
        + shell_quote((dir / (name + ".control")).string()),
      dir / (name + "." + record + ".out"),
      dir / (name + "." + record + ".err"));
    REQUIRE_FALSE(control_of(dir / (name + ".control")).empty());
    return c;
  }

  // `herald group describe EmailService --json` through the producer.
  json describe() const {
    return json_of(
      herald_run("group describe EmailService --json --control " + control));
  }

  // The producer's entry in a describe (each member, owner of its own
  // stream, has one too), or null.
  static json owned_by_producer(const json& d) {
    if (d.is_object())
      for (auto& st : d["streams"])
        if (st["owner"] == "user-node")
          return st;
    return nullptr;
  }

  // The producer's partitions in a describe, or an empty array.
  static json leases_of(const json& d) {
    auto st = owned_by_producer(d);
    return st.is_object() ? st["leases"] : json::array();
  }

  // The producer's stream id, from the cluster view.
  std::string stream() const {
    auto view = json_of(herald_run("members --json --control " + control));
    if (view.is_object())
      for (auto& m : view["members"])
        if (m["name"] == "user-node")
          return m["stream"];
    return {};
  }

  const temp_dir& dir;
  std::unique_ptr<child> producer;
  std::string control;
};

} // namespace

TEST_CASE("herald group describe and reset-offsets operate a 2-member group "
          "at its stream's owner",
          "[integration][cli][groups][group_admin]") {
  temp_dir dir;
  group_cluster cluster{dir};
  REQUIRE(herald::test::wait_for_line(*cluster.producer, "batch 1: ", 20s));
  auto a = cluster.member("email-a", "a1.record");
  auto b = cluster.member("email-b", "b1.record");
  auto handled = [&] {
    auto ra = read_record(dir / "a1.record");
    auto rb = read_record(dir / "b1.record");
    ra.seqs.insert(rb.seqs.begin(), rb.seqs.end());
    return ra.seqs.size();
  };
  REQUIRE(herald::test::wait_until(
    [&] {
      return handled() == 20;
    },
    60s));
  // After batch 1, before batch 2: where --to-time goes back to.
  std::this_thread::sleep_for(50ms);
  auto between = rfc3339(std::chrono::system_clock::now());
  std::this_thread::sleep_for(50ms);
  write_text(dir / "go.2", "");
  REQUIRE(herald::test::wait_for_line(*cluster.producer, "batch 2: ", 20s));
  REQUIRE(herald::test::wait_until(
    [&] {
      return handled() == 30;
    },
    60s));

  // Commits follow the handling by up to a renewal.
  json d;
  auto caught_up = herald::test::wait_until(
    [&] {
      d = cluster.describe();
      auto leases = group_cluster::leases_of(d);
      return leases.size() == 8
             && std::all_of(leases.begin(), leases.end(), [](auto& l) {
                  return l["lag"] == 0 && l["lag_exact"] == true
                         && l["offset"] == 30 && !l["holder"].empty();
                });
    },
    30s, 200ms);
  INFO(d.dump(2));
  REQUIRE(caught_up);

  SECTION("describe shows both members, the holders, offsets and lag") {
    CHECK(d["group"] == "EmailService");
    REQUIRE(d["members"].size() == 2);
    CHECK(d["members"][0]["name"] == "email-a");
    CHECK(d["members"][0]["status"] == "up");
    CHECK(d["members"][1]["name"] == "email-b");
    auto s = group_cluster::owned_by_producer(d);
    CHECK(s["partitions"] == 8);
    CHECK(s["head"] == 30);
    CHECK(s["dead_letters"] == 0);
    std::set<std::string> holders;
    for (auto& l : s["leases"]) {
      holders.insert(l["holder"].get<std::string>());
      CHECK(l["epoch"].get<uint64_t>() > 0);
      CHECK(l["expires_in_ms"].get<uint64_t>() > 0);
      CHECK(l["expires_in_ms"].get<uint64_t>() <= 3000);
    }
    CHECK(holders == std::set<std::string>{"email-a", "email-b"});
    auto text =
      herald_run("group describe EmailService --control " + cluster.control);
    REQUIRE(text.exit_code == 0);
    CHECK_THAT(text.out, Catch::Contains("email-a (up), email-b (up)")
                           && Catch::Contains("HOLDER")
                           && Catch::Contains("user-node"));
    // An owner that does not answer is named; the others still print.
    REQUIRE(b->signal(SIGSTOP));
    auto partial = herald_run("group describe EmailService --timeout 1 "
                              "--control "
                              + cluster.control);
    b->signal(SIGCONT);
    CHECK(partial.exit_code == 1);
    CHECK_THAT(partial.err, Catch::Contains("owner 'email-b'"));
    CHECK_THAT(partial.out, Catch::Contains("user-node"));
    for (auto cmd : {"group", "group describe", "group reset-offsets"})
      CHECK(herald_run(std::string{cmd} + " --help").exit_code == 0);
  }

  SECTION("reset-offsets: refused with live members, then set for good") {
    auto refused = herald_run("group reset-offsets EmailService --to-earliest "
                              "--control "
                              + cluster.control);
    CHECK(refused.exit_code == 1);
    CHECK_THAT(refused.err, Catch::Contains("live members")
                              && Catch::Contains("email-a (")
                              && Catch::Contains("email-b ("));
    a->kill();
    b->kill();
    // Their leases end with them (released, or expired after the ttl).
    REQUIRE(herald::test::wait_until(
      [&] {
        auto leases = group_cluster::leases_of(cluster.describe());
        return leases.size() == 8
               && std::all_of(leases.begin(), leases.end(), [](auto& l) {
                    return l["holder"] == "";
                  });
      },
      30s, 200ms));
    auto stream = cluster.stream();
    REQUIRE_FALSE(stream.empty());

    // A dry run prints and changes nothing.
    auto dry = herald_run("group reset-offsets EmailService --to-earliest "
                          "--dry-run --control "
                          + cluster.control);
    INFO(dry.err);
    REQUIRE(dry.exit_code == 0);
    CHECK_THAT(dry.out, Catch::Contains("30 -> 0")
                          && Catch::Contains("dry run: nothing was changed"));
    for (auto& l : group_cluster::leases_of(cluster.describe()))
      CHECK(l["offset"] == 30);

    // Bad input.
    auto unknown_stream =
      herald_run("group reset-offsets EmailService --to-seq "
                 "no-such-stream:3 --control "
                 + cluster.control);
    CHECK(unknown_stream.exit_code == 1);
    CHECK_THAT(unknown_stream.err,
               Catch::Contains("no member of the cluster owns stream "
                               "'no-such-stream'")
                 && Catch::Contains(stream));
    auto bad_time = herald_run("group reset-offsets EmailService --to-time "
                               "yesterday --control "
                               + cluster.control);
    CHECK(bad_time.exit_code == 2);
    CHECK_THAT(bad_time.err, Catch::Contains("yesterday"));
    auto two = herald_run("group reset-offsets EmailService --to-earliest "
                          "--to-seq "
                          + stream + ":3 --control " + cluster.control);
    CHECK(two.exit_code == 2);
    auto none = herald_run("group reset-offsets EmailService --control "
                           + cluster.control);
    CHECK(none.exit_code == 2);
    CHECK_THAT(none.err, Catch::Contains("--to-earliest"));
    auto past = herald_run("group reset-offsets EmailService --to-seq " + stream
                           + ":31 --control " + cluster.control);
    CHECK(past.exit_code == 1);
    CHECK_THAT(past.err, Catch::Contains("past the head 30"));
    auto unknown_group = herald_run("group reset-offsets NoSuchGroup "
                                    "--to-earliest --control "
                                    + cluster.control);
    CHECK(unknown_group.exit_code == 1);
    CHECK_THAT(unknown_group.err, Catch::Contains("no consumer group "
                                                  "'NoSuchGroup'"));
    auto describe_unknown =
      herald_run("group describe NoSuchGroup --control " + cluster.control);
    CHECK(describe_unknown.exit_code == 1);
    CHECK_THAT(describe_unknown.err,
               Catch::Contains("no consumer group 'NoSuchGroup'"));

    // --to-seq, then --to-earliest: describe shows each.
    auto to_seq = herald_run("group reset-offsets EmailService --to-seq "
                             + stream + ":25 --control " + cluster.control);
    INFO(to_seq.err);
    REQUIRE(to_seq.exit_code == 0);
    CHECK_THAT(to_seq.out, Catch::Contains("30 -> 25"));
    for (auto& l : group_cluster::leases_of(cluster.describe())) {
      CHECK(l["offset"] == 25);
      CHECK(l["lag_exact"] == true);
    }
    auto earliest = herald_run("group reset-offsets EmailService --to-earliest "
                               "--control "
                               + cluster.control);
    REQUIRE(earliest.exit_code == 0);
    CHECK_THAT(earliest.out, Catch::Contains("25 -> 0"));
    uint64_t lag = 0;
    for (auto& l : group_cluster::leases_of(cluster.describe())) {
      CHECK(l["offset"] == 0);
      lag += l["lag"].get<uint64_t>();
    }
    CHECK(lag == 30);

    // --to-time: from the first event of batch 2 on, handled again in
    // order by a restarted member.
    auto to_time = herald_run("group reset-offsets EmailService --to-time "
                              + between + " --control " + cluster.control);
    INFO(to_time.err);
    REQUIRE(to_time.exit_code == 0);
    CHECK_THAT(to_time.out, Catch::Contains("0 -> 20"));
    for (auto& l : group_cluster::leases_of(cluster.describe()))
      CHECK(l["offset"] == 20);
    auto again = cluster.member("email-a", "a2.record");
    REQUIRE(herald::test::wait_until(
      [&] {
        return read_record(dir / "a2.record").seqs.size() >= 10;
      },
      60s));
    // Nothing more comes: the group starts after seq 20.
    std::this_thread::sleep_for(500ms);
    auto r = read_record(dir / "a2.record");
    CHECK(*r.seqs.begin() == 21);
    CHECK(*r.seqs.rbegin() == 30);
    CHECK(r.seqs.size() == 10);
    for (auto& [key, seqs] : r.by_key) {
      INFO("key " << key);
      CHECK(std::is_sorted(seqs.begin(), seqs.end()));
    }
  }
}

TEST_CASE("herald dlq --consumer lists a group's dead letters at every "
          "member, with their owner",
          "[integration][cli][dlq][groups][group_admin]") {
  temp_dir dir;
  // Two UserService nodes, each its own stream, each running a failing
  // EmailService member; a third node, an observer, to ask.
  for (auto name : {"p1", "p2"})
    write_text(dir / (std::string{name} + ".yaml"),
               config_text(dir, name, "UserService",
                           "consumers:\n  EmailService:\n"
                           "    subscribe: [user.account.created]\n"
                           "    partitions: 4\n"
                           "    retry: {attempts: 1}\n"));
  write_text(dir / "watch.yaml", config_text(dir, "watch", "Observer", ""));
  auto service = [&](const std::string& name, const std::string& seed) {
    return std::make_unique<child>(
      "exec " + bin + "/tests/herald_test_service --service EmailService "
        + "--config " + shell_quote((dir / (name + ".yaml")).string())
        + (seed.empty() ? std::string{} : " --seed " + shell_quote(seed))
        + " --quiet --fail-all --control-file "
        + shell_quote((dir / (name + ".control")).string()),
      dir / (name + ".out"), dir / (name + ".err"));
  };
  auto p1 = service("p1", "");
  auto c1 = control_of(dir / "p1.control");
  REQUIRE_FALSE(c1.empty());
  auto p2 = service("p2", c1);
  auto c2 = control_of(dir / "p2.control");
  REQUIRE_FALSE(c2.empty());
  child watch{"exec " + herald_exe + " tail --config "
                + shell_quote((dir / "watch.yaml").string()) + " --seed "
                + shell_quote(c1) + " --control-file "
                + shell_quote((dir / "watch.control").string()) + " 'user.>'",
              dir / "watch.out", dir / "watch.err"};
  auto cw = control_of(dir / "watch.control");
  REQUIRE_FALSE(cw.empty());
  // Every member sees the others before anything is published.
  REQUIRE(herald::test::wait_until(
    [&] {
      auto view = json_of(herald_run("members --json --control " + cw));
      if (!view.is_object() || view["members"].size() != 3)
        return false;
      return std::all_of(view["members"].begin(), view["members"].end(),
                         [](auto& m) {
                           return m["status"] == "up";
                         });
    },
    30s, 200ms));
  // And the group has settled: both members hold partitions of both
  // streams (herald group describe shows it).
  json group;
  auto settled = herald::test::wait_until(
    [&] {
      group = json_of(
        herald_run("group describe EmailService --json --control " + cw));
      if (!group.is_object())
        return false;
      std::set<std::string> p1_holders, p2_holders;
      for (auto& st : group["streams"])
        for (auto& l : st["leases"])
          (st["owner"] == "p1" ? p1_holders : p2_holders)
            .insert(l["holder"].get<std::string>());
      std::set<std::string> both{"p1", "p2"};
      return p1_holders == both && p2_holders == both;
    },
    60s, 250ms);
  INFO(group.dump(2));
  REQUIRE(settled);
  for (int i = 0; i < 8; ++i) {
    auto ep = i % 2 == 0 ? c1 : c2;
    char id[40];
    std::snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012x", i);
    auto r = herald_run("publish --control " + ep + " user.account.created "
                        + shell_quote(json{
                          {"user_id", id},
                          {"email", "u" + std::to_string(i) + "@example.com"},
                          {"registration_source",
                           "web"}}.dump()));
    REQUIRE(r.exit_code == 0);
  }
  json letters;
  auto all_there = herald::test::wait_until(
    [&] {
      letters = json_of(herald_run("dlq list --consumer EmailService --json "
                                   "--control "
                                   + cw));
      return letters.is_array() && letters.size() == 8;
    },
    60s, 250ms);
  INFO(letters.dump(2) << "\np1: " << p1->err() << "\np2: " << p2->err());
  REQUIRE(all_there);
  std::set<std::string> owners;
  std::vector<std::pair<std::string, uint64_t>> order;
  for (auto& l : letters) {
    REQUIRE(l.contains("owner"));
    owners.insert(l["owner"].get<std::string>());
    order.emplace_back(l["owner"], l["id"]);
    CHECK(l["consumer"] == "EmailService");
  }
  CHECK(owners == std::set<std::string>{"p1", "p2"});
  CHECK(std::is_sorted(order.begin(), order.end()));

  // The table has an OWNER column; --node-only asks the node given alone
  // (the observer has none).
  auto table = herald_run("dlq list --consumer EmailService --control " + cw);
  REQUIRE(table.exit_code == 0);
  CHECK_THAT(table.out, Catch::Contains("OWNER") && Catch::Contains("p1")
                          && Catch::Contains("p2"));
  auto node_only = herald_run("dlq list --consumer EmailService --node-only "
                              "--control "
                              + cw);
  REQUIRE(node_only.exit_code == 0);
  CHECK_THAT(node_only.out, Catch::Contains("no dead letters match"));

  // A letter shown from the observer, by its owner.
  auto at_p2 = std::find_if(letters.begin(), letters.end(), [](auto& l) {
    return l["owner"] == "p2";
  });
  REQUIRE(at_p2 != letters.end());
  auto show =
    herald_run("dlq show " + std::to_string((*at_p2)["id"].get<uint64_t>())
               + " --owner p2 --json --control " + cw);
  REQUIRE(show.exit_code == 0);
  CHECK(json::parse(show.out)["event_id"] == (*at_p2)["event_id"]);
  auto no_owner = herald_run("dlq show 1 --owner nobody --control " + cw);
  CHECK(no_owner.exit_code == 1);
  CHECK_THAT(no_owner.err, Catch::Contains("no member 'nobody'"));

  // Per owner: a dry-run redrive.
  auto dry =
    herald_run("dlq redrive --consumer EmailService --dry-run --control " + cw);
  REQUIRE(dry.exit_code == 0);
  CHECK_THAT(dry.out, Catch::Contains("p1: ") && Catch::Contains("p2: ")
                        && Catch::Contains("would be redriven (dry run)"));

  // An owner that does not answer is named; the others still print.
  REQUIRE(p2->signal(SIGSTOP));
  auto partial = herald_run("dlq list --consumer EmailService --timeout 1 "
                            "--control "
                            + cw);
  p2->signal(SIGCONT);
  CHECK(partial.exit_code == 1);
  CHECK_THAT(partial.err, Catch::Contains("owner 'p2'"));
  CHECK_THAT(partial.out, Catch::Contains("p1"));
}
