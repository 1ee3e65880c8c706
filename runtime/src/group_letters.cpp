// A stream owner's index of its groups' dead letters; the rules are in
// group_letters.hpp.

#include "group_letters.hpp"

#include <algorithm>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"

namespace herald {

group_letters::group_letters(std::string stream, uint64_t quota,
                             letter_store store,
                             std::function<void(const quota_reached&)> on_quota)
    : stream_(std::move(stream)), quota_(quota), store_(std::move(store)),
      on_quota_(std::move(on_quota)) {}

caf::expected<group_letters::group*>
group_letters::group_of(const std::string& name) {
  if (auto it = groups_.find(name); it != groups_.end())
    return &it->second;
  auto stored = store_.load(name);
  if (!stored)
    return std::move(stored.error());
  group g;
  for (auto& l : *stored)
    if (l.stream == stream_)
      keep(g, l.id, l, store::encode_dead_letter(l).size());
  return &groups_.emplace(name, std::move(g)).first->second;
}

void group_letters::keep(group& g, uint64_t id, const store::dead_letter& l,
                         uint64_t bytes) {
  auto& info = g.letters[id];
  g.bytes = g.bytes - info.bytes + bytes;
  info = {l.key, l.seq, bytes};
  g.by_key[l.key].insert(id);
  g.unparked.erase(l.key);
}

void group_letters::forget(group& g, uint64_t id) {
  auto it = g.letters.find(id);
  if (it == g.letters.end())
    return;
  g.bytes -= it->second.bytes;
  if (auto k = g.by_key.find(it->second.key); k != g.by_key.end()) {
    k->second.erase(id);
    if (k->second.empty())
      g.by_key.erase(k);
  }
  g.letters.erase(it);
  g.redriving.erase(id);
  if (quota_ == 0 || g.bytes < quota_)
    g.full = false;
}

std::vector<group_letter_reply> group_letters::take(const lease_request& r,
                                                    const holds_fn& holds) {
  std::vector<group_letter_reply> out(r.letters.size());
  if (r.letters.empty() && r.redriven.empty())
    return out;
  auto g = group_of(r.group);
  if (!g) {
    auto why = fmt::format("cannot read the dead letters of group '{}': {}",
                           r.group, message_of(g.error()));
    for (auto& o : out)
      o = {letter_result::failed, 0, why};
    return out;
  }
  auto& grp = **g;
  // The entities being redriven as the request comes (before its handled
  // letters are removed): a new letter of one goes with its redrive,
  // unless a redriven letter of it came back before it.
  std::set<std::string> redriven_keys;
  for (auto& [id, epoch] : grp.redriving)
    if (auto it = grp.letters.find(id); it != grp.letters.end())
      redriven_keys.insert(it->second.key);
  // Handled redriven letters go first: they make room.
  std::vector<uint64_t> handled;
  for (auto& d : r.redriven)
    if (grp.letters.count(d.id) > 0)
      handled.push_back(d.id);
  if (!handled.empty()) {
    if (store_.remove(handled))
      for (auto id : handled)
        forget(grp, id);
    // Not removed: still marked, handed again (a duplicate, never a loss).
  }

  std::vector<store::dead_letter> batch;
  std::vector<size_t> index;
  std::vector<uint64_t> sizes;
  uint64_t bytes = grp.bytes;
  bool refused = false;
  for (size_t i = 0; i < r.letters.size(); ++i) {
    auto& gl = r.letters[i];
    if (!holds(gl.partition, gl.epoch)) {
      out[i] = {letter_result::stale, 0,
                fmt::format("partition {}: epoch {} is not this member's "
                            "current lease: not stored; the partition's "
                            "holder handles the event",
                            gl.partition, gl.epoch)};
      continue;
    }
    auto size = store::encode_dead_letter(gl.letter).size();
    uint64_t replaced = 0;
    if (gl.letter.id != 0)
      if (auto it = grp.letters.find(gl.letter.id); it != grp.letters.end())
        replaced = it->second.bytes;
    uint64_t grown = std::max<uint64_t>(size, replaced) - replaced;
    // After one is refused, so are the rest: a smaller later letter of the
    // same entity must not be stored before it.
    if (quota_ != 0 && (refused || bytes + grown > quota_)) {
      auto why = fmt::format(
        "the dead letters of group '{}' at the owner of stream '{}' hold {} "
        "bytes in {} letters, and this one ({} bytes) would pass the quota of "
        "{} bytes (groups.dead_letter_quota); redrive or purge them (herald "
        "dlq redrive|purge --consumer {})",
        r.group, stream_, bytes, grp.letters.size() + batch.size(), size,
        quota_, r.group);
      if (!grp.full && on_quota_)
        on_quota_({r.group, stream_, grp.letters.size() + batch.size(), bytes,
                   quota_, why});
      grp.full = true;
      refused = true;
      out[i] = {letter_result::quota, 0, std::move(why)};
      continue;
    }
    bytes += grown;
    batch.push_back(gl.letter);
    index.push_back(i);
    sizes.push_back(std::max<uint64_t>(size, replaced));
  }
  if (batch.empty())
    return out;
  auto ids = store_.add(batch);
  if (!ids) {
    auto why = fmt::format("cannot store dead letters of group '{}': {}",
                           r.group, message_of(ids.error()));
    for (auto i : index)
      out[i] = {letter_result::failed, 0, why};
    return out;
  }
  for (size_t j = 0; j < batch.size(); ++j) {
    auto id = (*ids)[j];
    keep(grp, id, batch[j], sizes[j]);
    if (r.letters[index[j]].letter.id != 0) {
      // Stored again after a redrive: the entity is parked behind it again,
      // so its redrive is over. Every letter of it is a dead letter again,
      // redrivable, not only this one: one left marked would be handed
      // alone and handled before this one.
      if (auto k = grp.by_key.find(batch[j].key); k != grp.by_key.end())
        for (auto other : k->second)
          grp.redriving.erase(other);
      redriven_keys.erase(batch[j].key);
    } else {
      // A new letter of an entity being redriven (parked while its
      // redrive was on its way) goes with that redrive, after it (its seq
      // is higher): else the entity would go on without it.
      if (redriven_keys.count(batch[j].key) > 0)
        grp.redriving.emplace(id, 0);
    }
    out[index[j]] = {letter_result::stored, id, {}};
  }
  if (!refused)
    grp.full = false;
  return out;
}

void group_letters::annotate(const lease_request& r, lease_reply& reply,
                             size_t budget) {
  if (!reply.error.empty() || r.partitions == 0)
    return;
  auto it = groups_.find(r.group);
  if (it == groups_.end()) {
    // Read on the first grant: a new holder must see what is parked.
    bool grants = std::any_of(reply.entries.begin(), reply.entries.end(),
                              [](const lease_entry_reply& e) {
                                return e.result == lease_result::granted;
                              });
    if (!grants)
      return;
    auto g = group_of(r.group);
    if (!g) {
      // A grant without its parked entities would let their later events
      // pass their dead letters: refused instead (asked again).
      auto why = fmt::format("cannot read the group's dead letters (its "
                             "parked entities): {}",
                             message_of(g.error()));
      for (auto& e : reply.entries)
        if (e.result == lease_result::granted) {
          e.result = lease_result::refused;
          e.reason = why;
        }
      return;
    }
    it = groups_.find(r.group);
  }
  auto& g = it->second;
  reply.dead_letters = g.letters.size();
  // The partitions this member holds now, under which epoch.
  std::map<uint32_t, uint64_t> held;
  for (auto& e : reply.entries)
    if (e.result == lease_result::granted || e.result == lease_result::renewed)
      held[e.partition] = e.epoch;
  if (held.empty())
    return;
  auto part = [&](const std::string& key) {
    return partition_of(key, r.partitions);
  };
  for (auto& e : reply.entries) {
    if (e.result != lease_result::granted)
      continue;
    for (auto& [key, ids] : g.by_key)
      if (!ids.empty() && part(key) == e.partition)
        e.parked.push_back({key, *ids.begin()});
  }
  for (auto k = g.unparked.begin(); k != g.unparked.end();) {
    if (held.count(part(*k)) > 0 && reply.unparked.size() < max_group_letters) {
      reply.unparked.push_back({*k, 0});
      k = g.unparked.erase(k);
    } else {
      ++k;
    }
  }
  // Redriven letters not yet handed under the current lease, entity by
  // entity, each entity's in seq order. An entity some of whose letters
  // were handed under this lease already (its redrive was cut by the
  // budget) comes first, then the others by their first seq. An entity cut
  // again, and one handed before and not reached, is named in
  // `redrive_more`: its member holds its letters until the last part.
  struct due_entity {
    bool handed = false; // a letter of it was handed under this lease
    std::vector<std::pair<uint64_t, uint64_t>> letters; // (seq, id)
  };
  std::map<std::string, due_entity> entities;
  for (auto& [id, epoch] : g.redriving) {
    auto info = g.letters.find(id);
    if (info == g.letters.end())
      continue;
    auto h = held.find(part(info->second.key));
    if (h == held.end())
      continue;
    auto& d = entities[info->second.key];
    if (h->second == epoch)
      d.handed = true;
    else
      d.letters.emplace_back(info->second.seq, id);
  }
  std::vector<std::tuple<bool, uint64_t, const std::string*>> order;
  for (auto& [key, d] : entities) {
    if (d.letters.empty())
      continue;
    std::sort(d.letters.begin(), d.letters.end());
    order.emplace_back(!d.handed, d.letters.front().first, &key);
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::tie(std::get<0>(a), std::get<1>(a), *std::get<2>(a))
           < std::tie(std::get<0>(b), std::get<1>(b), *std::get<2>(b));
  });
  size_t used = 0;
  bool full = false;
  for (auto& [first, seq, key] : order) {
    auto& d = entities[*key];
    auto p = part(*key);
    bool cut = full;
    for (auto& [s, id] : d.letters) {
      if (cut)
        break;
      if (reply.redrive.size() >= max_group_letters
          || (used >= budget && !reply.redrive.empty())) {
        cut = full = true;
        break;
      }
      auto l = store_.find(id);
      if (!l || !*l) {
        // Asked again with the next reply; the entity's later letters wait
        // for it.
        cut = true;
        break;
      }
      used += (*l)->envelope.size();
      g.redriving[id] = held[p];
      d.handed = true;
      reply.redrive.push_back({p, held[p], std::move(**l)});
    }
    if (cut && d.handed && reply.redrive_more.size() < max_group_letters)
      reply.redrive_more.push_back(*key);
  }
}

caf::expected<std::vector<uint64_t>>
group_letters::redrive(const std::vector<store::dead_letter>& letters) {
  std::vector<uint64_t> marked;
  for (auto& l : letters) {
    if (l.stream != stream_)
      continue;
    auto g = group_of(l.consumer);
    if (!g)
      return std::move(g.error());
    if ((*g)->letters.count(l.id) == 0)
      continue; // removed meanwhile
    if ((*g)->redriving.emplace(l.id, 0).second)
      marked.push_back(l.id);
  }
  return marked;
}

void group_letters::purged(const std::vector<store::dead_letter>& letters) {
  for (auto& l : letters) {
    if (l.stream != stream_)
      continue;
    auto it = groups_.find(l.consumer);
    if (it == groups_.end())
      continue;
    auto& g = it->second;
    forget(g, l.id);
    if (g.by_key.count(l.key) == 0)
      g.unparked.insert(l.key);
  }
}

bool group_letters::redriving(uint64_t id) const {
  for (auto& [name, g] : groups_)
    if (g.redriving.count(id) > 0)
      return true;
  return false;
}

std::map<std::string, group_letters::usage> group_letters::usages() const {
  std::map<std::string, usage> out;
  for (auto& [name, g] : groups_)
    out[name] = {g.letters.size(), g.bytes, g.full};
  return out;
}

} // namespace herald
