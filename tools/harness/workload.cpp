#include "workload.hpp"

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/runtime/control_client.hpp"

namespace herald::harness {

publisher::publisher(std::string control, const plan& p, std::string record,
                     size_t batch, std::chrono::milliseconds timeout)
    : control_(std::move(control)), plan_(p), record_(std::move(record)),
      batch_(batch), timeout_(timeout) {}

publisher::~publisher() {
  stop();
  join();
}

void publisher::start(std::chrono::steady_clock::time_point start) {
  thread_ = std::thread{[this, start] {
    run(start);
  }};
}

void publisher::join() {
  if (thread_.joinable())
    thread_.join();
}

void publisher::run(std::chrono::steady_clock::time_point start) {
  std::ofstream out{record_, std::ios::app};
  control_client_options opts;
  opts.timeout = timeout_;
  auto client = control_client::connect(control_, opts);
  auto& events = plan_.events;
  uint64_t request = 0;
  size_t next = 0;
  while (next < events.size() && !stop_) {
    std::this_thread::sleep_until(start + events[next].at);
    auto now = std::chrono::steady_clock::now();
    control::publish_request req;
    req.request_id = fmt::format("harness-{}-{}", plan_.seed, ++request);
    size_t first = next;
    while (next < events.size() && req.events.size() < batch_
           && start + events[next].at <= now) {
      req.events.push_back({events[next].type, events[next].data});
      ++next;
    }
    auto sent_us = now_us();
    sent += req.events.size();
    caf::expected<control::publish_reply> reply =
      client ? client->call(req)
             : caf::expected<control::publish_reply>{client.error()};
    auto done_us = now_us();
    for (size_t i = 0; i < req.events.size(); ++i) {
      auto& ev = events[first + i];
      payload line{{"request_id", req.request_id},
                   {"type", ev.type},
                   {"key", plan_.keys[ev.entity]},
                   {"sent_us", sent_us},
                   {"done_us", done_us}};
      if (reply && i < reply->acks.size()) {
        auto& ack = reply->acks[i];
        line["outcome"] = "acked";
        line["id"] = ack.id;
        line["stream"] = ack.stream;
        line["seq"] = ack.seq;
        ++acked;
      } else if (reply && reply->refused && i == *reply->refused
                 && reply->reason.find("not stored") == std::string::npos) {
        line["outcome"] = "refused";
        line["reason"] = reply->reason;
        ++refused;
      } else {
        // No answer, or after a refusal: it may or may not be published.
        line["outcome"] = "unknown";
        if (!reply)
          line["error"] = message_of(reply.error());
        ++unknown;
      }
      out << line.dump() << '\n';
    }
    out.flush();
  }
}

} // namespace herald::harness
