// Raising an alert: a critical log line, a herald.alert.raised event, and
// the rule's command.

#include <cctype>
#include <cstring>

#include <spawn.h>
#include <sys/wait.h>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "node_impl.hpp"

extern char** environ;

namespace herald {

// Raises `a`: a critical log line, a herald.alert.raised event, and the
// rule's command, if any.
void node::impl::raise_alert(const raised_alert& a) {
  {
    std::shared_lock<std::shared_mutex> guard{consumers_mtx};
    for (auto& c : consumers)
      if (c.name == a.consumer)
        c.stats->alerts.fetch_add(1, std::memory_order_relaxed);
  }
  auto window = format_duration(a.rule.window);
  auto rule =
    fmt::format("dead_letters >= {} within {}", a.rule.dead_letters, window);
  log->critical("ALERT consumer={} node={}: {} dead letters within {} "
                "(rule: {})",
                a.consumer, cfg.name, a.count, window, rule);
  payload data{
    {"alert_id", make_uuid_v4()},
    {"consumer", a.consumer},
    {"node", cfg.name},
    {"rule", rule},
    {"dead_letters", a.count},
    {"threshold", a.rule.dead_letters},
    {"window_seconds",
     std::chrono::duration_cast<std::chrono::seconds>(a.rule.window).count()},
    {"raised_at", format_timestamp(a.time_us)}};
  publish_options opts;
  opts.source = "herald";
  if (auto r = front->bus().publish("herald.alert.raised", data, opts); !r)
    log->error("consumer={}: cannot publish herald.alert.raised: {}",
               a.consumer, message_of(r.error()));
  if (!a.rule.command.empty())
    run_hook(a.rule.command, data);
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
