#pragma once

/// A peer a node under test subscribes to, played by the test.

#include <chrono>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include "deadline.hpp"

namespace herald::test {

// A peer the node under test subscribes to (config `peers`): an XPUB of
// the test's own, which waits until the node subscribed to `topic`.
struct hostile_peer {
  zmq::context_t ctx{1};
  zmq::socket_t pub{ctx, zmq::socket_type::xpub};

  hostile_peer() {
    pub.set(zmq::sockopt::linger, 0);
    pub.set(zmq::sockopt::sndhwm, 0);
    pub.bind("tcp://127.0.0.1:*");
  }
  std::string endpoint() {
    return pub.get(zmq::sockopt::last_endpoint);
  }
  bool wait_for(std::string_view topic) {
    pub.set(zmq::sockopt::rcvtimeo, 100);
    return herald::test::wait_until(
      [&] {
        zmq::message_t sub;
        return pub.recv(sub, zmq::recv_flags::none).has_value()
               && sub.size() > 1 && sub.data<char>()[0] == 1
               && sub.to_string_view().substr(1).starts_with(topic);
      },
      std::chrono::seconds{20}, std::chrono::milliseconds{10});
  }
  void send(std::string_view topic, const std::string& body) {
    pub.send(zmq::buffer(topic), zmq::send_flags::sndmore);
    pub.send(zmq::buffer(body), zmq::send_flags::none);
  }
};

} // namespace herald::test
