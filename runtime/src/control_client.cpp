#include "herald/runtime/control_client.hpp"

#include <variant>

#include <fmt/format.h>
#include <zmq.hpp>

#include "herald/core/errc.hpp"

namespace herald {

struct control_client::impl {
  std::string endpoint;
  control_client_options opts;
  decode_limits limits;
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
  // The id of the last request; replies carry it back.
  uint64_t last_id = 0;

  caf::error malformed(std::string_view why) const {
    return make_error(errc::decode_error,
                      fmt::format("malformed reply from {}: {}; is that the "
                                  "control endpoint of a herald node?",
                                  endpoint, why));
  }

  caf::error no_answer() const {
    return make_error(
      errc::timeout,
      fmt::format("no answer from {} within {:g}s; is the node "
                  "running, and is that its control "
                  "endpoint?",
                  endpoint,
                  static_cast<double>(opts.timeout.count()) / 1000.0));
  }

  // Sends `bytes` and waits at most the timeout for the reply whose id is
  // `id` (or that has none: the node could not read the request's).
  template <class Reply>
  caf::expected<control::answer<Reply>> exchange(const std::string& bytes,
                                                 uint64_t id) {
    try {
      // A connecting DEALER queues the request on its pipe: no wait here.
      if (!sock.send(zmq::buffer(bytes), zmq::send_flags::dontwait))
        return make_error(
          errc::io_error,
          fmt::format("cannot queue the request to {}", endpoint));
      auto deadline = std::chrono::steady_clock::now() + opts.timeout;
      for (;;) {
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline)
          return no_answer();
        // Rounded up: the wait never ends before the deadline.
        auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
        zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, left);
        if ((item.revents & ZMQ_POLLIN) == 0)
          continue;
        zmq::message_t msg;
        if (!sock.recv(msg, zmq::recv_flags::dontwait))
          continue;
        if (msg.more()) {
          // Take the rest of the message before failing.
          while (msg.more() && sock.recv(msg, zmq::recv_flags::dontwait)) {
          }
          return malformed("more than one frame");
        }
        auto body = msg.to_string_view();
        auto answer = control::decode_reply<Reply>(body, limits);
        auto got = answer ? std::visit(
                     [](const auto& a) {
                       return a.id;
                     },
                     *answer)
                          : control::message_id(body, limits);
        if (got != 0 && got != id)
          continue; // the late reply to an earlier request
        if (!answer)
          return malformed(message_of(answer.error()));
        return answer;
      }
    } catch (const zmq::error_t& e) {
      return make_error(errc::io_error, fmt::format("cannot talk to {}: {}",
                                                    endpoint, e.what()));
    }
  }
};

caf::expected<control_client>
control_client::connect(std::string endpoint, control_client_options opts) {
  auto& curve = opts.curve;
  if (!curve.server_key.empty() || !curve.public_key.empty()
      || !curve.secret_key.empty())
    return make_error(errc::invalid_argument,
                      fmt::format("cannot secure the connection to {}: CURVE "
                                  "keys are not supported yet; leave them "
                                  "empty",
                                  endpoint));
  if (opts.timeout.count() <= 0)
    return make_error(errc::invalid_argument,
                      fmt::format("the timeout of a control client must be "
                                  "positive, not {}ms",
                                  opts.timeout.count()));
  auto p = std::make_unique<impl>();
  p->endpoint = std::move(endpoint);
  p->opts = std::move(opts);
  p->limits.max_frame = p->opts.max_reply;
  p->limits.max_str = p->opts.max_reply;
  try {
    // Close at once, whether or not a request was delivered.
    p->sock.set(zmq::sockopt::linger, 0);
    p->sock.set(zmq::sockopt::maxmsgsize,
                static_cast<int64_t>(p->opts.max_reply));
    p->sock.connect(p->endpoint);
  } catch (const zmq::error_t& e) {
    return make_error(errc::io_error,
                      fmt::format("cannot connect to the control endpoint "
                                  "'{}': {}",
                                  p->endpoint, e.what()));
  }
  return control_client{std::move(p)};
}

control_client::control_client(std::unique_ptr<impl> ptr)
    : impl_(std::move(ptr)) {}

control_client::control_client(control_client&&) noexcept = default;
control_client& control_client::operator=(control_client&&) noexcept = default;
control_client::~control_client() = default;

template <class Request>
caf::expected<typename Request::reply_type>
control_client::call_typed(Request& req) {
  using reply = typename Request::reply_type;
  auto& p = *impl_;
  req.id = ++p.last_id;
  auto answer = p.exchange<reply>(control::encode(req), req.id);
  if (!answer)
    return std::move(answer.error());
  if (auto* refused = std::get_if<control::error_reply>(&*answer))
    return make_error(errc::remote_error, std::move(refused->error));
  return std::move(std::get<reply>(*answer));
}

caf::expected<control::replay_reply>
control_client::call(control::replay_request req) {
  return call_typed(req);
}

caf::expected<control::dlq_list_reply>
control_client::call(control::dlq_list_request req) {
  return call_typed(req);
}

caf::expected<control::dlq_show_reply>
control_client::call(control::dlq_show_request req) {
  return call_typed(req);
}

caf::expected<control::dlq_redrive_reply>
control_client::call(control::dlq_redrive_request req) {
  return call_typed(req);
}

caf::expected<control::dlq_purge_reply>
control_client::call(control::dlq_purge_request req) {
  return call_typed(req);
}

caf::expected<control::publish_reply>
control_client::call(control::publish_request req) {
  return call_typed(req);
}

caf::expected<control::status_reply>
control_client::call(control::status_request req) {
  return call_typed(req);
}

caf::expected<control::test_hooks_reply>
control_client::call(control::test_hooks_request req) {
  return call_typed(req);
}

caf::expected<control::members_reply>
control_client::call(control::members_request req) {
  return call_typed(req);
}

caf::expected<control::group_lease_reply>
control_client::call(control::group_lease_request req) {
  return call_typed(req);
}

caf::expected<control::group_describe_reply>
control_client::call(control::group_describe_request req) {
  return call_typed(req);
}

caf::expected<control::group_reset_reply>
control_client::call(control::group_reset_request req) {
  return call_typed(req);
}

const std::string& control_client::endpoint() const noexcept {
  return impl_->endpoint;
}

const control_client_options& control_client::options() const noexcept {
  return impl_->opts;
}

} // namespace herald
