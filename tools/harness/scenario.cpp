#include "scenario.hpp"

#include <algorithm>
#include <filesystem>
#include <initializer_list>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "herald/core/config.hpp"
#include "herald/core/errc.hpp"
#include "yaml_util.hpp"

namespace herald::harness {

namespace {

using detail::entry;
using detail::problems;

constexpr std::string_view fault_kinds =
  "kill, pause, slow, partition, disk_full, clock, cycle, wipe, hooks or run";

constexpr fault_kind all_kinds[] = {
  fault_kind::kill,      fault_kind::pause,     fault_kind::slow,
  fault_kind::partition, fault_kind::disk_full, fault_kind::clock,
  fault_kind::cycle,     fault_kind::wipe,      fault_kind::hooks,
  fault_kind::run};

// Kinds given in `faults` only, never drawn at random.
bool timed_only(fault_kind k) {
  return k == fault_kind::cycle || k == fault_kind::wipe
         || k == fault_kind::hooks || k == fault_kind::run;
}

std::optional<fault_kind> kind_of(std::string_view text) {
  for (auto k : all_kinds)
    if (to_string(k) == text)
      return k;
  return std::nullopt;
}

// Reads a signed duration (`+1h`, `-30m`, `90s`) into `target`.
void read_jump(const entry& e, std::string_view ctx, problems& out,
               milliseconds& target) {
  if (!e)
    return;
  auto text = e.value.IsScalar() ? e.value.Scalar() : std::string{};
  std::string_view body{text};
  int sign = 1;
  if (!body.empty() && (body.front() == '+' || body.front() == '-')) {
    sign = body.front() == '-' ? -1 : 1;
    body.remove_prefix(1);
  }
  auto d = parse_duration(body);
  if (d && d->count() > 0) {
    target = sign * std::chrono::duration_cast<milliseconds>(*d);
    return;
  }
  out.add(e.line, fmt::format("{}'{}': '{}' is not a clock jump; use a "
                              "signed duration, e.g. +1h or -30m",
                              ctx, e.key, text));
}

// Reads a positive duration (`500ms`, `2s`) into `out`.
void read_ms(const entry& e, std::string_view ctx, problems& out,
             milliseconds& target, bool zero_ok = false) {
  if (!e)
    return;
  auto text = e.value.IsScalar() ? e.value.Scalar() : std::string{};
  auto d = parse_duration(text);
  if (d && (d->count() > 0 || zero_ok)) {
    target = std::chrono::duration_cast<milliseconds>(*d);
    return;
  }
  out.add(e.line, fmt::format("{}'{}': '{}' is not a {}duration; use a "
                              "number and a unit: ms, s, m (e.g. 500ms, 2s)",
                              ctx, e.key, text, zero_ok ? "" : "positive "));
}

// Reads a count >= `min` into `target`.
template <class T>
void read_count(const entry& e, std::string_view ctx, problems& out, T& target,
                int64_t min = 1) {
  if (!e)
    return;
  auto n = detail::int_of(e.value);
  if (n && *n >= min)
    target = static_cast<T>(*n);
  else
    out.add(e.line, fmt::format("{}'{}' must be an integer of at least {}, "
                                "not '{}'",
                                ctx, e.key, min,
                                e.value.IsScalar() ? e.value.Scalar()
                                                   : "a list or map"));
}

void read_number(const entry& e, std::string_view ctx, problems& out,
                 double& target, double min_exclusive) {
  if (!e)
    return;
  double v = -1;
  try {
    v = e.value.as<double>();
  } catch (const YAML::Exception&) {
  }
  if (v > min_exclusive)
    target = v;
  else
    out.add(e.line, fmt::format("{}'{}' must be a number above {}, not '{}'",
                                ctx, e.key, min_exclusive,
                                e.value.IsScalar() ? e.value.Scalar()
                                                   : "a list or map"));
}

// Reads a list of strings.
std::vector<std::string> read_strings(const entry& e, std::string_view ctx,
                                      std::string_view what, problems& out) {
  std::vector<std::string> result;
  if (!e)
    return result;
  if (!e.value.IsSequence()) {
    out.add(e.line,
            fmt::format("{}'{}' must be a list of {}", ctx, e.key, what));
    return result;
  }
  for (const auto& item : e.value)
    if (auto text =
          detail::text_of({e.key, detail::line_of(item), item}, ctx, what, out))
      result.push_back(std::move(*text));
  return result;
}

std::vector<fault_kind> read_kinds(const entry& e, std::string_view ctx,
                                   problems& out) {
  std::vector<fault_kind> kinds;
  for (auto& text : read_strings(e, ctx, fault_kinds, out))
    if (auto k = kind_of(text))
      kinds.push_back(*k);
    else
      out.add(e.line, fmt::format("{}'{}': '{}' is not a fault; use {}", ctx,
                                  e.key, text, fault_kinds));
  return kinds;
}

void read_node(const YAML::Node& n, size_t i, problems& out, scenario& sc) {
  auto ctx = fmt::format("nodes[{}]: ", i);
  if (!n.IsMap()) {
    out.add(detail::line_of(n),
            ctx + "must be a map with name, command and config");
    return;
  }
  entry name{"name"}, command{"command"}, config{"config"}, count{"count"},
    host{"host"}, start_at{"start_at"}, start_after{"start_after"};
  detail::read_map(
    n, ctx, {&name, &command, &config, &count, &host, &start_at, &start_after},
    out);
  node_spec spec;
  spec.line = detail::line_of(n);
  if (detail::require(name, spec.line, ctx, "the node's name, e.g. email", out))
    spec.name = detail::text_of(name, ctx, "a name", out).value_or("");
  if (detail::require(command, spec.line, ctx,
                      "the executable and its arguments, e.g. "
                      "[email_service, --config, '{{config}}']",
                      out))
    spec.command = read_strings(command, ctx, "words", out);
  if (command && spec.command.empty() && command.value.IsSequence())
    out.add(command.line, ctx + "'command' must name an executable");
  if (detail::require(config, spec.line, ctx,
                      "the node config template (a YAML block: config: |)",
                      out))
    spec.config = detail::text_of(config, ctx, "a text", out).value_or("");
  read_count(count, ctx, out, spec.count);
  if (host)
    spec.host = detail::text_of(host, ctx, "an address", out).value_or("");
  if (start_at && start_after)
    out.add(start_after.line, ctx
                                + "'start_after' is the older spelling of "
                                  "'start_at'; give one of them");
  read_ms(start_at, ctx, out, spec.start_at, true);
  read_ms(start_after, ctx, out, spec.start_at, true);
  if (sc.find(spec.name) != nullptr)
    out.add(spec.line, fmt::format("{}node '{}' is named twice; give each "
                                   "node its own name",
                                   ctx, spec.name));
  sc.nodes.push_back(std::move(spec));
}

void read_workload(const entry& e, problems& out, workload_spec& w) {
  constexpr std::string_view ctx = "workload: ";
  if (!e.value.IsMap()) {
    out.add(e.line, "'workload' must be a map with publish_to, types, "
                    "entities, rate, duration");
    return;
  }
  entry publish_to{"publish_to"}, types{"types"}, entities{"entities"},
    rate{"rate"}, duration{"duration"}, poison{"poison"}, slow{"slow"},
    batch{"batch"};
  detail::read_map(
    e.value, ctx,
    {&publish_to, &types, &entities, &rate, &duration, &poison, &slow, &batch},
    out);
  if (detail::require(publish_to, e.line, ctx,
                      "the node that publishes, e.g. publish_to: user", out))
    w.publish_to =
      detail::text_of(publish_to, ctx, "a node name", out).value_or("");
  if (detail::require(types, e.line, ctx,
                      "the event types to publish, e.g. "
                      "[user.account.created]",
                      out))
    w.types = read_strings(types, ctx, "event types", out);
  read_count(entities, ctx, out, w.entities);
  read_number(rate, ctx, out, w.rate, 0);
  read_ms(duration, ctx, out, w.duration);
  read_count(poison, ctx, out, w.poison, 0);
  read_count(batch, ctx, out, w.batch);
  if (w.batch > 256)
    out.add(batch.line, "workload: 'batch' must be at most 256 (a publish "
                        "request's limit)");
  if (slow && slow.value.IsMap()) {
    entry n{"entities"}, delay{"delay"};
    detail::read_map(slow.value, "workload: slow: ", {&n, &delay}, out);
    read_count(n, "workload: slow: ", out, w.slow.entities, 0);
    read_ms(delay, "workload: slow: ", out, w.slow.delay);
  } else if (slow) {
    out.add(slow.line, "workload: 'slow' must be a map like {entities: 2, "
                       "delay: 200ms}");
  }
  if (w.poison + w.slow.entities > w.entities)
    out.add(e.line, fmt::format("workload: poison ({}) and slow ({}) "
                                "entities are more than 'entities' ({})",
                                w.poison, w.slow.entities, w.entities));
}

// Reads the keys of a `hooks` fault: `fail_keys: none | poison | [KEY..]`
// and `slow_keys: none | slow | {KEY: 200ms}`.
void read_hooks(const entry& fail_keys, const entry& slow_keys,
                std::string_view ctx, problems& out, fault_spec& f) {
  if ((fail_keys || slow_keys) && f.kind != fault_kind::hooks)
    out.add(fail_keys ? fail_keys.line : slow_keys.line,
            std::string{ctx} + "'fail_keys' and 'slow_keys' go with hooks");
  if (f.kind != fault_kind::hooks)
    return;
  if (!fail_keys && !slow_keys)
    out.add(f.line, std::string{ctx}
                      + "hooks needs 'fail_keys' (none, poison or a list of "
                        "keys) or 'slow_keys' (none, slow or a map like "
                        "{KEY: 200ms}), e.g. {at: 9s, hooks: email, "
                        "fail_keys: none}");
  if (fail_keys) {
    if (fail_keys.value.IsSequence()) {
      f.fail_keys = read_strings(fail_keys, ctx, "entity keys", out);
    } else {
      auto word = detail::text_of(fail_keys, ctx, "a word", out).value_or("");
      if (word == "none") {
        f.fail_keys.emplace();
      } else if (word == "poison") {
        f.fail_keys.emplace();
        f.fail_keys_poison = true;
      } else {
        out.add(fail_keys.line,
                fmt::format("{}'fail_keys': '{}' is not a choice; use none "
                            "(clear them), poison (the workload's poison "
                            "keys) or a list of keys",
                            ctx, word));
      }
    }
  }
  if (slow_keys) {
    if (slow_keys.value.IsMap()) {
      f.slow_keys.emplace();
      for (const auto& kv : slow_keys.value) {
        auto key = kv.first.IsScalar() ? kv.first.Scalar() : std::string{};
        milliseconds wait{0};
        read_ms({key, detail::line_of(kv.second), kv.second},
                fmt::format("{}slow_keys: ", ctx), out, wait);
        f.slow_keys->emplace_back(key, wait);
      }
    } else {
      auto word = detail::text_of(slow_keys, ctx, "a word", out).value_or("");
      if (word == "none") {
        f.slow_keys.emplace();
      } else if (word == "slow") {
        f.slow_keys.emplace();
        f.slow_keys_workload = true;
      } else {
        out.add(slow_keys.line,
                fmt::format("{}'slow_keys': '{}' is not a choice; use none "
                            "(clear them), slow (the workload's slow keys) "
                            "or a map like {{KEY: 200ms}}",
                            ctx, word));
      }
    }
  }
}

// Reads what a `run` fault expects of its command.
void read_run(const entry& run, const entry& expect_exit,
              const entry& expect_output, const entry& reject_output,
              const entry& within, const entry& retry, const entry& rewinds,
              std::string_view ctx, problems& out, fault_spec& f) {
  for (auto* e : {&expect_exit, &expect_output, &reject_output, &within, &retry,
                  &rewinds})
    if (*e && f.kind != fault_kind::run)
      out.add(e->line, fmt::format("{}'{}' goes with run", ctx, e->key));
  if (f.kind != fault_kind::run)
    return;
  if (run.value.IsSequence() && f.argv.empty())
    out.add(run.line, std::string{ctx}
                        + "'run' must be a list: the command and its "
                          "arguments, e.g. [herald, dlq, redrive, "
                          "--control, '{{endpoint:email-2:control}}']");
  if (expect_exit) {
    auto n = detail::int_of(expect_exit.value);
    if (n && *n >= 0 && *n <= 255)
      f.expect_exit = static_cast<int>(*n);
    else
      out.add(expect_exit.line,
              fmt::format("{}'expect_exit' must be an exit status from 0 to "
                          "255, not '{}'",
                          ctx,
                          expect_exit.value.IsScalar()
                            ? expect_exit.value.Scalar()
                            : "a list or map"));
  }
  for (auto [e, target] : {std::pair{&expect_output, &f.expect_output},
                           std::pair{&reject_output, &f.reject_output}}) {
    if (!*e)
      continue;
    auto text = detail::text_of(*e, ctx, "a regular expression", out);
    if (!text)
      continue;
    try {
      std::regex re{*text};
      *target = *text;
    } catch (const std::regex_error& err) {
      out.add(e->line, fmt::format("{}'{}': '{}' is not a regular "
                                   "expression ({}); use ECMAScript syntax, "
                                   "e.g. 'paused: [1-9]'",
                                   ctx, e->key, *text, err.what()));
    }
  }
  read_ms(within, ctx, out, f.within);
  for (auto [e, target] :
       {std::pair{&retry, &f.retry}, std::pair{&rewinds, &f.rewinds}})
    if (*e) {
      try {
        *target = e->value.as<bool>();
      } catch (const YAML::Exception&) {
        out.add(e->line,
                fmt::format("{}'{}' must be true or false", ctx, e->key));
      }
    }
}

void read_fault(const YAML::Node& n, size_t i, problems& out,
                std::vector<fault_spec>& faults) {
  auto ctx = fmt::format("faults[{}]: ", i);
  if (!n.IsMap()) {
    out.add(detail::line_of(n), ctx
                                  + "must be a map like {at: 2s, kill: "
                                    "email, restart_after: 1s}");
    return;
  }
  entry at{"at"}, kill{"kill"}, pause{"pause"}, slow{"slow"},
    partition{"partition"}, disk_full{"disk_full"}, clock{"clock"},
    cycle{"cycle"}, wipe{"wipe"}, hooks{"hooks"}, run{"run"},
    restart_after{"restart_after"}, for_{"for"}, delay{"delay"}, keys{"keys"},
    one_way{"one_way"}, jump{"jump"}, times{"times"}, period{"period"},
    fds_within{"fds_within"}, fd_slack{"fd_slack"}, fail_keys{"fail_keys"},
    slow_keys{"slow_keys"}, expect_exit{"expect_exit"},
    expect_output{"expect_output"}, reject_output{"reject_output"},
    within{"within"}, retry{"retry"}, rewinds{"rewinds"};
  detail::read_map(
    n, ctx,
    {&at,        &kill,          &pause,     &slow,         &partition,
     &disk_full, &clock,         &cycle,     &wipe,         &hooks,
     &run,       &restart_after, &for_,      &delay,        &keys,
     &one_way,   &jump,          &times,     &period,       &fds_within,
     &fd_slack,  &fail_keys,     &slow_keys, &expect_exit,  &expect_output,
     &within,    &retry,         &rewinds,   &reject_output},
    out);
  fault_spec f;
  f.line = detail::line_of(n);
  int kinds = 0;
  for (auto* e : {&kill, &pause, &slow, &partition, &disk_full, &clock, &cycle,
                  &wipe, &hooks, &run})
    if (*e) {
      ++kinds;
      f.kind = *kind_of(e->key);
      if (e == &partition && e->value.IsSequence())
        f.group = read_strings(*e, ctx, "node names", out);
      else if (e == &run)
        f.argv = read_strings(*e, ctx, "words", out);
      else
        f.target = detail::text_of(*e, ctx, "a node name", out).value_or("");
    }
  if (kinds != 1)
    out.add(f.line, fmt::format("{}needs exactly one of {}, naming the node, "
                                "e.g. kill: email",
                                ctx, fault_kinds));
  if (f.kind == fault_kind::partition) {
    if (!f.target.empty())
      f.group.push_back(f.target);
    if (f.group.empty() && partition)
      out.add(partition.line, ctx
                                + "'partition' must name the nodes cut "
                                  "from the others, e.g. [user, email]");
    f.target = f.group.empty() ? std::string{} : f.group.front();
  }
  if (one_way) {
    if (f.kind != fault_kind::partition)
      out.add(one_way.line, ctx + "'one_way' goes with partition");
    try {
      f.one_way = one_way.value.as<bool>();
    } catch (const YAML::Exception&) {
      out.add(one_way.line, ctx + "'one_way' must be true or false");
    }
  }
  if (jump && f.kind != fault_kind::clock)
    out.add(jump.line, ctx + "'jump' goes with clock");
  read_jump(jump, ctx, out, f.jump);
  if (detail::require(at, f.line, ctx,
                      "when, from the workload's start, e.g. at: 2s", out))
    read_ms(at, ctx, out, f.at, true);
  bool restarts = f.kind == fault_kind::kill || f.kind == fault_kind::wipe;
  if (restart_after && !restarts)
    out.add(restart_after.line, ctx
                                  + "'restart_after' goes with kill and "
                                    "wipe; use 'for' with the other faults");
  if (for_ && restarts)
    out.add(for_.line, ctx
                         + "'for' goes with the faults but kill and wipe; "
                           "use 'restart_after' with them");
  if (for_ && is_instant(f.kind))
    out.add(for_.line, fmt::format("{}'for' does not go with {}: it is done "
                                   "at its 'at' and has no heal",
                                   ctx, to_string(f.kind)));
  read_ms(restart_after, ctx, out, f.hold);
  read_ms(for_, ctx, out, f.hold);
  if ((delay || keys) && f.kind != fault_kind::slow)
    out.add(f.line, ctx + "'delay' and 'keys' go with slow");
  read_ms(delay, ctx, out, f.delay);
  read_count(keys, ctx, out, f.keys);
  if ((times || period || fds_within || fd_slack)
      && f.kind != fault_kind::cycle)
    out.add(f.line, ctx
                      + "'times', 'period', 'fds_within' and 'fd_slack' go "
                        "with cycle");
  if (f.kind == fault_kind::cycle) {
    if (for_)
      out.add(for_.line, ctx
                           + "'for' does not go with cycle; it lasts "
                             "'times' x 'period'");
    read_count(times, ctx, out, f.times);
    read_ms(period, ctx, out, f.period);
    read_ms(fds_within, ctx, out, f.fds_within);
    read_count(fd_slack, ctx, out, f.fd_slack, 0);
    f.hold = f.times * f.period;
  }
  read_hooks(fail_keys, slow_keys, ctx, out, f);
  read_run(run, expect_exit, expect_output, reject_output, within, retry,
           rewinds, ctx, out, f);
  if (is_instant(f.kind))
    f.hold = milliseconds{0};
  faults.push_back(std::move(f));
}

void read_random(const entry& e, problems& out, random_spec& r) {
  constexpr std::string_view ctx = "random: ";
  if (!e.value.IsMap()) {
    out.add(e.line, "'random' must be a map like {rate: 0.5, kinds: [kill, "
                    "pause], min_gap: 2s}");
    return;
  }
  entry rate{"rate"}, kinds{"kinds"}, min_gap{"min_gap"}, nodes{"nodes"},
    restart_after{"restart_after"}, pause_for{"pause_for"},
    slow_for{"slow_for"}, slow_delay{"slow_delay"},
    partition_for{"partition_for"}, disk_full_for{"disk_full_for"},
    clock_for{"clock_for"}, clock_jump{"clock_jump"};
  detail::read_map(e.value, ctx,
                   {&rate, &kinds, &min_gap, &nodes, &restart_after, &pause_for,
                    &slow_for, &slow_delay, &partition_for, &disk_full_for,
                    &clock_for, &clock_jump},
                   out);
  if (detail::require(rate, e.line, ctx, "faults per second, e.g. rate: 0.5",
                      out))
    read_number(rate, ctx, out, r.rate, 0);
  if (kinds) {
    r.kinds = read_kinds(kinds, ctx, out);
    for (auto k : r.kinds)
      if (timed_only(k))
        out.add(kinds.line, fmt::format("random: 'kinds': {} is a timed "
                                        "fault only; give it in 'faults'",
                                        to_string(k)));
    if (r.kinds.empty())
      out.add(kinds.line, fmt::format("random: 'kinds' must list at least "
                                      "one of {}",
                                      fault_kinds));
  }
  read_ms(min_gap, ctx, out, r.min_gap);
  r.nodes = read_strings(nodes, ctx, "node names", out);
  read_ms(restart_after, ctx, out, r.restart_after);
  read_ms(pause_for, ctx, out, r.pause_for);
  read_ms(slow_for, ctx, out, r.slow_for);
  read_ms(slow_delay, ctx, out, r.slow_delay);
  read_ms(partition_for, ctx, out, r.partition_for);
  read_ms(disk_full_for, ctx, out, r.disk_full_for);
  read_ms(clock_for, ctx, out, r.clock_for);
  read_ms(clock_jump, ctx, out, r.clock_jump);
}

// Reads `same`/`higher`/`other` of a membership expectation.
compare
read_compare(const entry& e, std::string_view ctx,
             std::initializer_list<std::pair<std::string_view, compare>> words,
             problems& out) {
  if (!e)
    return compare::any;
  auto text = detail::text_of(e, ctx, "a word", out).value_or("");
  std::vector<std::string_view> names;
  for (auto& [word, c] : words) {
    if (text == word)
      return c;
    names.push_back(word);
  }
  out.add(e.line, fmt::format("{}'{}': '{}' is not a choice; use {}", ctx,
                              e.key, text, fmt::join(names, " or ")));
  return compare::any;
}

void read_expectation(const YAML::Node& n, size_t i, problems& out,
                      std::vector<membership_spec>& specs) {
  auto ctx = fmt::format("membership[{}]: ", i);
  if (!n.IsMap()) {
    out.add(detail::line_of(n), ctx
                                  + "must be a map like {at: 0s, within: 3s, "
                                    "members: 5}");
    return;
  }
  entry name{"name"}, at{"at"}, after{"after"}, healed{"healed"},
    within{"within"}, members{"members"}, member{"member"},
    one_view{"one_view"}, status{"status"}, incarnation{"incarnation"},
    stream{"stream"}, seen_by{"seen_by"};
  detail::read_map(n, ctx,
                   {&name, &at, &after, &healed, &within, &members, &member,
                    &one_view, &status, &incarnation, &stream, &seen_by},
                   out);
  membership_spec m;
  m.line = detail::line_of(n);
  m.name = name ? detail::text_of(name, ctx, "a name", out).value_or("")
                : fmt::format("membership[{}]", i);
  if ((at ? 1 : 0) + (after ? 1 : 0) + (healed ? 1 : 0) != 1)
    out.add(m.line, ctx
                      + "needs exactly one of 'at' (a time on the run's "
                        "clock), 'after' or 'healed' (the index of a fault "
                        "in 'faults'), e.g. after: 0");
  read_ms(at, ctx, out, m.at, true);
  for (auto* e : {&after, &healed})
    if (*e) {
      m.trigger =
        e == &after ? expect_trigger::applied : expect_trigger::healed;
      size_t k = 0;
      read_count(*e, ctx, out, k, 0);
      m.fault = k;
    }
  if (detail::require(within, m.line, ctx,
                      "the deadline from the trigger, e.g. within: 5s", out))
    read_ms(within, ctx, out, m.within);
  if (members && (one_view || member))
    out.add(m.line, ctx
                      + "'members' counts the members of every view; give "
                        "'member' or 'one_view' in another expectation");
  else if (one_view && (member || status))
    out.add(m.line, ctx
                      + "'one_view' wants every member up; 'member' and "
                        "'status' do not go with it");
  if (members) {
    m.kind = expect_kind::members;
    read_count(members, ctx, out, m.count);
  } else if (one_view) {
    m.kind = expect_kind::one_view;
    bool yes = false;
    try {
      yes = one_view.value.as<bool>();
    } catch (const YAML::Exception&) {
    }
    if (!yes)
      out.add(one_view.line, ctx + "'one_view' must be true");
  } else if (member || status) {
    m.kind = expect_kind::member;
    if (member)
      m.member = detail::text_of(member, ctx, "a node name", out).value_or("");
    else if (m.trigger == expect_trigger::at)
      out.add(m.line, ctx
                        + "name the 'member' (with 'at' there is no fault "
                          "whose target it could be)");
  } else {
    out.add(m.line, ctx
                      + "say what is expected: 'members: N', 'member: NODE' "
                        "with 'status', or 'one_view: true'");
  }
  if (status) {
    m.status.clear();
    std::vector<std::string> words;
    if (status.value.IsSequence())
      words = read_strings(status, ctx, "statuses", out);
    else if (auto w = detail::text_of(status, ctx, "a status", out))
      words.push_back(*w);
    for (auto& w : words)
      if (auto st = control::parse_member_status(w))
        m.status.push_back(*st);
      else
        out.add(status.line, fmt::format("{}'status': '{}' is not a member "
                                         "status; use joining, up, suspect, "
                                         "down or leaving",
                                         ctx, w));
    if (m.status.empty() && status.value.IsSequence())
      out.add(status.line, ctx + "'status' must list at least one status");
  }
  m.incarnation =
    read_compare(incarnation, ctx,
                 {{"same", compare::same}, {"higher", compare::higher}}, out);
  m.stream = read_compare(
    stream, ctx, {{"same", compare::same}, {"other", compare::other}}, out);
  if ((incarnation || stream)
      && (m.kind != expect_kind::member || m.trigger == expect_trigger::at))
    out.add(m.line, ctx
                      + "'incarnation' and 'stream' compare a 'member' with "
                        "itself before a fault: they need 'member' and "
                        "'after' or 'healed'");
  m.seen_by = read_strings(seen_by, ctx, "node names", out);
  specs.push_back(std::move(m));
}

void read_checks(const entry& e, problems& out, checks_spec& c) {
  constexpr std::string_view ctx = "checks: ";
  if (!e.value.IsMap()) {
    out.add(e.line, "'checks' must be a map like {duplicates: allowed, "
                    "cross_type_order: report}");
    return;
  }
  entry dups{"duplicates"}, cross{"cross_type_order"}, takeover{"takeover"},
    moves{"moves"}, poison{"poison"}, publishes{"publishes"};
  detail::read_map(
    e.value, ctx, {&dups, &cross, &takeover, &moves, &poison, &publishes}, out);
  auto word = [&](const entry& x, std::string_view pass,
                  std::string_view fail) {
    auto text = detail::text_of(x, ctx, "a word", out).value_or("");
    if (text == fail)
      return true;
    if (text != pass)
      out.add(x.line, fmt::format("{}'{}': '{}' is not a choice; use {} or {}",
                                  ctx, x.key, text, pass, fail));
    return false;
  };
  if (dups)
    c.duplicates_fail = word(dups, "allowed", "fail");
  if (cross)
    c.cross_type_fail = word(cross, "report", "fail");
  if (poison)
    c.poison_redriven = word(poison, "dead_letter", "redriven");
  if (publishes)
    c.publishes_acked = word(publishes, "any", "acked");
  if (takeover && takeover.value.IsMap()) {
    entry within{"within"};
    detail::read_map(takeover.value, "checks: takeover: ", {&within}, out);
    milliseconds bound{0};
    if (detail::require(within, takeover.line, "checks: takeover: ",
                        "the bound from a member's kill to its partitions "
                        "handled again, e.g. within: 7s",
                        out))
      read_ms(within, "checks: takeover: ", out, bound);
    if (bound.count() > 0)
      c.takeover_within = bound;
  } else if (takeover) {
    out.add(takeover.line, "checks: 'takeover' must be a map like {within: "
                           "7s}");
  }
  if (moves && moves.value.IsMap()) {
    constexpr std::string_view moves_ctx = "checks: moves: ";
    entry per_restart{"per_restart"};
    detail::read_map(moves.value, moves_ctx, {&per_restart}, out);
    uint64_t bound = 0;
    bool read = false;
    if (detail::require(per_restart, moves.line, moves_ctx,
                        "the most moves of one partition in one restart's "
                        "window, e.g. per_restart: 1",
                        out)) {
      auto n = detail::int_of(per_restart.value);
      if (n && *n >= 0) {
        bound = static_cast<uint64_t>(*n);
        read = true;
      } else {
        out.add(per_restart.line,
                fmt::format("{}'per_restart' must be a whole number of moves "
                            "of at least 0 (e.g. per_restart: 1), not '{}'",
                            moves_ctx,
                            per_restart.value.IsScalar()
                              ? per_restart.value.Scalar()
                              : "a list or map"));
      }
    }
    if (read)
      c.moves_per_restart = bound;
  } else if (moves) {
    out.add(moves.line, "checks: 'moves' must be a map like {per_restart: "
                        "1}");
  }
}

// Checks what refers to nodes.
void check_refs(scenario& sc, int top, problems& out) {
  auto names = [&] {
    std::vector<std::string> n;
    for (auto& node : sc.nodes)
      n.push_back(node.name);
    return fmt::format("{}", fmt::join(n, ", "));
  };
  // A node name, or an instance name NAME-I of a node with count >= I.
  auto known = [&](const std::string& target) {
    if (sc.find(target))
      return true;
    auto dash = target.rfind('-');
    if (dash == std::string::npos)
      return false;
    auto* node = sc.find(target.substr(0, dash));
    auto i = std::atoi(target.c_str() + dash + 1);
    return node && node->count > 1 && i >= 1 && i <= node->count;
  };
  if (!sc.workload.publish_to.empty() && !sc.find(sc.workload.publish_to))
    out.add(top, fmt::format("workload: 'publish_to': node '{}' is not among "
                             "the nodes ({})",
                             sc.workload.publish_to, names()));
  // The workload starts once its node is up: later when that starts late.
  auto* producer = sc.find(sc.workload.publish_to);
  auto end =
    sc.workload.duration + (producer ? producer->start_at : milliseconds{0});
  for (size_t i = 0; i < sc.faults.size(); ++i) {
    auto& f = sc.faults[i];
    auto targets = f.group;
    if (f.kind != fault_kind::partition)
      targets.push_back(f.target);
    for (auto& t : targets)
      if (!t.empty() && !known(t))
        out.add(f.line, fmt::format("faults[{}]: '{}': node '{}' is not "
                                    "among the nodes ({})",
                                    i, to_string(f.kind), t, names()));
    if (!is_instant(f.kind) && f.at + f.hold > end)
      out.add(f.line, fmt::format("faults[{}]: it ends at {} ms, after the "
                                  "workload's end at {} ms; move it earlier "
                                  "or lengthen workload.duration",
                                  i, (f.at + f.hold).count(), end.count()));
  }
  for (auto& target : sc.random.nodes)
    if (!known(target))
      out.add(top, fmt::format("random: 'nodes': node '{}' is not among the "
                               "nodes ({})",
                               target, names()));
  size_t instances = 0;
  for (auto& n : sc.nodes)
    instances += static_cast<size_t>(n.count);
  for (size_t i = 0; i < sc.membership.size(); ++i) {
    auto& m = sc.membership[i];
    auto ctx = fmt::format("membership[{}] ('{}'): ", i, m.name);
    if (m.trigger != expect_trigger::at && m.fault >= sc.faults.size())
      out.add(m.line, fmt::format("{}there is no fault {} (faults are "
                                  "counted from 0; the scenario has {})",
                                  ctx, m.fault, sc.faults.size()));
    else if (m.trigger != expect_trigger::at && m.kind == expect_kind::member
             && m.member.empty()
             && sc.faults[m.fault].kind == fault_kind::partition)
      out.add(m.line, ctx
                        + "a partition cuts several nodes; name the "
                          "'member'");
    if (!m.member.empty() && !known(m.member))
      out.add(m.line, fmt::format("{}'member': node '{}' is not among the "
                                  "nodes ({})",
                                  ctx, m.member, names()));
    if (!m.member.empty() && sc.find(m.member) && sc.find(m.member)->count > 1)
      out.add(m.line,
              fmt::format("{}'member': node '{}' has {} instances; "
                          "name one, e.g. {}-1",
                          ctx, m.member, sc.find(m.member)->count, m.member));
    for (auto& t : m.seen_by)
      if (!known(t))
        out.add(m.line, fmt::format("{}'seen_by': node '{}' is not among the "
                                    "nodes ({})",
                                    ctx, t, names()));
    if (m.kind == expect_kind::members && m.count > instances)
      out.add(m.line, fmt::format("{}'members': {} is more than the {} "
                                  "instances of the scenario",
                                  ctx, m.count, instances));
  }
}

void read_scenario(const YAML::Node& root, problems& out, scenario& sc) {
  if (!root.IsMap()) {
    out.add(detail::line_of(root),
            "a scenario must be a map with name, catalog, nodes, workload");
    return;
  }
  entry name{"name"}, catalog{"catalog"}, path{"path"}, nodes{"nodes"},
    workload{"workload"}, faults{"faults"}, random{"random"},
    membership{"membership"}, checks{"checks"}, settle{"settle"}, mode{"mode"},
    disk_size{"disk_size"};
  detail::read_map(root, "",
                   {&name, &catalog, &path, &nodes, &workload, &faults, &random,
                    &membership, &checks, &settle, &mode, &disk_size},
                   out);
  if (mode) {
    auto text = detail::text_of(mode, "", "a mode", out).value_or("");
    if (auto m = parse_mode(text))
      sc.mode = *m;
    else
      out.add(mode.line, fmt::format("'mode': '{}' is not a mode; use "
                                     "loopback or netns",
                                     text));
  }
  if (disk_size) {
    int64_t mib = 0;
    read_count(disk_size, "", out, mib, 1);
    sc.disk_size = static_cast<uint64_t>(mib) << 20;
  }
  auto top = detail::line_of(root);
  if (name)
    sc.name = detail::text_of(name, "", "a name", out).value_or(sc.name);
  if (detail::require(catalog, top, "",
                      "the event catalog, e.g. catalog: "
                      "../../config/events.yaml",
                      out))
    if (auto p = detail::text_of(catalog, "", "a path", out)) {
      std::filesystem::path cp{*p};
      sc.catalog = std::filesystem::absolute(
                     cp.is_relative() ? std::filesystem::path{sc.dir} / cp : cp)
                     .lexically_normal()
                     .string();
    }
  for (auto& dir : read_strings(path, "", "folders", out)) {
    std::filesystem::path d{dir};
    sc.path.push_back(std::filesystem::absolute(
                        d.is_relative() ? std::filesystem::path{sc.dir} / d : d)
                        .lexically_normal()
                        .string());
  }
  if (detail::require(nodes, top, "", "a list of nodes to launch", out)) {
    if (!nodes.value.IsSequence() || nodes.value.size() == 0)
      out.add(nodes.line, "'nodes' must be a list of nodes, each {name, "
                          "command, config}");
    else
      for (size_t i = 0; i < nodes.value.size(); ++i)
        read_node(nodes.value[i], i, out, sc);
  }
  if (detail::require(workload, top, "",
                      "what to publish: {publish_to, types, rate, duration}",
                      out))
    read_workload(workload, out, sc.workload);
  if (faults && !faults.value.IsSequence())
    out.add(faults.line, "'faults' must be a list of faults, each like {at: "
                         "2s, kill: email, restart_after: 1s}");
  else if (faults)
    for (size_t i = 0; i < faults.value.size(); ++i)
      read_fault(faults.value[i], i, out, sc.faults);
  if (random)
    read_random(random, out, sc.random);
  if (membership && !membership.value.IsSequence())
    out.add(membership.line, "'membership' must be a list of expectations, "
                             "each like {at: 0s, within: 3s, members: 5}");
  else if (membership)
    for (size_t i = 0; i < membership.value.size(); ++i)
      read_expectation(membership.value[i], i, out, sc.membership);
  if (checks)
    read_checks(checks, out, sc.checks);
  read_ms(settle, "", out, sc.settle);
  check_refs(sc, top, out);
}

} // namespace

std::string_view to_string(fault_kind k) {
  switch (k) {
  case fault_kind::kill:
    return "kill";
  case fault_kind::pause:
    return "pause";
  case fault_kind::slow:
    return "slow";
  case fault_kind::partition:
    return "partition";
  case fault_kind::disk_full:
    return "disk_full";
  case fault_kind::clock:
    return "clock";
  case fault_kind::cycle:
    return "cycle";
  case fault_kind::wipe:
    return "wipe";
  case fault_kind::hooks:
    return "hooks";
  case fault_kind::run:
    return "run";
  }
  return "?";
}

bool is_instant(fault_kind k) {
  return k == fault_kind::hooks || k == fault_kind::run;
}

std::optional<run_mode> parse_mode(std::string_view text) {
  if (text == "loopback")
    return run_mode::loopback;
  if (text == "netns")
    return run_mode::netns;
  return std::nullopt;
}

bool needs_netns(fault_kind k) {
  return k == fault_kind::partition;
}

const node_spec* scenario::find(std::string_view n) const {
  for (auto& node : nodes)
    if (node.name == n)
      return &node;
  return nullptr;
}

caf::expected<scenario> parse_scenario(std::string_view yaml,
                                       const std::string& file) {
  problems out{file};
  scenario sc;
  sc.file = file;
  sc.dir = std::filesystem::path{file}.parent_path().string();
  if (sc.dir.empty())
    sc.dir = ".";
  sc.name = std::filesystem::path{file}.stem().string();
  try {
    if (auto root = detail::load(yaml, out))
      read_scenario(*root, out, sc);
  } catch (const std::exception& ex) {
    out.add(0, fmt::format("cannot read the scenario: {}", ex.what()));
  }
  if (!out.empty())
    return out.to_error(errc::invalid_config);
  return sc;
}

caf::expected<scenario> load_scenario(const std::string& path) {
  auto text = detail::read_file(path, "scenario file");
  if (!text)
    return std::move(text.error());
  return parse_scenario(*text, path);
}

} // namespace herald::harness
