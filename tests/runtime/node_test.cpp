#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <variant>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <fmt/format.h>
#include <zmq.hpp>

#include "deadline.hpp"
#include "fake_endpoint.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"
#include "herald/runtime/control.hpp"
#include "herald/runtime/node.hpp"
#include "hostile_peer.hpp"
#include "node_support.hpp"

using namespace herald;
using namespace std::chrono_literals;

namespace {

// Collects what a handler saw; waits with a deadline.
struct collector {
  std::mutex mtx;
  std::vector<uint64_t> seqs;
  std::vector<std::string> keys;
  std::vector<std::string> emails;
  std::vector<std::pair<uint32_t, uint64_t>> leases; // partition, epoch

  void add(const event& ev) {
    std::lock_guard<std::mutex> guard{mtx};
    seqs.push_back(ev.seq());
    leases.emplace_back(ev.partition(), ev.lease_epoch());
    keys.emplace_back(ev.key());
    emails.push_back(ev.data()["email"].get<std::string>());
  }

  bool wait_for(size_t n, std::chrono::milliseconds timeout) {
    return herald::test::wait_until(
      [&] {
        std::lock_guard<std::mutex> guard{mtx};
        return seqs.size() >= n;
      },
      timeout);
  }
};

// Checks that `got` handled each of the seqs `first`..`last` once, and one
// entity's events in publish order (different entities go on concurrently,
// so their events interleave in any order).
void check_complete_in_entity_order(collector& got, uint64_t first,
                                    uint64_t last) {
  std::lock_guard<std::mutex> guard{got.mtx};
  auto sorted = got.seqs;
  std::sort(sorted.begin(), sorted.end());
  std::vector<uint64_t> expected;
  for (auto seq = first; seq <= last; ++seq)
    expected.push_back(seq);
  CHECK(sorted == expected);
  std::map<std::string, uint64_t> last_of;
  size_t out_of_order = 0;
  for (size_t i = 0; i < got.seqs.size(); ++i) {
    auto& l = last_of[got.keys[i]];
    if (got.seqs[i] < l)
      ++out_of_order;
    l = got.seqs[i];
  }
  CHECK(out_of_order == 0);
}

} // namespace

TEST_CASE("a seed-style handler on the same node gets every event, in order "
          "per entity",
          "[runtime][node]") {
  auto n = start(make_config("n1", "UserService"));
  collector got;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      got.add(ev);
    },
    "EmailService"));
  for (int i = 1; i <= 500; ++i) {
    auto p = created(i % 10);
    p["email"] = "user" + std::to_string(i) + "@example.com";
    auto r = n->bus().publish("user.account.created", p);
    REQUIRE(r);
    CHECK(r->seq == static_cast<uint64_t>(i));
  }
  REQUIRE(got.wait_for(500, 10s));
  check_complete_in_entity_order(got, 1, 500);
  {
    std::lock_guard<std::mutex> guard{got.mtx};
    auto at = std::find(got.seqs.begin(), got.seqs.end(), 42u);
    REQUIRE(at != got.seqs.end());
    CHECK(got.emails[at - got.seqs.begin()] == "user42@example.com");
  }
  REQUIRE(n->drain(5s));
  CHECK(n->stats("EmailService")->handled == 500);
  // The handler sees each event's partition and the epoch of the lease it
  // was handled under: the lease this member holds on that partition.
  std::map<uint32_t, uint64_t> held;
  {
    auto stats = n->stats("EmailService");
    std::lock_guard<std::mutex> guard{stats->positions_mtx};
    for (const auto& [stream, pos] : stats->positions)
      for (const auto& l : pos.leases)
        held[l.partition] = l.epoch;
  }
  std::lock_guard<std::mutex> guard{got.mtx};
  for (size_t i = 0; i < got.seqs.size(); ++i) {
    INFO("seq " << got.seqs[i]);
    CHECK(got.leases[i].first == partition_of(got.keys[i], 64));
    CHECK(got.leases[i].second != 0);
    CHECK(got.leases[i].second == held[got.leases[i].first]);
  }
}

TEST_CASE("a service written as a CAF behavior handles herald::event",
          "[runtime][node]") {
  auto cfg = make_config("n1", "UserService");
  cfg.consumers.push_back(
    make_consumer("AnalyticsService", {"user.account.created"}));
  auto n = start(cfg);
  collector got;
  REQUIRE_FALSE(n->attach("AnalyticsService",
                          [&](caf::event_based_actor*) -> caf::behavior {
                            return {[&](const event& ev) {
                              got.add(ev);
                            }};
                          }));
  for (int i = 1; i <= 200; ++i)
    REQUIRE(n->bus().publish("user.account.created", created(i % 7)));
  REQUIRE(got.wait_for(200, 10s));
  check_complete_in_entity_order(got, 1, 200);
  REQUIRE(n->drain(5s));
  CHECK(n->stats("AnalyticsService")->handled == 200);
  CHECK_FALSE(n->attach("NoSuchService", [](caf::event_based_actor*) {
    return caf::behavior{[](const event&) {}};
  }) == caf::error{});
}

TEST_CASE("publish rejects what breaks the catalog and sends nothing",
          "[runtime][node]") {
  auto n = start(make_config("n1", "UserService"));
  collector got;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.>",
    [&](const event& ev) {
      got.add(ev);
    },
    "EmailService"));
  SECTION("an invalid field") {
    auto p = created(1);
    p["email"] = "not-an-address";
    auto r = n->bus().publish("user.account.created", p);
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::invalid_payload));
    auto msg = message_of(r.error());
    CHECK_THAT(msg, Catch::Contains("user.account.created")
                      && Catch::Contains("email")
                      && Catch::Contains("not an email address"));
  }
  SECTION("an unknown event type") {
    auto r = n->bus().publish("user.account.exploded", created(1));
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::unknown_event));
  }
  SECTION("a producer the catalog does not name") {
    publish_options opts;
    opts.source = "BillingService";
    auto r = n->bus().publish("user.account.created", created(1), opts);
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::catalog_violation));
    CHECK_THAT(message_of(r.error()), Catch::Contains("UserService"));
  }
  // A valid event after the rejected one proves the handler is live, and
  // that it is the first thing it saw.
  REQUIRE(n->bus().publish("user.account.created", created(2)));
  REQUIRE(got.wait_for(1, 10s));
  REQUIRE(n->drain(5s));
  CHECK(got.emails == std::vector<std::string>{"user2@example.com"});
  CHECK(got.seqs == std::vector<uint64_t>{1});
}

TEST_CASE("a 2 MiB payload is refused by publish, naming its size and "
          "transport.max_message_size, and nothing is stored",
          "[runtime][node][frames]") {
  // Sent, it would be a frame over every receiver's ZMQ_MAXMSGSIZE: libzmq
  // would drop the connection for good.
  auto cfg = make_config("big", "UserService");
  std::filesystem::create_directories(cfg.data_dir);
  cfg.catalog = cfg.data_dir + "/events.yaml";
  std::ofstream{cfg.catalog} << "version: 1\n"
                                "events:\n"
                                "  user.profile.updated:\n"
                                "    trigger: A user edited their profile\n"
                                "    producer: UserService\n"
                                "    key: user_id\n"
                                "    payload:\n"
                                "      user_id: {type: uuid}\n"
                                "      bio: {type: string}\n"
                                "    consumers: {EmailService: Re-render}\n";
  auto n = start(std::move(cfg));
  payload p{{"user_id", "00000000-0000-4000-8000-000000000001"},
            {"bio", std::string(2 * 1024 * 1024, 'x')}};
  auto r = n->bus().publish("user.profile.updated", p);
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), errc::frame_too_large));
  CHECK_THAT(message_of(r.error()),
             Catch::Contains("user.profile.updated")
               && Catch::Contains("the envelope is 2097")
               && Catch::Contains("transport.max_message_size 1048576"));
  // The stream took nothing: the next event is its first.
  p["bio"] = "short";
  auto ok = n->bus().publish("user.profile.updated", p);
  REQUIRE(ok);
  CHECK(ok->seq == 1);
  CHECK_FALSE(ok->wait());
}

TEST_CASE("a consumer the catalog does not list cannot subscribe",
          "[runtime][node]") {
  auto n = start(make_config("n1", "UserService"));
  auto err = n->bus().subscribe(
    "user.account.created", [](const event&) {}, "BillingService");
  CHECK(is(err, errc::catalog_violation));
  CHECK_THAT(message_of(err), Catch::Contains("BillingService"));
  CHECK(is(n->bus().subscribe("user..x", [](const event&) {}),
           errc::invalid_pattern));
}

TEST_CASE("a failing handler is retried, dead-lettered, and the next events "
          "go on",
          "[runtime][node]") {
  auto n = start(make_config("n1", "UserService"));
  collector got;
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event& ev) {
      if (ev.seq() == 2)
        throw std::runtime_error("smtp down");
      got.add(ev);
    },
    "EmailService"));
  std::optional<publish_receipt> last;
  for (int i = 1; i <= 3; ++i)
    last = *n->bus().publish("user.account.created", created(i));
  REQUIRE_FALSE(herald::test::get_within(*last->durable, 10s));
  // The default policy: 3 attempts, 200 ms then 400 ms apart.
  REQUIRE(n->drain(10s));
  std::sort(got.seqs.begin(), got.seqs.end());
  CHECK(got.seqs == std::vector<uint64_t>{1, 3});
  CHECK(n->stats("EmailService")->failed == 3);
  CHECK(n->stats("EmailService")->retried == 2);
  CHECK(n->stats("EmailService")->dead_lettered == 1);
  CHECK(n->stats("EmailService")->handled == 2);
  auto letters = n->dead_letters();
  REQUIRE(letters);
  REQUIRE(letters->size() == 1);
  CHECK(letters->front().seq == 2);
  CHECK(letters->front().attempts.back().error == "smtp down");
}

TEST_CASE("two nodes on loopback: the subscriber gets every event, in order "
          "per entity",
          "[runtime][node]") {
  auto a = start(make_config("a", "UserService"));
  auto cfg_b = make_config("b", "EmailService");
  cfg_b.peers.push_back(a->endpoint());
  auto b = start(cfg_b);
  collector got;
  REQUIRE_FALSE(
    b->bus().subscribe("user.account.created", [&](const event& ev) {
      got.add(ev);
    }));
  REQUIRE(a->wait_for_subscribers(1, 10s));
  for (int i = 1; i <= 2000; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i % 50)));
  REQUIRE(got.wait_for(2000, 20s));
  check_complete_in_entity_order(got, 1, 2000);
  CHECK(b->received() == 2000);
  CHECK(b->bad_frames() == 0);
}

TEST_CASE("retention deletes expired events and a consumer behind it is told",
          "[runtime][retention]") {
  using namespace std::chrono;
  // Events 1..30 are published, then 31..50 1.5 s later. The injected
  // clock puts the retention cutoff between the two bursts.
  std::atomic<int64_t> offset_us{0};
  auto clock = [&] {
    return now_us() + offset_us.load();
  };
  auto cfg_p = make_config("p", "UserService");
  cfg_p.store.retention = hours{1};
  auto p_node = node::start(cfg_p, clock);
  REQUIRE(p_node);
  auto& prod = **p_node;
  auto cfg_c = make_config("c", "EmailService");
  cfg_c.peers.push_back(prod.endpoint());
  collector first_run;
  {
    auto c = start(cfg_c);
    REQUIRE_FALSE(
      c->bus().subscribe("user.account.created", [&](const event& ev) {
        first_run.add(ev);
      }));
    REQUIRE(prod.wait_for_subscribers(1, 10s));
    for (int i = 1; i <= 10; ++i)
      REQUIRE(prod.bus().publish("user.account.created", created(i)));
    REQUIRE(first_run.wait_for(10, 10s));
    REQUIRE(c->drain(5s));
  } // the consumer stops with offset 10
  std::optional<publish_receipt> last;
  for (int i = 11; i <= 30; ++i)
    last = *prod.bus().publish("user.account.created", created(i));
  std::this_thread::sleep_for(1500ms);
  for (int i = 31; i <= 50; ++i)
    last = *prod.bus().publish("user.account.created", created(i));
  REQUIRE_FALSE(herald::test::get_within(*last->durable, 10s));
  offset_us = duration_cast<microseconds>(hours{1} - milliseconds{750}).count();
  auto deleted = prod.enforce_retention();
  REQUIRE(deleted);
  CHECK(*deleted == 30);

  SECTION("a consumer whose offset expired gets the error and the metric") {
    collector second_run;
    auto c = start(cfg_c);
    REQUIRE_FALSE(
      c->bus().subscribe("user.account.created", [&](const event& ev) {
        second_run.add(ev);
      }));
    REQUIRE(second_run.wait_for(20, 20s));
    REQUIRE(c->drain(5s));
    check_complete_in_entity_order(second_run, 31, 50);
    CHECK(c->stats("EmailService")->behind_retention == 1);
  }
  SECTION("a new consumer starts at the oldest retained event, no error") {
    // Another consumer name: a node that runs EmailService joins the
    // EmailService group and goes on from the group's offset.
    auto cfg_new = make_config("c-new", "AnalyticsService");
    cfg_new.peers.push_back(prod.endpoint());
    collector got;
    auto c = start(cfg_new);
    REQUIRE_FALSE(
      c->bus().subscribe("user.account.created", [&](const event& ev) {
        got.add(ev);
      }));
    REQUIRE(got.wait_for(20, 20s));
    REQUIRE(c->drain(5s));
    check_complete_in_entity_order(got, 31, 50);
    CHECK(c->stats("AnalyticsService")->behind_retention == 0);
  }
}

TEST_CASE("a producer restarted on its data directory keeps its stream",
          "[runtime][store]") {
  auto cfg = make_config("p", "UserService");
  std::string stream;
  {
    auto p = start(cfg);
    stream = p->stream();
    std::optional<publish_receipt> last;
    for (int i = 1; i <= 100; ++i)
      last = *p->bus().publish("user.account.created", created(i));
    REQUIRE_FALSE(herald::test::get_within(*last->durable, 10s));
  }
  auto p = start(cfg);
  CHECK(p->stream() == stream);
  auto r = p->bus().publish("user.account.created", created(101));
  REQUIRE(r);
  CHECK(r->seq == 101);
  REQUIRE_FALSE(herald::test::get_within(*r->durable, 10s));
}

TEST_CASE("a slow consumer's backlog stays bounded and loses nothing",
          "[runtime][flow]") {
  // The handler blocks on its first event until all 60,000 reached the
  // consumer's node: the node sheds what does not fit the consumer's
  // backlog, the consumer sees the gap and replays it from the producer's
  // log in bounded batches.
  auto a = start(make_config("a", "UserService"));
  auto cfg_b = make_config("b", "EmailService");
  cfg_b.peers.push_back(a->endpoint());
  auto b = start(cfg_b);
  collector got;
  std::mutex release_mtx;
  std::condition_variable release_cv;
  bool released = false;
  REQUIRE_FALSE(
    b->bus().subscribe("user.account.created", [&](const event& ev) {
      {
        std::unique_lock<std::mutex> guard{release_mtx};
        release_cv.wait_for(guard, 30s, [&] {
          return released;
        });
      }
      got.add(ev);
    }));
  REQUIRE(a->wait_for_subscribers(1, 10s));
  // A group of one: once it holds its partitions, what it misses live is a
  // gap (before, the grant's read of the log brings everything).
  REQUIRE(herald::test::wait_until(
    [&] {
      auto s = b->stats("EmailService");
      std::lock_guard<std::mutex> guard{s->positions_mtx};
      auto it = s->positions.find(a->stream());
      return it != s->positions.end() && it->second.leases.size() == 64;
    },
    10s, 10ms));
  std::optional<publish_receipt> last;
  for (int i = 1; i <= 60000; ++i)
    last = *a->bus().publish("user.account.created", created(i % 1000));
  REQUIRE_FALSE(herald::test::get_within(*last->durable, 10s));
  (void)herald::test::wait_until(
    [&] {
      return b->received() >= 60000;
    },
    30s, 10ms);
  CHECK(b->received() == 60000);
  {
    std::lock_guard<std::mutex> guard{release_mtx};
    released = true;
  }
  release_cv.notify_all();
  REQUIRE(got.wait_for(60000, 60s));
  check_complete_in_entity_order(got, 1, 60000);
  auto stats = b->stats("EmailService");
  CHECK(stats->shed > 0);
  CHECK(stats->gaps > 0);
  CHECK(stats->replayed > 0);
}

TEST_CASE("bad control requests get an error reply and change nothing",
          "[runtime][control]") {
  auto n = start(make_config("p", "UserService"));
  std::optional<publish_receipt> last;
  for (int i = 1; i <= 5; ++i)
    last = *n->bus().publish("user.account.created", created(i));
  REQUIRE_FALSE(herald::test::get_within(*last->durable, 10s));
  zmq::context_t ctx;
  zmq::socket_t dealer{ctx, zmq::socket_type::dealer};
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::rcvtimeo, 5000);
  dealer.connect(n->control_endpoint());
  auto ask = [&](std::string_view bytes) {
    zmq::message_t req{bytes.data(), bytes.size()};
    REQUIRE(dealer.send(req, zmq::send_flags::none));
    zmq::message_t reply;
    REQUIRE(dealer.recv(reply));
    auto j = decode_payload(reply.to_string_view());
    REQUIRE(j);
    return *j;
  };
  SECTION("garbage") {
    auto r = ask("\xc1\xc1 not msgpack");
    CHECK_THAT(r.at("error").get<std::string>(), Catch::Contains("malformed"));
  }
  SECTION("a map without the fields") {
    auto r = ask(encode_payload({{"op", "replay"}}));
    CHECK(r.contains("error"));
  }
  SECTION("an unknown operation") {
    auto r = ask(
      encode_payload({{"op", "drop_all"}, {"id", 7}, {"stream", n->stream()}}));
    CHECK(r.at("id") == 7);
    CHECK_THAT(r.at("error").get<std::string>(),
               Catch::Contains("unknown operation"));
  }
  control::replay_request replay;
  replay.id = 8;
  replay.stream = "no-such-stream";
  replay.from = 1;
  replay.max = 10;
  replay.patterns = {"user.>"};
  SECTION("an unknown stream") {
    auto r = ask(control::encode(replay));
    CHECK_THAT(r.at("error").get<std::string>(),
               Catch::Contains("unknown stream"));
  }
  SECTION("a protocol version the node does not serve") {
    replay.stream = n->stream();
    replay.v = control::version + 1;
    auto r = ask(control::encode(replay));
    CHECK(r.at("id") == 8);
    CHECK_THAT(
      r.at("error").get<std::string>(),
      Catch::Contains(fmt::format("protocol version {}", control::version + 1))
        && Catch::Contains("serves version 1"));
  }
  CHECK(n->control_errors() == 1);
  // The node still serves a good request and still publishes.
  replay.v = control::version;
  replay.id = 9;
  replay.stream = n->stream();
  auto good = control::decode_reply<control::replay_reply>(
    encode_payload(ask(control::encode(replay))));
  REQUIRE(good);
  REQUIRE(std::holds_alternative<control::replay_reply>(*good));
  CHECK(std::get<control::replay_reply>(*good).head == 5);
  CHECK(std::get<control::replay_reply>(*good).events.size() > 0);
  CHECK(n->bus().publish("user.account.created", created(6)));
}

TEST_CASE("a node that only hears heartbeats is no subscriber",
          "[runtime][node]") {
  // Every node subscribes to heartbeats as it starts; a producer waiting
  // for its consumers must not take that for one, or it publishes into
  // the void.
  auto a = start(make_config("a", "UserService"));
  auto cfg_b = make_config("b", "EmailService");
  cfg_b.peers.push_back(a->endpoint());
  auto b = start(cfg_b);
  CHECK_FALSE(a->wait_for_subscribers(1, 500ms));
  REQUIRE_FALSE(
    b->bus().subscribe("user.account.created", [](const event&) {}));
  CHECK(a->wait_for_subscribers(1, 10s));
}

TEST_CASE("an observer from the start reads the log, then follows live "
          "events, none missed or twice",
          "[runtime][node][observe]") {
  auto n = start(make_config("observer", "UserService"));
  std::optional<publish_receipt> last;
  for (int i = 1; i <= 300; ++i) {
    auto r = n->bus().publish("user.account.created", created(i));
    REQUIRE(r);
    last = std::move(*r);
  }
  REQUIRE_FALSE(herald::test::get_within(*last->durable, 10s));
  collector got;
  observe_options from_start;
  from_start.from_start = true;
  REQUIRE_FALSE(n->bus().observe(
    "user.account.created",
    [&](const event& ev) {
      got.add(ev);
    },
    from_start));
  // More events while the observer reads the first 300 back: they arrive
  // live during its replay and must be neither lost nor printed twice.
  for (int i = 301; i <= 600; ++i)
    REQUIRE(n->bus().publish("user.account.created", created(i)));
  REQUIRE(got.wait_for(600, 10s));
  // Anything handed over twice would come right after.
  std::this_thread::sleep_for(300ms);
  std::lock_guard<std::mutex> guard{got.mtx};
  std::vector<uint64_t> expected(600);
  std::iota(expected.begin(), expected.end(), 1);
  CHECK(got.seqs == expected);
}

TEST_CASE("the node's observer keeps the start it was made with",
          "[runtime][node][observe]") {
  auto n = start(make_config("observer-start", "UserService"));
  observe_options from_start;
  from_start.from_start = true;
  auto nop = [](const event&) {};
  REQUIRE_FALSE(n->bus().observe("user.>", nop, from_start));
  CHECK_FALSE(n->bus().observe("billing.>", nop, from_start));
  auto err = n->bus().observe("order.>", nop);
  REQUIRE(err);
  CHECK(is(err, errc::invalid_argument));
  CHECK_THAT(message_of(err), Catch::Contains("order.>"));
}

TEST_CASE("a live event of one type dropped before one of another type is "
          "not committed past: a consumer stopped before the next stream "
          "heartbeat handles it after its restart",
          "[runtime][node][gaps]") {
  // AuditService takes both user types; PUB/SUB drops seq 3 (a created)
  // and delivers seq 4 (a deleted). Each type's own sequence has no gap,
  // so only the producer's next heartbeat (30 s away here) shows it: the
  // consumer must not commit past seq 2 until then.
  auto catalog = temp_data_dir("two-types") + ".yaml";
  {
    std::ifstream in{HERALD_SOURCE_DIR "/config/events.yaml"};
    std::string text{std::istreambuf_iterator<char>{in}, {}};
    for (auto at = text.find("    consumers:\n"); at != std::string::npos;
         at = text.find("    consumers:\n", at + 1))
      text.insert(at + 15, "      AuditService: Audit trail\n");
    std::ofstream out{catalog};
    out << text;
  }
  auto pcfg = make_config("p", "UserService");
  pcfg.catalog = catalog;
  pcfg.transport.stream_heartbeat = 30s;
  auto producer = start(pcfg);
  auto ccfg = make_config("audit", "AuditService");
  ccfg.catalog = catalog;
  // Through membership: the producer's control endpoint (replays,
  // leases) does not wait for its first heartbeat.
  ccfg.cluster.seeds = {producer->control_endpoint()};
  ccfg.test_hooks.drop_live_seqs = {3};
  std::mutex mtx;
  std::set<uint64_t> seen;
  auto run = [&](node_config cfg) {
    auto n = start(std::move(cfg));
    for (auto* type : {"user.account.created", "user.account.deleted"})
      REQUIRE_FALSE(n->bus().subscribe(type, [&](const event& ev) {
        std::lock_guard<std::mutex> guard{mtx};
        seen.insert(ev.seq());
      }));
    return n;
  };
  auto saw = [&](uint64_t seq) {
    std::lock_guard<std::mutex> guard{mtx};
    return seen.count(seq) > 0;
  };
  auto consumer = run(ccfg);
  REQUIRE(producer->wait_for_subscribers(1, 10s));
  auto publish = [&](const char* type, payload p) {
    auto r = producer->bus().publish(type, std::move(p));
    REQUIRE(r);
    REQUIRE_FALSE(r->wait());
  };
  publish("user.account.created", created(1));
  publish("user.account.created", created(2));
  REQUIRE(test::wait_until(
    [&] {
      return saw(2);
    },
    10s));
  publish("user.account.created", created(3)); // seq 3: dropped
  publish("user.account.deleted",
          {{"user_id", user_id(3)}, {"deletion_reason", "admin"}});
  REQUIRE(test::wait_until(
    [&] {
      return saw(4);
    },
    10s));
  CHECK_FALSE(saw(3));
  // Offsets are committed every 50 ms: long past.
  std::this_thread::sleep_for(300ms);
  {
    auto stats = consumer->stats("AuditService");
    REQUIRE(stats);
    std::lock_guard<std::mutex> guard{stats->positions_mtx};
    auto pos = stats->positions.find(producer->stream());
    REQUIRE(pos != stats->positions.end());
    CHECK(pos->second.offset < 3);
  }
  consumer->stop();
  consumer.reset();

  ccfg.test_hooks.drop_live_seqs.clear();
  consumer = run(ccfg);
  REQUIRE(producer->wait_for_subscribers(1, 10s));
  publish("user.account.created", created(5));
  CHECK(test::wait_until(
    [&] {
      return saw(3) && saw(5);
    },
    15s));
}

TEST_CASE("a static peer's heartbeat naming another peer's stream is refused: "
          "replays keep going to the stream's owner",
          "[runtime][node][peers]") {
  // (c) of the hostile-peer tries: a peer claims the producer's stream with
  // a huge head and its own control endpoint. The consumer must not send
  // replay requests there, and must go on with the real stream.
  auto a = start(make_config("a", "UserService"));
  herald::test::fake_endpoint trap{[](std::string_view) {
    return std::vector<std::string>{};
  }};
  test::hostile_peer hostile;
  auto cfg_b = make_config("b", "EmailService");
  cfg_b.peers.push_back(a->endpoint());
  cfg_b.peers.push_back(hostile.endpoint());
  auto b = start(cfg_b);
  collector got;
  REQUIRE_FALSE(
    b->bus().subscribe("user.account.created", [&](const event& ev) {
      got.add(ev);
    }));
  REQUIRE(a->wait_for_subscribers(1, 10s));
  for (int i = 1; i <= 5; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  REQUIRE(got.wait_for(5, 10s));
  control::heartbeat forged;
  forged.stream = a->stream();
  forged.head = uint64_t{1} << 40;
  forged.types["user.account.created"] = uint64_t{1} << 40;
  forged.control = trap.endpoint();
  auto body = control::encode(forged);
  auto errors_before = b->control_errors();
  for (int i = 0; i < 20; ++i) {
    hostile.send("_hb", body);
    std::this_thread::sleep_for(20ms);
  }
  // The real stream goes on, and nothing asked the hostile peer.
  for (int i = 6; i <= 10; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  CHECK(got.wait_for(10, 10s));
  check_complete_in_entity_order(got, 1, 10);
  std::this_thread::sleep_for(300ms);
  CHECK(trap.requests().empty());
  CHECK(b->control_errors() > errors_before);
}

namespace {

// A valid envelope of `stream`, as a forger would make it.
std::string forged_envelope(const std::string& stream, uint64_t seq,
                            uint64_t type_seq) {
  envelope_header hdr;
  hdr.event_type = "user.account.created";
  hdr.timestamp_us = 1'700'000'000'000'000;
  hdr.id = "01890000-0000-7000-8000-000000000999";
  hdr.source = "UserService";
  hdr.key = user_id(999);
  hdr.stream = stream;
  hdr.seq = seq;
  hdr.type_seq = type_seq;
  std::string out;
  encode(hdr,
         payload{{"user_id", hdr.key},
                 {"email", "forged@example.com"},
                 {"registration_source", "web"}},
         out);
  return out;
}

// Whether `got` handled an event of the forger's key.
bool took_forged(collector& got) {
  std::lock_guard<std::mutex> guard{got.mtx};
  return std::count(got.keys.begin(), got.keys.end(), user_id(999)) > 0;
}

} // namespace

TEST_CASE("an event with the next type_seq and a huge seq from a peer that "
          "does not own the stream skips nothing and poisons no offset",
          "[runtime][node][peers]") {
  // (b) of the hostile-peer tries: one event on the producer's stream with
  // type_seq last + 1 and seq 2^62. The real event with that type_seq must
  // be handled, and after a restart the events published meanwhile too.
  auto a = start(make_config("a", "UserService"));
  test::hostile_peer hostile;
  auto cfg_b = make_config("b", "EmailService");
  cfg_b.peers.push_back(a->endpoint());
  cfg_b.peers.push_back(hostile.endpoint());
  collector got;
  auto run = [&] {
    auto n = start(cfg_b);
    REQUIRE_FALSE(
      n->bus().subscribe("user.account.created", [&](const event& ev) {
        got.add(ev);
      }));
    return n;
  };
  auto b = run();
  REQUIRE(hostile.wait_for(""));
  REQUIRE(a->wait_for_subscribers(1, 10s));
  for (int i = 1; i <= 5; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  REQUIRE(got.wait_for(5, 10s));
  auto forged = forged_envelope(a->stream(), uint64_t{1} << 62, 6);
  hostile.send("user.account.created", forged);
  std::this_thread::sleep_for(300ms);
  for (int i = 6; i <= 8; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  REQUIRE(got.wait_for(8, 10s));
  // Committed as far as handled (not past: the forged seq confirms
  // nothing), so the restart handles nothing twice.
  CHECK(test::wait_until(
    [&] {
      auto stats = b->stats("EmailService");
      std::lock_guard<std::mutex> guard{stats->positions_mtx};
      auto pos = stats->positions.find(a->stream());
      return pos != stats->positions.end() && pos->second.offset == 8;
    },
    10s));
  // Then events come while it is down.
  b->stop();
  b.reset();
  for (int i = 9; i <= 12; ++i) {
    auto r = a->bus().publish("user.account.created", created(i));
    REQUIRE(r);
    REQUIRE_FALSE(r->wait());
  }
  b = run();
  CHECK(got.wait_for(12, 15s));
  CHECK_FALSE(took_forged(got));
  check_complete_in_entity_order(got, 1, 12);
}

TEST_CASE("a replay reply is taken only when it holds the stream's events "
          "asked for: events of another stream or outside the range are "
          "refused",
          "[runtime][node][peers][replay]") {
  // A peer answers the replay requests for its own stream with a real
  // producer's event (next seq and type_seq), or with an event of its own
  // stream far beyond the range asked for. Neither may be handled.
  auto a = start(make_config("a", "UserService"));
  bool other_stream = GENERATE(true, false);
  std::atomic<int> replays{0};
  const std::string own = "0123456789abcdef0123456789abcdef";
  herald::test::fake_endpoint liar{[&](std::string_view bytes) {
    auto req = control::decode_request(bytes, decode_limits{});
    std::vector<std::string> out;
    if (!req)
      return out;
    if (auto* l = std::get_if<control::group_lease_request>(&*req)) {
      // Every partition granted from offset 0: the member reads the stream
      // from the start, asking this peer.
      control::group_lease_reply g;
      g.id = l->id;
      g.body.stream = l->body.stream;
      g.body.group = l->body.group;
      g.body.ttl_ms = 60'000;
      for (auto& e : l->body.entries) {
        lease_entry_reply one;
        one.partition = e.partition;
        one.result = e.op == lease_op::acquire ? lease_result::granted
                                               : lease_result::renewed;
        one.epoch = 7;
        g.body.entries.push_back(one);
      }
      out.push_back(control::encode(g));
      return out;
    }
    auto* r = std::get_if<control::replay_request>(&*req);
    if (r == nullptr)
      return out;
    replays.fetch_add(1);
    control::replay_reply m;
    m.id = r->id;
    m.stream = r->stream;
    m.head = 1;
    m.first = 1;
    m.next = 2;
    m.type_heads["user.account.created"] = 1;
    auto ev = other_stream ? forged_envelope(a->stream(), 6, 6)
                           : forged_envelope(own, uint64_t{1} << 62, 1);
    m.events.assign(ev.begin(), ev.end());
    out.push_back(control::encode(m));
    return out;
  }};
  test::hostile_peer hostile;
  auto cfg_b = make_config("b", "EmailService");
  cfg_b.peers.push_back(a->endpoint());
  cfg_b.peers.push_back(hostile.endpoint());
  auto b = start(cfg_b);
  collector got;
  REQUIRE_FALSE(
    b->bus().subscribe("user.account.created", [&](const event& ev) {
      got.add(ev);
    }));
  REQUIRE(hostile.wait_for(""));
  REQUIRE(a->wait_for_subscribers(1, 10s));
  for (int i = 1; i <= 5; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  REQUIRE(got.wait_for(5, 10s));
  // The peer's own stream, one event behind: the consumer asks it.
  control::heartbeat hb;
  hb.stream = own;
  hb.head = 1;
  hb.types["user.account.created"] = 1;
  hb.control = liar.endpoint();
  auto body = control::encode(hb);
  auto errors_before = b->control_errors();
  REQUIRE(test::wait_until(
    [&] {
      hostile.send("_hb", body);
      return replays.load() > 0;
    },
    10s));
  // Answered, and refused.
  CHECK(test::wait_until(
    [&] {
      return b->control_errors() > errors_before;
    },
    10s));
  for (int i = 6; i <= 8; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  CHECK(got.wait_for(8, 10s));
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(took_forged(got));
  check_complete_in_entity_order(got, 1, 8);
}
