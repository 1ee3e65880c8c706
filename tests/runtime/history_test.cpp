// A node's history (config `record`), its incarnation and its test hooks
// (config `test_hooks`, control op `test.hooks`): what the harness relies
// on, seen from a node in the test process.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <caf/event_based_actor.hpp>

#include "deadline.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"
#include "herald/runtime/control_client.hpp"
#include "history.hpp"
#include "node_support.hpp"
#include <spdlog/spdlog.h>

using namespace herald;
using namespace std::chrono_literals;

namespace {

std::vector<payload> read_records(const std::string& path) {
  std::ifstream in{path};
  std::vector<payload> out;
  for (std::string line; std::getline(in, line);)
    out.push_back(payload::parse(line));
  return out;
}

std::vector<payload> records_of(const std::string& path,
                                const std::string& kind) {
  std::vector<payload> out;
  for (auto& r : read_records(path))
    if (r["record"] == kind)
      out.push_back(r);
  return out;
}

// The node runs EmailService (`bus().subscribe` is its consumer) and
// publishes as UserService, the events' producer.
node_config recording(const std::string& name, const std::string& record) {
  auto cfg = make_config(name, "EmailService");
  cfg.consumers.push_back(
    make_consumer("EmailService", {"user.account.created"}));
  cfg.record = record;
  return cfg;
}

caf::expected<publish_receipt> publish(node& n, int user) {
  publish_options as_producer;
  as_producer.source = "UserService";
  return n.bus().publish("user.account.created", created(user), as_producer);
}

} // namespace

TEST_CASE("a recording node writes what each consumer handled before its "
          "offset passes it, and its offset commits",
          "[runtime][history]") {
  auto record = temp_data_dir("history") + ".jsonl";
  auto n = start(recording("rec", record));
  std::atomic<int> calls{0};
  REQUIRE_FALSE(n->bus().subscribe("user.account.created", [&](const event&) {
    ++calls;
  }));
  for (int i = 0; i < 20; ++i)
    REQUIRE(publish(*n, i % 4));
  REQUIRE_WITHIN(10s, records_of(record, "handling").size() == 20
                        && !records_of(record, "offset").empty()
                        && records_of(record, "offset").back()["offset"] == 20);
  auto all = read_records(record);
  REQUIRE(all.front()["record"] == "start");
  CHECK(all.front()["v"] == 1);
  CHECK(all.front()["incarnation"] == 1);
  auto h = records_of(record, "handling").front();
  CHECK(h["consumer"] == "EmailService");
  CHECK(h["node"] == "rec");
  CHECK(h["outcome"] == "handled");
  CHECK(h["attempt"] == 1);
  CHECK(h["stream"] == n->stream());
  CHECK(h["partition"].is_number_unsigned());
  CHECK(h.contains("lease_epoch"));
  CHECK(h["end_us"].get<int64_t>() >= h["start_us"].get<int64_t>());
  // Every offset record comes after the records of the events it covers.
  std::vector<uint64_t> handled;
  for (auto& r : all) {
    if (r["record"] == "handling")
      handled.push_back(r["seq"].get<uint64_t>());
    if (r["record"] == "offset")
      for (uint64_t s = 1; s <= r["offset"].get<uint64_t>(); ++s)
        CHECK(std::find(handled.begin(), handled.end(), s) != handled.end());
  }
  n->stop();
}

TEST_CASE("the incarnation rises at every start of a node, and with what "
          "membership announced",
          "[runtime][history]") {
  auto record = temp_data_dir("incarnation") + ".jsonl";
  auto cfg = recording("inc", record);
  for (int i = 0; i < 3; ++i)
    start(cfg)->stop();
  auto starts = records_of(record, "start");
  REQUIRE(starts.size() == 3);
  CHECK(starts[0]["incarnation"] == 1);
  // Leaving the cluster at stop announces (and keeps) a higher one: each
  // start is above the last incarnation the node announced.
  std::ifstream in{cfg.data_dir + "/incarnation"};
  uint64_t n = 0;
  in >> n;
  for (size_t i = 1; i < starts.size(); ++i)
    CHECK(starts[i]["incarnation"].get<uint64_t>()
          > starts[i - 1]["incarnation"].get<uint64_t>());
  CHECK(n > starts[2]["incarnation"].get<uint64_t>());
}

TEST_CASE("test hooks make chosen keys fail, for function handlers and "
          "services alike",
          "[runtime][history][test_hooks]") {
  auto record = temp_data_dir("hooks") + ".jsonl";
  auto cfg = recording("hooks", record);
  cfg.consumers.push_back(
    make_consumer("AnalyticsService", {"user.account.created"}));
  for (auto& c : cfg.consumers) {
    c.retry.attempts = 2;
    c.retry.initial = 1ms;
  }
  cfg.test_hooks.enabled = true;
  cfg.test_hooks.fail_keys = {user_id(1)};
  auto n = start(cfg);
  std::atomic<int> email_calls{0}, service_calls{0};
  REQUIRE_FALSE(n->bus().subscribe("user.account.created", [&](const event&) {
    ++email_calls;
  }));
  REQUIRE_FALSE(n->attach("AnalyticsService", [&](caf::event_based_actor*) {
    return caf::behavior{[&](const event&) {
      ++service_calls;
    }};
  }));
  for (int i = 0; i < 4; ++i)
    REQUIRE(publish(*n, i));
  REQUIRE_WITHIN(10s, records_of(record, "handling").size() == 8);
  int dead = 0;
  for (auto& r : records_of(record, "handling"))
    if (r["outcome"] == "dead_lettered") {
      ++dead;
      CHECK(r["key"] == user_id(1));
      CHECK(r["attempt"] == 2);
    }
  CHECK(dead == 2); // one per consumer
  // The poisoned key never reached either handler.
  CHECK(email_calls == 3);
  CHECK(service_calls == 3);
  n->stop();
}

TEST_CASE("test.hooks changes the slow keys of a node with test hooks, and "
          "is refused by one without, naming the key",
          "[runtime][history][test_hooks]") {
  auto cfg = recording("slow", temp_data_dir("slow") + ".jsonl");
  SECTION("without test_hooks") {
    auto n = start(cfg);
    control_client_options opts;
    opts.timeout = 10s;
    auto client = control_client::connect(n->control_endpoint(), opts);
    REQUIRE(client);
    auto reply = client->call(control::test_hooks_request{});
    REQUIRE_FALSE(reply);
    CHECK(is(reply.error(), errc::remote_error));
    CHECK_THAT(message_of(reply.error()), Catch::Contains("'test_hooks'"));
    n->stop();
  }
  SECTION("with test_hooks") {
    cfg.test_hooks.enabled = true;
    auto n = start(cfg);
    std::atomic<int> calls{0};
    REQUIRE_FALSE(n->bus().subscribe("user.account.created", [&](const event&) {
      ++calls;
    }));
    control_client_options opts;
    opts.timeout = 10s;
    auto client = control_client::connect(n->control_endpoint(), opts);
    REQUIRE(client);
    control::test_hooks_request req;
    req.slow_keys[user_id(1)] = 300;
    auto reply = client->call(req);
    REQUIRE(reply);
    CHECK(reply->slow_keys.at(user_id(1)) == 300);
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(publish(*n, 1));
    REQUIRE_WITHIN(10s, calls == 1);
    // The slow key waited at least the hook's 300 ms before its handler.
    CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
    n->stop();
  }
}

TEST_CASE("a history records partitions, lease epochs, discarded results "
          "and the group commits an owner confirmed, each offset once",
          "[runtime][history][groups]") {
  auto cfg = make_config("rec-groups", "EmailService");
  std::filesystem::create_directories(cfg.data_dir);
  auto path = cfg.data_dir + "/history.jsonl";
  auto h = history_file::open(path, cfg, "S", 1, spdlog::default_logger());
  REQUIRE(h);
  envelope_header hdr;
  hdr.event_type = "user.account.created";
  hdr.id = "0190c0de-0000-7000-8000-000000000001";
  hdr.source = "UserService";
  hdr.key = "u-1";
  hdr.stream = "S";
  hdr.seq = 3;
  hdr.type_seq = 3;
  std::string frame;
  encode(hdr, created(1), frame);
  auto decoded = decode(frame);
  REQUIRE(decoded);
  auto& ev = *decoded;
  handling under_lease{"EmailService", ev, handling_outcome::discarded};
  under_lease.partition = 7;
  under_lease.epoch = (uint64_t{1} << 32) | 3;
  (*h)->finished(under_lease);
  handling redriven{"EmailService", ev, handling_outcome::handled};
  redriven.partition = 7;
  (*h)->finished(redriven);
  (*h)->group_committed("EmailService", "S", 7, 9, 64, 10);
  (*h)->group_committed("EmailService", "S", 7, 9, 64, 10); // no move
  (*h)->group_committed("EmailService", "S", 7, 9, 64, 4);  // behind
  (*h)->group_committed("EmailService", "S", 8, 9, 64, 4);  // another p
  (*h)->group_committed("EmailService", "S", 7, 11, 64, 12);

  auto handled = records_of(path, "handling");
  REQUIRE(handled.size() == 2);
  CHECK(handled[0]["outcome"] == "discarded");
  CHECK(handled[0]["partition"] == 7);
  CHECK(handled[0]["lease_epoch"] == ((uint64_t{1} << 32) | 3));
  CHECK(handled[1]["outcome"] == "handled");
  CHECK(handled[1]["lease_epoch"].is_null());
  auto offsets = records_of(path, "offset");
  REQUIRE(offsets.size() == 3);
  CHECK(offsets[0]["partition"] == 7);
  CHECK(offsets[0]["offset"] == 10);
  CHECK(offsets[0]["lease_epoch"] == 9);
  CHECK(offsets[0]["partitions"] == 64);
  CHECK(offsets[1]["partition"] == 8);
  CHECK(offsets[2]["offset"] == 12);
  CHECK(offsets[2]["lease_epoch"] == 11);
}
