/// The `herald` command: publish an event, watch the bus, check a catalog,
/// manage dead letters, operate consumer groups, show where a node stands.
///
/// ```sh
/// herald publish --control tcp://127.0.0.1:5701 user.account.created
///   '{"user_id": "...", "email": "a@example.com", "registration_source":
///   "web"}'
/// herald publish --control tcp://127.0.0.1:5701 user.account.created
///   --file users.jsonl
/// herald tail --config config/email_service.yaml --peer tcp://127.0.0.1:5600
///   --from-start 'user.>'
/// herald catalog check config/events.yaml
/// herald dlq list --control tcp://127.0.0.1:5701
/// herald status --control tcp://127.0.0.1:5701 --json
/// herald group describe EmailService --control tcp://127.0.0.1:5701
/// herald harness run harness/scenarios/consumer-kill.yaml --seed 7
/// ```
///
/// Exit codes: 0 success, 1 runtime error (`herald: <message>` on stderr),
/// 2 bad command line (naming the unknown option or command, if any).

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "dlq.hpp"
#include "group.hpp"
#include "harness/command.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"
#include "publish.hpp"
#include "status.hpp"

#ifndef HERALD_VERSION
#define HERALD_VERSION "unknown"
#endif

namespace {

namespace cli = herald::cli;

constexpr std::string_view prog = "herald";

struct tail_args {
  cli::node_options node;
  std::optional<uint64_t> count;
  std::optional<double> timeout;
  bool from_start = false;
  std::string since;
  std::string format = "json";
  std::string pattern;
};

int run_tail(const tail_args& args) {
  cli::install_signal_handlers();
  // An observer, not the service: it runs none of the config's consumers,
  // and keeps no state: without --data-dir its node lives in a temporary
  // directory removed at exit.
  std::string temp_dir;
  if (args.node.data_dir.empty()) {
    auto tmpl =
      (std::filesystem::temp_directory_path() / "herald-tail-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      return cli::fail(prog, "cannot create a temporary data directory");
    temp_dir = tmpl;
  }
  struct remove_on_exit {
    std::string dir;
    ~remove_on_exit() {
      if (!dir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    }
  } cleanup{temp_dir};
  auto n = cli::start_node(args.node, [&](herald::node_config& cfg) {
    cfg.consumers.clear();
    // A member of its own: the config's node keeps its name in the cluster.
    cfg.name = fmt::format("{}.tail.{}", cfg.name, ::getpid());
    if (!temp_dir.empty())
      cfg.data_dir = temp_dir;
  });
  if (!n)
    return cli::fail(prog, herald::message_of(n.error()));
  herald::observe_options start;
  start.from_start = args.from_start;
  if (!args.since.empty())
    // Checked when parsed: a duration counts back from now.
    start.since_us = cli::parse_since(args.since, herald::now_us());
  bool cloudevents = args.format == "cloudevents";
  std::atomic<uint64_t> seen{0};
  // Called by one actor at a time: check and increment need no lock.
  auto observed = (*n)->bus().observe(
    args.pattern,
    [&](const herald::event& ev) {
      if (args.count && seen >= *args.count)
        return;
      cli::print_line(cloudevents ? ev.to_cloudevent().dump()
                                  : ev.to_json().dump());
      ++seen;
    },
    start);
  if (observed)
    return cli::fail(prog, herald::message_of(observed));
  if (auto err = cli::write_endpoint_file(**n, args.node))
    return cli::fail(prog, herald::message_of(err));
  std::optional<std::chrono::milliseconds> limit;
  if (args.timeout)
    limit = cli::from_seconds(*args.timeout);
  auto res = cli::wait_until(
    [&] {
      return args.count && seen >= *args.count;
    },
    limit);
  (*n)->stop();
  if (!args.count || res == cli::wait_result::done)
    return cli::exit_ok;
  return cli::fail(
    prog, fmt::format("{}: saw {} of {} events matching '{}'",
                      res == cli::wait_result::timed_out
                        ? fmt::format("timed out after {:g}s", *args.timeout)
                        : std::string{"interrupted"},
                      seen.load(), *args.count, args.pattern));
}

int run_catalog_check(const std::string& file) {
  auto cat = herald::catalog::load_file(file);
  if (!cat)
    return cli::fail(prog, herald::message_of(cat.error()));
  auto own = std::count_if(cat->events().begin(), cat->events().end(),
                           [](const herald::event_spec& e) {
                             return !e.builtin;
                           });
  cli::print_line(fmt::format("{}: {} events OK", file, own));
  return cli::exit_ok;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{
    "Publish, watch and check the events of a herald deployment, "
    "manage dead letters, operate consumer groups and show where a node "
    "stands.",
    "herald"};
  app.set_version_flag("--version", "herald " HERALD_VERSION);
  app.require_subcommand(1);

  auto publish = cli::add_publish_command(app);

  tail_args tail;
  auto* tail_cmd = app.add_subcommand(
    "tail",
    "Print the events a pattern selects, one JSON line each, from every "
    "stream this node hears of (the producers named by --peer, or the "
    "members producing what it selects, with --seed or cluster.seeds). "
    "Without "
    "--from-start or --since: live events only, from the first that "
    "arrives. With them: first each stream's events read back from its "
    "producer's log, from its oldest retained event or from a time, then "
    "its live events, none missed or printed twice.");
  tail.node.log_level = "warn";
  cli::add_node_options(*tail_cmd, tail.node);
  auto* from_start =
    tail_cmd->add_flag("--from-start", tail.from_start,
                       "first print every retained event of each stream "
                       "(its producer's log), then follow live events");
  tail_cmd
    ->add_option("--since", tail.since,
                 fmt::format("first print each stream's events from the "
                             "first one published at or after this time, "
                             "then follow live events; {}",
                             cli::since_forms))
    ->check(cli::since_value())
    ->excludes(from_start);
  tail_cmd
    ->add_option("--format", tail.format,
                 "json: the envelope (event_type, timestamp, data, id, "
                 "...); cloudevents: CloudEvents 1.0 structured JSON "
                 "(type, time, subject = key, data, heraldstream, heraldseq)")
    ->capture_default_str()
    ->check(CLI::IsMember({"json", "cloudevents"}));
  tail_cmd->add_option("--count", tail.count, "exit 0 after N events");
  tail_cmd
    ->add_option("--timeout", tail.timeout,
                 "exit after SECONDS: 0 without --count, 1 if fewer than "
                 "--count events came")
    ->check(cli::at_least(0));
  tail_cmd
    ->add_option("PATTERN", tail.pattern,
                 "event pattern: a name, a prefix ending in '.', or "
                 "wildcards ('user.*.deleted', 'user.>')")
    ->required()
    ->check(CLI::Validator(
      [](std::string& text) -> std::string {
        auto p = herald::pattern::parse(text);
        return p ? std::string{} : herald::message_of(p.error());
      },
      "PATTERN"));

  std::string catalog_file;
  auto* catalog_cmd = app.add_subcommand("catalog", "Work with the catalog.");
  catalog_cmd->require_subcommand(1);
  auto* check = catalog_cmd->add_subcommand(
    "check", "Load a catalog and report every problem in it.");
  check
    ->add_option("FILE", catalog_file, "the catalog, e.g. config/events.yaml")
    ->required();

  auto dlq = cli::add_dlq_commands(app);
  auto status = cli::add_status_command(app);
  auto members = cli::add_members_command(app);
  auto group = cli::add_group_commands(app);
  auto harness = cli::add_harness_command(app, argv[0]);

  if (auto rc = cli::parse(app, argc, argv))
    return *rc;
  if (*dlq.app)
    return dlq.run();
  if (*group.app)
    return group.run();
  if (*publish.app)
    return publish.run();
  if (*status.app)
    return status.run();
  if (*members.app)
    return members.run();
  if (*harness.app)
    return harness.run();
  if (*tail_cmd)
    return run_tail(tail);
  return run_catalog_check(catalog_file);
}
