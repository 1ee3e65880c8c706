#include "cli_common.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"

namespace herald::cli {

namespace {

// Set by the signal handler: a lock-free atomic is async-signal-safe.
std::atomic<bool> stop_flag{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_stop_signal(int) {
  stop_flag.store(true);
}

std::mutex stdout_mtx;

// What consumer_main counts per event the handlers are called with:
// distinct (stream, seq) pairs, duplicates, and optionally a line per call
// in a record file.
//
// Thread safety: `on_event` may run on several threads at once (a consumer
// calls its handlers one at a time, but nothing here relies on it); the
// counters are atomics, readable from any thread.
class event_recorder {
public:
  event_recorder(uint64_t slow_first, std::chrono::microseconds slow,
                 bool fail_all)
      : slow_first_(slow_first), slow_(slow), fail_all_(fail_all) {}

  ~event_recorder() {
    if (fd_ >= 0)
      ::close(fd_);
  }

  event_recorder(const event_recorder&) = delete;
  event_recorder& operator=(const event_recorder&) = delete;

  // Counts the events `path` already lists as seen, then opens it for
  // appending (creating it). Call before any `on_event`.
  caf::error open(const std::string& path) {
    {
      std::ifstream in{path};
      std::string line;
      while (std::getline(in, line)) {
        std::istringstream fields{line};
        std::string stream;
        uint64_t seq = 0;
        // A line cut short (a full disk) is no event seen.
        if (fields >> stream >> seq && seen_[stream].insert(seq).second)
          distinct_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      return make_error(errc::io_error,
                        fmt::format("--record: cannot open '{}': {}; check "
                                    "that its folder exists and is writable",
                                    path, std::strerror(errno)));
    path_ = path;
    return {};
  }

  // Called by the consumer for each event: sleeps while slow, counts, and
  // records. Fails when the record line cannot be written.
  caf::error on_event(const event& ev) {
    auto nth = calls_.fetch_add(1, std::memory_order_relaxed);
    if (nth < slow_first_ && slow_.count() > 0)
      std::this_thread::sleep_for(slow_);
    if (fail_all_) // not seen: it fails before being recorded
      return make_error(errc::handler_failed,
                        "failing on purpose (--fail-all)");
    std::string line;
    if (fd_ >= 0)
      line = fmt::format("{} {} {} {} {}\n", ev.stream(), ev.seq(), ev.key(),
                         ev.redelivered() ? 1 : 0, ev.id());
    std::lock_guard<std::mutex> guard{mtx_};
    if (seen_[std::string{ev.stream()}].insert(ev.seq()).second)
      distinct_.fetch_add(1, std::memory_order_relaxed);
    else
      duplicates_.fetch_add(1, std::memory_order_relaxed);
    if (fd_ < 0)
      return {};
    // One write per line: with O_APPEND, lines of concurrent writers never
    // interleave, and what returned is in the file whatever kills us.
    auto n = ::write(fd_, line.data(), line.size());
    if (n == static_cast<ssize_t>(line.size()))
      return {};
    return make_error(
      errc::io_error,
      fmt::format("--record: cannot append to '{}': {}", path_,
                  n < 0 ? std::strerror(errno) : "short write (disk full?)"));
  }

  uint64_t calls() const noexcept {
    return calls_.load();
  }
  uint64_t distinct() const noexcept {
    return distinct_.load();
  }
  uint64_t duplicates() const noexcept {
    return duplicates_.load();
  }

private:
  uint64_t slow_first_;
  std::chrono::microseconds slow_;
  bool fail_all_;
  std::string path_;
  int fd_ = -1;
  std::mutex mtx_;
  std::unordered_map<std::string, std::unordered_set<uint64_t>> seen_;
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> distinct_{0};
  std::atomic<uint64_t> duplicates_{0};
};

// Adds `rec` to the consumer `name` of `n` as a seed-style handler, once
// per `subscribe` pattern of its config entry; an event that several
// patterns select is counted by the first only. Returns false when the
// config has no such consumer.
caf::expected<bool> add_recorder(node& n, const std::string& name,
                                 const std::shared_ptr<event_recorder>& rec) {
  std::vector<pattern> patterns;
  for (auto& cc : n.config().consumers)
    if (cc.name == name)
      for (auto& text : cc.subscribe) {
        auto p = pattern::parse(text);
        if (!p)
          return std::move(p.error());
        patterns.push_back(std::move(*p));
      }
  if (patterns.empty())
    return false;
  for (size_t i = 0; i < patterns.size(); ++i) {
    auto handler = [rec, patterns, i](const event& ev) -> caf::error {
      for (size_t j = 0; j < i; ++j)
        if (patterns[j].matches(ev.type()))
          return {};
      return rec->on_event(ev);
    };
    if (auto err = n.bus().subscribe(patterns[i].text(), handler, name))
      return err;
  }
  return true;
}

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

int consumer_main(int argc, char** argv, std::string_view service,
                  std::string_view description, const service_setup& setup) {
  const std::string name{service};
  node_options nopts;
  uint64_t expect = 0;
  double timeout = 30;
  bool quiet = false;
  std::string record;
  uint64_t slow_first = 0;
  int64_t slow_us = 0;
  bool fail_all = false;
  CLI::App app{std::string{description}, name};
  add_node_options(app, nopts);
  auto* expect_opt = app.add_option(
    "--expect", expect,
    "exit 0 once the service was handed N distinct events (by stream and "
    "seq; redeliveries count once)");
  app
    .add_option("--timeout", timeout,
                "seconds to wait for the --expect events; exit 1 after")
    ->capture_default_str()
    ->check(at_least(0));
  app.add_flag("--quiet", quiet, "print no line per event");
  app.add_option("--record", record,
                 "append '<stream> <seq> <key> <redelivered 0|1> <id>' to "
                 "PATH for every event the handler is called with; events "
                 "PATH already lists count as seen");
  app
    .add_option("--slow-first", slow_first,
                "sleep --slow-us microseconds in the handler for each of "
                "the first N events")
    ->capture_default_str()
    ->check(at_least(0));
  app
    .add_option("--slow-us", slow_us,
                "microseconds --slow-first sleeps per event")
    ->capture_default_str()
    ->check(at_least(0));
  app.add_flag("--fail-all", fail_all,
               "fail every handler call (before recording it): exercises "
               "retries and dead letters");
  if (auto rc = parse(app, argc, argv))
    return *rc;
  install_signal_handlers();

  auto rec = std::make_shared<event_recorder>(
    slow_first, std::chrono::microseconds{slow_us}, fail_all);
  if (!record.empty())
    if (auto err = rec->open(record))
      return fail(name, message_of(err));
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
  // After setup's handlers: the recorder sees what they were called with.
  auto recording = add_recorder(**n, name, rec);
  if (!recording)
    return fail(name, message_of(recording.error()));
  if (!*recording && (!record.empty() || slow_first > 0 || fail_all))
    return fail(name, fmt::format("--record, --slow-first and --fail-all "
                                  "need the "
                                  "consumer '{}' under 'consumers' in {}",
                                  name, nopts.config));
  if (auto err = write_endpoint_file(**n, nopts))
    return fail(name, message_of(err));

  // Without a recorder (a consumer set up by `setup` alone), handler calls
  // are all there is to count.
  auto distinct = [&] {
    return *recording ? rec->distinct() : stats->handled.load();
  };
  bool expecting = expect_opt->count() > 0;
  auto res = expecting ? wait_until(
               [&] {
                 // Every event handed out has its outcome: for a service
                 // actor, the answer comes after the recorder ran.
                 return distinct() >= expect
                        && stats->handled + stats->failed >= rec->calls();
               },
               from_seconds(timeout))
                       : wait_until(
                         [] {
                           return false;
                         },
                         std::nullopt);
  // Stopping first: no line of a handler follows the count.
  (*n)->stop();
  uint64_t handled = distinct();
  uint64_t failed = stats->failed;
  print_line(fmt::format("{}: {} duplicates", name, rec->duplicates()));
  print_line(fmt::format("{}: handled {} events", name, handled));
  if (!expecting || res == wait_result::done)
    return exit_ok;
  return fail(name,
              fmt::format("{}: handled {} of {} expected events ({} "
                          "duplicates, {} failed); check that the producer "
                          "runs and that --peer names its endpoint",
                          res == wait_result::timed_out
                            ? fmt::format("timed out after {:g}s", timeout)
                            : std::string{"interrupted"},
                          handled, expect, rec->duplicates(), failed));
}

} // namespace herald::cli
