#pragma once

/// A harness scenario, read from YAML (format in docs/harness.md): the
/// nodes to launch and their config templates, the workload, the faults,
/// and the checks.
///
/// Errors name the file, the line and the key: `consumer-kill.yaml:12:
/// faults[0]: 'kill': node 'mail' is not among the nodes (user, email)`.
/// Every problem of a file is listed at once.
///
/// Thread safety: a scenario is a plain value.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "herald/runtime/control.hpp"

namespace herald::harness {

using std::chrono::milliseconds;

/// One kind of node, launched `count` times.
struct node_spec {
  /// Its name; instances are named `NAME` (count 1) or `NAME-1`..`NAME-N`.
  std::string name;
  /// The command, a template; its first word is an executable, looked up
  /// (without a slash) in the harness' search path.
  std::vector<std::string> command;
  /// The node's config, a template (see `render`).
  std::string config;
  /// Instances. Default: 1.
  int count = 1;
  /// Loopback mode: the address it binds to (`{{host}}`). Default:
  /// 127.0.0.1. Netns mode: the label of the host (network namespace) its
  /// instances run on, whose private address `{{host}}` becomes; default:
  /// each instance its own host, named after it.
  std::string host;
  /// When it starts, on the run's clock (from when the nodes that start
  /// at once are ready): a late joiner, or a producer that joins after its
  /// consumers (`start_at`, or its older spelling `start_after`).
  /// Default: 0, with the others.
  milliseconds start_at{0};
  /// Line of its entry in the file.
  int line = 0;
};

/// The slow entities of the workload: their handling waits `delay`.
struct slow_spec {
  size_t entities = 0;
  milliseconds delay{200};
};

/// What the harness publishes.
struct workload_spec {
  /// The node whose control endpoint takes the publishes (its first
  /// instance). REQUIRES: a node name.
  std::string publish_to;
  /// Event types, chosen uniformly per event. REQUIRES: in the catalog,
  /// produced by that node's service.
  std::vector<std::string> types;
  /// Distinct entity keys, chosen uniformly per event. Default: 20.
  size_t entities = 20;
  /// Events per second. Default: 100.
  double rate = 100;
  /// How long the workload runs. Default: 10 s.
  milliseconds duration{10000};
  /// Entities whose every event is poison: their handling fails
  /// (`{{fail_keys}}`). Default: 0.
  size_t poison = 0;
  /// Entities whose handling is slow (`{{slow_keys}}`). Default: none.
  slow_spec slow;
  /// Most events per publish request. Default: 64.
  size_t batch = 64;
};

/// What a fault does. `partition` needs the netns mode; `disk_full`
/// needs root (it mounts a tmpfs); `clock` needs libfaketime. `cycle`
/// (join/leave cycles), `wipe` (kill -9 and the loss of the data
/// directory), `hooks` (test hooks set at run time) and `run` (a command
/// run at that time, e.g. `herald dlq redrive`) are timed faults only,
/// never random ones.
enum class fault_kind {
  kill,
  pause,
  slow,
  partition,
  disk_full,
  clock,
  cycle,
  wipe,
  hooks,
  run
};

/// The spelling of `k` in a scenario: kill, pause, slow, partition,
/// disk_full, clock, cycle, wipe, hooks or run.
std::string_view to_string(fault_kind k);

/// Whether a fault of kind `k` takes no time: `hooks` and `run` are done
/// at their `at` (a `run` waits for its command), have no heal, and may
/// come after the workload's end.
bool is_instant(fault_kind k);

/// How a run places its nodes.
enum class run_mode {
  /// Every node on the loopback interface (or its `host` address).
  loopback,
  /// One network namespace per host, on a bridge made for the run.
  netns,
};

/// `loopback` or `netns`, else nothing.
std::optional<run_mode> parse_mode(std::string_view text);

/// Whether a fault of kind `k` needs the netns mode (partition does: it
/// drops traffic between hosts, and loopback has one host).
bool needs_netns(fault_kind k);

/// One timed fault.
struct fault_spec {
  fault_kind kind = fault_kind::kill;
  /// A node name (one of its instances is chosen from the seed) or an
  /// instance name. partition: the first of `group`.
  std::string target;
  /// partition: the node or instance names whose hosts are cut from the
  /// others (a node name: all its instances).
  std::vector<std::string> group;
  /// partition: only what the others send to `group` is dropped.
  /// Default: false (both ways).
  bool one_way = false;
  /// clock: the jump of the node's wall clock (negative: back). Default:
  /// +1 h.
  milliseconds jump{3600000};
  /// When, from the workload's start.
  milliseconds at{0};
  /// kill: the restart comes this much later; pause: SIGCONT this much
  /// later; slow: the slow keys are restored this much later; cycle:
  /// `times` × `period`.
  milliseconds hold{1000};
  /// cycle: how many times the node is stopped (SIGTERM: a graceful
  /// leave) and started again, one cycle every `period` (or at once after
  /// the previous one when a cycle takes longer). Default: 10, 1 s.
  int times = 10;
  milliseconds period{1000};
  /// cycle: after the last cycle, how long the other nodes' descriptors
  /// may take to return to what they had before the first (libzmq closes
  /// sockets asynchronously). Default: 15 s.
  milliseconds fds_within{15000};
  /// cycle: regular files the other nodes may hold beyond what they held
  /// before (RocksDB opens table files as it flushes); sockets, pipes,
  /// eventfds and epoll instances get none. Default: 16.
  int fd_slack = 16;
  /// slow: how long each handling of its keys waits. Default: 200 ms.
  milliseconds delay{200};
  /// slow: how many entity keys it slows. Default: a quarter of them.
  size_t keys = 0;
  /// hooks: the fail keys to set (`fail_keys: none` clears them,
  /// `fail_keys: poison` gives the workload's poison keys, a list gives
  /// those keys); unset: left as they are.
  std::optional<std::vector<std::string>> fail_keys;
  bool fail_keys_poison = false;
  /// hooks: the slow keys to set, key -> wait (`slow_keys: none` clears
  /// them, `slow_keys: slow` gives the workload's slow keys and delay, a
  /// map like {KEY: 200ms} gives those); unset: left as they are.
  std::optional<std::vector<std::pair<std::string, milliseconds>>> slow_keys;
  bool slow_keys_workload = false;
  /// run: the command, a template (`{{endpoint:NODE:PORT}}`,
  /// `{{catalog}}`, `{{run_dir}}`, `{{time:+5s}}`: RFC 3339 UTC, that
  /// long after the workload's start); its first word is looked up like a
  /// node's command (`herald` is the harness' own executable).
  std::vector<std::string> argv;
  /// run: the exit status it must end with. Default: 0.
  int expect_exit = 0;
  /// run: a regular expression (ECMAScript) its stdout must contain
  /// somewhere; unset: any output.
  std::optional<std::string> expect_output;
  /// run: a regular expression its stdout must not contain (e.g. a
  /// redrive repeated until it redrove nothing: `[0-9]+ dead letters?
  /// redriven`); unset: none.
  std::optional<std::string> reject_output;
  /// run: the longest it may take; killed then, and a failure. With
  /// `retry`, the time within which one run must meet the expectations.
  /// Default: 10 s.
  milliseconds within{10000};
  /// run: run it again (every 500 ms) until one run meets `expect_exit`
  /// and `expect_output`, within `within`. Default: false (one run).
  bool retry = false;
  /// run: the command moves consumers' offsets back (`herald group
  /// reset-offsets`): what they handle again after it ran is a replay,
  /// not a duplicate outside a handoff window; when the command has a
  /// `{{time:..}}`, every event published at or after the first such
  /// time must be handled again after it, in order. Default: false.
  bool rewinds = false;
  int line = 0;
};

/// Faults drawn from the seed during the workload.
struct random_spec {
  /// Faults per second on average; 0: none. Default: 0.
  double rate = 0;
  /// Which kinds, chosen uniformly. Default: kill, pause.
  std::vector<fault_kind> kinds{fault_kind::kill, fault_kind::pause};
  /// At least this long between two faults, and from one fault's heal to
  /// the next fault. Default: 2 s.
  milliseconds min_gap{2000};
  /// Targets (node or instance names). Default: every node but
  /// `workload.publish_to`.
  std::vector<std::string> nodes;
  /// Holds, as in `fault_spec`. Defaults: 1 s, 1 s, 2 s.
  milliseconds restart_after{1000};
  milliseconds pause_for{1000};
  milliseconds slow_for{2000};
  milliseconds slow_delay{200};
  /// Holds of partition, disk_full and clock faults. Defaults: 2 s each.
  milliseconds partition_for{2000};
  milliseconds disk_full_for{2000};
  milliseconds clock_for{2000};
  /// clock: the largest jump; each is drawn in [-clock_jump, clock_jump].
  /// Default: 1 h.
  milliseconds clock_jump{3600000};
};

/// When a membership expectation starts: a time on the run's clock, or
/// when a timed fault was applied or healed.
enum class expect_trigger { at, applied, healed };

/// What a membership expectation wants of the views.
enum class expect_kind {
  /// Every observer sees `count` members of a status in `status`.
  members,
  /// Every observer (but the member itself) sees `member` in a status in
  /// `status`, with the incarnation and stream asked.
  member,
  /// Every observer sees the same members (name, stream, incarnation),
  /// all `up`, and they are exactly the running nodes.
  one_view,
};

/// How a member's incarnation or stream compares with what it was just
/// before the expectation's fault was applied.
enum class compare { any, same, higher, other };

/// An expectation on the cluster's membership, polled through the
/// `members` control op of every running node (see docs/harness.md).
struct membership_spec {
  /// Names it in the output and `result.json`. Default: `membership[I]`.
  std::string name;
  expect_trigger trigger = expect_trigger::at;
  /// trigger `at`: when, on the run's clock.
  milliseconds at{0};
  /// trigger `applied` / `healed`: the index of the fault in `faults`.
  size_t fault = 0;
  /// The deadline, from the trigger. REQUIRES: > 0.
  milliseconds within{0};
  expect_kind kind = expect_kind::members;
  /// members: how many. REQUIRES: >= 1.
  size_t count = 0;
  /// member: the instance whose record is judged; empty: the target of
  /// the expectation's fault.
  std::string member;
  /// members, member: the statuses accepted. Default: up.
  std::vector<control::member_status> status{control::member_status::up};
  /// member: its incarnation and stream against those it had just before
  /// the fault (needs trigger `applied` or `healed`). Default: any.
  compare incarnation = compare::any;
  compare stream = compare::any;
  /// Whose views count (node or instance names). Default: every running
  /// node (but, for `member`, the member itself).
  std::vector<std::string> seen_by;
  int line = 0;
};

/// Which checks fail the run, beyond those that always do (lost events,
/// inversions within a type, unexpected dead letters).
struct checks_spec {
  /// Duplicates fail the run. Default: false (counted, at-least-once).
  bool duplicates_fail = false;
  /// Order inversions across the types of one key fail the run. Default:
  /// false (reported: the documented limit).
  bool cross_type_fail = false;
  /// What must become of the poison events (`checks: {poison: ...}`).
  /// `dead_letter` (the default): each ends as a dead letter, and none is
  /// handled. `redriven`: each that was dead-lettered is handled exactly
  /// once after its last dead letter (a redrive, once the handler was
  /// fixed by a `hooks` fault), in publish order per (stream, key, type);
  /// one handled without a dead letter is fine only when its handling
  /// began after a `hooks` fault that cleared the fail keys was applied;
  /// one never handled is
  /// `poison_not_redriven`, a failure.
  bool poison_redriven = false;
  /// Every publish must be acknowledged (`checks: {publishes: acked}`):
  /// an unknown outcome or a refusal fails the run. Default: false
  /// (`any`: counted only).
  bool publishes_acked = false;
  /// The longest a consumer group may take to handle again, under a newer
  /// lease epoch, a partition a killed member held: from the kill to the
  /// first record (`checks: {takeover: {within: 7s}}`). Default: none
  /// (measured and reported only).
  std::optional<milliseconds> takeover_within;
  /// The most times one partition of a consumer group may move (change
  /// the member holding it) in one restart's window: from a `cycle`
  /// fault's stop of a member to the next such stop, or the end
  /// (`checks: {moves: {per_restart: 1}}`). Default: none (moves
  /// measured and reported only).
  std::optional<uint64_t> moves_per_restart;
};

struct scenario {
  std::string name;
  /// The file and its folder (relative paths in it are relative to it).
  std::string file;
  std::string dir;
  /// The catalog (absolute once loaded).
  std::string catalog;
  /// Extra folders where commands are looked up.
  std::vector<std::string> path;
  std::vector<node_spec> nodes;
  workload_spec workload;
  std::vector<fault_spec> faults;
  random_spec random;
  std::vector<membership_spec> membership;
  checks_spec checks;
  /// Longest wait, after the workload and the heal, for every consumer to
  /// have handled what it should. Default: 30 s.
  milliseconds settle{30000};
  /// The mode the scenario asks for (`mode:`); `--mode` overrides it.
  /// Default: loopback.
  run_mode mode = run_mode::loopback;
  /// The size of the tmpfs each disk_full target's data directory is
  /// on, in bytes (`disk_size:` in MiB). Default: 64 MiB.
  uint64_t disk_size = 64ull << 20;

  /// The node named `name`, or null.
  const node_spec* find(std::string_view name) const;
};

/// Parses scenario YAML; `file` names it in errors and resolves relative
/// paths. Fails with `errc::invalid_config` listing every problem as
/// `FILE:LINE: KEY: what is wrong; what to do`.
caf::expected<scenario> parse_scenario(std::string_view yaml,
                                       const std::string& file);

/// Reads and parses the scenario file `path`; fails with `errc::io_error`
/// naming it when it cannot be read.
caf::expected<scenario> load_scenario(const std::string& path);

} // namespace herald::harness
