// Dead letters as an operator sees them: the `herald dlq` requests, list,
// show, redrive and purge, and the entities parked behind dead letters.

#include <map>
#include <optional>

#include <caf/send.hpp>
#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "node_impl.hpp"

namespace herald {

// Answers a dead-letter request of `herald dlq` (see tools/dlq.cpp for
// the protocol). Throws nlohmann's exceptions on malformed fields; the
// caller answers those with an error.
payload node::impl::dlq_request(const std::string& op, const payload& req) {
  auto id = req.at("id").get<uint64_t>();
  store::dead_letter_filter f;
  f.consumer = req.value("consumer", std::string{});
  f.event_type = req.value("type", std::string{});
  f.key = req.value("key", std::string{});
  auto dry_run = req.value("dry_run", false);
  auto answer = [&](const char* field, auto&& value) {
    return payload{{"id", id}, {field, value}, {"dry_run", dry_run}};
  };
  auto ids_or_error = [&](const char* field,
                          caf::expected<std::vector<uint64_t>> r) {
    if (!r)
      return dlq_error(id, message_of(r.error()));
    return answer(field, *r);
  };
  if (op == "dlq.list") {
    f.after_id = req.value("after", uint64_t{0});
    auto limit = req.value("limit", uint64_t{100});
    f.limit = static_cast<size_t>(limit) + 1; // one more tells `more`
    auto letters = front->dead_letters(f);
    if (!letters)
      return dlq_error(id, message_of(letters.error()));
    bool more = letters->size() > limit;
    if (more)
      letters->pop_back();
    auto list = payload::array();
    for (auto& l : *letters)
      list.push_back(dead_letter_json(l, false));
    return {{"id", id}, {"dead_letters", std::move(list)}, {"more", more}};
  }
  if (op == "dlq.show") {
    auto which = req.at("dead_letter").get<uint64_t>();
    std::shared_lock<std::shared_mutex> guard{store_mtx};
    if (!log_store)
      return dlq_error(id, "the node is stopping");
    auto l = log_store->find_dead_letter(which);
    if (!l)
      return dlq_error(id, message_of(l.error()));
    if (!*l)
      return dlq_error(id, fmt::format("no dead letter {} on node '{}'; "
                                       "list them with herald dlq list",
                                       which, cfg.name));
    return {{"id", id}, {"dead_letter", dead_letter_json(**l, true)}};
  }
  if (op == "dlq.redrive")
    return ids_or_error("redriven", front->redrive(f, dry_run));
  if (op == "dlq.purge") {
    if (auto which = req.value("dead_letter", uint64_t{0}); which != 0)
      return ids_or_error("purged", front->purge(which, dry_run));
    if (f.consumer.empty() && f.event_type.empty() && f.key.empty()
        && !req.value("all", false))
      return dlq_error(id, "dlq.purge needs a dead letter id, a filter "
                           "(consumer, type, key) or all: true");
    return ids_or_error("purged", front->purge(f, dry_run));
  }
  return dlq_error(id, fmt::format("unknown operation '{}'; expected "
                                   "dlq.list, dlq.show, dlq.redrive or "
                                   "dlq.purge",
                                   op));
}

payload node::impl::dlq_error(uint64_t id, std::string why) {
  control_errors.fetch_add(1, std::memory_order_relaxed);
  log->warn("dead-letter request refused: {}", why);
  return {{"id", id}, {"error", std::move(why)}};
}

payload node::impl::dead_letter_json(const store::dead_letter& l,
                                     bool with_event) {
  auto attempts = payload::array();
  for (auto& a : l.attempts)
    attempts.push_back({{"time", format_timestamp(a.time_us)},
                        {"error", a.error},
                        {"class", a.error_class}});
  payload j{{"id", l.id},
            {"consumer", l.consumer},
            {"node", l.node},
            {"event_type", l.event_type},
            {"event_id", l.event_id},
            {"key", l.key},
            {"stream", l.stream},
            {"seq", l.seq},
            {"reason", l.reason},
            {"parked", l.parked},
            {"created", format_timestamp(l.created_us)},
            {"attempts", std::move(attempts)}};
  if (with_event) {
    if (auto ev = decode(l.envelope))
      j["event"] = payload(ev->to_json());
    else
      j["event_error"] = message_of(ev.error());
  }
  return j;
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
  std::set<std::string> seen;
  for (auto& l : *letters)
    if (seen.insert(l.key).second)
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
node::redrive(const store::dead_letter_filter& filter, bool dry_run) {
  auto letters = dead_letters(filter);
  if (!letters)
    return std::move(letters.error());
  std::vector<uint64_t> ids;
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
  if (dry_run)
    return ids;
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
