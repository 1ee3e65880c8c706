// The owner's lease table; its rules are in group_leases.hpp.

#include "group_leases.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"

namespace herald {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

uint64_t ms_until(group_leases::clock::time_point from,
                  group_leases::clock::time_point to) {
  if (to <= from)
    return 0;
  // Rounded up: a lease with 0.4 ms left still runs.
  auto left = to - from;
  auto ms = duration_cast<milliseconds>(left);
  if (ms < left)
    ms += milliseconds{1};
  return static_cast<uint64_t>(ms.count());
}

lease_reply failed(const lease_request& r, std::string why) {
  lease_reply out;
  out.stream = r.stream;
  out.group = r.group;
  out.error = std::move(why);
  return out;
}

bool asks_grant(lease_op op) {
  return op == lease_op::acquire || op == lease_op::standby;
}

} // namespace

group_leases::group_leases(std::string stream, std::string self,
                           uint64_t incarnation, std::chrono::milliseconds ttl,
                           bool restarted, clock::time_point started,
                           group_store store)
    : stream_(std::move(stream)), self_(std::move(self)),
      incarnation_(incarnation), ttl_(ttl), restarted_(restarted),
      started_(started), store_(std::move(store)) {}

lease_reply group_leases::serve(const lease_request& r, clock::time_point now) {
  if (r.stream != stream_)
    return failed(r, fmt::format("stream '{}' is not this node's (its stream "
                                 "is '{}'): ask the stream's owner",
                                 r.stream, stream_));
  if (r.group.empty())
    return failed(r, "group is empty: name the consumer group (the "
                     "consumer's name)");
  if (r.member.empty())
    return failed(r, fmt::format("group '{}': member is empty: name the "
                                 "member (its node's name)",
                                 r.group));

  // The group's state, read from the store on its first request.
  auto [it, fresh] = groups_.try_emplace(r.group);
  auto& g = it->second;
  if (fresh) {
    auto n = store_.partitions(r.group);
    if (!n) {
      groups_.erase(it);
      return failed(r, fmt::format("group '{}': cannot read its partition "
                                   "count: {}",
                                   r.group, message_of(n.error())));
    }
    g.partitions = *n;
  }
  if (!g.remote_known) {
    auto remote = store_.remote(r.group);
    if (!remote)
      return failed(r, fmt::format("group '{}': cannot read whether members "
                                   "on other nodes held its leases: {}",
                                   r.group, message_of(remote.error())));
    g.remote = *remote;
    g.remote_known = true;
  }

  // Lets leases that ran out end, so that "held" below means unexpired.
  auto any_unexpired = false;
  for (auto& [p, l] : g.leases) {
    if (!l.holder.empty() && l.expires <= now) {
      l.holder.clear();
      l.free_since = l.expires;
      l.wanted = false;
    }
    any_unexpired = any_unexpired || !l.holder.empty();
  }

  lease_reply out;
  out.stream = r.stream;
  out.group = r.group;
  out.ttl_ms = static_cast<uint64_t>(ttl_.count());

  auto refuse_all = [&](const std::string& why) {
    for (auto& e : r.entries) {
      lease_entry_reply er;
      er.partition = e.partition;
      er.result = lease_result::refused;
      er.reason = why;
      if (auto l = g.leases.find(e.partition); l != g.leases.end()) {
        er.epoch = l->second.epoch;
        er.holder = l->second.holder;
        er.offset = l->second.offset.value_or(0);
      }
      out.entries.push_back(std::move(er));
    }
  };

  // After a restart, leases this node granted before may still run on
  // other nodes: a group that had remote members waits one ttl.
  auto resume = started_ + ttl_;
  auto held_back = restarted_ && g.remote && now < resume;

  if (r.partitions == 0 || r.partitions > max_partitions) {
    refuse_all(fmt::format("partitions is {}; it must be from 1 to {}",
                           r.partitions, max_partitions));
    orphans(g, now, out.orphans);
    return out;
  }
  if (g.partitions != r.partitions) {
    if (g.partitions != 0 && any_unexpired) {
      refuse_all(fmt::format(
        "group '{}' has {} partitions at the owner of stream '{}' while its "
        "leases run, and this member has {}: give every member of the group "
        "the same 'partitions'",
        r.group, g.partitions, stream_, r.partitions));
      orphans(g, now, out.orphans);
      return out;
    }
    // Taken only by a request that may be granted something: renewals and
    // releases of a number nobody uses any more are merely stale.
    auto grants = std::any_of(r.entries.begin(), r.entries.end(), [](auto& e) {
      return asks_grant(e.op);
    });
    if (grants && !held_back)
      if (auto err = repartition(r.group, g, r.partitions))
        return failed(r, message_of(err));
  }
  auto count = g.partitions != 0 ? g.partitions : r.partitions;

  // The request's commits, taken in memory as its entries are answered and
  // stored in one write at the end; undone by any return before that write
  // succeeds (an error reply commits nothing).
  struct pending_commit {
    lease* at;
    uint32_t partition;
    std::optional<uint64_t> before;
    uint64_t offset;
  };
  struct pending_commits : std::vector<pending_commit> {
    bool stored = false;
    ~pending_commits() {
      if (!stored)
        for (auto c = rbegin(); c != rend(); ++c)
          c->at->offset = c->before;
    }
  } commits;
  for (auto& e : r.entries) {
    lease_entry_reply er;
    er.partition = e.partition;
    if (e.partition >= count) {
      er.result =
        asks_grant(e.op) ? lease_result::refused : lease_result::stale;
      er.reason = fmt::format("partition {} is outside 0..{} of group '{}'",
                              e.partition, count - 1, r.group);
      out.entries.push_back(std::move(er));
      continue;
    }
    auto l = lease_of(r.group, g, e.partition, r.initial);
    if (!l)
      return failed(r, message_of(l.error()));
    auto& ls = **l;
    auto holds = [&] {
      return !ls.holder.empty();
    };
    auto fill = [&](lease_result result) {
      er.result = result;
      er.epoch = ls.epoch;
      er.offset = ls.offset.value_or(0);
      er.holder = ls.holder;
    };
    // Taken now, stored with the request's other commits before the
    // reply (undone if that fails).
    auto commit = [&] {
      if (e.offset <= ls.offset.value_or(0))
        return;
      commits.push_back({&ls, e.partition, ls.offset, e.offset});
      ls.offset = e.offset;
    };
    switch (e.op) {
    case lease_op::acquire:
    case lease_op::standby: {
      if (held_back) {
        fill(lease_result::refused);
        er.reason = fmt::format(
          "the owner of stream '{}' restarted and grants no lease of "
          "group '{}' for {} ms (leases it granted before may still run); "
          "ask again then",
          stream_, r.group, ms_until(now, resume));
        break;
      }
      if (holds() && (ls.holder != r.member || e.op == lease_op::standby)) {
        fill(lease_result::refused);
        er.reason = fmt::format("member '{}' holds it under epoch {} for "
                                "another {} ms",
                                ls.holder, ls.epoch, ms_until(now, ls.expires));
        if (e.op == lease_op::acquire)
          ls.wanted = true;
        break;
      }
      if (e.op == lease_op::standby && now - ls.free_since < ttl_) {
        fill(lease_result::refused);
        er.reason = fmt::format(
          "nobody holds it, but for {} ms only: a standby grant waits {} ms "
          "for its assigned member",
          duration_cast<milliseconds>(now - ls.free_since).count(),
          ttl_.count());
        break;
      }
      if (r.member != self_ && !g.remote) {
        if (auto err = store_.mark_remote(r.group))
          return failed(r, fmt::format("group '{}': cannot note that a "
                                       "member on another node holds a "
                                       "lease: {}",
                                       r.group, message_of(err)));
        g.remote = true;
      }
      if (g.partitions != r.partitions) {
        if (auto err = store_.store_partitions(r.group, r.partitions))
          return failed(r, fmt::format("group '{}': cannot store its "
                                       "partition count {}: {}",
                                       r.group, r.partitions, message_of(err)));
        g.partitions = r.partitions;
      }
      ls.grants += 1;
      ls.epoch = incarnation_ << 32 | ls.grants;
      ls.holder = r.member;
      ls.expires = now + ttl_;
      ls.wanted = false;
      fill(lease_result::granted);
      break;
    }
    case lease_op::renew:
    case lease_op::release: {
      if (!holds() || ls.holder != r.member || e.epoch != ls.epoch) {
        fill(lease_result::stale);
        er.reason = fmt::format(
          "epoch {} is not the current lease of member '{}' on partition {} "
          "(current: epoch {}, {}): nothing was committed; stop handling it",
          e.epoch, r.member, e.partition, ls.epoch,
          holds() ? fmt::format("held by '{}'", ls.holder)
                  : std::string{"held by nobody"});
        break;
      }
      commit();
      er.wanted = ls.wanted;
      ls.wanted = false;
      if (e.op == lease_op::renew) {
        ls.expires = now + ttl_;
        fill(lease_result::renewed);
      } else {
        ls.holder.clear();
        ls.free_since = now;
        fill(lease_result::released);
      }
      break;
    }
    }
    out.entries.push_back(std::move(er));
  }
  if (!commits.empty()) {
    std::vector<std::pair<uint32_t, uint64_t>> offsets;
    offsets.reserve(commits.size());
    for (auto& c : commits)
      offsets.emplace_back(c.partition, c.offset);
    if (auto err = store_.store_offsets(r.group, offsets))
      return failed(r, fmt::format("group '{}': cannot store the committed "
                                   "offsets of {} partition(s), partition {} "
                                   "first: {}",
                                   r.group, commits.size(),
                                   commits.front().partition, message_of(err)));
  }
  commits.stored = true;
  orphans(g, now, out.orphans);
  return out;
}

caf::expected<group_leases::lease*>
group_leases::lease_of(const std::string& name, group& g, uint32_t partition,
                       uint64_t initial) {
  auto [it, fresh] = g.leases.try_emplace(partition);
  auto& l = it->second;
  if (fresh)
    l.free_since = started_;
  if (!l.offset) {
    auto stored = store_.load_offset(name, partition);
    if (!stored) {
      if (fresh)
        g.leases.erase(it);
      return make_error(errc::io_error,
                        fmt::format("group '{}' partition {}: cannot read its "
                                    "committed offset: {}",
                                    name, partition,
                                    message_of(stored.error())));
    }
    l.offset = *stored;
  }
  // A member upgraded in place brings its position from before groups;
  // a stored 0 set by an operator is a position, not "none".
  if (*l.offset == 0 && initial > 0 && !g.set_known) {
    auto set = store_.offsets_set(name);
    if (!set)
      return make_error(errc::io_error,
                        fmt::format("group '{}': cannot read whether its "
                                    "offsets were set: {}",
                                    name, message_of(set.error())));
    g.set = *set;
    g.set_known = true;
  }
  if (*l.offset == 0 && initial > 0 && !g.set) {
    if (auto err = store_.store_offsets(name, {{partition, initial}}))
      return make_error(errc::io_error,
                        fmt::format("group '{}' partition {}: cannot store "
                                    "the member's initial offset {}: {}",
                                    name, partition, initial, message_of(err)));
    l.offset = initial;
  }
  return &l;
}

caf::error group_leases::repartition(const std::string& name, group& g,
                                     uint32_t partitions) {
  if (g.partitions == 0)
    return {}; // fixed by the first grant
  // The new partitions mix the old ones' entities: each starts where the
  // least advanced old one stands (duplicates, never loss).
  auto lowest = std::numeric_limits<uint64_t>::max();
  for (uint32_t p = 0; p < g.partitions; ++p) {
    auto l = lease_of(name, g, p, 0);
    if (!l)
      return l.error();
    lowest = std::min(lowest, (*l)->offset.value_or(0));
  }
  std::vector<std::pair<uint32_t, uint64_t>> offsets;
  for (uint32_t p = 0; p < partitions; ++p)
    offsets.emplace_back(p, lowest);
  if (auto err = store_.store_offsets(name, offsets))
    return make_error(errc::io_error,
                      fmt::format("group '{}': cannot store offset {} for "
                                  "its partitions while changing them from "
                                  "{} to {}: {}",
                                  name, lowest, g.partitions, partitions,
                                  message_of(err)));
  // Epochs keep counting (a grant of the new partition p is still above
  // every earlier epoch of p), offsets start again at the lowest.
  for (auto& [p, l] : g.leases)
    l.offset = p < partitions ? std::optional<uint64_t>{lowest} : std::nullopt;
  for (uint32_t p = 0; p < partitions; ++p)
    if (g.leases.try_emplace(p).second) {
      g.leases[p].free_since = started_;
      g.leases[p].offset = lowest;
    }
  if (auto err = store_.store_partitions(name, partitions))
    return make_error(errc::io_error,
                      fmt::format("group '{}': cannot store its partition "
                                  "count {}: {}",
                                  name, partitions, message_of(err)));
  g.partitions = partitions;
  return {};
}

void group_leases::orphans(const group& g, clock::time_point now,
                           std::vector<uint32_t>& out) const {
  // Held back after a restart: nothing can be granted yet.
  if (restarted_ && g.remote && now < started_ + ttl_)
    return;
  for (uint32_t p = 0; p < g.partitions; ++p) {
    auto it = g.leases.find(p);
    if (it == g.leases.end()) {
      if (now - started_ >= ttl_)
        out.push_back(p);
      continue;
    }
    auto& l = it->second;
    auto held = !l.holder.empty() && l.expires > now;
    auto free_since = l.holder.empty() ? l.free_since : l.expires;
    if (!held && now - free_since >= ttl_)
      out.push_back(p);
  }
}

bool group_leases::holds(const std::string& group, const std::string& member,
                         uint32_t partition, uint64_t epoch,
                         clock::time_point now) const {
  auto g = groups_.find(group);
  if (g == groups_.end())
    return false;
  auto l = g->second.leases.find(partition);
  return l != g->second.leases.end() && l->second.holder == member
         && l->second.epoch == epoch && epoch != 0 && l->second.expires > now;
}

std::vector<lease_view> group_leases::describe(const std::string& group,
                                               clock::time_point now) const {
  std::vector<lease_view> out;
  auto it = groups_.find(group);
  if (it == groups_.end())
    return out;
  for (auto& [p, l] : it->second.leases) {
    lease_view v;
    v.partition = p;
    v.epoch = l.epoch;
    v.offset = l.offset.value_or(0);
    if (!l.holder.empty() && l.expires > now) {
      v.holder = l.holder;
      v.expires_in_ms = ms_until(now, l.expires);
    }
    out.push_back(std::move(v));
  }
  return out;
}

caf::expected<group_leases::group*>
group_leases::loaded(const std::string& name) {
  if (auto it = groups_.find(name); it != groups_.end())
    return &it->second;
  auto n = store_.partitions(name);
  if (!n)
    return make_error(errc::io_error,
                      fmt::format("group '{}': cannot read its partition "
                                  "count: {}",
                                  name, message_of(n.error())));
  if (*n == 0)
    return nullptr;
  auto& g = groups_[name];
  g.partitions = *n;
  return &g;
}

caf::expected<std::optional<std::vector<lease_view>>>
group_leases::inspect(const std::string& name, clock::time_point now) {
  auto g = loaded(name);
  if (!g)
    return std::move(g.error());
  if (*g == nullptr)
    return std::optional<std::vector<lease_view>>{};
  for (uint32_t p = 0; p < (*g)->partitions; ++p)
    if (auto l = lease_of(name, **g, p, 0); !l)
      return std::move(l.error());
  std::vector<lease_view> out;
  for (auto& v : describe(name, now))
    if (v.partition < (*g)->partitions)
      out.push_back(std::move(v));
  return out;
}

caf::expected<std::optional<std::vector<offset_change>>>
group_leases::set_offsets(const std::string& name, uint64_t offset,
                          bool dry_run, clock::time_point now) {
  auto found = loaded(name);
  if (!found)
    return std::move(found.error());
  if (*found == nullptr)
    return std::optional<std::vector<offset_change>>{};
  auto& g = **found;
  std::vector<std::string> held;
  for (auto& [p, l] : g.leases)
    if (!l.holder.empty() && l.expires > now)
      held.push_back(fmt::format("partition {} by '{}' for another {} ms", p,
                                 l.holder, ms_until(now, l.expires)));
  if (!held.empty())
    return make_error(errc::invalid_argument,
                      fmt::format("group '{}' holds leases at the owner of "
                                  "stream '{}': {}; stop its members, wait "
                                  "until their leases end, and ask again",
                                  name, stream_, fmt::join(held, ", ")));
  if (!g.remote_known) {
    auto remote = store_.remote(name);
    if (!remote)
      return make_error(errc::io_error,
                        fmt::format("group '{}': cannot read whether members "
                                    "on other nodes held its leases: {}",
                                    name, message_of(remote.error())));
    g.remote = *remote;
    g.remote_known = true;
  }
  if (restarted_ && g.remote && now < started_ + ttl_)
    return make_error(
      errc::invalid_argument,
      fmt::format("the owner of stream '{}' restarted and leases of group "
                  "'{}' it granted before may still run for {} ms; ask again "
                  "then",
                  stream_, name, ms_until(now, started_ + ttl_)));
  std::vector<offset_change> changes;
  std::vector<std::pair<uint32_t, uint64_t>> offsets;
  for (uint32_t p = 0; p < g.partitions; ++p) {
    auto l = lease_of(name, g, p, 0);
    if (!l)
      return std::move(l.error());
    changes.push_back({p, (*l)->offset.value_or(0), offset});
    offsets.emplace_back(p, offset);
  }
  if (dry_run)
    return changes;
  if (auto err = store_.set_offsets(name, offsets))
    return make_error(errc::io_error,
                      fmt::format("group '{}': cannot store offset {} for its "
                                  "{} partitions: {}",
                                  name, offset, g.partitions, message_of(err)));
  for (uint32_t p = 0; p < g.partitions; ++p)
    g.leases[p].offset = offset;
  g.set = true;
  g.set_known = true;
  return changes;
}

std::vector<std::string> group_leases::groups() const {
  std::vector<std::string> out;
  for (auto& [name, g] : groups_)
    out.push_back(name);
  return out;
}

} // namespace herald
