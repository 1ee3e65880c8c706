#include "test_hooks.hpp"

#include <memory>
#include <thread>

#include <caf/event_based_actor.hpp>
#include <fmt/format.h>

#include "herald/actors/history.hpp"
#include "herald/core/errc.hpp"
#include "node_impl.hpp"

namespace herald {

test_hooks::test_hooks(const test_hooks_config& cfg)
    : fail_(cfg.fail_keys.begin(), cfg.fail_keys.end()),
      slow_(cfg.slow_keys.begin(), cfg.slow_keys.end()) {}

caf::error test_hooks::before(const event& ev) const {
  std::chrono::microseconds wait{0};
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (fail_.empty() && slow_.empty())
      return {};
    std::string key{ev.key()};
    if (fail_.count(key) > 0)
      return make_error(errc::handler_failed,
                        fmt::format("test hook: key '{}' is in "
                                    "test_hooks.fail_keys",
                                    key));
    if (auto it = slow_.find(key); it != slow_.end())
      wait = it->second;
  }
  if (wait.count() > 0)
    std::this_thread::sleep_for(wait);
  return {};
}

control::test_hooks_reply
test_hooks::replace(const control::test_hooks_request& r) {
  std::lock_guard<std::mutex> guard{mtx_};
  fail_ = {r.fail_keys.begin(), r.fail_keys.end()};
  slow_.clear();
  for (auto& [key, ms] : r.slow_keys)
    slow_[key] = std::chrono::milliseconds{ms};
  control::test_hooks_reply reply;
  reply.id = r.id;
  reply.fail_keys.assign(fail_.begin(), fail_.end());
  for (auto& [key, d] : slow_)
    reply.slow_keys[key] =
      std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return reply;
}

handler_fn test_hooks::wrap(handler_fn fn) const {
  return [self = shared_from_this(),
          fn = std::move(fn)](const event& ev) -> caf::error {
    if (auto err = self->before(ev))
      return err;
    return fn(ev);
  };
}

service_fn test_hooks::wrap(service_fn fn) const {
  return [hooks = shared_from_this(),
          fn = std::move(fn)](caf::event_based_actor* self) {
    return behind(fn(self), [hooks](const event& ev) {
      return hooks->before(ev);
    });
  };
}

std::string node::impl::serve(const control::test_hooks_request& r) {
  if (!hooks)
    return refuse(r.id, {},
                  fmt::format("node '{}' has no test hooks: test.hooks is "
                              "served only by a node whose config has the "
                              "key 'test_hooks' (a test or harness node)",
                              cfg.name));
  auto reply = hooks->replace(r);
  log->warn("test hooks replaced: handling fails for {} key(s) and is slow "
            "for {}",
            reply.fail_keys.size(), reply.slow_keys.size());
  return control::encode(reply);
}

} // namespace herald
