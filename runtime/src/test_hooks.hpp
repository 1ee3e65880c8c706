#pragma once

// The node's test hooks (config `test_hooks`, control op `test.hooks`):
// handling that fails or is slow for chosen entity keys, for tests and
// `herald harness`. Applied by wrapping each handler the node is given
// (`bus().subscribe`) and each service's behavior (`node::attach`), so
// every node executable has them without a line of its own.
//
// Thread safety: `test_hooks` guards its keys with its own mutex (a leaf);
// `before` runs on pool threads, shards and service actors at once.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/error.hpp>

#include "herald/actors/messages.hpp"
#include "herald/core/config.hpp"
#include "herald/runtime/control.hpp"

namespace herald {

class test_hooks : public std::enable_shared_from_this<test_hooks> {
public:
  explicit test_hooks(const test_hooks_config& cfg);

  /// What a handler of `ev` meets first: an error (`errc::handler_failed`,
  /// naming the hook) for a fail key; a wait, then none, for a slow key;
  /// none otherwise.
  caf::error before(const event& ev) const;

  /// Replaces the fail and slow keys; returns those now in effect.
  control::test_hooks_reply replace(const control::test_hooks_request& r);

  /// `fn` behind the hooks (which it keeps alive). REQUIRES: owned by a
  /// `std::shared_ptr`.
  handler_fn wrap(handler_fn fn) const;

  /// The service of `fn` behind the hooks (which it keeps alive).
  /// REQUIRES: owned by a `std::shared_ptr`.
  service_fn wrap(service_fn fn) const;

private:
  mutable std::mutex mtx_;
  std::unordered_set<std::string> fail_;
  std::unordered_map<std::string, std::chrono::microseconds> slow_;
};

} // namespace herald
