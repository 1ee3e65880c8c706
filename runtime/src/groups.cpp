// Consumer groups at the node: the owner's side for its own stream
// (`group_leases` over the log's offsets, serving `group.lease`), and the
// client side that carries the node's consumers' lease requests to the
// owners of other streams and their answers back (docs/architecture.md,
// "Consumer groups").

#include <chrono>
#include <string>
#include <utility>

#include <caf/send.hpp>
#include <fmt/format.h>
#include <spdlog/logger.h>

#include "group_leases.hpp"
#include "group_letters.hpp"
#include "herald/core/errc.hpp"
#include "history.hpp"
#include "node_impl.hpp"

namespace herald {

namespace {

using std::chrono::steady_clock;

// Lease requests to other nodes that got no answer in this long are
// forgotten (the consumer asks again on its own schedule).
constexpr auto lease_reply_wait = std::chrono::seconds{10};

// The keys of a group's state among the log's consumer offsets of the
// node's own stream. Consumer names hold no '/', so none of these is a
// consumer's.
std::string offset_key(const std::string& group, uint32_t partition) {
  return fmt::format("{}/p{}", group, partition);
}
std::string partitions_key(const std::string& group) {
  return group + "/partitions";
}
std::string remote_key(const std::string& group) {
  return group + "/remote";
}
std::string set_key(const std::string& group) {
  return group + "/set";
}

caf::error log_closed() {
  return make_error(errc::not_running, "the node is stopping: its log is "
                                       "closed");
}

} // namespace

caf::error start_groups(node::impl& p) {
  group_store s;
  auto* raw = &p;
  // The log is closed by shutdown while the pump may still serve: every
  // access holds store_mtx shared (taken after groups_mtx).
  auto read = [raw](const std::string& key) -> caf::expected<uint64_t> {
    std::shared_lock<std::shared_mutex> guard{raw->store_mtx};
    if (!raw->log_store)
      return log_closed();
    return raw->log_store->offset(key, raw->stream);
  };
  auto write = [raw](const std::string& key, uint64_t value) -> caf::error {
    std::shared_lock<std::shared_mutex> guard{raw->store_mtx};
    if (!raw->log_store)
      return log_closed();
    return raw->log_store->commit_offset(key, raw->stream, value);
  };
  s.load_offset = [read](const std::string& g, uint32_t partition) {
    return read(offset_key(g, partition));
  };
  s.store_offsets =
    [raw](const std::string& g,
          const std::vector<std::pair<uint32_t, uint64_t>>& offsets) {
      std::vector<std::pair<std::string, uint64_t>> keyed;
      keyed.reserve(offsets.size());
      for (auto& [partition, offset] : offsets)
        keyed.emplace_back(offset_key(g, partition), offset);
      std::shared_lock<std::shared_mutex> guard{raw->store_mtx};
      if (!raw->log_store)
        return log_closed();
      return raw->log_store->commit_offsets(keyed, raw->stream);
    };
  s.remote = [read](const std::string& g) -> caf::expected<bool> {
    auto v = read(remote_key(g));
    if (!v)
      return std::move(v.error());
    return *v != 0;
  };
  s.mark_remote = [write](const std::string& g) {
    return write(remote_key(g), 1);
  };
  s.partitions = [read](const std::string& g) -> caf::expected<uint32_t> {
    auto v = read(partitions_key(g));
    if (!v)
      return std::move(v.error());
    return static_cast<uint32_t>(*v);
  };
  s.store_partitions = [write](const std::string& g, uint32_t n) {
    return write(partitions_key(g), n);
  };
  s.offsets_set = [read](const std::string& g) -> caf::expected<bool> {
    auto v = read(set_key(g));
    if (!v)
      return std::move(v.error());
    return *v != 0;
  };
  s.set_offsets =
    [raw](const std::string& g,
          const std::vector<std::pair<uint32_t, uint64_t>>& offsets) {
      std::vector<std::pair<std::string, uint64_t>> keyed;
      keyed.reserve(offsets.size() + 1);
      for (auto& [partition, offset] : offsets)
        keyed.emplace_back(offset_key(g, partition), offset);
      keyed.emplace_back(set_key(g), 1);
      std::shared_lock<std::shared_mutex> guard{raw->store_mtx};
      if (!raw->log_store)
        return log_closed();
      return raw->log_store->commit_offsets(keyed, raw->stream);
    };
  auto ttl = std::chrono::duration_cast<std::chrono::milliseconds>(
    p.cfg.groups.lease_ttl);
  // A data dir that ran before may have granted leases that still run.
  auto restarted = p.incarnation > 1;
  p.leases = std::make_unique<group_leases>(p.stream, p.cfg.name, p.incarnation,
                                            ttl, restarted, steady_clock::now(),
                                            std::move(s));
  // The groups' dead letters of this stream, in the log's dead letters.
  letter_store ls;
  ls.load =
    [raw](
      const std::string& g) -> caf::expected<std::vector<store::dead_letter>> {
    std::shared_lock<std::shared_mutex> guard{raw->store_mtx};
    if (!raw->log_store)
      return log_closed();
    store::dead_letter_filter f;
    f.consumer = g;
    return raw->log_store->dead_letters(f);
  };
  ls.add = [raw](std::vector<store::dead_letter>& letters)
    -> caf::expected<std::vector<uint64_t>> {
    std::shared_lock<std::shared_mutex> guard{raw->store_mtx};
    if (!raw->log_store)
      return log_closed();
    return raw->log_store->add_dead_letters(letters);
  };
  ls.remove = [raw](const std::vector<uint64_t>& ids) -> caf::expected<size_t> {
    std::shared_lock<std::shared_mutex> guard{raw->store_mtx};
    if (!raw->log_store)
      return log_closed();
    return raw->log_store->remove_dead_letters(ids);
  };
  ls.find =
    [raw](uint64_t id) -> caf::expected<std::optional<store::dead_letter>> {
    std::shared_lock<std::shared_mutex> guard{raw->store_mtx};
    if (!raw->log_store)
      return log_closed();
    return raw->log_store->find_dead_letter(id);
  };
  p.letters = std::make_unique<group_letters>(
    p.stream, p.cfg.groups.dead_letter_quota, std::move(ls),
    // Raised once groups_mtx is released (publishing may wait).
    [raw](const quota_reached& q) {
      raw->quota_alerts.push_back(q);
    });
  return {};
}

lease_reply node::impl::serve_lease(const lease_request& r) {
  lease_reply reply;
  std::vector<quota_reached> alerts;
  {
    std::lock_guard<std::mutex> guard{groups_mtx};
    if (!leases) {
      reply.stream = r.stream;
      reply.group = r.group;
      reply.error = "the node is not started yet";
      return reply;
    }
    auto now = steady_clock::now();
    // Letters first, under the leases as they stand: their events are not
    // covered by the request's commits.
    auto stored = letters->take(r, [&](uint32_t p, uint64_t epoch) {
      return leases->holds(r.group, r.member, p, epoch, now);
    });
    reply = leases->serve(r, now);
    reply.letters = std::move(stored);
    letters->annotate(r, reply);
    alerts.swap(quota_alerts);
  }
  for (auto& q : alerts)
    raise_quota_alert(q);
  return reply;
}

std::string node::impl::serve(const control::group_lease_request& r) {
  if (r.body.stream != stream)
    return refuse(r.id, {},
                  fmt::format("group.lease: unknown stream '{}': this node's "
                              "stream is '{}'; ask the stream's owner",
                              r.body.stream, stream));
  auto reply = serve_lease(r.body);
  if (!reply.error.empty())
    return refuse(r.id, {},
                  fmt::format("group.lease of member '{}', group '{}': {}",
                              r.body.member, r.body.group, reply.error));
  control::group_lease_reply out;
  out.id = r.id;
  out.body = std::move(reply);
  return control::encode(out);
}

uint64_t node::impl::request_lease(lease_request req,
                                   const caf::actor& reply_to) {
  auto now = steady_clock::now();
  std::string endpoint;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    std::erase_if(pending_leases, [now](auto& kv) {
      return now - kv.second.sent > lease_reply_wait;
    });
    if (req.stream != stream) {
      auto it = peer_control.find(req.stream);
      if (it == peer_control.end() || !pump)
        return 0;
      endpoint = it->second;
    }
    id = control::group_id_bit | ++next_request;
    if (req.stream != stream)
      pending_leases[id] = pending_lease{reply_to, now, req, endpoint};
  }
  if (req.stream == stream) {
    // This node's own stream: served here.
    auto reply = serve_lease(req);
    reply.id = id;
    record_commits(req, reply);
    caf::anon_send(reply_to, group_atom::value, std::move(reply));
    return id;
  }
  control::group_lease_request m;
  m.id = id;
  m.body = std::move(req);
  pump->request(endpoint, control::encode(m));
  return id;
}

bool node::impl::on_group_reply(std::string_view endpoint,
                                std::string_view body) {
  auto id = control::message_id(body, limits);
  if ((id & control::group_id_bit) == 0 || (id & control::gossip_id_bit) != 0)
    return false;
  pending_lease p;
  {
    std::lock_guard<std::mutex> guard{peers_mtx};
    auto it = pending_leases.find(id);
    if (it == pending_leases.end() || it->second.endpoint != endpoint) {
      // Late, or from a peer the request did not go to: a reply is taken
      // only from the stream's owner it was sent to.
      if (it != pending_leases.end())
        control_errors.fetch_add(1, std::memory_order_relaxed);
      log->debug("dropped a group.lease reply from {} to no request pending "
                 "there (id {:#x}): late or unknown",
                 endpoint, id);
      return true;
    }
    p = std::move(it->second);
    pending_leases.erase(it);
  }
  lease_reply reply;
  auto answer = control::decode_reply<control::group_lease_reply>(body, limits);
  if (!answer) {
    control_errors.fetch_add(1, std::memory_order_relaxed);
    log->warn("malformed group.lease reply from the owner of stream '{}': {}",
              p.req.stream, message_of(answer.error()));
    reply.error = fmt::format("the owner of stream '{}' answered a malformed "
                              "reply: {}",
                              p.req.stream, message_of(answer.error()));
  } else if (auto* e = std::get_if<control::error_reply>(&*answer)) {
    reply.error = std::move(e->error);
  } else {
    reply = std::move(std::get<control::group_lease_reply>(*answer).body);
    if (reply.stream != p.req.stream || reply.group != p.req.group) {
      control_errors.fetch_add(1, std::memory_order_relaxed);
      auto why = fmt::format("the owner of stream '{}' answered for stream "
                             "'{}', group '{}': not taken",
                             p.req.stream, reply.stream, reply.group);
      log->warn("{}", why);
      reply = {};
      reply.error = std::move(why);
    }
  }
  reply.id = id;
  if (reply.stream.empty())
    reply.stream = p.req.stream;
  if (reply.group.empty())
    reply.group = p.req.group;
  record_commits(p.req, reply);
  caf::anon_send(p.to, group_atom::value, std::move(reply));
  return true;
}

void node::impl::record_commits(const lease_request& req,
                                const lease_reply& reply) {
  if (!history || !reply.error.empty())
    return;
  for (auto& e : reply.entries)
    if (e.result == lease_result::renewed || e.result == lease_result::released)
      history->group_committed(req.group, req.stream, e.partition, e.epoch,
                               req.partitions, e.offset);
}

} // namespace herald
