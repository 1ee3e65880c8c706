#include "dlq.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "cli_common.hpp"
#include "cluster_ask.hpp"
#include "herald/core/errc.hpp"
#include "herald/runtime/control.hpp"
#include "node_control.hpp"
#include "text_output.hpp"

namespace herald::cli {

namespace {

constexpr std::string_view prog = "herald";

// Longest reason the list shows; `show` prints it whole.
constexpr size_t max_reason_width = 60;

// What selects dead letters in list, redrive and purge.
struct filter_options {
  std::optional<std::string> consumer;
  std::optional<std::string> type;
  std::optional<std::string> key;
};

// The parsed options of every dlq command; one of them runs.
struct dlq_state {
  endpoint_options endpoint;
  filter_options filter;
  uint64_t limit = 100;
  std::optional<uint64_t> after;
  bool json = false;
  bool dry_run = false;
  std::string by;
  uint64_t show_id = 0;
  std::optional<uint64_t> purge_id;
  bool purge_all = false;
  /// Ask only the node connected to, even with --consumer.
  bool node_only = false;
  /// `show`: the member that stores the letter; empty: the node asked.
  std::string owner;
  CLI::App* list = nullptr;
  CLI::App* show = nullptr;
  CLI::App* redrive = nullptr;
  CLI::App* purge = nullptr;
};

CLI::Validator not_empty() {
  return CLI::Validator(
    [](std::string& text) -> std::string {
      return text.empty() ? "must not be empty" : "";
    },
    "");
}

void add_filter_options(CLI::App& cmd, filter_options& opts,
                        std::string_view verb) {
  cmd
    .add_option("--consumer", opts.consumer,
                fmt::format("{} only the dead letters of this consumer (a "
                            "consumer group), e.g. EmailService, at every "
                            "member of the cluster that is not down (each "
                            "letter's 'owner' is the member that stores it); "
                            "with --node-only at the node given only",
                            verb))
    ->check(not_empty());
  cmd
    .add_option("--type", opts.type,
                fmt::format("{} only the dead letters of this event type, "
                            "e.g. user.account.created",
                            verb))
    ->check(not_empty());
  cmd
    .add_option(
      "--key", opts.key,
      fmt::format("{} only the dead letters of this entity key", verb))
    ->check(not_empty());
}

control::dlq_filter filter_of(const filter_options& f) {
  control::dlq_filter out;
  out.consumer = f.consumer.value_or("");
  out.type = f.type.value_or("");
  out.key = f.key.value_or("");
  return out;
}

// Whether the command asks every member of the cluster: a group's dead
// letters live at the owners of the streams it reads.
bool cluster_wide(const dlq_state& st) {
  return st.filter.consumer && !st.node_only && !st.purge_id;
}

// Asks every member that is not down `request`; nothing (and the error
// printed) when the node connected to gives no view.
template <class Request>
std::optional<std::vector<member_answer<typename Request::reply_type>>>
ask_cluster(const dlq_state& st, const Request& request) {
  auto view = ask_view(st.endpoint);
  if (!view) {
    fail(prog, message_of(view.error()));
    return std::nullopt;
  }
  return ask_each(live_members(*view), request, st.endpoint.timeout);
}

int run_list_cluster(const dlq_state& st) {
  control::dlq_list_request request;
  request.filter = filter_of(st.filter);
  request.limit = st.limit;
  auto answers = ask_cluster(st, request);
  if (!answers)
    return exit_failure;
  // (owner, letter), by owner then id.
  std::vector<std::pair<std::string, const control::dead_letter_record*>> all;
  std::vector<std::string> more;
  for (auto& a : *answers) {
    if (!a.reply)
      continue;
    for (auto& dl : a.reply->dead_letters)
      all.emplace_back(a.member.name, &dl);
    if (a.reply->more && !a.reply->dead_letters.empty())
      more.push_back(fmt::format(
        "more dead letters match at owner '{}'; list the next ones with "
        "--control {} --node-only --after {}",
        a.member.name, a.member.control, a.reply->dead_letters.back().id));
  }
  std::sort(all.begin(), all.end(), [](auto& x, auto& y) {
    return std::tie(x.first, x.second->id) < std::tie(y.first, y.second->id);
  });
  if (st.json) {
    auto list = payload::array();
    for (auto& [owner, dl] : all) {
      auto j = control::to_json(*dl);
      j["owner"] = owner;
      list.push_back(std::move(j));
    }
    print_line(dump(list));
    for (auto& m : more)
      fmt::print(stderr, "{}\n", m);
    return report_unanswered(prog, *answers) ? exit_failure : exit_ok;
  }
  if (all.empty()) {
    print_line("no dead letters match");
    return report_unanswered(prog, *answers) ? exit_failure : exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"OWNER", "ID", "CONSUMER", "TYPE", "KEY", "STREAM:SEQ",
                  "ATTEMPTS", "REDRIVES", "REASON", "CREATED"});
  for (auto& [owner, dl] : all)
    rows.push_back({
      one_line(owner),
      std::to_string(dl->id),
      one_line(dl->consumer),
      one_line(dl->event_type),
      one_line(dl->key),
      fmt::format("{}:{}", one_line(dl->stream), dl->seq),
      std::to_string(dl->attempts.size()),
      std::to_string(dl->redrives.size()),
      shorten(one_line(dl->reason), max_reason_width),
      one_line(dl->created),
    });
  print_table(rows);
  for (auto& m : more)
    print_line(m);
  return report_unanswered(prog, *answers) ? exit_failure : exit_ok;
}

int run_list(const dlq_state& st) {
  if (cluster_wide(st))
    return run_list_cluster(st);
  control::dlq_list_request request;
  request.filter = filter_of(st.filter);
  request.limit = st.limit;
  request.after = st.after.value_or(0);
  auto reply = ask_node(st.endpoint, std::move(request));
  if (!reply)
    return fail(prog, message_of(reply.error()));
  const auto& letters = reply->dead_letters;
  std::string next;
  if (reply->more && !letters.empty())
    next = fmt::format("more dead letters match; list the next ones with "
                       "--after {}",
                       letters.back().id);
  if (st.json) {
    auto list = payload::array();
    for (auto& dl : letters)
      list.push_back(control::to_json(dl));
    print_line(dump(list));
    if (!next.empty())
      fmt::print(stderr, "{}\n", next);
    return exit_ok;
  }
  if (letters.empty()) {
    print_line("no dead letters match");
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "CONSUMER", "TYPE", "KEY", "STREAM:SEQ", "ATTEMPTS",
                  "REDRIVES", "REASON", "CREATED"});
  for (auto& dl : letters)
    rows.push_back({
      std::to_string(dl.id),
      one_line(dl.consumer),
      one_line(dl.event_type),
      one_line(dl.key),
      fmt::format("{}:{}", one_line(dl.stream), dl.seq),
      std::to_string(dl.attempts.size()),
      std::to_string(dl.redrives.size()),
      shorten(one_line(dl.reason), max_reason_width),
      one_line(dl.created),
    });
  print_table(rows);
  if (!next.empty())
    print_line(next);
  return exit_ok;
}

// The endpoint of member `owner` in the view of the node `st` names; the
// node itself when `owner` is empty or its own name.
caf::expected<endpoint_options> owner_endpoint(const dlq_state& st) {
  if (st.owner.empty())
    return st.endpoint;
  auto view = ask_view(st.endpoint);
  if (!view)
    return std::move(view.error());
  if (view->self == st.owner)
    return st.endpoint;
  std::vector<std::string> names;
  for (auto& e : view->members) {
    names.push_back(e.member.name);
    if (e.member.name != st.owner)
      continue;
    auto out = st.endpoint;
    out.config.clear();
    out.control = e.member.control;
    return out;
  }
  return make_error(errc::not_found,
                    fmt::format("--owner: no member '{}' in the cluster of "
                                "'{}'; the members are: {}",
                                st.owner, view->self, fmt::join(names, ", ")));
}

int run_show(const dlq_state& st) {
  control::dlq_show_request request;
  request.dead_letter = st.show_id;
  auto endpoint = owner_endpoint(st);
  if (!endpoint)
    return fail(prog, message_of(endpoint.error()));
  auto reply = ask_node(*endpoint, request);
  if (!reply)
    return fail(prog, message_of(reply.error()));
  const auto& dl = reply->dead_letter;
  if (st.json) {
    print_line(dump(control::to_json(dl), 2));
    return exit_ok;
  }
  // The known fields in a fixed order, then any the node added.
  auto fields = control::shown_fields(dl);
  size_t width = std::string_view{"attempts"}.size();
  for (auto& [name, value] : fields)
    width = std::max(width, name.size());
  for (auto& [name, value] : fields)
    print_line(
      fmt::format("{}  {}", pad(name + ":", width + 1), text_of(value)));
  auto attempt_line = [](const control::dead_letter_attempt& a) {
    return fmt::format("{}  {}  [{}]  {}", one_line(a.time),
                       a.node.empty() ? "-" : one_line(a.node),
                       one_line(a.error_class), one_line(a.error));
  };
  if (!dl.attempts.empty())
    print_line(fmt::format("{}  {}", pad("first failure:", width + 1),
                           attempt_line(dl.attempts.front())));
  print_line(
    fmt::format("{}  {}", pad("attempts:", width + 1), dl.attempts.size()));
  print_line(
    fmt::format("{}  {}", pad("redrives:", width + 1), dl.redrives.size()));
  // The history in time order: each attempt, and each redrive between
  // them (RFC 3339 UTC times of one width compare as text).
  size_t n = 0, r = 0;
  while (n < dl.attempts.size() || r < dl.redrives.size()) {
    if (r < dl.redrives.size()
        && (n == dl.attempts.size()
            || dl.redrives[r].time <= dl.attempts[n].time)) {
      auto& rd = dl.redrives[r++];
      print_line(fmt::format("  redrive {}: {}  by {}", r, one_line(rd.time),
                             one_line(rd.by)));
      continue;
    }
    print_line(fmt::format("  {}. {}", n + 1, attempt_line(dl.attempts[n])));
    ++n;
  }
  if (!dl.event || dl.event->is_null()) {
    print_line("event:     none in the reply");
    return exit_ok;
  }
  print_line("event:");
  print_line(dump(*dl.event, 2));
  return exit_ok;
}

// Prints which dead letters were `done` (redriven, purged), or would be
// in a dry run.
int report_ids(const dlq_state& st, const std::vector<uint64_t>& ids,
               std::optional<bool> dry_run, std::string_view done) {
  // The node says whether it changed anything; an older one may not.
  auto what = dry_run.value_or(st.dry_run)
                ? fmt::format("would be {} (dry run)", done)
                : std::string{done};
  if (ids.empty())
    print_line(fmt::format("no dead letters match; none {}", what));
  else
    print_line(fmt::format("{} dead letter{} {}: {}", ids.size(),
                           ids.size() == 1 ? "" : "s", what,
                           fmt::join(ids, ", ")));
  return exit_ok;
}

// Who runs this command, as a redrive records it: USER@HOST.
std::string who_asks() {
  std::string user = "unknown";
  for (const char* var : {"USER", "LOGNAME"})
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') {
      user = v;
      break;
    }
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0 || host[0] == '\0')
    return user;
  return fmt::format("{}@{}", user, host.data());
}

// Prints, per owner that answered, which dead letters were `done` there;
// returns the exit code (1 when some owner did not answer).
template <class Reply, class Ids>
int report_owners(const dlq_state& st,
                  const std::vector<member_answer<Reply>>& answers, Ids ids,
                  std::string_view done) {
  for (auto& a : answers) {
    if (!a.reply)
      continue;
    auto& list = ids(*a.reply);
    auto what = a.reply->dry_run.value_or(st.dry_run)
                  ? fmt::format("would be {} (dry run)", done)
                  : std::string{done};
    if (list.empty())
      print_line(fmt::format("{}: no dead letters match; none {}",
                             one_line(a.member.name), what));
    else
      print_line(fmt::format(
        "{}: {} dead letter{} {}: {}", one_line(a.member.name), list.size(),
        list.size() == 1 ? "" : "s", what, fmt::join(list, ", ")));
  }
  return report_unanswered(prog, answers) ? exit_failure : exit_ok;
}

int run_redrive(const dlq_state& st) {
  control::dlq_redrive_request request;
  request.filter = filter_of(st.filter);
  request.dry_run = st.dry_run;
  request.by = st.by.empty() ? who_asks() : st.by;
  if (cluster_wide(st)) {
    auto answers = ask_cluster(st, request);
    if (!answers)
      return exit_failure;
    return report_owners(
      st, *answers, [](const control::dlq_redrive_reply& r) -> const auto& {
        return r.redriven;
      },
      "redriven");
  }
  auto reply = ask_node(st.endpoint, std::move(request));
  if (!reply)
    return fail(prog, message_of(reply.error()));
  return report_ids(st, reply->redriven, reply->dry_run, "redriven");
}

int run_purge(const dlq_state& st) {
  control::dlq_purge_request request;
  request.filter = filter_of(st.filter);
  request.dead_letter = st.purge_id.value_or(0);
  request.all = st.purge_all;
  request.dry_run = st.dry_run;
  if (cluster_wide(st)) {
    auto answers = ask_cluster(st, request);
    if (!answers)
      return exit_failure;
    return report_owners(
      st, *answers,
      [](const control::dlq_purge_reply& r) -> const auto& { return r.purged; },
      "purged");
  }
  auto reply = ask_node(st.endpoint, std::move(request));
  if (!reply)
    return fail(prog, message_of(reply.error()));
  return report_ids(st, reply->purged, reply->dry_run, "purged");
}

} // namespace

// Adds --node-only to `cmd`.
void add_node_only(CLI::App& cmd, dlq_state& st) {
  cmd.add_flag("--node-only", st.node_only,
               "with --consumer: ask only the node given, not every member "
               "of the cluster");
}

dlq_command add_dlq_commands(CLI::App& app) {
  auto st = std::make_shared<dlq_state>();
  auto* dlq = app.add_subcommand(
    "dlq", "List, inspect, redrive and purge the dead letters of a running "
           "node, through its control endpoint. Filters (--consumer, --type, "
           "--key) combine: a dead letter must match every one given.");
  dlq->require_subcommand(1);

  st->list = dlq->add_subcommand(
    "list", "List the dead letters that match the filters as a table: id, "
            "consumer, type, key, stream:seq, attempts and redrives (counts "
            "over the letter's whole history), reason, created.");
  add_endpoint_options(*st->list, st->endpoint, [raw = st.get()] {
    if (raw->after && raw->filter.consumer && !raw->node_only)
      throw CLI::ValidationError(
        "--after pages the dead letters of one node, and --consumer asks "
        "every member: add --node-only and that member's --control",
        CLI::ExitCodes::ValidationError);
  });
  add_filter_options(*st->list, st->filter, "list");
  st->list->add_option("--limit", st->limit, "list at most N dead letters")
    ->capture_default_str()
    ->check(at_least(1));
  add_node_only(*st->list, *st);
  st->list->add_option("--after", st->after,
                       "list the dead letters after this id (the next page "
                       "of one node's: with --consumer, needs --node-only)");

  st->list->add_flag("--json", st->json,
                     "print the dead letters as one JSON array instead");

  st->show = dlq->add_subcommand(
    "show", "Show one dead letter: every field, its first failure, its "
            "whole history (every attempt with its time, node, class and "
            "error, and every redrive with its time and who asked), and the "
            "event it holds.");
  add_endpoint_options(*st->show, st->endpoint);
  st->show->add_option("ID", st->show_id, "the dead letter's id")->required();
  st->show
    ->add_option("--owner", st->owner,
                 "the member that stores the letter (the 'owner' of dlq list "
                 "--consumer), found in the cluster view of the node given; "
                 "default: the node given")
    ->check(not_empty());
  st->show->add_flag("--json", st->json,
                     "print the dead letter as one JSON object instead");

  st->redrive = dlq->add_subcommand(
    "redrive", "Hand the dead letters that match the filters (all of them "
               "without one) back to their consumers, each entity's in "
               "publish order (stream, seq), and print their ids. Each "
               "letter's record keeps the redrive (time, --by).");
  add_endpoint_options(*st->redrive, st->endpoint);
  add_filter_options(*st->redrive, st->filter, "redrive");
  st->redrive->add_flag(
    "--dry-run", st->dry_run,
    "only print which dead letters would be redriven; change nothing");
  add_node_only(*st->redrive, *st);
  st->redrive
    ->add_option("--by", st->by,
                 "who redrives, as each dead letter's record keeps it; "
                 "default: USER@HOST of this command")
    ->check(not_empty());

  st->purge = dlq->add_subcommand(
    "purge", "Delete dead letters for good: one by ID, those matching "
             "--consumer/--type/--key, or every one with --all.");
  auto* id_opt = st->purge->add_option("ID", st->purge_id,
                                       "the id of the dead letter to delete");
  auto* all_opt = st->purge->add_flag(
    "--all", st->purge_all,
    "delete every dead letter of the node (nothing else selects them all)");
  add_filter_options(*st->purge, st->filter, "delete");
  add_node_only(*st->purge, *st);
  all_opt->excludes(id_opt);
  for (const char* name : {"--consumer", "--type", "--key"})
    all_opt->excludes(st->purge->get_option(name));
  st->purge->add_flag("--dry-run", st->dry_run,
                      "only print which dead letters would be deleted; "
                      "delete nothing");
  // Without a selection a purge would take everything: make that explicit.
  add_endpoint_options(*st->purge, st->endpoint, [raw = st.get()] {
    auto& f = raw->filter;
    if (!raw->purge_id && !raw->purge_all && !f.consumer && !f.type && !f.key)
      throw CLI::ValidationError(
        "nothing selects the dead letters to purge; pass an ID, --consumer, "
        "--type or --key, or --all to delete every dead letter",
        CLI::ExitCodes::ValidationError);
  });

  auto run = [st]() -> int {
    if (*st->list)
      return run_list(*st);
    if (*st->show)
      return run_show(*st);
    if (*st->redrive)
      return run_redrive(*st);
    return run_purge(*st);
  };
  return {dlq, run};
}

} // namespace herald::cli
