// Frame limits and lost connections, as a user observes them, with real
// processes: a producer (examples/user_service) and a consumer (the test
// service as EmailService).
//
// Some tests put a proxy of their own between the two: it forwards the
// producer's PUB messages to the consumer and, on demand, drops them (a
// peer whose heartbeats stop) or sends one frame over the consumer's
// `transport.max_message_size` (libzmq then cuts the connection as a
// protocol error and never reconnects it by itself). Replay requests go
// from the consumer to the producer's control endpoint directly.

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "deadline.hpp"
#include "herald/core/codec.hpp"
#include "process.hpp"

using namespace herald::test;
using namespace std::chrono_literals;

namespace {

const std::string src = HERALD_SOURCE_DIR;
const std::string bin = HERALD_BINARY_DIR;

// Writes a node config into `dir` serving /metrics and /healthz on
// `metrics_port`; `extra` is appended (e.g. a transport section).
std::string write_config(const temp_dir& dir, const std::string& node,
                         const std::string& service, int metrics_port,
                         const std::string& extra = "") {
  std::ostringstream yaml;
  yaml << "node: " << node << "\n"
       << "service: " << service << "\n"
       << "bind: tcp://127.0.0.1:*\n"
       << "catalog: " << src << "/config/events.yaml\n"
       << "data_dir: " << (dir / (node + ".data")).string() << "\n"
       << "log_level: info\n"
       << "metrics: {listen: 127.0.0.1:" << metrics_port << "}\n"
       << extra;
  if (service == "EmailService")
    yaml << "consumers:\n  EmailService:\n    subscribe: "
            "[user.account.created]\n";
  auto path = dir / (node + ".yaml");
  write_text(path, yaml.str());
  return path.string();
}

std::string producer_cmd(const std::string& config, const std::string& args) {
  return "exec " + bin + "/examples/user_service --config "
         + shell_quote(config) + " " + args;
}

std::string consumer_cmd(const std::string& config, const std::string& peer,
                         const std::string& args) {
  return "exec " + bin
         + "/tests/herald_test_service --service EmailService --config "
         + shell_quote(config) + " --peer " + shell_quote(peer) + " --quiet "
         + args;
}

std::string endpoint_of(const child& producer) {
  auto endpoint = wait_for_line(producer, "publishing on ", 20s);
  INFO("producer stderr: " << producer.err());
  REQUIRE(endpoint);
  auto text = *endpoint;
  while (!text.empty() && (text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  return text;
}

// GET `path` from 127.0.0.1:`port`: the status (0 when there was no
// answer) and the body.
std::pair<int, std::string> http_get(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return {0, {}};
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    auto request =
      "GET " + path
      + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), 0)
        == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      ssize_t n = 0;
      while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0)
        response.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
  if (response.size() < 12)
    return {0, {}};
  auto body = response.find("\r\n\r\n");
  return {std::atoi(response.c_str() + 9), body == std::string::npos
                                             ? std::string{}
                                             : response.substr(body + 4)};
}

// The value of the sample `name{labels}` in a /metrics text; -1 if absent.
double sample(const std::string& metrics, const std::string& series) {
  std::istringstream lines{metrics};
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind(series + " ", 0) == 0)
      return std::stod(line.substr(series.size() + 1));
  return -1;
}

// Forwards every message of a PUB endpoint to its own PUB endpoint, on
// its own thread; can drop them or send one oversized frame. Thread
// safety: the sockets live on the forwarding thread; the controls are
// atomics.
class pub_proxy {
public:
  explicit pub_proxy(const std::string& upstream) {
    in_.set(zmq::sockopt::linger, 0);
    in_.set(zmq::sockopt::subscribe, "");
    in_.connect(upstream);
    out_.set(zmq::sockopt::linger, 0);
    out_.bind("tcp://127.0.0.1:*");
    endpoint_ = out_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread{[this] {
      run();
    }};
  }

  ~pub_proxy() {
    stop_ = true;
    thread_.join();
  }

  pub_proxy(const pub_proxy&) = delete;
  pub_proxy& operator=(const pub_proxy&) = delete;

  /// The endpoint the consumer connects to.
  const std::string& endpoint() const {
    return endpoint_;
  }

  /// Drops what arrives (true) or forwards it (false).
  void drop(bool on) {
    drop_ = on;
  }

  /// Sends one heartbeat-topic frame of `bytes` bytes next.
  void send_oversized(size_t bytes) {
    oversized_ = bytes;
  }

  /// Messages forwarded so far.
  uint64_t forwarded() const {
    return forwarded_;
  }

private:
  void run() {
    while (!stop_) {
      zmq::pollitem_t item{in_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds{10});
      if (auto n = oversized_.exchange(0); n > 0) {
        std::string big(n, 'x');
        out_.send(zmq::buffer(std::string_view{"_hb"}),
                  zmq::send_flags::sndmore);
        out_.send(zmq::buffer(big), zmq::send_flags::none);
      }
      if ((item.revents & ZMQ_POLLIN) == 0)
        continue;
      std::vector<zmq::message_t> parts;
      do {
        zmq::message_t part;
        if (!in_.recv(part, zmq::recv_flags::dontwait))
          break;
        parts.push_back(std::move(part));
      } while (parts.back().more());
      if (drop_ || parts.empty())
        continue;
      for (size_t i = 0; i < parts.size(); ++i)
        out_.send(parts[i], i + 1 < parts.size() ? zmq::send_flags::sndmore
                                                 : zmq::send_flags::none);
      ++forwarded_;
    }
  }

  zmq::context_t ctx_{1};
  zmq::socket_t in_{ctx_, zmq::socket_type::sub};
  zmq::socket_t out_{ctx_, zmq::socket_type::pub};
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> drop_{false};
  std::atomic<size_t> oversized_{0};
  std::atomic<uint64_t> forwarded_{0};
  std::thread thread_;
};

} // namespace

TEST_CASE("a consumer with a smaller max_message_size than its producer: "
          "both log an error naming both values and show it in /healthz",
          "[integration][frames]") {
  // Before, the consumer handled a few events, then its SUB dropped the
  // connection over the producer's 64 KiB batches: silence, for good, with
  // nothing logged and /healthz 200.
  temp_dir dir;
  auto producer_http = free_port();
  auto consumer_http = free_port();
  auto pcfg = write_config(dir, "user-node", "UserService", producer_http);
  auto ccfg = write_config(dir, "email-node", "EmailService", consumer_http,
                           "transport: {max_message_size: 65536}\n");
  child producer{producer_cmd(pcfg, "--created 2000 --deleted 0 --users 100 "
                                    "--rate 0 --wait-subscribers 1 "
                                    "--wait-timeout 30 --linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  auto endpoint = endpoint_of(producer);
  child consumer{consumer_cmd(ccfg, endpoint, "--timeout 60"),
                 dir / "email.out", dir / "email.err"};
  INFO("producer stderr: " << producer.err());
  INFO("consumer stderr: " << consumer.err());
  CHECK(wait_until(
    [&] {
      return consumer.err().find("has transport.max_message_size 1048576, "
                                 "this node's is 65536")
             != std::string::npos;
    },
    20s, 20ms));
  CHECK(wait_until(
    [&] {
      return producer.err().find("has transport.max_message_size 65536, "
                                 "this node's is 1048576")
             != std::string::npos;
    },
    20s, 20ms));
  auto consumer_health = http_get(consumer_http, "/healthz");
  CHECK(consumer_health.first == 503);
  CHECK_THAT(consumer_health.second,
             Catch::Contains("transport.max_message_size 1048576"));
  auto producer_health = http_get(producer_http, "/healthz");
  CHECK(producer_health.first == 503);
  CHECK_THAT(producer_health.second,
             Catch::Contains("transport.max_message_size 65536"));
  auto metrics = http_get(consumer_http, "/metrics").second;
  CHECK(sample(metrics, "herald_frame_limit_mismatches_total") >= 1);
}

TEST_CASE("a SUB connection cut by an oversized frame is noticed, counted, "
          "made anew, and the consumer catches up",
          "[integration][frames]") {
  // Before, libzmq dropped the connection as a protocol error and never
  // made it again: the consumer got nothing more from that producer, and
  // nothing said so.
  temp_dir dir;
  auto consumer_http = free_port();
  auto pcfg = write_config(dir, "user-node", "UserService", free_port());
  auto ccfg = write_config(dir, "email-node", "EmailService", consumer_http);
  child producer{producer_cmd(pcfg, "--created 3000 --deleted 0 --users 100 "
                                    "--rate 500 --wait-subscribers 1 "
                                    "--wait-timeout 30 --linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  pub_proxy proxy{endpoint_of(producer)};
  child consumer{
    consumer_cmd(ccfg, proxy.endpoint(), "--expect 3000 --timeout 90"),
    dir / "email.out", dir / "email.err"};
  INFO("producer stderr: " << producer.err());
  INFO("consumer stderr: " << consumer.err());
  REQUIRE(wait_until(
    [&] {
      return proxy.forwarded() > 200;
    },
    30s, 10ms));
  proxy.send_oversized(2 * 1024 * 1024);
  auto series =
    "herald_peer_disconnects_total{peer=\"" + proxy.endpoint() + "\"}";
  double disconnects = -1;
  CHECK(wait_until(
    [&] {
      disconnects = sample(http_get(consumer_http, "/metrics").second, series);
      return disconnects >= 1;
    },
    10s, 50ms));
  CHECK_THAT(consumer.err(), Catch::Contains("peer " + proxy.endpoint()
                                             + ": the SUB connection "
                                               "disconnected; reconnecting"));
  auto status = consumer.wait_for(100s);
  INFO("consumer stdout: " << consumer.out());
  CHECK(status == 0);
  CHECK_THAT(consumer.out(),
             Catch::Contains("EmailService: handled 3000 events"));
}

TEST_CASE("a static peer whose heartbeats stop shows in /healthz, and it "
          "clears when they resume",
          "[integration][frames]") {
  temp_dir dir;
  auto consumer_http = free_port();
  auto pcfg = write_config(dir, "user-node", "UserService", free_port());
  auto ccfg = write_config(dir, "email-node", "EmailService", consumer_http);
  child producer{producer_cmd(pcfg, "--created 10 --deleted 0 --users 10 "
                                    "--rate 0 --wait-subscribers 1 "
                                    "--wait-timeout 30 --linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  pub_proxy proxy{endpoint_of(producer)};
  child consumer{consumer_cmd(ccfg, proxy.endpoint(), "--timeout 60"),
                 dir / "email.out", dir / "email.err"};
  INFO("producer stderr: " << producer.err());
  INFO("consumer stderr: " << consumer.err());
  std::pair<int, std::string> health;
  auto health_is = [&](int status) {
    return wait_until(
      [&] {
        health = http_get(consumer_http, "/healthz");
        return health.first == status;
      },
      15s, 50ms);
  };
  // The consumer heard the producer's heartbeats: healthy.
  REQUIRE(wait_until(
    [&] {
      return proxy.forwarded() > 5;
    },
    20s, 10ms));
  CHECK(health_is(200));
  proxy.drop(true);
  CHECK(health_is(503));
  CHECK_THAT(health.second, Catch::Contains("no heartbeat from its producer"));
  auto logged = [&](const std::string& text) {
    return wait_until(
      [&] {
        return consumer.err().find(text) != std::string::npos;
      },
      5s, 20ms);
  };
  CHECK(logged("no heartbeat for"));
  proxy.drop(false);
  CHECK(health_is(200));
  CHECK(logged("heartbeats resumed"));
}

TEST_CASE("events of a stream a peer does not own are not taken from its "
          "connection",
          "[integration][frames][peers]") {
  // (a) of the hostile-peer tries: a peer sends valid envelopes of the real
  // producer's stream, with the next seqs. They must be neither handled
  // nor dead-lettered; the real events are handled once each.
  temp_dir dir;
  auto consumer_http = free_port();
  auto pcfg = write_config(dir, "user-node", "UserService", free_port());
  auto ccfg = write_config(dir, "email-node", "EmailService", consumer_http);
  child producer{producer_cmd(pcfg, "--created 10 --deleted 0 --users 10 "
                                    "--rate 0 --wait-subscribers 1 "
                                    "--wait-timeout 30 --linger-ms 120000"),
                 dir / "user.out", dir / "user.err"};
  auto endpoint = endpoint_of(producer);
  // Its stream id, from its log: `started: service=UserService stream=ID `.
  std::string stream;
  REQUIRE(wait_until(
    [&] {
      auto err = producer.err();
      auto at = err.find("started: service=UserService stream=");
      if (at == std::string::npos)
        return false;
      at = err.find("stream=", at) + 7;
      stream = err.substr(at, err.find(' ', at) - at);
      return true;
    },
    10s, 20ms));
  // The hostile peer: an XPUB (it sees the consumer subscribe).
  zmq::context_t ctx{1};
  zmq::socket_t hostile{ctx, zmq::socket_type::xpub};
  hostile.set(zmq::sockopt::linger, 0);
  hostile.bind("tcp://127.0.0.1:*");
  auto hostile_ep = hostile.get(zmq::sockopt::last_endpoint);
  auto record = (dir / "handled.txt").string();
  child consumer{consumer_cmd(ccfg, endpoint,
                              "--peer " + hostile_ep + " --record "
                                + shell_quote(record) + " --timeout 60"),
                 dir / "email.out", dir / "email.err"};
  INFO("producer stderr: " << producer.err());
  INFO("consumer stderr: " << consumer.err());
  // The consumer subscribed at the hostile peer.
  REQUIRE(wait_until(
    [&] {
      zmq::message_t sub;
      hostile.set(zmq::sockopt::rcvtimeo, 100);
      return hostile.recv(sub, zmq::recv_flags::none).has_value()
             && sub.size() > 1 && sub.data<char>()[0] == 1;
    },
    20s, 10ms));
  // The real events are handled.
  auto lines = [&] {
    auto text = read_text(record);
    return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  };
  REQUIRE(wait_until(
    [&] {
      return lines() >= 10;
    },
    30s, 20ms));
  // Forged: seqs 11 and 12 of the producer's stream, from the hostile peer.
  for (uint64_t seq = 11; seq <= 12; ++seq) {
    auto id = "01890000-0000-7000-8000-0000000000" + std::to_string(seq);
    auto key = "00000000-0000-4000-8000-0000000000" + std::to_string(seq);
    herald::envelope_header hdr;
    hdr.event_type = "user.account.created";
    hdr.timestamp_us = 1'700'000'000'000'000;
    hdr.id = id;
    hdr.source = "UserService";
    hdr.key = key;
    hdr.stream = stream;
    hdr.seq = seq;
    hdr.type_seq = seq;
    std::string envelope;
    herald::encode(hdr,
                   herald::payload{{"user_id", key},
                                   {"email", "forged@example.com"},
                                   {"registration_source", "web"}},
                   envelope);
    hostile.send(zmq::buffer(std::string_view{"user.account.created"}),
                 zmq::send_flags::sndmore);
    hostile.send(zmq::buffer(envelope), zmq::send_flags::none);
  }
  // Counted as refused, and none handled.
  CHECK(wait_until(
    [&] {
      auto metrics = http_get(consumer_http, "/metrics").second;
      return sample(metrics, "herald_foreign_refused_total") >= 2;
    },
    10s, 50ms));
  std::this_thread::sleep_for(500ms);
  CHECK(lines() == 10);
  CHECK(read_text(record).find("forged") == std::string::npos);
  CHECK(consumer.err().find(" event(s) of stream " + stream)
        != std::string::npos);
  CHECK(consumer.err().find("dead letter") == std::string::npos);
}
