// Dead letters as an operator sees them: the `herald dlq` requests, list,
// show, redrive and purge, and the entities parked behind dead letters.

#include <algorithm>
#include <map>
#include <optional>
#include <tuple>

#include <caf/send.hpp>
#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "node_impl.hpp"

namespace herald {

namespace {

store::dead_letter_filter filter_of(const control::dlq_filter& f) {
  store::dead_letter_filter out;
  out.consumer = f.consumer;
  out.event_type = f.type;
  out.key = f.key;
  return out;
}

} // namespace

std::string node::impl::serve(const control::dlq_list_request& r) {
  auto f = filter_of(r.filter);
  f.after_id = r.after;
  f.limit = static_cast<size_t>(r.limit) + 1; // one more tells `more`
  auto letters = front->dead_letters(f);
  if (!letters)
    return refuse(r.id, {}, message_of(letters.error()));
  control::dlq_list_reply reply;
  reply.id = r.id;
  reply.more = letters->size() > r.limit;
  if (reply.more)
    letters->pop_back();
  for (auto& l : *letters)
    reply.dead_letters.push_back(control::to_record(l, false));
  return control::encode(reply);
}

std::string node::impl::serve(const control::dlq_show_request& r) {
  std::shared_lock<std::shared_mutex> guard{store_mtx};
  if (!log_store)
    return refuse(r.id, {}, "the node is stopping");
  auto l = log_store->find_dead_letter(r.dead_letter);
  if (!l)
    return refuse(r.id, {}, message_of(l.error()));
  if (!*l)
    return refuse(r.id, {},
                  fmt::format("no dead letter {} on node '{}'; list them "
                              "with herald dlq list",
                              r.dead_letter, cfg.name));
  control::dlq_show_reply reply;
  reply.id = r.id;
  reply.dead_letter = control::to_record(**l, true);
  return control::encode(reply);
}

std::string node::impl::serve(const control::dlq_redrive_request& r) {
  auto ids = front->redrive(filter_of(r.filter), r.dry_run, r.by);
  if (!ids)
    return refuse(r.id, {}, message_of(ids.error()));
  control::dlq_redrive_reply reply;
  reply.id = r.id;
  reply.redriven = std::move(*ids);
  reply.dry_run = r.dry_run;
  return control::encode(reply);
}

// A purge that selects nothing never gets here: decoding refuses it.
std::string node::impl::serve(const control::dlq_purge_request& r) {
  auto ids = r.dead_letter != 0 ? front->purge(r.dead_letter, r.dry_run)
                                : front->purge(filter_of(r.filter), r.dry_run);
  if (!ids)
    return refuse(r.id, {}, message_of(ids.error()));
  control::dlq_purge_reply reply;
  reply.id = r.id;
  reply.purged = std::move(*ids);
  reply.dry_run = r.dry_run;
  return control::encode(reply);
}

// Adds a redrive by `by` to the records of the letters `ids`.
caf::error node::impl::record_redrive(const std::vector<uint64_t>& ids,
                                      std::string_view by) {
  std::shared_lock<std::shared_mutex> guard{store_mtx};
  if (!log_store)
    return make_error(errc::not_running, "the node is stopping");
  auto n = log_store->record_redrive(
    ids, now_us(), by.empty() ? std::string{"unknown"} : std::string{by});
  return n ? caf::error{} : std::move(n.error());
}

// Deletes `letters` (or says which it would), unparking entities left
// without dead letters.
caf::expected<std::vector<uint64_t>>
node::impl::purge_letters(const std::vector<store::dead_letter>& letters,
                          bool dry_run) {
  std::vector<uint64_t> ids;
  for (auto& l : letters)
    ids.push_back(l.id);
  if (dry_run || ids.empty())
    return ids;
  {
    std::shared_lock<std::shared_mutex> guard{store_mtx};
    if (!log_store)
      return make_error(errc::not_running, "the node is stopping");
    if (auto n = log_store->remove_dead_letters(ids); !n)
      return std::move(n.error());
  }
  {
    // A group's letters: their entities go on at their partition's holder.
    std::lock_guard<std::mutex> guard{groups_mtx};
    if (this->letters)
      this->letters->purged(letters);
  }
  log->warn("purged {} dead letters", ids.size());
  std::set<std::pair<std::string, std::string>> entities;
  for (auto& l : letters)
    entities.emplace(l.consumer, l.key);
  for (auto& [consumer, key] : entities) {
    store::dead_letter_filter f;
    f.consumer = consumer;
    f.key = key;
    f.limit = 1;
    auto left = front->dead_letters(f);
    if (!left || !left->empty())
      continue;
    std::shared_lock<std::shared_mutex> guard{consumers_mtx};
    for (auto& c : consumers)
      if (c.name == consumer)
        caf::anon_send(c.actor, unpark_atom::value, key);
  }
  return ids;
}

// The entities of `consumer` with dead letters: parked until redriven,
// with the first dead letter of each.
std::vector<std::pair<std::string, uint64_t>>
node::impl::parked_entities(const std::string& consumer) {
  std::vector<std::pair<std::string, uint64_t>> parked;
  store::dead_letter_filter f;
  f.consumer = consumer;
  auto letters = log_store->dead_letters(f);
  if (!letters) {
    log->error("consumer={}: cannot read its dead letters to restore "
               "parked entities: {}",
               consumer, message_of(letters.error()));
    return parked;
  }
  // Letters of this node's own stream are the group's, kept here as its
  // owner: whoever holds their partition parks them (told with its grant).
  std::set<std::string> seen;
  for (auto& l : *letters)
    if (l.stream != stream && seen.insert(l.key).second)
      parked.emplace_back(l.key, l.id);
  if (!parked.empty())
    log->warn("consumer={}: {} entities stay parked behind their dead "
              "letters until redriven",
              consumer, parked.size());
  return parked;
}

caf::expected<std::vector<store::dead_letter>>
node::dead_letters(const store::dead_letter_filter& filter) const {
  std::shared_lock<std::shared_mutex> guard{impl_->store_mtx};
  if (!impl_->log_store)
    return make_error(errc::not_running, "the node is stopped");
  return impl_->log_store->dead_letters(filter);
}

caf::expected<std::vector<uint64_t>>
node::redrive(const store::dead_letter_filter& filter, bool dry_run,
              std::string_view by) {
  auto letters = dead_letters(filter);
  if (!letters)
    return std::move(letters.error());
  // Publish order per entity is (stream, seq); letter ids and times are
  // not: a letter keeps its id when it fails again after a redrive.
  std::stable_sort(
    letters->begin(), letters->end(),
    [](const store::dead_letter& x, const store::dead_letter& y) {
      return std::tie(x.stream, x.seq) < std::tie(y.stream, y.seq);
    });
  // A group's letters of this node's own stream go to the holder of their
  // partition with its next lease reply (group_letters.hpp).
  std::vector<store::dead_letter> grouped;
  std::erase_if(*letters, [&](store::dead_letter& l) {
    if (l.stream != impl_->stream)
      return false;
    grouped.push_back(std::move(l));
    return true;
  });
  std::vector<uint64_t> ids;
  if (!grouped.empty()) {
    if (dry_run) {
      std::lock_guard<std::mutex> guard{impl_->groups_mtx};
      for (auto& l : grouped)
        if (!impl_->letters || !impl_->letters->redriving(l.id))
          ids.push_back(l.id);
    } else {
      caf::expected<std::vector<uint64_t>> marked{std::vector<uint64_t>{}};
      {
        std::lock_guard<std::mutex> guard{impl_->groups_mtx};
        if (!impl_->letters)
          return make_error(errc::not_running, "the node is not started");
        marked = impl_->letters->redrive(grouped);
      }
      if (!marked)
        return std::move(marked.error());
      if (auto err = impl_->record_redrive(*marked, by))
        return err;
      if (!marked->empty())
        impl_->log->info("redriving {} dead letters of consumer groups: "
                         "each goes to the member that holds its partition",
                         marked->size());
      ids = std::move(*marked);
    }
  }
  std::map<std::string, std::vector<store::dead_letter>> by_consumer;
  {
    std::lock_guard<std::mutex> guard{impl_->redrive_mtx};
    for (auto& l : *letters) {
      if (impl_->redriving.count(l.id) > 0)
        continue;
      ids.push_back(l.id);
      if (!dry_run)
        impl_->redriving.insert(l.id);
      by_consumer[l.consumer].push_back(std::move(l));
    }
  }
  if (dry_run || by_consumer.empty())
    return ids;
  std::vector<uint64_t> local;
  for (auto& [name, batch] : by_consumer)
    for (auto& l : batch)
      local.push_back(l.id);
  if (auto err = impl_->record_redrive(local, by)) {
    std::lock_guard<std::mutex> guard{impl_->redrive_mtx};
    for (auto id : local)
      impl_->redriving.erase(id);
    return err;
  }
  std::shared_lock<std::shared_mutex> guard{impl_->consumers_mtx};
  for (auto& [name, batch] : by_consumer) {
    auto c = std::find_if(impl_->consumers.begin(), impl_->consumers.end(),
                          [&](const consumer_entry& e) {
                            return e.name == name;
                          });
    if (c == impl_->consumers.end()) {
      impl_->log->error("consumer={}: {} dead letters cannot be redriven: "
                        "the consumer does not run on this node",
                        name, batch.size());
      std::lock_guard<std::mutex> rguard{impl_->redrive_mtx};
      for (auto& l : batch) {
        impl_->redriving.erase(l.id);
        ids.erase(std::find(ids.begin(), ids.end(), l.id));
      }
      continue;
    }
    impl_->log->info("consumer={}: redriving {} dead letters", name,
                     batch.size());
    caf::anon_send(c->actor, redrive_atom::value, std::move(batch));
  }
  return ids;
}

caf::expected<std::vector<uint64_t>>
node::purge(const store::dead_letter_filter& filter, bool dry_run) {
  auto letters = dead_letters(filter);
  if (!letters)
    return std::move(letters.error());
  return impl_->purge_letters(*letters, dry_run);
}

caf::expected<std::vector<uint64_t>> node::purge(uint64_t id, bool dry_run) {
  std::optional<store::dead_letter> letter;
  {
    std::shared_lock<std::shared_mutex> guard{impl_->store_mtx};
    if (!impl_->log_store)
      return make_error(errc::not_running, "the node is stopped");
    auto found = impl_->log_store->find_dead_letter(id);
    if (!found)
      return std::move(found.error());
    letter = std::move(*found);
  }
  if (!letter)
    return make_error(errc::not_found,
                      fmt::format("no dead letter {} on node '{}'; list them "
                                  "with herald dlq list",
                                  id, impl_->cfg.name));
  return impl_->purge_letters({*letter}, dry_run);
}

} // namespace herald
