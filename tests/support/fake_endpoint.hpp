#pragma once

/// A control endpoint in the test's own process, for tests of clients.

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmq.hpp>

namespace herald::test {

// A control endpoint in this process: a ROUTER that answers each request
// with what `answer` returns for its bytes (nothing for an empty string).
//
// Thread safety: the socket lives on the serving thread; `requests` may be
// called from any thread.
class fake_endpoint {
public:
  using answer_fn = std::function<std::vector<std::string>(std::string_view)>;

  explicit fake_endpoint(answer_fn answer) : answer_(std::move(answer)) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind("tcp://127.0.0.1:*");
    endpoint_ = sock_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread{[this] {
      serve();
    }};
  }

  ~fake_endpoint() {
    stop_ = true;
    thread_.join();
  }

  fake_endpoint(const fake_endpoint&) = delete;
  fake_endpoint& operator=(const fake_endpoint&) = delete;

  const std::string& endpoint() const {
    return endpoint_;
  }

  std::vector<std::string> requests() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return requests_;
  }

private:
  void serve() {
    while (!stop_) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds{20});
      if ((item.revents & ZMQ_POLLIN) == 0)
        continue;
      zmq::message_t id;
      zmq::message_t body;
      if (!sock_.recv(id, zmq::recv_flags::dontwait) || !id.more()
          || !sock_.recv(body, zmq::recv_flags::dontwait))
        continue;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        requests_.push_back(body.to_string());
      }
      // Several replies to one request: late ones of earlier requests.
      for (auto& reply : answer_(body.to_string_view())) {
        zmq::message_t to{id.data(), id.size()};
        if (sock_.send(to, zmq::send_flags::sndmore))
          sock_.send(zmq::buffer(reply), zmq::send_flags::none);
      }
    }
  }

  answer_fn answer_;
  zmq::context_t ctx_{1};
  zmq::socket_t sock_{ctx_, zmq::socket_type::router};
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mtx_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

} // namespace herald::test
