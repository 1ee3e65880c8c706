// Operating consumer groups at a stream's owner: `group.describe` (the
// group's partitions, leases, offsets and lag on this node's stream, and
// its dead letters here) and `group.reset` (setting its committed offsets
// while it has no live member). The lease table's rules are in
// group_leases.hpp; `herald group` asks every owner (tools/group.cpp).

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/logger.h>

#include "group_leases.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"
#include "herald/core/partition.hpp"
#include "node_impl.hpp"

namespace herald {

namespace {

using std::chrono::steady_clock;

// Events read per log read while counting lag, and their bytes.
constexpr size_t lag_chunk = 4096;
constexpr size_t lag_chunk_bytes = size_t{8} * 1024 * 1024;

} // namespace

std::string node::impl::serve(const control::group_describe_request& r) {
  if (r.group.empty())
    return refuse(r.id, {},
                  "group.describe: group is empty: name the consumer group "
                  "(the consumer's name)");
  std::vector<pattern> patterns;
  for (auto& text : r.patterns) {
    auto p = pattern::parse(text);
    if (!p)
      return refuse(r.id, {},
                    fmt::format("group.describe of group '{}': pattern '{}': "
                                "{}",
                                r.group, text, message_of(p.error())));
    patterns.push_back(std::move(*p));
  }
  control::group_describe_reply out;
  out.id = r.id;
  out.stream = stream;
  out.group = r.group;
  std::optional<std::vector<lease_view>> view;
  {
    std::lock_guard<std::mutex> guard{groups_mtx};
    if (!leases)
      return refuse(r.id, {}, "group.describe: the node is not started yet");
    auto v = leases->inspect(r.group, steady_clock::now());
    if (!v)
      return refuse(r.id, {},
                    fmt::format("group.describe of group '{}': {}", r.group,
                                message_of(v.error())));
    view = std::move(*v);
  }
  {
    std::shared_lock<std::shared_mutex> guard{store_mtx};
    if (!log_store)
      return refuse(r.id, {}, "group.describe: the node is stopping");
    out.head = log_store->head();
    out.first = log_store->first();
  }
  if (view) {
    out.known = true;
    out.partitions = static_cast<uint32_t>(view->size());
    for (auto& v : *view) {
      control::group_partition_state s;
      s.partition = v.partition;
      s.holder = v.holder;
      s.epoch = v.epoch;
      s.expires_in_ms = v.expires_in_ms;
      s.offset = v.offset;
      out.leases.push_back(std::move(s));
    }
    if (auto err = count_lag(out, patterns))
      return refuse(r.id, {},
                    fmt::format("group.describe of group '{}': cannot count "
                                "its lag: {}",
                                r.group, message_of(err)));
  }
  store::dead_letter_filter f;
  f.consumer = r.group;
  auto letters = front->dead_letters(f);
  if (!letters)
    return refuse(r.id, {},
                  fmt::format("group.describe of group '{}': cannot read its "
                              "dead letters: {}",
                              r.group, message_of(letters.error())));
  std::set<std::string> keys;
  for (auto& l : *letters)
    keys.insert(l.key);
  out.dead_letters = letters->size();
  out.entities = keys.size();
  return control::encode(out);
}

// Counts, per partition of `out.leases`, the events after its offset of
// the types `patterns` select (every type when empty), reading at most
// `control::max_lag_events` events in all.
caf::error node::impl::count_lag(control::group_describe_reply& out,
                                 const std::vector<pattern>& patterns) {
  if (out.leases.empty())
    return {};
  auto lowest = out.head;
  for (auto& l : out.leases)
    lowest = std::min(lowest, l.offset);
  auto from = std::max(lowest + 1, out.first);
  auto accept = [&patterns](std::string_view type) {
    return patterns.empty()
           || std::any_of(patterns.begin(), patterns.end(),
                          [type](const pattern& p) {
                            return p.matches(type);
                          });
  };
  uint64_t read = 0;
  while (from <= out.head && read < control::max_lag_events) {
    auto max = std::min<uint64_t>(lag_chunk, control::max_lag_events - read);
    caf::expected<store::read_result> got = store::read_result{};
    {
      std::shared_lock<std::shared_mutex> guard{store_mtx};
      if (!log_store)
        return make_error(errc::not_running, "the node is stopping");
      got = log_store->read(from, out.head, static_cast<size_t>(max),
                            lag_chunk_bytes, accept);
    }
    if (!got)
      return std::move(got.error());
    for (auto& e : got->events) {
      ++read;
      auto ev = decode(e.envelope, limits);
      if (!ev)
        continue; // not an event of any partition: counted by no one
      auto& l = out.leases[partition_of(ev->key(), out.partitions)];
      if (e.seq > l.offset)
        ++l.lag;
    }
    if (got->next <= from)
      break;
    from = got->next;
  }
  if (from <= out.head)
    for (auto& l : out.leases)
      if (l.offset < out.head)
        l.lag_exact = false;
  return {};
}

std::string node::impl::serve(const control::group_reset_request& r) {
  auto where = fmt::format("group.reset of group '{}'", r.group);
  if (r.group.empty())
    return refuse(r.id, {},
                  "group.reset: group is empty: name the consumer group (the "
                  "consumer's name)");
  uint64_t offset = 0;
  {
    std::shared_lock<std::shared_mutex> guard{store_mtx};
    if (!log_store)
      return refuse(r.id, {}, where + ": the node is stopping");
    auto head = log_store->head();
    switch (r.to) {
    case control::reset_to::earliest:
      offset = log_store->first() - 1;
      break;
    case control::reset_to::time: {
      auto at = log_store->seq_at_or_after(static_cast<int64_t>(r.at));
      if (!at)
        return refuse(r.id, {},
                      fmt::format("{}: cannot find the first event at or "
                                  "after {}: {}",
                                  where,
                                  format_timestamp(static_cast<int64_t>(r.at)),
                                  message_of(at.error())));
      offset = *at - 1;
      break;
    }
    case control::reset_to::seq:
      if (r.at > head)
        return refuse(r.id, {},
                      fmt::format("{}: seq {} is past the head {} of stream "
                                  "'{}'; give a seq up to the head",
                                  where, r.at, head, stream));
      offset = r.at;
      break;
    }
  }
  caf::expected<std::optional<std::vector<offset_change>>> changes =
    std::optional<std::vector<offset_change>>{};
  {
    std::lock_guard<std::mutex> guard{groups_mtx};
    if (!leases)
      return refuse(r.id, {}, where + ": the node is not started yet");
    changes =
      leases->set_offsets(r.group, offset, r.dry_run, steady_clock::now());
  }
  if (!changes)
    return refuse(r.id, {},
                  fmt::format("{}: {}", where, message_of(changes.error())));
  control::group_reset_reply out;
  out.id = r.id;
  out.stream = stream;
  out.group = r.group;
  out.dry_run = r.dry_run;
  out.known = changes->has_value();
  if (*changes)
    for (auto& c : **changes)
      out.offsets.push_back({c.partition, c.from, c.to});
  if (out.known && !r.dry_run)
    log->warn("group '{}': the committed offsets of its {} partitions on "
              "stream '{}' were set to {} (reset to {})",
              r.group, out.offsets.size(), stream, offset,
              control::to_string(r.to));
  return control::encode(out);
}

} // namespace herald
