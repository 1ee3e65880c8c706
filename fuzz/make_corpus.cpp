// Writes the binary seed corpus of the fuzz targets (docs/fuzzing.md):
// small valid inputs made by the project's own encoders, one file each, in
// DIR/envelope, DIR/heartbeat and DIR/control (the first byte of a control
// seed picks its decoder, control_kinds.hpp). The YAML seeds are the files
// of config/, copied as they are.
//
//   herald_fuzz_corpus DIR

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "control_kinds.hpp"
#include "herald/core/codec.hpp"

namespace {

using namespace herald;
namespace fs = std::filesystem;
namespace ctl = herald::control;

fs::path root;

void write(const std::string& target, const std::string& name,
           const std::string& bytes) {
  auto dir = root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out)
    throw std::runtime_error("cannot write " + (dir / name).string());
}

std::string envelope(std::string_view type, uint64_t seq, const payload& data,
                     std::string_view traceparent = {}) {
  envelope_header h;
  h.event_type = type;
  h.timestamp_us = 1'700'000'000'000'000;
  h.id = "0190a3b2-7c4d-7e5f-8a6b-1c2d3e4f5a6b";
  h.source = "UserService";
  h.key = "u-1";
  h.stream = "user-node";
  h.seq = seq;
  h.type_seq = seq;
  h.traceparent = traceparent;
  std::string out;
  encode(h, data, out);
  return out;
}

void envelopes() {
  auto created = payload{{"user_id", "9b2f1c1e-1111-4a4a-8b8b-000000000001"},
                         {"email", "a@example.com"},
                         {"registration_source", "web"}};
  write("envelope", "created", envelope("user.account.created", 1, created));
  write("envelope", "traced",
        envelope("user.account.deleted", 2,
                 {{"user_id", "9b2f1c1e-1111-4a4a-8b8b-000000000001"},
                  {"deletion_reason", "admin"}},
                 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  // Every JSON kind in a payload: nesting, arrays, numbers, bool, null.
  write("envelope", "kinds",
        envelope("billing.invoice.paid", 3,
                 {{"amount", 12.5},
                  {"count", -3},
                  {"big", uint64_t{1} << 63},
                  {"ok", true},
                  {"none", nullptr},
                  {"lines", {1, "two", {{"three", 3}}}},
                  {"bin", payload::binary({0, 1, 2})}}));
  // A batch: envelopes back to back, as the transport sends them.
  write("envelope", "batch",
        envelope("user.account.created", 4, created)
          + envelope("user.account.created", 5, created));
}

void heartbeats() {
  ctl::heartbeat hb;
  hb.stream = "user-node";
  hb.head = 42;
  hb.control = "tcp://127.0.0.1:5601";
  hb.types = {{"user.account.created", 40}, {"user.account.deleted", 2}};
  hb.max_message_size = 1 << 20;
  hb.pub = "tcp://127.0.0.1:5600";
  write("heartbeat", "full", ctl::encode(hb));
  write("heartbeat", "minimal",
        ctl::encode(ctl::heartbeat{.stream = "s", .control = "tcp://h:1"}));
}

ctl::cluster_member member() {
  ctl::cluster_member m;
  m.name = "user-node";
  m.stream = "user-node";
  m.incarnation = 3;
  m.status = ctl::member_status::up;
  m.service = "UserService";
  m.pub = "tcp://127.0.0.1:5600";
  m.control = "tcp://127.0.0.1:5601";
  m.metrics = "http://127.0.0.1:9100";
  m.produces = {"user.account.created"};
  m.consumers = {{"EmailService", {"user.>"}}};
  return m;
}

store::dead_letter letter() {
  store::dead_letter l;
  l.id = 7;
  l.consumer = "EmailService";
  l.node = "email-node";
  l.event_type = "user.account.created";
  l.event_id = "0190a3b2-7c4d-7e5f-8a6b-1c2d3e4f5a6b";
  l.key = "u-1";
  l.stream = "user-node";
  l.seq = 9;
  l.reason = "handler failed 5 times";
  l.created_us = 1'700'000'000'000'000;
  l.envelope = envelope("user.account.created", 9, {{"user_id", "u-1"}});
  l.attempts = {{1'700'000'000'000'000, "smtp down", "exception", "email-node"}};
  l.redrives = {{1'700'000'100'000'000, "ops"}};
  return l;
}

void request(const std::string& name, const ctl::request& r) {
  write("control", "request-" + name,
        std::string(1, static_cast<char>(fuzz::request_kind))
          + ctl::encode(r));
}

template <class Reply> void reply(const std::string& name, const Reply& m) {
  constexpr auto kind = [] {
    unsigned char k = fuzz::first_reply;
    bool found = false;
    [&]<size_t... I>(std::index_sequence<I...>) {
      ((found = found
                || (std::is_same_v<Reply, std::tuple_element_t<I, fuzz::replies>>
                    && (k += I, true))),
       ...);
    }(std::make_index_sequence<std::tuple_size_v<fuzz::replies>>{});
    return k;
  }();
  write("control", "reply-" + name,
        std::string(1, static_cast<char>(kind)) + ctl::encode(m));
  // Every reply may come as the node's refusal instead.
  ctl::error_reply e;
  e.id = m.id;
  e.error = "no such stream";
  write("control", "error-" + name,
        std::string(1, static_cast<char>(kind)) + ctl::encode(e));
}

void controls() {
  request("replay", ctl::replay_request{.id = 1,
                                        .stream = "user-node",
                                        .from = 1,
                                        .max = 100,
                                        .patterns = {"user.>"},
                                        .since = 1'700'000'000'000'000});
  ctl::dlq_filter filter{"EmailService", "user.account.created", "u-1"};
  request("dlq-list", ctl::dlq_list_request{.id = 2, .filter = filter,
                                            .after = 3, .limit = 10});
  request("dlq-show", ctl::dlq_show_request{.id = 3, .dead_letter = 7});
  request("dlq-redrive", ctl::dlq_redrive_request{
                           .id = 4, .filter = filter, .dry_run = true,
                           .by = "ops"});
  request("dlq-purge", ctl::dlq_purge_request{.id = 5, .dead_letter = 7});
  request("publish",
          ctl::publish_request{.id = 6,
                               .request_id = "r-1",
                               .events = {{"user.account.created",
                                           {{"user_id", "u-1"},
                                            {"n", 1.5}}}}});
  request("status", ctl::status_request{.id = 7});
  request("hello", ctl::hello_request{.id = 8, .stream = "user-node",
                                      .max_message_size = 1 << 20});
  request("test-hooks",
          ctl::test_hooks_request{
            .id = 9, .fail_keys = {"bad"}, .slow_keys = {{"slow", 5}}});
  auto m = member();
  request("gossip-sync", ctl::gossip_sync_request{.id = ctl::gossip_id_bit | 1,
                                                  .cluster = "demo",
                                                  .from = m,
                                                  .members = {m}});
  request("gossip-ping", ctl::gossip_ping{.id = ctl::gossip_id_bit | 2,
                                          .cluster = "demo",
                                          .from = "a",
                                          .incarnation = 2,
                                          .target = "b",
                                          .updates = {m}});
  request("gossip-probe", ctl::gossip_probe{.id = ctl::gossip_id_bit | 3,
                                            .cluster = "demo",
                                            .from = "a",
                                            .target = "b"});
  request("members", ctl::members_request{.id = 10});
  lease_request lease;
  lease.stream = "user-node";
  lease.group = "EmailService";
  lease.member = "email-node";
  lease.partitions = 4;
  lease.initial = 1;
  lease.entries = {{0, lease_op::acquire, 0, 0}, {1, lease_op::renew, 2, 9}};
  lease.letters = {{1, 2, letter()}};
  lease.redriven = {{1, 2, 7}};
  request("group-lease",
          ctl::group_lease_request{.id = ctl::group_id_bit | 1, .body = lease});
  request("group-describe",
          ctl::group_describe_request{.id = ctl::group_id_bit | 2,
                                      .group = "EmailService",
                                      .patterns = {"user.>"}});
  request("group-reset", ctl::group_reset_request{.id = ctl::group_id_bit | 3,
                                                  .group = "EmailService",
                                                  .to = ctl::reset_to::seq,
                                                  .at = 5,
                                                  .dry_run = true});

  ctl::replay_reply replay;
  replay.id = 1;
  replay.stream = "user-node";
  replay.head = 9;
  replay.first = 1;
  replay.next = 10;
  replay.type_heads = {{"user.account.created", 9}};
  auto ev = envelope("user.account.created", 9, {{"user_id", "u-1"}});
  replay.events.assign(ev.begin(), ev.end());
  replay.start = 9;
  reply("replay", replay);
  auto record = ctl::to_record(letter(), true);
  reply("dlq-list", ctl::dlq_list_reply{.id = 2, .dead_letters = {record},
                                        .more = true});
  reply("dlq-show", ctl::dlq_show_reply{.id = 3, .dead_letter = record});
  reply("dlq-redrive", ctl::dlq_redrive_reply{.id = 4, .redriven = {7, 8},
                                              .dry_run = true});
  reply("dlq-purge", ctl::dlq_purge_reply{.id = 5, .purged = {7}});
  reply("publish", ctl::publish_reply{.id = 6,
                                      .request_id = "r-1",
                                      .acks = {{"e-1", "user-node", 10}},
                                      .refused = 1,
                                      .reason = "unknown type"});
  ctl::status_reply status;
  status.id = 7;
  status.node = "email-node";
  status.service = "EmailService";
  status.stream = "email-node";
  status.head = 3;
  status.first = 1;
  status.first_time = "2023-11-14T22:13:20.000000Z";
  status.health = {"degraded"};
  ctl::status_consumer consumer;
  consumer.name = "EmailService";
  consumer.patterns = {"user.>"};
  consumer.streams = {{"user-node", 5, 9, 4, false, {{0, 1, 5, 4}}}};
  consumer.members = {"email-node"};
  consumer.partitions = 4;
  status.consumers = {consumer};
  reply("status", status);
  reply("hello", ctl::hello_reply{.id = 8, .stream = "user-node",
                                  .max_message_size = 1 << 20});
  reply("test-hooks",
        ctl::test_hooks_reply{
          .id = 9, .fail_keys = {"bad"}, .slow_keys = {{"slow", 5}}});
  reply("gossip-sync", ctl::gossip_sync_reply{.id = ctl::gossip_id_bit | 1,
                                              .cluster = "demo",
                                              .members = {m}});
  reply("gossip-ack", ctl::gossip_ack{.id = ctl::gossip_id_bit | 2,
                                      .cluster = "demo",
                                      .from = "b",
                                      .incarnation = 1,
                                      .updates = {m}});
  reply("gossip-probe", ctl::gossip_probe_reply{.id = ctl::gossip_id_bit | 3,
                                                .target = "b",
                                                .heard_ms_ago = 250});
  reply("members", ctl::members_reply{.id = 10,
                                      .cluster = "demo",
                                      .self = "a",
                                      .members = {{m, 12}}});
  lease_reply lr;
  lr.stream = "user-node";
  lr.group = "EmailService";
  lr.ttl_ms = 5000;
  lr.entries = {{0, lease_result::granted, 1, 0, "", false, "", {}},
                {1, lease_result::refused, 2, 9, "other", true, "held",
                 {{"u-1", 7}}}};
  lr.letters = {{letter_result::stored, 7, ""}};
  lr.redrive = {{1, 2, letter()}};
  lr.redrive_more = {"u-2"};
  lr.unparked = {{"u-1", 7}};
  lr.dead_letters = 1;
  lr.orphans = {3};
  reply("group-lease",
        ctl::group_lease_reply{.id = ctl::group_id_bit | 1, .body = lr});
  reply("group-describe",
        ctl::group_describe_reply{.id = ctl::group_id_bit | 2,
                                  .stream = "user-node",
                                  .group = "EmailService",
                                  .known = true,
                                  .partitions = 2,
                                  .head = 9,
                                  .first = 1,
                                  .leases = {{0, "email-node", 1, 3000, 5, 4,
                                              true},
                                             {1, "", 0, 0, 0, 9, false}},
                                  .dead_letters = 1,
                                  .entities = 1});
  reply("group-reset",
        ctl::group_reset_reply{.id = ctl::group_id_bit | 3,
                               .stream = "user-node",
                               .group = "EmailService",
                               .known = true,
                               .offsets = {{0, 5, 0}},
                               .dry_run = true});
  write("control", "id",
        std::string(1, static_cast<char>(fuzz::id_kind))
          + ctl::encode(ctl::status_request{.id = 11}));
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  root = argv[1];
  try {
    envelopes();
    heartbeats();
    controls();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
