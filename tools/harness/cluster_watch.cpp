#include "cluster_watch.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "herald/core/errc.hpp"
#include "herald/runtime/control_client.hpp"

namespace herald::harness {

using std::chrono::milliseconds;

namespace {

int64_t ms_between(steady::time_point from, steady::time_point to) {
  return std::chrono::duration_cast<milliseconds>(to - from).count();
}

// Asks nodes for their views, keeping one client per node across polls
// (a restarted node is reached again on the same endpoint).
class view_asker {
public:
  explicit view_asker(milliseconds timeout) : timeout_(timeout) {}

  member_view ask(const std::string& observer, const std::string& control) {
    member_view v;
    v.observer = observer;
    auto it = clients_.find(observer);
    if (it == clients_.end()) {
      control_client_options opts;
      opts.timeout = timeout_;
      auto c = control_client::connect(control, opts);
      if (!c) {
        v.at = steady::now();
        v.error = message_of(c.error());
        return v;
      }
      it = clients_.emplace(observer, std::move(*c)).first;
    }
    auto reply = it->second.call(control::members_request{});
    v.at = steady::now();
    if (!reply) {
      v.error = message_of(reply.error());
      return v;
    }
    v.answered = true;
    v.self = std::move(reply->self);
    v.members = std::move(reply->members);
    return v;
  }

private:
  milliseconds timeout_;
  std::map<std::string, control_client> clients_;
};

std::string statuses(const std::vector<control::member_status>& list) {
  std::vector<std::string_view> words;
  for (auto s : list)
    words.push_back(control::to_string(s));
  return fmt::format("{}", fmt::join(words, " or "));
}

bool accepted(const membership_spec& e, control::member_status s) {
  return std::find(e.status.begin(), e.status.end(), s) != e.status.end();
}

const control::member_entry* entry_of(const member_view& v,
                                      const std::string& name) {
  for (auto& m : v.members)
    if (m.member.name == name)
      return &m;
  return nullptr;
}

std::string short_stream(const std::string& s) {
  return s.size() > 8 ? s.substr(0, 8) + "..." : s;
}

} // namespace

member_view ask_view(const std::string& observer, const std::string& control,
                     milliseconds timeout) {
  return view_asker{timeout}.ask(observer, control);
}

std::string describe(const member_view& v) {
  if (!v.answered)
    return fmt::format("no answer ({})", v.error);
  std::vector<std::string> parts;
  for (auto& e : v.members) {
    auto& m = e.member;
    auto part = fmt::format("{} {} i{}", m.name, control::to_string(m.status),
                            m.incarnation);
    if (m.name != v.self && e.last_heard_ms)
      part += fmt::format(" (heard {} ms ago)", *e.last_heard_ms);
    else if (m.name != v.self)
      part += " (never heard)";
    parts.push_back(std::move(part));
  }
  if (parts.empty())
    return "no member";
  return fmt::format("{}", fmt::join(parts, ", "));
}

payload to_json(const member_view& v) {
  payload members = payload::array();
  for (auto& e : v.members) {
    payload m{{"name", e.member.name},
              {"status", control::to_string(e.member.status)},
              {"incarnation", e.member.incarnation},
              {"stream", e.member.stream}};
    if (e.last_heard_ms)
      m["last_heard_ms"] = *e.last_heard_ms;
    members.push_back(std::move(m));
  }
  payload j{{"observer", v.observer},
            {"answered", v.answered},
            {"self", v.self},
            {"members", std::move(members)}};
  if (!v.answered)
    j["error"] = v.error;
  return j;
}

std::string judge_view(const membership_spec& e, const member_view& v,
                       const std::string& member,
                       const std::optional<member_before>& before) {
  if (!v.answered)
    return fmt::format("did not answer: {}", v.error);
  if (e.kind == expect_kind::members) {
    size_t n = 0;
    for (auto& m : v.members)
      n += accepted(e, m.member.status) ? 1 : 0;
    if (n == e.count)
      return {};
    return fmt::format("sees {} member(s) {}, not {}", n, statuses(e.status),
                       e.count);
  }
  auto* m = entry_of(v, member);
  if (m == nullptr)
    return fmt::format("does not know {}", member);
  auto& r = m->member;
  if (!accepted(e, r.status))
    return fmt::format("sees {} {} (incarnation {}), not {}", member,
                       control::to_string(r.status), r.incarnation,
                       statuses(e.status));
  bool compares = e.incarnation != compare::any || e.stream != compare::any;
  if (compares && !before)
    return fmt::format("cannot compare: what {} was before fault {} is "
                       "unknown (no node answered then)",
                       member, e.fault);
  if (e.incarnation == compare::higher && r.incarnation <= before->incarnation)
    return fmt::format("sees {} at incarnation {}, not above {} (before "
                       "fault {})",
                       member, r.incarnation, before->incarnation, e.fault);
  if (e.incarnation == compare::same && r.incarnation != before->incarnation)
    return fmt::format("sees {} at incarnation {}, not {} (before fault {})",
                       member, r.incarnation, before->incarnation, e.fault);
  if (e.stream == compare::same && r.stream != before->stream)
    return fmt::format("sees {} with stream {}, not {} (before fault {})",
                       member, r.stream, before->stream, e.fault);
  if (e.stream == compare::other && r.stream == before->stream)
    return fmt::format("sees {} with the stream it had before fault {} ({})",
                       member, e.fault, r.stream);
  return {};
}

std::string judge_one_view(const std::vector<member_view>& views,
                           std::string& wrong) {
  if (views.empty())
    return "no running node to ask";
  for (auto& v : views)
    if (!v.answered) {
      wrong = v.observer;
      return fmt::format("did not answer: {}", v.error);
    }
  std::set<std::string> running;
  for (auto& v : views)
    running.insert(v.self);
  auto& first = views.front();
  for (auto& v : views) {
    wrong = v.observer;
    std::set<std::string> known;
    for (auto& e : v.members) {
      known.insert(e.member.name);
      if (e.member.status != control::member_status::up)
        return fmt::format("sees {} {} (incarnation {})", e.member.name,
                           control::to_string(e.member.status),
                           e.member.incarnation);
    }
    if (known != running)
      return fmt::format("knows [{}]; the running nodes are [{}]",
                         fmt::join(known, ", "), fmt::join(running, ", "));
    for (auto& e : v.members) {
      auto* other = entry_of(first, e.member.name);
      if (other == nullptr)
        continue; // both know the running nodes: not reached
      if (other->member.incarnation != e.member.incarnation
          || other->member.stream != e.member.stream)
        return fmt::format(
          "sees {} at incarnation {} (stream {}); {} sees it at {} (stream "
          "{})",
          e.member.name, e.member.incarnation, short_stream(e.member.stream),
          first.observer, other->member.incarnation,
          short_stream(other->member.stream));
    }
  }
  wrong.clear();
  return {};
}

std::optional<member_before> before_of(const std::vector<member_view>& views,
                                       const std::string& member) {
  std::optional<member_before> best;
  for (auto& v : views) {
    auto* m = v.answered ? entry_of(v, member) : nullptr;
    if (m == nullptr)
      continue;
    member_before b{m->member.incarnation, m->member.stream};
    if (v.self == member)
      return b; // its own word
    if (!best || b.incarnation > best->incarnation)
      best = b;
  }
  return best;
}

std::vector<std::string> watch_results::failures() const {
  std::vector<std::string> out;
  for (auto& r : membership) {
    if (r.met)
      continue;
    if (!r.triggered) {
      out.push_back(fmt::format("membership '{}' (line {}): never checked: "
                                "its trigger ({}) did not happen",
                                r.name, r.line, r.trigger));
      continue;
    }
    out.push_back(fmt::format(
      "membership '{}' (line {}) not met within {} ms of {} ({}): {}{}{}",
      r.name, r.line, r.within_ms, r.trigger, r.what,
      r.wrong_node.empty() ? std::string{} : r.wrong_node + " ", r.why,
      r.view ? fmt::format("; its view: {}", describe(*r.view))
             : std::string{}));
  }
  for (auto& c : cycles)
    for (auto& f : c.failures)
      out.push_back(
        fmt::format("cycle of {} (fault {}): {}", c.target, c.fault, f));
  return out;
}

payload to_json(const watch_results& r) {
  payload membership = payload::array();
  for (auto& m : r.membership) {
    payload j{{"name", m.name},
              {"line", m.line},
              {"what", m.what},
              {"trigger", m.trigger},
              {"triggered", m.triggered},
              {"within_ms", m.within_ms},
              {"met", m.met},
              {"polls", m.polls}};
    if (m.triggered)
      j["triggered_at_ms"] = m.triggered_at_ms;
    if (m.met_after_ms)
      j["met_after_ms"] = *m.met_after_ms;
    if (!m.met && m.triggered) {
      j["wrong_node"] = m.wrong_node;
      j["why"] = m.why;
      if (m.view)
        j["view"] = to_json(*m.view);
    }
    membership.push_back(std::move(j));
  }
  payload cycles = payload::array();
  for (auto& c : r.cycles) {
    payload nodes = payload::array();
    for (auto& n : c.nodes) {
      payload j{{"node", n.node},
                {"pid", n.pid},
                {"before", to_json(n.before)},
                {"peak", to_json(n.peak)},
                {"after", to_json(n.after)},
                {"returned", n.returned}};
      if (n.returned_after_ms)
        j["returned_after_ms"] = *n.returned_after_ms;
      if (!n.note.empty())
        j["note"] = n.note;
      nodes.push_back(std::move(j));
    }
    cycles.push_back({{"fault", c.fault},
                      {"target", c.target},
                      {"times", c.times},
                      {"done", c.done},
                      {"unclean_exits", c.unclean_exits},
                      {"took_ms", c.took_ms},
                      {"fds_within_ms", c.fds_within_ms},
                      {"fd_slack", c.fd_slack},
                      {"nodes", std::move(nodes)},
                      {"failures", c.failures},
                      {"ok", c.failures.empty()}});
  }
  auto failures = r.failures();
  return {{"version", 1},
          {"ok", failures.empty()},
          {"membership", std::move(membership)},
          {"cycles", std::move(cycles)},
          {"failures", std::move(failures)}};
}

// --- the watch ------------------------------------------------------------

namespace {

std::string what_of(const expectation& x) {
  auto& e = x.spec;
  switch (e.kind) {
  case expect_kind::members:
    return fmt::format("every running node sees {} member(s) {}", e.count,
                       statuses(e.status));
  case expect_kind::member: {
    std::vector<std::string> also;
    if (e.incarnation == compare::higher)
      also.push_back("a higher incarnation");
    if (e.incarnation == compare::same)
      also.push_back("the same incarnation");
    if (e.stream == compare::same)
      also.push_back("the same stream");
    if (e.stream == compare::other)
      also.push_back("another stream");
    return fmt::format(
      "every other running node sees {} {}{}", x.member, statuses(e.status),
      also.empty() ? std::string{}
                   : fmt::format(" with {} than before fault {}",
                                 fmt::join(also, " and "), e.fault));
  }
  case expect_kind::one_view:
    return "one view: every running node sees the same members, all up";
  }
  return {};
}

} // namespace

struct cluster_watch::impl {
  struct node_entry {
    std::string control;
    state st = state::stopped;
    pid_t pid = 0;
    /// Its member name, once it answered.
    std::string self;
  };

  struct pending {
    expectation x;
    expectation_result r;
    std::optional<steady::time_point> trigger_at;
    /// Observers whose view was right, and when.
    std::map<std::string, steady::time_point> latched;
    /// Each observer's last wrong view, and why.
    std::map<std::string, std::pair<std::string, member_view>> last_wrong;
    bool resolved = false;
  };

  struct cycle_state {
    cycles_result r;
    std::string error;
    steady::time_point begun, ended, deadline;
    /// Between the first cycle and the last: peaks are sampled.
    bool cycling = true;
    /// After the last cycle: polled until back.
    bool polling = false;
    /// Since when each node's descriptors are back, poll after poll.
    std::map<std::string, steady::time_point> back_since;
  };

  /// How long descriptors must stay back: the cycled node reconnects
  /// within a few hundred milliseconds of its last start, and a leak
  /// shows once it has.
  static constexpr milliseconds stable_for{1000};

  // Counts the descriptors of `n` into its `after` and `peak`; false when
  // it cannot be compared (restarted by another fault, or gone).
  bool sample(node_fds& n) {
    auto it = nodes.find(n.node);
    if (it == nodes.end() || it->second.pid != n.pid) {
      n.note = "restarted meanwhile (by another fault): not compared";
      return false;
    }
    auto counts = count_fds(n.pid);
    if (!counts)
      return false;
    n.after = *counts;
    n.peak = max_of(n.peak, *counts);
    return true;
  }

  milliseconds poll;
  milliseconds timeout;
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<pending> exps;
  std::map<std::string, node_entry> nodes;
  std::map<int, std::vector<member_view>> before_views;
  std::vector<cycle_state> cycles;
  steady::time_point t0;
  bool stop = false;
  std::thread thread;

  std::string name_of(const std::string& instance) const {
    auto it = nodes.find(instance);
    return it != nodes.end() && !it->second.self.empty() ? it->second.self
                                                         : instance;
  }

  void trigger(int spec, expect_trigger t) {
    std::lock_guard<std::mutex> guard{mtx};
    auto now = steady::now();
    for (auto& p : exps)
      if (p.x.spec.trigger == t && static_cast<int>(p.x.spec.fault) == spec
          && !p.trigger_at) {
        p.trigger_at = now;
        p.r.triggered = true;
        p.r.triggered_at_ms = ms_between(t0, now);
      }
    cv.notify_all();
  }

  // The observers of `p` now: running nodes, `seen_by` when given, the
  // judged member excluded.
  std::vector<std::string> observers(const pending& p) const {
    std::vector<std::string> out;
    for (auto& [name, n] : nodes) {
      if (n.st != state::running)
        continue;
      if (!p.x.seen_by.empty()
          && std::find(p.x.seen_by.begin(), p.x.seen_by.end(), name)
               == p.x.seen_by.end())
        continue;
      if (p.x.spec.kind == expect_kind::member && name == p.x.member)
        continue;
      out.push_back(name);
    }
    return out;
  }

  void resolve_failed(pending& p, const std::vector<std::string>& obs) {
    p.resolved = true;
    p.r.met = false;
    for (auto& o : obs) {
      if (p.latched.count(o) > 0)
        continue;
      p.r.wrong_node = o;
      if (auto it = p.last_wrong.find(o); it != p.last_wrong.end()) {
        p.r.why = it->second.first;
        p.r.view = it->second.second;
      } else {
        p.r.why = "was never asked in time (it was not running, or the "
                  "polls did not reach it)";
      }
      return;
    }
    if (obs.empty())
      p.r.why = "no running node to ask";
  }

  // Judges `p` on the views of one poll, ended at `now`.
  void judge(pending& p, const std::map<std::string, member_view>& views,
             steady::time_point now) {
    auto deadline = *p.trigger_at + p.x.spec.within;
    auto obs = observers(p);
    ++p.r.polls;
    if (p.x.spec.kind == expect_kind::one_view) {
      std::vector<member_view> vs;
      for (auto& o : obs)
        if (auto it = views.find(o); it != views.end()
                                     && it->second.at >= *p.trigger_at
                                     && it->second.at <= deadline)
          vs.push_back(it->second);
      std::string wrong;
      auto why = judge_one_view(vs, wrong);
      if (why.empty() && vs.size() == obs.size()) {
        steady::time_point last = *p.trigger_at;
        for (auto& v : vs)
          last = std::max(last, v.at);
        p.resolved = true;
        p.r.met = true;
        p.r.met_after_ms = ms_between(*p.trigger_at, last);
        return;
      }
      // The last wrong view seen (a poll with no view in time has none).
      for (auto& v : vs)
        if (!why.empty() && v.observer == wrong) {
          p.last_wrong.clear();
          p.last_wrong[wrong] = {why, v};
        }
      if (now > deadline) {
        p.resolved = true;
        if (auto it = p.last_wrong.begin(); it != p.last_wrong.end()) {
          p.r.wrong_node = it->first;
          p.r.why = it->second.first;
          p.r.view = it->second.second;
        } else {
          p.r.why = obs.empty() ? "no running node to ask"
                                : "no poll reached every running node in time";
        }
      }
      return;
    }
    std::optional<member_before> before;
    auto member = name_of(p.x.member);
    if (auto it = before_views.find(static_cast<int>(p.x.spec.fault));
        it != before_views.end())
      before = before_of(it->second, member);
    for (auto& o : obs) {
      auto it = views.find(o);
      if (it == views.end() || p.latched.count(o) > 0
          || it->second.at < *p.trigger_at || it->second.at > deadline)
        continue;
      auto why = judge_view(p.x.spec, it->second, member, before);
      if (why.empty())
        p.latched[o] = it->second.at;
      else
        p.last_wrong[o] = {why, it->second};
    }
    bool all = !obs.empty();
    steady::time_point last = *p.trigger_at;
    for (auto& o : obs) {
      auto it = p.latched.find(o);
      if (it == p.latched.end()) {
        all = false;
        break;
      }
      last = std::max(last, it->second);
    }
    if (all) {
      p.resolved = true;
      p.r.met = true;
      p.r.met_after_ms = ms_between(*p.trigger_at, last);
    } else if (now > deadline) {
      resolve_failed(p, obs);
    }
  }

  void judge_fds(cycle_state& c, steady::time_point now) {
    bool all = true;
    for (auto& n : c.r.nodes) {
      if (n.returned || !n.note.empty())
        continue;
      if (sample(n) && returned(n.before, n.after, c.r.fd_slack)) {
        auto since = c.back_since.try_emplace(n.node, now).first->second;
        // Back and staying back (or back when time is up).
        if (now - since >= stable_for || now > c.deadline) {
          n.returned = true;
          n.returned_after_ms = ms_between(c.ended, since);
          continue;
        }
      } else if (n.note.empty()) {
        c.back_since.erase(n.node);
      }
      if (n.note.empty())
        all = false;
    }
    if (all || now > c.deadline) {
      c.polling = false;
      c.r.finished = true;
      for (auto& n : c.r.nodes)
        if (!n.returned && n.note.empty())
          c.r.failures.push_back(fmt::format(
            "{}: its descriptors did not return within {} ms: {} (before "
            "{}, peak {}, now {} in all)",
            n.node, c.r.fds_within_ms, excess(n.before, n.after, c.r.fd_slack),
            n.before.total, n.peak.total, n.after.total));
    }
  }

  bool busy(steady::time_point now) const {
    for (auto& p : exps)
      if (p.trigger_at && !p.resolved && *p.trigger_at <= now)
        return true;
    for (auto& c : cycles)
      if (c.polling || c.cycling)
        return true;
    return false;
  }

  void run() {
    view_asker asker{timeout};
    std::unique_lock<std::mutex> lk{mtx};
    while (!stop) {
      auto now = steady::now();
      if (!busy(now)) {
        cv.wait_for(lk, poll);
        continue;
      }
      bool views_wanted = false;
      for (auto& p : exps)
        views_wanted =
          views_wanted || (p.trigger_at && !p.resolved && *p.trigger_at <= now);
      std::vector<std::pair<std::string, std::string>> ask_now;
      if (views_wanted)
        for (auto& [name, n] : nodes)
          if (n.st == state::running)
            ask_now.emplace_back(name, n.control);
      lk.unlock();
      std::map<std::string, member_view> views;
      for (auto& [name, control] : ask_now)
        views[name] = asker.ask(name, control);
      lk.lock();
      now = steady::now();
      for (auto& [name, v] : views)
        if (v.answered)
          nodes[name].self = v.self;
      for (auto& p : exps)
        if (p.trigger_at && !p.resolved && *p.trigger_at <= now)
          judge(p, views, now);
      for (auto& c : cycles) {
        if (c.cycling)
          for (auto& n : c.r.nodes)
            if (n.note.empty())
              sample(n);
        if (c.polling)
          judge_fds(c, now);
      }
      cv.notify_all();
      cv.wait_for(lk, poll, [this] {
        return stop;
      });
    }
  }
};

cluster_watch::cluster_watch(std::vector<expectation> expectations,
                             std::map<std::string, std::string> nodes,
                             milliseconds poll_interval, milliseconds timeout)
    : impl_(std::make_unique<impl>()) {
  impl_->poll = poll_interval;
  impl_->timeout = timeout;
  for (auto& [name, control] : nodes)
    impl_->nodes[name].control = control;
  for (auto& x : expectations) {
    impl::pending p;
    p.r.name = x.spec.name;
    p.r.line = x.spec.line;
    p.r.what = what_of(x);
    p.r.trigger = x.trigger;
    p.r.within_ms = x.spec.within.count();
    p.x = std::move(x);
    impl_->exps.push_back(std::move(p));
  }
}

cluster_watch::~cluster_watch() {
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

void cluster_watch::start(steady::time_point t0) {
  impl_->t0 = t0;
  // Known from now on, so that `finish` waits for them whenever it is
  // called.
  for (auto& p : impl_->exps)
    if (p.x.spec.trigger == expect_trigger::at) {
      p.trigger_at = t0 + p.x.spec.at;
      p.r.triggered = true;
      p.r.triggered_at_ms = p.x.spec.at.count();
    }
  impl_->thread = std::thread{[this] {
    impl_->run();
  }};
}

void cluster_watch::set_state(const std::string& node, state s, pid_t pid) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  auto& n = impl_->nodes[node];
  n.st = s;
  if (pid != 0)
    n.pid = pid;
}

bool cluster_watch::wants_before(int spec) const {
  for (auto& p : impl_->exps)
    if (p.x.spec.trigger != expect_trigger::at
        && static_cast<int>(p.x.spec.fault) == spec
        && (p.x.spec.incarnation != compare::any
            || p.x.spec.stream != compare::any))
      return true;
  return false;
}

void cluster_watch::before_fault(int spec) {
  std::vector<std::pair<std::string, std::string>> running;
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    for (auto& [name, n] : impl_->nodes)
      if (n.st == state::running)
        running.emplace_back(name, n.control);
  }
  std::vector<member_view> views;
  for (auto& [name, control] : running)
    views.push_back(ask_view(name, control, impl_->timeout));
  std::lock_guard<std::mutex> guard{impl_->mtx};
  for (auto& v : views)
    if (v.answered)
      impl_->nodes[v.observer].self = v.self;
  impl_->before_views[spec] = std::move(views);
}

void cluster_watch::fault_applied(int spec) {
  impl_->trigger(spec, expect_trigger::applied);
}

void cluster_watch::fault_healed(int spec) {
  impl_->trigger(spec, expect_trigger::healed);
}

void cluster_watch::cycles_begin(int spec, const std::string& target, int times,
                                 milliseconds fds_within, int fd_slack) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl::cycle_state c;
  c.r.fault = spec;
  c.r.target = target;
  c.r.times = times;
  c.r.fds_within_ms = fds_within.count();
  c.r.fd_slack = fd_slack;
  c.begun = steady::now();
  c.deadline = c.begun + fds_within; // moved on at the last cycle's end
  for (auto& [name, n] : impl_->nodes) {
    if (name == target || n.st == state::stopped || n.pid == 0)
      continue;
    if (auto counts = count_fds(n.pid)) {
      node_fds f;
      f.node = name;
      f.pid = n.pid;
      f.before = f.peak = f.after = *counts;
      c.r.nodes.push_back(std::move(f));
    }
  }
  impl_->cycles.push_back(std::move(c));
}

void cluster_watch::cycle_done(int spec, int exit_status) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  for (auto& c : impl_->cycles) {
    if (c.r.fault != spec || c.r.finished || c.polling)
      continue;
    ++c.r.done;
    if (exit_status != 0)
      ++c.r.unclean_exits;
    for (auto& n : c.r.nodes)
      if (n.note.empty())
        impl_->sample(n);
  }
}

void cluster_watch::cycles_end(int spec, std::string error) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  for (auto& c : impl_->cycles) {
    if (c.r.fault != spec || c.r.finished || c.polling)
      continue;
    c.ended = steady::now();
    c.r.took_ms = ms_between(c.begun, c.ended);
    c.deadline = c.ended + milliseconds{c.r.fds_within_ms};
    c.cycling = false;
    c.polling = true;
    if (!error.empty())
      c.r.failures.push_back(error);
    if (c.r.unclean_exits > 0)
      c.r.failures.push_back(fmt::format("{} of {} stops did not end with "
                                         "exit status 0 (a graceful leave "
                                         "exits 0); see its stderr.log",
                                         c.r.unclean_exits, c.r.done));
    if (c.r.done < c.r.times)
      c.r.failures.push_back(
        fmt::format("{} of {} cycles done", c.r.done, c.r.times));
  }
  impl_->cv.notify_all();
}

watch_results cluster_watch::finish() {
  auto& m = *impl_;
  {
    std::unique_lock<std::mutex> lk{m.mtx};
    // Every pending check ends by its deadline; a poll round may take a
    // timeout per node more.
    auto margin = m.poll + m.timeout * static_cast<int64_t>(m.nodes.size() + 1);
    auto until = steady::now();
    for (auto& p : m.exps)
      if (p.trigger_at && !p.resolved)
        until = std::max(until, *p.trigger_at + p.x.spec.within + margin);
    for (auto& c : m.cycles)
      if (c.polling)
        until = std::max(until, c.deadline + margin);
    m.cv.wait_until(lk, until, [&] {
      return !m.busy(steady::time_point::max());
    });
    m.stop = true;
  }
  m.cv.notify_all();
  if (m.thread.joinable())
    m.thread.join();
  watch_results out;
  for (auto& p : m.exps) {
    if (p.trigger_at && !p.resolved) {
      p.resolved = true;
      p.r.why = "still pending when the run ended";
    }
    out.membership.push_back(p.r);
  }
  for (auto& c : m.cycles) {
    if (!c.r.finished && !c.polling)
      c.r.failures.push_back(fmt::format("its cycles did not end ({} of {} "
                                         "done)",
                                         c.r.done, c.r.times));
    else if (!c.r.finished)
      c.r.failures.push_back("its descriptors were still being polled when "
                             "the run ended");
    out.cycles.push_back(c.r);
  }
  return out;
}

} // namespace herald::harness
