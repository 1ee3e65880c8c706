/// The `herald` command: publish an event, watch the bus, check a catalog,
/// manage a node's dead letters, show where a node stands.
///
/// ```sh
/// herald publish --config config/user_service.yaml user.account.created
///   '{"user_id": "...", "email": "a@example.com", "registration_source":
///   "web"}'
/// herald tail --config config/email_service.yaml --peer tcp://127.0.0.1:5600
/// 'user.>' herald catalog check config/events.yaml
/// herald dlq list --control tcp://127.0.0.1:5701
/// herald status --control tcp://127.0.0.1:5701 --json
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

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "dlq.hpp"
#include "herald/core/errc.hpp"
#include "status.hpp"

#ifndef HERALD_VERSION
#define HERALD_VERSION "unknown"
#endif

namespace {

namespace cli = herald::cli;

constexpr std::string_view prog = "herald";

// Accepts a JSON object; otherwise says what is wrong and how to pass one.
std::string check_json_object(const std::string& text) {
  try {
    if (nlohmann::json::parse(text).is_object())
      return {};
    return "the payload must be a JSON object, e.g. '{\"user_id\": \"...\"}'";
  } catch (const nlohmann::json::parse_error& e) {
    return fmt::format("not valid JSON ({}); pass the payload as one quoted "
                       "argument, e.g. '{{\"user_id\": \"...\"}}'",
                       e.what());
  }
}

struct publish_args {
  cli::node_options node;
  std::string source;
  int64_t wait_subscribers = 0;
  double wait_timeout = 5;
  std::string type;
  std::string json;
};

int run_publish(const publish_args& args) {
  auto data = nlohmann::json::parse(args.json);
  auto n = cli::start_node(args.node);
  if (!n)
    return cli::fail(prog, herald::message_of(n.error()));
  auto& nd = **n;
  // Checked before waiting for subscribers: a bad payload fails at once.
  if (auto err = nd.events().validate(args.type, data))
    return cli::fail(prog, herald::message_of(err));
  herald::publish_options opts;
  opts.source = args.source;
  if (auto* spec = nd.events().find(args.type); opts.source.empty() && spec)
    opts.source = spec->producer;
  if (args.wait_subscribers > 0
      && !nd.wait_for_subscribers(args.wait_subscribers,
                                  cli::from_seconds(args.wait_timeout)))
    return cli::fail(prog, fmt::format("timed out after {:g}s waiting for {} "
                                       "subscriber(s) at {}; start them with "
                                       "--peer {} or raise --wait-timeout",
                                       args.wait_timeout, args.wait_subscribers,
                                       nd.endpoint(), nd.endpoint()));
  auto receipt = nd.bus().publish(args.type, std::move(data), opts);
  if (!receipt)
    return cli::fail(prog, herald::message_of(receipt.error()));
  // Acknowledged only once durable in this node's log.
  if (auto err = receipt->wait())
    return cli::fail(prog, herald::message_of(err));
  nlohmann::ordered_json out{{"id", receipt->id}, {"seq", receipt->seq}};
  cli::print_line(out.dump());
  nd.stop(); // flushes what was sent
  return cli::exit_ok;
}

struct tail_args {
  cli::node_options node;
  std::optional<uint64_t> count;
  std::optional<double> timeout;
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
    if (!temp_dir.empty())
      cfg.data_dir = temp_dir;
  });
  if (!n)
    return cli::fail(prog, herald::message_of(n.error()));
  std::atomic<uint64_t> seen{0};
  // Called by one actor at a time: check and increment need no lock.
  auto observed =
    (*n)->bus().observe(args.pattern, [&](const herald::event& ev) {
      if (args.count && seen >= *args.count)
        return;
      cli::print_line(ev.to_json().dump());
      ++seen;
    });
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
  CLI::App app{"Publish, watch and check the events of a herald deployment, "
               "manage its dead letters and show where a node stands.",
               "herald"};
  app.set_version_flag("--version", "herald " HERALD_VERSION);
  app.require_subcommand(1);

  publish_args pub;
  auto* publish = app.add_subcommand(
    "publish", "Validate an event against the catalog and publish it.");
  pub.node.log_level = "warn"; // stderr shows problems, not the lifecycle
  cli::add_node_options(*publish, pub.node, false);
  publish->add_option("--source", pub.source,
                      "producing service. Default: the catalog's producer");
  publish
    ->add_option("--wait-subscribers", pub.wait_subscribers,
                 "wait until N subscriptions reached this node first")
    ->capture_default_str()
    ->check(cli::at_least(0));
  publish
    ->add_option("--wait-timeout", pub.wait_timeout,
                 "seconds to wait for --wait-subscribers")
    ->capture_default_str()
    ->check(cli::at_least(0));
  publish->add_option("TYPE", pub.type, "event type, e.g. user.account.created")
    ->required();
  publish->add_option("JSON", pub.json, "the payload, a JSON object")
    ->required()
    ->check(check_json_object);

  tail_args tail;
  auto* tail_cmd = app.add_subcommand(
    "tail", "Print every event a pattern selects, one JSON line each.");
  tail.node.log_level = "warn";
  cli::add_node_options(*tail_cmd, tail.node);
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
    ->required();

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

  if (auto rc = cli::parse(app, argc, argv))
    return *rc;
  if (*dlq.app)
    return dlq.run();
  if (*status.app)
    return status.run();
  if (*publish)
    return run_publish(pub);
  if (*tail_cmd)
    return run_tail(tail);
  return run_catalog_check(catalog_file);
}
