#pragma once

/// Watching the cluster while a run goes on: the scenario's membership
/// expectations, polled through the `members` control op of every running
/// node, and the descriptors of the nodes that stay up while another one
/// joins and leaves (`cycle` faults).
///
/// An expectation starts at its trigger (a time on the run's clock, or
/// when its fault was applied or healed) and is polled every
/// `poll_interval` until it is met or its deadline (`within` after the
/// trigger) passed. For `members` and `member` expectations each observer
/// counts once its view was right at one poll (so a passing state such as
/// `suspect` is seen by every observer even if not at the same instant);
/// the expectation is met when every observer running at a poll has been
/// right. `one_view` needs every view of one poll to agree. A view taken
/// after the deadline does not count.
///
/// Descriptors: before a `cycle` fault's first stop the watch counts every
/// other running node's descriptors (the baseline), samples them at every
/// poll while the cycles go on (the peak), and after the last start polls
/// them until each node is back to its baseline (see `returned`) and stays
/// so for a second (the cycled node has rewired itself by then, so a leak
/// cannot hide behind the connections it has not yet remade), or
/// `fds_within` passed.
///
/// Thread safety: `cluster_watch` polls on a thread of its own (its own
/// control clients live there); its other functions are called from the
/// harness' main thread and share state with the poller under one mutex.

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "descriptors.hpp"
#include "herald/core/event.hpp"
#include "herald/runtime/control.hpp"
#include "scenario.hpp"

namespace herald::harness {

using steady = std::chrono::steady_clock;

/// One node's view of the cluster, as one poll got it.
struct member_view {
  /// The instance asked.
  std::string observer;
  /// Whether it answered; `error` says why not.
  bool answered = false;
  std::string error;
  /// Its own member name, and every member it knows.
  std::string self;
  std::vector<control::member_entry> members;
  /// When the answer came.
  steady::time_point at;
};

/// What a member was just before a fault: as it saw itself, else the
/// highest incarnation another node gave it.
struct member_before {
  uint64_t incarnation = 0;
  std::string stream;
};

/// Asks the control endpoint `control` for its view (`members`), waiting at
/// most `timeout`. Never fails: a node that does not answer gives a view
/// with `answered` false and the reason.
member_view ask_view(const std::string& observer, const std::string& control,
                     std::chrono::milliseconds timeout);

/// A view in one line, members by name: `analytics up i1, email down i3
/// (heard 3200 ms ago), user up i1`; or why it has none.
std::string describe(const member_view& v);

/// The view as JSON: `{observer, answered, error?, self, members: [{name,
/// status, incarnation, stream, last_heard_ms}]}`.
payload to_json(const member_view& v);

/// Why `v` does not satisfy a `members` or `member` expectation `e` (empty
/// when it does). `member` is the judged member's name; `before` what it
/// was before the fault (needed when `e` compares incarnation or stream).
std::string judge_view(const membership_spec& e, const member_view& v,
                       const std::string& member,
                       const std::optional<member_before>& before);

/// Why the views of one poll are not one view (empty when they are):
/// every view lists the same members (name, stream, incarnation), each
/// `up`, and those are exactly the observers. `wrong` gets the observer
/// whose view is wrong.
std::string judge_one_view(const std::vector<member_view>& views,
                           std::string& wrong);

/// What a member was before a fault, from views taken then: its own
/// record, else the highest incarnation among the others'.
std::optional<member_before> before_of(const std::vector<member_view>& views,
                                       const std::string& member);

/// A membership expectation as a run resolves it.
struct expectation {
  membership_spec spec;
  /// member: the instance judged (the fault's target when the spec names
  /// none).
  std::string member;
  /// Instances whose views count; empty: every running one.
  std::vector<std::string> seen_by;
  /// The trigger, for the reader: `at 0 ms`, `fault 0 (kill email)
  /// applied`.
  std::string trigger;
};

/// How an expectation ended.
struct expectation_result {
  std::string name;
  int line = 0;
  /// What it wants, in words.
  std::string what;
  std::string trigger;
  bool triggered = false;
  /// When it triggered and when it was met, on the run's clock (ms).
  int64_t triggered_at_ms = 0;
  int64_t within_ms = 0;
  bool met = false;
  /// From the trigger to the last view it needed.
  std::optional<int64_t> met_after_ms;
  int polls = 0;
  /// When not met: the node whose view was wrong, why, and that view.
  std::string wrong_node;
  std::string why;
  std::optional<member_view> view;
};

/// How the descriptors of the nodes that stayed up fared over a `cycle`
/// fault.
struct node_fds {
  std::string node;
  pid_t pid = 0;
  fd_counts before, peak, after;
  bool returned = false;
  /// From the last cycle's end until it was back.
  std::optional<int64_t> returned_after_ms;
  /// Why it was not compared (another fault restarted it meanwhile).
  std::string note;
};

struct cycles_result {
  /// The fault's index in `scenario::faults`, and the node cycled.
  int fault = 0;
  std::string target;
  int times = 0;
  /// Cycles done, and those whose stop did not end with exit status 0
  /// (a graceful leave exits 0).
  int done = 0;
  int unclean_exits = 0;
  /// Wall time of the cycles, first stop to last start (ms).
  int64_t took_ms = 0;
  int64_t fds_within_ms = 0;
  int fd_slack = 0;
  std::vector<node_fds> nodes;
  /// Why it failed, one sentence each; empty when it passed.
  std::vector<std::string> failures;
  bool finished = false;
};

/// The results of a run's watch, as `cluster.json` holds them.
struct watch_results {
  std::vector<expectation_result> membership;
  std::vector<cycles_result> cycles;

  /// One sentence per failure: the expectation (with the node whose view
  /// was wrong and that view) or the cycle fault.
  std::vector<std::string> failures() const;
};

/// The results as `cluster.json` holds them: `{membership: [...],
/// cycles: [...], failures: [str]}`.
payload to_json(const watch_results& r);

class cluster_watch {
public:
  /// Watches `expectations` over the instances `nodes` (name → control
  /// endpoint), polling every `poll_interval`, asking each node with
  /// `timeout`.
  cluster_watch(
    std::vector<expectation> expectations,
    std::map<std::string, std::string> nodes,
    std::chrono::milliseconds poll_interval = std::chrono::milliseconds{200},
    std::chrono::milliseconds timeout = std::chrono::seconds{1});
  ~cluster_watch();
  cluster_watch(const cluster_watch&) = delete;
  cluster_watch& operator=(const cluster_watch&) = delete;

  /// Starts polling; `t0` is the start of the run's clock (`at` triggers
  /// are from it).
  void start(steady::time_point t0);

  /// A node's state: running (answers, judged), paused or stopped (not
  /// asked, not judged).
  enum class state { stopped, running, paused };
  void set_state(const std::string& node, state s, pid_t pid = 0);

  /// Whether an expectation compares with the state before fault `spec`:
  /// then call `before_fault` just before applying it.
  bool wants_before(int spec) const;

  /// Takes the views of every running node (from the calling thread) as
  /// the state before fault `spec`.
  void before_fault(int spec);

  /// Fault `spec` (index in `scenario::faults`) was applied or healed.
  void fault_applied(int spec);
  void fault_healed(int spec);

  /// A `cycle` fault of `spec` on `target` begins: counts every other
  /// running node's descriptors as the baseline.
  void cycles_begin(int spec, const std::string& target, int times,
                    std::chrono::milliseconds fds_within, int fd_slack);
  /// One cycle of `spec` ended: `exit_status` of the stop (0 for a
  /// graceful leave); counts the others' descriptors into their peaks.
  void cycle_done(int spec, int exit_status);
  /// The last cycle of `spec` ended (the node started again, or not:
  /// `error` says why): the descriptors are polled until they returned.
  void cycles_end(int spec, std::string error = {});

  /// Waits until every expectation and descriptor check is resolved (a
  /// pending one at most until its deadline), stops polling, and returns
  /// the results. Expectations never triggered fail, saying so.
  watch_results finish();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace herald::harness
