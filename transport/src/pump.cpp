#include "herald/transport/pump.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <zmq.hpp>

#include "herald/core/errc.hpp"

namespace herald::transport {

namespace {

using clock = std::chrono::steady_clock;

struct command {
  enum class kind : uint8_t {
    send,
    subscribe,
    request,
    reply,
    connect_peer,
    disconnect_peer,
    close_control,
    stop
  };
  kind what;
  std::string a;          // envelope, prefix, endpoint (request, peer,
                          // control) or routing id (reply)
  std::string_view topic; // for send
  std::string b;          // request or reply body
};

constexpr auto first_repair_delay = std::chrono::milliseconds{100};
constexpr auto max_repair_delay = std::chrono::milliseconds{5000};

// A connection the pump made: a SUB to a peer's PUB endpoint or a DEALER to
// a control endpoint, the PAIR end of its monitor, and its repair. One
// endpoint per socket, so the socket names the peer of every message and
// monitor event.
struct link {
  std::string_view role; // SUB or DEALER
  std::string endpoint;  // as given to the pump
  zmq::socket_t sock;
  zmq::socket_t monitor;
  // When the pump recreates the connection, if `repair_pending`.
  bool repair_pending = false;
  // A TCP connection is up and its ZMTP handshake not done yet.
  bool handshaking = false;
  clock::time_point repair_due;
  // How soon: grows while recreated connections keep ending soon after.
  std::chrono::milliseconds delay{0};
  clock::time_point last_repair;
  // When a request went out or a reply came last (DEALERs: the idle
  // timeout and the choice of which one to close at the bound).
  clock::time_point last_used = clock::now();

  link(std::string_view r, std::string ep, zmq::socket_t s)
      : role(r), endpoint(std::move(ep)), sock(std::move(s)) {}
  link(const link&) = delete;
  link& operator=(const link&) = delete;

  // How long what is still queued may take to go out once the socket is
  // closed (ZMQ_LINGER, milliseconds): 0 drops it.
  int close_linger_ms = 0;

  // Stops the monitor before the socket goes (libzmq's rule: the monitored
  // socket must be open to stop it), then closes both at once, the socket
  // with `close_linger_ms`.
  ~link() {
    if (sock.handle() != nullptr) {
      zmq_socket_monitor(sock.handle(), nullptr, 0);
      zmq_setsockopt(sock.handle(), ZMQ_LINGER, &close_linger_ms,
                     sizeof(close_linger_ms));
      sock.close();
    }
    monitor.close();
  }
};

using links = std::vector<std::unique_ptr<link>>;

// Replies to one control client that libzmq's queue for it had no room
// for, oldest first, and their bytes (each counted with a string's size,
// so that many small ones count too).
struct client_backlog {
  std::deque<std::string> replies;
  size_t bytes = 0;
  // Since when libzmq has said the client is unreachable, if it has.
  std::optional<clock::time_point> gone_since;
};

// libzmq may say EHOSTUNREACH, not EAGAIN, for a connected client's queue in
// some states of its pipe: a client counts as gone only when it is so for
// this long.
constexpr auto gone_after = std::chrono::milliseconds{5000};

// How long a stopping pump lets its DEALERs' queued requests go out, at
// most (and at most `pump_config::linger`).
constexpr int64_t dealer_close_linger_ms = 200;

size_t backlog_cost(const std::string& reply) {
  return reply.size() + sizeof(std::string);
}

link* find(const links& all, std::string_view endpoint) {
  for (auto& l : all)
    if (l->endpoint == endpoint)
      return l.get();
  return nullptr;
}

// Closes the link to `endpoint`, if any.
void close_link(links& all, std::string_view endpoint) {
  std::erase_if(all, [&](const std::unique_ptr<link>& l) {
    return l->endpoint == endpoint;
  });
}

} // namespace

struct pump::impl {
  pump_config cfg;
  pump_listener* listener = nullptr;
  zmq::context_t ctx{1};
  zmq::socket_t pub{ctx, zmq::socket_type::xpub};
  zmq::socket_t router{ctx, zmq::socket_type::router};
  zmq::socket_t pub_monitor;
  zmq::socket_t router_monitor;
  // One SUB per peer PUB endpoint; one DEALER per control endpoint, made
  // on first request. Pump thread only (and `start` before it runs).
  links subs;
  links dealers;
  // Every prefix `subscribe` was given, in order: what a new SUB takes.
  std::vector<std::string> prefixes;
  // Replies waiting for control clients that do not read, by routing id.
  std::unordered_map<std::string, client_backlog> backlogs;
  size_t backlog_limit = 0; // per client
  clock::time_point next_heartbeat;
  clock::time_point next_tick;
  int wake_fd = -1;
  std::thread thread;
  pump_stats stats;
  decode_limits limits;
  // What `sockets()` reports; written on the pump thread.
  std::atomic<size_t> open_subs{0};
  std::atomic<size_t> open_dealers{0};
  std::atomic<size_t> open_monitors{0};

  std::mutex mtx; // guards queue
  std::vector<command> queue;
  std::vector<command> batch; // pump thread only
  size_t max_batch_bytes = 0;
  std::mutex sub_mtx; // guards nothing but pairs with sub_cv
  std::condition_variable sub_cv;
  uint64_t next_monitor = 0;

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

  void count_sockets() {
    open_subs.store(subs.size(), std::memory_order_relaxed);
    open_dealers.store(dealers.size(), std::memory_order_relaxed);
    auto fixed = static_cast<size_t>(pub_monitor.handle() != nullptr)
                 + static_cast<size_t>(router_monitor.handle() != nullptr);
    open_monitors.store(fixed + subs.size() + dealers.size(),
                        std::memory_order_relaxed);
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
        subscribe_all(std::move(cmd.a));
        break;
      case command::kind::request:
        send_request(cmd.a, cmd.b);
        break;
      case command::kind::reply:
        send_reply(cmd.a, std::move(cmd.b));
        break;
      case command::kind::connect_peer:
        if (auto err = connect_peer(cmd.a))
          count_io(err);
        break;
      case command::kind::disconnect_peer:
        close_link(subs, cmd.a);
        count_sockets();
        break;
      case command::kind::close_control:
        close_link(dealers, cmd.a);
        count_sockets();
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

  // --- The pump's own connections ------------------------------------------

  // Makes a socket of `type` for `endpoint`, lets `configure` set its
  // options, watches it and connects it. Throws `zmq::error_t`; nothing is
  // left open then.
  template <class Configure>
  std::unique_ptr<link> open_link(std::string_view role, zmq::socket_type type,
                                  const std::string& endpoint,
                                  Configure&& configure) {
    auto l = std::make_unique<link>(role, endpoint, zmq::socket_t{ctx, type});
    set_common(l->sock);
    configure(l->sock);
    l->monitor = watch(l->sock);
    l->sock.connect(endpoint);
    return l;
  }

  // Connects a SUB of its own to the peer PUB endpoint `pub`, unless it
  // has one. Fails with `errc::io_error` naming the peer.
  caf::error connect_peer(const std::string& endpoint) {
    if (find(subs, endpoint) != nullptr)
      return {};
    try {
      subs.push_back(open_link(
        "SUB", zmq::socket_type::sub, endpoint, [this](zmq::socket_t& s) {
          s.set(zmq::sockopt::rcvhwm, cfg.hwm);
          s.set(zmq::sockopt::subscribe, heartbeat_topic);
          for (auto& prefix : prefixes)
            s.set(zmq::sockopt::subscribe, prefix);
        }));
    } catch (const zmq::error_t& e) {
      return make_error(
        errc::io_error,
        fmt::format("cannot connect to peer '{}': {}", endpoint, e.what()));
    }
    count_sockets();
    return {};
  }

  void subscribe_all(std::string prefix) {
    for (auto& l : subs) {
      try {
        l->sock.set(zmq::sockopt::subscribe, prefix);
      } catch (const zmq::error_t& e) {
        count_io(make_error(errc::io_error,
                            fmt::format("cannot subscribe the SUB socket of "
                                        "peer '{}' to '{}': {}",
                                        l->endpoint, prefix, e.what())));
      }
    }
    prefixes.push_back(std::move(prefix));
  }

  zmq::socket_t& dealer_for(const std::string& endpoint,
                            clock::time_point now) {
    if (auto* l = find(dealers, endpoint)) {
      l->last_used = now;
      return l->sock;
    }
    if (dealers.size() >= std::max<size_t>(cfg.max_control_sockets, 1)) {
      // At the bound: the one used least recently goes (a later request
      // to it makes a new one), so a new stream can always be asked.
      auto oldest = std::min_element(dealers.begin(), dealers.end(),
                                     [](const auto& a, const auto& b) {
                                       return a->last_used < b->last_used;
                                     });
      stats.control_sockets_evicted.fetch_add(1, std::memory_order_relaxed);
      listener->on_control_closed(
        (*oldest)->endpoint,
        fmt::format("{} control sockets open, "
                    "transport.max_control_sockets; it was used least "
                    "recently",
                    dealers.size()));
      dealers.erase(oldest);
    }
    dealers.push_back(open_link("DEALER", zmq::socket_type::dealer, endpoint,
                                [](zmq::socket_t& s) {
                                  s.set(zmq::sockopt::linger, 0);
                                }));
    count_sockets();
    return dealers.back()->sock;
  }

  void send_request(const std::string& endpoint, const std::string& body) {
    try {
      auto& sock = dealer_for(endpoint, clock::now());
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
      control_peer from{id.to_string(), 0};
      if (auto b = backlogs.find(from.routing_id); b != backlogs.end())
        from.backlog_bytes = b->second.bytes;
      auto reply = listener->on_control_request(body.to_string_view(), from);
      if (reply) // else the listener answers later, through `pump::reply`
        send_reply(from.routing_id, std::move(*reply));
    }
  }

  enum class sent : uint8_t { ok, full, gone };

  // Hands `body` to libzmq for the client whose routing id is `to`: `full`
  // when its queue is at ZMQ_SNDHWM, `gone` when no such client is
  // connected (ZMQ_ROUTER_MANDATORY says both).
  sent try_send(const std::string& to, const std::string& body) {
    try {
      zmq::message_t id{to.data(), to.size()};
      if (!router.send(id,
                       zmq::send_flags::sndmore | zmq::send_flags::dontwait))
        return sent::full;
      zmq::message_t out{body.data(), body.size()};
      // The frames of one message go together: a first frame taken means
      // room for the second.
      [[maybe_unused]] auto ok = router.send(out, zmq::send_flags::dontwait);
      return sent::ok;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH)
        return sent::gone;
      throw;
    }
  }

  // Sends `body` to the client `to`, after the replies kept for it; keeps
  // it when libzmq's queue for the client is full and it fits its
  // backlog, drops it otherwise.
  void send_reply(const std::string& to, std::string body) {
    auto it = backlogs.find(to);
    if (it == backlogs.end()) {
      auto r = try_send(to, body);
      if (r == sent::ok)
        return;
      it = backlogs.try_emplace(to).first;
      if (r == sent::gone)
        it->second.gone_since = clock::now();
    }
    auto& b = it->second;
    auto cost = backlog_cost(body);
    if (b.bytes + cost > backlog_limit) {
      stats.control_replies_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    b.bytes += cost;
    b.replies.push_back(std::move(body));
    stats.control_backlog_bytes.fetch_add(cost, std::memory_order_relaxed);
  }

  // Sends what clients' backlogs hold, as far as their queues take it;
  // frees the backlogs of clients that left.
  void flush_backlogs() {
    for (auto it = backlogs.begin(); it != backlogs.end();) {
      auto& b = it->second;
      sent r = sent::ok;
      while (!b.replies.empty()) {
        r = try_send(it->first, b.replies.front());
        if (r != sent::ok)
          break;
        b.gone_since.reset();
        auto cost = backlog_cost(b.replies.front());
        b.bytes -= cost;
        stats.control_backlog_bytes.fetch_sub(cost, std::memory_order_relaxed);
        b.replies.pop_front();
      }
      if (r == sent::gone && !b.gone_since)
        b.gone_since = clock::now();
      if (r == sent::gone && clock::now() - *b.gone_since >= gone_after) {
        stats.control_replies_dropped.fetch_add(b.replies.size(),
                                                std::memory_order_relaxed);
        stats.control_backlog_bytes.fetch_sub(b.bytes,
                                              std::memory_order_relaxed);
        it = backlogs.erase(it);
      } else if (b.replies.empty()) {
        it = backlogs.erase(it);
      } else {
        ++it;
      }
    }
  }

  void read_replies(link& dealer) {
    zmq::message_t body;
    while (dealer.sock.recv(body, zmq::recv_flags::dontwait)) {
      dealer.last_used = clock::now();
      listener->on_control_reply(dealer.endpoint, body.to_string_view());
    }
  }

  // Closes the DEALERs that sent and received nothing for `control_idle`.
  void close_idle(clock::time_point now) {
    auto before = dealers.size();
    std::erase_if(dealers, [&](const std::unique_ptr<link>& l) {
      if (now - l->last_used < cfg.control_idle)
        return false;
      listener->on_control_closed(l->endpoint,
                                  "idle for transport.control_idle_ms");
      return true;
    });
    if (auto n = before - dealers.size(); n > 0) {
      stats.control_sockets_idle_closed.fetch_add(n, std::memory_order_relaxed);
      count_sockets();
    }
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

  // Reads up to `max_batch` events from the SUB of one peer and hands them
  // to the listener, tagged with that peer's endpoint.
  void read_events(link& peer) {
    auto& sub = peer.sock;
    std::string_view from = peer.endpoint;
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
          listener->on_events(events, from);
          events.clear();
        }
        listener->on_heartbeat(body.to_string_view(), from);
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
      listener->on_events(events, from);
    }
  }

  // --- Watching connections ------------------------------------------------

  // Starts monitoring `sock` (before it binds or connects, so no event is
  // missed); returns the PAIR end to read the events from.
  zmq::socket_t watch(zmq::socket_t& sock) {
    auto address = fmt::format("inproc://herald.monitor.{}", next_monitor++);
    auto events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED
                  | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                  | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                  | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    if (zmq_socket_monitor(sock.handle(), address.c_str(), events) != 0)
      throw zmq::error_t{};
    zmq::socket_t mon{ctx, zmq::socket_type::pair};
    mon.set(zmq::sockopt::linger, 0);
    try {
      mon.connect(address);
    } catch (const zmq::error_t&) {
      zmq_socket_monitor(sock.handle(), nullptr, 0);
      throw;
    }
    return mon;
  }

  // Reads the events of `monitor`, the monitor of the `role` socket:
  // reports ended connections and schedules the repair of `own`, the
  // pump's own connection (null for the XPUB and the ROUTER, whose
  // connections peers made: those peers reconnect).
  void read_monitor(zmq::socket_t& monitor, std::string_view role, link* own) {
    zmq::message_t head;
    zmq::message_t address;
    while (monitor.recv(head, zmq::recv_flags::dontwait)) {
      if (!head.more() || !monitor.recv(address, zmq::recv_flags::dontwait)
          || head.size() < 6)
        continue;
      uint16_t event = 0;
      uint32_t value = 0;
      std::memcpy(&event, head.data(), sizeof(event));
      std::memcpy(&value, static_cast<const char*>(head.data()) + 2,
                  sizeof(value));
      if (event == ZMQ_EVENT_CONNECTED) {
        if (own != nullptr)
          own->handshaking = true;
        continue;
      }
      if (own != nullptr)
        own->handshaking = false;
      if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        // libzmq reconnected by itself (the connection ended with a
        // network error, not a protocol error): a repair now would cut
        // the live connection and lose what the peer sends meanwhile.
        if (own != nullptr && own->repair_pending) {
          own->repair_pending = false;
          own->delay = std::chrono::milliseconds{0};
        }
        continue;
      }
      std::string what =
        event == ZMQ_EVENT_DISCONNECTED ? std::string{"disconnected"}
        : event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
          ? fmt::format("handshake failed (protocol error {:#x})", value)
        : event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
          ? fmt::format("handshake failed (authentication, status {})", value)
          : fmt::format("handshake failed ({})",
                        zmq_strerror(static_cast<int>(value)));
      auto endpoint = own != nullptr ? std::string_view{own->endpoint}
                                     : address.to_string_view();
      peer_event e{role, endpoint, what, {}};
      if (own != nullptr)
        e.reconnect_in = schedule_repair(*own);
      stats.disconnects.fetch_add(1, std::memory_order_relaxed);
      listener->on_disconnect(e);
    }
  }

  // Schedules the recreation of a connection of this node's; returns in
  // how long.
  static std::chrono::milliseconds schedule_repair(link& l) {
    auto now = clock::now();
    if (l.repair_pending)
      return std::max(std::chrono::milliseconds{1},
                      std::chrono::duration_cast<std::chrono::milliseconds>(
                        l.repair_due - now));
    // A connection recreated less than 5 s ago that ended again waits
    // twice as long as the last time.
    l.delay = (l.delay.count() == 0 || now - l.last_repair > max_repair_delay)
                ? first_repair_delay
                : std::min(l.delay * 2, max_repair_delay);
    l.repair_pending = true;
    l.repair_due = now + l.delay;
    return l.delay;
  }

  // Recreates the connections whose time came: libzmq does not reconnect
  // after a protocol error, and a disconnect + connect is harmless while
  // no connection is up, so every ended connection that did not come back
  // by itself (see `read_monitor`) is made anew.
  void run_repairs(clock::time_point now) {
    for (auto* all : {&subs, &dealers})
      for (auto& l : *all) {
        if (!l->repair_pending || l->repair_due > now)
          continue;
        // A handshake that succeeded since the last poll cancels it; one
        // under way (libzmq reconnecting) postpones it: it ends either
        // way with an event, success or failure.
        read_monitor(l->monitor, l->role, l.get());
        if (l->repair_pending && l->handshaking)
          l->repair_due = now + first_repair_delay;
        else if (l->repair_pending)
          repair(*l, now);
      }
  }

  void repair(link& l, clock::time_point now) {
    l.repair_pending = false;
    l.last_repair = now;
    try {
      try {
        l.sock.disconnect(l.endpoint);
      } catch (const zmq::error_t&) {
        // ENOENT: libzmq dropped the connection already.
      }
      l.sock.connect(l.endpoint);
      stats.reconnects.fetch_add(1, std::memory_order_relaxed);
    } catch (const zmq::error_t& e) {
      count_io(make_error(errc::io_error,
                          fmt::format("cannot reconnect the {} socket to "
                                      "'{}': {}",
                                      l.role, l.endpoint, e.what())));
    }
  }

  // When the next repair is due; `far` when none is sooner.
  clock::time_point next_repair(clock::time_point far) const {
    for (auto* all : {&subs, &dealers})
      for (auto& l : *all)
        if (l->repair_pending)
          far = std::min(far, l->repair_due);
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

  // --- The loop ------------------------------------------------------------

  // The timed work: repairs, the stream heartbeat and the listener's tick.
  // Returns false when asked to stop.
  bool run_timers(clock::time_point now) {
    run_repairs(now);
    if (!backlogs.empty())
      flush_backlogs();
    if (now >= next_heartbeat) {
      // The heartbeat counts events handed to the pump before it was
      // made; sending what is queued before it keeps it behind them on
      // the wire.
      auto body = listener->make_heartbeat();
      if (!run_commands())
        return false;
      send_heartbeat(body);
      next_heartbeat = now + cfg.stream_heartbeat;
    }
    if (now >= next_tick) {
      close_idle(now);
      listener->on_tick(now);
      next_tick = now + cfg.tick;
    }
    return true;
  }

  // Polled in this order: the wake-up eventfd, XPUB, ROUTER, their
  // monitors, then per SUB and per DEALER its socket and its monitor.
  static constexpr size_t fixed_items = 5;

  void poll_items(std::vector<zmq::pollitem_t>& items) {
    items.clear();
    items.push_back({nullptr, wake_fd, ZMQ_POLLIN, 0});
    for (auto* s : {&pub, &router, &pub_monitor, &router_monitor})
      items.push_back({s->handle(), 0, ZMQ_POLLIN, 0});
    for (auto* all : {&subs, &dealers})
      for (auto& l : *all) {
        items.push_back({l->sock.handle(), 0, ZMQ_POLLIN, 0});
        items.push_back({l->monitor.handle(), 0, ZMQ_POLLIN, 0});
      }
  }

  void loop() {
    std::vector<zmq::pollitem_t> items;
    next_heartbeat = clock::now();
    next_tick = next_heartbeat;
    for (;;) {
      try {
        auto now = clock::now();
        if (!run_timers(now))
          break;
        // After the timers: their commands may have closed sockets.
        poll_items(items);
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
          next_repair(std::min(next_heartbeat, next_tick)) - now);
        zmq::poll(items.data(), items.size(),
                  std::max(wait, std::chrono::milliseconds{1}));
        auto ready = [&](size_t k) {
          return (items[k].revents & ZMQ_POLLIN) != 0;
        };
        if (ready(1))
          read_subscriptions();
        size_t k = fixed_items;
        for (auto& l : subs) {
          if (ready(k))
            read_events(*l);
          k += 2;
        }
        if (ready(2)) {
          if (!backlogs.empty())
            flush_backlogs(); // the client may have read meanwhile
          read_requests();
        }
        for (auto& l : dealers) {
          if (ready(k))
            read_replies(*l);
          k += 2;
        }
        if (ready(3))
          read_monitor(pub_monitor, "XPUB", nullptr);
        if (ready(4))
          read_monitor(router_monitor, "ROUTER", nullptr);
        k = fixed_items + 1;
        for (auto* all : {&subs, &dealers})
          for (auto& l : *all) {
            if (ready(k))
              read_monitor(l->monitor, l->role, l.get());
            k += 2;
          }
        // Last: commands may close the sockets `items` names.
        if (ready(0) && !run_commands())
          break;
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM)
          break;
        if (e.num() != EINTR)
          count_io(
            make_error(errc::io_error, fmt::format("transport: {}", e.what())));
      }
    }
    close_all();
  }

  void close_all() {
    subs.clear();
    // The last requests (a leaving node's pings telling the members) get a
    // moment to go out, even on a connection still being made: else a node
    // that stops right after its first contact with a member leaves
    // silently, and is taken for down seconds later.
    for (auto& d : dealers)
      d->close_linger_ms = static_cast<int>(
        std::min<int64_t>(cfg.linger.count(), dealer_close_linger_ms));
    dealers.clear();
    for (auto* s : {&pub, &router})
      if (s->handle() != nullptr)
        zmq_socket_monitor(s->handle(), nullptr, 0);
    pub_monitor.close();
    router_monitor.close();
    pub.close();
    router.close();
    count_sockets();
  }
};

caf::expected<std::unique_ptr<pump>> pump::start(pump_config cfg,
                                                 pump_listener* listener) {
  auto p = std::make_unique<impl>();
  p->cfg = std::move(cfg);
  p->listener = listener;
  p->limits.max_frame = p->cfg.max_message_size;
  p->max_batch_bytes = std::min<size_t>(64 * 1024, p->cfg.max_message_size);
  p->backlog_limit =
    std::max(p->cfg.control_backlog_bytes, p->cfg.max_message_size);
  p->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (p->cfg.tick.count() <= 0)
    return make_error(errc::invalid_argument,
                      fmt::format("pump_config::tick is {} ms; it must be "
                                  "positive",
                                  p->cfg.tick.count()));
  if (p->wake_fd < 0)
    return make_error(errc::io_error, "cannot create the pump's eventfd");
  try {
    p->pub_monitor = p->watch(p->pub);
    p->router_monitor = p->watch(p->router);
    p->set_common(p->pub);
    p->pub.set(zmq::sockopt::sndhwm, p->cfg.hwm);
    p->pub.set(zmq::sockopt::xpub_verbose, 1);
    p->set_common(p->router);
    p->router.set(zmq::sockopt::linger, 0);
    // Replies queued per client inside libzmq; with MANDATORY a full queue
    // (or a client gone) is an error the pump sees, not a silent drop.
    p->router.set(zmq::sockopt::sndhwm, std::max(p->cfg.control_send_hwm, 1));
    p->router.set(zmq::sockopt::router_mandatory, 1);
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
  for (auto& peer : p->cfg.peers)
    if (auto err = p->connect_peer(peer))
      return p->cfg.origin.locate("peers", peer, err);
  p->count_sockets();
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

void pump::close_control(std::string endpoint) {
  impl_->push({command::kind::close_control, std::move(endpoint), {}, {}});
}

void pump::subscribe(std::string prefix) {
  impl_->push({command::kind::subscribe, std::move(prefix), {}, {}});
}

void pump::connect_peer(std::string pub) {
  impl_->push({command::kind::connect_peer, std::move(pub), {}, {}});
}

void pump::disconnect_peer(std::string pub) {
  impl_->push({command::kind::disconnect_peer, std::move(pub), {}, {}});
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

socket_counts pump::sockets() const noexcept {
  return {impl_->open_subs.load(std::memory_order_relaxed),
          impl_->open_dealers.load(std::memory_order_relaxed),
          impl_->open_monitors.load(std::memory_order_relaxed)};
}

void pump::stop() {
  if (!impl_ || !impl_->thread.joinable())
    return;
  impl_->push({command::kind::stop, {}, {}, {}});
  impl_->thread.join();
  impl_->ctx.close();
}

} // namespace herald::transport
