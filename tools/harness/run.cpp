#include "run.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "checker.hpp"
#include "cluster_watch.hpp"
#include "herald/core/catalog.hpp"
#include "herald/core/config.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"
#include "herald/runtime/control_client.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "schedule.hpp"
#include "workload.hpp"

namespace herald::harness {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view prog = "herald harness";

// libfaketime's multithreaded variant (Debian: libfaketime, pulled in by
// faketime).
constexpr std::string_view faketime_lib =
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

// Set by SIGINT and SIGTERM: the run stops its nodes, removes what it
// made and ends.
std::atomic<bool> interrupted{false};

extern "C" void on_interrupt(int) {
  interrupted = true;
}

void say(std::string_view line) {
  fmt::print("{}\n", line);
  std::fflush(stdout);
}

int fail(std::string_view message) {
  fmt::print(stderr, "{}: {}\n", prog, message);
  return 1;
}

// One launched node instance.
struct node_run {
  std::string name;
  /// Its number among its node's instances, from 1.
  int index = 1;
  const node_spec* spec = nullptr;
  std::string host;
  std::map<std::string, uint16_t> ports;
  std::string dir, data_dir, config, record, out, err;
  std::vector<std::string> argv;
  /// Netns mode: its host's label and namespace.
  std::string host_label, netns;
  /// Added to its environment (libfaketime for clock faults).
  std::vector<std::string> env;
  /// clock faults: the file libfaketime reads the offset from.
  std::string faketime_file;
  /// disk_full: the file that fills its data directory's tmpfs.
  std::string fill_file;
  child proc;
  bool started = false;
  bool paused = false;
  /// cycle faults: why a start failed, for the result.
  std::string cycle_error;
  /// Whether its config takes the workload's test hooks
  /// (`{{fail_keys}}`, `{{slow_keys}}`).
  bool has_fail_keys = false, has_slow_keys = false;
  /// Its test hooks now: its config's, as a `hooks` fault changed them
  /// (a slow fault adds to them, and its heal restores them).
  std::vector<std::string> fail_keys;
  std::map<std::string, uint64_t> slow_keys;
  /// Its template variables (the config is rendered again with them when
  /// a `hooks` fault changes its keys: a restart keeps them).
  std::map<std::string, std::string> vars;

  std::string control() const {
    return fmt::format("tcp://{}:{}", host, ports.at("control"));
  }
};

// The `{{port:NAME}}` names a template uses.
std::set<std::string> port_names(const std::string& text) {
  std::set<std::string> names;
  static const std::regex re{R"(\{\{port:([A-Za-z0-9_]+)\}\})"};
  for (std::sregex_iterator it{text.begin(), text.end(), re}, end; it != end;
       ++it)
    names.insert((*it)[1]);
  return names;
}

std::string yaml_list(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (auto& i : items)
    quoted.push_back(fmt::format("'{}'", i));
  return fmt::format("[{}]", fmt::join(quoted, ", "));
}

// Replaces every `{{NAME}}` of `text` with `vars[NAME]`; an unknown one is
// an error naming it and `where`.
caf::expected<std::string>
render(const std::string& text, const std::map<std::string, std::string>& vars,
       std::string_view where) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    auto open = text.find("{{", pos);
    if (open == std::string::npos) {
      out += text.substr(pos);
      break;
    }
    auto close = text.find("}}", open);
    if (close == std::string::npos)
      return make_error(errc::invalid_config,
                        fmt::format("{}: '{{{{' without '}}}}'", where));
    out += text.substr(pos, open - pos);
    auto name = text.substr(open + 2, close - open - 2);
    auto it = vars.find(name);
    if (it == vars.end()) {
      std::vector<std::string> known;
      for (auto& [k, v] : vars)
        if (k.find(':') == std::string::npos)
          known.push_back(k);
      return make_error(errc::invalid_config,
                        fmt::format("{}: unknown template variable '{{{{{}}}}}'"
                                    "; use {{{{port:NAME}}}}, "
                                    "{{{{endpoint:NODE:PORT}}}} or one of {}",
                                    where, name, fmt::join(known, ", ")));
    }
    out += it->second;
    pos = close + 2;
  }
  return out;
}

struct run_state {
  const scenario& sc;
  plan& p;
  std::string out;
  run_mode mode = run_mode::loopback;
  testbed* bed = nullptr;
  /// The membership expectations and descriptor checks.
  cluster_watch* watch = nullptr;
  std::vector<node_run> nodes;
  steady::time_point t0;
  /// Where commands are looked up (node commands and `run` faults).
  std::vector<std::string> search;
  /// The variables of a `run` fault's command: every endpoint,
  /// `{{catalog}}`, `{{run_dir}}` (`{{time:..}}` is added when it runs).
  std::map<std::string, std::string> run_vars;
  /// The workload's start on the wall clock (`{{time:+5s}}`), once it
  /// started.
  std::optional<std::chrono::system_clock::time_point> workload_wall;

  node_run* find(const std::string& name) {
    for (auto& n : nodes)
      if (n.name == name)
        return &n;
    return nullptr;
  }

  std::string stamp() const {
    auto t = std::chrono::duration<double>(steady::now() - t0).count();
    return fmt::format("[{:7.3f}s]", t);
  }
};

// Whether `n` may be the target of a fault of kind `k` in the plan.
bool targeted(const run_state& rs, const node_run& n, fault_kind k) {
  for (auto& a : rs.p.faults)
    if (a.kind == k && a.target == n.name)
      return true;
  return false;
}

// Makes the run's network (netns mode), the tmpfs of each disk_full
// target's data directory and the libfaketime setup of each clock target.
caf::error make_testbed(run_state& rs) {
  if (rs.mode == run_mode::netns) {
    std::vector<std::string> hosts;
    for (auto& n : rs.nodes)
      if (std::find(hosts.begin(), hosts.end(), n.host_label) == hosts.end())
        hosts.push_back(n.host_label);
    if (auto err = rs.bed->make_network(hosts))
      return err;
    for (auto& n : rs.nodes) {
      n.host = rs.bed->address(n.host_label);
      n.netns = rs.bed->netns_path(n.host_label);
    }
  }
  for (auto& n : rs.nodes) {
    if (targeted(rs, n, fault_kind::disk_full)) {
      if (auto err = rs.bed->mount_tmpfs(n.data_dir, rs.sc.disk_size))
        return err;
      n.fill_file = (fs::path{n.data_dir} / "harness-fill").string();
    }
    if (targeted(rs, n, fault_kind::clock)) {
      n.faketime_file = fs::absolute(fs::path{n.dir} / "faketime").string();
      std::ofstream{n.faketime_file} << "+0\n";
      n.env = {fmt::format("LD_PRELOAD={}", faketime_lib),
               "FAKETIME_TIMESTAMP_FILE=" + n.faketime_file,
               // Timers, backoff and failure detection keep the real,
               // monotonic clock: only the wall clock jumps.
               "FAKETIME_DONT_FAKE_MONOTONIC=1",
               // Read the offset again at most every second.
               "FAKETIME_CACHE_DURATION=1"};
    }
  }
  return {};
}

// Fills the tmpfs under `path` until it has no room left (ENOSPC).
caf::error fill_disk(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr)
    return make_error(errc::io_error, fmt::format("cannot create {}: {}", path,
                                                  std::strerror(errno)));
  std::vector<char> block(1 << 20, 'x');
  for (size_t size : {size_t{1} << 20, size_t{4096}, size_t{1}})
    while (std::fwrite(block.data(), 1, size, f) == size
           && std::fflush(f) == 0) {
    }
  std::fclose(f);
  return {};
}

// Sets the wall-clock offset libfaketime applies to a node (atomically:
// it rereads the file).
void set_clock(const node_run& n, std::chrono::milliseconds offset) {
  auto tmp = n.faketime_file + ".tmp";
  std::ofstream{tmp} << fmt::format(
    "{:+}\n", static_cast<double>(offset.count()) / 1000.0);
  fs::rename(tmp, n.faketime_file);
}

// Renders `n`'s config with its variables and its test hooks now, and
// writes it (a restart reads it again).
caf::error write_config(const run_state& rs, node_run& n) {
  std::vector<std::string> slow;
  for (auto& [k, ms] : n.slow_keys)
    slow.push_back(fmt::format("'{}': {}ms", k, ms));
  auto vars = n.vars;
  vars["fail_keys"] = yaml_list(n.fail_keys);
  vars["slow_keys"] = fmt::format("{{{}}}", fmt::join(slow, ", "));
  auto config = render(n.spec->config, vars,
                       fmt::format("{}:{}: node '{}': config", rs.sc.file,
                                   n.spec->line, n.spec->name));
  if (!config)
    return std::move(config.error());
  std::ofstream{n.config} << *config;
  return {};
}

// Lays out the instances: ports, paths, rendered configs and commands.
caf::error prepare(run_state& rs, const std::vector<std::string>& search) {
  for (auto& in : instances_of(rs.sc)) {
    node_run n;
    n.name = in.name;
    n.index = in.index;
    n.spec = &rs.sc.nodes[in.node];
    n.host = n.spec->host.empty() ? "127.0.0.1" : n.spec->host;
    if (rs.mode == run_mode::netns) {
      n.host_label = n.spec->host.empty() ? n.name : n.spec->host;
      n.host.clear(); // its address, once the network is made
    }
    auto names = port_names(n.spec->config);
    for (auto& word : n.spec->command)
      names.merge(port_names(word));
    if (names.count("control") == 0)
      return make_error(errc::invalid_config,
                        fmt::format("{}:{}: node '{}': its config must bind "
                                    "its control endpoint on "
                                    "{{{{port:control}}}} (control: "
                                    "tcp://{{{{host}}}}:{{{{port:control}}}}"
                                    "): the harness publishes, asks and "
                                    "changes test hooks there",
                                    rs.sc.file, n.spec->line, n.spec->name));
    if (rs.mode == run_mode::netns) {
      // A fresh namespace per host: every port is free there.
      uint16_t next = 7100;
      for (auto& other : rs.nodes)
        if (other.host_label == n.host_label)
          next = static_cast<uint16_t>(next + other.ports.size());
      for (auto& name : names)
        n.ports[name] = next++;
    } else {
      for (auto& name : names) {
        auto port = free_port(n.host);
        if (!port)
          return std::move(port.error());
        n.ports[name] = *port;
      }
    }
    n.dir = (fs::path{rs.out} / "nodes" / n.name).string();
    n.data_dir = (fs::path{n.dir} / "data").string();
    n.config = (fs::path{n.dir} / "config.yaml").string();
    n.out = (fs::path{n.dir} / "stdout.log").string();
    n.err = (fs::path{n.dir} / "stderr.log").string();
    n.record = (fs::path{rs.out} / "history" / (n.name + ".jsonl")).string();
    n.has_fail_keys = n.spec->config.find("{{fail_keys}}") != std::string::npos;
    n.has_slow_keys = n.spec->config.find("{{slow_keys}}") != std::string::npos;
    fs::create_directories(n.dir);
    rs.nodes.push_back(std::move(n));
  }
  if (auto err = make_testbed(rs))
    return err;
  std::vector<std::string> slow;
  for (auto& k : rs.p.slow_keys)
    slow.push_back(
      fmt::format("'{}': {}ms", k, rs.sc.workload.slow.delay.count()));
  for (auto& n : rs.nodes) {
    std::map<std::string, std::string> vars{
      {"node", n.name},
      {"index", std::to_string(n.index)},
      {"host", n.host},
      {"data_dir", fs::absolute(n.data_dir).string()},
      {"record", fs::absolute(n.record).string()},
      {"catalog", rs.sc.catalog},
      {"config", fs::absolute(n.config).string()},
      {"fail_keys", yaml_list(rs.p.poison_keys)},
      {"slow_keys", fmt::format("{{{}}}", fmt::join(slow, ", "))}};
    std::vector<std::string> peers;
    for (auto& other : rs.nodes) {
      for (auto& [port, number] : other.ports)
        vars[fmt::format("endpoint:{}:{}", other.name, port)] =
          fmt::format("tcp://{}:{}", other.host, number);
      if (&other != &n && other.ports.count("pub") > 0)
        peers.push_back(
          fmt::format("tcp://{}:{}", other.host, other.ports.at("pub")));
    }
    vars["peers"] = fmt::format("{}", fmt::join(peers, ", "));
    for (auto& [port, number] : n.ports)
      vars["port:" + port] = std::to_string(number);
    if (n.has_fail_keys)
      n.fail_keys = rs.p.poison_keys;
    if (n.has_slow_keys)
      for (auto& k : rs.p.slow_keys)
        n.slow_keys[k] =
          static_cast<uint64_t>(rs.sc.workload.slow.delay.count());
    auto where =
      fmt::format("{}:{}: node '{}'", rs.sc.file, n.spec->line, n.spec->name);
    n.vars = vars;
    if (auto err = write_config(rs, n))
      return err;
    for (auto& word : n.spec->command) {
      auto w = render(word, vars, where + ": command");
      if (!w)
        return std::move(w.error());
      n.argv.push_back(std::move(*w));
    }
    auto exe = find_executable(n.argv.front(), search);
    if (!exe)
      return make_error(errc::invalid_config,
                        fmt::format("{}: command '{}' is not an executable "
                                    "in {} or PATH; give its path or add its "
                                    "folder with --path",
                                    where, n.argv.front(),
                                    fmt::join(search, ", ")));
    n.argv.front() = *exe;
  }
  // A `run` fault's command sees every endpoint, the catalog and the
  // run's folder.
  for (auto& n : rs.nodes)
    for (auto& [port, number] : n.ports)
      rs.run_vars[fmt::format("endpoint:{}:{}", n.name, port)] =
        fmt::format("tcp://{}:{}", n.host, number);
  rs.run_vars["catalog"] = rs.sc.catalog;
  rs.run_vars["run_dir"] = fs::absolute(rs.out).string();
  rs.search = search;
  return {};
}

// Microseconds since the epoch, the clock of the nodes' histories.
uint64_t wall_us() {
  return static_cast<uint64_t>(
    std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch())
      .count());
}

std::string read_all(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The last lines of `path`, for an error message.
std::string tail_of(const std::string& path, size_t lines = 5) {
  std::ifstream in{path};
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);)
    all.push_back(line);
  auto from = all.size() > lines ? all.size() - lines : 0;
  std::vector<std::string> last(all.begin() + static_cast<long>(from),
                                all.end());
  return fmt::format("{}", fmt::join(last, "\n  "));
}

// Starts `n` and waits (bounded) until its control endpoint answers.
caf::error launch(run_state& rs, node_run& n, std::chrono::milliseconds wait) {
  auto c = child::start(n.argv, n.out, n.err, n.env, n.netns);
  if (!c)
    return std::move(c.error());
  n.proc = std::move(*c);
  n.started = true;
  n.paused = false;
  {
    std::ofstream pids{(fs::path{rs.out} / "pids").string(), std::ios::app};
    pids << n.proc.pid() << ' ' << n.argv.front() << '\n';
  }
  control_client_options opts;
  opts.timeout = 500ms;
  auto client = control_client::connect(n.control(), opts);
  if (!client)
    return std::move(client.error());
  auto deadline = steady::now() + wait;
  while (steady::now() < deadline && !interrupted) {
    if (!n.proc.running())
      return make_error(errc::io_error,
                        fmt::format("node {} ended (status {}) before it was "
                                    "ready; the end of {}:\n  {}",
                                    n.name, n.proc.status().value_or(-1), n.err,
                                    tail_of(n.err)));
    if (client->call(control::status_request{})) {
      if (rs.watch != nullptr)
        rs.watch->set_state(n.name, cluster_watch::state::running,
                            n.proc.pid());
      return {};
    }
  }
  return make_error(errc::timeout,
                    fmt::format("node {} did not answer on {} within {} ms; "
                                "see {}",
                                n.name, n.control(), wait.count(), n.err));
}

// Sets the test hooks of `n`: its own now, plus `extra` slow keys.
caf::error set_hooks(run_state&, node_run& n,
                     const std::vector<std::string>& extra,
                     std::chrono::milliseconds delay) {
  control::test_hooks_request req;
  req.fail_keys = n.fail_keys;
  for (auto& [k, ms] : n.slow_keys)
    req.slow_keys[k] = ms;
  for (auto& k : extra)
    req.slow_keys[k] = static_cast<uint64_t>(delay.count());
  control_client_options opts;
  opts.timeout = 2s;
  auto client = control_client::connect(n.control(), opts);
  if (!client)
    return std::move(client.error());
  auto reply = client->call(req);
  return reply ? caf::error{} : std::move(reply.error());
}

// A fault's start or its heal, due at `at`; for a cycle fault, each
// cycle is a step (`cycle` from 0) and its heal ends the cycles.
struct step {
  std::chrono::milliseconds at;
  const action* fault;
  bool heal;
  int cycle = -1;
};

// The hosts of instances `names`.
std::vector<std::string> hosts_of(run_state& rs,
                                  const std::vector<std::string>& names) {
  std::vector<std::string> hosts;
  for (auto& name : names)
    if (auto* n = rs.find(name);
        n != nullptr
        && std::find(hosts.begin(), hosts.end(), n->host_label) == hosts.end())
      hosts.push_back(n->host_label);
  return hosts;
}

// One join/leave cycle of a `cycle` fault: SIGTERM (a graceful leave),
// then the same command again, waiting until it answers.
void apply_cycle(run_state& rs, const step& s, node_run& n) {
  auto& a = *s.fault;
  auto& w = *rs.watch;
  if (s.heal) {
    w.cycles_end(a.spec, n.cycle_error);
    say(fmt::format("{} healed: {} join/leave cycles of {} done; polling the "
                    "other nodes' descriptors (at most {} ms)",
                    rs.stamp(), a.times, n.name, a.fds_within.count()));
    return;
  }
  if (s.cycle == 0) {
    w.cycles_begin(a.spec, n.name, a.times, a.fds_within, a.fd_slack);
    say(fmt::format("{} applied: join/leave cycles of {}: {} times, one "
                    "every {} ms",
                    rs.stamp(), n.name, a.times, a.period.count()));
  }
  w.set_state(n.name, cluster_watch::state::stopped);
  auto status = n.proc.stop(10s);
  auto err = launch(rs, n, 30s);
  w.cycle_done(a.spec, status);
  if (err) {
    n.cycle_error = fmt::format("cycle {}: {}", s.cycle + 1, message_of(err));
    say(fmt::format("{} cycle failed: {}: {}", rs.stamp(), n.name,
                    n.cycle_error));
  }
  auto every = std::max(1, a.times / 10);
  if ((s.cycle + 1) % every == 0 || status != 0)
    say(fmt::format("{} cycle {} of {}: {} left (exit status {}) and "
                    "joined again (pid {})",
                    rs.stamp(), s.cycle + 1, a.times, n.name, status,
                    n.proc.pid()));
}

// Deletes everything in `dir` (the directory itself stays: it may be a
// mount point); returns how many files and folders went.
caf::expected<uint64_t> wipe_dir(const std::string& dir) {
  std::error_code ec;
  uint64_t removed = 0;
  for (auto& e : fs::directory_iterator{dir, ec}) {
    auto n = fs::remove_all(e.path(), ec);
    if (ec)
      break;
    removed += n;
  }
  if (ec)
    return make_error(
      errc::io_error,
      fmt::format("cannot delete what '{}' holds: {}", dir, ec.message()));
  return removed;
}

// Sets the test hooks a `hooks` fault gives on each instance it names: in
// its config (a restart keeps them) and, when it runs, through the
// `test.hooks` control op. False when one could not be set.
bool apply_hooks(run_state& rs, const action& a) {
  auto& f = *a.spec_of;
  bool ok = true;
  for (auto& name : a.group) {
    auto* n = rs.find(name);
    if (n == nullptr)
      continue;
    if (f.fail_keys)
      n->fail_keys = f.fail_keys_poison ? rs.p.poison_keys : *f.fail_keys;
    if (f.slow_keys) {
      n->slow_keys.clear();
      if (f.slow_keys_workload)
        for (auto& k : rs.p.slow_keys)
          n->slow_keys[k] =
            static_cast<uint64_t>(rs.sc.workload.slow.delay.count());
      for (auto& [k, wait] : *f.slow_keys)
        n->slow_keys[k] = static_cast<uint64_t>(wait.count());
    }
    auto err = write_config(rs, *n);
    if (!err && n->started)
      err = set_hooks(rs, *n, {}, {});
    if (err) {
      ok = false;
      say(fmt::format("{} fault failed: hooks {}: {}", rs.stamp(), n->name,
                      message_of(err)));
      continue;
    }
    say(fmt::format("{} applied: test hooks of {}{}: fail keys [{}], {} "
                    "slow key(s)",
                    rs.stamp(), n->name,
                    n->started ? "" : " (in its config: not started)",
                    fmt::join(n->fail_keys, ", "), n->slow_keys.size()));
  }
  return ok;
}

// `{{time:+5s}}` of a command: the workload's start plus (or minus) that
// long, in microseconds since the epoch; nothing when `name` is no time.
std::optional<int64_t> time_var(const run_state& rs, const std::string& name) {
  if (!name.starts_with("time:"))
    return std::nullopt;
  std::string_view body{name};
  body.remove_prefix(5);
  int sign = 1;
  if (!body.empty() && (body.front() == '+' || body.front() == '-')) {
    sign = body.front() == '-' ? -1 : 1;
    body.remove_prefix(1);
  }
  auto d = parse_duration(body);
  if (!d)
    return std::nullopt;
  auto start = rs.workload_wall.value_or(std::chrono::system_clock::now());
  auto at = std::chrono::duration_cast<std::chrono::microseconds>(
              start.time_since_epoch())
            + sign * std::chrono::duration_cast<std::chrono::microseconds>(*d);
  return at.count();
}

// What one run of a `run` fault's command did.
struct command_result {
  int status = -1;
  bool timed_out = false;
  std::string out, err;
};

// Runs `argv` once with its output to `out` and `err` (replaced), killed
// after `limit`, with `env` added to the harness' environment.
caf::expected<command_result> run_once(const std::vector<std::string>& argv,
                                       const std::string& out,
                                       const std::string& err,
                                       const std::vector<std::string>& env,
                                       std::chrono::milliseconds limit) {
  std::error_code ec;
  fs::remove(out, ec);
  fs::remove(err, ec);
  auto c = child::start(argv, out, err, env);
  if (!c)
    return std::move(c.error());
  command_result r;
  auto deadline = steady::now() + limit;
  while (c->running() && steady::now() < deadline && !interrupted)
    std::this_thread::sleep_for(20ms);
  if (c->running()) {
    r.timed_out = true;
    c->kill();
  }
  r.status = c->status().value_or(-1);
  r.out = read_all(out);
  r.err = read_all(err);
  return r;
}

// Runs the command of a `run` fault (again every 500 ms with `retry`,
// until it meets its expectations or `within` passes), keeps its exit
// status and output in the run's `commands/` folder and a `ran` line of
// faults.jsonl. False when it did not end as expected: the run fails.
bool run_command(run_state& rs, const step& s) {
  auto& a = *s.fault;
  auto& f = *a.spec_of;
  auto where =
    fmt::format("{}:{}: faults[{}]: run", rs.sc.file, f.line, a.spec);
  auto vars = rs.run_vars;
  std::vector<std::string> argv;
  std::string problem;
  std::optional<int64_t> first_time;
  for (auto& word : f.argv) {
    for (size_t open = word.find("{{time:"); open != std::string::npos;
         open = word.find("{{time:", open + 2)) {
      auto close = word.find("}}", open);
      if (close == std::string::npos)
        break;
      auto name = word.substr(open + 2, close - open - 2);
      if (auto t = time_var(rs, name)) {
        vars[name] = format_timestamp(*t);
        if (!first_time)
          first_time = *t;
      }
    }
    auto w = render(word, vars, where);
    if (!w) {
      problem = message_of(w.error());
      break;
    }
    argv.push_back(std::move(*w));
  }
  if (problem.empty()) {
    if (auto exe = find_executable(argv.front(), rs.search))
      argv.front() = *exe;
    else
      problem = fmt::format("{}: command '{}' is not an executable in {} or "
                            "PATH",
                            where, argv.front(), fmt::join(rs.search, ", "));
  }
  auto dir = fs::path{rs.out} / "commands";
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto base = (dir / fmt::format("fault{}", a.spec)).string();
  auto out = base + ".stdout", err = base + ".stderr";
  std::optional<std::regex> want, refuse;
  if (f.expect_output)
    want.emplace(*f.expect_output);
  if (f.reject_output)
    refuse.emplace(*f.reject_output);
  command_result last;
  int runs = 0;
  auto started_us = wall_us();
  bool met = false;
  auto deadline = steady::now() + f.within;
  // A command that runs others (`sh -c "herald ...; herald ..."`) finds
  // them where the harness found the nodes' programs.
  std::string path = "PATH=";
  for (auto& dir : rs.search)
    path += dir + ":";
  if (auto* inherited = std::getenv("PATH"))
    path += inherited;
  std::vector<std::string> env{path};
  while (problem.empty() && !interrupted) {
    ++runs;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - steady::now());
    auto r = run_once(argv, out, err, env, std::max(left, 100ms));
    if (!r) {
      problem = message_of(r.error());
      break;
    }
    last = std::move(*r);
    met = !last.timed_out && last.status == f.expect_exit
          && (!want || std::regex_search(last.out, *want))
          && (!refuse || !std::regex_search(last.out, *refuse));
    if (met || !f.retry || steady::now() + 500ms >= deadline)
      break;
    std::this_thread::sleep_for(500ms);
  }
  if (problem.empty() && !met)
    problem = fmt::format(
      "{}: [{}] {}{}{}{}; see {} and {}", where, fmt::join(f.argv, " "),
      last.timed_out ? fmt::format("did not end within {} ms", f.within.count())
                     : fmt::format("exited {}", last.status),
      last.status != f.expect_exit || last.timed_out
        ? fmt::format(", expected {}", f.expect_exit)
        : std::string{},
      want && !std::regex_search(last.out, *want)
        ? fmt::format(", and its output has no match of /{}/", *f.expect_output)
        : std::string{},
      refuse && std::regex_search(last.out, *refuse)
        ? fmt::format(", and its output matches /{}/", *f.reject_output)
        : std::string{},
      out, err);
  payload line{{"event", "ran"},
               {"fault", a.spec},
               {"kind", "run"},
               {"target", ""},
               {"time_us", started_us},
               {"done_us", wall_us()},
               {"argv", argv},
               {"exit", last.status},
               {"expect_exit", f.expect_exit},
               {"timed_out", last.timed_out},
               {"runs", runs},
               {"stdout", out},
               {"stderr", err},
               {"ok", problem.empty()},
               {"rewinds", f.rewinds},
               {"rewind_to_us", first_time ? payload(*first_time) : payload{}}};
  if (!problem.empty())
    line["why"] = problem;
  std::ofstream{(fs::path{rs.out} / "faults.jsonl").string(), std::ios::app}
    << line.dump() << '\n';
  if (problem.empty())
    say(fmt::format("{} ran: [{}]: exit {}{} ({} run(s))", rs.stamp(),
                    fmt::join(argv, " "), last.status,
                    want || refuse ? ", output as expected" : "", runs));
  else
    say(fmt::format("{} run failed: {}", rs.stamp(), problem));
  return problem.empty();
}

// Applies or heals the fault of `s`; false when it was skipped (its node
// not started) or failed.
bool apply(run_state& rs, const step& s) {
  auto& a = *s.fault;
  auto* n = rs.find(a.target);
  auto what = std::string{to_string(a.kind)};
  if (a.kind == fault_kind::partition) {
    auto hosts = hosts_of(rs, a.group);
    auto err =
      s.heal ? rs.bed->heal_partitions() : rs.bed->partition(hosts, a.one_way);
    if (err)
      say(fmt::format("{} {} failed: partition: {}", rs.stamp(),
                      s.heal ? "heal" : "fault", message_of(err)));
    else if (s.heal)
      say(fmt::format("{} healed: partition of [{}]", rs.stamp(),
                      fmt::join(a.group, ", ")));
    else
      say(fmt::format("{} applied: partition: hosts [{}] ({}) cut from the "
                      "others{}",
                      rs.stamp(), fmt::join(hosts, ", "),
                      fmt::join(a.group, ", "),
                      a.one_way ? ", one way: what the others send them is "
                                  "dropped"
                                : ", both ways"));
    return !err;
  }
  if (a.kind == fault_kind::run)
    return run_command(rs, s);
  if (a.kind == fault_kind::hooks)
    return apply_hooks(rs, a);
  if (n == nullptr || !n->started) {
    say(fmt::format("{} skipped: {} {}: the node is not started", rs.stamp(),
                    what, a.target));
    return false;
  }
  switch (a.kind) {
  case fault_kind::hooks:
  case fault_kind::run:
    break;
  case fault_kind::wipe:
    if (!s.heal) {
      auto pid = n->proc.pid();
      rs.watch->set_state(n->name, cluster_watch::state::stopped);
      n->proc.kill();
      auto removed = wipe_dir(n->data_dir);
      if (!removed) {
        say(fmt::format("{} fault failed: wipe {}: {}", rs.stamp(), n->name,
                        message_of(removed.error())));
        return false;
      }
      say(fmt::format("{} applied: kill -9 {} (pid {}) and deleted its data "
                      "directory ({} files)",
                      rs.stamp(), n->name, pid, *removed));
      break;
    }
    [[fallthrough]]; // the heal of a wipe is the restart of a kill
  case fault_kind::kill:
    if (!s.heal) {
      auto pid = n->proc.pid();
      rs.watch->set_state(n->name, cluster_watch::state::stopped);
      n->proc.kill();
      say(fmt::format("{} applied: kill -9 {} (pid {})", rs.stamp(), n->name,
                      pid));
    } else if (auto err = launch(rs, *n, 30s)) {
      say(fmt::format("{} heal failed: restart {}: {}", rs.stamp(), n->name,
                      message_of(err)));
      return false;
    } else {
      say(fmt::format("{} healed: restarted {} (pid {})", rs.stamp(), n->name,
                      n->proc.pid()));
    }
    break;
  case fault_kind::pause:
    rs.watch->set_state(n->name, s.heal ? cluster_watch::state::running
                                        : cluster_watch::state::paused);
    n->proc.signal(s.heal ? SIGCONT : SIGSTOP);
    n->paused = !s.heal;
    say(fmt::format("{} {}: {} {} (pid {})", rs.stamp(),
                    s.heal ? "healed" : "applied",
                    s.heal ? "SIGCONT" : "SIGSTOP", n->name, n->proc.pid()));
    break;
  case fault_kind::slow: {
    auto err =
      s.heal ? set_hooks(rs, *n, {}, {}) : set_hooks(rs, *n, a.keys, a.delay);
    if (err) {
      say(fmt::format("{} {} failed: slow {}: {}", rs.stamp(),
                      s.heal ? "heal" : "fault", n->name, message_of(err)));
      return false;
    }
    say(fmt::format("{} {}: {} handling on {} for [{}]", rs.stamp(),
                    s.heal ? "healed" : "applied",
                    s.heal ? "normal"
                           : fmt::format("{} ms slower", a.delay.count()),
                    n->name, fmt::join(a.keys, ", ")));
    break;
  }
  case fault_kind::disk_full: {
    std::error_code ec;
    if (s.heal) {
      fs::remove(n->fill_file, ec);
      say(fmt::format("{} healed: freed the data disk of {}", rs.stamp(),
                      n->name));
    } else if (auto err = fill_disk(n->fill_file)) {
      say(fmt::format("{} fault failed: disk_full {}: {}", rs.stamp(), n->name,
                      message_of(err)));
      return false;
    } else {
      auto space = fs::space(n->data_dir, ec);
      say(fmt::format("{} applied: filled the data disk of {} ({} bytes "
                      "free)",
                      rs.stamp(), n->name, ec ? 0 : space.available));
    }
    break;
  }
  case fault_kind::clock:
    set_clock(*n, s.heal ? std::chrono::milliseconds{0} : a.jump);
    say(fmt::format(
      "{} {}: wall clock of {} {}", rs.stamp(), s.heal ? "healed" : "applied",
      n->name,
      s.heal ? std::string{"back to the real time"}
             : fmt::format("jumped by {:+} s",
                           static_cast<double>(a.jump.count()) / 1000.0)));
    break;
  case fault_kind::partition:
    break;
  case fault_kind::cycle:
    apply_cycle(rs, s, *n);
    break;
  }
  return true;
}

// Appends to `faults.jsonl` that the fault of `s` was applied or healed,
// and when (the checker measures the takeover of a killed group member's
// partitions from it); for a cycle step, also a `cycle` line with its
// number from 1 and when its stop began (the checker attributes a group's
// moves to each restart from it).
void record_fault(const run_state& rs, const step& s, uint64_t at_us) {
  auto& a = *s.fault;
  std::ofstream out{(fs::path{rs.out} / "faults.jsonl").string(),
                    std::ios::app};
  payload line{{"fault", a.spec},
               {"kind", std::string{to_string(a.kind)}},
               {"target", a.target},
               {"time_us", at_us}};
  // A hooks fault that clears the fail keys fixes the handler: poison
  // events handled from then on need no dead letter (checks.poison).
  if (a.kind == fault_kind::hooks && a.spec_of != nullptr)
    line["fixes"] = a.spec_of->fail_keys && a.spec_of->fail_keys->empty()
                    && !a.spec_of->fail_keys_poison;
  if (s.heal || s.cycle <= 0) {
    line["event"] = s.heal ? "healed" : "applied";
    out << line.dump() << '\n';
  }
  if (!s.heal && s.cycle >= 0) {
    line["event"] = "cycle";
    line["cycle"] = s.cycle + 1;
    out << line.dump() << '\n';
  }
}

// Applies `s`, and tells the watch: the state before the fault (when an
// expectation compares with it), then that it was applied or healed.
void run_step(run_state& rs, const step& s) {
  auto spec = s.fault->spec;
  bool first = s.cycle <= 0 && !s.heal;
  if (spec >= 0 && first && rs.watch->wants_before(spec))
    rs.watch->before_fault(spec);
  // A kill's time is taken before the signal: a takeover measured from
  // it is never too short.
  auto at_us = wall_us();
  bool done = apply(rs, s);
  if (done && (first || s.heal || s.cycle > 0))
    record_fault(rs, s, at_us);
  if (!done || spec < 0)
    return;
  if (s.heal)
    rs.watch->fault_healed(spec);
  else if (first)
    rs.watch->fault_applied(spec);
}

// Heals every fault still applied when the workload ends or the run is
// interrupted.
void heal_all(run_state& rs) {
  for (auto& n : rs.nodes) {
    if (n.paused) {
      n.proc.signal(SIGCONT);
      n.paused = false;
      rs.watch->set_state(n.name, cluster_watch::state::running);
    }
    std::error_code ec;
    if (!n.fill_file.empty())
      fs::remove(n.fill_file, ec);
    if (!n.faketime_file.empty())
      set_clock(n, std::chrono::milliseconds{0});
  }
  if (rs.bed != nullptr)
    if (auto err = rs.bed->heal_partitions())
      say(fmt::format("cannot heal the partitions: {}", message_of(err)));
}

// Refuses what the mode or the machine cannot do, naming the fault.
caf::error check_mode(const scenario& sc, const plan& p, run_mode mode) {
  std::vector<std::string> problems;
  if (mode == run_mode::netns && ::geteuid() != 0)
    problems.push_back("--mode netns needs root (it makes network "
                       "namespaces, a bridge and veths); run it as root, or "
                       "use --mode loopback");
  for (size_t i = 0; i < sc.faults.size(); ++i)
    if (needs_netns(sc.faults[i].kind) && mode != run_mode::netns)
      problems.push_back(fmt::format(
        "{}:{}: faults[{}]: '{}' needs --mode netns (one network namespace "
        "per host); run with --mode netns as root, or set mode: netns",
        sc.file, sc.faults[i].line, i, to_string(sc.faults[i].kind)));
  if (sc.random.rate > 0)
    for (auto k : sc.random.kinds)
      if (needs_netns(k) && mode != run_mode::netns)
        problems.push_back(fmt::format(
          "{}: random: kind '{}' needs --mode netns (one network namespace "
          "per host); run with --mode netns as root, or remove it",
          sc.file, to_string(k)));
  bool disk = false, clock = false;
  for (auto& a : p.faults) {
    disk = disk || a.kind == fault_kind::disk_full;
    clock = clock || a.kind == fault_kind::clock;
  }
  if (disk && ::geteuid() != 0)
    problems.push_back(fmt::format("{}: disk_full needs root (it mounts a "
                                   "tmpfs on the node's data directory)",
                                   sc.file));
  if (clock && !fs::exists(faketime_lib))
    problems.push_back(fmt::format("{}: clock needs libfaketime ({}); "
                                   "install the Debian package faketime",
                                   sc.file, faketime_lib));
  if (problems.empty())
    return {};
  return make_error(errc::invalid_config,
                    fmt::format("{}", fmt::join(problems, "\n")));
}

// The consumers of every started node, from their status; the nodes
// that did not answer go to `silent` (their consumers cannot be judged).
std::vector<consumer_info> consumers_of(run_state& rs,
                                        std::vector<std::string>& silent) {
  std::vector<consumer_info> out;
  silent.clear();
  for (auto& n : rs.nodes) {
    if (!n.started)
      continue;
    control_client_options opts;
    opts.timeout = 2s;
    auto client = control_client::connect(n.control(), opts);
    auto st = client ? client->call(control::status_request{})
                     : caf::expected<control::status_reply>{client.error()};
    if (!st) {
      silent.push_back(n.name);
      continue;
    }
    for (auto& c : st->consumers)
      if (!c.name.starts_with("herald."))
        out.push_back({n.name, c.name, c.patterns});
  }
  return out;
}

// Judges what is recorded now.
verdict judge_now(run_state& rs, const std::vector<consumer_info>& consumers) {
  auto pub_path = (fs::path{rs.out} / "publishes.jsonl").string();
  auto publishes = parse_publishes(read_all(pub_path), pub_path);
  std::vector<std::pair<std::string, history>> histories;
  for (auto& n : rs.nodes)
    histories.emplace_back(n.name, parse_history(read_all(n.record), n.record));
  auto faults_path = (fs::path{rs.out} / "faults.jsonl").string();
  auto faults = parse_faults(read_all(faults_path), faults_path);
  return judge(publishes ? *publishes : std::vector<published>{}, histories,
               consumers, rs.sc.checks,
               faults ? *faults : std::vector<fault_record>{});
}

void write_json(const std::string& path, const payload& j) {
  std::ofstream{path} << j.dump(2) << '\n';
}

// The scenario's membership expectations as the run watches them: the
// member a fault hit, the instances of `seen_by`, the trigger in words.
std::vector<expectation> expectations_of(const scenario& sc, const plan& p) {
  auto all = instances_of(sc);
  std::vector<expectation> out;
  for (auto& spec : sc.membership) {
    expectation x;
    x.spec = spec;
    x.member = spec.member;
    for (auto& name : spec.seen_by)
      for (auto& in : instances_named(sc, all, name))
        x.seen_by.push_back(in);
    if (spec.trigger == expect_trigger::at) {
      x.trigger = fmt::format("{} ms on the run's clock", spec.at.count());
    } else {
      const action* hit = nullptr;
      for (auto& a : p.faults)
        if (a.spec == static_cast<int>(spec.fault))
          hit = &a;
      if (hit != nullptr && x.member.empty())
        x.member = hit->target;
      x.trigger = fmt::format(
        "fault {} ({} {}) {}", spec.fault,
        hit ? to_string(hit->kind) : std::string_view{"?"},
        hit ? hit->target : std::string{},
        spec.trigger == expect_trigger::applied ? "applied" : "healed");
    }
    out.push_back(std::move(x));
  }
  return out;
}

// Every instance's control endpoint.
std::map<std::string, std::string> controls_of(const run_state& rs) {
  std::map<std::string, std::string> out;
  for (auto& n : rs.nodes)
    out[n.name] = n.control();
  return out;
}

int run_scenario(const run_options& opts, scenario& sc) {
  auto cat = catalog::load_file(sc.catalog);
  if (!cat)
    return fail(message_of(cat.error()));
  if (opts.duration)
    sc.workload.duration =
      std::chrono::milliseconds{static_cast<int64_t>(*opts.duration * 1000.0)};
  uint64_t seed = opts.seed ? *opts.seed : std::random_device{}() % 1000000;
  auto p = make_plan(sc, *cat, seed);
  if (!p)
    return fail(message_of(p.error()));
  auto mode = opts.mode.value_or(sc.mode);
  if (auto err = check_mode(sc, *p, mode))
    return fail(message_of(err));
  for (auto& line : describe(*p, sc))
    say(line);
  auto out =
    opts.out.empty()
      ? (fs::path{"harness-runs"} / fmt::format("{}-seed{}", sc.name, seed))
          .string()
      : opts.out;
  std::error_code ec;
  if (fs::exists(out) && !fs::is_empty(out, ec)) {
    if (!fs::exists(fs::path{out} / "run.json"))
      return fail(fmt::format("'{}' exists and holds no harness run; give "
                              "another --out",
                              out));
    // What a killed run there left (mounts under it first).
    clean_records({out});
    fs::remove_all(out, ec);
  }
  fs::create_directories(fs::path{out} / "history", ec);
  if (ec)
    return fail(fmt::format("cannot create '{}': {}", out, ec.message()));
  write_json((fs::path{out} / "run.json").string(),
             {{"scenario", fs::absolute(sc.file).string()},
              {"name", sc.name},
              {"seed", seed},
              {"digest", fmt::format("{:016x}", p->digest())},
              {"poison_keys", p->poison_keys},
              {"duplicates_fail", sc.checks.duplicates_fail},
              {"cross_type_fail", sc.checks.cross_type_fail},
              {"poison_redriven", sc.checks.poison_redriven},
              {"publishes_acked", sc.checks.publishes_acked},
              {"takeover_within_ms", sc.checks.takeover_within ? payload(
                                       sc.checks.takeover_within->count())
                                                               : payload{}},
              {"moves_per_restart", sc.checks.moves_per_restart
                                      ? payload(*sc.checks.moves_per_restart)
                                      : payload{}}});
  say(fmt::format("out: {}", out));

  std::vector<std::string> search = opts.path;
  search.insert(search.end(), sc.path.begin(), sc.path.end());
  if (!opts.self.empty()) {
    auto bin = fs::path{opts.self}.parent_path();
    for (auto d : {bin, bin / ".." / "examples", bin / ".." / "tests"})
      search.push_back(d.lexically_normal().string());
  }
  // Declared before the nodes: removed after they are stopped, whatever
  // happens.
  testbed bed{(fs::path{out} / "netns.record").string()};
  run_state rs{sc,     *p, out, mode, &bed, nullptr, {}, steady::now(),
               search, {}, {}};
  if (mode == run_mode::netns)
    say(fmt::format("mode netns: run id {}", bed.id()));
  if (auto err = prepare(rs, search))
    return fail(message_of(err));
  // Declared after the nodes: its poller stops before they go.
  cluster_watch watch{expectations_of(sc, *p), controls_of(rs)};
  rs.watch = &watch;
  std::vector<node_run*> late;
  for (auto& n : rs.nodes) {
    if (n.spec->start_at.count() > 0) {
      late.push_back(&n);
      continue;
    }
    if (auto err = launch(rs, n, 30s))
      return fail(message_of(err));
    say(fmt::format("started {} (pid {}), control {}", n.name, n.proc.pid(),
                    n.control()));
  }

  // The faults and the membership expectations on the run's clock, from
  // now; the workload from when its node is ready (now, unless it starts
  // late).
  auto* producer = rs.find(sc.workload.publish_to);
  if (producer == nullptr)
    producer = rs.find(sc.workload.publish_to + "-1");
  std::vector<step> steps;
  for (auto& a : p->faults) {
    if (a.kind == fault_kind::cycle)
      for (int i = 0; i < a.times; ++i)
        steps.push_back({a.at + i * a.period, &a, false, i});
    else
      steps.push_back({a.at, &a, false});
    if (!is_instant(a.kind))
      steps.push_back({a.at + a.hold, &a, true});
  }
  std::stable_sort(steps.begin(), steps.end(), [](auto& a, auto& b) {
    return a.at < b.at;
  });
  rs.t0 = steady::now();
  watch.start(rs.t0);
  publisher pub{producer->control(), *p,
                (fs::path{out} / "publishes.jsonl").string(), sc.workload.batch,
                2s};
  std::optional<steady::time_point> workload_start;
  if (producer->started) {
    workload_start = rs.t0;
    rs.workload_wall = std::chrono::system_clock::now();
    pub.start(rs.t0);
  }
  // Stops the publisher and the nodes on SIGINT or SIGTERM; `bed` then
  // removes the network and the mounts.
  auto abort_run = [&] {
    pub.stop();
    pub.join();
    heal_all(rs);
    say(fmt::format("{} interrupted: stopping the nodes, removing the run's "
                    "network and mounts",
                    rs.stamp()));
    for (auto& n : rs.nodes)
      if (n.started)
        n.proc.stop(2s);
    return 130;
  };
  size_t next = 0;
  size_t begun = 0; // faults applied (a cycle fault at its first cycle)
  auto last_progress = rs.t0;
  auto running = [&] {
    return next < steps.size() || !late.empty() || !workload_start
           || steady::now() < *workload_start + sc.workload.duration;
  };
  while (running()) {
    if (interrupted)
      return abort_run();
    auto now = steady::now();
    for (; next < steps.size() && rs.t0 + steps[next].at <= now; ++next) {
      begun += !steps[next].heal && steps[next].cycle <= 0 ? 1 : 0;
      run_step(rs, steps[next]);
    }
    for (auto it = late.begin(); it != late.end();)
      if (rs.t0 + (*it)->spec->start_at <= now) {
        auto* n = *it;
        if (auto err = launch(rs, *n, 30s))
          return fail(message_of(err));
        say(fmt::format("{} started late joiner {} (pid {})", rs.stamp(),
                        n->name, n->proc.pid()));
        if (n == producer) {
          workload_start = steady::now();
          rs.workload_wall = std::chrono::system_clock::now();
          pub.start(*workload_start);
          say(fmt::format("{} the workload starts: its node {} is ready",
                          rs.stamp(), n->name));
        }
        it = late.erase(it);
      } else {
        ++it;
      }
    if (now - last_progress >= 1s) {
      last_progress = now;
      say(fmt::format("{} published {} of {}: {} acknowledged, {} unknown, "
                      "{} refused; faults {} of {}",
                      rs.stamp(), pub.sent.load(), p->events.size(),
                      pub.acked.load(), pub.unknown.load(), pub.refused.load(),
                      begun, p->faults.size()));
    }
    std::this_thread::sleep_for(10ms);
  }
  pub.join();
  // Heal whatever is still faulty (a kill without its restart cannot be:
  // every hold ends within the workload).
  heal_all(rs);
  say(fmt::format("{} workload done: {} acknowledged, {} unknown, {} "
                  "refused; settling (at most {} ms)",
                  rs.stamp(), pub.acked.load(), pub.unknown.load(),
                  pub.refused.load(), sc.settle.count()));

  // Settle: every consumer recorded every acknowledged event it selects.
  std::vector<std::string> silent;
  auto consumers = consumers_of(rs, silent);
  auto settle_end = steady::now() + sc.settle;
  bool settled = false;
  while (steady::now() < settle_end) {
    if (interrupted)
      return abort_run();
    auto v = judge_now(rs, consumers);
    // Lost, or (checks.poison redriven) poison events not handled yet
    // after their dead letters: a redrive still under way.
    uint64_t lost = 0;
    for (auto& c : v.consumers)
      lost += c.lost + c.poison_not_redriven;
    for (auto& g : v.groups)
      lost += g.lost + g.poison_not_redriven;
    if (lost == 0 && !consumers.empty() && silent.empty()) {
      settled = true;
      break;
    }
    std::this_thread::sleep_for(250ms);
    consumers = consumers_of(rs, silent);
  }
  // Late duplicates and offset commits come in too.
  std::this_thread::sleep_for(500ms);
  say(fmt::format("{} {}; waiting for the membership expectations and "
                  "descriptor checks still pending",
                  rs.stamp(), settled ? "settled" : "did not settle in time"));
  write_json((fs::path{out} / "cluster.json").string(),
             to_json(watch.finish()));
  say(fmt::format("{} stopping the nodes", rs.stamp()));
  payload cons = payload::array();
  for (auto& c : consumers)
    cons.push_back(
      {{"node", c.node}, {"consumer", c.consumer}, {"patterns", c.patterns}});
  write_json((fs::path{out} / "consumers.json").string(), cons);
  for (auto& n : rs.nodes)
    if (n.started) {
      watch.set_state(n.name, cluster_watch::state::stopped);
      auto st = n.proc.stop(10s);
      if (st != 0)
        say(fmt::format("{} exited with status {}; see {}", n.name, st, n.err));
    }
  auto v = check_dir(out);
  if (!v)
    return fail(message_of(v.error()));
  write_json((fs::path{out} / "result.json").string(), to_json(*v));
  for (auto& line : table(*v))
    say(line);
  say(fmt::format("seed {}: reproduce with herald harness run {} --seed {}{}",
                  seed, sc.file, seed,
                  opts.duration
                    ? fmt::format(" --duration {:g}", *opts.duration)
                    : std::string{}));
  // A node that never answered has consumers nobody judged: not a pass.
  for (auto& name : silent)
    say(fmt::format("FAILED: node {} did not answer its status while "
                    "settling; its consumers are not judged (see its log)",
                    name));
  return v->ok() && silent.empty() ? 0 : 1;
}

} // namespace

int run(const run_options& opts) {
  // A SIGINT or SIGTERM stops the run: its nodes are stopped, and what it
  // made (namespaces, bridge, mounts) removed.
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  auto sc = load_scenario(opts.scenario);
  if (!sc)
    return fail(message_of(sc.error()));
  return run_scenario(opts, *sc);
}

int check(const std::string& dir) {
  auto v = check_dir(dir);
  if (!v)
    return fail(message_of(v.error()));
  write_json((fs::path{dir} / "result.json").string(), to_json(*v));
  for (auto& line : table(*v))
    say(line);
  return v->ok() ? 0 : 1;
}

int clean(const std::vector<std::string>& dirs, bool all) {
  int rc = 0;
  auto roots = dirs.empty() ? std::vector<std::string>{"harness-runs"} : dirs;
  // Mounts, namespaces and links first: data directories may be mounts.
  {
    std::vector<std::string> run_dirs;
    std::error_code ec;
    for (auto& root : roots) {
      run_dirs.push_back(root);
      for (auto& e : fs::directory_iterator{root, ec})
        run_dirs.push_back(e.path().string());
    }
    if (!clean_records(run_dirs))
      rc = 1;
  }
  for (auto& root : roots) {
    std::error_code ec;
    std::vector<fs::path> runs;
    if (fs::exists(fs::path{root} / "run.json"))
      runs.push_back(root);
    else
      for (auto& e : fs::directory_iterator{root, ec})
        if (fs::exists(e.path() / "run.json"))
          runs.push_back(e.path());
    for (auto& r : runs) {
      std::ifstream pids{(r / "pids").string()};
      pid_t pid = 0;
      std::string exe;
      while (pids >> pid >> exe) {
        // Only a process still running that command: pids are reused.
        std::ifstream cmd{fmt::format("/proc/{}/cmdline", pid)};
        std::string argv0;
        std::getline(cmd, argv0, '\0');
        if (argv0 == exe && ::kill(pid, SIGKILL) == 0)
          say(fmt::format("killed {} (pid {}) of {}", exe, pid, r.string()));
      }
      if (all) {
        fs::remove_all(r, ec);
        say(fmt::format("removed {}", r.string()));
      } else {
        for (auto& n : fs::directory_iterator{r / "nodes", ec})
          if (fs::remove_all(n.path() / "data", ec) > 0)
            say(fmt::format("removed {}", (n.path() / "data").string()));
      }
      if (ec) {
        say(fmt::format("cannot clean {}: {}", r.string(), ec.message()));
        rc = 1;
      }
    }
  }
  return rc;
}

} // namespace herald::harness
