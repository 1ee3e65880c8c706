// The node's metrics in Prometheus' text format, for /metrics.

#include "herald/core/errc.hpp"
#include "node_impl.hpp"

namespace herald {

namespace {

using metrics::metric_type;

// Counters kept per consumer.
void write_consumer_counters(metrics::text_writer& w,
                             const std::vector<consumer_entry>& consumers) {
  struct per_consumer {
    const char* name;
    const char* help;
    std::atomic<uint64_t> consumer_stats::*field;
  };
  static const per_consumer counters[] = {
    {"herald_events_delivered_total", "Live events handed to the consumer.",
     &consumer_stats::dispatched},
    {"herald_events_shed_total",
     "Live events not handed over because the consumer's backlog was "
     "full (replayed from the log).",
     &consumer_stats::shed},
    {"herald_events_replayed_total",
     "Events the consumer read from a producer's log.",
     &consumer_stats::replayed},
    {"herald_stream_gaps_total", "Gaps the consumer noticed in a stream.",
     &consumer_stats::gaps},
    {"herald_behind_retention_total",
     "Times the consumer found events expired before it handled them.",
     &consumer_stats::behind_retention},
    {"herald_events_redriven_total", "Redriven dead letters that finished.",
     &consumer_stats::redriven},
    {"herald_alerts_raised_total", "Alerts raised.", &consumer_stats::alerts},
    {"herald_stream_pauses_total",
     "Times an entity's full queue paused a stream (read again from the "
     "log later).",
     &consumer_stats::pauses},
    {"herald_handler_timeouts_total",
     "Handler attempts that failed because they took longer than "
     "handler_timeout.",
     &consumer_stats::timeouts},
    {"herald_service_restarts_total",
     "Times the consumer's service actor died and was started again.",
     &consumer_stats::service_restarts},
  };
  for (auto& c : counters) {
    auto& f = w.family(c.name, c.help, metric_type::counter);
    for (auto& e : consumers)
      f.sample({{"consumer", e.name}}, ((*e.stats).*c.field).load());
  }
  auto& paused = w.family("herald_consumer_paused",
                          "1 while the consumer is paused because its "
                          "service actor kept dying (see /healthz).",
                          metric_type::gauge);
  for (auto& e : consumers)
    paused.sample({{"consumer", e.name}}, e.stats->paused.load() ? 1 : 0);
  auto& running = w.family("herald_handler_calls_running",
                           "Function handler calls in progress on the "
                           "consumer's pool.",
                           metric_type::gauge);
  for (auto& e : consumers)
    running.sample({{"consumer", e.name}}, e.pool ? e.pool->running() : 0);
}

// Counters kept per consumer and event type.
void write_type_counters(metrics::text_writer& w,
                         const std::vector<consumer_entry>& consumers) {
  struct per_type {
    const char* name;
    const char* help;
    std::atomic<uint64_t> type_stats::*field;
  };
  static const per_type type_counters[] = {
    {"herald_events_handled_total",
     "Events the consumer's handlers succeeded on.", &type_stats::handled},
    {"herald_events_failed_total", "Failed handler attempts.",
     &type_stats::failed},
    {"herald_events_retried_total", "Retries scheduled after a failure.",
     &type_stats::retried},
    {"herald_events_dead_lettered_total", "Events stored as dead letters.",
     &type_stats::dead_lettered},
  };
  for (auto& c : type_counters) {
    auto& f = w.family(c.name, c.help, metric_type::counter);
    for (auto& e : consumers)
      for (auto& t : e.stats->per_type)
        f.sample({{"consumer", e.name}, {"type", t->type}},
                 ((*t).*c.field).load());
  }
}

// Each consumer's lag per stream, and its latency histograms.
void write_positions(metrics::text_writer& w,
                     const std::vector<consumer_entry>& consumers) {
  auto& lag = w.family("herald_consumer_lag_events",
                       "Events of a stream after the consumer's committed "
                       "offset, as of the producer's last heartbeat.",
                       metric_type::gauge);
  for (auto& e : consumers) {
    std::lock_guard<std::mutex> pguard{e.stats->positions_mtx};
    for (auto& [stream, pos] : e.stats->positions)
      lag.sample({{"consumer", e.name}, {"stream", stream}},
                 pos.head > pos.offset ? pos.head - pos.offset : 0);
  }
  for (auto& e : consumers) {
    w.histogram("herald_handler_duration_seconds",
                "How long one attempt of the consumer's handlers took.",
                {{"consumer", e.name}}, e.stats->handler_latency.snapshot());
    w.histogram("herald_end_to_end_latency_seconds",
                "From publish to the end of the event's handling.",
                {{"consumer", e.name}}, e.stats->end_to_end_latency.snapshot());
  }
}

// Per consumer group member (every consumer whose group members are known;
// a group of one included), labelled by its group, the consumer's name.
// Consumers outside groups have no sample.
void write_groups(metrics::text_writer& w,
                  const std::vector<consumer_entry>& consumers) {
  struct per_group {
    const char* name;
    const char* help;
    std::atomic<uint64_t> consumer_stats::*field;
  };
  static const per_group counters[] = {
    {"herald_group_rebalances_total",
     "Partitions this member gained or lost (a rebalance, a lease lost "
     "or handed over, a restart of the stream's owner).",
     &consumer_stats::partitions_moved},
    {"herald_group_results_discarded_total",
     "Handler results that came after the lease of their partition ended "
     "(or within the lease margin of its expiry): not committed; the "
     "partition's next holder handles the event again.",
     &consumer_stats::discarded},
    {"herald_group_events_abandoned_total",
     "Events this member gave up unfinished because their partition's "
     "lease ended (discarded results included).",
     &consumer_stats::abandoned},
  };
  std::vector<const consumer_entry*> members;
  for (auto& e : consumers) {
    std::lock_guard<std::mutex> pguard{e.stats->positions_mtx};
    if (!e.stats->group_members.empty())
      members.push_back(&e);
  }
  auto& owned = w.family("herald_group_partitions_owned",
                         "Partitions this member holds a lease on now, over "
                         "every stream it reads.",
                         metric_type::gauge);
  for (auto* e : members)
    owned.sample({{"group", e->name}}, e->stats->partitions_owned.load());
  for (auto& c : counters) {
    auto& f = w.family(c.name, c.help, metric_type::counter);
    for (auto* e : members)
      f.sample({{"group", e->name}}, ((*e->stats).*c.field).load());
  }
  auto& lag = w.family("herald_group_lag",
                       "Events after this member's committed offsets, "
                       "summed over the streams it reads (head - offset "
                       "each, as of the producer's last heartbeat).",
                       metric_type::gauge);
  for (auto* e : members) {
    uint64_t sum = 0;
    std::lock_guard<std::mutex> pguard{e->stats->positions_mtx};
    for (auto& [stream, pos] : e->stats->positions)
      sum += pos.head > pos.offset ? pos.head - pos.offset : 0;
    lag.sample({{"group", e->name}}, sum);
  }
}

} // namespace

// The connections to peers and their agreement on the frame limit.
void node::impl::write_peer_metrics(metrics::text_writer& w) {
  auto& disconnects = w.family("herald_peer_disconnects_total",
                               "Connections this node made to a peer (SUB, "
                               "control DEALER) that ended; each is "
                               "recreated.",
                               metric_type::counter);
  size_t silent = 0;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    for (auto& [peer, n] : peer_disconnects)
      disconnects.sample({{"peer", peer}}, n);
    auto now = std::chrono::steady_clock::now();
    for (auto& [id, peer] : peer_streams)
      silent += now - peer.last_heartbeat > silence_after() ? 1 : 0;
  }
  w.counter("herald_peer_reconnects_total",
            "Connections to peers the transport recreated.", {},
            pump->stats().reconnects.load());
  w.counter("herald_inbound_disconnects_total",
            "Connections peers made to this node that ended.", {},
            inbound_disconnects.load());
  w.counter("herald_frame_limit_mismatches_total",
            "Peers met whose transport.max_message_size differs from this "
            "node's.",
            {}, limit_mismatches.load());
  w.gauge("herald_peers_silent", "Peer streams whose heartbeats stopped.", {},
          static_cast<double>(silent));
  auto sockets = pump->sockets();
  auto& sockets_f = w.family("herald_transport_sockets",
                             "ZeroMQ sockets the node holds open, by kind: "
                             "sub (one per peer PUB endpoint), dealer (one "
                             "per control endpoint it talks to), monitor.",
                             metric_type::gauge);
  sockets_f.sample({{"kind", "sub"}}, sockets.subs);
  sockets_f.sample({{"kind", "dealer"}}, sockets.dealers);
  sockets_f.sample({{"kind", "monitor"}}, sockets.monitors);
}

// The node's own counters, then its consumers'.
std::string node::impl::render_metrics() {
  metrics::text_writer w;
  auto& published_f =
    w.family("herald_events_published_total",
             "Events this node published, per type.", metric_type::counter);
  for (size_t i = 0; i < cat.events().size(); ++i)
    published_f.sample({{"type", cat.events()[i].name}},
                       published[i].load(std::memory_order_relaxed));
  w.counter("herald_events_received_total", "Events received from other nodes.",
            {}, pump->stats().received.load());
  w.counter("herald_bad_frames_total",
            "Frames from the network dropped as malformed.", {},
            pump->stats().bad_frames.load());
  w.counter("herald_transport_errors_total",
            "ZeroMQ operations of the transport that failed (not frames "
            "from peers).",
            {}, pump->stats().io_errors.load());
  write_peer_metrics(w);
  write_cluster_metrics(w);
  w.counter("herald_foreign_refused_total",
            "Events and heartbeats refused because they came on the "
            "connection of a peer that does not own their stream.",
            {}, foreign_refused.load());
  auto& ps = pump->stats();
  w.counter("herald_peer_streams_refused_total",
            "Heartbeats naming a new peer stream ignored because the node "
            "tracks transport.max_peer_streams already.",
            {}, peer_streams_refused.load());
  w.counter("herald_control_sockets_evicted_total",
            "Control DEALERs closed because a request to a new endpoint "
            "found transport.max_control_sockets open.",
            {}, ps.control_sockets_evicted.load());
  w.counter("herald_control_sockets_idle_closed_total",
            "Control DEALERs closed after transport.control_idle_ms without "
            "traffic.",
            {}, ps.control_sockets_idle_closed.load());
  w.counter("herald_replays_refused_total",
            "Replay requests refused because the client's unread replies "
            "filled transport.control_backlog_bytes.",
            {}, replays_refused.load());
  w.counter("herald_control_replies_dropped_total",
            "Replies to control clients dropped: the client's backlog was "
            "full, or it left before reading them.",
            {}, ps.control_replies_dropped.load());
  w.gauge("herald_control_backlog_bytes",
          "Bytes of replies kept for control clients that do not read.", {},
          static_cast<double>(ps.control_backlog_bytes.load()));
  w.gauge("herald_held_bytes",
          "Bytes of live events consumers hold while their streams catch "
          "up (bounded by transport.max_held_bytes_per_stream and "
          "transport.max_held_bytes).",
          {}, static_cast<double>(held->bytes.load()));
  w.counter("herald_held_dropped_total",
            "Live events dropped while their stream caught up because they "
            "did not fit the held bytes bounds; the replay brings them.",
            {}, held->dropped.load());
  w.counter("herald_control_errors_total",
            "Control requests, replies and heartbeats refused as "
            "malformed or unknown.",
            {}, control_errors.load());
  {
    std::shared_lock<std::shared_mutex> guard{store_mtx};
    if (log_store)
      w.gauge("herald_dead_letters", "Dead letters stored on this node.", {},
              static_cast<double>(log_store->dead_letter_count()));
  }
  std::shared_lock<std::shared_mutex> guard{consumers_mtx};
  write_consumer_counters(w, consumers);
  write_type_counters(w, consumers);
  write_positions(w, consumers);
  write_groups(w, consumers);
  return w.str();
}

} // namespace herald
