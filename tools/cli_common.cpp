#include "cli_common.hpp"

#include <cctype>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "herald/core/errc.hpp"
#include "herald/runtime/signals.hpp"

namespace herald::cli {

namespace {

std::mutex stdout_mtx;

// `app`'s name as typed: `herald dlq list`.
std::string command_path(const CLI::App& app) {
  std::string path = app.get_name();
  for (auto* p = app.get_parent(); p != nullptr; p = p->get_parent())
    path = p->get_name() + " " + path;
  return path;
}

// Whether `arg` looks like an option (`-x`, `--name`, `--name=value`) and
// not like a value (`-`, `-1.5`).
bool looks_like_option(const std::string& arg) {
  if (arg.size() < 2 || arg[0] != '-')
    return false;
  auto c = arg[1];
  return c == '-' ? arg.size() > 2 : !(std::isdigit(c) || c == '.');
}

// The first argument that `app` or a subcommand chosen under it could not
// place, as the usage error that names it: an unknown option, or an
// unknown command where `app` expects one. CLI11 reports such an argument
// only after its other checks, and meanwhile takes the option's value for
// the next positional argument, so its own error would blame that one.
std::optional<CLI::ExtrasError> unplaced_argument(const CLI::App& app) {
  auto chosen = app.get_subcommands();
  for (auto& arg : app.remaining(false)) {
    if (looks_like_option(arg))
      return CLI::ExtrasError(fmt::format("{}: unknown option '{}'; see '{} "
                                          "--help' for the options",
                                          command_path(app), arg,
                                          command_path(app)),
                              CLI::ExitCodes::ExtrasError);
    auto commands = app.get_subcommands([](const CLI::App* sub) {
      return !sub->get_name().empty();
    });
    if (chosen.empty() && !commands.empty()) {
      std::vector<std::string> names;
      for (auto* sub : commands)
        names.push_back(sub->get_name());
      return CLI::ExtrasError(fmt::format("{}: unknown command '{}'; the "
                                          "commands are {}",
                                          command_path(app), arg,
                                          fmt::join(names, ", ")),
                              CLI::ExitCodes::ExtrasError);
    }
  }
  for (auto* sub : chosen)
    if (auto e = unplaced_argument(*sub))
      return e;
  return std::nullopt;
}

// The command that needs a subcommand and got none (`herald`, `herald
// dlq`), as an error that lists its subcommands; none when every chosen
// command has what it needs.
std::optional<CLI::RequiredError> missing_command(const CLI::App& app) {
  auto chosen = app.get_subcommands();
  for (auto* sub : chosen)
    if (auto e = missing_command(*sub))
      return e;
  if (!chosen.empty() || app.get_require_subcommand_min() == 0)
    return std::nullopt;
  std::vector<std::string> names;
  for (auto* sub : app.get_subcommands([](const CLI::App* s) {
         return !s->get_name().empty();
       }))
    names.push_back(sub->get_name());
  return CLI::RequiredError(
    fmt::format("{}: which command? the commands "
                "are {}; see '{} --help'",
                command_path(app), fmt::join(names, ", "), command_path(app)),
    CLI::ExitCodes::RequiredError);
}

} // namespace

void install_signal_handlers() {
  catch_stop_signals();
}

bool stop_requested() noexcept {
  return herald::stop_requested();
}

int fail(std::string_view prog, std::string_view message) {
  fmt::print(stderr, "{}: {}\n", prog, message);
  std::fflush(stderr);
  return exit_failure;
}

std::optional<int> parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    // An argument no option or command took explains the error best.
    if (e.get_exit_code() != 0)
      if (auto unplaced = unplaced_argument(app)) {
        app.exit(*unplaced);
        return exit_usage;
      }
    if (e.get_exit_code() != 0)
      if (auto missing = missing_command(app)) {
        app.exit(*missing);
        return exit_usage;
      }
    // `exit` prints help and version on stdout, usage errors on stderr.
    return app.exit(e) == 0 ? exit_ok : exit_usage;
  }
}

void print_line(std::string_view line) {
  std::lock_guard<std::mutex> guard{stdout_mtx};
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::chrono::milliseconds from_seconds(double seconds) {
  return std::chrono::milliseconds{static_cast<int64_t>(seconds * 1000.0)};
}

CLI::Validator at_least(double min) {
  return CLI::Validator(
    [min](std::string& text) -> std::string {
      double value = 0;
      try {
        value = std::stod(text);
      } catch (const std::exception&) {
        return {}; // not a number: the conversion reports it
      }
      if (value >= min)
        return {};
      return fmt::format("{} is below the minimum, {:g}", text, min);
    },
    fmt::format(">={:g}", min));
}

std::optional<int64_t> parse_since(std::string_view text, int64_t now_us) {
  if (auto at = parse_timestamp(text))
    return at;
  // One or more <digits><unit>, e.g. 1h30m.
  constexpr int64_t max_micros = int64_t{1} << 60; // 36,000 years
  int64_t micros = 0;
  size_t pos = 0;
  if (text.empty())
    return std::nullopt;
  while (pos < text.size()) {
    int64_t n = 0;
    auto start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      n = n * 10 + (text[pos] - '0');
      if (n > max_micros)
        return std::nullopt;
      ++pos;
    }
    if (pos == start)
      return std::nullopt;
    int64_t unit = 0;
    auto rest = text.substr(pos);
    if (rest.starts_with("ms")) {
      unit = 1'000;
      pos += 2;
    } else if (rest.starts_with("s")) {
      unit = 1'000'000;
      ++pos;
    } else if (rest.starts_with("m")) {
      unit = 60'000'000;
      ++pos;
    } else if (rest.starts_with("h")) {
      unit = 3'600'000'000;
      ++pos;
    } else if (rest.starts_with("d")) {
      unit = 86'400'000'000;
      ++pos;
    } else {
      return std::nullopt;
    }
    if (n > (max_micros - micros) / unit)
      return std::nullopt;
    micros += n * unit;
  }
  return now_us - micros;
}

CLI::Validator since_value() {
  return CLI::Validator(
    [](std::string& text) -> std::string {
      if (parse_since(text, 0))
        return {};
      return fmt::format("'{}' is no time: give {}", text, since_forms);
    },
    "DURATION|RFC3339");
}

void add_node_options(CLI::App& app, node_options& opts,
                      bool with_endpoint_file) {
  app.add_option("--config", opts.config, "node configuration file (YAML)")
    ->required()
    ->check(CLI::ExistingFile);
  // One endpoint per occurrence, so that positionals after it stay theirs.
  app
    .add_option("--peer", opts.peers,
                "PUB endpoint of a peer to subscribe to, in addition to the "
                "config's peers (repeatable)")
    ->allow_extra_args(false);
  app
    .add_option("--seed", opts.seeds,
                "control endpoint of a cluster member to join through, in "
                "addition to the config's cluster.seeds (repeatable)")
    ->allow_extra_args(false);
  app
    .add_option("--log-level", opts.log_level,
                "log level on stderr, overriding the config's log_level")
    ->check(CLI::IsMember(
      {"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--data-dir", opts.data_dir,
                 "the node's data directory (durable log, offsets), "
                 "overriding the config's data_dir");
  if (with_endpoint_file) {
    app.add_option("--endpoint-file", opts.endpoint_file,
                   "write this node's endpoint to PATH once it is ready");
    app.add_option("--control-file", opts.control_file,
                   "write this node's control endpoint (for herald dlq "
                   "--control) to PATH once it is ready");
  }
}

caf::expected<std::unique_ptr<node>>
start_node(const node_options& opts,
           const std::function<void(node_config&)>& adjust) {
  auto cfg = node_config::load_file(opts.config);
  if (!cfg)
    return std::move(cfg.error());
  cfg->peers.insert(cfg->peers.end(), opts.peers.begin(), opts.peers.end());
  cfg->cluster.seeds.insert(cfg->cluster.seeds.end(), opts.seeds.begin(),
                            opts.seeds.end());
  if (!opts.log_level.empty())
    cfg->log_level = opts.log_level;
  if (!opts.data_dir.empty())
    cfg->data_dir = opts.data_dir;
  if (adjust)
    adjust(*cfg);
  return node::start(std::move(*cfg));
}

caf::error write_file_atomically(const std::string& path,
                                 std::string_view text) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc};
    out << text;
    out.close();
    if (!out)
      return make_error(errc::io_error,
                        fmt::format("cannot write '{}': check that its "
                                    "folder exists and is writable",
                                    tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    return make_error(
      errc::io_error,
      fmt::format("cannot rename '{}' to '{}': {}", tmp, path, ec.message()));
  return {};
}

caf::error write_endpoint_file(const node& n, const node_options& opts) {
  if (!opts.control_file.empty())
    if (auto err =
          write_file_atomically(opts.control_file, n.control_endpoint() + "\n"))
      return err;
  if (opts.endpoint_file.empty())
    return {};
  return write_file_atomically(opts.endpoint_file, n.endpoint() + "\n");
}

wait_result wait_until(const std::function<bool()>& done,
                       std::optional<std::chrono::milliseconds> timeout) {
  auto deadline = std::chrono::steady_clock::now()
                  + timeout.value_or(std::chrono::milliseconds{0});
  for (;;) {
    if (done())
      return wait_result::done;
    if (stop_requested())
      return wait_result::interrupted;
    if (timeout && std::chrono::steady_clock::now() >= deadline)
      return wait_result::timed_out;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
}

} // namespace herald::cli
