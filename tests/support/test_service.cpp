// The consumer the integration tests run as a process: what an example
// service does, plus the knobs the tests need to observe and disturb
// delivery from outside.
//
//   herald_test_service --service EmailService --config F [--peer EP]...
//     [--expect N] [--timeout S] [--quiet] [--record PATH]
//     [--slow-first N --slow-us US] [--fail-all] [--endpoint-file PATH]
//     [--control-file PATH] [--data-dir D] [--log-level L]
//     [--print-peak-rss]
//
// It runs the consumer `--service` of the config with one seed-style
// handler per `subscribe` pattern of its entry. With `--expect N` it waits
// until that handler was handed N distinct events (exit 0) or `--timeout`
// seconds passed (default 30; exit 1, saying how many it saw); without it,
// until SIGINT/SIGTERM (exit 0).
//
// Events are told apart by (stream, seq), so redeliveries (at-least-once)
// do not end a run early; they are counted as duplicates. With
// `--record PATH`, every event the handler is called with appends the line
// `<stream> <seq> <key> <redelivered 0|1> <id>` to PATH with one write(2)
// on an O_APPEND descriptor (a kill -9 loses no written line), and the
// events PATH already lists (earlier runs) count as seen: with the same
// PATH across restarts, `--expect N` means N distinct events in the file.
// `--slow-first N --slow-us US` makes the handler sleep US microseconds for
// each of its first N events; `--fail-all` fails every call (before
// recording it) with the error "failing on purpose (--fail-all)".
//
// `--print-peak-rss` prints `<service>: peak rss <K> KiB` (VmHWM) before
// them. The last two lines on stdout are always `<service>: <D> duplicates` and
// `<service>: handled <N> events` (N distinct, D calls with an event seen
// before).

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "cli_common.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"

using namespace herald;
using namespace herald::cli;

namespace {

// What the service counts per event its handler is called with:
// distinct (stream, seq) pairs, duplicates, and optionally a line per call
// in a record file.
//
// Thread safety: `on_event` may run on several threads at once (a consumer
// calls its handlers one at a time, but nothing here relies on it); the
// counters are atomics, readable from any thread.
// The seqs of one stream seen so far, in memory that does not grow with
// their number: everything below `below_` is seen, and `above_` holds the
// seen ones past the first gap (events finish out of order across
// entities, within the consumer's bounded window).
class seq_set {
public:
  // Adds `seq`; returns whether it was new.
  bool insert(uint64_t seq) {
    if (seq < below_ || !above_.insert(seq).second)
      return false;
    while (!above_.empty() && *above_.begin() == below_) {
      above_.erase(above_.begin());
      ++below_;
    }
    return true;
  }

private:
  uint64_t below_ = 1;
  std::set<uint64_t> above_;
};

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
        if (fields >> stream >> seq && seen_[stream].insert(seq))
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
    if (seen_[std::string{ev.stream()}].insert(ev.seq()))
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
  std::unordered_map<std::string, seq_set> seen_;
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> distinct_{0};
  std::atomic<uint64_t> duplicates_{0};
};

// Adds `rec` to the consumer `name` of `n` as a seed-style handler, once
// per `subscribe` pattern of its config entry; an event that several
// patterns select is counted by the first only. Unless `quiet`, prints a
// line per event handled. Fails when the config has no such consumer or it
// subscribes to nothing.
caf::error add_recorder(node& n, const std::string& name,
                        const std::shared_ptr<event_recorder>& rec,
                        bool quiet) {
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
    return make_error(errc::invalid_config,
                      fmt::format("the consumer '{}' subscribes to nothing: "
                                  "list it under 'consumers' with "
                                  "'subscribe' patterns",
                                  name));
  for (size_t i = 0; i < patterns.size(); ++i) {
    auto handler = [rec, patterns, i, quiet,
                    name](const event& ev) -> caf::error {
      for (size_t j = 0; j < i; ++j)
        if (patterns[j].matches(ev.type()))
          return {};
      auto err = rec->on_event(ev);
      if (!err && !quiet)
        print_line(fmt::format("{}: {} {} (event {})", name, ev.type(),
                               ev.key(), ev.id()));
      return err;
    };
    if (auto err = n.bus().subscribe(patterns[i].text(), handler, name))
      return err;
  }
  return {};
}

} // namespace

// The peak resident set of this process in KiB (VmHWM of
// /proc/self/status, proc(5)); 0 when it cannot be read.
uint64_t peak_rss_kib() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("VmHWM:"))
      return std::strtoull(line.c_str() + 6, nullptr, 10);
  return 0;
}

int main(int argc, char** argv) {
  std::string name;
  node_options nopts;
  uint64_t expect = 0;
  double timeout = 30;
  bool quiet = false;
  std::string record;
  uint64_t slow_first = 0;
  int64_t slow_us = 0;
  bool fail_all = false;
  bool print_peak_rss = false;
  CLI::App app{"A consumer for the integration tests: handles the events "
               "the config subscribes the consumer --service to, counts and "
               "records them.",
               "herald_test_service"};
  app
    .add_option("--service", name,
                "the consumer to run, listed under 'consumers' in the "
                "config (e.g. EmailService)")
    ->required();
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
  app.add_flag("--quiet", quiet,
               "print no line per event (default: '<service>: <type> <key> "
               "(event <id>)')");
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
  app.add_flag("--print-peak-rss", print_peak_rss,
               "before the counts, print '<service>: peak rss <K> KiB', the "
               "process's peak resident set (VmHWM)");
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
  auto stats = (*n)->stats(name);
  if (!stats)
    return fail(name, fmt::format("the node runs no consumer '{}': list it "
                                  "under 'consumers' in {}",
                                  name, nopts.config));
  if (auto err = add_recorder(**n, name, rec, quiet))
    return fail(name, message_of(err));
  if (auto err = write_endpoint_file(**n, nopts))
    return fail(name, message_of(err));

  bool expecting = expect_opt->count() > 0;
  auto res = expecting ? wait_until(
               [&] {
                 // Every event handed out has its outcome: the consumer
                 // counts it after the handler returned.
                 return rec->distinct() >= expect
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
  uint64_t handled = rec->distinct();
  uint64_t failed = stats->failed;
  if (print_peak_rss)
    print_line(fmt::format("{}: peak rss {} KiB", name, peak_rss_kib()));
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
