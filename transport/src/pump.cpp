#include "herald/transport/pump.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <zmq.hpp>

#include "herald/core/errc.hpp"

namespace herald::transport {

namespace {

struct command {
  enum class kind : uint8_t { send, subscribe, request, reply, stop };
  kind what;
  std::string a;          // envelope, prefix, endpoint (request) or
                          // routing id (reply)
  std::string_view topic; // for send
  std::string b;          // request or reply body
};

// A socket's monitor: the PAIR end of `zmq_socket_monitor`, read on the
// pump thread.
struct watched {
  std::string_view socket; // SUB, DEALER, XPUB or ROUTER
  std::string endpoint;    // a DEALER's control endpoint; else empty
  zmq::socket_t monitor;
};

// A connection of the pump's own to recreate.
struct repair {
  std::string_view socket; // SUB or DEALER
  std::string endpoint;
  std::chrono::steady_clock::time_point due;
};

// How soon a connection is recreated: `delay` grows while recreated
// connections keep ending soon after.
struct backoff {
  std::chrono::milliseconds delay{0};
  std::chrono::steady_clock::time_point last_repair;
};

constexpr auto first_repair_delay = std::chrono::milliseconds{100};
constexpr auto max_repair_delay = std::chrono::milliseconds{5000};

} // namespace

struct pump::impl {
  pump_config cfg;
  pump_listener* listener = nullptr;
  zmq::context_t ctx{1};
  zmq::socket_t pub{ctx, zmq::socket_type::xpub};
  zmq::socket_t sub{ctx, zmq::socket_type::sub};
  zmq::socket_t router{ctx, zmq::socket_type::router};
  // One DEALER per peer control endpoint, made on first request.
  std::vector<std::pair<std::string, zmq::socket_t>> dealers;
  std::chrono::steady_clock::time_point next_heartbeat;
  int wake_fd = -1;
  std::thread thread;
  pump_stats stats;
  decode_limits limits;

  std::mutex mtx; // guards queue
  std::vector<command> queue;
  std::vector<command> batch; // pump thread only
  size_t max_batch_bytes = 0;
  std::mutex sub_mtx; // guards nothing but pairs with sub_cv
  std::condition_variable sub_cv;
  bool stopped = false;
  // Connection watching, pump thread only.
  std::vector<watched> watches;
  std::vector<repair> repairs;
  std::map<std::string, backoff, std::less<>> backoffs;
  int next_monitor = 0;

  ~impl() {
    if (wake_fd >= 0)
      ::close(wake_fd);
  }

  void push(command cmd) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> guard{mtx};
      was_empty = queue.empty();
      queue.push_back(std::move(cmd));
    }
    if (was_empty)
      wake();
  }

  void push_sends(std::vector<pump::outgoing>& msgs) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> guard{mtx};
      was_empty = queue.empty();
      for (auto& m : msgs)
        queue.push_back(
          {command::kind::send, std::move(m.envelope), m.topic, {}});
    }
    if (was_empty)
      wake();
  }

  void wake() {
    // One wake-up per burst: the pump drains the whole queue when it runs.
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof(one));
  }

  void set_common(zmq::socket_t& s) {
    s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(cfg.max_message_size));
    auto ivl = static_cast<int>(cfg.heartbeat.count());
    s.set(zmq::sockopt::heartbeat_ivl, ivl);
    s.set(zmq::sockopt::heartbeat_timeout, ivl * 3);
    s.set(zmq::sockopt::heartbeat_ttl, ivl * 3);
    s.set(zmq::sockopt::linger, static_cast<int>(cfg.linger.count()));
  }

  // Returns false when asked to stop.
  bool run_commands() {
    uint64_t ignored;
    [[maybe_unused]] auto n = ::read(wake_fd, &ignored, sizeof(ignored));
    {
      // Swap buffers: both keep their capacity, so a steady stream of
      // sends allocates no queue memory.
      std::lock_guard<std::mutex> guard{mtx};
      batch.swap(queue);
    }
    struct clear_on_exit {
      std::vector<command>& v;
      ~clear_on_exit() {
        v.clear();
      }
    } clear{batch};
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& cmd = batch[i];
      switch (cmd.what) {
      case command::kind::send:
        send_run(i);
        break;
      case command::kind::subscribe:
        sub.set(zmq::sockopt::subscribe, cmd.a);
        break;
      case command::kind::request:
        send_request(cmd.a, cmd.b);
        break;
      case command::kind::reply:
        send_reply(cmd.a, cmd.b);
        break;
      case command::kind::stop:
        return false;
      }
    }
    return true;
  }

  // Sends batch[i] and the sends right after it that share its topic as one
  // message: [topic][envelope envelope ...], up to max_batch_bytes. Leaves
  // `i` at the last command sent. Batching only what is already queued
  // adds no latency; at high rates it saves ZeroMQ most of its per-message
  // work.
  void send_run(size_t& i) {
    auto topic = batch[i].topic;
    size_t end = i + 1;
    size_t bytes = batch[i].a.size();
    while (end < batch.size() && batch[end].what == command::kind::send
           && batch[end].topic == topic) {
      auto more = batch[end].a.size();
      if (bytes + more > max_batch_bytes)
        break;
      bytes += more;
      ++end;
    }
    zmq::message_t head{topic.data(), topic.size()};
    zmq::message_t body{bytes};
    auto* out = static_cast<char*>(body.data());
    for (size_t k = i; k < end; ++k) {
      auto& c = batch[k];
      std::memcpy(out, c.a.data(), c.a.size());
      out += c.a.size();
    }
    // XPUB never blocks: at the high-water mark ZeroMQ drops.
    if (pub.send(head, zmq::send_flags::sndmore | zmq::send_flags::dontwait)
        && pub.send(body, zmq::send_flags::dontwait))
      stats.sent.fetch_add(end - i, std::memory_order_relaxed);
    i = end - 1;
  }

  zmq::socket_t& dealer_for(const std::string& endpoint) {
    for (auto& [ep, sock] : dealers)
      if (ep == endpoint)
        return sock;
    zmq::socket_t sock{ctx, zmq::socket_type::dealer};
    set_common(sock);
    sock.set(zmq::sockopt::linger, 0);
    watch(sock, "DEALER", endpoint);
    sock.connect(endpoint);
    dealers.emplace_back(endpoint, std::move(sock));
    return dealers.back().second;
  }

  void send_request(const std::string& endpoint, const std::string& body) {
    try {
      auto& sock = dealer_for(endpoint);
      zmq::message_t msg{body.data(), body.size()};
      // A DEALER queues while connecting; at its HWM the request is
      // dropped and the requester's timeout asks again.
      [[maybe_unused]] auto ok = sock.send(msg, zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      count_io(make_error(
        errc::io_error, fmt::format("cannot send a control request to '{}': {}",
                                    endpoint, e.what())));
    }
  }

  void read_requests() {
    zmq::message_t id;
    zmq::message_t body;
    while (router.recv(id, zmq::recv_flags::dontwait)) {
      if (!id.more() || !router.recv(body, zmq::recv_flags::dontwait)) {
        count_bad(
          make_error(errc::decode_error, "control request without a body"));
        continue;
      }
      while (body.more()) { // drain extra frames of a malformed request
        zmq::message_t extra;
        if (!router.recv(extra, zmq::recv_flags::dontwait))
          break;
      }
      control_peer from{id.to_string()};
      auto reply = listener->on_control_request(body.to_string_view(), from);
      if (reply) // else the listener answers later, through `pump::reply`
        send_reply(from.routing_id, *reply);
    }
  }

  // Sends `body` on the ROUTER to the peer whose routing id is `to`. A
  // ROUTER drops what it cannot route (the peer is gone) or queue (HWM).
  void send_reply(const std::string& to, const std::string& body) {
    zmq::message_t id{to.data(), to.size()};
    zmq::message_t out{body.data(), body.size()};
    if (router.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      [[maybe_unused]]
      auto ok = router.send(out, zmq::send_flags::dontwait);
  }

  void read_replies(size_t k) {
    auto& [endpoint, sock] = dealers[k];
    zmq::message_t body;
    while (sock.recv(body, zmq::recv_flags::dontwait))
      listener->on_control_reply(endpoint, body.to_string_view());
  }

  void send_heartbeat(const std::string& body) {
    if (body.empty())
      return;
    zmq::message_t head{heartbeat_topic.data(), heartbeat_topic.size()};
    zmq::message_t msg{body.data(), body.size()};
    if (pub.send(head, zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      [[maybe_unused]]
      auto ok = pub.send(msg, zmq::send_flags::dontwait);
  }

  void read_subscriptions() {
    zmq::message_t msg;
    while (pub.recv(msg, zmq::recv_flags::dontwait)) {
      if (msg.size() == 0)
        continue;
      auto first = static_cast<const uint8_t*>(msg.data())[0];
      // Every node subscribes to heartbeats as it starts, before its
      // consumers' topics: that one says nobody listens to events yet.
      std::string_view topic{static_cast<const char*>(msg.data()) + 1,
                             msg.size() - 1};
      if (topic == heartbeat_topic)
        continue;
      if (first == 1)
        stats.subscriptions.fetch_add(1, std::memory_order_relaxed);
      else if (first == 0)
        stats.subscriptions.fetch_sub(1, std::memory_order_relaxed);
    }
    // Taking the lock orders this notify after a waiter's predicate check.
    { std::lock_guard<std::mutex> guard{sub_mtx}; }
    sub_cv.notify_all();
  }

  void read_events() {
    event_batch events;
    events.reserve(64);
    zmq::message_t topic;
    zmq::message_t body;
    while (events.size() < cfg.max_batch
           && sub.recv(topic, zmq::recv_flags::dontwait)) {
      if (!topic.more()) {
        count_bad(
          make_error(errc::decode_error,
                     "message of one frame; expected [type][envelope]"));
        continue;
      }
      // Parts of a multipart message arrive together.
      if (!sub.recv(body, zmq::recv_flags::dontwait))
        continue;
      bool extra = false;
      while (body.more()) { // drain unexpected extra frames
        extra = true;
        if (!sub.recv(body, zmq::recv_flags::dontwait))
          break;
      }
      if (extra) {
        count_bad(
          make_error(errc::decode_error, "message of more than two frames"));
        continue;
      }
      if (topic.to_string_view() == heartbeat_topic) {
        // The heartbeat counts the events before it: hand those over first.
        if (!events.empty()) {
          stats.received.fetch_add(events.size(), std::memory_order_relaxed);
          listener->on_events(events);
          events.clear();
        }
        listener->on_heartbeat(body.to_string_view());
        continue;
      }
      // The body may carry several envelopes of the topic's type; the
      // events refer into it, so it moves to a shared owner, uncopied.
      auto owner = std::make_shared<zmq::message_t>(std::move(body));
      std::string_view frame{static_cast<const char*>(owner->data()),
                             owner->size()};
      auto type = topic.to_string_view();
      size_t offset = 0;
      while (offset < frame.size()) {
        auto ev = decode_next(frame, offset, owner, limits);
        if (!ev) {
          // The rest of this message cannot be delimited: drop it.
          count_bad(ev.error());
          break;
        }
        if (ev->type() != type) {
          count_bad(make_error(
            errc::decode_error,
            fmt::format("topic frame '{}' differs from the envelope's "
                        "event_type '{}'",
                        type, ev->type())));
          continue;
        }
        events.push_back(std::move(*ev));
      }
    }
    if (!events.empty()) {
      stats.received.fetch_add(events.size(), std::memory_order_relaxed);
      listener->on_events(events);
    }
  }

  // --- Watching connections ------------------------------------------------

  // Starts monitoring `sock` (before it binds or connects, so no event is
  // missed). `endpoint` names a DEALER's control endpoint.
  void watch(zmq::socket_t& sock, std::string_view role,
             std::string endpoint = {}) {
    auto address = fmt::format("inproc://herald.monitor.{}", next_monitor++);
    auto events = ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                  | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                  | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    if (zmq_socket_monitor(sock.handle(), address.c_str(), events) != 0)
      throw zmq::error_t{};
    zmq::socket_t mon{ctx, zmq::socket_type::pair};
    mon.set(zmq::sockopt::linger, 0);
    mon.connect(address);
    watches.push_back({role, std::move(endpoint), std::move(mon)});
  }

  // Reads the events of watch `k`: reports ended connections and
  // schedules the repair of this node's own.
  void read_monitor(size_t k) {
    auto& w = watches[k];
    zmq::message_t head;
    zmq::message_t address;
    while (w.monitor.recv(head, zmq::recv_flags::dontwait)) {
      if (!head.more() || !w.monitor.recv(address, zmq::recv_flags::dontwait)
          || head.size() < 6)
        continue;
      uint16_t event = 0;
      uint32_t value = 0;
      std::memcpy(&event, head.data(), sizeof(event));
      std::memcpy(&value, static_cast<const char*>(head.data()) + 2,
                  sizeof(value));
      // A DEALER has one endpoint; a SUB names the peer it lost.
      auto endpoint =
        w.endpoint.empty() ? peer_of(address.to_string()) : w.endpoint;
      if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
        continue;
      std::string what =
        event == ZMQ_EVENT_DISCONNECTED ? std::string{"disconnected"}
        : event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
          ? fmt::format("handshake failed (protocol error {:#x})", value)
        : event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
          ? fmt::format("handshake failed (authentication, status {})", value)
          : fmt::format("handshake failed ({})",
                        zmq_strerror(static_cast<int>(value)));
      peer_event e{w.socket, endpoint, what, {}};
      if (w.socket == "SUB" || w.socket == "DEALER")
        e.reconnect_in = schedule_repair(w.socket, endpoint);
      stats.disconnects.fetch_add(1, std::memory_order_relaxed);
      listener->on_disconnect(e);
    }
  }

  // The configured peer a SUB event's address names: libzmq may spell it
  // otherwise (a resolved host), so a unique port match counts too.
  std::string peer_of(const std::string& address) const {
    const std::string* match = nullptr;
    auto port = address.substr(address.rfind(':') + 1);
    for (auto& p : cfg.peers) {
      if (p == address)
        return p;
      if (p.substr(p.rfind(':') + 1) == port)
        match = match ? nullptr : &p;
    }
    return match ? *match : address;
  }

  // Schedules the recreation of a connection of this node's; returns in
  // how long.
  std::chrono::milliseconds schedule_repair(std::string_view role,
                                            const std::string& endpoint) {
    auto now = std::chrono::steady_clock::now();
    for (auto& r : repairs)
      if (r.socket == role && r.endpoint == endpoint)
        return std::max(
          std::chrono::milliseconds{1},
          std::chrono::duration_cast<std::chrono::milliseconds>(r.due - now));
    auto& b = backoffs[fmt::format("{} {}", role, endpoint)];
    // A connection recreated less than 5 s ago that ended again waits
    // twice as long as the last time.
    b.delay = (b.delay.count() == 0 || now - b.last_repair > max_repair_delay)
                ? first_repair_delay
                : std::min(b.delay * 2, max_repair_delay);
    repairs.push_back({role, endpoint, now + b.delay});
    return b.delay;
  }

  // Recreates the connections whose time came: libzmq does not reconnect
  // after a protocol error, and a disconnect + connect is harmless after a
  // connection error, so every ended connection is made anew.
  void run_repairs(std::chrono::steady_clock::time_point now) {
    for (size_t i = 0; i < repairs.size();) {
      if (repairs[i].due > now) {
        ++i;
        continue;
      }
      auto r = std::move(repairs[i]);
      repairs.erase(repairs.begin() + static_cast<std::ptrdiff_t>(i));
      backoffs[fmt::format("{} {}", r.socket, r.endpoint)].last_repair = now;
      zmq::socket_t* sock = &sub;
      if (r.socket == "DEALER") {
        sock = nullptr;
        for (auto& [ep, d] : dealers)
          if (ep == r.endpoint)
            sock = &d;
      }
      if (sock == nullptr)
        continue;
      try {
        try {
          sock->disconnect(r.endpoint);
        } catch (const zmq::error_t&) {
          // ENOENT: libzmq dropped the connection already.
        }
        sock->connect(r.endpoint);
        stats.reconnects.fetch_add(1, std::memory_order_relaxed);
      } catch (const zmq::error_t& e) {
        count_io(make_error(errc::io_error,
                            fmt::format("cannot reconnect the {} socket to "
                                        "'{}': {}",
                                        r.socket, r.endpoint, e.what())));
      }
    }
  }

  // When the next repair is due; `far` when none is.
  std::chrono::steady_clock::time_point
  next_repair(std::chrono::steady_clock::time_point far) const {
    for (auto& r : repairs)
      far = std::min(far, r.due);
    return far;
  }

  // A message arrived and could not be decoded.
  void count_bad(const caf::error& err) {
    stats.bad_frames.fetch_add(1, std::memory_order_relaxed);
    listener->on_bad_frame(err);
  }

  // A ZeroMQ operation failed; no message is to blame.
  void count_io(const caf::error& err) {
    stats.io_errors.fetch_add(1, std::memory_order_relaxed);
    listener->on_io_error(err);
  }

  void loop() {
    std::vector<zmq::pollitem_t> items;
    next_heartbeat = std::chrono::steady_clock::now();
    for (;;) {
      try {
        items.clear();
        items.push_back({nullptr, wake_fd, ZMQ_POLLIN, 0});
        items.push_back({pub.handle(), 0, ZMQ_POLLIN, 0});
        items.push_back({sub.handle(), 0, ZMQ_POLLIN, 0});
        items.push_back({router.handle(), 0, ZMQ_POLLIN, 0});
        for (auto& d : dealers)
          items.push_back({d.second.handle(), 0, ZMQ_POLLIN, 0});
        auto watches_at = items.size();
        for (auto& w : watches)
          items.push_back({w.monitor.handle(), 0, ZMQ_POLLIN, 0});
        auto now = std::chrono::steady_clock::now();
        run_repairs(now);
        if (now >= next_heartbeat) {
          // The heartbeat counts events handed to the pump before it was
          // made; sending what is queued before it keeps it behind them on
          // the wire.
          auto body = listener->make_heartbeat();
          if (!run_commands())
            break;
          send_heartbeat(body);
          next_heartbeat = now + cfg.stream_heartbeat;
        }
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
          next_repair(next_heartbeat) - now);
        zmq::poll(items.data(), items.size(),
                  std::max(wait, std::chrono::milliseconds{1}));
        if (items[1].revents & ZMQ_POLLIN)
          read_subscriptions();
        if (items[2].revents & ZMQ_POLLIN)
          read_events();
        if (items[3].revents & ZMQ_POLLIN)
          read_requests();
        for (size_t k = 4; k < watches_at; ++k)
          if (items[k].revents & ZMQ_POLLIN)
            read_replies(k - 4);
        for (size_t k = watches_at; k < items.size(); ++k)
          if (items[k].revents & ZMQ_POLLIN)
            read_monitor(k - watches_at);
        if ((items[0].revents & ZMQ_POLLIN) && !run_commands())
          break;
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM)
          break;
        if (e.num() != EINTR)
          count_io(
            make_error(errc::io_error, fmt::format("transport: {}", e.what())));
      }
    }
    watches.clear();
    pub.close();
    sub.close();
    router.close();
    dealers.clear();
  }
};

caf::expected<std::unique_ptr<pump>> pump::start(pump_config cfg,
                                                 pump_listener* listener) {
  auto p = std::make_unique<impl>();
  p->cfg = std::move(cfg);
  p->listener = listener;
  p->limits.max_frame = p->cfg.max_message_size;
  p->max_batch_bytes = std::min<size_t>(64 * 1024, p->cfg.max_message_size);
  p->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (p->wake_fd < 0)
    return make_error(errc::io_error, "cannot create the pump's eventfd");
  try {
    p->watch(p->pub, "XPUB");
    p->watch(p->sub, "SUB");
    p->watch(p->router, "ROUTER");
    p->set_common(p->pub);
    p->pub.set(zmq::sockopt::sndhwm, p->cfg.hwm);
    p->pub.set(zmq::sockopt::xpub_verbose, 1);
    p->set_common(p->sub);
    p->sub.set(zmq::sockopt::rcvhwm, p->cfg.hwm);
    p->sub.set(zmq::sockopt::subscribe, heartbeat_topic);
    p->set_common(p->router);
    p->router.set(zmq::sockopt::linger, 0);
  } catch (const zmq::error_t& e) {
    return make_error(errc::io_error,
                      fmt::format("cannot set socket options: {}", e.what()));
  }
  // Binds `sock` to `where`, the setting `key`; returns the endpoint with
  // the port resolved.
  auto bind = [&origin = p->cfg.origin](
                zmq::socket_t& sock, const std::string& where, const char* key,
                const char* what) -> caf::expected<std::string> {
    try {
      sock.bind(where);
      return sock.get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t& e) {
      return origin.locate(
        key, where,
        make_error(errc::io_error,
                   fmt::format("cannot bind the {} endpoint '{}': {}; "
                               "check the address and that the port is "
                               "free",
                               what, where, e.what())));
    }
  };
  auto endpoint = bind(p->pub, p->cfg.bind, "bind", "PUB");
  if (!endpoint)
    return std::move(endpoint.error());
  auto control = bind(p->router, p->cfg.control_bind, "control", "control");
  if (!control)
    return std::move(control.error());
  for (auto& peer : p->cfg.peers) {
    try {
      p->sub.connect(peer);
    } catch (const zmq::error_t& e) {
      return p->cfg.origin.locate(
        "peers", peer,
        make_error(errc::io_error, fmt::format("cannot connect to peer '{}': "
                                               "{}",
                                               peer, e.what())));
    }
  }
  auto* raw = p.get();
  std::unique_ptr<pump> result{new pump(std::move(p))};
  result->endpoint_ = std::move(*endpoint);
  result->control_endpoint_ = std::move(*control);
  raw->thread = std::thread{[raw] {
    pthread_setname_np(pthread_self(), "herald.pump");
    raw->loop();
  }};
  return result;
}

pump::pump(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {}

pump::~pump() {
  stop();
}

void pump::send_all(std::vector<outgoing>& messages) {
  impl_->push_sends(messages);
}

void pump::request(std::string endpoint, std::string body) {
  impl_->push(
    {command::kind::request, std::move(endpoint), {}, std::move(body)});
}

void pump::reply(const control_peer& to, std::string reply) {
  impl_->push({command::kind::reply, to.routing_id, {}, std::move(reply)});
}

void pump::subscribe(std::string prefix) {
  impl_->push({command::kind::subscribe, std::move(prefix), {}, {}});
}

bool pump::wait_for_subscriptions(int64_t n,
                                  std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{impl_->sub_mtx};
  return impl_->sub_cv.wait_for(guard, timeout, [&] {
    return impl_->stats.subscriptions.load() >= n;
  });
}

const pump_stats& pump::stats() const noexcept {
  return impl_->stats;
}

void pump::stop() {
  if (!impl_ || !impl_->thread.joinable())
    return;
  impl_->push({command::kind::stop, {}, {}, {}});
  impl_->thread.join();
  impl_->ctx.close();
}

} // namespace herald::transport
