#include "status.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli_common.hpp"
#include "herald/core/errc.hpp"
#include "herald/runtime/control.hpp"
#include "node_control.hpp"
#include "text_output.hpp"

namespace herald::cli {

namespace {

constexpr std::string_view prog = "herald";

struct status_state {
  endpoint_options endpoint;
  bool json = false;
  bool cluster = false;
};

// How long ago, for a person: `0.4s`, `12s`, `3m20s`, `-` for never.
std::string ago(const std::optional<uint64_t>& ms) {
  if (!ms)
    return "-";
  if (*ms < 10'000)
    return fmt::format("{:.1f}s", static_cast<double>(*ms) / 1000.0);
  auto s = *ms / 1000;
  if (s < 60)
    return fmt::format("{}s", s);
  if (s < 3600)
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
}

// One row per member: the view of the node asked.
void print_members(const control::members_reply& r) {
  print_table({{"cluster:", one_line(r.cluster)},
               {"seen by:", one_line(r.self)},
               {"members:", std::to_string(r.members.size())}});
  print_line("");
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"MEMBER", "STATUS", "INCARNATION", "STREAM", "PUB", "CONTROL",
                  "METRICS", "PRODUCES", "CONSUMERS", "LAST HEARD"});
  for (auto& e : r.members) {
    auto& m = e.member;
    std::vector<std::string> consumers;
    for (auto& c : m.consumers)
      consumers.push_back(
        fmt::format("{}({})", c.name, fmt::join(c.patterns, ",")));
    rows.push_back({one_line(m.name) + (m.name == r.self ? " *" : ""),
                    std::string{control::to_string(m.status)},
                    std::to_string(m.incarnation), one_line(m.stream),
                    one_line(m.pub), one_line(m.control),
                    m.metrics.empty() ? "-" : one_line(m.metrics),
                    m.produces.empty()
                      ? "-"
                      : one_line(fmt::format("{}", fmt::join(m.produces, ","))),
                    consumers.empty()
                      ? "-"
                      : one_line(fmt::format("{}", fmt::join(consumers, " "))),
                    ago(e.last_heard_ms)});
  }
  print_table(rows);
}

// The node's part: a label and a value per line.
void print_node(const control::status_reply& r) {
  auto first = r.first_time
                 ? fmt::format("{} ({})", r.first, one_line(*r.first_time))
                 : fmt::format("{} (no event retained)", r.first);
  print_table({
    {"node:", one_line(r.node)},
    {"service:", one_line(r.service)},
    {"stream:", one_line(r.stream)},
    {"head:", std::to_string(r.head)},
    {"first:", first},
    {"health:", r.healthy() ? "ok" : "degraded"},
  });
}

// One row per consumer and stream; a consumer without streams gets one.
void print_consumers(const control::status_reply& r) {
  if (r.consumers.empty()) {
    print_line("no consumers");
    return;
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"CONSUMER", "PATTERNS", "DEAD LETTERS", "STREAM", "OFFSET",
                  "HEAD", "LAG", "PAUSED"});
  for (auto& c : r.consumers) {
    std::vector<std::string> head{
      one_line(c.name), one_line(fmt::format("{}", fmt::join(c.patterns, ","))),
      std::to_string(c.dead_letters)};
    if (c.streams.empty()) {
      head.insert(head.end(), {"-", "-", "-", "-", "-"});
      rows.push_back(std::move(head));
      continue;
    }
    bool first = true;
    for (auto& s : c.streams) {
      auto row = first ? head : std::vector<std::string>{"", "", ""};
      first = false;
      row.insert(row.end(), {one_line(s.stream), std::to_string(s.offset),
                             std::to_string(s.head), std::to_string(s.lag),
                             s.paused ? "yes" : "no"});
      rows.push_back(std::move(row));
    }
  }
  print_table(rows);
}

// Per consumer group member: its group's members (this node marked `*`)
// and partition count, then one row per partition it holds, per stream.
// Nothing for a node whose consumers are outside groups.
void print_groups(const control::status_reply& r) {
  std::vector<std::vector<std::string>> groups;
  std::vector<std::vector<std::string>> leases;
  groups.push_back({"GROUP", "MEMBERS", "PARTITIONS", "HELD"});
  leases.push_back({"GROUP", "STREAM", "PARTITION", "EPOCH", "OFFSET", "LAG"});
  for (auto& c : r.consumers) {
    if (!c.grouped())
      continue;
    std::vector<std::string> members;
    for (auto& m : c.members)
      members.push_back(one_line(m) + (m == r.node ? "*" : ""));
    size_t held = 0;
    for (auto& s : c.streams) {
      held += s.leases.size();
      for (auto& l : s.leases)
        leases.push_back({one_line(c.name), one_line(s.stream),
                          std::to_string(l.partition), std::to_string(l.epoch),
                          std::to_string(l.offset), std::to_string(l.lag)});
    }
    groups.push_back(
      {one_line(c.name),
       members.empty() ? "-" : fmt::format("{}", fmt::join(members, ",")),
       std::to_string(c.partitions), std::to_string(held)});
  }
  if (groups.size() == 1)
    return;
  print_line("");
  print_table(groups);
  if (leases.size() == 1)
    return;
  print_line("");
  print_table(leases);
}

// Every reason, the node's first, then each consumer's under its name.
void print_health(const control::status_reply& r) {
  if (r.healthy())
    return;
  print_line("");
  print_line("degraded:");
  for (auto& why : r.health)
    print_line(fmt::format("  - {}", one_line(why)));
  for (auto& c : r.consumers)
    for (auto& why : c.health)
      print_line(fmt::format("  - {}: {}", one_line(c.name), one_line(why)));
}

int run_status(const status_state& st) {
  auto reply = ask_node(st.endpoint, control::status_request{});
  if (!reply)
    return fail(prog, message_of(reply.error()));
  std::optional<control::members_reply> members;
  if (st.cluster) {
    auto m = ask_node(st.endpoint, control::members_request{});
    if (!m)
      return fail(prog, message_of(m.error()));
    members = std::move(*m);
  }
  if (st.json) {
    auto j = control::to_json(*reply);
    j["healthy"] = reply->healthy();
    if (members)
      j["cluster"] = control::to_json(*members);
    print_line(dump(j));
    return exit_ok;
  }
  print_node(*reply);
  print_line("");
  print_consumers(*reply);
  print_groups(*reply);
  print_health(*reply);
  if (members) {
    print_line("");
    print_members(*members);
  }
  return exit_ok;
}

int run_members(const status_state& st) {
  auto reply = ask_node(st.endpoint, control::members_request{});
  if (!reply)
    return fail(prog, message_of(reply.error()));
  if (st.json)
    print_line(dump(control::to_json(*reply)));
  else
    print_members(*reply);
  return exit_ok;
}

} // namespace

status_command add_status_command(CLI::App& app) {
  auto st = std::make_shared<status_state>();
  auto* cmd = app.add_subcommand(
    "status", "Show where a running node stands, through its control "
              "endpoint: its stream's head and oldest retained event, per "
              "consumer the offset, head, lag and pause of each stream it "
              "reads and its dead letters, per consumer group member its "
              "group's members and partition count and the partitions it "
              "holds (lease epoch, committed offset, lag), and whatever is "
              "degraded now.");
  add_endpoint_options(*cmd, st->endpoint);
  cmd->add_flag("--json", st->json,
                "print one JSON object instead: the node's answer and "
                "'healthy'");
  cmd->add_flag("--cluster", st->cluster,
                "also show the cluster's members as the node sees them (as "
                "herald members does); under 'cluster' with --json");
  return {cmd, [st] {
            return run_status(*st);
          }};
}

status_command add_members_command(CLI::App& app) {
  auto st = std::make_shared<status_state>();
  auto* cmd = app.add_subcommand(
    "members", "Show the cluster's members as a running node sees them, "
               "through its control endpoint: per member its status (joining, "
               "up, suspect, down, leaving), incarnation, stream, endpoints, "
               "the event types it produces, its consumers and when the node "
               "last heard it. The node asked is marked '*'.");
  add_endpoint_options(*cmd, st->endpoint);
  cmd->add_flag("--json", st->json,
                "print one JSON object instead: cluster, self and members");
  return {cmd, [st] {
            return run_members(*st);
          }};
}

} // namespace herald::cli
