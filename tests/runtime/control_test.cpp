// The control protocol (control.hpp) and its client (control_client.hpp).

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

#include "fake_endpoint.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"
#include "herald/runtime/control.hpp"
#include "herald/runtime/control_client.hpp"
#include "node_support.hpp"
#include "process.hpp"

using namespace herald;
using namespace std::chrono_literals;
using herald::test::fake_endpoint;

namespace {

control::dead_letter_record record(uint64_t id) {
  control::dead_letter_record r;
  r.id = id;
  r.consumer = "EmailService";
  r.node = "email-node";
  r.event_type = "user.account.created";
  r.event_id = "0190c0de-0000-7000-8000-000000000001";
  r.key = "u-1";
  r.stream = "3f1c9a4e-0000-4000-8000-000000000000";
  r.seq = 17;
  r.reason = "failed 3 attempts: smtp down";
  r.parked = id % 2 == 0;
  r.created = "2026-03-01T09:00:03.000000Z";
  r.attempts = {
    {"2026-03-01T09:00:00.000000Z", "smtp down", "exception", "email-node"},
    {"2026-03-01T09:10:01.000000Z", "smtp still down", "error",
     "email-node-2"}};
  r.redrives = {{"2026-03-01T09:10:00.000000Z", "ada@ops-host"}};
  return r;
}

control::replay_request replay_req() {
  control::replay_request m;
  m.id = 11;
  m.stream = "3f1c9a4e-0000-4000-8000-000000000000";
  m.from = 5;
  m.max = 100;
  m.patterns = {"user.>", "billing.invoice.paid"};
  return m;
}

control::replay_reply replay_rep() {
  control::replay_reply m;
  m.id = 11;
  m.stream = "3f1c9a4e-0000-4000-8000-000000000000";
  m.head = 42;
  m.first = 3;
  m.next = 43;
  m.type_heads = {{"user.account.created", 30}, {"user.account.deleted", 12}};
  m.events = {0x81, 0xa1, 0x61, 0x01, 0x00, 0xff};
  return m;
}

control::dlq_list_request list_req() {
  control::dlq_list_request m;
  m.id = 12;
  m.filter = {"EmailService", "user.account.created", "u-1"};
  m.after = 6;
  m.limit = 5;
  return m;
}

control::dlq_list_reply list_rep() {
  control::dlq_list_reply m;
  m.id = 12;
  m.dead_letters = {record(7), record(8)};
  m.more = true;
  return m;
}

control::dlq_show_request show_req() {
  control::dlq_show_request m;
  m.id = 13;
  m.dead_letter = 7;
  return m;
}

control::dlq_show_reply show_rep() {
  control::dlq_show_reply m;
  m.id = 13;
  m.dead_letter = record(7);
  m.dead_letter.event = payload{{"event_type", "user.account.created"},
                                {"data", {{"email", "user1@example.com"}}}};
  return m;
}

control::dlq_redrive_request redrive_req() {
  control::dlq_redrive_request m;
  m.id = 14;
  m.filter.consumer = "EmailService";
  m.dry_run = true;
  return m;
}

control::dlq_redrive_reply redrive_rep() {
  control::dlq_redrive_reply m;
  m.id = 14;
  m.redriven = {7, 9};
  m.dry_run = true;
  return m;
}

control::dlq_purge_request purge_req() {
  control::dlq_purge_request m;
  m.id = 15;
  m.dead_letter = 7;
  m.filter.consumer = "EmailService";
  return m;
}

control::dlq_purge_reply purge_rep() {
  control::dlq_purge_reply m;
  m.id = 15;
  m.purged = {7};
  m.dry_run = false;
  return m;
}

control::error_reply error_rep() {
  control::error_reply m;
  m.id = 16;
  m.stream = "3f1c9a4e-0000-4000-8000-000000000000";
  m.error = "unknown stream 'x'";
  return m;
}

control::heartbeat hb() {
  control::heartbeat m;
  m.stream = "3f1c9a4e-0000-4000-8000-000000000000";
  m.head = 42;
  m.control = "tcp://127.0.0.1:5701";
  m.types = {{"user.account.created", 30}};
  m.max_message_size = 1048576;
  m.pub = "tcp://127.0.0.1:5700";
  return m;
}

control::hello_request hello_req() {
  control::hello_request m;
  m.id = 17;
  m.stream = "3f1c9a4e-0000-4000-8000-000000000000";
  m.max_message_size = 65536;
  return m;
}

control::hello_reply hello_rep() {
  control::hello_reply m;
  m.id = 17;
  m.stream = "5e2d1b3c-0000-4000-8000-000000000000";
  m.max_message_size = 1048576;
  return m;
}

control::cluster_member member(std::string name, uint64_t incarnation,
                               control::member_status status) {
  control::cluster_member m;
  m.name = std::move(name);
  m.stream =
    "3f1c9a4e-0000-4000-8000-00000000000" + std::to_string(incarnation % 10);
  m.incarnation = incarnation;
  m.status = status;
  m.service = "EmailService";
  m.pub = "tcp://10.0.0.2:5700";
  m.control = "tcp://10.0.0.2:5701";
  m.metrics = "http://10.0.0.2:9100";
  m.produces = {"email.message.sent"};
  m.consumers = {{"EmailService", {"user.>", "billing.invoice.paid"}}};
  return m;
}

control::gossip_sync_request sync_req() {
  control::gossip_sync_request m;
  m.id = control::gossip_id_bit | 21;
  m.cluster = "prod";
  m.from = member("email-1", 3, control::member_status::joining);
  m.members = {m.from, member("user-1", 7, control::member_status::suspect)};
  return m;
}

control::gossip_sync_reply sync_rep() {
  control::gossip_sync_reply m;
  m.id = control::gossip_id_bit | 21;
  m.cluster = "prod";
  m.members = {member("user-1", 8, control::member_status::up),
               member("billing-1", 2, control::member_status::down)};
  return m;
}

control::gossip_ping ping_req() {
  control::gossip_ping m;
  m.id = control::gossip_id_bit | 22;
  m.cluster = "prod";
  m.from = "email-1";
  m.incarnation = 3;
  m.target = "user-1";
  m.updates = {member("email-1", 3, control::member_status::up)};
  return m;
}

control::gossip_ack ack_rep() {
  control::gossip_ack m;
  m.id = control::gossip_id_bit | 22;
  m.cluster = "prod";
  m.from = "user-1";
  m.incarnation = 8;
  m.updates = {member("user-1", 8, control::member_status::up),
               member("billing-1", 2, control::member_status::leaving)};
  return m;
}

control::gossip_probe probe_req() {
  control::gossip_probe m;
  m.id = control::gossip_id_bit | 23;
  m.cluster = "prod";
  m.from = "email-1";
  m.target = "billing-1";
  return m;
}

control::gossip_probe_reply probe_rep() {
  control::gossip_probe_reply m;
  m.id = control::gossip_id_bit | 23;
  m.target = "billing-1";
  m.heard_ms_ago = 420;
  return m;
}

control::members_request members_req() {
  control::members_request m;
  m.id = 24;
  return m;
}

control::members_reply members_rep() {
  control::members_reply m;
  m.id = 24;
  m.cluster = "prod";
  m.self = "email-1";
  m.members = {
    {member("email-1", 3, control::member_status::up), 0},
    {member("billing-1", 2, control::member_status::down), std::nullopt}};
  return m;
}

control::group_lease_request glease_req() {
  control::group_lease_request m;
  m.id = control::group_id_bit | 7;
  m.body.stream = "3f1c9a4e-0000-4000-8000-000000000000";
  m.body.group = "EmailService";
  m.body.member = "email-2";
  m.body.partitions = 64;
  m.body.initial = 1200;
  m.body.entries = {{3, lease_op::acquire, 0, 0},
                    {4, lease_op::standby, 0, 0},
                    {9, lease_op::renew, (uint64_t{2} << 32) | 5, 880},
                    {11, lease_op::release, (uint64_t{2} << 32) | 1, 0}};
  return m;
}

control::group_lease_reply glease_rep() {
  control::group_lease_reply m;
  m.id = control::group_id_bit | 7;
  auto& b = m.body;
  b.id = m.id; // not sent: the reply's id is
  b.stream = "3f1c9a4e-0000-4000-8000-000000000000";
  b.group = "EmailService";
  b.ttl_ms = 6000;
  b.entries = {{3,
                lease_result::granted,
                (uint64_t{2} << 32) | 6,
                1200,
                "email-2",
                false,
                "",
                {}},
               {4,
                lease_result::refused,
                (uint64_t{2} << 32) | 2,
                900,
                "email-1",
                false,
                "member 'email-1' holds it under epoch 8589934594",
                {}},
               {9,
                lease_result::renewed,
                (uint64_t{2} << 32) | 5,
                880,
                "email-2",
                true,
                "",
                {}},
               {11,
                lease_result::stale,
                (uint64_t{2} << 32) | 3,
                700,
                "",
                false,
                "epoch 8589934593 is not the current lease",
                {}}};
  b.orphans = {17, 40};
  return m;
}

// A message's frame as JSON, to damage it; and back.
payload frame_of(const std::string& bytes) {
  auto j = decode_payload(bytes);
  REQUIRE(j);
  return *j;
}

std::string bytes_of(const payload& j) {
  return encode_payload(j);
}

// How each kind of message is read back: nothing, or why not.
caf::error request_error_of(const std::string& b) {
  auto r = control::decode_request(b);
  return r ? caf::error{} : r.error();
}

template <class Reply> caf::error reply_error_of(const std::string& b) {
  auto r = control::decode_reply<Reply>(b);
  return r ? caf::error{} : r.error();
}

caf::error heartbeat_error_of(const std::string& b) {
  auto r = control::decode_heartbeat(b);
  return r ? caf::error{} : r.error();
}

// One message of every kind with how to decode it.
struct sample {
  const char* name;
  std::string bytes;
  std::function<caf::error(const std::string&)> decode;
  // Fields the message may leave out.
  std::vector<std::string> optional;
};

std::vector<sample> samples() {
  auto req = [](const auto&) {
    return request_error_of;
  };
  // Leaving these out is fine: versionless senders, repliers that could
  // not read the id, filters, defaults.
  std::vector<std::string> reply_opt = {"v", "id"};
  return {
    {"replay request", control::encode(replay_req()), req(replay_req()), {"v"}},
    {"replay reply", control::encode(replay_rep()),
     reply_error_of<control::replay_reply>, reply_opt},
    {"dlq.list request",
     control::encode(list_req()),
     req(list_req()),
     {"v", "consumer", "type", "key", "after", "limit"}},
    {"dlq.list reply", control::encode(list_rep()),
     reply_error_of<control::dlq_list_reply>, reply_opt},
    {"dlq.show request", control::encode(show_req()), req(show_req()), {"v"}},
    {"dlq.show reply", control::encode(show_rep()),
     reply_error_of<control::dlq_show_reply>, reply_opt},
    {"dlq.redrive request",
     control::encode(redrive_req()),
     req(redrive_req()),
     {"v", "consumer", "dry_run"}},
    {"dlq.redrive reply",
     control::encode(redrive_rep()),
     reply_error_of<control::dlq_redrive_reply>,
     {"v", "id", "dry_run"}},
    {"dlq.purge request",
     control::encode(purge_req()),
     req(purge_req()),
     {"v", "dry_run", "dead_letter", "consumer"}},
    {"dlq.purge reply",
     control::encode(purge_rep()),
     reply_error_of<control::dlq_purge_reply>,
     {"v", "id", "dry_run"}},
    {"error reply",
     control::encode(error_rep()),
     reply_error_of<control::dlq_show_reply>,
     {"v", "id", "stream"}},
    {"heartbeat",
     control::encode(hb()),
     heartbeat_error_of,
     {"v", "max_message_size", "pub"}},
    {"hello request", control::encode(hello_req()), req(hello_req()), {"v"}},
    {"hello reply",
     control::encode(hello_rep()),
     reply_error_of<control::hello_reply>,
     {"v", "id"}},
    {"gossip.sync request",
     control::encode(sync_req()),
     req(sync_req()),
     {"v"}},
    {"gossip.sync reply", control::encode(sync_rep()),
     reply_error_of<control::gossip_sync_reply>, reply_opt},
    {"gossip.ping request",
     control::encode(ping_req()),
     req(ping_req()),
     {"v"}},
    {"gossip.ping reply", control::encode(ack_rep()),
     reply_error_of<control::gossip_ack>, reply_opt},
    {"gossip.probe request",
     control::encode(probe_req()),
     req(probe_req()),
     {"v"}},
    {"gossip.probe reply",
     control::encode(probe_rep()),
     reply_error_of<control::gossip_probe_reply>,
     {"v", "id", "heard_ms_ago"}},
    {"members request",
     control::encode(members_req()),
     req(members_req()),
     {"v"}},
    {"members reply", control::encode(members_rep()),
     reply_error_of<control::members_reply>, reply_opt},
    {"group.lease request",
     control::encode(glease_req()),
     req(glease_req()),
     {"v", "initial"}},
    {"group.lease reply", control::encode(glease_rep()),
     reply_error_of<control::group_lease_reply>, reply_opt},
  };
}

template <class Request> void check_request_round_trip(const Request& m) {
  auto r = control::decode_request(control::encode(m));
  REQUIRE(r);
  REQUIRE(std::holds_alternative<Request>(*r));
  CHECK(std::get<Request>(*r) == m);
  // The variant encodes as its alternative.
  CHECK(control::encode(*r) == control::encode(m));
}

template <class Reply> void check_reply_round_trip(const Reply& m) {
  auto r = control::decode_reply<Reply>(control::encode(m));
  REQUIRE(r);
  REQUIRE(std::holds_alternative<Reply>(*r));
  CHECK(std::get<Reply>(*r) == m);
}

} // namespace

TEST_CASE("every control message reads back as it was written",
          "[runtime][control]") {
  check_request_round_trip(replay_req());
  check_request_round_trip(list_req());
  check_request_round_trip(show_req());
  check_request_round_trip(redrive_req());
  check_request_round_trip(purge_req());
  check_request_round_trip(hello_req());
  check_reply_round_trip(replay_rep());
  check_reply_round_trip(hello_rep());
  check_reply_round_trip(list_rep());
  check_reply_round_trip(show_rep());
  check_reply_round_trip(redrive_rep());
  check_reply_round_trip(purge_rep());
  SECTION("an error reply, whichever reply was expected") {
    auto r = control::decode_reply<control::replay_reply>(
      control::encode(error_rep()));
    REQUIRE(r);
    REQUIRE(std::holds_alternative<control::error_reply>(*r));
    CHECK(std::get<control::error_reply>(*r) == error_rep());
  }
  SECTION("a heartbeat") {
    auto r = control::decode_heartbeat(control::encode(hb()));
    REQUIRE(r);
    CHECK(*r == hb());
  }
  SECTION("a heartbeat of a node that does not say its frame limit") {
    auto old = hb();
    old.max_message_size = 0;
    old.pub.clear();
    auto r = control::decode_heartbeat(control::encode(old));
    REQUIRE(r);
    CHECK(*r == old);
  }
  SECTION("a dead letter whose event could not be decoded") {
    auto m = show_rep();
    m.dead_letter.event.reset();
    m.dead_letter.event_error = "truncated envelope";
    check_reply_round_trip(m);
  }
  SECTION("a dead letter from a node that kept no history: no attempt "
          "nodes, no redrives") {
    auto j = frame_of(control::encode(show_rep()));
    j["dead_letter"].erase("redrives");
    for (auto& a : j["dead_letter"]["attempts"])
      a.erase("node");
    auto r = control::decode_reply<control::dlq_show_reply>(bytes_of(j));
    REQUIRE(r);
    auto& dl = std::get<control::dlq_show_reply>(*r).dead_letter;
    CHECK(dl.redrives.empty());
    REQUIRE(dl.attempts.size() == 2);
    CHECK(dl.attempts[0].node.empty());
    CHECK(dl.extra.empty());
  }
  SECTION("a redrive says who asked; without, nothing is sent") {
    auto req = redrive_req();
    req.by = "ada@ops-host";
    check_request_round_trip(req);
    CHECK(frame_of(control::encode(req)).at("by") == "ada@ops-host");
    CHECK_FALSE(frame_of(control::encode(redrive_req())).contains("by"));
  }
  SECTION("a replay from a time, and its reply saying where it started") {
    auto req = replay_req();
    req.since = 1'772'355'600'000'000;
    check_request_round_trip(req);
    CHECK(frame_of(control::encode(req)).at("since") == *req.since);
    auto rep = replay_rep();
    rep.start = 17;
    check_reply_round_trip(rep);
    // Without them (and from older nodes) the fields are not sent.
    CHECK_FALSE(frame_of(control::encode(replay_req())).contains("since"));
    CHECK_FALSE(frame_of(control::encode(replay_rep())).contains("start"));
  }
  SECTION("the defaults") {
    check_request_round_trip(control::dlq_list_request{});
    check_request_round_trip(control::dlq_redrive_request{});
    check_reply_round_trip(control::dlq_list_reply{});
    auto all = control::dlq_purge_request{};
    all.all = true;
    check_request_round_trip(all);
    // A reply without dry_run (an older node) says nothing about it.
    check_reply_round_trip(control::dlq_redrive_reply{});
  }
}

TEST_CASE("a message without a version is of version 1", "[runtime][control]") {
  for (auto& s : samples()) {
    INFO(s.name);
    auto j = frame_of(s.bytes);
    j.erase("v");
    CHECK_FALSE(s.decode(bytes_of(j)));
  }
  auto j = frame_of(control::encode(show_req()));
  j.erase("v");
  auto r = control::decode_request(bytes_of(j));
  REQUIRE(r);
  CHECK(std::get<control::dlq_show_request>(*r).v == 1);
}

TEST_CASE("fields added by a later version are skipped", "[runtime][control]") {
  for (auto& s : samples()) {
    INFO(s.name);
    auto j = frame_of(s.bytes);
    j["added_later"] = {{"anything", {1, 2, 3}}};
    CHECK_FALSE(s.decode(bytes_of(j)));
  }
  SECTION("a dead letter keeps them, to be shown") {
    auto j = frame_of(control::encode(show_rep()));
    j["dead_letter"]["shard"] = 3;
    auto r = control::decode_reply<control::dlq_show_reply>(bytes_of(j));
    REQUIRE(r);
    auto& dl = std::get<control::dlq_show_reply>(*r).dead_letter;
    CHECK(dl.extra == payload{{"shard", 3}});
    CHECK(control::to_json(dl)["shard"] == 3);
    auto shown = control::shown_fields(dl);
    REQUIRE_FALSE(shown.empty());
    CHECK(shown.front().first == "id");
    CHECK(shown.back() == std::pair<std::string, payload>{"shard", 3});
  }
}

TEST_CASE("a field of the wrong type is refused, naming it",
          "[runtime][control]") {
  for (auto& s : samples()) {
    auto frame = frame_of(s.bytes);
    for (auto& [k, value] : frame.items()) {
      INFO(s.name << ", field " << k);
      if (k == "op")
        continue; // an op that is no string: see "unknown op"
      auto j = frame_of(s.bytes);
      // A string where none is expected, a fraction where one is.
      j[k] = value.is_string() ? payload(1.5) : payload("x");
      auto err = s.decode(bytes_of(j));
      REQUIRE(err);
      CHECK(is(err, errc::decode_error));
      CHECK_THAT(message_of(err), Catch::Contains("'" + k + "'"));
    }
  }
  SECTION("inside a list") {
    auto j = frame_of(control::encode(replay_req()));
    j["patterns"][1] = 7;
    auto r = control::decode_request(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()),
               Catch::Contains("replay request: field 'patterns[1]': "
                               "expected a string, got number"));
  }
  SECTION("inside a dead letter") {
    auto j = frame_of(control::encode(list_rep()));
    j["dead_letters"][1]["seq"] = -3;
    auto r = control::decode_reply<control::dlq_list_reply>(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()),
               Catch::Contains("field 'dead_letters[1].seq': expected an "
                               "unsigned integer"));
  }
  SECTION("a frame that is no map, or no MessagePack") {
    CHECK(is(control::decode_request(encode_payload({1, 2})).error(),
             errc::decode_error));
    auto r = control::decode_request("\xc1\xc1 not msgpack");
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()), Catch::Contains("malformed"));
    CHECK_FALSE(control::decode_heartbeat("\x92\x01"));
  }
}

// From the fuzzer (docs/fuzzing.md): a key that is a map whose key is a map,
// and so on. Each level's key was rendered as JSON text holding the level
// below, escaped again: the text doubled per level, and a 233-byte request
// took gigabytes and seconds. Now any key that is no string is refused.
TEST_CASE("a control message with a map key that is no string is refused",
          "[runtime][control][fuzz]") {
  // The replay request's map with one more entry, whose key nests 20 maps.
  auto replay = control::encode(replay_req());
  std::string frame;
  frame.push_back(static_cast<char>(static_cast<unsigned char>(replay[0])
                                    + 1)); // fixmap: one more entry
  frame.append(replay, 1);
  constexpr int levels = 20;
  for (int i = 0; i < levels; ++i)
    frame += "\x81";    // a map of one entry, its key the next level
  frame += "\xa1k\x01"; // the innermost entry: "k": 1
  for (int i = 1; i < levels; ++i)
    frame += "\x01"; // the value of each level but the innermost
  frame += "\x01";   // the value of the request's extra entry
  REQUIRE(static_cast<unsigned char>(replay[0]) < 0x8f);
  REQUIRE(frame.size() < 250);
  auto started = std::chrono::steady_clock::now();
  auto r = control::decode_request(frame);
  auto took = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), errc::decode_error));
  CHECK_THAT(message_of(r.error()),
             Catch::Contains("malformed control request: the value at (root) "
                             "has a map key of type map")
               && Catch::Contains("map keys must be strings"));
  CHECK(took < std::chrono::milliseconds(100));
  auto hb = control::decode_heartbeat(frame);
  REQUIRE_FALSE(hb);
  CHECK_THAT(message_of(hb.error()), Catch::Contains("map keys must be "
                                                     "strings"));
}

TEST_CASE("a missing required field is refused, naming it",
          "[runtime][control]") {
  for (auto& s : samples()) {
    auto frame = frame_of(s.bytes);
    for (auto& [k, value] : frame.items()) {
      INFO(s.name << ", field " << k);
      auto j = frame_of(s.bytes);
      j.erase(k);
      auto err = s.decode(bytes_of(j));
      bool optional =
        std::find(s.optional.begin(), s.optional.end(), k) != s.optional.end();
      if (optional) {
        CHECK_FALSE(err);
      } else {
        REQUIRE(err);
        // Without `error`, an error reply is read as the reply asked for,
        // which misses its own fields.
        if (std::string{s.name} != "error reply")
          CHECK_THAT(message_of(err), Catch::Contains("'" + k + "'"));
      }
    }
  }
  SECTION("a purge that selects nothing") {
    auto r =
      control::decode_request(control::encode(control::dlq_purge_request{}));
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::invalid_argument));
    CHECK_THAT(message_of(r.error()), Catch::Contains("all: true"));
  }
}

TEST_CASE("an unknown op is refused, naming it", "[runtime][control]") {
  auto j = frame_of(control::encode(show_req()));
  j["op"] = "dlq.drop_all";
  auto r = control::decode_request(bytes_of(j));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), errc::decode_error));
  CHECK_THAT(message_of(r.error()),
             Catch::Contains("unknown operation 'dlq.drop_all'")
               && Catch::Contains("dlq.purge"));
  CHECK(control::message_id(bytes_of(j)) == 13);
}

TEST_CASE("a request of a version the node does not serve is refused, "
          "naming the version",
          "[runtime][control]") {
  for (uint32_t v : {0U, control::version + 1}) {
    auto m = list_req();
    m.v = v;
    auto r = control::decode_request(control::encode(m));
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::decode_error));
    CHECK_THAT(message_of(r.error()),
               Catch::Contains(fmt::format("protocol version {}", v))
                 && Catch::Contains("serves version 1"));
  }
  SECTION("an op of the later version is refused for its version") {
    auto j = frame_of(control::encode(show_req()));
    j["v"] = control::version + 1;
    j["op"] = "dlq.compact";
    auto r = control::decode_request(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()), Catch::Contains("protocol version 2"));
  }
  SECTION("replies and heartbeats of a later version are read") {
    auto m = hb();
    m.v = control::version + 1;
    auto r = control::decode_heartbeat(control::encode(m));
    REQUIRE(r);
    CHECK(r->v == control::version + 1);
  }
}

TEST_CASE("a dead letter is shown as stored", "[runtime][control]") {
  store::dead_letter l;
  l.id = 4;
  l.consumer = "EmailService";
  l.node = "email-node";
  l.event_type = "user.account.created";
  l.event_id = "e-1";
  l.key = "u-1";
  l.stream = "s-1";
  l.seq = 9;
  l.envelope = "not an envelope";
  l.attempts = {{1772355600000000, "smtp down", "exception", "node-2"}};
  l.redrives = {{1772355602000000, "ada@ops-host"}};
  l.reason = "attempts exhausted";
  l.created_us = 1772355601000000;
  auto r = control::to_record(l, false);
  CHECK(r.id == 4);
  CHECK(r.created == "2026-03-01T09:00:01.000000Z");
  REQUIRE(r.attempts.size() == 1);
  CHECK(r.attempts[0].time == "2026-03-01T09:00:00.000000Z");
  CHECK(r.attempts[0].error_class == "exception");
  CHECK(r.attempts[0].node == "node-2");
  REQUIRE(r.redrives.size() == 1);
  CHECK(r.redrives[0].time == "2026-03-01T09:00:02.000000Z");
  CHECK(r.redrives[0].by == "ada@ops-host");
  CHECK_FALSE(r.event);
  CHECK_FALSE(r.event_error);
  auto shown = control::to_record(l, true);
  CHECK_FALSE(shown.event);
  REQUIRE(shown.event_error);
}

// --- the client ------------------------------------------------------------

namespace {

// The request in `bytes`, which the test knows to be a `Request`. On the
// test's thread only (Catch's assertions are not thread-safe).
template <class Request> Request request_in(std::string_view bytes) {
  auto r = control::decode_request(bytes);
  REQUIRE(r);
  REQUIRE(std::holds_alternative<Request>(*r));
  return std::get<Request>(*r);
}

control_client connect(const std::string& endpoint,
                       std::chrono::milliseconds timeout = 5s) {
  control_client_options opts;
  opts.timeout = timeout;
  auto c = control_client::connect(endpoint, opts);
  if (!c)
    FAIL("no client: " << message_of(c.error()));
  return std::move(*c);
}

} // namespace

TEST_CASE("control_client: a request and its reply", "[runtime][control]") {
  fake_endpoint node{[](std::string_view bytes) {
    auto reply = list_rep();
    reply.id = control::message_id(bytes);
    return std::vector<std::string>{control::encode(reply)};
  }};
  auto client = connect(node.endpoint());
  CHECK(client.endpoint() == node.endpoint());
  auto reply = client.call(list_req());
  REQUIRE(reply);
  auto expected = list_rep();
  expected.id = reply->id;
  CHECK(*reply == expected);
  // The request arrived as sent, numbered by the client.
  auto reqs = node.requests();
  REQUIRE(reqs.size() == 1);
  auto sent = request_in<control::dlq_list_request>(reqs[0]);
  CHECK(sent.id == reply->id);
  auto asked = list_req();
  asked.id = sent.id;
  CHECK(sent == asked);
  // A second call on the same client works too.
  REQUIRE(client.call(list_req()));
}

TEST_CASE("control_client: a late reply to an earlier request is skipped",
          "[runtime][control]") {
  fake_endpoint node{[](std::string_view bytes) {
    auto stale = purge_rep();
    stale.id = control::message_id(bytes) + 1000;
    stale.purged = {1, 2, 3};
    auto mine = purge_rep();
    mine.id = control::message_id(bytes);
    return std::vector<std::string>{control::encode(stale),
                                    control::encode(mine)};
  }};
  auto client = connect(node.endpoint());
  auto reply = client.call(purge_req());
  REQUIRE(reply);
  CHECK(reply->purged == std::vector<uint64_t>{7});
}

TEST_CASE("control_client: an error reply is an error with the node's "
          "message",
          "[runtime][control]") {
  fake_endpoint node{[](std::string_view bytes) {
    control::error_reply e;
    e.id = control::message_id(bytes);
    e.error = "no dead letter 42 on node 'email-node'";
    return std::vector<std::string>{control::encode(e)};
  }};
  auto client = connect(node.endpoint());
  auto m = show_req();
  m.dead_letter = 42;
  auto reply = client.call(m);
  REQUIRE_FALSE(reply);
  CHECK(is(reply.error(), errc::remote_error));
  CHECK(message_of(reply.error()) == "no dead letter 42 on node 'email-node'");
}

TEST_CASE("control_client: a malformed reply names the endpoint",
          "[runtime][control]") {
  fake_endpoint node{[](std::string_view bytes) {
    auto j = payload{{"id", control::message_id(bytes)}, {"more", "yes"}};
    return std::vector<std::string>{encode_payload(j)};
  }};
  auto client = connect(node.endpoint());
  auto reply = client.call(list_req());
  REQUIRE_FALSE(reply);
  CHECK(is(reply.error(), errc::decode_error));
  CHECK_THAT(message_of(reply.error()),
             Catch::Contains(node.endpoint())
               && Catch::Contains("dlq.list reply: field 'dead_letters'"));
}

TEST_CASE("control_client: no answer is a timeout within the deadline, "
          "naming the endpoint",
          "[runtime][control]") {
  SECTION("nothing listens") {
    auto endpoint = "tcp://127.0.0.1:" + std::to_string(test::free_port());
    auto client = connect(endpoint, 300ms);
    auto started = std::chrono::steady_clock::now();
    auto reply = client.call(show_req());
    auto took = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(reply);
    CHECK(is(reply.error(), errc::timeout));
    CHECK(message_of(reply.error())
          == "no answer from " + endpoint
               + " within 0.3s; is the node running, and is that its "
                 "control endpoint?");
    CHECK(took >= 300ms);
    CHECK(took < 3s);
  }
  SECTION("an endpoint that never answers") {
    fake_endpoint node{[](std::string_view) {
      return std::vector<std::string>{};
    }};
    auto client = connect(node.endpoint(), 200ms);
    auto started = std::chrono::steady_clock::now();
    auto reply = client.call(redrive_req());
    CHECK(std::chrono::steady_clock::now() - started < 3s);
    REQUIRE_FALSE(reply);
    CHECK(is(reply.error(), errc::timeout));
    CHECK_THAT(message_of(reply.error()), Catch::Contains(node.endpoint()));
  }
}

TEST_CASE("control_client refuses what it cannot do", "[runtime][control]") {
  SECTION("CURVE keys, not supported yet") {
    control_client_options opts;
    opts.curve.server_key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    auto c = control_client::connect("tcp://127.0.0.1:1", opts);
    REQUIRE_FALSE(c);
    CHECK(is(c.error(), errc::invalid_argument));
    CHECK_THAT(message_of(c.error()), Catch::Contains("CURVE"));
  }
  SECTION("a malformed endpoint") {
    auto c = control_client::connect("localhost:5701");
    REQUIRE_FALSE(c);
    CHECK(is(c.error(), errc::io_error));
    CHECK_THAT(message_of(c.error()), Catch::Contains("localhost:5701"));
  }
}

TEST_CASE("control_client reads a running node's replay replies",
          "[runtime][control]") {
  auto n = start(make_config("p", "UserService"));
  std::optional<publish_receipt> last;
  for (int i = 1; i <= 3; ++i)
    last = *n->bus().publish("user.account.created", created(i));
  REQUIRE_FALSE(last->wait());
  auto client = connect(n->control_endpoint());
  auto req = replay_req();
  req.stream = n->stream();
  req.from = 1;
  auto reply = client.call(req);
  REQUIRE(reply);
  CHECK(reply->stream == n->stream());
  CHECK(reply->head == 3);
  CHECK(reply->next > 3);
  CHECK(reply->type_heads.at("user.account.created") == 3);
  // Three envelopes, back to back.
  std::string_view bytes{reinterpret_cast<const char*>(reply->events.data()),
                         reply->events.size()};
  size_t offset = 0;
  int events = 0;
  while (offset < bytes.size()) {
    auto ev = decode_next(bytes, offset, nullptr);
    REQUIRE(ev);
    ++events;
  }
  CHECK(events == 3);
  SECTION("a stream it does not have is the node's error") {
    req.stream = "no-such-stream";
    auto refused = client.call(req);
    REQUIRE_FALSE(refused);
    CHECK_THAT(message_of(refused.error()), Catch::Contains("unknown stream"));
  }
}

// --- status ------------------------------------------------------------------

namespace {

control::status_reply status_rep() {
  control::status_reply m;
  m.id = 12;
  m.node = "email-node";
  m.service = "EmailService";
  m.stream = "0d6c6f0e-0000-4000-8000-000000000000";
  m.head = 4;
  m.first = 2;
  m.first_time = "2026-03-01T09:00:00.000000Z";
  m.health = {"the node is stopping"};
  control::status_consumer c;
  c.name = "EmailService";
  c.patterns = {"user.account.created", "user.>"};
  c.streams = {{"3f1c9a4e-0000-4000-8000-000000000000", 17, 20, 3, true, {}},
               {"5a2b0c1d-0000-4000-8000-000000000000", 9, 9, 0, false, {}}};
  c.dead_letters = 6;
  c.health = {"6 dead letters, at or above the alert threshold of 5"};
  m.consumers = {c, control::status_consumer{}};
  return m;
}

// A consumer group member of a group of two, holding partitions 3 and 17
// of one stream.
control::status_consumer grouped_consumer() {
  control::status_consumer c;
  c.name = "AuditService";
  c.patterns = {"user.>"};
  control::status_stream s{
    "3f1c9a4e-0000-4000-8000-000000000000", 35, 40, 5, false, {}};
  s.leases = {{3, (uint64_t{2} << 32) | 1, 35, 5},
              {17, (uint64_t{2} << 32) | 4, 40, 0}};
  c.streams = {s};
  c.members = {"audit-a", "audit-b"};
  c.partitions = 64;
  return c;
}

} // namespace

TEST_CASE("a status request and its reply read back as written",
          "[runtime][control][status]") {
  control::status_request req;
  req.id = 12;
  check_request_round_trip(req);
  CHECK(control::op_name(control::request{req}) == "status");
  check_reply_round_trip(status_rep());
  SECTION("a node that retains no event sends no first_time") {
    control::status_reply empty;
    empty.first = 1;
    check_reply_round_trip(empty);
    CHECK_FALSE(frame_of(control::encode(empty)).contains("first_time"));
    CHECK(empty.healthy());
    CHECK_FALSE(status_rep().healthy());
  }
  SECTION("a consumer group member's members, partitions and leases") {
    auto m = status_rep();
    m.consumers.push_back(grouped_consumer());
    check_reply_round_trip(m);
    auto j = frame_of(control::encode(m));
    CHECK(j["consumers"][2]["members"]
          == payload::array({"audit-a", "audit-b"}));
    CHECK(j["consumers"][2]["partitions"] == 64);
    CHECK(j["consumers"][2]["streams"][0]["leases"][1]
          == payload{{"partition", 17},
                     {"epoch", (uint64_t{2} << 32) | 4},
                     {"offset", 40},
                     {"lag", 0}});
  }
  SECTION("a member that holds no partition of a stream says so") {
    auto m = status_rep();
    auto c = grouped_consumer();
    c.streams[0].leases.clear();
    m.consumers = {c};
    check_reply_round_trip(m);
    auto j = frame_of(control::encode(m));
    CHECK(j["consumers"][0]["streams"][0]["leases"] == payload::array());
  }
  SECTION("a consumer outside groups sends none of the group fields, as "
          "before them") {
    auto j = frame_of(control::encode(status_rep()));
    for (auto& c : j["consumers"]) {
      CHECK_FALSE(c.contains("members"));
      CHECK_FALSE(c.contains("partitions"));
      for (auto& st : c["streams"])
        CHECK_FALSE(st.contains("leases"));
    }
  }
  SECTION("a missing field of a lease is named") {
    auto m = status_rep();
    m.consumers.push_back(grouped_consumer());
    auto j = frame_of(control::encode(m));
    j["consumers"][2]["streams"][0]["leases"][1].erase("epoch");
    auto r = control::decode_reply<control::status_reply>(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()),
               Catch::Contains("consumers[2].streams[0].leases[1].epoch")
                 && Catch::Contains("missing"));
  }
  SECTION("a wrong-typed group member is named") {
    auto m = status_rep();
    m.consumers.push_back(grouped_consumer());
    auto j = frame_of(control::encode(m));
    j["consumers"][2]["members"][1] = 7;
    auto r = control::decode_reply<control::status_reply>(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()), Catch::Contains("consumers[2].members[1]")
                                        && Catch::Contains("string"));
  }
  SECTION("a missing field inside a consumer's stream is named") {
    auto j = frame_of(control::encode(status_rep()));
    j["consumers"][0]["streams"][1].erase("lag");
    auto r = control::decode_reply<control::status_reply>(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()),
               Catch::Contains("status reply")
                 && Catch::Contains("consumers[0].streams[1].lag")
                 && Catch::Contains("missing"));
  }
  SECTION("a wrong-typed consumer field is named") {
    auto j = frame_of(control::encode(status_rep()));
    j["consumers"][1]["dead_letters"] = "six";
    auto r = control::decode_reply<control::status_reply>(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()),
               Catch::Contains("consumers[1].dead_letters")
                 && Catch::Contains("unsigned integer"));
  }
}

TEST_CASE("a running node's status: its head and oldest event, and a "
          "consumer's offset and lag once it handled every event",
          "[runtime][control][status]") {
  auto cfg = make_config("status", "UserService");
  cfg.consumers.push_back(make_consumer("EmailService", {"user.>"}));
  auto n = start(cfg);
  std::atomic<int> handled{0};
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created",
    [&](const event&) {
      ++handled;
    },
    "EmailService"));
  constexpr int events = 5;
  std::optional<publish_receipt> last;
  for (int i = 1; i <= events; ++i)
    last = *n->bus().publish("user.account.created", created(i));
  REQUIRE_FALSE(last->wait());
  auto client = connect(n->control_endpoint());
  // Settled: the offset is committed every 50 ms, the head comes with the
  // stream heartbeat every 200 ms.
  caf::expected<control::status_reply> s{control::status_reply{}};
  auto settled = [&] {
    s = client.call(control::status_request{});
    return s && s->consumers.size() == 1 && s->consumers[0].streams.size() == 1
           && s->consumers[0].streams[0].offset == events
           && s->consumers[0].streams[0].head == events
           && s->consumers[0].streams[0].lag == 0;
  };
  REQUIRE(test::wait_until(settled, 10s, 20ms));
  CHECK(handled == events);
  CHECK(s->node == "status");
  CHECK(s->service == "UserService");
  CHECK(s->stream == n->stream());
  CHECK(s->head == events);
  CHECK(s->first == 1);
  REQUIRE(s->first_time);
  CHECK_THAT(*s->first_time, Catch::EndsWith("Z"));
  CHECK(s->health.empty());
  auto& c = s->consumers[0];
  CHECK(c.name == "EmailService");
  CHECK(c.patterns
        == std::vector<std::string>{"user.>", "user.account.created"});
  CHECK(c.dead_letters == 0);
  CHECK(c.health.empty());
  auto& st = c.streams[0];
  CHECK(st.stream == n->stream());
  CHECK(st.head == events);
  CHECK_FALSE(st.paused);
  CHECK(s->healthy());
}

TEST_CASE("a node's consumer of its own stream is a consumer group of one "
          "and holds all its partitions, each up to the last event",
          "[runtime][control][status][groups]") {
  auto cfg = make_config("grouped", "UserService");
  cfg.consumers.push_back(make_consumer("EmailService", {"user.>"}));
  auto n = start(cfg);
  REQUIRE_FALSE(n->bus().subscribe(
    "user.account.created", [](const event&) {}, "EmailService"));
  constexpr int events = 20;
  std::optional<publish_receipt> last;
  for (int i = 1; i <= events; ++i)
    last = *n->bus().publish("user.account.created", created(i));
  REQUIRE_FALSE(last->wait());
  auto client = connect(n->control_endpoint());
  caf::expected<control::status_reply> s{control::status_reply{}};
  auto settled = [&] {
    s = client.call(control::status_request{});
    if (!s || s->consumers.size() != 1 || s->consumers[0].streams.size() != 1)
      return false;
    auto& st = s->consumers[0].streams[0];
    return st.leases.size() == 64 && st.head == events
           && std::all_of(st.leases.begin(), st.leases.end(),
                          [&](const control::status_lease& l) {
                            return l.offset == events && l.lag == 0;
                          });
  };
  REQUIRE(test::wait_until(settled, 15s, 50ms));
  auto& c = s->consumers[0];
  CHECK(c.members == std::vector<std::string>{"grouped"});
  CHECK(c.partitions == 64);
  auto& st = c.streams[0];
  CHECK(st.offset == events);
  for (uint32_t p = 0; p < 64; ++p) {
    CHECK(st.leases[p].partition == p);
    CHECK(st.leases[p].epoch != 0);
  }
}

TEST_CASE("the membership messages read back as they were written",
          "[runtime][control][membership]") {
  check_request_round_trip(sync_req());
  check_request_round_trip(ping_req());
  check_request_round_trip(probe_req());
  check_request_round_trip(members_req());
  check_reply_round_trip(sync_rep());
  check_reply_round_trip(ack_rep());
  check_reply_round_trip(probe_rep());
  check_reply_round_trip(members_rep());
  SECTION("the ops as logs name them") {
    CHECK(control::op_name(sync_req()) == "gossip.sync");
    CHECK(control::op_name(ping_req()) == "gossip.ping");
    CHECK(control::op_name(probe_req()) == "gossip.probe");
    CHECK(control::op_name(members_req()) == "members");
  }
  SECTION("a probe reply of a node that never heard the target") {
    auto m = probe_rep();
    m.heard_ms_ago.reset();
    check_reply_round_trip(m);
    CHECK_FALSE(frame_of(control::encode(m)).contains("heard_ms_ago"));
  }
  SECTION("an error reply refusing a sync") {
    auto e = error_rep();
    e.stream.clear();
    e.error = "refused gossip.sync from node 'x' of cluster 'dev'";
    auto r =
      control::decode_reply<control::gossip_sync_reply>(control::encode(e));
    REQUIRE(r);
    REQUIRE(std::holds_alternative<control::error_reply>(*r));
    CHECK(std::get<control::error_reply>(*r) == e);
  }
  SECTION("every status by its name") {
    using control::member_status;
    for (auto s :
         {member_status::joining, member_status::up, member_status::suspect,
          member_status::down, member_status::leaving}) {
      CHECK(control::parse_member_status(control::to_string(s)) == s);
      auto m = sync_rep();
      m.members[0].status = s;
      check_reply_round_trip(m);
    }
    CHECK_FALSE(control::parse_member_status("alive"));
    CHECK_FALSE(control::parse_member_status("UP"));
  }
}

TEST_CASE("the members view as herald members --json prints it",
          "[runtime][control][membership]") {
  auto j = control::to_json(members_rep());
  CHECK_FALSE(j.contains("v"));
  CHECK_FALSE(j.contains("id"));
  CHECK(j.at("cluster") == "prod");
  CHECK(j.at("self") == "email-1");
  REQUIRE(j.at("members").size() == 2);
  auto& first = j.at("members")[0];
  CHECK(first.at("name") == "email-1");
  CHECK(first.at("status") == "up");
  CHECK(first.at("incarnation") == 3);
  CHECK(first.at("last_heard_ms") == 0);
  CHECK(first.at("consumers")[0].at("patterns")[0] == "user.>");
  CHECK(j.at("members")[1].at("status") == "down");
  CHECK_FALSE(j.at("members")[1].contains("last_heard_ms"));
}

TEST_CASE("a malformed member record is refused, naming the field",
          "[runtime][control][membership]") {
  auto sync_error = [](const payload& j) {
    auto r = control::decode_request(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::decode_error));
    return message_of(r.error());
  };
  auto frame = frame_of(control::encode(sync_req()));
  SECTION("an unknown status") {
    auto j = frame;
    j["members"][1]["status"] = "alive";
    CHECK_THAT(sync_error(j),
               Catch::Contains("gossip.sync request: field "
                               "'members[1].status': unknown status 'alive'")
                 && Catch::Contains("joining, up, suspect, down or leaving"));
  }
  SECTION("a wrong type inside the sender's record") {
    auto j = frame;
    j["from"]["incarnation"] = -1;
    CHECK_THAT(sync_error(j),
               Catch::Contains("field 'from.incarnation': expected an "
                               "unsigned integer"));
  }
  SECTION("a field missing inside a consumer") {
    auto j = frame;
    j["members"][0]["consumers"][0].erase("patterns");
    CHECK_THAT(sync_error(j),
               Catch::Contains("field 'members[0].consumers[0].patterns' is "
                               "missing"));
  }
  SECTION("each field of a record, missing or of a wrong type") {
    for (auto& [k, value] : frame["from"].items()) {
      INFO("field " << k);
      auto missing = frame;
      missing["from"].erase(k);
      CHECK_THAT(sync_error(missing), Catch::Contains("'from." + k + "'"));
      auto wrong = frame;
      wrong["from"][k] = value.is_string() ? payload(1.5) : payload("x");
      CHECK_THAT(sync_error(wrong), Catch::Contains("'from." + k + "'"));
    }
  }
  SECTION("a record that is no map") {
    auto j = frame;
    j["members"][0] = "email-1";
    CHECK_THAT(sync_error(j), Catch::Contains("field 'members[0]': expected "
                                              "a map, got string"));
  }
  SECTION("a status inside an ack, a members reply") {
    auto j = frame_of(control::encode(ack_rep()));
    j["updates"][0]["status"] = 3;
    auto r = control::decode_reply<control::gossip_ack>(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(message_of(r.error()),
               Catch::Contains("field 'updates[0].status': expected a string"));
    auto m = frame_of(control::encode(members_rep()));
    m["members"][1]["last_heard_ms"] = "long ago";
    auto rm = control::decode_reply<control::members_reply>(bytes_of(m));
    REQUIRE_FALSE(rm);
    CHECK_THAT(message_of(rm.error()),
               Catch::Contains("field 'members[1].last_heard_ms'"));
  }
}

TEST_CASE("gossip lists longer than the protocol's bounds are refused",
          "[runtime][control][membership]") {
  auto frame = frame_of(control::encode(sync_req()));
  auto too_many = control::max_gossip_members + 1;
  SECTION("members per message") {
    auto j = frame;
    auto one = j["members"][0];
    j["members"] = payload::array();
    for (size_t i = 0; i < too_many; ++i)
      j["members"].push_back(one);
    auto r = control::decode_request(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK_THAT(
      message_of(r.error()),
      Catch::Contains(fmt::format("field 'members': {} entries; "
                                  "expected at most {}",
                                  too_many, control::max_gossip_members)));
    // At the bound, it is read.
    j["members"].erase(0);
    CHECK(control::decode_request(bytes_of(j)));
  }
  SECTION("produced types, consumers and patterns per member") {
    std::vector<std::string> many(control::max_member_list + 1, "a.b.c");
    auto j = frame;
    j["from"]["produces"] = many;
    CHECK_THAT(message_of(control::decode_request(bytes_of(j)).error()),
               Catch::Contains("field 'from.produces': 1025 entries"));
    j = frame;
    j["members"][1]["consumers"][0]["patterns"] = many;
    CHECK_THAT(message_of(control::decode_request(bytes_of(j)).error()),
               Catch::Contains("field 'members[1].consumers[0].patterns': "
                               "1025 entries"));
    j = frame;
    auto consumer = j["from"]["consumers"][0];
    j["from"]["consumers"] = payload::array();
    for (size_t i = 0; i < control::max_member_list + 1; ++i)
      j["from"]["consumers"].push_back(consumer);
    CHECK_THAT(message_of(control::decode_request(bytes_of(j)).error()),
               Catch::Contains("field 'from.consumers': 1025 entries"));
  }
  SECTION("updates of a ping") {
    auto j = frame_of(control::encode(ping_req()));
    auto one = j["updates"][0];
    j["updates"] = payload::array();
    for (size_t i = 0; i < too_many; ++i)
      j["updates"].push_back(one);
    CHECK_THAT(message_of(control::decode_request(bytes_of(j)).error()),
               Catch::Contains("field 'updates': 1025 entries"));
  }
}

TEST_CASE("the consumer group messages read back as they were written",
          "[runtime][control][groups]") {
  check_request_round_trip(glease_req());
  check_reply_round_trip(glease_rep());
  CHECK(control::op_name(control::request{glease_req()}) == "group.lease");
  SECTION("defaults are not sent, and read back") {
    auto m = glease_req();
    m.body.initial = 0;
    m.body.entries = {{0, lease_op::acquire, 0, 0}};
    auto j = frame_of(control::encode(m));
    CHECK_FALSE(j.contains("initial"));
    CHECK(j["entries"][0] == payload{{"p", 0}, {"op", "acquire"}});
    check_request_round_trip(m);
    auto r = glease_rep();
    r.body.entries = {{0, lease_result::released, 9, 10, "", false, "", {}}};
    r.body.orphans.clear();
    auto rj = frame_of(control::encode(r));
    CHECK(rj["entries"][0]
          == payload{
            {"p", 0}, {"result", "released"}, {"epoch", 9}, {"offset", 10}});
    check_reply_round_trip(r);
  }
  SECTION("an owner's refusal is an error reply") {
    control::error_reply e;
    e.id = control::group_id_bit | 7;
    e.error = "unknown stream 'x'";
    auto r =
      control::decode_reply<control::group_lease_reply>(control::encode(e));
    REQUIRE(r);
    REQUIRE(std::holds_alternative<control::error_reply>(*r));
    CHECK(std::get<control::error_reply>(*r) == e);
  }
}

TEST_CASE("a malformed group.lease is refused, naming the field",
          "[runtime][control][groups]") {
  auto request_error = [](const payload& j) {
    auto r = control::decode_request(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::decode_error));
    return message_of(r.error());
  };
  auto reply_error = [](const payload& j) {
    auto r = control::decode_reply<control::group_lease_reply>(bytes_of(j));
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::decode_error));
    return message_of(r.error());
  };
  auto req = frame_of(control::encode(glease_req()));
  auto rep = frame_of(control::encode(glease_rep()));
  SECTION("an unknown op or result") {
    auto j = req;
    j["entries"][3]["op"] = "steal";
    CHECK_THAT(request_error(j),
               Catch::Contains("group.lease request: field 'entries[3].op': "
                               "unknown op 'steal'")
                 && Catch::Contains("acquire, standby, renew or release"));
    auto r = rep;
    r["entries"][1]["result"] = "maybe";
    CHECK_THAT(reply_error(r),
               Catch::Contains("field 'entries[1].result': unknown result "
                               "'maybe'")
                 && Catch::Contains("granted, renewed, released, refused or "
                                    "stale"));
  }
  SECTION("each field of an entry, missing or of a wrong type") {
    for (auto& [k, value] : req["entries"][2].items()) {
      INFO("request entry field " << k);
      auto wrong = req;
      wrong["entries"][2][k] = value.is_string() ? payload(1.5) : payload("x");
      CHECK_THAT(request_error(wrong), Catch::Contains("'entries[2]." + k));
      auto missing = req;
      missing["entries"][2].erase(k);
      bool optional = k == "epoch" || k == "offset";
      if (optional)
        CHECK(control::decode_request(bytes_of(missing)));
      else
        CHECK_THAT(request_error(missing),
                   Catch::Contains("'entries[2]." + k + "' is missing"));
    }
    for (auto& [k, value] : rep["entries"][1].items()) {
      INFO("reply entry field " << k);
      auto wrong = rep;
      wrong["entries"][1][k] = value.is_string() ? payload(1.5) : payload("x");
      CHECK_THAT(reply_error(wrong), Catch::Contains("'entries[1]." + k));
      auto missing = rep;
      missing["entries"][1].erase(k);
      bool optional = k == "holder" || k == "wanted" || k == "reason";
      if (optional)
        CHECK(
          control::decode_reply<control::group_lease_reply>(bytes_of(missing)));
      else
        CHECK_THAT(reply_error(missing),
                   Catch::Contains("'entries[1]." + k + "' is missing"));
    }
  }
  SECTION("an entry that is no map, an epoch that is negative") {
    auto j = req;
    j["entries"][0] = 3;
    CHECK_THAT(request_error(j),
               Catch::Contains("field 'entries[0]': expected a map"));
    j = req;
    j["entries"][2]["epoch"] = -1;
    CHECK_THAT(request_error(j),
               Catch::Contains("field 'entries[2].epoch': expected an "
                               "unsigned integer"));
  }
  SECTION("partitions outside 1 to max_partitions") {
    for (uint64_t n : {uint64_t{0}, uint64_t{max_partitions} + 1}) {
      auto j = req;
      j["partitions"] = n;
      CHECK_THAT(request_error(j),
                 Catch::Contains(fmt::format("field 'partitions': {}; "
                                             "expected 1 to {}",
                                             n, max_partitions)));
    }
    auto j = req;
    j["partitions"] = max_partitions;
    CHECK(control::decode_request(bytes_of(j)));
  }
  SECTION("more entries or orphans than max_partitions") {
    auto j = req;
    auto one = j["entries"][0];
    j["entries"] = payload::array();
    for (uint32_t i = 0; i < max_partitions; ++i)
      j["entries"].push_back(one);
    CHECK(control::decode_request(bytes_of(j)));
    j["entries"].push_back(one);
    CHECK_THAT(request_error(j), Catch::Contains(fmt::format(
                                   "field 'entries': {} entries; "
                                   "expected at most {}",
                                   max_partitions + 1, max_partitions)));
    auto r = rep;
    r["orphans"] = std::vector<uint32_t>(max_partitions + 1, 1);
    CHECK_THAT(reply_error(r),
               Catch::Contains(fmt::format("field 'orphans': {} entries",
                                           max_partitions + 1)));
    r = rep;
    auto e = r["entries"][0];
    r["entries"] = payload::array();
    for (uint32_t i = 0; i <= max_partitions; ++i)
      r["entries"].push_back(e);
    CHECK_THAT(reply_error(r), Catch::Contains("field 'entries': 4097"));
  }
}

TEST_CASE("group.describe and group.reset read back as they were written",
          "[runtime][control][groups][group_admin]") {
  control::group_describe_request d;
  d.id = 3;
  d.group = "EmailService";
  d.patterns = {"user.>", "order.created"};
  check_request_round_trip(d);
  CHECK(control::op_name(control::request{d}) == "group.describe");
  control::group_describe_reply dr;
  dr.id = 3;
  dr.stream = "s-1";
  dr.group = "EmailService";
  dr.known = true;
  dr.partitions = 2;
  dr.head = 40;
  dr.first = 3;
  dr.leases = {{0, "email-a", (uint64_t{2} << 32) | 5, 2500, 30, 10, true},
               {1, "", 7, 0, 12, 100000, false}};
  dr.dead_letters = 4;
  dr.entities = 2;
  check_reply_round_trip(dr);
  // A free partition sends no holder.
  CHECK_FALSE(frame_of(control::encode(dr))["leases"][1].contains("holder"));

  control::group_reset_request r;
  r.id = 4;
  r.group = "EmailService";
  r.to = control::reset_to::time;
  r.at = 1714564800000000;
  r.dry_run = true;
  check_request_round_trip(r);
  CHECK(frame_of(control::encode(r))["to"] == "time");
  r.to = control::reset_to::earliest;
  r.at = 0;
  CHECK_FALSE(frame_of(control::encode(r)).contains("at"));
  check_request_round_trip(r);
  control::group_reset_reply rr;
  rr.id = 4;
  rr.stream = "s-1";
  rr.group = "EmailService";
  rr.known = true;
  rr.offsets = {{0, 30, 0}, {1, 12, 0}};
  rr.dry_run = true;
  check_reply_round_trip(rr);
}

TEST_CASE("a malformed group.reset is refused, naming the field",
          "[runtime][control][groups][group_admin]") {
  control::group_reset_request r;
  r.group = "G";
  r.to = control::reset_to::seq;
  r.at = 9;
  auto j = frame_of(control::encode(r));
  SECTION("an unknown target") {
    j["to"] = "latest";
    auto got = control::decode_request(bytes_of(j));
    REQUIRE_FALSE(got);
    CHECK_THAT(message_of(got.error()),
               Catch::Contains("field 'to': unknown target 'latest'")
                 && Catch::Contains("earliest, time or seq"));
  }
  SECTION("a seq or time without 'at'") {
    j.erase("at");
    auto got = control::decode_request(bytes_of(j));
    REQUIRE_FALSE(got);
    CHECK_THAT(message_of(got.error()),
               Catch::Contains("field 'at' is missing"));
  }
  SECTION("no group") {
    j.erase("group");
    auto got = control::decode_request(bytes_of(j));
    REQUIRE_FALSE(got);
    CHECK_THAT(message_of(got.error()),
               Catch::Contains("field 'group' is missing"));
  }
}
