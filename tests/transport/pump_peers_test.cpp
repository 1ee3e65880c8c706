// The pump's connections of its own: one SUB per peer PUB endpoint, added
// and removed at run time, one DEALER per control endpoint, closed on
// demand; what it holds open; its tick; and the repair of a connection
// that libzmq re-established by itself.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

#include "deadline.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/transport/pump.hpp"

using namespace herald;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

// Records what the pump hands over, with the endpoint it came from.
struct peer_listener : transport::pump_listener {
  struct received {
    std::string from;
    std::string type;
    std::string stream;
    uint64_t seq = 0;
  };

  std::mutex mtx;
  std::vector<received> events;
  std::vector<std::pair<std::string, std::string>> heartbeats; // from, body
  std::vector<caf::error> io;
  std::vector<steady::time_point> ticks;

  void on_events(event_batch& batch, std::string_view from) override {
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& ev : batch)
      events.push_back({std::string{from}, std::string{ev.type()},
                        std::string{ev.stream()}, ev.seq()});
  }
  void on_bad_frame(const caf::error&) override {}
  void on_io_error(const caf::error& why) override {
    std::lock_guard<std::mutex> guard{mtx};
    io.push_back(why);
  }
  void on_heartbeat(std::string_view body, std::string_view from) override {
    std::lock_guard<std::mutex> guard{mtx};
    heartbeats.emplace_back(std::string{from}, std::string{body});
  }
  std::optional<std::string>
  on_control_request(std::string_view,
                     const transport::control_peer&) override {
    return std::string{};
  }
  void on_control_reply(std::string_view, std::string_view) override {}
  std::string make_heartbeat() override {
    return {};
  }
  void on_tick(steady::time_point now) override {
    std::lock_guard<std::mutex> guard{mtx};
    ticks.push_back(now);
  }

  // How many events of `stream` arrived from `from`.
  size_t count(std::string_view stream, std::string_view from) {
    std::lock_guard<std::mutex> guard{mtx};
    size_t n = 0;
    for (auto& e : events)
      n += e.stream == stream && e.from == from ? 1 : 0;
    return n;
  }
  size_t count_type(std::string_view type) {
    std::lock_guard<std::mutex> guard{mtx};
    size_t n = 0;
    for (auto& e : events)
      n += e.type == type ? 1 : 0;
    return n;
  }
};

// A producer: a pump that publishes events of one stream.
struct producer {
  std::string stream;
  peer_listener listener;
  std::unique_ptr<transport::pump> pump;
  uint64_t seq = 0;

  explicit producer(std::string s) : stream(std::move(s)) {
    auto p = transport::pump::start({}, &listener);
    REQUIRE(p);
    pump = std::move(*p);
  }

  // Publishes `n` events of `type` (a literal: the pump keeps the view).
  void publish(std::string_view type, int n) {
    std::vector<transport::pump::outgoing> out;
    for (int i = 0; i < n; ++i) {
      envelope_header hdr;
      hdr.event_type = type;
      hdr.timestamp_us = 1;
      hdr.id = "0190a5f0-0000-7000-8000-000000000000";
      hdr.source = "TestService";
      hdr.key = "k";
      hdr.stream = stream;
      hdr.seq = ++seq;
      hdr.type_seq = seq;
      std::string envelope;
      encode(hdr, payload::object(), envelope);
      out.push_back({type, std::move(envelope)});
    }
    pump->send_all(out);
  }
};

std::unique_ptr<transport::pump> start_pump(transport::pump_listener& l,
                                            transport::pump_config pc = {}) {
  auto p = transport::pump::start(std::move(pc), &l);
  REQUIRE(p);
  return std::move(*p);
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] auto& entry :
       std::filesystem::directory_iterator{"/proc/self/fd"})
    ++n;
  return n;
}

// Receives from `sock` (with a receive timeout set) until a message whose
// last frame equals `expected` arrives (a subscription at an XPUB, a
// request's body at a ROUTER) or `timeout` passes.
bool recv_until(zmq::socket_t& sock, std::string_view expected,
                std::chrono::milliseconds timeout) {
  auto deadline = steady::now() + timeout;
  while (steady::now() < deadline) {
    zmq::message_t msg;
    if (!sock.recv(msg))
      continue;
    while (msg.more() && sock.recv(msg)) {
    }
    if (msg.to_string_view() == expected)
      return true;
  }
  return false;
}

// A socket of the test's own, bound to a free loopback port, with linger
// 0 and a 100 ms receive timeout.
zmq::socket_t bound(zmq::context_t& ctx, zmq::socket_type type) {
  zmq::socket_t s{ctx, type};
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, 100);
  s.bind("tcp://127.0.0.1:*");
  return s;
}

const std::string hb_subscription =
  std::string{"\x01"} + std::string{transport::heartbeat_topic};

} // namespace

TEST_CASE("events arrive tagged with the peer they came from, and a "
          "disconnected peer's stop",
          "[transport][pump][peers]") {
  producer a{"stream-a"};
  producer b{"stream-b"};
  peer_listener listener;
  auto c = start_pump(listener);
  c->subscribe("user.");
  c->connect_peer(a.pump->endpoint());
  c->connect_peer(b.pump->endpoint());
  c->connect_peer(a.pump->endpoint()); // idempotent: no second SUB
  REQUIRE(a.pump->wait_for_subscriptions(1, 10s));
  REQUIRE(b.pump->wait_for_subscriptions(1, 10s));
  REQUIRE_WITHIN(10s, c->sockets().subs == 2);

  a.publish("user.account.created", 10);
  b.publish("user.account.created", 20);
  REQUIRE_WITHIN(10s,
                 listener.count("stream-a", a.pump->endpoint()) == 10
                   && listener.count("stream-b", b.pump->endpoint()) == 20);
  {
    std::lock_guard<std::mutex> guard{listener.mtx};
    CHECK(listener.events.size() == 30);
  }
  // The producer's own heartbeats carry nothing here (`make_heartbeat`
  // is empty), so only events were handed over.

  c->disconnect_peer(b.pump->endpoint());
  c->disconnect_peer("tcp://127.0.0.1:1"); // unknown: nothing
  REQUIRE_WITHIN(10s, c->sockets().subs == 1);
  // b's XPUB sees the subscription go with the connection.
  REQUIRE_WITHIN(10s, b.pump->stats().subscriptions.load() == 0);
  b.publish("user.account.created", 20);
  a.publish("user.account.created", 10);
  REQUIRE_WITHIN(10s, listener.count("stream-a", a.pump->endpoint()) == 20);
  CHECK(listener.count("stream-b", b.pump->endpoint()) == 20);
  {
    std::lock_guard<std::mutex> guard{listener.mtx};
    CHECK(listener.events.size() == 40);
    CHECK(listener.io.empty());
  }
  c->stop();
}

TEST_CASE("prefixes subscribed before and after connect_peer both apply to "
          "the new SUB",
          "[transport][pump][peers]") {
  producer a{"stream-a"};
  peer_listener listener;
  auto c = start_pump(listener);
  c->subscribe("user.");
  c->connect_peer(a.pump->endpoint());
  c->subscribe("order.");
  REQUIRE(a.pump->wait_for_subscriptions(2, 10s));
  // Sent first on the one connection, so it would arrive first: it is not
  // selected and never does.
  a.publish("inventory.stock.low", 5);
  a.publish("user.account.created", 3);
  a.publish("order.payment.completed", 4);
  REQUIRE_WITHIN(10s, listener.count_type("user.account.created") == 3
                        && listener.count_type("order.payment.completed") == 4);
  CHECK(listener.count_type("inventory.stock.low") == 0);
  CHECK(listener.count("stream-a", a.pump->endpoint()) == 7);
  c->stop();
}

TEST_CASE("peers and control sockets opened and closed 200 times leave no "
          "socket or file descriptor behind",
          "[transport][pump][peers]") {
  peer_listener listener;
  auto c = start_pump(listener);
  zmq::context_t ctx;
  auto start_counts = c->sockets();
  CHECK(start_counts
        == transport::socket_counts{.subs = 0, .dealers = 0, .monitors = 2});
  // A context starts its threads (and their descriptors) with its first
  // socket: start them before counting.
  { zmq::socket_t warm{ctx, zmq::socket_type::pair}; }
  auto start_fds = open_fds();
  for (int i = 0; i < 200; ++i) {
    // A fresh producer endpoint: the SUB connects, subscribes, and goes.
    {
      auto pub = bound(ctx, zmq::socket_type::xpub);
      auto ep = pub.get(zmq::sockopt::last_endpoint);
      c->connect_peer(ep);
      REQUIRE(recv_until(pub, hb_subscription, 10s));
      c->disconnect_peer(ep);
    }
    // A fresh control endpoint: the DEALER connects, asks, and goes.
    {
      auto router = bound(ctx, zmq::socket_type::router);
      auto ep = router.get(zmq::sockopt::last_endpoint);
      c->request(ep, "ping");
      REQUIRE(recv_until(router, "ping", 10s));
      c->close_control(ep);
    }
  }
  CHECK_WITHIN(20s, c->sockets() == start_counts);
  // libzmq closes sockets and their connections on its reaper thread.
  size_t fds = 0;
  CHECK(herald::test::wait_until(
    [&] {
      fds = open_fds();
      return fds <= start_fds + 3;
    },
    20s, 50ms));
  INFO("open fds at the start " << start_fds << ", at the end " << fds);
  CHECK(fds <= start_fds + 3);
  // A closed control endpoint can be asked again: a new DEALER is made.
  auto router = bound(ctx, zmq::socket_type::router);
  auto ep = router.get(zmq::sockopt::last_endpoint);
  c->request(ep, "once");
  c->close_control(ep);
  c->request(ep, "again");
  REQUIRE(recv_until(router, "again", 10s));
  CHECK_WITHIN(10s, c->sockets().dealers == 1);
  c->stop();
  CHECK(c->sockets() == transport::socket_counts{});
  std::lock_guard<std::mutex> guard{listener.mtx};
  CHECK(listener.io.empty());
}

TEST_CASE("the listener's tick comes repeatedly", "[transport][pump][tick]") {
  peer_listener listener;
  transport::pump_config pc;
  pc.tick = 20ms;
  auto c = start_pump(listener, pc);
  REQUIRE_WITHIN(10s, [&] {
    std::lock_guard<std::mutex> guard{listener.mtx};
    return listener.ticks.size() >= 10;
  }());
  c->stop();
  std::lock_guard<std::mutex> guard{listener.mtx};
  CHECK(listener.ticks.size() >= 10);
  for (size_t i = 1; i < listener.ticks.size(); ++i)
    CHECK(listener.ticks[i] >= listener.ticks[i - 1]);
}

TEST_CASE("a tick that is not positive is refused, naming the setting",
          "[transport][pump][tick]") {
  peer_listener listener;
  transport::pump_config pc;
  pc.tick = 0ms;
  auto c = transport::pump::start(pc, &listener);
  REQUIRE_FALSE(c);
  CHECK(is(c.error(), errc::invalid_argument));
  CHECK_THAT(message_of(c.error()), Catch::Contains("tick"));
}

TEST_CASE("a peer that restarts on its endpoint keeps its subscriber: what "
          "it sends once the subscriber is back all arrives",
          "[transport][pump][peers][repair]") {
  // The peer goes away (a plain disconnect, not a protocol error) and
  // comes back at once on the same endpoint. libzmq reconnects the SUB by
  // itself within 100-200 ms; the pump's repair, scheduled on the
  // disconnect, must not cut that connection later. Restarts follow each
  // other within 5 s, so an uncancelled repair would wait longer each time
  // (200, 400, 800 ms) and fall inside the window where the peer sends.
  zmq::context_t ctx;
  std::string endpoint;
  auto open_peer = [&] {
    auto peer = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::xpub);
    peer->set(zmq::sockopt::linger, 0);
    peer->set(zmq::sockopt::rcvtimeo, 2);
    if (endpoint.empty()) {
      peer->bind("tcp://127.0.0.1:*");
      endpoint = peer->get(zmq::sockopt::last_endpoint);
      return peer;
    }
    // The old listener closes on libzmq's reaper thread: retry a while.
    REQUIRE(herald::test::wait_until(
      [&] {
        try {
          peer->bind(endpoint);
          return true;
        } catch (const zmq::error_t&) {
          return false;
        }
      },
      10s, 1ms));
    return peer;
  };
  auto peer = open_peer();
  peer_listener listener;
  transport::pump_config pc;
  pc.peers = {endpoint};
  auto c = start_pump(listener, pc);
  REQUIRE(recv_until(*peer, hb_subscription, 10s));

  constexpr int restarts = 4;
  constexpr int per_round = 600;
  for (int round = 0; round <= restarts; ++round) {
    if (round > 0) {
      peer.reset();
      peer = open_peer();
      REQUIRE(recv_until(*peer, hb_subscription, 10s));
    }
    // The subscription arrived: the connection is up. Send for well over
    // the longest repair delay these restarts would reach, watching for
    // the subscription to come again (the connection remade).
    int resubscribed = 0;
    for (int i = 0; i < per_round; ++i) {
      auto body = std::to_string(round * per_round + i);
      zmq::message_t head{transport::heartbeat_topic.data(),
                          transport::heartbeat_topic.size()};
      zmq::message_t msg{body.data(), body.size()};
      REQUIRE(peer->send(head, zmq::send_flags::sndmore));
      REQUIRE(peer->send(msg, zmq::send_flags::none));
      // Receiving (2 ms timeout) paces the sends, too.
      zmq::message_t sub;
      if (peer->recv(sub) && sub.to_string_view() == hb_subscription)
        ++resubscribed;
    }
    CHECK(resubscribed == 0);
    auto expected = static_cast<size_t>((round + 1) * per_round);
    CHECK_WITHIN(10s, [&] {
      std::lock_guard<std::mutex> guard{listener.mtx};
      return listener.heartbeats.size() >= expected;
    }());
    std::lock_guard<std::mutex> guard{listener.mtx};
    INFO("round " << round << ": " << listener.heartbeats.size() << " of "
                  << expected << " arrived");
    REQUIRE(listener.heartbeats.size() == expected);
    for (size_t i = 0; i < expected; ++i) {
      CHECK(listener.heartbeats[i].first == endpoint);
      REQUIRE(listener.heartbeats[i].second == std::to_string(i));
    }
  }
  c->stop();
  CHECK(c->stats().disconnects.load() >= restarts);
}

TEST_CASE("control DEALERs stay within max_control_sockets and idle ones are "
          "closed",
          "[transport][pump][peers][bounds]") {
  // Before, every control endpoint asked kept a DEALER (and its monitor)
  // until libzmq's 1,023 sockets were used up.
  peer_listener listener;
  transport::pump_config cfg;
  cfg.max_control_sockets = 4;
  cfg.control_idle = 2s;
  cfg.tick = 20ms;
  auto p = transport::pump::start(cfg, &listener);
  REQUIRE(p);
  auto& c = *p;
  for (int i = 0; i < 50; ++i)
    c->request(fmt::format("tcp://127.0.0.1:{}", 1 + i), "ping");
  // Each request ran: the last endpoint asked has a DEALER, and no more
  // than the bound are open.
  CHECK_WITHIN(10s, c->stats().control_sockets_evicted.load() == 46);
  CHECK(c->sockets().dealers == 4);
  // Unused for control_idle: closed.
  CHECK_WITHIN(10s, c->sockets().dealers == 0);
  CHECK(c->stats().control_sockets_idle_closed.load() == 4);
  // A closed one can be asked again.
  zmq::context_t ctx;
  auto router = bound(ctx, zmq::socket_type::router);
  auto ep = router.get(zmq::sockopt::last_endpoint);
  c->request(ep, "again");
  REQUIRE(recv_until(router, "again", 10s));
  CHECK(c->sockets().dealers == 1);
}
