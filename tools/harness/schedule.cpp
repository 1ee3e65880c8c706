#include "schedule.hpp"

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "herald/core/errc.hpp"
#include "payloads.hpp"

namespace herald::harness {

namespace {

// Picks `n` distinct keys of `keys` not in `taken`, which gets them too.
std::vector<std::string> pick_keys(std::mt19937_64& rng,
                                   const std::vector<std::string>& keys,
                                   std::vector<std::string>& taken, size_t n) {
  std::vector<std::string> free;
  for (auto& k : keys)
    if (std::find(taken.begin(), taken.end(), k) == taken.end())
      free.push_back(k);
  std::shuffle(free.begin(), free.end(), rng);
  free.resize(std::min(n, free.size()));
  taken.insert(taken.end(), free.begin(), free.end());
  return free;
}

std::vector<std::string> slow_fault_keys(std::mt19937_64& rng, const plan& p,
                                         size_t n) {
  // Any key but the poison ones: slowing a poison key shows nothing.
  auto taken = p.poison_keys;
  return pick_keys(rng, p.keys, taken,
                   n > 0 ? n : std::max<size_t>(1, p.keys.size() / 4));
}

void plan_random(const scenario& sc, const std::vector<instance>& all,
                 std::mt19937_64& rng, plan& p) {
  auto& r = sc.random;
  if (r.rate <= 0)
    return;
  std::vector<std::string> targets;
  if (r.nodes.empty()) {
    for (auto& in : all)
      if (sc.nodes[in.node].name != sc.workload.publish_to)
        targets.push_back(in.name);
  } else {
    for (auto& t : r.nodes)
      for (auto& name : instances_named(sc, all, t))
        targets.push_back(name);
  }
  if (targets.empty())
    return;
  std::exponential_distribution<double> gap{r.rate};
  auto end = sc.workload.duration;
  // The first fault no earlier than min_gap: the nodes settle in first.
  milliseconds free_from = r.min_gap;
  milliseconds t{0};
  std::vector<fault_kind> deck;
  for (;;) {
    t += milliseconds{static_cast<int64_t>(gap(rng) * 1000.0)};
    t = std::max(t, free_from);
    action a;
    a.at = t;
    a.origin = "random";
    // Kinds are dealt from a shuffled deck of `kinds`, dealt again when
    // empty: a short run still gets a mix of every kind.
    if (deck.empty()) {
      deck = r.kinds;
      std::shuffle(deck.begin(), deck.end(), rng);
    }
    a.kind = deck.back();
    deck.pop_back();
    a.target = targets[std::uniform_int_distribution<size_t>{0, targets.size()
                                                                  - 1}(rng)];
    switch (a.kind) {
    case fault_kind::kill:
      a.hold = r.restart_after;
      break;
    case fault_kind::pause:
      a.hold = r.pause_for;
      break;
    case fault_kind::slow:
      a.hold = r.slow_for;
      a.delay = r.slow_delay;
      a.keys = slow_fault_keys(rng, p, 0);
      break;
    case fault_kind::partition: {
      // A minority of all instances (the producer too), cut both ways or
      // one way.
      std::vector<std::string> everyone;
      for (auto& in : all)
        everyone.push_back(in.name);
      std::shuffle(everyone.begin(), everyone.end(), rng);
      auto n = std::uniform_int_distribution<size_t>{
        1, std::max<size_t>(1, everyone.size() / 2)}(rng);
      a.group.assign(everyone.begin(), everyone.begin() + static_cast<long>(n));
      a.target = a.group.front();
      a.one_way = std::uniform_int_distribution<int>{0, 1}(rng) == 1;
      a.hold = r.partition_for;
      break;
    }
    case fault_kind::disk_full:
      a.hold = r.disk_full_for;
      break;
    case fault_kind::cycle: // never drawn: the scenario refuses them
    case fault_kind::wipe:
    case fault_kind::hooks:
    case fault_kind::run:
      break;
    case fault_kind::clock: {
      auto max = r.clock_jump.count();
      a.jump =
        milliseconds{std::uniform_int_distribution<int64_t>{-max, max}(rng)};
      a.hold = r.clock_for;
      break;
    }
    }
    if (a.at + a.hold > end)
      break;
    free_from = a.at + a.hold + r.min_gap;
    p.faults.push_back(std::move(a));
  }
}

uint64_t fnv1a(std::string_view text, uint64_t h) {
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

} // namespace

std::vector<std::string> instances_named(const scenario& sc,
                                         const std::vector<instance>& all,
                                         const std::string& target) {
  std::vector<std::string> out;
  for (auto& in : all)
    if (in.name == target || sc.nodes[in.node].name == target)
      out.push_back(in.name);
  return out;
}

std::vector<instance> instances_of(const scenario& sc) {
  std::vector<instance> out;
  for (size_t i = 0; i < sc.nodes.size(); ++i) {
    auto& n = sc.nodes[i];
    for (int k = 1; k <= n.count; ++k)
      out.push_back(
        {n.count == 1 ? n.name : fmt::format("{}-{}", n.name, k), i, k});
  }
  return out;
}

uint64_t plan::digest() const {
  uint64_t h = 14695981039346656037ull;
  for (auto& k : keys)
    h = fnv1a(k, h);
  for (auto& e : events)
    h = fnv1a(
      fmt::format("{}|{}|{}|{}", e.at.count(), e.type, e.entity, e.data.dump()),
      h);
  for (auto& a : faults)
    h = fnv1a(fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", a.at.count(),
                          to_string(a.kind), a.target, a.hold.count(),
                          a.delay.count(), fmt::join(a.keys, ","),
                          fmt::join(a.group, ","), a.one_way, a.jump.count(),
                          a.times, a.period.count()),
              h);
  return h;
}

caf::expected<plan> make_plan(const scenario& sc, const catalog& cat,
                              uint64_t seed) {
  plan p;
  p.seed = seed;
  std::mt19937_64 rng{seed};
  auto& w = sc.workload;
  std::vector<const event_spec*> specs;
  for (auto& type : w.types) {
    auto* spec = cat.find(type);
    if (spec == nullptr)
      return make_error(errc::invalid_config,
                        fmt::format("{}: workload: type '{}' is not in the "
                                    "catalog {}",
                                    sc.file, type, cat.source()));
    specs.push_back(spec);
  }
  // One key type for all types: they share the entities.
  auto key_type = key_type_of(*specs.front());
  if (!key_type)
    return make_error(
      errc::invalid_config,
      fmt::format("{}: workload: {}", sc.file, message_of(key_type.error())));
  for (size_t i = 0; i < w.entities; ++i)
    p.keys.push_back(make_key(*key_type, seed, i));
  std::vector<std::string> taken;
  p.poison_keys = pick_keys(rng, p.keys, taken, w.poison);
  p.slow_keys = pick_keys(rng, p.keys, taken, w.slow.entities);
  // Events at a steady pace: event k at k / rate.
  auto total = static_cast<size_t>(
    w.rate * static_cast<double>(w.duration.count()) / 1000.0);
  std::uniform_int_distribution<size_t> pick_type{0, specs.size() - 1};
  std::uniform_int_distribution<size_t> pick_entity{0, w.entities - 1};
  for (size_t k = 0; k < total; ++k) {
    planned_event ev;
    ev.at = milliseconds{
      static_cast<int64_t>(static_cast<double>(k) * 1000.0 / w.rate)};
    auto* spec = specs[pick_type(rng)];
    ev.type = spec->name;
    ev.entity = pick_entity(rng);
    ev.data = make_payload(*spec, p.keys[ev.entity], rng);
    p.events.push_back(std::move(ev));
  }
  auto all = instances_of(sc);
  for (size_t i = 0; i < sc.faults.size(); ++i) {
    auto& f = sc.faults[i];
    auto targets = instances_named(sc, all, f.target);
    action a;
    a.spec = static_cast<int>(i);
    a.at = f.at;
    a.kind = f.kind;
    // A run has no target; hooks set every instance named.
    if (!targets.empty() && !is_instant(f.kind))
      a.target = targets[std::uniform_int_distribution<size_t>{0, targets.size()
                                                                    - 1}(rng)];
    if (f.kind == fault_kind::hooks) {
      a.group = targets;
      a.target = f.target;
    }
    if (is_instant(f.kind))
      a.spec_of = &f;
    a.hold = f.hold;
    a.delay = f.delay;
    a.origin = "timed";
    if (f.kind == fault_kind::slow)
      a.keys = slow_fault_keys(rng, p, f.keys);
    if (f.kind == fault_kind::partition) {
      a.group.clear();
      for (auto& g : f.group)
        for (auto& name : instances_named(sc, all, g))
          if (std::find(a.group.begin(), a.group.end(), name) == a.group.end())
            a.group.push_back(name);
      a.target = a.group.front();
    }
    a.one_way = f.one_way;
    if (f.kind == fault_kind::clock)
      a.jump = f.jump;
    if (f.kind == fault_kind::cycle) {
      a.times = f.times;
      a.period = f.period;
      a.fds_within = f.fds_within;
      a.fd_slack = f.fd_slack;
    }
    p.faults.push_back(std::move(a));
  }
  plan_random(sc, all, rng, p);
  std::stable_sort(p.faults.begin(), p.faults.end(),
                   [](const action& a, const action& b) {
                     return a.at < b.at;
                   });
  return p;
}

std::vector<std::string> describe(const plan& p, const scenario& sc) {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("schedule of '{}', seed {}:", sc.name, p.seed));
  for (auto& a : p.faults) {
    std::string what;
    switch (a.kind) {
    case fault_kind::kill:
      what = fmt::format("kill -9 {}, restart {} ms later", a.target,
                         a.hold.count());
      break;
    case fault_kind::pause:
      what = fmt::format("pause (SIGSTOP) {}, SIGCONT {} ms later", a.target,
                         a.hold.count());
      break;
    case fault_kind::slow:
      what = fmt::format("slow handling on {} by {} ms for keys [{}], {} ms "
                         "long",
                         a.target, a.delay.count(), fmt::join(a.keys, ", "),
                         a.hold.count());
      break;
    case fault_kind::partition:
      what = fmt::format("partition [{}] from the others{}, healed {} ms "
                         "later",
                         fmt::join(a.group, ", "),
                         a.one_way ? " one way (the others' packets to them "
                                     "dropped)"
                                   : "",
                         a.hold.count());
      break;
    case fault_kind::disk_full:
      what = fmt::format("fill the data disk of {}, freed {} ms later",
                         a.target, a.hold.count());
      break;
    case fault_kind::clock:
      what = fmt::format("jump the wall clock of {} by {:+} s, back {} ms "
                         "later",
                         a.target, static_cast<double>(a.jump.count()) / 1000.0,
                         a.hold.count());
      break;
    case fault_kind::wipe:
      what = fmt::format("kill -9 {} and delete its data directory, restart "
                         "{} ms later",
                         a.target, a.hold.count());
      break;
    case fault_kind::hooks:
      what = fmt::format(
        "set the test hooks of [{}]{}{}", fmt::join(a.group, ", "),
        !a.spec_of || !a.spec_of->fail_keys ? ""
        : a.spec_of->fail_keys_poison       ? ": fail keys the poison keys"
        : a.spec_of->fail_keys->empty()
          ? ": no fail keys"
          : fmt::format(": fail keys [{}]",
                        fmt::join(*a.spec_of->fail_keys, ", ")),
        !a.spec_of || !a.spec_of->slow_keys ? ""
        : a.spec_of->slow_keys_workload     ? ", slow keys the workload's"
        : a.spec_of->slow_keys->empty()
          ? ", no slow keys"
          : fmt::format(", {} slow key(s)", a.spec_of->slow_keys->size()));
      break;
    case fault_kind::run: {
      if (a.spec_of == nullptr)
        break;
      auto& f = *a.spec_of;
      what = fmt::format("run [{}], expect exit {}", fmt::join(f.argv, " "),
                         f.expect_exit);
      if (f.expect_output)
        what += fmt::format(" and output /{}/", *f.expect_output);
      if (f.reject_output)
        what += fmt::format(" and no output /{}/", *f.reject_output);
      what += fmt::format(" within {} ms{}{}", f.within.count(),
                          f.retry ? ", retried" : "",
                          f.rewinds ? "; it rewinds the consumers" : "");
      break;
    }
    case fault_kind::cycle:
      what =
        fmt::format("stop (SIGTERM: leave) and start {} {} times, one "
                    "every {} ms; the others' descriptors back within "
                    "{} ms",
                    a.target, a.times, a.period.count(), a.fds_within.count());
      break;
    }
    lines.push_back(fmt::format("  at {:>7.3f}s  {} ({})",
                                static_cast<double>(a.at.count()) / 1000.0,
                                what, a.origin));
  }
  if (p.faults.empty())
    lines.push_back("  no faults");
  lines.push_back(fmt::format(
    "  workload: {} events of [{}] over {} entities at {}/s to {}; poison "
    "keys [{}]; slow keys [{}]",
    p.events.size(), fmt::join(sc.workload.types, ", "), p.keys.size(),
    sc.workload.rate, sc.workload.publish_to, fmt::join(p.poison_keys, ", "),
    fmt::join(p.slow_keys, ", ")));
  lines.push_back(fmt::format("  plan digest {:016x}", p.digest()));
  return lines;
}

} // namespace herald::harness
