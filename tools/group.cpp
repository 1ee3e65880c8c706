#include "group.hpp"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli_common.hpp"
#include "cluster_ask.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"
#include "herald/runtime/control.hpp"
#include "node_control.hpp"
#include "text_output.hpp"

namespace herald::cli {

namespace {

constexpr std::string_view prog = "herald";

// The parsed options of both group commands; one of them runs.
struct group_state {
  endpoint_options endpoint;
  std::string name;
  bool json = false;
  bool to_earliest = false;
  std::string to_time;
  std::string to_seq;
  bool dry_run = false;
  CLI::App* describe = nullptr;
  CLI::App* reset = nullptr;
};

std::string expires_in(uint64_t ms) {
  return fmt::format("{:.1f}s", static_cast<double>(ms) / 1000.0);
}

payload describe_json(
  const std::string& name, const std::vector<control::cluster_member>& members,
  const std::vector<member_answer<control::group_describe_reply>>& answers) {
  auto j_members = payload::array();
  for (auto& m : members)
    j_members.push_back(
      {{"name", m.name}, {"status", control::to_string(m.status)}});
  auto streams = payload::array();
  auto unanswered = payload::array();
  for (auto& a : answers) {
    if (!a.reply) {
      unanswered.push_back({{"owner", a.member.name},
                            {"stream", a.member.stream},
                            {"error", a.error}});
      continue;
    }
    auto& r = *a.reply;
    if (!r.known)
      continue;
    auto leases = payload::array();
    for (auto& l : r.leases) {
      payload one{
        {"partition", l.partition}, {"holder", l.holder},
        {"epoch", l.epoch},         {"expires_in_ms", l.expires_in_ms},
        {"offset", l.offset},       {"lag", l.lag},
        {"lag_exact", l.lag_exact}};
      leases.push_back(std::move(one));
    }
    streams.push_back({{"owner", a.member.name},
                       {"stream", r.stream},
                       {"partitions", r.partitions},
                       {"head", r.head},
                       {"first", r.first},
                       {"leases", std::move(leases)},
                       {"dead_letters", r.dead_letters},
                       {"entities", r.entities}});
  }
  return {{"group", name},
          {"members", std::move(j_members)},
          {"streams", std::move(streams)},
          {"unanswered", std::move(unanswered)}};
}

void print_describe(
  const std::string& name, const std::vector<control::cluster_member>& members,
  const std::vector<member_answer<control::group_describe_reply>>& answers) {
  print_table(
    {{"group:", one_line(name)},
     {"members:", members.empty() ? std::string{"none in the cluster view"}
                                  : one_line(names_with_status(members))}});
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"STREAM", "OWNER", "PARTITION", "HOLDER", "EPOCH",
                  "EXPIRES IN", "OFFSET", "LAG"});
  std::vector<std::vector<std::string>> letters;
  letters.push_back({"STREAM", "OWNER", "DEAD LETTERS", "ENTITIES"});
  bool inexact = false;
  for (auto& a : answers) {
    if (!a.reply || !a.reply->known)
      continue;
    auto& r = *a.reply;
    for (auto& l : r.leases) {
      inexact = inexact || !l.lag_exact;
      rows.push_back({one_line(r.stream), one_line(a.member.name),
                      std::to_string(l.partition),
                      l.holder.empty() ? "-" : one_line(l.holder),
                      std::to_string(l.epoch),
                      l.holder.empty() ? "-" : expires_in(l.expires_in_ms),
                      std::to_string(l.offset),
                      l.lag_exact ? std::to_string(l.lag)
                                  : fmt::format("at least {}", l.lag)});
    }
    letters.push_back({one_line(r.stream), one_line(a.member.name),
                       std::to_string(r.dead_letters),
                       std::to_string(r.entities)});
  }
  print_line("");
  if (rows.size() == 1)
    print_line("no stream owner keeps offsets of this group");
  else
    print_table(rows);
  if (inexact)
    print_line(fmt::format("(lag: an owner counts at most {} events per "
                           "describe; 'at least' marks where it stopped)",
                           control::max_lag_events));
  if (letters.size() > 1) {
    print_line("");
    print_table(letters);
  }
}

int run_describe(const group_state& st) {
  auto view = ask_view(st.endpoint);
  if (!view)
    return fail(prog, message_of(view.error()));
  auto members = members_running(*view, st.name);
  control::group_describe_request request;
  request.group = st.name;
  request.patterns = patterns_of(*view, st.name);
  auto answers = ask_each(live_members(*view), request, st.endpoint.timeout);
  auto known = std::any_of(answers.begin(), answers.end(), [](auto& a) {
    return a.reply && a.reply->known;
  });
  auto unanswered = std::any_of(answers.begin(), answers.end(), [](auto& a) {
    return !a.reply;
  });
  if (!known && members.empty() && !unanswered)
    return fail(prog,
                fmt::format("no consumer group '{}' in the cluster of '{}': "
                            "no member runs a consumer of that name and no "
                            "stream owner keeps its offsets; the consumers "
                            "are listed by herald members",
                            st.name, view->self));
  if (st.json)
    print_line(dump(describe_json(st.name, members, answers)));
  else
    print_describe(st.name, members, answers);
  return report_unanswered(prog, answers) ? exit_failure : exit_ok;
}

// The target of `st`'s --to-* option, and the stream of --to-seq (empty
// for the others).
struct reset_target {
  control::reset_to to = control::reset_to::earliest;
  uint64_t at = 0;
  std::string stream;
};

reset_target target_of(const group_state& st) {
  reset_target t;
  if (!st.to_time.empty()) {
    t.to = control::reset_to::time;
    // Checked when parsed.
    t.at = static_cast<uint64_t>(
      std::max<int64_t>(0, parse_since(st.to_time, now_us()).value_or(0)));
  } else if (!st.to_seq.empty()) {
    t.to = control::reset_to::seq;
    auto colon = st.to_seq.rfind(':');
    t.stream = st.to_seq.substr(0, colon);
    t.at = std::stoull(st.to_seq.substr(colon + 1));
  }
  return t;
}

int run_reset(const group_state& st) {
  auto target = target_of(st);
  auto view = ask_view(st.endpoint);
  if (!view)
    return fail(prog, message_of(view.error()));
  std::vector<control::cluster_member> live;
  for (auto& m : members_running(*view, st.name))
    if (!is_down(m.status))
      live.push_back(m);
  if (!live.empty())
    return fail(prog, fmt::format("group '{}' has live members: {}; its "
                                  "offsets can be reset only while none "
                                  "runs: stop them, and ask again",
                                  st.name, names_with_status(live)));
  auto owners = live_members(*view);
  if (!target.stream.empty()) {
    std::vector<control::cluster_member> one;
    std::vector<std::string> streams;
    for (auto& e : view->members) {
      streams.push_back(e.member.stream);
      if (e.member.stream == target.stream)
        one.push_back(e.member);
    }
    if (one.empty())
      return fail(prog, fmt::format("--to-seq: no member of the cluster owns "
                                    "stream '{}'; the streams are: {}",
                                    target.stream, fmt::join(streams, ", ")));
    if (is_down(one.front().status))
      return fail(prog, fmt::format("--to-seq: the owner of stream '{}', "
                                    "'{}', is {}; start it first",
                                    target.stream, one.front().name,
                                    control::to_string(one.front().status)));
    owners = std::move(one);
  }
  control::group_reset_request request;
  request.group = st.name;
  request.to = target.to;
  request.at = target.at;
  request.dry_run = st.dry_run;
  auto answers = ask_each(owners, request, st.endpoint.timeout);
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"STREAM", "OWNER", "PARTITION", "OFFSET"});
  for (auto& a : answers) {
    if (!a.reply || !a.reply->known)
      continue;
    for (auto& c : a.reply->offsets)
      rows.push_back({one_line(a.reply->stream), one_line(a.member.name),
                      std::to_string(c.partition),
                      fmt::format("{} -> {}", c.from, c.to)});
  }
  auto unanswered = report_unanswered(prog, answers);
  if (rows.size() == 1) {
    if (unanswered)
      return exit_failure;
    return fail(prog,
                fmt::format("no consumer group '{}' at {}: no stream "
                            "owner keeps its offsets",
                            st.name,
                            target.stream.empty()
                              ? std::string{"any owner"}
                              : "the owner of stream '" + target.stream + "'"));
  }
  print_table(rows);
  std::vector<control::cluster_member> down;
  for (auto& e : view->members)
    if (is_down(e.member.status) && target.stream.empty())
      down.push_back(e.member);
  if (!down.empty())
    print_line(fmt::format("not asked, down: {} (the offsets at the owner of "
                           "each one's stream are unchanged)",
                           one_line(names_with_status(down))));
  print_line(st.dry_run ? "dry run: nothing was changed"
                        : fmt::format("offsets of group '{}' set: it handles "
                                      "again from there when it starts",
                                      st.name));
  return unanswered ? exit_failure : exit_ok;
}

CLI::Validator stream_seq() {
  return CLI::Validator(
    [](std::string& text) -> std::string {
      auto colon = text.rfind(':');
      auto bad = fmt::format("'{}' is not STREAM:N (a stream id, a colon and "
                             "a seq, e.g. user-stream:42)",
                             text);
      if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
        return bad;
      auto n = std::string_view{text}.substr(colon + 1);
      if (n.size() > 19 || !std::all_of(n.begin(), n.end(), [](char c) {
            return c >= '0' && c <= '9';
          }))
        return bad;
      return {};
    },
    "STREAM:N");
}

} // namespace

group_command add_group_commands(CLI::App& app) {
  auto st = std::make_shared<group_state>();
  auto* group = app.add_subcommand(
    "group", "Describe a consumer group across the cluster, and reset its "
             "committed offsets. A group is every durable consumer of one "
             "name; the owner of each stream keeps its leases and offsets.");
  group->require_subcommand(1);

  st->describe = group->add_subcommand(
    "describe",
    "Show a group: its members (nodes running the consumer, with their "
    "status) and, per stream, each partition's lease holder, epoch, time "
    "to expiry, committed offset and lag (events of the group's types after "
    "the offset; an owner counts at most 100000 per describe, then shows "
    "'at least N'), and the group's dead letters and the entities they hold "
    "at each owner. Asks the node given for the cluster view, then every "
    "member that is not down.");
  add_endpoint_options(*st->describe, st->endpoint);
  st->describe->add_option("NAME", st->name, "the group: the consumer name")
    ->required();
  st->describe->add_flag("--json", st->json,
                         "print one JSON object instead: group, members, "
                         "streams (per owner), unanswered");

  st->reset = group->add_subcommand(
    "reset-offsets",
    "Set the committed offsets of every partition of a group at every "
    "stream owner (with --to-seq, at one), so that the group handles again "
    "from there when its members start. Refused while the group has live "
    "members. Prints each partition's offset before and after.");
  st->reset->add_option("NAME", st->name, "the group: the consumer name")
    ->required();
  auto* earliest = st->reset->add_flag(
    "--to-earliest", st->to_earliest,
    "handle again from the oldest event each owner retains");
  auto* time =
    st->reset
      ->add_option("--to-time", st->to_time,
                   fmt::format("handle again from the first event published "
                               "at or after this time; {}",
                               since_forms))
      ->check(since_value());
  auto* seq = st->reset
                ->add_option("--to-seq", st->to_seq,
                             "handle again every event of STREAM with a seq "
                             "above N (STREAM:N); other streams keep their "
                             "offsets")
                ->check(stream_seq());
  earliest->excludes(time)->excludes(seq);
  time->excludes(seq);
  st->reset->add_flag("--dry-run", st->dry_run,
                      "only print what would be set; change nothing");
  add_endpoint_options(*st->reset, st->endpoint, [earliest, time, seq] {
    if (earliest->count() + time->count() + seq->count() == 0)
      throw CLI::RequiredError("where to? pass one of --to-earliest, --to-time "
                               "T and --to-seq STREAM:N",
                               CLI::ExitCodes::RequiredError);
  });

  auto run = [st]() -> int {
    if (*st->describe)
      return run_describe(*st);
    return run_reset(*st);
  };
  return {group, run};
}

} // namespace herald::cli
