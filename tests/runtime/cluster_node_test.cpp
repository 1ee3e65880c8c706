// Membership inside the node, with two nodes in one process on loopback:
// what /metrics says of the cluster and of the connections that follow
// it. The process-level behaviour (kill, restart, pause, partition) is in
// the integration test `[cluster]` and the harness scenarios.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/ostream_sink.h>

#include "deadline.hpp"
#include "health.hpp"
#include "herald/runtime/node.hpp"
#include "node_support.hpp"
#include "process.hpp"

using namespace herald;
using namespace std::chrono_literals;
using herald::test::sample_of;
using herald::test::wait_until;

namespace {

// Leases short enough for a test to wait out.
void short_leases(node_config& c) {
  c.groups.lease_ttl = 2s;
  c.groups.lease_margin = 500ms;
}

// The dead letters of `consumer` that `n` keeps.
std::vector<store::dead_letter> letters_of(node& n,
                                           const std::string& consumer) {
  store::dead_letter_filter f;
  f.consumer = consumer;
  auto l = n.dead_letters(f);
  REQUIRE(l);
  return *l;
}

} // namespace

TEST_CASE("a consumer that joins through a seed counts the members up and "
          "holds one SUB to their producer, closed once the producer "
          "leaves",
          "[runtime][cluster][metrics]") {
  auto pcfg = make_config("user-node", "UserService");
  pcfg.metrics_listen = "127.0.0.1:0";
  auto producer = start(pcfg);
  auto ccfg = make_config("email-node", "EmailService");
  ccfg.metrics_listen = "127.0.0.1:0";
  ccfg.consumers.push_back(
    make_consumer("EmailService", {"user.account.created"}));
  ccfg.cluster.seeds = {producer->control_endpoint()};
  auto consumer = start(ccfg);

  std::string text;
  auto sample = [&](const std::string& series) {
    return sample_of(text, series);
  };
  CHECK(wait_until(
    [&] {
      text = metrics_of(*consumer);
      return sample(R"(herald_cluster_members{status="up"})") == 2
             && sample(R"(herald_transport_sockets{kind="sub"})") == 1;
    },
    20s));
  INFO(text);
  CHECK(sample(R"(herald_transport_sockets{kind="dealer"})") >= 1);
  CHECK(sample(R"(herald_cluster_members{status="down"})") == 0);
  auto changes = sample("herald_membership_changes_total");
  CHECK(changes >= 1);
  // Exported, and nothing refused between two honest members.
  CHECK(sample("herald_member_claims_refused_total") == 0);
  // The producer connects to nobody: nothing it selects is produced.
  std::string producer_text;
  CHECK(wait_until(
    [&] {
      producer_text = metrics_of(*producer);
      return sample_of(producer_text, R"(herald_cluster_members{status="up"})")
             == 2;
    },
    20s));
  CHECK(sample_of(producer_text, R"(herald_transport_sockets{kind="sub"})")
        == 0);

  producer->stop();
  CHECK(wait_until(
    [&] {
      text = metrics_of(*consumer);
      return sample(R"(herald_cluster_members{status="leaving"})") == 1
             && sample(R"(herald_transport_sockets{kind="sub"})") == 0;
    },
    20s));
  INFO(text);
  CHECK(sample(R"(herald_cluster_members{status="up"})") == 1);
  CHECK(sample("herald_membership_changes_total") > changes);
}

TEST_CASE("a node none of whose seeds lets it join says so in its health "
          "until another member joins through it",
          "[runtime][cluster][health]") {
  auto cfg = make_config("lonely-node", "EmailService");
  cfg.metrics_listen = "127.0.0.1:0";
  cfg.consumers.push_back(
    make_consumer("EmailService", {"user.account.created"}));
  // A port nothing listens on: the seed never answers.
  cfg.cluster.seeds = {"tcp://127.0.0.1:" + std::to_string(test::free_port())};
  auto lonely = start(cfg);
  test::healthz health{lonely->metrics_port()};
  auto [code, body] = health();
  CHECK(code == 503);
  CHECK(body.find("not a member of cluster 'herald' yet: no seed let this "
                  "node join (seeds: tcp://127.0.0.1:")
        != std::string::npos);

  auto other = make_config("user-node", "UserService");
  other.cluster.seeds = {lonely->control_endpoint()};
  auto producer = start(other);
  CHECK(wait_until(
    [&] {
      return health().first == 200;
    },
    20s));
}

TEST_CASE("a node that reaches itself through a seed spelled otherwise does "
          "not count that as joining",
          "[runtime][cluster][health]") {
  auto port = std::to_string(test::free_port());
  auto cfg = make_config("self-seeded", "EmailService");
  cfg.metrics_listen = "127.0.0.1:0";
  cfg.control = "tcp://127.0.0.1:" + port;
  cfg.cluster.seeds = {"tcp://localhost:" + port};
  std::ostringstream log;
  cfg.log_level = "info";
  cfg.log_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  auto n = start(cfg);
  test::healthz health{n->metrics_port()};
  CHECK(wait_until(
    [&] {
      return log.str().find("it is this node itself") != std::string::npos;
    },
    20s));
  INFO(log.str());
  CHECK(log.str().find("joined cluster") == std::string::npos);
  CHECK(health().first == 503);
}

TEST_CASE("a group member whose partition count differs from the group's "
          "is refused its leases and says why in /healthz; the group's "
          "events go on",
          "[runtime][cluster][groups][health]") {
  auto pcfg = make_config("user-node", "UserService");
  short_leases(pcfg);
  auto producer = start(pcfg);
  std::atomic<int> handled_a{0};
  std::atomic<int> handled_b{0};
  auto member = [&](std::string name, uint32_t partitions,
                    std::atomic<int>& handled) {
    auto c = make_config(std::move(name), "EmailService");
    short_leases(c);
    c.metrics_listen = "127.0.0.1:0";
    auto email = make_consumer("EmailService", {"user.account.created"});
    email.partitions = partitions;
    c.consumers.push_back(email);
    c.cluster.seeds = {producer->control_endpoint()};
    auto n = start(c);
    REQUIRE_FALSE(n->bus().subscribe(
      "user.account.created",
      [&handled](const event&) {
        ++handled;
      },
      "EmailService"));
    return n;
  };
  // Alone in the group, a holds all of its 4 partitions: the owner has
  // fixed the count.
  auto a = member("email-a", 4, handled_a);
  const std::string owned =
    R"(herald_group_partitions_owned{group="EmailService"})";
  REQUIRE(wait_until(
    [&] {
      return sample_of(metrics_of(*a), owned) == 4;
    },
    20s));
  auto b = member("email-b", 8, handled_b);
  // b is refused while a's leases run. (Should a's leases all lapse, under
  // a loaded machine, the owner takes b's count and a is refused instead:
  // the one refused says so.)
  test::healthz health_a{a->metrics_port()};
  test::healthz health_b{b->metrics_port()};
  const std::string rule =
    "give every member of the group the same 'partitions'";
  std::string body;
  bool b_refused = false;
  CHECK(wait_until(
    [&] {
      for (auto* h : {&health_b, &health_a}) {
        auto [code, text] = (*h)();
        if (code == 503 && text.find(rule) != std::string::npos) {
          body = text;
          b_refused = h == &health_b;
          return true;
        }
      }
      return false;
    },
    30s, 200ms));
  INFO(body);
  CHECK(body.find("consumer EmailService: stream " + producer->stream() + ": ")
        != std::string::npos);
  CHECK(body.find("assigned to this member") != std::string::npos);
  CHECK(body.find(fmt::format("group 'EmailService' has {} partitions at the "
                              "owner of stream '{}' while its leases run, and "
                              "this member has {}",
                              b_refused ? 4 : 8, producer->stream(),
                              b_refused ? 8 : 4))
        != std::string::npos);

  // The group's events are still handled. (Which count wins next is not
  // fixed: once a has handed over every partition assigned to b, no lease
  // runs and the owner takes the next count asked for.)
  for (int i = 0; i < 20; ++i)
    REQUIRE(producer->bus().publish("user.account.created", created(i)));
  CHECK(wait_until(
    [&] {
      return handled_a.load() + handled_b.load() >= 20;
    },
    20s));
}

TEST_CASE("a group's dead letters and parked entity live at the stream's "
          "owner: they survive the member's wiped disk, the next member "
          "parks the entity, and a redrive at the owner hands them to it in "
          "order, once",
          "[runtime][cluster][groups][dead_letters]") {
  auto pcfg = make_config("user-node", "UserService");
  short_leases(pcfg);
  auto producer = start(pcfg);

  std::atomic<bool> broken{true};
  std::mutex mtx;
  std::vector<std::pair<std::string, uint64_t>> handled; // (key, seq)
  auto poison = user_id(1);
  auto member = [&](std::string name) {
    auto c = make_config(std::move(name), "EmailService");
    short_leases(c);
    auto email = make_consumer("EmailService", {"user.account.created"});
    email.partitions = 4;
    email.retry.attempts = 1;
    email.on_dead_letter = dead_letter_policy::park;
    c.consumers.push_back(email);
    c.cluster.seeds = {producer->control_endpoint()};
    auto n = start(c);
    REQUIRE_FALSE(n->bus().subscribe(
      "user.account.created",
      [&](const event& ev) {
        if (broken && ev.key() == poison)
          throw std::runtime_error("smtp down");
        std::lock_guard<std::mutex> guard{mtx};
        handled.emplace_back(std::string{ev.key()}, ev.seq());
      },
      "EmailService"));
    return n;
  };
  auto owner_letters = [&] {
    return letters_of(*producer, "EmailService");
  };
  auto handled_of = [&](const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx};
    std::vector<uint64_t> seqs;
    for (auto& [k, seq] : handled)
      if (k == key)
        seqs.push_back(seq);
    return seqs;
  };

  auto first = member("email-1");
  auto first_dir = first->config().data_dir;
  REQUIRE(producer->bus().publish("user.account.created", created(1)));
  REQUIRE(producer->bus().publish("user.account.created", created(2)));
  REQUIRE(wait_until(
    [&] {
      return owner_letters().size() == 1 && handled_of(user_id(2)).size() == 1;
    },
    20s));
  auto letters = owner_letters();
  CHECK(letters[0].key == poison);
  CHECK(letters[0].node == "email-1");
  CHECK(letters[0].stream == producer->stream());
  CHECK_FALSE(letters[0].parked);
  // Nothing of it is kept by the member.
  store::dead_letter_filter all;
  CHECK(first->dead_letters(all)->empty());

  // The member is lost for good.
  first->stop();
  first.reset();
  std::filesystem::remove_all(first_dir);

  auto second = member("email-2");
  // The poison entity's next event waits behind its dead letter: the new
  // holder parks it (a dead letter, parked), the others go on.
  REQUIRE(producer->bus().publish("user.account.created", created(1)));
  REQUIRE(producer->bus().publish("user.account.created", created(3)));
  REQUIRE(wait_until(
    [&] {
      return owner_letters().size() == 2 && handled_of(user_id(3)).size() == 1;
    },
    30s));
  letters = owner_letters();
  CHECK(letters[1].key == poison);
  CHECK(letters[1].parked);
  CHECK(letters[1].node == "email-2");
  CHECK(handled_of(poison).empty());

  // Fixed, and redriven from the owner: both, in publish order, once.
  broken = false;
  store::dead_letter_filter f;
  f.consumer = "EmailService";
  auto ids = producer->redrive(f, false, "test");
  REQUIRE(ids);
  CHECK(ids->size() == 2);
  CHECK(wait_until(
    [&] {
      return owner_letters().empty() && handled_of(poison).size() == 2;
    },
    20s));
  auto seqs = handled_of(poison);
  REQUIRE(seqs.size() == 2);
  CHECK(seqs[0] == letters[0].seq);
  CHECK(seqs[1] == letters[1].seq);
  // Nothing more comes (not handed again).
  std::this_thread::sleep_for(3s);
  CHECK(handled_of(poison).size() == 2);
}

TEST_CASE("an entity whose redriven letters take more than one reply is "
          "handed whole: its later events do not pass the letters of the "
          "next reply",
          "[runtime][cluster][groups][dead_letters][redrive]") {
  // Documents of about 150 KB: the owner hands about 256 KiB of redriven
  // letters per reply, so an entity's three letters take two replies.
  auto catalog = temp_data_dir("documents") + ".yaml";
  {
    std::ofstream out{catalog};
    out << "version: 1\n"
           "events:\n"
           "  content.document.uploaded:\n"
           "    trigger: A document was uploaded\n"
           "    producer: UserService\n"
           "    key: document_id\n"
           "    payload:\n"
           "      document_id: {type: uuid}\n"
           "      body: {type: string}\n"
           "    consumers:\n"
           "      EmailService: Mail the document\n";
  }
  auto pcfg = make_config("user-node", "UserService");
  pcfg.catalog = catalog;
  short_leases(pcfg);
  auto producer = start(pcfg);

  auto c = make_config("email-1", "EmailService");
  c.catalog = catalog;
  short_leases(c);
  auto email = make_consumer("EmailService", {"content.document.uploaded"});
  email.partitions = 4;
  email.retry.attempts = 1;
  email.on_dead_letter = dead_letter_policy::park;
  c.consumers.push_back(email);
  c.cluster.seeds = {producer->control_endpoint()};
  auto member = start(c);
  std::atomic<bool> broken{true};
  std::mutex mtx;
  std::vector<uint64_t> handled; // seqs
  auto poison = user_id(1);
  REQUIRE_FALSE(member->bus().subscribe(
    "content.document.uploaded",
    [&](const event& ev) {
      if (broken)
        throw std::runtime_error("mail server down");
      std::lock_guard<std::mutex> guard{mtx};
      handled.push_back(ev.seq());
    },
    "EmailService"));
  auto handled_now = [&] {
    std::lock_guard<std::mutex> guard{mtx};
    return handled;
  };
  auto owner_letters = [&] {
    return letters_of(*producer, "EmailService");
  };
  auto publish = [&](int n) {
    payload doc{{"document_id", poison},
                {"body", std::string(150 * 1000, char('a' + n))}};
    auto r =
      producer->bus().publish("content.document.uploaded", std::move(doc));
    REQUIRE(r);
    REQUIRE_FALSE(r->wait());
    return r->seq;
  };
  std::vector<uint64_t> seqs;
  for (int n = 0; n < 3; ++n)
    seqs.push_back(publish(n));
  // The first fails; the two after it are parked behind it.
  REQUIRE(wait_until(
    [&] {
      return owner_letters().size() == 3;
    },
    30s));

  broken = false;
  store::dead_letter_filter f;
  f.consumer = "EmailService";
  auto ids = producer->redrive(f, false, "test");
  REQUIRE(ids);
  REQUIRE(ids->size() == 3);
  // As soon as the entity goes on, its next event: it must come after the
  // three letters, not between two replies' worth of them.
  REQUIRE(wait_until(
    [&] {
      return !handled_now().empty();
    },
    30s));
  seqs.push_back(publish(3));
  CHECK(wait_until(
    [&] {
      return handled_now().size() == 4 && owner_letters().empty();
    },
    30s));
  CHECK(handled_now() == seqs);
}

TEST_CASE("a group's dead letters at the owner's quota pause the partition, "
          "alert once, show in the member's health, and let the producer "
          "publish on; a purge lets it go on",
          "[runtime][cluster][groups][dead_letters][quota]") {
  auto pcfg = make_config("user-node", "UserService");
  short_leases(pcfg);
  // Room for two letters of these events (each about 600 bytes).
  pcfg.groups.dead_letter_quota = 1600;
  pcfg.consumers.push_back(make_consumer("OpsService", {"herald.alert.*"}));
  auto producer = start(pcfg);
  std::atomic<int> alerts{0};
  REQUIRE_FALSE(producer->bus().subscribe(
    "herald.alert.raised",
    [&](const event& ev) {
      if (ev.data().value("consumer", "") == "EmailService")
        ++alerts;
    },
    "OpsService"));

  auto c = make_config("email-1", "EmailService");
  short_leases(c);
  c.metrics_listen = "127.0.0.1:0";
  auto email = make_consumer("EmailService", {"user.account.created"});
  email.partitions = 1; // one partition: the pause holds every event
  email.retry.attempts = 1;
  c.consumers.push_back(email);
  c.cluster.seeds = {producer->control_endpoint()};
  auto member = start(c);
  std::atomic<int> calls{0};
  REQUIRE_FALSE(member->bus().subscribe(
    "user.account.created",
    [&](const event&) {
      ++calls;
      throw std::runtime_error("always fails");
    },
    "EmailService"));

  auto owner_letters = [&] {
    return letters_of(*producer, "EmailService");
  };
  for (int i = 0; i < 10; ++i)
    REQUIRE(producer->bus().publish("user.account.created", created(i)));
  test::healthz health{member->metrics_port()};
  std::string body;
  REQUIRE(wait_until(
    [&] {
      auto [code, text] = health();
      body = text;
      return code == 503 && text.find("reached its quota") != std::string::npos;
    },
    30s, 200ms));
  INFO(body);
  CHECK(body.find("stream " + producer->stream()
                  + ": 1 partition(s) paused "
                    "(partition 0 first)")
        != std::string::npos);
  CHECK(body.find("groups.dead_letter_quota") != std::string::npos);
  CHECK(owner_letters().size() == 2);
  CHECK(wait_until(
    [&] {
      return alerts.load() == 1;
    },
    10s));
  // Paused: the handler is not called for the events behind (the first ten
  // were handed out before).
  REQUIRE(wait_until(
    [&] {
      return calls.load() >= 10;
    },
    10s));
  auto called = calls.load();
  // The producer publishes on.
  for (int i = 10; i < 20; ++i)
    REQUIRE(producer->bus().publish("user.account.created", created(i)));
  std::this_thread::sleep_for(2s);
  CHECK(calls.load() == called);
  CHECK(owner_letters().size() == 2);
  CHECK(alerts.load() == 1);

  // A purge at the owner makes room: waiting letters are stored (and fill
  // the quota again: a second alert).
  auto before = owner_letters();
  store::dead_letter_filter f;
  f.consumer = "EmailService";
  REQUIRE(producer->purge(f, false));
  CHECK(wait_until(
    [&] {
      auto now = owner_letters();
      return now.size() == 2 && now.front().id > before.back().id;
    },
    20s));
  CHECK(wait_until(
    [&] {
      return alerts.load() == 2;
    },
    10s));
}
