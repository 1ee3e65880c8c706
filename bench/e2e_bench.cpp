// End-to-end benchmark: one producer process and one consumer process over
// TCP loopback, through herald's whole path (validation, envelope, codec,
// ZeroMQ, pump, consumer actor, handler).
//
//   herald_e2e_bench [--events N] [--rate EVENTS_PER_S] [--users U]
//                    [--shards S] [--poison PERCENT] [--log-level L]
//                    [--handler-wait-ms MS] [--concurrency C]
//                    [--fsync always|batch|os] [--dir DATA_DIR]
//
// --help prints the usage; an unknown option is an error (exit 2).
//
// --shards sets the consumer's ordering shards (default 8). --poison makes
// the handler fail for that share of the events (chosen by a hash of the
// event id, so every attempt of one event fails); they are retried 3 times
// (1 ms, then 2 ms later: the backoff is configurable, the point here is
// the cost of the machinery) and dead-lettered.
//
// --handler-wait-ms makes the handler wait that long per event, as one that
// sends an email or calls an HTTP API does (a sleep: the thread waits, the
// core is free). --concurrency sets the consumer's handler calls at once
// (default 64; 0 runs handlers on the shards). Then events_per_s is bounded
// by concurrency / wait, and max_running says how many calls overlapped.
//
// The driver is the producer; it starts the consumer as a child process
// (the same binary with --role consumer) and prints one JSON line with the
// figures. --rate 0 publishes as fast as possible (throughput); a rate gives
// steady load for latency. Latency is publish-call time to handler time, on
// the machine's one clock.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_common.hpp"
#include "herald/core/errc.hpp"
#include "herald/runtime/node.hpp"

extern char** environ;

namespace {

using namespace std::chrono;

struct options {
  std::string role = "driver";
  std::string peer;
  std::string fsync = "batch";
  std::string dir;
  uint64_t events = 1'000'000;
  uint64_t rate = 0;
  int users = 1000;
  size_t shards = 8;
  double poison = 0;
  uint64_t wait_ms = 0;
  size_t concurrency = 64;
  std::string log_level = "warn";
};

// Parses the command line into `o`. Returns nothing when the run should
// go on, else the exit code: 0 after --help, 2 after a bad command line
// (an unknown option is named).
std::optional<int> parse(options& o, int argc, char** argv) {
  CLI::App app{"End-to-end benchmark: one producer and one consumer process "
               "over TCP loopback through herald's whole path; prints one "
               "JSON line with the figures.",
               "herald_e2e_bench"};
  app.add_option("--events", o.events, "events to publish")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  app
    .add_option("--rate", o.rate,
                "events per second (steady load, for latency); 0: as fast "
                "as possible (throughput)")
    ->capture_default_str();
  app.add_option("--users", o.users, "distinct entity keys")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  app.add_option("--shards", o.shards, "the consumer's ordering shards")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  app
    .add_option("--poison", o.poison,
                "percent of the events whose handler always fails (they "
                "end as dead letters)")
    ->capture_default_str()
    ->check(CLI::Range(0.0, 100.0));
  app
    .add_option("--handler-wait-ms", o.wait_ms,
                "milliseconds the handler waits per event, as one that "
                "calls a mail server does; 0: it returns at once")
    ->capture_default_str();
  app
    .add_option("--concurrency", o.concurrency,
                "the consumer's handler calls at once (consumers.NAME."
                "concurrency); 0: handlers run on the shards")
    ->capture_default_str();
  app.add_option("--log-level", o.log_level, "the nodes' log level")
    ->capture_default_str()
    ->check(CLI::IsMember(
      {"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--fsync", o.fsync, "the log's fsync policy")
    ->capture_default_str()
    ->check(CLI::IsMember({"always", "batch", "os"}));
  app.add_option("--dir", o.dir,
                 "data directory of both nodes. Default: a fresh temporary "
                 "one, removed after the run");
  // How the driver starts the consumer process: not for users.
  app.add_option("--role", o.role)
    ->check(CLI::IsMember({"driver", "consumer"}))
    ->group("");
  app.add_option("--peer", o.peer)->group("");
  return herald::cli::parse(app, argc, argv);
}

herald::node_config config(const options& o, std::string name,
                           std::string service) {
  herald::node_config cfg;
  cfg.data_dir = o.dir + "/" + name;
  cfg.store.fsync = o.fsync;
  cfg.name = std::move(name);
  cfg.service = std::move(service);
  cfg.catalog = HERALD_SOURCE_DIR "/config/events.yaml";
  cfg.log_level = o.log_level;
  cfg.transport.hwm = 2'000'000;
  return cfg;
}

std::unique_ptr<herald::node> start(herald::node_config cfg) {
  auto n = herald::node::start(std::move(cfg));
  if (!n) {
    std::fprintf(stderr, "bench: %s\n", herald::message_of(n.error()).c_str());
    std::exit(1);
  }
  return std::move(*n);
}

// The user index in a key made by `user_id`.
size_t user_of(std::string_view key) {
  return std::stoul(std::string{key.substr(key.size() - 12)}, nullptr, 16);
}

int run_consumer(const options& o) {
  auto cfg = config(o, "bench-consumer", "EmailService");
  cfg.peers.push_back(o.peer);
  herald::consumer_config email;
  // No `subscribe` here: the handler below subscribes, so the node listens
  // only once it has a handler (events before it would be read again from
  // the producer's log).
  email.name = "EmailService";
  email.shards = o.shards;
  email.concurrency = o.concurrency;
  email.retry.initial = milliseconds{1};
  email.retry.max = milliseconds{10};
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  // Handlers run on several shards at once: each writes its own slots.
  std::vector<int64_t> lat(o.events);
  std::atomic<uint64_t> got{0};
  std::atomic<int64_t> first_us{0}, last_us{0};
  std::atomic<uint64_t> out_of_order{0};
  // Per entity the last seq handled; an entity is on one shard at a time.
  std::vector<uint64_t> last_seq(static_cast<size_t>(o.users) + 1, 0);
  auto poison_cut =
    static_cast<uint64_t>(o.poison / 100.0 * static_cast<double>(UINT32_MAX));
  std::atomic<uint64_t> running{0}, max_running{0};
  auto err = n->bus().subscribe(
    "user.account.created",
    [&](const herald::event& ev) -> caf::error {
      if (std::hash<std::string_view>{}(ev.id()) % UINT32_MAX < poison_cut)
        return herald::make_error(herald::errc::handler_failed, "poison");
      if (o.wait_ms > 0) {
        auto now = running.fetch_add(1) + 1;
        auto most = max_running.load();
        while (now > most && !max_running.compare_exchange_weak(most, now)) {
        }
        std::this_thread::sleep_for(milliseconds{o.wait_ms});
        running.fetch_sub(1);
      }
      auto now = herald::now_us();
      auto i = got.fetch_add(1);
      if (i == 0)
        first_us = now;
      last_us = now;
      if (i < lat.size())
        lat[i] = now - ev.timestamp_us();
      auto& last = last_seq[std::min(user_of(ev.key()), last_seq.size() - 1)];
      if (ev.seq() <= last)
        out_of_order.fetch_add(1);
      last = ev.seq();
      return {};
    },
    "EmailService");
  if (err)
    return 1;
  auto st = n->stats("EmailService");
  auto finished = [&] {
    return got.load() + st->dead_lettered.load();
  };
  // Done when all arrived, or nothing arrived for 3 s after the first.
  auto idle_since = steady_clock::now();
  uint64_t seen = 0;
  auto start_wait = steady_clock::now();
  while (finished() < o.events) {
    std::this_thread::sleep_for(milliseconds{5});
    auto now_got = finished();
    if (now_got != seen) {
      seen = now_got;
      idle_since = steady_clock::now();
    } else if (seen > 0 && steady_clock::now() - idle_since > seconds{3}) {
      break;
    } else if (seen == 0 && steady_clock::now() - start_wait > seconds{60}) {
      break;
    }
  }
  n->drain(seconds{5});
  auto received = got.load();
  auto dead = st->dead_lettered.load();
  lat.resize(std::min<size_t>(received, lat.size()));
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0 : lat[static_cast<size_t>(p * (lat.size() - 1))];
  };
  double secs = (last_us - first_us) / 1e6;
  std::printf("{\"shards\":%zu,\"concurrency\":%zu,\"handler_wait_ms\":%lu,"
              "\"max_running\":%lu,\"poison_pct\":%g,\"received\":%lu,"
              "\"dead_lettered\":%lu,\"retried\":%lu,\"lost\":%lu,"
              "\"out_of_order\":%lu,\"events_per_s\":%.0f,\"p50_us\":%ld,"
              "\"p99_us\":%ld,\"p999_us\":%ld,\"max_us\":%ld,\"gaps\":%lu,"
              "\"replayed\":%lu,\"skipped\":%lu,\"shed\":%lu,\"pauses\":%lu}\n",
              o.shards, o.concurrency, o.wait_ms, max_running.load(), o.poison,
              received, dead, st->retried.load(),
              o.events - std::min(o.events, received + dead),
              out_of_order.load(), secs > 0 ? (received + dead) / secs : 0.0,
              pct(0.50), pct(0.99), pct(0.999), lat.empty() ? 0 : lat.back(),
              st->gaps.load(), st->replayed.load(), st->skipped.load(),
              st->shed.load(), st->pauses.load());
  std::fflush(stdout);
  return 0;
}

std::string user_id(int i) {
  return fmt::format("00000000-0000-4000-8000-{:012x}", i);
}

int run_driver(const options& o, const char* self) {
  auto n = start(config(o, "bench-producer", "UserService"));
  auto endpoint = n->endpoint();
  auto events = std::to_string(o.events);
  auto dir = o.dir;
  auto users = std::to_string(o.users);
  auto shards = std::to_string(o.shards);
  auto poison = fmt::format("{}", o.poison);
  auto wait_ms = std::to_string(o.wait_ms);
  auto concurrency = std::to_string(o.concurrency);
  int fds[2];
  if (pipe(fds) != 0)
    return 1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  const char* args[] = {self,
                        "--role",
                        "consumer",
                        "--peer",
                        endpoint.c_str(),
                        "--events",
                        events.c_str(),
                        "--dir",
                        dir.c_str(),
                        "--fsync",
                        o.fsync.c_str(),
                        "--shards",
                        shards.c_str(),
                        "--poison",
                        poison.c_str(),
                        "--users",
                        users.c_str(),
                        "--log-level",
                        o.log_level.c_str(),
                        "--handler-wait-ms",
                        wait_ms.c_str(),
                        "--concurrency",
                        concurrency.c_str(),
                        nullptr};
  pid_t pid;
  if (posix_spawn(&pid, self, &fa, nullptr, const_cast<char**>(args), environ)
      != 0)
    return 1;
  close(fds[1]);
  if (!n->wait_for_subscribers(1, seconds{10})) {
    std::fprintf(stderr, "bench: consumer did not subscribe in 10 s\n");
    return 1;
  }
  // Payloads prepared up front: the benchmark measures herald, not the
  // building of JSON by the caller.
  std::vector<herald::payload> payloads;
  static const char* sources[] = {"web", "api", "oauth"};
  for (int i = 0; i < o.users; ++i)
    payloads.push_back({{"user_id", user_id(i)},
                        {"email", fmt::format("user{}@example.com", i)},
                        {"registration_source", sources[i % 3]}});
  std::optional<herald::publish_receipt> last;
  auto t0 = steady_clock::now();
  for (uint64_t i = 0; i < o.events; ++i) {
    if (o.rate > 0) {
      auto due = t0 + nanoseconds{i * 1'000'000'000ULL / o.rate};
      // Sleep, not spin: a spinning producer would take one of the two
      // cores from the path being measured. Latency starts inside publish,
      // so a late wake-up does not count against it.
      std::this_thread::sleep_until(due);
    }
    auto r =
      n->bus().publish("user.account.created", payloads[i % payloads.size()]);
    if (r)
      last = std::move(*r);
    if (!r) {
      std::fprintf(stderr, "bench: %s\n",
                   herald::message_of(r.error()).c_str());
      return 1;
    }
  }
  if (last)
    last->wait(); // publish_per_s counts acknowledged (durable) events
  double pub_secs = duration<double>(steady_clock::now() - t0).count();
  std::string out;
  char buf[4096];
  ssize_t k;
  while ((k = read(fds[0], buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(k));
  int status = 0;
  waitpid(pid, &status, 0);
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  if (out.empty() || out.front() != '{')
    return 1;
  std::printf("{\"events\":%lu,\"rate\":%lu,\"publish_per_s\":%.0f,%s\n",
              o.events, o.rate, o.events / pub_secs, out.c_str() + 1);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  if (auto rc = parse(o, argc, argv))
    return *rc;
  if (o.dir.empty()) {
    // A fresh data directory per run, so every run starts empty.
    auto tmpl =
      (std::filesystem::temp_directory_path() / "herald-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      return 1;
    o.dir = tmpl;
    auto rc = run_driver(o, argv[0]);
    std::filesystem::remove_all(tmpl);
    return rc;
  }
  if (o.role == "consumer")
    return run_consumer(o);
  return run_driver(o, argv[0]);
}
