// What `publish` does when the node's log queue is at
// `store.max_pending_bytes`: on an actor's thread it never waits (would
// block), on a plain thread it waits at most `store.publish_timeout`.

#include <atomic>
#include <future>
#include <string>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <catch2/catch.hpp>

#include "deadline.hpp"
#include "herald/core/errc.hpp"
#include "node_support.hpp"

using namespace std::chrono_literals;
using namespace herald;

namespace {

constexpr auto deadline = std::chrono::milliseconds{30000};

// A node whose log queue holds about a dozen events, and syncs each one
// on its own: publishing in a loop reaches the bound at once.
node_config tight_config(const std::string& name) {
  auto cfg = make_config(name, "UserService");
  cfg.store.fsync = "always";
  cfg.store.max_pending_bytes = min_max_pending_bytes;
  return cfg;
}

// What an actor saw publishing in a loop until refused.
struct actor_result {
  uint64_t published = 0;
  caf::error refusal;
};

} // namespace

TEST_CASE("publish on an actor's thread at the bound would block and never "
          "waits",
          "[runtime][backpressure]") {
  auto cfg = tight_config("bp-actor");
  // Even a caller that asks to wait gets no wait on an actor's thread.
  cfg.store.publish_timeout = std::chrono::minutes{10};
  auto n = start(cfg);
  std::promise<actor_result> done;
  auto fut = done.get_future();
  auto* raw = n.get();
  n->system().spawn([raw, &done](caf::event_based_actor* self) {
    self->send(self, caf::atom("go"));
    return caf::behavior{[raw, &done](caf::atom_value) {
      actor_result res;
      for (int i = 0; i < 200000; ++i) {
        auto r = raw->bus().publish("user.account.created", created(i));
        if (!r) {
          res.refusal = std::move(r.error());
          break;
        }
        ++res.published;
      }
      done.set_value(std::move(res));
    }};
  });
  auto res = herald::test::get_within(fut, deadline);
  REQUIRE(res.refusal);
  CHECK(is(res.refusal, errc::would_block));
  CHECK_THAT(message_of(res.refusal),
             Catch::Contains("store.max_pending_bytes 4096")
               && Catch::Contains("actor's thread")
               && Catch::Contains("nothing was published"));
  // Nothing of the refused event was kept: a retry once the disk caught
  // up gets the next seq.
  auto again = n->bus().publish("user.account.created", created(1));
  REQUIRE(again);
  CHECK(again->seq == res.published + 1);
  CHECK(!again->wait());
}

TEST_CASE("publish on a plain thread waits for room instead of refusing",
          "[runtime][backpressure]") {
  auto n = start(tight_config("bp-thread"));
  std::optional<publish_receipt> last;
  for (int i = 0; i < 2000; ++i) {
    auto r = n->bus().publish("user.account.created", created(i));
    REQUIRE(r);
    last = std::move(*r);
  }
  CHECK(last->seq == 2000);
  CHECK(!last->wait());
}

TEST_CASE("publish on a plain thread gives up after its wait",
          "[runtime][backpressure]") {
  auto cfg = tight_config("bp-timeout");
  cfg.store.publish_timeout = std::chrono::microseconds{1};
  auto n = start(cfg);
  caf::error refusal;
  for (int i = 0; i < 200000 && !refusal; ++i)
    if (auto r = n->bus().publish("user.account.created", created(i)); !r)
      refusal = std::move(r.error());
  REQUIRE(refusal);
  CHECK(is(refusal, errc::would_block));
  CHECK_THAT(message_of(refusal),
             Catch::Contains("after waiting 1us (store.publish_timeout)"));
  // max_wait 0: never waits, whatever the node's timeout.
  publish_options now;
  now.max_wait = std::chrono::microseconds{0};
  caf::error at_once;
  for (int i = 0; i < 200000 && !at_once; ++i)
    if (auto r = n->bus().publish("user.account.created", created(i), now); !r)
      at_once = std::move(r.error());
  REQUIRE(at_once);
  CHECK_THAT(message_of(at_once), Catch::Contains("Retry later"));
}
