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
};

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
  if (st.json) {
    auto j = control::to_json(*reply);
    j["healthy"] = reply->healthy();
    print_line(dump(j));
    return exit_ok;
  }
  print_node(*reply);
  print_line("");
  print_consumers(*reply);
  print_health(*reply);
  return exit_ok;
}

} // namespace

status_command add_status_command(CLI::App& app) {
  auto st = std::make_shared<status_state>();
  auto* cmd = app.add_subcommand(
    "status", "Show where a running node stands, through its control "
              "endpoint: its stream's head and oldest retained event, per "
              "consumer the offset, head, lag and pause of each stream it "
              "reads and its dead letters, and whatever is degraded now.");
  add_endpoint_options(*cmd, st->endpoint);
  cmd->add_flag("--json", st->json,
                "print one JSON object instead: the node's answer and "
                "'healthy'");
  return {cmd, [st] {
            return run_status(*st);
          }};
}

} // namespace herald::cli
