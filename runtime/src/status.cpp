// Where the node stands, for `herald status` (the control op `status`) and
// `/healthz`: its stream's head and oldest retained event, its consumers'
// positions and dead letters, and what is degraded now. A reason is listed
// only while the node can see its cause, so each clears by itself.

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "node_impl.hpp"

namespace herald {

namespace {

using std::chrono::steady_clock;

// The configuration of consumer `name`; null for one only subscribed to
// in code (it has the defaults).
const consumer_config* config_of(const node_config& cfg,
                                 std::string_view name) {
  for (auto& c : cfg.consumers)
    if (c.name == name)
      return &c;
  return nullptr;
}

using std::chrono::duration_cast;
using std::chrono::milliseconds;

// Events of a stream after `offset` as of its head; 0 when the offset is
// ahead of the last heartbeat.
uint64_t lag_of(uint64_t head, uint64_t offset) {
  return head > offset ? head - offset : 0;
}

double seconds_of(steady_clock::duration d) {
  return static_cast<double>(duration_cast<milliseconds>(d).count()) / 1000.0;
}

// What holds one consumer back in one stream now, one sentence each.
void stream_reasons(const std::string& stream,
                    const consumer_stats::stream_position& pos,
                    std::optional<std::chrono::milliseconds> silent_for,
                    std::optional<steady_clock::duration> stalled_for,
                    std::optional<steady_clock::duration> unleased_for,
                    std::vector<std::string>& out) {
  if (!pos.offset_error.empty())
    out.push_back(fmt::format("stream {}: the committed offset cannot be "
                              "read ({}); nothing of the stream is read "
                              "until it can",
                              stream, pos.offset_error));
  if (pos.paused)
    out.push_back(fmt::format("stream {} is paused: an entity's queue is "
                              "full behind a retry; the stream is read again "
                              "from the log once it drains",
                              stream));
  if (pos.expired_to != 0)
    out.push_back(fmt::format("stream {}: events {}..{} expired before they "
                              "were handled (behind the producer's "
                              "retention)",
                              stream, pos.expired_from, pos.expired_to));
  if (stalled_for)
    out.push_back(fmt::format("stream {}: stalled: the committed offset {} "
                              "has not moved for {:.1f}s while {} events "
                              "wait; a handler may hang or fail every "
                              "attempt (see herald status, the handler "
                              "metrics and the node's log)",
                              stream, pos.offset, seconds_of(*stalled_for),
                              pos.head - pos.offset));
  if (unleased_for)
    out.push_back(fmt::format(
      "stream {}: {} partition(s) assigned to this member (partition {} "
      "first) have had no lease for {:.1f}s; their events wait{}",
      stream, pos.unleased, pos.first_unleased, seconds_of(*unleased_for),
      pos.lease_refusal.empty()
        ? std::string{"; see herald status of the stream's owner"}
        : fmt::format("; the stream's owner answered: {}", pos.lease_refusal)));
  if (pos.quota_paused > 0)
    out.push_back(fmt::format(
      "stream {}: {} partition(s) paused (partition {} first): the consumer "
      "group's dead letters at the stream's owner reached its quota; their "
      "events wait in the log; {} dead letter(s) wait to be stored; the "
      "owner answered: {}",
      stream, pos.quota_paused, pos.first_quota_paused, pos.letters_waiting,
      pos.quota_refusal));
  if (silent_for)
    out.push_back(fmt::format("stream {}: no heartbeat from its producer for "
                              "{:.1f}s; the producer is down, stopped or cut "
                              "off",
                              stream, seconds_of(*silent_for)));
}

} // namespace

// Locks one at a time (store, health, peers, then consumers and each
// consumer's positions, in the lock order): no two of the leaves nest.
control::status_reply node::impl::status(bool count_dead_letters) {
  control::status_reply r;
  r.node = cfg.name;
  r.service = cfg.service;
  r.stream = stream;
  if (!running)
    r.health.emplace_back("the node is stopping");
  std::map<std::string, uint64_t, std::less<>> dead_letters;
  {
    std::shared_lock<std::shared_mutex> guard{store_mtx};
    if (log_store) {
      // Cleared as soon as the store resumes, with nothing written.
      if (auto err = log_store->writable())
        r.health.push_back(fmt::format("the event log cannot be written: {}; "
                                       "publishing, offset commits and dead "
                                       "letters fail until it can; free disk "
                                       "space or make the data directory "
                                       "writable",
                                       message_of(err)));
      r.head = log_store->head();
      r.first = log_store->first();
      if (auto t = log_store->first_timestamp(); !t)
        r.health.push_back(fmt::format("cannot read the oldest retained "
                                       "event: {}",
                                       message_of(t.error())));
      else if (*t)
        r.first_time = format_timestamp(**t);
      if (count_dead_letters) {
        if (auto counts = log_store->dead_letter_counts(); !counts)
          r.health.push_back(fmt::format("cannot count the dead letters: {}",
                                         message_of(counts.error())));
        else
          dead_letters = std::move(*counts);
      }
    }
  }
  // Peers that disagree on the frame limit, then when each peer stream
  // was heard last (peers.cpp keeps both).
  for (auto& why : peer_problems())
    r.health.push_back(std::move(why));
  if (auto why = join_problem())
    r.health.push_back(std::move(*why));
  std::unordered_map<std::string, steady_clock::time_point> heard;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    for (auto& [id, peer] : peer_streams)
      heard.emplace(id, peer.last_heartbeat);
  }
  auto owners = owner_problems();
  auto now = steady_clock::now();
  auto silent = silence_after();
  std::shared_lock<std::shared_mutex> guard{consumers_mtx};
  for (auto& e : consumers) {
    auto* config = config_of(cfg, e.name);
    auto stall_after =
      config ? config->stall_after : consumer_config{}.stall_after;
    auto& c = r.consumers.emplace_back();
    c.name = e.name;
    uint64_t owner_letters = 0;
    c.patterns = pattern_texts(e);
    {
      std::lock_guard<std::mutex> pguard{e.stats->positions_mtx};
      // A consumer group member (a group of one included) knows its
      // group's members from its start.
      if (!e.stats->group_members.empty()) {
        c.members = e.stats->group_members;
        c.partitions =
          config ? config->partitions : consumer_config{}.partitions;
      }
      for (auto& [id, pos] : e.stats->positions) {
        auto& s = c.streams.emplace_back();
        s.stream = id;
        s.offset = pos.offset;
        s.head = pos.head;
        s.lag = lag_of(pos.head, pos.offset);
        s.paused = pos.paused;
        for (auto& l : pos.leases)
          s.leases.push_back(
            {l.partition, l.epoch, l.offset, lag_of(pos.head, l.offset)});
        if (pos.partitions != 0)
          c.partitions = pos.partitions;
        std::optional<std::chrono::milliseconds> silent_for;
        // A member's stream: membership says whether its producer is
        // there (the one failure detector); a static peer's: its
        // heartbeats.
        if (auto owner = owners.find(id); owner != owners.end()) {
          if (!owner->second.empty())
            c.health.push_back(owner->second);
        } else if (auto it = heard.find(id);
                   it != heard.end() && id != stream) {
          auto quiet = std::chrono::duration_cast<std::chrono::milliseconds>(
            now - it->second);
          if (quiet >= silent)
            silent_for = quiet;
        }
        std::optional<steady_clock::duration> stalled_for;
        if (pos.head > pos.offset
            && pos.offset_moved != steady_clock::time_point{}
            && now - pos.offset_moved >= stall_after)
          stalled_for = now - pos.offset_moved;
        // A partition assigned here waits for its lease: the old holder
        // hands it over within a lease or two (a release, or its lease
        // running out); three is a problem to look at.
        std::optional<steady_clock::duration> unleased_for;
        if (pos.unleased > 0 && pos.unleased_since != steady_clock::time_point{}
            && now - pos.unleased_since >= 3 * cfg.groups.lease_ttl)
          unleased_for = now - pos.unleased_since;
        stream_reasons(id, pos, silent_for, stalled_for, unleased_for,
                       c.health);
        // The group's dead letters of other nodes' streams are kept there
        // (those of this node's own stream are counted below).
        if (id != stream)
          owner_letters += pos.owner_dead_letters;
      }
    }
    if (auto it = dead_letters.find(e.name); it != dead_letters.end())
      c.dead_letters = it->second;
    c.dead_letters += owner_letters;
    // The service actor died more often than its restarts allow.
    if (e.stats->paused.load())
      c.health.push_back(e.stats->pause_reason());
    auto threshold = config ? config->alert.dead_letters : 0;
    if (count_dead_letters && threshold > 0 && c.dead_letters >= threshold)
      c.health.push_back(fmt::format("{} dead letters, at or above the alert "
                                     "threshold of {}; see herald dlq list "
                                     "--consumer {}",
                                     c.dead_letters, threshold, e.name));
  }
  std::sort(r.consumers.begin(), r.consumers.end(),
            [](const auto& a, const auto& b) {
              return a.name < b.name;
            });
  return r;
}

std::string node::impl::serve(const control::status_request& r) {
  auto reply = status(true);
  reply.id = r.id;
  return control::encode(reply);
}

// 200 `ok`, or 503 with one reason per line: the node's, then each
// consumer's prefixed with its name. Dead letters are counted (a read of
// every letter) only when some consumer has an alert threshold.
std::pair<bool, std::string> node::impl::health() {
  bool any_threshold = std::any_of(cfg.consumers.begin(), cfg.consumers.end(),
                                   [](const consumer_config& c) {
                                     return c.alert.dead_letters > 0;
                                   });
  auto s = status(any_threshold);
  if (s.healthy())
    return {true, "ok"};
  std::vector<std::string> lines = s.health;
  for (auto& c : s.consumers)
    for (auto& why : c.health)
      lines.push_back(fmt::format("consumer {}: {}", c.name, why));
  return {false, fmt::format("{}", fmt::join(lines, "\n"))};
}

} // namespace herald
