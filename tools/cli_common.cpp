#include "cli_common.hpp"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include "herald/core/errc.hpp"

namespace herald::cli {

namespace {

// Set by the signal handler: a lock-free atomic is async-signal-safe.
std::atomic<bool> stop_flag{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_stop_signal(int) {
  stop_flag.store(true);
}

std::mutex stdout_mtx;

} // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() noexcept {
  return stop_flag.load();
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
    .add_option("--log-level", opts.log_level,
                "log level on stderr, overriding the config's log_level")
    ->check(CLI::IsMember(
      {"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--data-dir", opts.data_dir,
                 "the node's data directory (durable log, offsets), "
                 "overriding the config's data_dir");
  if (with_endpoint_file)
    app.add_option("--endpoint-file", opts.endpoint_file,
                   "write this node's endpoint to PATH once it is ready");
}

caf::expected<std::unique_ptr<node>>
start_node(const node_options& opts,
           const std::function<void(node_config&)>& adjust) {
  auto cfg = node_config::load_file(opts.config);
  if (!cfg)
    return std::move(cfg.error());
  cfg->peers.insert(cfg->peers.end(), opts.peers.begin(), opts.peers.end());
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

int consumer_main(int argc, char** argv, std::string_view service,
                  std::string_view description, const service_setup& setup) {
  const std::string name{service};
  node_options nopts;
  uint64_t expect = 0;
  double timeout = 30;
  bool quiet = false;
  CLI::App app{std::string{description}, name};
  add_node_options(app, nopts);
  auto* expect_opt = app.add_option("--expect", expect,
                                    "exit 0 once the service handled N events");
  app
    .add_option("--timeout", timeout,
                "seconds to wait for the --expect events; exit 1 after")
    ->capture_default_str()
    ->check(at_least(0));
  app.add_flag("--quiet", quiet, "print no line per event");
  if (auto rc = parse(app, argc, argv))
    return *rc;
  install_signal_handlers();

  auto n = start_node(nopts);
  if (!n)
    return fail(name, message_of(n.error()));
  report_fn report = [quiet](std::string_view line) {
    if (!quiet)
      print_line(line);
  };
  if (auto err = setup(**n, report))
    return fail(name, message_of(err));
  auto stats = (*n)->stats(name);
  if (!stats)
    return fail(name, fmt::format("the node runs no consumer '{}': list it "
                                  "under 'consumers' in {} or subscribe it "
                                  "with bus().subscribe",
                                  name, nopts.config));
  if (auto err = write_endpoint_file(**n, nopts))
    return fail(name, message_of(err));

  bool expecting = expect_opt->count() > 0;
  auto res = expecting ? wait_until(
               [&] {
                 return stats->handled >= expect;
               },
               from_seconds(timeout))
                       : wait_until(
                         [] {
                           return false;
                         },
                         std::nullopt);
  // Stopping first: no line of a handler follows the count.
  (*n)->stop();
  uint64_t handled = stats->handled;
  uint64_t failed = stats->failed;
  print_line(fmt::format("{}: handled {} events", name, handled));
  if (!expecting || res == wait_result::done)
    return exit_ok;
  return fail(name,
              fmt::format("{}: handled {} of {} expected events ({} failed); "
                          "check that the producer runs and that --peer "
                          "names its endpoint",
                          res == wait_result::timed_out
                            ? fmt::format("timed out after {:g}s", timeout)
                            : std::string{"interrupted"},
                          handled, expect, failed));
}

} // namespace herald::cli
