#pragma once

/// The one time limit of every test that waits for another thread or
/// process (SObjectizer's `run_with_time_limit`): each wait here ends when
/// its condition holds or its deadline passes, whichever comes first, so a
/// bug shows as a failed assertion naming the wait, never as a hung run.
///
/// ```cpp
/// REQUIRE_WITHIN(10s, got.size() == 500);
/// CHECK(herald::test::wait_until([&] { return n->received() >= 60000; },
/// 30s)); auto result = herald::test::get_within(future, 10s);
/// REQUIRE_FALSE(herald::test::get_within(*receipt->durable, 10s));
/// auto ok = herald::test::run_with_time_limit(20s, [&] { return work(); });
/// ```
///
/// No `wait()`, `join()`, `future::get()` or `sleep_for` polling loop in a
/// test without one of these around it.
///
/// Thread safety: the functions share no state; `pred` and `fn` run on the
/// calling thread except in `run_with_time_limit`, whose `fn` must not use
/// Catch's assertions (they are not thread-safe).

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>

namespace herald::test {

/// Calls `pred` every `poll` until it returns true or `timeout` passed.
/// Returns whether it did; `pred` is called once more at the deadline, so
/// a condition that became true while sleeping is not missed.
template <class Pred>
[[nodiscard]] bool
wait_until(Pred&& pred, std::chrono::milliseconds timeout,
           std::chrono::milliseconds poll = std::chrono::milliseconds{5}) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred())
      return true;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      return static_cast<bool>(pred());
    std::this_thread::sleep_for(
      std::min<std::chrono::steady_clock::duration>(poll, deadline - now));
  }
}

/// Waits at most `timeout` for `f`, then returns its value (rethrowing what
/// it stored). Fails the test when it is not ready by then.
template <class T>
T get_within(std::future<T>& f, std::chrono::milliseconds timeout) {
  if (f.wait_for(timeout) != std::future_status::ready)
    FAIL("the result was not ready within " << timeout.count() << "ms");
  return f.get();
}

/// Waits at most `timeout` for `w`, anything whose `wait_for(timeout)`
/// returns an empty optional when time ran out (a `store::commit_ticket`,
/// a `publish_receipt`'s `durable`), and returns the optional's value
/// (e.g. the commit's error). Fails the test when it is empty.
template <class Waitable>
auto get_within(const Waitable& w, std::chrono::milliseconds timeout)
  -> std::remove_cvref_t<decltype(*w.wait_for(timeout))> {
  auto result = w.wait_for(timeout);
  if (!result)
    FAIL("not done within " << timeout.count() << "ms");
  return std::move(*result);
}

/// Runs `fn` on its own thread and returns its result; fails the test when
/// it takes longer than `limit` (the thread is then abandoned, not joined:
/// the test binary cannot be trusted after that anyway).
template <class Fn>
auto run_with_time_limit(std::chrono::milliseconds limit, Fn fn) {
  using result = decltype(fn());
  auto task = std::make_shared<std::packaged_task<result()>>(std::move(fn));
  auto done = task->get_future();
  std::thread{[task] {
    (*task)();
  }}.detach();
  if (done.wait_for(limit) != std::future_status::ready)
    FAIL("did not finish within " << limit.count() << "ms");
  return done.get();
}

} // namespace herald::test

/// `REQUIRE` that `cond` (re-evaluated every few milliseconds) holds within
/// `timeout`.
#define REQUIRE_WITHIN(timeout, ...)                                           \
  REQUIRE(::herald::test::wait_until(                                          \
    [&] {                                                                      \
      return static_cast<bool>(__VA_ARGS__);                                   \
    },                                                                         \
    timeout))

/// `CHECK` that `cond` (re-evaluated every few milliseconds) holds within
/// `timeout`.
#define CHECK_WITHIN(timeout, ...)                                             \
  CHECK(::herald::test::wait_until(                                            \
    [&] {                                                                      \
      return static_cast<bool>(__VA_ARGS__);                                   \
    },                                                                         \
    timeout))
