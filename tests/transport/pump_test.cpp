// What the pump counts as a bad frame (a message that arrived and did not
// decode) and what as an I/O error (a ZeroMQ operation that failed).

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "deadline.hpp"
#include "herald/core/errc.hpp"
#include "herald/transport/pump.hpp"

using namespace herald;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

// Records what the pump reports; answers control requests with an empty
// reply at once, or, when `defer` is set, not at once but keeps their
// senders in `deferred`.
struct recording_listener : transport::pump_listener {
  std::mutex mtx;
  std::vector<caf::error> bad;
  std::vector<caf::error> io;
  bool defer = false;
  std::vector<std::pair<transport::control_peer, std::string>> deferred;
  std::vector<std::string> disconnects; // "SOCKET ENDPOINT: WHAT"
  std::atomic<int> heartbeats{0};

  void on_events(event_batch&, std::string_view) override {}
  void on_bad_frame(const caf::error& why) override {
    std::lock_guard<std::mutex> guard{mtx};
    bad.push_back(why);
  }
  void on_io_error(const caf::error& why) override {
    std::lock_guard<std::mutex> guard{mtx};
    io.push_back(why);
  }
  void on_heartbeat(std::string_view, std::string_view) override {
    ++heartbeats;
  }
  void on_disconnect(const transport::peer_event& e) override {
    std::lock_guard<std::mutex> guard{mtx};
    disconnects.push_back(std::string{e.socket} + " " + std::string{e.endpoint}
                          + ": " + std::string{e.what});
    CHECK(e.reconnect_in.count() > 0);
  }
  std::optional<std::string>
  on_control_request(std::string_view request,
                     const transport::control_peer& from) override {
    if (!defer)
      return std::string{};
    std::lock_guard<std::mutex> guard{mtx};
    deferred.emplace_back(from, std::string{request});
    return std::nullopt;
  }
  void on_control_reply(std::string_view, std::string_view) override {}
  std::string make_heartbeat() override {
    return {};
  }
};

void send_parts(zmq::socket_t& sock, const std::vector<std::string>& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    zmq::message_t msg{parts[i].data(), parts[i].size()};
    auto flags =
      i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    REQUIRE(sock.send(msg, flags));
  }
}

// Waits until `peer` (an XPUB) sees the subscription to `topic`.
void wait_for_subscription(zmq::socket_t& peer, std::string_view topic) {
  auto deadline = steady::now() + 5s;
  std::string expected = std::string{"\x01"} + std::string{topic};
  for (bool subscribed = false; !subscribed;) {
    REQUIRE(steady::now() < deadline);
    zmq::message_t sub;
    if (peer.recv(sub))
      subscribed = sub.to_string_view() == expected;
  }
}

} // namespace

TEST_CASE("garbage frames count as bad frames, not as I/O errors",
          "[transport][pump]") {
  zmq::context_t ctx;
  zmq::socket_t peer{ctx, zmq::socket_type::xpub};
  peer.set(zmq::sockopt::linger, 0);
  peer.set(zmq::sockopt::rcvtimeo, 100);
  peer.bind("tcp://127.0.0.1:*");
  recording_listener listener;
  transport::pump_config pc;
  pc.peers = {peer.get(zmq::sockopt::last_endpoint)};
  auto p = transport::pump::start(pc, &listener);
  REQUIRE(p);
  (*p)->subscribe("user.");
  // The peer publishes once the pump's subscription reached it.
  auto deadline = steady::now() + 5s;
  for (bool subscribed = false; !subscribed;) {
    REQUIRE(steady::now() < deadline);
    zmq::message_t sub;
    if (peer.recv(sub))
      subscribed = sub.to_string_view() == std::string_view{"\x01user.", 6};
  }
  send_parts(peer, {"user.account.created"});
  send_parts(peer, {"user.account.created", "a", "b"});
  send_parts(peer, {"user.account.created", "\xc1\xc1 not msgpack"});
  REQUIRE(herald::test::wait_until(
    [&] {
      return (*p)->stats().bad_frames.load() == 3;
    },
    5s));
  (*p)->stop();
  CHECK((*p)->stats().io_errors.load() == 0);
  CHECK((*p)->stats().received.load() == 0);
  std::lock_guard<std::mutex> guard{listener.mtx};
  CHECK(listener.io.empty());
  REQUIRE(listener.bad.size() == 3);
  for (auto& err : listener.bad)
    CHECK(is(err, errc::decode_error));
}

TEST_CASE("a failed ZeroMQ operation counts as an I/O error, not a bad frame",
          "[transport][pump]") {
  recording_listener listener;
  auto p = transport::pump::start({}, &listener);
  REQUIRE(p);
  // ZeroMQ refuses to connect a socket to an endpoint without a transport.
  (*p)->request("no-such-endpoint", "request");
  REQUIRE(herald::test::wait_until(
    [&] {
      return (*p)->stats().io_errors.load() == 1;
    },
    5s));
  (*p)->stop();
  CHECK((*p)->stats().bad_frames.load() == 0);
  std::lock_guard<std::mutex> guard{listener.mtx};
  CHECK(listener.bad.empty());
  REQUIRE(listener.io.size() == 1);
  CHECK(is(listener.io[0], errc::io_error));
  CHECK_THAT(message_of(listener.io[0]), Catch::Contains("no-such-endpoint"));
}

TEST_CASE("a deferred control reply reaches the peer that asked",
          "[transport][pump]") {
  // Two peers ask; the listener answers neither at once. Replies sent
  // later, from another thread and in the other order, each reach the
  // peer that asked.
  recording_listener listener;
  listener.defer = true;
  auto p = transport::pump::start({}, &listener);
  REQUIRE(p);
  zmq::context_t ctx;
  zmq::socket_t a{ctx, zmq::socket_type::dealer};
  zmq::socket_t b{ctx, zmq::socket_type::dealer};
  for (auto* s : {&a, &b}) {
    s->set(zmq::sockopt::linger, 0);
    s->set(zmq::sockopt::rcvtimeo, 5000);
    s->connect((*p)->control_endpoint());
  }
  send_parts(a, {"from a"});
  send_parts(b, {"from b"});
  REQUIRE(herald::test::wait_until(
    [&] {
      std::lock_guard<std::mutex> guard{listener.mtx};
      return listener.deferred.size() == 2;
    },
    5s));
  std::vector<std::pair<transport::control_peer, std::string>> asked;
  {
    std::lock_guard<std::mutex> guard{listener.mtx};
    asked = listener.deferred;
  }
  CHECK_FALSE(asked[0].first == asked[1].first);
  CHECK(herald::test::run_with_time_limit(5s, [&] {
    for (auto i = asked.size(); i-- > 0;)
      (*p)->reply(asked[i].first, "answer to " + asked[i].second);
    return true;
  }));
  zmq::message_t got;
  REQUIRE(a.recv(got));
  CHECK(got.to_string_view() == "answer to from a");
  REQUIRE(b.recv(got));
  CHECK(got.to_string_view() == "answer to from b");
  (*p)->stop();
}

TEST_CASE("a SUB connection cut by a frame over ZMQ_MAXMSGSIZE is noticed, "
          "counted and made anew",
          "[transport][pump][frames]") {
  // libzmq drops a connection that carries a frame over ZMQ_MAXMSGSIZE as
  // a protocol error and never reconnects it: without the pump's repair,
  // nothing from this peer would arrive again.
  zmq::context_t ctx;
  zmq::socket_t peer{ctx, zmq::socket_type::xpub};
  peer.set(zmq::sockopt::linger, 0);
  peer.set(zmq::sockopt::rcvtimeo, 100);
  peer.bind("tcp://127.0.0.1:*");
  auto endpoint = peer.get(zmq::sockopt::last_endpoint);
  recording_listener listener;
  transport::pump_config pc;
  pc.peers = {endpoint};
  pc.max_message_size = 64 * 1024;
  auto p = transport::pump::start(pc, &listener);
  REQUIRE(p);
  wait_for_subscription(peer, transport::heartbeat_topic);
  send_parts(peer, {std::string{transport::heartbeat_topic},
                    std::string(100 * 1024, 'x')});
  REQUIRE(herald::test::wait_until(
    [&] {
      return (*p)->stats().disconnects.load() >= 1;
    },
    5s));
  {
    std::lock_guard<std::mutex> guard{listener.mtx};
    REQUIRE_FALSE(listener.disconnects.empty());
    CHECK(listener.disconnects[0] == "SUB " + endpoint + ": disconnected");
  }
  CHECK(listener.heartbeats.load() == 0);
  // The connection is made anew: its subscriptions come again, and what
  // the peer sends then arrives.
  wait_for_subscription(peer, transport::heartbeat_topic);
  REQUIRE(herald::test::wait_until(
    [&] {
      send_parts(peer, {std::string{transport::heartbeat_topic}, "small"});
      return listener.heartbeats.load() > 0;
    },
    5s, 20ms));
  CHECK((*p)->stats().reconnects.load() >= 1);
  (*p)->stop();
  CHECK((*p)->stats().io_errors.load() == 0);
}
