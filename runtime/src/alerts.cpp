// Raising an alert: a critical log line, a herald.alert.raised event, and
// the rule's command.

#include <cctype>
#include <cstring>

#include <spawn.h>
#include <sys/wait.h>

#include <fmt/format.h>

#include "group_letters.hpp"
#include "herald/core/errc.hpp"
#include "node_impl.hpp"

extern char** environ;

namespace herald {

namespace {

// What an alert says, as published.
struct alert_text {
  std::string consumer;
  std::string rule;
  uint64_t dead_letters = 0;
  uint64_t threshold = 0;
  int64_t window_seconds = 0;
  int64_t time_us = 0;
  std::string command;
};

} // namespace

// Publishes `a` as a herald.alert.raised event and runs its command, if
// any; counts it for the consumer when it runs here.
static void publish_alert(node::impl& p, const alert_text& a) {
  {
    std::shared_lock<std::shared_mutex> guard{p.consumers_mtx};
    for (auto& c : p.consumers)
      if (c.name == a.consumer)
        c.stats->alerts.fetch_add(1, std::memory_order_relaxed);
  }
  payload data{{"alert_id", make_uuid_v4()},
               {"consumer", a.consumer},
               {"node", p.cfg.name},
               {"rule", a.rule},
               {"dead_letters", a.dead_letters},
               {"threshold", a.threshold},
               {"window_seconds", a.window_seconds},
               {"raised_at", format_timestamp(a.time_us)}};
  publish_options opts;
  opts.source = "herald";
  if (auto r = p.front->bus().publish("herald.alert.raised", data, opts); !r)
    p.log->error("consumer={}: cannot publish herald.alert.raised: {}",
                 a.consumer, message_of(r.error()));
  if (!a.command.empty())
    p.run_hook(a.command, data);
}

// Raises `a`: a critical log line, a herald.alert.raised event, and the
// rule's command, if any.
void node::impl::raise_alert(const raised_alert& a) {
  auto window = format_duration(a.rule.window);
  auto rule =
    fmt::format("dead_letters >= {} within {}", a.rule.dead_letters, window);
  log->critical("ALERT consumer={} node={}: {} dead letters within {} "
                "(rule: {})",
                a.consumer, cfg.name, a.count, window, rule);
  publish_alert(
    *this,
    {a.consumer, rule, a.count, a.rule.dead_letters,
     std::chrono::duration_cast<std::chrono::seconds>(a.rule.window).count(),
     a.time_us, a.rule.command});
}

void node::impl::raise_quota_alert(const quota_reached& q) {
  auto rule = fmt::format("dead_letter_quota {} bytes at the owner of stream "
                          "'{}'",
                          q.quota, q.stream);
  log->critical("ALERT consumer={} node={}: the group's dead letters reached "
                "the quota: {}",
                q.group, cfg.name, q.reason);
  std::string command;
  for (auto& c : cfg.consumers)
    if (c.name == q.group)
      command = c.alert.command;
  publish_alert(*this,
                {q.group, rule, q.letters, q.quota, 0, now_us(), command});
}

// Runs an alert's command with `/bin/sh -c` and the alert in the
// environment, without waiting for it.
void node::impl::run_hook(const std::string& command, const payload& alert) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    env.emplace_back(*e);
  for (auto& [k, v] : alert.items()) {
    std::string name = "HERALD_ALERT_";
    for (char c : k)
      name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    env.push_back(name + "="
                  + (v.is_string() ? v.get<std::string>() : v.dump()));
  }
  std::thread{[command, env = std::move(env), lg = log] {
    std::vector<char*> envp;
    for (auto& e : env)
      envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
    pid_t pid = 0;
    if (int rc = posix_spawn(&pid, "/bin/sh", nullptr, nullptr,
                             const_cast<char* const*>(argv), envp.data());
        rc != 0) {
      lg->error("alert command '{}' could not start: {}", command,
                std::strerror(rc));
      return;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      lg->error("alert command '{}' failed (status {})", command, status);
  }}.detach();
}

} // namespace herald
