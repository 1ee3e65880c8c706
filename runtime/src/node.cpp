#include "herald/runtime/node.hpp"

#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/transport/pump.hpp"

namespace herald {

namespace {

struct consumer_entry {
  std::string name;
  /// Everything the consumer subscribed to: routes batches to it.
  std::vector<pattern> patterns;
  caf::actor actor;
  std::shared_ptr<consumer_stats> stats;
};

bool selects(const std::vector<pattern>& patterns, std::string_view type) {
  for (auto& p : patterns)
    if (p.matches(type))
      return true;
  return false;
}

// Checks that `consumer` may subscribe to `p`: for an exact event name, the
// catalog must know the event and list the consumer.
caf::error check_subscription(const catalog& cat, const pattern& p,
                              std::string_view consumer) {
  if (!p.is_exact())
    return {};
  auto* spec = cat.find(p.text());
  if (spec == nullptr)
    return make_error(errc::unknown_event,
                      fmt::format("consumer '{}' subscribes to '{}', which "
                                  "is not in the catalog {}; add it there "
                                  "first",
                                  consumer, p.text(), cat.source()));
  if (!spec->has_consumer(consumer))
    return make_error(errc::catalog_violation,
                      fmt::format("consumer '{}' subscribes to '{}' but the "
                                  "catalog {} does not list it among the "
                                  "event's consumers; add it there",
                                  consumer, p.text(), cat.source()));
  return {};
}

} // namespace

struct node::impl : transport::pump_listener {
  node_config cfg;
  catalog cat;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<caf::actor_system_config> sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<transport::pump> pump;
  std::string stream;
  std::atomic<bool> running{false};

  mutable std::shared_mutex consumers_mtx; // guards consumers
  std::vector<consumer_entry> consumers;

  std::vector<caf::actor> services; // guarded by consumers_mtx
  std::set<std::string> prefixes;   // subscribed on the SUB socket; ditto

  // Subscribes the SUB socket to `prefix` unless it already is: one
  // subscription per prefix per node, however many consumers share it.
  // REQUIRES: consumers_mtx held exclusively.
  void subscribe_prefix(const std::string& prefix) {
    if (prefixes.insert(prefix).second)
      pump->subscribe(prefix);
  }

  std::mutex publish_mtx; // guards seq and type_seqs: one stream order
  uint64_t seq = 0;
  std::vector<uint64_t> type_seqs;

  ~impl() override {
    shutdown();
  }

  // Stops the pump, then the actors, then the actor system. Idempotent.
  void shutdown() {
    running = false;
    if (pump)
      pump->stop();
    if (!sys)
      return;
    {
      // The actor system waits for every actor on destruction: end them.
      std::unique_lock<std::shared_mutex> guard{consumers_mtx};
      for (auto& c : consumers)
        caf::anon_send_exit(c.actor, caf::exit_reason::user_shutdown);
      for (auto& s : services)
        caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    }
    sys.reset();
  }

  void on_events(event_batch& batch) override {
    dispatch(std::move(batch));
  }

  void on_bad_frame(const caf::error& why) override {
    log->warn("dropped a frame from the network: {}", message_of(why));
  }

  // Hands each consumer the events of `batch` it subscribed to, in order,
  // as one message.
  void dispatch(event_batch&& batch) {
    std::shared_lock<std::shared_mutex> guard{consumers_mtx};
    if (consumers.size() == 1) {
      // The common case of one service per node: no copy when it takes all.
      auto& c = consumers.front();
      bool all = true;
      for (auto& ev : batch)
        all = all && selects(c.patterns, ev.type());
      if (all) {
        c.stats->dispatched.fetch_add(batch.size(), std::memory_order_relaxed);
        caf::anon_send(c.actor, std::move(batch));
        return;
      }
    }
    for (auto& c : consumers) {
      event_batch mine;
      mine.reserve(batch.size());
      for (auto& ev : batch)
        if (selects(c.patterns, ev.type()))
          mine.push_back(ev);
      if (mine.empty())
        continue;
      c.stats->dispatched.fetch_add(mine.size(), std::memory_order_relaxed);
      caf::anon_send(c.actor, std::move(mine));
    }
  }

  bool any_local_consumer(std::string_view type) const {
    std::shared_lock<std::shared_mutex> guard{consumers_mtx};
    for (auto& c : consumers)
      if (selects(c.patterns, type))
        return true;
    return false;
  }

  // Finds or creates the consumer `name`. REQUIRES: consumers_mtx held
  // exclusively.
  consumer_entry& consumer(const std::string& name) {
    for (auto& c : consumers)
      if (c.name == name)
        return c;
    consumer_entry entry;
    entry.name = name;
    entry.stats = std::make_shared<consumer_stats>();
    consumer_setup setup{name, {}, entry.stats};
    for (auto& cc : cfg.consumers)
      if (cc.name == name)
        for (auto& text : cc.subscribe)
          setup.service_patterns.push_back(*pattern::parse(text));
    entry.patterns = setup.service_patterns;
    entry.actor = spawn_consumer(*sys, std::move(setup));
    consumers.push_back(std::move(entry));
    return consumers.back();
  }
};

caf::expected<std::unique_ptr<node>> node::start(node_config cfg) {
  auto p = std::make_unique<impl>();
  if (cfg.service.empty())
    cfg.service = cfg.name;
  auto cat = catalog::load_file(cfg.catalog);
  if (!cat)
    return std::move(cat.error());
  p->cat = std::move(*cat);
  p->type_seqs.resize(p->cat.events().size());
  auto level = spdlog::level::from_str(cfg.log_level);
  p->log = std::make_shared<spdlog::logger>(
    cfg.name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  p->log->set_pattern("%Y-%m-%dT%H:%M:%S.%f %^%l%$ node=%n %v");
  p->log->set_level(level);
  // Actors log through the default logger: make it this node's.
  spdlog::set_default_logger(p->log);
  // Check every subscription before anything starts.
  for (auto& cc : cfg.consumers) {
    for (auto& text : cc.subscribe) {
      auto pat = pattern::parse(text);
      if (!pat)
        return std::move(pat.error());
      if (auto err = check_subscription(p->cat, *pat, cc.name))
        return err;
    }
  }
  p->cfg = std::move(cfg);
  // A fresh stream per run until the durable log gives streams a home.
  p->stream = make_uuid_v4();
  p->sys_cfg = std::make_unique<caf::actor_system_config>();
  // The sharing scheduler wakes an idle worker through a condition
  // variable instead of polling: measured on 2 cores it halves p50 latency
  // at 20,000 events/s and raises throughput by a quarter over stealing.
  p->sys_cfg->set("scheduler.policy", caf::atom("sharing"));
  p->sys = std::make_unique<caf::actor_system>(*p->sys_cfg);
  transport::pump_config pc;
  pc.bind = p->cfg.bind;
  pc.peers = p->cfg.peers;
  pc.hwm = p->cfg.transport.hwm;
  pc.max_message_size = p->cfg.transport.max_message_size;
  pc.heartbeat = p->cfg.transport.heartbeat;
  {
    std::unique_lock<std::shared_mutex> guard{p->consumers_mtx};
    for (auto& cc : p->cfg.consumers)
      p->consumer(cc.name);
  }
  auto pump = transport::pump::start(std::move(pc), p.get());
  if (!pump)
    return std::move(pump.error());
  p->pump = std::move(*pump);
  {
    std::unique_lock<std::shared_mutex> guard{p->consumers_mtx};
    for (auto& cc : p->cfg.consumers)
      for (auto& text : cc.subscribe)
        p->subscribe_prefix(pattern::parse(text)->zmq_prefix());
  }
  p->running = true;
  p->log->info("started: service={} stream={} endpoint={} peers={}",
               p->cfg.service, p->stream, p->pump->endpoint(),
               fmt::join(p->cfg.peers, ","));
  return std::unique_ptr<node>{new node(std::move(p))};
}

node::node(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)), bus_(this) {
}

node::~node() {
  stop();
}

void node::stop() {
  if (!impl_->running)
    return;
  impl_->shutdown();
  impl_->log->info("stopped");
}

caf::error node::attach(std::string_view consumer, service_fn fn) {
  if (!impl_->running)
    return make_error(errc::not_running, "cannot attach: the node is stopped");
  std::string name{consumer};
  bool configured = false;
  for (auto& cc : impl_->cfg.consumers)
    configured = configured || cc.name == name;
  if (!configured)
    return make_error(errc::invalid_config,
                      fmt::format("cannot attach service '{}': the node "
                                  "config has no consumer of that name; add "
                                  "it under 'consumers'",
                                  name));
  auto service = impl_->sys->spawn(
    [fn = std::move(fn)](caf::event_based_actor* self) { return fn(self); });
  std::unique_lock<std::shared_mutex> guard{impl_->consumers_mtx};
  impl_->services.push_back(service);
  caf::anon_send(impl_->consumer(name).actor, attach_atom::value, service);
  return {};
}

caf::actor_system& node::system() {
  return *impl_->sys;
}

const catalog& node::events() const noexcept {
  return impl_->cat;
}

const node_config& node::config() const noexcept {
  return impl_->cfg;
}

std::string node::endpoint() const {
  return impl_->cfg.advertise.empty() ? impl_->pump->endpoint()
                                      : impl_->cfg.advertise;
}

bool node::wait_for_subscribers(int64_t n, std::chrono::milliseconds timeout) {
  return impl_->pump->wait_for_subscriptions(n, timeout);
}

std::shared_ptr<const consumer_stats>
node::stats(std::string_view consumer) const {
  std::shared_lock<std::shared_mutex> guard{impl_->consumers_mtx};
  for (auto& c : impl_->consumers)
    if (c.name == consumer)
      return c.stats;
  return nullptr;
}

uint64_t node::received() const noexcept {
  return impl_->pump->stats().received.load();
}

uint64_t node::bad_frames() const noexcept {
  return impl_->pump->stats().bad_frames.load();
}

bool node::drain(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool idle = true;
    {
      std::shared_lock<std::shared_mutex> guard{impl_->consumers_mtx};
      for (auto& c : impl_->consumers) {
        auto done = c.stats->handled.load() + c.stats->failed.load();
        idle = idle && done >= c.stats->dispatched.load();
      }
    }
    if (idle)
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
}

caf::expected<publish_receipt>
event_bus::publish(std::string_view type, const payload& data,
                   const publish_options& opts) {
  auto& p = *node_->impl_;
  if (!p.running)
    return make_error(errc::not_running,
                      fmt::format("cannot publish '{}': node '{}' is stopped",
                                  type, p.cfg.name));
  auto* spec = p.cat.find(type);
  if (spec == nullptr)
    return make_error(errc::unknown_event,
                      fmt::format("unknown event type '{}': not in the "
                                  "catalog {}; add it there first",
                                  type, p.cat.source()));
  if (auto err = catalog::validate(*spec, data))
    return err;
  const auto& source = opts.source.empty() ? p.cfg.service : opts.source;
  if (source != spec->producer)
    return make_error(errc::catalog_violation,
                      fmt::format("event '{}' is produced by '{}' according "
                                  "to the catalog {}, not by '{}'; publish it "
                                  "from {} or change its producer there",
                                  type, spec->producer, p.cat.source(), source,
                                  spec->producer));
  // One clock read serves the id and the timestamp. Taken before the
  // stream lock, so timestamps may step back by the lock wait; seq, not
  // time, is the stream's order.
  auto now = now_us();
  auto id = make_uuid_v7(now);
  envelope_header h;
  h.timestamp_us = now;
  h.event_type = spec->name;
  h.id = id;
  h.source = source;
  // Validated above: the key field is a required string.
  h.key = data.find(spec->key)->get_ref<const std::string&>();
  h.stream = p.stream;
  h.schema_version = spec->schema_version;
  h.traceparent = opts.traceparent;
  auto idx = static_cast<size_t>(spec - p.cat.events().data());
  bool local = p.any_local_consumer(type);
  // One buffer: the topic frame, then the envelope.
  std::string message;
  message.reserve(320);
  message.append(spec->name);
  auto topic_size = static_cast<uint32_t>(message.size());
  std::lock_guard<std::mutex> guard{p.publish_mtx};
  h.seq = ++p.seq;
  h.type_seq = ++p.type_seqs[idx];
  encode(h, data, message);
  if (local) {
    auto ev = decode(std::string_view{message}.substr(topic_size));
    if (ev)
      p.dispatch(event_batch{std::move(*ev)});
  }
  auto seq = h.seq;
  p.pump->send(std::move(message), topic_size);
  return publish_receipt{std::move(id), seq};
}

caf::error event_bus::observe(std::string_view pattern_text,
                              std::function<void(const event&)> fn) {
  return add_handler(
    pattern_text,
    [f = std::move(fn)](const event& ev) {
      f(ev);
      return caf::error{};
    },
    "herald.observer", false);
}

caf::error event_bus::add_handler(std::string_view pattern_text, handler_fn fn,
                                  std::string_view consumer, bool check) {
  auto& p = *node_->impl_;
  auto pat = pattern::parse(pattern_text);
  if (!pat)
    return std::move(pat.error());
  std::string name{consumer.empty() ? std::string_view{p.cfg.service}
                                    : consumer};
  if (!p.running)
    return make_error(errc::not_running,
                      fmt::format("cannot subscribe '{}': node '{}' is stopped",
                                  pattern_text, p.cfg.name));
  if (check)
    if (auto err = check_subscription(p.cat, *pat, name))
      return err;
  {
    std::unique_lock<std::shared_mutex> guard{p.consumers_mtx};
    auto& c = p.consumer(name);
    c.patterns.push_back(*pat);
    // The actor learns the handler before the pump subscribes: no event
    // can arrive ahead of its handler.
    caf::anon_send(c.actor, subscribe_atom::value,
                   subscription{*pat, std::move(fn)});
    p.subscribe_prefix(pat->zmq_prefix());
  }
  return {};
}

} // namespace herald
