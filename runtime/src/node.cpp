#include "herald/runtime/node.hpp"

#include <filesystem>
#include <malloc.h>
#include <thread>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "group_leases.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/logging.hpp"
#include "history.hpp"
#include "membership.hpp"
#include "node_impl.hpp"
#include "publish_admin.hpp"
#include "test_hooks.hpp"

namespace herald {

namespace {

// The steps of `node::start`, in order. Each fills its part of `p` or
// fails with the error of what it could not do.

caf::error load_catalog(node::impl& p) {
  auto cat = catalog::load_file(p.cfg.catalog);
  if (!cat)
    return p.cfg.origin.locate("catalog", p.cfg.catalog, cat.error());
  p.cat = std::move(*cat);
  p.type_seqs.resize(p.cat.events().size());
  p.published =
    std::make_unique<std::atomic<uint64_t>[]>(p.cat.events().size());
  return {};
}

caf::error make_node_logger(node::impl& p) {
  auto format = parse_log_format(p.cfg.log_format);
  if (!format)
    return std::move(format.error());
  // The node's own logger, handed to its actors: two nodes in one process
  // never share one.
  p.log = make_logger(p.cfg.name, *format,
                      spdlog::level::from_str(p.cfg.log_level), p.cfg.log_sink);
  return {};
}

// Checks every subscription of the config before anything starts.
caf::error check_subscriptions(node::impl& p) {
  for (auto& cc : p.cfg.consumers) {
    auto& parsed = p.service_patterns[cc.name];
    for (auto& text : cc.subscribe) {
      auto pat = pattern::parse(text);
      if (!pat)
        return p.cfg.origin.locate(
          fmt::format("consumers.{}.subscribe", cc.name), text, pat.error());
      if (auto err = check_subscription(p.cat, *pat, cc.name))
        return p.cfg.origin.locate(
          fmt::format("consumers.{}.subscribe", cc.name), text, err);
      parsed.push_back(std::move(*pat));
    }
  }
  return {};
}

// Opens the data directory's log and resumes the stream where it ended.
caf::error open_log(node::impl& p) {
  if (p.cfg.data_dir.empty())
    p.cfg.data_dir = (std::filesystem::path{"data"} / p.cfg.name).string();
  store::log_options lo;
  lo.dir = p.cfg.data_dir;
  auto policy = store::parse_fsync_policy(p.cfg.store.fsync);
  if (!policy)
    return std::move(policy.error());
  lo.fsync = *policy;
  lo.retention = p.cfg.store.retention;
  lo.clock = p.clock;
  lo.max_pending_bytes = p.cfg.store.max_pending_bytes;
  auto opened = store::event_log::open(std::move(lo));
  if (!opened)
    return p.cfg.origin.locate("data_dir", p.cfg.data_dir, opened.error());
  p.log_store = std::move(*opened);
  p.stream = p.log_store->stream_id();
  p.seq = p.log_store->last_seq();
  auto heads = p.log_store->type_heads();
  for (size_t i = 0; i < p.cat.events().size(); ++i)
    if (auto it = heads.find(p.cat.events()[i].name); it != heads.end())
      p.type_seqs[i] = it->second;
  p.sent_type_heads.insert(heads.begin(), heads.end());
  p.sent_head = p.log_store->head();
  p.log_store->on_commit(
    [raw = &p](std::vector<store::record>& group, const caf::error& err) {
      raw->on_commit(group, err);
    });
  return {};
}

// Raises the incarnation, opens the history (`record`) and arms the test
// hooks, warning that they are on.
caf::error start_recording(node::impl& p) {
  auto incarnation = raise_incarnation(p.cfg.data_dir);
  if (!incarnation)
    return std::move(incarnation.error());
  p.incarnation = *incarnation;
  if (!p.cfg.record.empty()) {
    auto history =
      history_file::open(p.cfg.record, p.cfg, p.stream, p.incarnation, p.log);
    if (!history)
      return std::move(history.error());
    p.history = std::move(*history);
  }
  if (p.cfg.test_hooks.enabled) {
    p.hooks = std::make_shared<test_hooks>(p.cfg.test_hooks);
    p.log->warn("test hooks are on (config 'test_hooks'): handling fails for "
                "{} key(s) and is slow for {}{}; the control op test.hooks "
                "may change them; never run a production node so",
                p.cfg.test_hooks.fail_keys.size(),
                p.cfg.test_hooks.slow_keys.size(),
                p.cfg.test_hooks.commit_before_handle
                  ? ", and offsets are committed BEFORE handlers run "
                    "(commit_before_handle): events are lost on a crash"
                  : "");
  }
  return {};
}

// Starts the actor system, the alert and dead-letter actors and one
// consumer actor per configured consumer.
void start_actors(node::impl& p) {
  p.sys_cfg = std::make_unique<caf::actor_system_config>();
  // The sharing scheduler wakes an idle worker through a condition
  // variable instead of polling: measured on 2 cores it halves p50 latency
  // at 20,000 events/s and raises throughput by a quarter over stealing.
  p.sys_cfg->set("scheduler.policy", caf::atom("sharing"));
  mark_actor_threads(*p.sys_cfg);
  p.sys = std::make_unique<caf::actor_system>(*p.sys_cfg);
  auto* raw = &p;
  p.alert_actor =
    spawn_alerts(*p.sys, p.cfg.consumers, [raw](const raised_alert& a) {
      raw->raise_alert(a);
    });
  dead_letter_setup dls;
  dls.add = [raw](std::vector<store::dead_letter>& letters) {
    return raw->log_store->add_dead_letters(letters);
  };
  dls.remove = [raw](const std::vector<uint64_t>& ids) {
    return raw->log_store->remove_dead_letters(ids);
  };
  dls.redrive_finished = [raw](const std::vector<uint64_t>& ids) {
    std::lock_guard<std::mutex> guard{raw->redrive_mtx};
    for (auto id : ids)
      raw->redriving.erase(id);
  };
  dls.alerts = p.alert_actor;
  dls.log = p.log;
  p.dead_letter_actor = spawn_dead_letters(*p.sys, std::move(dls));
  std::unique_lock<std::shared_mutex> guard{p.consumers_mtx};
  for (auto& cc : p.cfg.consumers)
    p.consumer(cc.name);
}

// Binds the node's sockets and subscribes to what its consumers select.
caf::error start_pump(node::impl& p) {
  transport::pump_config pc;
  pc.bind = p.cfg.bind;
  pc.peers = p.cfg.peers;
  pc.hwm = p.cfg.transport.hwm;
  pc.max_message_size = p.cfg.transport.max_message_size;
  pc.heartbeat = p.cfg.transport.heartbeat;
  pc.stream_heartbeat = p.cfg.transport.stream_heartbeat;
  pc.control_bind = p.cfg.control;
  pc.origin = p.cfg.origin;
  pc.max_control_sockets = p.cfg.transport.max_control_sockets;
  pc.control_idle = p.cfg.transport.control_idle;
  pc.control_send_hwm = p.cfg.transport.control_send_hwm;
  pc.control_backlog_bytes = p.cfg.transport.control_backlog_bytes;
  auto pump = transport::pump::start(std::move(pc), &p);
  if (!pump)
    return std::move(pump.error());
  p.pump = std::move(*pump);
  std::unique_lock<std::shared_mutex> guard{p.consumers_mtx};
  for (auto& [name, patterns] : p.service_patterns)
    for (auto& pat : patterns)
      p.subscribe_prefix(pat.zmq_prefix());
  return {};
}

// Serves /metrics and /healthz when `metrics.listen` is set.
caf::error start_http(node::impl& p) {
  if (p.cfg.metrics_listen.empty())
    return {};
  auto* raw = &p;
  auto http = metrics::http_server::start(
    p.cfg.metrics_listen,
    [raw] {
      return raw->render_metrics();
    },
    [raw] {
      return raw->health();
    });
  if (!http)
    return p.cfg.origin.locate("metrics.listen", p.cfg.metrics_listen,
                               http.error());
  p.http = std::move(*http);
  return {};
}

void start_retention(node::impl& p) {
  p.retention_thread = std::thread{[raw = &p] {
    raw->run_retention();
  }};
}

void log_started(node::impl& p) {
  p.log->info("started: service={} stream={} head={} endpoint={} control={} "
              "metrics={} data_dir={} peers={}",
              p.cfg.service, p.stream, p.log_store->head(), p.pump->endpoint(),
              p.pump->control_endpoint(),
              p.http ? fmt::format(
                "http://{}:{}/metrics",
                p.cfg.metrics_listen.substr(0, p.cfg.metrics_listen.rfind(':')),
                p.http->port())
                     : std::string{"off"},
              p.cfg.data_dir, fmt::join(p.cfg.peers, ","));
}

} // namespace

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

node::impl::~impl() {
  shutdown();
}

// Stops the node, in an order that loses nothing acknowledged: telling the
// cluster it leaves; the retention thread; the actors (after committing their
// offsets); the log (its committer writes and hands out what is queued); the
// pump (it sends what it was handed, up to the linger time); the actor system.
// Idempotent.
void node::impl::shutdown() {
  // Members stop sending to this node's stream and close their
  // connections to it while the rest stops.
  leave_cluster();
  running = false;
  if (http)
    http->stop();
  if (retention_thread.joinable()) {
    {
      std::lock_guard<std::mutex> guard{retention_mtx};
      retention_stop = true;
    }
    retention_cv.notify_all();
    retention_thread.join();
  }
  if (sys) {
    {
      // Offsets are committed every 50 ms; commit the last ones now. An
      // offset passes only what a heartbeat showed seen: this node's own
      // stream gets one first (from the same sender, so it comes before
      // the flush), and the last events handled of it are committed too.
      stream_heartbeat hb;
      {
        std::lock_guard<std::mutex> guard{heads_mtx};
        hb.stream = stream;
        hb.head = sent_head;
        hb.types.insert(sent_type_heads.begin(), sent_type_heads.end());
      }
      caf::scoped_actor self{*sys};
      std::shared_lock<std::shared_mutex> guard{consumers_mtx};
      for (auto& c : consumers) {
        self->send(c.actor, heartbeat_atom::value, hb);
        self->request(c.actor, std::chrono::seconds{2}, flush_atom::value)
          .receive([] {}, [](caf::error&) {});
      }
    }
    {
      std::unique_lock<std::shared_mutex> guard{consumers_mtx};
      for (auto& c : consumers)
        caf::anon_send_exit(c.actor, caf::exit_reason::user_shutdown);
    }
    // Letters not stored yet leave their events unfinished: the offsets
    // do not pass them, and they are handled again after a restart.
    for (auto& a : {dead_letter_actor, alert_actor})
      if (a)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sys->await_all_actors_done();
    // Handler calls in progress return before the actor system goes (they
    // send their outcome through it); calls not started are dropped.
    std::shared_lock<std::shared_mutex> guard{consumers_mtx};
    for (auto& c : consumers)
      if (c.pool)
        c.pool->stop();
  }
  {
    std::unique_lock<std::shared_mutex> guard{store_mtx};
    log_store.reset();
  }
  if (pump)
    pump->stop();
  sys.reset();
}

// The housekeeping thread: deletes expired events every
// `store.retention_check`, and gives memory back once the node is idle.
void node::impl::run_retention() {
  using clock = std::chrono::steady_clock;
  auto period =
    std::min<clock::duration>(cfg.store.retention_check, idle_trim_period);
  auto next_retention = clock::now() + cfg.store.retention_check;
  std::unique_lock<std::mutex> guard{retention_mtx};
  while (!retention_stop) {
    retention_cv.wait_for(guard, period, [this] {
      return retention_stop;
    });
    if (retention_stop)
      break;
    trim_when_idle();
    if (clock::now() < next_retention)
      continue;
    next_retention = clock::now() + cfg.store.retention_check;
    std::shared_lock<std::shared_mutex> store_guard{store_mtx};
    if (auto n = log_store->enforce_retention(); !n)
      log->error("retention: {}", message_of(n.error()));
    else if (*n > 0)
      log->info("retention: deleted {} expired events", *n);
  }
}

// After a burst, glibc's malloc keeps what was freed in its arenas (one
// per thread that allocated, up to 8 per core) instead of giving it back:
// a node that replayed a large backlog stayed at its peak while idle. So
// once nothing moved for one `idle_trim_period` (no event published,
// received or finished) after something did, `malloc_trim` returns the
// free pages of every arena to the system. Measured: see
// docs/architecture.md, "Memory".
void node::impl::trim_when_idle() {
  uint64_t now = pump ? pump->stats().received.load() : 0;
  now += log_store ? log_store->last_seq() : 0;
  {
    std::shared_lock<std::shared_mutex> guard{consumers_mtx};
    for (auto& c : consumers)
      now += c.stats->finished();
  }
  bool idle = now == last_activity;
  last_activity = now;
  if (!idle || trimmed_at == now)
    return;
  trimmed_at = now;
  ::malloc_trim(0);
}

caf::expected<std::unique_ptr<node>>
node::start(node_config cfg, std::function<int64_t()> clock) {
  auto p = std::make_unique<impl>();
  p->clock = std::move(clock);
  if (cfg.service.empty())
    cfg.service = cfg.name;
  p->cfg = std::move(cfg);
  p->limits.max_frame = p->cfg.transport.max_message_size;
  p->held->per_stream = p->cfg.transport.max_held_bytes_per_stream;
  p->held->total = p->cfg.transport.max_held_bytes;
  for (auto step : {load_catalog, make_node_logger, check_subscriptions,
                    open_log, start_recording, start_groups})
    if (auto err = step(*p))
      return err;
  start_actors(*p);
  p->publisher = std::make_unique<publish_admin>(*p);
  for (auto step : {start_pump, start_http, start_membership})
    if (auto err = step(*p))
      return err;
  p->running = true;
  start_retention(*p);
  log_started(*p);
  return std::unique_ptr<node>{new node(std::move(p))};
}

node::node(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)), bus_(this) {
  impl_->front = this;
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
  // The consumer spawns the service from `fn`, and again after it died.
  std::unique_lock<std::shared_mutex> guard{impl_->consumers_mtx};
  if (impl_->hooks)
    fn = impl_->hooks->wrap(std::move(fn));
  caf::anon_send(impl_->consumer(name).actor, attach_atom::value,
                 std::move(fn));
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

std::string node::control_endpoint() const {
  return impl_->pump->control_endpoint();
}

const std::string& node::stream() const noexcept {
  return impl_->stream;
}

uint64_t node::control_errors() const noexcept {
  return impl_->control_errors.load();
}

uint16_t node::metrics_port() const noexcept {
  return impl_->http ? impl_->http->port() : 0;
}

caf::expected<uint64_t> node::enforce_retention() {
  std::shared_lock<std::shared_mutex> guard{impl_->store_mtx};
  if (!impl_->log_store)
    return make_error(errc::not_running, "the node is stopped");
  return impl_->log_store->enforce_retention();
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
        auto& s = *c.stats;
        // Live events skipped while a stream catches up count as finished:
        // the catch-up, and the events it read, must be over too. Read in
        // this order: the consumer counts read events before it ends a
        // catch-up.
        idle = idle && s.catching_up.load() == 0 && s.unfinished.load() == 0
               && s.finished() >= s.dispatched.load();
      }
    }
    if (idle)
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
}

} // namespace herald
