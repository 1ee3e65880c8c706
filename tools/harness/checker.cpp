#include "checker.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"
#include "herald/core/partition.hpp"

namespace herald::harness {

namespace {

std::string str(const payload& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>()
                                          : std::string{};
}

uint64_t num(const payload& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// A time in microseconds: negative or missing is 0 (no attempt).
uint64_t micros(const payload& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end() || !it->is_number_integer())
    return 0;
  auto v = it->get<int64_t>();
  return v > 0 ? static_cast<uint64_t>(v) : 0;
}

// A number that may be null (not in a group).
template <class T> std::optional<T> maybe(const payload& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end() || !it->is_number_unsigned())
    return std::nullopt;
  return static_cast<T>(it->get<uint64_t>());
}

// Calls `fn(line_no, json)` per complete line of `text`; a last line
// without a newline is counted in `cut`, undecodable lines in `bad`.
template <class F>
void each_line(std::string_view text, const std::string& file, size_t& cut,
               std::vector<std::string>& bad, F fn) {
  size_t no = 0;
  while (!text.empty()) {
    ++no;
    auto end = text.find('\n');
    if (end == std::string_view::npos) {
      ++cut;
      return;
    }
    auto line = text.substr(0, end);
    text.remove_prefix(end + 1);
    if (line.empty())
      continue;
    auto j = payload::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      bad.push_back(fmt::format("{}:{}: not a JSON object", file, no));
      continue;
    }
    fn(no, j);
  }
}

std::string read_text(const std::string& path, caf::error& err) {
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    err = make_error(errc::io_error,
                     fmt::format("cannot read '{}': is it a finished run's "
                                 "folder?",
                                 path));
    return {};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What one consumer did, from its records in order.
struct judged {
  consumer_verdict& out;
  const checks_spec& checks;
  void example(std::string text) {
    if (out.examples.size() < 5)
      out.examples.push_back(std::move(text));
  }
};

// What is judged of a list of records.
enum class scope {
  // One consumer alone: everything; an offset passes only events recorded
  // before it in the list (one node's file order).
  consumer,
  // A member of a group: its own records only, no loss, no offsets.
  member,
  // A group's records, merged by handling time: an offset passes only
  // events some member recorded as ending by the offset's time.
  group,
};

bool finished(const history_record& r) {
  return r.result != history_record::ending::discarded;
}

// Whether an offset record covers event `p`: its stream, and its
// partition when the offset is a partition's.
bool covers(const history_record& off, const published& p) {
  return !off.partition
         || partition_of(p.key, off.partitions) == *off.partition;
}

// What became of one poison event (`checks.poison: redriven`).
struct poison_fate {
  const history_record* first = nullptr;
  // Dead-lettered at least once; handled records after its last dead
  // letter.
  bool dead = false;
  uint64_t handled_after = 0;
};

// `fixed_us`: when the first `hooks` fault was applied (the handler
// fixed), if one was.
void judge_one(const std::vector<published>& publishes,
               const std::vector<const history_record*>& records,
               const std::set<std::string>& fail_keys,
               const std::vector<pattern>& patterns, judged j, scope how,
               std::optional<uint64_t> fixed_us = std::nullopt,
               const fault_record* rewind = nullptr) {
  auto& v = j.out;
  auto selects = [&](const std::string& type) {
    return any_matches(patterns, type);
  };
  // The acked events it should have, by id.
  std::unordered_map<std::string, const published*> expected;
  bool any_unknown = false;
  for (auto& p : publishes) {
    if (p.outcome == published::status::acked && selects(p.type))
      expected.emplace(p.id, &p);
    any_unknown = any_unknown || p.outcome == published::status::unknown;
  }
  if (how != scope::member)
    v.expected = expected.size();
  std::unordered_map<std::string, uint64_t> seen; // id -> records
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t>
    last_of_type;
  std::map<std::pair<std::string, std::string>, uint64_t> last_of_key;
  // Per stream, the seqs of expected events recorded so far.
  std::map<std::string, std::set<uint64_t>> recorded;
  std::map<std::string, std::map<uint64_t, const published*>> wanted;
  for (auto& [id, p] : expected)
    wanted[p->stream].emplace(p->seq, p);
  bool redriven = j.checks.poison_redriven;
  std::unordered_map<std::string, poison_fate> fates;
  // redriven: per (stream, key, type), the highest seq of a poison event
  // handled for the first time.
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t>
    last_handled;
  std::unordered_set<std::string> handled_once;
  // After a rewind: the events handled again, and per (stream, key,
  // type) the highest seq handled again so far.
  std::unordered_set<std::string> replayed;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t>
    last_replayed;
  // scope::group: the earliest end of a finished record per event.
  std::unordered_map<std::string, uint64_t> ended;
  if (how == scope::group)
    for (auto* r : records)
      if (r->what == history_record::kind::handling && finished(*r)) {
        auto [it, fresh] = ended.emplace(r->id, r->end_us);
        if (!fresh)
          it->second = std::min(it->second, r->end_us);
      }
  for (auto* r : records) {
    if (r->what == history_record::kind::offset) {
      if (how == scope::member)
        continue;
      auto w = wanted.find(r->stream);
      if (w == wanted.end())
        continue;
      auto& done = recorded[r->stream];
      for (auto it = w->second.begin();
           it != w->second.end() && it->first <= r->offset; ++it) {
        if (!covers(*r, *it->second))
          continue;
        bool before = false;
        if (how == scope::group) {
          auto e = ended.find(it->second->id);
          before = e != ended.end() && e->second <= r->time_us;
        } else {
          before = done.count(it->first) > 0;
        }
        if (!before) {
          ++v.offset_violations;
          j.example(fmt::format(
            "offset {} committed in stream {}{} {}before seq {} was handled",
            r->offset, r->stream,
            r->partition ? fmt::format(" partition {}", *r->partition)
                         : std::string{},
            how == scope::group ? fmt::format("by {} ", r->node)
                                : std::string{},
            it->first));
          break; // one per offset record
        }
      }
      continue;
    }
    if (r->what != history_record::kind::handling)
      continue;
    if (!finished(*r)) {
      ++v.discarded;
      continue;
    }
    auto n = ++seen[r->id];
    if (n > 1)
      ++v.duplicates;
    auto known = expected.find(r->id);
    if (known == expected.end()) {
      if (n == 1 && any_unknown)
        ++v.unknown_delivered;
    } else {
      recorded[r->stream].insert(r->seq);
    }
    bool poison = fail_keys.count(r->key) > 0;
    bool handled = r->result == history_record::ending::handled;
    if (rewind != nullptr && how != scope::member
        && r->start_us >= rewind->done_us && replayed.insert(r->id).second) {
      auto& by_type = last_replayed[{r->stream, r->key, r->type}];
      if (r->seq < by_type) {
        ++v.inversions;
        j.example(fmt::format("key {} type {}: seq {} handled again after "
                              "the rewind after seq {}",
                              r->key, r->type, r->seq, by_type));
      }
      by_type = std::max(by_type, r->seq);
    }
    if (poison && redriven && how != scope::member) {
      auto& fate = fates[r->id];
      if (fate.first == nullptr)
        fate.first = r;
      if (!handled) {
        fate.dead = true;
        fate.handled_after = 0;
      } else if (fate.dead) {
        ++fate.handled_after;
      } else if (n == 1 && (!fixed_us || r->start_us < *fixed_us)) {
        ++v.poison_handled;
        j.example(fmt::format("poison event {} (key {}) was handled before "
                              "any dead letter and before the handler was "
                              "fixed (a hooks fault)",
                              r->id, r->key));
      }
      if (handled && handled_once.insert(r->id).second) {
        auto& by_type = last_handled[{r->stream, r->key, r->type}];
        if (r->seq < by_type) {
          ++v.inversions;
          j.example(fmt::format("poison key {} type {}: seq {} handled "
                                "(redriven) after seq {}",
                                r->key, r->type, r->seq, by_type));
        }
        by_type = std::max(by_type, r->seq);
      }
    }
    if (n == 1) {
      if (handled)
        ++v.handled;
      else
        ++v.dead_lettered;
      if (poison && handled && !redriven) {
        ++v.poison_handled;
        j.example(
          fmt::format("poison event {} (key {}) was handled", r->id, r->key));
      }
      if (!poison && !handled) {
        ++v.unexpected_dead_letters;
        j.example(fmt::format("event {} (key {}, seq {}) was dead-lettered "
                              "but is no poison",
                              r->id, r->key, r->seq));
      }
      // Records whose order is not judged here: a member's first record
      // of a poison event may be the redrive of another member's dead
      // letter, after later events of its entity it dead-lettered as
      // parked (the group judges their order); in a group's merge, a
      // record without an attempt (dead-lettered unattempted behind a
      // parked entity) stands at its predecessor's time in its own file,
      // so its place among other members' records is a guess.
      bool unordered = (poison && redriven && how == scope::member)
                       || (how == scope::group && r->start_us == 0);
      if (!unordered) {
        auto& by_type = last_of_type[{r->stream, r->key, r->type}];
        if (r->seq < by_type) {
          ++v.inversions;
          j.example(fmt::format("key {} type {}: seq {} handled after seq "
                                "{}{}",
                                r->key, r->type, r->seq, by_type,
                                how == scope::group ? fmt::format(
                                  " (seq {} by {})", r->seq, r->node)
                                                    : std::string{}));
        }
        by_type = std::max(by_type, r->seq);
        auto& by_key = last_of_key[{r->stream, r->key}];
        if (r->seq < by_key)
          ++v.cross_type_inversions;
        by_key = std::max(by_key, r->seq);
      }
    }
  }
  if (how != scope::member)
    for (auto& [id, p] : expected)
      if (seen.count(id) == 0) {
        ++v.lost;
        j.example(fmt::format("lost: event {} ({} key {}, seq {})", id, p->type,
                              p->key, p->seq));
      }
  if (rewind != nullptr && rewind->rewind_to_us && how != scope::member)
    for (auto& [id, p] : expected)
      if (p->sent_us >= *rewind->rewind_to_us && replayed.count(id) == 0) {
        ++v.not_replayed;
        j.example(fmt::format("event {} ({} key {}, seq {}) published after "
                              "the rewind's time was not handled again "
                              "after the rewind",
                              id, p->type, p->key, p->seq));
      }
  for (auto& [id, fate] : fates) {
    if (!fate.dead || fate.handled_after == 1)
      continue;
    auto& r = *fate.first;
    if (fate.handled_after == 0) {
      ++v.poison_not_redriven;
      j.example(fmt::format("poison event {} (key {}, seq {}) was "
                            "dead-lettered and never handled after its last "
                            "dead letter: not redriven",
                            id, r.key, r.seq));
    } else {
      ++v.redrive_duplicates;
      j.example(fmt::format("poison event {} (key {}, seq {}) was handled {} "
                            "times after its last dead letter, not once",
                            id, r.key, r.seq, fate.handled_after));
    }
  }
  v.ok = v.lost == 0 && v.inversions == 0 && v.poison_handled == 0
         && v.poison_not_redriven == 0 && v.redrive_duplicates == 0
         && v.not_replayed == 0 && v.unexpected_dead_letters == 0
         && v.offset_violations == 0
         && (!j.checks.duplicates_fail || v.duplicates == 0)
         && (!j.checks.cross_type_fail || v.cross_type_inversions == 0);
}

// A group's records merged by handling time: a handling record at its
// `start_us` (one without an attempt at its predecessor's in its file),
// an offset at its `time_us`; ties in file order.
std::vector<const history_record*>
merge_by_time(const std::vector<std::vector<const history_record*>>& files) {
  struct item {
    uint64_t at;
    size_t file, pos;
    const history_record* r;
  };
  std::vector<item> all;
  for (size_t f = 0; f < files.size(); ++f) {
    uint64_t last = 0;
    for (size_t i = 0; i < files[f].size(); ++i) {
      auto* r = files[f][i];
      uint64_t at =
        r->what == history_record::kind::offset ? r->time_us : r->start_us;
      if (at == 0)
        at = last;
      last = at;
      all.push_back({at, f, i, r});
    }
  }
  std::sort(all.begin(), all.end(), [](const item& a, const item& b) {
    return std::tie(a.at, a.file, a.pos) < std::tie(b.at, b.file, b.pos);
  });
  std::vector<const history_record*> out;
  out.reserve(all.size());
  for (auto& i : all)
    out.push_back(i.r);
  return out;
}

// One lease epoch of one (stream, partition), as its records show it.
struct epoch_use {
  std::set<std::string> members;
  // The first start and the last end of its attempted records (0: none).
  uint64_t first_start = 0, last_end = 0;
  std::string first_member, last_member;
};

using partition_id = std::pair<std::string, uint32_t>;

// The epochs of every (stream, partition) a group's finished records
// carry.
std::map<partition_id, std::map<uint64_t, epoch_use>>
epochs_of(const std::vector<const history_record*>& records) {
  std::map<partition_id, std::map<uint64_t, epoch_use>> out;
  for (auto* r : records) {
    if (r->what != history_record::kind::handling || !finished(*r)
        || !r->partition || !r->lease_epoch)
      continue;
    auto& e = out[{r->stream, *r->partition}][*r->lease_epoch];
    e.members.insert(r->node);
    if (r->start_us == 0)
      continue; // dead-lettered unattempted: no work done
    if (e.first_start == 0 || r->start_us < e.first_start) {
      e.first_start = r->start_us;
      e.first_member = r->node;
    }
    if (r->end_us > e.last_end) {
      e.last_end = r->end_us;
      e.last_member = r->node;
    }
  }
  return out;
}

// The lease rule: per (stream, partition), every record of an epoch ends
// before the first record of any later epoch starts; one epoch, one
// member.
void check_leases(
  const std::map<partition_id, std::map<uint64_t, epoch_use>>& epochs,
  group_verdict& g) {
  auto example = [&](std::string text) {
    if (g.examples.size() < 8)
      g.examples.push_back(std::move(text));
  };
  g.partitions = epochs.size();
  for (auto& [where, uses] : epochs) {
    auto& [stream, partition] = where;
    g.epochs += uses.size();
    // The latest end among the epochs before, and whose it was.
    uint64_t last_end = 0, last_epoch = 0;
    std::string last_member;
    for (auto& [epoch, use] : uses) {
      if (use.members.size() > 1) {
        ++g.shared_epochs;
        example(fmt::format("stream {} partition {}: epoch {} used by {} "
                            "members ({})",
                            stream, partition, epoch, use.members.size(),
                            fmt::join(use.members, ", ")));
      }
      if (use.first_start != 0 && last_end > use.first_start) {
        ++g.lease_overlaps;
        example(fmt::format(
          "stream {} partition {}: epoch {} on {} handled until {} us, "
          "after epoch {} on {} began at {} us ({} us of overlap)",
          stream, partition, last_epoch, last_member, last_end, epoch,
          use.first_member, use.first_start, last_end - use.first_start));
      }
      if (use.last_end > last_end) {
        last_end = use.last_end;
        last_epoch = epoch;
        last_member = use.last_member;
      }
    }
  }
}

// The takeover of each kill of a member: for each (stream, partition) it
// held (the newest epoch recorded before the kill was its), the time to
// the first record under a newer epoch.
void check_takeovers(const std::vector<const history_record*>& records,
                     const std::vector<fault_record>& faults,
                     const checks_spec& checks, group_verdict& g) {
  for (auto& f : faults) {
    if ((f.kind != "kill" && f.kind != "wipe")
        || std::find(g.members.begin(), g.members.end(), f.target)
             == g.members.end())
      continue;
    takeover_verdict t;
    t.fault = f.fault;
    t.target = f.target;
    t.kill_us = f.applied_us;
    if (checks.takeover_within)
      t.within_ms = checks.takeover_within->count();
    // Per (stream, partition): the newest epoch started before the kill
    // and its member, then the first record under a newer one.
    struct state {
      uint64_t epoch = 0;
      std::string member;
      bool held = false;
      std::optional<uint64_t> taken_at;
      uint64_t new_epoch = 0;
      std::string by;
    };
    std::map<partition_id, state> parts;
    for (auto* r : records)
      if (r->what == history_record::kind::handling && finished(*r)
          && r->partition && r->lease_epoch && r->start_us != 0
          && r->start_us < f.applied_us) {
        auto& s = parts[{r->stream, *r->partition}];
        if (*r->lease_epoch >= s.epoch) {
          s.epoch = *r->lease_epoch;
          s.member = r->node;
        }
      }
    for (auto& [where, s] : parts)
      s.held = s.member == f.target;
    for (auto* r : records) {
      if (r->what != history_record::kind::handling || !finished(*r)
          || !r->partition || !r->lease_epoch || r->start_us < f.applied_us)
        continue;
      auto it = parts.find({r->stream, *r->partition});
      if (it == parts.end() || !it->second.held
          || *r->lease_epoch <= it->second.epoch)
        continue;
      auto& s = it->second;
      if (!s.taken_at || r->start_us < *s.taken_at) {
        s.taken_at = r->start_us;
        s.new_epoch = *r->lease_epoch;
        s.by = r->node;
      }
    }
    for (auto& [where, s] : parts) {
      if (!s.held)
        continue;
      ++t.held;
      if (!s.taken_at)
        continue;
      ++t.taken;
      auto ms = static_cast<int64_t>((*s.taken_at - f.applied_us) / 1000);
      if (ms > t.max_ms) {
        t.max_ms = ms;
        t.slowest = fmt::format(
          "stream {} partition {}: epoch {} on {}{}, was {} on {}", where.first,
          where.second, s.new_epoch, s.by,
          s.by == f.target ? " (restarted)" : "", s.epoch, f.target);
      }
    }
    // A bound with nothing measured is no pass: the histories did not
    // show what the killed member held.
    t.ok = !t.within_ms || (t.taken > 0 && t.max_ms <= *t.within_ms);
    if (!t.ok && g.examples.size() < 8)
      g.examples.push_back(
        t.taken == 0
          ? fmt::format("takeover after the kill of {}: nothing to measure "
                        "({} partitions held with a record before the kill, "
                        "none handled again under a newer epoch)",
                        t.target, t.held)
          : fmt::format("takeover after the kill of {}: {} ms, more than {} "
                        "ms ({})",
                        t.target, t.max_ms, *t.within_ms, t.slowest));
    g.takeovers.push_back(std::move(t));
  }
}

// Duplicates and handoff windows. A finished record of an event handled
// before is in a handoff window when it is under a newer lease epoch of
// its (stream, partition) than the event's previous record under a lease,
// and no offset of that partition recorded before it began covers it: the
// new holder replayed what the old one had not committed. A record under
// no lease after a dead letter is a redrive (`herald dlq redrive`). Any
// other duplicate is outside every window.
void check_windows(const std::vector<const history_record*>& records,
                   const fault_record* rewind, group_verdict& g) {
  auto example = [&](std::string text) {
    if (g.examples.size() < 8)
      g.examples.push_back(std::move(text));
  };
  struct previous {
    // The latest finished record, and the latest one under a lease.
    const history_record* last = nullptr;
    const history_record* leased = nullptr;
  };
  std::unordered_map<std::string, previous> seen;
  // Per (stream, partition), the highest offset recorded so far.
  std::map<partition_id, uint64_t> committed;
  // Per handoff (stream, partition, old epoch, new epoch): events handled
  // again, and the members on either side.
  struct window {
    uint64_t events = 0;
    std::string from, to;
  };
  std::map<std::tuple<std::string, uint32_t, uint64_t, uint64_t>, window>
    windows;
  for (auto* r : records) {
    if (r->what == history_record::kind::offset) {
      if (r->partition) {
        auto& c = committed[{r->stream, *r->partition}];
        c = std::max(c, r->offset);
      }
      continue;
    }
    if (r->what != history_record::kind::handling || !finished(*r))
      continue;
    auto& p = seen[r->id];
    auto* last = p.last;
    auto* leased = p.leased;
    p.last = r;
    if (r->lease_epoch)
      p.leased = r;
    if (last == nullptr)
      continue;
    if (rewind != nullptr && r->start_us >= rewind->done_us) {
      ++g.replayed;
      continue;
    }
    // A redrive hands a dead letter to the partition's holder: handled
    // there, or back to the dead letters (it failed again, or its entity
    // is still parked): a dead letter again is not a second handling.
    if (last->result == history_record::ending::dead_lettered) {
      ++g.redriven;
      continue;
    }
    if (!r->lease_epoch) {
      ++g.duplicates_outside_window;
      example(fmt::format("event {} (key {}, seq {}) handled again by {} "
                          "under no lease, after {} had {} it: a duplicate "
                          "outside any handoff window",
                          r->id, r->key, r->seq, r->node, last->node,
                          last->result == history_record::ending::handled
                            ? "handled"
                            : "dead-lettered"));
      continue;
    }
    auto epoch = *r->lease_epoch;
    auto partition = r->partition.value_or(0);
    if (leased == nullptr || *leased->lease_epoch >= epoch) {
      ++g.duplicates_outside_window;
      example(
        leased == nullptr
          ? fmt::format("event {} (key {}, seq {}) handled again by {} under "
                        "epoch {}, after {} handled it under no lease: a "
                        "duplicate outside any handoff window",
                        r->id, r->key, r->seq, r->node, epoch, last->node)
          : fmt::format("event {} (key {}, seq {}) of stream {} partition "
                        "{} handled again by {} under epoch {}, after {} "
                        "handled it under epoch {}: a duplicate outside any "
                        "handoff window (same or older epoch)",
                        r->id, r->key, r->seq, r->stream, partition, r->node,
                        epoch, leased->node, *leased->lease_epoch));
      continue;
    }
    if (auto c = committed.find({r->stream, partition});
        c != committed.end() && c->second >= r->seq) {
      ++g.duplicates_outside_window;
      example(fmt::format("event {} (key {}, seq {}) of stream {} partition "
                          "{} handled again by {} under epoch {}, after an "
                          "offset {} of that partition covering it was "
                          "committed: a replay of committed events, outside "
                          "the uncommitted window",
                          r->id, r->key, r->seq, r->stream, partition, r->node,
                          epoch, c->second));
      continue;
    }
    auto& w = windows[{r->stream, partition, *leased->lease_epoch, epoch}];
    ++w.events;
    w.from = leased->node;
    w.to = r->node;
  }
  for (auto& [where, w] : windows)
    if (w.events > g.largest_window) {
      auto& [stream, partition, from, to] = where;
      g.largest_window = w.events;
      g.largest_window_at =
        fmt::format("stream {} partition {}: epoch {} on {} -> epoch {} on {}",
                    stream, partition, from, w.from, to, w.to);
    }
}

// One change of the member holding a (stream, partition).
struct partition_move {
  partition_id where;
  uint64_t at_us = 0;
  std::string from, to;
  uint64_t from_epoch = 0, to_epoch = 0;
};

// The moves of the group's partitions, in handling-time order: a record
// under a newer lease epoch than the partition's latest, by another
// member than that epoch's.
std::vector<partition_move>
moves_of(const std::vector<const history_record*>& records) {
  struct holder {
    uint64_t epoch = 0;
    std::string member;
  };
  std::map<partition_id, holder> held;
  std::vector<partition_move> out;
  for (auto* r : records) {
    // A dead letter unattempted has no time of its own.
    if (r->what != history_record::kind::handling || !finished(*r)
        || !r->partition || !r->lease_epoch || r->start_us == 0)
      continue;
    partition_id where{r->stream, *r->partition};
    auto it = held.find(where);
    if (it == held.end()) {
      held.emplace(where, holder{*r->lease_epoch, r->node});
      continue;
    }
    auto& h = it->second;
    if (*r->lease_epoch <= h.epoch)
      continue;
    if (r->node != h.member)
      out.push_back(
        {where, r->start_us, h.member, r->node, h.epoch, *r->lease_epoch});
    h = {*r->lease_epoch, r->node};
  }
  return out;
}

// The moves per restart: each `cycle` restart of a member opens a window
// that the next one (or the end) closes; the most moves of one partition
// in a window must not pass `checks.moves_per_restart`. Returns whether
// every restart kept the bound, and there was one to judge when a bound
// is set.
bool check_moves(const std::vector<const history_record*>& records,
                 const std::vector<fault_record>& faults,
                 const checks_spec& checks, group_verdict& g) {
  auto moves = moves_of(records);
  g.moves = moves.size();
  std::vector<const fault_record*> restarts;
  bool any_restart = false;
  for (auto& f : faults) {
    if (f.kind != "cycle" || f.cycle < 1)
      continue;
    any_restart = true;
    if (std::find(g.members.begin(), g.members.end(), f.target)
        != g.members.end())
      restarts.push_back(&f);
  }
  std::stable_sort(restarts.begin(), restarts.end(), [](auto* a, auto* b) {
    return a->applied_us < b->applied_us;
  });
  for (size_t i = 0; i < restarts.size(); ++i) {
    auto& f = *restarts[i];
    restart_verdict rv;
    rv.fault = f.fault;
    rv.cycle = f.cycle;
    rv.target = f.target;
    rv.stop_us = f.applied_us;
    rv.until_us = i + 1 < restarts.size() ? restarts[i + 1]->applied_us : 0;
    rv.per_restart = checks.moves_per_restart;
    std::map<partition_id, std::vector<const partition_move*>> per_partition;
    for (auto& m : moves)
      if (m.at_us >= rv.stop_us && (rv.until_us == 0 || m.at_us < rv.until_us))
        per_partition[m.where].push_back(&m);
    for (auto& [where, list] : per_partition) {
      rv.moves += list.size();
      if (list.size() <= rv.most)
        continue;
      rv.most = list.size();
      std::string chain = fmt::format("{} (epoch {})", list.front()->from,
                                      list.front()->from_epoch);
      for (auto* m : list)
        chain += fmt::format(" -> {} (epoch {})", m->to, m->to_epoch);
      rv.busiest = fmt::format("stream {} partition {}: {}", where.first,
                               where.second, chain);
    }
    rv.ok = !rv.per_restart || rv.most <= *rv.per_restart;
    if (!rv.ok && g.examples.size() < 8)
      g.examples.push_back(fmt::format(
        "restart of {} (fault {}, cycle {}): a partition moved {} times in "
        "its window, more than {} ({})",
        rv.target, rv.fault, rv.cycle, rv.most, *rv.per_restart, rv.busiest));
    g.restarts.push_back(std::move(rv));
  }
  // A bound with no restart in the run is no pass: faults.jsonl showed
  // none to attribute moves to.
  if (checks.moves_per_restart && !any_restart) {
    if (g.examples.size() < 8)
      g.examples.push_back("moves per restart: the run recorded no restart "
                           "(no 'cycle' line in faults.jsonl): nothing to "
                           "judge");
    return false;
  }
  return std::all_of(g.restarts.begin(), g.restarts.end(), [](auto& r) {
    return r.ok;
  });
}

} // namespace

history parse_history(std::string_view text, const std::string& file) {
  history h;
  // A line that is no JSON is a record cut short by a kill (the restarted
  // node starts a fresh line after it), like a last line without newline.
  std::vector<std::string> cut;
  each_line(text, file, h.truncated, cut, [&](size_t no, const payload& j) {
    if (num(j, "v") != 1) {
      h.malformed.push_back(
        fmt::format("{}:{}: a record of history version {}, not 1", file, no,
                    j.contains("v") ? j["v"].dump() : "none"));
      return;
    }
    history_record r;
    auto kind = str(j, "record");
    r.node = str(j, "node");
    r.consumer = str(j, "consumer");
    r.incarnation = num(j, "incarnation");
    r.stream = str(j, "stream");
    if (kind == "start") {
      r.what = history_record::kind::start;
      if (auto it = j.find("fail_keys"); it != j.end())
        for (auto& k : *it)
          if (k.is_string())
            r.fail_keys.push_back(k.get<std::string>());
    } else if (kind == "offset") {
      r.what = history_record::kind::offset;
      r.offset = num(j, "offset");
      r.time_us = micros(j, "time_us");
      r.partition = maybe<uint32_t>(j, "partition");
      r.lease_epoch = maybe<uint64_t>(j, "lease_epoch");
      r.partitions = static_cast<uint32_t>(num(j, "partitions"));
      if (r.partition && r.partitions == 0) {
        h.malformed.push_back(fmt::format("{}:{}: an offset of partition {} "
                                          "without 'partitions'",
                                          file, no, *r.partition));
        return;
      }
    } else if (kind == "handling") {
      r.id = str(j, "id");
      r.seq = num(j, "seq");
      r.key = str(j, "key");
      r.type = str(j, "type");
      r.attempt = num(j, "attempt");
      auto outcome = str(j, "outcome");
      if (outcome == "handled")
        r.result = history_record::ending::handled;
      else if (outcome == "dead_lettered")
        r.result = history_record::ending::dead_lettered;
      else if (outcome == "discarded")
        r.result = history_record::ending::discarded;
      else {
        h.malformed.push_back(
          fmt::format("{}:{}: unknown outcome '{}'", file, no, outcome));
        return;
      }
      r.start_us = micros(j, "start_us");
      r.end_us = micros(j, "end_us");
      r.partition = maybe<uint32_t>(j, "partition");
      r.lease_epoch = maybe<uint64_t>(j, "lease_epoch");
    } else {
      h.malformed.push_back(
        fmt::format("{}:{}: unknown record '{}'", file, no, kind));
      return;
    }
    h.records.push_back(std::move(r));
  });
  h.truncated += cut.size();
  return h;
}

caf::expected<std::vector<published>> parse_publishes(std::string_view text,
                                                      const std::string& file) {
  std::vector<published> out;
  size_t cut = 0;
  std::vector<std::string> bad;
  each_line(text, file, cut, bad, [&](size_t, const payload& j) {
    published p;
    auto o = str(j, "outcome");
    p.outcome = o == "acked"     ? published::status::acked
                : o == "refused" ? published::status::refused
                                 : published::status::unknown;
    p.type = str(j, "type");
    p.key = str(j, "key");
    p.id = str(j, "id");
    p.stream = str(j, "stream");
    p.seq = num(j, "seq");
    p.sent_us = micros(j, "sent_us");
    out.push_back(std::move(p));
  });
  if (!bad.empty())
    return make_error(errc::decode_error, bad.front());
  return out;
}

caf::expected<std::vector<fault_record>> parse_faults(std::string_view text,
                                                      const std::string& file) {
  std::vector<fault_record> out;
  size_t cut = 0;
  std::vector<std::string> bad;
  each_line(text, file, cut, bad, [&](size_t no, const payload& j) {
    auto event = str(j, "event");
    bool rewind =
      event == "ran" && j.value("rewinds", false) && j.value("ok", false);
    if (event != "applied" && event != "cycle" && !rewind)
      return;
    fault_record f;
    if (rewind) {
      f.rewinds = true;
      f.done_us = micros(j, "done_us");
      if (auto to = micros(j, "rewind_to_us"); to > 0)
        f.rewind_to_us = to;
    }
    auto it = j.find("fault");
    f.fault = it != j.end() && it->is_number_integer() ? it->get<int>() : -1;
    if (event == "cycle") {
      auto c = j.find("cycle");
      f.cycle = c != j.end() && c->is_number_integer() ? c->get<int>() : 0;
      if (f.cycle < 1)
        bad.push_back(fmt::format("{}:{}: a 'cycle' line without its cycle "
                                  "number (from 1)",
                                  file, no));
    }
    f.kind = str(j, "kind");
    f.target = str(j, "target");
    f.fixes = j.value("fixes", false);
    f.applied_us = micros(j, "time_us");
    if (f.applied_us == 0)
      bad.push_back(fmt::format("{}:{}: no 'time_us'", file, no));
    out.push_back(std::move(f));
  });
  if (!bad.empty())
    return make_error(errc::decode_error, bad.front());
  return out;
}

std::vector<std::string> failed_commands(std::string_view text,
                                         const std::string& file) {
  std::vector<std::string> out;
  size_t cut = 0;
  std::vector<std::string> bad;
  each_line(text, file, cut, bad, [&](size_t no, const payload& j) {
    if (str(j, "event") != "ran" || j.value("ok", true))
      return;
    auto why = str(j, "why");
    out.push_back(
      why.empty()
        ? fmt::format("{}:{}: a run fault's command did not end "
                      "as expected (exit {}, expected {})",
                      file, no, j.value("exit", -1), j.value("expect_exit", 0))
        : fmt::format("command of faults[{}]: {}", j.value("fault", -1), why));
  });
  return out;
}

verdict judge(const std::vector<published>& publishes,
              const std::vector<std::pair<std::string, history>>& histories,
              const std::vector<consumer_info>& consumers,
              const checks_spec& checks,
              const std::vector<fault_record>& faults) {
  verdict v;
  for (auto& p : publishes)
    switch (p.outcome) {
    case published::status::acked:
      ++v.acked;
      break;
    case published::status::unknown:
      ++v.unknown;
      break;
    case published::status::refused:
      ++v.refused;
      break;
    }
  for (auto& [name, h] : histories) {
    v.truncated += h.truncated;
    for (auto& m : h.malformed)
      v.failures.push_back(m);
  }
  // A consumer name on several node instances is a group: its members.
  std::map<std::string, std::vector<const consumer_info*>> by_name;
  for (auto& c : consumers) {
    auto& list = by_name[c.consumer];
    if (std::none_of(list.begin(), list.end(), [&](auto* x) {
          return x->node == c.node;
        }))
      list.push_back(&c);
  }
  auto patterns_of = [](const consumer_info& c) {
    std::vector<pattern> patterns;
    for (auto& text : c.patterns)
      if (auto p = pattern::parse(text))
        patterns.push_back(std::move(*p));
    return patterns;
  };
  // A node's records of `consumer`, in file order, and its fail keys.
  auto records_of = [&](const std::string& node, const std::string& consumer,
                        std::set<std::string>& fail_keys) {
    std::vector<const history_record*> records;
    for (auto& [name, h] : histories) {
      if (name != node)
        continue;
      for (auto& r : h.records) {
        if (r.what == history_record::kind::start)
          fail_keys.insert(r.fail_keys.begin(), r.fail_keys.end());
        else if (r.consumer == consumer)
          records.push_back(&r);
      }
    }
    return records;
  };
  auto counts = [&](const auto& x) {
    return fmt::format(
      "lost {}, inversions {}, cross-type inversions {}{}, duplicates {}{}, "
      "poison handled {}, unexpected dead letters {}, offsets past "
      "unhandled events {}{}{}",
      x.lost, x.inversions, x.cross_type_inversions,
      checks.cross_type_fail ? " (must be 0)" : "", x.duplicates,
      checks.duplicates_fail ? " (must be 0)" : "", x.poison_handled,
      x.unexpected_dead_letters, x.offset_violations,
      checks.poison_redriven
        ? fmt::format(", poison not redriven {}, redriven more than once {}",
                      x.poison_not_redriven, x.redrive_duplicates)
        : std::string{},
      x.not_replayed > 0
        ? fmt::format(", not handled again after the rewind {}", x.not_replayed)
        : std::string{});
  };
  // The first rewinding command that ended as expected.
  const fault_record* rewind = nullptr;
  for (auto& f : faults)
    if (f.rewinds && rewind == nullptr)
      rewind = &f;
  // When the handler was fixed: the first `hooks` fault applied.
  std::optional<uint64_t> fixed_us;
  for (auto& f : faults)
    if (f.kind == "hooks" && f.fixes && (!fixed_us || f.applied_us < *fixed_us))
      fixed_us = f.applied_us;
  if (checks.publishes_acked && v.unknown + v.refused > 0)
    v.failures.push_back(fmt::format(
      "publishes: {} of {} not acknowledged ({} unknown outcome, {} "
      "refused); every publish must be (checks.publishes: acked)",
      v.unknown + v.refused, v.acked + v.unknown + v.refused, v.unknown,
      v.refused));
  for (auto& c : consumers) {
    consumer_verdict cv;
    cv.node = c.node;
    cv.consumer = c.consumer;
    bool member = by_name[c.consumer].size() > 1;
    if (member)
      cv.group = c.consumer;
    std::set<std::string> fail_keys;
    auto records = records_of(c.node, c.consumer, fail_keys);
    judge_one(publishes, records, fail_keys, patterns_of(c), {cv, checks},
              member ? scope::member : scope::consumer, fixed_us, rewind);
    if (!cv.ok)
      v.failures.push_back(fmt::format("{} on {}{}: {}", cv.consumer, cv.node,
                                       member ? " (a group member)" : "",
                                       counts(cv)));
    v.consumers.push_back(std::move(cv));
  }
  for (auto& [name, members] : by_name) {
    if (members.size() < 2)
      continue;
    group_verdict g;
    g.consumer = name;
    std::set<std::string> fail_keys;
    std::vector<std::vector<const history_record*>> files;
    for (auto* m : members) {
      g.members.push_back(m->node);
      files.push_back(records_of(m->node, name, fail_keys));
    }
    auto merged = merge_by_time(files);
    // Judged as one consumer: the counts land in a consumer_verdict.
    consumer_verdict as_one;
    judge_one(publishes, merged, fail_keys, patterns_of(*members.front()),
              {as_one, checks}, scope::group, fixed_us, rewind);
    g.expected = as_one.expected;
    g.handled = as_one.handled;
    g.dead_lettered = as_one.dead_lettered;
    g.lost = as_one.lost;
    g.duplicates = as_one.duplicates;
    g.inversions = as_one.inversions;
    g.cross_type_inversions = as_one.cross_type_inversions;
    g.poison_handled = as_one.poison_handled;
    g.unexpected_dead_letters = as_one.unexpected_dead_letters;
    g.offset_violations = as_one.offset_violations;
    g.unknown_delivered = as_one.unknown_delivered;
    g.poison_not_redriven = as_one.poison_not_redriven;
    g.redrive_duplicates = as_one.redrive_duplicates;
    g.not_replayed = as_one.not_replayed;
    g.discarded = as_one.discarded;
    g.examples = std::move(as_one.examples);
    check_leases(epochs_of(merged), g);
    check_windows(merged, rewind, g);
    // Members that handled events under no lease do not form a group:
    // the lease rule could not be judged.
    bool unleased = g.handled + g.dead_lettered > 0 && g.partitions == 0;
    if (unleased)
      g.examples.push_back("no record of a member carries a partition and "
                           "a lease epoch: the members handled events "
                           "without leases (each its own consumer?)");
    check_takeovers(merged, faults, checks, g);
    bool takeovers_ok =
      std::all_of(g.takeovers.begin(), g.takeovers.end(), [](auto& t) {
        return t.ok;
      });
    bool moves_ok = check_moves(merged, faults, checks, g);
    g.ok = as_one.ok && g.lease_overlaps == 0 && g.shared_epochs == 0
           && takeovers_ok && !unleased && g.duplicates_outside_window == 0
           && moves_ok;
    if (!g.ok)
      v.failures.push_back(fmt::format(
        "group {} ({} members): {}, lease overlaps {}, epochs shared by "
        "members {}, duplicates outside a handoff window {} (must be "
        "0){}{}{}",
        g.consumer, g.members.size(), counts(g), g.lease_overlaps,
        g.shared_epochs, g.duplicates_outside_window,
        takeovers_ok ? "" : ", a takeover slower than its bound or unmeasured",
        moves_ok ? ""
                 : fmt::format(", a partition moved more than {} time(s) in "
                               "one restart, or no restart to judge",
                               checks.moves_per_restart.value_or(0)),
        unleased ? ", no record under a lease" : ""));
    v.groups.push_back(std::move(g));
  }
  if (v.acked == 0)
    v.failures.push_back("no publish was acknowledged: nothing was tested; "
                         "see the nodes' logs");
  if (consumers.empty())
    v.failures.push_back("no consumer was found on any node: nothing was "
                         "checked");
  return v;
}

caf::expected<verdict> check_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  caf::error err;
  auto run = payload::parse(
    read_text((fs::path{dir} / "run.json").string(), err), nullptr, false);
  if (err)
    return err;
  if (!run.is_object())
    return make_error(errc::decode_error,
                      fmt::format("'{}/run.json' is no JSON object", dir));
  checks_spec checks;
  checks.duplicates_fail = run.value("duplicates_fail", false);
  checks.cross_type_fail = run.value("cross_type_fail", false);
  checks.poison_redriven = run.value("poison_redriven", false);
  checks.publishes_acked = run.value("publishes_acked", false);
  if (auto it = run.find("takeover_within_ms");
      it != run.end() && it->is_number_integer())
    checks.takeover_within = milliseconds{it->get<int64_t>()};
  if (auto it = run.find("moves_per_restart");
      it != run.end() && it->is_number_unsigned())
    checks.moves_per_restart = it->get<uint64_t>();
  std::vector<fault_record> faults;
  std::vector<std::string> commands;
  if (auto faults_path = (fs::path{dir} / "faults.jsonl").string();
      fs::exists(faults_path)) {
    auto text = read_text(faults_path, err);
    if (err)
      return err;
    auto parsed = parse_faults(text, faults_path);
    if (!parsed)
      return std::move(parsed.error());
    faults = std::move(*parsed);
    commands = failed_commands(text, faults_path);
  }
  auto pub_path = (fs::path{dir} / "publishes.jsonl").string();
  auto text = read_text(pub_path, err);
  if (err)
    return err;
  auto publishes = parse_publishes(text, pub_path);
  if (!publishes)
    return std::move(publishes.error());
  auto cons_path = (fs::path{dir} / "consumers.json").string();
  auto cons = payload::parse(read_text(cons_path, err), nullptr, false);
  if (err)
    return err;
  if (!cons.is_array())
    return make_error(errc::decode_error,
                      fmt::format("'{}' is no JSON array", cons_path));
  std::vector<consumer_info> consumers;
  for (auto& c : cons) {
    consumer_info ci;
    ci.node = str(c, "node");
    ci.consumer = str(c, "consumer");
    if (auto it = c.find("patterns"); it != c.end())
      for (auto& p : *it)
        if (p.is_string())
          ci.patterns.push_back(p.get<std::string>());
    consumers.push_back(std::move(ci));
  }
  std::vector<std::pair<std::string, history>> histories;
  auto hdir = fs::path{dir} / "history";
  std::error_code ec;
  for (auto& entry : fs::directory_iterator{hdir, ec}) {
    if (entry.path().extension() != ".jsonl")
      continue;
    auto path = entry.path().string();
    auto body = read_text(path, err);
    if (err)
      return err;
    histories.emplace_back(entry.path().stem().string(),
                           parse_history(body, path));
  }
  if (ec)
    return make_error(errc::io_error, fmt::format("cannot list '{}': {}",
                                                  hdir.string(), ec.message()));
  std::sort(histories.begin(), histories.end(), [](auto& a, auto& b) {
    return a.first < b.first;
  });
  auto v = judge(*publishes, histories, consumers, checks, faults);
  v.failures.insert(v.failures.end(), commands.begin(), commands.end());
  auto cluster_path = fs::path{dir} / "cluster.json";
  if (fs::exists(cluster_path)) {
    auto cluster =
      payload::parse(read_text(cluster_path.string(), err), nullptr, false);
    if (err)
      return err;
    if (!cluster.is_object())
      return make_error(
        errc::decode_error,
        fmt::format("'{}' is no JSON object", cluster_path.string()));
    if (auto it = cluster.find("failures");
        it != cluster.end() && it->is_array())
      for (auto& f : *it)
        if (f.is_string())
          v.failures.push_back(f.get<std::string>());
    v.cluster = std::move(cluster);
  }
  return v;
}

namespace {

// The cluster's results in the table: one line per expectation and per
// node of a join/leave cycle fault.
void cluster_lines(const payload& c, std::vector<std::string>& lines) {
  if (!c.is_object())
    return;
  if (auto it = c.find("membership"); it != c.end() && !it->empty()) {
    lines.push_back(fmt::format("{:<28} {:>9} {:>8} {:>6}  {}", "membership",
                                "within", "met in", "polls", "result"));
    for (auto& m : *it)
      lines.push_back(fmt::format(
        "{:<28} {:>6} ms {:>8} {:>6}  {}", str(m, "name"),
        m.value("within_ms", 0),
        m.contains("met_after_ms")
          ? fmt::format("{} ms", m.value("met_after_ms", 0))
          : std::string{"-"},
        m.value("polls", 0), m.value("met", false) ? "ok" : "FAIL"));
  }
  if (auto it = c.find("cycles"); it != c.end())
    for (auto& cy : *it) {
      lines.push_back(fmt::format(
        "cycles of {}: {} of {} done in {} ms, {} unclean exit(s); "
        "descriptors of the others (total/sockets/eventfds) before, peak, "
        "after:",
        str(cy, "target"), cy.value("done", 0), cy.value("times", 0),
        cy.value("took_ms", 0), cy.value("unclean_exits", 0)));
      auto fds = [](const payload& f) {
        return fmt::format("{}/{}/{}", f.value("total", 0),
                           f.value("sockets", 0), f.value("eventfds", 0));
      };
      for (auto& n : cy.value("nodes", payload::array()))
        lines.push_back(fmt::format(
          "  {:<20} {:>12} {:>12} {:>12}  {}", str(n, "node"),
          fds(n.value("before", payload::object())),
          fds(n.value("peak", payload::object())),
          fds(n.value("after", payload::object())),
          n.value("returned", false)
            ? fmt::format("back in {} ms", n.value("returned_after_ms", 0))
          : n.contains("note") ? str(n, "note")
                               : std::string{"NOT BACK"}));
    }
}

} // namespace

std::vector<std::string> table(const verdict& v) {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("{:<22} {:<14} {:>8} {:>8} {:>5} {:>5} {:>5} "
                              "{:>4} {:>6} {:>7} {:>7}  {}",
                              "consumer", "node", "expected", "handled", "dead",
                              "lost", "dups", "inv", "cross", "offset!",
                              "unknown", "result"));
  for (auto& c : v.consumers) {
    // A member's loss and offsets are its group's (the line below).
    bool member = !c.group.empty();
    auto dash = [&](uint64_t n) {
      return member ? std::string{"-"} : std::to_string(n);
    };
    lines.push_back(fmt::format(
      "{:<22} {:<14} {:>8} {:>8} {:>5} {:>5} {:>5} {:>4} {:>6} {:>7} {:>7}  "
      "{}{}",
      c.consumer, c.node, dash(c.expected), c.handled, c.dead_lettered,
      dash(c.lost), c.duplicates, c.inversions, c.cross_type_inversions,
      dash(c.offset_violations), c.unknown_delivered, c.ok ? "ok" : "FAIL",
      member ? fmt::format(" (member of group {}{})", c.group,
                           c.discarded > 0
                             ? fmt::format("; {} discarded", c.discarded)
                             : std::string{})
             : std::string{}));
  }
  if (!v.groups.empty())
    lines.push_back(fmt::format(
      "{:<22} {:>7} {:>8} {:>8} {:>5} {:>5} {:>5} {:>7} {:>6} {:>4} {:>7} "
      "{:>7} {:>8} {:>9} {:>5}  {}",
      "group", "members", "expected", "handled", "dead", "lost", "dups",
      "outwin!", "window", "inv", "offset!", "overlap", "discard", "parts/ep",
      "moves", "result"));
  for (auto& g : v.groups)
    lines.push_back(fmt::format(
      "{:<22} {:>7} {:>8} {:>8} {:>5} {:>5} {:>5} {:>7} {:>6} {:>4} {:>7} "
      "{:>7} {:>8} {:>9} {:>5}  {}",
      g.consumer, g.members.size(), g.expected, g.handled, g.dead_lettered,
      g.lost, g.duplicates, g.duplicates_outside_window, g.largest_window,
      g.inversions, g.offset_violations, g.lease_overlaps + g.shared_epochs,
      g.discarded, fmt::format("{}/{}", g.partitions, g.epochs), g.moves,
      g.ok ? "ok" : "FAIL"));
  for (auto& g : v.groups)
    if (g.largest_window > 0 || g.redriven > 0 || g.replayed > 0)
      lines.push_back(fmt::format(
        "handoff windows of {}: largest {} event(s) handled again{}{}{}",
        g.consumer, g.largest_window,
        g.largest_window > 0 ? fmt::format(" ({})", g.largest_window_at)
                             : std::string{},
        g.redriven > 0 ? fmt::format("; {} redrive(s) of dead letters, in no "
                                     "window",
                                     g.redriven)
                       : std::string{},
        g.replayed > 0 ? fmt::format("; {} replay(s) after the rewind, in no "
                                     "window",
                                     g.replayed)
                       : std::string{}));
  for (auto& g : v.groups)
    for (auto& r : g.restarts)
      lines.push_back(fmt::format(
        "restart of {} (fault {}, cycle {}): {} move(s) in its window ({}), "
        "at most {} of one partition{}{}  {}",
        r.target, r.fault, r.cycle, r.moves,
        r.until_us > 0 ? fmt::format("{} ms", (r.until_us - r.stop_us) / 1000)
                       : std::string{"to the end"},
        r.most, r.most > 0 ? fmt::format(" ({})", r.busiest) : std::string{},
        r.per_restart ? fmt::format(", at most {} allowed", *r.per_restart)
                      : std::string{},
        r.ok ? "ok" : "FAIL"));
  for (auto& g : v.groups)
    for (auto& t : g.takeovers)
      lines.push_back(fmt::format(
        "takeover of {}'s partitions after kill{}: {} held, {} handled "
        "again under a newer epoch, slowest {}{}  {}",
        t.target, t.fault >= 0 ? fmt::format(" (fault {})", t.fault) : "",
        t.held, t.taken,
        t.max_ms >= 0 ? fmt::format("{} ms ({})", t.max_ms, t.slowest)
                      : std::string{"-"},
        t.within_ms ? fmt::format(", within {} ms", *t.within_ms)
                    : std::string{},
        t.ok ? "ok" : "FAIL"));
  lines.push_back(
    fmt::format("publishes: {} acknowledged, {} unknown "
                "outcome (no answer, or not stored), {} refused; {} history "
                "record(s) cut short by a kill",
                v.acked, v.unknown, v.refused, v.truncated));
  for (auto& c : v.consumers)
    for (auto& e : c.examples)
      lines.push_back(fmt::format("  {} on {}: {}", c.consumer, c.node, e));
  for (auto& g : v.groups)
    for (auto& e : g.examples)
      lines.push_back(fmt::format("  group {}: {}", g.consumer, e));
  cluster_lines(v.cluster, lines);
  for (auto& f : v.failures)
    lines.push_back("FAILED: " + f);
  lines.push_back(v.ok() ? "result: PASS" : "result: FAIL");
  return lines;
}

payload to_json(const verdict& v) {
  auto consumers = payload::array();
  for (auto& c : v.consumers)
    consumers.push_back(
      {{"consumer", c.consumer},
       {"node", c.node},
       {"expected", c.expected},
       {"handled", c.handled},
       {"dead_lettered", c.dead_lettered},
       {"lost", c.lost},
       {"duplicates", c.duplicates},
       {"inversions", c.inversions},
       {"cross_type_inversions", c.cross_type_inversions},
       {"poison_handled", c.poison_handled},
       {"unexpected_dead_letters", c.unexpected_dead_letters},
       {"offset_violations", c.offset_violations},
       {"unknown_delivered", c.unknown_delivered},
       {"poison_not_redriven", c.poison_not_redriven},
       {"redrive_duplicates", c.redrive_duplicates},
       {"not_replayed", c.not_replayed},
       {"group", c.group.empty() ? payload{} : payload(c.group)},
       {"discarded", c.discarded},
       {"examples", c.examples},
       {"ok", c.ok}});
  auto groups = payload::array();
  for (auto& g : v.groups) {
    auto restarts = payload::array();
    for (auto& r : g.restarts)
      restarts.push_back(
        {{"fault", r.fault},
         {"cycle", r.cycle},
         {"target", r.target},
         {"stop_us", r.stop_us},
         {"until_us", r.until_us > 0 ? payload(r.until_us) : payload{}},
         {"moves", r.moves},
         {"most", r.most},
         {"busiest", r.busiest},
         {"per_restart", r.per_restart ? payload(*r.per_restart) : payload{}},
         {"ok", r.ok}});
    auto takeovers = payload::array();
    for (auto& t : g.takeovers)
      takeovers.push_back(
        {{"fault", t.fault},
         {"target", t.target},
         {"kill_us", t.kill_us},
         {"held", t.held},
         {"taken", t.taken},
         {"max_ms", t.max_ms >= 0 ? payload(t.max_ms) : payload{}},
         {"slowest", t.slowest},
         {"within_ms", t.within_ms ? payload(*t.within_ms) : payload{}},
         {"ok", t.ok}});
    groups.push_back(
      {{"consumer", g.consumer},
       {"members", g.members},
       {"expected", g.expected},
       {"handled", g.handled},
       {"dead_lettered", g.dead_lettered},
       {"lost", g.lost},
       {"duplicates", g.duplicates},
       {"inversions", g.inversions},
       {"cross_type_inversions", g.cross_type_inversions},
       {"poison_handled", g.poison_handled},
       {"unexpected_dead_letters", g.unexpected_dead_letters},
       {"offset_violations", g.offset_violations},
       {"unknown_delivered", g.unknown_delivered},
       {"poison_not_redriven", g.poison_not_redriven},
       {"redrive_duplicates", g.redrive_duplicates},
       {"not_replayed", g.not_replayed},
       {"replayed", g.replayed},
       {"discarded", g.discarded},
       {"lease_overlaps", g.lease_overlaps},
       {"shared_epochs", g.shared_epochs},
       {"partitions", g.partitions},
       {"epochs", g.epochs},
       {"duplicates_outside_window", g.duplicates_outside_window},
       {"largest_window", g.largest_window},
       {"largest_window_at", g.largest_window_at},
       {"redriven", g.redriven},
       {"moves", g.moves},
       {"restarts", std::move(restarts)},
       {"takeovers", std::move(takeovers)},
       {"examples", g.examples},
       {"ok", g.ok}});
  }
  uint64_t lost = 0;
  for (auto& c : v.consumers)
    lost += c.lost;
  for (auto& g : v.groups)
    lost += g.lost;
  return {{"version", 1},
          {"ok", v.ok()},
          {"lost", lost},
          {"acked", v.acked},
          {"unknown", v.unknown},
          {"refused", v.refused},
          {"truncated", v.truncated},
          {"consumers", std::move(consumers)},
          {"groups", std::move(groups)},
          {"cluster", v.cluster},
          {"failures", v.failures}};
}

} // namespace herald::harness
