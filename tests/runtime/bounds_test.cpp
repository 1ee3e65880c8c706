// Everything a peer or a control client makes a node keep is bounded
// (issue 17, cases d, e, f): DEALERs to control endpoints, live events held
// while a stream catches up, and replies queued for a client that does
// not read.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <variant>

#include <fmt/format.h>
#include <httplib.h>
#include <zmq.hpp>

#include "deadline.hpp"
#include "health.hpp"
#include "herald/core/codec.hpp"
#include "herald/runtime/control.hpp"
#include "herald/runtime/node.hpp"
#include "hostile_peer.hpp"
#include "node_support.hpp"

using namespace herald;
using namespace std::chrono_literals;
using herald::test::sample_of;
using herald::test::wait_until;

namespace {

double sample(node& n, const std::string& series) {
  return sample_of(metrics_of(n), series);
}

} // namespace

TEST_CASE("heartbeats naming ever new streams and control endpoints leave "
          "the node's control sockets bounded, and a new producer is still "
          "caught up",
          "[runtime][node][bounds]") {
  // (d): before, each stream's control endpoint got a DEALER (and its
  // monitor) never closed, until libzmq's 1,023 sockets were used up; no
  // new stream could be asked for a replay or a lease afterwards.
  test::hostile_peer hostile;
  // The producer comes after the flood, on a port known now.
  std::string producer_pub;
  {
    zmq::context_t probe_ctx{1};
    zmq::socket_t probe{probe_ctx, zmq::socket_type::pub};
    probe.set(zmq::sockopt::linger, 0);
    probe.bind("tcp://127.0.0.1:*");
    producer_pub = probe.get(zmq::sockopt::last_endpoint);
  }
  auto cfg_b = make_config("b", "EmailService");
  cfg_b.metrics_listen = "127.0.0.1:0";
  cfg_b.transport.max_control_sockets = 16;
  cfg_b.peers.push_back(hostile.endpoint());
  cfg_b.peers.push_back(producer_pub);
  auto b = start(cfg_b);
  std::atomic<int> got{0};
  REQUIRE_FALSE(b->bus().subscribe("user.account.created", [&](const event&) {
    ++got;
  }));
  REQUIRE(hostile.wait_for("user."));
  constexpr int streams = 1100;
  for (int i = 0; i < streams; ++i) {
    control::heartbeat hb;
    hb.stream = fmt::format("hostile-stream-{}", i);
    hb.head = 5;
    hb.types["user.account.created"] = 5;
    // Ports nobody listens on: each DEALER keeps trying.
    hb.control = fmt::format("tcp://127.0.0.1:{}", 1 + i % 1000);
    hostile.send("_hb", control::encode(hb));
    if (i % 50 == 0)
      std::this_thread::sleep_for(10ms);
  }
  // Every heartbeat was read: the last stream is the one tracked.
  std::this_thread::sleep_for(1s);
  auto dealers = [&] {
    return sample(*b, R"(herald_transport_sockets{kind="dealer"})");
  };
  CHECK(dealers() <= 16);
  CHECK(dealers() >= 0);

  // A real producer, new to the consumer, whose events were published
  // before anything reached the consumer: they come by replay.
  auto cfg_a = make_config("a", "UserService");
  cfg_a.bind = producer_pub;
  auto a = start(cfg_a);
  for (int i = 1; i <= 5; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  CHECK(wait_until(
    [&] {
      return got.load() >= 5;
    },
    20s));
  CHECK(dealers() <= 16);
}

TEST_CASE("live events held while a stream catches up are bounded in bytes "
          "per stream",
          "[runtime][node][bounds]") {
  // (e): before, only the count was bounded (8,192 per stream), so 300
  // events of 1 MB held while the stream's control endpoint was unknown
  // took 300 MB.
  test::hostile_peer peer;
  auto cfg = make_config("b", "EmailService");
  cfg.metrics_listen = "127.0.0.1:0";
  constexpr size_t per_stream = size_t{4} << 20;
  cfg.transport.max_held_bytes_per_stream = per_stream;
  cfg.transport.max_held_bytes = size_t{6} << 20;
  cfg.peers.push_back(peer.endpoint());
  auto b = start(cfg);
  REQUIRE_FALSE(
    b->bus().subscribe("user.account.created", [](const event&) {}));
  REQUIRE(peer.wait_for("user."));
  // Seq 1, then seq 3: a gap, and a catch-up that cannot ask anybody (no
  // heartbeat named the stream's control endpoint): what follows is held.
  std::string big(200 * 1024, 'x');
  constexpr int events = 60; // 12 MB in all
  auto send = [&](uint64_t seq, const std::string& source) {
    auto id = fmt::format("01890000-0000-7000-8000-{:012x}", seq);
    auto key = user_id(static_cast<int>(seq));
    envelope_header hdr;
    hdr.event_type = "user.account.created";
    hdr.timestamp_us = 1'700'000'000'000'000;
    hdr.id = id;
    hdr.source = "UserService";
    hdr.key = key;
    hdr.stream = "unknown-owner-stream";
    hdr.seq = seq;
    hdr.type_seq = seq;
    std::string envelope;
    encode(hdr,
           payload{{"user_id", key},
                   {"email", "a@example.com"},
                   {"registration_source", source}},
           envelope);
    peer.send("user.account.created", envelope);
  };
  send(1, "web");
  for (uint64_t seq = 3; seq < 3 + events; ++seq) {
    send(seq, big);
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(wait_until(
    [&] {
      return sample(*b, "herald_events_received_total") >= events + 1;
    },
    20s, 50ms));
  std::this_thread::sleep_for(300ms); // the consumer actor took them
  auto text = metrics_of(*b);
  CHECK(sample_of(text, "herald_held_bytes") > 0);
  CHECK(sample_of(text, "herald_held_bytes")
        <= static_cast<double>(per_stream));
  CHECK(sample_of(text, "herald_held_dropped_total") > 0);
}

TEST_CASE("a control client that asks for replays and never reads gets a "
          "bounded backlog, refusals naming the limit, and its memory back "
          "when it leaves",
          "[runtime][node][bounds]") {
  // (f): before, 1,000 replay requests of 4,096 events from one client
  // that never read took the producer from 27 to 538 MB, and 483 MB stayed
  // after the client left.
  auto cfg = make_config("a", "UserService");
  cfg.metrics_listen = "127.0.0.1:0";
  cfg.transport.control_send_hwm = 4;
  constexpr size_t backlog = size_t{2} << 20;
  cfg.transport.control_backlog_bytes = backlog;
  auto a = start(cfg);
  // About 300 bytes each: a replay of 4,096 is a 512 KiB reply.
  for (int i = 1; i <= 3000; ++i)
    REQUIRE(a->bus().publish("user.account.created", created(i)));
  constexpr int requests = 1000;
  zmq::context_t ctx{1};
  auto replay_from_1 = [&](uint64_t id) {
    control::replay_request r;
    r.id = id;
    r.stream = a->stream();
    r.from = 1;
    r.max = control::max_replay_events;
    r.patterns = {"user.>"};
    return control::encode(r);
  };
  {
    // The events are in the log (publishing is asynchronous): a replay
    // reply is large.
    zmq::socket_t probe{ctx, zmq::socket_type::dealer};
    probe.set(zmq::sockopt::linger, 0);
    probe.set(zmq::sockopt::rcvtimeo, 2000);
    probe.connect(a->control_endpoint());
    REQUIRE(wait_until(
      [&] {
        probe.send(zmq::buffer(replay_from_1(0)), zmq::send_flags::none);
        zmq::message_t reply;
        return probe.recv(reply, zmq::recv_flags::none)
               && reply.size() > 400 * 1024;
      },
      20s, 50ms));
  }
  auto flood = [&](zmq::socket_t& client) {
    client.set(zmq::sockopt::linger, 0);
    client.set(zmq::sockopt::sndhwm, 0);
    client.set(zmq::sockopt::rcvhwm, 1);
    client.set(zmq::sockopt::rcvbuf, 64 * 1024);
    client.connect(a->control_endpoint());
    for (int i = 1; i <= requests; ++i)
      client.send(zmq::buffer(replay_from_1(static_cast<uint64_t>(i))),
                  zmq::send_flags::none);
  };
  double refused_before = 0;
  SECTION("the client that leaves") {
    zmq::socket_t client{ctx, zmq::socket_type::dealer};
    flood(client);
    double peak = 0;
    std::string last;
    auto refused = wait_until(
      [&] {
        auto text = metrics_of(*a);
        last = text;
        peak = std::max(peak, sample_of(text, "herald_control_backlog_bytes"));
        return sample_of(text, "herald_replays_refused_total")
               >= requests - 100;
      },
      30s, 20ms);
    INFO(last);
    REQUIRE(refused);
    CHECK(peak <= static_cast<double>(backlog));
    CHECK(sample(*a, "herald_control_backlog_bytes") > 0);
    client.close();
    CHECK(wait_until(
      [&] {
        return sample(*a, "herald_control_backlog_bytes") == 0;
      },
      10s, 20ms));
    CHECK(sample(*a, "herald_control_replies_dropped_total") > 0);
  }
  SECTION("the client that reads at last") {
    zmq::socket_t client{ctx, zmq::socket_type::dealer};
    refused_before = sample(*a, "herald_replays_refused_total");
    flood(client);
    REQUIRE(wait_until(
      [&] {
        return sample(*a, "herald_replays_refused_total")
               >= refused_before + requests - 100;
      },
      30s, 20ms));
    decode_limits limits;
    int replies = 0;
    int refusals = 0;
    std::string refusal;
    client.set(zmq::sockopt::rcvtimeo, 2000);
    zmq::message_t msg;
    while (client.recv(msg, zmq::recv_flags::none)) {
      auto answer = control::decode_reply<control::replay_reply>(
        msg.to_string_view(), limits);
      REQUIRE(answer);
      if (auto* e = std::get_if<control::error_reply>(&*answer)) {
        ++refusals;
        refusal = e->error;
      } else {
        ++replies;
      }
    }
    // The first ones are answered (what libzmq and the kernel queue, and
    // the backlog), the rest refused; some refusals were dropped with the
    // backlog full.
    CHECK(replies > 0);
    CHECK(replies < 100);
    CHECK(refusals > 0);
    CHECK(refusal.find("transport.control_backlog_bytes") != std::string::npos);
    CHECK(refusal.find("read the replies") != std::string::npos);
  }
}
