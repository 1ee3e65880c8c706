// End-to-end benchmark: one producer process and one consumer process over
// TCP loopback, through herald's whole path (validation, envelope, codec,
// ZeroMQ, pump, consumer actor, handler).
//
//   herald_e2e_bench [--events N] [--rate EVENTS_PER_S] [--users U]
//                    [--shards S] [--poison PERCENT] [--log-level L]
//                    [--handler-wait-ms MS] [--concurrency C]
//                    [--fsync always|batch|os] [--dir DATA_DIR]
//                    [--memory [--idle-s S]] [--service-actor]
//                    [--members N]
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
// core is free). --service-actor makes the handler a CAF behavior
// (`node::attach`) that reads the payload, as the example services do.
// --concurrency sets the consumer's handler calls at once
// (default 64; 0 runs handlers on the shards). Then events_per_s is bounded
// by concurrency / wait, and max_running says how many calls overlapped.
//
// --memory measures memory instead of speed, as a service that publishes a
// large backlog and one that replays it would see it: the producer
// publishes --events as fast as it can with no consumer running, waits
// until they are durable and then --idle-s seconds; then a consumer
// process starts and replays them all from the producer's log, and waits
// --idle-s seconds once done. The JSON line gives, in MiB from
// /proc/PID/status, the producer's peak resident set while publishing
// (VmHWM), its resident set once idle (VmRSS), its peak while serving the
// replay (VmHWM reset before it), and the consumer's peak and idle figures.
// The handler only counts: nothing is kept per event.
//
// Every consumer is a consumer group member (a group of one by default):
// it handles a partition of the producer's stream only under a lease from
// the producer's node, renewed with its offset commits, so the figures
// include that machinery. --members N (N >= 2) starts N consumer processes
// of one group (one consumer name, N node names) that join the producer's
// cluster through its control endpoint and share the partitions; the
// driver waits until each holds its assigned share, then publishes, and
// prints the group's combined figures: events_per_s from the first
// handler call of any member to the last of any, `distinct` events
// handled, `duplicates` (handled by more than one member, or twice) and
// `lost`, then each member's own line under `members`.
//
// The driver is the producer; it starts the consumer as a child process
// (the same binary with --role consumer) and prints one JSON line with the
// figures. --rate 0 publishes as fast as possible (throughput); a rate gives
// steady load for latency. Latency is publish-call time to handler time, on
// the machine's one clock.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_common.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"
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
  bool memory = false;
  bool service_actor = false;
  uint64_t idle_s = 5;
  /// Consumer processes in the group; with 2 or more they join the
  /// producer's cluster (`seed`) instead of naming its PUB endpoint.
  int members = 1;
  /// This consumer process's number among `members`, from 1.
  int member = 1;
  std::string seed;
  std::string producer_stream;
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
  app.add_flag("--memory", o.memory,
               "measure peak and idle resident memory of the producer "
               "(publishing with no consumer, then serving a replay) and "
               "of a consumer replaying the whole backlog, instead of "
               "speed");
  app.add_flag("--service-actor", o.service_actor,
               "the consumer's handler is a CAF behavior (node::attach) "
               "that reads the payload, as the example services' are; "
               "default: a function handler that does not");
  app
    .add_option("--idle-s", o.idle_s,
                "with --memory: seconds each process stays idle before its "
                "idle resident memory is read")
    ->capture_default_str();
  app
    .add_option("--members", o.members,
                "consumer processes in one consumer group, sharing the "
                "stream's partitions; the figures are the group's")
    ->capture_default_str()
    ->check(CLI::Range(1, 16));
  // How the driver starts the consumer process: not for users.
  app.add_option("--role", o.role)
    ->check(CLI::IsMember({"driver", "consumer"}))
    ->group("");
  app.add_option("--peer", o.peer)->group("");
  app.add_option("--member", o.member)->group("");
  app.add_option("--seed", o.seed)->group("");
  app.add_option("--producer-stream", o.producer_stream)->group("");
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

// A field of /proc/self/status in KiB (VmHWM: peak resident set, VmRSS:
// resident set now); 0 when absent.
uint64_t status_kib(std::string_view field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr)
    return 0;
  char line[256];
  uint64_t kib = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    std::string_view l{line};
    if (l.starts_with(field) && l.size() > field.size()
        && l[field.size()] == ':') {
      kib = std::strtoull(line + field.size() + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kib;
}

double status_mib(std::string_view field) {
  return static_cast<double>(status_kib(field)) / 1024.0;
}

// Starts a new peak: VmHWM becomes the resident set now (Linux
// proc(5), clear_refs "5").
void reset_peak() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

// The user index in a key made by `user_id`.
size_t user_of(std::string_view key) {
  return std::stoul(std::string{key.substr(key.size() - 12)}, nullptr, 16);
}

// The consumer process's node name: one per group member.
std::string member_name(const options& o) {
  return o.members == 1 ? std::string{"bench-consumer"}
                        : fmt::format("bench-consumer-{}", o.member);
}

// Where a group member says it holds its share (`ready`) and writes the
// seqs it handled (`seqs`), for the driver.
std::string member_file(const options& o, int member, const char* what) {
  auto copy = o;
  copy.member = member;
  return fmt::format("{}/{}.{}", o.dir, member_name(copy), what);
}

// Whether this member sees the whole group and holds a lease on each
// partition of the producer's stream assigned to it.
bool holds_share(const options& o, const herald::consumer_stats& st) {
  std::lock_guard<std::mutex> guard{st.positions_mtx};
  if (st.group_members.size() != static_cast<size_t>(o.members))
    return false;
  auto it = st.positions.find(o.producer_stream);
  if (it == st.positions.end() || it->second.partitions == 0)
    return false;
  auto assigned = herald::assigned_partitions(
    "EmailService", it->second.partitions, member_name(o), st.group_members);
  return it->second.leases.size() == assigned.size();
}

// Whether this member committed every event of the producer's stream it
// holds: the group is done with the run.
bool committed_all(const options& o, const herald::consumer_stats& st) {
  std::lock_guard<std::mutex> guard{st.positions_mtx};
  auto it = st.positions.find(o.producer_stream);
  return it != st.positions.end() && it->second.head >= o.events
         && it->second.offset >= o.events;
}

int run_consumer(const options& o) {
  auto cfg = config(o, member_name(o), "EmailService");
  if (o.members == 1)
    cfg.peers.push_back(o.peer);
  else
    cfg.cluster.seeds.push_back(o.seed);
  herald::consumer_config email;
  // No `subscribe` here: the handler below subscribes, so the node listens
  // only once it has a handler (events before it would be read again from
  // the producer's log).
  email.name = "EmailService";
  email.shards = o.shards;
  email.concurrency = o.concurrency;
  email.retry.initial = milliseconds{1};
  email.retry.max = milliseconds{10};
  if (o.service_actor)
    email.subscribe.push_back("user.account.created");
  cfg.consumers.push_back(email);
  auto n = start(cfg);
  // Handlers run on several shards at once: each writes its own slots.
  // Nothing is kept per event with --memory: the figures are herald's.
  std::vector<int64_t> lat(o.memory ? 0 : o.events);
  // The seqs handled, with --members: the driver counts duplicates and
  // losses over the group.
  std::vector<uint64_t> seqs(o.members > 1 ? o.events : 0);
  std::atomic<uint64_t> got{0};
  std::atomic<int64_t> first_us{0}, last_us{0};
  std::atomic<uint64_t> out_of_order{0};
  // Per entity the last seq handled; an entity is on one shard at a time.
  std::vector<uint64_t> last_seq(static_cast<size_t>(o.users) + 1, 0);
  auto poison_cut =
    static_cast<uint64_t>(o.poison / 100.0 * static_cast<double>(UINT32_MAX));
  std::atomic<uint64_t> running{0}, max_running{0};
  auto on_event = [&](const herald::event& ev) -> caf::error {
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
    if (i < seqs.size())
      seqs[i] = ev.seq();
    auto& last = last_seq[std::min(user_of(ev.key()), last_seq.size() - 1)];
    if (ev.seq() <= last)
      out_of_order.fetch_add(1);
    last = ev.seq();
    return {};
  };
  caf::error err;
  if (o.service_actor) {
    // As the example services do: a CAF behavior that reads the payload.
    err = n->attach("EmailService", [&](caf::event_based_actor*) {
      return caf::behavior{[&](const herald::event& ev) -> caf::result<void> {
        if (ev.data().at("email").get_ref<const std::string&>().empty())
          return herald::make_error(herald::errc::handler_failed, "no email");
        if (auto e = on_event(ev))
          return e;
        return caf::unit;
      }};
    });
  } else {
    err = n->bus().subscribe("user.account.created", on_event, "EmailService");
  }
  if (err)
    return 1;
  auto st = n->stats("EmailService");
  {
    // Tell the driver once this member holds its share of the partitions
    // (alone: all of them), so that the run measures handling under
    // leases, not the first grant.
    auto until = steady_clock::now() + seconds{60};
    while (!holds_share(o, *st)) {
      if (steady_clock::now() > until) {
        std::fprintf(stderr,
                     "bench: %s did not hold its partitions of the "
                     "producer's stream within 60 s\n",
                     member_name(o).c_str());
        return 1;
      }
      std::this_thread::sleep_for(milliseconds{10});
    }
    std::ofstream{member_file(o, o.member, "ready")} << "ready\n";
  }
  // Alone, it handles every event; in a group, its share: then it is done
  // once it committed the stream's last event.
  auto finished = [&] {
    auto done = got.load() + st->dead_lettered.load();
    return o.members > 1 && committed_all(o, *st) ? o.events : done;
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
  if (o.memory) {
    auto peak = status_mib("VmHWM");
    std::this_thread::sleep_for(seconds{o.idle_s});
    std::printf(
      "{\"received\":%lu,\"dead_lettered\":%lu,\"lost\":%lu,"
      "\"out_of_order\":%lu,\"replay_per_s\":%.0f,"
      "\"consumer_peak_mib\":%.1f,\"consumer_idle_mib\":%.1f}\n",
      got.load(), st->dead_lettered.load(),
      o.events - std::min(o.events, got.load() + st->dead_lettered.load()),
      out_of_order.load(),
      last_us > first_us ? got.load() / ((last_us - first_us) / 1e6) : 0.0,
      peak, status_mib("VmRSS"));
    std::fflush(stdout);
    return 0;
  }
  auto received = got.load();
  auto dead = st->dead_lettered.load();
  lat.resize(std::min<size_t>(received, lat.size()));
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0 : lat[static_cast<size_t>(p * (lat.size() - 1))];
  };
  double secs = (last_us - first_us) / 1e6;
  if (o.members > 1) {
    std::ofstream out{member_file(o, o.member, "seqs"), std::ios::binary};
    out.write(reinterpret_cast<const char*>(seqs.data()),
              static_cast<std::streamsize>(
                std::min<size_t>(received, seqs.size()) * sizeof(uint64_t)));
  }
  std::printf("{\"member\":\"%s\",\"partitions_owned\":%lu,"
              "\"rebalances\":%lu,\"discarded\":%lu,\"abandoned\":%lu,"
              "\"first_us\":%ld,\"last_us\":%ld,",
              member_name(o).c_str(), st->partitions_owned.load(),
              st->partitions_moved.load(), st->discarded.load(),
              st->abandoned.load(), first_us.load(), last_us.load());
  std::printf("\"shards\":%zu,\"concurrency\":%zu,\"handler_wait_ms\":%lu,"
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

// A consumer process (this binary, --role consumer) for the producer at
// `endpoint`, its stdout on a pipe. Returns its pid and the pipe's read
// end, or pid -1.
std::pair<pid_t, int> spawn_consumer(const options& o, const char* self,
                                     const std::string& endpoint,
                                     int member = 1) {
  auto members = std::to_string(o.members);
  auto member_no = std::to_string(member);
  auto events = std::to_string(o.events);
  auto users = std::to_string(o.users);
  auto shards = std::to_string(o.shards);
  auto poison = fmt::format("{}", o.poison);
  auto wait_ms = std::to_string(o.wait_ms);
  auto concurrency = std::to_string(o.concurrency);
  auto idle_s = std::to_string(o.idle_s);
  int fds[2];
  if (pipe(fds) != 0)
    return {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::vector<const char*> args = {self,
                                   "--role",
                                   "consumer",
                                   "--peer",
                                   endpoint.c_str(),
                                   "--events",
                                   events.c_str(),
                                   "--dir",
                                   o.dir.c_str(),
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
                                   "--idle-s",
                                   idle_s.c_str(),
                                   "--members",
                                   members.c_str(),
                                   "--member",
                                   member_no.c_str(),
                                   "--producer-stream",
                                   o.producer_stream.c_str()};
  if (!o.seed.empty()) {
    args.push_back("--seed");
    args.push_back(o.seed.c_str());
  }
  if (o.memory)
    args.push_back("--memory");
  if (o.service_actor)
    args.push_back("--service-actor");
  args.push_back(nullptr);
  pid_t pid;
  auto rc = posix_spawn(&pid, self, &fa, nullptr,
                        const_cast<char**>(args.data()), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return {-1, -1};
  }
  return {pid, fds[0]};
}

// The consumer's JSON line, once it exited; empty if it printed none.
std::string consumer_result(pid_t pid, int fd) {
  std::string out;
  char buf[4096];
  ssize_t k;
  while ((k = read(fd, buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(k));
  close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  if (out.empty() || out.front() != '{')
    return {};
  return out;
}

// The benchmark's payloads, made up front: it measures herald, not the
// building of JSON by the caller.
std::vector<herald::payload> make_payloads(int users) {
  std::vector<herald::payload> payloads;
  static const char* sources[] = {"web", "api", "oauth"};
  for (int i = 0; i < users; ++i)
    payloads.push_back({{"user_id", user_id(i)},
                        {"email", fmt::format("user{}@example.com", i)},
                        {"registration_source", sources[i % 3]}});
  return payloads;
}

int run_driver(const options& base, const char* self) {
  auto n = start(config(base, "bench-producer", "UserService"));
  auto o = base;
  o.producer_stream = n->stream();
  auto [pid, fd] = spawn_consumer(o, self, n->endpoint());
  if (pid < 0)
    return 1;
  if (!n->wait_for_subscribers(1, seconds{10})) {
    std::fprintf(stderr, "bench: consumer did not subscribe in 10 s\n");
    return 1;
  }
  // The consumer says when it holds its partitions (or exits, failing).
  auto ready = member_file(o, 1, "ready");
  while (!std::filesystem::exists(ready)) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      std::fprintf(stderr, "bench: the consumer ended before it held its "
                           "partitions\n");
      return 1;
    }
    std::this_thread::sleep_for(milliseconds{10});
  }
  std::filesystem::remove(ready);
  auto payloads = make_payloads(o.users);
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
  auto out = consumer_result(pid, fd);
  if (out.empty())
    return 1;
  std::printf("{\"events\":%lu,\"rate\":%lu,\"publish_per_s\":%.0f,%s\n",
              o.events, o.rate, o.events / pub_secs, out.c_str() + 1);
  return 0;
}

// --members N: N consumer processes of one group join the producer's
// cluster; once each holds its share, the driver publishes, then sums up.
int run_group_driver(const options& base, const char* self) {
  auto n = start(config(base, "bench-producer", "UserService"));
  auto o = base;
  o.producer_stream = n->stream();
  o.seed = n->control_endpoint();
  for (int m = 1; m <= o.members; ++m) { // left by an earlier run in --dir
    std::filesystem::remove(member_file(o, m, "ready"));
    std::filesystem::remove(member_file(o, m, "seqs"));
  }
  std::vector<std::pair<pid_t, int>> consumers;
  for (int m = 1; m <= o.members; ++m) {
    auto c = spawn_consumer(o, self, n->endpoint(), m);
    if (c.first < 0)
      return 1;
    consumers.push_back(c);
  }
  auto all_ready = [&] {
    for (int m = 1; m <= o.members; ++m)
      if (!std::filesystem::exists(member_file(o, m, "ready")))
        return false;
    return true;
  };
  // A failed run ends the members before their data dir is removed.
  auto fail = [&](const char* why) {
    std::fprintf(stderr, "bench: %s\n", why);
    for (auto [pid, fd] : consumers) {
      ::kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
      close(fd);
    }
    return 1;
  };
  auto exited = [&] {
    for (auto [pid, fd] : consumers)
      if (waitpid(pid, nullptr, WNOHANG) == pid)
        return true;
    return false;
  };
  // Each member gives up after 60 s itself, saying why.
  auto until = steady_clock::now() + seconds{65};
  while (!all_ready()) {
    if (exited() || steady_clock::now() > until)
      return fail("the group's members did not hold their partitions "
                  "(see their lines above)");
    std::this_thread::sleep_for(milliseconds{10});
  }
  auto payloads = make_payloads(o.users);
  std::optional<herald::publish_receipt> last;
  auto t0 = steady_clock::now();
  for (uint64_t i = 0; i < o.events; ++i) {
    if (o.rate > 0)
      std::this_thread::sleep_until(
        t0 + nanoseconds{i * 1'000'000'000ULL / o.rate});
    auto r =
      n->bus().publish("user.account.created", payloads[i % payloads.size()]);
    if (!r)
      return fail(herald::message_of(r.error()).c_str());
    last = std::move(*r);
  }
  if (last)
    last->wait();
  double pub_secs = duration<double>(steady_clock::now() - t0).count();
  auto lines = herald::payload::array();
  int64_t first = INT64_MAX, end = 0;
  uint64_t received = 0, dead = 0, out_of_order = 0;
  for (auto [pid, fd] : consumers) {
    auto out = consumer_result(pid, fd);
    if (out.empty())
      return 1;
    auto j = herald::payload::parse(out, nullptr, false);
    if (j.is_discarded())
      return 1;
    if (j.at("received").get<uint64_t>() > 0) {
      first = std::min(first, j.at("first_us").get<int64_t>());
      end = std::max(end, j.at("last_us").get<int64_t>());
    }
    received += j.at("received").get<uint64_t>();
    dead += j.at("dead_lettered").get<uint64_t>();
    out_of_order += j.at("out_of_order").get<uint64_t>();
    lines.push_back(std::move(j));
  }
  // Each event once over the group: count what each member handled.
  std::vector<uint8_t> times(o.events + 1, 0);
  for (int m = 1; m <= o.members; ++m) {
    std::ifstream in{member_file(o, m, "seqs"), std::ios::binary};
    uint64_t seq = 0;
    while (in.read(reinterpret_cast<char*>(&seq), sizeof(seq)))
      if (seq <= o.events && times[seq] < 255)
        ++times[seq];
  }
  uint64_t distinct = 0, duplicates = 0;
  for (uint64_t seq = 1; seq <= o.events; ++seq) {
    distinct += times[seq] > 0 ? 1 : 0;
    duplicates += times[seq] > 1 ? times[seq] - 1 : 0;
  }
  double secs = end > first ? static_cast<double>(end - first) / 1e6 : 0.0;
  std::printf("{\"events\":%lu,\"rate\":%lu,\"publish_per_s\":%.0f,"
              "\"members\":%d,\"received\":%lu,\"dead_lettered\":%lu,"
              "\"distinct\":%lu,\"duplicates\":%lu,\"lost\":%lu,"
              "\"out_of_order\":%lu,\"events_per_s\":%.0f,"
              "\"per_member\":%s}\n",
              o.events, o.rate, static_cast<double>(o.events) / pub_secs,
              o.members, received, dead, distinct, duplicates,
              o.events - std::min(o.events, distinct + dead), out_of_order,
              secs > 0 ? static_cast<double>(received + dead) / secs : 0.0,
              lines.dump().c_str());
  return 0;
}

// --memory: publish the backlog with no consumer, stay idle, then serve a
// consumer that replays it all (see the top of this file).
int run_memory_driver(const options& o, const char* self) {
  auto n = start(config(o, "bench-producer", "UserService"));
  auto payloads = make_payloads(o.users);
  std::optional<herald::publish_receipt> last;
  auto t0 = steady_clock::now();
  for (uint64_t i = 0; i < o.events; ++i) {
    auto r =
      n->bus().publish("user.account.created", payloads[i % payloads.size()]);
    if (!r) {
      std::fprintf(stderr, "bench: %s\n",
                   herald::message_of(r.error()).c_str());
      return 1;
    }
    last = std::move(*r);
  }
  if (last)
    if (auto err = last->wait()) {
      std::fprintf(stderr, "bench: %s\n", herald::message_of(err).c_str());
      return 1;
    }
  double pub_secs = duration<double>(steady_clock::now() - t0).count();
  auto publish_peak = status_mib("VmHWM");
  std::this_thread::sleep_for(seconds{o.idle_s});
  auto idle = status_mib("VmRSS");
  reset_peak();
  auto [pid, fd] = spawn_consumer(o, self, n->endpoint());
  if (pid < 0)
    return 1;
  auto out = consumer_result(pid, fd);
  if (out.empty())
    return 1;
  std::printf("{\"events\":%lu,\"publish_per_s\":%.0f,"
              "\"producer_publish_peak_mib\":%.1f,"
              "\"producer_idle_mib\":%.1f,\"producer_serve_peak_mib\":%.1f,"
              "%s\n",
              o.events, o.events / pub_secs, publish_peak, idle,
              status_mib("VmHWM"), out.c_str() + 1);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  if (auto rc = parse(o, argc, argv))
    return *rc;
  if (o.memory && o.members > 1) {
    std::fprintf(stderr, "herald_e2e_bench: --memory measures one consumer; "
                         "drop --members or --memory\n");
    return 2;
  }
  if (o.dir.empty()) {
    // A fresh data directory per run, so every run starts empty.
    auto tmpl =
      (std::filesystem::temp_directory_path() / "herald-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      return 1;
    o.dir = tmpl;
    auto rc = o.memory        ? run_memory_driver(o, argv[0])
              : o.members > 1 ? run_group_driver(o, argv[0])
                              : run_driver(o, argv[0]);
    std::filesystem::remove_all(tmpl);
    return rc;
  }
  if (o.role == "consumer")
    return run_consumer(o);
  if (o.memory)
    return run_memory_driver(o, argv[0]);
  return o.members > 1 ? run_group_driver(o, argv[0]) : run_driver(o, argv[0]);
}
