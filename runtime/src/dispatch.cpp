// Live events to the node's consumers: from the log's commit callback
// (local publishes) and from the pump (other nodes), bounded per consumer;
// and the consumer actors themselves.

#include <algorithm>

#include <caf/send.hpp>
#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "history.hpp"
#include "node_impl.hpp"
#include "publish_admin.hpp"

namespace herald {

void node::impl::on_events(event_batch& batch, std::string_view from) {
  drop_foreign(batch, from);
  if (refused_streams.load(std::memory_order_relaxed) > 0)
    drop_refused(batch);
  if (auto& drop = cfg.test_hooks.drop_live_seqs; !drop.empty())
    std::erase_if(batch, [&drop](const event& ev) {
      return std::find(drop.begin(), drop.end(), ev.seq()) != drop.end();
    });
  if (!batch.empty())
    dispatch(std::move(batch));
}

void node::impl::on_bad_frame(const caf::error& why) {
  log->warn("dropped a frame from the network: {}", message_of(why));
}

void node::impl::on_io_error(const caf::error& why) {
  log->warn("transport I/O error: {}", message_of(why));
}

namespace {

constexpr auto commit_failure_log_every = std::chrono::seconds{10};

} // namespace

void node::impl::log_commit_failure(size_t events, const caf::error& err) {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> guard{commit_failures_mtx};
  ++unlogged_failed_groups;
  unlogged_failed_events += events;
  if (commit_failing.load(std::memory_order_relaxed)
      && now - commit_failure_logged < commit_failure_log_every)
    return;
  if (!commit_failing.exchange(true, std::memory_order_relaxed))
    log->error("{} events were not stored and are not sent: {}", events,
               message_of(err));
  else
    log->error("{} events in {} commit groups were not stored and are not "
               "sent in the last {}s: {}",
               unlogged_failed_events, unlogged_failed_groups,
               std::chrono::duration_cast<std::chrono::seconds>(
                 now - commit_failure_logged)
                 .count(),
               message_of(err));
  commit_failure_logged = now;
  unlogged_failed_groups = 0;
  unlogged_failed_events = 0;
}

void node::impl::log_commit_recovery() {
  std::lock_guard<std::mutex> guard{commit_failures_mtx};
  if (!commit_failing.exchange(false, std::memory_order_relaxed))
    return;
  if (unlogged_failed_groups > 0)
    log->error("{} more events in {} commit groups were not stored and are "
               "not sent before the event log could be written again",
               unlogged_failed_events, unlogged_failed_groups);
  log->info("the event log is written again");
  unlogged_failed_groups = 0;
  unlogged_failed_events = 0;
}

// Called by the log's committer after each group, in seq order.
void node::impl::on_commit(std::vector<store::record>& group,
                           const caf::error& err) {
  auto first = group.front().seq;
  auto last = group.back().seq;
  if (err) {
    log_commit_failure(group.size(), err);
    if (publisher)
      publisher->on_commit(first, last, err);
    return;
  }
  if (commit_failing.load(std::memory_order_relaxed))
    log_commit_recovery();
  event_batch local;
  {
    std::shared_lock<std::shared_mutex> guard{consumers_mtx};
    for (auto& r : group)
      if (selected_locally(r.type)) {
        auto owner = std::make_shared<std::string>(r.envelope);
        size_t offset = 0;
        if (auto ev = decode_next(*owner, offset, owner, limits))
          local.push_back(std::move(*ev));
      }
  }
  // The record's type views a catalog name, which outlives the pump.
  std::vector<transport::pump::outgoing> out;
  out.reserve(group.size());
  for (auto& r : group)
    out.push_back({r.type, std::move(r.envelope)});
  // Local consumers and the pump get the events before the heads that
  // heartbeats report move past them.
  if (!local.empty())
    dispatch(std::move(local));
  pump->send_all(out);
  {
    std::lock_guard<std::mutex> guard{heads_mtx};
    for (auto& r : group)
      if (auto it = sent_type_heads.find(r.type); it != sent_type_heads.end())
        it->second = r.type_seq;
      else
        sent_type_heads.emplace(r.type, r.type_seq);
    sent_head = group.back().seq;
  }
  // Publish requests are acknowledged behind their events.
  if (publisher)
    publisher->on_commit(first, last, {});
}

// Whether `c` has room for `n` more events. A consumer's backlog (live
// events sent to its mailbox and not yet taken) is bounded: beyond it the
// events are shed like PUB/SUB would drop them, the consumer sees the gap
// and replays them from the log in bounded batches. Memory stays bounded
// whatever the backlog.
bool node::impl::has_room(const consumer_entry& c, size_t n) const {
  auto& s = *c.stats;
  auto taken = s.finished();
  auto sent = s.dispatched.load(std::memory_order_relaxed);
  auto backlog = sent > taken ? sent - taken : 0;
  if (backlog + n <= max_backlog)
    return true;
  s.shed.fetch_add(n, std::memory_order_relaxed);
  return false;
}

// Hands each consumer the events of `batch` it subscribed to, in order,
// as one message.
void node::impl::dispatch(event_batch&& batch) {
  std::shared_lock<std::shared_mutex> guard{consumers_mtx};
  if (consumers.size() == 1) {
    // The common case of one service per node: no copy when it takes all.
    auto& c = consumers.front();
    bool all = true;
    for (auto& ev : batch)
      all = all && any_matches(c.patterns, ev.type());
    if (all) {
      if (!has_room(c, batch.size()))
        return;
      c.stats->dispatched.fetch_add(batch.size(), std::memory_order_relaxed);
      caf::anon_send(c.actor, std::move(batch));
      return;
    }
  }
  for (auto& c : consumers) {
    event_batch mine;
    mine.reserve(batch.size());
    for (auto& ev : batch)
      if (any_matches(c.patterns, ev.type()))
        mine.push_back(ev);
    if (mine.empty() || !has_room(c, mine.size()))
      continue;
    c.stats->dispatched.fetch_add(mine.size(), std::memory_order_relaxed);
    caf::anon_send(c.actor, std::move(mine));
  }
}

// Whether a consumer on this node takes events of `type`. REQUIRES:
// consumers_mtx held.
std::vector<std::string> pattern_texts(const consumer_entry& c) {
  std::vector<std::string> out;
  for (auto& p : c.patterns)
    if (std::find(out.begin(), out.end(), p.text()) == out.end())
      out.emplace_back(p.text());
  return out;
}

bool node::impl::selected_locally(std::string_view type) const {
  for (auto& c : consumers)
    if (any_matches(c.patterns, type))
      return true;
  return false;
}

// Subscribes the SUB socket to `prefix` unless it already is: one
// subscription per prefix per node, however many consumers share it.
// REQUIRES: consumers_mtx held exclusively.
void node::impl::subscribe_prefix(const std::string& prefix) {
  if (prefixes.insert(prefix).second)
    pump->subscribe(prefix);
}

// Finds or creates the consumer `name`. REQUIRES: consumers_mtx held
// exclusively.
consumer_entry& node::impl::consumer(const std::string& name) {
  for (auto& c : consumers)
    if (c.name == name)
      return c;
  consumer_entry entry;
  entry.name = name;
  std::vector<std::string> types;
  for (auto& spec : cat.events())
    types.push_back(spec.name);
  entry.stats = std::make_shared<consumer_stats>(types);
  consumer_setup setup;
  setup.name = name;
  setup.node = cfg.name;
  setup.log = log;
  setup.stats = entry.stats;
  setup.held = held;
  setup.durable = name != observer_name;
  setup.policy.name = name;
  for (auto& cc : cfg.consumers)
    if (cc.name == name)
      setup.policy = cc;
  setup.dead_letters = dead_letter_actor;
  setup.alerts = alert_actor;
  if (setup.durable && setup.policy.on_dead_letter == dead_letter_policy::park)
    setup.parked = parked_entities(name);
  if (!setup.durable)
    setup.start = observer_start;
  setup.replay = [this](const std::string& s, uint64_t from, size_t max,
                        const std::vector<pattern>& patterns,
                        std::optional<int64_t> since_us, const caf::actor& to) {
    return request_replay(s, from, max, patterns, since_us, to);
  };
  setup.offsets.load = [this, name](const std::string& s) {
    return log_store->offset(name, s);
  };
  setup.offsets.store = [this, name](const std::string& s, uint64_t seq) {
    if (auto err = log_store->commit_offset(name, s, seq))
      log->error("consumer={} stream={}: cannot store offset {}: {}", name, s,
                 seq, message_of(err));
    else if (history)
      history->committed(name, s, seq);
  };
  // Every durable consumer is a member of the group of its name.
  setup.lease = [this](lease_request req, const caf::actor& to) {
    return request_lease(std::move(req), to);
  };
  setup.groups = cfg.groups;
  if (setup.durable) {
    setup.history = history;
    setup.commit_before_handle = cfg.test_hooks.commit_before_handle;
  }
  if (auto it = service_patterns.find(name); it != service_patterns.end())
    setup.service_patterns = it->second;
  if (setup.durable && setup.policy.concurrency > 0)
    entry.pool = setup.pool =
      std::make_shared<handler_pool>(setup.policy.concurrency, name);
  entry.patterns = setup.service_patterns;
  entry.actor = spawn_consumer(*sys, std::move(setup));
  consumers.push_back(std::move(entry));
  return consumers.back();
}

} // namespace herald
