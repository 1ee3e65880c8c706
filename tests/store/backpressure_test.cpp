// The event log's bound on bytes queued for the disk
// (`log_options::max_pending_bytes`): `try_append` refuses beyond it,
// `wait_for_room` waits for room at most until its deadline.

#include "herald/store/event_log.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include <catch2/catch.hpp>

#include "deadline.hpp"
#include "process.hpp"
#include "store_support.hpp"

using namespace std::chrono_literals;
using herald::store::record;
using herald::store::test::open_log;
using herald::store::test::options_for;

namespace {

constexpr auto deadline = std::chrono::milliseconds{10000};
constexpr std::string_view type = "user.account.created";

record sized(uint64_t seq, size_t envelope_bytes) {
  record r;
  r.seq = seq;
  r.type = type;
  r.type_seq = seq;
  r.envelope.assign(envelope_bytes, static_cast<char>('a' + seq % 26));
  return r;
}

// Holds the committer inside the commit callback until opened: what was
// appended stays pending meanwhile.
struct gate {
  std::mutex mtx;
  std::condition_variable cv;
  bool open = false;
  void wait() {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait_for(guard, deadline, [this] {
      return open;
    });
  }
  void release() {
    {
      std::lock_guard<std::mutex> guard{mtx};
      open = true;
    }
    cv.notify_all();
  }
};

// A log in `dir` that keeps at most 4096 bytes pending; with `g`, its
// commit callback waits for the gate.
std::unique_ptr<herald::store::event_log>
open_bounded(const herald::test::temp_dir& dir, gate* g = nullptr) {
  auto opts = options_for(dir.path());
  opts.max_pending_bytes = 4096;
  auto log = open_log(opts);
  if (g != nullptr)
    log->on_commit([g](std::vector<record>&, const caf::error&) {
      g->wait();
    });
  return log;
}

} // namespace

TEST_CASE("try_append refuses beyond max_pending_bytes until the queue is "
          "written",
          "[store][backpressure]") {
  herald::test::temp_dir dir;
  gate g;
  auto log = open_bounded(dir, &g);
  // Four records of 1000 + 20 bytes fit within 4096; the fifth does not.
  std::shared_ptr<const herald::store::commit_ticket> last;
  for (uint64_t seq = 1; seq <= 4; ++seq) {
    auto r = sized(seq, 1000);
    last = log->try_append(r);
    REQUIRE(last != nullptr);
  }
  CHECK(log->pending_bytes() == 4 * (1000 + type.size()));
  auto fifth = sized(5, 1000);
  CHECK(log->try_append(fifth) == nullptr);
  // Refused: nothing appended, the record is as it was.
  CHECK(log->last_seq() == 4);
  CHECK(fifth.envelope.size() == 1000);
  // Waiting is bounded: no room comes while the committer is held.
  CHECK_FALSE(log->wait_for_room(fifth.envelope.size() + type.size(),
                                 std::chrono::steady_clock::now() + 50ms));
  g.release();
  CHECK(log->wait_for_room(fifth.envelope.size() + type.size(),
                           std::chrono::steady_clock::now() + deadline));
  auto ticket = log->try_append(fifth);
  REQUIRE(ticket != nullptr);
  auto err = ticket->wait_for(deadline);
  REQUIRE(err.has_value());
  CHECK(herald::message_of(*err) == "");
  CHECK(log->last_seq() == 5);
  REQUIRE(herald::test::wait_until(
    [&] {
      return log->pending_bytes() == 0;
    },
    deadline));
}

TEST_CASE("a record larger than max_pending_bytes is taken when nothing is "
          "pending",
          "[store][backpressure]") {
  herald::test::temp_dir dir;
  auto log = open_bounded(dir);
  auto big = sized(1, 10000);
  auto ticket = log->try_append(big);
  REQUIRE(ticket != nullptr);
  auto err = ticket->wait_for(deadline);
  REQUIRE(err.has_value());
  CHECK(herald::message_of(*err) == "");
}

TEST_CASE("append ignores max_pending_bytes", "[store][backpressure]") {
  herald::test::temp_dir dir;
  gate g;
  auto log = open_bounded(dir, &g);
  std::shared_ptr<const herald::store::commit_ticket> last;
  for (uint64_t seq = 1; seq <= 10; ++seq)
    last = log->append(sized(seq, 1000));
  CHECK(log->last_seq() == 10);
  g.release();
  auto err = last->wait_for(deadline);
  REQUIRE(err.has_value());
  CHECK(herald::message_of(*err) == "");
}
